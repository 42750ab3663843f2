#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A caller tells apart, by matching on [`ClientError`], the four ways an operation can fail
//! that it handles differently (issue 14): the server did not answer in time, the server refused
//! with a code, something failed verification, and the local store failed. Each comes from a
//! [`ClientCore`] over a [`MemoryStore`] and a scripted server, without a network (the shared
//! harness in `support`).
//!
//! [`ClientCore`]: confide_client_core::ClientCore

mod support;

use confide_client_core::memory::Faults;
use confide_client_core::{ClientError, MemoryStore, Missing, StoreError, VerificationError};
use confide_protocol::envelope::EnvelopeError;
use confide_protocol::frames::{ClientFrame, ErrorCode};
use pollster::block_on;
use support::{Device, Member, Shared, refuse, silence, text};

/// What a front end would say, decided only by the error's variant.
fn kind(e: &ClientError) -> &'static str {
    match e {
        ClientError::Timeout { .. } => "timeout",
        ClientError::Server { .. } => "refused",
        ClientError::Verification(_) => "verification",
        ClientError::Store(_) => "store",
        _ => "other",
    }
}

#[test]
fn a_server_that_never_answers_is_a_timeout_naming_the_request() {
    let mut device = Device::fresh(MemoryStore::new(), Shared::default());
    device.answer(Some(silence()));
    let e = block_on(device.core.connect()).unwrap_err();
    assert_eq!(kind(&e), "timeout", "{e}");
    let ClientError::Timeout { waiting_for, .. } = &e else {
        unreachable!()
    };
    assert_eq!(*waiting_for, "register");
    assert_eq!(e.code(), "timeout");
    assert!(
        !device.core.is_connected(),
        "a timed-out connection is kept"
    );
}

#[test]
fn a_refusal_by_the_server_carries_its_code() {
    let mut device = Device::fresh(MemoryStore::new(), Shared::default());
    device.answer(Some(refuse(ErrorCode::RegistrationClosed, |frame| {
        matches!(frame, ClientFrame::Register { .. })
    })));
    let e = block_on(device.core.connect()).unwrap_err();
    assert_eq!(kind(&e), "refused", "{e}");
    assert_eq!(e.server_code(), Some(ErrorCode::RegistrationClosed));
    assert_eq!(e.code(), "registration_closed");
}

#[test]
fn a_message_with_a_tampered_signature_fails_verification() {
    let mut device = Device::new();
    let mut bob = Member::new(2, "Bob");
    let group = device.group_with(&[&bob]);
    // Bob's sender key sealed to Alice's device (an inbox item), and a message he wrote with it.
    let (mut chain, item) = device.member_key(group, &mut bob);
    let epoch = device.state(group).epoch_ref();
    let envelope = bob.envelope(&mut chain, group, epoch, &text("Rough week.", device.now()));

    // Before Bob's key has arrived, Alice's device has nothing to open it with.
    let e = block_on(device.core.inspect(&envelope)).unwrap_err();
    assert!(
        matches!(e, ClientError::NotFound(Missing::SenderKey)),
        "{e:?}"
    );
    assert_eq!(e.code(), "not_found");

    device.push_inbox(&[item]);
    assert!(
        block_on(device.core.inspect(&envelope)).is_ok(),
        "Bob's own message does not open"
    );

    let mut tampered = envelope.clone();
    tampered.signature.0[0] ^= 1;
    let e = block_on(device.core.inspect(&tampered)).unwrap_err();
    assert_eq!(kind(&e), "verification", "{e}");
    assert!(
        matches!(
            e,
            ClientError::Verification(VerificationError::Envelope(EnvelopeError::BadSignature))
        ),
        "{e:?}"
    );
    assert_eq!(e.code(), "verification");
}

#[test]
fn a_failing_store_is_a_store_error() {
    // The same run twice (the clock and randomness are fixed): first to count the store's
    // steps up to the group's creation, then with the store failing at the creation's commit.
    let steps_connected = {
        let (store, probe) = MemoryStore::with_faults(Faults::new());
        let mut device = Device::create(store, Shared::default());
        let steps = probe.steps();
        block_on(device.core.create_group()).unwrap();
        assert!(probe.steps() > steps, "creating a group stored nothing");
        steps
    };
    let (store, _probe) = MemoryStore::with_faults(Faults::new().fail_at(steps_connected + 1));
    let mut device = Device::create(store, Shared::default());
    let e = block_on(device.core.create_group()).unwrap_err();
    assert_eq!(kind(&e), "store", "{e}");
    assert!(matches!(e, ClientError::Store(StoreError::Db(_))), "{e:?}");
    assert_eq!(e.code(), "store");
}
