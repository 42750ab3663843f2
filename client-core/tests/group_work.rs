#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! PROTOCOL.md §6.9, content warnings as they arrive: a moderator's `add_warning` that comes
//! before its message, and one from someone who is not a moderator.

mod support;

use confide_client_core::Event;
use confide_protocol::envelope::{ContentBody, MessageContent};
use confide_protocol::group_log::Role;
use confide_protocol::{GroupId, MessageId};
use pollster::block_on;
use support::{Device, Member, text};

fn add_warning(message: MessageId, warnings: Vec<u16>, device: &Device) -> MessageContent {
    MessageContent {
        sent_at: device.now(),
        seen_seq: None,
        body: ContentBody::AddWarning { message, warnings },
    }
}

fn warnings_of(device: &Device, group: GroupId, id: MessageId) -> Vec<u16> {
    block_on(device.core.history(group, None, 100))
        .unwrap()
        .into_iter()
        .find(|m| m.id == id)
        .unwrap()
        .warnings
}

#[test]
fn a_warning_that_comes_before_its_message_is_applied_when_the_message_arrives() {
    let mut device = Device::new();
    let mut bob = Member::new(2, "Bob");
    let mut carol = Member::new(4, "Carol");
    let group = device.group_with(&[&bob, &carol]);
    device.set_role(group, carol.user, Role::CoFacilitator);
    let (mut bob_chain, bob_key) = device.member_key(group, &mut bob);
    let (mut carol_chain, carol_key) = device.member_key(group, &mut carol);
    device.push_inbox(&[bob_key, carol_key]);
    device.clear();

    // Bob writes; Carol (a co-facilitator) warns about it; the server stores the warning first.
    let epoch = device.state(group).epoch_ref();
    let envelope = bob.envelope(
        &mut bob_chain,
        group,
        epoch,
        &text("hard news", device.now()),
    );
    let id = envelope.message_id();
    let warning = device.member_says(
        group,
        &mut carol,
        &mut carol_chain,
        &add_warning(id, vec![3, 1], &device),
    );
    device.push_message(group, &warning);
    device.deliver(group, envelope);
    // Ids the group defines no topics for still count.
    assert_eq!(warnings_of(&device, group, id), vec![1, 3]);
    let shown = device.events_as(|e| match e {
        Event::Message(m) => Some(m.warnings),
        _ => None,
    });
    assert_eq!(
        shown,
        vec![vec![1, 3]],
        "shown with its warnings from the start"
    );

    // Bob, a member, "warns" about his own message: ignored.
    let ignored = device.member_says(
        group,
        &mut bob,
        &mut bob_chain,
        &add_warning(id, vec![7], &device),
    );
    device.push_message(group, &ignored);
    assert_eq!(warnings_of(&device, group, id), vec![1, 3]);

    // Carol adds another: the union, told as such.
    device.clear();
    let more = device.member_says(
        group,
        &mut carol,
        &mut carol_chain,
        &add_warning(id, vec![2], &device),
    );
    device.push_message(group, &more);
    assert_eq!(warnings_of(&device, group, id), vec![1, 2, 3]);
    let told = device.events_as(|e| match e {
        Event::WarningAdded {
            message, warnings, ..
        } => Some((message, warnings)),
        _ => None,
    });
    assert_eq!(told, vec![(id, vec![1, 2, 3])]);

    // Hidden here once the person hides one of them.
    block_on(device.core.set_hidden_topics(group, vec![2])).unwrap();
    let m = block_on(device.core.history(group, None, 100))
        .unwrap()
        .into_iter()
        .find(|m| m.id == id)
        .unwrap();
    assert!(m.hidden);
}
