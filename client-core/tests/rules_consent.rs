#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! PROTOCOL.md §11.7 (consent) and §11.8 (private conversations): groups the user did not ask
//! for are held, shown nothing of, and sent nothing in, until the user accepts them.

mod support;

use confide_client_core::Event;
use confide_protocol::frames::ClientFrame;
use confide_protocol::group_log::OpBody;
use pollster::block_on;
use support::{Device, Member};

fn invited(device: &Device) -> Vec<bool> {
    device.events_as(|e| match e {
        Event::Invited { private, .. } => Some(private),
        _ => None,
    })
}

fn waiting(device: &Device) -> Vec<usize> {
    device.events_as(|e| match e {
        Event::MessageWaiting { waiting, .. } => Some(waiting),
        _ => None,
    })
}

// §11.7: a group someone else added this device to shows nothing and sends nothing until the
// user accepts it; then its kept messages are shown. §11.8: two people only is a private one.
#[test]
fn a_group_the_user_did_not_ask_for_is_held_until_accepted() {
    let mut device = Device::new();
    let mut bob = Member::new(2, "Bob");
    let group = device.invited_by(&bob, 5);
    let (mut chain, item) = device.member_key(group, &mut bob);
    device.member_writes(group, &mut bob, &mut chain, "psst");
    device.sync().unwrap();
    device.push_inbox(&[item]);
    assert_eq!(
        invited(&device),
        [true],
        "invited, as a private conversation"
    );
    assert!(device.shown().is_empty());
    assert_eq!(waiting(&device), [1]);
    assert!(!device.sent().iter().any(|f| matches!(
        f,
        ClientFrame::Post { .. } | ClientFrame::SendSealed { .. } | ClientFrame::AppendOp { .. }
    )));
    block_on(device.core.accept_group(group)).unwrap();
    device.drive();
    assert_eq!(device.shown(), ["psst"]);
}

// §11.7 (step 5 of §11.2): messages signed by keys the log does not list are not counted.
#[test]
fn a_server_cannot_inflate_the_count_of_messages_waiting() {
    let mut device = Device::new();
    let mut bob = Member::new(2, "Bob");
    let mut mallory = Member::new(6, "Mallory");
    let group = device.invited_by(&bob, 5);
    let mut chain = bob.chain();
    device.member_writes(group, &mut bob, &mut chain, "real");
    let mut fake = mallory.chain();
    for _ in 0..3 {
        device.member_writes(group, &mut mallory, &mut fake, "fake");
    }
    device.sync().unwrap();
    assert_eq!(waiting(&device), [1]);
    let info = block_on(device.core.groups())
        .into_iter()
        .find(|g| g.group == group)
        .unwrap();
    assert_eq!(info.waiting, 1);
}

// §11.8: a group where anyone else was ever a member is not a private conversation.
#[test]
fn a_two_member_group_that_once_had_a_third_is_not_called_private() {
    let mut device = Device::new();
    let bob = Member::new(2, "Bob");
    let carol = Member::new(4, "Carol");
    let group = device.foreign_group(&carol, 5);
    device.member_adds(group, &carol, bob.entry());
    device.member_op(
        group,
        &carol,
        OpBody::SetRole {
            user: bob.user,
            role: confide_protocol::group_log::Role::Facilitator,
        },
    );
    device.member_op(group, &carol, OpBody::Leave {});
    device.member_adds(group, &bob, device.alice.entry());
    device.sync().unwrap();
    assert_eq!(invited(&device), [false]);
}

// §11.7: removal withdraws consent: put back without asking, the device is asked again, and
// what was said in between is not shown until then.
#[test]
fn a_device_put_back_without_asking_is_asked_again() {
    let mut device = Device::new();
    let mut bob = Member::new(2, "Bob");
    let group = device.invited_by(&bob, 5);
    device.sync().unwrap();
    block_on(device.core.accept_group(group)).unwrap();
    let (mut chain, item) = device.member_key(group, &mut bob);
    device.push_inbox(&[item]);
    let m = device.member_writes(group, &mut bob, &mut chain, "while a member");
    device.push_message(group, &m);
    device.member_op(
        group,
        &bob,
        OpBody::Remove {
            user: support::ALICE,
            ban: false,
        },
    );
    device.member_adds(group, &bob, device.alice.entry());
    let (mut chain, item) = device.member_key(group, &mut bob);
    device.member_writes(group, &mut bob, &mut chain, "after");
    device.clear();
    device.sync().unwrap();
    device.push_inbox(&[item]);
    assert_eq!(invited(&device).len(), 1);
    assert!(device.shown().is_empty());
    assert_eq!(device.history(group), ["while a member"]);
    block_on(device.core.accept_group(group)).unwrap();
    device.drive();
    assert_eq!(device.shown(), ["after"]);
}

// §11.7 with §9.6: a group that already holds more messages than one sync page is adopted
// too. Its first pages never say `complete` (messages are left), so the log counts as fetched
// once the ops stop coming; and a sender key that came before the group did is kept for it.
#[test]
fn a_group_with_more_than_a_page_of_messages_is_adopted() {
    let mut device = Device::new();
    device.server.lock().unwrap().page_limit = Some(2);
    let mut bob = Member::new(2, "Bob");
    let group = device.invited_by(&bob, 5);
    let (mut chain, item) = device.member_key(group, &mut bob);
    for words in ["one", "two", "three"] {
        device.member_writes(group, &mut bob, &mut chain, words);
    }
    // The key arrives first: kept until the group is known.
    device.push_inbox(&[item]);
    device.sync().unwrap();
    assert_eq!(invited(&device), [true]);
    assert_eq!(waiting(&device).last(), Some(&3));
    block_on(device.core.accept_group(group)).unwrap();
    device.drive();
    assert_eq!(device.shown(), ["one", "two", "three"]);
}

// §11.7: "removal withdraws consent" keeps showing what was said while the user was in the
// group — only if the user ever accepted it. A group someone made, added this device to,
// sealed it a key and removed it from again was never accepted: nothing of it is shown, not
// a message parked before the removal nor one pushed after it.
#[test]
fn a_removal_from_a_group_never_accepted_shows_nothing_of_it() {
    let mut device = Device::new();
    let mut mallory = Member::new(6, "Mallory");
    let group = device.invited_by(&mallory, 5);
    device.sync().unwrap();
    assert_eq!(invited(&device).len(), 1);
    let (mut chain, item) = device.member_key(group, &mut mallory);
    let before = device.member_writes(group, &mut mallory, &mut chain, "parked before");
    device.push_message(group, &before);
    let (op, seq) = device.member_op(
        group,
        &mallory,
        OpBody::Remove {
            user: support::ALICE,
            ban: false,
        },
    );
    let after = {
        // Written in the epoch this device was in, stored after its removal.
        let mut log = device.log(group);
        log.ops.pop();
        let envelope = mallory.envelope(
            &mut chain,
            group,
            log.state().epoch_ref(),
            &support::text("pushed after", device.now()),
        );
        device.store_message(group, envelope)
    };
    device.push_inbox(&[item]);
    device.push_op(group, op, seq);
    device.push_message(group, &after);
    device.sync().unwrap();
    assert!(device.shown().is_empty(), "{:?}", device.shown());
    assert!(device.history(group).is_empty());
}
