//! The client's background task: it owns the connection and the store, reconnects with
//! back-off, resyncs, verifies and decrypts everything that arrives, and carries out the
//! requests [`crate::Client`] sends it, one at a time.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

use confide_protocol::envelope::{ContentBody, Envelope, MessageContent};
use confide_protocol::frames::{
    self, ClientFrame, ErrorCode, InboxItem, PROTOCOL_VERSION, ServerFrame, StoredMessage,
};
use confide_protocol::group_log::{
    GroupSettings, GroupState, InviteSecret, MemberEntry, Op, OpBody, SignedOp,
};
use confide_protocol::seal::{self, SealKind, SealedPayload};
use confide_protocol::sender_key::{ReceiverChain, SenderChain};
use confide_protocol::{
    DeviceId, DeviceIdentity, DeviceKeys, EpochRef, GroupId, MessageId, RequestId, Seq, Signature,
    Timestamp, UserId,
};
use serde::{Deserialize, Serialize};

use crate::error::{ClientError, protocol};
use crate::events::{ChatMessage, Event, GroupChange, JoinRequest, Rejection};
use crate::invite::Invite;
use crate::store::Store;
use crate::tls::ServerTrust;
use crate::transport::Connection;

mod moderation;

pub(crate) use moderation::ModerationCommand;

/// Ops and messages asked for per sync request.
const SYNC_PAGE: u32 = 500;
/// How long a request waits for its reply.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// First reconnect delay; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(200);
/// Longest reconnect delay.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

// Store trees.
const T_PROFILE: &str = "profile";
const T_GROUPS: &str = "groups";
const T_OPS: &str = "ops";
const T_MESSAGES: &str = "messages";
const T_SEEN: &str = "seen";
const T_OWN_CHAINS: &str = "own_chains";
const T_RECV_CHAINS: &str = "recv_chains";
const T_PARKED: &str = "parked";
const T_KNOWN_KEYS: &str = "known_keys";
const T_JOIN_REQUESTS: &str = "join_requests";
const T_PARKED_KEYS: &str = "parked_keys";
const T_EVIDENCE: &str = "evidence";
const T_DELETED: &str = "deleted";
const T_OUTBOX: &str = "outbox";
const T_PENDING_JOINS: &str = "pending_joins";
const T_FACILITATOR_QUEUE: &str = "facilitator_queue";
/// Sender keys (or facilitator notes) kept per sender while their epoch is ahead of the log.
const MAX_PARKED_PER_SENDER: usize = 64;
/// How far ahead of the verified log a sealed payload's epoch may be to be kept for later.
const MAX_EPOCH_AHEAD: u64 = 16;
/// How long connecting (TCP, TLS, websocket, challenge) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the outbox waits before posting again after the server could not take a message
/// for a passing reason (`storage`, `shutting_down`, `rate_limited`) and named no time itself.
const OUTBOX_RETRY: Duration = Duration::from_secs(2);
/// Bounds on any wait before the outbox posts again.
const OUTBOX_RETRY_MIN: Duration = Duration::from_millis(250);
const OUTBOX_RETRY_MAX: Duration = Duration::from_secs(60);
const T_PINNED: &str = "pinned";
const T_NOTES: &str = "notes";
const T_PRIVATE: &str = "private";
/// Messages (or sender keys) kept per group while waiting for what they need; beyond this the
/// oldest are dropped, so a member who never sends their key cannot fill the disk.
const MAX_PARKED: usize = 10_000;
/// How many order warnings the client remembers, to report one swap once (memory bound).
const MAX_ORDER_WARNED: usize = 1_000;
/// How many member devices' claims of a later epoch a group keeps (the highest are kept).
const MAX_BEHIND_CLAIMS: usize = 64;
/// How many messages a group may hold while its log is behind; a further one is refused (not
/// kept), so that a log that never catches up cannot fill the disk.
const MAX_HELD_PER_GROUP: usize = 1_000;
/// How many sync pages one sync of a group fetches before it lets other work in; the rest
/// follows in a later sync (a server that never says `complete` cannot starve commands).
const MAX_SYNC_PAGES: usize = 1_000;
/// How many refused ops a group remembers, so that a server serving them again and again does
/// not warn the user again and again.
const MAX_REFUSED_OPS_REMEMBERED: usize = 16;
/// Per group, the number people see of each message (PROTOCOL.md §11.11), both ways:
/// (group, number) → seq and (group, seq) → number. Kept when the message is deleted, so
/// that a number never names another message and a deletion notice can name its number.
const T_NUMBER_SEQ: &str = "number_seq";
const T_SEQ_NUMBER: &str = "seq_number";
/// Messages written while the group is held (its log behind what members have been seen to
/// use), sealed and posted once it has caught up.
const T_HELD: &str = "held";
/// Per (group, epoch, sender): the highest sender-key iteration seen and the seq it was stored
/// at, to notice when the server stored one sender's messages out of their own order.
const T_ORDER: &str = "order";

/// The profile stored beside the identity.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Profile {
    pub user: UserId,
    pub display_name: String,
    pub registered: bool,
}

/// What the store keeps per group besides its ops.
#[derive(Clone, Default, Serialize, Deserialize)]
struct GroupMeta {
    /// The first message seq not yet processed.
    next_seq: u64,
    /// Why the log was rejected, if it was.
    tampered: Option<String>,
    /// Whether the user agreed to be in this group (created it, joined it, or accepted being
    /// added). Until then nothing from it is shown.
    #[serde(default)]
    accepted: bool,
    /// The lowest message seq known in each epoch (received, or this device's own post), to
    /// refuse messages from an epoch that had already ended with a removal when later epochs
    /// were under way.
    #[serde(default)]
    epoch_first_seq: std::collections::BTreeMap<u64, u64>,
    /// Log positions at which the server served an op that did not verify and was refused, so
    /// that the user is told once per position however often (and in however many variants)
    /// the server serves it again (at most [`MAX_REFUSED_OPS_REMEMBERED`], newest last).
    #[serde(default)]
    refused_at: Vec<u64>,
    /// Per member device, the highest epoch its signed message or sealed key named while this
    /// device's verified log had not reached it. While any claim of a device that is still a
    /// member is ahead of the log, this device holds its own posts and seals no new sender key
    /// (PROTOCOL.md §11.1), since a removal it has not seen may be what started that epoch. A
    /// claim ends when the log reaches it or shows its device is no longer a member (a member
    /// cannot keep others silent beyond their own removal), and each member's claim is kept on
    /// its own, so dropping a hostile member's claim leaves the honest ones standing. At most
    /// [`MAX_BEHIND_CLAIMS`].
    #[serde(default)]
    behind_claims: BTreeMap<DeviceId, u64>,
    /// The highest epoch the user was already warned about.
    #[serde(default)]
    behind_warned: Option<u64>,
    /// The last epoch in which this device was a member, when it was removed: messages of that
    /// epoch and before are still shown without asking for consent again.
    #[serde(default)]
    removed_after_epoch: Option<u64>,
    /// The highest message seq of this group this device has processed (received or posted),
    /// named as `seen_seq` in what it writes. Not the sync cursor, which the server moves.
    #[serde(default)]
    last_seen_seq: u64,
    /// The code ([`ClientError::code`]) of a lasting refusal of this group's sync (the server
    /// no longer knows the group, say) once it was reported, so that it is reported once, not
    /// at every sync; cleared when a sync of the group works again.
    #[serde(default)]
    sync_refused: Option<String>,
    /// When this device first met that refusal (stores from before this field have none), to
    /// show how long the group has been silent ([`crate::GroupInfo::sync_refused`]).
    #[serde(default)]
    sync_refused_at: Option<Timestamp>,
    /// The number ([`ChatMessage::number`]) of the last message stored in this group; the
    /// next one gets the one after.
    #[serde(default)]
    last_number: u64,
}

impl GroupMeta {
    /// The highest epoch a current member claims that the log has not reached, if any.
    fn behind(&self, state: &GroupState) -> Option<u64> {
        let log_epoch = state.epoch().0;
        self.behind_claims
            .iter()
            .filter(|(device, epoch)| {
                **epoch > log_epoch && state.member_of_device(device).is_some()
            })
            .map(|(_, epoch)| *epoch)
            .max()
    }

    /// Records that message `seq` belongs to `epoch`, keeping the lowest seq per epoch.
    fn note_epoch_seq(&mut self, epoch: u64, seq: u64) {
        let first = self.epoch_first_seq.entry(epoch).or_insert(seq);
        *first = (*first).min(seq);
        self.last_seen_seq = self.last_seen_seq.max(seq);
    }
}

/// A message encrypted and handed to the server but not yet acknowledged: kept (encrypted at
/// rest) and posted again after a reconnect, so nothing unacknowledged is lost and nothing is
/// shown as sent before the server has it. The server answers a re-post of a stored envelope
/// with the seq it already has, so a retry never duplicates.
#[derive(Clone, Serialize, Deserialize)]
struct OutboxEntry {
    envelope: Envelope,
    content: MessageContent,
}

/// The plaintext of a join request (sealed with [`SealKind::JoinRequest`]).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JoinRequestPayload {
    invite: confide_protocol::InviteId,
    invite_sig: Signature,
    member: MemberEntry,
    note: Option<String>,
}

/// One group as this device holds it.
struct GroupCtx {
    state: GroupState,
    /// Epoch numbers that ended because someone was removed or left (no grace for them), with
    /// who went and when the op says it happened.
    ended_by_removal: HashMap<u64, Removal>,
    /// Every epoch the verified log went through, with the devices (and their users and
    /// names) that were members in it: who may send in that epoch.
    epochs: HashMap<EpochRef, HashMap<DeviceId, (UserId, String)>>,
    meta: GroupMeta,
}

impl GroupCtx {
    fn new(state: GroupState, meta: GroupMeta) -> Self {
        let mut ctx = GroupCtx {
            state,
            ended_by_removal: Default::default(),
            epochs: HashMap::new(),
            meta,
        };
        ctx.record_epoch();
        ctx
    }

    fn record_epoch(&mut self) {
        let mut devices = HashMap::new();
        for (user, member) in self.state.members() {
            for keys in &member.entry.devices {
                devices.insert(keys.device, (*user, member.entry.display_name.clone()));
            }
        }
        self.epochs.insert(self.state.epoch_ref(), devices);
    }

    /// Records what an applied op means for message acceptance.
    fn note_op(&mut self, op: &Op) {
        let user = match &op.body {
            OpBody::Remove { user, .. } => *user,
            // The author's user, from the epochs before the op (they are gone from the state).
            OpBody::Leave {} => match self.user_of_device(&op.author) {
                Some(user) => user,
                None => return,
            },
            _ => return,
        };
        self.ended_by_removal.insert(
            self.state.epoch().0.saturating_sub(1),
            Removal { user, at: op.at },
        );
    }

    /// The user a device belonged to in any epoch of the verified log.
    fn user_of_device(&self, device: &DeviceId) -> Option<UserId> {
        self.epochs
            .values()
            .find_map(|devices| devices.get(device).map(|(user, _)| *user))
    }

    fn is_member(&self, device: &DeviceId) -> bool {
        self.state.member_of_device(device).is_some()
    }
}

/// A member's removal (or leaving) that ended an epoch.
struct Removal {
    /// Who went.
    user: UserId,
    /// When the op says it happened: their posts in the ended epoch that say they were written
    /// later are refused (PROTOCOL.md §12.3).
    at: Timestamp,
}

/// What the [`crate::Client`] handle asks for.
pub(crate) enum Command {
    CreateGroup(oneshot::Sender<Result<GroupId, ClientError>>),
    CreateInvite {
        group: GroupId,
        requires_approval: bool,
        max_uses: u32,
        valid_for: Duration,
        reply: oneshot::Sender<Result<Invite, ClientError>>,
    },
    Join {
        invite: Invite,
        note: Option<String>,
        reply: oneshot::Sender<Result<crate::JoinOutcome, ClientError>>,
    },
    Approve {
        group: GroupId,
        user: UserId,
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
    Op {
        group: GroupId,
        body: OpBody,
        reply: oneshot::Sender<Result<u64, ClientError>>,
    },
    Send {
        group: GroupId,
        text: String,
        reply_to: Option<MessageId>,
        reply: oneshot::Sender<Result<ChatMessage, ClientError>>,
    },
    History {
        group: GroupId,
        before: Option<Seq>,
        limit: usize,
        reply: oneshot::Sender<Result<Vec<ChatMessage>, ClientError>>,
    },
    SeqOfNumber {
        group: GroupId,
        number: u64,
        reply: oneshot::Sender<Result<Option<Seq>, ClientError>>,
    },
    MessagePlace {
        group: GroupId,
        message: MessageId,
        reply: oneshot::Sender<Result<Option<crate::MessagePlace>, ClientError>>,
    },
    Groups(oneshot::Sender<Vec<crate::GroupInfo>>),
    Members {
        group: GroupId,
        reply: oneshot::Sender<Result<Vec<crate::MemberInfo>, ClientError>>,
    },
    SafetyNumber {
        user: UserId,
        reply: oneshot::Sender<Result<String, ClientError>>,
    },
    Inspect {
        envelope: Box<Envelope>,
        reply: oneshot::Sender<Result<Vec<u8>, ClientError>>,
    },
    Sync(oneshot::Sender<Result<(), ClientError>>),
    /// The outcome of the latest full sync (connecting, and so syncing, first if needed),
    /// without fetching again.
    Synced(oneshot::Sender<Result<(), ClientError>>),
    /// Whether the server has registered this device (answered `authenticated` to `register`).
    Registered(oneshot::Sender<bool>),
    Moderation(ModerationCommand),
    Shutdown(oneshot::Sender<()>),
}

pub(crate) struct Actor {
    pub url: String,
    pub trust: ServerTrust,
    pub store: Store,
    pub identity: DeviceIdentity,
    pub profile: Profile,
    pub registration_token: Option<String>,
    pub events: mpsc::UnboundedSender<Event>,
    conn: Option<Connection>,
    next_id: u64,
    groups: HashMap<GroupId, GroupCtx>,
    needs_sync: BTreeSet<GroupId>,
    /// Why the last full sync could not fetch some group for a passing reason (the server's
    /// disk, a restart, a rate limit, the connection), for [`Command::Sync`] to report instead
    /// of success: such a failure is reported by every sync that meets it.
    sync_failure: Option<ClientError>,
    /// Lasting refusals of a group's sync met for the first time and not yet reported by a
    /// [`Command::Sync`] or [`Command::Synced`]: each is reported once (and as
    /// [`Event::SyncRefused`]); later syncs that meet it again do not fail for it.
    refusals_unreported: Vec<ClientError>,
    /// Whether a full sync has run since this client started.
    full_sync_done: bool,
    /// Groups whose pinned texts this facilitator device should post again (new epoch).
    needs_repost: BTreeSet<GroupId>,
    /// Inbox items processed and stored, to acknowledge.
    pending_acks: Vec<u64>,
    /// When to post the outbox again, after the server refused a message for a passing reason.
    outbox_retry_at: Option<tokio::time::Instant>,
    /// Messages already named in an [`Event::OrderWarning`] (group, seq), so that one swap is
    /// reported once even when both of its messages show it; cleared when it grows past
    /// [`MAX_ORDER_WARNED`].
    order_warned: std::collections::HashSet<(GroupId, u64)>,
    /// Whether held messages may be ready to go (something was held, a group caught up, a
    /// connection or a retry came): [`Self::process_held`] reads the store only then.
    held_dirty: bool,
}

fn now() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Timestamp(ms)
}

