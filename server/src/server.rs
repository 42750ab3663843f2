//! The listener: accepts connections up to the configured maximum, hands each to
//! [`crate::connection`], and on shutdown stops accepting, tells every connection to go away,
//! waits for them, and lets the writer finish every accepted write.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use confide_protocol::Timestamp;

use crate::config::Limits;
use crate::groups::Groups;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::rate::RateLimiter;
use crate::storage::{Storage, StorageError};
use crate::writer::Writer;

/// How far past the configured frame limit a websocket message may go and still be read, to be
/// answered with a `frame_too_large` error while the connection survives; beyond it the websocket
/// library closes the connection (1009, message too big). Small, because the websocket library
/// keeps its read buffer at the largest message a connection sent (it was 4 × the limit, which
/// let one connection pin 4 MiB; BENCHMARKS.md, bottleneck 9).
const WS_HARD_CAP_MARGIN: usize = 64 * 1024;

/// Everything `run` needs.
pub struct Config {
    /// Limits and policies.
    pub limits: Limits,
    /// TLS configuration; `None` serves plain websockets (loopback or behind a TLS proxy only —
    /// the binary refuses otherwise).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Where data lives.
    pub storage: Arc<dyn Storage>,
    /// Where to serve `/healthz` and `/metrics`, if anywhere.
    pub metrics_listener: Option<TcpListener>,
    /// The other nodes sharing `storage`, if any ([`crate::cluster`]): `None` for one node on
    /// its own database.
    pub cluster: Option<crate::cluster::ClusterConfig>,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// Stored data could not be loaded.
    #[error("cannot load stored data: {0}")]
    Storage(#[from] StorageError),
    /// The cluster configuration is unusable.
    #[error("cluster: {0}")]
    Cluster(String),
    /// Storage failed in a way only a restart recovers from; the server shut down gracefully
    /// (every acknowledged write is durable) so that its supervisor can start it again.
    #[error(
        "storage failed and the server must restart: {0}. It shut down cleanly; nothing \
         acknowledged was lost. Check the disk (free space, I/O errors) and start it again"
    )]
    StorageFailed(String),
    /// An OS resource (thread, socket) could not be had.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// State shared by every connection.
pub struct Shared {
    /// Limits and policies.
    pub limits: Limits,
    /// The database.
    pub storage: Arc<dyn Storage>,
    /// The group-commit writer.
    pub writer: Writer,
    /// Connections by device.
    pub hub: Hub,
    /// Group states.
    pub groups: Groups,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Per-device request rate.
    pub rate: RateLimiter,
    /// Per-device rate of acknowledged inbox ids (`ack_inbox` costs one per id).
    pub inbox_acks: RateLimiter,
    /// Per-address registration rate.
    pub registrations: RateLimiter<crate::address::AddressKey>,
    /// Authenticated connections per address (unauthenticated ones are counted apart, by the
    /// accept loop).
    pub authenticated_per_address: crate::address::PerAddress,
    /// Inbox ids being written, so that the inbox backlog serves only durable items.
    pub inbox_in_flight: crate::inbox::InboxInFlight,
    /// Held from a registration's checks (is this device or user id taken?) until its record is
    /// durable, so that two registrations can never both pass them; `publish_devices` holds it
    /// too, so that two successors of one list cannot both be accepted, and a device cannot
    /// register with a list that is being replaced. Registrations and lists are rare and
    /// rate-limited, so one lock for all of them costs nothing.
    pub registering: tokio::sync::Mutex<()>,
    /// Device lists published per user (`max_device_lists_per_day`).
    pub device_lists: crate::rate::WindowLimiter<confide_protocol::UserId>,
    /// `update_devices` appended per (group, member) (`max_device_updates_per_hour`).
    pub device_updates:
        crate::rate::WindowLimiter<(confide_protocol::GroupId, confide_protocol::UserId)>,
    /// Open link channels (in memory; see [`crate::link`]).
    pub links: crate::link::Links,
    /// TLS configuration, if TLS is on ([`crate::tls_stream::accept`] serves each connection).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The other nodes sharing the database, if any.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// The runtime, for work a writer completion (on the writer's thread) starts.
    pub runtime: tokio::runtime::Handle,
}

impl Shared {
    /// Fills `buf` from the operating system's CSPRNG.
    pub fn fill_random(&self, buf: &mut [u8]) {
        use rand_core::TryRng as _;
        // The OS RNG does not fail on the platforms we run on; if it ever did, an all-zero nonce
        // would make authentication fail for that connection, never succeed wrongly.
        let _ = getrandom::SysRng.try_fill_bytes(buf);
    }

