//! The group-work tools on [`Client`] (issue 17): the meeting schedule, check-in rounds,
//! content warnings and hidden topics, the resource library, and the person's own safety plan.
//! Each method is one call of the client core of the same name, made by the background task.

use tokio::sync::oneshot;

use confide_client_core::{ChatMessage, ClientError, RoundView};
use confide_protocol::group_work::{
    MeetingSchedule, NextMeeting, ResourceLibrary, SafetyPlan, WarningTopics,
};
use confide_protocol::ids::RoundId;
use confide_protocol::{GroupId, MessageId, Timestamp, UserId};

use crate::Client;
use crate::commands::{Command, Core};

/// Reply channel of a group-work command.
type Reply<T> = oneshot::Sender<Result<T, ClientError>>;

/// The group-work requests [`Client`] queues for its background task.
pub(crate) enum GroupWorkCommand {
    SetMeetings(GroupId, Box<MeetingSchedule>, Reply<()>),
    SetWarningTopics(GroupId, WarningTopics, Reply<()>),
    SetResources(GroupId, Box<ResourceLibrary>, Reply<()>),
    NextMeeting(GroupId, Reply<Option<NextMeeting>>),
    SendWithWarnings {
        group: GroupId,
        text: String,
        reply_to: Option<MessageId>,
        warnings: Vec<u16>,
        reply: Reply<ChatMessage>,
    },
    AddWarning(GroupId, MessageId, Vec<u16>, Reply<()>),
    HiddenTopics(GroupId, Reply<Vec<u16>>),
    SetHiddenTopics(GroupId, Vec<u16>, Reply<()>),
    OpenRound {
        group: GroupId,
        prompt: String,
        order: Option<Vec<UserId>>,
        closes_at: Option<Timestamp>,
        reply: Reply<RoundId>,
    },
    CloseRound(GroupId, RoundId, Reply<()>),
    AnswerRound(GroupId, RoundId, String, Reply<ChatMessage>),
    PassRound(GroupId, RoundId, Reply<ChatMessage>),
    Rounds(GroupId, Reply<Vec<RoundView>>),
    SafetyPlan(Reply<SafetyPlan>),
    SetSafetyPlan(Box<SafetyPlan>, Reply<()>),
    #[cfg(feature = "test-hooks")]
    SendBodyUnchecked(
        GroupId,
        Box<confide_protocol::envelope::ContentBody>,
        Reply<()>,
    ),
}

/// Carries out one group-work command on the core and sends its reply.
pub(crate) async fn dispatch(core: &mut Core, cmd: GroupWorkCommand) {
    use GroupWorkCommand as G;
    match cmd {
        G::SetMeetings(group, schedule, reply) => {
            let _ = reply.send(core.set_meetings(group, &schedule).await);
        }
        G::SetWarningTopics(group, topics, reply) => {
            let _ = reply.send(core.set_warning_topics(group, &topics).await);
        }
        G::SetResources(group, library, reply) => {
            let _ = reply.send(core.set_resources(group, &library).await);
        }
        G::NextMeeting(group, reply) => {
            let _ = reply.send(core.next_meeting(group).await);
        }
        G::SendWithWarnings {
            group,
            text,
            reply_to,
            warnings,
            reply,
        } => {
            let _ = reply.send(
                core.send_text_with_warnings(group, text, reply_to, warnings)
                    .await,
            );
        }
        G::AddWarning(group, message, warnings, reply) => {
            let _ = reply.send(core.add_warning(group, message, warnings).await);
        }
        G::HiddenTopics(group, reply) => {
            let _ = reply.send(core.hidden_topics(group).await);
        }
        G::SetHiddenTopics(group, topics, reply) => {
            let _ = reply.send(core.set_hidden_topics(group, topics).await);
        }
        G::OpenRound {
            group,
            prompt,
            order,
            closes_at,
            reply,
        } => {
            let _ = reply.send(core.open_round(group, prompt, order, closes_at).await);
        }
        G::CloseRound(group, round, reply) => {
            let _ = reply.send(core.close_round(group, round).await);
        }
        G::AnswerRound(group, round, text, reply) => {
            let _ = reply.send(core.answer_round(group, round, text).await);
        }
        G::PassRound(group, round, reply) => {
            let _ = reply.send(core.pass_round(group, round).await);
        }
        G::Rounds(group, reply) => {
            let _ = reply.send(core.rounds(group).await);
        }
        G::SafetyPlan(reply) => {
            let _ = reply.send(core.safety_plan().await);
        }
        G::SetSafetyPlan(plan, reply) => {
            let _ = reply.send(core.set_safety_plan(*plan).await);
        }
        #[cfg(feature = "test-hooks")]
        G::SendBodyUnchecked(group, body, reply) => {
            let _ = reply.send(core.send_body_unchecked(group, *body).await);
        }
    }
}

