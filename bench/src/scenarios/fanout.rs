//! Fan-out throughput and latency: groups of members who all post to their group, against
//! Confide (TLS, authentication, durable acknowledgements; on sled, PostgreSQL or both) and the
//! bare relay.

use std::time::Duration;

use super::{MaxRates, Options, Sizes, half_rate, max_throughput, on, setup_groups};
use crate::load::{self, Pace, RunResult, RunSpec};
use crate::net::DialOptions;
use crate::report::{Distribution, Report, Target};
use crate::server::{Backend, Kind, RunningServer};

const THROUGHPUT: &str = "fan-out";
const LATENCY: &str = "latency";
/// Issue 20's target for fan-out throughput as a ratio to the bare relay, small posts (272 B).
pub const TARGET_FANOUT_RATIO_SMALL: f64 = 0.6;
/// … and for larger ones (4112 B), where the relay's copies are cheap and Confide's are not.
pub const TARGET_FANOUT_RATIO: f64 = 0.5;
/// The target for p99 latency on loopback, in ms.
pub const TARGET_P99_MS: f64 = 10.0;
/// Issue 20's second latency target: p99 at most this multiple of the relay's.
pub const TARGET_P99_RATIO: f64 = 3.0;

/// The fan-out target for `bucket` (padded plaintext bytes).
pub fn target_fanout_ratio(bucket: usize) -> f64 {
    if bucket <= 256 {
        TARGET_FANOUT_RATIO_SMALL
    } else {
        TARGET_FANOUT_RATIO
    }
}

/// Maximum delivered messages per second, Confide (on each backend of `opts.storages`)
/// against the relay, for every bucket; with both backends, PostgreSQL against sled too.
/// Returns Confide's maximum posts per second by backend and bucket for the latency runs.
pub async fn throughput(opts: &Options, report: &mut Report) -> anyhow::Result<MaxRates> {
    let s = &opts.sizes;
    eprintln!(
        "fan-out: {} groups of {} members, window {} per member, {} posts per member",
        s.groups, s.members, s.window, s.posts_per_sender
    );
    let mut rates = MaxRates::new();
    for &bucket in &s.buckets {
        let relay = max_throughput(opts, Kind::Relay, Backend::Sled, bucket)
            .await?
            .result;
        let mut measured = Vec::new();
        for &backend in &opts.storages {
            let confide = max_throughput(opts, Kind::Confide, backend, bucket).await?;
            report.figure(
                THROUGHPUT,
                format!(
                    "{} B ciphertext{}: delivered messages/s",
                    bucket + 16,
                    on(backend)
                ),
                confide.result.deliveries_per_sec,
                "msg/s",
                "bare relay",
                relay.deliveries_per_sec,
                Some(Target::RatioAtLeast(target_fanout_ratio(bucket))),
            );
            let r = &confide.result;
            report.note(
                THROUGHPUT,
                format!(
                    "{} B{}: Confide acknowledged {:.0} posts/s ({} delivered in {:.1} s, mean \
                     group-commit batch {:.1} posts); the relay {:.0} posts/s",
                    bucket + 16,
                    on(backend),
                    r.acks_per_sec,
                    r.delivered,
                    r.elapsed.as_secs_f64(),
                    confide.batch.unwrap_or(f64::NAN),
                    relay.acks_per_sec,
                ),
            );
            report.note(THROUGHPUT, cpu_note(bucket, backend, r, &relay));
            if let Some(trips) = &confide.round_trips {
                report.note(
                    THROUGHPUT,
                    format!("{} B{}: {trips}", bucket + 16, on(backend)),
                );
            }
            rates.insert((backend, bucket), r.acks_per_sec);
            measured.push((backend, confide));
        }
        if let [(Backend::Sled, sled), (Backend::Postgres, postgres)]
        | [(Backend::Postgres, postgres), (Backend::Sled, sled)] = &measured[..]
        {
            report.figure(
                THROUGHPUT,
                format!(
                    "{} B ciphertext, PostgreSQL against sled: delivered messages/s",
                    bucket + 16
                ),
                postgres.result.deliveries_per_sec,
                "msg/s",
                "sled",
                sled.result.deliveries_per_sec,
                None,
            );
            let per =
                |r: &RunResult| (r.server_cpu + r.database_cpu) * 1e6 / r.delivered.max(1) as f64;
            report.figure(
                THROUGHPUT,
                format!(
                    "{} B, PostgreSQL against sled: server + database CPU per delivery",
                    bucket + 16
                ),
                per(&postgres.result),
                "µs",
                "sled",
                per(&sled.result),
                None,
            );
        }
    }
    Ok(rates)
}

/// Where the CPU went: server (and its PostgreSQL backends) and load generator, per delivered
/// message.
fn cpu_note(bucket: usize, backend: Backend, confide: &RunResult, relay: &RunResult) -> String {
    let per = |cpu: f64, r: &RunResult| cpu * 1e6 / r.delivered.max(1) as f64;
    let database = match backend {
        Backend::Sled => String::new(),
        Backend::Postgres => format!(
            " plus its PostgreSQL backends {:.1} µs",
            per(confide.database_cpu, confide)
        ),
    };
    format!(
        "{} B{} CPU per delivered message: Confide server {:.1} µs{database}, its load \
         generator {:.1} µs; relay {:.1} µs, its load generator {:.1} µs (2 cores shared by \
         all processes)",
        bucket + 16,
        on(backend),
        per(confide.server_cpu, confide),
        per(confide.harness_cpu, confide),
        per(relay.server_cpu, relay),
        per(relay.harness_cpu, relay),
    )
}

