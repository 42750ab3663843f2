#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! PROTOCOL.md §5.5, periodic rekeying: a device moves a group to a new epoch by itself once
//! the epoch is a day old or has carried enough messages (never sooner than a minute after it
//! began), after a sync and before it sends; the next message goes under a fresh key, which a
//! leaked old key cannot open. A race with another device's rekey costs one refused append,
//! a failed rekey never keeps a message back, and a rekey that breaks the log's rule is refused
//! when the server serves it.

mod support;

use confide_client_core::{ClientError, Event, GroupInfo, REKEY_AFTER_MS, RekeyPolicy};
use confide_protocol::frames::{ClientFrame, ErrorCode};
use confide_protocol::group_log::{LogError, MIN_REKEY_INTERVAL_MS, OpBody};
use confide_protocol::seal::{self, SealKind};
use confide_protocol::sender_key::ReceiverChain;
use confide_protocol::{GroupId, Timestamp};
use support::{Device, Member, NOW, alice_and_bob, refuse};

/// The body of the last op of the server's log of `group`, and its author.
fn last_op(device: &Device, group: GroupId) -> (OpBody, confide_protocol::DeviceId) {
    let op = device
        .log(group)
        .ops
        .last()
        .unwrap()
        .parse_unverified()
        .unwrap();
    (op.body, op.author)
}

/// The device's view of `group`.
fn info(device: &Device, group: GroupId) -> GroupInfo {
    pollster::block_on(device.core.groups())
        .into_iter()
        .find(|g| g.group == group)
        .unwrap()
}

/// How many `append_op` requests the device sent.
fn appends(device: &Device) -> usize {
    device
        .sent_as(|f| matches!(f, ClientFrame::AppendOp { .. }).then_some(()))
        .len()
}

/// The sender keys the device sealed to `member`, opened by `member`, in order.
fn keys_for(device: &Device, member: &Member) -> Vec<ReceiverChain> {
    device
        .sealed()
        .iter()
        .filter(|s| s.kind == SealKind::SenderKey && s.recipient == member.device())
        .map(|s| {
            ReceiverChain::from_distribution(&seal::open(&member.identity, s).unwrap()).unwrap()
        })
        .collect()
}

#[test]
fn a_day_old_epoch_is_rekeyed_after_a_sync_and_a_leaked_old_key_cannot_read_what_follows() {
    let (mut device, group, bob, _) = alice_and_bob();
    let epoch = device.state(group).epoch();
    let members = device.state(group).members().clone();
    device.send(group, "before").unwrap();

    // A moment short of a day: nothing happens.
    device.set_clock(Timestamp(NOW.0 + REKEY_AFTER_MS - 1));
    device.sync().unwrap();
    assert_eq!(device.state(group).epoch(), epoch);
    // A day after the epoch began: the sync's follow-up rekeys the group.
    device.set_clock(Timestamp(NOW.0 + REKEY_AFTER_MS));
    device.sync().unwrap();
    assert_eq!(
        last_op(&device, group),
        (OpBody::Rekey {}, device.alice.device())
    );
    let state = device.state(group);
    assert_eq!(state.epoch(), epoch.next());
    assert_eq!(state.members(), &members, "nobody came or went");
    assert_eq!(
        info(&device, group).epoch,
        state.epoch(),
        "the device holds the new epoch"
    );
    // No line about members for anyone: a rekey is no membership change.
    assert!(
        !device.events().iter().any(|e| matches!(
            e,
            Event::Notice(_) | Event::Joined { .. } | Event::Removed { .. }
        )),
        "{:?}",
        device.events()
    );

    device.send(group, "after").unwrap();
    let posted = device.posted();
    assert_eq!(
        posted.iter().map(|e| e.epoch).collect::<Vec<_>>(),
        [epoch, epoch.next()]
    );
    // A fresh key went to Bob for the new epoch; the old one (say it leaked) opens the old
    // message and not the new one.
    let mut keys = keys_for(&device, &bob);
    assert_eq!(keys.len(), 2, "one key per epoch");
    let mut new_key = keys.pop().unwrap();
    let mut old_key = keys.pop().unwrap();
    assert!(posted[0].open(&mut old_key).is_ok());
    assert!(
        posted[1].open(&mut old_key).is_err(),
        "a leaked sender key stops working after a rekey"
    );
    assert!(posted[1].open(&mut new_key).is_ok());
}

