//! The value cipher every encrypted store backend shares (the native sled store and the
//! browser's IndexedDB store), so that both seal values the same way and a rule about it is
//! written once. No I/O: the backend reads and writes the records, this module only computes.
//!
//! - The key is derived from the passphrase with Argon2id ([`KdfParams`]) and a random salt of
//!   [`SALT_LEN`] bytes, both kept in the clear in the store's [`META_TREE`] records.
//! - A value is sealed as `nonce (12 bytes) ‖ ChaCha20-Poly1305 ciphertext`, with a fresh random
//!   nonce per write and associated data `labelled("confide/v1/store-value", tree ‖ 0 ‖ key)`:
//!   a value moved to another tree or key does not open there.
//! - A check value, [`CHECK_PLAINTEXT`] sealed under the key at `meta`/`check`, is written when
//!   the store is created; opening with a passphrase that does not open it is
//!   [`StoreError::WrongPassphrase`], never garbage.
//!
//! The format is the native store's on-disk format: changing anything here makes existing
//! stores unreadable (a test pins it byte for byte).

use confide_protocol::identity::KdfParams;
use confide_protocol::primitives::{AEAD_NONCE_LEN, aead_open, aead_seal, labelled};
use zeroize::Zeroizing;

use crate::StoreError;
use crate::store::corrupt;

/// The tree (sled) or object store (IndexedDB) holding the KDF parameters and salt, in the
/// clear, and the passphrase check value.
pub const META_TREE: &str = "meta";
/// The [`META_TREE`] record holding the [`KdfParams`] as JSON.
pub const META_KDF: &str = "kdf";
/// The [`META_TREE`] record holding the Argon2id salt.
pub const META_SALT: &str = "salt";
/// The [`META_TREE`] record holding the sealed check value.
pub const META_CHECK: &str = "check";
/// Bytes of Argon2id salt drawn for a new store.
pub const SALT_LEN: usize = 16;
/// Bytes of nonce in front of every sealed value.
pub const NONCE_LEN: usize = AEAD_NONCE_LEN;
/// Label of the associated data of every sealed value.
const LABEL_STORE_VALUE: &str = "confide/v1/store-value";
/// Plaintext of the passphrase check value.
pub const CHECK_PLAINTEXT: &[u8] = b"confide store v1";

/// The key that seals a store's values, derived from its passphrase. Zeroized when dropped;
/// its `Debug` shows nothing of it.
#[derive(Clone)]
pub struct StoreKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreKey(..)")
    }
}

impl StoreKey {
    /// Derives the key from `passphrase` and `salt` with Argon2id under `params`.
    ///
    /// # Errors
    ///
    /// [`StoreError::State`] if `params` are refused (above the accepted maximum, or invalid).
    pub fn derive(
        params: &KdfParams,
        passphrase: &[u8],
        salt: &[u8],
    ) -> Result<StoreKey, StoreError> {
        params
            .derive(passphrase, salt)
            .map(StoreKey)
            .map_err(|e| StoreError::State(e.to_string()))
    }

    /// A key from its raw bytes, for tests and test vectors that fix it.
    pub fn from_bytes(bytes: Zeroizing<[u8; 32]>) -> StoreKey {
        StoreKey(bytes)
    }

