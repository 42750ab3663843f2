//! Confide's client core in a real browser page (headless Chromium, through
//! `wasm-bindgen-test-runner`; `cargo xtask test` runs it): three [`ClientCore`]s, each over its
//! own [`MemoryStore`], with a seeded generator and a shared clock as their [`Host`], make a group
//! with an invite link, hand each other their sender keys and exchange messages, all inside the
//! page.
//!
//! Between them is [`Relay`], a stand-in for the server written for this test: it answers the
//! frames of PROTOCOL.md §9 the cores send (`register`/`authenticate`, `list_groups`,
//! `create_group`, `append_op`, `sync`, `send_sealed`, `post`, `ack_inbox`) and delivers
//! `message`, `op` and `inbox` frames to the other devices. Like the server it reads the signed
//! group log to know who is in a group, and it stores and forwards ciphertext only: it holds no
//! device's keys and never opens an envelope or a sealed payload, so every key exchange and every
//! decryption here is the cores' own. Frames cross it as JSON text, as over a websocket, and every
//! send and receive yields to the page's event loop first, so the cores' futures are suspended on
//! real JavaScript promises.
//!
//! What is checked is what people would notice: everyone reads everyone else's words exactly once
//! and in order, the relay never sees a word of them, and a message the relay alters is refused
//! rather than shown with other text.

#![cfg(target_arch = "wasm32")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use chacha20::ChaCha20Rng;
use confide_client_core::{
    ChatMessage, ClientCore, ClientError, Event, Host, Invite, InviteOptions, JoinOutcome, Link,
    MemoryStore, Network, Profile, TransportError,
};
use confide_protocol::frames::{
    self, ClientFrame, DEFAULT_MAX_CLIENT_FRAME_BYTES, DEFAULT_MAX_SERVER_FRAME_BYTES, ErrorCode,
    GroupSummary, InboxItem, PROTOCOL_VERSION, ServerFrame, StoredMessage,
};
use confide_protocol::group_log::{GroupState, SignedOp};
use confide_protocol::{DeviceId, DeviceIdentity, GroupId, MessageId, Seq, Timestamp, UserId};
use rand_core::{Rng as _, SeedableRng as _};
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

/// The name the relay signs challenges under and the cores dial.
const SERVER_NAME: &str = "relay.test";

/// Where the shared clock starts, in milliseconds since the Unix epoch (January 2027).
const T0: u64 = 1_800_000_000_000;

/// The clock every device and the relay read. It moves on a millisecond at every reading, so
/// time passes as the test goes on, the same way for everyone, and no two readings are equal.
#[derive(Clone)]
struct Clock(Rc<Cell<u64>>);

impl Clock {
    fn new() -> Clock {
        Clock(Rc::new(Cell::new(T0)))
    }

    fn now(&self) -> Timestamp {
        let now = self.0.get();
        self.0.set(now + 1);
        Timestamp(now)
    }
}

/// Frames waiting to be read on one connection, as the JSON text a websocket would carry.
type Queue = Rc<RefCell<VecDeque<String>>>;

fn push(queue: &Queue, frame: &ServerFrame) {
    queue.borrow_mut().push_back(frame.to_json().unwrap());
}

/// One group as the relay holds it: the signed log (and its replayed state, to know the
/// members) and the messages, encrypted.
struct RelayGroup {
    state: GroupState,
    ops: Vec<SignedOp>,
    messages: Vec<StoredMessage>,
    /// The id of every message posted, as the author posted it, with its seq: a re-post gets
    /// the same seq.
    posted: Vec<(MessageId, Seq)>,
}

impl RelayGroup {
    fn devices(&self) -> BTreeSet<DeviceId> {
        self.state
            .current_devices()
            .into_iter()
            .map(|keys| keys.device)
            .collect()
    }

    fn is_member(&self, device: &DeviceId) -> bool {
        self.state.member_of_device(device).is_some()
    }
}

