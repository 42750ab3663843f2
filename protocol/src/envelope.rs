//! The group-message envelope: a versioned header used as associated data, a padded
//! ChaCha20-Poly1305 ciphertext under a sender-key message key, a franking commitment, and the
//! sender's Ed25519 signature.

use serde::{Deserialize, Serialize};

use crate::encoding::{b64, b64_array};
use crate::identity::Signature;
use crate::ids::{DeviceId, Epoch, GroupId};

/// An encrypted group message as it travels and as the server stores it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Envelope {
    /// Envelope format version, 1.
    pub v: u8,
    /// The group.
    pub group: GroupId,
    /// The epoch whose sender key encrypted it.
    pub epoch: Epoch,
    /// The sending device.
    pub sender: DeviceId,
    /// The sender chain's iteration that produced the message key.
    pub iteration: u32,
    /// HMAC-SHA256 franking commitment to the plaintext.
    #[serde(with = "b64_array")]
    pub franking_tag: [u8; 32],
    /// The padded, encrypted plaintext.
    #[serde(with = "b64")]
    pub ciphertext: Vec<u8>,
    /// The sender's signature over header, franking tag and ciphertext.
    pub signature: Signature,
}
