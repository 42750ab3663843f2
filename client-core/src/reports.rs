//! Facilitator tools inside the encryption: verifiable reports of received messages, urgent
//! requests and moderation reasons sealed to the facilitators, and the queue in which a
//! facilitator device keeps what it received until someone resolves it.

use confide_protocol::encoding::{b64, b64_array};
use confide_protocol::envelope::{ContentBody, Envelope, MessageContent};
use confide_protocol::group_log::SignedOp;
use confide_protocol::report::{self, ReportPayload};
use confide_protocol::seal::{self, SealKind, SealedPayload};
use confide_protocol::{DeviceKeys, EpochRef, GroupId, Seq, Timestamp, UserId};
use serde::{Deserialize, Serialize};

use crate::Network;
use crate::error::{ClientError, EncryptError, Missing};
use crate::events::Event;
use crate::machine::ClientCore;
use crate::store::{
    ClientStore, T_EVIDENCE, T_FACILITATOR_QUEUE, T_NOTES, T_OPS, T_SEALED_SEEN,
    T_SEALED_SEEN_ORDER, key2,
};

/// The join-request and facilitator-note test vectors (`protocol/test-vectors/`), checked
/// against the payload types of this crate.
#[cfg(test)]
mod vectors;

/// What a received message needs to be reported verifiably later. Encrypted at rest.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Evidence {
    pub(crate) envelope: Envelope,
    #[serde(with = "b64")]
    pub(crate) body: Vec<u8>,
    #[serde(with = "b64_array")]
    pub(crate) franking_key: [u8; 32],
}

/// A note sealed to the facilitators ([`SealKind::FacilitatorNote`]).
#[derive(Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum FacilitatorNote {
    /// "I need a facilitator": a member in distress.
    Urgent { text: String },
    /// The reason for a moderation op, readable only by facilitators.
    Reason { op_seq: u64, text: String },
}

/// A reason as a facilitator device keeps it.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct ReasonRecord {
    pub(crate) from: UserId,
    pub(crate) text: String,
}

/// Longest note or reason, in bytes.
pub(crate) const MAX_NOTE_LEN: usize = 4000;

/// How many processed reports and facilitator notes a device remembers, to drop one the server
/// delivers again (PROTOCOL.md §7.2); the oldest is forgotten first. A support group's
/// facilitators do not receive this many in the years a redelivery would be worth anything,
/// and at 48 bytes of key each the list stays under a megabyte.
pub(crate) const MAX_SEALED_REMEMBERED: usize = 10_000;

/// What names one sealed payload for the queue and the replay check: a hash of its HPKE
/// encapsulated key and ciphertext. Every sealing draws a fresh encapsulated key, and the
/// header fields are bound into the HPKE context, so a payload the server delivers again has
/// the same digest, and a changed one does not open.
pub(crate) fn sealed_digest(sealed: &SealedPayload) -> [u8; 32] {
    confide_protocol::primitives::hash(
        "confide/v1/client/sealed-digest",
        &[sealed.enc.as_bytes(), &sealed.ciphertext],
    )
}

/// A facilitator-queue entry as stored, keyed by group and [`sealed_digest`].
#[derive(Serialize, Deserialize)]
struct QueueEntry {
    /// When this device received it: the queue's order.
    queued_at: Timestamp,
    item: crate::FacilitatorItem,
}

/// A stored queue entry: this version's, or an earlier version's bare item, keyed by group,
/// the time it was received (8 bytes, big-endian) and the sender's device. Those still load;
/// they are not rewritten, and leave the queue when resolved.
#[derive(Deserialize)]
#[serde(untagged)]
enum StoredQueueEntry {
    Current(QueueEntry),
    Earlier(crate::FacilitatorItem),
}

/// The time in the key of an earlier version's queue entry (group ‖ time ‖ device).
fn earlier_queue_time(key: &[u8]) -> Timestamp {
    key.get(16..24)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(Timestamp(0), |b| Timestamp(u64::from_be_bytes(b)))
}

/// The epoch of the reported message (its envelope names it; the envelope was verified).
pub(crate) fn sealed_report_epoch(verified: &report::VerifiedReport) -> EpochRef {
    verified.epoch
}

impl<S: ClientStore, N: Network> ClientCore<S, N> {
    /// Reports a received message to the facilitators, with proof of who said it.
    ///
    /// # Errors
    ///
    /// Those of a command in a group that reaches the server ([the errors every command
    /// shares](crate::ClientCore#errors)); [`ClientError::NotFound`] if no message received at
    /// `seq` is on this device ([`Missing::Message`](crate::Missing::Message)) or the group has no
    /// other facilitator ([`Missing::Facilitator`](crate::Missing::Facilitator));
    /// [`ClientError::Encrypt`] if the report cannot be sealed (a reason that is too long, say).
    pub async fn report(
        &mut self,
        group: GroupId,
        seq: Seq,
        reason: String,
    ) -> Result<(), ClientError> {
        let r = self.report_message(group, seq, reason).await;
        self.end_step(r).await
    }

