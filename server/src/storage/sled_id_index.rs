//! The sled backend's index from message id to seq: the seq a post was stored under (a retry is
//! answered with it instead of being stored twice), and the message a deletion by id removes.
//!
//! Why not a tree keyed by id, as before: each post inserted its id into a tree of random keys
//! in the transaction that stored it, and that one insert was about 40 % of the server's CPU
//! per durably acknowledged post (BENCHMARKS.md, issue 20's sixth round). Instead:
//!
//! - in memory, per group, a map from id to seq, loaded on the group's first lookup and
//!   dropped, least recently used first, when the maps hold more than a configurable number of
//!   ids ([`DEFAULT_IDS_IN_MEMORY`]);
//! - on disk, tree `message_id_runs`: key group (16) ‖ seq of the run's first id (8), value
//!   `covered` (8) ‖ n × (seq (8) ‖ message id (16)). A group's ids are written [`RUN_LEN`] at a
//!   time, in the transaction that stores the last message of the run; `covered` is the highest
//!   seq that run and the runs before it cover;
//! - the messages after the highest `covered` of a group are in no run yet: loading a group
//!   reads them from the `messages` tree and computes their ids. They are stored with their
//!   message, so a crash loses none of them.
//!
//! A deletion removes its id from the run holding it, in the transaction that deletes the
//! message. An emptied run stays: its `covered` still says where the group's unindexed
//! messages start.
//!
//! Consistency: only the writer (one thread, [`super::Storage::commit`]) changes a group's runs
//! and its unindexed tail. It pins the groups of a batch while it writes, so that none is
//! dropped and reloaded from a half-written state, and changes the maps only after its
//! transaction has committed; lookups only read them. A post is not looked up here while it is
//! being written (the server keeps it in flight until durable), so the moment between the
//! commit and the maps' update is not seen.
//!
//! An older server's `message_ids` tree is dropped when the database is opened: a group with no
//! runs is loaded from its messages, and its first post writes them all as runs.

use confide_protocol::{GroupId, MessageId, Seq};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use super::StorageError;
use super::sled_record;

/// Ids written to disk together, per group. A group's lookups after a restart compute the ids
/// of at most this many messages (fewer than this are in no run); larger runs mean fewer sled
/// writes per post.
pub const RUN_LEN: usize = 256;

/// Ids kept in memory across all groups, unless the config file says otherwise
/// (`storage_ids_in_memory`): about 50 bytes each, so about 100 MiB at most. A group whose
/// messages alone are more than this is still loaded whole, with all others dropped.
pub const DEFAULT_IDS_IN_MEMORY: usize = 2 * 1024 * 1024;

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

fn run_key(group: &GroupId, first: Seq) -> Vec<u8> {
    let mut key = Vec::with_capacity(24);
    key.extend_from_slice(group.as_bytes());
    key.extend_from_slice(&first.0.to_be_bytes());
    key
}

fn backend(e: impl std::fmt::Display) -> StorageError {
    StorageError::Backend(e.to_string())
}

/// One group's ids in memory.
struct GroupIds {
    ids: HashMap<MessageId, Seq>,
    /// Stored messages in no run yet, in seq order.
    unindexed: Vec<(Seq, MessageId)>,
    /// The highest seq the group's runs cover.
    covered: u64,
    /// When it was last used, on [`State::clock`]: the least recently used is dropped first.
    last_used: u64,
    /// A batch is being written for it: it may not be dropped.
    pinned: bool,
}

#[derive(Default)]
struct State {
    groups: HashMap<GroupId, GroupIds>,
    /// Ids in all of `groups`.
    entries: usize,
    clock: u64,
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
}

/// The index (see the module documentation).
pub(super) struct IdIndex {
    runs: sled::Tree,
    messages: sled::Tree,
    capacity: usize,
    state: Mutex<State>,
}

