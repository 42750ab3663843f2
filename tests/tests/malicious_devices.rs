//! What a malicious server does with device lists (issue 16), and what real clients do
//! instead.
//!
//! Every client here connects to an [`EvilServer`]: it presents the real server's certificate,
//! relays to a real one behind it, and rewrites or injects `devices` replies, `device_list`
//! pushes and refusals as each test says. The server cannot sign under a person's identity key,
//! so whatever device it slips into a list must not get anything sealed to it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use confide_client::{Event, GroupId, UserId};
use confide_protocol::device_list::{DeviceList, ListedDevice, SignedDeviceList, UserIdentity};
use confide_protocol::frames::{ClientFrame, DeviceInfo, ErrorCode, ServerFrame};
use confide_protocol::group_log::OpBody;
use confide_protocol::{DeviceId, DeviceIdentity};
use confide_tests::{
    EvilServer, RECV_TIMEOUT, TestServer, TestUser, Verdict, now, rng, users_in_group,
};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Every device `device` sealed a payload to, in order, as the relay saw its requests.
fn sealed_recipients(evil: &EvilServer, device: DeviceId) -> Vec<DeviceId> {
    evil.requests_from(device)
        .into_iter()
        .flat_map(|frame| match frame {
            ClientFrame::SendSealed { items, .. } => items,
            _ => Vec::new(),
        })
        .map(|item| item.recipient)
        .collect()
}

/// Keeps every event already reported in `log`, without waiting.
fn drain(user: &mut TestUser, log: &mut Vec<Event>) {
    while let Some(event) = user.events.try_next() {
        log.push(event);
    }
}

/// Waits until `user` sees exactly `n` devices for `whose` in `group`'s member list, keeping
/// the events in `log`.
async fn wait_member_devices(
    user: &mut TestUser,
    log: &mut Vec<Event>,
    group: GroupId,
    whose: UserId,
    n: usize,
) {
    let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
    loop {
        let members = user.client.members(group).await.unwrap();
        let seen = members
            .iter()
            .find(|m| m.user == whose)
            .map(|m| m.devices.len());
        if seen == Some(n) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the member shows {seen:?} devices, not {n}; events: {log:#?}"
        );
        if let Ok(Some(event)) =
            tokio::time::timeout(Duration::from_millis(100), user.events.next()).await
        {
            log.push(event);
        }
    }
}

/// Waits until `text` is in `user`'s history of `group`, accepting the group first if someone
/// added the user to it.
async fn wait_text(user: &mut TestUser, log: &mut Vec<Event>, group: GroupId, text: &str) {
    let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
    loop {
        if user
            .client
            .groups()
            .await
            .unwrap()
            .iter()
            .any(|g| g.group == group && g.invited)
        {
            user.client.accept_group(group).await.unwrap();
        }
        let history = user
            .client
            .history(group, None, 10_000)
            .await
            .unwrap_or_default();
        if history.iter().any(|m| m.text == text) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{text:?} never arrived; events: {log:#?}"
        );
        if let Ok(Some(event)) =
            tokio::time::timeout(Duration::from_millis(100), user.events.next()).await
        {
            log.push(event);
        }
    }
}

/// The signed list `group`'s log pins for `user`, from the genuine ops the relay saw.
fn pinned_list(evil: &EvilServer, group: GroupId, user: UserId) -> SignedDeviceList {
    evil.group_state(group)
        .device_list_of(&user)
        .expect("the log pins a device list for the user")
        .clone()
}

/// `signed` with `ghost` added to its devices and its bytes changed to say so, the signatures
/// kept: a list that no longer verifies.
fn with_ghost(signed: &SignedDeviceList, ghost: &DeviceIdentity) -> SignedDeviceList {
    let mut list: DeviceList = serde_json::from_slice(&signed.list).unwrap();
    list.devices
        .push(ListedDevice::new(ghost, &list.user, &list.identity));
    let forged = SignedDeviceList {
        list: serde_json::to_vec(&list).unwrap(),
        ..signed.clone()
    };
    assert!(forged.verify().is_err(), "the forged list must not verify");
    forged
}

