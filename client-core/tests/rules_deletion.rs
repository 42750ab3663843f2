#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! PROTOCOL.md §11.4, deletion and retention (and §11.2 step 2, tombstones).

mod support;

use confide_client_core::Event;
use confide_protocol::Timestamp;
use confide_protocol::group_log::{OpBody, Role};
use pollster::block_on;
use support::{alice_and_bob, at_seq};

const DAY_MS: u64 = 86_400_000;

// §11.4: `delete_messages` removes the stored copy and its evidence, and the user is told.
#[test]
fn a_deleted_message_is_removed_with_its_evidence_and_reported() {
    let (mut device, group, mut bob, mut chain) = alice_and_bob();
    let m = device.member_writes(group, &mut bob, &mut chain, "regret");
    device.push_message(group, &m);
    let id = m.envelope.message_id();
    device.append(group, OpBody::DeleteMessages { messages: vec![id] });
    assert!(device.history(group).is_empty());
    let snapshot = device.store.snapshot();
    // The record goes, and the report evidence it carried with it.
    assert!(snapshot.get("messages", &at_seq(group, 1)).is_none());
    assert!(
        device
            .events()
            .iter()
            .any(|e| matches!(e, Event::MessagesDeleted { messages, .. } if messages == &[id]))
    );
}

// §11.4: a store written before records carried their evidence kept it in a tree of its own;
// deleting such a message removes that evidence (it holds the text) with the record.
#[test]
fn a_deletion_removes_evidence_a_store_written_before_kept_apart() {
    let (mut device, group, mut bob, mut chain) = alice_and_bob();
    let m = device.member_writes(group, &mut bob, &mut chain, "kept the old way");
    device.push_message(group, &m);
    let at = at_seq(group, 1);
    support::keep_evidence_apart(&device, group, m.seq);
    let mut device = device.restart(5);
    block_on(device.core.connect()).unwrap();
    let id = m.envelope.message_id();
    device.append(group, OpBody::DeleteMessages { messages: vec![id] });
    let snapshot = device.store.snapshot();
    assert!(snapshot.get("messages", &at).is_none());
    assert!(
        snapshot.get("evidence", &at).is_none(),
        "the old evidence stayed"
    );
}

// §11.4 and §11.2 step 2: a message deleted before it arrives is never shown, however often it
// is stored again.
#[test]
fn a_message_deleted_before_it_arrives_is_never_shown_however_often_it_comes() {
    let (mut device, group, mut bob, mut chain) = alice_and_bob();
    device.set_role(group, bob.user, Role::CoFacilitator);
    let m = device.member_writes(group, &mut bob, &mut chain, "gone");
    let (delete, seq) = device.member_op(
        group,
        &bob,
        OpBody::DeleteMessages {
            messages: vec![m.envelope.message_id()],
        },
    );
    device.push_op(group, delete, seq);
    device.push_message(group, &m);
    // The server forgot the id: Bob stores the same envelope again.
    device.deliver(group, m.envelope.clone());
    assert!(device.shown().is_empty());
    assert!(
        device.rejected().is_empty(),
        "dropped silently: {:?}",
        device.rejected()
    );
    assert!(device.history(group).is_empty());
}

// §11.4 retention: applying `set_retention` deletes stored messages older than the period, by
// the server's `received_at`.
#[test]
fn setting_a_retention_period_deletes_older_messages_at_once() {
    let (mut device, group, mut bob, mut chain) = alice_and_bob();
    let old = device.member_writes(group, &mut bob, &mut chain, "old");
    device.push_message(group, &old);
    device.set_clock(Timestamp(device.now().0 + 2 * DAY_MS));
    let new = device.member_writes(group, &mut bob, &mut chain, "new");
    device.push_message(group, &new);
    device.append(
        group,
        OpBody::SetRetention {
            seconds: Some(86_400),
        },
    );
    assert_eq!(device.history(group), ["new"]);
    assert!(device.events().iter().any(|e| matches!(e, Event::MessagesDeleted { messages, .. } if messages == &[old.envelope.message_id()])));
}

// §11.4 retention: after every full sync, messages past the period are deleted too.
#[test]
fn a_full_sync_deletes_messages_that_have_passed_the_retention_period() {
    let (mut device, group, mut bob, mut chain) = alice_and_bob();
    device.append(
        group,
        OpBody::SetRetention {
            seconds: Some(86_400),
        },
    );
    let m = device.member_writes(group, &mut bob, &mut chain, "fleeting");
    device.push_message(group, &m);
    assert_eq!(device.history(group), ["fleeting"]);
    device.set_clock(Timestamp(device.now().0 + 2 * DAY_MS));
    device.sync().unwrap();
    assert!(device.history(group).is_empty());
}
