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
    /// The group's log failed verification; nothing more is done in it until it is resolved.
    #[error("the group's log failed verification ({0}); the group is frozen on this device")]
    GroupTampered(String),
    /// This device is not (or no longer) a member of the group.
    #[error("this device is not a member of the group")]
    NotMember,
    /// The invite is malformed, does not match the group's log, or has expired.
    #[error("invalid invite: {0}")]
    BadInvite(String),
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
