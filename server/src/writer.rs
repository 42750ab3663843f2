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

/// Set (once) when storage reports that it cannot write again until the server restarts
/// ([`StorageError::NeedsRestart`]): the reason, for the server to shut down with.
pub type Fatal = watch::Receiver<Option<String>>;

impl Writer {
    /// Starts the writer thread.
    pub fn start(
        storage: Arc<dyn Storage>,
        queue: usize,
        max_batch: usize,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<(Writer, std::thread::JoinHandle<()>, Fatal)> {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let (fatal_tx, fatal_rx) = watch::channel(None);
        let handle = std::thread::Builder::new()
            .name("confide-writer".into())
            .spawn(move || writer_loop(storage, rx, max_batch.max(1), metrics, fatal_tx))?;
        Ok((Writer { tx }, handle, fatal_rx))
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
        let result = storage.commit(&writes).map_err(Arc::new);
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
