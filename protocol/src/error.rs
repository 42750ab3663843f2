//! Errors of the low-level cryptographic building blocks. Each construction module has its own
//! error enum on top of this one.

/// A cryptographic check or operation failed. Deliberately coarse: which byte was wrong is not
/// something to tell an attacker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// An Ed25519 signature did not verify against the claimed key.
    #[error("signature does not verify")]
    BadSignature,
    /// A public key is not a valid curve point (or is a weak key).
    #[error("invalid public key")]
    BadPublicKey,
    /// Authenticated decryption failed: wrong key, or the ciphertext or its context was altered.
    #[error("decryption failed: wrong key or altered ciphertext")]
    Decrypt,
    /// Encryption failed (only on absurd input sizes).
    #[error("encryption failed")]
    Encrypt,
    /// A passphrase-derived key could not be computed (invalid KDF parameters).
    #[error("invalid key-derivation parameters: {0}")]
    Kdf(String),
}