impl IdIndex {
    /// Opens the index of `db`, whose messages are in `messages`, dropping an older server's.
    pub(super) fn open(db: &sled::Db, messages: sled::Tree) -> Result<Self, StorageError> {
        if db
            .tree_names()
            .iter()
            .any(|name| name == OLD_TREE.as_bytes())
        {
            db.drop_tree(OLD_TREE).map_err(backend)?;
        }
        Ok(IdIndex {
            runs: db.open_tree(TREE).map_err(backend)?,
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

    fn lock(&self) -> Result<MutexGuard<'_, State>, StorageError> {
        // Nothing panics while holding the lock; if something did, its maps may be half
        // changed, and no answer from them can be trusted.
        self.state
            .lock()
            .map_err(|_| StorageError::NeedsRestart("the message id index failed".into()))
    }

    /// The seq `id` is stored under in `group`, if it is stored.
    pub(super) fn seq(&self, group: &GroupId, id: &MessageId) -> Result<Option<Seq>, StorageError> {
        let mut state = self.lock()?;
        Ok(self.loaded(&mut state, group)?.ids.get(id).copied())
    }

    /// `group`'s ids, loaded from disk if they are not in memory.
    fn loaded<'s>(
        &self,
        state: &'s mut State,
        group: &GroupId,
    ) -> Result<&'s mut GroupIds, StorageError> {
        state.clock += 1;
        let now = state.clock;
        if !state.groups.contains_key(group) {
            let ids = self.load(group)?;
            state.entries += ids.ids.len();
            state.groups.insert(*group, ids);
            self.evict(state, Some(group));
        }
        let ids = state.groups.get_mut(group).ok_or_else(|| {
            // `evict` never drops the group it is asked to keep.
            StorageError::Backend("a group's message ids were dropped while loading".into())
        })?;
        ids.last_used = now;
        Ok(ids)
    }

    /// Reads a group's runs, then its messages after them.
    fn load(&self, group: &GroupId) -> Result<GroupIds, StorageError> {
        let mut ids = HashMap::new();
        let mut covered = 0;
        for entry in self.runs.scan_prefix(group.as_bytes()) {
            let (_, value) = entry.map_err(backend)?;
            let run = Run::decode(&value)?;
            covered = covered.max(run.covered);
            ids.extend(run.records.into_iter().map(|(seq, id)| (id, seq)));
        }
        let mut unindexed = Vec::new();
        if let Some(first) = covered.checked_add(1) {
            let start = run_key(group, Seq(first));
            let end = run_key(group, Seq(u64::MAX));
            for entry in self.messages.range(start..=end) {
                let (_, value) = entry.map_err(backend)?;
                let message = sled_record::decode_message(&value)?;
                let id = message.envelope.message_id();
                ids.insert(id, message.seq);
                unindexed.push((message.seq, id));
            }
        }
        Ok(GroupIds {
            ids,
            unindexed,
            covered,
            last_used: 0,
            pinned: false,
        })
    }

    /// Drops the least recently used groups (never `keep`, nor a pinned one) while the maps
    /// hold more than the capacity.
    fn evict(&self, state: &mut State, keep: Option<&GroupId>) {
        while state.entries > self.capacity {
            let oldest = state
                .groups
                .iter()
                .filter(|(group, ids)| !ids.pinned && Some(*group) != keep)
                .min_by_key(|(_, ids)| ids.last_used)
                .map(|(group, _)| *group);
            let Some(group) = oldest else { break };
            if let Some(ids) = state.groups.remove(&group) {
                state.entries = state.entries.saturating_sub(ids.ids.len());
            }
        }
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
        };
        if writes.is_empty() {
            return Ok(plan);
        }
        let mut state = self.lock()?;
        for write in writes {
            let group = match write {
                IdWrite::Stored { group, .. } | IdWrite::Deleted { group, .. } => group,
            };
            let ids = self.loaded(&mut state, group)?;
            let change = plan.changes.entry(*group).or_insert_with(|| {
                ids.pinned = true;
                Change {
                    ops: Vec::new(),
                    unindexed: ids.unindexed.clone(),
                    covered: ids.covered,
                }
            });
            match *write {
                IdWrite::Stored { group, seq, id } => {
                    change.ops.push((id, Some(seq)));
                    let in_order = seq.0 > change.covered
                        && change.unindexed.last().is_none_or(|(last, _)| *last < seq);
                    if in_order {
                        change.unindexed.push((seq, id));
                        if change.unindexed.len() >= RUN_LEN {
                            change.write_runs(&group, &mut plan.runs.runs);
                        }
                    } else {
                        // The writer stores each group's messages in seq order, so this does
                        // not happen; if it did, a run of its own keeps the id (the unindexed
                        // tail must stay above `covered`, or a restart would miss it).
                        let run = plan.runs.run_at(&group, seq, change.covered)?;
                        run.records.push((seq, id));
                    }
                }
                IdWrite::Deleted { group, id } => {
                    let Some(seq) = change.current(&id, &ids.ids) else {
                        continue;
                    };
                    change.ops.push((id, None));
                    plan.deleted.push((group, seq));
                    if let Some(at) = change.unindexed.iter().position(|(_, i)| *i == id) {
                        change.unindexed.remove(at);
                    } else {
                        plan.runs.remove_from_run(&group, seq, id)?;
                    }
                }
            }
        }
        Ok(plan)
    }
}

/// One group's changes in a batch.
struct Change {
    /// Ids stored (`Some`) and deleted (`None`), in batch order.
    ops: Vec<(MessageId, Option<Seq>)>,
    /// The unindexed tail after the batch.
    unindexed: Vec<(Seq, MessageId)>,
    /// The highest seq covered by runs after the batch.
    covered: u64,
}

