//! What the core's queries return: groups, members, pinned texts, status, the moderation log,
//! and the outcome of a join.

use confide_protocol::group_log::Role;
use confide_protocol::{DeviceId, Epoch, GroupId, Seq, Timestamp, UserId};

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
