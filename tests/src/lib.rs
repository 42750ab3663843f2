//! Test harness: starts a real `confide-server` in-process on a loopback port with a real
//! self-signed TLS certificate and a real sled database in a temporary directory, and gives
//! tests protocol-level clients that pin that certificate.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod cluster;
pub mod evil;
pub use evil::{EvilHandle, EvilServer, Verdict};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use confide_client::{Connection, InviteOptions, ServerTrust};
use confide_protocol::frames::{self, ClientFrame, PROTOCOL_VERSION, ServerFrame};
use confide_protocol::group_log::{GroupSettings, GroupState, MemberEntry, Op, OpBody, SignedOp};
use confide_protocol::seal::{SealKind, SealedPayload};
use confide_protocol::{DeviceIdentity, GroupId, RequestId, Timestamp, UserId};
use confide_server::{Config, Limits, SledStorage, TlsIdentity};

/// How long a test waits for a frame before failing (a hang is a failure, not a timing claim).
pub const RECV_TIMEOUT: Duration = Duration::from_secs(20);

/// Cryptographic randomness from the OS.
pub fn rng() -> rand_core::UnwrapErr<getrandom::SysRng> {
    rand_core::UnwrapErr(getrandom::SysRng)
}

/// Wall-clock time as a protocol timestamp.
pub fn now() -> Timestamp {
    confide_server::server::now()
}

/// The current epoch of a verified group state, by number and hash.
pub fn epoch_of(state: &GroupState) -> confide_protocol::EpochRef {
    state.epoch_ref()
}

/// A running server.
pub struct TestServer {
    /// `wss://localhost:PORT`.
    pub url: String,
    /// The certificate fingerprint clients pin.
    pub pin: String,
    /// The data directory (database and certificate).
    pub data_dir: PathBuf,
    /// The port, kept across restarts.
    pub port: u16,
    limits: Limits,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), confide_server::ServerError>>>,
    _tmp: Option<tempfile::TempDir>,
    /// The PostgreSQL database the server stores in, when the suite runs on PostgreSQL
    /// ([`TEST_STORAGE_VAR`]); dropped with the last server on it.
    database: Option<Arc<confide_server::storage::test_database::TestDatabase>>,
}

/// Set to `postgres` to run the end-to-end suite on PostgreSQL instead of sled: every server a
/// test starts gets a fresh database (from `CONFIDE_TEST_POSTGRES`, see
/// [`confide_server::storage::test_database`]) and keeps it across restarts. Tests about the
/// embedded database itself (its files, a full or failing disk) stay on sled.
pub const TEST_STORAGE_VAR: &str = "CONFIDE_TEST_STORAGE";

/// Whether this run of the suite stores on PostgreSQL ([`TEST_STORAGE_VAR`]).
pub fn on_postgres() -> bool {
    std::env::var(TEST_STORAGE_VAR).is_ok_and(|v| v == "postgres")
}

impl TestServer {
    /// Starts a server with default limits in a fresh temporary directory.
    pub async fn start() -> TestServer {
        Self::start_with(Limits::default()).await
    }

    /// Starts a server with the given limits in a fresh temporary directory.
    pub async fn start_with(limits: Limits) -> TestServer {
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = tmp.path().to_path_buf();
        let mut server = Self::launch(&data_dir, 0, limits).await;
        server._tmp = Some(tmp);
        server
    }

    /// Starts a server on sled whatever [`TEST_STORAGE_VAR`] says: for tests that rewrite
    /// stored records in place, as someone with the server's disk could (PostgreSQL's
    /// conditional appends refuse to put a record at a seq already taken).
    pub async fn start_on_sled() -> TestServer {
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = tmp.path().to_path_buf();
        let mut server = Self::launch_inner(&data_dir, 0, Limits::default(), true, None).await;
        server._tmp = Some(tmp);
        server
    }

    /// The stopped server's storage, opened again (sled in its data directory, or its
    /// PostgreSQL database), to read what it stored or write to it as someone with access to it.
    pub fn open_storage(&self) -> Arc<dyn confide_server::Storage> {
        match &self.database {
            Some(database) => {
                Arc::new(confide_server::storage::PostgresStorage::connect(database.url()).unwrap())
            }
            None => Arc::new(open_stopped_sled(&self.data_dir)),
        }
    }

    /// Every byte the server keeps, by place: the files of its data directory, and on
    /// PostgreSQL every table of its database.
    pub fn stored_bytes(&self) -> Vec<(String, Vec<u8>)> {
        let mut places: Vec<(String, Vec<u8>)> = read_tree(&self.data_dir)
            .into_iter()
            .map(|(p, b)| (p.display().to_string(), b))
            .collect();
        if let Some(database) = &self.database {
            // Every table as PostgreSQL's binary COPY format, which holds each value's bytes
            // as they are (a text dump would show binary columns as hex and hide them from a
            // search).
            let psql = |sql: &str| {
                let out = std::process::Command::new("psql")
                    .args([database.url(), "-XAtq", "-c", sql])
                    .output()
                    .expect("psql (Debian package postgresql-client)");
                assert!(out.status.success(), "psql {sql}: {out:?}");
                out.stdout
            };
            let tables = psql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'");
            for table in String::from_utf8(tables).unwrap().lines() {
                let rows = psql(&format!("COPY public.{table} TO STDOUT (FORMAT binary)"));
                places.push((format!("database table {table}"), rows));
            }
        }
        places
    }

