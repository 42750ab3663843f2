#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! What Alice's device does against a scripted, hostile server, without a network: a
//! [`ClientCore`] over a [`MemoryStore`], a server whose every answer the test decides behind a
//! [`Link`], and a host with a fixed clock and seeded randomness. The other people (Bob, Carol,
//! Dave) are identities the test signs ops, sender keys and messages with.
//!
//! - A removed member's post in an *earlier* epoch (one that ended by someone's admission, not
//!   by his removal) is refused when he wrote it after the removal, or when the server stored it
//!   after a message of an epoch that began after the removal (PROTOCOL.md §11.2 steps 9, 14);
//!   what he wrote before the removal is still shown when it arrives late.
//! - A server that holds back its `ok` to Alice's sender key until it has pushed a removal does
//!   not get her message encrypted in the epoch the removed member can read (§5.5, §11.3).
//! - A message this device cannot store is not shown (§11.12).
//! - A device removed and put back without asking posts nothing there — not even a pinned text
//!   a moderator re-sends on an epoch change — until its user accepts the group (§11.7).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chacha20::ChaCha20Rng;
use confide_client_core::{
    Batch, ClientCore, ClientError, ClientStore, Event, Host, Link, MemoryStore, Network, Profile,
    TransportError,
};
use confide_protocol::envelope::{ContentBody, Envelope, MessageContent, PinnedKind};
use confide_protocol::frames::{
    ClientFrame, GroupSummary, InboxItem, PROTOCOL_VERSION, ServerFrame, StoredMessage,
};
use confide_protocol::group_log::{GroupState, MemberEntry, OpBody, Role, SignedOp};
use confide_protocol::seal::{self, SealKind, SealedPayload};
use confide_protocol::sender_key::SenderChain;
use confide_protocol::{DeviceIdentity, Epoch, GroupId, Seq, Timestamp, UserId};
use pollster::block_on;
use rand_core::{Rng as _, SeedableRng as _};
use zeroize::Zeroizing;

/// The fixed wall clock of Alice's device; every op here claims this time.
const NOW: Timestamp = Timestamp(1_800_000_000_000);
const MINUTE: u64 = 60_000;

/// What the scripted server holds and saw.
#[derive(Default)]
struct Server {
    ops: Vec<SignedOp>,
    messages: Vec<StoredMessage>,
    /// Every envelope Alice's device posted, in order.
    posted: Vec<Envelope>,
    /// Every sealed payload Alice's device sent, in order.
    sealed: Vec<SealedPayload>,
    /// Frames pushed to Alice (once) before the `ok` to her next `send_sealed`.
    before_sealed_ok: Vec<ServerFrame>,
}

type Shared = Arc<Mutex<Server>>;

struct ScriptNet(Shared);

/// One connection: frames queued for the client, answered as its requests are sent.
struct ScriptLink {
    server: Shared,
    queue: VecDeque<ServerFrame>,
}

impl Network for ScriptNet {
    type Link = ScriptLink;

