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
