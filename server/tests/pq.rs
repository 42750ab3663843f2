//! Protocol version 2 at the server (issue 18, PROTOCOL.md §4.1, §9.2, §10.1): only clients of
//! version 2 connect, a new device registers with its X-Wing key, a device registered under
//! version 1 adds its X-Wing key by publishing a list (and the server's record of it follows),
//! and the larger keys and encapsulations still fit every limit.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Device, Server, User, append, refusal, rng};
use confide_protocol::device_list::SignedDeviceList;
use confide_protocol::encoding::b64_encode;
use confide_protocol::frames::{ClientFrame, ErrorCode, PROTOCOL_VERSION, ServerFrame};
use confide_protocol::group_log::{MemberEntry, OpBody};
use confide_protocol::identity::{LABEL_PQ_SEALING_KEY, LABEL_SEALING_KEY, PQ_KEY_LEN};
use confide_protocol::seal::{SealKind, seal};
use confide_protocol::{DeviceIdentity, DeviceKeys, UserId};
use confide_server::server::now;
use confide_server::storage::{DeviceRecord, Write};
use confide_server::{Limits, Storage as _};

/// A device made by protocol version 1: no X-Wing key.
fn version_1_device() -> DeviceIdentity {
    let secrets = DeviceIdentity::generate(&mut rng()).to_secret_bytes();
    DeviceIdentity::from_secrets(&secrets[..64]).unwrap()
}

/// The same device with its X-Wing key added (as a client moving to version 2 does).
fn upgraded(device: &DeviceIdentity) -> DeviceIdentity {
    let mut copy = DeviceIdentity::from_secrets(&device.to_secret_bytes()).unwrap();
    copy.add_pq_key(&mut rng());
    copy
}

/// The same device id, with another X25519 key (and an X-Wing key).
fn other_sealing_key(device: &DeviceIdentity) -> DeviceIdentity {
    let mine = device.to_secret_bytes();
    let other = DeviceIdentity::generate(&mut rng()).to_secret_bytes();
    let part =
        |bytes: &[u8], i: usize| -> [u8; 32] { bytes[32 * i..32 * (i + 1)].try_into().unwrap() };
    DeviceIdentity::from_secret_bytes(&part(&mine, 0), &part(&other, 1), Some(&part(&other, 2)))
}

/// The record a server of version 1 kept for `device`.
fn record(device: &DeviceIdentity, user: UserId) -> Write {
    Write::Device(DeviceRecord {
        user,
        keys: device.public_keys(),
        display_name: "Old".into(),
        registered_at: now(),
    })
}

fn copy(identity: &DeviceIdentity) -> DeviceIdentity {
    DeviceIdentity::from_secrets(&identity.to_secret_bytes()).unwrap()
}

/// Connects `identity` and sends `register` of protocol `version` with `keys`; the reply.
async fn register_as(
    url: &str,
    identity: &DeviceIdentity,
    user: UserId,
    version: u16,
    keys: DeviceKeys,
    list: Option<SignedDeviceList>,
) -> (ServerFrame, Device) {
    let mut device = Device::connect(url, copy(identity), user).await;
    let signature = device.sign_challenge().await;
    let id = device.next_id();
    let reply = device
        .request(ClientFrame::Register {
            id,
            version,
            user,
            display_name: "Someone".into(),
            keys,
            registration_token: None,
            device_list: list,
            signature,
        })
        .await;
    (reply, device)
}

/// Connects `identity` and sends `authenticate` of protocol `version`; the reply.
async fn authenticate_as(
    url: &str,
    identity: &DeviceIdentity,
    version: u16,
) -> (ServerFrame, Device) {
    let mut device = Device::connect(url, copy(identity), UserId([0; 16])).await;
    let signature = device.sign_challenge().await;
    let id = device.next_id();
    let reply = device
        .request(ClientFrame::Authenticate {
            id,
            version,
            device: identity.device_id(),
            signature,
        })
        .await;
    (reply, device)
}

async fn authenticated(url: &str, identity: &DeviceIdentity) -> Device {
    let (reply, device) = authenticate_as(url, identity, PROTOCOL_VERSION).await;
    assert!(
        matches!(reply, ServerFrame::Authenticated { .. }),
        "{reply:?}"
    );
    device
}

