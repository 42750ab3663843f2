//! The single writer: one thread drains a queue of write requests and applies them as one
//! batch; a second thread makes each applied batch durable with one flush, and only then runs
//! its requests' completions in queue order (group commit, pipelined one batch deep).
//!
//! Why one writer: many tasks each awaiting their own flush stall for minutes on sled, while one
//! writer flushing batches acknowledges tens of thousands of writes per second (DESIGN.md).
//! Why a second thread for the flush: while one batch is being flushed, the next is applied
//! instead of waiting behind the flush, so the writer's time per batch is the longer of the two
//! rather than their sum. Only one batch deep: the applier then waits for the flusher to take
//! it (see [`Handoff`]). A storage that cannot apply without flushing (PostgreSQL commits each
//! transaction durably) keeps its default [`Storage::apply_unflushed`], which commits, and its
//! flush then has nothing to do.
//! Why completions run on the flushing thread, in order: a group's posts are queued in
//! sequence-number order (the caller enqueues under the group's lock), batches are applied and
//! handed over in queue order, and each is flushed and completed before the next, so messages
//! are fanned out in sequence order too — and never before they are durable.

use std::sync::{Arc, Condvar, Mutex};
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
/// request is dropped unrun (the queue closed, or a writer thread died and unwound) — with
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

/// Handle for submitting writes. Cloning is cheap; the writer threads stop once every handle is
/// dropped and the queue is drained, so shutdown finishes every accepted write.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Request>,
}

/// How often [`WriterStatus::failed`] looks whether a durable write is stuck.
const STUCK_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// When each writer thread started what it is doing now, if it is busy with the storage.
#[derive(Default)]
struct Busy {
    applying: Mutex<Option<Instant>>,
    flushing: Mutex<Option<Instant>>,
}

impl Busy {
    /// The earlier of the two, if either thread is busy.
    fn since(&self) -> Option<Instant> {
        let read = |slot: &Mutex<Option<Instant>>| slot.lock().map(|busy| *busy).unwrap_or(None);
        match (read(&self.applying), read(&self.flushing)) {
            (Some(a), Some(f)) => Some(a.min(f)),
            (a, f) => a.or(f),
        }
    }
}

/// Sets a [`Busy`] slot for as long as it lives.
struct BusyGuard<'a>(&'a Mutex<Option<Instant>>);

impl<'a> BusyGuard<'a> {
    fn start(slot: &'a Mutex<Option<Instant>>) -> (BusyGuard<'a>, Instant) {
        let now = Instant::now();
        if let Ok(mut busy) = slot.lock() {
            *busy = Some(now);
        }
        (BusyGuard(slot), now)
    }
}

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut busy) = self.0.lock() {
            *busy = None;
        }
    }
}

/// Watches the writer for the failures that only a restart repairs: storage reporting it cannot
/// write again ([`StorageError::NeedsRestart`]), or one durable write taking so long that the
/// disk has stopped answering (sled can wait forever on a flush after a write error).
pub struct WriterStatus {
    fatal: watch::Receiver<Option<String>>,
    busy: Arc<Busy>,
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
                    if let Some(since) = self.busy.since()
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

/// Says, once, that a writer thread panicked, so that the server shuts down for a restart
/// instead of refusing every later write with `shutting_down` while it goes on serving.
fn report_panic(fatal: &watch::Sender<Option<String>>, panic: &(dyn std::any::Any + Send)) {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into());
    let reason = format!("the storage writer stopped unexpectedly (panic: {what})");
    tracing::error!(%reason, "writer thread died");
    fatal.send_if_modified(|fatal| {
        let first = fatal.is_none();
        if first {
            *fatal = Some(reason);
        }
        first
    });
}

