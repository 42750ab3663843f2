//! A malicious server for end-to-end tests: a websocket man-in-the-middle in front of a real
//! [`TestServer`].
//!
//! [`EvilServer`] listens on its own loopback port and presents the real server's own TLS
//! certificate, so a client that pins the real server (or is told to trust "the server") cannot
//! tell them apart — exactly the position of a compromised server. Each client connection is
//! relayed to the real server over a connection of its own; every frame is parsed
//! ([`ClientFrame`] one way, [`ServerFrame`] the other), so a test can, per device (known from
//! the connection's `authenticated` reply):
//!
//! - rewrite, drop, reorder or add to what the real server sends that device
//!   ([`EvilServer::on_server_frames`]; [`map_messages`] and [`map_ops`] edit messages and ops in
//!   live pushes and in `sync_page`s alike);
//! - look at, rewrite or swallow what the device sends, and answer it itself
//!   ([`EvilServer::on_requests`], [`Verdict`]) — for example answer a `post` the real server
//!   would refuse with a made-up `posted`;
//! - push frames the real server never sent ([`EvilServer::inject`]);
//! - answer a device's `authenticate` itself ([`EvilServer::on_authenticate`]).
//!
//! It also records what it saw, for forging and for assertions: every request a device sent
//! ([`EvilServer::requests_from`]), every frame delivered to a device after the rules
//! ([`EvilServer::delivered_to`]), and every op of every group log that crossed it
//! ([`EvilServer::group_state`]).
//!
//! Bounds: recordings keep at most [`MAX_RECORDED`] frames per device; injected frames wait in a
//! queue of [`INJECT_QUEUE`] per connection; every connection task ends when either side closes,
//! and dropping the [`EvilServer`] aborts the listener and, with it, every connection task.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use confide_client::{Connection, ServerTrust};
use confide_protocol::frames::{
    ClientFrame, DEFAULT_MAX_CLIENT_FRAME_BYTES, ServerFrame, StoredMessage,
};
use confide_protocol::group_log::{GroupState, SignedOp};
use confide_protocol::{DeviceId, GroupId, RequestId, Seq};

use crate::{RECV_TIMEOUT, TestServer};

/// Frames kept per device in each recording (requests sent, frames delivered); older ones are
/// forgotten first.
pub const MAX_RECORDED: usize = 10_000;

/// Injected frames waiting per connection; [`EvilServer::inject`] panics beyond this (a test
/// that injects that much without the client reading is broken).
pub const INJECT_QUEUE: usize = 256;

/// How often [`EvilServer::until_delivered`] looks again (it gives up after [`RECV_TIMEOUT`]).
const POLL: Duration = Duration::from_millis(5);

/// What the malicious server does with one request from a device.
// Moved once per frame; boxing the frame would only make every rule noisier.
#[allow(clippy::large_enum_variant)]
pub enum Verdict {
    /// Pass it to the real server (as is, or rewritten).
    Forward(ClientFrame),
    /// Keep it from the real server and answer the device with these frames instead (none:
    /// swallow it silently).
    Answer(Vec<ServerFrame>),
}

/// Rewrites one frame the real server sends a device into the frames the device gets instead.
type ServerRule = Box<dyn FnMut(ServerFrame) -> Vec<ServerFrame> + Send>;
/// Decides what happens to one request from a device.
type ClientRule = Box<dyn FnMut(ClientFrame) -> Verdict + Send>;

/// A live connection of a device: its number and the queue of frames injected into it.
type Link = (u64, mpsc::Sender<ServerFrame>);

/// The rules for one device; a missing rule relays honestly.
#[derive(Default)]
struct Rules {
    server: Option<ServerRule>,
    client: Option<ClientRule>,
    /// For the `authenticate` request naming the device, before the connection is its.
    auth: Option<ClientRule>,
}

/// What the malicious server remembers.
#[derive(Default)]
struct Seen {
    /// Requests each device sent after authenticating, as sent (before any rule).
    requests: HashMap<DeviceId, VecDeque<ClientFrame>>,
    /// Frames each device was given (after the rules, including injected ones).
    delivered: HashMap<DeviceId, VecDeque<ServerFrame>>,
    /// Every genuine op of every group log that crossed the proxy, by seq: from the real
    /// server's `sync_page`s and `op` pushes, and from appends it acknowledged.
    ops: HashMap<GroupId, BTreeMap<u64, SignedOp>>,
    /// The highest message seq the real server handed out per group.
    last_seq: HashMap<GroupId, Seq>,
}

