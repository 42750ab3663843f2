//! The `confide-server` binary as a user runs it: the README's command starts a working server,
//! plain websockets are refused off loopback, and SIGTERM shuts it down cleanly.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_confide-server");

#[test]
fn plaintext_is_refused_off_loopback() {
    let out = Command::new(BIN)
        .args(["--insecure-plaintext", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--insecure-plaintext is refused"),
        "{stderr}"
    );
}

#[test]
fn no_certificate_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-cert and --tls-key"));
}

#[test]
fn help_explains_every_flag() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--data-dir",
        "--tls-cert",
        "--tls-key",
        "--dev",
        "--insecure-plaintext",
        "--metrics-listen",
        "--config",
        "--web-dir",
        "--web-connect-src",
    ] {
        assert!(help.contains(flag), "--help does not mention {flag}");
    }
}

#[test]
fn dev_mode_serves_tls_with_a_stable_fingerprint_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut fingerprints = Vec::new();
    for _ in 0..2 {
        let mut child = Command::new(BIN)
            .args([
                "--dev",
                "--listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut fingerprint = None;
        let mut address = None;
        let mut metrics = None;
        while metrics.is_none() {
            let line = lines.next().expect("server exited early").unwrap();
            if line.len() == 66 && line.starts_with("  ") {
                fingerprint = Some(line.trim().to_string());
            }
            if let Some(rest) = line.strip_prefix("confide-server listening on wss://") {
                address = Some(rest.to_string());
            }
            if let Some(rest) = line.strip_prefix("metrics on http://") {
                metrics = Some(rest.trim_end_matches("/metrics").to_string());
            }
        }
        let fingerprint = fingerprint.expect("fingerprint printed");
        let address = address.expect("address printed");
        // A real TLS handshake against the printed pin, and the protocol's first frame.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let port = address.rsplit(':').next().unwrap();
            let trust = confide_client::ServerTrust::Pinned(fingerprint.clone());
            let mut conn =
                confide_client::Connection::connect(&format!("wss://localhost:{port}"), &trust)
                    .await
                    .unwrap();
            let first = conn.recv().await.unwrap();
            assert_eq!(first.type_name(), "challenge");
            conn.close().await;
            // Health and metrics.
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            let mut http = tokio::net::TcpStream::connect(metrics.as_deref().unwrap())
                .await
                .unwrap();
            http.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            let mut body = String::new();
            http.read_to_string(&mut body).await.unwrap();
            assert!(body.starts_with("HTTP/1.1 200"), "{body}");
            assert!(body.contains("confide_connections_total 1"), "{body}");
        });
        // Its memory (the TLS key) is never written to a core dump.
        #[cfg(target_os = "linux")]
        assert_eq!(core_dump_limit(child.id()), "0 0");
        fingerprints.push(fingerprint);
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "graceful shutdown exits 0, got {status}");
    }
    assert_eq!(
        fingerprints[0], fingerprints[1],
        "the dev certificate is reused across restarts"
    );
}

/// The soft and hard limits on the core dump size of process `pid`, as `/proc/<pid>/limits`
/// shows them ("0 0": no core dump).
#[cfg(target_os = "linux")]
fn core_dump_limit(pid: u32) -> String {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find_map(|line| line.strip_prefix("Max core file size"))
        .expect("a core file size line");
    line.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}