    async fn dial(&mut self) -> Result<ScriptLink, ClientError> {
        Ok(ScriptLink {
            server: self.0.clone(),
            queue: VecDeque::from([ServerFrame::Challenge {
                version: PROTOCOL_VERSION,
                server_name: "relay.test".into(),
                nonce: [9; 32],
                server_time: NOW,
            }]),
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
            ClientFrame::Register {
                id,
                user,
                display_name,
                keys,
                ..
            } => ServerFrame::Authenticated {
                id,
                user,
                device: keys.device,
                display_name,
            },
            ClientFrame::ListGroups { id } => ServerFrame::Groups {
                id,
                groups: server
                    .ops
                    .first()
                    .map(|genesis| GroupSummary {
                        group: genesis.parse_unverified().unwrap().group,
                        op_head_seq: server.ops.len() as u64 - 1,
                        last_seq: Seq(server.messages.len() as u64),
                    })
                    .into_iter()
                    .collect(),
            },
            ClientFrame::CreateGroup { id, genesis } => {
                let group = genesis.parse_unverified().unwrap().group;
                server.ops = vec![genesis];
                ServerFrame::GroupCreated { id, group }
            }
            ClientFrame::AppendOp { id, group, op } => {
                server.ops.push(op);
                ServerFrame::OpAppended {
                    id,
                    group,
                    seq: server.ops.len() as u64 - 1,
                }
            }
            ClientFrame::SendSealed { id, items } => {
                server.sealed.extend(items);
                let first = std::mem::take(&mut server.before_sealed_ok);
                self.queue.extend(first);
                ServerFrame::Ok { id }
            }
            ClientFrame::Post { id, envelope } => {
                // Stores whatever it is given, in whatever epoch: a hostile server.
                let seq = Seq(server.messages.len() as u64 + 1);
                server.posted.push(envelope.clone());
                server.messages.push(StoredMessage {
                    seq,
                    received_at: NOW,
                    envelope: envelope.clone(),
                });
                ServerFrame::Posted {
                    id,
                    group: envelope.group,
                    seq,
                    message: envelope.message_id(),
                }
            }
            ClientFrame::Sync {
                id,
                group,
                after_op_seq,
                after_seq,
                ..
            } => {
                let first_op = after_op_seq.map_or(0, |s| s as usize + 1);
                ServerFrame::SyncPage {
                    id,
                    group,
                    ops: server.ops.get(first_op..).unwrap_or_default().to_vec(),
                    messages: server
                        .messages
                        .iter()
                        .filter(|m| m.seq > after_seq)
                        .cloned()
                        .collect(),
                    next_op_seq: server.ops.len() as u64,
                    next_seq: Seq(server.messages.len() as u64 + 1),
                    complete: true,
                }
            }
            ClientFrame::AckInbox { id, .. } => ServerFrame::Ok { id },
            other => panic!("the script does not expect {other:?}"),
        };
        self.queue.push_back(reply);
        Ok(())
    }

    async fn recv(&mut self, _within: Duration) -> Result<Option<ServerFrame>, TransportError> {
        // Everything the server will send is queued already: an empty queue is a wait that
        // would time out.
        Ok(self.queue.pop_front())
    }

    async fn close(self) {}
}

/// A fixed clock, seeded randomness, and an application that records every event.
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

fn entry(identity: &DeviceIdentity, user: u8, name: &str) -> MemberEntry {
    MemberEntry {
        user: UserId([user; 16]),
        display_name: name.into(),
        devices: vec![identity.public_keys()],
    }
}

fn add(identity: &DeviceIdentity, user: u8, name: &str) -> OpBody {
    OpBody::Add {
        member: entry(identity, user, name),
        invite: None,
        invite_sig: None,
    }
}

/// Alice's device, the people around her, and the server.
struct World {
    core: Core,
    store: MemoryStore,
    server: Shared,
    events: Arc<Mutex<Vec<Event>>>,
    group: GroupId,
    alice: DeviceIdentity,
    rng: ChaCha20Rng,
}

impl World {
    /// Alice registered and connected, in a group she created.
    async fn new() -> World {
        let store = MemoryStore::new();
        let alice = identity(1);
        let profile = Profile::new(UserId([1; 16]), "Alice");
        confide_client_core::profile::create(&store, &alice, &profile)
            .await
            .unwrap();
        let (loaded, profile) = confide_client_core::profile::load(&store).await.unwrap();
        let server = Shared::default();
        let events = Arc::new(Mutex::new(Vec::new()));
        let host = TestHost {
            rng: ChaCha20Rng::from_seed([3; 32]),
            events: events.clone(),
        };
        let mut core = ClientCore::new(
            store.clone(),
            ScriptNet(server.clone()),
            Box::new(host),
            loaded,
            profile,
            None,
        )
        .await
        .unwrap();
        core.connect().await.unwrap();
        let group = core.create_group().await.unwrap();
        World {
            core,
            store,
            server,
            events,
            group,
            alice,
            rng: ChaCha20Rng::from_seed([5; 32]),
        }
    }

