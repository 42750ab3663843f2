//! The store seam: what the core asks of persistence ([`ClientStore`]), the change batch it
//! writes ([`Batch`]), and the overlay through which one step reads and writes ([`Tx`]).
//!
//! A step never writes to the store directly. It writes into its [`Tx`]'s batch, which its
//! own reads see, and the batch reaches the store in one [`ClientStore::commit`], all or
//! nothing, before anything the step implies is sent or shown (the commit rule, see the crate
//! overview).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::ops::Bound;

use serde::{Serialize, de::DeserializeOwned};
use zeroize::Zeroizing;

use crate::{MaybeSend, MaybeSync, StoreError};

pub mod cipher;
#[cfg(feature = "test-hooks")]
pub mod conformance;

/// A key and its plaintext value, as the store's scans return them.
pub type Entry = (Vec<u8>, Zeroizing<Vec<u8>>);

/// Persistence for the core: plaintext values by tree and key, read one by one or by key
/// order, written only as whole [`Batch`]es.
///
/// Values cross this interface in the clear; a backend that keeps them anywhere others could
/// read (disk, browser storage) encrypts them itself, because it holds the key. Keys are not
/// secret (group ids, sequence numbers, device ids) and may be stored in the clear, since
/// ordered scans need them.
///
/// Trees are named by `&'static str` constants of the core; a tree that was never written
/// reads as empty.
pub trait ClientStore: MaybeSend + MaybeSync {
    /// One value, decrypted. `Err(StoreError::Corrupt)` if it does not open.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] for a value that does not decrypt or was altered,
    /// [`StoreError::Db`] when the backend cannot read.
    fn get(
        &self,
        tree: &'static str,
        key: &[u8],
    ) -> impl Future<Output = Result<Option<Zeroizing<Vec<u8>>>, StoreError>> + MaybeSend;

