//! The server's view of every group: the verified group-log state it enforces, the next message
//! sequence number, and the per-member bookkeeping for slow mode and epoch grace.
//!
//! Each group is behind its own async mutex. Posts hold it only to check and to enqueue their
//! write (so the write queue holds a group's messages in sequence order); ops hold it until their
//! write is durable (ops are rare and must be applied strictly one after another).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;
use tokio::sync::Mutex;

use confide_protocol::group_log::{GroupState, LogError, SignedOp};
use confide_protocol::{DeviceId, EpochRef, GroupId, MessageId, RequestId, Seq, UserId};

use crate::hub::ConnHandle;

use crate::storage::{Storage, StorageError};

/// Ops read per storage call while loading a log.
const LOAD_PAGE: usize = 1024;

/// One group's live state.
pub struct GroupEntry {
    /// The replayed, verified group log.
    pub state: GroupState,
    /// The sequence number the next accepted message gets.
    pub next_seq: u64,
    /// Every device of every current member: who receives the group's traffic.
    pub devices: Arc<Vec<DeviceId>>,
    /// When each member last posted, for slow mode.
    pub last_post: LastPosts,
    /// The seq of the last op in storage: the verified head, unless storage holds ops beyond it
    /// that do not verify (which sync still serves, for clients to refuse).
    pub stored_head: u64,
    /// The epoch before the current one and when the current one began, for the grace period
    /// (`confide_protocol::policy::accepts_post_epoch`); `None` when it gets no grace.
    pub previous_epoch: Option<(EpochRef, Instant)>,
    /// When, on the server's clock, the current epoch began here: when the op that started it
    /// was applied, or when the group was loaded (the time is not stored, so after a restart
    /// the interval starts again). A `rekey` sooner than `min_rekey_interval` after it is
    /// refused (PROTOCOL.md §10.1), whatever time the op claims.
    pub epoch_began: Instant,
    /// Posts queued for writing and not yet durable. Shared with the writer's completions,
    /// which run on the writer thread and must not wait for the group's lock.
    pub in_flight: InFlightPosts,
    /// Set (by a writer completion) when a post was not stored: with storage that appends only
    /// the next seq (PostgreSQL), `next_seq` may now be ahead of the stored messages, so it is
    /// read again from storage once this node has no post of the group in flight.
    pub seq_stale: Arc<AtomicBool>,
    /// Set (by a writer completion) when another node sharing the database stored a message
    /// at a seq this node had handed out: `next_seq` may be behind, and moves past the stored
    /// messages at the next post ([`crate::cluster`]).
    pub seq_behind: Arc<AtomicBool>,
    /// The highest message seq up to which this node has delivered the group's messages to its
    /// own connections, or knows there is nothing to deliver; messages stored after it (by
    /// other nodes) are read and delivered by [`crate::cluster`]. Only used with a cluster.
    pub caught_up: Arc<AtomicU64>,
}

/// What [`GroupEntry::catch_up_ops`] read: the ops with their seqs, and the devices of the
/// group before them.
pub type CaughtUpOps = (Vec<(u64, SignedOp)>, Arc<Vec<DeviceId>>);

/// A post queued for writing but not yet durable, and the requests that posted the same
/// envelope meanwhile: they get its outcome when it has one, so a retry racing the first
/// attempt is neither stored twice nor acknowledged before the first is durable.
pub struct InFlight {
    /// The seq the post will have.
    pub seq: Seq,
    /// Later posts of the same envelope: the connection and the request to answer.
    pub waiting: Vec<(ConnHandle, RequestId)>,
}

/// One group's posts in flight, by message id.
#[derive(Clone, Default)]
pub struct InFlightPosts(Arc<std::sync::Mutex<HashMap<MessageId, InFlight>>>);

impl InFlightPosts {
    /// Runs `f` on the map. The lock is never held across an await or while anything can
    /// panic, so a poisoned lock still holds consistent data and is used as is.
    pub fn with<T>(&self, f: impl FnOnce(&mut HashMap<MessageId, InFlight>) -> T) -> T {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut map)
    }
}

