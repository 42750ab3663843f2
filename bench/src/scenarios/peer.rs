//! A peer in the same run (issue 20): the fan-out of the [`fanout`](super::fanout) scenario —
//! groups of members who all post to their group — through Matrix Synapse, the server a group
//! would otherwise pick, next to Confide and the bare relay measured in the same invocation.
//!
//! **Synapse's side.** A fresh homeserver per run ([`Synapse`]: SQLite, plain HTTP on loopback,
//! rate limits lifted). Every member is a registered user with its own access token; every
//! group is a room that its first member creates (`public_chat` preset, with the
//! `m.room.encryption` state of an end-to-end encrypted room) and the others join. Every member
//! long-polls `/sync` (`since` the previous batch, a filter that keeps only `m.room.encrypted`
//! timeline events) and posts with `PUT /rooms/{room}/send/m.room.encrypted/{txn}`, a
//! Megolm-shaped content whose `ciphertext` is the unpadded base64 of random bytes as long as
//! Confide's ciphertext (272 or 4112 B). Synapse relays it as the opaque event of a real
//! encrypted room: it cannot read it either.
//!
//! **Timestamps in the payload.** As in [`load`]: the first eight bytes of the ciphertext carry
//! the post's intended send time, the next four the sender's number. A recipient decodes the
//! first sixteen base64 characters when the event arrives in its sync.
//!
//! **Pacing.** The same as the harness's: closed loop with a window of posts in flight per
//! member, a post staying in flight until Synapse answered the `PUT` (its acknowledgement) and
//! the group's pool of delivery credits allows it (one credit per recipient, returned by each
//! delivery, so that nobody's backlog grows without bound); open loop at a fixed total rate,
//! latency from the intended send time into an HDR histogram. The open-loop runs of Synapse,
//! Confide and the relay use the same rate: half the lower of Confide's and Synapse's maxima.
//! Synapse is far slower, so its closed-loop runs make [`Sizes::peer_posts`](super::Sizes) posts
//! per member instead of the fan-out run's [`Sizes::posts_per_sender`](super::Sizes), and its
//! rates are taken between 10 % and 90 % of the posts acknowledged rather than sent (with so
//! few posts per member, most are sent at once and wait in Synapse's queue).
//!
//! **What counts as a delivery.** The first copy of each event (by event id) in a member's
//! sync, from any other member. A sync that says its timeline is `limited` dropped events; the
//! run then fails to reach its expected deliveries, and the gaps are reported.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail};
use base64::Engine as _;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};

use super::fanout::{open_loop, open_loop_spec};
use super::{Options, max_throughput, on};
use crate::load::{self, DRAIN_GRACE, HIST_LOW_NS, LEAD_IN, Pace, RunResult, SAMPLE_EVERY};
use crate::net::DialOptions;
use crate::report::Report;
use crate::server::{Backend, Kind};
use crate::synapse::{self, Synapse, User, path_segment};

