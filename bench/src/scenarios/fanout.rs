//! Fan-out throughput and latency: groups of members who all post to their group, against
//! Confide (TLS, authentication, durable acknowledgements) and the bare relay.

use std::time::Duration;

use super::{MaxRates, Options, half_rate, max_throughput, setup_groups};
use crate::load::{self, Pace, RunResult, RunSpec};
use crate::net::DialOptions;
use crate::report::{Report, Target};
use crate::server::{Kind, RunningServer};

const THROUGHPUT: &str = "fan-out";
const LATENCY: &str = "latency";
/// The target for fan-out throughput as a ratio to the bare relay.
pub const TARGET_FANOUT_RATIO: f64 = 0.5;
/// The target for p99 latency on loopback, in ms.
pub const TARGET_P99_MS: f64 = 10.0;

/// Maximum delivered messages per second, Confide against the relay, for every bucket.
/// Returns Confide's maximum posts per second by bucket for the latency runs.
pub async fn throughput(opts: &Options, report: &mut Report) -> anyhow::Result<MaxRates> {
    let s = &opts.sizes;
    eprintln!(
        "fan-out: {} groups of {} members, window {} per member, {} posts per member",
        s.groups, s.members, s.window, s.posts_per_sender
    );
    let mut rates = MaxRates::new();
    for &bucket in &s.buckets {
        let (relay, _) = max_throughput(opts, Kind::Relay, bucket).await?;
        let (confide, batch) = max_throughput(opts, Kind::Confide, bucket).await?;
        report.figure(
            THROUGHPUT,
            format!("{} B ciphertext: delivered messages/s", bucket + 16),
            confide.deliveries_per_sec,
            "msg/s",
            "bare relay",
            relay.deliveries_per_sec,
            Some(Target::RatioAtLeast(TARGET_FANOUT_RATIO)),
        );
        report.note(
            THROUGHPUT,
            format!(
                "{} B: Confide acknowledged {:.0} posts/s ({} delivered in {:.1} s, mean \
                 group-commit batch {:.1} posts); the relay {:.0} posts/s",
                bucket + 16,
                confide.acks_per_sec,
                confide.delivered,
                confide.elapsed.as_secs_f64(),
                batch.unwrap_or(f64::NAN),
                relay.acks_per_sec,
            ),
        );
        report.note(THROUGHPUT, cpu_note(bucket, &confide, &relay));
        rates.insert(bucket, confide.acks_per_sec);
    }
    Ok(rates)
}

/// Where the CPU went: server and load generator, per delivered message.
fn cpu_note(bucket: usize, confide: &RunResult, relay: &RunResult) -> String {
    let per = |cpu: f64, r: &RunResult| cpu * 1e6 / r.delivered.max(1) as f64;
    format!(
        "{} B CPU per delivered message: Confide server {:.1} µs, its load generator {:.1} µs; \
         relay {:.1} µs, its load generator {:.1} µs (2 cores shared by both processes)",
        bucket + 16,
        per(confide.server_cpu, confide),
        per(confide.harness_cpu, confide),
        per(relay.server_cpu, relay),
        per(relay.harness_cpu, relay),
    )
}

/// One open-loop run of `duration` at `rate` posts per second on a fresh server of `kind`.
#[allow(clippy::too_many_arguments)]
pub async fn open_loop(
    opts: &Options,
    kind: Kind,
    bucket: usize,
    rate: f64,
    duration: Duration,
    silent: Vec<(usize, usize)>,
    stall: Option<(usize, usize, Duration)>,
    options: impl Fn(usize, usize) -> DialOptions,
) -> anyhow::Result<RunResult> {
    let s = &opts.sizes;
    let server = RunningServer::start(kind, &opts.mode, s.groups * s.members).await?;
    let groups = setup_groups(&server, s.groups, s.members, options).await?;
    let senders = (s.groups * s.members).saturating_sub(silent.len()).max(1);
    let total = (rate * duration.as_secs_f64()).ceil() as usize;
    let spec = RunSpec {
        pace: Pace::Rate(rate),
        posts_per_sender: total.div_ceil(senders).max(1),
        bucket,
        warmup: s.warmup,
        silent,
        stall,
        expect_deliveries: true,
    };
    let result = load::run(groups, &spec, &server).await?;
    server.stop().await?;
    Ok(result)
}

/// p50, p99 and p99.9 from send to delivery at half of Confide's maximum rate, Confide against
/// the relay at the same rate.
pub async fn latency(opts: &Options, report: &mut Report, rates: &MaxRates) -> anyhow::Result<()> {
    for &bucket in &opts.sizes.buckets {
        let rate = half_rate(opts, rates, bucket).await?;
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
            bucket,
            rate,
            duration,
            vec![],
            None,
            everyone,
        )
        .await?;
        let confide = open_loop(
            opts,
            Kind::Confide,
            bucket,
            rate,
            duration,
            vec![],
            None,
            everyone,
        )
        .await?;
        for (label, q) in [("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999)] {
            let target = (label == "p99").then_some(Target::ValueBelow(TARGET_P99_MS));
            report.figure(
                LATENCY,
                format!("{} B at {rate:.0} posts/s (half max): {label}", bucket + 16),
                confide.latency_ms(q),
                "ms",
                "bare relay",
                relay.latency_ms(q),
                target,
            );
        }
        report.note(
            LATENCY,
            format!(
                "{} B: {} latencies recorded, max {:.1} ms (relay max {:.1} ms); {}",
                bucket + 16,
                confide.latency.len(),
                confide.latency.max() as f64 / 1e6,
                relay.latency.max() as f64 / 1e6,
                confide
                    .flushes
                    .as_ref()
                    .map_or_else(|| "no flush statistics".to_string(), |f| f.to_string())
            ),
        );
    }
    Ok(())
}
