//! Invite links. Defined in the client core ([`confide_client_core::invite`]); kept at this
//! path for callers.

pub use confide_client_core::invite::*;