/// The server's role for the frames the cores send, in memory; see the module docs.
struct Relay {
    clock: Clock,
    /// Registered devices: their user and display name.
    registered: HashMap<DeviceId, (UserId, String)>,
    /// The connection of every authenticated device that is online.
    online: HashMap<DeviceId, Queue>,
    groups: HashMap<GroupId, RelayGroup>,
    /// Sealed payloads not yet acknowledged, per recipient device.
    inboxes: HashMap<DeviceId, Vec<InboxItem>>,
    next_inbox_id: u64,
    dials: u8,
    /// While set, the relay flips one byte of the ciphertext of every message posted before
    /// it stores and delivers it.
    tamper: bool,
    /// Every frame the cores sent, as the relay received it.
    wire: Vec<String>,
}

/// One connection's state on the relay's side.
struct Conn {
    nonce: [u8; 32],
    device: Option<DeviceId>,
    queue: Queue,
}

impl Relay {
    fn new(clock: Clock) -> Relay {
        Relay {
            clock,
            registered: HashMap::new(),
            online: HashMap::new(),
            groups: HashMap::new(),
            inboxes: HashMap::new(),
            next_inbox_id: 0,
            dials: 0,
            tamper: false,
            wire: Vec::new(),
        }
    }

    /// Queues `frame` for every device in `to` that is online, except `from`.
    fn deliver(&self, to: &BTreeSet<DeviceId>, from: DeviceId, frame: &ServerFrame) {
        for device in to.iter().filter(|d| **d != from) {
            if let Some(queue) = self.online.get(device) {
                push(queue, frame);
            }
        }
    }

    /// The connection now acts for `device`: it is told so, then given its pending inbox.
    fn authenticated(
        &mut self,
        conn: &mut Conn,
        id: confide_protocol::RequestId,
        device: DeviceId,
    ) {
        let (user, display_name) = self.registered[&device].clone();
        conn.device = Some(device);
        self.online.insert(device, conn.queue.clone());
        push(
            &conn.queue,
            &ServerFrame::Authenticated {
                id,
                user,
                device,
                display_name,
            },
        );
        let items = self.inboxes.get(&device).cloned().unwrap_or_default();
        if !items.is_empty() {
            push(&conn.queue, &ServerFrame::Inbox { items });
        }
    }

