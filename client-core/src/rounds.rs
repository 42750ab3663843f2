//! Check-in rounds: a moderator opens one in the log (`open_round`) and sends its prompt as a
//! tagged text; members answer or pass with tagged texts. A tag counts only by the receiving
//! rules (PROTOCOL.md §6.9); this device keeps, per round, the prompt and each person's latest
//! answer, so that every member sees the same block.

use std::collections::BTreeMap;

use confide_protocol::envelope::ContentBody;
use confide_protocol::group_log::OpBody;
use confide_protocol::group_work::{RoundPart, RoundTag};
use confide_protocol::ids::RoundId;
use confide_protocol::{GroupId, MessageId, Seq, Timestamp, UserId};
use serde::{Deserialize, Serialize};

use crate::Network;
use crate::error::ClientError;
use crate::events::{ChatMessage, Event};
use crate::machine::ClientCore;
use crate::store::{ClientStore, T_MESSAGES, T_ROUNDS, key2};
use crate::types::{RoundAnswer, RoundView};

/// What this device holds of one round's messages (the `rounds` tree).
#[derive(Clone, Default, Serialize, Deserialize)]
pub(crate) struct RoundRecord {
    /// The prompt, once it arrived (the latest of the opener's, should they send two).
    #[serde(default)]
    prompt: Option<PromptRecord>,
    /// Each person's latest answer or pass, in the order they arrived here.
    #[serde(default)]
    answers: Vec<AnswerRecord>,
}

/// The prompt's place; its text is read from the message itself when shown, so that deleting
/// the message (or retention) leaves no copy here.
#[derive(Clone, Serialize, Deserialize)]
struct PromptRecord {
    seq: Seq,
    order: Option<Vec<UserId>>,
}

#[derive(Clone, Serialize, Deserialize)]
struct AnswerRecord {
    user: UserId,
    name: String,
    message: MessageId,
    seq: Seq,
    number: u64,
    passed: bool,
    sent_at: Timestamp,
}

fn round_key(group: &GroupId, round: &RoundId) -> Vec<u8> {
    key2(group.as_bytes(), round.as_bytes())
}

/// `answers` in the order a round shows them: those in `order` first, in its order, then the
/// others as they arrived.
fn in_turn_order<T>(
    answers: Vec<(AnswerRecord, T)>,
    order: Option<&[UserId]>,
) -> Vec<(AnswerRecord, T)> {
    let Some(order) = order else {
        return answers;
    };
    let place: BTreeMap<UserId, usize> = order.iter().enumerate().map(|(i, u)| (*u, i)).collect();
    let mut answers: Vec<(usize, (AnswerRecord, T))> = answers.into_iter().enumerate().collect();
    answers.sort_by_key(|(arrived, (a, _))| {
        (place.get(&a.user).copied().unwrap_or(usize::MAX), *arrived)
    });
    answers.into_iter().map(|(_, a)| a).collect()
}

impl<S: ClientStore, N: Network> ClientCore<S, N> {
    /// Opens a check-in round (moderators): the `open_round` op, then the prompt as a message,
    /// with the turn order if one is given (1 to
    /// [`confide_protocol::group_work::MAX_ROUND_ORDER`] distinct members) and the time it
    /// closes by itself, if it does (within a week). Only one round is open at a time.
    ///
    /// # Errors
    ///
    /// [`ClientError::Invalid`] for an empty prompt or a bad turn order;
    /// [`ClientError::NotAllowed`] for a member who is not a moderator, while another round is
    /// open, or for a bad closing time; otherwise as [`Self::append`] for the op, then as
    /// [`Self::send_text`] for the prompt. A prompt kept to be sent later (offline, say) is not
    /// an error: the round is open and its prompt goes later.
    pub async fn open_round(
        &mut self,
        group: GroupId,
        prompt: String,
        order: Option<Vec<UserId>>,
        closes_at: Option<Timestamp>,
    ) -> Result<RoundId, ClientError> {
        let r = self.open_round_step(group, prompt, order, closes_at).await;
        self.end_step(r).await
    }

    async fn open_round_step(
        &mut self,
        group: GroupId,
        prompt: String,
        order: Option<Vec<UserId>>,
        closes_at: Option<Timestamp>,
    ) -> Result<RoundId, ClientError> {
        let mut id = [0u8; 16];
        self.host.fill_random(&mut id);
        let round = RoundId(id);
        let tag = RoundTag {
            id: round,
            part: RoundPart::Prompt,
            order,
        };
        tag.validate(&prompt)
            .map_err(|e| ClientError::Invalid(e.to_string()))?;
        self.append_op(group, OpBody::OpenRound { round, closes_at })
            .await?;
        self.commit().await?;
        match self.post_round_text(group, prompt, tag).await {
            // The round is open; its prompt is kept and goes later.
            Ok(_) | Err(ClientError::Held | ClientError::Pending) => Ok(round),
            Err(e) => Err(e),
        }
    }