/// The display names of `state`'s members other than `user` that look like `name`
/// ([`confide_protocol::names`]).
pub(crate) fn look_alikes(state: &GroupState, user: &UserId, name: &str) -> Vec<String> {
    confide_protocol::names::confusable_with(
        name,
        state
            .members()
            .iter()
            .filter(|(other, _)| *other != user)
            .map(|(_, m)| m.entry.display_name.as_str()),
    )
}

fn key2(a: &[u8], b: &[u8]) -> Vec<u8> {
    [a, b].concat()
}

fn key3(a: &[u8], b: &[u8], c: &[u8]) -> Vec<u8> {
    [a, b, c].concat()
}

fn server_error(frame: ServerFrame) -> ClientError {
    match frame {
        ServerFrame::Error {
            code,
            message,
            retry_after_ms,
            ..
        } => ClientError::Server {
            code,
            message,
            retry_after_ms,
        },
        other => ClientError::Unexpected(other.type_name().to_string()),
    }
}

/// The op types whose target is a user, for [`GroupChange::target`].
fn op_target(body: &OpBody) -> Option<UserId> {
    match body {
        OpBody::Join { member, .. } | OpBody::Add { member, .. } => Some(member.user),
        OpBody::Remove { user, .. }
        | OpBody::Unban { user }
        | OpBody::SetRole { user, .. }
        | OpBody::Mute { user, .. }
        | OpBody::Unmute { user } => Some(*user),
        _ => None,
    }
}

impl Actor {
    pub(crate) fn new(
        url: String,
        trust: ServerTrust,
        store: Store,
        identity: DeviceIdentity,
        profile: Profile,
        registration_token: Option<String>,
        events: mpsc::UnboundedSender<Event>,
    ) -> Result<Actor, ClientError> {
        let mut actor = Actor {
            url,
            trust,
            store,
            identity,
            profile,
            registration_token,
            events,
            conn: None,
            next_id: 0,
            groups: HashMap::new(),
            needs_sync: BTreeSet::new(),
            sync_failure: None,
            refusals_unreported: Vec::new(),
            full_sync_done: false,
            needs_repost: BTreeSet::new(),
            pending_acks: Vec::new(),
            outbox_retry_at: None,
            order_warned: Default::default(),
            held_dirty: true,
        };
        actor.load_groups()?;
        Ok(actor)
    }

    /// Replays every stored group log (verifying it again) into memory.
    fn load_groups(&mut self) -> Result<(), ClientError> {
        let metas: Vec<(Vec<u8>, GroupMeta)> = self.store.scan(T_GROUPS, &[], usize::MAX)?;
        for (key, meta) in metas {
            let Ok(group) = <[u8; 16]>::try_from(key.as_slice()).map(GroupId) else {
                continue;
            };
            let ops: Vec<(Vec<u8>, SignedOp)> =
                self.store.scan(T_OPS, group.as_bytes(), usize::MAX)?;
            // Frozen is recomputed from the stored log at every start: earlier versions also
            // froze a group for an invalid op the server served, which must not last.
            let meta = GroupMeta {
                tampered: None,
                ..meta
            };
            let mut ctx: Option<GroupCtx> = None;
            for (_, op) in &ops {
                match ctx.as_mut() {
                    None => match GroupState::from_genesis(op) {
                        Ok(state) => ctx = Some(GroupCtx::new(state, meta.clone())),
                        Err(_) => break,
                    },
                    Some(c) => match c.state.apply(op) {
                        Ok(applied) => {
                            c.record_epoch();
                            c.note_op(&applied.op);
                        }
                        Err(e) => {
                            // A damaged store freezes that group, not the whole client.
                            c.meta
                                .tampered
                                .get_or_insert_with(|| format!("stored log does not verify: {e}"));
                            break;
                        }
                    },
                }
            }
            if let Some(ctx) = ctx {
                self.groups.insert(group, ctx);
                self.number_old_messages(group)?;
            }
        }
        Ok(())
    }

    fn emit(&self, event: Event) {
        let _ = self.events.send(event);
    }

    fn device(&self) -> DeviceId {
        self.identity.device_id()
    }

    /// The group, if this device may act in it: known, not frozen, and a member of it. A device
    /// that was removed from it (or left) is told so, with how and when
    /// ([`ClientError::Removed`]), rather than meeting a protocol error further on.
    fn member_ctx(&self, group: GroupId) -> Result<&GroupCtx, ClientError> {
        let ctx = self.groups.get(&group).ok_or(ClientError::UnknownGroup)?;
        if let Some(why) = &ctx.meta.tampered {
            return Err(ClientError::GroupTampered(why.clone()));
        }
        if !ctx.is_member(&self.device()) {
            return Err(match self.departure(group)? {
                Some(departure) => ClientError::Removed { group, departure },
                None => ClientError::NotMember,
            });
        }
        Ok(ctx)
    }

    fn member_entry(&self) -> MemberEntry {
        MemberEntry {
            user: self.profile.user,
            display_name: self.profile.display_name.clone(),
            devices: vec![self.identity.public_keys()],
        }
    }

    // ---------------------------------------------------------------------------------------
    // The loop
    // ---------------------------------------------------------------------------------------

    pub(crate) async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut backoff = MIN_BACKOFF;
        loop {
            if self.conn.is_none() {
                match self.connect().await {
                    Ok(()) => {
                        backoff = MIN_BACKOFF;
                        self.held_dirty = true;
                        // What waited for the connection goes now, not at the next event.
                        self.process_needs_repost().await;
                        self.process_held().await;
                    }
                    Err(e) => {
                        self.emit(Event::Disconnected {
                            reason: e.to_string(),
                        });
                        // Wait out the back-off, but keep serving commands (which fail fast
                        // or try to connect themselves).                        // Jitter spreads reconnects when a server comes back to many clients.
                        let jitter = rand_core::Rng::next_u32(&mut crate::os_rng()) % 1000;
                        let sleep =
                            tokio::time::sleep(backoff.mul_f64(0.5 + f64::from(jitter) / 1000.0));
                        tokio::pin!(sleep);
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        loop {
                            tokio::select! {
                                _ = &mut sleep => break,
                                cmd = commands.recv() => match cmd {
                                    None => return,
                                    Some(Command::Shutdown(done)) => {
                                        // The store is closed before the caller hears of it.
                                        drop(self);
                                        let _ = done.send(());
                                        return;
                                    }
                                    Some(cmd) => self.handle_command(cmd).await,
                                },
                            }
                        }
                        continue;
                    }
                }
            }
            let next = {
                let Some(conn) = self.conn.as_mut() else {
                    continue;
                };
                let retry_at = self.outbox_retry_at;
                tokio::select! {
                    cmd = commands.recv() => Next::Command(cmd),
                    frame = conn.recv() => Next::Frame(frame),
                    // `retry_at` is `Some` whenever this branch is enabled.
                    _ = tokio::time::sleep_until(retry_at.unwrap_or_else(tokio::time::Instant::now)), if retry_at.is_some() => Next::RetryOutbox,
                }
            };
            match next {
                Next::Command(None) => return,
                Next::Command(Some(Command::Shutdown(done))) => {
                    if let Some(conn) = self.conn.take() {
                        conn.close().await;
                    }
                    let _ = self.store.flush();
                    // The store is closed before the caller hears of it, so the caller may
                    // open it again (or remove it) at once.
                    drop(self);
                    let _ = done.send(());
                    return;
                }
                Next::Command(Some(cmd)) => self.handle_command(cmd).await,
                Next::Frame(Ok(frame)) => self.handle_frame(frame),
                Next::RetryOutbox => {
                    self.outbox_retry_at = None;
                    self.held_dirty = true;
                    self.resend_outbox().await;
                }
                Next::Frame(Err(e)) => self.disconnected(e.to_string()),
            }
            self.flush_acks().await;
            self.process_needs_sync().await;
            self.process_needs_repost().await;
            self.process_held().await;
        }
    }

    fn disconnected(&mut self, reason: String) {
        if self.conn.take().is_some() {
            self.emit(Event::Disconnected { reason });
        }
    }

    /// Connects, authenticates (registering on first use), and resyncs every group.
    async fn connect(&mut self) -> Result<(), ClientError> {
        let mut conn =
            tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(&self.url, &self.trust))
                .await
                .map_err(|_| ClientError::Unexpected("connecting timed out".into()))??;
        let challenge = tokio::time::timeout(REQUEST_TIMEOUT, conn.recv())
            .await
            .map_err(|_| ClientError::Unexpected("no challenge".into()))??;
        let ServerFrame::Challenge { nonce, version, .. } = challenge else {
            return Err(ClientError::Unexpected(challenge.type_name().into()));
        };
        if version != PROTOCOL_VERSION {
            return Err(protocol(format!(
                "server speaks protocol version {version}"
            )));
        }
        let signature = frames::sign_auth(&self.identity, conn.host(), &nonce);
        self.conn = Some(conn);
        let reply = if self.profile.registered {
            let device = self.device();
            self.request(|id| ClientFrame::Authenticate {
                id,
                version: PROTOCOL_VERSION,
                device,
                signature,
            })
            .await
        } else {
            let frame_token = self.registration_token.clone();
            let keys = self.identity.public_keys();
            let (user, display_name) = (self.profile.user, self.profile.display_name.clone());
            self.request(|id| ClientFrame::Register {
                id,
                version: PROTOCOL_VERSION,
                user,
                display_name,
                keys,
                registration_token: frame_token,
                signature,
            })
            .await
        };
        match reply {
            Ok(ServerFrame::Authenticated { .. }) => {}
            Ok(other) => {
                self.conn = None;
                return Err(server_error(other));
            }
            Err(e) => {
                self.conn = None;
                return Err(e);
            }
        }
        if !self.profile.registered {
            self.profile.registered = true;
            self.store.put(T_PROFILE, b"profile", &self.profile)?;
            self.store.flush()?;
        }
        self.emit(Event::Connected);
        self.sync_all().await?;
        self.resend_outbox().await;
        Ok(())
    }

    async fn ensure_connected(&mut self) -> Result<(), ClientError> {
        if self.conn.is_none() {
            self.connect().await?;
        }
        Ok(())
    }

    /// Sends a request and waits for its reply, handling every other frame that arrives
    /// meanwhile. A server error reply is returned as `Ok(ServerFrame::Error { .. })`.
    async fn request(
        &mut self,
        make: impl FnOnce(RequestId) -> ClientFrame,
    ) -> Result<ServerFrame, ClientError> {
        self.next_id += 1;
        let id = RequestId(self.next_id);
        let frame = make(id);
        let Some(conn) = self.conn.as_mut() else {
            return Err(ClientError::Transport(crate::TransportError::Closed(None)));
        };
        if let Err(e) = conn.send(&frame).await {
            self.disconnected(e.to_string());
            return Err(e.into());
        }
        let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Err(ClientError::Transport(crate::TransportError::Closed(None)));
            };
            let received = tokio::time::timeout_at(deadline, conn.recv()).await;
            match received {
                Err(_) => {
                    self.disconnected("request timed out".into());
                    return Err(ClientError::Unexpected(
                        "the server did not answer in time".into(),
                    ));
                }
                Ok(Err(e)) => {
                    self.disconnected(e.to_string());
                    return Err(e.into());
                }
                Ok(Ok(reply)) if reply.request_id() == Some(id) => return Ok(reply),
                Ok(Ok(other)) => {
                    self.handle_frame(other);
                    self.flush_acks().await;
                }
            }
        }
    }

    /// Like [`Self::request`], turning an error reply into `Err`.
    async fn request_ok(
        &mut self,
        make: impl FnOnce(RequestId) -> ClientFrame,
    ) -> Result<ServerFrame, ClientError> {
        match self.request(make).await? {
            e @ ServerFrame::Error { .. } => Err(server_error(e)),
            reply => Ok(reply),
        }
    }

    // ---------------------------------------------------------------------------------------
    // Incoming frames (never send requests from here: only fire-and-forget acks)
    // ---------------------------------------------------------------------------------------

    fn handle_frame(&mut self, frame: ServerFrame) {
        match frame {
            ServerFrame::Message {
                group,
                seq,
                received_at,
                envelope,
            } => {
                let Some(ctx) = self.groups.get(&group) else {
                    return;
                };
                if ctx.meta.tampered.is_some() {
                    return;
                }
                let next = Seq(ctx.meta.next_seq.max(1));
                if seq == next {
                    self.handle_message(
                        group,
                        StoredMessage {
                            seq,
                            received_at,
                            envelope,
                        },
                    );
                    self.advance_cursor(group, Seq(seq.0.saturating_add(1)));
                } else if seq > next {
                    self.needs_sync.insert(group);
                }
            }
            ServerFrame::Op { group, op, seq } => match self.groups.get(&group) {
                // The next op, or a different op at the head's seq (a fork: refused and told).
                Some(ctx)
                    if seq == ctx.state.seq() + 1
                        || (seq == ctx.state.seq() && op.hash() != ctx.state.head()) =>
                {
                    let _ = self.apply_op(group, &op);
                }
                Some(ctx) if seq <= ctx.state.seq() => {}
                _ => {
                    self.needs_sync.insert(group);
                }
            },
            ServerFrame::Inbox { items } => {
                for item in items {
                    if self.handle_inbox(&item) {
                        self.pending_acks.push(item.inbox_id);
                    }
                }
            }
            _ => {}
        }
    }
}

