#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Known-answer vectors for the two sealed payloads whose types live in this crate: join
//! requests (PROTOCOL.md §8.9) and facilitator notes (§7.2). Every payload is serialized by the
//! client's own types ([`JoinRequestPayload`], [`FacilitatorNote`]) and sealed from fixed seeds
//! (as in `protocol/tests/vectors.rs`: `seed(n)` is the ChaCha20 keystream of the key `n n … n`),
//! and the files are compared byte for byte, so a change of either format fails here.
//!
//! Each case also carries the decision a receiving client must make, with the check that makes
//! it. The decisions are computed by `join_request_decision` and `note_decision` below, which
//! follow the receiving code (`ClientCore::receive_join_request`, `ClientCore::receive_note`) check by check
//! with the same protocol functions; that code needs a running core, so it is not called here.
//!
//! Regenerate (after a deliberate format change, which is a version bump) with
//! `CONFIDE_REGENERATE_VECTORS=1 cargo test -p confide-client vectors`.

use std::collections::HashMap;
use std::path::PathBuf;

use confide_protocol::encoding::b64_encode;
use confide_protocol::group_log::{
    GroupSettings, GroupState, InviteSecret, MemberEntry, Op, OpBody, Role, SignedOp,
    only_proven_device, verify_join_sig,
};
use confide_protocol::ids::{EpochRef, Timestamp};
use confide_protocol::primitives::labelled;
use confide_protocol::seal::{self, LABEL_SEAL_SIG, SealKind, SealedPayload};
use confide_protocol::{DeviceId, DeviceIdentity, GroupId, OpHash, UserId};
use rand_core::{Rng, SeedableRng};
use serde_json::{Value, json};

use super::FacilitatorNote;
use crate::joining::JoinRequestPayload;

type ChaCha = chacha20::ChaCha20Rng;

fn rng(seed: u8) -> ChaCha {
    ChaCha::from_seed([seed; 32])
}

fn seed_bytes(seed: u8) -> [u8; 32] {
    let mut out = [0u8; 32];
    rng(seed).fill_bytes(&mut out);
    out
}

/// Signing secret `seed(n)`, sealing secret `seed(n + 100)`: Alice is 1, Bob 2 (§13).
fn identity_from_seed(seed: u8) -> DeviceIdentity {
    DeviceIdentity::from_secret_bytes(
        &seed_bytes(seed),
        &seed_bytes(seed.wrapping_add(100)),
        Some(&seed_bytes(seed.wrapping_add(200))),
    )
}

/// Compares `actual` with `protocol/test-vectors/{name}.json`, or writes it when regenerating.
fn check(name: &str, actual: Value) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../protocol/test-vectors")
        .join(format!("{name}.json"));
    let pretty = serde_json::to_string_pretty(&actual).unwrap() + "\n";
    if std::env::var_os("CONFIDE_REGENERATE_VECTORS").is_some() {
        std::fs::write(&path, pretty).unwrap();
        return;
    }
    let stored = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "missing vector file {}: {e}; regenerate deliberately",
            path.display()
        )
    });
    let stored: Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(
        stored, actual,
        "test vector {name} changed: a payload format or a receiving rule is different"
    );
}

const T0: u64 = 1_767_225_600_000;
const GROUP: GroupId = GroupId([7; 16]);

fn entry(user: UserId, name: &str, devices: &[&DeviceIdentity]) -> MemberEntry {
    MemberEntry {
        user,
        display_name: name.into(),
        devices: devices.iter().map(|d| d.public_keys()).collect(),
        device_list: None,
    }
}

/// A group log as a client replays it, with the members of every epoch it went through (the
/// client's `GroupCtx::epochs`: who may send in which epoch).
struct Log {
    state: GroupState,
    ops: Vec<SignedOp>,
    epochs: HashMap<EpochRef, HashMap<DeviceId, UserId>>,
}

impl Log {
    /// Alice's group `07…07`, created at `T0` (the genesis op of `group-log.json`).
    fn new(alice: &DeviceIdentity) -> Log {
        let genesis = Op::genesis(
            GROUP,
            alice.device_id(),
            Timestamp(T0),
            entry(UserId([0x11; 16]), "Alice", &[alice]),
            GroupSettings::default(),
        )
        .sign(alice)
        .unwrap();
        let mut log = Log {
            state: GroupState::from_genesis(&genesis).unwrap(),
            ops: vec![genesis],
            epochs: HashMap::new(),
        };
        log.record_epoch();
        log
    }