    /// Starts a server with plain websockets (loopback only), so tests can see exactly the
    /// bytes the server receives and sends.
    pub async fn start_plaintext() -> TestServer {
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = tmp.path().to_path_buf();
        let mut server = Self::launch_with(&data_dir, 0, Limits::default(), false).await;
        server._tmp = Some(tmp);
        server
    }

    /// Starts a server with default limits in a fresh temporary directory, over a database that
    /// `prepare` wrote into first: records a server of this version no longer makes itself,
    /// such as the registration of a device of protocol version 1 (no X-Wing key).
    pub async fn start_prepared(prepare: impl FnOnce(&SledStorage)) -> TestServer {
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = tmp.path().to_path_buf();
        let sled = SledStorage::open(&data_dir.join("db")).unwrap();
        prepare(&sled);
        let mut server =
            Self::launch_storage(&data_dir, 0, Limits::default(), true, Arc::new(sled)).await;
        server._tmp = Some(tmp);
        server
    }

    async fn launch(data_dir: &Path, port: u16, limits: Limits) -> TestServer {
        Self::launch_with(data_dir, port, limits, true).await
    }

    /// Starts a server whose disk can be made to fail (as if full or unwritable) or to stall,
    /// through the returned [`DiskFaults`].
    pub async fn start_with_disk_faults(limits: Limits) -> (TestServer, Arc<DiskFaults>) {
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = tmp.path().to_path_buf();
        let faults = Arc::new(DiskFaults::default());
        let mut server = Self::launch_inner(&data_dir, 0, limits, true, Some(faults.clone())).await;
        server._tmp = Some(tmp);
        (server, faults)
    }

    async fn launch_with(data_dir: &Path, port: u16, limits: Limits, use_tls: bool) -> TestServer {
        if on_postgres() {
            let database = confide_server::storage::test_database::try_fresh_database()
                .unwrap_or_else(|e| {
                    panic!("{TEST_STORAGE_VAR}=postgres, but PostgreSQL is not reachable: {e}")
                });
            return Self::launch_postgres(data_dir, port, limits, use_tls, Arc::new(database))
                .await;
        }
        Self::launch_inner(data_dir, port, limits, use_tls, None).await
    }

    async fn launch_postgres(
        data_dir: &Path,
        port: u16,
        limits: Limits,
        use_tls: bool,
        database: Arc<confide_server::storage::test_database::TestDatabase>,
    ) -> TestServer {
        let storage = confide_server::storage::PostgresStorage::connect(database.url()).unwrap();
        let mut server =
            Self::launch_storage(data_dir, port, limits, use_tls, Arc::new(storage)).await;
        server.database = Some(database);
        server
    }

    /// Starts a server whose data lives in `data_dir` (for example a small filesystem the test
    /// mounted), writing only while at least `min_free_bytes` stay free on it.
    pub async fn start_in(data_dir: &Path, limits: Limits, min_free_bytes: u64) -> TestServer {
        let sled = SledStorage::open_with(
            &data_dir.join("db"),
            confide_server::storage::MIN_CACHE_BYTES,
            min_free_bytes,
        )
        .unwrap();
        Self::launch_storage(data_dir, 0, limits, true, Arc::new(sled)).await
    }

    async fn launch_inner(
        data_dir: &Path,
        port: u16,
        limits: Limits,
        use_tls: bool,
        disk_fault: Option<Arc<DiskFaults>>,
    ) -> TestServer {
        let sled = Arc::new(SledStorage::open(&data_dir.join("db")).unwrap());
        let storage: Arc<dyn confide_server::Storage> = match disk_fault {
            Some(faults) => Arc::new(FaultyDisk {
                inner: sled,
                faults,
            }),
            None => sled,
        };
        Self::launch_storage(data_dir, port, limits, use_tls, storage).await
    }

    /// Starts one node of a cluster ([`confide_server::cluster`]): a server on `storage` (which
    /// the other nodes share) that tells the others over NATS what it stores, with the TLS
    /// certificate kept in `cert_dir` — the same for every node, as behind a load balancer.
    pub async fn start_node(
        cert_dir: &Path,
        storage: Arc<dyn confide_server::Storage>,
        cluster: confide_server::cluster::ClusterConfig,
    ) -> TestServer {
        Self::launch_cluster(cert_dir, 0, Limits::default(), true, storage, Some(cluster)).await
    }

