//! The wasm size probe: what a browser client calls in confide-protocol, exported through
//! wasm-bindgen so that everything it reaches is kept by the linker and measured by
//! `cargo xtask wasm-size`. Inputs come from JavaScript, so nothing is constant-folded away.
//!
//! This is a measuring device, not an API. The client core's entry points are in
//! [`crate::client_probe`], so the figure in BENCHMARKS.md is the core and the protocol together.

use chacha20::ChaCha20Rng;
use confide_protocol::envelope::{Envelope, MessageContent};
use confide_protocol::group_log::{GroupSettings, MemberEntry, OpBody, SignedOp};
use confide_protocol::identity::{ExportedIdentity, KdfParams, safety_number};
use confide_protocol::report::{self, ReportPayload};
use confide_protocol::seal::{self, SealKind, SealedPayload};
use confide_protocol::sender_key::{ReceiverChain, SenderChain};
use confide_protocol::{
    ClientFrame, DeviceIdentity, DeviceKeys, Epoch, EpochRef, GroupId, Op, OpHash, ServerFrame,
    Timestamp, UserId, names, verify_log,
};
use rand_core::SeedableRng;
use wasm_bindgen::prelude::*;

/// Length of a secret identity (signing key, sealing key, X-Wing seed).
const IDENTITY_SECRET_LEN: usize = confide_protocol::identity::SECRET_LEN;

fn rng(seed: &[u8]) -> Result<ChaCha20Rng, JsError> {
    let seed: [u8; 32] = seed
        .try_into()
        .map_err(|_| JsError::new("the random seed must be 32 bytes"))?;
    Ok(ChaCha20Rng::from_seed(seed))
}

fn identity(secret: &[u8]) -> Result<DeviceIdentity, JsError> {
    if secret.len() != IDENTITY_SECRET_LEN {
        return Err(JsError::new("an identity secret is 96 bytes"));
    }
    DeviceIdentity::from_secrets(secret).map_err(|_| JsError::new("not an identity secret"))
}

fn bytes16(bytes: &[u8], what: &str) -> Result<[u8; 16], JsError> {
    bytes
        .try_into()
        .map_err(|_| JsError::new(&format!("{what} must be 16 bytes")))
}

fn epoch_ref(epoch: u64, hash: &[u8]) -> Result<EpochRef, JsError> {
    let hash: [u8; 32] = hash
        .try_into()
        .map_err(|_| JsError::new("an epoch hash is 32 bytes"))?;
    Ok(EpochRef {
        epoch: Epoch(epoch),
        hash: OpHash(hash),
    })
}

fn log(json: &str) -> Result<Vec<SignedOp>, JsError> {
    Ok(serde_json::from_str(json)?)
}

/// A new device identity drawn from a 32-byte seed: its 64 secret bytes.
#[wasm_bindgen]
pub fn identity_generate(seed: &[u8]) -> Result<Vec<u8>, JsError> {
    let id = DeviceIdentity::generate(&mut rng(seed)?);
    Ok(id.to_secret_bytes().to_vec())
}

/// The signed public keys of an identity, as JSON.
#[wasm_bindgen]
pub fn identity_public_keys(secret: &[u8]) -> Result<String, JsError> {
    Ok(serde_json::to_string(&identity(secret)?.public_keys())?)
}

/// The identity encrypted under a passphrase (Argon2id), as JSON.
#[wasm_bindgen]
pub fn identity_export(secret: &[u8], passphrase: &str, seed: &[u8]) -> Result<String, JsError> {
    let exported = identity(secret)?.export(
        passphrase.as_bytes(),
        KdfParams::RECOMMENDED,
        &mut rng(seed)?,
    )?;
    Ok(serde_json::to_string(&exported)?)
}

/// The identity decrypted from its export: its 64 secret bytes.
#[wasm_bindgen]
pub fn identity_import(exported: &str, passphrase: &str) -> Result<Vec<u8>, JsError> {
    let exported: ExportedIdentity = serde_json::from_str(exported)?;
    let id = DeviceIdentity::import(&exported, passphrase.as_bytes())?;
    Ok(id.to_secret_bytes().to_vec())
}