    /// Closes an open round by hand (moderators). Answers written after it closed do not
    /// count.
    ///
    /// # Errors
    ///
    /// [`ClientError::NotAllowed`] for a member who is not a moderator or a round that is not
    /// open; otherwise as [`Self::append`].
    pub async fn close_round(&mut self, group: GroupId, round: RoundId) -> Result<(), ClientError> {
        let r = self
            .append_op(group, OpBody::CloseRound { round })
            .await
            .map(|_| ());
        self.end_step(r).await
    }

    /// Answers an open round. A later answer or pass of the same person replaces this one.
    ///
    /// # Errors
    ///
    /// [`ClientError::Invalid`] for an empty answer or a round that is not open now (by this
    /// device's clock and log); otherwise as [`Self::send_text`].
    pub async fn answer_round(
        &mut self,
        group: GroupId,
        round: RoundId,
        text: String,
    ) -> Result<ChatMessage, ClientError> {
        // Nothing of this answer is in the outbox yet (see `end_send_step`).
        self.sealed_this_send = false;
        let r = self.respond(group, round, RoundPart::Answer, text).await;
        let r = self.end_send_step(r).await;
        self.with_hidden(r).await
    }

    /// Passes in an open round (an empty message tagged as a pass). A later answer replaces it.
    ///
    /// # Errors
    ///
    /// As [`Self::answer_round`].
    pub async fn pass_round(
        &mut self,
        group: GroupId,
        round: RoundId,
    ) -> Result<ChatMessage, ClientError> {
        // Nothing of this answer is in the outbox yet (see `end_send_step`).
        self.sealed_this_send = false;
        let r = self
            .respond(group, round, RoundPart::Pass, String::new())
            .await;
        let r = self.end_send_step(r).await;
        self.with_hidden(r).await
    }

    async fn respond(
        &mut self,
        group: GroupId,
        round: RoundId,
        part: RoundPart,
        text: String,
    ) -> Result<ChatMessage, ClientError> {
        let tag = RoundTag {
            id: round,
            part,
            order: None,
        };
        tag.validate(&text)
            .map_err(|e| ClientError::Invalid(e.to_string()))?;
        let now = self.host.now();
        let ctx = self.member_ctx(group).await?;
        if !ctx.state.round(&round).is_some_and(|r| r.is_open_at(now)) {
            return Err(ClientError::Invalid(
                "that round is not open: it was closed, or never opened in this group".into(),
            ));
        }
        self.post_round_text(group, text, tag).await
    }

    async fn post_round_text(
        &mut self,
        group: GroupId,
        text: String,
        tag: RoundTag,
    ) -> Result<ChatMessage, ClientError> {
        // A prompt is written no earlier than its round opened: the op may claim a time
        // ahead of this device's clock (`claim_time`), and a prompt from before the round
        // opened would not count.
        let opened_at = self
            .groups
            .get(&group)
            .and_then(|ctx| ctx.state.round(&tag.id))
            .filter(|_| tag.part == RoundPart::Prompt)
            .map(|r| r.opened_at);
        let body = ContentBody::Text {
            text,
            reply_to: None,
            warnings: Vec::new(),
            round: Some(tag),
        };
        let sent_at = self.host.now().max(opened_at.unwrap_or(Timestamp(0)));
        self.post_body_at(group, body, sent_at).await
    }

    /// The group's check-in rounds, oldest first, each with its prompt and answers as this
    /// device received them.
    ///
    /// # Errors
    ///
    /// [`ClientError::UnknownGroup`] for a group this device does not know;
    /// [`ClientError::Store`] if the store cannot be read.
    pub async fn rounds(&self, group: GroupId) -> Result<Vec<RoundView>, ClientError> {
        let ctx = self.groups.get(&group).ok_or(ClientError::UnknownGroup)?;
        let now = self.host.now();
        let mut out = Vec::new();
        for round in ctx.state.rounds() {
            let record = self
                .db
                .get::<RoundRecord>(T_ROUNDS, &round_key(&group, &round.id))
                .await?
                .unwrap_or_default();
            // A message deleted for everyone, or expired, takes its answer (or the prompt)
            // with it; the text, warnings and hiding are the message's own, as shown now.
            let mut answers = Vec::new();
            for a in record.answers {
                if let Some(m) = self
                    .round_message(group, a.seq, |m| m.id == a.message)
                    .await?
                {
                    answers.push((a, m));
                }
            }
            let prompt = match &record.prompt {
                Some(p) => {
                    self.round_message(group, p.seq, |m| {
                        m.round.as_ref().is_some_and(|t| t.id == round.id)
                    })
                    .await?
                }
                None => None,
            };
            let order = record.prompt.as_ref().and_then(|p| p.order.clone());
            let answers = in_turn_order(answers, order.as_deref());
            out.push(RoundView {
                id: round.id,
                opened_by: round.opened_by,
                opened_by_name: ctx
                    .state
                    .member(&round.opened_by)
                    .map(|m| m.entry.display_name.clone())
                    .unwrap_or_default(),
                opened_at: round.opened_at,
                closes_at: round.closes_at,
                ended_at: round.ended_at(),
                open: round.is_open_at(now),
                prompt_warnings: prompt
                    .as_ref()
                    .map(|m| m.warnings.clone())
                    .unwrap_or_default(),
                prompt_hidden: prompt.as_ref().is_some_and(|m| m.hidden),
                prompt: prompt.map(|m| m.text),
                order,
                answered: answers.iter().any(|(a, _)| a.user == self.profile.user),
                answers: answers
                    .into_iter()
                    .map(|(a, m)| RoundAnswer {
                        user: a.user,
                        name: a.name,
                        message: a.message,
                        number: a.number,
                        text: m.text,
                        passed: a.passed,
                        sent_at: a.sent_at,
                        warnings: m.warnings,
                        hidden: m.hidden,
                    })
                    .collect(),
            });
        }
        Ok(out)
    }

