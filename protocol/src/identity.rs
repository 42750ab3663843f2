//! Device identities: an Ed25519 signing key (the device's identity), and the keys sealed
//! payloads are encrypted to, signed by it: an X-Wing key (X25519 + ML-KEM-768, PROTOCOL.md §4.1)
//! and the X25519 key of protocol version 1; safety numbers; the passphrase-encrypted export used
//! to persist an identity.

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::fmt;
use x25519_dalek::{PublicKey as X25519Public, StaticSecret};
use zeroize::Zeroizing;

use crate::encoding::b64_array;
use crate::error::CryptoError;
use crate::ids::{DeviceId, UserId};
use crate::primitives::{self, labelled};

/// Label of the identity key's signature over the sealing key.
pub const LABEL_SEALING_KEY: &str = "confide/v1/sealing-key";
/// Label of the identity key's signature over the X-Wing sealing key (protocol version 2).
pub const LABEL_PQ_SEALING_KEY: &str = "confide/v2/pq-sealing-key";
/// Label (associated data) of an exported identity.
pub const LABEL_IDENTITY_EXPORT: &str = "confide/v1/identity-export";
/// Length of an X-Wing encapsulation (public) key.
pub const PQ_KEY_LEN: usize = 1216;
/// Length of a device's secrets as [`DeviceIdentity::to_secret_bytes`] writes them: `signing
/// (32) || sealing (32) || pq seed (32)`. A device made by protocol version 1 had only the
/// first 64 bytes ([`LEGACY_SECRET_LEN`]).
pub const SECRET_LEN: usize = 96;
/// Length of a version-1 device's secrets (no X-Wing key yet; [`DeviceIdentity::add_pq_key`]).
pub const LEGACY_SECRET_LEN: usize = 64;

/// A device's X-Wing encapsulation key (1216 bytes, base64 on the wire), the post-quantum hybrid
/// key that payloads are sealed to (PROTOCOL.md §4.1).
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct PqSealingKey(#[serde(with = "crate::encoding::b64")] Vec<u8>);

impl PqSealingKey {
    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// A key from its bytes: exactly [`PQ_KEY_LEN`] of them, forming a valid X-Wing
    /// encapsulation key (PROTOCOL.md §3.2): the ML-KEM-768 part passes FIPS 203's modulus check
    /// (every coefficient below `q`, §7.2). Checked here, where the key is first read, so a
    /// signed but unusable key is refused by the server and by every log and list before anyone
    /// tries to seal to it; one such key in a group would otherwise stop every sender.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        use hpke::Deserializable as _;
        if bytes.len() != PQ_KEY_LEN {
            return Err(CryptoError::BadPublicKey);
        }
        <hpke::kem::XWing as hpke::Kem>::PublicKey::from_bytes(bytes)
            .map_err(|_| CryptoError::BadPublicKey)?;
        Ok(PqSealingKey(bytes.to_vec()))
    }
}

impl<'de> Deserialize<'de> for PqSealingKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes = crate::encoding::b64::deserialize(d)?;
        PqSealingKey::from_bytes(&bytes).map_err(|_| {
            serde::de::Error::custom(format!(
                "an X-Wing key is a valid {PQ_KEY_LEN}-byte encapsulation key"
            ))
        })
    }
}

impl fmt::Debug for PqSealingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PqSealingKey({}…)",
            hex::encode(&self.0[..8.min(self.0.len())])
        )
    }
}

/// An Ed25519 signature, 64 bytes, base64 on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Signature(#[serde(with = "b64_array")] pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}…)", hex::encode(&self.0[..8]))
    }
}

