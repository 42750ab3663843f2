//! What a malicious server does to real clients, and what the users see instead.
//!
//! Every client here connects to an [`EvilServer`]: it presents the real server's certificate
//! (the clients trust "the server", and this is the server), relays to a real one behind it, and
//! rewrites, withholds, injects or answers frames per device as each test says.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use confide_client::{ClientError, Event, InviteOptions, RemoveOptions};
use confide_protocol::envelope::Envelope;
use confide_protocol::frames::{ClientFrame, InboxItem, ServerFrame, StoredMessage};
use confide_protocol::group_log::OpBody;
use confide_protocol::{GroupId, MessageId, Seq, Timestamp};
use confide_tests::evil::{map_messages, map_ops, op_seq};
use confide_tests::{
    EvilServer, RECV_TIMEOUT, RawClient, TestServer, TestUser, Verdict, now, users_in_group,
};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Whether `event` is an `Event::GroupBehind` for this group and epoch.
fn is_group_behind(event: &Event, group: GroupId, epoch: u64) -> bool {
    matches!(event, Event::GroupBehind { group: g, seen_epoch, .. } if *g == group && *seen_epoch == epoch)
}

/// The seq an `Event::OrderWarning` names for this group, if `event` is one.
fn order_warning(event: &Event, group: GroupId) -> Option<u64> {
    match event {
        Event::OrderWarning(r) if r.group == group => Some(r.seq),
        _ => None,
    }
}

/// Whether a `send_text` result means "held, sent once the log has caught up".
fn is_held(result: &Result<confide_client::ChatMessage, ClientError>) -> bool {
    matches!(result, Err(ClientError::Held))
}

/// Waits for an event matching `pred` (described by `what`, for the failure message), keeping
/// every event seen (it included) in `log`.
async fn wait_logged(
    user: &mut TestUser,
    log: &mut Vec<Event>,
    what: &str,
    pred: impl Fn(&Event) -> bool,
) {
    let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
    loop {
        let event = match tokio::time::timeout_at(deadline, user.events.next()).await {
            Ok(Some(event)) => event,
            Ok(None) => panic!("the client stopped before {what}; events seen: {log:#?}"),
            Err(_) => panic!("never saw {what}; events seen: {log:#?}"),
        };
        let found = pred(&event);
        log.push(event);
        if found {
            return;
        }
    }
}

