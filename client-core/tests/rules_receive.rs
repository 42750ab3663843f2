#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! PROTOCOL.md §11.2, receiving messages: each step, frames in and what the user sees out.

mod support;

use confide_client_core::Event;
use confide_protocol::envelope::{ContentBody, MessageContent};
use confide_protocol::frames::{ClientFrame, ServerFrame, StoredMessage};
use confide_protocol::group_log::Role;
use confide_protocol::sender_key::SenderChain;
use confide_protocol::{EpochRef, GroupId, OpHash, Seq, Timestamp};
use pollster::block_on;
use support::{Device, Member, alice_and_bob, live, text};

fn order_warnings(device: &Device) -> Vec<u64> {
    device.events_as(|e| match e {
        Event::OrderWarning(r) => Some(r.seq),
        _ => None,
    })
}

/// Alice's group with Bob and Carol, Bob's sender key of its first epoch delivered, then Carol
/// removed by Alice. Returns Bob's chain of that first epoch, and that epoch.
fn carol_removed() -> (Device, GroupId, Member, SenderChain, EpochRef) {
    let mut device = Device::new();
    let mut bob = Member::new(2, "Bob");
    let carol = Member::new(4, "Carol");
    let group = device.group_with(&[&bob, &carol]);
    let (old_chain, item) = device.member_key(group, &mut bob);
    device.push_inbox(&[item]);
    let old_epoch = device.state(group).epoch_ref();
    device.remove(group, carol.user);
    (device, group, bob, old_chain, old_epoch)
}

// §11.2 (preamble): a live message past the next position makes the device sync; nothing skipped.
#[test]
fn a_live_message_past_the_next_position_makes_the_device_sync_and_show_both_in_order() {
    let (mut device, group, mut bob, mut chain) = alice_and_bob();
    let _first = device.member_writes(group, &mut bob, &mut chain, "first");
    let second = device.member_writes(group, &mut bob, &mut chain, "second");
    device.push_message(group, &second);
    assert!(device.synced().contains(&group));
    assert_eq!(device.shown(), ["first", "second"]);
}

// §11.2 (preamble): a sync page cannot serve a message again at a position already passed.
#[test]
fn a_sync_page_cannot_put_another_message_at_a_position_already_passed() {
    let (mut device, group, mut bob, mut chain) = alice_and_bob();
    let first = device.member_writes(group, &mut bob, &mut chain, "first");
    device.push_message(group, &first);
    // The server swaps in another of Bob's messages at seq 1 and serves it by sync.
    let other = bob.envelope(
        &mut chain,
        group,
        device.state(group).epoch_ref(),
        &text("other", device.now()),
    );
    device.answer(Some(Box::new(move |frame| match frame {
        ClientFrame::Sync { id, group, .. } => Some(vec![ServerFrame::SyncPage {
            id: *id,
            group: *group,
            ops: vec![],
            messages: vec![StoredMessage {
                seq: Seq(1),
                received_at: support::NOW,
                envelope: other.clone(),
            }],
            next_op_seq: 3,
            next_seq: Seq(2),
            complete: true,
        }]),
        _ => None,
    })));
    device.sync().unwrap();
    assert_eq!(device.shown(), ["first"]);
    assert!(device.rejected().is_empty(), "{:?}", device.rejected());
    assert_eq!(device.history(group), ["first"]);
}

// §11.2 step 1: a forgery changes no state, so the genuine message is not refused as a replay.
#[test]
fn a_forged_copy_sent_first_does_not_get_the_genuine_message_refused() {
    let (mut device, group, mut bob, mut chain) = alice_and_bob();
    let genuine = device.member_writes(group, &mut bob, &mut chain, "genuine");
    let mut forged = genuine.clone();
    forged.envelope.signature.0[0] ^= 1;
    assert_eq!(forged.envelope.message_id(), genuine.envelope.message_id());
    // The server serves the forgery at seq 1 and the genuine message at seq 2.
    device.push_message(group, &forged);
    let genuine = StoredMessage {
        seq: Seq(2),
        ..genuine
    };
    let served = vec![forged, genuine.clone()];
    device.edit_log(group, |log| log.messages = served);
    device.push_message(group, &genuine);
    assert_eq!(device.shown(), ["genuine"]);
    let rejected = device.rejected();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0].0, 1);
}

