//! Several server nodes over one database: fan-out hints over NATS, and catching up from
//! storage (PROTOCOL.md §10.6).
//!
//! Every node accepts any client. The database is the only source of truth: a node commits a
//! group's messages and ops there with conditional appends (two nodes can never store the same
//! seq; [`crate::storage::StorageError::Conflict`]), then publishes a *hint* on NATS core
//! pub/sub — "group G has a message at seq S", "device D has inbox items 7 and 9" — on one
//! subject per group and per device. A node that hears a hint reads what it names from the
//! database and delivers it to its own connections. Hints carry no content and no durability
//! promise: a lost hint only delays delivery until the next poll, when every node reads each
//! group's new ops and messages anyway (every [`POLL_WITH_NATS`], and every
//! [`POLL_WITHOUT_NATS`] while NATS is unreachable), and clients that notice a gap resync by
//! seq. The same catch-up reloads a group's verified state when another node appended an op,
//! so every node enforces the same log.
//!
//! Why hints instead of the frames themselves: delivery then has one path, in seq order, from
//! what is durable; a node that missed a hint (NATS down, a slow subscriber) catches up the
//! same way; and NATS, like the rest of the operator's infrastructure, sees no ciphertext.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::sync::{Notify, mpsc, watch};

use confide_protocol::frames::ServerFrame;
use confide_protocol::{DeviceId, GroupId, Seq, UserId};

use crate::link::ChannelId;
use crate::server::Shared;

/// How often every node reads each group's new ops and messages while NATS works: the bound on
/// how late a lost hint makes a delivery.
pub const POLL_WITH_NATS: Duration = Duration::from_secs(10);
/// How often while NATS is unreachable: delivery goes on, by polling, about this much slower.
pub const POLL_WITHOUT_NATS: Duration = Duration::from_secs(1);
/// Hints waiting to be published; beyond it new hints are dropped (and counted): the poll
/// delivers what they named.
pub const HINT_QUEUE: usize = 65_536;
/// Bytes of link-channel data waiting to be published; beyond it more is dropped (the link
/// fails and the devices start again), so that a slow or absent NATS cannot make the queue
/// hold more than this.
pub const HINT_QUEUE_LINK_BYTES: usize = 16 * 1024 * 1024;
/// Messages read per storage call while catching a group up.
pub const CATCH_UP_PAGE: usize = 256;
/// How long to wait for NATS when connecting; the node starts either way and keeps trying.
pub const NATS_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The subject (after the prefix) on which a node that could not publish some hints asks the
/// others to have their clients sync anew.
pub const RESYNC_SUBJECT: &str = "resync";
/// How long a `link_join` for a channel this node does not hold waits for the node that holds
/// it to answer; no answer is `link_unknown`.
pub const LINK_JOIN_TIMEOUT: Duration = Duration::from_secs(2);

/// How to reach the other nodes.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// The NATS server(s), e.g. `nats://127.0.0.1:4222`.
    pub nats_url: String,
    /// Every subject starts with this (letters, digits, `-` and `_`), so that several
    /// deployments (or test runs) can share one NATS server. Every node of a deployment uses
    /// the same prefix.
    pub subject_prefix: String,
}

/// Whether `prefix` can start a NATS subject: one token of letters, digits, `-` and `_`.
pub fn valid_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix.len() <= 64
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What another node should read from the database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hint {
    /// A group has a new message at `seq`.
    Message {
        /// The group.
        group: GroupId,
        /// Its seq.
        seq: u64,
    },
    /// A group's log has a new op at `seq` (0: the group was created).
    Op {
        /// The group.
        group: GroupId,
        /// The op's seq.
        seq: u64,
    },
    /// A device has new inbox items.
    Inbox {
        /// The recipient.
        device: DeviceId,
        /// The items' ids.
        ids: Vec<u64>,
    },
    /// A device list dropped the device: its connections close.
    Unlinked {
        /// The device.
        device: DeviceId,
    },
    /// The user of a device published a new device list: the device gets it.
    DeviceList {
        /// A device the list names.
        device: DeviceId,
        /// Its user.
        user: UserId,
    },
    /// A link channel's message for its party on the node `node` (PROTOCOL.md §3.7): the one
    /// relay that carries bytes, opaque ones (sealed between the two devices).
    LinkData {
        /// The node of the party it is for.
        node: String,
        /// The channel.
        channel: ChannelId,
        /// The bytes, as the other party sent them.
        data: Vec<u8>,
    },
    /// A link channel ended; its party on the node `node` is told.
    LinkClosed {
        /// The node of the party to tell.
        node: String,
        /// The channel.
        channel: ChannelId,
    },
}

