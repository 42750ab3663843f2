//! What the client tells its front end.

use confide_protocol::envelope::PinnedKind;
use confide_protocol::group_log::Role;
use confide_protocol::group_work::RoundTag;
use confide_protocol::ids::RoundId;
use confide_protocol::{DeviceId, GroupId, MessageId, Seq, Timestamp, UserId};
use serde::{Deserialize, Serialize};

/// A decrypted, verified message as the front end shows it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ChatMessage {
    /// The group.
    pub group: GroupId,
    /// Its position in the group (the server's order, the same for every member). It counts
    /// everything stored in the group (pinned texts too), so it is not what people are shown:
    /// see [`Self::number`].
    pub seq: Seq,
    /// Its number as people see it: the group's messages on this device are numbered 1, 2, 3,
    /// … in the order they became readable here (almost always the server's order), and a
    /// number never changes or goes to another message, also when a message is deleted or
    /// expires. Each device numbers its own messages: someone who joined later starts at 1 too.
    #[serde(default)]
    pub number: u64,
    /// Its id.
    pub id: MessageId,
    /// The author (verified by signature and by the group log).
    pub sender: UserId,
    /// The author's device.
    pub sender_device: DeviceId,
    /// The author's display name at the time.
    pub sender_name: String,
    /// When the author says it was sent.
    pub sent_at: Timestamp,
    /// When the server stored it.
    pub received_at: Timestamp,
    /// The text.
    pub text: String,
    /// The message replied to, if any.
    pub reply_to: Option<MessageId>,
    /// Its content warnings: the author's own and those moderators added
    /// ([`crate::ClientCore::add_warning`]), ids of the group's warning topics
    /// ([`confide_protocol::group_work::WarningTopics`]), sorted, distinct. An id the group's
    /// topics do not define still counts (shown as "Content warning" without a label).
    #[serde(default)]
    pub warnings: Vec<u16>,
    /// Whether this device hides it: one of its warnings is among the topics the person hides
    /// in this group ([`crate::ClientCore::set_hidden_topics`]). Worked out on every read (the
    /// stored value means nothing), so that changing the hidden topics changes what is shown.
    #[serde(default)]
    pub hidden: bool,
    /// Its part in a check-in round (prompt, answer or pass), only when the tag is honoured
    /// (valid, the round in the verified log and open when it was written, a prompt from the
    /// round's opener); otherwise it is an ordinary message. The turn order is kept on the
    /// prompt.
    #[serde(default)]
    pub round: Option<RoundTag>,
}

impl std::fmt::Debug for ChatMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatMessage")
            .field("group", &self.group)
            .field("seq", &self.seq)
            .field("number", &self.number)
            .field("id", &self.id)
            .field("sender", &self.sender)
            .finish_non_exhaustive()
    }
}

/// A change in a group's log, as shown to people (never message content).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GroupChange {
    /// The group.
    pub group: GroupId,
    /// The op's position in the log.
    pub op_seq: u64,
    /// The op type, e.g. `add`, `remove`, `mute`, `lock` (the JSON `type` of the op).
    pub action: String,
    /// Who did it.
    pub author: UserId,
    /// Whom it concerns, if anyone.
    pub target: Option<UserId>,
    /// When the author says it happened.
    pub at: Timestamp,
}

/// Something that happened in a group that its members see among its messages, where it
/// happened: a member removed or gone, a message deleted for everyone ([`crate::ClientCore::notices`],
/// [`Event::Notice`]). Never message content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GroupNotice {
    /// The group.
    pub group: GroupId,
    /// The op in the group log that did it.
    pub op_seq: u64,
    /// Which of the op's messages, for a deletion of several (0 otherwise): with `op_seq`, it
    /// tells notices apart.
    pub index: usize,
    /// When the op says it happened.
    pub at: Timestamp,
    /// Who did it (the member who left, for [`NoticeKind::Left`]).
    pub by: UserId,
    /// Their pseudonym.
    pub by_name: String,
    /// What happened.
    pub kind: NoticeKind,
    /// Where it goes among the messages: after every message up to this position
    /// ([`ChatMessage::seq`]) and before any later one. `None` when this device cannot tell (a
    /// message deleted before it ever arrived here): then by `at`, among the messages' times.
    pub after_seq: Option<Seq>,
}

