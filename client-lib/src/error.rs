//! The client's error type.

use confide_protocol::frames::ErrorCode;

use crate::store::StoreError;
use crate::transport::TransportError;

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
    /// This device is not (or no longer) a member of the group.
    #[error("this device is not a member of the group")]
    NotMember,
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

impl ClientError {
    /// The server's error code, if this is a refusal by the server.
    pub fn server_code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }
}

pub(crate) fn protocol(e: impl std::fmt::Display) -> ClientError {
    ClientError::Protocol(e.to_string())
}
