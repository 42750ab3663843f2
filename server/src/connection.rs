//! One client connection: the authentication handshake, then requests and deliveries until the
//! client leaves, falls too far behind, goes quiet, or the server shuts down.
//!
//! The connection task is the only writer of its websocket. Everything else — replies that
//! complete on the writer thread, messages fanned out by other connections — reaches it through
//! its bounded queue ([`crate::hub::ConnHandle`]).

use futures_util::{SinkExt as _, StreamExt as _};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, mpsc, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Message as WsMessage, Utf8Bytes};
use tracing::Instrument as _;

use confide_protocol::device_list::{DeviceList, SignedDeviceList};
use confide_protocol::envelope::Envelope;
use confide_protocol::frames::{
    self, ClientFrame, DeviceInfo, ErrorCode, GroupSummary, InboxItem, PROTOCOL_VERSION,
    ServerFrame, StoredMessage,
};
use confide_protocol::group_log::{InviteProblem, LogError, MemberEntry, OpBody, SignedOp};
use confide_protocol::policy;
use confide_protocol::seal::{MAX_SEALED_CIPHERTEXT, SealKind, SealedPayload};
use confide_protocol::{DeviceId, GroupId, MessageId, RequestId, Seq, UserId};

use crate::groups::{GroupEntry, InFlight, InFlightPosts, new_group};
use crate::hub::{ConnHandle, Outbound, outbound};
use crate::link::{ChannelId, LinkRefusal};
use crate::preauth;
use crate::server::{Shared, now};
use crate::storage::{DeviceRecord, StorageError, Write};
use crate::writer::{CommitError, CommitResult};

/// Inbox items read per storage call when delivering a backlog.
const INBOX_PAGE: usize = 100;

/// How long a client is told to wait before retrying a request refused with `storage`: long
/// enough that a full disk is not hammered by every client's outbox, short enough that messages
/// go out soon after space is freed.
pub const STORAGE_RETRY_AFTER: Duration = Duration::from_secs(10);
/// How long a client is told to wait before retrying a request refused with `shutting_down`:
/// about the time a supervisor takes to start the server again.
pub const SHUTTING_DOWN_RETRY_AFTER: Duration = Duration::from_secs(5);
/// The wait announced with `too_many_connections`: another connection of the device may close.
pub const TOO_MANY_CONNECTIONS_RETRY_AFTER: Duration = Duration::from_secs(5);
/// The wait announced with `inbox_full`: the recipient's devices acknowledge items as they come
/// online.
pub const INBOX_FULL_RETRY_AFTER: Duration = Duration::from_secs(60);
/// The wait announced to a post that finds 16 requests already waiting for the same envelope.
pub const SAME_POST_RETRY_AFTER: Duration = Duration::from_millis(250);
/// The wait announced with `rate_limited` to a `link_open` from an address with as many link
/// channels open as allowed: a link takes a minute or two.
pub const LINK_CHANNELS_RETRY_AFTER: Duration = Duration::from_secs(30);
/// The wait given with a retryable refusal that was built without one — a bug, which the tests
/// catch, but the client still gets a sensible wait rather than none.
const FALLBACK_RETRY_AFTER: Duration = Duration::from_secs(5);

/// A request failed: what to tell the client.
struct Reject {
    code: ErrorCode,
    message: String,
    retry_after: Option<Duration>,
}

impl Reject {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Reject {
            code,
            message: message.into(),
            retry_after: None,
        }
    }
    fn retry(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }
    /// The server is stopping (its writer has stopped): retry on a new connection later.
    fn shutting_down(message: impl Into<String>) -> Self {
        Reject::new(ErrorCode::ShuttingDown, message).retry(SHUTTING_DOWN_RETRY_AFTER)
    }
}

fn storage_reject(e: impl std::fmt::Display) -> Reject {
    crate::throttle::storage_error(&e);
    Reject::new(
        ErrorCode::Storage,
        "the server could not store this durably; nothing was acknowledged, retry later",
    )
    .retry(STORAGE_RETRY_AFTER)
}

fn log_reject(e: &LogError) -> Reject {
    let code = match e {
        LogError::OutOfOrder { .. } | LogError::Fork { .. } | LogError::BrokenChain { .. } => {
            ErrorCode::OpConflict
        }
        LogError::UnknownAuthor { .. } => ErrorCode::NotMember,
        _ => ErrorCode::InvalidOp,
    };
    Reject::new(code, format!("{e} ({})", e.code()))
}

/// What a connection has done before it authenticated.
struct PreAuth {
    /// Frames handled so far.
    frames: u32,
    /// It opened a link channel (PROTOCOL.md §9.4 `link_open`): it may send only `link_send`,
    /// `ping`, `register` and `authenticate`, up to `max_link_frames` frames.
    link_mode: bool,
    /// A new authentication deadline for the connection (set by `link_open`).
    new_deadline: Option<tokio::time::Instant>,
}

/// Who the connection acts for, once authenticated.
#[derive(Clone, Copy)]
struct Session {
    device: DeviceId,
}

/// What the reader asks the writer task to do besides sending queued frames: send a ping, or
/// stop.
///
/// A flag and a slot behind one [`Notify`] rather than a channel: tokio allocates a channel's
/// state and its first block of 32 slots up front, about half a kilobyte for every connection,
/// idle or not, while the reader only ever has one ping and one stop to pass on.
#[derive(Default)]
struct Control {
    /// Wakes the writer; a wake-up while it is busy sending is kept for its next wait.
    wake: Notify,
    /// A websocket ping is due (several due at once make one ping).
    ping: AtomicBool,
    /// Whether, and how, the writer must stop.
    stop: std::sync::Mutex<Stop>,
}

/// Whether, and how, the writer task must stop.
#[derive(Default)]
enum Stop {
    /// Keep sending.
    #[default]
    No,
    /// The reader has stopped without a close to send: the peer closed (the websocket has the
    /// reply to its close frame queued) or the transport failed.
    Stopped,
    /// Send what is queued, then the going-away frame (if any) and a close frame, then stop.
    Close(Box<Closing>),
}

impl Control {
    fn set_stop(&self, stop: Stop) {
        let mut slot = self
            .stop
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // The first word stands: the reader says `Close` before its end drops (`Stopped`).
        if matches!(*slot, Stop::No) {
            *slot = stop;
        }
    }

    fn take_stop(&self) -> Stop {
        let mut slot = self
            .stop
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        std::mem::take(&mut *slot)
    }
}

/// The reader's end of [`Control`]. Dropping it stops the writer, however the reader ended, as
/// dropping a channel's sender would.
struct ControlTx(Arc<Control>);

impl ControlTx {
    /// Asks the writer for a websocket ping.
    fn ping(&self) {
        self.0
            .ping
            .store(true, std::sync::atomic::Ordering::Release);
        self.0.wake.notify_one();
    }

    /// Asks the writer to send what is queued, then `closing`, then stop. (Dropping `self` at
    /// the end wakes the writer as well; the wake-up here does not rely on that.)
    fn close(self, closing: Closing) {
        self.0.set_stop(Stop::Close(Box::new(closing)));
        self.0.wake.notify_one();
    }
}

impl Drop for ControlTx {
    fn drop(&mut self) {
        self.0.set_stop(Stop::Stopped);
        self.0.wake.notify_one();
    }
}

/// How a connection closes.
struct Closing {
    code: CloseCode,
    reason: String,
    frame: Option<Outbound>,
}

/// Serves one websocket until it closes.
///
/// Two tasks: this one reads and handles requests; a writer task owns the socket's sending half
/// and gives up on any send that takes longer than the write timeout. So a peer that stops
/// reading can never stall the reader: deadlines, the slow-consumer close and shutdown still
/// fire, and the connection is dropped when the writer gives up.
///
/// The websocket is split before the returned future is created, so that the future does not
/// keep room for the whole websocket (over a kilobyte with TLS) for the connection's lifetime.
pub fn serve<S>(
    shared: Arc<Shared>,
    ws: WebSocketStream<S>,
    conn_id: u64,
    peer: Peer,
    shutdown: watch::Receiver<bool>,
) -> impl Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sink, stream) = ws.split();
    serve_split(shared, sink, stream, conn_id, peer, shutdown)
}

/// Where a connection comes from, and what it has until it authenticates.
pub struct Peer {
    /// The peer's IP address, for the per-address limits.
    pub ip: std::net::IpAddr,
    /// Lifted when the connection authenticates (see [`crate::preauth`]); holds its place among
    /// its address's unauthenticated connections until then.
    pub gate: preauth::Gate,
    /// When the connection must have authenticated: one deadline from the moment it was
    /// accepted, for the TLS handshake, the websocket handshake and authentication together.
    pub auth_deadline: tokio::time::Instant,
}

