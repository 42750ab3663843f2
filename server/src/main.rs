//! `confide-server`: parses flags and the optional config file, sets up TLS and storage, and
//! calls [`confide_server::run`].

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use confide_server::storage::postgres::redacted_url;
use confide_server::{
    Config, FileConfig, Limits, PostgresStorage, SledStorage, Storage, TlsIdentity, WebAssets,
    WebSettings,
};

/// jemalloc instead of the system's malloc (feature `jemalloc`, on by default). With glibc's
/// malloc the server's threads wait on each other's arena locks, because sled's old nodes are
/// freed by whichever thread next reads the tree: a durable post cost about a quarter more CPU
/// (BENCHMARKS.md, "Issue 20, a fifth round"). Build with `--no-default-features` for a heap
/// profiler that follows only the system's malloc (heaptrack).
#[cfg(all(feature = "jemalloc", unix))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Default address: loopback, so that a first run exposes nothing; set `--listen 0.0.0.0:7443`
/// to serve other machines.
const DEFAULT_LISTEN: &str = "127.0.0.1:7443";
/// Default data directory, relative to the working directory.
const DEFAULT_DATA_DIR: &str = "./confide-data";
/// The NATS subject prefix when none is set.
const DEFAULT_NATS_PREFIX: &str = "confide";
/// Sled's database lives in this subdirectory of the data directory.
const DB_SUBDIR: &str = "db";

/// The Confide relay: end-to-end encrypted group chat for facilitated peer-support groups.
///
/// The server relays and stores only ciphertext, signed group-log operations and public keys.
/// It authenticates devices by signature, enforces each group's signed moderation rules, and
/// acknowledges a message only once it is durable on disk.
///
/// Quick start (self-signed certificate, printed fingerprint for clients to pin):
///
///     confide-server --dev
#[derive(Parser, Debug)]
#[command(
    name = "confide-server",
    version,
    about,
    long_about,
    verbatim_doc_comment,
    args_conflicts_with_subcommands = true
)]
struct Args {
    /// Something else than serving (serving needs no subcommand).
    #[command(subcommand)]
    command: Option<Command>,

    /// Address and port to accept websocket connections on.
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<SocketAddr>,

    /// Directory holding the database (and, with --dev, the development certificate).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// Store data in this PostgreSQL database instead of sled in --data-dir, so that several
    /// server nodes can share it: postgres://user@host:5432/database (or postgresql://). The
    /// connection is not encrypted: keep the database on a private network or a unix socket.
    /// Also read from CONFIDE_STORAGE, which keeps a password off the command line.
    #[arg(
        long,
        value_name = "URL",
        env = "CONFIDE_STORAGE",
        hide_env_values = true
    )]
    storage: Option<String>,

    /// Run as one of several nodes sharing the --storage database: tell the other nodes over
    /// this NATS server what this one stores, and hear what they store (nats://host:4222).
    /// Needs --storage. Without it the node assumes it is the only one.
    #[arg(long, value_name = "URL", requires = "storage")]
    nats: Option<String>,

    /// The NATS subject prefix of this deployment (the same on every node; letters, digits, '-'
    /// and '_'), so that several deployments can share one NATS server.
    #[arg(long, value_name = "PREFIX", requires = "nats")]
    nats_prefix: Option<String>,

    /// PEM certificate chain for TLS (with --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// PEM private key for TLS (with --tls-cert).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    /// Development mode: create (once) and reuse a self-signed certificate in the data directory
    /// and print its SHA-256 fingerprint, which clients pin with --pin.
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key", "insecure_plaintext"])]
    dev: bool,

    /// Serve plain, unencrypted websockets. Refused unless --listen is a loopback address: use it
    /// only for local testing or behind a TLS-terminating proxy on the same machine.
    #[arg(long)]
    insecure_plaintext: bool,

    /// Address for the /healthz and Prometheus /metrics endpoints (plain HTTP; keep it private).
    #[arg(long, value_name = "ADDR:PORT")]
    metrics_listen: Option<SocketAddr>,

    /// TOML file with any of these settings and every limit (see the README). Flags win.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Require this token to register new devices (otherwise anyone may register).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "CONFIDE_REGISTRATION_TOKEN",
        hide_env_values = true
    )]
    registration_token: Option<String>,

    /// The name clients dial this server by (bound into authentication signatures).
    #[arg(long, value_name = "NAME")]
    server_name: Option<String>,

    /// Serve the web app from this directory (a build with its asset-manifest.json) on the
    /// same port as the websockets. Every file is read and checked at startup.
    #[arg(long, value_name = "DIR")]
    web_dir: Option<PathBuf>,

    /// Sources the web app may connect to besides this server, space-separated (added to its
    /// Content-Security-Policy connect-src), for an app hosted on another origin.
    #[arg(long, value_name = "SOURCES")]
    web_connect_src: Option<String>,

    /// The relay the web app served here connects to, when that is another server
    /// (wss://relay.example.org/; ws:// only to a loopback name): added to the app's
    /// connect-src and announced at /web-config.json. Without it the app connects to this
    /// server.
    #[arg(long, value_name = "URL")]
    web_relay: Option<String>,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
