#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! What Alice's device does against a scripted, hostile server, without a network: a
//! [`ClientCore`] over a [`MemoryStore`], a server whose answers the test decides behind a
//! [`Link`], and a host with a fixed clock and seeded randomness (the shared harness in
//! `support`). The other people (Bob, Carol, Dave) are identities the test signs ops, sender
//! keys and messages with.
//!
//! - A removed member's post in an *earlier* epoch (one that ended by someone's admission, not
//!   by his removal) is refused when he wrote it after the removal, or when the server stored it
//!   after a message of an epoch that began after the removal (PROTOCOL.md §11.2 steps 9, 14);
//!   what he wrote before the removal is still shown when it arrives late.
//! - A server that holds back its `ok` to Alice's sender key until it has pushed a removal does
//!   not get her message encrypted in the epoch the removed member can read (§5.5, §11.3).
//! - A message this device cannot store is not shown (§11.12).
//! - A device removed and put back without asking posts nothing there — not even a pinned text
//!   a moderator re-sends on an epoch change — until its user accepts the group (§11.7).
//!
//! [`ClientCore`]: confide_client_core::ClientCore
//! [`MemoryStore`]: confide_client_core::MemoryStore
//! [`Link`]: confide_client_core::Link

mod support;

use confide_client_core::{Batch, ClientStore, Event};
use confide_protocol::envelope::PinnedKind;
use confide_protocol::frames::{ClientFrame, ServerFrame};
use confide_protocol::group_log::{OpBody, Role};
use confide_protocol::sender_key::SenderChain;
use confide_protocol::{Epoch, EpochRef, GroupId, Timestamp};
use pollster::block_on;
use support::{ALICE, Device, Member, NOW, add, at_seq, text};
use zeroize::Zeroizing;

const MINUTE: u64 = 60_000;

/// `text` by `sender` in `epoch` of the log, written at `sent_at`, stored by the server at its
/// next position and pushed to Alice. Returns that position.
fn message(
    device: &mut Device,
    group: GroupId,
    sender: &mut Member,
    chain: &mut SenderChain,
    epoch: EpochRef,
    sent_at: Timestamp,
    words: &str,
) -> u64 {
    let envelope = sender.envelope(chain, group, epoch, &text(words, sent_at));
    device.deliver(group, envelope).seq.0
}

/// The seqs reported as rejected.
fn rejected_seqs(device: &Device) -> Vec<u64> {
    device.rejected().into_iter().map(|(seq, _)| seq).collect()
}

/// Bob is a member in epoch 1 (ended when Carol is added) and epoch 2 (ended by his removal).
/// After his removal he still holds his epoch-1 sending chain, and Alice his receiving chain.
#[test]
fn a_removed_members_later_post_in_an_earlier_epoch_is_refused_and_his_earlier_one_shown() {
    let mut w = Device::new();
    let group = w.group_with(&[]);
    let mut bob = Member::new(2, "Bob");
    let carol = Member::new(4, "Carol");
    w.append(group, add(bob.entry()));
    let epoch1 = w.state(group).epoch_ref();
    let (mut bob_e1, item) = w.member_key(group, &mut bob);
    w.push_inbox(&[item]);
    // Epoch 1 ends by an admission (grace), epoch 2 by Bob's removal (none).
    w.append(group, add(carol.entry()));
    w.remove(group, bob.user);
    assert_eq!(w.state(group).epoch(), Epoch(3));

    // Written before his removal, delivered only now: still shown.
    let before = Timestamp(NOW.0 - MINUTE);
    message(
        &mut w,
        group,
        &mut bob,
        &mut bob_e1,
        epoch1,
        before,
        "before",
    );
    // Written after his removal (by his own clock), under his epoch-1 key.
    let after = Timestamp(NOW.0 + MINUTE);
    let late = message(&mut w, group, &mut bob, &mut bob_e1, epoch1, after, "after");
    // Alice posts in the new epoch; then Bob, his clock set back, posts in epoch 1 again.
    w.send(group, "welcome, Carol").unwrap();
    let set_back = Timestamp(NOW.0 - MINUTE / 2);
    let slipped = message(
        &mut w,
        group,
        &mut bob,
        &mut bob_e1,
        epoch1,
        set_back,
        "slipped",
    );

    let (shown, rejected) = (w.shown(), rejected_seqs(&w));
    assert_eq!(shown, ["before"], "what Alice was shown from Bob");
    assert!(
        rejected.contains(&late),
        "the post written after the removal: {rejected:?}"
    );
    assert!(
        rejected.contains(&slipped),
        "the post stored after a message of the new epoch: {rejected:?}"
    );
    let history = w.history(group);
    assert!(
        !history.iter().any(|t| t == "after" || t == "slipped"),
        "{history:?}"
    );
}

