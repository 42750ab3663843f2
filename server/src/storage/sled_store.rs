//! The embedded sled backend.
//!
//! Trees and keys (all integers big-endian, so that key order is numeric order):
//!
//! | tree | key | value |
//! |---|---|---|
//! | `devices` | device id (32) | JSON [`DeviceRecord`] |
//! | `user_devices` | user id (16) ‖ device id (32) | empty |
//! | `ops` | group (16) ‖ op seq (8) | JSON `SignedOp` |
//! | `messages` | group (16) ‖ seq (8) | `StoredMessage`: binary ([`super::sled_record`]), or JSON if an older server wrote it |
//! | `message_id_runs` | group (16) ‖ seq of the run's first id (8) | covered seq (8) ‖ n × (seq (8) ‖ message id (16)): the index from message id to seq, written [`super::sled_id_index::RUN_LEN`] ids at a time and kept in memory ([`super::sled_id_index`]) |
//! | `last_seq` | group (16) | highest seq ever used (8), kept when messages are deleted |
//! | `inbox` | device (32) ‖ inbox id (8) | JSON `InboxItem` |
//! | `inbox_shares` | device (32) ‖ share (32) ‖ inbox id (8) | empty: the inbox items counting towards each share ([`super::inbox_shares`]: the sender, and all join requests together) |
//! | `inbox_share_of` | device (32) ‖ inbox id (8) | the item's shares (32 each), so that an acknowledgement finds its `inbox_shares` entries without reading the item |
//! | `meta` | `inbox_id_high` | the highest inbox id ever stored (8), written in the same transaction as the items |
//! | `device_lists` | user id (16) | JSON `SignedDeviceList`: the user's current list |
//! | `device_list_history` | user id (16) ‖ version (u64 BE) | JSON `SignedDeviceList`: every list the user published |
//! | `identities` | identity key (32) | user id (16): the user whose lists carry the key |
//! | `unlinked` | device id (32) | user id (16): devices a list dropped (their `devices` and `user_devices` entries and inbox are deleted) |
//!
//! A batch is applied with one sled transaction over all trees and then made durable with one
//! `flush`: the writer task calls `commit` with many clients' writes at once (group commit).
//!
//! `inbox_shares` and `inbox_share_of` came after `inbox`: items stored by an older server have
//! no entries there, so they do not count towards any share.
//!
//! Inbox ids are handed out from a counter in memory ([`Storage::next_inbox_id`] does no I/O),
//! which starts [`INBOX_ID_RESTART_GAP`] above the highest id stored (`meta`), so that no id of
//! a run is used again after a crash that lost its last items and their mark. Older servers took them from sled's id
//! generator, which writes and flushes now and then from whichever thread asks — an async
//! runtime thread — and past the free-space check; a database without `meta` continues above
//! that generator's last id.

use confide_protocol::device_list::{IdentityKey, SignedDeviceList};
use confide_protocol::frames::{InboxItem, StoredMessage};
use confide_protocol::group_log::SignedOp;
use confide_protocol::{DeviceId, GroupId, MessageId, Seq, UserId};
use sled::Transactional as _;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use std::path::Path;

use super::migrate::Record;
use super::sled_id_index::{IdIndex, IdWrite};
use super::sled_record;
use super::{DeviceRecord, Storage, StorageError, Write};

/// Bytes of sled's page cache, unless the config file says otherwise (`storage_cache_bytes`).
/// sled's own default is 1 GiB, which a busy server grows into whatever the host has (the
/// benchmarks saw 350–500 MB within 20 seconds); recent messages, which is what clients read,
/// fit in far less, and the operating system caches the rest of the files.
pub const DEFAULT_CACHE_BYTES: u64 = 128 * 1024 * 1024;

/// The smallest page cache accepted (sled refuses tiny ones by panicking; a few pages would
/// make every post a disk read anyway).
pub const MIN_CACHE_BYTES: u64 = 1024 * 1024;

/// Bytes that must stay free on the database's disk for a batch to be written, unless the config
/// file says otherwise (`storage_min_free_bytes`). See [`SledStorage::open_with`].
pub const DEFAULT_MIN_FREE_BYTES: u64 = 256 * 1024 * 1024;

/// A batch that only deletes (acknowledged inbox items, messages deleted for everyone or past
/// their retention) needs only this fraction of the free-space margin: deleting is how space is
/// won back on a nearly full disk, and it writes only small records.
pub const DELETE_MARGIN_DIVISOR: u64 = 4;

/// The `meta` key under which the highest inbox id ever stored is kept.
const INBOX_ID_HIGH: &[u8] = b"inbox_id_high";

/// How far above the highest inbox id stored the ids of a new run start. A crash can lose the
/// last batches together with the highest id they stored, and a client may have seen their ids
/// already (an item is served once durable, but a failing disk can lose what it reported
/// durable); starting just above the stored mark would hand those ids out again, and a client
/// acknowledging one would delete a different item (a sender key, say). The gap is far more
/// than one run hands out between two durable inbox writes, and leaves room for 2^21 restarts
/// before ids pass 2^53 (the largest integer every JSON parser reads exactly) and 2^32 before
/// they run out.
pub const INBOX_ID_RESTART_GAP: u64 = 1 << 32;

/// sled-backed [`Storage`].
///
/// A full disk, and what it does to sled: once one of sled's writes fails (`ENOSPC`, `EIO`), sled
/// keeps an error it never clears while the database is open. Every later write and flush fails,
/// some reads fail, iterators can repeat the error forever, and a flush can even wait forever;
/// reopening needs free space too. So a failed write cannot be retried in-process. Hence two
/// defences:
/// - before each batch, the free space of the disk is checked, and the batch is refused
///   ([`StorageError::Full`]) unless `min_free_bytes` plus twice the batch's size stay free.
///   sled is never pushed into its error, reads keep working, and writes resume by themselves
///   once space is freed;
/// - if a write fails all the same (the disk filled faster than the margin, or an I/O error),
///   the storage is marked failed: every later call returns [`StorageError::NeedsRestart`]
///   at once (no hang, no stale reads), and the server shuts down cleanly so that its
///   supervisor restarts it.
pub struct SledStorage {
    db: sled::Db,
    path: std::path::PathBuf,
    min_free_bytes: u64,
    /// Set once a write has failed: the database can no longer be trusted until reopened.
    failed: std::sync::OnceLock<String>,
    /// Whether a commit flushes before it returns: always, except in the benchmark's baseline
    /// ([`SledStorage::without_flushing_for_benchmarks`]).
    flush_each_commit: bool,
    devices: sled::Tree,
    user_devices: sled::Tree,
    ops: sled::Tree,
    messages: sled::Tree,
    /// Message id → seq ([`super::sled_id_index`]).
    ids: IdIndex,
    last_seq: sled::Tree,
    inbox: sled::Tree,
    inbox_shares: sled::Tree,
    inbox_share_of: sled::Tree,
    meta: sled::Tree,
    device_lists: sled::Tree,
    device_list_history: sled::Tree,
    identities: sled::Tree,
    unlinked: sled::Tree,
    /// The next inbox id to hand out; above every id stored, and every id handed out before.
    next_inbox_id: std::sync::atomic::AtomicU64,
}

pub(super) fn backend(e: impl std::fmt::Display) -> StorageError {
    StorageError::Backend(e.to_string())
}

pub(super) fn key2(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(a.len() + b.len());
    k.extend_from_slice(a);
    k.extend_from_slice(b);
    k
}

