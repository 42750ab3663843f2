//! The `confide-server` binary with PostgreSQL, as an operator runs it: `migrate-sled` copies a
//! stopped server's database and refuses to copy twice, and `--storage postgres://…` serves,
//! answers health checks and stores what clients send in the database.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Output, Stdio};

use confide_protocol::frames::ServerFrame;
use confide_protocol::group_log::SignedOp;
use confide_protocol::{DeviceIdentity, GroupId, Signature, Timestamp, UserId};
use confide_server::storage::test_database::fresh_database;
use confide_server::storage::{DeviceRecord, PostgresStorage, SledStorage, Storage, Write};

const BIN: &str = env!("CARGO_BIN_EXE_confide-server");

/// Runs `migrate-sled`, again while sled has not yet let go of the database's lock (shortly
/// after the test's own handle was dropped).
fn migrate(data_dir: &std::path::Path, to: &str) -> Output {
    let mut last = None;
    for _ in 0..100 {
        let out = Command::new(BIN)
            .arg("migrate-sled")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--to", to])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        if out.status.success() || !stderr.contains("stop the server") {
            return out;
        }
        last = Some(stderr);
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("the sled database stayed locked: {last:?}");
}

#[test]
fn migrate_sled_copies_a_stopped_servers_database_and_refuses_to_copy_twice() {
    let dir = tempfile::tempdir().unwrap();
    let identity = DeviceIdentity::generate(&mut common::rng());
    let user = UserId([7; 16]);
    let group = GroupId([3; 16]);
    let genesis = SignedOp {
        op: b"{\"genesis\":true}".to_vec(),
        sig: Signature([1; 64]),
    };
    {
        let sled = SledStorage::open(&dir.path().join("db")).unwrap();
        sled.commit(&[
            Write::Device(DeviceRecord {
                user,
                keys: identity.public_keys(),
                display_name: "Ann".into(),
                registered_at: Timestamp(1),
            }),
            Write::Op {
                group,
                seq: 0,
                op: genesis.clone(),
            },
        ])
        .unwrap();
    }
    let (url, _db) = fresh_database();
    let out = migrate(dir.path(), &url);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("copied 1 devices, 1 groups, 1 ops"),
        "{stdout}"
    );
    assert!(stdout.contains("checked"), "{stdout}");

    let pg = PostgresStorage::connect(&url).unwrap();
    assert_eq!(
        pg.device(&identity.device_id()).unwrap().unwrap().user,
        user
    );
    assert_eq!(pg.ops(&group, 0, 10).unwrap(), vec![genesis]);
    drop(pg);

    let again = migrate(dir.path(), &url);
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("not empty"), "{stderr}");

    // A directory without a database is an error, not a new empty database copied.
    let empty = tempfile::tempdir().unwrap();
    let out = migrate(empty.path(), &url);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no sled database"),
        "{out:?}"
    );
    assert!(!empty.path().join("db").exists());
}

#[test]
fn a_storage_flag_that_is_not_a_postgresql_url_is_refused_without_repeating_it() {
    let out = Command::new(BIN)
        .args([
            "--insecure-plaintext",
            "--listen",
            "127.0.0.1:0",
            "--storage",
            "mysql://root:hunter2@localhost/confide",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("postgres://"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn a_node_on_postgresql_and_nats_answers_health_checks_and_stores_registrations() {
    let (url, db) = fresh_database();
    let nats =
        std::env::var("CONFIDE_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let prefix = format!("confide-test-{}", std::process::id());
    let cwd = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args([
            "--insecure-plaintext",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--storage",
            &url,
            "--nats",
            &nats,
            "--nats-prefix",
            &prefix,
        ])
        .current_dir(cwd.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut address, mut metrics, mut storage) = (None, None, None);
    while metrics.is_none() {
        let line = lines.next().expect("server exited early").unwrap();
        if let Some(rest) = line.strip_prefix("confide-server listening on ws://") {
            address = Some(rest.to_string());
        }
        if let Some(rest) = line.strip_prefix("metrics on http://") {
            metrics = Some(rest.trim_end_matches("/metrics").to_string());
        }
        if let Some(rest) = line.strip_prefix("storage: PostgreSQL at ") {
            storage = Some(rest.to_string());
        }
    }
    assert_eq!(storage.as_deref(), Some(url.as_str()));
    let address = address.expect("address printed");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let metrics = metrics.as_deref().unwrap();
        let health = || async {
            let mut http = tokio::net::TcpStream::connect(metrics).await.unwrap();
            http.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            let mut body = String::new();
            http.read_to_string(&mut body).await.unwrap();
            body
        };
        // NATS connects in the background: wait for it (a hang fails the test).
        let mut body = health().await;
        for _ in 0..400 {
            if body.contains("nats: connected") {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            body = health().await;
        }
        assert!(body.starts_with("HTTP/1.1 200"), "{body}");
        assert!(body.contains("storage: ok (PostgreSQL at "), "{body}");
        assert!(body.contains("nats: connected"), "{body}");

        let (reply, conn) = common::register(&format!("ws://{address}")).await;
        assert!(
            matches!(reply, ServerFrame::Authenticated { .. }),
            "{reply:?}"
        );
        conn.close().await;
        // The registration is in the database, not in a sled directory.
        let pg = PostgresStorage::connect(&url).unwrap();
        assert_eq!(pg.counts().unwrap().devices, 1);
        drop(pg);
        // The database goes away: the node says so, for the balancer to take it out.
        drop(db);
        let body = health().await;
        assert!(body.starts_with("HTTP/1.1 503"), "{body}");
        assert!(body.contains("storage: unavailable"), "{body}");
    });
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
    assert!(!cwd.path().join("confide-data").exists());
}
