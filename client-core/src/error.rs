//! The client's errors: [`ClientError`] for every operation, and [`StoreError`] for the store
//! seam, shared by every backend. What failed is told by the variant, carrying the protocol
//! crate's own error where there is one ([`VerificationError`], [`EncryptError`],
//! [`ClientError::NotAllowed`]); [`ClientError::code`] names each for scripts. A protocol error a variant carries is part of its message, so it is not repeated
//! as [`std::error::Error::source`] (an error chain printed in full would say it twice).
//!
//! The messages are for people. None holds a secret or a message's text: the protocol errors
//! they show name lengths, positions, versions and ids, never contents.

use std::time::Duration;

use confide_protocol::envelope::EnvelopeError;
use confide_protocol::frames::{ErrorCode, ServerFrame};
use confide_protocol::group_log::LogError;
use confide_protocol::report::ReportError;
use confide_protocol::seal::SealError;
use confide_protocol::{GroupId, UserId};

use crate::events::Departure;
use crate::link::TransportError;

/// Why the store failed.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The passphrase does not open this store.
    #[error("wrong passphrase for this store")]
    WrongPassphrase,
    /// The database could not be opened, read or written.
    #[error("local store error: {0}")]
    Db(String),
    /// A stored value could not be decrypted or decoded: the store is damaged or was altered.
    #[error("local store value {tree}/{key} is damaged or was altered")]
    Corrupt {
        /// Tree.
        tree: String,
        /// Key, hex.
        key: String,
    },
    /// A value every set-up store holds is not there: the store was never set up
    /// ([`crate::profile::create`]), or it is damaged.
    #[error("local store value {tree}/{key} is missing: the store was never set up, or is damaged")]
    Missing {
        /// Tree.
        tree: String,
        /// Key, hex.
        key: String,
    },
    /// The store does not exist yet, or exists when it should not.
    #[error("{0}")]
    State(String),
    /// Another process has this store open (its database is locked): only one may use it.
    #[error("the store in {0} is open in another process")]
    InUse(String),
    /// Another device of this person unlinked this one (a verified device list without it):
    /// its keys were deleted, and the store can be removed.
    #[error("this device was unlinked from another of your devices; its keys are deleted")]
    Unlinked,
    /// This user's device list names this device with another X-Wing key than the store
    /// holds, or with one while the store holds none: the store (or a backup of it) is from
    /// before the device moved to protocol version 2, and what others seal to this device
    /// cannot be opened with it. A new key cannot replace a listed one (PROTOCOL.md §4.7):
    /// link this device again from another of the person's devices (or set it up anew).
    #[error(
        "this device's post-quantum key is not in its store (restored from before an update?): \
         link this device again from another of your devices"
    )]
    RelinkNeeded,
}

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The local store failed (including a wrong passphrase).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The connection to the server failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The server did not answer in time; the connection was dropped (the next operation
    /// connects again). Whether a request that timed out took effect on the server is
    /// unknown: what this device sends again is built so that doing it twice is harmless.
    #[error("timed out: the server did not answer {waiting_for} within {after:?}")]
    Timeout {
        /// What was waited for: the frame type of the request (`post`, `sync`,
        /// `append_op`, …), or `connect` for the connection and the server's greeting.
        waiting_for: &'static str,
        /// How long it was waited for.
        after: Duration,
    },
    /// The server refused the request; `code` is stable, `message` is for people.
    #[error("the server refused: {message} ({})", code.as_str())]
    Server {
        /// The stable error code.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
        /// When to retry, if the server said.
        retry_after_ms: Option<u64>,
    },
    /// The group is not known to this device.
    #[error("unknown group")]
    UnknownGroup,
    /// The group's log as stored on this device no longer verifies (a damaged store): nothing
    /// more is done in that group on this device.
    #[error("the group's stored log failed verification ({0}); the group is frozen on this device")]
    GroupTampered(String),
    /// The server served an op that does not verify; it was refused and the group keeps its
    /// last verified state (see [`crate::Event::GroupRejected`]).
    #[error("an op the server served was refused: {0}")]
    OpRefused(LogError),
    /// Something the server served, or this device's own store, failed a check: a signature,
    /// a seal, a decryption, the group log's rules, or the position of a message. Nothing of
    /// it was accepted.
    #[error(transparent)]
    Verification(#[from] VerificationError),
    /// The group's rules, as this device's verified log has them, do not allow this change
    /// (or it would change nothing); nothing was sent. The source says which rule.
    #[error("not allowed: {0}")]
    NotAllowed(LogError),
    /// What the operation names is not on this device; nothing was done.
    #[error(transparent)]
    NotFound(#[from] Missing),
    /// The message is kept (encrypted in the store) and sent later, by itself: the server
    /// could not be reached (offline, or — in the native client — the application left its
    /// events unread until their backlog overflowed), earlier messages of the group still
    /// wait, the server asked it to wait a moment (a passing refusal of its sender key), or
    /// this device has seen members use an epoch its verified log has not reached (perhaps a
    /// removal the server has not shown it), in which case it is sent once the log has caught
    /// up (see [`crate::Event::GroupBehind`]). The text names the causes: the caller cannot
    /// tell them apart from the error, and telling a member who is merely offline that the
    /// group changed would be false.
    #[error(
        "held: the message is kept and will be sent later: the server cannot be reached just \
         now or asked this device to wait a moment, or this device has not yet seen the \
         group's latest membership change"
    )]
    Held,
    /// This device is not a member of the group (it never was, or its join request is still
    /// waiting).
    #[error("this device is not a member of the group")]
    NotMember,
    /// This device is no longer in the group: a facilitator removed it (or banned it), or its
    /// user left. Nothing can be done in the group any more; what was said while it was a
    /// member can still be read.
    #[error("{}", removed_text(.departure))]
    Removed {
        /// The group.
        group: GroupId,
        /// How and when it ended ([`crate::ClientCore::departure`]).
        departure: Departure,
    },
    /// The invite is malformed, does not match the group's log, or has expired.
    #[error("invalid invite: {0}")]
    BadInvite(String),
    /// The agreement's text has not arrived on this device yet, so it cannot have been shown:
    /// nothing was accepted.
    #[error(
        "the text of agreement version {version} has not arrived on this device yet: sync, read it, then accept"
    )]
    AgreementNotReceived {
        /// The current version.
        version: u32,
    },
    /// The agreement changed after the version that was shown: nothing was accepted.
    #[error(
        "the group agreement is now version {current}, not the version {shown} that was shown: read it again"
    )]
    AgreementChanged {
        /// The version that was shown (and would have been accepted).
        shown: u32,
        /// The current version.
        current: u32,
    },
    /// This device could not encrypt or seal what it was sending; nothing was sent.
    #[error(transparent)]
    Encrypt(#[from] EncryptError),
    /// A value could not be encoded as JSON (to be encrypted, or exported); nothing was sent.
    #[error("could not encode: {0}")]
    Encode(serde_json::Error),
    /// The message was encrypted and handed to the server, but the connection failed before
    /// the server acknowledged it, or the server could not take it for a passing reason (its
    /// disk, a restart, a rate limit). It is kept and sent again when the connection returns or
    /// the server can take it; [`crate::Event::Sent`] or [`crate::Event::SendFailed`] reports
    /// the outcome.
    #[error("not acknowledged yet: the message is kept and will be sent again")]
    Pending,
    /// The client has been shut down.
    #[error("the client has shut down")]
    Closed,
    /// An argument was not acceptable (the message says what to change); nothing was done.
    #[error("{0}")]
    Invalid(String),
    /// The server answered a request with a frame of another type than the request calls
    /// for (and not an `error`): a server fault.
    #[error("unexpected reply from the server: expected {expected}, got {got}")]
    UnexpectedReply {
        /// The frame type the request calls for.
        expected: &'static str,
        /// The frame type that came.
        got: &'static str,
    },
    /// The server speaks another protocol version than this client: one of them must be
    /// updated. Nothing was sent.
    #[error(
        "the server speaks protocol version {version}, this client version {}: one of them must \
         be updated",
        confide_protocol::frames::PROTOCOL_VERSION
    )]
    IncompatibleServer {
        /// The server's protocol version.
        version: u16,
    },
    /// The server's sync of a group stopped moving forward (a page that advanced neither the
    /// log nor the messages): a server fault. What came so far is kept; a later sync asks
    /// again.
    #[error("the server's sync of the group made no progress")]
    SyncStalled {
        /// The group.
        group: GroupId,
    },
    /// The invite cannot be used: the group's log does not know it, or it was revoked, is used
    /// up or has expired. Nothing was sent; the person needs a new invite.
    #[error("{0}")]
    InviteUnusable(InviteUnusable),
    /// The group changed between showing the user who a held message would now reach and
    /// their answer ([`crate::ClientCore::send_held_anyway`]): ask again, with who is there now.
    #[error(
        "the group changed since you were asked: look at who would read it now, then answer again"
    )]
    ChangedSinceAsked,
    /// Linking, unlinking or using a device list failed (PROTOCOL.md §3.6–3.8); `code` is
    /// stable (`link_mismatch`, `link_bad_code`, `link_bad_bundle`, `too_many_devices`,
    /// `last_device`, `unknown_device`, `identity_changed`, `stale_device_list`, a list error
    /// code, …), `reason` is for people.
    #[error("{reason}")]
    LinkFailed {
        /// Stable code.
        code: &'static str,
        /// For people.
        reason: String,
    },
}