/// When each member of a group last posted, for slow mode. A post is recorded when it is
/// accepted (so that posts pipelined behind it wait their turn) and the record is undone if the
/// post is not stored (so that a client retrying after `storage` is not refused `slow_mode` for
/// a message nobody received). Shared with the writer's completions, which do the undoing and
/// must not wait for the group's lock.
#[derive(Clone, Default)]
pub struct LastPosts(Arc<std::sync::Mutex<HashMap<UserId, Instant>>>);

/// A post recorded in [`LastPosts`], to undo if it is not stored.
pub struct PostMark {
    posts: LastPosts,
    user: UserId,
    at: Instant,
    previous: Option<Instant>,
}

impl LastPosts {
    /// Runs `f` on the map. The lock is never held across an await or while anything can
    /// panic, so a poisoned lock still holds consistent data and is used as is.
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<UserId, Instant>) -> T) -> T {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut map)
    }

    /// When `user` last posted (as far as slow mode knows).
    pub fn get(&self, user: &UserId) -> Option<Instant> {
        self.with(|map| map.get(user).copied())
    }

    /// Records a post by `user` now.
    pub fn record(&self, user: UserId) -> PostMark {
        let at = Instant::now();
        let previous = self.with(|map| map.insert(user, at));
        PostMark {
            posts: self.clone(),
            user,
            at,
            previous,
        }
    }
}

impl PostMark {
    /// The post was not stored: slow mode counts from the user's post before it again (unless
    /// a later post has been recorded since).
    pub fn undo(self) {
        self.posts.with(|map| {
            if map.get(&self.user) == Some(&self.at) {
                match self.previous {
                    Some(previous) => map.insert(self.user, previous),
                    None => map.remove(&self.user),
                };
            }
        });
    }
}

impl GroupEntry {
    /// Wraps a verified state.
    pub fn new(state: GroupState, next_seq: u64) -> Self {
        let devices = Arc::new(device_list(&state));
        let stored_head = state.seq();
        GroupEntry {
            state,
            next_seq,
            devices,
            last_post: LastPosts::default(),
            previous_epoch: None,
            epoch_began: Instant::now(),
            stored_head,
            in_flight: InFlightPosts::default(),
            seq_stale: Arc::new(AtomicBool::new(false)),
            seq_behind: Arc::new(AtomicBool::new(false)),
            caught_up: Arc::new(AtomicU64::new(next_seq.saturating_sub(1))),
        }
    }

    /// Reads the ops another node appended after the stored head and applies each that
    /// verifies, as [`Groups::load`] does: returns the ops read, with their seqs, and the
    /// device set before them (for delivering them to removed devices too). Used with a
    /// cluster ([`crate::cluster`]); on one node nothing is ever stored behind its back.
    pub fn catch_up_ops(&mut self, storage: &dyn Storage) -> Result<CaughtUpOps, StorageError> {
        let group = self.state.group();
        let before = self.devices.clone();
        let mut read = Vec::new();
        loop {
            let from = self.stored_head.saturating_add(1);
            let page = storage.ops(&group, from, LOAD_PAGE)?;
            let done = page.len() < LOAD_PAGE;
            for (seq, op) in (from..).zip(page) {
                // Only the op right after the verified head can extend it; after one that
                // does not verify, the rest is only served (clients refuse it themselves).
                if self.stored_head == self.state.seq() {
                    let mut next = self.state.clone();
                    match next.apply(&op) {
                        Ok(applied) => self.replace_state(next, applied.grants_epoch_grace()),
                        Err(e) => {
                            tracing::error!(%group, op_seq = seq, error = %e,
                                "an op another node stored does not verify; enforcing only the valid prefix");
                        }
                    }
                }
                self.stored_head = seq;
                read.push((seq, op));
            }
            if done {
                break;
            }
        }
        Ok((read, before))
    }

