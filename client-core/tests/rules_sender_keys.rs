#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! PROTOCOL.md §11.3, sender keys: this device's chain (stored before it is sealed, sealed to
//! exactly the current devices, advanced before each post) and others' (first one wins).

mod support;

use std::collections::BTreeSet;

use confide_protocol::frames::{ClientFrame, ErrorCode, ServerFrame};
use confide_protocol::group_log::{OpBody, Role};
use confide_protocol::{DeviceId, GroupId};
use support::{Device, Member, alice_and_bob, refuse};

/// The devices each `send_sealed` frame the device sent sealed to.
fn sealed_to(device: &Device) -> Vec<BTreeSet<DeviceId>> {
    device.sent_as(|f| match f {
        ClientFrame::SendSealed { items, .. } => Some(items.iter().map(|i| i.recipient).collect()),
        _ => None,
    })
}

fn own_chain_key(group: GroupId, epoch_hash: &confide_protocol::OpHash) -> Vec<u8> {
    [group.as_bytes().as_slice(), epoch_hash.as_bytes()].concat()
}

// §11.3 own chain: stored before it is sealed, sealed to exactly the current devices but this
// one, and advanced and stored (with the message in the outbox) before the envelope leaves.
#[test]
fn the_own_chain_is_stored_before_it_is_sealed_to_exactly_the_current_members_and_advanced_before_each_post()
 {
    let mut device = Device::new();
    let bob = Member::new(2, "Bob");
    let carol = Member::new(4, "Carol");
    let group = device.group_with(&[&bob, &carol]);
    device.send(group, "hello").unwrap();
    device.send(group, "again").unwrap();
    assert_eq!(
        sealed_to(&device),
        [BTreeSet::from([bob.device(), carol.device()])]
    );
    let epoch_hash = device.state(group).epoch_hash();
    let key = own_chain_key(group, &epoch_hash);
    for (frame, snapshot) in device.server.lock().unwrap().sent.iter() {
        match frame {
            ClientFrame::SendSealed { .. } => {
                assert!(
                    snapshot.get("own_chains", &key).is_some(),
                    "sealed before it was stored"
                );
            }
            ClientFrame::Post { envelope, .. } => {
                let chain = snapshot.get("own_chains", &key).unwrap();
                // [distributed, iteration (4 bytes BE), chain key]
                let iteration = u32::from_be_bytes(chain[1..5].try_into().unwrap());
                assert!(
                    iteration > envelope.iteration,
                    "the chain was not advanced before the post"
                );
                let outbox = [
                    group.as_bytes().as_slice(),
                    envelope.message_id().as_bytes(),
                ]
                .concat();
                assert!(
                    snapshot.get("outbox", &outbox).is_some(),
                    "posted before it was in the outbox"
                );
            }
            _ => {}
        }
    }
}

// §11.3 own chain: a new epoch after a removal gets a new chain, never sealed to the removed member.
#[test]
fn a_removed_member_is_never_sealed_the_next_sender_key() {
    let mut device = Device::new();
    let bob = Member::new(2, "Bob");
    let carol = Member::new(4, "Carol");
    let group = device.group_with(&[&bob, &carol]);
    device.send(group, "before").unwrap();
    device.remove(group, carol.user);
    device.send(group, "after").unwrap();
    let sealed = sealed_to(&device);
    assert_eq!(sealed.len(), 2);
    assert_eq!(sealed[1], BTreeSet::from([bob.device()]));
}

// §11.3 own chain: on `stale_epoch` the device holds the message, syncs and encrypts it again
// in the new epoch (in the same step: the send answers `held`, and `Sent` follows).
#[test]
fn a_post_refused_as_stale_is_encrypted_again_in_the_new_epoch() {
    let (mut device, group, bob, _) = alice_and_bob();
    let carol = Member::new(4, "Carol");
    device.append(group, support::add(carol.entry()));
    device.set_role(group, bob.user, Role::CoFacilitator);
    device.send(group, "first").unwrap();
    // Bob removes Carol meanwhile; the server refuses Alice's next post as stale. (Had he
    // added someone, the post would wait for Alice's word instead: held.rs, §11.13.)
    device.member_op(
        group,
        &bob,
        OpBody::Remove {
            user: carol.user,
            ban: false,
        },
    );
    let mut first = true;
    device.answer(Some(refuse(ErrorCode::StaleEpoch, move |frame| {
        matches!(frame, ClientFrame::Post { .. }) && std::mem::take(&mut first)
    })));
    device.clear();
    assert_eq!(device.send(group, "second").unwrap_err().code(), "held");
    let sent: Vec<String> = device.events_as(|e| match e {
        confide_client_core::Event::Sent(m) => Some(m.text),
        _ => None,
    });
    assert_eq!(sent, ["second"]);
    let epochs: Vec<u64> = device.posted().iter().map(|e| e.epoch.0).collect();
    let now = device.state(group).epoch().0;
    assert_eq!(epochs, [now - 1, now]);
    assert_eq!(device.history(group), ["first", "second"]);
}