#[test]
fn an_epoch_that_carried_enough_messages_is_rekeyed_before_the_next_message_even_after_a_restart() {
    let (mut device, group, mut bob, mut chain) = alice_and_bob();
    let policy = RekeyPolicy {
        after_messages: 3,
        after_ms: 0,
    };
    device.core.set_rekey_policy(policy);
    let epoch = device.state(group).epoch();
    let one = device.member_writes(group, &mut bob, &mut chain, "one");
    device.push_message(group, &one);
    let two = device.member_writes(group, &mut bob, &mut chain, "two");
    device.push_message(group, &two);
    device.send(group, "three").unwrap();
    // Three messages, but the epoch began less than a minute ago: the log allows no rekey yet.
    device.send(group, "four").unwrap();
    assert_eq!(appends(&device), 0);

    // The count survives a restart; a minute after the epoch began, the next message goes in a
    // new epoch.
    let mut device = device.restart(9);
    device.core.set_rekey_policy(policy);
    device.set_clock(Timestamp(NOW.0 + MIN_REKEY_INTERVAL_MS));
    pollster::block_on(device.core.connect()).unwrap();
    device.clear();
    device.send(group, "five").unwrap();
    assert_eq!(last_op(&device, group).0, OpBody::Rekey {});
    assert_eq!(
        device.posted().iter().map(|e| e.epoch).collect::<Vec<_>>(),
        [epoch.next()]
    );
    // The count starts again in the new epoch.
    device.send(group, "six").unwrap();
    assert_eq!(appends(&device), 1);
    assert_eq!(
        device.history(group),
        ["one", "two", "three", "four", "five", "six"]
    );
}

#[test]
fn a_rekey_another_device_made_first_is_not_made_again() {
    let (mut device, group, bob, _) = alice_and_bob();
    let epoch = device.state(group).epoch();
    device.set_clock(Timestamp(NOW.0 + REKEY_AFTER_MS));
    // Bob's device rekeyed first; Alice's has not seen it, and the server refuses her append
    // at the same position.
    let (_, bobs) = device.member_op(group, &bob, OpBody::Rekey {});
    device.answer(Some(refuse(ErrorCode::OpConflict, |f| {
        matches!(f, ClientFrame::AppendOp { .. })
    })));
    device.send(group, "after a day").unwrap();
    assert_eq!(appends(&device), 1, "tried once, not again after the sync");
    assert_eq!(device.log(group).ops.len() as u64 - 1, bobs);
    assert_eq!(last_op(&device, group), (OpBody::Rekey {}, bob.device()));
    assert_eq!(device.state(group).epoch(), epoch.next());
    // The message went in Bob's fresh epoch, under a fresh key of Alice's.
    assert_eq!(device.posted()[0].epoch, epoch.next());
    assert_eq!(keys_for(&device, &bob).len(), 1);
}

#[test]
fn a_rekey_the_server_refuses_does_not_keep_messages_back_and_is_not_tried_again_in_that_epoch() {
    let (mut device, group, _, _) = alice_and_bob();
    let epoch = device.state(group).epoch();
    device.set_clock(Timestamp(NOW.0 + REKEY_AFTER_MS));
    device.answer(Some(refuse(ErrorCode::InvalidOp, |f| {
        matches!(f, ClientFrame::AppendOp { .. })
    })));
    device.send(group, "one").unwrap();
    device.send(group, "two").unwrap();
    assert_eq!(appends(&device), 1);
    assert_eq!(
        device.posted().iter().map(|e| e.epoch).collect::<Vec<_>>(),
        [epoch, epoch]
    );
}

#[test]
fn a_policy_of_zero_never_rekeys_by_itself_and_a_rekey_by_hand_still_works() {
    let (mut device, group, _, _) = alice_and_bob();
    device.core.set_rekey_policy(RekeyPolicy::NEVER);
    let epoch = device.state(group).epoch();
    device.set_clock(Timestamp(NOW.0 + 30 * REKEY_AFTER_MS));
    device.sync().unwrap();
    device.send(group, "a month later").unwrap();
    assert_eq!(appends(&device), 0);
    pollster::block_on(device.core.rekey(group)).unwrap();
    assert_eq!(device.state(group).epoch(), epoch.next());
    // By hand, too, the log's minute applies.
    let refused = pollster::block_on(device.core.rekey(group)).unwrap_err();
    assert!(
        matches!(
            refused,
            ClientError::NotAllowed(LogError::RekeyTooSoon { .. })
        ),
        "{refused}"
    );
    assert_eq!(appends(&device), 1, "refused before anything was sent");
}

#[test]
fn a_rekey_sooner_than_the_log_allows_is_refused_when_the_server_serves_it() {
    let (mut device, group, bob, _) = alice_and_bob();
    let epoch = device.state(group).epoch();
    // Bob (or whoever holds his device key) signs a rekey a second after the epoch began, and
    // the server, which should refuse it, serves it.
    let state = device.state(group);
    let op = bob.op(&state, Timestamp(NOW.0 + 1_000), OpBody::Rekey {});
    let seq = device.store_op(group, op);
    device.sync().unwrap();
    let rejected: Vec<String> = device.events_as(|e| match e {
        Event::GroupRejected(r) if r.group == group && r.seq == seq => Some(r.reason),
        _ => None,
    });
    assert_eq!(rejected.len(), 1, "{:?}", device.events());
    assert!(rejected[0].contains("too soon"), "{}", rejected[0]);
    let info = info(&device, group);
    assert_eq!(info.epoch, epoch, "the epoch did not move");
    assert_eq!(info.tampered, None);
}
