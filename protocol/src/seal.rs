//! HPKE sealing (RFC 9180, mode_base) of a signed payload to one device: with the X-Wing KEM
//! (X25519 + ML-KEM-768, KEM id 0x647a), HKDF-SHA256 and ChaCha20-Poly1305 (protocol version 2);
//! to a device that has not published an X-Wing key yet, with DHKEM(X25519, HKDF-SHA256) and
//! the same KDF and AEAD (version 1). PROTOCOL.md §4.

use serde::{Deserialize, Serialize};

use crate::encoding::b64;
use crate::ids::{DeviceId, Epoch, EpochRef, GroupId, OpHash};

impl SealedPayload {
    /// The epoch this payload was sealed in, by number and hash.
    pub fn epoch_ref(&self) -> EpochRef {
        EpochRef {
            epoch: self.epoch,
            hash: self.epoch_hash,
        }
    }
}

/// What a sealed payload carries; bound into the HPKE `info`, so a payload sealed as one kind
/// cannot be opened as another.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SealKind {
    /// A sender-key distribution for one epoch.
    SenderKey,
    /// A request to join a group through an invite that needs a facilitator's approval.
    JoinRequest,
    /// A report of a message, for the facilitators.
    Report,
    /// A note for the facilitators (a moderation reason, an urgent request).
    FacilitatorNote,
    /// Any other application payload between two devices of a group.
    Direct,
    /// An update between one person's own devices, outside any group
    /// ([`crate::own_devices`]): `group` carries the user id, the epoch fields the version and
    /// hash of the user's current device list.
    OwnDevices,
}

/// A payload sealed to one device, as stored in that device's inbox on the server.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedPayload {
    /// What it carries.
    pub kind: SealKind,
    /// The group it belongs to.
    pub group: GroupId,
    /// The group epoch it was sealed in.
    pub epoch: Epoch,
    /// Hash of the group-log op that started that epoch.
    pub epoch_hash: OpHash,
    /// The sending device (bound as HPKE associated data and by the inner signature).
    pub sender: DeviceId,
    /// The device that can open it.
    pub recipient: DeviceId,
    /// The HPKE encapsulated key: 1120 bytes (X-Wing) or 32 (X25519, to a device of version 1).
    pub enc: Encapsulation,
    /// The HPKE ciphertext of `signature (64) || payload`.
    #[serde(with = "b64")]
    pub ciphertext: Vec<u8>,
}

use hpke::{Deserializable as _, OpModeR, OpModeS, Serializable as _};

/// Length of an X-Wing encapsulation (HPKE `enc`).
pub const PQ_ENC_LEN: usize = 1120;
/// Length of an X25519 encapsulation (HPKE `enc`), to a device of protocol version 1.
pub const X25519_ENC_LEN: usize = 32;

/// An HPKE encapsulated key (`enc`), base64 on the wire: [`PQ_ENC_LEN`] bytes when the payload was
/// sealed with X-Wing, [`X25519_ENC_LEN`] when it was sealed to a device of version 1 with
/// X25519. Its length names the KEM; any other length is refused when parsed.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
#[serde(transparent)]
pub struct Encapsulation(#[serde(with = "b64")] Vec<u8>);

impl Encapsulation {
    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Whether it is an X-Wing (post-quantum hybrid) encapsulation.
    pub fn is_pq(&self) -> bool {
        self.0.len() == PQ_ENC_LEN
    }

    /// An encapsulation from its bytes: [`PQ_ENC_LEN`] or [`X25519_ENC_LEN`] of them.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        matches!(bytes.len(), PQ_ENC_LEN | X25519_ENC_LEN).then(|| Encapsulation(bytes.to_vec()))
    }
}

impl<'de> Deserialize<'de> for Encapsulation {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes = b64::deserialize(d)?;
        Encapsulation::from_bytes(&bytes).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "an encapsulated key is {PQ_ENC_LEN} or {X25519_ENC_LEN} bytes"
            ))
        })
    }
}
use zeroize::Zeroizing;

use crate::identity::{DeviceIdentity, DeviceKeys, Signature};
use crate::primitives::labelled;

type PqKem = hpke::kem::XWing;
type Kem = hpke::kem::X25519HkdfSha256;
type Kdf = hpke::kdf::HkdfSha256;
type Aead = hpke::aead::ChaCha20Poly1305;

