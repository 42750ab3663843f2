//! The client's error types. Defined in the client core ([`confide_client_core::ClientError`]),
//! which the shell shares; kept at this path for callers.

pub use confide_client_core::{ClientError, EncryptError, Missing, VerificationError};