/// The safety number two people compare for their devices.
#[wasm_bindgen]
pub fn identity_safety_number(
    user_a: &[u8],
    secret_a: &[u8],
    user_b: &[u8],
    secret_b: &[u8],
) -> Result<String, JsError> {
    let (ua, ub) = (
        UserId(bytes16(user_a, "a user id")?),
        UserId(bytes16(user_b, "a user id")?),
    );
    let (da, db) = (
        identity(secret_a)?.device_id(),
        identity(secret_b)?.device_id(),
    );
    Ok(safety_number((&ua, &da), (&ub, &db)))
}

/// Seals `payload` to one device (HPKE), as JSON of the sealed payload.
#[wasm_bindgen]
#[allow(clippy::too_many_arguments)] // one argument per field of the sealing context
pub fn seal_to(
    sender: &[u8],
    recipient_keys: &str,
    kind: &str,
    group: &[u8],
    epoch: u64,
    epoch_hash: &[u8],
    payload: &[u8],
    seed: &[u8],
) -> Result<String, JsError> {
    let recipient: DeviceKeys = serde_json::from_str(recipient_keys)?;
    let kind: SealKind = serde_json::from_value(serde_json::Value::String(kind.into()))?;
    let sealed = seal::seal(
        &identity(sender)?,
        &recipient,
        kind,
        GroupId(bytes16(group, "a group id")?),
        epoch_ref(epoch, epoch_hash)?,
        payload,
        &mut rng(seed)?,
    )?;
    Ok(serde_json::to_string(&sealed)?)
}

/// Opens a payload sealed to this device.
#[wasm_bindgen]
pub fn open_sealed(recipient: &[u8], sealed: &str) -> Result<Vec<u8>, JsError> {
    let sealed: SealedPayload = serde_json::from_str(sealed)?;
    Ok(seal::open(&identity(recipient)?, &sealed)?.to_vec())
}

/// A new sending chain from a 32-byte seed, serialized.
#[wasm_bindgen]
pub fn sender_chain_generate(seed: &[u8]) -> Result<Vec<u8>, JsError> {
    Ok(SenderChain::generate(&mut rng(seed)?).to_bytes().to_vec())
}

/// The distribution of a sending chain: what is sealed to each member.
#[wasm_bindgen]
pub fn sender_chain_distribution(chain: &[u8]) -> Result<Vec<u8>, JsError> {
    Ok(SenderChain::from_bytes(chain)?.distribution().to_vec())
}

/// Encrypts and signs a message (`content`: JSON of a `MessageContent`) as the next message
/// of `chain`: JSON
/// `{"envelope": …, "chain": [the advanced chain's bytes]}`.
#[wasm_bindgen]
pub fn envelope_seal(
    sender: &[u8],
    group: &[u8],
    epoch: u64,
    epoch_hash: &[u8],
    chain: &[u8],
    content: &str,
    seed: &[u8],
) -> Result<String, JsError> {
    let mut chain = SenderChain::from_bytes(chain)?;
    let content: MessageContent = serde_json::from_str(content)?;
    let body = serde_json::to_vec(&content)?;
    let envelope = Envelope::seal(
        &identity(sender)?,
        GroupId(bytes16(group, "a group id")?),
        epoch_ref(epoch, epoch_hash)?,
        &mut chain,
        &body,
        &mut rng(seed)?,
    )?;
    Ok(serde_json::to_string(&serde_json::json!({
        "envelope": envelope,
        "chain": chain.to_bytes().to_vec(),
    }))?)
}

/// Verifies and decrypts an envelope with the sender's receiving chain (bytes, or the
/// distribution when `from_distribution`): JSON `{"content": …, "chain": [bytes]}`.
#[wasm_bindgen]
pub fn envelope_open(
    chain: &[u8],
    from_distribution: bool,
    envelope: &str,
) -> Result<String, JsError> {
    let mut chain = if from_distribution {
        ReceiverChain::from_distribution(chain)?
    } else {
        ReceiverChain::from_bytes(chain)?
    };
    let envelope: Envelope = serde_json::from_str(envelope)?;
    let opened = envelope.open(&mut chain)?;
    let content: MessageContent = serde_json::from_slice(&opened.body)?;
    Ok(serde_json::to_string(&serde_json::json!({
        "content": content,
        "chain": chain.to_bytes().to_vec(),
    }))?)
}