/// Prefix of the HPKE `info` string.
pub const LABEL_SEAL_INFO: &str = "confide/v1/seal";
/// Label of the sender's signature inside a sealed payload.
pub const LABEL_SEAL_SIG: &str = "confide/v1/seal-sig";
/// Largest payload that may be sealed (before the 64-byte signature and the 16-byte tag).
pub const MAX_SEALED_PAYLOAD: usize = 64 * 1024;
/// Largest ciphertext of a sealed payload: [`MAX_SEALED_PAYLOAD`] plus the 64-byte inner
/// signature and the 16-byte AEAD tag (65,616 bytes; PROTOCOL.md §4.6 step 2). A recipient
/// refuses to open a longer one, and the server refuses to store it (`message_too_large`,
/// §10.1 `send_sealed` step 1).
pub const MAX_SEALED_CIPHERTEXT: usize = MAX_SEALED_PAYLOAD + 64 + 16;

/// Why sealing or opening failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The recipient's sealing key is not signed by its identity key.
    #[error("the recipient's sealing key is not signed by its identity key")]
    UnsignedRecipientKey,
    /// The payload is larger than [`MAX_SEALED_PAYLOAD`].
    #[error("payload of {0} bytes exceeds the {MAX_SEALED_PAYLOAD}-byte limit")]
    TooLarge(usize),
    /// The payload is addressed to another device.
    #[error("sealed payload is addressed to another device")]
    WrongRecipient,
    /// HPKE failed: wrong key, or the ciphertext or its context (kind, group, epoch, recipient,
    /// sender) was altered.
    #[error("cannot open sealed payload: wrong key or altered ciphertext or context")]
    Open,
    /// The inner signature does not verify against the stated sender.
    #[error("sealed payload is not signed by its stated sender")]
    BadSignature,
    /// An HPKE key could not be parsed or encapsulation failed.
    #[error("HPKE failure: {0}")]
    Hpke(String),
}

impl SealKind {
    /// The one-byte code bound into the HPKE `info`.
    pub fn code(self) -> u8 {
        match self {
            SealKind::SenderKey => 1,
            SealKind::JoinRequest => 2,
            SealKind::Report => 3,
            SealKind::FacilitatorNote => 4,
            SealKind::Direct => 5,
            SealKind::OwnDevices => 6,
        }
    }
}

/// The HPKE `info`: `"confide/v1/seal" || 0x00 || kind (1) || group (16) || epoch (8, BE) ||
/// epoch hash (32) || recipient (32)`.
pub fn seal_info(
    kind: SealKind,
    group: &GroupId,
    epoch: EpochRef,
    recipient: &DeviceId,
) -> Vec<u8> {
    labelled(
        LABEL_SEAL_INFO,
        &[
            &[kind.code()],
            group.as_bytes(),
            &epoch.epoch.0.to_be_bytes(),
            epoch.hash.as_bytes(),
            recipient.as_bytes(),
        ],
    )
}

/// Seals `payload` from `sender` to `recipient`: the payload is signed by the sender over
/// `info || sender || payload` (so it cannot be re-attributed or forwarded to someone else), then
/// HPKE-encrypted with `info` and with the sender's id as associated data.
pub fn seal(
    sender: &DeviceIdentity,
    recipient: &DeviceKeys,
    kind: SealKind,
    group: GroupId,
    epoch: EpochRef,
    payload: &[u8],
    rng: &mut impl rand_core::CryptoRng,
) -> Result<SealedPayload, SealError> {
    if payload.len() > MAX_SEALED_PAYLOAD {
        return Err(SealError::TooLarge(payload.len()));
    }
    let info = seal_info(kind, &group, epoch, &recipient.device);
    let (enc, ciphertext) =
        seal_signed(sender, recipient, &info, LABEL_SEAL_SIG, payload, None, rng)?;
    Ok(SealedPayload {
        kind,
        group,
        epoch: epoch.epoch,
        epoch_hash: epoch.hash,
        sender: sender.device_id(),
        recipient: recipient.device,
        enc,
        ciphertext,
    })
}

