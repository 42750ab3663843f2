//! Agreements accepted only once seen, invites facilitators can list and revoke, and removal
//! that reaches a device even when it was offline: end to end with a real server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use confide_client::{
    AgreementInfo, ClientError, Event, InviteOptions, JoinOutcome, RemoveOptions,
};
use confide_protocol::frames::{ErrorCode, ServerFrame};
use confide_protocol::group_log::OpBody;
use confide_protocol::{GroupId, Timestamp};
use confide_tests::{TestServer, TestUser, error_code, raw_group_of_two};

const HOUR: Duration = Duration::from_secs(3600);

/// A facilitator's group with one direct invite of `uses` uses, and the invite.
async fn group_with_invite(
    server: &TestServer,
    uses: u32,
) -> (TestUser, GroupId, confide_client::Invite) {
    let alice = TestUser::new(server, "Alice").await;
    let group = alice.client.create_group().await.unwrap();
    let invite = alice
        .client
        .create_invite(group, InviteOptions::new().max_uses(uses).valid_for(HOUR))
        .await
        .unwrap();
    (alice, group, invite)
}

fn refusal(e: &ClientError) -> (Option<ErrorCode>, String) {
    (e.server_code(), e.to_string())
}

#[tokio::test]
async fn an_agreement_is_accepted_only_once_its_text_arrived_and_only_as_that_text() {
    let server = TestServer::start().await;
    let (mut alice, group, invite) = group_with_invite(&server, 5).await;
    alice
        .client
        .set_agreement(group, "What is said here stays here.")
        .await
        .unwrap();
    // The only device that could send Carol the text is offline while she joins.
    alice.go_offline().await;
    let mut carol = TestUser::new(&server, "Carol").await;
    carol.client.join(&invite, None).await.unwrap();
    let pinned = carol.client.pinned(group).await.unwrap();
    assert!(pinned.agreement.is_none());
    assert_eq!(pinned.agreement_version, Some(1));

    // A front end that makes up what it would have shown gets nowhere.
    let guessed = {
        let mut v = AgreementInfo::default();
        v.version = 1;
        v.text = "What is said here stays here.".into();
        v.accepted = false;
        v
    };
    let err = carol
        .client
        .accept_agreement(group, &guessed)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::AgreementNotReceived { version: 1 }),
        "{err}"
    );
    assert!(err.to_string().contains("has not arrived"), "{err}");
    // Nothing was accepted.
    assert_eq!(
        carol.client.status(group).await.unwrap().agreement_pending,
        Some(1)
    );

    // Once the text is on her device (and shown), she can accept that version, and only it.
    alice.come_back().await;
    // (The facilitator's device re-sends pinned texts after its next command or frame once
    // reconnected, not on reconnecting alone: give it one.)
    alice.client.sync().await.unwrap();
    carol
        .wait_event(|e| matches!(e, Event::Pinned { version: 1, .. }))
        .await;
    let shown = carol.client.pinned(group).await.unwrap().agreement.unwrap();
    assert_eq!(shown.text, "What is said here stays here.");
    let newer = {
        let mut v = shown.clone();
        v.version = 2;
        v
    };
    let err = carol
        .client
        .accept_agreement(group, &newer)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::AgreementChanged {
                shown: 2,
                current: 1
            }
        ),
        "{err}"
    );
    // Only the text it was given can be accepted: not another one of the same version.
    let other = {
        let mut v = shown.clone();
        v.text = "Anything goes.".into();
        v
    };
    let err = carol
        .client
        .accept_agreement(group, &other)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Invalid(_)), "{err}");
    assert_eq!(
        carol.client.status(group).await.unwrap().agreement_pending,
        Some(1)
    );
    carol.client.accept_agreement(group, &shown).await.unwrap();
    carol
        .client
        .send_text(group, "I agree", None)
        .await
        .unwrap();
}

#[tokio::test]
async fn the_server_refuses_an_acceptance_naming_another_text_or_none() {
    let server = TestServer::start().await;
    let (mut alice, mut bob, mut state) = raw_group_of_two(&server).await;
    let text_hash = [1; 32];
    let reply = alice
        .append(
            &mut state,
            OpBody::SetAgreement {
                version: 1,
                text_hash,
            },
        )
        .await;
    assert!(matches!(reply, ServerFrame::OpAppended { .. }), "{reply:?}");
    for wrong in [Some([2; 32]), None] {
        let reply = bob
            .append(
                &mut state,
                OpBody::AcceptAgreement {
                    version: 1,
                    text_hash: wrong,
                },
            )
            .await;
        assert_eq!(error_code(&reply), Some(ErrorCode::InvalidOp), "{reply:?}");
    }
    let reply = bob
        .append(
            &mut state,
            OpBody::AcceptAgreement {
                version: 1,
                text_hash: Some(text_hash),
            },
        )
        .await;
    assert!(matches!(reply, ServerFrame::OpAppended { .. }), "{reply:?}");
}

