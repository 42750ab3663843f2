//! Identifiers and small newtypes shared by every crate.
//!
//! Ids that name keys or random values are fixed-size byte arrays carried as base64 on the wire;
//! counters are plain JSON numbers. Each is its own type so that a `GroupId` can never be passed
//! where a `UserId` is expected.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::time::Duration;

use crate::encoding::{b64_array, b64_encode};

macro_rules! byte_id {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(#[serde(with = "b64_array")] pub [u8; $len]);

        impl $name {
            /// Length of this id in bytes.
            pub const LEN: usize = $len;

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// A fresh random id from the caller's randomness.
            pub fn random(rng: &mut impl rand_core::CryptoRng) -> Self {
                let mut bytes = [0u8; $len];
                rng.fill_bytes(&mut bytes);
                Self(bytes)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&b64_encode(&self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), b64_encode(&self.0))
            }
        }
    };
}

byte_id!(
    /// A device: the device's Ed25519 identity public key itself, so that every signature can be
    /// checked against the id without a lookup the server could falsify.
    DeviceId,
    32
);
byte_id!(
    /// A user (a person), who holds one or more devices. Random, chosen when the user's first
    /// device registers; carries no personal data.
    UserId,
    16
);
byte_id!(
    /// A group, chosen at random by its creator and fixed by the genesis op.
    GroupId,
    16
);
byte_id!(
    /// An invite: the Ed25519 public key of the invite. Its secret half travels only inside the
    /// invite link, so the server, which sees the id, cannot use the invite.
    InviteId,
    32
);
byte_id!(
    /// The SHA-256 hash of a group-log op (see [`crate::group_log`]), chaining each op to the one
    /// before it.
    OpHash,
    32
);
byte_id!(
    /// A message, derived from its envelope header (see [`crate::envelope::Envelope::message_id`]);
    /// the server can compute it without reading the message.
    MessageId,
    16
);

byte_id!(
    /// A check-in round, chosen at random by the moderator who opens it (`open_round`).
    RoundId,
    16
);

impl OpHash {
    /// The `prev` of a genesis op: 32 zero bytes.
    pub const ZERO: OpHash = OpHash([0u8; 32]);
}

impl DeviceId {
    /// A short, stable label for logs and debugging: the first 8 bytes of SHA-256 of the key,
    /// hex. Never a substitute for the full id or for a safety number.
    pub fn short(&self) -> String {
        let digest = Sha256::digest(self.0);
        hex::encode(&digest[..8])
    }
}

/// A group epoch. Every membership change, and every `rekey`, starts a new one; sender keys belong
/// to one epoch.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Epoch(pub u64);

impl Epoch {
    /// The epoch after this one.
    pub fn next(self) -> Epoch {
        Epoch(self.0.saturating_add(1))
    }
}

/// An epoch named both by its number and by the hash of the group-log op that started it (the
/// genesis op for epoch 0). Envelopes and sealed payloads carry both, so a message or key made
/// on one branch of a forked log is rejected on the other, even if the numbers agree.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct EpochRef {
    /// The epoch number.
    pub epoch: Epoch,
    /// Hash of the op that started it.
    pub hash: OpHash,
}

/// A per-group sequence number that the server assigns to each stored message, starting at 1.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Seq(pub u64);

/// Milliseconds since the Unix epoch, as claimed by whoever wrote the value. The protocol crate
/// has no clock: callers pass the time in.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

/// `d` in whole milliseconds, saturating at `u64::MAX` (about 584 million years) instead of
/// wrapping: the one conversion from [`Duration`] to the milliseconds the wire carries
/// (timestamps, `retry_after_ms`, retention periods).
pub fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Timestamp {
    /// The time `since_unix_epoch` after 1970-01-01T00:00:00Z, in whole milliseconds: what a
    /// caller with a clock passes in (`SystemTime::now().duration_since(UNIX_EPOCH)` natively,
    /// `Date.now()` in a browser). Saturates rather than wraps.
    pub fn from_unix_duration(since_unix_epoch: Duration) -> Timestamp {
        Timestamp(duration_ms(since_unix_epoch))
    }

    /// `d` later (an invite's `expires_at`, a mute's `until`), saturating at the largest
    /// timestamp: a huge duration means "practically never", not a time in the past.
    pub fn saturating_add(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(duration_ms(d)))
    }

    /// `d` earlier (a retention cutoff), saturating at 0.
    pub fn saturating_sub(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_sub(duration_ms(d)))
    }

    /// How long from `self` until `later`; zero when `later` is not after `self` (a wait that
    /// is already over).
    pub fn until(self, later: Timestamp) -> Duration {
        Duration::from_millis(later.0.saturating_sub(self.0))
    }
}

/// A request id chosen by the client, echoed in the server's reply to that request.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct RequestId(pub u64);