    /// "I need a facilitator": an urgent request that only the facilitators can read.
    ///
    /// # Errors
    ///
    /// Those of a command in a group that reaches the server ([the errors every command
    /// shares](crate::ClientCore#errors)); [`ClientError::Invalid`] for a text longer than a note
    /// may be; [`ClientError::Encrypt`] or [`ClientError::Encode`] if it cannot be sealed.
    pub async fn request_facilitator(
        &mut self,
        group: GroupId,
        text: String,
    ) -> Result<(), ClientError> {
        let r = self
            .send_note(group, FacilitatorNote::Urgent { text })
            .await;
        self.end_step(r).await
    }

    /// The reason for moderation op `op_seq`, sealed so that only the facilitators can read
    /// it (and kept here for the moderation log).
    ///
    /// # Errors
    ///
    /// As [`Self::request_facilitator`].
    pub async fn reason(
        &mut self,
        group: GroupId,
        op_seq: u64,
        text: String,
    ) -> Result<(), ClientError> {
        let r = self
            .send_note(group, FacilitatorNote::Reason { op_seq, text })
            .await;
        self.end_step(r).await
    }

    /// Marks a queued report or urgent request ([`Self::facilitator_queue`]) as handled.
    ///
    /// # Errors
    ///
    /// [`ClientError::NotFound`] ([`Missing::QueueItem`](crate::Missing::QueueItem)) for an id
    /// that is not one [`Self::facilitator_queue`] gives; [`ClientError::Store`] if the store
    /// cannot be written.
    pub async fn resolve(&mut self, id: &str) -> Result<(), ClientError> {
        let r = self.resolve_item(id);
        self.end_step(r).await
    }

    /// Whether this device's user is a facilitator or co-facilitator of the group.
    pub(crate) fn is_moderator_here(&self, group: GroupId) -> bool {
        let me = self.device();
        self.groups.get(&group).is_some_and(|c| {
            c.state
                .member_of_device(&me)
                .is_some_and(|(_, m)| m.role.is_moderator())
        })
    }

    pub(crate) fn facilitator_keys(
        &self,
        group: GroupId,
    ) -> Result<(EpochRef, Vec<DeviceKeys>), ClientError> {
        let me = self.device();
        let ctx = self.groups.get(&group).ok_or(ClientError::UnknownGroup)?;
        let keys: Vec<DeviceKeys> = self.sealable(
            &ctx.state,
            ctx.state
                .facilitator_devices()
                .into_iter()
                .filter(|k| k.device != me),
        );
        Ok((ctx.state.epoch_ref(), keys))
    }

    /// Reports a received message to the facilitators, with proof of who said it.
    pub(crate) async fn report_message(
        &mut self,
        group: GroupId,
        seq: Seq,
        reason: String,
    ) -> Result<(), ClientError> {
        self.member_ctx(group).await?;
        self.ensure_connected().await?;
        let evidence: Evidence = self
            .db
            .get(T_EVIDENCE, &key2(group.as_bytes(), &seq.0.to_be_bytes()))
            .await?
            .ok_or(ClientError::NotFound(Missing::Message { seq: seq.0 }))?;
        let (epoch, facilitators) = self.facilitator_keys(group)?;
        if facilitators.is_empty() {
            return Err(Missing::Facilitator.into());
        }
        let payload = ReportPayload {
            seq,
            envelope: evidence.envelope,
            body: evidence.body,
            franking_key: evidence.franking_key,
            reason,
            reported_at: self.host.now(),
        };
        // As `report::seal_report`, one facilitator device at a time: a device whose keys cannot
        // be sealed to is left out, and the others still get the report.
        let bytes = report::report_bytes(&payload)
            .map_err(|e| ClientError::Encrypt(EncryptError::Report(e)))?;
        let items = self.seal_to_some(
            &facilitators,
            SealKind::Report,
            payload.envelope.group,
            epoch,
            &bytes,
        )?;
        self.send_sealed(items).await?;
        Ok(())
    }

