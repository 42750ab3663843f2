//! What this device sends: sealing and posting its messages, the outbox of messages handed
//! to the server but not yet acknowledged (posted again, in order, after a reconnect or a
//! passing refusal), and messages held while the group's log is behind what members use.

use std::collections::BTreeSet;
use std::time::Duration;

use confide_protocol::envelope::{ContentBody, Envelope, MessageContent};
use confide_protocol::frames::{ClientFrame, ErrorCode, ServerFrame};
use confide_protocol::{EpochRef, GroupId, MessageId, Seq};
use serde::{Deserialize, Serialize};

use crate::error::{ClientError, EncryptError, Missing, unexpected_reply};
use crate::events::{ChatMessage, Event};
use crate::machine::ClientCore;
use crate::session::is_passing;
use crate::store::{ClientStore, T_GROUPS, T_HELD, T_OUTBOX, T_SEEN, key2};
use crate::types::{AddedMember, HeldId, HeldMessage};
use crate::{HostRng, Network};

/// How long the outbox waits before posting again after the server could not take a message
/// for a passing reason (`storage`, `shutting_down`, `rate_limited`) and named no time itself.
pub(crate) const OUTBOX_RETRY: Duration = Duration::from_secs(2);

/// Bounds on any wait before the outbox posts again.
pub(crate) const OUTBOX_RETRY_MIN: Duration = Duration::from_millis(250);

pub(crate) const OUTBOX_RETRY_MAX: Duration = Duration::from_secs(60);

/// How many messages a group may hold while its log is behind; a further one is refused (not
/// kept), so that a log that never catches up cannot fill the disk.
pub(crate) const MAX_HELD_PER_GROUP: usize = 1_000;

/// How many times one post may find the group's epoch changed under it (while its sender key
/// was being sent, or refused as stale) before it gives up: each change needs a new signed op,
/// so an honest group never comes near this.
pub(crate) const MAX_SEAL_ROUNDS: usize = 4;

/// How many times in all the server may refuse one message as `stale_epoch`: at this refusal
/// it is reported not sent. Each refusal is answered with a sync and a new seal, which uses a
/// new message key; an honest server refuses only when the log moved on, which a completed
/// sync catches up with, so an honest group never comes near this, while a server that always
/// refused would otherwise have the message sealed again without end.
pub(crate) const MAX_STALE_REFUSALS: u32 = 8;

/// How long a group's held messages wait, after their `refusals`-th refusal as `stale_epoch`,
/// for a sync of the group to complete before they are tried again anyway: 2 s, doubling with
/// each refusal up to [`OUTBOX_RETRY_MAX`], so the [`MAX_STALE_REFUSALS`] tries span about
/// three minutes of syncs that fail (an honest server's short trouble does not use them up).
pub(crate) fn stale_retry_wait(refusals: u32) -> Duration {
    let doublings = refusals.saturating_sub(1).min(5);
    (OUTBOX_RETRY * 2u32.pow(doublings)).min(OUTBOX_RETRY_MAX)
}

/// A message encrypted and handed to the server but not yet acknowledged: kept (encrypted at
/// rest) and posted again after a reconnect, so nothing unacknowledged is lost and nothing is
/// shown as sent before the server has it. The server answers a re-post of a stored envelope
/// with the seq it already has, so a retry never duplicates.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct OutboxEntry {
    pub(crate) envelope: Envelope,
    pub(crate) content: MessageContent,
    /// How many times the server refused it as `stale_epoch` before this seal
    /// ([`MAX_STALE_REFUSALS`]): carried through the outbox, so that a server cannot reset it.
    #[serde(default)]
    pub(crate) stale_refusals: u32,
}

/// A message kept to be sealed and posted later (the `held` tree), with what it takes to
/// decide whether it may go by itself: the epoch of the group's verified log it was written in.
/// Stores of earlier versions kept the bare [`MessageContent`]; [`StoredHeld`] reads both.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct HeldEntry {
    /// Its id while it waits ([`HeldMessage::id`]).
    pub(crate) id: [u8; 16],
    pub(crate) content: MessageContent,
    /// The epoch of the group's verified log when the user wrote it, or when they last said
    /// to send it anyway: whoever is a member in a later epoch and was not then joined after
    /// it was written, and is not sent it without the user's word (PROTOCOL.md §11.13).
    /// `None` for a message held by an earlier version, which did not record it: it goes as
    /// such messages always went.
    pub(crate) epoch: Option<u64>,
    /// The epoch in which [`Event::HeldNeedsConfirm`] was last said for it, so that it is said
    /// once per epoch, not at every attempt.
    #[serde(default)]
    pub(crate) asked_in: Option<u64>,
    /// How many times the server refused it as `stale_epoch` while it was held
    /// ([`MAX_STALE_REFUSALS`]).
    #[serde(default)]
    pub(crate) stale_refusals: u32,
}

/// A `held` value as any version stored it.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum StoredHeld {
    /// This version's.
    Entry(HeldEntry),
    /// An earlier version's: the content alone.
    Bare(MessageContent),
}

impl StoredHeld {
    /// The entry; an earlier version's gets the tail of its key (unique within its group) as
    /// its id and no epoch.
    pub(crate) fn into_entry(self, key: &[u8]) -> HeldEntry {
        match self {
            StoredHeld::Entry(entry) => entry,
            StoredHeld::Bare(content) => {
                let mut id = [0u8; 16];
                let tail = key.get(16..).unwrap_or_default();
                let n = tail.len().min(16);
                id[..n].copy_from_slice(&tail[..n]);
                HeldEntry {
                    id,
                    content,
                    epoch: None,
                    asked_in: None,
                    stale_refusals: 0,
                }
            }
        }
    }
}

