//! Facilitator tools inside the encryption: verifiable reports of received messages, urgent
//! requests and moderation reasons sealed to the facilitators, and the queue in which a
//! facilitator device keeps what it received until someone resolves it.

use confide_protocol::encoding::{b64, b64_array};
use confide_protocol::envelope::{ContentBody, Envelope, HEADER_LEN, MessageContent};
use confide_protocol::group_log::SignedOp;
use confide_protocol::report::{self, ReportPayload};
use confide_protocol::seal::{self, SealKind, SealedPayload};
use confide_protocol::{DeviceKeys, EpochRef, GroupId, Seq, Timestamp, UserId};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::Network;
use crate::error::{ClientError, EncryptError, Missing};
use crate::events::Event;
use crate::machine::ClientCore;
use crate::store::{
    ClientStore, T_EVIDENCE, T_FACILITATOR_QUEUE, T_MESSAGES, T_NOTES, T_OPS, T_SEALED_SEEN,
    T_SEALED_SEEN_ORDER, T_SEEN, corrupt, key2,
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

/// First byte of [`Evidence`] in its binary store form ([`evidence_bytes`]). Stores written
/// before it hold evidence as JSON, which starts with `{`, and still read.
const EVIDENCE_BINARY: u8 = 1;
/// Bytes of the binary form before the ciphertext: the form byte, the envelope's header, its
/// franking tag and signature, the franking key, and the ciphertext's length (u32).
const EVIDENCE_FIXED: usize = 1 + HEADER_LEN + 32 + 64 + 32 + 4;

/// [`Evidence`] of a received message as it is stored: binary, `EVIDENCE_BINARY ||
/// header || franking_tag || signature || franking_key || ciphertext length (u32) ||
/// ciphertext || body`. About 60 % of the JSON's size, and written without copying the
/// envelope: every message received writes one (a backlog of thousands at once).
pub(crate) fn evidence_bytes(
    envelope: &Envelope,
    body: &[u8],
    franking_key: &[u8; 32],
) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(
        EVIDENCE_FIXED + envelope.ciphertext.len() + body.len(),
    ));
    out.push(EVIDENCE_BINARY);
    out.extend_from_slice(&envelope.header());
    out.extend_from_slice(&envelope.franking_tag);
    out.extend_from_slice(&envelope.signature.0);
    out.extend_from_slice(franking_key);
    // A ciphertext is at most a frame's size, far below 4 GiB; one that were not would not
    // have been received.
    let len = u32::try_from(envelope.ciphertext.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&envelope.ciphertext);
    out.extend_from_slice(body);
    out
}

impl Evidence {
    /// Reads evidence as stored: the binary form ([`evidence_bytes`]), or the JSON of stores
    /// written before it. `None` if it is neither.
    pub(crate) fn from_stored(bytes: &[u8]) -> Option<Evidence> {
        match bytes.first() {
            Some(&EVIDENCE_BINARY) => Self::from_binary(bytes),
            Some(b'{') => serde_json::from_slice(bytes).ok(),
            _ => None,
        }
    }

    /// Whether this evidence, as read back from the store, still proves what it did when it
    /// was stored: an envelope of `group` whose signature holds, and a body its franking tag
    /// commits to. The stored form has no check of its own, so damage (a length one short
    /// moves a ciphertext byte into the body, say) would otherwise be sent to the
    /// facilitators as a report that fails their verification, making an honest reporter
    /// look like a forger.
    pub(crate) fn holds_for(&self, group: GroupId) -> bool {
        self.envelope.group == group
            && self.envelope.verify().is_ok()
            && self.envelope.check_franking(&self.body, &self.franking_key)
    }

    fn from_binary(bytes: &[u8]) -> Option<Evidence> {
        let fixed = bytes.get(..EVIDENCE_FIXED)?;
        // `fixed` is exactly `EVIDENCE_FIXED` long, the sum of the parts split off here, so
        // none of these splits can be out of range.
        let (header, rest) = fixed[1..].split_at(HEADER_LEN);
        let (franking_tag, rest) = rest.split_at(32);
        let (signature, rest) = rest.split_at(64);
        let (franking_key, len) = rest.split_at(32);
        let len = usize::try_from(u32::from_be_bytes(len.try_into().ok()?)).ok()?;
        let (ciphertext, body) = bytes[EVIDENCE_FIXED..].split_at_checked(len)?;
        let envelope = Envelope {
            v: header[0],
            group: confide_protocol::GroupId(header[1..17].try_into().ok()?),
            epoch: confide_protocol::Epoch(u64::from_be_bytes(header[17..25].try_into().ok()?)),
            epoch_hash: confide_protocol::OpHash(header[25..57].try_into().ok()?),
            sender: confide_protocol::DeviceId(header[57..89].try_into().ok()?),
            iteration: u32::from_be_bytes(header[89..93].try_into().ok()?),
            franking_tag: franking_tag.try_into().ok()?,
            ciphertext: ciphertext.to_vec(),
            signature: confide_protocol::identity::Signature(signature.try_into().ok()?),
        };
        Some(Evidence {
            envelope,
            body: body.to_vec(),
            franking_key: franking_key.try_into().ok()?,
        })
    }
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
        let key = key2(group.as_bytes(), &seq.0.to_be_bytes());
        // In the message's record; a store written before kept it apart.
        let (tree, stored) = match self.db.attachment(T_MESSAGES, &key).await? {
            Some(stored) => (T_MESSAGES, stored),
            None => (
                T_EVIDENCE,
                self.db
                    .get_bytes(T_EVIDENCE, &key)
                    .await?
                    .ok_or(ClientError::NotFound(Missing::Message { seq: seq.0 }))?,
            ),
        };
        let evidence = Evidence::from_stored(&stored)
            .filter(|evidence| evidence.holds_for(group))
            .ok_or_else(|| corrupt(tree, &key))?;
        // And it is the evidence of the message received at `seq`, not of another.
        let seen: Option<Seq> = self
            .db
            .get(
                T_SEEN,
                &key2(group.as_bytes(), evidence.envelope.message_id().as_bytes()),
            )
            .await?;
        if seen != Some(seq) {
            return Err(corrupt(tree, &key).into());
        }
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
        let bytes = Zeroizing::new(serde_json::to_vec(&note).map_err(ClientError::Encode)?);
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chacha20::ChaCha20Rng;
    use confide_protocol::identity::DeviceIdentity;
    use confide_protocol::sender_key::{ReceiverChain, SenderChain};
    use confide_protocol::{Epoch, OpHash};
    use rand_core::SeedableRng as _;

