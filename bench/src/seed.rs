//! `confide-bench seed-group`: fills a group with many messages for the web app's budgets
//! (`cargo xtask web-budgets`, docs/web-app-plan.md §8). Unlike the scenarios it starts no
//! server: it talks to one that is already running (the one serving the web app), as a real
//! `confide_client::Client`.
//!
//! It registers a facilitator, creates a group with an invite that needs no approval and
//! prints the invite's web link on standard output (`invite <link>`), waits until another
//! member joined, then sends the messages one after another as fast as the client is
//! acknowledged (`seed message 1` … `seed message N`), waits until those the server's rate
//! limit held back were sent again, and prints `sent N in S s …`.

use anyhow::{Context as _, anyhow, bail};
use std::io::Write as _;
use std::time::{Duration, Instant};

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use confide_client::{Client, ClientConfig, ClientError, Event, InviteOptions, ServerTrust};
use confide_protocol::identity::KdfParams;

/// The facilitator's local-store passphrase (a throwaway store in a temporary directory).
const PASSPHRASE: &[u8] = b"seed-group passphrase";
/// How often the member list is checked while waiting for the joiner.
const POLL: Duration = Duration::from_millis(200);
/// How long to pause after the server did not take a message yet (its per-device rate limit,
/// 50 a second with a burst of 200 by default): the client keeps it and sends it again.
const BACK_OFF: Duration = Duration::from_millis(200);
/// How long the messages kept for later may take to be acknowledged after the last send.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(600);

/// What to seed, and where.
#[derive(Clone, Debug)]
pub struct SeedOptions {
    /// The server's websocket URL, `wss://localhost:PORT` (the web link is made from it).
    pub server_url: String,
    /// The SHA-256 pin of the server's certificate, as `confide-server --dev` prints it.
    pub pin: String,
    /// Messages to send once somebody joined.
    pub messages: usize,
    /// How long to wait for a member to join.
    pub join_timeout: Duration,
}

/// The text of the `i`-th seeded message (1-based), which the budgets script looks for.
pub fn message_text(i: usize) -> String {
    format!("seed message {i}")
}

/// Prints one line on standard output and flushes it, so a parent reading lines sees it now.
fn say(line: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

/// Runs `seed-group`; see the module documentation.
pub async fn run(opts: &SeedOptions) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = ClientConfig::new(
        opts.server_url.clone(),
        ServerTrust::Pinned(opts.pin.clone()),
        dir.path().join("store"),
    );
    // The facilitator's own store key is not what is measured.
    config.kdf = KdfParams::INSECURE_FOR_TESTS;
    let (client, mut events) = Client::register(config, "Seeder", PASSPHRASE)
        .await
        .context("registering the seeding facilitator")?;
    // Unread events would eventually stop the client's requests: drain them, counting the
    // messages acknowledged when sent again.
    let resent = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&resent);
    let drain = tokio::spawn(async move {
        while let Some(event) = events.next().await {
            if matches!(event, Event::Sent(_) | Event::SendFailed { .. }) {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    });

    let group = client.create_group().await?;
    let invite = client
        .create_invite(
            group,
            InviteOptions::new()
                .requires_approval(false)
                .max_uses(1)
                .valid_for(Duration::from_secs(3_600)),
        )
        .await?;
    let link = invite
        .to_web_link(&opts.server_url)
        .ok_or_else(|| anyhow!("{} is not a ws:// or wss:// URL", opts.server_url))?;
    say(&format!("invite {link}"))?;

    let deadline = Instant::now() + opts.join_timeout;
    loop {
        // The member list is the verified log's; a sync brings the joiner's add op.
        client.sync().await?;
        let members = client.members(group).await?;
        if let Some(joined) = members.iter().find(|m| m.user != client.user()) {
            say(&format!("joined {}", joined.display_name))?;
            break;
        }
        if Instant::now() > deadline {
            bail!("nobody joined within {:?}", opts.join_timeout);
        }
        tokio::time::sleep(POLL).await;
    }

    let started = Instant::now();
    let (mut acknowledged, mut kept) = (0usize, 0usize);
    for i in 1..=opts.messages {
        match client.send_text(group, &message_text(i), None).await {
            Ok(_) => acknowledged += 1,
            Err(ClientError::Pending) => {
                kept += 1;
                tokio::time::sleep(BACK_OFF).await;
            }
            Err(error) => return Err(error.into()),
        }
        if i % 1_000 == 0 {
            eprintln!("seed-group: {i} of {} sent", opts.messages);
        }
    }
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    while acknowledged + resent.load(Ordering::Relaxed) < opts.messages {
        if Instant::now() > deadline {
            bail!(
                "{} of the {kept} messages kept for later were not acknowledged",
                kept - resent.load(Ordering::Relaxed).min(kept)
            );
        }
        tokio::time::sleep(POLL).await;
    }
    let took = started.elapsed().as_secs_f64();
    say(&format!(
        "sent {} in {took:.1} s ({:.0}/s; {kept} held back by the server's rate limit and sent again)",
        opts.messages,
        opts.messages as f64 / took
    ))?;
    client.shutdown().await;
    drain.abort();
    Ok(())
}