fn decode<T: serde::de::DeserializeOwned>(
    tree: &'static str,
    bytes: &[u8],
) -> Result<T, StorageError> {
    serde_json::from_slice(bytes).map_err(|e| StorageError::Corrupt {
        tree,
        reason: e.to_string(),
    })
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, StorageError> {
    serde_json::to_vec(value).map_err(backend)
}

/// The `inbox_shares` key of an inbox item.
fn share_key(device: &DeviceId, share: &DeviceId, inbox_id: u64) -> Vec<u8> {
    let mut k = key2(device.as_bytes(), share.as_bytes());
    k.extend_from_slice(&inbox_id.to_be_bytes());
    k
}

/// Counts entries, stopping at the first error (a failed sled iterator can repeat its error
/// forever, so counting every item would never end).
fn count(iter: sled::Iter) -> Result<usize, StorageError> {
    let mut n = 0;
    for entry in iter {
        entry.map_err(backend)?;
        n += 1;
    }
    Ok(n)
}

fn be_u64(tree: &'static str, bytes: &[u8]) -> Result<u64, StorageError> {
    let arr: [u8; 8] = bytes.try_into().map_err(|_| StorageError::Corrupt {
        tree,
        reason: "expected 8 bytes".into(),
    })?;
    Ok(u64::from_be_bytes(arr))
}

fn user_id(tree: &'static str, bytes: &[u8]) -> Result<UserId, StorageError> {
    let arr: [u8; 16] = bytes.try_into().map_err(|_| StorageError::Corrupt {
        tree,
        reason: "expected a 16-byte user id".into(),
    })?;
    Ok(UserId(arr))
}

impl SledStorage {
    /// Opens (or creates) the database in `path`, with a cache of [`DEFAULT_CACHE_BYTES`].
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        Self::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// Opens (or creates) the database in `path`, with a page cache of at most `cache_bytes`
    /// (at least [`MIN_CACHE_BYTES`]).
    pub fn open_with_cache(path: &Path, cache_bytes: u64) -> Result<Self, StorageError> {
        Self::open_with(path, cache_bytes, DEFAULT_MIN_FREE_BYTES)
    }

    /// Opens (or creates) the database in `path`, with a page cache of at most `cache_bytes`
    /// (at least [`MIN_CACHE_BYTES`]), writing only while at least `min_free_bytes` stay free on
    /// its disk (see [`DEFAULT_MIN_FREE_BYTES`]).
    pub fn open_with(
        path: &Path,
        cache_bytes: u64,
        min_free_bytes: u64,
    ) -> Result<Self, StorageError> {
        if cache_bytes < MIN_CACHE_BYTES {
            return Err(StorageError::Backend(format!(
                "the storage cache must be at least {MIN_CACHE_BYTES} bytes (1 MiB), not {cache_bytes}"
            )));
        }
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes)
            .open()
            .map_err(backend)?;
        let meta = db.open_tree("meta").map_err(backend)?;
        let high = match meta.get(INBOX_ID_HIGH).map_err(backend)? {
            Some(v) => be_u64("meta", &v)?,
            // Written by an older server (or new): its ids came from sled's generator as
            // `generate_id() + 1`, and the generator only goes up, also across restarts.
            None => db.generate_id().map_err(backend)?,
        };
        let messages = db.open_tree("messages").map_err(backend)?;
        Ok(SledStorage {
            ids: IdIndex::open(&db, messages.clone())?,
            messages,
            meta,
            next_inbox_id: std::sync::atomic::AtomicU64::new(
                high.saturating_add(INBOX_ID_RESTART_GAP),
            ),
            devices: db.open_tree("devices").map_err(backend)?,
            user_devices: db.open_tree("user_devices").map_err(backend)?,
            ops: db.open_tree("ops").map_err(backend)?,
            last_seq: db.open_tree("last_seq").map_err(backend)?,
            inbox: db.open_tree("inbox").map_err(backend)?,
            inbox_shares: db.open_tree("inbox_shares").map_err(backend)?,
            inbox_share_of: db.open_tree("inbox_share_of").map_err(backend)?,
            device_lists: db.open_tree("device_lists").map_err(backend)?,
            device_list_history: db.open_tree("device_list_history").map_err(backend)?,
            identities: db.open_tree("identities").map_err(backend)?,
            unlinked: db.open_tree("unlinked").map_err(backend)?,
            db,
            path: path.to_path_buf(),
            min_free_bytes,
            failed: std::sync::OnceLock::new(),
            flush_each_commit: true,
        })
    }

    /// Keeps at most about `ids` message ids in memory (default
    /// [`super::DEFAULT_IDS_IN_MEMORY`]), least recently used groups dropped first: the index
    /// that answers a retried post and finds a deleted message (written to disk
    /// [`super::RUN_LEN`] ids at a time).
    pub fn with_ids_in_memory(mut self, ids: usize) -> Self {
        self.ids.set_capacity(ids);
        self
    }

    /// **Benchmarks only.** The same storage, except that a commit returns without flushing:
    /// what it acknowledges can be lost in a crash (sled still flushes in the background every
    /// half second). `confide-bench durable` measures the real server against this to show
    /// what durability costs; no configuration of `confide-server` reaches it.
    #[doc(hidden)]
    pub fn without_flushing_for_benchmarks(mut self) -> Self {
        self.flush_each_commit = false;
        self
    }

    /// Fails at once if an earlier write failed (see the type's documentation).
    fn healthy(&self) -> Result<(), StorageError> {
        match self.failed.get() {
            Some(reason) => Err(StorageError::NeedsRestart(reason.clone())),
            None => Ok(()),
        }
    }

    /// Marks the database failed after a write error and says so.
    fn fail(&self, e: impl std::fmt::Display) -> StorageError {
        let reason = self.failed.get_or_init(|| e.to_string()).clone();
        StorageError::NeedsRestart(reason)
    }

    /// Refuses a batch of about `bytes` bytes unless it leaves the margin free on the disk (a
    /// [`DELETE_MARGIN_DIVISOR`]th of it for a batch that only deletes).
    fn check_space(&self, bytes: u64, only_deletes: bool) -> Result<(), StorageError> {
        let margin = if only_deletes {
            self.min_free_bytes / DELETE_MARGIN_DIVISOR
        } else {
            self.min_free_bytes
        };
        let needed = margin.saturating_add(bytes.saturating_mul(2));
        match fs2::available_space(&self.path) {
            Ok(available) if available < needed => Err(StorageError::Full { available, needed }),
            Ok(_) => Ok(()),
            // Without an answer, write: sled reports a full disk all the same.
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the free space of the database's disk");
                Ok(())
            }
        }
    }

    /// Serializes a batch into per-tree (key, value-or-delete) lists before the transaction, so
    /// that the transaction closure (which sled may retry) only moves bytes.
    fn apply(&self, batch: &[Write]) -> Result<(), StorageError> {
        type Entry = (Vec<u8>, Option<Vec<u8>>);
        let mut devices: Vec<Entry> = Vec::new();
        let mut user_devices: Vec<Entry> = Vec::new();
        let mut ops: Vec<Entry> = Vec::new();
        let mut messages: Vec<Entry> = Vec::new();
        // Stores, deletions by id and expiries, in batch order, for the id index.
        let mut id_writes: Vec<IdWrite> = Vec::new();
        // Only the highest seq of each group in the batch needs writing.
        let mut last_seq: std::collections::BTreeMap<GroupId, [u8; 8]> = Default::default();
        let mut inbox: Vec<Entry> = Vec::new();
        let mut inbox_shares: Vec<Entry> = Vec::new();
        let mut inbox_share_of: Vec<Entry> = Vec::new();
        // The shares of inbox items written in this batch, for an acknowledgement in the same
        // batch (ids are predictable, so a client can acknowledge an item before it exists).
        let mut new_shares: std::collections::HashMap<Vec<u8>, Vec<u8>> = Default::default();
        let mut highest_inbox_id: Option<u64> = None;
        let mut device_lists: Vec<Entry> = Vec::new();
        let mut device_list_history: Vec<Entry> = Vec::new();
        let mut identities: Vec<Entry> = Vec::new();
        let mut unlinked: Vec<Entry> = Vec::new();
        // Devices this batch unlinks: their inbox items (in this batch too) are not stored.
        let mut unlinked_now: std::collections::HashSet<DeviceId> = Default::default();
        // Deletions by message id need the seq, looked up now (ids are written before deletes in
        // the same batch only for messages already committed, which is the only case we need).
        for write in batch {
            match write {
                Write::Device(rec) => {
                    devices.push((rec.keys.device.as_bytes().to_vec(), Some(encode(rec)?)));
                    user_devices.push((
                        key2(rec.user.as_bytes(), rec.keys.device.as_bytes()),
                        Some(Vec::new()),
                    ));
                }
                Write::Op { group, seq, op } => ops.push((
                    key2(group.as_bytes(), &seq.to_be_bytes()),
                    Some(encode(op)?),
                )),
                Write::Message { group, message } => {
                    let seq = message.seq.0.to_be_bytes();
                    let id = message.envelope.message_id();
                    messages.push((
                        key2(group.as_bytes(), &seq),
                        Some(sled_record::encode_message(message)),
                    ));
                    id_writes.push(IdWrite::Stored {
                        group: *group,
                        seq: message.seq,
                        id,
                    });
                    let highest = last_seq.entry(*group).or_insert(seq);
                    *highest = seq.max(*highest);
                }
                Write::DeleteMessage { group, message } => id_writes.push(IdWrite::Deleted {
                    group: *group,
                    id: *message,
                }),
                Write::ExpireMessage {
                    group,
                    seq,
                    message,
                } => {
                    messages.push((key2(group.as_bytes(), &seq.0.to_be_bytes()), None));
                    id_writes.push(IdWrite::Expired {
                        group: *group,
                        seq: *seq,
                        id: *message,
                    });
                }
                Write::Inbox { device, item } => {
                    if unlinked_now.contains(device)
                        || self
                            .unlinked
                            .contains_key(device.as_bytes())
                            .map_err(backend)?
                    {
                        // Sealed to a device a list dropped (in a race with the publication):
                        // nobody can read it, so it is not kept.
                        continue;
                    }
                    highest_inbox_id = highest_inbox_id.max(Some(item.inbox_id));
                    let key = key2(device.as_bytes(), &item.inbox_id.to_be_bytes());
                    inbox.push((key.clone(), Some(encode(item)?)));
                    let mut shares = Vec::new();
                    for share in super::inbox_shares(&item.payload) {
                        inbox_shares
                            .push((share_key(device, &share, item.inbox_id), Some(Vec::new())));
                        shares.extend_from_slice(share.as_bytes());
                    }
                    inbox_share_of.push((key.clone(), Some(shares.clone())));
                    new_shares.insert(key, shares);
                }
                Write::AckInbox { device, inbox_id } => {
                    let key = key2(device.as_bytes(), &inbox_id.to_be_bytes());
                    let shares = match new_shares.get(&key) {
                        Some(shares) => Some(shares.clone()),
                        None => self
                            .inbox_share_of
                            .get(&key)
                            .map_err(backend)?
                            .map(|v| v.to_vec()),
                    };
                    if let Some(shares) = shares {
                        if shares.len() % 32 != 0 {
                            // Not ours to interpret; removed with the item all the same, so a
                            // damaged entry cannot outlive it.
                            tracing::warn!(len = shares.len(), "malformed inbox_share_of entry");
                        }
                        for share in shares.chunks_exact(32) {
                            let mut id = [0u8; 32];
                            id.copy_from_slice(share);
                            inbox_shares.push((share_key(device, &DeviceId(id), *inbox_id), None));
                        }
                        inbox_share_of.push((key.clone(), None));
                    }
                    inbox.push((key, None))
                }
                Write::DeviceList {
                    user,
                    identity,
                    list,
                } => {
                    device_lists.push((user.as_bytes().to_vec(), Some(encode(list)?)));
                    // Verified before it was written: its version parses.
                    let version =
                        serde_json::from_slice::<confide_protocol::device_list::DeviceList>(
                            &list.list,
                        )
                        .map_err(|e| StorageError::Corrupt {
                            tree: "device_list_history",
                            reason: e.to_string(),
                        })?
                        .version;
                    device_list_history.push((
                        key2(user.as_bytes(), &version.to_be_bytes()),
                        Some(encode(list)?),
                    ));
                    identities.push((identity.as_bytes().to_vec(), Some(user.as_bytes().to_vec())));
                }
                Write::Unlink { user, device } => {
                    unlinked_now.insert(*device);
                    unlinked.push((device.as_bytes().to_vec(), Some(user.as_bytes().to_vec())));
                    devices.push((device.as_bytes().to_vec(), None));
                    user_devices.push((key2(user.as_bytes(), device.as_bytes()), None));
                    // Its whole inbox, with the share indexes (their keys start with the device).
                    for (tree, list) in [
                        (&self.inbox, &mut inbox),
                        (&self.inbox_shares, &mut inbox_shares),
                        (&self.inbox_share_of, &mut inbox_share_of),
                    ] {
                        for entry in tree.scan_prefix(device.as_bytes()).keys() {
                            list.push((entry.map_err(backend)?.to_vec(), None));
                        }
                    }
                    // Items of this batch written before the unlink.
                    let prefix = device.as_bytes();
                    for list in [&mut inbox, &mut inbox_shares, &mut inbox_share_of] {
                        let written: Vec<Vec<u8>> = list
                            .iter()
                            .filter(|(k, v)| v.is_some() && k.starts_with(prefix))
                            .map(|(k, _)| k.clone())
                            .collect();
                        list.extend(written.into_iter().map(|k| (k, None)));
                    }
                }
            }
        }
        let last_seq: Vec<Entry> = last_seq
            .into_iter()
            .map(|(group, seq)| (group.as_bytes().to_vec(), Some(seq.to_vec())))
            .collect();
        // The highest inbox id stored only goes up (ids are handed out before their batches
        // are written, so a batch may hold lower ones than the last). The writer is the only
        // caller, so reading it here cannot race.
        let mut meta: Vec<Entry> = Vec::new();
        if let Some(id) = highest_inbox_id {
            let stored = match self.meta.get(INBOX_ID_HIGH).map_err(backend)? {
                Some(v) => be_u64("meta", &v)?,
                None => 0,
            };
            if id > stored {
                meta.push((INBOX_ID_HIGH.to_vec(), Some(id.to_be_bytes().to_vec())));
            }
        }
        // Pins the batch's groups in the id index until `committed` (or until dropped, when the
        // batch is not written).
        let id_plan = self.ids.plan(&id_writes)?;
        messages.extend(
            id_plan
                .deleted
                .iter()
                .map(|(group, seq)| (key2(group.as_bytes(), &seq.0.to_be_bytes()), None)),
        );
        let id_runs = id_plan.run_writes();
        let trees: [&sled::Tree; 14] = [
            &self.devices,
            &self.user_devices,
            &self.ops,
            &self.messages,
            self.ids.tree(),
            &self.last_seq,
            &self.inbox,
            &self.inbox_shares,
            &self.inbox_share_of,
            &self.meta,
            &self.device_lists,
            &self.device_list_history,
            &self.identities,
            &self.unlinked,
        ];
        let lists = [
            &devices,
            &user_devices,
            &ops,
            &messages,
            &id_runs,
            &last_seq,
            &inbox,
            &inbox_shares,
            &inbox_share_of,
            &meta,
            &device_lists,
            &device_list_history,
            &identities,
            &unlinked,
        ];
        // A run of ids rewritten because a message was deleted shrinks: it does not count as
        // new data (a batch that stores a message writes that message anyway).
        let only_deletes = lists
            .iter()
            .filter(|list| !std::ptr::eq(**list, &id_runs))
            .flat_map(|list| list.iter())
            .all(|(_, v)| v.is_none());
        let bytes: usize = lists
            .iter()
            .flat_map(|list| list.iter())
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
            .sum();
        self.check_space(u64::try_from(bytes).unwrap_or(u64::MAX), only_deletes)?;
        // Only the trees this batch writes take part: sled's transaction locks, stages and
        // commits every tree it is given, and a post writes three of the fourteen.
        let (trees, lists): (Vec<&sled::Tree>, Vec<&Vec<Entry>>) = trees
            .into_iter()
            .zip(lists)
            .filter(|(_, list)| !list.is_empty())
            .unzip();
        if trees.is_empty() {
            return Ok(());
        }
        trees[..]
            .transaction(|views| {
                for (tree, list) in views.iter().zip(&lists) {
                    for (k, v) in list.iter() {
                        match v {
                            Some(v) => {
                                tree.insert(k.as_slice(), v.as_slice())?;
                            }
                            None => {
                                tree.remove(k.as_slice())?;
                            }
                        }
                    }
                }
                Ok::<(), ConflictableTransactionError<()>>(())
            })
            .map_err(|e: TransactionError<()>| self.fail(format!("{e:?}")))?;
        id_plan.committed();
        Ok(())
    }
}

