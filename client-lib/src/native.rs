//! The native platform under the client core: the host (system clock, OS randomness, the
//! [`crate::Events`] channel) and the network (TLS websockets through [`Connection`], with the
//! dial bounded by [`CONNECT_TIMEOUT`], and held back while the event backlog has overflowed:
//! [`QueueGuardedLink`]).

use std::time::Duration;

use confide_client_core::{ClientError, Event, Host, Link, Network, TransportError};
use confide_protocol::Timestamp;
use confide_protocol::envelope::{Envelope, EnvelopeError, Verified, verify_each};
use confide_protocol::frames::{ClientFrame, ServerFrame};

use crate::queue::EventSink;
use crate::tls::ServerTrust;
use crate::transport::Connection;

/// How long dialling the server (TCP, TLS, websocket) may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// The system clock, the operating system's randomness, and the queue [`crate::Events`]
/// reads.
pub(crate) struct NativeHost {
    pub(crate) events: EventSink,
    /// **For tests only** (feature `test-hooks`): how many milliseconds this client's clock
    /// runs ahead of the system clock ([`crate::Client::advance_clock`]).
    #[cfg(feature = "test-hooks")]
    pub(crate) ahead_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// The system clock, in milliseconds since the Unix epoch.
pub(crate) fn now() -> Timestamp {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        // A clock before 1970 is taken as 1970: times only order messages and expiries.
        .map_or(Timestamp(0), Timestamp::from_unix_duration)
}

impl Host for NativeHost {
    #[cfg(not(feature = "test-hooks"))]
    fn now(&self) -> Timestamp {
        now()
    }

    #[cfg(feature = "test-hooks")]
    fn now(&self) -> Timestamp {
        let ahead = self.ahead_ms.load(std::sync::atomic::Ordering::SeqCst);
        Timestamp(now().0.saturating_add(ahead))
    }

    fn fill_random(&mut self, out: &mut [u8]) {
        rand_core::Rng::fill_bytes(&mut crate::os_rng(), out);
    }

    fn event(&mut self, event: Event) {
        // Never waits: beyond the queue's capacity the event waits in its backlog, and the
        // background task takes no new input from the server until the application has read
        // (see `crate::queue`).
        self.events.push(event);
    }

    fn verify_envelopes<'a>(
        &self,
        envelopes: &[&'a Envelope],
    ) -> Vec<Result<Verified<'a>, EnvelopeError>> {
        verify_on_cores(envelopes)
    }
}

/// Fewest envelopes worth a thread of their own: starting one costs about as much as checking
/// a few signatures.
const MIN_ENVELOPES_PER_THREAD: usize = 16;

/// [`verify_each`] spread over the host's cores: the page is cut into contiguous parts, one
/// per thread (this one included), and the parts' results joined in order, so every result
/// is the one `verify_each` gives for that envelope, in the same place.
fn verify_on_cores<'a>(envelopes: &[&'a Envelope]) -> Vec<Result<Verified<'a>, EnvelopeError>> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let threads = cores.min(envelopes.len() / MIN_ENVELOPES_PER_THREAD).max(1);
    if threads == 1 {
        return verify_each(envelopes);
    }
    let part = envelopes.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let mut parts = envelopes.chunks(part);
        // This thread takes the first part itself; the others go to new threads.
        let first = parts.next().unwrap_or_default();
        // A part whose thread the system refused is checked on this thread instead.
        let others: Vec<_> = parts
            .map(|chunk| {
                let handle = std::thread::Builder::new()
                    .spawn_scoped(scope, move || verify_each(chunk))
                    .ok();
                (chunk, handle)
            })
            .collect();
        let mut results = verify_each(first);
        for (chunk, handle) in others {
            // A thread that panicked (it cannot: `verify_each` does not panic) would leave a
            // part unchecked: it is checked here instead.
            let part = handle.and_then(|handle| handle.join().ok());
            results.extend(part.unwrap_or_else(|| verify_each(chunk)));
        }
        results
    })
}

/// Why the connection is dropped, or not made, while the event backlog has overflowed.
pub(crate) const OVERFLOWED: &str =
    "the application's event backlog is full: no connection until it reads its events";

/// Dials `url` with `trust`, as the [`crate::ClientConfig`] says — unless the event backlog
/// has overflowed: then it refuses, so that a command cannot reconnect and feed a backlog
/// nobody reads.
pub(crate) struct WsNetwork {
    pub(crate) url: String,
    pub(crate) trust: ServerTrust,
    pub(crate) events: EventSink,
}