/// What failed a check ([`ClientError::Verification`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerificationError {
    /// An op of a group's log: its signature, its chain, or the log's rules.
    #[error("the group's log does not verify: {0}")]
    Log(LogError),
    /// A message envelope: its signature, its decryption, its padding or its sender key.
    #[error("the message does not verify: {0}")]
    Envelope(EnvelopeError),
    /// The server put a message at a position (`seq`) of the group where another message is,
    /// or was, on this device. It is not stored there: a position names one message.
    #[error(
        "the server gave a message position {seq}, where another message is (or was) on this \
         device"
    )]
    PositionTaken {
        /// The position.
        seq: u64,
    },
    /// Two groups this device accepted list different keys for the same user: in one of them
    /// someone else uses their user id and name, so there is no one safety number to compare
    /// (PROTOCOL.md §3.5).
    #[error(
        "that user's keys differ between your groups {first} and {second}: one of them is \
         someone else using their name; compare safety numbers in person before trusting either"
    )]
    KeysDiffer {
        /// The user.
        user: UserId,
        /// One group.
        first: GroupId,
        /// The other group, listing other keys.
        second: GroupId,
    },
}

/// Why this device could not encrypt or seal what it was sending ([`ClientError::Encrypt`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncryptError {
    /// A message could not be encrypted under this device's sender key (its body is too
    /// large, or the key's chain is used up).
    #[error("could not encrypt the message: {0}")]
    Envelope(EnvelopeError),
    /// A payload (a sender key, a join request, a note) could not be sealed to a device.
    #[error("could not seal to a device: {0}")]
    Seal(SealError),
    /// A report could not be sealed to the facilitators.
    #[error("could not seal the report: {0}")]
    Report(ReportError),
}

