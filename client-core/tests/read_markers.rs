#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Unread counts: "3 new" comes from a read marker in the encrypted store, by message number
//! (this device's order of storing, which the server cannot move), so it survives a restart,
//! never moves back, counts a message stored late, forgets a deleted one, and a post of one's
//! own reads the group.

mod support;

use confide_client_core::Event;
use confide_client_core::store::{Batch, ClientStore};
use confide_protocol::GroupId;
use confide_protocol::group_log::OpBody;
use pollster::block_on;
use support::{Device, Member};
use zeroize::Zeroizing;

fn unread(device: &Device, group: GroupId) -> usize {
    block_on(device.core.groups())
        .into_iter()
        .find(|g| g.group == group)
        .unwrap()
        .unread
}

/// Numbers of the messages stored in `group`, oldest first.
fn numbers(device: &Device, group: GroupId) -> Vec<u64> {
    let page = block_on(device.core.history(group, None, 100)).unwrap();
    page.into_iter().map(|m| m.number).collect()
}

#[test]
fn messages_from_others_are_unread_until_marked_and_the_count_survives_a_restart() {
    let mut device = Device::new();
    let mut bob = Member::new(2, "Bob");
    let group = device.group_with(&[&bob]);
    let (mut chain, item) = device.member_key(group, &mut bob);
    device.push_inbox(&[item]);
    for words in ["one", "two", "three"] {
        let m = device.member_writes(group, &mut bob, &mut chain, words);
        device.push_message(group, &m);
    }
    assert_eq!(unread(&device, group), 3);
    let numbers = numbers(&device, group);

    block_on(device.core.mark_read(group, numbers[1])).unwrap();
    assert_eq!(unread(&device, group), 1);
    assert!(
        device.events.lock().unwrap().iter().any(|(e, _)| *e
            == Event::Read {
                group,
                number: numbers[1]
            }),
        "other views of the store are told"
    );

    // An older marker changes nothing; one past the newest message stops at it.
    block_on(device.core.mark_read(group, numbers[0])).unwrap();
    assert_eq!(unread(&device, group), 1);

    let mut device = device.restart(5);
    assert_eq!(unread(&device, group), 1, "the marker is kept in the store");
    block_on(device.core.mark_read(group, u64::MAX)).unwrap();
    assert_eq!(unread(&device, group), 0);
    block_on(device.core.connect()).unwrap();
    let m = device.member_writes(group, &mut bob, &mut chain, "four");
    device.push_message(group, &m);
    assert_eq!(
        unread(&device, group),
        1,
        "a huge number read only what was there"
    );
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
    assert!(
        device
            .events
            .lock()
            .unwrap()
            .iter()
            .any(|(e, _)| matches!(e, Event::Read { group: g, .. } if *g == group)),
        "other tabs are told a post read the group"
    );
}

#[test]
fn a_message_stored_late_is_new_even_behind_the_marker_by_the_servers_order() {
    let mut device = Device::new();
    let mut bob = Member::new(2, "Bob");
    let mut carol = Member::new(4, "Carol");
    let group = device.group_with(&[&bob, &carol]);
    // Bob's message comes first in the server's order, but his key has not: it waits.
    let (mut bob_chain, bob_key) = device.member_key(group, &mut bob);
    let early = device.member_writes(group, &mut bob, &mut bob_chain, "written first");
    device.push_message(group, &early);
    device.member_posts(group, &mut carol, "written second");
    assert_eq!(unread(&device, group), 1);
    let newest = *numbers(&device, group).last().unwrap();
    block_on(device.core.mark_read(group, newest)).unwrap();
    assert_eq!(unread(&device, group), 0);

    device.push_inbox(&[bob_key]);
    assert_eq!(numbers(&device, group).len(), 2, "Bob's message was stored");
    assert_eq!(unread(&device, group), 1, "and it is new");
}

#[test]
fn a_deleted_message_is_no_longer_counted() {
    let mut device = Device::new();
    let mut bob = Member::new(2, "Bob");
    let group = device.group_with(&[&bob]);
    let (mut chain, item) = device.member_key(group, &mut bob);
    device.push_inbox(&[item]);
    let harmful = device.member_writes(group, &mut bob, &mut chain, "something harmful");
    device.push_message(group, &harmful);
    let kind = device.member_writes(group, &mut bob, &mut chain, "something kind");
    device.push_message(group, &kind);
    assert_eq!(unread(&device, group), 2);

    device.append(
        group,
        OpBody::DeleteMessages {
            messages: vec![harmful.envelope.message_id()],
        },
    );
    assert_eq!(unread(&device, group), 1);
    let device = device.restart(5);
    assert_eq!(unread(&device, group), 1);
}

