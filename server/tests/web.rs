//! The web app on the relay's TLS port, as a browser and an operator meet it: the files of a
//! checked build with their security headers and compressed forms, nothing outside the
//! manifest, refusals for other methods and oversized requests, the websocket unaffected on the
//! same port, and a server that will not start on a tampered build.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use confide_client::{Connection, ServerTrust};
use confide_protocol::frames::{self, ClientFrame, PROTOCOL_VERSION, ServerFrame};
use confide_protocol::{DeviceIdentity, RequestId, UserId};
use confide_server::{Config, Limits, SledStorage, TlsIdentity, WebAssets, WebSettings};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

const BIN: &str = env!("CARGO_BIN_EXE_confide-server");
/// How long a test waits for anything (a hang is a failure, not a timing claim).
const WAIT: Duration = Duration::from_secs(20);

const INDEX: &[u8] = b"<!doctype html><html lang=en><title>Confide</title><script type=module src=/assets/app-3f9a.js></script>";
const APP_JS: &[u8] = b"console.log('confide');";

/// The policy of PROTOCOL.md §9.1.1, written out here so that a change to it is deliberate.
const CSP: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; \
    img-src 'self'; font-src 'none'; connect-src 'self'; worker-src 'self'; manifest-src 'self'; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'none'; object-src 'none'; \
    require-trusted-types-for 'script'; trusted-types svelte-trusted-html confide-worker-url";

/// A directory `web/` inside a temporary directory, holding `files` and a manifest listing
/// them, as the build writes it; the temporary directory also holds a `Cargo.toml` outside
/// `web/` that must never be served.
fn web_dir(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Cargo.toml"), b"SECRET-OUTSIDE-THE-APP").unwrap();
    let web = dir.path().join("web");
    let mut manifest = serde_json::Map::new();
    for (path, bytes) in files {
        let file = web.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, bytes).unwrap();
        manifest.insert(
            path.to_string(),
            serde_json::json!({"sha256": hex::encode(Sha256::digest(bytes)), "size": bytes.len()}),
        );
    }
    std::fs::write(
        web.join("asset-manifest.json"),
        serde_json::to_vec_pretty(&manifest).unwrap(),
    )
    .unwrap();
    dir
}

/// The app with its script and the script's compressed forms.
fn app_dir() -> tempfile::TempDir {
    let dir = web_dir(&[("/index.html", INDEX), ("/assets/app-3f9a.js", APP_JS)]);
    let js = dir.path().join("web/assets/app-3f9a.js");
    let mut br = Vec::new();
    {
        let mut writer = brotli::CompressorWriter::new(&mut br, 4096, 9, 22);
        writer.write_all(APP_JS).unwrap();
    }
    std::fs::write(js.with_extension("js.br"), br).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(APP_JS).unwrap();
    std::fs::write(js.with_extension("js.gz"), gz.finish().unwrap()).unwrap();
    dir
}

/// A relay on a loopback port with its development certificate, serving `web`.
struct Server {
    port: u16,
    pin: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), confide_server::ServerError>>,
    _data: tempfile::TempDir,
}

impl Server {
    async fn start(web: WebSettings) -> Server {
        Server::start_with(Limits {
            web,
            ..Limits::default()
        })
        .await
    }

