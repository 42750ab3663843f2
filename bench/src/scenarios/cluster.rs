//! Several server nodes on one PostgreSQL database with NATS fan-out hints (issue 19): one node
//! against [`Sizes::nodes`](super::Sizes::nodes) nodes, on the same machine.
//!
//! Each configuration is a deployment of its own: a fresh database ([`FreshDatabase`]), a
//! subject prefix no other run uses, and its nodes started as in production (`--storage
//! postgres://… --nats … --nats-prefix …`; the one-node baseline too, so that the comparison is
//! of spreading over nodes, not of being a cluster member). The members of every group are
//! spread round-robin over the nodes (member `m` of group `g` on node `(g + m) % nodes`), so
//! that with three nodes about two thirds of all deliveries cross nodes: stored by the sender's
//! node, hinted over NATS, read back from PostgreSQL by the recipient's node.
//!
//! Measured, each against the one-node deployment in the same invocation: delivered messages
//! per second (closed loop, as the fan-out scenario); p50 and p99 from send to delivery at half
//! the lower of the two maxima (open loop, as the latency scenario, but with each group's posts
//! spread evenly over the run: [`RunSpec::interleave_groups`]), for deliveries to a member on
//! the sender's node and to one on another node separately; CPU per delivery summed over the
//! nodes' processes, with and without the database's backend processes; and PostgreSQL round
//! trips per group commit, read from each node's storage (a child node answers the harness's
//! `stats` line: [`RunningServer::round_trips`]) against the group commits its `/metrics`
//! counts.
//!
//! On a machine with two cores, three nodes cannot go faster than one: they share the same
//! cores with PostgreSQL, NATS and the load generator. What this scenario shows is the price of
//! crossing nodes — latency, CPU and round trips per delivery — not scaling.

use std::collections::HashMap;
use std::time::Duration;

use confide_server::cluster::ClusterConfig;

use super::fanout::open_loop_spec;
use super::{Options, RoundTrips, StorageCounters, closed_loop};
use crate::database::{FreshDatabase, nats_url, random_hex};
use crate::load::{self, RunResult, RunSpec};
use crate::net::{self, DialOptions, Group, Target};
use crate::report::Report;
use crate::server::{Kind, NodeSettings, RunningServer};

const SCENARIO: &str = "cluster";
/// How long a node may take to report NATS connected after it started.
const NATS_WAIT: Duration = Duration::from_secs(10);
/// How often a node's `/metrics` is read while waiting for NATS.
const NATS_POLL: Duration = Duration::from_millis(100);

/// How the members' deliveries went in one run, for the smoke test and the report.
#[derive(Clone, Debug)]
pub struct Deliveries {
    /// The run: `"N nodes, closed loop"` or `"N nodes, open loop"`.
    pub run: String,
    /// Server nodes.
    pub nodes: usize,
    /// Messages the members were to receive (every other member's posts).
    pub expected: u64,
    /// Messages they received.
    pub delivered: u64,
    /// Of those, messages received on another node than the sender's.
    pub cross_node: u64,
    /// Second copies of a message a member already had (not counted in `delivered`).
    pub duplicates: u64,
    /// Members' own posts delivered back to them (not counted in `delivered`).
    pub echoes: u64,
    /// Messages that reached a member after a later message of their group.
    pub out_of_order: u64,
    /// Posts refused for a passing reason and sent again, by code.
    pub reposts: std::collections::BTreeMap<String, u64>,
}

/// One deployment: its database and its nodes.
struct Deployment {
    nodes: Vec<RunningServer>,
    /// Dropped after the nodes stopped.
    database: FreshDatabase,
}

