//! Starting and stopping the server under test — Confide or the bare relay — either as a child
//! process (the same `confide-bench` binary, `serve` subcommand) or in-process on a runtime of
//! its own.
//!
//! The full benchmarks use a child process: its resident memory is the server's alone, and the
//! server and the load generator are scheduled by the kernel as two processes, as they would be
//! in production. The smoke test runs everything in-process, so that `cargo test` needs no
//! binary.
//!
//! Confide keeps its data in sled in the server's temporary directory, or ([`Backend::Postgres`])
//! in a fresh PostgreSQL database of the run's own ([`crate::database`]); a node of several
//! ([`NodeSettings::cluster`]) also joins the others over NATS. A child server answers a `stats`
//! line on its standard input with the PostgreSQL round trips it made so far
//! ([`RunningServer::round_trips`]): `PostgresStorage::round_trips` is only readable in the
//! process that holds the storage, and the child is this same executable.

use anyhow::{Context as _, anyhow, bail};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};

use confide_server::cluster::ClusterConfig;
use confide_server::{Config, Limits, PostgresStorage, SledStorage, Storage, TlsIdentity};

use crate::database::FreshDatabase;
use crate::net::Target;

/// How long a server may take to start or to stop gracefully.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Worker threads of the in-process server's runtime (the machine has two cores).
const IN_PROCESS_WORKERS: usize = 2;
/// The line a child server prints once it listens.
const READY_PREFIX: &str = "READY";
/// What the harness writes to a child server's standard input to ask for its counters.
const STATS_REQUEST: &str = "stats";
/// The line a child server answers [`STATS_REQUEST`] with.
const STATS_PREFIX: &str = "STATS";
/// How long a child server may take to answer [`STATS_REQUEST`].
const STATS_TIMEOUT: Duration = Duration::from_secs(10);
/// Environment variable naming a command to run child servers under, for profiling (e.g.
/// `CONFIDE_BENCH_WRAP="heaptrack -o /tmp/server"`); memory figures are then not the
/// server's own. A heap profiler that follows the system's malloc (heaptrack, valgrind's
/// massif) needs the harness built with `--no-default-features`: the child server is this
/// binary, whose allocator is otherwise jemalloc.
pub const WRAP_ENV: &str = "CONFIDE_BENCH_WRAP";
/// An experiment: Confide's websocket read buffer in bytes (`ws_read_buffer`) instead of the
/// default, to measure what another default would cost or save. Unset in every recorded run.
pub const WS_READ_BUFFER_ENV: &str = "CONFIDE_BENCH_WS_READ_BUFFER";

/// Which server to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// The real Confide server: TLS, authentication, sled with group commit.
    Confide,
    /// The bare tokio-tungstenite relay (the baseline).
    Relay,
}

/// Where Confide keeps its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Backend {
    /// sled in the server's temporary directory (the embedded default).
    Sled,
    /// A fresh PostgreSQL database of the run's own ([`crate::database`]).
    Postgres,
}