    async fn launch_storage(
        data_dir: &Path,
        port: u16,
        limits: Limits,
        use_tls: bool,
        storage: Arc<dyn confide_server::Storage>,
    ) -> TestServer {
        Self::launch_cluster(data_dir, port, limits, use_tls, storage, None).await
    }

    async fn launch_cluster(
        data_dir: &Path,
        port: u16,
        limits: Limits,
        use_tls: bool,
        storage: Arc<dyn confide_server::Storage>,
        cluster: Option<confide_server::cluster::ClusterConfig>,
    ) -> TestServer {
        let identity = TlsIdentity::dev(data_dir).unwrap();
        let pin = identity.fingerprint();
        let tls = identity.server_config().unwrap();
        let tls = use_tls.then_some(tls);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let config = Config {
            limits: limits.clone(),
            tls,
            storage,
            metrics_listener: None,
            cluster,
        };
        let task = tokio::spawn(async move {
            confide_server::run(listener, config, async move {
                let _ = stop_rx.await;
            })
            .await
        });
        TestServer {
            url: if use_tls {
                format!("wss://localhost:{port}")
            } else {
                format!("ws://127.0.0.1:{port}")
            },
            pin,
            data_dir: data_dir.to_path_buf(),
            port,
            limits,
            stop: Some(stop_tx),
            task: Some(task),
            _tmp: None,
            database: None,
        }
    }

    /// Graceful shutdown; waits until every write is finished and the database is closed.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    /// Waits until the server stops by itself (without being asked to), and returns why.
    pub async fn exited(&mut self) -> Result<(), confide_server::ServerError> {
        let task = self.task.take().expect("the server was already stopped");
        tokio::time::timeout(RECV_TIMEOUT, task)
            .await
            .expect("the server did not stop by itself")
            .unwrap()
    }

    /// Stops and starts again on the same port and data directory.
    pub async fn restart(&mut self) {
        self.stop().await;
        let tmp = self._tmp.take();
        if let Some(database) = self.database.take() {
            let tls = self.url.starts_with("wss://");
            *self = Self::launch_postgres(
                &self.data_dir,
                self.port,
                self.limits.clone(),
                tls,
                database,
            )
            .await;
            self._tmp = tmp;
            return;
        }
        let sled = open_stopped_sled(&self.data_dir);
        let tls = self.url.starts_with("wss://");
        // On sled again, whatever `TEST_STORAGE_VAR` says: its data is here.
        *self = Self::launch_storage(
            &self.data_dir,
            self.port,
            self.limits.clone(),
            tls,
            Arc::new(sled),
        )
        .await;
        self._tmp = tmp;
    }

    /// The trust setting for clients.
    pub fn trust(&self) -> ServerTrust {
        ServerTrust::Pinned(self.pin.clone())
    }
}

