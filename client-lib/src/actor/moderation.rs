//! Facilitator tools inside the encryption: verifiable reports, urgent requests and
//! moderation reasons sealed to the facilitators, pinned texts (the group agreement and crisis
//! resources) committed to in the log, delete for everyone, retention, the moderation log and
//! private conversations.

use confide_protocol::encoding::{b64, b64_array};
use confide_protocol::envelope::{PinnedKind, pinned_commitment};
use confide_protocol::report::{self, ReportPayload};

use super::*;
use crate::{AgreementInfo, ModerationEntry, PinnedInfo, Status};

/// The join-request and facilitator-note test vectors (`protocol/test-vectors/`), checked
/// against the payload types of this module and of `actor`.
#[cfg(test)]
mod vectors;

/// What a received message needs to be reported verifiably later. Encrypted at rest.
#[derive(Clone, Serialize, Deserialize)]
pub(super) struct Evidence {
    pub envelope: Envelope,
    #[serde(with = "b64")]
    pub body: Vec<u8>,
    #[serde(with = "b64_array")]
    pub franking_key: [u8; 32],
}

/// A pinned text as this device holds it.
#[derive(Clone, Serialize, Deserialize)]
struct PinnedRecord {
    version: u32,
    text: String,
    #[serde(with = "b64_array")]
    key: [u8; 32],
}

/// A note sealed to the facilitators ([`SealKind::FacilitatorNote`]).
#[derive(Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum FacilitatorNote {
    /// "I need a facilitator": a member in distress.
    Urgent { text: String },
    /// The reason for a moderation op, readable only by facilitators.
    Reason { op_seq: u64, text: String },
}

/// A reason as a facilitator device keeps it.
#[derive(Clone, Serialize, Deserialize)]
struct ReasonRecord {
    from: UserId,
    text: String,
}

/// Longest note or reason, in bytes.
const MAX_NOTE_LEN: usize = 4000;

fn pinned_key(group: &GroupId, kind: PinnedKind) -> Vec<u8> {
    let code = match kind {
        PinnedKind::Agreement => 1u8,
        PinnedKind::CrisisResources => 2u8,
    };
    key2(group.as_bytes(), &[code])
}