impl Deployment {
    /// `count` nodes on a fresh database, with a fresh subject prefix, each sized for
    /// `connections` connections; returns once every node says NATS is connected.
    async fn start(opts: &Options, count: usize, connections: usize) -> anyhow::Result<Self> {
        let nats = nats_url();
        require_nats(&nats).await?;
        let database = FreshDatabase::create().await?;
        let settings = NodeSettings {
            postgres: Some(database.url().to_string()),
            cluster: Some(ClusterConfig {
                nats_url: nats,
                subject_prefix: format!("confide-bench-{}", random_hex(8)?),
            }),
            no_flush: false,
        };
        let mut nodes = Vec::with_capacity(count);
        // One after another: the first applies the schema.
        for _ in 0..count {
            let node = RunningServer::start_with(Kind::Confide, &opts.mode, connections, &settings)
                .await?;
            wait_for_nats(&node).await?;
            nodes.push(node);
        }
        Ok(Deployment { nodes, database })
    }

    fn servers(&self) -> Vec<&RunningServer> {
        self.nodes.iter().collect()
    }

    /// `count` groups of `size`, each group's members spread round-robin over the nodes.
    async fn groups(&self, count: usize, size: usize) -> anyhow::Result<Vec<Group>> {
        let targets: Vec<Target> = self
            .nodes
            .iter()
            .map(RunningServer::target)
            .collect::<anyhow::Result<_>>()?;
        let mut tasks = tokio::task::JoinSet::new();
        for g in 0..count {
            let targets = targets.clone();
            tasks.spawn(async move {
                let options = vec![DialOptions::default(); size];
                net::confide_group_across(&targets, g, size, &format!("Group {g}"), &options)
                    .await
                    .map(|group| (g, group))
            });
        }
        let mut groups: Vec<Option<Group>> = (0..count).map(|_| None).collect();
        while let Some(done) = tasks.join_next().await {
            let (g, group) = done??;
            groups[g] = Some(group);
        }
        Ok(groups.into_iter().flatten().collect())
    }

    /// The nodes' cluster counters, added up.
    async fn cluster_metrics(&self) -> anyhow::Result<HashMap<String, f64>> {
        let mut out = HashMap::new();
        for node in &self.nodes {
            for (name, value) in node.metrics().await? {
                if name.starts_with("confide_cluster_") {
                    *out.entry(name).or_default() += value;
                }
            }
        }
        Ok(out)
    }

    async fn stop(self) -> anyhow::Result<()> {
        let Deployment { nodes, database } = self;
        for node in nodes {
            node.stop().await?;
        }
        drop(database);
        Ok(())
    }
}

/// Fails, saying what to do, unless a NATS server answers at `url`.
async fn require_nats(url: &str) -> anyhow::Result<()> {
    let address = url.trim_start_matches("nats://");
    let reachable = tokio::time::timeout(NATS_WAIT, tokio::net::TcpStream::connect(address)).await;
    if !matches!(reachable, Ok(Ok(_))) {
        anyhow::bail!(
            "NATS is not reachable at {url}: start it (nats-server) or set {} to its URL",
            crate::database::NATS_ENV
        );
    }
    Ok(())
}

/// Waits until `node` reports NATS connected: without it, deliveries would cross nodes by
/// polling and the figures would measure the poll.
async fn wait_for_nats(node: &RunningServer) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + NATS_WAIT;
    loop {
        let metrics = node.metrics().await?;
        if metrics.get("confide_cluster_nats_connected") == Some(&1.0) {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("a node did not connect to NATS within {NATS_WAIT:?}");
        }
        tokio::time::sleep(NATS_POLL).await;
    }
}

/// What one run on one deployment measured.
struct Measured {
    nodes: usize,
    result: RunResult,
    round_trips: Option<RoundTrips>,
    cluster: HashMap<String, f64>,
}

impl Measured {
    fn deliveries(&self, run: &str) -> Deliveries {
        Deliveries {
            run: format!("{} nodes, {run}", self.nodes),
            nodes: self.nodes,
            expected: self.result.expected_deliveries,
            delivered: self.result.delivered,
            cross_node: self.result.delivered_cross_node,
            duplicates: self.result.duplicates,
            echoes: self.result.echoes,
            out_of_order: self.result.out_of_order,
            reposts: self.result.reposts.clone(),
        }
    }