// §11.2 step 3: the same message at a different seq is a replay: reported, first copy stands.
#[test]
fn a_message_served_again_at_another_position_is_reported_as_a_replay_and_shown_once() {
    let (mut device, group, mut bob, mut chain) = alice_and_bob();
    let m = device.member_writes(group, &mut bob, &mut chain, "once");
    device.push_message(group, &m);
    device.deliver(group, m.envelope.clone());
    assert_eq!(device.shown(), ["once"]);
    let rejected = device.rejected();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].0, 2);
    assert!(rejected[0].1.contains("replay"), "{}", rejected[0].1);
    assert_eq!(device.history(group), ["once"]);
}

// §11.2 step 4: an envelope that names another group is rejected.
#[test]
fn a_message_of_another_group_served_in_this_one_is_rejected() {
    let mut device = Device::new();
    let mut bob = Member::new(2, "Bob");
    let group = device.group_with(&[&bob]);
    let other = device.group_with(&[&bob]);
    let (mut chain, item) = device.member_key(other, &mut bob);
    device.push_inbox(&[item]);
    let m = device.member_writes(other, &mut bob, &mut chain, "for the other group");
    device.deliver(group, m.envelope.clone());
    assert!(device.shown().is_empty());
    assert!(device.rejected()[0].1.contains("another group"));
    // In its own group it is still shown: the rejection marked it seen in the wrong group only.
    device.push_message(other, &m);
    assert_eq!(device.shown(), ["for the other group"]);
}

// §11.2 step 4a: a `posted` reply at a position another message holds keeps the post in the outbox.
#[test]
fn a_post_acknowledged_at_another_messages_position_is_kept_and_sent_again() {
    let (mut device, group, mut bob, mut chain) = alice_and_bob();
    let m = device.member_writes(group, &mut bob, &mut chain, "Bob's");
    device.push_message(group, &m);
    // The server answers Alice's post with Bob's message's position.
    device.answer(Some(Box::new(|frame| match frame {
        ClientFrame::Post { id, envelope } => Some(vec![ServerFrame::Posted {
            id: *id,
            group: envelope.group,
            seq: Seq(1),
            message: envelope.message_id(),
        }]),
        _ => None,
    })));
    let r = device.send(group, "Alice's");
    assert_eq!(r.unwrap_err().code(), "pending");
    assert!(
        device
            .rejected()
            .iter()
            .any(|(seq, why)| *seq == 1 && why.contains("kept to be sent again"))
    );
    assert_eq!(
        device.history(group),
        ["Bob's"],
        "Bob's message keeps its place"
    );
    // An honest answer later: the message goes out once, at its own position.
    device.answer(None);
    block_on(device.core.retry_now());
    device.drive();
    assert_eq!(device.history(group), ["Bob's", "Alice's"]);
    assert!(
        device
            .events()
            .iter()
            .any(|e| matches!(e, Event::Sent(m) if m.seq == Seq(2)))
    );
}

// §11.2 step 4a: a `posted` reply naming another message id is not taken as this post's.
#[test]
fn a_post_acknowledged_as_another_message_is_kept_and_sent_again() {
    let (mut device, group, _bob, _chain) = alice_and_bob();
    device.answer(Some(Box::new(|frame| match frame {
        ClientFrame::Post { id, envelope } => Some(vec![ServerFrame::Posted {
            id: *id,
            group: envelope.group,
            seq: Seq(7),
            message: confide_protocol::MessageId([7; 16]),
        }]),
        _ => None,
    })));
    assert_eq!(device.send(group, "hello").unwrap_err().code(), "pending");
    assert!(device.history(group).is_empty());
    device.answer(None);
    block_on(device.core.retry_now());
    device.drive();
    assert_eq!(device.history(group), ["hello"]);
}

