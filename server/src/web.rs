//! The web app's files, served by the relay on its own port and origin (PROTOCOL.md §9.1.1).
//!
//! [`WebAssets`] is loaded once, at startup, from the directory a build of the web app wrote
//! (`cargo xtask web`). Its `asset-manifest.json` lists every file that may be served, each with
//! its size and SHA-256; every listed file is read into memory and checked, and so are its
//! pre-compressed siblings (`X.br`, `X.gz`), which must decompress to exactly the file. Any
//! mismatch refuses to start, naming the file: a half-copied or hand-edited build is caught
//! before anyone is served it.
//!
//! Requests never touch the filesystem: a path is either a key of the in-memory map or answered
//! 404, so no request can reach a file outside the build (there is no path traversal to get
//! wrong, and no time-of-check/time-of-use window).
//!
//! [`respond`] turns one request into a [`Response`]. It is pure (no I/O), so the routing, the
//! content negotiation and the headers are unit-tested without a socket; [`crate::http`] reads
//! requests from a connection and writes the responses.

use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Default bound on what the web app may hold in memory: every listed file, its `.br` and `.gz`
/// siblings and the manifest, together. The app's budget is 1.5 MiB compressed (the plan, §8),
/// so this leaves ample room for the uncompressed copies and growth, and still bounds what a
/// wrong `--web-dir` (a home directory, say) could make the server load. Set `web_max_bytes` in
/// the config file to change it.
pub const DEFAULT_WEB_MAX_BYTES: usize = 32 * 1024 * 1024;

/// The manifest's file name inside the web directory.
pub const MANIFEST_FILE: &str = "asset-manifest.json";
/// The path the manifest itself is served under (the service worker reads it to precache the
/// app and to show the release hash). It is not listed in itself: it cannot hold its own hash.
pub const MANIFEST_PATH: &str = "/asset-manifest.json";
/// What `/` serves; the manifest must list it.
pub const INDEX_PATH: &str = "/index.html";
/// Where the app reads which relay to connect to, when the server was given one
/// (`--web-relay`, [`WebSettings::with_relay`]): `{"relay":"wss://relay.example.org/"}`. Without
/// one it is 404, which the app reads as "the relay is this origin". It is data the server
/// answers itself, not a file of the build, so it is not in the manifest and not part of the
/// release hash: whoever hosts the app is trusted with the code anyway (PROTOCOL.md §9.1.1).
pub const WEB_CONFIG_PATH: &str = "/web-config.json";
/// The body of every 404 of a server started without `--web-dir`, so that a person who opens
/// the server's address in a browser learns why there is nothing.
pub const NOT_INSTALLED: &str = "the web app is not installed on this server\n";
/// The body of a 404 for a path the manifest does not list.
const NOT_FOUND: &str = "not found\n";

/// `Content-Security-Policy`, up to and including `connect-src 'self'` (an operator's extra
/// sources follow it, then [`CSP_REST`]). Why each directive:
/// - `default-src 'none'`: anything not allowed below is refused.
/// - `script-src 'self' 'wasm-unsafe-eval'`: only our own script files run (no inline script,
///   no `eval`), and WebAssembly may be compiled — the client core is wasm.
/// - `style-src 'self'`, `img-src 'self'`: our own stylesheet and images only; no inline
///   `style` attributes, and no image that could beacon to another server.
/// - `font-src 'none'`: the app uses the system fonts.
/// - `connect-src 'self'`: `fetch` and websockets only to this origin (in CSP3 `'self'` covers
///   the same origin's `wss:`), so a compromised script cannot send anything elsewhere.
pub const CSP_CONNECT: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; \
     style-src 'self'; img-src 'self'; font-src 'none'; connect-src 'self'";
/// The rest of `Content-Security-Policy`. Why each directive:
/// - `worker-src 'self'`, `manifest-src 'self'`: the core's worker, the service worker and the
///   PWA manifest come from this origin only.
/// - `base-uri 'none'`, `form-action 'none'`: no injected `<base>` can redirect relative URLs,
///   no form can post anywhere (the app has none).
/// - `frame-ancestors 'none'`: no other page may frame the app (clickjacking).
/// - `object-src 'none'`: no plugins.
/// - `require-trusted-types-for 'script'`; `trusted-types svelte-trusted-html
///   confide-worker-url`: DOM sinks that parse HTML or load scripts accept only values made by
///   these two policies — Svelte's own for compiled templates, and ours, which passes only the
///   build's own worker scripts on the same origin (`/assets/worker-<hash>.js`, `/sw.js`) — so a
///   stray string can never become markup or code.
pub const CSP_REST: &str = "; worker-src 'self'; manifest-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'; object-src 'none'; \
     require-trusted-types-for 'script'; trusted-types svelte-trusted-html confide-worker-url";
/// `X-Content-Type-Options`: the browser uses the `Content-Type` we send and never guesses from
/// the bytes, so no file is ever run as a script or rendered as a page it was not meant to be.
pub const X_CONTENT_TYPE_OPTIONS: &str = "nosniff";
/// `Referrer-Policy`: a link followed from the app tells the other site nothing, not even that
/// the person uses Confide on this server.
pub const REFERRER_POLICY: &str = "no-referrer";
/// `Cross-Origin-Opener-Policy`: a page that opens the app, or that the app opens, gets no
/// handle to its window; with COEP below, the app is cross-origin isolated.
pub const CROSS_ORIGIN_OPENER_POLICY: &str = "same-origin";
/// `Cross-Origin-Embedder-Policy`: the app may load nothing from another origin that has not
/// agreed to it (it loads nothing from other origins at all).
pub const CROSS_ORIGIN_EMBEDDER_POLICY: &str = "require-corp";
/// `Cross-Origin-Resource-Policy`: other sites cannot load our files (as a script or an image,
/// to probe them or to read them through a side channel).
pub const CROSS_ORIGIN_RESOURCE_POLICY: &str = "same-origin";
/// `X-Frame-Options`: no framing, for browsers that do not know `frame-ancestors`.
pub const X_FRAME_OPTIONS: &str = "DENY";
/// `Permissions-Policy`: powerful features the app never uses are off for it and anything it
/// could embed, so that injected code could not use them either.
pub const PERMISSIONS_POLICY: &str =
    "camera=(), microphone=(), geolocation=(), payment=(), usb=(), browsing-topics=()";