#[test]
fn a_store_from_before_read_markers_counts_what_it_held_as_read() {
    let mut device = Device::new();
    let mut bob = Member::new(2, "Bob");
    let group = device.group_with(&[&bob]);
    let (mut chain, item) = device.member_key(group, &mut bob);
    device.push_inbox(&[item]);
    let m = device.member_writes(group, &mut bob, &mut chain, "from before the update");
    device.push_message(group, &m);
    assert_eq!(unread(&device, group), 1);

    // The group's record as an older version wrote it: no marker, no count.
    let stored = block_on(device.store.get("groups", group.as_bytes()))
        .unwrap()
        .unwrap();
    let mut meta: serde_json::Value = serde_json::from_slice(&stored).unwrap();
    let fields = meta.as_object_mut().unwrap();
    assert!(fields.remove("read").is_some() && fields.remove("unread").is_some());
    let mut batch = Batch::new();
    batch.put(
        "groups",
        group.as_bytes(),
        Zeroizing::new(serde_json::to_vec(&meta).unwrap()),
    );
    block_on(device.store.commit(batch)).unwrap();
    let mut device = device.restart(5);
    assert_eq!(unread(&device, group), 0);
    block_on(device.core.connect()).unwrap();
    let m = device.member_writes(group, &mut bob, &mut chain, "after the update");
    device.push_message(group, &m);
    assert_eq!(unread(&device, group), 1);
}

// §11.11: numbers are kept 64 to a store value; a count that spans several values, and the
// way from a number to its message, hold across them.
#[test]
fn unread_counts_and_numbers_hold_past_the_first_sixty_four_messages() {
    let (mut device, group, mut bob, mut chain) = support::alice_and_bob();
    let mut seqs = Vec::new();
    for i in 0..140 {
        let m = device.member_writes(group, &mut bob, &mut chain, &format!("message {i}"));
        device.push_message(group, &m);
        seqs.push(m.seq);
    }
    let shown: Vec<u64> = block_on(device.core.history(group, None, 200))
        .unwrap()
        .into_iter()
        .map(|m| m.number)
        .collect();
    assert_eq!(shown, (1..=140).collect::<Vec<u64>>());
    for number in [1u64, 63, 64, 65, 128, 140] {
        assert_eq!(
            block_on(device.core.seq_of_number(group, number)).unwrap(),
            Some(seqs[number as usize - 1]),
            "number {number}"
        );
    }
    assert_eq!(
        block_on(device.core.seq_of_number(group, 141)).unwrap(),
        None
    );
    // Read up to 3, 63, then 130: the rest is counted across the values it spans.
    for (read, left) in [(3u64, 137), (63, 77), (130, 10)] {
        block_on(device.core.mark_read(group, read)).unwrap();
        assert_eq!(unread(&device, group), left, "read up to {read}");
    }
}

// §11.11: a store written before kept one key per number (`number_seq`); its numbers still
// lead to their messages and count, beside the ones given since.
#[test]
fn numbers_a_store_written_before_kept_one_to_a_key_still_count() {
    let (mut device, group, mut bob, mut chain) = support::alice_and_bob();
    let mut seqs = Vec::new();
    for words in ["one", "two", "three"] {
        let m = device.member_writes(group, &mut bob, &mut chain, words);
        device.push_message(group, &m);
        seqs.push(m.seq);
    }
    // As an older version wrote them: one key per number, none in `numbers`.
    let mut old = Batch::new();
    old.remove("numbers", &support::at_seq(group, 0));
    for (number, seq) in (1u64..).zip(&seqs) {
        old.put(
            "number_seq",
            &support::at_seq(group, number),
            Zeroizing::new(serde_json::to_vec(seq).unwrap()),
        );
    }
    block_on(device.store.commit(old)).unwrap();
    let mut device = device.restart(5);
    block_on(device.core.connect()).unwrap();
    assert_eq!(
        block_on(device.core.seq_of_number(group, 2)).unwrap(),
        Some(seqs[1])
    );
    let m = device.member_writes(group, &mut bob, &mut chain, "four");
    device.push_message(group, &m);
    assert_eq!(
        block_on(device.core.seq_of_number(group, 4)).unwrap(),
        Some(m.seq)
    );
    block_on(device.core.mark_read(group, 1)).unwrap();
    assert_eq!(unread(&device, group), 3, "two kept apart and one since");
}

// §11.11: a damaged value of the number index (64 numbers share one) reads as empty: the
// group goes on receiving and counting, and only those numbers lose their way to their
// messages.
#[test]
fn a_damaged_value_of_the_number_index_stops_nothing() {
    let (mut device, group, mut bob, mut chain) = support::alice_and_bob();
    for words in ["one", "two"] {
        let m = device.member_writes(group, &mut bob, &mut chain, words);
        device.push_message(group, &m);
    }
    let mut damage = Batch::new();
    damage.put(
        "numbers",
        &support::at_seq(group, 0),
        Zeroizing::new(b"not a run".to_vec()),
    );
    block_on(device.store.commit(damage)).unwrap();
    assert_eq!(block_on(device.core.seq_of_number(group, 1)).unwrap(), None);
    let m = device.member_writes(group, &mut bob, &mut chain, "three");
    device.push_message(group, &m);
    assert_eq!(numbers(&device, group), [1, 2, 3], "receiving went on");
    assert_eq!(
        block_on(device.core.seq_of_number(group, 3)).unwrap(),
        Some(m.seq)
    );
    block_on(device.core.mark_read(group, 1)).unwrap();
    assert_eq!(
        unread(&device, group),
        1,
        "only the number given since counts"
    );
}

#[test]
fn marking_an_unknown_group_read_is_refused() {
    let mut device = Device::new();
    let err = block_on(device.core.mark_read(GroupId([9; 16]), 1)).unwrap_err();
    assert_eq!(err.code(), "unknown_group");
}