/// The server pushes Bob's removal while Alice's device waits for the `ok` to its sender key
/// for the epoch Bob is still in, and accepts whatever it is then posted.
#[test]
fn a_message_is_not_encrypted_in_an_epoch_seen_to_end_by_a_removal_while_sending_the_key() {
    let mut w = Device::new();
    let bob = Member::new(2, "Bob");
    let carol = Member::new(4, "Carol");
    let group = w.group_with(&[&bob, &carol]);
    w.set_role(group, carol.user, Role::Facilitator);
    let (removal, seq) = w.member_op(
        group,
        &carol,
        OpBody::Remove {
            user: bob.user,
            ban: false,
        },
    );
    // Pushed once, ahead of the `ok` to Alice's next `send_sealed`.
    let mut removal = Some(ServerFrame::Op {
        group,
        op: removal,
        seq,
    });
    w.answer(Some(Box::new(move |frame| match frame {
        ClientFrame::SendSealed { id, .. } => removal
            .take()
            .map(|removal| vec![removal, ServerFrame::Ok { id: *id }]),
        _ => None,
    })));

    block_on(
        w.core
            .send_text(group, "only for those still here".into(), None),
    )
    .unwrap();

    let posted = w.posted();
    assert_eq!(posted.len(), 1);
    assert_eq!(
        posted[0].epoch,
        Epoch(3),
        "the message was encrypted in the epoch Bob's removal ended"
    );
    // Bob got Alice's key for epoch 2 (sealed before the removal), never a later one.
    let bob_device = bob.device();
    assert!(
        w.sealed()
            .iter()
            .filter(|s| s.recipient == bob_device)
            .all(|s| s.epoch == Epoch(2))
    );
}

/// The store cannot read the place a message goes to (damaged there): the message is not
/// shown, nor taken as processed.
#[test]
fn a_message_that_cannot_be_stored_is_not_shown() {
    let mut w = Device::new();
    let mut bob = Member::new(2, "Bob");
    let group = w.group_with(&[&bob]);
    let (mut chain, item) = w.member_key(group, &mut bob);
    w.push_inbox(&[item]);
    // Seq 1's place in the message store holds something that does not open.
    let mut batch = Batch::new();
    batch.put(
        "messages",
        &at_seq(group, 1),
        Zeroizing::new(b"damaged".to_vec()),
    );
    block_on(w.store.commit(batch)).unwrap();

    let m = w.member_writes(group, &mut bob, &mut chain, "not stored");
    w.push_message(group, &m);

    let shown = w.shown();
    assert!(shown.is_empty(), "shown without being stored: {shown:?}");
    let id = m.envelope.message_id();
    assert_eq!(
        block_on(w.core.message_place(group, id)).unwrap(),
        None,
        "taken as processed although it was not stored"
    );
}

/// Alice pinned crisis resources; Carol (a facilitator) removes her, puts her back without
/// asking and makes her a co-facilitator; then the epoch changes again. Alice's device must
/// not re-send the pinned text (sealing a sender key and posting) before she accepts.
#[test]
fn a_device_put_back_without_asking_posts_nothing_until_its_user_accepts() {
    let mut w = Device::new();
    let group = w.group_with(&[]);
    let carol = Member::new(4, "Carol");
    let dave = Member::new(6, "Dave");
    block_on(
        w.core
            .pin(group, PinnedKind::CrisisResources, "Call 116 123".into()),
    )
    .unwrap();
    w.append(group, add(carol.entry()));
    w.set_role(group, carol.user, Role::Facilitator);
    let removal = OpBody::Remove {
        user: ALICE,
        ban: false,
    };
    let promote = OpBody::SetRole {
        user: ALICE,
        role: Role::CoFacilitator,
    };
    for body in [removal, add(w.alice.entry()), promote] {
        let (op, seq) = w.member_op(group, &carol, body);
        w.push_op(group, op, seq);
    }
    let (posted, sealed) = (w.posted().len(), w.sealed().len());
    let (epoch_change, seq) = w.member_op(group, &carol, add(dave.entry()));
    w.push_op(group, epoch_change, seq);
    assert_eq!(
        (w.posted().len(), w.sealed().len()),
        (posted, sealed),
        "Alice's device posted (or sealed a key) in a group she has not accepted"
    );
    assert!(
        w.events()
            .iter()
            .any(|e| matches!(e, Event::Invited { .. }))
    );

    // Once she accepts, her device does what a co-facilitator's does.
    block_on(w.core.accept_group(group)).unwrap();
    block_on(w.core.after_input());
    let all_posted = w.posted();
    assert!(
        all_posted.len() > posted,
        "the pinned text was not re-sent after accepting"
    );
    assert_eq!(all_posted.last().unwrap().epoch, w.state(group).epoch());
}
