//! Which inbox items are durable, so that the inbox backlog serves nothing else.
//!
//! The database shows a batch to readers as soon as it is applied, before its flush has made it
//! durable. An inbox item read in that window and then lost in a crash would be one a client had
//! seen, and perhaps acknowledged by id. So every inbox id is handed out through
//! [`InboxInFlight`], which remembers it until the writer has an outcome for the item's batch,
//! and a backlog read keeps only items whose ids were handed out before the read began and are
//! no longer in flight. The others reach the recipient's connections live, once durable. Items
//! stored by an earlier run of the server are all durable: [`InboxInFlight::starting_at`] takes
//! the first id of this run, and every id below it counts as handed out and finished.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use crate::storage::{Storage, StorageError};

/// The inbox ids handed out whose items are not yet known to be durable (or refused).
#[derive(Clone, Debug)]
pub struct InboxInFlight(Arc<Mutex<State>>);

#[derive(Debug)]
struct State {
    /// Ids whose items are being written.
    in_flight: BTreeSet<u64>,
    /// The highest id handed out so far (ids only go up), or known to be from an earlier run.
    highest: u64,
    /// The storage shows only durable items ([`Storage::reads_only_durable`]): then every item a
    /// read returns is durable, whoever handed its id out (another node sharing the database
    /// hands out ids of its own, above or below this node's).
    reads_only_durable: bool,
}

/// One inbox id being written; leaves the in-flight set when dropped, which must be once the
/// writer has an outcome for the item's batch (or once it is certain the item is never
/// written).
#[derive(Debug)]
pub struct InboxTicket {
    ids: InboxInFlight,
    id: u64,
}

impl InboxTicket {
    /// The id.
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl Drop for InboxTicket {
    fn drop(&mut self) {
        self.ids.with(|state| state.in_flight.remove(&self.id));
    }
}

/// What a backlog read may serve: taken before the read, applied to what it returns.
#[derive(Debug)]
pub struct DurableView {
    ids: InboxInFlight,
    /// Ids above this were handed out after the view was taken: their items may be applied and
    /// not yet durable, and this view cannot know.
    highest: u64,
}

impl InboxInFlight {
    /// Starts tracking with `first`, an id that `storage` handed out before any item of this
    /// run (and that stays unused): every id below it was handed out by an earlier run, whose
    /// items are durable if they are stored at all.
    pub fn starting_at(first: u64) -> Self {
        InboxInFlight(Arc::new(Mutex::new(State {
            in_flight: BTreeSet::new(),
            highest: first,
            reads_only_durable: false,
        })))
    }

    /// Like [`Self::starting_at`], for `storage`: where it shows only durable items, a backlog
    /// read keeps all it returns but this node's ids still in flight.
    pub fn for_storage(storage: &dyn Storage) -> Result<Self, StorageError> {
        let ids = Self::starting_at(storage.next_inbox_id()?);
        let reads_only_durable = storage.reads_only_durable();
        ids.with(|state| state.reads_only_durable = reads_only_durable);
        Ok(ids)
    }

    /// Runs `f` on the state. The lock is never held across an await or while anything can
    /// panic, so a poisoned lock still holds consistent data and is used as is.
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut state = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut state)
    }

    /// Hands out the next inbox id from `storage` (which does no I/O for it) and keeps it in
    /// flight until the ticket is dropped.
    pub fn allocate(&self, storage: &dyn Storage) -> Result<InboxTicket, StorageError> {
        let id = self.with(|state| {
            let id = storage.next_inbox_id()?;
            state.in_flight.insert(id);
            state.highest = state.highest.max(id);
            Ok::<u64, StorageError>(id)
        })?;
        Ok(InboxTicket {
            ids: self.clone(),
            id,
        })
    }

    /// A view to filter a backlog read with; take it before reading.
    pub fn view(&self) -> DurableView {
        DurableView {
            ids: self.clone(),
            highest: self.with(|state| match state.reads_only_durable {
                true => u64::MAX,
                false => state.highest,
            }),
        }
    }
}

