//! Moving to protocol version 2 (issue 18, PROTOCOL.md §4.7): a member whose device is still of
//! version 1 (no X-Wing key) is sealed to with X25519 alone; once the device starts as version 2
//! it publishes its X-Wing key, every group it is in moves to a new epoch, and from then on what
//! is sealed to it goes with X-Wing — and nothing sent before or after is lost.
//!
//! The clients talk through an [`EvilServer`] that relays honestly and records every request, to
//! see what was sealed to whom with which KEM.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use confide_client::{ClientConfig, GroupId, Invite, InviteOptions, JoinOutcome};
use confide_protocol::device_list::{DeviceList, UserIdentity};
use confide_protocol::frames::ClientFrame;
use confide_protocol::seal::{PQ_ENC_LEN, SealKind, SealedPayload, X25519_ENC_LEN};
use confide_protocol::{DeviceId, DeviceIdentity, UserId};
use confide_server::Storage as _;
use confide_server::storage::{DeviceRecord, Write};
use confide_tests::{EvilServer, PASSPHRASE, RECV_TIMEOUT, TestServer, TestUser, now, rng};

/// Every sender key `from` sealed to `to`, as the relay saw `from`'s requests.
fn sender_keys_sealed(evil: &EvilServer, from: DeviceId, to: DeviceId) -> Vec<SealedPayload> {
    evil.requests_from(from)
        .into_iter()
        .flat_map(|frame| match frame {
            ClientFrame::SendSealed { items, .. } => items,
            _ => Vec::new(),
        })
        .filter(|item| item.recipient == to && item.kind == SealKind::SenderKey)
        .collect()
}

/// Whether `user`'s view of `group` says every device in it has an X-Wing key.
async fn post_quantum(user: &TestUser, group: GroupId) -> bool {
    user.client
        .groups()
        .await
        .unwrap()
        .into_iter()
        .find(|g| g.group == group)
        .expect("the group is known")
        .post_quantum
}

/// Waits until `user`'s view of `group` says every device in it has an X-Wing key.
async fn wait_post_quantum(user: &mut TestUser, group: GroupId) {
    let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
    while !post_quantum(user, group).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the group never became post-quantum"
        );
        let _ = tokio::time::timeout(Duration::from_millis(100), user.events.next()).await;
    }
}

/// The texts of `user`'s history of `group`, once it holds at least `n`.
async fn texts(user: &mut TestUser, group: GroupId, n: usize) -> Vec<String> {
    user.wait_history(group, n)
        .await
        .into_iter()
        .map(|m| m.text)
        .collect()
}

/// A device of protocol version 1: an identity without an X-Wing key.
fn version_1_identity() -> DeviceIdentity {
    let mut secrets = [0u8; 64];
    rand_core::Rng::fill_bytes(&mut rng(), &mut secrets);
    DeviceIdentity::from_secrets(&secrets).unwrap()
}

