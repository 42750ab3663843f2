#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! PROTOCOL.md §11.9–§11.11 as far as the core decides them: look-alike names flagged in the
//! member list, the device's own message numbers, a former member refused locally, and sync
//! refusals reported once.

mod support;

use confide_client_core::store::{Batch, ClientStore as _};
use confide_client_core::{Event, NoticeKind};
use confide_protocol::GroupId;
use confide_protocol::frames::{ClientFrame, ErrorCode, StoredMessage};
use confide_protocol::group_log::OpBody;
use confide_protocol::sender_key::SenderChain;
use pollster::block_on;
use support::{Device, Member, alice_and_bob, refuse};
use zeroize::Zeroizing;

/// The number this device gave `m` in `group`, by the place it keeps for `m`'s id.
fn number_of(device: &Device, group: GroupId, m: &StoredMessage) -> Option<u64> {
    block_on(device.core.message_place(group, m.envelope.message_id()))
        .unwrap()
        .expect("the device keeps a place for the message")
        .number
}

/// Alice's group with Bob, and two messages of Bob's ("one", "two") received live. Returns
/// Bob and his chain (to write again) and the two messages.
fn bob_sent_two() -> (
    Device,
    GroupId,
    Member,
    SenderChain,
    StoredMessage,
    StoredMessage,
) {
    let (mut device, group, mut bob, mut chain) = alice_and_bob();
    let first = device.member_writes(group, &mut bob, &mut chain, "one");
    let second = device.member_writes(group, &mut bob, &mut chain, "two");
    device.push([support::live(group, &first), support::live(group, &second)]);
    (device, group, bob, chain, first, second)
}

fn refuse_sync(device: &Device, group: GroupId, code: ErrorCode) {
    device.answer(Some(refuse(
        code,
        move |frame| matches!(frame, ClientFrame::Sync { group: g, .. } if *g == group),
    )));
}

// §11.9: a member whose name looks like another's is flagged in the member list.
#[test]
fn a_look_alike_name_is_flagged_in_the_member_list() {
    let mut device = Device::new();
    let fake = Member::new(2, "\u{410}lice");
    let bob = Member::new(4, "Bob");
    let group = device.group_with(&[&fake, &bob]);
    let members = device.core.members(group).unwrap();
    let of = |name: &str| {
        members
            .iter()
            .find(|m| m.display_name == name)
            .unwrap()
            .looks_like
            .clone()
    };
    assert_eq!(of("\u{410}lice"), ["Alice"]);
    assert!(of("Bob").is_empty());
}

// §11.11: messages are numbered 1, 2, 3 in the order they became readable here, whatever the
// seqs; a deleted message keeps its number.
#[test]
fn messages_are_numbered_by_this_device_and_numbers_are_never_reused() {
    let (mut device, group, mut bob, mut chain) = alice_and_bob();
    let mut numbers = Vec::new();
    let first = device.member_writes(group, &mut bob, &mut chain, "one");
    let mut forged = device.member_writes(group, &mut bob, &mut chain, "forged");
    forged.envelope.signature.0[0] ^= 1;
    let third = device.member_writes(group, &mut bob, &mut chain, "two");
    device.push([
        support::live(group, &first),
        support::live(group, &forged),
        support::live(group, &third),
    ]);
    device.append(
        group,
        OpBody::DeleteMessages {
            messages: vec![third.envelope.message_id()],
        },
    );
    let fourth = device.member_writes(group, &mut bob, &mut chain, "three");
    device.push_message(group, &fourth);
    for e in device.events() {
        if let Event::Message(m) = e {
            numbers.push((m.seq.0, m.number));
        }
    }
    assert_eq!(numbers, [(1, 1), (3, 2), (4, 3)]);
}

// §11.11: a deleted message keeps its number: the deletion notice names it, the number still
// leads to its position, and the message's place says it. While the message is stored its
// number is in its own record; only its removal writes it apart (`seq_number`), so receiving a
// message writes one store key less.
#[test]
fn a_deleted_message_keeps_its_number_which_is_kept_apart_only_once_it_is_removed() {
    let (mut device, group, mut bob, mut chain, _first, second) = bob_sent_two();
    let id = second.envelope.message_id();
    let at = support::at_seq(group, second.seq.0);
    assert!(device.store.snapshot().get("messages", &at).is_some());
    assert!(
        device.store.snapshot().get("seq_number", &at).is_none(),
        "a stored message's number is in its record only"
    );
    device.append(group, OpBody::DeleteMessages { messages: vec![id] });
    assert!(device.store.snapshot().get("messages", &at).is_none());
    assert!(device.store.snapshot().get("seq_number", &at).is_some());
    let place = block_on(device.core.message_place(group, id))
        .unwrap()
        .unwrap();
    assert_eq!((place.seq, place.number), (second.seq, Some(2)));
    assert_eq!(
        block_on(device.core.seq_of_number(group, 2)).unwrap(),
        Some(second.seq)
    );
    let deleted: Vec<Option<u64>> = block_on(device.core.notices(group))
        .unwrap()
        .into_iter()
        .filter_map(|n| match n.kind {
            NoticeKind::MessageDeleted { number } => Some(number),
            _ => None,
        })
        .collect();
    assert_eq!(deleted, [Some(2)]);
    // Numbers go on after the deleted one's.
    let third = device.member_writes(group, &mut bob, &mut chain, "three");
    device.push_message(group, &third);
    assert_eq!(number_of(&device, group, &third), Some(3));
}