impl Hint {
    /// The link-channel bytes it carries (0 for every other hint).
    fn link_bytes(&self) -> usize {
        match self {
            Hint::LinkData { data, .. } => data.len(),
            _ => 0,
        }
    }

    /// The subject and payload it is published as.
    fn encode(&self, prefix: &str) -> (String, Vec<u8>) {
        match self {
            Hint::LinkData {
                node,
                channel,
                data,
            } => (
                format!("{prefix}.node.{node}.link-data.{}", hex::encode(channel)),
                data.clone(),
            ),
            Hint::LinkClosed { node, channel } => (
                format!("{prefix}.node.{node}.link-closed.{}", hex::encode(channel)),
                Vec::new(),
            ),
            other => {
                let (subject, payload) = other.encode_text(prefix);
                (subject, payload.into_bytes())
            }
        }
    }

    /// The subject and payload of a hint that names ids only.
    fn encode_text(&self, prefix: &str) -> (String, String) {
        match self {
            Hint::Message { group, seq } => (
                format!("{prefix}.group.{}", hex::encode(group.0)),
                format!("m:{seq}"),
            ),
            Hint::Op { group, seq } => (
                format!("{prefix}.group.{}", hex::encode(group.0)),
                format!("o:{seq}"),
            ),
            Hint::Inbox { device, ids } => {
                let ids: Vec<String> = ids.iter().map(u64::to_string).collect();
                (
                    format!("{prefix}.device.{}", hex::encode(device.0)),
                    format!("i:{}", ids.join(",")),
                )
            }
            Hint::Unlinked { device } => (
                format!("{prefix}.device.{}", hex::encode(device.0)),
                "u".into(),
            ),
            Hint::DeviceList { device, user } => (
                format!("{prefix}.device.{}", hex::encode(device.0)),
                format!("l:{}", hex::encode(user.0)),
            ),
            // Not text: encoded by `encode`.
            Hint::LinkData { .. } | Hint::LinkClosed { .. } => (String::new(), String::new()),
        }
    }

