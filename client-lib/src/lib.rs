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
pub mod error;
pub mod events;
pub mod invite;
pub mod local;
mod native;
mod runner;
pub mod store;
pub mod tls;
pub mod transport;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

use confide_protocol::envelope::Envelope;
use confide_protocol::group_log::{OpBody, Role};
use confide_protocol::identity::KdfParams;
use confide_protocol::{DeviceId, DeviceIdentity, GroupId, MessageId, Seq, UserId};

pub use error::ClientError;
pub use events::{
    ChatMessage, Departure, Event, FacilitatorItem, GroupChange, GroupNotice, JoinRequest,
    NoticeKind, Rejection, ReportInfo, UrgentRequest,
};
pub use invite::{Invite, InviteInfo};
// Defined in the client core (what its queries return); kept at these paths for callers.
pub use confide_client_core::{
    AgreementInfo, GroupInfo, JoinOutcome, MemberInfo, MessagePlace, ModerationEntry, Peer,
    PinnedInfo, Status, SyncRefusal,
};
pub use tls::ServerTrust;
pub use transport::{Connection, TransportError};

use commands::{Command, ModerationCommand};
use confide_client_core::{ClientCore, Profile};
use confide_protocol::envelope::PinnedKind;
use confide_protocol::group_log::{GroupSettings, OpenHours};

/// Cryptographic randomness from the operating system.
pub(crate) fn os_rng() -> rand_core::UnwrapErr<getrandom::SysRng> {
    rand_core::UnwrapErr(getrandom::SysRng)
}

/// Commands queued for the background task before callers wait.
const COMMAND_QUEUE: usize = 64;

/// Where and how to connect, and where the local store lives. Its `Debug` hides the
/// registration token.
#[derive(Clone)]
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
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("server_url", &self.server_url)
            .field("trust", &self.trust)
            .field("store_path", &self.store_path)
            .field("kdf", &self.kdf)
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
        }
    }
}

/// The stream of [`Event`]s, in order.
pub struct Events(mpsc::UnboundedReceiver<Event>);

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}

impl Events {
    /// The next event; `None` once the client has shut down.
    pub async fn next(&mut self) -> Option<Event> {
        self.0.recv().await
    }

    /// An event if one is ready, without waiting.
    pub fn try_next(&mut self) -> Option<Event> {
        self.0.try_recv().ok()
    }
}