    /// Answers one frame of `conn`, and delivers what it implies to the other devices.
    fn handle(&mut self, conn: &mut Conn, frame: ClientFrame) {
        let id = frame.request_id();
        let error = |code: ErrorCode, why: &str| ServerFrame::error(Some(id), code, why);
        let reply = match (conn.device, frame) {
            (
                None,
                ClientFrame::Register {
                    version,
                    user,
                    display_name,
                    keys,
                    signature,
                    ..
                },
            ) => {
                let device = keys.device;
                if version != PROTOCOL_VERSION {
                    error(ErrorCode::UnsupportedVersion, "version")
                } else if keys.verify().is_err()
                    || frames::verify_auth(&device, SERVER_NAME, &conn.nonce, &signature).is_err()
                {
                    error(ErrorCode::AuthFailed, "bad keys or signature")
                } else {
                    self.registered.insert(device, (user, display_name));
                    return self.authenticated(conn, id, device);
                }
            }
            (
                None,
                ClientFrame::Authenticate {
                    device, signature, ..
                },
            ) => {
                if !self.registered.contains_key(&device) {
                    error(ErrorCode::UnknownDevice, "register first")
                } else if frames::verify_auth(&device, SERVER_NAME, &conn.nonce, &signature)
                    .is_err()
                {
                    error(ErrorCode::AuthFailed, "bad signature")
                } else {
                    return self.authenticated(conn, id, device);
                }
            }
            (None, _) => error(ErrorCode::NotAuthenticated, "authenticate first"),
            (Some(_), ClientFrame::Register { .. } | ClientFrame::Authenticate { .. }) => {
                error(ErrorCode::AlreadyAuthenticated, "already authenticated")
            }
            (Some(me), ClientFrame::ListGroups { id }) => ServerFrame::Groups {
                id,
                groups: self
                    .groups
                    .iter()
                    .filter(|(_, g)| g.is_member(&me))
                    .map(|(group, g)| GroupSummary {
                        group: *group,
                        op_head_seq: g.ops.len() as u64 - 1,
                        last_seq: Seq(g.messages.len() as u64),
                    })
                    .collect(),
            },
            (Some(_), ClientFrame::CreateGroup { id, genesis }) => {
                match GroupState::from_genesis(&genesis) {
                    Err(e) => error(ErrorCode::InvalidOp, &e.to_string()),
                    Ok(state) if self.groups.contains_key(&state.group()) => {
                        error(ErrorCode::GroupExists, "taken")
                    }
                    Ok(state) => {
                        let group = state.group();
                        self.groups.insert(
                            group,
                            RelayGroup {
                                state,
                                ops: vec![genesis],
                                messages: Vec::new(),
                                posted: Vec::new(),
                            },
                        );
                        ServerFrame::GroupCreated { id, group }
                    }
                }
            }
            (Some(me), ClientFrame::AppendOp { id, group, op }) => {
                match self.groups.get_mut(&group) {
                    None => error(ErrorCode::NoSuchGroup, "no such group"),
                    Some(g) => {
                        let before = g.devices();
                        match g.state.apply(&op) {
                            Err(e) => error(ErrorCode::InvalidOp, &e.to_string()),
                            Ok(_) => {
                                g.ops.push(op.clone());
                                let seq = g.ops.len() as u64 - 1;
                                // Those who were in the group and those who are now.
                                let to = before.union(&g.devices()).copied().collect();
                                self.deliver(&to, me, &ServerFrame::Op { group, op, seq });
                                ServerFrame::OpAppended { id, group, seq }
                            }
                        }
                    }
                }
            }
            (
                Some(me),
                ClientFrame::Sync {
                    id,
                    group,
                    after_op_seq,
                    after_seq,
                    invite,
                    ..
                },
            ) => match self.groups.get(&group) {
                None => error(ErrorCode::NoSuchGroup, "no such group"),
                Some(g) => {
                    let member = g.is_member(&me);
                    // A non-member sees the log only, and only with an invite of that log.
                    let invited = invite.is_some_and(|proof| g.state.invite(&proof.id).is_some());
                    if !member && !invited {
                        error(ErrorCode::NotMember, "not a member")
                    } else {
                        let first_op = after_op_seq.map_or(0, |seq| seq as usize + 1);
                        ServerFrame::SyncPage {
                            id,
                            group,
                            ops: g.ops.get(first_op..).unwrap_or_default().to_vec(),
                            messages: match member {
                                true => g
                                    .messages
                                    .iter()
                                    .filter(|m| m.seq > after_seq)
                                    .cloned()
                                    .collect(),
                                false => Vec::new(),
                            },
                            next_op_seq: g.ops.len() as u64,
                            next_seq: Seq(g.messages.len() as u64 + 1),
                            complete: true,
                        }
                    }
                }
            },
            (Some(me), ClientFrame::Post { id, envelope }) => {
                let received_at = self.clock.now();
                let group = envelope.group;
                match self.groups.get_mut(&group) {
                    None => error(ErrorCode::NoSuchGroup, "no such group"),
                    Some(g) if envelope.sender != me || !g.is_member(&me) => {
                        error(ErrorCode::NotMember, "not a member's envelope")
                    }
                    Some(g) => {
                        let message = envelope.message_id();
                        if let Some((_, seq)) = g.posted.iter().find(|(m, _)| *m == message) {
                            ServerFrame::Posted {
                                id,
                                group,
                                seq: *seq,
                                message,
                            }
                        } else {
                            let seq = Seq(g.messages.len() as u64 + 1);
                            let mut envelope = envelope;
                            if self.tamper {
                                let middle = envelope.ciphertext.len() / 2;
                                envelope.ciphertext[middle] ^= 0x01;
                            }
                            g.posted.push((message, seq));
                            g.messages.push(StoredMessage {
                                seq,
                                received_at,
                                envelope: envelope.clone(),
                            });
                            let to = g.devices();
                            let live = ServerFrame::Message {
                                group,
                                seq,
                                received_at,
                                envelope,
                            };
                            self.deliver(&to, me, &live);
                            ServerFrame::Posted {
                                id,
                                group,
                                seq,
                                message,
                            }
                        }
                    }
                }
            }
            (Some(me), ClientFrame::SendSealed { id, items }) => {
                if items.iter().any(|item| item.sender != me) {
                    error(ErrorCode::BadFrame, "a sealed item names another sender")
                } else {
                    for payload in items {
                        self.next_inbox_id += 1;
                        let recipient = payload.recipient;
                        let item = InboxItem {
                            inbox_id: self.next_inbox_id,
                            received_at: self.clock.now(),
                            payload,
                        };
                        self.inboxes
                            .entry(recipient)
                            .or_default()
                            .push(item.clone());
                        if let Some(queue) = self.online.get(&recipient) {
                            push(queue, &ServerFrame::Inbox { items: vec![item] });
                        }
                    }
                    ServerFrame::Ok { id }
                }
            }
            (Some(me), ClientFrame::AckInbox { id, inbox_ids }) => {
                if let Some(inbox) = self.inboxes.get_mut(&me) {
                    inbox.retain(|item| !inbox_ids.contains(&item.inbox_id));
                }
                ServerFrame::Ok { id }
            }
            (Some(_), other) => error(
                ErrorCode::UnknownFrame,
                &format!("the test relay does not serve {}", other.type_name()),
            ),
        };
        push(&conn.queue, &reply);
    }
}