enum Next {
    Command(Option<Command>),
    Frame(Result<ServerFrame, crate::TransportError>),
    RetryOutbox,
}

/// Whether a group's sync failed for a reason that passes by itself (the server's disk, a
/// restart, a rate limit or a bug of its own, the connection, this device's own store): then
/// every sync that meets it fails, as the caller must not believe it has everything.
fn is_passing_failure(e: &ClientError) -> bool {
    match e {
        ClientError::Server { code, .. } => is_passing(*code) || *code == ErrorCode::Internal,
        ClientError::Transport(_)
        | ClientError::Unexpected(_)
        | ClientError::Closed
        | ClientError::Store(_) => true,
        _ => false,
    }
}

/// Whether the server refused a post for a passing reason, so that the identical envelope is
/// posted again later (PROTOCOL.md §9.8) rather than reported as failed.
fn is_passing(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::Storage | ErrorCode::ShuttingDown | ErrorCode::RateLimited
    )
}

impl Actor {
    /// Acknowledges processed inbox items (after the store is flushed, so nothing acknowledged
    /// can be lost locally). The `ok` reply is ignored when it arrives.
    async fn flush_acks(&mut self) {
        if self.pending_acks.is_empty() {
            return;
        }
        if self.store.flush().is_err() {
            return;
        }
        let inbox_ids: Vec<u64> = std::mem::take(&mut self.pending_acks);
        for chunk in inbox_ids.chunks(frames::MAX_INBOX_ACKS_PER_FRAME) {
            self.next_id += 1;
            let ack = ClientFrame::AckInbox {
                id: RequestId(self.next_id),
                inbox_ids: chunk.to_vec(),
            };
            if let Some(conn) = self.conn.as_mut()
                && conn.send(&ack).await.is_err()
            {
                self.disconnected("connection lost while acknowledging".into());
                return;
            }
        }
    }

    fn advance_cursor(&mut self, group: GroupId, next: Seq) {
        if let Some(ctx) = self.groups.get_mut(&group)
            && next.0 > ctx.meta.next_seq
        {
            ctx.meta.next_seq = next.0;
            let _ = self.store.put(T_GROUPS, group.as_bytes(), &ctx.meta);
        }
    }

    fn reject_message(&mut self, group: GroupId, m: &StoredMessage, reason: String) {
        tracing::warn!(%group, seq = m.seq.0, %reason, "message rejected");
        let _ = self.store.put(
            T_SEEN,
            &key2(group.as_bytes(), m.envelope.message_id().as_bytes()),
            &m.seq,
        );
        self.emit(Event::MessageRejected(Rejection {
            group,
            seq: m.seq.0,
            reason,
        }));
    }

