//! The core's [`Network`] and [`Link`] over the browser's `WebSocket`: [`WsNetwork`] dials,
//! [`WsLink`] carries whole frames both ways. Frames are JSON in text messages, exactly as the
//! native client sends them (`client-lib/src/transport.rs`); other messages are ignored, as
//! natively. The browser checks the server's certificate against the system's roots (a page
//! cannot pin one: SECURITY.md says what that changes).
//!
//! The socket's callbacks push what happens into a channel; receiving takes from it, so a wait
//! can be given up (a timeout, or the driver's `select` with a command) without losing a frame.
//!
//! A server cannot make the worker hold more than it must: a message is measured while it is
//! still a JavaScript string and refused above the frame limit before it is copied into wasm
//! memory ([`text_of`]), and the frames waiting to be handled are bounded ([`Backlog`]). Either
//! bound drops the connection; the driver reconnects and syncs, as the native client does when
//! its websocket's size limit is hit.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use confide_client_core::{ClientError, Link, Network, TransportError};
use confide_protocol::frames::{ClientFrame, DEFAULT_MAX_SERVER_FRAME_BYTES, ServerFrame};
use futures_channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use futures_util::StreamExt as _;
use futures_util::future::{Either, select};
use gloo_timers::future::TimeoutFuture;
use wasm_bindgen::JsCast as _;
use wasm_bindgen::closure::Closure;
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};

use crate::driver::PushLink;

/// How long opening the websocket (TCP, TLS, the upgrade) may take, as natively.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// The normal-closure code of a websocket close frame.
const NORMAL_CLOSURE: u16 = 1000;
/// The close code for a message too big to process (RFC 6455 §7.4.1).
const MESSAGE_TOO_BIG: u16 = 1009;
/// The close code for a peer that breaks the rules (here: floods frames faster than they are
/// handled).
const POLICY_VIOLATION: u16 = 1008;
/// The most frames received and not yet handled. The driver handles one frame per durable
/// commit; a server that pushes faster than that past this many is dropped, and the driver
/// reconnects and syncs (nothing is lost: what was not handled is fetched again).
pub const MAX_QUEUED_FRAMES: usize = 1024;
/// The most bytes of frames received and not yet handled (see [`MAX_QUEUED_FRAMES`]).
pub const MAX_QUEUED_BYTES: usize = 32 * 1024 * 1024;

/// Why a websocket message was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Not text: not a frame (ignored, as natively).
    NotText,
    /// Longer than the frame limit: the connection is dropped.
    TooLarge,
}

/// The text of a websocket message's `data`, measured before it is copied into wasm memory:
/// a string of more UTF-16 units than [`DEFAULT_MAX_SERVER_FRAME_BYTES`] is at least that many
/// UTF-8 bytes, so it is refused while still a JavaScript string.
///
/// # Errors
///
/// [`Refused::NotText`] for binary data, [`Refused::TooLarge`] above the limit.
pub fn text_of(data: &wasm_bindgen::JsValue) -> Result<String, Refused> {
    let js = data.dyn_ref::<js_sys::JsString>().ok_or(Refused::NotText)?;
    let units = usize::try_from(js.length()).unwrap_or(usize::MAX);
    if units > DEFAULT_MAX_SERVER_FRAME_BYTES {
        return Err(Refused::TooLarge);
    }
    Ok(String::from(js))
}

/// The frames received and not yet handled: how many and how many bytes, bounded by
/// [`MAX_QUEUED_FRAMES`] and [`MAX_QUEUED_BYTES`].
#[derive(Debug, Default)]
pub struct Backlog {
    frames: usize,
    bytes: usize,
    /// Set once a bound was passed: nothing more is taken.
    overflowed: bool,
}

impl Backlog {
    /// Counts a frame of `len` bytes in; `false` (and from then on always `false`) if that
    /// passes a bound.
    pub fn admit(&mut self, len: usize) -> bool {
        if self.overflowed
            || self.frames >= MAX_QUEUED_FRAMES
            || self.bytes.saturating_add(len) > MAX_QUEUED_BYTES
        {
            self.overflowed = true;
            return false;
        }
        self.frames += 1;
        self.bytes += len;
        true
    }

    /// Counts a frame of `len` bytes out (handled).
    pub fn release(&mut self, len: usize) {
        self.frames = self.frames.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(len);
    }
}

/// Dials the server at a `wss://` URL (or `ws://` on loopback, for development).
#[derive(Clone, Debug)]
pub struct WsNetwork {
    /// The server's URL, checked by [`WsNetwork::new`].
    url: String,
    /// The host name in it: what authentication signatures are bound to.
    host: String,
}

