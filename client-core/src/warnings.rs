//! Content warnings: those an author puts on their own text, those a moderator adds to
//! someone else's message (`add_warning`, remembered when it comes before its message), and
//! the topics a person hides on this device, a local setting that is never sent (PROTOCOL.md
//! §6.9).

use std::collections::BTreeSet;

use confide_protocol::envelope::{ContentBody, MessageContent};
use confide_protocol::group_log::LogError;
use confide_protocol::group_work::validate_warnings;
use confide_protocol::{DeviceId, GroupId, MessageId, Seq};

use crate::Network;
use crate::error::ClientError;
use crate::events::{ChatMessage, Event};
use crate::machine::ClientCore;
use crate::store::{ClientStore, T_HIDDEN_TOPICS, T_MESSAGES, T_PENDING_WARNINGS, T_SEEN, key2};

/// Most distinct warnings one message keeps (the author's and every moderator's together): as
/// many as a group can define (PROTOCOL.md §6.9), a bound on what a message's record can grow
/// to.
pub(crate) const MAX_WARNINGS_KEPT: usize = confide_protocol::group_work::MAX_WARNING_TOPICS;

/// Most `add_warning`s one group remembers for messages that have not arrived (yet): beyond
/// this a new one is dropped, so that warnings about messages that never come cannot fill the
/// disk.
pub(crate) const MAX_PENDING_WARNINGS: usize = 1_000;

/// `warnings` as a message keeps them, if they are valid (`validate_warnings`): sorted,
/// distinct. Invalid ones are dropped whole (PROTOCOL.md §6.9).
pub(crate) fn honoured_warnings(warnings: Vec<u16>) -> Vec<u16> {
    if warnings.is_empty() || validate_warnings(&warnings).is_err() {
        return Vec::new();
    }
    let mut warnings = warnings;
    warnings.sort_unstable();
    warnings
}

/// The warnings `a` already held with those of `b` added, sorted and distinct: every one of
/// `a` stays (an addition never pushes out a warning, which could unhide a message), and `b`'s
/// are added while fewer than [`MAX_WARNINGS_KEPT`] are held.
pub(crate) fn union(a: &[u16], b: &[u16]) -> Vec<u16> {
    let mut all: BTreeSet<u16> = a.iter().copied().collect();
    // `a` is at most the limit wherever it was kept; anything longer keeps its lowest ids.
    while all.len() > MAX_WARNINGS_KEPT {
        all.pop_last();
    }
    for w in b {
        if all.len() >= MAX_WARNINGS_KEPT {
            break;
        }
        all.insert(*w);
    }
    all.into_iter().collect()
}

impl<S: ClientStore, N: Network> ClientCore<S, N> {
    /// Sends a text with content warnings (ids of the group's warning topics, see
    /// [`crate::PinnedInfo::warning_topics`]); with none it is [`Self::send_text`]. A message
    /// written offline, or held, keeps its warnings until it goes.
    ///
    /// # Errors
    ///
    /// [`ClientError::Invalid`] for an empty text or warnings that are not 1 to
    /// [`confide_protocol::group_work::MAX_WARNINGS_PER_MESSAGE`] distinct ids; otherwise as
    /// [`Self::send_text`].
    pub async fn send_text_with_warnings(
        &mut self,
        group: GroupId,
        text: String,
        reply_to: Option<MessageId>,
        warnings: Vec<u16>,
    ) -> Result<ChatMessage, ClientError> {
        if text.trim().is_empty() {
            return Err(ClientError::Invalid(
                "an empty message is not sent: write something first".into(),
            ));
        }
        if !warnings.is_empty() {
            validate_warnings(&warnings).map_err(|e| ClientError::Invalid(e.to_string()))?;
        }
        let body = ContentBody::Text {
            text,
            reply_to,
            warnings: honoured_warnings(warnings),
            round: None,
        };
        let r = self.post_body(group, body).await;
        let r = self.end_send_step(r).await;
        self.with_hidden(r).await
    }

