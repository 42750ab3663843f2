//! A device under test without a network: one [`ClientCore`] over a [`MemoryStore`], a host
//! with a settable clock, seeded randomness and a record of every event (with what the store
//! held when it was shown), and a scripted server the test controls: its group logs, its
//! messages and the device's inbox, every frame the device sent (with what the store held when
//! it was sent), and, when a test wants to play a malicious server, its own answers.
//!
//! Other members are [`Member`]s: identities that sign ops, seal sender keys and write
//! envelopes with the protocol crate directly, as an honest or hostile member's client would.
//!
//! A hostile server is the honest one with the test's own [`Answer`]s in place of some of its
//! replies ([`refuse`], [`silence`], or a closure of the test's), and with whatever logs
//! ([`Device::foreign_group`], [`Device::member_op`]) and inbox items the test stores on it.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chacha20::ChaCha20Rng;
use confide_client_core::memory::Snapshot;
use confide_client_core::{
    ClientCore, ClientError, Event, Host, Link, MemoryStore, Network, Profile, TransportError,
};
use confide_protocol::envelope::{ContentBody, Envelope, MessageContent};
use confide_protocol::frames::{
    ClientFrame, ErrorCode, GroupSummary, InboxItem, PROTOCOL_VERSION, ServerFrame, StoredMessage,
};
use confide_protocol::group_log::{GroupState, MemberEntry, OpBody, Role, SignedOp};
use confide_protocol::page_checks::PageChecks;
use confide_protocol::seal::{self, SealKind, SealedPayload};
use confide_protocol::sender_key::SenderChain;
use confide_protocol::{
    DeviceId, DeviceIdentity, DeviceKeys, EpochRef, GroupId, MessageId, Seq, Timestamp, UserId,
    policy,
};
use pollster::block_on;
use rand_core::SeedableRng as _;

/// The wall clock every test starts at.
pub const NOW: Timestamp = Timestamp(1_800_000_000_000);

/// The device under test's user.
pub const ALICE: UserId = UserId([1; 16]);

pub type Core = ClientCore<MemoryStore, ScriptNet>;

/// The real server's default `sync_page_limit` (§9.6).
pub const DEFAULT_PAGE_LIMIT: u32 = 500;

/// What the server stores for one group.
#[derive(Default, Clone)]
pub struct Log {
    pub ops: Vec<SignedOp>,
    pub messages: Vec<StoredMessage>,
}

impl Log {
    /// The log replayed, as an honest member's client holds it.
    pub fn state(&self) -> GroupState {
        let mut state = GroupState::from_genesis(&self.ops[0]).unwrap();
        for op in &self.ops[1..] {
            state.apply(op).unwrap();
        }
        state
    }

    /// The seq the next message stored gets.
    pub fn next_seq(&self) -> Seq {
        Seq(self.messages.last().map_or(0, |m| m.seq.0) + 1)
    }
}

/// A test's own answer to a frame the device sent: `Some(frames)` is sent in place of the
/// honest server's reply (no frames: the server says nothing), `None` leaves the reply to it.
pub type Answer = Box<dyn FnMut(&ClientFrame) -> Option<Vec<ServerFrame>> + Send>;

/// A server that takes every frame and answers none: each request waits in vain, as on a link
/// that never answers.
pub fn silence() -> Answer {
    Box::new(|_| Some(Vec::new()))
}

/// A server that refuses with `code` each frame `matching` picks, and answers the rest honestly.
pub fn refuse(
    code: ErrorCode,
    mut matching: impl FnMut(&ClientFrame) -> bool + Send + 'static,
) -> Answer {
    Box::new(move |frame| matching(frame).then(|| refusal(frame, code)))
}

/// The server's answer refusing `frame` with `code`.
pub fn refusal(frame: &ClientFrame, code: ErrorCode) -> Vec<ServerFrame> {
    vec![ServerFrame::error(
        Some(frame.request_id()),
        code,
        "refused by the script",
    )]
}

/// A server that refuses with `code` the first frame `matching` picks, and answers the rest
/// honestly.
pub fn first_refused(
    code: ErrorCode,
    matching: impl Fn(&ClientFrame) -> bool + Send + 'static,
) -> Answer {
    let mut first = true;
    refuse(code, move |frame| {
        matching(frame) && std::mem::take(&mut first)
    })
}