async fn serve_split<S>(
    shared: Arc<Shared>,
    sink: WsSink<S>,
    mut stream: futures_util::stream::SplitStream<WebSocketStream<S>>,
    conn_id: u64,
    peer: Peer,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (handle, outbound) = ConnHandle::new(
        conn_id,
        shared.limits.outbound_queue,
        shared.limits.outbound_queue_bytes,
    );
    let control_rx = Arc::new(Control::default());
    let control = ControlTx(control_rx.clone());
    let mut writer = tokio::spawn(write_loop(
        shared.clone(),
        sink,
        outbound,
        control_rx,
        handle.clone(),
    ));

    let mut nonce = [0u8; 32];
    shared.fill_random(&mut nonce);
    reply(
        &shared,
        &handle,
        &ServerFrame::Challenge {
            version: PROTOCOL_VERSION,
            server_name: shared.limits.server_name.clone(),
            nonce,
            server_time: now(),
        },
    );

    let mut session: Option<Session> = None;
    let mut pre = PreAuth {
        frames: 0,
        link_mode: false,
        new_deadline: None,
    };
    let Peer {
        ip: peer,
        gate,
        auth_deadline,
    } = peer;
    let auth_deadline = tokio::time::sleep_until(auth_deadline);
    tokio::pin!(auth_deadline);
    // This connection's place among its address's authenticated connections, once it has one.
    let mut _address_slot = None;
    // A zero interval would make tokio panic.
    let mut ping =
        tokio::time::interval(shared.limits.ping_interval.max(Duration::from_millis(10)));
    ping.reset();
    let mut last_heard = Instant::now();
    let mut bad_frames = crate::rate::TokenBucket::new(
        f64::from(shared.limits.bad_frames_per_minute) / 60.0,
        shared.limits.bad_frame_burst,
        Instant::now(),
    );
    let mut writer_done = false;
    let close: Option<(CloseCode, String)> = loop {
        tokio::select! {
            incoming = stream.next() => {
                use tokio_tungstenite::tungstenite::Error as WsError;
                use tokio_tungstenite::tungstenite::error::ProtocolError;
                let message = match incoming {
                    Some(Ok(message)) => message,
                    Some(Err(WsError::Capacity(_))) => {
                        break Some((CloseCode::Size, "message too big".into()));
                    }
                    Some(Err(WsError::Io(e))) if preauth::is_exhausted(&e) => {
                        reply_error(&shared, &handle, None, Reject::new(ErrorCode::NotAuthenticated, "too much data before authentication"));
                        break Some((CloseCode::Policy, "too much data before authentication".into()));
                    }
                    // RFC 6455 §8.1: invalid UTF-8 in a text message fails the connection with
                    // 1007 (the message cannot be read, so there is no request to answer).
                    Some(Err(WsError::Utf8(_))) => {
                        break Some((CloseCode::Invalid, "invalid UTF-8 in a text frame".into()));
                    }
                    // The peer dropped the connection: nobody is left to tell.
                    Some(Err(WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake))) => break None,
                    Some(Err(WsError::Protocol(e))) => {
                        break Some((CloseCode::Protocol, format!("websocket protocol error: {e}")));
                    }
                    _ => break None,
                };
                last_heard = Instant::now();
                let text = match message {
                    WsMessage::Text(text) => text,
                    WsMessage::Binary(_) => {
                        if !bad_frames.take(Instant::now()) {
                            break Some(too_many_bad_frames(&shared, &handle));
                        }
                        reply_error(&shared, &handle, None, Reject::new(ErrorCode::BadFrame, "binary frames are not part of the protocol; send JSON text frames"));
                        continue;
                    }
                    WsMessage::Close(_) => break None,
                    _ => continue,
                };
                shared.metrics.frames_in.fetch_add(1, Relaxed);
                shared.metrics.bytes_in.fetch_add(text.len() as u64, Relaxed);
                let frame = match ClientFrame::from_json(text.as_str(), shared.limits.max_frame_bytes) {
                    Ok(frame) => frame,
                    Err(e) => {
                        // Counted before the error is answered: the frame's cost (parsing) is
                        // already paid, the next one's is not.
                        if !bad_frames.take(Instant::now()) {
                            break Some(too_many_bad_frames(&shared, &handle));
                        }
                        reply_error(&shared, &handle, e.request_id(), Reject::new(e.code(), e.to_string()));
                        continue;
                    }
                };
                let id = frame.request_id();
                let preauth_limit = if pre.link_mode {
                    shared.limits.max_link_frames
                } else {
                    shared.limits.max_preauth_frames
                };
                match session {
                    None if pre.frames >= preauth_limit => {
                        reply_error(&shared, &handle, Some(id), Reject::new(ErrorCode::NotAuthenticated, "too many frames before authentication"));
                        break Some((CloseCode::Policy, "too many frames before authentication".into()));
                    }
                    // Boxed (here and below), so that an idle connection's future does not carry
                    // the largest request handler's state inline.
                    None => match Box::pin(authenticate(&shared, &handle, frame, &nonce, peer, &mut pre)).await {
                        Ok(Some((s, authenticated))) => {
                            tracing::Span::current().record("device", tracing::field::display(s.device.short()));
                            // Devices are free to register, so the per-device limit alone would
                            // let one host take every connection slot.
                            let Some(slot) = shared.authenticated_per_address.take(peer, shared.limits.max_authenticated_per_ip) else {
                                reply_error(&shared, &handle, Some(id), Reject::new(ErrorCode::TooManyConnections, format!(
                                    "this address already has {} connections open", shared.limits.max_authenticated_per_ip)).retry(TOO_MANY_CONNECTIONS_RETRY_AFTER));
                                break Some((CloseCode::Policy, "too many connections from this address".into()));
                            };
                            _address_slot = Some(slot);
                            if shared.hub.register(s.device, handle.clone(), shared.limits.max_connections_per_device).is_err() {
                                reply_error(&shared, &handle, Some(id), Reject::new(ErrorCode::TooManyConnections, format!(
                                    "this device already has {} connections open", shared.limits.max_connections_per_device)).retry(TOO_MANY_CONNECTIONS_RETRY_AFTER));
                                break Some((CloseCode::Policy, "too many connections for this device".into()));
                            }
                            // A list that dropped the device may have been stored since it was
                            // checked; from here on, the publication reaches this connection.
                            if let Ok(Some(owner)) = shared.storage.unlinked(&s.device) {
                                shared.hub.unregister(&s.device, conn_id);
                                let reject = unlinked_reject(&shared, &handle, &owner);
                                reply_error(&shared, &handle, Some(id), reject);
                                break Some((CloseCode::Policy, "device unlinked".into()));
                            }
                            reply(&shared, &handle, &authenticated);
                            gate.lift();
                            session = Some(s);
                            deliver_inbox_backlog(&shared, &handle, &s.device, 0);
                        }
                        Ok(None) => {
                            if let Some(deadline) = pre.new_deadline.take() {
                                auth_deadline.as_mut().reset(deadline);
                            }
                        }
                        Err(reject) => reply_error(&shared, &handle, Some(id), reject),
                    },
                    Some(s) => {
                        if let Err(reject) = Box::pin(handle_request(&shared, &handle, s, frame)).await {
                            reply_error(&shared, &handle, Some(id), reject);
                        }
                    }
                }
            }
            _ = &mut writer => {
                // A finished task must not be polled again (it panics).
                writer_done = true;
                break None;
            }
            // Notified only when the queue overflowed. (No `if` precondition here: it would be
            // evaluated once per loop, and a wake-up arriving mid-wait would go unnoticed.)
            _ = handle.overflowed() => {
                if handle.is_unlinked() {
                    break Some((CloseCode::Policy, "device unlinked".into()));
                }
                if handle.must_resync() {
                    break Some((CloseCode::Again, "this server lost touch with the other servers for a while: reconnect and sync".into()));
                }
                break Some((CloseCode::Again, "slow consumer: too far behind; reconnect and sync".into()));
            }
            _ = &mut auth_deadline, if session.is_none() => {
                reply_error(&shared, &handle, None, Reject::new(ErrorCode::NotAuthenticated, "authentication timed out"));
                break Some((CloseCode::Policy, "authentication timed out".into()));
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > shared.limits.idle_timeout {
                    break Some((CloseCode::Away, "idle timeout".into()));
                }
                control.ping();
            }
            _ = shutdown.changed() => {
                break Some((CloseCode::Away, "server shutting down".into()));
            }
        }
    };
    if let Some(s) = session {
        shared.hub.unregister(&s.device, conn_id);
    }
    if !shared.links.is_empty() {
        shared.links.connection_closed(conn_id, &shared.metrics);
    }
    let closing = close.is_some();
    if let Some((code, reason)) = close {
        // The going-away notice bypasses the queue, which may be full (slow consumer).
        let frame = serialize(&ServerFrame::GoingAway {
            reason: reason.clone(),
        });
        control.close(Closing {
            code,
            reason,
            frame,
        });
    } else {
        drop(control);
    }
    // The writer finishes within one write timeout per frame it still sends; beyond twice that,
    // give up on the peer.
    let writer_deadline = tokio::time::Instant::now() + shared.limits.write_timeout * 2;
    let mut finish_writer = async || {
        if !writer_done {
            if tokio::time::timeout_at(writer_deadline, &mut writer)
                .await
                .is_err()
            {
                writer.abort();
            }
            writer_done = true;
        }
    };
    if closing {
        // The close handshake (RFC 6455 §7.1.1): keep reading, and discarding, until the peer
        // answers the close frame (or gives up), for a bounded time. Dropping a socket with
        // unread data makes the kernel reset the connection, and a client still sending would
        // then see a reset instead of the `going_away` frame and the close code.
        let drained = async { while let Some(Ok(_)) = stream.next().await {} };
        let _ = tokio::time::timeout(
            shared.limits.close_linger,
            futures_util::future::join(drained, finish_writer()),
        )
        .await;
    }
    finish_writer().await;
}

/// Answers the frame that went over a connection's allowance of frames the server cannot use,
/// and says how to close the connection.
fn too_many_bad_frames(shared: &Shared, handle: &ConnHandle) -> (CloseCode, String) {
    let reason = "too many malformed, binary or unknown frames";
    reply_error(
        shared,
        handle,
        None,
        Reject::new(
            ErrorCode::BadFrame,
            format!(
                "{reason} (more than {} at once, or {} a minute); closing the connection",
                shared.limits.bad_frame_burst, shared.limits.bad_frames_per_minute
            ),
        ),
    );
    (CloseCode::Policy, reason.into())
}

/// Sends queued frames and control messages until told to close, the peer fails, or a send
/// takes longer than the write timeout.
///
/// Every send is boxed: a task's future is allocated whole for the connection's lifetime, and
/// an idle writer only waits. One box per burst of frames is small beside the send itself.
async fn write_loop<S>(
    shared: Arc<Shared>,
    mut sink: WsSink<S>,
    mut outbound: mpsc::Receiver<Outbound>,
    control: Arc<Control>,
    handle: ConnHandle,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let timeout = shared.limits.write_timeout;
    loop {
        tokio::select! {
            biased;
            () = control.wake.notified() => match control.take_stop() {
                Stop::No => {
                    if control.ping.swap(false, std::sync::atomic::Ordering::Acquire)
                        && !Box::pin(timed_send(&mut sink, WsMessage::Ping(Vec::new().into()), timeout))
                            .await
                    {
                        return;
                    }
                }
                Stop::Close(closing) => {
                    let Closing { code, reason, frame } = *closing;
                    if !handle.is_slow() {
                        while let Ok(text) = outbound.try_recv() {
                            if !Box::pin(send_text(&shared, &handle, &mut sink, text, timeout)).await {
                                return;
                            }
                        }
                    }
                    if let Some(text) = frame
                        && !Box::pin(send_text(&shared, &handle, &mut sink, text, timeout)).await
                    {
                        return;
                    }
                    let close = WsMessage::Close(Some(CloseFrame { code, reason: reason.into() }));
                    if Box::pin(timed_send(&mut sink, close, timeout)).await {
                        let _ = Box::pin(tokio::time::timeout(timeout, sink.close())).await;
                    }
                    return;
                }
                Stop::Stopped => {
                    // The reader has stopped: the peer closed (send the reply to its close
                    // frame, which the websocket has queued) or the transport failed (this
                    // fails at once).
                    let _ = Box::pin(tokio::time::timeout(timeout, sink.close())).await;
                    return;
                }
            },
            text = outbound.recv() => match text {
                Some(text) => {
                    let sent = send_queued(&shared, &handle, &mut sink, text, &mut outbound, timeout);
                    if !Box::pin(sent).await {
                        return;
                    }
                }
                None => return,
            },
        }
    }
}

type WsSink<S> = futures_util::stream::SplitSink<WebSocketStream<S>, WsMessage>;

/// Frames written per flush when more are already queued: one system call carries many
/// deliveries (measured: +56 % fan-out throughput for small messages, BENCHMARKS.md).
const MAX_FRAMES_PER_FLUSH: usize = 64;

/// Sends `first` and whatever else is already queued (up to [`MAX_FRAMES_PER_FLUSH`]) with one
/// flush, giving up after `timeout`.
async fn send_queued<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Shared,
    handle: &ConnHandle,
    sink: &mut WsSink<S>,
    first: Outbound,
    outbound: &mut mpsc::Receiver<Outbound>,
    timeout: Duration,
) -> bool {
    let fragment = shared.limits.ws_write_buffer;
    let work = async {
        let mut next = Some(first);
        let mut sent = 0;
        while let Some(text) = next.take() {
            let len = text.len();
            handle.sent(len);
            shared.metrics.frames_out.fetch_add(1, Relaxed);
            shared.metrics.bytes_out.fetch_add(len as u64, Relaxed);
            for message in fragments(&text, fragment) {
                sink.feed(message).await?;
            }
            sent += 1;
            if sent < MAX_FRAMES_PER_FLUSH {
                next = outbound.try_recv().ok();
            }
        }
        sink.flush().await
    };
    matches!(tokio::time::timeout(timeout, work).await, Ok(Ok(())))
}

/// Sends one websocket message, giving up after `timeout`.
async fn timed_send<S: AsyncRead + AsyncWrite + Unpin>(
    sink: &mut WsSink<S>,
    message: WsMessage,
    timeout: Duration,
) -> bool {
    matches!(
        tokio::time::timeout(timeout, sink.send(message)).await,
        Ok(Ok(()))
    )
}

async fn send_text<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Shared,
    handle: &ConnHandle,
    sink: &mut WsSink<S>,
    text: Outbound,
    timeout: Duration,
) -> bool {
    let len = text.len();
    handle.sent(len);
    shared.metrics.frames_out.fetch_add(1, Relaxed);
    shared.metrics.bytes_out.fetch_add(len as u64, Relaxed);
    let work = async {
        for message in fragments(&text, shared.limits.ws_write_buffer) {
            sink.feed(message).await?;
        }
        sink.flush().await
    };
    matches!(tokio::time::timeout(timeout, work).await, Ok(Ok(())))
}

/// The smallest websocket fragment the server sends, whatever `ws_write_buffer` says: smaller
/// fragments would only multiply frames, TLS records and system calls.
pub const MIN_FRAGMENT: usize = 4 * 1024;

/// A frame as websocket messages: itself if it is at most `fragment` bytes (at least
/// [`MIN_FRAGMENT`]), otherwise a text fragment and continuation fragments of at most that many
/// bytes each (RFC 6455 §5.4; every websocket client reassembles them, and the peer's
/// message-size limit applies to the whole).
///
/// Why: tungstenite copies a message into its write buffer whole, and the buffer keeps its
/// capacity, so one 4 MiB sync page would leave 4 MiB behind on a connection that then idles for
/// days. Fragments keep the buffer at about twice `fragment`.
fn fragments(text: &Utf8Bytes, fragment: usize) -> impl Iterator<Item = WsMessage> + use<> {
    use tokio_tungstenite::tungstenite::Bytes;
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

    let fragment = fragment.max(MIN_FRAGMENT);
    let whole = (text.len() <= fragment).then(|| WsMessage::Text(text.clone()));
    let text = text.clone();
    // Nothing left to cut when the message goes whole.
    let mut start = if whole.is_some() { text.len() } else { 0 };
    let pieces = std::iter::from_fn(move || {
        let str = text.as_str();
        if start >= str.len() {
            return None;
        }
        // Cut only between characters, so that every fragment is valid UTF-8 on its own (the
        // protocol's JSON is ASCII apart from names, but some clients check each fragment). A
        // character is at most 4 bytes and `fragment` is more, so `end > start`.
        let mut end = (start + fragment).min(str.len());
        while !str.is_char_boundary(end) {
            end -= 1;
        }
        let opcode = OpCode::Data(if start == 0 {
            Data::Text
        } else {
            Data::Continue
        });
        let piece = Bytes::from(text.clone()).slice(start..end);
        start = end;
        Some(WsMessage::Frame(Frame::message(
            piece,
            opcode,
            end == str.len(),
        )))
    });
    whole.into_iter().chain(pieces)
}

