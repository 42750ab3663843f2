#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Delivery order does not matter (issue 14): whatever order live frames reach a device in,
//! duplicated or not, with an honest server answering the syncs the device asks for, it ends in
//! the same state and shows every message exactly once.
//!
//! A real history is made once, with real cores on the in-memory relay of `confide-test-relay`:
//! Alice creates a group, Bob joins, and from there Bob's device only listens. Carol joins and
//! talks with Alice; Dave joins (a new epoch: new sender keys) and everyone talks; Alice removes
//! Carol (another epoch) and deletes Carol's last message for everyone; Alice and Dave talk on.
//! The frames the relay pushed to Bob's device meanwhile (ops, sealed sender keys in his inbox,
//! messages) are recorded.
//!
//! Each case then starts a fresh copy of Bob's device from his store as it was when he joined,
//! connected to a relay holding what the server held then, which is switched to the final
//! history at once (so every sync the device asks for is answered with everything). The case
//! delivers the recorded frames in the order proptest generated — any permutation, with
//! duplicates, from nearly in order to shuffled — and compares the outcome with delivery in the
//! recorded order: the same group log, members and history, each message shown once, none
//! missing, none shown after it was deleted, and nothing refused.
//!
//! `PROPTEST_CASES` raises the number of cases (64 by default, a few seconds in debug).

use std::collections::{BTreeMap, BTreeSet};

use confide_client_core::{
    ChatMessage, Event, GroupInfo, MemberInfo, MemoryStore, ModerationEntry,
};
use confide_protocol::frames::ServerFrame;
use confide_protocol::group_log::OpBody;
use confide_protocol::{GroupId, MessageId};
use confide_test_relay::{Clock, Device, Records, SharedRelay, T0, group_of, invite_link, settle};
use pollster::block_on;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// Cases run without `PROPTEST_CASES`.
const DEFAULT_CASES: u32 = 64;

/// What Carol says; the last one is deleted for everyone after she is removed.
const CAROL: [&str; 3] = [
    "Hi, I'm new. Is this the Tuesday group?",
    "It helps to hear I'm not the only one.",
    "I shouldn't have said that last bit.",
];

/// The history Bob's device was sent, and what the relay held before and after it.
struct History {
    group: GroupId,
    /// Bob's store just after he joined, before any of the history.
    bob_at_join: confide_client_core::memory::Snapshot,
    /// What the relay held then.
    relay_at_join: Records,
    /// What it holds at the end.
    relay_at_end: Records,
    /// The frames the relay pushed to Bob's device, in order.
    frames: Vec<ServerFrame>,
    /// The texts of the messages Bob should end up with, in the group's order.
    kept: Vec<&'static str>,
}

/// One person says something, and everyone online settles.
async fn say(devices: &mut [Device], who: usize, group: GroupId, text: &'static str) {
    devices[who]
        .core
        .send_text(group, text.into(), None)
        .await
        .unwrap();
    devices[who].core.after_input().await;
    settle(devices).await;
}

