//! What the core's queries return: groups, members, pinned texts, status, the moderation log,
//! and the outcome of a join.

use confide_protocol::group_log::Role;
use confide_protocol::{DeviceId, Epoch, GroupId, Timestamp, UserId};

/// The result of [`crate::ClientCore::join`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinOutcome {
    /// This device is now a member.
    Joined(GroupId),
    /// The request went to the facilitators; [`crate::Event::Joined`] follows if they approve.
    Pending(GroupId),
}

/// A group as this device sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
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
    /// For a private conversation — a group of exactly two members, this device's user and one
    /// other, for which no invite was ever made (what [`crate::ClientCore::open_private`] makes, as does
    /// adding one person to a new group) — the other person. Front ends name it by them
    /// rather than by its id.
    pub private_with: Option<Peer>,
}

/// Another person, as a group's verified log names them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The user.
    pub user: UserId,
    /// Their pseudonym.
    pub display_name: String,
}

/// A member as the verified log lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
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
