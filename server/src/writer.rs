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
/// Default largest size of one batch (the writes' approximate bytes, see [`Write::size`]): a
/// request that would take a batch past it waits for the next batch, and a larger request goes
/// alone. Why: the free-space check asks for the margin plus twice a batch's size, so without a
/// cap one peer's many large writes could make a batch too large for the disk and have every
/// other request in it refused; and a huge batch holds every small write behind it.
pub const DEFAULT_MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;

/// Why a request's writes were not made durable.
#[derive(Clone, Debug, thiserror::Error)]
pub enum CommitError {
    /// The storage refused or failed the batch holding them.
    #[error(transparent)]
    Storage(Arc<StorageError>),
    /// The writer has stopped (shutdown, or its thread died) before it had an outcome for them.
    #[error("the writer has stopped (server shutting down)")]
    Stopped,
}

/// The outcome a completion receives.
pub type CommitResult = Result<(), CommitError>;

/// Runs after the batch holding the request is durable (or failed).
pub type Completion = Box<dyn FnOnce(CommitResult) + Send>;

/// One queued request. Its completion runs exactly once: with the batch's outcome, or — if the
/// request is dropped unrun (the queue closed, or the writer thread died and unwound) — with
/// [`CommitError::Stopped`], so that whoever waits for it is always answered.
struct Request {
    writes: Vec<Write>,
    /// The writes' approximate size, for the batch's byte cap.
    bytes: usize,
    /// `None` once run.
    done: Option<Completion>,
}

impl Request {
    /// Runs the completion with `result`.
    fn finish(mut self, result: CommitResult) {
        if let Some(done) = self.done.take() {
            done(result);
        }
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            done(Err(CommitError::Stopped));
        }
    }
}

/// Handle for submitting writes. Cloning is cheap; the writer thread stops once every handle is
/// dropped and the queue is drained, so shutdown finishes every accepted write.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Request>,
}

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
                        // The writer has stopped without a fatal reason, so all its handles were
                        // dropped (shutdown); nothing more to watch. (A writer that dies sends
                        // its reason first.)
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
    /// Starts the writer thread; each batch holds at most `max_batch` requests and, unless a
    /// single request is larger, at most `max_batch_bytes` bytes of writes.
    pub fn start(
        storage: Arc<dyn Storage>,
        queue: usize,
        max_batch: usize,
        max_batch_bytes: usize,
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
                let limits = BatchLimits {
                    requests: max_batch.max(1),
                    bytes: max_batch_bytes.max(1),
                };
                let looped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    writer_loop(storage, rx, limits, metrics, &fatal_tx, busy_since)
                }));
                // A panic (in the storage or in a completion) has stopped the writer: every
                // later write would be refused with `shutting_down` while the server went on
                // serving. Say so, so that the server shuts down for a restart. (The requests
                // of the batch, and those still queued, are dropped by the unwinding: each
                // completion then runs with `CommitError::Stopped`.)
                if let Err(panic) = looped {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "no message".into());
                    let reason = format!("the storage writer stopped unexpectedly (panic: {what})");
                    tracing::error!(%reason, "writer thread died");
                    fatal_tx.send_replace(Some(reason));
                }
            })?;
        Ok((Writer { tx }, handle, status))
    }

    /// Queues `writes`; `done` runs exactly once: on the writer thread once they are durable or
    /// have failed, or with [`CommitError::Stopped`] if the writer has stopped or stops first
    /// (then on whichever thread finds out, possibly this one, before this returns). Waits if
    /// the queue is full (back-pressure).
    pub async fn submit(&self, writes: Vec<Write>, done: Completion) {
        let bytes = writes
            .iter()
            .map(Write::size)
            .fold(0, usize::saturating_add);
        // A closed queue hands the request back, and dropping it runs `done`.
        let _ = self
            .tx
            .send(Request {
                writes,
                bytes,
                done: Some(done),
            })
            .await;
    }

    /// Queues `writes` and waits until they are durable.
    pub async fn commit(&self, writes: Vec<Write>) -> CommitResult {
        let (tx, rx) = oneshot::channel();
        self.submit(
            writes,
            Box::new(move |result| {
                let _ = tx.send(result);
            }),
        )
        .await;
        // The completion always runs, so the sender is never dropped unsent; if it were, the
        // writer is gone all the same.
        rx.await.unwrap_or(Err(CommitError::Stopped))
    }
}

/// How large one batch may grow.
#[derive(Clone, Copy)]
struct BatchLimits {
    requests: usize,
    bytes: usize,
}

