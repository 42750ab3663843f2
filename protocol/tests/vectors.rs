#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Known-answer test vectors. Every construction is run from fixed seeds and its inputs,
//! intermediate values and outputs are compared byte for byte with the JSON files in
//! `protocol/test-vectors/`. Any change to a byte of the formats fails here.
//!
//! To regenerate after a deliberate format change (which is a protocol version bump):
//! `CONFIDE_REGENERATE_VECTORS=1 cargo test -p confide-protocol --test vectors`.

use confide_protocol::encoding::b64_encode;
use confide_protocol::envelope::Envelope;
use confide_protocol::identity::{self, DeviceIdentity, KdfParams};
use confide_protocol::ids::{Epoch, EpochRef, GroupId, OpHash, UserId};
use confide_protocol::seal::{self, SealKind};
use confide_protocol::sender_key::{ReceiverChain, SenderChain};
use rand_core::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::path::PathBuf;

fn rng(seed: u8) -> chacha20::ChaCha20Rng {
    chacha20::ChaCha20Rng::from_seed([seed; 32])
}

fn seed_bytes(seed: u8) -> [u8; 32] {
    let mut out = [0u8; 32];
    rng(seed).fill_bytes(&mut out);
    out
}

/// Compares `actual` with the stored vector file, or writes it when regenerating.
fn check(name: &str, actual: Value) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("test-vectors")
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
        "test vector {name} changed: the wire format or a construction is different"
    );
}

/// Epoch `n`, started by an op whose hash is `n` repeated.
fn ep(n: u64) -> EpochRef {
    EpochRef {
        epoch: Epoch(n),
        hash: OpHash([n as u8; 32]),
    }
}

fn identity_from_seed(seed: u8) -> DeviceIdentity {
    DeviceIdentity::from_secret_bytes(&seed_bytes(seed), &seed_bytes(seed.wrapping_add(100)))
}

#[test]
fn identity_vectors() {
    let id = identity_from_seed(1);
    let keys = id.public_keys();
    let exported = id
        .export(
            b"correct horse battery staple",
            KdfParams::INSECURE_FOR_TESTS,
            &mut rng(2),
        )
        .unwrap();
    let signature = id.sign("confide/v1/test", &[b"hello"]);
    check(
        "identity",
        json!({
            "signing_secret": b64_encode(&seed_bytes(1)),
            "sealing_secret": b64_encode(&seed_bytes(101)),
            "public_keys": keys,
            "signature_test": { "label": "confide/v1/test", "message": b64_encode(b"hello"), "signature": signature },
            "export": { "passphrase": "correct horse battery staple", "exported": exported },
        }),
    );
    let back = DeviceIdentity::import(&exported, b"correct horse battery staple").unwrap();
    assert_eq!(back.device_id(), id.device_id());
}

#[test]
fn safety_number_vectors() {
    let a = identity_from_seed(1).device_id();
    let b = identity_from_seed(2).device_id();
    let (ua, ub) = (UserId([0x11; 16]), UserId([0x22; 16]));
    check(
        "safety-number",
        json!({
            "a": { "user": ua, "device": a, "fingerprint": identity::fingerprint_digits(&ua, &a) },
            "b": { "user": ub, "device": b, "fingerprint": identity::fingerprint_digits(&ub, &b) },
            "safety_number": identity::safety_number((&ua, &a), (&ub, &b)),
        }),
    );
}

#[test]
fn seal_vectors() {
    let alice = identity_from_seed(1);
    let bob = identity_from_seed(2);
    let payload = b"sender key distribution bytes";
    let sealed = seal::seal(
        &alice,
        &bob.public_keys(),
        SealKind::SenderKey,
        GroupId([7; 16]),
        ep(3),
        payload,
        &mut rng(9),
    )
    .unwrap();
    check(
        "seal",
        json!({
            "sender_public": alice.public_keys(),
            "recipient_public": bob.public_keys(),
            "recipient_sealing_secret": b64_encode(&seed_bytes(102)),
            "info": b64_encode(&seal::seal_info(SealKind::SenderKey, &GroupId([7; 16]), ep(3), &bob.device_id())),
            "payload": b64_encode(payload),
            "sealed": sealed,
        }),
    );
    assert_eq!(&*seal::open(&bob, &sealed).unwrap(), payload);
}

#[test]
fn sender_key_vectors() {
    let mut chain = SenderChain::generate(&mut rng(3));
    let distribution = b64_encode(&chain.distribution());
    let keys: Vec<Value> = (0..3)
        .map(|_| {
            let (i, k) = chain.next_message_key().unwrap();
            json!({ "iteration": i, "aead_key": b64_encode(k.key.as_ref()), "nonce": b64_encode(&k.nonce) })
        })
        .collect();
    check(
        "sender-key",
        json!({ "distribution": distribution, "message_keys": keys }),
    );
}

#[test]
fn envelope_vectors() {
    let alice = identity_from_seed(1);
    let mut chain = SenderChain::generate(&mut rng(3));
    let distribution = chain.distribution();
    let body = br#"{"sent_at":1767225600000,"body":{"type":"text","text":"Hello, group"}}"#;
    let mut fk_rng = rng(4);
    let mut franking_key = [0u8; 32];
    rng(4).fill_bytes(&mut franking_key);
    let env = Envelope::seal(
        &alice,
        GroupId([7; 16]),
        ep(2),
        &mut chain,
        body,
        &mut fk_rng,
    )
    .unwrap();
    check(
        "envelope",
        json!({
            "sender_public": alice.public_keys(),
            "sender_key_distribution": b64_encode(&distribution),
            "franking_key": b64_encode(&franking_key),
            "body": b64_encode(body),
            "header": b64_encode(&env.header()),
            "message_id": env.message_id(),
            "envelope": env,
        }),
    );
    let mut receiver = ReceiverChain::from_distribution(&distribution).unwrap();
    let opened = env.open(&mut receiver).unwrap();
    assert_eq!(&*opened.body, body);
    assert_eq!(*opened.franking_key, franking_key);
}