/// Whether `host` (as `URL.hostname` gives it) is this machine.
fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare == "localhost"
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl WsNetwork {
    /// A network dialling `url`: `wss://host[:port][/path]`, or `ws://` to a loopback host.
    ///
    /// # Errors
    ///
    /// [`TransportError::BadUrl`] for anything else, [`TransportError::PlaintextRefused`] for
    /// `ws://` to another host — the same rule as the native client's.
    pub fn new(url: &str) -> Result<WsNetwork, TransportError> {
        let bad = || TransportError::BadUrl(url.to_string());
        let parsed = web_sys::Url::new(url).map_err(|_| bad())?;
        let host = parsed.hostname();
        if host.is_empty() {
            return Err(bad());
        }
        match parsed.protocol().as_str() {
            "wss:" => {}
            "ws:" if is_loopback_host(&host) => {}
            "ws:" => return Err(TransportError::PlaintextRefused(host)),
            _ => return Err(bad()),
        }
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        Ok(WsNetwork {
            url: url.to_string(),
            host,
        })
    }

    /// The host name dialled.
    pub fn host(&self) -> &str {
        &self.host
    }
}

/// What the socket's callbacks report.
enum Incoming {
    /// The socket is open.
    Open,
    /// A text message.
    Text(String),
    /// The socket closed, with the server's reason if it gave one.
    Closed(Option<String>),
    /// The socket failed (the browser says no more: its `error` event carries no detail).
    Failed,
    /// A message over the frame limit, or more frames than [`Backlog`] allows, arrived: the
    /// socket was closed.
    Overrun(&'static str),
}

/// The socket's callbacks, kept alive as long as the socket is used and detached on drop.
struct Handlers {
    _open: Closure<dyn FnMut(web_sys::Event)>,
    _message: Closure<dyn FnMut(MessageEvent)>,
    _close: Closure<dyn FnMut(CloseEvent)>,
    _error: Closure<dyn FnMut(web_sys::Event)>,
}

/// One open websocket to the server.
pub struct WsLink {
    ws: WebSocket,
    incoming: UnboundedReceiver<Incoming>,
    /// What is queued in `incoming`, shared with the message callback.
    backlog: Rc<RefCell<Backlog>>,
    host: String,
    _handlers: Handlers,
}

impl std::fmt::Debug for WsLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsLink")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

/// Sets the socket's four callbacks to push into `tx`, counting text frames in `backlog`.
fn attach(
    ws: &WebSocket,
    tx: &UnboundedSender<Incoming>,
    backlog: &Rc<RefCell<Backlog>>,
) -> Handlers {
    let push = |tx: &UnboundedSender<Incoming>| {
        let tx = tx.clone();
        move |item: Incoming| {
            // The receiver is gone once the link is dropped; nothing is waiting then.
            let _ = tx.unbounded_send(item);
        }
    };
    let open = {
        let push = push(tx);
        Closure::<dyn FnMut(web_sys::Event)>::new(move |_: web_sys::Event| push(Incoming::Open))
    };
    let message = {
        let push = push(tx);
        let backlog = backlog.clone();
        let ws = ws.clone();
        Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            if backlog.borrow().overflowed {
                return;
            }
            // Frames are text; a binary message is not a frame (the native client skips them
            // too).
            let overrun = match text_of(&event.data()) {
                Ok(text) if backlog.borrow_mut().admit(text.len()) => {
                    push(Incoming::Text(text));
                    return;
                }
                Ok(_) => (
                    POLICY_VIOLATION,
                    "the server sent frames faster than they are handled",
                ),
                Err(Refused::NotText) => return,
                Err(Refused::TooLarge) => {
                    backlog.borrow_mut().overflowed = true;
                    (
                        MESSAGE_TOO_BIG,
                        "the server sent a frame over the size limit",
                    )
                }
            };
            let _ = ws.close_with_code_and_reason(overrun.0, "");
            push(Incoming::Overrun(overrun.1));
        })
    };
    let close = {
        let push = push(tx);
        Closure::<dyn FnMut(CloseEvent)>::new(move |event: CloseEvent| {
            let reason = event.reason();
            push(Incoming::Closed((!reason.is_empty()).then_some(reason)));
        })
    };
    let error = {
        let push = push(tx);
        Closure::<dyn FnMut(web_sys::Event)>::new(move |_: web_sys::Event| push(Incoming::Failed))
    };
    ws.set_onopen(Some(open.as_ref().unchecked_ref()));
    ws.set_onmessage(Some(message.as_ref().unchecked_ref()));
    ws.set_onclose(Some(close.as_ref().unchecked_ref()));
    ws.set_onerror(Some(error.as_ref().unchecked_ref()));
    Handlers {
        _open: open,
        _message: message,
        _close: close,
        _error: error,
    }
}

/// A socket being opened: closed and detached on drop unless taken (`None`).
struct Abandoned(Option<WebSocket>);

impl Drop for Abandoned {
    fn drop(&mut self) {
        if let Some(ws) = self.0.take() {
            detach(&ws);
            let _ = ws.close();
        }
    }
}