impl<S: ClientStore, N: Network> ClientCore<S, N> {
    /// Sends a text message, optionally replying to another. Returns the message as stored,
    /// once the server has acknowledged it durably. [`ClientError::Held`] and
    /// [`ClientError::Pending`] mean it is kept and sent later ([`Event::Sent`] or
    /// [`Event::SendFailed`] follows; [`Self::held`] lists it meanwhile), unless people join
    /// the group before it goes: then it waits for the user ([`Event::HeldNeedsConfirm`]). An empty (or only white space) text is refused with
    /// [`ClientError::Invalid`] before anything is done.
    ///
    /// # Errors
    ///
    /// [`ClientError::Invalid`] for an empty text; those of a command in a group that reaches the server ([the errors every command
    /// shares](crate::ClientCore#errors)); [`ClientError::Held`] and [`ClientError::Pending`] when
    /// the message is kept to be sent later (not failures: the message is not lost), also when
    /// the server cannot be reached (the message goes once connected again), and `Pending` when
    /// the store failed after the message was stored in the outbox (it goes from there);
    /// [`ClientError::Server`] when the server refuses it (`muted`, `slow_mode`, `locked`, …;
    /// nothing is kept); [`ClientError::Encrypt`] if it cannot be encrypted (nothing is kept).
    pub async fn send_text(
        &mut self,
        group: GroupId,
        text: String,
        reply_to: Option<MessageId>,
    ) -> Result<ChatMessage, ClientError> {
        if text.trim().is_empty() {
            return Err(ClientError::Invalid(
                "an empty message is not sent: write something first".into(),
            ));
        }
        let r = self.post_text(group, text, reply_to).await;
        self.end_send_step(r).await
    }

    pub(crate) async fn post_text(
        &mut self,
        group: GroupId,
        text: String,
        reply_to: Option<MessageId>,
    ) -> Result<ChatMessage, ClientError> {
        let body = ContentBody::Text {
            text,
            reply_to,
            warnings: Vec::new(),
            round: None,
        };
        self.post_body(group, body).await
    }

    /// The highest message seq of `group` this device has processed, named in what it writes
    /// so that receivers can tell when the server stores it too early (§6.7).
    pub(crate) fn seen_seq(&self, group: GroupId) -> Option<Seq> {
        self.groups
            .get(&group)
            .map(|ctx| ctx.meta.last_seen_seq)
            .filter(|seq| *seq > 0)
            .map(Seq)
    }

    /// Stores this device's own text message, now that the server has acknowledged it at
    /// `seq`, and returns it as shown. `None` for content that is not a text; an error, and
    /// nothing to show, if it cannot be stored. Its warnings and round tag are honoured by the
    /// rules every member's device applies to it (PROTOCOL.md §6.9).
    pub(crate) async fn own_message(
        &mut self,
        group: GroupId,
        seq: Seq,
        id: MessageId,
        content: MessageContent,
    ) -> Result<Option<ChatMessage>, ClientError> {
        let ContentBody::Text {
            text,
            reply_to,
            warnings,
            round,
        } = content.body
        else {
            return Ok(None);
        };
        let round = self.honoured_round(group, self.profile.user, content.sent_at, &text, round);
        let mut message = ChatMessage {
            group,
            seq,
            number: 0,
            id,
            sender: self.profile.user,
            sender_device: self.device(),
            sender_name: self.profile.display_name.clone(),
            sent_at: content.sent_at,
            received_at: self.host.now(),
            text,
            reply_to,
            warnings: crate::warnings::honoured_warnings(warnings),
            hidden: false,
            round,
        };
        // Committed before the message is returned or reported as sent.
        self.store_text(&mut message).await?;
        self.db
            .put(T_SEEN, &key2(group.as_bytes(), id.as_bytes()), &seq)?;
        Ok(Some(message))
    }

    /// This device's own post in `epoch` was stored at `seq`: it counts toward the cut-off
    /// that refuses late posts in an epoch that ended with a removal, like anyone else's.
    pub(crate) fn note_own_post(&mut self, group: GroupId, epoch: u64, seq: Seq) {
        if let Some(ctx) = self.groups.get_mut(&group) {
            ctx.meta.note_epoch_seq(epoch, seq.0);
            let _ = self.db.put(T_GROUPS, group.as_bytes(), &ctx.meta);
        }
    }

    /// Whether this device holds its posts to `group`: members have been seen to use an epoch
    /// its verified log has not reached, or earlier held messages still wait (order is kept).
    pub(crate) async fn is_held(&self, group: GroupId) -> bool {
        self.is_behind(group)
            || matches!(self.db.count(T_HELD, group.as_bytes()).await, Ok((n, _)) if n > 0)
    }

    /// Keeps a message to be sealed and posted once the group's log has caught up.
    pub(crate) async fn hold(
        &mut self,
        group: GroupId,
        entry: &HeldEntry,
    ) -> Result<(), ClientError> {
        self.hold_quietly(group, entry).await?;
        self.held_dirty = true;
        Ok(())
    }

    /// A new held entry for `content`, written now in the group's current epoch.
    pub(crate) fn new_held(&mut self, group: GroupId, content: MessageContent) -> HeldEntry {
        let mut id = [0u8; 16];
        self.host.fill_random(&mut id);
        HeldEntry {
            id,
            content,
            epoch: self.groups.get(&group).map(|ctx| ctx.state.epoch().0),
            asked_in: None,
            stale_refusals: 0,
        }
    }

    /// Tells the application, once per step, that the group's messages waiting to be sent
    /// changed ([`Event::HeldChanged`]).
    pub(crate) fn held_changed(&mut self, group: GroupId) {
        let told = self
            .pending_events
            .iter()
            .any(|e| matches!(e, Event::HeldChanged { group: g } if *g == group));
        if !told {
            self.emit(Event::HeldChanged { group });
        }
    }

