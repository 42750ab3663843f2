//! The sled backend's index from message id to seq: the seq a post was stored under (a retry is
//! answered with it instead of being stored twice), and the message a deletion by id removes.
//!
//! Why not a tree keyed by id, as before: each post inserted its id into a tree of random keys
//! in the transaction that stored it, and that one insert was about 40 % of the server's CPU
//! per durably acknowledged post (BENCHMARKS.md, issue 20's sixth round). Instead:
//!
//! - in memory, per group, a map from id to seq, loaded on the group's first lookup and
//!   dropped, least recently used first, when the maps hold more than a configurable number of
//!   ids ([`DEFAULT_IDS_IN_MEMORY`]). A group is loaded whole (about 50 bytes per id);
//! - on disk, tree `message_id_runs`: key group (16) ‖ seq of the run's first id (8), value
//!   `covered` (8) ‖ n × (seq (8) ‖ message id (16)). A group's ids are written [`RUN_LEN`] at a
//!   time, in the transaction that stores the last message of the run; `covered` is the highest
//!   seq that run and the runs before it cover;
//! - the messages after the highest `covered` of a group are in no run yet: loading a group
//!   reads them from the `messages` tree and computes their ids. They are stored with their
//!   message, so a crash loses none of them.
//!
//! A deletion removes its id from the run holding it, in the transaction that deletes the
//! message; a run left empty is removed, unless its `covered` is the group's highest (which
//! says where the group's unindexed messages start). A damaged run or message is left out of
//! the index with a log line, rather than stopping its group.
//!
//! Consistency: only the writer (one thread, [`super::Storage::commit`]) changes a group's runs
//! and its unindexed tail. It pins the groups of a batch while it writes, so that none is
//! dropped and reloaded from a half-written state, and changes the maps only after its
//! transaction has committed; lookups only read them. A post is not looked up here while it is
//! being written (the server looks a post up only under its group's lock, after checking the
//! posts it keeps in flight until durable), so the moment between the commit and the maps'
//! update is not seen; nor is a lookup answered from a group dropped and reloaded meanwhile. Each group has its own lock, so loading a large
//! group holds up that group (and the writer, if its batch needs it), not every lookup.
//!
//! A database an older server wrote (its ids in a `message_ids` tree, one key per message) gets
//! its runs built from its messages when it is opened, and the old tree is then dropped: an
//! older server must not open it again (CHANGELOG).

use confide_protocol::{GroupId, MessageId, Seq};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use super::StorageError;
use super::sled_record;
use super::sled_store::{backend, fixed, key_u64, key2};

/// Ids written to disk together, per group. A group's lookups after a restart compute the ids
/// of at most this many messages (fewer than this are in no run); larger runs mean fewer sled
/// writes per post.
pub const RUN_LEN: usize = 256;

/// Ids kept in memory across all groups, unless the config file says otherwise
/// (`storage_ids_in_memory`): about 50 bytes each, so about 100 MiB at most. A group whose
/// messages alone are more than this is still loaded whole, with all others dropped.
pub const DEFAULT_IDS_IN_MEMORY: usize = 2 * 1024 * 1024;

/// The smallest `storage_ids_in_memory` the server accepts: fewer would have every post reload
/// its group's ids from disk.
pub const MIN_IDS_IN_MEMORY: usize = 64 * 1024;

/// The tree holding the runs.
const TREE: &str = "message_id_runs";

/// The tree an older server kept the ids in, one key per message.
const OLD_TREE: &str = "message_ids";

/// Bytes of one (seq, id) record in a run.
const RECORD_BYTES: usize = 8 + 16;

/// One run of a group's ids, as stored.
#[derive(Debug, Clone, PartialEq)]
struct Run {
    /// The highest seq this run and the group's runs before it cover.
    covered: u64,
    records: Vec<(Seq, MessageId)>,
}

