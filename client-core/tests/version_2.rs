#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! PROTOCOL.md §4.7: a device of protocol version 1 (an identity without an X-Wing key) moves to
//! version 2 when its core starts: it adds its X-Wing key, stores it in its first step, and once
//! connected publishes the list that names it and moves its groups to that list.

mod support;

use chacha20::ChaCha20Rng;
use confide_client_core::{Event, MemoryStore, Profile};
use confide_protocol::device_list::{DeviceList, ListedDevice, SignedDeviceList, UserIdentity};
use confide_protocol::frames::{ClientFrame, ErrorCode, ServerFrame};
use confide_protocol::group_log::OpBody;
use confide_protocol::link::{LinkCode, LinkMessage};
use confide_protocol::{DeviceIdentity, GroupId, Timestamp};
use pollster::block_on;
use rand_core::SeedableRng as _;
use support::{ALICE, Device, Events, Member, Shared, refuse};

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

/// Bob, a member whose device is still of protocol version 1, and the same device once it has
/// moved to version 2 (same id and X25519 key, an X-Wing key added).
fn bob_before_and_after() -> (Member, DeviceIdentity) {
    let legacy = DeviceIdentity::from_secret_bytes(&[41; 32], &[42; 32], None);
    let upgraded = DeviceIdentity::from_secret_bytes(&[41; 32], &[42; 32], Some(&[43; 32]));
    let mut bob = Member::new(2, "Bob");
    bob.identity = legacy;
    (bob, upgraded)
}

/// Bob's list after his device moved to version 2: the successor of the first list his entry
/// carries, naming the X-Wing key.
fn bob_upgraded_list(bob: &Member, upgraded: &DeviceIdentity) -> SignedDeviceList {
    let identity = bob.user_identity();
    let first = bob.entry().device_list.unwrap();
    let first_list: DeviceList = serde_json::from_slice(&first.list).unwrap();
    let next = first_list.successor(
        first.hash(),
        upgraded.device_id(),
        Timestamp(5),
        vec![ListedDevice::new(upgraded, &bob.user, &identity.public())],
    );
    identity.sign_list(&next, upgraded).unwrap()
}

#[test]
fn a_member_seen_to_move_to_version_2_is_sealed_to_with_x_wing_where_a_log_still_pins_the_old_list()
{
    let mut device = support::Device::new();
    let (bob, upgraded) = bob_before_and_after();
    let first = device.group_with(&[&bob]);
    let second = device.group_with(&[&bob]);

    // Bob's update reaches the first group; the relay withholds it from the second, whose log
    // still pins his list without an X-Wing key.
    let update = OpBody::UpdateDevices {
        device_list: bob_upgraded_list(&bob, &upgraded),
        chain: Vec::new(),
    };
    let (op, seq) = device.member_op(first, &bob, update);
    device.push_op(first, op, seq);
    assert!(post_quantum(&device, first));
    assert!(
        !post_quantum(&device, second),
        "the second log pins the old list"
    );
    device.clear();

    device.send(second, "sealed for the future").unwrap();
    let to_bob: Vec<_> = device
        .sealed()
        .into_iter()
        .filter(|s| s.group == second && s.recipient == bob.device())
        .collect();
    assert_eq!(to_bob.len(), 1);
    assert!(
        to_bob[0].enc.is_pq(),
        "Alice seals to the X-Wing key of the newest list she verified"
    );
    assert!(confide_protocol::seal::open(&upgraded, &to_bob[0]).is_ok());
}

