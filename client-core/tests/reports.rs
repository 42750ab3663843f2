#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Reporting a received message (PROTOCOL.md §7.1): its evidence, as stored, is checked before
//! it goes to the facilitators.

mod support;

use confide_client_core::store::{Batch, ClientStore as _};
use confide_protocol::envelope::{ContentBody, MessageContent};
use confide_protocol::{GroupId, Seq};
use pollster::block_on;
use support::{
    Device, alice_and_bob, at_seq, keep_evidence_apart, record_and_evidence, record_with_evidence,
};
use zeroize::Zeroizing;

/// Alice's group with Bob, who is a facilitator too, and Bob's message received; returns its
/// position.
fn bobs_message_to_report() -> (Device, GroupId, Seq) {
    let (mut device, group, mut bob, mut chain) = alice_and_bob();
    device.set_role(
        group,
        bob.user,
        confide_protocol::group_log::Role::Facilitator,
    );
    let m = device.member_writes(group, &mut bob, &mut chain, "reported");
    device.push_message(group, &m);
    device.clear();
    (device, group, m.seq)
}

// §7.1: a message's stored evidence, read back, goes to the facilitators as it was.
#[test]
fn a_received_message_is_reported_to_the_facilitators() {
    let (mut device, group, seq) = bobs_message_to_report();
    block_on(device.core.report(group, seq, "spam".into())).unwrap();
    assert!(!device.sealed().is_empty());
}

// §7.1: evidence damaged on disk (its ciphertext length one short, which moves a byte
// into the body and still reads) is refused as damaged, not sent as a report that would fail
// the facilitators' check and make the reporter look like a forger.
#[test]
fn damaged_evidence_is_not_sent_as_a_report() {
    let (mut device, group, seq) = bobs_message_to_report();
    let (json, mut evidence) = record_and_evidence(&device, group, seq);
    // The binary form: form byte, header, franking tag, signature, franking key, then the
    // ciphertext's length (u32, big-endian).
    let len_at = 1 + confide_protocol::envelope::HEADER_LEN + 32 + 64 + 32;
    let len = u32::from_be_bytes(evidence[len_at..len_at + 4].try_into().unwrap());
    evidence[len_at..len_at + 4].copy_from_slice(&(len - 1).to_be_bytes());
    let mut damage = Batch::new();
    damage.put(
        "messages",
        &at_seq(group, seq.0),
        Zeroizing::new(record_with_evidence(&json, &evidence)),
    );
    block_on(device.store.commit(damage)).unwrap();
    let e = block_on(device.core.report(group, seq, "spam".into())).unwrap_err();
    assert_eq!(e.code(), "store", "{e}");
    assert!(device.sealed().is_empty(), "a report was sent");
}

// §6.9, §7.1: a warning a moderator adds to a message after it arrived rewrites the message's
// record; the message can still be reported, with the evidence it arrived with.
#[test]
fn a_message_warned_about_after_it_arrived_can_still_be_reported() {
    let (mut device, group, mut bob, mut chain) = alice_and_bob();
    device.set_role(
        group,
        bob.user,
        confide_protocol::group_log::Role::Facilitator,
    );
    let m = device.member_writes(group, &mut bob, &mut chain, "reported after a warning");
    device.push_message(group, &m);
    let (_, evidence) = record_and_evidence(&device, group, m.seq);
    let warning = MessageContent {
        sent_at: device.now(),
        seen_seq: None,
        body: ContentBody::AddWarning {
            message: m.envelope.message_id(),
            warnings: vec![2],
        },
    };
    let w = device.member_says(group, &mut bob, &mut chain, &warning);
    device.push_message(group, &w);
    let warned = block_on(device.core.history(group, None, 10)).unwrap();
    assert_eq!(warned[0].warnings, vec![2], "the warning was not applied");
    assert_eq!(record_and_evidence(&device, group, m.seq).1, evidence);
    device.clear();
    block_on(device.core.report(group, m.seq, "harmful".into())).unwrap();
    assert!(!device.sealed().is_empty(), "no report was sent");
}

// §7.1: a store written before records carried their evidence kept it in a tree of its own;
// a message received then is reported from there.
#[test]
fn evidence_a_store_written_before_kept_apart_is_reported() {
    let (device, group, seq) = bobs_message_to_report();
    keep_evidence_apart(&device, group, seq);
    let at = at_seq(group, seq.0);
    let mut device = device.restart(5);
    block_on(device.core.connect()).unwrap();
    device.clear();
    block_on(device.core.report(group, seq, "spam".into())).unwrap();
    assert!(!device.sealed().is_empty(), "no report was sent");
    // Without it there, the message is not found to report.
    let mut gone = Batch::new();
    gone.remove("evidence", &at);
    block_on(device.store.commit(gone)).unwrap();
    let e = block_on(device.core.report(group, seq, "spam".into())).unwrap_err();
    assert_eq!(e.code(), "not_found", "{e}");
}