/// Opens the sled database in a stopped server's `data_dir`. sled releases its file lock when
/// the last handle drops, and its flusher thread may hold the lock a moment after the server
/// stopped, so this retries briefly — and hands back the handle that opened, since probing,
/// dropping and opening again would race the flusher a second time.
pub fn open_stopped_sled(data_dir: &Path) -> SledStorage {
    let path = data_dir.join("db");
    let mut last_error = None;
    for _ in 0..100 {
        match SledStorage::open(&path) {
            Ok(sled) => return sled,
            Err(e) => last_error = Some(e),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("database still locked five seconds after shutdown: {last_error:?}")
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A protocol-level client: one device, one connection, requests and live frames.
pub struct RawClient {
    /// The device's keys.
    pub identity: DeviceIdentity,
    /// The user.
    pub user: UserId,
    /// Display name.
    pub name: String,
    /// The live connection.
    pub conn: Connection,
    /// Frames received while waiting for a reply, in arrival order.
    pub pending: Vec<ServerFrame>,
    /// The server's challenge nonce for this connection.
    pub nonce: [u8; 32],
    next_id: u64,
}

impl RawClient {
    /// Connects without authenticating, and reads the challenge.
    pub async fn connect_as(
        server: &TestServer,
        identity: DeviceIdentity,
        user: UserId,
        name: &str,
    ) -> RawClient {
        let mut conn = Connection::connect(&server.url, &server.trust())
            .await
            .unwrap();
        let challenge = tokio::time::timeout(RECV_TIMEOUT, conn.recv())
            .await
            .unwrap()
            .unwrap();
        let ServerFrame::Challenge { nonce, version, .. } = challenge else {
            panic!("expected a challenge, got {challenge:?}")
        };
        assert_eq!(version, PROTOCOL_VERSION);
        RawClient {
            identity,
            user,
            name: name.into(),
            conn,
            pending: Vec::new(),
            nonce,
            next_id: 1,
        }
    }

    /// A new device and user, registered.
    pub async fn register(server: &TestServer, name: &str) -> RawClient {
        let identity = DeviceIdentity::generate(&mut rng());
        let user = UserId::random(&mut rng());
        let mut client = Self::connect_as(server, identity, user, name).await;
        let id = client.next_id();
        let frame = client.register_frame(id);
        let reply = client.send_request(&frame).await;
        assert!(
            matches!(reply, ServerFrame::Authenticated { .. }),
            "registration failed: {reply:?}"
        );
        client
    }

    /// The same device, on a new authenticated connection.
    pub async fn reconnect(&self, server: &TestServer) -> RawClient {
        let copy = self.clone_identity();
        let mut client = Self::connect_as(server, copy, self.user, &self.name).await;
        let reply = client.authenticate().await;
        assert!(
            matches!(reply, ServerFrame::Authenticated { .. }),
            "authentication failed: {reply:?}"
        );
        client
    }

    /// Closes the connection, keeping the device to reconnect later.
    pub async fn close(self) -> OfflineDevice {
        self.conn.close().await;
        OfflineDevice {
            identity: self.identity,
            user: self.user,
            name: self.name,
        }
    }

    /// A copy of the identity (tests only: real clients never copy secrets around).
    pub fn clone_identity(&self) -> DeviceIdentity {
        let exported = self
            .identity
            .export(
                b"test",
                confide_protocol::identity::KdfParams::INSECURE_FOR_TESTS,
                &mut rng(),
            )
            .unwrap();
        DeviceIdentity::import(&exported, b"test").unwrap()
    }

    /// The register frame answering this connection's challenge.
    pub fn register_frame(&self, id: RequestId) -> ClientFrame {
        ClientFrame::Register {
            id,
            version: PROTOCOL_VERSION,
            user: self.user,
            display_name: self.name.clone(),
            keys: self.identity.public_keys(),
            registration_token: None,
            device_list: None,
            signature: frames::sign_auth(&self.identity, self.conn.host(), &self.nonce),
        }
    }

    /// Authenticates this connection.
    pub async fn authenticate(&mut self) -> ServerFrame {
        let signature = frames::sign_auth(&self.identity, self.conn.host(), &self.nonce);
        let device = self.identity.device_id();
        self.request(|id| ClientFrame::Authenticate {
            id,
            version: PROTOCOL_VERSION,
            device,
            signature,
        })
        .await
    }

    /// A fresh request id.
    pub fn next_id(&mut self) -> RequestId {
        self.next_id += 1;
        RequestId(self.next_id)
    }

    /// Receives the next frame, failing the test if none comes.
    pub async fn recv(&mut self) -> ServerFrame {
        if !self.pending.is_empty() {
            return self.pending.remove(0);
        }
        tokio::time::timeout(RECV_TIMEOUT, self.conn.recv())
            .await
            .expect("timed out waiting for a frame")
            .unwrap()
    }

    /// Sends a request and returns the reply with its id; other frames are kept in `pending`.
    pub async fn request(&mut self, make: impl FnOnce(RequestId) -> ClientFrame) -> ServerFrame {
        let id = self.next_id();
        let frame = make(id);
        self.conn.send(&frame).await.unwrap();
        self.reply_to(id).await
    }

    /// Sends a prepared request and returns its reply.
    pub async fn send_request(&mut self, frame: &ClientFrame) -> ServerFrame {
        self.conn.send(frame).await.unwrap();
        self.reply_to(frame.request_id()).await
    }

    /// Waits for the reply to request `id`.
    pub async fn reply_to(&mut self, id: RequestId) -> ServerFrame {
        if let Some(pos) = self.pending.iter().position(|f| f.request_id() == Some(id)) {
            return self.pending.remove(pos);
        }
        loop {
            let frame = tokio::time::timeout(RECV_TIMEOUT, self.conn.recv())
                .await
                .expect("timed out waiting for a reply")
                .unwrap();
            if frame.request_id() == Some(id) {
                return frame;
            }
            self.pending.push(frame);
        }
    }

    /// Asks for the first page (up to `limit` ops and messages) of `group`, with `invite` as
    /// the proof of a device that is not a member; the server's reply.
    pub async fn sync_page(
        &mut self,
        group: GroupId,
        limit: u32,
        invite: Option<frames::InviteProof>,
    ) -> ServerFrame {
        self.request(|id| ClientFrame::Sync {
            id,
            group,
            after_op_seq: None,
            after_seq: confide_protocol::Seq(0),
            limit,
            invite,
        })
        .await
    }

    /// The first page (up to 50 ops and 50 messages) of `group` from the beginning.
    pub async fn sync_from_start(
        &mut self,
        group: GroupId,
    ) -> (Vec<SignedOp>, Vec<frames::StoredMessage>) {
        match self.sync_page(group, 50, None).await {
            ServerFrame::SyncPage { ops, messages, .. } => (ops, messages),
            other => panic!("expected a sync page, got {other:?}"),
        }
    }

    /// Sends sealed payloads; the server's reply.
    pub async fn send_sealed(&mut self, items: Vec<SealedPayload>) -> ServerFrame {
        self.request(|id| ClientFrame::SendSealed { id, items })
            .await
    }

    /// Waits for the next live frame matching `pred`, keeping others.
    pub async fn wait_for(&mut self, pred: impl Fn(&ServerFrame) -> bool) -> ServerFrame {
        if let Some(pos) = self.pending.iter().position(&pred) {
            return self.pending.remove(pos);
        }
        loop {
            let frame = tokio::time::timeout(RECV_TIMEOUT, self.conn.recv())
                .await
                .expect("timed out waiting for a frame")
                .unwrap();
            if pred(&frame) {
                return frame;
            }
            self.pending.push(frame);
        }
    }

    /// This client's member entry.
    pub fn member_entry(&self) -> MemberEntry {
        MemberEntry {
            user: self.user,
            display_name: self.name.clone(),
            devices: vec![self.identity.public_keys()],
            device_list: None,
        }
    }

    /// Creates a group with this client as facilitator; returns the verified state.
    /// A genesis op of a new group with this device as its facilitator.
    pub fn sign_genesis(&self) -> SignedOp {
        Op::genesis(
            GroupId::random(&mut rng()),
            self.identity.device_id(),
            now(),
            self.member_entry(),
            GroupSettings::default(),
        )
        .sign(&self.identity)
        .unwrap()
    }

    /// Creates a group with this client as facilitator; returns the verified state.
    pub async fn create_group(&mut self) -> GroupState {
        let genesis = self.sign_genesis();
        let reply = self
            .request(|id| ClientFrame::CreateGroup {
                id,
                genesis: genesis.clone(),
            })
            .await;
        assert!(
            matches!(reply, ServerFrame::GroupCreated { .. }),
            "create_group failed: {reply:?}"
        );
        GroupState::from_genesis(&genesis).unwrap()
    }

    /// Signs `body` as the next op of `state` and appends it; applies it to `state` on success.
    pub async fn append(&mut self, state: &mut GroupState, body: OpBody) -> ServerFrame {
        let op = self.sign_next(state, body);
        let group = state.group();
        let reply = self
            .request(|id| ClientFrame::AppendOp {
                id,
                group,
                op: op.clone(),
            })
            .await;
        if matches!(reply, ServerFrame::OpAppended { .. }) {
            state.apply(&op).unwrap();
        }
        reply
    }

    /// Signs `body` as the next op of `state`.
    pub fn sign_next(&self, state: &GroupState, body: OpBody) -> SignedOp {
        state
            .next_op(self.identity.device_id(), now(), body)
            .sign(&self.identity)
            .unwrap()
    }
}

/// A registered device with no open connection.
pub struct OfflineDevice {
    /// The device's keys.
    pub identity: DeviceIdentity,
    /// The user.
    pub user: UserId,
    /// Display name.
    pub name: String,
}

impl OfflineDevice {
    /// Connects and authenticates.
    pub async fn connect(self, server: &TestServer) -> RawClient {
        let mut client = RawClient::connect_as(server, self.identity, self.user, &self.name).await;
        let reply = client.authenticate().await;
        assert!(
            matches!(reply, ServerFrame::Authenticated { .. }),
            "authentication failed: {reply:?}"
        );
        client
    }
}

/// A TCP proxy on loopback that forwards to `target_port` and records every byte in both
/// directions: what crosses the wire.
pub struct RecordingProxy {
    /// The port clients connect to.
    pub port: u16,
    /// Everything seen so far.
    pub bytes: Arc<std::sync::Mutex<Vec<u8>>>,
}

impl RecordingProxy {
    /// Starts the proxy.
    pub async fn start(target_port: u16) -> RecordingProxy {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let bytes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = bytes.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let Ok(outbound) = tokio::net::TcpStream::connect(("127.0.0.1", target_port)).await
                else {
                    continue;
                };
                let (ri, wi) = inbound.into_split();
                let (ro, wo) = outbound.into_split();
                for (mut from, mut to, record) in [
                    (
                        Box::new(ri) as Box<dyn tokio::io::AsyncRead + Send + Unpin>,
                        Box::new(wo) as Box<dyn tokio::io::AsyncWrite + Send + Unpin>,
                        record.clone(),
                    ),
                    (Box::new(ro), Box::new(wi), record.clone()),
                ] {
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let n = match from.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            record.lock().unwrap().extend_from_slice(&buf[..n]);
                            if to.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown().await;
                    });
                }
            }
        });
        RecordingProxy { port, bytes }
    }
}

