//! The scenarios of issue 7, each measuring Confide against a baseline in the same run.

pub mod backlog;
pub mod durable;
pub mod fanout;
pub mod memory;
pub mod slow;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::load::{self, Pace, RunResult, RunSpec};
use crate::net::{self, DialOptions, Group, Target};
use crate::report::Report;
use crate::server::{Kind, RunningServer, ServerMode};

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
        }
    }
}

/// Sizes plus where the servers run.
#[derive(Clone, Debug)]
pub struct Options {
    /// How big.
    pub sizes: Sizes,
    /// In-process or child process.
    pub mode: ServerMode,
}

/// Maximum sustained Confide posts per second by bucket, from the fan-out scenario; the
/// latency and slow-consumer scenarios run at half of it.
pub type MaxRates = BTreeMap<usize, f64>;

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

/// One closed-loop maximum-throughput run of `kind` with `bucket`-sized posts, on a fresh
/// server; also returns Confide's mean group-commit batch.
pub async fn max_throughput(
    opts: &Options,
    kind: Kind,
    bucket: usize,
) -> anyhow::Result<(RunResult, Option<f64>)> {
    let sizes = &opts.sizes;
    let server = RunningServer::start(kind, &opts.mode, sizes.groups * sizes.members).await?;
    let groups = setup_groups(&server, sizes.groups, sizes.members, |_, _| {
        DialOptions::default()
    })
    .await?;
    let spec = RunSpec {
        pace: Pace::Window(sizes.window),
        posts_per_sender: sizes.posts_per_sender,
        bucket,
        warmup: Duration::ZERO,
        silent: Vec::new(),
        stall: None,
        expect_deliveries: true,
    };
    let result = load::run(groups, &spec, &server).await?;
    let batch = mean_batch(&server).await;
    server.stop().await?;
    Ok((result, batch))
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

/// Posts per second that the latency runs use for `bucket`: half the maximum measured in this
/// invocation, or measured now if the fan-out scenario did not run.
pub async fn half_rate(opts: &Options, rates: &MaxRates, bucket: usize) -> anyhow::Result<f64> {
    if let Some(rate) = rates.get(&bucket) {
        return Ok(rate / 2.0);
    }
    eprintln!("  measuring Confide's maximum rate at {bucket} B first");
    let (result, _) = max_throughput(opts, Kind::Confide, bucket).await?;
    Ok(result.acks_per_sec / 2.0)
}