const SCENARIO: &str = "peer";
/// How long a member's `/sync` waits for news.
const SYNC_TIMEOUT_MS: u64 = 30_000;
/// Timeline events a sync may return per room: more than a group can have in flight, so that
/// no sync is `limited`.
const TIMELINE_LIMIT: u64 = 10_000;
/// The event type of an encrypted message.
const ENCRYPTED: &str = "m.room.encrypted";
/// Megolm, the room encryption of Matrix clients.
const MEGOLM: &str = "m.megolm.v1.aes-sha2";
/// Stamp bytes at the head of the ciphertext: intended send time (8), sender (4).
const STAMP_BYTES: usize = 12;
/// Base64 characters that hold [`STAMP_BYTES`].
const STAMP_CHARS: usize = STAMP_BYTES / 3 * 4;
/// How long a refused post waits when Synapse names no time.
const REPOST_DEFAULT: Duration = Duration::from_secs(1);
/// The latency quantiles reported, by name.
const QUANTILES: [(&str, f64); 3] = [("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999)];

/// Unpadded base64, as Matrix encodes keys and ciphertexts.
fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD_NO_PAD
}

/// `len` random bytes, the first [`STAMP_BYTES`] of them `at` and `sender`, as unpadded base64.
fn stamped_ciphertext(len: usize, at: u64, sender: u32) -> String {
    use rand_core::Rng as _;
    let mut bytes = vec![0u8; len.max(STAMP_BYTES)];
    crate::net::rng().fill_bytes(&mut bytes);
    bytes[..8].copy_from_slice(&at.to_le_bytes());
    bytes[8..STAMP_BYTES].copy_from_slice(&sender.to_le_bytes());
    b64().encode(bytes)
}

/// The intended send time and sender a ciphertext of [`stamped_ciphertext`] carries.
fn stamp_of(ciphertext: &str) -> Option<(u64, u32)> {
    let bytes = b64().decode(ciphertext.get(..STAMP_CHARS)?).ok()?;
    let at = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let sender = u32::from_le_bytes(bytes.get(8..STAMP_BYTES)?.try_into().ok()?);
    Some((at, sender))
}

/// The content of an `m.room.encrypted` event as a Megolm client sends it.
fn megolm_content(ciphertext: String, sender_key: &str, session_id: &str, device: &str) -> Value {
    json!({
        "algorithm": MEGOLM,
        "ciphertext": ciphertext,
        "sender_key": sender_key,
        "session_id": session_id,
        "device_id": device,
    })
}

/// The sync filter: encrypted timeline events only, nothing else.
fn sync_filter() -> Value {
    let none = json!({"not_types": ["*"]});
    json!({
        "presence": none,
        "account_data": none,
        "room": {
            "timeline": {"limit": TIMELINE_LIMIT, "types": [ENCRYPTED]},
            "state": {"not_types": ["*"], "lazy_load_members": true},
            "ephemeral": none,
            "account_data": none,
        },
    })
}

/// What one sync brought a member: encrypted events from others (event id, ciphertext), and
/// whether any room's timeline was cut short.
#[derive(Debug, Default, PartialEq)]
struct Batch {
    next_batch: String,
    events: Vec<(String, String)>,
    limited: bool,
}

/// Reads a `/sync` answer for `me`.
fn parse_sync(answer: &Value, me: &str) -> anyhow::Result<Batch> {
    let next_batch = answer
        .get("next_batch")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("sync answer without next_batch"))?
        .to_string();
    let mut batch = Batch {
        next_batch,
        ..Batch::default()
    };
    let Some(rooms) = answer.pointer("/rooms/join").and_then(Value::as_object) else {
        return Ok(batch);
    };
    for room in rooms.values() {
        let Some(timeline) = room.get("timeline") else {
            continue;
        };
        batch.limited |= timeline.get("limited").and_then(Value::as_bool) == Some(true);
        for event in timeline
            .get("events")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let field = |name: &str| event.get(name).and_then(Value::as_str);
            if field("type") != Some(ENCRYPTED) || field("sender") == Some(me) {
                continue;
            }
            let (Some(id), Some(ciphertext)) = (
                field("event_id"),
                event.pointer("/content/ciphertext").and_then(Value::as_str),
            ) else {
                continue;
            };
            batch.events.push((id.to_string(), ciphertext.to_string()));
        }
    }
    Ok(batch)
}

/// One member on Synapse: its user, the URL its posts go to, the sync filter it registered and
/// the batch its syncs continue from.
struct Member {
    user: User,
    send_url: String,
    filter: String,
    since: String,
}