/// `Strict-Transport-Security` (two years): once a browser has used the app over TLS it never
/// tries plain HTTP for this host, so nobody on the path can downgrade it. Sent only with a real
/// certificate (not with `--dev`): a browser remembers it, and a development host name would
/// then refuse plain HTTP for other local services for two years.
pub const STRICT_TRANSPORT_SECURITY: &str = "max-age=63072000";
/// `Cache-Control` of every file outside [`IMMUTABLE_PREFIX`] (the entry points, the
/// manifests, and anything else whose name is not known to carry a hash): the browser asks again
/// every time, so a new release is seen at once.
pub const CACHE_REVALIDATE: &str = "no-cache";
/// `Cache-Control` of the files under [`IMMUTABLE_PREFIX`]: the build names them with a hash of
/// their content, so a name never changes meaning and the browser may keep them for a year.
pub const CACHE_IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// The only folder whose files are cached for good ([`CACHE_IMMUTABLE`]): Vite puts every
/// hashed file there (`assets/NAME-HASH.EXT`). Anything else (the index, the service worker,
/// the manifests, icons or `robots.txt` from `public/`) is [`CACHE_REVALIDATE`], so that a file
/// of a bad release does not stay in caches for a year after the fix.
pub const IMMUTABLE_PREFIX: &str = "/assets/";
/// `Cache-Control` of [`WEB_CONFIG_PATH`]: never kept, so that a changed relay is seen at the
/// next start of the app, and no cache holds where a person chats.
pub const CACHE_NO_STORE: &str = "no-store";
/// `Allow` on a 405: the only methods served.
const ALLOW: &str = "GET, HEAD";

/// The `Content-Type` of a file, by its extension; a file of another type is served as
/// `application/octet-stream`, which with `nosniff` a browser never runs or renders.
pub fn content_type(path: &str) -> &'static str {
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

/// The `Cache-Control` of a path: see [`IMMUTABLE_PREFIX`].
pub fn cache_control(path: &str) -> &'static str {
    if path.starts_with(IMMUTABLE_PREFIX) {
        CACHE_IMMUTABLE
    } else {
        CACHE_REVALIDATE
    }
}

/// Why the web directory could not be loaded. Each names the file at fault and says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebError {
    /// A file could not be read.
    #[error("cannot read the web app's file {}: {reason}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// What the operating system said.
        reason: String,
    },
    /// A file is not what the manifest says, or the manifest itself is not valid.
    #[error(
        "the web app's file {} is not what the build wrote: {reason}. Build the web app again \
         (cargo xtask web) or copy its whole directory again",
        file.display()
    )]
    Mismatch {
        /// The file.
        file: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The files together are larger than the configured budget.
    #[error(
        "the web app is larger than the {limit} bytes allowed (reached at {}); raise \
         web_max_bytes in the config file if it is meant to be that large",
        file.display()
    )]
    TooLarge {
        /// The file that went over the budget.
        file: PathBuf,
        /// The budget (`web_max_bytes`).
        limit: usize,
    },
    /// The relay the web app should connect to (`web_relay`) is not a websocket origin it may
    /// use.
    #[error(
        "invalid web_relay {value:?}: {reason}. Give the relay's address such as \
         wss://relay.example.org/ (ws:// only to localhost, 127.0.0.1 or [::1], for development)"
    )]
    Relay {
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The extra `connect-src` sources would not make a valid policy.
    #[error(
        "invalid web_connect_src {value:?}: {reason}. Give space-separated sources such as \
         wss://relay.example.org"
    )]
    ConnectSrc {
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// One servable file, held in memory with its pre-compressed forms.
struct Asset {
    /// The file as listed in the manifest.
    identity: Vec<u8>,
    /// `X.br`, if the build wrote it; checked to decompress to `identity`.
    brotli: Option<Vec<u8>>,
    /// `X.gz`, if the build wrote it; checked to decompress to `identity`.
    gzip: Option<Vec<u8>>,
}

/// One entry of `asset-manifest.json`. Other fields are ignored, so that a later build can add
/// some (an SRI hash, say) without an older server refusing it.
#[derive(serde::Deserialize)]
struct ManifestEntry {
    /// SHA-256 of the file, hex.
    sha256: String,
    /// The file's length in bytes.
    size: u64,
}

/// The web app's files, loaded and checked at startup (see the module documentation).
pub struct WebAssets {
    /// Every servable file by its URL path (starting with `/`): the manifest's entries and the
    /// manifest itself.
    files: HashMap<String, Asset>,
    /// Bytes held, all forms together.
    bytes: usize,
}

impl std::fmt::Debug for WebAssets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebAssets")
            .field("files", &self.files.len())
            .field("bytes", &self.bytes)
            .finish()
    }
}

/// What is left of the memory budget while loading.
struct Budget {
    left: usize,
    limit: usize,
}

impl Budget {
    fn take(&mut self, bytes: u64, file: &Path) -> Result<(), WebError> {
        let too_large = || WebError::TooLarge {
            file: file.to_path_buf(),
            limit: self.limit,
        };
        let bytes = usize::try_from(bytes).map_err(|_| too_large())?;
        self.left = self.left.checked_sub(bytes).ok_or_else(too_large)?;
        Ok(())
    }
}

impl WebAssets {
    /// Reads and checks the web app in `dir` (see the module documentation), holding at most
    /// `max_bytes` (see [`DEFAULT_WEB_MAX_BYTES`]).
    pub fn load(dir: &Path, max_bytes: usize) -> Result<WebAssets, WebError> {
        let mut budget = Budget {
            left: max_bytes,
            limit: max_bytes,
        };
        let manifest_file = dir.join(MANIFEST_FILE);
        let manifest = read_within(&manifest_file, &mut budget)?;
        let entries: BTreeMap<String, ManifestEntry> =
            serde_json::from_slice(&manifest).map_err(|e| WebError::Mismatch {
                file: manifest_file.clone(),
                reason: format!(
                    "not a JSON object of {{\"/path\": {{\"sha256\": hex, \"size\": bytes}}}}: {e}"
                ),
            })?;
        if !entries.contains_key(INDEX_PATH) {
            return Err(WebError::Mismatch {
                file: manifest_file,
                reason: format!("it does not list {INDEX_PATH}, which `/` serves"),
            });
        }
        let mut files = HashMap::with_capacity(entries.len() + 1);
        for (path, entry) in &entries {
            let relative = check_path(path).map_err(|reason| WebError::Mismatch {
                file: manifest_file.clone(),
                reason: format!("it lists {path:?}, {reason}"),
            })?;
            let file = dir.join(relative);
            budget.take(entry.size, &file)?;
            let identity = read_capped(&file, entry.size.saturating_add(1))?;
            if identity.len() as u64 != entry.size {
                return Err(WebError::Mismatch {
                    file,
                    reason: format!(
                        "it has {} bytes where the manifest says {}",
                        if identity.len() as u64 > entry.size {
                            "more".to_string()
                        } else {
                            identity.len().to_string()
                        },
                        entry.size
                    ),
                });
            }
            let digest = hex::encode(Sha256::digest(&identity));
            if !digest.eq_ignore_ascii_case(entry.sha256.trim()) {
                return Err(WebError::Mismatch {
                    file,
                    reason: format!(
                        "its SHA-256 is {digest}, the manifest says {}",
                        entry.sha256
                    ),
                });
            }
            let asset = with_siblings(&file, identity, &mut budget)?;
            files.insert(path.clone(), asset);
        }
        let asset = with_siblings(&manifest_file, manifest, &mut budget)?;
        files.insert(MANIFEST_PATH.to_string(), asset);
        Ok(WebAssets {
            files,
            bytes: max_bytes - budget.left,
        })
    }