/// Seals a report of a message to the facilitators' devices: JSON of the sealed payloads.
#[wasm_bindgen]
pub fn report_seal(
    reporter: &[u8],
    facilitators: &str,
    epoch: u64,
    epoch_hash: &[u8],
    report: &str,
    seed: &[u8],
) -> Result<String, JsError> {
    let facilitators: Vec<DeviceKeys> = serde_json::from_str(facilitators)?;
    let report: ReportPayload = serde_json::from_str(report)?;
    let sealed = report::seal_report(
        &identity(reporter)?,
        &facilitators,
        epoch_ref(epoch, epoch_hash)?,
        &report,
        &mut rng(seed)?,
    )?;
    Ok(serde_json::to_string(&sealed)?)
}

/// Opens and verifies a report on a facilitator's device: the offending device's id.
#[wasm_bindgen]
pub fn report_open(facilitator: &[u8], sealed: &str) -> Result<String, JsError> {
    let sealed: SealedPayload = serde_json::from_str(sealed)?;
    let verified = report::open_report(&identity(facilitator)?, &sealed)?;
    Ok(verified.offender.to_string())
}

/// The signed genesis op of a new group, as JSON.
#[wasm_bindgen]
pub fn group_genesis(
    creator: &[u8],
    user: &[u8],
    display_name: &str,
    group: &[u8],
    at_ms: u64,
) -> Result<String, JsError> {
    let id = identity(creator)?;
    let entry = MemberEntry {
        user: UserId(bytes16(user, "a user id")?),
        display_name: display_name.into(),
        devices: vec![id.public_keys()],
        device_list: None,
    };
    let op = Op::genesis(
        GroupId(bytes16(group, "a group id")?),
        id.device_id(),
        Timestamp(at_ms),
        entry,
        GroupSettings::default(),
    );
    Ok(serde_json::to_string(&op.sign(&id)?)?)
}

/// Verifies a group log and signs the next op, an `OpBody` given as JSON, with `author`.
#[wasm_bindgen]
pub fn group_next_op(
    log_json: &str,
    author: &[u8],
    at_ms: u64,
    body: &str,
) -> Result<String, JsError> {
    let state = verify_log(&log(log_json)?)?;
    let id = identity(author)?;
    let body: OpBody = serde_json::from_str(body)?;
    let op = state.next_op(id.device_id(), Timestamp(at_ms), body);
    let signed = op.sign(&id)?;
    // Applying it on a copy checks that the log would accept it before it is sent.
    let mut after = state.clone();
    after.apply(&signed)?;
    Ok(serde_json::to_string(&signed)?)
}

/// Verifies a group log: JSON of the epoch, the members' names, and whether the group is open
/// at `now_ms` (open hours are evaluated in the group's time zone).
#[wasm_bindgen]
pub fn group_verify(log_json: &str, now_ms: u64) -> Result<String, JsError> {
    let state = verify_log(&log(log_json)?)?;
    let names: Vec<&str> = state
        .members()
        .values()
        .map(|m| m.entry.display_name.as_str())
        .collect();
    let look_alike: Vec<Vec<String>> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let others = names
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, n)| *n);
            names::confusable_with(name, others)
        })
        .collect();
    Ok(serde_json::to_string(&serde_json::json!({
        "epoch": state.epoch().0,
        "head": state.head().to_string(),
        "members": names,
        "look_alike": look_alike,
        "mixed_script": names.iter().map(|n| names::is_mixed_script(n)).collect::<Vec<_>>(),
        "open": match state.open_hours() {
            Some(hours) => hours.is_open_at(Timestamp(now_ms))?,
            None => true,
        },
        "locked": state.locked(),
    }))?)
}

/// Parses a frame from the server and answers with a client frame (both JSON): the frame
/// codecs a browser client links.
#[wasm_bindgen]
pub fn frames_roundtrip(server_frame: &str, client_frame: &str) -> Result<String, JsError> {
    let server: ServerFrame = serde_json::from_str(server_frame)?;
    let client: ClientFrame = serde_json::from_str(client_frame)?;
    Ok(serde_json::to_string(&serde_json::json!({
        "server": server,
        "client": client,
    }))?)
}