/// A frame as the text every recipient is sent.
pub(crate) fn serialize(frame: &ServerFrame) -> Option<Outbound> {
    frame.to_json().ok().map(outbound)
}

fn reply(shared: &Shared, handle: &ConnHandle, frame: &ServerFrame) {
    if let Some(text) = serialize(frame) {
        handle.deliver(&text, &shared.metrics);
    }
}

fn reply_error(shared: &Shared, handle: &ConnHandle, id: Option<RequestId>, reject: Reject) {
    // Every retryable refusal says when to retry, every other one does not (a hint would invite
    // a loop): `retry_hint_ms` enforces it; a mismatch here is a bug the tests catch.
    debug_assert_eq!(
        reject.code.is_retryable(),
        reject.retry_after.is_some(),
        "retry hint of {:?}",
        reject.code
    );
    shared.metrics.record_error(reject.code.as_str());
    tracing::debug!(code = reject.code.as_str(), message = %reject.message, "request rejected");
    let frame = ServerFrame::Error {
        id,
        code: reject.code,
        retry_after_ms: reject
            .code
            .retry_hint_ms(reject.retry_after, FALLBACK_RETRY_AFTER),
        message: reject.message,
    };
    reply(shared, handle, &frame);
}

/// Handles a frame before authentication: only register, authenticate and ping are allowed.
async fn authenticate(
    shared: &Shared,
    handle: &ConnHandle,
    frame: ClientFrame,
    nonce: &[u8; 32],
    peer: std::net::IpAddr,
    pre: &mut PreAuth,
) -> Result<Option<(Session, ServerFrame)>, Reject> {
    pre.frames += 1;
    let id = frame.request_id();
    let bad_version = |v: u16| {
        Reject::new(
            ErrorCode::UnsupportedVersion,
            format!("this server speaks protocol version {PROTOCOL_VERSION}, not {v}"),
        )
    };
    let verify = |device: &DeviceId, sig| {
        shared
            .limits
            .accepted_names()
            .any(|name| frames::verify_auth(device, name, nonce, sig).is_ok())
    };
    match frame {
        ClientFrame::Ping { id } => {
            reply(shared, handle, &ServerFrame::Pong { id });
            Ok(None)
        }
        ClientFrame::Authenticate {
            version,
            device,
            signature,
            ..
        } => {
            if version != PROTOCOL_VERSION {
                return Err(bad_version(version));
            }
            let record = shared.storage.device(&device).map_err(storage_reject)?;
            let Some(record) = record else {
                if let Some(owner) = shared.storage.unlinked(&device).map_err(storage_reject)? {
                    if !verify(&device, &signature) {
                        return Err(Reject::new(
                            ErrorCode::AuthFailed,
                            "the signature does not answer this connection's challenge",
                        ));
                    }
                    return Err(unlinked_reject(shared, handle, &owner));
                }
                return Err(Reject::new(
                    ErrorCode::UnknownDevice,
                    "this device is not registered; send register first",
                ));
            };
            if !verify(&device, &signature) {
                return Err(Reject::new(
                    ErrorCode::AuthFailed,
                    "the signature does not answer this connection's challenge",
                ));
            }
            let reply = ServerFrame::Authenticated {
                id,
                user: record.user,
                device,
                display_name: record.display_name,
            };
            Ok(Some((Session { device }, reply)))
        }
        ClientFrame::Register {
            version,
            user,
            display_name,
            keys,
            registration_token,
            device_list,
            signature,
            ..
        } => {
            if version != PROTOCOL_VERSION {
                return Err(bad_version(version));
            }
            // A device registering now speaks version 2, whose payloads are sealed with X-Wing
            // (PROTOCOL.md §4.1): without its X-Wing key nothing could be sealed to it that way.
            // (A device registered under version 1 adds it by publishing a list, §10.1.)
            if !keys.has_pq_key() {
                return Err(Reject::new(
                    ErrorCode::UnsupportedVersion,
                    format!(
                        "protocol version {PROTOCOL_VERSION} registers a device with an X-Wing \
                         key (keys.pq_key and pq_sig); these keys have none"
                    ),
                ));
            }
            let token_ok = match &shared.limits.registration_token {
                None => true,
                Some(required) => {
                    let offered = registration_token.as_deref().unwrap_or("");
                    constant_time_eq(offered.as_bytes(), required.as_bytes())
                }
            };
            // A device linked to an existing user needs no token (the user's list vouches for
            // it); whether the user exists is read below, under the registration lock.
            if !token_ok && device_list.is_none() {
                return Err(registration_closed());
            }
            if keys.verify().is_err() || !verify(&keys.device, &signature) {
                return Err(Reject::new(
                    ErrorCode::AuthFailed,
                    "the keys or the challenge signature do not verify",
                ));
            }
            if let Some(owner) = shared
                .storage
                .unlinked(&keys.device)
                .map_err(storage_reject)?
            {
                return Err(unlinked_reject(shared, handle, &owner));
            }
            // The same name rules as a member entry in a group log, so a registered name can
            // always be used in one.
            let entry = MemberEntry {
                user,
                display_name: display_name.clone(),
                devices: vec![keys.clone()],
                device_list: None,
            };
            if let Err(e) = entry.validate() {
                return Err(Reject::new(ErrorCode::BadFrame, e.to_string()));
            }
            let _registering = shared.registering.lock().await;
            let stored = shared
                .storage
                .device(&keys.device)
                .map_err(storage_reject)?;
            let display_name = match stored {
                // Registering again with identical keys (a retry after a lost reply) is fine —
                // once a flush has succeeded, since the record may have been applied by a write
                // whose flush failed.
                Some(existing) if existing.user == user && existing.keys == keys => {
                    commit(shared, Vec::new()).await?;
                    existing.display_name
                }
                Some(_) => {
                    return Err(Reject::new(
                        ErrorCode::AlreadyRegistered,
                        "this device is already registered; authenticate instead",
                    ));
                }
                None => {
                    if let Err(wait) = shared
                        .registrations
                        .check(&crate::address::AddressKey::of(peer))
                    {
                        return Err(Reject::new(
                            ErrorCode::RateLimited,
                            "too many registrations from this address; try later",
                        )
                        .retry(wait));
                    }
                    let record = DeviceRecord {
                        user,
                        keys: keys.clone(),
                        display_name: display_name.clone(),
                        registered_at: now(),
                    };
                    let writes = match &device_list {
                        None => {
                            let taken = !shared
                                .storage
                                .devices_of_user(&user)
                                .map_err(storage_reject)?
                                .is_empty()
                                || shared
                                    .storage
                                    .device_list(&user)
                                    .map_err(storage_reject)?
                                    .is_some();
                            if taken {
                                return Err(Reject::new(
                                    ErrorCode::AlreadyRegistered,
                                    "this user id is taken; a device of an existing user \
                                     registers with the user's device list",
                                ));
                            }
                            vec![Write::Device(record)]
                        }
                        Some(signed) => registration_list(shared, record, signed, token_ok)?,
                    };
                    commit(shared, writes).await?;
                    display_name
                }
            };
            let reply = ServerFrame::Authenticated {
                id,
                user,
                device: keys.device,
                display_name,
            };
            Ok(Some((
                Session {
                    device: keys.device,
                },
                reply,
            )))
        }
        ClientFrame::LinkOpen { id, channel } => {
            if pre.link_mode {
                return Err(Reject::new(
                    ErrorCode::LinkBusy,
                    "this connection has a link channel open already",
                ));
            }
            shared
                .links
                .open(
                    channel,
                    handle,
                    peer,
                    shared.limits.max_link_channels_per_ip,
                    shared.limits.link_timeout,
                    shared.metrics.clone(),
                )
                .map_err(link_reject)?;
            pre.link_mode = true;
            // A configured timeout too large to add is no deadline to speak of: the far future.
            let now = tokio::time::Instant::now();
            pre.new_deadline = Some(
                now.checked_add(shared.limits.link_timeout)
                    .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365 * 30)),
            );
            reply(shared, handle, &ServerFrame::Ok { id });
            Ok(None)
        }
        ClientFrame::LinkSend { id, channel, data } if pre.link_mode => {
            link_send(shared, handle, id, channel, data)?;
            Ok(None)
        }
        _ if pre.link_mode => Err(Reject::new(
            ErrorCode::NotAuthenticated,
            "a connection in link mode may send only link_send, ping, register and authenticate",
        )),
        _ => Err(Reject::new(
            ErrorCode::NotAuthenticated,
            "authenticate or register first",
        )),
    }
}

fn registration_closed() -> Reject {
    Reject::new(
        ErrorCode::RegistrationClosed,
        "this server needs a valid registration token to register",
    )
}

fn list_refused(why: impl Into<String>) -> Reject {
    Reject::new(ErrorCode::DeviceListRefused, why)
}

/// Checks a list against PROTOCOL.md §3.6 (`device_list_refused` with the reason).
fn verified_list(signed: &SignedDeviceList) -> Result<DeviceList, Reject> {
    signed
        .verify()
        .map_err(|e| list_refused(format!("the device list is invalid: {e} ({})", e.code())))
}

/// The user's current list on record, verified, with its signed form.
fn current_list(
    shared: &Shared,
    user: &confide_protocol::UserId,
) -> Result<Option<(SignedDeviceList, DeviceList)>, Reject> {
    let Some(signed) = shared.storage.device_list(user).map_err(storage_reject)? else {
        return Ok(None);
    };
    // It verified when it was stored; a list that no longer does is a damaged record.
    let list = signed.verify().map_err(|e| {
        storage_reject(format!(
            "the device list on record does not verify: {}",
            e.code()
        ))
    })?;
    Ok(Some((signed, list)))
}

/// The writes of a new device registering with a device list (PROTOCOL.md §10.1 *Device
/// lists*), under the registration lock: its record, and for a new user the list.
fn registration_list(
    shared: &Shared,
    record: DeviceRecord,
    signed: &SignedDeviceList,
    token_ok: bool,
) -> Result<Vec<Write>, Reject> {
    let list = verified_list(signed)?;
    let user = record.user;
    if list.user != user {
        return Err(list_refused("the device list names another user"));
    }
    if !list.devices.iter().any(|d| d.keys == record.keys) {
        return Err(list_refused(
            "the device list does not list this device with exactly these keys",
        ));
    }
    match current_list(shared, &user)? {
        None => {
            if !shared
                .storage
                .devices_of_user(&user)
                .map_err(storage_reject)?
                .is_empty()
            {
                return Err(list_refused(
                    "this user has devices but no device list on record: one of them publishes \
                     a first list (publish_devices) before another device can register with one",
                ));
            }
            if !token_ok {
                return Err(registration_closed());
            }
            if list.version != 1 || list.by != record.keys.device {
                return Err(list_refused(
                    "a new user's list is version 1, made by the registering device",
                ));
            }
            identity_not_taken(shared, &list.identity, &user)?;
            Ok(vec![
                Write::Device(record),
                Write::DeviceList {
                    user,
                    identity: list.identity,
                    list: signed.clone(),
                },
            ])
        }
        Some((_, current)) => {
            if list.identity != current.identity {
                return Err(list_refused(
                    "the list carries another identity key than the one on record for this user",
                ));
            }
            if !current.devices.iter().any(|d| d.keys == record.keys) {
                return Err(list_refused(format!(
                    "the user's current device list (version {}) does not list this device with \
                     these keys: the linking device publishes the list that adds it first",
                    current.version
                )));
            }
            Ok(vec![Write::Device(record)])
        }
    }
}

/// An identity key belongs to one user (PROTOCOL.md §3.6): refused when it is on record for
/// another.
fn identity_not_taken(
    shared: &Shared,
    identity: &confide_protocol::device_list::IdentityKey,
    user: &confide_protocol::UserId,
) -> Result<(), Reject> {
    match shared
        .storage
        .identity_user(identity)
        .map_err(storage_reject)?
    {
        Some(other) if other != *user => Err(list_refused(
            "the list's identity key is on record for another user",
        )),
        _ => Ok(()),
    }
}

