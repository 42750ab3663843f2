#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! PROTOCOL.md §11.5, sealed payloads ahead of the log: what is kept for later, what is
//! dropped, and that every one is acknowledged.

mod support;

use confide_protocol::frames::{ClientFrame, InboxItem};
use confide_protocol::group_log::Role;
use confide_protocol::{Epoch, EpochRef, GroupId, OpHash};
use support::{Device, Member, alice_and_bob};

fn parked(device: &Device, group: GroupId, sender: &Member, item: &InboxItem) -> bool {
    let key = [
        group.as_bytes().as_slice(),
        sender.device().as_bytes(),
        &item.inbox_id.to_be_bytes(),
    ]
    .concat();
    device.store.snapshot().get("parked_keys", &key).is_some()
}

/// An epoch one past the log's current one (on no branch the log has).
fn one_epoch_ahead(device: &Device, group: GroupId) -> EpochRef {
    EpochRef {
        epoch: Epoch(device.state(group).epoch().0 + 1),
        hash: OpHash([3; 32]),
    }
}

fn acked(device: &Device, item: &InboxItem) -> bool {
    device.sent().iter().any(|f| matches!(f, ClientFrame::AckInbox { inbox_ids, .. } if inbox_ids.contains(&item.inbox_id)))
}

// §11.5: a key for an epoch the log has not reached is kept, acknowledged, makes the device
// sync and hold its posts, and is used once the log gets there.
#[test]
fn an_early_sender_key_is_kept_acknowledged_and_used_once_the_log_gets_there() {
    let (mut device, group, mut bob, _) = alice_and_bob();
    device.set_role(group, bob.user, Role::CoFacilitator);
    device.member_adds(group, &bob, Member::new(4, "Carol").entry());
    // The server withholds Bob's op for now.
    let withheld = device.withhold_op(group);
    let mut next = device.log(group);
    next.ops.push(withheld.clone());
    let epoch = next.state().epoch_ref();
    let mut chain = bob.chain();
    let sealed = bob.seal_key(&chain, &device.alice.keys(), group, epoch);
    let item = device.put_in_inbox(sealed);
    device.clear();
    device.push_inbox(std::slice::from_ref(&item));
    assert!(parked(&device, group, &bob, &item));
    assert!(acked(&device, &item));
    assert!(!device.synced().is_empty());
    assert_eq!(device.send(group, "wait").unwrap_err().code(), "held");
    // The op comes: the key is used, Bob's message in that epoch is shown.
    device.store_op(group, withheld);
    device.sync().unwrap();
    assert!(!parked(&device, group, &bob, &item));
    let m = device.member_writes(group, &mut bob, &mut chain, "new epoch");
    device.push_message(group, &m);
    assert_eq!(device.shown(), ["new epoch"]);
}

// §11.5 (1): a payload that does not open is dropped, and acknowledged.
#[test]
fn an_early_payload_that_does_not_open_is_dropped_and_acknowledged() {
    let (mut device, group, mut bob, _) = alice_and_bob();
    let ahead = one_epoch_ahead(&device, group);
    let chain = bob.chain();
    // Sealed to Carol's keys, delivered to Alice.
    let mut sealed = bob.seal_key(&chain, &Member::new(4, "Carol").keys(), group, ahead);
    sealed.recipient = device.alice.device();
    let item = device.put_in_inbox(sealed);
    device.push_inbox(std::slice::from_ref(&item));
    assert!(!parked(&device, group, &bob, &item));
    assert!(acked(&device, &item));
    assert!(device.send(group, "not held").is_ok());
}

// §11.5 (2): more than 16 epochs ahead is dropped (and acknowledged).
#[test]
fn a_payload_more_than_16_epochs_ahead_is_dropped() {
    let (mut device, group, mut bob, _) = alice_and_bob();
    let now = device.state(group).epoch().0;
    let chain = bob.chain();
    let mut items = Vec::new();
    for ahead in [16, 17] {
        let epoch = EpochRef {
            epoch: Epoch(now + ahead),
            hash: OpHash([ahead as u8; 32]),
        };
        let sealed = bob.seal_key(&chain, &device.alice.keys(), group, epoch);
        items.push(device.put_in_inbox(sealed));
    }
    device.push_inbox(&items);
    assert!(parked(&device, group, &bob, &items[0]));
    assert!(!parked(&device, group, &bob, &items[1]));
    assert!(acked(&device, &items[1]));
}

// §11.5 (3): at most 64 early payloads are kept per sender and group.
#[test]
fn at_most_64_early_payloads_of_one_sender_are_kept() {
    let (mut device, group, mut bob, _) = alice_and_bob();
    let ahead = one_epoch_ahead(&device, group);
    let chain = bob.chain();
    let items: Vec<InboxItem> = (0..65)
        .map(|_| {
            let sealed = bob.seal_key(&chain, &device.alice.keys(), group, ahead);
            device.put_in_inbox(sealed)
        })
        .collect();
    device.push_inbox(&items);
    assert!(parked(&device, group, &bob, &items[63]));
    assert!(!parked(&device, group, &bob, &items[64]));
    assert!(
        device.server.lock().unwrap().inbox.is_empty(),
        "every item acknowledged"
    );
}

// §11.5: a payload of a group the device does not hold yet is kept, and used when the group is
// first fetched.
#[test]
fn a_key_for_a_group_not_fetched_yet_is_used_when_the_group_arrives() {
    let mut device = Device::new();
    let mut bob = Member::new(2, "Bob");
    let group = device.invited_by(&bob, 5);
    let (mut chain, item) = device.member_key(group, &mut bob);
    let m = device.member_writes(group, &mut bob, &mut chain, "welcome");
    // The inbox first (the device does not know the group), then the sync.
    device.push_inbox(std::slice::from_ref(&item));
    assert!(acked(&device, &item));
    device.sync().unwrap();
    pollster::block_on(device.core.accept_group(group)).unwrap();
    device.drive();
    assert_eq!(device.shown(), ["welcome"]);
    let _ = m;
}
