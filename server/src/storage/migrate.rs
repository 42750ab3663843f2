//! Copying a sled database into PostgreSQL (`confide-server migrate-sled`), for a deployment
//! that moves from one server to several sharing a database.
//!
//! [`SledStorage::export`] yields every stored [`Record`] with its bytes as they are (the same
//! JSON both backends store), and [`sled_to_postgres`] writes them into an empty PostgreSQL
//! database in batches, all in one transaction: a copy that fails leaves the database empty,
//! and can simply be run again. Every seq, message id, inbox id, device record, device-list
//! chain and unlinked device is kept, and the database's inbox ids continue above every id the
//! sled server could have handed out. Then the copy is checked by counting what PostgreSQL
//! holds.

use confide_protocol::device_list::IdentityKey;
use confide_protocol::{DeviceId, GroupId, MessageId, UserId};

use super::{PostgresStorage, SledStorage, Storage as _, StorageError};

/// Records sent to PostgreSQL in one batch (one multi-row insert per kind of record).
pub const MIGRATION_BATCH_RECORDS: usize = 1_000;

/// Bytes of records sent in one batch at most (a batch closes at whichever limit comes first):
/// keeps each insert's parameters well under what PostgreSQL accepts in one message (1 GiB)
/// and the memory of a batch small.
pub const MIGRATION_BATCH_BYTES: usize = 16 * 1024 * 1024;

/// One stored record, as a backend exports it for copying and the PostgreSQL backend imports
/// it. Record bytes (`record`, `op`, `list`) are the stored JSON, copied as they are.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Record {
    /// A registered device.
    Device {
        /// The device.
        device: DeviceId,
        /// Its user (from the record).
        user: UserId,
        /// The JSON [`super::DeviceRecord`].
        record: Vec<u8>,
    },
    /// A group with a genesis op: where its log and its messages stand.
    GroupHead {
        /// The group.
        group: GroupId,
        /// The seq of its newest op.
        last_op_seq: u64,
        /// The highest message seq ever used (0 if none), kept when messages are deleted.
        last_msg_seq: u64,
    },
    /// A group-log op.
    Op {
        /// The group.
        group: GroupId,
        /// Its seq in the log.
        seq: u64,
        /// The JSON `SignedOp`.
        op: Vec<u8>,
    },
    /// A stored message.
    Message {
        /// The group.
        group: GroupId,
        /// Its seq.
        seq: u64,
        /// Its id.
        message_id: MessageId,
        /// The JSON `StoredMessage`.
        record: Vec<u8>,
    },
    /// An inbox item.
    Inbox {
        /// The recipient.
        device: DeviceId,
        /// The item's id.
        inbox_id: u64,
        /// The shares of the inbox it counts towards ([`super::inbox_shares`]; none for items
        /// stored before shares were kept).
        shares: Vec<DeviceId>,
        /// The JSON `InboxItem`.
        record: Vec<u8>,
    },
    /// A user's current device list.
    DeviceList {
        /// The user.
        user: UserId,
        /// The JSON `SignedDeviceList`.
        list: Vec<u8>,
    },
    /// One of the lists a user published.
    DeviceListVersion {
        /// The user.
        user: UserId,
        /// The list's version.
        version: u64,
        /// The JSON `SignedDeviceList`.
        list: Vec<u8>,
    },
    /// The user whose lists carry an identity key.
    Identity {
        /// The key.
        identity: IdentityKey,
        /// The user.
        user: UserId,
    },
    /// A device a list dropped.
    Unlinked {
        /// The device.
        device: DeviceId,
        /// The user it belonged to.
        user: UserId,
    },
}

impl Record {
    /// About how many bytes the record takes (what a batch is capped by).
    pub fn size(&self) -> usize {
        // Ids and integers, roughly, on top of the stored bytes.
        const KEYS: usize = 64;
        KEYS + match self {
            Record::Device { record, .. }
            | Record::Message { record, .. }
            | Record::Inbox { record, .. } => record.len(),
            Record::Op { op, .. } => op.len(),
            Record::DeviceList { list, .. } | Record::DeviceListVersion { list, .. } => list.len(),
            Record::GroupHead { .. } | Record::Identity { .. } | Record::Unlinked { .. } => 0,
        }
    }
}

