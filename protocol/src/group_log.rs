//! The group log: signed, hash-chained operations of membership and moderation.

use serde::{Deserialize, Serialize};

use crate::encoding::b64;
use crate::identity::Signature;

/// One op as it travels and is stored: the op's exact bytes (UTF-8 JSON of [`Op`]) and the
/// author's signature over them. Verifiers check the signature over these bytes and only then
/// parse them, so no canonical JSON is needed.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct SignedOp {
    /// The op's bytes: UTF-8 JSON of an [`Op`].
    #[serde(with = "b64")]
    pub op: Vec<u8>,
    /// The author device's signature over `"confide/v1/op" || 0x00 || op`.
    pub sig: Signature,
}

/// Placeholder, replaced by the full op definition.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Op {}
