#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A caller tells apart, by matching on [`ClientError`], the four ways an operation can fail
//! that it handles differently (issue 14): the server did not answer in time, the server refused
//! with a code, something failed verification, and the local store failed. Each comes from a
//! [`ClientCore`] over a [`MemoryStore`] and a scripted server, without a network.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chacha20::ChaCha20Rng;
use confide_client_core::memory::Faults;
use confide_client_core::{
    ClientCore, ClientError, Event, Host, Link, MemoryStore, Missing, Network, Profile, StoreError,
    TransportError, VerificationError,
};
use confide_protocol::envelope::{ContentBody, Envelope, EnvelopeError, MessageContent};
use confide_protocol::frames::{ClientFrame, ErrorCode, InboxItem, PROTOCOL_VERSION, ServerFrame};
use confide_protocol::group_log::{GroupState, MemberEntry, OpBody, SignedOp};
use confide_protocol::seal::{self, SealKind};
use confide_protocol::sender_key::SenderChain;
use confide_protocol::{DeviceIdentity, GroupId, Seq, Timestamp, UserId};
use pollster::block_on;
use rand_core::{Rng as _, SeedableRng as _};

/// The fixed wall clock of the host.
const NOW: Timestamp = Timestamp(1_800_000_000_000);

/// How the scripted server behaves once it has greeted the device.
#[derive(Clone, Copy)]
enum Server {
    /// Answers every request as a real server would.
    Answers,
    /// Answers nothing: every request waits in vain.
    Silent,
    /// Refuses the registration, as a server that takes no new devices does.
    RefusesRegistration,
}

/// The group log the scripted server holds.
type Ops = Arc<Mutex<Vec<SignedOp>>>;

struct ScriptNet {
    server: Server,
    ops: Ops,
}

struct ScriptLink {
    server: Server,
    ops: Ops,
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
            server: self.server,
            ops: self.ops.clone(),
            queue: VecDeque::from([challenge]),
        })
    }
}

impl Link for ScriptLink {
    fn host(&self) -> &str {
        "relay.test"
    }

    async fn send(&mut self, frame: &ClientFrame) -> Result<(), TransportError> {
        let reply = match (self.server, frame.clone()) {
            (Server::Silent, _) => return Ok(()),
            (Server::RefusesRegistration, ClientFrame::Register { id, .. }) => ServerFrame::Error {
                id: Some(id),
                code: ErrorCode::RegistrationClosed,
                message: "this server takes no new devices".into(),
                retry_after_ms: None,
            },
            (
                _,
                ClientFrame::Register {
                    id,
                    user,
                    display_name,
                    keys,
                    ..
                },
            ) => ServerFrame::Authenticated {
                id,
                user,
                device: keys.device,
                display_name,
            },
            (_, ClientFrame::ListGroups { id }) => ServerFrame::Groups { id, groups: vec![] },
            (_, ClientFrame::CreateGroup { id, genesis }) => {
                let group = genesis.parse_unverified().unwrap().group;
                *self.ops.lock().unwrap() = vec![genesis];
                ServerFrame::GroupCreated { id, group }
            }
            (_, ClientFrame::AppendOp { id, group, op }) => {
                let mut ops = self.ops.lock().unwrap();
                ops.push(op);
                ServerFrame::OpAppended {
                    id,
                    group,
                    seq: ops.len() as u64 - 1,
                }
            }
            (
                _,
                ClientFrame::Sync {
                    id,
                    group,
                    after_op_seq,
                    ..
                },
            ) => {
                let ops = self.ops.lock().unwrap();
                let first = after_op_seq.map_or(0, |s| s as usize + 1);
                ServerFrame::SyncPage {
                    id,
                    group,
                    ops: ops.get(first..).unwrap_or_default().to_vec(),
                    messages: vec![],
                    next_op_seq: ops.len() as u64,
                    next_seq: Seq(1),
                    complete: true,
                }
            }
            (_, ClientFrame::AckInbox { id, .. }) => ServerFrame::Ok { id },
            (_, other) => panic!("the script does not expect {other:?}"),
        };
        self.queue.push_back(reply);
        Ok(())
    }

    async fn recv(&mut self, _within: Duration) -> Result<Option<ServerFrame>, TransportError> {
        // Everything the server will send is queued already: an empty queue is a wait that
        // runs out.
        Ok(self.queue.pop_front())
    }

    async fn close(self) {}
}

/// A fixed clock and seeded randomness; events are not looked at here.
struct TestHost(ChaCha20Rng);

impl Host for TestHost {
    fn now(&self) -> Timestamp {
        NOW
    }

    fn fill_random(&mut self, out: &mut [u8]) {
        self.0.fill_bytes(out);
    }

    fn event(&mut self, _event: Event) {}
}

type Core = ClientCore<MemoryStore, ScriptNet>;

fn identity(seed: u8) -> DeviceIdentity {
    DeviceIdentity::generate(&mut ChaCha20Rng::from_seed([seed; 32]))
}

/// Alice's new device over `store`, talking to a scripted `server`.
async fn alice(store: &MemoryStore, server: Server) -> Core {
    confide_client_core::profile::create(
        store,
        &identity(1),
        &Profile::new(UserId([1; 16]), "Alice"),
    )
    .await
    .unwrap();
    let (me, profile) = confide_client_core::profile::load(store).await.unwrap();
    ClientCore::new(
        store.clone(),
        ScriptNet {
            server,
            ops: Ops::default(),
        },
        Box::new(TestHost(ChaCha20Rng::from_seed([3; 32]))),
        me,
        profile,
        None,
    )
    .await
    .unwrap()
}

