//! Memory per idle connection: the growth of the server's resident memory when it holds many
//! idle, authenticated TLS connections, per connection, against the bare relay holding as
//! many idle plain websockets. The connections come from several 127.0.0.x source addresses.
//!
//! The server runs as a child process in the full benchmarks, so its resident memory is its
//! own. Kernel socket buffers are not part of it.

use futures_util::StreamExt as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::Options;
use crate::net::{self, Device, DialOptions, Ws, source_address};
use crate::report::{Report, Target};
use crate::server::{Kind, RunningServer};

const SCENARIO: &str = "memory";
/// Issue 20's target (16 KiB in issue 7): at most this many KiB per idle authenticated TLS connection.
pub const TARGET_KIB: f64 = 12.0;
/// Connections being opened at once.
const CONCURRENCY: usize = 64;
/// Time for the server to settle before its memory is read.
const SETTLE: Duration = Duration::from_secs(2);
/// Members per relay group path (the relay keeps one list per group).
const RELAY_GROUP: usize = 10;

/// Opens `n` connections, `CONCURRENCY` at a time, with `open(i)`. With `hold`, keeps each one
/// drained (so websocket pings are answered) until the returned set is dropped; without, closes
/// each as soon as it is open.
async fn open_many<F, Fut>(n: usize, hold: bool, open: F) -> anyhow::Result<JoinSet<()>>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Ws>> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let mut opening = JoinSet::new();
    let mut held = JoinSet::new();
    for i in 0..n {
        let permit = permits.clone().acquire_owned().await?;
        let fut = open(i);
        opening.spawn(async move {
            let ws = fut.await;
            let ws = match ws {
                Ok(ws) if !hold => {
                    let mut ws = ws;
                    let _ = ws.close(None).await;
                    None
                }
                Ok(ws) => Some(ws),
                Err(e) => {
                    drop(permit);
                    return Err(e);
                }
            };
            drop(permit);
            Ok(ws)
        });
        // Hold what has opened so far; fail early rather than after thousands of attempts.
        while let Some(done) = opening.try_join_next() {
            if let Some(ws) = done?? {
                held.spawn(drain(ws));
            }
        }
    }
    while let Some(done) = opening.join_next().await {
        if let Some(ws) = done?? {
            held.spawn(drain(ws));
        }
    }
    Ok(held)
}

async fn drain(mut ws: Ws) {
    while let Some(Ok(_)) = ws.next().await {}
}

async fn settled_rss(server: &RunningServer, settle: Duration) -> anyhow::Result<u64> {
    tokio::time::sleep(settle).await;
    server.rss_kib()
}

/// Idle connections on the relay, then on Confide.
pub async fn run(opts: &Options, report: &mut Report) -> anyhow::Result<()> {
    let n = opts.sizes.connections;
    let addresses = opts.sizes.addresses;
    let settle = if n < 1_000 {
        Duration::from_millis(100)
    } else {
        SETTLE
    };
    eprintln!("memory: {n} idle connections from {addresses} source addresses");
    let dial = move |i: usize| DialOptions {
        source: Some(source_address(i, addresses)),
        recv_buffer: None,
    };

    let relay = RunningServer::start(Kind::Relay, &opts.mode, n).await?;
    let target = relay.target()?;
    let relay_before = settled_rss(&relay, settle).await?;
    let held = open_many(n, true, |i| {
        let target = target.clone();
        async move { net::dial(&target, &format!("/g/{}", i / RELAY_GROUP), dial(i)).await }
    })
    .await?;
    let relay_after = settled_rss(&relay, settle).await?;
    drop(held);
    relay.stop().await?;

    let confide = RunningServer::start(Kind::Confide, &opts.mode, n).await?;
    let target = confide.target()?;
    // Register every device first, a few at a time, so that what is measured next is the
    // connections, not the device records.
    let devices: Arc<Vec<Device>> = Arc::new(
        (0..n)
            .map(|i| Device::generate(&format!("Idle {i}")))
            .collect(),
    );
    let registered = open_many(n, false, |i| {
        let (target, devices) = (target.clone(), devices.clone());
        async move { net::connect_new(&target, &devices[i], dial(i)).await }
    })
    .await?;
    drop(registered);
    let confide_before = settled_rss(&confide, settle).await?;
    let held = open_many(n, true, |i| {
        let (target, devices) = (target.clone(), devices.clone());
        async move { net::connect_existing(&target, &devices[i], dial(i)).await }
    })
    .await?;
    let confide_after = settled_rss(&confide, settle).await?;
    let open = confide
        .metrics()
        .await?
        .get("confide_connections_open")
        .copied()
        .unwrap_or(f64::NAN);
    drop(held);
    let in_process = confide.in_process();
    confide.stop().await?;

    let per = |before: u64, after: u64| after.saturating_sub(before) as f64 / n.max(1) as f64;
    report.figure(
        SCENARIO,
        format!("{n} idle authenticated TLS connections: resident memory per connection"),
        per(confide_before, confide_after),
        "KiB",
        "bare relay, plain ws",
        per(relay_before, relay_after),
        Some(Target::ValueAtMost(TARGET_KIB)),
    );
    report.note(
        SCENARIO,
        format!(
            "Confide RSS {confide_before} KiB → {confide_after} KiB with {open} connections \
             open; relay RSS {relay_before} KiB → {relay_after} KiB{}",
            if in_process {
                " (in-process: includes the load generator's side)"
            } else {
                ""
            }
        ),
    );
    Ok(())
}