    /// Appends the next op, claimed one second after the one before.
    fn push(&mut self, author: &DeviceIdentity, body: OpBody) -> SignedOp {
        let at = Timestamp(T0 + 1000 * (self.state.seq() + 1));
        let signed = self
            .state
            .next_op(author.device_id(), at, body)
            .sign(author)
            .unwrap();
        self.state.apply(&signed).unwrap();
        self.ops.push(signed.clone());
        self.record_epoch();
        signed
    }

    fn record_epoch(&mut self) {
        let devices = self
            .state
            .members()
            .iter()
            .flat_map(|(user, m)| m.entry.devices.iter().map(|k| (k.device, *user)))
            .collect();
        self.epochs.insert(self.state.epoch_ref(), devices);
    }

    fn ops_json(&self) -> Vec<Value> {
        self.ops.iter().map(op_json).collect()
    }
}

fn op_json(signed: &SignedOp) -> Value {
    json!({
        "signed": signed,
        "op_json": String::from_utf8(signed.op.clone()).unwrap(),
        "hash": signed.hash(),
    })
}

fn epoch_json(epoch: EpochRef) -> Value {
    json!({ "epoch": epoch.epoch, "epoch_hash": epoch.hash })
}

/// The exact bytes a sealed payload's inner signature covers (§4.3 step 3).
fn seal_signed_message(sealed: &SealedPayload, payload: &[u8]) -> Vec<u8> {
    let info = seal::seal_info(
        sealed.kind,
        &sealed.group,
        sealed.epoch_ref(),
        &sealed.recipient,
    );
    labelled(LABEL_SEAL_SIG, &[&info, sealed.sender.as_bytes(), payload])
}

/// `text` with `from` (which must occur exactly once) replaced: a variant of a payload that
/// keeps the writer's member order.
fn replace_once(text: &str, from: &str, to: &str) -> Vec<u8> {
    assert_eq!(
        text.matches(from).count(),
        1,
        "{from} occurs once in {text}"
    );
    text.replacen(from, to, 1).into_bytes()
}

/// What a facilitator client decides about a sealed join request, check by check as
/// `ClientCore::receive_join_request` makes them (§8.9): `Ok` keeps the request for approval; `Err`
/// lists every check that fails (`open` and `parse` stop at once, the others are all made).
fn join_request_decision(
    state: &GroupState,
    facilitator: &DeviceIdentity,
    sealed: &SealedPayload,
    clock: Timestamp,
) -> Result<JoinRequestPayload, Vec<&'static str>> {
    let bytes = seal::open(facilitator, sealed).map_err(|_| vec!["open"])?;
    let request =
        serde_json::from_slice::<JoinRequestPayload>(&bytes).map_err(|_| vec!["parse"])?;
    if sealed.group != state.group() {
        return Err(vec!["group"]);
    }
    let mut failed = Vec::new();
    if !state.invite(&request.invite).is_some_and(|i| {
        i.requires_approval && !i.revoked && i.uses < i.max_uses && i.expires_at > clock
    }) {
        failed.push("invite");
    }
    if !only_proven_device(&request.member).is_ok_and(|d| d.device == sealed.sender) {
        failed.push("device");
    }
    if verify_join_sig(
        &request.invite,
        &sealed.group,
        &request.member.user,
        &sealed.sender,
        &request.invite_sig,
    )
    .is_err()
    {
        failed.push("signature");
    }
    if request.member.validate().is_err() {
        failed.push("entry");
    }
    if failed.is_empty() {
        Ok(request)
    } else {
        Err(failed)
    }
}

