#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! PROTOCOL.md §11.2, "a position names one message", against a malicious server: a position
//! whose message was deleted, expired or is still waiting (parked) is served again with another
//! message, by sync or as the acknowledgement of this device's post, and must be refused. The
//! check when a message is received is the only guard there (storing it does not check again),
//! so these tests are what keeps it. And a deletion must keep the position taken also when the
//! deleted message's record cannot be read.

mod support;

use confide_client_core::memory::Faults;
use confide_client_core::store::{Batch, ClientStore as _};
use confide_client_core::{Event, MemoryStore};
use confide_protocol::frames::{ClientFrame, ServerFrame, StoredMessage};
use confide_protocol::group_log::OpBody;
use confide_protocol::sender_key::SenderChain;
use confide_protocol::{GroupId, Seq, Timestamp};
use pollster::block_on;
use support::{Device, Member, Shared, alice_and_bob, at_seq, text};
use zeroize::Zeroizing;

/// The server acknowledges Alice's next post at position `seq`: her send must stay pending.
fn post_acknowledged_at(device: &mut Device, group: GroupId, seq: Seq) {
    device.answer(Some(Box::new(move |frame| match frame {
        ClientFrame::Post { id, envelope } => Some(vec![ServerFrame::Posted {
            id: *id,
            group: envelope.group,
            seq,
            message: envelope.message_id(),
        }]),
        _ => None,
    })));
    assert_eq!(device.send(group, "Alice's").unwrap_err().code(), "pending");
}

/// Whether the device told the user that position `seq` was refused for another message.
fn refused_at(device: &Device, seq: Seq) -> bool {
    device
        .rejected()
        .iter()
        .any(|(at, why)| *at == seq.0 && why.contains("another message is (or was)"))
}

/// The server puts another message of Bob's ("swapped in") at position `seq` of its log, and
/// Alice's device is started again with its cursor moved back to `seq` (as a server that
/// replays a position would have it served again), then syncs.
fn serve_again_at(
    device: Device,
    group: GroupId,
    bob: &mut Member,
    chain: &mut SenderChain,
    seq: Seq,
) -> Device {
    let other = bob.envelope(
        chain,
        group,
        device.state(group).epoch_ref(),
        &text("swapped in", device.now()),
    );
    let received_at = device.now();
    device.edit_log(group, |log| {
        log.messages[usize::try_from(seq.0 - 1).unwrap()] = StoredMessage {
            seq,
            received_at,
            envelope: other,
        };
    });
    let meta = device
        .store
        .snapshot()
        .get("groups", group.as_bytes())
        .unwrap()
        .to_vec();
    let mut meta: serde_json::Value = serde_json::from_slice(&meta).unwrap();
    meta["next_seq"] = seq.0.into();
    let mut rewind = Batch::new();
    rewind.put(
        "groups",
        group.as_bytes(),
        Zeroizing::new(serde_json::to_vec(&meta).unwrap()),
    );
    block_on(device.store.commit(rewind)).unwrap();
    let mut device = device.restart(5);
    device.clear();
    block_on(device.core.connect()).unwrap();
    device.drive();
    device.sync().unwrap();
    device
}

/// Alice's group with Bob, Bob's message received and then deleted by Alice. Returns Bob, his
/// chain (to write again) and the deleted message.
fn bobs_message_deleted() -> (Device, GroupId, Member, SenderChain, StoredMessage) {
    let (mut device, group, mut bob, mut chain) = alice_and_bob();
    let m = device.member_writes(group, &mut bob, &mut chain, "gone");
    device.push_message(group, &m);
    device.append(
        group,
        OpBody::DeleteMessages {
            messages: vec![m.envelope.message_id()],
        },
    );
    assert!(device.history(group).is_empty());
    (device, group, bob, chain, m)
}

/// Alice's group with Bob, Bob's message received and then expired: two days later, the group
/// keeps messages for one day. Returns as [`bobs_message_deleted`] does.
fn bobs_message_expired() -> (Device, GroupId, Member, SenderChain, StoredMessage) {
    let (mut device, group, mut bob, mut chain) = alice_and_bob();
    let m = device.member_writes(group, &mut bob, &mut chain, "old");
    device.push_message(group, &m);
    device.set_clock(Timestamp(device.now().0 + 2 * 86_400_000));
    device.append(
        group,
        OpBody::SetRetention {
            seconds: Some(86_400),
        },
    );
    assert!(device.history(group).is_empty());
    (device, group, bob, chain, m)
}