impl Run {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.records.len() * RECORD_BYTES);
        out.extend_from_slice(&self.covered.to_be_bytes());
        for (seq, id) in &self.records {
            out.extend_from_slice(&seq.0.to_be_bytes());
            out.extend_from_slice(id.as_bytes());
        }
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, StorageError> {
        let corrupt = |reason: &str| StorageError::Corrupt {
            tree: TREE,
            reason: reason.into(),
        };
        let (covered, records) = bytes
            .split_first_chunk::<8>()
            .ok_or_else(|| corrupt("a run shorter than its header"))?;
        if records.len() % RECORD_BYTES != 0 {
            return Err(corrupt("a run with a partial record"));
        }
        let records = records
            .chunks_exact(RECORD_BYTES)
            .map(|record| {
                let (seq, id) = record.split_at(8);
                // Both lengths are fixed by `chunks_exact` and `split_at` above.
                let seq = u64::from_be_bytes(seq.try_into().map_err(|_| corrupt("seq"))?);
                let id = MessageId(id.try_into().map_err(|_| corrupt("id"))?);
                Ok((Seq(seq), id))
            })
            .collect::<Result<_, StorageError>>()?;
        Ok(Run {
            covered: u64::from_be_bytes(*covered),
            records,
        })
    }
}

/// A run's key, and a message's in the `messages` tree: group ‖ seq.
fn run_key(group: &GroupId, first: Seq) -> Vec<u8> {
    key2(group.as_bytes(), &first.0.to_be_bytes())
}

/// One group's ids in memory.
struct GroupIds {
    ids: HashMap<MessageId, Seq>,
    /// Stored messages in no run yet, in seq order.
    unindexed: Vec<(Seq, MessageId)>,
    /// The highest seq the group's runs cover.
    covered: u64,
}

/// A group's ids, or `None` until loaded. Each group has its own lock, so that loading one
/// group (reading its runs and newest messages) holds up only that group's lookups.
type Cell = Arc<Mutex<Option<GroupIds>>>;

/// Bookkeeping for one group in memory.
struct Slot {
    cell: Cell,
    /// When it was last used, on [`State::clock`]; its key in [`State::lru`].
    last_used: u64,
    /// A batch is being written for it: it may not be dropped.
    pinned: bool,
    /// Ids its cell holds, as last counted.
    entries: usize,
}

/// Which groups are in memory. Its lock is held only for bookkeeping, never while a group's
/// own lock is waited for (a group's lock may be held while this one is taken).
#[derive(Default)]
struct State {
    slots: HashMap<GroupId, Slot>,
    /// The groups by `last_used`, least recently used first.
    lru: BTreeMap<u64, GroupId>,
    /// Ids in all of `slots`.
    entries: usize,
    clock: u64,
}

impl State {
    /// `group`'s cell (empty if new), marked used now.
    fn touch(&mut self, group: GroupId) -> Cell {
        self.clock += 1;
        let now = self.clock;
        let slot = self.slots.entry(group).or_insert_with(|| Slot {
            cell: Arc::new(Mutex::new(None)),
            last_used: 0,
            pinned: false,
            entries: 0,
        });
        self.lru.remove(&slot.last_used);
        slot.last_used = now;
        self.lru.insert(now, group);
        slot.cell.clone()
    }

    /// Counts `entries` ids for `group`, if `cell` is still its cell (it may have been dropped
    /// while it was loaded).
    fn count(&mut self, group: &GroupId, cell: &Cell, entries: usize) {
        if let Some(slot) = self.slots.get_mut(group)
            && Arc::ptr_eq(&slot.cell, cell)
        {
            self.entries = self.entries.saturating_sub(slot.entries) + entries;
            slot.entries = entries;
        }
    }

    fn set_pinned(&mut self, group: &GroupId, pinned: bool) {
        if let Some(slot) = self.slots.get_mut(group) {
            slot.pinned = pinned;
        }
    }

