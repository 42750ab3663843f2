//! What the several-node tests need besides servers: the real PostgreSQL and NATS the machine
//! runs (named by `CONFIDE_TEST_POSTGRES` and `CONFIDE_TEST_NATS`, which default to the local
//! services), private NATS servers a test may stop, and a TCP load balancer in front of the
//! nodes, as a deployment has.
//!
//! Tests that use them fail — never skip — when the services cannot be reached.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The NATS server the tests use: `CONFIDE_TEST_NATS`, or the local one.
pub fn nats_url() -> String {
    std::env::var("CONFIDE_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// A subject prefix no other test run uses, so that runs sharing one NATS server never hear
/// each other.
pub fn unique_prefix() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).unwrap();
    format!("confide-test-{}", hex::encode(bytes))
}

/// Fails the test, with what to do, unless the NATS server at `url` answers.
pub async fn require_nats(url: &str) {
    let address = url.trim_start_matches("nats://");
    let reachable = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(address),
    )
    .await;
    assert!(
        matches!(reachable, Ok(Ok(_))),
        "NATS is not reachable at {url}: start it (nats-server -js) or set CONFIDE_TEST_NATS"
    );
}

/// A NATS server of the test's own (Debian's `nats-server`), which it can stop and start again
/// on the same port.
pub struct PrivateNats {
    /// `nats://127.0.0.1:PORT`.
    pub url: String,
    port: u16,
    child: Option<std::process::Child>,
}

impl PrivateNats {
    /// Starts one on a free port and waits until it accepts connections.
    pub async fn start() -> PrivateNats {
        let port = free_port();
        let mut nats = PrivateNats {
            url: format!("nats://127.0.0.1:{port}"),
            port,
            child: None,
        };
        nats.resume().await;
        nats
    }

    /// Kills it (as a crash would).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on its port.
    pub async fn resume(&mut self) {
        let child = std::process::Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server is not installed (Debian package nats-server)");
        self.child = Some(child);
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("nats-server did not start on port {}", self.port);
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A TCP load balancer on loopback: each new connection goes to the next node in turn that
/// accepts it (a node that refuses, because it is down, is skipped), as any TCP balancer in front
/// of a deployment does. Connections are not moved when their node dies: they break, and the
/// clients reconnect, through the balancer, to a node that is up.
pub struct Balancer {
    /// The port clients connect to.
    pub port: u16,
    nodes: Arc<Mutex<Vec<SocketAddr>>>,
    /// Connections open through it, by node.
    open: Arc<Mutex<std::collections::HashMap<SocketAddr, usize>>>,
}

impl Balancer {
    /// Starts one in front of `nodes`.
    pub async fn start(nodes: Vec<SocketAddr>) -> Balancer {
        use tokio::io::copy_bidirectional;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let nodes = Arc::new(Mutex::new(nodes));
        let open = Arc::new(Mutex::new(std::collections::HashMap::new()));
        let (pool, counts) = (nodes.clone(), open.clone());
        tokio::spawn(async move {
            let mut next = 0usize;
            while let Ok((mut inbound, _)) = listener.accept().await {
                let candidates = pool.lock().unwrap().clone();
                let counts = counts.clone();
                let start = next;
                next = next.wrapping_add(1);
                tokio::spawn(async move {
                    for i in 0..candidates.len() {
                        let node = candidates[(start + i) % candidates.len()];
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(node).await {
                            *counts.lock().unwrap().entry(node).or_insert(0) += 1;
                            let _ = copy_bidirectional(&mut inbound, &mut outbound).await;
                            *counts.lock().unwrap().entry(node).or_insert(1) -= 1;
                            return;
                        }
                    }
                });
            }
        });
        Balancer { port, nodes, open }
    }

    /// How many connections through it to `node` are open now.
    pub fn open_to(&self, node: SocketAddr) -> usize {
        self.open.lock().unwrap().get(&node).copied().unwrap_or(0)
    }

    /// The nodes it balances over now.
    pub fn nodes(&self) -> Vec<SocketAddr> {
        self.nodes.lock().unwrap().clone()
    }
}

/// A PostgreSQL server of the test's own (Debian's PostgreSQL binaries, a fresh cluster in a
/// temporary directory, trust authentication on loopback), which it can stop and start again.
pub struct PrivatePostgres {
    port: u16,
    bin: std::path::PathBuf,
    dir: tempfile::TempDir,
    running: bool,
}

impl PrivatePostgres {
    /// Creates a cluster and starts it on a free port.
    pub fn start() -> PrivatePostgres {
        let bin = postgres_bin_dir();
        let dir = tempfile::tempdir().unwrap();
        let postgres = PrivatePostgres {
            port: free_port(),
            bin,
            dir,
            running: false,
        };
        // PostgreSQL refuses to run as root: as root, the cluster belongs to `postgres`.
        if is_root() {
            let status = std::process::Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(postgres.dir.path())
                .status()
                .unwrap();
            assert!(status.success(), "chown to postgres failed");
        }
        let data = postgres.dir.path().join("data");
        postgres.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
            ],
        );
        let mut postgres = postgres;
        postgres.resume();
        postgres
    }

