//! The scenarios of issue 7, each measuring Confide against a baseline in the same run, and
//! the several-node scenario of issue 19 ([`cluster`]), and Matrix Synapse in the same run
//! (issue 20, [`peer`]).

pub mod backlog;
pub mod cluster;
pub mod durable;
pub mod fanout;
pub mod memory;
pub mod peer;
pub mod slow;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::load::{self, Pace, RunResult, RunSpec};
use crate::net::{self, DialOptions, Group, Target};
use crate::report::Report;
use crate::server::{Backend, Kind, RunningServer, ServerMode};

/// How big each scenario is. [`Sizes::full`] is what BENCHMARKS.md reports; [`Sizes::smoke`]
/// is small enough for the test suite.
#[derive(Clone, Debug)]
pub struct Sizes {
    /// Groups in the fan-out, latency and slow-consumer runs.
    pub groups: usize,
    /// Members per group (every member is one device on one connection).
    pub members: usize,
    /// Padded plaintext sizes; each ciphertext is this plus the 16-byte AEAD tag.
    pub buckets: Vec<usize>,
    /// Posts per member in a maximum-throughput run.
    pub posts_per_sender: usize,
    /// Unacknowledged posts per member in a maximum-throughput run.
    pub window: usize,
    /// Length of each open-loop latency run.
    pub latency: Duration,
    /// Latencies of posts sent before this are not recorded.
    pub warmup: Duration,
    /// Durable-acknowledgement runs: (connections, unacknowledged posts per connection).
    pub durable: Vec<(usize, usize)>,
    /// Posts per durable-acknowledgement run (spread over its connections).
    pub durable_posts: usize,
    /// Length of the raw write+fdatasync loop.
    pub fsync: Duration,
    /// Idle connections in the memory scenario.
    pub connections: usize,
    /// Source addresses (127.0.0.2, …) the idle connections are spread over.
    pub addresses: usize,
    /// Stored messages in the backlog scenario.
    pub backlog: usize,
    /// Server nodes in the cluster scenario (compared with one).
    pub nodes: usize,
    /// Posts per member in the peer scenario's closed-loop runs on Synapse, which is far slower
    /// than Confide (Confide's runs there keep [`Sizes::posts_per_sender`]).
    pub peer_posts: usize,
}

impl Sizes {
    /// The sizes of the issue.
    pub fn full() -> Sizes {
        Sizes {
            groups: 10,
            members: 10,
            buckets: vec![256, 4096],
            posts_per_sender: 1_000,
            window: 8,
            latency: Duration::from_secs(10),
            warmup: Duration::from_secs(1),
            durable: vec![(10, 1), (100, 10)],
            durable_posts: 100_000,
            fsync: Duration::from_secs(3),
            connections: 10_000,
            addresses: 10,
            backlog: 10_000,
            nodes: 3,
            peer_posts: 20,
        }
    }

    /// Tiny sizes: every code path, in seconds, in a debug build.
    pub fn smoke() -> Sizes {
        Sizes {
            groups: 2,
            members: 3,
            buckets: vec![256],
            posts_per_sender: 5,
            window: 2,
            latency: Duration::from_millis(600),
            warmup: Duration::from_millis(100),
            durable: vec![(2, 2)],
            durable_posts: 12,
            fsync: Duration::from_millis(200),
            connections: 12,
            addresses: 2,
            backlog: 12,
            nodes: 3,
            peer_posts: 3,
        }
    }
}

/// Sizes plus where the servers run and store.
#[derive(Clone, Debug)]
pub struct Options {
    /// How big.
    pub sizes: Sizes,
    /// In-process or child process.
    pub mode: ServerMode,
    /// The storage backends the fan-out, latency and durable-ack scenarios run Confide on, each
    /// against the same baseline; with both, PostgreSQL is also compared with sled. (The other
    /// scenarios run on sled.)
    pub storages: Vec<Backend>,
}