/// Every file below `dir`, read whole.
pub fn read_tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(read_tree(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path, bytes));
        }
    }
    out
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// A person using a real [`confide_client::Client`] with its own encrypted store.
pub struct TestUser {
    /// The client.
    pub client: confide_client::Client,
    /// Its events.
    pub events: confide_client::Events,
    /// The client configuration (kept to reopen the store).
    pub config: confide_client::ClientConfig,
    /// The store's directory.
    pub dir: tempfile::TempDir,
    /// The identity's secret bytes, to search for on disk and on the wire.
    pub secret: Vec<u8>,
}

/// The passphrase every test user's store uses.
pub const PASSPHRASE: &[u8] = b"correct horse battery staple";

impl TestUser {
    /// Registers a new user with the server at `url`.
    pub async fn register(url: &str, trust: confide_client::ServerTrust, name: &str) -> TestUser {
        let dir = tempfile::tempdir().unwrap();
        let mut config = confide_client::ClientConfig::new(url, trust, dir.path().join("store"));
        config.kdf = confide_protocol::identity::KdfParams::INSECURE_FOR_TESTS;
        let identity = DeviceIdentity::generate(&mut rng());
        let secret = identity.to_secret_bytes().to_vec();
        let (client, events) = confide_client::Client::register_with_identity(
            config.clone(),
            name,
            PASSPHRASE,
            identity,
        )
        .await
        .unwrap();
        TestUser {
            client,
            events,
            config,
            dir,
            secret,
        }
    }