/// A Confide client: one device of one user. Cheap to clone; every clone talks to the same
/// background task.
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
    pub async fn register(
        config: ClientConfig,
        display_name: &str,
        passphrase: &[u8],
    ) -> Result<(Client, Events), ClientError> {
        let identity = DeviceIdentity::generate(&mut os_rng());
        Self::register_with_identity(config, display_name, passphrase, identity).await
    }

    /// Like [`Self::register`], with an identity made elsewhere (restored from a backup).
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

    /// Opens an existing local store with its passphrase and connects.
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
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (commands, commands_rx) = mpsc::channel(COMMAND_QUEUE);
        let client = Client {
            commands,
            user: profile.user,
            device: identity.device_id(),
            display_name: profile.display_name.clone(),
            local: Arc::new(Mutex::new(Some(store.share()))),
        };
        let net = native::WsNetwork {
            url: config.server_url,
            trust: config.trust,
        };
        let host = Box::new(native::NativeHost { events: events_tx });
        let core = ClientCore::new(
            store,
            net,
            host,
            identity,
            profile,
            config.registration_token,
        )
        .await?;
        tokio::spawn(runner::run(core, commands_rx));
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
        Ok((client, Events(events_rx)))
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
    pub async fn sync(&self) -> Result<(), ClientError> {
        self.call(Command::Sync).await?
    }

    /// The outcome of the first full sync since this client started (connecting, and so
    /// syncing, if it is not connected), without fetching again: for a short-lived front end
    /// (one command) that shows what it has and must say if that may be out of date. Fails like
    /// [`Self::sync`]: a group the server refused for a passing reason, or one refused for a
    /// lasting reason for the first time ([`Event::SyncRefused`]).
    pub async fn synced(&self) -> Result<(), ClientError> {
        self.call(Command::Synced).await?
    }

    /// Creates a group with this user as its facilitator.
    pub async fn create_group(&self) -> Result<GroupId, ClientError> {
        self.call(Command::CreateGroup).await?
    }

    /// Creates an invite (facilitators): single- or limited-use, valid for `valid_for`.
    pub async fn create_invite(
        &self,
        group: GroupId,
        requires_approval: bool,
        max_uses: u32,
        valid_for: Duration,
    ) -> Result<Invite, ClientError> {
        self.call(|reply| Command::CreateInvite {
            group,
            requires_approval,
            max_uses,
            valid_for,
            reply,
        })
        .await?
    }

    /// Joins with an invite, after verifying the group's log against it. With an invite that
    /// needs approval, sends a join request (with an optional note) to the facilitators.
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
    pub async fn approve(&self, group: GroupId, user: UserId) -> Result<(), ClientError> {
        self.call(|reply| Command::Approve { group, user, reply })
            .await?
    }

    /// Leaves a group.
    pub async fn leave(&self, group: GroupId) -> Result<(), ClientError> {
        self.op(group, OpBody::Leave {}).await.map(|_| ())
    }

    /// Removes a member (facilitators), optionally banning them. A new epoch starts: they can
    /// read nothing sent afterwards.
    pub async fn remove(&self, group: GroupId, user: UserId, ban: bool) -> Result<(), ClientError> {
        self.op(group, OpBody::Remove { user, ban })
            .await
            .map(|_| ())
    }

    /// Signs and appends any group-log op (the moderation methods are built on this). Returns
    /// the op's position in the log.
    pub async fn op(&self, group: GroupId, body: OpBody) -> Result<u64, ClientError> {
        self.call(|reply| Command::Op { group, body, reply })
            .await?
    }

    /// Sends a text message, optionally replying to another. Returns the message as stored,
    /// once the server has acknowledged it durably. An empty (or only white space) text is
    /// refused with [`ClientError::Invalid`].
    pub async fn send_text(
        &self,
        group: GroupId,
        text: &str,
        reply_to: Option<MessageId>,
    ) -> Result<ChatMessage, ClientError> {
        if text.trim().is_empty() {
            return Err(ClientError::Invalid(
                "an empty message is not sent: write something first".into(),
            ));
        }
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
    pub async fn notices(&self, group: GroupId) -> Result<Vec<GroupNotice>, ClientError> {
        self.moderation(|reply| ModerationCommand::Notices { group, reply })
            .await
    }

    /// The groups this device knows.
    pub async fn groups(&self) -> Result<Vec<GroupInfo>, ClientError> {
        self.call(Command::Groups).await
    }

    /// A group's members, from its verified log.
    pub async fn members(&self, group: GroupId) -> Result<Vec<MemberInfo>, ClientError> {
        self.call(|reply| Command::Members { group, reply }).await?
    }

    /// The safety number to compare with `user` out of band.
    pub async fn safety_number(&self, user: UserId) -> Result<String, ClientError> {
        self.call(|reply| Command::SafetyNumber { user, reply })
            .await?
    }

    /// Tries to decrypt an envelope with the keys this device holds, changing nothing. For
    /// audits: it shows what this device could read of stored ciphertext.
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

    /// Gives a member a role (facilitators only).
    pub async fn set_role(
        &self,
        group: GroupId,
        user: UserId,
        role: Role,
    ) -> Result<(), ClientError> {
        self.op(group, OpBody::SetRole { user, role })
            .await
            .map(|_| ())
    }

    /// Mutes a member for `duration` (minutes to days), with an optional reason that only the
    /// facilitators can read. The server refuses their posts until it ends.
    pub async fn mute(
        &self,
        group: GroupId,
        user: UserId,
        duration: Duration,
        reason: Option<&str>,
    ) -> Result<(), ClientError> {
        let until = native::now().saturating_add(duration);
        let seq = self.op(group, OpBody::Mute { user, until }).await?;
        self.reason(group, seq, reason).await
    }

    /// Lifts a mute.
    pub async fn unmute(&self, group: GroupId, user: UserId) -> Result<(), ClientError> {
        self.op(group, OpBody::Unmute { user }).await.map(|_| ())
    }

    /// Removes a member (new epoch) and, with `ban`, keeps them and their devices out; with an
    /// optional reason for the facilitators.
    pub async fn remove_with_reason(
        &self,
        group: GroupId,
        user: UserId,
        ban: bool,
        reason: Option<&str>,
    ) -> Result<(), ClientError> {
        let seq = self.op(group, OpBody::Remove { user, ban }).await?;
        self.reason(group, seq, reason).await
    }

    /// Lifts a ban (facilitators only).
    pub async fn unban(&self, group: GroupId, user: UserId) -> Result<(), ClientError> {
        self.op(group, OpBody::Unban { user }).await.map(|_| ())
    }

    async fn reason(
        &self,
        group: GroupId,
        op_seq: u64,
        reason: Option<&str>,
    ) -> Result<(), ClientError> {
        match reason {
            Some(text) => {
                let text = text.to_string();
                self.moderation(|reply| ModerationCommand::Reason {
                    group,
                    op_seq,
                    text,
                    reply,
                })
                .await
            }
            None => Ok(()),
        }
    }

    /// Locks the chat (only facilitators can post) or unlocks it.
    pub async fn set_locked(&self, group: GroupId, locked: bool) -> Result<(), ClientError> {
        let body = if locked {
            OpBody::Lock {}
        } else {
            OpBody::Unlock {}
        };
        self.op(group, body).await.map(|_| ())
    }

    /// Sets (or clears) the weekly open hours, in the group's time zone.
    pub async fn set_open_hours(
        &self,
        group: GroupId,
        schedule: Option<OpenHours>,
    ) -> Result<(), ClientError> {
        self.op(group, OpBody::SetOpenHours { schedule })
            .await
            .map(|_| ())
    }

    /// Slow mode: one message per `seconds` per member (0 turns it off).
    pub async fn set_slow_mode(&self, group: GroupId, seconds: u32) -> Result<(), ClientError> {
        self.op(group, OpBody::SetSlowMode { seconds })
            .await
            .map(|_| ())
    }

    /// Deletes messages for everyone: the server drops the ciphertext, every client the text.
    pub async fn delete_for_everyone(
        &self,
        group: GroupId,
        messages: Vec<MessageId>,
    ) -> Result<(), ClientError> {
        self.op(group, OpBody::DeleteMessages { messages })
            .await
            .map(|_| ())
    }

    /// Deletes for everyone the last `count` messages of one member. Returns how many.
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
    pub async fn set_retention(
        &self,
        group: GroupId,
        keep_for: Option<Duration>,
    ) -> Result<(), ClientError> {
        self.op(
            group,
            OpBody::SetRetention {
                seconds: keep_for.map(|d| d.as_secs()),
            },
        )
        .await
        .map(|_| ())
    }

    /// Changes the group settings (whether members may message each other privately).
    pub async fn set_settings(
        &self,
        group: GroupId,
        settings: GroupSettings,
    ) -> Result<(), ClientError> {
        self.op(group, OpBody::SetSettings { settings })
            .await
            .map(|_| ())
    }

    /// Pins a new version of the group agreement (facilitators). Members must accept it before
    /// they can post again.
    pub async fn set_agreement(&self, group: GroupId, text: &str) -> Result<(), ClientError> {
        let text = text.to_string();
        self.moderation(|reply| ModerationCommand::Pin {
            group,
            kind: PinnedKind::Agreement,
            text,
            reply,
        })
        .await
    }

    /// Accepts the group agreement the person was shown: `shown` is what [`Self::pinned`]
    /// returned, whose text the front end displayed — so a front end cannot accept an agreement
    /// without having fetched its text. The signed acceptance names that exact text (its hash in
    /// the log). Refused, accepting nothing, while the text has not arrived on this device
    /// ([`ClientError::AgreementNotReceived`]), when the agreement is no longer that version
    /// ([`ClientError::AgreementChanged`]), or when `shown.text` is not the agreement's text
    /// ([`ClientError::Invalid`]).
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
    pub async fn invites(&self, group: GroupId) -> Result<Vec<InviteInfo>, ClientError> {
        self.moderation(|reply| ModerationCommand::Invites { group, reply })
            .await
    }

    /// Revokes an invite (facilitators and co-facilitators): nobody can join or be approved
    /// with it any more, and whoever tries is told it was revoked.
    pub async fn revoke_invite(
        &self,
        group: GroupId,
        invite: confide_protocol::InviteId,
    ) -> Result<(), ClientError> {
        self.op(group, OpBody::RevokeInvite { invite })
            .await
            .map(|_| ())
    }

    /// The invite a member joined with (or was approved through), if any: to revoke it when
    /// removing them, so they cannot come straight back with the same link.
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
    pub async fn departure(&self, group: GroupId) -> Result<Option<Departure>, ClientError> {
        self.moderation(|reply| ModerationCommand::Departure { group, reply })
            .await
    }

    /// Pins "if you are in crisis" resources (facilitators), readable by members at any time.
    pub async fn set_crisis_resources(
        &self,
        group: GroupId,
        text: &str,
    ) -> Result<(), ClientError> {
        let text = text.to_string();
        self.moderation(|reply| ModerationCommand::Pin {
            group,
            kind: PinnedKind::CrisisResources,
            text,
            reply,
        })
        .await
    }

    /// The group's pinned texts.
    pub async fn pinned(&self, group: GroupId) -> Result<PinnedInfo, ClientError> {
        self.moderation(|reply| ModerationCommand::Pinned { group, reply })
            .await
    }

    /// What this user may do in the group right now (muted until, locked, open hours, …).
    pub async fn status(&self, group: GroupId) -> Result<Status, ClientError> {
        self.moderation(|reply| ModerationCommand::Status { group, reply })
            .await
    }

    /// Reports a received message to the facilitators, with proof of who said it.
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
    pub async fn request_facilitator(&self, group: GroupId, text: &str) -> Result<(), ClientError> {
        let text = text.to_string();
        self.moderation(|reply| ModerationCommand::Urgent { group, text, reply })
            .await
    }

    /// Pending join requests (facilitators), to approve or decline.
    pub async fn join_requests(&self, group: GroupId) -> Result<Vec<JoinRequest>, ClientError> {
        self.moderation(|reply| ModerationCommand::JoinRequests { group, reply })
            .await
    }

    /// Declines a pending join request (facilitators).
    pub async fn decline(&self, group: GroupId, user: UserId) -> Result<(), ClientError> {
        self.moderation(|reply| ModerationCommand::Decline { group, user, reply })
            .await
    }

    /// The moderation log: who did what and when (reasons only for facilitators).
    pub async fn moderation_log(
        &self,
        group: GroupId,
    ) -> Result<Vec<ModerationEntry>, ClientError> {
        self.moderation(|reply| ModerationCommand::Log { group, reply })
            .await
    }

    /// The moderation log as pretty JSON, for export.
    pub async fn export_moderation_log(&self, group: GroupId) -> Result<String, ClientError> {
        let log = self.moderation_log(group).await?;
        serde_json::to_string_pretty(&log).map_err(ClientError::Encode)
    }

    /// Opens a private, equally encrypted conversation with a member of `group` (facilitators
    /// always; members only when the group's settings allow). Returns the new group.
    pub async fn open_private(&self, group: GroupId, with: UserId) -> Result<GroupId, ClientError> {
        self.moderation(|reply| ModerationCommand::OpenPrivate { group, with, reply })
            .await
    }

    /// Reports and urgent requests waiting for a facilitator, oldest first, each with an id
    /// for [`Self::resolve`]. Kept in the encrypted store until resolved.
    pub async fn facilitator_queue(
        &self,
        group: GroupId,
    ) -> Result<Vec<(String, FacilitatorItem)>, ClientError> {
        self.moderation(|reply| ModerationCommand::Queue { group, reply })
            .await
    }

    /// Marks a queued report or urgent request as handled.
    pub async fn resolve(&self, id: &str) -> Result<(), ClientError> {
        let id = id.to_string();
        self.moderation(|reply| ModerationCommand::Resolve { id, reply })
            .await
    }

    /// Accepts being in a group someone added this device to ([`Event::Invited`]): its
    /// messages are shown from then on. To decline, [`Self::leave`] it.
    pub async fn accept_group(&self, group: GroupId) -> Result<(), ClientError> {
        self.moderation(|reply| ModerationCommand::AcceptGroup { group, reply })
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
