//! The constructions working together as a client would use them: after a removal the group
//! log names a new epoch and no longer lists the removed device, so the fresh sender keys are
//! sealed only to the remaining members, and the removed member can decrypt nothing new.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use confide_protocol::DeviceIdentity;
use confide_protocol::envelope::{Envelope, EnvelopeError};
use confide_protocol::group_log::{GroupSettings, GroupState, MemberEntry, Op, OpBody};
use confide_protocol::ids::{GroupId, Timestamp, UserId};
use confide_protocol::seal::{self, SealKind};
use confide_protocol::sender_key::{ReceiverChain, SenderChain};
use rand_core::SeedableRng;

fn rng(seed: u8) -> chacha20::ChaCha20Rng {
    chacha20::ChaCha20Rng::from_seed([seed; 32])
}

#[test]
fn a_removed_member_cannot_read_the_next_epoch() {
    let alice = DeviceIdentity::generate(&mut rng(1));
    let bob = DeviceIdentity::generate(&mut rng(2));
    let eve = DeviceIdentity::generate(&mut rng(3));
    let (ua, ub, ue) = (UserId([1; 16]), UserId([2; 16]), UserId([3; 16]));
    let entry = |user, name: &str, id: &DeviceIdentity| MemberEntry {
        user,
        display_name: name.into(),
        devices: vec![id.public_keys()],
        device_list: None,
    };
    let group = GroupId([9; 16]);
    let t = 1_767_225_600_000;
    let genesis = Op::genesis(
        group,
        alice.device_id(),
        Timestamp(t),
        entry(ua, "Alice", &alice),
        GroupSettings::default(),
    )
    .sign(&alice)
    .unwrap();
    let mut state = GroupState::from_genesis(&genesis).unwrap();
    for (user, name, id) in [(ub, "Bob", &bob), (ue, "Eve", &eve)] {
        let op = state.next_op(
            alice.device_id(),
            Timestamp(t + 1),
            OpBody::Add {
                member: entry(user, name, id),
                invite: None,
                invite_sig: None,
                invite_device: None,
            },
        );
        state.apply(&op.sign(&alice).unwrap()).unwrap();
    }

    // Epoch 2: Alice's chain is sealed to everyone, and Eve reads Alice's messages.
    let mut old_chain = SenderChain::generate(&mut rng(4));
    let mut eve_copy = None;
    for keys in state.current_devices() {
        if keys.device == alice.device_id() {
            continue;
        }
        let sealed = seal::seal(
            &alice,
            keys,
            SealKind::SenderKey,
            group,
            state.epoch_ref(),
            &old_chain.distribution(),
            &mut rng(5),
        )
        .unwrap();
        if keys.device == eve.device_id() {
            eve_copy = Some(
                ReceiverChain::from_distribution(&seal::open(&eve, &sealed).unwrap()).unwrap(),
            );
        }
    }
    let mut eve_copy = eve_copy.unwrap();
    let before = Envelope::seal(
        &alice,
        group,
        state.epoch_ref(),
        &mut old_chain,
        b"before",
        &mut rng(6),
    )
    .unwrap();
    assert_eq!(&*before.open(&mut eve_copy).unwrap().body, b"before");

    // Alice removes Eve: a new epoch, and Eve's device is gone from the list sender keys go to.
    let old_epoch = state.epoch_ref();
    let op = state.next_op(
        alice.device_id(),
        Timestamp(t + 2),
        OpBody::Remove {
            user: ue,
            ban: false,
        },
    );
    state.apply(&op.sign(&alice).unwrap()).unwrap();
    assert_ne!(state.epoch_ref(), old_epoch);
    assert!(
        state
            .current_devices()
            .iter()
            .all(|k| k.device != eve.device_id())
    );

    // A fresh chain for the new epoch, sealed to exactly the devices the log lists.
    let mut new_chain = SenderChain::generate(&mut rng(7));
    let sealed: Vec<_> = state
        .current_devices()
        .into_iter()
        .filter(|k| k.device != alice.device_id())
        .map(|k| {
            seal::seal(
                &alice,
                k,
                SealKind::SenderKey,
                group,
                state.epoch_ref(),
                &new_chain.distribution(),
                &mut rng(8),
            )
            .unwrap()
        })
        .collect();
    assert_eq!(sealed.len(), 1, "only Bob");
    let after = Envelope::seal(
        &alice,
        group,
        state.epoch_ref(),
        &mut new_chain,
        b"after",
        &mut rng(9),
    )
    .unwrap();

    // Eve holds every ciphertext and her old chain, and reads nothing new.
    for s in &sealed {
        assert!(seal::open(&eve, s).is_err());
    }
    assert!(matches!(
        after.open(&mut eve_copy),
        Err(EnvelopeError::Decrypt | EnvelopeError::SenderKey(_))
    ));
    // Bob can.
    let mut bob_copy =
        ReceiverChain::from_distribution(&seal::open(&bob, &sealed[0]).unwrap()).unwrap();
    assert_eq!(&*after.open(&mut bob_copy).unwrap().body, b"after");
}