#[test]
fn join_request_vectors() {
    let alice = identity_from_seed(1);
    let bob = identity_from_seed(2);
    let carol = identity_from_seed(21);
    let (ub, uc) = (UserId([0x22; 16]), UserId([0x33; 16]));
    let approval = InviteSecret::from_bytes(&seed_bytes(53));
    let direct = InviteSecret::from_bytes(&seed_bytes(54));
    let unknown = InviteSecret::from_bytes(&seed_bytes(55));
    let expires_at = Timestamp(T0 + 86_400_000);
    let mut log = Log::new(&alice);
    log.push(
        &alice,
        OpBody::Invite {
            invite: approval.id(),
            requires_approval: true,
            max_uses: 5,
            expires_at,
        },
    );
    log.push(
        &alice,
        OpBody::Invite {
            invite: direct.id(),
            requires_approval: false,
            max_uses: 5,
            expires_at,
        },
    );
    let epoch = log.state.epoch_ref();
    let clock = Timestamp(T0 + 10_000);
    let bob_entry = entry(ub, "Bob", &[&bob]);
    let request = |invite: &InviteSecret,
                   signed_for: (GroupId, UserId, DeviceId),
                   member: MemberEntry,
                   note: Option<&str>| {
        let (group, user, device) = signed_for;
        JoinRequestPayload {
            invite: invite.id(),
            invite_sig: invite.sign_join(&group, &user, &device),
            member,
            note: note.map(Into::into),
        }
    };
    let for_bob = (GROUP, ub, bob.device_id());
    let honest = request(
        &approval,
        for_bob,
        bob_entry.clone(),
        Some("I was referred by the clinic."),
    );
    let honest_json = String::from_utf8(serde_json::to_vec(&honest).unwrap()).unwrap();
    // HPKE ephemeral keys are drawn in order from one keystream.
    let mut hpke = rng(10);
    let mut seal_as = |from: &DeviceIdentity, payload: &[u8]| {
        seal::seal(
            from,
            &alice.public_keys(),
            SealKind::JoinRequest,
            GROUP,
            epoch,
            payload,
            &mut hpke,
        )
        .unwrap()
    };
    let sealed = seal_as(&bob, honest_json.as_bytes());
    let kept = join_request_decision(&log.state, &alice, &sealed, clock).unwrap();
    assert_eq!(kept.note.as_deref(), Some("I was referred by the clinic."));
    let request_vector = json!({
        "payload_json": honest_json,
        "seal_info": b64_encode(&seal::seal_info(SealKind::JoinRequest, &GROUP, epoch, &alice.device_id())),
        "signed_message": b64_encode(&seal_signed_message(&sealed, honest_json.as_bytes())),
        "sealed": sealed,
        "expected": "keep",
    });

    // What `GroupState::apply` says about the `add` that would approve a request: the log's
    // own code for what the facilitator's client refuses earlier (null: the log itself would
    // accept it, so only the client's check stops it).
    let add_error = |payload: &JoinRequestPayload| {
        let add = log
            .state
            .next_op(
                alice.device_id(),
                Timestamp(T0 + 3000),
                OpBody::Add {
                    member: payload.member.clone(),
                    invite: Some(payload.invite),
                    invite_sig: Some(payload.invite_sig),
                    invite_device: None,
                },
            )
            .sign(&alice)
            .unwrap();
        log.state.clone().apply(&add).err().map(|e| e.code())
    };

    struct Case {
        name: &'static str,
        sealed: SealedPayload,
        payload: Option<Vec<u8>>,
        clock: Timestamp,
        expected: Result<(), &'static str>,
        reason: &'static str,
    }
    let json_of = |p: &JoinRequestPayload| serde_json::to_vec(p).unwrap();
    let mut case = |name, from: &DeviceIdentity, payload: Vec<u8>, expected, reason| Case {
        name,
        sealed: seal_as(from, &payload),
        payload: Some(payload),
        clock,
        expected,
        reason,
    };
    let mut cases = vec![
        case(
            "note_null",
            &bob,
            json_of(&request(&approval, for_bob, bob_entry.clone(), None)),
            Ok(()),
            "no note: the writer writes null",
        ),
        case(
            "note_omitted",
            &bob,
            replace_once(
                &honest_json,
                r#","note":"I was referred by the clinic.""#,
                "",
            ),
            Ok(()),
            "an omitted note is read as null",
        ),
        case(
            "unknown_member",
            &bob,
            replace_once(&honest_json, r#""note":"#, r#""priority":1,"note":"#),
            Err("parse"),
            "an unknown member: the payload is parsed strictly",
        ),
        case(
            "lists_two_devices",
            &bob,
            json_of(&request(
                &approval,
                for_bob,
                entry(ub, "Bob", &[&bob, &carol]),
                None,
            )),
            Err("device"),
            "the entry lists Bob's device and Carol's: only the device that seals the request proves it holds its key, so an entry joining through an invite lists exactly that one device",
        ),
        case(
            "someone_elses_entry",
            &carol,
            json_of(&request(
                &approval,
                (GROUP, ub, carol.device_id()),
                bob_entry.clone(),
                None,
            )),
            Err("device"),
            "Carol holds the link and asks with Bob's entry (Bob's user and device), signing the invite for her own device: the entry's device is not the sealing device",
        ),
        case(
            "signature_for_another_user",
            &bob,
            json_of(&request(
                &approval,
                (GROUP, uc, bob.device_id()),
                bob_entry.clone(),
                None,
            )),
            Err("signature"),
            "invite_sig is over user 33…33, not the entry's user",
        ),
        case(
            "signature_for_another_group",
            &bob,
            json_of(&request(
                &approval,
                (GroupId([8; 16]), ub, bob.device_id()),
                bob_entry.clone(),
                None,
            )),
            Err("signature"),
            "invite_sig is over group 08…08, not the sealed payload's group",
        ),
        case(
            "invite_without_approval",
            &bob,
            json_of(&request(&direct, for_bob, bob_entry.clone(), None)),
            Err("invite"),
            "the invite (op 2) does not require approval: its holder joins directly, and a request through it is not one a facilitator is asked to approve",
        ),
        case(
            "unknown_invite",
            &bob,
            json_of(&request(&unknown, for_bob, bob_entry.clone(), None)),
            Err("invite"),
            "a correctly signed request through an invite (secret seed(55)) that is not in the log",
        ),
        case(
            "invalid_entry",
            &bob,
            json_of(&request(
                &approval,
                for_bob,
                entry(ub, "Bob\u{202e}", &[&bob]),
                None,
            )),
            Err("entry"),
            "the display name ends in U+202E RIGHT-TO-LEFT OVERRIDE, which no member entry may hold (§8.6)",
        ),
    ];
    cases.push(Case {
        name: "expired",
        sealed: sealed.clone(),
        payload: Some(honest_json.clone().into_bytes()),
        clock: expires_at,
        expected: Err("invite"),
        reason: "the kept request, received when the facilitator's clock reads expires_at: the invite must expire later than that",
    });
    cases.push(Case {
        name: "kind_relabelled",
        sealed: SealedPayload {
            kind: SealKind::FacilitatorNote,
            ..sealed.clone()
        },
        payload: None,
        clock,
        expected: Err("open"),
        reason: "the kept request's kind changed to facilitator_note: the kind is in the HPKE info, so it no longer opens",
    });
    let cases: Vec<Value> = cases
        .iter()
        .map(|c| {
            let decision = join_request_decision(&log.state, &alice, &c.sealed, c.clock);
            let (expected, check, add) = match (&decision, c.expected) {
                (Ok(kept), Ok(())) => {
                    assert_eq!(kept.note, None, "case {}", c.name);
                    ("keep", None, add_error(kept))
                }
                (Err(failed), Err(check)) => {
                    assert_eq!(failed, &[check], "case {}: {}", c.name, c.reason);
                    let parsed = c
                        .payload
                        .as_ref()
                        .and_then(|p| serde_json::from_slice::<JoinRequestPayload>(p).ok());
                    ("drop", Some(check), parsed.as_ref().and_then(add_error))
                }
                _ => panic!(
                    "case {}: the decision is now {:?}, not {:?} ({})",
                    c.name,
                    decision.as_ref().map(|_| ()),
                    c.expected,
                    c.reason
                ),
            };
            json!({
                "name": c.name,
                "payload_json": c.payload.as_ref().map(|p| String::from_utf8(p.clone()).unwrap()),
                "sealed": c.sealed,
                "facilitator_clock": c.clock,
                "expected": expected,
                "check": check,
                "add_error": add,
                "reason": c.reason,
            })
        })
        .collect();

    // Alice approves the honest request: op 3, which starts epoch 1.
    let approve = log.push(
        &alice,
        OpBody::Add {
            member: honest.member.clone(),
            invite: Some(honest.invite),
            invite_sig: Some(honest.invite_sig),
            invite_device: None,
        },
    );
    assert_eq!(log.state.role_of(&ub), Some(Role::Member));
    assert_eq!(log.state.invite(&approval.id()).map(|i| i.uses), Some(1));
    check(
        "join-request",
        json!({
            "description": "Join requests (PROTOCOL.md §8.9). Bob (user 22…22, not a member) asks to join Alice's group 07…07 through the approval invite of op 1 (secret seed(53)); op 2 is an invite without approval (secret seed(54)). Requests are sealed to Alice (kind join_request, epoch 0, its epoch hash the genesis hash), HPKE ephemeral keys drawn in order from the seed-10 keystream; Alice's sealing secret is seed(101). Carol is identity seed 21 (signing seed(21), sealing seed(121)). `expected`: keep = store the request for approval (durably, before acknowledging); drop = acknowledge and forget. `check` (the one that fails, all others pass): open = §4.6; parse = JoinRequestPayload, strictly; invite = in the facilitator's verified log the invite requires approval, is not revoked, has uses < max_uses and expires_at later than facilitator_clock; device = member lists exactly one device and it is the sealed payload's sender; signature = invite_sig verifies under the invite id over labelled(\"confide/v1/join\", group || member.user || sender); entry = member is a valid entry (§8.6). `add_error`: the error code GroupState::apply gives the `add` that would approve the request (null: the log would accept it, only the client's check stops it).",
            "alice_public": alice.public_keys(),
            "bob_public": bob.public_keys(),
            "carol_public": carol.public_keys(),
            "invite_secret": b64_encode(&seed_bytes(53)),
            "invite_id": approval.id(),
            "ops": log.ops_json()[..3],
            "epoch": epoch_json(epoch),
            "facilitator_clock": clock,
            "request": request_vector,
            "cases": cases,
            "approval": {
                "op": op_json(&approve),
                "epoch": epoch_json(log.state.epoch_ref()),
            },
        }),
    );
}

/// What a receiving client decides about a sealed facilitator note, check by check as
/// `ClientCore::receive_note` makes them (§7.2): `Ok("queue")` keeps an urgent request for the
/// facilitators, `Ok("keep")` keeps a reason for its op; `Err` lists every check that fails
/// (the client stops at the first; `open` and `parse` stop here too, and `sender` and
/// `moderator` cannot be checked without an epoch).
fn note_decision(
    log: &Log,
    receiver: &DeviceIdentity,
    sealed: &SealedPayload,
) -> Result<(&'static str, FacilitatorNote), Vec<&'static str>> {
    let mut failed = Vec::new();
    if !log
        .state
        .member_of_device(&receiver.device_id())
        .is_some_and(|(_, m)| m.role.is_moderator())
    {
        failed.push("recipient");
    }
    let from = match log.epochs.get(&sealed.epoch_ref()) {
        None => {
            failed.push("epoch");
            None
        }
        Some(devices) => {
            let from = devices.get(&sealed.sender).copied();
            if from.is_none() {
                failed.push("sender");
            }
            from
        }
    };
    let Ok(bytes) = seal::open(receiver, sealed) else {
        failed.push("open");
        return Err(failed);
    };
    let Ok(note) = serde_json::from_slice::<FacilitatorNote>(&bytes) else {
        failed.push("parse");
        return Err(failed);
    };
    let decision = match &note {
        FacilitatorNote::Urgent { .. } => "queue",
        FacilitatorNote::Reason { op_seq, .. } => {
            if from.is_some_and(|u| !log.state.role_of(&u).is_some_and(|r| r.is_moderator())) {
                failed.push("moderator");
            }
            let author = usize::try_from(*op_seq)
                .ok()
                .and_then(|i| log.ops.get(i))
                .and_then(|op| op.parse_unverified().ok())
                .map(|op| op.author);
            if author != Some(sealed.sender) {
                failed.push("author");
            }
            "keep"
        }
    };
    if failed.is_empty() {
        Ok((decision, note))
    } else {
        Err(failed)
    }
}

#[test]
fn facilitator_note_vectors() {
    let alice = identity_from_seed(1);
    let bob = identity_from_seed(2);
    let carol = identity_from_seed(21);
    let dave = identity_from_seed(22);
    let (ub, uc) = (UserId([0x22; 16]), UserId([0x33; 16]));
    let mut log = Log::new(&alice);
    for (user, name, id) in [(ub, "Bob", &bob), (uc, "Carol", &carol)] {
        log.push(
            &alice,
            OpBody::Add {
                member: entry(user, name, &[id]),
                invite: None,
                invite_sig: None,
                invite_device: None,
            },
        );
    }
    let epoch_1 = EpochRef {
        epoch: confide_protocol::Epoch(1),
        hash: log.ops[1].hash(),
    };
    log.push(
        &alice,
        OpBody::SetRole {
            user: uc,
            role: Role::CoFacilitator,
        },
    );
    log.push(
        &alice,
        OpBody::Mute {
            user: ub,
            until: Timestamp(T0 + 3_600_000),
        },
    );
    // An agreement Bob accepts, so that Bob, a plain member, has signed an op of his own (op 6).
    let text_hash = confide_protocol::envelope::pinned_commitment(
        &[0x0a; 32],
        confide_protocol::envelope::PinnedKind::Agreement,
        1,
        "Be kind. What is shared here stays here.",
    );
    log.push(
        &alice,
        OpBody::SetAgreement {
            version: 1,
            text_hash,
        },
    );
    log.push(
        &bob,
        OpBody::AcceptAgreement {
            version: 1,
            text_hash: Some(text_hash),
        },
    );
    let epoch = log.state.epoch_ref();
    let urgent = FacilitatorNote::Urgent {
        text: "I am not safe right now, please message me.".into(),
    };
    let reason = |op_seq| FacilitatorNote::Reason {
        op_seq,
        text: "Repeated personal attacks after a warning.".into(),
    };
    let urgent_json = String::from_utf8(serde_json::to_vec(&urgent).unwrap()).unwrap();
    let reason_json = String::from_utf8(serde_json::to_vec(&reason(4)).unwrap()).unwrap();
    let mut hpke = rng(11);
    let mut seal_as = |from: &DeviceIdentity, to: &DeviceIdentity, at: EpochRef, payload: &[u8]| {
        seal::seal(
            from,
            &to.public_keys(),
            SealKind::FacilitatorNote,
            GROUP,
            at,
            payload,
            &mut hpke,
        )
        .unwrap()
    };

    // The two shapes, as written: Bob's urgent request to Alice, Alice's reason for op 4 to Carol.
    let notes: Vec<Value> = [
        ("urgent", &bob, &alice, &urgent_json, "queue"),
        ("reason", &alice, &carol, &reason_json, "keep"),
    ]
    .into_iter()
    .map(|(name, from, to, payload, expected)| {
        let sealed = seal_as(from, to, epoch, payload.as_bytes());
        let (decision, _) = note_decision(&log, to, &sealed).unwrap();
        assert_eq!(decision, expected, "note {name}");
        json!({
            "name": name,
            "payload_json": payload,
            "seal_info": b64_encode(&seal::seal_info(SealKind::FacilitatorNote, &GROUP, epoch, &to.device_id())),
            "signed_message": b64_encode(&seal_signed_message(&sealed, payload.as_bytes())),
            "sealed": sealed,
            "expected": expected,
        })
    })
    .collect();

    let other_branch = EpochRef {
        epoch: epoch.epoch,
        hash: OpHash([0xee; 32]),
    };
    let json_of = |n: &FacilitatorNote| serde_json::to_vec(n).unwrap();
    type Spec<'a> = (
        &'static str,
        &'a DeviceIdentity,
        &'a DeviceIdentity,
        EpochRef,
        Vec<u8>,
        &'static str,
        &'static str,
    );
    let specs: Vec<Spec> = vec![
        (
            "recipient_not_a_moderator",
            &carol,
            &bob,
            epoch,
            urgent_json.clone().into_bytes(),
            "recipient",
            "Carol seals an urgent note to Bob, a plain member: notes are opened only on facilitator devices",
        ),
        (
            "epoch_of_another_branch",
            &bob,
            &alice,
            other_branch,
            urgent_json.clone().into_bytes(),
            "epoch",
            "sealed in epoch 2 under epoch hash ee…ee, not the hash of op 2: not an epoch of the log (another branch of a fork, §8.11)",
        ),
        (
            "sender_not_a_member",
            &dave,
            &alice,
            epoch,
            urgent_json.clone().into_bytes(),
            "sender",
            "Dave (identity seed 22) is in no epoch of the log",
        ),
        (
            "sender_not_a_member_in_that_epoch",
            &carol,
            &alice,
            epoch_1,
            urgent_json.clone().into_bytes(),
            "sender",
            "Carol seals in epoch 1, before op 2 added her",
        ),
        (
            "unknown_kind",
            &bob,
            &alice,
            epoch,
            replace_once(&urgent_json, r#""kind":"urgent""#, r#""kind":"question""#),
            "parse",
            "kind is neither urgent nor reason",
        ),
        (
            "unknown_member",
            &bob,
            &alice,
            epoch,
            replace_once(
                &urgent_json,
                r#""kind":"urgent","#,
                r#""kind":"urgent","op_seq":4,"#,
            ),
            "parse",
            "op_seq is not a member of an urgent note: notes are parsed strictly",
        ),
        (
            "reason_without_op_seq",
            &alice,
            &carol,
            epoch,
            replace_once(&reason_json, r#""op_seq":4,"#, ""),
            "parse",
            "a reason must name its op",
        ),
        (
            "reason_from_a_plain_member",
            &bob,
            &alice,
            epoch,
            json_of(&reason(6)),
            "moderator",
            "Bob, a plain member, gives a reason for his own op 6: only a moderator's reason is kept",
        ),
        (
            "reason_for_someone_elses_op",
            &carol,
            &alice,
            epoch,
            json_of(&reason(4)),
            "author",
            "Carol, a co-facilitator, gives a reason for op 4, which Alice signed",
        ),
        (
            "reason_for_an_op_not_in_the_log",
            &alice,
            &carol,
            epoch,
            json_of(&reason(9)),
            "author",
            "op 9 is not in the receiver's log",
        ),
    ];
    struct NoteCase<'a> {
        name: &'static str,
        to: &'a DeviceIdentity,
        sealed: SealedPayload,
        payload: Option<Vec<u8>>,
        check: &'static str,
        reason: &'static str,
    }
    let mut cases: Vec<NoteCase> = specs
        .into_iter()
        .map(|(name, from, to, at, payload, check, reason)| NoteCase {
            name,
            to,
            sealed: seal_as(from, to, at, &payload),
            payload: Some(payload),
            check,
            reason,
        })
        .collect();
    let relabelled = {
        let sealed = seal_as(&bob, &alice, epoch, urgent_json.as_bytes());
        SealedPayload {
            kind: SealKind::Report,
            ..sealed
        }
    };
    cases.push(NoteCase {
        name: "kind_relabelled",
        to: &alice,
        sealed: relabelled,
        payload: None,
        check: "open",
        reason: "Bob's urgent note with its kind changed to report: the kind is in the HPKE info, so it no longer opens (a client routes it as a report, which fails to open the same way)",
    });
    let cases: Vec<Value> = cases
        .iter()
        .map(
            |NoteCase {
                 name,
                 to,
                 sealed,
                 payload,
                 check,
                 reason,
             }| {
                let decision = note_decision(&log, to, sealed).map(|(d, _)| d);
                assert_eq!(decision, Err(vec![*check]), "case {name}: {reason}");
                json!({
                    "name": name,
                    "recipient": to.device_id(),
                    "payload_json": payload.as_ref().map(|p| String::from_utf8(p.clone()).unwrap()),
                    "sealed": sealed,
                    "expected": "drop",
                    "check": check,
                    "reason": reason,
                })
            },
        )
        .collect();
    check(
        "facilitator-note",
        json!({
            "description": "Facilitator notes (PROTOCOL.md §7.2) in Alice's group 07…07: op 1 adds Bob (user 22…22), op 2 adds Carol (user 33…33, identity seed 21) and starts epoch 2, op 3 makes Carol co-facilitator, op 4 is Alice's mute of Bob, op 5 sets an agreement (the one of pinned-message.json) and op 6 is Bob's acceptance of it. Notes are sealed (kind facilitator_note) in epoch 2 unless a case says otherwise, HPKE ephemeral keys drawn in order from the seed-11 keystream. `expected`: queue = an urgent request kept for the facilitators (durably, before acknowledging); keep = the reason kept for op op_seq; drop = acknowledge and forget. `check` (the one that fails; the receiver checks in this order): recipient = the receiving device belongs to a current moderator; epoch = (epoch, epoch_hash) is an epoch of the receiver's verified log; sender = the sender was a member device in that epoch; open = §4.6; parse = the note, strictly; moderator = (reason only) the sender's user is a current moderator; author = (reason only) the op at op_seq in the receiver's log was signed by the sending device. Senders refuse a text over 4000 bytes; receivers do not check it.",
            "alice_public": alice.public_keys(),
            "bob_public": bob.public_keys(),
            "carol_public": carol.public_keys(),
            "dave_public": dave.public_keys(),
            "ops": log.ops_json(),
            "epoch": epoch_json(epoch),
            "notes": notes,
            "cases": cases,
        }),
    );
}
