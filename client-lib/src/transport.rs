//! The websocket transport: dial `wss://` (or `ws://` on loopback), with the chosen
//! [`ServerTrust`], and exchange typed frames. [`Connection`] is the lowest layer of the client;
//! it knows frames, not groups or keys.

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::http::Uri;

use confide_protocol::frames::{ClientFrame, DEFAULT_MAX_SERVER_FRAME_BYTES, ServerFrame};

use crate::tls::{ServerTrust, TrustError};

// Defined in the client core, whose link seam reports it; kept at this path for callers.
pub use confide_client_core::TransportError;

impl From<TrustError> for TransportError {
    /// The core's error carries the reason as text: it knows nothing of rustls.
    fn from(e: TrustError) -> TransportError {
        TransportError::Trust(e.to_string())
    }
}

/// A TCP or TLS byte stream. `Sync` because the client's background task holds shared
/// references to its state, connection included, across awaits and must still be `Send`.
trait Io: AsyncRead + AsyncWrite + Send + Sync + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin> Io for T {}

/// A dialled websocket to a Confide server.
pub struct Connection {
    ws: WebSocketStream<Box<dyn Io>>,
    max_frame_bytes: usize,
    /// The host name dialled: what authentication signatures are bound to.
    host: String,
}

fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare == "localhost"
        || bare
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

impl Connection {
    /// Dials `url` (`wss://host:port`, or `ws://` for a loopback host).
    pub async fn connect(url: &str, trust: &ServerTrust) -> Result<Connection, TransportError> {
        let uri: Uri = url
            .parse()
            .map_err(|_| TransportError::BadUrl(url.to_string()))?;
        let host = uri
            .host()
            .ok_or_else(|| TransportError::BadUrl(url.to_string()))?
            .to_string();
        let secure = match uri.scheme_str() {
            Some("wss") => true,
            Some("ws") => false,
            _ => return Err(TransportError::BadUrl(url.to_string())),
        };
        if !secure && !is_loopback_host(&host) {
            return Err(TransportError::PlaintextRefused(host));
        }
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        let bare_host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let tcp = TcpStream::connect((bare_host.as_str(), port))
            .await
            .map_err(|e| TransportError::Io(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let stream = if secure {
            let config = trust.client_config()?;
            let connector = tokio_rustls::TlsConnector::from(config);
            let name = rustls::pki_types::ServerName::try_from(bare_host.clone())
                .map_err(|_| TransportError::BadUrl(url.to_string()))?;
            let tls = connector
                .connect(name, tcp)
                .await
                .map_err(|e| TransportError::Io(e.to_string()))?;
            Box::new(tls) as Box<dyn Io>
        } else {
            Box::new(tcp) as Box<dyn Io>
        };
        let (ws, _) = tokio_tungstenite::client_async(url, stream)
            .await
            .map_err(|e| TransportError::Io(e.to_string()))?;
        Ok(Connection {
            ws,
            max_frame_bytes: DEFAULT_MAX_SERVER_FRAME_BYTES,
            host: bare_host,
        })
    }

    /// The host name this connection dialled.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Sends a frame.
    pub async fn send(&mut self, frame: &ClientFrame) -> Result<(), TransportError> {
        let text = frame.to_json()?;
        self.send_ws(WsMessage::Text(text.into())).await
    }

    /// **For tests only** (feature `test-hooks`): sends `text` as it is, frame or not, to see
    /// what a server makes of hostile input.
    #[cfg(feature = "test-hooks")]
    pub async fn send_raw(&mut self, text: String) -> Result<(), TransportError> {
        self.send_ws(WsMessage::Text(text.into())).await
    }

    /// **For tests only** (feature `test-hooks`): sends any websocket message (binary, say),
    /// to see what a server makes of hostile input.
    #[cfg(feature = "test-hooks")]
    pub async fn send_message(&mut self, message: WsMessage) -> Result<(), TransportError> {
        self.send_ws(message).await
    }

    /// Sends one websocket message.
    async fn send_ws(&mut self, message: WsMessage) -> Result<(), TransportError> {
        self.ws
            .send(message)
            .await
            .map_err(|e| TransportError::Io(e.to_string()))
    }

    /// Receives the next frame, answering pings along the way.
    pub async fn recv(&mut self) -> Result<ServerFrame, TransportError> {
        loop {
            let Some(message) = self.ws.next().await else {
                return Err(TransportError::Closed(None));
            };
            match message.map_err(|e| TransportError::Io(e.to_string()))? {
                WsMessage::Text(text) => {
                    return Ok(ServerFrame::from_json(text.as_str(), self.max_frame_bytes)?);
                }
                WsMessage::Close(frame) => {
                    return Err(TransportError::Closed(frame.map(|f| f.reason.to_string())));
                }
                _ => continue,
            }
        }
    }

    /// Closes the connection politely.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}