    /// Who joined `group` after `entry` was written, if anyone did and it is a text: then it
    /// is not sent without the user's word. Compared by device between the member set of the
    /// epoch it was written in and the current one, both from the verified log: a new person,
    /// or someone who was there with a device that was not (removed and added back with other
    /// keys), since either would read it; this device's own user is never counted. A message
    /// held by an earlier version, which did not record its epoch, counts as written before
    /// anyone joined (asked about rather than sent). `Some(vec![])` when the epoch it was
    /// written in is not in the log this device holds (it cannot tell who).
    pub(crate) fn added_since(
        &self,
        group: GroupId,
        entry: &HeldEntry,
    ) -> Option<Vec<AddedMember>> {
        if !matches!(entry.content.body, ContentBody::Text { .. }) {
            // Pinned texts are for whoever is a member when they go (a new member must read
            // the agreement): never held back for this.
            return None;
        }
        let written = entry.epoch.unwrap_or(0);
        let ctx = self.groups.get(&group)?;
        if ctx.state.epoch().0 <= written {
            return None;
        }
        let Some(then) = ctx
            .epochs
            .iter()
            .find(|(epoch, _)| epoch.epoch.0 == written)
            .map(|(_, devices)| devices)
        else {
            return Some(Vec::new());
        };
        let users: BTreeSet<_> = then.values().map(|(user, _)| *user).collect();
        let added: Vec<AddedMember> = ctx
            .state
            .members()
            .iter()
            .filter(|(user, _)| **user != self.profile.user)
            .filter_map(|(user, member)| {
                let new_person = !users.contains(user);
                let new_device = member
                    .entry
                    .devices
                    .iter()
                    .any(|d| !then.contains_key(&d.device));
                (new_person || new_device).then(|| AddedMember {
                    user: *user,
                    display_name: member.entry.display_name.clone(),
                    new_device: !new_person,
                })
            })
            .collect();
        (!added.is_empty()).then_some(added)
    }

    /// The messages of `group` this device's user wrote that are not sent yet, in the order
    /// they go: those handed to the server and not acknowledged (sealed), then those held
    /// (offline, the log behind, or people added since: [`HeldMessage::needs_confirm`]). Only
    /// texts (pinned texts a facilitator's device posts again are not the user's messages).
    ///
    /// # Errors
    ///
    /// [`ClientError::Store`] if the store cannot be read.
    pub async fn held(&self, group: GroupId) -> Result<Vec<HeldMessage>, ClientError> {
        let mut list = Vec::new();
        let current = self.groups.get(&group).map_or(0, |c| c.state.epoch().0);
        let mut sealed = self
            .db
            .scan::<OutboxEntry>(T_OUTBOX, group.as_bytes(), usize::MAX)
            .await?;
        sealed.sort_by_key(|(_, e)| (e.envelope.epoch, e.envelope.iteration));
        for (_, entry) in sealed {
            if let ContentBody::Text { text, .. } = entry.content.body {
                list.push(HeldMessage {
                    id: HeldId(entry.envelope.message_id().0),
                    text,
                    written_at: entry.content.sent_at,
                    sealed: true,
                    needs_confirm: false,
                    added: Vec::new(),
                    behind_earlier: false,
                    epoch: current,
                });
            }
        }
        let mut blocked = false;
        for (key, stored) in self
            .db
            .scan::<StoredHeld>(T_HELD, group.as_bytes(), usize::MAX)
            .await?
        {
            let entry = stored.into_entry(&key);
            let added = self.added_since(group, &entry);
            let ContentBody::Text { text, .. } = entry.content.body else {
                continue;
            };
            list.push(HeldMessage {
                id: HeldId(entry.id),
                text,
                written_at: entry.content.sent_at,
                sealed: false,
                needs_confirm: added.is_some(),
                added: added.clone().unwrap_or_default(),
                behind_earlier: blocked,
                epoch: current,
            });
            blocked |= added.is_some();
        }
        Ok(list)
    }

    /// The held entry of `group` with id `id`, and its key.
    async fn find_held(
        &self,
        group: GroupId,
        id: HeldId,
    ) -> Result<(Vec<u8>, HeldEntry), ClientError> {
        self.db
            .scan::<StoredHeld>(T_HELD, group.as_bytes(), usize::MAX)
            .await?
            .into_iter()
            .map(|(key, stored)| {
                let entry = stored.into_entry(&key);
                (key, entry)
            })
            .find(|(_, entry)| entry.id == id.0)
            .ok_or(ClientError::NotFound(Missing::HeldMessage))
    }

    /// Sends a held message that waits because people joined the group after it was written
    /// ([`Event::HeldNeedsConfirm`]): the user agrees that everyone in the group now reads it.
    /// It is sealed in the current epoch (for the current members) and goes with the group's
    /// other held messages, in order, now if connected, else after the next connection;
    /// [`Event::Sent`] reports it. Should yet more people join before it goes, it waits for the
    /// user again. A held message that did not need it is left as it is (it goes anyway).
    ///
    /// # Errors
    ///
    /// [`ClientError::NotFound`] ([`Missing::HeldMessage`]) when no held message of the group
    /// has that id (sent or discarded meanwhile); those of a command in a group
    /// ([the errors every command shares](crate::ClientCore#errors)), without reaching the
    /// server.
    pub async fn send_held_anyway(
        &mut self,
        group: GroupId,
        id: HeldId,
        seen_epoch: u64,
    ) -> Result<(), ClientError> {
        let r = self.confirm_held(group, id, seen_epoch).await;
        if r.is_ok() {
            self.process_held().await;
        }
        self.end_step(r).await
    }

    async fn confirm_held(
        &mut self,
        group: GroupId,
        id: HeldId,
        seen_epoch: u64,
    ) -> Result<(), ClientError> {
        let epoch = self.member_ctx(group).await?.state.epoch().0;
        let (key, mut entry) = self.find_held(group, id).await?;
        if self.added_since(group, &entry).is_none() {
            // Nobody joined since it was written: it goes as it is.
            return Ok(());
        }
        if epoch != seen_epoch {
            return Err(ClientError::ChangedSinceAsked);
        }
        entry.epoch = Some(epoch);
        entry.asked_in = None;
        self.db.put(T_HELD, &key, &entry)?;
        self.held_dirty = true;
        self.held_changed(group);
        Ok(())
    }

    /// Discards a held message (not sent; nobody sees it): what the user chooses for one that
    /// waits because people joined since it was written, or for any message still held. The
    /// group's later held messages then go, in order. A message already sealed
    /// ([`HeldMessage::sealed`]) cannot be taken back.
    ///
    /// # Errors
    ///
    /// [`ClientError::NotFound`] ([`Missing::HeldMessage`]) when no held message of the group
    /// has that id; [`ClientError::UnknownGroup`] for a group this device does not know.
    pub async fn discard_held(&mut self, group: GroupId, id: HeldId) -> Result<(), ClientError> {
        let r = self.drop_held(group, id).await;
        if r.is_ok() {
            self.process_held().await;
        }
        self.end_step(r).await
    }

