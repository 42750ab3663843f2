#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! What a hostile server can do with what it serves, at the core, without a network: a
//! [`ClientCore`] over a [`MemoryStore`], a scripted server behind a [`Link`] that serves
//! whatever logs and inbox items the test gives it (forged ones included), and a host with a
//! fixed clock and seeded randomness.
//!
//! Alice's device is the one under test. Bob and Mallory are scripted identities: the test
//! signs their ops and seals their payloads itself, as the server (or a member) could.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use chacha20::ChaCha20Rng;
use confide_client_core::{
    ClientCore, ClientError, ClientStore, Event, FacilitatorItem, Host, Invite, Link, MemoryStore,
    Network, Profile, TransportError,
};
use confide_protocol::envelope::{ContentBody, Envelope, MessageContent};
use confide_protocol::frames::{
    ClientFrame, ErrorCode, GroupSummary, InboxItem, PROTOCOL_VERSION, ServerFrame, StoredMessage,
};
use confide_protocol::group_log::{
    GroupSettings, GroupState, InviteSecret, MemberEntry, Op, OpBody, SignedOp,
};
use confide_protocol::seal::{self, SealKind, SealedPayload};
use confide_protocol::sender_key::SenderChain;
use confide_protocol::{DeviceIdentity, GroupId, Seq, Timestamp, UserId};
use pollster::block_on;
use rand_core::{Rng as _, SeedableRng as _};

/// The fixed wall clock of the host.
const NOW: Timestamp = Timestamp(1_800_000_000_000);

const ALICE: UserId = UserId([1; 16]);
const BOB: UserId = UserId([2; 16]);
const MALLORY: UserId = UserId([3; 16]);

/// What the scripted server holds: every group's log and messages, and Alice's inbox.
#[derive(Default)]
struct Server {
    logs: BTreeMap<GroupId, Vec<SignedOp>>,
    messages: BTreeMap<GroupId, Vec<StoredMessage>>,
    inbox: Vec<InboxItem>,
    next_inbox_id: u64,
}

impl Server {
    /// Puts a sealed payload into Alice's inbox and returns the item.
    fn deliver(&mut self, payload: SealedPayload) -> InboxItem {
        self.next_inbox_id += 1;
        let item = InboxItem {
            inbox_id: self.next_inbox_id,
            received_at: NOW,
            payload,
        };
        self.inbox.push(item.clone());
        item
    }
}

type Shared = Arc<Mutex<Server>>;

struct ScriptNet(Shared);

/// One connection: frames the server has queued for the client, answered as they are sent.
struct ScriptLink {
    server: Shared,
    queue: VecDeque<ServerFrame>,
}

impl Network for ScriptNet {
    type Link = ScriptLink;