/// Keeps every event already reported in `log`, without waiting.
fn drain(user: &mut TestUser, log: &mut Vec<Event>) {
    while let Some(event) = user.events.try_next() {
        log.push(event);
    }
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

/// Waits until `text` is in the user's history of `group` (logging every event meanwhile).
async fn until_shown(user: &mut TestUser, log: &mut Vec<Event>, group: GroupId, text: &str) {
    if texts(user, group).await.iter().any(|t| t == text) {
        return;
    }
    let what = format!("{text:?} arrive");
    wait_logged(
        user,
        log,
        &what,
        |e| matches!(e, Event::Message(m) if m.group == group && m.text == text),
    )
    .await;
}

/// This device's view of `group`.
async fn group_info(user: &TestUser, group: GroupId) -> confide_client::GroupInfo {
    user.client
        .groups()
        .await
        .unwrap()
        .into_iter()
        .find(|g| g.group == group)
        .expect("the group is known")
}

/// The envelope of a message a device posted, as the evil server saw it go by.
fn posted_envelope(evil: &EvilServer, user: &TestUser, message: MessageId) -> Envelope {
    evil.requests_from(user.client.device())
        .into_iter()
        .find_map(|frame| match frame {
            ClientFrame::Post { envelope, .. } if envelope.message_id() == message => {
                Some(envelope)
            }
            _ => None,
        })
        .expect("the post went through the evil server")
}

/// [`users_in_group`] with every client connected to the evil server.
async fn group_of(evil: &EvilServer, names: &[&str]) -> (Vec<TestUser>, GroupId) {
    users_in_group(&evil.url, evil.trust(), names).await
}

/// Makes the server serve `device`, in `group`, the first message's envelope at the second's
/// seq and the other way round (each given as its author and the message as posted).
fn swap_for(
    evil: &EvilServer,
    device: confide_protocol::DeviceId,
    group: GroupId,
    ((first_author, first), (second_author, second)): (
        (&TestUser, &confide_client::ChatMessage),
        (&TestUser, &confide_client::ChatMessage),
    ),
) {
    let first_env = posted_envelope(evil, first_author, first.id);
    let second_env = posted_envelope(evil, second_author, second.id);
    let (a, b) = (first.seq, second.seq);
    evil.on_server_frames(device, move |frame| {
        map_messages(frame, |g, m| {
            if g != group {
                return vec![m];
            }
            let envelope = if m.seq == a {
                second_env.clone()
            } else if m.seq == b {
                first_env.clone()
            } else {
                m.envelope
            };
            vec![StoredMessage { envelope, ..m }]
        })
    });
}

/// Alice (facilitator), Bob and Carol in a group behind `evil`, Bob and Carol having read
/// Alice's "welcome"; with the events each has seen so far.
async fn welcomed_three(evil: &EvilServer) -> (GroupId, [TestUser; 3], [Vec<Event>; 3]) {
    let (mut users, group) = group_of(evil, &["Alice", "Bob", "Carol"]).await;
    let mut carol = users.pop().unwrap();
    let mut bob = users.pop().unwrap();
    let alice = users.pop().unwrap();
    let (mut bob_log, mut carol_log) = (Vec::new(), Vec::new());
    alice
        .client
        .send_text(group, "welcome", None)
        .await
        .unwrap();
    until_shown(&mut bob, &mut bob_log, group, "welcome").await;
    until_shown(&mut carol, &mut carol_log, group, "welcome").await;
    (group, [alice, bob, carol], [Vec::new(), bob_log, carol_log])
}

// ---------------------------------------------------------------------------------------------
// 1. A forged op
// ---------------------------------------------------------------------------------------------

/// The server serves, as the group's next op, a mute of Bob signed by a device of its own —
/// not a member, so not allowed to sign anything in the group. Frames manipulated: one injected
/// `op` push, and every `sync_page` Bob gets that reaches the log's head carries the forgery as
/// its next op.
///
/// Bob's client must refuse it and say so once, keep the verified log, go on syncing (a message
/// Alice sends meanwhile arrives), keep the group usable across a restart, and apply the genuine
/// next op once the server serves it.
#[tokio::test]
async fn a_forged_op_served_by_the_server_does_not_freeze_the_group() {
    let server = TestServer::start().await;
    let evil = EvilServer::start(&server).await;
    let (mut users, group) = group_of(&evil, &["Alice", "Bob"]).await;
    let mut bob = users.pop().unwrap();
    let alice = users.pop().unwrap();
    let mut log = Vec::new();
    alice
        .client
        .send_text(group, "welcome", None)
        .await
        .unwrap();
    until_shown(&mut bob, &mut log, group, "welcome").await;

    // The forgery: the next op of the verified log, signed by the server's own device.
    let mallory = RawClient::register(&server, "Mallory").await;
    let state = evil.group_state(group);
    let forged_seq = state.seq() + 1;
    let forged = mallory.sign_next(
        &state,
        OpBody::Mute {
            user: bob.client.user(),
            until: Timestamp(now().0 + 3_600_000),
        },
    );
    let served = Arc::new(AtomicUsize::new(0));
    {
        let (forged, served) = (forged.clone(), served.clone());
        evil.on_server_frames(bob.client.device(), move |frame| match frame {
            ServerFrame::SyncPage {
                id,
                group: g,
                mut ops,
                messages,
                next_op_seq,
                next_seq,
                complete,
            } if g == group && next_op_seq == forged_seq => {
                ops.push(forged.clone());
                served.fetch_add(1, SeqCst);
                vec![ServerFrame::SyncPage {
                    id,
                    group: g,
                    ops,
                    messages,
                    next_op_seq: forged_seq + 1,
                    next_seq,
                    complete,
                }]
            }
            other => vec![other],
        });
    }
    let pushed = evil.inject(
        bob.client.device(),
        ServerFrame::Op {
            group,
            op: forged.clone(),
            seq: forged_seq,
        },
    );
    assert_eq!(pushed, 1, "Bob is connected");
    wait_logged(
        &mut bob,
        &mut log,
        "the forged op refused",
        |e| matches!(e, Event::GroupRejected(r) if r.group == group && r.seq == forged_seq),
    )
    .await;
    // The server keeps serving it on every sync.
    for _ in 0..3 {
        bob.client.sync().await.unwrap();
    }

    // Syncing goes on: what Alice says meanwhile reaches Bob.
    alice
        .client
        .send_text(group, "while the server forges", None)
        .await
        .unwrap();
    until_shown(&mut bob, &mut log, group, "while the server forges").await;
    bob.client.sync().await.unwrap();
    drain(&mut bob, &mut log);
    let told = log
        .iter()
        .filter(|e| matches!(e, Event::GroupRejected(r) if r.group == group && r.seq == forged_seq))
        .count();
    assert_eq!(
        told, 1,
        "Bob is told once about the forged op, however often it is served: {log:#?}"
    );
    assert!(
        served.load(SeqCst) >= 3,
        "Bob kept syncing the group (the forgery was served {} times)",
        served.load(SeqCst)
    );
    let info = group_info(&bob, group).await;
    assert_eq!(info.tampered, None, "the group is not frozen");
    assert_eq!(info.epoch, state.epoch(), "the verified head is kept");
    assert!(
        bob.client
            .members(group)
            .await
            .unwrap()
            .iter()
            .all(|m| m.muted_until.is_none()),
        "the forged mute was not applied"
    );

    // A restart (while the server still forges) does not find the group frozen.
    bob.go_offline().await;
    bob.come_back().await;
    let mut log = Vec::new();
    wait_logged(&mut bob, &mut log, "a sync", |e| matches!(e, Event::Synced)).await;
    assert_eq!(group_info(&bob, group).await.tampered, None);

    // The server serves the genuine chain again: the group recovers by itself.
    evil.honest(bob.client.device());
    alice
        .client
        .create_invite(
            group,
            InviteOptions::new().valid_for(Duration::from_secs(600)),
        )
        .await
        .unwrap();
    wait_logged(&mut bob, &mut log, "the genuine next op applied", |e| {
        matches!(e, Event::GroupChanged(c) if c.group == group && c.op_seq == forged_seq && c.action == "invite")
    })
    .await;
    alice
        .client
        .send_text(group, "after the attack", None)
        .await
        .unwrap();
    until_shown(&mut bob, &mut log, group, "after the attack").await;
}

// ---------------------------------------------------------------------------------------------
// 2. A withheld removal
// ---------------------------------------------------------------------------------------------

/// Inbox ids the evil server makes up for payloads it relays itself (far above the real ones).
const FAKE_INBOX_ID: u64 = 1 << 40;

/// Alice removes Carol. The server keeps the removal (and every later op) from Bob and Carol,
/// while Bob still gets what names the new epoch (Alice's new sender key, her new-epoch
/// message). It relays whatever Bob sends in the old epoch to Carol itself: a sender key sealed
/// to Carol goes into Carol's inbox, an old-epoch post is answered with a made-up `posted` and
/// pushed to Carol; and it answers Carol's syncs itself (the real server would tell her she is
/// no member). Frames manipulated: `op` pushes and `sync_page` ops to Bob and Carol (withheld
/// from the removal on); Bob's `send_sealed` (Carol's items taken out and injected into Carol's
/// inbox) and old-epoch `post`s (answered, injected to Carol as `message`); Carol's `sync`s.
///
/// Bob's client must notice it is behind, hold his message (nothing posted in the old epoch,
/// no new sender key for Carol), and send it in the new epoch once the server stops
/// withholding; Carol never reads it.
#[tokio::test]
async fn a_withheld_removal_does_not_let_the_removed_member_read_later_posts() {
    const HELD: &str = "something only the group should read";
    let server = TestServer::start().await;
    let evil = EvilServer::start(&server).await;
    let (group, [mut alice, mut bob, mut carol], [mut alice_log, mut bob_log, mut carol_log]) =
        welcomed_three(&evil).await;
    let (bob_dev, carol_dev) = (bob.client.device(), carol.client.device());
    let state = evil.group_state(group);
    let old_epoch = state.epoch();
    let removal_seq = state.seq() + 1;

    // The attack.
    let withhold = move |frame| {
        map_ops(frame, |_, op| {
            if op_seq(&op) >= removal_seq {
                vec![]
            } else {
                vec![op]
            }
        })
    };
    evil.on_server_frames(bob_dev, withhold);
    evil.on_server_frames(carol_dev, withhold);
    let relayed: Arc<Mutex<Vec<StoredMessage>>> = Arc::default();
    {
        let (handle, relayed) = (evil.handle(), relayed.clone());
        let mut fake_inbox = FAKE_INBOX_ID;
        evil.on_requests(bob_dev, move |frame| match frame {
            ClientFrame::SendSealed { id, items }
                if items.iter().any(|i| i.recipient == carol_dev) =>
            {
                let (to_carol, rest): (Vec<_>, Vec<_>) =
                    items.into_iter().partition(|i| i.recipient == carol_dev);
                let items = to_carol
                    .into_iter()
                    .map(|payload| {
                        fake_inbox += 1;
                        InboxItem {
                            inbox_id: fake_inbox,
                            received_at: now(),
                            payload,
                        }
                    })
                    .collect();
                handle.inject(carol_dev, ServerFrame::Inbox { items });
                if rest.is_empty() {
                    Verdict::Answer(vec![ServerFrame::Ok { id }])
                } else {
                    Verdict::Forward(ClientFrame::SendSealed { id, items: rest })
                }
            }
            ClientFrame::Post { id, envelope }
                if envelope.group == group && envelope.epoch == old_epoch =>
            {
                let mut relayed = relayed.lock().unwrap();
                let last = relayed.last().map_or(Seq(0), |m| m.seq);
                let seq = Seq(handle.last_seq(group).0.max(last.0) + 1);
                let message = envelope.message_id();
                relayed.push(StoredMessage {
                    seq,
                    received_at: now(),
                    envelope: envelope.clone(),
                });
                handle.inject(
                    carol_dev,
                    ServerFrame::Message {
                        group,
                        seq,
                        received_at: now(),
                        envelope,
                    },
                );
                Verdict::Answer(vec![ServerFrame::Posted {
                    id,
                    group,
                    seq,
                    message,
                }])
            }
            other => Verdict::Forward(other),
        });
    }
    {
        let relayed = relayed.clone();
        evil.on_requests(carol_dev, move |frame| match frame {
            ClientFrame::Sync {
                id,
                group: g,
                after_op_seq,
                after_seq,
                ..
            } if g == group => {
                let messages: Vec<StoredMessage> = relayed
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|m| m.seq > after_seq)
                    .cloned()
                    .collect();
                let next_seq = Seq(messages.last().map_or(after_seq, |m| m.seq).0 + 1);
                Verdict::Answer(vec![ServerFrame::SyncPage {
                    id,
                    group,
                    ops: vec![],
                    messages,
                    next_op_seq: after_op_seq.map_or(0, |s| s + 1),
                    next_seq,
                    complete: true,
                }])
            }
            other => Verdict::Forward(other),
        });
    }
    let bob_before = evil.requests_from(bob_dev).len();

    alice
        .client
        .remove(group, carol.client.user(), RemoveOptions::new())
        .await
        .unwrap();
    alice
        .client
        .send_text(group, "Carol has left the group", None)
        .await
        .unwrap();
    let new_epoch = old_epoch.0 + 1;
    // Bob gets what names the new epoch: Alice's sender key for it and her message in it.
    evil.until_delivered(bob_dev, |f| {
        matches!(f, ServerFrame::Inbox { items } if items.iter().any(|i| i.payload.epoch.0 == new_epoch))
    })
    .await;
    evil.until_delivered(
        bob_dev,
        |f| matches!(f, ServerFrame::Message { envelope, .. } if envelope.epoch.0 == new_epoch),
    )
    .await;
    bob.client.sync().await.unwrap();
    drain(&mut bob, &mut bob_log);

    let sent = bob.client.send_text(group, HELD, None).await;
    let _ = carol.client.sync().await;
    drain(&mut carol, &mut carol_log);
    assert!(
        !texts(&carol, group).await.iter().any(|t| t == HELD),
        "Carol, removed, read what Bob sent after her removal (Bob's send returned {sent:?})"
    );
    let bob_during: Vec<ClientFrame> = evil.requests_from(bob_dev)[bob_before..].to_vec();
    assert!(
        !bob_during.iter().any(
            |f| matches!(f, ClientFrame::Post { envelope, .. } if envelope.epoch == old_epoch)
        ),
        "Bob's client posted in an epoch it had seen end"
    );
    assert!(
        !bob_during.iter().any(|f| matches!(f, ClientFrame::SendSealed { items, .. } if items.iter().any(|i| i.recipient == carol_dev))),
        "Bob's client sealed a new sender key to Carol"
    );
    assert!(
        is_held(&sent),
        "Bob's message is held until his client catches up: {sent:?}"
    );
    assert!(
        bob_log.iter().any(|e| is_group_behind(e, group, new_epoch)),
        "Bob is warned that the server holds back the group's log: {bob_log:#?}"
    );

    // The server stops withholding (from Bob): he catches up and his message goes out in the
    // new epoch. Old-epoch posts would still be relayed to Carol.
    evil.on_server_frames(bob_dev, |frame| vec![frame]);
    bob.client.sync().await.unwrap();
    wait_logged(
        &mut bob,
        &mut bob_log,
        "Bob's held message sent",
        |e| matches!(e, Event::Sent(m) if m.group == group && m.text == HELD),
    )
    .await;
    until_shown(&mut alice, &mut alice_log, group, HELD).await;
    let bob_posts: Vec<Envelope> = evil.requests_from(bob_dev)[bob_before..]
        .iter()
        .filter_map(|f| match f {
            ClientFrame::Post { envelope, .. } => Some(envelope.clone()),
            _ => None,
        })
        .collect();
    assert!(
        !bob_posts.is_empty() && bob_posts.iter().all(|e| e.epoch.0 == new_epoch),
        "Bob's message went out in the new epoch only"
    );
    let _ = carol.client.sync().await;
    assert!(!texts(&carol, group).await.iter().any(|t| t == HELD));
}

