#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! What a hostile server can do with what it serves, at the core, without a network: a
//! [`ClientCore`] over a [`MemoryStore`], a scripted server behind a [`Link`] that serves
//! whatever logs and inbox items the test gives it (forged ones included), and a host with a
//! fixed clock and seeded randomness (the shared harness in `support`).
//!
//! Alice's device is the one under test. Bob and Mallory are scripted identities: the test
//! signs their ops and seals their payloads itself, as the server (or a member) could.
//!
//! [`ClientCore`]: confide_client_core::ClientCore
//! [`MemoryStore`]: confide_client_core::MemoryStore
//! [`Link`]: confide_client_core::Link

mod support;

use base64::Engine as _;
use confide_client_core::{ClientStore, Event, FacilitatorItem, Invite};
use confide_protocol::frames::{ClientFrame, ErrorCode, InboxItem};
use confide_protocol::group_log::{InviteSecret, OpBody};
use confide_protocol::seal::SealKind;
use confide_protocol::{GroupId, Timestamp, UserId};
use pollster::block_on;
use support::{ALICE, Device, Member, NOW, add};

/// The real Bob.
fn bob() -> Member {
    Member::new(2, "Bob")
}

/// Mallory, the server's accomplice who signs the made-up groups.
fn mallory() -> Member {
    Member::new(3, "Mallory")
}

/// The fake "Bob": Bob's user id and name, with keys the server made.
fn fake_bob() -> Member {
    Member {
        user: bob().user,
        ..Member::new(4, "Bob")
    }
}

/// Alice's own group, with the real Bob added to it.
fn group_with_bob(device: &mut Device) -> GroupId {
    device.group_with(&[&bob()])
}

/// A group Mallory creates on the server (id `[id; 16]`), with `bodies` appended by her after
/// the genesis.
fn forge_group(device: &Device, id: u8, bodies: Vec<OpBody>) -> GroupId {
    let mallory = mallory();
    let group = device.foreign_group(&mallory, id);
    for body in bodies {
        device.member_op(group, &mallory, body);
    }
    group
}

/// A note `from` seals to Alice in the group's current epoch, put in her inbox (not delivered).
fn note(device: &Device, from: &mut Member, group: GroupId, note: &str) -> InboxItem {
    let epoch = device.state(group).epoch_ref();
    let sealed = from.seal(
        SealKind::FacilitatorNote,
        &device.alice.keys(),
        group,
        epoch,
        note.as_bytes(),
    );
    device.put_in_inbox(sealed)
}

/// An invite link to a group on the server, made by Mallory (its facilitator), with the
/// invite op appended to the log.
fn invite(device: &Device, group: GroupId, mallory: &mut Member) -> Invite {
    let secret = InviteSecret::generate(&mut mallory.rng);
    device.member_op(
        group,
        mallory,
        OpBody::Invite {
            invite: secret.id(),
            requires_approval: false,
            max_uses: 1,
            expires_at: Timestamp(NOW.0 + 3_600_000),
        },
    );
    let link = serde_json::json!({
        "v": 1,
        "group": group,
        "genesis": device.state(group).genesis_hash(),
        "inviter": mallory.device(),
        "secret": base64::engine::general_purpose::STANDARD.encode(*secret.to_bytes()),
        "requires_approval": false,
    });
    let link = format!(
        "confide-invite:{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&link).unwrap())
    );
    Invite::from_link(&link).unwrap()
}

/// Alice joins `group` by a fresh invite of Mallory's.
fn join(device: &mut Device, group: GroupId, mallory: &mut Member) {
    let invite = invite(device, group, mallory);
    block_on(device.core.join(invite, None)).unwrap();
    device.drive();
}

const URGENT_1: &str = r#"{"kind":"urgent","text":"I am not safe right now"}"#;
const URGENT_2: &str = r#"{"kind":"urgent","text":"Please call me"}"#;

