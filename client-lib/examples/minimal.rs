//! A minimal third-party client: registers (or reopens its store), creates a group, sends a
//! message and prints what happens.
//!
//! ```sh
//! cargo run --release -p confide-server -- --dev        # prints the certificate fingerprint
//! cargo run -p confide-client --example minimal -- wss://localhost:7443 <fingerprint> ./demo-store
//! ```

use std::time::Duration;

use confide_client::{Client, ClientConfig, Event, InviteOptions, ServerTrust};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(server), Some(pin), Some(store)) = (args.next(), args.next(), args.next()) else {
        eprintln!("usage: minimal <wss://host:port> <certificate fingerprint> <store directory>");
        std::process::exit(2);
    };
    let passphrase = b"demo passphrase: use a real one";
    let config = ClientConfig::new(server, ServerTrust::Pinned(pin), &store);
    let (client, mut events) = if std::path::Path::new(&store).exists() {
        Client::open(config, passphrase).await?
    } else {
        Client::register(config, "Demo", passphrase).await?
    };
    println!(
        "I am user {} on device {}",
        client.user(),
        client.device().short()
    );

    let group = client.create_group().await?;
    let invite = client
        .create_invite(
            group,
            InviteOptions::new()
                .max_uses(5)
                .valid_for(Duration::from_secs(24 * 3600)),
        )
        .await?;
    println!(
        "created group {group}; invite others with:\n  {}",
        invite.to_link()
    );
    let sent = client
        .send_text(group, "Hello from the minimal client", None)
        .await?;
    println!("sent message #{} ({})", sent.seq.0, sent.id);

    // Print events for a few seconds, then stop.
    let deadline = tokio::time::sleep(Duration::from_secs(3));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => break,
            event = events.next() => match event {
                Some(Event::Message(m)) => println!("{}: {}", m.sender_name, m.text),
                Some(other) => println!("event: {other:?}"),
                None => break,
            },
        }
    }
    client.shutdown().await;
    Ok(())
}