    /// Drops the least recently used groups (never `keep`, nor a pinned one) while more than
    /// `capacity` ids are held.
    fn evict(&mut self, capacity: usize, keep: Option<&GroupId>) {
        let mut kept = Vec::new();
        while self.entries > capacity {
            let Some((tick, group)) = self.lru.pop_first() else {
                break;
            };
            let stays = self
                .slots
                .get(&group)
                .is_some_and(|slot| slot.pinned || Some(&group) == keep);
            if stays {
                kept.push((tick, group));
            } else if let Some(slot) = self.slots.remove(&group) {
                self.entries = self.entries.saturating_sub(slot.entries);
            }
        }
        self.lru.extend(kept);
    }
}

/// A write of a batch that changes the index, in batch order.
pub(super) enum IdWrite {
    Stored {
        group: GroupId,
        seq: Seq,
        id: MessageId,
    },
    Deleted {
        group: GroupId,
        id: MessageId,
    },
    /// Deleted past retention, by seq: the caller deletes the message itself, and a group not
    /// in memory is not loaded for it.
    Expired {
        group: GroupId,
        seq: Seq,
        id: MessageId,
    },
}

/// The index (see the module documentation).
pub(super) struct IdIndex {
    runs: sled::Tree,
    messages: sled::Tree,
    capacity: usize,
    state: Mutex<State>,
}

/// A poisoned lock: something panicked while holding it, so the maps may be half changed and no
/// answer from them can be trusted. Nothing in this module panics while holding a lock.
fn poisoned<T>(_: T) -> StorageError {
    StorageError::NeedsRestart("the message id index failed".into())
}

fn lock_cell(cell: &Cell) -> Result<MutexGuard<'_, Option<GroupIds>>, StorageError> {
    cell.lock().map_err(poisoned)
}

/// Says (at most once in a while) that a damaged record was left out of the index.
fn damaged(what: &str, e: &StorageError) {
    crate::throttle::storage_error(&format_args!(
        "{what} left out of the message id index: {e}"
    ));
}

impl IdIndex {
    /// Opens the index of `db`, whose messages are in `messages`. A database an older server
    /// wrote (with its `message_ids` tree) gets its runs built from its messages first.
    pub(super) fn open(db: &sled::Db, messages: sled::Tree) -> Result<Self, StorageError> {
        let runs = db.open_tree(TREE).map_err(backend)?;
        if db
            .tree_names()
            .iter()
            .any(|name| name == OLD_TREE.as_bytes())
        {
            build_runs(&messages, &runs)?;
            db.flush().map_err(backend)?;
            // Only once the runs are durable: a crash before this builds them again.
            db.drop_tree(OLD_TREE).map_err(backend)?;
        }
        Ok(IdIndex {
            runs,
            messages,
            capacity: DEFAULT_IDS_IN_MEMORY,
            state: Mutex::new(State::default()),
        })
    }