/// What was not found ([`ClientError::NotFound`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Missing {
    /// No message received at that position of the group is on this device (to report).
    #[error("no received message with that number to report")]
    Message {
        /// The position asked for.
        seq: u64,
    },
    /// No item of the facilitator queue has that id.
    #[error("unknown item")]
    QueueItem,
    /// This device holds no key for that sender and epoch, so it cannot open the message.
    #[error("this device holds no key for that sender and epoch")]
    SenderKey,
    /// No join request from that user is waiting in the group.
    #[error("no pending join request from that user")]
    JoinRequest {
        /// The user.
        user: UserId,
    },
    /// That user is not a member of the group.
    #[error("that user is not a member of the group")]
    Member {
        /// The user.
        user: UserId,
    },
    /// This device shares no group with that user, so it has no key of theirs to compare.
    #[error("no group shared with that user")]
    SharedGroup {
        /// The user.
        user: UserId,
    },
    /// The group has no agreement to accept.
    #[error("the group has no agreement")]
    Agreement,
    /// The group has no facilitator (besides this device's user) to report to.
    #[error("the group has no other facilitator to report to")]
    Facilitator,
    /// No message waiting to be sent (held: [`crate::ClientCore::held`]) has that id in the
    /// group: it was sent, discarded or never there.
    #[error("no message waiting to be sent has that id (it may have been sent already)")]
    HeldMessage,
}

/// [`ClientError::Removed`] for people (the group's name is the front end's to add).
fn removed_text(d: &Departure) -> &'static str {
    match (d.left, d.banned) {
        (true, _) => "you left this group",
        (false, true) => "you were removed and banned from this group",
        (false, false) => "you were removed from this group",
    }
}

