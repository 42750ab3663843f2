//! Confide's protocol in a real browser page (headless Chromium, through
//! `wasm-bindgen-test-runner`; `cargo xtask test` runs it): two devices made from seeded
//! randomness sign, seal to each other, exchange a group message under sender keys and agree on
//! a group log, and the browser computes the same bytes as the native test vectors. Each test
//! checks what a person would notice: the text comes out, and an altered byte is refused.

#![cfg(target_arch = "wasm32")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chacha20::ChaCha20Rng;
use confide_protocol::envelope::{Envelope, EnvelopeError};
use confide_protocol::group_log::{GroupSettings, GroupState, MemberEntry, OpBody};
use confide_protocol::identity::{self, DeviceKeys};
use confide_protocol::seal::{self, SealError, SealKind, SealedPayload};
use confide_protocol::sender_key::{ReceiverChain, SenderChain, SenderKeyError};
use confide_protocol::{
    CryptoError, DeviceIdentity, Epoch, EpochRef, GroupId, LogError, Op, OpHash, Timestamp, UserId,
    verify_log,
};
use rand_core::{Rng, SeedableRng};
use wasm_bindgen_test::{console_log, wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

fn rng(seed: u8) -> ChaCha20Rng {
    ChaCha20Rng::from_seed([seed; 32])
}

/// The identity the native test vectors use for `seed` (protocol/tests/vectors.rs).
fn vector_identity(seed: u8) -> DeviceIdentity {
    let bytes = |seed: u8| {
        let mut out = [0u8; 32];
        rng(seed).fill_bytes(&mut out);
        out
    };
    DeviceIdentity::from_secret_bytes(
        &bytes(seed),
        &bytes(seed.wrapping_add(100)),
        Some(&bytes(seed.wrapping_add(200))),
    )
}

fn vector(json: &str) -> serde_json::Value {
    serde_json::from_str(json).unwrap()
}

const GROUP: GroupId = GroupId([7; 16]);
const T0: u64 = 1_767_225_600_000;

fn epoch_one() -> EpochRef {
    EpochRef {
        epoch: Epoch(1),
        hash: OpHash([1; 32]),
    }
}

fn entry(user: u8, name: &str, id: &DeviceIdentity) -> MemberEntry {
    MemberEntry {
        user: UserId([user; 16]),
        display_name: name.into(),
        devices: vec![id.public_keys()],
        device_list: None,
    }
}

/// A property of the page's global object, read through JavaScript.
fn global(path: &[&str]) -> wasm_bindgen::JsValue {
    path.iter().fold(js_sys::global().into(), |value, key| {
        js_sys::Reflect::get(&value, &(*key).into()).unwrap()
    })
}

#[wasm_bindgen_test]
fn the_tests_run_in_a_chromium_page() {
    let agent = global(&["navigator", "userAgent"]).as_string().unwrap();
    console_log!("user agent: {agent}");
    assert!(
        agent.contains("Chrome"),
        "expected Chromium, the browser is {agent:?}"
    );
    // A page has a document; a worker, Node.js or Deno has none.
    assert!(global(&["document"]).is_object(), "not running in a page");
}

#[wasm_bindgen_test]
fn the_browser_computes_the_native_test_vectors() {
    // Identity: the same public keys and signature bytes as on native.
    let stored = vector(include_str!("../../protocol/test-vectors/identity.json"));
    let alice = vector_identity(1);
    let keys: DeviceKeys = serde_json::from_value(stored["public_keys"].clone()).unwrap();
    assert_eq!(alice.public_keys(), keys);
    let signature = alice.sign("confide/v1/test", &[b"hello"]);
    assert_eq!(
        serde_json::to_value(signature).unwrap(),
        stored["signature_test"]["signature"]
    );

    // HPKE sealing: the same ciphertext from the same randomness, and it opens.
    let stored = vector(include_str!("../../protocol/test-vectors/seal.json"));
    let bob = vector_identity(2);
    let payload = b"sender key distribution bytes";
    let epoch = EpochRef {
        epoch: Epoch(3),
        hash: OpHash([3; 32]),
    };
    let sealed = seal::seal(
        &alice,
        &bob.public_keys(),
        SealKind::SenderKey,
        GROUP,
        epoch,
        payload,
        &mut rng(9),
    )
    .unwrap();
    assert_eq!(serde_json::to_value(&sealed).unwrap(), stored["sealed"]);
    assert_eq!(&*seal::open(&bob, &sealed).unwrap(), payload);

    // A group message: the native envelope opens here to the native text.
    let stored = vector(include_str!("../../protocol/test-vectors/envelope.json"));
    let envelope: Envelope = serde_json::from_value(stored["envelope"].clone()).unwrap();
    let mut chain = SenderChain::generate(&mut rng(3));
    let mut receiver = ReceiverChain::from_distribution(&chain.distribution()).unwrap();
    let opened = envelope.open(&mut receiver).unwrap();
    let text = r#"{"sent_at":1767225600000,"body":{"type":"text","text":"Hello, group"}}"#;
    assert_eq!(std::str::from_utf8(&opened.body).unwrap(), text);
    // … and the browser seals the same bytes the native code did.
    let again = Envelope::seal(
        &alice,
        GROUP,
        EpochRef {
            epoch: Epoch(2),
            hash: OpHash([2; 32]),
        },
        &mut chain,
        text.as_bytes(),
        &mut rng(4),
    )
    .unwrap();
    assert_eq!(serde_json::to_value(&again).unwrap(), stored["envelope"]);
}

#[wasm_bindgen_test]
fn a_signature_verifies_only_for_its_signer_and_its_exact_text() {
    let alice = DeviceIdentity::generate(&mut rng(1));
    let bob = DeviceIdentity::generate(&mut rng(2));
    assert_ne!(alice.device_id(), bob.device_id());
    // Seeded randomness gives the same device again: the browser draws nothing of its own.
    assert_eq!(
        DeviceIdentity::generate(&mut rng(1)).device_id(),
        alice.device_id()
    );
    alice.public_keys().verify().unwrap();

    let text = b"see you all on thursday";
    let signature = alice.sign("confide/v1/test", &[text]);
    identity::verify(&alice.device_id(), "confide/v1/test", &[text], &signature).unwrap();
    assert_eq!(
        identity::verify(&bob.device_id(), "confide/v1/test", &[text], &signature),
        Err(CryptoError::BadSignature),
        "Bob's key accepted Alice's signature"
    );
    let mut altered = *text;
    altered[4] ^= 0x01;
    assert_eq!(
        identity::verify(
            &alice.device_id(),
            "confide/v1/test",
            &[&altered],
            &signature
        ),
        Err(CryptoError::BadSignature),
        "an altered text kept its signature"
    );
}

#[wasm_bindgen_test]
fn a_sealed_payload_opens_for_its_recipient_only_and_unaltered() {
    let alice = DeviceIdentity::generate(&mut rng(1));
    let bob = DeviceIdentity::generate(&mut rng(2));
    let carol = DeviceIdentity::generate(&mut rng(3));
    let text = "Bob, the meeting moved to 7pm";
    let sealed = seal::seal(
        &alice,
        &bob.public_keys(),
        SealKind::Direct,
        GROUP,
        epoch_one(),
        text.as_bytes(),
        &mut rng(10),
    )
    .unwrap();
    // The text is not in the sealed bytes the server stores.
    let stored = serde_json::to_string(&sealed).unwrap();
    assert!(!stored.contains("meeting"));

    let opened = seal::open(&bob, &sealed).unwrap();
    assert_eq!(std::str::from_utf8(&opened).unwrap(), text);
    assert_eq!(sealed.sender, alice.device_id());

    assert_eq!(seal::open(&carol, &sealed), Err(SealError::WrongRecipient));
    // Readdressed to Carol by a server: HPKE refuses it.
    let readdressed = SealedPayload {
        recipient: carol.device_id(),
        ..sealed.clone()
    };
    assert_eq!(seal::open(&carol, &readdressed), Err(SealError::Open));
    let mut altered = sealed.clone();
    altered.ciphertext[20] ^= 0x01;
    assert_eq!(seal::open(&bob, &altered), Err(SealError::Open));
    // Relabelled as another kind of payload: refused too.
    let relabelled = SealedPayload {
        kind: SealKind::Report,
        ..sealed
    };
    assert_eq!(seal::open(&bob, &relabelled), Err(SealError::Open));
}

#[wasm_bindgen_test]
fn a_group_message_reaches_the_member_who_got_the_sender_key() {
    let alice = DeviceIdentity::generate(&mut rng(1));
    let bob = DeviceIdentity::generate(&mut rng(2));

    // Alice's sender key for the epoch reaches Bob sealed, as through his inbox.
    let mut chain = SenderChain::generate(&mut rng(20));
    let sealed = seal::seal(
        &alice,
        &bob.public_keys(),
        SealKind::SenderKey,
        GROUP,
        epoch_one(),
        &chain.distribution(),
        &mut rng(21),
    )
    .unwrap();
    let distribution = seal::open(&bob, &sealed).unwrap();
    let mut bobs_copy = ReceiverChain::from_distribution(&distribution).unwrap();

    let first = Envelope::seal(
        &alice,
        GROUP,
        epoch_one(),
        &mut chain,
        b"hello everyone",
        &mut rng(22),
    )
    .unwrap();
    let second = Envelope::seal(
        &alice,
        GROUP,
        epoch_one(),
        &mut chain,
        b"how was your week?",
        &mut rng(23),
    )
    .unwrap();

    // An altered byte is refused and does not cost Bob the key for the genuine message.
    let mut altered = second.clone();
    altered.ciphertext[0] ^= 0x01;
    assert_eq!(
        altered.open(&mut bobs_copy).unwrap_err(),
        EnvelopeError::BadSignature
    );
    // Out of order: the second message first, then the first.
    assert_eq!(
        &*second.open(&mut bobs_copy).unwrap().body,
        b"how was your week?"
    );
    let opened = first.open(&mut bobs_copy).unwrap();
    assert_eq!(&*opened.body, b"hello everyone");
    // The franking key lets Bob report it verifiably.
    assert!(first.check_franking(&opened.body, &opened.franking_key));
    // Delivered again: shown once, refused as a replay.
    assert_eq!(
        first.open(&mut bobs_copy).unwrap_err(),
        EnvelopeError::SenderKey(SenderKeyError::Replay(0))
    );
}

#[wasm_bindgen_test]
fn a_group_log_with_genesis_and_an_add_verifies_and_refuses_forgeries() {
    let alice = DeviceIdentity::generate(&mut rng(1));
    let bob = DeviceIdentity::generate(&mut rng(2));
    let carol = DeviceIdentity::generate(&mut rng(3));

    let genesis = Op::genesis(
        GROUP,
        alice.device_id(),
        Timestamp(T0),
        entry(1, "Alice", &alice),
        GroupSettings::default(),
    )
    .sign(&alice)
    .unwrap();
    let state = GroupState::from_genesis(&genesis).unwrap();
    let add_bob = OpBody::Add {
        member: entry(2, "Bob", &bob),
        invite: None,
        invite_sig: None,
        invite_device: None,
    };
    let add = state
        .next_op(alice.device_id(), Timestamp(T0 + 1), add_bob.clone())
        .sign(&alice)
        .unwrap();

    let verified = verify_log(&[genesis.clone(), add.clone()]).unwrap();
    let names: Vec<&str> = verified
        .members()
        .values()
        .map(|m| m.entry.display_name.as_str())
        .collect();
    assert_eq!(names, ["Alice", "Bob"]);
    assert!(verified.member_of_device(&bob.device_id()).is_some());
    assert!(
        verified.epoch() > state.epoch(),
        "adding Bob starts a new epoch"
    );

    // A server that renames Bob in the stored op breaks Alice's signature.
    let mut renamed = add.clone();
    let at = renamed
        .op
        .windows(3)
        .position(|w| w == b"Bob")
        .expect("the op names Bob");
    renamed.op[at + 1] = b'u';
    assert_eq!(
        verify_log(&[genesis.clone(), renamed]).unwrap_err(),
        LogError::BadSignature
    );
    // Carol is not a member, so she cannot add herself, however well she signs.
    let self_add = state
        .next_op(
            carol.device_id(),
            Timestamp(T0 + 1),
            OpBody::Add {
                member: entry(3, "Carol", &carol),
                invite: None,
                invite_sig: None,
                invite_device: None,
            },
        )
        .sign(&carol)
        .unwrap();
    let refused = verify_log(&[genesis, self_add]).unwrap_err();
    assert!(
        matches!(refused, LogError::UnknownAuthor { .. }),
        "a stranger's op was not refused as such: {refused:?}"
    );
}