    /// Keeps at most about `capacity` ids in memory (see [`DEFAULT_IDS_IN_MEMORY`]).
    pub(super) fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
    }

    /// The tree the runs are written to (in the caller's transaction).
    pub(super) fn tree(&self) -> &sled::Tree {
        &self.runs
    }

    /// Whether `group`'s ids are in memory.
    #[cfg(test)]
    pub(super) fn is_loaded(&self, group: &GroupId) -> bool {
        self.state
            .lock()
            .is_ok_and(|state| state.slots.contains_key(group))
    }

    fn state(&self) -> Result<MutexGuard<'_, State>, StorageError> {
        self.state.lock().map_err(poisoned)
    }

    /// The seq `id` is stored under in `group`, if it is stored.
    pub(super) fn seq(&self, group: &GroupId, id: &MessageId) -> Result<Option<Seq>, StorageError> {
        let cell = self.state()?.touch(*group);
        let mut ids = lock_cell(&cell)?;
        let loaded = self.fill(group, &mut ids)?;
        let seq = ids.as_ref().and_then(|ids| ids.ids.get(id).copied());
        drop(ids);
        self.count_loaded(group, &cell, loaded)?;
        Ok(seq)
    }

    /// Loads `group` into its locked cell if it is empty; the number of ids loaded, if so.
    fn fill(
        &self,
        group: &GroupId,
        ids: &mut MutexGuard<'_, Option<GroupIds>>,
    ) -> Result<Option<usize>, StorageError> {
        if ids.is_some() {
            return Ok(None);
        }
        let loaded = self.load(group)?;
        let entries = loaded.ids.len();
        **ids = Some(loaded);
        Ok(Some(entries))
    }

    /// Counts the ids of a group just loaded into `cell` ([`Self::fill`]), and drops other
    /// groups if that went past the capacity.
    fn count_loaded(
        &self,
        group: &GroupId,
        cell: &Cell,
        entries: Option<usize>,
    ) -> Result<(), StorageError> {
        if let Some(entries) = entries {
            let mut state = self.state()?;
            state.count(group, cell, entries);
            state.evict(self.capacity, Some(group));
        }
        Ok(())
    }

    /// Reads a group's runs, then its messages after them. A damaged run or message is left
    /// out (and logged) rather than making the whole group fail: the message cannot be served
    /// anyway, and a damaged run's ids are read back from their messages if no later run
    /// covers them.
    fn load(&self, group: &GroupId) -> Result<GroupIds, StorageError> {
        let mut ids = HashMap::new();
        let mut covered = 0;
        // Every run's first seq, and whether it was damaged.
        let mut firsts: Vec<(u64, bool)> = Vec::new();
        for entry in self.runs.scan_prefix(group.as_bytes()) {
            let (key, value) = entry.map_err(backend)?;
            let Ok(first) = key_u64(TREE, &key, 16) else {
                continue;
            };
            match Run::decode(&value) {
                Ok(run) => {
                    covered = covered.max(run.covered);
                    ids.extend(run.records.into_iter().map(|(seq, id)| (id, seq)));
                    firsts.push((first, false));
                }
                Err(e) => {
                    damaged("a damaged run of message ids", &e);
                    firsts.push((first, true));
                }
            }
        }
        // A damaged run's ids are read back from the messages it covered: from its first seq to
        // before the next run's, and no further than the runs cover (the rest is read below).
        for (at, (first, _)) in firsts.iter().enumerate().filter(|(_, (_, bad))| *bad) {
            let next = firsts.get(at + 1).map_or(u64::MAX, |(next, _)| *next);
            let last = next.saturating_sub(1).min(covered);
            if *first <= last {
                self.read_ids(group, *first, last, |seq, id| {
                    ids.insert(id, seq);
                })?;
            }
        }
        let mut unindexed = Vec::new();
        if let Some(first) = covered.checked_add(1) {
            self.read_ids(group, first, u64::MAX, |seq, id| {
                // An id already in a run (one stored out of seq order) stays only there.
                if ids.insert(id, seq).is_none() {
                    unindexed.push((seq, id));
                }
            })?;
        }
        Ok(GroupIds {
            ids,
            unindexed,
            covered,
        })
    }

    /// Computes the ids of `group`'s messages with seqs `first..=last`, in seq order, leaving
    /// out a damaged message (it cannot be served anyway).
    fn read_ids(
        &self,
        group: &GroupId,
        first: u64,
        last: u64,
        mut each: impl FnMut(Seq, MessageId),
    ) -> Result<(), StorageError> {
        let start = run_key(group, Seq(first));
        let end = run_key(group, Seq(last));
        for entry in self.messages.range(start..=end) {
            let (key, value) = entry.map_err(backend)?;
            match sled_record::decode_message_at(&key, &value) {
                Ok(message) => each(message.seq, message.envelope.message_id()),
                Err(e) => damaged("a damaged message", &e),
            }
        }
        Ok(())
    }

    /// What a batch's `writes` change: the runs to write and the messages to delete, in the
    /// caller's transaction, then [`Plan::committed`] once it has committed. The batch's groups
    /// stay pinned until then (or until the plan is dropped, for a batch not written).
    pub(super) fn plan(&self, writes: &[IdWrite]) -> Result<Plan<'_>, StorageError> {
        let mut plan = Plan {
            index: self,
            changes: HashMap::new(),
            runs: RunEdits {
                tree: &self.runs,
                runs: BTreeMap::new(),
            },
            deleted: Vec::new(),
            expired_cold: Vec::new(),
        };
        // Groups this batch stores in or deletes from by id: those are loaded. A group only
        // expiring messages is loaded only if it is in memory already.
        let loaded: HashSet<GroupId> = writes
            .iter()
            .filter_map(|write| match write {
                IdWrite::Stored { group, .. } | IdWrite::Deleted { group, .. } => Some(*group),
                IdWrite::Expired { .. } => None,
            })
            .collect();
        for write in writes {
            let group = match write {
                IdWrite::Stored { group, .. }
                | IdWrite::Deleted { group, .. }
                | IdWrite::Expired { group, .. } => group,
            };
            if let IdWrite::Expired { group, seq, id } = *write
                && !loaded.contains(&group)
                && !plan.changes.contains_key(&group)
                && !self.state()?.slots.contains_key(&group)
            {
                plan.runs.remove_expired(&group, seq, id)?;
                plan.expired_cold.push((group, seq, id));
                continue;
            }
            if !plan.changes.contains_key(group) {
                let change = self.begin(group)?;
                plan.changes.insert(*group, change);
            }
            let Some(change) = plan.changes.get_mut(group) else {
                continue;
            };
            match *write {
                IdWrite::Stored { group, seq, id } => {
                    change.ops.push((id, Some(seq)));
                    let in_order = seq.0 > change.covered
                        && change.unindexed.last().is_none_or(|(last, _)| *last < seq);
                    if in_order {
                        change.unindexed.push((seq, id));
                        if change.unindexed.len() >= RUN_LEN {
                            change.write_runs(&group, &mut plan.runs);
                        }
                    } else {
                        // The writer stores each group's messages in seq order, so this does
                        // not happen; if it did, a run of its own keeps the id (the unindexed
                        // tail must stay in seq order, and above `covered`, or a restart would
                        // miss or repeat it).
                        plan.runs.add(&group, seq, id, change.covered)?;
                    }
                }
                IdWrite::Deleted { group, id } | IdWrite::Expired { group, id, .. } => {
                    let Some(seq) = change.current(&id)? else {
                        continue;
                    };
                    // An expiry names the message the sweep read; if that one was deleted
                    // since and its envelope posted again, the new copy stays, and its id.
                    if let IdWrite::Expired { seq: expired, .. } = *write
                        && expired != seq
                    {
                        continue;
                    }
                    change.ops.push((id, None));
                    if matches!(write, IdWrite::Deleted { .. }) {
                        plan.deleted.push((group, seq));
                    }
                    if let Some(at) = change.unindexed.iter().position(|(_, i)| *i == id) {
                        change.unindexed.remove(at);
                    } else {
                        plan.runs.remove(&group, seq, id, change.covered)?;
                    }
                }
            }
        }
        Ok(plan)
    }

    /// Pins `group` for a batch and loads it if it is not in memory.
    fn begin(&self, group: &GroupId) -> Result<Change, StorageError> {
        let cell = {
            let mut state = self.state()?;
            let cell = state.touch(*group);
            state.set_pinned(group, true);
            cell
        };
        let mut ids = lock_cell(&cell)?;
        let loaded = match self.fill(group, &mut ids) {
            Ok(loaded) => loaded,
            Err(e) => {
                drop(ids);
                self.state()?.set_pinned(group, false);
                return Err(e);
            }
        };
        let (unindexed, covered) = ids
            .as_ref()
            .map(|ids| (ids.unindexed.clone(), ids.covered))
            .unwrap_or_default();
        drop(ids);
        self.count_loaded(group, &cell, loaded)?;
        Ok(Change {
            cell,
            ops: Vec::new(),
            unindexed,
            covered,
        })
    }
}

