//! Linked devices at the server (PROTOCOL.md §3.6–3.8, §9.4, §10.1 *Device lists*): device
//! lists at registration, publishing successors, unlinking, link channels, and the lists that
//! group-log entries and `update_devices` must carry.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{Device, Server, User, WAIT, append, refusal, rng};
use confide_protocol::device_list::{DeviceList, ListedDevice, SignedDeviceList, UserIdentity};
use confide_protocol::frames::{ClientFrame, ErrorCode, PROTOCOL_VERSION, ServerFrame};
use confide_protocol::group_log::{GroupSettings, GroupState, MemberEntry, Op, OpBody};
use confide_protocol::seal::{SealKind, SealedPayload};
use confide_protocol::{DeviceId, DeviceIdentity, GroupId, UserId};
use confide_server::server::now;
use confide_server::{Limits, Storage as _};

fn copy(identity: &DeviceIdentity) -> DeviceIdentity {
    DeviceIdentity::from_secrets(&identity.to_secret_bytes()).unwrap()
}

/// Connects `identity` and sends `register` for `user` with `list`; the reply and the device.
async fn register_with(
    url: &str,
    identity: DeviceIdentity,
    user: UserId,
    list: Option<SignedDeviceList>,
) -> (ServerFrame, Device) {
    let mut device = Device::connect(url, identity, user).await;
    let signature = device.sign_challenge().await;
    let frame = ClientFrame::Register {
        id: device.next_id(),
        version: PROTOCOL_VERSION,
        user,
        display_name: "Someone".into(),
        keys: device.identity.public_keys(),
        registration_token: None,
        device_list: list,
        signature,
    };
    let reply = device.request(frame).await;
    (reply, device)
}

/// Registers a device of `user` with its current list; panics unless it is authenticated.
async fn registered(url: &str, identity: &DeviceIdentity, user: &User) -> Device {
    let (reply, device) =
        register_with(url, copy(identity), user.id, Some(user.signed.clone())).await;
    assert!(
        matches!(reply, ServerFrame::Authenticated { .. }),
        "{reply:?}"
    );
    device
}