impl Writer {
    /// Starts the writer threads; each batch holds at most `max_batch` requests and, unless a
    /// single request is larger, at most `max_batch_bytes` bytes of writes. The returned handle
    /// is the applying thread's, which joins the flushing thread before it ends.
    pub fn start(
        storage: Arc<dyn Storage>,
        queue: usize,
        max_batch: usize,
        max_batch_bytes: usize,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<(Writer, std::thread::JoinHandle<()>, WriterStatus)> {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let (fatal_tx, fatal_rx) = watch::channel(None);
        let busy = Arc::new(Busy::default());
        let status = WriterStatus {
            fatal: fatal_rx,
            busy: busy.clone(),
        };
        let limits = BatchLimits {
            requests: max_batch.max(1),
            bytes: max_batch_bytes.max(1),
        };
        let fatal_tx = Arc::new(fatal_tx);
        let handoff = Arc::new(Handoff::new());
        let flusher = {
            let (storage, metrics, fatal, busy, handoff) = (
                storage.clone(),
                metrics.clone(),
                fatal_tx.clone(),
                busy.clone(),
                handoff.clone(),
            );
            std::thread::Builder::new()
                .name("confide-flusher".into())
                .spawn(move || {
                    let committer = Committer {
                        storage: storage.as_ref(),
                        metrics: &metrics,
                        fatal: &fatal,
                        busy: &busy,
                    };
                    let looped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        flusher_loop(&committer, &handoff)
                    }));
                    // Whatever happened, the applier must not wait for this thread any more;
                    // what it hands over from now on is dropped, and each completion then
                    // runs with `CommitError::Stopped`.
                    handoff.flusher_gone();
                    if let Err(panic) = looped {
                        report_panic(&fatal, panic.as_ref());
                    }
                })?
        };
        let handle = std::thread::Builder::new()
            .name("confide-writer".into())
            .spawn(move || {
                let committer = Committer {
                    storage: storage.as_ref(),
                    metrics: &metrics,
                    fatal: &fatal_tx,
                    busy: &busy,
                };
                let looped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    applier_loop(&committer, rx, limits, &handoff)
                }));
                // The flusher finishes what was handed over (applied writes are flushed and
                // completed), then ends.
                handoff.close();
                if let Err(panic) = looped {
                    // The requests of the batch, and those still queued, are dropped by the
                    // unwinding: each completion then runs with `CommitError::Stopped`.
                    report_panic(&fatal_tx, panic.as_ref());
                }
                if flusher.join().is_err() {
                    tracing::error!("the flushing thread could not be joined");
                }
            })?;
        Ok((Writer { tx }, handle, status))
    }

    /// Queues `writes`; `done` runs exactly once: on a writer thread once they are durable or
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

/// A request whose writes have been applied (or refused), waiting for the flush.
struct Applied {
    request: Request,
    result: Result<(), Arc<StorageError>>,
    /// When its batch started to be applied (for the commit-time metric).
    started: Instant,
}

/// What passes from the applying thread to the flushing thread: one applied batch at a time.
/// Why one: the applier applies the next batch while the flusher flushes the last, and then
/// waits for the flusher to take it; it never runs further ahead. A sled commit has a large
/// fixed cost (BENCHMARKS.md, "A pipelined writer"), so an applier free to apply batch after
/// small batch during one flush spent more CPU than the overlap saved. Waiting also carries a
/// stuck flush back to the queue (back-pressure).
struct Handoff {
    state: Mutex<HandoffState>,
    changed: Condvar,
}

struct HandoffState {
    /// The applied batch the flusher has not taken yet.
    waiting: Option<Vec<Applied>>,
    /// The applier has ended: nothing more will come.
    closed: bool,
    /// The flusher has ended: nothing more will be flushed.
    flusher_gone: bool,
}

impl Handoff {
    fn new() -> Handoff {
        Handoff {
            state: Mutex::new(HandoffState {
                waiting: None,
                closed: false,
                flusher_gone: false,
            }),
            changed: Condvar::new(),
        }
    }

    /// Hands `applied` over once the flusher has taken the batch before it. `false` if the
    /// flusher has ended (then `applied` is dropped, and its completions run with
    /// [`CommitError::Stopped`]); the applier stops then.
    fn hand_over(&self, applied: Vec<Applied>) -> bool {
        // A poisoned lock means the other thread panicked while holding it; it is gone.
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        while !state.flusher_gone && state.waiting.is_some() {
            state = match self.changed.wait(state) {
                Ok(state) => state,
                Err(_) => return false,
            };
        }
        if state.flusher_gone {
            return false;
        }
        state.waiting = Some(applied);
        self.changed.notify_all();
        true
    }

    /// The next applied batch, once there is one; `None` once the applier has ended and
    /// everything was taken.
    fn take(&self) -> Option<Vec<Applied>> {
        let mut state = self.state.lock().ok()?;
        loop {
            if let Some(taken) = state.waiting.take() {
                self.changed.notify_all();
                return Some(taken);
            }
            if state.closed {
                return None;
            }
            state = self.changed.wait(state).ok()?;
        }
    }