/// Builds every group's runs from its messages, for a database an older server wrote: in
/// batches of at most [`BUILD_BATCH_RUNS`] runs, after removing any runs there (an earlier
/// build that did not finish, or runs an older server's deletions have made stale).
fn build_runs(messages: &sled::Tree, runs: &sled::Tree) -> Result<(), StorageError> {
    runs.clear().map_err(backend)?;
    let mut batch = sled::Batch::default();
    let (mut in_batch, mut total) = (0usize, 0usize);
    let mut group: Option<GroupId> = None;
    let mut run: Vec<(Seq, MessageId)> = Vec::new();
    let mut put = |group: &GroupId, run: &mut Vec<(Seq, MessageId)>| -> Result<(), StorageError> {
        let (Some((first, _)), Some((last, _))) = (run.first(), run.last()) else {
            return Ok(());
        };
        let key = run_key(group, *first);
        let value = Run {
            covered: last.0,
            records: std::mem::take(run),
        };
        batch.insert(key, value.encode());
        in_batch += 1;
        if in_batch == BUILD_BATCH_RUNS {
            runs.apply_batch(std::mem::take(&mut batch))
                .map_err(backend)?;
            in_batch = 0;
        }
        Ok(())
    };
    for entry in messages.iter() {
        let (key, value) = entry.map_err(backend)?;
        let Ok(this) = fixed::<16>("messages", &key) else {
            continue;
        };
        let this = GroupId(this);
        if let Some(previous) = group
            && previous != this
        {
            put(&previous, &mut run)?;
        }
        group = Some(this);
        match sled_record::decode_message_at(&key, &value) {
            Ok(message) => run.push((message.seq, message.envelope.message_id())),
            Err(e) => damaged("a damaged message", &e),
        }
        total += 1;
        if run.len() == RUN_LEN {
            put(&this, &mut run)?;
        }
    }
    if let Some(group) = group {
        put(&group, &mut run)?;
    }
    runs.apply_batch(batch).map_err(backend)?;
    tracing::info!(
        messages = total,
        "built the message id index of a database an older server wrote"
    );
    Ok(())
}

