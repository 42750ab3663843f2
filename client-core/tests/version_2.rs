#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! PROTOCOL.md §4.7: a device of protocol version 1 (an identity without an X-Wing key) moves to
//! version 2 when its core starts: it adds its X-Wing key, stores it in its first step, and once
//! connected publishes the list that names it and moves its groups to that list.

mod support;

use confide_client_core::{MemoryStore, Profile};
use confide_protocol::device_list::{DeviceList, SignedDeviceList, UserIdentity};
use confide_protocol::frames::ClientFrame;
use confide_protocol::group_log::OpBody;
use confide_protocol::{DeviceIdentity, GroupId, Timestamp};
use pollster::block_on;
use support::{ALICE, Device, Events, Member, Shared};

/// The identity secret the store holds.
fn stored_secret(store: &MemoryStore) -> Vec<u8> {
    store
        .snapshot()
        .get("profile", b"identity")
        .expect("an identity is stored")
        .to_vec()
}

/// The lists the device published, parsed, in order.
fn published(device: &Device) -> Vec<(SignedDeviceList, DeviceList)> {
    device.sent_as(|f| match f {
        ClientFrame::PublishDevices { device_list, .. } => {
            let list = device_list.verify().unwrap();
            Some((device_list, list))
        }
        _ => None,
    })
}

/// Whether the device's view of `group` says every device there has an X-Wing key.
fn post_quantum(device: &Device, group: GroupId) -> bool {
    block_on(device.core.groups())
        .into_iter()
        .find(|g| g.group == group)
        .unwrap()
        .post_quantum
}

#[test]
fn a_version_1_profile_gets_its_x_wing_key_at_start_publishes_it_and_keeps_it() {
    let store = MemoryStore::new();
    let server = Shared::default();
    let events = Events::default();
    // A device registered under version 1 with its user's first list: 64 bytes of secrets.
    let legacy = DeviceIdentity::from_secret_bytes(&[11; 32], &[12; 32], None);
    let user_identity = UserIdentity::from_secret_bytes(&[13; 32]);
    let first = user_identity
        .sign_list(
            &DeviceList::first(ALICE, &user_identity, &legacy, Timestamp(1000)),
            &legacy,
        )
        .unwrap();
    let mut profile = Profile::new(ALICE, "Alice");
    profile.registered = true;
    block_on(confide_client_core::profile::create_registered(
        &store,
        &legacy,
        &profile,
        &user_identity,
        &first,
    ))
    .unwrap();
    assert_eq!(stored_secret(&store).len(), 64);

    // Still at version 1 (the test hook): a group it makes names its X25519 key only.
    let mut device = Device::open_as(store.clone(), server.clone(), events.clone(), 3, true);
    block_on(device.core.connect()).unwrap();
    assert!(published(&device).is_empty(), "its list is on record");
    let bob = Member::new(2, "Bob");
    let group = device.group_with(&[&bob]);
    assert_eq!(
        stored_secret(&store).len(),
        64,
        "a version-1 device stays one"
    );
    let pinned = device.state(group);
    let entry = &pinned.member(&ALICE).unwrap().entry;
    assert_eq!(entry.devices, vec![legacy.public_keys()]);
    assert!(
        !post_quantum(&device, group),
        "Alice's device has no X-Wing key"
    );
    assert_eq!(entry.device_list.as_ref(), Some(&first));
    let epoch_before = pinned.epoch();
    drop(device);

    // Started as version 2: the X-Wing key is added and stored before anything is dialled.
    let mut device = Device::open(store.clone(), server.clone(), events.clone(), 4);
    assert_eq!(stored_secret(&store).len(), 96);
    let (upgraded, _) = block_on(confide_client_core::profile::load(&store)).unwrap();
    assert!(upgraded.has_pq_key());
    assert_eq!(upgraded.device_id(), legacy.device_id());
    assert_eq!(upgraded.sealing_public(), legacy.sealing_public());
    assert!(
        device.sent().is_empty(),
        "nothing is sent before connecting"
    );

    // Connected: it publishes the successor of its list naming the X-Wing key, then moves the
    // group to it, which starts a new epoch.
    block_on(device.core.connect()).unwrap();
    block_on(device.core.after_connect());
    let lists = published(&device);
    assert_eq!(lists.len(), 1, "one list published: {lists:?}");
    let (signed, list) = &lists[0];
    let first_list: DeviceList = serde_json::from_slice(&first.list).unwrap();
    assert!(list.succeeds(&first_list, &first.hash()));
    assert_eq!(list.device_keys(), vec![upgraded.public_keys()]);
    let updates = device.sent_as(|f| match f {
        ClientFrame::AppendOp { group: g, op, .. } if g == group => {
            match op.parse_unverified().unwrap().body {
                OpBody::UpdateDevices { device_list, .. } => Some(device_list),
                _ => None,
            }
        }
        _ => None,
    });
    assert_eq!(updates, vec![signed.clone()]);
    let state = device.state(group);
    assert_eq!(
        state.member(&ALICE).unwrap().entry.devices,
        vec![upgraded.public_keys()]
    );
    assert!(
        state.epoch() > epoch_before,
        "the update starts a new epoch"
    );
    assert_eq!(block_on(device.core.groups())[0].epoch, state.epoch());
    assert!(post_quantum(&device, group));
    // Its new sender key goes to Bob with X-Wing, as everything sealed to a device of version 2.
    assert!(device.sealed().iter().all(|s| s.enc.is_pq()));
    assert_eq!(
        device.core.own_entry().devices,
        vec![upgraded.public_keys()]
    );

    // Started again: the same keys, and nothing more to publish.
    device.clear();
    let mut device = device.restart(5);
    let (again, _) = block_on(confide_client_core::profile::load(&store)).unwrap();
    assert_eq!(again.public_keys(), upgraded.public_keys());
    block_on(device.core.connect()).unwrap();
    block_on(device.core.after_connect());
    assert!(published(&device).is_empty());
    assert_eq!(device.state(group).epoch(), state.epoch());
}