/// What the user must see: nothing shown in the group, and position `seq` refused.
fn assert_nothing_shown_and_refused_at(device: &Device, group: GroupId, seq: Seq) {
    assert!(
        device.history(group).is_empty(),
        "{:?}",
        device.history(group)
    );
    assert!(refused_at(device, seq), "{:?}", device.rejected());
}

// §11.2: a deleted message's position, served again by sync with another message, is refused.
#[test]
fn a_deleted_messages_position_served_again_with_another_message_is_refused() {
    let (device, group, mut bob, mut chain, m) = bobs_message_deleted();
    let device = serve_again_at(device, group, &mut bob, &mut chain, m.seq);
    assert_nothing_shown_and_refused_at(&device, group, m.seq);
}

// §11.2: an expired message's position, served again by sync with another message, is refused.
#[test]
fn an_expired_messages_position_served_again_with_another_message_is_refused() {
    let (device, group, mut bob, mut chain, m) = bobs_message_expired();
    let device = serve_again_at(device, group, &mut bob, &mut chain, m.seq);
    assert_nothing_shown_and_refused_at(&device, group, m.seq);
}

/// Alice's group with Bob (whose sender key she holds) and Carol, whose message waits at its
/// position for her sender key (`key`, not delivered yet). Returns that message too.
fn carols_message_parked() -> (
    Device,
    GroupId,
    Member,
    SenderChain,
    StoredMessage,
    confide_protocol::frames::InboxItem,
) {
    let mut device = Device::new();
    let mut bob = Member::new(2, "Bob");
    let mut carol = Member::new(4, "Carol");
    let group = device.group_with(&[&bob, &carol]);
    let (chain, item) = device.member_key(group, &mut bob);
    device.push_inbox(&[item]);
    let (mut carols, key) = device.member_key(group, &mut carol);
    // Held back by the server: not in Alice's inbox when she connects again.
    device
        .server
        .lock()
        .unwrap()
        .inbox
        .retain(|item| item.inbox_id != key.inbox_id);
    let waiting = device.member_writes(group, &mut carol, &mut carols, "Carol's");
    device.push_message(group, &waiting);
    assert!(device.history(group).is_empty());
    assert!(
        device
            .store
            .snapshot()
            .get("parked", &at_seq(group, waiting.seq.0))
            .is_some(),
        "Carol's message waits for her key"
    );
    device.clear();
    (device, group, bob, chain, waiting, key)
}

// §11.2: the position of a message waiting for its sender key, served again by sync with
// another message, is refused; the waiting message is still shown there once its key comes.
#[test]
fn a_waiting_messages_position_served_again_with_another_message_is_refused() {
    let (device, group, mut bob, mut chain, waiting, key) = carols_message_parked();
    let mut device = serve_again_at(device, group, &mut bob, &mut chain, waiting.seq);
    assert_nothing_shown_and_refused_at(&device, group, waiting.seq);
    device.push_inbox(&[key]);
    assert_eq!(device.history(group), ["Carol's"]);
}

// §11.2 step 4a: the acknowledgement of Alice's post at a deleted message's position is refused.
#[test]
fn a_post_acknowledged_at_a_deleted_messages_position_is_refused() {
    let (mut device, group, _bob, _chain, m) = bobs_message_deleted();
    post_acknowledged_at(&mut device, group, m.seq);
    assert_nothing_shown_and_refused_at(&device, group, m.seq);
}

// §11.2 step 4a: the acknowledgement of Alice's post at an expired message's position is refused.
#[test]
fn a_post_acknowledged_at_an_expired_messages_position_is_refused() {
    let (mut device, group, _bob, _chain, m) = bobs_message_expired();
    post_acknowledged_at(&mut device, group, m.seq);
    assert_nothing_shown_and_refused_at(&device, group, m.seq);
}