/// Runs written per sled batch while [`build_runs`] builds them (about 1.5 MiB).
const BUILD_BATCH_RUNS: usize = 256;

/// One group's changes in a batch.
struct Change {
    cell: Cell,
    /// Ids stored (`Some`) and deleted (`None`), in batch order.
    ops: Vec<(MessageId, Option<Seq>)>,
    /// The unindexed tail after the batch.
    unindexed: Vec<(Seq, MessageId)>,
    /// The highest seq covered by runs after the batch.
    covered: u64,
}

impl Change {
    /// Where `id` is stored after this batch's changes so far.
    fn current(&self, id: &MessageId) -> Result<Option<Seq>, StorageError> {
        if let Some((_, seq)) = self.ops.iter().rev().find(|(i, _)| i == id) {
            return Ok(*seq);
        }
        Ok(lock_cell(&self.cell)?
            .as_ref()
            .and_then(|ids| ids.ids.get(id).copied()))
    }

    /// Moves the unindexed tail into runs of at most [`RUN_LEN`].
    fn write_runs(&mut self, group: &GroupId, runs: &mut RunEdits<'_>) {
        let Some((last, _)) = self.unindexed.last() else {
            return;
        };
        self.covered = last.0;
        for chunk in self.unindexed.chunks(RUN_LEN) {
            if let Some((first, _)) = chunk.first() {
                runs.runs.insert(
                    run_key(group, *first),
                    Some(Run {
                        covered: self.covered,
                        records: chunk.to_vec(),
                    }),
                );
            }
        }
        self.unindexed.clear();
    }
}

/// A batch's changes to the index; see [`IdIndex::plan`].
pub(super) struct Plan<'a> {
    index: &'a IdIndex,
    changes: HashMap<GroupId, Change>,
    runs: RunEdits<'a>,
    /// The messages the batch's deletions remove, found by id.
    pub(super) deleted: Vec<(GroupId, Seq)>,
    /// Ids expired in groups that were not in memory: taken out of the maps if a group has been
    /// loaded meanwhile (from the disk as it was before this batch).
    expired_cold: Vec<(GroupId, Seq, MessageId)>,
}