    /// Registers with a [`TestServer`].
    pub async fn new(server: &TestServer, name: &str) -> TestUser {
        Self::register(&server.url, server.trust(), name).await
    }

    /// Links a new device to this person the way people do (PROTOCOL.md §3.7), through the
    /// server at `url`: the new device shows a code, this one enters it, both show the same
    /// numbers, the person's name and their safety-number half, and both confirm.
    pub async fn link_new_device(&self, url: &str, trust: confide_client::ServerTrust) -> TestUser {
        let dir = tempfile::tempdir().unwrap();
        let mut config = confide_client::ClientConfig::new(url, trust, dir.path().join("store"));
        config.kdf = confide_protocol::identity::KdfParams::INSECURE_FOR_TESTS;
        let mut new = confide_client::Client::link_new_device(config.clone())
            .await
            .unwrap();
        let code = new.code();
        let (check, offer) = tokio::join!(self.client.link_start(&code), new.wait_for_offer());
        let (check, offer) = (check.unwrap(), offer.unwrap());
        assert_eq!(check.sas, offer.sas, "both screens show the same numbers");
        assert_eq!(offer.display_name, self.client.display_name());
        let own = self.client.own_devices().await.unwrap();
        assert_eq!(
            offer.fingerprint, own.fingerprint,
            "the new device shows the person's own safety-number half"
        );
        let (confirmed, finished) =
            tokio::join!(self.client.link_confirm(), new.finish(PASSPHRASE));
        let (client, events) = finished.unwrap();
        assert_eq!(confirmed.unwrap(), client.device());
        assert_eq!(check.device, client.device());
        TestUser {
            client,
            events,
            config,
            dir,
            secret: Vec::new(),
        }
    }

    /// Waits until this unlinked device learns it: `Event::DeviceUnlinked`, or the server
    /// refusing it with `device_unlinked`. Returns every event seen.
    pub async fn wait_unlinked(&mut self) -> Vec<confide_client::Event> {
        use confide_client::Event;
        let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
        let mut seen = Vec::new();
        loop {
            while let Some(event) = self.events.try_next() {
                let done = matches!(event, Event::DeviceUnlinked { .. });
                seen.push(event);
                if done {
                    return seen;
                }
            }
            if let Ok(Err(e)) =
                tokio::time::timeout(Duration::from_millis(500), self.client.sync()).await
                && e.server_code() == Some(confide_protocol::frames::ErrorCode::DeviceUnlinked)
            {
                return seen;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the unlinked device never learned it; events: {seen:?}"
            );
            if let Ok(Some(event)) =
                tokio::time::timeout(Duration::from_millis(100), self.events.next()).await
            {
                let done = matches!(event, Event::DeviceUnlinked { .. });
                seen.push(event);
                if done {
                    return seen;
                }
            }
        }
    }

    /// Stops the client (offline).
    pub async fn go_offline(&mut self) {
        self.client.shutdown().await;
        while self.events.next().await.is_some() {}
    }

    /// Opens the store again and reconnects.
    pub async fn come_back(&mut self) {
        let (client, events) = confide_client::Client::open(self.config.clone(), PASSPHRASE)
            .await
            .unwrap();
        self.client = client;
        self.events = events;
    }

    /// Waits for an event matching `pred`, returning it and every event seen before it.
    pub async fn wait_event(
        &mut self,
        pred: impl Fn(&confide_client::Event) -> bool,
    ) -> (confide_client::Event, Vec<confide_client::Event>) {
        let mut before = Vec::new();
        loop {
            let event = tokio::time::timeout(RECV_TIMEOUT, self.events.next())
                .await
                .expect("timed out waiting for an event")
                .expect("client stopped");
            if pred(&event) {
                return (event, before);
            }
            before.push(event);
        }
    }

    /// Waits until this device's verified log of `group` lists `n` members: it has seen every
    /// join so far, so what it sends next is readable by all of them (a message sent before the
    /// sender saw a join is, by design, not readable by the joiner).
    pub async fn wait_members(&mut self, group: GroupId, n: usize) {
        let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
        loop {
            let members = self.client.members(group).await.unwrap();
            if members.len() >= n {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {} of {n} members seen",
                members.len()
            );
            let _ = tokio::time::timeout(Duration::from_millis(100), self.events.next()).await;
        }
    }