    /// The stored message at `seq` of `group` if it is the one `is_it` expects, marked hidden
    /// as this device's topics say now.
    async fn round_message(
        &self,
        group: GroupId,
        seq: Seq,
        is_it: impl Fn(&ChatMessage) -> bool,
    ) -> Result<Option<ChatMessage>, ClientError> {
        let key = key2(group.as_bytes(), &seq.0.to_be_bytes());
        let Some(mut message) = self.db.get::<ChatMessage>(T_MESSAGES, &key).await? else {
            return Ok(None);
        };
        if !is_it(&message) {
            return Ok(None);
        }
        self.mark_hidden(&mut message).await;
        Ok(Some(message))
    }

    /// `tag` if it counts for a text `text` that `user` wrote at `sent_at` in `group`
    /// (PROTOCOL.md §6.9): valid, its round in the verified log and open at `sent_at`, and a
    /// prompt only from the user who opened it. `None` otherwise: the message is an ordinary
    /// one.
    pub(crate) fn honoured_round(
        &self,
        group: GroupId,
        user: UserId,
        sent_at: Timestamp,
        text: &str,
        tag: Option<RoundTag>,
    ) -> Option<RoundTag> {
        let tag = tag?;
        let state = &self.groups.get(&group)?.state;
        confide_protocol::group_work::check_round_tag(state, &user, sent_at, text, &tag).ok()?;
        Some(tag)
    }

    /// A message with an honoured round tag was stored: it becomes the round's prompt (the
    /// first by seq), or its author's answer (the one with the greatest `(sent_at, seq)`: the
    /// author's own signed order first, so the server cannot choose between two answers written
    /// offline; PROTOCOL.md §6.9).
    pub(crate) async fn note_round_message(&mut self, message: &ChatMessage) {
        let Some(tag) = &message.round else {
            return;
        };
        let key = round_key(&message.group, &tag.id);
        let mut record = match self.db.get::<RoundRecord>(T_ROUNDS, &key).await {
            Ok(r) => r.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(group = %message.group, error = %e, "a round could not be read");
                return;
            }
        };
        match tag.part {
            RoundPart::Prompt => {
                if record.prompt.as_ref().is_some_and(|p| p.seq < message.seq) {
                    return;
                }
                record.prompt = Some(PromptRecord {
                    seq: message.seq,
                    order: tag.order.clone(),
                });
            }
            RoundPart::Answer | RoundPart::Pass => {
                if record.answers.iter().any(|a| {
                    a.user == message.sender && (a.sent_at, a.seq) > (message.sent_at, message.seq)
                }) {
                    return;
                }
                record.answers.retain(|a| a.user != message.sender);
                record.answers.push(AnswerRecord {
                    user: message.sender,
                    name: message.sender_name.clone(),
                    message: message.id,
                    seq: message.seq,
                    number: message.number,
                    passed: tag.part == RoundPart::Pass,
                    sent_at: message.sent_at,
                });
            }
        }
        if let Err(e) = self.db.put(T_ROUNDS, &key, &record) {
            tracing::warn!(group = %message.group, error = %e, "a round could not be stored");
            return;
        }
        self.emit(Event::RoundChanged {
            group: message.group,
            round: tag.id,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(user: u8, seq: u64) -> (AnswerRecord, ()) {
        let record = AnswerRecord {
            user: UserId([user; 16]),
            name: String::new(),
            message: MessageId([user; 16]),
            seq: Seq(seq),
            number: seq,
            passed: false,
            sent_at: Timestamp(seq),
        };
        (record, ())
    }

    #[test]
    fn the_turn_order_comes_first_then_arrival_order() {
        let arrived = vec![answer(3, 1), answer(9, 2), answer(1, 3), answer(8, 4)];
        let order = [UserId([1; 16]), UserId([3; 16])];
        let users: Vec<u8> = in_turn_order(arrived.clone(), Some(&order))
            .iter()
            .map(|(a, _)| a.user.0[0])
            .collect();
        assert_eq!(users, vec![1, 3, 9, 8]);
        let users: Vec<u8> = in_turn_order(arrived, None)
            .iter()
            .map(|(a, _)| a.user.0[0])
            .collect();
        assert_eq!(users, vec![3, 9, 1, 8]);
    }
}
