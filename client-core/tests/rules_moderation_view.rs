#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! PROTOCOL.md §11.9–§11.11 as far as the core decides them: look-alike names flagged in the
//! member list, the device's own message numbers, a former member refused locally, and sync
//! refusals reported once.

mod support;

use confide_client_core::Event;
use confide_protocol::GroupId;
use confide_protocol::frames::{ClientFrame, ErrorCode};
use confide_protocol::group_log::OpBody;
use support::{Device, Member, alice_and_bob, refuse};

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
