//! `confide`: the command-line client. The chat and moderation subcommands arrive with the
//! client library; this release can check a server's certificate pin and show the version.

use clap::{Parser, Subcommand};

/// Confide: end-to-end encrypted chat for facilitated peer-support groups.
#[derive(Parser, Debug)]
#[command(name = "confide", version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Connects to a server, checks its certificate against a pin and prints its challenge.
    Ping {
        /// Server URL, e.g. wss://localhost:7443.
        #[arg(long)]
        server: String,
        /// SHA-256 fingerprint of the server certificate (as printed by `confide-server --dev`).
        #[arg(long)]
        pin: String,
    },
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let result = match args.command {
        Command::Ping { server, pin } => ping(&server, &pin),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("confide: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn ping(server: &str, pin: &str) -> anyhow::Result<()> {
    let runtime = tokio_runtime()?;
    runtime.block_on(async {
        let trust = confide_client::ServerTrust::Pinned(pin.to_string());
        let mut conn = confide_client::Connection::connect(server, &trust).await?;
        let frame = conn.recv().await?;
        match frame {
            confide_protocol::frames::ServerFrame::Challenge { version, server_name, .. } => {
                println!("connected to {server_name} (protocol version {version}); certificate pin matches");
            }
            other => println!("unexpected first frame: {}", other.type_name()),
        }
        conn.close().await;
        Ok(())
    })
}

fn tokio_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}
