//! What the client library gives a front end to show members around moderation: message
//! numbers from 1, notices of removals and deletions with their place among the messages, a
//! removed member's plain error, private conversations and the messages waiting in them, a
//! lasting sync refusal reported once, and registration that never leaves a half-open store.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use confide_client::{ClientError, Event, NoticeKind, RemoveOptions};
use confide_protocol::frames::{ClientFrame, ErrorCode, ServerFrame};
use confide_protocol::group_log::{MemberEntry, OpBody, Role};
use confide_protocol::{DeviceIdentity, GroupId, Seq};
use confide_tests::{EvilServer, TestServer, TestUser, Verdict, rng, users_in_group};

#[tokio::test]
async fn messages_are_numbered_from_one_whatever_the_server_stored_before_them() {
    let server = TestServer::start().await;
    let (mut users, group) = users_in_group(&server.url, server.trust(), &["Alice", "Bob"]).await;
    // Pinned texts are stored in the group as messages too.
    users[0]
        .client
        .set_crisis_resources(group, "Call 116 123.")
        .await
        .unwrap();
    let first = users[1].client.send_text(group, "one", None).await.unwrap();
    let second = users[1].client.send_text(group, "two", None).await.unwrap();
    assert!(first.seq.0 > 1, "{first:?}");
    assert_eq!((first.number, second.number), (1, 2));
    let alices = users[0].wait_history(group, 2).await;
    let numbers: Vec<u64> = alices.iter().map(|m| m.number).collect();
    assert_eq!(numbers, [1, 2]);
    assert_eq!(
        users[0].client.seq_of_number(group, 2).await.unwrap(),
        Some(alices[1].seq)
    );
    assert_eq!(users[0].client.seq_of_number(group, 3).await.unwrap(), None);
    // Stable across restarts, and a deleted message's number is not reused.
    users[0]
        .client
        .delete_for_everyone(group, vec![alices[0].id])
        .await
        .unwrap();
    users[0].go_offline().await;
    users[0].come_back().await;
    let third = users[0]
        .client
        .send_text(group, "three", None)
        .await
        .unwrap();
    assert_eq!(third.number, 3);
    let after: Vec<(u64, String)> = users[0]
        .client
        .history(group, None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.number, m.text))
        .collect();
    assert_eq!(after, [(2, "two".into()), (3, "three".into())]);
    assert_eq!(
        users[0].client.seq_of_number(group, 1).await.unwrap(),
        Some(first.seq),
        "a deleted message keeps its number's place"
    );
}

#[tokio::test]
async fn members_get_notices_of_removals_and_deletions_where_they_happened() {
    let server = TestServer::start().await;
    let (mut users, group) =
        users_in_group(&server.url, server.trust(), &["Alice", "Bob", "Carol"]).await;
    let bob = users[1].client.user();
    let hello = users[1]
        .client
        .send_text(group, "hello", None)
        .await
        .unwrap();
    let unkind = users[1]
        .client
        .send_text(group, "unkind", None)
        .await
        .unwrap();
    users[2].wait_history(group, 2).await;
    users[0]
        .client
        .delete_for_everyone(group, vec![unkind.id])
        .await
        .unwrap();
    let (event, _) = users[2].wait_event(|e| matches!(e, Event::Notice(_))).await;
    let Event::Notice(deleted) = event else {
        unreachable!()
    };
    assert_eq!(deleted.by_name, "Alice");
    assert_eq!(deleted.kind, NoticeKind::MessageDeleted { number: Some(2) });
    assert_eq!(deleted.after_seq, Some(unkind.seq));
    users[0]
        .client
        .remove(group, bob, RemoveOptions::new())
        .await
        .unwrap();
    let (event, _) = users[2].wait_event(|e| matches!(e, Event::Notice(_))).await;
    let Event::Notice(removed) = event else {
        unreachable!()
    };
    assert!(
        matches!(&removed.kind, NoticeKind::Removed { user, name, banned: false } if *user == bob && name == "Bob"),
        "{removed:?}"
    );
    // After every message before the removal.
    assert_eq!(removed.after_seq, Some(unkind.seq));
    let later = users[2]
        .client
        .send_text(group, "after Bob", None)
        .await
        .unwrap();
    // Asked later, the same notices, the removal now placed right before the next epoch's
    // first message.
    let notices = users[2].client.notices(group).await.unwrap();
    assert_eq!(notices.len(), 2, "{notices:?}");
    assert_eq!(notices[0].kind, deleted.kind);
    assert_eq!(notices[1].after_seq, Some(Seq(later.seq.0 - 1)));
    assert!(hello.seq < unkind.seq);
    // The removed member is told too, by the op that removed them.
    let bobs = users[1].client.notices(group).await.unwrap();
    assert!(
        bobs.iter()
            .any(|n| matches!(&n.kind, NoticeKind::Removed { user, .. } if *user == bob)),
        "{bobs:?}"
    );
}

