//! Which connections each device has open, and delivery to them.
//!
//! Delivery never blocks: each connection has a bounded queue of pre-serialized frames; a full
//! queue marks the connection as a slow consumer, which its task then closes with a clear close
//! reason. The client resyncs when it returns, so nothing is lost — the server stores before it
//! delivers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use confide_protocol::DeviceId;

use crate::metrics::Metrics;

/// A frame serialized once and shared by every recipient: a thin pointer (so each queue slot is
/// one word) to bytes the websocket layer can send without copying them per recipient.
pub type Outbound = Arc<Utf8Bytes>;

/// Wraps a serialized frame for delivery.
pub fn outbound(text: String) -> Outbound {
    Arc::new(Utf8Bytes::from(text))
}

/// The hub's handle on one connection.
#[derive(Clone)]
pub struct ConnHandle {
    /// Unique per connection.
    pub id: u64,
    tx: mpsc::Sender<Outbound>,
    /// What the connection task and every deliverer share, in one allocation (most connections
    /// are idle, so their size is the server's memory).
    state: Arc<ConnState>,
    /// The byte bound.
    max_bytes: usize,
}

struct ConnState {
    /// Set when the queue overflowed; the connection task closes itself.
    slow: AtomicBool,
    /// Set when a device list dropped the connection's device; the task closes itself.
    unlinked: AtomicBool,
    /// Set when this node may have missed what other nodes stored for the connection (NATS
    /// was away, [`crate::cluster`]); the task closes itself and the client syncs anew.
    resync: AtomicBool,
    /// Wakes the connection task when `slow` is set.
    wake: Notify,
    /// Bytes queued and not yet sent: the queue is bounded in bytes as well as in frames.
    queued_bytes: AtomicUsize,
    /// The last inbox item of the backlog page sent, while more of the backlog is waiting for
    /// the client's acknowledgement (0: nothing waiting).
    backlog_after: AtomicU64,
}

impl ConnHandle {
    /// Makes a handle and the receiving end its connection task reads from.
    pub fn new(
        id: u64,
        capacity: usize,
        max_bytes: usize,
    ) -> (ConnHandle, mpsc::Receiver<Outbound>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let handle = ConnHandle {
            id,
            tx,
            state: Arc::new(ConnState {
                slow: AtomicBool::new(false),
                unlinked: AtomicBool::new(false),
                resync: AtomicBool::new(false),
                wake: Notify::new(),
                queued_bytes: AtomicUsize::new(0),
                backlog_after: AtomicU64::new(0),
            }),
            max_bytes,
        };
        (handle, rx)
    }

    /// Whether the queue overflowed (the connection is being closed as a slow consumer).
    pub fn is_slow(&self) -> bool {
        self.state.slow.load(Ordering::Relaxed)
    }

    /// Whether the connection's device was unlinked (the connection is being closed).
    pub fn is_unlinked(&self) -> bool {
        self.state.unlinked.load(Ordering::Relaxed)
    }

    /// Tells the connection task that its device was unlinked: it closes the connection.
    pub fn unlink(&self) {
        self.state.unlinked.store(true, Ordering::Relaxed);
        self.state.wake.notify_one();
    }

    /// Whether the connection is to be closed for its client to sync anew.
    pub fn must_resync(&self) -> bool {
        self.state.resync.load(Ordering::Relaxed)
    }

    /// Tells the connection task to close the connection, so that its client reconnects and
    /// syncs: this node may have missed inbox items, device lists or unlinks other nodes stored.
    pub fn resync(&self) {
        self.state.resync.store(true, Ordering::Relaxed);
        self.state.wake.notify_one();
    }

    /// Completes when the queue has overflowed, or the device was unlinked.
    pub async fn overflowed(&self) {
        self.state.wake.notified().await
    }

    /// The last inbox item of the backlog page sent while more is waiting (0: nothing waiting).
    pub fn backlog_after(&self) -> u64 {
        self.state.backlog_after.load(Ordering::Relaxed)
    }