    async fn drop_held(&mut self, group: GroupId, id: HeldId) -> Result<(), ClientError> {
        if !self.groups.contains_key(&group) {
            return Err(ClientError::UnknownGroup);
        }
        let (key, _) = self.find_held(group, id).await?;
        self.db.remove(T_HELD, &key);
        self.held_dirty = true;
        self.held_changed(group);
        Ok(())
    }

    /// Says that a held message waits for the user because people joined since it was
    /// written ([`Event::HeldNeedsConfirm`]), once per epoch; the entry at `key` records it.
    fn ask_confirm(
        &mut self,
        group: GroupId,
        key: &[u8],
        entry: &mut HeldEntry,
        added: Vec<AddedMember>,
    ) -> Result<(), ClientError> {
        let now = self.groups.get(&group).map(|ctx| ctx.state.epoch().0);
        if entry.asked_in.is_some() && entry.asked_in == now {
            return Ok(());
        }
        entry.asked_in = now;
        self.db.put(T_HELD, key, &*entry)?;
        self.emit(Event::HeldNeedsConfirm {
            group,
            id: HeldId(entry.id),
            added,
            epoch: now.unwrap_or(0),
        });
        self.held_changed(group);
        Ok(())
    }

    /// [`Self::hold`] without waking [`Self::process_held`]: for a message that must wait for
    /// something else (the retry timer, the log catching up) before it is tried again.
    ///
    /// The step is committed with the entry (commits inside a step are allowed, PROTOCOL.md
    /// §11.12), so whoever hears `Held` next can count on the message being stored. A store
    /// that fails here, in a read or in the commit, gives its error instead and undoes the
    /// step as a whole ([`Self::revert`]): what the caller wrote with the hold (an outbox copy
    /// taken out, say) is not stored without it. Nobody is told a message is kept that is not.
    pub(crate) async fn hold_quietly(
        &mut self,
        group: GroupId,
        entry: &HeldEntry,
    ) -> Result<(), ClientError> {
        if matches!(self.db.count(T_HELD, group.as_bytes()).await, Ok((n, _)) if n >= MAX_HELD_PER_GROUP)
        {
            return Err(ClientError::Invalid(format!(
                "{MAX_HELD_PER_GROUP} messages are already held for this group until this device \
                 catches up; this one was not kept"
            )));
        }
        let written = match self.new_held_key(group, &entry.content).await {
            Ok(key) => self.db.put(T_HELD, &key, entry),
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            self.db.fail_step(e.clone());
            // Fails with `e` (the step's fault), undoing the step.
            self.commit().await?;
            return Err(e.into());
        }
        self.held_changed(group);
        self.commit().await
    }

    /// The key a message held now for `group` is stored under (the held table is read for it).
    async fn new_held_key(
        &mut self,
        group: GroupId,
        content: &MessageContent,
    ) -> Result<Vec<u8>, crate::StoreError> {
        // Ordered by when the message was written, and among messages written in the same
        // millisecond (a coarse or stopped clock) by when they were held: the tail counts on from
        // the last one of that millisecond. Random only if it cannot count on (a tail left by an
        // older version at the top of the range), so that nothing is overwritten.
        let at = key2(group.as_bytes(), &content.sent_at.0.to_be_bytes());
        let last = self
            .db
            .scan_range_rev_bytes(T_HELD, &at, &key2(&at, &[0xff; 9]), 1)
            .await?;
        let next = match last.first().map(|(key, _)| key.get(at.len()..)) {
            None => Some(0),
            Some(tail) => tail
                .and_then(|t| <[u8; 8]>::try_from(t).ok())
                .and_then(|t| u64::from_be_bytes(t).checked_add(1)),
        };
        let tail = match next {
            Some(n) => n.to_be_bytes(),
            None => {
                let mut tail = [0u8; 8];
                self.host.fill_random(&mut tail);
                tail
            }
        };
        Ok(key2(&at, &tail))
    }

    /// Seals and posts the messages held for groups that have caught up, in the order they
    /// were written. A group whose post is refused for a while (slow mode, rate limit) waits
    /// for the outbox's retry with the rest of its held messages.
    ///
    /// A held text written before people joined the group is not sent by itself
    /// ([`Self::added_since`]): the user is asked ([`Event::HeldNeedsConfirm`]). Order is kept:
    /// the group's later held messages wait behind it, also those written after the people
    /// joined (sending them first would put them before it, and a reply to it before it),
    /// until the user sends it anyway or discards it. Each later one that needs the user's
    /// word too is asked about at once, so that one look settles them all.
    pub(crate) async fn process_held(&mut self) {
        if self.conn.is_none() || !self.held_dirty {
            return;
        }
        self.held_dirty = false;
        let Ok(held) = self.db.scan::<StoredHeld>(T_HELD, &[], usize::MAX).await else {
            return;
        };
        let mut waiting: BTreeSet<GroupId> = BTreeSet::new();
        for (key, stored) in held {
            let mut entry = stored.into_entry(&key);
            let Some(group) = key
                .get(..16)
                .and_then(|g| <[u8; 16]>::try_from(g).ok())
                .map(GroupId)
            else {
                self.db.remove(T_HELD, &key);
                continue;
            };
            // A group the device was put back into without asking waits for the user's
            // consent (§11.7); accepting it sends what is held. (One it is no longer in at all
            // goes on, to be reported as not sent.)
            let me = self.device();
            let put_back_unasked = !self.is_accepted(group)
                && self.groups.get(&group).is_some_and(|c| c.is_member(&me));
            if self.is_behind(group)
                || put_back_unasked
                || self.stale_until_synced.contains_key(&group)
            {
                continue;
            }
            if let Some(added) = self.added_since(group, &entry) {
                if let Err(e) = self.ask_confirm(group, &key, &mut entry, added) {
                    tracing::warn!(%group, error = %e, "a held message could not be kept");
                }
                waiting.insert(group);
                continue;
            }
            if waiting.contains(&group) && keeps_order(&entry.content) {
                continue;
            }
            match self.post_now(group, &entry, Some(&key)).await {
                Ok((seq, id)) => match self.own_message(group, seq, id, entry.content).await {
                    Ok(Some(message)) => self.emit(Event::Sent(message)),
                    Ok(None) => {}
                    // Posted, but not stored here: not shown as sent either.
                    Err(e) => {
                        tracing::warn!(%group, error = %e, "a sent message could not be stored")
                    }
                },
                // Sealed and in the outbox now (it reports `Sent` or `SendFailed` itself).
                Err(ClientError::Pending) => {}
                // Still held: the group fell behind again, its epoch kept moving, or people
                // joined meanwhile. The group's later held messages wait behind it.
                Err(ClientError::Held) => {
                    waiting.insert(group);
                }
                // Not connected: everything waits for the next connection. A store failure
                // undid the step (this message's move into the outbox with it) and dropped the
                // connection: the message is still held, and waits the same way.
                Err(
                    ClientError::Transport(_) | ClientError::Timeout { .. } | ClientError::Store(_),
                ) => {
                    self.held_dirty = true;
                    return;
                }
                Err(
                    ref e @ ClientError::Server {
                        code: ErrorCode::SlowMode,
                        retry_after_ms,
                        ..
                    },
                ) => {
                    // Held again by `post_now`: the user was told it would be sent. Tried
                    // again with the outbox's retry.
                    tracing::debug!(%group, error = %e, "held message waits");
                    self.retry_outbox_after(retry_after_ms);
                    waiting.insert(group);
                }
                Err(e) => {
                    self.db.remove(T_HELD, &key);
                    self.held_changed(group);
                    self.emit(Event::SendFailed {
                        group,
                        reason: e.to_string(),
                        code: e.code().to_string(),
                    });
                }
            }
        }
        let _ = self.commit().await;
    }

