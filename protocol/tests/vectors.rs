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
    DeviceIdentity::from_secret_bytes(
        &seed_bytes(seed),
        &seed_bytes(seed.wrapping_add(100)),
        Some(&seed_bytes(seed.wrapping_add(200))),
    )
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
    // Keys signed by their device that are still not valid (PROTOCOL.md §3.2): an X25519 key of
    // small order (the point of order 8), and 1216 bytes of 0xFF as the X-Wing key (they fail
    // ML-KEM's modulus check).
    let low_order: [u8; 32] =
        hex::decode("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")
            .unwrap()
            .try_into()
            .unwrap();
    let mut small_order = keys.clone();
    small_order.sealing_key = low_order;
    small_order.sealing_sig = id.sign(identity::LABEL_SEALING_KEY, &[&low_order]);
    let bad_pq = [0xFF; identity::PQ_KEY_LEN];
    let mut modulus = serde_json::to_value(&keys).unwrap();
    modulus["pq_key"] = b64_encode(&bad_pq).into();
    modulus["pq_sig"] =
        serde_json::to_value(id.sign(identity::LABEL_PQ_SEALING_KEY, &[&bad_pq])).unwrap();
    let invalid = json!([
        { "why": "sealing_key of small order", "keys": small_order },
        { "why": "pq_key fails the ML-KEM modulus check", "keys": modulus },
    ]);
    for case in invalid.as_array().unwrap() {
        let refused = serde_json::from_value::<identity::DeviceKeys>(case["keys"].clone())
            .map_or(true, |keys| keys.verify().is_err());
        assert!(refused, "{}", case["why"]);
    }
    check(
        "identity",
        json!({
            "signing_secret": b64_encode(&seed_bytes(1)),
            "sealing_secret": b64_encode(&seed_bytes(101)),
            "pq_seed": b64_encode(&seed_bytes(201)),
            "public_keys": keys,
            "signature_test": { "label": "confide/v1/test", "message": b64_encode(b"hello"), "signature": signature },
            "export": { "passphrase": "correct horse battery staple", "exported": exported },
            "invalid_keys": invalid,
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
    // A device of protocol version 1 (no X-Wing key yet) is sealed to with X25519.
    let carol = DeviceIdentity::from_secret_bytes(&seed_bytes(3), &seed_bytes(103), None);
    let sealed_v1 = seal::seal(
        &alice,
        &carol.public_keys(),
        SealKind::SenderKey,
        GroupId([7; 16]),
        ep(3),
        payload,
        &mut rng(10),
    )
    .unwrap();
    assert!(sealed.enc.is_pq() && !sealed_v1.enc.is_pq());
    check(
        "seal",
        json!({
            "suite": { "kem_id": 0x647a, "kdf_id": 1, "aead_id": 3, "mode": 0 },
            "sender_public": alice.public_keys(),
            "recipient_public": bob.public_keys(),
            "recipient_sealing_secret": b64_encode(&seed_bytes(102)),
            "recipient_pq_seed": b64_encode(&seed_bytes(202)),
            "info": b64_encode(&seal::seal_info(SealKind::SenderKey, &GroupId([7; 16]), ep(3), &bob.device_id())),
            "payload": b64_encode(payload),
            "sealed": sealed,
            "to_a_version_1_device": {
                "suite": { "kem_id": 0x0020, "kdf_id": 1, "aead_id": 3, "mode": 0 },
                "recipient_public": carol.public_keys(),
                "recipient_sealing_secret": b64_encode(&seed_bytes(103)),
                "info": b64_encode(&seal::seal_info(SealKind::SenderKey, &GroupId([7; 16]), ep(3), &carol.device_id())),
                "sealed": sealed_v1,
            },
        }),
    );
    assert_eq!(&*seal::open(&bob, &sealed).unwrap(), payload);
    assert_eq!(&*seal::open(&carol, &sealed_v1).unwrap(), payload);
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
    // Two candidates for op 5 (not part of `ops`): `rekey`s by Bob, whose join at t0 + 2000
    // began epoch 1. One a minute later starts epoch 2 with the same members; one a millisecond
    // sooner is refused (PROTOCOL.md §8.5).
    assert_eq!(state.earliest_rekey_at(), Timestamp(t0 + 62_000));
    let rekey_at = |at: u64| {
        state
            .next_op(bob.device_id(), Timestamp(at), OpBody::Rekey {})
            .sign(&bob)
            .unwrap()
    };
    let valid = rekey_at(t0 + 62_000);
    let mut rekeyed = state.clone();
    rekeyed.apply(&valid).unwrap();
    assert_eq!(rekeyed.members(), state.members());
    let too_soon = rekey_at(t0 + 61_999);
    let error = state.clone().apply(&too_soon).unwrap_err();
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
            "rekey": {
                "valid": {
                    "signed": valid,
                    "op_json": String::from_utf8(valid.op.clone()).unwrap(),
                    "hash": valid.hash(),
                    "epoch": rekeyed.epoch(),
                    "epoch_hash": rekeyed.epoch_hash(),
                    "members": rekeyed.members().len(),
                },
                "too_soon": {
                    "signed": too_soon,
                    "op_json": String::from_utf8(too_soon.op.clone()).unwrap(),
                    "error": error.code(),
                },
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
        // The same envelopes checked together as one sync page (`verify_each`, which clients
        // use for pages), against their one-by-one decisions.
        let mut page: Vec<(Envelope, bool)> = Vec::new();
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
                page.push((env.clone(), accepted));
                json!({ "name": case.name, "envelope": env, "expected": decision(case.accept), "reason": case.reason })
            })
            .collect();
        let refs: Vec<&Envelope> = page.iter().map(|(env, _)| env).collect();
        let together = confide_protocol::envelope::verify_each(&refs);
        assert_eq!(together.len(), page.len());
        for ((env, accepted), checked) in page.iter().zip(&together) {
            assert_eq!(
                checked.is_ok(),
                *accepted,
                "{:?} checked in a page",
                env.sender
            );
        }

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

/// The person of `device-lists.json`, `link.json` and `own-devices.json`: user `11…11` with
/// identity key `seed(61)`, the phone (Alice's identity) and the laptop (`seed(23)`); list 1
/// names the phone, list 2 (made by the phone) both.
struct PhoneAndLaptop {
    phone: DeviceIdentity,
    laptop: DeviceIdentity,
    user: UserId,
    identity: confide_protocol::device_list::UserIdentity,
    key: confide_protocol::device_list::IdentityKey,
    t0: u64,
    v1: confide_protocol::device_list::DeviceList,
    s1: confide_protocol::device_list::SignedDeviceList,
    v2: confide_protocol::device_list::DeviceList,
    s2: confide_protocol::device_list::SignedDeviceList,
}

fn phone_and_laptop() -> PhoneAndLaptop {
    use confide_protocol::device_list::{DeviceList, ListedDevice, UserIdentity};
    use confide_protocol::ids::Timestamp;
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
    PhoneAndLaptop {
        phone,
        laptop,
        user,
        identity,
        key,
        t0,
        v1,
        s1,
        v2,
        s2,
    }
}

#[test]
fn device_list_vectors() {
    use confide_protocol::device_list::ListedDevice;
    use confide_protocol::group_log::{GroupSettings, GroupState, MemberEntry, Op, OpBody};
    use confide_protocol::ids::Timestamp;
    // List 1: the phone; list 2: phone and laptop (device-lists.json).
    let PhoneAndLaptop {
        phone,
        laptop,
        user,
        identity,
        key,
        t0,
        v1,
        s1,
        v2,
        s2,
        ..
    } = phone_and_laptop();
    let group = GroupId([7; 16]);
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
    use confide_protocol::device_list::ListedDevice;

    use confide_protocol::link::{
        self, IdentitySecret, LinkBundle, LinkCode, LinkEphemeral, LinkMessage,
    };
    // The identities of device-lists.json: O is Alice's phone, N her laptop.
    // List 1: the phone; list 2: phone and laptop (device-lists.json).
    let PhoneAndLaptop {
        phone,
        laptop,
        user,
        key,
        v1: _,
        s1,
        v2: _,
        s2,
        ..
    } = phone_and_laptop();

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
        safety_plan_updated_at: None,
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

/// A receiver's decision on a body from a sender device: (decision, deciding check).
type Decider<'a> =
    dyn Fn(&confide_protocol::ids::DeviceId, &[u8]) -> (&'static str, &'static str) + 'a;

/// How a receiver treats a `text` body's `round` member (PROTOCOL.md §6.9): `honour` or
/// `ordinary` (shown as a plain message), with the deciding check.
fn round_decision(
    state: &confide_protocol::group_log::GroupState,
    sender: &confide_protocol::ids::DeviceId,
    body: &[u8],
) -> (&'static str, &'static str) {
    use confide_protocol::envelope::{ContentBody, MessageContent};
    let Ok(content) = serde_json::from_slice::<MessageContent>(body) else {
        return ("reject", "parse");
    };
    let ContentBody::Text {
        text,
        round: Some(tag),
        ..
    } = content.body
    else {
        return ("not_round", "type");
    };
    let Some((user, _)) = state.member_of_device(sender) else {
        return ("ordinary", "member");
    };
    match confide_protocol::group_work::check_round_tag(state, user, content.sent_at, &text, &tag) {
        Ok(()) => ("honour", "all"),
        Err(refusal) => ("ordinary", refusal.check()),
    }
}

/// How a receiver treats content warnings (PROTOCOL.md §6.9): a `text`'s own `warnings` are
/// `keep` or `drop`; an `add_warning` is `apply` or `ignore`.
fn warning_decision(
    state: &confide_protocol::group_log::GroupState,
    sender: &confide_protocol::ids::DeviceId,
    body: &[u8],
) -> (&'static str, &'static str) {
    use confide_protocol::envelope::{ContentBody, MessageContent};
    use confide_protocol::group_work::validate_warnings;
    let Ok(content) = serde_json::from_slice::<MessageContent>(body) else {
        return ("reject", "parse");
    };
    match content.body {
        ContentBody::Text { warnings, .. } if warnings.is_empty() => ("none", "type"),
        ContentBody::Text { warnings, .. } => match validate_warnings(&warnings) {
            Ok(()) => ("keep", "warnings"),
            Err(_) => ("drop", "warnings"),
        },
        ContentBody::AddWarning { warnings, .. } => {
            match confide_protocol::group_work::check_add_warning(state, sender, &warnings) {
                Ok(()) => ("apply", "all"),
                Err(refusal) => ("ignore", refusal.check()),
            }
        }
        _ => ("none", "type"),
    }
}

/// The group-work tools (§6.9, §8.5): a log with `set_pinned` for each document (and a second
/// resources version that commits to an invalid document), `open_round` and `close_round`; the
/// documents' exact bodies and commitments; round, warning and `add_warning` bodies with the
/// receiver's decision; and next-meeting cases of a schedule across a clock change.
#[test]
fn group_work_vectors() {
    use confide_protocol::envelope::{ContentBody, MessageContent, PinnedKind, pinned_commitment};
    use confide_protocol::group_log::{
        GroupSettings, GroupState, MemberEntry, Op, OpBody, Role, verify_log,
    };
    use confide_protocol::group_work::{
        Meeting, MeetingSchedule, Resource, ResourceLibrary, RoundPart, RoundTag, WarningTopic,
        WarningTopics,
    };
    use confide_protocol::ids::{MessageId, RoundId, Timestamp};
    use confide_protocol::primitives::labelled;

    let alice = identity_from_seed(1);
    let bob = identity_from_seed(2);
    let carol = identity_from_seed(21);
    let (ua, ub, uc) = (UserId([0x11; 16]), UserId([0x22; 16]), UserId([0x33; 16]));
    let group = GroupId([7; 16]);
    let entry = |user, name: &str, id: &DeviceIdentity| MemberEntry {
        user,
        display_name: name.into(),
        devices: vec![id.public_keys()],
        device_list: None,
    };
    let t0 = 1_796_666_400_000u64; // 2026-12-07T18:00:00Z
    let meetings = MeetingSchedule {
        time_zone: "Europe/Berlin".into(),
        meetings: vec![
            Meeting::Weekly {
                day: 1,
                start_minute: 18 * 60,
                minutes: 90,
            },
            Meeting::Once {
                date: "2026-12-24".into(),
                start_minute: 10 * 60,
                minutes: 60,
            },
        ],
        video_link: Some("https://meet.example.org/tuesday-group".into()),
        note: Some("Bring your workbook".into()),
    };
    let topics = WarningTopics {
        topics: vec![
            WarningTopic {
                id: 1,
                label: "Self-harm".into(),
            },
            WarningTopic {
                id: 2,
                label: "Grief".into(),
            },
        ],
    };
    let library = ResourceLibrary {
        resources: vec![
            Resource {
                title: "Box breathing".into(),
                category: "Grounding".into(),
                text: Some(
                    "Breathe in for four, hold for four, out for four, hold for four.".into(),
                ),
                link: None,
            },
            Resource {
                title: "Sleep hygiene".into(),
                category: "Reading".into(),
                text: None,
                link: Some("https://example.org/sleep".into()),
            },
        ],
    };
    let bad_library =
        r#"{"resources":[{"title":"Click me","category":"Links","link":"javascript:alert(1)"}]}"#;
    let docs: Vec<(&str, PinnedKind, u32, String, [u8; 32])> = vec![
        (
            "meetings",
            PinnedKind::Meetings,
            1,
            serde_json::to_string(&meetings).unwrap(),
            [0x0c; 32],
        ),
        (
            "warning_topics",
            PinnedKind::WarningTopics,
            1,
            serde_json::to_string(&topics).unwrap(),
            [0x0d; 32],
        ),
        (
            "resources",
            PinnedKind::Resources,
            1,
            serde_json::to_string(&library).unwrap(),
            [0x0e; 32],
        ),
        (
            "resources_v2_invalid",
            PinnedKind::Resources,
            2,
            bad_library.to_string(),
            [0x0f; 32],
        ),
    ];
    let round = RoundId([0x07; 16]);
    let opened_at = t0 + 1000 * 7;
    let closed_at = opened_at + 600_000;

    // The log: Alice creates the group, adds Bob and Carol, publishes the documents, opens a
    // round that would close by itself after 30 minutes and closes it by hand after 10.
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
    let mut bodies = vec![
        OpBody::Add {
            member: entry(ub, "Bob", &bob),
            invite: None,
            invite_sig: None,
            invite_device: None,
        },
        OpBody::Add {
            member: entry(uc, "Carol", &carol),
            invite: None,
            invite_sig: None,
            invite_device: None,
        },
    ];
    for (_, kind, version, text, key) in &docs {
        bodies.push(OpBody::SetPinned {
            kind: *kind,
            version: *version,
            text_hash: Some(pinned_commitment(key, *kind, *version, text)),
        });
    }
    bodies.push(OpBody::OpenRound {
        round,
        closes_at: Some(Timestamp(opened_at + 1_800_000)),
    });
    for (i, body) in bodies.into_iter().enumerate() {
        let at = Timestamp(t0 + 1000 * (i as u64 + 1));
        let signed = state
            .next_op(alice.device_id(), at, body)
            .sign(&alice)
            .unwrap();
        state.apply(&signed).unwrap();
        log.push(signed);
    }
    assert_eq!(state.round(&round).unwrap().opened_at, Timestamp(opened_at));
    let signed = state
        .next_op(
            alice.device_id(),
            Timestamp(closed_at),
            OpBody::CloseRound { round },
        )
        .sign(&alice)
        .unwrap();
    state.apply(&signed).unwrap();
    log.push(signed);
    assert_eq!(verify_log(&log).unwrap(), state);
    assert_eq!(state.role_of(&uc), Some(Role::Member));
    assert_eq!(
        state.round(&round).unwrap().ended_at(),
        Some(Timestamp(closed_at))
    );

    // The documents as Alice posts them.
    let documents: Vec<Value> = docs
        .iter()
        .map(|(name, kind, version, text, key)| {
            let content = MessageContent {
                sent_at: Timestamp(closed_at + 1000),
                seen_seq: None,
                body: ContentBody::Pinned {
                    kind: *kind,
                    version: *version,
                    text: text.clone(),
                    key: *key,
                },
            };
            let body = serde_json::to_vec(&content).unwrap();
            let hmac_input = labelled(
                "confide/v1/pinned",
                &[&[kind.code()], &version.to_be_bytes(), text.as_bytes()],
            );
            // Version 1 of resources is no longer current once version 2 is in the log.
            let (expected, by) = match *name {
                "resources" => ("ignore", "commitment"),
                "resources_v2_invalid" => ("ignore", "document"),
                _ => ("accept", "commitment"),
            };
            assert_eq!(
                pinned_decision(&state, &alice.device_id(), &body),
                (expected, by),
                "document {name}"
            );
            json!({
                "name": name,
                "kind_code": kind.code(),
                "version": version,
                "document": text,
                "body": String::from_utf8(body).unwrap(),
                "hmac_input": b64_encode(&hmac_input),
                "commitment": b64_encode(&pinned_commitment(key, *kind, *version, text)),
                "expected": expected,
                "check": by,
            })
        })
        .collect();

    let text = |sent_at: u64, text: &str, warnings: Vec<u16>, tag: Option<RoundTag>| {
        serde_json::to_vec(&MessageContent {
            sent_at: Timestamp(sent_at),
            seen_seq: None,
            body: ContentBody::Text {
                text: text.into(),
                reply_to: None,
                warnings,
                round: tag,
            },
        })
        .unwrap()
    };
    let tag = |id, part, order: Option<Vec<UserId>>| Some(RoundTag { id, part, order });
    /// Name, sender, body, expected decision, deciding check, reason.
    type Case = (
        &'static str,
        UserId,
        Vec<u8>,
        &'static str,
        &'static str,
        &'static str,
    );
    let during = opened_at + 60_000;
    let round_cases: Vec<Case> = vec![
        (
            "prompt",
            ua,
            text(
                opened_at + 1000,
                "How are you arriving today, 1 to 5 and a word?",
                vec![],
                tag(round, RoundPart::Prompt, Some(vec![ub, uc])),
            ),
            "honour",
            "all",
            "the opener's prompt with a turn order, during the round",
        ),
        (
            "answer",
            ub,
            text(
                during,
                "3, tired",
                vec![],
                tag(round, RoundPart::Answer, None),
            ),
            "honour",
            "all",
            "Bob's answer during the round",
        ),
        (
            "pass",
            uc,
            text(during + 1000, "", vec![], tag(round, RoundPart::Pass, None)),
            "honour",
            "all",
            "Carol passes during the round",
        ),
        (
            "answer_after_close",
            ub,
            text(
                closed_at,
                "5, late",
                vec![],
                tag(round, RoundPart::Answer, None),
            ),
            "ordinary",
            "time",
            "sent at the moment the round was closed by hand: the round is open in [opened_at, ended_at)",
        ),
        (
            "answer_before_open",
            ub,
            text(
                opened_at - 1,
                "early",
                vec![],
                tag(round, RoundPart::Answer, None),
            ),
            "ordinary",
            "time",
            "sent before the open_round op's at",
        ),
        (
            "prompt_by_member",
            ub,
            text(
                during,
                "Say something nice",
                vec![],
                tag(round, RoundPart::Prompt, None),
            ),
            "ordinary",
            "opener",
            "a prompt from Bob, who did not open the round",
        ),
        (
            "pass_with_text",
            uc,
            text(during, "pass", vec![], tag(round, RoundPart::Pass, None)),
            "ordinary",
            "tag",
            "a pass carries an empty text",
        ),
        (
            "order_on_answer",
            ub,
            text(
                during,
                "4",
                vec![],
                tag(round, RoundPart::Answer, Some(vec![ub])),
            ),
            "ordinary",
            "tag",
            "only a prompt has a turn order",
        ),
        (
            "unknown_round",
            ub,
            text(
                during,
                "4",
                vec![],
                tag(RoundId([0x08; 16]), RoundPart::Answer, None),
            ),
            "ordinary",
            "log",
            "no open_round in the log names this round",
        ),
    ];
    let add_warning = |warnings: Vec<u16>| {
        serde_json::to_vec(&MessageContent {
            sent_at: Timestamp(during + 5000),
            seen_seq: None,
            body: ContentBody::AddWarning {
                message: MessageId([0x04; 16]),
                warnings,
            },
        })
        .unwrap()
    };
    let warning_cases: Vec<Case> = vec![
        (
            "tagged_text",
            ub,
            text(during, "It was a year ago today.", vec![2], None),
            "keep",
            "warnings",
            "Bob tags his own message with topic 2 (Grief)",
        ),
        (
            "unknown_topic",
            ub,
            text(during, "…", vec![9], None),
            "keep",
            "warnings",
            "topic 9 is not defined: it is kept and shown as a warning without a label",
        ),
        (
            "repeated_topic",
            ub,
            text(during, "…", vec![1, 1], None),
            "drop",
            "warnings",
            "warnings must be distinct: the message is shown without them",
        ),
        (
            "add_warning",
            ua,
            add_warning(vec![1]),
            "apply",
            "all",
            "Alice, a facilitator, adds topic 1 to message 04…04",
        ),
        (
            "add_warning_by_member",
            uc,
            add_warning(vec![1]),
            "ignore",
            "moderator",
            "Carol is a plain member",
        ),
        (
            "add_warning_empty",
            ua,
            add_warning(vec![]),
            "ignore",
            "warnings",
            "1 to 8 warnings",
        ),
    ];
    let device_of = |user: UserId| {
        if user == ua {
            alice.device_id()
        } else if user == ub {
            bob.device_id()
        } else {
            carol.device_id()
        }
    };
    let decide = |cases: &[Case], f: &Decider<'_>| -> Vec<Value> {
        cases
            .iter()
            .map(|(name, user, body, expected, check, reason)| {
                let sender = device_of(*user);
                assert_eq!(
                    f(&sender, body),
                    (*expected, *check),
                    "case {name}: {reason}"
                );
                json!({
                    "name": name,
                    "sender": sender,
                    "body": String::from_utf8(body.clone()).unwrap(),
                    "expected": expected,
                    "check": check,
                    "reason": reason,
                })
            })
            .collect()
    };
    let rounds = decide(&round_cases, &|d, b| round_decision(&state, d, b));
    let warnings = decide(&warning_cases, &|d, b| warning_decision(&state, d, b));

    // Next meeting (§6.9) for the schedule above, in Berlin: CET in winter, CEST in summer.
    let next: Vec<Value> = [
        ("2026-12-07T09:20:00Z", "2026-12-08T17:00:00Z"),
        ("2026-12-08T18:00:00Z", "2026-12-08T17:00:00Z"),
        ("2026-12-08T18:30:00Z", "2026-12-15T17:00:00Z"),
        ("2026-12-23T18:30:00Z", "2026-12-24T09:00:00Z"),
        ("2027-03-24T12:00:00Z", "2027-03-30T16:00:00Z"),
    ]
    .iter()
    .map(|(now, start)| {
        let ms = |s: &str| s.parse::<jiff::Timestamp>().unwrap().as_millisecond() as u64;
        let found = meetings.next_meeting(Timestamp(ms(now))).unwrap();
        assert_eq!(
            found.starts_at,
            Timestamp(ms(start)),
            "next meeting at {now}"
        );
        json!({
            "now": ms(now),
            "starts_at": found.starts_at,
            "ends_at": found.ends_at,
            "index": found.index,
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
        "group-work",
        json!({
            "description": "Group-work tools (PROTOCOL.md §6.9, §8.5). `ops`: Alice creates group 07…07, adds Bob and Carol, publishes meetings (key 0c…0c), warning_topics (0d…0d), resources version 1 (0e…0e) and version 2 (0f…0f, an invalid document: a javascript: link), opens round 07…07 (closes_at 30 minutes later) and closes it by hand 10 minutes after opening. `documents`: each document's exact pinned body, HMAC input and commitment, decided as for pinned-message.json plus check `document` (a committed document that is not valid is ignored; resources version 1 is no longer current). `rounds`: text bodies with a round member, decided `honour` or `ordinary` by the first failing check of tag (RoundTag valid for the text), log (the round is in the log), time (sent_at in [opened_at, ended_at)), opener (a prompt comes from a device of the opener). `warnings`: a text's warnings are kept or dropped (check warnings: 1 to 8 distinct ids); an add_warning is applied or ignored (moderator: sent by a current moderator's device; warnings). `next_meeting`: now -> the meeting in progress or next, Europe/Berlin.",
            "alice_public": alice.public_keys(),
            "bob_public": bob.public_keys(),
            "carol_public": carol.public_keys(),
            "users": { "alice": ua, "bob": ub, "carol": uc },
            "ops": ops,
            "documents": documents,
            "rounds": rounds,
            "warnings": warnings,
            "schedule": meetings,
            "next_meeting": next,
        }),
    );
}

/// An update between one person's own devices (PROTOCOL.md §7.4), with the identities and
/// list 2 of `device-lists.json`: the phone seals a safety plan to the laptop (HPKE ephemeral
/// from `ChaCha20Rng(seed 74)`), and the cases a receiver or the server refuses.
#[test]
fn own_devices_vectors() {
    use confide_protocol::group_work::SafetyPlan;
    use confide_protocol::ids::Timestamp;
    use confide_protocol::own_devices::{OwnDevicesError, OwnDevicesPayload};
    // List 1: the phone; list 2: phone and laptop (device-lists.json).
    let PhoneAndLaptop {
        phone,
        laptop,
        user,
        t0,
        v1,
        s1,
        v2,
        s2,
        ..
    } = phone_and_laptop();
    let h2 = s2.hash();
    let plan = SafetyPlan {
        warning_signs: vec!["I stop answering messages".into()],
        coping_steps: vec!["Walk the dog".into()],
        contacts: vec!["My sister Ana".into()],
        reasons: vec!["My kids".into()],
        ..SafetyPlan::default()
    };
    let update = OwnDevicesPayload::SafetyPlan {
        plan,
        updated_at: Timestamp(t0 + 5000),
    };
    let payload_json = serde_json::to_string(&update).unwrap();
    let sealed = update
        .seal(&phone, &v2, &h2, &laptop.public_keys(), &mut rng(74))
        .unwrap();
    let list_epoch = EpochRef {
        epoch: Epoch(v2.version),
        hash: OpHash(h2.0),
    };
    let info = seal::seal_info(
        SealKind::OwnDevices,
        &GroupId(user.0),
        list_epoch,
        &laptop.device_id(),
    );
    assert_eq!(
        OwnDevicesPayload::open(&laptop, &v2, &h2, &sealed).unwrap(),
        update
    );
    // What the laptop must drop, each with the check that decides it (§7.4, in order).
    let stranger = identity_from_seed(24);
    let list1_epoch = EpochRef {
        epoch: Epoch(v1.version),
        hash: OpHash(s1.hash().0),
    };
    let raw = |sender: &DeviceIdentity, group: GroupId, epoch: EpochRef, kind: SealKind| {
        let mut padded = payload_json.clone().into_bytes();
        padded.push(0x80);
        padded.resize(confide_protocol::own_devices::OWN_DEVICES_PADDED_LEN, 0);
        seal::seal(
            sender,
            &laptop.public_keys(),
            kind,
            group,
            epoch,
            &padded,
            &mut rng(75),
        )
        .unwrap()
    };
    let unpadded = seal::seal(
        &phone,
        &laptop.public_keys(),
        SealKind::OwnDevices,
        GroupId(user.0),
        list_epoch,
        payload_json.as_bytes(),
        &mut rng(75),
    )
    .unwrap();
    let mut relabelled = sealed.clone();
    relabelled.kind = SealKind::Direct;
    let cases: Vec<(&str, seal::SealedPayload, &str, &str)> = vec![
        (
            "another_user",
            raw(
                &phone,
                GroupId([0x22; 16]),
                list_epoch,
                SealKind::OwnDevices,
            ),
            "binding",
            "the group field is not the laptop's user id",
        ),
        (
            "older_list",
            raw(&phone, GroupId(user.0), list1_epoch, SealKind::OwnDevices),
            "binding",
            "sealed under list 1, not the laptop's current list 2",
        ),
        (
            "wrong_hash",
            raw(
                &phone,
                GroupId(user.0),
                EpochRef {
                    epoch: Epoch(2),
                    hash: OpHash([2; 32]),
                },
                SealKind::OwnDevices,
            ),
            "binding",
            "list 2's version with another hash",
        ),
        (
            "not_on_list",
            raw(&stranger, GroupId(user.0), list_epoch, SealKind::OwnDevices),
            "binding",
            "the sender is not on list 2",
        ),
        (
            "relabelled",
            relabelled,
            "open",
            "the phone's update relabelled as direct: the kind is in the info and the signature",
        ),
        (
            "unpadded",
            unpadded,
            "padding",
            "not padded to OWN_DEVICES_PADDED_LEN",
        ),
    ];
    let cases: Vec<Value> = cases
        .into_iter()
        .map(|(name, item, check, reason)| {
            let got = match (item.kind, OwnDevicesPayload::open(&laptop, &v2, &h2, &item)) {
                (SealKind::OwnDevices, Err(OwnDevicesError::NotOwnDevice)) => "binding",
                (SealKind::OwnDevices, Err(OwnDevicesError::Invalid(_))) => "padding",
                (_, Err(_)) => "open",
                (_, Ok(_)) => "accepted",
            };
            assert_eq!(got, check, "own-devices case {name}: {reason}");
            json!({ "name": name, "sealed": item, "expected": "drop", "check": check, "reason": reason })
        })
        .collect();
    check(
        "own-devices",
        json!({
            "description": "An own_devices update (PROTOCOL.md §7.4): with the identities and lists of device-lists.json (user 11…11, list 2 = phone and laptop), the phone seals a safety_plan update to the laptop. `group` is the user id, `epoch`/`epoch_hash` list 2's version and hash. `info` is the 105-byte HPKE info of §4.2 with kind code 6. The sealed plaintext is payload_json padded to OWN_DEVICES_PADDED_LEN = 34816 bytes (0x80, then zeros). The HPKE ephemeral key is DeriveKeyPair(ikm = the first 32 bytes of ChaCha20Rng(seed 74)); the cases use ChaCha20Rng(seed 75). `cases`: payloads the laptop drops, with the deciding check: binding (kind own_devices, group = its user id, epoch/epoch_hash = its current list, sender another device of that list), open (§4.6), padding (the fixed size, 0x80 then zeros).",
            "phone_public": phone.public_keys(),
            "laptop_public": laptop.public_keys(),
            "laptop_sealing_secret": b64_encode(&seed_bytes(123)),
            "list": s2,
            "list_hash": h2,
            "payload_json": payload_json,
            "info": b64_encode(&info),
            "sealed": sealed,
            "cases": cases,
        }),
    );
}
