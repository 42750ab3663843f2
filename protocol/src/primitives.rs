//! Thin, typed wrappers over the primitives every construction uses, so that each construction
//! names its domain-separation label once and cannot mix up argument order.
//!
//! All labels are ASCII strings without NUL; a signed or MACed message is always
//! `label || 0x00 || data`, which keeps messages of different purposes apart (PROTOCOL.md §2).

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::CryptoError;

/// Length of a ChaCha20-Poly1305 key.
pub const AEAD_KEY_LEN: usize = 32;
/// Length of a ChaCha20-Poly1305 nonce.
pub const AEAD_NONCE_LEN: usize = 12;
/// Length of a ChaCha20-Poly1305 tag.
pub const AEAD_TAG_LEN: usize = 16;

/// `label || 0x00 || part_1 || … || part_n`, the byte string every signature, MAC and hash in
/// the protocol is computed over.
pub fn labelled(label: &str, parts: &[&[u8]]) -> Vec<u8> {
    let len = label.len() + 1 + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(label.as_bytes());
    out.push(0);
    for part in parts {
        out.extend_from_slice(part);
    }
    out
}

/// SHA-256 over [`labelled`] input.
pub fn hash(label: &str, parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(label.as_bytes());
    hasher.update([0u8]);
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// HMAC-SHA256(key, data).
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail; the fallback keeps this
    // function total without an `expect`.
    let Ok(mut mac) = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(key) else {
        return [0u8; 32];
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Constant-time check of an HMAC-SHA256 tag.
pub fn hmac_sha256_verify(key: &[u8], parts: &[&[u8]], tag: &[u8; 32]) -> bool {
    use subtle::ConstantTimeEq;
    let expected = hmac_sha256(key, parts);
    expected.ct_eq(tag).into()
}

/// HKDF-SHA256 with an empty salt, expanding `ikm` under `info` into `N` bytes.
pub fn hkdf_sha256<const N: usize>(ikm: &[u8], info: &[u8]) -> Zeroizing<[u8; N]> {
    let hk = Hkdf::<Sha256>::new(None, ikm);
    let mut okm = Zeroizing::new([0u8; N]);
    // Every N used in this crate is at most 64 bytes, far below HKDF-SHA256's 255 * 32 limit,
    // so `expand` cannot fail.
    if hk.expand(info, okm.as_mut()).is_err() {
        okm.as_mut().fill(0);
    }
    okm
}

/// ChaCha20-Poly1305 encryption.
pub fn aead_seal(
    key: &[u8; AEAD_KEY_LEN],
    nonce: &[u8; AEAD_NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let cipher = ChaCha20Poly1305::new(&Key::from(*key));
    cipher
        .encrypt(
            &Nonce::from(*nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| CryptoError::Encrypt)
}

/// ChaCha20-Poly1305 decryption; fails if the ciphertext, nonce or associated data were altered.
pub fn aead_open(
    key: &[u8; AEAD_KEY_LEN],
    nonce: &[u8; AEAD_NONCE_LEN],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let cipher = ChaCha20Poly1305::new(&Key::from(*key));
    cipher
        .decrypt(
            &Nonce::from(*nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::Decrypt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_separate_domains() {
        assert_ne!(hash("a", &[b"bc"]), hash("ab", &[b"c"]));
        assert_eq!(labelled("x", &[b"y", b"z"]), b"x\0yz".to_vec());
    }

    #[test]
    fn aead_rejects_altered_inputs() {
        let key = [7u8; 32];
        let nonce = [1u8; 12];
        let ct = aead_seal(&key, &nonce, b"ad", b"hello").unwrap();
        assert_eq!(&*aead_open(&key, &nonce, b"ad", &ct).unwrap(), b"hello");
        assert!(aead_open(&key, &nonce, b"AD", &ct).is_err());
        let mut bad = ct.clone();
        bad[0] ^= 1;
        assert!(aead_open(&key, &nonce, b"ad", &bad).is_err());
        assert!(aead_open(&[8u8; 32], &nonce, b"ad", &ct).is_err());
    }

    #[test]
    fn hmac_verify_is_exact() {
        let tag = hmac_sha256(b"k", &[b"m"]);
        assert!(hmac_sha256_verify(b"k", &[b"m"], &tag));
        assert!(!hmac_sha256_verify(b"k", &[b"n"], &tag));
    }
}