/// What a [`GroupNotice`] tells.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NoticeKind {
    /// A facilitator removed a member (perhaps this device's own user).
    Removed {
        /// Who was removed.
        user: UserId,
        /// Their pseudonym.
        name: String,
        /// Whether they were also banned.
        banned: bool,
    },
    /// A member left (`by` is who).
    Left,
    /// A facilitator deleted a message for everyone; it is gone from every device.
    MessageDeleted {
        /// Its number on this device ([`ChatMessage::number`]), if it was shown here.
        number: Option<u64>,
    },
    /// A member linked or unlinked a device (`by` is who): their device list changed
    /// (`update_devices`), and the group moved to a new epoch.
    DevicesUpdated,
}

/// Why something from the server was rejected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Rejection {
    /// The group.
    pub group: GroupId,
    /// The message's or op's position.
    pub seq: u64,
    /// What was wrong, for people.
    pub reason: String,
}

/// A request to join, shown to facilitators. Its `Debug` omits the note.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct JoinRequest {
    /// The group.
    pub group: GroupId,
    /// The requester.
    pub user: UserId,
    /// The requesting device (compare its safety number before approving).
    pub device: DeviceId,
    /// The requester's pseudonym.
    pub display_name: String,
    /// Their note to the facilitators.
    pub note: Option<String>,
    /// The current members (the facilitator included) whose display names look like the
    /// requester's (Unicode confusables, [`confide_protocol::names`]): warn before approving.
    #[serde(default)]
    pub looks_like: Vec<String>,
}