    pub(crate) async fn send_note(
        &mut self,
        group: GroupId,
        note: FacilitatorNote,
    ) -> Result<(), ClientError> {
        self.member_ctx(group).await?;
        self.ensure_connected().await?;
        let text_len = match &note {
            FacilitatorNote::Urgent { text } | FacilitatorNote::Reason { text, .. } => text.len(),
        };
        if text_len > MAX_NOTE_LEN {
            return Err(ClientError::Invalid(format!(
                "a note is at most {MAX_NOTE_LEN} bytes"
            )));
        }
        if let FacilitatorNote::Reason { op_seq, text } = &note {
            // Keep our own reasons too: the moderation log shows them.
            let record = ReasonRecord {
                from: self.profile.user,
                text: text.clone(),
            };
            self.db.put(
                T_NOTES,
                &key2(group.as_bytes(), &op_seq.to_be_bytes()),
                &record,
            )?;
        }
        let (epoch, facilitators) = self.facilitator_keys(group)?;
        if facilitators.is_empty() {
            return Ok(());
        }
        let bytes =
            zeroize::Zeroizing::new(serde_json::to_vec(&note).map_err(ClientError::Encode)?);
        let items = self.seal_to_some(
            &facilitators,
            SealKind::FacilitatorNote,
            group,
            epoch,
            &bytes,
        )?;
        self.send_sealed(items).await?;
        Ok(())
    }