// §11.3 others' chains: the first distribution per (group, epoch, sender) wins; a later one is
// ignored, and acknowledged.
#[test]
fn a_second_distribution_of_the_same_sender_and_epoch_is_ignored_and_acknowledged() {
    let (mut device, group, mut bob, mut chain) = alice_and_bob();
    let first = bob_says_twice(&device, group, &mut bob, &mut chain);
    device.push_message(group, &first[0]);
    // A replayed (or rewound) distribution: Bob's chain from its start, sealed again.
    let (_, replay) = device.member_key(group, &mut bob);
    device.push_inbox(std::slice::from_ref(&replay));
    assert!(device.sent().iter().any(|f| matches!(f, ClientFrame::AckInbox { inbox_ids, .. } if inbox_ids.contains(&replay.inbox_id))));
    device.push_message(group, &first[1]);
    assert_eq!(device.shown(), ["one", "two"]);
}

fn bob_says_twice(
    device: &Device,
    group: GroupId,
    bob: &mut Member,
    chain: &mut confide_protocol::sender_key::SenderChain,
) -> Vec<confide_protocol::frames::StoredMessage> {
    ["one", "two"]
        .iter()
        .map(|t| device.member_writes(group, bob, chain, t))
        .collect()
}

// §11.3 others' chains: a distribution from a non-member, or for an epoch not in the verified
// log, is dropped (and acknowledged).
#[test]
fn a_distribution_from_a_stranger_or_another_branch_is_dropped_and_acknowledged() {
    let (mut device, group, mut bob, _) = alice_and_bob();
    let mut mallory = Member::new(6, "Mallory");
    let epoch = device.state(group).epoch_ref();
    let chain = mallory.chain();
    let stranger = mallory.seal_key(&chain, &device.alice.keys(), group, epoch);
    let branch = confide_protocol::EpochRef {
        epoch: epoch.epoch,
        hash: confide_protocol::OpHash([9; 32]),
    };
    let chain = bob.chain();
    let other_branch = bob.seal_key(&chain, &device.alice.keys(), group, branch);
    let items: Vec<_> = [stranger, other_branch]
        .into_iter()
        .map(|s| device.put_in_inbox(s))
        .collect();
    device.push_inbox(&items);
    let snapshot = device.store.snapshot();
    let of = |hash: &confide_protocol::OpHash, d: DeviceId| {
        [group.as_bytes().as_slice(), hash.as_bytes(), d.as_bytes()].concat()
    };
    assert!(
        snapshot
            .get("recv_chains", &of(&epoch.hash, mallory.device()))
            .is_none()
    );
    assert!(
        snapshot
            .get("recv_chains", &of(&branch.hash, bob.device()))
            .is_none()
    );
    assert!(
        device.server.lock().unwrap().inbox.is_empty(),
        "both acknowledged"
    );
}

