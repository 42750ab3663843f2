//! Pinned texts (the group agreement, crisis resources and the group-work documents: meeting
//! schedule, warning topics, resource library): committed to in the log by a
//! facilitator, carried to members inside the encryption, kept only when they match the
//! commitment, posted again to each new epoch, and the agreement's acceptance.

use confide_protocol::encoding::b64_array;
use confide_protocol::envelope::{ContentBody, MessageContent, PinnedKind, pinned_commitment};
use confide_protocol::group_log::{GroupState, OpBody};
use confide_protocol::group_work::{MeetingSchedule, NextMeeting, ResourceLibrary, WarningTopics};
use confide_protocol::{DeviceId, GroupId};
use serde::{Deserialize, Serialize};

use crate::Network;
use crate::error::{ClientError, Missing};
use crate::events::Event;
use crate::machine::ClientCore;
use crate::store::{ClientStore, T_PINNED, key2};
use crate::types::{AgreementInfo, PinnedInfo};

/// A pinned text as this device holds it.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct PinnedRecord {
    pub(crate) version: u32,
    pub(crate) text: String,
    #[serde(with = "b64_array")]
    pub(crate) key: [u8; 32],
}

pub(crate) fn pinned_key(group: &GroupId, kind: PinnedKind) -> Vec<u8> {
    key2(group.as_bytes(), &[kind.code()])
}

/// Whether `state`'s log currently commits to the text of `kind` at `version` whose keyed
/// commitment is `commitment` (PROTOCOL.md §6.7).
pub(crate) fn log_commits_to(
    state: &GroupState,
    kind: PinnedKind,
    version: u32,
    commitment: &[u8; 32],
) -> bool {
    match kind {
        PinnedKind::Agreement => state
            .agreement()
            .is_some_and(|a| a.version == version && a.text_hash == *commitment),
        PinnedKind::CrisisResources => state.crisis_resources() == Some(commitment),
        PinnedKind::Meetings | PinnedKind::WarningTopics | PinnedKind::Resources => state
            .document(kind)
            .is_some_and(|d| d.version == version && d.text_hash.as_ref() == Some(commitment)),
    }
}

impl<S: ClientStore, N: Network> ClientCore<S, N> {
    /// Pins a text (facilitators): commits to it in the log, then sends it to the members.
    /// A new agreement must be accepted by members before they can post again.
    ///
    /// # Errors
    ///
    /// As [`Self::append`] for the commitment (an op), then as [`Self::send_text`] for the text,
    /// which goes to the members as a message: [`ClientError::Held`] or [`ClientError::Pending`]
    /// mean it is committed to and will be sent later.
    pub async fn pin(
        &mut self,
        group: GroupId,
        kind: PinnedKind,
        text: String,
    ) -> Result<(), ClientError> {
        let r = self.pin_text(group, kind, text).await;
        self.end_step(r).await
    }

    /// Accepts agreement `version` whose text `shown` the person was shown (what
    /// [`Self::pinned`] returned). Refused, accepting nothing, while the text has not arrived
    /// on this device ([`ClientError::AgreementNotReceived`]), when the agreement is no longer
    /// that version ([`ClientError::AgreementChanged`]), or when `shown` is not its text
    /// ([`ClientError::Invalid`]).
    ///
    /// # Errors
    ///
    /// Those named above, [`ClientError::NotFound`]
    /// ([`Missing::Agreement`](crate::Missing::Agreement)) if the group has no agreement, and as
    /// [`Self::append`] (the acceptance is an op).
    pub async fn accept_agreement(
        &mut self,
        group: GroupId,
        version: u32,
        shown: &str,
    ) -> Result<(), ClientError> {
        let r = self.agree(group, version, shown).await;
        self.end_step(r).await
    }

    /// Pins a text: commits to it in the log, then sends it to the members.
    pub(crate) async fn pin_text(
        &mut self,
        group: GroupId,
        kind: PinnedKind,
        text: String,
    ) -> Result<(), ClientError> {
        kind.validate_text(&text)
            .map_err(|e| ClientError::Invalid(e.to_string()))?;
        let mut key = [0u8; 32];
        self.host.fill_random(&mut key);
        let version = {
            let ctx = self.member_ctx(group).await?;
            match kind {
                PinnedKind::Agreement => ctx.state.agreement().map_or(1, |a| a.version + 1),
                PinnedKind::CrisisResources => 0,
                PinnedKind::Meetings | PinnedKind::WarningTopics | PinnedKind::Resources => {
                    ctx.state.document(kind).map_or(1, |d| d.version + 1)
                }
            }
        };
        let text_hash = pinned_commitment(&key, kind, version, &text);
        let body = match kind {
            PinnedKind::Agreement => OpBody::SetAgreement { version, text_hash },
            PinnedKind::CrisisResources => OpBody::SetCrisisResources {
                text_hash: Some(text_hash),
            },
            PinnedKind::Meetings | PinnedKind::WarningTopics | PinnedKind::Resources => {
                OpBody::SetPinned {
                    kind,
                    version,
                    text_hash: Some(text_hash),
                }
            }
        };
        self.append_op(group, body).await?;
        let record = PinnedRecord { version, text, key };
        self.db.put(T_PINNED, &pinned_key(&group, kind), &record)?;
        self.commit().await?;
        self.post_pinned(group, kind).await
    }