/// The scripted server.
#[derive(Default)]
pub struct Server {
    pub logs: BTreeMap<GroupId, Log>,
    /// The device's inbox, delivered after authentication.
    pub inbox: Vec<InboxItem>,
    /// Every frame the device sent, with the device's store as it was at that moment.
    pub sent: Vec<(ClientFrame, Snapshot)>,
    /// Answers instead of the honest server's, while set.
    pub answer: Option<Answer>,
    /// The server's `sync_page_limit` (§9.6); `None`: the real server's default.
    pub page_limit: Option<u32>,
    next_inbox_id: u64,
}

pub type Shared = Arc<Mutex<Server>>;

impl Server {
    /// The honest server's reply to `frame` (and what it pushes after it).
    fn reply(&mut self, frame: &ClientFrame, now: Timestamp) -> Vec<ServerFrame> {
        match frame.clone() {
            ClientFrame::Register {
                id,
                keys,
                user,
                display_name,
                ..
            } => self.authenticated(id, user, keys.device, display_name),
            ClientFrame::Authenticate { id, device, .. } => {
                self.authenticated(id, ALICE, device, "Alice".into())
            }
            ClientFrame::ListGroups { id } => vec![ServerFrame::Groups {
                id,
                groups: self
                    .logs
                    .iter()
                    .map(|(group, log)| GroupSummary {
                        group: *group,
                        op_head_seq: log.ops.len() as u64 - 1,
                        last_seq: Seq(log.next_seq().0 - 1),
                    })
                    .collect(),
            }],
            ClientFrame::CreateGroup { id, genesis } => {
                let group = genesis.parse_unverified().unwrap().group;
                self.logs.insert(
                    group,
                    Log {
                        ops: vec![genesis],
                        messages: Vec::new(),
                    },
                );
                vec![ServerFrame::GroupCreated { id, group }]
            }
            ClientFrame::AppendOp { id, group, op } => {
                let log = self.logs.get_mut(&group).unwrap();
                log.ops.push(op);
                vec![ServerFrame::OpAppended {
                    id,
                    group,
                    seq: log.ops.len() as u64 - 1,
                }]
            }
            ClientFrame::Post { id, envelope } => {
                let group = envelope.group;
                let log = self.logs.get_mut(&group).unwrap();
                // An envelope stored already is answered with its seq.
                if let Some(m) = log.messages.iter().find(|m| m.envelope == envelope) {
                    let (seq, message) = (m.seq, envelope.message_id());
                    return vec![ServerFrame::Posted {
                        id,
                        group,
                        seq,
                        message,
                    }];
                }
                let seq = log.next_seq();
                let message = envelope.message_id();
                log.messages.push(StoredMessage {
                    seq,
                    received_at: now,
                    envelope,
                });
                vec![ServerFrame::Posted {
                    id,
                    group,
                    seq,
                    message,
                }]
            }
            ClientFrame::SendSealed { id, .. } | ClientFrame::Ping { id } => {
                vec![ServerFrame::Ok { id }]
            }
            ClientFrame::Sync {
                id,
                group,
                after_op_seq,
                after_seq,
                limit,
                ..
            } => {
                let Some(log) = self.logs.get(&group) else {
                    return vec![ServerFrame::error(
                        Some(id),
                        ErrorCode::NoSuchGroup,
                        "no such group",
                    )];
                };
                // Paged as the real server pages (§9.6), without its byte budget and with
                // every device served as a member: at most `L` ops, messages only once the
                // ops reach the head, and `complete` only when fewer than `L` messages are
                // left.
                let page_limit =
                    policy::sync_page_limit(limit, self.page_limit.unwrap_or(DEFAULT_PAGE_LIMIT));
                let first_op = after_op_seq.map_or(0, |s| s as usize + 1);
                let ops: Vec<SignedOp> = log
                    .ops
                    .iter()
                    .skip(first_op)
                    .take(page_limit)
                    .cloned()
                    .collect();
                let next_op_seq = (first_op + ops.len()) as u64;
                let head = log.ops.len() as u64 - 1;
                let ops_complete = policy::ops_complete(next_op_seq, head);
                let messages: Vec<StoredMessage> = if ops_complete {
                    log.messages
                        .iter()
                        .filter(|m| m.seq > after_seq)
                        .take(page_limit)
                        .cloned()
                        .collect()
                } else {
                    Vec::new()
                };
                let next_seq = policy::sync_next_seq(after_seq, messages.last().map(|m| m.seq));
                let complete = policy::sync_page_complete(
                    ops_complete,
                    messages.len(),
                    page_limit,
                    messages.len(),
                );
                vec![ServerFrame::SyncPage {
                    id,
                    group,
                    ops,
                    messages,
                    next_op_seq,
                    next_seq,
                    complete,
                }]
            }
            ClientFrame::AckInbox { id, inbox_ids } => {
                self.inbox
                    .retain(|item| !inbox_ids.contains(&item.inbox_id));
                vec![ServerFrame::Ok { id }]
            }
            // Accepted as it is: what the device published is in `sent`.
            ClientFrame::PublishDevices { id, .. } => vec![ServerFrame::Ok { id }],
            // Nobody else published a list of this user: the chain after its own is empty.
            ClientFrame::DeviceListChain { id, .. } => vec![ServerFrame::DeviceListChain {
                id,
                lists: Vec::new(),
            }],
            other => panic!("the script does not expect {other:?}"),
        }
    }