    /// Leaves a message held: the entry it came from stays, or a new one is made and stored
    /// before the caller hears `Held` ([`Self::hold_quietly`]).
    pub(crate) async fn keep_held(
        &mut self,
        group: GroupId,
        entry: &HeldEntry,
        held_key: Option<&[u8]>,
    ) -> Result<(Seq, MessageId), ClientError> {
        if held_key.is_none() {
            self.hold_quietly(group, entry).await?;
        }
        Err(ClientError::Held)
    }

    /// Encrypts `content` for the group's current epoch and posts it, unless the group is held
    /// ([`Self::is_held`]): then it is kept and [`ClientError::Held`] returned.
    pub(crate) async fn post_content(
        &mut self,
        group: GroupId,
        content: MessageContent,
    ) -> Result<(Seq, MessageId), ClientError> {
        self.sealed_this_send = false;
        self.member_ctx(group).await?;
        // An epoch due for fresh keys gets them first, so that this message goes in the new
        // epoch; a rekey that fails does not keep it from going (PROTOCOL.md §5.5).
        if !self.is_held(group).await {
            self.rekey_if_due(group).await;
        }
        let entry = self.new_held(group, content);
        let waits = match keeps_order(&entry.content) {
            true => self.is_held(group).await,
            false => self.is_behind(group),
        };
        if waits {
            self.hold(group, &entry).await?;
            return Err(ClientError::Held);
        }
        let r = self.post_now(group, &entry, None).await;
        if matches!(r, Err(ClientError::Pending)) {
            // In the outbox, waiting for the server: listed by `held`.
            self.held_changed(group);
        }
        r
    }

    /// Whether messages of `group` still wait in the outbox.
    pub(crate) async fn outbox_waiting(&self, group: GroupId) -> bool {
        matches!(self.db.count(T_OUTBOX, group.as_bytes()).await, Ok((n, _)) if n > 0)
    }

    /// Encrypts `entry`'s content for the group's current epoch (distributing this device's
    /// sender key first if needed) and posts it. Returns the seq and id once durable. A text
    /// whose group has gained members since it was written ([`Self::added_since`]) is not
    /// sealed: it is held (or stays held) and the user asked ([`Event::HeldNeedsConfirm`]).
    ///
    /// Offline (the server unreachable, or not answering, before the message could go into
    /// the outbox: at the start, or while its sender key or a sync went out), a new message is
    /// kept, encrypted in the store but not yet sealed, and sealed and posted once connected
    /// again (`after_connect`), in the epoch current then; the caller hears `Held`. A held
    /// message being sent (`held_key`) gets the error, which stops `process_held` so that the
    /// rest wait, in order, for the next connection.
    pub(crate) async fn post_now(
        &mut self,
        group: GroupId,
        entry: &HeldEntry,
        held_key: Option<&[u8]>,
    ) -> Result<(Seq, MessageId), ClientError> {
        match self.seal_and_post(group, entry, held_key).await {
            // Never returned once the message is in the outbox (a post that meets a dropped
            // connection is `Pending` there), so it is kept exactly once.
            Err(ClientError::Transport(_) | ClientError::Timeout { .. }) if held_key.is_none() => {
                self.keep_held(group, entry, None).await
            }
            r => r,
        }
    }

