//! Sender Keys (as in Signal and WhatsApp groups): each member, in each epoch, has a random chain
//! key that it seals to every other member. Per message:
//!
//! ```text
//! message_key  = HMAC-SHA256(chain_key, 0x01)
//! chain_key'   = HMAC-SHA256(chain_key, 0x02)
//! key || nonce = HKDF-SHA256(ikm = message_key, salt = none, info = "confide/v1/message-keys", L = 44)
//! ```
//!
//! Used keys are deleted; keys of skipped iterations are kept (at most [`MAX_SKIPPED_KEYS`]) so
//! that out-of-order messages still open; a jump of more than [`MAX_FORWARD_JUMP`] iterations is
//! refused; a repeated iteration is refused as a replay.

use std::collections::BTreeMap;
use std::fmt;
use zeroize::Zeroizing;

use crate::primitives::{self, AEAD_KEY_LEN, AEAD_NONCE_LEN};

/// HKDF `info` for per-message AEAD keys.
pub const LABEL_MESSAGE_KEYS: &str = "confide/v1/message-keys";
/// How many skipped message keys one receiving chain keeps; the oldest are dropped first.
pub const MAX_SKIPPED_KEYS: usize = 2000;
/// How far ahead of the expected iteration a message may be.
pub const MAX_FORWARD_JUMP: u32 = 2000;
/// Length of the serialized sender-key distribution: iteration (4, BE) || chain key (32).
pub const DISTRIBUTION_LEN: usize = 36;

/// Why a sender-key operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SenderKeyError {
    /// The iteration was already used (or its key already deleted): a replay or duplicate.
    #[error("message iteration {0} was already received or has expired (replay?)")]
    Replay(u32),
    /// The iteration is too far ahead of the chain.
    #[error("message iteration {got} is more than {MAX_FORWARD_JUMP} ahead of {expected}")]
    TooFarAhead {
        /// The next iteration the chain expected.
        expected: u32,
        /// The iteration received.
        got: u32,
    },
    /// The sending chain has used every iteration; a new epoch is needed.
    #[error("sender chain exhausted")]
    Exhausted,
    /// A serialized distribution or chain has the wrong length or layout.
    #[error("malformed sender-key data")]
    Malformed,
}

/// The per-message AEAD key and nonce. Zeroized on drop.
pub struct MessageKey {
    /// ChaCha20-Poly1305 key.
    pub key: Zeroizing<[u8; AEAD_KEY_LEN]>,
    /// ChaCha20-Poly1305 nonce.
    pub nonce: [u8; AEAD_NONCE_LEN],
}

impl fmt::Debug for MessageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MessageKey(..)")
    }
}

impl MessageKey {
    /// Derives the AEAD key and nonce from a message key (the HKDF step above).
    fn from_message_key(mk: &[u8; 32]) -> MessageKey {
        let okm = primitives::hkdf_sha256::<44>(mk, LABEL_MESSAGE_KEYS.as_bytes());
        let mut key = Zeroizing::new([0u8; AEAD_KEY_LEN]);
        key.copy_from_slice(&okm[..32]);
        let mut nonce = [0u8; AEAD_NONCE_LEN];
        nonce.copy_from_slice(&okm[32..44]);
        MessageKey { key, nonce }
    }
}

/// One ratchet step: `(message_key, next_chain_key)`.
fn step(chain_key: &[u8; 32]) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
    (
        Zeroizing::new(primitives::hmac_sha256(chain_key, &[&[0x01]])),
        Zeroizing::new(primitives::hmac_sha256(chain_key, &[&[0x02]])),
    )
}

/// A sender's own chain for one (group, epoch).
pub struct SenderChain {
    chain_key: Zeroizing<[u8; 32]>,
    iteration: u32,
}

impl fmt::Debug for SenderChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SenderChain")
            .field("iteration", &self.iteration)
            .finish_non_exhaustive()
    }
}