impl Network for WsNetwork {
    type Link = QueueGuardedLink;

    async fn dial(&mut self) -> Result<QueueGuardedLink, ClientError> {
        if self.events.has_overflowed() {
            return Err(TransportError::Io(OVERFLOWED.into()).into());
        }
        let conn =
            tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(&self.url, &self.trust))
                .await
                .map_err(|_| ClientError::Timeout {
                    waiting_for: "connect",
                    after: CONNECT_TIMEOUT,
                })??;
        Ok(QueueGuardedLink {
            conn,
            events: self.events.clone(),
        })
    }
}

/// A [`Connection`] that stops carrying frames either way as soon as the event backlog
/// overflows. Inside one command the core handles every frame that arrives while it waits
/// for its reply, each of which can produce events; refusing the next frame drops the
/// connection at once (the core sees the link fail, as if the network had), so no more is
/// taken in than the backlog holds. What was not taken in stays on the server; a request not
/// sent fails as it would on a lost connection.
pub(crate) struct QueueGuardedLink {
    conn: Connection,
    events: EventSink,
}

impl QueueGuardedLink {
    /// The next frame, waiting as long as it takes (the background task's receive between
    /// steps, which it makes only while the backlog is empty). Cancel-safe.
    pub(crate) async fn recv_next(&mut self) -> Result<ServerFrame, TransportError> {
        self.conn.recv().await
    }
}

impl Link for QueueGuardedLink {
    fn host(&self) -> &str {
        self.conn.host()
    }

    async fn send(&mut self, frame: &ClientFrame) -> Result<(), TransportError> {
        if self.events.has_overflowed() {
            return Err(TransportError::Io(OVERFLOWED.into()));
        }
        self.conn.send(frame).await
    }

    async fn recv(&mut self, within: Duration) -> Result<Option<ServerFrame>, TransportError> {
        if self.events.has_overflowed() {
            return Err(TransportError::Io(OVERFLOWED.into()));
        }
        // Receiving is cancel-safe (a websocket stream's `next`), so giving up on time loses
        // no frame.
        match tokio::time::timeout(within, self.conn.recv()).await {
            Ok(frame) => frame.map(Some),
            Err(_) => Ok(None),
        }
    }

    async fn close(self) {
        self.conn.close().await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use confide_protocol::identity::DeviceIdentity;
    use confide_protocol::sender_key::SenderChain;
    use confide_protocol::{Epoch, EpochRef, GroupId, OpHash};

    /// Envelopes from two senders, some forged (a flipped signature bit, a cut ciphertext).
    fn page(n: usize) -> (Vec<Envelope>, Vec<bool>) {
        let mut rng = crate::os_rng();
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
        let group = GroupId([3; 16]);
        let mut envelopes = Vec::new();
        let mut genuine = Vec::new();
        for i in 0..n {
            let s = i % 2;
            let mut envelope =
                Envelope::seal(&senders[s], group, epoch, &mut chains[s], b"hi", &mut rng).unwrap();
            let forged = i % 7 == 3 || i % 11 == 5;
            if i % 7 == 3 {
                envelope.signature.0[10] ^= 1;
            } else if i % 11 == 5 {
                envelope.ciphertext.pop();
            }
            envelopes.push(envelope);
            genuine.push(!forged);
        }
        (envelopes, genuine)
    }

    #[test]
    fn a_page_checked_on_several_cores_gives_each_envelope_its_own_result_in_order() {
        for n in [0, 1, 15, 16, 33, 100] {
            let (envelopes, genuine) = page(n);
            let refs: Vec<&Envelope> = envelopes.iter().collect();
            let parallel = verify_on_cores(&refs);
            let one_by_one = verify_each(&refs);
            assert_eq!(parallel.len(), n);
            for (i, (p, o)) in parallel.iter().zip(&one_by_one).enumerate() {
                assert_eq!(p.is_ok(), genuine[i], "envelope {i} of {n}");
                match (p, o) {
                    (Ok(p), Ok(o)) => {
                        assert!(std::ptr::eq(p.envelope(), o.envelope()));
                        assert!(std::ptr::eq(p.envelope(), refs[i]));
                    }
                    (Err(p), Err(o)) => assert_eq!(p, o),
                    _ => panic!("envelope {i} of {n}: results differ"),
                }
            }
        }
    }
}
