//! The native platform under the client core: the host (system clock, OS randomness, the
//! [`crate::Events`] channel) and the network (TLS websockets through [`Connection`], with the
//! dial bounded by [`CONNECT_TIMEOUT`]).

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
}

/// The system clock, in milliseconds since the Unix epoch.
pub(crate) fn now() -> Timestamp {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        // A clock before 1970 is taken as 1970: times only order messages and expiries.
        .map_or(Timestamp(0), Timestamp::from_unix_duration)
}

impl Host for NativeHost {
    fn now(&self) -> Timestamp {
        now()
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

/// Dials `url` with `trust`, as the [`crate::ClientConfig`] says.
pub(crate) struct WsNetwork {
    pub(crate) url: String,
    pub(crate) trust: ServerTrust,
}

impl Network for WsNetwork {
    type Link = Connection;

    async fn dial(&mut self) -> Result<Connection, ClientError> {
        tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(&self.url, &self.trust))
            .await
            .map_err(|_| ClientError::Timeout {
                waiting_for: "connect",
                after: CONNECT_TIMEOUT,
            })?
            .map_err(ClientError::from)
    }
}

impl Link for Connection {
    fn host(&self) -> &str {
        Connection::host(self)
    }

    async fn send(&mut self, frame: &ClientFrame) -> Result<(), TransportError> {
        Connection::send(self, frame).await
    }

    async fn recv(&mut self, within: Duration) -> Result<Option<ServerFrame>, TransportError> {
        // Receiving is cancel-safe (a websocket stream's `next`), so giving up on time loses
        // no frame.
        match tokio::time::timeout(within, Connection::recv(self)).await {
            Ok(frame) => frame.map(Some),
            Err(_) => Ok(None),
        }
    }

    async fn close(self) {
        Connection::close(self).await
    }
}
