//! `confide web verify`: checks that a server serves exactly a published release of the web app.
//!
//! A web client is only as trustworthy as the code the server hands the browser, and the server
//! could hand it modified code. Each release of the web app therefore has a **release hash**: the
//! SHA-256 of the exact bytes of its `asset-manifest.json`, which lists every file of the build
//! with its size and SHA-256 (PROTOCOL.md §9.1.1). The build writes it to `release-hash.txt`,
//! the release notes publish it and the app's About screen shows it.
//!
//! [`verify`] fetches what a server serves — plain HTTP/1.1 `GET`s over TLS, one connection per
//! request (`Connection: close`), each answer bounded in size ([`MAX_TOTAL_BYTES`] in all) and
//! time ([`IO_TIMEOUT`], [`REQUEST_DEADLINE`]) — and compares:
//! 1. `/asset-manifest.json`: its SHA-256 must be the expected release hash (given, or that of
//!    a local build's manifest);
//! 2. every file the release's manifest lists: size and SHA-256;
//! 3. `/`, which must be the release's `/index.html`.
//!
//! Each is fetched four times: as it is (`Accept-Encoding: identity`), with gzip and with
//! brotli allowed, and with exactly what browsers send (`gzip, deflate, br, zstd`), since a
//! browser always asks for a compressed form, and a server could keep the plain form honest and
//! change only what browsers receive. A compressed answer is decompressed (never to more than
//! the file's size plus one byte) and compared the same way; an answer in a coding this check
//! cannot decode (`deflate`, `zstd`) fails it, since it could hold anything.
//!
//! Every answer's header fields are checked too: a server (or a proxy in front of it) that
//! serves the exact files with another policy changes what the browser enforces. The
//! `Content-Security-Policy` must be the release's, apart from extra `connect-src` sources
//! (`web_connect_src`); the other security headers ([`SECURITY_HEADERS`]) and the
//! `Content-Type` must be exactly the server's; a header that could act on the app
//! ([`FORBIDDEN_HEADERS`], such as `Clear-Site-Data`) must be absent; and there must be at most
//! one `Content-Encoding`. `Strict-Transport-Security` is not checked (a development server
//! sends none, a proxy may send its own).
//!
//! What this proves is what the server served to this request. A server can tell a checker from
//! a browser and serve modified code to chosen people only; the check makes a change that is
//! served to everyone visible, and the release hash in the app's About screen lets each person
//! compare what their own browser received.

use anyhow::{Context as _, anyhow, bail};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::ServerName;

use confide_client::ServerTrust;

use crate::text::one_line;

/// The most response bytes one check reads, all answers together: twice the server's default
/// budget for the whole web app (`web_max_bytes`, 32 MiB, which holds every file with its
/// compressed forms), since the check also fetches `/` and the manifest in every form. A server
/// that sends more is not serving a release of a sensible size; the check stops there.
pub const MAX_TOTAL_BYTES: u64 = 64 * 1024 * 1024;
/// The largest `asset-manifest.json` read (from the server or a local build). A release's
/// manifest lists a few dozen files in a few KiB.
pub const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;
/// Connecting, the TLS handshake, and each read or write of a request must finish within this.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);
/// One request, from connecting to the last byte of the answer, must finish within this (a
/// server that trickles bytes cannot hold the check forever).
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(300);
/// The largest response head read. The server's heads carry its security headers: under 2 KiB.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// The most header lines a response may have.
const MAX_HEADERS: usize = 64;
/// How much larger than the file a compressed form may be (gzip and brotli add a few bytes per
/// block and a header; an incompressible file grows a little).
const COMPRESSION_SLACK: u64 = 1024;
/// The most characters of a server-provided text (a path, a header value) shown to people.
const SHOWN_CHARS: usize = 120;
/// The most paths named in the final verdict line (all are listed above it).
const NAMED_IN_VERDICT: usize = 5;
/// Where a server that hosts the app apart from its relay names the relay (`--web-relay`,
/// PROTOCOL.md §9.1.1): data outside the release, reported, never compared.
pub const WEB_CONFIG_PATH: &str = "/web-config.json";
/// The largest `/web-config.json` read: it holds one URL.
const MAX_WEB_CONFIG_BYTES: u64 = 4096;
/// The path the manifest is served under (PROTOCOL.md §9.1.1).
const MANIFEST_PATH: &str = "/asset-manifest.json";
/// The manifest's file name in a build directory.
const MANIFEST_FILE: &str = "asset-manifest.json";
/// The page `/` must serve.
const INDEX_PATH: &str = "/index.html";
/// What browsers send as `Accept-Encoding` (Chromium's, a superset of the others').
const BROWSER_ACCEPT_ENCODING: &str = "gzip, deflate, br, zstd";

/// The release's `Content-Security-Policy` up to and including `connect-src 'self'`; an
/// operator's extra `connect-src` sources may follow, then [`CSP_END`]. The same text as the
/// server's `confide_server::web::CSP_CONNECT` (a unit test compares them).
pub const CSP_START: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; \
     style-src 'self'; img-src 'self'; font-src 'none'; connect-src 'self'";
/// The rest of the release's `Content-Security-Policy` (the server's `CSP_REST`).
pub const CSP_END: &str = "; worker-src 'self'; manifest-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'; object-src 'none'; \
     require-trusted-types-for 'script'; trusted-types svelte-trusted-html confide-worker-url";