/// Registers `members` users, makes them a room and brings each one's sync up to date.
async fn setup_group(
    http: &reqwest::Client,
    base: &str,
    g: usize,
    members: usize,
) -> anyhow::Result<Vec<Member>> {
    use reqwest::Method;
    let mut users = Vec::with_capacity(members);
    for m in 0..members {
        users.push(synapse::register(http, base, &format!("g{g}m{m}")).await?);
    }
    let creator = users
        .first()
        .ok_or_else(|| anyhow!("a group needs a member"))?;
    let room = synapse::call(
        http,
        Method::POST,
        &format!("{base}/_matrix/client/v3/createRoom"),
        Some(&creator.authorization),
        Some(&json!({
            "preset": "public_chat",
            "visibility": "private",
            "name": format!("Group {g}"),
            "initial_state": [{
                "type": "m.room.encryption",
                "state_key": "",
                "content": {"algorithm": MEGOLM},
            }],
        })),
    )
    .await?;
    let room_id = room
        .get("room_id")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("createRoom answer without room_id"))?;
    let room_path = path_segment(room_id);
    for user in users.iter().skip(1) {
        synapse::call(
            http,
            Method::POST,
            &format!("{base}/_matrix/client/v3/join/{room_path}"),
            Some(&user.authorization),
            Some(&json!({})),
        )
        .await?;
    }
    let mut out = Vec::with_capacity(members);
    for user in users {
        let filter = synapse::call(
            http,
            Method::POST,
            &format!(
                "{base}/_matrix/client/v3/user/{}/filter",
                path_segment(&user.user_id)
            ),
            Some(&user.authorization),
            Some(&sync_filter()),
        )
        .await?;
        let filter = filter
            .get("filter_id")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("filter answer without filter_id"))?
            .to_string();
        let first = synapse::call(
            http,
            Method::GET,
            &format!("{base}/_matrix/client/v3/sync?filter={filter}&timeout=0"),
            Some(&user.authorization),
            None,
        )
        .await?;
        let since = parse_sync(&first, &user.user_id)?.next_batch;
        out.push(Member {
            send_url: format!("{base}/_matrix/client/v3/rooms/{room_path}/send/{ENCRYPTED}"),
            user,
            filter,
            since,
        });
    }
    Ok(out)
}

/// What a run on Synapse measured.
#[derive(Debug)]
pub struct PeerResult {
    /// Posts sent.
    pub posts: u64,
    /// Posts Synapse answered with an event id.
    pub acks: u64,
    /// Events delivered to members (first copies, from others).
    pub delivered: u64,
    /// Events the members were to receive.
    pub expected: u64,
    /// Further copies of an event a member already had.
    pub duplicates: u64,
    /// Syncs whose timeline was cut short (`limited`).
    pub gaps: u64,
    /// Posts refused with 429 and sent again.
    pub reposts: u64,
    /// From the first post to the last delivery.
    pub elapsed: Duration,
    /// Acknowledged posts per second while 10–90 % of the posts were sent.
    pub acks_per_sec: f64,
    /// Deliveries per second over the same interval.
    pub deliveries_per_sec: f64,
    /// Send-to-delivery latencies in ns (open loop).
    pub latency: Histogram<u64>,
    /// CPU seconds Synapse's process used during the run.
    pub server_cpu: f64,
    /// CPU seconds the load generator used during the run.
    pub harness_cpu: f64,
}

impl PeerResult {
    /// A latency quantile in milliseconds.
    pub fn latency_ms(&self, quantile: f64) -> f64 {
        self.latency.value_at_quantile(quantile) as f64 / 1e6
    }
}

