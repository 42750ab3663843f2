//! Byte encodings used on the wire.
//!
//! Every byte string in a JSON frame is standard base64 (RFC 4648 §4, with padding). Fixed-size
//! values (keys, hashes, ids) are checked for their exact length when decoded, so a frame with a
//! 31-byte key is rejected at parse time rather than deep inside a cryptographic operation.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Encodes bytes as standard, padded base64.
pub fn b64_encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Decodes standard, padded base64.
pub fn b64_decode(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    STANDARD.decode(text)
}

/// Serde helpers for `Vec<u8>` fields carried as base64 strings.
pub mod b64 {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    /// Serializes bytes as a base64 string.
    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::b64_encode(bytes))
    }

    /// Deserializes a base64 string into bytes.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        super::b64_decode(&text).map_err(|e| D::Error::custom(format!("invalid base64: {e}")))
    }
}

/// Serde helpers for fixed-size `[u8; N]` fields carried as base64 strings.
pub mod b64_array {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    /// Serializes a fixed-size array as a base64 string.
    pub fn serialize<S: Serializer, const N: usize>(
        bytes: &[u8; N],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::b64_encode(bytes))
    }

    /// Deserializes a base64 string that must decode to exactly `N` bytes.
    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let bytes = super::b64_decode(&text)
            .map_err(|e| D::Error::custom(format!("invalid base64: {e}")))?;
        let len = bytes.len();
        bytes
            .try_into()
            .map_err(|_| D::Error::custom(format!("expected {N} bytes, got {len}")))
    }
}

/// Serde helpers for optional `Vec<u8>` fields carried as a base64 string or `null`.
pub mod b64_option {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    /// Serializes bytes as a base64 string, or `null`.
    pub fn serialize<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(bytes) => s.serialize_str(&super::b64_encode(bytes)),
            None => s.serialize_none(),
        }
    }

    /// Deserializes a base64 string or `null`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let text = <Option<std::borrow::Cow<'de, str>>>::deserialize(d)?;
        text.map(|t| {
            super::b64_decode(&t).map_err(|e| D::Error::custom(format!("invalid base64: {e}")))
        })
        .transpose()
    }
}