/// A `devices` entry for `device`, claimed for `user`.
fn device_info(device: &DeviceIdentity, user: UserId, name: &str) -> DeviceInfo {
    DeviceInfo {
        user,
        keys: device.public_keys(),
        display_name: name.into(),
    }
}

/// A list for `user` that verifies, signed by an identity key the server made, naming only a
/// device the server holds: the server's own "identity" for the person.
fn servers_own_list(user: UserId, device: &DeviceIdentity) -> SignedDeviceList {
    let identity = UserIdentity::generate(&mut rng());
    let list = DeviceList::first(user, &identity, device, now());
    let signed = identity.sign_list(&list, device).unwrap();
    assert!(signed.verify().is_ok());
    signed
}

/// The ids of `user`'s groups.
async fn group_ids(user: &TestUser) -> Vec<GroupId> {
    user.client
        .groups()
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.group)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// (a) A ghost device
// ---------------------------------------------------------------------------------------------

/// The server adds a device of its own to Bob's list in the `devices` reply Alice gets when she
/// opens a private conversation with him. The list no longer verifies under Bob's identity key:
/// Alice's client does not use it, the conversation has only Bob's real device, and nothing
/// Alice seals goes to the ghost.
#[tokio::test]
async fn a_ghost_device_in_a_devices_reply_gets_nothing() {
    let server = TestServer::start().await;
    let evil = EvilServer::start(&server).await;
    let (mut users, group) = users_in_group(&evil.url, evil.trust(), &["Alice", "Bob"]).await;
    let mut bob = users.pop().unwrap();
    let mut alice = users.pop().unwrap();
    let (mut alice_log, mut bob_log) = (Vec::new(), Vec::new());
    let (bob_user, bob_device) = (bob.client.user(), bob.client.device());
    let ghost = DeviceIdentity::generate(&mut rng());
    let ghost_id = ghost.device_id();
    let bob_list = pinned_list(&evil, group, bob_user);
    let forged = with_ghost(&bob_list, &ghost);
    let ghost_info = device_info(&ghost, bob_user, "Bob");
    let rewritten = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = rewritten.clone();
    evil.on_server_frames(alice.client.device(), move |frame| match frame {
        ServerFrame::Devices {
            id,
            mut devices,
            device_lists,
        } => {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let device_lists = device_lists
                .into_iter()
                .map(|l| match l.verify() {
                    Ok(list) if list.user == bob_user => forged.clone(),
                    _ => l,
                })
                .collect();
            devices.push(ghost_info.clone());
            vec![ServerFrame::Devices {
                id,
                devices,
                device_lists,
            }]
        }
        other => vec![other],
    });

    let private = alice.client.open_private(group, bob_user).await;
    assert!(
        rewritten.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "opening a private conversation looks the person's devices up"
    );
    let private = private.expect("the forged list is left aside, the group's list used");
    let members = alice.client.members(private).await.unwrap();
    let bob_there = members.iter().find(|m| m.user == bob_user).unwrap();
    assert_eq!(bob_there.devices, vec![bob_device]);
    alice
        .client
        .send_text(private, "just the two of us", None)
        .await
        .unwrap();
    wait_text(&mut bob, &mut bob_log, private, "just the two of us").await;
    assert!(!sealed_recipients(&evil, alice.client.device()).contains(&ghost_id));

    // The same ghost in a pushed `device_list`, for Bob and for Alice herself.
    evil.honest(alice.client.device());
    let alice_list = pinned_list(&evil, group, alice.client.user());
    let own_before = alice.client.own_devices().await.unwrap();
    for list in [
        with_ghost(&bob_list, &ghost),
        with_ghost(&alice_list, &ghost),
    ] {
        assert_eq!(
            evil.inject(alice.client.device(), ServerFrame::DeviceList { list }),
            1
        );
    }
    // A new conversation makes Alice seal a new sender key.
    let second = alice.client.open_private(group, bob_user).await.unwrap();
    alice
        .client
        .send_text(second, "still just us", None)
        .await
        .unwrap();
    alice
        .client
        .send_text(group, "in the group", None)
        .await
        .unwrap();
    wait_text(&mut bob, &mut bob_log, second, "still just us").await;
    wait_text(&mut bob, &mut bob_log, group, "in the group").await;
    drain(&mut alice, &mut alice_log);
    assert_eq!(alice.client.own_devices().await.unwrap(), own_before);
    for g in [group, private, second] {
        for m in alice.client.members(g).await.unwrap() {
            assert!(!m.devices.contains(&ghost_id), "{m:?}");
        }
    }
    assert!(
        !sealed_recipients(&evil, alice.client.device()).contains(&ghost_id),
        "a sealed payload was addressed to the ghost device"
    );
    assert!(
        !alice_log.iter().any(|e| matches!(
            e,
            Event::DevicesChanged { .. } | Event::DeviceUnlinked { .. }
        )),
        "an unverified list changed something: {alice_log:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// (b) Another identity key
// ---------------------------------------------------------------------------------------------

/// The server answers Alice's lookup of Bob with a list it signed with an identity key of its
/// own, naming a device it holds. Alice's client refuses to open the private conversation with
/// that list (`identity_changed`), Bob's safety number stays what it was, no group is made, and
/// nothing is sealed to the server's device.
#[tokio::test]
async fn a_list_under_another_identity_key_is_refused_for_an_add() {
    let server = TestServer::start().await;
    let evil = EvilServer::start(&server).await;
    let (mut users, group) = users_in_group(&evil.url, evil.trust(), &["Alice", "Bob"]).await;
    let _bob = users.pop().unwrap();
    let alice = users.pop().unwrap();
    let bob_user = _bob.client.user();
    let fake = DeviceIdentity::generate(&mut rng());
    let fake_id = fake.device_id();
    let fake_list = servers_own_list(bob_user, &fake);
    let fake_info = device_info(&fake, bob_user, "Bob");
    evil.on_server_frames(alice.client.device(), move |frame| match frame {
        ServerFrame::Devices { id, .. } => vec![ServerFrame::Devices {
            id,
            devices: vec![fake_info.clone()],
            device_lists: vec![fake_list.clone()],
        }],
        other => vec![other],
    });
    let safety = alice.client.safety_number(bob_user).await.unwrap();
    let groups = group_ids(&alice).await;

    let err = alice
        .client
        .open_private(group, bob_user)
        .await
        .expect_err("a list under another identity key must not be used");
    assert_eq!(err.code(), "identity_changed", "{err:?}");
    assert_eq!(alice.client.safety_number(bob_user).await.unwrap(), safety);
    assert_eq!(group_ids(&alice).await, groups);
    assert!(!sealed_recipients(&evil, alice.client.device()).contains(&fake_id));
}

/// The server first pushes Alice that list under its own identity key as a `device_list` (a
/// push is only ever about one's own devices), then serves it for Bob. Alice's client still
/// refuses it: the push must not make the server's identity key Bob's.
#[tokio::test]
async fn a_pushed_list_under_another_identity_key_does_not_replace_the_persons() {
    let server = TestServer::start().await;
    let evil = EvilServer::start(&server).await;
    let (mut users, group) = users_in_group(&evil.url, evil.trust(), &["Alice", "Bob"]).await;
    let bob = users.pop().unwrap();
    let alice = users.pop().unwrap();
    let bob_user = bob.client.user();
    let fake = DeviceIdentity::generate(&mut rng());
    let fake_id = fake.device_id();
    let fake_list = servers_own_list(bob_user, &fake);
    let fake_info = device_info(&fake, bob_user, "Bob");
    let safety = alice.client.safety_number(bob_user).await.unwrap();
    assert_eq!(
        evil.inject(
            alice.client.device(),
            ServerFrame::DeviceList {
                list: fake_list.clone()
            }
        ),
        1
    );
    // A round trip after the push: the client has handled it.
    alice.client.sync().await.unwrap();
    let served = fake_list.clone();
    evil.on_server_frames(alice.client.device(), move |frame| match frame {
        ServerFrame::Devices { id, .. } => vec![ServerFrame::Devices {
            id,
            devices: vec![fake_info.clone()],
            device_lists: vec![served.clone()],
        }],
        other => vec![other],
    });
    // The server is the one that would refuse an `add` naming a list it does not hold: a
    // malicious one accepts it, as if stored.
    evil.on_requests(alice.client.device(), move |frame| match frame {
        ClientFrame::AppendOp { id, group, op }
            if op.verify().is_ok_and(
                |o| matches!(&o.body, OpBody::Add { member, .. } if member.user == bob_user),
            ) =>
        {
            let seq = op.verify().map(|o| o.seq).unwrap_or_default();
            Verdict::Answer(vec![ServerFrame::OpAppended { id, group, seq }])
        }
        other => Verdict::Forward(other),
    });
    let after_push = alice.client.safety_number(bob_user).await.unwrap();
    let r = alice.client.open_private(group, bob_user).await;
    if let Ok(private) = &r {
        // What Alice would write to "Bob" there.
        let _ = alice
            .client
            .send_text(*private, "meant for Bob", None)
            .await;
    }
    let sealed = sealed_recipients(&evil, alice.client.device());
    assert!(
        !sealed.contains(&fake_id),
        "Alice sealed to the server's own device as Bob's (open_private: {r:?})"
    );
    assert_eq!(
        after_push, safety,
        "a pushed list changed Bob's safety number"
    );
    let err = r.expect_err("the server's identity key was taken as Bob's");
    assert_eq!(err.code(), "identity_changed", "{err:?}");
    assert_eq!(alice.client.safety_number(bob_user).await.unwrap(), safety);
}

// ---------------------------------------------------------------------------------------------
// (c) A rolled-back list
// ---------------------------------------------------------------------------------------------

/// Bob linked a second device, then unlinked it. The server answers Alice's lookup of Bob with
/// the older list that still names the unlinked device. Alice's client refuses it
/// (`stale_device_list`), and nothing it seals goes to the unlinked device.
#[tokio::test]
async fn a_rolled_back_list_naming_an_unlinked_device_is_refused() {
    let server = TestServer::start().await;
    let evil = EvilServer::start(&server).await;
    let (mut users, group) = users_in_group(&evil.url, evil.trust(), &["Alice", "Bob"]).await;
    let mut bob = users.pop().unwrap();
    let mut alice = users.pop().unwrap();
    let (mut alice_log, mut bob_log) = (Vec::new(), Vec::new());
    let bob_user = bob.client.user();
    let tablet = bob.link_new_device(&evil.url, evil.trust()).await;
    let tablet_id = tablet.client.device();
    wait_member_devices(&mut alice, &mut alice_log, group, bob_user, 2).await;
    // The list that added the tablet, as Bob published it.
    let with_tablet = evil
        .requests_from(bob.client.device())
        .into_iter()
        .find_map(|frame| match frame {
            ClientFrame::PublishDevices { device_list, .. } => Some(device_list),
            _ => None,
        })
        .expect("Bob published the list that adds the tablet");
    assert!(with_tablet.verify().unwrap().lists(&tablet_id));
    let tablet_info = DeviceInfo {
        user: bob_user,
        keys: with_tablet
            .verify()
            .unwrap()
            .devices
            .iter()
            .find(|d| d.keys.device == tablet_id)
            .unwrap()
            .keys
            .clone(),
        display_name: "Bob".into(),
    };

    bob.client.unlink_device(tablet_id).await.unwrap();
    wait_member_devices(&mut alice, &mut alice_log, group, bob_user, 1).await;
    let sealed_before = sealed_recipients(&evil, alice.client.device()).len();

    evil.on_server_frames(alice.client.device(), move |frame| match frame {
        ServerFrame::Devices {
            id, mut devices, ..
        } => {
            devices.push(tablet_info.clone());
            vec![ServerFrame::Devices {
                id,
                devices,
                device_lists: vec![with_tablet.clone()],
            }]
        }
        other => vec![other],
    });
    let groups = group_ids(&alice).await;
    let err = alice
        .client
        .open_private(group, bob_user)
        .await
        .expect_err("an older list than the one seen must not be used");
    assert_eq!(err.code(), "stale_device_list", "{err:?}");
    assert_eq!(group_ids(&alice).await, groups);

    // The group goes on without the tablet.
    alice
        .client
        .send_text(group, "after the tablet went", None)
        .await
        .unwrap();
    wait_text(&mut bob, &mut bob_log, group, "after the tablet went").await;
    let sealed = sealed_recipients(&evil, alice.client.device());
    assert!(
        !sealed[sealed_before..].contains(&tablet_id),
        "Alice sealed to the unlinked device"
    );
    for m in alice.client.members(group).await.unwrap() {
        assert!(!m.devices.contains(&tablet_id));
    }
}

// ---------------------------------------------------------------------------------------------
// (d) A refusal without a list
// ---------------------------------------------------------------------------------------------

/// The server tells Alice's device it was unlinked — with no list, with a forged list, with a
/// list under its own identity key, and by refusing her authentication with `device_unlinked`
/// — but no valid newer list of hers drops her device. Her client deletes nothing: its
/// profile opens again, with the history, and it works once the server behaves.
#[tokio::test]
async fn device_unlinked_without_a_valid_list_deletes_nothing() {
    let server = TestServer::start().await;
    let evil = EvilServer::start(&server).await;
    let (mut users, group) = users_in_group(&evil.url, evil.trust(), &["Alice", "Bob"]).await;
    let mut bob = users.pop().unwrap();
    let mut alice = users.pop().unwrap();
    let (mut alice_log, mut bob_log) = (Vec::new(), Vec::new());
    let alice_device = alice.client.device();
    alice.client.send_text(group, "kept", None).await.unwrap();
    wait_text(&mut bob, &mut bob_log, group, "kept").await;
    let own = alice.client.own_devices().await.unwrap();

    // While connected: an unsolicited refusal, a forged list without her device, and a list
    // under the server's own identity key without it.
    let alice_list = pinned_list(&evil, group, alice.client.user());
    let ghost = DeviceIdentity::generate(&mut rng());
    let mut forged: DeviceList = serde_json::from_slice(&alice_list.list).unwrap();
    forged.version += 1;
    forged.prev = alice_list.hash();
    forged.devices = vec![ListedDevice::new(&ghost, &forged.user, &forged.identity)];
    let forged = SignedDeviceList {
        list: serde_json::to_vec(&forged).unwrap(),
        ..alice_list.clone()
    };
    let pushes = [
        ServerFrame::Error {
            id: None,
            code: ErrorCode::DeviceUnlinked,
            message: "this device was unlinked".into(),
            retry_after_ms: None,
        },
        ServerFrame::DeviceList { list: forged },
        ServerFrame::DeviceList {
            list: servers_own_list(alice.client.user(), &ghost),
        },
    ];
    for frame in pushes {
        assert_eq!(evil.inject(alice_device, frame), 1);
    }
    let _ = alice.client.sync().await;
    drain(&mut alice, &mut alice_log);
    assert!(
        !alice_log
            .iter()
            .any(|e| matches!(e, Event::DeviceUnlinked { .. })),
        "{alice_log:#?}"
    );
    assert_eq!(alice.client.own_devices().await.unwrap(), own);

    // On reconnecting: authentication refused with `device_unlinked`, no list with it.
    alice.go_offline().await;
    evil.on_authenticate(alice_device, |frame| {
        Verdict::Answer(vec![ServerFrame::Error {
            id: Some(frame.request_id()),
            code: ErrorCode::DeviceUnlinked,
            message: "this device was dropped from its user's device list (unlinked)".into(),
            retry_after_ms: None,
        }])
    });
    alice.come_back().await;
    let refused = tokio::time::timeout(RECV_TIMEOUT, alice.client.sync())
        .await
        .expect("the sync ends");
    assert!(refused.is_err(), "the refusal reaches the client");
    drain(&mut alice, &mut alice_log);
    assert!(
        !alice_log
            .iter()
            .any(|e| matches!(e, Event::DeviceUnlinked { .. })),
        "{alice_log:#?}"
    );
    let history = alice.client.history(group, None, 100).await.unwrap();
    assert!(history.iter().any(|m| m.text == "kept"));

    // The profile opens again, and once the server behaves the device works.
    alice.go_offline().await;
    evil.honest(alice_device);
    alice.come_back().await;
    alice.client.sync().await.unwrap();
    assert_eq!(alice.client.own_devices().await.unwrap(), own);
    let history = alice.client.history(group, None, 100).await.unwrap();
    assert!(history.iter().any(|m| m.text == "kept"));
    alice
        .client
        .send_text(group, "still here", None)
        .await
        .unwrap();
    wait_text(&mut bob, &mut bob_log, group, "still here").await;
}

/// The own-device updates of PROTOCOL.md §7.4 against a server that replays an old update and
/// delivers one forged by a device that is not on the person's list (with the list's version
/// and hash, which the server knows): the person's other device keeps the newest plan of their
/// own devices.
#[tokio::test]
async fn own_device_updates_refuse_replays_and_devices_off_the_list() {
    use confide_client::SafetyPlan;
    use confide_protocol::frames::InboxItem;
    use confide_protocol::seal::{self, SealKind};
    use confide_protocol::{Epoch, EpochRef, OpHash};

    let server = TestServer::start().await;
    let evil = EvilServer::start(&server).await;
    let laptop = TestUser::register(&evil.url, evil.trust(), "Bob").await;
    let phone = laptop.link_new_device(&evil.url, evil.trust()).await;
    let mut laptop = laptop;
    let laptop_keys = DeviceIdentity::from_secrets(&laptop.secret)
        .unwrap()
        .public_keys();
    let plan = |step: &str| SafetyPlan {
        coping_steps: vec![format!("step {step}")],
        ..SafetyPlan::default()
    };

    // Two genuine changes on the phone; the laptop follows them.
    for step in ["one", "two"] {
        phone.client.set_safety_plan(plan(step)).await.unwrap();
        let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
        while laptop.client.safety_plan().await.unwrap() != plan(step) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the laptop got {step}"
            );
            let _ = tokio::time::timeout(Duration::from_millis(100), laptop.events.next()).await;
        }
    }
    let sent: Vec<_> = evil
        .requests_from(phone.client.device())
        .into_iter()
        .flat_map(|frame| match frame {
            ClientFrame::SendSealed { items, .. } => items,
            _ => Vec::new(),
        })
        .filter(|item| item.kind == SealKind::OwnDevices && item.recipient == laptop_keys.device)
        .collect();
    assert_eq!(sent.len(), 2, "one update per change, to the laptop");
    let first = sent[0].clone();
    let item = |payload| ServerFrame::Inbox {
        items: vec![InboxItem {
            inbox_id: 9_000_000,
            received_at: now(),
            payload,
        }],
    };

    // The server replays the first update: not newer, so nothing changes.
    assert_eq!(evil.inject(laptop_keys.device, item(first.clone())), 1);
    // A device off the list seals "its" update with the list's version and hash, newer still.
    let stranger = DeviceIdentity::generate(&mut rng());
    let forged_json = format!(
        r#"{{"t":"safety_plan","plan":{{"coping_steps":["step forged"]}},"updated_at":{}}}"#,
        now().0 + 60_000
    );
    let mut padded = forged_json.into_bytes();
    padded.push(0x80);
    padded.resize(confide_protocol::own_devices::OWN_DEVICES_PADDED_LEN, 0);
    let forged = seal::seal(
        &stranger,
        &laptop_keys,
        SealKind::OwnDevices,
        first.group,
        EpochRef {
            epoch: Epoch(first.epoch.0),
            hash: OpHash(first.epoch_hash.0),
        },
        &padded,
        &mut rng(),
    )
    .unwrap();
    assert_eq!(evil.inject(laptop_keys.device, item(forged)), 1);
    // A round trip after the injected frames: they were handled before its reply.
    laptop.client.sync().await.unwrap();
    assert_eq!(laptop.client.safety_plan().await.unwrap(), plan("two"));
}
