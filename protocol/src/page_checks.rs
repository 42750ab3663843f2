//! A sync page's signature checks, shared between the thread that handles the page and any
//! threads its platform lends.
//!
//! A receiver checks every envelope strictly before it touches any state for it
//! ([`Envelope::verified`]). Checking a whole page first and handling it after leaves the
//! other cores idle while the page is handled and stored. Here the checks are claimed one at
//! a time, in page order, by whoever asks first: helper threads check ahead
//! ([`PageChecks::help`]), while the handling thread asks for each envelope's result as it
//! reaches it ([`PageChecks::check`]): if it is not there yet, the handling thread checks
//! unclaimed envelopes itself, and one a helper is still checking it checks again rather than
//! wait (it never blocks, and the protocol crate has no clock). With no helper (a browser) the
//! handling thread checks each envelope just before it handles it.
//!
//! Each result is the one [`verify_each`](crate::envelope::verify_each) gives for that
//! envelope: the same function runs, once per envelope, whichever thread runs it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::envelope::{Envelope, EnvelopeError, Verified};
use crate::error::CryptoError;
use crate::frames::StoredMessage;
use crate::identity::PublicKey;
use crate::ids::DeviceId;

mod sealed {
    /// Only this crate's item types: their envelope is a field, the same one every time it is
    /// asked for, so the envelope checked is the envelope a [`super::Verified`] names.
    pub trait Sealed {}
    impl Sealed for crate::envelope::Envelope {}
    impl Sealed for crate::frames::StoredMessage {}
}

/// An item of a page of checks: an envelope, or a stored message by its envelope. Sealed: an
/// item whose envelope could change between the check and the proof must not be one.
pub trait PageItem: sealed::Sealed {
    /// The envelope to check.
    fn envelope(&self) -> &Envelope;
}

impl PageItem for Envelope {
    fn envelope(&self) -> &Envelope {
        self
    }
}

impl PageItem for StoredMessage {
    fn envelope(&self) -> &Envelope {
        &self.envelope
    }
}

/// A page of items (each holding an envelope) and the result of checking each one's
/// envelope, filled in by whichever thread checked it.
pub struct PageChecks<T> {
    items: Vec<T>,
    /// The first index nobody has claimed yet (may run past the end).
    next: AtomicUsize,
    /// Per item, its envelope's result once checked.
    results: Vec<OnceLock<Result<(), EnvelopeError>>>,
    /// Senders' keys decoded so far, shared: a page mostly comes from a few devices, and
    /// decoding a key costs about a sixth of checking a signature.
    keys: Mutex<BTreeMap<DeviceId, Result<PublicKey, CryptoError>>>,
    /// Set once the page is done with ([`PageChecks::stop`]): helpers claim nothing more.
    stopped: AtomicBool,
}