#[test]
fn group_log_vectors() {
    use confide_protocol::group_log::{
        GroupSettings, GroupState, InviteSecret, MemberEntry, Op, OpBody, Role, verify_log,
    };
    use confide_protocol::ids::Timestamp;
    let alice = identity_from_seed(1);
    let bob = identity_from_seed(2);
    let (ua, ub) = (UserId([0x11; 16]), UserId([0x22; 16]));
    let group = GroupId([7; 16]);
    let entry = |user, name: &str, id: &DeviceIdentity| MemberEntry {
        user,
        display_name: name.into(),
        devices: vec![id.public_keys()],
        device_list: None,
    };
    let t0 = 1_767_225_600_000u64;
    let genesis = Op::genesis(
        group,
        alice.device_id(),
        Timestamp(t0),
        entry(ua, "Alice", &alice),
        GroupSettings::default(),
    )
    .sign(&alice)
    .unwrap();
    let mut state = GroupState::from_genesis(&genesis).unwrap();
    let invite = InviteSecret::from_bytes(&seed_bytes(50));
    let mut log = vec![genesis];
    let mut push = |state: &mut GroupState, author: &DeviceIdentity, at: u64, body: OpBody| {
        let signed = state
            .next_op(author.device_id(), Timestamp(at), body)
            .sign(author)
            .unwrap();
        state.apply(&signed).unwrap();
        log.push(signed);
    };
    push(
        &mut state,
        &alice,
        t0 + 1000,
        OpBody::Invite {
            invite: invite.id(),
            requires_approval: false,
            max_uses: 1,
            expires_at: Timestamp(t0 + 86_400_000),
        },
    );
    let invite_sig = invite.sign_join(&group, &ub, &bob.device_id());
    push(
        &mut state,
        &bob,
        t0 + 2000,
        OpBody::Join {
            invite: invite.id(),
            member: entry(ub, "Bob", &bob),
            invite_sig,
        },
    );
    push(
        &mut state,
        &alice,
        t0 + 3000,
        OpBody::SetRole {
            user: ub,
            role: Role::CoFacilitator,
        },
    );
    push(
        &mut state,
        &alice,
        t0 + 4000,
        OpBody::SetSlowMode { seconds: 30 },
    );
    let ops: Vec<Value> = log
        .iter()
        .map(|s| {
            json!({
                "signed": s,
                "op_json": String::from_utf8(s.op.clone()).unwrap(),
                "hash": s.hash(),
            })
        })
        .collect();
    let replayed = verify_log(&log).unwrap();
    assert_eq!(replayed, state);
    check(
        "group-log",
        json!({
            "alice_public": alice.public_keys(),
            "bob_public": bob.public_keys(),
            "invite_secret": b64_encode(&seed_bytes(50)),
            "ops": ops,
            "final": {
                "seq": state.seq(),
                "epoch": state.epoch(),
                "head": state.head(),
                "members": state.members().len(),
                "slow_mode_seconds": state.slow_mode_seconds(),
            },
        }),
    );
}

#[test]
fn auth_frame_vectors() {
    use confide_protocol::frames::{self, ClientFrame, PROTOCOL_VERSION, ServerFrame};
    use confide_protocol::ids::{RequestId, Timestamp};
    let alice = identity_from_seed(1);
    let nonce = seed_bytes(60);
    let challenge = ServerFrame::Challenge {
        version: PROTOCOL_VERSION,
        server_name: "localhost".into(),
        nonce,
        server_time: Timestamp(1_767_225_600_000),
    };
    let register = ClientFrame::Register {
        id: RequestId(1),
        version: PROTOCOL_VERSION,
        user: UserId([0x11; 16]),
        display_name: "Alice".into(),
        keys: alice.public_keys(),
        registration_token: None,
        device_list: None,
        signature: frames::sign_auth(&alice, "localhost", &nonce),
    };
    check(
        "auth",
        json!({
            "dialled_host": "localhost",
            "auth_message": b64_encode(&frames::auth_message("localhost", &nonce, &alice.device_id())),
            "challenge": serde_json::from_str::<Value>(&challenge.to_json().unwrap()).unwrap(),
            "register": serde_json::from_str::<Value>(&register.to_json().unwrap()).unwrap(),
        }),
    );
}

/// The strict Ed25519 rule of PROTOCOL.md §3.3, as negative (and two positive) vectors in the
/// spirit of "Taming the many EdDSAs" (Chalkias, Garillot, Nikolaenko, 2020). Each case is built
/// here from fixed inputs, its intended decision is asserted against the code's decision, and
/// the file is compared byte for byte, so a change of either the rule or a byte fails.
mod ed25519_rules {
    use super::*;
    use confide_protocol::envelope::{Envelope, LABEL_ENVELOPE_SIG};
    use confide_protocol::group_log::{LABEL_OP, Op, OpBody, SignedOp};
    use confide_protocol::identity::Signature;
    use confide_protocol::ids::{DeviceId, Timestamp};
    use confide_protocol::primitives::labelled;
    use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
    use curve25519_dalek::scalar::Scalar;
    use curve25519_dalek::traits::{Identity, IsIdentity};
    use sha2::{Digest, Sha512};

    /// The group order L, little-endian.
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    /// A point of order 8 (the usual one from the small-order blocklists).
    const ORDER_8: [u8; 32] = [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67,
        0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac,
        0x03, 0x7a,
    ];
    /// The identity point, canonically encoded (y = 1).
    const IDENTITY: [u8; 32] = {
        let mut b = [0u8; 32];
        b[0] = 1;
        b
    };

    /// `p + k` as a 32-byte little-endian y coordinate with a clear sign bit: a non-canonical
    /// encoding of y = k.
    fn p_plus(k: u8) -> [u8; 32] {
        let mut b = [0xff; 32];
        b[0] = 0xed + k;
        b[31] = 0x7f;
        b
    }

    fn point(bytes: [u8; 32]) -> EdwardsPoint {
        CompressedEdwardsY(bytes).decompress().unwrap()
    }

    /// A public key as the vectors build it: the encoding `bytes` of `[a]B + torsion`.
    struct RawKey {
        bytes: [u8; 32],
        a: Scalar,
        torsion: EdwardsPoint,
    }

