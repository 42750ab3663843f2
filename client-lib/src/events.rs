//! What the client tells its front end. Defined in the client core
//! ([`confide_client_core::events`]); kept at this path for callers.

pub use confide_client_core::events::*;