/// Decodes an Ed25519 public key under the protocol's key rule (PROTOCOL.md §3.3): the 32 bytes
/// must be the *canonical* encoding of a curve point (`y < p`, and no sign bit on `x = 0`) and
/// the point must not be of small order. A mixed-order point (prime-order part plus a torsion
/// component) is accepted, as RFC 8032 and libsodium accept it; its signatures then verify only
/// where the cofactorless equation holds.
///
/// `ed25519-dalek` alone decodes non-canonical `y` (it reduces modulo `p`), so the canonical
/// check is done here by re-encoding: every place that accepts a key without a signature (an
/// invite id) must agree with every place that checks one.
fn decode_public_key(bytes: &[u8; 32]) -> Result<VerifyingKey, CryptoError> {
    let key = VerifyingKey::from_bytes(bytes).map_err(|_| CryptoError::BadPublicKey)?;
    if key.to_edwards().compress().to_bytes() != *bytes || key.is_weak() {
        return Err(CryptoError::BadPublicKey);
    }
    Ok(key)
}

/// Checks that `key` is acceptable as an Ed25519 public key (a device id or an invite id): the
/// canonical encoding of a point that is not of small order (PROTOCOL.md §3.3).
pub fn check_public_key(key: &[u8; 32]) -> Result<(), CryptoError> {
    decode_public_key(key).map(|_| ())
}

/// Verifies `signature` by `device` over `label || 0x00 || parts…` under the strict rule of
/// PROTOCOL.md §3.3: the key must pass [`check_public_key`]; `S` must be below the group order
/// `L`; `R` must decode to a point that is not of small order; and the cofactorless equation
/// `[S]B = R + [k]A` must hold, compared on `R`'s encoding (so a non-canonical `R` never
/// verifies). This is `ed25519-dalek`'s `verify_strict` plus the canonical check on the key.
pub fn verify(
    device: &DeviceId,
    label: &str,
    parts: &[&[u8]],
    signature: &Signature,
) -> Result<(), CryptoError> {
    PublicKey::decode(device)?.verify(label, parts, signature)
}

/// A device's public key, decoded and checked ([`check_public_key`]) once, to check several
/// of its signatures: [`PublicKey::verify`] decides exactly what [`verify`] decides, without
/// decoding the key again each time.
#[derive(Clone, Copy, Debug)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// `device`'s key, if it is acceptable ([`check_public_key`]).
    pub fn decode(device: &DeviceId) -> Result<PublicKey, CryptoError> {
        decode_public_key(device.as_bytes()).map(PublicKey)
    }

    /// [`verify`] with this key (see there for the strict rule).
    pub fn verify(
        &self,
        label: &str,
        parts: &[&[u8]],
        signature: &Signature,
    ) -> Result<(), CryptoError> {
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        self.0
            .verify_strict(&labelled(label, parts), &sig)
            .map_err(|_| CryptoError::BadSignature)
    }
}

/// A fixed, non-zero X25519 secret, used only to test whether a public sealing key is of small
/// order ([`check_sealing_key`]). Not a secret: any clamped scalar serves.
const SMALL_ORDER_PROBE: [u8; 32] = [0x55; 32];

/// Refuses an X25519 sealing key of small order (PROTOCOL.md §3.2). With such a key every
/// Diffie-Hellman result is the all-zero point, whatever the other secret: HPKE refuses to seal
/// to it (RFC 9180 §7.1.4), so a signed low-order key in a group's log would make every seal to
/// the group fail. A scalar that X25519 clamps is a multiple of the cofactor 8, so one DH with
/// any fixed secret is zero exactly when the point is of small order: `was_contributory` tells.
fn check_sealing_key(key: &[u8; 32]) -> Result<(), CryptoError> {
    let probe = StaticSecret::from(SMALL_ORDER_PROBE);
    if probe
        .diffie_hellman(&X25519Public::from(*key))
        .was_contributory()
    {
        Ok(())
    } else {
        Err(CryptoError::BadPublicKey)
    }
}

