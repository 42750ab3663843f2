//! The fan-out load generator shared by the throughput, latency, durability and slow-consumer
//! scenarios.
//!
//! **Posts.** Every post is a real `post` frame with an envelope the server accepts: the right
//! group and epoch, a fresh (sender, iteration) pair and so a fresh message id, a ciphertext of
//! a padding bucket's length plus the AEAD tag, and a valid Ed25519 signature by the sender's
//! device. Posts are made and signed before the clock starts, so the measured work is the
//! server's (and the transport's), not the load generator's cryptography. Since the harness
//! never decrypts, the ciphertext is random bytes of the right length; the server cannot tell
//! the difference (it checks only the sender, the version and the length; since issue 20 it
//! leaves the signature to the recipients, who check it in a real client).
//!
//! **Timestamps in the payload.** The first eight bytes of each envelope's franking tag carry
//! the post's *intended* send time (nanoseconds after the run's start), the ninth the server
//! node the sender is connected to, and the next four the sender's number in the run. The
//! franking tag is opaque to the server and covered by the sender's signature, so it travels
//! untouched to every recipient, who reads it from the delivered frame without decrypting.
//! Latency is measured from the intended time, so a sender that falls behind its schedule is
//! charged for it (no coordinated omission); a recipient on another node than the sender
//! records it as a cross-node delivery as well.
//!
//! **What counts as a delivery.** The first copy of each message (by its seq in the group) to
//! each member other than its sender. A second copy of a seq, and a member's own post
//! delivered back to it, are counted apart ([`RunResult::duplicates`], [`RunResult::echoes`]),
//! as is a message that arrives after a later seq of its group ([`RunResult::out_of_order`]:
//! a real client would sync): several nodes can cause all three.
//!
//! **Refused posts are posted again, as a client does.** A post refused for a passing reason
//! (`storage`, `rate_limited`, `shutting_down`: the reference client's policy, PROTOCOL.md
//! §9.8) is sent again, the same frame, after the `retry_after_ms` the refusal names (clamped
//! as the reference client clamps it), and counted ([`RunResult::reposts`]). Several nodes
//! refuse posts with `storage` when they keep losing a group's next seq to one another.
//!
//! **Pacing.** Closed loop ([`Pace::Window`]): each sender keeps a fixed number of posts in
//! flight — the maximum-throughput runs. A post stays in flight until it is acknowledged *and*
//! delivered: every sender takes one credit per recipient from its group's pool before it
//! posts, and every delivery returns one, so no member's queue on the server grows without
//! bound (an acknowledgement alone says the post is stored and queued, not delivered). Open loop ([`Pace::Rate`]): one pacing thread
//! releases posts at a fixed total rate regardless of replies — the latency runs.

use anyhow::{anyhow, bail};
use base64::Engine as _;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt as _, StreamExt as _};
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use confide_protocol::envelope::{ENVELOPE_VERSION, Envelope, LABEL_ENVELOPE_SIG};
use confide_protocol::primitives::AEAD_TAG_LEN;
use confide_protocol::{ClientFrame, EpochRef, GroupId, RequestId, Signature};

use crate::database::FreshDatabase;
use crate::net::{Device, Group, Ws};
use crate::server::RunningServer;

/// Lowest latency the histograms hold (1 µs, in ns).
pub(crate) const HIST_LOW_NS: u64 = 1_000;
/// Highest latency the histograms hold (60 s, in ns).
const HIST_HIGH_NS: u64 = 60_000_000_000;
/// How often the monitor samples counters and the server's memory.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_millis(50);
/// Time between arming the run and its first post, so every task is waiting when it starts.
pub(crate) const LEAD_IN: Duration = Duration::from_millis(200);
/// A run in which nothing is sent, acknowledged or delivered for this long has failed.
pub(crate) const DRAIN_GRACE: Duration = Duration::from_secs(30);
/// How often the run checks for progress while it waits.
const PROGRESS_CHECK: Duration = Duration::from_secs(1);
/// How long a stalled reader is given, once it reads again, to find out how the server treated
/// it.
const STALL_DRAIN: Duration = Duration::from_secs(15);
/// A stalled reader that gets nothing for this long after reading again is still connected.
const STALL_QUIET: Duration = Duration::from_secs(1);
/// The steady-state window must span at least this many samples, or the whole run is used.
const MIN_WINDOW_SAMPLES: usize = 4;
/// The marker before a base64 franking tag in a delivered frame.
const TAG_MARKER: &str = r#""franking_tag":""#;
/// Where in the franking tag the sender's node is (after the 8-byte stamp).
const NODE_BYTE: usize = 8;
/// Where in the franking tag the sender's number (4 bytes, little-endian) is.
const SENDER_BYTES: std::ops::Range<usize> = 9..13;
/// Base64 characters of the franking tag read back: 20 are 15 bytes, enough for the stamp, the
/// node and the sender.
const TAG_PREFIX_CHARS: usize = 20;
/// The marker before a delivered message's seq (serialized before its envelope).
const SEQ_MARKER: &str = r#""seq":"#;
/// The sender number of a member that does not send.
const NO_SENDER: u32 = u32::MAX;
/// The request id of a sender's first post; post `k` is `FIRST_POST_ID + k`.
const FIRST_POST_ID: u64 = 1_000;
/// How long a refused post waits when the refusal names no time (the reference client's
/// `OUTBOX_RETRY`).
const REPOST_DEFAULT: Duration = Duration::from_secs(2);
/// Bounds of the wait before a refused post is sent again (the reference client's
/// `OUTBOX_RETRY_MIN` and `OUTBOX_RETRY_MAX`).
const REPOST_MIN: Duration = Duration::from_millis(250);
/// See [`REPOST_MIN`].
const REPOST_MAX: Duration = Duration::from_secs(60);