    /// The log as the server holds it, replayed.
    fn state(&self) -> GroupState {
        let ops = self.server.lock().unwrap().ops.clone();
        let mut state = GroupState::from_genesis(&ops[0]).unwrap();
        for op in &ops[1..] {
            state.apply(op).unwrap();
        }
        state
    }

    /// `body` signed by `author` as the server's next op, stored there; the frame that pushes it.
    fn op_by(&self, author: &DeviceIdentity, body: OpBody) -> ServerFrame {
        let state = self.state();
        let op = state
            .next_op(author.device_id(), state.claim_time(NOW), body)
            .sign(author)
            .unwrap();
        let seq = op.parse_unverified().unwrap().seq;
        self.server.lock().unwrap().ops.push(op.clone());
        ServerFrame::Op {
            group: self.group,
            op,
            seq,
        }
    }

    /// Hands Alice's device `frame`, as the server pushing it, and everything that follows.
    async fn push(&mut self, frame: ServerFrame) {
        self.core
            .link_mut()
            .expect("connected")
            .queue
            .push_back(frame);
        self.drive().await;
    }

    /// Hands the core every frame its connection has queued, as a driver would.
    async fn drive(&mut self) {
        loop {
            let Some(link) = self.core.link_mut() else {
                return;
            };
            let Some(frame) = Link::recv(link, Duration::ZERO).await.unwrap() else {
                break;
            };
            self.core.receive(frame).await;
            self.core.after_input().await;
        }
        self.core.after_input().await;
    }

    /// A fresh sender chain of `sender` for the log's current epoch, its distribution sealed
    /// to Alice and delivered to her.
    async fn sender_key(&mut self, sender: &DeviceIdentity, inbox_id: u64) -> SenderChain {
        let chain = SenderChain::generate(&mut self.rng);
        let sealed = seal::seal(
            sender,
            &self.alice.public_keys(),
            SealKind::SenderKey,
            self.group,
            self.state().epoch_ref(),
            &chain.distribution(),
            &mut self.rng,
        )
        .unwrap();
        self.push(ServerFrame::Inbox {
            items: vec![InboxItem {
                inbox_id,
                received_at: NOW,
                payload: sealed,
            }],
        })
        .await;
        chain
    }

    /// `text` by `sender` in `epoch` of the log, written at `sent_at`, stored by the server at
    /// its next position and pushed to Alice. Returns that position.
    async fn message(
        &mut self,
        sender: &DeviceIdentity,
        chain: &mut SenderChain,
        epoch: confide_protocol::EpochRef,
        sent_at: Timestamp,
        text: &str,
    ) -> u64 {
        let content = MessageContent {
            sent_at,
            seen_seq: None,
            body: ContentBody::Text {
                text: text.into(),
                reply_to: None,
            },
        };
        let body = serde_json::to_vec(&content).unwrap();
        let envelope =
            Envelope::seal(sender, self.group, epoch, chain, &body, &mut self.rng).unwrap();
        let seq = {
            let mut server = self.server.lock().unwrap();
            let seq = Seq(server.messages.len() as u64 + 1);
            server.messages.push(StoredMessage {
                seq,
                received_at: NOW,
                envelope: envelope.clone(),
            });
            seq
        };
        self.push(ServerFrame::Message {
            group: self.group,
            seq,
            received_at: NOW,
            envelope,
        })
        .await;
        seq.0
    }