    /// Adds content warnings to a message of someone else's (moderators): every member's
    /// device adds them to the message's own (never removes any), and hides it where the
    /// person hides one of those topics. A warning about a message a device has not received
    /// yet is applied when it arrives. Applied on this device at once.
    ///
    /// # Errors
    ///
    /// [`ClientError::Invalid`] for warnings that are not 1 to
    /// [`confide_protocol::group_work::MAX_WARNINGS_PER_MESSAGE`] distinct ids;
    /// [`ClientError::NotAllowed`] when this device's user is not a moderator of the group;
    /// otherwise as [`Self::send_text`] ([`ClientError::Held`] and [`ClientError::Pending`]:
    /// it goes later).
    pub async fn add_warning(
        &mut self,
        group: GroupId,
        message: MessageId,
        warnings: Vec<u16>,
    ) -> Result<(), ClientError> {
        let r = self.add_warning_step(group, message, warnings).await;
        self.end_step(r).await
    }

    async fn add_warning_step(
        &mut self,
        group: GroupId,
        message: MessageId,
        warnings: Vec<u16>,
    ) -> Result<(), ClientError> {
        validate_warnings(&warnings).map_err(|e| ClientError::Invalid(e.to_string()))?;
        let ctx = self.member_ctx(group).await?;
        let role = ctx
            .state
            .member(&self.profile.user)
            .map(|m| m.role)
            .ok_or(ClientError::NotMember)?;
        if !role.is_moderator() {
            return Err(ClientError::NotAllowed(LogError::NotAllowed {
                role,
                action: "add_warning",
            }));
        }
        let body = ContentBody::AddWarning {
            message,
            warnings: warnings.clone(),
        };
        let content = MessageContent {
            sent_at: self.host.now(),
            seen_seq: self.seen_seq(group),
            body,
        };
        let r = self.post_content(group, content).await.map(|_| ());
        // Kept to be sent later is as good as sent: this device shows it now.
        if matches!(r, Ok(()) | Err(ClientError::Held | ClientError::Pending)) {
            self.apply_warning(group, message, &warnings).await?;
        }
        r
    }

    /// Posts `body` in `group` as it is, without the checks the commands make (a member's
    /// `add_warning`, a round tag the receivers must not honour): for tests of what receivers
    /// do with what a misbehaving client sends. Never for an application.
    ///
    /// # Errors
    ///
    /// As [`Self::send_text`].
    #[cfg(feature = "test-hooks")]
    pub async fn send_body_unchecked(
        &mut self,
        group: GroupId,
        body: ContentBody,
    ) -> Result<(), ClientError> {
        let r = if matches!(body, ContentBody::Text { .. }) {
            // Stored on the sender's device too, by the rules every device applies.
            self.post_body(group, body).await.map(|_| ())
        } else {
            let content = MessageContent {
                sent_at: self.host.now(),
                seen_seq: self.seen_seq(group),
                body,
            };
            self.post_content(group, content).await.map(|_| ())
        };
        self.end_step(r).await
    }

    /// Posts a body of this device's user in `group` (written now); for a text, returns it as
    /// stored once the server has it.
    pub(crate) async fn post_body(
        &mut self,
        group: GroupId,
        body: ContentBody,
    ) -> Result<ChatMessage, ClientError> {
        let now = self.host.now();
        self.post_body_at(group, body, now).await
    }

    /// [`Self::post_body`] written at `sent_at`.
    pub(crate) async fn post_body_at(
        &mut self,
        group: GroupId,
        body: ContentBody,
        sent_at: confide_protocol::Timestamp,
    ) -> Result<ChatMessage, ClientError> {
        let content = MessageContent {
            sent_at,
            seen_seq: self.seen_seq(group),
            body,
        };
        let (seq, id) = self.post_content(group, content.clone()).await?;
        self.own_message(group, seq, id, content)
            .await?
            .ok_or_else(|| ClientError::Invalid("not a text".into()))
    }

    /// The topics this device hides in `group` (ids of its warning topics). The person's own choice: never sent to a group or the server.
    ///
    /// # Errors
    ///
    /// [`ClientError::UnknownGroup`] for a group this device does not know;
    /// [`ClientError::Store`] if the store cannot be read.
    pub async fn hidden_topics(&self, group: GroupId) -> Result<Vec<u16>, ClientError> {
        if !self.groups.contains_key(&group) {
            return Err(ClientError::UnknownGroup);
        }
        Ok(self.hidden_set(group).await?.into_iter().collect())
    }

