#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! PROTOCOL.md §11.12, persist then send or show: over a conversation, every event the
//! application is handed and every frame sent finds what it implies already in the store.
//! (crash.rs covers the other half: a failed write keeps nothing of its step.)

mod support;

use confide_client_core::Event;
use confide_client_core::MemoryStore;
use confide_client_core::memory::{FaultProbe, Faults};
use confide_protocol::GroupId;
use confide_protocol::frames::ClientFrame;
use confide_protocol::group_log::OpBody;
use confide_protocol::sender_key::SenderChain;
use pollster::block_on;
use support::{Member, at_seq, of_id};

#[test]
fn every_event_and_every_frame_comes_after_its_step_is_stored() {
    let mut device = support::Device::new();
    let mut bob = Member::new(2, "Bob");
    let carol = Member::new(4, "Carol");
    let group = device.group_with(&[&bob, &carol]);
    let (mut chain, item) = device.member_key(group, &mut bob);
    device.push_inbox(&[item]);
    for words in ["one", "two"] {
        let m = device.member_writes(group, &mut bob, &mut chain, words);
        device.push_message(group, &m);
        device.send(group, &format!("re: {words}")).unwrap();
    }
    let first = device.log(group).messages[0].envelope.message_id();
    device.append(
        group,
        OpBody::DeleteMessages {
            messages: vec![first],
        },
    );
    device.remove(group, carol.user);
    device.send(group, "after").unwrap();

    let events = device.events.lock().unwrap();
    assert!(
        events
            .iter()
            .filter(|(e, _)| matches!(e, Event::Message(_)))
            .count()
            == 2
    );
    for (event, snapshot) in events.iter() {
        match event {
            Event::Message(m) | Event::Sent(m) => {
                assert!(
                    snapshot.get("messages", &at_seq(group, m.seq.0)).is_some(),
                    "{event:?} shown before stored"
                );
                assert!(
                    snapshot.get("seen", &of_id(group, m.id)).is_some(),
                    "{event:?} shown before marked seen"
                );
            }
            Event::MessagesDeleted { messages, .. } => {
                for id in messages {
                    assert!(snapshot.get("deleted", &of_id(group, *id)).is_some());
                }
            }
            Event::GroupChanged(c) => {
                let key = [group.as_bytes().as_slice(), &c.op_seq.to_be_bytes()].concat();
                assert!(
                    snapshot.get("ops", &key).is_some(),
                    "op {} shown before stored",
                    c.op_seq
                );
            }
            _ => {}
        }
    }
    let server = device.server.lock().unwrap();
    for (frame, snapshot) in server.sent.iter() {
        match frame {
            ClientFrame::Post { envelope, .. } => {
                let key = [
                    group.as_bytes().as_slice(),
                    envelope.message_id().as_bytes(),
                ]
                .concat();
                assert!(
                    snapshot.get("outbox", &key).is_some(),
                    "posted before it was in the outbox"
                );
            }
            ClientFrame::SendSealed { items, .. } => {
                let key = [group.as_bytes().as_slice(), items[0].epoch_hash.as_bytes()].concat();
                assert!(
                    snapshot.get("own_chains", &key).is_some(),
                    "sealed before stored"
                );
            }
            _ => {}
        }
    }
}

/// A device over a store whose reads can be made to fail, with Bob in a group of Alice's and
/// his sender key held.
fn faulty_alice_and_bob() -> (support::Device, FaultProbe, GroupId, Member, SenderChain) {
    let (store, probe) = MemoryStore::with_faults(Faults::new());
    let mut device = support::Device::create(store, support::Shared::default());
    let mut bob = Member::new(2, "Bob");
    let group = device.group_with(&[&bob]);
    let (chain, item) = device.member_key(group, &mut bob);
    device.push_inbox(&[item]);
    device.clear();
    (device, probe, group, bob, chain)
}

// §11.12: a received message the store cannot take leaves nothing of its step behind — not
// the receiving chain's advance, which would use its key up — so it comes again with the next
// sync and is shown then.
#[test]
fn a_received_message_the_store_cannot_take_is_shown_after_the_next_sync() {
    let (mut device, probe, group, mut bob, mut chain) = faulty_alice_and_bob();
    probe.fail_reads_of(Some("messages"));
    let m = device.member_writes(group, &mut bob, &mut chain, "hello");
    device.push_message(group, &m);
    assert!(device.shown().is_empty());
    probe.fail_reads_of(None);
    device.sync().unwrap();
    assert_eq!(device.shown(), ["hello"]);
    assert_eq!(device.history(group), ["hello"]);
}