    /// How many paths are served (the manifest's entries and the manifest).
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether nothing is served (never, once loaded: the manifest always is).
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Bytes held in memory, every form of every file together.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// Whether a manifest key is a path we are willing to serve, and the file it names relative to
/// the directory. Only plain, already-normalised paths are accepted: each segment non-empty and
/// not `.` or `..`, of letters, digits and `-_.~@+` (what a build's hashed names use), so that
/// the URL a browser requests is exactly the key, with nothing to decode.
fn check_path(path: &str) -> Result<&str, &'static str> {
    let Some(relative) = path.strip_prefix('/') else {
        return Err("which does not start with /");
    };
    if path == MANIFEST_PATH {
        return Err("the manifest itself, which cannot hold its own hash");
    }
    if path == WEB_CONFIG_PATH {
        return Err("which the server answers itself (the relay setting, --web-relay)");
    }
    for segment in relative.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err("which has an empty, `.` or `..` segment");
        }
        if !segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~@+".contains(&b))
        {
            return Err("which has characters other than letters, digits and -_.~@+");
        }
    }
    Ok(relative)
}

/// Reads `file` (at most `cap` bytes of it).
fn read_capped(file: &Path, cap: u64) -> Result<Vec<u8>, WebError> {
    let read_err = |e: std::io::Error| WebError::Read {
        file: file.to_path_buf(),
        reason: e.to_string(),
    };
    let handle = std::fs::File::open(file).map_err(read_err)?;
    let mut bytes = Vec::new();
    handle.take(cap).read_to_end(&mut bytes).map_err(read_err)?;
    Ok(bytes)
}

/// Reads a whole file, charging its size to `budget`.
fn read_within(file: &Path, budget: &mut Budget) -> Result<Vec<u8>, WebError> {
    let bytes = read_capped(file, (budget.left as u64).saturating_add(1))?;
    budget.take(bytes.len() as u64, file)?;
    Ok(bytes)
}

/// `file` with `.ext` appended to its name.
fn sibling(file: &Path, ext: &str) -> PathBuf {
    let mut name = file.as_os_str().to_os_string();
    name.push(".");
    name.push(ext);
    PathBuf::from(name)
}

/// The asset of `identity`, with the `.br` and `.gz` siblings of `file` if they exist, each
/// checked to decompress to exactly `identity`.
fn with_siblings(file: &Path, identity: Vec<u8>, budget: &mut Budget) -> Result<Asset, WebError> {
    let brotli = compressed_sibling(file, "br", &identity, budget, |bytes| {
        Box::new(brotli::Decompressor::new(bytes, 4096))
    })?;
    let gzip = compressed_sibling(file, "gz", &identity, budget, |bytes| {
        Box::new(flate2::read::GzDecoder::new(bytes))
    })?;
    Ok(Asset {
        identity,
        brotli,
        gzip,
    })
}

/// Loads `file.ext` if it exists and checks that `decoder` turns it into `identity`.
fn compressed_sibling(
    file: &Path,
    ext: &str,
    identity: &[u8],
    budget: &mut Budget,
    decoder: impl for<'a> Fn(&'a [u8]) -> Box<dyn std::io::Read + 'a>,
) -> Result<Option<Vec<u8>>, WebError> {
    let path = sibling(file, ext);
    match std::fs::metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(WebError::Read {
                file: path,
                reason: e.to_string(),
            });
        }
        Ok(_) => {}
    }
    let compressed = read_within(&path, budget)?;
    let mut decoded = Vec::with_capacity(identity.len());
    // One byte more than the original is enough to tell that it is longer, and bounds what a
    // decompression bomb could make us allocate.
    let result = decoder(&compressed)
        .take(identity.len() as u64 + 1)
        .read_to_end(&mut decoded);
    let mismatch = |reason: String| WebError::Mismatch {
        file: path.clone(),
        reason,
    };
    match result {
        Err(e) => Err(mismatch(format!("it does not decompress: {e}"))),
        Ok(_) if decoded != identity => Err(mismatch(format!(
            "it does not decompress to {} (left over from an older build?)",
            file.display()
        ))),
        Ok(_) => Ok(Some(compressed)),
    }
}

/// How the relay serves the web app: the files (if any), the policy and whether to send HSTS.
#[derive(Clone)]
pub struct WebSettings {
    /// The files; `None` without `--web-dir`, and every path is then answered with
    /// [`NOT_INSTALLED`].
    assets: Option<Arc<WebAssets>>,
    /// The whole `Content-Security-Policy`, built once.
    csp: String,
    /// Whether to send [`STRICT_TRANSPORT_SECURITY`] (not with a development certificate).
    hsts: bool,
    /// The body of [`WEB_CONFIG_PATH`] when the app is to connect to another relay; `None`
    /// answers 404 there (the app then connects to its own origin).
    web_config: Option<String>,
}

impl Default for WebSettings {
    /// No web app; HSTS on (what a server with a real certificate sends).
    fn default() -> Self {
        WebSettings {
            assets: None,
            csp: format!("{CSP_CONNECT}{CSP_REST}"),
            hsts: true,
            web_config: None,
        }
    }
}

impl std::fmt::Debug for WebSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSettings")
            .field("assets", &self.assets)
            .field("csp", &self.csp)
            .field("hsts", &self.hsts)
            .field("web_config", &self.web_config)
            .finish()
    }
}