/// The public half of a device: what other members need to verify its signatures and seal
/// payloads to it. The sealing keys are signed by the identity key, so a server that swaps one is
/// detected. A device of protocol version 2 has both keys; a device that has not connected since
/// version 1 has only the X25519 key, and is sealed to with it until it publishes an X-Wing key
/// (PROTOCOL.md §4.1).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceKeys {
    /// The device's Ed25519 identity key (which is also its id).
    pub device: DeviceId,
    /// The device's X25519 public key for HPKE sealing.
    #[serde(with = "b64_array")]
    pub sealing_key: [u8; 32],
    /// The identity key's signature over `"confide/v1/sealing-key" || 0x00 || sealing_key`.
    pub sealing_sig: Signature,
    /// The device's X-Wing key for HPKE sealing (protocol version 2); absent only for a device
    /// of version 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pq_key: Option<PqSealingKey>,
    /// The identity key's signature over `"confide/v2/pq-sealing-key" || 0x00 || pq_key`; present
    /// exactly when `pq_key` is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pq_sig: Option<Signature>,
}

impl DeviceKeys {
    /// Checks that the sealing keys were signed by the device's identity key, that the X-Wing
    /// key and its signature come together, and that the X25519 key is not of small order
    /// (PROTOCOL.md §3.2). (The X-Wing key's own validity is checked when it is read,
    /// [`PqSealingKey::from_bytes`].)
    pub fn verify(&self) -> Result<(), CryptoError> {
        check_sealing_key(&self.sealing_key)?;
        verify(
            &self.device,
            LABEL_SEALING_KEY,
            &[&self.sealing_key],
            &self.sealing_sig,
        )?;
        match (&self.pq_key, &self.pq_sig) {
            (None, None) => Ok(()),
            (Some(key), Some(sig)) => verify(&self.device, LABEL_PQ_SEALING_KEY, &[&key.0], sig),
            _ => Err(CryptoError::BadSignature),
        }
    }

    /// Whether payloads to this device are sealed with the post-quantum hybrid (it has an X-Wing
    /// key).
    pub fn has_pq_key(&self) -> bool {
        self.pq_key.is_some()
    }
}

/// A device's secret keys. Zeroized on drop (the inner key types zeroize themselves, the X-Wing
/// seed is `Zeroizing`); never `Debug`-printed beyond its public id, never serialized except
/// through [`Self::export`] and [`Self::to_secret_bytes`].
pub struct DeviceIdentity {
    signing: SigningKey,
    sealing: StaticSecret,
    /// The X-Wing decapsulation key (its 32-byte seed) and the public key derived from it once;
    /// `None` for a device made by protocol version 1 until [`Self::add_pq_key`]. The seed is
    /// random and independent of the other two secrets: derived from either, it would fall to
    /// whoever breaks X25519 or Ed25519 from the published public key.
    pq: Option<(Zeroizing<[u8; 32]>, PqSealingKey)>,
}

impl fmt::Debug for DeviceIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceIdentity")
            .field("device", &self.device_id())
            .finish_non_exhaustive()
    }
}

impl DeviceIdentity {
    /// A fresh identity from the caller's cryptographic randomness.
    pub fn generate(rng: &mut impl rand_core::CryptoRng) -> Self {
        let mut signing = Zeroizing::new([0u8; 32]);
        let mut sealing = Zeroizing::new([0u8; 32]);
        let mut pq = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(signing.as_mut());
        rng.fill_bytes(sealing.as_mut());
        rng.fill_bytes(pq.as_mut());
        Self::from_secret_bytes(&signing, &sealing, Some(&pq))
    }

    /// Rebuilds an identity from its 32-byte secrets: the Ed25519 signing key, the X25519
    /// sealing key and (`None` for a device of protocol version 1) the X-Wing seed.
    pub fn from_secret_bytes(
        signing: &[u8; 32],
        sealing: &[u8; 32],
        pq: Option<&[u8; 32]>,
    ) -> Self {
        DeviceIdentity {
            signing: SigningKey::from_bytes(signing),
            sealing: StaticSecret::from(*sealing),
            pq: pq.map(|seed| (Zeroizing::new(*seed), pq_public(seed))),
        }
    }