#[tokio::test]
async fn a_removed_member_cannot_rejoin_with_a_revoked_invite_and_is_told_it_was_revoked() {
    let server = TestServer::start().await;
    let (alice, group, invite) = group_with_invite(&server, 10).await;
    let mut eve = TestUser::new(&server, "Eve").await;
    eve.client.join(&invite, None).await.unwrap();
    let eve_user = eve.client.user();

    // The facilitator sees the invite, who made it and who joined with it.
    let invites = alice.client.invites(group).await.unwrap();
    assert_eq!(invites.len(), 1);
    let listed = &invites[0];
    assert_eq!(listed.id, invite.id());
    assert_eq!(listed.created_by, alice.client.user());
    assert_eq!((listed.uses, listed.max_uses), (1, 10));
    assert!(!listed.revoked && !listed.requires_approval);
    assert_eq!(listed.joined, vec![(eve_user, "Eve".to_string())]);
    assert_eq!(
        alice.client.invite_of(group, eve_user).await.unwrap(),
        Some(invite.id())
    );

    alice
        .client
        .remove(group, eve_user, RemoveOptions::new())
        .await
        .unwrap();
    alice
        .client
        .revoke_invite(group, invite.id())
        .await
        .unwrap();
    eve.wait_event(|e| matches!(e, Event::Removed { .. })).await;
    let err = eve.client.join(&invite, None).await.unwrap_err();
    let (code, text) = refusal(&err);
    assert_eq!(code, Some(ErrorCode::InviteRevoked), "{err}");
    assert!(text.contains("this invite was revoked"), "{text}");
    assert!(alice.client.invites(group).await.unwrap()[0].revoked);
    assert!(
        alice
            .client
            .members(group)
            .await
            .unwrap()
            .iter()
            .all(|m| m.user != eve_user)
    );
}

#[tokio::test]
async fn expired_and_used_up_invites_say_so() {
    let server = TestServer::start().await;
    let (alice, group, used) = group_with_invite(&server, 1).await;
    let bob = TestUser::new(&server, "Bob").await;
    bob.client.join(&used, None).await.unwrap();
    let carol = TestUser::new(&server, "Carol").await;
    let err = carol.client.join(&used, None).await.unwrap_err();
    let (code, text) = refusal(&err);
    assert_eq!(code, Some(ErrorCode::InviteUsedUp), "{err}");
    assert!(text.contains("this invite has been used up"), "{text}");

    let short = alice
        .client
        .create_invite(
            group,
            InviteOptions::new()
                .max_uses(5)
                .valid_for(Duration::from_millis(200)),
        )
        .await
        .unwrap();
    let expires = alice
        .client
        .invites(group)
        .await
        .unwrap()
        .into_iter()
        .find(|i| i.id == short.id())
        .unwrap()
        .expires_at;
    // Wait until the invite's own expiry time has passed on this machine's clock.
    while confide_tests::now() <= Timestamp(expires.0 + 1) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let err = carol.client.join(&short, None).await.unwrap_err();
    let (code, text) = refusal(&err);
    assert_eq!(code, Some(ErrorCode::InviteExpired), "{err}");
    assert!(text.contains("this invite has expired"), "{text}");
}

#[tokio::test]
async fn a_former_member_is_served_the_log_only_up_to_its_removal() {
    let server = TestServer::start().await;
    let (mut alice, mut bob, mut state) = raw_group_of_two(&server).await;
    let reply = alice
        .append(
            &mut state,
            OpBody::Remove {
                user: bob.user,
                ban: false,
            },
        )
        .await;
    assert!(matches!(reply, ServerFrame::OpAppended { .. }), "{reply:?}");
    let removal = state.seq();
    let reply = alice.append(&mut state, OpBody::Lock {}).await;
    assert!(matches!(reply, ServerFrame::OpAppended { .. }), "{reply:?}");

    let (ops, messages) = bob.sync_from_start(state.group()).await;
    assert_eq!(ops.len() as u64, removal + 1, "the ops up to the removal");
    let last = ops.last().unwrap().parse_unverified().unwrap();
    assert!(matches!(last.body, OpBody::Remove { user, .. } if user == bob.user));
    assert!(messages.is_empty());
}

