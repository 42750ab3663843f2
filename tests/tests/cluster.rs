//! Several server nodes over one real PostgreSQL database and real NATS (PROTOCOL.md §10.6):
//! members spread across nodes see one conversation; a node killed under load, NATS going away
//! and PostgreSQL restarting lose nothing acknowledged.
//!
//! PostgreSQL and NATS are the machine's (`CONFIDE_TEST_POSTGRES`, `CONFIDE_TEST_NATS`, by
//! default the local services); these tests fail, never skip, when they cannot be reached. Each
//! test makes its own database and NATS subject prefix, and drops the database at the end.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use confide_client::{ChatMessage, GroupId, ServerTrust};
use confide_protocol::frames::{ClientFrame, ErrorCode, ServerFrame};
use confide_server::cluster::ClusterConfig;
use confide_server::storage::PostgresStorage;
use confide_server::storage::test_database::{TestDatabase, try_fresh_database};
use confide_tests::cluster::{
    Balancer, PrivateNats, PrivatePostgres, nats_url, require_nats, unique_prefix,
};
use confide_tests::{TestServer, TestUser, error_code, users_in_group_at};

/// How long a test waits for everything to arrive after a failure (reconnects back off): a hang
/// is a failure, not a timing claim.
const SETTLE: Duration = Duration::from_secs(90);

/// A fresh database, or a failure that says what to do.
fn database() -> TestDatabase {
    try_fresh_database().unwrap_or_else(|e| {
        panic!("PostgreSQL is not reachable ({e}): start it or set CONFIDE_TEST_POSTGRES")
    })
}

/// `n` in-process nodes on one database, hinting each other over one NATS under a prefix of
/// their own, with one TLS certificate as behind a load balancer; the database and the
/// certificate's directory go with it.
struct Nodes {
    servers: Vec<TestServer>,
    _database: Option<TestDatabase>,
    _certs: tempfile::TempDir,
}

impl Nodes {
    /// On a fresh database and the machine's NATS.
    async fn start(n: usize) -> Nodes {
        let nats = nats_url();
        require_nats(&nats).await;
        let database = database();
        let url = database.url().to_string();
        Self::on(n, &url, &nats, Some(database)).await
    }

    /// On the database at `url` and the NATS at `nats`.
    async fn on(n: usize, url: &str, nats: &str, database: Option<TestDatabase>) -> Nodes {
        let certs = tempfile::tempdir().unwrap();
        let prefix = unique_prefix();
        let mut servers = Vec::new();
        for _ in 0..n {
            let storage = Arc::new(PostgresStorage::connect(url).unwrap());
            let cluster = ClusterConfig {
                nats_url: nats.into(),
                subject_prefix: prefix.clone(),
            };
            servers.push(TestServer::start_node(certs.path(), storage, cluster).await);
        }
        Nodes {
            servers,
            _database: database,
            _certs: certs,
        }
    }

    /// Node `i`'s URL.
    fn url(&self, i: usize) -> &str {
        &self.servers[i].url
    }

    /// The trust setting for clients of any node.
    fn trust(&self) -> ServerTrust {
        self.servers[0].trust()
    }
}

/// Waits until `user` holds `text`.
async fn wait_for(user: &mut TestUser, group: GroupId, text: &str) -> Vec<ChatMessage> {
    wait_for_texts(user, group, &HashSet::from([text.to_string()])).await
}

/// Waits until `user` holds every text in `texts` (and processes events meanwhile); returns
/// the whole history.
async fn wait_for_texts(
    user: &mut TestUser,
    group: GroupId,
    texts: &HashSet<String>,
) -> Vec<ChatMessage> {
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        // A device linked a moment ago may not have adopted the group from its first sync
        // yet: that is "not yet", like a message still on its way.
        let history = match user.client.history(group, None, 100_000).await {
            Err(confide_client::ClientError::UnknownGroup) => Vec::new(),
            other => other.unwrap(),
        };
        let have: HashSet<&String> = history.iter().map(|m| &m.text).collect();
        if texts.iter().all(|t| have.contains(t)) {
            return history;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {} messages arrived at {}",
            texts.iter().filter(|t| have.contains(t)).count(),
            texts.len(),
            user.client.display_name()
        );
        let _ = tokio::time::timeout(Duration::from_millis(100), user.events.next()).await;
    }
}