/// How a run sends.
#[derive(Clone, Copy, Debug)]
pub enum Pace {
    /// Closed loop: each sender keeps this many posts unacknowledged.
    Window(usize),
    /// Open loop: this many posts per second in total, each sent at its scheduled time.
    Rate(f64),
}

/// One run's parameters.
#[derive(Clone, Debug)]
pub struct RunSpec {
    /// How posts are paced.
    pub pace: Pace,
    /// Posts each sending member makes.
    pub posts_per_sender: usize,
    /// Padded plaintext size: the ciphertext is this plus the 16-byte AEAD tag.
    pub bucket: usize,
    /// Latencies of posts scheduled before this are not recorded.
    pub warmup: Duration,
    /// Members (group, member) who never send.
    pub silent: Vec<(usize, usize)>,
    /// A member (group, member) that stops reading this long after the start.
    pub stall: Option<(usize, usize, Duration)>,
    /// Whether members receive each other's posts (false: every group has one member and the
    /// run measures acknowledgements only).
    pub expect_deliveries: bool,
    /// Open loop: release posts member by member across the groups (member 0 of every group,
    /// then member 1, …), so that each group's posts are spread evenly over the run, instead of
    /// group by group, where a group's members post back to back.
    pub interleave_groups: bool,
}

/// What a run measured.
#[derive(Debug)]
pub struct RunResult {
    /// Posts sent.
    pub posts: u64,
    /// Posts acknowledged.
    pub acks: u64,
    /// Messages delivered to members.
    pub delivered: u64,
    /// From the first post to the last delivery or acknowledgement.
    pub elapsed: Duration,
    /// Acknowledged posts per second while 10–90 % of the posts were being sent.
    pub acks_per_sec: f64,
    /// Deliveries per second over the same interval.
    pub deliveries_per_sec: f64,
    /// Send-to-delivery latencies in ns (open-loop runs), stalled member excluded.
    pub latency: Histogram<u64>,
    /// The same, of deliveries to a member on the sender's server node.
    pub same_node: Histogram<u64>,
    /// The same, of deliveries to a member on another node than the sender's.
    pub cross_node: Histogram<u64>,
    /// Messages delivered to a member on another node than the sender's (all runs).
    pub delivered_cross_node: u64,
    /// Further copies of a message a member had already received (not counted as delivered).
    pub duplicates: u64,
    /// Members' own posts delivered back to them (not counted as delivered).
    pub echoes: u64,
    /// Deliveries that arrived after a later message of the same group.
    pub out_of_order: u64,
    /// Posts refused for a passing reason and sent again, by the refusal's code.
    pub reposts: std::collections::BTreeMap<String, u64>,
    /// Messages the members were to receive (every other member's posts; 0 without fan-out).
    pub expected_deliveries: u64,
    /// CPU seconds the backends of the servers' PostgreSQL database used during the run (0 on
    /// sled).
    pub database_cpu: f64,
    /// The server's resident memory (KiB) sampled during the run.
    pub rss_kib: Vec<u64>,
    /// What the stalled member found when it read again.
    pub stalled_outcome: Option<String>,
    /// CPU seconds the server's process used during the run.
    pub server_cpu: f64,
    /// Confide's durable flushes (group commits) so far, if it reports them.
    pub flushes: Option<FlushStats>,
    /// CPU seconds this process (the load generator, and the server when in-process) used.
    pub harness_cpu: f64,
}

impl RunResult {
    /// A latency quantile in milliseconds.
    pub fn latency_ms(&self, quantile: f64) -> f64 {
        self.latency.value_at_quantile(quantile) as f64 / 1e6
    }
}

/// A fresh latency histogram.
pub fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(HIST_LOW_NS, HIST_HIGH_NS, 3)?)
}

/// Makes and signs `count` post frames from `device`, sender number `sender` of the run,
/// connected to server node `node`, as iterations `0..count` of its sender chain in `epoch`,
/// each carrying `stamp(k)`, `node` and `sender` in its payload.
#[allow(clippy::too_many_arguments)]
pub fn make_posts(
    device: &Device,
    sender: u32,
    node: u8,
    group: GroupId,
    epoch: EpochRef,
    bucket: usize,
    count: usize,
    stamp: impl Fn(usize) -> u64,
) -> anyhow::Result<Vec<Utf8Bytes>> {
    use rand_core::Rng as _;
    let mut rng = crate::net::rng();
    let mut ciphertext = vec![0u8; bucket + AEAD_TAG_LEN];
    rng.fill_bytes(&mut ciphertext);
    let mut out = Vec::with_capacity(count);
    for k in 0..count {
        let mut franking_tag = [0u8; 32];
        rng.fill_bytes(&mut franking_tag);
        franking_tag[..NODE_BYTE].copy_from_slice(&stamp(k).to_le_bytes());
        franking_tag[NODE_BYTE] = node;
        franking_tag[SENDER_BYTES].copy_from_slice(&sender.to_le_bytes());
        let mut envelope = Envelope {
            v: ENVELOPE_VERSION,
            group,
            epoch: epoch.epoch,
            epoch_hash: epoch.hash,
            sender: device.identity.device_id(),
            iteration: u32::try_from(k)?,
            franking_tag,
            ciphertext: ciphertext.clone(),
            signature: Signature([0u8; 64]),
        };
        envelope.signature = device.identity.sign(
            LABEL_ENVELOPE_SIG,
            &[
                &envelope.header(),
                &envelope.franking_tag,
                &envelope.ciphertext,
            ],
        );
        let frame = ClientFrame::Post {
            id: RequestId(k as u64 + FIRST_POST_ID),
            envelope,
        };
        out.push(frame.to_json()?.into());
    }
    Ok(out)
}

