//! Messages as they arrive: in cursor order, verified, checked against the epoch they name
//! and the author's own order, decrypted, numbered and stored to be shown; or parked until
//! their sender key (or the user's consent) arrives; or rejected with a reason.

use confide_protocol::envelope::{ContentBody, MessageContent};
use confide_protocol::envelope::{Envelope, EnvelopeError, Verified};
use confide_protocol::frames::{ServerFrame, StoredMessage};
use confide_protocol::sender_key::{ReceiverChain, SenderChain};
use confide_protocol::{GroupId, MessageId, Seq, policy};

use crate::Network;
use crate::error::{ClientError, VerificationError};
use crate::events::{ChatMessage, Event, Rejection};
use crate::group::ReadMarker;
use crate::machine::ClientCore;
use crate::numbers::{self, NumberRun, T_NUMBERS};
use crate::outbox::OutboxEntry;
use crate::reports::evidence_bytes;
use crate::store::{
    ClientStore, T_DELETED, T_EVIDENCE, T_GROUPS, T_MESSAGES, T_NUMBER_SEQ, T_ORDER, T_OUTBOX,
    T_OWN_CHAINS, T_PARKED, T_RECV_CHAINS, T_SEEN, T_SEQ_NUMBER, key2, key3,
};

/// Whether a message's position was checked ([`ClientCore::seq_taken`]) earlier in the step
/// that stores it, and found free (or holding this very message).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Position {
    /// Not checked yet: storing checks it.
    Unchecked,
    /// Position `seq` was checked in this step for message `id`, and nothing written there
    /// since. It vouches for that message at that position only: storing any other checks.
    Checked { seq: Seq, id: MessageId },
}

/// What [`T_SEQ_NUMBER`] holds for a message removed whose record could not be read (or
/// that a store from before numbers held unnumbered): no number, but its position stays taken
/// (§11.2). Real numbers start at 1.
pub(crate) const NUMBER_UNKNOWN: u64 = 0;

/// Messages (or sender keys) kept per group while waiting for what they need; beyond this the
/// oldest are dropped, so a member who never sends their key cannot fill the disk.
pub(crate) const MAX_PARKED: usize = 10_000;

/// How many order warnings the client remembers, to report one swap once (memory bound).
pub(crate) const MAX_ORDER_WARNED: usize = 1_000;

impl<S: ClientStore, N: Network> ClientCore<S, N> {
    pub(crate) async fn handle_frame(&mut self, frame: ServerFrame) {
        match frame {
            ServerFrame::Message {
                group,
                seq,
                received_at,
                envelope,
            } => {
                let Some(ctx) = self.groups.get(&group) else {
                    return;
                };
                if ctx.meta.tampered.is_some() {
                    return;
                }
                let next = Seq(ctx.meta.next_seq.max(1));
                if seq == next {
                    self.handle_message(
                        group,
                        StoredMessage {
                            seq,
                            received_at,
                            envelope,
                        },
                    )
                    .await;
                    self.advance_cursor(group, Seq(seq.0.saturating_add(1)));
                } else if seq > next {
                    self.needs_sync.insert(group);
                }
            }
            ServerFrame::Op { group, op, seq } => match self.groups.get(&group) {
                // The next op, or a different op at the head's seq (a fork: refused and told).
                Some(ctx)
                    if seq == ctx.state.seq() + 1
                        || (seq == ctx.state.seq() && op.hash() != ctx.state.head()) =>
                {
                    let _ = self.apply_op(group, &op).await;
                }
                Some(ctx) if seq <= ctx.state.seq() => {}
                _ => {
                    self.needs_sync.insert(group);
                }
            },
            ServerFrame::Inbox { items } => {
                for item in items {
                    if self.handle_inbox(&item).await {
                        self.pending_acks.push(item.inbox_id);
                    }
                }
            }
            ServerFrame::DeviceList { list } => self.on_device_list(list).await,
            ServerFrame::LinkData { channel, data } => self.on_link_data(channel, data),
            ServerFrame::LinkClosed { channel } => self.on_link_closed(channel),
            _ => {}
        }
    }

    pub(crate) fn advance_cursor(&mut self, group: GroupId, next: Seq) {
        if self.advance_cursor_unsaved(group, next)
            && let Some(ctx) = self.groups.get(&group)
        {
            let _ = self.db.put(T_GROUPS, group.as_bytes(), &ctx.meta);
        }
    }