    /// CPU per delivered message in µs: the nodes', and the nodes' plus the database's.
    fn cpu_per_delivery(&self) -> (f64, f64) {
        let n = self.result.delivered.max(1) as f64;
        (
            self.result.server_cpu * 1e6 / n,
            (self.result.server_cpu + self.result.database_cpu) * 1e6 / n,
        )
    }

    fn counter(&self, name: &str) -> f64 {
        self.cluster.get(name).copied().unwrap_or(0.0)
    }
}

/// One run of `spec` on a fresh deployment of `count` nodes.
async fn measure(opts: &Options, count: usize, spec: &RunSpec) -> anyhow::Result<Measured> {
    let s = &opts.sizes;
    let deployment = Deployment::start(opts, count, s.groups * s.members).await?;
    let groups = deployment.groups(s.groups, s.members).await?;
    let servers = deployment.servers();
    let before = StorageCounters::of(&servers).await?;
    let cluster_before = deployment.cluster_metrics().await?;
    let result = load::run_on(groups, spec, &servers, Some(&deployment.database)).await?;
    let round_trips = StorageCounters::of(&servers).await?.since(&before);
    let mut cluster = deployment.cluster_metrics().await?;
    for (name, value) in &mut cluster {
        *value -= cluster_before.get(name).copied().unwrap_or(0.0);
    }
    drop(servers);
    deployment.stop().await?;
    Ok(Measured {
        nodes: count,
        result,
        round_trips,
        cluster,
    })
}

/// One node against `opts.sizes.nodes` nodes: throughput, then latency at half the lower
/// maximum. Returns how every run's deliveries went.
pub async fn run(opts: &Options, report: &mut Report) -> anyhow::Result<Vec<Deliveries>> {
    let s = &opts.sizes;
    let many = s.nodes.max(2);
    let bucket = s.buckets.first().copied().unwrap_or(256);
    let size = bucket + 16;
    let mut deliveries = Vec::new();
    eprintln!(
        "cluster: 1 node against {many}, one PostgreSQL database and NATS; {} groups of {} \
         members spread round-robin over the nodes, {size} B ciphertext",
        s.groups, s.members
    );

    let closed = closed_loop(s, bucket);
    let one = measure(opts, 1, &closed).await?;
    let spread = measure(opts, many, &closed).await?;
    deliveries.push(one.deliveries("closed loop"));
    deliveries.push(spread.deliveries("closed loop"));
    let label = format!("{many} nodes");
    report.figure(
        SCENARIO,
        format!("{label}, {size} B: delivered messages/s"),
        spread.result.deliveries_per_sec,
        "msg/s",
        "1 node",
        one.result.deliveries_per_sec,
        None,
    );
    let (one_cpu, one_all) = one.cpu_per_delivery();
    let (spread_cpu, spread_all) = spread.cpu_per_delivery();
    report.figure(
        SCENARIO,
        format!("{label}: server CPU per delivery, all nodes"),
        spread_cpu,
        "µs",
        "1 node",
        one_cpu,
        None,
    );
    report.figure(
        SCENARIO,
        format!("{label}: server + PostgreSQL backends' CPU per delivery"),
        spread_all,
        "µs",
        "1 node",
        one_all,
        None,
    );
    if let (Some(a), Some(b)) = (&one.round_trips, &spread.round_trips) {
        report.figure(
            SCENARIO,
            format!("{label}: PostgreSQL round trips per group commit"),
            b.per_commit(),
            "round trips",
            "1 node",
            a.per_commit(),
            None,
        );
        report.figure(
            SCENARIO,
            format!("{label}: PostgreSQL round trips per post"),
            b.per_request(),
            "round trips",
            "1 node",
            a.per_request(),
            None,
        );
    }
    for m in [&one, &spread] {
        note_run(report, m, "closed loop");
    }

    let rate = one.result.acks_per_sec.min(spread.result.acks_per_sec) / 2.0;
    eprintln!(
        "cluster latency: {size} B at {rate:.0} posts/s for {:?}",
        s.latency
    );
    let mut open = open_loop_spec(s, bucket, rate, s.latency, Vec::new(), None);
    // Each group's posts spread evenly over the run: released group by group, a group's ten
    // members would post within a few milliseconds of each other from three nodes, and nearly
    // every post would race another node's for the group's next seq.
    open.interleave_groups = true;
    let one = measure(opts, 1, &open).await?;
    let spread = measure(opts, many, &open).await?;
    deliveries.push(one.deliveries("open loop"));
    deliveries.push(spread.deliveries("open loop"));
    for (name, q) in [("p50", 0.5), ("p99", 0.99)] {
        let baseline = one.result.latency_ms(q);
        for (class, histogram) in [
            ("on another node than the sender", &spread.result.cross_node),
            ("on the sender's node", &spread.result.same_node),
        ] {
            report.figure(
                SCENARIO,
                format!("{label}, {size} B at {rate:.0} posts/s, delivery {class}: {name}"),
                histogram.value_at_quantile(q) as f64 / 1e6,
                "ms",
                "1 node",
                baseline,
                None,
            );
        }
    }
    for m in [&one, &spread] {
        note_run(report, m, "open loop");
        report.note(
            SCENARIO,
            format!(
                "{} nodes, open loop: latencies recorded {} on the sender's node (p99.9 {:.1} \
                 ms, max {:.1} ms), {} on another node (p99.9 {:.1} ms, max {:.1} ms)",
                m.nodes,
                m.result.same_node.len(),
                m.result.same_node.value_at_quantile(0.999) as f64 / 1e6,
                m.result.same_node.max() as f64 / 1e6,
                m.result.cross_node.len(),
                m.result.cross_node.value_at_quantile(0.999) as f64 / 1e6,
                m.result.cross_node.max() as f64 / 1e6,
            ),
        );
    }
    Ok(deliveries)
}

