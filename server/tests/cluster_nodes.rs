//! Two nodes over one PostgreSQL database and the machine's NATS, driven frame by frame: what
//! one node stores reaches devices through the other (review 19's H1 and H2, found from outside,
//! each failed before its fix).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Breakable, Device, append, chain, refusal, rng};
use confide_protocol::frames::{ClientFrame, ServerFrame};
use confide_protocol::group_log::{MemberEntry, OpBody};
use confide_protocol::seal::{SealKind, seal};
use confide_protocol::{DeviceIdentity, GroupId};
use confide_server::cluster::ClusterConfig;
use confide_server::server::Config;
use confide_server::storage::test_database::fresh_database;
use confide_server::{Limits, PostgresStorage};

struct Node {
    url: String,
    storage: Arc<Breakable>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn node(db: &str, prefix: &str) -> Node {
    let storage = Arc::new(Breakable::new(PostgresStorage::connect(db).unwrap()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = Config {
        limits: Limits::default(),
        tls: None,
        storage: storage.clone(),
        metrics_listener: None,
        cluster: Some(ClusterConfig {
            nats_url: std::env::var("CONFIDE_TEST_NATS")
                .unwrap_or_else(|_| "nats://127.0.0.1:4222".into()),
            subject_prefix: prefix.into(),
        }),
    };
    tokio::spawn(confide_server::run(listener, config, async move {
        let _ = stopped.await;
    }));
    Node {
        url: format!("ws://127.0.0.1:{port}"),
        storage,
        _stop: stop,
    }
}

fn copy(identity: &DeviceIdentity) -> DeviceIdentity {
    DeviceIdentity::from_secrets(&identity.to_secret_bytes()).unwrap()
}

fn prefix() -> String {
    format!(
        "confide-test-{}",
        hex::encode(GroupId::random(&mut rng()).0)
    )
}

/// A sealed item stored through node B reaches its recipient when it comes back through node A,
/// whose own inbox ids are all below B's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sealed_item_stored_through_one_node_reaches_its_recipient_back_through_another() {
    let (db, _guard) = fresh_database();
    let p = prefix();
    let a = node(&db, &p).await;
    let b = node(&db, &p).await;
    let mut alice = Device::register(&b.url).await;
    let alice_id = copy(&alice.identity);
    let bob = Device::register(&a.url).await;
    let bob_id = copy(&bob.identity);
    let bob_user = bob.user;
    let mut state = alice.create_group().await;
    let body = OpBody::Add {
        member: MemberEntry {
            user: bob.user,
            display_name: "Bob".into(),
            devices: vec![bob.identity.public_keys()],
            device_list: None,
        },
        invite: None,
        invite_sig: None,
        invite_device: None,
    };
    let reply = append(&mut alice, &alice_id, &mut state, body).await;
    assert!(matches!(reply, ServerFrame::OpAppended { .. }), "{reply:?}");
    drop(bob); // bob goes offline
    tokio::time::sleep(Duration::from_millis(300)).await;
    let item = seal(
        &alice_id,
        &bob_id.public_keys(),
        SealKind::SenderKey,
        state.group(),
        state.epoch_ref(),
        &[7; confide_protocol::sender_key::DISTRIBUTION_LEN],
        &mut rng(),
    )
    .unwrap();
    let id = alice.next_id();
    let reply = alice
        .request(ClientFrame::SendSealed {
            id,
            items: vec![item],
        })
        .await;
    assert!(matches!(reply, ServerFrame::Ok { .. }), "{reply:?}");
    // Bob comes back through node A.
    let mut bob = Device::connect(&a.url, copy(&bob_id), bob_user).await;
    let frame = ClientFrame::Authenticate {
        id: bob.next_id(),
        version: confide_protocol::frames::PROTOCOL_VERSION,
        device: bob_id.device_id(),
        signature: bob.sign_challenge().await,
    };
    let reply = bob.request(frame).await;
    assert!(
        matches!(reply, ServerFrame::Authenticated { .. }),
        "{reply:?}"
    );
    let got = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let ServerFrame::Inbox { items } = bob.recv().await {
                return items;
            }
        }
    })
    .await;
    assert!(
        got.is_ok(),
        "the backlog on node A never served the item stored via node B"
    );
}

/// A post that loses to a copy of the same envelope stored through another node (a client that
/// re-posted after reconnecting elsewhere) does not stop later posts through its node.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_copy_stored_through_another_node_does_not_wedge_posting_through_this_one() {
    let (db, _guard) = fresh_database();
    let p = prefix();
    let a = node(&db, &p).await;
    let b = node(&db, &p).await;
    let mut on_a = Device::register(&a.url).await;
    let state = on_a.create_group().await;
    let mut on_b = on_a.again(&b.url).await;
    let mut ch = chain();
    let f = on_a.envelope(&state, &mut ch, "F");
    let e = on_a.envelope(&state, &mut ch, "E");
    // Node A's writer holds F (seq 1) and then E (seq 2).
    a.storage.before_write.close();
    let id_f = on_a.next_id();
    on_a.send(&ClientFrame::Post {
        id: id_f,
        envelope: f,
    })
    .await;
    let id_e = on_a.next_id();
    on_a.send(&ClientFrame::Post {
        id: id_e,
        envelope: e.clone(),
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The same E through node B: stored at seq 1.
    let id = on_b.next_id();
    let reply = on_b.request(ClientFrame::Post { id, envelope: e }).await;
    assert!(matches!(reply, ServerFrame::Posted { .. }), "{reply:?}");
    a.storage.before_write.open();
    let reply_f = on_a.reply_to(id_f).await;
    assert!(matches!(reply_f, ServerFrame::Posted { .. }), "{reply_f:?}");
    // A new post through A.
    let g = on_a.envelope(&state, &mut ch, "G");
    let id = on_a.next_id();
    let reply_g = on_a.request(ClientFrame::Post { id, envelope: g }).await;
    assert!(
        refusal(&reply_g).is_none(),
        "posting through node A is wedged: {reply_g:?}"
    );
}