impl SenderChain {
    /// A fresh chain from the caller's randomness, starting at iteration 0.
    pub fn generate(rng: &mut impl rand_core::CryptoRng) -> Self {
        let mut chain_key = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(chain_key.as_mut());
        SenderChain {
            chain_key,
            iteration: 0,
        }
    }

    /// The next iteration this chain will use.
    pub fn iteration(&self) -> u32 {
        self.iteration
    }

    /// The distribution to seal to each member: `iteration (4, BE) || chain_key (32)`. It lets the
    /// receiver read messages from the current iteration on, never earlier ones.
    pub fn distribution(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(DISTRIBUTION_LEN));
        out.extend_from_slice(&self.iteration.to_be_bytes());
        out.extend_from_slice(self.chain_key.as_ref());
        out
    }

    /// Returns the key for the next message and its iteration, and ratchets forward, deleting the
    /// old chain key.
    pub fn next_message_key(&mut self) -> Result<(u32, MessageKey), SenderKeyError> {
        if self.iteration == u32::MAX {
            return Err(SenderKeyError::Exhausted);
        }
        let (mk, next) = step(&self.chain_key);
        let iteration = self.iteration;
        self.chain_key = next;
        self.iteration += 1;
        Ok((iteration, MessageKey::from_message_key(&mk)))
    }

    /// Ratchets forward so that the next key used is `iteration`'s (no-op if already there or
    /// past it). A device that finds one of its own messages with an iteration its chain has
    /// not reached (restored from an old backup) moves past it, so no key is ever used twice.
    pub fn advance_to(&mut self, iteration: u32) {
        while self.iteration < iteration {
            let (_, next) = step(&self.chain_key);
            self.chain_key = next;
            self.iteration += 1;
        }
    }

    /// Serializes the chain for the (encrypted) local store: same layout as the distribution.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        self.distribution()
    }

    /// Restores a chain from [`Self::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SenderKeyError> {
        let (iteration, chain_key) = parse_distribution(bytes)?;
        Ok(SenderChain {
            chain_key,
            iteration,
        })
    }
}

fn parse_distribution(bytes: &[u8]) -> Result<(u32, Zeroizing<[u8; 32]>), SenderKeyError> {
    if bytes.len() != DISTRIBUTION_LEN {
        return Err(SenderKeyError::Malformed);
    }
    let mut it = [0u8; 4];
    it.copy_from_slice(&bytes[..4]);
    let mut chain_key = Zeroizing::new([0u8; 32]);
    chain_key.copy_from_slice(&bytes[4..]);
    Ok((u32::from_be_bytes(it), chain_key))
}

/// A receiver's copy of another member's chain for one (group, epoch).
pub struct ReceiverChain {
    chain_key: Zeroizing<[u8; 32]>,
    next_iteration: u32,
    /// Message keys of iterations skipped over, awaiting late messages.
    skipped: BTreeMap<u32, Zeroizing<[u8; 32]>>,
}

impl fmt::Debug for ReceiverChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReceiverChain")
            .field("next_iteration", &self.next_iteration)
            .field("skipped", &self.skipped.len())
            .finish_non_exhaustive()
    }
}

impl ReceiverChain {
    /// Starts a receiving chain from a sealed-and-opened distribution.
    pub fn from_distribution(bytes: &[u8]) -> Result<Self, SenderKeyError> {
        let (next_iteration, chain_key) = parse_distribution(bytes)?;
        Ok(ReceiverChain {
            chain_key,
            next_iteration,
            skipped: BTreeMap::new(),
        })
    }

    /// The next iteration expected in order.
    pub fn next_iteration(&self) -> u32 {
        self.next_iteration
    }