/// The first `N` bytes of a key or value as an array, or a [`StorageError::Corrupt`].
pub(super) fn fixed<const N: usize>(
    tree: &'static str,
    bytes: &[u8],
) -> Result<[u8; N], StorageError> {
    bytes
        .get(..N)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| StorageError::Corrupt {
            tree,
            reason: format!("expected at least {N} bytes, found {}", bytes.len()),
        })
}

/// The big-endian integer in the 8 bytes of `key` from `at`.
pub(super) fn key_u64(tree: &'static str, key: &[u8], at: usize) -> Result<u64, StorageError> {
    be_u64(tree, key.get(at..).unwrap_or_default())
}

impl SledStorage {
    /// Every record the database holds, with its stored bytes as they are, for copying the
    /// database into another backend ([`super::migrate`]): devices, group heads, ops,
    /// messages, inbox items with their shares, device lists (current, then every version),
    /// identity keys and unlinked devices, each kind in key order.
    ///
    /// A group's head (its newest op, and its highest message seq ever used) is derived from
    /// the `ops` and `last_seq` trees; ops or a message seq of a group without a genesis op
    /// are reported as [`StorageError::Corrupt`] (the server never stores them).
    pub fn export(&self) -> impl Iterator<Item = Result<Record, StorageError>> + '_ {
        let devices = self.devices.iter().map(|entry| {
            let (key, value) = entry.map_err(backend)?;
            let record: DeviceRecord = decode("devices", &value)?;
            Ok(Record::Device {
                device: DeviceId(fixed("devices", &key)?),
                user: record.user,
                record: value.to_vec(),
            })
        });
        let heads = std::iter::once(()).flat_map(move |()| match self.group_heads() {
            Ok(heads) => heads.into_iter().map(Ok).collect::<Vec<_>>(),
            Err(e) => vec![Err(e)],
        });
        let ops = self.ops.iter().map(|entry| {
            let (key, value) = entry.map_err(backend)?;
            Ok(Record::Op {
                group: GroupId(fixed("ops", &key)?),
                seq: key_u64("ops", &key, 16)?,
                op: value.to_vec(),
            })
        });
        let messages = self.messages.iter().map(|entry| {
            let (key, value) = entry.map_err(backend)?;
            let (message, record) = sled_record::message_json(&key, &value)?;
            Ok(Record::Message {
                group: GroupId(fixed("messages", &key)?),
                seq: key_u64("messages", &key, 16)?,
                message_id: message.envelope.message_id(),
                record,
            })
        });
        let inbox = self.inbox.iter().map(|entry| {
            let (key, value) = entry.map_err(backend)?;
            let shares = match self.inbox_share_of.get(&key).map_err(backend)? {
                Some(shares) => shares
                    .chunks_exact(32)
                    .map(|share| fixed("inbox_share_of", share).map(DeviceId))
                    .collect::<Result<Vec<_>, _>>()?,
                // Stored by an older server: counts towards no share.
                None => Vec::new(),
            };
            Ok(Record::Inbox {
                device: DeviceId(fixed("inbox", &key)?),
                inbox_id: key_u64("inbox", &key, 32)?,
                shares,
                record: value.to_vec(),
            })
        });
        let device_lists = self.device_lists.iter().map(|entry| {
            let (key, value) = entry.map_err(backend)?;
            Ok(Record::DeviceList {
                user: UserId(fixed("device_lists", &key)?),
                list: value.to_vec(),
            })
        });
        let history = self.device_list_history.iter().map(|entry| {
            let (key, value) = entry.map_err(backend)?;
            Ok(Record::DeviceListVersion {
                user: UserId(fixed("device_list_history", &key)?),
                version: key_u64("device_list_history", &key, 16)?,
                list: value.to_vec(),
            })
        });
        let identities = self.identities.iter().map(|entry| {
            let (key, value) = entry.map_err(backend)?;
            Ok(Record::Identity {
                identity: IdentityKey(fixed("identities", &key)?),
                user: user_id("identities", &value)?,
            })
        });
        let unlinked = self.unlinked.iter().map(|entry| {
            let (key, value) = entry.map_err(backend)?;
            Ok(Record::Unlinked {
                device: DeviceId(fixed("unlinked", &key)?),
                user: user_id("unlinked", &value)?,
            })
        });
        devices
            .chain(heads)
            .chain(ops)
            .chain(messages)
            .chain(inbox)
            .chain(device_lists)
            .chain(history)
            .chain(identities)
            .chain(unlinked)
    }

    /// Every group with a genesis op, with its newest op's seq and its highest message seq.
    fn group_heads(&self) -> Result<Vec<Record>, StorageError> {
        // Keys are group ‖ seq, in order: a group's last key holds its newest op.
        let mut heads: Vec<(GroupId, bool, u64)> = Vec::new();
        for key in self.ops.iter().keys() {
            let key = key.map_err(backend)?;
            let group = GroupId(fixed("ops", &key)?);
            let seq = key_u64("ops", &key, 16)?;
            match heads.last_mut() {
                Some((last, _, newest)) if *last == group => *newest = seq,
                _ => heads.push((group, seq == 0, seq)),
            }
        }
        let mut out = Vec::with_capacity(heads.len());
        for (group, genesis, last_op_seq) in heads {
            if !genesis {
                return Err(StorageError::Corrupt {
                    tree: "ops",
                    reason: format!("group {} has ops but no genesis op", hex::encode(group.0)),
                });
            }
            out.push(Record::GroupHead {
                group,
                last_op_seq,
                last_msg_seq: self.last_seq(&group)?.0,
            });
        }
        let with_genesis: std::collections::HashSet<GroupId> = out
            .iter()
            .filter_map(|head| match head {
                Record::GroupHead { group, .. } => Some(*group),
                _ => None,
            })
            .collect();
        for key in self.last_seq.iter().keys() {
            let group = GroupId(fixed("last_seq", &key.map_err(backend)?)?);
            if !with_genesis.contains(&group) {
                return Err(StorageError::Corrupt {
                    tree: "last_seq",
                    reason: format!(
                        "group {} has messages but no genesis op",
                        hex::encode(group.0)
                    ),
                });
            }
        }
        Ok(out)
    }
}

