//! What the person has read: a per-group read marker kept in this device's encrypted store,
//! so that "3 new" survives a reload and every tab or window of the same store agrees. The
//! server never learns it (it would say when someone reads, which nobody agreed to share).

use confide_protocol::GroupId;

use crate::error::ClientError;
use crate::events::Event;
use crate::link::Network;
use crate::machine::ClientCore;
use crate::store::{ClientStore, T_GROUPS, T_MESSAGES, key2};

impl<S: ClientStore, N: Network> ClientCore<S, N> {
    /// Marks the group read up to message `seq` (what the person has seen: the newest message
    /// shown, say). A marker never moves back, so an older `seq` changes nothing. Emits
    /// [`Event::Read`] when it moves, so that every view of this store updates its counts.
    ///
    /// # Errors
    ///
    /// [`ClientError::UnknownGroup`] if this device does not hold the group;
    /// [`ClientError::Store`] if the marker cannot be stored.
    pub async fn mark_read(&mut self, group: GroupId, seq: u64) -> Result<(), ClientError> {
        let r = self.move_read_marker(group, seq);
        self.end_step(r).await
    }

    fn move_read_marker(&mut self, group: GroupId, seq: u64) -> Result<(), ClientError> {
        let ctx = self
            .groups
            .get_mut(&group)
            .ok_or(ClientError::UnknownGroup)?;
        if seq <= ctx.meta.read_seq {
            return Ok(());
        }
        ctx.meta.read_seq = seq;
        self.db.put(T_GROUPS, group.as_bytes(), &ctx.meta)?;
        self.emit(Event::Read { group, seq });
        Ok(())
    }

    /// How many messages are stored in `group` after its read marker. Only keys are read
    /// (nothing is decrypted): message keys are the group id and the big-endian seq.
    pub(crate) async fn unread(&self, group: GroupId, read_seq: u64) -> usize {
        let after = key2(group.as_bytes(), &read_seq.to_be_bytes());
        match self.db.keys(T_MESSAGES, group.as_bytes()).await {
            Ok(keys) => keys
                .iter()
                .filter(|k| k.as_slice() > after.as_slice())
                .count(),
            Err(e) => {
                tracing::warn!(%group, error = %e, "could not count unread messages");
                0
            }
        }
    }
}