#[derive(Default)]
struct Counters {
    posts: AtomicU64,
    acks: AtomicU64,
    delivered: AtomicU64,
    duplicates: AtomicU64,
    gaps: AtomicU64,
    reposts: AtomicU64,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Counters {
    fn fail(&self, error: &anyhow::Error) {
        self.errors.fetch_add(1, Relaxed);
        if let Ok(mut first) = self.first_error.lock() {
            first.get_or_insert_with(|| format!("{error:#}"));
        }
    }
}

/// What the sync loops share.
struct Shared {
    http: reqwest::Client,
    counters: Counters,
    latency: Mutex<Histogram<u64>>,
    start: tokio::time::Instant,
    warmup_ns: u64,
    record_latency: bool,
}

/// A member's sync loop: counts and times what others post until it has `expected` events or
/// the run stops.
async fn syncer(
    shared: Arc<Shared>,
    base: String,
    member: Member,
    expected: u64,
    credits: Option<Arc<Semaphore>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut since = member.since;
    let mut seen: HashSet<String> = HashSet::new();
    while (seen.len() as u64) < expected {
        let url = format!(
            "{base}/_matrix/client/v3/sync?filter={}&timeout={SYNC_TIMEOUT_MS}&since={}",
            member.filter,
            path_segment(&since)
        );
        let answer = tokio::select! {
            answer = synapse::call(
                &shared.http, reqwest::Method::GET, &url, Some(&member.user.authorization), None,
            ) => answer,
            _ = stop.changed() => return,
        };
        let batch = match answer.and_then(|a| parse_sync(&a, &member.user.user_id)) {
            Ok(batch) => batch,
            Err(error) => {
                shared.counters.fail(&error);
                return;
            }
        };
        let now = shared.start.elapsed().as_nanos() as u64;
        since = batch.next_batch;
        if batch.limited {
            shared.counters.gaps.fetch_add(1, Relaxed);
        }
        for (id, ciphertext) in batch.events {
            if !seen.insert(id) {
                shared.counters.duplicates.fetch_add(1, Relaxed);
                continue;
            }
            shared.counters.delivered.fetch_add(1, Relaxed);
            if let Some(credits) = &credits {
                credits.add_permits(1);
            }
            if shared.record_latency
                && let Some((at, _)) = stamp_of(&ciphertext)
                && at >= shared.warmup_ns
                && let Ok(mut latency) = shared.latency.lock()
            {
                latency.saturating_record(now.saturating_sub(at).max(HIST_LOW_NS));
            }
        }
    }
}

/// Posts one event, again after the wait Synapse names while it answers 429.
async fn put_event(
    shared: &Shared,
    url: &str,
    authorization: &str,
    body: &[u8],
) -> anyhow::Result<()> {
    loop {
        let response = shared
            .http
            .put(url)
            .header("Authorization", authorization)
            .header("Content-Type", "application/json")
            .body(body.to_vec())
            .send()
            .await?;
        let status = response.status();
        let answer = response.bytes().await?;
        if status.is_success() {
            shared.counters.acks.fetch_add(1, Relaxed);
            return Ok(());
        }
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            let wait = serde_json::from_slice::<Value>(&answer)
                .ok()
                .and_then(|a| a.get("retry_after_ms").and_then(Value::as_u64))
                .map_or(REPOST_DEFAULT, Duration::from_millis);
            shared.counters.reposts.fetch_add(1, Relaxed);
            tokio::time::sleep(wait).await;
            continue;
        }
        bail!(
            "PUT {}: {status}: {}",
            url.rsplit_once("/send/").map_or(url, |(head, _)| head),
            String::from_utf8_lossy(&answer)
                .chars()
                .take(300)
                .collect::<String>()
        );
    }
}

/// A sender: who it is and its posts, made before the clock starts.
struct Sender {
    url: String,
    authorization: String,
    posts: Vec<Vec<u8>>,
}

/// Closed loop: keeps `window` posts in flight, each also waiting for `recipients` of the
/// group's delivery credits.
async fn window_writer(
    shared: Arc<Shared>,
    sender: Sender,
    window: usize,
    credits: Option<(Arc<Semaphore>, u32)>,
) -> anyhow::Result<()> {
    let window = Arc::new(Semaphore::new(window.max(1)));
    let sender = Arc::new(sender);
    let mut in_flight = tokio::task::JoinSet::new();
    for k in 0..sender.posts.len() {
        let permit = window.clone().acquire_owned().await?;
        if let Some((credits, recipients)) = &credits {
            credits.acquire_many(*recipients).await?.forget();
        }
        let (shared, sender) = (shared.clone(), sender.clone());
        shared.counters.posts.fetch_add(1, Relaxed);
        in_flight.spawn(async move {
            let url = format!("{}/b{k}", sender.url);
            let posted = put_event(&shared, &url, &sender.authorization, &sender.posts[k]).await;
            drop(permit);
            posted
        });
        while let Some(done) = in_flight.try_join_next() {
            done??;
        }
    }
    while let Some(done) = in_flight.join_next().await {
        done??;
    }
    Ok(())
}