// §11.2 step 4a: the acknowledgement of Alice's post at a waiting message's position is refused.
#[test]
fn a_post_acknowledged_at_a_waiting_messages_position_is_refused() {
    let (mut device, group, _bob, _chain, waiting, _key) = carols_message_parked();
    post_acknowledged_at(&mut device, group, waiting.seq);
    assert_nothing_shown_and_refused_at(&device, group, waiting.seq);
}

/// Alice's group with Bob, Bob's message received and its record then overwritten with
/// `record` (damage on disk), then deleted by Alice.
fn deleted_over_a_damaged_record(record: &[u8]) -> (Device, GroupId, StoredMessage) {
    let (mut device, group, mut bob, mut chain) = alice_and_bob();
    let m = device.member_writes(group, &mut bob, &mut chain, "gone");
    device.push_message(group, &m);
    let mut damage = Batch::new();
    damage.put(
        "messages",
        &at_seq(group, m.seq.0),
        Zeroizing::new(record.to_vec()),
    );
    block_on(device.store.commit(damage)).unwrap();
    device.append(
        group,
        OpBody::DeleteMessages {
            messages: vec![m.envelope.message_id()],
        },
    );
    (device, group, m)
}

// §11.2, §11.11: a message whose stored record no longer parses, once deleted, still holds its
// position: the server's acknowledgement of Alice's post there is refused.
#[test]
fn deleting_a_message_whose_record_is_damaged_keeps_its_position_taken() {
    let (mut device, group, m) = deleted_over_a_damaged_record(b"not json");
    let at = at_seq(group, m.seq.0);
    assert!(device.store.snapshot().get("messages", &at).is_none());
    assert!(device.store.snapshot().get("seq_number", &at).is_some());
    let place = block_on(device.core.message_place(group, m.envelope.message_id()))
        .unwrap()
        .unwrap();
    assert_eq!(place.number, None, "its number could not be read");
    post_acknowledged_at(&mut device, group, m.seq);
    assert_nothing_shown_and_refused_at(&device, group, m.seq);
}

// §11.11: a damaged record whose number can still be read keeps that number once deleted.
#[test]
fn deleting_a_message_whose_record_is_damaged_keeps_the_number_that_can_be_read() {
    let (device, group, m) = deleted_over_a_damaged_record(br#"{"number":1,"text":7}"#);
    let place = block_on(device.core.message_place(group, m.envelope.message_id()))
        .unwrap()
        .unwrap();
    assert_eq!(place.number, Some(1));
}

// §11.12: a deletion whose message record cannot be read (a disk error) keeps nothing of its
// step, so the message is neither removed without its number nor its position freed; once the
// disk reads again the deletion comes again with the sync, and the number is kept.
#[test]
fn a_deletion_that_cannot_read_the_message_is_not_kept_and_is_done_again_later() {
    let (store, probe) = MemoryStore::with_faults(Faults::new());
    let mut device = Device::create(store, Shared::default());
    let mut bob = Member::new(2, "Bob");
    let group = device.group_with(&[&bob]);
    let (mut chain, item) = device.member_key(group, &mut bob);
    device.push_inbox(&[item]);
    let m = device.member_writes(group, &mut bob, &mut chain, "gone");
    device.push_message(group, &m);
    let at = at_seq(group, m.seq.0);
    device.clear();
    probe.fail_reads_of(Some("messages"));
    let _ = block_on(device.core.append(
        group,
        OpBody::DeleteMessages {
            messages: vec![m.envelope.message_id()],
        },
    ));
    block_on(device.core.after_input());
    probe.fail_reads_of(None);
    let snapshot = device.store.snapshot();
    assert!(
        snapshot.get("messages", &at).is_some() || snapshot.get("seq_number", &at).is_some(),
        "the message was removed without its number"
    );
    assert!(
        !device
            .events()
            .iter()
            .any(|e| matches!(e, Event::MessagesDeleted { .. })),
        "a deletion that was not kept was shown"
    );
    // The disk reads again: the deletion comes with the next sync, keeping the number.
    let mut device = device.restart(5);
    block_on(device.core.connect()).unwrap();
    device.drive();
    device.sync().unwrap();
    let snapshot = device.store.snapshot();
    assert!(snapshot.get("messages", &at).is_none());
    let place = block_on(device.core.message_place(group, m.envelope.message_id()))
        .unwrap()
        .unwrap();
    assert_eq!(place.number, Some(1));
}
