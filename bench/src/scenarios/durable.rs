//! Durable acknowledgements: acknowledged posts per second when nothing fans out (every group
//! has one member), against the floor of the disk — one `write` + `fdatasync` after another.
//! Group commit is what lets the server beat the floor: one flush makes many posts durable.

use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::time::{Duration, Instant};

use super::{Options, RoundTrips, StorageCounters, mean_batch, on, setup_groups};
use crate::load::{self, Pace, RunResult, RunSpec};
use crate::net::DialOptions;
use crate::report::{Report, Target};
use crate::server::{Backend, Kind, RunningServer};

const SCENARIO: &str = "durable acks";
/// Issue 20's target: acknowledged posts per second as a fraction of the same server with
/// flushing turned off (`SledStorage::without_flushing_for_benchmarks`): what durability costs.
pub const TARGET_RATIO_TO_NO_FLUSH: f64 = 0.8;
/// Issue 20's target: at most this many µs of server CPU per acknowledged post at
/// [`CPU_TARGET_AT`] (connections, posts in flight each).
pub const TARGET_CPU_US: f64 = 30.0;
/// The durable run the CPU target applies to.
pub const CPU_TARGET_AT: (usize, usize) = (100, 10);
/// Bytes written before each fdatasync in the floor loop (one page).
const FLOOR_WRITE: usize = 4096;
/// Padded plaintext size of the posts (the smallest bucket: the disk, not the bytes, is
/// measured).
const BUCKET: usize = 256;

/// `write` + `fdatasync` per second, one after another, on the file system that holds the
/// server's data (the temporary directory).
pub fn fdatasync_floor(duration: Duration) -> anyhow::Result<f64> {
    let dir = tempfile::Builder::new()
        .prefix("confide-bench-fsync-")
        .tempdir()?;
    let mut file = std::fs::File::create(dir.path().join("floor"))?;
    let block = vec![0x5au8; FLOOR_WRITE];
    // Allocate the block first, so that every timed sync is a data write, not a metadata one.
    file.write_all(&block)?;
    file.sync_all()?;
    let started = Instant::now();
    let mut syncs = 0u64;
    while started.elapsed() < duration {
        file.write_all_at(&block, 0)?;
        file.sync_data()?;
        syncs += 1;
    }
    Ok(syncs as f64 / started.elapsed().as_secs_f64())
}