    /// Seals `plaintext` as the value of `tree`/`key`: a fresh nonce from `rng`, then the
    /// ciphertext.
    ///
    /// # Errors
    ///
    /// [`StoreError::Db`] if the cipher refuses (a plaintext beyond its size limit).
    pub fn seal(
        &self,
        tree: &str,
        key: &[u8],
        plaintext: &[u8],
        rng: &mut impl rand_core::CryptoRng,
    ) -> Result<Vec<u8>, StoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let ct = aead_seal(&self.0, &nonce, &aad(tree, key), plaintext)
            .map_err(|e| StoreError::Db(e.to_string()))?;
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Opens the value stored at `tree`/`key`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] naming `tree` and `key` if it does not open: damaged, altered,
    /// or moved there from another tree or key.
    pub fn open(
        &self,
        tree: &str,
        key: &[u8],
        stored: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        let Some((nonce, ct)) = stored.split_first_chunk::<NONCE_LEN>() else {
            return Err(corrupt(tree, key));
        };
        aead_open(&self.0, nonce, &aad(tree, key), ct).map_err(|_| corrupt(tree, key))
    }

    /// The check value to store at [`META_TREE`]/[`META_CHECK`] of a new store.
    ///
    /// # Errors
    ///
    /// Those of [`StoreKey::seal`].
    pub fn check_value(&self, rng: &mut impl rand_core::CryptoRng) -> Result<Vec<u8>, StoreError> {
        self.seal(META_TREE, META_CHECK.as_bytes(), CHECK_PLAINTEXT, rng)
    }

    /// Whether this key is the one the store's `check` value was sealed with.
    ///
    /// # Errors
    ///
    /// [`StoreError::WrongPassphrase`] if it is not (or the check value is damaged: the two
    /// cannot be told apart).
    pub fn verify_check(&self, check: &[u8]) -> Result<(), StoreError> {
        match self.open(META_TREE, META_CHECK.as_bytes(), check) {
            Ok(plain) if plain.as_slice() == CHECK_PLAINTEXT => Ok(()),
            _ => Err(StoreError::WrongPassphrase),
        }
    }
}

/// The associated data of the value at `tree`/`key`.
fn aad(tree: &str, key: &[u8]) -> Vec<u8> {
    labelled(LABEL_STORE_VALUE, &[tree.as_bytes(), &[0], key])
}

/// A new store's key and the [`META_TREE`] records its backend writes: [`META_KDF`],
/// [`META_SALT`] and [`META_CHECK`].
#[derive(Debug)]
pub struct NewStore {
    /// The key for every value of the store.
    pub key: StoreKey,
    /// The [`META_KDF`] record: the KDF parameters as JSON.
    pub kdf: Vec<u8>,
    /// The [`META_SALT`] record.
    pub salt: [u8; SALT_LEN],
    /// The [`META_CHECK`] record.
    pub check: Vec<u8>,
}

/// Draws a salt from `rng`, derives the key of a new store from `passphrase` under `params`,
/// and seals its check value.
///
/// # Errors
///
/// [`StoreError::State`] if `params` are refused; [`StoreError::Db`] if they do not serialize.
pub fn create(
    passphrase: &[u8],
    params: KdfParams,
    rng: &mut impl rand_core::CryptoRng,
) -> Result<NewStore, StoreError> {
    let mut salt = [0u8; SALT_LEN];
    rng.fill_bytes(&mut salt);
    let key = StoreKey::derive(&params, passphrase, &salt)?;
    let kdf = serde_json::to_vec(&params).map_err(|e| StoreError::Db(e.to_string()))?;
    let check = key.check_value(rng)?;
    Ok(NewStore {
        key,
        kdf,
        salt,
        check,
    })
}