#[test]
fn a_refused_key_publication_is_told_and_tried_again_once_a_sibling_list_arrives() {
    let store = MemoryStore::new();
    let server = Shared::default();
    let events = Events::default();
    // Alice's two devices of version 1, both in her list.
    let legacy = DeviceIdentity::from_secret_bytes(&[51; 32], &[52; 32], None);
    let sibling = DeviceIdentity::from_secret_bytes(&[53; 32], &[54; 32], None);
    let sibling_v2 = DeviceIdentity::from_secret_bytes(&[53; 32], &[54; 32], Some(&[55; 32]));
    let user_identity = UserIdentity::from_secret_bytes(&[56; 32]);
    let key = user_identity.public();
    let first = DeviceList::first(ALICE, &user_identity, &legacy, Timestamp(1000));
    let first_signed = user_identity.sign_list(&first, &legacy).unwrap();
    let both = first.successor(
        first_signed.hash(),
        legacy.device_id(),
        Timestamp(1001),
        vec![
            ListedDevice::new(&legacy, &ALICE, &key),
            ListedDevice::new(&sibling, &ALICE, &key),
        ],
    );
    let both_signed = user_identity.sign_list(&both, &legacy).unwrap();
    let mut profile = Profile::new(ALICE, "Alice");
    profile.registered = true;
    block_on(confide_client_core::profile::create_registered(
        &store,
        &legacy,
        &profile,
        &user_identity,
        &both_signed,
    ))
    .unwrap();

    // The sibling published its own key first: the server refuses this device's list.
    let mut device = Device::open(store.clone(), server.clone(), events.clone(), 8);
    device.answer(Some(refuse(ErrorCode::DeviceListRefused, |f| {
        matches!(f, ClientFrame::PublishDevices { .. })
    })));
    block_on(device.core.connect()).unwrap();
    block_on(device.core.after_connect());
    let refused = device.events_as(|e| match e {
        Event::PostQuantumKeyRefused { code, .. } => Some(code),
        _ => None,
    });
    assert_eq!(
        refused,
        vec![ErrorCode::DeviceListRefused.as_str().to_owned()]
    );
    assert_eq!(published(&device).len(), 1);

    // The sibling's list arrives: this device publishes its key on top of it, without waiting
    // for the next connection.
    device.answer(None);
    let sibling_list = both.successor(
        both_signed.hash(),
        sibling.device_id(),
        Timestamp(1002),
        vec![
            ListedDevice::new(&legacy, &ALICE, &key),
            ListedDevice::new(&sibling_v2, &ALICE, &key),
        ],
    );
    let sibling_signed = user_identity.sign_list(&sibling_list, &sibling).unwrap();
    device.push([ServerFrame::DeviceList {
        list: sibling_signed.clone(),
    }]);
    let lists = published(&device);
    assert_eq!(lists.len(), 2, "published again after the sibling's list");
    let (_, last) = &lists[1];
    assert!(last.succeeds(&sibling_list, &sibling_signed.hash()));
    let (upgraded, _) = block_on(confide_client_core::profile::load(&store)).unwrap();
    assert_eq!(
        last.device_keys(),
        vec![upgraded.public_keys(), sibling_v2.public_keys()]
    );
}

#[test]
fn a_new_device_without_an_x_wing_key_is_refused_before_anything_is_offered_or_published() {
    let mut device = support::Device::new();
    let code = LinkCode::generate(&mut ChaCha20Rng::from_seed([61; 32]));
    let channel = code.channel();
    let old = DeviceIdentity::from_secret_bytes(&[62; 32], &[63; 32], None);
    let hello = LinkMessage::Hello {
        keys: old.public_keys(),
        commit: [7; 32],
    }
    .to_bytes();
    // The relay joins the channel and hands over the hello; an offer would be answered by the
    // channel closing.
    device.answer(Some(Box::new(move |f| match f {
        ClientFrame::LinkJoin { id, .. } => Some(vec![
            ServerFrame::Ok { id: *id },
            ServerFrame::LinkData {
                channel,
                data: Some(hello.clone()),
            },
        ]),
        ClientFrame::LinkSend { id, .. } => Some(vec![
            ServerFrame::Ok { id: *id },
            ServerFrame::LinkClosed { channel },
        ]),
        _ => None,
    })));
    let err = block_on(device.core.link_start(&code.display())).unwrap_err();
    assert_eq!(err.code(), "link_mismatch", "{err}");
    assert!(
        device.sent().iter().all(|f| !matches!(
            f,
            ClientFrame::LinkSend { .. } | ClientFrame::PublishDevices { .. }
        )),
        "nothing offered, nothing published"
    );
}

#[test]
fn a_store_from_before_the_upgrade_asks_for_the_device_to_be_linked_again() {
    // The list on record names this device with an X-Wing key; the store (restored from a
    // backup made before the upgrade) holds only the version-1 secrets.
    let store = MemoryStore::new();
    let legacy = DeviceIdentity::from_secret_bytes(&[71; 32], &[72; 32], None);
    let upgraded = DeviceIdentity::from_secret_bytes(&[71; 32], &[72; 32], Some(&[73; 32]));
    let user_identity = UserIdentity::from_secret_bytes(&[74; 32]);
    let list = DeviceList::first(ALICE, &user_identity, &upgraded, Timestamp(1000));
    let signed = user_identity.sign_list(&list, &legacy).unwrap();
    let mut profile = Profile::new(ALICE, "Alice");
    profile.registered = true;
    block_on(confide_client_core::profile::create_registered(
        &store,
        &legacy,
        &profile,
        &user_identity,
        &signed,
    ))
    .unwrap();

    let Err(err) = Device::try_open_as(
        store.clone(),
        Shared::default(),
        Events::default(),
        9,
        false,
    ) else {
        panic!("the device started");
    };
    assert_eq!(err.code(), "relink_needed", "{err}");
    assert_eq!(
        stored_secret(&store).len(),
        64,
        "no new X-Wing key was made"
    );
}