    /// The key of [`identity_from_seed`]`(1)`, with its RFC 8032 secret scalar.
    fn honest_key() -> RawKey {
        let h: [u8; 64] = Sha512::digest(seed_bytes(1)).into();
        let mut clamped = [0u8; 32];
        clamped.copy_from_slice(&h[..32]);
        clamped[0] &= 248;
        clamped[31] &= 127;
        clamped[31] |= 64;
        let a = Scalar::from_bytes_mod_order(clamped);
        let bytes = EdwardsPoint::mul_base(&a).compress().to_bytes();
        assert_eq!(
            DeviceId(bytes),
            identity_from_seed(1).device_id(),
            "the honest key is seed 1's device"
        );
        RawKey {
            bytes,
            a,
            torsion: EdwardsPoint::identity(),
        }
    }

    fn small_key(bytes: [u8; 32]) -> RawKey {
        RawKey {
            bytes,
            a: Scalar::ZERO,
            torsion: point(bytes),
        }
    }

    /// `[a]B + T` with `a` from seed 7 and `T` of order 8.
    fn mixed_key() -> RawKey {
        let a = Scalar::from_bytes_mod_order(seed_bytes(7));
        let torsion = point(ORDER_8);
        let bytes = (EdwardsPoint::mul_base(&a) + torsion).compress().to_bytes();
        RawKey { bytes, a, torsion }
    }

    fn challenge(r: &[u8; 32], a: &[u8; 32], message: &[u8]) -> Scalar {
        let h: [u8; 64] = Sha512::new()
            .chain_update(r)
            .chain_update(a)
            .chain_update(message)
            .finalize()
            .into();
        Scalar::from_bytes_mod_order_wide(&h)
    }