    /// The texts shown as messages of others, and the seqs reported as rejected.
    fn shown_and_rejected(&self) -> (Vec<String>, Vec<u64>) {
        let events = self.events.lock().unwrap();
        let shown = events
            .iter()
            .filter_map(|e| match e {
                Event::Message(m) => Some(m.text.clone()),
                _ => None,
            })
            .collect();
        let rejected = events
            .iter()
            .filter_map(|e| match e {
                Event::MessageRejected(r) => Some(r.seq),
                _ => None,
            })
            .collect();
        (shown, rejected)
    }
}

/// Bob is a member in epoch 1 (ended when Carol is added) and epoch 2 (ended by his removal).
/// After his removal he still holds his epoch-1 sending chain, and Alice his receiving chain.
#[test]
fn a_removed_members_later_post_in_an_earlier_epoch_is_refused_and_his_earlier_one_shown() {
    block_on(async {
        let mut w = World::new().await;
        let group = w.group;
        let bob = identity(2);
        let carol = identity(4);
        w.core.append(group, add(&bob, 2, "Bob")).await.unwrap();
        let epoch1 = w.state().epoch_ref();
        let mut bob_e1 = w.sender_key(&bob, 1).await;
        // Epoch 1 ends by an admission (grace), epoch 2 by Bob's removal (none).
        w.core.append(group, add(&carol, 4, "Carol")).await.unwrap();
        w.core
            .append(
                group,
                OpBody::Remove {
                    user: UserId([2; 16]),
                    ban: false,
                },
            )
            .await
            .unwrap();
        w.core.after_input().await;
        assert_eq!(w.state().epoch(), Epoch(3));

        // Written before his removal, delivered only now: still shown.
        w.message(
            &bob,
            &mut bob_e1,
            epoch1,
            Timestamp(NOW.0 - MINUTE),
            "before",
        )
        .await;
        // Written after his removal (by his own clock), under his epoch-1 key.
        let late = w
            .message(
                &bob,
                &mut bob_e1,
                epoch1,
                Timestamp(NOW.0 + MINUTE),
                "after",
            )
            .await;
        // Alice posts in the new epoch; then Bob, his clock set back, posts in epoch 1 again.
        w.core
            .send_text(group, "welcome, Carol".into(), None)
            .await
            .unwrap();
        let slipped = w
            .message(
                &bob,
                &mut bob_e1,
                epoch1,
                Timestamp(NOW.0 - MINUTE / 2),
                "slipped",
            )
            .await;

        let (shown, rejected) = w.shown_and_rejected();
        assert_eq!(shown, ["before"], "what Alice was shown from Bob");
        assert!(
            rejected.contains(&late),
            "the post written after the removal: {rejected:?}"
        );
        assert!(
            rejected.contains(&slipped),
            "the post stored after a message of the new epoch: {rejected:?}"
        );
        let history: Vec<String> = w
            .core
            .history(group, None, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.text)
            .collect();
        assert!(
            !history.iter().any(|t| t == "after" || t == "slipped"),
            "{history:?}"
        );
    });
}

/// The server pushes Bob's removal while Alice's device waits for the `ok` to its sender key
/// for the epoch Bob is still in, and accepts whatever it is then posted.
#[test]
fn a_message_is_not_encrypted_in_an_epoch_seen_to_end_by_a_removal_while_sending_the_key() {
    block_on(async {
        let mut w = World::new().await;
        let group = w.group;
        let bob = identity(2);
        let carol = identity(4);
        w.core.append(group, add(&bob, 2, "Bob")).await.unwrap();
        w.core.append(group, add(&carol, 4, "Carol")).await.unwrap();
        w.core
            .append(
                group,
                OpBody::SetRole {
                    user: UserId([4; 16]),
                    role: Role::Facilitator,
                },
            )
            .await
            .unwrap();
        w.core.after_input().await;
        let removal = w.op_by(
            &carol,
            OpBody::Remove {
                user: UserId([2; 16]),
                ban: false,
            },
        );
        w.server.lock().unwrap().before_sealed_ok = vec![removal];

        w.core
            .send_text(group, "only for those still here".into(), None)
            .await
            .unwrap();

        let server = w.server.lock().unwrap();
        assert_eq!(server.posted.len(), 1);
        assert_eq!(
            server.posted[0].epoch,
            Epoch(3),
            "the message was encrypted in the epoch Bob's removal ended"
        );
        // Bob got Alice's key for epoch 2 (sealed before the removal), never a later one.
        let bob_device = bob.device_id();
        assert!(
            server
                .sealed
                .iter()
                .filter(|s| s.recipient == bob_device)
                .all(|s| s.epoch == Epoch(2))
        );
    });
}

/// The store cannot read the place a message goes to (damaged there): the message is not
/// shown, nor taken as processed.
#[test]
fn a_message_that_cannot_be_stored_is_not_shown() {
    block_on(async {
        let mut w = World::new().await;
        let group = w.group;
        let bob = identity(2);
        w.core.append(group, add(&bob, 2, "Bob")).await.unwrap();
        w.core.after_input().await;
        let epoch = w.state().epoch_ref();
        let mut chain = w.sender_key(&bob, 1).await;
        // Seq 1's place in the message store holds something that does not open.
        let mut batch = Batch::new();
        batch.put(
            "messages",
            &[group.as_bytes().as_slice(), &1u64.to_be_bytes()].concat(),
            Zeroizing::new(b"damaged".to_vec()),
        );
        w.store.commit(batch).await.unwrap();

        w.message(&bob, &mut chain, epoch, NOW, "not stored").await;

        let (shown, _) = w.shown_and_rejected();
        assert!(shown.is_empty(), "shown without being stored: {shown:?}");
        let id = w.server.lock().unwrap().messages[0].envelope.message_id();
        assert_eq!(
            w.core.message_place(group, id).await.unwrap(),
            None,
            "taken as processed although it was not stored"
        );
    });
}

/// Alice pinned crisis resources; Carol (a facilitator) removes her, puts her back without
/// asking and makes her a co-facilitator; then the epoch changes again. Alice's device must
/// not re-send the pinned text (sealing a sender key and posting) before she accepts.
#[test]
fn a_device_put_back_without_asking_posts_nothing_until_its_user_accepts() {
    block_on(async {
        let mut w = World::new().await;
        let group = w.group;
        let carol = identity(4);
        let dave = identity(6);
        w.core
            .pin(group, PinnedKind::CrisisResources, "Call 116 123".into())
            .await
            .unwrap();
        w.core.append(group, add(&carol, 4, "Carol")).await.unwrap();
        w.core
            .append(
                group,
                OpBody::SetRole {
                    user: UserId([4; 16]),
                    role: Role::Facilitator,
                },
            )
            .await
            .unwrap();
        w.core.after_input().await;
        let alice_entry = entry(&w.alice, 1, "Alice");
        let removal = w.op_by(
            &carol,
            OpBody::Remove {
                user: UserId([1; 16]),
                ban: false,
            },
        );
        w.push(removal).await;
        let re_add = w.op_by(
            &carol,
            OpBody::Add {
                member: alice_entry,
                invite: None,
                invite_sig: None,
            },
        );
        w.push(re_add).await;
        let promote = w.op_by(
            &carol,
            OpBody::SetRole {
                user: UserId([1; 16]),
                role: Role::CoFacilitator,
            },
        );
        w.push(promote).await;
        let (posted, sealed) = {
            let s = w.server.lock().unwrap();
            (s.posted.len(), s.sealed.len())
        };
        let epoch_change = w.op_by(&carol, add(&dave, 6, "Dave"));
        w.push(epoch_change).await;
        {
            let s = w.server.lock().unwrap();
            assert_eq!(
                (s.posted.len(), s.sealed.len()),
                (posted, sealed),
                "Alice's device posted (or sealed a key) in a group she has not accepted"
            );
        }
        assert!(
            w.events
                .lock()
                .unwrap()
                .iter()
                .any(|e| matches!(e, Event::Invited { .. }))
        );

        // Once she accepts, her device does what a co-facilitator's does.
        w.core.accept_group(group).await.unwrap();
        w.core.after_input().await;
        let s = w.server.lock().unwrap();
        assert!(
            s.posted.len() > posted,
            "the pinned text was not re-sent after accepting"
        );
        assert_eq!(s.posted.last().unwrap().epoch, w_epoch(&s));
    });
}

/// The current epoch of the log `server` holds.
fn w_epoch(server: &Server) -> Epoch {
    let mut state = GroupState::from_genesis(&server.ops[0]).unwrap();
    for op in &server.ops[1..] {
        state.apply(op).unwrap();
    }
    state.epoch()
}
