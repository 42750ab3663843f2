//! [`MemoryStore`]: a [`ClientStore`] in memory, for tests and for hosts that keep nothing.
//!
//! It keeps one ordered map per tree behind a lock and applies each batch under that lock, so
//! a commit is atomic. Nothing survives the process. With the feature `test-hooks` (for tests
//! only), `MemoryStore::with_faults` builds one whose commits fail on demand and which records
//! its state after every commit, for crash-consistency tests (and whose reads of a tree fail
//! on demand); the plain constructors have no
//! such behaviour.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use zeroize::Zeroizing;

use crate::StoreError;
use crate::store::{Batch, ClientStore, Entry};

/// The contents of a store: per tree, its values by key.
#[derive(Clone, Default, PartialEq, Eq)]
struct State {
    trees: BTreeMap<&'static str, BTreeMap<Vec<u8>, Zeroizing<Vec<u8>>>>,
}

impl State {
    /// Applies one write.
    fn apply(&mut self, tree: &'static str, key: &[u8], value: Option<&[u8]>) {
        match value {
            Some(value) => {
                self.trees
                    .entry(tree)
                    .or_default()
                    .insert(key.to_vec(), Zeroizing::new(value.to_vec()));
            }
            None => {
                if let Some(t) = self.trees.get_mut(tree) {
                    t.remove(key);
                }
            }
        }
    }
}

/// What a [`MemoryStore`] made by [`MemoryStore::with_faults`] does wrong. **For tests only**
/// (feature `test-hooks`).
///
/// The unit of persistence is a *step*: a whole commit normally, or a single write with
/// [`Faults::split_writes`]. Steps are counted from 1 over the store's life.
#[cfg(feature = "test-hooks")]
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// The step that fails with [`StoreError::Db`] and changes nothing.
    fail_at: Option<u64>,
    /// Whether each write of a batch is its own step, as when every write went to the store
    /// separately.
    split_writes: bool,
}

#[cfg(feature = "test-hooks")]
impl Faults {
    /// No faults: every step succeeds (snapshots are still recorded).
    pub fn new() -> Faults {
        Faults::default()
    }

    /// The `step`-th step (from 1) fails and changes nothing; later steps succeed again.
    pub fn fail_at(mut self, step: u64) -> Faults {
        self.fail_at = Some(step);
        self
    }

    /// Applies a batch one write at a time, each its own step, so a failure can leave part of
    /// a batch stored: the non-atomic write order a crash-consistency test must catch.
    pub fn split_writes(mut self) -> Faults {
        self.split_writes = true;
        self
    }
}

/// The whole state of a [`MemoryStore`] at one moment; [`MemoryStore::from_snapshot`] opens
/// it again, as a restart after a crash at that moment would find it.
#[derive(Clone, PartialEq, Eq)]
pub struct Snapshot(State);

impl std::fmt::Debug for Snapshot {
    /// Tree names and sizes only: values are plaintext.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.trees.iter().map(|(tree, t)| (tree, t.len())))
            .finish()
    }
}

impl Snapshot {
    /// The value of `tree`/`key` at that moment.
    pub fn get(&self, tree: &str, key: &[u8]) -> Option<&[u8]> {
        self.0
            .trees
            .get(tree)
            .and_then(|t| t.get(key))
            .map(|v| v.as_slice())
    }
}

/// The store's state and, for a store made by `MemoryStore::with_faults`, its fault record.
#[derive(Default)]
struct Inner {
    state: State,
    /// `None` for an ordinary store.
    #[cfg(feature = "test-hooks")]
    faults: Option<FaultState>,
}

/// The running record of a faulty store.
#[cfg(feature = "test-hooks")]
struct FaultState {
    faults: Faults,
    /// Steps attempted so far, failed ones included.
    steps: u64,
    /// The state after every successful step, in order.
    snapshots: Vec<Snapshot>,
    /// A tree whose reads fail, while set ([`FaultProbe::fail_reads_of`]).
    failing_reads: Option<&'static str>,
}

/// A [`ClientStore`] in memory. Clones are handles on the same store, so a test can keep one
/// to look at, or "reopen", what another wrote.
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

/// A window on a store made by [`MemoryStore::with_faults`]: what it went through. **For tests
/// only** (feature `test-hooks`).
#[cfg(feature = "test-hooks")]
#[derive(Clone)]
pub struct FaultProbe {
    inner: Arc<Mutex<Inner>>,
}

#[cfg(feature = "test-hooks")]
impl std::fmt::Debug for FaultProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProbe").finish_non_exhaustive()
    }
}

