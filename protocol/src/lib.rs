//! # confide-protocol
//!
//! The formats and cryptography of Confide, an end-to-end encrypted chat for facilitated
//! peer-support groups. This crate does no I/O, reads no clock and draws no randomness of its
//! own: callers pass the time and a [`rand_core::CryptoRng`] in, which keeps tests and test
//! vectors deterministic and lets the crate compile to WebAssembly unchanged.
//!
//! The main types, by concept (PROTOCOL.md specifies each byte):
//!
//! - [`ids`]: [`DeviceId`], [`UserId`], [`GroupId`], [`Epoch`], [`Seq`] and friends.
//! - [`identity`]: [`DeviceIdentity`] (secret keys), [`DeviceKeys`] (public keys), safety numbers,
//!   the passphrase-encrypted export.
//! - [`seal`]: HPKE sealing of signed payloads to one device ([`seal::SealedPayload`]).
//! - [`sender_key`]: the Sender Keys chain ratchet ([`sender_key::SenderChain`],
//!   [`sender_key::ReceiverChain`]).
//! - [`envelope`]: encrypted, signed, padded group messages with a franking commitment.
//! - [`group_log`]: the signed, hash-chained log of membership and moderation, its policy and
//!   its verifier ([`GroupState`]).
//! - [`group_work`]: the group-work tools' documents: meeting schedules, warning topics, the
//!   resource library, check-in round tags and a person's own safety plan.
//! - [`own_devices`]: updates between one person's own devices outside any group (their
//!   safety plan and hidden topics).
//! - [`report`]: verifiable reports (message franking) for facilitators.
//! - [`frames`]: the JSON frames between client and server.
//! - [`display`]: someone else's text made inert before it is shown (controls, bidirectional and
//!   invisible characters), the one rule of every front end.
//! - [`names`]: which display names look alike (Unicode TR39 confusables), a client rule.
//! - [`policy`]: the rules the server and clients both evaluate, written once: who may post
//!   now, the epoch grace, open invites, retention, sync paging, retryable codes.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod device_list;
pub mod display;
pub mod encoding;
pub mod envelope;
pub mod error;
pub mod frames;
pub mod group_log;
pub mod group_work;
pub mod identity;
pub mod ids;
pub mod link;
pub mod names;
pub mod own_devices;
pub mod page_checks;
pub mod policy;
pub mod primitives;
pub mod report;
pub mod seal;
pub mod sender_key;

pub use error::CryptoError;
pub use frames::{ClientFrame, ErrorCode, FrameError, PROTOCOL_VERSION, ServerFrame};
pub use identity::{DeviceIdentity, DeviceKeys, Signature};
pub use ids::{
    DeviceId, Epoch, EpochRef, GroupId, InviteId, MessageId, OpHash, RequestId, RoundId, Seq,
    Timestamp, UserId,
};

/// A deterministic RNG for tests and vectors: ChaCha20 seeded with `seed` repeated.
#[cfg(test)]
pub(crate) fn test_rng(seed: u8) -> chacha20::ChaCha20Rng {
    use rand_core::SeedableRng;
    chacha20::ChaCha20Rng::from_seed([seed; 32])
}

pub use group_log::{
    GroupState, InviteSecret, LogError, MemberEntry, Op, OpBody, Role, SignedOp, verify_log,
};
