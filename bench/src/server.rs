//! Starting and stopping the server under test — Confide or the bare relay — either as a child
//! process (the same `confide-bench` binary, `serve` subcommand) or in-process on a runtime of
//! its own.
//!
//! The full benchmarks use a child process: its resident memory is the server's alone, and the
//! server and the load generator are scheduled by the kernel as two processes, as they would be
//! in production. The smoke test runs everything in-process, so that `cargo test` needs no
//! binary.

use anyhow::{Context as _, anyhow, bail};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};

use confide_server::{Config, Limits, SledStorage, TlsIdentity};

use crate::net::Target;

/// How long a server may take to start or to stop gracefully.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Worker threads of the in-process server's runtime (the machine has two cores).
const IN_PROCESS_WORKERS: usize = 2;
/// The line a child server prints once it listens.
const READY_PREFIX: &str = "READY";
/// Environment variable naming a command to run child servers under, for profiling (e.g.
/// `CONFIDE_BENCH_WRAP="heaptrack -o /tmp/server"`); memory figures are then not the
/// server's own.
pub const WRAP_ENV: &str = "CONFIDE_BENCH_WRAP";

/// Which server to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// The real Confide server: TLS, authentication, sled with group commit.
    Confide,
    /// The bare tokio-tungstenite relay (the baseline).
    Relay,
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
/// in `server/src/config.rs`, are never changed for a benchmark.)
pub fn bench_limits(connections: usize) -> Limits {
    let connections = connections.max(1) + 1_024;
    Limits {
        rate_per_second: 1_000_000,
        rate_burst: 1_000_000,
        registrations_per_hour: 1_000_000_000,
        registration_burst: 1_000_000,
        max_connections: connections,
        max_unauthenticated_per_ip: connections,
        max_authenticated_per_ip: connections,
        ..Limits::default()
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

/// Runs a server on 127.0.0.1 (an OS-chosen port) with its data in `data_dir` until `shutdown`
/// completes; `ready` is called once it listens.
pub async fn serve(
    kind: Kind,
    data_dir: &Path,
    connections: usize,
    ready: impl FnOnce(Ready),
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    match kind {
        Kind::Relay => {
            ready(Ready {
                addr,
                metrics: None,
                pin: None,
            });
            crate::relay::run(listener, shutdown).await
        }
        Kind::Confide => {
            let identity = TlsIdentity::dev(data_dir)?;
            let pin = identity.fingerprint();
            let storage = Arc::new(SledStorage::open(&data_dir.join("db"))?);
            let metrics_listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
            let metrics = metrics_listener.local_addr()?;
            let config = Config {
                limits: bench_limits(connections),
                tls: Some(identity.server_config()?),
                storage,
                metrics_listener: Some(metrics_listener),
                cluster: None,
            };
            ready(Ready {
                addr,
                metrics: Some(metrics),
                pin: Some(pin),
            });
            confide_server::run(listener, config, shutdown).await?;
            Ok(())
        }
    }
}

/// The `serve` subcommand: serves until standard input closes (the parent exited or dropped
/// it), announcing itself with one `READY …` line on standard output.
pub async fn serve_child(kind: Kind, data_dir: &Path, connections: usize) -> anyhow::Result<()> {
    serve(
        kind,
        data_dir,
        connections,
        |ready| println!("{}", ready.to_line()),
        async {
            let mut sink = Vec::new();
            let _ = tokio::io::stdin().read_to_end(&mut sink).await;
        },
    )
    .await
}

enum Running {
    InProcess {
        stop: tokio::sync::oneshot::Sender<()>,
        thread: std::thread::JoinHandle<anyhow::Result<()>>,
    },
    Child {
        child: tokio::process::Child,
        stdin: Option<tokio::process::ChildStdin>,
    },
}

/// A running server under test; its data directory is deleted when it is dropped.
pub struct RunningServer {
    /// What it announced.
    pub ready: Ready,
    /// Which server it is.
    pub kind: Kind,
    running: Running,
    _dir: tempfile::TempDir,
}

impl RunningServer {
    /// Starts `kind` in `mode`, sized for `connections` simultaneous connections.
    pub async fn start(
        kind: Kind,
        mode: &ServerMode,
        connections: usize,
    ) -> anyhow::Result<RunningServer> {
        let dir = tempfile::Builder::new()
            .prefix("confide-bench-")
            .tempdir()?;
        let data_dir = dir.path().to_path_buf();
        let (ready, running) = match mode {
            ServerMode::InProcess => {
                let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
                let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
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
                            |ready| {
                                let _ = ready_tx.send(ready);
                            },
                            async {
                                let _ = stop_rx.await;
                            },
                        ))
                    })?;
                let ready = tokio::time::timeout(START_TIMEOUT, ready_rx)
                    .await
                    .context("the in-process server did not start in time")?
                    .map_err(|_| anyhow!("the in-process server failed to start"))?;
                (ready, Running::InProcess { stop, thread })
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
                let mut child = command
                    .arg("serve")
                    .arg("--kind")
                    .arg(match kind {
                        Kind::Confide => "confide",
                        Kind::Relay => "relay",
                    })
                    .arg("--data-dir")
                    .arg(&data_dir)
                    .arg("--max-connections")
                    .arg(connections.to_string())
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
                // Keep reading, so that a later line never meets a closed pipe.
                tokio::spawn(async move {
                    while let Ok(Some(line)) = lines.next_line().await {
                        eprintln!("{line}");
                    }
                });
                let stdin = child.stdin.take();
                (ready, Running::Child { child, stdin })
            }
        };
        Ok(RunningServer {
            ready,
            kind,
            running,
            _dir: dir,
        })
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
            Running::InProcess { stop, thread } => {
                let _ = stop.send(());
                tokio::task::spawn_blocking(move || thread.join())
                    .await?
                    .map_err(|_| anyhow!("the in-process server panicked"))??;
            }
            Running::Child { mut child, stdin } => {
                drop(stdin);
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
