//! # confide-client
//!
//! The client library every Confide front end builds on. A caller who only calls
//! [`Client::send_text`] and reads [`Events`] gets end-to-end encryption, key rotation,
//! verification and resync without knowing how:
//!
//! - the device's keys and everything it receives live in an encrypted local store
//!   ([`store`], Argon2id + ChaCha20-Poly1305);
//! - the connection ([`transport`]) uses TLS 1.3 with a pinned certificate or CA roots
//!   ([`ServerTrust`]), reconnects with back-off and resyncs, never showing a message twice;
//! - labels and other front-end settings live in the same encrypted store ([`local`]), so a
//!   front end keeps nothing private in plaintext beside it;
//! - every group's signed log is verified from genesis; an op the facilitators did not sign is
//!   rejected and reported ([`Event::GroupRejected`]), never applied;
//! - sender keys are sealed to exactly the devices the verified log lists, a fresh one in every
//!   epoch; every message's signature is checked; forged, altered or replayed messages are
//!   dropped and reported ([`Event::MessageRejected`]).
//!
//! ```no_run
//! use confide_client::{Client, ClientConfig, ServerTrust};
//! # async fn demo() -> Result<(), confide_client::ClientError> {
//! let config = ClientConfig::new("wss://localhost:7443", ServerTrust::Pinned("ab".repeat(32)), "./alice-store");
//! let (client, mut events) = Client::register(config, "Alice", b"correct horse battery staple").await?;
//! let group = client.create_group().await?;
//! client.send_text(group, "Hello, group", None).await?;
//! while let Some(event) = events.next().await {
//!     println!("{event:?}");
//! }
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod commands;
mod group_work;
mod hardening;
pub use hardening::harden_process;
mod linking;
pub use linking::NewLink;
pub mod error;
pub mod events;
pub mod invite;
pub mod local;
mod native;
mod options;
mod queue;
mod runner;
pub mod store;
pub mod tls;
pub mod transport;
mod warnings;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

pub use error::ClientError;
pub use events::{
    ChatMessage, Departure, Event, FacilitatorItem, GroupChange, GroupNotice, JoinRequest,
    NoticeKind, Rejection, ReportInfo, UrgentRequest,
};
pub use invite::{Invite, InviteInfo, InviteOptions};
pub use options::RemoveOptions;
pub use queue::Events;
pub use warnings::{WARNING_BACKLOG, WarningCollector, is_security_warning};
// Defined in the client core (what its queries return); kept at these paths for callers.
pub use confide_client_core::{
    AddedMember, AgreementInfo, GroupInfo, HeldId, HeldMessage, JoinOutcome, MemberInfo,
    MessagePlace, ModerationEntry, Peer, PinnedInfo, REKEY_AFTER_MESSAGES, REKEY_AFTER_MS,
    RoundAnswer, RoundView, Status, StoreError, SyncRefusal,
};
pub use tls::ServerTrust;
pub use transport::{Connection, TransportError};

// The protocol's types that this crate's signatures name, so that a caller needs no direct
// dependency on `confide-protocol` (which stays reachable whole as [`protocol`]).
/// The Confide protocol crate, for what the re-exports at this crate's root leave out.
pub use confide_protocol as protocol;
pub use confide_protocol::envelope::{Envelope, PinnedKind};
pub use confide_protocol::frames::{ClientFrame, ErrorCode, ServerFrame};
pub use confide_protocol::group_log::{GroupSettings, OpBody, OpenHours, OpenWindow, Role};
pub use confide_protocol::group_work::{
    Meeting, MeetingSchedule, NextMeeting, Resource, ResourceLibrary, RoundPart, RoundTag,
    SafetyPlan, WarningTopic, WarningTopics,
};
pub use confide_protocol::identity::KdfParams;
pub use confide_protocol::ids::RoundId;
pub use confide_protocol::{
    DeviceId, DeviceIdentity, Epoch, GroupId, InviteId, MessageId, OpHash, Seq, Timestamp, UserId,
};

use commands::{Action, Command, ModerationCommand};
use confide_client_core::{ClientCore, Profile};

/// Cryptographic randomness from the operating system.
pub(crate) fn os_rng() -> rand_core::UnwrapErr<getrandom::SysRng> {
    rand_core::UnwrapErr(getrandom::SysRng)
}

/// Commands queued for the background task before callers wait.
const COMMAND_QUEUE: usize = 64;

/// How many [`Event`]s wait for the application by default ([`ClientConfig::event_queue`])
/// before the client stops taking in anything new from the server (see [`Events`]).
pub const EVENT_QUEUE: usize = 1024;

/// How many [`Event`]s may wait beyond the queue by default ([`ClientConfig::event_backlog`])
/// before the client leaves further ones out ([`Event::EventsDropped`]) and drops its
/// connection until the application reads (see [`Events`]). Eight times the queue: room for a
/// long resync and the commands of an application that reads only between them, while a
/// server that floods an application that never reads cannot fill its memory.
pub const EVENT_BACKLOG: usize = 8 * EVENT_QUEUE;