fn urgent_texts(queue: &[(String, FacilitatorItem)]) -> Vec<String> {
    queue
        .iter()
        .map(|(_, item)| match item {
            FacilitatorItem::Urgent(r) => r.text.clone(),
            FacilitatorItem::Report(r) => r.reason.clone(),
            other => panic!("unexpected queue item {other:?}"),
        })
        .collect()
}

/// Review item 1: two urgent requests from the same device in one inbox frame were stored
/// under the same key (group, clock, sender) and one of them was lost, though both were
/// acknowledged.
#[test]
fn two_urgent_requests_in_one_inbox_frame_both_reach_the_facilitator_queue() {
    let mut w = Device::new();
    let group = group_with_bob(&mut w);
    let mut bob = bob();
    let first = note(&w, &mut bob, group, URGENT_1);
    let second = note(&w, &mut bob, group, URGENT_2);
    w.push_inbox(&[first, second]);
    let queue = block_on(w.core.facilitator_queue(group)).unwrap();
    let mut texts = urgent_texts(&queue);
    texts.sort();
    assert_eq!(texts, ["I am not safe right now", "Please call me"]);
    assert!(
        w.server.lock().unwrap().inbox.is_empty(),
        "both acknowledged"
    );
    for (_, item) in &queue {
        let FacilitatorItem::Urgent(r) = item else {
            panic!("not urgent")
        };
        assert_eq!(r.received_at, NOW);
    }
}

/// Review item 2: the server delivered an urgent request again under a new inbox id, and the
/// facilitator saw the old "I am not safe right now" as new.
#[test]
fn an_urgent_request_the_server_delivers_again_is_not_shown_again() {
    let mut w = Device::new();
    let group = group_with_bob(&mut w);
    let item = note(&w, &mut bob(), group, URGENT_1);
    let sealed = item.payload.clone();
    w.push_inbox(&[item]);
    // The urgent requests shown since the last look, forgotten once counted.
    let shown = |w: &mut Device| {
        let n = w
            .events()
            .iter()
            .filter(|e| matches!(e, Event::UrgentRequest(_)))
            .count();
        w.clear();
        n
    };
    assert_eq!(shown(&mut w), 1);
    let queue = block_on(w.core.facilitator_queue(group)).unwrap();
    assert_eq!(queue.len(), 1);
    block_on(w.core.resolve(&queue[0].0)).unwrap();

    // Weeks later, the same sealed payload under a new inbox id, and again after a restart.
    let again = w.put_in_inbox(sealed.clone());
    w.push_inbox(&[again]);
    assert_eq!(shown(&mut w), 0, "a replayed urgent request was shown");
    assert!(
        block_on(w.core.facilitator_queue(group))
            .unwrap()
            .is_empty()
    );
    assert!(
        w.server.lock().unwrap().inbox.is_empty(),
        "still acknowledged"
    );

    block_on(w.core.shutdown());
    let mut w = w.restart(3);
    block_on(w.core.connect()).unwrap();
    w.drive();
    let again = w.put_in_inbox(sealed);
    w.push_inbox(&[again]);
    assert_eq!(shown(&mut w), 0, "replayed after a restart");
    assert!(
        block_on(w.core.facilitator_queue(group))
            .unwrap()
            .is_empty()
    );
}

/// Queue entries stored by earlier versions (keyed by group, clock and sender, without the
/// new fields) still load, oldest first, and can be resolved.
#[test]
fn facilitator_queue_entries_of_an_earlier_version_still_load_and_resolve() {
    let mut w = Device::new();
    let group = group_with_bob(&mut w);
    let mut bob = bob();
    let old = serde_json::json!({
        "kind": "urgent",
        "group": group,
        "user": bob.user,
        "display_name": "Bob",
        "text": "stored by an earlier version",
    });
    let key = [
        group.as_bytes().as_slice(),
        &(NOW.0 - 1000).to_be_bytes(),
        bob.device().as_bytes(),
    ]
    .concat();
    let mut batch = confide_client_core::Batch::new();
    batch.put(
        "facilitator_queue",
        &key,
        zeroize::Zeroizing::new(serde_json::to_vec(&old).unwrap()),
    );
    block_on(w.store.commit(batch)).unwrap();
    let item = note(&w, &mut bob, group, URGENT_1);
    w.push_inbox(&[item]);

    let queue = block_on(w.core.facilitator_queue(group)).unwrap();
    assert_eq!(
        urgent_texts(&queue),
        ["stored by an earlier version", "I am not safe right now"]
    );
    let FacilitatorItem::Urgent(r) = &queue[0].1 else {
        panic!()
    };
    assert_eq!(r.received_at, Timestamp(NOW.0 - 1000));
    block_on(w.core.resolve(&queue[0].0)).unwrap();
    assert_eq!(
        urgent_texts(&block_on(w.core.facilitator_queue(group)).unwrap()),
        ["I am not safe right now"]
    );
}