    fn close(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.closed = true;
        }
        self.changed.notify_all();
    }

    fn flusher_gone(&self) {
        let dropped = match self.state.lock() {
            Ok(mut state) => {
                state.flusher_gone = true;
                state.waiting.take()
            }
            Err(_) => None,
        };
        self.changed.notify_all();
        // Outside the lock: each completion runs with `CommitError::Stopped`.
        drop(dropped);
    }
}

/// Applies and flushes writes and records how it went.
struct Committer<'a> {
    storage: &'a dyn Storage,
    metrics: &'a Metrics,
    fatal: &'a watch::Sender<Option<String>>,
    busy: &'a Busy,
}

impl Committer<'_> {
    /// Applies one batch's writes (or a part of them), not yet durable.
    fn apply(&self, writes: &[Write], requests: usize) -> Result<(), Arc<StorageError>> {
        let result = {
            let _busy = BusyGuard::start(&self.busy.applying);
            self.storage.apply_unflushed(writes).map_err(Arc::new)
        };
        self.noticed(&result, requests);
        result
    }

    /// Makes everything applied so far durable.
    fn flush(&self, requests: usize) -> Result<(), Arc<StorageError>> {
        let result = {
            let _busy = BusyGuard::start(&self.busy.flushing);
            self.storage.flush().map_err(Arc::new)
        };
        self.noticed(&result, requests);
        result
    }

    /// Logs a failure, and passes on the storage's call for a restart.
    fn noticed(&self, result: &Result<(), Arc<StorageError>>, requests: usize) {
        let Err(e) = result else { return };
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
}

/// Takes batches from the queue, applies each, and hands the outcomes to the flusher.
fn applier_loop(
    committer: &Committer<'_>,
    mut rx: mpsc::Receiver<Request>,
    limits: BatchLimits,
    handoff: &Handoff,
) {
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
        let started = Instant::now();
        let result = committer.apply(&writes, batch.len());
        let split = batch.len() > 1
            && matches!(&result, Err(e) if matches!(
                e.as_ref(),
                StorageError::Full { .. } | StorageError::Conflict(_)
            ));
        let applied: Vec<Applied> = if split {
            // Refused before anything was written: for want of space for the whole batch, or
            // because another node sharing the database stored a seq or an op some request
            // expected to store. What can be written on its own goes ahead, so that one peer's
            // large writes, or one group's conflict, do not fail everyone else's (and deletions,
            // which need less room, still free space). In queue order, like every completion.
            batch
                .drain(..)
                .zip(ranges.drain(..))
                .map(|(request, range)| Applied {
                    result: committer.apply(&writes[range], 1),
                    request,
                    started,
                })
                .collect()
        } else {
            batch
                .drain(..)
                .map(|request| Applied {
                    request,
                    result: result.clone(),
                    started,
                })
                .collect()
        };
        if !handoff.hand_over(applied) {
            break;
        }
    }
}