/// Open loop: releases post `j` (sender `j % senders`, its `j / senders`-th) at `start + j /
/// rate`, each on a task of its own so that a slow answer holds up nothing.
async fn pacer(shared: Arc<Shared>, senders: Vec<Sender>, period_ns: u64) -> anyhow::Result<()> {
    let senders: Vec<Arc<Sender>> = senders.into_iter().map(Arc::new).collect();
    let count = senders.len().max(1);
    let total: usize = senders.iter().map(|s| s.posts.len()).sum();
    let mut in_flight = tokio::task::JoinSet::new();
    for j in 0..total {
        let (s, k) = (j % count, j / count);
        let Some(sender) = senders.get(s).filter(|sender| k < sender.posts.len()) else {
            continue;
        };
        tokio::time::sleep_until(shared.start + Duration::from_nanos(j as u64 * period_ns)).await;
        let (shared, sender) = (shared.clone(), sender.clone());
        shared.counters.posts.fetch_add(1, Relaxed);
        in_flight.spawn(async move {
            let url = format!("{}/b{k}", sender.url);
            put_event(&shared, &url, &sender.authorization, &sender.posts[k]).await
        });
        while let Some(done) = in_flight.try_join_next() {
            done??;
        }
    }
    while let Some(done) = in_flight.join_next().await {
        done??;
    }
    Ok(())
}