// ---------------------------------------------------------------------------------------------
// 3. A removed member's post slipped in after the removal
// ---------------------------------------------------------------------------------------------

/// Carol posts; the server keeps her post from Alice and Bob. Alice removes Carol and posts in
/// the new epoch herself. The server then serves Carol's old-epoch post at a later seq, after
/// Alice's. Frames manipulated: `message` pushes and `sync_page` messages to Alice and Bob
/// (Carol's post taken out at its real seq, served again right after Alice's post with the
/// seq after it), and one injected `message` push to Alice.
///
/// Alice's client — she removed Carol and posted in the new epoch — must refuse it, and so must
/// Bob's.
#[tokio::test]
async fn a_removed_members_post_after_the_removal_is_refused_by_the_facilitator_who_removed_them() {
    let server = TestServer::start().await;
    let evil = EvilServer::start(&server).await;
    let (group, [mut alice, mut bob, carol], [mut alice_log, mut bob_log, _]) =
        welcomed_three(&evil).await;
    let (alice_dev, bob_dev, carol_dev) = (
        alice.client.device(),
        bob.client.device(),
        carol.client.device(),
    );

    // The server keeps Carol's posts from Alice and Bob, and serves the one it holds right
    // after the message whose seq precedes `late`'s.
    let late: Arc<Mutex<Option<StoredMessage>>> = Arc::default();
    for device in [alice_dev, bob_dev] {
        let late = late.clone();
        evil.on_server_frames(device, move |frame| {
            let late = late.lock().unwrap().clone();
            map_messages(frame, |_, m| {
                if m.envelope.sender == carol_dev {
                    return vec![];
                }
                match &late {
                    Some(l) if m.seq.0 + 1 == l.seq.0 => vec![m, l.clone()],
                    _ => vec![m],
                }
            })
            .into_iter()
            .map(|mut f| {
                // A page that now ends further on says so in its cursor.
                if let ServerFrame::SyncPage {
                    messages, next_seq, ..
                } = &mut f
                    && let Some(last) = messages.last()
                {
                    *next_seq = (*next_seq).max(Seq(last.seq.0 + 1));
                }
                f
            })
            .collect()
        });
    }
    let held = carol
        .client
        .send_text(group, "held back", None)
        .await
        .unwrap();
    // Alice's post after the removal will get the next seq; Carol's is served after it.
    let late_seq = Seq(held.seq.0 + 2);
    let late_message = StoredMessage {
        seq: late_seq,
        received_at: now(),
        envelope: posted_envelope(&evil, &carol, held.id),
    };
    *late.lock().unwrap() = Some(late_message.clone());

    alice
        .client
        .remove(group, carol.client.user(), RemoveOptions::new())
        .await
        .unwrap();
    let after = alice
        .client
        .send_text(group, "after the removal", None)
        .await
        .unwrap();
    assert_eq!(
        after.seq.0 + 1,
        late_seq.0,
        "Alice's post got the seq before the slipped-in one"
    );
    evil.inject(
        alice_dev,
        ServerFrame::Message {
            group,
            seq: late_seq,
            received_at: late_message.received_at,
            envelope: late_message.envelope.clone(),
        },
    );
    alice.client.sync().await.unwrap();
    drain(&mut alice, &mut alice_log);
    assert_eq!(
        texts(&alice, group).await,
        ["welcome", "after the removal"],
        "Alice, who removed Carol, was shown Carol's old-epoch post stored after the removal"
    );
    assert!(
        alice_log.iter().any(
            |e| matches!(e, Event::MessageRejected(r) if r.group == group && r.seq == late_seq.0)
        ),
        "Alice is told a message was refused: {alice_log:#?}"
    );

    // Bob, who has the removal too, refuses it as well.
    until_shown(&mut bob, &mut bob_log, group, "after the removal").await;
    bob.client.sync().await.unwrap();
    drain(&mut bob, &mut bob_log);
    assert_eq!(texts(&bob, group).await, ["welcome", "after the removal"]);
    assert!(
        bob_log.iter().any(
            |e| matches!(e, Event::MessageRejected(r) if r.group == group && r.seq == late_seq.0)
        ),
        "Bob is told a message was refused: {bob_log:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Reordered messages of one sender
// ---------------------------------------------------------------------------------------------

/// Alice sends two messages while Bob is offline; the server swaps them when Bob syncs. Frames
/// manipulated: the `sync_page` messages to Bob (the envelopes at the two seqs swapped).
///
/// Both are authentic and are shown; Bob is warned that their order is not the order Alice sent
/// them in (her sender-key iterations tell it), naming one of the two seqs.
#[tokio::test]
async fn messages_one_sender_sent_in_order_and_the_server_swapped_are_flagged() {
    let server = TestServer::start().await;
    let evil = EvilServer::start(&server).await;
    let (mut users, group) = group_of(&evil, &["Alice", "Bob"]).await;
    let mut bob = users.pop().unwrap();
    let alice = users.pop().unwrap();
    let mut log = Vec::new();
    alice.client.send_text(group, "hello", None).await.unwrap();
    until_shown(&mut bob, &mut log, group, "hello").await;
    bob.go_offline().await;

    let first = alice.client.send_text(group, "first", None).await.unwrap();
    let second = alice.client.send_text(group, "second", None).await.unwrap();
    let (a, b) = (first.seq, second.seq);
    swap_for(
        &evil,
        bob.client.device(),
        group,
        ((&alice, &first), (&alice, &second)),
    );

    bob.come_back().await;
    let mut log = Vec::new();
    wait_logged(&mut bob, &mut log, "a sync", |e| matches!(e, Event::Synced)).await;
    bob.client.sync().await.unwrap();
    drain(&mut bob, &mut log);
    assert_eq!(
        texts(&bob, group).await,
        ["hello", "second", "first"],
        "both messages are authentic and shown, in the server's order"
    );
    let warnings: Vec<u64> = log.iter().filter_map(|e| order_warning(e, group)).collect();
    assert_eq!(
        warnings.len(),
        1,
        "Bob is warned once that the server changed the order of Alice's messages: {log:#?}"
    );
    assert!(
        warnings[0] == a.0 || warnings[0] == b.0,
        "the warning names a swapped message (seq {} or {}), not seq {}",
        a.0,
        b.0,
        warnings[0]
    );
}

// ---------------------------------------------------------------------------------------------
// 5. A post the removed member wrote after the removal, sequenced right after it
// ---------------------------------------------------------------------------------------------

/// The server withholds Carol's removal from Carol, accepts her old-epoch post written after
/// it (the real server would refuse it) and serves it to Alice and Bob right after the removal,
/// before anyone posted in the new epoch — where no seq cut-off can catch it. Frames
/// manipulated: ops from the removal on are dropped for Carol; Carol's `post` is answered by the
/// proxy and pushed to Alice and Bob as the next `message`.
///
/// Every client that has the removal refuses it: Carol wrote it after she was removed.
#[tokio::test]
async fn a_post_the_removed_member_wrote_after_the_removal_is_refused_even_right_after_it() {
    let server = TestServer::start().await;
    let evil = EvilServer::start(&server).await;
    let (group, [mut alice, mut bob, carol], [mut alice_log, mut bob_log, _]) =
        welcomed_three(&evil).await;
    let (alice_dev, bob_dev, carol_dev) = (
        alice.client.device(),
        bob.client.device(),
        carol.client.device(),
    );
    let state = evil.group_state(group);
    let old_epoch = state.epoch();
    let removal_seq = state.seq() + 1;
    evil.on_server_frames(carol_dev, move |frame| {
        map_ops(frame, |_, op| {
            if op_seq(&op) >= removal_seq {
                vec![]
            } else {
                vec![op]
            }
        })
    });
    {
        let handle = evil.handle();
        let mut fake_inbox = FAKE_INBOX_ID;
        evil.on_requests(carol_dev, move |frame| match frame {
            // Carol's old-epoch sender key, which the real server would refuse now.
            ClientFrame::SendSealed { id, items } => {
                for payload in items {
                    fake_inbox += 1;
                    handle.inject(
                        payload.recipient,
                        ServerFrame::Inbox {
                            items: vec![InboxItem {
                                inbox_id: fake_inbox,
                                received_at: now(),
                                payload,
                            }],
                        },
                    );
                }
                Verdict::Answer(vec![ServerFrame::Ok { id }])
            }
            ClientFrame::Post { id, envelope }
                if envelope.group == group && envelope.epoch == old_epoch =>
            {
                let seq = Seq(handle.last_seq(group).0 + 1);
                let message = envelope.message_id();
                for device in [alice_dev, bob_dev] {
                    handle.inject(
                        device,
                        ServerFrame::Message {
                            group,
                            seq,
                            received_at: now(),
                            envelope: envelope.clone(),
                        },
                    );
                }
                Verdict::Answer(vec![ServerFrame::Posted {
                    id,
                    group,
                    seq,
                    message,
                }])
            }
            other => Verdict::Forward(other),
        });
    }

    alice
        .client
        .remove(group, carol.client.user(), RemoveOptions::new())
        .await
        .unwrap();
    wait_logged(
        &mut bob,
        &mut bob_log,
        "Carol's removal",
        |e| matches!(e, Event::GroupChanged(c) if c.group == group && c.action == "remove"),
    )
    .await;
    // Carol's clock moves on past the removal (the comparison is by the authors' claims).
    tokio::time::sleep(Duration::from_millis(5)).await;
    let late = carol
        .client
        .send_text(group, "I am still here", None)
        .await
        .unwrap();

    for (user, log) in [(&mut alice, &mut alice_log), (&mut bob, &mut bob_log)] {
        wait_logged(
            user,
            log,
            "the refusal of Carol's late post",
            |e| matches!(e, Event::MessageRejected(r) if r.group == group && r.seq == late.seq.0),
        )
        .await;
        assert_eq!(
            texts(user, group).await,
            ["welcome"],
            "a post Carol wrote after her removal was shown"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 6. A reply stored before what it replies to
// ---------------------------------------------------------------------------------------------

/// Alice asks, Bob (having read it) answers; the server swaps the two for Carol, who was
/// offline. Different senders, so no chain iteration tells — but Bob's message names the last
/// seq he had read (`seen_seq`), which the server put after it. Frames manipulated: the
/// `sync_page` messages to Carol (the envelopes at the two seqs swapped).
#[tokio::test]
async fn a_reply_the_server_put_before_what_it_answers_is_flagged() {
    let server = TestServer::start().await;
    let evil = EvilServer::start(&server).await;
    let (mut users, group) = group_of(&evil, &["Alice", "Bob", "Carol"]).await;
    let mut carol = users.pop().unwrap();
    let mut bob = users.pop().unwrap();
    let alice = users.pop().unwrap();
    let mut log = Vec::new();
    carol.go_offline().await;
    let question = alice
        .client
        .send_text(group, "how was your week?", None)
        .await
        .unwrap();
    until_shown(&mut bob, &mut log, group, "how was your week?").await;
    let answer = bob
        .client
        .send_text(group, "better, thanks", None)
        .await
        .unwrap();
    let a = question.seq;
    swap_for(
        &evil,
        carol.client.device(),
        group,
        ((&alice, &question), (&bob, &answer)),
    );

    carol.come_back().await;
    let mut log = Vec::new();
    wait_logged(&mut carol, &mut log, "a sync", |e| {
        matches!(e, Event::Synced)
    })
    .await;
    carol.client.sync().await.unwrap();
    drain(&mut carol, &mut log);
    assert_eq!(
        texts(&carol, group).await,
        ["better, thanks", "how was your week?"],
        "both messages are authentic and shown, in the server's order"
    );
    let warnings: Vec<u64> = log.iter().filter_map(|e| order_warning(e, group)).collect();
    assert_eq!(
        warnings,
        [a.0],
        "Carol is warned that Bob's answer was put before what he had read: {log:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 7. Found in review: holding, rejoining, forks
// ---------------------------------------------------------------------------------------------

/// Review of issue 12: a member sealed a junk "sender key" naming an epoch 16 ahead to Bob, so
/// Bob held all his posts — and removing that member did not release him. Honest server.
#[tokio::test]
async fn a_member_who_made_others_hold_their_posts_no_longer_can_once_removed() {
    let server = TestServer::start().await;
    let (mut users, group) =
        users_in_group(&server.url, server.trust(), &["Alice", "Bob", "Mallory"]).await;
    // Mallory's own device, on a second raw connection.
    let secret = users[2].secret.clone();
    let identity = confide_protocol::identity::DeviceIdentity::from_secrets(&secret).unwrap();
    let mallory_user = users[2].client.user();
    let mut raw = RawClient::connect_as(
        &server,
        identity,
        confide_protocol::UserId::random(&mut confide_tests::rng()),
        "M",
    )
    .await;
    let r = raw.authenticate().await;
    assert!(
        matches!(
            r,
            confide_protocol::frames::ServerFrame::Authenticated { .. }
        ),
        "{r:?}"
    );
    let (ops, _) = raw.sync_from_start(group).await;
    let mut state = confide_protocol::group_log::GroupState::from_genesis(&ops[0]).unwrap();
    for op in &ops[1..] {
        state.apply(op).unwrap();
    }
    let bob_keys = state
        .current_devices()
        .into_iter()
        .find(|k| k.device == users[1].client.device())
        .unwrap()
        .clone();
    let fake = confide_protocol::EpochRef {
        epoch: confide_protocol::Epoch(state.epoch().0 + 16),
        hash: confide_protocol::OpHash([7; 32]),
    };
    let sealed = confide_protocol::seal::seal(
        &raw.identity,
        &bob_keys,
        confide_protocol::seal::SealKind::SenderKey,
        group,
        fake,
        b"not a distribution",
        &mut confide_tests::rng(),
    )
    .unwrap();
    let reply = raw.send_sealed(vec![sealed]).await;
    assert!(
        matches!(reply, confide_protocol::frames::ServerFrame::Ok { .. }),
        "{reply:?}"
    );
    users[1]
        .wait_event(|e| matches!(e, Event::GroupBehind { .. }))
        .await;
    let r = users[1].client.send_text(group, "hello", None).await;
    assert!(matches!(r, Err(ClientError::Held)), "{r:?}");
    // The facilitator removes Mallory.
    users[0]
        .client
        .remove(group, mallory_user, RemoveOptions::new().ban(true))
        .await
        .unwrap();
    users[1]
        .wait_event(|e| matches!(e, Event::GroupChanged(..)))
        .await;
    let r = users[1]
        .client
        .send_text(group, "after removal", None)
        .await;
    assert!(
        !matches!(r, Err(ClientError::Held)),
        "Bob still holds after the culprit was removed: {r:?}"
    );
}

/// Review of issue 12: Bob, removed after Eve was removed, rejoins with the still-valid invite.
/// The server shows him a prefix of the log from before Eve's removal and fakes the join's
/// acceptance. Bob's client discards the longer log it had verified and seals his sender key
/// to Eve's device.
#[tokio::test]
async fn a_former_member_rejoining_refuses_a_log_rolled_back_to_before_a_removal() {
    use confide_protocol::frames::{ClientFrame, ServerFrame};
    use confide_tests::{
        EvilServer, Verdict,
        evil::{map_ops, op_seq},
    };
    use std::time::Duration;
    let server = TestServer::start().await;
    let evil = EvilServer::start(&server).await;
    let mut users = Vec::new();
    for name in ["Alice", "Bob", "Eve"] {
        users.push(confide_tests::TestUser::register(&evil.url, evil.trust(), name).await);
    }
    let group = users[0].client.create_group().await.unwrap();
    let invite = users[0]
        .client
        .create_invite(
            group,
            InviteOptions::new()
                .max_uses(10)
                .valid_for(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    let link = invite.to_link();
    for i in [2usize, 1] {
        let inv = confide_client::Invite::from_link(&link).unwrap();
        users[i].client.join(&inv, None).await.unwrap();
    }
    // Alice removes people she has seen join, as a facilitator would.
    users[0].wait_members(group, 3).await;
    // Bob's first join is the head now; Eve joined before it.
    let bob_joined_at = evil.group_state(group).seq();
    let eve_device = users[2].client.device();
    let eve_user = users[2].client.user();
    let bob_user = users[1].client.user();
    users[0]
        .client
        .remove(group, eve_user, RemoveOptions::new())
        .await
        .unwrap();

    users[0]
        .client
        .remove(group, bob_user, RemoveOptions::new())
        .await
        .unwrap();
    users[1]
        .wait_event(|e| matches!(e, Event::Removed { .. }))
        .await;
    // Bob's verified log has Eve's removal.
    let bob = users[1].client.device();
    // The server: every sync Bob makes shows only the log before Eve's removal; his join is
    // "accepted"; his sealed keys and posts are "accepted".
    evil.on_server_frames(bob, move |frame| {
        // Only the log from before Bob's first join, presented as all there is.
        map_ops(frame, |_, op| {
            if op_seq(&op) < bob_joined_at {
                vec![op]
            } else {
                vec![]
            }
        })
        .into_iter()
        .map(|mut f| {
            if let ServerFrame::SyncPage { complete, .. } = &mut f {
                *complete = true;
            }
            f
        })
        .collect()
    });
    evil.on_requests(bob, move |frame| match frame {
        ClientFrame::AppendOp { id, group, op } => Verdict::Answer(vec![ServerFrame::OpAppended {
            id,
            group,
            seq: op_seq(&op),
        }]),
        ClientFrame::SendSealed { id, .. } => Verdict::Answer(vec![ServerFrame::Ok { id }]),
        f => Verdict::Forward(f),
    });
    let inv = confide_client::Invite::from_link(&link).unwrap();
    let outcome = users[1].client.join(&inv, None).await;
    assert!(
        matches!(outcome, Err(ClientError::BadInvite(_))),
        "Bob joined on a rolled-back log: {outcome:?}"
    );
    let members = users[1].client.members(group).await.unwrap();
    assert!(
        members.iter().all(|m| m.user != eve_user),
        "Eve, whose removal Bob verified, is a member again on Bob's device"
    );
    let _ = users[1]
        .client
        .send_text(group, "only for current members", None)
        .await;
    let sealed_to_eve = evil.requests_from(bob).iter().any(|f| match f {
        ClientFrame::SendSealed { items, .. } => items.iter().any(|i| i.recipient == eve_device),
        _ => false,
    });
    assert!(
        !sealed_to_eve,
        "Bob sealed his sender key to Eve, whose removal his client had verified"
    );
    evil.honest(bob);
    users[1].go_offline().await;
    users[1].come_back().await;
    let infos = users[1].client.groups().await.unwrap();
    assert!(
        infos.iter().all(|g| g.tampered.is_none()),
        "the server froze the group on Bob's device: {infos:?}"
    );
}

/// Review of issue 12: an op at the head's seq signed by a key of the server's own (no member)
/// was reported to the user as a fork of the group's history — a lever to make people leave.
#[tokio::test]
async fn an_op_signed_by_the_servers_own_key_is_not_told_as_a_fork() {
    use confide_protocol::frames::ServerFrame;
    use confide_protocol::group_log::{Op, OpBody};
    use confide_tests::EvilServer;
    let server = TestServer::start().await;
    let evil = EvilServer::start(&server).await;
    let (mut users, group) = users_in_group(&evil.url, evil.trust(), &["Alice", "Bob"]).await;
    let state = evil.group_state(group);
    let own = confide_protocol::identity::DeviceIdentity::generate(&mut confide_tests::rng());
    let forged = Op {
        v: 1,
        group,
        seq: state.seq(),
        prev: confide_protocol::OpHash([0; 32]),
        author: own.device_id(),
        at: confide_tests::now(),
        body: OpBody::Lock {},
    }
    .sign(&own)
    .unwrap();
    evil.inject(
        users[1].client.device(),
        ServerFrame::Op {
            group,
            op: forged,
            seq: state.seq(),
        },
    );
    let (e, _) = users[1]
        .wait_event(|e| matches!(e, Event::GroupRejected(..)))
        .await;
    let Event::GroupRejected(r) = e else {
        unreachable!()
    };
    assert!(!r.reason.contains("forked"), "told of a fork: {}", r.reason);
}

/// Second review of issue 12: only the highest claim of a later epoch was kept, with its
/// claimant. A hostile member (Mallory) claims an epoch far ahead, overwriting Alice's honest
/// claim; the server then shows Bob only Mallory's removal and withholds Carol's. Releasing
/// Mallory's claim released the hold, and Bob sealed a new key to Carol. Frames manipulated: ops
/// from Mallory's removal on are withheld from Bob, then only those from Carol's removal on.
#[tokio::test]
async fn removing_a_hostile_member_does_not_drop_an_honest_members_claim_of_a_later_epoch() {
    let server = TestServer::start().await;
    let evil = EvilServer::start(&server).await;
    let (mut users, group) = group_of(&evil, &["Alice", "Bob", "Carol", "Mallory"]).await;
    let mallory = users.pop().unwrap();
    let carol = users.pop().unwrap();
    let mut bob = users.pop().unwrap();
    let alice = users.pop().unwrap();
    let mut bob_log = Vec::new();
    alice
        .client
        .send_text(group, "welcome", None)
        .await
        .unwrap();
    until_shown(&mut bob, &mut bob_log, group, "welcome").await;
    let (bob_dev, carol_dev) = (bob.client.device(), carol.client.device());
    let state = evil.group_state(group);
    let epoch = state.epoch();

    // Mallory, still a member, seals junk to Bob naming an epoch 16 ahead.
    let mallory_identity =
        confide_protocol::identity::DeviceIdentity::from_secrets(&mallory.secret).unwrap();
    let mut raw =
        RawClient::connect_as(&server, mallory_identity, mallory.client.user(), "Mallory").await;
    assert!(matches!(
        raw.authenticate().await,
        ServerFrame::Authenticated { .. }
    ));
    let bob_keys = state
        .current_devices()
        .into_iter()
        .find(|k| k.device == bob_dev)
        .unwrap()
        .clone();
    let junk = confide_protocol::seal::seal(
        &raw.identity,
        &bob_keys,
        confide_protocol::seal::SealKind::SenderKey,
        group,
        confide_protocol::EpochRef {
            epoch: confide_protocol::Epoch(epoch.0 + 16),
            hash: confide_protocol::OpHash([7; 32]),
        },
        b"not a distribution",
        &mut confide_tests::rng(),
    )
    .unwrap();
    assert!(matches!(
        raw.send_sealed(vec![junk]).await,
        ServerFrame::Ok { .. }
    ));

    // The server withholds every op from Mallory's removal on from Bob, while Alice removes
    // Mallory, then Carol, and posts in the new epoch.
    let mallory_removal = state.seq() + 1;
    let withhold_from = Arc::new(AtomicUsize::new(mallory_removal as usize));
    {
        let withhold_from = withhold_from.clone();
        evil.on_server_frames(bob_dev, move |frame| {
            map_ops(frame, |_, op| {
                if op_seq(&op) >= withhold_from.load(SeqCst) as u64 {
                    vec![]
                } else {
                    vec![op]
                }
            })
        });
    }
    alice
        .client
        .remove(group, mallory.client.user(), RemoveOptions::new())
        .await
        .unwrap();
    alice
        .client
        .remove(group, carol.client.user(), RemoveOptions::new())
        .await
        .unwrap();
    alice
        .client
        .send_text(group, "only for Alice and Bob now", None)
        .await
        .unwrap();
    wait_logged(
        &mut bob,
        &mut bob_log,
        "a warning that Bob is behind",
        |e| matches!(e, Event::GroupBehind { group: g, .. } if *g == group),
    )
    .await;

    // Now the server shows Bob Mallory's removal, and still not Carol's.
    withhold_from.store(mallory_removal as usize + 1, SeqCst);
    bob.client.sync().await.unwrap();
    wait_logged(&mut bob, &mut bob_log, "Mallory's removal", |e| {
        matches!(e, Event::GroupChanged(c) if c.group == group && c.target == Some(mallory.client.user()))
    })
    .await;
    let sent = bob
        .client
        .send_text(group, "something Carol must not read", None)
        .await;
    assert!(
        is_held(&sent),
        "Bob posted while Alice's epoch was still ahead of his log: {sent:?}"
    );
    let sealed_to_carol = evil.requests_from(bob_dev).iter().any(|f| {
        matches!(f, ClientFrame::SendSealed { items, .. } if items.iter().any(|i| i.recipient == carol_dev))
    });
    assert!(!sealed_to_carol, "Bob sealed a new key to Carol");
}

// ---------------------------------------------------------------------------------------------
// A message's number taken over by another message
// ---------------------------------------------------------------------------------------------

/// The facilitator posts; the server answers with the position of a message Bob wrote earlier
/// (frame manipulated: the `posted` reply to Alice's `post`, made up by the server, which
/// never stores her post). Had Alice's client believed it, her own post would sit where Bob's
/// was, and `mod delete #1` would delete her own message instead of Bob's.
///
/// Her client must keep her message (in the outbox, told `Pending`), say why, leave #1 as
/// Bob's message, and send hers once the server answers honestly.
#[tokio::test]
async fn a_posted_reply_naming_another_messages_position_does_not_take_its_number() {
    let server = TestServer::start().await;
    let evil = EvilServer::start(&server).await;
    let (mut users, group) = group_of(&evil, &["Alice", "Bob"]).await;
    let bob = users.pop().unwrap();
    let mut alice = users.pop().unwrap();
    let mut log = Vec::new();
    let bobs = bob.client.send_text(group, "from Bob", None).await.unwrap();
    until_shown(&mut alice, &mut log, group, "from Bob").await;
    let taken = bobs.seq;
    evil.on_requests(alice.client.device(), move |frame| match frame {
        ClientFrame::Post { id, envelope } => Verdict::Answer(vec![ServerFrame::Posted {
            id,
            group,
            seq: taken,
            message: envelope.message_id(),
        }]),
        other => Verdict::Forward(other),
    });
    let sent = alice.client.send_text(group, "from Alice", None).await;
    assert!(matches!(sent, Err(ClientError::Pending)), "{sent:?}");
    wait_logged(
        &mut alice,
        &mut log,
        "the refused acknowledgement",
        |e| matches!(e, Event::MessageRejected(r) if r.group == group && r.seq == taken.0),
    )
    .await;
    let number = alice.client.seq_of_number(group, 1).await.unwrap();
    assert_eq!(number, Some(taken));
    let history = alice.client.history(group, None, 10).await.unwrap();
    let shown: Vec<(u64, &str)> = history
        .iter()
        .map(|m| (m.number, m.text.as_str()))
        .collect();
    assert_eq!(shown, [(1, "from Bob")]);
    // Honest again: the kept message goes out, at a position of its own, as #2.
    evil.honest(alice.client.device());
    wait_logged(&mut alice, &mut log, "her message sent", |e| {
        matches!(e, Event::Sent(m) if m.text == "from Alice" && m.number == 2 && m.seq != taken)
    })
    .await;
    assert_eq!(
        texts(&alice, group).await,
        ["from Bob", "from Alice"],
        "{log:#?}"
    );
}

/// Carol has read Bob's message A; the server then serves Bob's next message B at A's
/// position, in the sync page after it (frames manipulated: the seq of B in every `message`
/// push and `sync_page` Carol gets). Had Carol's client taken it, B would have replaced A,
/// report evidence included: A's number would show B, and reporting "A" would report B.
///
/// Her client must ignore a message at or below the position it asked to sync after: A keeps
/// its number and its evidence.
#[tokio::test]
async fn a_message_served_again_at_a_position_already_passed_does_not_replace_the_one_there() {
    let server = TestServer::start().await;
    let evil = EvilServer::start(&server).await;
    let (group, [mut alice, bob, mut carol], [mut alice_log, _, mut carol_log]) =
        welcomed_three(&evil).await;
    let a = bob.client.send_text(group, "A", None).await.unwrap();
    until_shown(&mut carol, &mut carol_log, group, "A").await;
    let a_number = carol
        .client
        .history(group, None, 10)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.text == "A")
        .unwrap()
        .number;
    let a_seq = a.seq;
    evil.on_server_frames(carol.client.device(), move |frame| {
        map_messages(frame, |g, m| {
            if g == group && m.seq > a_seq {
                vec![StoredMessage { seq: a_seq, ..m }]
            } else {
                vec![m]
            }
        })
    });
    bob.client.send_text(group, "B", None).await.unwrap();
    let device = carol.client.device();
    evil.until_delivered(
        device,
        |f| matches!(f, ServerFrame::Message { seq, .. } if *seq == a_seq),
    )
    .await;
    carol.client.sync().await.unwrap();
    assert_eq!(
        carol.client.seq_of_number(group, a_number).await.unwrap(),
        Some(a_seq)
    );
    assert_eq!(
        texts(&carol, group).await,
        ["welcome", "A"],
        "{carol_log:#?}"
    );
    // Reporting A reports A: its evidence is intact.
    carol
        .client
        .report(group, a_seq, "checking what is reported")
        .await
        .unwrap();
    wait_logged(
        &mut alice,
        &mut alice_log,
        "the report",
        |e| matches!(e, Event::Report(r) if r.group == group),
    )
    .await;
    let Some(Event::Report(report)) = alice_log.last() else {
        unreachable!()
    };
    assert_eq!(report.text, "A");
}

/// Alice opens a private conversation with Bob and writes once; Bob has not accepted it yet.
/// The server then pushes Bob messages signed by a key of its own (frames injected: three
/// `message` pushes, validly signed, by a device no log lists). Bob's client must not count
/// them as waiting: only what a device of the verified log signed can be.
#[tokio::test]
async fn messages_signed_by_a_device_the_log_does_not_know_are_not_counted_as_waiting() {
    let server = TestServer::start().await;
    let evil = EvilServer::start(&server).await;
    let (mut users, shared) = group_of(&evil, &["Alice", "Bob"]).await;
    let mut bob = users.pop().unwrap();
    let alice = users.pop().unwrap();
    let mut log = Vec::new();
    let private = alice
        .client
        .open_private(shared, bob.client.user())
        .await
        .unwrap();
    alice
        .client
        .send_text(private, "Are you OK?", None)
        .await
        .unwrap();
    wait_logged(
        &mut bob,
        &mut log,
        "the message waiting",
        |e| matches!(e, Event::MessageWaiting { group, waiting: 1 } if *group == private),
    )
    .await;
    let state = evil.group_state(private);
    let forger = confide_protocol::DeviceIdentity::generate(&mut confide_tests::rng());
    let mut chain = confide_protocol::sender_key::SenderChain::generate(&mut confide_tests::rng());
    let last = evil.last_seq(private);
    for i in 1..=3 {
        let envelope = Envelope::seal(
            &forger,
            private,
            state.epoch_ref(),
            &mut chain,
            b"made up",
            &mut confide_tests::rng(),
        )
        .unwrap();
        let frame = ServerFrame::Message {
            group: private,
            seq: Seq(last.0 + i),
            received_at: now(),
            envelope,
        };
        assert_eq!(evil.inject(bob.client.device(), frame), 1);
    }
    // The sync's reply comes after the injected pushes.
    bob.client.sync().await.unwrap();
    drain(&mut bob, &mut log);
    assert_eq!(group_info(&bob, private).await.waiting, 1, "{log:#?}");
    assert!(
        !log.iter()
            .any(|e| matches!(e, Event::MessageWaiting { waiting, .. } if *waiting > 1)),
        "{log:#?}"
    );
}
