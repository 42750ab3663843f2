//! The client's errors: [`ClientError`] for every operation, and [`StoreError`] for the store
//! seam, shared by every backend.

use confide_protocol::GroupId;
use confide_protocol::frames::ErrorCode;

use crate::events::Departure;
use crate::link::TransportError;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
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
    /// The store does not exist yet, or exists when it should not.
    #[error("{0}")]
    State(String),
    /// Another process has this store open (its database is locked): only one may use it.
    #[error("the store in {0} is open in another process")]
    InUse(String),
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
    OpRefused(String),
    /// This device has seen members use an epoch its verified log has not reached (perhaps a
    /// removal the server has not shown it); the message is held and sent once the log has
    /// caught up (see [`crate::Event::GroupBehind`]).
    #[error(
        "held: this device has not yet seen the group's latest membership change; the message \
         is kept and will be sent once it has"
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
    /// A cryptographic or protocol step failed.
    #[error("protocol error: {0}")]
    Protocol(String),
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
    /// The server sent something unexpected.
    #[error("unexpected reply from the server: {0}")]
    Unexpected(String),
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
    /// `profile_in_use`, `store`, `unreachable`, `unknown_group`, `group_tampered`,
    /// `op_refused`, `held`, `not_member`, `removed`, `left`, `bad_invite`,
    /// `agreement_not_received`, `agreement_changed`, `protocol`, `pending`, `closed`,
    /// `invalid`, `unexpected`.
    pub fn code(&self) -> &'static str {
        match self {
            ClientError::Store(StoreError::WrongPassphrase) => "wrong_passphrase",
            ClientError::Store(StoreError::InUse(_)) => "profile_in_use",
            ClientError::Store(_) => "store",
            ClientError::Transport(_) => "unreachable",
            ClientError::Server { code, .. } => code.as_str(),
            ClientError::UnknownGroup => "unknown_group",
            ClientError::GroupTampered(_) => "group_tampered",
            ClientError::OpRefused(_) => "op_refused",
            ClientError::Held => "held",
            ClientError::NotMember => "not_member",
            ClientError::Removed { departure, .. } if departure.left => "left",
            ClientError::Removed { .. } => "removed",
            ClientError::BadInvite(_) => "bad_invite",
            ClientError::AgreementNotReceived { .. } => "agreement_not_received",
            ClientError::AgreementChanged { .. } => "agreement_changed",
            ClientError::Protocol(_) => "protocol",
            ClientError::Pending => "pending",
            ClientError::Closed => "closed",
            ClientError::Invalid(_) => "invalid",
            ClientError::Unexpected(_) => "unexpected",
        }
    }
}

/// A failed cryptographic or protocol step, as a [`ClientError::Protocol`].
pub(crate) fn protocol(e: impl std::fmt::Display) -> ClientError {
    ClientError::Protocol(e.to_string())
}

/// A server's error reply as a [`ClientError::Server`]; any other frame where an error was
/// expected is [`ClientError::Unexpected`].
pub(crate) fn server_error(frame: confide_protocol::frames::ServerFrame) -> ClientError {
    match frame {
        confide_protocol::frames::ServerFrame::Error {
            code,
            message,
            retry_after_ms,
            ..
        } => ClientError::Server {
            code,
            message,
            retry_after_ms,
        },
        other => ClientError::Unexpected(other.type_name().to_string()),
    }
}
