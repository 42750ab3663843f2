//! What the core's queries return: groups, members, pinned texts, status, the moderation log,
//! and the outcome of a join.

use confide_protocol::group_log::Role;
use confide_protocol::group_work::{MeetingSchedule, ResourceLibrary, WarningTopics};
use confide_protocol::ids::RoundId;
use confide_protocol::{DeviceId, Epoch, GroupId, MessageId, Seq, Timestamp, UserId};

/// The result of [`crate::ClientCore::join`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum JoinOutcome {
    /// This device is now a member.
    Joined(GroupId),
    /// The request went to the facilitators; [`crate::Event::Joined`] follows if they approve.
    Pending(GroupId),
}

/// A group as this device sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupInfo {
    /// The group.
    pub group: GroupId,
    /// Whether this device is a member.
    pub member: bool,
    /// This device's user's role.
    pub role: Option<Role>,
    /// Number of members.
    pub members: usize,
    /// The current epoch.
    pub epoch: Epoch,
    /// Why the group's log was rejected, if it was.
    pub tampered: Option<String>,
    /// Someone added this device to the group and the user has not accepted it yet
    /// ([`crate::ClientCore::accept_group`]): nothing of it is shown until then.
    pub invited: bool,
    /// While [`Self::invited`]: how many messages have arrived and wait for the user to accept
    /// the group (0 otherwise).
    pub waiting: usize,
    /// Messages of others stored after the person's read marker and still stored
    /// ([`crate::ClientCore::mark_read`]; a post of the user's own moves it): what a front end
    /// shows as "3 new". 0 while [`Self::invited`].
    pub unread: usize,
    /// For a private conversation — a group of exactly two members, this device's user and one
    /// other, that never had anyone else in it and for which no invite was ever made (what
    /// [`crate::ClientCore::open_private`] makes, as does adding one person to a new group) — the
    /// other person. Front ends name it by them rather than by its id, and say whether they are
    /// someone from the user's groups ([`Peer::shared_groups`], [`Peer::looks_like`]).
    pub private_with: Option<Peer>,
    /// The server refuses to serve this group for a reason that does not pass by itself (it
    /// no longer knows the group, or says this device is not in it), since the date given:
    /// nothing new arrives, and what is shown may be long out of date. Stays until a sync of
    /// the group works again; front ends show it wherever the group is shown
    /// ([`crate::Event::SyncRefused`] is said only once).
    pub sync_refused: Option<SyncRefusal>,
    /// Whether every device of every current member, as the verified log lists them, has an
    /// X-Wing key, so that everything sealed in the group (sender keys above all) is sealed
    /// with the post-quantum hybrid (PROTOCOL.md §4.1). False while a member's device of
    /// protocol version 1 has not published one yet (§4.7): until then what is sealed to it
    /// uses X25519 alone.
    pub post_quantum: bool,
}

/// A lasting refusal of a group's sync ([`GroupInfo::sync_refused`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "test-hooks", derive(Default))]
#[non_exhaustive]
pub struct SyncRefusal {
    /// Why ([`crate::ClientError::code`]: the server's code, such as `no_such_group` or
    /// `not_member`, or `verification` for a log that cannot be the group's; `protocol` in
    /// refusals stored by earlier versions).
    pub code: String,
    /// When this device first met it (`None` for a refusal recorded by an older version).
    pub since: Option<Timestamp>,
}

/// Where a message is on this device ([`crate::ClientCore::message_place`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MessagePlace {
    /// The position this device processed it at.
    pub seq: Seq,
    /// The number people were shown for it ([`crate::ChatMessage::number`]), also once it was
    /// deleted or expired; `None` if it was never shown here (refused, say).
    pub number: Option<u64>,
}

/// Another person, as a group's verified log names them.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Peer {
    /// The user.
    pub user: UserId,
    /// Their pseudonym.
    pub display_name: String,
    /// The user's other groups (accepted, this device still in them) in which this same person
    /// — the same user id with the same device keys — is a member: empty when they are in none of them, a stranger whatever their name says.
    pub shared_groups: Vec<GroupId>,
    /// Members of the user's other groups — other people — whose display names look like this
    /// person's (Unicode confusables, [`confide_protocol::names`]), each with its group:
    /// someone may be passing for them. Warn before accepting.
    pub looks_like: Vec<(String, GroupId)>,
}