/// Where and how to connect, and where the local store lives. Its `Debug` hides the
/// registration token. Made by [`ClientConfig::new`], whose defaults the fields may then
/// change.
#[derive(Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// `wss://host:port` (or `ws://` on loopback).
    pub server_url: String,
    /// How to trust the server's certificate.
    pub trust: ServerTrust,
    /// Directory of the encrypted local store.
    pub store_path: PathBuf,
    /// Argon2id parameters for a new store.
    pub kdf: KdfParams,
    /// Token for servers that require one to register.
    pub registration_token: Option<String>,
    /// How many events wait for the application before the client stops taking in anything
    /// new from the server until it reads ([`Events`]): [`EVENT_QUEUE`] by default; at least
    /// 1.
    pub event_queue: usize,
    /// How many events may wait beyond [`Self::event_queue`] — produced by commands served
    /// while the application does not read, or by one step that produced more than the queue
    /// holds — before the client keeps no more: it leaves the rest out, counted in one
    /// [`Event::EventsDropped`], and drops its connection until the application has read up
    /// to it ([`Events`]). [`EVENT_BACKLOG`] by default.
    pub event_backlog: usize,
    /// **For tests only** (feature `test-hooks`): a device of protocol version 1 (an identity
    /// without an X-Wing key, [`Client::create_registered`]) stays at version 1 — it adds no
    /// X-Wing key and publishes none — so that a test can see how everyone treats such a device
    /// and how it moves to version 2 when started without this (PROTOCOL.md §4.7). Default: no.
    #[cfg(feature = "test-hooks")]
    pub stay_version_1: bool,
    /// After how many messages in one epoch of a group this device moves the group to a new
    /// epoch with fresh keys by itself (PROTOCOL.md §5.5), so that a sender key that leaked
    /// stops working: [`REKEY_AFTER_MESSAGES`] by default; 0: never for this reason.
    pub rekey_after_messages: u64,
    /// After how many milliseconds of one epoch of a group this device moves the group to a new
    /// epoch with fresh keys by itself: [`REKEY_AFTER_MS`] (a day) by default; 0: never for
    /// this reason.
    pub rekey_after_ms: u64,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("server_url", &self.server_url)
            .field("trust", &self.trust)
            .field("store_path", &self.store_path)
            .field("kdf", &self.kdf)
            .field("event_queue", &self.event_queue)
            .field("event_backlog", &self.event_backlog)
            .field("rekey_after_messages", &self.rekey_after_messages)
            .field("rekey_after_ms", &self.rekey_after_ms)
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    /// A configuration with the recommended key-derivation parameters.
    pub fn new(
        server_url: impl Into<String>,
        trust: ServerTrust,
        store_path: impl Into<PathBuf>,
    ) -> Self {
        ClientConfig {
            server_url: server_url.into(),
            trust,
            store_path: store_path.into(),
            kdf: KdfParams::RECOMMENDED,
            registration_token: None,
            event_queue: EVENT_QUEUE,
            event_backlog: EVENT_BACKLOG,
            #[cfg(feature = "test-hooks")]
            stay_version_1: false,
            rekey_after_messages: REKEY_AFTER_MESSAGES,
            rekey_after_ms: REKEY_AFTER_MS,
        }
    }
}

/// A Confide client: one device of one user. Cheap to clone; every clone talks to the same
/// background task.
///
/// Every method that talks to the background task fails with [`ClientError::Closed`] once
/// the client has shut down ([`Client::shutdown`]); the `# Errors` sections do not repeat it.
/// Commands are served also while the application leaves its [`Events`] unread (see there),
/// but once the events waiting overflow [`ClientConfig::event_backlog`], those that need the
/// server fail with [`ClientError::Transport`] until the application has read them — except a
/// message to send, which is kept and sent then ([`ClientError::Held`]).
#[derive(Clone)]
pub struct Client {
    commands: mpsc::Sender<Command>,
    user: UserId,
    device: DeviceId,
    display_name: String,
    /// The store, shared with the background task, for front-end settings ([`local`]), which
    /// need neither the network nor group state. Taken at [`Client::shutdown`] so that the
    /// store is closed and can be opened again.
    local: Arc<Mutex<Option<store::Store>>>,
    /// **For tests only** (feature `test-hooks`): how far the core's clock runs ahead of the
    /// system clock, in milliseconds ([`Client::advance_clock`]).
    #[cfg(feature = "test-hooks")]
    clock_ahead_ms: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("user", &self.user)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Creates a new identity and local store, registers with the server and connects.
    ///
    /// If registering fails, the error is returned only after the store is closed again, so
    /// the caller may remove its files. Once the server has registered the identity, the call
    /// succeeds even if the first sync after it fails (the client retries it by itself): the
    /// store then holds an identity the server knows, which must not be thrown away.
    ///
    /// # Errors
    ///
    /// [`ClientError::Store`] if the store cannot be created (it exists already, or the
    /// disk fails); [`ClientError::Transport`] if the server cannot be reached to register;
    /// [`ClientError::Server`] if it refuses the registration (a registration token is required or
    /// wrong, say); a verification failure if its replies are not what the protocol says. In each
    /// case the store is closed before the error is returned.
    pub async fn register(
        config: ClientConfig,
        display_name: &str,
        passphrase: &[u8],
    ) -> Result<(Client, Events), ClientError> {
        let identity = DeviceIdentity::generate(&mut os_rng());
        Self::register_with_identity(config, display_name, passphrase, identity).await
    }

    /// Like [`Self::register`], with an identity made elsewhere (restored from a backup).
    ///
    /// # Errors
    ///
    /// As [`Self::register`].
    pub async fn register_with_identity(
        config: ClientConfig,
        display_name: &str,
        passphrase: &[u8],
        identity: DeviceIdentity,
    ) -> Result<(Client, Events), ClientError> {
        let store =
            store::Store::create(&config.store_path, passphrase, config.kdf, &mut os_rng())?;
        let profile = Profile::new(UserId::random(&mut os_rng()), display_name);
        confide_client_core::profile::create(&store, &identity, &profile).await?;
        Self::start(config, store, identity, profile, true).await
    }

    /// **For tests only** (feature `test-hooks`): a new local store for `identity` of `user`,
    /// which the server has on record already with `device_list` (made with `user_identity`) as
    /// the user's current list — a test wrote both into the server's database, as for a device
    /// of protocol version 1 (an identity without an X-Wing key), which a server of version 2 no
    /// longer registers. The device authenticates rather than registers, and connects in the
    /// background as after [`Self::open`]. With [`ClientConfig::stay_version_1`] such a device
    /// stays at version 1.
    ///
    /// # Errors
    ///
    /// [`ClientError::Store`] if the store cannot be created (it exists already, or the disk
    /// fails).
    #[cfg(feature = "test-hooks")]
    pub async fn create_registered(
        config: ClientConfig,
        display_name: &str,
        passphrase: &[u8],
        identity: DeviceIdentity,
        user_identity: &confide_protocol::device_list::UserIdentity,
        device_list: &confide_protocol::device_list::SignedDeviceList,
    ) -> Result<(Client, Events), ClientError> {
        let user = device_list
            .verify()
            .map_err(|e| ClientError::LinkFailed {
                code: e.code(),
                reason: e.to_string(),
            })?
            .user;
        let store =
            store::Store::create(&config.store_path, passphrase, config.kdf, &mut os_rng())?;
        let mut profile = Profile::new(user, display_name);
        profile.registered = true;
        confide_client_core::profile::create_registered(
            &store,
            &identity,
            &profile,
            user_identity,
            device_list,
        )
        .await?;
        Self::start(config, store, identity, profile, false).await
    }