impl Client {
    async fn group_work<T>(
        &self,
        make: impl FnOnce(Reply<T>) -> GroupWorkCommand,
    ) -> Result<T, ClientError> {
        self.call(|reply| Command::GroupWork(make(reply))).await?
    }

    /// Publishes the group's meeting schedule (moderators); members see it in
    /// [`Self::pinned`] and [`Self::next_meeting`].
    ///
    /// # Errors
    ///
    /// [`ClientError::Invalid`] for a schedule that breaks a limit
    /// ([`MeetingSchedule::validate`]); [`ClientError::NotAllowed`] for a member who is not a
    /// moderator (nothing is sent); otherwise as [`Self::set_agreement`].
    pub async fn set_meetings(
        &self,
        group: GroupId,
        schedule: &MeetingSchedule,
    ) -> Result<(), ClientError> {
        let schedule = Box::new(schedule.clone());
        self.group_work(|r| GroupWorkCommand::SetMeetings(group, schedule, r))
            .await
    }

    /// Publishes the group's content-warning topics (moderators).
    ///
    /// # Errors
    ///
    /// As [`Self::set_meetings`] ([`WarningTopics::validate`]).
    pub async fn set_warning_topics(
        &self,
        group: GroupId,
        topics: &WarningTopics,
    ) -> Result<(), ClientError> {
        let topics = topics.clone();
        self.group_work(|r| GroupWorkCommand::SetWarningTopics(group, topics, r))
            .await
    }

    /// Publishes the group's resource library (moderators).
    ///
    /// # Errors
    ///
    /// As [`Self::set_meetings`] ([`ResourceLibrary::validate`]).
    pub async fn set_resources(
        &self,
        group: GroupId,
        library: &ResourceLibrary,
    ) -> Result<(), ClientError> {
        let library = Box::new(library.clone());
        self.group_work(|r| GroupWorkCommand::SetResources(group, library, r))
            .await
    }

    /// The meeting in progress or the next one, by the group's schedule and this device's
    /// clock; `None` without a schedule or with none ahead.
    ///
    /// # Errors
    ///
    /// [`ClientError::UnknownGroup`] if this device does not hold the group;
    /// [`ClientError::Store`] if the store cannot be read.
    pub async fn next_meeting(&self, group: GroupId) -> Result<Option<NextMeeting>, ClientError> {
        self.group_work(|r| GroupWorkCommand::NextMeeting(group, r))
            .await
    }

    /// Sends a text with content warnings (ids of the group's topics); see
    /// [`Self::send_text`]. A message kept to be sent later keeps its warnings.
    ///
    /// # Errors
    ///
    /// [`ClientError::Invalid`] for an empty text or warnings that are not 1 to
    /// [`confide_protocol::group_work::MAX_WARNINGS_PER_MESSAGE`] distinct ids; otherwise as
    /// [`Self::send_text`].
    pub async fn send_text_with_warnings(
        &self,
        group: GroupId,
        text: &str,
        reply_to: Option<MessageId>,
        warnings: Vec<u16>,
    ) -> Result<ChatMessage, ClientError> {
        let text = text.to_string();
        self.group_work(|reply| GroupWorkCommand::SendWithWarnings {
            group,
            text,
            reply_to,
            warnings,
            reply,
        })
        .await
    }

    /// Adds content warnings to a message (moderators): every member's device adds them to
    /// the message's own, also one that gets the message later.
    ///
    /// # Errors
    ///
    /// [`ClientError::Invalid`] for invalid warnings; [`ClientError::NotAllowed`] for a member
    /// who is not a moderator (nothing is sent); otherwise as [`Self::send_text`].
    pub async fn add_warning(
        &self,
        group: GroupId,
        message: MessageId,
        warnings: Vec<u16>,
    ) -> Result<(), ClientError> {
        self.group_work(|r| GroupWorkCommand::AddWarning(group, message, warnings, r))
            .await
    }

    /// The warning topics this device hides in the group. Local: never sent.
    ///
    /// # Errors
    ///
    /// [`ClientError::UnknownGroup`] if this device does not hold the group;
    /// [`ClientError::Store`] if the store cannot be read.
    pub async fn hidden_topics(&self, group: GroupId) -> Result<Vec<u16>, ClientError> {
        self.group_work(|r| GroupWorkCommand::HiddenTopics(group, r))
            .await
    }