/// The security headers every answer carries, with their exact values: the server's
/// constants in `server/src/web.rs` (PROTOCOL.md §9.1.1; a unit test compares them).
pub const SECURITY_HEADERS: [(&str, &str); 7] = [
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
];
/// Headers the server never sends and that would act on the app if a server or proxy added
/// them: wipe its storage (`Clear-Site-Data`), navigate away (`Refresh`), set state
/// (`Set-Cookie`), preload or prefetch something (`Link`), or widen a service worker's scope.
pub const FORBIDDEN_HEADERS: [&str; 7] = [
    "Clear-Site-Data",
    "Refresh",
    "Set-Cookie",
    "Set-Cookie2",
    "Link",
    "Service-Worker-Allowed",
    "Content-Security-Policy-Report-Only",
];

/// The `Content-Type` the server sends for `path` (the server's `web::content_type`; a unit
/// test compares them).
fn content_type(path: &str) -> &'static str {
    let path = if path == "/" { INDEX_PATH } else { path };
    let ext = path.rsplit_once('.').map_or("", |(_, ext)| ext);
    match ext {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "wasm" => "application/wasm",
        "json" => "application/json",
        "webmanifest" => "application/manifest+json",
        "png" => "image/png",
        "svg" => "image/svg+xml",
        "ico" => "image/x-icon",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// What is wrong with the header fields of the answer for `path`, if anything.
fn header_problems(path: &str, headers: &[(String, String)]) -> Vec<String> {
    let values = |name: &str| -> Vec<&str> {
        headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let mut problems = Vec::new();
    let exactly = |name: &str, want: &str, problems: &mut Vec<String>| match values(name).as_slice()
    {
        [] => problems.push(format!("no {name} header")),
        [one] if *one == want => {}
        [one] => problems.push(format!(
            "{name} is {:?}, not {want:?}",
            cut(one, SHOWN_CHARS)
        )),
        _ => problems.push(format!("more than one {name} header")),
    };
    match values("Content-Security-Policy").as_slice() {
        [] => problems.push("no Content-Security-Policy header".to_string()),
        [csp] => {
            let extras = csp
                .strip_prefix(CSP_START)
                .and_then(|rest| rest.strip_suffix(CSP_END));
            // Only extra `connect-src` sources may stand between the two parts.
            if !extras
                .is_some_and(|e| e.is_empty() || (e.starts_with(' ') && !e.contains([';', ','])))
            {
                problems.push(format!(
                    "Content-Security-Policy is not the release's: {:?}",
                    cut(csp, 4 * SHOWN_CHARS)
                ));
            }
        }
        _ => problems.push("more than one Content-Security-Policy header".to_string()),
    }
    for (name, want) in SECURITY_HEADERS {
        exactly(name, want, &mut problems);
    }
    exactly("Content-Type", content_type(path), &mut problems);
    for name in FORBIDDEN_HEADERS {
        if !values(name).is_empty() {
            problems.push(format!("a {name} header, which the server never sends"));
        }
    }
    problems
}

/// The sources a release's `Content-Security-Policy` (as [`header_problems`] accepts it) adds
/// to `connect-src` after `'self'`: the relay of an app hosted on its own origin, or an
/// operator's `web_connect_src`.
fn extra_connect_sources(headers: &[(String, String)]) -> Vec<String> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("Content-Security-Policy"))
        .filter_map(|(_, csp)| csp.strip_prefix(CSP_START)?.strip_suffix(CSP_END))
        .flat_map(|extra| extra.split(' ').filter(|s| !s.is_empty()).map(shown))
        .collect()
}

/// What the server must serve: the release hash, and the release's manifest when it is known
/// before asking the server (from a local build).
pub enum Expected {
    /// A published release hash (`--expect`): lowercase hex SHA-256 of the manifest's bytes.
    Hash(String),
    /// A local build of the release (`--against`): its manifest's bytes.
    Build(Vec<u8>),
}

impl Expected {
    /// A release hash as given on the command line: 64 hex digits (case and surrounding
    /// whitespace do not matter).
    pub fn hash(text: &str) -> anyhow::Result<Expected> {
        let hash = text.trim().to_ascii_lowercase();
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!(
                "a release hash is 64 hex digits (the SHA-256 in release-hash.txt and in the \
                 app's About screen), got {text:?}"
            );
        }
        Ok(Expected::Hash(hash))
    }

    /// The build in `dir`: only its `asset-manifest.json` is read, since it pins every file.
    pub fn build(dir: &Path) -> anyhow::Result<Expected> {
        let file = dir.join(MANIFEST_FILE);
        let mut bytes = Vec::new();
        std::fs::File::open(&file)
            .and_then(|f| f.take(MAX_MANIFEST_BYTES + 1).read_to_end(&mut bytes))
            .with_context(|| {
                format!(
                    "cannot read {} (give the directory of a web app build, which holds it)",
                    file.display()
                )
            })?;
        if bytes.len() as u64 > MAX_MANIFEST_BYTES {
            bail!(
                "{} is larger than {MAX_MANIFEST_BYTES} bytes: not a web app manifest",
                file.display()
            );
        }
        parse_manifest(&bytes).map_err(|e| anyhow!("{}: {e}", file.display()))?;
        Ok(Expected::Build(bytes))
    }

    /// The release hash.
    fn release(&self) -> String {
        match self {
            Expected::Hash(hash) => hash.clone(),
            Expected::Build(bytes) => sha256_hex(bytes),
        }
    }
}