// §11.11 in a store written before numbers were kept in the message's record only: there every
// numbered message had its `seq_number` entry, and one deleted then kept it without its record.
// Opened by this version, the deleted message's number and its notice are as they were.
#[test]
fn a_store_written_before_keeps_the_numbers_of_messages_it_deleted() {
    let (device, group, mut bob, mut chain, first, second) = bob_sent_two();
    // As the earlier version left the store: both numbers written apart, and the second
    // message deleted (its record and evidence gone, its number kept).
    let mut old = Batch::new();
    for (m, number) in [(&first, 1u64), (&second, 2)] {
        let at = support::at_seq(group, m.seq.0);
        old.put(
            "seq_number",
            &at,
            Zeroizing::new(serde_json::to_vec(&number).unwrap()),
        );
    }
    let at = support::at_seq(group, second.seq.0);
    old.remove("messages", &at);
    old.remove("evidence", &at);
    block_on(device.store.commit(old)).unwrap();
    let mut device = device.restart(5);
    block_on(device.core.connect()).unwrap();
    let id = second.envelope.message_id();
    let place = block_on(device.core.message_place(group, id))
        .unwrap()
        .unwrap();
    assert_eq!((place.seq, place.number), (second.seq, Some(2)));
    assert_eq!(number_of(&device, group, &first), Some(1));
    // Deleting the first now keeps its number too, and a new message takes the next one.
    device.append(
        group,
        OpBody::DeleteMessages {
            messages: vec![first.envelope.message_id()],
        },
    );
    assert_eq!(number_of(&device, group, &first), Some(1));
    let third = device.member_writes(group, &mut bob, &mut chain, "three");
    device.push_message(group, &third);
    assert_eq!(device.history(group), ["three"]);
    assert_eq!(number_of(&device, group, &third), Some(3));
}

// §11.11: a device no longer in a group is refused locally, saying so, before anything is sent.
#[test]
fn a_removed_device_is_told_so_and_sends_nothing() {
    let mut device = Device::new();
    let bob = Member::new(2, "Bob");
    let group = device.invited_by(&bob, 5);
    device.sync().unwrap();
    pollster::block_on(device.core.accept_group(group)).unwrap();
    let (op, seq) = device.member_op(
        group,
        &bob,
        OpBody::Remove {
            user: support::ALICE,
            ban: false,
        },
    );
    device.push_op(group, op, seq);
    assert!(
        device
            .events()
            .iter()
            .any(|e| matches!(e, Event::Removed { .. }))
    );
    device.clear();
    assert_eq!(device.send(group, "hello?").unwrap_err().code(), "removed");
    assert!(device.sent().is_empty());
}

// §11.11 sync refusals: one that does not pass by itself fails one sync and is reported once,
// and kept on the group; one that passes fails every sync.
#[test]
fn a_lasting_sync_refusal_is_reported_once_and_kept_a_passing_one_fails_every_sync() {
    let (mut device, group, _bob, _) = alice_and_bob();
    refuse_sync(&device, group, ErrorCode::NoSuchGroup);
    assert_eq!(device.sync().unwrap_err().code(), "no_such_group");
    assert!(device.sync().is_ok());
    let refused = device
        .events()
        .iter()
        .filter(|e| matches!(e, Event::SyncRefused { .. }))
        .count();
    assert_eq!(refused, 1);
    let info = pollster::block_on(device.core.groups())
        .into_iter()
        .find(|g| g.group == group)
        .unwrap();
    assert!(info.sync_refused.is_some());
    // It works again: the mark goes.
    device.answer(None);
    device.sync().unwrap();
    let info = pollster::block_on(device.core.groups())
        .into_iter()
        .find(|g| g.group == group)
        .unwrap();
    assert!(info.sync_refused.is_none());
    refuse_sync(&device, group, ErrorCode::Storage);
    assert_eq!(device.sync().unwrap_err().code(), "storage");
    assert_eq!(device.sync().unwrap_err().code(), "storage");
}