/// What a frame from the server is, judged by its first bytes (the `type` tag is serialized
/// first), so that receiving costs the harness as little as possible.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Received {
    /// A post delivered to this member (`message` from Confide, the forwarded `post` from the
    /// relay).
    Delivery,
    /// This member's own post acknowledged.
    Ack,
    /// An error frame: the run is invalid.
    Error,
    /// The server is closing the connection.
    GoingAway,
    /// Anything else (ops from set-up, pongs).
    Other,
}

fn classify(text: &str) -> Received {
    if text.starts_with(r#"{"type":"message""#) || text.starts_with(r#"{"type":"post","#) {
        Received::Delivery
    } else if text.starts_with(r#"{"type":"posted""#) {
        Received::Ack
    } else if text.starts_with(r#"{"type":"error""#) {
        Received::Error
    } else if text.starts_with(r#"{"type":"going_away""#) {
        Received::GoingAway
    } else {
        Received::Other
    }
}

/// What a delivered frame's franking tag carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    /// Intended send time, ns after the run's start.
    at: u64,
    /// The sender's server node.
    node: u8,
    /// The sender's number in the run.
    sender: u32,
}

/// The stamp carried in a delivered frame's franking tag.
fn stamp_of(text: &str) -> Option<Stamp> {
    let start = text.find(TAG_MARKER)? + TAG_MARKER.len();
    let prefix = text.get(start..start + TAG_PREFIX_CHARS)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(prefix)
        .ok()?;
    Some(Stamp {
        at: u64::from_le_bytes(bytes.get(..NODE_BYTE)?.try_into().ok()?),
        node: *bytes.get(NODE_BYTE)?,
        sender: u32::from_le_bytes(bytes.get(SENDER_BYTES)?.try_into().ok()?),
    })
}

/// A delivered message's seq in its group (`None` for the relay, which has none).
fn seq_of(text: &str) -> Option<u64> {
    let start = text.find(SEQ_MARKER)? + SEQ_MARKER.len();
    let digits = text.get(start..)?;
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits.get(..end)?.parse().ok()
}

/// The seqs one member has received, as a bit set (seqs of a group are dense from 1).
#[derive(Default)]
struct Seen {
    bits: Vec<u64>,
    highest: u64,
}

impl Seen {
    /// Records `seq`; whether it is new, and whether a later seq came first.
    fn record(&mut self, seq: u64) -> (bool, bool) {
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if self.bits.len() <= word {
            self.bits.resize(word + 1, 0);
        }
        let new = self.bits[word] & (1 << bit) == 0;
        self.bits[word] |= 1 << bit;
        let late = seq < self.highest;
        self.highest = self.highest.max(seq);
        (new, late)
    }
}

#[derive(Default)]
struct Counters {
    posts: AtomicU64,
    acks: AtomicU64,
    delivered: AtomicU64,
    delivered_cross_node: AtomicU64,
    duplicates: AtomicU64,
    echoes: AtomicU64,
    out_of_order: AtomicU64,
    reposts: Mutex<std::collections::BTreeMap<String, u64>>,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
}

struct ReaderSpec {
    expected_deliveries: u64,
    expected_acks: u64,
    window: Option<Arc<Semaphore>>,
    credits: Option<Arc<Semaphore>>,
    stall_at: Option<Duration>,
    record_latency: bool,
    warmup_ns: u64,
    /// The server node this member is connected to.
    node: u8,
    /// This member's sender number ([`NO_SENDER`] if it does not send).
    sender: u32,
    /// Where to ask this member's writer to send post `k` again (`None` if it does not send).
    repost: Option<mpsc::UnboundedSender<usize>>,
}

struct ReaderResult {
    same_node: Histogram<u64>,
    cross_node: Histogram<u64>,
    stalled_outcome: Option<String>,
}

type Sink = SplitSink<Ws, WsMessage>;
type Stream = SplitStream<Ws>;