/// The version of a list the server stored (verified before it was stored); 0 if it no longer
/// parses, which only a damaged database gives.
fn list_version(list: &SignedDeviceList) -> u64 {
    serde_json::from_slice::<confide_protocol::device_list::DeviceList>(&list.list)
        .map_or(0, |l| l.version)
}

/// Sends an unlinked device its user's current list (PROTOCOL.md §3.8), and returns the
/// refusal that follows it.
fn unlinked_reject(
    shared: &Shared,
    handle: &ConnHandle,
    user: &confide_protocol::UserId,
) -> Reject {
    // The newest lists, oldest first, so that a device that missed some can follow the chain
    // to the one without it (PROTOCOL.md §3.8): it acts only on a verified successor.
    let newest = match shared.storage.device_list(user) {
        Ok(Some(list)) => list_version(&list),
        Ok(None) => 0,
        Err(e) => return storage_reject(e),
    };
    let after = newest.saturating_sub(frames::MAX_DEVICE_LISTS_PER_REPLY as u64);
    match shared
        .storage
        .device_list_chain(user, after, frames::MAX_DEVICE_LISTS_PER_REPLY)
    {
        Ok(lists) => {
            for list in lists {
                reply(shared, handle, &ServerFrame::DeviceList { list });
            }
        }
        Err(e) => return storage_reject(e),
    }
    Reject::new(
        ErrorCode::DeviceUnlinked,
        "this device was dropped from its user's device list (unlinked)",
    )
}

fn link_reject(refusal: LinkRefusal) -> Reject {
    match refusal {
        LinkRefusal::Busy => Reject::new(
            ErrorCode::LinkBusy,
            "a link channel with this id is open already; make a new link code",
        ),
        LinkRefusal::TooMany => Reject::new(
            ErrorCode::RateLimited,
            "this address has as many link channels open as allowed",
        )
        .retry(LINK_CHANNELS_RETRY_AFTER),
        LinkRefusal::Unknown => Reject::new(
            ErrorCode::LinkUnknown,
            "no open link channel with this id that this connection may use",
        ),
        LinkRefusal::Exhausted => Reject::new(
            ErrorCode::FrameTooLarge,
            format!(
                "a link channel relays at most {} bytes in all; start linking again",
                crate::config::MAX_LINK_BYTES_PER_CHANNEL
            ),
        ),
    }
}

/// Relays `data` to the other party of `channel` (PROTOCOL.md §9.4 `link_send`).
fn link_send(
    shared: &Shared,
    handle: &ConnHandle,
    id: RequestId,
    channel: ChannelId,
    data: Vec<u8>,
) -> Result<(), Reject> {
    let (peer, from_opener) = shared
        .links
        .peer(&channel, handle.id, data.len())
        .map_err(link_reject)?;
    if from_opener && data.len() > crate::config::MAX_LINK_DATA_FROM_OPENER {
        return Err(Reject::new(
            ErrorCode::FrameTooLarge,
            format!(
                "the device that opened a link channel may send at most {} bytes at once",
                crate::config::MAX_LINK_DATA_FROM_OPENER
            ),
        ));
    }
    match peer {
        crate::link::Party::Local(peer) => {
            if let Some(frame) = serialize(&ServerFrame::LinkData {
                channel,
                data: Some(data),
            }) {
                peer.deliver(&frame, &shared.metrics);
            }
        }
        crate::link::Party::Remote(node) => {
            if let Some(cluster) = &shared.cluster {
                cluster.hint(crate::cluster::Hint::LinkData {
                    node,
                    channel,
                    data,
                });
            }
        }
    }
    reply(shared, handle, &ServerFrame::Ok { id });
    Ok(())
}

/// `publish_devices` (PROTOCOL.md §10.1 *Device lists*).
async fn publish_devices(
    shared: &Shared,
    handle: &ConnHandle,
    s: Session,
    id: RequestId,
    signed: SignedDeviceList,
) -> Result<(), Reject> {
    let list = verified_list(&signed)?;
    // One list change (or registration) at a time, so two successors of the same list cannot
    // both be accepted.
    let registering = shared.registering.lock().await;
    let Some(record) = shared.storage.device(&s.device).map_err(storage_reject)? else {
        return Err(list_refused("this device is no longer registered"));
    };
    let user = record.user;
    if list.user != user {
        return Err(list_refused(
            "the list names another user than this device's",
        ));
    }
    if list.by != s.device {
        return Err(list_refused(
            "the list was made by another device (by) than the one publishing it",
        ));
    }
    let current = current_list(shared, &user)?;
    if current
        .as_ref()
        .is_some_and(|(current_signed, _)| signed == *current_signed)
    {
        // A retry after a lost reply: the list is on record already (§9.8).
        drop(registering);
        reply(shared, handle, &ServerFrame::Ok { id });
        return Ok(());
    }
    let upgraded = own_keys_upgrade(&record, &list)?;
    let mut registered = shared
        .storage
        .devices_of_user(&user)
        .map_err(storage_reject)?;
    // From here on the publishing device's record is checked with its X-Wing key, if the list
    // adds it: the list and the record change together.
    if let Some(new) = &upgraded {
        for r in registered.iter_mut().filter(|r| r.keys.device == s.device) {
            *r = new.clone();
        }
    }
    let mut before: Vec<confide_protocol::DeviceId> =
        registered.iter().map(|r| r.keys.device).collect();
    match current {
        Some((current_signed, current)) => {
            if list.identity != current.identity {
                return Err(list_refused(
                    "the list carries another identity key than the one on record for this user",
                ));
            }
            if list.version <= current.version {
                return Err(list_refused(format!(
                    "stale list: the server holds version {} of this user's list",
                    current.version
                )));
            }
            if !list.succeeds(&current, &current_signed.hash()) {
                return Err(list_refused(format!(
                    "not the successor of the current list (version {}): version + 1, prev = \
                     its hash, made by a device it lists",
                    current.version
                )));
            }
            before.extend(current.devices.iter().map(|d| d.keys.device));
        }
        None => {
            if list.version != 1 {
                return Err(list_refused(
                    "this user has no device list on record: the first one is version 1",
                ));
            }
            identity_not_taken(shared, &list.identity, &user)?;
            if !list
                .devices
                .iter()
                .all(|d| registered.iter().any(|r| r.keys == d.keys))
            {
                return Err(list_refused(
                    "a user's first list may list only devices registered to the user, with \
                     their keys",
                ));
            }
        }
    }
    if let Err(wait) = shared.device_lists.check(&user) {
        return Err(Reject::new(
            ErrorCode::RateLimited,
            format!(
                "at most {} device lists per user in 24 hours",
                shared.limits.max_device_lists_per_day
            ),
        )
        .retry(wait));
    }
    before.sort_unstable();
    before.dedup();
    let dropped: Vec<confide_protocol::DeviceId> =
        before.into_iter().filter(|d| !list.lists(d)).collect();
    let mut writes = vec![Write::DeviceList {
        user,
        identity: list.identity,
        list: signed.clone(),
    }];
    writes.extend(dropped.iter().map(|device| Write::Unlink {
        user,
        device: *device,
    }));
    // In the same batch as the list: `lookup_*` and the member-entry checks never see the one
    // without the other.
    writes.extend(upgraded.map(Write::Device));
    if let Err(e) = shared.writer.commit(writes).await {
        if is_conflict(&e) {
            // Another node stored a different successor at the same moment.
            return Err(list_refused(
                "another list of this user was published at the same moment; fetch the current \
                 list and retry",
            ));
        }
        return Err(commit_reject(&e));
    }
    shared.device_lists.record(&user);
    drop(registering);
    reply(shared, handle, &ServerFrame::Ok { id });
    for device in &dropped {
        shared.hub.unlink(device);
    }
    if let Some(cluster) = &shared.cluster {
        for device in &dropped {
            cluster.hint(crate::cluster::Hint::Unlinked { device: *device });
        }
        for listed in &list.devices {
            cluster.hint(crate::cluster::Hint::DeviceList {
                device: listed.keys.device,
                user,
            });
        }
    }
    if let Some(frame) = serialize(&ServerFrame::DeviceList { list: signed }) {
        let devices: Vec<confide_protocol::DeviceId> =
            list.devices.iter().map(|d| d.keys.device).collect();
        shared
            .hub
            .deliver(devices.iter(), &frame, Some(handle.id), &shared.metrics);
    }
    Ok(())
}