/// Lets the page's event loop run before going on: the future is suspended on a JavaScript
/// promise, as it would be on a websocket or IndexedDB.
async fn yield_to_the_page() {
    let resolved = js_sys::Promise::resolve(&wasm_bindgen::JsValue::UNDEFINED);
    wasm_bindgen_futures::JsFuture::from(resolved)
        .await
        .unwrap();
}

/// What a core dials: a new connection to the relay.
struct RelayNet(Rc<RefCell<Relay>>);

/// One connection to the relay.
struct RelayLink {
    relay: Rc<RefCell<Relay>>,
    conn: Conn,
}

impl Network for RelayNet {
    type Link = RelayLink;

    async fn dial(&mut self) -> Result<RelayLink, ClientError> {
        yield_to_the_page().await;
        let mut relay = self.0.borrow_mut();
        relay.dials += 1;
        let conn = Conn {
            nonce: [relay.dials; 32],
            device: None,
            queue: Queue::default(),
        };
        let challenge = ServerFrame::Challenge {
            version: PROTOCOL_VERSION,
            server_name: SERVER_NAME.into(),
            nonce: conn.nonce,
            server_time: relay.clock.now(),
        };
        push(&conn.queue, &challenge);
        Ok(RelayLink {
            relay: self.0.clone(),
            conn,
        })
    }
}

impl RelayLink {
    fn has_frames(&self) -> bool {
        !self.conn.queue.borrow().is_empty()
    }
}

impl Link for RelayLink {
    fn host(&self) -> &str {
        SERVER_NAME
    }

    async fn send(&mut self, frame: &ClientFrame) -> Result<(), TransportError> {
        yield_to_the_page().await;
        let text = frame.to_json()?;
        let frame = ClientFrame::from_json(&text, DEFAULT_MAX_CLIENT_FRAME_BYTES)?;
        let mut relay = self.relay.borrow_mut();
        relay.wire.push(text);
        relay.handle(&mut self.conn, frame);
        Ok(())
    }

    async fn recv(&mut self, _within: Duration) -> Result<Option<ServerFrame>, TransportError> {
        yield_to_the_page().await;
        // The relay answers every request as it is sent, so an empty queue is a wait that
        // would time out.
        let Some(text) = self.conn.queue.borrow_mut().pop_front() else {
            return Ok(None);
        };
        Ok(Some(ServerFrame::from_json(
            &text,
            DEFAULT_MAX_SERVER_FRAME_BYTES,
        )?))
    }

    async fn close(self) {
        if let Some(device) = self.conn.device {
            self.relay.borrow_mut().online.remove(&device);
        }
    }
}

/// The platform under one core: the shared clock, a generator seeded per device, and the list
/// of events the application was handed.
struct PageHost {
    clock: Clock,
    rng: ChaCha20Rng,
    events: Rc<RefCell<Vec<Event>>>,
}