    /// A message as a recipient keeps it: the envelope, its opened body and franking key.
    fn received() -> (Envelope, Vec<u8>, [u8; 32]) {
        let mut rng = ChaCha20Rng::from_seed([9; 32]);
        let sender = DeviceIdentity::generate(&mut rng);
        let mut chain = SenderChain::generate(&mut rng);
        let mut receiver = ReceiverChain::from_distribution(&chain.distribution()).unwrap();
        let epoch = EpochRef {
            epoch: Epoch(3),
            hash: OpHash([5; 32]),
        };
        let body = br#"{"sent_at":1,"body":{"type":"text","text":"what I said"}}"#;
        let envelope =
            Envelope::seal(&sender, GroupId([4; 16]), epoch, &mut chain, body, &mut rng).unwrap();
        let opened = envelope.open(&mut receiver).unwrap();
        (envelope, opened.body.to_vec(), *opened.franking_key)
    }

    #[test]
    fn stored_evidence_reads_back_whole_and_is_smaller_than_its_json() {
        let (envelope, body, franking_key) = received();
        let stored = evidence_bytes(&envelope, &body, &franking_key);
        let back = Evidence::from_stored(&stored).unwrap();
        assert_eq!(back.envelope, envelope);
        assert_eq!(back.body, body);
        assert_eq!(back.franking_key, franking_key);
        // Still a report the facilitators can verify: the envelope's signature holds.
        assert!(back.envelope.verified().is_ok());
        let json = serde_json::to_vec(&back).unwrap();
        assert!(
            stored.len() * 10 < json.len() * 7,
            "{} / {}",
            stored.len(),
            json.len()
        );
    }

    #[test]
    fn evidence_a_store_written_before_holds_as_json_still_reads() {
        let (envelope, body, franking_key) = received();
        let old = serde_json::to_vec(&Evidence {
            envelope: envelope.clone(),
            body: body.clone(),
            franking_key,
        })
        .unwrap();
        let back = Evidence::from_stored(&old).unwrap();
        assert_eq!(back.envelope, envelope);
        assert_eq!((back.body, back.franking_key), (body, franking_key));
    }

    #[test]
    fn damaged_stored_evidence_is_refused_not_misread() {
        let (envelope, body, franking_key) = received();
        let stored = evidence_bytes(&envelope, &body, &franking_key);
        assert!(Evidence::from_stored(&stored[..EVIDENCE_FIXED - 1]).is_none());
        // A ciphertext length beyond what is there.
        let mut long = stored.to_vec();
        long[EVIDENCE_FIXED - 4..EVIDENCE_FIXED].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(Evidence::from_stored(&long).is_none());
        assert!(Evidence::from_stored(&[]).is_none());
        assert!(Evidence::from_stored(&[7, 1, 2]).is_none());
    }

    #[test]
    fn evidence_read_back_whole_holds_for_its_group_only() {
        let (envelope, body, franking_key) = received();
        let back = Evidence::from_stored(&evidence_bytes(&envelope, &body, &franking_key)).unwrap();
        assert!(back.holds_for(envelope.group));
        assert!(!back.holds_for(GroupId([5; 16])));
    }

    #[test]
    fn evidence_whose_length_is_one_short_is_not_taken_for_a_report() {
        let (envelope, body, franking_key) = received();
        let mut short = evidence_bytes(&envelope, &body, &franking_key).to_vec();
        let len = u32::try_from(envelope.ciphertext.len()).unwrap() - 1;
        short[EVIDENCE_FIXED - 4..EVIDENCE_FIXED].copy_from_slice(&len.to_be_bytes());
        // It parses (the form has no check of its own) ...
        let misread = Evidence::from_stored(&short).unwrap();
        assert_ne!(misread.body, body);
        // ... but is not evidence of anything.
        assert!(!misread.holds_for(envelope.group));
    }
}