/// The key of an existing store from its passphrase and its [`META_TREE`] records.
///
/// # Errors
///
/// [`StoreError::Corrupt`] if `kdf` is not KDF parameters, [`StoreError::State`] if they are
/// refused, [`StoreError::WrongPassphrase`] if `passphrase` is not the store's.
pub fn unlock(
    passphrase: &[u8],
    kdf: &[u8],
    salt: &[u8],
    check: &[u8],
) -> Result<StoreKey, StoreError> {
    let params: KdfParams =
        serde_json::from_slice(kdf).map_err(|_| corrupt(META_TREE, META_KDF.as_bytes()))?;
    let key = StoreKey::derive(&params, passphrase, salt)?;
    key.verify_check(check)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A generator whose output is `start, start + 1, …`: fixed nonces and salts.
    struct Counting(u8);

    impl rand_core::TryRng for Counting {
        type Error = std::convert::Infallible;
        fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
            let mut b = [0; 4];
            self.try_fill_bytes(&mut b)?;
            Ok(u32::from_le_bytes(b))
        }
        fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
            let mut b = [0; 8];
            self.try_fill_bytes(&mut b)?;
            Ok(u64::from_le_bytes(b))
        }
        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
            for byte in dst {
                *byte = self.0;
                self.0 = self.0.wrapping_add(1);
            }
            Ok(())
        }
    }
    impl rand_core::TryCryptoRng for Counting {}

    fn rng(start: u8) -> rand_core::UnwrapErr<Counting> {
        rand_core::UnwrapErr(Counting(start))
    }

    /// The passphrase and salt of the pinned vector, and its key.
    fn pinned_key() -> StoreKey {
        let salt: Vec<u8> = (0x10u8..0x20).collect();
        StoreKey::derive(
            &KdfParams::INSECURE_FOR_TESTS,
            b"correct horse battery staple",
            &salt,
        )
        .unwrap()
    }

    /// The format of every store on disk, byte for byte: these bytes were produced by the sled
    /// store's own sealing before it moved here. If this test fails, existing stores no longer
    /// open.
    #[test]
    fn the_sealed_format_is_pinned_byte_for_byte() {
        let key = pinned_key();
        assert_eq!(
            hex::encode(*key.0),
            "cd8195b0461613a4754a5c85a55b1d17053666725c75b7d18d24f23a55793d24"
        );
        let sealed = key
            .seal(
                "messages",
                b"\x01\x02group\xff",
                br#"{"text":"hello"}"#,
                &mut rng(0xa0),
            )
            .unwrap();
        assert_eq!(
            hex::encode(&sealed),
            "a0a1a2a3a4a5a6a7a8a9aaabb71e6964ff25cc794826c2f2058acb9a6bdac67267f7db45166afff75e201e54"
        );
        let check = key.check_value(&mut rng(0x50)).unwrap();
        assert_eq!(
            hex::encode(&check),
            "505152535455565758595a5b69b0bf5351e29ade1399da513e58ea7f209bc29d0675f9e302372d95c7a5be7b"
        );
        assert_eq!(
            key.open("messages", b"\x01\x02group\xff", &sealed)
                .unwrap()
                .as_slice(),
            br#"{"text":"hello"}"#
        );
    }

    #[test]
    fn a_value_opens_only_at_its_own_tree_and_key_and_unaltered() {
        let key = pinned_key();
        let sealed = key.seal("messages", b"k1", b"secret", &mut rng(1)).unwrap();
        assert_eq!(
            &key.open("messages", b"k1", &sealed).unwrap()[..],
            b"secret"
        );
        for (tree, k) in [
            ("messages", &b"k2"[..]),
            ("groups", b"k1"),
            ("messages", b""),
        ] {
            assert!(
                matches!(key.open(tree, k, &sealed), Err(StoreError::Corrupt { .. })),
                "opened at {tree}/{k:?}"
            );
        }
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(
            key.open("messages", b"k1", &flipped),
            Err(StoreError::Corrupt { .. })
        ));
        // Shorter than a nonce: corrupt, not a panic.
        assert!(matches!(
            key.open("messages", b"k1", &sealed[..5]),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn a_new_store_unlocks_with_its_passphrase_only() {
        let new = create(b"pass phrase", KdfParams::INSECURE_FOR_TESTS, &mut rng(7)).unwrap();
        let key = unlock(b"pass phrase", &new.kdf, &new.salt, &new.check).unwrap();
        let sealed = new.key.seal("t", b"k", b"v", &mut rng(9)).unwrap();
        assert_eq!(&key.open("t", b"k", &sealed).unwrap()[..], b"v");
        assert!(matches!(
            unlock(b"pass phrasf", &new.kdf, &new.salt, &new.check),
            Err(StoreError::WrongPassphrase)
        ));
        assert!(matches!(
            unlock(b"pass phrase", b"not json", &new.salt, &new.check),
            Err(StoreError::Corrupt { .. })
        ));
        assert_eq!(format!("{key:?}"), "StoreKey(..)");
    }
}