    /// Verifies, decrypts and stores one message, or parks it until its sender key arrives.
    fn handle_message(&mut self, group: GroupId, m: StoredMessage) {
        let id = m.envelope.message_id();
        let seen_key = key2(group.as_bytes(), id.as_bytes());
        // Nothing from the server changes any state unless its sender's signature holds: a
        // forgery must not get the genuine message refused later as a "replay".
        if let Err(e) = m.envelope.verify() {
            tracing::warn!(%group, seq = m.seq.0, "message with a bad signature dropped");
            self.emit(Event::MessageRejected(Rejection {
                group,
                seq: m.seq.0,
                reason: e.to_string(),
            }));
            return;
        }
        if matches!(self.store.get_bytes(T_DELETED, &seen_key), Ok(Some(_))) {
            // Deleted for everyone before it reached this device.
            let _ = self.store.put(T_SEEN, &seen_key, &m.seq);
            return;
        }
        if let Ok(Some(seen)) = self.store.get::<Seq>(T_SEEN, &seen_key) {
            if seen != m.seq {
                self.emit(Event::MessageRejected(Rejection {
                    group,
                    seq: m.seq.0,
                    reason: format!("replay of message {id} already received as #{}", seen.0),
                }));
            }
            return;
        }
        let me = self.device();
        let Some(ctx) = self.groups.get(&group) else {
            return;
        };
        let env = &m.envelope;
        if env.group != group {
            return self.reject_message(group, &m, "the envelope names another group".into());
        }
        // A position names one message: one served where another is (or was) stored here would
        // take its number, and its report evidence, from it. Refused without being marked seen,
        // so that the message is still taken where the server really stored it.
        if let Some(reason) = self.seq_taken(group, m.seq, id) {
            tracing::warn!(%group, seq = m.seq.0, "message served at another message's position");
            self.emit(Event::MessageRejected(Rejection {
                group,
                seq: m.seq.0,
                reason,
            }));
            return;
        }
        // What was said while this device was a member is shown; anything later only once the
        // user accepts being in the group (again).
        let consented = ctx.meta.accepted
            || ctx
                .meta
                .removed_after_epoch
                .is_some_and(|last| env.epoch.0 <= last);
        if !consented {
            // Only what a device of the verified log signed can be waiting: a message signed by
            // any other key (one the server made up) is not kept, so that the server cannot
            // inflate the count of messages waiting. One from an epoch the log has not reached
            // makes it sync; sync pages bring ops before messages.
            let known = match ctx.epochs.get(&env.epoch_ref()) {
                Some(devices) => devices.contains_key(&env.sender),
                None => ctx.user_of_device(&env.sender).is_some(),
            };
            if env.epoch > ctx.state.epoch() {
                self.needs_sync.insert(group);
            }
            if !known {
                tracing::debug!(%group, seq = m.seq.0, "message from a device the log does not know, in a group not accepted: dropped");
                return;
            }
            // Not shown until the user accepts being in this group; they are told it waits.
            self.park_message(group, &m);
            let waiting = self
                .store
                .count(T_PARKED, group.as_bytes())
                .map_or(0, |(n, _)| n);
            self.emit(Event::MessageWaiting { group, waiting });
            return;
        }
        // Messages from before this device joined cannot be read, by design.
        if let Some((_, member)) = ctx.state.member_of_device(&me)
            && env.epoch < member.joined_epoch
        {
            let _ = self.store.put(T_SEEN, &seen_key, &m.seq);
            return;
        }
        let Some(devices) = ctx.epochs.get(&env.epoch_ref()) else {
            if env.epoch > ctx.state.epoch() {
                // From an epoch this device has not verified yet: wait for the log. Signed by
                // a device the log knows, it shows that epoch is in use: hold our own posts.
                let claimant = ctx.is_member(&env.sender).then_some(env.sender);
                self.needs_sync.insert(group);
                self.park_message(group, &m);
                if let Some(claimant) = claimant {
                    self.note_behind(group, env.epoch.0, claimant);
                }
                return;
            }
            return self.reject_message(
                group,
                &m,
                "the message's epoch is not in the verified group log".into(),
            );
        };
        let Some((sender, sender_name)) = devices.get(&env.sender).cloned() else {
            return self.reject_message(
                group,
                &m,
                "the sender was not a member in that epoch".into(),
            );
        };
        // An epoch that ended with a removal accepts nothing stored after later epochs began:
        // the server allows no grace there, so such a message was slipped in afterwards.
        let removal = ctx
            .ended_by_removal
            .get(&env.epoch.0)
            .map(|r| (r.user, r.at));
        if removal.is_some()
            && ctx
                .meta
                .epoch_first_seq
                .range(env.epoch.0.saturating_add(1)..)
                .any(|(_, first)| *first < m.seq.0)
        {
            return self.reject_message(
                group,
                &m,
                "sent in an epoch that had already ended with a removal".into(),
            );
        }
        if let Some(ctx) = self.groups.get_mut(&group) {
            ctx.meta.note_epoch_seq(m.envelope.epoch.0, m.seq.0);
        }
        let env = &m.envelope;
        if env.sender == me {
            // Our own message (echoed by a sync, or sent before a crash or a restore from
            // backup): make sure our chain never uses that key again.
            let own_key = key2(group.as_bytes(), env.epoch_hash.as_bytes());
            if let Ok(Some(bytes)) = self.store.get_bytes(T_OWN_CHAINS, &own_key)
                && bytes.len() > 1
                && let Ok(mut chain) = SenderChain::from_bytes(&bytes[1..])
                && chain.iteration() <= env.iteration
            {
                chain.advance_to(env.iteration.saturating_add(1));
                let _ = self.save_chain(&own_key, &chain, bytes[0] == 1);
            }
            // A message still in the outbox reached the server after all.
            if let Ok(Some(entry)) = self.store.get::<OutboxEntry>(T_OUTBOX, &seen_key) {
                let _ = self.store.remove(T_OUTBOX, &seen_key);
                self.outbox_delivered(group, m.seq, id, entry);
                return;
            }
            let _ = self.store.put(T_SEEN, &seen_key, &m.seq);
            return;
        }
        let chain_key = key3(
            group.as_bytes(),
            env.epoch_hash.as_bytes(),
            env.sender.as_bytes(),
        );
        let chain_bytes = match self.store.get_bytes(T_RECV_CHAINS, &chain_key) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                // The sender key has not arrived yet: keep the message until it does.
                self.park_message(group, &m);
                return;
            }
            Err(e) => return self.reject_message(group, &m, e.to_string()),
        };
        let Ok(mut chain) = ReceiverChain::from_bytes(&chain_bytes) else {
            return self.reject_message(group, &m, "stored sender key is damaged".into());
        };
        let opened = match env.open(&mut chain) {
            Ok(opened) => opened,
            Err(e) => return self.reject_message(group, &m, e.to_string()),
        };
        let _ = self
            .store
            .put_bytes(T_RECV_CHAINS, &chain_key, &chain.to_bytes());
        let content: MessageContent = match serde_json::from_slice(&opened.body) {
            Ok(c) => c,
            Err(_) => {
                return self.reject_message(group, &m, "the message content is not valid".into());
            }
        };
        // The member whose removal ended this epoch wrote this after the removal (by their own
        // clock): whatever the server's order says, it was posted after they were out.
        if let Some((removed, removed_at)) = removal
            && removed == sender
            && content.sent_at > removed_at
        {
            return self.reject_message(
                group,
                &m,
                "written by a removed member after their removal".into(),
            );
        }
        self.check_order(group, &m, &sender_name, content.seen_seq);
        let _ = self.store.put(T_SEEN, &seen_key, &m.seq);
        let (text, reply_to) = match content.body {
            ContentBody::Text { text, reply_to } => (text, reply_to),
            ContentBody::Pinned {
                kind,
                version,
                text,
                key,
            } => {
                self.receive_pinned(group, env.sender, kind, version, text, &key);
                return;
            }
            _ => return,
        };
        // Kept (encrypted at rest) so this message can be reported verifiably later.
        let evidence = moderation::Evidence {
            envelope: m.envelope.clone(),
            body: opened.body.to_vec(),
            franking_key: *opened.franking_key,
        };
        let _ = self.store.put(
            T_EVIDENCE,
            &key2(group.as_bytes(), &m.seq.0.to_be_bytes()),
            &evidence,
        );
        let mut message = ChatMessage {
            group,
            seq: m.seq,
            number: 0,
            id,
            sender,
            sender_device: env.sender,
            sender_name,
            sent_at: content.sent_at,
            received_at: m.received_at,
            text,
            reply_to,
        };
        let _ = self.store_message(&mut message);
        let _ = self.store.put(T_SEEN, &seen_key, &m.seq);
        self.emit(Event::Message(message));
    }

    /// Warns when the server's order contradicts the author's: a message stored at or before
    /// the seq its author says they had already read (`seen_seq`), or one sender's messages
    /// stored out of the order that sender wrote them in: within an epoch a sender's chain iteration only grows, so a message stored
    /// after another of theirs must have a higher iteration. Keeps, per (group, epoch,
    /// sender), the highest iteration seen and where it was stored; messages processed late
    /// (parked until their key came) are compared the other way round.
    fn check_order(
        &mut self,
        group: GroupId,
        m: &StoredMessage,
        sender_name: &str,
        seen_seq: Option<Seq>,
    ) {
        if let Some(seen) = seen_seq
            && seen >= m.seq
        {
            self.order_warning(
                group,
                m.seq.0,
                None,
                format!(
                    "the server's order is wrong: {sender_name} had already read message #{} \
                     when writing this one, yet the server stored it as #{}",
                    seen.0, m.seq.0
                ),
            );
        }
        let env = &m.envelope;
        let key = key3(
            group.as_bytes(),
            env.epoch_hash.as_bytes(),
            env.sender.as_bytes(),
        );
        let seen: Option<(u32, u64)> = self.store.get(T_ORDER, &key).ok().flatten();
        if let Some((iteration, seq)) = seen {
            let swapped = (m.seq.0 > seq && env.iteration < iteration)
                || (m.seq.0 < seq && env.iteration > iteration);
            if swapped {
                let (earlier, later) = (m.seq.0.min(seq), m.seq.0.max(seq));
                self.order_warning(
                    group,
                    m.seq.0,
                    Some(seq),
                    format!(
                        "the server's order is wrong: {sender_name} wrote message #{later} \
                         before message #{earlier}"
                    ),
                );
            }
            if env.iteration <= iteration {
                return;
            }
        }
        let _ = self.store.put(T_ORDER, &key, &(env.iteration, m.seq.0));
    }

    /// Reports that message `seq` is out of its author's order — unless it, or the message it
    /// was found swapped with (`other`), was already reported.
    fn order_warning(&mut self, group: GroupId, seq: u64, other: Option<u64>, reason: String) {
        let known = |s: u64| self.order_warned.contains(&(group, s));
        if known(seq) || other.is_some_and(known) {
            return;
        }
        if self.order_warned.len() >= MAX_ORDER_WARNED {
            self.order_warned.clear();
        }
        self.order_warned.insert((group, seq));
        tracing::warn!(%group, seq, "the server's order contradicts the author's");
        self.emit(Event::OrderWarning(Rejection { group, seq, reason }));
    }

    /// Processes one inbox item. Returns whether it may be acknowledged: every item is, once
    /// it is stored or deliberately dropped, so nothing piles up on the server.
    fn handle_inbox(&mut self, item: &InboxItem) -> bool {
        let sealed = &item.payload;
        if !matches!(
            sealed.kind,
            SealKind::SenderKey
                | SealKind::Report
                | SealKind::FacilitatorNote
                | SealKind::JoinRequest
        ) {
            // Kinds this version does not use are dropped.
            return true;
        }
        if sealed.kind != SealKind::JoinRequest && self.is_early(sealed) {
            return self.park_sealed(item);
        }
        match sealed.kind {
            SealKind::SenderKey => self.receive_sender_key(sealed),
            SealKind::JoinRequest => self.receive_join_request(sealed),
            SealKind::Report => self.receive_report(sealed),
            _ => self.receive_note(sealed),
        }
    }

    /// Whether a sealed payload belongs to a group or an epoch ahead of this device's verified
    /// log (normal after a reconnect: the inbox arrives before the sync).
    fn is_early(&self, sealed: &SealedPayload) -> bool {
        match self.groups.get(&sealed.group) {
            None => true,
            Some(ctx) => {
                !ctx.epochs.contains_key(&sealed.epoch_ref()) && sealed.epoch > ctx.state.epoch()
            }
        }
    }

    /// Keeps an early sealed payload until the log gets to its epoch. Only payloads that open
    /// and are signed by their sender are kept, at most [`MAX_PARKED_PER_SENDER`] per sender,
    /// and only for epochs at most [`MAX_EPOCH_AHEAD`] ahead, so junk cannot crowd out real keys.
    fn park_sealed(&mut self, item: &InboxItem) -> bool {
        let sealed = &item.payload;
        if seal::open(&self.identity, sealed).is_err() {
            return true;
        }
        if let Some(ctx) = self.groups.get(&sealed.group)
            && sealed.epoch.0 > ctx.state.epoch().0.saturating_add(MAX_EPOCH_AHEAD)
        {
            return true;
        }
        let prefix = key2(sealed.group.as_bytes(), sealed.sender.as_bytes());
        if let Ok((n, _)) = self.store.count(T_PARKED_KEYS, &prefix)
            && n >= MAX_PARKED_PER_SENDER
        {
            return true;
        }
        self.needs_sync.insert(sealed.group);
        // Opened and signed by a current member's device: that member uses a later epoch.
        if self
            .groups
            .get(&sealed.group)
            .is_some_and(|ctx| ctx.is_member(&sealed.sender))
        {
            self.note_behind(sealed.group, sealed.epoch.0, sealed.sender);
        }
        let key = key3(
            sealed.group.as_bytes(),
            sealed.sender.as_bytes(),
            &item.inbox_id.to_be_bytes(),
        );
        self.store.put(T_PARKED_KEYS, &key, sealed).is_ok()
    }

    /// Processes the sealed payloads kept for a group whose log has since moved on.
    fn retry_parked_keys(&mut self, group: GroupId) {
        let Ok(parked) =
            self.store
                .scan::<SealedPayload>(T_PARKED_KEYS, group.as_bytes(), usize::MAX)
        else {
            return;
        };
        for (key, sealed) in parked {
            if self.is_early(&sealed) {
                continue;
            }
            let _ = self.store.remove(T_PARKED_KEYS, &key);
            match sealed.kind {
                SealKind::SenderKey => self.receive_sender_key(&sealed),
                SealKind::Report => self.receive_report(&sealed),
                _ => self.receive_note(&sealed),
            };
        }
    }

    fn receive_sender_key(&mut self, sealed: &SealedPayload) -> bool {
        let group = sealed.group;
        let Some(ctx) = self.groups.get(&group) else {
            return true;
        };
        let Some(devices) = ctx.epochs.get(&sealed.epoch_ref()) else {
            tracing::warn!(%group, "sender key for an epoch not in the verified log: dropped");
            return true;
        };
        if !devices.contains_key(&sealed.sender) || !devices.contains_key(&self.device()) {
            tracing::warn!(%group, "sender key from or to a non-member: dropped");
            return true;
        }
        let Ok(distribution) = seal::open(&self.identity, sealed) else {
            tracing::warn!(%group, "sender key does not open: dropped");
            return true;
        };
        let chain_key = key3(
            group.as_bytes(),
            sealed.epoch_hash.as_bytes(),
            sealed.sender.as_bytes(),
        );
        // The first distribution per (group, epoch, sender) wins: a replayed one must never
        // rewind the chain and make old messages decrypt again.
        if matches!(self.store.get_bytes(T_RECV_CHAINS, &chain_key), Ok(Some(_))) {
            return true;
        }
        let Ok(chain) = ReceiverChain::from_distribution(&distribution) else {
            return true;
        };
        if self
            .store
            .put_bytes(T_RECV_CHAINS, &chain_key, &chain.to_bytes())
            .is_err()
        {
            return false;
        }
        self.retry_parked(group);
        true
    }

    fn park_message(&mut self, group: GroupId, m: &StoredMessage) {
        if let Ok((n, Some(oldest_key))) = self.store.count(T_PARKED, group.as_bytes())
            && n >= MAX_PARKED
        {
            if let Ok(Some(oldest)) = self.store.get::<StoredMessage>(T_PARKED, &oldest_key) {
                self.reject_message(group, &oldest, "its sender key never arrived".into());
            }
            let _ = self.store.remove(T_PARKED, &oldest_key);
        }
        let _ = self
            .store
            .put(T_PARKED, &key2(group.as_bytes(), &m.seq.0.to_be_bytes()), m);
    }

    fn retry_parked(&mut self, group: GroupId) {
        // Held for the user's consent (§11.7), nothing can be shown yet, whatever key came:
        // they are processed when the user accepts the group.
        if self
            .groups
            .get(&group)
            .is_some_and(|c| !c.meta.accepted && c.meta.removed_after_epoch.is_none())
        {
            return;
        }
        let Ok(parked) = self
            .store
            .scan::<StoredMessage>(T_PARKED, group.as_bytes(), usize::MAX)
        else {
            return;
        };
        if parked.is_empty() {
            return;
        }
        for (key, m) in parked {
            let _ = self.store.remove(T_PARKED, &key);
            self.handle_message(group, m);
        }
        // What those messages taught (the per-epoch cut-off, the highest seq seen) is kept;
        // messages in cursor order save it with the cursor.
        if let Some(ctx) = self.groups.get(&group) {
            let _ = self.store.put(T_GROUPS, group.as_bytes(), &ctx.meta);
        }
    }

    fn receive_join_request(&mut self, sealed: &SealedPayload) -> bool {
        let group = sealed.group;
        let Ok(bytes) = seal::open(&self.identity, sealed) else {
            return true;
        };
        let Ok(request) = serde_json::from_slice::<JoinRequestPayload>(&bytes) else {
            return true;
        };
        let Some(ctx) = self.groups.get(&group) else {
            return true;
        };
        let t = now();
        let valid_invite = ctx.state.invite(&request.invite).is_some_and(|i| {
            i.requires_approval && !i.revoked && i.uses < i.max_uses && i.expires_at > t
        });
        // Every device the request lists must be the one that asked (the only device whose
        // key the request proves): another listed device could be someone else's, and its
        // posts would be shown as the requester's. The `add` approving it checks the same.
        let device_ok = confide_protocol::group_log::only_proven_device(&request.member)
            .is_ok_and(|d| d.device == sealed.sender);
        let sig_ok = confide_protocol::group_log::verify_join_sig(
            &request.invite,
            &group,
            &request.member.user,
            &sealed.sender,
            &request.invite_sig,
        )
        .is_ok();
        if !(valid_invite && device_ok && sig_ok && request.member.validate().is_ok()) {
            tracing::warn!(%group, "invalid join request dropped");
            return true;
        }
        let user = request.member.user;
        let looks_like = look_alikes(&ctx.state, &user, &request.member.display_name);
        let key = key2(group.as_bytes(), user.as_bytes());
        // A later request under the same user id from another device never replaces the first.
        if let Ok(Some(existing)) = self.store.get::<JoinRequestPayload>(T_JOIN_REQUESTS, &key)
            && existing.member.devices.first().map(|d| d.device) != Some(sealed.sender)
        {
            tracing::warn!(%group, "conflicting join request dropped");
            return true;
        }
        if self.store.put(T_JOIN_REQUESTS, &key, &request).is_err() || self.store.flush().is_err() {
            return false;
        }
        self.emit(Event::JoinRequest(JoinRequest {
            group,
            user,
            device: sealed.sender,
            display_name: request.member.display_name.clone(),
            note: request.note.clone(),
            looks_like,
        }));
        true
    }

    /// Verifies and applies the next op of a group, stores it, and reports the change.
    ///
    /// An op that does not verify changes nothing: the group keeps its last verified head and
    /// goes on syncing, so it recovers by itself once the server serves the valid chain. The
    /// user is told once per refused op ([`Event::GroupRejected`]), however often the server
    /// serves it again.
    fn apply_op(&mut self, group: GroupId, op: &SignedOp) -> Result<(), ClientError> {
        let me = self.device();
        let Some(ctx) = self.groups.get_mut(&group) else {
            return Err(ClientError::UnknownGroup);
        };
        if let Some(why) = &ctx.meta.tampered {
            return Err(ClientError::GroupTampered(why.clone()));
        }
        let was_member = ctx.is_member(&me);
        let old_role = ctx.state.member_of_device(&me).map(|(_, m)| m.role);
        let applied = match ctx.state.apply(op) {
            Ok(applied) => applied,
            Err(e) => {
                // A fork is told as such only when the other op is validly signed by a device
                // of the log and chains onto the same predecessor: anything else at that
                // position is just an op that does not verify.
                let (seq, reason) = match &e {
                    confide_protocol::group_log::LogError::Fork { seq }
                        if is_signed_fork(&self.store, ctx, group, op) =>
                    {
                        (
                            *seq,
                            format!(
                                "a device of the group signed a different op #{seq} than the one \
                                 this device verified (a change the server refused when two were \
                                 made at once, or a fork of the group's history); this device \
                                 keeps its own"
                            ),
                        )
                    }
                    confide_protocol::group_log::LogError::Fork { seq } => (
                        *seq,
                        format!(
                            "the server served a second op #{seq} that no device of the group \
                             signed onto the verified history; it was refused and this device \
                             keeps the group as last verified"
                        ),
                    ),
                    _ => {
                        let seq = ctx.state.seq().saturating_add(1);
                        (
                            seq,
                            format!(
                                "the server served an op #{seq} that does not verify ({e}); it \
                                 was refused and this device keeps the group as last verified"
                            ),
                        )
                    }
                };
                if !ctx.meta.refused_at.contains(&seq) {
                    ctx.meta.refused_at.push(seq);
                    let excess = ctx
                        .meta
                        .refused_at
                        .len()
                        .saturating_sub(MAX_REFUSED_OPS_REMEMBERED);
                    ctx.meta.refused_at.drain(..excess);
                    let _ = self.store.put(T_GROUPS, group.as_bytes(), &ctx.meta);
                    tracing::warn!(%group, seq, code = e.code(), "op served by the server refused");
                    self.emit(Event::GroupRejected(Rejection { group, seq, reason }));
                }
                return Err(ClientError::OpRefused(e.to_string()));
            }
        };
        ctx.record_epoch();
        ctx.note_op(&applied.op);
        // Caught up — or every member whose claim held us back is no longer a member.
        let had_claims = !ctx.meta.behind_claims.is_empty();
        let log_epoch = ctx.state.epoch().0;
        let state = &ctx.state;
        ctx.meta
            .behind_claims
            .retain(|device, epoch| *epoch > log_epoch && state.member_of_device(device).is_some());
        let caught_up = had_claims && ctx.meta.behind_claims.is_empty();
        let was_warned = ctx.meta.behind_warned.is_some();
        if caught_up {
            ctx.meta.behind_warned = None;
            self.held_dirty = true;
            // Outbox entries kept back while behind go now, not at the next reconnect.
            self.outbox_retry_at = Some(tokio::time::Instant::now());
            self.store.put(T_GROUPS, group.as_bytes(), &ctx.meta)?;
        }
        let epoch_changed = applied.op.body.changes_epoch();
        let seq = applied.op.seq;
        self.store
            .put(T_OPS, &key2(group.as_bytes(), &seq.to_be_bytes()), op)?;
        // The author's user: from the epoch before the op (a member who just left is no longer
        // in the current state).
        let author = ctx
            .user_of_device(&applied.op.author)
            .unwrap_or(UserId([0; 16]));
        let is_member = ctx.is_member(&me);
        let new_role = ctx.state.member_of_device(&me).map(|(_, m)| m.role);
        let change = GroupChange {
            group,
            op_seq: seq,
            action: applied.op.body.action().to_string(),
            author,
            target: op_target(&applied.op.body),
            at: applied.op.at,
        };
        self.check_key_change(group, &applied.op.body);
        self.emit(Event::GroupChanged(change));
        if caught_up && was_warned {
            self.emit(Event::CaughtUp { group });
        }
        if epoch_changed {
            self.retry_parked_keys(group);
        }
        self.after_op(group, &applied.op.body, epoch_changed);
        // What members see among the messages (a removal, a deletion), while this device is in
        // the group and the user has accepted it.
        if was_member && let Some(ctx) = self.groups.get(&group) {
            let notices = if ctx.meta.accepted {
                let people = moderation::known_people(ctx);
                self.op_notices(group, ctx, &people, &applied.op, ctx.state.epoch().0)
            } else {
                Vec::new()
            };
            for notice in notices {
                self.emit(Event::Notice(notice));
            }
        }
        if was_member && !is_member {
            // Being in the group again later needs the user's consent again (their own join
            // request, or accepting an invitation), as for any group: §11.7.
            if let Some(ctx) = self.groups.get_mut(&group) {
                ctx.meta.accepted = false;
                ctx.meta.removed_after_epoch = Some(ctx.state.epoch().0.saturating_sub(1));
                self.store.put(T_GROUPS, group.as_bytes(), &ctx.meta)?;
            }
            self.emit(Event::Removed {
                group,
                at: applied.op.at,
            });
        }
        if !was_member && is_member {
            self.became_member(group, &applied.op.author);
        }
        if let (Some(old), Some(new)) = (old_role, new_role)
            && old != new
        {
            self.emit(Event::RoleChanged { group, role: new });
        }
        Ok(())
    }

    /// This device was added to a group (or its join was approved): joined if the user asked
    /// for it, otherwise an invitation the user accepts or declines.
    fn became_member(&mut self, group: GroupId, author: &DeviceId) {
        let asked: Option<confide_protocol::OpHash> = self
            .store
            .get(T_PENDING_JOINS, group.as_bytes())
            .ok()
            .flatten();
        let Some(ctx) = self.groups.get_mut(&group) else {
            return;
        };
        // A former member whose own join request was approved.
        if !ctx.meta.accepted && asked == Some(ctx.state.genesis_hash()) {
            ctx.meta.accepted = true;
            let _ = self.store.put(T_GROUPS, group.as_bytes(), &ctx.meta);
        }
        if ctx.meta.accepted {
            let _ = self.store.remove(T_PENDING_JOINS, group.as_bytes());
            self.emit(Event::Joined { group });
            return;
        }
        let (by, by_name) = ctx
            .epochs
            .values()
            .find_map(|d| d.get(author).cloned())
            .unwrap_or((UserId([0; 16]), String::new()));
        let private = private_peer(ctx, &self.profile.user).is_some();
        self.emit(Event::Invited {
            group,
            by,
            by_name,
            private,
        });
    }

    /// Accepts being in a group someone else added this device to.
    pub(crate) fn accept_group(&mut self, group: GroupId) -> Result<(), ClientError> {
        self.member_ctx(group)?;
        let ctx = self
            .groups
            .get_mut(&group)
            .ok_or(ClientError::UnknownGroup)?;
        ctx.meta.accepted = true;
        let meta = ctx.meta.clone();
        self.store.put(T_GROUPS, group.as_bytes(), &meta)?;
        self.emit(Event::Joined { group });
        self.retry_parked(group);
        Ok(())
    }

    /// Warns when a user the device has seen before appears with other device keys.
    fn check_key_change(&mut self, group: GroupId, body: &OpBody) {
        let entry = match body {
            OpBody::Genesis { creator, .. } => creator,
            OpBody::Join { member, .. } | OpBody::Add { member, .. } => member,
            _ => return,
        };
        if entry.user == self.profile.user {
            return;
        }
        let key = entry.user.as_bytes().to_vec();
        let devices: Vec<DeviceKeys> = entry.devices.clone();
        match self.store.get::<Vec<DeviceKeys>>(T_KNOWN_KEYS, &key) {
            Ok(Some(known)) if known != devices => {
                self.emit(Event::KeyChanged {
                    group,
                    user: entry.user,
                    display_name: entry.display_name.clone(),
                });
                let _ = self.store.put(T_KNOWN_KEYS, &key, &devices);
            }
            Ok(Some(_)) => {}
            _ => {
                let _ = self.store.put(T_KNOWN_KEYS, &key, &devices);
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // Sync
    // ---------------------------------------------------------------------------------------

    async fn process_needs_sync(&mut self) {
        // One pass over what is due now: a group that asks for more (a long backlog, or a
        // server that never says `complete`) waits for the next turn, after other work.
        for group in std::mem::take(&mut self.needs_sync) {
            if self.conn.is_none() {
                self.needs_sync.insert(group);
                continue;
            }
            if let Err(e) = self.sync_group(group, None).await {
                tracing::warn!(%group, error = %e, "sync failed");
            }
        }
    }

    /// Posts again every message that was handed to the server but not acknowledged.
    async fn resend_outbox(&mut self) {
        let Ok(mut entries) = self.store.scan::<OutboxEntry>(T_OUTBOX, &[], usize::MAX) else {
            return;
        };
        // In the order they were sealed, so the server stores each sender's messages in the
        // order they were written (receivers check it: [`Self::check_order`]).
        entries.sort_by_key(|(_, e)| (e.envelope.group, e.envelope.epoch, e.envelope.iteration));
        for (key, entry) in entries {
            let group = entry.envelope.group;
            if self.is_behind(group) {
                // Sealed before this device saw that members use a later epoch: not posted
                // while behind. Once caught up it is posted as it is (an honest server that has
                // it already answers with its seq; one that does not refuses it as stale, and
                // it is sealed again below), so it is never stored twice.
                continue;
            }
            // Sealed in an epoch that has since ended with a removal, and not echoed back by
            // the sync that showed the removal: posting it now could hand it to the removed
            // member, who holds that epoch's keys. Sealed again for the current epoch instead.
            if self.groups.get(&group).is_some_and(|ctx| {
                entry.envelope.epoch < ctx.state.epoch()
                    && ctx.ended_by_removal.contains_key(&entry.envelope.epoch.0)
            }) {
                self.reseal_later(group, &key, &entry.content);
                continue;
            }
            let envelope = entry.envelope.clone();
            let reply = match self.request(|id| ClientFrame::Post { id, envelope }).await {
                Ok(reply) => reply,
                Err(_) => return,
            };
            if self.keep_for_retry(&reply) {
                // This one and the rest are posted again later, in order.
                break;
            }
            // Sealed for an epoch that has since ended: held, to be sealed again for the
            // current one (after a sync) — kept before the outbox copy goes, never lost.
            if let ServerFrame::Error {
                code: ErrorCode::StaleEpoch,
                ..
            } = reply
            {
                self.reseal_later(group, &key, &entry.content);
                continue;
            }
            if let ServerFrame::Posted { seq, message, .. } = &reply
                && let Err(reason) = self.check_posted(group, *seq, *message, &entry.envelope)
            {
                // Kept, with the rest behind it, and posted again later.
                self.refuse_posted(group, *seq, reason);
                break;
            }
            let _ = self.store.remove(T_OUTBOX, &key);
            match reply {
                ServerFrame::Posted { seq, message, .. } => {
                    self.outbox_delivered(group, seq, message, entry)
                }
                ServerFrame::Error { message, .. } => {
                    self.emit(Event::SendFailed {
                        group,
                        reason: message,
                    });
                }
                _ => {}
            }
        }
        let _ = self.store.flush();
    }

    /// Takes an outbox entry sealed for an epoch that has ended and holds its content, to be
    /// sealed again for the current epoch after a sync. Held before the outbox copy goes (a
    /// crash keeps one or the other); if it cannot be held, the user is told it was not sent.
    fn reseal_later(&mut self, group: GroupId, outbox_key: &[u8], content: &MessageContent) {
        match self.hold(group, content) {
            Ok(()) => {}
            Err(e) => self.emit(Event::SendFailed {
                group,
                reason: e.to_string(),
            }),
        }
        let _ = self.store.remove(T_OUTBOX, outbox_key);
        let _ = self.store.flush();
        self.needs_sync.insert(group);
    }

    /// Whether `reply` to a post refuses it for a passing reason; if so, the message stays in
    /// the outbox and the outbox is posted again after `retry_after_ms` (or [`OUTBOX_RETRY`]),
    /// unless a retry is already due sooner.
    fn keep_for_retry(&mut self, reply: &ServerFrame) -> bool {
        let ServerFrame::Error {
            code,
            retry_after_ms,
            ..
        } = reply
        else {
            return false;
        };
        if !is_passing(*code) {
            return false;
        }
        self.retry_outbox_after(*retry_after_ms);
        true
    }

    /// Schedules the outbox (and held messages) to be posted again after `retry_after_ms` (or
    /// [`OUTBOX_RETRY`]), unless a retry is already due sooner.
    fn retry_outbox_after(&mut self, retry_after_ms: Option<u64>) {
        let wait = retry_after_ms
            .map_or(OUTBOX_RETRY, Duration::from_millis)
            .clamp(OUTBOX_RETRY_MIN, OUTBOX_RETRY_MAX);
        let at = tokio::time::Instant::now() + wait;
        self.outbox_retry_at = Some(self.outbox_retry_at.map_or(at, |due| due.min(at)));
    }

    /// A message from the outbox reached the server (acknowledged late, or echoed by a sync):
    /// it becomes part of this device's history.
    fn outbox_delivered(&mut self, group: GroupId, seq: Seq, id: MessageId, entry: OutboxEntry) {
        let _ = self
            .store
            .put(T_SEEN, &key2(group.as_bytes(), id.as_bytes()), &seq);
        self.note_own_post(group, entry.envelope.epoch.0, seq);
        if let Some(message) = self.own_message(group, seq, id, entry.content) {
            self.emit(Event::Sent(message));
        }
    }

    async fn sync_all(&mut self) -> Result<(), ClientError> {
        let reply = self.request_ok(|id| ClientFrame::ListGroups { id }).await?;
        let ServerFrame::Groups { groups, .. } = reply else {
            return Err(ClientError::Unexpected("groups".into()));
        };
        let mut all: BTreeSet<GroupId> = groups.iter().map(|g| g.group).collect();
        all.extend(self.groups.keys().copied());
        all.extend(std::mem::take(&mut self.needs_sync));
        self.sync_failure = None;
        for group in all {
            match self.sync_group(group, None).await {
                Ok(()) => self.sync_works_again(group),
                Err(e) if is_passing_failure(&e) => {
                    tracing::warn!(%group, error = %e, "sync failed");
                    self.sync_failure.get_or_insert(e);
                }
                Err(e) => self.sync_refused(group, e),
            }
        }
        self.full_sync_done = true;
        self.flush_acks().await;
        let groups: Vec<GroupId> = self.groups.keys().copied().collect();
        for group in groups {
            self.enforce_retention(group);
        }
        let _ = self.store.flush();
        self.emit(Event::Synced);
        Ok(())
    }

    /// A group's sync was refused (or failed) for a reason that will not pass by itself (the
    /// server does not know the group, or says this device is not in it; it served a log that
    /// cannot be its genesis). Reported once — as [`Event::SyncRefused`] and by the next
    /// [`Command::Sync`] — and then only logged, so that one such group does not make every
    /// later sync fail; the refusal and its date stay in [`crate::GroupInfo::sync_refused`]
    /// until a sync works again, for front ends to show wherever the group is.
    ///
    /// A group this device never held is no concern of its user's: a server listing a made-up
    /// group and refusing it must not make syncs fail, so that is only logged.
    fn sync_refused(&mut self, group: GroupId, e: ClientError) {
        let code = e.code().to_string();
        let Some(ctx) = self.groups.get_mut(&group) else {
            tracing::debug!(%group, error = %e, "sync of a group this device never held refused");
            return;
        };
        let known = ctx.meta.sync_refused.as_deref() == Some(code.as_str());
        if !known {
            ctx.meta.sync_refused = Some(code.clone());
            ctx.meta.sync_refused_at = Some(now());
            let _ = self.store.put(T_GROUPS, group.as_bytes(), &ctx.meta);
        }
        tracing::warn!(%group, error = %e, reported = known, "sync refused");
        if known {
            return;
        }
        self.emit(Event::SyncRefused {
            group,
            reason: e.to_string(),
        });
        self.refusals_unreported.push(e);
    }

    /// A group's sync worked: a lasting refusal noted for it is over.
    fn sync_works_again(&mut self, group: GroupId) {
        if let Some(ctx) = self.groups.get_mut(&group)
            && ctx.meta.sync_refused.take().is_some()
        {
            ctx.meta.sync_refused_at = None;
            let _ = self.store.put(T_GROUPS, group.as_bytes(), &ctx.meta);
        }
    }

    /// What the latest full sync should report, once: a passing failure of its own, else the
    /// first lasting refusal not reported yet (all of them are then reported: each was also
    /// an [`Event::SyncRefused`]).
    fn take_sync_outcome(&mut self) -> Result<(), ClientError> {
        if let Some(e) = self.sync_failure.take() {
            return Err(e);
        }
        let mut refusals = std::mem::take(&mut self.refusals_unreported).into_iter();
        refusals.next().map_or(Ok(()), Err)
    }

    /// Fetches and processes everything new in one group (ops first, then messages).
    async fn sync_group(
        &mut self,
        group: GroupId,
        invite: Option<frames::InviteProof>,
    ) -> Result<(), ClientError> {
        for _ in 0..MAX_SYNC_PAGES {
            let (after_op_seq, after_seq) = match self.groups.get(&group) {
                Some(ctx) if ctx.meta.tampered.is_some() => return Ok(()),
                // A former member still asks: the server answers with nothing new, or with the
                // log since, if this device was admitted again.
                Some(ctx) => (Some(ctx.state.seq()), Seq(ctx.meta.next_seq.max(1) - 1)),
                None => (None, Seq(0)),
            };
            let reply = self
                .request_ok(|id| ClientFrame::Sync {
                    id,
                    group,
                    after_op_seq,
                    after_seq,
                    limit: SYNC_PAGE,
                    invite,
                })
                .await?;
            let ServerFrame::SyncPage {
                ops,
                messages,
                next_seq,
                complete,
                ..
            } = reply
            else {
                return Err(ClientError::Unexpected("sync_page".into()));
            };
            let mut refused = false;
            for op in &ops {
                if !self.groups.contains_key(&group) {
                    let state = match GroupState::from_genesis(op) {
                        Ok(state) => state,
                        Err(e) => {
                            return Err(protocol(format!(
                                "the group's first op is not a valid genesis: {e}"
                            )));
                        }
                    };
                    // A group this device did not create or join itself: accepted only if it
                    // matches a join request the user made; otherwise the user is asked.
                    let pending: Option<confide_protocol::OpHash> =
                        self.store.get(T_PENDING_JOINS, group.as_bytes())?;
                    let accepted = pending == Some(state.genesis_hash());
                    self.store
                        .put(T_OPS, &key2(group.as_bytes(), &0u64.to_be_bytes()), op)?;
                    let meta = GroupMeta {
                        next_seq: 1,
                        accepted,
                        ..GroupMeta::default()
                    };
                    self.store.put(T_GROUPS, group.as_bytes(), &meta)?;
                    self.check_key_change(group, &state_genesis_body(op));
                    self.groups.insert(group, GroupCtx::new(state, meta));
                    self.retry_parked_keys(group);
                    continue;
                }
                if self.apply_op(group, op).is_err() {
                    // Refused (and the user told once): the rest of this page's ops cannot
                    // chain onto the verified head. Its messages are still checked against
                    // the verified log; the next sync asks from the verified head again.
                    refused = true;
                    break;
                }
            }
            // Only messages after the position asked from, each after the one before: a page
            // that serves one again at or below a position already passed would give it
            // another message's place (PROTOCOL.md §11.2).
            let mut last = after_seq;
            for m in messages {
                let seq = m.seq;
                if seq <= last {
                    tracing::warn!(%group, seq = seq.0, after = last.0, "sync page message out of order: ignored");
                    continue;
                }
                last = seq;
                self.handle_message(group, m);
                self.advance_cursor(group, Seq(seq.0.saturating_add(1)));
            }
            let before = (after_op_seq, after_seq);
            self.advance_cursor(group, next_seq);
            if complete || refused || self.conn.is_none() {
                self.warn_if_behind(group);
                return Ok(());
            }
            // A page that moves neither cursor would repeat forever: stop (a server bug or a
            // hostile server).
            let now_at = self
                .groups
                .get(&group)
                .map(|c| (Some(c.state.seq()), Seq(c.meta.next_seq.max(1) - 1)));
            if now_at == Some(before) {
                return Err(ClientError::Unexpected(
                    "the server's sync made no progress".into(),
                ));
            }
        }
        // Enough for one go: the rest follows in a later sync, after other work.
        self.needs_sync.insert(group);
        Ok(())
    }
}

/// The other person, if `ctx` is a private conversation of `me`'s (what `open_private`
/// makes): a group of exactly two members, `me` and one other, for which no invite was ever
/// made, and in which nobody else was ever a member — so one of the two created it and added
/// the other. "Two members now" alone is not enough: someone could create a group, add two
/// people, hand one of them the facilitator role and leave, and it would pass as a private
/// conversation with a person who never started it.
fn private_peer(ctx: &GroupCtx, me: &UserId) -> Option<crate::Peer> {
    let members = ctx.state.members();
    if members.len() != 2 || !members.contains_key(me) || !ctx.state.invites().is_empty() {
        return None;
    }
    let (peer, entry) = members.iter().find(|(user, _)| *user != me)?;
    // Every epoch of the verified log, the genesis (its creator alone) included.
    let only_the_two = ctx
        .epochs
        .values()
        .all(|devices| devices.values().all(|(user, _)| user == me || user == peer));
    only_the_two.then(|| crate::Peer {
        user: *peer,
        display_name: entry.entry.display_name.clone(),
        shared_groups: Vec::new(),
        looks_like: Vec::new(),
    })
}

/// Whether `op`, which conflicts with the op this device holds at the head's position, is
/// evidence of a real fork: validly signed by a device the verified log knows, and chained onto
/// the same predecessor as the op it conflicts with.
fn is_signed_fork(store: &Store, ctx: &GroupCtx, group: GroupId, op: &SignedOp) -> bool {
    let Ok(other) = op.verify() else {
        return false;
    };
    let Some(before) = other.seq.checked_sub(1) else {
        return false;
    };
    let predecessor: Option<SignedOp> = store
        .get(T_OPS, &key2(group.as_bytes(), &before.to_be_bytes()))
        .ok()
        .flatten();
    ctx.user_of_device(&other.author).is_some()
        && predecessor.is_some_and(|p| p.hash() == other.prev)
}

/// The body of a genesis op, for key-change bookkeeping (empty when it does not parse).
fn state_genesis_body(op: &SignedOp) -> OpBody {
    op.verify().map(|o| o.body).unwrap_or(OpBody::Leave {})
}

// -------------------------------------------------------------------------------------------
// Commands
// -------------------------------------------------------------------------------------------

impl Actor {
    async fn handle_command(&mut self, cmd: Command) {
        match cmd {
            Command::CreateGroup(reply) => {
                let r = self.create_group().await;
                let _ = reply.send(r);
            }
            Command::CreateInvite {
                group,
                requires_approval,
                max_uses,
                valid_for,
                reply,
            } => {
                let r = self
                    .create_invite(group, requires_approval, max_uses, valid_for)
                    .await;
                let _ = reply.send(r);
            }
            Command::Join {
                invite,
                note,
                reply,
            } => {
                let r = self.join(invite, note).await;
                let _ = reply.send(r);
            }
            Command::Approve { group, user, reply } => {
                let r = self.approve(group, user).await;
                let _ = reply.send(r);
            }
            Command::Op { group, body, reply } => {
                let r = self.append(group, body).await;
                let _ = reply.send(r);
            }
            Command::Send {
                group,
                text,
                reply_to,
                reply,
            } => {
                let r = self.send_text(group, text, reply_to).await;
                let _ = reply.send(r);
            }
            Command::History {
                group,
                before,
                limit,
                reply,
            } => {
                let _ = reply.send(self.history(group, before, limit));
            }
            Command::SeqOfNumber {
                group,
                number,
                reply,
            } => {
                let _ = reply.send(self.seq_of_number(group, number));
            }
            Command::MessagePlace {
                group,
                message,
                reply,
            } => {
                let _ = reply.send(self.message_place(group, message));
            }
            Command::Groups(reply) => {
                let _ = reply.send(self.group_infos());
            }
            Command::Members { group, reply } => {
                let _ = reply.send(self.members(group));
            }
            Command::SafetyNumber { user, reply } => {
                let _ = reply.send(self.safety_number(user));
            }
            Command::Inspect { envelope, reply } => {
                let _ = reply.send(self.inspect(&envelope));
            }
            Command::Sync(reply) => {
                // Connecting syncs everything already.
                let r = if self.conn.is_none() {
                    self.connect().await
                } else {
                    self.sync_all().await
                };
                // A group that could not be fetched makes the whole sync fail: the caller
                // must not believe it has everything.
                let r = r.and_then(|()| self.take_sync_outcome());
                let _ = reply.send(r);
            }
            Command::Synced(reply) => {
                let r = if self.conn.is_none() {
                    self.connect().await
                } else if !self.full_sync_done {
                    // Connected, but the first full sync did not get through (the server
                    // refused to list the groups, say): try it again now.
                    self.sync_all().await
                } else {
                    Ok(())
                };
                let r = r.and_then(|()| self.take_sync_outcome());
                let _ = reply.send(r);
            }
            Command::Registered(reply) => {
                let _ = reply.send(self.profile.registered);
            }
            Command::Moderation(cmd) => self.handle_moderation(cmd).await,
            Command::Shutdown(done) => {
                let _ = done.send(());
            }
        }
    }

    fn op_time(state: &GroupState) -> Timestamp {
        Timestamp(now().0.max(state.min_next_at().0))
    }

    async fn create_group(&mut self) -> Result<GroupId, ClientError> {
        self.ensure_connected().await?;
        let group = GroupId::random(&mut crate::os_rng());
        let genesis = Op::genesis(
            group,
            self.device(),
            now(),
            self.member_entry(),
            GroupSettings::default(),
        )
        .sign(&self.identity)
        .map_err(protocol)?;
        let state = GroupState::from_genesis(&genesis).map_err(protocol)?;
        let g = genesis.clone();
        self.request_ok(|id| ClientFrame::CreateGroup { id, genesis: g })
            .await?;
        self.store.put(
            T_OPS,
            &key2(group.as_bytes(), &0u64.to_be_bytes()),
            &genesis,
        )?;
        let meta = GroupMeta {
            next_seq: 1,
            accepted: true,
            ..GroupMeta::default()
        };
        self.store.put(T_GROUPS, group.as_bytes(), &meta)?;
        self.store.flush()?;
        self.groups.insert(group, GroupCtx::new(state, meta));
        Ok(group)
    }

    /// Signs `body` as the next op of `group` and appends it; on a conflict (someone else's op
    /// got there first) syncs and tries once more on the new head.
    async fn append(&mut self, group: GroupId, body: OpBody) -> Result<u64, ClientError> {
        // Said plainly before anything goes out, also when the server cannot be reached.
        self.member_ctx(group)?;
        self.ensure_connected().await?;
        for attempt in 0..2 {
            let ctx = self.member_ctx(group)?;
            let op = ctx
                .state
                .next_op(self.device(), Self::op_time(&ctx.state), body.clone())
                .sign(&self.identity)
                .map_err(protocol)?;
            // Check locally first: a refused op gets the protocol's own explanation.
            let mut preview = ctx.state.clone();
            preview.apply(&op).map_err(protocol)?;
            let signed = op.clone();
            match self
                .request(|id| ClientFrame::AppendOp {
                    id,
                    group,
                    op: signed,
                })
                .await?
            {
                ServerFrame::OpAppended { seq, .. } => {
                    self.apply_op(group, &op)?;
                    self.store.flush()?;
                    return Ok(seq);
                }
                ServerFrame::Error {
                    code: ErrorCode::OpConflict,
                    ..
                } if attempt == 0 => {
                    self.sync_group(group, None).await?;
                }
                other => return Err(server_error(other)),
            }
        }
        Err(ClientError::Unexpected("op conflict persisted".into()))
    }

    async fn create_invite(
        &mut self,
        group: GroupId,
        requires_approval: bool,
        max_uses: u32,
        valid_for: Duration,
    ) -> Result<Invite, ClientError> {
        let secret = InviteSecret::generate(&mut crate::os_rng());
        let expires_at = Timestamp(now().0.saturating_add(valid_for.as_millis() as u64));
        let body = OpBody::Invite {
            invite: secret.id(),
            requires_approval,
            max_uses,
            expires_at,
        };
        self.append(group, body).await?;
        let ctx = self.groups.get(&group).ok_or(ClientError::UnknownGroup)?;
        Ok(Invite::new(
            group,
            ctx.state.genesis_hash(),
            self.device(),
            requires_approval,
            &secret,
        ))
    }

    /// Fetches the group's log with the invite, checks it against the invite, then joins (or
    /// asks the facilitators to let us in).
    async fn join(
        &mut self,
        invite: Invite,
        note: Option<String>,
    ) -> Result<crate::JoinOutcome, ClientError> {
        self.ensure_connected().await?;
        let me = self.device();
        let group = invite.group;
        // Local state may be stale (removed while offline): ask the server first.
        if self.groups.get(&group).is_some_and(|c| c.is_member(&me)) {
            self.sync_group(group, None).await?;
            if self.groups.get(&group).is_some_and(|c| c.is_member(&me)) {
                return Ok(crate::JoinOutcome::Joined(group));
            }
        }
        // Verify the whole log from genesis before trusting anything in it.
        let mut state: Option<GroupState> = None;
        let mut ops_held: Vec<SignedOp> = Vec::new();
        loop {
            let after_op_seq = state.as_ref().map(|s| s.seq());
            let invite_id = Some(frames::InviteProof {
                id: invite.id(),
                signature: invite.secret().sign_sync(&group, &self.device()),
            });
            let reply = self
                .request_ok(|id| ClientFrame::Sync {
                    id,
                    group,
                    after_op_seq,
                    after_seq: Seq(0),
                    limit: SYNC_PAGE,
                    invite: invite_id,
                })
                .await?;
            let ServerFrame::SyncPage { ops, complete, .. } = reply else {
                return Err(ClientError::Unexpected("sync_page".into()));
            };
            for op in ops {
                match state.as_mut() {
                    None => {
                        state = Some(
                            GroupState::from_genesis(&op)
                                .map_err(|e| ClientError::BadInvite(e.to_string()))?,
                        )
                    }
                    Some(s) => {
                        s.apply(&op).map_err(|e| {
                            ClientError::BadInvite(format!("the group's log does not verify: {e}"))
                        })?;
                    }
                }
                ops_held.push(op);
            }
            if complete {
                break;
            }
            if state.as_ref().map(|s| s.seq()) == after_op_seq {
                return Err(ClientError::Unexpected(
                    "the server's sync made no progress".into(),
                ));
            }
        }
        let state = state.ok_or_else(|| ClientError::BadInvite("the group has no log".into()))?;
        // A group this device was in before: the log it is shown now must extend the one it
        // verified then, op for op. An older or different history (a rollback to before a
        // removal, say) would make it seal keys to people it knows are gone.
        let verified: Vec<(Vec<u8>, SignedOp)> =
            self.store.scan(T_OPS, group.as_bytes(), usize::MAX)?;
        if !verified.is_empty()
            && (ops_held.len() < verified.len()
                || verified
                    .iter()
                    .zip(&ops_held)
                    .any(|((_, mine), shown)| mine.hash() != shown.hash()))
        {
            return Err(ClientError::BadInvite(
                "the server showed an older or different history of this group than this device \
                 verified before; not joining"
                    .into(),
            ));
        }
        if state.group() != invite.group || state.genesis_hash() != invite.genesis {
            return Err(ClientError::BadInvite(
                "the server showed a different group than the invite names".into(),
            ));
        }
        if !state
            .member_of_device(&invite.inviter)
            .is_some_and(|(_, m)| m.role.is_moderator())
        {
            return Err(ClientError::BadInvite(
                "the inviter is not a facilitator of the group".into(),
            ));
        }
        let secret = invite.secret();
        let invite_sig = secret.sign_join(&group, &self.profile.user, &self.device());
        if invite.requires_approval {
            let request = JoinRequestPayload {
                invite: invite.id(),
                invite_sig,
                member: self.member_entry(),
                note,
            };
            let bytes = zeroize::Zeroizing::new(serde_json::to_vec(&request).map_err(protocol)?);
            let mut items = Vec::new();
            for keys in state.facilitator_devices() {
                items.push(
                    seal::seal(
                        &self.identity,
                        keys,
                        SealKind::JoinRequest,
                        group,
                        state.epoch_ref(),
                        &bytes,
                        &mut crate::os_rng(),
                    )
                    .map_err(protocol)?,
                );
            }
            self.send_sealed(items).await?;
            // Remember the request, so the group is accepted when a facilitator approves it.
            self.store
                .put(T_PENDING_JOINS, group.as_bytes(), &state.genesis_hash())?;
            self.store.flush()?;
            return Ok(crate::JoinOutcome::Pending(group));
        }
        let body = OpBody::Join {
            invite: invite.id(),
            member: self.member_entry(),
            invite_sig,
        };
        let op = state
            .next_op(self.device(), Self::op_time(&state), body)
            .sign(&self.identity)
            .map_err(protocol)?;
        let mut joined = state.clone();
        joined
            .apply(&op)
            .map_err(|e| ClientError::BadInvite(e.to_string()))?;
        let signed = op.clone();
        self.request_ok(|id| ClientFrame::AppendOp {
            id,
            group,
            op: signed,
        })
        .await?;
        // Adopt the verified log.
        for (seq, held) in ops_held.iter().chain(std::iter::once(&op)).enumerate() {
            self.store.put(
                T_OPS,
                &key2(group.as_bytes(), &(seq as u64).to_be_bytes()),
                held,
            )?;
        }
        let meta = GroupMeta {
            next_seq: 1,
            accepted: true,
            ..GroupMeta::default()
        };
        self.store.put(T_GROUPS, group.as_bytes(), &meta)?;
        self.store.flush()?;
        let mut ctx = GroupCtx::new(state, meta);
        ctx.state = joined;
        ctx.record_epoch();
        self.groups.insert(group, ctx);
        self.emit(Event::Joined { group });
        self.sync_group(group, None).await?;
        Ok(crate::JoinOutcome::Joined(group))
    }

    async fn approve(&mut self, group: GroupId, user: UserId) -> Result<(), ClientError> {
        let key = key2(group.as_bytes(), user.as_bytes());
        let request: JoinRequestPayload =
            self.store.get(T_JOIN_REQUESTS, &key)?.ok_or_else(|| {
                ClientError::Protocol("no pending join request from that user".into())
            })?;
        let body = OpBody::Add {
            member: request.member,
            invite: Some(request.invite),
            invite_sig: Some(request.invite_sig),
        };
        self.append(group, body).await?;
        self.store.remove(T_JOIN_REQUESTS, &key)?;
        Ok(())
    }

    /// Makes sure this device's sender key for the group's current epoch exists and was sealed
    /// to every other device the verified log lists (and to nobody else).
    async fn ensure_sender_key(
        &mut self,
        group: GroupId,
    ) -> Result<(EpochRef, SenderChain), ClientError> {
        let me = self.device();
        let ctx = self.groups.get(&group).ok_or(ClientError::UnknownGroup)?;
        let epoch = ctx.state.epoch_ref();
        let key = key2(group.as_bytes(), epoch.hash.as_bytes());
        let (chain, distributed) = match self.store.get_bytes(T_OWN_CHAINS, &key)? {
            Some(bytes) if !bytes.is_empty() => (
                SenderChain::from_bytes(&bytes[1..]).map_err(protocol)?,
                bytes[0] == 1,
            ),
            _ => {
                let chain = SenderChain::generate(&mut crate::os_rng());
                // Persist before anything is sealed or sent with it.
                self.save_chain(&key, &chain, false)?;
                (chain, false)
            }
        };
        if !distributed {
            let distribution = chain.distribution();
            let recipients: Vec<DeviceKeys> = ctx
                .state
                .current_devices()
                .into_iter()
                .filter(|k| k.device != me)
                .cloned()
                .collect();
            let mut items = Vec::with_capacity(recipients.len());
            for keys in &recipients {
                items.push(
                    seal::seal(
                        &self.identity,
                        keys,
                        SealKind::SenderKey,
                        group,
                        epoch,
                        &distribution,
                        &mut crate::os_rng(),
                    )
                    .map_err(protocol)?,
                );
            }
            self.send_sealed(items).await?;
            self.save_chain(&key, &chain, true)?;
        }
        Ok((epoch, chain))
    }

    /// Sends sealed payloads in as many `send_sealed` frames as the server's frame limit needs
    /// (a report of a large message to many facilitators does not fit in one).
    async fn send_sealed(&mut self, items: Vec<SealedPayload>) -> Result<(), ClientError> {
        for items in frames::sealed_frames(items, frames::DEFAULT_MAX_CLIENT_FRAME_BYTES) {
            self.request_ok(|id| ClientFrame::SendSealed { id, items })
                .await?;
        }
        Ok(())
    }

    fn save_chain(
        &self,
        key: &[u8],
        chain: &SenderChain,
        distributed: bool,
    ) -> Result<(), ClientError> {
        let mut bytes = zeroize::Zeroizing::new(vec![u8::from(distributed)]);
        bytes.extend_from_slice(&chain.to_bytes());
        self.store.put_bytes(T_OWN_CHAINS, key, &bytes)?;
        self.store.flush()?;
        Ok(())
    }

    async fn send_text(
        &mut self,
        group: GroupId,
        text: String,
        reply_to: Option<MessageId>,
    ) -> Result<ChatMessage, ClientError> {
        let content = MessageContent {
            sent_at: now(),
            seen_seq: self.seen_seq(group),
            body: ContentBody::Text { text, reply_to },
        };
        let (seq, id) = self.post_content(group, content.clone()).await?;
        self.own_message(group, seq, id, content)
            .ok_or_else(|| ClientError::Unexpected("a text became something else".into()))
    }

    /// The highest message seq of `group` this device has processed, named in what it writes
    /// so that receivers can tell when the server stores it too early (§6.7).
    pub(super) fn seen_seq(&self, group: GroupId) -> Option<Seq> {
        self.groups
            .get(&group)
            .map(|ctx| ctx.meta.last_seen_seq)
            .filter(|seq| *seq > 0)
            .map(Seq)
    }

    /// Stores this device's own text message, now that the server has acknowledged it at
    /// `seq`, and returns it as shown. `None` for content that is not a text.
    fn own_message(
        &mut self,
        group: GroupId,
        seq: Seq,
        id: MessageId,
        content: MessageContent,
    ) -> Option<ChatMessage> {
        let ContentBody::Text { text, reply_to } = content.body else {
            return None;
        };
        let mut message = ChatMessage {
            group,
            seq,
            number: 0,
            id,
            sender: self.profile.user,
            sender_device: self.device(),
            sender_name: self.profile.display_name.clone(),
            sent_at: content.sent_at,
            received_at: now(),
            text,
            reply_to,
        };
        let _ = self
            .store
            .put(T_SEEN, &key2(group.as_bytes(), id.as_bytes()), &seq);
        let _ = self.store_message(&mut message);
        let _ = self.store.flush();
        Some(message)
    }

    /// Stores a message to show, giving it the group's next number ([`ChatMessage::number`]).
    /// The counter is saved before the message, so that a crash between the two can skip a
    /// number but never give one twice.
    ///
    /// A position that already holds (or held) another message is refused and reported
    /// ([`Event::MessageRejected`]): a number names one message, and a message stored over
    /// another would take its number and its report evidence. The same message stored again
    /// keeps its number.
    fn store_message(&mut self, message: &mut ChatMessage) -> Result<(), ClientError> {
        let group = message.group;
        let key = key2(group.as_bytes(), &message.seq.0.to_be_bytes());
        if let Some(stored) = self.store.get::<ChatMessage>(T_MESSAGES, &key)?
            && stored.id == message.id
            && stored.number != 0
        {
            message.number = stored.number;
            return Ok(());
        }
        if let Some(reason) = self.seq_taken(group, message.seq, message.id) {
            tracing::warn!(%group, seq = message.seq.0, "a message at another message's position refused");
            self.emit(Event::MessageRejected(Rejection {
                group,
                seq: message.seq.0,
                reason: reason.clone(),
            }));
            return Err(ClientError::Protocol(reason));
        }
        let ctx = self
            .groups
            .get_mut(&group)
            .ok_or(ClientError::UnknownGroup)?;
        ctx.meta.last_number = ctx.meta.last_number.saturating_add(1);
        message.number = ctx.meta.last_number;
        self.store.put(T_GROUPS, group.as_bytes(), &ctx.meta)?;
        self.store_number(group, message.number, message.seq)?;
        self.store.put(T_MESSAGES, &key, message)?;
        Ok(())
    }

    /// Why position `seq` of `group` cannot hold message `id`, if it cannot: another message
    /// is stored there, was (and was deleted or expired since: its number stays), or waits
    /// there to be processed. `None` when it is free or holds this very message.
    fn seq_taken(&self, group: GroupId, seq: Seq, id: MessageId) -> Option<String> {
        let key = key2(group.as_bytes(), &seq.0.to_be_bytes());
        let taken = match self.store.get::<ChatMessage>(T_MESSAGES, &key) {
            Ok(Some(stored)) => stored.id != id,
            // Numbered once, and gone since.
            _ => {
                self.number_of_seq(group, seq).is_some()
                    || self
                        .store
                        .get::<StoredMessage>(T_PARKED, &key)
                        .ok()
                        .flatten()
                        .is_some_and(|parked| parked.envelope.message_id() != id)
            }
        };
        taken.then(|| {
            format!(
                "the server gave this message position {}, where another message is (or was) \
                 on this device; it is not shown there",
                seq.0
            )
        })
    }

    /// Checks the server's acknowledgement of this device's post of `envelope`: it must name
    /// that message, at a position no other message has here.
    fn check_posted(
        &self,
        group: GroupId,
        seq: Seq,
        message: MessageId,
        envelope: &Envelope,
    ) -> Result<(), String> {
        if message != envelope.message_id() {
            return Err("the server acknowledged another message than the one posted".into());
        }
        match self.seq_taken(group, seq, message) {
            Some(reason) => Err(reason),
            None => Ok(()),
        }
    }

    /// The server acknowledged a post at a position that cannot be its own: the message stays
    /// in the outbox (posted again later: an honest server answers with its real position) and
    /// the user is told.
    fn refuse_posted(&mut self, group: GroupId, seq: Seq, reason: String) {
        tracing::warn!(%group, seq = seq.0, "acknowledgement of a post refused");
        self.emit(Event::MessageRejected(Rejection {
            group,
            seq: seq.0,
            reason: format!("your message was kept to be sent again: {reason}"),
        }));
        self.retry_outbox_after(None);
    }

    /// Records that message `seq` of `group` is number `number`, both ways.
    fn store_number(&self, group: GroupId, number: u64, seq: Seq) -> Result<(), ClientError> {
        self.store.put(
            T_NUMBER_SEQ,
            &key2(group.as_bytes(), &number.to_be_bytes()),
            &seq,
        )?;
        self.store.put(
            T_SEQ_NUMBER,
            &key2(group.as_bytes(), &seq.0.to_be_bytes()),
            &number,
        )?;
        Ok(())
    }

    /// The seq of message `number` of `group` ([`ChatMessage::number`]), also for a message
    /// deleted since; `None` if no message had that number here.
    fn seq_of_number(&self, group: GroupId, number: u64) -> Result<Option<Seq>, ClientError> {
        if !self.groups.contains_key(&group) {
            return Err(ClientError::UnknownGroup);
        }
        Ok(self
            .store
            .get(T_NUMBER_SEQ, &key2(group.as_bytes(), &number.to_be_bytes()))?)
    }

    /// Where message `id` of `group` was processed on this device, and the number it was
    /// shown as there (if it was): found by the id, whatever position anyone else names.
    fn message_place(
        &self,
        group: GroupId,
        id: MessageId,
    ) -> Result<Option<crate::MessagePlace>, ClientError> {
        if !self.groups.contains_key(&group) {
            return Err(ClientError::UnknownGroup);
        }
        let Some(seq) = self
            .store
            .get::<Seq>(T_SEEN, &key2(group.as_bytes(), id.as_bytes()))?
        else {
            return Ok(None);
        };
        let key = key2(group.as_bytes(), &seq.0.to_be_bytes());
        let number = match self.store.get::<ChatMessage>(T_MESSAGES, &key)? {
            Some(stored) => (stored.id == id).then_some(stored.number),
            // Deleted or expired since (its number stays), or never shown.
            None => self.number_of_seq(group, seq),
        };
        Ok(Some(crate::MessagePlace { seq, number }))
    }

    /// The number message `seq` of `group` had or has, if it was shown here.
    pub(super) fn number_of_seq(&self, group: GroupId, seq: Seq) -> Option<u64> {
        self.store
            .get(T_SEQ_NUMBER, &key2(group.as_bytes(), &seq.0.to_be_bytes()))
            .ok()
            .flatten()
    }

    /// Numbers the messages a store made before numbers existed held ([`ChatMessage::number`]),
    /// in the server's order, once.
    fn number_old_messages(&mut self, group: GroupId) -> Result<(), ClientError> {
        let first: Vec<(Vec<u8>, ChatMessage)> =
            self.store.scan(T_MESSAGES, group.as_bytes(), 1)?;
        if first.first().is_none_or(|(_, m)| m.number != 0) {
            return Ok(());
        }
        let messages: Vec<(Vec<u8>, ChatMessage)> =
            self.store.scan(T_MESSAGES, group.as_bytes(), usize::MAX)?;
        for (_, mut message) in messages {
            if message.number == 0 {
                self.store_message(&mut message)?;
            }
        }
        self.store.flush()?;
        Ok(())
    }

    /// This device's own post in `epoch` was stored at `seq`: it counts toward the cut-off
    /// that refuses late posts in an epoch that ended with a removal, like anyone else's.
    fn note_own_post(&mut self, group: GroupId, epoch: u64, seq: Seq) {
        if let Some(ctx) = self.groups.get_mut(&group) {
            ctx.meta.note_epoch_seq(epoch, seq.0);
            let _ = self.store.put(T_GROUPS, group.as_bytes(), &ctx.meta);
        }
    }

    /// Whether this device holds its posts to `group`: members have been seen to use an epoch
    /// its verified log has not reached, or earlier held messages still wait (order is kept).
    fn is_held(&self, group: GroupId) -> bool {
        self.is_behind(group)
            || matches!(self.store.count(T_HELD, group.as_bytes()), Ok((n, _)) if n > 0)
    }

    /// Whether members have been seen to use an epoch of `group` its verified log has not
    /// reached (and the claim still holds).
    fn is_behind(&self, group: GroupId) -> bool {
        self.groups
            .get(&group)
            .is_some_and(|ctx| ctx.meta.behind(&ctx.state).is_some())
    }

    /// Keeps a message to be sealed and posted once the group's log has caught up.
    fn hold(&mut self, group: GroupId, content: &MessageContent) -> Result<(), ClientError> {
        self.hold_quietly(group, content)?;
        self.held_dirty = true;
        Ok(())
    }

    /// [`Self::hold`] without waking [`Self::process_held`]: for a message that must wait for
    /// something else (the retry timer, the log catching up) before it is tried again.
    fn hold_quietly(
        &mut self,
        group: GroupId,
        content: &MessageContent,
    ) -> Result<(), ClientError> {
        if matches!(self.store.count(T_HELD, group.as_bytes()), Ok((n, _)) if n >= MAX_HELD_PER_GROUP)
        {
            return Err(ClientError::Invalid(format!(
                "{MAX_HELD_PER_GROUP} messages are already held for this group until this device \
                 catches up; this one was not kept"
            )));
        }
        // Ordered by when the message was written; the random tail keeps equal times apart.
        let mut tail = [0u8; 8];
        rand_core::Rng::fill_bytes(&mut crate::os_rng(), &mut tail);
        let key = key3(group.as_bytes(), &content.sent_at.0.to_be_bytes(), &tail);
        self.store.put(T_HELD, &key, content)?;
        self.store.flush()?;
        Ok(())
    }

    /// Notes that a member's signed message or sealed key named `epoch`. If the verified log
    /// has not reached it, this device holds its posts until it has (PROTOCOL.md §12.3).
    fn note_behind(&mut self, group: GroupId, epoch: u64, claimant: DeviceId) {
        let Some(ctx) = self.groups.get_mut(&group) else {
            return;
        };
        let log_epoch = ctx.state.epoch().0;
        // A claim further ahead than any log plausibly moves between two syncs counts as that
        // far (the same bound as for keeping early sealed payloads).
        let epoch = epoch.min(log_epoch.saturating_add(MAX_EPOCH_AHEAD));
        if epoch <= log_epoch
            || ctx
                .meta
                .behind_claims
                .get(&claimant)
                .is_some_and(|e| *e >= epoch)
        {
            return;
        }
        ctx.meta.behind_claims.insert(claimant, epoch);
        if ctx.meta.behind_claims.len() > MAX_BEHIND_CLAIMS
            && let Some((lowest, _)) = ctx
                .meta
                .behind_claims
                .iter()
                .min_by_key(|(_, e)| **e)
                .map(|(d, e)| (*d, *e))
        {
            ctx.meta.behind_claims.remove(&lowest);
        }
        let _ = self.store.put(T_GROUPS, group.as_bytes(), &ctx.meta);
        self.needs_sync.insert(group);
    }

    /// After a sync of `group`: if its log is still behind what members use, tells the user
    /// (once per epoch seen). Right after a reconnect keys often arrive before the sync that
    /// brings their ops, so nobody is warned before a sync has had its chance.
    fn warn_if_behind(&mut self, group: GroupId) {
        let Some(ctx) = self.groups.get_mut(&group) else {
            return;
        };
        let log_epoch = ctx.state.epoch().0;
        let Some(seen_epoch) = ctx.meta.behind(&ctx.state) else {
            return;
        };
        if ctx
            .meta
            .behind_warned
            .is_some_and(|warned| warned >= seen_epoch)
        {
            return;
        }
        ctx.meta.behind_warned = Some(seen_epoch);
        let _ = self.store.put(T_GROUPS, group.as_bytes(), &ctx.meta);
        tracing::warn!(%group, seen_epoch, log_epoch, "members use an epoch the log has not reached: posts held");
        self.emit(Event::GroupBehind {
            group,
            seen_epoch,
            log_epoch,
        });
    }

    /// Seals and posts the messages held for groups that have caught up, in the order they
    /// were written. A group whose post is refused for a while (slow mode, rate limit) waits
    /// for the outbox's retry with the rest of its held messages.
    pub(super) async fn process_held(&mut self) {
        if self.conn.is_none() || !self.held_dirty {
            return;
        }
        self.held_dirty = false;
        let Ok(held) = self.store.scan::<MessageContent>(T_HELD, &[], usize::MAX) else {
            return;
        };
        let mut waiting: BTreeSet<GroupId> = BTreeSet::new();
        for (key, content) in held {
            let Some(group) = key
                .get(..16)
                .and_then(|g| <[u8; 16]>::try_from(g).ok())
                .map(GroupId)
            else {
                let _ = self.store.remove(T_HELD, &key);
                continue;
            };
            if waiting.contains(&group) || self.is_behind(group) {
                continue;
            }
            match self.post_now(group, content.clone(), Some(&key)).await {
                Ok((seq, id)) => {
                    if let Some(message) = self.own_message(group, seq, id, content) {
                        self.emit(Event::Sent(message));
                    }
                }
                // Sealed and in the outbox now (it reports `Sent` or `SendFailed` itself), or
                // still held because the group fell behind again.
                Err(ClientError::Pending | ClientError::Held) => {}
                // Not connected: everything waits for the next connection.
                Err(ClientError::Transport(_)) => {
                    self.held_dirty = true;
                    return;
                }
                Err(
                    ref e @ ClientError::Server {
                        code: ErrorCode::SlowMode,
                        retry_after_ms,
                        ..
                    },
                ) => {
                    // Held again by `post_now`: the user was told it would be sent. Tried
                    // again with the outbox's retry.
                    tracing::debug!(%group, error = %e, "held message waits");
                    self.retry_outbox_after(retry_after_ms);
                    waiting.insert(group);
                }
                Err(e) => {
                    let _ = self.store.remove(T_HELD, &key);
                    self.emit(Event::SendFailed {
                        group,
                        reason: e.to_string(),
                    });
                }
            }
        }
        let _ = self.store.flush();
    }

    /// Leaves a message held: the entry it came from stays, or a new one is made.
    fn keep_held(
        &mut self,
        group: GroupId,
        content: &MessageContent,
        held_key: Option<&[u8]>,
    ) -> Result<(Seq, MessageId), ClientError> {
        if held_key.is_none() {
            self.hold_quietly(group, content)?;
        }
        Err(ClientError::Held)
    }

    /// Encrypts `content` for the group's current epoch and posts it, unless the group is held
    /// ([`Self::is_held`]): then it is kept and [`ClientError::Held`] returned.
    async fn post_content(
        &mut self,
        group: GroupId,
        content: MessageContent,
    ) -> Result<(Seq, MessageId), ClientError> {
        self.member_ctx(group)?;
        if self.is_held(group) {
            self.hold(group, &content)?;
            return Err(ClientError::Held);
        }
        self.post_now(group, content, None).await
    }

    /// Encrypts `content` for the group's current epoch (distributing this device's sender key
    /// first if needed) and posts it. Returns the seq and id once durable.
    async fn post_now(
        &mut self,
        group: GroupId,
        content: MessageContent,
        held_key: Option<&[u8]>,
    ) -> Result<(Seq, MessageId), ClientError> {
        self.ensure_connected().await?;
        let from_held = held_key.is_some();
        // The held entry this message comes from, removed in the same flush that puts it into
        // the outbox (so a crash leaves exactly one copy), and only once.
        let mut held_key = held_key;
        for attempt in 0..2 {
            self.member_ctx(group)?;
            // Earlier messages still waiting in the outbox go first, so that this one is not
            // stored before them; if they still cannot go, this one waits behind them.
            let waiting = |actor: &Self| matches!(actor.store.count(T_OUTBOX, group.as_bytes()), Ok((n, _)) if n > 0);
            let behind_outbox = waiting(self) && {
                self.resend_outbox().await;
                waiting(self)
            };
            // Frames handled meanwhile (or a sync after a stale epoch) may have shown that
            // members use an epoch this device's log has not reached: then nothing is sealed.
            // A new message also waits behind any that the outbox just held again.
            if self.is_behind(group) || (!from_held && self.is_held(group)) {
                return self.keep_held(group, &content, held_key);
            }
            let (epoch, mut chain) = self.ensure_sender_key(group).await?;
            if self.is_behind(group) {
                return self.keep_held(group, &content, held_key);
            }
            let bytes = zeroize::Zeroizing::new(serde_json::to_vec(&content).map_err(protocol)?);
            let envelope = Envelope::seal(
                &self.identity,
                group,
                epoch,
                &mut chain,
                &bytes,
                &mut crate::os_rng(),
            )
            .map_err(protocol)?;
            // The message goes into the outbox before it leaves, and the advanced chain is
            // saved with it: a key is never used twice, and a message is never lost.
            let outbox_key = key2(group.as_bytes(), envelope.message_id().as_bytes());
            self.store.put(
                T_OUTBOX,
                &outbox_key,
                &OutboxEntry {
                    envelope: envelope.clone(),
                    content: content.clone(),
                },
            )?;
            if let Some(key) = held_key.take() {
                self.store.remove(T_HELD, key)?;
            }
            self.save_chain(&key2(group.as_bytes(), epoch.hash.as_bytes()), &chain, true)?;
            if behind_outbox {
                // Posted in order by the outbox's retry; `Sent` (or `SendFailed`) follows.
                return Err(ClientError::Pending);
            }
            let env = envelope.clone();
            let reply = match self
                .request(|id| ClientFrame::Post { id, envelope: env })
                .await
            {
                Ok(reply) => reply,
                Err(ClientError::Transport(_)) | Err(ClientError::Unexpected(_)) => {
                    return Err(ClientError::Pending);
                }
                Err(e) => return Err(e),
            };
            if self.keep_for_retry(&reply) {
                // The caller hears `Pending` now, and `Sent` (or `SendFailed`) then.
                return Err(ClientError::Pending);
            }
            if let ServerFrame::Posted { seq, message, .. } = &reply
                && let Err(reason) = self.check_posted(group, *seq, *message, &envelope)
            {
                // Still in the outbox: posted again later, `Sent` (or `SendFailed`) then.
                self.refuse_posted(group, *seq, reason);
                return Err(ClientError::Pending);
            }
            let _ = self.store.remove(T_OUTBOX, &outbox_key);
            match reply {
                ServerFrame::Posted { seq, message, .. } => {
                    self.store
                        .put(T_SEEN, &key2(group.as_bytes(), message.as_bytes()), &seq)?;
                    self.note_own_post(group, epoch.epoch.0, seq);
                    if self
                        .groups
                        .get(&group)
                        .is_some_and(|c| c.meta.next_seq.max(1) == seq.0)
                    {
                        self.advance_cursor(group, Seq(seq.0.saturating_add(1)));
                    }
                    return Ok((seq, message));
                }
                // A held message (already out of the held queue) is held again before anything
                // can fail, and goes with the others once the sync has shown the new epoch.
                ServerFrame::Error {
                    code: ErrorCode::StaleEpoch,
                    ..
                } if from_held => {
                    self.hold(group, &content)?;
                    self.needs_sync.insert(group);
                    return Err(ClientError::Held);
                }
                ServerFrame::Error {
                    code: ErrorCode::StaleEpoch,
                    ..
                } if attempt == 0 => {
                    self.sync_group(group, None).await?;
                }
                // A held message the user was told would be sent is kept through slow mode.
                ServerFrame::Error {
                    code: ErrorCode::SlowMode,
                    ..
                } if from_held => {
                    self.hold_quietly(group, &content)?;
                    return Err(server_error(reply));
                }
                other => return Err(server_error(other)),
            }
        }
        Err(ClientError::Unexpected("epoch kept changing".into()))
    }

    fn history(
        &self,
        group: GroupId,
        before: Option<Seq>,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, ClientError> {
        if !self.groups.contains_key(&group) {
            return Err(ClientError::UnknownGroup);
        }
        let start = key2(group.as_bytes(), &0u64.to_be_bytes());
        let end = key2(
            group.as_bytes(),
            &before.map_or(u64::MAX, |s| s.0).to_be_bytes(),
        );
        let mut page: Vec<ChatMessage> = self
            .store
            .scan_range_rev::<ChatMessage>(T_MESSAGES, &start, &end, limit)?
            .into_iter()
            .map(|(_, m)| m)
            .collect();
        page.reverse();
        Ok(page)
    }

    fn group_infos(&self) -> Vec<crate::GroupInfo> {
        let me = self.device();
        self.groups
            .iter()
            .map(|(group, ctx)| {
                let member = ctx.is_member(&me);
                let invited = member && !ctx.meta.accepted;
                let waiting = if invited {
                    self.store
                        .count(T_PARKED, group.as_bytes())
                        .map_or(0, |(n, _)| n)
                } else {
                    0
                };
                let members = ctx.state.members();
                let private_with = if member {
                    private_peer(ctx, &self.profile.user)
                        .map(|peer| self.peer_among_groups(*group, peer))
                } else {
                    None
                };
                crate::GroupInfo {
                    group: *group,
                    member,
                    role: ctx.state.member_of_device(&me).map(|(_, m)| m.role),
                    members: members.len(),
                    epoch: ctx.state.epoch(),
                    tampered: ctx.meta.tampered.clone(),
                    invited,
                    waiting,
                    private_with,
                    sync_refused: ctx
                        .meta
                        .sync_refused
                        .clone()
                        .map(|code| crate::SyncRefusal {
                            code,
                            since: ctx.meta.sync_refused_at,
                        }),
                }
            })
            .collect()
    }

    /// What the user's other groups say of the other person of private conversation
    /// `private`: the groups (accepted, and this device still in them) where the same user is
    /// a member, and the members there, other people, whose names look like theirs.
    fn peer_among_groups(&self, private: GroupId, mut peer: crate::Peer) -> crate::Peer {
        let me = self.device();
        let mut groups: Vec<(&GroupId, &GroupCtx)> = self
            .groups
            .iter()
            .filter(|(g, ctx)| **g != private && ctx.meta.accepted && ctx.is_member(&me))
            .collect();
        groups.sort_by_key(|(g, _)| **g);
        for (group, ctx) in groups {
            if ctx.state.member(&peer.user).is_some() {
                peer.shared_groups.push(*group);
            }
            let others = ctx
                .state
                .members()
                .iter()
                .filter(|(user, _)| **user != peer.user && **user != self.profile.user)
                .map(|(_, m)| m.entry.display_name.as_str());
            for name in confide_protocol::names::confusable_with(&peer.display_name, others) {
                peer.looks_like.push((name, *group));
            }
        }
        peer
    }

    fn members(&self, group: GroupId) -> Result<Vec<crate::MemberInfo>, ClientError> {
        let ctx = self.groups.get(&group).ok_or(ClientError::UnknownGroup)?;
        Ok(ctx
            .state
            .members()
            .iter()
            .map(|(user, m)| crate::MemberInfo {
                user: *user,
                display_name: m.entry.display_name.clone(),
                role: m.role,
                devices: m.entry.devices.iter().map(|d| d.device).collect(),
                muted_until: ctx
                    .state
                    .mutes()
                    .get(user)
                    .copied()
                    .filter(|_| ctx.state.is_muted(user, now())),
                looks_like: look_alikes(&ctx.state, user, &m.entry.display_name),
            })
            .collect())
    }

    fn safety_number(&self, user: UserId) -> Result<String, ClientError> {
        for ctx in self.groups.values() {
            if let Some(member) = ctx.state.member(&user)
                && let Some(keys) = member.entry.devices.first()
            {
                return Ok(confide_protocol::identity::safety_number(
                    (&self.profile.user, &self.device()),
                    (&user, &keys.device),
                ));
            }
        }
        Err(ClientError::Protocol(
            "no group shared with that user".into(),
        ))
    }

    /// Tries to decrypt an envelope with the keys this device holds, without changing them.
    fn inspect(&self, envelope: &Envelope) -> Result<Vec<u8>, ClientError> {
        let chain_key = key3(
            envelope.group.as_bytes(),
            envelope.epoch_hash.as_bytes(),
            envelope.sender.as_bytes(),
        );
        let bytes = self
            .store
            .get_bytes(T_RECV_CHAINS, &chain_key)?
            .ok_or_else(|| {
                ClientError::Protocol("this device holds no key for that sender and epoch".into())
            })?;
        let mut chain = ReceiverChain::from_bytes(&bytes).map_err(protocol)?;
        let opened = envelope.open(&mut chain).map_err(protocol)?;
        Ok(opened.body.to_vec())
    }
}