/// State shared by the listener, the connection tasks and the test.
struct Shared {
    /// Rules per device. A rule runs with this lock held: it must not call
    /// [`EvilServer::on_server_frames`], [`EvilServer::on_requests`] or [`EvilServer::honest`]
    /// (it may call [`EvilServer::inject`] through a [`EvilHandle`]).
    rules: Mutex<HashMap<DeviceId, Rules>>,
    /// The live connections of each device, to inject frames into.
    links: Mutex<HashMap<DeviceId, Vec<Link>>>,
    /// Recordings.
    seen: Mutex<Seen>,
}

fn push_bounded<T>(queue: &mut VecDeque<T>, item: T) {
    if queue.len() >= MAX_RECORDED {
        queue.pop_front();
    }
    queue.push_back(item);
}

impl Shared {
    fn record_request(&self, device: DeviceId, frame: &ClientFrame) {
        let mut seen = self.seen.lock().unwrap();
        push_bounded(seen.requests.entry(device).or_default(), frame.clone());
    }

    fn record_delivered(&self, device: DeviceId, frame: &ServerFrame) {
        let mut seen = self.seen.lock().unwrap();
        push_bounded(seen.delivered.entry(device).or_default(), frame.clone());
    }

    fn record_op(&self, group: GroupId, op: &SignedOp) {
        if let Ok(verified) = op.verify() {
            let mut seen = self.seen.lock().unwrap();
            seen.ops
                .entry(group)
                .or_default()
                .insert(verified.seq, op.clone());
        }
    }

    fn record_seq(&self, group: GroupId, seq: Seq) {
        let mut seen = self.seen.lock().unwrap();
        let last = seen.last_seq.entry(group).or_insert(Seq(0));
        if seq > *last {
            *last = seq;
        }
    }

    /// Notes what a genuine frame from the real server tells about the groups.
    fn record_server_frame(&self, frame: &ServerFrame) {
        match frame {
            ServerFrame::Op { group, op, .. } => self.record_op(*group, op),
            ServerFrame::SyncPage {
                group,
                ops,
                messages,
                ..
            } => {
                for op in ops {
                    self.record_op(*group, op);
                }
                for m in messages {
                    self.record_seq(*group, m.seq);
                }
            }
            ServerFrame::Message { group, seq, .. } | ServerFrame::Posted { group, seq, .. } => {
                self.record_seq(*group, *seq)
            }
            _ => {}
        }
    }

    fn apply_server_rule(&self, device: DeviceId, frame: ServerFrame) -> Vec<ServerFrame> {
        let mut rules = self.rules.lock().unwrap();
        match rules.get_mut(&device).and_then(|r| r.server.as_mut()) {
            Some(rule) => rule(frame),
            None => vec![frame],
        }
    }

    fn apply_client_rule(&self, device: DeviceId, frame: ClientFrame) -> Verdict {
        let mut rules = self.rules.lock().unwrap();
        match rules.get_mut(&device).and_then(|r| r.client.as_mut()) {
            Some(rule) => rule(frame),
            None => Verdict::Forward(frame),
        }
    }

    fn apply_auth_rule(&self, device: DeviceId, frame: ClientFrame) -> Verdict {
        let mut rules = self.rules.lock().unwrap();
        match rules.get_mut(&device).and_then(|r| r.auth.as_mut()) {
            Some(rule) => rule(frame),
            None => Verdict::Forward(frame),
        }
    }

    fn inject(&self, device: DeviceId, frame: ServerFrame) -> usize {
        let links = self.links.lock().unwrap();
        let mut sent = 0;
        for (_, tx) in links.get(&device).map(Vec::as_slice).unwrap_or_default() {
            match tx.try_send(frame.clone()) {
                Ok(()) => sent += 1,
                Err(mpsc::error::TrySendError::Closed(_)) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    panic!("more than {INJECT_QUEUE} injected frames waiting for one connection")
                }
            }
        }
        sent
    }
}

/// A cheap handle to a running [`EvilServer`], for use inside rules (which cannot borrow the
/// server itself).
#[derive(Clone)]
pub struct EvilHandle(Arc<Shared>);

impl EvilHandle {
    /// Pushes `frame` to every live connection of `device`, as if the server had sent it;
    /// returns how many connections got it. Not passed through the device's rules.
    pub fn inject(&self, device: DeviceId, frame: ServerFrame) -> usize {
        self.0.inject(device, frame)
    }