    fn signature(r: [u8; 32], s: Scalar) -> [u8; 64] {
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&r);
        sig[32..].copy_from_slice(s.as_bytes());
        sig
    }

    /// `R = [r]B`, `S = r + k·a`, with the nonce `r` stepped deterministically until
    /// `want(k·T is the identity)`: then `[S]B − [k]A = R − k·T`, so the cofactorless equation
    /// holds exactly when `k·T` vanishes, and the cofactored one always holds.
    fn sign_raw(key: &RawKey, message: &[u8], cofactorless_holds: bool) -> [u8; 64] {
        for counter in 0u32.. {
            let h: [u8; 64] = Sha512::new()
                .chain_update(b"confide/test/nonce")
                .chain_update(counter.to_be_bytes())
                .chain_update(message)
                .finalize()
                .into();
            let r = Scalar::from_bytes_mod_order_wide(&h);
            let big_r = EdwardsPoint::mul_base(&r).compress().to_bytes();
            let k = challenge(&big_r, &key.bytes, message);
            if (k * key.torsion).is_identity() == cofactorless_holds {
                return signature(big_r, r + k * key.a);
            }
        }
        unreachable!("a 1-in-8 event happens within 2^32 tries")
    }

    /// `S = k·a` with a chosen `R`: `[S]B − [k]A` is then the identity, so the cofactorless
    /// equation holds (on points) only for `R` = identity, and the cofactored one for any
    /// small-order `R`.
    fn sign_with_r(key: &RawKey, r: [u8; 32], message: &[u8]) -> [u8; 64] {
        let k = challenge(&r, &key.bytes, message);
        signature(r, k * key.a)
    }

    /// Adds L to the `S` half: the same value modulo L, in a non-canonical encoding.
    fn add_l(mut sig: [u8; 64]) -> [u8; 64] {
        let mut carry = 0u16;
        for (s, l) in sig[32..].iter_mut().zip(L) {
            let sum = u16::from(*s) + u16::from(l) + carry;
            *s = sum as u8;
            carry = sum >> 8;
        }
        assert_eq!(carry, 0, "S + L fits in 256 bits");
        sig
    }

    #[derive(Clone, Copy)]
    enum Sig {
        /// A real signature (RFC 8032 for the honest key; [`sign_raw`] otherwise) on which the
        /// cofactorless equation holds.
        Valid,
        /// The cofactored equation holds, the cofactorless one does not.
        CofactoredOnly,
        /// `S + L` of a valid signature.
        SPlusL,
        /// `R` given, `S = k·a`.
        WithR([u8; 32]),
        /// `R` = identity, `S` = 0.
        Zero,
    }

    struct Case {
        name: &'static str,
        key: fn() -> RawKey,
        sig: Sig,
        accept: bool,
        reason: &'static str,
    }

    fn cases() -> Vec<Case> {
        let mut not_a_point = [0u8; 32];
        not_a_point[0] = 2; // y = 2 is not on the curve
        vec![
            Case {
                name: "valid",
                key: honest_key,
                sig: Sig::Valid,
                accept: true,
                reason: "control: an ordinary RFC 8032 signature",
            },
            Case {
                name: "s_not_canonical",
                key: honest_key,
                sig: Sig::SPlusL,
                accept: false,
                reason: "S >= L (S + L of the valid signature; the equation holds modulo L and the top three bits are clear)",
            },
            Case {
                name: "small_order_r",
                key: honest_key,
                sig: Sig::WithR(IDENTITY),
                accept: false,
                reason: "R is the identity (small order); S = k*a, so the cofactorless equation holds",
            },
            Case {
                name: "small_order_r_cofactored_only",
                key: honest_key,
                sig: Sig::WithR(ORDER_8),
                accept: false,
                reason: "R has order 8; S = k*a, so only the cofactored equation holds",
            },
            Case {
                name: "non_canonical_r",
                key: honest_key,
                sig: Sig::WithR(p_plus(1)),
                accept: false,
                reason: "R is y = p + 1, a non-canonical encoding of the identity (so also small order); the equation holds on points but not on R's encoding",
            },
            Case {
                name: "r_not_a_point",
                key: honest_key,
                sig: Sig::WithR(not_a_point),
                accept: false,
                reason: "R (y = 2) does not decode to a curve point",
            },
            Case {
                name: "small_order_a",
                key: || small_key(ORDER_8),
                sig: Sig::Valid,
                accept: false,
                reason: "A has order 8; R = [r]B, S = r with k*A = 0, so the cofactorless equation holds",
            },
            Case {
                name: "identity_a_zero_signature",
                key: || small_key(IDENTITY),
                sig: Sig::Zero,
                accept: false,
                reason: "A and R are the identity and S = 0: without the small-order checks this verifies for every message",
            },
            Case {
                name: "non_canonical_a",
                key: || small_key(p_plus(1)),
                sig: Sig::Valid,
                accept: false,
                reason: "A is y = p + 1, a non-canonical encoding of the identity (so also small order); the cofactorless equation holds",
            },
            Case {
                name: "non_canonical_a_negative_zero",
                key: || {
                    let mut bytes = IDENTITY;
                    bytes[31] |= 0x80;
                    small_key(bytes)
                },
                sig: Sig::Valid,
                accept: false,
                reason: "A is the identity with the sign bit set on x = 0 (non-canonical, small order); the cofactorless equation holds",
            },
            Case {
                name: "mixed_order_a",
                key: mixed_key,
                sig: Sig::Valid,
                accept: true,
                reason: "A = [a]B + T (T of order 8) is accepted as a key; the nonce was chosen so that k*T = 0, so the cofactorless equation holds",
            },
            Case {
                name: "mixed_order_a_cofactored_only",
                key: mixed_key,
                sig: Sig::CofactoredOnly,
                accept: false,
                reason: "A = [a]B + T; k*T != 0, so only the cofactored equation holds",
            },
        ]
    }

    /// The signature of `case` over `message`, made with its key (whose encoding the caller
    /// has already put into `message` where the format requires).
    fn sign_case(
        case: &Case,
        key: &RawKey,
        message: &[u8],
        rfc8032: impl Fn() -> [u8; 64],
    ) -> [u8; 64] {
        match case.sig {
            Sig::Valid if key.bytes == honest_key().bytes => rfc8032(),
            Sig::Valid => sign_raw(key, message, true),
            Sig::CofactoredOnly => sign_raw(key, message, false),
            Sig::SPlusL => add_l(rfc8032()),
            Sig::WithR(r) => sign_with_r(key, r, message),
            Sig::Zero => signature(IDENTITY, Scalar::ZERO),
        }
    }

    fn decision(accept: bool) -> &'static str {
        if accept { "accept" } else { "reject" }
    }

    fn assert_decision(kind: &str, case: &Case, accepted: bool) {
        assert_eq!(
            accepted,
            case.accept,
            "{kind} case {}: the code now decides {} ({})",
            case.name,
            decision(accepted),
            case.reason
        );
    }

    #[test]
    fn ed25519_rule_vectors() {
        let signer = identity_from_seed(1);

        let mut mixed_y3 = [0u8; 32];
        mixed_y3[0] = 3;
        let key_cases: Vec<([u8; 32], bool, &str)> = vec![
            (honest_key().bytes, true, "an ordinary key"),
            (
                mixed_key().bytes,
                true,
                "mixed order ([a]B + T, T of order 8): accepted",
            ),
            (mixed_y3, true, "y = 3, canonical, mixed order: accepted"),
            (IDENTITY, false, "the identity (small order)"),
            (ORDER_8, false, "a point of order 8"),
            (
                p_plus(3),
                false,
                "y = p + 3: non-canonical encoding of the mixed-order point y = 3",
            ),
            (
                p_plus(1),
                false,
                "y = p + 1: non-canonical encoding of the identity",
            ),
            (
                {
                    let mut b = IDENTITY;
                    b[31] |= 0x80;
                    b
                },
                false,
                "the identity with the sign bit set on x = 0",
            ),
            (
                {
                    let mut b = [0u8; 32];
                    b[0] = 2;
                    b
                },
                false,
                "y = 2 is not on the curve",
            ),
        ];
        let public_keys: Vec<Value> = key_cases
            .iter()
            .map(|(key, accept, reason)| {
                let accepted = identity::check_public_key(key).is_ok();
                assert_eq!(accepted, *accept, "public key case {reason}");
                json!({ "public_key": b64_encode(key), "expected": decision(*accept), "reason": reason })
            })
            .collect();

        // Plain signatures over labelled("confide/v1/test", "ed25519 edge case").
        let (label, part): (&str, &[u8]) = ("confide/v1/test", b"ed25519 edge case");
        let message = labelled(label, &[part]);
        let signatures: Vec<Value> = cases()
            .iter()
            .map(|case| {
                let key = (case.key)();
                let sig = sign_case(case, &key, &message, || signer.sign(label, &[part]).0);
                let accepted =
                    identity::verify(&DeviceId(key.bytes), label, &[part], &Signature(sig)).is_ok();
                assert_decision("signature", case, accepted);
                json!({
                    "name": case.name,
                    "public_key": b64_encode(&key.bytes),
                    "label": label,
                    "message": b64_encode(part),
                    "signed_bytes": b64_encode(&message),
                    "signature": b64_encode(&sig),
                    "expected": decision(case.accept),
                    "reason": case.reason,
                })
            })
            .collect();

        // A whole signed op (set_slow_mode) whose author is each case's key.
        let signed_ops: Vec<Value> = cases()
            .iter()
            .map(|case| {
                let key = (case.key)();
                let op = Op {
                    v: 1,
                    group: GroupId([7; 16]),
                    seq: 4,
                    prev: OpHash([4; 32]),
                    author: DeviceId(key.bytes),
                    at: Timestamp(1_767_225_604_000),
                    body: OpBody::SetSlowMode { seconds: 30 },
                };
                let op_bytes = serde_json::to_vec(&op).unwrap();
                let message = labelled(LABEL_OP, &[&op_bytes]);
                let sig = sign_case(case, &key, &message, || signer.sign(LABEL_OP, &[&op_bytes]).0);
                let signed = SignedOp { op: op_bytes, sig: Signature(sig) };
                let accepted = signed.verify().is_ok();
                assert_decision("signed op", case, accepted);
                json!({ "name": case.name, "signed": signed, "expected": decision(case.accept), "reason": case.reason })
            })
            .collect();

        // A whole envelope (the one of envelope_vectors) whose sender is each case's key.
        let mut chain = SenderChain::generate(&mut rng(3));
        let body = br#"{"sent_at":1767225600000,"body":{"type":"text","text":"Hello, group"}}"#;
        let honest = Envelope::seal(
            &signer,
            GroupId([7; 16]),
            ep(2),
            &mut chain,
            body,
            &mut rng(4),
        )
        .unwrap();
        let envelopes: Vec<Value> = cases()
            .iter()
            .map(|case| {
                let key = (case.key)();
                let mut env = honest.clone();
                env.sender = DeviceId(key.bytes);
                let header = env.header();
                let parts: [&[u8]; 3] = [&header, &env.franking_tag, &env.ciphertext];
                let message = labelled(LABEL_ENVELOPE_SIG, &parts);
                let sig = sign_case(case, &key, &message, || signer.sign(LABEL_ENVELOPE_SIG, &parts).0);
                env.signature = Signature(sig);
                let accepted = env.verify().is_ok();
                assert_decision("envelope", case, accepted);
                json!({ "name": case.name, "envelope": env, "expected": decision(case.accept), "reason": case.reason })
            })
            .collect();

        check(
            "ed25519-rules",
            json!({
                "rule": "PROTOCOL.md §3.3: accept iff A is the canonical encoding of a point not of small order, S < L, R decodes to a point not of small order, and encode([S]B - [k]A) == R byte for byte (cofactorless), k = SHA-512(R || A || M) mod L",
                "public_keys": public_keys,
                "signatures": signatures,
                "signed_ops": signed_ops,
                "envelopes": envelopes,
            }),
        );
    }
}