/// How `list` lists the device that publishes it, whose record is `record` (PROTOCOL.md §10.1
/// *Device lists*): not at all (it unlinks itself), or with an X-Wing key — and with exactly its
/// registered keys, or, for a device registered under protocol version 1 without one, with
/// those keys plus an X-Wing key. Then the record with the new keys, which the publication
/// stores; `device_list_refused` for any other keys (another X-Wing key, one dropped, another
/// X25519 key or signature). The list verified, so the keys are signed by the device.
fn own_keys_upgrade(
    record: &DeviceRecord,
    list: &DeviceList,
) -> Result<Option<DeviceRecord>, Reject> {
    let Some(own) = list
        .devices
        .iter()
        .find(|d| d.keys.device == record.keys.device)
    else {
        return Ok(None);
    };
    let keys = &own.keys;
    if !keys.has_pq_key() {
        return Err(list_refused(format!(
            "the list lists this device without an X-Wing key: a device of protocol version \
             {PROTOCOL_VERSION} lists itself with it"
        )));
    }
    if *keys == record.keys {
        return Ok(None);
    }
    let adds_pq_key = !record.keys.has_pq_key()
        && keys.sealing_key == record.keys.sealing_key
        && keys.sealing_sig == record.keys.sealing_sig;
    if !adds_pq_key {
        return Err(list_refused(
            "the list lists this device with other keys than it registered: a list may only \
             add the X-Wing key of a device registered without one",
        ));
    }
    Ok(Some(DeviceRecord {
        keys: keys.clone(),
        ..record.clone()
    }))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Handles one request from an authenticated connection.
async fn handle_request(
    shared: &Arc<Shared>,
    handle: &ConnHandle,
    s: Session,
    frame: ClientFrame,
) -> Result<(), Reject> {
    let rate_limited = |frame: &ClientFrame| {
        !matches!(
            frame,
            ClientFrame::Ping { .. } | ClientFrame::AckInbox { .. }
        )
    };
    if rate_limited(&frame)
        && let Err(wait) = shared.rate.check(&s.device)
    {
        return Err(
            Reject::new(ErrorCode::RateLimited, "too many requests; slow down").retry(wait),
        );
    }
    match frame {
        ClientFrame::Ping { id } => {
            reply(shared, handle, &ServerFrame::Pong { id });
            Ok(())
        }
        ClientFrame::Register { .. } | ClientFrame::Authenticate { .. } => Err(Reject::new(
            ErrorCode::AlreadyAuthenticated,
            "this connection is already authenticated",
        )),
        ClientFrame::PublishDevices { id, device_list } => {
            publish_devices(shared, handle, s, id, device_list).await
        }
        ClientFrame::DeviceListChain {
            id,
            user,
            after_version,
        } => {
            let lists = shared
                .storage
                .device_list_chain(&user, after_version, frames::MAX_DEVICE_LISTS_PER_REPLY)
                .map_err(storage_reject)?;
            reply(shared, handle, &ServerFrame::DeviceListChain { id, lists });
            Ok(())
        }
        ClientFrame::LinkOpen { .. } => Err(Reject::new(
            ErrorCode::AlreadyAuthenticated,
            "link_open is for the device being linked, before it registers",
        )),
        ClientFrame::LinkJoin { id, channel } => {
            let opener = match (shared.links.join(&channel, handle), &shared.cluster) {
                (Ok(opener), _) => opener,
                // The opener may have reached another node.
                (Err(LinkRefusal::Unknown), Some(cluster)) => {
                    // Recorded before asking: the opener may answer as soon as its node does.
                    shared
                        .links
                        .joined_elsewhere(channel, handle, String::new());
                    let Some(node) = cluster.link_join(&channel).await else {
                        shared.links.forget_elsewhere(&channel);
                        return Err(link_reject(LinkRefusal::Unknown));
                    };
                    shared.links.joined_elsewhere(channel, handle, node);
                    reply(shared, handle, &ServerFrame::Ok { id });
                    return Ok(());
                }
                (Err(refusal), _) => return Err(link_reject(refusal)),
            };
            reply(shared, handle, &ServerFrame::Ok { id });
            if let Some(frame) = serialize(&ServerFrame::LinkData {
                channel,
                data: None,
            }) {
                opener.deliver(&frame, &shared.metrics);
            }
            Ok(())
        }
        ClientFrame::LinkSend { id, channel, data } => link_send(shared, handle, id, channel, data),
        ClientFrame::CreateGroup { id, genesis } => {
            create_group(shared, handle, s, id, genesis).await
        }
        ClientFrame::AppendOp { id, group, op } => {
            append_op(shared, handle, s, id, group, op).await
        }
        ClientFrame::Post { id, envelope } => post(shared, handle, s, id, envelope).await,
        ClientFrame::SendSealed { id, items } => send_sealed(shared, handle, s, id, items).await,
        ClientFrame::AckInbox { id, mut inbox_ids } => {
            // Not a request of the request rate (one acknowledges a whole backlog page), but
            // limited by its ids: each costs a lookup, and its removal a write.
            let cost = u32::try_from(inbox_ids.len()).unwrap_or(u32::MAX);
            if let Err(wait) = shared.inbox_acks.check_n(&s.device, cost) {
                return Err(Reject::new(
                    ErrorCode::RateLimited,
                    "too many inbox ids acknowledged; slow down",
                )
                .retry(wait));
            }
            // Each id once, and only items that are in this device's inbox: anything else
            // would only give the shared writer work (acknowledging is idempotent, so an id
            // already gone is simply done).
            inbox_ids.sort_unstable();
            inbox_ids.dedup();
            let mut writes = Vec::with_capacity(inbox_ids.len());
            for inbox_id in inbox_ids {
                if shared
                    .storage
                    .inbox_has(&s.device, inbox_id)
                    .map_err(storage_reject)?
                {
                    writes.push(Write::AckInbox {
                        device: s.device,
                        inbox_id,
                    });
                }
            }
            if !writes.is_empty() {
                commit(shared, writes).await?;
            }
            reply(shared, handle, &ServerFrame::Ok { id });
            let after = handle.backlog_after();
            if after > 0 {
                deliver_inbox_backlog(shared, handle, &s.device, after);
            }
            Ok(())
        }
        ClientFrame::Sync {
            id,
            group,
            after_op_seq,
            after_seq,
            limit,
            invite,
        } => {
            let request = SyncRequest {
                group,
                after_op_seq,
                after_seq,
                limit,
                invite,
            };
            sync(shared, handle, s, id, request).await
        }
        ClientFrame::ListGroups { id } => {
            let mut groups = Vec::new();
            let mine = shared.groups.of_device(&s.device);
            // Other nodes may have stored ops and messages this one has not heard of: where
            // every group stands, in one read.
            let heads: std::collections::HashMap<GroupId, crate::storage::GroupHead> =
                match shared.cluster {
                    Some(_) => shared
                        .storage
                        .heads(&mine)
                        .map_err(storage_reject)?
                        .into_iter()
                        .map(|head| (head.group, head))
                        .collect(),
                    None => Default::default(),
                };
            for group in mine {
                if let Some(entry) = shared.groups.get(&group) {
                    let mut entry = entry.lock().await;
                    let last_seq = match heads.get(&group) {
                        Some(head) => {
                            if head.op_seq > entry.stored_head {
                                crate::cluster::refresh(shared, &mut entry)
                                    .map_err(storage_reject)?;
                            }
                            head.last_seq
                        }
                        None => Seq(entry.next_seq - 1),
                    };
                    groups.push(GroupSummary {
                        group,
                        op_head_seq: entry.state.seq(),
                        last_seq,
                    });
                }
            }
            reply(shared, handle, &ServerFrame::Groups { id, groups });
            Ok(())
        }
        ClientFrame::LookupDevices { id, devices } => {
            let mut found = Vec::new();
            for device in devices {
                if let Some(r) = shared.storage.device(&device).map_err(storage_reject)? {
                    found.push(DeviceInfo {
                        user: r.user,
                        keys: r.keys,
                        display_name: r.display_name,
                    });
                }
            }
            reply(
                shared,
                handle,
                &ServerFrame::Devices {
                    id,
                    devices: found,
                    device_lists: Vec::new(),
                },
            );
            Ok(())
        }
        ClientFrame::LookupUsers { id, users } => {
            let mut found = Vec::new();
            let mut device_lists = Vec::new();
            for user in users {
                if let Some(list) = shared.storage.device_list(&user).map_err(storage_reject)? {
                    device_lists.push(list);
                }
                for r in shared
                    .storage
                    .devices_of_user(&user)
                    .map_err(storage_reject)?
                {
                    found.push(DeviceInfo {
                        user: r.user,
                        keys: r.keys,
                        display_name: r.display_name,
                    });
                }
            }
            reply(
                shared,
                handle,
                &ServerFrame::Devices {
                    id,
                    devices: found,
                    device_lists,
                },
            );
            Ok(())
        }
    }
}

/// The group's entry: from memory, or with a cluster from storage (another node may have
/// created it since this one loaded).
fn group_entry(
    shared: &Shared,
    group: &GroupId,
) -> Result<Arc<tokio::sync::Mutex<GroupEntry>>, Reject> {
    let entry = match shared.cluster {
        Some(_) => shared
            .groups
            .get_or_load(shared.storage.as_ref(), group)
            .map_err(storage_reject)?,
        None => shared.groups.get(group),
    };
    entry.ok_or_else(|| Reject::new(ErrorCode::NoSuchGroup, "no such group"))
}

/// Whether a commit failed because another node sharing the database stored first.
fn is_conflict(e: &CommitError) -> bool {
    matches!(e, CommitError::Storage(e) if matches!(e.as_ref(), StorageError::Conflict(_)))
}

async fn commit(shared: &Shared, writes: Vec<Write>) -> Result<(), Reject> {
    shared
        .writer
        .commit(writes)
        .await
        .map_err(|e| commit_reject(&e))
}

/// Like [`commit`], but keeps `guard` until the writer has an outcome for the writes (it runs
/// on the writer thread then), even if this request's task is cancelled meanwhile.
async fn commit_holding<G: Send + 'static>(
    shared: &Shared,
    writes: Vec<Write>,
    guard: G,
) -> Result<(), Reject> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let done = Box::new(move |result: CommitResult| {
        drop(guard);
        let _ = tx.send(result);
    });
    shared.writer.submit(writes, done).await;
    rx.await
        .unwrap_or(Err(CommitError::Stopped))
        .map_err(|e| commit_reject(&e))
}

/// What to tell a client whose writes were not made durable.
fn commit_reject(e: &CommitError) -> Reject {
    match e {
        CommitError::Storage(e) => storage_reject(e),
        CommitError::Stopped => Reject::shutting_down(e.to_string()),
    }
}

async fn create_group(
    shared: &Shared,
    handle: &ConnHandle,
    s: Session,
    id: RequestId,
    genesis: SignedOp,
) -> Result<(), Reject> {
    let entry = new_group(&genesis).map_err(|e| log_reject(&e))?;
    let op = genesis.parse_unverified().map_err(|e| log_reject(&e))?;
    if op.author != s.device {
        return Err(Reject::new(
            ErrorCode::InvalidOp,
            "a genesis op must be signed by the device that submits it",
        ));
    }
    let group = entry.state.group();
    let exists = match shared.cluster {
        Some(_) => shared
            .groups
            .get_or_load(shared.storage.as_ref(), &group)
            .map_err(storage_reject)?,
        None => shared.groups.get(&group),
    };
    if exists.is_some() {
        // A retry after a lost reply gets the same answer; anyone else's genesis is refused.
        let stored = shared.storage.ops(&group, 0, 1).map_err(storage_reject)?;
        if stored.first() == Some(&genesis) {
            reply(shared, handle, &ServerFrame::GroupCreated { id, group });
            return Ok(());
        }
        return Err(Reject::new(
            ErrorCode::GroupExists,
            "a group with this id exists; choose another random id",
        ));
    }
    op.check_clock(now()).map_err(|e| log_reject(&e))?;
    // Held until the genesis op is stored: a list checked here cannot be replaced by a
    // publish before the op that pins it is written (lists change under the same lock).
    let _lists = shared.registering.lock().await;
    check_member_entries(shared, &op.body)?;
    if shared.groups.created_by(&s.device) >= shared.limits.max_groups_created_per_device {
        return Err(Reject::new(
            ErrorCode::LimitReached,
            "this device has created the maximum number of groups this server allows \
             (max_groups_created_per_device); retrying will not help",
        ));
    }
    // Reserve the id so that two concurrent creations cannot both write a genesis op.
    let Some(_reservation) = shared.groups.reserve(group) else {
        return Err(Reject::new(
            ErrorCode::GroupExists,
            "a group with this id is being created; choose another random id",
        ));
    };
    let written = shared
        .writer
        .commit(vec![Write::Op {
            group,
            seq: 0,
            op: genesis.clone(),
        }])
        .await;
    if let Err(e) = written {
        if !is_conflict(&e) {
            return Err(commit_reject(&e));
        }
        // Another node stored a genesis op for this id first: a retry of this very creation
        // through another node gets the same answer, anyone else's is refused.
        let stored = shared.storage.ops(&group, 0, 1).map_err(storage_reject)?;
        if stored.first() != Some(&genesis) {
            return Err(Reject::new(
                ErrorCode::GroupExists,
                "a group with this id exists; choose another random id",
            ));
        }
        shared
            .groups
            .get_or_load(shared.storage.as_ref(), &group)
            .map_err(storage_reject)?;
        reply(shared, handle, &ServerFrame::GroupCreated { id, group });
        return Ok(());
    }
    shared.metrics.ops_stored.fetch_add(1, Relaxed);
    shared.groups.insert(entry);
    shared.groups.note_created(s.device);
    if let Some(cluster) = &shared.cluster {
        cluster.hint(crate::cluster::Hint::Op { group, seq: 0 });
    }
    reply(shared, handle, &ServerFrame::GroupCreated { id, group });
    Ok(())
}

async fn append_op(
    shared: &Shared,
    handle: &ConnHandle,
    s: Session,
    id: RequestId,
    group: GroupId,
    signed: SignedOp,
) -> Result<(), Reject> {
    let entry = group_entry(shared, &group)?;
    let mut entry = entry.lock().await;
    // Checked against the newest stored log: another node may have appended ops.
    crate::cluster::refresh(shared, &mut entry).map_err(storage_reject)?;
    let op = signed.verify().map_err(|e| log_reject(&e))?;
    if op.group != group {
        return Err(Reject::new(
            ErrorCode::InvalidOp,
            "the op names another group than the request",
        ));
    }
    if op.author != s.device {
        return Err(Reject::new(
            ErrorCode::InvalidOp,
            "an op must be submitted by the device that signed it",
        ));
    }
    // A retry of an op that is already in the log: answer as the first time.
    if op.seq <= entry.state.seq() {
        let stored = shared
            .storage
            .ops(&group, op.seq, 1)
            .map_err(storage_reject)?;
        if stored.first() == Some(&signed) {
            reply(
                shared,
                handle,
                &ServerFrame::OpAppended {
                    id,
                    group,
                    seq: op.seq,
                },
            );
            return Ok(());
        }
    }
    op.check_clock(now()).map_err(|e| log_reject(&e))?;
    op.check_current_form().map_err(|e| log_reject(&e))?;
    // The server must be able to enforce a schedule it accepts.
    if let OpBody::SetOpenHours {
        schedule: Some(hours),
    } = &op.body
        && let Err(e) = hours.is_open_at(now())
    {
        return Err(Reject::new(
            ErrorCode::InvalidOp,
            format!("{e}: use an IANA time zone name such as Europe/Berlin"),
        ));
    }
    // An op that pins a device list holds the list lock until it is stored, so that a publish
    // cannot replace the list between the check and the write (it takes the same lock).
    let _lists = match carries_list(&op.body) {
        true => Some(shared.registering.lock().await),
        false => None,
    };
    check_member_entries(shared, &op.body)?;
    // Each `update_devices` makes every member rekey: a few an hour per member and group.
    let update_key = match &op.body {
        OpBody::UpdateDevices { .. } => entry
            .state
            .member_of_device(&s.device)
            .map(|(user, _)| (group, *user)),
        _ => None,
    };
    if let Some(key) = &update_key
        && let Err(wait) = shared.device_updates.check(key)
    {
        return Err(Reject::new(
            ErrorCode::RateLimited,
            format!(
                "at most {} update_devices per member and group in an hour",
                shared.limits.max_device_updates_per_hour
            ),
        )
        .retry(wait));
    }
    let mut next = entry.state.clone();
    let applied = next.apply(&signed).map_err(|e| log_reject(&e))?;
    // The log bounds a `rekey` by the times ops claim, which a member picks within the clock
    // skew; the server also bounds it by its own clock (PROTOCOL.md §10.1).
    if matches!(op.body, OpBody::Rekey {})
        && entry.epoch_began.elapsed() < shared.limits.min_rekey_interval
    {
        return Err(Reject::new(
            ErrorCode::InvalidOp,
            format!(
                "the group's epoch began less than {} ms ago on the server's clock; rekey later (rekey_too_soon)",
                shared.limits.min_rekey_interval.as_millis()
            ),
        ));
    }
    let mut writes = vec![Write::Op {
        group,
        seq: op.seq,
        op: signed.clone(),
    }];
    // Delete for everyone: the ciphertext goes in the same atomic batch as the op that orders it.
    if let OpBody::DeleteMessages { messages } = &op.body {
        writes.extend(
            messages
                .iter()
                .map(|m| Write::DeleteMessage { group, message: *m }),
        );
    }
    if let Err(e) = shared.writer.commit(writes).await {
        if is_conflict(&e) {
            // Another node appended an op at this seq first: this node now enforces it too.
            crate::cluster::refresh(shared, &mut entry).map_err(storage_reject)?;
            return Err(Reject::new(
                ErrorCode::OpConflict,
                "another op was appended at this seq first; resync, re-check and re-sign",
            ));
        }
        // The outcome may be unknown (a database connection that broke during the commit):
        // enforce what storage holds, which may include this op.
        let before = entry.devices.clone();
        if entry.catch_up_ops(shared.storage.as_ref()).is_ok() {
            let after = entry.devices.clone();
            shared.groups.update_devices(group, &before, &after);
        }
        return Err(commit_reject(&e));
    }
    if let Some(key) = &update_key {
        shared.device_updates.record(key);
    }
    shared.metrics.ops_stored.fetch_add(1, Relaxed);
    let before = entry.devices.clone();
    // Exact for update_devices: grace only when it dropped no device (PROTOCOL.md §8.5).
    entry.replace_state(next, applied.grants_epoch_grace());
    let after = entry.devices.clone();
    shared.groups.update_devices(group, &before, &after);
    reply(
        shared,
        handle,
        &ServerFrame::OpAppended {
            id,
            group,
            seq: op.seq,
        },
    );
    if let Some(cluster) = &shared.cluster {
        cluster.hint(crate::cluster::Hint::Op { group, seq: op.seq });
    }
    if let Some(frame) = serialize(&ServerFrame::Op {
        group,
        op: signed,
        seq: op.seq,
    }) {
        // Removed devices learn of their removal too.
        let removed = before.iter().filter(|d| !after.contains(d));
        shared.hub.deliver(
            after.iter().chain(removed),
            &frame,
            Some(handle.id),
            &shared.metrics,
        );
    }
    Ok(())
}