    fn authenticated(
        &self,
        id: confide_protocol::RequestId,
        user: UserId,
        device: DeviceId,
        display_name: String,
    ) -> Vec<ServerFrame> {
        let mut frames = vec![ServerFrame::Authenticated {
            id,
            user,
            device,
            display_name,
        }];
        if !self.inbox.is_empty() {
            frames.push(ServerFrame::Inbox {
                items: self.inbox.clone(),
            });
        }
        frames
    }

    /// Puts `payload` into the device's inbox and returns the item (to deliver live too).
    pub fn put_in_inbox(&mut self, payload: SealedPayload, received_at: Timestamp) -> InboxItem {
        self.next_inbox_id += 1;
        let item = InboxItem {
            inbox_id: self.next_inbox_id,
            received_at,
            payload,
        };
        self.inbox.push(item.clone());
        item
    }
}

/// Dials the scripted server.
pub struct ScriptNet {
    server: Shared,
    store: MemoryStore,
    clock: Arc<AtomicU64>,
}

/// One connection: the frames queued for the device, answered as they are sent.
pub struct ScriptLink {
    server: Shared,
    store: MemoryStore,
    clock: Arc<AtomicU64>,
    pub queue: VecDeque<ServerFrame>,
}

impl Network for ScriptNet {
    type Link = ScriptLink;

    async fn dial(&mut self) -> Result<ScriptLink, ClientError> {
        let challenge = ServerFrame::Challenge {
            version: PROTOCOL_VERSION,
            server_name: "relay.test".into(),
            nonce: [9; 32],
            server_time: Timestamp(self.clock.load(Ordering::SeqCst)),
        };
        Ok(ScriptLink {
            server: self.server.clone(),
            store: self.store.clone(),
            clock: self.clock.clone(),
            queue: VecDeque::from([challenge]),
        })
    }
}

impl Link for ScriptLink {
    fn host(&self) -> &str {
        "relay.test"
    }

    async fn send(&mut self, frame: &ClientFrame) -> Result<(), TransportError> {
        let mut server = self.server.lock().unwrap();
        server.sent.push((frame.clone(), self.store.snapshot()));
        let scripted = server.answer.as_mut().and_then(|answer| answer(frame));
        let replies = match scripted {
            Some(replies) => replies,
            None => server.reply(frame, Timestamp(self.clock.load(Ordering::SeqCst))),
        };
        self.queue.extend(replies);
        Ok(())
    }

    async fn recv(&mut self, _within: Duration) -> Result<Option<ServerFrame>, TransportError> {
        // Everything the server will send is queued already: an empty queue is a wait that
        // would time out.
        Ok(self.queue.pop_front())
    }

    async fn close(self) {}
}

/// Every event the application was handed, with the store as it was at that moment.
pub type Events = Arc<Mutex<Vec<(Event, Snapshot)>>>;

/// A settable clock, seeded randomness, and an application that records what it is shown.
struct TestHost {
    clock: Arc<AtomicU64>,
    rng: ChaCha20Rng,
    store: MemoryStore,
    events: Events,
}

impl Host for TestHost {
    fn now(&self) -> Timestamp {
        Timestamp(self.clock.load(Ordering::SeqCst))
    }

    fn fill_random(&mut self, out: &mut [u8]) {
        rand_core::Rng::fill_bytes(&mut self.rng, out);
    }

    fn event(&mut self, event: Event) {
        self.events
            .lock()
            .unwrap()
            .push((event, self.store.snapshot()));
    }