    /// Finds the key for `iteration` and runs `use_key` with it. Only if `use_key` succeeds is the
    /// chain advanced and the key deleted, so a forged or corrupt message never moves the chain
    /// or destroys the key a genuine message needs.
    pub fn with_message_key<T, E>(
        &mut self,
        iteration: u32,
        use_key: impl FnOnce(&MessageKey) -> Result<T, E>,
    ) -> Result<Result<T, E>, SenderKeyError> {
        if iteration < self.next_iteration {
            let Some(mk) = self.skipped.get(&iteration) else {
                return Err(SenderKeyError::Replay(iteration));
            };
            let result = use_key(&MessageKey::from_message_key(mk));
            if result.is_ok() {
                self.skipped.remove(&iteration);
            }
            return Ok(result);
        }
        let jump = iteration - self.next_iteration;
        if jump > MAX_FORWARD_JUMP {
            return Err(SenderKeyError::TooFarAhead {
                expected: self.next_iteration,
                got: iteration,
            });
        }
        // Walk forward on a copy, collecting the skipped message keys.
        let mut chain_key = Zeroizing::new(*self.chain_key);
        let mut newly_skipped = Vec::with_capacity(jump as usize);
        for i in self.next_iteration..iteration {
            let (mk, next) = step(&chain_key);
            newly_skipped.push((i, mk));
            chain_key = next;
        }
        let (mk, next) = step(&chain_key);
        let result = use_key(&MessageKey::from_message_key(&mk));
        if result.is_ok() {
            self.chain_key = next;
            self.next_iteration = iteration.saturating_add(1);
            self.skipped.extend(newly_skipped);
            while self.skipped.len() > MAX_SKIPPED_KEYS {
                self.skipped.pop_first();
            }
        }
        Ok(result)
    }