fn key_changes(events: &[Event]) -> Vec<(GroupId, UserId)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::KeyChanged { group, user, .. } => Some((*group, *user)),
            _ => None,
        })
        .collect()
}

fn group_ids(w: &Device) -> Vec<GroupId> {
    block_on(w.core.groups()).iter().map(|g| g.group).collect()
}

/// Review item 3c: a group the server lists (or names in an `op` frame) was adopted even when
/// its log did not list this device, and its ops overwrote the keys this device knew.
#[test]
fn a_group_the_server_makes_up_without_this_device_is_not_adopted() {
    let mut w = Device::new();
    let mine = group_with_bob(&mut w);
    let made_up = forge_group(&w, 50, vec![add(fake_bob().entry())]);
    let genesis = w.log(made_up).ops[0].clone();
    w.push_op(made_up, genesis, 0);
    w.sync().unwrap();
    assert_eq!(group_ids(&w), [mine]);
    assert_eq!(key_changes(&w.events()), []);
}

/// Review items 3a, 3c and 3d: a group that adds this device is still adopted and held for
/// consent — but the keys in it give no safety number until the user accepts it, and a person
/// whose keys differ from the same user's in the user's other groups is no "shared" person.
#[test]
fn safety_numbers_and_shared_groups_come_only_from_accepted_groups_with_the_same_keys() {
    let mut w = Device::new();
    let bob = bob();
    // A private conversation "Bob" starts: Bob's user id and name, the server's keys.
    let private = w.invited_by(&fake_bob(), 51);
    w.sync().unwrap();
    assert!(
        w.events()
            .iter()
            .any(|e| matches!(e, Event::Invited { group, .. } if *group == private)),
        "a group that adds this device is held and the user asked"
    );
    assert!(
        w.core.safety_number(bob.user).is_err(),
        "a safety number from a group the user never accepted"
    );

    let mine = group_with_bob(&mut w);
    // Both halves cover identity keys (§3.9): Alice's, and the one Bob's list carries.
    let real = confide_protocol::identity::safety_number_from_halves(
        &w.core.own_devices().fingerprint,
        &confide_protocol::identity::identity_fingerprint_digits(
            &bob.user,
            &bob.user_identity().public(),
        ),
    );
    assert_eq!(w.core.safety_number(bob.user).unwrap(), real);
    let info = block_on(w.core.groups());
    let invitation = info.iter().find(|g| g.group == private).unwrap();
    assert!(invitation.invited);
    let peer = invitation.private_with.as_ref().unwrap();
    assert_eq!(peer.user, bob.user);
    assert_eq!(
        peer.shared_groups,
        [],
        "the server's Bob has other keys than the Bob of {mine:?}"
    );

    // Accepted: two groups show two different keys for Bob, and the user is told.
    block_on(w.core.accept_group(private)).unwrap();
    let err = w.core.safety_number(bob.user).unwrap_err();
    assert!(err.to_string().contains("differ"), "{err}");
}