// §11.2 step 6: messages of epochs before this device's user joined are dropped silently.
#[test]
fn a_message_from_before_the_user_joined_is_dropped_without_a_word() {
    let mut device = Device::new();
    let mut bob = Member::new(2, "Bob");
    let carol = Member::new(4, "Carol");
    // Bob's group: Carol first, a message, then Alice is added.
    let group = device.foreign_group(&bob, 5);
    device.member_adds(group, &bob, carol.entry());
    let mut early_chain = bob.chain();
    let early = device.member_writes(group, &mut bob, &mut early_chain, "before Alice");
    device.member_adds(group, &bob, device.alice.entry());
    let (mut chain, item) = device.member_key(group, &mut bob);
    device.push_inbox(&[item]);
    let _later = device.member_writes(group, &mut bob, &mut chain, "after Alice");
    device.sync().unwrap();
    block_on(device.core.accept_group(group)).unwrap();
    device.drive();
    assert_eq!(device.shown(), ["after Alice"]);
    assert!(device.rejected().is_empty(), "{:?}", device.rejected());
    let _ = early;
}

// §11.2 step 7: a message of an epoch the log has not reached is kept, and shown once it is.
#[test]
fn a_message_from_an_epoch_the_log_has_not_reached_is_kept_until_the_log_gets_there() {
    let (mut device, group, mut bob, _) = alice_and_bob();
    device.set_role(group, bob.user, Role::CoFacilitator);
    let carol = Member::new(4, "Carol");
    // Bob adds Carol; Alice is not shown the op.
    device.member_adds(group, &bob, carol.entry());
    let mut chain = bob.chain();
    // Bob's key for the new epoch, sealed now and delivered later.
    let epoch = device.state(group).epoch_ref();
    let sealed = bob.seal_key(&chain, &device.alice.keys(), group, epoch);
    let m = device.member_writes(group, &mut bob, &mut chain, "new epoch");
    device.clear();
    device.push_message(group, &m);
    // Kept and synced: the log now has the epoch, the key has not come yet.
    assert!(!device.synced().is_empty());
    assert!(device.shown().is_empty());
    assert!(device.rejected().is_empty());
    let item = device.put_in_inbox(sealed);
    device.push_inbox(&[item]);
    assert_eq!(device.shown(), ["new epoch"]);
}

// §11.2 step 7: an epoch number the log has reached under another hash is another branch.
#[test]
fn a_message_of_another_branch_of_the_log_is_rejected() {
    let (mut device, group, mut bob, mut chain) = alice_and_bob();
    let epoch = device.state(group).epoch_ref();
    let branch = EpochRef {
        epoch: epoch.epoch,
        hash: OpHash([9; 32]),
    };
    let envelope = bob.envelope(&mut chain, group, branch, &text("elsewhere", device.now()));
    device.deliver(group, envelope);
    assert!(device.shown().is_empty());
    assert!(
        device.rejected()[0]
            .1
            .contains("not in the verified group log")
    );
}

// §11.2 step 8: a sender who was not a member in that epoch is rejected.
#[test]
fn a_message_from_a_device_that_is_not_a_member_is_rejected() {
    let (mut device, group, _bob, _) = alice_and_bob();
    let mut mallory = Member::new(6, "Mallory");
    let mut chain = mallory.chain();
    let m = device.member_writes(group, &mut mallory, &mut chain, "let me in");
    device.push_message(group, &m);
    assert!(device.shown().is_empty());
    assert!(device.rejected()[0].1.contains("not a member"));
}

// §11.2 step 9: a message of an epoch that ended with a removal, stored after a later epoch's
// message, is rejected.
#[test]
fn a_message_slipped_into_an_epoch_that_ended_with_a_removal_is_rejected() {
    let (mut device, group, mut bob, mut old_chain, old_epoch) = carol_removed();
    let (mut chain, item) = device.member_key(group, &mut bob);
    device.push_inbox(&[item]);
    let now = device.member_writes(group, &mut bob, &mut chain, "after the removal");
    device.push_message(group, &now);
    // Written (by Bob's clock) before the removal, but stored after a later epoch's message.
    let envelope = bob.envelope(
        &mut old_chain,
        group,
        old_epoch,
        &text("slipped in", Timestamp(support::NOW.0 - 1)),
    );
    device.deliver(group, envelope);
    assert_eq!(device.shown(), ["after the removal"]);
    assert!(device.rejected()[0].1.contains("ended with a removal"));
}