/// Makes the history once; see the module docs.
async fn make_history() -> History {
    let (relay, devices, group) = group_of(&["Alice", "Bob"]).await;
    let [alice, mut bob] = <[Device; 2]>::try_from(devices).ok().unwrap();
    let bob_at_join = bob.store.snapshot();
    let relay_at_join = relay.lock().records();

    // Bob's device stays connected but is never settled: what the relay pushes to it waits.
    let carol = Device::start(&relay, 3, "Carol").await;
    let dave = Device::start(&relay, 4, "Dave").await;
    let mut others = vec![alice, carol, dave];
    let (a, c, d) = (0, 1, 2);
    let link = invite_link(&mut others[a], group).await;
    settle(&mut others).await;

    others[c].join(&link).await;
    settle(&mut others).await;
    say(&mut others, a, group, "Welcome, Carol. Bob is here too.").await;
    say(&mut others, c, group, CAROL[0]).await;
    say(&mut others, a, group, "It is. Take your time.").await;
    say(&mut others, c, group, CAROL[1]).await;

    others[d].join(&link).await;
    settle(&mut others).await;
    say(&mut others, d, group, "Dave here, sorry I'm late.").await;
    say(&mut others, a, group, "Welcome, Dave.").await;
    say(&mut others, c, group, CAROL[2]).await;
    say(&mut others, d, group, "No worries, Carol.").await;

    let carol_user = others[c].user;
    others[a]
        .core
        .append(
            group,
            OpBody::Remove {
                user: carol_user,
                ban: false,
            },
        )
        .await
        .unwrap();
    others[a].core.after_input().await;
    settle(&mut others).await;
    let deleted = others[a]
        .core
        .delete_recent_of(group, carol_user, 1)
        .await
        .unwrap();
    assert_eq!(deleted, 1, "Alice deletes Carol's last message");
    others[a].core.after_input().await;
    settle(&mut others).await;
    say(&mut others, a, group, "Carol has left the group.").await;
    say(&mut others, d, group, "Understood.").await;

    let frames = bob.core.link_mut().unwrap().take_frames();
    let relay_at_end = relay.lock().records();
    History {
        group,
        bob_at_join,
        relay_at_join,
        relay_at_end,
        frames,
        kept: vec![
            "Welcome, Carol. Bob is here too.",
            CAROL[0],
            "It is. Take your time.",
            CAROL[1],
            "Dave here, sorry I'm late.",
            "Welcome, Dave.",
            "No worries, Carol.",
            "Carol has left the group.",
            "Understood.",
        ],
    }
}

/// Where a delivery left Bob's device.
#[derive(Debug)]
struct Outcome {
    log: Vec<ModerationEntry>,
    groups: Vec<GroupInfo>,
    members: Vec<MemberInfo>,
    /// The history, oldest first.
    history: Vec<ChatMessage>,
    events: Vec<Event>,
}

/// A fresh copy of Bob's device as he joined, handed `frames[i]` for every `i` of `schedule`
/// in turn (each followed by the work a client does after any input, and by whatever the relay
/// answered meanwhile), on a relay that serves the whole history.
async fn deliver(history: &History, schedule: &[usize]) -> Outcome {
    // A fixed clock after the history: every delivery sees the same time.
    let relay = SharedRelay::new(Clock::fixed(T0 + 3_600_000));
    relay.lock().replace_records(history.relay_at_join.clone());
    let store = MemoryStore::from_snapshot(&history.bob_at_join);
    let mut bob = Device::open(&relay, store, "Bob", 200).await;
    relay.lock().replace_records(history.relay_at_end.clone());
    for &i in schedule {
        bob.core.receive(history.frames[i].clone()).await;
        bob.core.after_input().await;
        settle(std::slice::from_mut(&mut bob)).await;
    }
    let group = history.group;
    Outcome {
        log: bob.core.moderation_log(group).await.unwrap(),
        groups: bob.core.groups().await,
        members: bob.core.members(group).unwrap(),
        history: bob.core.history(group, None, 1_000).await.unwrap(),
        events: bob.events.all(),
    }
}

/// A message as history shows it, without the number this device gave it: numbers follow the
/// order messages became readable here, which delivery order may change.
fn unnumbered(messages: &[ChatMessage]) -> Vec<ChatMessage> {
    messages
        .iter()
        .map(|m| {
            let mut m = m.clone();
            m.number = 0;
            m
        })
        .collect()
}