impl Storage for SledStorage {
    /// sled shows a batch once applied, before its flush.
    fn reads_only_durable(&self) -> bool {
        false
    }

    fn commit(&self, batch: &[Write]) -> Result<(), StorageError> {
        self.healthy()?;
        self.apply(batch)?;
        if self.flush_each_commit {
            self.db.flush().map_err(|e| self.fail(e))?;
        }
        Ok(())
    }

    fn device(&self, device: &DeviceId) -> Result<Option<DeviceRecord>, StorageError> {
        self.healthy()?;
        self.devices
            .get(device.as_bytes())
            .map_err(backend)?
            .map(|v| decode("devices", &v))
            .transpose()
    }

    fn devices_of_user(&self, user: &UserId) -> Result<Vec<DeviceRecord>, StorageError> {
        self.healthy()?;
        let mut out = Vec::new();
        for entry in self.user_devices.scan_prefix(user.as_bytes()) {
            let (k, _) = entry.map_err(backend)?;
            let device: [u8; 32] = k[16..].try_into().map_err(|_| StorageError::Corrupt {
                tree: "user_devices",
                reason: "bad key".into(),
            })?;
            if let Some(rec) = self.device(&DeviceId(device))? {
                out.push(rec);
            }
        }
        Ok(out)
    }

    fn device_list(&self, user: &UserId) -> Result<Option<SignedDeviceList>, StorageError> {
        self.healthy()?;
        self.device_lists
            .get(user.as_bytes())
            .map_err(backend)?
            .map(|v| decode("device_lists", &v))
            .transpose()
    }