async fn publish(device: &mut Device, list: &SignedDeviceList) -> ServerFrame {
    let id = device.next_id();
    device
        .request(ClientFrame::PublishDevices {
            id,
            device_list: list.clone(),
        })
        .await
}

/// The keys the server gives out for `device` (`lookup_devices`).
async fn looked_up(asker: &mut Device, device: &DeviceIdentity) -> Option<DeviceKeys> {
    let id = asker.next_id();
    match asker
        .request(ClientFrame::LookupDevices {
            id,
            devices: vec![device.device_id()],
        })
        .await
    {
        ServerFrame::Devices { devices, .. } => devices.into_iter().next().map(|d| d.keys),
        other => panic!("expected devices, got {other:?}"),
    }
}

fn code(frame: &ServerFrame) -> Option<ErrorCode> {
    refusal(frame).map(|(code, _)| code)
}

fn message(frame: &ServerFrame) -> &str {
    match frame {
        ServerFrame::Error { message, .. } => message,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// An `add` of `user` with the devices and list given.
fn add(user: UserId, devices: Vec<DeviceKeys>, list: &SignedDeviceList) -> OpBody {
    OpBody::Add {
        member: MemberEntry {
            user,
            display_name: "Added".into(),
            devices,
            device_list: Some(list.clone()),
        },
        invite: None,
        invite_sig: None,
        invite_device: None,
    }
}

#[tokio::test]
async fn a_client_of_protocol_version_1_is_told_the_server_speaks_version_2_and_nothing_is_stored()
{
    let server = Server::start(Limits::default()).await;
    let url = &server.url;
    let old = version_1_device();
    let user = UserId::random(&mut rng());
    let (reply, _) = register_as(url, &old, user, 1, old.public_keys(), None).await;
    assert_eq!(
        code(&reply),
        Some(ErrorCode::UnsupportedVersion),
        "{reply:?}"
    );
    assert!(message(&reply).contains("version 2"), "{reply:?}");
    assert_eq!(server.storage.device(&old.device_id()).unwrap(), None);
    assert!(server.storage.devices_of_user(&user).unwrap().is_empty());

    // Nor does a device registered under version 1 get in with a client of version 1.
    let server = Server::start_with(Limits::default(), &[record(&old, user)]).await;
    let (reply, _) = authenticate_as(&server.url, &old, 1).await;
    assert_eq!(
        code(&reply),
        Some(ErrorCode::UnsupportedVersion),
        "{reply:?}"
    );
    assert!(message(&reply).contains("version 2"), "{reply:?}");
    authenticated(&server.url, &old).await;
}

#[tokio::test]
async fn a_new_device_registers_only_with_a_signed_x_wing_key() {
    let server = Server::start(Limits::default()).await;
    let url = &server.url;
    let old = version_1_device();
    let user = UserId::random(&mut rng());
    let (reply, _) = register_as(url, &old, user, PROTOCOL_VERSION, old.public_keys(), None).await;
    assert_eq!(
        code(&reply),
        Some(ErrorCode::UnsupportedVersion),
        "{reply:?}"
    );
    assert!(message(&reply).contains("X-Wing key"), "{reply:?}");
    assert_eq!(server.storage.device(&old.device_id()).unwrap(), None);

    // An X-Wing key its device did not sign.
    let new = DeviceIdentity::generate(&mut rng());
    let mut unsigned = new.public_keys();
    unsigned.pq_key = DeviceIdentity::generate(&mut rng()).public_keys().pq_key;
    let (reply, _) = register_as(url, &new, user, PROTOCOL_VERSION, unsigned, None).await;
    assert_eq!(code(&reply), Some(ErrorCode::AuthFailed), "{reply:?}");
    assert_eq!(server.storage.device(&new.device_id()).unwrap(), None);

    let (reply, _) = register_as(url, &new, user, PROTOCOL_VERSION, new.public_keys(), None).await;
    assert!(
        matches!(reply, ServerFrame::Authenticated { .. }),
        "{reply:?}"
    );
    let stored = server.storage.device(&new.device_id()).unwrap().unwrap();
    assert_eq!(stored.keys, new.public_keys());
}

#[tokio::test]
async fn a_device_whose_signed_keys_are_not_usable_keys_cannot_register() {
    let server = Server::start(Limits::default()).await;
    let url = &server.url;
    let user = UserId::random(&mut rng());

    // An X25519 key of small order (every seal to it would fail), signed by its device.
    let low_order = DeviceIdentity::generate(&mut rng());
    let mut keys = low_order.public_keys();
    keys.sealing_key = [0; 32];
    keys.sealing_sig = low_order.sign(LABEL_SEALING_KEY, &[&keys.sealing_key]);
    let (reply, _) = register_as(url, &low_order, user, PROTOCOL_VERSION, keys, None).await;
    assert_eq!(code(&reply), Some(ErrorCode::AuthFailed), "{reply:?}");
    assert_eq!(server.storage.device(&low_order.device_id()).unwrap(), None);

    // 1216 bytes of 0xFF, which fail ML-KEM's modulus check, signed as its X-Wing key: the
    // frame does not even parse.
    let bad_pq = DeviceIdentity::generate(&mut rng());
    let mut device = Device::connect(url, copy(&bad_pq), user).await;
    let signature = device.sign_challenge().await;
    let id = device.next_id();
    let frame = ClientFrame::Register {
        id,
        version: PROTOCOL_VERSION,
        user,
        display_name: "Someone".into(),
        keys: bad_pq.public_keys(),
        registration_token: None,
        device_list: None,
        signature,
    };
    let mut json = serde_json::to_value(&frame).unwrap();
    let bad = [0xFF; PQ_KEY_LEN];
    json["keys"]["pq_key"] = b64_encode(&bad).into();
    json["keys"]["pq_sig"] =
        serde_json::to_value(bad_pq.sign(LABEL_PQ_SEALING_KEY, &[&bad])).unwrap();
    device.conn.send_raw(json.to_string()).await.unwrap();
    let reply = device.reply_to(id).await;
    assert_eq!(code(&reply), Some(ErrorCode::BadFrame), "{reply:?}");
    assert!(message(&reply).contains("X-Wing key"), "{reply:?}");
    assert_eq!(server.storage.device(&bad_pq.device_id()).unwrap(), None);
}

#[tokio::test]
async fn a_device_of_version_1_adds_its_x_wing_key_by_publishing_a_list_and_is_then_added_with_it()
{
    // A person whose phone registered, and published a list, under protocol version 1.
    let phone_v1 = version_1_device();
    let mut person = User::new(&phone_v1);
    let old_list = person.signed.clone();
    let records = [
        record(&phone_v1, person.id),
        Write::DeviceList {
            user: person.id,
            identity: person.identity.public(),
            list: old_list.clone(),
        },
    ];
    let server = Server::start_with(Limits::default(), &records).await;
    let url = &server.url;
    let mut facilitator = Device::register(url).await;
    let facilitator_id = copy(&facilitator.identity);
    let mut state = facilitator.create_group().await;

    let mut phone = authenticated(url, &phone_v1).await;
    assert_eq!(
        looked_up(&mut facilitator, &phone_v1).await,
        Some(phone_v1.public_keys())
    );

    // The phone moves to version 2: same device, same X25519 key, a new X-Wing key.
    let phone_v2 = upgraded(&phone_v1);
    let next = person.successor(&phone_v2, &[&phone_v2]);
    let reply = publish(&mut phone, &next.1).await;
    assert!(matches!(reply, ServerFrame::Ok { .. }), "{reply:?}");
    person.adopt(next);

    // Everyone who looks the phone up now gets its X-Wing key.
    let keys = looked_up(&mut facilitator, &phone_v1).await.unwrap();
    assert_eq!(keys, phone_v2.public_keys());
    assert!(keys.has_pq_key());
    let id = facilitator.next_id();
    match facilitator
        .request(ClientFrame::LookupUsers {
            id,
            users: vec![person.id],
        })
        .await
    {
        ServerFrame::Devices {
            devices,
            device_lists,
            ..
        } => {
            assert_eq!(
                devices.iter().map(|d| d.keys.clone()).collect::<Vec<_>>(),
                vec![phone_v2.public_keys()]
            );
            assert_eq!(device_lists, vec![person.signed.clone()]);
        }
        other => panic!("expected devices, got {other:?}"),
    }

    // An `add` with the old keys (and the old list) is refused; with the new ones it is taken.
    let stale = add(person.id, vec![phone_v1.public_keys()], &old_list);
    let reply = append(&mut facilitator, &facilitator_id, &mut state, stale).await;
    assert_eq!(code(&reply), Some(ErrorCode::InvalidOp), "{reply:?}");
    let current = add(person.id, person.list.device_keys(), &person.signed);
    let reply = append(&mut facilitator, &facilitator_id, &mut state, current).await;
    assert!(matches!(reply, ServerFrame::OpAppended { .. }), "{reply:?}");

    // The stored record carries the key (written in the same batch as the list).
    assert_eq!(
        server
            .storage
            .device(&phone_v1.device_id())
            .unwrap()
            .unwrap()
            .keys,
        phone_v2.public_keys()
    );
}

#[tokio::test]
async fn a_device_of_version_1_without_a_list_adds_its_x_wing_key_in_its_first_list() {
    let laptop_v1 = version_1_device();
    let tablet_v1 = version_1_device();
    let person = User::new(&laptop_v1);
    let records = [record(&laptop_v1, person.id), record(&tablet_v1, person.id)];
    let server = Server::start_with(Limits::default(), &records).await;
    let url = &server.url;
    let mut laptop = authenticated(url, &laptop_v1).await;
    let laptop_v2 = upgraded(&laptop_v1);

    // Its own entry without the X-Wing key: refused, whatever the record says.
    let reply = publish(&mut laptop, &person.first_list(&laptop_v1, &[&laptop_v1])).await;
    assert_eq!(
        code(&reply),
        Some(ErrorCode::DeviceListRefused),
        "{reply:?}"
    );
    assert!(message(&reply).contains("X-Wing"), "{reply:?}");
    // Another X25519 key under the same device id: refused.
    let reply = publish(
        &mut laptop,
        &person.first_list(&laptop_v1, &[&other_sealing_key(&laptop_v1)]),
    )
    .await;
    assert_eq!(
        code(&reply),
        Some(ErrorCode::DeviceListRefused),
        "{reply:?}"
    );
    assert_eq!(
        server
            .storage
            .device(&laptop_v1.device_id())
            .unwrap()
            .unwrap()
            .keys,
        laptop_v1.public_keys(),
        "a refused list changes no record"
    );
    // Another device's X-Wing key is not the laptop's to add: the tablet's entry must match
    // its record as before.
    let tablet_v2 = upgraded(&tablet_v1);
    let reply = publish(
        &mut laptop,
        &person.first_list(&laptop_v2, &[&laptop_v2, &tablet_v2]),
    )
    .await;
    assert_eq!(
        code(&reply),
        Some(ErrorCode::DeviceListRefused),
        "{reply:?}"
    );

    let first = person.first_list(&laptop_v2, &[&laptop_v2, &tablet_v1]);
    let reply = publish(&mut laptop, &first).await;
    assert!(matches!(reply, ServerFrame::Ok { .. }), "{reply:?}");
    // The same list again (a retry after a lost reply) is fine.
    let reply = publish(&mut laptop, &first).await;
    assert!(matches!(reply, ServerFrame::Ok { .. }), "{reply:?}");
    assert_eq!(
        looked_up(&mut laptop, &laptop_v1).await,
        Some(laptop_v2.public_keys())
    );
    assert_eq!(
        looked_up(&mut laptop, &tablet_v1).await,
        Some(tablet_v1.public_keys())
    );
}

#[tokio::test]
async fn a_list_that_swaps_or_drops_the_publishers_x_wing_key_is_refused() {
    let server = Server::start(Limits::default()).await;
    let url = &server.url;
    let phone_id = DeviceIdentity::generate(&mut rng());
    let person = User::new(&phone_id);
    let (reply, mut phone) = register_as(
        url,
        &phone_id,
        person.id,
        PROTOCOL_VERSION,
        phone_id.public_keys(),
        Some(person.signed.clone()),
    )
    .await;
    assert!(
        matches!(reply, ServerFrame::Authenticated { .. }),
        "{reply:?}"
    );

    // The phone's keys without its X-Wing key (as if it were of version 1).
    let secrets = phone_id.to_secret_bytes();
    let dropped = DeviceIdentity::from_secrets(&secrets[..64]).unwrap();
    // The same X25519 key with another X-Wing key.
    let swapped = upgraded(&dropped);
    for (what, keys) in [("dropped", &dropped), ("swapped", &swapped)] {
        let list = person.successor(&phone_id, &[keys]).1;
        let reply = publish(&mut phone, &list).await;
        assert_eq!(
            code(&reply),
            Some(ErrorCode::DeviceListRefused),
            "{what}: {reply:?}"
        );
    }
    assert_eq!(
        server
            .storage
            .device(&phone_id.device_id())
            .unwrap()
            .unwrap()
            .keys,
        phone_id.public_keys()
    );
    assert_eq!(
        server.storage.device_list(&person.id).unwrap(),
        Some(person.signed.clone())
    );
}

#[tokio::test]
async fn a_full_frame_of_x_wing_sender_keys_is_taken_in_one_send_sealed() {
    let server = Server::start(Limits::default()).await;
    let url = &server.url;
    let mut alice = Device::register(url).await;
    let alice_id = copy(&alice.identity);
    let mut bob = Device::register(url).await;
    let mut state = alice.create_group().await;
    let entry = MemberEntry {
        user: bob.user,
        display_name: "Bob".into(),
        devices: vec![bob.identity.public_keys()],
        device_list: None,
    };
    let body = OpBody::Add {
        member: entry,
        invite: None,
        invite_sig: None,
        invite_device: None,
    };
    let reply = append(&mut alice, &alice_id, &mut state, body).await;
    assert!(matches!(reply, ServerFrame::OpAppended { .. }), "{reply:?}");

    let items: Vec<_> = (0..confide_protocol::frames::MAX_SEALED_PER_FRAME)
        .map(|_| {
            seal(
                &alice_id,
                &bob.identity.public_keys(),
                SealKind::SenderKey,
                state.group(),
                state.epoch_ref(),
                &[7; confide_protocol::sender_key::DISTRIBUTION_LEN],
                &mut rng(),
            )
            .unwrap()
        })
        .collect();
    assert!(items.iter().all(|i| i.enc.is_pq()));
    let id = alice.next_id();
    let frame = ClientFrame::SendSealed { id, items };
    assert!(frame.to_json().unwrap().len() <= Limits::default().max_frame_bytes);
    let reply = alice.request(frame).await;
    assert!(matches!(reply, ServerFrame::Ok { .. }), "{reply:?}");
    let mut received = 0;
    while received < confide_protocol::frames::MAX_SEALED_PER_FRAME {
        if let ServerFrame::Inbox { items } = bob.recv().await {
            received += items.len();
        }
    }
}

#[tokio::test]
async fn a_person_with_eight_devices_joins_within_the_smallest_budget_and_is_added_whole() {
    // The smallest budget before authentication the server allows.
    let limits = Limits {
        max_preauth_bytes: 0,
        ..Limits::default()
    };
    let server = Server::start(limits).await;
    let url = &server.url;
    let devices: Vec<DeviceIdentity> = (0..confide_protocol::group_log::MAX_DEVICES_PER_USER)
        .map(|_| DeviceIdentity::generate(&mut rng()))
        .collect();
    let mut person = User::new(&devices[0]);
    let (reply, mut first) = register_as(
        url,
        &devices[0],
        person.id,
        PROTOCOL_VERSION,
        devices[0].public_keys(),
        Some(person.signed.clone()),
    )
    .await;
    assert!(
        matches!(reply, ServerFrame::Authenticated { .. }),
        "{reply:?}"
    );
    let everyone: Vec<&DeviceIdentity> = devices.iter().collect();
    let full = person.successor(&devices[0], &everyone);
    let reply = publish(&mut first, &full.1).await;
    assert!(matches!(reply, ServerFrame::Ok { .. }), "{reply:?}");
    person.adopt(full);

    // The eighth device registers with the full list, within the budget.
    let last = &devices[devices.len() - 1];
    let (reply, _) = register_as(
        url,
        last,
        person.id,
        PROTOCOL_VERSION,
        last.public_keys(),
        Some(person.signed.clone()),
    )
    .await;
    assert!(
        matches!(reply, ServerFrame::Authenticated { .. }),
        "{reply:?}"
    );

    // A facilitator adds the person with all eight devices and the list in one op.
    let mut facilitator = Device::register(url).await;
    let facilitator_id = copy(&facilitator.identity);
    let mut state = facilitator.create_group().await;
    let body = add(person.id, person.list.device_keys(), &person.signed);
    let reply = append(&mut facilitator, &facilitator_id, &mut state, body).await;
    assert!(matches!(reply, ServerFrame::OpAppended { .. }), "{reply:?}");
    assert_eq!(
        state.member(&person.id).map(|m| m.entry.devices.len()),
        Some(devices.len())
    );
}