    /// Two helper threads on every page, however short, as a native host lends its cores: every
    /// test that syncs runs its pages' signature checks on them as well as on the core's own
    /// thread (the results do not depend on which thread checked what).
    fn lend_cores(&self, checks: &Arc<PageChecks<StoredMessage>>) {
        for _ in 0..2 {
            let checks = Arc::clone(checks);
            std::thread::spawn(move || while checks.help() {});
        }
    }
}

/// Another member's device, as its own client would act (or a hostile one).
pub struct Member {
    pub identity: DeviceIdentity,
    pub user: UserId,
    pub name: String,
    pub rng: ChaCha20Rng,
}

impl Member {
    /// The member of user `[seed; 16]`, with keys from `seed`.
    pub fn new(seed: u8, name: &str) -> Member {
        Member {
            identity: identity(seed),
            user: UserId([seed; 16]),
            name: name.into(),
            rng: ChaCha20Rng::from_seed([seed.wrapping_add(100); 32]),
        }
    }

    pub fn device(&self) -> DeviceId {
        self.identity.device_id()
    }

    pub fn keys(&self) -> DeviceKeys {
        self.identity.public_keys()
    }

    /// The member's user identity key (from the device's id, so every call gives the same list
    /// and another device under the same user id — an impostor — has another identity key).
    pub fn user_identity(&self) -> confide_protocol::device_list::UserIdentity {
        let mut seed = self.identity.device_id().0;
        seed[0] ^= 0x5a;
        confide_protocol::device_list::UserIdentity::from_secret_bytes(&seed)
    }

    /// The member's entry, with a first device list naming their one device (PROTOCOL.md §3.6).
    pub fn entry(&self) -> MemberEntry {
        let identity = self.user_identity();
        let list = confide_protocol::device_list::DeviceList::first(
            self.user,
            &identity,
            &self.identity,
            Timestamp(0),
        );
        MemberEntry {
            user: self.user,
            display_name: self.name.clone(),
            devices: vec![self.keys()],
            device_list: Some(identity.sign_list(&list, &self.identity).unwrap()),
        }
    }

    /// `body` signed as the next op on `state`, claimed at `at`.
    pub fn op(&self, state: &GroupState, at: Timestamp, body: OpBody) -> SignedOp {
        state
            .next_op(self.device(), state.claim_time(at), body)
            .sign(&self.identity)
            .unwrap()
    }

    /// A fresh sender chain.
    pub fn chain(&mut self) -> SenderChain {
        SenderChain::generate(&mut self.rng)
    }

    /// `chain`'s distribution sealed to `to` for `epoch` of `group`.
    pub fn seal_key(
        &mut self,
        chain: &SenderChain,
        to: &DeviceKeys,
        group: GroupId,
        epoch: EpochRef,
    ) -> SealedPayload {
        self.seal(SealKind::SenderKey, to, group, epoch, &chain.distribution())
    }

    /// `payload` sealed to `to` as a `kind` payload for `epoch` of `group`.
    pub fn seal(
        &mut self,
        kind: SealKind,
        to: &DeviceKeys,
        group: GroupId,
        epoch: EpochRef,
        payload: &[u8],
    ) -> SealedPayload {
        seal::seal(
            &self.identity,
            to,
            kind,
            group,
            epoch,
            payload,
            &mut self.rng,
        )
        .unwrap()
    }

    /// `content` as an envelope in `epoch` of `group`, advancing `chain`.
    pub fn envelope(
        &mut self,
        chain: &mut SenderChain,
        group: GroupId,
        epoch: EpochRef,
        content: &MessageContent,
    ) -> Envelope {
        let body = serde_json::to_vec(content).unwrap();
        Envelope::seal(&self.identity, group, epoch, chain, &body, &mut self.rng).unwrap()
    }
}

/// An `add` op body for `member`, without an invite.
pub fn add(member: MemberEntry) -> OpBody {
    OpBody::Add {
        member,
        invite: None,
        invite_sig: None,
        invite_device: None,
    }
}

pub fn identity(seed: u8) -> DeviceIdentity {
    DeviceIdentity::generate(&mut ChaCha20Rng::from_seed([seed; 32]))
}

/// A text message written at `sent_at`.
pub fn text(text: &str, sent_at: Timestamp) -> MessageContent {
    MessageContent {
        sent_at,
        seen_seq: None,
        body: ContentBody::Text {
            text: text.into(),
            reply_to: None,
            warnings: Vec::new(),
            round: None,
        },
    }
}