async fn reader(
    mut stream: Stream,
    spec: ReaderSpec,
    start: tokio::time::Instant,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<ReaderResult> {
    let (mut same_node, mut cross_node) = (histogram()?, histogram()?);
    let (mut delivered, mut acks) = (0u64, 0u64);
    let mut seen = Seen::default();
    let stall = spec.stall_at.map(|d| start + d);
    let stall_sleep = tokio::time::sleep_until(stall.unwrap_or(start));
    tokio::pin!(stall_sleep);
    loop {
        if stall.is_none() && delivered >= spec.expected_deliveries && acks >= spec.expected_acks {
            break;
        }
        let message = tokio::select! {
            message = stream.next() => message,
            _ = stop.changed() => break,
            _ = &mut stall_sleep, if stall.is_some() => {
                // Stop reading until the run is over, then see what the server did.
                let _ = stop.wait_for(|s| *s).await;
                let outcome = stalled_outcome(&mut stream).await;
                return Ok(ReaderResult { same_node, cross_node, stalled_outcome: Some(outcome) });
            }
        };
        let text = match message {
            Some(Ok(WsMessage::Text(text))) => text,
            Some(Ok(WsMessage::Close(frame))) => {
                bail!("the server closed a member's connection mid-run: {frame:?}")
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => bail!("a member's connection failed mid-run: {e}"),
            None => bail!("a member's connection ended mid-run"),
        };
        match classify(text.as_str()) {
            Received::Delivery => {
                let stamp = stamp_of(text.as_str());
                if stamp.is_some_and(|st| st.sender == spec.sender) {
                    counters.echoes.fetch_add(1, Relaxed);
                    continue;
                }
                if let Some(seq) = seq_of(text.as_str()) {
                    let (new, late) = seen.record(seq);
                    if !new {
                        counters.duplicates.fetch_add(1, Relaxed);
                        continue;
                    }
                    if late {
                        counters.out_of_order.fetch_add(1, Relaxed);
                    }
                }
                delivered += 1;
                counters.delivered.fetch_add(1, Relaxed);
                if let Some(credits) = &spec.credits {
                    credits.add_permits(1);
                }
                let Some(stamp) = stamp else {
                    continue;
                };
                if stamp.node != spec.node {
                    counters.delivered_cross_node.fetch_add(1, Relaxed);
                }
                if spec.record_latency && stamp.at >= spec.warmup_ns {
                    let now = start.elapsed().as_nanos() as u64;
                    let latency = if stamp.node == spec.node {
                        &mut same_node
                    } else {
                        &mut cross_node
                    };
                    latency.saturating_record(now.saturating_sub(stamp.at).max(HIST_LOW_NS));
                }
            }
            Received::Ack => {
                acks += 1;
                counters.acks.fetch_add(1, Relaxed);
                if let Some(window) = &spec.window {
                    window.add_permits(1);
                }
            }
            Received::Error if repost_later(text.as_str(), &spec, &counters) => {}
            Received::Error | Received::GoingAway => {
                counters.errors.fetch_add(1, Relaxed);
                if let Ok(mut first) = counters.first_error.lock() {
                    first.get_or_insert_with(|| text.as_str().chars().take(300).collect());
                }
            }
            Received::Other => {}
        }
    }
    Ok(ReaderResult {
        same_node,
        cross_node,
        stalled_outcome: None,
    })
}

/// If `text` refuses one of this member's posts for a passing reason, schedules it to be sent
/// again after the wait the refusal names (as the reference client does) and returns true.
fn repost_later(text: &str, spec: &ReaderSpec, counters: &Counters) -> bool {
    use confide_protocol::{ErrorCode, ServerFrame};
    let Some(repost) = &spec.repost else {
        return false;
    };
    let Ok(ServerFrame::Error {
        id: Some(id),
        code,
        retry_after_ms,
        ..
    }) = ServerFrame::from_json(text, text.len().saturating_add(1))
    else {
        return false;
    };
    if !matches!(
        code,
        ErrorCode::Storage | ErrorCode::RateLimited | ErrorCode::ShuttingDown
    ) {
        return false;
    }
    let Some(k) =
        id.0.checked_sub(FIRST_POST_ID)
            .and_then(|k| usize::try_from(k).ok())
    else {
        return false;
    };
    let wait = retry_after_ms
        .map_or(REPOST_DEFAULT, Duration::from_millis)
        .clamp(REPOST_MIN, REPOST_MAX);
    if let Ok(mut reposts) = counters.reposts.lock() {
        *reposts.entry(code.as_str().to_string()).or_default() += 1;
    }
    let repost = repost.clone();
    tokio::spawn(async move {
        tokio::time::sleep(wait).await;
        let _ = repost.send(k);
    });
    true
}

/// Reads what a stalled member's connection still holds: a `going_away` notice and a close
/// mean the server cut the slow consumer loose, as designed.
async fn stalled_outcome(stream: &mut Stream) -> String {
    let deadline = tokio::time::Instant::now() + STALL_DRAIN;
    let mut frames = 0u64;
    loop {
        let quiet = tokio::time::Instant::now() + STALL_QUIET;
        let next = tokio::time::timeout_at(deadline.min(quiet), stream.next()).await;
        match next {
            Err(_) => {
                return format!("still open after draining {frames} frames (not disconnected)");
            }
            Ok(Some(Ok(WsMessage::Text(text)))) => {
                if classify(text.as_str()) == Received::GoingAway {
                    let reason: String = text.as_str().chars().take(200).collect();
                    return format!("disconnected by the server after {frames} frames: {reason}");
                }
                frames += 1;
            }
            Ok(Some(Ok(WsMessage::Close(frame)))) => {
                return format!("closed by the server after {frames} frames: {frame:?}");
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => {
                return format!("connection reset after {frames} frames: {e}");
            }
            Ok(None) => return format!("connection ended after {frames} frames"),
        }
    }
}

/// Flow control of a closed-loop sender.
struct Window {
    /// Unacknowledged posts this sender may still make; one comes back per acknowledgement.
    acks: Arc<Semaphore>,
    /// Undelivered copies the group may still have queued; one comes back per delivery.
    credits: Option<(Arc<Semaphore>, u32)>,
}

/// Sends `posts` as the window and the group's credits allow, and any of them again when its
/// reader asks, until the run stops.
async fn window_writer(
    mut sink: Sink,
    posts: Vec<Utf8Bytes>,
    window: Window,
    mut reposts: mpsc::UnboundedReceiver<usize>,
    mut stop: watch::Receiver<bool>,
    start: tokio::time::Instant,
    counters: Arc<Counters>,
) -> anyhow::Result<Sink> {
    tokio::time::sleep_until(start).await;
    let mut next = 0;
    loop {
        // Both permits are kept until both are had, so that a turn of the loop that takes
        // another branch gives back what it held.
        let permits = async {
            let acks = window.acks.acquire().await?;
            let credits = match &window.credits {
                Some((credits, recipients)) => Some(credits.acquire_many(*recipients).await?),
                None => None,
            };
            acks.forget();
            if let Some(credits) = credits {
                credits.forget();
            }
            Ok::<_, tokio::sync::AcquireError>(())
        };
        tokio::select! {
            biased;
            Some(k) = reposts.recv() => {
                if let Some(post) = posts.get(k) {
                    sink.send(WsMessage::Text(post.clone())).await?;
                }
            }
            got = permits, if next < posts.len() => {
                got?;
                sink.send(WsMessage::Text(posts[next].clone())).await?;
                counters.posts.fetch_add(1, Relaxed);
                next += 1;
            }
            _ = stop.changed() => break,
        }
    }
    Ok(sink)
}

/// Sends each post the pacer releases, and any post again when its reader asks, until the run
/// stops.
async fn paced_writer(
    mut sink: Sink,
    mut released: mpsc::UnboundedReceiver<Utf8Bytes>,
    posts: Vec<Utf8Bytes>,
    mut reposts: mpsc::UnboundedReceiver<usize>,
    mut stop: watch::Receiver<bool>,
    counters: Arc<Counters>,
) -> anyhow::Result<Sink> {
    let mut pacing = true;
    loop {
        tokio::select! {
            biased;
            Some(k) = reposts.recv() => {
                if let Some(post) = posts.get(k) {
                    sink.send(WsMessage::Text(post.clone())).await?;
                }
            }
            post = released.recv(), if pacing => match post {
                Some(post) => {
                    sink.send(WsMessage::Text(post)).await?;
                    counters.posts.fetch_add(1, Relaxed);
                }
                None => pacing = false,
            },
            _ = stop.changed() => break,
        }
    }
    Ok(sink)
}

/// Releases post `j` (sender `j % senders`, its `j / senders`-th post) at `start + j / rate`.
fn pacer(
    start: Instant,
    period_ns: u64,
    mut pools: Vec<std::vec::IntoIter<Utf8Bytes>>,
    queues: Vec<mpsc::UnboundedSender<Utf8Bytes>>,
) {
    let senders = queues.len();
    let total: usize = pools.iter().map(|p| p.len()).sum();
    for j in 0..total {
        let due = start + Duration::from_nanos(j as u64 * period_ns);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let s = j % senders;
        if let Some(post) = pools[s].next() {
            let _ = queues[s].send(post);
        }
    }
}

/// Intended send time of sender `s`'s `k`-th post in an open-loop run, ns after the start.
pub fn scheduled_ns(s: usize, k: usize, senders: usize, period_ns: u64) -> u64 {
    (k * senders + s) as u64 * period_ns
}

/// Runs one load against `groups` (whose connections it consumes) on `server`.
pub async fn run(
    groups: Vec<Group>,
    spec: &RunSpec,
    server: &RunningServer,
) -> anyhow::Result<RunResult> {
    run_on(groups, spec, &[server], server.database()).await
}

/// Runs one load against `groups` (whose connections it consumes), whose members are connected
/// to `servers` (the nodes of one deployment; each group's `nodes` says which member is on
/// which), storing in `database` if the harness made one: CPU and memory are summed over the
/// servers' processes, group commits over their metrics.
pub async fn run_on(
    groups: Vec<Group>,
    spec: &RunSpec,
    servers: &[&RunningServer],
    database: Option<&FreshDatabase>,
) -> anyhow::Result<RunResult> {
    // Who sends, and each sender's posts.
    let mut senders: Vec<(usize, usize)> = Vec::new();
    for (g, group) in groups.iter().enumerate() {
        for m in 0..group.members.len() {
            if !spec.silent.contains(&(g, m)) {
                senders.push((g, m));
            }
        }
    }
    if spec.interleave_groups {
        senders.sort_by_key(|&(g, m)| (m, g));
    }
    let n_senders = senders.len().max(1);
    let period_ns = match spec.pace {
        Pace::Rate(rate) => (1e9 / rate.max(1e-3)) as u64,
        Pace::Window(_) => 0,
    };
    let record_latency = matches!(spec.pace, Pace::Rate(_));
    let pools = make_all_posts(&groups, &senders, spec, period_ns)?;

    let counters = Arc::new(Counters::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let lead = LEAD_IN;
    let start_std = Instant::now() + lead;
    let start = tokio::time::Instant::from_std(start_std);
    let warmup_ns = spec.warmup.as_nanos() as u64;

    let mut readers = Vec::new();
    let mut stalled_reader = None;
    let mut writers = tokio::task::JoinSet::new();
    // By sender number: the pacer releases sender `s`'s posts at the times stamped in them.
    let mut queues: Vec<
        Option<(
            mpsc::UnboundedSender<Utf8Bytes>,
            std::vec::IntoIter<Utf8Bytes>,
        )>,
    > = (0..senders.len()).map(|_| None).collect();
    let mut pools: Vec<Option<Vec<Utf8Bytes>>> = pools.into_iter().map(Some).collect();
    let mut expected_total = 0u64;
    for (g, group) in groups.into_iter().enumerate() {
        let size = group.members.len() as u64;
        let nodes = group.nodes.clone();
        let group_senders = senders.iter().filter(|(sg, _)| *sg == g).count() as u64;
        let credits = match spec.pace {
            Pace::Window(w) if spec.expect_deliveries && size > 1 => {
                let recipients = u32::try_from(size - 1)?;
                let pool = group_senders as usize * w.max(1) * recipients as usize;
                Some((Arc::new(Semaphore::new(pool)), recipients))
            }
            _ => None,
        };
        for (m, ws) in group.conns.into_iter().enumerate() {
            let (sink, stream) = ws.split();
            let sends = !spec.silent.contains(&(g, m));
            let others_sending = group_senders - u64::from(sends);
            let expected_deliveries = if spec.expect_deliveries && size > 1 {
                others_sending * spec.posts_per_sender as u64
            } else {
                0
            };
            expected_total += expected_deliveries;
            let window = match spec.pace {
                Pace::Window(w) if sends => Some(Arc::new(Semaphore::new(w.max(1)))),
                _ => None,
            };
            let (repost_tx, reposts) = mpsc::unbounded_channel();
            let stall_at = spec
                .stall
                .and_then(|(sg, sm, at)| (sg == g && sm == m).then_some(at));
            let reader_spec = ReaderSpec {
                expected_deliveries,
                expected_acks: if sends {
                    spec.posts_per_sender as u64
                } else {
                    0
                },
                window: window.clone(),
                credits: credits.as_ref().map(|(c, _)| c.clone()),
                stall_at,
                record_latency,
                warmup_ns,
                node: nodes.get(m).copied().unwrap_or(0),
                sender: senders
                    .iter()
                    .position(|&sm| sm == (g, m))
                    .map_or(Ok(NO_SENDER), u32::try_from)?,
                repost: sends.then(|| repost_tx.clone()),
            };
            let task = tokio::spawn(reader(
                stream,
                reader_spec,
                start,
                counters.clone(),
                stop_rx.clone(),
            ));
            if stall_at.is_some() {
                stalled_reader = Some(task);
            } else {
                readers.push(task);
            }
            if !sends {
                // Keep the sending half open (dropping it would not close the socket, but
                // holding it makes the intent plain).
                writers.spawn(async move { Ok::<_, anyhow::Error>(sink) });
                continue;
            }
            let number = senders
                .iter()
                .position(|&sm| sm == (g, m))
                .ok_or_else(|| anyhow!("a sender without a number"))?;
            let posts = pools
                .get_mut(number)
                .and_then(Option::take)
                .ok_or_else(|| anyhow!("no posts for a sender"))?;
            match (spec.pace, window) {
                (Pace::Window(_), Some(acks)) => {
                    let window = Window {
                        acks,
                        credits: credits.clone(),
                    };
                    writers.spawn(window_writer(
                        sink,
                        posts,
                        window,
                        reposts,
                        stop_rx.clone(),
                        start,
                        counters.clone(),
                    ));
                }
                _ => {
                    let (tx, rx) = mpsc::unbounded_channel();
                    // Frames share their bytes: the copy kept for reposts costs a pointer each.
                    let kept = posts.clone();
                    queues[number] = Some((tx, posts.into_iter()));
                    writers.spawn(paced_writer(
                        sink,
                        rx,
                        kept,
                        reposts,
                        stop_rx.clone(),
                        counters.clone(),
                    ));
                }
            }
        }
    }
    let pacer_thread = if let Pace::Rate(_) = spec.pace {
        let (txs, pools): (Vec<_>, Vec<_>) = queues.into_iter().flatten().unzip();
        Some(std::thread::spawn(move || {
            pacer(start_std, period_ns, pools, txs)
        }))
    } else {
        None
    };

    // The servers' processes, each once (in-process servers are all this process).
    let mut pids: Vec<Option<u32>> = servers.iter().map(|s| s.pid()).collect();
    pids.sort();
    pids.dedup();
    let cpu_of = |pids: &[Option<u32>]| -> anyhow::Result<f64> {
        pids.iter()
            .map(|&pid| crate::proc::cpu_seconds(pid))
            .sum::<anyhow::Result<f64>>()
    };
    // Sample progress and the servers' memory until the run ends.
    let monitor = {
        let counters = counters.clone();
        let mut stop = stop_rx.clone();
        let pids = pids.clone();
        tokio::spawn(async move {
            let mut samples: Vec<(Duration, u64, u64, u64)> = Vec::new();
            let mut rss = Vec::new();
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => break,
                }
                samples.push((
                    start_std.elapsed(),
                    counters.posts.load(Relaxed),
                    counters.acks.load(Relaxed),
                    counters.delivered.load(Relaxed),
                ));
                let kib: anyhow::Result<u64> =
                    pids.iter().map(|&pid| crate::proc::rss_kib(pid)).sum();
                if let Ok(kib) = kib {
                    rss.push(kib);
                }
            }
            (samples, rss)
        })
    };

    let database_before = match database {
        Some(db) => Some(db.backend_cpu().await?),
        None => None,
    };
    let server_cpu = cpu_of(&pids)?;
    let harness_cpu = crate::proc::cpu_seconds(None)?;
    let mut results = Vec::new();
    let mut failure = None;
    // Wait for every reader; fail if nothing at all moves for a while (lost messages, a stuck
    // server), however long the run is.
    let progress = || {
        (
            counters.posts.load(Relaxed),
            counters.acks.load(Relaxed),
            counters.delivered.load(Relaxed),
        )
    };
    let (mut last, mut last_change) = (progress(), Instant::now());
    'readers: for task in readers {
        tokio::pin!(task);
        loop {
            match tokio::time::timeout(PROGRESS_CHECK, &mut task).await {
                Ok(Ok(Ok(result))) => results.push(result),
                Ok(Ok(Err(e))) => {
                    failure.get_or_insert(e);
                }
                Ok(Err(e)) => {
                    failure.get_or_insert(e.into());
                }
                Err(_) => {
                    let now = progress();
                    if now != last {
                        (last, last_change) = (now, Instant::now());
                    } else if last_change.elapsed() > DRAIN_GRACE {
                        failure.get_or_insert(anyhow!(
                            "no progress for {DRAIN_GRACE:?}: {} posts, {} acknowledged, {} \
                             delivered",
                            now.0,
                            now.1,
                            now.2
                        ));
                        break 'readers;
                    }
                    continue;
                }
            }
            break;
        }
    }
    let elapsed = start_std.elapsed();
    let server_cpu = cpu_of(&pids)? - server_cpu;
    let harness_cpu = crate::proc::cpu_seconds(None)? - harness_cpu;
    let database_cpu = match (database, &database_before) {
        (Some(db), Some(before)) => crate::database::cpu_between(before, &db.backend_cpu().await?),
        _ => 0.0,
    };
    let _ = stop_tx.send(true);
    let stalled_outcome = match stalled_reader {
        Some(task) => task.await??.stalled_outcome,
        None => None,
    };
    if let Some(thread) = pacer_thread {
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
    let mut sinks = Vec::new();
    while let Some(writer) = writers.join_next().await {
        match writer {
            Ok(Ok(sink)) => sinks.push(sink),
            Ok(Err(e)) => {
                failure.get_or_insert(e);
            }
            Err(e) => {
                failure.get_or_insert(e.into());
            }
        }
    }
    let flushes = FlushStats::of_all(servers).await;
    let (mut samples, rss_kib) = monitor.await?;
    samples.push((
        elapsed,
        counters.posts.load(Relaxed),
        counters.acks.load(Relaxed),
        counters.delivered.load(Relaxed),
    ));
    if counters.errors.load(Relaxed) > 0 {
        let first = counters
            .first_error
            .lock()
            .ok()
            .and_then(|f| f.clone())
            .unwrap_or_default();
        bail!(
            "the server refused {} requests during the run; first: {first}",
            counters.errors.load(Relaxed)
        );
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let (mut latency, mut same_node, mut cross_node) = (histogram()?, histogram()?, histogram()?);
    for r in &results {
        same_node.add(&r.same_node)?;
        cross_node.add(&r.cross_node)?;
    }
    latency.add(&same_node)?;
    latency.add(&cross_node)?;
    let total_posts = (n_senders * spec.posts_per_sender) as u64;
    let (acks_per_sec, deliveries_per_sec) = middle_rates(&samples, total_posts);
    for mut sink in sinks {
        let _ = sink.close().await;
    }
    Ok(RunResult {
        posts: counters.posts.load(Relaxed),
        acks: counters.acks.load(Relaxed),
        delivered: counters.delivered.load(Relaxed),
        elapsed,
        acks_per_sec,
        deliveries_per_sec,
        latency,
        same_node,
        cross_node,
        delivered_cross_node: counters.delivered_cross_node.load(Relaxed),
        duplicates: counters.duplicates.load(Relaxed),
        echoes: counters.echoes.load(Relaxed),
        out_of_order: counters.out_of_order.load(Relaxed),
        reposts: counters
            .reposts
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default(),
        expected_deliveries: expected_total,
        database_cpu,
        rss_kib,
        stalled_outcome,
        server_cpu,
        harness_cpu,
        flushes,
    })
}

/// Confide's group commits, from its metrics: how many, how big, how long.
#[derive(Clone, Debug)]
pub struct FlushStats {
    /// Flushes so far.
    pub count: f64,
    /// Requests (posts, ops, inbox writes) per flush.
    pub mean_batch: f64,
    /// Mean flush time in ms.
    pub mean_ms: f64,
    /// Fraction of flushes that took at most each bound (seconds).
    pub at_most: Vec<(f64, f64)>,
}

impl FlushStats {
    /// Reads the server's metrics; `None` for the relay or if they cannot be read.
    pub async fn of(server: &RunningServer) -> Option<FlushStats> {
        Self::of_all(&[server]).await
    }

    /// The same over several nodes: their metrics added up.
    pub async fn of_all(servers: &[&RunningServer]) -> Option<FlushStats> {
        let mut m: std::collections::HashMap<String, f64> = std::collections::HashMap::new();
        for server in servers {
            for (name, value) in server.metrics().await.ok()? {
                *m.entry(name).or_default() += value;
            }
        }
        let count = *m.get("confide_flush_seconds_count")?;
        if count <= 0.0 {
            return None;
        }
        let mut at_most: Vec<(f64, f64)> = m
            .iter()
            .filter_map(|(k, v)| {
                let bound = k
                    .strip_prefix("confide_flush_seconds_bucket{le=\"")?
                    .strip_suffix("\"}")?
                    .parse::<f64>()
                    .ok()?;
                Some((bound, v / count))
            })
            .collect();
        at_most.sort_by(|a, b| a.0.total_cmp(&b.0));
        Some(FlushStats {
            count,
            mean_batch: m.get("confide_flush_requests_total")? / count,
            mean_ms: m.get("confide_flush_seconds_sum")? / count * 1e3,
            at_most,
        })
    }
}

impl std::fmt::Display for FlushStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.0} group commits of {:.1} requests on average, {:.2} ms each on average",
            self.count, self.mean_batch, self.mean_ms
        )?;
        let shown: Vec<String> = self
            .at_most
            .iter()
            .filter(|(bound, _)| [0.001, 0.005, 0.01, 0.05].contains(bound))
            .map(|(bound, fraction)| format!("{:.1} % ≤ {} ms", fraction * 100.0, bound * 1e3))
            .collect();
        if !shown.is_empty() {
            write!(f, " ({})", shown.join(", "))?;
        }
        Ok(())
    }
}