    /// [`Self::post_now`], but for what it does when the connection fails.
    async fn seal_and_post(
        &mut self,
        group: GroupId,
        entry: &HeldEntry,
        held_key: Option<&[u8]>,
    ) -> Result<(Seq, MessageId), ClientError> {
        let content = &entry.content;
        self.ensure_connected().await?;
        let from_held = held_key.is_some();
        // The held entry this message comes from, removed in the same flush that puts it into
        // the outbox (so a crash leaves exactly one copy), and only once.
        let mut held_key = held_key;
        // A new pinned text is encrypted again at most once after a `stale_epoch` refusal.
        let mut stale_retried = false;
        // Rounds in which the epoch moved on while the sender key was being sent.
        let mut epoch_moves = 0;
        loop {
            self.member_ctx(group).await?;
            // Earlier messages still waiting in the outbox go first, so that this one is not
            // stored before them; if they still cannot go, this one waits behind them.
            // Not while the server asked for a pause that has not passed (a `rate_limited` or
            // `slow_mode` refusal): posting again at once would only be refused again; they go
            // with the outbox's retry.
            let behind_outbox = self.outbox_waiting(group).await && {
                if !self.outbox_retry_pending() {
                    self.resend_outbox().await;
                }
                self.outbox_waiting(group).await
            };
            if self.conn.is_none() {
                // The resend lost the connection, or a store failure there undid the step:
                // what it left in the outbox may yet be held again, and sealed again, when
                // posted next time. Sealed behind it now, this message could go before it; it
                // waits like any message the server could not be reached for.
                return Err(ClientError::Transport(crate::TransportError::Closed(None)));
            }
            // Frames handled meanwhile (or a sync after a stale epoch) may have shown that
            // members use an epoch this device's log has not reached: then nothing is sealed.
            // A message also waits, unsealed, behind any earlier one that the outbox just held
            // again (to be sealed anew, it would go after this one), and behind any that waits
            // in the outbox sealed for an earlier epoch (it may yet be held again: sealed now,
            // this one would go first). Held messages go in the order they were written.
            if self.is_behind(group)
                || (keeps_order(content)
                    && (self.held_before(group, held_key).await
                        || (behind_outbox && self.outbox_has_older_epoch(group).await)))
            {
                return self.keep_held(group, entry, held_key).await;
            }
            // People joined since it was written (a sync, or frames handled meanwhile, showed
            // it): not sealed for them without the user's word.
            if let Some(added) = self.added_since(group, entry) {
                let mut entry = entry.clone();
                match held_key {
                    Some(key) => self.ask_confirm(group, key, &mut entry, added)?,
                    None => {
                        entry.asked_in = self.groups.get(&group).map(|c| c.state.epoch().0);
                        self.hold_quietly(group, &entry).await?;
                        self.emit(Event::HeldNeedsConfirm {
                            group,
                            id: HeldId(entry.id),
                            added,
                            epoch: entry.asked_in.unwrap_or(0),
                        });
                    }
                }
                return Err(ClientError::Held);
            }
            let sealed_for = self.epoch_ref_of(group);
            let keyed = match self.ensure_sender_key(group).await {
                // The server refused the key as sealed to a non-member: with several server
                // nodes, someone may have been removed through another node before this device
                // was told (the refusing node reads the newest stored log; it usually pushes
                // the removal just before its refusal). If the verified log, synced, has moved
                // on from the epoch the key was for, the message goes round in the new epoch;
                // if not, the refusal stands, and nobody is left out on the server's word.
                Err(
                    refusal @ ClientError::Server {
                        code: ErrorCode::NotMember,
                        ..
                    },
                ) => {
                    self.sync_group(group, None).await?;
                    if self.conn.is_none() {
                        // The sync ended with the connection, before it could show the log's
                        // head: like any dropped connection (a new message is held).
                        return Err(ClientError::Transport(crate::TransportError::Closed(None)));
                    }
                    if !self.is_behind(group) && self.epoch_ref_of(group) == sealed_for {
                        return Err(refusal);
                    }
                    // Moved on (or behind, held just below): no key for this round.
                    None
                }
                // Refused for a passing reason (the server's disk, a restart, a rate limit): the
                // message is kept, as a post refused for one is, and goes with the outbox's
                // retry (which wakes the held messages).
                Err(ClientError::Server {
                    code,
                    retry_after_ms,
                    ..
                }) if crate::session::is_passing(code) => {
                    self.retry_outbox_after(retry_after_ms);
                    return self.keep_held(group, entry, held_key).await;
                }
                keyed => Some(keyed?),
            };
            if self.is_behind(group) {
                return self.keep_held(group, entry, held_key).await;
            }
            // Frames handled while the sender key was being sent may have moved the log on: a
            // removal among them ends the epoch the key is for, and a message encrypted in it
            // could be read by the removed member (§5.5). Round again, in the new epoch; a log
            // that keeps moving (only a hostile server makes it) gets the message held, to be
            // sent later like any held message.
            let Some((epoch, mut chain)) =
                keyed.filter(|(epoch, _)| self.epoch_ref_of(group) == Some(*epoch))
            else {
                epoch_moves += 1;
                if epoch_moves >= MAX_SEAL_ROUNDS {
                    return self.keep_held(group, entry, held_key).await;
                }
                continue;
            };
            let bytes =
                zeroize::Zeroizing::new(serde_json::to_vec(content).map_err(ClientError::Encode)?);
            let envelope = Envelope::seal(
                &self.identity,
                group,
                epoch,
                &mut chain,
                &bytes,
                &mut HostRng(&mut *self.host),
            )
            .map_err(|e| ClientError::Encrypt(EncryptError::Envelope(e)))?;
            // The server does not check envelope signatures (PROTOCOL.md §10.1): a message
            // signed wrongly (a fault) would be acknowledged and then dropped by everyone, so it
            // is checked here, before it can be sent.
            envelope
                .verify()
                .map_err(|e| ClientError::Encrypt(EncryptError::Envelope(e)))?;
            // The message goes into the outbox before it leaves, and the advanced chain is
            // saved with it: a key is never used twice, and a message is never lost.
            let outbox_key = key2(group.as_bytes(), envelope.message_id().as_bytes());
            self.db.put(
                T_OUTBOX,
                &outbox_key,
                &OutboxEntry {
                    envelope: envelope.clone(),
                    content: content.clone(),
                    stale_refusals: entry.stale_refusals,
                },
            )?;
            if let Some(key) = held_key.take() {
                self.db.remove(T_HELD, key);
                // Sealed: still listed by `held`, now as sealed.
                self.held_changed(group);
            }
            Self::save_chain(
                &mut self.db,
                &key2(group.as_bytes(), epoch.hash.as_bytes()),
                &chain,
                true,
            );
            if behind_outbox {
                // Posted in order by the outbox's retry; `Sent` (or `SendFailed`) follows. In
                // the outbox before the caller hears `Pending`.
                self.commit().await?;
                self.sealed_this_send = true;
                return Err(ClientError::Pending);
            }
            // Stored (the outbox copy with the advanced chain) before the post leaves; from here
            // on the message goes, whatever fails (the request's own commit finds nothing left).
            self.commit().await?;
            self.sealed_this_send = true;
            let env = envelope.clone();
            let reply = match self
                .request(|id| ClientFrame::Post { id, envelope: env })
                .await
            {
                Ok(reply) => reply,
                Err(ClientError::Transport(_)) | Err(ClientError::Timeout { .. }) => {
                    return Err(ClientError::Pending);
                }
                Err(e) => return Err(e),
            };
            if self.keep_for_retry(&reply) {
                // The caller hears `Pending` now, and `Sent` (or `SendFailed`) then.
                return Err(ClientError::Pending);
            }
            if let ServerFrame::Posted { seq, message, .. } = &reply
                && let Err(reason) = self.check_posted(group, *seq, *message, &envelope).await
            {
                // Still in the outbox: posted again later, `Sent` (or `SendFailed`) then.
                self.refuse_posted(group, *seq, reason);
                return Err(ClientError::Pending);
            }
            self.db.remove(T_OUTBOX, &outbox_key);
            match reply {
                ServerFrame::Posted { seq, message, .. } => {
                    self.db
                        .put(T_SEEN, &key2(group.as_bytes(), message.as_bytes()), &seq)?;
                    self.note_own_post(group, epoch.epoch.0, seq);
                    if self
                        .groups
                        .get(&group)
                        .is_some_and(|c| c.meta.next_seq.max(1) == seq.0)
                    {
                        self.advance_cursor(group, Seq(seq.0.saturating_add(1)));
                    }
                    return Ok((seq, message));
                }
                // A held message (already out of the held queue), or a new text: held (again),
                // in the commit that takes the refused copy out of the outbox (a crash keeps one
                // or the other), and sealed again for the new epoch with the other held messages
                // once the sync has shown it. Refused as stale too often, it is reported not
                // sent (the error below).
                ServerFrame::Error {
                    code: ErrorCode::StaleEpoch,
                    ..
                } if (from_held || keeps_order(content))
                    && entry.stale_refusals.saturating_add(1) < MAX_STALE_REFUSALS =>
                {
                    let mut again = entry.clone();
                    again.stale_refusals = again.stale_refusals.saturating_add(1);
                    return match self.hold(group, &again).await {
                        Ok(()) => {
                            self.needs_sync.insert(group);
                            // Its group's held messages wait for that sync, or for this retry.
                            let wait = stale_retry_wait(again.stale_refusals);
                            let until = self.host.now().saturating_add(wait);
                            self.stale_until_synced.insert(group, until);
                            self.retry_outbox_after(Some(crate::machine::millis(wait)));
                            Err(ClientError::Held)
                        }
                        // The step was undone: the refused copy is back in the outbox (stored
                        // there before it was posted), and goes, sealed again, from there.
                        Err(ClientError::Store(_)) => Err(ClientError::Pending),
                        Err(e) => Err(e),
                    };
                }
                // A new pinned text: sealed again after a sync, once. (Lost in a crash meanwhile,
                // it is posted again from the pinned table: `process_needs_repost`.)
                ServerFrame::Error {
                    code: ErrorCode::StaleEpoch,
                    ..
                } if !from_held && !stale_retried => {
                    stale_retried = true;
                    self.sync_group(group, None).await?;
                }
                // A held message the user was told would be sent is kept through slow mode.
                ServerFrame::Error {
                    code: ErrorCode::SlowMode,
                    ..
                } if from_held => {
                    self.hold_quietly(group, entry).await?;
                    return Err(unexpected_reply(reply, "posted"));
                }
                other => return Err(unexpected_reply(other, "posted")),
            }
        }
    }