    async fn start_with(limits: Limits) -> Server {
        let data = tempfile::tempdir().unwrap();
        let identity = TlsIdentity::dev(data.path()).unwrap();
        let pin = identity.fingerprint();
        let storage =
            Arc::new(SledStorage::open_with(&data.path().join("db"), 1 << 20, 0).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let config = Config {
            limits,
            tls: Some(identity.server_config().unwrap()),
            storage,
            metrics_listener: None,
            cluster: None,
        };
        let task = tokio::spawn(confide_server::run(listener, config, async move {
            let _ = stopped.await;
        }));
        Server {
            port,
            pin,
            stop: Some(stop),
            task,
            _data: data,
        }
    }

    /// Serves the app in `dir/web` as a server with a real certificate would (HSTS on).
    async fn serving(dir: &Path) -> Server {
        let assets =
            WebAssets::load(&dir.join("web"), confide_server::web::DEFAULT_WEB_MAX_BYTES).unwrap();
        Server::start(WebSettings::new(Some(Arc::new(assets)), None, true).unwrap()).await
    }

    async fn client(&self) -> Client {
        Client::connect(self.port, &self.pin).await
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(WAIT, self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

/// One response as the client read it.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A browser's view of one TLS connection: raw requests out, parsed responses in.
struct Client {
    tls: TlsStream<TcpStream>,
    /// Bytes read past the last response.
    buf: Vec<u8>,
}

impl Client {
    async fn connect(port: u16, pin: &str) -> Client {
        Client::connect_with(port, pin, None).await
    }

    /// Connects with a receive buffer of `rcvbuf` bytes if given (a slow link: the kernel
    /// then holds little of what the server sent, so the server sees the peer's pace).
    async fn connect_with(port: u16, pin: &str, rcvbuf: Option<u32>) -> Client {
        let config = ServerTrust::Pinned(pin.to_string())
            .client_config()
            .unwrap();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        if let Some(size) = rcvbuf {
            socket.set_recv_buffer_size(size).unwrap();
        }
        let tcp = socket
            .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .unwrap();
        Client {
            tls,
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, raw: &[u8]) {
        self.tls.write_all(raw).await.unwrap();
        self.tls.flush().await.unwrap();
    }

    /// Reads more; `false` once the server has closed the connection.
    async fn read_more(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        match tokio::time::timeout(WAIT, self.tls.read(&mut chunk))
            .await
            .expect("the server neither answered nor closed")
        {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// The next response; `head_only` for the answer to a HEAD (no body follows).
    async fn response(&mut self, head_only: bool) -> Reply {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut response = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(len) = response.parse(&self.buf).unwrap() {
                let status = response.code.unwrap();
                let headers: Vec<(String, String)> = response
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_string(),
                            String::from_utf8(h.value.to_vec()).unwrap(),
                        )
                    })
                    .collect();
                let length: usize = headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                    .map(|(_, v)| v.parse().unwrap())
                    .expect("every response has a Content-Length");
                let body_len = if head_only { 0 } else { length };
                while self.buf.len() < len + body_len {
                    assert!(self.read_more().await, "closed in the middle of a body");
                }
                let body = self.buf[len..len + body_len].to_vec();
                self.buf.drain(..len + body_len);
                return Reply {
                    status,
                    headers,
                    body,
                };
            }
            assert!(self.read_more().await, "closed before a response");
        }
    }

    async fn get(&mut self, target: &str, extra: &str) -> Reply {
        let request = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n");
        self.send(request.as_bytes()).await;
        self.response(false).await
    }

    /// Whether the server closes the connection with nothing more to say.
    async fn closed(&mut self) -> bool {
        while self.read_more().await {}
        self.buf.is_empty()
    }
}

/// Registers a new device over the websocket, trusting the server by its pin: the protocol's
/// first steps, as every existing client takes them.
async fn register(port: u16, pin: &str) -> ServerFrame {
    let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
    let trust = ServerTrust::Pinned(pin.to_string());
    let mut conn = Connection::connect(&format!("wss://localhost:{port}"), &trust)
        .await
        .unwrap();
    let challenge = tokio::time::timeout(WAIT, conn.recv())
        .await
        .unwrap()
        .unwrap();
    let ServerFrame::Challenge { nonce, .. } = challenge else {
        panic!("expected a challenge, got {challenge:?}");
    };
    let identity = DeviceIdentity::generate(&mut rng);
    let frame = ClientFrame::Register {
        id: RequestId(1),
        version: PROTOCOL_VERSION,
        user: UserId::random(&mut rng),
        display_name: "Someone".into(),
        keys: identity.public_keys(),
        registration_token: None,
        device_list: None,
        signature: frames::sign_auth(&identity, conn.host(), &nonce),
    };
    conn.send(&frame).await.unwrap();
    tokio::time::timeout(WAIT, conn.recv())
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn the_page_comes_with_exactly_the_security_headers() {
    let dir = app_dir();
    let server = Server::serving(dir.path()).await;
    let mut client = server.client().await;
    let reply = client.get("/", "").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, INDEX);
    let names: Vec<&str> = reply.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "Content-Type",
            "Content-Length",
            "Vary",
            "Cache-Control",
            "Date",
            "Content-Security-Policy",
            "X-Content-Type-Options",
            "Referrer-Policy",
            "Cross-Origin-Opener-Policy",
            "Cross-Origin-Embedder-Policy",
            "Cross-Origin-Resource-Policy",
            "X-Frame-Options",
            "Permissions-Policy",
            "Strict-Transport-Security",
            "Connection",
        ],
        "no other header (no Server, no Set-Cookie)"
    );
    for (name, value) in [
        ("Content-Type", "text/html; charset=utf-8"),
        ("Content-Length", INDEX.len().to_string().as_str()),
        ("Vary", "Accept-Encoding"),
        ("Cache-Control", "no-cache"),
        ("Content-Security-Policy", CSP),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("Cross-Origin-Opener-Policy", "same-origin"),
        ("Cross-Origin-Embedder-Policy", "require-corp"),
        ("Cross-Origin-Resource-Policy", "same-origin"),
        ("X-Frame-Options", "DENY"),
        (
            "Permissions-Policy",
            "camera=(), microphone=(), geolocation=(), payment=(), usb=(), browsing-topics=()",
        ),
        ("Strict-Transport-Security", "max-age=63072000"),
        ("Connection", "keep-alive"),
    ] {
        assert_eq!(reply.header(name), Some(value), "{name}");
    }
    assert!(reply.header("Date").unwrap().ends_with(" GMT"));

    // The hashed script on the same connection: cached for good.
    let js = client.get("/assets/app-3f9a.js?v=1", "").await;
    assert_eq!(js.status, 200);
    assert_eq!(js.body, APP_JS);
    assert_eq!(
        js.header("Content-Type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(
        js.header("Cache-Control"),
        Some("public, max-age=31536000, immutable")
    );
    server.stop().await;
}

#[tokio::test]
async fn brotli_then_gzip_is_sent_to_browsers_that_accept_it() {
    let dir = app_dir();
    let server = Server::serving(dir.path()).await;
    let mut client = server.client().await;
    let target = "/assets/app-3f9a.js";

    let br = client
        .get(target, "Accept-Encoding: gzip, deflate, br, zstd\r\n")
        .await;
    assert_eq!(br.header("Content-Encoding"), Some("br"));
    let mut plain = Vec::new();
    brotli::Decompressor::new(&br.body[..], 4096)
        .read_to_end(&mut plain)
        .unwrap();
    assert_eq!(plain, APP_JS);

    let gz = client.get(target, "Accept-Encoding: gzip\r\n").await;
    assert_eq!(gz.header("Content-Encoding"), Some("gzip"));
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&gz.body[..])
        .read_to_end(&mut plain)
        .unwrap();
    assert_eq!(plain, APP_JS);

    for accept in [
        "",
        "Accept-Encoding: identity\r\n",
        "Accept-Encoding: br;q=0\r\n",
    ] {
        let identity = client.get(target, accept).await;
        assert_eq!(identity.header("Content-Encoding"), None, "{accept:?}");
        assert_eq!(identity.body, APP_JS);
        assert_eq!(identity.header("Vary"), Some("Accept-Encoding"));
    }
    server.stop().await;
}

#[tokio::test]
async fn nothing_outside_the_manifest_is_served() {
    let dir = app_dir();
    // A file in the directory that the manifest does not list.
    std::fs::write(dir.path().join("web/unlisted.txt"), b"SECRET-UNLISTED").unwrap();
    let server = Server::serving(dir.path()).await;
    let mut client = server.client().await;
    for target in [
        "/../Cargo.toml",
        "/%2e%2e/Cargo.toml",
        "/%2e%2e/x",
        "/assets/../../Cargo.toml",
        "/..%2fCargo.toml",
        "/unlisted.txt",
        "/no-such-file.js",
        "/assets",
        "/assets/",
        "/index.html/",
    ] {
        let reply = client.get(target, "").await;
        assert_eq!(reply.status, 404, "{target}");
        assert_eq!(reply.body, b"not found\n", "{target}");
        assert_eq!(reply.header("Connection"), Some("keep-alive"), "{target}");
        assert_eq!(reply.header("X-Content-Type-Options"), Some("nosniff"));
    }
    server.stop().await;
}

#[tokio::test]
async fn other_methods_are_refused_and_the_connection_closed() {
    let dir = app_dir();
    let server = Server::serving(dir.path()).await;
    let mut client = server.client().await;
    client
        .send(b"POST /index.html HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello")
        .await;
    let reply = client.response(false).await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("Allow"), Some("GET, HEAD"));
    assert_eq!(reply.header("Connection"), Some("close"));
    assert!(client.closed().await, "nothing follows a 405");
    server.stop().await;
}