/// The invite proofs (§8.9) and pinned-text commitments (§6.7): signed and MACed messages that
/// the other files show only inside larger structures.
#[test]
fn invite_proof_and_pinned_commitment_vectors() {
    use confide_protocol::envelope::{PinnedKind, pinned_commitment};
    use confide_protocol::group_log::{InviteSecret, verify_invite_sync, verify_join_sig};
    let invite = InviteSecret::from_bytes(&seed_bytes(50));
    let group = GroupId([7; 16]);
    let bob = identity_from_seed(2);
    let user = UserId([0x22; 16]);
    let sync_sig = invite.sign_sync(&group, &bob.device_id());
    let join_sig = invite.sign_join(&group, &user, &bob.device_id());
    // The signatures verify as the server and clients check them.
    verify_invite_sync(&invite.id(), &group, &bob.device_id(), &sync_sig).unwrap();
    verify_join_sig(&invite.id(), &group, &user, &bob.device_id(), &join_sig).unwrap();
    let key = seed_bytes(51);
    let agreement = "Be kind. What is shared here stays here.";
    let crisis = "In an emergency call 112.";
    check(
        "invite-and-pinned",
        json!({
            "invite_secret": b64_encode(&seed_bytes(50)),
            "invite_id": invite.id(),
            "group": group,
            "device": bob.device_id(),
            "user": user,
            "invite_proof": {
                "signed_message": b64_encode(&confide_protocol::primitives::labelled(
                    "confide/v1/invite-sync",
                    &[group.as_bytes(), bob.device_id().as_bytes()],
                )),
                "signature": sync_sig,
            },
            "join": {
                "signed_message": b64_encode(&confide_protocol::primitives::labelled(
                    "confide/v1/join",
                    &[group.as_bytes(), user.as_bytes(), bob.device_id().as_bytes()],
                )),
                "invite_sig": join_sig,
            },
            "pinned": {
                "key": b64_encode(&key),
                "agreement": {
                    "version": 3,
                    "text": agreement,
                    "commitment": b64_encode(&pinned_commitment(&key, PinnedKind::Agreement, 3, agreement)),
                },
                "crisis_resources": {
                    "version": 0,
                    "text": crisis,
                    "commitment": b64_encode(&pinned_commitment(&key, PinnedKind::CrisisResources, 0, crisis)),
                },
            },
        }),
    );
}

/// What a receiving client does with a message body from `sender`, as PROTOCOL.md §6.7 and
/// §11.2 steps 13 and 16 say (the reference client's `receive_pinned`): `reject` a body that
/// does not parse as `MessageContent`; `ignore` a pinned text that is not from a current
/// moderator's device or whose commitment is not what the log currently commits to; `accept`
/// one that is. Returns the decision and the check that decided it.
fn pinned_decision(
    state: &confide_protocol::group_log::GroupState,
    sender: &confide_protocol::ids::DeviceId,
    body: &[u8],
) -> (&'static str, &'static str) {
    use confide_protocol::envelope::{ContentBody, MessageContent, PinnedKind, pinned_commitment};
    let Ok(content) = serde_json::from_slice::<MessageContent>(body) else {
        return ("reject", "parse");
    };
    let ContentBody::Pinned {
        kind,
        version,
        text,
        key,
    } = content.body
    else {
        return ("not_pinned", "type");
    };
    if !state
        .member_of_device(sender)
        .is_some_and(|(_, m)| m.role.is_moderator())
    {
        return ("ignore", "moderator");
    }
    let commitment = pinned_commitment(&key, kind, version, &text);
    let current = match kind {
        PinnedKind::Agreement => state
            .agreement()
            .is_some_and(|a| a.version == version && a.text_hash == commitment),
        PinnedKind::CrisisResources => state.crisis_resources() == Some(&commitment),
        PinnedKind::Meetings | PinnedKind::WarningTopics | PinnedKind::Resources => state
            .document(kind)
            .is_some_and(|d| d.version == version && d.text_hash == Some(commitment)),
    };
    if current && kind.validate_text(&text).is_err() {
        ("ignore", "document")
    } else if current {
        ("accept", "commitment")
    } else {
        ("ignore", "commitment")
    }
}