/// Detaches the callbacks, so that the socket no longer calls into closures about to be freed.
fn detach(ws: &WebSocket) {
    ws.set_onopen(None);
    ws.set_onmessage(None);
    ws.set_onclose(None);
    ws.set_onerror(None);
}

/// `d` in whole milliseconds for `setTimeout`, at most `u32::MAX` (49 days).
fn timeout_ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

impl Network for WsNetwork {
    type Link = WsLink;

    async fn dial(&mut self) -> Result<WsLink, ClientError> {
        let ws = WebSocket::new(&self.url).map_err(|_| TransportError::BadUrl(self.url.clone()))?;
        ws.set_binary_type(BinaryType::Arraybuffer);
        let (tx, mut incoming) = unbounded();
        let backlog = Rc::new(RefCell::new(Backlog::default()));
        let handlers = attach(&ws, &tx, &backlog);
        // If this attempt is given up (the driver stops while it waits), the socket is closed
        // and its callbacks detached before they are freed.
        let mut abandoned = Abandoned(Some(ws.clone()));
        let opened = {
            let first = incoming.next();
            let timeout = TimeoutFuture::new(timeout_ms(CONNECT_TIMEOUT));
            match select(first, timeout).await {
                Either::Left((Some(Incoming::Open), _)) => Ok(()),
                Either::Left((Some(Incoming::Closed(Some(reason))), _)) => {
                    Err(TransportError::Io(format!("the server closed: {reason}")).into())
                }
                Either::Left(_) => Err(TransportError::Io(
                    "the websocket could not be opened (the browser gives no detail: is the \
                     server up, and its certificate trusted?)"
                        .into(),
                )
                .into()),
                Either::Right(((), _)) => Err(ClientError::Timeout {
                    waiting_for: "connect",
                    after: CONNECT_TIMEOUT,
                }),
            }
        };
        // On failure `abandoned` closes the socket and detaches its callbacks.
        opened?;
        abandoned.0 = None;
        Ok(WsLink {
            ws,
            incoming,
            backlog,
            host: self.host.clone(),
            _handlers: handlers,
        })
    }
}

impl WsLink {
    /// What the next item from the socket means for the core: a frame, nothing (not a
    /// frame), or the end of the connection.
    fn frame_of(&self, item: Option<Incoming>) -> Result<Option<ServerFrame>, TransportError> {
        match item {
            Some(Incoming::Text(text)) => {
                self.backlog.borrow_mut().release(text.len());
                Ok(Some(ServerFrame::from_json(
                    &text,
                    DEFAULT_MAX_SERVER_FRAME_BYTES,
                )?))
            }
            Some(Incoming::Overrun(why)) => Err(TransportError::Io(why.into())),
            Some(Incoming::Open) => Ok(None),
            Some(Incoming::Closed(reason)) => Err(TransportError::Closed(reason)),
            Some(Incoming::Failed) => Err(TransportError::Io("the websocket failed".into())),
            None => Err(TransportError::Closed(None)),
        }
    }
}

impl PushLink for WsLink {
    async fn next_frame(&mut self) -> Result<ServerFrame, TransportError> {
        loop {
            // Cancel-safe: an item is taken from the channel only when it is returned.
            let item = self.incoming.next().await;
            if let Some(frame) = self.frame_of(item)? {
                return Ok(frame);
            }
        }
    }
}

impl Link for WsLink {
    fn host(&self) -> &str {
        &self.host
    }

    async fn send(&mut self, frame: &ClientFrame) -> Result<(), TransportError> {
        if self.ws.ready_state() != WebSocket::OPEN {
            return Err(TransportError::Closed(None));
        }
        let text = frame.to_json()?;
        self.ws
            .send_with_str(&text)
            .map_err(|_| TransportError::Io("the websocket refused the frame".into()))
    }

    async fn recv(&mut self, within: Duration) -> Result<Option<ServerFrame>, TransportError> {
        let deadline = TimeoutFuture::new(timeout_ms(within));
        let mut deadline = std::pin::pin!(deadline);
        loop {
            match select(self.incoming.next(), deadline.as_mut()).await {
                Either::Left((item, _)) => {
                    if let Some(frame) = self.frame_of(item)? {
                        return Ok(Some(frame));
                    }
                }
                Either::Right(((), _)) => return Ok(None),
            }
        }
    }

    async fn close(self) {
        let _ = self
            .ws
            .close_with_code_and_reason(NORMAL_CLOSURE, "client closed");
        // Dropping detaches the callbacks.
    }
}

impl Drop for WsLink {
    fn drop(&mut self) {
        detach(&self.ws);
        let state = self.ws.ready_state();
        if state == WebSocket::OPEN || state == WebSocket::CONNECTING {
            let _ = self.ws.close();
        }
    }
}