    /// The websocket configuration: small buffers so that idle connections cost little.
    pub fn ws_config(&self) -> WebSocketConfig {
        let hard_cap = self
            .limits
            .max_frame_bytes
            .saturating_add(WS_HARD_CAP_MARGIN);
        WebSocketConfig::default()
            .read_buffer_size(self.limits.ws_read_buffer)
            .write_buffer_size(self.limits.ws_write_buffer)
            // A cap, not an allocation. Large frames go out in fragments of about
            // `ws_write_buffer` (`connection::fragments`), so the buffer holds at most that plus
            // one fragment; the cap leaves room for a whole sync page as well.
            .max_write_buffer_size(
                self.limits.page_bytes.saturating_mul(3).max(
                    self.limits
                        .ws_write_buffer
                        .max(crate::connection::MIN_FRAGMENT)
                        .saturating_mul(2)
                        .saturating_add(64),
                ),
            )
            .max_message_size(Some(hard_cap))
            .max_frame_size(Some(hard_cap))
    }
}

/// The server's clock as a protocol timestamp.
pub fn now() -> Timestamp {
    // A host clock set before 1970 reads as 1970 (and every op is then refused as clock skew).
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(Timestamp(0), Timestamp::from_unix_duration)
}

/// `/healthz` and the cluster's `/metrics` lines, from the node's state (held weakly: the
/// endpoint must not keep the server's state alive during shutdown).
struct NodeHealth(std::sync::Weak<Shared>);

impl crate::metrics::Health for NodeHealth {
    fn check(&self) -> (bool, String) {
        let Some(shared) = self.0.upgrade() else {
            return (false, "shutting down\n".into());
        };
        let mut ok = true;
        let mut lines = String::new();
        match shared.storage.health() {
            Ok(what) => lines.push_str(&format!("storage: ok ({what})\n")),
            Err(e) => {
                ok = false;
                lines.push_str(&format!("storage: unavailable ({e})\n"));
            }
        }
        if let Some(cluster) = &shared.cluster {
            // Without NATS the node still serves (other nodes' messages arrive by polling):
            // reported, but not unhealthy.
            lines.push_str(match cluster.nats_connected() {
                true => "nats: connected\n",
                false => "nats: disconnected (delivering across nodes by polling)\n",
            });
        }
        (ok, lines)
    }

    fn metrics(&self) -> String {
        self.0
            .upgrade()
            .and_then(|shared| shared.cluster.as_ref().map(|c| c.render_metrics()))
            .unwrap_or_default()
    }
}

/// The share of the shutdown timeout that connections get to close gracefully; the rest is for
/// aborting those still open (stuck waiting for the disk) and for the writer to finish.
const GRACEFUL_CLOSE_SHARE: f64 = 0.75;