    /// [`Self::advance_cursor`] in memory only: whether the cursor moved. The caller saves the
    /// group's meta in the same step (a sync page saves it once, after its last message,
    /// rather than once per message).
    pub(crate) fn advance_cursor_unsaved(&mut self, group: GroupId, next: Seq) -> bool {
        match self.groups.get_mut(&group) {
            Some(ctx) if next.0 > ctx.meta.next_seq => {
                ctx.meta.next_seq = next.0;
                true
            }
            _ => false,
        }
    }

    pub(crate) fn reject_message(&mut self, group: GroupId, m: &StoredMessage, reason: String) {
        tracing::warn!(%group, seq = m.seq.0, %reason, "message rejected");
        let _ = self.db.put(
            T_SEEN,
            &key2(group.as_bytes(), m.envelope.message_id().as_bytes()),
            &m.seq,
        );
        self.emit(Event::MessageRejected(Rejection {
            group,
            seq: m.seq.0,
            reason,
        }));
    }

    /// Verifies, decrypts and stores one message, or parks it until its sender key arrives.
    pub(crate) async fn handle_message(&mut self, group: GroupId, m: StoredMessage) {
        let checked = m.envelope.verified();
        self.handle_checked(group, &m, checked).await;
    }

    /// [`Self::handle_message`] for a message whose signature check already ran: `checked` is
    /// its result for `m`'s envelope (a sync page's are checked ahead, on the cores the host
    /// lends, [`crate::Host::lend_cores`]). The signature is checked once; decrypting relies on
    /// that check ([`Verified::open`]).
    pub(crate) async fn handle_checked(
        &mut self,
        group: GroupId,
        m: &StoredMessage,
        checked: Result<Verified<'_>, EnvelopeError>,
    ) {
        let id = m.envelope.message_id();
        let seen_key = key2(group.as_bytes(), id.as_bytes());
        // Nothing from the server changes any state unless its sender's signature holds: a
        // forgery must not get the genuine message refused later as a "replay".
        let verified = match checked {
            // The check of this very envelope (a page's results are matched to its messages
            // in order by the caller).
            Ok(verified) if std::ptr::eq(verified.envelope(), &m.envelope) => verified,
            Ok(_) => {
                // Not this message's check (a caller's mistake): checked here instead, so that
                // no message is ever taken on another's signature.
                match m.envelope.verified() {
                    Ok(verified) => verified,
                    Err(e) => return self.bad_signature(group, m, &e),
                }
            }
            // A sync page's refusals come from `PageChecks::check` for this very message (by
            // its index in the page): not checked again, so that a server serving forgeries
            // does not make this device check each one twice.
            Err(e) => return self.bad_signature(group, m, &e),
        };
        if matches!(self.db.get_bytes(T_DELETED, &seen_key).await, Ok(Some(_))) {
            // Deleted for everyone before it reached this device.
            let _ = self.db.put(T_SEEN, &seen_key, &m.seq);
            return;
        }
        if let Ok(Some(seen)) = self.db.get::<Seq>(T_SEEN, &seen_key).await {
            if seen != m.seq {
                self.emit(Event::MessageRejected(Rejection {
                    group,
                    seq: m.seq.0,
                    reason: format!("replay of message {id} already received as #{}", seen.0),
                }));
            }
            return;
        }
        let me = self.device();
        let Some(ctx) = self.groups.get(&group) else {
            return;
        };
        let env = &m.envelope;
        if env.group != group {
            return self.reject_message(group, m, "the envelope names another group".into());
        }
        // A position names one message: one served where another is (or was) stored here would
        // take its number, and its report evidence, from it. Refused without being marked seen,
        // so that the message is still taken where the server really stored it.
        if let Some(reason) = self.seq_taken(group, m.seq, id).await {
            tracing::warn!(%group, seq = m.seq.0, "message served at another message's position");
            self.emit(Event::MessageRejected(Rejection {
                group,
                seq: m.seq.0,
                reason,
            }));
            return;
        }
        // What was said while this device was a member is shown; anything later only once the
        // user accepts being in the group (again).
        let consented = ctx.meta.accepted
            || ctx
                .meta
                .removed_after_epoch
                .is_some_and(|last| env.epoch.0 <= last);
        if !consented {
            // Only what a device of the verified log signed can be waiting: a message signed by
            // any other key (one the server made up) is not kept, so that the server cannot
            // inflate the count of messages waiting. One from an epoch the log has not reached
            // makes it sync; sync pages bring ops before messages.
            let known = match ctx.epochs.get(&env.epoch_ref()) {
                Some(devices) => devices.contains_key(&env.sender),
                None => ctx.user_of_device(&env.sender).is_some(),
            };
            if env.epoch > ctx.state.epoch() {
                self.needs_sync.insert(group);
            }
            if !known {
                tracing::debug!(%group, seq = m.seq.0, "message from a device the log does not know, in a group not accepted: dropped");
                return;
            }
            // No longer in the group (and never with the user's consent for this epoch): the
            // user cannot accept it any more, so nothing of it waits. One from a later epoch
            // may be from after this device was put back, which a sync will show.
            if !ctx.is_member(&me) && env.epoch <= ctx.state.epoch() {
                tracing::debug!(%group, seq = m.seq.0, "message of a group left without consent: dropped");
                return;
            }
            // Not shown until the user accepts being in this group; they are told it waits.
            self.park_message(group, m).await;
            let waiting = self
                .db
                .count(T_PARKED, group.as_bytes())
                .await
                .map_or(0, |(n, _)| n);
            self.emit(Event::MessageWaiting { group, waiting });
            return;
        }
        // Messages from before this device joined cannot be read, by design.
        if let Some((_, member)) = ctx.state.member_of_device(&me)
            && !member.can_read_epoch(env.epoch)
        {
            let _ = self.db.put(T_SEEN, &seen_key, &m.seq);
            return;
        }
        let Some(devices) = ctx.epochs.get(&env.epoch_ref()) else {
            if env.epoch > ctx.state.epoch() {
                // From an epoch this device has not verified yet: wait for the log. Signed by
                // a device the log knows, it shows that epoch is in use: hold our own posts.
                let claimant = ctx.is_member(&env.sender).then_some(env.sender);
                self.needs_sync.insert(group);
                self.park_message(group, m).await;
                if let Some(claimant) = claimant {
                    self.note_behind(group, env.epoch.0, claimant);
                }
                return;
            }
            return self.reject_message(
                group,
                m,
                "the message's epoch is not in the verified group log".into(),
            );
        };
        let Some((sender, sender_name)) = devices.get(&env.sender).cloned() else {
            return self.reject_message(
                group,
                m,
                "the sender was not a member in that epoch".into(),
            );
        };
        // An epoch at or before one that ended with a departure accepts nothing stored after an
        // epoch that began after that departure: the server allows no grace once someone went,
        // so such a message was slipped in afterwards, under keys the departed member holds.
        // Not only the epoch the departure ended: the departed member holds every earlier
        // epoch's keys too.
        let slipped_in = ctx.departure_covering(env.epoch.0).is_some_and(|ended| {
            policy::slipped_in_after_departure(
                m.seq,
                ctx.meta
                    .epoch_first_seq
                    .range(ended.saturating_add(1)..)
                    .map(|(_, first)| Seq(*first)),
            )
        });
        if slipped_in {
            return self.reject_message(
                group,
                m,
                "sent in an epoch that had already ended with a removal".into(),
            );
        }
        // When the author went (removed, or left) after being a member in this epoch, if they
        // did: anything they say they wrote later was written when they were out.
        let author_left_at = ctx.departure_of(&sender, &env.sender, env.epoch.0);
        if let Some(ctx) = self.groups.get_mut(&group) {
            ctx.meta.note_epoch_seq(m.envelope.epoch.0, m.seq.0);
        }
        let env = &m.envelope;
        if env.sender == me {
            // Our own message (echoed by a sync, or sent before a crash or a restore from
            // backup): make sure our chain never uses that key again.
            let own_key = key2(group.as_bytes(), env.epoch_hash.as_bytes());
            if let Ok(Some(bytes)) = self.db.get_bytes(T_OWN_CHAINS, &own_key).await
                && bytes.len() > 1
                && let Ok(mut chain) = SenderChain::from_bytes(&bytes[1..])
                && chain.iteration() <= env.iteration
            {
                chain.advance_to(env.iteration.saturating_add(1));
                Self::save_chain(&mut self.db, &own_key, &chain, bytes[0] == 1);
            }
            // A message still in the outbox reached the server after all.
            if let Ok(Some(entry)) = self.db.get::<OutboxEntry>(T_OUTBOX, &seen_key).await {
                self.db.remove(T_OUTBOX, &seen_key);
                self.outbox_delivered(group, m.seq, id, entry).await;
                return;
            }
            let _ = self.db.put(T_SEEN, &seen_key, &m.seq);
            return;
        }
        let chain_key = key3(
            group.as_bytes(),
            env.epoch_hash.as_bytes(),
            env.sender.as_bytes(),
        );
        let chain_bytes = match self.db.get_bytes(T_RECV_CHAINS, &chain_key).await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                // The sender key has not arrived yet: keep the message until it does.
                self.park_message(group, m).await;
                return;
            }
            Err(e) => return self.reject_message(group, m, e.to_string()),
        };
        let Ok(mut chain) = ReceiverChain::from_bytes(&chain_bytes) else {
            return self.reject_message(group, m, "stored sender key is damaged".into());
        };
        let opened = match verified.open(&mut chain) {
            Ok(opened) => opened,
            Err(e) => return self.reject_message(group, m, e.to_string()),
        };
        self.db
            .put_bytes(T_RECV_CHAINS, &chain_key, &chain.to_bytes());
        let content: MessageContent = match serde_json::from_slice(&opened.body) {
            Ok(c) => c,
            Err(_) => {
                return self.reject_message(group, m, "the message content is not valid".into());
            }
        };
        // The author wrote this after their removal (by their own clock), in this epoch or in
        // an earlier one whose keys they kept: whatever the server's order says, it was posted
        // after they were out.
        if author_left_at.is_some_and(|left_at| content.sent_at > left_at) {
            return self.reject_message(
                group,
                m,
                "written by a removed member after their removal".into(),
            );
        }
        self.check_order(group, m, &sender_name, content.seen_seq)
            .await;
        let (text, reply_to, warnings, round) = match content.body {
            ContentBody::Text {
                text,
                reply_to,
                warnings,
                round,
            } => (text, reply_to, warnings, round),
            ContentBody::AddWarning { message, warnings } => {
                let _ = self.db.put(T_SEEN, &seen_key, &m.seq);
                self.receive_add_warning(group, env.sender, message, warnings)
                    .await;
                return;
            }
            ContentBody::Pinned {
                kind,
                version,
                text,
                key,
            } => {
                let _ = self.db.put(T_SEEN, &seen_key, &m.seq);
                self.receive_pinned(group, env.sender, kind, version, text, &key);
                return;
            }
            _ => {
                let _ = self.db.put(T_SEEN, &seen_key, &m.seq);
                return;
            }
        };
        let evidence = evidence_bytes(&m.envelope, &opened.body, &opened.franking_key);
        let mut message = ChatMessage {
            group,
            seq: m.seq,
            number: 0,
            id,
            sender,
            sender_device: env.sender,
            sender_name,
            sent_at: content.sent_at,
            received_at: m.received_at,
            round: self.honoured_round(group, sender, content.sent_at, &text, round),
            text,
            reply_to,
            warnings: crate::warnings::honoured_warnings(warnings),
            hidden: false,
        };
        // Shown only once stored: a message the store cannot take is neither shown nor taken
        // as processed (a position another message holds was reported by `store_message`).
        // A store failure reverts the whole step (`store_message`): the chain is not
        // advanced, and the message comes again with the next sync.
        // The position was checked above, in this step, and nothing since wrote there.
        let checked = Position::Checked { seq: m.seq, id };
        // The evidence is kept (encrypted at rest) with the record, so this message can be
        // reported verifiably later.
        if let Err(e) = self
            .store_text_at(&mut message, checked, Some(&evidence))
            .await
        {
            tracing::warn!(%group, seq = m.seq.0, error = %e, "a message could not be stored: not shown");
            return;
        }
        let _ = self.db.put(T_SEEN, &seen_key, &m.seq);
        self.emit(Event::Message(message));
    }

    /// Drops a message whose signature does not hold, and tells the user.
    fn bad_signature(&mut self, group: GroupId, m: &StoredMessage, e: &EnvelopeError) {
        tracing::warn!(%group, seq = m.seq.0, "message with a bad signature dropped");
        self.emit(Event::MessageRejected(Rejection {
            group,
            seq: m.seq.0,
            reason: e.to_string(),
        }));
    }

    /// Warns when the server's order contradicts the author's: a message stored at or before
    /// the seq its author says they had already read (`seen_seq`), or one sender's messages
    /// stored out of the order that sender wrote them in: within an epoch a sender's chain iteration only grows, so a message stored
    /// after another of theirs must have a higher iteration. Keeps, per (group, epoch,
    /// sender), the highest iteration seen and where it was stored; messages processed late
    /// (parked until their key came) are compared the other way round.
    pub(crate) async fn check_order(
        &mut self,
        group: GroupId,
        m: &StoredMessage,
        sender_name: &str,
        seen_seq: Option<Seq>,
    ) {
        if let Some(seen) = seen_seq
            && seen >= m.seq
        {
            self.order_warning(
                group,
                m.seq.0,
                None,
                format!(
                    "the server's order is wrong: {sender_name} had already read message #{} \
                     when writing this one, yet the server stored it as #{}",
                    seen.0, m.seq.0
                ),
            );
        }
        let env = &m.envelope;
        let key = key3(
            group.as_bytes(),
            env.epoch_hash.as_bytes(),
            env.sender.as_bytes(),
        );
        let seen: Option<(u32, u64)> = self.db.get(T_ORDER, &key).await.ok().flatten();
        if let Some((iteration, seq)) = seen {
            let swapped = (m.seq.0 > seq && env.iteration < iteration)
                || (m.seq.0 < seq && env.iteration > iteration);
            if swapped {
                let (earlier, later) = (m.seq.0.min(seq), m.seq.0.max(seq));
                self.order_warning(
                    group,
                    m.seq.0,
                    Some(seq),
                    format!(
                        "the server's order is wrong: {sender_name} wrote message #{later} \
                         before message #{earlier}"
                    ),
                );
            }
            if env.iteration <= iteration {
                return;
            }
        }
        let _ = self.db.put(T_ORDER, &key, &(env.iteration, m.seq.0));
    }

    /// Reports that message `seq` is out of its author's order — unless it, or the message it
    /// was found swapped with (`other`), was already reported.
    pub(crate) fn order_warning(
        &mut self,
        group: GroupId,
        seq: u64,
        other: Option<u64>,
        reason: String,
    ) {
        let known = |s: u64| self.order_warned.contains(&(group, s));
        if known(seq) || other.is_some_and(known) {
            return;
        }
        if self.order_warned.len() >= MAX_ORDER_WARNED {
            self.order_warned.clear();
        }
        self.order_warned.insert((group, seq));
        tracing::warn!(%group, seq, "the server's order contradicts the author's");
        self.emit(Event::OrderWarning(Rejection { group, seq, reason }));
    }

    pub(crate) async fn park_message(&mut self, group: GroupId, m: &StoredMessage) {
        if let Ok((n, Some(oldest_key))) = self.db.count(T_PARKED, group.as_bytes()).await
            && n >= MAX_PARKED
        {
            if let Ok(Some(oldest)) = self.db.get::<StoredMessage>(T_PARKED, &oldest_key).await {
                self.reject_message(group, &oldest, "its sender key never arrived".into());
            }
            self.db.remove(T_PARKED, &oldest_key);
        }
        let _ = self
            .db
            .put(T_PARKED, &key2(group.as_bytes(), &m.seq.0.to_be_bytes()), m);
    }

    /// Drops the messages a group kept for the user's consent that no consent covers any
    /// more (this device left or was removed before the user accepted the group): those of
    /// epochs after the last one this device was in with consent, if any.
    pub(crate) async fn drop_unconsented_parked(&mut self, group: GroupId) {
        let last_consented = self
            .groups
            .get(&group)
            .and_then(|c| c.meta.removed_after_epoch);
        let Ok(parked) = self
            .db
            .scan::<StoredMessage>(T_PARKED, group.as_bytes(), usize::MAX)
            .await
        else {
            return;
        };
        for (key, m) in parked {
            if last_consented.is_none_or(|last| m.envelope.epoch.0 > last) {
                self.db.remove(T_PARKED, &key);
            }
        }
    }

    pub(crate) async fn retry_parked(&mut self, group: GroupId) {
        // Held for the user's consent (§11.7), nothing can be shown yet, whatever key came:
        // they are processed when the user accepts the group.
        if self
            .groups
            .get(&group)
            .is_some_and(|c| !c.meta.accepted && c.meta.removed_after_epoch.is_none())
        {
            return;
        }
        let Ok(parked) = self
            .db
            .scan::<StoredMessage>(T_PARKED, group.as_bytes(), usize::MAX)
            .await
        else {
            return;
        };
        if parked.is_empty() {
            return;
        }
        for (key, m) in parked {
            self.db.remove(T_PARKED, &key);
            self.handle_message(group, m).await;
        }
        // What those messages taught (the per-epoch cut-off, the highest seq seen) is kept;
        // messages in cursor order save it with the cursor.
        if let Some(ctx) = self.groups.get(&group) {
            let _ = self.db.put(T_GROUPS, group.as_bytes(), &ctx.meta);
        }
    }

    /// Stores a text to show ([`Self::store_message`]) with the warnings moderators sent
    /// before it arrived, and notes it in its round if it has an honoured round tag.
    pub(crate) async fn store_text(
        &mut self,
        message: &mut ChatMessage,
    ) -> Result<(), ClientError> {
        self.store_text_at(message, Position::Unchecked, None).await
    }

    /// [`Self::store_text`], saying whether the message's position was already checked in
    /// this step, with the received text's report evidence to keep in its record.
    async fn store_text_at(
        &mut self,
        message: &mut ChatMessage,
        position: Position,
        evidence: Option<&[u8]>,
    ) -> Result<(), ClientError> {
        self.take_pending_warnings(message).await;
        self.store_message_at(message, position, evidence).await?;
        self.note_round_message(message).await;
        Ok(())
    }

    /// Stores a message to show, giving it the group's next number ([`ChatMessage::number`]).
    /// The counter is saved before the message, so that a crash between the two can skip a
    /// number but never give one twice.
    ///
    /// A position that already holds (or held) another message is refused and reported
    /// ([`Event::MessageRejected`]): a number names one message, and a message stored over
    /// another would take its number and its report evidence. The same message stored again
    /// keeps its number.
    pub(crate) async fn store_message(
        &mut self,
        message: &mut ChatMessage,
    ) -> Result<(), ClientError> {
        self.store_message_at(message, Position::Unchecked, None)
            .await
    }

    /// [`Self::store_message`], saying whether the message's position was already checked in
    /// this step, with its report evidence (a received text's) to keep in its record.
    async fn store_message_at(
        &mut self,
        message: &mut ChatMessage,
        position: Position,
        evidence: Option<&[u8]>,
    ) -> Result<(), ClientError> {
        let r = self.store_message_once(message, position, evidence).await;
        // The store failed: what the step did on the way here (a receiving chain advanced, the
        // message marked as processed, an outbox entry taken out) must not be kept without
        // the message, which would be lost. The whole step is reverted, so the message comes
        // again with the next sync (§11.12).
        if let Err(ClientError::Store(e)) = &r {
            self.db.fail_step(e.clone());
        }
        r
    }

    async fn store_message_once(
        &mut self,
        message: &mut ChatMessage,
        position: Position,
        evidence: Option<&[u8]>,
    ) -> Result<(), ClientError> {
        let group = message.group;
        let key = key2(group.as_bytes(), &message.seq.0.to_be_bytes());
        // Read once, for both questions below.
        let stored = self.db.get::<ChatMessage>(T_MESSAGES, &key).await?;
        if let Some(stored) = &stored
            && stored.id == message.id
            && stored.number != 0
        {
            message.number = stored.number;
            return Ok(());
        }
        // Checked already in this step (a received message's, before anything else was done
        // with it): the record read here still shows nothing else there, and nothing else
        // can have been written at that position meanwhile, so the rest is not read again.
        let vouched = match position {
            Position::Checked { seq, id } => {
                debug_assert!(
                    seq == message.seq && id == message.id,
                    "a position check stands for the message it checked only"
                );
                seq == message.seq && id == message.id
            }
            Position::Unchecked => false,
        };
        let checked = vouched && stored.as_ref().is_none_or(|stored| stored.id == message.id);
        let taken = match checked {
            true => None,
            false => {
                self.position_taken(group, message.seq, message.id, stored.as_ref())
                    .await
            }
        };
        if let Some(reason) = taken {
            tracing::warn!(%group, seq = message.seq.0, "a message at another message's position refused");
            self.emit(Event::MessageRejected(Rejection {
                group,
                seq: message.seq.0,
                reason: reason.clone(),
            }));
            return Err(VerificationError::PositionTaken { seq: message.seq.0 }.into());
        }
        let ctx = self
            .groups
            .get_mut(&group)
            .ok_or(ClientError::UnknownGroup)?;
        ctx.meta.last_number = ctx.meta.last_number.saturating_add(1);
        message.number = ctx.meta.last_number;
        let own = message.sender == self.profile.user;
        if own {
            // Writing in a group is reading it, as in every messenger.
            ctx.meta.read = ReadMarker(Some(message.number));
            ctx.meta.unread = 0;
        } else {
            ctx.meta.unread = ctx.meta.unread.saturating_add(1);
        }
        self.db.put(T_GROUPS, group.as_bytes(), &ctx.meta)?;
        self.store_number(group, message.number, message.seq)
            .await?;
        // The evidence in the record's own value: one store key less per message received.
        self.db
            .put_with_attachment(T_MESSAGES, &key, message, evidence)?;
        if own {
            self.emit(Event::Read {
                group,
                number: message.number,
            });
        }
        Ok(())
    }

    /// Why position `seq` of `group` cannot hold message `id`, if it cannot: another message
    /// is stored there, was (and was deleted or expired since: its number stays), or waits
    /// there to be processed. `None` when it is free or holds this very message.
    pub(crate) async fn seq_taken(
        &self,
        group: GroupId,
        seq: Seq,
        id: MessageId,
    ) -> Option<String> {
        let key = key2(group.as_bytes(), &seq.0.to_be_bytes());
        // A record that cannot be read counts as none, as everywhere a position is checked.
        let stored = self
            .db
            .get::<ChatMessage>(T_MESSAGES, &key)
            .await
            .ok()
            .flatten();
        self.position_taken(group, seq, id, stored.as_ref()).await
    }

    /// [`Self::seq_taken`] with the message record stored at `seq` already read (`stored`).
    async fn position_taken(
        &self,
        group: GroupId,
        seq: Seq,
        id: MessageId,
        stored: Option<&ChatMessage>,
    ) -> Option<String> {
        let key = key2(group.as_bytes(), &seq.0.to_be_bytes());
        let taken = match stored {
            Some(stored) => stored.id != id,
            // Numbered once, and gone since.
            None => {
                self.removed_at(&key).await.is_some()
                    || self
                        .db
                        .get::<StoredMessage>(T_PARKED, &key)
                        .await
                        .ok()
                        .flatten()
                        .is_some_and(|parked| parked.envelope.message_id() != id)
            }
        };
        taken.then(|| {
            format!(
                "the server gave this message position {}, where another message is (or was) \
                 on this device; it is not shown there",
                seq.0
            )
        })
    }

    /// Checks the server's acknowledgement of this device's post of `envelope`: it must name
    /// that message, at a position no other message has here.
    pub(crate) async fn check_posted(
        &self,
        group: GroupId,
        seq: Seq,
        message: MessageId,
        envelope: &Envelope,
    ) -> Result<(), String> {
        if message != envelope.message_id() {
            return Err("the server acknowledged another message than the one posted".into());
        }
        match self.seq_taken(group, seq, message).await {
            Some(reason) => Err(reason),
            None => Ok(()),
        }
    }

    /// The server acknowledged a post at a position that cannot be its own: the message stays
    /// in the outbox (posted again later: an honest server answers with its real position) and
    /// the user is told.
    pub(crate) fn refuse_posted(&mut self, group: GroupId, seq: Seq, reason: String) {
        tracing::warn!(%group, seq = seq.0, "acknowledgement of a post refused");
        self.emit(Event::MessageRejected(Rejection {
            group,
            seq: seq.0,
            reason: format!("your message was kept to be sent again: {reason}"),
        }));
        self.retry_outbox_after(None);
    }

    /// Where message `id` of `group` was processed on this device, and the number it was
    /// shown as there (if it was): found by the id, whatever position anyone else names.
    ///
    /// # Errors
    ///
    /// [`ClientError::UnknownGroup`] for a group this device does not hold;
    /// [`ClientError::Store`] if the store cannot be read.
    pub async fn message_place(
        &self,
        group: GroupId,
        id: MessageId,
    ) -> Result<Option<crate::MessagePlace>, ClientError> {
        if !self.groups.contains_key(&group) {
            return Err(ClientError::UnknownGroup);
        }
        let Some(seq) = self
            .db
            .get::<Seq>(T_SEEN, &key2(group.as_bytes(), id.as_bytes()))
            .await?
        else {
            return Ok(None);
        };
        let key = key2(group.as_bytes(), &seq.0.to_be_bytes());
        let number = match self.db.get::<ChatMessage>(T_MESSAGES, &key).await? {
            Some(stored) => (stored.id == id).then_some(stored.number),
            // Deleted or expired since (its number stays), or never shown.
            None => self.number_of_removed(&key).await,
        };
        Ok(Some(crate::MessagePlace { seq, number }))
    }

    /// Records that number `number` of `group` names message `seq`, in the value that holds
    /// 64 numbers ([`crate::numbers`]). The other way round (seq → number) is the message's
    /// own record ([`ChatMessage::number`]) while it is stored, and [`T_SEQ_NUMBER`] once it
    /// is gone ([`Self::remove_message`]): one store key less for every message received.
    /// Stores written before kept [`T_SEQ_NUMBER`] for every message, which reads the same.
    pub(crate) async fn store_number(
        &mut self,
        group: GroupId,
        number: u64,
        seq: Seq,
    ) -> Result<(), ClientError> {
        let key = numbers::run_key(group, number);
        let mut run = self.number_run(group, &key).await?;
        run.set(number, seq);
        self.db.put_bytes(T_NUMBERS, &key, &run.to_bytes());
        Ok(())
    }

    /// The run of numbers stored at `key` of [`T_NUMBERS`] (empty if none). A damaged one
    /// (it does not decrypt, or is not a run) reads as empty, with a warning, and is written
    /// afresh with the next number it holds: it is an index, and one damaged value must not
    /// stop every later message of the group (64 share it). The numbers it held lose their
    /// way to their messages (`seq_of_number` says `None`; an unread count skips them); the
    /// messages keep their numbers in their own records.
    ///
    /// # Errors
    ///
    /// [`ClientError::Store`] when the store cannot be read at all.
    pub(crate) async fn number_run(
        &self,
        group: GroupId,
        key: &[u8],
    ) -> Result<NumberRun, ClientError> {
        let bytes = match self.db.get_bytes(T_NUMBERS, key).await {
            Ok(None) => return Ok(NumberRun::empty()),
            Ok(Some(bytes)) => Some(bytes),
            Err(crate::StoreError::Corrupt { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        match bytes.and_then(|bytes| NumberRun::from_bytes(&bytes)) {
            Some(run) => Ok(run),
            None => {
                tracing::warn!(%group, "a damaged value of the number index read as empty");
                Ok(NumberRun::empty())
            }
        }
    }

    /// The seq message `number` of `group` names, also for a message deleted since; `None`
    /// if no message had that number here.
    pub(crate) async fn seq_of(
        &self,
        group: GroupId,
        number: u64,
    ) -> Result<Option<Seq>, ClientError> {
        let key = numbers::run_key(group, number);
        if let Some(seq) = self.number_run(group, &key).await?.get(number) {
            return Ok(Some(seq));
        }
        // Numbered in a store written before.
        Ok(self
            .db
            .get(T_NUMBER_SEQ, &numbers::legacy_key(group, number))
            .await?)
    }

    /// Removes the message stored at `key` (deleted for everyone, or past retention) and its
    /// report evidence, keeping its number (`number`, as read from its record;
    /// [`NUMBER_UNKNOWN`] for a record that held a message whose number could not be read,
    /// `None` when nothing was stored there): a number never names another message, a
    /// position stays taken (§11.2), and a deletion notice can still name it.
    pub(crate) fn remove_message(&mut self, key: &[u8], number: Option<u64>) {
        if let Some(number) = number
            && let Err(e) = self.db.put(T_SEQ_NUMBER, key, &number)
        {
            // Only a value that cannot be serialised fails here; the step is then not kept.
            self.db.fail_step(e);
        }
        // The record takes its evidence with it. A store written before kept the evidence
        // apart, and it holds the text: removing it too is what deleting means (§11.4).
        self.db.remove(T_MESSAGES, key);
        self.db.remove(T_EVIDENCE, key);
    }

    /// The number message `seq` of `group` has or had, if it was shown here: its record's
    /// while it is stored, else the one kept when it was removed.
    pub(crate) async fn number_of_seq(&self, group: GroupId, seq: Seq) -> Option<u64> {
        let key = key2(group.as_bytes(), &seq.0.to_be_bytes());
        match self.db.get::<ChatMessage>(T_MESSAGES, &key).await {
            Ok(Some(stored)) if stored.number != 0 => Some(stored.number),
            _ => self.number_of_removed(&key).await,
        }
    }

    /// The number the message at `key` (group and seq, as in [`T_MESSAGES`]) had when it was
    /// removed ([`Self::remove_message`]); in a store written before, any numbered message's.
    /// `None` too for a message removed whose number could not be read ([`NUMBER_UNKNOWN`]):
    /// its position is taken all the same ([`Self::removed_at`]).
    async fn number_of_removed(&self, key: &[u8]) -> Option<u64> {
        self.removed_at(key)
            .await
            .filter(|number| *number != NUMBER_UNKNOWN)
    }

    /// What [`T_SEQ_NUMBER`] holds at `key`: `Some` (a number, or [`NUMBER_UNKNOWN`]) when a
    /// message was removed from that position, which therefore stays taken.
    async fn removed_at(&self, key: &[u8]) -> Option<u64> {
        self.db.get(T_SEQ_NUMBER, key).await.ok().flatten()
    }

    /// Numbers the messages a store made before numbers existed held ([`ChatMessage::number`]),
    /// in the server's order, once.
    pub(crate) async fn number_old_messages(&mut self, group: GroupId) -> Result<(), ClientError> {
        let first: Vec<(Vec<u8>, ChatMessage)> =
            self.db.scan(T_MESSAGES, group.as_bytes(), 1).await?;
        if first.first().is_none_or(|(_, m)| m.number != 0) {
            return Ok(());
        }
        let messages: Vec<(Vec<u8>, ChatMessage)> = self
            .db
            .scan(T_MESSAGES, group.as_bytes(), usize::MAX)
            .await?;
        for (_, mut message) in messages {
            if message.number == 0 {
                self.store_message(&mut message).await?;
            }
        }
        // Committed by the caller ([`Self::new`]).
        Ok(())
    }
}