    async fn dial(&mut self) -> Result<ScriptLink, ClientError> {
        let challenge = ServerFrame::Challenge {
            version: PROTOCOL_VERSION,
            server_name: "relay.test".into(),
            nonce: [9; 32],
            server_time: NOW,
        };
        Ok(ScriptLink {
            server: self.0.clone(),
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
        let reply = match frame.clone() {
            ClientFrame::Register { id, .. } | ClientFrame::Authenticate { id, .. } => {
                let device = match frame {
                    ClientFrame::Register { keys, .. } => keys.device,
                    ClientFrame::Authenticate { device, .. } => *device,
                    _ => unreachable!(),
                };
                self.queue.push_back(ServerFrame::Authenticated {
                    id,
                    user: ALICE,
                    device,
                    display_name: "Alice".into(),
                });
                if !server.inbox.is_empty() {
                    self.queue.push_back(ServerFrame::Inbox {
                        items: server.inbox.clone(),
                    });
                }
                return Ok(());
            }
            // The hostile server lists every group it holds, Alice's or not.
            ClientFrame::ListGroups { id } => ServerFrame::Groups {
                id,
                groups: server
                    .logs
                    .iter()
                    .map(|(group, ops)| GroupSummary {
                        group: *group,
                        op_head_seq: ops.len() as u64 - 1,
                        last_seq: Seq(server.messages.get(group).map_or(0, |m| m.len() as u64)),
                    })
                    .collect(),
            },
            ClientFrame::CreateGroup { id, genesis } => {
                let group = genesis.parse_unverified().unwrap().group;
                server.logs.insert(group, vec![genesis]);
                ServerFrame::GroupCreated { id, group }
            }
            ClientFrame::AppendOp { id, group, op } => {
                let log = server.logs.get_mut(&group).unwrap();
                log.push(op);
                ServerFrame::OpAppended {
                    id,
                    group,
                    seq: log.len() as u64 - 1,
                }
            }
            ClientFrame::Sync {
                id,
                group,
                after_op_seq,
                after_seq,
                ..
            } => match server.logs.get(&group) {
                None => ServerFrame::Error {
                    id: Some(id),
                    code: ErrorCode::NoSuchGroup,
                    message: "no such group".into(),
                    retry_after_ms: None,
                },
                Some(ops) => {
                    let first_op = after_op_seq.map_or(0, |s| s as usize + 1);
                    let messages = server.messages.get(&group).cloned().unwrap_or_default();
                    ServerFrame::SyncPage {
                        id,
                        group,
                        ops: ops.get(first_op..).unwrap_or_default().to_vec(),
                        next_op_seq: ops.len() as u64,
                        next_seq: Seq(messages.len() as u64 + 1),
                        messages: messages.into_iter().filter(|m| m.seq > after_seq).collect(),
                        complete: true,
                    }
                }
            },
            ClientFrame::SendSealed { id, .. } => ServerFrame::Ok { id },
            ClientFrame::AckInbox { id, inbox_ids } => {
                server
                    .inbox
                    .retain(|item| !inbox_ids.contains(&item.inbox_id));
                ServerFrame::Ok { id }
            }
            other => panic!("the script does not expect {other:?}"),
        };
        self.queue.push_back(reply);
        Ok(())
    }

    async fn recv(&mut self, _within: Duration) -> Result<Option<ServerFrame>, TransportError> {
        // Everything the server will ever send is queued already: an empty queue is a wait that
        // would time out.
        Ok(self.queue.pop_front())
    }

    async fn close(self) {}
}

/// A fixed clock, seeded randomness, and the events the application was given.
struct TestHost {
    rng: ChaCha20Rng,
    events: Arc<Mutex<Vec<Event>>>,
}

impl Host for TestHost {
    fn now(&self) -> Timestamp {
        NOW
    }

    fn fill_random(&mut self, out: &mut [u8]) {
        self.rng.fill_bytes(out);
    }

    fn event(&mut self, event: Event) {
        self.events.lock().unwrap().push(event);
    }
}

type Core = ClientCore<MemoryStore, ScriptNet>;

fn identity(seed: u8) -> DeviceIdentity {
    DeviceIdentity::generate(&mut ChaCha20Rng::from_seed([seed; 32]))
}

fn entry(identity: &DeviceIdentity, user: UserId, name: &str) -> MemberEntry {
    MemberEntry {
        user,
        display_name: name.into(),
        devices: vec![identity.public_keys()],
    }
}

/// Alice's device, Bob's (the real one), and the keys the server made up for a "Bob" of its
/// own, with Mallory, the server's accomplice who signs the made-up groups.
struct World {
    store: MemoryStore,
    server: Shared,
    events: Arc<Mutex<Vec<Event>>>,
    core: Core,
    alice: DeviceIdentity,
    bob: DeviceIdentity,
    fake_bob: DeviceIdentity,
    mallory: DeviceIdentity,
    rng: ChaCha20Rng,
}

impl World {
    /// Alice's device, set up and connected to an empty server.
    fn new() -> World {
        block_on(async {
            let store = MemoryStore::new();
            let alice = identity(1);
            confide_client_core::profile::create(&store, &alice, &Profile::new(ALICE, "Alice"))
                .await
                .unwrap();
            let server = Shared::default();
            let events = Arc::new(Mutex::new(Vec::new()));
            let core = start(&store, &server, &events).await;
            let mut world = World {
                store,
                server,
                events,
                core,
                alice,
                bob: identity(2),
                fake_bob: identity(4),
                mallory: identity(3),
                rng: ChaCha20Rng::from_seed([7; 32]),
            };
            world.core.connect().await.unwrap();
            world.settle().await;
            world
        })
    }

    /// Hands the core every frame its connection has queued, as a driver would.
    async fn settle(&mut self) {
        loop {
            self.core.after_input().await;
            let Some(link) = self.core.link_mut() else {
                return;
            };
            let Some(frame) = Link::recv(link, Duration::ZERO).await.unwrap() else {
                return;
            };
            self.core.receive(frame).await;
        }
    }

    /// Pushes frames to Alice's device as the server would, and lets it process them.
    async fn push(&mut self, frames: Vec<ServerFrame>) {
        let link = self.core.link_mut().expect("connected");
        link.queue.extend(frames);
        self.settle().await;
    }

    /// The events shown so far, taken.
    fn events(&self) -> Vec<Event> {
        std::mem::take(&mut *self.events.lock().unwrap())
    }

    /// Alice's own group, with the real Bob added to it.
    async fn group_with_bob(&mut self) -> GroupId {
        let group = self.core.create_group().await.unwrap();
        self.core
            .append(
                group,
                OpBody::Add {
                    member: entry(&self.bob, BOB, "Bob"),
                    invite: None,
                    invite_sig: None,
                },
            )
            .await
            .unwrap();
        self.settle().await;
        group
    }

    /// A group Mallory creates on the server, with `bodies` appended by her after the genesis.
    fn forge_group(&mut self, seed: u8, bodies: Vec<OpBody>) -> GroupId {
        let mallory = identity(3);
        self.forge_group_by(&mallory, entry(&mallory, MALLORY, "Mallory"), seed, bodies)
    }

    /// A group `creator` (as `creator_entry`) creates on the server, with `bodies` appended by
    /// the creator after the genesis.
    fn forge_group_by(
        &mut self,
        creator: &DeviceIdentity,
        creator_entry: MemberEntry,
        seed: u8,
        bodies: Vec<OpBody>,
    ) -> GroupId {
        let group = GroupId([seed; 16]);
        let genesis = Op::genesis(
            group,
            creator.device_id(),
            NOW,
            creator_entry,
            GroupSettings::default(),
        )
        .sign(creator)
        .unwrap();
        let mut state = GroupState::from_genesis(&genesis).unwrap();
        let mut ops = vec![genesis];
        for body in bodies {
            let op = state
                .next_op(creator.device_id(), NOW, body)
                .sign(creator)
                .unwrap();
            state.apply(&op).unwrap();
            ops.push(op);
        }
        self.server.lock().unwrap().logs.insert(group, ops);
        group
    }

    /// Appends an op Mallory signs to a group on the server.
    fn forge_op(&mut self, group: GroupId, body: OpBody) -> SignedOp {
        let state = self.log(group);
        let op = state
            .next_op(self.mallory.device_id(), NOW, body)
            .sign(&self.mallory)
            .unwrap();
        self.server
            .lock()
            .unwrap()
            .logs
            .get_mut(&group)
            .unwrap()
            .push(op.clone());
        op
    }

    /// The group's log as the server holds it, verified.
    fn log(&self, group: GroupId) -> GroupState {
        let server = self.server.lock().unwrap();
        let ops = &server.logs[&group];
        let mut state = GroupState::from_genesis(&ops[0]).unwrap();
        for op in &ops[1..] {
            state.apply(op).unwrap();
        }
        state
    }

    /// A note `from` seals to Alice in the group's current epoch.
    fn note(&mut self, from: &DeviceIdentity, group: GroupId, note: &str) -> SealedPayload {
        seal::seal(
            from,
            &self.alice.public_keys(),
            SealKind::FacilitatorNote,
            group,
            self.log(group).epoch_ref(),
            note.as_bytes(),
            &mut self.rng,
        )
        .unwrap()
    }

    /// `from` posts `text` to the group: its sender key goes to Alice's inbox, the message
    /// onto the server; both are pushed to Alice's device.
    async fn post(&mut self, from: &DeviceIdentity, group: GroupId, text: &str) {
        let epoch = self.log(group).epoch_ref();
        let mut chain = SenderChain::generate(&mut self.rng);
        let sealed = seal::seal(
            from,
            &self.alice.public_keys(),
            SealKind::SenderKey,
            group,
            epoch,
            &chain.distribution(),
            &mut self.rng,
        )
        .unwrap();
        let content = MessageContent {
            sent_at: NOW,
            seen_seq: None,
            body: ContentBody::Text {
                text: text.into(),
                reply_to: None,
            },
        };
        let body = serde_json::to_vec(&content).unwrap();
        let envelope =
            Envelope::seal(from, group, epoch, &mut chain, &body, &mut self.rng).unwrap();
        let (item, seq) = {
            let mut server = self.server.lock().unwrap();
            let item = server.deliver(sealed);
            let messages = server.messages.entry(group).or_default();
            let seq = Seq(messages.len() as u64 + 1);
            messages.push(StoredMessage {
                seq,
                received_at: NOW,
                envelope: envelope.clone(),
            });
            (item, seq)
        };
        self.push(vec![
            ServerFrame::Inbox { items: vec![item] },
            ServerFrame::Message {
                group,
                seq,
                received_at: NOW,
                envelope,
            },
        ])
        .await;
    }

    /// An invite link to a group on the server, made by Mallory (its facilitator), with the
    /// invite op appended to the log.
    fn invite(&mut self, group: GroupId) -> Invite {
        let secret = InviteSecret::generate(&mut self.rng);
        self.forge_op(
            group,
            OpBody::Invite {
                invite: secret.id(),
                requires_approval: false,
                max_uses: 1,
                expires_at: Timestamp(NOW.0 + 3_600_000),
            },
        );
        let link = serde_json::json!({
            "v": 1,
            "group": group,
            "genesis": self.log(group).genesis_hash(),
            "inviter": self.mallory.device_id(),
            "secret": base64::engine::general_purpose::STANDARD.encode(*secret.to_bytes()),
            "requires_approval": false,
        });
        let link = format!(
            "confide-invite:{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(serde_json::to_vec(&link).unwrap())
        );
        Invite::from_link(&link).unwrap()
    }
}

async fn start(store: &MemoryStore, server: &Shared, events: &Arc<Mutex<Vec<Event>>>) -> Core {
    let (alice, profile) = confide_client_core::profile::load(store).await.unwrap();
    let host = TestHost {
        rng: ChaCha20Rng::from_seed([3; 32]),
        events: events.clone(),
    };
    ClientCore::new(
        store.clone(),
        ScriptNet(server.clone()),
        Box::new(host),
        alice,
        profile,
        None,
    )
    .await
    .unwrap()
}

const URGENT_1: &str = r#"{"kind":"urgent","text":"I am not safe right now"}"#;
const URGENT_2: &str = r#"{"kind":"urgent","text":"Please call me"}"#;

fn urgent_texts(queue: &[(String, FacilitatorItem)]) -> Vec<String> {
    queue
        .iter()
        .map(|(_, item)| match item {
            FacilitatorItem::Urgent(r) => r.text.clone(),
            FacilitatorItem::Report(r) => r.reason.clone(),
            other => panic!("unexpected queue item {other:?}"),
        })
        .collect()
}

/// Review item 1: two urgent requests from the same device in one inbox frame were stored
/// under the same key (group, clock, sender) and one of them was lost, though both were
/// acknowledged.
#[test]
fn two_urgent_requests_in_one_inbox_frame_both_reach_the_facilitator_queue() {
    let mut w = World::new();
    block_on(async {
        let group = w.group_with_bob().await;
        let bob = identity(2);
        let first = w.note(&bob, group, URGENT_1);
        let second = w.note(&bob, group, URGENT_2);
        let items = {
            let mut server = w.server.lock().unwrap();
            vec![server.deliver(first), server.deliver(second)]
        };
        w.push(vec![ServerFrame::Inbox { items }]).await;
        let queue = w.core.facilitator_queue(group).await.unwrap();
        let mut texts = urgent_texts(&queue);
        texts.sort();
        assert_eq!(texts, ["I am not safe right now", "Please call me"]);
        assert!(
            w.server.lock().unwrap().inbox.is_empty(),
            "both acknowledged"
        );
        for (_, item) in &queue {
            let FacilitatorItem::Urgent(r) = item else {
                panic!("not urgent")
            };
            assert_eq!(r.received_at, NOW);
        }
    });
}

/// Review item 2: the server delivered an urgent request again under a new inbox id, and the
/// facilitator saw the old "I am not safe right now" as new.
#[test]
fn an_urgent_request_the_server_delivers_again_is_not_shown_again() {
    let mut w = World::new();
    block_on(async {
        let group = w.group_with_bob().await;
        let bob = identity(2);
        let sealed = w.note(&bob, group, URGENT_1);
        let item = w.server.lock().unwrap().deliver(sealed.clone());
        w.push(vec![ServerFrame::Inbox { items: vec![item] }]).await;
        let shown = |events: &[Event]| {
            events
                .iter()
                .filter(|e| matches!(e, Event::UrgentRequest(_)))
                .count()
        };
        assert_eq!(shown(&w.events()), 1);
        let queue = w.core.facilitator_queue(group).await.unwrap();
        assert_eq!(queue.len(), 1);
        w.core.resolve(&queue[0].0).await.unwrap();

        // Weeks later, the same sealed payload under a new inbox id, and again after a restart.
        let again = w.server.lock().unwrap().deliver(sealed.clone());
        w.push(vec![ServerFrame::Inbox { items: vec![again] }])
            .await;
        assert_eq!(shown(&w.events()), 0, "a replayed urgent request was shown");
        assert!(w.core.facilitator_queue(group).await.unwrap().is_empty());
        assert!(
            w.server.lock().unwrap().inbox.is_empty(),
            "still acknowledged"
        );

        w.core.shutdown().await;
        w.core = start(&w.store, &w.server, &w.events).await;
        w.core.connect().await.unwrap();
        w.settle().await;
        let again = w.server.lock().unwrap().deliver(sealed);
        w.push(vec![ServerFrame::Inbox { items: vec![again] }])
            .await;
        assert_eq!(shown(&w.events()), 0, "replayed after a restart");
        assert!(w.core.facilitator_queue(group).await.unwrap().is_empty());
    });
}

/// Queue entries stored by earlier versions (keyed by group, clock and sender, without the
/// new fields) still load, oldest first, and can be resolved.
#[test]
fn facilitator_queue_entries_of_an_earlier_version_still_load_and_resolve() {
    let mut w = World::new();
    block_on(async {
        let group = w.group_with_bob().await;
        let old = serde_json::json!({
            "kind": "urgent",
            "group": group,
            "user": BOB,
            "display_name": "Bob",
            "text": "stored by an earlier version",
        });
        let key = [
            group.as_bytes().as_slice(),
            &(NOW.0 - 1000).to_be_bytes(),
            w.bob.device_id().as_bytes(),
        ]
        .concat();
        let mut batch = confide_client_core::Batch::new();
        batch.put(
            "facilitator_queue",
            &key,
            zeroize::Zeroizing::new(serde_json::to_vec(&old).unwrap()),
        );
        w.store.commit(batch).await.unwrap();
        let bob = identity(2);
        let sealed = w.note(&bob, group, URGENT_1);
        let item = w.server.lock().unwrap().deliver(sealed);
        w.push(vec![ServerFrame::Inbox { items: vec![item] }]).await;

        let queue = w.core.facilitator_queue(group).await.unwrap();
        assert_eq!(
            urgent_texts(&queue),
            ["stored by an earlier version", "I am not safe right now"]
        );
        let FacilitatorItem::Urgent(r) = &queue[0].1 else {
            panic!()
        };
        assert_eq!(r.received_at, Timestamp(NOW.0 - 1000));
        w.core.resolve(&queue[0].0).await.unwrap();
        assert_eq!(
            urgent_texts(&w.core.facilitator_queue(group).await.unwrap()),
            ["I am not safe right now"]
        );
    });
}

/// The fake "Bob": Bob's user id and name, with keys the server made.
fn fake_bob_entry(w: &World) -> MemberEntry {
    entry(&w.fake_bob, BOB, "Bob")
}

fn key_changes(events: &[Event]) -> Vec<(GroupId, UserId)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::KeyChanged { group, user, .. } => Some((*group, *user)),
            _ => None,
        })
        .collect()
}