impl WebSettings {
    /// Serves `assets` (or answers [`NOT_INSTALLED`] without them). `extra_connect_src` adds
    /// sources to `connect-src` after `'self'` (for a web app hosted on its own origin that
    /// talks to this relay, `wss://relay.example.org`): separated by spaces, each of visible
    /// ASCII without `;`, `,` or quotes, so that it can add sources but never another directive
    /// or header.
    /// `hsts` sends [`STRICT_TRANSPORT_SECURITY`].
    pub fn new(
        assets: Option<Arc<WebAssets>>,
        extra_connect_src: Option<&str>,
        hsts: bool,
    ) -> Result<WebSettings, WebError> {
        let mut csp = CSP_CONNECT.to_string();
        if let Some(extra) = extra_connect_src {
            let bad = |reason: &str| WebError::ConnectSrc {
                value: extra.to_string(),
                reason: reason.to_string(),
            };
            let mut any = false;
            for source in extra.split(' ').filter(|s| !s.is_empty()) {
                if !source
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !b";,'\"".contains(&b))
                {
                    return Err(bad(
                        "sources are separated by spaces and hold only visible ASCII other \
                         than ; , and quotes",
                    ));
                }
                csp.push(' ');
                csp.push_str(source);
                any = true;
            }
            if !any {
                return Err(bad("it is empty"));
            }
        }
        csp.push_str(CSP_REST);
        Ok(WebSettings {
            assets,
            csp,
            hsts,
            web_config: None,
        })
    }

    /// Makes the app served here connect to `relay` (`--web-relay`, a [`Relay`]'s text) instead
    /// of this origin: its origin is added to `connect-src` right after `'self'`, and
    /// [`WEB_CONFIG_PATH`] names it. `None` changes nothing.
    pub fn with_relay(mut self, relay: Option<&str>) -> Result<WebSettings, WebError> {
        let Some(relay) = relay else {
            return Ok(self);
        };
        let relay = Relay::parse(relay)?;
        self.csp
            .insert_str(CSP_CONNECT.len(), &format!(" {}", relay.origin()));
        self.web_config = Some(serde_json::json!({ "relay": relay.url() }).to_string());
        Ok(self)
    }

    /// The body of [`WEB_CONFIG_PATH`], if the app is to connect to another relay.
    pub fn web_config(&self) -> Option<&str> {
        self.web_config.as_deref()
    }

    /// The files served, if any.
    pub fn assets(&self) -> Option<&WebAssets> {
        self.assets.as_deref()
    }

    /// The `Content-Security-Policy` sent with every response.
    pub fn content_security_policy(&self) -> &str {
        &self.csp
    }

    /// Whether `Strict-Transport-Security` is sent.
    pub fn hsts(&self) -> bool {
        self.hsts
    }
}

/// The relay a web app hosted here connects to (`--web-relay`): a websocket origin, `wss://` —
/// or `ws://` to a loopback name, for development — with a host and an optional port, and
/// nothing else (no user, path, query or fragment), so that it is exactly one `connect-src`
/// source and the app needs to check nothing more than its scheme.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relay {
    /// `scheme://host[:port]`, lowercase.
    origin: String,
}

/// The loopback names `ws://` is allowed to (the app checks the same list).
pub const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

impl Relay {
    /// Parses and checks `value` (see [`Relay`]); a trailing `/` is allowed.
    pub fn parse(value: &str) -> Result<Relay, WebError> {
        let bad = |reason: &str| WebError::Relay {
            value: value.to_string(),
            reason: reason.to_string(),
        };
        let lower = value.trim().to_ascii_lowercase();
        let (scheme, rest) = if let Some(rest) = lower.strip_prefix("wss://") {
            ("wss", rest)
        } else if let Some(rest) = lower.strip_prefix("ws://") {
            ("ws", rest)
        } else {
            return Err(bad("it must start with wss://"));
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#', '@']) {
            return Err(bad(
                "it must be only a scheme, a host and a port (no user, path, query or fragment)",
            ));
        }
        let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
            let Some((address, after)) = inner.split_once(']') else {
                return Err(bad("its IPv6 address has no closing ]"));
            };
            if address.is_empty() || !address.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
                return Err(bad("its IPv6 address is not one"));
            }
            (&authority[..address.len() + 2], after)
        } else {
            let end = authority.find(':').unwrap_or(authority.len());
            (&authority[..end], &authority[end..])
        };
        let hostname_ok = host.starts_with('[')
            || (!host.is_empty()
                && !host.starts_with(['.', '-'])
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'));
        if !hostname_ok {
            return Err(bad("its host is not a host name or an IP address"));
        }
        if !port.is_empty() {
            let digits = port.strip_prefix(':').unwrap_or(port);
            if !matches!(digits.parse::<u16>(), Ok(p) if p > 0 && digits.bytes().all(|b| b.is_ascii_digit()))
            {
                return Err(bad("its port is not a number from 1 to 65535"));
            }
        }
        if scheme == "ws" && !LOOPBACK_HOSTS.contains(&host) {
            return Err(bad(
                "ws:// is unencrypted and allowed only to localhost, 127.0.0.1 or [::1]; use wss://",
            ));
        }
        Ok(Relay {
            origin: format!("{scheme}://{authority}"),
        })
    }

    /// `scheme://host[:port]`: the `connect-src` source.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// `scheme://host[:port]/`: what the app dials.
    pub fn url(&self) -> String {
        format!("{}/", self.origin)
    }
}

/// The request method, as far as serving files cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `GET`.
    Get,
    /// `HEAD`: the headers of a `GET`, without the body.
    Head,
    /// Anything else: answered 405.
    Other,
}

impl Method {
    /// The method of a request line's method token (case-sensitive, as HTTP says).
    pub fn parse(token: &str) -> Method {
        match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            _ => Method::Other,
        }
    }
}

/// The content codings a client accepts (of those the server has), from `Accept-Encoding`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Accepted {
    /// `br`.
    pub brotli: bool,
    /// `gzip` (or its old alias `x-gzip`).
    pub gzip: bool,
}

impl Accepted {
    /// Reads every `Accept-Encoding` value of a request (RFC 9110 §12.5.3). A coding is accepted
    /// unless its `q` is zero; `*` stands for every coding not named. The server's preference
    /// (brotli, then gzip, then none) decides among accepted ones, whatever their `q`.
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Accepted {
        let (mut brotli, mut gzip, mut any) = (None, None, None);
        for value in values {
            for element in value.split(|&b| b == b',') {
                let mut parts = element.split(|&b| b == b';');
                let coding = parts.next().unwrap_or_default().trim_ascii();
                let mut accepted = true;
                for param in parts {
                    let param = param.trim_ascii();
                    if let Some(q) = param
                        .strip_prefix(b"q=")
                        .or_else(|| param.strip_prefix(b"Q="))
                    {
                        accepted = !is_zero_qvalue(q.trim_ascii());
                    }
                }
                if coding.eq_ignore_ascii_case(b"br") {
                    brotli = Some(accepted);
                } else if coding.eq_ignore_ascii_case(b"gzip")
                    || coding.eq_ignore_ascii_case(b"x-gzip")
                {
                    gzip = Some(accepted);
                } else if coding == b"*" {
                    any = Some(accepted);
                }
            }
        }
        let any = any.unwrap_or(false);
        Accepted {
            brotli: brotli.unwrap_or(any),
            gzip: gzip.unwrap_or(any),
        }
    }
}

