//! What the person has read: a per-group read marker kept in this device's encrypted store,
//! so that "3 new" survives a reload and every tab or window of the same store agrees. The
//! server never learns it (it would say when someone reads, which nobody agreed to share).
//!
//! The marker is a message *number* ([`crate::ChatMessage::number`]), this device's own count
//! in the order messages were stored, not the server's seq: the server cannot move it (an
//! acknowledgement or a message at a huge seq), and a message stored late (held until its
//! sender's key came) still counts as new. The count itself is kept beside the marker, updated
//! as messages are stored and deleted, so listing groups costs nothing per message.

use confide_protocol::{GroupId, Seq};

use crate::error::ClientError;
use crate::events::{ChatMessage, Event};
use crate::group::ReadMarker;
use crate::link::Network;
use crate::machine::ClientCore;
use crate::numbers::{self, T_NUMBERS};
use crate::store::{ClientStore, T_GROUPS, T_MESSAGES, T_NUMBER_SEQ, corrupt, key2};

impl<S: ClientStore, N: Network> ClientCore<S, N> {
    /// Marks the group read up to message `number` (the [`ChatMessage::number`] of the newest
    /// message shown). A marker never moves back, and never past the newest message stored, so
    /// an older or unknown `number` changes nothing more. Emits [`Event::Read`] when it moves,
    /// so that every view of this store updates its counts.
    ///
    /// # Errors
    ///
    /// [`ClientError::UnknownGroup`] if this device does not hold the group;
    /// [`ClientError::Store`] if the marker cannot be stored.
    pub async fn mark_read(&mut self, group: GroupId, number: u64) -> Result<(), ClientError> {
        let r = self.move_read_marker(group, number).await;
        self.end_step(r).await
    }

    async fn move_read_marker(&mut self, group: GroupId, number: u64) -> Result<(), ClientError> {
        let (read, last) = {
            let ctx = self.groups.get(&group).ok_or(ClientError::UnknownGroup)?;
            (ctx.meta.read.number(), ctx.meta.last_number)
        };
        let number = number.min(last);
        if number <= read {
            return Ok(());
        }
        let unread = if number == last {
            0
        } else {
            self.stored_after(group, number, last).await?
        };
        let ctx = self
            .groups
            .get_mut(&group)
            .ok_or(ClientError::UnknownGroup)?;
        ctx.meta.read = ReadMarker(Some(number));
        ctx.meta.unread = unread;
        self.db.put(T_GROUPS, group.as_bytes(), &ctx.meta)?;
        self.emit(Event::Read { group, number });
        Ok(())
    }

    /// How many messages numbered `after + 1 ..= last` are still stored. Only when a group is
    /// read part way: each number's seq is read, message keys are only listed.
    async fn stored_after(
        &self,
        group: GroupId,
        after: u64,
        last: u64,
    ) -> Result<u64, ClientError> {
        let (first, end) = (after.saturating_add(1), last.saturating_add(1));
        let wanted = first..end;
        // Numbered in a store written before: one key per number.
        let mut numbered: Vec<Seq> = self
            .db
            .scan_range_rev::<Seq>(
                T_NUMBER_SEQ,
                &numbers::legacy_key(group, first),
                &numbers::legacy_key(group, end),
                usize::MAX,
            )
            .await?
            .into_iter()
            .map(|(_, seq)| seq)
            .collect();
        // Since, 64 numbers to a value: the values from the one holding `first` on, each read
        // on its own so that a damaged one counts as empty (`number_run`).
        let (from, through) = (
            numbers::run_key(group, first),
            numbers::keys_through(group, last),
        );
        let keys = self.db.keys(T_NUMBERS, group.as_bytes()).await?;
        for key in keys
            .iter()
            .filter(|key| key.as_slice() >= from.as_slice() && key.as_slice() < through.as_slice())
        {
            let run = self.number_run(group, key).await?;
            let start = numbers::first_number(key).ok_or_else(|| corrupt(T_NUMBERS, key))?;
            numbered.extend(
                run.entries(start)
                    .filter(|(number, _)| wanted.contains(number))
                    .map(|(_, seq)| seq),
            );
        }
        let stored: std::collections::BTreeSet<Vec<u8>> = self
            .db
            .keys(T_MESSAGES, group.as_bytes())
            .await?
            .into_iter()
            .collect();
        let count = numbered
            .iter()
            .filter(|seq| stored.contains(&key2(group.as_bytes(), &seq.0.to_be_bytes())))
            .count();
        Ok(u64::try_from(count).unwrap_or(u64::MAX))
    }

    /// A stored message is being deleted (for everyone, or past retention): it no longer
    /// counts as new. The caller writes the group's record with the rest of its step.
    pub(crate) fn uncount(&mut self, message: &ChatMessage) {
        let me = self.profile.user;
        if let Some(ctx) = self.groups.get_mut(&message.group)
            && message.sender != me
            && message.number > ctx.meta.read.number()
        {
            ctx.meta.unread = ctx.meta.unread.saturating_sub(1);
        }
    }

    /// Writes the group's record (its unread count changed) with the rest of the step.
    pub(crate) fn save_meta(&mut self, group: GroupId) {
        let Some(ctx) = self.groups.get(&group) else {
            return;
        };
        if let Err(e) = self.db.put(T_GROUPS, group.as_bytes(), &ctx.meta) {
            // Only a value that cannot be serialised fails here; the step is then not kept.
            self.db.fail_step(e);
        }
    }
}