async fn group_ids(w: &World) -> Vec<GroupId> {
    w.core.groups().await.iter().map(|g| g.group).collect()
}

/// Review item 3c: a group the server lists (or names in an `op` frame) was adopted even when
/// its log did not list this device, and its ops overwrote the keys this device knew.
#[test]
fn a_group_the_server_makes_up_without_this_device_is_not_adopted() {
    let mut w = World::new();
    block_on(async {
        let mine = w.group_with_bob().await;
        w.events();
        let bob_entry = fake_bob_entry(&w);
        let made_up = w.forge_group(
            50,
            vec![OpBody::Add {
                member: bob_entry,
                invite: None,
                invite_sig: None,
            }],
        );
        let genesis = w.server.lock().unwrap().logs[&made_up][0].clone();
        w.push(vec![ServerFrame::Op {
            group: made_up,
            op: genesis,
            seq: 0,
        }])
        .await;
        w.core.sync().await.unwrap();
        w.settle().await;
        assert_eq!(group_ids(&w).await, [mine]);
        assert_eq!(key_changes(&w.events()), []);
    });
}

/// Review items 3a, 3c and 3d: a group that adds this device is still adopted and held for
/// consent — but the keys in it give no safety number until the user accepts it, and a person
/// whose keys differ from the same user's in the user's other groups is no "shared" person.
#[test]
fn safety_numbers_and_shared_groups_come_only_from_accepted_groups_with_the_same_keys() {
    let mut w = World::new();
    block_on(async {
        // A private conversation "Bob" starts: Bob's user id and name, the server's keys.
        let bob_entry = fake_bob_entry(&w);
        let alice_entry = entry(&w.alice, ALICE, "Alice");
        let fake_bob = identity(4);
        let private = w.forge_group_by(
            &fake_bob,
            bob_entry,
            51,
            vec![OpBody::Add {
                member: alice_entry,
                invite: None,
                invite_sig: None,
            }],
        );
        w.core.sync().await.unwrap();
        w.settle().await;
        let events = w.events();
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::Invited { group, .. } if *group == private)),
            "a group that adds this device is held and the user asked"
        );
        assert!(
            w.core.safety_number(BOB).is_err(),
            "a safety number from a group the user never accepted"
        );

        let mine = w.group_with_bob().await;
        let real = confide_protocol::identity::safety_number(
            (&ALICE, &w.alice.device_id()),
            (&BOB, &w.bob.device_id()),
        );
        assert_eq!(w.core.safety_number(BOB).unwrap(), real);
        let info = w.core.groups().await;
        let invitation = info.iter().find(|g| g.group == private).unwrap();
        assert!(invitation.invited);
        let peer = invitation.private_with.as_ref().unwrap();
        assert_eq!(peer.user, BOB);
        assert_eq!(
            peer.shared_groups,
            [],
            "the server's Bob has other keys than the Bob of {mine:?}"
        );

        // Accepted: two groups show two different keys for Bob, and the user is told.
        w.core.accept_group(private).await.unwrap();
        let err = w.core.safety_number(BOB).unwrap_err();
        assert!(err.to_string().contains("differ"), "{err}");
    });
}

