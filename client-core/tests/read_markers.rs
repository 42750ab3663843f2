#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Unread counts: "3 new" comes from a read marker in the encrypted store, so it survives a
//! restart, never moves back, and a post of one's own reads the group.

mod support;

use confide_client_core::Event;
use confide_protocol::GroupId;
use pollster::block_on;
use support::{Device, Member};

fn unread(device: &Device, group: GroupId) -> usize {
    block_on(device.core.groups())
        .into_iter()
        .find(|g| g.group == group)
        .unwrap()
        .unread
}

#[test]
fn messages_from_others_are_unread_until_marked_and_the_count_survives_a_restart() {
    let mut device = Device::new();
    let mut bob = Member::new(2, "Bob");
    let group = device.group_with(&[&bob]);
    let (mut chain, item) = device.member_key(group, &mut bob);
    device.push_inbox(&[item]);
    let mut seqs = Vec::new();
    for words in ["one", "two", "three"] {
        let m = device.member_writes(group, &mut bob, &mut chain, words);
        seqs.push(m.seq.0);
        device.push_message(group, &m);
    }
    assert_eq!(unread(&device, group), 3);

    block_on(device.core.mark_read(group, seqs[1])).unwrap();
    assert_eq!(unread(&device, group), 1);
    assert!(
        device.events.lock().unwrap().iter().any(|(e, _)| *e
            == Event::Read {
                group,
                seq: seqs[1]
            }),
        "other views of the store are told"
    );

    // An older marker changes nothing.
    block_on(device.core.mark_read(group, seqs[0])).unwrap();
    assert_eq!(unread(&device, group), 1);

    let device = device.restart(5);
    assert_eq!(unread(&device, group), 1, "the marker is kept in the store");
}

#[test]
fn writing_in_a_group_reads_it() {
    let mut device = Device::new();
    let mut bob = Member::new(2, "Bob");
    let group = device.group_with(&[&bob]);
    let (mut chain, item) = device.member_key(group, &mut bob);
    device.push_inbox(&[item]);
    let m = device.member_writes(group, &mut bob, &mut chain, "are you there?");
    device.push_message(group, &m);
    assert_eq!(unread(&device, group), 1);

    device.send(group, "yes, here").unwrap();
    assert_eq!(unread(&device, group), 0);
}

#[test]
fn marking_an_unknown_group_read_is_refused() {
    let mut device = Device::new();
    let err = block_on(device.core.mark_read(GroupId([9; 16]), 1)).unwrap_err();
    assert_eq!(err.code(), "unknown_group");
}