/// Member entries and `update_devices` name only what the server holds for the user
/// (PROTOCOL.md §10.1 `append_op` step 7, `create_group` step 5): an entry with a device list
/// carries the user's current list on record, byte for byte; an entry without one is allowed
/// only for a user with no list on record, and every device it lists must be registered to
/// that user with exactly those keys; `update_devices` carries the current list. So nobody can
/// list someone else's device (to hijack or block it) in a group.
/// Whether an op carries a member entry or a device list (the ops [`check_member_entries`]
/// checks against the lists on record).
fn carries_list(body: &OpBody) -> bool {
    matches!(
        body,
        OpBody::Genesis { .. }
            | OpBody::Join { .. }
            | OpBody::Add { .. }
            | OpBody::UpdateDevices { .. }
    )
}

fn check_member_entries(shared: &Shared, body: &OpBody) -> Result<(), Reject> {
    let not_current = || {
        Reject::new(
            ErrorCode::InvalidOp,
            "the device list is not the user's current list on record (for update_devices: \
             not one the user published): fetch it with lookup_users",
        )
    };
    let entry = match body {
        OpBody::Genesis { creator, .. } => creator,
        OpBody::Join { member, .. } | OpBody::Add { member, .. } => member,
        OpBody::UpdateDevices { device_list, chain } => {
            // Every list it carries is one the user published (each on record, byte for
            // byte): the log then checks that they succeed one another from the pinned one.
            for signed in chain.iter().chain(std::iter::once(device_list)) {
                let list: DeviceList = serde_json::from_slice(&signed.list).map_err(|_| {
                    Reject::new(ErrorCode::InvalidOp, "the device list does not parse")
                })?;
                let published = shared
                    .storage
                    .device_list_chain(&list.user, list.version.saturating_sub(1), 1)
                    .map_err(storage_reject)?;
                if published.first() != Some(signed) {
                    return Err(not_current());
                }
            }
            return Ok(());
        }
        _ => return Ok(()),
    };
    let current = shared
        .storage
        .device_list(&entry.user)
        .map_err(storage_reject)?;
    match (&entry.device_list, &current) {
        // The list, signed by the identity key, its maker and each device, is the binding.
        (Some(carried), Some(current)) if carried == current => return Ok(()),
        (Some(_), _) => return Err(not_current()),
        (None, Some(_)) => {
            return Err(Reject::new(
                ErrorCode::InvalidOp,
                "this user has a device list: a member entry for them must carry it",
            ));
        }
        (None, None) => {}
    }
    for keys in &entry.devices {
        let record = shared
            .storage
            .device(&keys.device)
            .map_err(storage_reject)?;
        match record {
            Some(r) if r.user == entry.user && r.keys == *keys => {}
            _ => {
                return Err(Reject::new(
                    ErrorCode::InvalidOp,
                    "a member entry lists a device that is not registered to that user with those keys",
                ));
            }
        }
    }
    Ok(())
}

/// Checks what the server enforces on a post, under the group's lock (PROTOCOL.md §10.1
/// `post` steps 5–8, the rules in [`policy`]); the posting user.
fn check_post(
    shared: &Shared,
    entry: &GroupEntry,
    s: Session,
    envelope: &Envelope,
) -> Result<UserId, Reject> {
    let state = &entry.state;
    // Slow mode counts from the user's last accepted post, on this server's monotonic clock
    // (looked up only while slow mode is on: it takes a lock shared with the writer).
    let since = state
        .member_of_device(&s.device)
        .filter(|_| state.slow_mode_seconds() > 0)
        .and_then(|(user, _)| entry.last_post.get(user))
        .map(|at| at.elapsed());
    let user = policy::may_post(state, &s.device, now(), since).map_err(|refusal| {
        let retry_after = refusal.retry_after();
        Reject {
            code: refusal.code(),
            message: refusal.to_string(),
            retry_after,
        }
    })?;
    let current = state.epoch_ref();
    let claimed = envelope.epoch_ref();
    let grace = entry
        .previous_epoch
        .map(|(previous, since)| policy::EpochGrace {
            previous,
            elapsed: since.elapsed(),
        });
    if !policy::accepts_post_epoch(current, claimed, grace, shared.limits.epoch_grace) {
        return Err(Reject::new(
            ErrorCode::StaleEpoch,
            format!(
                "the group is in epoch {} (started by op {}), not {} ({}); sync and send new sender keys",
                current.epoch.0, current.hash, claimed.epoch.0, claimed.hash
            ),
        ));
    }
    Ok(user)
}

/// How often the server itself posts a message again that lost its seq to another node sharing
/// the database (each time with a fresh seq), before the client is told `storage` and retries.
pub const MAX_CONFLICT_RETRIES: u32 = 8;
/// How much longer each of those retries waits than the one before.
pub const CONFLICT_RETRY_BACKOFF: Duration = Duration::from_millis(2);

async fn post(
    shared: &Arc<Shared>,
    handle: &ConnHandle,
    s: Session,
    id: RequestId,
    envelope: Envelope,
) -> Result<(), Reject> {
    post_attempt(shared, handle, s, id, envelope, 0).await
}

/// Posts `envelope` again after its seq went to another node (a plain function returning a
/// boxed future: the retry is started from inside the post it retries).
fn retry_post(
    shared: Arc<Shared>,
    handle: ConnHandle,
    s: Session,
    id: RequestId,
    envelope: Envelope,
    attempt: u32,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(async move {
        // A little later each time, so that this node's posts still in flight (whose seqs
        // came from the same stale value) finish first and `next_seq` can be read again.
        tokio::time::sleep(CONFLICT_RETRY_BACKOFF.saturating_mul(attempt)).await;
        if let Err(reject) = post_attempt(&shared, &handle, s, id, envelope, attempt).await {
            reply_error(&shared, &handle, Some(id), reject);
        }
    })
}

async fn post_attempt(
    shared: &Arc<Shared>,
    handle: &ConnHandle,
    s: Session,
    id: RequestId,
    envelope: Envelope,
    attempt: u32,
) -> Result<(), Reject> {
    if envelope.sender != s.device {
        return Err(Reject::new(
            ErrorCode::BadEnvelope,
            "the envelope's sender is not this device",
        ));
    }
    // Version and length only: the signature is the recipients' to check, as they must anyway
    // (PROTOCOL.md §10.1 `post` step 2 gives the argument). The sender is this authenticated
    // device, so a badly signed envelope can only get its own author's message dropped.
    envelope
        .check_form()
        .map_err(|e| Reject::new(ErrorCode::BadEnvelope, e.to_string()))?;
    let group = envelope.group;
    let message = envelope.message_id();
    let entry = group_entry(shared, &group)?;
    let mut entry = entry.lock().await;
    // A copy still being written (a retry racing the first attempt): answer with its outcome.
    // Checked before storage, and under the group's lock: a post leaves `in_flight` only once
    // it is durable, so one of the two always has it.
    let in_flight = entry.in_flight.clone();
    let joined = in_flight.with(|posts| {
        posts.get_mut(&message).map(|post| {
            if post.waiting.len() >= MAX_WAITING_PER_POST {
                return false;
            }
            post.waiting.push((handle.clone(), id));
            true
        })
    });
    match joined {
        Some(true) => return Ok(()),
        Some(false) => {
            return Err(Reject::new(
                ErrorCode::RateLimited,
                "this message is already being stored; retry shortly",
            )
            .retry(SAME_POST_RETRY_AFTER));
        }
        None => {}
    }
    if let Some(seq) = shared
        .storage
        .message_seq(&group, &message)
        .map_err(storage_reject)?
    {
        // Stored — but if a flush failed after the batch was applied, stored is not yet durable.
        // A (group-committed) flush first makes sure before this is acknowledged.
        let (shared2, handle2) = (shared.clone(), handle.clone());
        let done = Box::new(move |result: CommitResult| match result {
            Ok(()) => {
                let posted = ServerFrame::Posted {
                    id,
                    group,
                    seq,
                    message,
                };
                reply(&shared2, &handle2, &posted);
            }
            Err(e) => reply_error(&shared2, &handle2, Some(id), commit_reject(&e)),
        });
        shared.writer.submit(Vec::new(), done).await;
        return Ok(());
    }
    // Checked against the newest stored log: another node may have appended an op (a removal,
    // a mute, a rekey) that this node has not heard of yet. One read per post, with a cluster.
    crate::cluster::refresh(shared, &mut entry).map_err(storage_reject)?;
    let user = check_post(shared, &entry, s, &envelope)?;
    entry
        .refresh_next_seq(shared.storage.as_ref())
        .map_err(storage_reject)?;
    // Slow mode counts from this post — undone below if it is not stored.
    let mark = entry.last_post.record(user);
    let seq = Seq(entry.next_seq);
    entry.next_seq += 1;
    in_flight.with(|posts| {
        posts.insert(
            message,
            InFlight {
                seq,
                waiting: Vec::new(),
            },
        )
    });
    let received_at = now();
    let live = serialize(&ServerFrame::Message {
        group,
        seq,
        received_at,
        envelope: envelope.clone(),
    });
    let ack = serialize(&ServerFrame::Posted {
        id,
        group,
        seq,
        message,
    });
    let devices = entry.devices.clone();
    let (seq_stale, seq_behind) = (entry.seq_stale.clone(), entry.seq_behind.clone());
    let caught_up = entry.caught_up.clone();
    // Kept only where another node can take the seq: to post it again with a fresh one.
    let retry = shared.cluster.as_ref().map(|_| envelope.clone());
    let stored = StoredMessage {
        seq,
        received_at,
        envelope,
    };
    let pending = PendingPost {
        in_flight: in_flight.clone(),
        group,
        message,
        seq,
    };
    let (shared2, handle2) = (shared.clone(), handle.clone());
    // Runs exactly once, also when the writer stops or dies before it has an outcome (then with
    // `CommitError::Stopped`), so the poster and every waiter always get an answer.
    let done = Box::new(move |result: CommitResult| {
        let waiting = pending.finish();
        match result {
            Ok(()) => {
                shared2.metrics.messages_stored.fetch_add(1, Relaxed);
                if let Some(ack) = ack {
                    handle2.deliver(&ack, &shared2.metrics);
                }
                for (handle, id) in waiting {
                    let posted = pending.posted(id);
                    reply(&shared2, &handle, &posted);
                }
                if let Some(live) = live {
                    shared2
                        .hub
                        .deliver(devices.iter(), &live, Some(handle2.id), &shared2.metrics);
                }
                if let Some(cluster) = &shared2.cluster {
                    // Delivered here: the catch-up goes on after it unless another node's
                    // message before it is still to be read.
                    let _ = caught_up.compare_exchange(
                        seq.0.saturating_sub(1),
                        seq.0,
                        std::sync::atomic::Ordering::AcqRel,
                        std::sync::atomic::Ordering::Acquire,
                    );
                    cluster.hint(crate::cluster::Hint::Message { group, seq: seq.0 });
                }
            }
            Err(e) => {
                // Not stored: slow mode does not hold it against the sender, who retries.
                mark.undo();
                let conflict = is_conflict(&e);
                // Another node may have taken seqs this node handed out (then `next_seq` is
                // behind), or the seq was not taken at all (a copy of the envelope was stored,
                // or the batch failed for another reason: then `next_seq` is ahead of the
                // stored messages, and is read again once nothing of the group is in flight).
                if conflict {
                    seq_behind.store(true, std::sync::atomic::Ordering::Release);
                }
                seq_stale.store(true, std::sync::atomic::Ordering::Release);
                if conflict
                    && attempt < MAX_CONFLICT_RETRIES
                    && let Some(envelope) = retry
                {
                    // Another node took the seq: post it again with a fresh one. (Copies
                    // that waited for this one retry by themselves.)
                    for (handle, id) in waiting {
                        reply_error(&shared2, &handle, Some(id), commit_reject(&e));
                    }
                    let runtime = shared2.runtime.clone();
                    runtime.spawn(retry_post(shared2, handle2, s, id, envelope, attempt + 1));
                    return;
                }
                reply_error(&shared2, &handle2, Some(id), commit_reject(&e));
                for (handle, id) in waiting {
                    reply_error(&shared2, &handle, Some(id), commit_reject(&e));
                }
            }
        }
    });
    shared
        .writer
        .submit(
            vec![Write::Message {
                group,
                message: stored,
            }],
            done,
        )
        .await;
    Ok(())
}