/// The store key of message `seq` of `group` in the `messages`, `evidence` and `seq_number`
/// trees.
pub fn at_seq(group: GroupId, seq: u64) -> Vec<u8> {
    [group.as_bytes().as_slice(), &seq.to_be_bytes()].concat()
}

/// A stored message record's JSON and the report evidence it carries: the value is 0x01, the
/// JSON's length (u32, big-endian), the JSON, then the evidence.
pub fn record_and_evidence(device: &Device, group: GroupId, seq: Seq) -> (Vec<u8>, Vec<u8>) {
    let value = device
        .store
        .snapshot()
        .get("messages", &at_seq(group, seq.0))
        .unwrap()
        .to_vec();
    assert_eq!(value[0], 0x01, "the record carries no evidence");
    let len = u32::from_be_bytes(value[1..5].try_into().unwrap()) as usize;
    (value[5..5 + len].to_vec(), value[5 + len..].to_vec())
}

/// A message record's JSON and its evidence as one value again.
pub fn record_with_evidence(json: &[u8], evidence: &[u8]) -> Vec<u8> {
    let mut value = vec![0x01];
    value.extend_from_slice(&u32::try_from(json.len()).unwrap().to_be_bytes());
    value.extend_from_slice(json);
    value.extend_from_slice(evidence);
    value
}

/// Rewrites message `seq` of `group` as a store written before records carried their evidence
/// kept it: the record's JSON alone in `messages`, the evidence in `evidence`.
pub fn keep_evidence_apart(device: &Device, group: GroupId, seq: Seq) {
    let (json, evidence) = record_and_evidence(device, group, seq);
    let at = at_seq(group, seq.0);
    let mut old = confide_client_core::store::Batch::new();
    old.put("messages", &at, zeroize::Zeroizing::new(json));
    old.put("evidence", &at, zeroize::Zeroizing::new(evidence));
    block_on(confide_client_core::store::ClientStore::commit(
        &device.store,
        old,
    ))
    .unwrap();
}

/// The store key of message `id` of `group` in the `seen` and `deleted` trees.
pub fn of_id(group: GroupId, id: MessageId) -> Vec<u8> {
    [group.as_bytes().as_slice(), id.as_bytes()].concat()
}

/// Alice's device: the core under test and the world around it.
pub struct Device {
    pub core: Core,
    pub store: MemoryStore,
    pub server: Shared,
    pub events: Events,
    pub clock: Arc<AtomicU64>,
    pub alice: Member,
}

impl Device {
    /// Alice's new device, registered with an empty server and connected.
    pub fn new() -> Device {
        let store = MemoryStore::new();
        Device::create(store, Shared::default())
    }

    /// Alice's new device over `store` (a faulty one, say), talking to `server`, connected.
    pub fn create(store: MemoryStore, server: Shared) -> Device {
        let mut device = Device::fresh(store, server);
        block_on(device.core.connect()).unwrap();
        device
    }

    /// Alice's new device over `store`, talking to `server`, not connected yet (so that a test
    /// can see the connection itself fail).
    pub fn fresh(store: MemoryStore, server: Shared) -> Device {
        let alice = Member::new(1, "Alice");
        block_on(confide_client_core::profile::create(
            &store,
            &alice.identity,
            &Profile::new(ALICE, "Alice"),
        ))
        .unwrap();
        Device::open(store, server, Events::default(), 3)
    }

    /// Alice's device started over what `store` holds (not connected), with randomness from
    /// `seed`, recording events into `events`.
    pub fn open(store: MemoryStore, server: Shared, events: Events, seed: u8) -> Device {
        Device::open_as(store, server, events, seed, false)
    }

    /// As [`Device::open`]; with `version_1`, a device of protocol version 1 (a profile stored
    /// without an X-Wing key) stays one ([`ClientCore::new_version_1`]).
    pub fn open_as(
        store: MemoryStore,
        server: Shared,
        events: Events,
        seed: u8,
        version_1: bool,
    ) -> Device {
        Device::try_open_as(store, server, events, seed, version_1).unwrap()
    }