    fn device_list_chain(
        &self,
        user: &UserId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<SignedDeviceList>, StorageError> {
        self.healthy()?;
        let start = key2(user.as_bytes(), &after.saturating_add(1).to_be_bytes());
        let end = key2(user.as_bytes(), &u64::MAX.to_be_bytes());
        let mut out = Vec::new();
        for entry in self.device_list_history.range(start..=end).take(limit) {
            let (_, value) = entry.map_err(backend)?;
            out.push(decode("device_list_history", &value)?);
        }
        Ok(out)
    }

    fn identity_user(&self, identity: &IdentityKey) -> Result<Option<UserId>, StorageError> {
        self.healthy()?;
        self.identities
            .get(identity.as_bytes())
            .map_err(backend)?
            .map(|v| user_id("identities", &v))
            .transpose()
    }

    fn unlinked(&self, device: &DeviceId) -> Result<Option<UserId>, StorageError> {
        self.healthy()?;
        self.unlinked
            .get(device.as_bytes())
            .map_err(backend)?
            .map(|v| user_id("unlinked", &v))
            .transpose()
    }

    fn message_seq(
        &self,
        group: &GroupId,
        message: &MessageId,
    ) -> Result<Option<Seq>, StorageError> {
        self.healthy()?;
        self.ids.seq(group, message)
    }

    fn groups(&self) -> Result<Vec<GroupId>, StorageError> {
        self.healthy()?;
        // Genesis ops have seq 0, so every group has a key `group ‖ 0u64`.
        let mut out = Vec::new();
        for entry in self.ops.iter() {
            let (k, _) = entry.map_err(backend)?;
            if k.len() == 24 && k[16..] == [0u8; 8] {
                let mut g = [0u8; 16];
                g.copy_from_slice(&k[..16]);
                out.push(GroupId(g));
            }
        }
        Ok(out)
    }

    fn ops(&self, group: &GroupId, from: u64, limit: usize) -> Result<Vec<SignedOp>, StorageError> {
        self.healthy()?;
        let start = key2(group.as_bytes(), &from.to_be_bytes());
        let end = key2(group.as_bytes(), &u64::MAX.to_be_bytes());
        self.ops
            .range(start..=end)
            .take(limit)
            .map(|e| e.map_err(backend).and_then(|(_, v)| decode("ops", &v)))
            .collect()
    }

    fn messages(
        &self,
        group: &GroupId,
        after: Seq,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StorageError> {
        self.healthy()?;
        let Some(first) = after.0.checked_add(1) else {
            return Ok(Vec::new());
        };
        let start = key2(group.as_bytes(), &first.to_be_bytes());
        let end = key2(group.as_bytes(), &u64::MAX.to_be_bytes());
        self.messages
            .range(start..=end)
            .take(limit)
            .map(|e| {
                e.map_err(backend)
                    .and_then(|(k, v)| sled_record::decode_message_at(&k, &v))
            })
            .collect()
    }

    fn last_seq(&self, group: &GroupId) -> Result<Seq, StorageError> {
        self.healthy()?;
        match self.last_seq.get(group.as_bytes()).map_err(backend)? {
            Some(v) => Ok(Seq(be_u64("last_seq", &v)?)),
            None => Ok(Seq(0)),
        }
    }

    fn inbox(
        &self,
        device: &DeviceId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<InboxItem>, StorageError> {
        self.healthy()?;
        let Some(first) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        let start = key2(device.as_bytes(), &first.to_be_bytes());
        let end = key2(device.as_bytes(), &u64::MAX.to_be_bytes());
        self.inbox
            .range(start..=end)
            .take(limit)
            .map(|e| e.map_err(backend).and_then(|(_, v)| decode("inbox", &v)))
            .collect()
    }

    fn inbox_has(&self, device: &DeviceId, inbox_id: u64) -> Result<bool, StorageError> {
        self.healthy()?;
        self.inbox
            .contains_key(key2(device.as_bytes(), &inbox_id.to_be_bytes()))
            .map_err(backend)
    }

    fn inbox_len(&self, device: &DeviceId) -> Result<usize, StorageError> {
        self.healthy()?;
        count(self.inbox.scan_prefix(device.as_bytes()))
    }

    fn inbox_len_from(&self, device: &DeviceId, share: &DeviceId) -> Result<usize, StorageError> {
        self.healthy()?;
        let prefix = key2(device.as_bytes(), share.as_bytes());
        count(self.inbox_shares.scan_prefix(prefix))
    }

    fn next_inbox_id(&self) -> Result<u64, StorageError> {
        self.healthy()?;
        // In memory: no I/O on the caller's (async) thread and no write past the free-space
        // check. The id is persisted with its item, in the same transaction, as the highest
        // stored; an id whose batch fails is simply never used. Starts at 1 at the least, so
        // that 0 stays free as "before the first".
        Ok(self
            .next_inbox_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::RUN_LEN;

    fn item(inbox_id: u64, sender: u8, kind: confide_protocol::seal::SealKind) -> InboxItem {
        InboxItem {
            inbox_id,
            received_at: confide_protocol::Timestamp(1),
            payload: confide_protocol::seal::SealedPayload {
                kind,
                group: GroupId([1; 16]),
                epoch: confide_protocol::Epoch(1),
                epoch_hash: confide_protocol::OpHash([2; 32]),
                sender: DeviceId([sender; 32]),
                recipient: DeviceId([9; 32]),
                enc: confide_protocol::seal::Encapsulation::from_bytes(&[3; 32]).unwrap(),
                ciphertext: vec![4; 80],
            },
        }
    }

    /// Opens the database in `dir` again, as soon as sled has let go of its file lock (shortly
    /// after the last handle was dropped).
    fn reopen(dir: &Path, min_free_bytes: u64) -> SledStorage {
        let mut last = None;
        for _ in 0..200 {
            match SledStorage::open_with(dir, MIN_CACHE_BYTES, min_free_bytes) {
                Ok(db) => return db,
                Err(e) => last = Some(e),
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        panic!("the database does not open again: {last:?}");
    }

    #[test]
    fn unlinking_deletes_the_whole_inbox_and_keeps_later_items_out() {
        use confide_protocol::seal::SealKind;
        let dir = tempfile::tempdir().unwrap();
        let db = SledStorage::open(dir.path()).unwrap();
        let me = DeviceId([9; 32]);
        let other = DeviceId([8; 32]);
        let user = UserId([1; 16]);
        let write = |device, i| Write::Inbox {
            device,
            item: item(i, 5, SealKind::JoinRequest),
        };
        db.commit(&[write(me, 1), write(other, 2)]).unwrap();
        db.commit(&[
            write(me, 3),
            Write::Unlink { user, device: me },
            write(me, 4),
        ])
        .unwrap();
        assert!(db.inbox(&me, 0, 10).unwrap().is_empty());
        assert_eq!(db.inbox_len_from(&me, &DeviceId([5; 32])).unwrap(), 0);
        assert_eq!(
            db.inbox_len_from(&me, &super::super::JOIN_REQUESTS_SHARE)
                .unwrap(),
            0
        );
        assert!(
            db.inbox_share_of
                .scan_prefix(me.as_bytes())
                .next()
                .is_none()
        );
        assert_eq!(db.unlinked(&me).unwrap(), Some(user));
        db.commit(&[write(me, 5)]).unwrap();
        assert!(db.inbox(&me, 0, 10).unwrap().is_empty());
        // Nobody else's inbox is touched.
        assert_eq!(db.inbox(&other, 0, 10).unwrap().len(), 1);
        assert_eq!(db.unlinked(&other).unwrap(), None);
    }

    #[test]
    fn inbox_shares_follow_writes_and_acknowledgements_even_within_one_batch() {
        use confide_protocol::seal::SealKind;
        let dir = tempfile::tempdir().unwrap();
        let db = SledStorage::open(dir.path()).unwrap();
        let me = DeviceId([9; 32]);
        let (alice, stranger) = (DeviceId([5; 32]), DeviceId([6; 32]));
        let write = |i| Write::Inbox {
            device: me,
            item: item(i, 5, SealKind::Direct),
        };
        let ack = |inbox_id| Write::AckInbox {
            device: me,
            inbox_id,
        };
        db.commit(&[write(1), write(2), write(3)]).unwrap();
        let join = Write::Inbox {
            device: me,
            item: item(4, 6, SealKind::JoinRequest),
        };
        db.commit(&[join]).unwrap();
        assert_eq!(db.inbox_len_from(&me, &alice).unwrap(), 3);
        assert_eq!(db.inbox_len_from(&me, &stranger).unwrap(), 1);
        assert_eq!(
            db.inbox_len_from(&me, &super::super::JOIN_REQUESTS_SHARE)
                .unwrap(),
            1
        );

        // Acknowledged (twice, and one unknown id): the share shrinks once per item.
        db.commit(&[ack(1), ack(1), ack(99)]).unwrap();
        assert_eq!(db.inbox_len_from(&me, &alice).unwrap(), 2);
        // Written and acknowledged in the same batch: nothing is left behind.
        db.commit(&[write(5), ack(5), ack(2)]).unwrap();
        assert_eq!(db.inbox_len_from(&me, &alice).unwrap(), 1);
        assert_eq!(db.inbox_len(&me).unwrap(), 2);
        assert_eq!(db.inbox_share_of.len(), 2);
    }

    #[test]
    fn a_disk_short_of_the_free_margin_refuses_writes_before_writing_and_reads_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let db = SledStorage::open_with(dir.path(), MIN_CACHE_BYTES, 0).unwrap();
        let me = DeviceId([9; 32]);
        let write = |i| Write::Inbox {
            device: me,
            item: item(i, 5, confide_protocol::seal::SealKind::Direct),
        };
        db.commit(&[write(1)]).unwrap();
        drop(db);
        // No disk has this much free.
        let db = reopen(dir.path(), u64::MAX);
        for _ in 0..2 {
            let err = db.commit(&[write(2)]).unwrap_err();
            assert!(matches!(err, StorageError::Full { .. }), "{err}");
            assert!(err.to_string().contains("free space"), "{err}");
        }
        assert_eq!(
            db.inbox_len(&me).unwrap(),
            1,
            "nothing of the refused batch"
        );
        assert_eq!(db.inbox(&me, 0, 10).unwrap().len(), 1);
    }

    /// Review of issue 13: the counter restarted just above the highest id stored. Items lost in
    /// a crash take their ids' mark with them, so ids a client had already been shown were
    /// handed out again — and a client acknowledging such an id after the restart deleted a
    /// different item.
    #[test]
    fn an_inbox_id_handed_out_before_a_crash_is_never_handed_out_again() {
        use confide_protocol::seal::SealKind;
        let dir = tempfile::tempdir().unwrap();
        let me = DeviceId([9; 32]);
        let db = SledStorage::open_with(dir.path(), MIN_CACHE_BYTES, 0).unwrap();
        let stored = db.next_inbox_id().unwrap();
        db.commit(&[Write::Inbox {
            device: me,
            item: item(stored, 5, SealKind::Direct),
        }])
        .unwrap();
        // Handed out, shown, and lost in the crash with its batch (here: never written).
        let lost = db.next_inbox_id().unwrap();
        drop(db);
        let db = reopen(dir.path(), 0);
        let next = db.next_inbox_id().unwrap();
        assert!(next > lost, "id {next} was handed out before the crash");
    }

    #[test]
    fn inbox_ids_keep_increasing_across_restarts_even_when_every_item_was_acknowledged() {
        use confide_protocol::seal::SealKind;
        let dir = tempfile::tempdir().unwrap();
        let me = DeviceId([9; 32]);
        let mut last = 0;
        for _ in 0..3 {
            let db = reopen(dir.path(), 0);
            let id = db.next_inbox_id().unwrap();
            assert!(id > last, "{id} after {last}");
            db.commit(&[Write::Inbox {
                device: me,
                item: item(id, 5, SealKind::Direct),
            }])
            .unwrap();
            db.commit(&[Write::AckInbox {
                device: me,
                inbox_id: id,
            }])
            .unwrap();
            assert_eq!(db.inbox_len(&me).unwrap(), 0);
            last = id;
        }
    }

    /// The bytes of every file of the database together.
    fn bytes_on_disk(dir: &Path) -> u64 {
        let mut total = 0;
        let mut dirs = vec![dir.to_path_buf()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let entry = entry.unwrap();
                if entry.path().is_dir() {
                    dirs.push(entry.path());
                } else {
                    total += entry.metadata().unwrap().len();
                }
            }
        }
        total
    }

    /// Review of issue 13: inbox ids came from sled's id generator, which updates its stored
    /// counter every million ids — from whichever async runtime thread asked (waiting for the
    /// disk if an earlier update is not yet durable), and past the free-space check: the next
    /// flush writes it, and on a full disk a failed write breaks sled until it is reopened.
    #[test]
    fn handing_out_inbox_ids_leaves_nothing_for_the_disk_to_write() {
        use confide_protocol::seal::SealKind;
        let dir = tempfile::tempdir().unwrap();
        let db = SledStorage::open_with(dir.path(), MIN_CACHE_BYTES, 0).unwrap();
        let first = db.next_inbox_id().unwrap();
        db.commit(&[Write::Inbox {
            device: DeviceId([9; 32]),
            item: item(first, 5, SealKind::Direct),
        }])
        .unwrap();
        // What a flush with nothing to write adds (sled logs a small marker each time).
        let flushed = bytes_on_disk(dir.path());
        db.commit(&[]).unwrap();
        let marker = bytes_on_disk(dir.path()) - flushed;
        // More ids than the generator hands out between two updates of its counter.
        let mut last = first;
        for _ in 0..1_100_000 {
            let id = db.next_inbox_id().unwrap();
            assert!(id > last);
            last = id;
        }
        let before = bytes_on_disk(dir.path());
        db.commit(&[]).unwrap();
        assert_eq!(
            bytes_on_disk(dir.path()) - before,
            marker,
            "handing out inbox ids left writes for the next flush"
        );
    }

    #[test]
    fn deletions_go_ahead_on_a_disk_short_of_the_margin_for_new_data() {
        use confide_protocol::seal::SealKind;
        let dir = tempfile::tempdir().unwrap();
        let me = DeviceId([9; 32]);
        let db = SledStorage::open_with(dir.path(), MIN_CACHE_BYTES, 0).unwrap();
        let write = |i| Write::Inbox {
            device: me,
            item: item(i, 5, SealKind::Direct),
        };
        db.commit(&[write(1), write(2)]).unwrap();
        drop(db);
        // A margin of twice what is free: new data is refused, deletions (which need a quarter
        // of the margin) go ahead.
        let free = fs2::available_space(dir.path()).unwrap();
        let db = reopen(dir.path(), free.saturating_mul(2));
        let err = db.commit(&[write(3)]).unwrap_err();
        assert!(matches!(err, StorageError::Full { .. }), "{err}");
        db.commit(&[Write::AckInbox {
            device: me,
            inbox_id: 1,
        }])
        .unwrap();
        assert_eq!(db.inbox_len(&me).unwrap(), 1);
    }

    fn message(seq: u64) -> StoredMessage {
        StoredMessage {
            seq: Seq(seq),
            received_at: confide_protocol::Timestamp(1_700_000_000_000 + seq),
            envelope: confide_protocol::envelope::Envelope {
                v: 1,
                group: GroupId([1; 16]),
                epoch: confide_protocol::Epoch(1),
                epoch_hash: confide_protocol::OpHash([2; 32]),
                sender: DeviceId([3; 32]),
                iteration: u32::try_from(seq).unwrap(),
                franking_tag: [4; 32],
                ciphertext: vec![5; 300],
                signature: confide_protocol::Signature([6; 64]),
            },
        }
    }

    fn message_in(group: GroupId, seq: u64) -> StoredMessage {
        let mut message = message(seq);
        message.envelope.group = group;
        message
    }

    /// Stores `seqs` of `group` in batches of `per_batch`.
    fn store(db: &SledStorage, group: GroupId, seqs: &[u64], per_batch: usize) {
        for batch in seqs.chunks(per_batch) {
            let writes: Vec<Write> = batch
                .iter()
                .map(|seq| Write::Message {
                    group,
                    message: message_in(group, *seq),
                })
                .collect();
            db.commit(&writes).unwrap();
        }
    }

    fn id_of(group: GroupId, seq: u64) -> MessageId {
        message_in(group, seq).envelope.message_id()
    }

    fn delete(db: &SledStorage, group: GroupId, seqs: &[u64]) {
        let writes: Vec<Write> = seqs
            .iter()
            .map(|seq| Write::DeleteMessage {
                group,
                message: id_of(group, *seq),
            })
            .collect();
        db.commit(&writes).unwrap();
    }

    /// Ids written to disk in runs.
    fn ids_in_runs(db: &SledStorage) -> usize {
        db.ids
            .tree()
            .iter()
            .map(|entry| (entry.unwrap().1.len() - 8) / 24)
            .sum()
    }

    /// A retried post is recognised, and a deletion finds its message, after a restart: for ids
    /// written to disk in runs and for the newest ones, which are only in their messages.
    #[test]
    fn message_ids_are_found_after_a_restart_in_runs_and_after_them() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (GroupId([1; 16]), GroupId([2; 16]));
        let a_seqs: Vec<u64> = (1..=600).collect();
        {
            let db = reopen(dir.path(), 0);
            store(&db, a, &a_seqs, 7);
            store(&db, b, &[1, 2, 3], 1);
            // Two full runs of Alice's group; the rest only in the messages.
            assert_eq!(ids_in_runs(&db), 2 * RUN_LEN);
            assert_eq!(db.message_seq(&a, &id_of(a, 599)).unwrap(), Some(Seq(599)));
        }
        let db = reopen(dir.path(), 0);
        for seq in &a_seqs {
            assert_eq!(
                db.message_seq(&a, &id_of(a, *seq)).unwrap(),
                Some(Seq(*seq))
            );
        }
        assert_eq!(db.message_seq(&b, &id_of(b, 2)).unwrap(), Some(Seq(2)));
        // Another group's id, and an id never stored, are not found.
        assert_eq!(db.message_seq(&b, &id_of(a, 5)).unwrap(), None);
        assert_eq!(db.message_seq(&a, &id_of(a, 601)).unwrap(), None);
        // Posting goes on where the runs left off.
        store(&db, a, &[601, 602], 2);
        assert_eq!(db.message_seq(&a, &id_of(a, 602)).unwrap(), Some(Seq(602)));
        drop(db);
        let db = reopen(dir.path(), 0);
        assert_eq!(db.message_seq(&a, &id_of(a, 602)).unwrap(), Some(Seq(602)));
        assert_eq!(db.message_seq(&a, &id_of(a, 1)).unwrap(), Some(Seq(1)));
    }

    /// A message deleted by id (by a facilitator, its sender or retention) is gone, and its id
    /// with it, also after a restart: whether its id was in a run, in the newest messages, or
    /// stored in the same batch.
    #[test]
    fn a_deleted_message_and_its_id_stay_deleted_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let group = GroupId([1; 16]);
        {
            let db = reopen(dir.path(), 0);
            store(&db, group, &(1..=300).collect::<Vec<_>>(), 50);
            // 10 and 200 are in the first run; 290 only in its message.
            delete(&db, group, &[10, 290]);
            delete(&db, group, &[200, 10]);
            assert_eq!(db.message_seq(&group, &id_of(group, 10)).unwrap(), None);
            // Stored and deleted in one batch.
            db.commit(&[
                Write::Message {
                    group,
                    message: message_in(group, 301),
                },
                Write::DeleteMessage {
                    group,
                    message: id_of(group, 301),
                },
            ])
            .unwrap();
            assert_eq!(db.message_seq(&group, &id_of(group, 301)).unwrap(), None);
        }
        let db = reopen(dir.path(), 0);
        for gone in [10, 200, 290, 301] {
            assert_eq!(
                db.message_seq(&group, &id_of(group, gone)).unwrap(),
                None,
                "{gone}"
            );
        }
        for kept in [9, 11, 256, 257, 289, 300] {
            assert_eq!(
                db.message_seq(&group, &id_of(group, kept)).unwrap(),
                Some(Seq(kept))
            );
        }
        let stored: Vec<u64> = db
            .messages(&group, Seq(0), 1000)
            .unwrap()
            .iter()
            .map(|m| m.seq.0)
            .collect();
        assert_eq!(stored.len(), 297);
        assert!(!stored.contains(&10) && !stored.contains(&290) && !stored.contains(&301));
        assert_eq!(ids_in_runs(&db), RUN_LEN - 2);
    }

    /// With room in memory for fewer ids than the groups hold, groups are dropped and read back:
    /// every lookup and deletion still gets the right answer.
    #[test]
    fn groups_dropped_from_memory_are_read_back_when_needed() {
        let dir = tempfile::tempdir().unwrap();
        let db = reopen(dir.path(), 0).with_ids_in_memory(200);
        let groups = [GroupId([1; 16]), GroupId([2; 16]), GroupId([3; 16])];
        let seqs: Vec<u64> = (1..=300).collect();
        for group in groups {
            store(&db, group, &seqs, 40);
        }
        for seq in [1, 150, 257, 300] {
            for group in groups {
                assert_eq!(
                    db.message_seq(&group, &id_of(group, seq)).unwrap(),
                    Some(Seq(seq))
                );
            }
        }
        delete(&db, groups[0], &[5]);
        delete(&db, groups[1], &[280]);
        for group in groups {
            store(&db, group, &[301], 1);
        }
        assert_eq!(
            db.message_seq(&groups[0], &id_of(groups[0], 5)).unwrap(),
            None
        );
        assert_eq!(
            db.message_seq(&groups[1], &id_of(groups[1], 280)).unwrap(),
            None
        );
        assert_eq!(
            db.message_seq(&groups[2], &id_of(groups[2], 5)).unwrap(),
            Some(Seq(5))
        );
        assert_eq!(
            db.message_seq(&groups[2], &id_of(groups[2], 301)).unwrap(),
            Some(Seq(301))
        );
    }

    /// A batch refused for lack of disk space leaves no id behind: a retry of its post is
    /// stored, not answered with a seq that holds nothing.
    #[test]
    fn a_post_refused_for_space_is_not_found_by_id() {
        let dir = tempfile::tempdir().unwrap();
        let group = GroupId([1; 16]);
        {
            let db = reopen(dir.path(), 0);
            store(&db, group, &[1], 1);
        }
        {
            let db = reopen(dir.path(), u64::MAX / 4);
            let refused = db.commit(&[Write::Message {
                group,
                message: message_in(group, 2),
            }]);
            assert!(
                matches!(refused, Err(StorageError::Full { .. })),
                "{refused:?}"
            );
            assert_eq!(db.message_seq(&group, &id_of(group, 2)).unwrap(), None);
            assert_eq!(
                db.message_seq(&group, &id_of(group, 1)).unwrap(),
                Some(Seq(1))
            );
        }
        let db = reopen(dir.path(), 0);
        assert_eq!(db.message_seq(&group, &id_of(group, 2)).unwrap(), None);
        store(&db, group, &[2], 1);
        assert_eq!(
            db.message_seq(&group, &id_of(group, 2)).unwrap(),
            Some(Seq(2))
        );
    }

    /// A message stored below seqs its group's runs already cover (the server stores each
    /// group's messages in order, but the storage does not depend on it) is found and deleted
    /// as any other, also after a restart.
    #[test]
    fn a_message_stored_out_of_order_is_still_found_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let group = GroupId([1; 16]);
        let even: Vec<u64> = (1..=300).map(|n| n * 2).collect();
        {
            let db = reopen(dir.path(), 0);
            store(&db, group, &even, 30);
            store(&db, group, &[3, 601, 7], 3);
        }
        let db = reopen(dir.path(), 0);
        for seq in [2, 3, 7, 512, 514, 600, 601] {
            assert_eq!(
                db.message_seq(&group, &id_of(group, seq)).unwrap(),
                Some(Seq(seq))
            );
        }
        delete(&db, group, &[3]);
        drop(db);
        let db = reopen(dir.path(), 0);
        assert_eq!(db.message_seq(&group, &id_of(group, 3)).unwrap(), None);
        assert_eq!(
            db.message_seq(&group, &id_of(group, 7)).unwrap(),
            Some(Seq(7))
        );
        // Among the newest messages, in no run yet: 605 comes after 606.
        store(&db, group, &[602, 604, 606, 605], 1);
        drop(db);
        let db = reopen(dir.path(), 0);
        assert_eq!(
            db.message_seq(&group, &id_of(group, 605)).unwrap(),
            Some(Seq(605))
        );
        delete(&db, group, &[605]);
        drop(db);
        let db = reopen(dir.path(), 0);
        assert_eq!(db.message_seq(&group, &id_of(group, 605)).unwrap(), None);
        assert_eq!(
            db.message_seq(&group, &id_of(group, 606)).unwrap(),
            Some(Seq(606))
        );
    }

    fn expire(group: GroupId, seqs: &[u64]) -> Vec<Write> {
        seqs.iter()
            .map(|seq| Write::ExpireMessage {
                group,
                seq: Seq(*seq),
                message: id_of(group, *seq),
            })
            .collect()
    }

    /// The retention sweep expires messages by seq: a group not in memory is not loaded for it
    /// (a sweep would otherwise load every group it expires messages of), and the expired ids
    /// are gone, in memory and after a restart, wherever they were.
    #[test]
    fn expiring_messages_does_not_load_their_group_and_forgets_their_ids() {
        let dir = tempfile::tempdir().unwrap();
        let group = GroupId([1; 16]);
        {
            let db = reopen(dir.path(), 0);
            store(&db, group, &(1..=600).collect::<Vec<_>>(), 100);
        }
        let db = reopen(dir.path(), 0);
        // The whole first run, one id of the second, one of the newest (in no run).
        let mut seqs: Vec<u64> = (1..=256).collect();
        seqs.extend([300, 590]);
        db.commit(&expire(group, &seqs)).unwrap();
        assert!(!db.ids.is_loaded(&group));
        assert_eq!(ids_in_runs(&db), RUN_LEN - 1);
        // The emptied first run is gone: the second covers further.
        assert_eq!(db.ids.tree().len(), 1);
        let gone = [1, 256, 300, 590];
        let kept = [257, 299, 512, 589, 600];
        let check = |db: &SledStorage| {
            for seq in gone {
                assert_eq!(
                    db.message_seq(&group, &id_of(group, seq)).unwrap(),
                    None,
                    "{seq}"
                );
            }
            for seq in kept {
                assert_eq!(
                    db.message_seq(&group, &id_of(group, seq)).unwrap(),
                    Some(Seq(seq))
                );
            }
            assert_eq!(db.messages(&group, Seq(0), 1).unwrap()[0].seq, Seq(257));
        };
        check(&db);
        drop(db);
        let db = reopen(dir.path(), 0);
        check(&db);
        // In memory now: expired there too. And with a post to the group in the same batch.
        let mut writes = expire(group, &[257, 595]);
        writes.push(Write::Message {
            group,
            message: message_in(group, 601),
        });
        db.commit(&writes).unwrap();
        for seq in [257, 595] {
            assert_eq!(db.message_seq(&group, &id_of(group, seq)).unwrap(), None);
        }
        drop(db);
        let db = reopen(dir.path(), 0);
        for seq in [257, 595] {
            assert_eq!(db.message_seq(&group, &id_of(group, seq)).unwrap(), None);
        }
        assert_eq!(
            db.message_seq(&group, &id_of(group, 601)).unwrap(),
            Some(Seq(601))
        );
    }

    /// The sweep expires the message it read: if that one was deleted since and its envelope
    /// posted again (a new seq), the new copy and its id stay, whether the group was in memory
    /// or not.
    #[test]
    fn an_expiry_leaves_a_copy_posted_again_since() {
        for in_memory in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let group = GroupId([1; 16]);
            {
                let db = reopen(dir.path(), 0);
                store(&db, group, &(1..=10).collect::<Vec<_>>(), 5);
                delete(&db, group, &[3]);
                let mut again = message_in(group, 3);
                again.seq = Seq(11);
                db.commit(&[Write::Message {
                    group,
                    message: again,
                }])
                .unwrap();
            }
            let db = reopen(dir.path(), 0);
            if in_memory {
                assert_eq!(
                    db.message_seq(&group, &id_of(group, 4)).unwrap(),
                    Some(Seq(4))
                );
            }
            db.commit(&expire(group, &[3])).unwrap();
            assert_eq!(db.ids.is_loaded(&group), in_memory);
            assert_eq!(
                db.message_seq(&group, &id_of(group, 3)).unwrap(),
                Some(Seq(11))
            );
            drop(db);
            let db = reopen(dir.path(), 0);
            assert_eq!(
                db.message_seq(&group, &id_of(group, 3)).unwrap(),
                Some(Seq(11))
            );
            assert_eq!(db.messages(&group, Seq(10), 5).unwrap().len(), 1);
        }
    }

    /// Deleting is how space is won back: a deletion whose id must be taken out of a run goes
    /// ahead on a disk short of the margin for new data, as every deletion does.
    #[test]
    fn deleting_a_message_whose_id_is_in_a_run_goes_ahead_on_a_disk_short_of_the_margin() {
        let dir = tempfile::tempdir().unwrap();
        let group = GroupId([1; 16]);
        {
            let db = reopen(dir.path(), 0);
            store(&db, group, &(1..=300).collect::<Vec<_>>(), 100);
            assert_eq!(ids_in_runs(&db), RUN_LEN);
        }
        let free = fs2::available_space(dir.path()).unwrap();
        let db = reopen(dir.path(), free.saturating_mul(2));
        let err = db
            .commit(&[Write::Message {
                group,
                message: message_in(group, 301),
            }])
            .unwrap_err();
        assert!(matches!(err, StorageError::Full { .. }), "{err}");
        delete(&db, group, &[10, 290]);
        assert_eq!(db.message_seq(&group, &id_of(group, 10)).unwrap(), None);
        assert_eq!(db.messages(&group, Seq(9), 1).unwrap()[0].seq, Seq(11));
    }

    /// A damaged message among a group's newest (in no run yet), or a damaged run, is left out
    /// of the index: the group's other messages are found and it takes posts as before.
    #[test]
    fn a_damaged_record_does_not_stop_its_group_taking_posts() {
        let dir = tempfile::tempdir().unwrap();
        let (group, other) = (GroupId([1; 16]), GroupId([2; 16]));
        {
            let db = reopen(dir.path(), 0);
            store(&db, group, &(1..=600).collect::<Vec<_>>(), 100);
            db.messages
                .insert(
                    key2(group.as_bytes(), &590u64.to_be_bytes()),
                    &b"\x07garbage"[..],
                )
                .unwrap();
            let run = key2(group.as_bytes(), &1u64.to_be_bytes());
            assert!(db.ids.tree().contains_key(&run).unwrap());
            db.ids.tree().insert(run, &b"damaged"[..]).unwrap();
            // Another group whose only (so last) run is damaged.
            store(&db, other, &(1..=300).collect::<Vec<_>>(), 100);
            let run = key2(other.as_bytes(), &1u64.to_be_bytes());
            db.ids.tree().insert(run, &b"damaged"[..]).unwrap();
        }
        let db = reopen(dir.path(), 0);
        // The damaged run's ids are read back from their messages (a later run covers them).
        for seq in [1, 10, 256, 257, 300, 595] {
            assert_eq!(
                db.message_seq(&group, &id_of(group, seq)).unwrap(),
                Some(Seq(seq))
            );
        }
        assert_eq!(db.message_seq(&group, &id_of(group, 590)).unwrap(), None);
        store(&db, group, &[601], 1);
        assert_eq!(
            db.message_seq(&group, &id_of(group, 601)).unwrap(),
            Some(Seq(601))
        );
        // Deleted though its run is damaged (retention, or a facilitator's deletion).
        delete(&db, group, &[10]);
        assert_eq!(db.message_seq(&group, &id_of(group, 10)).unwrap(), None);
        assert_eq!(db.messages(&group, Seq(9), 1).unwrap()[0].seq, Seq(11));
        for seq in [1, 256, 300] {
            assert_eq!(
                db.message_seq(&other, &id_of(other, seq)).unwrap(),
                Some(Seq(seq))
            );
        }
        store(&db, other, &[301], 1);
        drop(db);
        let db = reopen(dir.path(), 0);
        for seq in [1, 256, 301] {
            assert_eq!(
                db.message_seq(&other, &id_of(other, seq)).unwrap(),
                Some(Seq(seq))
            );
        }
    }

    /// A database an older server wrote (one `message_ids` key per message) gets its runs built
    /// from its messages when it is opened, and the old tree goes.
    #[test]
    fn a_database_an_older_server_wrote_gets_its_id_runs_built_when_opened() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (GroupId([1; 16]), GroupId([2; 16]));
        {
            let db = sled::open(dir.path()).unwrap();
            let messages = db.open_tree("messages").unwrap();
            let ids = db.open_tree("message_ids").unwrap();
            for (group, count) in [(a, 600u64), (b, 3)] {
                for seq in 1..=count {
                    let message = message_in(group, seq);
                    messages
                        .insert(
                            key2(group.as_bytes(), &seq.to_be_bytes()),
                            sled_record::encode_message(&message),
                        )
                        .unwrap();
                    ids.insert(
                        key2(group.as_bytes(), message.envelope.message_id().as_bytes()),
                        &seq.to_be_bytes(),
                    )
                    .unwrap();
                }
            }
            db.flush().unwrap();
        }
        let db = reopen(dir.path(), 0);
        assert!(!db.db.tree_names().iter().any(|name| name == b"message_ids"));
        assert_eq!(ids_in_runs(&db), 603);
        for seq in [1, 256, 257, 600] {
            assert_eq!(db.message_seq(&a, &id_of(a, seq)).unwrap(), Some(Seq(seq)));
        }
        assert_eq!(db.message_seq(&b, &id_of(b, 3)).unwrap(), Some(Seq(3)));
        assert_eq!(db.message_seq(&b, &id_of(a, 3)).unwrap(), None);
        store(&db, a, &[601], 1);
        delete(&db, a, &[300]);
        drop(db);
        let db = reopen(dir.path(), 0);
        assert_eq!(db.message_seq(&a, &id_of(a, 300)).unwrap(), None);
        assert_eq!(db.message_seq(&a, &id_of(a, 601)).unwrap(), Some(Seq(601)));
    }

