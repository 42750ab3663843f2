//! # confide-test-relay
//!
//! Test support for Confide's client core: [`Relay`], an honest stand-in for the server that
//! lives in memory, and what it takes to put real [`ClientCore`]s on it.
//!
//! - [`relay`]: the server's role for the frames the cores send (PROTOCOL.md §9:
//!   `register`/`authenticate`, `list_groups`, `create_group`, `append_op`, `sync`,
//!   `send_sealed`, `post`, `ack_inbox`). Like the server it reads the signed group log to know
//!   who is in a group, stores ops, messages and inbox items, and delivers `message`, `op` and
//!   `inbox` frames to the other devices online. It holds no device's keys and never opens an
//!   envelope or a sealed payload, so every key exchange and decryption is the cores' own.
//! - [`link`]: the [`Network`](confide_client_core::Network) a core dials and the
//!   [`Link`](confide_client_core::Link) it gets: frames cross as JSON text, as over a
//!   websocket. In a browser every send and receive first yields to the page's event loop.
//! - [`host`]: a [`Host`](confide_client_core::Host) with a shared, settable clock, seeded
//!   ChaCha20 randomness and a record of the events the application was handed.
//! - [`device`]: one person's device ([`Device`]), [`settle`] to hand every device what the
//!   relay queued for it, and [`group_of`] to start a group whose members joined by invite.
//!
//! Everything is deterministic: identities, users and hosts are seeded from small numbers, and
//! the relay answers every request as it is sent, so any executor that polls to completion
//! (`pollster` natively, the browser's event loop on wasm32) drives it.
//!
//! [`ClientCore`]: confide_client_core::ClientCore

// Test support only, never built into a product: a broken expectation here (a lock poisoned by
// a failed test, a frame the relay cannot encode, a device that cannot start) should stop the
// test at once with its message, which is what unwrap, expect and panic do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod device;
pub mod host;
pub mod link;
pub mod relay;

pub use device::{Device, group_of, group_on, invite_link, settle};
pub use host::{Clock, Events, T0, TestHost};
pub use link::{RelayLink, RelayNet};
pub use relay::{Records, Relay, SERVER_NAME, SharedRelay};