/// Whether a `q` value is zero (`0`, `0.`, `0.000`): only then is the coding refused.
fn is_zero_qvalue(q: &[u8]) -> bool {
    match q.split_first() {
        Some((b'0', rest)) => match rest.split_first() {
            None => true,
            Some((b'.', digits)) => digits.iter().all(|&b| b == b'0'),
            Some(_) => false,
        },
        _ => false,
    }
}

/// The status codes the file server answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// 200: the file.
    Ok,
    /// 400: a request head that does not parse.
    BadRequest,
    /// 404: no such file (or no web app).
    NotFound,
    /// 405: a method other than GET and HEAD.
    MethodNotAllowed,
    /// 431: a request head over 8 KiB or 32 header lines.
    HeadersTooLarge,
}

impl Status {
    /// The numeric code.
    pub fn code(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::BadRequest => 400,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::HeadersTooLarge => 431,
        }
    }

    /// The reason phrase.
    pub fn reason(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::BadRequest => "Bad Request",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::HeadersTooLarge => "Request Header Fields Too Large",
        }
    }

    /// Whether the connection must close after this response: after a refused request, the
    /// server does not know where the next one would start (it reads no request bodies).
    pub fn closes(self) -> bool {
        !matches!(self, Status::Ok | Status::NotFound)
    }
}

/// One response: status, header fields and body. `Connection` is left to the caller, which
/// knows whether the connection stays open.
#[derive(Debug)]
pub struct Response<'a> {
    /// The status.
    pub status: Status,
    /// Header fields in the order sent.
    pub headers: Vec<(&'static str, Cow<'a, str>)>,
    /// The body (of a GET; a HEAD gets the same headers and no body).
    pub body: &'a [u8],
    /// Whether the body is sent: false for HEAD.
    pub send_body: bool,
}

impl Response<'_> {
    /// The value of header `name` (case-insensitive), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
    }

    /// The status line and header fields, ending with the blank line; `close` adds
    /// `Connection: close`, otherwise `Connection: keep-alive`.
    pub fn head(&self, close: bool) -> String {
        use std::fmt::Write as _;
        let mut head = format!(
            "HTTP/1.1 {} {}\r\n",
            self.status.code(),
            self.status.reason()
        );
        for (name, value) in &self.headers {
            let _ = write!(head, "{name}: {value}\r\n");
        }
        head.push_str(if close {
            "Connection: close\r\n\r\n"
        } else {
            "Connection: keep-alive\r\n\r\n"
        });
        head
    }
}

/// The answer to one request (see the module documentation). `target` is the request-target as
/// sent; its query is ignored and it is matched exactly against the manifest's paths, `/`
/// serving [`INDEX_PATH`]. `now` gives the `Date` header.
pub fn respond<'a>(
    settings: &'a WebSettings,
    method: Method,
    target: &str,
    accepted: Accepted,
    now: SystemTime,
) -> Response<'a> {
    let send_body = method != Method::Head;
    if method == Method::Other {
        let mut response = plain(
            settings,
            Status::MethodNotAllowed,
            "method not allowed\n",
            now,
        );
        response.headers.push(("Allow", ALLOW.into()));
        return response;
    }
    if let (WEB_CONFIG_PATH, Some(config)) = (request_path(target), settings.web_config()) {
        let mut headers = vec![
            ("Content-Type", content_type(WEB_CONFIG_PATH).into()),
            ("Content-Length", config.len().to_string().into()),
            ("Cache-Control", CACHE_NO_STORE.into()),
        ];
        common_headers(settings, now, &mut headers);
        return Response {
            status: Status::Ok,
            headers,
            body: config.as_bytes(),
            send_body,
        };
    }
    let Some(assets) = settings.assets() else {
        return Response {
            send_body,
            ..plain(settings, Status::NotFound, NOT_INSTALLED, now)
        };
    };
    let path = request_path(target);
    let path = if path == "/" { INDEX_PATH } else { path };
    let Some(asset) = assets.files.get(path) else {
        return Response {
            send_body,
            ..plain(settings, Status::NotFound, NOT_FOUND, now)
        };
    };
    let (body, encoding) = match (&asset.brotli, &asset.gzip) {
        (Some(br), _) if accepted.brotli => (br.as_slice(), Some("br")),
        (_, Some(gz)) if accepted.gzip => (gz.as_slice(), Some("gzip")),
        _ => (asset.identity.as_slice(), None),
    };
    let mut headers = vec![
        ("Content-Type", content_type(path).into()),
        ("Content-Length", body.len().to_string().into()),
    ];
    if let Some(encoding) = encoding {
        headers.push(("Content-Encoding", encoding.into()));
    }
    headers.push(("Vary", "Accept-Encoding".into()));
    headers.push(("Cache-Control", cache_control(path).into()));
    common_headers(settings, now, &mut headers);
    Response {
        status: Status::Ok,
        headers,
        body,
        send_body,
    }
}

/// A plain-text response with `status` (an error, or the "not installed" page).
pub fn plain<'a>(
    settings: &'a WebSettings,
    status: Status,
    body: &'static str,
    now: SystemTime,
) -> Response<'a> {
    let mut headers = vec![
        ("Content-Type", "text/plain; charset=utf-8".into()),
        ("Content-Length", body.len().to_string().into()),
        ("Cache-Control", CACHE_REVALIDATE.into()),
    ];
    common_headers(settings, now, &mut headers);
    Response {
        status,
        headers,
        body: body.as_bytes(),
        send_body: true,
    }
}