    pub(crate) async fn post_pinned(
        &mut self,
        group: GroupId,
        kind: PinnedKind,
    ) -> Result<(), ClientError> {
        let Some(record) = self
            .db
            .get::<PinnedRecord>(T_PINNED, &pinned_key(&group, kind))
            .await?
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
            sent_at: self.host.now(),
            seen_seq: self.seen_seq(group),
            body,
        };
        self.post_content(group, content).await.map(|_| ())
    }

    pub(crate) async fn process_needs_repost(&mut self) {
        while let Some(group) = self.needs_repost.pop_first() {
            if self.conn.is_none() {
                self.needs_repost.insert(group);
                return;
            }
            // Put back into the group without asking: nothing is posted there before the user
            // accepts it (§11.7); accepting queues the re-send again.
            if !self.is_accepted(group) {
                continue;
            }
            for kind in PinnedKind::ALL {
                if self.pinned_is_current(group, kind).await
                    && let Err(e) = self.post_pinned(group, kind).await
                {
                    tracing::warn!(%group, error = %e, "could not re-send a pinned text");
                }
            }
        }
    }

    /// Whether the stored pinned text is the one the log currently commits to.
    pub(crate) async fn pinned_is_current(&self, group: GroupId, kind: PinnedKind) -> bool {
        let Some(ctx) = self.groups.get(&group) else {
            return false;
        };
        let Ok(Some(record)) = self
            .db
            .get::<PinnedRecord>(T_PINNED, &pinned_key(&group, kind))
            .await
        else {
            return false;
        };
        let commitment = pinned_commitment(&record.key, kind, record.version, &record.text);
        log_commits_to(&ctx.state, kind, record.version, &commitment)
    }

    /// A pinned text arrived: keep it if the log commits to exactly this text.
    pub(crate) fn receive_pinned(
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
        // A document that does not parse or breaks a limit is not kept: the last good one
        // stays (PROTOCOL.md §6.9).
        if !log_commits_to(&ctx.state, kind, version, &commitment)
            || kind.validate_text(&text).is_err()
        {
            return;
        }
        let record = PinnedRecord {
            version,
            text,
            key: *key,
        };
        if self
            .db
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

    /// The group's pinned texts, each only once its text has arrived and matches what the
    /// log commits to.
    ///
    /// # Errors
    ///
    /// [`ClientError::UnknownGroup`] for a group this device does not know, and
    /// [`ClientError::Store`] if the store cannot be read.
    pub async fn pinned(&self, group: GroupId) -> Result<PinnedInfo, ClientError> {
        let ctx = self.groups.get(&group).ok_or(ClientError::UnknownGroup)?;
        let agreement = if self.pinned_is_current(group, PinnedKind::Agreement).await {
            self.db
                .get::<PinnedRecord>(T_PINNED, &pinned_key(&group, PinnedKind::Agreement))
                .await?
                .map(|r| AgreementInfo {
                    version: r.version,
                    text: r.text,
                    accepted: ctx.state.has_accepted_agreement(&self.profile.user),
                })
        } else {
            None
        };
        let crisis_resources = if self
            .pinned_is_current(group, PinnedKind::CrisisResources)
            .await
        {
            self.db
                .get::<PinnedRecord>(T_PINNED, &pinned_key(&group, PinnedKind::CrisisResources))
                .await?
                .map(|r| r.text)
        } else {
            None
        };
        Ok(PinnedInfo {
            agreement,
            agreement_version: ctx.state.agreement().map(|a| a.version),
            crisis_resources,
            meetings: self.document(group, PinnedKind::Meetings).await?,
            warning_topics: self.document(group, PinnedKind::WarningTopics).await?,
            resources: self.document(group, PinnedKind::Resources).await?,
        })
    }

    /// The group-work document of `kind`, parsed, once its text arrived and matches the log.
    /// A text that does not parse as `T` (it was validated when kept) counts as not there.
    async fn document<T: serde::de::DeserializeOwned>(
        &self,
        group: GroupId,
        kind: PinnedKind,
    ) -> Result<Option<T>, ClientError> {
        if !self.pinned_is_current(group, kind).await {
            return Ok(None);
        }
        Ok(self
            .db
            .get::<PinnedRecord>(T_PINNED, &pinned_key(&group, kind))
            .await?
            .and_then(|r| serde_json::from_str(&r.text).ok()))
    }

    /// Publishes the group's meeting schedule (moderators): the members' devices show it and
    /// work out the next meeting ([`Self::next_meeting`]).
    ///
    /// # Errors
    ///
    /// [`ClientError::Invalid`] for a schedule that breaks a limit
    /// ([`MeetingSchedule::validate`]); [`ClientError::NotAllowed`] for a member who is not a
    /// moderator; otherwise as [`Self::pin`].
    pub async fn set_meetings(
        &mut self,
        group: GroupId,
        schedule: &MeetingSchedule,
    ) -> Result<(), ClientError> {
        self.set_document(group, PinnedKind::Meetings, schedule)
            .await
    }

    /// Publishes the group's content-warning topics (moderators). Keep a topic's id when its
    /// label changes: messages and members' hidden topics name it by id.
    ///
    /// # Errors
    ///
    /// As [`Self::set_meetings`] ([`WarningTopics::validate`]).
    pub async fn set_warning_topics(
        &mut self,
        group: GroupId,
        topics: &WarningTopics,
    ) -> Result<(), ClientError> {
        self.set_document(group, PinnedKind::WarningTopics, topics)
            .await
    }

    /// Publishes the group's resource library (moderators).
    ///
    /// # Errors
    ///
    /// As [`Self::set_meetings`] ([`ResourceLibrary::validate`]).
    pub async fn set_resources(
        &mut self,
        group: GroupId,
        library: &ResourceLibrary,
    ) -> Result<(), ClientError> {
        self.set_document(group, PinnedKind::Resources, library)
            .await
    }

    async fn set_document<T: serde::Serialize>(
        &mut self,
        group: GroupId,
        kind: PinnedKind,
        document: &T,
    ) -> Result<(), ClientError> {
        let r = match serde_json::to_string(document) {
            Ok(text) => self.pin_text(group, kind, text).await,
            Err(e) => Err(ClientError::Invalid(e.to_string())),
        };
        self.end_step(r).await
    }

    /// The meeting in progress or the next one, by the group's schedule and this device's
    /// clock; `None` without a schedule (or none ahead).
    ///
    /// # Errors
    ///
    /// As [`Self::pinned`].
    pub async fn next_meeting(&self, group: GroupId) -> Result<Option<NextMeeting>, ClientError> {
        if !self.groups.contains_key(&group) {
            return Err(ClientError::UnknownGroup);
        }
        let schedule: Option<MeetingSchedule> = self.document(group, PinnedKind::Meetings).await?;
        Ok(schedule.and_then(|s| s.next_meeting(self.host.now())))
    }

    /// Accepts agreement `version`, naming its exact text, only if that text is on this device,
    /// is the `shown` one, and is still the current agreement.
    pub(crate) async fn agree(
        &mut self,
        group: GroupId,
        version: u32,
        shown: &str,
    ) -> Result<(), ClientError> {
        let ctx = self.member_ctx(group).await?;
        let current = *ctx
            .state
            .agreement()
            .ok_or(ClientError::NotFound(Missing::Agreement))?;
        if current.version != version {
            return Err(ClientError::AgreementChanged {
                shown: version,
                current: current.version,
            });
        }
        if !self.pinned_is_current(group, PinnedKind::Agreement).await {
            return Err(ClientError::AgreementNotReceived { version });
        }
        let record = self
            .db
            .get::<PinnedRecord>(T_PINNED, &pinned_key(&group, PinnedKind::Agreement))
            .await?;
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
        self.append_op(group, body).await.map(|_| ())
    }
}

impl<S: ClientStore, N: Network> ClientCore<S, N> {
    /// The pinned texts this device holds for `group` that match its log: for a link bundle.
    pub(crate) async fn pinned_texts(
        &self,
        group: GroupId,
    ) -> Vec<(PinnedKind, u32, [u8; 32], String)> {
        let mut out = Vec::new();
        for kind in PinnedKind::ALL {
            if !self.pinned_is_current(group, kind).await {
                continue;
            }
            if let Ok(Some(r)) = self
                .db
                .get::<PinnedRecord>(T_PINNED, &pinned_key(&group, kind))
                .await
            {
                out.push((kind, r.version, r.key, r.text));
            }
        }
        out
    }

    /// Keeps a pinned text a link bundle brought; it is shown only if it matches the log's
    /// commitment ([`Self::pinned_is_current`] checks that on every read).
    pub(crate) fn import_pinned(
        &mut self,
        group: GroupId,
        kind: PinnedKind,
        version: u32,
        key: [u8; 32],
        text: String,
    ) -> Result<(), ClientError> {
        let record = PinnedRecord { version, text, key };
        self.db.put(T_PINNED, &pinned_key(&group, kind), &record)?;
        Ok(())
    }
}