/// Serves `listener` until `shutdown` completes, then shuts down gracefully: stops accepting,
/// sends every connection a going-away close, waits for them, and finishes every durable write.
///
/// Shutdown completes within `limits.shutdown_timeout` in all: connections get three quarters
/// of it to close, and whatever is still running at the deadline (a connection or the writer
/// inside a storage call on a stalled disk) is left behind; none of it was acknowledged.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let metrics = Arc::new(Metrics::default());
    let cluster = match &config.cluster {
        Some(cluster) => Some(Arc::new(
            crate::cluster::Cluster::connect(cluster)
                .await
                .map_err(ServerError::Cluster)?,
        )),
        None => None,
    };
    let groups = Groups::load(config.storage.as_ref())?;
    let (writer, writer_thread, mut status) = Writer::start(
        config.storage.clone(),
        config.limits.write_queue,
        config.limits.max_batch,
        config.limits.max_batch_bytes,
        metrics.clone(),
    )?;
    let shared = Arc::new(Shared {
        rate: RateLimiter::new(config.limits.rate_per_second, config.limits.rate_burst),
        inbox_acks: RateLimiter::new(
            config.limits.inbox_acks_per_second,
            // A full frame must always be able to pass.
            config.limits.inbox_ack_burst.max(
                u32::try_from(confide_protocol::frames::MAX_INBOX_ACKS_PER_FRAME)
                    .unwrap_or(u32::MAX),
            ),
        ),
        authenticated_per_address: crate::address::PerAddress::default(),
        // Every id below this one was handed out by an earlier run.
        inbox_in_flight: crate::inbox::InboxInFlight::for_storage(config.storage.as_ref())?,
        registrations: RateLimiter::with_rate(
            f64::from(config.limits.registrations_per_hour) / 3600.0,
            f64::from(config.limits.registration_burst),
        ),
        registering: tokio::sync::Mutex::new(()),
        device_lists: crate::rate::WindowLimiter::new(
            config.limits.max_device_lists_per_day,
            crate::config::DEVICE_LISTS_WINDOW,
        ),
        device_updates: crate::rate::WindowLimiter::new(
            config.limits.max_device_updates_per_hour,
            crate::config::DEVICE_UPDATES_WINDOW,
        ),
        links: crate::link::Links::new(cluster.clone()),
        limits: config.limits,
        storage: config.storage,
        writer,
        hub: Hub::default(),
        groups,
        metrics: metrics.clone(),
        tls: config.tls,
        cluster,
        runtime: tokio::runtime::Handle::current(),
    });
    let metrics_task = config.metrics_listener.map(|l| {
        let health = Arc::new(NodeHealth(Arc::downgrade(&shared)));
        tokio::spawn(crate::metrics::serve(l, metrics.clone(), health))
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let retention_task = tokio::spawn(crate::retention::run(shared.clone(), stop_rx.clone()));
    let cluster_tasks = crate::cluster::start(shared.clone(), stop_rx.clone());
    let permits = Arc::new(Semaphore::new(shared.limits.max_connections.max(1)));
    let mut connections = JoinSet::new();
    let per_ip = crate::address::PerAddress::default();
    tokio::pin!(shutdown);
    // Completes once storage says only a restart can make it write again.
    let stuck_after = shared.limits.stuck_write_timeout;
    let storage_failed = async move { status.failed(stuck_after).await };
    tokio::pin!(storage_failed);
    let mut failure = None;
    tracing::info!(addr = ?listener.local_addr().ok(), tls = shared.tls.is_some(), "listening");
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit,
            _ = &mut shutdown => break,
            reason = &mut storage_failed => {
                failure = Some(reason);
                break;
            }
        };
        let Ok(permit) = permit else { break };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut shutdown => break,
            reason = &mut storage_failed => {
                failure = Some(reason);
                break;
            }
        };
        // Reap finished connection tasks so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
        match accepted {
            Ok((tcp, peer)) => {
                let Some(slot) = per_ip.take(peer.ip(), shared.limits.max_unauthenticated_per_ip)
                else {
                    tracing::debug!(
                        %peer,
                        "too many unauthenticated connections from this address; dropped"
                    );
                    drop(tcp);
                    continue;
                };
                // Held until the connection authenticates (or ends).
                let gate = crate::preauth::Gate::holding(slot);
                metrics.connections_total.fetch_add(1, Relaxed);
                metrics.connections_open.fetch_add(1, Relaxed);
                let shared = shared.clone();
                let stop = stop_rx.clone();
                let metrics = metrics.clone();
                connections.spawn(async move {
                    crate::connection::handle_tcp(shared, tcp, peer, gate, stop).await;
                    metrics.connections_open.fetch_sub(1, Relaxed);
                    drop(permit);
                });
            }
            Err(e) => {
                // Out of file descriptors and similar: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
    if let Some(reason) = &failure {
        tracing::error!(
            %reason,
            "storage cannot write again until the server restarts; shutting down"
        );
    }
    tracing::info!("shutting down: closing connections");
    let _ = stop_tx.send(true);
    // One deadline for the whole shutdown: a stalled disk can hold a connection (waiting for
    // its write) and the writer forever, and a stopping server must still stop, in a time an
    // operator can rely on. What is abandoned was never acknowledged. Connections get most of
    // it to close gracefully; what is left is for forcing the stragglers and for the writer
    // (which works through its queue meanwhile anyway).
    let wait = shared.limits.shutdown_timeout;
    let started = tokio::time::Instant::now();
    let deadline = started + wait;
    let graceful_until = started + wait.mul_f64(GRACEFUL_CLOSE_SHARE);
    let closed = tokio::time::timeout_at(graceful_until, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if closed.is_err() {
        tracing::warn!(
            left = connections.len(),
            "connections still open late in the shutdown (waiting for the disk?); closing them"
        );
        connections.abort_all();
        // An aborted task stops at its next await; one inside a synchronous storage call on a
        // stuck disk never gets there, so this wait is bounded too.
        let aborted = tokio::time::timeout_at(deadline, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if aborted.is_err() {
            tracing::warn!(
                left = connections.len(),
                "connections did not stop after being aborted (stuck in storage?); leaving them"
            );
            connections.detach_all();
        }
    }
    if let Some(task) = metrics_task {
        task.abort();
    }
    retention_task.abort();
    for task in &cluster_tasks {
        task.abort();
    }
    if tokio::time::timeout_at(deadline, retention_task)
        .await
        .is_err()
    {
        tracing::warn!("the retention task did not stop (stuck in storage?); leaving it");
    }
    // Every connection is gone; dropping the last writer handle lets the writer drain and stop.
    drop(shared);
    // Joined from a plain thread, not `spawn_blocking`: the runtime waits for its blocking
    // tasks when it is dropped, which would bring back the hang on a writer that never returns.
    let (joined_tx, joined_rx) = tokio::sync::oneshot::channel();
    let joiner = std::thread::Builder::new()
        .name("confide-writer-join".into())
        .spawn(move || {
            let _ = writer_thread.join();
            let _ = joined_tx.send(());
        });
    let joined = match joiner {
        Ok(_) => tokio::time::timeout_at(deadline, joined_rx).await.is_ok(),
        Err(e) => {
            tracing::error!(error = %e, "cannot start a thread to wait for the writer");
            false
        }
    };
    if !joined {
        tracing::error!(
            "the writer did not finish within the shutdown timeout (the disk is not answering); \
             its unfinished writes were never acknowledged"
        );
    }
    tracing::info!("shutdown complete");
    match failure {
        Some(reason) => Err(ServerError::StorageFailed(reason)),
        None => Ok(()),
    }
}