    /// As [`Device::open_as`], giving back the error of a core that refuses to start.
    pub fn try_open_as(
        store: MemoryStore,
        server: Shared,
        events: Events,
        seed: u8,
        version_1: bool,
    ) -> Result<Device, ClientError> {
        let clock = Arc::new(AtomicU64::new(NOW.0));
        let (identity, profile) = block_on(confide_client_core::profile::load(&store)).unwrap();
        let host = TestHost {
            clock: clock.clone(),
            rng: ChaCha20Rng::from_seed([seed; 32]),
            store: store.clone(),
            events: events.clone(),
        };
        let net = ScriptNet {
            server: server.clone(),
            store: store.clone(),
            clock: clock.clone(),
        };
        let core = match version_1 {
            false => block_on(ClientCore::new(
                store.clone(),
                net,
                Box::new(host),
                identity,
                profile,
                None,
            )),
            true => block_on(ClientCore::new_version_1(
                store.clone(),
                net,
                Box::new(host),
                identity,
                profile,
                None,
            )),
        }?;
        Ok(Device {
            core,
            store,
            server,
            events,
            clock,
            alice: Member::new(1, "Alice"),
        })
    }

    /// The same device started again over its store, as after a crash (not connected).
    pub fn restart(self, seed: u8) -> Device {
        let (store, server, events) =
            (self.store.clone(), self.server.clone(), self.events.clone());
        drop(self);
        Device::open(store, server, events, seed)
    }

    pub fn now(&self) -> Timestamp {
        Timestamp(self.clock.load(Ordering::SeqCst))
    }

    pub fn set_clock(&self, at: Timestamp) {
        self.clock.store(at.0, Ordering::SeqCst);
    }

    /// A group Alice created, with `members` added by her (as a driver would: each command
    /// followed by `after_input`). Events and sent frames of the setup are cleared.
    pub fn group_with(&mut self, members: &[&Member]) -> GroupId {
        let group = block_on(self.core.create_group()).unwrap();
        for member in members {
            self.append(group, add(member.entry()));
        }
        self.clear();
        group
    }

    /// Alice appends `body` through her device.
    pub fn append(&mut self, group: GroupId, body: OpBody) -> u64 {
        let seq = block_on(self.core.append(group, body)).unwrap();
        block_on(self.core.after_input());
        seq
    }

    /// Alice gives `user` the `role` in `group`.
    pub fn set_role(&mut self, group: GroupId, user: UserId, role: Role) -> u64 {
        self.append(group, OpBody::SetRole { user, role })
    }

    /// Alice removes `user` from `group` (without a ban).
    pub fn remove(&mut self, group: GroupId, user: UserId) -> u64 {
        self.append(group, OpBody::Remove { user, ban: false })
    }

    /// Forgets the events and sent frames so far.
    pub fn clear(&mut self) {
        self.events.lock().unwrap().clear();
        self.server.lock().unwrap().sent.clear();
    }

    /// The server's log of `group`.
    pub fn log(&self, group: GroupId) -> Log {
        self.server.lock().unwrap().logs[&group].clone()
    }

    /// The log's state on the server (what an honest member holds).
    pub fn state(&self, group: GroupId) -> GroupState {
        self.log(group).state()
    }

    /// `member` signs `body` as the server log's next op; it is stored on the server (not
    /// delivered). Returns the op and its seq.
    pub fn member_op(&self, group: GroupId, member: &Member, body: OpBody) -> (SignedOp, u64) {
        let op = member.op(&self.state(group), self.now(), body);
        let seq = self.store_op(group, op.clone());
        (op, seq)
    }

    /// The server appends `op` to its log of `group`, whatever it is (not delivered). Returns
    /// its seq.
    pub fn store_op(&self, group: GroupId, op: SignedOp) -> u64 {
        let mut server = self.server.lock().unwrap();
        let log = server.logs.get_mut(&group).unwrap();
        log.ops.push(op);
        log.ops.len() as u64 - 1
    }

    /// The test changes the server's log of `group` as it likes (as a hostile server would).
    pub fn edit_log(&self, group: GroupId, edit: impl FnOnce(&mut Log)) {
        edit(self.server.lock().unwrap().logs.get_mut(&group).unwrap());
    }

    /// The server takes the last op of its log of `group` back, to withhold it (or serve it
    /// later with [`Device::store_op`]).
    pub fn withhold_op(&self, group: GroupId) -> SignedOp {
        let mut server = self.server.lock().unwrap();
        server.logs.get_mut(&group).unwrap().ops.pop().unwrap()
    }