/// The header fields of every response: the date and the security policy. No `Server` (it
/// would only help an attacker pick an exploit) and never a cookie (so a cross-site websocket
/// has no ambient authority to abuse).
fn common_headers<'a>(
    settings: &'a WebSettings,
    now: SystemTime,
    headers: &mut Vec<(&'static str, Cow<'a, str>)>,
) {
    headers.push(("Date", http_date(now).into()));
    headers.push((
        "Content-Security-Policy",
        settings.content_security_policy().into(),
    ));
    headers.push(("X-Content-Type-Options", X_CONTENT_TYPE_OPTIONS.into()));
    headers.push(("Referrer-Policy", REFERRER_POLICY.into()));
    headers.push((
        "Cross-Origin-Opener-Policy",
        CROSS_ORIGIN_OPENER_POLICY.into(),
    ));
    headers.push((
        "Cross-Origin-Embedder-Policy",
        CROSS_ORIGIN_EMBEDDER_POLICY.into(),
    ));
    headers.push((
        "Cross-Origin-Resource-Policy",
        CROSS_ORIGIN_RESOURCE_POLICY.into(),
    ));
    headers.push(("X-Frame-Options", X_FRAME_OPTIONS.into()));
    headers.push(("Permissions-Policy", PERMISSIONS_POLICY.into()));
    if settings.hsts() {
        headers.push((
            "Strict-Transport-Security",
            STRICT_TRANSPORT_SECURITY.into(),
        ));
    }
}

/// The path of a request-target: the origin form without its query, or the path of the
/// absolute form (`https://host/path`), which HTTP/1.1 servers must accept too. Nothing is
/// decoded: the result is compared byte for byte with the manifest's paths.
fn request_path(target: &str) -> &str {
    let target = match target.find("://") {
        Some(scheme_end) if !target.starts_with('/') => {
            let after = &target[scheme_end + 3..];
            after.find('/').map_or("/", |slash| &after[slash..])
        }
        _ => target,
    };
    let end = target.find(['?', '#']).unwrap_or(target.len());
    &target[..end]
}