    /// `postgres://postgres@127.0.0.1:PORT/DATABASE`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates a database.
    pub fn create_database(&self, name: &str) {
        let admin = self.url("postgres");
        let status = std::process::Command::new("psql")
            .args([
                admin.as_str(),
                "-q",
                "-c",
                &format!("CREATE DATABASE {name}"),
            ])
            .status()
            .expect("psql (Debian package postgresql-client)");
        assert!(status.success(), "CREATE DATABASE {name} failed");
    }

    /// Stops it (a fast shutdown: connections are cut, as in a restart).
    pub fn stop(&mut self) {
        let data = self.dir.path().join("data");
        self.run(
            "pg_ctl",
            &["-D", data.to_str().unwrap(), "-m", "fast", "-w", "stop"],
        );
        self.running = false;
    }

    /// Starts it (again) on its port.
    pub fn resume(&mut self) {
        let data = self.dir.path().join("data");
        let log = self.dir.path().join("log");
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {}",
            self.port,
            self.dir.path().display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &options,
                "-w",
                "start",
            ],
        );
        self.running = true;
    }

    fn run(&self, program: &str, args: &[&str]) {
        let path = self.bin.join(program);
        let mut command = if is_root() {
            let mut command = std::process::Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&path);
            command
        } else {
            std::process::Command::new(&path)
        };
        let output = command.args(args).output().unwrap();
        assert!(
            output.status.success(),
            "{program} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if self.running {
            let data = self.dir.path().join("data");
            let path = self.bin.join("pg_ctl");
            let mut command = if is_root() {
                let mut command = std::process::Command::new("runuser");
                command.args(["-u", "postgres", "--"]).arg(&path);
                command
            } else {
                std::process::Command::new(&path)
            };
            let _ = command
                .args(["-D", data.to_str().unwrap_or(""), "-m", "immediate", "stop"])
                .output();
        }
    }
}

/// Debian's PostgreSQL server binaries (the newest version installed).
fn postgres_bin_dir() -> std::path::PathBuf {
    let mut versions: Vec<std::path::PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL's server binaries (Debian package postgresql) are not installed")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("no /usr/lib/postgresql/*/bin/initdb (Debian package postgresql)")
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Several `confide-server` processes (the binary cargo built next to this test) on one
/// database and one NATS, sharing one TLS certificate as behind a load balancer; a test can
/// kill one with SIGKILL.
pub struct ProcessCluster {
    nodes: Vec<(SocketAddr, Option<std::process::Child>)>,
    pin: String,
    _dir: tempfile::TempDir,
}

/// The `confide-server` binary: `CONFIDE_SERVER_BIN`, or the one cargo built beside the test.
pub fn server_binary() -> std::path::PathBuf {
    if let Some(bin) = std::env::var_os("CONFIDE_SERVER_BIN") {
        return bin.into();
    }
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> → target/<profile>/confide-server
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("confide-server"))
        .unwrap();
    assert!(
        bin.exists(),
        "{} is missing: build it first (cargo build -p confide-server) or set CONFIDE_SERVER_BIN",
        bin.display()
    );
    bin
}

impl ProcessCluster {
    /// Starts `n` nodes and waits until each accepts connections.
    pub async fn start(n: usize, database: &str, nats: &str) -> ProcessCluster {
        let dir = tempfile::tempdir().unwrap();
        // Made once here; every node reuses it (`--dev` keeps an existing certificate).
        let pin = confide_server::TlsIdentity::dev(dir.path())
            .unwrap()
            .fingerprint();
        let prefix = unique_prefix();
        let mut nodes = Vec::new();
        for _ in 0..n {
            let port = free_port();
            let child = std::process::Command::new(server_binary())
                .args([
                    "--dev",
                    "--listen",
                    &format!("127.0.0.1:{port}"),
                    "--data-dir",
                ])
                .arg(dir.path())
                .args([
                    "--storage",
                    database,
                    "--nats",
                    nats,
                    "--nats-prefix",
                    &prefix,
                ])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let address: SocketAddr = ([127, 0, 0, 1], port).into();
            for attempt in 0.. {
                if tokio::net::TcpStream::connect(address).await.is_ok() {
                    break;
                }
                assert!(attempt < 400, "node on port {port} did not start");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            nodes.push((address, Some(child)));
        }
        ProcessCluster {
            nodes,
            pin,
            _dir: dir,
        }
    }

    /// Where the nodes listen.
    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|(a, _)| *a).collect()
    }

    /// The trust setting for clients.
    pub fn trust(&self) -> confide_client::ServerTrust {
        confide_client::ServerTrust::Pinned(self.pin.clone())
    }

    /// Kills node `i` with SIGKILL.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].1.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            if let Some(mut child) = self.nodes[i].1.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