impl Change {
    /// Where `id` is stored after this batch's changes so far.
    fn current(&self, id: &MessageId, before: &HashMap<MessageId, Seq>) -> Option<Seq> {
        match self.ops.iter().rev().find(|(i, _)| i == id) {
            Some((_, seq)) => *seq,
            None => before.get(id).copied(),
        }
    }

    /// Moves the unindexed tail into runs of at most [`RUN_LEN`].
    fn write_runs(&mut self, group: &GroupId, runs: &mut BTreeMap<Vec<u8>, Run>) {
        let Some((last, _)) = self.unindexed.last() else {
            return;
        };
        self.covered = last.0;
        for chunk in self.unindexed.chunks(RUN_LEN) {
            if let Some((first, _)) = chunk.first() {
                runs.insert(
                    run_key(group, *first),
                    Run {
                        covered: self.covered,
                        records: chunk.to_vec(),
                    },
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
}

/// The runs a batch writes or changes, by key, as they will be.
struct RunEdits<'a> {
    tree: &'a sled::Tree,
    runs: BTreeMap<Vec<u8>, Run>,
}

impl Plan<'_> {
    /// The writes to the runs tree.
    pub(super) fn run_writes(&self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        self.runs
            .runs
            .iter()
            .map(|(key, run)| (key.clone(), Some(run.encode())))
            .collect()
    }

    /// The batch has committed: the maps take its changes, and its groups are unpinned.
    pub(super) fn committed(mut self) {
        let changes = std::mem::take(&mut self.changes);
        let Ok(mut state) = self.index.state.lock() else {
            // Poisoned: every lookup fails from now on (see `IdIndex::lock`).
            return;
        };
        let state = &mut *state;
        for (group, change) in changes {
            let Some(ids) = state.groups.get_mut(&group) else {
                continue;
            };
            for (id, seq) in change.ops {
                let had = match seq {
                    Some(seq) => ids.ids.insert(id, seq).is_some(),
                    None => ids.ids.remove(&id).is_some(),
                };
                match (seq.is_some(), had) {
                    (true, false) => state.entries += 1,
                    (false, true) => state.entries = state.entries.saturating_sub(1),
                    _ => {}
                }
            }
            ids.unindexed = change.unindexed;
            ids.covered = change.covered;
            ids.pinned = false;
        }
        self.index.evict(state, None);
    }
}

impl RunEdits<'_> {
    /// The run stored (or written by this batch) under `group` and `seq`, or a new one.
    fn run_at(
        &mut self,
        group: &GroupId,
        seq: Seq,
        covered: u64,
    ) -> Result<&mut Run, StorageError> {
        let key = run_key(group, seq);
        if !self.runs.contains_key(&key) {
            let run = match self.tree.get(&key).map_err(backend)? {
                Some(value) => Run::decode(&value)?,
                None => Run {
                    covered,
                    records: Vec::new(),
                },
            };
            self.runs.insert(key.clone(), run);
        }
        self.runs
            .get_mut(&key)
            .ok_or_else(|| StorageError::Backend("a run vanished from its batch".into()))
    }

    /// Removes (`seq`, `id`) from the run holding it: the run starting at or before `seq`
    /// (runs are written in seq order), or, should that one not hold it, any of the group's.
    fn remove_from_run(
        &mut self,
        group: &GroupId,
        seq: Seq,
        id: MessageId,
    ) -> Result<(), StorageError> {
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
        let mut candidates: Vec<Vec<u8>> = on_disk.into_iter().chain(in_batch).collect();
        candidates.sort();
        if let Some(nearest) = candidates.pop()
            && self.remove_in(&nearest, seq, id)?
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
            if self.remove_in(&key, seq, id)? {
                return Ok(());
            }
        }
        // In no run: the map had it, so the runs were damaged; the message is deleted anyway.
        tracing::warn!("a deleted message's id was in no run of its group");
        Ok(())
    }

    /// Removes (`seq`, `id`) from the run under `key` if it holds it.
    fn remove_in(&mut self, key: &[u8], seq: Seq, id: MessageId) -> Result<bool, StorageError> {
        if !self.runs.contains_key(key) {
            let Some(value) = self.tree.get(key).map_err(backend)? else {
                return Ok(false);
            };
            self.runs.insert(key.to_vec(), Run::decode(&value)?);
        }
        let Some(run) = self.runs.get_mut(key) else {
            return Ok(false);
        };
        let before = run.records.len();
        run.records.retain(|record| *record != (seq, id));
        Ok(run.records.len() != before)
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
                if let Some(ids) = state.groups.get_mut(group) {
                    ids.pinned = false;
                }
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