    /// Whether `group` has a held message before the one stored under `held_key` (any held
    /// message, for a message not held: `None`). A store that cannot tell says yes: the
    /// message waits rather than risk going first.
    async fn held_before(&self, group: GroupId, held_key: Option<&[u8]>) -> bool {
        let Some(key) = held_key else {
            return self.is_held(group).await;
        };
        self.db
            .scan_range_rev_bytes(T_HELD, group.as_bytes(), key, 1)
            .await
            .map_or(true, |before| !before.is_empty())
    }

    /// Whether a message of `group` waits in the outbox sealed for an epoch before the one the
    /// group is in now. A store that cannot tell says yes, as [`Self::held_before`] does.
    async fn outbox_has_older_epoch(&self, group: GroupId) -> bool {
        let Some(now) = self.groups.get(&group).map(|ctx| ctx.state.epoch()) else {
            return false;
        };
        self.db
            .scan::<OutboxEntry>(T_OUTBOX, group.as_bytes(), usize::MAX)
            .await
            .map_or(true, |waiting| {
                waiting.iter().any(|(_, entry)| entry.envelope.epoch < now)
            })
    }

    /// The epoch `group`'s verified log is in, if this device has the group.
    pub(crate) fn epoch_ref_of(&self, group: GroupId) -> Option<EpochRef> {
        self.groups.get(&group).map(|c| c.state.epoch_ref())
    }