    /// Starts linking this computer as a new device of an existing person (PROTOCOL.md §3.7):
    /// dials the server and opens a link channel. Show [`NewLink::code`] (and
    /// [`NewLink::qr_text`] as a QR code), then [`NewLink::wait_for_offer`].
    ///
    /// # Errors
    ///
    /// The server cannot be reached ([`ClientError::Transport`]), or refuses the channel
    /// ([`ClientError::Server`] `link_busy`, `rate_limited`).
    pub async fn link_new_device(config: ClientConfig) -> Result<NewLink, ClientError> {
        NewLink::open(config).await
    }

    /// Opens an existing local store with its passphrase and connects.
    ///
    /// # Errors
    ///
    /// [`ClientError::Store`] if the store cannot be opened: a wrong passphrase
    /// ([`StoreError::WrongPassphrase`]), another process has it open, or it is damaged.
    /// Nothing is dialled yet, so the server being down is not an error here (the client
    /// connects in the background and reports [`Event::Disconnected`]).
    pub async fn open(
        config: ClientConfig,
        passphrase: &[u8],
    ) -> Result<(Client, Events), ClientError> {
        let store = store::Store::open(&config.store_path, passphrase)?;
        let (identity, profile) = confide_client_core::profile::load(&store).await?;
        Self::start(config, store, identity, profile, false).await
    }