impl Backend {
    /// Its name in figures.
    pub fn label(self) -> &'static str {
        match self {
            Backend::Sled => "sled",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

/// How a Confide server stores and whom it talks to, besides its defaults.
#[derive(Clone, Debug, Default)]
pub struct NodeSettings {
    /// The PostgreSQL database's URL; `None`: sled in the server's temporary directory.
    pub postgres: Option<String>,
    /// The other nodes sharing the database, over NATS; `None`: a node of its own.
    pub cluster: Option<ClusterConfig>,
    /// sled only: commits return without flushing (the durable scenario's baseline,
    /// [`SledStorage::without_flushing_for_benchmarks`]).
    pub no_flush: bool,
}

/// What the harness can ask a running server's storage that `/metrics` does not say.
#[derive(Clone, Default)]
pub struct StorageProbe(Option<Arc<PostgresStorage>>);

impl StorageProbe {
    /// PostgreSQL round trips made so far (`None` on sled).
    pub fn round_trips(&self) -> Option<u64> {
        self.0.as_ref().map(|storage| storage.round_trips())
    }

    fn to_line(&self) -> String {
        format!(
            "{STATS_PREFIX} round_trips={}",
            self.round_trips()
                .map(|n| n.to_string())
                .unwrap_or_default()
        )
    }

    fn parse(line: &str) -> anyhow::Result<Option<u64>> {
        let value = line
            .strip_prefix(STATS_PREFIX)
            .and_then(|rest| rest.trim().strip_prefix("round_trips="))
            .ok_or_else(|| anyhow!("unexpected stats line from the child server: {line:?}"))?;
        Ok(if value.is_empty() {
            None
        } else {
            Some(value.parse()?)
        })
    }
}

/// Where the server runs.
#[derive(Clone, Debug)]
pub enum ServerMode {
    /// On its own runtime and threads inside this process (smoke test).
    InProcess,
    /// As a child process: this executable with the `serve` subcommand.
    Child(PathBuf),
}

/// Confide's limits for benchmarks: the defaults, except that the per-device request rate, the
/// per-address registration rate and the connection caps are raised so that the load
/// generator, which is a few processes' worth of devices on one address range, is not refused.
/// Queue bounds, frame sizes and buffers stay at their defaults. (The defaults themselves,
/// in `server/src/config.rs`, are never changed for a benchmark; [`WS_READ_BUFFER_ENV`] sets
/// the read buffer for an experiment.)
pub fn bench_limits(connections: usize) -> Limits {
    let connections = connections.max(1) + 1_024;
    let defaults = Limits::default();
    let ws_read_buffer = std::env::var(WS_READ_BUFFER_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(defaults.ws_read_buffer);
    Limits {
        ws_read_buffer,
        rate_per_second: 1_000_000,
        rate_burst: 1_000_000,
        registrations_per_hour: 1_000_000_000,
        registration_burst: 1_000_000,
        max_connections: connections,
        max_unauthenticated_per_ip: connections,
        max_authenticated_per_ip: connections,
        ..defaults
    }
}

/// What a started server tells the harness.
#[derive(Clone, Debug)]
pub struct Ready {
    /// Where it accepts websockets.
    pub addr: SocketAddr,
    /// Where it serves `/metrics` (Confide only).
    pub metrics: Option<SocketAddr>,
    /// Its certificate fingerprint (Confide only).
    pub pin: Option<String>,
}

impl Ready {
    fn to_line(&self) -> String {
        format!(
            "{READY_PREFIX} addr={} metrics={} pin={}",
            self.addr,
            self.metrics.map(|m| m.to_string()).unwrap_or_default(),
            self.pin.clone().unwrap_or_default()
        )
    }

    fn parse(line: &str) -> anyhow::Result<Ready> {
        let fields: HashMap<&str, &str> = line
            .strip_prefix(READY_PREFIX)
            .ok_or_else(|| anyhow!("unexpected line from the child server: {line:?}"))?
            .split_whitespace()
            .filter_map(|f| f.split_once('='))
            .collect();
        let field = |name: &str| fields.get(name).copied().filter(|v| !v.is_empty());
        Ok(Ready {
            addr: field("addr")
                .ok_or_else(|| anyhow!("no address in {line:?}"))?
                .parse()?,
            metrics: field("metrics").map(str::parse).transpose()?,
            pin: field("pin").map(str::to_string),
        })
    }
}

/// Runs a server on 127.0.0.1 (an OS-chosen port) with its data in `data_dir` (or the database
/// `settings` name) until `shutdown` completes; `ready` is called once it listens.
pub async fn serve(
    kind: Kind,
    data_dir: &Path,
    connections: usize,
    settings: &NodeSettings,
    ready: impl FnOnce(Ready, StorageProbe),
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    match kind {
        Kind::Relay => {
            ready(
                Ready {
                    addr,
                    metrics: None,
                    pin: None,
                },
                StorageProbe::default(),
            );
            crate::relay::run(listener, shutdown).await
        }
        Kind::Confide => {
            let identity = TlsIdentity::dev(data_dir)?;
            let pin = identity.fingerprint();
            let (storage, probe): (Arc<dyn Storage>, StorageProbe) = match &settings.postgres {
                Some(url) => {
                    // Connecting blocks its thread until the database answers (the backend
                    // runs its queries on a runtime of its own): not on this runtime's worker.
                    let url = url.clone();
                    let storage = Arc::new(
                        tokio::task::spawn_blocking(move || PostgresStorage::connect(&url))
                            .await??,
                    );
                    (storage.clone(), StorageProbe(Some(storage)))
                }
                None => {
                    let sled = SledStorage::open(&data_dir.join("db"))?;
                    let sled = if settings.no_flush {
                        sled.without_flushing_for_benchmarks()
                    } else {
                        sled
                    };
                    (Arc::new(sled), StorageProbe::default())
                }
            };
            let metrics_listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
            let metrics = metrics_listener.local_addr()?;
            let config = Config {
                limits: bench_limits(connections),
                tls: Some(identity.server_config()?),
                storage,
                metrics_listener: Some(metrics_listener),
                cluster: settings.cluster.clone(),
            };
            ready(
                Ready {
                    addr,
                    metrics: Some(metrics),
                    pin: Some(pin),
                },
                probe,
            );
            confide_server::run(listener, config, shutdown).await?;
            Ok(())
        }
    }
}

/// The `serve` subcommand: serves until standard input closes (the parent exited or dropped
/// it), announcing itself with one `READY …` line on standard output and answering each
/// `stats` line on standard input with one `STATS …` line.
pub async fn serve_child(
    kind: Kind,
    data_dir: &Path,
    connections: usize,
    settings: &NodeSettings,
) -> anyhow::Result<()> {
    let (probe_tx, probe_rx) = tokio::sync::oneshot::channel::<StorageProbe>();
    serve(
        kind,
        data_dir,
        connections,
        settings,
        |ready, probe| {
            println!("{}", ready.to_line());
            let _ = probe_tx.send(probe);
        },
        async move {
            let probe = probe_rx.await.unwrap_or_default();
            let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.trim() == STATS_REQUEST {
                    println!("{}", probe.to_line());
                }
            }
        },
    )
    .await
}

enum Running {
    InProcess {
        stop: tokio::sync::oneshot::Sender<()>,
        thread: std::thread::JoinHandle<anyhow::Result<()>>,
        probe: StorageProbe,
    },
    Child {
        child: tokio::process::Child,
        /// Boxed: one per server, and the largest part.
        io: Box<ChildIo>,
    },
}

/// How the harness talks to a child server after it started.
struct ChildIo {
    /// Closing it stops the server; `stats` lines ask for its counters.
    stdin: Option<tokio::sync::Mutex<tokio::process::ChildStdin>>,
    /// The child's `STATS …` answers.
    stats: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<String>>,
}

/// A running server under test; its data directory, and its database if it has one of its
/// own, are deleted when it is dropped.
pub struct RunningServer {
    /// What it announced.
    pub ready: Ready,
    /// Which server it is.
    pub kind: Kind,
    running: Running,
    _dir: tempfile::TempDir,
    /// Its PostgreSQL database, when [`RunningServer::start_on`] made one for it alone (dropped
    /// after the server, by field order).
    database: Option<FreshDatabase>,
}

impl RunningServer {
    /// Starts `kind` in `mode`, sized for `connections` simultaneous connections, on sled.
    pub async fn start(
        kind: Kind,
        mode: &ServerMode,
        connections: usize,
    ) -> anyhow::Result<RunningServer> {
        Self::start_with(kind, mode, connections, &NodeSettings::default()).await
    }

    /// Starts Confide on `backend` (on PostgreSQL, in a fresh database of its own), or the
    /// relay.
    pub async fn start_on(
        kind: Kind,
        backend: Backend,
        mode: &ServerMode,
        connections: usize,
    ) -> anyhow::Result<RunningServer> {
        if kind == Kind::Relay || backend == Backend::Sled {
            return Self::start(kind, mode, connections).await;
        }
        let database = FreshDatabase::create().await?;
        let settings = NodeSettings {
            postgres: Some(database.url().to_string()),
            ..NodeSettings::default()
        };
        let mut server = Self::start_with(kind, mode, connections, &settings).await?;
        server.database = Some(database);
        Ok(server)
    }

    /// Starts `kind` in `mode` with `settings`, sized for `connections` simultaneous
    /// connections.
    pub async fn start_with(
        kind: Kind,
        mode: &ServerMode,
        connections: usize,
        settings: &NodeSettings,
    ) -> anyhow::Result<RunningServer> {
        let dir = tempfile::Builder::new()
            .prefix("confide-bench-")
            .tempdir()?;
        let data_dir = dir.path().to_path_buf();
        let (ready, running) = match mode {
            ServerMode::InProcess => {
                let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
                let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
                let settings = settings.clone();
                let thread = std::thread::Builder::new()
                    .name("bench-server".into())
                    .spawn(move || {
                        let runtime = tokio::runtime::Builder::new_multi_thread()
                            .worker_threads(IN_PROCESS_WORKERS)
                            .thread_name("bench-server-worker")
                            .enable_all()
                            .build()?;
                        runtime.block_on(serve(
                            kind,
                            &data_dir,
                            connections,
                            &settings,
                            |ready, probe| {
                                let _ = ready_tx.send((ready, probe));
                            },
                            async {
                                let _ = stop_rx.await;
                            },
                        ))
                    })?;
                let (ready, probe) = tokio::time::timeout(START_TIMEOUT, ready_rx)
                    .await
                    .context("the in-process server did not start in time")?
                    .map_err(|_| anyhow!("the in-process server failed to start"))?;
                (
                    ready,
                    Running::InProcess {
                        stop,
                        thread,
                        probe,
                    },
                )
            }
            ServerMode::Child(exe) => {
                let wrap = std::env::var(WRAP_ENV).unwrap_or_default();
                let mut words = wrap.split_whitespace();
                let mut command = match words.next() {
                    Some(wrapper) => {
                        let mut command = tokio::process::Command::new(wrapper);
                        command.args(words).arg(exe);
                        command
                    }
                    None => tokio::process::Command::new(exe),
                };
                command
                    .arg("serve")
                    .arg("--kind")
                    .arg(match kind {
                        Kind::Confide => "confide",
                        Kind::Relay => "relay",
                    })
                    .arg("--data-dir")
                    .arg(&data_dir)
                    .arg("--max-connections")
                    .arg(connections.to_string());
                if let Some(url) = &settings.postgres {
                    command.arg("--postgres").arg(url);
                }
                if settings.no_flush {
                    command.arg("--no-flush");
                }
                if let Some(cluster) = &settings.cluster {
                    command
                        .arg("--nats")
                        .arg(&cluster.nats_url)
                        .arg("--nats-prefix")
                        .arg(&cluster.subject_prefix);
                }
                let mut child = command
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .kill_on_drop(true)
                    .spawn()
                    .with_context(|| format!("starting {}", exe.display()))?;
                let stdout = child
                    .stdout
                    .take()
                    .ok_or_else(|| anyhow!("no stdout from the child server"))?;
                let mut lines = tokio::io::BufReader::new(stdout).lines();
                // A profiling wrapper may print lines of its own first.
                let wait_ready = async {
                    loop {
                        let line = lines.next_line().await?.ok_or_else(|| {
                            anyhow!("the child server exited before it was ready")
                        })?;
                        if line.starts_with(READY_PREFIX) {
                            break Ready::parse(&line);
                        }
                        eprintln!("{line}");
                    }
                };
                let ready = tokio::time::timeout(START_TIMEOUT, wait_ready)
                    .await
                    .context("the child server did not start in time")??;
                // Keep reading, so that a later line never meets a closed pipe; answers to
                // `stats` go to whoever asked.
                let (stats_tx, stats_rx) = tokio::sync::mpsc::unbounded_channel();
                tokio::spawn(async move {
                    while let Ok(Some(line)) = lines.next_line().await {
                        if line.starts_with(STATS_PREFIX) {
                            let _ = stats_tx.send(line);
                        } else {
                            eprintln!("{line}");
                        }
                    }
                });
                let stdin = child.stdin.take().map(tokio::sync::Mutex::new);
                (
                    ready,
                    Running::Child {
                        child,
                        io: Box::new(ChildIo {
                            stdin,
                            stats: tokio::sync::Mutex::new(stats_rx),
                        }),
                    },
                )
            }
        };
        Ok(RunningServer {
            ready,
            kind,
            running,
            _dir: dir,
            database: None,
        })
    }

    /// The database this server has to itself, if [`RunningServer::start_on`] made one.
    pub fn database(&self) -> Option<&FreshDatabase> {
        self.database.as_ref()
    }

    /// PostgreSQL round trips the server made so far (`None` on sled and for the relay).
    pub async fn round_trips(&self) -> anyhow::Result<Option<u64>> {
        match &self.running {
            Running::InProcess { probe, .. } => Ok(probe.round_trips()),
            Running::Child { io, .. } => {
                let ChildIo { stdin, stats } = io.as_ref();
                let Some(stdin) = stdin else {
                    return Ok(None);
                };
                // One question at a time: the answers carry no id.
                let mut stats = stats.lock().await;
                stdin
                    .lock()
                    .await
                    .write_all(format!("{STATS_REQUEST}\n").as_bytes())
                    .await?;
                let line = tokio::time::timeout(STATS_TIMEOUT, stats.recv())
                    .await
                    .context("the child server did not answer `stats` in time")?
                    .ok_or_else(|| anyhow!("the child server's output ended"))?;
                StorageProbe::parse(&line)
            }
        }
    }

    /// How to dial it.
    pub fn target(&self) -> anyhow::Result<Target> {
        let tls = match &self.ready.pin {
            Some(pin) => Some(confide_client::ServerTrust::Pinned(pin.clone()).client_config()?),
            None => None,
        };
        Ok(Target {
            addr: self.ready.addr,
            tls,
        })
    }

    /// The server's process id (this process, when in-process).
    pub fn pid(&self) -> Option<u32> {
        match &self.running {
            Running::Child { child, .. } => child.id(),
            Running::InProcess { .. } => None,
        }
    }

    /// Whether the server runs in this process (so its memory includes the load generator's).
    pub fn in_process(&self) -> bool {
        matches!(self.running, Running::InProcess { .. })
    }

    /// Resident memory of the server's process, in KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        crate::proc::rss_kib(self.pid())
    }

    /// The server's Prometheus metrics, by series name (labels included), or empty for the
    /// relay.
    pub async fn metrics(&self) -> anyhow::Result<HashMap<String, f64>> {
        let Some(addr) = self.ready.metrics else {
            return Ok(HashMap::new());
        };
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await?;
        let mut text = String::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut text))
            .await
            .context("metrics did not answer")??;
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        Ok(body
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .filter_map(|(name, value)| Some((name.to_string(), value.parse().ok()?)))
            .collect())
    }

    /// Stops the server gracefully (every accepted write finishes) and removes its data.
    pub async fn stop(self) -> anyhow::Result<()> {
        match self.running {
            Running::InProcess { stop, thread, .. } => {
                let _ = stop.send(());
                tokio::task::spawn_blocking(move || thread.join())
                    .await?
                    .map_err(|_| anyhow!("the in-process server panicked"))??;
            }
            Running::Child { mut child, io } => {
                drop(io);
                match tokio::time::timeout(START_TIMEOUT, child.wait()).await {
                    Ok(status) => {
                        let status = status?;
                        if !status.success() {
                            bail!("the child server exited with {status}");
                        }
                    }
                    Err(_) => {
                        child.kill().await?;
                        bail!("the child server did not stop in time; killed");
                    }
                }
            }
        }
        Ok(())
    }
}