/// Signs every sender's posts, on every core.
fn make_all_posts(
    groups: &[Group],
    senders: &[(usize, usize)],
    spec: &RunSpec,
    period_ns: u64,
) -> anyhow::Result<Vec<Vec<Utf8Bytes>>> {
    // Only what signing needs crosses threads (connections are not `Sync`).
    let jobs: Vec<(&Device, u8, GroupId, EpochRef)> = senders
        .iter()
        .map(|&(g, m)| {
            let node = groups[g].nodes.get(m).copied().unwrap_or(0);
            (&groups[g].members[m], node, groups[g].id, groups[g].epoch)
        })
        .collect();
    let n = jobs.len();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(n.max(1));
    let chunk = n.div_ceil(threads).max(1);
    let record = matches!(spec.pace, Pace::Rate(_));
    let mut out: Vec<Vec<Utf8Bytes>> = Vec::with_capacity(n);
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let handles: Vec<_> = jobs
            .chunks(chunk)
            .enumerate()
            .map(|(c, part)| {
                scope.spawn(move || -> anyhow::Result<Vec<Vec<Utf8Bytes>>> {
                    part.iter()
                        .enumerate()
                        .map(|(i, &(device, node, group, epoch))| {
                            let s = c * chunk + i;
                            make_posts(
                                device,
                                u32::try_from(s)?,
                                node,
                                group,
                                epoch,
                                spec.bucket,
                                spec.posts_per_sender,
                                |k| {
                                    if record {
                                        scheduled_ns(s, k, n, period_ns)
                                    } else {
                                        0
                                    }
                                },
                            )
                        })
                        .collect()
                })
            })
            .collect();
        for handle in handles {
            let part = handle
                .join()
                .map_err(|_| anyhow!("a signing thread panicked"))??;
            out.extend(part);
        }
        Ok(())
    })?;
    Ok(out)
}

