//! The native platform under the client core: the host (system clock, OS randomness, the
//! [`crate::Events`] channel) and the network (TLS websockets through [`Connection`], with the
//! dial bounded by [`CONNECT_TIMEOUT`], and held back while the event backlog has overflowed:
//! [`QueueGuardedLink`]).

use std::time::Duration;

use confide_client_core::{ClientError, Event, Host, Link, Network, TransportError};
use confide_protocol::Timestamp;
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