#[tokio::test]
async fn a_removed_member_gets_a_plain_error_and_no_agreement_to_accept() {
    let server = TestServer::start().await;
    let (mut users, group) = users_in_group(&server.url, server.trust(), &["Alice", "Bob"]).await;
    users[0]
        .client
        .set_agreement(group, "Be kind.")
        .await
        .unwrap();
    users[1].client.sync().await.unwrap();
    let shown = users[1]
        .client
        .pinned(group)
        .await
        .unwrap()
        .agreement
        .unwrap();
    users[1]
        .client
        .accept_agreement(group, &shown)
        .await
        .unwrap();
    let bob = users[1].client.user();
    users[0]
        .client
        .remove(group, bob, RemoveOptions::new().ban(true))
        .await
        .unwrap();
    users[1]
        .wait_event(|e| matches!(e, Event::Removed { .. }))
        .await;
    let status = users[1].client.status(group).await.unwrap();
    assert_eq!(status.role, None);
    assert_eq!(
        status.agreement_pending, None,
        "a removed member is asked nothing"
    );
    let err = users[1]
        .client
        .accept_agreement(group, &shown)
        .await
        .unwrap_err();
    let ClientError::Removed {
        group: g,
        departure,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(*g, group);
    assert!(departure.banned && !departure.left);
    assert_eq!(err.code(), "removed");
    assert_eq!(
        err.to_string(),
        "you were removed and banned from this group"
    );
    for err in [
        users[1]
            .client
            .send_text(group, "still here?", None)
            .await
            .unwrap_err(),
        users[1]
            .client
            .request_facilitator(group, "help")
            .await
            .unwrap_err(),
        users[1].client.set_locked(group, true).await.unwrap_err(),
    ] {
        assert!(matches!(err, ClientError::Removed { .. }), "{err:?}");
    }
}

#[tokio::test]
async fn a_private_conversation_names_the_other_person_and_counts_what_waits() {
    let server = TestServer::start().await;
    let (mut users, group) = users_in_group(&server.url, server.trust(), &["Alice", "Bob"]).await;
    let bob = users[1].client.user();
    let private = users[0].client.open_private(group, bob).await.unwrap();
    let (event, _) = users[1]
        .wait_event(|e| matches!(e, Event::Invited { .. }))
        .await;
    assert!(
        matches!(event, Event::Invited { group: g, private: true, .. } if g == private),
        "{event:?}"
    );
    users[0]
        .client
        .send_text(private, "Are you OK?", None)
        .await
        .unwrap();
    let (event, _) = users[1]
        .wait_event(|e| matches!(e, Event::MessageWaiting { .. }))
        .await;
    assert_eq!(
        event,
        Event::MessageWaiting {
            group: private,
            waiting: 1
        }
    );
    let info = |users: &Vec<TestUser>, i: usize| {
        let client = users[i].client.clone();
        async move {
            client
                .groups()
                .await
                .unwrap()
                .into_iter()
                .find(|g| g.group == private)
                .unwrap()
        }
    };
    let bobs = info(&users, 1).await;
    assert!(bobs.invited);
    assert_eq!(bobs.waiting, 1);
    assert_eq!(bobs.private_with.unwrap().display_name, "Alice");
    let alices = info(&users, 0).await;
    assert!(!alices.invited);
    assert_eq!(alices.private_with.unwrap().user, bob);
    // The shared group is no private conversation.
    let shared = users[0]
        .client
        .groups()
        .await
        .unwrap()
        .into_iter()
        .find(|g| g.group == group)
        .unwrap();
    assert_eq!(shared.private_with, None);
    users[1].client.accept_group(private).await.unwrap();
    assert_eq!(users[1].wait_history(private, 1).await[0].number, 1);
    let bobs = info(&users, 1).await;
    assert!(!bobs.invited);
    assert_eq!(bobs.waiting, 0);
}

/// A test user's member entry, as a group's `add` names them.
async fn entry_of(user: &TestUser, name: &str) -> MemberEntry {
    MemberEntry {
        display_name: name.into(),
        ..user.client.member_entry().await.unwrap()
    }
}

/// Adds `user` (as `name`) to `group`, by `by`, without an invite.
async fn add(by: &TestUser, group: GroupId, user: &TestUser, name: &str) {
    by.client
        .op(
            group,
            OpBody::Add {
                member: entry_of(user, name).await,
                invite: None,
                invite_sig: None,
                invite_device: None,
            },
        )
        .await
        .unwrap();
}

/// This device's view of `group`, after a sync.
async fn info_of(user: &TestUser, group: GroupId) -> confide_client::GroupInfo {
    user.client.sync().await.unwrap();
    user.client
        .groups()
        .await
        .unwrap()
        .into_iter()
        .find(|g| g.group == group)
        .unwrap()
}

/// Mallory makes a group, adds Alice and Bob, hands Alice the facilitator role and leaves: two
/// members, no invite, yet no private conversation with Alice, who never started one. A real
/// private conversation says whether its other person is someone from the user's groups: a
/// stranger whose name passes for Alice is named as looking like her.
#[tokio::test]
async fn only_a_group_of_the_two_alone_is_a_private_conversation_and_look_alikes_are_named() {
    let server = TestServer::start().await;
    let (mut users, shared) =
        users_in_group(&server.url, server.trust(), &["Alice", "Bob", "Mallory"]).await;
    let mallory = users.pop().unwrap();
    let bob = users.pop().unwrap();
    let alice = users.pop().unwrap();
    let made = mallory.client.create_group().await.unwrap();
    add(&mallory, made, &alice, "Alice").await;
    add(&mallory, made, &bob, "Bob").await;
    mallory
        .client
        .set_role(made, alice.client.user(), Role::Facilitator)
        .await
        .unwrap();
    mallory.client.leave(made).await.unwrap();
    let info = info_of(&bob, made).await;
    assert!(info.invited && info.members == 2, "{info:?}");
    assert_eq!(info.private_with, None);

    // Someone from none of Bob's groups, named like Alice (a Cyrillic А).
    let stranger = TestUser::new(&server, "\u{410}lice").await;
    let theirs = stranger.client.create_group().await.unwrap();
    add(&stranger, theirs, &bob, "Bob").await;
    let peer = info_of(&bob, theirs).await.private_with.unwrap();
    assert_eq!(peer.display_name, "\u{410}lice");
    assert_eq!(peer.shared_groups, []);
    assert_eq!(peer.looks_like, [("Alice".to_string(), shared)]);
    // The real Alice: from Bob's group, and passing for nobody.
    let hers = alice
        .client
        .open_private(shared, bob.client.user())
        .await
        .unwrap();
    let peer = info_of(&bob, hers).await.private_with.unwrap();
    assert_eq!(peer.user, alice.client.user());
    assert_eq!(peer.shared_groups, [shared]);
    assert_eq!(peer.looks_like, []);
}

/// Bob is removed, then added back without asking: until he accepts the group again, his
/// notices end at the removal — nothing of what happened after he was put back is shown.
#[tokio::test]
async fn notices_stop_where_a_removed_member_was_put_back_until_they_accept_again() {
    let server = TestServer::start().await;
    let (mut users, group) = users_in_group(&server.url, server.trust(), &["Alice", "Bob"]).await;
    let mut bob = users.pop().unwrap();
    let alice = users.pop().unwrap();
    alice
        .client
        .remove(group, bob.client.user(), RemoveOptions::new())
        .await
        .unwrap();
    bob.wait_event(|e| matches!(e, Event::Removed { .. })).await;
    add(&alice, group, &bob, "Bob").await;
    bob.wait_event(|e| matches!(e, Event::Invited { .. })).await;
    let after = alice
        .client
        .send_text(group, "while Bob has not accepted", None)
        .await
        .unwrap();
    alice
        .client
        .delete_for_everyone(group, vec![after.id])
        .await
        .unwrap();
    bob.wait_event(|e| matches!(e, Event::GroupChanged(c) if c.action == "delete_messages"))
        .await;
    let kinds = |notices: Vec<confide_client::GroupNotice>| -> Vec<NoticeKind> {
        notices.into_iter().map(|n| n.kind).collect()
    };
    let notices = kinds(bob.client.notices(group).await.unwrap());
    assert!(
        matches!(notices.as_slice(), [NoticeKind::Removed { .. }]),
        "{notices:?}"
    );
    bob.client.accept_group(group).await.unwrap();
    let notices = kinds(bob.client.notices(group).await.unwrap());
    assert!(
        matches!(
            notices.as_slice(),
            [
                NoticeKind::Removed { .. },
                NoticeKind::MessageDeleted { .. }
            ]
        ),
        "{notices:?}"
    );
}

#[tokio::test]
async fn a_group_the_server_refuses_for_good_is_reported_once_until_it_is_served_again() {
    let server = TestServer::start().await;
    let evil = EvilServer::start(&server).await;
    let mut alice = TestUser::register(&evil.url, evil.trust(), "Alice").await;
    let gone = alice.client.create_group().await.unwrap();
    let kept = alice.client.create_group().await.unwrap();
    let device = alice.client.device();
    evil.on_requests(device, move |frame| match frame {
        ClientFrame::Sync { id, group, .. } if group == gone => {
            Verdict::Answer(vec![ServerFrame::Error {
                id: Some(id),
                code: ErrorCode::NotMember,
                message: "this device is not a member of the group".into(),
                retry_after_ms: None,
            }])
        }
        other => Verdict::Forward(other),
    });
    let err = alice.client.sync().await.unwrap_err();
    assert_eq!(err.server_code(), Some(ErrorCode::NotMember), "{err}");
    let (event, _) = alice
        .wait_event(|e| matches!(e, Event::SyncRefused { .. }))
        .await;
    assert!(matches!(event, Event::SyncRefused { group, .. } if group == gone));
    alice.client.sync().await.unwrap();
    // Said once, but kept where front ends look every time: the group stays marked as
    // refused, with the date it started, whoever saw the event.
    let refusal = |groups: Vec<confide_client::GroupInfo>, group| {
        groups
            .into_iter()
            .find(|g| g.group == group)
            .unwrap()
            .sync_refused
    };
    let marked = refusal(alice.client.groups().await.unwrap(), gone).unwrap();
    assert_eq!(marked.code, "not_member");
    assert!(marked.since.is_some());
    assert_eq!(refusal(alice.client.groups().await.unwrap(), kept), None);
    // Also after a restart: it was reported, and stays reported — and marked.
    alice.go_offline().await;
    alice.come_back().await;
    alice.client.synced().await.unwrap();
    alice.client.sync().await.unwrap();
    assert_eq!(
        refusal(alice.client.groups().await.unwrap(), gone),
        Some(marked)
    );
    alice.client.send_text(kept, "fine", None).await.unwrap();
    // Served again: the mark goes, and a later refusal is news again.
    evil.honest(device);
    alice.client.sync().await.unwrap();
    assert_eq!(refusal(alice.client.groups().await.unwrap(), gone), None);
    evil.on_requests(device, move |frame| match frame {
        ClientFrame::Sync { id, group, .. } if group == gone => {
            Verdict::Answer(vec![ServerFrame::Error {
                id: Some(id),
                code: ErrorCode::NotMember,
                message: "not a member".into(),
                retry_after_ms: None,
            }])
        }
        other => Verdict::Forward(other),
    });
    assert!(alice.client.sync().await.is_err());
    alice.client.sync().await.unwrap();
}

/// The server lists a group this device never held and refuses to serve it (frames
/// manipulated: the `groups` reply gets a made-up group; every `sync` of it is answered
/// `no_such_group`). That is no concern of the user's: no sync may fail for it, or every
/// short-lived front end (one command, one sync) would fail at start, every time.
#[tokio::test]
async fn a_made_up_group_the_server_lists_and_refuses_does_not_fail_any_sync() {
    let server = TestServer::start().await;
    let evil = EvilServer::start(&server).await;
    let mut alice = TestUser::register(&evil.url, evil.trust(), "Alice").await;
    let kept = alice.client.create_group().await.unwrap();
    let device = alice.client.device();
    let made_up = confide_protocol::GroupId::random(&mut rng());
    evil.on_server_frames(device, move |frame| match frame {
        ServerFrame::Groups { id, mut groups } => {
            groups.push(confide_protocol::frames::GroupSummary {
                group: made_up,
                op_head_seq: 0,
                last_seq: Seq(0),
            });
            vec![ServerFrame::Groups { id, groups }]
        }
        other => vec![other],
    });
    evil.on_requests(device, move |frame| match frame {
        ClientFrame::Sync { id, group, .. } if group == made_up => {
            Verdict::Answer(vec![ServerFrame::Error {
                id: Some(id),
                code: ErrorCode::NoSuchGroup,
                message: "no such group".into(),
                retry_after_ms: None,
            }])
        }
        other => Verdict::Forward(other),
    });
    for _ in 0..2 {
        alice.client.sync().await.unwrap();
    }
    alice.go_offline().await;
    alice.come_back().await;
    alice.client.synced().await.unwrap();
    let groups = alice.client.groups().await.unwrap();
    assert!(groups.iter().all(|g| g.group != made_up), "{groups:?}");
    assert!(
        groups.iter().all(|g| g.sync_refused.is_none()),
        "{groups:?}"
    );
    alice.client.send_text(kept, "fine", None).await.unwrap();
}

#[tokio::test]
async fn registering_succeeds_once_the_server_has_registered_even_if_the_first_sync_fails() {
    let server = TestServer::start().await;
    let evil = EvilServer::start(&server).await;
    let identity = DeviceIdentity::generate(&mut rng());
    let device = identity.device_id();
    // Registered, then the first sync is refused: the identity is the server's now and must
    // not be thrown away.
    evil.on_requests(device, |frame| match frame {
        ClientFrame::ListGroups { id } => Verdict::Answer(vec![ServerFrame::Error {
            id: Some(id),
            code: ErrorCode::Storage,
            message: "the server's storage failed".into(),
            retry_after_ms: None,
        }]),
        other => Verdict::Forward(other),
    });
    let dir = tempfile::tempdir().unwrap();
    let mut config =
        confide_client::ClientConfig::new(&evil.url, evil.trust(), dir.path().join("store"));
    config.kdf = confide_protocol::identity::KdfParams::INSECURE_FOR_TESTS;
    let (client, _events) = confide_client::Client::register_with_identity(
        config.clone(),
        "Alice",
        confide_tests::PASSPHRASE,
        identity,
    )
    .await
    .unwrap();
    assert!(client.synced().await.is_err());
    evil.honest(device);
    client.sync().await.unwrap();
    client.create_group().await.unwrap();
    client.shutdown().await;
    let (client, _events) = confide_client::Client::open(config, confide_tests::PASSPHRASE)
        .await
        .unwrap();
    client.synced().await.unwrap();
    client.shutdown().await;
}

#[tokio::test]
async fn a_failed_registration_has_closed_the_store_when_it_returns() {
    let mut server = TestServer::start().await;
    server.stop().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let mut config = confide_client::ClientConfig::new(&server.url, server.trust(), &path);
    config.kdf = confide_protocol::identity::KdfParams::INSECURE_FOR_TESTS;
    let err = confide_client::Client::register(config, "Alice", confide_tests::PASSPHRASE)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Transport(_)), "{err:?}");
    // Nothing holds the store any more: the caller may remove it at once.
    let lock = confide_client::store::StoreLock::acquire(&path).unwrap();
    drop(lock);
    std::fs::remove_dir_all(&path).unwrap();
}