/// Everything the client reports, in the order it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Connected and authenticated (after start or a reconnect); a resync follows.
    Connected,
    /// The connection dropped; the client reconnects with back-off.
    Disconnected {
        /// Why.
        reason: String,
    },
    /// A resync of every group finished: everything the server had is processed.
    Synced,
    /// A new message.
    Message(ChatMessage),
    /// A message of this device's that was pending (see [`crate::ClientError::Pending`]) has
    /// now been acknowledged by the server.
    Sent(ChatMessage),
    /// A pending message was refused by the server when sent again (for example because the
    /// user was muted meanwhile); it was not delivered.
    SendFailed {
        /// The group.
        group: GroupId,
        /// The server's reason, for logs: the server's own words, so a front end shows `code`'s
        /// meaning in its own words instead.
        reason: String,
        /// Why, as a stable code ([`crate::ClientError::code`]: the server's code for a refusal).
        code: String,
    },
    /// The messages of the group that wait to be sent changed ([`crate::ClientCore::held`]):
    /// one was kept (offline, or the log behind), sealed, sent, refused or discarded. Read the
    /// list again.
    HeldChanged {
        /// The group.
        group: GroupId,
    },
    /// A message the user wrote (offline, say) is about to be sent, but people joined the
    /// group after it was written: it would reach people who were not there when it was
    /// written. It is not sent automatically: it stays held, and so do the group's later held
    /// messages (they go in order), until the user sends it anyway
    /// ([`crate::ClientCore::send_held_anyway`]) or discards it
    /// ([`crate::ClientCore::discard_held`]). Said once per message and epoch of the group.
    HeldNeedsConfirm {
        /// The group.
        group: GroupId,
        /// The message ([`crate::HeldMessage::id`]).
        id: crate::HeldId,
        /// Who joined since it was written (empty when this device cannot tell who).
        added: Vec<crate::AddedMember>,
        /// The epoch `added` was worked out against ([`crate::HeldMessage::epoch`]).
        epoch: u64,
    },
    /// A membership or moderation change.
    GroupChanged(GroupChange),
    /// Something to show among the group's messages, where it happened: a member removed or
    /// gone, a message deleted for everyone ([`GroupNotice`]). Only for groups the user is
    /// in (and has accepted).
    Notice(GroupNotice),
    /// This device joined a group (directly, or when a facilitator approved its request).
    Joined {
        /// The group.
        group: GroupId,
    },
    /// Someone added this device to a group it did not ask to join. Nothing from the group is
    /// shown and no keys are sent to it until the user accepts
    /// ([`crate::ClientCore::accept_group`]) — or they decline (leave it).
    Invited {
        /// The group.
        group: GroupId,
        /// Who added this device.
        by: UserId,
        /// Their pseudonym.
        by_name: String,
        /// Whether it is a private conversation with them ([`crate::GroupInfo::private_with`]).
        private: bool,
    },
    /// A message arrived in a group the user has not accepted yet ([`Event::Invited`]): it is
    /// kept, not shown, until they do. Front ends say how many wait.
    MessageWaiting {
        /// The group.
        group: GroupId,
        /// How many messages wait now ([`crate::GroupInfo::waiting`]).
        waiting: usize,
    },
    /// This device was removed from a group (or left it); also reported when a device that was
    /// offline learns of it on its next sync. [`crate::ClientCore::departure`] says by whom.
    Removed {
        /// The group.
        group: GroupId,
        /// When the removal (or leave) happened: the op's claimed time.
        at: Timestamp,
    },
    /// The server refused to sync a group for a reason that will not pass by itself (it does
    /// not know the group, or says this device is not in it). Reported once, by the sync that
    /// first meets it (which fails); later syncs that meet it again do not fail for it, and a
    /// sync that works again ends it. It lasts in [`crate::GroupInfo::sync_refused`], for front
    /// ends to show wherever the group is. Never for a group this device does not hold.
    SyncRefused {
        /// The group.
        group: GroupId,
        /// Why, for people (the server's message and code).
        reason: String,
    },
    /// A person linked or unlinked a device (their identity key, and so their safety number,
    /// stayed the same). For this user: the list of this user's devices changed.
    DevicesChanged {
        /// Whose devices.
        user: UserId,
    },
    /// Someone holds a user's identity key who should not: two different device lists of one
    /// version, or a list made by a device that is no longer listed (PROTOCOL.md §11.14). For
    /// this user: unlink the devices you do not know, or make a new identity.
    IdentityMisuse {
        /// Whose identity key.
        user: UserId,
    },
    /// Another of this person's devices changed their safety plan (`group` `None`) or the
    /// warning topics they hide in `group` (PROTOCOL.md §7.4): read it again.
    OwnSettingsChanged {
        /// The group whose hidden topics changed, or `None` for the safety plan.
        group: Option<GroupId>,
    },
    /// The server refused the device list that names this device's X-Wing key (it moved from
    /// protocol version 1 to 2, PROTOCOL.md §4.7): until a server takes it, the others seal to
    /// this device with X25519 alone, without post-quantum protection. It is tried again when
    /// this user's list changes (another device of theirs published one first, say) and at
    /// each connection. The app may say so where it shows this device.
    PostQuantumKeyRefused {
        /// Why, as a stable code ([`crate::ClientError::code`]: the server's code for a
        /// refusal).
        code: String,
        /// The reason, for logs (the server's own words for a refusal).
        reason: String,
    },
    /// Another device of this user unlinked this one (a verified list without it). Its secrets
    /// are deleted; the application tells the person and deletes the store.
    DeviceUnlinked {
        /// The device that made the list.
        by: DeviceId,
    },
    /// A member's keys changed since this device last saw them: compare safety numbers.
    KeyChanged {
        /// The group where the change appeared.
        group: GroupId,
        /// The member.
        user: UserId,
        /// Their display name.
        display_name: String,
    },
    /// A message failed verification or decryption (forged, altered, replayed) and was dropped.
    MessageRejected(Rejection),
    /// The server served a group-log op that does not verify (for example one the
    /// facilitators did not sign, or a fork of the history this device verified). It was not
    /// applied: the group keeps its last verified state and goes on syncing, so it recovers by
    /// itself once the server serves the valid log. Emitted once per refused op.
    GroupRejected(Rejection),
    /// A member's signed message or sealed key names an epoch this device's verified log has
    /// not reached, and a sync did not bring the ops that lead there: the server may be
    /// withholding a membership change (such as a removal). Until the log catches up, this
    /// device's own messages to the group are held ([`crate::ClientError::Held`]) and no new
    /// sender key is sealed, so nobody who may have been removed can read them.
    GroupBehind {
        /// The group.
        group: GroupId,
        /// The epoch members have been seen to use.
        seen_epoch: u64,
        /// This device's verified epoch.
        log_epoch: u64,
    },
    /// A group that was behind ([`Event::GroupBehind`]) has caught up; held messages are being
    /// sent.
    CaughtUp {
        /// The group.
        group: GroupId,
    },
    /// The server's order of messages contradicts their authors' own: a sender's messages
    /// stored out of the order that sender wrote them in, or a message stored before one its
    /// author had already seen. The message is authentic and shown; only its position is in
    /// doubt (the server alone orders messages: PROTOCOL.md §13).
    OrderWarning(Rejection),
    /// Someone asks to join a group this device facilitates.
    JoinRequest(JoinRequest),
    /// A member reported a message (facilitators only). The text and its author are proven by
    /// message franking.
    Report(ReportInfo),
    /// "I need a facilitator": a member asks for help (facilitators only).
    UrgentRequest(UrgentRequest),
    /// Messages were deleted for everyone (or expired): remove them from view.
    MessagesDeleted {
        /// The group.
        group: GroupId,
        /// The messages.
        messages: Vec<MessageId>,
    },
    /// Moderators put content warnings on a message ([`crate::ClientCore::add_warning`]):
    /// what is hidden may have changed.
    WarningAdded {
        /// The group.
        group: GroupId,
        /// The message.
        message: MessageId,
        /// The message's whole set of warnings after the addition, sorted.
        warnings: Vec<u16>,
    },
    /// A check-in round changed: opened, its prompt arrived, someone answered or passed, or it
    /// was closed ([`crate::ClientCore::rounds`] shows it).
    RoundChanged {
        /// The group.
        group: GroupId,
        /// The round.
        round: RoundId,
    },
    /// A pinned text (the agreement, crisis resources, or a group-work document) arrived or
    /// changed.
    Pinned {
        /// The group.
        group: GroupId,
        /// Which text.
        kind: PinnedKind,
        /// The agreement version (0 for crisis resources).
        version: u32,
    },
    /// A role of this device's user changed.
    RoleChanged {
        /// The group.
        group: GroupId,
        /// The new role.
        role: Role,
    },
    /// Events were left out here: the application did not read them, and the platform's
    /// queue had reached the most it keeps (in the native client, its event queue and
    /// backlog: `ClientConfig::event_backlog`). This many events that came after the ones
    /// before this one are not delivered. Nothing they reported is lost: each was stored
    /// before it was reported, so history, members and statuses show it — re-read what is
    /// shown. Only the notifications are gone (a front end may have missed, say, a join
    /// request it would have popped up). The native client also drops its connection when
    /// this happens and takes nothing new from the server until this is read, so what the
    /// server still has arrives as events again.
    EventsDropped {
        /// How many events were left out.
        count: u64,
    },
    /// The group was read up to message `number` ([`crate::ClientCore::mark_read`], or a post
    /// of this device's user), here or in another view of the same store: its unread count
    /// ([`crate::GroupInfo::unread`]) changed.
    Read {
        /// The group.
        group: GroupId,
        /// The [`ChatMessage::number`] of the newest message now read.
        number: u64,
    },
}

