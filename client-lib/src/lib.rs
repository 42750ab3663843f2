//! # confide-client
//!
//! The client library for Confide. This release provides the transport layer: dialling a
//! server over TLS with certificate pinning or CA roots ([`tls::ServerTrust`]) and exchanging
//! typed frames ([`transport::Connection`]). The full `Client` (keys, encrypted store, sync,
//! events) builds on it.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod tls;
pub mod transport;

pub use tls::ServerTrust;
pub use transport::{Connection, TransportError};
