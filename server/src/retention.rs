//! Retention: messages older than a group's retention period (a setting in its signed log) are
//! deleted from storage, through the writer like every other write.

use std::sync::Arc;
use tokio::sync::watch;

use confide_protocol::{MessageId, Seq, policy};

use crate::server::{Shared, now};
use crate::storage::Write;

/// Messages read per storage call while sweeping.
const SWEEP_PAGE: usize = 500;

/// Sweeps every `retention_sweep` until shutdown.
pub async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    // A zero interval would make tokio panic; a configured 0 means "as often as sensible".
    let mut tick = tokio::time::interval(
        shared
            .limits
            .retention_sweep
            .max(std::time::Duration::from_millis(10)),
    );
    loop {
        tokio::select! {
            _ = tick.tick() => sweep(&shared).await,
            _ = stop.changed() => return,
        }
    }
}

/// Deletes every stored message past its group's retention period.
pub async fn sweep(shared: &Shared) {
    let t = now();
    for (group, entry) in shared.groups.all() {
        let Some(cutoff) = entry.lock().await.state.retention_cutoff(t) else {
            continue;
        };
        let mut after = Seq(0);
        loop {
            let page = match shared.storage.messages(&group, after, SWEEP_PAGE) {
                Ok(page) => page,
                Err(e) => {
                    crate::throttle::storage_error(&format_args!(
                        "retention sweep could not read messages: {e}"
                    ));
                    break;
                }
            };
            let full = page.len() == SWEEP_PAGE;
            let expired: Vec<(Seq, MessageId)> = page
                .iter()
                .take_while(|m| policy::is_past_retention(m.received_at, cutoff))
                .map(|m| (m.seq, m.envelope.message_id()))
                .collect();
            let reached_newer = expired.len() < page.len();
            if let Some(last) = page.get(expired.len().saturating_sub(1)) {
                after = last.seq;
            }
            if !expired.is_empty() {
                let count = expired.len();
                let writes = expired
                    .into_iter()
                    .map(|(seq, message)| Write::ExpireMessage {
                        group,
                        seq,
                        message,
                    })
                    .collect();
                match shared.writer.commit(writes).await {
                    Ok(()) => {
                        tracing::info!(%group, count, "deleted messages past the retention period")
                    }
                    Err(crate::writer::CommitError::Storage(e)) => {
                        crate::throttle::storage_error(&format_args!(
                            "retention sweep could not delete: {e}"
                        ));
                        break;
                    }
                    // The writer has stopped: the server is shutting down.
                    Err(crate::writer::CommitError::Stopped) => break,
                }
            }
            if reached_newer || !full {
                break;
            }
        }
    }
}