/// The floor, then each configured number of connections and posts in flight on each backend
/// of `opts.storages`, then the floor again.
pub async fn run(opts: &Options, report: &mut Report) -> anyhow::Result<()> {
    let s = &opts.sizes;
    let duration = s.fsync;
    let measure_floor = move || async move {
        tokio::task::spawn_blocking(move || fdatasync_floor(duration)).await?
    };
    let mut first_cpu = std::collections::BTreeMap::<Backend, ((usize, usize), f64)>::new();
    for &(connections, window) in &s.durable {
        // The shared disk's speed drifts by whole factors within minutes: the floor is measured
        // right before and right after the runs, and their mean is the baseline.
        let floor_before = measure_floor().await?;
        let mut measured = Vec::new();
        for &backend in &opts.storages {
            measured.push((
                backend,
                one_run(opts, backend, connections, window, true).await?,
            ));
        }
        let floor_after = measure_floor().await?;
        let floor = (floor_before + floor_after) / 2.0;
        // The same server acknowledging without flushing (sled; PostgreSQL has no such switch).
        if let Some((_, (flushed, _, _))) = measured.iter().find(|(b, _)| *b == Backend::Sled) {
            let (unflushed, batch, _) =
                one_run(opts, Backend::Sled, connections, window, false).await?;
            report.figure(
                SCENARIO,
                format!(
                    "{connections} connections × {window} in flight: acknowledged posts/s, \
                     durable against not flushed"
                ),
                flushed.acks_per_sec,
                "posts/s",
                "the same server, commits not flushed",
                unflushed.acks_per_sec,
                Some(Target::RatioAtLeast(TARGET_RATIO_TO_NO_FLUSH)),
            );
            report.note(
                SCENARIO,
                format!(
                    "{connections}×{window} not flushed: {} posts in {:.1} s, mean group-commit \
                     batch {:.1} posts; server CPU {:.1} µs per acknowledged post",
                    unflushed.acks,
                    unflushed.elapsed.as_secs_f64(),
                    batch.unwrap_or(f64::NAN),
                    unflushed.server_cpu * 1e6 / unflushed.acks.max(1) as f64,
                ),
            );
        }
        for (backend, (result, batch, trips)) in &measured {
            report.figure(
                SCENARIO,
                format!(
                    "{connections} connections × {window} in flight{}: acknowledged posts/s",
                    on(*backend)
                ),
                result.acks_per_sec,
                "posts/s",
                "write+fdatasync floor",
                floor,
                None,
            );
            let database = match backend {
                Backend::Sled => String::new(),
                Backend::Postgres => format!(
                    " (its PostgreSQL backends {:.1} µs more)",
                    result.database_cpu * 1e6 / result.acks.max(1) as f64
                ),
            };
            report.note(
                SCENARIO,
                format!(
                    "{connections}×{window}{}: {} posts in {:.1} s, mean group-commit batch \
                     {:.1} posts; server CPU {:.1} µs per acknowledged post{database}; \
                     fdatasync floor {:.0}/s before and {:.0}/s after",
                    on(*backend),
                    result.acks,
                    result.elapsed.as_secs_f64(),
                    batch.unwrap_or(f64::NAN),
                    result.server_cpu * 1e6 / result.acks.max(1) as f64,
                    floor_before,
                    floor_after
                ),
            );
            let cpu = result.server_cpu * 1e6 / result.acks.max(1) as f64;
            // The baseline is the first durable run's CPU per post (10 × 1 by default): how far
            // group commit amortises the server's work per post.
            let (first, first_cpu) = *first_cpu
                .entry(*backend)
                .or_insert(((connections, window), cpu));
            report.figure(
                SCENARIO,
                format!(
                    "{connections} connections × {window} in flight{}: server CPU per \
                     acknowledged post",
                    on(*backend)
                ),
                cpu,
                "µs",
                format!("{} × {} in flight", first.0, first.1),
                first_cpu,
                ((connections, window) == CPU_TARGET_AT)
                    .then_some(Target::ValueAtMost(TARGET_CPU_US)),
            );
            if let Some(trips) = trips {
                report.note(
                    SCENARIO,
                    format!("{connections}×{window}{}: {trips}", on(*backend)),
                );
            }
        }
        if let [(Backend::Sled, sled), (Backend::Postgres, postgres)]
        | [(Backend::Postgres, postgres), (Backend::Sled, sled)] = &measured[..]
        {
            report.figure(
                SCENARIO,
                format!(
                    "{connections} connections × {window} in flight, PostgreSQL against sled: \
                     acknowledged posts/s"
                ),
                postgres.0.acks_per_sec,
                "posts/s",
                "sled",
                sled.0.acks_per_sec,
                None,
            );
        }
    }
    Ok(())
}

/// One durable-ack run on a fresh server on `backend` (sled only: without flushing unless
/// `flush`): what the load generator measured, the mean group-commit batch, and PostgreSQL's
/// round trips.
async fn one_run(
    opts: &Options,
    backend: Backend,
    connections: usize,
    window: usize,
    flush: bool,
) -> anyhow::Result<(RunResult, Option<f64>, Option<RoundTrips>)> {
    let s = &opts.sizes;
    let server = if flush {
        RunningServer::start_on(Kind::Confide, backend, &opts.mode, connections).await?
    } else {
        let settings = crate::server::NodeSettings {
            no_flush: true,
            ..Default::default()
        };
        RunningServer::start_with(Kind::Confide, &opts.mode, connections, &settings).await?
    };
    let groups = setup_groups(&server, connections, 1, |_, _| DialOptions::default()).await?;
    let spec = RunSpec {
        pace: Pace::Window(window),
        posts_per_sender: (s.durable_posts / connections).max(1),
        bucket: BUCKET,
        warmup: Duration::ZERO,
        silent: Vec::new(),
        stall: None,
        expect_deliveries: false,
        interleave_groups: false,
    };
    let before = StorageCounters::of(&[&server]).await?;
    let result = load::run(groups, &spec, &server).await?;
    let trips = StorageCounters::of(&[&server]).await?.since(&before);
    let batch = mean_batch(&server).await;
    server.stop().await?;
    Ok((result, batch, trips))
}
