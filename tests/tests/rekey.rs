//! Periodic rekeying (issue 18, PROTOCOL.md §5.5): real clients move a group to a new epoch by
//! themselves after enough messages, with nobody coming or going, and a sender key that leaked
//! stops working; the real server refuses a `rekey` sooner than a minute after the epoch began,
//! by the times ops claim and by its own clock, and keeps the epoch grace for posts in flight; a
//! client refuses such a `rekey` when a malicious server serves it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use confide_client::{Event, GroupId};
use confide_protocol::envelope::Envelope;
use confide_protocol::frames::{ClientFrame, ErrorCode, ServerFrame};
use confide_protocol::group_log::{MIN_REKEY_INTERVAL_MS, OpBody};
use confide_protocol::seal::{self, SealKind, SealedPayload};
use confide_protocol::sender_key::{ReceiverChain, SenderChain};
use confide_protocol::{DeviceIdentity, Epoch, Timestamp};
use confide_server::Limits;
use confide_tests::{
    EvilServer, TestServer, TestUser, error_code, now, raw_group_of_two, rng, users_in_group,
};

/// A server that does not bound rekeys by its own clock (`min_rekey_interval` 0), for tests
/// that move the clients' clocks, not the server's, past the log's bound.
async fn server_without_rekey_interval() -> TestServer {
    TestServer::start_with(Limits {
        min_rekey_interval: Duration::ZERO,
        ..Limits::default()
    })
    .await
}

/// This device's view of `group`.
async fn info(user: &TestUser, group: GroupId) -> confide_client::GroupInfo {
    user.client
        .groups()
        .await
        .unwrap()
        .into_iter()
        .find(|g| g.group == group)
        .expect("the group is known")
}