#[tokio::test]
async fn a_device_removed_while_offline_learns_it_and_can_rejoin_after_approval() {
    let server = TestServer::start().await;
    let (alice, group, invite) = group_with_invite(&server, 10).await;
    let mut eve = TestUser::new(&server, "Eve").await;
    eve.client.join(&invite, None).await.unwrap();
    let eve_user = eve.client.user();
    eve.go_offline().await;

    alice
        .client
        .remove(group, eve_user, RemoveOptions::new())
        .await
        .unwrap();
    alice
        .client
        .send_text(group, "sent after Eve was removed", None)
        .await
        .unwrap();
    let again = alice
        .client
        .create_invite(
            group,
            InviteOptions::new().requires_approval(true).valid_for(HOUR),
        )
        .await
        .unwrap();

    // Back online, Eve's device learns that it was removed, when and by whom.
    eve.come_back().await;
    let (event, _) = eve.wait_event(|e| matches!(e, Event::Removed { .. })).await;
    let Event::Removed { group: g, at } = event else {
        unreachable!()
    };
    assert_eq!(g, group);
    let departure = eve.client.departure(group).await.unwrap().unwrap();
    assert_eq!(departure.at, at);
    assert!(!departure.left && !departure.banned);
    assert_eq!(departure.by, alice.client.user());
    let info = eve.client.groups().await.unwrap();
    assert!(info.iter().any(|i| i.group == group && !i.member));
    assert!(
        eve.client
            .history(group, None, 100)
            .await
            .unwrap()
            .iter()
            .all(|m| m.text != "sent after Eve was removed")
    );

    // A new invite works: the request reaches the facilitators, who let her back in.
    let outcome = eve
        .client
        .join(&again, Some("may I come back?".into()))
        .await
        .unwrap();
    assert_eq!(outcome, JoinOutcome::Pending(group));
    let mut alice = alice;
    alice
        .wait_event(|e| matches!(e, Event::JoinRequest(r) if r.user == eve_user))
        .await;
    alice.client.approve(group, eve_user).await.unwrap();
    eve.wait_event(|e| matches!(e, Event::Joined { group: g } if *g == group))
        .await;
    alice
        .client
        .send_text(group, "welcome back", None)
        .await
        .unwrap();
    let history = eve.wait_history(group, 1).await;
    assert!(history.iter().any(|m| m.text == "welcome back"));
    assert!(
        history
            .iter()
            .all(|m| m.text != "sent after Eve was removed")
    );
}

/// A removed member's device kept its old consent: when a facilitator (or the server's own
/// device, as anyone can build such a group) put them back without their asking, they were in at
/// once and shown everything. Being put back asks again, like any group they did not ask for.
#[tokio::test]
async fn a_removed_member_put_back_without_asking_is_asked_again() {
    let server = TestServer::start().await;
    let (alice, group, invite) = group_with_invite(&server, 5).await;
    let mut bob = TestUser::new(&server, "Bob").await;
    assert_eq!(
        bob.client.join(&invite, None).await.unwrap(),
        JoinOutcome::Joined(group)
    );
    alice
        .client
        .remove(group, bob.client.user(), RemoveOptions::new())
        .await
        .unwrap();
    bob.wait_event(|e| matches!(e, Event::Removed { group: g, .. } if *g == group))
        .await;
    let member = alice.client.members(group).await.unwrap();
    assert_eq!(member.len(), 1);
    let bob_entry = confide_protocol::group_log::MemberEntry {
        display_name: "Bob".into(),
        ..bob.client.member_entry().await.unwrap()
    };
    alice
        .client
        .op(
            group,
            OpBody::Add {
                member: bob_entry,
                invite: None,
                invite_sig: None,
                invite_device: None,
            },
        )
        .await
        .unwrap();
    alice
        .client
        .send_text(group, "welcome back?", None)
        .await
        .unwrap();
    let (event, before) = bob
        .wait_event(|e| matches!(e, Event::Invited { group: g, .. } if *g == group))
        .await;
    assert!(matches!(event, Event::Invited { .. }));
    assert!(
        !before
            .iter()
            .any(|e| matches!(e, Event::Joined { .. } | Event::Message(_))),
        "Bob was put back in without being asked: {before:?}"
    );
}

#[tokio::test]
async fn a_banned_member_holding_a_usable_invite_cannot_read_the_log_with_it() {
    let server = TestServer::start().await;
    let (alice, group, invite) = group_with_invite(&server, 5).await;
    let mut eve = TestUser::new(&server, "Eve").await;
    eve.client.join(&invite, None).await.unwrap();
    let eve_user = eve.client.user();
    // Banned, but the invite she joined with is left usable (as a facilitator could forget).
    alice
        .client
        .remove(group, eve_user, RemoveOptions::new().ban(true))
        .await
        .unwrap();
    eve.wait_event(|e| matches!(e, Event::Removed { .. })).await;
    assert!(!alice.client.invites(group).await.unwrap()[0].revoked);

    // Joining starts with reading the log with the invite: refused, saying why.
    let err = eve.client.join(&invite, None).await.unwrap_err();
    let (code, text) = refusal(&err);
    assert_eq!(code, Some(ErrorCode::Banned), "{err}");
    assert!(text.contains("banned"), "{text}");
}