    /// Gives a device of protocol version 1 its X-Wing key (a fresh random seed). Its id and
    /// X25519 key stay as they were; the caller stores the new secrets and publishes the new
    /// [`Self::public_keys`] (PROTOCOL.md §4.1, "Moving to version 2"). Does nothing when the
    /// device has one.
    pub fn add_pq_key(&mut self, rng: &mut impl rand_core::CryptoRng) {
        if self.pq.is_none() {
            let mut seed = Zeroizing::new([0u8; 32]);
            rng.fill_bytes(seed.as_mut());
            let public = pq_public(&seed);
            self.pq = Some((seed, public));
        }
    }

    /// Whether this device has an X-Wing key (false only for a device of protocol version 1 not
    /// yet upgraded).
    pub fn has_pq_key(&self) -> bool {
        self.pq.is_some()
    }

    /// This device's id (its Ed25519 public key).
    pub fn device_id(&self) -> DeviceId {
        DeviceId(self.signing.verifying_key().to_bytes())
    }

    /// The X25519 public sealing key.
    pub fn sealing_public(&self) -> [u8; 32] {
        X25519Public::from(&self.sealing).to_bytes()
    }

    /// The public keys to publish, with the sealing keys signed by the identity key.
    pub fn public_keys(&self) -> DeviceKeys {
        let sealing_key = self.sealing_public();
        let pq_key = self.pq.as_ref().map(|(_, public)| public.clone());
        let pq_sig = pq_key
            .as_ref()
            .map(|key| self.sign(LABEL_PQ_SEALING_KEY, &[&key.0]));
        DeviceKeys {
            device: self.device_id(),
            sealing_key,
            sealing_sig: self.sign(LABEL_SEALING_KEY, &[&sealing_key]),
            pq_key,
            pq_sig,
        }
    }

    /// Signs `label || 0x00 || parts…`.
    pub fn sign(&self, label: &str, parts: &[&[u8]]) -> Signature {
        let message = Zeroizing::new(labelled(label, parts));
        Signature(self.signing.sign(&message).to_bytes())
    }

    /// The X25519 secret, for HPKE opening inside this crate.
    pub(crate) fn sealing_secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.sealing.to_bytes())
    }

    /// The X-Wing seed, for HPKE opening inside this crate.
    pub(crate) fn pq_secret_bytes(&self) -> Option<Zeroizing<[u8; 32]>> {
        self.pq.as_ref().map(|(seed, _)| Zeroizing::new(**seed))
    }

    /// The secrets, `signing (32) || sealing (32) || pq seed (32)` ([`SECRET_LEN`]; the first 64
    /// bytes alone for a device of version 1), for a store that encrypts them itself (the
    /// client's encrypted local store). Zeroized on drop; never log or send these bytes.
    pub fn to_secret_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(SECRET_LEN));
        out.extend_from_slice(self.signing.as_bytes());
        out.extend_from_slice(self.sealing.as_bytes());
        if let Some((seed, _)) = &self.pq {
            out.extend_from_slice(seed.as_ref());
        }
        out
    }

    /// Rebuilds an identity from [`Self::to_secret_bytes`]: [`SECRET_LEN`] bytes, or the
    /// [`LEGACY_SECRET_LEN`] of a device of version 1 (which then has no X-Wing key).
    pub fn from_secrets(bytes: &[u8]) -> Result<Self, CryptoError> {
        let part = |i: usize| -> Zeroizing<[u8; 32]> {
            let mut out = Zeroizing::new([0u8; 32]);
            out.copy_from_slice(&bytes[32 * i..32 * (i + 1)]);
            out
        };
        match bytes.len() {
            LEGACY_SECRET_LEN => Ok(Self::from_secret_bytes(&part(0), &part(1), None)),
            SECRET_LEN => Ok(Self::from_secret_bytes(&part(0), &part(1), Some(&part(2)))),
            _ => Err(CryptoError::Decrypt),
        }
    }

    /// Encrypts this identity under a passphrase (Argon2id, then ChaCha20-Poly1305) for storage.
    pub fn export(
        &self,
        passphrase: &[u8],
        params: KdfParams,
        rng: &mut impl rand_core::CryptoRng,
    ) -> Result<ExportedIdentity, CryptoError> {
        let mut salt = [0u8; 16];
        let mut nonce = [0u8; 12];
        rng.fill_bytes(&mut salt);
        rng.fill_bytes(&mut nonce);
        let key = params.derive(passphrase, &salt)?;
        let plaintext = self.to_secret_bytes();
        let device = self.device_id();
        let aad = labelled(LABEL_IDENTITY_EXPORT, &[device.as_bytes()]);
        let ciphertext = primitives::aead_seal(&key, &nonce, &aad, plaintext.as_ref())?;
        Ok(ExportedIdentity {
            v: if self.pq.is_some() { 2 } else { 1 },
            device,
            kdf: params,
            salt,
            nonce,
            ciphertext,
        })
    }

    /// Decrypts an exported identity. A wrong passphrase gives [`CryptoError::Decrypt`].
    pub fn import(exported: &ExportedIdentity, passphrase: &[u8]) -> Result<Self, CryptoError> {
        let key = exported.kdf.derive(passphrase, &exported.salt)?;
        let aad = labelled(LABEL_IDENTITY_EXPORT, &[exported.device.as_bytes()]);
        let plaintext = Zeroizing::new(primitives::aead_open(
            &key,
            &exported.nonce,
            &aad,
            &exported.ciphertext,
        )?);
        let expected = match exported.v {
            1 => LEGACY_SECRET_LEN,
            2 => SECRET_LEN,
            _ => return Err(CryptoError::Decrypt),
        };
        if plaintext.len() != expected {
            return Err(CryptoError::Decrypt);
        }
        let identity = Self::from_secrets(&plaintext)?;
        if identity.device_id() != exported.device {
            return Err(CryptoError::Decrypt);
        }
        Ok(identity)
    }
}