    /// Values whose key starts with `prefix`, in key order, at most `limit`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] for a value that does not decrypt or was altered,
    /// [`StoreError::Db`] when the backend cannot read.
    fn scan(
        &self,
        tree: &'static str,
        prefix: &[u8],
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Entry>, StoreError>> + MaybeSend;

    /// Values with keys in `[start, end)`, highest first, at most `limit`. Empty when `start`
    /// is not below `end`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] for a value that does not decrypt or was altered,
    /// [`StoreError::Db`] when the backend cannot read.
    fn scan_range_rev(
        &self,
        tree: &'static str,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Entry>, StoreError>> + MaybeSend;

    /// Keys starting with `prefix`, in order, nothing decrypted (for counts).
    ///
    /// # Errors
    ///
    /// [`StoreError::Db`] when the backend cannot read.
    fn keys(
        &self,
        tree: &'static str,
        prefix: &[u8],
    ) -> impl Future<Output = Result<Vec<Vec<u8>>, StoreError>> + MaybeSend;

    /// Applies every write of `batch` atomically and durably: after a crash, all or none.
    /// When it returns `Ok`, the writes survive a crash; when it returns `Err`, none of them
    /// is visible.
    ///
    /// # Errors
    ///
    /// [`StoreError::Db`] when the batch could not be written durably; then none of it is visible.
    fn commit(&self, batch: Batch) -> impl Future<Output = Result<(), StoreError>> + MaybeSend;
}

// The trees the core keeps (values are JSON unless a comment says raw bytes); keys are in the
// clear, values encrypted by the backend. The native store's format: renaming one loses data.
pub(crate) const T_PROFILE: &str = "profile";
pub(crate) const T_GROUPS: &str = "groups";
pub(crate) const T_OPS: &str = "ops";
/// A message's record (JSON of a `ChatMessage`) by group ‖ seq; a received text's report
/// evidence is its attachment (`Tx::put_with_attachment`). Stores written before kept the
/// evidence in [`T_EVIDENCE`] instead.
pub(crate) const T_MESSAGES: &str = "messages";
pub(crate) const T_SEEN: &str = "seen";
pub(crate) const T_OWN_CHAINS: &str = "own_chains";
pub(crate) const T_RECV_CHAINS: &str = "recv_chains";
pub(crate) const T_PARKED: &str = "parked";
pub(crate) const T_KNOWN_KEYS: &str = "known_keys";
/// The newest device list seen for each other user (PROTOCOL.md §11.14), by user id.
pub(crate) const T_KNOWN_LISTS: &str = "known_lists";
pub(crate) const T_JOIN_REQUESTS: &str = "join_requests";
pub(crate) const T_PARKED_KEYS: &str = "parked_keys";
/// Report evidence (raw bytes) by group ‖ seq, as stores written before kept it; now the
/// message's record in [`T_MESSAGES`] carries it. Read (and removed with its message) for
/// those stores, never set.
pub(crate) const T_EVIDENCE: &str = "evidence";
pub(crate) const T_DELETED: &str = "deleted";
pub(crate) const T_OUTBOX: &str = "outbox";
pub(crate) const T_PENDING_JOINS: &str = "pending_joins";
pub(crate) const T_FACILITATOR_QUEUE: &str = "facilitator_queue";
/// Reports and facilitator notes already processed, by [`crate::reports::sealed_digest`] →
/// when (a `Timestamp`), so that one the server delivers again is dropped (PROTOCOL.md §7.2).
pub(crate) const T_SEALED_SEEN: &str = "sealed_seen";
/// The same, ordered by when: (time, digest) → nothing (empty JSON), to forget the oldest.
pub(crate) const T_SEALED_SEEN_ORDER: &str = "sealed_seen_order";
pub(crate) const T_PINNED: &str = "pinned";
pub(crate) const T_NOTES: &str = "notes";
pub(crate) const T_PRIVATE: &str = "private";
/// Per group, the number people see of each message (PROTOCOL.md §11.11), both ways:
/// (group, number) → seq and (group, seq) → number. Kept when the message is deleted, so
/// that a number never names another message and a deletion notice can name its number.
/// Numbers given now go 64 to a value into [`crate::numbers::T_NUMBERS`]; `number_seq` keeps
/// those of stores written before, read and never written.
pub(crate) const T_NUMBER_SEQ: &str = "number_seq";
pub(crate) const T_SEQ_NUMBER: &str = "seq_number";
/// Messages written while the group is held (its log behind what members have been seen to
/// use), sealed and posted once it has caught up.
pub(crate) const T_HELD: &str = "held";
/// Per (group, epoch, sender): the highest sender-key iteration seen and the seq it was stored
/// at, to notice when the server stored one sender's messages out of their own order.
pub(crate) const T_ORDER: &str = "order";
/// Per group, the warning topics this device hides (the person's own setting, never sent to a group or the server): group →
/// sorted topic ids.
pub(crate) const T_HIDDEN_TOPICS: &str = "hidden_topics";
/// Moderators' `add_warning`s for messages not here yet: (group, message id) → topic ids,
/// applied when the message arrives.
pub(crate) const T_PENDING_WARNINGS: &str = "pending_warnings";
/// Per (group, round id): the round's prompt and each person's latest answer as received.
pub(crate) const T_ROUNDS: &str = "rounds";
/// The person's own safety plan (one key): local, never sent.
pub(crate) const T_SAFETY_PLAN: &str = "safety_plan";
/// When the safety plan (key `plan`) and each group's hidden topics (key: the group id) were
/// last changed, by which device, and whether this device owes its other devices the change
/// (PROTOCOL.md §7.4).
pub(crate) const T_OWN_STAMPS: &str = "own_stamps";
/// Updates from this person's other devices that arrived before this device followed its own
/// device list on the connection: inbox id → item.
pub(crate) const T_OWN_WAITING: &str = "own_waiting";

/// A store key made of two parts (a group and what follows), for prefix scans by the first.
pub(crate) fn key2(a: &[u8], b: &[u8]) -> Vec<u8> {
    [a, b].concat()
}

/// A store key made of three parts.
pub(crate) fn key3(a: &[u8], b: &[u8], c: &[u8]) -> Vec<u8> {
    [a, b, c].concat()
}

/// One tree's writes in a batch: per key the last value put, or `None` for a removal.
type TreeWrites = BTreeMap<Vec<u8>, Option<Zeroizing<Vec<u8>>>>;

/// The writes of one step, to be applied together by [`ClientStore::commit`]: per tree and
/// key the last value put, or a removal. Values are plaintext and zeroized when dropped.
#[derive(Default)]
pub struct Batch {
    /// Per tree, then per key; `None` is a removal. Ordered by tree, then key, so a tree's
    /// writes are contiguous and range reads over them are cheap. Nested rather than keyed by
    /// (tree, key), so that a read finds a key without copying it: a step reads the batch for
    /// every store read it makes (thousands in a sync page).
    writes: BTreeMap<&'static str, TreeWrites>,
}

impl std::fmt::Debug for Batch {
    /// Only the size: values are plaintext.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("writes", &self.len())
            .finish()
    }
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Sets `tree`/`key` to `value`, replacing any earlier write of that key in this batch.
    pub fn put(&mut self, tree: &'static str, key: &[u8], value: Zeroizing<Vec<u8>>) {
        self.write(tree, key, Some(value));
    }

    /// Removes `tree`/`key`, replacing any earlier write of that key in this batch.
    pub fn remove(&mut self, tree: &'static str, key: &[u8]) {
        self.write(tree, key, None);
    }

    /// Sets (or, with `None`, removes) `tree`/`key`; the key is copied only when it is new.
    fn write(&mut self, tree: &'static str, key: &[u8], value: Option<Zeroizing<Vec<u8>>>) {
        let writes = self.writes.entry(tree).or_default();
        match writes.get_mut(key) {
            Some(slot) => *slot = value,
            None => {
                writes.insert(key.to_vec(), value);
            }
        }
    }

    /// This batch's write of `tree`/`key`: `None` if it has none, `Some(None)` if it removes
    /// it, `Some(Some(value))` if it sets it.
    pub fn get(&self, tree: &'static str, key: &[u8]) -> Option<Option<&[u8]>> {
        self.writes
            .get(tree)?
            .get(key)
            .map(|value| value.as_ref().map(|v| v.as_slice()))
    }

    /// Every write as (tree, key, value or `None` for a removal), ordered by tree, then key.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &[u8], Option<&[u8]>)> {
        self.writes.iter().flat_map(|(tree, writes)| {
            writes
                .iter()
                .map(|(key, value)| (*tree, key.as_slice(), value.as_ref().map(|v| v.as_slice())))
        })
    }