impl Options {
    /// `sizes` in `mode`, on sled.
    pub fn new(sizes: Sizes, mode: ServerMode) -> Options {
        Options {
            sizes,
            mode,
            storages: vec![Backend::Sled],
        }
    }
}

/// Maximum sustained Confide posts per second by backend and bucket, from the fan-out
/// scenario; the latency and slow-consumer scenarios run at half of it.
pub type MaxRates = BTreeMap<(Backend, usize), f64>;

/// What a figure's name says about the backend: nothing for sled (the names of the figures
/// before issue 19), the backend otherwise.
pub fn on(backend: Backend) -> &'static str {
    match backend {
        Backend::Sled => "",
        Backend::Postgres => ", PostgreSQL",
    }
}

/// Sets up `count` groups of `size` members on `server`, `options(g, m)` choosing how member
/// `m` of group `g` dials.
pub async fn setup_groups(
    server: &RunningServer,
    count: usize,
    size: usize,
    options: impl Fn(usize, usize) -> DialOptions,
) -> anyhow::Result<Vec<Group>> {
    let target = server.target()?;
    let mut tasks = tokio::task::JoinSet::new();
    for g in 0..count {
        let target: Target = target.clone();
        let kind = server.kind;
        let per_member: Vec<DialOptions> = (0..size).map(|m| options(g, m)).collect();
        tasks.spawn(async move {
            let group = match kind {
                Kind::Confide => {
                    net::confide_group(&target, size, &format!("Group {g}"), &per_member).await
                }
                Kind::Relay => net::relay_group(&target, g, size, &per_member).await,
            };
            group.map(|group| (g, group))
        });
    }
    let mut groups: Vec<Option<Group>> = (0..count).map(|_| None).collect();
    while let Some(done) = tasks.join_next().await {
        let (g, group) = done??;
        groups[g] = Some(group);
    }
    Ok(groups.into_iter().flatten().collect())
}

/// What a closed-loop maximum-throughput run measured.
#[derive(Debug)]
pub struct Throughput {
    /// The load generator's figures.
    pub result: RunResult,
    /// Confide's mean group-commit batch over the server's life.
    pub batch: Option<f64>,
    /// PostgreSQL round trips per group commit during the run (PostgreSQL only).
    pub round_trips: Option<RoundTrips>,
}

/// One closed-loop maximum-throughput run of `kind` on `backend` with `bucket`-sized posts, on
/// a fresh server.
pub async fn max_throughput(
    opts: &Options,
    kind: Kind,
    backend: Backend,
    bucket: usize,
) -> anyhow::Result<Throughput> {
    let sizes = &opts.sizes;
    let server =
        RunningServer::start_on(kind, backend, &opts.mode, sizes.groups * sizes.members).await?;
    let groups = setup_groups(&server, sizes.groups, sizes.members, |_, _| {
        DialOptions::default()
    })
    .await?;
    let spec = closed_loop(sizes, bucket);
    let before = StorageCounters::of(&[&server]).await?;
    let result = load::run(groups, &spec, &server).await?;
    let round_trips = StorageCounters::of(&[&server]).await?.since(&before);
    let batch = mean_batch(&server).await;
    server.stop().await?;
    Ok(Throughput {
        result,
        batch,
        round_trips,
    })
}

/// The closed-loop run of the fan-out scenario.
pub fn closed_loop(sizes: &Sizes, bucket: usize) -> RunSpec {
    RunSpec {
        pace: Pace::Window(sizes.window),
        posts_per_sender: sizes.posts_per_sender,
        bucket,
        warmup: Duration::ZERO,
        silent: Vec::new(),
        stall: None,
        expect_deliveries: true,
        interleave_groups: false,
    }
}

/// Servers' PostgreSQL round trips and group commits so far, added up over the nodes.
#[derive(Clone, Copy, Debug)]
pub struct StorageCounters {
    /// Round trips (`PostgresStorage::round_trips`; `None` on sled).
    pub round_trips: Option<u64>,
    /// Group commits (`confide_flush_seconds_count`).
    pub commits: f64,
    /// Requests in them (`confide_flush_requests_total`).
    pub requests: f64,
}