/// A member as the verified log lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemberInfo {
    /// The user.
    pub user: UserId,
    /// Their pseudonym.
    pub display_name: String,
    /// Their role.
    pub role: Role,
    /// Their devices.
    pub devices: Vec<DeviceId>,
    /// Until when they are muted, if they are.
    pub muted_until: Option<Timestamp>,
    /// The other members whose display names look like this one's (Unicode confusables,
    /// [`confide_protocol::names`]): show a warning next to the name. Empty when none does.
    pub looks_like: Vec<String>,
}

/// The group agreement as this device holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "test-hooks", derive(Default))]
#[non_exhaustive]
pub struct AgreementInfo {
    /// Its version.
    pub version: u32,
    /// Its text (checked against the commitment in the signed log).
    pub text: String,
    /// Whether this device's user has accepted this version.
    pub accepted: bool,
}

/// The texts pinned to a group.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "test-hooks", derive(Default))]
#[non_exhaustive]
pub struct PinnedInfo {
    /// The current agreement, once its text has arrived.
    pub agreement: Option<AgreementInfo>,
    /// The current agreement version in the log (its text may still be on its way).
    pub agreement_version: Option<u32>,
    /// "If you are in crisis" resources, readable at any time (also while the chat is locked).
    pub crisis_resources: Option<String>,
    /// The group's meeting schedule, once its text arrived and matches the log.
    pub meetings: Option<MeetingSchedule>,
    /// The group's content-warning topics, once their text arrived and matches the log.
    pub warning_topics: Option<WarningTopics>,
    /// The group's resource library, once its text arrived and matches the log.
    pub resources: Option<ResourceLibrary>,
    /// The group-work documents the log names a version of whose text this device does not
    /// hold (on its way, or not a valid document here): show that they are coming, never an
    /// older version as if current (PROTOCOL.md §6.9); and do not edit such a document from
    /// what is held, which would overwrite the newer version.
    pub documents_pending: Vec<confide_protocol::envelope::PinnedKind>,
}

/// A check-in round as this device sees it ([`crate::ClientCore::rounds`]): what the verified
/// log says of it (who opened it, when it ends) and the honoured messages of it (its prompt,
/// one answer or pass per person). Its `Debug` shows no text.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RoundView {
    /// The round.
    pub id: RoundId,
    /// Who opened it (a moderator).
    pub opened_by: UserId,
    /// Their pseudonym as the log names them now (text they chose: show it as text).
    pub opened_by_name: String,
    /// When it was opened (the op's time).
    pub opened_at: Timestamp,
    /// When it closes by itself, if it does.
    pub closes_at: Option<Timestamp>,
    /// When it ended, by hand or at its time; `None` while it can still be open.
    pub ended_at: Option<Timestamp>,
    /// Whether it is open now, by this device's clock.
    pub open: bool,
    /// The prompt, once it arrived (and while its message is kept: a prompt deleted for
    /// everyone, or past retention, is gone).
    pub prompt: Option<String>,
    /// The prompt message's content warnings ([`crate::ChatMessage::warnings`]).
    pub prompt_warnings: Vec<u16>,
    /// Whether the prompt is hidden on this device ([`crate::ChatMessage::hidden`]): show its
    /// warnings, not its text, until the person asks.
    pub prompt_hidden: bool,
    /// The turn order the prompt gave, if it gave one.
    pub order: Option<Vec<UserId>>,
    /// One per person who answered or passed (their latest counts): those in the turn order
    /// first, in that order, then the others in the order they answered.
    pub answers: Vec<RoundAnswer>,
    /// Whether this device's user has answered or passed.
    pub answered: bool,
}

/// One person's answer (or pass) in a check-in round ([`RoundView::answers`]). Its `Debug`
/// shows no text.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RoundAnswer {
    /// Who.
    pub user: UserId,
    /// Their pseudonym as the message names them (text they chose: show it as text).
    pub name: String,
    /// The message that carries it.
    pub message: MessageId,
    /// That message's number ([`crate::ChatMessage::number`]).
    pub number: u64,
    /// The answer; empty for a pass.
    pub text: String,
    /// They passed.
    pub passed: bool,
    /// When they wrote it (their clock).
    pub sent_at: Timestamp,
    /// The answer message's content warnings ([`crate::ChatMessage::warnings`]).
    pub warnings: Vec<u16>,
    /// Whether the answer is hidden on this device ([`crate::ChatMessage::hidden`]): show its
    /// warnings, not its text, until the person asks.
    pub hidden: bool,
}