/// An HTTP date (RFC 9110 §5.6.7, IMF-fixdate): `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(now: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    // A clock before 1970 reads as 1970.
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's `civil_from_days`).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        // `month` is 1..=12 by construction.
        MONTHS[(month - 1) as usize % 12],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;
    use std::time::Duration;

    /// Writes a web directory with these files and a manifest listing them.
    fn web_dir(files: &[(&str, &[u8])]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let mut manifest = serde_json::Map::new();
        for (path, bytes) in files {
            let file = dir.path().join(path.trim_start_matches('/'));
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, bytes).unwrap();
            manifest.insert(
                path.to_string(),
                serde_json::json!({"sha256": hex::encode(Sha256::digest(bytes)), "size": bytes.len()}),
            );
        }
        std::fs::write(
            dir.path().join(MANIFEST_FILE),
            serde_json::to_vec(&manifest).unwrap(),
        )
        .unwrap();
        dir
    }

    fn brotli(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut writer = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
        writer.write_all(bytes).unwrap();
        drop(writer);
        out
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    const INDEX: &[u8] = b"<!doctype html><title>Confide</title>";

    fn settings(dir: &Path) -> WebSettings {
        let assets = WebAssets::load(dir, DEFAULT_WEB_MAX_BYTES).unwrap();
        WebSettings::new(Some(Arc::new(assets)), None, true).unwrap()
    }

    fn get<'a>(settings: &'a WebSettings, target: &str, accept: &str) -> Response<'a> {
        respond(
            settings,
            Method::Get,
            target,
            Accepted::parse([accept.as_bytes()]),
            UNIX_EPOCH,
        )
    }

    #[test]
    fn the_index_and_listed_files_are_served_with_their_type_and_caching() {
        let dir = web_dir(&[
            ("/index.html", INDEX),
            ("/assets/app-1a2b.js", b"export {}"),
            ("/assets/core-9f.wasm", b"\0asm\x01\0\0\0"),
            ("/icon-192.png", b"\x89PNG"),
        ]);
        let settings = settings(dir.path());
        // A file outside /assets/ has no hash in its name: revalidated, never kept for a year.
        let icon = get(&settings, "/icon-192.png", "");
        assert_eq!(icon.status, Status::Ok);
        assert_eq!(icon.header("Cache-Control"), Some("no-cache"));
        let index = get(&settings, "/", "");
        assert_eq!(index.status, Status::Ok);
        assert_eq!(index.body, INDEX);
        assert_eq!(
            index.header("Content-Type"),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(index.header("Cache-Control"), Some("no-cache"));
        assert_eq!(get(&settings, "/index.html?x=1", "").body, INDEX);
        let wasm = get(&settings, "/assets/core-9f.wasm", "");
        assert_eq!(wasm.header("Content-Type"), Some("application/wasm"));
        assert_eq!(
            wasm.header("Cache-Control"),
            Some("public, max-age=31536000, immutable")
        );
        let js = get(&settings, "https://localhost:7443/assets/app-1a2b.js", "");
        assert_eq!(js.body, b"export {}");
        assert_eq!(
            js.header("Content-Type"),
            Some("text/javascript; charset=utf-8")
        );
        let manifest = get(&settings, MANIFEST_PATH, "");
        assert_eq!(manifest.status, Status::Ok);
        assert_eq!(manifest.header("Content-Type"), Some("application/json"));
        assert_eq!(manifest.header("Cache-Control"), Some("no-cache"));
    }

    #[test]
    fn anything_not_listed_is_404_and_other_methods_405() {
        let dir = web_dir(&[("/index.html", INDEX), ("/assets/a.js", b"1")]);
        std::fs::write(dir.path().join("secret.txt"), b"not listed").unwrap();
        let settings = settings(dir.path());
        for target in [
            "/secret.txt",
            "/assets",
            "/assets/",
            "/assets/../index.html",
            "/%61ssets/a.js",
            "/index.html/",
            "//index.html",
            "*",
            "",
        ] {
            let response = get(&settings, target, "");
            assert_eq!(response.status, Status::NotFound, "{target}");
            assert_eq!(response.body, b"not found\n");
        }
        let post = respond(
            &settings,
            Method::Other,
            "/",
            Accepted::default(),
            UNIX_EPOCH,
        );
        assert_eq!(post.status, Status::MethodNotAllowed);
        assert_eq!(post.header("Allow"), Some("GET, HEAD"));
        assert!(post.status.closes());
    }

    #[test]
    fn head_has_the_headers_of_get_and_no_body() {
        let dir = web_dir(&[("/index.html", INDEX)]);
        let settings = settings(dir.path());
        let head = respond(
            &settings,
            Method::Head,
            "/",
            Accepted::default(),
            UNIX_EPOCH,
        );
        let get = get(&settings, "/", "");
        assert!(!head.send_body);
        assert_eq!(head.headers, get.headers);
    }

    #[test]
    fn compressed_forms_are_chosen_brotli_then_gzip_then_none() {
        let big = b"confide ".repeat(500);
        let dir = web_dir(&[("/index.html", INDEX), ("/app.js", &big)]);
        std::fs::write(dir.path().join("app.js.br"), brotli(&big)).unwrap();
        std::fs::write(dir.path().join("app.js.gz"), gzip(&big)).unwrap();
        let settings = settings(dir.path());
        for (accept, encoding, body) in [
            ("gzip, deflate, br, zstd", Some("br"), brotli(&big)),
            ("gzip", Some("gzip"), gzip(&big)),
            ("br;q=0, gzip;q=0.5", Some("gzip"), gzip(&big)),
            ("x-gzip", Some("gzip"), gzip(&big)),
            ("*", Some("br"), brotli(&big)),
            ("*;q=0, gzip", Some("gzip"), gzip(&big)),
            ("identity", None, big.clone()),
            ("", None, big.clone()),
            ("br;q=0.000, gzip;q=0", None, big.clone()),
        ] {
            let response = get(&settings, "/app.js", accept);
            assert_eq!(response.header("Content-Encoding"), encoding, "{accept:?}");
            assert_eq!(response.body, body, "{accept:?}");
            assert_eq!(
                response.header("Content-Length"),
                Some(body.len().to_string().as_str())
            );
            assert_eq!(response.header("Vary"), Some("Accept-Encoding"));
        }
        // A file without compressed forms is sent as it is, whatever is accepted.
        assert_eq!(
            get(&settings, "/", "br, gzip").header("Content-Encoding"),
            None
        );
    }

    #[test]
    fn a_tampered_file_refuses_to_load_and_names_it() {
        let dir = web_dir(&[("/index.html", INDEX), ("/assets/app.js", b"let a = 1;")]);
        std::fs::write(dir.path().join("assets/app.js"), b"let a = 2;").unwrap();
        let err = WebAssets::load(dir.path(), DEFAULT_WEB_MAX_BYTES).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("assets/app.js"), "{text}");
        assert!(text.contains("SHA-256"), "{text}");

        std::fs::write(dir.path().join("assets/app.js"), b"let a = 1;;").unwrap();
        let text = WebAssets::load(dir.path(), DEFAULT_WEB_MAX_BYTES)
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("assets/app.js") && text.contains("bytes"),
            "{text}"
        );

        std::fs::remove_file(dir.path().join("assets/app.js")).unwrap();
        let text = WebAssets::load(dir.path(), DEFAULT_WEB_MAX_BYTES)
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("cannot read") && text.contains("assets/app.js"),
            "{text}"
        );
    }

    #[test]
    fn a_stale_or_corrupt_compressed_form_refuses_to_load() {
        let dir = web_dir(&[("/index.html", INDEX)]);
        std::fs::write(dir.path().join("index.html.gz"), gzip(b"an older index")).unwrap();
        let text = WebAssets::load(dir.path(), DEFAULT_WEB_MAX_BYTES)
            .unwrap_err()
            .to_string();
        assert!(text.contains("index.html.gz"), "{text}");

        std::fs::write(dir.path().join("index.html.gz"), gzip(INDEX)).unwrap();
        std::fs::write(dir.path().join("index.html.br"), b"not brotli at all").unwrap();
        let text = WebAssets::load(dir.path(), DEFAULT_WEB_MAX_BYTES)
            .unwrap_err()
            .to_string();
        assert!(text.contains("index.html.br"), "{text}");

        std::fs::write(dir.path().join("index.html.br"), brotli(INDEX)).unwrap();
        let assets = WebAssets::load(dir.path(), DEFAULT_WEB_MAX_BYTES).unwrap();
        assert_eq!(assets.len(), 2, "the index and the manifest");
    }

    #[test]
    fn unsafe_manifest_paths_and_a_missing_index_refuse_to_load() {
        for key in [
            "/../secret",
            "/a/./b.js",
            "relative.js",
            "/a//b.js",
            "/dir/",
            "/a b.js",
            "/a%2e.js",
            "/a\\b.js",
            MANIFEST_PATH,
        ] {
            let dir = web_dir(&[("/index.html", INDEX)]);
            let manifest = serde_json::json!({
                "/index.html": {"sha256": hex::encode(Sha256::digest(INDEX)), "size": INDEX.len()},
                key: {"sha256": "00", "size": 0},
            });
            std::fs::write(
                dir.path().join(MANIFEST_FILE),
                serde_json::to_vec(&manifest).unwrap(),
            )
            .unwrap();
            let text = WebAssets::load(dir.path(), DEFAULT_WEB_MAX_BYTES)
                .unwrap_err()
                .to_string();
            assert!(
                text.contains(MANIFEST_FILE) && text.contains(&format!("{key:?}")),
                "{key}: {text}"
            );
        }
        let dir = web_dir(&[("/app.js", b"1")]);
        let text = WebAssets::load(dir.path(), DEFAULT_WEB_MAX_BYTES)
            .unwrap_err()
            .to_string();
        assert!(text.contains("/index.html"), "{text}");
        std::fs::write(dir.path().join(MANIFEST_FILE), b"[1, 2]").unwrap();
        let text = WebAssets::load(dir.path(), DEFAULT_WEB_MAX_BYTES)
            .unwrap_err()
            .to_string();
        assert!(text.contains(MANIFEST_FILE), "{text}");
    }

    #[test]
    fn the_memory_budget_is_enforced() {
        let big = vec![b'x'; 10_000];
        let dir = web_dir(&[("/index.html", INDEX), ("/big.js", &big)]);
        let err = WebAssets::load(dir.path(), 5_000).unwrap_err();
        assert!(
            matches!(err, WebError::TooLarge { limit: 5_000, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("big.js"), "{err}");
        let assets = WebAssets::load(dir.path(), 20_000).unwrap();
        assert!(assets.bytes() > 10_000 && assets.bytes() < 20_000);
    }

    #[test]
    fn without_a_web_app_every_path_says_so() {
        let settings = WebSettings::default();
        for target in ["/", "/index.html", "/x"] {
            let response = get(&settings, target, "");
            assert_eq!(response.status, Status::NotFound);
            assert_eq!(response.body, NOT_INSTALLED.as_bytes());
        }
    }

    #[test]
    fn every_response_carries_the_security_headers() {
        let dir = web_dir(&[("/index.html", INDEX)]);
        let with = settings(dir.path());
        let without = WebSettings::new(None, None, false).unwrap();
        for response in [
            get(&with, "/", ""),
            get(&with, "/missing", ""),
            respond(&with, Method::Other, "/", Accepted::default(), UNIX_EPOCH),
            get(&without, "/", ""),
        ] {
            for (name, value) in [
                ("X-Content-Type-Options", "nosniff"),
                ("Referrer-Policy", "no-referrer"),
                ("Cross-Origin-Opener-Policy", "same-origin"),
                ("Cross-Origin-Embedder-Policy", "require-corp"),
                ("Cross-Origin-Resource-Policy", "same-origin"),
                ("X-Frame-Options", "DENY"),
            ] {
                assert_eq!(response.header(name), Some(value), "{name}");
            }
            assert!(
                response
                    .header("Content-Security-Policy")
                    .unwrap()
                    .starts_with("default-src 'none';")
            );
            assert_eq!(response.header("Server"), None);
            assert_eq!(response.header("Set-Cookie"), None);
        }
        assert_eq!(
            get(&with, "/", "").header("Strict-Transport-Security"),
            Some("max-age=63072000")
        );
        assert_eq!(
            get(&without, "/", "").header("Strict-Transport-Security"),
            None
        );
    }

    #[test]
    fn extra_connect_sources_are_added_but_cannot_add_directives() {
        let settings =
            WebSettings::new(None, Some(" wss://relay.example.org  https://x.org "), true).unwrap();
        assert!(
            settings
                .content_security_policy()
                .contains("; connect-src 'self' wss://relay.example.org https://x.org; worker-src")
        );
        for bad in [
            "wss://a; script-src *",
            "a,b",
            "'unsafe-eval'",
            "",
            "  ",
            "wss://a\r\nSet-Cookie: x",
            "wss://ä",
        ] {
            assert!(
                matches!(
                    WebSettings::new(None, Some(bad), true),
                    Err(WebError::ConnectSrc { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_relay_setting_is_served_uncached_and_added_to_connect_src() {
        let dir = web_dir(&[("/index.html", INDEX)]);
        let relayed = settings(dir.path())
            .with_relay(Some("WSS://Relay.Example.org:8443/"))
            .unwrap();
        let config = get(&relayed, "/web-config.json?x", "br, gzip");
        assert_eq!(config.status, Status::Ok);
        assert_eq!(config.body, br#"{"relay":"wss://relay.example.org:8443/"}"#);
        assert_eq!(config.header("Content-Type"), Some("application/json"));
        assert_eq!(config.header("Cache-Control"), Some("no-store"));
        assert_eq!(config.header("Content-Encoding"), None);
        assert_eq!(config.header("X-Content-Type-Options"), Some("nosniff"));
        let csp = config.header("Content-Security-Policy").unwrap();
        assert_eq!(
            csp,
            get(&relayed, "/", "")
                .header("Content-Security-Policy")
                .unwrap()
        );
        assert!(
            csp.contains("; connect-src 'self' wss://relay.example.org:8443; worker-src"),
            "{csp}"
        );
        // With --web-connect-src too, the relay comes first; HEAD has no body.
        let both = WebSettings::new(None, Some("https://x.org"), true)
            .unwrap()
            .with_relay(Some("ws://[::1]:7443"))
            .unwrap();
        assert!(
            both.content_security_policy()
                .contains("; connect-src 'self' ws://[::1]:7443 https://x.org; worker-src")
        );
        let head = respond(
            &both,
            Method::Head,
            WEB_CONFIG_PATH,
            Accepted::default(),
            UNIX_EPOCH,
        );
        assert_eq!(head.status, Status::Ok);
        assert!(!head.send_body);
        // Without a relay the path is an ordinary 404: the app then uses its own origin.
        let plain = settings(dir.path()).with_relay(None).unwrap();
        assert_eq!(get(&plain, WEB_CONFIG_PATH, "").status, Status::NotFound);
        assert_eq!(
            get(&WebSettings::default(), WEB_CONFIG_PATH, "").status,
            Status::NotFound
        );
        assert_eq!(
            plain.content_security_policy(),
            format!("{CSP_CONNECT}{CSP_REST}")
        );
    }

    #[test]
    fn a_relay_that_is_not_a_websocket_origin_is_refused() {
        for good in [
            "wss://relay.example.org",
            "wss://relay.example.org/",
            "wss://10.0.0.7:7443/",
            "ws://localhost:7443/",
            "ws://127.0.0.1:1",
            "ws://[::1]:7443",
        ] {
            assert!(Relay::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "relay.example.org",
            "https://relay.example.org/",
            "ws://relay.example.org/",
            "ws://192.168.1.2:7443/",
            "wss://relay.example.org/chat",
            "wss://user@relay.example.org/",
            "wss://relay.example.org/?a=b",
            "wss://relay.example.org/#x",
            "wss://relay.example.org; script-src *",
            "wss://relay example.org",
            "wss://'self'",
            "wss://",
            "wss://relay.example.org:0/",
            "wss://relay.example.org:99999/",
            "wss://relay.example.org:+1/",
            "wss://[::1/",
            "wss://[zz]/",
            "wss://ä.example/",
        ] {
            let err = WebSettings::default().with_relay(Some(bad)).unwrap_err();
            assert!(matches!(err, WebError::Relay { .. }), "{bad:?}: {err}");
            assert!(
                err.to_string().contains("wss://relay.example.org/"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_build_cannot_list_the_relay_setting() {
        let dir = web_dir(&[("/index.html", INDEX), ("/web-config.json", b"{}")]);
        let text = WebAssets::load(dir.path(), DEFAULT_WEB_MAX_BYTES)
            .unwrap_err()
            .to_string();
        assert!(text.contains("/web-config.json"), "{text}");
    }

    #[test]
    fn dates_are_imf_fixdates() {
        assert_eq!(http_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            http_date(UNIX_EPOCH + Duration::from_secs(784_111_777)),
            "Sun, 06 Nov 1994 08:49:37 GMT"
        );
        assert_eq!(
            http_date(UNIX_EPOCH + Duration::from_secs(951_825_600)),
            "Tue, 29 Feb 2000 12:00:00 GMT"
        );
    }

    #[test]
    fn the_head_ends_with_the_connection_and_a_blank_line() {
        let settings = WebSettings::default();
        let response = get(&settings, "/", "");
        let head = response.head(false);
        assert!(head.starts_with("HTTP/1.1 404 Not Found\r\n"), "{head}");
        assert!(
            head.ends_with("\r\nConnection: keep-alive\r\n\r\n"),
            "{head}"
        );
        assert!(
            response
                .head(true)
                .ends_with("\r\nConnection: close\r\n\r\n")
        );
    }
}