/// Checks `outcome` against the in-order delivery; see the module docs.
fn check(expected: &Outcome, outcome: &Outcome) -> Result<(), TestCaseError> {
    prop_assert_eq!(&outcome.log, &expected.log, "the group log");
    prop_assert_eq!(&outcome.groups, &expected.groups, "the group");
    prop_assert_eq!(&outcome.members, &expected.members, "the members");
    prop_assert_eq!(
        unnumbered(&outcome.history),
        unnumbered(&expected.history),
        "the history"
    );

    // What the application was shown, in order: messages, and the log's changes.
    let kept: BTreeSet<MessageId> = outcome.history.iter().map(|m| m.id).collect();
    let mut shown: BTreeMap<MessageId, usize> = BTreeMap::new();
    let mut deleted: BTreeSet<MessageId> = BTreeSet::new();
    let mut ops_seen: Vec<u64> = Vec::new();
    for event in &outcome.events {
        match event {
            Event::Message(m) => {
                prop_assert!(
                    !deleted.contains(&m.id),
                    "message #{} shown after it was deleted",
                    m.seq.0
                );
                *shown.entry(m.id).or_default() += 1;
            }
            Event::MessagesDeleted { messages, .. } => deleted.extend(messages),
            Event::GroupChanged(change) => ops_seen.push(change.op_seq),
            Event::MessageRejected(r) | Event::GroupRejected(r) | Event::OrderWarning(r) => {
                prop_assert!(false, "an honest history was refused: {:?}", r);
            }
            _ => {}
        }
    }
    for id in &kept {
        prop_assert_eq!(shown.get(id), Some(&1), "times message {} was shown", id);
    }
    for (id, times) in &shown {
        prop_assert_eq!(*times, 1, "times message {} was shown", id);
        prop_assert!(
            kept.contains(id) || deleted.contains(id),
            "message {} was shown, is not in the history, and was never deleted",
            id
        );
    }
    // Every op after Bob's join, once each and in order.
    let joined_at = bobs_join(&expected.log);
    let after_join: Vec<u64> = outcome
        .log
        .iter()
        .map(|e| e.op_seq)
        .filter(|seq| *seq > joined_at)
        .collect();
    prop_assert_eq!(ops_seen, after_join, "the log's changes as shown");

    // Numbers name one message each.
    let numbers: BTreeSet<u64> = outcome.history.iter().map(|m| m.number).collect();
    prop_assert_eq!(numbers.len(), outcome.history.len(), "numbers are distinct");
    Ok(())
}

/// The op seq of Bob's own join (the ops up to it were in his store already).
fn bobs_join(log: &[ModerationEntry]) -> u64 {
    log.iter()
        .find(|e| e.action == "join" && e.author_name.as_deref() == Some("Bob"))
        .map(|e| e.op_seq)
        .unwrap()
}

/// Delivery schedules over `n` frames: each frame once, perhaps twice, each copy delayed by a
/// random number of places. The spread of the delays goes from neighbours swapping to any
/// permutation; shrinking takes a failing schedule towards the recorded order.
fn schedules(n: usize) -> impl Strategy<Value = Vec<usize>> {
    prop_oneof![Just(2usize), Just(6), Just(2 * n)]
        .prop_flat_map(move |spread| vec((0..spread, proptest::option::of(0..spread)), n))
        .prop_map(|delays| {
            let mut copies: Vec<(usize, usize, usize)> = Vec::new();
            for (frame, (first, again)) in delays.into_iter().enumerate() {
                copies.push((frame + first, 0, frame));
                if let Some(again) = again {
                    copies.push((frame + again, 1, frame));
                }
            }
            copies.sort();
            copies.into_iter().map(|(_, _, frame)| frame).collect()
        })
}

#[test]
fn any_delivery_order_ends_in_the_same_state_and_shows_each_message_once() {
    let history = block_on(make_history());
    let n = history.frames.len();
    let count = |kind: fn(&ServerFrame) -> bool| history.frames.iter().filter(|f| kind(f)).count();
    assert!(count(|f| matches!(f, ServerFrame::Op { .. })) >= 4, "ops");
    assert!(
        count(|f| matches!(f, ServerFrame::Inbox { .. })) >= 5,
        "sender keys"
    );
    assert!(
        count(|f| matches!(f, ServerFrame::Message { .. })) >= 10,
        "messages"
    );

    // The recorded order: Bob reads everyone's words once, and keeps all but the deleted one.
    let in_order: Vec<usize> = (0..n).collect();
    let expected = block_on(deliver(&history, &in_order));
    let texts: Vec<&str> = expected.history.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, history.kept, "Bob's history after in-order delivery");
    check(&expected, &expected).unwrap();

    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&schedules(n), |schedule| {
        let outcome = block_on(deliver(&history, &schedule));
        check(&expected, &outcome)
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}