enum Command {
    /// Copy a stopped server's sled database into an empty PostgreSQL database, keeping every
    /// seq, message id and inbox id, then check the copy. Stop the server first (sled's lock
    /// refuses a database in use). One transaction: if it fails, nothing is left behind.
    MigrateSled {
        /// The stopped server's data directory (the database is in its db/ subdirectory).
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// The empty PostgreSQL database: postgres://user@host:5432/database.
        #[arg(long, value_name = "URL")]
        to: String,
    },
}

/// Turns core dumps off and, on Linux, makes the process not dumpable, as
/// `confide_client::harden_process` does for a client: the server's memory holds its TLS
/// private key and the registration token, which a dump would write to disk (and hand to
/// whatever collects crash dumps).
fn harden_process() -> std::io::Result<()> {
    #[cfg(unix)]
    rustix::process::setrlimit(
        rustix::process::Resource::Core,
        rustix::process::Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    )?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)?;
    Ok(())
}

fn main() -> std::process::ExitCode {
    match real_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("confide-server: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    if let Err(e) = harden_process() {
        tracing::warn!(error = %e, "core dumps could not be turned off");
    }
    let args = Args::parse();
    if let Some(Command::MigrateSled { data_dir, to }) = &args.command {
        return migrate_sled(data_dir, to);
    }
    let file = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            FileConfig::parse(&text).with_context(|| format!("parsing {}", path.display()))?
        }
        None => FileConfig::default(),
    };
    let mut limits = file.apply_to(Limits::default());
    if let Some(token) = &args.registration_token {
        limits.registration_token = Some(token.clone());
    }
    if let Some(name) = &args.server_name {
        limits.server_name = name.clone();
    }
    let listen: SocketAddr = match (args.listen, &file.listen) {
        (Some(addr), _) => addr,
        (None, Some(text)) => text
            .parse()
            .with_context(|| format!("invalid listen address {text:?}"))?,
        (None, None) => DEFAULT_LISTEN.parse()?,
    };
    let metrics_listen: Option<SocketAddr> = match (args.metrics_listen, &file.metrics_listen) {
        (Some(addr), _) => Some(addr),
        (None, Some(text)) => Some(
            text.parse()
                .with_context(|| format!("invalid metrics address {text:?}"))?,
        ),
        (None, None) => None,
    };
    let data_dir = args
        .data_dir
        .clone()
        .or(file.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let postgres = match args.storage.clone().or(file.storage.clone()) {
        Some(url) => Some(postgres_url(url)?),
        None => None,
    };
    let cluster = match args.nats.clone().or(file.nats.clone()) {
        Some(nats_url) => {
            if postgres.is_none() {
                bail!(
                    "--nats (or `nats` in the config file) joins nodes that share one database: \
                     it needs --storage postgres://…"
                );
            }
            let subject_prefix = args
                .nats_prefix
                .clone()
                .or(file.nats_prefix.clone())
                .unwrap_or_else(|| DEFAULT_NATS_PREFIX.into());
            if !confide_server::cluster::valid_prefix(&subject_prefix) {
                bail!("--nats-prefix {subject_prefix:?}: use 1 to 64 letters, digits, '-' or '_'");
            }
            Some(confide_server::cluster::ClusterConfig {
                nats_url,
                subject_prefix,
            })
        }
        None => None,
    };
    // With PostgreSQL the data directory holds only the --dev certificate.
    if postgres.is_none() || args.dev {
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
    }

    let web_dir = args.web_dir.clone().or(file.web_dir.clone());
    let assets = match &web_dir {
        Some(dir) => {
            let max = file
                .web_max_bytes
                .unwrap_or(confide_server::web::DEFAULT_WEB_MAX_BYTES);
            let assets = WebAssets::load(dir, max)?;
            println!(
                "serving the web app from {} ({} files, {} bytes in memory)",
                dir.display(),
                assets.len(),
                assets.bytes()
            );
            Some(Arc::new(assets))
        }
        None => None,
    };
    let web_installed = assets.is_some();
    let connect_src = args
        .web_connect_src
        .clone()
        .or(file.web_connect_src.clone());
    let relay = args.web_relay.clone().or(file.web_relay.clone());
    // HSTS only with a real certificate: a browser would remember it for the development host.
    limits.web = WebSettings::new(assets, connect_src.as_deref(), !args.dev)?
        .with_relay(relay.as_deref())?;
    if let Some(config) = limits.web.web_config() {
        println!("the web app connects to the relay named in /web-config.json: {config}");
    }

    let tls = if args.insecure_plaintext {
        if !listen.ip().is_loopback() {
            bail!(
                "--insecure-plaintext is refused on {listen}: plain websockets are allowed only on a \
                 loopback address (127.0.0.1 or ::1). Use --dev or --tls-cert/--tls-key instead."
            );
        }
        tracing::warn!(
            "serving PLAIN websockets without TLS: for local testing or behind a TLS proxy only"
        );
        None
    } else if args.dev {
        let identity = TlsIdentity::dev(&data_dir)?;
        let fingerprint = identity.fingerprint();
        println!("confide-server development certificate SHA-256 fingerprint:\n  {fingerprint}");
        println!(
            "clients connect with: --server wss://localhost:{} --pin {fingerprint}",
            listen.port()
        );
        // A browser cannot pin a certificate by its hash; Chromium can be told to accept this
        // one key for a development session.
        println!(
            "browsers (Chromium) accept it with: --ignore-certificate-errors-spki-list={}",
            identity.spki_pin()?
        );
        Some(identity.server_config()?)
    } else {
        let cert = args.tls_cert.clone().or(file.tls_cert.clone());
        let key = args.tls_key.clone().or(file.tls_key.clone());
        match (cert, key) {
            (Some(cert), Some(key)) => {
                Some(TlsIdentity::from_pem_files(&cert, &key)?.server_config()?)
            }
            _ => bail!(
                "no TLS certificate: pass --tls-cert and --tls-key (PEM), or --dev for a self-signed \
                 development certificate, or --insecure-plaintext on a loopback address"
            ),
        }
    };

    let dev = args.dev;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async move {
        let storage: Arc<dyn Storage> = match &postgres {
            Some(url) => {
                // Connecting blocks this thread until the database answers or its timeouts
                // pass (the backend runs its queries on a runtime of its own); nothing else
                // runs yet.
                let storage = PostgresStorage::connect(url).with_context(|| {
                    format!("connecting to PostgreSQL at {}", redacted_url(url))
                })?;
                println!("storage: PostgreSQL at {}", storage.name());
                Arc::new(storage)
            }
            None => {
                let cache = file
                    .storage_cache_bytes
                    .unwrap_or(confide_server::storage::DEFAULT_CACHE_BYTES);
                let min_free = file
                    .storage_min_free_bytes
                    .unwrap_or(confide_server::storage::DEFAULT_MIN_FREE_BYTES);
                let ids = file
                    .storage_ids_in_memory
                    .unwrap_or(confide_server::storage::DEFAULT_IDS_IN_MEMORY);
                anyhow::ensure!(
                    ids >= confide_server::storage::MIN_IDS_IN_MEMORY,
                    "storage_ids_in_memory must be at least {}, not {ids}",
                    confide_server::storage::MIN_IDS_IN_MEMORY
                );
                Arc::new(
                    SledStorage::open_with(&data_dir.join(DB_SUBDIR), cache, min_free)?
                        .with_ids_in_memory(ids),
                )
            }
        };
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        let metrics_listener = match metrics_listen {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding {addr}"))?,
            ),
            None => None,
        };
        let bound = listener.local_addr()?;
        println!(
            "confide-server listening on {}{bound}",
            if tls.is_some() { "wss://" } else { "ws://" }
        );
        if dev && web_installed {
            println!("open https://localhost:{}/", bound.port());
        }
        if let Some(m) = &metrics_listener {
            println!("metrics on http://{}/metrics", m.local_addr()?);
        }
        let config = Config {
            limits,
            tls,
            storage,
            metrics_listener,
            cluster,
        };
        confide_server::run(listener, config, shutdown_signal()).await?;
        Ok(())
    });
    // `run` has bounded every wait of its own; a worker thread still inside a synchronous
    // storage call on a stuck disk must not keep the process from exiting either.
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN_TIMEOUT);
    result
}

