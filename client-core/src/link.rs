//! The link seam: how the core reaches the server. A [`Network`] dials, and the [`Link`] it
//! returns carries whole frames both ways. Sockets, TLS, certificate pinning and the time a
//! dial may take are the caller's (the native shell uses tokio-tungstenite and rustls; a
//! browser would use a `WebSocket`); the core only sends frames, waits for them with a bound
//! it chooses, and closes.

use std::future::Future;
use std::time::Duration;

use confide_protocol::frames::{ClientFrame, FrameError, ServerFrame};

use crate::{ClientError, MaybeSend, MaybeSync};

/// Why the connection to the server failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The server address is not a `wss://host:port` (or loopback `ws://`) URL.
    #[error("invalid server URL {0:?}: expected wss://host:port")]
    BadUrl(String),
    /// Plain `ws://` was requested for a host that is not loopback.
    #[error("refusing unencrypted ws:// to {0}: only loopback addresses may skip TLS")]
    PlaintextRefused(String),
    /// The TLS configuration (trusted roots, pinned certificate) could not be set up; the
    /// text says why.
    #[error("{0}")]
    Trust(String),
    /// TCP, TLS (including a wrong pinned fingerprint) or websocket failure.
    #[error("connection failed: {0}")]
    Io(String),
    /// The server sent a frame this client cannot parse.
    #[error("bad frame from server: {0}")]
    Frame(#[from] FrameError),
    /// The server closed the connection.
    #[error("connection closed by the server{}", .0.as_ref().map(|r| format!(": {r}")).unwrap_or_default())]
    Closed(Option<String>),
}

/// What dials the server. The caller bounds how long a dial may take (TCP, TLS, websocket);
/// the core bounds the waits after it (the server's challenge, every reply).
pub trait Network: MaybeSend + MaybeSync {
    /// The connection a dial returns.
    type Link: Link;

    /// Opens a new connection to the server, or says why it could not.
    fn dial(&mut self) -> impl Future<Output = Result<Self::Link, ClientError>> + MaybeSend;
}

/// One connection to the server, carrying whole frames.
pub trait Link: MaybeSend + MaybeSync {
    /// The host name dialled: what authentication signatures are bound to.
    fn host(&self) -> &str;

    /// Sends one frame.
    fn send(
        &mut self,
        frame: &ClientFrame,
    ) -> impl Future<Output = Result<(), TransportError>> + MaybeSend;

    /// The next frame from the server; `Ok(None)` when none came `within` that time. An
    /// `Err` means the connection is gone.
    fn recv(
        &mut self,
        within: Duration,
    ) -> impl Future<Output = Result<Option<ServerFrame>, TransportError>> + MaybeSend;

    /// Closes the connection politely.
    fn close(self) -> impl Future<Output = ()> + MaybeSend
    where
        Self: Sized;
}
