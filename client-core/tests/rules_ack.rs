#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! PROTOCOL.md §11.6, acknowledging the inbox: every item, only after it is stored, never if
//! storing failed, in frames of at most 1,024 ids.

mod support;

use confide_client_core::MemoryStore;
use confide_client_core::memory::Faults;
use confide_protocol::frames::{ClientFrame, InboxItem};
use confide_protocol::seal::SealKind;
use support::{Device, Member, Shared};

fn acks(device: &Device) -> Vec<Vec<u64>> {
    device.sent_as(|f| match f {
        ClientFrame::AckInbox { inbox_ids, .. } => Some(inbox_ids),
        _ => None,
    })
}

// §11.6: every item is acknowledged (stored or deliberately dropped), and only once the store
// holds what it brought.
#[test]
fn every_inbox_item_is_acknowledged_and_only_after_it_is_stored() {
    let mut device = Device::new();
    let mut bob = Member::new(2, "Bob");
    let group = device.group_with(&[&bob]);
    let (_, key) = device.member_key(group, &mut bob);
    let epoch = device.state(group).epoch_ref();
    let direct = bob.seal(SealKind::Direct, &device.alice.keys(), group, epoch, b"hi");
    let direct = device.put_in_inbox(direct);
    device.push_inbox(&[key.clone(), direct.clone()]);
    assert_eq!(acks(&device), [vec![key.inbox_id, direct.inbox_id]]);
    let chain_key = [
        group.as_bytes().as_slice(),
        epoch.hash.as_bytes(),
        bob.device().as_bytes(),
    ]
    .concat();
    for (frame, snapshot) in device.server.lock().unwrap().sent.iter() {
        if let ClientFrame::AckInbox { .. } = frame {
            assert!(
                snapshot.get("recv_chains", &chain_key).is_some(),
                "acknowledged before stored"
            );
        }
    }
}

// §11.6: if storing fails nothing is acknowledged; the item comes back and is stored then.
#[test]
fn an_item_whose_storing_failed_is_not_acknowledged_and_comes_back() {
    // A dry run counts the store's steps up to the delivery; the real run fails the next one.
    let run = |faults: Faults| {
        let (store, probe) = MemoryStore::with_faults(faults);
        let mut device = Device::create(store, Shared::default());
        let mut bob = Member::new(2, "Bob");
        let group = device.group_with(&[&bob]);
        let (_, item) = device.member_key(group, &mut bob);
        let before = probe.steps();
        device.push_inbox(std::slice::from_ref(&item));
        (device, group, bob, item, before)
    };
    let (_, _, _, _, before) = run(Faults::new());
    let (device, group, bob, item, _) = run(Faults::new().fail_at(before + 1));
    assert!(acks(&device).is_empty(), "acknowledged although not stored");
    assert!(!device.core.is_connected(), "the connection is dropped");
    assert_eq!(
        device.server.lock().unwrap().inbox,
        std::slice::from_ref(&item)
    );
    // Next connection: delivered again, stored, acknowledged.
    let mut device = device;
    pollster::block_on(device.core.connect()).unwrap();
    device.drive();
    assert!(acks(&device).iter().any(|ids| ids.contains(&item.inbox_id)));
    let chain_key = [
        group.as_bytes().as_slice(),
        device.state(group).epoch_hash().as_bytes(),
        bob.device().as_bytes(),
    ]
    .concat();
    assert!(
        device
            .store
            .snapshot()
            .get("recv_chains", &chain_key)
            .is_some()
    );
}

// §11.6: acknowledgements go in frames of at most 1,024 ids, covering every item.
#[test]
fn acknowledgements_go_in_frames_of_at_most_1024_ids() {
    let mut device = Device::new();
    let mut bob = Member::new(2, "Bob");
    let group = device.group_with(&[&bob]);
    let epoch = device.state(group).epoch_ref();
    let items: Vec<InboxItem> = (0..1_030)
        .map(|_| {
            let sealed = bob.seal(SealKind::Direct, &device.alice.keys(), group, epoch, b"x");
            device.put_in_inbox(sealed)
        })
        .collect();
    device.push_inbox(&items);
    let acks = acks(&device);
    assert!(acks.iter().all(|ids| ids.len() <= 1_024));
    assert_eq!(acks.iter().map(Vec::len).sum::<usize>(), 1_030);
    assert!(device.server.lock().unwrap().inbox.is_empty());
}
