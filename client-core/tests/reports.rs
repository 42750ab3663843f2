#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Reporting a received message (PROTOCOL.md §7.1): its evidence, as stored, is checked before
//! it goes to the facilitators.

mod support;

use confide_client_core::store::{Batch, ClientStore as _};
use confide_protocol::{GroupId, Seq};
use pollster::block_on;
use support::{Device, alice_and_bob, at_seq};
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
    let at = at_seq(group, seq.0);
    let mut evidence = device
        .store
        .snapshot()
        .get("evidence", &at)
        .unwrap()
        .to_vec();
    // The binary form: form byte, header, franking tag, signature, franking key, then the
    // ciphertext's length (u32, big-endian).
    let len_at = 1 + confide_protocol::envelope::HEADER_LEN + 32 + 64 + 32;
    let len = u32::from_be_bytes(evidence[len_at..len_at + 4].try_into().unwrap());
    evidence[len_at..len_at + 4].copy_from_slice(&(len - 1).to_be_bytes());
    let mut damage = Batch::new();
    damage.put("evidence", &at, Zeroizing::new(evidence));
    block_on(device.store.commit(damage)).unwrap();
    let e = block_on(device.core.report(group, seq, "spam".into())).unwrap_err();
    assert_eq!(e.code(), "store", "{e}");
    assert!(device.sealed().is_empty(), "a report was sent");
}
