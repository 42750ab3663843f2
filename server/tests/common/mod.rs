//! Shared by the server's storage-failure tests: real sled storage whose writes can be made to
//! fail as on a full disk, or to panic as a bug would; and a plain-websocket client that
//! registers devices.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use confide_client::{Connection, ServerTrust};
use confide_protocol::frames::{
    self, ClientFrame, ErrorCode, InboxItem, PROTOCOL_VERSION, ServerFrame, StoredMessage,
};
use confide_protocol::group_log::SignedOp;
use confide_protocol::{DeviceId, DeviceIdentity, GroupId, MessageId, RequestId, Seq, UserId};
use confide_server::storage::{DeviceRecord, StorageError, Write};
use confide_server::{Config, Limits, ServerError, SledStorage, Storage};

/// How long a test waits for anything (a hang is a failure, not a timing claim).
pub const WAIT: Duration = Duration::from_secs(20);

/// What [`Breakable`] writes do.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// Written as usual.
    Normal = 0,
    /// Refused before anything is written, as on a full disk.
    Full = 1,
    /// The storage panics (a bug).
    Panic = 2,
}

/// Real sled storage whose writes behave as [`Mode`] says.
pub struct Breakable {
    inner: SledStorage,
    mode: AtomicU8,
}

impl Breakable {
    pub fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }
}

impl Storage for Breakable {
    fn commit(&self, batch: &[Write]) -> Result<(), StorageError> {
        match self.mode.load(Ordering::SeqCst) {
            1 => Err(StorageError::Full {
                available: 0,
                needed: 1 << 28,
            }),
            2 => panic!("a bug in the storage"),
            _ => self.inner.commit(batch),
        }
    }
    fn device(&self, d: &DeviceId) -> Result<Option<DeviceRecord>, StorageError> {
        self.inner.device(d)
    }
    fn devices_of_user(&self, u: &UserId) -> Result<Vec<DeviceRecord>, StorageError> {
        self.inner.devices_of_user(u)
    }
    fn message_seq(&self, g: &GroupId, m: &MessageId) -> Result<Option<Seq>, StorageError> {
        self.inner.message_seq(g, m)
    }
    fn groups(&self) -> Result<Vec<GroupId>, StorageError> {
        self.inner.groups()
    }
    fn ops(&self, g: &GroupId, from: u64, limit: usize) -> Result<Vec<SignedOp>, StorageError> {
        self.inner.ops(g, from, limit)
    }
    fn messages(
        &self,
        g: &GroupId,
        after: Seq,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StorageError> {
        self.inner.messages(g, after, limit)
    }
    fn last_seq(&self, g: &GroupId) -> Result<Seq, StorageError> {
        self.inner.last_seq(g)
    }
    fn inbox(
        &self,
        d: &DeviceId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<InboxItem>, StorageError> {
        self.inner.inbox(d, after, limit)
    }
    fn inbox_len(&self, d: &DeviceId) -> Result<usize, StorageError> {
        self.inner.inbox_len(d)
    }
    fn inbox_len_from(&self, d: &DeviceId, share: &DeviceId) -> Result<usize, StorageError> {
        self.inner.inbox_len_from(d, share)
    }
    fn next_inbox_id(&self) -> Result<u64, StorageError> {
        self.inner.next_inbox_id()
    }
}

/// A server on a loopback port (plain websockets) over [`Breakable`] storage.
pub struct Server {
    pub url: String,
    pub storage: Arc<Breakable>,
    pub task: tokio::task::JoinHandle<Result<(), ServerError>>,
    pub stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Server {
    pub async fn start(limits: Limits) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(Breakable {
            inner: SledStorage::open_with(&dir.path().join("db"), 1 << 20, 0).unwrap(),
            mode: AtomicU8::new(Mode::Normal as u8),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let config = Config {
            limits,
            tls: None,
            storage: storage.clone(),
            metrics_listener: None,
        };
        let task = tokio::spawn(confide_server::run(listener, config, async move {
            let _ = stopped.await;
        }));
        Server {
            url: format!("ws://127.0.0.1:{port}"),
            storage,
            task,
            stop: Some(stop),
            _dir: dir,
        }
    }
}

fn rng() -> rand_core::UnwrapErr<getrandom::SysRng> {
    rand_core::UnwrapErr(getrandom::SysRng)
}

/// Connects a new device and sends `register`; the server's answer, and the connection.
pub async fn register(url: &str) -> (ServerFrame, Connection) {
    let mut conn = Connection::connect(url, &ServerTrust::SystemRoots)
        .await
        .unwrap();
    let challenge = tokio::time::timeout(WAIT, conn.recv())
        .await
        .unwrap()
        .unwrap();
    let ServerFrame::Challenge { nonce, .. } = challenge else {
        panic!("expected a challenge, got {challenge:?}");
    };
    let identity = DeviceIdentity::generate(&mut rng());
    let frame = ClientFrame::Register {
        id: RequestId(1),
        version: PROTOCOL_VERSION,
        user: UserId::random(&mut rng()),
        display_name: "Someone".into(),
        keys: identity.public_keys(),
        registration_token: None,
        signature: frames::sign_auth(&identity, conn.host(), &nonce),
    };
    conn.send(&frame).await.unwrap();
    let reply = tokio::time::timeout(WAIT, conn.recv())
        .await
        .unwrap()
        .unwrap();
    (reply, conn)
}

/// The code and retry hint of an error frame.
pub fn refusal(frame: &ServerFrame) -> Option<(ErrorCode, Option<u64>)> {
    match frame {
        ServerFrame::Error {
            code,
            retry_after_ms,
            ..
        } => Some((*code, *retry_after_ms)),
        _ => None,
    }
}