    /// Waits until this device's history of `group` holds at least `n` messages, and returns it.
    pub async fn wait_history(
        &mut self,
        group: GroupId,
        n: usize,
    ) -> Vec<confide_client::ChatMessage> {
        let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
        loop {
            let history = self.client.history(group, None, 10_000).await.unwrap();
            if history.len() >= n {
                return history;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {} of {n} messages arrived",
                history.len()
            );
            // Process whatever arrived, then look again.
            let _ = tokio::time::timeout(Duration::from_millis(100), self.events.next()).await;
        }
    }
}

/// The error code of an error frame, if it is one.
pub fn error_code(frame: &ServerFrame) -> Option<confide_protocol::frames::ErrorCode> {
    match frame {
        ServerFrame::Error { code, .. } => Some(*code),
        _ => None,
    }
}

/// A facilitator and a member in one group, at the protocol level (after an `add`).
pub async fn raw_group_of_two(server: &TestServer) -> (RawClient, RawClient, GroupState) {
    let mut alice = RawClient::register(server, "Alice").await;
    let bob = RawClient::register(server, "Bob").await;
    let mut state = alice.create_group().await;
    let add = OpBody::Add {
        member: bob.member_entry(),
        invite: None,
        invite_sig: None,
        invite_device: None,
    };
    let reply = alice.append(&mut state, add).await;
    assert!(matches!(reply, ServerFrame::OpAppended { .. }), "{reply:?}");
    (alice, bob, state)
}

/// Registers one library client per name with the server at `url`; the first creates a group
/// and the others join it with one invite.
pub async fn users_in_group(
    url: &str,
    trust: confide_client::ServerTrust,
    names: &[&str],
) -> (Vec<TestUser>, GroupId) {
    let people: Vec<(&str, &str)> = names.iter().map(|name| (url, *name)).collect();
    users_in_group_at(trust, &people).await
}

