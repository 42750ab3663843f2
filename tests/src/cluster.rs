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
}

impl Balancer {
    /// Starts one in front of `nodes`.
    pub async fn start(nodes: Vec<SocketAddr>) -> Balancer {
        use tokio::io::copy_bidirectional;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let nodes = Arc::new(Mutex::new(nodes));
        let pool = nodes.clone();
        tokio::spawn(async move {
            let mut next = 0usize;
            while let Ok((mut inbound, _)) = listener.accept().await {
                let candidates = pool.lock().unwrap().clone();
                let start = next;
                next = next.wrapping_add(1);
                tokio::spawn(async move {
                    for i in 0..candidates.len() {
                        let node = candidates[(start + i) % candidates.len()];
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(node).await {
                            let _ = copy_bidirectional(&mut inbound, &mut outbound).await;
                            return;
                        }
                    }
                });
            }
        });
        Balancer { port, nodes }
    }

    /// The nodes it balances over now.
    pub fn nodes(&self) -> Vec<SocketAddr> {
        self.nodes.lock().unwrap().clone()
    }
}
