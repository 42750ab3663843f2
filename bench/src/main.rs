//! `confide-bench`: parses flags into [`confide_bench::Options`] and runs a scenario.
//!
//!     cargo run --release -p confide-bench -- all
//!     cargo run --release -p confide-bench -- --smoke all
//!     cargo run --release -p confide-bench -- memory --connections 2000
//!     cargo run --release -p confide-bench -- fanout --storage sled,postgres
//!     cargo run --release -p confide-bench -- cluster
//!     cargo run --release -p confide-bench -- peer

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

use confide_bench::server::NodeSettings;
use confide_bench::{Backend, Kind, Options, Scenario, ServerMode, Sizes};
use confide_server::cluster::ClusterConfig;

/// jemalloc instead of the system's malloc (feature `jemalloc`, on by default), as in
/// `confide-server` and `confide`: the child servers this harness starts are this binary, so
/// they must allocate as the real server does. With glibc's malloc, threads wait on each
/// other's arena locks, because sled's old nodes are freed by whichever thread next reads the
/// tree (BENCHMARKS.md, "Issue 20, a fifth round"). Build with `--no-default-features` for a
/// heap profiler that follows only the system's malloc (heaptrack).
#[cfg(all(feature = "jemalloc", unix))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Benchmarks Confide against a bare relay and an fdatasync floor measured in the same run.
#[derive(Parser, Debug)]
#[command(name = "confide-bench", version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
    /// Tiny sizes, as in the test suite's smoke run (flags below still override them).
    #[arg(long, global = true)]
    smoke: bool,
    /// Run the servers inside this process instead of as child processes (their memory then
    /// includes the load generator's).
    #[arg(long, global = true)]
    in_process: bool,
    /// Also write the results as a Markdown table to this file.
    #[arg(long, global = true, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Also append the results as one JSON line to the history (`--history`), for `charts`.
    #[arg(long, global = true)]
    record: bool,
    /// The history `--record` appends to and `charts` reads.
    #[arg(long, global = true, value_name = "FILE", default_value = confide_bench::history::DEFAULT_PATH)]
    history: PathBuf,
    /// Where Confide stores in the fan-out, latency and durable scenarios, comma-separated
    /// (`sled,postgres` runs both and compares them). PostgreSQL runs each get a fresh
    /// database on the server named by CONFIDE_BENCH_POSTGRES (default
    /// postgres://postgres@127.0.0.1:5432/postgres).
    #[arg(
        long,
        global = true,
        value_enum,
        value_delimiter = ',',
        default_value = "sled"
    )]
    storage: Vec<Backend>,
    #[command(flatten)]
    sizes: SizeArgs,
}

/// Overrides of the default sizes.
#[derive(clap::Args, Debug)]
struct SizeArgs {
    /// Groups in the fan-out, latency and slow-consumer runs.
    #[arg(long, global = true)]
    groups: Option<usize>,
    /// Members per group.
    #[arg(long, global = true)]
    members: Option<usize>,
    /// Padded plaintext sizes in bytes (the ciphertext adds a 16-byte tag), comma-separated.
    #[arg(long, global = true, value_delimiter = ',')]
    buckets: Option<Vec<usize>>,
    /// Posts per member in a maximum-throughput run.
    #[arg(long, global = true)]
    posts_per_sender: Option<usize>,
    /// Unacknowledged posts per member in a maximum-throughput run.
    #[arg(long, global = true)]
    window: Option<usize>,
    /// Seconds per open-loop latency run.
    #[arg(long, global = true)]
    latency_secs: Option<f64>,
    /// Seconds of warm-up whose latencies are not recorded.
    #[arg(long, global = true)]
    warmup_secs: Option<f64>,
    /// Durable-ack runs as CONNECTIONSxWINDOW, comma-separated (e.g. 10x1,100x10).
    #[arg(long, global = true, value_delimiter = ',', value_parser = parse_durable)]
    durable: Option<Vec<(usize, usize)>>,
    /// Posts per durable-ack run.
    #[arg(long, global = true)]
    durable_posts: Option<usize>,
    /// Seconds of the raw write+fdatasync loop.
    #[arg(long, global = true)]
    fsync_secs: Option<f64>,
    /// Idle connections in the memory scenario.
    #[arg(long, global = true)]
    connections: Option<usize>,
    /// Source addresses 127.0.0.2… the idle connections are spread over.
    #[arg(long, global = true)]
    addresses: Option<usize>,
    /// Stored messages in the backlog scenario.
    #[arg(long, global = true)]
    backlog: Option<usize>,
    /// Server nodes in the cluster scenario (compared with one).
    #[arg(long, global = true)]
    nodes: Option<usize>,
    /// Posts per member in the peer scenario's closed-loop runs on Synapse.
    #[arg(long, global = true)]
    peer_posts: Option<usize>,
}