    /// Records where the backlog page just sent ended (0: the backlog is complete).
    pub fn set_backlog_after(&self, inbox_id: u64) {
        self.state.backlog_after.store(inbox_id, Ordering::Relaxed)
    }

    /// Records that a frame of `len` bytes left the queue.
    pub fn sent(&self, len: usize) {
        let _ = self
            .state
            .queued_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| {
                Some(q.saturating_sub(len))
            });
    }

    fn mark_slow(&self, metrics: &Metrics) {
        if !self.state.slow.swap(true, Ordering::Relaxed) {
            metrics.slow_consumers.fetch_add(1, Ordering::Relaxed);
        }
        self.state.wake.notify_one();
    }

    /// Queues a frame; on overflow marks the connection slow instead of waiting.
    pub fn deliver(&self, frame: &Outbound, metrics: &Metrics) {
        if self.is_slow() {
            return;
        }
        let len = frame.len();
        let queued = self.state.queued_bytes.fetch_add(len, Ordering::Relaxed) + len;
        // One frame is always allowed into an empty queue, however large.
        if queued > self.max_bytes && queued != len {
            self.mark_slow(metrics);
            return;
        }
        match self.tx.try_send(frame.clone()) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => self.mark_slow(metrics),
            // The connection has closed: nobody to deliver to, and nothing slow about it (the
            // bytes were never queued).
            Err(mpsc::error::TrySendError::Closed(_)) => self.sent(len),
        }
    }
}

/// The registry of authenticated connections by device.
#[derive(Default)]
pub struct Hub {
    devices: RwLock<HashMap<DeviceId, Vec<ConnHandle>>>,
    next_id: AtomicU64,
}

/// The device already has the maximum number of connections.
#[derive(Debug)]
pub struct TooManyConnections;

impl Hub {
    /// A fresh connection id.
    pub fn next_conn_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers an authenticated connection of `device`.
    pub fn register(
        &self,
        device: DeviceId,
        conn: ConnHandle,
        max_per_device: usize,
    ) -> Result<(), TooManyConnections> {
        let Ok(mut devices) = self.devices.write() else {
            return Err(TooManyConnections);
        };
        let conns = devices.entry(device).or_default();
        if conns.len() >= max_per_device {
            return Err(TooManyConnections);
        }
        conns.push(conn);
        Ok(())
    }

    /// Removes a connection when it closes.
    pub fn unregister(&self, device: &DeviceId, conn_id: u64) {
        if let Ok(mut devices) = self.devices.write()
            && let Some(conns) = devices.get_mut(device)
        {
            conns.retain(|c| c.id != conn_id);
            if conns.is_empty() {
                devices.remove(device);
            }
        }
    }

    /// Whether `device` has a connection here.
    pub fn is_connected(&self, device: &DeviceId) -> bool {
        self.devices
            .read()
            .map(|map| map.contains_key(device))
            .unwrap_or(false)
    }

    /// Closes every authenticated connection for its client to reconnect and sync
    /// ([`ConnHandle::resync`]).
    pub fn resync_all(&self) {
        let Ok(map) = self.devices.read() else { return };
        for conn in map.values().flatten() {
            conn.resync();
        }
    }

    /// Closes every connection of `device` (a device list dropped it).
    pub fn unlink(&self, device: &DeviceId) {
        let Ok(map) = self.devices.read() else { return };
        for conn in map.get(device).into_iter().flatten() {
            conn.unlink();
        }
    }

    /// Delivers `frame` to every connection of every device in `devices`, except the connection
    /// `skip` (the sender's own, which already has the acknowledgement).
    pub fn deliver<'a>(
        &self,
        devices: impl IntoIterator<Item = &'a DeviceId>,
        frame: &Outbound,
        skip: Option<u64>,
        metrics: &Metrics,
    ) {
        let Ok(map) = self.devices.read() else { return };
        for device in devices {
            if let Some(conns) = map.get(device) {
                for conn in conns {
                    if Some(conn.id) != skip {
                        conn.deliver(frame, metrics);
                    }
                }
            }
        }
    }
}