/// Round trips during a run.
#[derive(Clone, Copy, Debug)]
pub struct RoundTrips {
    /// Every round trip the nodes made to PostgreSQL: commits, and the reads of posts and
    /// catch-ups.
    pub total: u64,
    /// Group commits in the same interval.
    pub commits: f64,
    /// Requests (posts, mostly) in those commits.
    pub requests: f64,
}

impl RoundTrips {
    /// Round trips per group commit.
    pub fn per_commit(&self) -> f64 {
        self.total as f64 / self.commits.max(1.0)
    }

    /// Round trips per request committed (per post).
    pub fn per_request(&self) -> f64 {
        self.total as f64 / self.requests.max(1.0)
    }
}

impl std::fmt::Display for RoundTrips {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} PostgreSQL round trips for {:.0} group commits of {:.0} requests: {:.2} per \
             commit, {:.2} per request (a commit is one pipelined round trip, so {:.0} were \
             reads — of posts, catch-ups and statement preparations)",
            self.total,
            self.commits,
            self.requests,
            self.per_commit(),
            self.per_request(),
            (self.total as f64 - self.commits).max(0.0)
        )
    }
}

impl StorageCounters {
    /// Reads them from `servers` (their metrics, and their storage for the round trips).
    pub async fn of(servers: &[&RunningServer]) -> anyhow::Result<StorageCounters> {
        let mut out = StorageCounters {
            round_trips: None,
            commits: 0.0,
            requests: 0.0,
        };
        for server in servers {
            if let Some(trips) = server.round_trips().await? {
                out.round_trips = Some(out.round_trips.unwrap_or(0) + trips);
            }
            let metrics = server.metrics().await?;
            out.commits += metrics
                .get("confide_flush_seconds_count")
                .copied()
                .unwrap_or(0.0);
            out.requests += metrics
                .get("confide_flush_requests_total")
                .copied()
                .unwrap_or(0.0);
        }
        Ok(out)
    }

    /// What happened since `before` (`None` without round trips).
    pub fn since(&self, before: &StorageCounters) -> Option<RoundTrips> {
        Some(RoundTrips {
            total: self
                .round_trips?
                .saturating_sub(before.round_trips.unwrap_or(0)),
            commits: self.commits - before.commits,
            requests: self.requests - before.requests,
        })
    }
}

/// The mean number of requests per durable flush so far (group commit at work).
pub async fn mean_batch(server: &RunningServer) -> Option<f64> {
    let metrics = server.metrics().await.ok()?;
    let requests = metrics.get("confide_flush_requests_total")?;
    let flushes = metrics.get("confide_flush_seconds_count")?;
    (*flushes > 0.0).then(|| requests / flushes)
}

/// Runs every scenario in order.
pub async fn all(opts: &Options, report: &mut Report) -> anyhow::Result<()> {
    let rates = fanout::throughput(opts, report).await?;
    fanout::latency(opts, report, &rates).await?;
    durable::run(opts, report).await?;
    memory::run(opts, report).await?;
    slow::run(opts, report, &rates).await?;
    backlog::run(opts, report).await?;
    Ok(())
}

/// Posts per second that the latency runs use for `bucket` on `backend`: half the maximum
/// measured in this invocation, or measured now if the fan-out scenario did not run.
pub async fn half_rate(
    opts: &Options,
    rates: &MaxRates,
    backend: Backend,
    bucket: usize,
) -> anyhow::Result<f64> {
    if let Some(rate) = rates.get(&(backend, bucket)) {
        return Ok(rate / 2.0);
    }
    eprintln!(
        "  measuring Confide's maximum rate on {} at {bucket} B first",
        backend.label()
    );
    let measured = max_throughput(opts, Kind::Confide, backend, bucket).await?;
    Ok(measured.result.acks_per_sec / 2.0)
}