/// The runs a batch writes, changes (`Some`) or removes (`None`), by key, as they will be.
struct RunEdits<'a> {
    tree: &'a sled::Tree,
    runs: BTreeMap<Vec<u8>, Option<Run>>,
}

impl Plan<'_> {
    /// The writes to the runs tree.
    pub(super) fn run_writes(&self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        self.runs
            .runs
            .iter()
            .map(|(key, run)| (key.clone(), run.as_ref().map(Run::encode)))
            .collect()
    }

    /// The batch has committed: the maps take its changes, and its groups are unpinned.
    pub(super) fn committed(mut self) {
        let mut counted = Vec::new();
        let changes = std::mem::take(&mut self.changes);
        // Every group of the batch is unpinned below, also one whose cell could not be updated.
        let pinned: Vec<GroupId> = changes.keys().copied().collect();
        for (group, change) in changes {
            let Ok(mut ids) = change.cell.lock() else {
                // Poisoned: every lookup of the group fails from now on (see `poisoned`).
                continue;
            };
            let Some(ids) = ids.as_mut() else {
                continue;
            };
            for (id, seq) in change.ops {
                match seq {
                    Some(seq) => ids.ids.insert(id, seq),
                    None => ids.ids.remove(&id),
                };
            }
            ids.unindexed = change.unindexed;
            ids.covered = change.covered;
            counted.push((group, change.cell.clone(), ids.ids.len()));
        }
        for (group, seq, id) in std::mem::take(&mut self.expired_cold) {
            let cell = match self.index.state.lock() {
                Ok(state) => state.slots.get(&group).map(|slot| slot.cell.clone()),
                Err(_) => return,
            };
            let Some(cell) = cell else {
                continue;
            };
            let Ok(mut ids) = cell.lock() else {
                continue;
            };
            if let Some(ids) = ids.as_mut()
                && ids.ids.get(&id) == Some(&seq)
            {
                ids.ids.remove(&id);
                ids.unindexed.retain(|(_, i)| *i != id);
                counted.push((group, cell.clone(), ids.ids.len()));
            }
        }
        let Ok(mut state) = self.index.state.lock() else {
            return;
        };
        for (group, cell, entries) in counted {
            state.count(&group, &cell, entries);
        }
        for group in pinned {
            state.set_pinned(&group, false);
        }
        state.evict(self.index.capacity, None);
    }
}