/// Asserts that every member holds every acknowledged text exactly once, and that all of them
/// hold the group's messages in one and the same order.
async fn assert_one_conversation(
    users: &mut [TestUser],
    group: GroupId,
    acknowledged: &HashSet<String>,
) {
    let mut orders = Vec::new();
    for user in users.iter_mut() {
        let history = wait_for_texts(user, group, acknowledged).await;
        let texts: Vec<String> = history.iter().map(|m| m.text.clone()).collect();
        let distinct: HashSet<&String> = texts.iter().collect();
        assert_eq!(
            distinct.len(),
            texts.len(),
            "{} holds a message twice",
            user.client.display_name()
        );
        orders.push(
            history
                .iter()
                .map(|m| (m.seq, m.text.clone()))
                .collect::<Vec<_>>(),
        );
    }
    for order in &orders[1..] {
        // Everyone has the acknowledged messages; compare the common prefix in full and the
        // acknowledged ones' order (a message sent at the very end may still be arriving).
        let common = order.len().min(orders[0].len());
        assert_eq!(
            order[..common],
            orders[0][..common],
            "two members see different orders"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn members_spread_over_three_nodes_see_every_message_once_in_one_order() {
    let nodes = Nodes::start(3).await;
    let trust = nodes.trust();
    let names = ["Alice", "Bob", "Carol", "Dave", "Erin", "Frank"];
    let people: Vec<(&str, &str)> = names
        .iter()
        .enumerate()
        .map(|(i, name)| (nodes.url(i % 3), *name))
        .collect();
    let (mut users, group) = users_in_group_at(trust, &people).await;
    // Everyone talks at once, each through their own node.
    let sends: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let client = u.client.clone();
            tokio::spawn(async move {
                let mut sent = Vec::new();
                for n in 0..5 {
                    let text = format!("{i}-{n}");
                    client.send_text(group, &text, None).await.unwrap();
                    sent.push(text);
                }
                sent
            })
        })
        .collect();
    let mut acknowledged = HashSet::new();
    for send in sends {
        acknowledged.extend(send.await.unwrap());
    }
    assert_eq!(acknowledged.len(), 30);
    assert_one_conversation(&mut users, group, &acknowledged).await;
    // And the seqs are dense: no two nodes stored a message under one seq.
    let history = users[0].client.history(group, None, 1000).await.unwrap();
    let seqs: Vec<u64> = history.iter().map(|m| m.seq.0).collect();
    let mut sorted = seqs.clone();
    sorted.dedup();
    assert_eq!(sorted.len(), seqs.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_removed_through_one_node_cannot_post_through_another() {
    let nodes = Nodes::start(2).await;
    let (mut users, group) = users_in_group_at(
        nodes.trust(),
        &[
            (nodes.url(0), "Alice"),
            (nodes.url(1), "Bob"),
            (nodes.url(1), "Carol"),
        ],
    )
    .await;
    let carol = users[2].client.user();
    users[0]
        .client
        .remove(group, carol, confide_client::RemoveOptions::new())
        .await
        .unwrap();
    // Carol's node learnt of it: it refuses her post (the server's check, not only clients').
    let refused = users[2].client.send_text(group, "still here?", None).await;
    assert!(
        refused.is_err(),
        "a removed member's post was accepted: {refused:?}"
    );
    users[1]
        .client
        .send_text(group, "bye Carol", None)
        .await
        .unwrap();
    wait_for(&mut users[0], group, "bye Carol").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_device_links_through_another_node_than_its_first_device() {
    let nodes = Nodes::start(2).await;
    let (mut users, group) = users_in_group_at(
        nodes.trust(),
        &[(nodes.url(0), "Alice"), (nodes.url(0), "Bob")],
    )
    .await;
    users[1]
        .client
        .send_text(group, "before the laptop", None)
        .await
        .unwrap();
    wait_for(&mut users[0], group, "before the laptop").await;
    // The phone is on node 0; the laptop opens its link channel on node 1.
    let mut laptop = users[0].link_new_device(nodes.url(1), nodes.trust()).await;
    assert_eq!(laptop.client.user(), users[0].client.user());
    wait_for(&mut laptop, group, "before the laptop").await;
    users[1]
        .client
        .send_text(group, "hello laptop", None)
        .await
        .unwrap();
    wait_for(&mut laptop, group, "hello laptop").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_nats_down_delivery_goes_on_by_polling_and_recovers() {
    let mut nats = PrivateNats::start().await;
    let database = database();
    let url = database.url().to_string();
    let nodes = Nodes::on(2, &url, &nats.url, Some(database)).await;
    let (mut users, group) = users_in_group_at(
        nodes.trust(),
        &[(nodes.url(0), "Alice"), (nodes.url(1), "Bob")],
    )
    .await;
    let mut bob = users.pop().unwrap();
    let alice = users.pop().unwrap();
    alice
        .client
        .send_text(group, "with NATS", None)
        .await
        .unwrap();
    wait_for(&mut bob, group, "with NATS").await;

    nats.kill();
    alice
        .client
        .send_text(group, "without NATS", None)
        .await
        .unwrap();
    // Alice's node cannot tell Bob's: Bob's node finds it by polling the database.
    wait_for(&mut bob, group, "without NATS").await;

    nats.resume().await;
    alice
        .client
        .send_text(group, "NATS is back", None)
        .await
        .unwrap();
    let history = wait_for(&mut bob, group, "NATS is back").await;
    let texts: Vec<&str> = history.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["with NATS", "without NATS", "NATS is back"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restarting_under_load_refuses_posts_with_storage_and_loses_nothing() {
    let nats = nats_url();
    require_nats(&nats).await;
    let mut postgres = PrivatePostgres::start();
    let url = postgres.url("confide");
    postgres.create_database("confide");
    let nodes = Nodes::on(2, &url, &nats, None).await;
    let (mut users, group) = users_in_group_at(
        nodes.trust(),
        &[(nodes.url(0), "Alice"), (nodes.url(1), "Bob")],
    )
    .await;
    // Alice keeps writing while the database goes away and comes back.
    let alice = users[0].client.clone();
    let writer = tokio::spawn(async move {
        let mut sent = HashSet::new();
        for n in 0..40 {
            let text = format!("message {n}");
            // Kept and posted again by the client until the server acknowledges it.
            match alice.send_text(group, &text, None).await {
                Ok(_) | Err(confide_client::ClientError::Pending) => {}
                Err(e) => panic!("{text}: {e}"),
            }
            sent.insert(text);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sent
    });
    let mut raw = confide_tests::RawClient::register(&nodes.servers[1], "Mallory").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    postgres.stop();
    // Meanwhile the node refuses what it cannot store with `storage`: nothing is acknowledged
    // that it cannot keep.
    let genesis = raw.sign_genesis();
    let reply = raw
        .request(|id| ClientFrame::CreateGroup { id, genesis })
        .await;
    assert_eq!(error_code(&reply), Some(ErrorCode::Storage), "{reply:?}");
    postgres.resume();
    let sent = writer.await.unwrap();
    assert_one_conversation(&mut users, group, &sent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_killed_under_load_loses_no_acknowledged_post() {
    let nats = nats_url();
    require_nats(&nats).await;
    let db = database();
    let mut cluster = confide_tests::cluster::ProcessCluster::start(3, db.url(), &nats).await;
    let balancer = Balancer::start(cluster.addresses()).await;
    let url = format!("wss://localhost:{}", balancer.port);
    let names = ["Alice", "Bob", "Carol", "Dave"];
    let people: Vec<(&str, &str)> = names.iter().map(|n| (url.as_str(), *n)).collect();
    let (mut users, group) = users_in_group_at(cluster.trust(), &people).await;
    let sends: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let client = u.client.clone();
            tokio::spawn(async move {
                let mut acknowledged = HashSet::new();
                for n in 0..30 {
                    let text = format!("{i}-{n}");
                    // Acknowledged, or kept by the client to be posted again after it
                    // reconnects: both must arrive.
                    match client.send_text(group, &text, None).await {
                        Ok(_) | Err(confide_client::ClientError::Pending) => {
                            acknowledged.insert(text);
                        }
                        Err(e) => panic!("{text}: {e}"),
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                acknowledged
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // SIGKILL: no graceful shutdown, connections cut mid-write — of clients that were on it.
    let victim = cluster.addresses()[0];
    assert!(
        balancer.open_to(victim) > 0,
        "no client was on the node to kill"
    );
    cluster.kill(0);
    let mut acknowledged = HashSet::new();
    for send in sends {
        acknowledged.extend(send.await.unwrap());
    }
    assert_eq!(acknowledged.len(), 120);
    assert_one_conversation(&mut users, group, &acknowledged).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_device_unlinked_while_nats_is_down_is_cut_off_once_it_is_back() {
    let mut nats = PrivateNats::start().await;
    let database = database();
    let url = database.url().to_string();
    let nodes = Nodes::on(2, &url, &nats.url, Some(database)).await;
    let phone = TestUser::register(nodes.url(0), nodes.trust(), "Alice").await;
    let mut laptop = phone.link_new_device(nodes.url(1), nodes.trust()).await;
    nats.kill();
    // The phone's node cannot tell the laptop's node.
    phone
        .client
        .unlink_device(laptop.client.device())
        .await
        .unwrap();
    nats.resume().await;
    // Back, the laptop's node closes its connections for the clients to sync anew: the laptop
    // learns it was unlinked (the server refuses it) instead of staying connected.
    laptop.wait_unlinked().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_a_nats_outage_a_node_has_its_clients_reconnect_and_sync() {
    let mut nats = PrivateNats::start().await;
    let database = database();
    let url = database.url().to_string();
    let nodes = Nodes::on(2, &url, &nats.url, Some(database)).await;
    let mut raw = confide_tests::RawClient::register(&nodes.servers[1], "Alice").await;
    nats.kill();
    nats.resume().await;
    // What other nodes hinted meanwhile (inbox items, device lists, unlinks) is lost: the node
    // says so, and the connection closes for the client to reconnect and sync.
    let frame = raw
        .wait_for(|f| matches!(f, ServerFrame::GoingAway { .. }))
        .await;
    let ServerFrame::GoingAway { reason } = frame else {
        unreachable!()
    };
    assert!(reason.contains("reconnect and sync"), "{reason}");
}
