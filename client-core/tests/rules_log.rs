#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! PROTOCOL.md §11.1, the group log: replay and freezing, ops in order, refused ops, holding
//! posts while behind, writing ops.

mod support;

use confide_client_core::{Batch, ClientStore, Event};
use confide_protocol::GroupId;
use confide_protocol::frames::{ClientFrame, ErrorCode};
use confide_protocol::group_log::{OpBody, Role};
use pollster::block_on;
use support::{Device, Member, alice_and_bob, refuse};
use zeroize::Zeroizing;

fn group_rejected(device: &Device) -> Vec<u64> {
    device.events_as(|e| match e {
        Event::GroupRejected(r) => Some(r.seq),
        _ => None,
    })
}

/// The actions of the group changes Alice was shown, in order.
fn changes(device: &Device) -> Vec<String> {
    device.events_as(|e| match e {
        Event::GroupChanged(c) => Some(c.action),
        _ => None,
    })
}

fn posts(device: &Device) -> usize {
    device.posted().len()
}

fn op_key(group: GroupId, seq: u64) -> Vec<u8> {
    [group.as_bytes().as_slice(), &seq.to_be_bytes()].concat()
}

// §11.1 replay from genesis: a stored log that no longer verifies freezes that group, not the client.
#[test]
fn a_damaged_stored_log_freezes_its_group_at_the_next_start_and_only_that_group() {
    let mut device = Device::new();
    let bob = Member::new(2, "Bob");
    let damaged = device.group_with(&[&bob]);
    let healthy = device.group_with(&[&bob]);
    // The store's op #1 of one group is replaced by the other group's (valid JSON, wrong chain).
    let other = device
        .store
        .snapshot()
        .get("ops", &op_key(healthy, 1))
        .unwrap()
        .to_vec();
    let mut batch = Batch::new();
    batch.put("ops", &op_key(damaged, 1), Zeroizing::new(other));
    block_on(device.store.commit(batch)).unwrap();
    let mut device = device.restart(7);
    block_on(device.core.connect()).unwrap();
    device.drive();
    device.clear();
    assert_eq!(
        device.send(damaged, "x").unwrap_err().code(),
        "group_tampered"
    );
    assert_eq!(posts(&device), 0, "nothing is posted in a frozen group");
    device.send(healthy, "still works").unwrap();
    assert_eq!(posts(&device), 1);
}

// §11.1 ops in order: head + 1 applied, at or below the head ignored, further ahead synced.
#[test]
fn live_ops_are_applied_in_order_old_ones_ignored_and_a_gap_synced() {
    let (mut device, group, bob, _) = alice_and_bob();
    device.set_role(group, bob.user, Role::CoFacilitator);
    device.clear();
    let (lock, seq) = device.member_op(group, &bob, OpBody::Lock {});
    device.push_op(group, lock.clone(), seq);
    assert!(matches!(&device.events()[..], [Event::GroupChanged(c)] if c.action == "lock"));
    // Served again: nothing.
    device.clear();
    device.push_op(group, lock, seq);
    assert!(device.events().is_empty());
    assert!(device.sent().is_empty());
    // Two ahead: the device syncs and gets both.
    device.member_op(group, &bob, OpBody::Unlock {});
    let (lock, seq) = device.member_op(group, &bob, OpBody::Lock {});
    device.push_op(group, lock, seq);
    assert!(!device.synced().is_empty());
    assert_eq!(changes(&device), ["unlock", "lock"]);
}

// §11.1 ops in order: an op of a group the device does not hold triggers a sync.
#[test]
fn an_op_of_an_unknown_group_makes_the_device_sync_it() {
    let (mut device, group, bob, _) = alice_and_bob();
    let (op, seq) = device.member_op(group, &bob, OpBody::Leave {});
    device.push_op(GroupId([8; 16]), op, seq);
    assert!(device.synced().contains(&GroupId([8; 16])));
}

