//! [`Relay`]: the server's role for the frames client cores send, in memory, storing and
//! forwarding ciphertext only (see the crate docs).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use confide_protocol::frames::{
    self, ClientFrame, ErrorCode, GroupSummary, InboxItem, PROTOCOL_VERSION, ServerFrame,
    StoredMessage,
};
use confide_protocol::group_log::{GroupState, SignedOp};
use confide_protocol::{DeviceId, GroupId, MessageId, RequestId, Seq, UserId};

use crate::host::Clock;

/// The name the relay signs challenges under and the cores dial.
pub const SERVER_NAME: &str = "relay.test";

/// Frames waiting to be read on one connection, as the JSON text a websocket would carry.
pub(crate) type Queue = Arc<Mutex<VecDeque<String>>>;

pub(crate) fn push(queue: &Queue, frame: &ServerFrame) {
    queue.lock().unwrap().push_back(frame.to_json().unwrap());
}

/// One group as the relay holds it: the signed log (and its replayed state, to know the
/// members) and the messages, encrypted.
#[derive(Clone, Debug)]
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

/// Everything the relay stores, as a durable server would: registrations, groups and inboxes.
/// A test can keep a copy ([`Relay::records`]) and put it back later
/// ([`Relay::replace_records`]) while connections stay open.
#[derive(Clone, Debug, Default)]
pub struct Records {
    /// Registered devices: their user and display name.
    registered: HashMap<DeviceId, (UserId, String)>,
    groups: HashMap<GroupId, RelayGroup>,
    /// Sealed payloads not yet acknowledged, per recipient device.
    inboxes: HashMap<DeviceId, Vec<InboxItem>>,
    next_inbox_id: u64,
}

/// The server's role for the frames the cores send, in memory; see the crate docs.
#[derive(Debug)]
pub struct Relay {
    /// The clock the relay stamps messages and inbox items with (shared with the devices).
    pub clock: Clock,
    /// The connection of every authenticated device that is online.
    online: HashMap<DeviceId, Queue>,
    records: Records,
    dials: u8,
    /// While set, the relay flips one byte of the ciphertext of every message posted before
    /// it stores and delivers it.
    pub tamper: bool,
    /// Every frame the cores sent, as the relay received it.
    pub wire: Vec<String>,
}

/// One connection's state on the relay's side.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) nonce: [u8; 32],
    pub(crate) device: Option<DeviceId>,
    pub(crate) queue: Queue,
}

/// A [`Relay`] shared by every device of a test (and the test itself).
#[derive(Clone, Debug)]
pub struct SharedRelay(Arc<Mutex<Relay>>);

impl SharedRelay {
    /// An empty relay on `clock`.
    pub fn new(clock: Clock) -> SharedRelay {
        SharedRelay(Arc::new(Mutex::new(Relay {
            clock,
            online: HashMap::new(),
            records: Records::default(),
            dials: 0,
            tamper: false,
            wire: Vec::new(),
        })))
    }

    /// The relay, to look at or change. Not to be held across an `await` of a core.
    pub fn lock(&self) -> MutexGuard<'_, Relay> {
        self.0.lock().unwrap()
    }
}

impl Relay {
    /// A copy of everything the relay stores now.
    pub fn records(&self) -> Records {
        self.records.clone()
    }

    /// Replaces what the relay stores with `records` (a copy taken earlier, or another
    /// relay's). Open connections stay open, and nothing is delivered: the devices learn of
    /// the difference only when they ask.
    pub fn replace_records(&mut self, records: Records) {
        self.records = records;
    }

    /// A new connection: its challenge is queued.
    pub(crate) fn dial(&mut self) -> Conn {
        self.dials += 1;
        let conn = Conn {
            nonce: [self.dials; 32],
            device: None,
            queue: Queue::default(),
        };
        let challenge = ServerFrame::Challenge {
            version: PROTOCOL_VERSION,
            server_name: SERVER_NAME.into(),
            nonce: conn.nonce,
            server_time: self.clock.now(),
        };
        push(&conn.queue, &challenge);
        conn
    }