/// A verified report, as facilitators see it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ReportInfo {
    /// The group.
    pub group: GroupId,
    /// The reported message's position as the reporter's client names it. Franking does not
    /// cover it, so a hostile reporter can name any: never show a number from it alone; find
    /// the message by [`Self::message`] ([`crate::ClientCore::message_place`]).
    pub seq: Seq,
    /// The reported message (proven, with its text and author).
    pub message: MessageId,
    /// Who wrote it (proven).
    pub offender: UserId,
    /// Their pseudonym.
    pub offender_name: String,
    /// Who reported it.
    pub reporter: UserId,
    /// Their pseudonym.
    pub reporter_name: String,
    /// The reported text (proven to be what the offender sent).
    pub text: String,
    /// The reporter's reason.
    pub reason: String,
    /// When the reporter's device says it wrote the report (inside the sealed payload the
    /// reporter signed, so the server cannot change it; the reporter could misstate it). A
    /// report queued by an older version, which did not keep it, shows when it was received.
    #[serde(default)]
    pub reported_at: Timestamp,
}

impl std::fmt::Debug for ReportInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReportInfo")
            .field("group", &self.group)
            .field("seq", &self.seq)
            .field("offender", &self.offender)
            .field("reporter", &self.reporter)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for JoinRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinRequest")
            .field("group", &self.group)
            .field("user", &self.user)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

/// "I need a facilitator": a member asks for help. Its `Debug` omits the text.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct UrgentRequest {
    /// The group.
    pub group: GroupId,
    /// Who asks.
    pub user: UserId,
    /// Their pseudonym.
    pub display_name: String,
    /// What they wrote.
    pub text: String,
    /// When this device first received it. The note carries no time of its own (PROTOCOL.md
    /// §7.2): the server cannot deliver it again once received, but it can have held it back.
    #[serde(default)]
    pub received_at: Timestamp,
}

impl std::fmt::Debug for UrgentRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UrgentRequest")
            .field("group", &self.group)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Something waiting for a facilitator's attention, kept until resolved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FacilitatorItem {
    /// A verified report.
    Report(ReportInfo),
    /// An urgent request.
    Urgent(UrgentRequest),
}

/// How this device's membership of a group ended ([`crate::ClientCore::departure`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Departure {
    /// The position in the group log of the op that ended it.
    pub op_seq: u64,
    /// When (the op's claimed time).
    pub at: Timestamp,
    /// True if the user left; false if a facilitator removed them.
    pub left: bool,
    /// Whether they were also banned.
    pub banned: bool,
    /// Who removed them (or the user themselves, for a leave).
    pub by: UserId,
    /// Their pseudonym, if known.
    pub by_name: Option<String>,
}
