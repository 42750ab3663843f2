//! The host seam: what the core takes from the platform it runs on besides the store and the
//! server. The wall clock, cryptographic randomness, and where events for the application go.
//! The core has no clock and no entropy of its own, so the same code runs natively, in a
//! browser, and in tests with a fixed clock and seeded randomness.

use std::convert::Infallible;
use std::sync::Arc;

use confide_protocol::Timestamp;
use confide_protocol::frames::StoredMessage;
use confide_protocol::page_checks::PageChecks;

use crate::events::Event;
use crate::{MaybeSend, MaybeSync};

/// The platform under the core: clock, randomness and the event sink.
pub trait Host: MaybeSend + MaybeSync {
    /// The wall clock, in milliseconds since the Unix epoch.
    fn now(&self) -> Timestamp;

    /// Fills `out` with bytes from a cryptographically secure generator. Keys, nonces, group
    /// ids and invite secrets come from here, so it must never repeat or be predictable
    /// outside tests.
    fn fill_random(&mut self, out: &mut [u8]);

    /// Hands one event to the application. Called only once the change it reports is
    /// committed to the store, and in order.
    fn event(&mut self, event: Event);

    /// Lends the platform's other cores to a sync page's signature checks, since strict
    /// signature checks are most of what catching up on a backlog costs: a platform with
    /// threads to spare starts helpers that call [`PageChecks::help`] until it returns
    /// `false` (natively), one without lends nothing (the default: the browser). The core
    /// handles the page meanwhile and checks, on its own thread, each envelope no helper has
    /// claimed when it gets there; lending changes only how soon the page is done.
    fn lend_cores(&self, checks: &Arc<PageChecks<StoredMessage>>) {
        let _ = checks;
    }
}

/// A [`Host`]'s randomness as a `rand_core` generator, for the protocol functions that take
/// one (`&mut impl CryptoRng`).
pub struct HostRng<'a>(pub &'a mut dyn Host);

impl std::fmt::Debug for HostRng<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostRng").finish_non_exhaustive()
    }
}

impl rand_core::TryRng for HostRng<'_> {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut bytes = [0u8; 4];
        self.0.fill_random(&mut bytes);
        Ok(u32::from_le_bytes(bytes))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut bytes = [0u8; 8];
        self.0.fill_random(&mut bytes);
        Ok(u64::from_le_bytes(bytes))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.0.fill_random(dst);
        Ok(())
    }
}

/// [`Host::fill_random`] is a cryptographically secure generator by contract.
impl rand_core::TryCryptoRng for HostRng<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use confide_protocol::GroupId;

    /// A host whose randomness is a counter: predictable, so a test can see where bytes go.
    struct CountingHost(u8);

    impl Host for CountingHost {
        fn now(&self) -> Timestamp {
            Timestamp(0)
        }
        fn fill_random(&mut self, out: &mut [u8]) {
            for byte in out {
                self.0 = self.0.wrapping_add(1);
                *byte = self.0;
            }
        }
        fn event(&mut self, _event: Event) {}
    }

    #[test]
    fn protocol_randomness_comes_from_the_host_and_nowhere_else() {
        let mut host = CountingHost(0);
        let group = GroupId::random(&mut HostRng(&mut host));
        let expected: [u8; 16] = std::array::from_fn(|i| i as u8 + 1);
        assert_eq!(group, GroupId(expected));
        // The same host state gives the same id again: nothing else was mixed in.
        let mut again = CountingHost(0);
        assert_eq!(GroupId::random(&mut HostRng(&mut again)), group);
    }
}