    /// The trees this batch writes to, each once, in order.
    pub fn trees(&self) -> Vec<&'static str> {
        // A tree's map is made by its first write and never emptied.
        self.writes.keys().copied().collect()
    }

    /// Whether the batch writes nothing.
    pub fn is_empty(&self) -> bool {
        self.writes.values().all(BTreeMap::is_empty)
    }

    /// How many keys the batch writes (puts and removals).
    pub fn len(&self) -> usize {
        self.writes.values().map(BTreeMap::len).sum()
    }

    /// This batch's writes in `tree` whose key starts with `prefix`, in key order.
    fn with_prefix<'a>(
        &'a self,
        tree: &'static str,
        prefix: &'a [u8],
    ) -> impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)> + 'a {
        // Keys with a given prefix are contiguous in key order, starting at the prefix itself.
        self.writes
            .get(tree)
            .into_iter()
            .flat_map(move |writes| {
                writes.range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
            })
            .take_while(move |(key, _)| key.starts_with(prefix))
            .map(|(key, value)| (key.as_slice(), value.as_ref().map(|v| v.as_slice())))
    }

    /// This batch's writes in `tree` with keys in `[start, end)`, in key order.
    fn in_range<'a>(
        &'a self,
        tree: &'static str,
        start: &[u8],
        end: &[u8],
    ) -> Vec<(&'a [u8], Option<&'a [u8]>)> {
        // `BTreeMap::range` panics on an inverted range; an empty one is what the store gives.
        if start >= end {
            return Vec::new();
        }
        let Some(writes) = self.writes.get(tree) else {
            return Vec::new();
        };
        writes
            .range::<[u8], _>((Bound::Included(start), Bound::Excluded(end)))
            .map(|(key, value)| (key.as_slice(), value.as_ref().map(|v| v.as_slice())))
            .collect()
    }
}

/// Parses a decrypted JSON value; a value that does not parse is a corrupt store. Shared by the
/// store backends, so every one reports damage the same way.
///
/// # Errors
///
/// [`StoreError::Corrupt`] naming `tree` and `key` if `plain` is not a `T`.
pub fn parse<T: DeserializeOwned>(tree: &str, key: &[u8], plain: &[u8]) -> Result<T, StoreError> {
    let (json, _) = split_attachment(plain).ok_or_else(|| corrupt(tree, key))?;
    serde_json::from_slice(json).map_err(|_| corrupt(tree, key))
}

/// First byte of a value that carries raw bytes after its JSON ([`with_attachment`]). No JSON
/// text starts with it (only whitespace, `{`, `[`, `"`, `-`, a digit, `t`, `f` or `n` can), so
/// a plain JSON value reads as it always did.
const ATTACHED: u8 = 0x01;

/// Bytes before the JSON of a value with an attachment: [`ATTACHED`], then the JSON's length.
const ATTACHED_HEADER: usize = 1 + 4;

/// A value made of JSON and raw bytes that belong with it, under one store key instead of
/// two (a message's record and its report evidence, PROTOCOL.md §11.2 step 16): [`ATTACHED`] ‖
/// the JSON's length (u32, big-endian) ‖ the JSON ‖ the attachment. Every store key costs the
/// native store several microseconds to write, whatever its size (BENCHMARKS.md, "Issue 20, an
/// eighth round").
///
/// # Errors
///
/// [`StoreError::Db`] if `value` cannot be serialized, or its JSON is 4 GiB or more.
fn with_attachment<T: Serialize>(
    value: &T,
    attachment: &[u8],
) -> Result<Zeroizing<Vec<u8>>, StoreError> {
    let json =
        Zeroizing::new(serde_json::to_vec(value).map_err(|e| StoreError::Db(e.to_string()))?);
    let len = u32::try_from(json.len())
        .map_err(|_| StoreError::Db("a value too large for the store".into()))?;
    let mut framed = Zeroizing::new(Vec::with_capacity(
        ATTACHED_HEADER + json.len() + attachment.len(),
    ));
    framed.push(ATTACHED);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(&json);
    framed.extend_from_slice(attachment);
    Ok(framed)
}

/// A stored value's JSON and its attachment, if it has one ([`with_attachment`]); `None` for
/// a value with an attachment header that does not fit it (a damaged value).
fn split_attachment(plain: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
    let Some((&ATTACHED, rest)) = plain.split_first() else {
        return Some((plain, None));
    };
    let (len, rest) = rest.split_first_chunk::<4>()?;
    let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
    let (json, attachment) = rest.split_at_checked(len)?;
    Some((json, Some(attachment)))
}

/// [`StoreError::Corrupt`] for the value at `tree`/`key`: it was read, but is not what that
/// place holds.
pub(crate) fn corrupt(tree: &str, key: &[u8]) -> StoreError {
    StoreError::Corrupt {
        tree: tree.into(),
        key: hex::encode(key),
    }
}