    /// Messages stored by a server before the binary record (JSON) are read, deleted and
    /// exported as before, side by side with new ones.
    #[test]
    fn messages_an_older_server_stored_as_json_read_as_before() {
        let dir = tempfile::tempdir().unwrap();
        let group = GroupId([1; 16]);
        let (old, new) = (message(1), message(2));
        {
            // What an older server wrote: the JSON record and its id, with raw sled calls.
            let db = sled::open(dir.path()).unwrap();
            let key = key2(group.as_bytes(), &1u64.to_be_bytes());
            let messages = db.open_tree("messages").unwrap();
            messages
                .insert(&key, serde_json::to_vec(&old).unwrap())
                .unwrap();
            let id_key = key2(group.as_bytes(), old.envelope.message_id().as_bytes());
            let ids = db.open_tree("message_ids").unwrap();
            ids.insert(id_key, &1u64.to_be_bytes()).unwrap();
            // Export wants the group's genesis op (copied as it is, so any bytes do here).
            let ops = db.open_tree("ops").unwrap();
            ops.insert(key2(group.as_bytes(), &0u64.to_be_bytes()), b"{}")
                .unwrap();
            db.flush().unwrap();
        }
        let db = reopen(dir.path(), 0);
        // The older server's id index is dropped; the id is read back from the message.
        assert!(!db.db.tree_names().iter().any(|name| name == b"message_ids"));
        let old_id = old.envelope.message_id();
        assert_eq!(db.message_seq(&group, &old_id).unwrap(), Some(Seq(1)));
        db.commit(&[Write::Message {
            group,
            message: new.clone(),
        }])
        .unwrap();
        assert_eq!(
            db.messages(&group, Seq(0), 10).unwrap(),
            vec![old.clone(), new.clone()]
        );
        // Both export as the JSON PostgreSQL stores.
        let exported: Vec<StoredMessage> = db
            .export()
            .filter_map(|r| match r.unwrap() {
                Record::Message { record, .. } => Some(serde_json::from_slice(&record).unwrap()),
                _ => None,
            })
            .collect();
        assert_eq!(exported, vec![old.clone(), new.clone()]);
        db.commit(&[Write::DeleteMessage {
            group,
            message: old.envelope.message_id(),
        }])
        .unwrap();
        assert_eq!(db.messages(&group, Seq(0), 10).unwrap(), vec![new]);
    }

    /// A disk attacker can put anything into the database: a damaged message record is a
    /// storage error for whoever reads it, and the server does not crash.
    #[test]
    fn a_damaged_message_on_disk_is_a_storage_error_not_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let group = GroupId([1; 16]);
        let db = SledStorage::open_with(dir.path(), MIN_CACHE_BYTES, 0).unwrap();
        db.commit(&[Write::Message {
            group,
            message: message(1),
        }])
        .unwrap();
        let key = key2(group.as_bytes(), &1u64.to_be_bytes());
        let stored = db.messages.get(&key).unwrap().unwrap();
        for damaged in [&stored[..40], &b"\x07garbage"[..], &b""[..]] {
            db.messages.insert(&key, damaged).unwrap();
            let err = db.messages(&group, Seq(0), 10).unwrap_err();
            assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
            assert!(db.export().any(|r| r.is_err()));
        }
    }

    #[test]
    fn a_cache_too_small_to_work_is_a_clear_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let err = SledStorage::open_with_cache(dir.path(), 100)
            .err()
            .expect("a 100-byte cache is refused");
        assert!(err.to_string().contains("at least"), "{err}");
        assert!(SledStorage::open_with_cache(dir.path(), MIN_CACHE_BYTES).is_ok());
    }
}