/// Later posts of the same envelope that may wait for one being written; more are refused with
/// `rate_limited` (they can only come from the same device, retrying in a loop).
const MAX_WAITING_PER_POST: usize = 16;

/// A post being written: leaves the group's `in_flight` once the writer has an outcome, and hands
/// over the requests waiting for it.
struct PendingPost {
    in_flight: InFlightPosts,
    group: GroupId,
    message: MessageId,
    seq: Seq,
}

impl PendingPost {
    /// Leaves `in_flight`; the requests that waited for this post.
    fn finish(&self) -> Vec<(ConnHandle, RequestId)> {
        self.in_flight
            .with(|posts| posts.remove(&self.message))
            .map(|post| post.waiting)
            .unwrap_or_default()
    }

    /// The acknowledgement for request `id`.
    fn posted(&self, id: RequestId) -> ServerFrame {
        ServerFrame::Posted {
            id,
            group: self.group,
            seq: self.seq,
            message: self.message,
        }
    }
}

/// May `s` put `item` into its recipient's inbox? Members of a group may seal to each other; a
/// non-member may send a join request to the group's facilitators.
async fn authorize_sealed(shared: &Shared, s: Session, item: &SealedPayload) -> Result<(), Reject> {
    if item.sender != s.device {
        return Err(Reject::new(
            ErrorCode::BadFrame,
            "a sealed payload's sender must be this device",
        ));
    }
    if item.kind == SealKind::OwnDevices {
        return authorize_own_devices(shared, s, item);
    }
    let entry = group_entry(shared, &item.group)?;
    let mut entry = entry.lock().await;
    // Members as the newest stored log has them (another node may have added or removed one).
    crate::cluster::refresh(shared, &mut entry).map_err(storage_reject)?;
    let recipient_member = entry.state.member_of_device(&item.recipient).is_some();
    let sender_member = entry.state.member_of_device(&s.device).is_some();
    let allowed = if item.kind == SealKind::JoinRequest {
        // Only to facilitators, and only while the group has an invite that needs approval
        // (otherwise there is nothing to request, and the inbox would be open to anyone).
        entry.state.takes_join_requests(now())
            && entry
                .state
                .facilitator_devices()
                .iter()
                .any(|k| k.device == item.recipient)
    } else {
        sender_member && recipient_member
    };
    if allowed {
        Ok(())
    } else {
        Err(Reject::new(
            ErrorCode::NotMember,
            "sender and recipient must both be members of the group (join requests go to its facilitators)",
        ))
    }
}

/// An update between one person's own devices (PROTOCOL.md §7.4, §10.1 `send_sealed`): its
/// `group` is the sender's user, its epoch fields the version and hash of that user's current
/// device list, and sender and recipient are two different devices of that list.
fn authorize_own_devices(shared: &Shared, s: Session, item: &SealedPayload) -> Result<(), Reject> {
    let refuse = || {
        Reject::new(
            ErrorCode::NotMember,
            "an own_devices payload goes between two devices of your current device list, naming it",
        )
    };
    let sender = shared
        .storage
        .device(&s.device)
        .map_err(storage_reject)?
        .ok_or_else(refuse)?;
    if item.group.0 != sender.user.0 || item.recipient == s.device {
        return Err(refuse());
    }
    let signed = shared
        .storage
        .device_list(&sender.user)
        .map_err(storage_reject)?
        .ok_or_else(refuse)?;
    // The server verified this list when it was published; here it only reads it.
    let list: confide_protocol::device_list::DeviceList =
        serde_json::from_slice(&signed.list).map_err(|_| refuse())?;
    let on_list = |d: &DeviceId| list.devices.iter().any(|l| l.keys.device == *d);
    if item.epoch.0 != list.version
        || item.epoch_hash.0 != signed.hash().0
        || !on_list(&s.device)
        || !on_list(&item.recipient)
    {
        return Err(refuse());
    }
    Ok(())
}

