//! # confide-bench
//!
//! The benchmark harness of issue 7. Every figure is a ratio to a baseline measured in the same
//! run on the same machine, because the machines are shared and noisy:
//!
//! | scenario | measures | baseline |
//! |---|---|---|
//! | fan-out | delivered messages/s, groups of 10, TLS and durable acks on | bare relay ([`relay`]) |
//! | latency | p50/p99/p99.9 send→delivery at half the maximum rate, open loop | bare relay |
//! | durable acks | acknowledged posts/s, nothing fanned out | raw write+fdatasync loop |
//! | memory | server RSS per idle authenticated TLS connection | bare relay, plain ws |
//! | slow consumer | others' p99 and server RSS while one member stops reading | same run, nobody stalls |
//! | backlog | client-library sync time per stored message | raw protocol paging |
//! | cluster | three nodes on one PostgreSQL database and NATS: throughput, same- and cross-node latency, CPU and round trips per delivery | one node, same database and NATS |
//! | peer | the fan-out and latency runs through Matrix Synapse ([`synapse`]) | Confide (and the bare relay), same run |
//!
//! The fan-out, latency and durable-ack scenarios run Confide on sled, on PostgreSQL
//! ([`Options::storages`], `--storage sled,postgres`) or both, and then compare the two.
//! The micro-benchmarks (criterion) are in `benches/crypto.rs`.
//!
//! Main pieces: [`server`] starts Confide or the relay (child process or in-process; on sled or
//! a fresh PostgreSQL database from [`database`]),
//! [`net`] dials and sets up devices and groups with real signed ops, [`load`] generates
//! fan-out load with timestamps in the payload and HDR histograms, [`scenarios`] are the
//! scenarios, [`report`] prints the figures, [`history`] keeps them (`--record`) and [`charts`]
//! draws them (`confide-bench charts`). The binary `confide-bench` parses flags and calls
//! [`run`]; `tests/smoke.rs` runs every scenario with [`Sizes::smoke`] in-process.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod charts;
pub mod database;
pub mod history;
pub mod load;
pub mod net;
pub mod proc;
pub mod relay;
pub mod report;
pub mod scenarios;
pub mod seed;
pub mod server;
pub mod synapse;

pub use report::Report;
pub use scenarios::{Options, Sizes};
pub use server::{Backend, Kind, ServerMode};

/// A scenario to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Every scenario, in order.
    All,
    /// Fan-out throughput against the bare relay.
    Fanout,
    /// Latency at half the maximum rate against the bare relay.
    Latency,
    /// Durable acknowledgements against the fdatasync floor.
    Durable,
    /// Memory per idle connection against the bare relay.
    Memory,
    /// One member stops reading.
    SlowConsumer,
    /// A returning member syncs a backlog.
    Backlog,
    /// Several nodes on one PostgreSQL database against one (not part of `All`: it needs
    /// PostgreSQL and NATS).
    Cluster,
    /// The fan-out through Matrix Synapse against Confide (not part of `All`: it needs
    /// Synapse installed).
    Peer,
}

/// Runs `scenario` and returns what it measured.
pub async fn run(scenario: Scenario, opts: &Options) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let no_rates = scenarios::MaxRates::new();
    match scenario {
        Scenario::All => scenarios::all(opts, &mut report).await?,
        Scenario::Fanout => {
            scenarios::fanout::throughput(opts, &mut report).await?;
        }
        Scenario::Latency => scenarios::fanout::latency(opts, &mut report, &no_rates).await?,
        Scenario::Durable => scenarios::durable::run(opts, &mut report).await?,
        Scenario::Memory => scenarios::memory::run(opts, &mut report).await?,
        Scenario::SlowConsumer => scenarios::slow::run(opts, &mut report, &no_rates).await?,
        Scenario::Backlog => scenarios::backlog::run(opts, &mut report).await?,
        Scenario::Cluster => {
            scenarios::cluster::run(opts, &mut report).await?;
        }
        Scenario::Peer => scenarios::peer::run(opts, &mut report).await?,
    }
    Ok(report)
}
