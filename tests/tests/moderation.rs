//! Facilitator tools, end to end with several real clients: every action works for whoever
//! may take it, and is refused (changing nothing) for whoever may not.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use confide_client::{ClientError, Event, InviteOptions, JoinOutcome, RemoveOptions};
use confide_protocol::frames::ErrorCode;
use confide_protocol::group_log::{GroupSettings, Role};
use confide_tests::{TestServer, TestUser, users_in_group};

fn server_code(e: &ClientError) -> Option<ErrorCode> {
    e.server_code()
}

fn is_refused(e: &ClientError) -> bool {
    matches!(e, ClientError::NotAllowed(_) | ClientError::Server { .. })
}

#[tokio::test]
async fn roles_promote_and_demote_and_only_facilitators_assign_them() {
    let server = TestServer::start().await;
    let (users, group) =
        users_in_group(&server.url, server.trust(), &["Alice", "Bob", "Carol"]).await;
    let (bob, carol) = (users[1].client.user(), users[2].client.user());
    // A member cannot give roles, and nothing changes.
    assert!(is_refused(
        &users[2]
            .client
            .set_role(group, carol, Role::Facilitator)
            .await
            .unwrap_err()
    ));
    users[0]
        .client
        .set_role(group, bob, Role::CoFacilitator)
        .await
        .unwrap();
    users[1].client.sync().await.unwrap();
    // A co-facilitator moderates members but cannot assign roles.
    users[1].client.set_locked(group, true).await.unwrap();
    assert!(is_refused(
        &users[1]
            .client
            .set_role(group, carol, Role::CoFacilitator)
            .await
            .unwrap_err()
    ));
    users[0]
        .client
        .set_role(group, bob, Role::Member)
        .await
        .unwrap();
    users[1].client.sync().await.unwrap();
    assert!(is_refused(
        &users[1].client.set_locked(group, false).await.unwrap_err()
    ));
    let members = users[0].client.members(group).await.unwrap();
    assert_eq!(
        members.iter().find(|m| m.user == bob).unwrap().role,
        Role::Member
    );
    assert_eq!(
        members.iter().find(|m| m.user == carol).unwrap().role,
        Role::Member
    );
}

