//! Backlog: a member who was away comes back to thousands of stored messages. Measured with
//! the real client library (`confide_client::Client`: it verifies, decrypts and stores every
//! message in its encrypted local store), per message, against a raw-protocol client paging
//! through the same messages without decrypting or storing them (the server's and the
//! transport's share).

use anyhow::{anyhow, bail};
use std::time::{Duration, Instant};

use confide_client::{Client, ClientConfig, Event, Events, Invite, InviteOptions, JoinOutcome};
use confide_protocol::frames::MAX_SYNC_LIMIT;
use confide_protocol::identity::KdfParams;
use confide_protocol::{ClientFrame, DeviceIdentity, RequestId, Seq, ServerFrame};

use super::Options;
use crate::net::{self, Device, DialOptions};
use crate::report::{Report, Target};
use crate::server::{Kind, RunningServer};

const SCENARIO: &str = "backlog";
/// Issue 20's target: a client syncs a stored backlog in at most this many µs per message.
pub const TARGET_US_PER_MESSAGE: f64 = 30.0;
/// Local-store passphrase of the benchmark's clients.
const PASSPHRASE: &[u8] = b"benchmark passphrase";
/// How long the returning member may take to catch up before the scenario fails.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(600);

struct User {
    client: Client,
    events: Events,
    config: ClientConfig,
    _dir: tempfile::TempDir,
}

async fn register(
    server: &RunningServer,
    name: &str,
    identity: DeviceIdentity,
) -> anyhow::Result<User> {
    let dir = tempfile::tempdir()?;
    let pin = server
        .ready
        .pin
        .clone()
        .ok_or_else(|| anyhow!("the server has no certificate"))?;
    let url = format!("wss://{}:{}", net::SERVER_NAME, server.ready.addr.port());
    let mut config = ClientConfig::new(
        url,
        confide_client::ServerTrust::Pinned(pin),
        dir.path().join("store"),
    );
    // The store's key derivation runs once per open and is not what is measured here.
    config.kdf = KdfParams::INSECURE_FOR_TESTS;
    let (client, events) =
        Client::register_with_identity(config.clone(), name, PASSPHRASE, identity).await?;
    Ok(User {
        client,
        events,
        config,
        _dir: dir,
    })
}

/// Pages through the whole group as a raw protocol client; returns the messages received.
async fn raw_sync(
    server: &RunningServer,
    device: &Device,
    group: confide_protocol::GroupId,
) -> anyhow::Result<usize> {
    let mut ws = net::connect_existing(&server.target()?, device, DialOptions::default()).await?;
    let (mut next_op_seq, mut next_seq, mut received) = (0u64, Seq(1), 0usize);
    for id in 10.. {
        let frame =
            ClientFrame::sync_from(RequestId(id), group, next_op_seq, next_seq, MAX_SYNC_LIMIT);
        match net::request(&mut ws, &frame).await? {
            ServerFrame::SyncPage {
                messages,
                next_op_seq: op_seq,
                next_seq: seq,
                complete,
                ..
            } => {
                received += messages.len();
                if complete {
                    break;
                }
                (next_op_seq, next_seq) = (op_seq, seq);
            }
            other => bail!("expected a sync page, got {}", other.type_name()),
        }
    }
    Ok(received)
}

/// Alice fills a group while Bob is away; Bob then syncs, first raw, then with the client.
pub async fn run(opts: &Options, report: &mut Report) -> anyhow::Result<()> {
    let n = opts.sizes.backlog;
    eprintln!("backlog: {n} stored messages");
    let server = RunningServer::start(Kind::Confide, &opts.mode, 16).await?;
    let alice = register(&server, "Alice", DeviceIdentity::generate(&mut net::rng())).await?;
    let bob_identity = DeviceIdentity::generate(&mut net::rng());
    let bob_copy = DeviceIdentity::from_secrets(&bob_identity.to_secret_bytes())
        .map_err(|e| anyhow::anyhow!("copying Bob's identity: {e}"))?;
    let mut bob = register(&server, "Bob", bob_identity).await?;
    let bob_device = Device {
        identity: bob_copy,
        user: bob.client.user(),
        name: "Bob".into(),
    };
    let group = alice.client.create_group().await?;
    let invite = alice
        .client
        .create_invite(
            group,
            InviteOptions::new()
                .max_uses(2)
                .valid_for(Duration::from_secs(3_600)),
        )
        .await?;
    let invite = Invite::from_link(&invite.to_link())?;
    if bob.client.join(&invite, None).await? != JoinOutcome::Joined(group) {
        bail!("Bob could not join the group");
    }
    bob.client.shutdown().await;
    while bob.events.next().await.is_some() {}

    // Alice's application reads her events, as a real one does: left unread, they overflow
    // the client's event backlog (`ClientConfig::event_backlog`) after some 9,000 sends, and
    // the client then stays offline until they are read, keeping further messages back.
    let User {
        client: alice_client,
        events: mut alice_events,
        _dir: _alice_dir,
        ..
    } = alice;
    let alice_reader = tokio::spawn(async move { while alice_events.next().await.is_some() {} });
    let filling = Instant::now();
    for i in 0..n {
        alice_client
            .send_text(group, &format!("backlog message {i}"), None)
            .await?;
    }
    let fill = filling.elapsed();

    let started = Instant::now();
    let raw = raw_sync(&server, &bob_device, group).await?;
    let raw_time = started.elapsed();
    if raw < n {
        bail!("the raw sync received {raw} of {n} messages");
    }

    let (client, mut events) = Client::open(bob.config.clone(), PASSPHRASE).await?;
    let started = Instant::now();
    let deadline = started + CATCH_UP_TIMEOUT;
    loop {
        let event = tokio::time::timeout_at(deadline.into(), events.next())
            .await
            .map_err(|_| anyhow!("Bob did not finish syncing in {CATCH_UP_TIMEOUT:?}"))?;
        match event {
            Some(Event::Synced) => break,
            Some(_) => {}
            None => bail!("Bob's client stopped while syncing"),
        }
    }
    let got = client.history(group, None, n + 16).await?.len();
    let client_time = started.elapsed();
    if got < n {
        bail!("Bob's client holds {got} of {n} messages after syncing");
    }
    client.shutdown().await;
    alice_client.shutdown().await;
    // The reader ends once the client has shut down.
    let _ = alice_reader.await;
    server.stop().await?;

    let per_us = |d: Duration| d.as_secs_f64() * 1e6 / n.max(1) as f64;
    report.figure(
        SCENARIO,
        format!("client library syncing {n} stored messages: time per message"),
        per_us(client_time),
        "µs",
        "raw protocol paging, no decryption",
        per_us(raw_time),
        Some(Target::ValueAtMost(TARGET_US_PER_MESSAGE)),
    );
    report.note(
        SCENARIO,
        format!(
            "Bob caught up on {n} messages in {:.2} s with the client library, {:.2} s raw; \
             Alice sent them one at a time in {:.1} s ({:.0} acknowledged sends/s)",
            client_time.as_secs_f64(),
            raw_time.as_secs_f64(),
            fill.as_secs_f64(),
            n as f64 / fill.as_secs_f64()
        ),
    );
    Ok(())
}