/// Like [`users_in_group`], with each person on the server (or cluster node) of their own:
/// `people` are `(url, name)`.
pub async fn users_in_group_at(
    trust: confide_client::ServerTrust,
    people: &[(&str, &str)],
) -> (Vec<TestUser>, GroupId) {
    let mut users = Vec::new();
    for (url, name) in people {
        users.push(TestUser::register(url, trust.clone(), name).await);
    }
    let group = users[0].client.create_group().await.unwrap();
    let invite = users[0]
        .client
        .create_invite(
            group,
            InviteOptions::new()
                .max_uses(10)
                .valid_for(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    let link = invite.to_link();
    for user in users.iter().skip(1) {
        let invite = confide_client::Invite::from_link(&link).unwrap();
        assert_eq!(
            user.client.join(&invite, None).await.unwrap(),
            confide_client::JoinOutcome::Joined(group)
        );
    }
    // Everyone has seen everyone join before anyone speaks, as people in a group would.
    for user in users.iter_mut() {
        user.wait_members(group, people.len()).await;
    }
    (users, group)
}

/// Seals `payload` of `kind` from `from` to `to` in the current epoch of `state`'s group.
pub fn seal_to(
    from: &DeviceIdentity,
    to: &confide_protocol::DeviceKeys,
    kind: SealKind,
    state: &GroupState,
    payload: &[u8],
) -> SealedPayload {
    confide_protocol::seal::seal(
        from,
        to,
        kind,
        state.group(),
        state.epoch_ref(),
        payload,
        &mut rng(),
    )
    .unwrap()
}

/// What a test can do to the disk of a server started with
/// [`TestServer::start_with_disk_faults`].
#[derive(Default)]
pub struct DiskFaults {
    /// While set, every durable write fails — a disk that is full or unwritable.
    pub full: std::sync::atomic::AtomicBool,
    /// While set, durable writes wait (before anything is written) — a disk that stalls, so that
    /// a test can act while a write is in flight.
    pub stalled: std::sync::atomic::AtomicBool,
    /// How many durable writes are waiting on the stall right now.
    pub waiting: std::sync::atomic::AtomicUsize,
    /// While set, durable writes are written and then reported as failed — a flush that fails
    /// after the database has applied the batch, so the server cannot know what is durable.
    pub fail_after_write: std::sync::atomic::AtomicBool,
    /// While set, durable writes fail as sled's do after a write error: the storage says it
    /// cannot write again until the server restarts.
    pub broken: std::sync::atomic::AtomicBool,
    /// While set, durable writes wait *after* the database has the batch and before the server
    /// hears that it is durable — the window in which sled shows applied data to readers.
    pub stalled_after_write: std::sync::atomic::AtomicBool,
}

impl DiskFaults {
    /// Waits until a durable write is held by the stall.
    pub async fn until_a_write_is_stalled(&self) {
        tokio::time::timeout(RECV_TIMEOUT, async {
            while self.waiting.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await
        .expect("no write reached the stalled disk");
    }
}

/// The real sled storage, with the faults of [`DiskFaults`]. Reads keep working.
pub struct FaultyDisk {
    inner: Arc<SledStorage>,
    faults: Arc<DiskFaults>,
}

impl confide_server::Storage for FaultyDisk {
    fn reads_only_durable(&self) -> bool {
        self.inner.reads_only_durable()
    }
    fn commit(
        &self,
        batch: &[confide_server::storage::Write],
    ) -> Result<(), confide_server::storage::StorageError> {
        use std::sync::atomic::Ordering::SeqCst;
        if self.faults.stalled.load(SeqCst) {
            self.faults.waiting.fetch_add(1, SeqCst);
            while self.faults.stalled.load(SeqCst) {
                std::thread::sleep(Duration::from_millis(2));
            }
            self.faults.waiting.fetch_sub(1, SeqCst);
        }
        if self.faults.broken.load(SeqCst) {
            return Err(confide_server::storage::StorageError::NeedsRestart(
                "Input/output error (os error 5)".into(),
            ));
        }
        if self.faults.full.load(SeqCst) {
            return Err(confide_server::storage::StorageError::Backend(
                "No space left on device (os error 28)".into(),
            ));
        }
        self.inner.commit(batch)?;
        if self.faults.stalled_after_write.load(SeqCst) {
            self.faults.waiting.fetch_add(1, SeqCst);
            while self.faults.stalled_after_write.load(SeqCst) {
                std::thread::sleep(Duration::from_millis(2));
            }
            self.faults.waiting.fetch_sub(1, SeqCst);
        }
        if self.faults.fail_after_write.load(SeqCst) {
            return Err(confide_server::storage::StorageError::Backend(
                "Input/output error (os error 5)".into(),
            ));
        }
        Ok(())
    }
    fn device(
        &self,
        d: &confide_protocol::DeviceId,
    ) -> Result<Option<confide_server::storage::DeviceRecord>, confide_server::storage::StorageError>
    {
        self.inner.device(d)
    }
    fn devices_of_user(
        &self,
        u: &UserId,
    ) -> Result<Vec<confide_server::storage::DeviceRecord>, confide_server::storage::StorageError>
    {
        self.inner.devices_of_user(u)
    }
    fn device_list(
        &self,
        u: &UserId,
    ) -> Result<
        Option<confide_protocol::device_list::SignedDeviceList>,
        confide_server::storage::StorageError,
    > {
        self.inner.device_list(u)
    }
    fn device_list_chain(
        &self,
        u: &UserId,
        after: u64,
        limit: usize,
    ) -> Result<
        Vec<confide_protocol::device_list::SignedDeviceList>,
        confide_server::storage::StorageError,
    > {
        self.inner.device_list_chain(u, after, limit)
    }
    fn identity_user(
        &self,
        identity: &confide_protocol::device_list::IdentityKey,
    ) -> Result<Option<UserId>, confide_server::storage::StorageError> {
        self.inner.identity_user(identity)
    }
    fn unlinked(
        &self,
        device: &confide_protocol::DeviceId,
    ) -> Result<Option<UserId>, confide_server::storage::StorageError> {
        self.inner.unlinked(device)
    }
    fn message_seq(
        &self,
        g: &GroupId,
        m: &confide_protocol::MessageId,
    ) -> Result<Option<confide_protocol::Seq>, confide_server::storage::StorageError> {
        self.inner.message_seq(g, m)
    }
    fn groups(&self) -> Result<Vec<GroupId>, confide_server::storage::StorageError> {
        self.inner.groups()
    }
    fn ops(
        &self,
        g: &GroupId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<SignedOp>, confide_server::storage::StorageError> {
        self.inner.ops(g, from, limit)
    }
    fn messages(
        &self,
        g: &GroupId,
        after: confide_protocol::Seq,
        limit: usize,
    ) -> Result<Vec<confide_protocol::frames::StoredMessage>, confide_server::storage::StorageError>
    {
        self.inner.messages(g, after, limit)
    }
    fn last_seq(
        &self,
        g: &GroupId,
    ) -> Result<confide_protocol::Seq, confide_server::storage::StorageError> {
        self.inner.last_seq(g)
    }
    fn inbox(
        &self,
        d: &confide_protocol::DeviceId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<confide_protocol::frames::InboxItem>, confide_server::storage::StorageError>
    {
        self.inner.inbox(d, after, limit)
    }
    fn inbox_len(
        &self,
        d: &confide_protocol::DeviceId,
    ) -> Result<usize, confide_server::storage::StorageError> {
        self.inner.inbox_len(d)
    }
    fn inbox_len_from(
        &self,
        d: &confide_protocol::DeviceId,
        share: &confide_protocol::DeviceId,
    ) -> Result<usize, confide_server::storage::StorageError> {
        self.inner.inbox_len_from(d, share)
    }
    fn next_inbox_id(&self) -> Result<u64, confide_server::storage::StorageError> {
        self.inner.next_inbox_id()
    }
}
