//! Slow consumer: one member stops reading in the middle of an open-loop run. The server must
//! keep its memory bounded (each connection's queue is bounded in frames and bytes; overflow
//! disconnects that connection) and the other members must not notice: their p99 is compared
//! with the same run in which nobody stalls.

use super::fanout::open_loop;
use super::{MaxRates, Options, half_rate};
use crate::net::DialOptions;
use crate::report::{Report, Target};
use crate::server::{Backend, Kind};

const SCENARIO: &str = "slow consumer";
/// The target: the others' p99 grows by less than this factor.
pub const TARGET_P99_GROWTH: f64 = 2.0;
/// The stalled member's socket receive buffer: small, like a phone on a bad network, so that
/// the server's side backs up within the run instead of after megabytes of kernel buffering.
const STALLED_RECV_BUFFER: u32 = 16 * 1024;

/// A run where nobody stalls, then the same run where the last member of group 0 stops
/// reading after the warm-up. That member sends nothing in either run. The largest posts and
/// runs twice as long as the latency runs, so that the stalled member's socket buffers fill and
/// its queue on the server reaches its bound within the run.
pub async fn run(opts: &Options, report: &mut Report, rates: &MaxRates) -> anyhow::Result<()> {
    let s = &opts.sizes;
    let bucket = s.buckets.iter().copied().max().unwrap_or(256);
    let duration = s.latency * 2;
    let rate = half_rate(opts, rates, Backend::Sled, bucket).await?;
    let lurker = (0, s.members.saturating_sub(1));
    let options = move |g: usize, m: usize| {
        if (g, m) == lurker {
            DialOptions {
                source: None,
                recv_buffer: Some(STALLED_RECV_BUFFER),
            }
        } else {
            DialOptions::default()
        }
    };
    eprintln!(
        "slow consumer: {} B at {rate:.0} posts/s for {duration:?}; member {} of group 0 stops \
         reading at {:?}",
        bucket + 16,
        lurker.1,
        s.warmup
    );
    let silent = vec![lurker];
    let calm = open_loop(
        opts,
        Kind::Confide,
        Backend::Sled,
        bucket,
        rate,
        duration,
        silent.clone(),
        None,
        options,
    )
    .await?;
    let stall = Some((lurker.0, lurker.1, s.warmup));
    let stalled = open_loop(
        opts,
        Kind::Confide,
        Backend::Sled,
        bucket,
        rate,
        duration,
        silent,
        stall,
        options,
    )
    .await?;
    report.figure(
        SCENARIO,
        format!("others' p99 at {rate:.0} posts/s with one member not reading"),
        stalled.latency_ms(0.99),
        "ms",
        "same run, everyone reading",
        calm.latency_ms(0.99),
        Some(Target::RatioBelow(TARGET_P99_GROWTH)),
    );
    let growth = |rss: &[u64]| {
        let first = rss.first().copied().unwrap_or(0);
        let max = rss.iter().copied().max().unwrap_or(0);
        max.saturating_sub(first) as f64
    };
    // The store's cache grows with every message in both runs; what the stalled member may
    // add on top is its bounded queue.
    let bound_kib = (confide_server::config::DEFAULT_OUTBOUND_QUEUE_BYTES / 1024) as f64;
    report.figure(
        SCENARIO,
        "server resident memory growth during the run",
        growth(&stalled.rss_kib),
        "KiB",
        "same run, everyone reading",
        growth(&calm.rss_kib),
        Some(Target::ExcessAtMost(bound_kib)),
    );
    report.note(
        SCENARIO,
        format!(
            "the stalled member: {}",
            stalled
                .stalled_outcome
                .clone()
                .unwrap_or_else(|| "no outcome recorded".into())
        ),
    );
    Ok(())
}
