//! Storage behind a trait, so that the relay logic does not know which database holds the data.
//! [`SledStorage`] is the embedded default; [`PostgresStorage`] lets several server nodes share
//! one database. [`migrate`] copies a sled database into PostgreSQL, and [`test_database`] gives
//! tests a fresh PostgreSQL database.
//!
//! Everything stored is ciphertext, signed group-log ops, public keys and metadata: the server has
//! nothing else.
//!
//! Durability contract: [`Storage::commit`] returns only once every write of the batch is on
//! disk (or returns an error, in which case the caller acknowledges none of them). Reads see
//! committed writes.

pub mod migrate;
pub mod postgres;
mod sled_id_index;
mod sled_record;
mod sled_store;
pub mod test_database;

pub use migrate::{MigrationReport, sled_to_postgres};
pub use postgres::{PostgresOptions, PostgresStorage};
pub use sled_id_index::{DEFAULT_IDS_IN_MEMORY, MIN_IDS_IN_MEMORY, RUN_LEN};
pub use sled_store::{DEFAULT_CACHE_BYTES, DEFAULT_MIN_FREE_BYTES, MIN_CACHE_BYTES, SledStorage};

use confide_protocol::device_list::{IdentityKey, SignedDeviceList};
use confide_protocol::frames::{InboxItem, StoredMessage};
use confide_protocol::group_log::SignedOp;
use confide_protocol::{DeviceId, DeviceKeys, GroupId, MessageId, Seq, Timestamp, UserId};
use serde::{Deserialize, Serialize};

/// The share of a recipient's inbox every join request counts towards, whoever sent it: join
/// requests come from devices that are not members yet, and one person can register many, so
/// they share one allowance — and a flood of them can never crowd out members' reports and
/// urgent requests. (The all-zero key is a small-order point, never a registered device.)
pub const JOIN_REQUESTS_SHARE: DeviceId = DeviceId([0; 32]);

/// The shares of its recipient's inbox an item counts towards: its sender's, and for join
/// requests also [`JOIN_REQUESTS_SHARE`] (so that one sender's join requests count against both:
/// the joint allowance, and the sender's own, which is small for join requests).
pub fn inbox_shares(payload: &confide_protocol::seal::SealedPayload) -> Vec<DeviceId> {
    if payload.kind == confide_protocol::seal::SealKind::JoinRequest {
        vec![payload.sender, JOIN_REQUESTS_SHARE]
    } else {
        vec![payload.sender]
    }
}

/// A registered device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// The user the device belongs to.
    pub user: UserId,
    /// The device's public keys.
    pub keys: DeviceKeys,
    /// The pseudonym chosen at registration.
    pub display_name: String,
    /// When it registered.
    pub registered_at: Timestamp,
}

/// One write in a batch.
#[derive(Clone, Debug)]
pub enum Write {
    /// Register (or re-register) a device.
    Device(DeviceRecord),
    /// Append a group-log op at its sequence number.
    Op {
        /// The group.
        group: GroupId,
        /// The op's sequence number in the log (0 = genesis).
        seq: u64,
        /// The op.
        op: SignedOp,
    },
    /// Store a message at its sequence number.
    Message {
        /// The group.
        group: GroupId,
        /// The message and its sequence number.
        message: StoredMessage,
    },
    /// Delete a stored message (delete for everyone, retention).
    DeleteMessage {
        /// The group.
        group: GroupId,
        /// The message id.
        message: MessageId,
    },
    /// Delete a stored message past its group's retention period. The retention sweep knows
    /// both its seq and its id, so the embedded store need not load the group's id index (a
    /// sweep would otherwise load every group it expires messages of).
    ExpireMessage {
        /// The group.
        group: GroupId,
        /// Its sequence number.
        seq: Seq,
        /// Its id.
        message: MessageId,
    },
    /// Put an item into a device's inbox.
    Inbox {
        /// The recipient.
        device: DeviceId,
        /// The item.
        item: InboxItem,
    },
    /// Remove an acknowledged inbox item.
    AckInbox {
        /// The recipient.
        device: DeviceId,
        /// The item id.
        inbox_id: u64,
    },
    /// Make `list` the user's current device list (PROTOCOL.md §3.6), and record its identity
    /// key as the user's (an identity key belongs to one user id).
    DeviceList {
        /// The user.
        user: UserId,
        /// The list's identity key.
        identity: IdentityKey,
        /// The list, as signed.
        list: SignedDeviceList,
    },
    /// A device list dropped `device`: remember it as unlinked (for good), unregister it, and
    /// delete every item of its inbox. Inbox items for it in this batch or any later one are
    /// not stored.
    Unlink {
        /// The user it belonged to.
        user: UserId,
        /// The device.
        device: DeviceId,
    },
}