#[tokio::test]
async fn screening_shows_the_request_and_the_facilitator_approves_or_declines() {
    let server = TestServer::start().await;
    let mut alice = TestUser::new(&server, "Alice").await;
    let group = alice.client.create_group().await.unwrap();
    let invite = alice
        .client
        .create_invite(
            group,
            InviteOptions::new()
                .requires_approval(true)
                .max_uses(5)
                .valid_for(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    let troll = TestUser::new(&server, "Troll").await;
    assert_eq!(
        troll
            .client
            .join(&invite, Some("let me in".into()))
            .await
            .unwrap(),
        JoinOutcome::Pending(group)
    );
    let (event, _) = alice
        .wait_event(|e| matches!(e, Event::JoinRequest(_)))
        .await;
    let Event::JoinRequest(request) = event else {
        unreachable!()
    };
    assert_eq!(
        (request.display_name.as_str(), request.note.as_deref()),
        ("Troll", Some("let me in"))
    );
    alice.client.decline(group, request.user).await.unwrap();
    // Declined: there is nothing left to approve, and the troll is not in the group.
    assert!(alice.client.approve(group, request.user).await.is_err());
    assert!(
        alice
            .client
            .members(group)
            .await
            .unwrap()
            .iter()
            .all(|m| m.user != request.user)
    );
    assert!(matches!(
        troll.client.send_text(group, "hi", None).await.unwrap_err(),
        ClientError::UnknownGroup | ClientError::NotMember
    ));
}

#[tokio::test]
async fn remove_rekeys_and_ban_keeps_them_out_even_with_an_old_invite() {
    let server = TestServer::start().await;
    let (mut users, group) =
        users_in_group(&server.url, server.trust(), &["Alice", "Bob", "Eve"]).await;
    let eve = users[2].client.user();
    let old_invite = users[0]
        .client
        .create_invite(
            group,
            InviteOptions::new()
                .max_uses(10)
                .valid_for(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    // A member cannot remove anyone.
    assert!(is_refused(
        &users[1]
            .client
            .remove(group, eve, RemoveOptions::new())
            .await
            .unwrap_err()
    ));
    users[0]
        .client
        .remove(
            group,
            eve,
            RemoveOptions::new().ban(true).reason("repeated harassment"),
        )
        .await
        .unwrap();
    // Only a facilitator can lift a ban.
    assert!(is_refused(
        &users[1].client.unban(group, eve).await.unwrap_err()
    ));
    users[2]
        .wait_event(|e| matches!(e, Event::Removed { .. }))
        .await;
    let err = users[2].client.join(&old_invite, None).await.unwrap_err();
    assert!(
        is_refused(&err) || matches!(err, ClientError::BadInvite(_)),
        "{err}"
    );
    users[0]
        .client
        .send_text(group, "Eve cannot read this", None)
        .await
        .unwrap();
    users[1].wait_history(group, 1).await;
    assert!(
        users[2]
            .client
            .history(group, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // The reason is in the facilitator's moderation log only.
    let log = users[0].client.moderation_log(group).await.unwrap();
    let removal = log.iter().find(|e| e.action == "remove").unwrap();
    assert_eq!(removal.reason.as_deref(), Some("repeated harassment"));
    assert_eq!(removal.details["ban"], true);
    let bobs = users[1].client.moderation_log(group).await.unwrap();
    assert!(bobs.iter().all(|e| e.reason.is_none()));
    let json: serde_json::Value =
        serde_json::from_str(&users[0].client.export_moderation_log(group).await.unwrap()).unwrap();
    assert!(
        json.as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "remove")
    );
}

#[tokio::test]
async fn a_timed_mute_is_enforced_by_the_server_and_shown_with_its_end() {
    let server = TestServer::start().await;
    let (users, group) =
        users_in_group(&server.url, server.trust(), &["Alice", "Bob", "Carol"]).await;
    let bob = users[1].client.user();
    assert!(is_refused(
        &users[2]
            .client
            .mute(group, bob, Duration::from_secs(600), None)
            .await
            .unwrap_err()
    ));
    users[0]
        .client
        .mute(
            group,
            bob,
            Duration::from_secs(30 * 60),
            Some("cooling off"),
        )
        .await
        .unwrap();
    users[1].client.sync().await.unwrap();
    let status = users[1].client.status(group).await.unwrap();
    let until = status.muted_until.expect("Bob sees that he is muted");
    let err = users[1]
        .client
        .send_text(group, "let me speak", None)
        .await
        .unwrap_err();
    assert_eq!(server_code(&err), Some(ErrorCode::Muted));
    assert!(
        matches!(err, ClientError::Server { retry_after_ms: Some(ms), .. } if ms > 29 * 60 * 1000)
    );
    assert!(until.0 > confide_tests::now().0 + 29 * 60 * 1000);
    users[0].client.unmute(group, bob).await.unwrap();
    users[1].client.sync().await.unwrap();
    assert!(
        users[1]
            .client
            .status(group)
            .await
            .unwrap()
            .muted_until
            .is_none()
    );
    users[1]
        .client
        .send_text(group, "thank you", None)
        .await
        .unwrap();
}

#[tokio::test]
async fn delete_for_everyone_and_bulk_delete_reach_every_client() {
    let server = TestServer::start().await;
    let (mut users, group) =
        users_in_group(&server.url, server.trust(), &["Alice", "Bob", "Carol"]).await;
    let harmful = users[1]
        .client
        .send_text(group, "something harmful", None)
        .await
        .unwrap();
    for n in 0..3 {
        users[1]
            .client
            .send_text(group, &format!("more {n}"), None)
            .await
            .unwrap();
    }
    users[2]
        .client
        .send_text(group, "a kind reply", None)
        .await
        .unwrap();
    users[2].wait_history(group, 5).await;
    // A member cannot delete others' messages for everyone.
    assert!(is_refused(
        &users[2]
            .client
            .delete_for_everyone(group, vec![harmful.id])
            .await
            .unwrap_err()
    ));
    users[0].wait_history(group, 5).await;
    users[0]
        .client
        .delete_for_everyone(group, vec![harmful.id])
        .await
        .unwrap();
    let (event, _) = users[2]
        .wait_event(|e| matches!(e, Event::MessagesDeleted { .. }))
        .await;
    assert!(
        matches!(event, Event::MessagesDeleted { messages, .. } if messages == vec![harmful.id])
    );
    assert_eq!(
        users[2]
            .client
            .history(group, None, 100)
            .await
            .unwrap()
            .len(),
        4
    );
    // Bulk: the last three of Bob's messages.
    let n = users[0]
        .client
        .delete_recent_of(group, users[1].client.user(), 3)
        .await
        .unwrap();
    assert_eq!(n, 3);
    users[2]
        .wait_event(|e| matches!(e, Event::MessagesDeleted { .. }))
        .await;
    let left: Vec<String> = users[2]
        .client
        .history(group, None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(left, ["a kind reply"]);
}

#[tokio::test]
async fn lock_slow_mode_and_crisis_resources() {
    let server = TestServer::start().await;
    let (users, group) = users_in_group(&server.url, server.trust(), &["Alice", "Bob"]).await;
    assert!(is_refused(
        &users[1].client.set_slow_mode(group, 60).await.unwrap_err()
    ));
    assert!(is_refused(
        &users[1]
            .client
            .set_crisis_resources(group, "call me instead")
            .await
            .unwrap_err()
    ));
    assert!(is_refused(
        &users[1].client.set_locked(group, true).await.unwrap_err()
    ));
    let hours = confide_protocol::group_log::OpenHours {
        time_zone: "Europe/Berlin".into(),
        windows: vec![confide_protocol::group_log::OpenWindow {
            day: 0,
            start_minute: 18 * 60,
            end_minute: 20 * 60,
        }],
    };
    assert!(is_refused(
        &users[1]
            .client
            .set_open_hours(group, Some(hours.clone()))
            .await
            .unwrap_err()
    ));
    users[0]
        .client
        .set_open_hours(group, Some(hours))
        .await
        .unwrap();
    users[1].client.sync().await.unwrap();
    let open_now = users[1].client.status(group).await.unwrap().open_now;
    let reply = users[1].client.send_text(group, "are we open?", None).await;
    assert_eq!(
        reply.is_ok(),
        open_now,
        "the server and the client agree on the open hours"
    );
    users[0].client.set_open_hours(group, None).await.unwrap();
    users[0]
        .client
        .set_crisis_resources(group, "Crisis line: 0800 111 0111 (24/7)")
        .await
        .unwrap();
    users[0].client.set_locked(group, true).await.unwrap();
    users[1].client.sync().await.unwrap();
    let err = users[1]
        .client
        .send_text(group, "hello?", None)
        .await
        .unwrap_err();
    assert_eq!(server_code(&err), Some(ErrorCode::Locked));
    assert!(users[1].client.status(group).await.unwrap().locked);
    // Crisis resources stay readable while locked; facilitators can still post.
    let pinned = users[1].client.pinned(group).await.unwrap();
    assert_eq!(
        pinned.crisis_resources.as_deref(),
        Some("Crisis line: 0800 111 0111 (24/7)")
    );
    users[0]
        .client
        .send_text(group, "We reopen at 6pm", None)
        .await
        .unwrap();
    users[0].client.set_locked(group, false).await.unwrap();
    users[0].client.set_slow_mode(group, 600).await.unwrap();
    users[1].client.sync().await.unwrap();
    users[1]
        .client
        .send_text(group, "first", None)
        .await
        .unwrap();
    let err = users[1]
        .client
        .send_text(group, "second", None)
        .await
        .unwrap_err();
    assert_eq!(server_code(&err), Some(ErrorCode::SlowMode));
}

#[tokio::test]
async fn the_agreement_must_be_accepted_and_reaches_new_members() {
    let server = TestServer::start().await;
    let (mut users, group) = users_in_group(&server.url, server.trust(), &["Alice", "Bob"]).await;
    assert!(is_refused(
        &users[1]
            .client
            .set_agreement(group, "my rules")
            .await
            .unwrap_err()
    ));
    users[0]
        .client
        .set_agreement(group, "What is said here stays here. Be kind.")
        .await
        .unwrap();
    users[1]
        .wait_event(|e| matches!(e, Event::Pinned { .. }))
        .await;
    let pinned = users[1].client.pinned(group).await.unwrap();
    let agreement = pinned.agreement.unwrap();
    assert_eq!(agreement.text, "What is said here stays here. Be kind.");
    assert!(!agreement.accepted);
    let err = users[1]
        .client
        .send_text(group, "hi", None)
        .await
        .unwrap_err();
    assert_eq!(server_code(&err), Some(ErrorCode::AgreementRequired));
    users[1]
        .client
        .accept_agreement(group, &agreement)
        .await
        .unwrap();
    users[1]
        .client
        .send_text(group, "I agree", None)
        .await
        .unwrap();
    // A new version must be accepted again.
    users[0]
        .client
        .set_agreement(group, "Version 2: also no advice-giving.")
        .await
        .unwrap();
    users[1]
        .wait_event(|e| matches!(e, Event::Pinned { version: 2, .. }))
        .await;
    assert_eq!(
        users[1]
            .client
            .status(group)
            .await
            .unwrap()
            .agreement_pending,
        Some(2)
    );
    // Someone who joins later gets the text too (the facilitator re-sends it in the new epoch).
    let mut carol = TestUser::new(&server, "Carol").await;
    let invite = users[0]
        .client
        .create_invite(
            group,
            InviteOptions::new().valid_for(Duration::from_secs(600)),
        )
        .await
        .unwrap();
    carol.client.join(&invite, None).await.unwrap();
    carol
        .wait_event(|e| matches!(e, Event::Pinned { .. }))
        .await;
    assert_eq!(
        carol
            .client
            .pinned(group)
            .await
            .unwrap()
            .agreement
            .unwrap()
            .text,
        "Version 2: also no advice-giving."
    );
}

#[tokio::test]
async fn reports_are_verifiable_and_urgent_requests_reach_the_facilitators() {
    let server = TestServer::start().await;
    let (mut users, group) =
        users_in_group(&server.url, server.trust(), &["Alice", "Bob", "Carol"]).await;
    let hurtful = users[2]
        .client
        .send_text(group, "you are pathetic", None)
        .await
        .unwrap();
    users[1].wait_history(group, 1).await;
    users[1]
        .client
        .report(group, hurtful.seq, "personal attack")
        .await
        .unwrap();
    let (event, _) = users[0].wait_event(|e| matches!(e, Event::Report(_))).await;
    let Event::Report(report) = event else {
        unreachable!()
    };
    assert_eq!(report.offender, users[2].client.user());
    assert_eq!(report.reporter, users[1].client.user());
    assert_eq!(report.text, "you are pathetic");
    assert_eq!(report.reason, "personal attack");
    users[1]
        .client
        .request_facilitator(group, "I am not okay tonight")
        .await
        .unwrap();
    let (event, _) = users[0]
        .wait_event(|e| matches!(e, Event::UrgentRequest(_)))
        .await;
    assert!(
        matches!(event, Event::UrgentRequest(r) if r.text == "I am not okay tonight" && r.display_name == "Bob")
    );
    // Members do not receive reports or urgent requests.
    users[2].client.sync().await.unwrap();
    while let Some(e) = users[2].events.try_next() {
        assert!(!matches!(e, Event::Report(_) | Event::UrgentRequest(_)));
    }
}

#[tokio::test]
async fn private_conversations_follow_the_group_setting() {
    let server = TestServer::start().await;
    let (mut users, group) =
        users_in_group(&server.url, server.trust(), &["Alice", "Bob", "Carol"]).await;
    let (bob, carol) = (users[1].client.user(), users[2].client.user());
    // Off by default for members.
    assert!(is_refused(
        &users[1]
            .client
            .open_private(group, carol)
            .await
            .unwrap_err()
    ));
    // A facilitator can always check in privately.
    let private = users[0].client.open_private(group, bob).await.unwrap();
    // Bob was added to a conversation he did not ask for: he sees who, and accepts.
    let (event, _) = users[1]
        .wait_event(|e| matches!(e, Event::Invited { .. }))
        .await;
    assert!(
        matches!(event, Event::Invited { group: g, by_name, .. } if g == private && by_name == "Alice")
    );
    users[1].client.accept_group(private).await.unwrap();
    users[0]
        .client
        .send_text(private, "How are you after tonight?", None)
        .await
        .unwrap();
    let history = users[1].wait_history(private, 1).await;
    assert_eq!(history[0].text, "How are you after tonight?");
    assert_eq!(
        users[2]
            .client
            .history(private, None, 10)
            .await
            .map(|h| h.len())
            .unwrap_or(0),
        0
    );
    users[0]
        .client
        .set_settings(
            group,
            GroupSettings {
                members_may_message_privately: true,
            },
        )
        .await
        .unwrap();
    users[1].client.sync().await.unwrap();
    let dm = users[1].client.open_private(group, carol).await.unwrap();
    users[2]
        .wait_event(|e| matches!(e, Event::Invited { .. }))
        .await;
    users[2].client.accept_group(dm).await.unwrap();
    users[1]
        .client
        .send_text(dm, "coffee sometime?", None)
        .await
        .unwrap();
    assert_eq!(
        users[2].wait_history(dm, 1).await[0].text,
        "coffee sometime?"
    );
}

#[tokio::test]
async fn retention_deletes_old_messages_on_every_device() {
    let server = TestServer::start().await;
    let (mut users, group) = users_in_group(&server.url, server.trust(), &["Alice", "Bob"]).await;
    users[0]
        .client
        .send_text(group, "old news", None)
        .await
        .unwrap();
    users[1].wait_history(group, 1).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    users[0]
        .client
        .set_retention(group, Some(Duration::from_secs(1)))
        .await
        .unwrap();
    users[1]
        .wait_event(|e| matches!(e, Event::MessagesDeleted { .. }))
        .await;
    assert!(
        users[1]
            .client
            .history(group, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        users[0]
            .client
            .history(group, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(is_refused(
        &users[1]
            .client
            .set_retention(group, None)
            .await
            .unwrap_err()
    ));
}

#[tokio::test]
async fn a_cyrillic_look_alike_of_the_facilitators_name_is_flagged_at_approval_and_in_the_member_list()
 {
    let server = TestServer::start().await;
    let mut alice = TestUser::new(&server, "Alice").await;
    let group = alice.client.create_group().await.unwrap();
    let invite = alice
        .client
        .create_invite(
            group,
            InviteOptions::new()
                .requires_approval(true)
                .max_uses(5)
                .valid_for(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    // "Аlice" with a Cyrillic capital A (U+0410): looks exactly like "Alice".
    let impostor = TestUser::new(&server, "\u{0410}lice").await;
    let bob = TestUser::new(&server, "Bob").await;
    for joiner in [&impostor, &bob] {
        assert_eq!(
            joiner.client.join(&invite, None).await.unwrap(),
            JoinOutcome::Pending(group)
        );
        let (event, _) = alice
            .wait_event(|e| matches!(e, Event::JoinRequest(r) if r.user == joiner.client.user()))
            .await;
        let Event::JoinRequest(request) = event else {
            unreachable!()
        };
        let expected: Vec<String> = if joiner.client.user() == impostor.client.user() {
            vec!["Alice".into()]
        } else {
            vec![]
        };
        assert_eq!(request.looks_like, expected, "join request event");
    }
    // The pending list the facilitator approves from carries the same warning.
    let pending = alice.client.join_requests(group).await.unwrap();
    let warning_of = |user| {
        pending
            .iter()
            .find(|r| r.user == user)
            .map(|r| r.looks_like.clone())
            .unwrap()
    };
    assert_eq!(
        warning_of(impostor.client.user()),
        vec!["Alice".to_string()]
    );
    assert!(warning_of(bob.client.user()).is_empty());

    alice
        .client
        .approve(group, impostor.client.user())
        .await
        .unwrap();
    alice
        .client
        .approve(group, bob.client.user())
        .await
        .unwrap();
    let members = alice.client.members(group).await.unwrap();
    let looks_like = |user| {
        members
            .iter()
            .find(|m| m.user == user)
            .map(|m| m.looks_like.clone())
            .unwrap()
    };
    assert_eq!(
        looks_like(impostor.client.user()),
        vec!["Alice".to_string()]
    );
    assert_eq!(
        looks_like(alice.client.user()),
        vec!["\u{0410}lice".to_string()]
    );
    assert!(looks_like(bob.client.user()).is_empty());
}