/// The X-Wing public key of a seed (the seed is the X-Wing decapsulation key itself,
/// draft-connolly-cfrg-xwing-kem).
fn pq_public(seed: &[u8; 32]) -> PqSealingKey {
    use hpke::{Deserializable as _, Kem as _, Serializable as _};
    // A 32-byte seed is always a valid X-Wing decapsulation key (`from_bytes` checks only the
    // length), and the public key it gives is always PQ_KEY_LEN bytes long.
    let public = hpke::kem::XWing::sk_to_pk(
        &<hpke::kem::XWing as hpke::Kem>::PrivateKey::from_bytes(seed)
            .unwrap_or_else(|_| unreachable!("a 32-byte seed is an X-Wing key")),
    );
    PqSealingKey(public.to_bytes().to_vec())
}

/// Argon2id parameters for passphrase-derived keys.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Iterations.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl KdfParams {
    /// OWASP's recommended Argon2id setting (19 MiB, 2 iterations, 1 lane): about 50 ms here.
    pub const RECOMMENDED: KdfParams = KdfParams {
        m_kib: 19 * 1024,
        t: 2,
        p: 1,
    };
    /// A deliberately weak setting for tests only.
    pub const INSECURE_FOR_TESTS: KdfParams = KdfParams {
        m_kib: 64,
        t: 1,
        p: 1,
    };
    /// Upper bounds accepted when importing, so a hostile file cannot ask for 4 TiB of memory.
    pub const MAX_M_KIB: u32 = 1024 * 1024;
    /// Upper bound on iterations accepted when importing.
    pub const MAX_T: u32 = 64;
    /// Upper bound on lanes accepted when importing.
    pub const MAX_P: u32 = 16;

    /// Derives a 32-byte key from a passphrase and salt.
    pub fn derive(
        &self,
        passphrase: &[u8],
        salt: &[u8],
    ) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        if self.m_kib > Self::MAX_M_KIB || self.t > Self::MAX_T || self.p > Self::MAX_P {
            return Err(CryptoError::Kdf(
                "parameters above the accepted maximum".into(),
            ));
        }
        let params = argon2::Params::new(self.m_kib, self.t, self.p, Some(32))
            .map_err(|e| CryptoError::Kdf(e.to_string()))?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut key = Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into(passphrase, salt, key.as_mut())
            .map_err(|e| CryptoError::Kdf(e.to_string()))?;
        Ok(key)
    }
}