// §11.2 step 9: this device's own acknowledged post in the later epoch counts as evidence too.
#[test]
fn an_own_post_after_a_removal_is_evidence_against_a_message_slipped_in_after_it() {
    let (mut device, group, mut bob, mut old_chain, old_epoch) = carol_removed();
    assert_eq!(device.send(group, "Carol is out").unwrap(), 1);
    let envelope = bob.envelope(
        &mut old_chain,
        group,
        old_epoch,
        &text("slipped in", Timestamp(support::NOW.0 - 1)),
    );
    device.deliver(group, envelope);
    assert!(device.shown().is_empty());
    assert!(device.rejected()[0].1.contains("ended with a removal"));
}

// §11.2 step 10: an own message found in a sync moves this device's chain past it, so that a
// device restored from an older backup never uses a message key twice.
#[test]
fn a_device_restored_from_an_older_backup_never_reuses_a_message_key() {
    let (mut device, group, _bob, _) = alice_and_bob();
    device.send(group, "zero").unwrap();
    let backup = device.store.snapshot();
    device.send(group, "one").unwrap();
    // The device's store is replaced by the backup and the device started again.
    let server = device.server.clone();
    drop(device);
    let store = confide_client_core::MemoryStore::from_snapshot(&backup);
    let mut restored = Device::open(store, server, Default::default(), 7);
    block_on(restored.core.connect()).unwrap();
    restored.drive();
    restored.send(group, "two").unwrap();
    let iterations: Vec<u32> = restored
        .log(group)
        .messages
        .iter()
        .map(|m| m.envelope.iteration)
        .collect();
    assert_eq!(iterations, [0, 1, 2], "a message key was used twice");
}

// §11.2 step 11: a message whose sender key has not arrived is kept, and shown once it does.
#[test]
fn a_message_before_its_sender_key_is_kept_and_shown_when_the_key_arrives() {
    let mut device = Device::new();
    let mut bob = Member::new(2, "Bob");
    let group = device.group_with(&[&bob]);
    let epoch = device.state(group).epoch_ref();
    let mut chain = bob.chain();
    // Sealed now (the chain's start), delivered after the message.
    let sealed = bob.seal_key(&chain, &device.alice.keys(), group, epoch);
    let m = device.member_writes(group, &mut bob, &mut chain, "key follows");
    device.push_message(group, &m);
    assert!(device.shown().is_empty());
    assert!(device.rejected().is_empty());
    let item = device.put_in_inbox(sealed);
    device.push_inbox(&[item]);
    assert_eq!(device.shown(), ["key follows"]);
}

// §11.2 step 12: a message that does not open is rejected and leaves the chain where it was.
#[test]
fn a_message_that_does_not_open_is_rejected_and_the_genuine_one_still_opens() {
    let (mut device, group, mut bob, mut chain) = alice_and_bob();
    // Signed by Bob, but sealed with a chain Alice was never given (a later iteration, so it
    // is another message id).
    let mut stray = bob.chain();
    stray.advance_to(1);
    let bad = device.member_writes(group, &mut bob, &mut stray, "unreadable");
    device.push_message(group, &bad);
    assert!(device.shown().is_empty());
    assert_eq!(device.rejected().len(), 1);
    let good = device.member_writes(group, &mut bob, &mut chain, "readable");
    device.push_message(group, &good);
    assert_eq!(device.shown(), ["readable"]);
}

// §11.2 step 13: a body that is not message content is rejected.
#[test]
fn a_message_whose_body_is_not_message_content_is_rejected() {
    let (mut device, group, mut bob, mut chain) = alice_and_bob();
    let epoch = device.state(group).epoch_ref();
    let envelope = confide_protocol::envelope::Envelope::seal(
        &bob.identity,
        group,
        epoch,
        &mut chain,
        b"not json",
        &mut bob.rng,
    )
    .unwrap();
    device.deliver(group, envelope);
    assert!(device.shown().is_empty());
    assert!(device.rejected()[0].1.contains("not valid"));
}