    /// Sets the warning topics this device hides in the group ([`ChatMessage::hidden`]).
    /// Local: never sent (a new device of this person gets it when linked).
    ///
    /// # Errors
    ///
    /// [`ClientError::Invalid`] for too many topics; [`ClientError::UnknownGroup`] if this
    /// device does not hold the group; [`ClientError::Store`] if it cannot be stored.
    pub async fn set_hidden_topics(
        &self,
        group: GroupId,
        topics: Vec<u16>,
    ) -> Result<(), ClientError> {
        self.group_work(|r| GroupWorkCommand::SetHiddenTopics(group, topics, r))
            .await
    }

    /// Opens a check-in round (moderators) with its prompt, an optional turn order and an
    /// optional time it closes by itself.
    ///
    /// # Errors
    ///
    /// [`ClientError::Invalid`] for an empty prompt or a bad turn order;
    /// [`ClientError::NotAllowed`] for a member who is not a moderator, while another round is
    /// open, or for a bad closing time; otherwise as [`Self::op`].
    pub async fn open_round(
        &self,
        group: GroupId,
        prompt: &str,
        order: Option<Vec<UserId>>,
        closes_at: Option<Timestamp>,
    ) -> Result<RoundId, ClientError> {
        let prompt = prompt.to_string();
        self.group_work(|reply| GroupWorkCommand::OpenRound {
            group,
            prompt,
            order,
            closes_at,
            reply,
        })
        .await
    }

    /// Closes an open round by hand (moderators).
    ///
    /// # Errors
    ///
    /// [`ClientError::NotAllowed`] for a member who is not a moderator or a round that is not
    /// open; otherwise as [`Self::op`].
    pub async fn close_round(&self, group: GroupId, round: RoundId) -> Result<(), ClientError> {
        self.group_work(|r| GroupWorkCommand::CloseRound(group, round, r))
            .await
    }

    /// Answers an open round; a later answer or pass replaces it.
    ///
    /// # Errors
    ///
    /// [`ClientError::Invalid`] for an empty answer or a round that is not open; otherwise as
    /// [`Self::send_text`].
    pub async fn answer_round(
        &self,
        group: GroupId,
        round: RoundId,
        text: &str,
    ) -> Result<ChatMessage, ClientError> {
        let text = text.to_string();
        self.group_work(|r| GroupWorkCommand::AnswerRound(group, round, text, r))
            .await
    }

    /// Passes in an open round; a later answer replaces the pass.
    ///
    /// # Errors
    ///
    /// As [`Self::answer_round`].
    pub async fn pass_round(
        &self,
        group: GroupId,
        round: RoundId,
    ) -> Result<ChatMessage, ClientError> {
        self.group_work(|r| GroupWorkCommand::PassRound(group, round, r))
            .await
    }

    /// The group's check-in rounds, oldest first, with their prompts and answers.
    ///
    /// # Errors
    ///
    /// [`ClientError::UnknownGroup`] if this device does not hold the group;
    /// [`ClientError::Store`] if the store cannot be read.
    pub async fn rounds(&self, group: GroupId) -> Result<Vec<RoundView>, ClientError> {
        self.group_work(|r| GroupWorkCommand::Rounds(group, r))
            .await
    }

    /// This person's safety plan as this device holds it (empty until they write one).
    ///
    /// # Errors
    ///
    /// [`ClientError::Store`] if the store cannot be read.
    pub async fn safety_plan(&self) -> Result<SafetyPlan, ClientError> {
        self.group_work(GroupWorkCommand::SafetyPlan).await
    }

    /// Replaces this person's safety plan. Local, in the encrypted store: never sent to a
    /// group or the server (a new device of theirs gets it when linked).
    ///
    /// # Errors
    ///
    /// [`ClientError::Invalid`] for a plan that breaks a limit ([`SafetyPlan::validate`]);
    /// [`ClientError::Store`] if it cannot be stored.
    pub async fn set_safety_plan(&self, plan: SafetyPlan) -> Result<(), ClientError> {
        let plan = Box::new(plan);
        self.group_work(|r| GroupWorkCommand::SetSafetyPlan(plan, r))
            .await
    }

    /// Posts `body` in the group as it is, without the checks the commands make: for tests
    /// of what receivers do with what a misbehaving client sends. Never for an application.
    ///
    /// # Errors
    ///
    /// As [`Self::send_text`].
    #[cfg(feature = "test-hooks")]
    pub async fn send_body_unchecked(
        &self,
        group: GroupId,
        body: confide_protocol::envelope::ContentBody,
    ) -> Result<(), ClientError> {
        let body = Box::new(body);
        self.group_work(|r| GroupWorkCommand::SendBodyUnchecked(group, body, r))
            .await
    }
}