#[test]
fn a_new_version_1_profile_registers_with_its_x_wing_key_at_once() {
    // Never registered: its first list is made again with the new keys, and registered with.
    let store = MemoryStore::new();
    let legacy = DeviceIdentity::from_secret_bytes(&[21; 32], &[22; 32], None);
    block_on(confide_client_core::profile::create(
        &store,
        &legacy,
        &Profile::new(ALICE, "Alice"),
    ))
    .unwrap();
    let mut device = Device::open(store.clone(), Shared::default(), Events::default(), 6);
    block_on(device.core.connect()).unwrap();
    let (upgraded, _) = block_on(confide_client_core::profile::load(&store)).unwrap();
    assert!(upgraded.has_pq_key());
    let registered = device.sent_as(|f| match f {
        ClientFrame::Register {
            keys, device_list, ..
        } => Some((keys, device_list.unwrap().verify().unwrap())),
        _ => None,
    });
    assert_eq!(registered.len(), 1);
    let (keys, list) = &registered[0];
    assert_eq!(*keys, upgraded.public_keys());
    assert_eq!((list.version, list.device_keys()), (1, vec![keys.clone()]));
    assert!(published(&device).is_empty());
    assert!(device.core.is_registered());
}

#[test]
fn a_version_1_profile_from_before_device_lists_publishes_a_first_list_with_its_x_wing_key() {
    // Registered under version 1 before device lists, started straight as version 2: its first
    // list, which no server has yet, names its X-Wing key at once (a server of version 2 takes
    // no list naming the device without it).
    let store = MemoryStore::new();
    let legacy = DeviceIdentity::from_secret_bytes(&[31; 32], &[32; 32], None);
    let mut profile = Profile::new(ALICE, "Alice");
    profile.registered = true;
    block_on(confide_client_core::profile::create(
        &store, &legacy, &profile,
    ))
    .unwrap();
    let mut device = Device::open(store.clone(), Shared::default(), Events::default(), 7);
    block_on(device.core.connect()).unwrap();
    let (upgraded, _) = block_on(confide_client_core::profile::load(&store)).unwrap();
    assert!(upgraded.public_keys().has_pq_key());
    let lists = published(&device);
    assert_eq!(lists.len(), 1, "{lists:?}");
    let (_, first) = &lists[0];
    assert_eq!(first.version, 1);
    assert_eq!(first.device_keys(), vec![upgraded.public_keys()]);
    assert_eq!(upgraded.device_id(), legacy.device_id());
    assert_eq!(upgraded.sealing_public(), legacy.sealing_public());
}