/// Parses every entry of a scan as JSON, in order (the typed scans and the store backends share
/// this).
///
/// # Errors
///
/// [`StoreError::Corrupt`] for the first entry that is not a `T`.
pub fn parse_all<T: DeserializeOwned>(
    tree: &str,
    entries: Vec<Entry>,
) -> Result<Vec<(Vec<u8>, T)>, StoreError> {
    entries
        .into_iter()
        .map(|(key, plain)| {
            let value = parse(tree, &key, &plain)?;
            Ok((key, value))
        })
        .collect()
}

/// Store entries overlaid with a batch's writes (the batch wins), ordered by key (highest
/// first if `reverse`), at most `limit`.
fn merge(
    stored: Vec<Entry>,
    pending: &[(&[u8], Option<&[u8]>)],
    reverse: bool,
    limit: usize,
) -> Vec<Entry> {
    let mut merged: BTreeMap<Vec<u8>, Zeroizing<Vec<u8>>> = stored.into_iter().collect();
    for (key, value) in pending {
        match value {
            Some(value) => {
                merged.insert(key.to_vec(), Zeroizing::new(value.to_vec()));
            }
            None => {
                merged.remove(*key);
            }
        }
    }
    if reverse {
        merged.into_iter().rev().take(limit).collect()
    } else {
        merged.into_iter().take(limit).collect()
    }
}

/// How many entries to read from the store so that, after `pending` is laid over them, the
/// first `limit` are right: every removal in the range may hide one stored entry, and puts
/// only add entries. (If a stored entry past `limit + removals` belonged in the result, the
/// `limit + removals` stored entries before it would leave at least `limit` visible ones
/// ahead of it.)
fn store_limit(pending: &[(&[u8], Option<&[u8]>)], limit: usize) -> usize {
    let removals = pending.iter().filter(|(_, value)| value.is_none()).count();
    limit.saturating_add(removals)
}

/// One step's view of the store: reads see the step's own writes, and writes go only into the
/// step's [`Batch`] until [`Tx::commit`].
///
/// Typed reads and writes are JSON; a stored value that does not parse is
/// [`StoreError::Corrupt`] naming its tree and key. Writes cannot fail except in serializing,
/// since they only touch memory; everything that can fail on the way to disk happens at once
/// in [`Tx::commit`].
pub struct Tx<S> {
    /// The persistent store under the overlay.
    store: S,
    /// What this step has written and not yet committed.
    batch: Batch,
    /// A store failure met during the step that must not be committed over
    /// ([`Tx::fail_step`]): the commit fails with it and the step is reverted.
    fault: Option<StoreError>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for Tx<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx")
            .field("store", &self.store)
            .field("batch", &self.batch)
            .finish()
    }
}

impl<S: ClientStore> Tx<S> {
    /// An overlay with nothing written yet over `store`.
    pub fn new(store: S) -> Tx<S> {
        Tx {
            store,
            batch: Batch::new(),
            fault: None,
        }
    }

    /// The store under the overlay (reads on it do not see uncommitted writes).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The writes not yet committed.
    pub fn pending(&self) -> &Batch {
        &self.batch
    }

    /// Whether anything was written since the last commit.
    pub fn is_dirty(&self) -> bool {
        !self.batch.is_empty()
    }

    /// Forgets every write since the last commit (reverting a step that failed).
    pub fn discard(&mut self) {
        self.batch = Batch::new();
        self.fault = None;
    }

    /// The step met a store failure that keeping the rest of its writes would make worse (a
    /// received message's key used up while the message is not stored, say): its next commit
    /// fails with `e` (the first such failure) and stores none of its writes, so the step is
    /// reverted as a whole (PROTOCOL.md §11.12).
    pub(crate) fn fail_step(&mut self, e: StoreError) {
        self.fault.get_or_insert(e);
    }

    /// Commits the step's writes, all or none, and starts a new empty batch. Nothing to commit
    /// is `Ok` without touching the store. On `Err` the writes are dropped as well: none of
    /// them reached the store, and the caller reverts what it derived from them in memory.
    ///
    /// # Errors
    ///
    /// Those of the store's [`ClientStore::commit`], or the failure the step met (a store read
    /// that failed while the step was being worked out); the step's writes are dropped either
    /// way.
    pub async fn commit(&mut self) -> Result<(), StoreError> {
        if let Some(e) = self.fault.take() {
            self.batch = Batch::new();
            return Err(e);
        }
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        self.store.commit(batch).await
    }