/// `url` if it names a PostgreSQL database; an error that does not repeat it otherwise (it may
/// hold a password).
fn postgres_url(url: String) -> anyhow::Result<String> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(url)
    } else {
        bail!(
            "--storage (or `storage` in the config file) takes a PostgreSQL URL starting with \
             postgres:// or postgresql://, such as postgres://confide@db.internal:5432/confide; \
             without it, data is stored with sled in --data-dir"
        )
    }
}

/// `confide-server migrate-sled`: copies the sled database in `data_dir` into the empty
/// PostgreSQL database at `to`, and prints what it copied.
fn migrate_sled(data_dir: &std::path::Path, to: &str) -> anyhow::Result<()> {
    let to = postgres_url(to.to_string())?;
    let db = data_dir.join(DB_SUBDIR);
    if !db.is_dir() {
        bail!(
            "no sled database in {}: --data-dir is the server's data directory (the one it \
             was started with), which holds the database in {DB_SUBDIR}/",
            data_dir.display()
        );
    }
    let from = SledStorage::open(&db).with_context(|| {
        format!(
            "opening the sled database in {} (stop the server that uses it first)",
            db.display()
        )
    })?;
    let target = PostgresStorage::connect(&to)
        .with_context(|| format!("connecting to PostgreSQL at {}", redacted_url(&to)))?;
    println!(
        "copying the sled database in {} into PostgreSQL at {}",
        db.display(),
        target.name()
    );
    let report = confide_server::storage::sled_to_postgres(&from, &target)
        .with_context(|| format!("copying into {}", target.name()))?;
    println!("{report}");
    println!(
        "checked: PostgreSQL holds exactly what was copied. Start the server with \
         --storage {}",
        target.name()
    );
    Ok(())
}

/// How long the process waits, after the server stopped, for runtime threads still blocked in
/// a storage call (a stuck disk) before it exits anyway. By then `run` has finished or given up
/// on everything it waits for within the shutdown timeout, so a thread still busy is stuck and
/// waiting longer only delays the supervisor's restart; a moment is left for threads that are
/// merely finishing. So the process exits at most `shutdown_timeout` plus this after a signal.
const RUNTIME_SHUTDOWN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutdown signal received");
}