/// A passphrase-encrypted identity, safe to write to disk.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedIdentity {
    /// Format version: 2 (the three secrets), or 1 (a device of protocol version 1: signing and
    /// X25519 sealing secrets only).
    pub v: u8,
    /// The device this identity belongs to (bound as associated data).
    pub device: DeviceId,
    /// Argon2id parameters.
    pub kdf: KdfParams,
    /// Argon2id salt.
    #[serde(with = "b64_array")]
    pub salt: [u8; 16],
    /// ChaCha20-Poly1305 nonce.
    #[serde(with = "b64_array")]
    pub nonce: [u8; 12],
    /// `signing secret (32) || sealing secret (32) || X-Wing seed (32)` (v2) or the first 64
    /// bytes (v1), encrypted.
    #[serde(with = "crate::encoding::b64")]
    pub ciphertext: Vec<u8>,
}

/// Number of SHA-512 iterations in a fingerprint (as in Signal's numeric fingerprints).
pub const FINGERPRINT_ITERATIONS: u32 = 5200;
/// Fingerprint format version of a device key (members without a device list).
pub const FINGERPRINT_VERSION: u16 = 0;
/// Fingerprint format version of a user identity key (members with a device list, §3.9).
pub const FINGERPRINT_VERSION_IDENTITY: u16 = 1;

/// One party's half of a safety number: 30 digits derived from its device key and user id
/// (fingerprint version 0, for members without a device list).
pub fn fingerprint_digits(user: &UserId, device: &DeviceId) -> String {
    fingerprint(FINGERPRINT_VERSION, user, device.as_bytes())
}

/// One party's half of a safety number for a member with a device list: 30 digits derived from
/// the user identity key (fingerprint version 1, PROTOCOL.md §3.9), so that linking or unlinking
/// a device leaves it as it was and a new identity key changes it.
pub fn identity_fingerprint_digits(
    user: &UserId,
    identity: &crate::device_list::IdentityKey,
) -> String {
    fingerprint(FINGERPRINT_VERSION_IDENTITY, user, identity.as_bytes())
}

fn fingerprint(version: u16, user: &UserId, key: &[u8; 32]) -> String {
    use sha2::{Digest, Sha512};
    let mut hash: Vec<u8> = {
        let mut h = Sha512::new();
        h.update(version.to_be_bytes());
        h.update(key);
        h.update(user.as_bytes());
        h.finalize().to_vec()
    };
    for _ in 1..FINGERPRINT_ITERATIONS {
        let mut h = Sha512::new();
        h.update(&hash);
        h.update(key);
        hash = h.finalize().to_vec();
    }
    let mut digits = String::with_capacity(30);
    for chunk in hash[..30].chunks(5) {
        let mut value = 0u64;
        for byte in chunk {
            value = (value << 8) | u64::from(*byte);
        }
        digits.push_str(&format!("{:05}", value % 100_000));
    }
    digits
}