/// Re-review item 2: a group held for consent (anyone, the server too, can make one and add
/// this device) warned of a key change and overwrote the keys this device knew with the
/// impostor's, so that a later real substitution raised nothing.
#[test]
fn a_group_held_for_consent_neither_warns_nor_changes_the_keys_this_device_knows() {
    let mut w = Device::new();
    group_with_bob(&mut w);
    let held = forge_group(&w, 53, vec![add(fake_bob().entry()), add(w.alice.entry())]);
    w.sync().unwrap();
    assert_eq!(key_changes(&w.events()), [], "{held:?} is not accepted");
    // Another group with the impostor, which the user accepts: the change is still news.
    let accepted = forge_group(&w, 54, vec![add(fake_bob().entry()), add(w.alice.entry())]);
    w.sync().unwrap();
    block_on(w.core.accept_group(accepted)).unwrap();
    assert_eq!(key_changes(&w.events()), [(accepted, bob().user)]);
}

/// Re-review item 2: the members of a held group are compared with the keys this device knows
/// when the user accepts it, and not before.
#[test]
fn accepting_a_group_warns_of_a_known_user_with_other_keys() {
    let mut w = Device::new();
    group_with_bob(&mut w);
    let group = forge_group(&w, 55, vec![add(fake_bob().entry()), add(w.alice.entry())]);
    w.sync().unwrap();
    assert_eq!(key_changes(&w.events()), []);
    block_on(w.core.accept_group(group)).unwrap();
    assert_eq!(key_changes(&w.events()), [(group, bob().user)]);
}

/// Review item 3b: joining adopted the group's log without comparing its members' keys with
/// the ones this device knew, so the joiner was never warned.
#[test]
fn joining_a_group_where_a_known_user_has_other_keys_warns() {
    let mut w = Device::new();
    group_with_bob(&mut w);
    let group = forge_group(&w, 52, vec![add(fake_bob().entry())]);
    join(&mut w, group, &mut mallory());
    assert_eq!(key_changes(&w.events()), [(group, bob().user)]);
}

/// Re-review item 1: a group this device was added to and removed from without the user
/// accepting it was never compared with the keys this device knows; joining it by an invite
/// later took its verified ops as "compared then", so the user was never warned.
#[test]
fn joining_a_group_held_and_never_accepted_warns_of_a_known_user_with_other_keys() {
    let mut w = Device::new();
    group_with_bob(&mut w);
    let mut mallory = mallory();
    let group = forge_group(&w, 57, vec![add(fake_bob().entry()), add(w.alice.entry())]);
    w.sync().unwrap();
    let (remove, seq) = w.member_op(
        group,
        &mallory,
        OpBody::Remove {
            user: ALICE,
            ban: false,
        },
    );
    w.push_op(group, remove, seq);
    assert_eq!(key_changes(&w.events()), [], "never accepted");
    join(&mut w, group, &mut mallory);
    assert_eq!(key_changes(&w.events()), [(group, bob().user)]);
}

/// Review item 5: a device removed from a group that joined it again started its message
/// numbers over, so "#1" named a different message after the rejoin.
#[test]
fn a_device_that_rejoins_a_group_keeps_its_message_numbers() {
    let mut w = Device::new();
    let mut mallory = mallory();
    let group = forge_group(&w, 53, vec![]);
    join(&mut w, group, &mut mallory);
    w.member_posts(group, &mut mallory, "before");
    let before = block_on(w.core.history(group, None, 10)).unwrap();
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].number, 1);

    let (remove, seq) = w.member_op(
        group,
        &mallory,
        OpBody::Remove {
            user: ALICE,
            ban: false,
        },
    );
    w.push_op(group, remove, seq);
    assert!(!block_on(w.core.groups())[0].member);
    join(&mut w, group, &mut mallory);
    w.member_posts(group, &mut mallory, "after");
    let after = block_on(w.core.history(group, None, 10)).unwrap();
    let numbers: Vec<(String, u64)> = after.iter().map(|m| (m.text.clone(), m.number)).collect();
    assert_eq!(
        numbers,
        [("before".to_string(), 1), ("after".to_string(), 2)]
    );
    assert_eq!(
        block_on(w.core.seq_of_number(group, 1)).unwrap(),
        Some(before[0].seq)
    );
}

