//! Prometheus-format metrics and the health endpoint, served on their own address so that they
//! are never exposed on the public websocket port by accident.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// Upper bounds (seconds) of the flush-latency histogram buckets.
const FLUSH_BUCKETS: [f64; 10] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 2.0];

/// Counters and gauges, updated lock-free on hot paths.
#[derive(Default)]
pub struct Metrics {
    /// Connections currently open.
    pub connections_open: AtomicU64,
    /// Connections accepted since start.
    pub connections_total: AtomicU64,
    /// Frames received.
    pub frames_in: AtomicU64,
    /// Frames sent.
    pub frames_out: AtomicU64,
    /// Bytes received in websocket messages.
    pub bytes_in: AtomicU64,
    /// Bytes sent in websocket messages.
    pub bytes_out: AtomicU64,
    /// Messages stored durably.
    pub messages_stored: AtomicU64,
    /// Group-log ops stored durably.
    pub ops_stored: AtomicU64,
    /// Inbox items stored durably.
    pub inbox_stored: AtomicU64,
    /// Connections closed for falling too far behind.
    pub slow_consumers: AtomicU64,
    /// HTTP requests answered on the websocket port (the web app's files, and their 404s).
    pub web_requests: AtomicU64,
    errors: Mutex<BTreeMap<&'static str, u64>>,
    flush_buckets: [AtomicU64; FLUSH_BUCKETS.len()],
    flush_count: AtomicU64,
    flush_failures: AtomicU64,
    flush_micros_total: AtomicU64,
    flush_requests_total: AtomicU64,
}

impl Metrics {
    /// Counts an error frame sent, by its stable code.
    pub fn record_error(&self, code: &'static str) {
        if let Ok(mut errors) = self.errors.lock() {
            *errors.entry(code).or_default() += 1;
        }
    }

    /// Records one durable flush.
    pub fn record_flush(&self, elapsed: Duration, requests: usize, ok: bool) {
        let secs = elapsed.as_secs_f64();
        for (bucket, bound) in self.flush_buckets.iter().zip(FLUSH_BUCKETS) {
            if secs <= bound {
                bucket.fetch_add(1, Relaxed);
            }
        }
        self.flush_count.fetch_add(1, Relaxed);
        self.flush_micros_total
            .fetch_add(elapsed.as_micros() as u64, Relaxed);
        self.flush_requests_total
            .fetch_add(requests as u64, Relaxed);
        if !ok {
            self.flush_failures.fetch_add(1, Relaxed);
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let counters = [
            (
                "confide_connections_open",
                "gauge",
                "Connections currently open.",
                &self.connections_open,
            ),
            (
                "confide_connections_total",
                "counter",
                "Connections accepted.",
                &self.connections_total,
            ),
            (
                "confide_frames_in_total",
                "counter",
                "Frames received.",
                &self.frames_in,
            ),
            (
                "confide_frames_out_total",
                "counter",
                "Frames sent.",
                &self.frames_out,
            ),
            (
                "confide_bytes_in_total",
                "counter",
                "Websocket payload bytes received.",
                &self.bytes_in,
            ),
            (
                "confide_bytes_out_total",
                "counter",
                "Websocket payload bytes sent.",
                &self.bytes_out,
            ),
            (
                "confide_messages_stored_total",
                "counter",
                "Messages stored durably.",
                &self.messages_stored,
            ),
            (
                "confide_ops_stored_total",
                "counter",
                "Group-log ops stored durably.",
                &self.ops_stored,
            ),
            (
                "confide_inbox_stored_total",
                "counter",
                "Inbox items stored durably.",
                &self.inbox_stored,
            ),
            (
                "confide_slow_consumers_total",
                "counter",
                "Connections closed for falling behind.",
                &self.slow_consumers,
            ),
            (
                "confide_web_requests_total",
                "counter",
                "HTTP requests for the web app answered (any status).",
                &self.web_requests,
            ),
            (
                "confide_flush_failures_total",
                "counter",
                "Durable flushes that failed.",
                &self.flush_failures,
            ),
            (
                "confide_flush_requests_total",
                "counter",
                "Write requests committed by flushes.",
                &self.flush_requests_total,
            ),
        ];
        for (name, kind, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                value.load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP confide_errors_total Error frames sent, by code.\n# TYPE confide_errors_total counter"
        );
        if let Ok(errors) = self.errors.lock() {
            for (code, n) in errors.iter() {
                let _ = writeln!(out, "confide_errors_total{{code=\"{code}\"}} {n}");
            }
        }
        let _ = writeln!(
            out,
            "# HELP confide_flush_seconds Durable flush latency.\n# TYPE confide_flush_seconds histogram"
        );
        for (bucket, bound) in self.flush_buckets.iter().zip(FLUSH_BUCKETS) {
            let _ = writeln!(
                out,
                "confide_flush_seconds_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Relaxed)
            );
        }
        let count = self.flush_count.load(Relaxed);
        let _ = writeln!(out, "confide_flush_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "confide_flush_seconds_sum {}",
            self.flush_micros_total.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "confide_flush_seconds_count {count}");
        out
    }
}

/// Largest request head the metrics endpoint reads.
const MAX_HTTP_REQUEST: usize = 4096;

/// What `/healthz` reports: whether the node can serve (else `503`), and one line per part it
/// depends on (storage, NATS), plus any extra `/metrics` lines (the cluster's counters).
pub trait Health: Send + Sync + 'static {
    /// `(healthy, lines)`.
    fn check(&self) -> (bool, String);
    /// Extra Prometheus lines for `/metrics`.
    fn metrics(&self) -> String;
}

/// Serves `GET /healthz` and `GET /metrics` until the listener fails or the task is dropped.
/// A deliberately tiny HTTP/1.1 responder: one request per connection, no keep-alive.
pub async fn serve(
    listener: TcpListener,
    metrics: std::sync::Arc<Metrics>,
    health: std::sync::Arc<dyn Health>,
) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            // Out of descriptors or similar: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let (metrics, health) = (metrics.clone(), health.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; MAX_HTTP_REQUEST];
            let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await;
            let Ok(Ok(n)) = read else { return };
            let head = String::from_utf8_lossy(&buf[..n]);
            let path = head.split_whitespace().nth(1).unwrap_or("");
            let (status, content_type, body) = match path {
                "/healthz" => {
                    // Storage is asked on the blocking pool: a down database must not hold a
                    // runtime thread for its timeout.
                    let health = health.clone();
                    let (ok, lines) = tokio::task::spawn_blocking(move || health.check())
                        .await
                        .unwrap_or((false, "health check failed\n".into()));
                    match ok {
                        true => ("200 OK", "text/plain", format!("ok\n{lines}")),
                        false => (
                            "503 Service Unavailable",
                            "text/plain",
                            format!("unhealthy\n{lines}"),
                        ),
                    }
                }
                "/metrics" => (
                    "200 OK",
                    "text/plain; version=0.0.4",
                    metrics.render() + &health.metrics(),
                ),
                _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}