// §11.12: an own post the store cannot take once the server has it is not marked as
// processed without being stored: it is in the history after the next sync. The send answers
// `pending` (it is in the outbox and goes), not `store`, which would have the user send it again.
#[test]
fn an_own_post_the_store_cannot_take_is_in_the_history_after_the_next_sync() {
    let (mut device, probe, group, _bob, _chain) = faulty_alice_and_bob();
    probe.fail_reads_of(Some("messages"));
    assert_eq!(device.send(group, "mine").unwrap_err().code(), "pending");
    probe.fail_reads_of(None);
    device.sync().unwrap();
    assert_eq!(device.history(group), ["mine"]);
    let sent = device.events_as(|e| match e {
        confide_client_core::Event::Sent(m) => Some(m.text),
        _ => None,
    });
    assert_eq!(sent, ["mine"]);
}

// §11.12 with §11.1: a held message whose step is undone (the store failed while an earlier
// held message was being stored) is still held, not dropped and reported as not sent: it goes
// once the store works again.
#[test]
fn a_held_message_whose_step_is_undone_is_sent_later_not_dropped() {
    let (mut device, probe, group, mut bob, _chain) = faulty_alice_and_bob();
    device.set_role(
        group,
        bob.user,
        confide_protocol::group_log::Role::CoFacilitator,
    );
    let carol = Member::new(40, "Carol");
    device.append(group, support::add(carol.entry()));
    // Bob moves the log on (a removal: an addition would make the held messages wait for
    // Alice's word, §11.13); the server withholds the op, and Bob's message in the new epoch
    // makes Alice's device hold her posts until its log gets there.
    let (op, seq) = device.member_op(
        group,
        &bob,
        OpBody::Remove {
            user: carol.user,
            ban: false,
        },
    );
    let mut ahead = bob.chain();
    let m = device.member_writes(group, &mut bob, &mut ahead, "ahead");
    device.withhold_op(group);
    device.push_message(group, &m);
    for words in ["one", "two"] {
        assert_eq!(device.send(group, words).unwrap_err().code(), "held");
    }
    // The op comes; the held messages go, and storing the first one as sent fails.
    device.store_op(group, op.clone());
    probe.fail_reads_of(Some("messages"));
    device.push_op(group, op, seq);
    probe.fail_reads_of(None);
    let failed = device.events_as(|e| match e {
        Event::SendFailed { reason, .. } => Some(reason),
        _ => None,
    });
    assert_eq!(failed, Vec::<String>::new(), "reported as not sent");
    device.sync().unwrap();
    block_on(device.core.retry_now());
    device.drive();
    let mine = device
        .log(group)
        .messages
        .iter()
        .filter(|m| m.envelope.sender == device.alice.device())
        .count();
    assert_eq!(mine, 2, "both posted");
    assert_eq!(device.history(group), ["one", "two"]);
}

// §11.12: a store failure while connecting undoes the sync's step and drops the connection;
// the connection then failed, with that error, so that the driver backs off before dialling
// again instead of reconnecting at once, over and over, while the store keeps failing.
#[test]
fn a_store_failure_while_connecting_fails_the_connection() {
    let (mut device, probe, group, mut bob, mut chain) = faulty_alice_and_bob();
    // Pages of one message: the failure is met storing the first, and the step is undone
    // when the next page is asked for.
    device.server.lock().unwrap().page_limit = Some(1);
    probe.fail_reads_of(Some("messages"));
    let m = device.member_writes(group, &mut bob, &mut chain, "hello");
    device.member_writes(group, &mut bob, &mut chain, "again");
    device.push_message(group, &m);
    assert!(!device.core.is_connected(), "the step undone drops it");
    let err = block_on(device.core.connect()).unwrap_err();
    assert_eq!(err.code(), "store");
    assert!(!device.core.is_connected());
    probe.fail_reads_of(None);
    block_on(device.core.connect()).unwrap();
    device.drive();
    assert_eq!(device.shown(), ["hello", "again"]);
}