/// Connects `identity` and sends `authenticate`; the frames up to the reply, and the device.
async fn authenticate(url: &str, identity: &DeviceIdentity) -> (Vec<ServerFrame>, Device) {
    let mut device = Device::connect(url, copy(identity), UserId([0; 16])).await;
    let signature = device.sign_challenge().await;
    let id = device.next_id();
    device
        .send(&ClientFrame::Authenticate {
            id,
            version: PROTOCOL_VERSION,
            device: identity.device_id(),
            signature,
        })
        .await;
    let mut frames = Vec::new();
    loop {
        let frame = device.recv().await;
        let done = frame.request_id() == Some(id);
        frames.push(frame);
        if done {
            return (frames, device);
        }
    }
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

fn code(frame: &ServerFrame) -> Option<ErrorCode> {
    refusal(frame).map(|(code, _)| code)
}

/// Reads until the server closes the connection; the `going_away` reason, if one came.
async fn closed_reason(device: &mut Device) -> Option<String> {
    let mut reason = None;
    loop {
        match tokio::time::timeout(WAIT, device.conn.recv())
            .await
            .expect("the connection stayed open")
        {
            Ok(ServerFrame::GoingAway { reason: r }) => reason = Some(r),
            Ok(_) => {}
            Err(_) => return reason,
        }
    }
}

/// The next frame that is not a live `device_list` or `inbox`.
async fn next_link_frame(device: &mut Device) -> ServerFrame {
    loop {
        let frame = device.recv().await;
        if !matches!(
            frame,
            ServerFrame::DeviceList { .. } | ServerFrame::Inbox { .. }
        ) {
            return frame;
        }
    }
}

/// A user with devices `a` and `b` linked (b registered with the list adding it).
async fn linked_pair(url: &str) -> (User, DeviceIdentity, Device, DeviceIdentity, Device) {
    let a_id = DeviceIdentity::generate(&mut rng());
    let b_id = DeviceIdentity::generate(&mut rng());
    let mut user = User::new(&a_id);
    let mut a = registered(url, &a_id, &user).await;
    let next = user.successor(&a_id, &[&a_id, &b_id]);
    assert!(matches!(
        publish(&mut a, &next.1).await,
        ServerFrame::Ok { .. }
    ));
    user.adopt(next);
    let b = registered(url, &b_id, &user).await;
    (user, a_id, a, b_id, b)
}

/// A group created by `device` whose creator entry is `user` with its current list.
async fn group_with_list(
    device: &mut Device,
    identity: &DeviceIdentity,
    user: &User,
) -> GroupState {
    let entry = MemberEntry {
        user: user.id,
        display_name: "Someone".into(),
        devices: user.list.device_keys(),
        device_list: Some(user.signed.clone()),
    };
    let genesis = Op::genesis(
        GroupId::random(&mut rng()),
        identity.device_id(),
        now(),
        entry,
        GroupSettings::default(),
    )
    .sign(identity)
    .unwrap();
    let id = device.next_id();
    let reply = device
        .request(ClientFrame::CreateGroup {
            id,
            genesis: genesis.clone(),
        })
        .await;
    assert!(
        matches!(reply, ServerFrame::GroupCreated { .. }),
        "{reply:?}"
    );
    GroupState::from_genesis(&genesis).unwrap()
}

fn sealed(state: &GroupState, sender: &DeviceIdentity, recipient: DeviceId) -> SealedPayload {
    let epoch = state.epoch_ref();
    SealedPayload {
        kind: SealKind::SenderKey,
        group: state.group(),
        epoch: epoch.epoch,
        epoch_hash: epoch.hash,
        sender: sender.device_id(),
        recipient,
        enc: confide_protocol::seal::Encapsulation::from_bytes(&[9; 32]).unwrap(),
        ciphertext: vec![7; 64],
    }
}

async fn send_sealed(device: &mut Device, item: SealedPayload) -> ServerFrame {
    let id = device.next_id();
    device
        .request(ClientFrame::SendSealed {
            id,
            items: vec![item],
        })
        .await
}

/// Appends `update_devices` with `list`; applies it to `state` when the server took it.
async fn update_devices(
    device: &mut Device,
    identity: &DeviceIdentity,
    state: &mut GroupState,
    list: &SignedDeviceList,
) -> ServerFrame {
    let body = OpBody::UpdateDevices {
        device_list: list.clone(),
        chain: Vec::new(),
    };
    append(device, identity, state, body).await
}

#[tokio::test]
async fn a_user_registers_with_a_list_and_links_a_second_device() {
    let server = Server::start(Limits::default()).await;
    let url = &server.url;
    let a_id = DeviceIdentity::generate(&mut rng());
    let b_id = DeviceIdentity::generate(&mut rng());
    let mut user = User::new(&a_id);
    let mut a = registered(url, &a_id, &user).await;
    let mut a_other = a.again(url).await;

    // B cannot join the user before a list names it.
    let next = user.successor(&a_id, &[&a_id, &b_id]);
    let (reply, _) = register_with(url, copy(&b_id), user.id, Some(next.1.clone())).await;
    assert_eq!(
        code(&reply),
        Some(ErrorCode::DeviceListRefused),
        "{reply:?}"
    );
    // Nor without a list at all.
    let (reply, _) = register_with(url, copy(&b_id), user.id, None).await;
    assert_eq!(
        code(&reply),
        Some(ErrorCode::AlreadyRegistered),
        "{reply:?}"
    );

    assert!(matches!(
        publish(&mut a, &next.1).await,
        ServerFrame::Ok { .. }
    ));
    // A's other connection hears of the new list.
    match a_other.recv().await {
        ServerFrame::DeviceList { list } => assert_eq!(list, next.1),
        other => panic!("expected the new list, got {other:?}"),
    }
    user.adopt(next);
    registered(url, &b_id, &user).await;
    for identity in [&a_id, &b_id] {
        let (frames, _) = authenticate(url, identity).await;
        assert!(
            matches!(frames.last(), Some(ServerFrame::Authenticated { user: u, .. }) if *u == user.id),
            "{frames:?}"
        );
    }

    let id = a.next_id();
    match a
        .request(ClientFrame::LookupUsers {
            id,
            users: vec![user.id],
        })
        .await
    {
        ServerFrame::Devices {
            devices,
            device_lists,
            ..
        } => {
            assert_eq!(devices.len(), 2);
            assert_eq!(device_lists, vec![user.signed.clone()]);
        }
        other => panic!("{other:?}"),
    }

    // The identity key belongs to this user: another user id cannot take it.
    let c_id = DeviceIdentity::generate(&mut rng());
    let other = UserId::random(&mut rng());
    let stolen = DeviceList::first(other, &user.identity, &c_id, now());
    let stolen = user.identity.sign_list(&stolen, &c_id).unwrap();
    let (reply, _) = register_with(url, c_id, other, Some(stolen)).await;
    assert_eq!(
        code(&reply),
        Some(ErrorCode::DeviceListRefused),
        "{reply:?}"
    );
}

#[tokio::test]
async fn only_the_successor_made_by_the_publishing_device_is_accepted() {
    let server = Server::start(Limits::default()).await;
    let url = &server.url;
    let (mut user, a_id, mut a, b_id, _b) = linked_pair(url).await;
    let c_id = DeviceIdentity::generate(&mut rng());

    // Made by B, published by A.
    let by_b = user.successor(&b_id, &[&a_id, &b_id, &c_id]);
    let reply = publish(&mut a, &by_b.1).await;
    assert_eq!(
        code(&reply),
        Some(ErrorCode::DeviceListRefused),
        "{reply:?}"
    );

    // Skips a version.
    let mut skipping = user.successor(&a_id, &[&a_id, &b_id, &c_id]).0;
    skipping.version += 1;
    let skipping = user.identity.sign_list(&skipping, &a_id).unwrap();
    let reply = publish(&mut a, &skipping).await;
    assert_eq!(
        code(&reply),
        Some(ErrorCode::DeviceListRefused),
        "{reply:?}"
    );

    // Another identity key.
    let mut forged = user.successor(&a_id, &[&a_id, &b_id, &c_id]).0;
    let other_identity = UserIdentity::generate(&mut rng());
    forged.identity = other_identity.public();
    forged.devices = [&a_id, &b_id, &c_id]
        .iter()
        .map(|d| ListedDevice::new(d, &user.id, &forged.identity))
        .collect();
    let forged = other_identity.sign_list(&forged, &a_id).unwrap();
    let reply = publish(&mut a, &forged).await;
    assert_eq!(
        code(&reply),
        Some(ErrorCode::DeviceListRefused),
        "{reply:?}"
    );

    // The list on record again: a retry after a lost reply, answered ok (§9.4), changing nothing.
    let again = user.signed.clone();
    assert!(matches!(
        publish(&mut a, &again).await,
        ServerFrame::Ok { .. }
    ));

    // The real successor still goes through.
    let next = user.successor(&a_id, &[&a_id, &b_id, &c_id]);
    assert!(matches!(
        publish(&mut a, &next.1).await,
        ServerFrame::Ok { .. }
    ));
    user.adopt(next);
}

#[tokio::test]
async fn an_unlinked_device_is_disconnected_refused_and_loses_its_inbox() {
    let server = Server::start(Limits::default()).await;
    let url = &server.url;
    let (mut user, a_id, mut a, b_id, mut b) = linked_pair(url).await;
    let state = group_with_list(&mut a, &a_id, &user).await;

    // Something waits in B's inbox.
    assert!(matches!(
        send_sealed(&mut a, sealed(&state, &a_id, b_id.device_id())).await,
        ServerFrame::Ok { .. }
    ));
    assert_eq!(
        server
            .storage
            .inbox(&b_id.device_id(), 0, 10)
            .unwrap()
            .len(),
        1
    );

    let without_b = user.successor(&a_id, &[&a_id]);
    assert!(matches!(
        publish(&mut a, &without_b.1).await,
        ServerFrame::Ok { .. }
    ));
    user.adopt(without_b);
    assert_eq!(
        closed_reason(&mut b).await.as_deref(),
        Some("device unlinked")
    );
    assert!(
        server
            .storage
            .inbox(&b_id.device_id(), 0, 10)
            .unwrap()
            .is_empty()
    );

    // B is told, with the list that dropped it, at authenticate and at register.
    let (frames, _) = authenticate(url, &b_id).await;
    assert!(
        // The newest lists, oldest first (the chain to follow), the one that dropped it last.
        matches!(&frames[..], [.., ServerFrame::DeviceList { list }, last] if *list == user.signed && code(last) == Some(ErrorCode::DeviceUnlinked)),
        "{frames:?}"
    );
    let mut again = Device::connect(url, copy(&b_id), user.id).await;
    let signature = again.sign_challenge().await;
    let id = again.next_id();
    again
        .send(&ClientFrame::Register {
            id,
            version: PROTOCOL_VERSION,
            user: user.id,
            display_name: "Someone".into(),
            keys: b_id.public_keys(),
            registration_token: None,
            device_list: Some(user.signed.clone()),
            signature,
        })
        .await;
    // The chain of lists (two here), then the refusal.
    let mut frame = again.recv().await;
    let mut lists = 0;
    while matches!(frame, ServerFrame::DeviceList { .. }) {
        lists += 1;
        frame = again.recv().await;
    }
    assert!(lists >= 1);
    assert_eq!(code(&frame), Some(ErrorCode::DeviceUnlinked));

    // The group's log still lists B: sealing to it works, and nothing is kept.
    assert!(matches!(
        send_sealed(&mut a, sealed(&state, &a_id, b_id.device_id())).await,
        ServerFrame::Ok { .. }
    ));
    assert!(
        server
            .storage
            .inbox(&b_id.device_id(), 0, 10)
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn logs_take_only_the_list_on_record() {
    let limits = Limits {
        max_device_updates_per_hour: 1,
        ..Limits::default()
    };
    let server = Server::start(limits).await;
    let url = &server.url;
    let (mut user, a_id, mut a, b_id, _b) = linked_pair(url).await;
    let mut state = group_with_list(&mut a, &a_id, &user).await;
    let stale = user.signed.clone();
    let without_b = user.successor(&a_id, &[&a_id]);
    assert!(matches!(
        publish(&mut a, &without_b.1).await,
        ServerFrame::Ok { .. }
    ));
    user.adopt(without_b);

    let reply = update_devices(&mut a, &a_id, &mut state, &stale).await;
    assert_eq!(code(&reply), Some(ErrorCode::InvalidOp), "{reply:?}");

    // A group created now must carry the current list, not the stale one.
    let stale_list: DeviceList = serde_json::from_slice(&stale.list).unwrap();
    let entry = MemberEntry {
        user: user.id,
        display_name: "Someone".into(),
        devices: stale_list.device_keys(),
        device_list: Some(stale),
    };
    let genesis = Op::genesis(
        GroupId::random(&mut rng()),
        a_id.device_id(),
        now(),
        entry,
        GroupSettings::default(),
    )
    .sign(&a_id)
    .unwrap();
    let id = a.next_id();
    let reply = a.request(ClientFrame::CreateGroup { id, genesis }).await;
    assert_eq!(code(&reply), Some(ErrorCode::InvalidOp), "{reply:?}");

    // Nor can an entry leave the list out once the user has one.
    let entry = MemberEntry {
        user: user.id,
        display_name: "Someone".into(),
        devices: vec![a_id.public_keys()],
        device_list: None,
    };
    let genesis = Op::genesis(
        GroupId::random(&mut rng()),
        a_id.device_id(),
        now(),
        entry,
        GroupSettings::default(),
    )
    .sign(&a_id)
    .unwrap();
    let id = a.next_id();
    let reply = a.request(ClientFrame::CreateGroup { id, genesis }).await;
    assert_eq!(code(&reply), Some(ErrorCode::InvalidOp), "{reply:?}");

    let reply = update_devices(&mut a, &a_id, &mut state, &user.signed).await;
    assert!(matches!(reply, ServerFrame::OpAppended { .. }), "{reply:?}");

    // One update_devices an hour here: the next is refused before the log looks at it.
    let back = user.successor(&a_id, &[&a_id, &b_id]);
    assert!(matches!(
        publish(&mut a, &back.1).await,
        ServerFrame::Ok { .. }
    ));
    user.adopt(back);
    let reply = update_devices(&mut a, &a_id, &mut state, &user.signed).await;
    let (code, retry) = refusal(&reply).expect("refused");
    assert_eq!(code, ErrorCode::RateLimited, "{reply:?}");
    assert!(retry.is_some_and(|ms| ms > 0));
}

#[tokio::test]
async fn a_linked_device_needs_no_registration_token_and_a_new_user_does() {
    let limits = Limits {
        registration_token: Some("let-me-in".into()),
        ..Limits::default()
    };
    let server = Server::start(limits).await;
    let url = &server.url;
    let a_id = DeviceIdentity::generate(&mut rng());
    let b_id = DeviceIdentity::generate(&mut rng());
    let mut user = User::new(&a_id);
    let (reply, _) = register_with(url, copy(&a_id), user.id, Some(user.signed.clone())).await;
    assert_eq!(
        code(&reply),
        Some(ErrorCode::RegistrationClosed),
        "{reply:?}"
    );

    let mut a = Device::connect(url, copy(&a_id), user.id).await;
    let signature = a.sign_challenge().await;
    let id = a.next_id();
    let reply = a
        .request(ClientFrame::Register {
            id,
            version: PROTOCOL_VERSION,
            user: user.id,
            display_name: "Someone".into(),
            keys: a_id.public_keys(),
            registration_token: Some("let-me-in".into()),
            device_list: Some(user.signed.clone()),
            signature,
        })
        .await;
    assert!(
        matches!(reply, ServerFrame::Authenticated { .. }),
        "{reply:?}"
    );
    let next = user.successor(&a_id, &[&a_id, &b_id]);
    assert!(matches!(
        publish(&mut a, &next.1).await,
        ServerFrame::Ok { .. }
    ));
    user.adopt(next);
    registered(url, &b_id, &user).await;
}

#[tokio::test]
async fn publishing_is_rate_limited_per_user() {
    let limits = Limits {
        max_device_lists_per_day: 2,
        ..Limits::default()
    };
    let server = Server::start(limits).await;
    let url = &server.url;
    let a_id = DeviceIdentity::generate(&mut rng());
    let b_id = DeviceIdentity::generate(&mut rng());
    let mut user = User::new(&a_id);
    let mut a = registered(url, &a_id, &user).await;
    for devices in [vec![&a_id, &b_id], vec![&a_id]] {
        let next = user.successor(&a_id, &devices);
        assert!(matches!(
            publish(&mut a, &next.1).await,
            ServerFrame::Ok { .. }
        ));
        user.adopt(next);
    }
    let next = user.successor(&a_id, &[&a_id, &b_id]);
    let reply = publish(&mut a, &next.1).await;
    let (code, retry) = refusal(&reply).expect("refused");
    assert_eq!(code, ErrorCode::RateLimited, "{reply:?}");
    assert!(retry.is_some_and(|ms| ms > 3_600_000), "{reply:?}");
}

#[tokio::test]
async fn a_user_from_before_lists_publishes_a_first_list_of_registered_devices() {
    let server = Server::start(Limits::default()).await;
    let url = &server.url;
    let mut a = Device::register(url).await;
    let a_id = copy(&a.identity);
    let stranger = DeviceIdentity::generate(&mut rng());
    let identity = UserIdentity::generate(&mut rng());
    let with_stranger = DeviceList {
        devices: vec![
            ListedDevice::new(&a_id, &a.user, &identity.public()),
            ListedDevice::new(&stranger, &a.user, &identity.public()),
        ],
        ..DeviceList::first(a.user, &identity, &a_id, now())
    };
    let reply = publish(&mut a, &identity.sign_list(&with_stranger, &a_id).unwrap()).await;
    assert_eq!(
        code(&reply),
        Some(ErrorCode::DeviceListRefused),
        "{reply:?}"
    );
    let first = DeviceList::first(a.user, &identity, &a_id, now());
    let reply = publish(&mut a, &identity.sign_list(&first, &a_id).unwrap()).await;
    assert!(matches!(reply, ServerFrame::Ok { .. }), "{reply:?}");
}

/// A connection that has not authenticated, with its challenge read.
async fn opener(url: &str) -> Device {
    let mut device = Device::connect(
        url,
        DeviceIdentity::generate(&mut rng()),
        UserId::random(&mut rng()),
    )
    .await;
    assert!(matches!(device.recv().await, ServerFrame::Challenge { .. }));
    device
}

async fn link_open(device: &mut Device, channel: [u8; 32]) -> ServerFrame {
    let id = device.next_id();
    device.request(ClientFrame::LinkOpen { id, channel }).await
}

async fn link_join(device: &mut Device, channel: [u8; 32]) -> ServerFrame {
    let id = device.next_id();
    device.request(ClientFrame::LinkJoin { id, channel }).await
}

async fn link_send(device: &mut Device, channel: [u8; 32], data: &[u8]) -> ServerFrame {
    let id = device.next_id();
    device
        .request(ClientFrame::LinkSend {
            id,
            channel,
            data: data.to_vec(),
        })
        .await
}

#[tokio::test]
async fn a_link_channel_relays_both_ways_until_a_party_leaves() {
    let server = Server::start(Limits::default()).await;
    let url = &server.url;
    let channel = [5u8; 32];
    let mut n = opener(url).await;
    assert!(matches!(
        link_open(&mut n, channel).await,
        ServerFrame::Ok { .. }
    ));
    let mut n2 = opener(url).await;
    assert_eq!(
        code(&link_open(&mut n2, channel).await),
        Some(ErrorCode::LinkBusy)
    );
    // In link mode, nothing but the link, ping and authentication.
    let id = n.next_id();
    let reply = n.request(ClientFrame::ListGroups { id }).await;
    assert_eq!(code(&reply), Some(ErrorCode::NotAuthenticated));

    let mut o = Device::register(url).await;
    assert_eq!(
        code(&link_join(&mut o, [6u8; 32]).await),
        Some(ErrorCode::LinkUnknown)
    );
    // Nobody to talk to yet.
    assert_eq!(
        code(&link_send(&mut n, channel, b"early").await),
        Some(ErrorCode::LinkUnknown)
    );
    assert!(matches!(
        link_join(&mut o, channel).await,
        ServerFrame::Ok { .. }
    ));
    match n.recv().await {
        ServerFrame::LinkData { channel: c, data } => {
            assert_eq!(c, channel);
            assert_eq!(data, None);
        }
        other => panic!("{other:?}"),
    }
    let mut third = Device::register(url).await;
    assert_eq!(
        code(&link_join(&mut third, channel).await),
        Some(ErrorCode::LinkUnknown)
    );
    assert_eq!(
        code(&link_send(&mut third, channel, b"intruder").await),
        Some(ErrorCode::LinkUnknown)
    );

    assert!(matches!(
        link_send(&mut n, channel, b"hello").await,
        ServerFrame::Ok { .. }
    ));
    match next_link_frame(&mut o).await {
        ServerFrame::LinkData { data, .. } => assert_eq!(data.as_deref(), Some(&b"hello"[..])),
        other => panic!("{other:?}"),
    }
    let big = vec![1u8; 8000];
    assert!(matches!(
        link_send(&mut o, channel, &big).await,
        ServerFrame::Ok { .. }
    ));
    match n.recv().await {
        ServerFrame::LinkData { data, .. } => assert_eq!(data, Some(big)),
        other => panic!("{other:?}"),
    }
    // The unauthenticated opener sends little.
    assert_eq!(
        code(&link_send(&mut n, channel, &[2u8; 4097]).await),
        Some(ErrorCode::FrameTooLarge)
    );
    assert!(matches!(
        link_send(&mut n, channel, &[2u8; 4096]).await,
        ServerFrame::Ok { .. }
    ));

    drop(n);
    match next_link_frame(&mut o).await {
        ServerFrame::LinkData { .. } => match next_link_frame(&mut o).await {
            ServerFrame::LinkClosed { channel: c } => assert_eq!(c, channel),
            other => panic!("{other:?}"),
        },
        ServerFrame::LinkClosed { channel: c } => assert_eq!(c, channel),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        code(&link_send(&mut o, channel, b"anyone?").await),
        Some(ErrorCode::LinkUnknown)
    );
    // The id is free again.
    assert!(matches!(
        link_open(&mut n2, channel).await,
        ServerFrame::Ok { .. }
    ));
}

#[tokio::test]
async fn an_address_may_hold_only_a_few_link_channels() {
    let server = Server::start(Limits::default()).await;
    let url = &server.url;
    let mut open = Vec::new();
    for i in 0..4u8 {
        let mut n = opener(url).await;
        assert!(matches!(
            link_open(&mut n, [i; 32]).await,
            ServerFrame::Ok { .. }
        ));
        open.push(n);
    }
    let mut n = opener(url).await;
    let (code, retry) = refusal(&link_open(&mut n, [9; 32]).await).expect("refused");
    assert_eq!(code, ErrorCode::RateLimited);
    assert!(retry.is_some());
    // One closes: a slot is free (the server learns of the close asynchronously, so ask until
    // it has; the wait is bounded by the test's timeout, not assumed).
    drop(open.pop());
    tokio::time::timeout(WAIT, async {
        loop {
            if matches!(link_open(&mut n, [9; 32]).await, ServerFrame::Ok { .. }) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the slot was never freed");
}

#[tokio::test]
async fn link_mode_outlives_the_authentication_deadline_and_ends_with_the_link_timeout() {
    let limits = Limits {
        auth_timeout: Duration::from_millis(300),
        link_timeout: Duration::from_millis(1500),
        ..Limits::default()
    };
    let server = Server::start(limits).await;
    let url = &server.url;
    let channel = [7u8; 32];
    let mut n = opener(url).await;
    assert!(matches!(
        link_open(&mut n, channel).await,
        ServerFrame::Ok { .. }
    ));
    let mut o = Device::register(url).await;
    assert!(matches!(
        link_join(&mut o, channel).await,
        ServerFrame::Ok { .. }
    ));
    assert!(matches!(
        n.recv().await,
        ServerFrame::LinkData { data: None, .. }
    ));

    // A connection that is not linking is gone after the authentication deadline ...
    let mut plain = opener(url).await;
    assert_eq!(
        closed_reason(&mut plain).await.as_deref(),
        Some("authentication timed out")
    );
    // ... while the linking one still relays.
    assert!(matches!(
        link_send(&mut n, channel, b"hello").await,
        ServerFrame::Ok { .. }
    ));

    // At the link timeout the channel ends for the joiner, and the opener's connection closes.
    loop {
        match next_link_frame(&mut o).await {
            ServerFrame::LinkClosed { channel: c } => {
                assert_eq!(c, channel);
                break;
            }
            ServerFrame::LinkData { .. } => {}
            other => panic!("{other:?}"),
        }
    }
    assert!(closed_reason(&mut n).await.is_some());
}

/// An `own_devices` payload (PROTOCOL.md §7.4) as the server sees it: kind, user, list
/// version and hash, sender, recipient; the ciphertext is opaque here.
fn own_devices(user: &User, sender: &DeviceIdentity, recipient: DeviceId) -> SealedPayload {
    SealedPayload {
        kind: SealKind::OwnDevices,
        group: GroupId(user.id.0),
        epoch: confide_protocol::Epoch(user.list.version),
        epoch_hash: confide_protocol::OpHash(user.signed.hash().0),
        sender: sender.device_id(),
        recipient,
        enc: confide_protocol::seal::Encapsulation::from_bytes(&[9; 32]).unwrap(),
        ciphertext: vec![7; 64],
    }
}

#[tokio::test]
async fn own_device_updates_go_only_between_devices_of_one_current_list() {
    let server = Server::start(Limits::default()).await;
    let url = &server.url;
    let (mut user, a_id, mut a, b_id, _b) = linked_pair(url).await;
    let (other, o_id, _o, _, _) = linked_pair(url).await;
    let inbox = |d: &DeviceIdentity| server.storage.inbox(&d.device_id(), 0, 10).unwrap().len();

    assert!(matches!(
        send_sealed(&mut a, own_devices(&user, &a_id, b_id.device_id())).await,
        ServerFrame::Ok { .. }
    ));
    assert_eq!(inbox(&b_id), 1);

    // Not to someone else's device, not under someone else's user id, not to itself.
    for item in [
        own_devices(&user, &a_id, o_id.device_id()),
        SealedPayload {
            sender: a_id.device_id(),
            ..own_devices(&other, &o_id, o_id.device_id())
        },
        own_devices(&user, &a_id, a_id.device_id()),
    ] {
        assert_eq!(
            code(&send_sealed(&mut a, item).await),
            Some(ErrorCode::NotMember)
        );
    }
    // Not naming an older list: once the list moves on, the old version is refused.
    let stale = own_devices(&user, &a_id, b_id.device_id());
    let next = user.successor(&a_id, &[&a_id, &b_id]);
    assert!(matches!(
        publish(&mut a, &next.1).await,
        ServerFrame::Ok { .. }
    ));
    user.adopt(next);
    assert_eq!(
        code(&send_sealed(&mut a, stale).await),
        Some(ErrorCode::NotMember)
    );
    assert!(matches!(
        send_sealed(&mut a, own_devices(&user, &a_id, b_id.device_id())).await,
        ServerFrame::Ok { .. }
    ));
    assert_eq!(inbox(&b_id), 2);
    assert_eq!(inbox(&o_id), 0);
}
