//! Shared by the server's storage-failure tests: real sled storage whose writes can be made to
//! fail as on a full disk, or to panic as a bug would, and whose reads and writes can be held
//! at chosen points; and a plain-websocket client that registers devices, creates groups and
//! posts.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use confide_client::{Connection, ServerTrust};
use confide_protocol::device_list::{DeviceList, ListedDevice, SignedDeviceList, UserIdentity};
use confide_protocol::envelope::Envelope;
use confide_protocol::frames::{
    self, ClientFrame, ErrorCode, InboxItem, PROTOCOL_VERSION, ServerFrame, StoredMessage,
};
use confide_protocol::group_log::{GroupSettings, GroupState, MemberEntry, Op, OpBody, SignedOp};
use confide_protocol::sender_key::SenderChain;
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

/// A point where [`Breakable`] can hold the thread that reaches it, until released.
#[derive(Default)]
pub struct Hold {
    on: AtomicBool,
    held: AtomicUsize,
}

impl Hold {
    /// Holds every thread that reaches the point from now on.
    pub fn close(&self) {
        self.on.store(true, Ordering::SeqCst);
    }

    /// Lets every held thread go on, and no longer holds any.
    pub fn open(&self) {
        self.on.store(false, Ordering::SeqCst);
    }

    /// Waits until a thread is held here.
    pub async fn until_held(&self) {
        tokio::time::timeout(WAIT, async {
            while self.held.load(Ordering::SeqCst) == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await
        .expect("nothing reached the hold");
    }

    /// Called at the point: waits while the hold is closed. (A plain thread sleep: storage
    /// calls are synchronous.)
    fn pass(&self) {
        if self.on.load(Ordering::SeqCst) {
            self.held.fetch_add(1, Ordering::SeqCst);
            while self.on.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            self.held.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Real storage (sled, or PostgreSQL) whose writes behave as [`Mode`] says, with holds.
pub struct Breakable {
    inner: Box<dyn Storage>,
    mode: AtomicU8,
    /// Holds the writer before a batch reaches the database (to line up two nodes' writes).
    pub before_write: Hold,
    /// Holds a reader of group-log ops before it reads (a `sync` reads the ops of its page
    /// between the group's lock and its read of the messages).
    pub before_op_read: Hold,
    /// Holds the writer after the database has applied a batch and before the server hears
    /// it is durable: the window in which sled shows applied data to readers.
    pub after_write: Hold,
}

impl Breakable {
    /// Wraps `inner`, writing normally and holding nothing.
    pub fn new(inner: impl Storage) -> Breakable {
        Breakable {
            inner: Box::new(inner),
            mode: AtomicU8::new(Mode::Normal as u8),
            before_write: Hold::default(),
            before_op_read: Hold::default(),
            after_write: Hold::default(),
        }
    }

    pub fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }
}

impl Storage for Breakable {
    fn reads_only_durable(&self) -> bool {
        self.inner.reads_only_durable()
    }
    fn commit(&self, batch: &[Write]) -> Result<(), StorageError> {
        match self.mode.load(Ordering::SeqCst) {
            1 => Err(StorageError::Full {
                available: 0,
                needed: 1 << 28,
            }),
            2 => panic!("a bug in the storage"),
            _ => {
                self.before_write.pass();
                self.inner.commit(batch)?;
                self.after_write.pass();
                Ok(())
            }
        }
    }
    fn device(&self, d: &DeviceId) -> Result<Option<DeviceRecord>, StorageError> {
        self.inner.device(d)
    }
    fn devices_of_user(&self, u: &UserId) -> Result<Vec<DeviceRecord>, StorageError> {
        self.inner.devices_of_user(u)
    }
    fn device_list(
        &self,
        u: &UserId,
    ) -> Result<Option<confide_protocol::device_list::SignedDeviceList>, StorageError> {
        self.inner.device_list(u)
    }
    fn device_list_chain(
        &self,
        u: &UserId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<confide_protocol::device_list::SignedDeviceList>, StorageError> {
        self.inner.device_list_chain(u, after, limit)
    }
    fn identity_user(
        &self,
        i: &confide_protocol::device_list::IdentityKey,
    ) -> Result<Option<UserId>, StorageError> {
        self.inner.identity_user(i)
    }
    fn unlinked(&self, d: &DeviceId) -> Result<Option<UserId>, StorageError> {
        self.inner.unlinked(d)
    }
    fn message_seq(&self, g: &GroupId, m: &MessageId) -> Result<Option<Seq>, StorageError> {
        self.inner.message_seq(g, m)
    }
    fn groups(&self) -> Result<Vec<GroupId>, StorageError> {
        self.inner.groups()
    }
    fn ops(&self, g: &GroupId, from: u64, limit: usize) -> Result<Vec<SignedOp>, StorageError> {
        self.before_op_read.pass();
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
        Server::start_with(limits, &[]).await
    }

    /// A server whose database holds `records` before it starts (as an earlier server left
    /// them: devices of protocol version 1, say).
    pub async fn start_with(limits: Limits, records: &[Write]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(Breakable::new(
            SledStorage::open_with(&dir.path().join("db"), 1 << 20, 0).unwrap(),
        ));
        if !records.is_empty() {
            storage.commit(records).unwrap();
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let config = Config {
            limits,
            tls: None,
            storage: storage.clone(),
            metrics_listener: None,
            cluster: None,
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

pub fn rng() -> rand_core::UnwrapErr<getrandom::SysRng> {
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
        device_list: None,
        signature: frames::sign_auth(&identity, conn.host(), &nonce),
    };
    conn.send(&frame).await.unwrap();
    let reply = tokio::time::timeout(WAIT, conn.recv())
        .await
        .unwrap()
        .unwrap();
    (reply, conn)
}

/// A registered device and one authenticated connection of it.
pub struct Device {
    pub identity: DeviceIdentity,
    pub user: UserId,
    pub conn: Connection,
    next_id: u64,
}

impl Device {
    /// Registers a new device and user.
    pub async fn register(url: &str) -> Device {
        let identity = DeviceIdentity::generate(&mut rng());
        let user = UserId::random(&mut rng());
        let mut device = Device::connect(url, identity, user).await;
        let frame = ClientFrame::Register {
            id: device.next_id(),
            version: PROTOCOL_VERSION,
            user,
            display_name: "Someone".into(),
            keys: device.identity.public_keys(),
            registration_token: None,
            device_list: None,
            signature: device.sign_challenge().await,
        };
        let reply = device.request(frame).await;
        assert!(
            matches!(reply, ServerFrame::Authenticated { .. }),
            "{reply:?}"
        );
        device
    }

    /// Another authenticated connection of the same device.
    pub async fn again(&self, url: &str) -> Device {
        let secret = self.identity.to_secret_bytes();
        let identity = DeviceIdentity::from_secrets(&secret).unwrap();
        let mut device = Device::connect(url, identity, self.user).await;
        let frame = ClientFrame::Authenticate {
            id: device.next_id(),
            version: PROTOCOL_VERSION,
            device: device.identity.device_id(),
            signature: device.sign_challenge().await,
        };
        let reply = device.request(frame).await;
        assert!(
            matches!(reply, ServerFrame::Authenticated { .. }),
            "{reply:?}"
        );
        device
    }

    /// A connection for `identity` that has not authenticated yet (the challenge is unread).
    pub async fn connect(url: &str, identity: DeviceIdentity, user: UserId) -> Device {
        let conn = Connection::connect(url, &ServerTrust::SystemRoots)
            .await
            .unwrap();
        Device {
            identity,
            user,
            conn,
            next_id: 0,
        }
    }

    /// Reads the challenge and signs it.
    pub async fn sign_challenge(&mut self) -> confide_protocol::Signature {
        let challenge = self.recv().await;
        let ServerFrame::Challenge { nonce, .. } = challenge else {
            panic!("expected a challenge, got {challenge:?}");
        };
        frames::sign_auth(&self.identity, self.conn.host(), &nonce)
    }

    /// A fresh request id.
    pub fn next_id(&mut self) -> RequestId {
        self.next_id += 1;
        RequestId(self.next_id)
    }

    /// The next frame.
    pub async fn recv(&mut self) -> ServerFrame {
        tokio::time::timeout(WAIT, self.conn.recv())
            .await
            .expect("no frame came")
            .unwrap()
    }

    /// Sends `frame` without waiting for the reply.
    pub async fn send(&mut self, frame: &ClientFrame) {
        self.conn.send(frame).await.unwrap();
    }

    /// The reply to request `id`; other frames are dropped.
    pub async fn reply_to(&mut self, id: RequestId) -> ServerFrame {
        loop {
            let frame = self.recv().await;
            if frame.request_id() == Some(id) {
                return frame;
            }
        }
    }

    /// Sends `frame` and waits for its reply.
    pub async fn request(&mut self, frame: ClientFrame) -> ServerFrame {
        let id = frame.request_id();
        self.send(&frame).await;
        self.reply_to(id).await
    }

    /// Creates a group with this device's user as its only member (and facilitator).
    pub async fn create_group(&mut self) -> GroupState {
        let entry = MemberEntry {
            user: self.user,
            display_name: "Someone".into(),
            devices: vec![self.identity.public_keys()],
            device_list: None,
        };
        let now = confide_server::server::now();
        let genesis = Op::genesis(
            GroupId::random(&mut rng()),
            self.identity.device_id(),
            now,
            entry,
            GroupSettings::default(),
        )
        .sign(&self.identity)
        .unwrap();
        let frame = ClientFrame::CreateGroup {
            id: self.next_id(),
            genesis: genesis.clone(),
        };
        let reply = self.request(frame).await;
        assert!(
            matches!(reply, ServerFrame::GroupCreated { .. }),
            "{reply:?}"
        );
        GroupState::from_genesis(&genesis).unwrap()
    }

    /// A message of this device in `state`'s group and epoch.
    pub fn envelope(&self, state: &GroupState, chain: &mut SenderChain, text: &str) -> Envelope {
        Envelope::seal(
            &self.identity,
            state.group(),
            state.epoch_ref(),
            chain,
            text.as_bytes(),
            &mut rng(),
        )
        .unwrap()
    }
}

/// A fresh sender chain.
pub fn chain() -> SenderChain {
    SenderChain::generate(&mut rng())
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

/// A user with an identity key and the list the server holds for it (the device-list tests).
pub struct User {
    pub id: UserId,
    pub identity: UserIdentity,
    pub list: DeviceList,
    pub signed: SignedDeviceList,
}

impl User {
    /// A new user whose first list, made by `first`, lists it alone.
    pub fn new(first: &DeviceIdentity) -> User {
        let id = UserId::random(&mut rng());
        let identity = UserIdentity::generate(&mut rng());
        let list = DeviceList::first(id, &identity, first, confide_server::server::now());
        let signed = identity.sign_list(&list, first).unwrap();
        User {
            id,
            identity,
            list,
            signed,
        }
    }

    /// The successor listing `devices`, made by `by` (not adopted).
    pub fn successor(
        &self,
        by: &DeviceIdentity,
        devices: &[&DeviceIdentity],
    ) -> (DeviceList, SignedDeviceList) {
        let key = self.identity.public();
        let listed = devices
            .iter()
            .map(|d| ListedDevice::new(d, &self.id, &key))
            .collect();
        let list = self.list.successor(
            self.signed.hash(),
            by.device_id(),
            confide_server::server::now(),
            listed,
        );
        let signed = self.identity.sign_list(&list, by).unwrap();
        (list, signed)
    }

    /// A first list (version 1) listing `devices`, made by `by`.
    pub fn first_list(&self, by: &DeviceIdentity, devices: &[&DeviceIdentity]) -> SignedDeviceList {
        let key = self.identity.public();
        let list = DeviceList {
            devices: devices
                .iter()
                .map(|d| ListedDevice::new(d, &self.id, &key))
                .collect(),
            ..DeviceList::first(self.id, &self.identity, by, confide_server::server::now())
        };
        self.identity.sign_list(&list, by).unwrap()
    }

    /// Makes `list` the current one.
    pub fn adopt(&mut self, (list, signed): (DeviceList, SignedDeviceList)) {
        self.list = list;
        self.signed = signed;
    }
}

/// Appends `body` by `identity` to `state`'s group; applies it when the server took it.
pub async fn append(
    device: &mut Device,
    identity: &DeviceIdentity,
    state: &mut GroupState,
    body: OpBody,
) -> ServerFrame {
    let op = state
        .next_op(identity.device_id(), confide_server::server::now(), body)
        .sign(identity)
        .unwrap();
    let id = device.next_id();
    let reply = device
        .request(ClientFrame::AppendOp {
            id,
            group: state.group(),
            op: op.clone(),
        })
        .await;
    if matches!(reply, ServerFrame::OpAppended { .. }) {
        state.apply(&op).unwrap();
    }
    reply
}