#[tokio::test]
async fn a_version_1_member_moves_to_x_wing_and_reads_everything() {
    // Bob's device is of version 1. A server of version 2 registers no device without an X-Wing
    // key, and takes no list naming one without it: his registration and his first device list
    // from back then are written into the server's database before it starts, as an older
    // server would have left them.
    let bob_identity = version_1_identity();
    let bob_device = bob_identity.device_id();
    let bob_user = UserId::random(&mut rng());
    let user_identity = UserIdentity::generate(&mut rng());
    let first = DeviceList::first(bob_user, &user_identity, &bob_identity, now());
    let first = user_identity.sign_list(&first, &bob_identity).unwrap();
    let writes = [
        Write::Device(DeviceRecord {
            user: bob_user,
            keys: bob_identity.public_keys(),
            display_name: "Bob".into(),
            registered_at: now(),
        }),
        Write::DeviceList {
            user: bob_user,
            identity: user_identity.public(),
            list: first.clone(),
        },
    ];
    let server = TestServer::start_prepared(|db| db.commit(&writes).unwrap()).await;
    let evil = EvilServer::start(&server).await;

    let mut alice = TestUser::register(&evil.url, evil.trust(), "Alice").await;
    let alice_device = alice.client.device();
    let group = alice.client.create_group().await.unwrap();
    let invite = alice
        .client
        .create_invite(
            group,
            InviteOptions::new()
                .max_uses(2)
                .valid_for(Duration::from_secs(3600)),
        )
        .await
        .unwrap();

    // Bob's client keeps his device at version 1 (the test hook) and joins.
    let dir = tempfile::tempdir().unwrap();
    let mut config = ClientConfig::new(&evil.url, evil.trust(), dir.path().join("store"));
    config.kdf = confide_protocol::identity::KdfParams::INSECURE_FOR_TESTS;
    config.stay_version_1 = true;
    let (client, events) = confide_client::Client::create_registered(
        config.clone(),
        "Bob",
        PASSPHRASE,
        bob_identity,
        &user_identity,
        &first,
    )
    .await
    .unwrap();
    let mut bob = TestUser {
        client,
        events,
        config,
        dir,
        secret: Vec::new(),
    };
    let link = Invite::from_link(&invite.to_link()).unwrap();
    assert_eq!(
        bob.client.join(&link, None).await.unwrap(),
        JoinOutcome::Joined(group)
    );
    alice.wait_members(group, 2).await;
    bob.wait_members(group, 2).await;
    assert!(
        !post_quantum(&alice, group).await,
        "Bob's device has no X-Wing key"
    );
    assert!(!post_quantum(&bob, group).await);

    alice.client.send_text(group, "one", None).await.unwrap();
    bob.client.send_text(group, "two", None).await.unwrap();
    assert_eq!(texts(&mut bob, group, 2).await, ["one", "two"]);
    assert_eq!(texts(&mut alice, group, 2).await, ["one", "two"]);
    // Alice's sender key reached Bob's device sealed with X25519 alone; Bob's went to Alice's
    // with X-Wing.
    let to_bob = sender_keys_sealed(&evil, alice_device, bob_device);
    assert!(!to_bob.is_empty());
    assert!(
        to_bob
            .iter()
            .all(|s| s.enc.as_bytes().len() == X25519_ENC_LEN)
    );
    let to_alice = sender_keys_sealed(&evil, bob_device, alice_device);
    assert!(!to_alice.is_empty());
    assert!(
        to_alice
            .iter()
            .all(|s| s.enc.as_bytes().len() == PQ_ENC_LEN)
    );
    let epoch_before = to_bob.iter().map(|s| s.epoch).max().unwrap();

    // Bob is away while Alice writes on.
    bob.go_offline().await;
    alice.client.send_text(group, "three", None).await.unwrap();

    // Bob's client starts as version 2: his device publishes its X-Wing key and moves the group
    // to a new epoch.
    bob.config.stay_version_1 = false;
    bob.come_back().await;
    wait_post_quantum(&mut bob, group).await;
    wait_post_quantum(&mut alice, group).await;
    assert_eq!(bob.client.device(), bob_device, "the same device");
    let own = bob.client.own_devices().await.unwrap();
    assert_eq!(own.version, 2, "one new list: the X-Wing key added");

    alice.client.send_text(group, "four", None).await.unwrap();
    assert_eq!(
        texts(&mut bob, group, 4).await,
        ["one", "two", "three", "four"]
    );
    bob.client.send_text(group, "five", None).await.unwrap();
    let all = ["one", "two", "three", "four", "five"];
    assert_eq!(texts(&mut alice, group, 5).await, all);
    assert_eq!(texts(&mut bob, group, 5).await, all);

    // Every sender key Alice sealed to Bob in an epoch after the move went with X-Wing; those
    // of the epoch before, with X25519.
    let to_bob = sender_keys_sealed(&evil, alice_device, bob_device);
    let (after, before): (Vec<_>, Vec<_>) = to_bob.iter().partition(|s| s.epoch > epoch_before);
    assert!(
        !after.is_empty(),
        "a new epoch, with new sender keys for Bob"
    );
    assert!(after.iter().all(|s| s.enc.is_pq()));
    assert!(before.iter().all(|s| !s.enc.is_pq()));
    assert!(
        sender_keys_sealed(&evil, bob_device, alice_device)
            .iter()
            .all(|s| s.enc.is_pq())
    );
}