impl DurableView {
    /// Keeps the items of `items` (read after this view was taken) that are durable: handed out
    /// before the view, and no longer in flight now. `id` gives an item's inbox id.
    pub fn retain_durable<T>(&self, items: &mut Vec<T>, id: impl Fn(&T) -> u64) {
        // In flight is checked after the read, so an item whose write finished meanwhile is
        // served; one handed out before the view and not in flight has a finished write.
        self.ids.with(|state| {
            items.retain(|item| {
                let id = id(item);
                id <= self.highest && !state.in_flight.contains(&id)
            })
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out 1, 2, 3, … and stores nothing.
    struct Counter(std::sync::atomic::AtomicU64);

    impl Storage for Counter {
        fn reads_only_durable(&self) -> bool {
            false
        }
        fn commit(&self, _: &[crate::storage::Write]) -> Result<(), StorageError> {
            Ok(())
        }
        fn device(
            &self,
            _: &confide_protocol::DeviceId,
        ) -> Result<Option<crate::storage::DeviceRecord>, StorageError> {
            Ok(None)
        }
        fn devices_of_user(
            &self,
            _: &confide_protocol::UserId,
        ) -> Result<Vec<crate::storage::DeviceRecord>, StorageError> {
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
        fn message_seq(
            &self,
            _: &confide_protocol::GroupId,
            _: &confide_protocol::MessageId,
        ) -> Result<Option<confide_protocol::Seq>, StorageError> {
            Ok(None)
        }
        fn groups(&self) -> Result<Vec<confide_protocol::GroupId>, StorageError> {
            Ok(Vec::new())
        }
        fn ops(
            &self,
            _: &confide_protocol::GroupId,
            _: u64,
            _: usize,
        ) -> Result<Vec<confide_protocol::group_log::SignedOp>, StorageError> {
            Ok(Vec::new())
        }
        fn messages(
            &self,
            _: &confide_protocol::GroupId,
            _: confide_protocol::Seq,
            _: usize,
        ) -> Result<Vec<confide_protocol::frames::StoredMessage>, StorageError> {
            Ok(Vec::new())
        }
        fn last_seq(
            &self,
            _: &confide_protocol::GroupId,
        ) -> Result<confide_protocol::Seq, StorageError> {
            Ok(confide_protocol::Seq(0))
        }
        fn inbox(
            &self,
            _: &confide_protocol::DeviceId,
            _: u64,
            _: usize,
        ) -> Result<Vec<confide_protocol::frames::InboxItem>, StorageError> {
            Ok(Vec::new())
        }
        fn inbox_len(&self, _: &confide_protocol::DeviceId) -> Result<usize, StorageError> {
            Ok(0)
        }
        fn inbox_len_from(
            &self,
            _: &confide_protocol::DeviceId,
            _: &confide_protocol::DeviceId,
        ) -> Result<usize, StorageError> {
            Ok(0)
        }
        fn next_inbox_id(&self) -> Result<u64, StorageError> {
            Ok(self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
        }
    }

    #[test]
    fn items_of_an_earlier_run_are_served() {
        let storage = Counter(100.into());
        let ids = InboxInFlight::starting_at(storage.next_inbox_id().unwrap());
        let mut items = vec![1, 57, 99];
        ids.view().retain_durable(&mut items, |&id| id);
        assert_eq!(items, [1, 57, 99]);
    }

    #[test]
    fn only_items_handed_out_before_the_read_and_no_longer_in_flight_are_served() {
        let storage = Counter(1.into());
        let ids = InboxInFlight::starting_at(0);
        let done = ids.allocate(&storage).unwrap();
        let writing = ids.allocate(&storage).unwrap();
        let finishing = ids.allocate(&storage).unwrap();
        drop(done);
        let view = ids.view();
        // Handed out after the view: its item may have been applied since.
        let later = ids.allocate(&storage).unwrap();
        // Finished after the view was taken, before the filter: durable, served.
        drop(finishing);
        let mut items = vec![1, 2, 3, 4];
        view.retain_durable(&mut items, |&id| id);
        assert_eq!(items, [1, 3]);
        assert_eq!((writing.id(), later.id()), (2, 4));
        drop((writing, later));
        let mut items = vec![1, 2, 3, 4];
        ids.view().retain_durable(&mut items, |&id| id);
        assert_eq!(items, [1, 2, 3, 4]);
    }
}