/// Flushes whatever has been applied, then completes it in queue order.
fn flusher_loop(committer: &Committer<'_>, handoff: &Handoff) {
    while let Some(applied) = handoff.take() {
        let Some(started) = applied.first().map(|a| a.started) else {
            continue;
        };
        let any_applied = applied.iter().any(|a| a.result.is_ok());
        let flushed = if any_applied {
            committer.flush(applied.len())
        } else {
            Ok(())
        };
        let all_ok = flushed.is_ok() && applied.iter().all(|a| a.result.is_ok());
        committer
            .metrics
            .record_flush(started.elapsed(), applied.len(), all_ok);
        for Applied {
            request, result, ..
        } in applied
        {
            let outcome = result.and_then(|()| flushed.clone());
            request.finish(outcome.map_err(CommitError::Storage));
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
        /// Holds the flushing thread in a flush while set.
        hold_flush: AtomicBool,
        flush_holding: AtomicBool,
        /// Flushes fail, as on a disk that stopped writing.
        fail_flush: AtomicBool,
        /// What happened, in order: "apply N" (N bytes), "flushed", and — pushed by the
        /// tests' completions — "done N".
        events: Mutex<Vec<String>>,
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
                hold_flush: AtomicBool::new(false),
                flush_holding: AtomicBool::new(false),
                fail_flush: AtomicBool::new(false),
                events: Mutex::new(Vec::new()),
            })
        }
    }

    impl Storage for Scales {
        fn reads_only_durable(&self) -> bool {
            false
        }
        fn commit(&self, batch: &[Write]) -> Result<(), StorageError> {
            self.apply_unflushed(batch)?;
            self.flush()
        }
        fn flush(&self) -> Result<(), StorageError> {
            while self.hold_flush.load(SeqCst) {
                self.flush_holding.store(true, SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            if self.fail_flush.load(SeqCst) {
                return Err(StorageError::NeedsRestart(
                    "the disk stopped writing".into(),
                ));
            }
            self.events.lock().unwrap().push("flushed".into());
            Ok(())
        }
        fn apply_unflushed(&self, batch: &[Write]) -> Result<(), StorageError> {
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
            self.events.lock().unwrap().push(format!("apply {bytes}"));
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

    /// Queues `write` with a completion that logs "done N" (N: its bytes) in `storage`'s
    /// events and reports the outcome on the returned channel.
    async fn submit_logged(
        writer: &Writer,
        storage: &Arc<Scales>,
        write: Write,
    ) -> oneshot::Receiver<CommitResult> {
        let (tx, rx) = oneshot::channel();
        let bytes = write.size();
        let log = storage.clone();
        writer
            .submit(
                vec![write],
                Box::new(move |result| {
                    log.events.lock().unwrap().push(format!("done {bytes}"));
                    let _ = tx.send(result);
                }),
            )
            .await;
        rx
    }

    /// Waits (on the real clock, polling) until `ready` holds; fails the test if it does not
    /// within 20 s (a writer that waits for each flush before applying the next batch never
    /// gets there).
    async fn until(ready: impl Fn() -> bool) {
        let waited = tokio::time::timeout(std::time::Duration::from_secs(20), async {
            while !ready() {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        })
        .await;
        assert!(waited.is_ok(), "the writer never got there");
    }

    #[tokio::test]
    async fn the_next_batch_is_applied_during_a_flush_but_acknowledged_only_after_its_own() {
        let storage = Scales::new(usize::MAX);
        let (writer, _thread, _status) = Writer::start(
            storage.clone(),
            64,
            64,
            DEFAULT_MAX_BATCH_BYTES,
            Arc::new(Metrics::default()),
        )
        .unwrap();
        storage.hold_flush.store(true, SeqCst);
        let mut first = submit_logged(&writer, &storage, write_of(100)).await;
        until(|| storage.flush_holding.load(SeqCst)).await;
        let mut second = submit_logged(&writer, &storage, write_of(200)).await;
        // Applied while the first batch's flush is held: the writer did not wait for it.
        until(|| storage.batches.lock().unwrap().len() == 2).await;
        assert!(
            first.try_recv().is_err(),
            "not acknowledged before its flush"
        );
        assert!(
            second.try_recv().is_err(),
            "not acknowledged before its flush"
        );
        storage.hold_flush.store(false, SeqCst);
        assert!(first.await.unwrap().is_ok());
        assert!(second.await.unwrap().is_ok());
        let write_100 = write_of(100).size();
        let write_200 = write_of(200).size();
        let events = storage.events.lock().unwrap().clone();
        assert_eq!(
            events,
            vec![
                format!("apply {write_100}"),
                format!("apply {write_200}"),
                "flushed".to_string(),
                format!("done {write_100}"),
                "flushed".to_string(),
                format!("done {write_200}"),
            ],
            "each write is acknowledged after a flush that began once it was applied"
        );
    }

    #[tokio::test]
    async fn a_failed_flush_acknowledges_nothing_it_held_and_asks_for_a_restart() {
        let storage = Scales::new(usize::MAX);
        let (writer, _thread, mut status) = Writer::start(
            storage.clone(),
            64,
            64,
            DEFAULT_MAX_BATCH_BYTES,
            Arc::new(Metrics::default()),
        )
        .unwrap();
        storage.hold_flush.store(true, SeqCst);
        let first = submit_logged(&writer, &storage, write_of(100)).await;
        until(|| storage.flush_holding.load(SeqCst)).await;
        let second = submit_logged(&writer, &storage, write_of(200)).await;
        until(|| storage.batches.lock().unwrap().len() == 2).await;
        storage.fail_flush.store(true, SeqCst);
        storage.hold_flush.store(false, SeqCst);
        for outcome in [first.await.unwrap(), second.await.unwrap()] {
            assert!(
                matches!(&outcome, Err(CommitError::Storage(e)) if matches!(e.as_ref(), StorageError::NeedsRestart(_))),
                "{outcome:?}"
            );
        }
        let reason = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            status.failed(std::time::Duration::from_secs(3600)),
        )
        .await
        .expect("the failed flush is reported");
        assert!(reason.contains("stopped writing"), "{reason}");
    }
}