    /// Posts again every message that was handed to the server but not acknowledged.
    pub(crate) async fn resend_outbox(&mut self) {
        let Ok(mut entries) = self.db.scan::<OutboxEntry>(T_OUTBOX, &[], usize::MAX).await else {
            return;
        };
        // In the order they were sealed, so the server stores each sender's messages in the
        // order they were written (receivers check it: [`Self::check_order`]).
        entries.sort_by_key(|(_, e)| (e.envelope.group, e.envelope.epoch, e.envelope.iteration));
        for (key, entry) in entries {
            let group = entry.envelope.group;
            if self.is_behind(group) {
                // Sealed before this device saw that members use a later epoch: not posted
                // while behind. Once caught up it is posted as it is (an honest server that has
                // it already answers with its seq; one that does not refuses it as stale, and
                // it is sealed again below), so it is never stored twice.
                continue;
            }
            // Sealed in an epoch that has since ended with a removal (or in an earlier one), and
            // not echoed back by the sync that showed the removal: posting it now could hand it
            // to the removed member, who holds that epoch's keys. Sealed again for the current
            // epoch instead.
            if self.groups.get(&group).is_some_and(|ctx| {
                entry.envelope.epoch < ctx.state.epoch()
                    && ctx.departure_covering(entry.envelope.epoch.0).is_some()
            }) {
                if self.reseal_later(group, &key, &entry, false).await.is_err() {
                    return;
                }
                continue;
            }
            let envelope = entry.envelope.clone();
            let reply = match self.request(|id| ClientFrame::Post { id, envelope }).await {
                Ok(reply) => reply,
                Err(_) => return,
            };
            if self.keep_for_retry(&reply) {
                // This one and the rest are posted again later, in order.
                break;
            }
            // Sealed for an epoch that has since ended: held, to be sealed again for the
            // current one (after a sync) — kept before the outbox copy goes, never lost.
            if let ServerFrame::Error {
                code: ErrorCode::StaleEpoch,
                ..
            } = reply
            {
                if self.reseal_later(group, &key, &entry, true).await.is_err() {
                    return;
                }
                continue;
            }
            if let ServerFrame::Posted { seq, message, .. } = &reply
                && let Err(reason) = self
                    .check_posted(group, *seq, *message, &entry.envelope)
                    .await
            {
                // Kept, with the rest behind it, and posted again later.
                self.refuse_posted(group, *seq, reason);
                break;
            }
            self.db.remove(T_OUTBOX, &key);
            self.held_changed(group);
            match reply {
                ServerFrame::Posted { seq, message, .. } => {
                    self.outbox_delivered(group, seq, message, entry).await
                }
                ServerFrame::Error { code, message, .. } => {
                    self.emit(Event::SendFailed {
                        group,
                        reason: message,
                        code: code.as_str().to_string(),
                    });
                }
                _ => {}
            }
        }
        let _ = self.commit().await;
    }

    /// Takes an outbox entry sealed for an epoch that has ended and holds its content, to be
    /// sealed again for the current epoch after a sync. The outbox copy goes in the commit
    /// that stores the held one (a crash keeps one or the other); if it cannot be held (too
    /// many held), the user is told it was not sent. A store failure undoes the step, the
    /// outbox copy's removal with it ([`Self::hold_quietly`]): `Err`, and the caller stops
    /// (the connection is gone).
    ///
    /// It was written (and sealed) in the envelope's epoch: people who joined after that are
    /// not sent it without the user's word, like any held message.
    pub(crate) async fn reseal_later(
        &mut self,
        group: GroupId,
        outbox_key: &[u8],
        outbox: &OutboxEntry,
        refused_as_stale: bool,
    ) -> Result<(), ClientError> {
        let entry = HeldEntry {
            id: outbox.envelope.message_id().0,
            content: outbox.content.clone(),
            epoch: Some(outbox.envelope.epoch.0),
            asked_in: None,
            stale_refusals: outbox
                .stale_refusals
                .saturating_add(u32::from(refused_as_stale)),
        };
        // In the batch the hold commits: a crash keeps one copy or the other.
        self.db.remove(T_OUTBOX, outbox_key);
        let held = if entry.stale_refusals >= MAX_STALE_REFUSALS {
            // Refused as stale too often (see the constant): not sealed again.
            Err(ClientError::Server {
                code: ErrorCode::StaleEpoch,
                message: format!(
                    "refused {MAX_STALE_REFUSALS} times as sealed for an epoch that has ended"
                ),
                retry_after_ms: None,
            })
        } else {
            self.hold(group, &entry).await
        };
        match held {
            Ok(()) => {}
            Err(e @ ClientError::Store(_)) => return Err(e),
            Err(e) => {
                self.emit(Event::SendFailed {
                    group,
                    reason: e.to_string(),
                    code: e.code().to_string(),
                });
                // Out of the outbox, where `held` listed it as sealed.
                self.held_changed(group);
            }
        }
        self.needs_sync.insert(group);
        Ok(())
    }

    /// Whether `reply` to a post refuses it for a passing reason; if so, the message stays in
    /// the outbox and the outbox is posted again after `retry_after_ms` (or [`OUTBOX_RETRY`]),
    /// unless a retry is already due sooner.
    pub(crate) fn keep_for_retry(&mut self, reply: &ServerFrame) -> bool {
        let ServerFrame::Error {
            code,
            retry_after_ms,
            ..
        } = reply
        else {
            return false;
        };
        if !is_passing(*code) {
            return false;
        }
        self.retry_outbox_after(*retry_after_ms);
        true
    }

    /// Whether the outbox's retry is scheduled for later than now ([`Self::retry_outbox_after`]).
    fn outbox_retry_pending(&self) -> bool {
        self.outbox_retry_at.is_some_and(|at| at > self.host.now())
    }

    /// Schedules the outbox (and held messages) to be posted again after `retry_after_ms` (or
    /// [`OUTBOX_RETRY`]), unless a retry is already due sooner.
    pub(crate) fn retry_outbox_after(&mut self, retry_after_ms: Option<u64>) {
        let wait = retry_after_ms
            .map_or(OUTBOX_RETRY, Duration::from_millis)
            .clamp(OUTBOX_RETRY_MIN, OUTBOX_RETRY_MAX);
        let at = self.host.now().saturating_add(wait);
        self.outbox_retry_at = Some(self.outbox_retry_at.map_or(at, |due| due.min(at)));
    }

    /// A message from the outbox reached the server (acknowledged late, or echoed by a sync):
    /// it becomes part of this device's history.
    pub(crate) async fn outbox_delivered(
        &mut self,
        group: GroupId,
        seq: Seq,
        id: MessageId,
        entry: OutboxEntry,
    ) {
        let _ = self
            .db
            .put(T_SEEN, &key2(group.as_bytes(), id.as_bytes()), &seq);
        self.note_own_post(group, entry.envelope.epoch.0, seq);
        self.held_changed(group);
        match self.own_message(group, seq, id, entry.content).await {
            Ok(Some(message)) => self.emit(Event::Sent(message)),
            Ok(None) => {}
            // Posted, but not stored here: not shown as sent either.
            Err(e) => tracing::warn!(%group, error = %e, "a sent message could not be stored"),
        }
    }
}

/// Whether `content` keeps its place among the user's messages (PROTOCOL.md §11.13): texts and
/// warnings do. A pinned text is for whoever is a member when it goes (a new member must be
/// able to read the agreement and the crisis resources) and never waits behind them.
fn keeps_order(content: &MessageContent) -> bool {
    !matches!(content.body, ContentBody::Pinned { .. })
}