/// Locks the store. A panic while it was held cannot have left a half-applied batch: the
/// only code run under the lock is map inserts and removals, whose only failure is running out
/// of memory, which aborts the process rather than unwinding. So a poisoned lock still guards a
/// consistent state and is used as is.
fn lock(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    inner.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(feature = "test-hooks")]
impl FaultProbe {
    /// The state after every successful step so far, oldest first. The state before the first
    /// step is the one the store was made with (empty for [`MemoryStore::with_faults`]).
    pub fn snapshots(&self) -> Vec<Snapshot> {
        lock(&self.inner)
            .faults
            .as_ref()
            .map(|f| f.snapshots.clone())
            .unwrap_or_default()
    }

    /// How many steps were attempted, failed ones included.
    pub fn steps(&self) -> u64 {
        lock(&self.inner).faults.as_ref().map_or(0, |f| f.steps)
    }

    /// From now on every read of `tree` fails with [`StoreError::Db`] (`None`: reads work
    /// again), as a disk that cannot be read would.
    pub fn fail_reads_of(&self, tree: Option<&'static str>) {
        if let Some(f) = lock(&self.inner).faults.as_mut() {
            f.failing_reads = tree;
        }
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// A store holding exactly `snapshot`, without faults.
    pub fn from_snapshot(snapshot: &Snapshot) -> MemoryStore {
        MemoryStore {
            inner: Arc::new(Mutex::new(Inner {
                state: snapshot.0.clone(),
                #[cfg(feature = "test-hooks")]
                faults: None,
            })),
        }
    }

    /// **For tests only** (feature `test-hooks`). An empty store that misbehaves as `faults`
    /// says and records its state after every step, and the probe to read that record with.
    #[cfg(feature = "test-hooks")]
    pub fn with_faults(faults: Faults) -> (MemoryStore, FaultProbe) {
        let inner = Arc::new(Mutex::new(Inner {
            state: State::default(),
            faults: Some(FaultState {
                faults,
                steps: 0,
                snapshots: Vec::new(),
                failing_reads: None,
            }),
        }));
        (
            MemoryStore {
                inner: inner.clone(),
            },
            FaultProbe { inner },
        )
    }

    /// The store's whole state now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot(lock(&self.inner).state.clone())
    }

    /// Applies `batch` under the lock: at once, or write by write with faults that say so.
    fn apply(&self, batch: &Batch) -> Result<(), StoreError> {
        let mut guard = lock(&self.inner);
        let inner = &mut *guard;
        #[cfg(feature = "test-hooks")]
        if let Some(record) = &mut inner.faults {
            return apply_with_faults(&mut inner.state, record, batch);
        }
        for (tree, key, value) in batch.iter() {
            inner.state.apply(tree, key, value);
        }
        Ok(())
    }

    /// Reads under the lock (failing only with faults that say so).
    fn read<T>(
        &self,
        tree: &'static str,
        f: impl FnOnce(&BTreeMap<Vec<u8>, Zeroizing<Vec<u8>>>) -> T,
    ) -> Result<T, StoreError> {
        let guard = lock(&self.inner);
        #[cfg(feature = "test-hooks")]
        if guard
            .faults
            .as_ref()
            .is_some_and(|f| f.failing_reads == Some(tree))
        {
            return Err(StoreError::Db(format!("injected failure reading {tree}")));
        }
        Ok(match guard.state.trees.get(tree) {
            Some(t) => f(t),
            None => f(&BTreeMap::new()),
        })
    }
}

/// Applies `batch` to a faulty store's `state` as its `record` says: step by step, failing
/// the step it names, recording the state after each.
#[cfg(feature = "test-hooks")]
fn apply_with_faults(
    state: &mut State,
    record: &mut FaultState,
    batch: &Batch,
) -> Result<(), StoreError> {
    let writes: Vec<_> = batch.iter().collect();
    // One step per write, or the whole batch as one.
    let steps: Vec<&[_]> = if record.faults.split_writes {
        writes.chunks(1).collect()
    } else {
        vec![&writes[..]]
    };
    for step in steps {
        record.steps += 1;
        if record.faults.fail_at == Some(record.steps) {
            return Err(StoreError::Db(format!(
                "injected failure at step {}",
                record.steps
            )));
        }
        for (tree, key, value) in step {
            state.apply(tree, key, *value);
        }
        record.snapshots.push(Snapshot(state.clone()));
    }
    Ok(())
}