// §11.2 step 14: a removed author's message written after the removal is rejected, one written
// before it is shown.
#[test]
fn a_message_written_after_its_authors_removal_is_rejected_whatever_its_position() {
    let (mut device, group, mut bob, mut chain) = alice_and_bob();
    let epoch = device.state(group).epoch_ref();
    let removed_at = device.now();
    device.remove(group, bob.user);
    let before = bob.envelope(
        &mut chain,
        group,
        epoch,
        &text("before", Timestamp(removed_at.0 - 1_000)),
    );
    let after = bob.envelope(
        &mut chain,
        group,
        epoch,
        &text("after", Timestamp(removed_at.0 + 1_000)),
    );
    let before = device.store_message(group, before);
    let after = device.store_message(group, after);
    device.push([live(group, &before), live(group, &after)]);
    assert_eq!(device.shown(), ["before"]);
    assert!(device.rejected()[0].1.contains("after their removal"));
}

// §11.2 step 15: a message stored before one its author had read is shown, with a warning.
#[test]
fn a_message_stored_before_one_its_author_had_read_is_shown_with_an_order_warning() {
    let (mut device, group, mut bob, mut chain) = alice_and_bob();
    let content = MessageContent {
        sent_at: device.now(),
        seen_seq: Some(Seq(1)),
        body: ContentBody::Text {
            text: "reply".into(),
            reply_to: None,
            warnings: Vec::new(),
            round: None,
        },
    };
    let m = device.member_says(group, &mut bob, &mut chain, &content);
    device.push_message(group, &m);
    assert_eq!(device.shown(), ["reply"]);
    assert_eq!(order_warnings(&device), [1]);
}

// §11.2 step 15: one sender's messages stored out of the order written are shown, warned once.
#[test]
fn one_senders_messages_stored_out_of_order_are_shown_with_one_order_warning() {
    let (mut device, group, mut bob, mut chain) = alice_and_bob();
    let epoch = device.state(group).epoch_ref();
    let first = bob.envelope(&mut chain, group, epoch, &text("first", device.now()));
    let second = bob.envelope(&mut chain, group, epoch, &text("second", device.now()));
    let a = device.store_message(group, second);
    let b = device.store_message(group, first);
    device.push([live(group, &a), live(group, &b)]);
    assert_eq!(device.shown(), ["second", "first"]);
    assert_eq!(order_warnings(&device).len(), 1);
    // In order, no warning.
    let third = device.member_writes(group, &mut bob, &mut chain, "third");
    device.push_message(group, &third);
    assert_eq!(order_warnings(&device).len(), 1);
}

// §11.2 step 16: a text is stored with its franking evidence and shown.
#[test]
fn a_text_is_stored_with_its_franking_evidence_and_shown() {
    let (mut device, group, mut bob, mut chain) = alice_and_bob();
    let m = device.member_writes(group, &mut bob, &mut chain, "evidence");
    device.push_message(group, &m);
    assert_eq!(device.shown(), ["evidence"]);
    // The record carries the evidence.
    let (_, evidence) = support::record_and_evidence(&device, group, m.seq);
    // It holds the envelope as received: its signature and ciphertext among it.
    let holds = |part: &[u8]| evidence.windows(part.len()).any(|w| w == part);
    assert!(holds(&m.envelope.signature.0), "no signature");
    assert!(holds(&m.envelope.ciphertext), "no ciphertext");
}

// §11.2: a backlog of several sync pages, its signatures checked page by page, arrives whole
// and in the server's order; a forgery in the middle of a page is dropped and nothing else.
#[test]
fn a_backlog_of_several_sync_pages_is_shown_whole_and_in_order() {
    let (mut device, group, mut bob, mut chain) = alice_and_bob();
    device.server.lock().unwrap().page_limit = Some(40);
    let texts: Vec<String> = (0..150)
        .map(|i| format!("while you were away {i}"))
        .collect();
    for text in &texts {
        device.member_writes(group, &mut bob, &mut chain, text);
    }
    // The server breaks the signature of the 62nd message (seq 62, in the second page).
    device.edit_log(group, |log| log.messages[61].envelope.signature.0[5] ^= 1);
    device.sync().unwrap();
    let expected: Vec<String> = texts
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 61)
        .map(|(_, text)| text.clone())
        .collect();
    assert_eq!(device.shown(), expected);
    assert_eq!(device.history(group), expected);
    let rejected: Vec<u64> = device.rejected().into_iter().map(|(seq, _)| seq).collect();
    assert_eq!(rejected, [62]);
    assert!(device.synced().len() >= 4, "several pages were asked for");
}