// §11.1 refused ops: an op from a device the server made up is refused, told once, and the group
// recovers by itself when the server serves the valid chain.
#[test]
fn an_op_signed_by_a_stranger_is_refused_told_once_and_the_group_recovers() {
    let (mut device, group, bob, _) = alice_and_bob();
    let mallory = Member::new(6, "Mallory");
    let state = device.state(group);
    let forged = mallory.op(&state, device.now(), OpBody::Lock {});
    let seq = state.seq() + 1;
    for _ in 0..3 {
        device.push_op(group, forged.clone(), seq);
    }
    assert_eq!(group_rejected(&device), [seq], "told once per position");
    assert!(device.core.status(group).is_ok(), "not frozen");
    // The server serves the valid op at that position: applied.
    device.set_role(group, bob.user, Role::CoFacilitator);
    let changes = device.events_as(|e| match e {
        Event::GroupChanged(c) => Some(c.op_seq),
        _ => None,
    });
    assert_eq!(changes, [seq]);
}

// §11.1 refused ops: nothing of a sync page after a bad op is applied; its messages are still
// processed against the verified log; the next sync asks from the verified head.
#[test]
fn a_sync_page_with_a_bad_op_applies_nothing_after_it_but_still_shows_its_messages() {
    let (mut device, group, mut bob, mut chain) = alice_and_bob();
    device.set_role(group, bob.user, Role::CoFacilitator);
    let head = device.state(group).seq();
    let mallory = Member::new(6, "Mallory");
    let bad = mallory.op(&device.state(group), device.now(), OpBody::Lock {});
    // Bob writes in the verified epoch; the server's log then gets the bad op.
    let m = device.member_writes(group, &mut bob, &mut chain, "still here");
    device.store_op(group, bad);
    device.clear();
    let _ = device.sync();
    assert_eq!(group_rejected(&device), [head + 1]);
    assert_eq!(device.shown(), ["still here"]);
    // The server drops the bad op: the next sync asks from the verified head and recovers.
    device.withhold_op(group);
    device.member_op(group, &bob, OpBody::Lock {});
    device.clear();
    device.sync().unwrap();
    assert!(
        device
            .sent()
            .iter()
            .any(|f| matches!(f, ClientFrame::Sync { after_op_seq: Some(s), .. } if *s == head))
    );
    assert!(
        device
            .events()
            .iter()
            .any(|e| matches!(e, Event::GroupChanged(c) if c.action == "lock"))
    );
    let _ = m;
}

/// Bob (a co-facilitator) moves the server's log `n` epochs on (adding people); Alice is not
/// shown it. Returns Bob's message in the newest epoch.
fn bob_moves_on(
    device: &Device,
    group: GroupId,
    bob: &mut Member,
    n: u8,
) -> confide_protocol::frames::StoredMessage {
    for i in 0..n {
        device.member_adds(group, bob, Member::new(40 + i, "Someone").entry());
    }
    let mut chain = bob.chain();
    device.member_writes(group, bob, &mut chain, "ahead")
}

// §11.1 holding while behind: a member's message from an epoch the log has not reached holds
// Alice's posts; after a sync that does not get there she is warned once; caught up, the held
// messages go in order, in the current epoch.
#[test]
fn posts_are_held_while_members_use_an_epoch_the_log_has_not_reached() {
    let (mut device, group, mut bob, _) = alice_and_bob();
    device.set_role(group, bob.user, Role::CoFacilitator);
    let log_epoch = device.state(group).epoch();
    let m = bob_moves_on(&device, group, &mut bob, 1);
    // The server withholds the op that started the epoch.
    let withheld = device.withhold_op(group);
    device.clear();
    device.push_message(group, &m);
    assert!(device.events().iter().any(|e| matches!(e, Event::GroupBehind { seen_epoch, log_epoch: l, .. } if *seen_epoch == log_epoch.0 + 1 && *l == log_epoch.0)));
    assert_eq!(device.send(group, "one").unwrap_err().code(), "held");
    assert_eq!(device.send(group, "two").unwrap_err().code(), "held");
    assert_eq!(posts(&device), 0);
    assert!(
        device.sealed().is_empty(),
        "no sender key sealed while held"
    );
    // Another sync that does not get there: no second warning.
    device.sync().unwrap();
    let warnings = device
        .events()
        .iter()
        .filter(|e| matches!(e, Event::GroupBehind { .. }))
        .count();
    assert_eq!(warnings, 1);
    // The server serves the op: caught up. The op added someone Alice had not seen when she
    // wrote, so the held messages wait for her word (§11.13); given, they go, in order, in the
    // new epoch.
    device.store_op(group, withheld);
    device.sync().unwrap();
    block_on(device.core.retry_now());
    device.drive();
    assert!(
        device
            .events()
            .iter()
            .any(|e| matches!(e, Event::CaughtUp { .. }))
    );
    assert_eq!(posts(&device), 0);
    let waiting = block_on(device.core.held(group)).unwrap();
    assert!(waiting.iter().all(|m| m.needs_confirm), "{waiting:?}");
    for m in &waiting {
        block_on(device.core.send_held_anyway(group, m.id, m.epoch)).unwrap();
    }
    device.drive();
    let new_epoch = device.state(group).epoch();
    let mine: Vec<_> = device
        .log(group)
        .messages
        .into_iter()
        .filter(|m| m.envelope.sender == device.alice.device())
        .collect();
    assert_eq!(mine.len(), 2);
    assert!(mine.iter().all(|m| m.envelope.epoch == new_epoch));
    let sent = device.events_as(|e| match e {
        Event::Sent(m) => Some(m.text),
        _ => None,
    });
    assert_eq!(sent, ["one", "two"]);
}