/// One open-loop run of `duration` at `rate` posts per second on a fresh server of `kind` (on
/// `backend`).
#[allow(clippy::too_many_arguments)]
pub async fn open_loop(
    opts: &Options,
    kind: Kind,
    backend: Backend,
    bucket: usize,
    rate: f64,
    duration: Duration,
    silent: Vec<(usize, usize)>,
    stall: Option<(usize, usize, Duration)>,
    options: impl Fn(usize, usize) -> DialOptions,
) -> anyhow::Result<RunResult> {
    let s = &opts.sizes;
    let server = RunningServer::start_on(kind, backend, &opts.mode, s.groups * s.members).await?;
    let groups = setup_groups(&server, s.groups, s.members, options).await?;
    let spec = open_loop_spec(s, bucket, rate, duration, silent, stall);
    let result = load::run(groups, &spec, &server).await?;
    server.stop().await?;
    Ok(result)
}

/// The open-loop run of `duration` at `rate` posts per second over every member but `silent`.
pub fn open_loop_spec(
    s: &Sizes,
    bucket: usize,
    rate: f64,
    duration: Duration,
    silent: Vec<(usize, usize)>,
    stall: Option<(usize, usize, Duration)>,
) -> RunSpec {
    let senders = (s.groups * s.members).saturating_sub(silent.len()).max(1);
    let total = (rate * duration.as_secs_f64()).ceil() as usize;
    RunSpec {
        pace: Pace::Rate(rate),
        posts_per_sender: total.div_ceil(senders).max(1),
        bucket,
        warmup: s.warmup,
        silent,
        stall,
        expect_deliveries: true,
        interleave_groups: false,
    }
}

/// p50, p99 and p99.9 from send to delivery at half of Confide's maximum rate, Confide (on each
/// backend) against the relay at the same rate. With both backends, both run at half the
/// slower one's maximum, so that PostgreSQL and sled carry the same load.
pub async fn latency(opts: &Options, report: &mut Report, rates: &MaxRates) -> anyhow::Result<()> {
    for &bucket in &opts.sizes.buckets {
        let mut rate = f64::INFINITY;
        for &backend in &opts.storages {
            rate = rate.min(half_rate(opts, rates, backend, bucket).await?);
        }
        let half = if opts.storages.len() > 1 {
            "half the slower backend's max"
        } else {
            "half max"
        };
        eprintln!(
            "latency: {} B at {rate:.0} posts/s for {:?}",
            bucket + 16,
            opts.sizes.latency
        );
        let duration = opts.sizes.latency;
        let everyone = |_, _| DialOptions::default();
        let relay = open_loop(
            opts,
            Kind::Relay,
            Backend::Sled,
            bucket,
            rate,
            duration,
            vec![],
            None,
            everyone,
        )
        .await?;
        report.distributions.push(Distribution::of(
            LATENCY,
            format!("{} B", bucket + 16),
            "bare relay",
            &relay.latency,
        ));
        let mut measured = Vec::new();
        for &backend in &opts.storages {
            let confide = open_loop(
                opts,
                Kind::Confide,
                backend,
                bucket,
                rate,
                duration,
                vec![],
                None,
                everyone,
            )
            .await?;
            for (label, q) in QUANTILES {
                let target = (label == "p99").then_some(Target::ValueBelowRatioAtMost(
                    TARGET_P99_MS,
                    TARGET_P99_RATIO,
                ));
                report.figure(
                    LATENCY,
                    format!(
                        "{} B{} at {rate:.0} posts/s ({half}): {label}",
                        bucket + 16,
                        on(backend)
                    ),
                    confide.latency_ms(q),
                    "ms",
                    "bare relay",
                    relay.latency_ms(q),
                    target,
                );
            }
            report.distributions.push(Distribution::of(
                LATENCY,
                format!("{} B{}", bucket + 16, on(backend)),
                "Confide",
                &confide.latency,
            ));
            report.note(
                LATENCY,
                format!(
                    "{} B{}: {} latencies recorded, max {:.1} ms (relay max {:.1} ms); {}",
                    bucket + 16,
                    on(backend),
                    confide.latency.len(),
                    confide.latency.max() as f64 / 1e6,
                    relay.latency.max() as f64 / 1e6,
                    confide
                        .flushes
                        .as_ref()
                        .map_or_else(|| "no flush statistics".to_string(), |f| f.to_string())
                ),
            );
            measured.push((backend, confide));
        }
        if let [(Backend::Sled, sled), (Backend::Postgres, postgres)]
        | [(Backend::Postgres, postgres), (Backend::Sled, sled)] = &measured[..]
        {
            for (label, q) in QUANTILES {
                report.figure(
                    LATENCY,
                    format!(
                        "{} B at {rate:.0} posts/s, PostgreSQL against sled: {label}",
                        bucket + 16
                    ),
                    postgres.latency_ms(q),
                    "ms",
                    "sled",
                    sled.latency_ms(q),
                    None,
                );
            }
        }
    }
    Ok(())
}

/// The latency quantiles reported, by name.
const QUANTILES: [(&str, f64); 3] = [("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999)];