/// The pinned-text content message (§6.7) end to end: the group log that commits to an
/// agreement and to crisis resources, the exact `MessageContent` bodies that carry the texts,
/// their commitments (HMAC input and output), the envelopes a facilitator sends them in, and
/// bodies a receiver must reject or ignore. Each decision is asserted against the log replayed
/// by the real code, so a vector that no longer matches the rules fails here.
#[test]
fn pinned_message_vectors() {
    use confide_protocol::envelope::{ContentBody, MessageContent, PinnedKind, pinned_commitment};
    use confide_protocol::group_log::{
        GroupSettings, GroupState, MemberEntry, Op, OpBody, Role, verify_log,
    };
    use confide_protocol::ids::Timestamp;
    use confide_protocol::primitives::labelled;

    let alice = identity_from_seed(1);
    let bob = identity_from_seed(2);
    let (ua, ub) = (UserId([0x11; 16]), UserId([0x22; 16]));
    let group = GroupId([7; 16]);
    let entry = |user, name: &str, id: &DeviceIdentity| MemberEntry {
        user,
        display_name: name.into(),
        devices: vec![id.public_keys()],
        device_list: None,
    };
    let t0 = 1_767_225_600_000u64;
    let agreement = "Be kind. What is shared here stays here.";
    let crisis = "In an emergency call 112.";
    let (agreement_key, crisis_key) = ([0x0a; 32], [0x0b; 32]);
    let agreement_hash = pinned_commitment(&agreement_key, PinnedKind::Agreement, 1, agreement);
    let crisis_hash = pinned_commitment(&crisis_key, PinnedKind::CrisisResources, 0, crisis);

    // The log: Alice creates the group, adds Bob (epoch 1), then commits to both texts.
    let genesis = Op::genesis(
        group,
        alice.device_id(),
        Timestamp(t0),
        entry(ua, "Alice", &alice),
        GroupSettings::default(),
    )
    .sign(&alice)
    .unwrap();
    let mut state = GroupState::from_genesis(&genesis).unwrap();
    let mut log = vec![genesis];
    for (i, body) in [
        OpBody::Add {
            member: entry(ub, "Bob", &bob),
            invite: None,
            invite_sig: None,
            invite_device: None,
        },
        OpBody::SetAgreement {
            version: 1,
            text_hash: agreement_hash,
        },
        OpBody::SetCrisisResources {
            text_hash: Some(crisis_hash),
        },
    ]
    .into_iter()
    .enumerate()
    {
        let at = Timestamp(t0 + 1000 * (i as u64 + 1));
        let signed = state
            .next_op(alice.device_id(), at, body)
            .sign(&alice)
            .unwrap();
        state.apply(&signed).unwrap();
        log.push(signed);
    }
    assert_eq!(verify_log(&log).unwrap(), state);
    assert_eq!(state.role_of(&ub), Some(Role::Member));
    let epoch = state.epoch_ref();
    assert_eq!(epoch.hash, log[1].hash(), "Bob's add started epoch 1");

    // The pinned texts as Alice posts them, in one chain of epoch 1.
    let mut chain = SenderChain::generate(&mut rng(5));
    let distribution = chain.distribution();
    let mut franking_rng = rng(6);
    let pinned = |kind, version, text: &str, key: [u8; 32], sent_at| MessageContent {
        sent_at: Timestamp(sent_at),
        seen_seq: None,
        body: ContentBody::Pinned {
            kind,
            version,
            text: text.into(),
            key,
        },
    };
    let contents = [
        (
            "agreement",
            pinned(
                PinnedKind::Agreement,
                1,
                agreement,
                agreement_key,
                t0 + 4000,
            ),
            1u8,
            1u32,
            agreement,
            agreement_key,
        ),
        (
            "crisis_resources",
            pinned(
                PinnedKind::CrisisResources,
                0,
                crisis,
                crisis_key,
                t0 + 5000,
            ),
            2u8,
            0u32,
            crisis,
            crisis_key,
        ),
    ];
    let mut receiver = ReceiverChain::from_distribution(&distribution).unwrap();
    let messages: Vec<Value> = contents
        .iter()
        .map(|(name, content, code, version, text, key)| {
            let body = serde_json::to_vec(content).unwrap();
            let hmac_input = labelled(
                "confide/v1/pinned",
                &[&[*code], &version.to_be_bytes(), text.as_bytes()],
            );
            let kind = if *code == 1 {
                PinnedKind::Agreement
            } else {
                PinnedKind::CrisisResources
            };
            let commitment = pinned_commitment(key, kind, *version, text);
            let env =
                Envelope::seal(&alice, group, epoch, &mut chain, &body, &mut franking_rng).unwrap();
            let opened = env.open(&mut receiver).unwrap();
            assert_eq!(&*opened.body, &body[..]);
            assert_eq!(
                pinned_decision(&state, &alice.device_id(), &body),
                ("accept", "commitment"),
                "Alice's {name} is accepted"
            );
            json!({
                "name": name,
                "body": String::from_utf8(body).unwrap(),
                "hmac_input": b64_encode(&hmac_input),
                "commitment": b64_encode(&commitment),
                "header": b64_encode(&env.header()),
                "message_id": env.message_id(),
                "franking_key": b64_encode(&*opened.franking_key),
                "envelope": env,
                "expected": "accept",
            })
        })
        .collect();

    // Bodies a receiver holding this log must not accept as pinned texts.
    // Each is the accepted agreement body with one textual change, so members stay in wire order.
    let valid = String::from_utf8(serde_json::to_vec(&contents[0].1).unwrap()).unwrap();
    let with = |from: &str, to: &str| {
        assert_eq!(valid.matches(from).count(), 1, "{from} occurs once");
        valid.replacen(from, to, 1).into_bytes()
    };
    let honest = |c: MessageContent| serde_json::to_vec(&c).unwrap();
    /// Name, sender, body, expected decision, deciding check, reason.
    type Case = (
        &'static str,
        DeviceIdentity,
        Vec<u8>,
        &'static str,
        &'static str,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "altered_text",
            identity_from_seed(1),
            with("stays here.", "stays here!"),
            "ignore",
            "commitment",
            "the text differs by one character from the one the log commits to",
        ),
        (
            "other_key",
            identity_from_seed(1),
            with(&b64_encode(&agreement_key), &b64_encode(&[0x0c; 32])),
            "ignore",
            "commitment",
            "the right text under another key: the commitment is keyed, the key is part of what is committed",
        ),
        (
            "other_version",
            identity_from_seed(1),
            honest(pinned(
                PinnedKind::Agreement,
                2,
                agreement,
                agreement_key,
                t0 + 4000,
            )),
            "ignore",
            "commitment",
            "an honest commitment for version 2, but the log's current agreement is version 1",
        ),
        (
            "kind_swapped",
            identity_from_seed(1),
            with(
                r#""kind":"agreement","version":1"#,
                r#""kind":"crisis_resources","version":0"#,
            ),
            "ignore",
            "commitment",
            "the agreement's text and key sent as crisis resources: the kind code is committed to",
        ),
        (
            "not_a_moderator",
            identity_from_seed(2),
            valid.clone().into_bytes(),
            "ignore",
            "moderator",
            "exactly the accepted agreement body, but sent by Bob, a plain member: only a current moderator's device may pin",
        ),
        (
            "unknown_member",
            identity_from_seed(1),
            with("}}", r#"},"pinned_at":1767225600000}"#),
            "reject",
            "parse",
            "an unknown top-level member: MessageContent is parsed strictly (§1.4)",
        ),
        (
            "unknown_body_type",
            identity_from_seed(1),
            with(r#""type":"pinned""#, r#""type":"pinned_v2""#),
            "reject",
            "parse",
            "an unknown body.type does not parse (§6.7)",
        ),
        (
            "short_key",
            identity_from_seed(1),
            with(&b64_encode(&agreement_key), &b64_encode(&[0x0a; 31])),
            "reject",
            "parse",
            "the key decodes to 31 bytes, not 32 (§1.4: fixed sizes are exact)",
        ),
        (
            "missing_version",
            identity_from_seed(1),
            with(r#""version":1,"#, ""),
            "reject",
            "parse",
            "body.version is required",
        ),
    ];
    let negative: Vec<Value> = cases
        .iter()
        .map(|(name, sender, body, expected, check, reason)| {
            let (decision, decided_by) = pinned_decision(&state, &sender.device_id(), body);
            assert_eq!(
                (decision, decided_by),
                (*expected, *check),
                "pinned case {name}: {reason}"
            );
            json!({
                "name": name,
                "sender": sender.device_id(),
                "body": String::from_utf8(body.clone()).unwrap(),
                "expected": expected,
                "check": check,
                "reason": reason,
            })
        })
        .collect();
    let ops: Vec<Value> = log
        .iter()
        .map(|s| {
            json!({
                "signed": s,
                "op_json": String::from_utf8(s.op.clone()).unwrap(),
                "hash": s.hash(),
            })
        })
        .collect();
    check(
        "pinned-message",
        json!({
            "description": "Pinned texts (PROTOCOL.md §6.7): a log that commits to an agreement (version 1, key 0a…0a) and to crisis resources (key 0b…0b), the MessageContent bodies that carry the texts, and the envelopes Alice posts them in (epoch 1, chain seed(5), franking keys from the seed-6 keystream). `expected`: accept = keep as the pinned text of its kind; ignore = a valid message that is not a pinned text the log commits to (marked seen, nothing kept); reject = the body does not parse (§11.2 step 13). `check`: parse (MessageContent, strictly), moderator (the sender device is a current facilitator or co-facilitator in the receiver's log), commitment (HMAC-SHA256(key, labelled(\"confide/v1/pinned\", kind code || version u32 || text)) equals the log's current set_agreement text_hash with the same version, or the current set_crisis_resources text_hash).",
            "alice_public": alice.public_keys(),
            "bob_public": bob.public_keys(),
            "ops": ops,
            "epoch": { "epoch": epoch.epoch, "epoch_hash": epoch.hash },
            "sender_key_distribution": b64_encode(&distribution),
            "messages": messages,
            "cases": negative,
        }),
    );
}

#[test]
fn device_list_vectors() {
    use confide_protocol::device_list::{DeviceList, ListedDevice, UserIdentity};
    use confide_protocol::group_log::{GroupSettings, GroupState, MemberEntry, Op, OpBody};
    use confide_protocol::ids::Timestamp;
    let phone = identity_from_seed(1);
    let laptop = identity_from_seed(23);
    let user = UserId([0x11; 16]);
    let group = GroupId([7; 16]);
    let identity = UserIdentity::from_secret_bytes(&seed_bytes(61));
    let key = identity.public();
    let t0 = 1_767_225_600_000u64;

    // Version 1: the phone; version 2: phone and laptop; version 3: the laptop alone.
    let v1 = DeviceList::first(user, &identity, &phone, Timestamp(t0));
    let s1 = identity.sign_list(&v1, &phone).unwrap();
    let v2 = v1.successor(
        s1.hash(),
        phone.device_id(),
        Timestamp(t0 + 1000),
        vec![
            ListedDevice::new(&phone, &user, &key),
            ListedDevice::new(&laptop, &user, &key),
        ],
    );
    let s2 = identity.sign_list(&v2, &phone).unwrap();
    let v3 = v2.successor(
        s2.hash(),
        laptop.device_id(),
        Timestamp(t0 + 2000),
        vec![ListedDevice::new(&laptop, &user, &key)],
    );
    let s3 = identity.sign_list(&v3, &laptop).unwrap();
    let lists: Vec<Value> = [&s1, &s2, &s3]
        .iter()
        .map(|s| {
            assert!(s.verify().is_ok());
            json!({
                "list_json": String::from_utf8(s.list.clone()).unwrap(),
                "signed": s,
                "hash": s.hash(),
            })
        })
        .collect();

    let genesis = Op::genesis(
        group,
        phone.device_id(),
        Timestamp(t0),
        MemberEntry {
            user,
            display_name: "Alice".into(),
            devices: v1.device_keys(),
            device_list: Some(s1.clone()),
        },
        GroupSettings::default(),
    )
    .sign(&phone)
    .unwrap();
    let mut state = GroupState::from_genesis(&genesis).unwrap();
    let mut log = vec![genesis];
    // The phone links the laptop; then the laptop signs the phone out.
    for (author, at, signed) in [(&phone, t0 + 1000, &s2), (&laptop, t0 + 2000, &s3)] {
        let op = state
            .next_op(
                author.device_id(),
                Timestamp(at),
                OpBody::UpdateDevices {
                    device_list: signed.clone(),
                    chain: Vec::new(),
                },
            )
            .sign(author)
            .unwrap();
        state.apply(&op).unwrap();
        log.push(op);
    }
    let ops: Vec<Value> = log
        .iter()
        .map(|s| {
            json!({
                "signed": s,
                "op_json": String::from_utf8(s.op.clone()).unwrap(),
                "hash": s.hash(),
            })
        })
        .collect();
    check(
        "device-lists",
        json!({
            "description": "Device lists (PROTOCOL.md §3.6) and update_devices (§8.5): Alice's user identity key (secret seed(61)) signs three successive lists of user 11…11 — her phone (Alice's identity), then phone and laptop (signing secret seed(23), sealing secret seed(123)), then the laptop alone — each device consenting with its link_sig. The group log (group 07…07) starts with a genesis whose creator entry carries list 1; the phone appends update_devices with list 2, the laptop update_devices with list 3. Each update_devices starts an epoch.",
            "identity_secret": b64_encode(&seed_bytes(61)),
            "identity": key,
            "phone_public": phone.public_keys(),
            "laptop_public": laptop.public_keys(),
            "lists": lists,
            "ops": ops,
            "final": {
                "seq": state.seq(),
                "epoch": state.epoch(),
                "epoch_hash": state.epoch_hash(),
                "head": state.head(),
                "devices": state.current_devices().iter().map(|k| k.device).collect::<Vec<_>>(),
                "identity": state.identity_of(&user),
                "list_version": state.device_list_version_of(&user),
            },
        }),
    );
}

#[test]
fn link_vectors() {
    use confide_protocol::device_list::{DeviceList, ListedDevice, UserIdentity};
    use confide_protocol::ids::Timestamp;
    use confide_protocol::link::{
        self, IdentitySecret, LinkBundle, LinkCode, LinkEphemeral, LinkMessage,
    };
    // The identities of device-lists.json: O is Alice's phone, N her laptop.
    let phone = identity_from_seed(1);
    let laptop = identity_from_seed(23);
    let user = UserId([0x11; 16]);
    let identity = UserIdentity::from_secret_bytes(&seed_bytes(61));
    let key = identity.public();
    let t0 = 1_767_225_600_000u64;
    let v1 = DeviceList::first(user, &identity, &phone, Timestamp(t0));
    let s1 = identity.sign_list(&v1, &phone).unwrap();
    let v2 = v1.successor(
        s1.hash(),
        phone.device_id(),
        Timestamp(t0 + 1000),
        vec![
            ListedDevice::new(&phone, &user, &key),
            ListedDevice::new(&laptop, &user, &key),
        ],
    );
    let s2 = identity.sign_list(&v2, &phone).unwrap();

    let code = LinkCode::generate(&mut rng(70));
    let channel = code.channel();
    let n_eph = LinkEphemeral::generate(&mut rng(71));
    let o_eph = LinkEphemeral::generate(&mut rng(72));
    let hello = LinkMessage::Hello {
        keys: laptop.public_keys(),
        commit: n_eph.commitment(),
    }
    .to_bytes();
    let offer = LinkMessage::Offer {
        user,
        display_name: "Alice".into(),
        list: s1.clone(),
        eph: o_eph.public(),
    }
    .to_bytes();
    let reveal = LinkMessage::Reveal {
        eph: n_eph.public(),
        link_sig: ListedDevice::new(&laptop, &user, &key).link_sig,
    }
    .to_bytes();
    assert_eq!(link::commitment(&n_eph.public()), n_eph.commitment());
    let transcript = link::transcript(&channel, &hello, &offer, &n_eph.public());
    let at_n = n_eph.agree(&o_eph.public(), &transcript).unwrap();
    let at_o = o_eph.agree(&n_eph.public(), &transcript).unwrap();
    assert_eq!(at_n.sas, at_o.sas);
    assert_eq!(*at_n.psk, *at_o.psk);
    assert!(at_o.confirm_mac_valid(&at_n.confirm_mac()));
    let info = link::bundle_info(&channel, &transcript, &laptop.device_id());

    let bundle = LinkBundle {
        v: link::LINK_BUNDLE_FORMAT,
        user,
        display_name: "Alice".into(),
        identity_secret: IdentitySecret(seed_bytes(61)),
        device_list: s2.clone(),
        groups: vec![],
        known_identities: vec![],
        safety_plan: None,
        hidden_topics: vec![],
    };
    let payload = serde_json::to_vec(&bundle).unwrap();
    let sealed = link::seal_bundle(
        &phone,
        &laptop.public_keys(),
        &channel,
        &transcript,
        &at_o.psk,
        &payload,
        &mut rng(73),
    )
    .unwrap();
    let opened = link::open_bundle(&laptop, &channel, &transcript, &at_n.psk, &sealed).unwrap();
    assert_eq!(&opened[..], &payload[..]);
    let parsed: LinkBundle = serde_json::from_slice(&opened).unwrap();
    parsed
        .check(&laptop.public_keys(), &phone.device_id(), &s1)
        .unwrap();
    let bundle_message = LinkMessage::Bundle {
        sealed: sealed.clone(),
    }
    .to_bytes();

    check(
        "link",
        json!({
            "description": "Linking a device (PROTOCOL.md §3.7) with the identities of device-lists.json: O is Alice's phone (user 11…11, list version 1), N her laptop. The link code comes from ChaCha20Rng(seed 70); N's ephemeral X25519 key from seed 71, O's from seed 72 (each LinkEphemeral::generate). hello, offer and reveal are the exact bytes sent (the transcript covers hello and offer). The SAS and psk are what both devices compute; info is the bundle's HPKE info for N's device. The bundle (no groups, no known identities) carries list version 2 (phone and laptop, made by the phone) and is sealed by the phone in HPKE mode_psk with ChaCha20Rng(seed 73).",
            "code": {
                "canonical": code.as_str(),
                "display": code.display(),
                "qr_text": code.qr_text(&laptop.device_id()),
                "channel": b64_encode(&channel),
            },
            "n_ephemeral_public": b64_encode(&n_eph.public()),
            "o_ephemeral_public": b64_encode(&o_eph.public()),
            "commit": b64_encode(&n_eph.commitment()),
            "hello": String::from_utf8(hello.clone()).unwrap(),
            "offer": String::from_utf8(offer.clone()).unwrap(),
            "reveal": String::from_utf8(reveal).unwrap(),
            "transcript": b64_encode(&transcript),
            "sas": at_n.sas.0,
            "psk": b64_encode(&*at_n.psk),
            "confirmed": String::from_utf8(
                LinkMessage::Confirmed { mac: at_n.confirm_mac() }.to_bytes()
            )
            .unwrap(),
            "bundle_info": b64_encode(&info),
            "bundle_payload": String::from_utf8(payload).unwrap(),
            "sealed_bundle": sealed,
            "bundle_message": String::from_utf8(bundle_message).unwrap(),
        }),
    );
}
