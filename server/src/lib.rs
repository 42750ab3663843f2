//! # confide-server
//!
//! The Confide relay. It authenticates devices by challenge–response, verifies and enforces
//! each group's signed log (who may post, when, how often), stores ciphertext durably in sled
//! with group commit, and fans messages out to connected members. It never sees plaintext and
//! holds no key that could decrypt anything.
//!
//! Start it with [`run`]; the `confide-server` binary parses flags into a [`Config`] and calls
//! it. Main pieces: [`server`] (accept loop, shutdown), [`connection`] (one client),
//! [`writer`] (group commit), [`storage`] (the [`Storage`] trait and [`SledStorage`]),
//! [`groups`] (verified group state), [`hub`] (delivery), [`cluster`] (several nodes over one
//! database), [`inbox`] (which inbox items are
//! durable), [`preauth`] (the byte budget before authentication), [`address`] (per-address
//! limits), [`tls`], [`tls_stream`] (TLS that holds no buffer while idle), [`metrics`], [`web`] (the web app's files, loaded and checked at startup)
//! and [`http`] (serving them on the websocket's port).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod address;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod groups;
pub mod http;
pub mod hub;
pub mod inbox;
pub mod link;
pub mod metrics;
pub mod preauth;
pub mod rate;
pub mod retention;
pub mod server;
pub mod storage;
pub mod throttle;
pub mod tls;
pub mod tls_stream;
pub mod web;
pub mod writer;

pub use config::{FileConfig, Limits};
pub use server::{Config, ServerError, run};
pub use storage::{PostgresStorage, SledStorage, Storage};
pub use tls::TlsIdentity;
pub use web::{WebAssets, WebSettings};