/// Review item 3b: joining adopted the group's log without comparing its members' keys with
/// the ones this device knew, so the joiner was never warned.
#[test]
fn joining_a_group_where_a_known_user_has_other_keys_warns() {
    let mut w = World::new();
    block_on(async {
        w.group_with_bob().await;
        w.events();
        let bob_entry = fake_bob_entry(&w);
        let group = w.forge_group(
            52,
            vec![OpBody::Add {
                member: bob_entry,
                invite: None,
                invite_sig: None,
            }],
        );
        let invite = w.invite(group);
        w.core.join(invite, None).await.unwrap();
        w.settle().await;
        assert_eq!(key_changes(&w.events()), [(group, BOB)]);
    });
}

/// Review item 5: a device removed from a group that joined it again started its message
/// numbers over, so "#1" named a different message after the rejoin.
#[test]
fn a_device_that_rejoins_a_group_keeps_its_message_numbers() {
    let mut w = World::new();
    block_on(async {
        let group = w.forge_group(53, vec![]);
        let invite = w.invite(group);
        w.core.join(invite, None).await.unwrap();
        w.settle().await;
        let mallory = identity(3);
        w.post(&mallory, group, "before").await;
        let before = w.core.history(group, None, 10).await.unwrap();
        assert_eq!(before.len(), 1);
        assert_eq!(before[0].number, 1);

        let remove = w.forge_op(
            group,
            OpBody::Remove {
                user: ALICE,
                ban: false,
            },
        );
        let seq = w.log(group).seq();
        w.push(vec![ServerFrame::Op {
            group,
            op: remove,
            seq,
        }])
        .await;
        assert!(!w.core.groups().await[0].member);
        let invite = w.invite(group);
        w.core.join(invite, None).await.unwrap();
        w.settle().await;
        w.post(&mallory, group, "after").await;
        let after = w.core.history(group, None, 10).await.unwrap();
        let numbers: Vec<(String, u64)> =
            after.iter().map(|m| (m.text.clone(), m.number)).collect();
        assert_eq!(
            numbers,
            [("before".to_string(), 1), ("after".to_string(), 2)]
        );
        assert_eq!(
            w.core.seq_of_number(group, 1).await.unwrap(),
            Some(before[0].seq)
        );
    });
}