    /// One value: this step's write of it if any, else the stored one.
    ///
    /// # Errors
    ///
    /// Those of [`ClientStore::get`].
    pub async fn get_bytes(
        &self,
        tree: &'static str,
        key: &[u8],
    ) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        match self.batch.get(tree, key) {
            Some(value) => Ok(value.map(|v| Zeroizing::new(v.to_vec()))),
            None => self.store.get(tree, key).await,
        }
    }

    /// One JSON value: this step's write of it if any, else the stored one.
    ///
    /// # Errors
    ///
    /// Those of [`ClientStore::get`], and [`StoreError::Corrupt`] for a value that is not JSON of
    /// a `T`.
    pub async fn get<T: DeserializeOwned>(
        &self,
        tree: &'static str,
        key: &[u8],
    ) -> Result<Option<T>, StoreError> {
        match self.get_bytes(tree, key).await? {
            Some(plain) => parse(tree, key, &plain).map(Some),
            None => Ok(None),
        }
    }

    /// Sets `tree`/`key` to raw bytes in this step's batch.
    pub fn put_bytes(&mut self, tree: &'static str, key: &[u8], value: &[u8]) {
        self.batch.put(tree, key, Zeroizing::new(value.to_vec()));
    }

    /// Sets `tree`/`key` to `value` as JSON in this step's batch; fails only if `value` does
    /// not serialize.
    ///
    /// # Errors
    ///
    /// [`StoreError::Db`] if `value` cannot be serialized (nothing is written).
    pub fn put<T: Serialize>(
        &mut self,
        tree: &'static str,
        key: &[u8],
        value: &T,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_vec(value).map_err(|e| StoreError::Db(e.to_string()))?;
        self.batch.put(tree, key, Zeroizing::new(json));
        Ok(())
    }

    /// Sets `tree`/`key` to `value` as JSON with `attachment` after it, in one value
    /// ([`Self::attachment`] and [`Self::get_with_attachment`] read it back; [`Self::get`]
    /// and the scans read the JSON as always); with `None`, as [`Self::put`]. Fails only if
    /// `value` does not serialize.
    ///
    /// # Errors
    ///
    /// [`StoreError::Db`] if `value` cannot be serialized (nothing is written).
    pub fn put_with_attachment<T: Serialize>(
        &mut self,
        tree: &'static str,
        key: &[u8],
        value: &T,
        attachment: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let Some(attachment) = attachment else {
            return self.put(tree, key, value);
        };
        let framed = with_attachment(value, attachment)?;
        self.batch.put(tree, key, framed);
        Ok(())
    }

    /// One JSON value and its attachment ([`Self::put_with_attachment`]), from one read: for
    /// rewriting a record whose attachment must outlive the rewrite.
    ///
    /// # Errors
    ///
    /// Those of [`ClientStore::get`], and [`StoreError::Corrupt`] for a value that is not
    /// JSON of a `T` or whose attachment header does not fit it.
    pub async fn get_with_attachment<T: DeserializeOwned>(
        &self,
        tree: &'static str,
        key: &[u8],
    ) -> Result<Option<(T, Option<Zeroizing<Vec<u8>>>)>, StoreError> {
        let Some(plain) = self.get_bytes(tree, key).await? else {
            return Ok(None);
        };
        let (json, attachment) = split_attachment(&plain).ok_or_else(|| corrupt(tree, key))?;
        let value = serde_json::from_slice(json).map_err(|_| corrupt(tree, key))?;
        Ok(Some((
            value,
            attachment.map(|bytes| Zeroizing::new(bytes.to_vec())),
        )))
    }

    /// The attachment of the value at `tree`/`key` ([`Self::put_with_attachment`]): `None`
    /// when there is no value or it has none.
    ///
    /// # Errors
    ///
    /// Those of [`ClientStore::get`], and [`StoreError::Corrupt`] for a value whose
    /// attachment header does not fit it.
    pub async fn attachment(
        &self,
        tree: &'static str,
        key: &[u8],
    ) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        let Some(plain) = self.get_bytes(tree, key).await? else {
            return Ok(None);
        };
        let (_, attachment) = split_attachment(&plain).ok_or_else(|| corrupt(tree, key))?;
        Ok(attachment.map(|bytes| Zeroizing::new(bytes.to_vec())))
    }

    /// Removes `tree`/`key` in this step's batch.
    pub fn remove(&mut self, tree: &'static str, key: &[u8]) {
        self.batch.remove(tree, key);
    }

    /// Raw values whose key starts with `prefix`, in key order, at most `limit`, as they will
    /// be once this step is committed.
    ///
    /// # Errors
    ///
    /// Those of [`ClientStore::scan`].
    pub async fn scan_bytes(
        &self,
        tree: &'static str,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let pending: Vec<_> = self.batch.with_prefix(tree, prefix).collect();
        if pending.is_empty() {
            return self.store.scan(tree, prefix, limit).await;
        }
        let stored = self
            .store
            .scan(tree, prefix, store_limit(&pending, limit))
            .await?;
        Ok(merge(stored, &pending, false, limit))
    }

    /// JSON values whose key starts with `prefix`, in key order, at most `limit`, as they will
    /// be once this step is committed.
    ///
    /// # Errors
    ///
    /// Those of [`ClientStore::scan`], and [`StoreError::Corrupt`] for a value that is not JSON of
    /// a `T`.
    pub async fn scan<T: DeserializeOwned>(
        &self,
        tree: &'static str,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, T)>, StoreError> {
        parse_all(tree, self.scan_bytes(tree, prefix, limit).await?)
    }

    /// Raw values with keys in `[start, end)`, highest first, at most `limit`, as they will be
    /// once this step is committed.
    ///
    /// # Errors
    ///
    /// Those of [`ClientStore::scan_range_rev`].
    pub async fn scan_range_rev_bytes(
        &self,
        tree: &'static str,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let pending = self.batch.in_range(tree, start, end);
        if pending.is_empty() {
            return self.store.scan_range_rev(tree, start, end, limit).await;
        }
        let stored = self
            .store
            .scan_range_rev(tree, start, end, store_limit(&pending, limit))
            .await?;
        Ok(merge(stored, &pending, true, limit))
    }

    /// JSON values with keys in `[start, end)`, highest first, at most `limit`, as they will
    /// be once this step is committed.
    ///
    /// # Errors
    ///
    /// Those of [`ClientStore::scan_range_rev`], and [`StoreError::Corrupt`] for a value that is
    /// not JSON of a `T`.
    pub async fn scan_range_rev<T: DeserializeOwned>(
        &self,
        tree: &'static str,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, T)>, StoreError> {
        parse_all(
            tree,
            self.scan_range_rev_bytes(tree, start, end, limit).await?,
        )
    }

    /// The keys starting with `prefix` once this step is committed, in order. Nothing is
    /// decrypted.
    pub async fn keys(
        &self,
        tree: &'static str,
        prefix: &[u8],
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let stored = self.store.keys(tree, prefix).await?;
        let mut pending = self.batch.with_prefix(tree, prefix).peekable();
        if pending.peek().is_none() {
            return Ok(stored);
        }
        let mut keys: BTreeSet<Vec<u8>> = stored.into_iter().collect();
        for (key, value) in pending {
            if value.is_some() {
                keys.insert(key.to_vec());
            } else {
                keys.remove(key);
            }
        }
        Ok(keys.into_iter().collect())
    }

    /// How many values have a key starting with `prefix` once this step is committed, and the
    /// first such key. Nothing is decrypted.
    ///
    /// # Errors
    ///
    /// Those of [`ClientStore::keys`].
    pub async fn count(
        &self,
        tree: &'static str,
        prefix: &[u8],
    ) -> Result<(usize, Option<Vec<u8>>), StoreError> {
        let stored = self.store.keys(tree, prefix).await?;
        let mut pending = self.batch.with_prefix(tree, prefix).peekable();
        if pending.peek().is_none() {
            let first = stored.first().cloned();
            return Ok((stored.len(), first));
        }
        let mut keys: BTreeSet<Vec<u8>> = stored.into_iter().collect();
        for (key, value) in pending {
            if value.is_some() {
                keys.insert(key.to_vec());
            } else {
                keys.remove(key);
            }
        }
        Ok((keys.len(), keys.first().cloned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;
    use pollster::block_on;

    /// A store holding `entries` in `tree`, committed, and an overlay on it.
    fn tx_over(tree: &'static str, entries: &[(&[u8], &str)]) -> (MemoryStore, Tx<MemoryStore>) {
        let store = MemoryStore::new();
        let mut batch = Batch::new();
        for (key, value) in entries {
            batch.put(
                tree,
                key,
                Zeroizing::new(serde_json::to_vec(value).unwrap()),
            );
        }
        block_on(store.commit(batch)).unwrap();
        (store.clone(), Tx::new(store))
    }

    fn keys<T>(entries: &[(Vec<u8>, T)]) -> Vec<&[u8]> {
        entries.iter().map(|(k, _)| k.as_slice()).collect()
    }

    /// Compiles only if the overlay's futures are `Send` for every store, which the native
    /// shell needs to spawn the core on a multi-threaded runtime.
    #[allow(dead_code)]
    fn tx_futures_are_send_for_any_store<S: ClientStore>(tx: &mut Tx<S>) {
        fn send<T: Send>(_: T) {}
        send(tx.get::<String>("t", b"k"));
        send(tx.scan::<String>("t", b"k", 1));
        send(tx.scan_range_rev::<String>("t", b"a", b"b", 1));
        send(tx.count("t", b"k"));
        send(tx.commit());
    }

    #[test]
    fn a_value_with_an_attachment_reads_as_its_json_and_keeps_the_attachment_when_rewritten() {
        let (store, mut tx) = tx_over("messages", &[(b"plain", "before")]);
        tx.put_with_attachment("messages", b"m", &"record".to_string(), Some(b"evidence"))
            .unwrap();
        block_on(tx.commit()).unwrap();
        let mut tx = Tx::new(store.clone());
        let read =
            |tx: &Tx<MemoryStore>, key: &[u8]| block_on(tx.get::<String>("messages", key)).unwrap();
        assert_eq!(read(&tx, b"m").as_deref(), Some("record"));
        assert_eq!(read(&tx, b"plain").as_deref(), Some("before"));
        let scanned: Vec<(Vec<u8>, String)> = block_on(tx.scan("messages", b"", 10)).unwrap();
        assert_eq!(scanned[0].1, "record");
        let attachment = |tx: &Tx<MemoryStore>, key: &[u8]| {
            block_on(tx.attachment("messages", key))
                .unwrap()
                .map(|a| a.to_vec())
        };
        assert_eq!(attachment(&tx, b"m").as_deref(), Some(&b"evidence"[..]));
        assert_eq!(attachment(&tx, b"plain"), None);
        assert_eq!(attachment(&tx, b"absent"), None);
        // Rewritten, in this step and once committed, the record keeps its attachment.
        for (key, text) in [(&b"m"[..], "warned"), (b"plain", "after")] {
            let (_, kept) = block_on(tx.get_with_attachment::<String>("messages", key))
                .unwrap()
                .unwrap();
            tx.put_with_attachment(
                "messages",
                key,
                &text.to_string(),
                kept.as_deref().map(Vec::as_slice),
            )
            .unwrap();
        }
        assert_eq!(read(&tx, b"m").as_deref(), Some("warned"));
        block_on(tx.commit()).unwrap();
        let tx = Tx::new(store);
        assert_eq!(read(&tx, b"m").as_deref(), Some("warned"));
        assert_eq!(attachment(&tx, b"m").as_deref(), Some(&b"evidence"[..]));
        assert_eq!(read(&tx, b"plain").as_deref(), Some("after"));
        assert_eq!(attachment(&tx, b"plain"), None);
    }

    #[test]
    fn a_value_whose_attachment_header_does_not_fit_it_is_corrupt() {
        let json = br#""record""#;
        let mut too_long = vec![ATTACHED];
        too_long.extend_from_slice(&(json.len() as u32 + 1).to_be_bytes());
        too_long.extend_from_slice(json);
        for damaged in [vec![ATTACHED], vec![ATTACHED, 0, 0], too_long] {
            assert!(matches!(
                parse::<String>("messages", b"m", &damaged),
                Err(StoreError::Corrupt { .. })
            ));
            let store = MemoryStore::new();
            let mut batch = Batch::new();
            batch.put("messages", b"m", Zeroizing::new(damaged));
            block_on(store.commit(batch)).unwrap();
            let tx = Tx::new(store);
            assert!(matches!(
                block_on(tx.attachment("messages", b"m")),
                Err(StoreError::Corrupt { .. })
            ));
        }
        // An empty attachment is an attachment.
        let mut empty = vec![ATTACHED];
        empty.extend_from_slice(&(json.len() as u32).to_be_bytes());
        empty.extend_from_slice(json);
        assert_eq!(parse::<String>("messages", b"m", &empty).unwrap(), "record");
    }

    #[test]
    fn a_step_reads_its_own_writes_and_the_store_sees_them_only_after_commit() {
        let (store, mut tx) = tx_over("groups", &[(b"g1", "old")]);
        tx.put("groups", b"g1", &"new".to_string()).unwrap();
        tx.put("groups", b"g2", &"added".to_string()).unwrap();
        assert_eq!(
            block_on(tx.get::<String>("groups", b"g1"))
                .unwrap()
                .as_deref(),
            Some("new")
        );
        assert_eq!(
            block_on(tx.get::<String>("groups", b"g2"))
                .unwrap()
                .as_deref(),
            Some("added")
        );
        assert!(block_on(store.get("groups", b"g2")).unwrap().is_none());

        block_on(tx.commit()).unwrap();
        assert!(!tx.is_dirty());
        let fresh = Tx::new(store);
        assert_eq!(
            block_on(fresh.get::<String>("groups", b"g1"))
                .unwrap()
                .as_deref(),
            Some("new")
        );
        assert_eq!(
            block_on(fresh.get::<String>("groups", b"g2"))
                .unwrap()
                .as_deref(),
            Some("added")
        );
    }

    #[test]
    fn a_removal_in_the_step_hides_the_stored_value_from_every_read() {
        let (store, mut tx) = tx_over("seen", &[(b"a1", "1"), (b"a2", "2")]);
        tx.remove("seen", b"a1");
        assert_eq!(block_on(tx.get_bytes("seen", b"a1")).unwrap(), None);
        assert_eq!(
            keys(&block_on(tx.scan::<String>("seen", b"a", usize::MAX)).unwrap()),
            vec![&b"a2"[..]]
        );
        assert_eq!(
            block_on(tx.count("seen", b"a")).unwrap(),
            (1, Some(b"a2".to_vec()))
        );
        assert_eq!(
            keys(&block_on(tx.scan_range_rev::<String>("seen", b"a", b"b", 10)).unwrap()),
            vec![&b"a2"[..]]
        );
        // Still stored until the step commits; discarding the step brings it back.
        assert!(block_on(store.get("seen", b"a1")).unwrap().is_some());
        tx.discard();
        assert!(block_on(tx.get_bytes("seen", b"a1")).unwrap().is_some());

        tx.remove("seen", b"a1");
        block_on(tx.commit()).unwrap();
        assert!(block_on(store.get("seen", b"a1")).unwrap().is_none());
    }

    #[test]
    fn scans_merge_the_step_with_the_store_in_key_order_and_apply_the_limit_after() {
        let (_store, mut tx) = tx_over(
            "ops",
            &[
                (b"g1-1", "s1"),
                (b"g1-2", "s2"),
                (b"g1-3", "s3"),
                (b"g1-5", "s5"),
                (b"g2-1", "x"),
            ],
        );
        // The first two stored entries are removed: a store read limited to 1 would find only
        // removed entries and wrongly return nothing.
        tx.remove("ops", b"g1-1");
        tx.remove("ops", b"g1-2");
        tx.put("ops", b"g1-4", &"b4".to_string()).unwrap();
        tx.put("ops", b"g1-5", &"b5".to_string()).unwrap();
        tx.put("ops", b"g3-1", &"other group".to_string()).unwrap();

        let first: Vec<(Vec<u8>, String)> = block_on(tx.scan("ops", b"g1-", 1)).unwrap();
        assert_eq!(first, vec![(b"g1-3".to_vec(), "s3".to_string())]);

        let all: Vec<(Vec<u8>, String)> = block_on(tx.scan("ops", b"g1-", usize::MAX)).unwrap();
        assert_eq!(
            all,
            vec![
                (b"g1-3".to_vec(), "s3".to_string()),
                (b"g1-4".to_vec(), "b4".to_string()),
                (b"g1-5".to_vec(), "b5".to_string()),
            ]
        );
        let two: Vec<(Vec<u8>, String)> = block_on(tx.scan("ops", b"g1-", 2)).unwrap();
        assert_eq!(keys(&two), vec![&b"g1-3"[..], &b"g1-4"[..]]);
        assert_eq!(
            block_on(tx.count("ops", b"g1-")).unwrap(),
            (3, Some(b"g1-3".to_vec()))
        );
        assert_eq!(
            block_on(tx.count("ops", b"g2-")).unwrap(),
            (1, Some(b"g2-1".to_vec()))
        );
        assert_eq!(block_on(tx.count("ops", b"g4-")).unwrap(), (0, None));
        // The whole tree, both groups, in key order.
        let everything: Vec<(Vec<u8>, String)> = block_on(tx.scan("ops", b"", usize::MAX)).unwrap();
        assert_eq!(
            keys(&everything),
            vec![
                &b"g1-3"[..],
                &b"g1-4"[..],
                &b"g1-5"[..],
                &b"g2-1"[..],
                &b"g3-1"[..]
            ]
        );
    }

    #[test]
    fn a_count_sees_keys_only_the_step_added() {
        let (_store, mut tx) = tx_over("held", &[]);
        assert_eq!(block_on(tx.count("held", b"g1")).unwrap(), (0, None));
        tx.put_bytes("held", b"g1-b", b"2");
        tx.put_bytes("held", b"g1-a", b"1");
        assert_eq!(
            block_on(tx.count("held", b"g1")).unwrap(),
            (2, Some(b"g1-a".to_vec()))
        );
    }

    #[test]
    fn a_reverse_range_scan_merges_newest_first_within_the_range() {
        let (_store, mut tx) = tx_over(
            "messages",
            &[
                (b"m1", "1"),
                (b"m2", "2"),
                (b"m3", "3"),
                (b"m4", "4"),
                (b"m6", "6"),
            ],
        );
        tx.remove("messages", b"m4");
        tx.put("messages", b"m35", &"new".to_string()).unwrap();
        // Outside [m2, m5): neither may show.
        tx.put("messages", b"m5", &"at end".to_string()).unwrap();
        tx.put("messages", b"m0", &"before start".to_string())
            .unwrap();

        let newest: Vec<(Vec<u8>, String)> =
            block_on(tx.scan_range_rev("messages", b"m2", b"m5", 2)).unwrap();
        assert_eq!(
            newest,
            vec![
                (b"m35".to_vec(), "new".to_string()),
                (b"m3".to_vec(), "3".to_string())
            ]
        );
        let all: Vec<(Vec<u8>, String)> =
            block_on(tx.scan_range_rev("messages", b"m2", b"m5", usize::MAX)).unwrap();
        assert_eq!(keys(&all), vec![&b"m35"[..], &b"m3"[..], &b"m2"[..]]);
        // An inverted or empty range is empty, not a panic.
        assert!(
            block_on(tx.scan_range_rev_bytes("messages", b"m5", b"m2", 9))
                .unwrap()
                .is_empty()
        );
        assert!(
            block_on(tx.scan_range_rev_bytes("messages", b"m2", b"m2", 9))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_stored_value_that_is_not_the_expected_json_is_reported_as_corrupt_with_its_place() {
        let (_store, mut tx) = tx_over("groups", &[]);
        tx.put_bytes("groups", b"\x01\x02", b"not json");
        match block_on(tx.get::<String>("groups", b"\x01\x02")) {
            Err(StoreError::Corrupt { tree, key }) => {
                assert_eq!(tree, "groups");
                assert_eq!(key, "0102");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        assert!(matches!(
            block_on(tx.scan::<String>("groups", b"", 10)),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn the_last_write_of_a_key_in_a_step_wins() {
        let (store, mut tx) = tx_over("outbox", &[(b"k", "stored")]);
        tx.put("outbox", b"k", &"first".to_string()).unwrap();
        tx.remove("outbox", b"k");
        tx.put("outbox", b"k", &"last".to_string()).unwrap();
        assert_eq!(tx.pending().len(), 1);
        block_on(tx.commit()).unwrap();
        let fresh = Tx::new(store);
        assert_eq!(
            block_on(fresh.get::<String>("outbox", b"k"))
                .unwrap()
                .as_deref(),
            Some("last")
        );
    }
}