    /// Serializes for the (encrypted) local store:
    /// `next_iteration (4) || chain_key (32) || count (4) || (iteration (4) || key (32))*`.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(40 + 36 * self.skipped.len()));
        out.extend_from_slice(&self.next_iteration.to_be_bytes());
        out.extend_from_slice(self.chain_key.as_ref());
        out.extend_from_slice(&(self.skipped.len() as u32).to_be_bytes());
        for (i, k) in &self.skipped {
            out.extend_from_slice(&i.to_be_bytes());
            out.extend_from_slice(k.as_ref());
        }
        out
    }

    /// Restores from [`Self::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SenderKeyError> {
        if bytes.len() < 40 {
            return Err(SenderKeyError::Malformed);
        }
        let (next_iteration, chain_key) = parse_distribution(&bytes[..36])?;
        let mut count = [0u8; 4];
        count.copy_from_slice(&bytes[36..40]);
        let count = u32::from_be_bytes(count) as usize;
        let rest = &bytes[40..];
        if count > MAX_SKIPPED_KEYS || rest.len() != count * 36 {
            return Err(SenderKeyError::Malformed);
        }
        let mut skipped = BTreeMap::new();
        for entry in rest.chunks_exact(36) {
            let (i, k) = parse_distribution(entry)?;
            skipped.insert(i, k);
        }
        Ok(ReceiverChain {
            chain_key,
            next_iteration,
            skipped,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng;

    fn keys_equal(a: &MessageKey, b: &MessageKey) -> bool {
        *a.key == *b.key && a.nonce == b.nonce
    }

    #[test]
    fn receiver_derives_the_senders_keys_in_and_out_of_order() {
        let mut sender = SenderChain::generate(&mut test_rng(1));
        let mut receiver = ReceiverChain::from_distribution(&sender.distribution()).unwrap();
        let sent: Vec<_> = (0..5).map(|_| sender.next_message_key().unwrap()).collect();
        for idx in [0usize, 3, 1, 4, 2] {
            let (i, k) = &sent[idx];
            let ok = receiver
                .with_message_key(*i, |mk| Ok::<_, ()>(keys_equal(mk, k)))
                .unwrap();
            assert_eq!(ok, Ok(true));
        }
    }

    #[test]
    fn replayed_iteration_is_rejected() {
        let mut sender = SenderChain::generate(&mut test_rng(1));
        let mut receiver = ReceiverChain::from_distribution(&sender.distribution()).unwrap();
        let (i, _) = sender.next_message_key().unwrap();
        receiver
            .with_message_key(i, |_| Ok::<_, ()>(()))
            .unwrap()
            .unwrap();
        assert_eq!(
            receiver.with_message_key(i, |_| Ok::<_, ()>(())),
            Err(SenderKeyError::Replay(0))
        );
    }

    #[test]
    fn failed_use_does_not_advance_or_delete() {
        let mut sender = SenderChain::generate(&mut test_rng(1));
        let mut receiver = ReceiverChain::from_distribution(&sender.distribution()).unwrap();
        let (i0, _) = sender.next_message_key().unwrap();
        let (i1, _) = sender.next_message_key().unwrap();
        assert_eq!(
            receiver
                .with_message_key(i1, |_| Err::<(), _>("forged"))
                .unwrap(),
            Err("forged")
        );
        assert_eq!(receiver.next_iteration(), 0);
        receiver
            .with_message_key(i1, |_| Ok::<_, ()>(()))
            .unwrap()
            .unwrap();
        assert_eq!(
            receiver
                .with_message_key(i0, |_| Err::<(), _>("bad"))
                .unwrap(),
            Err("bad")
        );
        receiver
            .with_message_key(i0, |_| Ok::<_, ()>(()))
            .unwrap()
            .unwrap();
    }

    #[test]
    fn forward_jump_is_capped_and_skipped_keys_bounded() {
        let sender = SenderChain::generate(&mut test_rng(1));
        let mut receiver = ReceiverChain::from_distribution(&sender.distribution()).unwrap();
        assert!(matches!(
            receiver.with_message_key(MAX_FORWARD_JUMP + 1, |_| Ok::<_, ()>(())),
            Err(SenderKeyError::TooFarAhead { .. })
        ));
        receiver
            .with_message_key(MAX_FORWARD_JUMP, |_| Ok::<_, ()>(()))
            .unwrap()
            .unwrap();
        receiver
            .with_message_key(2 * MAX_FORWARD_JUMP, |_| Ok::<_, ()>(()))
            .unwrap()
            .unwrap();
        assert!(receiver.skipped.len() <= MAX_SKIPPED_KEYS);
        // The oldest skipped keys were dropped: a very late message is refused.
        assert_eq!(
            receiver.with_message_key(0, |_| Ok::<_, ()>(())),
            Err(SenderKeyError::Replay(0))
        );
    }

    #[test]
    fn late_joiner_cannot_derive_earlier_keys() {
        let mut sender = SenderChain::generate(&mut test_rng(1));
        let (i0, _) = sender.next_message_key().unwrap();
        let mut late = ReceiverChain::from_distribution(&sender.distribution()).unwrap();
        assert_eq!(
            late.with_message_key(i0, |_| Ok::<_, ()>(())),
            Err(SenderKeyError::Replay(0))
        );
    }

    #[test]
    fn advancing_skips_used_keys() {
        let mut a = SenderChain::generate(&mut test_rng(1));
        let mut b = SenderChain::from_bytes(&a.to_bytes()).unwrap();
        let _ = a.next_message_key().unwrap();
        let (i, k) = a.next_message_key().unwrap();
        b.advance_to(i);
        let (j, k2) = b.next_message_key().unwrap();
        assert_eq!((i, *k.key), (j, *k2.key));
        b.advance_to(0);
        assert_eq!(b.iteration(), i + 1);
    }

    #[test]
    fn store_round_trip() {
        let mut sender = SenderChain::generate(&mut test_rng(1));
        let mut receiver = ReceiverChain::from_distribution(&sender.distribution()).unwrap();
        let keys: Vec<_> = (0..3).map(|_| sender.next_message_key().unwrap()).collect();
        receiver
            .with_message_key(2, |_| Ok::<_, ()>(()))
            .unwrap()
            .unwrap();
        let mut restored = ReceiverChain::from_bytes(&receiver.to_bytes()).unwrap();
        let ok = restored.with_message_key(0, |mk| Ok::<_, ()>(keys_equal(mk, &keys[0].1)));
        assert_eq!(ok.unwrap(), Ok(true));
        let s2 = SenderChain::from_bytes(&sender.to_bytes()).unwrap();
        assert_eq!(s2.iteration(), 3);
        assert!(ReceiverChain::from_bytes(&[0u8; 39]).is_err());
    }
}