/// The context of one run: deliveries, CPU, group commits, round trips and hints.
fn note_run(report: &mut Report, m: &Measured, run: &str) {
    let r = &m.result;
    let (cpu, all) = m.cpu_per_delivery();
    report.note(
        SCENARIO,
        format!(
            "{} nodes, {run}: {} of {} deliveries ({} across nodes; besides them {} second \
             copies, {} own posts delivered back to their sender, and {} deliveries after a \
             later message of the group) in {:.1} s, {:.0} posts/s acknowledged; posts refused \
             and sent again after the wait the refusal named: {:?}; CPU per \
             delivery: nodes {cpu:.1} µs, PostgreSQL backends {:.1} µs, load generator {:.1} \
             µs; {}; {}; NATS hints published {:.0}, heard {:.0}, dropped {:.0}; messages read \
             back by other nodes {:.0}; polls {:.0}",
            m.nodes,
            r.delivered,
            r.expected_deliveries,
            r.delivered_cross_node,
            r.duplicates,
            r.echoes,
            r.out_of_order,
            r.elapsed.as_secs_f64(),
            r.acks_per_sec,
            r.reposts,
            all - cpu,
            r.harness_cpu * 1e6 / r.delivered.max(1) as f64,
            r.flushes
                .as_ref()
                .map_or_else(|| "no flush statistics".to_string(), |f| f.to_string()),
            m.round_trips
                .as_ref()
                .map_or_else(|| "no round trips".to_string(), |t| t.to_string()),
            m.counter("confide_cluster_hints_published_total"),
            m.counter("confide_cluster_hints_heard_total"),
            m.counter("confide_cluster_hints_dropped_total"),
            m.counter("confide_cluster_messages_caught_up_total"),
            m.counter("confide_cluster_polls_total"),
        ),
    );
}