/// Review item 4: early payloads for groups this device does not hold were bounded only per
/// (group, sender), and the server can make up any number of both.
#[test]
fn early_payloads_for_groups_this_device_does_not_hold_are_bounded_in_all() {
    let mut w = Device::new();
    let mut mallory = mallory();
    let epoch = confide_protocol::EpochRef {
        epoch: confide_protocol::Epoch(0),
        hash: confide_protocol::OpHash([0; 32]),
    };
    let items: Vec<InboxItem> = (0..270u16)
        .map(|i| {
            let mut id = [0xee; 16];
            id[..2].copy_from_slice(&i.to_be_bytes());
            let sealed = mallory.seal(
                SealKind::SenderKey,
                &w.alice.keys(),
                GroupId(id),
                epoch,
                b"a key for a group that does not exist",
            );
            w.put_in_inbox(sealed)
        })
        .collect();
    // The syncs those payloads start fail for a passing reason: the payloads stay kept (a
    // lasting refusal would drop them, see below).
    w.answer(Some(support::refuse(ErrorCode::Storage, |f| {
        matches!(f, ClientFrame::Sync { .. })
    })));
    w.push_inbox(&items);
    let kept = block_on(w.store.keys("parked_keys", &[])).unwrap().len();
    assert!(kept > 0, "early payloads are still kept");
    assert!(kept <= 256, "{kept} early payloads kept for made-up groups");
    assert!(
        w.server.lock().unwrap().inbox.is_empty(),
        "all acknowledged"
    );
}

/// Re-review item 6: a moderator's reason for their op is kept once. A second reason sealed for
/// the same op (an older one the server held back, or one delivered again after it was
/// forgotten) must not replace the one the facilitators already read.
#[test]
fn the_first_reason_for_a_moderation_op_stays_whatever_arrives_later() {
    let mut w = Device::new();
    let group = group_with_bob(&mut w);
    let mut bob = bob();
    let carol = Member::new(5, "Carol");
    w.append(group, add(carol.entry()));
    w.set_role(
        group,
        bob.user,
        confide_protocol::group_log::Role::CoFacilitator,
    );
    let (op, seq) = w.member_op(
        group,
        &bob,
        OpBody::Mute {
            user: carol.user,
            until: Timestamp(NOW.0 + 3_600_000),
        },
    );
    w.push_op(group, op, seq);
    let reason = |text: &str| format!(r#"{{"kind":"reason","op_seq":{seq},"text":"{text}"}}"#);
    let first = note(
        &w,
        &mut bob,
        group,
        &reason("Repeated put-downs after a warning"),
    );
    w.push_inbox(&[first]);
    let later = note(&w, &mut bob, group, &reason("no reason"));
    w.push_inbox(&[later]);
    let log = block_on(w.core.moderation_log(group)).unwrap();
    let mute = log.iter().find(|e| e.op_seq == seq).unwrap();
    assert_eq!(
        mute.reason.as_deref(),
        Some("Repeated put-downs after a warning")
    );
}

/// Re-review item 5: an early payload for a group this device does not hold stayed kept when
/// the server refused to serve that group for good (`no_such_group`), taking up room in the
/// budget for groups not held (256 in all) until the store was cleared.
#[test]
fn early_payloads_for_a_group_the_server_refuses_for_good_are_dropped() {
    let mut w = Device::new();
    let mut mallory = mallory();
    let made_up = GroupId([0xee; 16]);
    let epoch = confide_protocol::EpochRef {
        epoch: confide_protocol::Epoch(0),
        hash: confide_protocol::OpHash([0; 32]),
    };
    let sealed = mallory.seal(
        SealKind::SenderKey,
        &w.alice.keys(),
        made_up,
        epoch,
        b"a key for a group that does not exist",
    );
    let item = w.put_in_inbox(sealed);
    w.push_inbox(&[item]);
    assert!(
        w.synced().contains(&made_up),
        "the named group was asked about"
    );
    assert_eq!(block_on(w.store.keys("parked_keys", &[])).unwrap().len(), 0);
    assert!(w.server.lock().unwrap().inbox.is_empty(), "acknowledged");
}