impl ClientError {
    /// The server's error code, if this is a refusal by the server.
    pub fn server_code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// A stable, machine-readable name for what went wrong, for scripts and front ends (the
    /// message is for people and may change): the server's code for a refusal
    /// ([`ErrorCode::as_str`], e.g. `muted`), otherwise one of `wrong_passphrase`,
    /// `profile_in_use`, `unlinked`, `relink_needed` ([`StoreError::RelinkNeeded`]), `store`, `unreachable`, `timeout`, `unknown_group`, `group_tampered`,
    /// `op_refused`, `verification`, `not_allowed`, `not_found`, `held`, `not_member`,
    /// `removed`, `left`, `bad_invite`, `agreement_not_received`, `agreement_changed`,
    /// `encrypt`, `encode`, `pending`, `closed`, `invalid`, `unexpected` (a reply of the wrong
    /// type), `incompatible_server`, `sync_stalled`, and for an invite that cannot be used
    /// ([`ClientError::InviteUnusable`]) `invite_unknown`, `invite_revoked`, `invite_used_up`,
    /// `invite_expired` (the last three as the server's codes for the same refusals).
    pub fn code(&self) -> &'static str {
        match self {
            ClientError::Store(StoreError::WrongPassphrase) => "wrong_passphrase",
            ClientError::Store(StoreError::InUse(_)) => "profile_in_use",
            // Not the server's `device_unlinked` (which alone proves nothing, §3.8): this one
            // means the core verified the list that dropped this device and deleted its keys.
            ClientError::Store(StoreError::Unlinked) => "unlinked",
            ClientError::Store(StoreError::RelinkNeeded) => "relink_needed",
            ClientError::Store(_) => "store",
            ClientError::Transport(_) => "unreachable",
            ClientError::Timeout { .. } => "timeout",
            ClientError::Server { code, .. } => code.as_str(),
            ClientError::UnknownGroup => "unknown_group",
            ClientError::GroupTampered(_) => "group_tampered",
            ClientError::OpRefused(_) => "op_refused",
            ClientError::Verification(_) => "verification",
            ClientError::NotAllowed(_) => "not_allowed",
            ClientError::NotFound(_) => "not_found",
            ClientError::Held => "held",
            ClientError::NotMember => "not_member",
            ClientError::Removed { departure, .. } if departure.left => "left",
            ClientError::Removed { .. } => "removed",
            ClientError::BadInvite(_) => "bad_invite",
            ClientError::AgreementNotReceived { .. } => "agreement_not_received",
            ClientError::AgreementChanged { .. } => "agreement_changed",
            ClientError::Encrypt(_) => "encrypt",
            ClientError::Encode(_) => "encode",
            ClientError::Pending => "pending",
            ClientError::Closed => "closed",
            ClientError::Invalid(_) => "invalid",
            ClientError::UnexpectedReply { .. } => "unexpected",
            ClientError::IncompatibleServer { .. } => "incompatible_server",
            ClientError::SyncStalled { .. } => "sync_stalled",
            ClientError::InviteUnusable(why) => why.code(),
            ClientError::ChangedSinceAsked => "changed_since_asked",
            ClientError::LinkFailed { code, .. } => code,
        }
    }
}

/// The reply `frame` to a request that calls for an `expected` frame, as an error: the
/// server's refusal if it is an `error` frame, otherwise [`ClientError::UnexpectedReply`].
pub(crate) fn unexpected_reply(frame: ServerFrame, expected: &'static str) -> ClientError {
    match frame {
        ServerFrame::Error {
            code,
            message,
            retry_after_ms,
            ..
        } => ClientError::Server {
            code,
            message,
            retry_after_ms,
        },
        other => ClientError::UnexpectedReply {
            expected,
            got: other.type_name(),
        },
    }
}

/// Why an invite cannot be used ([`ClientError::InviteUnusable`]), by the group's verified log
/// or by the server's refusal to show the log to its holder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InviteUnusable {
    /// The group's log has no such invite, or the server knows no such group: the link is
    /// wrong, or for another server.
    #[error(
        "this invite is not known to the group: check the link, or ask a facilitator for a new one"
    )]
    Unknown,
    /// A facilitator revoked it.
    #[error("this invite was revoked: ask a facilitator for a new one")]
    Revoked,
    /// As many people joined with it as it allows.
    #[error("this invite has been used up: ask a facilitator for a new one")]
    UsedUp,
    /// Its time ran out.
    #[error("this invite has expired: ask a facilitator for a new one")]
    Expired,
}

impl InviteUnusable {
    /// Its stable code: `invite_unknown`, `invite_revoked`, `invite_used_up` or
    /// `invite_expired`.
    pub fn code(self) -> &'static str {
        match self {
            InviteUnusable::Unknown => "invite_unknown",
            InviteUnusable::Revoked => "invite_revoked",
            InviteUnusable::UsedUp => "invite_used_up",
            InviteUnusable::Expired => "invite_expired",
        }
    }

    /// The server's refusal to show an invite holder the group's log, as the reason, if it is
    /// one: `no_such_group` and `not_member` (the invite is not in the log) are
    /// [`InviteUnusable::Unknown`].
    pub(crate) fn of_refusal(code: ErrorCode) -> Option<InviteUnusable> {
        Some(match code {
            ErrorCode::NoSuchGroup | ErrorCode::NotMember => InviteUnusable::Unknown,
            ErrorCode::InviteRevoked => InviteUnusable::Revoked,
            ErrorCode::InviteUsedUp => InviteUnusable::UsedUp,
            ErrorCode::InviteExpired => InviteUnusable::Expired,
            _ => return None,
        })
    }
}

impl From<confide_protocol::group_log::InviteProblem> for InviteUnusable {
    fn from(problem: confide_protocol::group_log::InviteProblem) -> InviteUnusable {
        use confide_protocol::group_log::InviteProblem;
        match problem {
            InviteProblem::Revoked => InviteUnusable::Revoked,
            InviteProblem::UsedUp => InviteUnusable::UsedUp,
            InviteProblem::Expired => InviteUnusable::Expired,
        }
    }
}