/// What a front end would say, decided only by the error's variant.
fn kind(e: &ClientError) -> &'static str {
    match e {
        ClientError::Timeout { .. } => "timeout",
        ClientError::Server { .. } => "refused",
        ClientError::Verification(_) => "verification",
        ClientError::Store(_) => "store",
        _ => "other",
    }
}

#[test]
fn a_server_that_never_answers_is_a_timeout_naming_the_request() {
    block_on(async {
        let mut core = alice(&MemoryStore::new(), Server::Silent).await;
        let e = core.connect().await.unwrap_err();
        assert_eq!(kind(&e), "timeout", "{e}");
        let ClientError::Timeout { waiting_for, .. } = &e else {
            unreachable!()
        };
        assert_eq!(*waiting_for, "register");
        assert_eq!(e.code(), "timeout");
        assert!(!core.is_connected(), "a timed-out connection is kept");
    });
}

#[test]
fn a_refusal_by_the_server_carries_its_code() {
    block_on(async {
        let mut core = alice(&MemoryStore::new(), Server::RefusesRegistration).await;
        let e = core.connect().await.unwrap_err();
        assert_eq!(kind(&e), "refused", "{e}");
        assert_eq!(e.server_code(), Some(ErrorCode::RegistrationClosed));
        assert_eq!(e.code(), "registration_closed");
    });
}

#[test]
fn a_message_with_a_tampered_signature_fails_verification() {
    block_on(async {
        let mut core = alice(&MemoryStore::new(), Server::Answers).await;
        core.connect().await.unwrap();
        let group = core.create_group().await.unwrap();
        let bob = identity(2);
        core.append(
            group,
            OpBody::Add {
                member: MemberEntry {
                    user: UserId([2; 16]),
                    display_name: "Bob".into(),
                    devices: vec![bob.public_keys()],
                },
                invite: None,
                invite_sig: None,
            },
        )
        .await
        .unwrap();
        let (item, envelope) = bobs_key_and_message(&mut core, group, &bob);

        // Before Bob's key has arrived, Alice's device has nothing to open it with.
        let e = core.inspect(&envelope).await.unwrap_err();
        assert!(
            matches!(e, ClientError::NotFound(Missing::SenderKey)),
            "{e:?}"
        );
        assert_eq!(e.code(), "not_found");

        core.receive(ServerFrame::Inbox { items: vec![item] }).await;
        core.after_input().await;
        assert!(
            core.inspect(&envelope).await.is_ok(),
            "Bob's own message does not open"
        );

        let mut tampered = envelope.clone();
        tampered.signature.0[0] ^= 1;
        let e = core.inspect(&tampered).await.unwrap_err();
        assert_eq!(kind(&e), "verification", "{e}");
        assert!(
            matches!(
                e,
                ClientError::Verification(VerificationError::Envelope(EnvelopeError::BadSignature))
            ),
            "{e:?}"
        );
        assert_eq!(e.code(), "verification");
    });
}

#[test]
fn a_failing_store_is_a_store_error() {
    // The same run twice (the clock and randomness are fixed): first to count the store's
    // steps up to the group's creation, then with the store failing at the creation's commit.
    let steps_connected = block_on(async {
        let (store, probe) = MemoryStore::with_faults(Faults::new());
        let mut core = alice(&store, Server::Answers).await;
        core.connect().await.unwrap();
        let steps = probe.steps();
        core.create_group().await.unwrap();
        assert!(probe.steps() > steps, "creating a group stored nothing");
        steps
    });
    block_on(async {
        let (store, _probe) = MemoryStore::with_faults(Faults::new().fail_at(steps_connected + 1));
        let mut core = alice(&store, Server::Answers).await;
        core.connect().await.unwrap();
        let e = core.create_group().await.unwrap_err();
        assert_eq!(kind(&e), "store", "{e}");
        assert!(matches!(e, ClientError::Store(StoreError::Db(_))), "{e:?}");
        assert_eq!(e.code(), "store");
    });
}

/// Bob's sender key sealed to Alice's device (an inbox item) and a message he wrote with it,
/// for the group as Alice's scripted server holds it.
fn bobs_key_and_message(
    core: &mut Core,
    group: GroupId,
    bob: &DeviceIdentity,
) -> (InboxItem, Envelope) {
    let ops = core
        .link_mut()
        .expect("connected")
        .ops
        .lock()
        .unwrap()
        .clone();
    let mut state = GroupState::from_genesis(&ops[0]).unwrap();
    for op in &ops[1..] {
        state.apply(op).unwrap();
    }
    let mut rng = ChaCha20Rng::from_seed([4; 32]);
    let mut chain = SenderChain::generate(&mut rng);
    let sealed = seal::seal(
        bob,
        &identity(1).public_keys(),
        SealKind::SenderKey,
        group,
        state.epoch_ref(),
        &chain.distribution(),
        &mut rng,
    )
    .unwrap();
    let content = MessageContent {
        sent_at: NOW,
        seen_seq: None,
        body: ContentBody::Text {
            text: "Rough week.".into(),
            reply_to: None,
        },
    };
    let body = serde_json::to_vec(&content).unwrap();
    let envelope =
        Envelope::seal(bob, group, state.epoch_ref(), &mut chain, &body, &mut rng).unwrap();
    let item = InboxItem {
        inbox_id: 1,
        received_at: NOW,
        payload: sealed,
    };
    (item, envelope)
}