/// The server to check: host and port of a `wss://` or `https://` URL (the web app is served
/// on the websocket's port and origin).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The host, as dialled and as the TLS server name (an IPv6 address without brackets),
    /// lowercase.
    host: String,
    /// The port.
    port: u16,
    /// `host:port` as the `Host` header carries it (an IPv6 address in brackets).
    authority: String,
}

impl Origin {
    /// Reads `wss://host[:port][/…]` or `https://host[:port][/…]` (port 443 by default).
    pub fn parse(url: &str) -> anyhow::Result<Origin> {
        let bad = || {
            anyhow!(
                "{url:?} is not a server address: give wss://host:port (as in your profile) or \
                 https://host:port"
            )
        };
        let lower = url.to_ascii_lowercase();
        let skip = ["wss://", "https://"]
            .iter()
            .find(|scheme| lower.starts_with(*scheme))
            .map(|scheme| scheme.len())
            .ok_or_else(bad)?;
        let rest = lower.get(skip..).ok_or_else(bad)?;
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if authority.is_empty() || authority.contains('@') {
            return Err(bad());
        }
        let (host, port) = match authority.strip_prefix('[') {
            Some(bracketed) => {
                let (host, tail) = bracketed.split_once(']').ok_or_else(bad)?;
                host.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
                let port = match tail {
                    "" => None,
                    tail => Some(tail.strip_prefix(':').ok_or_else(bad)?),
                };
                (host, port)
            }
            None => match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            },
        };
        let port = match port {
            None => 443,
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(bad)?,
        };
        if host.is_empty() || ServerName::try_from(host.to_string()).is_err() {
            return Err(bad());
        }
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Ok(Origin {
            host: host.to_string(),
            port,
            authority,
        })
    }

    /// `https://host:port`, as a browser opens the app.
    pub fn url(&self) -> String {
        format!("https://{}", self.authority)
    }
}

/// One entry of a manifest: the file's SHA-256 (hex) and size. Other fields are ignored, as
/// the server ignores them.
#[derive(Clone, Debug, Deserialize)]
struct Entry {
    /// SHA-256 of the file, hex.
    sha256: String,
    /// The file's length in bytes.
    size: u64,
}

/// A manifest's entries by path, checked: every path is one the server would serve (so it can
/// be put in a request line as it is) and every hash is 64 hex digits, lowercased.
fn parse_manifest(bytes: &[u8]) -> Result<BTreeMap<String, Entry>, String> {
    let mut entries: BTreeMap<String, Entry> = serde_json::from_slice(bytes).map_err(|e| {
        format!("not a manifest ({{\"/path\": {{\"sha256\": hex, \"size\": bytes}}, …}}): {e}")
    })?;
    for (path, entry) in &mut entries {
        if !servable(path) {
            return Err(format!(
                "it lists {:?}, which is not a path a Confide server serves",
                shown(path)
            ));
        }
        entry.sha256 = entry.sha256.trim().to_ascii_lowercase();
        if entry.sha256.len() != 64 || !entry.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("its SHA-256 of {path} is not 64 hex digits"));
        }
    }
    Ok(entries)
}

/// Whether `path` is one a Confide server serves (the server's own rule): `/`, then segments
/// that are not empty, `.` or `..`, of letters, digits and `-_.~@+`. Such a path goes into a
/// request line as it is, with nothing to escape.
fn servable(path: &str) -> bool {
    let Some(relative) = path.strip_prefix('/') else {
        return false;
    };
    path != MANIFEST_PATH
        && relative.split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.~@+".contains(&b))
        })
}

/// Lowercase hex SHA-256.
fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Text from the server (or a manifest) for a terminal: on one line, cleaned of anything that
/// could act on the terminal, and cut to [`SHOWN_CHARS`].
fn shown(text: &str) -> String {
    cut(text, SHOWN_CHARS)
}

/// `text` on one line, cleaned for a terminal, and cut to `chars` characters.
fn cut(text: &str, chars: usize) -> String {
    let line = one_line(text);
    match line.char_indices().nth(chars) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line,
    }
}

/// A form in which the server may send a file: as it is, or compressed by a content coding a
/// browser accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Form {
    /// As it is: `Accept-Encoding: identity`.
    Plain,
    /// `Accept-Encoding: gzip`.
    Gzip,
    /// `Accept-Encoding: br`, what browsers prefer.
    Brotli,
    /// Exactly what browsers send ([`BROWSER_ACCEPT_ENCODING`]): the answer must be in a
    /// coding this check can decode.
    Browser,
}

impl Form {
    /// Every form, in the order checked.
    const ALL: [Form; 4] = [Form::Plain, Form::Gzip, Form::Brotli, Form::Browser];

    /// The request's `Accept-Encoding`.
    fn accept(self) -> &'static str {
        match self {
            Form::Plain => "identity",
            Form::Gzip => "gzip",
            Form::Brotli => "br",
            Form::Browser => BROWSER_ACCEPT_ENCODING,
        }
    }

    /// The name people and scripts see.
    fn name(self) -> &'static str {
        match self {
            Form::Plain => "plain",
            Form::Gzip => "gzip",
            Form::Brotli => "brotli",
            Form::Browser => "browser",
        }
    }
}