/// The construction of PROTOCOL.md §4.3 for any `info` and signature label: checks the
/// recipient's keys, signs `sig_label || 0x00 || info || sender || payload`, and HPKE-seals
/// `signature || payload` to the recipient's X-Wing key (or, for a recipient of version 1
/// without one, its X25519 key) with `info` and the sender's id as associated data — in
/// mode_base, or in mode_psk with `psk = (psk, psk_id)`. Returns `(enc, ciphertext)`. The caller
/// bounds the payload's size.
pub(crate) fn seal_signed(
    sender: &DeviceIdentity,
    recipient: &DeviceKeys,
    info: &[u8],
    sig_label: &str,
    payload: &[u8],
    psk: Option<(&[u8], &[u8])>,
    rng: &mut impl rand_core::CryptoRng,
) -> Result<(Encapsulation, Vec<u8>), SealError> {
    recipient
        .verify()
        .map_err(|_| SealError::UnsignedRecipientKey)?;
    let sender_id = sender.device_id();
    let signature = sender.sign(sig_label, &[info, sender_id.as_bytes(), payload]);
    let mut inner = Zeroizing::new(Vec::with_capacity(64 + payload.len()));
    inner.extend_from_slice(&signature.0);
    inner.extend_from_slice(payload);
    let aad = sender_id.as_bytes();
    let (enc, ciphertext) = match &recipient.pq_key {
        Some(key) => seal_with::<PqKem>(key.as_bytes(), info, &inner, aad, psk, rng)?,
        None => seal_with::<Kem>(&recipient.sealing_key, info, &inner, aad, psk, rng)?,
    };
    let enc = Encapsulation::from_bytes(&enc)
        .ok_or_else(|| SealError::Hpke("unexpected encapsulation length".into()))?;
    Ok((enc, ciphertext))
}

/// One single-shot HPKE seal with the KEM `K` (X-Wing, or X25519 for a device of version 1) and
/// the suite's KDF and AEAD, to the public key `public`. Returns `(enc, ciphertext)`.
fn seal_with<K: hpke::Kem>(
    public: &[u8],
    info: &[u8],
    plaintext: &[u8],
    aad: &[u8],
    psk: Option<(&[u8], &[u8])>,
    rng: &mut impl rand_core::CryptoRng,
) -> Result<(Vec<u8>, Vec<u8>), SealError> {
    let hpke_err = |e: hpke::HpkeError| SealError::Hpke(e.to_string());
    let pk = K::PublicKey::from_bytes(public).map_err(hpke_err)?;
    let (enc, ciphertext) = hpke::single_shot_seal_with_rng::<Aead, Kdf, K>(
        &seal_mode(psk)?,
        &pk,
        info,
        plaintext,
        aad,
        rng,
    )
    .map_err(hpke_err)?;
    Ok((enc.to_bytes().to_vec(), ciphertext))
}

/// The opening that matches [`seal_with`], with the secret key `secret`. Any failure of the
/// encapsulation or the ciphertext is [`SealError::Open`].
fn open_with<K: hpke::Kem>(
    secret: &[u8],
    enc: &Encapsulation,
    info: &[u8],
    ciphertext: &[u8],
    aad: &[u8],
    psk: Option<(&[u8], &[u8])>,
) -> Result<Vec<u8>, SealError> {
    let sk = K::PrivateKey::from_bytes(secret).map_err(|e| SealError::Hpke(e.to_string()))?;
    let enc = K::EncappedKey::from_bytes(enc.as_bytes()).map_err(|_| SealError::Open)?;
    hpke::single_shot_open::<Aead, Kdf, K>(&open_mode(psk)?, &sk, &enc, info, ciphertext, aad)
        .map_err(|_| SealError::Open)
}

/// HPKE's sender mode for either KEM: mode_base, or mode_psk with `psk = (psk, psk_id)`.
fn seal_mode<'a, K: hpke::Kem>(
    psk: Option<(&'a [u8], &'a [u8])>,
) -> Result<OpModeS<'a, K>, SealError> {
    Ok(match psk {
        None => OpModeS::Base,
        Some((psk, psk_id)) => OpModeS::Psk(
            hpke::PskBundle::new(psk, psk_id).map_err(|e| SealError::Hpke(e.to_string()))?,
        ),
    })
}

/// HPKE's receiver mode for either KEM, as [`seal_mode`].
fn open_mode<'a, K: hpke::Kem>(
    psk: Option<(&'a [u8], &'a [u8])>,
) -> Result<OpModeR<'a, K>, SealError> {
    Ok(match psk {
        None => OpModeR::Base,
        Some((psk, psk_id)) => OpModeR::Psk(
            hpke::PskBundle::new(psk, psk_id).map_err(|e| SealError::Hpke(e.to_string()))?,
        ),
    })
}