    pub(crate) async fn receive_report(&mut self, sealed: &SealedPayload) -> bool {
        let group = sealed.group;
        if !self.is_moderator_here(group) {
            return true;
        }
        let digest = sealed_digest(sealed);
        if self.sealed_seen(&digest).await {
            tracing::debug!(%group, "a report delivered again was dropped");
            return true;
        }
        let Some(ctx) = self.groups.get(&group) else {
            return true;
        };
        if !ctx
            .epochs
            .get(&sealed.epoch_ref())
            .is_some_and(|d| d.contains_key(&sealed.sender))
        {
            return true;
        }
        let verified = match report::open_report(&self.identity, sealed) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(%group, error = %e, "a report did not verify");
                return true;
            }
        };
        // The offender must have been a member in the reported message's epoch.
        let offender = ctx
            .epochs
            .get(&sealed_report_epoch(&verified))
            .and_then(|d| d.get(&verified.offender).cloned());
        let reporter = ctx
            .epochs
            .get(&sealed.epoch_ref())
            .and_then(|d| d.get(&sealed.sender).cloned());
        let (Some((offender, offender_name)), Some((reporter, reporter_name))) =
            (offender, reporter)
        else {
            return true;
        };
        let text = String::from_utf8(verified.body.clone())
            .ok()
            .and_then(|b| serde_json::from_str::<MessageContent>(&b).ok())
            .and_then(|c| match c.body {
                ContentBody::Text { text, .. } => Some(text),
                _ => None,
            })
            .unwrap_or_default();
        let info = crate::ReportInfo {
            group,
            seq: verified.seq,
            message: verified.message,
            offender,
            offender_name,
            reporter,
            reporter_name,
            text,
            reason: verified.reason,
            reported_at: verified.reported_at,
        };
        // Stored before it is acknowledged: a report is never lost to a crash.
        if !self
            .queue_for_facilitators(
                group,
                &digest,
                &crate::FacilitatorItem::Report(info.clone()),
            )
            .await
        {
            return false;
        }
        self.emit(Event::Report(info));
        true
    }

    pub(crate) async fn receive_note(&mut self, sealed: &SealedPayload) -> bool {
        let group = sealed.group;
        if !self.is_moderator_here(group) {
            return true;
        }
        let digest = sealed_digest(sealed);
        if self.sealed_seen(&digest).await {
            tracing::debug!(%group, "a facilitator note delivered again was dropped");
            return true;
        }
        let Some(ctx) = self.groups.get(&group) else {
            return true;
        };
        let Some((from, name)) = ctx
            .epochs
            .get(&sealed.epoch_ref())
            .and_then(|d| d.get(&sealed.sender).cloned())
        else {
            return true;
        };
        let Ok(bytes) = seal::open(&self.identity, sealed) else {
            return true;
        };
        let Ok(note) = serde_json::from_slice::<FacilitatorNote>(&bytes) else {
            return true;
        };
        match note {
            FacilitatorNote::Urgent { text } => {
                let request = crate::UrgentRequest {
                    group,
                    user: from,
                    display_name: name,
                    text,
                    received_at: self.host.now(),
                };
                if !self
                    .queue_for_facilitators(
                        group,
                        &digest,
                        &crate::FacilitatorItem::Urgent(request.clone()),
                    )
                    .await
                {
                    return false;
                }
                self.emit(Event::UrgentRequest(request));
            }
            FacilitatorNote::Reason { op_seq, text } => {
                // Only a moderator's reason for their own op is kept.
                let is_moderator = ctx.state.role_of(&from).is_some_and(|r| r.is_moderator());
                let author_ok = self
                    .db
                    .get::<SignedOp>(T_OPS, &key2(group.as_bytes(), &op_seq.to_be_bytes()))
                    .await
                    .ok()
                    .flatten()
                    .and_then(|op| op.parse_unverified().ok())
                    .is_some_and(|op| op.author == sealed.sender);
                let key = key2(group.as_bytes(), &op_seq.to_be_bytes());
                // The first reason for an op stays: its author sends one, so a second is an
                // older one held back or one delivered again once forgotten, and must not
                // replace what the facilitators have read.
                let kept = match self.db.get::<ReasonRecord>(T_NOTES, &key).await {
                    Ok(kept) => kept.is_some(),
                    Err(_) => return false,
                };
                if is_moderator && author_ok && !kept {
                    let record = ReasonRecord { from, text };
                    if self.db.put(T_NOTES, &key, &record).is_err() {
                        return false;
                    }
                    // An older reason delivered again must not replace a later one.
                    if !self.remember_sealed(&digest).await {
                        return false;
                    }
                }
            }
        }
        true
    }

    /// Keeps a report or urgent request in the encrypted store until a facilitator resolves
    /// it, under its group and the digest of the sealed payload that carried it (two items
    /// never share a key, however close together they arrive), and remembers the payload as
    /// processed.
    pub(crate) async fn queue_for_facilitators(
        &mut self,
        group: GroupId,
        digest: &[u8; 32],
        item: &crate::FacilitatorItem,
    ) -> bool {
        let entry = QueueEntry {
            queued_at: self.host.now(),
            item: item.clone(),
        };
        // Stored with the step, before the item is acknowledged or shown.
        self.db
            .put(T_FACILITATOR_QUEUE, &key2(group.as_bytes(), digest), &entry)
            .is_ok()
            && self.remember_sealed(digest).await
    }

    /// Whether a report or facilitator note with this [`sealed_digest`] was processed already.
    pub(crate) async fn sealed_seen(&self, digest: &[u8; 32]) -> bool {
        // A store that cannot be read says "not seen": the item is processed (and stored
        // under the same key again) rather than lost.
        matches!(self.db.get_bytes(T_SEALED_SEEN, digest).await, Ok(Some(_)))
    }

    /// Remembers a processed report or facilitator note, forgetting the oldest beyond
    /// [`MAX_SEALED_REMEMBERED`]. Written with the step.
    pub(crate) async fn remember_sealed(&mut self, digest: &[u8; 32]) -> bool {
        let now = self.host.now();
        if self.db.put(T_SEALED_SEEN, digest, &now).is_err()
            || self
                .db
                .put(
                    T_SEALED_SEEN_ORDER,
                    &key2(&now.0.to_be_bytes(), digest),
                    &(),
                )
                .is_err()
        {
            return false;
        }
        if let Ok((n, Some(oldest))) = self.db.count(T_SEALED_SEEN_ORDER, &[]).await
            && n > MAX_SEALED_REMEMBERED
        {
            self.db.remove(T_SEALED_SEEN_ORDER, &oldest);
            if let Some(old_digest) = oldest.get(8..) {
                self.db.remove(T_SEALED_SEEN, old_digest);
            }
        }
        true
    }

    /// Reports and urgent requests waiting for a facilitator, oldest first, each with an id
    /// for [`Self::resolve`]. Kept in the store until resolved.
    ///
    /// # Errors
    ///
    /// [`ClientError::Store`] if the store cannot be read.
    pub async fn facilitator_queue(
        &self,
        group: GroupId,
    ) -> Result<Vec<(String, crate::FacilitatorItem)>, ClientError> {
        let stored: Vec<(Vec<u8>, StoredQueueEntry)> = self
            .db
            .scan(T_FACILITATOR_QUEUE, group.as_bytes(), usize::MAX)
            .await?;
        let mut items: Vec<(Timestamp, Vec<u8>, crate::FacilitatorItem)> = stored
            .into_iter()
            .map(|(key, entry)| match entry {
                StoredQueueEntry::Current(entry) => (entry.queued_at, key, entry.item),
                StoredQueueEntry::Earlier(mut item) => {
                    // Earlier versions kept the time only in the key.
                    let at = earlier_queue_time(&key);
                    match &mut item {
                        crate::FacilitatorItem::Report(r) => r.reported_at = at,
                        crate::FacilitatorItem::Urgent(r) => r.received_at = at,
                    }
                    (at, key, item)
                }
            })
            .collect();
        items.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        Ok(items
            .into_iter()
            .map(|(_, key, item)| (hex::encode(key), item))
            .collect())
    }

    pub(crate) fn resolve_item(&mut self, id: &str) -> Result<(), ClientError> {
        let key = hex::decode(id).map_err(|_| ClientError::NotFound(Missing::QueueItem))?;
        self.db.remove(T_FACILITATOR_QUEUE, &key);
        Ok(())
    }
}