/// Review item 4: early payloads for groups this device does not hold were bounded only per
/// (group, sender), and the server can make up any number of both.
#[test]
fn early_payloads_for_groups_this_device_does_not_hold_are_bounded_in_all() {
    let mut w = World::new();
    block_on(async {
        let mallory = identity(3);
        let epoch = confide_protocol::EpochRef {
            epoch: confide_protocol::Epoch(0),
            hash: confide_protocol::OpHash([0; 32]),
        };
        let items: Vec<InboxItem> = (0..270u16)
            .map(|i| {
                let mut id = [0xee; 16];
                id[..2].copy_from_slice(&i.to_be_bytes());
                let sealed = seal::seal(
                    &mallory,
                    &w.alice.public_keys(),
                    SealKind::SenderKey,
                    GroupId(id),
                    epoch,
                    b"a key for a group that does not exist",
                    &mut w.rng,
                )
                .unwrap();
                w.server.lock().unwrap().deliver(sealed)
            })
            .collect();
        w.push(vec![ServerFrame::Inbox { items }]).await;
        let kept = w.store.keys("parked_keys", &[]).await.unwrap().len();
        assert!(kept > 0, "early payloads are still kept");
        assert!(kept <= 256, "{kept} early payloads kept for made-up groups");
        assert!(
            w.server.lock().unwrap().inbox.is_empty(),
            "all acknowledged"
        );
    });
}