    /// Sets the topics this device hides in `group`: messages with a warning among them are
    /// shown hidden ([`ChatMessage::hidden`]). The person's own choice: never sent to a group or the server; the person's other devices get it sealed (PROTOCOL.md §7.4), a new one in the link bundle.
    ///
    /// # Errors
    ///
    /// [`ClientError::Invalid`] for more than
    /// [`confide_protocol::group_work::MAX_WARNING_TOPICS`] topics;
    /// [`ClientError::UnknownGroup`] for a group this device does not know;
    /// [`ClientError::Store`] if it cannot be stored.
    pub async fn set_hidden_topics(
        &mut self,
        group: GroupId,
        topics: Vec<u16>,
    ) -> Result<(), ClientError> {
        let r = match self.store_hidden_topics(group, topics) {
            Ok(()) => {
                self.own_value_changed(crate::own_devices::OwnValue::HiddenTopics(group))
                    .await
            }
            Err(e) => Err(e),
        };
        self.end_step(r).await
    }

    /// Keeps `topics` as the hidden topics of `group` (in the step's batch).
    pub(crate) fn store_hidden_topics(
        &mut self,
        group: GroupId,
        topics: Vec<u16>,
    ) -> Result<(), ClientError> {
        if !self.groups.contains_key(&group) {
            return Err(ClientError::UnknownGroup);
        }
        self.store_hidden_topics_anywhere(group, topics)
    }

    /// Keeps `topics` as the hidden topics of `group`, a group this device may not hold yet
    /// (another of the person's devices chose them, PROTOCOL.md §7.4).
    pub(crate) fn store_hidden_topics_anywhere(
        &mut self,
        group: GroupId,
        topics: Vec<u16>,
    ) -> Result<(), ClientError> {
        let topics: BTreeSet<u16> = topics.into_iter().collect();
        if topics.len() > confide_protocol::group_work::MAX_WARNING_TOPICS {
            return Err(ClientError::Invalid(format!(
                "at most {} topics can be hidden",
                confide_protocol::group_work::MAX_WARNING_TOPICS
            )));
        }
        if topics.is_empty() {
            self.db.remove(T_HIDDEN_TOPICS, group.as_bytes());
        } else {
            let topics: Vec<u16> = topics.into_iter().collect();
            self.db.put(T_HIDDEN_TOPICS, group.as_bytes(), &topics)?;
        }
        Ok(())
    }

    /// The hidden topics of every group that has some: for a link bundle.
    pub(crate) async fn all_hidden_topics(&self) -> Result<Vec<(GroupId, Vec<u16>)>, ClientError> {
        let stored: Vec<(Vec<u8>, Vec<u16>)> =
            self.db.scan(T_HIDDEN_TOPICS, &[], usize::MAX).await?;
        Ok(stored
            .into_iter()
            .filter_map(|(key, topics)| {
                <[u8; 16]>::try_from(key.as_slice())
                    .ok()
                    .map(|g| (GroupId(g), topics))
            })
            .collect())
    }

    /// The hidden topics of `group` as stored (whether or not the group is held here).
    pub(crate) async fn stored_hidden_topics(
        &self,
        group: GroupId,
    ) -> Result<Vec<u16>, ClientError> {
        Ok(self.hidden_set(group).await?.into_iter().collect())
    }

    async fn hidden_set(&self, group: GroupId) -> Result<BTreeSet<u16>, ClientError> {
        Ok(self
            .db
            .get::<Vec<u16>>(T_HIDDEN_TOPICS, group.as_bytes())
            .await?
            .unwrap_or_default()
            .into_iter()
            .collect())
    }

    /// Sets [`ChatMessage::hidden`] by this device's hidden topics for its group.
    pub(crate) async fn mark_hidden(&self, message: &mut ChatMessage) {
        message.hidden = !message.warnings.is_empty()
            && self
                .hidden_set(message.group)
                .await
                .is_ok_and(|hidden| message.warnings.iter().any(|w| hidden.contains(w)));
    }

    /// [`Self::mark_hidden`] on a result.
    pub(crate) async fn with_hidden(
        &self,
        r: Result<ChatMessage, ClientError>,
    ) -> Result<ChatMessage, ClientError> {
        let mut message = r?;
        self.mark_hidden(&mut message).await;
        Ok(message)
    }

    /// Sets [`ChatMessage::hidden`] in an event that carries a message.
    pub(crate) async fn mark_hidden_event(&self, event: &mut Event) {
        if let Event::Message(m) | Event::Sent(m) = event {
            self.mark_hidden(m).await;
        }
    }