    /// A group `creator` made on the server (Alice's device is not told); its id is `[id; 16]`.
    pub fn foreign_group(&self, creator: &Member, id: u8) -> GroupId {
        let group = GroupId([id; 16]);
        let genesis = confide_protocol::group_log::Op::genesis(
            group,
            creator.device(),
            self.now(),
            creator.entry(),
            Default::default(),
        )
        .sign(&creator.identity)
        .unwrap();
        self.server.lock().unwrap().logs.insert(
            group,
            Log {
                ops: vec![genesis],
                messages: Vec::new(),
            },
        );
        group
    }

    /// A group `creator` made on the server and added Alice to (her device is not told); its
    /// id is `[id; 16]`.
    pub fn invited_by(&self, creator: &Member, id: u8) -> GroupId {
        let group = self.foreign_group(creator, id);
        self.member_adds(group, creator, self.alice.entry());
        group
    }

    /// `member` adds `entry` on the server (not delivered).
    pub fn member_adds(&self, group: GroupId, member: &Member, entry: MemberEntry) -> u64 {
        self.member_op(group, member, add(entry)).1
    }

    /// The server puts `payload` into Alice's inbox, received now (not delivered).
    pub fn put_in_inbox(&self, payload: SealedPayload) -> InboxItem {
        let now = self.now();
        self.server.lock().unwrap().put_in_inbox(payload, now)
    }

    /// `member`'s sender key for the server log's current epoch, sealed to Alice and put in
    /// her inbox (not delivered). Returns the chain and the inbox item.
    pub fn member_key(&self, group: GroupId, member: &mut Member) -> (SenderChain, InboxItem) {
        let epoch = self.state(group).epoch_ref();
        let chain = member.chain();
        let sealed = member.seal_key(&chain, &self.alice.keys(), group, epoch);
        (chain, self.put_in_inbox(sealed))
    }

    /// `member` writes `content` in the server log's current epoch; the server stores it at its
    /// next seq (not delivered).
    pub fn member_says(
        &self,
        group: GroupId,
        member: &mut Member,
        chain: &mut SenderChain,
        content: &MessageContent,
    ) -> StoredMessage {
        let epoch = self.state(group).epoch_ref();
        let envelope = member.envelope(chain, group, epoch, content);
        self.store_message(group, envelope)
    }

    /// `member` writes the text `words` now, as [`Device::member_says`].
    pub fn member_writes(
        &self,
        group: GroupId,
        member: &mut Member,
        chain: &mut SenderChain,
        words: &str,
    ) -> StoredMessage {
        self.member_says(group, member, chain, &text(words, self.now()))
    }

    /// `member` posts `words` with a fresh sender key: the key goes into Alice's inbox and the
    /// message onto the server, and both are pushed live.
    pub fn member_posts(&mut self, group: GroupId, member: &mut Member, words: &str) {
        let (mut chain, item) = self.member_key(group, member);
        let message = self.member_writes(group, member, &mut chain, words);
        self.push([
            ServerFrame::Inbox { items: vec![item] },
            live(group, &message),
        ]);
    }

    /// The server stores `envelope` in `group` at its next seq (not delivered).
    pub fn store_message(&self, group: GroupId, envelope: Envelope) -> StoredMessage {
        let mut server = self.server.lock().unwrap();
        let log = server.logs.get_mut(&group).unwrap();
        let m = StoredMessage {
            seq: log.next_seq(),
            received_at: self.now(),
            envelope,
        };
        log.messages.push(m.clone());
        m
    }

    /// The server pushes `frames` live; the device handles them as its driver would.
    pub fn push(&mut self, frames: impl IntoIterator<Item = ServerFrame>) {
        if let Some(link) = self.core.link_mut() {
            link.queue.extend(frames);
        }
        self.drive();
    }

    /// Pushes a stored message live.
    pub fn push_message(&mut self, group: GroupId, m: &StoredMessage) {
        self.push([live(group, m)]);
    }

    /// The server stores `envelope` in `group` at its next seq and pushes it live.
    pub fn deliver(&mut self, group: GroupId, envelope: Envelope) -> StoredMessage {
        let m = self.store_message(group, envelope);
        self.push_message(group, &m);
        m
    }

    /// Pushes op `seq` of `group` live.
    pub fn push_op(&mut self, group: GroupId, op: SignedOp, seq: u64) {
        self.push([ServerFrame::Op { group, op, seq }]);
    }

