//! Crash safety: the server is killed with SIGKILL again and again while several clients post.
//! After every restart, every message the server acknowledged is present exactly once, in
//! order, in every member's client, and nothing unacknowledged is shown to its sender as sent
//! (the client kept it and sent it again, or it never reached anyone).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use confide_client::{Client, ClientConfig, InviteOptions, ServerTrust};
use confide_protocol::identity::KdfParams;

const BIN: &str = env!("CARGO_BIN_EXE_confide-server");
/// Rounds of posting and killing.
const ROUNDS: usize = 4;
/// Messages each client tries to post per round.
const PER_ROUND: usize = 10;
/// Upper bound for any wait in this test (a hang is a failure, not a timing claim).
const WAIT: Duration = Duration::from_secs(60);

fn start(dir: &std::path::Path, port: u16) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args([
            "--dev",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut pin = String::new();
    loop {
        let line = lines.next().expect("server exited").unwrap();
        if line.len() == 66 && line.starts_with("  ") {
            pin = line.trim().to_string();
        }
        if line.starts_with("confide-server listening") {
            break;
        }
    }
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, pin)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn user(url: &str, pin: &str, root: &std::path::Path, name: &str) -> Client {
    let mut config = ClientConfig::new(url, ServerTrust::Pinned(pin.to_string()), root.join(name));
    config.kdf = KdfParams::INSECURE_FOR_TESTS;
    let (client, events) = Client::register(config, name, b"passphrase").await.unwrap();
    // Events are not needed here; keep the stream drained.
    tokio::spawn(async move {
        let mut events = events;
        while events.next().await.is_some() {}
    });
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_repeated_sigkill() {
    let data = tempfile::tempdir().unwrap();
    let stores = tempfile::tempdir().unwrap();
    let port = free_port();
    let (mut server, pin) = start(data.path(), port);
    let url = format!("wss://localhost:{port}");
    let names = ["Alice", "Bob", "Carol"];
    let mut clients = Vec::new();
    for name in names {
        clients.push(user(&url, &pin, stores.path(), name).await);
    }
    let group = clients[0].create_group().await.unwrap();
    let invite = clients[0]
        .create_invite(
            group,
            InviteOptions::new()
                .max_uses(5)
                .valid_for(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    for c in &clients[1..] {
        c.join(&invite, None).await.unwrap();
    }

    let mut acknowledged: HashSet<String> = HashSet::new();
    for round in 0..ROUNDS {
        let senders: Vec<_> = clients
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let c = c.clone();
                tokio::spawn(async move {
                    let mut acked = Vec::new();
                    for n in 0..PER_ROUND {
                        let text = format!("r{round}-c{i}-m{n}");
                        match c.send_text(group, &text, None).await {
                            Ok(_) => acked.push(text),
                            // Refused or pending: give the client a moment to reconnect.
                            Err(_) => tokio::time::sleep(Duration::from_millis(150)).await,
                        }
                    }
                    acked
                })
            })
            .collect();
        // Kill the server while the posts are under way, and bring it straight back: the
        // clients reconnect by themselves and go on posting.
        tokio::time::sleep(Duration::from_millis(60 + 40 * round as u64)).await;
        server.kill().unwrap();
        server.wait().unwrap();
        let (next, _) = start(data.path(), port);
        server = next;
        for s in senders {
            acknowledged.extend(s.await.unwrap());
        }
    }
    assert!(
        !acknowledged.is_empty(),
        "some posts were acknowledged between the kills"
    );

    // Everyone catches up (the clients reconnect by themselves; sync waits for that).
    for c in &clients {
        let deadline = tokio::time::Instant::now() + WAIT;
        while c.sync().await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "client did not reconnect"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Pending messages are re-sent on reconnect: sync once more so everyone sees them.
    for c in &clients {
        c.sync().await.unwrap();
    }
    let mut histories = Vec::new();
    for c in &clients {
        let history = c.history(group, None, 10_000).await.unwrap();
        histories.push(
            history
                .iter()
                .map(|m| (m.seq, m.text.clone()))
                .collect::<Vec<_>>(),
        );
    }
    for (i, h) in histories.iter().enumerate() {
        let texts: Vec<&String> = h.iter().map(|(_, t)| t).collect();
        let unique: HashSet<&String> = texts.iter().copied().collect();
        assert_eq!(
            unique.len(),
            texts.len(),
            "{}: a message shown twice",
            names[i]
        );
        for text in &acknowledged {
            assert!(
                unique.contains(text),
                "{}: acknowledged message {text} is missing",
                names[i]
            );
        }
        let seqs: Vec<u64> = h.iter().map(|(s, _)| s.0).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{}: out of order",
            names[i]
        );
    }
    // Every member, the senders included, sees exactly the same conversation: nothing that
    // was not delivered is shown to its sender as sent.
    assert_eq!(histories[0], histories[1]);
    assert_eq!(histories[1], histories[2]);
    server.kill().unwrap();
    server.wait().unwrap();
}