impl RunEdits<'_> {
    /// The run under `key` as this batch leaves it so far, if there is one.
    fn get(&self, key: &[u8]) -> Result<Option<Run>, StorageError> {
        if let Some(run) = self.runs.get(key) {
            return Ok(run.clone());
        }
        match self.tree.get(key).map_err(backend)? {
            // A damaged run holds nothing this batch can find (its ids were read back from
            // their messages when the group was loaded).
            Some(value) => Ok(Run::decode(&value).ok()),
            None => Ok(None),
        }
    }

    /// Adds (`seq`, `id`) to the run starting at `seq`, made if there is none.
    fn add(
        &mut self,
        group: &GroupId,
        seq: Seq,
        id: MessageId,
        covered: u64,
    ) -> Result<(), StorageError> {
        let key = run_key(group, seq);
        let mut run = self.get(&key)?.unwrap_or(Run {
            covered,
            records: Vec::new(),
        });
        run.records.push((seq, id));
        self.runs.insert(key, Some(run));
        Ok(())
    }

    /// The key of `group`'s last run starting at or before `seq` (on disk or in this batch):
    /// the one that holds `seq` if the group's messages were stored in seq order.
    fn nearest(&self, group: &GroupId, seq: Seq) -> Result<Option<Vec<u8>>, StorageError> {
        let start = run_key(group, Seq(0));
        let end = run_key(group, seq);
        let on_disk = self
            .tree
            .range(start.clone()..=end.clone())
            .keys()
            .next_back()
            .transpose()
            .map_err(backend)?
            .map(|key| key.to_vec());
        let in_batch = self
            .runs
            .range(start..=end)
            .next_back()
            .map(|(key, _)| key.clone());
        Ok(on_disk.into_iter().chain(in_batch).max())
    }

    /// Removes an expired (`seq`, `id`) from the run that holds it, if one does (an id of the
    /// newest messages is in none). The group is not loaded, so the highest `covered` its runs
    /// keep is read from its last run: a run left empty is removed if another covers as far.
    fn remove_expired(
        &mut self,
        group: &GroupId,
        seq: Seq,
        id: MessageId,
    ) -> Result<(), StorageError> {
        let Some(key) = self.nearest(group, seq)? else {
            return Ok(());
        };
        let covered = match self.nearest(group, Seq(u64::MAX))? {
            Some(last) if last != key => self.get(&last)?.map_or(0, |run| run.covered),
            // This is the last run, or the last one is damaged or gone: kept if emptied.
            _ => 0,
        };
        self.remove_in(key, seq, id, covered)?;
        Ok(())
    }

    /// Removes (`seq`, `id`) from the run holding it: the run starting at or before `seq`
    /// (runs are written in seq order), or, should that one not hold it, any of the group's.
    /// A run left empty is removed unless it holds the group's highest `covered`.
    fn remove(
        &mut self,
        group: &GroupId,
        seq: Seq,
        id: MessageId,
        covered: u64,
    ) -> Result<(), StorageError> {
        let nearest = self.nearest(group, seq)?;
        if let Some(nearest) = nearest
            && self.remove_in(nearest, seq, id, covered)?
        {
            return Ok(());
        }
        let mut all: Vec<Vec<u8>> = self
            .tree
            .scan_prefix(group.as_bytes())
            .keys()
            .map(|key| key.map(|key| key.to_vec()).map_err(backend))
            .collect::<Result<_, _>>()?;
        all.extend(
            self.runs
                .keys()
                .filter(|key| key.starts_with(group.as_bytes()))
                .cloned(),
        );
        for key in all {
            if self.remove_in(key, seq, id, covered)? {
                return Ok(());
            }
        }
        // In no run: the map had it, so a run was damaged; the message is deleted anyway.
        damaged(
            "a deleted message's id was in no run of its group; the run",
            &StorageError::Corrupt {
                tree: TREE,
                reason: "missing id".into(),
            },
        );
        Ok(())
    }

    /// Removes (`seq`, `id`) from the run under `key` if it holds it; only a run it changes
    /// is written.
    fn remove_in(
        &mut self,
        key: Vec<u8>,
        seq: Seq,
        id: MessageId,
        covered: u64,
    ) -> Result<bool, StorageError> {
        let Some(mut run) = self.get(&key)? else {
            return Ok(false);
        };
        let before = run.records.len();
        run.records.retain(|record| *record != (seq, id));
        if run.records.len() == before {
            return Ok(false);
        }
        let keep = !run.records.is_empty() || run.covered >= covered;
        self.runs.insert(key, keep.then_some(run));
        Ok(true)
    }
}

impl Drop for Plan<'_> {
    /// A batch not written (refused, or failed): its groups are unpinned, unchanged.
    fn drop(&mut self) {
        if self.changes.is_empty() {
            return;
        }
        if let Ok(mut state) = self.index.state.lock() {
            for group in self.changes.keys() {
                state.set_pinned(group, false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_reads_back_as_written_and_a_damaged_one_is_corrupt() {
        let run = Run {
            covered: 300,
            records: vec![
                (Seq(45), MessageId([1; 16])),
                (Seq(300), MessageId([2; 16])),
            ],
        };
        let bytes = run.encode();
        assert_eq!(Run::decode(&bytes).unwrap(), run);
        for damaged in [&bytes[..7], &bytes[..bytes.len() - 1], &bytes[..20]] {
            assert!(matches!(
                Run::decode(damaged),
                Err(StorageError::Corrupt { .. })
            ));
        }
        let empty = Run {
            covered: 7,
            records: Vec::new(),
        };
        assert_eq!(Run::decode(&empty.encode()).unwrap(), empty);
    }
}
