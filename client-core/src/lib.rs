//! # confide-client-core
//!
//! The Confide client's decisions without any I/O of its own: group logs and their
//! verification, epochs and sender keys, sealing and opening, the outbox, sync cursors, invites,
//! moderation and retention. It has no async runtime, no sockets, no file system, no clock and
//! no OS randomness, so the same code runs natively (inside `confide-client`, the tokio shell)
//! and on `wasm32-unknown-unknown` (in a browser worker).
//!
//! The main type is [`ClientCore`]: one device of one user. Its commands (create a group, join
//! with an [`Invite`], send a text, moderate, …) and reads (history, members, …) are `async`
//! methods; a request to the server waits for its reply inside the method that makes it, on
//! whatever executor the caller runs (tokio natively, the browser's event loop on wasm32).
//! What happens without being asked for reaches the application as [`Event`]s.
//!
//! Everything the core needs from the outside comes through three seams, which the caller
//! implements:
//!
//! - **store**: [`ClientStore`], persistence of plaintext bytes by tree and key. Reads are single
//!   values, prefix scans and reverse range scans; the only write is [`ClientStore::commit`] of
//!   one [`Batch`], applied atomically and durably. Encryption at rest is the backend's job,
//!   because the backend holds the key. Backends: [`MemoryStore`] here, the encrypted sled store
//!   in `confide-client`, IndexedDB later in the browser.
//! - **host**: [`Host`], the wall clock, cryptographic randomness, and the sink that events
//!   for the application are handed to.
//! - **link**: [`Network`] and [`Link`], the connection to the server, as whole frames sent
//!   and received.
//!
//! The code is split by concept, one file each, every one adding methods to [`ClientCore`]:
//! the session with the server, group state, receiving messages, sender keys and periodic
//! rekeying, the outbox, sync, joining, reports, pinned texts (and the group-work documents),
//! check-in rounds, content warnings, the safety plan, moderation, and queries.
//!
//! ## The commit rule
//!
//! Every change a step makes (a received frame, a command, a retry) goes into one in-memory
//! batch, which the step's own reads see ([`Tx`]). That batch is persisted atomically, in one
//! [`ClientStore::commit`], **before anything it implies is sent to the server or shown to the
//! application**. A crash therefore leaves either the whole step or none of it on disk, and a
//! message is never shown, or acknowledged to the server, before it is stored: after a restart
//! nothing acknowledged or shown is lost, and nothing is shown twice.
//!
//! ## Send and wasm
//!
//! The store's futures are [`MaybeSend`]: `Send` natively, so the shell can spawn the core on a
//! multi-threaded runtime, and not required on wasm32, where browser storage futures are not
//! `Send`.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod devices;
pub mod drafts;
mod error;
pub mod events;
#[cfg(feature = "test-hooks")]
mod fixtures;
pub mod host;
pub mod invite;
pub mod labels;
pub mod link;
pub mod linking;
pub mod memory;
pub mod profile;
pub mod store;
mod types;

// The core itself, one file per concept; each holds an `impl ClientCore` block.
mod actions;
mod group;
mod joining;
mod machine;
mod moderation;
mod numbers;
mod outbox;
mod own_devices;
mod pinned;
mod queries;
mod receive;
mod rekey;
mod reports;
mod rounds;
mod safety_plan;
mod sender_keys;
mod session;
mod settings;
mod sync;
mod unread;
mod warnings;

pub use error::{
    ClientError, EncryptError, InviteUnusable, Missing, StoreError, VerificationError,
};
pub use events::{
    ChatMessage, Departure, Event, FacilitatorItem, GroupChange, GroupNotice, JoinRequest,
    NoticeKind, Rejection, ReportInfo, UrgentRequest,
};
pub use host::{Host, HostRng};
pub use invite::{CheckedInvite, Invite, InviteInfo, InviteOptions, InvitePreview};
pub use link::{Link, Network, TransportError};
pub use machine::ClientCore;
pub use memory::MemoryStore;
pub use profile::Profile;
pub use rekey::{REKEY_AFTER_MESSAGES, REKEY_AFTER_MS, RekeyPolicy};
pub use settings::SettingsInfo;
pub use store::{Batch, ClientStore, Tx};
pub use types::{
    AddedMember, AgreementInfo, GroupInfo, HeldId, HeldMessage, JoinOutcome, MemberInfo,
    MessagePlace, ModerationEntry, Peer, PinnedInfo, RoundAnswer, RoundView, Status, SyncRefusal,
};

/// `Send` where the core may run on several threads (everywhere but wasm), nothing on wasm,
/// where browser futures (IndexedDB, fetch) are not `Send`. Implemented for every type that
/// qualifies.
#[cfg(not(target_family = "wasm"))]
pub trait MaybeSend: Send {}
#[cfg(not(target_family = "wasm"))]
impl<T: Send + ?Sized> MaybeSend for T {}

/// `Send` where the core may run on several threads (everywhere but wasm), nothing on wasm,
/// where browser futures (IndexedDB, fetch) are not `Send`. Implemented for every type.
#[cfg(target_family = "wasm")]
pub trait MaybeSend {}
#[cfg(target_family = "wasm")]
impl<T: ?Sized> MaybeSend for T {}

/// `Sync` everywhere but wasm, nothing on wasm; see [`MaybeSend`]. Implemented for every type
/// that qualifies.
#[cfg(not(target_family = "wasm"))]
pub trait MaybeSync: Sync {}
#[cfg(not(target_family = "wasm"))]
impl<T: Sync + ?Sized> MaybeSync for T {}

/// `Sync` everywhere but wasm, nothing on wasm; see [`MaybeSend`]. Implemented for every type.
#[cfg(target_family = "wasm")]
pub trait MaybeSync {}
#[cfg(target_family = "wasm")]
impl<T: ?Sized> MaybeSync for T {}