/// The texts of a user's history of `group`, oldest first.
async fn texts(user: &TestUser, group: GroupId) -> Vec<String> {
    user.client
        .history(group, None, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect()
}

/// The device identity a test user registered with (its secret bytes kept by the test).
fn identity_of(user: &TestUser) -> DeviceIdentity {
    DeviceIdentity::from_secrets(&user.secret).unwrap()
}

/// Every envelope `user` posted through `evil`, in order, each once.
fn posts_of(evil: &EvilServer, user: &TestUser) -> Vec<Envelope> {
    let mut out: Vec<Envelope> = Vec::new();
    for frame in evil.requests_from(user.client.device()) {
        if let ClientFrame::Post { envelope, .. } = frame
            && !out.iter().any(|e| e.message_id() == envelope.message_id())
        {
            out.push(envelope);
        }
    }
    out
}

/// Every sender key `from` sealed to `to` through `evil`, in order.
fn keys_sealed(evil: &EvilServer, from: &TestUser, to: &TestUser) -> Vec<SealedPayload> {
    evil.requests_from(from.client.device())
        .into_iter()
        .flat_map(|frame| match frame {
            ClientFrame::SendSealed { items, .. } => items,
            _ => Vec::new(),
        })
        .filter(|s| s.kind == SealKind::SenderKey && s.recipient == to.client.device())
        .collect()
}

#[tokio::test]
async fn a_leaked_sender_key_stops_working_once_the_group_rekeys_itself_after_enough_messages() {
    let server = server_without_rekey_interval().await;
    let evil = EvilServer::start(&server).await;
    let (mut users, group) = users_in_group(&evil.url, evil.trust(), &["Alice", "Bob"]).await;
    for user in &mut users {
        user.go_offline().await;
        user.config.rekey_after_messages = 5;
        user.come_back().await;
        // A minute has passed since the epoch began (Bob's join), for both of them: the log
        // allows a rekey from then on.
        user.client
            .advance_clock(Duration::from_millis(MIN_REKEY_INTERVAL_MS + 1_000));
    }
    let mut bob = users.pop().unwrap();
    let mut alice = users.pop().unwrap();
    let epoch = info(&bob, group).await.epoch;
    let members = alice.client.members(group).await.unwrap().len();

    for n in 1..=5 {
        bob.client
            .send_text(group, &format!("before {n}"), None)
            .await
            .unwrap();
    }
    alice.wait_history(group, 5).await;
    assert_eq!(
        info(&bob, group).await.epoch,
        epoch,
        "five messages: no rekey yet"
    );
    // The sixth message goes in a new epoch: Bob's client rekeyed the group first.
    let sixth = bob.client.send_text(group, "after 6", None).await.unwrap();
    assert_eq!(info(&bob, group).await.epoch, Epoch(epoch.0 + 1));
    alice.wait_history(group, 6).await;
    assert_eq!(info(&alice, group).await.epoch, Epoch(epoch.0 + 1));
    alice
        .client
        .send_text(group, "after 7", None)
        .await
        .unwrap();
    bob.wait_history(group, 7).await;

    // Nobody came or went, everyone reads everything, and nobody was told of a member change.
    let expected = [
        "before 1", "before 2", "before 3", "before 4", "before 5", "after 6", "after 7",
    ];
    for user in [&alice, &bob] {
        assert_eq!(texts(user, group).await, expected);
        assert_eq!(user.client.members(group).await.unwrap().len(), members);
        assert_eq!(user.client.notices(group).await.unwrap(), []);
    }
    let log = alice.client.moderation_log(group).await.unwrap();
    let last = log.last().unwrap();
    assert_eq!(
        (last.action.as_str(), last.author),
        ("rekey", Some(bob.client.user()))
    );

    // Bob's sender key of the old epoch leaks (here: through Alice's device key, which opens
    // the copy sealed to her). It reads the old epoch, and nothing after the rekey.
    let keys = keys_sealed(&evil, &bob, &alice);
    let epochs: Vec<Epoch> = keys.iter().map(|k| k.epoch).collect();
    assert_eq!(epochs, [epoch, Epoch(epoch.0 + 1)], "one key per epoch");
    let leaked = seal::open(&identity_of(&alice), &keys[0]).unwrap();
    let leaked_chain = || ReceiverChain::from_distribution(&leaked).unwrap();
    let posts = posts_of(&evil, &bob);
    assert_eq!(posts.len(), 6);
    for before in &posts[..5] {
        assert_eq!(before.epoch, epoch);
        assert!(
            before.open(&mut leaked_chain()).is_ok(),
            "the leaked key reads its own epoch"
        );
    }
    let after = &posts[5];
    assert_eq!(after.message_id(), sixth.id);
    assert_eq!(after.epoch, Epoch(epoch.0 + 1));
    assert!(
        after.open(&mut leaked_chain()).is_err(),
        "a leaked sender key stops working after a rekey"
    );
    // Alice's own key of the new epoch is a fresh one too.
    let alice_posts = posts_of(&evil, &alice);
    assert_eq!(alice_posts.len(), 1);
    assert!(alice_posts[0].open(&mut leaked_chain()).is_err());
}

#[tokio::test]
async fn the_server_refuses_a_rekey_within_a_minute_of_the_epoch_and_keeps_the_grace_after_one() {
    let server = server_without_rekey_interval().await;
    let (mut alice, mut bob, mut state) = raw_group_of_two(&server).await;
    let old_epoch = state.epoch_ref();

    // Right after Bob was added: refused, with the log's stable code.
    let reply = alice.append(&mut state, OpBody::Rekey {}).await;
    assert_eq!(error_code(&reply), Some(ErrorCode::InvalidOp), "{reply:?}");
    let ServerFrame::Error { message, .. } = &reply else {
        unreachable!()
    };
    assert!(message.contains("rekey_too_soon"), "{message}");
    assert_eq!(state.epoch_ref(), old_epoch);

    // A minute after the epoch began (the op claims it: the server's clock check allows five
    // minutes either way), Bob — a plain member — rekeys.
    let at = Timestamp(state.epoch_started_at().0 + MIN_REKEY_INTERVAL_MS);
    assert!(at.0 <= now().0 + 5 * 60 * 1000);
    let rekey = state
        .next_op(bob.identity.device_id(), at, OpBody::Rekey {})
        .sign(&bob.identity)
        .unwrap();
    let reply = bob
        .request(|id| ClientFrame::AppendOp {
            id,
            group: state.group(),
            op: rekey.clone(),
        })
        .await;
    assert!(matches!(reply, ServerFrame::OpAppended { .. }), "{reply:?}");
    state.apply(&rekey).unwrap();
    assert_ne!(state.epoch_ref(), old_epoch);

    // A message Bob wrote just before the rekey, in the epoch it ended, is still taken: nobody
    // left, so the epoch keeps the grace posts in flight get after an admission.
    let mut chain = SenderChain::generate(&mut rng());
    let in_flight = Envelope::seal(
        &bob.identity,
        state.group(),
        old_epoch,
        &mut chain,
        b"written before the rekey",
        &mut rng(),
    )
    .unwrap();
    let reply = bob
        .request(|id| ClientFrame::Post {
            id,
            envelope: in_flight,
        })
        .await;
    assert!(matches!(reply, ServerFrame::Posted { .. }), "{reply:?}");
}

#[tokio::test]
async fn the_server_refuses_a_rekey_within_a_minute_by_its_own_clock_whatever_time_the_op_claims() {
    let server = TestServer::start().await;
    let (_alice, mut bob, mut state) = raw_group_of_two(&server).await;
    let old_epoch = state.epoch_ref();

    // Bob's rekey claims a minute after his admission: the log allows it (the server's clock
    // check allows five minutes either way) ...
    let at = Timestamp(state.epoch_started_at().0 + MIN_REKEY_INTERVAL_MS);
    let rekey = state
        .next_op(bob.identity.device_id(), at, OpBody::Rekey {})
        .sign(&bob.identity)
        .unwrap();
    assert!(state.clone().apply(&rekey).is_ok(), "the log takes it");
    // ... but on the server's clock the epoch began a moment ago: refused, with the same code.
    let reply = bob
        .request(|id| ClientFrame::AppendOp {
            id,
            group: state.group(),
            op: rekey.clone(),
        })
        .await;
    assert_eq!(error_code(&reply), Some(ErrorCode::InvalidOp), "{reply:?}");
    let ServerFrame::Error { message, .. } = &reply else {
        unreachable!()
    };
    assert!(message.contains("rekey_too_soon"), "{message}");
    assert!(message.contains("server's clock"), "{message}");

    // The group did not move: Bob's next op goes in the old epoch.
    let reply = bob.append(&mut state, OpBody::Leave {}).await;
    assert!(matches!(reply, ServerFrame::OpAppended { .. }), "{reply:?}");
    assert_eq!(
        state.epoch().0,
        old_epoch.epoch.0 + 1,
        "one epoch: the leave's"
    );
}

#[tokio::test]
async fn a_client_refuses_a_rekey_within_a_minute_of_the_epoch_that_a_malicious_server_serves() {
    let server = TestServer::start().await;
    let evil = EvilServer::start(&server).await;
    let (mut users, group) = users_in_group(&evil.url, evil.trust(), &["Alice", "Bob"]).await;
    let mut bob = users.pop().unwrap();
    let alice = users.pop().unwrap();
    let epoch = info(&bob, group).await.epoch;

    // A rekey signed with Alice's device key a second after Bob's join — the real server would
    // refuse it — pushed to Bob as the group's next op.
    let state = evil.group_state(group);
    let at = Timestamp(state.epoch_started_at().0 + 1_000);
    let op = state
        .next_op(alice.client.device(), at, OpBody::Rekey {})
        .sign(&identity_of(&alice))
        .unwrap();
    let seq = state.seq() + 1;
    assert_eq!(
        evil.inject(bob.client.device(), ServerFrame::Op { group, op, seq }),
        1
    );
    let (event, _) = bob
        .wait_event(|e| matches!(e, Event::GroupRejected(r) if r.group == group))
        .await;
    let Event::GroupRejected(rejection) = event else {
        unreachable!()
    };
    assert_eq!(rejection.seq, seq);
    assert!(
        rejection.reason.contains("too soon"),
        "{}",
        rejection.reason
    );
    let bobs = info(&bob, group).await;
    assert_eq!(bobs.epoch, epoch, "the epoch did not move");
    assert_eq!(bobs.tampered, None, "the group goes on");
    alice
        .client
        .send_text(group, "still here", None)
        .await
        .unwrap();
    assert_eq!(bob.wait_history(group, 1).await[0].text, "still here");
}