    /// The highest message seq the real server has handed out in `group` so far (0 if none):
    /// a made-up message one above it looks new to every client.
    pub fn last_seq(&self, group: GroupId) -> Seq {
        self.0
            .seen
            .lock()
            .unwrap()
            .last_seq
            .get(&group)
            .copied()
            .unwrap_or(Seq(0))
    }
}

/// A malicious server in front of a real one; see the module docs.
pub struct EvilServer {
    /// `wss://localhost:PORT`: where clients connect, believing it is the server.
    pub url: String,
    /// The certificate fingerprint it presents: the real server's.
    pub pin: String,
    shared: Arc<Shared>,
    listener: JoinHandle<()>,
}

impl Drop for EvilServer {
    fn drop(&mut self) {
        // Aborting the listener drops its JoinSet, which aborts every connection task.
        self.listener.abort();
    }
}

impl EvilServer {
    /// Starts the malicious server in front of `server` (which must use TLS, as
    /// [`TestServer::start`] does). It presents `server`'s own certificate.
    pub async fn start(server: &TestServer) -> EvilServer {
        assert!(
            server.url.starts_with("wss://"),
            "the evil server sits in front of a TLS server"
        );
        let identity = confide_server::TlsIdentity::dev(&server.data_dir).unwrap();
        let pin = identity.fingerprint();
        assert_eq!(
            pin, server.pin,
            "the evil server presents the real certificate"
        );
        let acceptor = tokio_rustls::TlsAcceptor::from(identity.server_config().unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            rules: Mutex::new(HashMap::new()),
            links: Mutex::new(HashMap::new()),
            seen: Mutex::new(Seen::default()),
        });
        let upstream_url = server.url.clone();
        let trust = server.trust();
        let task_shared = shared.clone();
        let listener = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            let mut next_conn = 0u64;
            while let Ok((tcp, _)) = listener.accept().await {
                // Reap finished connection tasks so the set stays small.
                while connections.try_join_next().is_some() {}
                next_conn += 1;
                let relay = Relay {
                    shared: task_shared.clone(),
                    conn: next_conn,
                    device: None,
                };
                let (acceptor, upstream_url, trust) =
                    (acceptor.clone(), upstream_url.clone(), trust.clone());
                connections.spawn(async move {
                    let _ = relay.run(tcp, acceptor, &upstream_url, &trust).await;
                });
            }
        });
        EvilServer {
            url: format!("wss://localhost:{port}"),
            pin,
            shared,
            listener,
        }
    }

    /// How clients trust it: the real server's pin.
    pub fn trust(&self) -> ServerTrust {
        ServerTrust::Pinned(self.pin.clone())
    }

    /// A handle for use inside rules.
    pub fn handle(&self) -> EvilHandle {
        EvilHandle(self.shared.clone())
    }

    /// From now on, every frame the real server sends `device` goes through `rule`, and the
    /// device gets what it returns instead (in that order; an empty vector drops the frame).
    /// Replaces an earlier rule for the device's server frames.
    pub fn on_server_frames(
        &self,
        device: DeviceId,
        rule: impl FnMut(ServerFrame) -> Vec<ServerFrame> + Send + 'static,
    ) {
        self.shared
            .rules
            .lock()
            .unwrap()
            .entry(device)
            .or_default()
            .server = Some(Box::new(rule));
    }

    /// From now on, every request `device` sends (after authenticating) goes through `rule`.
    /// Replaces an earlier rule for the device's requests.
    pub fn on_requests(
        &self,
        device: DeviceId,
        rule: impl FnMut(ClientFrame) -> Verdict + Send + 'static,
    ) {
        self.shared
            .rules
            .lock()
            .unwrap()
            .entry(device)
            .or_default()
            .client = Some(Box::new(rule));
    }

    /// From now on, every `authenticate` request naming `device` (on a connection not yet
    /// authenticated) goes through `rule` — for example answered with a refusal the real server
    /// never made. Replaces an earlier rule for the device's authentication.
    pub fn on_authenticate(
        &self,
        device: DeviceId,
        rule: impl FnMut(ClientFrame) -> Verdict + Send + 'static,
    ) {
        self.shared
            .rules
            .lock()
            .unwrap()
            .entry(device)
            .or_default()
            .auth = Some(Box::new(rule));
    }

    /// Relays `device`'s traffic honestly again.
    pub fn honest(&self, device: DeviceId) {
        self.shared.rules.lock().unwrap().remove(&device);
    }

    /// Pushes `frame` to every live connection of `device`; returns how many got it.
    pub fn inject(&self, device: DeviceId, frame: ServerFrame) -> usize {
        self.shared.inject(device, frame)
    }

    /// Every request `device` sent so far (the last [`MAX_RECORDED`]), as sent.
    pub fn requests_from(&self, device: DeviceId) -> Vec<ClientFrame> {
        let seen = self.shared.seen.lock().unwrap();
        seen.requests
            .get(&device)
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Every frame `device` was given so far (the last [`MAX_RECORDED`]), after the rules.
    pub fn delivered_to(&self, device: DeviceId) -> Vec<ServerFrame> {
        let seen = self.shared.seen.lock().unwrap();
        seen.delivered
            .get(&device)
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Waits until `device` has been given a frame matching `pred` (fails the test after
    /// [`RECV_TIMEOUT`]).
    pub async fn until_delivered(&self, device: DeviceId, pred: impl Fn(&ServerFrame) -> bool) {
        tokio::time::timeout(RECV_TIMEOUT, async {
            while !self.delivered_to(device).iter().any(&pred) {
                tokio::time::sleep(POLL).await;
            }
        })
        .await
        .expect("the evil server never delivered the awaited frame");
    }

    /// The group's verified state from the genuine ops that crossed the proxy, from the genesis
    /// op up to the first gap: what a forger needs to sign "the next op".
    pub fn group_state(&self, group: GroupId) -> GroupState {
        let seen = self.shared.seen.lock().unwrap();
        let ops = seen.ops.get(&group).expect("no op of that group seen");
        let genesis = ops.get(&0).expect("the genesis op was not seen");
        let mut state = GroupState::from_genesis(genesis).unwrap();
        while let Some(op) = ops.get(&(state.seq() + 1)) {
            state.apply(op).unwrap();
        }
        state
    }

    /// The highest message seq the real server has handed out in `group` (0 if none).
    pub fn last_seq(&self, group: GroupId) -> Seq {
        self.handle().last_seq(group)
    }
}

/// One relayed connection.
struct Relay {
    shared: Arc<Shared>,
    /// This connection's number, to unregister it from [`Shared::links`].
    conn: u64,
    /// The device the connection authenticated as, once it has.
    device: Option<DeviceId>,
}

impl Relay {
    async fn run(
        mut self,
        tcp: tokio::net::TcpStream,
        acceptor: tokio_rustls::TlsAcceptor,
        upstream_url: &str,
        trust: &ServerTrust,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let tls = acceptor.accept(tcp).await?;
        let mut client = tokio_tungstenite::accept_async(tls).await?;
        let mut server = Connection::connect(upstream_url, trust).await?;
        let (inject_tx, mut inject_rx) = mpsc::channel::<ServerFrame>(INJECT_QUEUE);
        // The device each authentication request names, until the reply says which succeeded.
        let mut claimed: HashMap<RequestId, DeviceId> = HashMap::new();
        // Appends in flight, recorded as genuine once the real server acknowledges them.
        let mut appends: HashMap<RequestId, (GroupId, SignedOp)> = HashMap::new();
        let result = loop {
            tokio::select! {
                // Injected frames first: one injected before a request arrived reaches the
                // device before that request's reply, as if the server had sent it then.
                biased;
                Some(frame) = inject_rx.recv() => {
                    self.deliver(&mut client, frame).await?;
                }
                incoming = client.next() => {
                    let text = match incoming {
                        Some(Ok(WsMessage::Text(text))) => text,
                        Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => break Ok(()),
                        Some(Ok(_)) => continue,
                    };
                    let frame = match ClientFrame::from_json(text.as_str(), DEFAULT_MAX_CLIENT_FRAME_BYTES) {
                        Ok(frame) => frame,
                        // Not ours to judge: the real server answers it.
                        Err(_) => { server.send_raw(text.as_str().to_string()).await?; continue; }
                    };
                    let verdict = match self.device {
                        None => {
                            match &frame {
                                ClientFrame::Authenticate { id, device, .. } => {
                                    let device = *device;
                                    claimed.insert(*id, device);
                                    self.shared.apply_auth_rule(device, frame)
                                }
                                ClientFrame::Register { id, keys, .. } => {
                                    claimed.insert(*id, keys.device);
                                    Verdict::Forward(frame)
                                }
                                _ => Verdict::Forward(frame),
                            }
                        }
                        Some(device) => {
                            self.shared.record_request(device, &frame);
                            self.shared.apply_client_rule(device, frame)
                        }
                    };
                    match verdict {
                        Verdict::Forward(frame) => {
                            match &frame {
                                ClientFrame::AppendOp { id, group, op } => { appends.insert(*id, (*group, op.clone())); }
                                ClientFrame::CreateGroup { id, genesis } => {
                                    if let Ok(op) = genesis.verify() { appends.insert(*id, (op.group, genesis.clone())); }
                                }
                                _ => {}
                            }
                            server.send(&frame).await?;
                        }
                        Verdict::Answer(frames) => {
                            for frame in frames { self.deliver(&mut client, frame).await?; }
                        }
                    }
                }
                reply = server.recv() => {
                    let frame = match reply {
                        Ok(frame) => frame,
                        Err(_) => break Ok(()),
                    };
                    self.shared.record_server_frame(&frame);
                    if let Some(id) = frame.request_id()
                        && let Some((group, op)) = appends.remove(&id)
                        && matches!(frame, ServerFrame::OpAppended { .. } | ServerFrame::GroupCreated { .. })
                    {
                        self.shared.record_op(group, &op);
                    }
                    if let ServerFrame::Authenticated { id, device, .. } = &frame
                        && claimed.remove(id) == Some(*device)
                    {
                        self.device = Some(*device);
                        self.shared.links.lock().unwrap().entry(*device).or_default().push((self.conn, inject_tx.clone()));
                    }
                    let frames = match self.device {
                        Some(device) => self.shared.apply_server_rule(device, frame),
                        None => vec![frame],
                    };
                    for frame in frames { self.deliver(&mut client, frame).await?; }
                }
            }
        };
        if let Some(device) = self.device
            && let Some(links) = self.shared.links.lock().unwrap().get_mut(&device)
        {
            links.retain(|(conn, _)| *conn != self.conn);
        }
        let _ = client.close(None).await;
        server.close().await;
        result
    }

    async fn deliver<S>(
        &self,
        client: &mut tokio_tungstenite::WebSocketStream<S>,
        frame: ServerFrame,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        if let Some(device) = self.device {
            self.shared.record_delivered(device, &frame);
        }
        client
            .send(WsMessage::Text(frame.to_json()?.into()))
            .await?;
        Ok(())
    }
}

/// Applies `f` to every message in `frame` — a live `message` push or the messages of a
/// `sync_page` — and returns what the device gets instead. For a push, each message `f` returns
/// becomes a push of its own (none: the push is dropped); a page keeps its other fields (set
/// them in a rule of your own where that matters). Other frames pass unchanged.
pub fn map_messages(
    frame: ServerFrame,
    mut f: impl FnMut(GroupId, StoredMessage) -> Vec<StoredMessage>,
) -> Vec<ServerFrame> {
    match frame {
        ServerFrame::Message {
            group,
            seq,
            received_at,
            envelope,
        } => f(
            group,
            StoredMessage {
                seq,
                received_at,
                envelope,
            },
        )
        .into_iter()
        .map(|m| ServerFrame::Message {
            group,
            seq: m.seq,
            received_at: m.received_at,
            envelope: m.envelope,
        })
        .collect(),
        mut page @ ServerFrame::SyncPage { .. } => {
            if let ServerFrame::SyncPage {
                group, messages, ..
            } = &mut page
            {
                let group = *group;
                *messages = std::mem::take(messages)
                    .into_iter()
                    .flat_map(|m| f(group, m))
                    .collect();
            }
            vec![page]
        }
        other => vec![other],
    }
}

/// Applies `f` to every op in `frame` — a live `op` push or the ops of a `sync_page` — and
/// returns what the device gets instead. A push's seq is taken from each returned op's signed
/// bytes (kept as it was if they do not verify); a page keeps its other fields. Other frames
/// pass unchanged.
pub fn map_ops(
    frame: ServerFrame,
    mut f: impl FnMut(GroupId, SignedOp) -> Vec<SignedOp>,
) -> Vec<ServerFrame> {
    match frame {
        ServerFrame::Op { group, op, seq } => f(group, op)
            .into_iter()
            .map(|op| {
                let seq = op.verify().map_or(seq, |o| o.seq);
                ServerFrame::Op { group, op, seq }
            })
            .collect(),
        mut page @ ServerFrame::SyncPage { .. } => {
            if let ServerFrame::SyncPage { group, ops, .. } = &mut page {
                let group = *group;
                *ops = std::mem::take(ops)
                    .into_iter()
                    .flat_map(|op| f(group, op))
                    .collect();
            }
            vec![page]
        }
        other => vec![other],
    }
}

/// The seq inside a genuine op's signed bytes (`u64::MAX` if it does not verify).
pub fn op_seq(op: &SignedOp) -> u64 {
    op.verify().map_or(u64::MAX, |o| o.seq)
}