/// Requests for the facilitator tools.
pub(crate) enum ModerationCommand {
    Report {
        group: GroupId,
        seq: Seq,
        reason: String,
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
    Urgent {
        group: GroupId,
        text: String,
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
    Reason {
        group: GroupId,
        op_seq: u64,
        text: String,
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
    Pin {
        group: GroupId,
        kind: PinnedKind,
        text: String,
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
    AcceptAgreement {
        group: GroupId,
        version: u32,
        /// The text the person was shown: it must be the agreement's.
        text: String,
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
    Invites {
        group: GroupId,
        reply: oneshot::Sender<Result<Vec<crate::InviteInfo>, ClientError>>,
    },
    InviteOf {
        group: GroupId,
        user: UserId,
        reply: oneshot::Sender<Result<Option<confide_protocol::InviteId>, ClientError>>,
    },
    Departure {
        group: GroupId,
        reply: oneshot::Sender<Result<Option<crate::Departure>, ClientError>>,
    },
    Pinned {
        group: GroupId,
        reply: oneshot::Sender<Result<PinnedInfo, ClientError>>,
    },
    Status {
        group: GroupId,
        reply: oneshot::Sender<Result<Status, ClientError>>,
    },
    Log {
        group: GroupId,
        reply: oneshot::Sender<Result<Vec<ModerationEntry>, ClientError>>,
    },
    DeleteRecentOf {
        group: GroupId,
        user: UserId,
        count: usize,
        reply: oneshot::Sender<Result<usize, ClientError>>,
    },
    Decline {
        group: GroupId,
        user: UserId,
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
    OpenPrivate {
        group: GroupId,
        with: UserId,
        reply: oneshot::Sender<Result<GroupId, ClientError>>,
    },
    Queue {
        group: GroupId,
        reply: oneshot::Sender<Result<Vec<(String, crate::FacilitatorItem)>, ClientError>>,
    },
    Resolve {
        id: String,
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
    AcceptGroup {
        group: GroupId,
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
    JoinRequests {
        group: GroupId,
        reply: oneshot::Sender<Result<Vec<JoinRequest>, ClientError>>,
    },
    Notices {
        group: GroupId,
        reply: oneshot::Sender<Result<Vec<crate::GroupNotice>, ClientError>>,
    },
}

impl Actor {
    pub(super) async fn handle_moderation(&mut self, cmd: ModerationCommand) {
        use ModerationCommand as M;
        match cmd {
            M::Report {
                group,
                seq,
                reason,
                reply,
            } => {
                let _ = reply.send(self.report(group, seq, reason).await);
            }
            M::Urgent { group, text, reply } => {
                let _ = reply.send(
                    self.send_note(group, FacilitatorNote::Urgent { text })
                        .await,
                );
            }
            M::Reason {
                group,
                op_seq,
                text,
                reply,
            } => {
                let _ = reply.send(
                    self.send_note(group, FacilitatorNote::Reason { op_seq, text })
                        .await,
                );
            }
            M::Pin {
                group,
                kind,
                text,
                reply,
            } => {
                let _ = reply.send(self.pin(group, kind, text).await);
            }
            M::AcceptAgreement {
                group,
                version,
                text,
                reply,
            } => {
                let _ = reply.send(self.accept_agreement(group, version, &text).await);
            }
            M::Invites { group, reply } => {
                let _ = reply.send(self.invite_records(group).map(|(invites, _)| invites));
            }
            M::InviteOf { group, user, reply } => {
                let r = self
                    .invite_records(group)
                    .map(|(_, admitted)| admitted.get(&user).copied().flatten());
                let _ = reply.send(r);
            }
            M::Departure { group, reply } => {
                let _ = reply.send(self.departure(group));
            }
            M::Pinned { group, reply } => {
                let _ = reply.send(self.pinned(group));
            }
            M::Status { group, reply } => {
                let _ = reply.send(self.status(group));
            }
            M::Log { group, reply } => {
                let _ = reply.send(self.moderation_log(group));
            }
            M::DeleteRecentOf {
                group,
                user,
                count,
                reply,
            } => {
                let _ = reply.send(self.delete_recent_of(group, user, count).await);
            }
            M::Decline { group, user, reply } => {
                let r = self
                    .store
                    .remove(T_JOIN_REQUESTS, &key2(group.as_bytes(), user.as_bytes()))
                    .map_err(ClientError::from);
                let _ = reply.send(r);
            }
            M::OpenPrivate { group, with, reply } => {
                let _ = reply.send(self.open_private(group, with).await);
            }
            M::Queue { group, reply } => {
                let _ = reply.send(self.facilitator_queue(group));
            }
            M::Resolve { id, reply } => {
                let _ = reply.send(self.resolve(&id));
            }
            M::AcceptGroup { group, reply } => {
                let _ = reply.send(self.accept_group(group));
            }
            M::Notices { group, reply } => {
                let _ = reply.send(self.notices(group));
            }
            M::JoinRequests { group, reply } => {
                let r = self
                    .store
                    .scan::<JoinRequestPayload>(T_JOIN_REQUESTS, group.as_bytes(), usize::MAX)
                    .map_err(ClientError::from)
                    .map(|items| {
                        items
                            .into_iter()
                            .filter_map(|(_, r)| {
                                let device = r.member.devices.first()?.device;
                                Some(JoinRequest {
                                    group,
                                    user: r.member.user,
                                    device,
                                    looks_like: self.groups.get(&group).map_or_else(
                                        Vec::new,
                                        |c| {
                                            super::look_alikes(
                                                &c.state,
                                                &r.member.user,
                                                &r.member.display_name,
                                            )
                                        },
                                    ),
                                    display_name: r.member.display_name,
                                    note: r.note,
                                })
                            })
                            .collect()
                    });
                let _ = reply.send(r);
            }
        }
    }

    /// Accepts agreement `version`, naming its exact text, only if that text is on this device,
    /// is the `shown` one, and is still the current agreement.
    async fn accept_agreement(
        &mut self,
        group: GroupId,
        version: u32,
        shown: &str,
    ) -> Result<(), ClientError> {
        let ctx = self.member_ctx(group)?;
        let current = *ctx
            .state
            .agreement()
            .ok_or_else(|| ClientError::Protocol("the group has no agreement".into()))?;
        if current.version != version {
            return Err(ClientError::AgreementChanged {
                shown: version,
                current: current.version,
            });
        }
        if !self.pinned_is_current(group, PinnedKind::Agreement) {
            return Err(ClientError::AgreementNotReceived { version });
        }
        let record = self
            .store
            .get::<PinnedRecord>(T_PINNED, &pinned_key(&group, PinnedKind::Agreement))?;
        if record.is_none_or(|r| r.text != shown) {
            return Err(ClientError::Invalid(
                "the text given is not the group agreement's text: show the text pinned() returns, then accept that"
                    .into(),
            ));
        }
        let body = OpBody::AcceptAgreement {
            version,
            text_hash: Some(current.text_hash),
        };
        self.append(group, body).await.map(|_| ())
    }
}

/// Names of every user the verified log has shown this device, and each device's user.
pub(super) fn known_people(ctx: &GroupCtx) -> (HashMap<UserId, String>, HashMap<DeviceId, UserId>) {
    let mut names = HashMap::new();
    let mut devices = HashMap::new();
    for d in ctx.epochs.values() {
        for (device, (user, name)) in d {
            devices.insert(*device, *user);
            names.insert(*user, name.clone());
        }
    }
    (names, devices)
}

impl Actor {
    /// The group's invites from its stored, verified log, and for each user admitted the invite
    /// of their latest admission (`None`: added without one).
    #[allow(clippy::type_complexity)]
    fn invite_records(
        &self,
        group: GroupId,
    ) -> Result<
        (
            Vec<crate::InviteInfo>,
            HashMap<UserId, Option<confide_protocol::InviteId>>,
        ),
        ClientError,
    > {
        let ctx = self.groups.get(&group).ok_or(ClientError::UnknownGroup)?;
        let (names, devices) = known_people(ctx);
        let ops: Vec<(Vec<u8>, SignedOp)> = self.store.scan(T_OPS, group.as_bytes(), usize::MAX)?;
        let mut created = HashMap::new();
        let mut joined: HashMap<confide_protocol::InviteId, Vec<(UserId, String)>> = HashMap::new();
        let mut admitted = HashMap::new();
        for (_, signed) in ops {
            // Stored ops were verified when applied.
            let Ok(op) = signed.parse_unverified() else {
                continue;
            };
            let (member, invite) = match &op.body {
                OpBody::Invite { invite, .. } => {
                    created.insert(*invite, (devices.get(&op.author).copied(), op.at));
                    continue;
                }
                OpBody::Join { invite, member, .. } => (member, Some(*invite)),
                OpBody::Add { invite, member, .. } => (member, *invite),
                _ => continue,
            };
            admitted.insert(member.user, invite);
            if let Some(invite) = invite {
                joined
                    .entry(invite)
                    .or_default()
                    .push((member.user, member.display_name.clone()));
            }
        }
        let invites = ctx
            .state
            .invites()
            .iter()
            .map(|(id, state)| {
                let (by, at) = created.get(id).copied().unwrap_or((None, Timestamp(0)));
                let by = by.unwrap_or(UserId([0; 16]));
                crate::InviteInfo {
                    id: *id,
                    created_by: by,
                    created_by_name: names.get(&by).cloned(),
                    created_at: at,
                    requires_approval: state.requires_approval,
                    uses: state.uses,
                    max_uses: state.max_uses,
                    expires_at: state.expires_at,
                    revoked: state.revoked,
                    joined: joined.remove(id).unwrap_or_default(),
                }
            })
            .collect();
        Ok((invites, admitted))
    }

    /// How this device's membership ended, from the op the verified log names for it.
    pub(super) fn departure(
        &self,
        group: GroupId,
    ) -> Result<Option<crate::Departure>, ClientError> {
        let ctx = self.groups.get(&group).ok_or(ClientError::UnknownGroup)?;
        let Some(seq) = ctx.state.departure_of(&self.device()) else {
            return Ok(None);
        };
        let Some(signed) = self
            .store
            .get::<SignedOp>(T_OPS, &key2(group.as_bytes(), &seq.to_be_bytes()))?
        else {
            return Ok(None);
        };
        let op = signed.parse_unverified().map_err(protocol)?;
        let (names, devices) = known_people(ctx);
        let by = devices.get(&op.author).copied().unwrap_or(UserId([0; 16]));
        Ok(Some(crate::Departure {
            op_seq: seq,
            at: op.at,
            left: matches!(op.body, OpBody::Leave {}),
            banned: matches!(op.body, OpBody::Remove { ban: true, .. }),
            by,
            by_name: names.get(&by).cloned(),
        }))
    }

    /// Whether this device's user is a facilitator or co-facilitator of the group.
    fn is_moderator_here(&self, group: GroupId) -> bool {
        let me = self.device();
        self.groups.get(&group).is_some_and(|c| {
            c.state
                .member_of_device(&me)
                .is_some_and(|(_, m)| m.role.is_moderator())
        })
    }

    fn facilitator_keys(&self, group: GroupId) -> Result<(EpochRef, Vec<DeviceKeys>), ClientError> {
        let me = self.device();
        let ctx = self.groups.get(&group).ok_or(ClientError::UnknownGroup)?;
        let keys: Vec<DeviceKeys> = ctx
            .state
            .facilitator_devices()
            .into_iter()
            .filter(|k| k.device != me)
            .cloned()
            .collect();
        Ok((ctx.state.epoch_ref(), keys))
    }

    /// Reports a received message to the facilitators, with proof of who said it.
    async fn report(
        &mut self,
        group: GroupId,
        seq: Seq,
        reason: String,
    ) -> Result<(), ClientError> {
        self.member_ctx(group)?;
        self.ensure_connected().await?;
        let evidence: Evidence = self
            .store
            .get(T_EVIDENCE, &key2(group.as_bytes(), &seq.0.to_be_bytes()))?
            .ok_or_else(|| {
                ClientError::Protocol("no received message with that number to report".into())
            })?;
        let (epoch, facilitators) = self.facilitator_keys(group)?;
        if facilitators.is_empty() {
            return Err(ClientError::Protocol(
                "the group has no other facilitator to report to".into(),
            ));
        }
        let payload = ReportPayload {
            seq,
            envelope: evidence.envelope,
            body: evidence.body,
            franking_key: evidence.franking_key,
            reason,
            reported_at: now(),
        };
        let items = report::seal_report(
            &self.identity,
            &facilitators,
            epoch,
            &payload,
            &mut crate::os_rng(),
        )
        .map_err(protocol)?;
        self.send_sealed(items).await?;
        Ok(())
    }

    async fn send_note(
        &mut self,
        group: GroupId,
        note: FacilitatorNote,
    ) -> Result<(), ClientError> {
        self.member_ctx(group)?;
        self.ensure_connected().await?;
        let text_len = match &note {
            FacilitatorNote::Urgent { text } | FacilitatorNote::Reason { text, .. } => text.len(),
        };
        if text_len > MAX_NOTE_LEN {
            return Err(ClientError::Protocol(format!(
                "a note is at most {MAX_NOTE_LEN} bytes"
            )));
        }
        if let FacilitatorNote::Reason { op_seq, text } = &note {
            // Keep our own reasons too: the moderation log shows them.
            let record = ReasonRecord {
                from: self.profile.user,
                text: text.clone(),
            };
            self.store.put(
                T_NOTES,
                &key2(group.as_bytes(), &op_seq.to_be_bytes()),
                &record,
            )?;
        }
        let (epoch, facilitators) = self.facilitator_keys(group)?;
        if facilitators.is_empty() {
            return Ok(());
        }
        let bytes = zeroize::Zeroizing::new(serde_json::to_vec(&note).map_err(protocol)?);
        let mut items = Vec::new();
        for keys in &facilitators {
            items.push(
                seal::seal(
                    &self.identity,
                    keys,
                    SealKind::FacilitatorNote,
                    group,
                    epoch,
                    &bytes,
                    &mut crate::os_rng(),
                )
                .map_err(protocol)?,
            );
        }
        self.send_sealed(items).await?;
        Ok(())
    }

    pub(super) fn receive_report(&mut self, sealed: &SealedPayload) -> bool {
        let group = sealed.group;
        if !self.is_moderator_here(group) {
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
        };
        // Stored before it is acknowledged: a report is never lost to a crash.
        if !self.queue_for_facilitators(
            group,
            &sealed.sender,
            &crate::FacilitatorItem::Report(info.clone()),
        ) {
            return false;
        }
        self.emit(Event::Report(info));
        true
    }

    pub(super) fn receive_note(&mut self, sealed: &SealedPayload) -> bool {
        let group = sealed.group;
        if !self.is_moderator_here(group) {
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
                };
                if !self.queue_for_facilitators(
                    group,
                    &sealed.sender,
                    &crate::FacilitatorItem::Urgent(request.clone()),
                ) {
                    return false;
                }
                self.emit(Event::UrgentRequest(request));
            }
            FacilitatorNote::Reason { op_seq, text } => {
                // Only a moderator's reason for their own op is kept.
                let is_moderator = ctx.state.role_of(&from).is_some_and(|r| r.is_moderator());
                let author_ok = self
                    .store
                    .get::<SignedOp>(T_OPS, &key2(group.as_bytes(), &op_seq.to_be_bytes()))
                    .ok()
                    .flatten()
                    .and_then(|op| op.parse_unverified().ok())
                    .is_some_and(|op| op.author == sealed.sender);
                if is_moderator && author_ok {
                    let record = ReasonRecord { from, text };
                    if self
                        .store
                        .put(
                            T_NOTES,
                            &key2(group.as_bytes(), &op_seq.to_be_bytes()),
                            &record,
                        )
                        .is_err()
                    {
                        return false;
                    }
                }
            }
        }
        true
    }
    /// Keeps a report or urgent request in the encrypted store until a facilitator resolves it.
    fn queue_for_facilitators(
        &mut self,
        group: GroupId,
        from: &DeviceId,
        item: &crate::FacilitatorItem,
    ) -> bool {
        let key = key3(group.as_bytes(), &now().0.to_be_bytes(), from.as_bytes());
        self.store.put(T_FACILITATOR_QUEUE, &key, item).is_ok() && self.store.flush().is_ok()
    }

    fn facilitator_queue(
        &self,
        group: GroupId,
    ) -> Result<Vec<(String, crate::FacilitatorItem)>, ClientError> {
        let items: Vec<(Vec<u8>, crate::FacilitatorItem)> =
            self.store
                .scan(T_FACILITATOR_QUEUE, group.as_bytes(), usize::MAX)?;
        Ok(items
            .into_iter()
            .map(|(k, item)| (hex::encode(k), item))
            .collect())
    }

    fn resolve(&self, id: &str) -> Result<(), ClientError> {
        let key = hex::decode(id).map_err(|_| ClientError::Protocol("unknown item".into()))?;
        self.store.remove(T_FACILITATOR_QUEUE, &key)?;
        Ok(())
    }

    /// Pins a text: commits to it in the log, then sends it to the members.
    async fn pin(
        &mut self,
        group: GroupId,
        kind: PinnedKind,
        text: String,
    ) -> Result<(), ClientError> {
        let mut key = [0u8; 32];
        rand_core::Rng::fill_bytes(&mut crate::os_rng(), &mut key);
        let version = match kind {
            PinnedKind::Agreement => {
                let ctx = self.member_ctx(group)?;
                ctx.state.agreement().map_or(1, |a| a.version + 1)
            }
            PinnedKind::CrisisResources => 0,
        };
        let text_hash = pinned_commitment(&key, kind, version, &text);
        let body = match kind {
            PinnedKind::Agreement => OpBody::SetAgreement { version, text_hash },
            PinnedKind::CrisisResources => OpBody::SetCrisisResources {
                text_hash: Some(text_hash),
            },
        };
        self.append(group, body).await?;
        let record = PinnedRecord { version, text, key };
        self.store
            .put(T_PINNED, &pinned_key(&group, kind), &record)?;
        self.store.flush()?;
        self.post_pinned(group, kind).await
    }

    async fn post_pinned(&mut self, group: GroupId, kind: PinnedKind) -> Result<(), ClientError> {
        let Some(record) = self
            .store
            .get::<PinnedRecord>(T_PINNED, &pinned_key(&group, kind))?
        else {
            return Ok(());
        };
        let body = ContentBody::Pinned {
            kind,
            version: record.version,
            text: record.text,
            key: record.key,
        };
        let content = MessageContent {
            sent_at: super::now(),
            seen_seq: self.seen_seq(group),
            body,
        };
        self.post_content(group, content).await.map(|_| ())
    }

    pub(super) async fn process_needs_repost(&mut self) {
        while let Some(group) = self.needs_repost.pop_first() {
            if self.conn.is_none() {
                self.needs_repost.insert(group);
                return;
            }
            for kind in [PinnedKind::Agreement, PinnedKind::CrisisResources] {
                if self.pinned_is_current(group, kind)
                    && let Err(e) = self.post_pinned(group, kind).await
                {
                    tracing::warn!(%group, error = %e, "could not re-send a pinned text");
                }
            }
        }
    }

    /// Whether the stored pinned text is the one the log currently commits to.
    fn pinned_is_current(&self, group: GroupId, kind: PinnedKind) -> bool {
        let Some(ctx) = self.groups.get(&group) else {
            return false;
        };
        let Ok(Some(record)) = self
            .store
            .get::<PinnedRecord>(T_PINNED, &pinned_key(&group, kind))
        else {
            return false;
        };
        let commitment = pinned_commitment(&record.key, kind, record.version, &record.text);
        match kind {
            PinnedKind::Agreement => ctx
                .state
                .agreement()
                .is_some_and(|a| a.version == record.version && a.text_hash == commitment),
            PinnedKind::CrisisResources => ctx.state.crisis_resources() == Some(&commitment),
        }
    }

    /// A pinned text arrived: keep it if the log commits to exactly this text.
    pub(super) fn receive_pinned(
        &mut self,
        group: GroupId,
        sender: DeviceId,
        kind: PinnedKind,
        version: u32,
        text: String,
        key: &[u8; 32],
    ) {
        let Some(ctx) = self.groups.get(&group) else {
            return;
        };
        if !ctx
            .state
            .member_of_device(&sender)
            .is_some_and(|(_, m)| m.role.is_moderator())
        {
            return;
        }
        let commitment = pinned_commitment(key, kind, version, &text);
        let current = match kind {
            PinnedKind::Agreement => ctx
                .state
                .agreement()
                .is_some_and(|a| a.version == version && a.text_hash == commitment),
            PinnedKind::CrisisResources => ctx.state.crisis_resources() == Some(&commitment),
        };
        if !current {
            return;
        }
        let record = PinnedRecord {
            version,
            text,
            key: *key,
        };
        if self
            .store
            .put(T_PINNED, &pinned_key(&group, kind), &record)
            .is_ok()
        {
            self.emit(Event::Pinned {
                group,
                kind,
                version,
            });
        }
    }

    /// Side effects of an op on this device's data: deletions, retention, re-sending pinned
    /// texts to a new epoch.
    pub(super) fn after_op(&mut self, group: GroupId, body: &OpBody, epoch_changed: bool) {
        match body {
            OpBody::DeleteMessages { messages } => {
                let mut deleted = Vec::new();
                for id in messages {
                    // Remember the deletion, so the message is never shown if it arrives later.
                    let _ = self.store.put_bytes(
                        T_DELETED,
                        &key2(group.as_bytes(), id.as_bytes()),
                        &[1],
                    );
                    if let Ok(Some(seq)) = self
                        .store
                        .get::<Seq>(T_SEEN, &key2(group.as_bytes(), id.as_bytes()))
                    {
                        let key = key2(group.as_bytes(), &seq.0.to_be_bytes());
                        let _ = self.store.remove(T_MESSAGES, &key);
                        let _ = self.store.remove(T_EVIDENCE, &key);
                        deleted.push(*id);
                    }
                }
                if !deleted.is_empty() {
                    self.emit(Event::MessagesDeleted {
                        group,
                        messages: deleted,
                    });
                }
            }
            OpBody::SetRetention { .. } => self.enforce_retention(group),
            _ => {}
        }
        let me = self.device();
        if epoch_changed
            && self.groups.get(&group).is_some_and(|c| {
                c.state
                    .member_of_device(&me)
                    .is_some_and(|(_, m)| m.role.is_moderator())
            })
        {
            self.needs_repost.insert(group);
        }
    }

    /// Deletes local messages older than the group's retention period.
    pub(super) fn enforce_retention(&mut self, group: GroupId) {
        let Some(seconds) = self
            .groups
            .get(&group)
            .and_then(|c| c.state.retention_seconds())
        else {
            return;
        };
        let cutoff = now().0.saturating_sub(seconds.saturating_mul(1000));
        let Ok(messages) = self
            .store
            .scan::<ChatMessage>(T_MESSAGES, group.as_bytes(), usize::MAX)
        else {
            return;
        };
        let mut deleted = Vec::new();
        for (key, m) in messages {
            if m.received_at.0 < cutoff {
                let _ = self.store.remove(T_MESSAGES, &key);
                let _ = self.store.remove(T_EVIDENCE, &key);
                deleted.push(m.id);
            }
        }
        if !deleted.is_empty() {
            self.emit(Event::MessagesDeleted {
                group,
                messages: deleted,
            });
        }
    }

    fn pinned(&self, group: GroupId) -> Result<PinnedInfo, ClientError> {
        let ctx = self.groups.get(&group).ok_or(ClientError::UnknownGroup)?;
        let agreement = if self.pinned_is_current(group, PinnedKind::Agreement) {
            self.store
                .get::<PinnedRecord>(T_PINNED, &pinned_key(&group, PinnedKind::Agreement))?
                .map(|r| AgreementInfo {
                    version: r.version,
                    text: r.text,
                    accepted: ctx.state.has_accepted_agreement(&self.profile.user),
                })
        } else {
            None
        };
        let crisis_resources = if self.pinned_is_current(group, PinnedKind::CrisisResources) {
            self.store
                .get::<PinnedRecord>(T_PINNED, &pinned_key(&group, PinnedKind::CrisisResources))?
                .map(|r| r.text)
        } else {
            None
        };
        Ok(PinnedInfo {
            agreement,
            agreement_version: ctx.state.agreement().map(|a| a.version),
            crisis_resources,
        })
    }

    fn status(&self, group: GroupId) -> Result<Status, ClientError> {
        let ctx = self.groups.get(&group).ok_or(ClientError::UnknownGroup)?;
        let user = self.profile.user;
        let t = now();
        let open_now = match ctx.state.open_hours() {
            None => true,
            Some(hours) => hours.is_open_at(t).unwrap_or(false),
        };
        Ok(Status {
            role: ctx.state.role_of(&user),
            muted_until: ctx
                .state
                .mutes()
                .get(&user)
                .copied()
                .filter(|_| ctx.state.is_muted(&user, t)),
            locked: ctx.state.locked(),
            open_now,
            slow_mode_seconds: ctx.state.slow_mode_seconds(),
            // Only a member is asked to accept it: someone removed has nothing to accept.
            agreement_pending: ctx.state.agreement().map(|a| a.version).filter(|_| {
                ctx.is_member(&self.device()) && !ctx.state.has_accepted_agreement(&user)
            }),
        })
    }

    /// The group log as an audit trail: who did what and when; reasons only where this device
    /// received them (facilitators).
    fn moderation_log(&self, group: GroupId) -> Result<Vec<ModerationEntry>, ClientError> {
        let ctx = self.groups.get(&group).ok_or(ClientError::UnknownGroup)?;
        let ops: Vec<(Vec<u8>, SignedOp)> = self.store.scan(T_OPS, group.as_bytes(), usize::MAX)?;
        let mut names: HashMap<UserId, String> = HashMap::new();
        let mut devices: HashMap<DeviceId, UserId> = HashMap::new();
        for d in ctx.epochs.values() {
            for (device, (user, name)) in d {
                devices.insert(*device, *user);
                names.insert(*user, name.clone());
            }
        }
        let mut out = Vec::new();
        for (_, signed) in ops {
            let Ok(op) = signed.parse_unverified() else {
                continue;
            };
            let author = devices.get(&op.author).copied();
            let target = op_target(&op.body);
            let reason = self
                .store
                .get::<ReasonRecord>(T_NOTES, &key2(group.as_bytes(), &op.seq.to_be_bytes()))?
                .map(|r| r.text);
            let details = moderation_details(&op.body);
            out.push(ModerationEntry {
                op_seq: op.seq,
                at: op.at,
                action: op.body.action().to_string(),
                author,
                author_name: author.and_then(|a| names.get(&a).cloned()),
                target,
                target_name: target.and_then(|t| names.get(&t).cloned()),
                details,
                reason,
            });
        }
        Ok(out)
    }

    /// Deletes for everyone the last `count` messages of `user` this device holds.
    async fn delete_recent_of(
        &mut self,
        group: GroupId,
        user: UserId,
        count: usize,
    ) -> Result<usize, ClientError> {
        let messages: Vec<(Vec<u8>, ChatMessage)> =
            self.store.scan(T_MESSAGES, group.as_bytes(), usize::MAX)?;
        let ids: Vec<MessageId> = messages
            .iter()
            .rev()
            .filter(|(_, m)| m.sender == user)
            .take(count)
            .map(|(_, m)| m.id)
            .collect();
        if ids.is_empty() {
            return Ok(0);
        }
        let n = ids.len();
        for chunk in ids.chunks(confide_protocol::group_log::MAX_DELETE_BATCH) {
            self.append(
                group,
                OpBody::DeleteMessages {
                    messages: chunk.to_vec(),
                },
            )
            .await?;
        }
        Ok(n)
    }

    /// Opens a private conversation with a member of `group`: a new two-person group.
    async fn open_private(&mut self, group: GroupId, with: UserId) -> Result<GroupId, ClientError> {
        let me = self.device();
        let entry = {
            let ctx = self.member_ctx(group)?;
            let my_role = ctx
                .state
                .member_of_device(&me)
                .map(|(_, m)| m.role)
                .ok_or(ClientError::NotMember)?;
            if !my_role.is_moderator() && !ctx.state.settings().members_may_message_privately {
                return Err(ClientError::Protocol(
                    "this group's setting does not allow members to start private conversations"
                        .into(),
                ));
            }
            ctx.state
                .member(&with)
                .map(|m| m.entry.clone())
                .ok_or_else(|| ClientError::Protocol("not a member of the group".into()))?
        };
        let private = self.create_group().await?;
        self.append(
            private,
            OpBody::Add {
                member: entry,
                invite: None,
                invite_sig: None,
            },
        )
        .await?;
        self.store
            .put(T_PRIVATE, private.as_bytes(), &(group, with))?;
        Ok(private)
    }
}

impl Actor {
    /// The notices of `group` ([`crate::Client::notices`]): the group log replayed from the
    /// store, keeping the ops made while this device was in the group.
    fn notices(&self, group: GroupId) -> Result<Vec<crate::GroupNotice>, ClientError> {
        let ctx = self.groups.get(&group).ok_or(ClientError::UnknownGroup)?;
        // Nothing is shown of a group the user did not accept (§11.7); one they were removed
        // from shows what happened while they were in it.
        if !ctx.meta.accepted && ctx.meta.removed_after_epoch.is_none() {
            return Ok(Vec::new());
        }
        let ops: Vec<Op> = self
            .store
            .scan::<SignedOp>(T_OPS, group.as_bytes(), usize::MAX)?
            .into_iter()
            // Stored ops were verified when applied.
            .filter_map(|(_, signed)| signed.parse_unverified().ok())
            .collect();
        let changes = ops.iter().filter(|op| op.body.changes_epoch()).count() as u64;
        let mut epoch = ctx.state.epoch().0.saturating_sub(changes);
        let people = known_people(ctx);
        let (me, my_device) = (self.profile.user, self.device());
        // Put back after a removal (or after leaving) without the user accepting again: nothing
        // from that admission on is shown until they do (§11.7), as for any group not accepted.
        let admits_me = |op: &Op| matches!(&op.body, OpBody::Join { member, .. } | OpBody::Add { member, .. } if member.user == me);
        let ends_mine = |op: &Op| match &op.body {
            OpBody::Remove { user, .. } => *user == me,
            OpBody::Leave {} => op.author == my_device,
            _ => false,
        };
        let end = match ops.iter().rposition(admits_me) {
            Some(readmitted) if !ctx.meta.accepted && ops[..readmitted].iter().any(ends_mine) => {
                readmitted
            }
            _ => ops.len(),
        };
        let mut inside = false;
        let mut out = Vec::new();
        for op in &ops[..end] {
            if op.body.changes_epoch() {
                epoch = epoch.saturating_add(1);
            }
            if inside {
                out.extend(self.op_notices(group, ctx, &people, op, epoch));
            }
            inside = match &op.body {
                OpBody::Genesis { creator, .. } => creator.user == me,
                OpBody::Join { member, .. } | OpBody::Add { member, .. } if member.user == me => {
                    true
                }
                OpBody::Remove { user, .. } if *user == me => false,
                OpBody::Leave {} if op.author == my_device => false,
                _ => inside,
            };
        }
        Ok(out)
    }

    /// The notices one op makes, `epoch` being the epoch after it.
    pub(super) fn op_notices(
        &self,
        group: GroupId,
        ctx: &GroupCtx,
        (names, devices): &(HashMap<UserId, String>, HashMap<DeviceId, UserId>),
        op: &Op,
        epoch: u64,
    ) -> Vec<crate::GroupNotice> {
        let by = devices.get(&op.author).copied().unwrap_or(UserId([0; 16]));
        let name_of = |user: &UserId| names.get(user).cloned().unwrap_or_default();
        let notice = |index, kind, after_seq| crate::GroupNotice {
            group,
            op_seq: op.seq,
            index,
            at: op.at,
            by,
            by_name: name_of(&by),
            kind,
            after_seq,
        };
        // A removal goes after every message of the epochs before it: before the first
        // message of a later epoch, or after everything so far if none came yet (the server
        // takes nothing more in the ended epoch).
        let after_removal = || {
            Some(Seq(ctx
                .meta
                .epoch_first_seq
                .range(epoch..)
                .map(|(_, first)| first.saturating_sub(1))
                .min()
                .unwrap_or(ctx.meta.last_seen_seq)))
        };
        match &op.body {
            OpBody::Remove { user, ban } => vec![notice(
                0,
                crate::NoticeKind::Removed {
                    user: *user,
                    name: name_of(user),
                    banned: *ban,
                },
                after_removal(),
            )],
            OpBody::Leave {} => vec![notice(0, crate::NoticeKind::Left, after_removal())],
            OpBody::DeleteMessages { messages } => messages
                .iter()
                .enumerate()
                .map(|(index, id)| {
                    // Where the message was, if it ever reached this device.
                    let seq: Option<Seq> = self
                        .store
                        .get(T_SEEN, &key2(group.as_bytes(), id.as_bytes()))
                        .ok()
                        .flatten();
                    let number = seq.and_then(|seq| self.number_of_seq(group, seq));
                    notice(index, crate::NoticeKind::MessageDeleted { number }, seq)
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// The epoch of the reported message (its envelope names it; the envelope was verified).
fn sealed_report_epoch(verified: &report::VerifiedReport) -> EpochRef {
    verified.epoch
}

/// The non-content details of an op worth showing in an audit trail.
fn moderation_details(body: &OpBody) -> serde_json::Value {
    use serde_json::json;
    match body {
        OpBody::Mute { until, .. } => json!({ "until": until }),
        OpBody::Remove { ban, .. } => json!({ "ban": ban }),
        OpBody::SetRole { role, .. } => json!({ "role": role }),
        OpBody::SetSlowMode { seconds } => json!({ "seconds": seconds }),
        OpBody::SetRetention { seconds } => json!({ "seconds": seconds }),
        OpBody::SetAgreement { version, .. } | OpBody::AcceptAgreement { version, .. } => {
            json!({ "version": version })
        }
        OpBody::DeleteMessages { messages } => json!({ "messages": messages.len() }),
        OpBody::Invite {
            requires_approval,
            max_uses,
            expires_at,
            ..
        } => {
            json!({ "requires_approval": requires_approval, "max_uses": max_uses, "expires_at": expires_at })
        }
        OpBody::SetOpenHours { schedule } => json!({ "schedule": schedule }),
        OpBody::SetSettings { settings } => json!({ "settings": settings }),
        _ => json!({}),
    }
}