/// A safety number from two parties' 30-digit halves (either fingerprint version): the smaller
/// first, twelve groups of five digits.
pub fn safety_number_from_halves(a: &str, b: &str) -> String {
    let (first, second) = if a <= b { (a, b) } else { (b, a) };
    let all = format!("{first}{second}");
    all.as_bytes()
        .chunks(5)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The safety number two people compare out of band: both halves, the smaller first, so that
/// both see the same 60 digits. Formatted as twelve groups of five.
pub fn safety_number(a: (&UserId, &DeviceId), b: (&UserId, &DeviceId)) -> String {
    safety_number_from_halves(&fingerprint_digits(a.0, a.1), &fingerprint_digits(b.0, b.1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng;

    #[test]
    fn sealing_key_is_signed_and_tampering_detected() {
        let id = DeviceIdentity::generate(&mut test_rng(1));
        let keys = id.public_keys();
        keys.verify().unwrap();
        let mut swapped = keys.clone();
        swapped.sealing_key = DeviceIdentity::generate(&mut test_rng(2)).sealing_public();
        assert_eq!(swapped.verify(), Err(CryptoError::BadSignature));
    }

    /// X25519 public keys of small order (RFC 7748 §6.1; the list of libsodium's blocklist):
    /// 0, 1, a point of order 8, `p - 1`, and non-canonical encodings of 0 and 1 (`p`, `p + 1`).
    const SMALL_ORDER_KEYS: [&str; 6] = [
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    ];

    #[test]
    fn a_signed_sealing_key_of_small_order_is_refused() {
        let id = DeviceIdentity::generate(&mut test_rng(1));
        for hex_key in SMALL_ORDER_KEYS {
            let mut low = [0u8; 32];
            low.copy_from_slice(&hex::decode(hex_key).unwrap());
            let mut keys = id.public_keys();
            keys.sealing_key = low;
            keys.sealing_sig = id.sign(LABEL_SEALING_KEY, &[&low]);
            assert_eq!(keys.verify(), Err(CryptoError::BadPublicKey), "{hex_key}");
        }
    }

    #[test]
    fn an_x_wing_key_that_fails_the_ml_kem_modulus_check_is_refused() {
        let bad = [0xFF; PQ_KEY_LEN];
        assert_eq!(
            PqSealingKey::from_bytes(&bad),
            Err(CryptoError::BadPublicKey)
        );
        // Signed by its device, it still cannot be read as part of a device's keys.
        let id = DeviceIdentity::generate(&mut test_rng(1));
        let mut json = serde_json::to_value(id.public_keys()).unwrap();
        json["pq_key"] = serde_json::Value::String(crate::encoding::b64_encode(&bad));
        json["pq_sig"] = serde_json::to_value(id.sign(LABEL_PQ_SEALING_KEY, &[&bad])).unwrap();
        assert!(serde_json::from_value::<DeviceKeys>(json).is_err());
        // A real key passes.
        let good = id.public_keys().pq_key.unwrap();
        assert_eq!(PqSealingKey::from_bytes(good.as_bytes()), Ok(good));
    }

    #[test]
    fn signatures_are_bound_to_label_and_key() {
        let id = DeviceIdentity::generate(&mut test_rng(1));
        let other = DeviceIdentity::generate(&mut test_rng(2));
        let sig = id.sign("confide/test", &[b"hello"]);
        verify(&id.device_id(), "confide/test", &[b"hello"], &sig).unwrap();
        assert!(verify(&id.device_id(), "confide/other", &[b"hello"], &sig).is_err());
        assert!(verify(&id.device_id(), "confide/test", &[b"hellO"], &sig).is_err());
        assert!(verify(&other.device_id(), "confide/test", &[b"hello"], &sig).is_err());
    }

    #[test]
    fn export_round_trips_and_wrong_passphrase_fails() {
        let id = DeviceIdentity::generate(&mut test_rng(3));
        let exported = id
            .export(
                b"correct horse",
                KdfParams::INSECURE_FOR_TESTS,
                &mut test_rng(4),
            )
            .unwrap();
        let json = serde_json::to_string(&exported).unwrap();
        let parsed: ExportedIdentity = serde_json::from_str(&json).unwrap();
        let back = DeviceIdentity::import(&parsed, b"correct horse").unwrap();
        assert_eq!(back.device_id(), id.device_id());
        assert_eq!(back.sealing_public(), id.sealing_public());
        assert_eq!(
            DeviceIdentity::import(&parsed, b"wrong").unwrap_err(),
            CryptoError::Decrypt
        );
        let hostile = ExportedIdentity {
            kdf: KdfParams {
                m_kib: u32::MAX,
                t: 1,
                p: 1,
            },
            ..parsed
        };
        assert!(matches!(
            DeviceIdentity::import(&hostile, b"x"),
            Err(CryptoError::Kdf(_))
        ));
    }

    #[test]
    fn a_version_1_export_imports_and_the_device_can_add_its_x_wing_key() {
        let mut old = DeviceIdentity::from_secret_bytes(&[1; 32], &[2; 32], None);
        let exported = old
            .export(b"pw", KdfParams::INSECURE_FOR_TESTS, &mut test_rng(4))
            .unwrap();
        assert_eq!(exported.v, 1);
        let back = DeviceIdentity::import(&exported, b"pw").unwrap();
        assert!(!back.has_pq_key());
        assert_eq!(back.public_keys(), old.public_keys());
        old.add_pq_key(&mut test_rng(5));
        let keys = old.public_keys();
        keys.verify().unwrap();
        assert_eq!(
            keys.pq_key.as_ref().map(|k| k.as_bytes().len()),
            Some(PQ_KEY_LEN)
        );
        // Same device, same X25519 key: only the X-Wing key is new.
        assert_eq!(keys.device, back.device_id());
        assert_eq!(keys.sealing_key, back.sealing_public());
        let again = old
            .export(b"pw", KdfParams::INSECURE_FOR_TESTS, &mut test_rng(6))
            .unwrap();
        assert_eq!(again.v, 2);
        let restored = DeviceIdentity::import(&again, b"pw").unwrap();
        assert_eq!(restored.public_keys(), keys);
        assert_eq!(
            DeviceIdentity::from_secrets(&old.to_secret_bytes())
                .unwrap()
                .public_keys(),
            keys
        );
        assert!(DeviceIdentity::from_secrets(&[0; 70]).is_err());
    }

    #[test]
    fn a_missing_or_swapped_x_wing_signature_is_refused() {
        let id = DeviceIdentity::generate(&mut test_rng(1));
        let other = DeviceIdentity::generate(&mut test_rng(2));
        let mut no_sig = id.public_keys();
        no_sig.pq_sig = None;
        assert!(no_sig.verify().is_err());
        let mut swapped = id.public_keys();
        swapped.pq_key = other.public_keys().pq_key;
        assert!(swapped.verify().is_err());
    }

    #[test]
    fn debug_never_prints_secrets() {
        let id = DeviceIdentity::from_secret_bytes(&[0xAB; 32], &[0xCD; 32], Some(&[0xEF; 32]));
        let text = format!("{id:?}");
        assert!(!text.contains("171") && !text.to_lowercase().contains("abab"));
        assert!(text.contains("device"));
    }

    #[test]
    fn safety_number_is_symmetric_and_changes_with_keys() {
        let a = DeviceIdentity::generate(&mut test_rng(5)).device_id();
        let b = DeviceIdentity::generate(&mut test_rng(6)).device_id();
        let c = DeviceIdentity::generate(&mut test_rng(7)).device_id();
        let (ua, ub) = (UserId([1; 16]), UserId([2; 16]));
        let ab = safety_number((&ua, &a), (&ub, &b));
        assert_eq!(ab, safety_number((&ub, &b), (&ua, &a)));
        assert_eq!(ab.replace(' ', "").len(), 60);
        assert!(ab.replace(' ', "").chars().all(|c| c.is_ascii_digit()));
        assert_ne!(ab, safety_number((&ua, &a), (&ub, &c)));
    }
}

#[cfg(test)]
mod identity_fingerprint_tests {
    use super::*;
    use crate::device_list::UserIdentity;
    use crate::test_rng;

    #[test]
    fn identity_fingerprints_differ_from_device_fingerprints_and_by_key() {
        let user = UserId([3; 16]);
        let id = UserIdentity::generate(&mut test_rng(9)).public();
        let other = UserIdentity::generate(&mut test_rng(10)).public();
        let v1 = identity_fingerprint_digits(&user, &id);
        assert_eq!(v1.len(), 30);
        // Same 32 bytes read as a device key give another number: the version is hashed in.
        assert_ne!(v1, fingerprint_digits(&user, &DeviceId(id.0)));
        assert_ne!(v1, identity_fingerprint_digits(&user, &other));
        let n = safety_number_from_halves(&v1, &identity_fingerprint_digits(&user, &other));
        assert_eq!(n.len(), 60 + 11);
    }
}