/// Opens a payload sealed to `recipient` and checks the sender's signature. Returns the payload;
/// the authenticated sender, kind, group and epoch are the fields of `sealed`.
pub fn open(
    recipient: &DeviceIdentity,
    sealed: &SealedPayload,
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    if sealed.recipient != recipient.device_id() {
        return Err(SealError::WrongRecipient);
    }
    if sealed.ciphertext.len() > MAX_SEALED_CIPHERTEXT {
        return Err(SealError::TooLarge(sealed.ciphertext.len()));
    }
    let info = seal_info(
        sealed.kind,
        &sealed.group,
        sealed.epoch_ref(),
        &sealed.recipient,
    );
    open_signed(
        recipient,
        &info,
        LABEL_SEAL_SIG,
        &sealed.sender,
        &sealed.enc,
        &sealed.ciphertext,
        None,
    )
}

/// The opening of PROTOCOL.md §4.6 steps 4–6 for any `info` and signature label. The caller
/// checks the recipient and bounds the ciphertext's size first.
pub(crate) fn open_signed(
    recipient: &DeviceIdentity,
    info: &[u8],
    sig_label: &str,
    sender: &DeviceId,
    enc: &Encapsulation,
    ciphertext: &[u8],
    psk: Option<(&[u8], &[u8])>,
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let aad = sender.as_bytes();
    let inner = Zeroizing::new(if enc.is_pq() {
        // A device of version 1 that has not added its X-Wing key cannot have been sealed to
        // with it.
        let secret = recipient.pq_secret_bytes().ok_or(SealError::Open)?;
        open_with::<PqKem>(secret.as_ref(), enc, info, ciphertext, aad, psk)?
    } else {
        let secret = recipient.sealing_secret_bytes();
        open_with::<Kem>(secret.as_ref(), enc, info, ciphertext, aad, psk)?
    });
    if inner.len() < 64 {
        return Err(SealError::Open);
    }
    let mut sig = [0u8; 64];
    sig.copy_from_slice(&inner[..64]);
    let payload = &inner[64..];
    crate::identity::verify(
        sender,
        sig_label,
        &[info, sender.as_bytes(), payload],
        &Signature(sig),
    )
    .map_err(|_| SealError::BadSignature)?;
    Ok(Zeroizing::new(payload.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng;

    fn ep(n: u64) -> EpochRef {
        EpochRef {
            epoch: Epoch(n),
            hash: OpHash([n as u8; 32]),
        }
    }

    fn setup() -> (DeviceIdentity, DeviceIdentity, SealedPayload) {
        let alice = DeviceIdentity::generate(&mut test_rng(1));
        let bob = DeviceIdentity::generate(&mut test_rng(2));
        let sealed = seal(
            &alice,
            &bob.public_keys(),
            SealKind::SenderKey,
            GroupId([9; 16]),
            ep(3),
            b"chain key",
            &mut test_rng(3),
        )
        .unwrap();
        (alice, bob, sealed)
    }

    #[test]
    fn a_version_2_device_is_sealed_to_with_x_wing_and_a_version_1_device_with_x25519() {
        let (alice, bob, sealed) = setup();
        assert!(bob.public_keys().has_pq_key());
        assert_eq!(sealed.enc.as_bytes().len(), PQ_ENC_LEN);
        let mut old = DeviceIdentity::from_secret_bytes(&[5; 32], &[6; 32], None);
        assert!(!old.public_keys().has_pq_key());
        let to_old = seal(
            &alice,
            &old.public_keys(),
            SealKind::SenderKey,
            GroupId([9; 16]),
            ep(3),
            b"chain key",
            &mut test_rng(7),
        )
        .unwrap();
        assert_eq!(to_old.enc.as_bytes().len(), X25519_ENC_LEN);
        assert_eq!(&*open(&old, &to_old).unwrap(), b"chain key");
        // After it moves to version 2 it still opens what was sealed to it before (its inbox),
        // and what is sealed to its new keys goes with X-Wing.
        old.add_pq_key(&mut test_rng(8));
        assert_eq!(&*open(&old, &to_old).unwrap(), b"chain key");
        let to_new = seal(
            &alice,
            &old.public_keys(),
            SealKind::SenderKey,
            GroupId([9; 16]),
            ep(3),
            b"chain key",
            &mut test_rng(9),
        )
        .unwrap();
        assert!(to_new.enc.is_pq());
        assert_eq!(&*open(&old, &to_new).unwrap(), b"chain key");
    }

    #[test]
    fn a_post_quantum_payload_does_not_open_with_x25519_alone() {
        let (_, bob, sealed) = setup();
        // The same device without its X-Wing secret (as a version-1 copy of it would be).
        let secrets = bob.to_secret_bytes();
        let without = DeviceIdentity::from_secrets(&secrets[..64]).unwrap();
        assert_eq!(open(&without, &sealed).unwrap_err(), SealError::Open);
        // An X25519-length encapsulation in place of the X-Wing one does not open either.
        let mut cut = sealed.clone();
        cut.enc = Encapsulation::from_bytes(&sealed.enc.as_bytes()[..X25519_ENC_LEN]).unwrap();
        assert_eq!(open(&bob, &cut).unwrap_err(), SealError::Open);
    }

    #[test]
    fn an_encapsulation_of_any_other_length_is_refused_when_parsed() {
        let (_, _, sealed) = setup();
        let mut json: serde_json::Value = serde_json::to_value(&sealed).unwrap();
        json["enc"] = serde_json::Value::String(crate::encoding::b64_encode(&[1; 64]));
        assert!(serde_json::from_value::<SealedPayload>(json).is_err());
    }

    #[test]
    fn a_swapped_or_unsigned_x_wing_key_is_refused_for_sealing() {
        let (alice, bob, _) = setup();
        let mallory = DeviceIdentity::generate(&mut test_rng(11));
        let mut swapped = bob.public_keys();
        swapped.pq_key = mallory.public_keys().pq_key;
        let mut unsigned = bob.public_keys();
        unsigned.pq_sig = None;
        for keys in [swapped, unsigned] {
            assert_eq!(
                seal(
                    &alice,
                    &keys,
                    SealKind::SenderKey,
                    GroupId([9; 16]),
                    ep(3),
                    b"chain key",
                    &mut test_rng(12),
                )
                .unwrap_err(),
                SealError::UnsignedRecipientKey
            );
        }
    }

    #[test]
    fn recipient_opens_and_nobody_else_can() {
        let (alice, bob, sealed) = setup();
        assert_eq!(&*open(&bob, &sealed).unwrap(), b"chain key");
        assert_eq!(
            open(&alice, &sealed).unwrap_err(),
            SealError::WrongRecipient
        );
        let eve = DeviceIdentity::generate(&mut test_rng(4));
        let mut redirected = sealed.clone();
        redirected.recipient = eve.device_id();
        assert_eq!(open(&eve, &redirected).unwrap_err(), SealError::Open);
    }

    #[test]
    fn context_is_bound() {
        let (_alice, bob, sealed) = setup();
        let variants = [
            SealedPayload {
                kind: SealKind::Report,
                ..sealed.clone()
            },
            SealedPayload {
                group: GroupId([8; 16]),
                ..sealed.clone()
            },
            SealedPayload {
                epoch: Epoch(4),
                ..sealed.clone()
            },
            SealedPayload {
                epoch_hash: OpHash([4; 32]),
                ..sealed.clone()
            },
            SealedPayload {
                sender: bob.device_id(),
                ..sealed.clone()
            },
        ];
        for v in variants {
            assert_eq!(open(&bob, &v).unwrap_err(), SealError::Open);
        }
        let mut flipped = sealed.clone();
        flipped.ciphertext[5] ^= 0x40;
        assert_eq!(open(&bob, &flipped).unwrap_err(), SealError::Open);
    }

    #[test]
    fn payload_signed_by_someone_else_is_rejected() {
        // Mallory seals to Bob but claims to be Alice: the AEAD binds the stated sender, and the
        // inner signature must be Alice's, so Bob rejects it.
        let alice = DeviceIdentity::generate(&mut test_rng(1));
        let bob = DeviceIdentity::generate(&mut test_rng(2));
        let mallory = DeviceIdentity::generate(&mut test_rng(5));
        let mut forged = seal(
            &mallory,
            &bob.public_keys(),
            SealKind::SenderKey,
            GroupId([9; 16]),
            ep(3),
            b"fake",
            &mut test_rng(6),
        )
        .unwrap();
        forged.sender = alice.device_id();
        assert!(open(&bob, &forged).is_err());
    }

    #[test]
    fn unsigned_recipient_key_is_refused() {
        let alice = DeviceIdentity::generate(&mut test_rng(1));
        let mut keys = DeviceIdentity::generate(&mut test_rng(2)).public_keys();
        keys.sealing_key = DeviceIdentity::generate(&mut test_rng(7)).sealing_public();
        let err = seal(
            &alice,
            &keys,
            SealKind::Direct,
            GroupId([0; 16]),
            ep(0),
            b"x",
            &mut test_rng(8),
        );
        assert_eq!(err.unwrap_err(), SealError::UnsignedRecipientKey);
    }
}