/// One run on a fresh Synapse: `groups` rooms of `members`, every member posting
/// `posts_per_sender` events of `bucket + 16` bytes of ciphertext, paced by `pace`.
#[allow(clippy::too_many_arguments)]
pub async fn measure(
    python: &Path,
    http: &reqwest::Client,
    groups: usize,
    members: usize,
    bucket: usize,
    pace: Pace,
    posts_per_sender: usize,
    warmup: Duration,
) -> anyhow::Result<PeerResult> {
    let server = Synapse::start(python, http).await?;
    // The run itself, in a block of its own so that Synapse is stopped whatever its outcome.
    let outcome: anyhow::Result<PeerResult> = async {
        use rand_core::Rng as _;
        let server = &server;
        let base = server.base().to_string();
        let mut setups = tokio::task::JoinSet::new();
        for g in 0..groups {
            let (http, base) = (http.clone(), base.clone());
            setups
                .spawn(async move { setup_group(&http, &base, g, members).await.map(|m| (g, m)) });
        }
        let mut rooms: Vec<Vec<Member>> = (0..groups).map(|_| Vec::new()).collect();
        while let Some(done) = setups.join_next().await {
            let (g, group) = done??;
            rooms[g] = group;
        }

        let senders_total = groups * members;
        let period_ns = match pace {
            Pace::Rate(rate) => (1e9 / rate.max(1e-3)) as u64,
            Pace::Window(_) => 0,
        };
        // Posts made before the clock starts, each stamped with its intended send time.
        let mut senders = Vec::with_capacity(senders_total);
        let mut rng = crate::net::rng();
        for (s, member) in rooms.iter().flatten().enumerate() {
            let mut key = [0u8; 32];
            rng.fill_bytes(&mut key);
            let sender_key = b64().encode(key);
            rng.fill_bytes(&mut key);
            let session_id = b64().encode(key);
            let posts = (0..posts_per_sender)
                .map(|k| {
                    let at = load::scheduled_ns(s, k, senders_total, period_ns);
                    let ciphertext = stamped_ciphertext(bucket + 16, at, u32::try_from(s)?);
                    let content = megolm_content(
                        ciphertext,
                        &sender_key,
                        &session_id,
                        &member.user.device_id,
                    );
                    Ok(serde_json::to_vec(&content)?)
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            senders.push(Sender {
                url: member.send_url.clone(),
                authorization: member.user.authorization.clone(),
                posts,
            });
        }

        let shared = Arc::new(Shared {
            http: http.clone(),
            counters: Counters::default(),
            latency: Mutex::new(load::histogram()?),
            start: tokio::time::Instant::now() + LEAD_IN,
            warmup_ns: warmup.as_nanos() as u64,
            record_latency: matches!(pace, Pace::Rate(_)),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let per_member = (members.saturating_sub(1) * posts_per_sender) as u64;
        let expected = per_member * senders_total as u64;
        let total_posts = (senders_total * posts_per_sender) as u64;
        let mut syncers = tokio::task::JoinSet::new();
        let mut writers = tokio::task::JoinSet::new();
        let mut senders = senders.into_iter();
        for room in rooms {
            let credits = match pace {
                Pace::Window(w) if members > 1 => {
                    let recipients = u32::try_from(members - 1)?;
                    Some((
                        Arc::new(Semaphore::new(members * w.max(1) * (members - 1))),
                        recipients,
                    ))
                }
                _ => None,
            };
            for member in room {
                syncers.spawn(syncer(
                    shared.clone(),
                    base.clone(),
                    member,
                    per_member,
                    credits.as_ref().map(|(c, _)| c.clone()),
                    stop_rx.clone(),
                ));
                if let Pace::Window(w) = pace
                    && let Some(sender) = senders.next()
                {
                    let (shared, credits) = (shared.clone(), credits.clone());
                    writers.spawn(async move {
                        tokio::time::sleep_until(shared.start).await;
                        window_writer(shared, sender, w, credits).await
                    });
                }
            }
        }
        if matches!(pace, Pace::Rate(_)) {
            writers.spawn(pacer(shared.clone(), senders.collect(), period_ns));
        }

        let pid = server.pid();
        let server_cpu_before = pid.map_or(Ok(0.0), |p| crate::proc::cpu_seconds(Some(p)))?;
        let harness_cpu_before = crate::proc::cpu_seconds(None)?;
        let c = &shared.counters;
        let snapshot = || {
            (
                c.posts.load(Relaxed),
                c.acks.load(Relaxed),
                c.delivered.load(Relaxed),
            )
        };
        let mut samples: Vec<(Duration, u64, u64, u64)> = Vec::new();
        let mut last_progress = (tokio::time::Instant::now(), snapshot());
        tokio::time::sleep_until(shared.start).await;
        let outcome = loop {
            tokio::time::sleep(SAMPLE_EVERY).await;
            while let Some(done) = writers.try_join_next() {
                if let Err(error) = done.map_err(anyhow::Error::from).and_then(|r| r) {
                    c.fail(&error);
                }
            }
            let now = snapshot();
            // The steady state is taken between 10 % and 90 % of the posts *acknowledged*, not sent
            // as in `load`: with a window of 8 and a few dozen posts per member, most posts are
            // sent in the first instant and wait in Synapse's queue.
            samples.push((shared.start.elapsed(), now.1, now.1, now.2));
            if c.errors.load(Relaxed) > 0 {
                let first = c.first_error.lock().ok().and_then(|f| f.clone());
                break Err(anyhow!(
                    "Synapse run failed: {}",
                    first.unwrap_or_else(|| "unknown error".into())
                ));
            }
            if now.1 >= total_posts && now.2 >= expected {
                break Ok(());
            }
            if now != last_progress.1 {
                last_progress = (tokio::time::Instant::now(), now);
            } else if last_progress.0.elapsed() > DRAIN_GRACE {
                break Err(anyhow!(
                    "Synapse run stalled: {} of {total_posts} posts sent, {} acknowledged, {} of \
                     {expected} deliveries, {} limited syncs",
                    now.0,
                    now.1,
                    now.2,
                    c.gaps.load(Relaxed)
                ));
            }
        };
        let elapsed = shared.start.elapsed();
        let server_cpu =
            pid.map_or(Ok(0.0), |p| crate::proc::cpu_seconds(Some(p)))? - server_cpu_before;
        let harness_cpu = crate::proc::cpu_seconds(None)? - harness_cpu_before;
        let _ = stop_tx.send(true);
        writers.abort_all();
        while syncers.join_next().await.is_some() {}
        outcome?;
        let (acks_per_sec, deliveries_per_sec) = load::middle_rates(&samples, total_posts);
        let latency = shared
            .latency
            .lock()
            .map_err(|_| anyhow!("a sync loop panicked"))?
            .clone();
        Ok(PeerResult {
            posts: c.posts.load(Relaxed),
            acks: c.acks.load(Relaxed),
            delivered: c.delivered.load(Relaxed),
            expected,
            duplicates: c.duplicates.load(Relaxed),
            gaps: c.gaps.load(Relaxed),
            reposts: c.reposts.load(Relaxed),
            elapsed,
            acks_per_sec,
            deliveries_per_sec,
            latency,
            server_cpu,
            harness_cpu,
        })
    }
    .await;
    let outcome = outcome.map_err(|e| anyhow!("{e:#}\n{}", server.log_tail()));
    server.stop().await?;
    outcome
}

/// CPU µs per delivered message.
fn per_delivery(cpu: f64, delivered: u64) -> f64 {
    cpu * 1e6 / delivered.max(1) as f64
}

/// Synapse against Confide (and both against the bare relay) for every bucket: delivered
/// messages per second in a closed loop, then p50/p99/p99.9 at the same open-loop rate.
pub async fn run(opts: &Options, report: &mut Report) -> anyhow::Result<()> {
    let python = synapse::find_python().await?;
    let http = synapse::http_client()?;
    let s = &opts.sizes;
    let backend = opts.storages.first().copied().unwrap_or(Backend::Sled);
    let confide = format!("Confide{}", on(backend));
    eprintln!(
        "peer: Synapse against Confide{}, {} groups of {} members, window {} per member; {} \
         posts per member on Synapse, {} on Confide and the relay",
        on(backend),
        s.groups,
        s.members,
        s.window,
        s.peer_posts,
        s.posts_per_sender
    );
    for &bucket in &s.buckets {
        let size = bucket + 16;
        let relay = max_throughput(opts, Kind::Relay, Backend::Sled, bucket)
            .await?
            .result;
        let ours = max_throughput(opts, Kind::Confide, backend, bucket)
            .await?
            .result;
        eprintln!("  Synapse, closed loop, {size} B");
        let peer = measure(
            &python,
            &http,
            s.groups,
            s.members,
            bucket,
            Pace::Window(s.window),
            s.peer_posts,
            Duration::ZERO,
        )
        .await?;
        throughput_figures(report, size, &confide, &peer, &ours, &relay);

        let rate = ours.acks_per_sec.min(peer.acks_per_sec) / 2.0;
        eprintln!(
            "  latency: {size} B at {rate:.0} posts/s for {:?}",
            s.latency
        );
        let everyone = |_, _| DialOptions::default();
        let relay = open_loop(
            opts,
            Kind::Relay,
            Backend::Sled,
            bucket,
            rate,
            s.latency,
            vec![],
            None,
            everyone,
        )
        .await?;
        let ours = open_loop(
            opts,
            Kind::Confide,
            backend,
            bucket,
            rate,
            s.latency,
            vec![],
            None,
            everyone,
        )
        .await?;
        let spec = open_loop_spec(s, bucket, rate, s.latency, vec![], None);
        let peer = measure(
            &python,
            &http,
            s.groups,
            s.members,
            bucket,
            Pace::Rate(rate),
            spec.posts_per_sender,
            s.warmup,
        )
        .await?;
        latency_figures(report, size, rate, &confide, &peer, &ours, &relay);
    }
    Ok(())
}

fn throughput_figures(
    report: &mut Report,
    size: usize,
    confide: &str,
    peer: &PeerResult,
    ours: &RunResult,
    relay: &RunResult,
) {
    let name = |who: &str| format!("{size} B ciphertext, {who}: delivered messages/s");
    report.figure(
        SCENARIO,
        name("Synapse"),
        peer.deliveries_per_sec,
        "msg/s",
        confide,
        ours.deliveries_per_sec,
        None,
    );
    report.figure(
        SCENARIO,
        name("Synapse"),
        peer.deliveries_per_sec,
        "msg/s",
        "bare relay",
        relay.deliveries_per_sec,
        None,
    );
    report.figure(
        SCENARIO,
        name(confide),
        ours.deliveries_per_sec,
        "msg/s",
        "bare relay",
        relay.deliveries_per_sec,
        None,
    );
    report.figure(
        SCENARIO,
        format!("{size} B, Synapse: server CPU per delivered message"),
        per_delivery(peer.server_cpu, peer.delivered),
        "µs",
        confide,
        per_delivery(ours.server_cpu, ours.delivered),
        None,
    );
    report.note(
        SCENARIO,
        format!(
            "{size} B, closed loop: Synapse acknowledged {:.0} posts/s ({} of {} deliveries in \
             {:.1} s; {} second copies, {} limited syncs, {} posts refused with 429 and sent \
             again), {confide} {:.0} posts/s, the relay {:.0} posts/s; load generator CPU per \
             delivery: Synapse's {:.1} µs, {confide}'s {:.1} µs",
            peer.acks_per_sec,
            peer.delivered,
            peer.expected,
            peer.elapsed.as_secs_f64(),
            peer.duplicates,
            peer.gaps,
            peer.reposts,
            ours.acks_per_sec,
            relay.acks_per_sec,
            per_delivery(peer.harness_cpu, peer.delivered),
            per_delivery(ours.harness_cpu, ours.delivered),
        ),
    );
}

fn latency_figures(
    report: &mut Report,
    size: usize,
    rate: f64,
    confide: &str,
    peer: &PeerResult,
    ours: &RunResult,
    relay: &RunResult,
) {
    let name = |who: &str, label: &str| {
        format!("{size} B at {rate:.0} posts/s (half the lower max), {who}: {label}")
    };
    for (label, q) in QUANTILES {
        report.figure(
            SCENARIO,
            name("Synapse", label),
            peer.latency_ms(q),
            "ms",
            confide,
            ours.latency_ms(q),
            None,
        );
    }
    report.figure(
        SCENARIO,
        name("Synapse", "p99"),
        peer.latency_ms(0.99),
        "ms",
        "bare relay",
        relay.latency_ms(0.99),
        None,
    );
    report.figure(
        SCENARIO,
        name(confide, "p99"),
        ours.latency_ms(0.99),
        "ms",
        "bare relay",
        relay.latency_ms(0.99),
        None,
    );
    report.note(
        SCENARIO,
        format!(
            "{size} B, open loop: Synapse {} latencies recorded, max {:.1} ms, {} of {} \
             deliveries, {} limited syncs; {confide} {} recorded, max {:.1} ms; relay max {:.1} \
             ms",
            peer.latency.len(),
            peer.latency.max() as f64 / 1e6,
            peer.delivered,
            peer.expected,
            peer.gaps,
            ours.latency.len(),
            ours.latency.max() as f64 / 1e6,
            relay.latency.max() as f64 / 1e6,
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_survives_the_trip_through_a_megolm_ciphertext() {
        let ciphertext = stamped_ciphertext(272, 987_654_321_012, 77);
        assert_eq!(b64().decode(&ciphertext).map(|b| b.len()).ok(), Some(272));
        assert_eq!(stamp_of(&ciphertext), Some((987_654_321_012, 77)));
        assert_eq!(stamp_of("short"), None);
    }

    #[test]
    fn a_sync_yields_other_members_encrypted_events_and_flags_gaps() {
        let answer = json!({
            "next_batch": "s72_1",
            "rooms": {"join": {
                "!a:x": {"timeline": {"limited": false, "events": [
                    {"type": ENCRYPTED, "sender": "@b:x", "event_id": "$1",
                     "content": {"ciphertext": "AAAA"}},
                    {"type": ENCRYPTED, "sender": "@me:x", "event_id": "$2",
                     "content": {"ciphertext": "BBBB"}},
                    {"type": "m.room.member", "sender": "@c:x", "event_id": "$3", "content": {}},
                ]}},
                "!b:x": {"timeline": {"limited": true, "events": []}},
            }},
        });
        let batch = parse_sync(&answer, "@me:x").ok();
        assert_eq!(
            batch,
            Some(Batch {
                next_batch: "s72_1".into(),
                events: vec![("$1".into(), "AAAA".into())],
                limited: true,
            })
        );
        assert!(parse_sync(&json!({}), "@me:x").is_err());
    }

    #[test]
    fn the_posted_content_is_shaped_like_megolm() {
        let content = megolm_content("Q0lQSEVS".into(), "key", "session", "DEVICE");
        assert_eq!(content["algorithm"], json!("m.megolm.v1.aes-sha2"));
        for field in ["ciphertext", "sender_key", "session_id", "device_id"] {
            assert!(content[field].is_string(), "{field}");
        }
    }
}