// §11.1 holding while behind: a claim stops holding anything back once its device is removed.
#[test]
fn a_member_who_names_an_epoch_that_never_comes_holds_posts_back_only_until_removed() {
    let (mut device, group, mut bob, _) = alice_and_bob();
    device.set_role(group, bob.user, Role::CoFacilitator);
    let m = bob_moves_on(&device, group, &mut bob, 3);
    // None of Bob's ops is ever served.
    device.edit_log(group, |log| log.ops.truncate(3));
    device.push_message(group, &m);
    assert_eq!(device.send(group, "held").unwrap_err().code(), "held");
    device.remove(group, bob.user);
    block_on(device.core.retry_now());
    device.drive();
    assert!(
        device
            .events()
            .iter()
            .any(|e| matches!(e, Event::Sent(m) if m.text == "held"))
    );
}

// A held message the server refuses once it is sent is reported with the refusal's stable code
// besides the server's words, so that a front end says why in its own words (the server's are
// not to be shown).
#[test]
fn a_held_message_the_server_refuses_is_reported_with_the_code() {
    let (mut device, group, mut bob, _) = alice_and_bob();
    device.set_role(group, bob.user, Role::CoFacilitator);
    let m = bob_moves_on(&device, group, &mut bob, 3);
    device.edit_log(group, |log| log.ops.truncate(3));
    device.push_message(group, &m);
    assert_eq!(device.send(group, "held").unwrap_err().code(), "held");
    // Bob's removal lets the held message go; the server refuses it.
    device.answer(Some(refuse(ErrorCode::AgreementRequired, |frame| {
        matches!(frame, ClientFrame::Post { .. })
    })));
    device.remove(group, bob.user);
    block_on(device.core.retry_now());
    device.drive();
    let failed = device.events_as(|e| match e {
        Event::SendFailed { code, .. } => Some(code),
        _ => None,
    });
    assert_eq!(failed, ["agreement_required"]);
}

// §11.1 writing ops: on `op_conflict` the device syncs and signs again on the new head.
#[test]
fn an_op_conflict_makes_the_device_sync_and_sign_again_on_the_new_head() {
    let (mut device, group, bob, _) = alice_and_bob();
    device.set_role(group, bob.user, Role::CoFacilitator);
    let (bobs, _) = device.member_op(group, &bob, OpBody::SetSlowMode { seconds: 5 });
    let mut first = true;
    device.answer(Some(refuse(ErrorCode::OpConflict, move |frame| {
        matches!(frame, ClientFrame::AppendOp { .. }) && std::mem::take(&mut first)
    })));
    device.clear();
    let seq = device.append(group, OpBody::Lock {});
    let appends = device.sent_as(|f| match f {
        ClientFrame::AppendOp { op, .. } => Some(op.parse_unverified().unwrap()),
        _ => None,
    });
    assert_eq!(appends.len(), 2);
    assert_eq!(appends[1].prev, bobs.hash());
    assert_eq!(seq, appends[1].seq);
    // The device holds Bob's op and its own, in that order.
    assert_eq!(
        device.state(group).head(),
        device.log(group).ops.last().unwrap().hash()
    );
}
