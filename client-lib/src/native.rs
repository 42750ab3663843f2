//! The native platform under the client core: the host (system clock, OS randomness, the
//! [`crate::Events`] channel) and the network (TLS websockets through [`Connection`], with the
//! dial bounded by [`CONNECT_TIMEOUT`], and held back while the event backlog has overflowed:
//! [`QueueGuardedLink`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use confide_client_core::{ClientError, Event, Host, Link, Network, TransportError};
use confide_protocol::Timestamp;
use confide_protocol::frames::{ClientFrame, ServerFrame, StoredMessage};
use confide_protocol::page_checks::PageChecks;

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

    fn lend_cores(&self, checks: &Arc<PageChecks<StoredMessage>>) {
        lend_cores(checks);
    }
}

/// Fewest envelopes worth a helper thread: starting one costs about as much as checking a
/// few signatures.
const MIN_ENVELOPES_PER_HELPER: usize = 16;

/// Helper threads running now, in this process: every client of the process shares the
/// cores, so together they start no more than one helper per core besides their own threads.
static HELPERS_RUNNING: AtomicUsize = AtomicUsize::new(0);

/// A helper thread's place in [`HELPERS_RUNNING`], given back when the thread ends, however.
struct HelperRunning;

impl Drop for HelperRunning {
    fn drop(&mut self) {
        HELPERS_RUNNING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Starts a helper thread per core besides the one handling the page (fewer for a short
/// page, or while other pages' helpers still run), each checking envelopes ahead until none
/// is left to claim. Detached: a helper ends by itself once every check is claimed or the page
/// stops them. One the system refuses is not started; the page's own thread checks its share.
fn lend_cores(checks: &Arc<PageChecks<StoredMessage>>) {
    let cores = crate::store::available_cores();
    let wanted = cores
        .saturating_sub(1)
        .min(checks.items().len() / MIN_ENVELOPES_PER_HELPER);
    for _ in 0..wanted {
        // Counted before it starts, so that two pages lending at once cannot both take the
        // last core.
        let running = HELPERS_RUNNING.fetch_add(1, Ordering::SeqCst);
        if running >= cores.saturating_sub(1) {
            HELPERS_RUNNING.fetch_sub(1, Ordering::SeqCst);
            break;
        }
        let checks = Arc::clone(checks);
        let started = std::thread::Builder::new()
            .name("confide-checks".into())
            .spawn(move || {
                let _counted = HelperRunning;
                while checks.help() {}
            });
        if started.is_err() {
            HELPERS_RUNNING.fetch_sub(1, Ordering::SeqCst);
            break;
        }
    }
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
    use confide_protocol::envelope::Envelope;
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
    fn a_page_checked_with_lent_cores_gives_each_message_its_own_result_in_order() {
        use confide_protocol::{Seq, Timestamp};
        for n in [0, 1, 15, 16, 33, 100] {
            let (envelopes, genuine) = page(n);
            let messages: Vec<StoredMessage> = envelopes
                .into_iter()
                .enumerate()
                .map(|(i, envelope)| StoredMessage {
                    seq: Seq(i as u64 + 1),
                    received_at: Timestamp(0),
                    envelope,
                })
                .collect();
            let alone: Vec<_> = messages.iter().map(|m| m.envelope.verify()).collect();
            let checks = Arc::new(PageChecks::new(messages));
            lend_cores(&checks);
            for (i, expected) in alone.iter().enumerate() {
                let got = checks.check(i).unwrap();
                assert_eq!(got.is_ok(), genuine[i], "message {i} of {n}");
                match (got, expected) {
                    (Ok(got), Ok(())) => {
                        assert!(std::ptr::eq(got.envelope(), &checks.items()[i].envelope));
                    }
                    (Err(got), Err(expected)) => assert_eq!(&got, expected),
                    _ => panic!("message {i} of {n}: results differ"),
                }
            }
            assert!(!checks.help(), "every check was claimed");
        }
    }
}