/// Why a request got no usable answer.
#[derive(Debug)]
enum FetchError {
    /// No TCP connection or no TLS session (a wrong pin, say).
    Unreachable(String),
    /// A step took longer than [`IO_TIMEOUT`], or the whole request longer than
    /// [`REQUEST_DEADLINE`].
    TimedOut,
    /// The answer announced a body larger than the check allows for this file.
    TooLarge(u64),
    /// The answers together would exceed [`MAX_TOTAL_BYTES`].
    OverBudget,
    /// The answer is not an HTTP/1.1 response this check can read.
    Malformed(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Unreachable(why) => write!(f, "cannot connect: {why}"),
            FetchError::TimedOut => write!(f, "the server did not answer in time"),
            FetchError::TooLarge(size) => write!(f, "the server announced {size} bytes"),
            FetchError::OverBudget => write!(
                f,
                "the server's answers together exceed {MAX_TOTAL_BYTES} bytes"
            ),
            FetchError::Malformed(why) => write!(f, "unreadable answer: {why}"),
        }
    }
}

/// One answer: its status, its header fields, its `Content-Encoding` and, for a 200, its body.
struct Reply {
    /// The status code.
    status: u16,
    /// Every header field, in order (values decoded lossily: only compared and quoted cut).
    headers: Vec<(String, String)>,
    /// `Content-Encoding`, lowercased, if sent.
    encoding: Option<String>,
    /// The body (empty unless the status is 200).
    body: Vec<u8>,
}

/// Makes the requests: one TLS connection each, within the shared byte budget.
struct Fetcher {
    /// The server.
    origin: Origin,
    /// TLS as the profile's other commands use it: pinned, or CA roots.
    connector: tokio_rustls::TlsConnector,
    /// The TLS server name (checked against the certificate unless pinned).
    name: ServerName<'static>,
    /// Body bytes still allowed, from [`MAX_TOTAL_BYTES`].
    budget: u64,
}

impl Fetcher {
    /// A fetcher for `origin` trusting its certificate as `trust` says.
    fn new(origin: Origin, trust: &ServerTrust) -> anyhow::Result<Fetcher> {
        let config: Arc<rustls::ClientConfig> = trust.client_config()?;
        let name = ServerName::try_from(origin.host.clone())
            .map_err(|_| anyhow!("{:?} is not a host name", origin.host))?;
        Ok(Fetcher {
            origin,
            connector: tokio_rustls::TlsConnector::from(config),
            name,
            budget: MAX_TOTAL_BYTES,
        })
    }

    /// `GET path` asking for `form`; a body over `cap` bytes is refused unread.
    async fn get(&mut self, path: &str, form: Form, cap: u64) -> Result<Reply, FetchError> {
        tokio::time::timeout(REQUEST_DEADLINE, self.exchange(path, form, cap))
            .await
            .unwrap_or(Err(FetchError::TimedOut))
    }

