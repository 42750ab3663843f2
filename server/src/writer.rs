//! The single writer: one thread drains a queue of write requests, applies them as one batch,
//! makes the batch durable with one flush, and only then runs each request's completion in
//! queue order (group commit).
//!
//! Why one writer: many tasks each awaiting their own flush stall for minutes on sled, while one
//! writer flushing batches acknowledges tens of thousands of writes per second (DESIGN.md).
//! Why completions run on the writer: a group's posts are queued in sequence-number order (the
//! caller enqueues under the group's lock), so running completions in queue order fans messages
//! out in sequence order too.

use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot, watch};

use crate::metrics::Metrics;
use crate::storage::{Storage, StorageError, Write};

/// Default capacity of the write queue (requests, not bytes).
pub const DEFAULT_WRITE_QUEUE: usize = 16_384;
/// Default largest number of requests committed in one batch.
pub const DEFAULT_MAX_BATCH: usize = 4_096;

/// The outcome a completion receives.
pub type CommitResult = Result<(), Arc<StorageError>>;

/// Runs after the batch holding the request is durable (or failed).
pub type Completion = Box<dyn FnOnce(CommitResult) + Send>;

struct Request {
    writes: Vec<Write>,
    done: Completion,
}

/// Handle for submitting writes. Cloning is cheap; the writer thread stops once every handle is
/// dropped and the queue is drained, so shutdown finishes every accepted write.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Request>,
}

/// The writer queue is closed: the server is shutting down.
#[derive(Debug, thiserror::Error)]
#[error("the writer has stopped (server shutting down)")]
pub struct WriterClosed;

/// How often [`WriterStatus::failed`] looks whether a durable write is stuck.
const STUCK_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Watches the writer for the failures that only a restart repairs: storage reporting it cannot
/// write again ([`StorageError::NeedsRestart`]), or one durable write taking so long that the
/// disk has stopped answering (sled can wait forever on a flush after a write error).
pub struct WriterStatus {
    fatal: watch::Receiver<Option<String>>,
    busy_since: Arc<std::sync::Mutex<Option<Instant>>>,
}

impl WriterStatus {
    /// Completes, with the reason, once the writer cannot go on: storage said so, or one
    /// durable write has been running for longer than `stuck_after`.
    pub async fn failed(&mut self, stuck_after: std::time::Duration) -> String {
        let mut tick = tokio::time::interval(
            STUCK_CHECK_INTERVAL.min(stuck_after.max(std::time::Duration::from_millis(1))),
        );
        loop {
            tokio::select! {
                changed = self.fatal.changed() => {
                    if changed.is_err() {
                        // The writer has stopped (shutdown); nothing more to watch.
                        return std::future::pending().await;
                    }
                    if let Some(reason) = self.fatal.borrow_and_update().clone() {
                        return reason;
                    }
                }
                _ = tick.tick() => {
                    let since = self.busy_since.lock().map(|busy| *busy).unwrap_or(None);
                    if let Some(since) = since
                        && since.elapsed() > stuck_after
                    {
                        return format!(
                            "a durable write has not finished in {} s: the disk is not answering",
                            stuck_after.as_secs_f64()
                        );
                    }
                }
            }
        }
    }
}

impl Writer {
    /// Starts the writer thread.
    pub fn start(
        storage: Arc<dyn Storage>,
        queue: usize,
        max_batch: usize,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<(Writer, std::thread::JoinHandle<()>, WriterStatus)> {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let (fatal_tx, fatal_rx) = watch::channel(None);
        let busy_since = Arc::new(std::sync::Mutex::new(None));
        let status = WriterStatus {
            fatal: fatal_rx,
            busy_since: busy_since.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("confide-writer".into())
            .spawn(move || {
                writer_loop(storage, rx, max_batch.max(1), metrics, fatal_tx, busy_since)
            })?;
        Ok((Writer { tx }, handle, status))
    }

    /// Queues `writes`; `done` runs on the writer thread once they are durable or have failed.
    /// Waits if the queue is full (back-pressure).
    pub async fn submit(&self, writes: Vec<Write>, done: Completion) -> Result<(), WriterClosed> {
        self.tx
            .send(Request { writes, done })
            .await
            .map_err(|_| WriterClosed)
    }

    /// Queues `writes` and waits until they are durable.
    pub async fn commit(&self, writes: Vec<Write>) -> Result<CommitResult, WriterClosed> {
        let (tx, rx) = oneshot::channel();
        self.submit(
            writes,
            Box::new(move |result| {
                let _ = tx.send(result);
            }),
        )
        .await?;
        rx.await.map_err(|_| WriterClosed)
    }
}

fn writer_loop(
    storage: Arc<dyn Storage>,
    mut rx: mpsc::Receiver<Request>,
    max_batch: usize,
    metrics: Arc<Metrics>,
    fatal: watch::Sender<Option<String>>,
    busy_since: Arc<std::sync::Mutex<Option<Instant>>>,
) {
    let mut batch: Vec<Request> = Vec::new();
    let mut writes: Vec<Write> = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        writes.clear();
        for request in &mut batch {
            writes.append(&mut request.writes);
        }
        let started = Instant::now();
        if let Ok(mut busy) = busy_since.lock() {
            *busy = Some(started);
        }
        let result = storage.commit(&writes).map_err(Arc::new);
        if let Ok(mut busy) = busy_since.lock() {
            *busy = None;
        }
        metrics.record_flush(started.elapsed(), batch.len(), result.is_ok());
        match &result {
            Ok(()) => {}
            Err(e) => {
                tracing::error!(error = %e, requests = batch.len(), "durable write failed; nothing in the batch is acknowledged");
                if let StorageError::NeedsRestart(reason) = e.as_ref() {
                    fatal.send_if_modified(|fatal| {
                        let first = fatal.is_none();
                        if first {
                            *fatal = Some(reason.clone());
                        }
                        first
                    });
                }
            }
        }
        for request in batch.drain(..) {
            (request.done)(result.clone());
        }
    }
}