    /// Parses a hint heard on `subject`; `None` for anything malformed (ignored: the poll
    /// covers whatever it might have named).
    fn decode(prefix: &str, subject: &str, payload: &[u8]) -> Option<Hint> {
        let rest = subject.strip_prefix(prefix)?.strip_prefix('.')?;
        let (kind, id) = rest.split_once('.')?;
        if kind == "node" {
            let (node, rest) = id.split_once('.')?;
            let (what, channel) = rest.split_once('.')?;
            let channel = from_hex(channel)?;
            let node = node.to_string();
            return match what {
                "link-data" => Some(Hint::LinkData {
                    node,
                    channel,
                    data: payload.to_vec(),
                }),
                "link-closed" => Some(Hint::LinkClosed { node, channel }),
                _ => None,
            };
        }
        let payload = std::str::from_utf8(payload).ok()?;
        match kind {
            "group" => {
                let group = GroupId(from_hex(id)?);
                let (what, seq) = payload.split_once(':')?;
                let seq = seq.parse().ok()?;
                match what {
                    "m" => Some(Hint::Message { group, seq }),
                    "o" => Some(Hint::Op { group, seq }),
                    _ => None,
                }
            }
            "device" => {
                let device = DeviceId(from_hex(id)?);
                if payload == "u" {
                    return Some(Hint::Unlinked { device });
                }
                let (what, rest) = payload.split_once(':')?;
                match what {
                    "i" => {
                        let ids = rest
                            .split(',')
                            .take(confide_protocol::frames::MAX_SEALED_PER_FRAME)
                            .map(str::parse)
                            .collect::<Result<Vec<u64>, _>>()
                            .ok()?;
                        Some(Hint::Inbox { device, ids })
                    }
                    "l" => Some(Hint::DeviceList {
                        device,
                        user: UserId(from_hex(rest)?),
                    }),
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

/// An id from the hex in a subject or payload (ids are hex there: base64 may hold characters a
/// subject must not).
fn from_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let mut bytes = [0u8; N];
    hex::decode_to_slice(text, &mut bytes).ok()?;
    Some(bytes)
}

/// Counters for `/metrics`.
#[derive(Default)]
pub struct ClusterMetrics {
    /// Hints published.
    pub hints_published: AtomicU64,
    /// Hints dropped because the publish queue was full (or NATS refused them).
    pub hints_dropped: AtomicU64,
    /// Hints heard from other nodes.
    pub hints_heard: AtomicU64,
    /// Messages another node stored that this node read and delivered.
    pub messages_caught_up: AtomicU64,
    /// Ops another node stored that this node read and applied.
    pub ops_caught_up: AtomicU64,
    /// Inbox items another node stored that this node read and delivered.
    pub inbox_caught_up: AtomicU64,
    /// Polls of every group.
    pub polls: AtomicU64,
    /// Times every connection here was closed for its client to sync anew.
    pub resyncs: AtomicU64,
}

/// This node's link to the others.
pub struct Cluster {
    client: async_nats::Client,
    prefix: String,
    /// This node's id (random at each start): link channels' messages are addressed to it.
    node: String,
    hints: mpsc::Sender<Hint>,
    publish_queue: Mutex<Option<mpsc::Receiver<Hint>>>,
    /// Groups to catch up, and what wakes the task that does it.
    dirty: Mutex<HashSet<GroupId>>,
    wake: Notify,
    /// Set by NATS's connection events; read by `/healthz` and the poll.
    connected: Arc<AtomicBool>,
    /// Woken when NATS reconnects: catch up on everything at once.
    reconnected: Arc<Notify>,
    /// Woken when this node may have missed hints (NATS came back after an outage, or dropped
    /// messages for this slow subscriber, or another node could not publish some): every
    /// connection here is closed for its client to reconnect and sync, since inbox items,
    /// device lists and unlinks, unlike group messages, are not polled.
    missed: Arc<Notify>,
    /// Hints this node could not publish since it last said so ([`RESYNC_SUBJECT`]).
    dropped_hints: AtomicBool,
    /// Link data bytes in the publish queue ([`HINT_QUEUE_LINK_BYTES`]).
    queued_link_bytes: Arc<std::sync::atomic::AtomicUsize>,
    /// Counters.
    pub metrics: ClusterMetrics,
}

impl Cluster {
    /// Connects to NATS. The node starts even if NATS is unreachable (it keeps trying, and
    /// delivers across nodes by polling meanwhile).
    pub async fn connect(config: &ClusterConfig) -> Result<Cluster, String> {
        if !valid_prefix(&config.subject_prefix) {
            return Err(format!(
                "the NATS subject prefix {:?} must be 1 to 64 letters, digits, '-' or '_'",
                config.subject_prefix
            ));
        }
        let connected = Arc::new(AtomicBool::new(false));
        let reconnected = Arc::new(Notify::new());
        let missed = Arc::new(Notify::new());
        let ever_connected = Arc::new(AtomicBool::new(false));
        let (events_connected, events_reconnected) = (connected.clone(), reconnected.clone());
        let (events_missed, events_ever) = (missed.clone(), ever_connected.clone());
        let client = async_nats::ConnectOptions::new()
            // A node needs no hint about its own writes: it delivered them itself.
            .no_echo()
            .retry_on_initial_connect()
            .connection_timeout(NATS_CONNECT_TIMEOUT)
            .event_callback(move |event| {
                let (connected, reconnected) =
                    (events_connected.clone(), events_reconnected.clone());
                let (missed, ever) = (events_missed.clone(), events_ever.clone());
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            tracing::info!("NATS connected");
                            connected.store(true, Relaxed);
                            reconnected.notify_one();
                            // Back after an outage: what other nodes hinted meanwhile is lost.
                            if ever.swap(true, Relaxed) {
                                missed.notify_one();
                            }
                        }
                        async_nats::Event::SlowConsumer(_) => {
                            tracing::warn!("NATS dropped hints for this node (slow consumer)");
                            missed.notify_one();
                        }
                        async_nats::Event::Disconnected => {
                            tracing::warn!(
                                "NATS disconnected: other nodes' messages arrive by polling until it is back"
                            );
                            connected.store(false, Relaxed);
                        }
                        other => tracing::debug!(event = %other, "NATS event"),
                    }
                }
            })
            .connect(config.nats_url.as_str())
            .await
            .map_err(|e| {
                // The URL may carry credentials: shown without them.
                let shown = crate::storage::postgres::redacted_url(&config.nats_url);
                format!("cannot use NATS at {shown}: {e}")
            })?;
        if client.connection_state() == async_nats::connection::State::Connected {
            connected.store(true, Relaxed);
            ever_connected.store(true, Relaxed);
        }
        let (hints, queue) = mpsc::channel(HINT_QUEUE);
        let mut node = [0u8; 8];
        getrandom::fill(&mut node).map_err(|e| format!("no randomness for a node id: {e}"))?;
        Ok(Cluster {
            client,
            prefix: config.subject_prefix.clone(),
            node: hex::encode(node),
            hints,
            publish_queue: Mutex::new(Some(queue)),
            dirty: Mutex::new(HashSet::new()),
            wake: Notify::new(),
            connected,
            reconnected,
            missed,
            dropped_hints: AtomicBool::new(false),
            queued_link_bytes: Arc::default(),
            metrics: ClusterMetrics::default(),
        })
    }

    /// Whether NATS is connected now.
    pub fn nats_connected(&self) -> bool {
        self.connected.load(Relaxed)
    }

    /// Tells the other nodes (best effort, never waits): callable from any thread, the
    /// writer's included.
    pub fn hint(&self, hint: Hint) {
        let link_bytes = hint.link_bytes();
        if link_bytes > 0 {
            let queued = self.queued_link_bytes.fetch_add(link_bytes, Relaxed);
            if queued.saturating_add(link_bytes) > HINT_QUEUE_LINK_BYTES {
                self.queued_link_bytes.fetch_sub(link_bytes, Relaxed);
                self.metrics.hints_dropped.fetch_add(1, Relaxed);
                // Link data only: the link fails and its devices start again.
                return;
            }
        }
        if self.hints.try_send(hint).is_err() {
            self.queued_link_bytes.fetch_sub(link_bytes, Relaxed);
            self.metrics.hints_dropped.fetch_add(1, Relaxed);
            self.dropped_hints.store(true, Relaxed);
        }
    }

    /// The counters as Prometheus text.
    pub fn render_metrics(&self) -> String {
        use std::fmt::Write as _;
        let m = &self.metrics;
        let mut out = String::new();
        for (name, help, value) in [
            (
                "confide_cluster_hints_published_total",
                "Hints published to other nodes.",
                &m.hints_published,
            ),
            (
                "confide_cluster_hints_dropped_total",
                "Hints not published (queue full or NATS refused).",
                &m.hints_dropped,
            ),
            (
                "confide_cluster_hints_heard_total",
                "Hints heard from other nodes.",
                &m.hints_heard,
            ),
            (
                "confide_cluster_messages_caught_up_total",
                "Messages other nodes stored, read and delivered here.",
                &m.messages_caught_up,
            ),
            (
                "confide_cluster_ops_caught_up_total",
                "Ops other nodes stored, read and applied here.",
                &m.ops_caught_up,
            ),
            (
                "confide_cluster_inbox_caught_up_total",
                "Inbox items other nodes stored, read and delivered here.",
                &m.inbox_caught_up,
            ),
            (
                "confide_cluster_polls_total",
                "Polls of every group.",
                &m.polls,
            ),
            (
                "confide_cluster_resyncs_total",
                "Times every connection here was closed for its client to sync anew (hints lost).",
                &m.resyncs,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP confide_cluster_nats_connected Whether NATS is connected.\n# TYPE confide_cluster_nats_connected gauge\nconfide_cluster_nats_connected {}",
            u8::from(self.nats_connected())
        );
        out
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Asks the other nodes for `channel`: the id of the node that holds it and took this
    /// node's connection as its joiner, or `None` if no node answers in time.
    pub async fn link_join(&self, channel: &ChannelId) -> Option<String> {
        let subject = format!("{}.link.{}", self.prefix, hex::encode(channel));
        let asked = self
            .client
            .request(subject, self.node.clone().into_bytes().into());
        let answer = tokio::time::timeout(LINK_JOIN_TIMEOUT, asked)
            .await
            .ok()?
            .ok()?;
        let node = std::str::from_utf8(&answer.payload).ok()?;
        valid_prefix(node).then(|| node.to_string())
    }

    /// Marks `group` for catching up.
    fn mark(&self, group: GroupId) {
        if let Ok(mut dirty) = self.dirty.lock() {
            dirty.insert(group);
        }
        self.wake.notify_one();
    }
}

/// Starts the cluster's tasks: publishing hints, hearing them, catching groups up, polling.
/// They stop when `stop` turns true.
pub fn start(shared: Arc<Shared>, stop: watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> {
    let Some(cluster) = shared.cluster.clone() else {
        return Vec::new();
    };
    let mut tasks = Vec::new();
    let queue = cluster.publish_queue.lock().ok().and_then(|mut q| q.take());
    if let Some(queue) = queue {
        tasks.push(tokio::spawn(publish(cluster.clone(), queue)));
    }
    tasks.push(tokio::spawn(listen(shared.clone(), cluster.clone())));
    tasks.push(tokio::spawn(catch_up_loop(shared.clone(), cluster.clone())));
    tasks.push(tokio::spawn(resync_loop(shared.clone(), cluster.clone())));
    tasks.push(tokio::spawn(poll_loop(shared, cluster, stop)));
    tasks
}

/// Closes every connection here whenever this node may have missed hints, for the clients to
/// reconnect and sync: inbox items, device lists and unlinks stored through other nodes are
/// delivered and enforced then (a device unlinked elsewhere cannot authenticate again).
async fn resync_loop(shared: Arc<Shared>, cluster: Arc<Cluster>) {
    loop {
        cluster.missed.notified().await;
        tracing::warn!(
            "hints from other nodes may be lost: closing connections for clients to sync"
        );
        shared.hub.resync_all();
        cluster.metrics.resyncs.fetch_add(1, Relaxed);
    }
}

async fn publish(cluster: Arc<Cluster>, mut queue: mpsc::Receiver<Hint>) {
    while let Some(hint) = queue.recv().await {
        let link_bytes = hint.link_bytes();
        let (subject, payload) = hint.encode(&cluster.prefix);
        // Buffered by the client while NATS is away; a refusal only delays delivery to the
        // next poll.
        match cluster.client.publish(subject, payload.into()).await {
            Ok(()) => cluster.metrics.hints_published.fetch_add(1, Relaxed),
            Err(_) => {
                cluster.dropped_hints.store(true, Relaxed);
                cluster.metrics.hints_dropped.fetch_add(1, Relaxed)
            }
        };
        cluster.queued_link_bytes.fetch_sub(link_bytes, Relaxed);
        // Hints were lost: once the queue is empty, tell the other nodes to have their clients
        // sync anew.
        if queue.is_empty() && cluster.dropped_hints.swap(false, Relaxed) {
            let subject = format!("{}.{RESYNC_SUBJECT}", cluster.prefix);
            if cluster
                .client
                .publish(subject, Vec::new().into())
                .await
                .is_err()
            {
                cluster.dropped_hints.store(true, Relaxed);
            }
        }
    }
}

/// Hears hints for as long as the node runs: subscribes again (and has clients sync anew, as
/// hints may have been missed) should the subscriptions ever end.
async fn listen(shared: Arc<Shared>, cluster: Arc<Cluster>) {
    loop {
        listen_once(&shared, &cluster).await;
        tracing::warn!("the NATS subscriptions ended; subscribing again");
        cluster.missed.notify_one();
        tokio::time::sleep(POLL_WITHOUT_NATS).await;
    }
}

async fn listen_once(shared: &Arc<Shared>, cluster: &Arc<Cluster>) {
    // Every group's and device's hints, link-channel requests, and what other nodes address
    // to this one (link data goes only to the node of its recipient). Subscriptions survive
    // reconnections (the client renews them); retried only if the first request fails.
    let p = &cluster.prefix;
    let subjects = [
        format!("{p}.group.>"),
        format!("{p}.device.>"),
        format!("{p}.link.>"),
        format!("{p}.node.{}.>", cluster.node),
        format!("{p}.{RESYNC_SUBJECT}"),
    ];
    let mut subscribers = Vec::new();
    for subject in subjects {
        let subscriber = loop {
            match cluster.client.subscribe(subject.clone()).await {
                Ok(subscriber) => break subscriber,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot subscribe to NATS yet; retrying");
                    tokio::time::sleep(POLL_WITHOUT_NATS).await;
                }
            }
        };
        subscribers.push(subscriber);
    }
    let mut subscriber = futures_util::stream::select_all(subscribers);
    let link_prefix = format!("{}.link.", cluster.prefix);
    let resync_subject = format!("{}.{RESYNC_SUBJECT}", cluster.prefix);
    while let Some(message) = subscriber.next().await {
        cluster.metrics.hints_heard.fetch_add(1, Relaxed);
        if let Some(channel) = message.subject.as_str().strip_prefix(&link_prefix) {
            answer_link_join(shared, cluster, channel, &message).await;
            continue;
        }
        if message.subject.as_str() == resync_subject {
            cluster.missed.notify_one();
            continue;
        }
        let Some(hint) = Hint::decode(&cluster.prefix, message.subject.as_str(), &message.payload)
        else {
            tracing::debug!("malformed cluster hint ignored");
            continue;
        };
        match hint {
            Hint::Message { group, seq } => {
                let known = shared
                    .groups
                    .get(&group)
                    .and_then(|entry| entry.try_lock().ok().map(|e| e.caught_up.clone()));
                // Already delivered (or read by a catch-up meanwhile): nothing to read.
                if known.is_some_and(|caught_up| caught_up.load(Relaxed) >= seq) {
                    continue;
                }
                cluster.mark(group);
            }
            Hint::Op { group, .. } => cluster.mark(group),
            Hint::Inbox { device, ids } => deliver_inbox(shared, cluster, &device, &ids),
            Hint::Unlinked { device } => shared.hub.unlink(&device),
            Hint::DeviceList { device, user } => deliver_list(shared, &device, &user),
            Hint::LinkData {
                node,
                channel,
                data,
            } if node == cluster.node => {
                let Some((party, is_opener)) = shared.links.local_party(&channel) else {
                    continue;
                };
                if !shared.links.relayed_from_elsewhere(&channel, data.len()) {
                    continue;
                }
                // Data for the joiner comes from the opener, which may send at most
                // `MAX_LINK_DATA_FROM_OPENER` at once: the opener's node checked it, and it is
                // checked again here in case that node runs another version. (Data for the
                // opener comes from the joiner, which may send a whole bundle.)
                if !is_opener && data.len() > crate::config::MAX_LINK_DATA_FROM_OPENER {
                    continue;
                }
                let frame = ServerFrame::LinkData {
                    channel,
                    data: Some(data),
                };
                if let Some(frame) = crate::connection::serialize(&frame) {
                    party.deliver(&frame, &shared.metrics);
                }
            }
            Hint::LinkClosed { node, channel } if node == cluster.node => {
                shared.links.ended_elsewhere(&channel, &shared.metrics);
            }
            Hint::LinkData { .. } | Hint::LinkClosed { .. } => {}
        }
    }
}

/// Another node asks for a link channel whose joiner connected there: if this node holds it,
/// the joiner is recorded as on that node, the opener is told its peer arrived, and the answer
/// names this node. Nodes that do not hold it stay silent (the asker takes the first answer).
async fn answer_link_join(
    shared: &Shared,
    cluster: &Cluster,
    channel: &str,
    message: &async_nats::Message,
) {
    let (Some(channel), Some(reply)) = (from_hex::<32>(channel), &message.reply) else {
        return;
    };
    let Some(node) = std::str::from_utf8(&message.payload)
        .ok()
        .filter(|node| valid_prefix(node))
    else {
        return;
    };
    let Ok(opener) = shared.links.join_from(&channel, node.to_string()) else {
        return;
    };
    if cluster
        .client
        .publish(reply.clone(), cluster.node.clone().into_bytes().into())
        .await
        .is_err()
    {
        // The joiner's node will time out and refuse its joiner; end the channel here too.
        shared.links.ended_elsewhere(&channel, &shared.metrics);
        return;
    }
    if let Some(frame) = crate::connection::serialize(&ServerFrame::LinkData {
        channel,
        data: None,
    }) {
        opener.deliver(&frame, &shared.metrics);
    }
}

/// Delivers the inbox items `ids` of `device` (stored by another node) to its connections here.
fn deliver_inbox(shared: &Shared, cluster: &Cluster, device: &DeviceId, ids: &[u64]) {
    if !shared.hub.is_connected(device) {
        return;
    }
    let Some(first) = ids.iter().min() else {
        return;
    };
    let wanted: HashSet<u64> = ids.iter().copied().collect();
    let after = first.saturating_sub(1);
    // Items are stored in id order; the ones named are among the first `ids.len()` after the
    // smallest, unless others (stored meanwhile, delivered by their own hints) lie between.
    let items = match shared.storage.inbox(device, after, CATCH_UP_PAGE) {
        Ok(items) => items,
        Err(e) => {
            crate::throttle::storage_error(&e);
            return;
        }
    };
    let items: Vec<_> = items
        .into_iter()
        .filter(|item| wanted.contains(&item.inbox_id))
        .collect();
    if items.is_empty() {
        return;
    }
    cluster
        .metrics
        .inbox_caught_up
        .fetch_add(items.len() as u64, Relaxed);
    if let Some(frame) = crate::connection::serialize(&ServerFrame::Inbox { items }) {
        shared.hub.deliver([device], &frame, None, &shared.metrics);
    }
}

/// Delivers `user`'s current device list to `device`'s connections here.
fn deliver_list(shared: &Shared, device: &DeviceId, user: &UserId) {
    if !shared.hub.is_connected(device) {
        return;
    }
    match shared.storage.device_list(user) {
        Ok(Some(list)) => {
            if let Some(frame) = crate::connection::serialize(&ServerFrame::DeviceList { list }) {
                shared.hub.deliver([device], &frame, None, &shared.metrics);
            }
        }
        Ok(None) => {}
        Err(e) => crate::throttle::storage_error(&e),
    }
}

async fn catch_up_loop(shared: Arc<Shared>, cluster: Arc<Cluster>) {
    loop {
        cluster.wake.notified().await;
        let groups: Vec<GroupId> = match cluster.dirty.lock() {
            Ok(mut dirty) => dirty.drain().collect(),
            Err(_) => Vec::new(),
        };
        for group in groups {
            if let Err(e) = catch_up(&shared, &cluster, group).await {
                crate::throttle::storage_error(&e);
                // Tried again at the next poll.
            }
        }
    }
}

/// Reads what other nodes stored in `group` since this node last looked — ops (applied to the
/// group's state, so this node enforces them) and messages — and delivers it to this node's
/// connections, in seq order.
pub async fn catch_up(
    shared: &Shared,
    cluster: &Cluster,
    group: GroupId,
) -> Result<(), crate::storage::StorageError> {
    let Some(entry) = shared.groups.get_or_load(shared.storage.as_ref(), &group)? else {
        return Ok(());
    };
    let mut entry = entry.lock().await;
    refresh(shared, &mut entry)?;
    let caught_up = entry.caught_up.clone();
    let devices = entry.devices.clone();
    if !devices.iter().any(|d| shared.hub.is_connected(d)) {
        // Nobody here to deliver to: only remember where the group stands (clients that
        // connect here later sync by seq).
        let last = shared.storage.last_seq(&group)?.0;
        caught_up.fetch_max(last, Relaxed);
        note_stored(&mut entry, last);
        return Ok(());
    }
    loop {
        let after = caught_up.load(Relaxed);
        let page = shared.storage.messages(&group, Seq(after), CATCH_UP_PAGE)?;
        let Some(last) = page.last().map(|m| m.seq.0) else {
            break;
        };
        let full = page.len() == CATCH_UP_PAGE;
        cluster
            .metrics
            .messages_caught_up
            .fetch_add(page.len() as u64, Relaxed);
        for message in page {
            let frame = ServerFrame::Message {
                group,
                seq: message.seq,
                received_at: message.received_at,
                envelope: message.envelope,
            };
            if let Some(frame) = crate::connection::serialize(&frame) {
                shared
                    .hub
                    .deliver(devices.iter(), &frame, None, &shared.metrics);
            }
        }
        caught_up.fetch_max(last, Relaxed);
        note_stored(&mut entry, last);
        if !full {
            break;
        }
    }
    Ok(())
}

/// With a cluster, reads the ops other nodes appended to the group since this node last
/// looked, applies those that verify and delivers them to this node's connections (removed
/// devices too); does nothing on a node of its own. Called under the group's lock, before the
/// node decides anything on the group's state that a client may have seen newer elsewhere.
pub fn refresh(
    shared: &Shared,
    entry: &mut crate::groups::GroupEntry,
) -> Result<(), crate::storage::StorageError> {
    let Some(cluster) = &shared.cluster else {
        return Ok(());
    };
    let group = entry.state.group();
    let (ops, before) = entry.catch_up_ops(shared.storage.as_ref())?;
    if ops.is_empty() {
        return Ok(());
    }
    cluster
        .metrics
        .ops_caught_up
        .fetch_add(ops.len() as u64, Relaxed);
    let after = entry.devices.clone();
    shared.groups.update_devices(group, &before, &after);
    let removed: Vec<DeviceId> = before
        .iter()
        .filter(|d| !after.contains(d))
        .copied()
        .collect();
    for (seq, op) in ops {
        if let Some(frame) = crate::connection::serialize(&ServerFrame::Op { group, op, seq }) {
            shared
                .hub
                .deliver(after.iter().chain(&removed), &frame, None, &shared.metrics);
        }
    }
    Ok(())
}

/// Messages up to `last` are stored: this node's next post to the group goes after them (when
/// none of its own posts is in flight, whose seqs were handed out already).
fn note_stored(entry: &mut crate::groups::GroupEntry, last: u64) {
    if entry.in_flight.with(|posts| posts.is_empty()) {
        entry.next_seq = entry.next_seq.max(last.saturating_add(1));
    }
}

async fn poll_loop(shared: Arc<Shared>, cluster: Arc<Cluster>, mut stop: watch::Receiver<bool>) {
    loop {
        let interval = if cluster.nats_connected() {
            POLL_WITH_NATS
        } else {
            POLL_WITHOUT_NATS
        };
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = cluster.reconnected.notified() => {}
            _ = stop.changed() => return,
        }
        cluster.metrics.polls.fetch_add(1, Relaxed);
        // Where every group stands, in one read; only the groups that moved past what this
        // node knows (or that it does not know: created elsewhere) are read further.
        let heads = match shared.storage.all_heads() {
            Ok(heads) => heads,
            Err(e) => {
                crate::throttle::storage_error(&e);
                continue;
            }
        };
        let known: HashMap<GroupId, _> = shared.groups.all().into_iter().collect();
        for head in heads {
            let moved = match known.get(&head.group) {
                None => true,
                Some(entry) => match entry.try_lock() {
                    Ok(entry) => {
                        head.op_seq > entry.stored_head
                            || head.last_seq.0 > entry.caught_up.load(Relaxed)
                    }
                    // Busy: look anyway.
                    Err(_) => true,
                },
            };
            if moved {
                cluster.mark(head.group);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_hint_reads_back_as_itself() {
        let group = GroupId([7; 16]);
        let device = DeviceId([9; 32]);
        let user = UserId([3; 16]);
        for hint in [
            Hint::Message { group, seq: 12 },
            Hint::Op { group, seq: 0 },
            Hint::Inbox {
                device,
                ids: vec![4, 5, 900],
            },
            Hint::Unlinked { device },
            Hint::DeviceList { device, user },
            Hint::LinkData {
                node: "0a1b".into(),
                channel: [5; 32],
                data: vec![0, 1, 2, 255],
            },
            Hint::LinkClosed {
                node: "0a1b".into(),
                channel: [6; 32],
            },
        ] {
            let (subject, payload) = hint.encode("confide-test");
            assert_eq!(Hint::decode("confide-test", &subject, &payload), Some(hint));
        }
    }

    #[test]
    fn malformed_or_foreign_hints_are_ignored() {
        let group = GroupId([7; 16]);
        for (subject, payload) in [
            (
                format!("other.group.{}", hex::encode(group.0)),
                "m:1".to_string(),
            ),
            (
                format!("confide.group.{}", hex::encode(group.0)),
                "m:x".into(),
            ),
            ("confide.group.nothex".into(), "m:1".into()),
            (
                format!("confide.group.{}", hex::encode(group.0)),
                "z:1".into(),
            ),
            (
                format!("confide.device.{}", hex::encode([1u8; 32])),
                "i:1,,2".into(),
            ),
            ("confide".into(), "".into()),
        ] {
            assert_eq!(
                Hint::decode("confide", &subject, payload.as_bytes()),
                None,
                "{subject} {payload}"
            );
        }
    }

    #[test]
    fn prefixes_are_single_subject_tokens() {
        assert!(valid_prefix("confide-prod_1"));
        assert!(!valid_prefix(""));
        assert!(!valid_prefix("a.b"));
        assert!(!valid_prefix("a*"));
        assert!(!valid_prefix(&"a".repeat(65)));
    }
}