fn parse_durable(text: &str) -> Result<(usize, usize), String> {
    let (c, w) = text
        .split_once('x')
        .ok_or_else(|| format!("expected CONNECTIONSxWINDOW, got {text:?}"))?;
    Ok((
        c.parse().map_err(|e| format!("{c:?}: {e}"))?,
        w.parse().map_err(|e| format!("{w:?}: {e}"))?,
    ))
}

impl SizeArgs {
    fn apply(self, mut s: Sizes) -> Sizes {
        let secs = Duration::from_secs_f64;
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = self.$field { s.$field = v; } )* };
        }
        set!(
            groups,
            members,
            buckets,
            posts_per_sender,
            window,
            durable,
            durable_posts,
            connections,
            addresses,
            backlog,
            nodes,
            peer_posts
        );
        if let Some(v) = self.latency_secs {
            s.latency = secs(v);
        }
        if let Some(v) = self.warmup_secs {
            s.warmup = secs(v);
        }
        if let Some(v) = self.fsync_secs {
            s.fsync = secs(v);
        }
        s
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Every scenario, in order.
    All,
    /// Fan-out throughput (delivered messages/s) against the bare relay.
    Fanout,
    /// p50/p99/p99.9 latency at half the maximum rate against the bare relay.
    Latency,
    /// Durable acknowledgements per second against the fdatasync floor.
    Durable,
    /// Resident memory per idle authenticated TLS connection against the bare relay.
    Memory,
    /// One member stops reading: the others' p99 and the server's memory.
    SlowConsumer,
    /// A client syncing a stored backlog, per message.
    Backlog,
    /// Three nodes on one PostgreSQL database and NATS against one: throughput, same- and
    /// cross-node latency, CPU and PostgreSQL round trips per delivery (needs PostgreSQL,
    /// CONFIDE_BENCH_POSTGRES, and NATS, CONFIDE_BENCH_NATS, default nats://127.0.0.1:4222).
    Cluster,
    /// Draws the history (`--history`) as SVG charts: throughput ratios per run, the newest
    /// latency distributions, durable acks and CPU per post, Confide beside the peer.
    Charts {
        /// Where the SVG files go.
        #[arg(long, default_value = "docs/bench")]
        out_dir: PathBuf,
    },
    /// The fan-out and latency runs through Matrix Synapse against Confide and the bare relay,
    /// in the same invocation (needs Synapse: CONFIDE_BENCH_SYNAPSE_PYTHON, default
    /// target/peer/venv/bin/python; `python3 -m venv target/peer/venv &&
    /// target/peer/venv/bin/pip install matrix-synapse`).
    Peer,
    /// Fills a group on a running server for the web app's budgets: prints `invite <web link>`,
    /// waits until somebody joined with it, then sends the messages (`cargo xtask web-budgets`).
    SeedGroup {
        /// The running server's websocket URL, e.g. wss://localhost:8443.
        #[arg(long)]
        server: String,
        /// The pin of its certificate, as `confide-server --dev` prints it.
        #[arg(long)]
        pin: String,
        /// Messages to send.
        #[arg(long, default_value_t = 10_000)]
        messages: usize,
        /// Seconds to wait for somebody to join.
        #[arg(long, default_value_t = 600)]
        join_timeout_secs: u64,
    },
    /// Runs a server for the harness until standard input closes (internal).
    #[command(hide = true)]
    Serve {
        /// Which server.
        #[arg(long, value_enum)]
        kind: Kind,
        /// Its data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Connections it must accept at once.
        #[arg(long)]
        max_connections: usize,
        /// Store in this PostgreSQL database instead of sled in the data directory.
        #[arg(long, value_name = "URL")]
        postgres: Option<String>,
        /// Join the other nodes on this NATS server (needs --postgres).
        #[arg(
            long,
            value_name = "URL",
            requires = "postgres",
            requires = "nats_prefix"
        )]
        nats: Option<String>,
        /// The deployment's NATS subject prefix.
        #[arg(long, value_name = "PREFIX", requires = "nats")]
        nats_prefix: Option<String>,
        /// sled only: acknowledge without flushing (the durable scenario's baseline).
        #[arg(long, conflicts_with = "postgres")]
        no_flush: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let scenario = match args.command {
        Command::Serve {
            kind,
            data_dir,
            max_connections,
            postgres,
            nats,
            nats_prefix,
            no_flush,
        } => {
            let settings = NodeSettings {
                postgres,
                no_flush,
                cluster: nats
                    .zip(nats_prefix)
                    .map(|(nats_url, subject_prefix)| ClusterConfig {
                        nats_url,
                        subject_prefix,
                    }),
            };
            let runtime = tokio::runtime::Runtime::new()?;
            return runtime.block_on(confide_bench::server::serve_child(
                kind,
                &data_dir,
                max_connections,
                &settings,
            ));
        }
        Command::SeedGroup {
            server,
            pin,
            messages,
            join_timeout_secs,
        } => {
            let runtime = tokio::runtime::Runtime::new()?;
            return runtime.block_on(confide_bench::seed::run(
                &confide_bench::seed::SeedOptions {
                    server_url: server,
                    pin,
                    messages,
                    join_timeout: Duration::from_secs(join_timeout_secs),
                },
            ));
        }
        Command::Charts { out_dir } => {
            for path in confide_bench::charts::render(&args.history, &out_dir)? {
                println!("wrote {}", path.display());
            }
            return Ok(());
        }
        Command::All => Scenario::All,
        Command::Fanout => Scenario::Fanout,
        Command::Latency => Scenario::Latency,
        Command::Durable => Scenario::Durable,
        Command::Memory => Scenario::Memory,
        Command::SlowConsumer => Scenario::SlowConsumer,
        Command::Backlog => Scenario::Backlog,
        Command::Cluster => Scenario::Cluster,
        Command::Peer => Scenario::Peer,
    };
    let base = if args.smoke {
        Sizes::smoke()
    } else {
        Sizes::full()
    };
    let sizes = args.sizes.apply(base);
    let mode = if args.in_process {
        ServerMode::InProcess
    } else {
        ServerMode::Child(std::env::current_exe().context("locating this executable")?)
    };
    // Every idle connection, twice when both ends are in this process, plus slack for the
    // database and the other scenarios' sockets. A child server inherits the limit.
    let ends = if args.in_process { 2 } else { 1 };
    let wanted = (sizes.connections as u64) * ends + 4_096;
    let limit = confide_bench::proc::raise_fd_limit(wanted)?;
    if limit < wanted {
        eprintln!("warning: file-descriptor limit {limit} is below the {wanted} wanted");
    }
    let start = confide_bench::history::Start::now();
    let mut storages = args.storage;
    storages.sort();
    storages.dedup();
    let opts = Options {
        sizes,
        mode,
        storages,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let started = std::time::Instant::now();
    let report = runtime.block_on(confide_bench::run(scenario, &opts))?;
    if args.record {
        let storages: Vec<String> = opts.storages.iter().map(|b| b.label().into()).collect();
        let entry = start.finish(&report, &opts.sizes, &storages);
        confide_bench::history::append(&args.history, &entry)?;
        eprintln!("recorded in {}", args.history.display());
    }
    let table = report.to_markdown();
    println!("{table}");
    eprintln!(
        "finished in {:.0} s; targets {}",
        started.elapsed().as_secs_f64(),
        if report.all_met() {
            "all met"
        } else {
            "NOT all met"
        }
    );
    if let Some(path) = args.out {
        std::fs::write(&path, table).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
