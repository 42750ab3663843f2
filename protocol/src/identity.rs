//! Device identities: an Ed25519 signing key (the device's identity) and an X25519 sealing key
//! signed by it; safety numbers; the passphrase-encrypted export used to persist an identity.

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::fmt;
use x25519_dalek::{PublicKey as X25519Public, StaticSecret};
use zeroize::{Zeroize, Zeroizing};

use crate::encoding::b64_array;
use crate::error::CryptoError;
use crate::ids::{DeviceId, UserId};
use crate::primitives::{self, labelled};

/// Label of the identity key's signature over the sealing key.
pub const LABEL_SEALING_KEY: &str = "confide/v1/sealing-key";
/// Label (associated data) of an exported identity.
pub const LABEL_IDENTITY_EXPORT: &str = "confide/v1/identity-export";

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
    let key = decode_public_key(device.as_bytes())?;
    let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
    key.verify_strict(&labelled(label, parts), &sig)
        .map_err(|_| CryptoError::BadSignature)
}

/// The public half of a device: what other members need to verify its signatures and seal
/// payloads to it. The sealing key is signed by the identity key, so a server that swaps it is
/// detected.
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
}

impl DeviceKeys {
    /// Checks that the sealing key was signed by the device's identity key.
    pub fn verify(&self) -> Result<(), CryptoError> {
        verify(
            &self.device,
            LABEL_SEALING_KEY,
            &[&self.sealing_key],
            &self.sealing_sig,
        )
    }
}

/// A device's secret keys. Zeroized on drop (both inner key types zeroize themselves); never
/// `Debug`-printed beyond its public id, never serialized except through [`Self::export`].
pub struct DeviceIdentity {
    signing: SigningKey,
    sealing: StaticSecret,
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
        rng.fill_bytes(signing.as_mut());
        rng.fill_bytes(sealing.as_mut());
        Self::from_secret_bytes(&signing, &sealing)
    }

    /// Rebuilds an identity from its two 32-byte secrets.
    pub fn from_secret_bytes(signing: &[u8; 32], sealing: &[u8; 32]) -> Self {
        DeviceIdentity {
            signing: SigningKey::from_bytes(signing),
            sealing: StaticSecret::from(*sealing),
        }
    }

    /// This device's id (its Ed25519 public key).
    pub fn device_id(&self) -> DeviceId {
        DeviceId(self.signing.verifying_key().to_bytes())
    }

    /// The X25519 public sealing key.
    pub fn sealing_public(&self) -> [u8; 32] {
        X25519Public::from(&self.sealing).to_bytes()
    }

    /// The public keys to publish, with the sealing key signed by the identity key.
    pub fn public_keys(&self) -> DeviceKeys {
        let sealing_key = self.sealing_public();
        DeviceKeys {
            device: self.device_id(),
            sealing_key,
            sealing_sig: self.sign(LABEL_SEALING_KEY, &[&sealing_key]),
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

    /// Both secrets, `signing (32) || sealing (32)`, for a store that encrypts them itself (the
    /// client's encrypted local store). Zeroized on drop; never log or send these bytes.
    pub fn to_secret_bytes(&self) -> Zeroizing<[u8; 64]> {
        let mut out = Zeroizing::new([0u8; 64]);
        out[..32].copy_from_slice(self.signing.as_bytes());
        out[32..].copy_from_slice(self.sealing.as_bytes());
        out
    }

    /// Rebuilds an identity from [`Self::to_secret_bytes`].
    pub fn from_secret_pair(bytes: &[u8; 64]) -> Self {
        let mut signing = Zeroizing::new([0u8; 32]);
        let mut sealing = Zeroizing::new([0u8; 32]);
        signing.copy_from_slice(&bytes[..32]);
        sealing.copy_from_slice(&bytes[32..]);
        Self::from_secret_bytes(&signing, &sealing)
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
        let mut plaintext = Zeroizing::new([0u8; 64]);
        plaintext[..32].copy_from_slice(self.signing.as_bytes());
        plaintext[32..].copy_from_slice(self.sealing.as_bytes());
        let device = self.device_id();
        let aad = labelled(LABEL_IDENTITY_EXPORT, &[device.as_bytes()]);
        let ciphertext = primitives::aead_seal(&key, &nonce, &aad, plaintext.as_ref())?;
        Ok(ExportedIdentity {
            v: 1,
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
        let plaintext = primitives::aead_open(&key, &exported.nonce, &aad, &exported.ciphertext)?;
        let (Ok(signing), Ok(sealing)) = (
            <[u8; 32]>::try_from(&plaintext[..32.min(plaintext.len())]),
            <[u8; 32]>::try_from(&plaintext[32.min(plaintext.len())..]),
        ) else {
            return Err(CryptoError::Decrypt);
        };
        let mut signing = Zeroizing::new(signing);
        let mut sealing = Zeroizing::new(sealing);
        let identity = Self::from_secret_bytes(&signing, &sealing);
        signing.zeroize();
        sealing.zeroize();
        if identity.device_id() != exported.device {
            return Err(CryptoError::Decrypt);
        }
        Ok(identity)
    }
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
    /// Format version, 1.
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
    /// `signing secret (32) || sealing secret (32)`, encrypted.
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
    fn debug_never_prints_secrets() {
        let id = DeviceIdentity::from_secret_bytes(&[0xAB; 32], &[0xCD; 32]);
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
