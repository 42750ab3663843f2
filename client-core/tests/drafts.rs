#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Drafts are kept in the encrypted store: they survive a restart, an empty one is removed,
//! and one longer than a message is refused.

mod support;

use confide_client_core::drafts::MAX_DRAFT_BYTES;
use pollster::block_on;
use support::{Device, Member};

#[test]
fn a_draft_survives_a_restart_and_an_empty_one_is_removed() {
    let mut device = Device::new();
    let bob = Member::new(2, "Bob");
    let group = device.group_with(&[&bob]);
    assert_eq!(block_on(device.core.draft(group)).unwrap(), None);

    block_on(device.core.set_draft(group, "I wanted to say")).unwrap();
    let mut device = device.restart(5);
    assert_eq!(
        block_on(device.core.draft(group)).unwrap().as_deref(),
        Some("I wanted to say")
    );

    block_on(device.core.set_draft(group, "  ")).unwrap();
    let device = device.restart(6);
    assert_eq!(block_on(device.core.draft(group)).unwrap(), None);
}

#[test]
fn a_draft_longer_than_a_message_is_refused_and_the_old_one_kept() {
    let mut device = Device::new();
    let bob = Member::new(2, "Bob");
    let group = device.group_with(&[&bob]);
    block_on(device.core.set_draft(group, "short")).unwrap();
    let err = block_on(
        device
            .core
            .set_draft(group, &"x".repeat(MAX_DRAFT_BYTES + 1)),
    )
    .unwrap_err();
    assert_eq!(err.code(), "invalid");
    assert_eq!(
        block_on(device.core.draft(group)).unwrap().as_deref(),
        Some("short")
    );
}
