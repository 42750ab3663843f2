//! HPKE sealing (RFC 9180, mode_base, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
//! ChaCha20-Poly1305) of a signed payload to one device.

use serde::{Deserialize, Serialize};

use crate::encoding::{b64, b64_array};
use crate::ids::{DeviceId, Epoch, GroupId};

/// What a sealed payload carries; bound into the HPKE `info`, so a payload sealed as one kind
/// cannot be opened as another.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SealKind {
    /// A sender-key distribution for one epoch.
    SenderKey,
    /// A request to join a group through an invite that needs a facilitator's approval.
    JoinRequest,
    /// A report of a message, for the facilitators.
    Report,
    /// A note for the facilitators (a moderation reason, an urgent request).
    FacilitatorNote,
    /// Any other application payload between two devices of a group.
    Direct,
}

/// A payload sealed to one device, as stored in that device's inbox on the server.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct SealedPayload {
    /// What it carries.
    pub kind: SealKind,
    /// The group it belongs to.
    pub group: GroupId,
    /// The group epoch it was sealed in.
    pub epoch: Epoch,
    /// The sending device (bound as HPKE associated data and by the inner signature).
    pub sender: DeviceId,
    /// The device that can open it.
    pub recipient: DeviceId,
    /// The HPKE encapsulated key (32 bytes).
    #[serde(with = "b64_array")]
    pub enc: [u8; 32],
    /// The HPKE ciphertext of `signature (64) || payload`.
    #[serde(with = "b64")]
    pub ciphertext: Vec<u8>,
}