impl Host for PageHost {
    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn fill_random(&mut self, out: &mut [u8]) {
        self.rng.fill_bytes(out);
    }

    fn event(&mut self, event: Event) {
        self.events.borrow_mut().push(event);
    }
}

/// One person's device in the page.
struct Device {
    name: &'static str,
    user: UserId,
    core: ClientCore<MemoryStore, RelayNet>,
    events: Rc<RefCell<Vec<Event>>>,
}

impl Device {
    /// A new device of a new user, registered with the relay and connected.
    async fn start(relay: &Rc<RefCell<Relay>>, seed: u8, name: &'static str) -> Device {
        let store = MemoryStore::new();
        let identity = DeviceIdentity::generate(&mut ChaCha20Rng::from_seed([seed; 32]));
        let user = UserId([seed; 16]);
        let profile = Profile::new(user, name);
        confide_client_core::profile::create(&store, &identity, &profile)
            .await
            .unwrap();
        let events = Rc::new(RefCell::new(Vec::new()));
        let host = PageHost {
            clock: relay.borrow().clock.clone(),
            rng: ChaCha20Rng::from_seed([seed.wrapping_add(100); 32]),
            events: events.clone(),
        };
        let mut core = ClientCore::new(
            store,
            RelayNet(relay.clone()),
            Box::new(host),
            identity,
            profile,
            None,
        )
        .await
        .unwrap();
        core.connect().await.unwrap();
        core.after_connect().await;
        assert!(core.is_registered(), "{name} is not registered");
        Device {
            name,
            user,
            core,
            events,
        }
    }

    /// The messages the application was handed as new ([`Event::Message`]).
    fn shown(&self) -> Vec<ChatMessage> {
        self.events
            .borrow()
            .iter()
            .filter_map(|event| match event {
                Event::Message(m) => Some(m.clone()),
                _ => None,
            })
            .collect()
    }

    async fn history_texts(&self, group: GroupId) -> Vec<String> {
        let history = self.core.history(group, None, 100).await.unwrap();
        history.into_iter().map(|m| m.text).collect()
    }
}

/// Hands every device the frames the relay queued for it, as a browser client's receive loop
/// would, until no frame waits anywhere.
async fn settle(devices: &mut [Device]) {
    loop {
        let mut moved = false;
        for device in devices.iter_mut() {
            while device.core.link_mut().is_some_and(|link| link.has_frames()) {
                let link = device.core.link_mut().unwrap();
                let frame = Link::recv(link, Duration::ZERO).await.unwrap().unwrap();
                device.core.receive(frame).await;
                device.core.after_input().await;
                moved = true;
            }
        }
        if !moved {
            return;
        }
    }
}