/// Commits one batch's writes (or a part of them) and records how it went.
struct Committer<'a> {
    storage: &'a dyn Storage,
    metrics: &'a Metrics,
    fatal: &'a watch::Sender<Option<String>>,
    busy_since: &'a std::sync::Mutex<Option<Instant>>,
}

impl Committer<'_> {
    fn commit(&self, writes: &[Write], requests: usize) -> Result<(), Arc<StorageError>> {
        let started = Instant::now();
        if let Ok(mut busy) = self.busy_since.lock() {
            *busy = Some(started);
        }
        let result = self.storage.commit(writes).map_err(Arc::new);
        if let Ok(mut busy) = self.busy_since.lock() {
            *busy = None;
        }
        self.metrics
            .record_flush(started.elapsed(), requests, result.is_ok());
        if let Err(e) = &result {
            crate::throttle::failed_batch(e, requests);
            if let StorageError::NeedsRestart(reason) = e.as_ref() {
                self.fatal.send_if_modified(|fatal| {
                    let first = fatal.is_none();
                    if first {
                        *fatal = Some(reason.clone());
                    }
                    first
                });
            }
        }
        result
    }
}

fn writer_loop(
    storage: Arc<dyn Storage>,
    mut rx: mpsc::Receiver<Request>,
    limits: BatchLimits,
    metrics: Arc<Metrics>,
    fatal: &watch::Sender<Option<String>>,
    busy_since: Arc<std::sync::Mutex<Option<Instant>>>,
) {
    let committer = Committer {
        storage: storage.as_ref(),
        metrics: &metrics,
        fatal,
        busy_since: &busy_since,
    };
    let mut batch: Vec<Request> = Vec::new();
    let mut writes: Vec<Write> = Vec::new();
    // Where each request's writes are in `writes`.
    let mut ranges: Vec<std::ops::Range<usize>> = Vec::new();
    // A request taken from the queue that did not fit the last batch: it starts the next one.
    let mut carried: Option<Request> = None;
    loop {
        let first = match carried.take() {
            Some(request) => request,
            None => match rx.blocking_recv() {
                Some(request) => request,
                None => break,
            },
        };
        let mut bytes = first.bytes;
        batch.push(first);
        while batch.len() < limits.requests {
            match rx.try_recv() {
                Ok(request) => {
                    if bytes.saturating_add(request.bytes) > limits.bytes {
                        carried = Some(request);
                        break;
                    }
                    bytes = bytes.saturating_add(request.bytes);
                    batch.push(request);
                }
                Err(_) => break,
            }
        }
        writes.clear();
        ranges.clear();
        for request in &mut batch {
            let start = writes.len();
            writes.append(&mut request.writes);
            ranges.push(start..writes.len());
        }
        let result = committer.commit(&writes, batch.len());
        let split = batch.len() > 1
            && matches!(&result, Err(e) if matches!(
                e.as_ref(),
                StorageError::Full { .. } | StorageError::Conflict(_)
            ));
        if split {
            // Refused before anything was written: for want of space for the whole batch, or
            // because another node sharing the database stored a seq or an op some request
            // expected to store. What can be written on its own goes ahead, so that one peer's
            // large writes, or one group's conflict, do not fail everyone else's (and deletions,
            // which need less room, still free space). In queue order, like every completion.
            for (request, range) in batch.drain(..).zip(ranges.drain(..)) {
                let result = committer.commit(&writes[range], 1);
                request.finish(result.map_err(CommitError::Storage));
            }
        } else {
            let result = result.map_err(CommitError::Storage);
            for request in batch.drain(..) {
                request.finish(result.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{DeviceRecord, StorageError};
    use confide_protocol::frames::{InboxItem, StoredMessage};
    use confide_protocol::group_log::SignedOp;
    use confide_protocol::{DeviceId, GroupId, MessageId, Seq, UserId};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

    /// A storage that refuses, as a full disk does, every batch of more than `room` bytes,
    /// records the size of every batch it is given, and can hold the writer in a commit.
    struct Scales {
        room: usize,
        batches: Mutex<Vec<(usize, usize)>>,
        hold: AtomicBool,
        holding: AtomicBool,
        panic_on_commit: AtomicBool,
        /// Batches holding an inbox write for this device fail as if another node had stored
        /// first, and nothing in them is written.
        conflict_for: Option<DeviceId>,
    }

    impl Scales {
        fn new(room: usize) -> Arc<Self> {
            Arc::new(Scales {
                room,
                batches: Mutex::new(Vec::new()),
                hold: AtomicBool::new(false),
                holding: AtomicBool::new(false),
                panic_on_commit: AtomicBool::new(false),
                conflict_for: None,
            })
        }
    }

    impl Storage for Scales {
        fn reads_only_durable(&self) -> bool {
            false
        }
        fn commit(&self, batch: &[Write]) -> Result<(), StorageError> {
            if self.panic_on_commit.load(SeqCst) {
                panic!("storage bug");
            }
            while self.hold.load(SeqCst) {
                self.holding.store(true, SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            let conflicts = batch.iter().any(
                |w| matches!(w, Write::Inbox { device, .. } if Some(*device) == self.conflict_for),
            );
            if conflicts {
                return Err(StorageError::Conflict("seq taken".into()));
            }
            let bytes: usize = batch.iter().map(Write::size).sum();
            self.batches.lock().unwrap().push((batch.len(), bytes));
            if bytes > self.room {
                return Err(StorageError::Full {
                    available: self.room as u64,
                    needed: bytes as u64,
                });
            }
            Ok(())
        }
        fn device(&self, _: &DeviceId) -> Result<Option<DeviceRecord>, StorageError> {
            Ok(None)
        }
        fn devices_of_user(&self, _: &UserId) -> Result<Vec<DeviceRecord>, StorageError> {
            Ok(Vec::new())
        }
        fn device_list(
            &self,
            _: &confide_protocol::UserId,
        ) -> Result<Option<confide_protocol::device_list::SignedDeviceList>, StorageError> {
            Ok(None)
        }
        fn device_list_chain(
            &self,
            _: &confide_protocol::UserId,
            _: u64,
            _: usize,
        ) -> Result<Vec<confide_protocol::device_list::SignedDeviceList>, StorageError> {
            Ok(Vec::new())
        }
        fn identity_user(
            &self,
            _: &confide_protocol::device_list::IdentityKey,
        ) -> Result<Option<confide_protocol::UserId>, StorageError> {
            Ok(None)
        }
        fn unlinked(
            &self,
            _: &confide_protocol::DeviceId,
        ) -> Result<Option<confide_protocol::UserId>, StorageError> {
            Ok(None)
        }
        fn message_seq(&self, _: &GroupId, _: &MessageId) -> Result<Option<Seq>, StorageError> {
            Ok(None)
        }
        fn groups(&self) -> Result<Vec<GroupId>, StorageError> {
            Ok(Vec::new())
        }
        fn ops(&self, _: &GroupId, _: u64, _: usize) -> Result<Vec<SignedOp>, StorageError> {
            Ok(Vec::new())
        }
        fn messages(
            &self,
            _: &GroupId,
            _: Seq,
            _: usize,
        ) -> Result<Vec<StoredMessage>, StorageError> {
            Ok(Vec::new())
        }
        fn last_seq(&self, _: &GroupId) -> Result<Seq, StorageError> {
            Ok(Seq(0))
        }
        fn inbox(&self, _: &DeviceId, _: u64, _: usize) -> Result<Vec<InboxItem>, StorageError> {
            Ok(Vec::new())
        }
        fn inbox_len(&self, _: &DeviceId) -> Result<usize, StorageError> {
            Ok(0)
        }
        fn inbox_len_from(&self, _: &DeviceId, _: &DeviceId) -> Result<usize, StorageError> {
            Ok(0)
        }
        fn next_inbox_id(&self) -> Result<u64, StorageError> {
            Ok(1)
        }
    }

    /// An inbox item carrying `bytes` bytes of ciphertext.
    fn write_of(bytes: usize) -> Write {
        write_for(DeviceId([9; 32]), bytes)
    }

    /// An inbox item for `device` carrying `bytes` bytes of ciphertext.
    fn write_for(device: DeviceId, bytes: usize) -> Write {
        Write::Inbox {
            device,
            item: InboxItem {
                inbox_id: 1,
                received_at: confide_protocol::Timestamp(1),
                payload: confide_protocol::seal::SealedPayload {
                    kind: confide_protocol::seal::SealKind::Direct,
                    group: GroupId([1; 16]),
                    epoch: confide_protocol::Epoch(1),
                    epoch_hash: confide_protocol::OpHash([2; 32]),
                    sender: DeviceId([5; 32]),
                    recipient: DeviceId([9; 32]),
                    enc: confide_protocol::seal::Encapsulation::from_bytes(&[3; 32]).unwrap(),
                    ciphertext: vec![4; bytes],
                },
            },
        }
    }

    /// Holds the writer in a commit, queues `requests` behind it (so that they meet in one
    /// batch), lets it go, and returns each request's outcome.
    async fn queue_behind_a_held_commit(
        storage: Arc<Scales>,
        max_batch_bytes: usize,
        requests: Vec<Vec<Write>>,
    ) -> Vec<CommitResult> {
        let (writer, _thread, _status) = Writer::start(
            storage.clone(),
            64,
            64,
            max_batch_bytes,
            Arc::new(Metrics::default()),
        )
        .unwrap();
        storage.hold.store(true, SeqCst);
        let held = writer.clone();
        let first = tokio::spawn(async move { held.commit(Vec::new()).await });
        while !storage.holding.load(SeqCst) {
            tokio::task::yield_now().await;
        }
        let mut outcomes = Vec::new();
        for writes in requests {
            let (tx, rx) = oneshot::channel();
            writer
                .submit(
                    writes,
                    Box::new(move |r| {
                        let _ = tx.send(r);
                    }),
                )
                .await;
            outcomes.push(rx);
        }
        storage.hold.store(false, SeqCst);
        first.await.unwrap().unwrap();
        let mut results = Vec::new();
        for rx in outcomes {
            results.push(rx.await.unwrap());
        }
        results
    }

    #[tokio::test]
    async fn one_peers_large_writes_do_not_get_everyone_elses_refused_on_a_nearly_full_disk() {
        // Room for 100 KB at a time: the large request does not fit, the small ones do.
        let storage = Scales::new(100_000);
        let results = queue_behind_a_held_commit(
            storage.clone(),
            DEFAULT_MAX_BATCH_BYTES,
            vec![
                vec![write_of(1_000)],
                vec![write_of(500_000)],
                vec![write_of(1_000)],
            ],
        )
        .await;
        assert!(results[0].is_ok(), "{:?}", results[0]);
        assert!(results[1].is_err(), "the write too large for the disk");
        assert!(results[2].is_ok(), "{:?}", results[2]);
    }

    #[tokio::test]
    async fn a_conflict_with_another_node_fails_only_the_request_that_conflicts() {
        let contested = DeviceId([7; 32]);
        let storage = Arc::new(Scales {
            conflict_for: Some(contested),
            ..Arc::into_inner(Scales::new(usize::MAX)).unwrap()
        });
        let results = queue_behind_a_held_commit(
            storage.clone(),
            DEFAULT_MAX_BATCH_BYTES,
            vec![
                vec![write_of(100)],
                vec![write_for(contested, 100)],
                vec![write_of(100)],
            ],
        )
        .await;
        assert!(results[0].is_ok(), "{:?}", results[0]);
        assert!(
            matches!(&results[1], Err(CommitError::Storage(e)) if matches!(e.as_ref(), StorageError::Conflict(_))),
            "{:?}",
            results[1]
        );
        assert!(results[2].is_ok(), "{:?}", results[2]);
    }

    #[tokio::test]
    async fn batches_stay_within_the_byte_cap_and_a_larger_request_goes_alone() {
        let storage = Scales::new(usize::MAX);
        let mut requests: Vec<Vec<Write>> = (0..20).map(|_| vec![write_of(300)]).collect();
        requests.insert(5, vec![write_of(5_000)]);
        let results = queue_behind_a_held_commit(storage.clone(), 2_000, requests).await;
        assert!(results.iter().all(Result::is_ok));
        let batches = storage.batches.lock().unwrap().clone();
        assert!(
            batches.len() > 3,
            "the queue was cut into batches: {batches:?}"
        );
        for &(writes, bytes) in &batches {
            assert!(
                bytes <= 2_000 || writes == 1,
                "a batch of {writes} writes and {bytes} bytes"
            );
        }
        // Every write was committed, the held empty one included.
        assert_eq!(batches.iter().map(|b| b.0).sum::<usize>(), 21);
    }

    #[tokio::test]
    async fn a_writer_that_dies_says_so_instead_of_refusing_every_write_forever() {
        let storage = Scales::new(usize::MAX);
        let (writer, _thread, mut status) = Writer::start(
            storage.clone(),
            64,
            64,
            DEFAULT_MAX_BATCH_BYTES,
            Arc::new(Metrics::default()),
        )
        .unwrap();
        storage.panic_on_commit.store(true, SeqCst);
        assert!(matches!(
            writer.commit(vec![write_of(10)]).await,
            Err(CommitError::Stopped)
        ));
        let reason = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            status.failed(std::time::Duration::from_secs(3600)),
        )
        .await
        .expect("the writer's death is reported");
        assert!(reason.contains("storage bug"), "{reason}");
    }
}