    /// Pushes inbox items live.
    pub fn push_inbox(&mut self, items: &[InboxItem]) {
        self.push([ServerFrame::Inbox {
            items: items.to_vec(),
        }]);
    }

    /// Hands the device every frame queued for it, then the driver's follow-up.
    pub fn drive(&mut self) {
        block_on(async {
            while let Some(link) = self.core.link_mut() {
                let Some(frame) = Link::recv(link, Duration::ZERO).await.unwrap() else {
                    break;
                };
                self.core.receive(frame).await;
                self.core.after_input().await;
            }
            self.core.after_input().await;
        });
    }

    /// A full sync, as the user asks for one.
    pub fn sync(&mut self) -> Result<(), ClientError> {
        let r = block_on(self.core.sync());
        self.drive();
        r
    }

    /// Alice sends a text, as her application does (then the driver's follow-up).
    pub fn send(&mut self, group: GroupId, text: &str) -> Result<u64, ClientError> {
        let r = block_on(self.core.send_text(group, text.into(), None));
        block_on(self.core.after_input());
        r.map(|m| m.seq.0)
    }

    /// The events handed to the application so far.
    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .map(|(e, _)| e.clone())
            .collect()
    }

    /// What `pick` takes out of the events handed to the application so far, in order (the
    /// events it passes over give nothing).
    pub fn events_as<T>(&self, pick: impl FnMut(Event) -> Option<T>) -> Vec<T> {
        self.events().into_iter().filter_map(pick).collect()
    }

    /// The texts shown as received messages, in order.
    pub fn shown(&self) -> Vec<String> {
        self.events_as(|e| match e {
            Event::Message(m) => Some(m.text),
            _ => None,
        })
    }

    /// The seqs and reasons of `MessageRejected` events, in order.
    pub fn rejected(&self) -> Vec<(u64, String)> {
        self.events_as(|e| match e {
            Event::MessageRejected(r) => Some((r.seq, r.reason)),
            _ => None,
        })
    }

    /// The frames the device sent so far.
    pub fn sent(&self) -> Vec<ClientFrame> {
        self.server
            .lock()
            .unwrap()
            .sent
            .iter()
            .map(|(f, _)| f.clone())
            .collect()
    }

    /// What `pick` takes out of the frames the device sent so far, in order.
    pub fn sent_as<T>(&self, pick: impl FnMut(ClientFrame) -> Option<T>) -> Vec<T> {
        self.sent().into_iter().filter_map(pick).collect()
    }

    /// The envelopes the device posted so far, in order.
    pub fn posted(&self) -> Vec<Envelope> {
        self.sent_as(|f| match f {
            ClientFrame::Post { envelope, .. } => Some(envelope),
            _ => None,
        })
    }

    /// The payloads the device sealed to others so far, in order.
    pub fn sealed(&self) -> Vec<SealedPayload> {
        self.sent_as(|f| match f {
            ClientFrame::SendSealed { items, .. } => Some(items),
            _ => None,
        })
        .concat()
    }

    /// The groups the device asked the server to sync so far, in order.
    pub fn synced(&self) -> Vec<GroupId> {
        self.sent_as(|f| match f {
            ClientFrame::Sync { group, .. } => Some(group),
            _ => None,
        })
    }

    /// The texts in the device's stored history of `group`.
    pub fn history(&self, group: GroupId) -> Vec<String> {
        block_on(self.core.history(group, None, 1_000))
            .unwrap()
            .into_iter()
            .map(|m| m.text)
            .collect()
    }

    /// Sets (or with `None` clears) the test's own answers in place of the honest server's.
    pub fn answer(&self, answer: Option<Answer>) {
        self.server.lock().unwrap().answer = answer;
    }
}

/// A stored message as the server pushes it live.
pub fn live(group: GroupId, m: &StoredMessage) -> ServerFrame {
    ServerFrame::Message {
        group,
        seq: m.seq,
        received_at: m.received_at,
        envelope: m.envelope.clone(),
    }
}

/// A group of Alice's with Bob in it, whose sender key Alice holds: the usual start.
pub fn alice_and_bob() -> (Device, GroupId, Member, SenderChain) {
    let mut device = Device::new();
    let mut bob = Member::new(2, "Bob");
    let group = device.group_with(&[&bob]);
    let (chain, item) = device.member_key(group, &mut bob);
    device.push_inbox(&[item]);
    device.clear();
    (device, group, bob, chain)
}