    /// Replaces the state after an op was applied and stored. `grace` says whether posts in
    /// the epoch that just ended may still be accepted for a while
    /// ([`confide_protocol::OpBody::grants_epoch_grace`]): yes after someone joined or a
    /// `rekey` (messages were in flight, and nobody left), never after someone was removed or
    /// left, so nothing the removed member could read is accepted after their removal.
    pub fn replace_state(&mut self, state: GroupState, grace: bool) {
        if state.epoch() != self.state.epoch() {
            let previous = self.state.epoch_ref();
            let now = Instant::now();
            self.previous_epoch = grace.then_some((previous, now));
            self.epoch_began = now;
        }
        self.devices = Arc::new(device_list(&state));
        self.stored_head = self.stored_head.max(state.seq());
        self.state = state;
    }

    /// Reads `next_seq` again from storage when a failed post may have left it wrong: past the
    /// stored messages after another node stored first (never backwards: this node's posts in
    /// flight keep their seqs, each stored or refused on its own), and exactly after them after
    /// any other failure, once none of this node's posts to the group is in flight (their seqs
    /// came from the old value). A no-op until a post fails.
    pub fn refresh_next_seq(&mut self, storage: &dyn Storage) -> Result<(), StorageError> {
        let group = self.state.group();
        if self.seq_behind.swap(false, Ordering::AcqRel) {
            let after = storage.last_seq(&group)?.0.saturating_add(1);
            self.next_seq = self.next_seq.max(after);
        }
        if self.seq_stale.load(Ordering::Acquire) && self.in_flight.with(|posts| posts.is_empty()) {
            self.next_seq = storage.last_seq(&group)?.0.saturating_add(1);
            self.seq_stale.store(false, Ordering::Release);
        }
        Ok(())
    }
}

fn device_list(state: &GroupState) -> Vec<DeviceId> {
    state
        .current_devices()
        .into_iter()
        .map(|k| k.device)
        .collect()
}

/// Every group, and which groups each device belongs to.
#[derive(Default)]
pub struct Groups {
    map: RwLock<HashMap<GroupId, Arc<Mutex<GroupEntry>>>>,
    by_device: RwLock<HashMap<DeviceId, BTreeSet<GroupId>>>,
    /// How many groups each device has created (counted from the genesis ops).
    created_by: std::sync::Mutex<HashMap<DeviceId, usize>>,
    /// Group ids whose genesis op is being written, so two creations cannot race.
    creating: std::sync::Mutex<std::collections::HashSet<GroupId>>,
}

/// Holds a group id reserved for creation; releases it when dropped.
pub struct Reservation<'a> {
    groups: &'a Groups,
    group: GroupId,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if let Ok(mut creating) = self.groups.creating.lock() {
            creating.remove(&self.group);
        }
    }
}

impl Groups {
    /// Loads and verifies every stored group log. A log that fails verification (storage
    /// tampered with, or a bug) is loaded up to its last valid op and reported loudly: the
    /// server enforces only what verifies, and clients verify independently.
    pub fn load(storage: &dyn Storage) -> Result<Groups, StorageError> {
        let groups = Groups::default();
        for group in storage.groups()? {
            if let Some(read) = groups.read_group(storage, group)? {
                groups.insert_read(read);
            }
        }
        Ok(groups)
    }

    /// Reads and verifies one stored group log, with the device that created it (counted by
    /// the caller once the entry is in: two tasks may read one group at once), or `None` if the
    /// group has no genesis op.
    fn read_group(
        &self,
        storage: &dyn Storage,
        group: GroupId,
    ) -> Result<Option<(GroupEntry, Option<DeviceId>)>, StorageError> {
        let mut creator = None;
        let mut state: Option<GroupState> = None;
        let mut broken = false;
        let mut from = 0u64;
        loop {
            let page = storage.ops(&group, from, LOAD_PAGE)?;
            let done = page.len() < LOAD_PAGE;
            for op in &page {
                if from == 0
                    && let Ok(genesis) = op.parse_unverified()
                {
                    creator = Some(genesis.author);
                }
                if !broken {
                    let result = match state.as_mut() {
                        None => GroupState::from_genesis(op).map(|s| state = Some(s)),
                        Some(s) => s.apply(op).map(|_| ()),
                    };
                    if let Err(e) = result {
                        tracing::error!(%group, op_seq = from, error = %e,
                            "stored group log does not verify; enforcing only its valid prefix");
                        broken = true;
                    }
                }
                from += 1;
            }
            if done {
                break;
            }
        }
        let Some(state) = state else {
            return Ok(None);
        };
        let next_seq = storage.last_seq(&group)?.0 + 1;
        let mut entry = GroupEntry::new(state, next_seq);
        // Sync serves what is stored, verified or not: clients verify every op themselves
        // and must see (and refuse) anything that was slipped in.
        entry.stored_head = from.saturating_sub(1);
        Ok(Some((entry, creator)))
    }