/// The relay and `names.len()` connected devices; the first creates a group and makes an
/// invite link, and every other one joins with that link. Every device's view has settled.
async fn group_of(names: &[&'static str]) -> (Rc<RefCell<Relay>>, Vec<Device>, GroupId) {
    let relay = Rc::new(RefCell::new(Relay::new(Clock::new())));
    let mut devices = Vec::new();
    for (seed, name) in (1..).zip(names) {
        devices.push(Device::start(&relay, seed, name).await);
    }
    let group = devices[0].core.create_group().await.unwrap();
    let invite = devices[0]
        .core
        .create_invite(
            group,
            InviteOptions::new()
                .max_uses(10)
                .valid_for(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    // What the facilitator would paste into another app, and the others into theirs.
    let link = invite.to_link();
    settle(&mut devices).await;
    for i in 1..devices.len() {
        let device = &mut devices[i];
        let outcome = device
            .core
            .join(Invite::from_link(&link).unwrap(), None)
            .await
            .unwrap();
        assert_eq!(outcome, JoinOutcome::Joined(group), "{}", device.name);
        device.core.after_input().await;
        settle(&mut devices).await;
    }
    let everyone: BTreeSet<UserId> = devices.iter().map(|d| d.user).collect();
    for device in &devices {
        let members: BTreeSet<UserId> = device
            .core
            .members(group)
            .unwrap()
            .into_iter()
            .map(|m| m.user)
            .collect();
        assert_eq!(members, everyone, "{} sees other members", device.name);
    }
    (relay, devices, group)
}

#[wasm_bindgen_test]
async fn three_cores_in_the_page_exchange_a_group_sender_keys_and_messages() {
    let (relay, mut devices, group) = group_of(&["Alice", "Bob", "Carol"]).await;
    let texts = [
        "Welcome, both of you. Same time every Tuesday.",
        "Thanks. Rough week, glad this group exists.",
        "Hi! First time here, a bit nervous.",
    ];
    // Each one's first message makes and seals their sender key to the other two.
    for (i, text) in texts.iter().enumerate() {
        let sent = devices[i]
            .core
            .send_text(group, (*text).into(), None)
            .await
            .unwrap();
        assert_eq!(sent.text, *text);
        devices[i].core.after_input().await;
        settle(&mut devices).await;
    }

    for (i, device) in devices.iter().enumerate() {
        // Every other person's words, each exactly once, from the right person; none of one's own.
        let shown: Vec<(UserId, String)> = device
            .shown()
            .into_iter()
            .map(|m| (m.sender, m.text))
            .collect();
        let expected: Vec<(UserId, String)> = (0..texts.len())
            .filter(|j| *j != i)
            .map(|j| (devices[j].user, texts[j].to_string()))
            .collect();
        assert_eq!(shown, expected, "what {} was shown", device.name);
        // The conversation as each one scrolls back: all three, in the order they were sent.
        assert_eq!(
            device.history_texts(group).await,
            texts,
            "{}'s history",
            device.name
        );
        let rejected = device
            .events
            .borrow()
            .iter()
            .filter(|e| matches!(e, Event::MessageRejected(_) | Event::GroupRejected(_)))
            .count();
        assert_eq!(rejected, 0, "{} rejected something", device.name);
    }

    // The relay carried sender keys and messages, and never a word of them in the clear.
    let relay = relay.borrow();
    let posted = relay.wire.iter().filter(|f| f.contains(r#""type":"post""#));
    assert_eq!(posted.count(), texts.len());
    let sealed = relay
        .wire
        .iter()
        .filter(|f| f.contains(r#""type":"send_sealed""#));
    assert_eq!(sealed.count(), texts.len(), "one sender key handout each");
    let words = ["Tuesday", "Rough", "nervous"];
    for seen in texts.iter().chain(&words) {
        assert!(
            !relay.wire.iter().any(|frame| frame.contains(seen)),
            "the relay saw {seen:?}"
        );
    }
}

#[wasm_bindgen_test]
async fn a_message_the_relay_alters_is_refused_not_shown_with_other_text() {
    let (relay, mut devices, group) = group_of(&["Alice", "Bob"]).await;
    let (altered, intact) = ("Meet at the library at seven.", "See you on Tuesday.");

    relay.borrow_mut().tamper = true;
    devices[0]
        .core
        .send_text(group, altered.into(), None)
        .await
        .unwrap();
    settle(&mut devices).await;
    relay.borrow_mut().tamper = false;
    // The next message comes through: the refusal cost one message, not the conversation.
    devices[0]
        .core
        .send_text(group, intact.into(), None)
        .await
        .unwrap();
    settle(&mut devices).await;

    let bob = &devices[1];
    let rejected: Vec<u64> = bob
        .events
        .borrow()
        .iter()
        .filter_map(|e| match e {
            Event::MessageRejected(r) if r.group == group => Some(r.seq),
            _ => None,
        })
        .collect();
    assert!(
        rejected.contains(&1),
        "Bob's core did not refuse the altered message: {rejected:?}"
    );
    let shown: Vec<String> = bob.shown().into_iter().map(|m| m.text).collect();
    assert_eq!(shown, [intact], "what Bob was shown");
    assert_eq!(bob.history_texts(group).await, [intact], "Bob's history");
    // Alice's own copy is the text she wrote.
    assert_eq!(devices[0].history_texts(group).await, [altered, intact]);
}
