//! The client's background task: it owns the core, connects and reconnects with back-off,
//! and feeds the core what arrives (commands from [`crate::Client`], frames from the server,
//! the outbox's retry timer), one at a time. While the application's event queue is full it
//! takes nothing new from the server, only commands, and those without the follow-up work
//! that can take in more ([`crate::queue`]); when its backlog overflows, the connection is
//! dropped until the application has read.

use std::time::Duration;

use tokio::sync::mpsc;

use confide_protocol::frames::ServerFrame;

use crate::TransportError;
use crate::commands::{self, Command, Core};
use crate::native;
use crate::queue::EventSink;

/// First reconnect delay; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(200);
/// Longest reconnect delay.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What woke the task while connected.
enum Next {
    Command(Option<Command>),
    Frame(Result<ServerFrame, TransportError>),
    RetryOutbox,
}

/// Runs the core until [`Command::Shutdown`] (or until every [`crate::Client`] is dropped).
/// `events` is the queue the core's host fills: while it is backed up, the task serves only
/// commands and moves events over as the application reads them.
pub(crate) async fn run(mut core: Core, mut commands: mpsc::Receiver<Command>, events: EventSink) {
    let mut backoff = MIN_BACKOFF;
    // Whether a command ran without its follow-up work (`after_input`), which is then owed.
    let mut follow_up_owed = false;
    loop {
        if events.is_backed_up() {
            if events.has_overflowed() && core.is_connected() {
                // The backlog is full: take nothing more in. Everything taken in is stored,
                // and the server keeps the rest until the client reconnects, once the
                // application has read.
                core.connection_lost(native::OVERFLOWED.into()).await;
            }
            // Back-pressure: no frame, retry or reconnection until the application has made
            // room. Commands still go, so a task awaiting one while it does not read events
            // does not wait for itself; their events join the backlog. Their follow-up work
            // (acknowledgements, syncing groups found behind, posting held messages and
            // pinned texts) waits: it takes in more from the server, producing events nobody
            // reads, and all of it is kept in memory or the store until it runs.
            tokio::select! {
                () = events.move_one() => {}
                cmd = commands.recv() => match cmd {
                    None => return,
                    Some(Command::Shutdown(done)) => return shut_down(core, done).await,
                    Some(cmd) => {
                        commands::dispatch(&mut core, cmd).await;
                        follow_up_owed = true;
                    }
                },
            }
            continue;
        }
        if !core.is_connected() {
            match core.connect().await {
                Ok(()) => {
                    backoff = MIN_BACKOFF;
                    // What waited for the connection goes now, not at the next event.
                    core.after_connect().await;
                }
                Err(e) => {
                    core.connect_failed(e.to_string()).await;
                    // Wait out the back-off, but keep serving commands (which fail fast or try
                    // to connect themselves). Jitter spreads reconnects when a server comes
                    // back to many clients.
                    let jitter = rand_core::Rng::next_u32(&mut crate::os_rng()) % 1000;
                    let sleep =
                        tokio::time::sleep(backoff.mul_f64(0.5 + f64::from(jitter) / 1000.0));
                    tokio::pin!(sleep);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    loop {
                        tokio::select! {
                            _ = &mut sleep => break,
                            cmd = commands.recv() => match cmd {
                                None => return,
                                Some(Command::Shutdown(done)) => {
                                    return shut_down(core, done).await;
                                }
                                Some(cmd) => commands::dispatch(&mut core, cmd).await,
                            },
                        }
                    }
                    continue;
                }
            }
        }
        if std::mem::take(&mut follow_up_owed) {
            core.after_input().await;
            continue;
        }
        let next = {
            // The wait until the outbox's retry is due, by the same clock the core uses.
            let retry_in = core
                .retry_due_at()
                .map(|at| Duration::from_millis(at.0.saturating_sub(crate::native::now().0)));
            let Some(conn) = core.link_mut() else {
                continue;
            };
            tokio::select! {
                cmd = commands.recv() => Next::Command(cmd),
                frame = conn.recv_next() => Next::Frame(frame),
                // `retry_in` is `Some` whenever this branch is enabled.
                _ = tokio::time::sleep(retry_in.unwrap_or_default()), if retry_in.is_some() => Next::RetryOutbox,
            }
        };
        match next {
            Next::Command(None) => return,
            Next::Command(Some(Command::Shutdown(done))) => return shut_down(core, done).await,
            Next::Command(Some(cmd)) => commands::dispatch(&mut core, cmd).await,
            Next::Frame(Ok(frame)) => core.receive(frame).await,
            Next::RetryOutbox => core.retry_now().await,
            Next::Frame(Err(e)) => core.connection_lost(e.to_string()).await,
        }
        core.after_input().await;
    }
}

/// Closes the core and its store, then tells the caller: the store is closed before the
/// caller hears of it, so the caller may open it again (or remove it) at once.
async fn shut_down(mut core: Core, done: tokio::sync::oneshot::Sender<()>) {
    core.shutdown().await;
    drop(core);
    let _ = done.send(());
}