impl std::fmt::Debug for RoundView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoundView")
            .field("id", &self.id)
            .field("open", &self.open)
            .field("answers", &self.answers)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for RoundAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoundAnswer")
            .field("user", &self.user)
            .field("passed", &self.passed)
            .field("hidden", &self.hidden)
            .finish_non_exhaustive()
    }
}

/// What this device's user may do in a group right now, and why not.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// The user's role (`None`: not a member).
    pub role: Option<Role>,
    /// Until when the user is muted.
    pub muted_until: Option<Timestamp>,
    /// Whether the chat is locked by hand.
    pub locked: bool,
    /// Whether the chat is inside its open hours (always true without a schedule).
    pub open_now: bool,
    /// Slow mode interval in seconds (0: off).
    pub slow_mode_seconds: u32,
    /// The agreement version the user must accept before posting, if any.
    pub agreement_pending: Option<u32>,
}

/// One line of the moderation log.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct ModerationEntry {
    /// Position in the group log.
    pub op_seq: u64,
    /// When the author says it happened.
    pub at: Timestamp,
    /// What happened (the op type).
    pub action: String,
    /// Who did it.
    pub author: Option<UserId>,
    /// Their pseudonym.
    pub author_name: Option<String>,
    /// Whom it concerned.
    pub target: Option<UserId>,
    /// Their pseudonym.
    pub target_name: Option<String>,
    /// Non-content details (mute end, ban, role, interval, …).
    pub details: serde_json::Value,
    /// The reason, if this device received it (facilitators only).
    pub reason: Option<String>,
}

/// Names a message this device is keeping to send later ([`HeldMessage::id`]): stable while it
/// waits, so that a front end can show it and act on it ([`crate::ClientCore::send_held_anyway`],
/// [`crate::ClientCore::discard_held`]). Not a [`confide_protocol::MessageId`]: a message has
/// none until it is sealed.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct HeldId(pub [u8; 16]);

impl HeldId {
    /// Lower-case hex, as front ends pass it around.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The id from [`Self::to_hex`]'s form; `None` for anything else.
    pub fn from_hex(text: &str) -> Option<HeldId> {
        let bytes = hex::decode(text).ok()?;
        <[u8; 16]>::try_from(bytes.as_slice()).ok().map(HeldId)
    }
}

/// Someone who joined a group after a message waiting to be sent was written
/// ([`HeldMessage::added`], [`crate::Event::HeldNeedsConfirm`]), as the verified log names them.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AddedMember {
    /// The user.
    pub user: UserId,
    /// Their pseudonym (text they chose: show it as text).
    pub display_name: String,
    /// Not a new person: someone who was there, now with a device that was not (removed and
    /// added back with other keys, say), which would read the message too.
    pub new_device: bool,
}

/// A message of this device's user that is not sent yet ([`crate::ClientCore::held`]): written
/// while offline or while the group's log was behind (held), or handed to the server and not
/// acknowledged yet (sealed).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeldMessage {
    /// Its id while it waits.
    pub id: HeldId,
    /// What the user wrote.
    pub text: String,
    /// When they wrote it (this device's clock).
    pub written_at: Timestamp,
    /// Already encrypted and handed to the server, waiting for its acknowledgement: it goes
    /// out as it is, to the members it was sealed for, and can no longer be discarded.
    pub sealed: bool,
    /// People joined the group after it was written: it is not sent until the user says so
    /// ([`crate::ClientCore::send_held_anyway`]) or discards it
    /// ([`crate::ClientCore::discard_held`]).
    pub needs_confirm: bool,
    /// While [`Self::needs_confirm`]: who joined since it was written (empty when this device
    /// cannot tell who, only that the group changed).
    pub added: Vec<AddedMember>,
    /// It waits behind an earlier message of the group that waits for the user (messages go
    /// in the order they were written).
    pub behind_earlier: bool,
    /// The group's epoch [`Self::added`] was worked out against: give it back to
    /// [`crate::ClientCore::send_held_anyway`], which refuses if the group changed since, so
    /// that the user agrees to exactly the people they were shown.
    pub epoch: u64,
}

impl std::fmt::Debug for HeldMessage {
    /// Without the text.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldMessage")
            .field("id", &self.id)
            .field("written_at", &self.written_at)
            .field("sealed", &self.sealed)
            .field("needs_confirm", &self.needs_confirm)
            .field("added", &self.added)
            .field("behind_earlier", &self.behind_earlier)
            .finish()
    }
}