/// Acknowledgements and deliveries per second between the samples where 10 % and 90 % of the
/// posts had been sent: the steady state, without ramp-up and drain.
pub(crate) fn middle_rates(samples: &[(Duration, u64, u64, u64)], total_posts: u64) -> (f64, f64) {
    let at = |fraction: f64| {
        let threshold = (total_posts as f64 * fraction) as u64;
        samples.iter().position(|s| s.1 >= threshold)
    };
    match (at(0.1), at(0.9)) {
        (Some(a), Some(b)) if b >= a + MIN_WINDOW_SAMPLES => {
            let (ta, _, aa, da) = samples[a];
            let (tb, _, ab, db) = samples[b];
            let secs = (tb - ta).as_secs_f64();
            ((ab - aa) as f64 / secs, (db - da) as f64 / secs)
        }
        _ => match samples.last() {
            Some(&(t, _, acks, delivered)) if t > Duration::ZERO => {
                let secs = t.as_secs_f64();
                (acks as f64 / secs, delivered as f64 / secs)
            }
            _ => (0.0, 0.0),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_survive_the_round_trip_through_a_delivered_frame() {
        let device = Device::generate("Stamp");
        let epoch = EpochRef {
            epoch: confide_protocol::Epoch(3),
            hash: confide_protocol::OpHash::ZERO,
        };
        let posts = make_posts(&device, 70_000, 2, GroupId([7; 16]), epoch, 256, 2, |k| {
            123_456_789 + k as u64
        })
        .unwrap();
        assert_eq!(classify(posts[1].as_str()), Received::Delivery);
        assert_eq!(
            stamp_of(posts[1].as_str()),
            Some(Stamp {
                at: 123_456_790,
                node: 2,
                sender: 70_000
            })
        );
        // The envelope is one a real client accepts too: right length, valid signature.
        let frame = ClientFrame::from_json(posts[0].as_str(), 1 << 20).unwrap();
        let ClientFrame::Post { envelope, .. } = frame else {
            panic!("not a post")
        };
        envelope.verify().unwrap();
        assert_eq!(classify(r#"{"type":"posted","id":1}"#), Received::Ack);
        assert_eq!(classify(crate::relay::RELAY_ACK), Received::Ack);
    }

    #[test]
    fn a_second_copy_and_a_late_message_are_told_apart_from_deliveries() {
        let frame = r#"{"type":"message","group":"AAAA","seq":130,"received_at":1,"envelope":{}}"#;
        assert_eq!(seq_of(frame), Some(130));
        assert_eq!(seq_of(r#"{"type":"post","id":1}"#), None);
        let mut seen = Seen::default();
        assert_eq!(seen.record(130), (true, false));
        assert_eq!(seen.record(2), (true, true));
        assert_eq!(seen.record(130), (false, false));
        assert_eq!(seen.record(131), (true, false));
    }
}