async fn send_sealed(
    shared: &Shared,
    handle: &ConnHandle,
    s: Session,
    id: RequestId,
    items: Vec<SealedPayload>,
) -> Result<(), Reject> {
    if items.len() > shared.limits.max_sealed_per_frame {
        return Err(Reject::new(
            ErrorCode::FrameTooLarge,
            format!(
                "at most {} sealed payloads per frame",
                shared.limits.max_sealed_per_frame
            ),
        ));
    }
    let mut writes = Vec::with_capacity(items.len());
    let mut batch_counts: std::collections::HashMap<DeviceId, usize> =
        std::collections::HashMap::new();
    let mut share_counts: std::collections::HashMap<(DeviceId, DeviceId), usize> =
        std::collections::HashMap::new();
    let mut deliveries = Vec::with_capacity(items.len());
    let mut tickets = Vec::with_capacity(items.len());
    let received_at = now();
    for payload in items {
        if payload.ciphertext.len() > MAX_SEALED_CIPHERTEXT {
            return Err(Reject::new(
                ErrorCode::MessageTooLarge,
                format!(
                    "a sealed payload may carry at most {MAX_SEALED_CIPHERTEXT} bytes of ciphertext"
                ),
            ));
        }
        authorize_sealed(shared, s, &payload).await?;
        // A device a list dropped is still in the logs that have not had the user's
        // `update_devices` yet: accepted, so that the group keeps working, and discarded.
        if shared
            .storage
            .unlinked(&payload.recipient)
            .map_err(storage_reject)?
            .is_some()
        {
            continue;
        }
        if shared
            .storage
            .device(&payload.recipient)
            .map_err(storage_reject)?
            .is_none()
        {
            return Err(Reject::new(
                ErrorCode::UnknownDevice,
                "the recipient device is not registered",
            ));
        }
        // Count what is stored (once per recipient) plus what this batch adds.
        let queued = match batch_counts.get_mut(&payload.recipient) {
            Some(n) => n,
            None => {
                let stored = shared
                    .storage
                    .inbox_len(&payload.recipient)
                    .map_err(storage_reject)?;
                batch_counts.entry(payload.recipient).or_insert(stored)
            }
        };
        *queued += 1;
        if *queued > shared.limits.max_inbox_items {
            return Err(Reject::new(
                ErrorCode::InboxFull,
                "the recipient's inbox is full; try again later",
            )
            .retry(INBOX_FULL_RETRY_AFTER));
        }
        // And the item's shares of it: this sender's (small for join requests), and for join
        // requests also the allowance all join requests share.
        let join_request = payload.kind == SealKind::JoinRequest;
        for share in crate::storage::inbox_shares(&payload) {
            let in_share = match share_counts.get_mut(&(payload.recipient, share)) {
                Some(n) => n,
                None => {
                    let stored = shared
                        .storage
                        .inbox_len_from(&payload.recipient, &share)
                        .map_err(storage_reject)?;
                    share_counts
                        .entry((payload.recipient, share))
                        .or_insert(stored)
                }
            };
            *in_share += 1;
            let (limit, whose) = if share == crate::storage::JOIN_REQUESTS_SHARE {
                (
                    shared.limits.max_inbox_items_per_sender,
                    "join requests are",
                )
            } else if join_request {
                (
                    shared.limits.max_join_requests_per_sender,
                    "items from you are",
                )
            } else {
                (
                    shared.limits.max_inbox_items_per_sender,
                    "items from you are",
                )
            };
            if *in_share > limit {
                return Err(Reject::new(
                    ErrorCode::InboxFull,
                    format!(
                        "{limit} {whose} already waiting in the recipient's inbox; try again later"
                    ),
                )
                .retry(INBOX_FULL_RETRY_AFTER));
            }
        }
        // In flight from now until the writer has an outcome for the batch: the backlog does
        // not serve it before it is durable.
        let ticket = shared
            .inbox_in_flight
            .allocate(shared.storage.as_ref())
            .map_err(storage_reject)?;
        let inbox_id = ticket.id();
        tickets.push(ticket);
        let device = payload.recipient;
        let item = InboxItem {
            inbox_id,
            received_at,
            payload,
        };
        writes.push(Write::Inbox {
            device,
            item: item.clone(),
        });
        deliveries.push((device, item));
    }
    let count = writes.len() as u64;
    commit_holding(shared, writes, tickets).await?;
    shared.metrics.inbox_stored.fetch_add(count, Relaxed);
    reply(shared, handle, &ServerFrame::Ok { id });
    if let Some(cluster) = &shared.cluster {
        // The recipients' connections on other nodes.
        let mut by_device: std::collections::BTreeMap<DeviceId, Vec<u64>> = Default::default();
        for (device, item) in &deliveries {
            by_device.entry(*device).or_default().push(item.inbox_id);
        }
        for (device, ids) in by_device {
            cluster.hint(crate::cluster::Hint::Inbox { device, ids });
        }
    }
    for (device, item) in deliveries {
        if let Some(frame) = serialize(&ServerFrame::Inbox { items: vec![item] }) {
            shared.hub.deliver([&device], &frame, None, &shared.metrics);
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
/// The parameters of a `sync` request.
struct SyncRequest {
    group: GroupId,
    after_op_seq: Option<u64>,
    after_seq: Seq,
    limit: u32,
    invite: Option<frames::InviteProof>,
}

async fn sync(
    shared: &Shared,
    handle: &ConnHandle,
    s: Session,
    id: RequestId,
    request: SyncRequest,
) -> Result<(), Reject> {
    let SyncRequest {
        group,
        after_op_seq,
        after_seq,
        limit,
        invite,
    } = request;
    let entry = group_entry(shared, &group)?;
    // Members get ops and the messages of the epochs since they joined; a device holding a
    // usable invite gets only the ops, to verify the group before joining; a former member's
    // device only the ops up to and including the one that ended its membership (its proof of
    // removal), never a later op or any message.
    let (head, joined_epoch, durable_below) = {
        let mut entry = entry.lock().await;
        // Ops other nodes appended: served, and enforced from now on.
        crate::cluster::refresh(shared, &mut entry).map_err(storage_reject)?;
        // The storage shows a batch to readers once applied, before it is durable: messages
        // from the lowest seq still in flight on are not served yet (they reach members as
        // deliveries once durable), so nothing a crash could still lose is ever read. Nor is
        // any seq handed out after this point: a post that takes its seq (and is applied)
        // between this lock and the storage read below is in flight too, but not in this view.
        let durable_below = entry
            .in_flight
            .with(|posts| posts.values().map(|p| p.seq).min())
            .unwrap_or(match shared.cluster {
                // Other nodes store messages past this node's `next_seq`; the shared database
                // shows a write only once it is committed, which is durable.
                Some(_) => Seq(u64::MAX),
                None => Seq(entry.next_seq),
            });
        let (head, joined_epoch) = match entry.state.member_of_device(&s.device) {
            Some((_, member)) => (entry.stored_head, Some(member.joined_epoch)),
            None => {
                // The proof is signed by the invite's secret key and bound to this device, so
                // knowing the invite's public id (as every former member does) is not enough.
                let held = invite.and_then(|proof| {
                    confide_protocol::group_log::verify_invite_sync(
                        &proof.id,
                        &group,
                        &s.device,
                        &proof.signature,
                    )
                    .ok()
                    .and(entry.state.invite(&proof.id))
                });
                // A banned person (by this device, or by its user) reads nothing more through an
                // invite they still hold: the invite let them in before the ban, not after it.
                let banned = held.is_some()
                    && (entry.state.is_device_banned(&s.device)
                        || shared
                            .storage
                            .device(&s.device)
                            .map_err(storage_reject)?
                            .is_some_and(|r| entry.state.is_banned(&r.user)));
                if banned {
                    return Err(Reject::new(
                        ErrorCode::Banned,
                        "you are banned from this group: an invite no longer lets you read it",
                    ));
                }
                match (
                    held.map(|i| i.problem(now())),
                    entry.state.departure_of(&s.device),
                ) {
                    (Some(None), _) => (entry.stored_head, None),
                    (Some(Some(problem)), _) => {
                        let code = match problem {
                            InviteProblem::Revoked => ErrorCode::InviteRevoked,
                            InviteProblem::UsedUp => ErrorCode::InviteUsedUp,
                            InviteProblem::Expired => ErrorCode::InviteExpired,
                        };
                        return Err(Reject::new(code, problem.to_string()));
                    }
                    (None, Some(departed)) => (departed, None),
                    (None, None) => {
                        return Err(Reject::new(
                            ErrorCode::NotMember,
                            "this device is not a member of the group (and holds no valid invite to it)",
                        ));
                    }
                }
            }
        };
        (head, joined_epoch, durable_below)
    };
    let limit = policy::sync_page_limit(limit, shared.limits.sync_page_limit);
    let from_op = policy::SyncCursor {
        after_op_seq,
        after_seq,
    }
    .first_op();
    let ops = if from_op <= head {
        // Never past `head`: for a former member it is the op that ended its membership.
        let up_to_head = usize::try_from(head - from_op).map_or(limit, |n| n.saturating_add(1));
        shared
            .storage
            .ops(&group, from_op, limit.min(up_to_head))
            .map_err(storage_reject)?
    } else {
        Vec::new()
    };
    let mut ops = ops;
    truncate_to_budget(&mut ops, shared.limits.page_bytes, |op| op.op.len());
    let next_op_seq = from_op + ops.len() as u64;
    let ops_complete = policy::ops_complete(next_op_seq, head);
    // Messages only once the client has every op, so it can always verify their epochs.
    let mut messages = if ops_complete && joined_epoch.is_some() {
        shared
            .storage
            .messages(&group, after_seq, limit)
            .map_err(storage_reject)?
    } else {
        Vec::new()
    };
    messages.retain(|m| m.seq < durable_below);
    let fetched = messages.len();
    // One budget for the whole page: what the ops used is not left for messages.
    let ops_bytes: usize = ops.iter().map(|op| op.op.len()).sum();
    let budget = shared.limits.page_bytes.saturating_sub(ops_bytes).max(1);
    truncate_to_budget(&mut messages, budget, |m| m.envelope.ciphertext.len());
    let next_seq = policy::sync_next_seq(after_seq, messages.last().map(|m| m.seq));
    let complete = policy::sync_page_complete(ops_complete, fetched, limit, messages.len());
    // Ciphertext from before the member joined is useless to them (they hold no key for it)
    // and is not theirs to collect.
    if let Some(joined) = joined_epoch {
        messages.retain(|m| policy::can_read_epoch(joined, m.envelope.epoch));
    }
    reply(
        shared,
        handle,
        &ServerFrame::SyncPage {
            id,
            group,
            ops,
            messages,
            next_op_seq,
            next_seq,
            complete,
        },
    );
    Ok(())
}

/// Splits `items` into consecutive chunks whose sizes add up to at most `budget` bytes each
/// (a single larger item gets a chunk of its own), so no frame outgrows what clients accept.
fn chunk_by_budget<T>(items: Vec<T>, budget: usize, size: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
    let mut chunks: Vec<Vec<T>> = Vec::new();
    let mut current: Vec<T> = Vec::new();
    let mut total = 0usize;
    for item in items {
        let n = size(&item);
        if !current.is_empty() && total.saturating_add(n) > budget {
            chunks.push(std::mem::take(&mut current));
            total = 0;
        }
        total = total.saturating_add(n);
        current.push(item);
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// Keeps the longest prefix of `items` that fits `budget` (at least one item).
fn truncate_to_budget<T>(items: &mut Vec<T>, budget: usize, size: impl Fn(&T) -> usize) {
    let keep = chunk_by_budget(std::mem::take(items), budget, size)
        .into_iter()
        .next()
        .unwrap_or_default();
    *items = keep;
}

/// Queues the next page of the device's inbox backlog, the items after `after` (0: from the
/// start); the connection must already be registered for live deliveries.
fn deliver_inbox_backlog(shared: &Shared, handle: &ConnHandle, device: &DeviceId, after: u64) {
    // One page of at most `page_bytes` per round: the next page follows the client's
    // acknowledgement, so a large backlog never overflows the connection's queue.
    let mut after = after;
    loop {
        // Only durable items (see `crate::inbox`): the view is taken before the read. Items
        // left out are still being written, and reach this connection live once durable (it
        // is registered for deliveries), so the next page goes on after them.
        let durable = shared.inbox_in_flight.view();
        let mut page = match shared.storage.inbox(device, after, INBOX_PAGE) {
            Ok(items) => items,
            Err(e) => {
                reply_error(shared, handle, None, storage_reject(e));
                return;
            }
        };
        let fetched = page.len();
        let last_fetched = page.last().map_or(after, |i| i.inbox_id);
        durable.retain_durable(&mut page, |i| i.inbox_id);
        let durable_count = page.len();
        truncate_to_budget(
            &mut page,
            shared.limits.page_bytes,
            crate::storage::inbox_item_bytes,
        );
        let cut = page.len() < durable_count;
        let more = cut || fetched == INBOX_PAGE;
        let last = if cut {
            page.last().map_or(after, |i| i.inbox_id)
        } else {
            last_fetched
        };
        if page.is_empty() && more {
            // Everything fetched is still in flight: no page would mean no acknowledgement,
            // and so no next page; read on instead (bounded: the inbox is).
            after = last;
            continue;
        }
        handle.set_backlog_after(if more { last } else { 0 });
        if !page.is_empty() {
            reply(shared, handle, &ServerFrame::Inbox { items: page });
        }
        return;
    }
}

/// HTTP requests for the web app's files ([`crate::http`]) until the connection asks for the
/// websocket upgrade, then the websocket handshake on the (TLS or plain) stream, then
/// [`serve`]. The futures are boxed so that an idle connection's task stays small.
async fn websocket<S>(
    shared: Arc<Shared>,
    stream: S,
    conn_id: u64,
    peer: Peer,
    shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let stream = {
        let mut stopping = shutdown.clone();
        tokio::select! {
            next = Box::pin(crate::http::serve(&shared, stream, peer.auth_deadline)) => match next {
                crate::http::Next::WebSocket(stream) => stream,
                crate::http::Next::Closed => return,
            },
            _ = stopping.changed() => return,
        }
    };
    let handshake = tokio_tungstenite::accept_async_with_config(stream, Some(shared.ws_config()));
    let Ok(Ok(ws)) = tokio::time::timeout_at(peer.auth_deadline, Box::pin(handshake)).await else {
        tracing::debug!("websocket handshake failed or timed out");
        return;
    };
    Box::pin(serve(shared, ws, conn_id, peer, shutdown)).await;
}

/// Runs one connection: TLS (if configured), HTTP requests for the web app if any, the
/// websocket handshake, then [`serve`].
///
/// `gate` holds the connection's place among its address's unauthenticated connections until it
/// authenticates.
pub async fn handle_tcp(
    shared: Arc<Shared>,
    tcp: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    gate: preauth::Gate,
    shutdown: watch::Receiver<bool>,
) {
    let conn_id = shared.hub.next_conn_id();
    let span = tracing::info_span!("conn", id = conn_id, %peer, device = tracing::field::Empty);
    async move {
        let _ = tcp.set_nodelay(true);
        let tcp = preauth::Budgeted::new(tcp, shared.limits.max_preauth_bytes, gate.clone());
        let peer = Peer {
            ip: peer.ip(),
            gate,
            auth_deadline: tokio::time::Instant::now() + shared.limits.auth_timeout,
        };
        match shared.tls.clone() {
            Some(config) => {
                let handshake = crate::tls_stream::accept(config, tcp);
                let Ok(Ok(tls)) =
                    tokio::time::timeout_at(peer.auth_deadline, Box::pin(handshake)).await
                else {
                    tracing::debug!("TLS handshake failed or timed out");
                    return;
                };
                // Boxed: the TLS stream (rustls's connection state) is about a kilobyte, and
                // would otherwise be stored in this task, again in the websocket future and
                // again in the websocket.
                let tls = Box::new(tls);
                Box::pin(websocket(shared, tls, conn_id, peer, shutdown)).await;
            }
            None => Box::pin(websocket(shared, tcp, conn_id, peer, shutdown)).await,
        }
        tracing::debug!("connection closed");
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

    /// The fragments of `text` as (opcode, final, payload) triples.
    fn split(text: &str, fragment: usize) -> Vec<(OpCode, bool, String)> {
        fragments(&Utf8Bytes::from(text.to_string()), fragment)
            .map(|m| match m {
                WsMessage::Text(t) => (OpCode::Data(Data::Text), true, t.as_str().to_string()),
                WsMessage::Frame(f) => {
                    let header = f.header().clone();
                    let payload = String::from_utf8(f.into_payload().to_vec())
                        .expect("every fragment is valid UTF-8 on its own");
                    (header.opcode, header.is_final, payload)
                }
                other => panic!("unexpected message {other:?}"),
            })
            .collect()
    }

    #[test]
    fn small_frames_are_sent_whole() {
        let pieces = split("{\"type\":\"ok\"}", 16);
        assert_eq!(pieces.len(), 1);
        assert_eq!(pieces[0].2, "{\"type\":\"ok\"}");
    }

    #[test]
    fn large_frames_are_fragments_that_reassemble_exactly() {
        // Multi-byte characters straddle every possible cut.
        let text: String = (0..20_000).map(|i| ["a", "é", "€", "🙂"][i % 4]).collect();
        let pieces = split(&text, MIN_FRAGMENT + 1);
        assert!(pieces.len() > 10);
        assert_eq!(pieces[0].0, OpCode::Data(Data::Text));
        for (i, (opcode, is_final, payload)) in pieces.iter().enumerate() {
            assert!(payload.len() <= MIN_FRAGMENT + 1 && !payload.is_empty());
            assert_eq!(*is_final, i == pieces.len() - 1);
            if i > 0 {
                assert_eq!(*opcode, OpCode::Data(Data::Continue));
            }
        }
        let joined: String = pieces.into_iter().map(|p| p.2).collect();
        assert_eq!(joined, text);
    }

    #[test]
    fn a_tiny_configured_buffer_still_sends_fragments_of_the_minimum_size() {
        let text = "🙂".repeat(MIN_FRAGMENT / 2);
        let pieces = split(&text, 0);
        assert_eq!(pieces.len(), 2);
        assert_eq!(pieces[0].2.len(), MIN_FRAGMENT);
        assert_eq!(pieces.concat_payloads(), text);
        assert_eq!(split("{}", 1).len(), 1);
    }

    trait Concat {
        fn concat_payloads(self) -> String;
    }

    impl Concat for Vec<(OpCode, bool, String)> {
        fn concat_payloads(self) -> String {
            self.into_iter().map(|p| p.2).collect()
        }
    }
}