    /// Connects, sends the request and reads the answer.
    async fn exchange(&mut self, path: &str, form: Form, cap: u64) -> Result<Reply, FetchError> {
        let step = |e: std::io::Error| FetchError::Unreachable(e.to_string());
        let tcp = within(TcpStream::connect((
            self.origin.host.as_str(),
            self.origin.port,
        )))
        .await?
        .map_err(step)?;
        let _ = tcp.set_nodelay(true);
        let mut tls = within(self.connector.connect(self.name.clone(), tcp))
            .await?
            .map_err(step)?;
        // `path` is servable (letters, digits, `/-_.~@+` only) or `/`: nothing to escape.
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: */*\r\nAccept-Encoding: {}\r\n\
             Connection: close\r\n\r\n",
            self.origin.authority,
            form.accept()
        );
        let broken = |e: std::io::Error| FetchError::Malformed(e.to_string());
        within(tls.write_all(request.as_bytes()))
            .await?
            .map_err(broken)?;
        within(tls.flush()).await?.map_err(broken)?;
        read_reply(&mut tls, cap, &mut self.budget).await
    }
}

/// `future`, or [`FetchError::TimedOut`] after [`IO_TIMEOUT`].
async fn within<T>(future: impl Future<Output = T>) -> Result<T, FetchError> {
    tokio::time::timeout(IO_TIMEOUT, future)
        .await
        .map_err(|_| FetchError::TimedOut)
}

/// Reads one response: its head (at most [`MAX_HEAD_BYTES`]) and, for a 200, its body of
/// exactly `Content-Length` bytes, at most `cap` and within `budget` (which it is charged to).
async fn read_reply<S: AsyncRead + Unpin>(
    stream: &mut S,
    cap: u64,
    budget: &mut u64,
) -> Result<Reply, FetchError> {
    let malformed = |why: &str| FetchError::Malformed(why.to_string());
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    let (head_len, status, length, encoding, headers) = loop {
        let n = within(stream.read(&mut chunk))
            .await?
            .map_err(|e| FetchError::Malformed(e.to_string()))?;
        if n == 0 {
            return Err(malformed(
                "the connection closed before a whole response head",
            ));
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let status = response.code.unwrap_or(0);
                let mut length = None;
                let mut encoding = None;
                let mut headers = Vec::new();
                for header in response.headers.iter() {
                    headers.push((
                        header.name.to_string(),
                        String::from_utf8_lossy(header.value).into_owned(),
                    ));
                    if header.name.eq_ignore_ascii_case("content-length") {
                        let value = std::str::from_utf8(header.value)
                            .ok()
                            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                            .and_then(|v| v.parse::<u64>().ok())
                            .ok_or_else(|| malformed("a Content-Length that is not a number"))?;
                        if length.is_some_and(|l| l != value) {
                            return Err(malformed("two different Content-Lengths"));
                        }
                        length = Some(value);
                    } else if header.name.eq_ignore_ascii_case("content-encoding") {
                        if encoding.is_some() {
                            return Err(malformed("more than one Content-Encoding"));
                        }
                        encoding = Some(
                            String::from_utf8_lossy(header.value)
                                .trim()
                                .to_ascii_lowercase(),
                        );
                    } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
                        return Err(malformed(
                            "a Transfer-Encoding, which a Confide server never sends",
                        ));
                    }
                }
                break (len, status, length, encoding, headers);
            }
            Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD_BYTES => continue,
            Ok(httparse::Status::Partial) => {
                return Err(malformed("a response head over 16 KiB"));
            }
            Err(e) => return Err(FetchError::Malformed(format!("not HTTP/1.1 ({e})"))),
        }
    };
    if status != 200 {
        return Ok(Reply {
            status,
            headers,
            encoding,
            body: Vec::new(),
        });
    }
    let length = length.ok_or_else(|| malformed("no Content-Length"))?;
    if length > cap {
        return Err(FetchError::TooLarge(length));
    }
    *budget = budget.checked_sub(length).ok_or(FetchError::OverBudget)?;
    // `length <= cap`, and every cap is bounded by MAX_TOTAL_BYTES: it fits in memory.
    let length = usize::try_from(length).map_err(|_| FetchError::OverBudget)?;
    let mut body = buf.split_off(head_len.min(buf.len()));
    body.truncate(length);
    while body.len() < length {
        let want = (length - body.len()).min(chunk.len());
        let n = within(stream.read(&mut chunk[..want]))
            .await?
            .map_err(|e| FetchError::Malformed(e.to_string()))?;
        if n == 0 {
            return Err(FetchError::Malformed(format!(
                "the connection closed after {} of the {length} bytes announced",
                body.len()
            )));
        }
        body.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
    Ok(Reply {
        status,
        headers,
        encoding,
        body,
    })
}

/// `body` decompressed as `encoding` says, never to more than `limit` bytes (one more than the
/// file it should be, enough to tell that it is longer, and all a decompression bomb gets).
fn decompress(encoding: &str, body: &[u8], limit: u64) -> Result<Vec<u8>, String> {
    let reader: Box<dyn std::io::Read + '_> = match encoding {
        "gzip" | "x-gzip" => Box::new(flate2::read::GzDecoder::new(body)),
        "br" => Box::new(brotli::Decompressor::new(body, 4096)),
        other => return Err(format!("unknown Content-Encoding {:?}", shown(other))),
    };
    let mut out = Vec::new();
    reader
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| format!("it does not decompress: {e}"))?;
    Ok(out)
}

/// One thing that is not as the release has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The path (as the server or the manifest names it: not to be shown unescaped).
    pub path: String,
    /// The form it was asked for, if the problem is with one form.
    form: Option<Form>,
    /// What is wrong, in words (may quote the server: not to be shown unescaped).
    pub what: String,
}

impl Problem {
    /// The problem on one line, safe for a terminal.
    pub fn line(&self) -> String {
        let form = match self.form {
            Some(Form::Plain) | None => String::new(),
            Some(form) => format!(" ({} form)", form.name()),
        };
        // The description is ours, with any quoted server text already cut; the bound is a
        // backstop.
        format!(
            "{}{form}: {}",
            shown(&self.path),
            cut(&self.what, 4 * SHOWN_CHARS)
        )
    }

    /// The problem for `--json`: the exact texts.
    pub fn json(&self) -> serde_json::Value {
        json!({
            "path": self.path,
            "form": self.form.map(Form::name),
            "problem": self.what,
        })
    }
}

/// What [`verify`] found.
pub struct Report {
    /// The server, `https://host:port`.
    pub server: String,
    /// The release hash it had to serve.
    pub expected: String,
    /// The SHA-256 of the manifest it served, if it served one.
    pub served: Option<String>,
    /// How many paths were checked (each in every form): the manifest, `/` and the files.
    pub checked: usize,
    /// Everything that differs from the release, in the order found.
    pub problems: Vec<Problem>,
    /// Whether the files could be compared with the release's manifest (not when only a
    /// release hash was given and the server's manifest is another).
    pub compared_files: bool,
    /// The sources the server's policy lets the app connect to besides its own origin (the
    /// relay of an app hosted apart from it, PROTOCOL.md §9.1.1), as the manifest's answer had
    /// them: allowed, and reported so that the person checking sees where the app may talk to.
    pub connect_src: Vec<String>,
    /// The relay the server's `/web-config.json` names, if it names one (else the app connects
    /// to the server itself). Not part of the release: reported, not compared.
    pub relay: Option<String>,
}

impl Report {
    /// Whether the server serves the release: its manifest and every file, in every form.
    pub fn serves_release(&self) -> bool {
        self.problems.is_empty() && self.served.as_deref() == Some(self.expected.as_str())
    }

    /// The verdict on one line, safe for a terminal.
    pub fn verdict(&self) -> String {
        if self.serves_release() {
            return format!(
                "the server serves release {} ({} paths checked, each plain, gzip, brotli and \
                 as browsers ask, with the release's security headers)",
                self.expected, self.checked
            );
        }
        let mut reasons = Vec::new();
        match &self.served {
            Some(served) if *served != self.expected => reasons.push(format!(
                "its asset-manifest.json has SHA-256 {served}, not {}",
                self.expected
            )),
            Some(_) => {}
            None => reasons.push("its asset-manifest.json could not be read".to_string()),
        }
        let mut paths: Vec<&str> = Vec::new();
        for problem in &self.problems {
            if problem.path != MANIFEST_PATH && !paths.contains(&problem.path.as_str()) {
                paths.push(&problem.path);
            }
        }
        if !paths.is_empty() {
            let mut named: Vec<String> = paths
                .iter()
                .take(NAMED_IN_VERDICT)
                .map(|p| shown(p))
                .collect();
            if paths.len() > NAMED_IN_VERDICT {
                named.push(format!("and {} more", paths.len() - NAMED_IN_VERDICT));
            }
            reasons.push(format!(
                "{} {} differ{}: {}",
                paths.len(),
                if paths.len() == 1 { "path" } else { "paths" },
                if paths.len() == 1 { "s" } else { "" },
                named.join(", ")
            ));
        }
        if !self.compared_files {
            reasons.push(
                "give --against a build of the release to see which files differ".to_string(),
            );
        }
        format!(
            "the server does NOT serve the expected release: {}",
            reasons.join("; ")
        )
    }

    /// Where the app served by this server connects, on one line safe for a terminal.
    pub fn connects_to(&self) -> String {
        let relay = match &self.relay {
            Some(relay) => format!("the relay {relay} (named in {WEB_CONFIG_PATH})"),
            None => "the server itself".to_string(),
        };
        if self.connect_src.is_empty() {
            format!("the app connects to {relay}")
        } else {
            format!(
                "the app connects to {relay}; its policy also allows connections to {}",
                self.connect_src.join(" ")
            )
        }
    }

    /// The report for `--json`.
    pub fn json(&self) -> serde_json::Value {
        json!({
            "relay": self.relay,
            "connect_src": self.connect_src,
            "server": self.server,
            "expected_release": self.expected,
            "served_manifest_sha256": self.served,
            "serves_release": self.serves_release(),
            "paths_checked": self.checked,
            "problems": self.problems.iter().map(Problem::json).collect::<Vec<_>>(),
        })
    }
}

/// Why [`verify`] could not check at all.
#[derive(Debug)]
pub struct Unreachable(pub String);

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unreachable {}

/// Checks what `origin` serves against `expected` (see the module documentation). Fails with
/// [`Unreachable`] when not even the manifest could be asked for; every other difference is a
/// [`Problem`] in the report.
pub async fn verify(
    origin: Origin,
    trust: &ServerTrust,
    expected: &Expected,
) -> anyhow::Result<Report> {
    let mut fetcher = Fetcher::new(origin, trust)?;
    let mut report = Report {
        server: fetcher.origin.url(),
        expected: expected.release(),
        served: None,
        checked: 1,
        problems: Vec::new(),
        compared_files: false,
        connect_src: Vec::new(),
        relay: None,
    };
    let problem = |path: &str, form: Option<Form>, what: String| Problem {
        path: path.to_string(),
        form,
        what,
    };

    // 1. The manifest: its hash is the release hash.
    let served = match fetcher
        .get(MANIFEST_PATH, Form::Plain, MAX_MANIFEST_BYTES)
        .await
    {
        Ok(reply) if reply.status == 200 => match reply.encoding.as_deref() {
            None | Some("identity") => {
                report.connect_src = extra_connect_sources(&reply.headers);
                let wrong = header_problems(MANIFEST_PATH, &reply.headers);
                if !wrong.is_empty() {
                    report
                        .problems
                        .push(problem(MANIFEST_PATH, None, wrong.join("; ")));
                }
                Some(reply.body)
            }
            Some(other) => {
                report.problems.push(problem(
                    MANIFEST_PATH,
                    None,
                    format!(
                        "sent with Content-Encoding {:?} though none was accepted",
                        shown(other)
                    ),
                ));
                None
            }
        },
        Ok(reply) => {
            report.problems.push(problem(
                MANIFEST_PATH,
                None,
                format!(
                    "the server answered {} (is the web app installed on it?)",
                    reply.status
                ),
            ));
            None
        }
        Err(e @ (FetchError::Unreachable(_) | FetchError::TimedOut)) => {
            return Err(Unreachable(format!("cannot check {}: {e}", report.server)).into());
        }
        Err(e) => {
            report
                .problems
                .push(problem(MANIFEST_PATH, None, e.to_string()));
            None
        }
    };
    let Some(served) = served else {
        return Ok(report);
    };
    report.relay = relay(&mut fetcher).await;
    let served_hash = sha256_hex(&served);
    report.served = Some(served_hash.clone());
    let manifest_matches = served_hash == report.expected;
    if !manifest_matches {
        report.problems.push(problem(
            MANIFEST_PATH,
            None,
            format!(
                "SHA-256 {served_hash}, the release's is {}",
                report.expected
            ),
        ));
    }

    // 2. The release's manifest: the local build's, or the server's when it is the release's.
    let reference = match expected {
        Expected::Build(bytes) => bytes.as_slice(),
        Expected::Hash(_) if manifest_matches => served.as_slice(),
        Expected::Hash(_) => return Ok(report),
    };
    let entries = match parse_manifest(reference) {
        Ok(entries) => entries,
        Err(e) => {
            // Only a server's manifest can get here (a local one was checked when read): the
            // release hash names a manifest that no build writes.
            report.problems.push(problem(MANIFEST_PATH, None, e));
            return Ok(report);
        }
    };
    report.compared_files = true;
    if !manifest_matches {
        // What the server lists beyond the release (a script added, say) is named too.
        if let Ok(listed) = serde_json::from_slice::<BTreeMap<String, serde_json::Value>>(&served) {
            for path in listed.keys().filter(|p| !entries.contains_key(*p)) {
                report.problems.push(problem(
                    path,
                    None,
                    "listed by the server's manifest, not in the release".to_string(),
                ));
            }
        }
    }

    // 3. Every form of the manifest, every listed file, and `/`.
    report.checked = 1 + entries.len() + usize::from(entries.contains_key(INDEX_PATH));
    let manifest_entry = Entry {
        sha256: served_hash,
        size: served.len() as u64,
    };
    let mut checks: Vec<(&str, &Entry, &[Form])> = Vec::new();
    if manifest_matches {
        checks.push((MANIFEST_PATH, &manifest_entry, &Form::ALL[1..]));
    }
    for (path, entry) in &entries {
        checks.push((path, entry, &Form::ALL));
    }
    match entries.get(INDEX_PATH) {
        Some(index) => checks.push(("/", index, &Form::ALL)),
        None => report.problems.push(problem(
            INDEX_PATH,
            None,
            "the release's manifest does not list it, so `/` cannot be checked".to_string(),
        )),
    }
    for (path, entry, forms) in checks {
        for &form in forms {
            if let Err(what) = check(&mut fetcher, path, entry, form).await {
                let what = if path == "/" {
                    format!("not the release's {INDEX_PATH}: {what}")
                } else {
                    what
                };
                report.problems.push(problem(path, Some(form), what));
            }
        }
    }
    Ok(report)
}

/// The relay `/web-config.json` names, shown cut and inert; `None` when it names none (404, or
/// an answer that is not `{"relay": "…"}`: the app would not start on it, and the check is not
/// about it).
async fn relay(fetcher: &mut Fetcher) -> Option<String> {
    let reply = fetcher
        .get(WEB_CONFIG_PATH, Form::Plain, MAX_WEB_CONFIG_BYTES)
        .await
        .ok()
        .filter(|reply| reply.status == 200)?;
    let config: serde_json::Value = serde_json::from_slice(&reply.body).ok()?;
    config.get("relay")?.as_str().map(shown)
}

/// Fetches `path` in `form` and compares it with `want`; the error says what differs.
async fn check(fetcher: &mut Fetcher, path: &str, want: &Entry, form: Form) -> Result<(), String> {
    let cap = match form {
        Form::Plain => want.size,
        Form::Gzip | Form::Brotli | Form::Browser => want
            .size
            .saturating_add(want.size / 16)
            .saturating_add(COMPRESSION_SLACK),
    };
    let reply = match fetcher.get(path, form, cap).await {
        Ok(reply) => reply,
        Err(FetchError::TooLarge(size)) if form == Form::Plain => {
            return Err(format!(
                "{size} bytes, the release's file has {}",
                want.size
            ));
        }
        Err(FetchError::TooLarge(size)) => {
            return Err(format!(
                "{size} bytes compressed, more than a {}-byte file needs",
                want.size
            ));
        }
        Err(e) => return Err(format!("could not be checked: {e}")),
    };
    if reply.status != 200 {
        return Err(format!("the server answered {}", reply.status));
    }
    let wrong_headers = header_problems(path, &reply.headers);
    let compared = compare(form, reply, want);
    match (compared, wrong_headers.is_empty()) {
        (Ok(()), true) => Ok(()),
        (Ok(()), false) => Err(wrong_headers.join("; ")),
        (Err(what), true) => Err(what),
        (Err(what), false) => Err(format!("{what}; {}", wrong_headers.join("; "))),
    }
}

/// Compares the body of `reply`, asked for in `form`, with `want`; the error says what differs.
fn compare(form: Form, reply: Reply, want: &Entry) -> Result<(), String> {
    let body = match (form, reply.encoding.as_deref()) {
        // No compressed form of this file on the server (or none asked for): the file itself.
        (_, None | Some("identity")) => reply.body,
        (Form::Gzip | Form::Browser, Some(encoding @ ("gzip" | "x-gzip")))
        | (Form::Brotli | Form::Browser, Some(encoding @ "br")) => {
            decompress(encoding, &reply.body, want.size.saturating_add(1))?
        }
        (Form::Browser, Some(other)) => {
            return Err(format!(
                "sent to browsers with Content-Encoding {:?}, which this check cannot decode, \
                 so it could hold anything",
                shown(other)
            ));
        }
        (_, Some(other)) => {
            return Err(format!(
                "sent with Content-Encoding {:?}, which was not asked for",
                shown(other)
            ));
        }
    };
    if body.len() as u64 != want.size {
        return Err(if body.len() as u64 > want.size {
            format!("longer than the release's {} bytes", want.size)
        } else {
            format!("{} bytes, the release's file has {}", body.len(), want.size)
        });
    }
    let digest = sha256_hex(&body);
    if digest != want.sha256 {
        return Err(format!(
            "SHA-256 {digest}, the release's is {}",
            want.sha256
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn server_addresses_are_read_with_their_port() {
        let o = Origin::parse("wss://Chat.Example.org:7443").unwrap();
        assert_eq!((o.host.as_str(), o.port), ("chat.example.org", 7443));
        assert_eq!(o.url(), "https://chat.example.org:7443");
        let o = Origin::parse("https://example.org/some/path?x").unwrap();
        assert_eq!((o.authority.as_str(), o.port), ("example.org:443", 443));
        let o = Origin::parse("wss://[::1]:9").unwrap();
        assert_eq!((o.host.as_str(), o.authority.as_str()), ("::1", "[::1]:9"));
        for bad in [
            "ws://localhost:1",
            "http://localhost:1",
            "wss://",
            "wss://user@host:1",
            "wss://host:0",
            "wss://host:99999",
            "wss://[::1",
            "wss://ho st:1",
            "localhost:7443",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_paths_the_server_would_serve_are_requested() {
        for good in ["/index.html", "/assets/app-3f9a.js", "/a/b~c@d+e_f.wasm"] {
            assert!(servable(good), "{good}");
        }
        for bad in [
            "index.html",
            "/",
            "/a//b",
            "/../etc/passwd",
            "/a b",
            "/a\r\nHost: evil",
            "/asset-manifest.json",
            "/%2e%2e",
        ] {
            assert!(!servable(bad), "{bad:?}");
        }
    }

    #[test]
    fn release_hashes_are_64_hex_digits() {
        let hash = "AB".repeat(32);
        let Expected::Hash(h) = Expected::hash(&format!(" {hash}\n")).unwrap() else {
            panic!()
        };
        assert_eq!(h, "ab".repeat(32));
        assert!(Expected::hash("abc").is_err());
        assert!(Expected::hash(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn a_compressed_body_never_decompresses_past_its_limit() {
        use std::io::Write as _;
        let big = vec![b'a'; 1 << 20];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&big).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(decompress("gzip", &gz, 11).unwrap().len(), 11);
        assert!(decompress("gzip", b"not gzip", 11).is_err());
        assert!(decompress("deflate", &gz, 11).is_err());
    }

    #[test]
    fn the_expected_headers_are_the_servers() {
        use confide_server::web;
        assert_eq!(CSP_START, web::CSP_CONNECT);
        assert_eq!(CSP_END, web::CSP_REST);
        assert_eq!(
            SECURITY_HEADERS,
            [
                ("X-Content-Type-Options", web::X_CONTENT_TYPE_OPTIONS),
                ("Referrer-Policy", web::REFERRER_POLICY),
                (
                    "Cross-Origin-Opener-Policy",
                    web::CROSS_ORIGIN_OPENER_POLICY
                ),
                (
                    "Cross-Origin-Embedder-Policy",
                    web::CROSS_ORIGIN_EMBEDDER_POLICY
                ),
                (
                    "Cross-Origin-Resource-Policy",
                    web::CROSS_ORIGIN_RESOURCE_POLICY
                ),
                ("X-Frame-Options", web::X_FRAME_OPTIONS),
                ("Permissions-Policy", web::PERMISSIONS_POLICY),
            ]
        );
        for path in [
            "/index.html",
            "/a.js",
            "/a.mjs",
            "/a.css",
            "/a.wasm",
            "/a.json",
            "/manifest.webmanifest",
            "/a.png",
            "/a.svg",
            "/favicon.ico",
            "/robots.txt",
            "/a.bin",
            "/noext",
        ] {
            assert_eq!(content_type(path), web::content_type(path), "{path}");
        }
        assert_eq!(content_type("/"), web::content_type(INDEX_PATH));
    }

    #[test]
    fn extra_connect_sources_pass_and_other_policy_changes_do_not() {
        let headers = |csp: &str| {
            let mut h: Vec<(String, String)> = SECURITY_HEADERS
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            h.push(("Content-Type".into(), "application/wasm".into()));
            h.push(("Content-Security-Policy".into(), csp.to_string()));
            h
        };
        let ok = format!("{CSP_START}{CSP_END}");
        assert!(header_problems("/a.wasm", &headers(&ok)).is_empty());
        let extra = format!("{CSP_START} https://push.example{CSP_END}");
        assert!(header_problems("/a.wasm", &headers(&extra)).is_empty());
        for bad in [
            format!("{CSP_START}; script-src *{CSP_END}"),
            format!("{CSP_START}https://x{CSP_END}"),
            ok.replace("'none'; object", "*; object"),
            String::new(),
        ] {
            assert!(
                !header_problems("/a.wasm", &headers(&bad)).is_empty(),
                "{bad}"
            );
        }
        assert!(!header_problems("/a.js", &headers(&ok)).is_empty(), "type");
    }

    #[test]
    fn server_text_is_shown_on_one_line_without_controls_and_cut() {
        let line = Problem {
            path: "/x\u{1b}]0;owned\u{7}\n/fake: ok".into(),
            form: Some(Form::Brotli),
            what: "y".repeat(500),
        }
        .line();
        assert!(!line.contains('\u{1b}') && !line.contains('\n'), "{line}");
        assert!(line.contains("(brotli form)"));
        assert!(line.chars().count() < 5 * SHOWN_CHARS + 40, "{line}");
    }
}