// §11.3 across server nodes: Bob removed Carol through another node, and this device has not
// been told yet. This node reads the newest stored log, so it refuses a sender key sealed to
// Carol as `not_member` — usually pushing the removal just before (`cluster::refresh`), or not.
// Either way the message is neither lost nor refused: the device syncs, finds the removal, and
// sends its key and the message in the new epoch, without Carol.
fn removed_through_another_node(pushed_before_the_refusal: bool) {
    let mut device = Device::new();
    let bob = Member::new(2, "Bob");
    let carol = Member::new(4, "Carol");
    let group = device.group_with(&[&bob, &carol]);
    device.set_role(group, bob.user, Role::CoFacilitator);
    let before = device.state(group).epoch();
    let (removal, seq) = device.member_op(
        group,
        &bob,
        OpBody::Remove {
            user: carol.user,
            ban: false,
        },
    );
    let removed = carol.device();
    device.answer(Some(Box::new(move |f: &ClientFrame| match f {
        ClientFrame::SendSealed { items, .. } if items.iter().any(|i| i.recipient == removed) => {
            let refusal = ServerFrame::error(Some(f.request_id()), ErrorCode::NotMember, "no");
            let pushed = ServerFrame::Op {
                group,
                op: removal.clone(),
                seq,
            };
            Some(match pushed_before_the_refusal {
                true => vec![pushed, refusal],
                false => vec![refusal],
            })
        }
        _ => None,
    })));
    device.clear();

    device.send(group, "bye Carol").unwrap();

    let posted = device.posted();
    assert_eq!(posted.len(), 1, "one message, posted once");
    assert!(
        posted[0].epoch > before,
        "sealed in the epoch without Carol"
    );
    assert_eq!(
        sealed_to(&device),
        [
            BTreeSet::from([bob.device(), carol.device()]),
            BTreeSet::from([bob.device()])
        ],
        "the refused key, then the new epoch's key for Bob alone"
    );
}

#[test]
fn a_sender_key_refused_for_someone_removed_through_another_node_goes_again_in_the_new_epoch() {
    removed_through_another_node(false);
}

#[test]
fn a_sender_key_refused_after_the_node_pushed_the_removal_goes_again_in_the_new_epoch() {
    removed_through_another_node(true);
}

// The same refusal from a server that has no such removal to show (a lie, or a fault): the
// device syncs, finds nothing new, and does not seal without Carol on the server's word — it
// says the send failed, and has posted nothing.
#[test]
fn a_sender_key_refused_with_no_removal_to_show_fails_the_send_and_posts_nothing() {
    let mut device = Device::new();
    let bob = Member::new(2, "Bob");
    let carol = Member::new(4, "Carol");
    let group = device.group_with(&[&bob, &carol]);
    device.answer(Some(refuse(ErrorCode::NotMember, |f| {
        matches!(f, ClientFrame::SendSealed { .. })
    })));
    device.clear();

    let err = device.send(group, "hello").unwrap_err();

    assert_eq!(err.code(), "not_member", "{err:?}");
    assert_eq!(device.synced(), [group], "it looked for a removal first");
    assert!(device.posted().is_empty());
    assert_eq!(
        sealed_to(&device),
        [BTreeSet::from([bob.device(), carol.device()])],
        "sealed once, to everyone"
    );
}

// The device itself was removed through another node: the send says so.
#[test]
fn a_sender_key_refused_because_this_device_was_removed_says_removed() {
    let mut device = Device::new();
    let bob = Member::new(2, "Bob");
    let group = device.group_with(&[&bob]);
    device.set_role(group, bob.user, Role::Facilitator);
    device.member_op(
        group,
        &bob,
        OpBody::Remove {
            user: support::ALICE,
            ban: false,
        },
    );
    device.answer(Some(refuse(ErrorCode::NotMember, |f| {
        matches!(f, ClientFrame::SendSealed { .. })
    })));
    device.clear();

    let err = device.send(group, "hello").unwrap_err();

    assert_eq!(err.code(), "removed", "{err:?}");
    assert!(device.posted().is_empty());
}

// The refusal, then the connection drops during the sync that looks for the removal: nothing
// is decided on a log that was not read to its end, and the message is kept for later.
#[test]
fn a_sender_key_refused_then_the_connection_lost_in_the_sync_keeps_the_message() {
    let mut device = Device::new();
    let bob = Member::new(2, "Bob");
    let carol = Member::new(4, "Carol");
    let group = device.group_with(&[&bob, &carol]);
    device.answer(Some(Box::new(|f: &ClientFrame| match f {
        ClientFrame::SendSealed { .. } => Some(vec![ServerFrame::error(
            Some(f.request_id()),
            ErrorCode::NotMember,
            "no",
        )]),
        ClientFrame::Sync { .. } => Some(Vec::new()),
        _ => None,
    })));
    device.clear();

    assert_eq!(device.send(group, "hello").unwrap_err().code(), "held");
    assert!(device.posted().is_empty());
    let held = pollster::block_on(device.core.held(group)).unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].text, "hello");
}