#[tokio::test]
async fn head_has_the_headers_and_no_body() {
    let dir = app_dir();
    let server = Server::serving(dir.path()).await;
    let mut client = server.client().await;
    client
        .send(b"HEAD / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    let head = client.response(true).await;
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("Content-Length"),
        Some(INDEX.len().to_string().as_str())
    );
    // Had a body followed the HEAD's headers, this would read it as the next response.
    let next = client.get("/missing", "").await;
    assert_eq!(next.status, 404);
    server.stop().await;
}

#[tokio::test]
async fn the_websocket_works_on_the_same_port_as_the_app() {
    let dir = app_dir();
    let server = Server::serving(dir.path()).await;
    let mut browser = server.client().await;
    assert_eq!(browser.get("/", "").await.status, 200);
    // An existing client, on its own connection, after the page was served.
    let reply = register(server.port, &server.pin).await;
    assert!(
        matches!(reply, ServerFrame::Authenticated { .. }),
        "{reply:?}"
    );
    // And the upgrade on a connection that fetched the page first (keep-alive).
    assert_eq!(browser.get("/assets/app-3f9a.js", "").await.status, 200);
    browser
        .send(
            b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .await;
    while !browser.buf.windows(4).any(|w| w == b"\r\n\r\n") {
        assert!(browser.read_more().await, "closed instead of upgrading");
    }
    let head = String::from_utf8_lossy(&browser.buf).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // RFC 6455's example key and its accept value.
    assert!(
        head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "the handshake saw the replayed key: {head}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_request_head_over_8_kib_is_refused() {
    let dir = app_dir();
    let server = Server::serving(dir.path()).await;
    let mut client = server.client().await;
    let padding = "a".repeat(9 * 1024);
    let request = format!("GET / HTTP/1.1\r\nHost: localhost\r\nX-Padding: {padding}\r\n\r\n");
    client.send(request.as_bytes()).await;
    let reply = client.response(false).await;
    assert_eq!(reply.status, 431);
    assert!(client.closed().await, "nothing follows a 431");

    let mut client = server.client().await;
    let many: String = (0..40).map(|i| format!("X-H{i}: v\r\n")).collect();
    let reply = client.get("/", &many).await;
    assert_eq!(reply.status, 431, "more than 32 header lines");
    server.stop().await;
}

#[tokio::test]
async fn without_a_web_dir_the_server_says_the_app_is_not_installed() {
    let server = Server::start(WebSettings::default()).await;
    let mut client = server.client().await;
    let reply = client.get("/", "").await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.body, b"the web app is not installed on this server\n");
    assert_eq!(reply.header("Content-Security-Policy"), Some(CSP));
    let reply = register(server.port, &server.pin).await;
    assert!(
        matches!(reply, ServerFrame::Authenticated { .. }),
        "{reply:?}"
    );
    server.stop().await;
}

#[test]
fn a_tampered_file_stops_the_server_from_starting_and_names_it() {
    let dir = app_dir();
    // Same length, different bytes: only the hash can tell.
    let tampered = APP_JS.to_ascii_uppercase();
    std::fs::write(dir.path().join("web/assets/app-3f9a.js"), tampered).unwrap();
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["--dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .arg("--web-dir")
        .arg(dir.path().join("web"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("assets/app-3f9a.js"), "{stderr}");
    assert!(stderr.contains("is not what the build wrote"), "{stderr}");
    assert!(stderr.contains("SHA-256"), "{stderr}");
}

#[test]
fn dev_mode_prints_the_browser_flag_and_the_address_to_open() {
    let dir = app_dir();
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args([
            "--dev",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data.path())
        .arg("--web-dir")
        .arg(dir.path().join("web"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut flag, mut listening, mut open, mut metrics) = (None, None, None, None);
    while metrics.is_none() {
        let line = lines.next().expect("the server exited early").unwrap();
        if let Some((_, rest)) = line.split_once("--ignore-certificate-errors-spki-list=") {
            flag = Some(rest.to_string());
        }
        if let Some(rest) = line.strip_prefix("confide-server listening on wss://") {
            listening = Some(rest.rsplit(':').next().unwrap().to_string());
        }
        if let Some(rest) = line.strip_prefix("open ") {
            open = Some(rest.to_string());
        }
        if let Some(rest) = line.strip_prefix("metrics on http://") {
            metrics = Some(rest.trim_end_matches("/metrics").to_string());
        }
    }
    let port = listening.expect("the address is printed");
    assert_eq!(
        open.as_deref(),
        Some(format!("https://localhost:{port}/").as_str())
    );
    let cert = TlsIdentity::dev(data.path()).unwrap();
    assert_eq!(
        flag.as_deref(),
        Some(
            confide_server::tls::spki_pin(&cert.certs[0])
                .unwrap()
                .as_str()
        )
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut client = Client::connect(port.parse().unwrap(), &cert.fingerprint()).await;
        let reply = client.get("/", "").await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, INDEX);
        assert_eq!(
            reply.header("Strict-Transport-Security"),
            None,
            "no HSTS for a development certificate"
        );
        let mut http = TcpStream::connect(metrics.as_deref().unwrap())
            .await
            .unwrap();
        http.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut body = String::new();
        http.read_to_string(&mut body).await.unwrap();
        assert!(body.contains("confide_web_requests_total 1"), "{body}");
    });
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
}

/// What the binary prints, kept open while it runs (a closed pipe would fail its next print).
type Stdout = std::io::Lines<BufReader<std::process::ChildStdout>>;

/// Starts the binary with `--dev`, the app in `dir` and `extra` flags; its port, once it listens.
fn start_binary(dir: &Path, data: &Path, extra: &[&str]) -> (std::process::Child, Stdout, u16) {
    let mut child = Command::new(BIN)
        .args(["--dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .arg("--web-dir")
        .arg(dir.join("web"))
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let port = loop {
        let line = lines.next().expect("the server exited early").unwrap();
        if let Some(rest) = line.strip_prefix("confide-server listening on wss://") {
            break rest.rsplit(':').next().unwrap().parse().unwrap();
        }
    };
    (child, lines, port)
}

#[test]
fn the_app_host_names_its_relay_in_web_config_and_allows_it_in_the_policy() {
    let dir = app_dir();
    let data = tempfile::tempdir().unwrap();
    let (mut child, _stdout, port) = start_binary(
        dir.path(),
        data.path(),
        &["--web-relay", "wss://relay.example.org/"],
    );
    let pin = TlsIdentity::dev(data.path()).unwrap().fingerprint();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut client = Client::connect(port, &pin).await;
        let config = client.get("/web-config.json", "").await;
        assert_eq!(config.status, 200);
        assert_eq!(config.body, br#"{"relay":"wss://relay.example.org/"}"#);
        assert_eq!(config.header("Content-Type"), Some("application/json"));
        assert_eq!(config.header("Cache-Control"), Some("no-store"));
        let with_relay = CSP.replace(
            "connect-src 'self';",
            "connect-src 'self' wss://relay.example.org;",
        );
        assert_eq!(
            config.header("Content-Security-Policy"),
            Some(with_relay.as_str())
        );
        assert_eq!(config.header("X-Frame-Options"), Some("DENY"));
        let page = client.get("/", "").await;
        assert_eq!(page.body, INDEX);
        assert_eq!(
            page.header("Content-Security-Policy"),
            Some(with_relay.as_str())
        );
    });
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
}

#[tokio::test]
async fn without_a_relay_setting_web_config_is_404() {
    let dir = app_dir();
    let server = Server::serving(dir.path()).await;
    let mut client = server.client().await;
    let reply = client.get("/web-config.json", "").await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.header("Content-Security-Policy"), Some(CSP));
    server.stop().await;
}

#[test]
fn a_relay_setting_that_is_not_a_wss_origin_stops_the_server_from_starting() {
    let dir = app_dir();
    for (flag, value) in [
        ("--web-relay", "ws://relay.example.org/"),
        ("--web-relay", "https://relay.example.org/"),
        ("--web-relay", "wss://relay.example.org/; script-src *"),
    ] {
        let data = tempfile::tempdir().unwrap();
        let out = Command::new(BIN)
            .args(["--dev", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data.path())
            .arg("--web-dir")
            .arg(dir.path().join("web"))
            .args([flag, value])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("invalid web_relay"), "{stderr}");
        assert!(stderr.contains("wss://relay.example.org/ ("), "{stderr}");
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("listening"),
            "it must not start"
        );
    }
    // The config file's key is checked the same way.
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("confide.toml");
    std::fs::write(&config, "web_relay = \"ws://10.1.2.3/\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["--dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("invalid web_relay") && stderr.contains("ws://10.1.2.3/"),
        "{stderr}"
    );
}

/// A server with a 4 MiB file under `/assets/`, an authentication timeout of 1 s and `limits`
/// otherwise.
async fn big_file_server(limits: Limits) -> (Server, tempfile::TempDir) {
    let big: Vec<u8> = (0..4u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let dir = web_dir(&[("/index.html", INDEX), ("/assets/big-77aa.bin", &big)]);
    let assets = WebAssets::load(
        &dir.path().join("web"),
        confide_server::web::DEFAULT_WEB_MAX_BYTES,
    )
    .unwrap();
    let web = WebSettings::new(Some(Arc::new(assets)), None, true).unwrap();
    let limits = Limits {
        web,
        auth_timeout: Duration::from_secs(1),
        ..limits
    };
    (Server::start_with(limits).await, dir)
}

/// Whether a TLS connection to `port` is accepted (the server drops one before TLS when the
/// address has no unauthenticated slot left).
async fn accepted(port: u16, pin: &str) -> bool {
    let config = ServerTrust::Pinned(pin.to_string())
        .client_config()
        .unwrap();
    let Ok(tcp) = TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let connect = tokio_rustls::TlsConnector::from(config).connect(name, tcp);
    matches!(tokio::time::timeout(WAIT, connect).await, Ok(Ok(_)))
}

#[tokio::test]
async fn an_unauthenticated_slow_reader_is_dropped_at_the_authentication_deadline() {
    // One unauthenticated connection per address: a second is accepted only once the first
    // has been let go.
    let (server, _dir) = big_file_server(Limits {
        max_unauthenticated_per_ip: 1,
        ..Limits::default()
    })
    .await;
    let mut client = Client::connect_with(server.port, &server.pin, Some(4096)).await;
    // Eight pipelined requests for 4 MiB each, then reading 8 KiB every 100 ms (about
    // 80 KiB/s, over a tiny receive buffer so that the kernel holds little): every 64 KiB piece
    // goes out well within the write timeout (20 s), so only a deadline for the whole HTTP
    // phase (1 s + one write timeout) ends it. Without one the server goes on serving for
    // minutes, holding the address's only unauthenticated slot.
    let request = "GET /assets/big-77aa.bin HTTP/1.1\r\nHost: localhost\r\n\r\n".repeat(8);
    client.send(request.as_bytes()).await;
    let reader = tokio::spawn(async move {
        let mut chunk = vec![0u8; 8 * 1024];
        while let Ok(Ok(n)) = tokio::time::timeout(WAIT, client.tls.read(&mut chunk)).await {
            if n == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let give_up = tokio::time::Instant::now() + Duration::from_secs(45);
    let mut freed = false;
    while tokio::time::Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if accepted(server.port, &server.pin).await {
            freed = true;
            break;
        }
    }
    reader.abort();
    assert!(
        freed,
        "the unauthenticated connection outlived its deadline (it still holds its slot)"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_unauthenticated_connection_gets_at_most_its_send_budget() {
    let (server, _dir) = big_file_server(Limits {
        max_preauth_send_bytes: 6 << 20,
        ..Limits::default()
    })
    .await;
    let mut client = server.client().await;
    let first = client.get("/assets/big-77aa.bin", "").await;
    assert_eq!(first.status, 200);
    assert_eq!(first.body.len(), 4 << 20);
    // The second copy would pass the 6 MiB budget: the connection is closed instead.
    client
        .send(b"GET /assets/big-77aa.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    assert!(
        client.closed().await,
        "a response beyond the budget was sent"
    );
    server.stop().await;
}