    /// Adds a group read from storage and counts its creator, unless another task added it
    /// first.
    fn insert_read(&self, (entry, creator): (GroupEntry, Option<DeviceId>)) {
        if self.insert(entry)
            && let Some(creator) = creator
        {
            self.note_created(creator);
        }
    }

    /// The group's entry, read from storage if this node does not know it yet: with a cluster,
    /// another node may have created it ([`crate::cluster`]).
    pub fn get_or_load(
        &self,
        storage: &dyn Storage,
        group: &GroupId,
    ) -> Result<Option<Arc<Mutex<GroupEntry>>>, StorageError> {
        if let Some(entry) = self.get(group) {
            return Ok(Some(entry));
        }
        if let Some(read) = self.read_group(storage, *group)? {
            // Another task may have loaded it meanwhile: either copy is the stored log.
            self.insert_read(read);
        }
        Ok(self.get(group))
    }

    /// Counts a group created by `device`.
    pub fn note_created(&self, device: DeviceId) {
        if let Ok(mut created) = self.created_by.lock() {
            *created.entry(device).or_default() += 1;
        }
    }

    /// How many groups `device` has created.
    pub fn created_by(&self, device: &DeviceId) -> usize {
        self.created_by
            .lock()
            .map(|m| m.get(device).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Reserves `group` for creation, unless it exists or is being created.
    pub fn reserve(&self, group: GroupId) -> Option<Reservation<'_>> {
        let mut creating = self.creating.lock().ok()?;
        if self.get(&group).is_some() || !creating.insert(group) {
            return None;
        }
        Some(Reservation {
            groups: self,
            group,
        })
    }

    /// The group's entry.
    pub fn get(&self, group: &GroupId) -> Option<Arc<Mutex<GroupEntry>>> {
        self.map.read().ok()?.get(group).cloned()
    }

    /// Adds a new group. Returns false if it already exists.
    pub fn insert(&self, entry: GroupEntry) -> bool {
        let group = entry.state.group();

        let devices = entry.devices.clone();
        let Ok(mut map) = self.map.write() else {
            return false;
        };
        if map.contains_key(&group) {
            return false;
        }
        map.insert(group, Arc::new(Mutex::new(entry)));
        drop(map);
        self.update_devices(group, &[], &devices);
        true
    }

    /// Updates the device → groups index after a membership change.
    pub fn update_devices(&self, group: GroupId, before: &[DeviceId], after: &[DeviceId]) {
        let Ok(mut index) = self.by_device.write() else {
            return;
        };
        for d in before {
            if !after.contains(d)
                && let Some(set) = index.get_mut(d)
            {
                set.remove(&group);
            }
        }
        for d in after {
            index.entry(*d).or_default().insert(group);
        }
    }

    /// Every group.
    pub fn all(&self) -> Vec<(GroupId, Arc<Mutex<GroupEntry>>)> {
        self.map
            .read()
            .map(|m| m.iter().map(|(g, e)| (*g, e.clone())).collect())
            .unwrap_or_default()
    }

    /// The groups `device` currently belongs to.
    pub fn of_device(&self, device: &DeviceId) -> Vec<GroupId> {
        self.by_device
            .read()
            .ok()
            .and_then(|i| i.get(device).map(|s| s.iter().copied().collect()))
            .unwrap_or_default()
    }
}

/// Verifies a genesis op into a new entry.
pub fn new_group(genesis: &SignedOp) -> Result<GroupEntry, LogError> {
    Ok(GroupEntry::new(GroupState::from_genesis(genesis)?, 1))
}