impl ClientStore for MemoryStore {
    async fn get(
        &self,
        tree: &'static str,
        key: &[u8],
    ) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        self.read(tree, |t| t.get(key).cloned())
    }

    async fn scan(
        &self,
        tree: &'static str,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        self.read(tree, |t| {
            t.range(prefix.to_vec()..)
                .take_while(|(key, _)| key.starts_with(prefix))
                .take(limit)
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect()
        })
    }

    async fn scan_range_rev(
        &self,
        tree: &'static str,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        // `BTreeMap::range` panics on an inverted range.
        if start >= end {
            return Ok(Vec::new());
        }
        self.read(tree, |t| {
            t.range(start.to_vec()..end.to_vec())
                .rev()
                .take(limit)
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect()
        })
    }

    async fn keys(&self, tree: &'static str, prefix: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
        self.read(tree, |t| {
            t.range(prefix.to_vec()..)
                .take_while(|(key, _)| key.starts_with(prefix))
                .map(|(key, _)| key.clone())
                .collect()
        })
    }

    async fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        self.apply(&batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Tx;
    use pollster::block_on;

    fn value(s: &str) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(s.as_bytes().to_vec())
    }

    /// A batch writing to three trees, one of the writes a removal.
    fn three_tree_batch() -> Batch {
        let mut batch = Batch::new();
        batch.put("messages", b"g1-0001", value("hello"));
        batch.put("seen", b"g1-id", value("1"));
        batch.put("groups", b"g1", value("{\"cursor\":2}"));
        batch.remove("seen", b"g1-old");
        batch
    }

    /// Makes memory stores for the conformance suite; reopening is reading a snapshot.
    struct Memory;

    impl crate::store::conformance::StoreFactory for Memory {
        type Store = MemoryStore;
        async fn create(&mut self) -> Result<MemoryStore, StoreError> {
            Ok(MemoryStore::new())
        }
        async fn reopen(&mut self, store: MemoryStore) -> Result<MemoryStore, StoreError> {
            Ok(MemoryStore::from_snapshot(&store.snapshot()))
        }
    }

    #[test]
    fn the_memory_store_passes_the_store_conformance_suite() {
        block_on(crate::store::conformance::run_all(&mut Memory)).unwrap();
    }

    #[test]
    fn a_failing_commit_leaves_nothing_of_its_batch_and_later_commits_work() {
        let (store, probe) = MemoryStore::with_faults(Faults::new().fail_at(2));
        let mut first = Batch::new();
        first.put("seen", b"g1-old", value("0"));
        block_on(store.commit(first)).unwrap();
        let before = store.snapshot();

        assert!(matches!(
            block_on(store.commit(three_tree_batch())),
            Err(StoreError::Db(_))
        ));
        assert_eq!(
            store.snapshot(),
            before,
            "a failed commit changed the store"
        );

        block_on(store.commit(three_tree_batch())).unwrap();
        let after = store.snapshot();
        assert_eq!(after.get("messages", b"g1-0001"), Some(&b"hello"[..]));
        assert_eq!(after.get("seen", b"g1-id"), Some(&b"1"[..]));
        assert_eq!(after.get("groups", b"g1"), Some(&b"{\"cursor\":2}"[..]));
        assert_eq!(after.get("seen", b"g1-old"), None);
        assert_eq!(probe.steps(), 3);
        assert_eq!(probe.snapshots(), vec![before, after]);
    }

    #[test]
    fn a_failing_commit_through_a_tx_drops_the_steps_writes() {
        let (store, _probe) = MemoryStore::with_faults(Faults::new().fail_at(1));
        let mut tx = Tx::new(store.clone());
        tx.put_bytes("messages", b"k", b"v");
        assert!(block_on(tx.commit()).is_err());
        assert!(!tx.is_dirty(), "the failed step's writes are still pending");
        assert_eq!(block_on(tx.get_bytes("messages", b"k")).unwrap(), None);
        assert_eq!(store.snapshot(), Snapshot(State::default()));
    }

    #[test]
    fn split_writes_stores_part_of_a_batch_when_a_write_fails() {
        // The batch has 4 writes in (tree, key) order: groups/g1, messages/g1-0001,
        // seen/g1-id, seen/g1-old (removal). Failing the third leaves the first two stored:
        // the torn state an atomic store never shows.
        let (store, probe) = MemoryStore::with_faults(Faults::new().split_writes().fail_at(3));
        assert!(block_on(store.commit(three_tree_batch())).is_err());
        let torn = store.snapshot();
        assert!(torn.get("groups", b"g1").is_some());
        assert!(torn.get("messages", b"g1-0001").is_some());
        assert!(torn.get("seen", b"g1-id").is_none());
        assert_eq!(probe.snapshots().len(), 2);
        assert_eq!(probe.snapshots().last(), Some(&torn));
    }

    #[test]
    fn a_snapshot_reopens_as_it_was_and_clones_share_one_store() {
        let store = MemoryStore::new();
        let other_handle = store.clone();
        block_on(store.commit(three_tree_batch())).unwrap();
        assert_eq!(
            block_on(other_handle.get("messages", b"g1-0001"))
                .unwrap()
                .as_deref()
                .map(Vec::as_slice),
            Some(&b"hello"[..])
        );
        let reopened = MemoryStore::from_snapshot(&store.snapshot());
        let mut later = Batch::new();
        later.remove("messages", b"g1-0001");
        block_on(store.commit(later)).unwrap();
        assert!(
            block_on(reopened.get("messages", b"g1-0001"))
                .unwrap()
                .is_some()
        );
        assert!(
            block_on(store.get("messages", b"g1-0001"))
                .unwrap()
                .is_none()
        );
    }
}
