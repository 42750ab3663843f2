//! The baseline: a bare tokio-tungstenite fan-out relay. No TLS, no authentication, no storage,
//! no parsing: a client joins the group named by its URL path, and every text message it sends
//! is queued to every other member of that group, after which the sender gets a short
//! acknowledgement — the same message pattern as a Confide post, minus everything that makes
//! Confide trustworthy.
//!
//! It is written the way a competent engineer would write a minimal relay, not as a straw man:
//! frames are shared (reference-counted) between recipients, each connection has one writer
//! task fed by a bounded queue, and its websocket buffers are as small as Confide's defaults,
//! so that the memory comparison isolates what TLS and Confide's bookkeeping cost.

use futures_util::{SinkExt as _, StreamExt as _};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// What the relay answers every message with, so that senders can pace themselves on
/// acknowledgements exactly as they do against Confide (`posted`).
pub const RELAY_ACK: &str = r#"{"type":"posted"}"#;
/// Frames queued per connection; beyond it frames for that connection are dropped.
const RELAY_QUEUE: usize = confide_server::config::DEFAULT_OUTBOUND_QUEUE;

type Members = Vec<(u64, mpsc::Sender<Utf8Bytes>)>;
type Groups = Arc<RwLock<HashMap<String, Members>>>;

/// Serves `listener` until `shutdown` completes.
pub async fn run(listener: TcpListener, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let groups: Groups = Arc::default();
    let ids = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut shutdown => break,
        };
        while connections.try_join_next().is_some() {}
        let Ok((tcp, _)) = accepted else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let id = ids.fetch_add(1, Ordering::Relaxed);
        connections.spawn(connection(tcp, groups.clone(), id, stop_rx.clone()));
    }
    let _ = stop_tx.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

async fn connection(tcp: TcpStream, groups: Groups, id: u64, mut stop: watch::Receiver<bool>) {
    let _ = tcp.set_nodelay(true);
    let config = WebSocketConfig::default()
        .read_buffer_size(confide_server::config::DEFAULT_WS_READ_BUFFER)
        .write_buffer_size(confide_server::config::DEFAULT_WS_WRITE_BUFFER);
    let mut path = String::new();
    // The error type is tungstenite's, fixed by its `Callback` trait.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, response: Response| {
        path = request.uri().path().to_string();
        Ok(response)
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async_with_config(tcp, callback, Some(config)).await
    else {
        return;
    };
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Utf8Bytes>(RELAY_QUEUE);
    if let Ok(mut map) = groups.write() {
        map.entry(path.clone()).or_default().push((id, tx.clone()));
    }
    let writer = tokio::spawn(async move {
        while let Some(text) = rx.recv().await {
            if sink.send(WsMessage::Text(text)).await.is_err() {
                break;
            }
        }
    });
    let ack = Utf8Bytes::from_static(RELAY_ACK);
    loop {
        let message = tokio::select! {
            message = stream.next() => message,
            _ = stop.changed() => break,
        };
        match message {
            Some(Ok(WsMessage::Text(text))) => {
                if let Ok(map) = groups.read()
                    && let Some(members) = map.get(&path)
                {
                    for (other, queue) in members {
                        if *other != id {
                            let _ = queue.try_send(text.clone());
                        }
                    }
                }
                let _ = tx.try_send(ack.clone());
            }
            Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => break,
            Some(Ok(_)) => {}
        }
    }
    if let Ok(mut map) = groups.write()
        && let Some(members) = map.get_mut(&path)
    {
        members.retain(|(other, _)| *other != id);
        if members.is_empty() {
            map.remove(&path);
        }
    }
    drop(tx);
    writer.abort();
}