/// What each write is counted as beyond its variable-size content (keys, indexes, JSON framing,
/// timestamps), in [`Write::size`].
pub const RECORD_OVERHEAD: usize = 256;

/// The bytes of an inbox item that grow with what was sealed: its ciphertext and its HPKE
/// encapsulation (1,120 bytes with X-Wing, PROTOCOL.md §4.1 — more than the ciphertext of a
/// sender key). What an inbox backlog page and [`Write::size`] count.
pub fn inbox_item_bytes(item: &InboxItem) -> usize {
    item.payload
        .ciphertext
        .len()
        .saturating_add(item.payload.enc.as_bytes().len())
}

impl Write {
    /// About how many bytes the write stores: its ciphertext, op bytes or public keys as base64,
    /// plus [`RECORD_OVERHEAD`]. Used to keep write batches within their byte cap; the
    /// free-space check uses the exact encoded size.
    pub fn size(&self) -> usize {
        let content = match self {
            Write::Op { op, .. } => op.op.len(),
            Write::Message { message, .. } => message.envelope.ciphertext.len(),
            Write::Inbox { item, .. } => inbox_item_bytes(item),
            Write::DeviceList { list, .. } => list.list.len(),
            // The X-Wing key (1,216 bytes) is most of a device record.
            Write::Device(record) => record
                .keys
                .pq_key
                .as_ref()
                .map_or(0, |key| key.as_bytes().len()),
            Write::DeleteMessage { .. }
            | Write::ExpireMessage { .. }
            | Write::AckInbox { .. }
            | Write::Unlink { .. } => 0,
        };
        // Base64 stores 4 bytes for every 3.
        (content / 3)
            .saturating_mul(4)
            .saturating_add(RECORD_OVERHEAD)
    }
}

/// A storage failure. Nothing in the failed batch was acknowledged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The database reported an I/O or corruption error.
    #[error("storage backend error: {0}")]
    Backend(String),
    /// The disk is (nearly) full: the batch was refused before anything was written, the
    /// database is intact, and writes go ahead again by themselves once space is freed.
    #[error(
        "the disk holding the database is nearly full ({available} bytes free, {needed} needed \
         to write safely); nothing was written; free space and writes resume by themselves"
    )]
    Full {
        /// Bytes free on the disk.
        available: u64,
        /// Bytes that must be free for this batch.
        needed: u64,
    },
    /// A write failed in a way the database cannot recover from while it stays open (sled keeps
    /// failing every later write and some reads): the server must restart.
    #[error("the database failed to write ({0}) and cannot write again until the server restarts")]
    NeedsRestart(String),
    /// The batch conflicts with what another writer (another server node sharing the database)
    /// stored first: an op or message sequence number that is not the next one of its group, a
    /// message id the group already holds, or a genesis op for a group that exists. Nothing in
    /// the batch was written. The caller reloads its view of the group and retries; a batch of
    /// several requests is retried one request at a time so that only the conflicting ones fail
    /// ([`crate::writer`]).
    #[error("conflicts with what another server node stored first: {0}")]
    Conflict(String),
    /// A stored record could not be decoded (corruption or an incompatible version).
    #[error("corrupt record in {tree}: {reason}")]
    Corrupt {
        /// Which collection.
        tree: &'static str,
        /// What failed.
        reason: String,
    },
}

/// Where a group's log and messages stand in storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupHead {
    /// The group.
    pub group: GroupId,
    /// The seq of its last op (0: only the genesis op).
    pub op_seq: u64,
    /// The highest message seq ever used in it (as [`Storage::last_seq`]).
    pub last_seq: Seq,
}

/// Ops read per call while a default [`Storage::heads`] pages through a log.
const HEADS_PAGE: usize = 1024;