/// How many records of each kind a database holds (or a migration copied).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordCounts {
    /// Registered devices.
    pub devices: u64,
    /// Groups with a genesis op.
    pub groups: u64,
    /// Group-log ops.
    pub ops: u64,
    /// Stored messages.
    pub messages: u64,
    /// Inbox items.
    pub inbox_items: u64,
    /// Inbox share entries (one or two per item).
    pub inbox_shares: u64,
    /// Users with a current device list.
    pub device_lists: u64,
    /// Device lists published, every version.
    pub device_list_versions: u64,
    /// Identity keys on record.
    pub identities: u64,
    /// Unlinked devices.
    pub unlinked: u64,
}

impl RecordCounts {
    /// Counts `record` in.
    pub fn add(&mut self, record: &Record) {
        match record {
            Record::Device { .. } => self.devices += 1,
            Record::GroupHead { .. } => self.groups += 1,
            Record::Op { .. } => self.ops += 1,
            Record::Message { .. } => self.messages += 1,
            Record::Inbox { shares, .. } => {
                self.inbox_items += 1;
                self.inbox_shares += shares.len() as u64;
            }
            Record::DeviceList { .. } => self.device_lists += 1,
            Record::DeviceListVersion { .. } => self.device_list_versions += 1,
            Record::Identity { .. } => self.identities += 1,
            Record::Unlinked { .. } => self.unlinked += 1,
        }
    }

    /// Whether nothing is counted.
    pub fn is_empty(&self) -> bool {
        *self == RecordCounts::default()
    }
}

impl std::fmt::Display for RecordCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} devices, {} groups, {} ops, {} messages, {} inbox items ({} share entries), \
             {} current device lists, {} device-list versions, {} identity keys, {} unlinked \
             devices",
            self.devices,
            self.groups,
            self.ops,
            self.messages,
            self.inbox_items,
            self.inbox_shares,
            self.device_lists,
            self.device_list_versions,
            self.identities,
            self.unlinked
        )
    }
}

/// What [`sled_to_postgres`] copied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MigrationReport {
    /// The records copied, by kind (PostgreSQL was checked to hold exactly these).
    pub copied: RecordCounts,
    /// The batches they went in.
    pub batches: u64,
    /// The lowest inbox id PostgreSQL hands out from now on: above every id the sled server
    /// could have handed out.
    pub next_inbox_id: u64,
}

impl std::fmt::Display for MigrationReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "copied {} in {} batches; inbox ids continue at {} or above",
            self.copied, self.batches, self.next_inbox_id
        )
    }
}

/// Copies everything `from` holds into `to`, which must be empty (refused otherwise), and
/// checks the copy by counting what `to` then holds. The sled database must not be in use by a
/// server (opening it takes sled's lock, so a running server makes `from` fail to open).
///
/// One transaction: on any error nothing is left in `to`, and the copy can be run again.
pub fn sled_to_postgres(
    from: &SledStorage,
    to: &PostgresStorage,
) -> Result<MigrationReport, StorageError> {
    let import = to.import()?;
    let mut copied = RecordCounts::default();
    let mut batches = 0u64;
    let mut batch = Vec::new();
    let mut bytes = 0usize;
    for record in from.export() {
        // The first error ends the copy: a failing sled iterator can repeat its error forever.
        let record = record?;
        copied.add(&record);
        bytes = bytes.saturating_add(record.size());
        batch.push(record);
        if batch.len() >= MIGRATION_BATCH_RECORDS || bytes >= MIGRATION_BATCH_BYTES {
            import.insert(std::mem::take(&mut batch))?;
            batches += 1;
            bytes = 0;
        }
    }
    if !batch.is_empty() {
        import.insert(batch)?;
        batches += 1;
    }
    // The id a restarted sled server would hand out first: above every id it ever handed out
    // (see `INBOX_ID_RESTART_GAP`), so no id a client has seen is used again.
    let next_inbox_id = import.finish(from.next_inbox_id()?)?;
    let held = to.counts()?;
    if held != copied {
        return Err(StorageError::Backend(format!(
            "the copy does not check out: sled held {copied}, but PostgreSQL holds {held}"
        )));
    }
    Ok(MigrationReport {
        copied,
        batches,
        next_inbox_id,
    })
}