    /// The connection of `device` closed.
    pub(crate) fn closed(&mut self, device: &DeviceId) {
        self.online.remove(device);
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
    fn authenticated(&mut self, conn: &mut Conn, id: RequestId, device: DeviceId) {
        let (user, display_name) = self.records.registered[&device].clone();
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
        let items = self
            .records
            .inboxes
            .get(&device)
            .cloned()
            .unwrap_or_default();
        if !items.is_empty() {
            push(&conn.queue, &ServerFrame::Inbox { items });
        }
    }

    /// Answers one frame of `conn`, and delivers what it implies to the other devices.
    pub(crate) fn handle(&mut self, conn: &mut Conn, frame: ClientFrame) {
        let id = frame.request_id();
        let reply = match (conn.device, frame) {
            (None, frame @ (ClientFrame::Register { .. } | ClientFrame::Authenticate { .. })) => {
                match self.log_in(conn, frame) {
                    Ok(device) => return self.authenticated(conn, id, device),
                    Err((code, why)) => error(id, code, why),
                }
            }
            (None, _) => error(id, ErrorCode::NotAuthenticated, "authenticate first"),
            (Some(_), ClientFrame::Register { .. } | ClientFrame::Authenticate { .. }) => {
                error(id, ErrorCode::AlreadyAuthenticated, "already authenticated")
            }
            (Some(me), ClientFrame::ListGroups { id }) => ServerFrame::Groups {
                id,
                groups: self
                    .records
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
            (Some(_), ClientFrame::CreateGroup { id, genesis }) => self.create_group(id, genesis),
            (Some(me), ClientFrame::AppendOp { id, group, op }) => {
                self.append_op(me, id, group, op)
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
            ) => match self.records.groups.get(&group) {
                None => error(id, ErrorCode::NoSuchGroup, "no such group"),
                Some(g) => {
                    let member = g.is_member(&me);
                    // A non-member sees the log only, and only with an invite of that log.
                    let invited = invite.is_some_and(|proof| g.state.invite(&proof.id).is_some());
                    if !member && !invited {
                        error(id, ErrorCode::NotMember, "not a member")
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
            (Some(me), ClientFrame::Post { id, envelope }) => self.post(me, id, envelope),
            (Some(me), ClientFrame::SendSealed { id, items }) => {
                if items.iter().any(|item| item.sender != me) {
                    error(
                        id,
                        ErrorCode::BadFrame,
                        "a sealed item names another sender",
                    )
                } else {
                    for payload in items {
                        self.records.next_inbox_id += 1;
                        let recipient = payload.recipient;
                        let item = InboxItem {
                            inbox_id: self.records.next_inbox_id,
                            received_at: self.clock.now(),
                            payload,
                        };
                        let inbox = self.records.inboxes.entry(recipient).or_default();
                        inbox.push(item.clone());
                        if let Some(queue) = self.online.get(&recipient) {
                            push(queue, &ServerFrame::Inbox { items: vec![item] });
                        }
                    }
                    ServerFrame::Ok { id }
                }
            }
            (Some(me), ClientFrame::AckInbox { id, inbox_ids }) => {
                if let Some(inbox) = self.records.inboxes.get_mut(&me) {
                    inbox.retain(|item| !inbox_ids.contains(&item.inbox_id));
                }
                ServerFrame::Ok { id }
            }
            (Some(_), other) => error(
                id,
                ErrorCode::UnknownFrame,
                &format!("the test relay does not serve {}", other.type_name()),
            ),
        };
        push(&conn.queue, &reply);
    }

    /// Checks a `register` or `authenticate` against the connection's challenge: the device
    /// it acts for, or why not.
    fn log_in(
        &mut self,
        conn: &Conn,
        frame: ClientFrame,
    ) -> Result<DeviceId, (ErrorCode, &'static str)> {
        let signed = |device: &DeviceId, signature| {
            frames::verify_auth(device, SERVER_NAME, &conn.nonce, signature).is_ok()
        };
        match frame {
            ClientFrame::Register {
                version,
                user,
                display_name,
                keys,
                signature,
                ..
            } => {
                let device = keys.device;
                if version != PROTOCOL_VERSION {
                    Err((ErrorCode::UnsupportedVersion, "version"))
                } else if keys.verify().is_err() || !signed(&device, &signature) {
                    Err((ErrorCode::AuthFailed, "bad keys or signature"))
                } else {
                    self.records.registered.insert(device, (user, display_name));
                    Ok(device)
                }
            }
            ClientFrame::Authenticate {
                device, signature, ..
            } => {
                if !self.records.registered.contains_key(&device) {
                    Err((ErrorCode::UnknownDevice, "register first"))
                } else if !signed(&device, &signature) {
                    Err((ErrorCode::AuthFailed, "bad signature"))
                } else {
                    Ok(device)
                }
            }
            _ => Err((ErrorCode::NotAuthenticated, "authenticate first")),
        }
    }

    fn create_group(&mut self, id: RequestId, genesis: SignedOp) -> ServerFrame {
        match GroupState::from_genesis(&genesis) {
            Err(e) => error(id, ErrorCode::InvalidOp, &e.to_string()),
            Ok(state) if self.records.groups.contains_key(&state.group()) => {
                error(id, ErrorCode::GroupExists, "taken")
            }
            Ok(state) => {
                let group = state.group();
                let created = RelayGroup {
                    state,
                    ops: vec![genesis],
                    messages: Vec::new(),
                    posted: Vec::new(),
                };
                self.records.groups.insert(group, created);
                ServerFrame::GroupCreated { id, group }
            }
        }
    }

    fn append_op(
        &mut self,
        me: DeviceId,
        id: RequestId,
        group: GroupId,
        op: SignedOp,
    ) -> ServerFrame {
        let Some(g) = self.records.groups.get_mut(&group) else {
            return error(id, ErrorCode::NoSuchGroup, "no such group");
        };
        let before = g.devices();
        if let Err(e) = g.state.apply(&op) {
            return error(id, ErrorCode::InvalidOp, &e.to_string());
        }
        g.ops.push(op.clone());
        let seq = g.ops.len() as u64 - 1;
        // Those who were in the group and those who are now.
        let to = before.union(&g.devices()).copied().collect();
        self.deliver(&to, me, &ServerFrame::Op { group, op, seq });
        ServerFrame::OpAppended { id, group, seq }
    }

    fn post(
        &mut self,
        me: DeviceId,
        id: RequestId,
        mut envelope: confide_protocol::envelope::Envelope,
    ) -> ServerFrame {
        let received_at = self.clock.now();
        let group = envelope.group;
        let Some(g) = self.records.groups.get_mut(&group) else {
            return error(id, ErrorCode::NoSuchGroup, "no such group");
        };
        if envelope.sender != me || !g.is_member(&me) {
            return error(id, ErrorCode::NotMember, "not a member's envelope");
        }
        let message = envelope.message_id();
        if let Some((_, seq)) = g.posted.iter().find(|(m, _)| *m == message) {
            let seq = *seq;
            return ServerFrame::Posted {
                id,
                group,
                seq,
                message,
            };
        }
        let seq = Seq(g.messages.len() as u64 + 1);
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

/// An error reply to request `id`.
fn error(id: RequestId, code: ErrorCode, why: &str) -> ServerFrame {
    ServerFrame::error(Some(id), code, why)
}