    /// An `add_warning` arrived from `sender`: applied if a device of a current moderator
    /// sent valid warnings, else ignored.
    pub(crate) async fn receive_add_warning(
        &mut self,
        group: GroupId,
        sender: DeviceId,
        message: MessageId,
        warnings: Vec<u16>,
    ) {
        let Some(ctx) = self.groups.get(&group) else {
            return;
        };
        if confide_protocol::group_work::check_add_warning(&ctx.state, &sender, &warnings).is_err()
        {
            tracing::debug!(%group, "a content warning not from a moderator, or invalid: ignored");
            return;
        }
        if let Err(e) = self.apply_warning(group, message, &warnings).await {
            tracing::warn!(%group, error = %e, "a content warning could not be stored");
        }
    }

    /// Adds `warnings` to message `message` of `group`: to its record if it is here, else
    /// remembered for when it arrives.
    pub(crate) async fn apply_warning(
        &mut self,
        group: GroupId,
        message: MessageId,
        warnings: &[u16],
    ) -> Result<(), ClientError> {
        let seen = self
            .db
            .get::<Seq>(T_SEEN, &key2(group.as_bytes(), message.as_bytes()))
            .await?;
        if let Some(seq) = seen {
            let key = key2(group.as_bytes(), &seq.0.to_be_bytes());
            if let Some((mut stored, evidence)) = self
                .db
                .get_with_attachment::<ChatMessage>(T_MESSAGES, &key)
                .await?
                && stored.id == message
            {
                let merged = union(&stored.warnings, warnings);
                if merged != stored.warnings {
                    stored.warnings = merged.clone();
                    // The record's report evidence stays with it.
                    self.db.put_with_attachment(
                        T_MESSAGES,
                        &key,
                        &stored,
                        evidence.as_deref().map(Vec::as_slice),
                    )?;
                    self.emit(Event::WarningAdded {
                        group,
                        message,
                        warnings: merged,
                    });
                }
            }
            // Seen but not stored (deleted, expired, refused): nothing to warn about.
            return Ok(());
        }
        let pending_key = key2(group.as_bytes(), message.as_bytes());
        let earlier = self
            .db
            .get::<Vec<u16>>(T_PENDING_WARNINGS, &pending_key)
            .await?;
        if earlier.is_none() {
            let (n, _) = self.db.count(T_PENDING_WARNINGS, group.as_bytes()).await?;
            if n >= MAX_PENDING_WARNINGS {
                tracing::debug!(%group, "too many warnings wait for their messages: dropped");
                return Ok(());
            }
        }
        let merged = union(&earlier.unwrap_or_default(), warnings);
        self.db.put(T_PENDING_WARNINGS, &pending_key, &merged)?;
        Ok(())
    }

    /// Adds to a message about to be stored the warnings moderators sent before it arrived.
    pub(crate) async fn take_pending_warnings(&mut self, message: &mut ChatMessage) {
        let key = key2(message.group.as_bytes(), message.id.as_bytes());
        if let Ok(Some(pending)) = self.db.get::<Vec<u16>>(T_PENDING_WARNINGS, &key).await {
            message.warnings = union(&message.warnings, &pending);
            self.db.remove(T_PENDING_WARNINGS, &key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_addition_never_pushes_out_a_warning_already_held() {
        let full: Vec<u16> = (1..=MAX_WARNINGS_KEPT as u16).collect();
        assert_eq!(union(&full, &[0]), full);
        assert_eq!(union(&[5], &[0, 9]), vec![0, 5, 9]);
    }

    #[test]
    fn invalid_warnings_are_dropped_whole_and_valid_ones_sorted() {
        assert_eq!(honoured_warnings(vec![3, 1]), vec![1, 3]);
        assert!(honoured_warnings(vec![1, 1]).is_empty());
        assert!(honoured_warnings((0..9).collect()).is_empty());
        assert!(honoured_warnings(Vec::new()).is_empty());
    }

    #[test]
    fn a_union_is_sorted_distinct_and_bounded() {
        assert_eq!(union(&[4, 1], &[1, 2]), vec![1, 2, 4]);
        let many: Vec<u16> = (0..200).collect();
        assert_eq!(union(&many, &[]).len(), MAX_WARNINGS_KEPT);
    }
}