    async fn start(
        config: ClientConfig,
        store: store::Store,
        identity: DeviceIdentity,
        profile: Profile,
        must_connect: bool,
    ) -> Result<(Client, Events), ClientError> {
        #[cfg(feature = "test-hooks")]
        let stay_version_1 = config.stay_version_1;
        let (events_tx, events_rx) = queue::channel(config.event_queue, config.event_backlog);
        let (commands, commands_rx) = mpsc::channel(COMMAND_QUEUE);
        let client = Client {
            commands,
            user: profile.user,
            device: identity.device_id(),
            display_name: profile.display_name.clone(),
            local: Arc::new(Mutex::new(Some(store.share()))),
            #[cfg(feature = "test-hooks")]
            clock_ahead_ms: Arc::default(),
        };
        let net = native::WsNetwork {
            url: config.server_url,
            trust: config.trust,
            events: events_tx.clone(),
        };
        let host = Box::new(native::NativeHost {
            events: events_tx.clone(),
            #[cfg(feature = "test-hooks")]
            ahead_ms: client.clock_ahead_ms.clone(),
        });
        #[cfg(feature = "test-hooks")]
        let mut core = if stay_version_1 {
            ClientCore::new_version_1(
                store,
                net,
                host,
                identity,
                profile,
                config.registration_token,
            )
            .await?
        } else {
            ClientCore::new(
                store,
                net,
                host,
                identity,
                profile,
                config.registration_token,
            )
            .await?
        };
        #[cfg(not(feature = "test-hooks"))]
        let mut core = ClientCore::new(
            store,
            net,
            host,
            identity,
            profile,
            config.registration_token,
        )
        .await?;
        core.set_rekey_policy(confide_client_core::RekeyPolicy {
            after_messages: config.rekey_after_messages,
            after_ms: config.rekey_after_ms,
        });
        tokio::spawn(runner::run(core, commands_rx, events_tx));
        if must_connect && let Err(e) = client.sync().await {
            // Registration must reach the server: its error goes to the caller now. Once the
            // server has registered the identity, a later step failing (the first sync, say)
            // does not undo that: the client goes on, and retries the sync by itself.
            if client.call(Command::Registered).await.unwrap_or(false) {
                tracing::warn!(error = %e, "registered, but the first sync failed");
            } else {
                // Closed before the caller hears of it, so the caller may remove the store's
                // files without racing the background task still writing them.
                client.shutdown().await;
                return Err(e);
            }
        }
        Ok((client, events_rx))
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| ClientError::Closed)?;
        rx.await.map_err(|_| ClientError::Closed)
    }

    /// Starts linking a new device of this person from this one: `code` is what the new device
    /// shows (typed, or the text of its QR code). Returns the numbers to compare with the new
    /// device's screen; then [`Self::link_confirm`] if they match, or [`Self::link_cancel`].
    ///
    /// # Errors
    ///
    /// [`ClientError::LinkFailed`] (`link_bad_code`, `too_many_devices`, `link_mismatch`,
    /// `link_cancelled`), [`ClientError::Server`] (`link_unknown`: no such code, or it expired),
    /// and the errors of reaching the server.
    pub async fn link_start(
        &self,
        code: &str,
    ) -> Result<confide_client_core::linking::LinkCheck, ClientError> {
        let code = code.to_owned();
        self.call(|reply| Command::LinkStart { code, reply })
            .await?
    }

    /// The person confirmed that both devices show the same numbers: once the new device's
    /// person confirmed too, the new device is added to this person's device list, gets its
    /// sealed bundle (groups, pinned texts, recent history), and every group moves to a new
    /// epoch that includes it. Returns the new device's id.
    ///
    /// # Errors
    ///
    /// [`ClientError::LinkFailed`] (`link_cancelled`, `link_mismatch`, `no_link`), and the
    /// errors of a request.
    pub async fn link_confirm(&self) -> Result<DeviceId, ClientError> {
        self.call(Command::LinkConfirm).await?
    }

    /// Stops a link under way (the numbers differ, or the person changed their mind).
    ///
    /// # Errors
    ///
    /// Only [`ClientError::Closed`].
    pub async fn link_cancel(&self) -> Result<(), ClientError> {
        self.call(Command::LinkCancel).await
    }

    /// This person's devices, as this device knows them.
    ///
    /// # Errors
    ///
    /// Only [`ClientError::Closed`].
    pub async fn own_devices(
        &self,
    ) -> Result<confide_client_core::devices::OwnDevices, ClientError> {
        self.call(Command::OwnDevices).await
    }

    /// This person's member entry as a group's `add` names them (user id, name, current device
    /// list), for handing to a facilitator out of band.
    ///
    /// # Errors
    ///
    /// Only [`ClientError::Closed`].
    pub async fn member_entry(
        &self,
    ) -> Result<confide_protocol::group_log::MemberEntry, ClientError> {
        self.call(Command::OwnEntry).await
    }

    /// Unlinks one of this person's devices (or this one): it reads nothing sent afterwards.
    /// Ask the person for their passphrase again before calling this.
    ///
    /// # Errors
    ///
    /// [`ClientError::LinkFailed`] (`unknown_device`, `last_device`), and the errors of a
    /// request.
    pub async fn unlink_device(&self, device: DeviceId) -> Result<(), ClientError> {
        self.call(|reply| Command::Unlink { device, reply }).await?
    }

    /// This device's user.
    pub fn user(&self) -> UserId {
        self.user
    }

    /// This device.
    pub fn device(&self) -> DeviceId {
        self.device
    }

    /// The display name this device registered with.
    pub fn display_name(&self) -> &str {
        &self.display_name
    }

    /// Connects if needed and fetches everything new in every group. If the server refused to
    /// serve any group (or the connection failed meanwhile), the first such error is returned
    /// after the other groups were fetched: not everything new has arrived. A refusal that will
    /// not pass by itself (the server does not know the group, say) fails only the first sync
    /// that meets it ([`Event::SyncRefused`]), so that one such group does not make every sync
    /// fail; a passing one (the server's disk, a restart, a rate limit) fails every sync.
    ///
    /// # Errors
    ///
    /// [`ClientError::Transport`] if the server cannot be reached; [`ClientError::Server`] if
    /// it refused a group (as above); a verification failure if what it served does not verify;
    /// [`ClientError::Store`] if what arrived cannot be stored.
    pub async fn sync(&self) -> Result<(), ClientError> {
        self.call(Command::Sync).await?
    }

    /// The outcome of the first full sync since this client started (connecting, and so
    /// syncing, if it is not connected), without fetching again: for a short-lived front end
    /// (one command) that shows what it has and must say if that may be out of date. Fails like
    /// [`Self::sync`]: a group the server refused for a passing reason, or one refused for a
    /// lasting reason for the first time ([`Event::SyncRefused`]).
    ///
    /// # Errors
    ///
    /// As [`Self::sync`].
    pub async fn synced(&self) -> Result<(), ClientError> {
        self.call(Command::Synced).await?
    }

    /// Creates a group with this user as its facilitator.
    ///
    /// # Errors
    ///
    /// [`ClientError::Transport`] if the server cannot be reached; [`ClientError::Server`] if
    /// it refuses; [`ClientError::Store`] if the new group cannot be stored.
    pub async fn create_group(&self) -> Result<GroupId, ClientError> {
        self.call(Command::CreateGroup).await?
    }

    /// Creates an invite (facilitators), as `options` say: how many may use it, for how long,
    /// and whether each join needs a facilitator's approval. [`InviteOptions::default`] is one
    /// use, no approval, valid for 7 days.
    ///
    /// # Errors
    ///
    /// Fails like [`Self::op`].
    pub async fn create_invite(
        &self,
        group: GroupId,
        options: InviteOptions,
    ) -> Result<Invite, ClientError> {
        self.call(|reply| Command::CreateInvite {
            group,
            options,
            reply,
        })
        .await?
    }

    /// Joins with an invite, after verifying the group's log against it. With an invite that
    /// needs approval, sends a join request (with an optional note) to the facilitators.
    ///
    /// # Errors
    ///
    /// [`ClientError::BadInvite`] if the invite has expired, was revoked, was used up or does
    /// not match the group's log; a verification failure if the log the server shows does not
    /// verify from genesis; [`ClientError::Transport`], [`ClientError::Server`] and
    /// [`ClientError::Store`] as for any request.
    pub async fn join(
        &self,
        invite: &Invite,
        note: Option<String>,
    ) -> Result<JoinOutcome, ClientError> {
        let invite = invite.clone();
        self.call(|reply| Command::Join {
            invite,
            note,
            reply,
        })
        .await?
    }

    /// Approves a pending join request (facilitators).
    ///
    /// # Errors
    ///
    /// Refused, changing nothing, if no request of `user` waits; otherwise fails like
    /// [`Self::op`] (the approval is an op of the log).
    pub async fn approve(&self, group: GroupId, user: UserId) -> Result<(), ClientError> {
        self.call(|reply| Command::Approve { group, user, reply })
            .await?
    }

    /// Marks `group` read up to the message numbered `number` ([`ChatMessage::number`], the
    /// newest one shown): what comes after counts as [`GroupInfo::unread`]. Kept in the
    /// encrypted store, never sent; never moves back.
    ///
    /// # Errors
    ///
    /// [`ClientError::UnknownGroup`] if this device does not hold the group;
    /// [`ClientError::Store`] if the marker cannot be stored.
    pub async fn mark_read(&self, group: GroupId, number: u64) -> Result<(), ClientError> {
        self.act(Action::MarkRead { group, number }).await
    }

    /// **For tests only** (feature `test-hooks`): moves this client's clock `by` ahead of the
    /// system clock (added to any earlier advance), as if that much time had passed for it:
    /// what it writes claims the later time. The server refuses ops more than five minutes
    /// from its own clock.
    #[cfg(feature = "test-hooks")]
    pub fn advance_clock(&self, by: Duration) {
        let by = confide_protocol::ids::duration_ms(by);
        self.clock_ahead_ms
            .fetch_add(by, std::sync::atomic::Ordering::SeqCst);
    }

    /// Leaves a group.
    ///
    /// # Errors
    ///
    /// Fails like [`Self::op`].
    pub async fn leave(&self, group: GroupId) -> Result<(), ClientError> {
        self.act(Action::Leave { group }).await
    }

    /// Moves the group to a new epoch with the same members now (a `rekey`, PROTOCOL.md §5.5):
    /// every member device seals a fresh sender key, and a key that leaked stops working. The
    /// client does this by itself ([`ClientConfig::rekey_after_messages`],
    /// [`ClientConfig::rekey_after_ms`]); this is for doing it by hand. Succeeds too when
    /// another device's rekey got there first.
    ///
    /// # Errors
    ///
    /// Fails like [`Self::op`]; [`ClientError::NotAllowed`] (`rekey_too_soon`) within a minute
    /// of the epoch's beginning.
    pub async fn rekey(&self, group: GroupId) -> Result<(), ClientError> {
        self.act(Action::Rekey { group }).await
    }

    /// Removes a member (facilitators) as `options` say: also banning them (keeping them and
    /// their devices out), and with a reason only the facilitators can read. A new epoch
    /// starts: they can read nothing sent afterwards. [`RemoveOptions::default`] removes only.
    ///
    /// # Errors
    ///
    /// Fails like [`Self::op`]; with a reason, also if the reason cannot be sent (the removal
    /// stands then).
    pub async fn remove(
        &self,
        group: GroupId,
        user: UserId,
        options: RemoveOptions,
    ) -> Result<(), ClientError> {
        let RemoveOptions { ban, reason } = options;
        self.act(Action::Remove {
            group,
            user,
            ban,
            reason,
        })
        .await
    }

    /// Signs and appends any group-log op (the moderation methods are built on this). Returns
    /// the op's position in the log.
    ///
    /// # Errors
    ///
    /// [`ClientError::UnknownGroup`] if this device does not hold the group;
    /// [`ClientError::NotMember`], or [`ClientError::Removed`] once this device was removed or left;
    /// [`ClientError::GroupTampered`] if the group's stored log no longer verifies. An op the
    /// group's rules do not allow (the user is not a facilitator, the target is not a member, …) is
    /// refused before anything is sent, as a verification failure. [`ClientError::Transport`] if the
    /// server cannot be reached; [`ClientError::Server`] if it refuses the op;
    /// [`ClientError::Store`] if the change cannot be stored.
    pub async fn op(&self, group: GroupId, body: OpBody) -> Result<u64, ClientError> {
        self.call(|reply| Command::Op {
            group,
            body: Box::new(body),
            reply,
        })
        .await?
    }

    /// Sends a text message, optionally replying to another. Returns the message as stored,
    /// once the server has acknowledged it durably. An empty (or only white space) text is
    /// refused with [`ClientError::Invalid`].
    ///
    /// # Errors
    ///
    /// [`ClientError::Invalid`] for an empty text, or when too many messages are already held
    /// for the group;
    /// [`ClientError::UnknownGroup`], [`ClientError::NotMember`] or [`ClientError::Removed`] as for
    /// [`Self::op`]; [`ClientError::Held`] while the group's log is behind, or the server cannot be
    /// reached (also while unread events have overflowed [`ClientConfig::event_backlog`]): the
    /// message is kept and sent later; [`ClientError::Pending`] when the server has not acknowledged it yet (it is kept
    /// and sent again); [`ClientError::Server`] if the server refuses it (muted, locked, slow mode,
    /// outside open hours, …); [`ClientError::Store`] if it cannot be stored.
    pub async fn send_text(
        &self,
        group: GroupId,
        text: &str,
        reply_to: Option<MessageId>,
    ) -> Result<ChatMessage, ClientError> {
        // An empty text is refused by the core (`ClientError::Invalid`).
        let text = text.to_string();
        self.call(|reply| Command::Send {
            group,
            text,
            reply_to,
            reply,
        })
        .await?
    }

    /// Up to `limit` messages before `before` (or the newest), oldest first.
    ///
    /// # Errors
    ///
    /// [`ClientError::UnknownGroup`] if this device does not hold the group; [`ClientError::Store`] if the store cannot be read.
    pub async fn history(
        &self,
        group: GroupId,
        before: Option<Seq>,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, ClientError> {
        self.call(|reply| Command::History {
            group,
            before,
            limit,
            reply,
        })
        .await?
    }

    /// The position ([`ChatMessage::seq`]) of the message this device numbered `number`
    /// ([`ChatMessage::number`]: what people see and type, e.g. `#5`), also if it was deleted
    /// since; `None` if no message of the group had that number here. For front ends that take
    /// a number from people, to find the message (with [`Self::history`]) or report it.
    ///
    /// # Errors
    ///
    /// [`ClientError::UnknownGroup`] if this device does not hold the group; [`ClientError::Store`] if the store cannot be read.
    pub async fn seq_of_number(
        &self,
        group: GroupId,
        number: u64,
    ) -> Result<Option<Seq>, ClientError> {
        self.call(|reply| Command::SeqOfNumber {
            group,
            number,
            reply,
        })
        .await?
    }

    /// Where message `message` of `group` is on this device, found by its id — the part of a
    /// report that franking proves ([`ReportInfo::message`]), unlike the position the reporter
    /// names ([`ReportInfo::seq`]); `None` if the message never reached this device.
    ///
    /// # Errors
    ///
    /// [`ClientError::UnknownGroup`] if this device does not hold the group; [`ClientError::Store`] if the store cannot be read.
    pub async fn message_place(
        &self,
        group: GroupId,
        message: MessageId,
    ) -> Result<Option<MessagePlace>, ClientError> {
        self.call(|reply| Command::MessagePlace {
            group,
            message,
            reply,
        })
        .await?
    }

    /// What happened in the group that its members see among its messages (a member removed
    /// or gone, a message deleted for everyone), oldest first, from the verified log: only
    /// while this device was in the group, and nothing for a group the user has not accepted.
    /// Each notice says where among the messages it goes ([`GroupNotice::after_seq`]).
    ///
    /// # Errors
    ///
    /// [`ClientError::UnknownGroup`] if this device does not hold the group; [`ClientError::Store`] if the store cannot be read.
    pub async fn notices(&self, group: GroupId) -> Result<Vec<GroupNotice>, ClientError> {
        self.moderation(|reply| ModerationCommand::Notices { group, reply })
            .await
    }

    /// The groups this device knows.
    ///
    /// # Errors
    ///
    /// Only [`ClientError::Closed`]: what cannot be read is left out.
    pub async fn groups(&self) -> Result<Vec<GroupInfo>, ClientError> {
        self.call(Command::Groups).await
    }

    /// A group's members, from its verified log.
    ///
    /// # Errors
    ///
    /// [`ClientError::UnknownGroup`] if this device does not hold the group.
    pub async fn members(&self, group: GroupId) -> Result<Vec<MemberInfo>, ClientError> {
        self.call(|reply| Command::Members { group, reply }).await?
    }

    /// The safety number to compare with `user` out of band.
    ///
    /// # Errors
    ///
    /// A verification failure if this device holds no verified keys of `user` (they share no group with this user).
    pub async fn safety_number(&self, user: UserId) -> Result<String, ClientError> {
        self.call(|reply| Command::SafetyNumber { user, reply })
            .await?
    }

    /// Tries to decrypt an envelope with the keys this device holds, changing nothing. For
    /// audits: it shows what this device could read of stored ciphertext.
    ///
    /// # Errors
    ///
    /// A verification failure if this device cannot open the envelope; [`ClientError::Store`] if its keys cannot be read.
    pub async fn inspect_envelope(&self, envelope: &Envelope) -> Result<Vec<u8>, ClientError> {
        let envelope = Box::new(envelope.clone());
        self.call(|reply| Command::Inspect { envelope, reply })
            .await?
    }

    async fn moderation<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, ClientError>>) -> ModerationCommand,
    ) -> Result<T, ClientError> {
        self.call(|reply| Command::Moderation(make(reply))).await?
    }

    /// One of the group commands the core composes from its primitives.
    async fn act(&self, action: Action) -> Result<(), ClientError> {
        self.call(|reply| Command::Act { action, reply }).await?
    }

    /// Gives a member a role (facilitators only).
    ///
    /// # Errors
    ///
    /// Fails like [`Self::op`].
    pub async fn set_role(
        &self,
        group: GroupId,
        user: UserId,
        role: Role,
    ) -> Result<(), ClientError> {
        self.act(Action::SetRole { group, user, role }).await
    }

    /// Mutes a member for `duration` (minutes to days), with an optional reason that only the
    /// facilitators can read. The server refuses their posts until it ends.
    ///
    /// # Errors
    ///
    /// Fails like [`Self::op`]; with a reason, also if the reason cannot be sent (the mute
    /// stands then).
    pub async fn mute(
        &self,
        group: GroupId,
        user: UserId,
        duration: Duration,
        reason: Option<&str>,
    ) -> Result<(), ClientError> {
        let reason = reason.map(str::to_string);
        self.act(Action::Mute {
            group,
            user,
            duration,
            reason,
        })
        .await
    }

    /// Lifts a mute.
    ///
    /// # Errors
    ///
    /// Fails like [`Self::op`].
    pub async fn unmute(&self, group: GroupId, user: UserId) -> Result<(), ClientError> {
        self.act(Action::Unmute { group, user }).await
    }

    /// Lifts a ban (facilitators only).
    ///
    /// # Errors
    ///
    /// Fails like [`Self::op`].
    pub async fn unban(&self, group: GroupId, user: UserId) -> Result<(), ClientError> {
        self.act(Action::Unban { group, user }).await
    }

    /// Locks the chat (only facilitators can post) or unlocks it.
    ///
    /// # Errors
    ///
    /// Fails like [`Self::op`].
    pub async fn set_locked(&self, group: GroupId, locked: bool) -> Result<(), ClientError> {
        self.act(Action::SetLocked { group, locked }).await
    }

    /// Sets (or clears) the weekly open hours, in the group's time zone.
    ///
    /// # Errors
    ///
    /// Fails like [`Self::op`].
    pub async fn set_open_hours(
        &self,
        group: GroupId,
        schedule: Option<OpenHours>,
    ) -> Result<(), ClientError> {
        self.act(Action::SetOpenHours { group, schedule }).await
    }

    /// Slow mode: one message per `seconds` per member (0 turns it off).
    ///
    /// # Errors
    ///
    /// Fails like [`Self::op`].
    pub async fn set_slow_mode(&self, group: GroupId, seconds: u32) -> Result<(), ClientError> {
        self.act(Action::SetSlowMode { group, seconds }).await
    }

    /// Deletes messages for everyone: the server drops the ciphertext, every client the text.
    ///
    /// # Errors
    ///
    /// Fails like [`Self::op`].
    pub async fn delete_for_everyone(
        &self,
        group: GroupId,
        messages: Vec<MessageId>,
    ) -> Result<(), ClientError> {
        self.act(Action::DeleteForEveryone { group, messages })
            .await
    }

    /// Deletes for everyone the last `count` messages of one member. Returns how many.
    ///
    /// # Errors
    ///
    /// Fails like [`Self::op`].
    pub async fn delete_recent_of(
        &self,
        group: GroupId,
        user: UserId,
        count: usize,
    ) -> Result<usize, ClientError> {
        self.moderation(|reply| ModerationCommand::DeleteRecentOf {
            group,
            user,
            count,
            reply,
        })
        .await
    }

    /// Sets how long messages are kept (on the server and on every device); `None` keeps them.
    ///
    /// # Errors
    ///
    /// Fails like [`Self::op`].
    pub async fn set_retention(
        &self,
        group: GroupId,
        keep_for: Option<Duration>,
    ) -> Result<(), ClientError> {
        self.act(Action::SetRetention { group, keep_for }).await
    }

    /// Changes the group settings (whether members may message each other privately).
    ///
    /// # Errors
    ///
    /// Fails like [`Self::op`].
    pub async fn set_settings(
        &self,
        group: GroupId,
        settings: GroupSettings,
    ) -> Result<(), ClientError> {
        self.act(Action::SetSettings { group, settings }).await
    }

    /// Pins a new version of the group agreement (facilitators). Members must accept it before
    /// they can post again.
    ///
    /// # Errors
    ///
    /// Fails like [`Self::op`] (a text only facilitators may pin is refused before anything
    /// is sent).
    pub async fn set_agreement(&self, group: GroupId, text: &str) -> Result<(), ClientError> {
        let text = text.to_string();
        self.act(Action::SetAgreement { group, text }).await
    }

    /// Accepts the group agreement the person was shown: `shown` is what [`Self::pinned`]
    /// returned, whose text the front end displayed — so a front end cannot accept an agreement
    /// without having fetched its text. The signed acceptance names that exact text (its hash in
    /// the log). Refused, accepting nothing, while the text has not arrived on this device
    /// ([`ClientError::AgreementNotReceived`]), when the agreement is no longer that version
    /// ([`ClientError::AgreementChanged`]), or when `shown.text` is not the agreement's text
    /// ([`ClientError::Invalid`]).
    ///
    /// # Errors
    ///
    /// As said above, and otherwise like [`Self::op`].
    pub async fn accept_agreement(
        &self,
        group: GroupId,
        shown: &AgreementInfo,
    ) -> Result<(), ClientError> {
        self.moderation(|reply| ModerationCommand::AcceptAgreement {
            group,
            version: shown.version,
            text: shown.text.clone(),
            reply,
        })
        .await
    }

    /// Every invite of the group, as its verified log records them: who made it, uses, expiry,
    /// whether it was revoked, and who joined with it.
    ///
    /// # Errors
    ///
    /// [`ClientError::UnknownGroup`] if this device does not hold the group; [`ClientError::Store`] if the store cannot be read.
    pub async fn invites(&self, group: GroupId) -> Result<Vec<InviteInfo>, ClientError> {
        self.moderation(|reply| ModerationCommand::Invites { group, reply })
            .await
    }

    /// Revokes an invite (facilitators and co-facilitators): nobody can join or be approved
    /// with it any more, and whoever tries is told it was revoked.
    ///
    /// # Errors
    ///
    /// Fails like [`Self::op`].
    pub async fn revoke_invite(
        &self,
        group: GroupId,
        invite: confide_protocol::InviteId,
    ) -> Result<(), ClientError> {
        self.act(Action::RevokeInvite { group, invite }).await
    }

    /// The invite a member joined with (or was approved through), if any: to revoke it when
    /// removing them, so they cannot come straight back with the same link.
    ///
    /// # Errors
    ///
    /// [`ClientError::UnknownGroup`] if this device does not hold the group; [`ClientError::Store`] if the store cannot be read.
    pub async fn invite_of(
        &self,
        group: GroupId,
        user: UserId,
    ) -> Result<Option<confide_protocol::InviteId>, ClientError> {
        self.moderation(|reply| ModerationCommand::InviteOf { group, user, reply })
            .await
    }

    /// How this device's membership of the group ended, if it did (removed, banned or left):
    /// when and by whom.
    ///
    /// # Errors
    ///
    /// [`ClientError::UnknownGroup`] if this device does not hold the group; [`ClientError::Store`] if the store cannot be read.
    pub async fn departure(&self, group: GroupId) -> Result<Option<Departure>, ClientError> {
        self.moderation(|reply| ModerationCommand::Departure { group, reply })
            .await
    }

    /// Pins "if you are in crisis" resources (facilitators), readable by members at any time.
    ///
    /// # Errors
    ///
    /// As [`Self::set_agreement`].
    pub async fn set_crisis_resources(
        &self,
        group: GroupId,
        text: &str,
    ) -> Result<(), ClientError> {
        let text = text.to_string();
        self.act(Action::SetCrisisResources { group, text }).await
    }

    /// The group's pinned texts.
    ///
    /// # Errors
    ///
    /// [`ClientError::UnknownGroup`] if this device does not hold the group; [`ClientError::Store`] if the store cannot be read.
    pub async fn pinned(&self, group: GroupId) -> Result<PinnedInfo, ClientError> {
        self.moderation(|reply| ModerationCommand::Pinned { group, reply })
            .await
    }

    /// What this user may do in the group right now (muted until, locked, open hours, …).
    ///
    /// # Errors
    ///
    /// [`ClientError::UnknownGroup`] if this device does not hold the group.
    pub async fn status(&self, group: GroupId) -> Result<Status, ClientError> {
        self.moderation(|reply| ModerationCommand::Status { group, reply })
            .await
    }

    /// Reports a received message to the facilitators, with proof of who said it.
    ///
    /// # Errors
    ///
    /// [`ClientError::UnknownGroup`], [`ClientError::NotMember`] or [`ClientError::Removed`] as
    /// for [`Self::op`]; a verification failure if no message at `seq` was received here (or it
    /// cannot be proven); [`ClientError::Transport`], [`ClientError::Server`] and
    /// [`ClientError::Store`] as for any request.
    pub async fn report(&self, group: GroupId, seq: Seq, reason: &str) -> Result<(), ClientError> {
        let reason = reason.to_string();
        self.moderation(|reply| ModerationCommand::Report {
            group,
            seq,
            reason,
            reply,
        })
        .await
    }

    /// "I need a facilitator": an urgent request that only the facilitators can read.
    ///
    /// # Errors
    ///
    /// [`ClientError::UnknownGroup`], [`ClientError::NotMember`] or [`ClientError::Removed`]
    /// as for [`Self::op`]; [`ClientError::Transport`], [`ClientError::Server`] and
    /// [`ClientError::Store`] as for any request.
    pub async fn request_facilitator(&self, group: GroupId, text: &str) -> Result<(), ClientError> {
        let text = text.to_string();
        self.moderation(|reply| ModerationCommand::Urgent { group, text, reply })
            .await
    }

    /// Pending join requests (facilitators), to approve or decline.
    ///
    /// # Errors
    ///
    /// [`ClientError::Store`] if the store cannot be read.
    pub async fn join_requests(&self, group: GroupId) -> Result<Vec<JoinRequest>, ClientError> {
        self.moderation(|reply| ModerationCommand::JoinRequests { group, reply })
            .await
    }

    /// Declines a pending join request (facilitators).
    ///
    /// # Errors
    ///
    /// [`ClientError::Store`] if the change cannot be stored.
    pub async fn decline(&self, group: GroupId, user: UserId) -> Result<(), ClientError> {
        self.moderation(|reply| ModerationCommand::Decline { group, user, reply })
            .await
    }

    /// The moderation log: who did what and when (reasons only for facilitators).
    ///
    /// # Errors
    ///
    /// [`ClientError::UnknownGroup`] if this device does not hold the group; [`ClientError::Store`] if the store cannot be read.
    pub async fn moderation_log(
        &self,
        group: GroupId,
    ) -> Result<Vec<ModerationEntry>, ClientError> {
        self.moderation(|reply| ModerationCommand::Log { group, reply })
            .await
    }

    /// The moderation log as pretty JSON, for export.
    ///
    /// # Errors
    ///
    /// As [`Self::moderation_log`].
    pub async fn export_moderation_log(&self, group: GroupId) -> Result<String, ClientError> {
        let log = self.moderation_log(group).await?;
        serde_json::to_string_pretty(&log).map_err(ClientError::Encode)
    }

    /// Opens a private, equally encrypted conversation with a member of `group` (facilitators
    /// always; members only when the group's settings allow). Returns the new group.
    ///
    /// # Errors
    ///
    /// [`ClientError::UnknownGroup`], [`ClientError::NotMember`] or [`ClientError::Removed`]
    /// for `group`; a verification failure if the group's settings do not let members message
    /// each other privately (and this user is not a facilitator) or `with` is not a member;
    /// [`ClientError::Transport`], [`ClientError::Server`] and [`ClientError::Store`] as for any
    /// request.
    pub async fn open_private(&self, group: GroupId, with: UserId) -> Result<GroupId, ClientError> {
        self.moderation(|reply| ModerationCommand::OpenPrivate { group, with, reply })
            .await
    }

    /// Reports and urgent requests waiting for a facilitator, oldest first, each with an id
    /// for [`Self::resolve`]. Kept in the encrypted store until resolved.
    ///
    /// # Errors
    ///
    /// [`ClientError::Store`] if the store cannot be read.
    pub async fn facilitator_queue(
        &self,
        group: GroupId,
    ) -> Result<Vec<(String, FacilitatorItem)>, ClientError> {
        self.moderation(|reply| ModerationCommand::Queue { group, reply })
            .await
    }

    /// Marks a queued report or urgent request as handled.
    ///
    /// # Errors
    ///
    /// [`ClientError::Store`] if the change cannot be stored.
    pub async fn resolve(&self, id: &str) -> Result<(), ClientError> {
        let id = id.to_string();
        self.moderation(|reply| ModerationCommand::Resolve { id, reply })
            .await
    }

    /// Accepts being in a group someone added this device to ([`Event::Invited`]): its
    /// messages are shown from then on. To decline, [`Self::leave`] it.
    ///
    /// # Errors
    ///
    /// [`ClientError::UnknownGroup`] if this device does not hold the group;
    /// [`ClientError::GroupTampered`] if its stored log no longer verifies; [`ClientError::Store`]
    /// if the change cannot be stored.
    pub async fn accept_group(&self, group: GroupId) -> Result<(), ClientError> {
        self.moderation(|reply| ModerationCommand::AcceptGroup { group, reply })
            .await
    }

    /// The messages of `group` this device's user wrote that are not sent yet, in the order
    /// they go ([`ClientCore::held`](confide_client_core::ClientCore::held)): held (offline,
    /// the log behind, or waiting for the user because people joined since they were written),
    /// or sealed and not acknowledged yet.
    ///
    /// # Errors
    ///
    /// [`ClientError::Store`] if the store cannot be read.
    pub async fn held(&self, group: GroupId) -> Result<Vec<HeldMessage>, ClientError> {
        self.moderation(|reply| ModerationCommand::Held { group, reply })
            .await
    }

    /// Sends a held message that waits because people joined the group after it was written
    /// ([`Event::HeldNeedsConfirm`]): it goes to everyone in the group now, in order with the
    /// group's other held messages.
    ///
    /// # Errors
    ///
    /// [`ClientError::NotFound`] if no held message of the group has that id (sent or
    /// discarded meanwhile); [`ClientError::UnknownGroup`], [`ClientError::NotMember`] or
    /// [`ClientError::Removed`] as for [`Self::op`]; [`ClientError::Store`] if the change cannot
    /// be stored; [`ClientError::ChangedSinceAsked`] if the group changed since `epoch`
    /// ([`HeldMessage::epoch`], what the user was shown): show who is there now and ask again.
    pub async fn send_held_anyway(
        &self,
        group: GroupId,
        id: HeldId,
        epoch: u64,
    ) -> Result<(), ClientError> {
        self.moderation(|reply| ModerationCommand::SendHeldAnyway {
            group,
            id,
            epoch,
            reply,
        })
        .await
    }

    /// Discards a held message: it is never sent. The group's later held messages then go.
    ///
    /// # Errors
    ///
    /// [`ClientError::NotFound`] if no held message of the group has that id;
    /// [`ClientError::UnknownGroup`] if this device does not hold the group;
    /// [`ClientError::Store`] if the change cannot be stored.
    pub async fn discard_held(&self, group: GroupId, id: HeldId) -> Result<(), ClientError> {
        self.moderation(|reply| ModerationCommand::DiscardHeld { group, id, reply })
            .await
    }

    /// Stops the background task, closing the connection and flushing the store, and makes
    /// the store's files private (files the database added while open included).
    pub async fn shutdown(&self) {
        let _ = self.call(Command::Shutdown).await;
        let local = self.local.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(store) = local {
            // Best effort: the store was made private when opened; this covers newer files.
            let _ = store.restrict_permissions();
        }
    }
}