impl<T> std::fmt::Debug for PageChecks<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageChecks")
            .field("items", &self.items.len())
            .field("next", &self.next.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<T: PageItem> PageChecks<T> {
    /// A page whose envelopes nobody has checked yet.
    pub fn new(items: Vec<T>) -> PageChecks<T> {
        let results = items.iter().map(|_| OnceLock::new()).collect();
        PageChecks {
            items,
            next: AtomicUsize::new(0),
            results,
            keys: Mutex::new(BTreeMap::new()),
            stopped: AtomicBool::new(false),
        }
    }

    /// The page's items, in order.
    pub fn items(&self) -> &[T] {
        &self.items
    }

    /// For a helper thread: checks the first envelope nobody has claimed. `false` once every
    /// one is claimed, or the page was stopped; the helper then ends.
    pub fn help(&self) -> bool {
        if self.stopped.load(Ordering::Relaxed) {
            return false;
        }
        match self.claim() {
            Some(index) => {
                self.run(index);
                true
            }
            None => false,
        }
    }

    /// The result of checking item `index`'s envelope: [`Envelope::verified`]'s, for that very
    /// envelope. Until it is there, this thread checks the envelopes nobody has claimed (in
    /// page order: `index` itself, or ones after it that it will need next), and once every
    /// one is claimed, checks `index` itself even if a helper is still on it: it never waits
    /// for a helper, which may be stalled. `None` past the end.
    pub fn check(&self, index: usize) -> Option<Result<Verified<'_>, EnvelopeError>> {
        let item = self.items.get(index)?;
        let slot = self.results.get(index)?;
        loop {
            if let Some(result) = slot.get() {
                return Some(
                    result
                        .clone()
                        .map(|()| Verified::of_checked(item.envelope())),
                );
            }
            match self.claim() {
                Some(claimed) => self.run(claimed),
                // Every envelope is claimed and `index`'s helper has not finished: checked
                // here too (the same check of the same envelope gives the same result).
                None => self.run(index),
            }
        }
    }

    /// Helpers claim nothing more: the page is done with (handled, or given up).
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    /// The first unclaimed index, now claimed by the caller; `None` when all are.
    fn claim(&self) -> Option<usize> {
        let index = self.next.fetch_add(1, Ordering::Relaxed);
        (index < self.items.len()).then_some(index)
    }

    /// Checks item `index`'s envelope and records the result.
    fn run(&self, index: usize) {
        let (Some(item), Some(slot)) = (self.items.get(index), self.results.get(index)) else {
            return;
        };
        let result = item.envelope().verify_with(|sender| self.key(sender));
        // A second check of the same envelope (see `check`) gives the same result.
        let _ = slot.set(result);
    }

    /// `sender`'s key, decoded once per page.
    fn key(&self, sender: &DeviceId) -> Result<PublicKey, CryptoError> {
        if let Some(known) = self
            .keys
            .lock()
            .ok()
            .and_then(|keys| keys.get(sender).cloned())
        {
            return known;
        }
        // Decoded without the lock held; two threads may both decode a new sender's key once.
        let decoded = PublicKey::decode(sender);
        if let Ok(mut keys) = self.keys.lock() {
            keys.insert(*sender, decoded.clone());
        }
        decoded
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::verify_each;
    use crate::identity::DeviceIdentity;
    use crate::ids::{Epoch, EpochRef, GroupId, OpHash};
    use crate::sender_key::SenderChain;
    use crate::test_rng;
    use std::sync::Arc;

    /// `n` envelopes from two senders, some forged (a flipped signature bit, a cut
    /// ciphertext); and which are genuine.
    fn page(n: usize) -> (Vec<Envelope>, Vec<bool>) {
        let mut rng = test_rng(9);
        let senders = [
            DeviceIdentity::generate(&mut rng),
            DeviceIdentity::generate(&mut rng),
        ];
        let mut chains = [
            SenderChain::generate(&mut rng),
            SenderChain::generate(&mut rng),
        ];
        let epoch = EpochRef {
            epoch: Epoch(1),
            hash: OpHash([7; 32]),
        };
        let mut envelopes = Vec::new();
        let mut genuine = Vec::new();
        for i in 0..n {
            let s = i % 2;
            let mut envelope = Envelope::seal(
                &senders[s],
                GroupId([3; 16]),
                epoch,
                &mut chains[s],
                b"hi",
                &mut rng,
            )
            .unwrap();
            if i % 7 == 3 {
                envelope.signature.0[10] ^= 1;
            } else if i % 11 == 5 {
                envelope.ciphertext.pop();
            }
            genuine.push(i % 7 != 3 && i % 11 != 5);
            envelopes.push(envelope);
        }
        (envelopes, genuine)
    }

    /// Every result is `verify_each`'s for that envelope, and a `Verified` names that very
    /// envelope.
    fn assert_same_as_one_by_one(checks: &PageChecks<Envelope>, genuine: &[bool]) {
        let refs: Vec<&Envelope> = checks.items().iter().collect();
        let one_by_one = verify_each(&refs);
        for (i, expected) in one_by_one.iter().enumerate() {
            let got = checks.check(i).unwrap();
            assert_eq!(got.is_ok(), genuine[i], "envelope {i}");
            match (got, expected) {
                (Ok(got), Ok(_)) => assert!(std::ptr::eq(got.envelope(), &checks.items()[i])),
                (Err(got), Err(expected)) => assert_eq!(&got, expected),
                (got, expected) => panic!("envelope {i}: {got:?} shared, {expected:?} alone"),
            }
        }
        assert!(checks.check(refs.len()).is_none());
    }

    #[test]
    fn a_page_checked_by_its_own_thread_alone_gets_each_envelope_its_own_verdict() {
        for n in [0, 1, 12, 40] {
            let (envelopes, genuine) = page(n);
            assert_same_as_one_by_one(&PageChecks::new(envelopes), &genuine);
        }
    }

    #[test]
    fn helpers_checking_ahead_leave_each_envelope_its_own_verdict_in_page_order() {
        for helpers in [1, 3] {
            let (envelopes, genuine) = page(60);
            let checks = Arc::new(PageChecks::new(envelopes));
            let threads: Vec<_> = (0..helpers)
                .map(|_| {
                    let checks = Arc::clone(&checks);
                    std::thread::spawn(move || {
                        let mut done = 0;
                        while checks.help() {
                            done += 1;
                        }
                        done
                    })
                })
                .collect();
            assert_same_as_one_by_one(&checks, &genuine);
            let by_helpers: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
            // Each envelope was claimed once, by a helper or by the handling thread.
            assert!(by_helpers <= 60);
            assert!(!checks.help(), "nothing is left to claim");
        }
    }

    #[test]
    fn a_helper_that_claims_a_check_and_stalls_does_not_hold_the_page_up() {
        let (envelopes, genuine) = page(5);
        let checks = PageChecks::new(envelopes);
        // A helper claims the first two checks and never runs them: the handling thread does
        // not wait for it (this test would hang if it did).
        assert_eq!(checks.claim(), Some(0));
        assert_eq!(checks.claim(), Some(1));
        assert_same_as_one_by_one(&checks, &genuine);
    }

    #[test]
    fn a_stopped_page_gives_helpers_nothing_more_and_still_answers_its_own_thread() {
        let (envelopes, genuine) = page(8);
        let checks = PageChecks::new(envelopes);
        assert!(checks.help());
        checks.stop();
        assert!(!checks.help());
        assert_same_as_one_by_one(&checks, &genuine);
    }
}