/// What the relay needs from a database.
pub trait Storage: Send + Sync + 'static {
    /// Applies a batch of writes and makes it durable before returning.
    fn commit(&self, batch: &[Write]) -> Result<(), StorageError>;
    /// A device's record.
    fn device(&self, device: &DeviceId) -> Result<Option<DeviceRecord>, StorageError>;
    /// Every device registered for `user` (an unlinked device is no longer registered).
    fn devices_of_user(&self, user: &UserId) -> Result<Vec<DeviceRecord>, StorageError>;
    // No defaults: a wrapper that forgot to delegate these would answer "no list" and turn
    // every device-list check off without a word.

    /// The user's current device list, if the user has one.
    fn device_list(&self, user: &UserId) -> Result<Option<SignedDeviceList>, StorageError>;
    /// The user's lists with a version above `after`, oldest first, at most `limit`.
    fn device_list_chain(
        &self,
        user: &UserId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<SignedDeviceList>, StorageError>;
    /// The user whose device lists carry `identity`, if any.
    fn identity_user(&self, identity: &IdentityKey) -> Result<Option<UserId>, StorageError>;
    /// If a device list dropped `device`: the user it belonged to.
    fn unlinked(&self, device: &DeviceId) -> Result<Option<UserId>, StorageError>;
    /// The seq a message was stored under, if it is still stored.
    fn message_seq(
        &self,
        group: &GroupId,
        message: &MessageId,
    ) -> Result<Option<Seq>, StorageError>;
    /// Every group id that has a genesis op.
    fn groups(&self) -> Result<Vec<GroupId>, StorageError>;
    /// A group's log ops with sequence number `>= from`, at most `limit`.
    fn ops(&self, group: &GroupId, from: u64, limit: usize) -> Result<Vec<SignedOp>, StorageError>;
    /// A group's messages with sequence number `> after`, at most `limit`, in order.
    fn messages(
        &self,
        group: &GroupId,
        after: Seq,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StorageError>;
    /// The highest message sequence number ever used in a group (0 if none).
    fn last_seq(&self, group: &GroupId) -> Result<Seq, StorageError>;
    /// A device's inbox items with id `> after`, at most `limit`, in order.
    fn inbox(
        &self,
        device: &DeviceId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<InboxItem>, StorageError>;
    /// Whether a device's inbox holds the item `inbox_id`. (The default reads it through
    /// [`Storage::inbox`]; a backend can look the key up directly.)
    fn inbox_has(&self, device: &DeviceId, inbox_id: u64) -> Result<bool, StorageError> {
        let Some(after) = inbox_id.checked_sub(1) else {
            // Ids start at 1.
            return Ok(false);
        };
        Ok(self
            .inbox(device, after, 1)?
            .first()
            .is_some_and(|item| item.inbox_id == inbox_id))
    }
    /// How many items a device's inbox holds.
    fn inbox_len(&self, device: &DeviceId) -> Result<usize, StorageError>;
    /// How many items in a device's inbox count towards `share` (see [`inbox_shares`]).
    fn inbox_len_from(&self, device: &DeviceId, share: &DeviceId) -> Result<usize, StorageError>;
    /// A fresh, never reused, increasing id for inbox items (at least 1). Called on the async
    /// runtime for every sealed item, so it must not wait for the disk: an implementation hands
    /// ids out from memory and persists the highest one it stores with the items (an id whose
    /// batch fails may simply go unused). Never reused also across a crash that loses the
    /// latest items together with the stored highest id: a client may have seen such an id,
    /// and acknowledging it must never remove a later item that got the same id.
    fn next_inbox_id(&self) -> Result<u64, StorageError>;
    /// Whether a read sees only writes that are durable: true for a database that shows a
    /// transaction only once it committed (PostgreSQL); false for sled, which shows a batch as
    /// soon as it is applied, before its flush. Where it is false, readers hold back what was
    /// handed out but not yet known to be durable ([`crate::inbox`]). No default: a wrapper
    /// must say what the storage it wraps does.
    fn reads_only_durable(&self) -> bool;
    /// Where each of `groups` that exists stands ([`GroupHead`]), for several nodes to see what
    /// others stored. The default pages through each log; a backend shared by several nodes
    /// answers in one read.
    fn heads(&self, groups: &[GroupId]) -> Result<Vec<GroupHead>, StorageError> {
        let mut heads = Vec::new();
        for group in groups {
            let mut ops = 0usize;
            loop {
                let page = self.ops(group, ops as u64, HEADS_PAGE)?.len();
                ops = ops.saturating_add(page);
                if page < HEADS_PAGE {
                    break;
                }
            }
            if let Some(last) = ops.checked_sub(1) {
                heads.push(GroupHead {
                    group: *group,
                    op_seq: last as u64,
                    last_seq: self.last_seq(group)?,
                });
            }
        }
        Ok(heads)
    }
    /// Where every group stands ([`Self::heads`] of [`Self::groups`]).
    fn all_heads(&self) -> Result<Vec<GroupHead>, StorageError> {
        self.heads(&self.groups()?)
    }
    /// Whether the database answers now, with a few words for `/healthz`. May wait a short,
    /// bounded time (a network database is asked); an embedded one is always there.
    fn health(&self) -> Result<String, StorageError> {
        Ok("embedded".into())
    }
}
