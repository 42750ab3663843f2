//! The `confide` binary when things go wrong: a server that refuses, a server that is down, a
//! profile that another `confide` holds, bad input. Each command must say what happened and
//! exit with a code that says it, never report success for something that did not happen.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Person, person};
use confide_protocol::frames::{ClientFrame, ErrorCode, ServerFrame};
use confide_tests::{EvilServer, TestServer, Verdict};

/// The device id a person's profile registered, as `whoami --json` prints it.
fn device_of(p: &Person) -> confide_protocol::DeviceId {
    serde_json::from_value(p.json(&["whoami"])["device"].clone()).unwrap()
}

#[test]
fn sync_refused_by_the_server_exits_with_the_refused_code_not_synced() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(TestServer::start());
    let evil = runtime.block_on(async { EvilServer::start(&server).await });
    let root = tempfile::tempdir().unwrap();
    let alice = Person {
        dir: root.path().join("Alice"),
    };
    alice.ok(&[
        "init", "--server", &evil.url, "--pin", &evil.pin, "--name", "Alice",
    ]);
    alice.ok(&["group", "create", "--label", "circle"]);
    let device = device_of(&alice);
    // The server's disk is full: every group's sync is refused with `storage`.
    evil.on_requests(device, |frame| match frame {
        ClientFrame::Sync { id, .. } => Verdict::Answer(vec![ServerFrame::Error {
            id: Some(id),
            code: ErrorCode::Storage,
            message: "the server's storage failed".into(),
            retry_after_ms: None,
        }]),
        other => Verdict::Forward(other),
    });
    let out = alice.run(&["sync"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stdout.contains("synced"), "{stdout}");
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(stderr.contains("storage"), "{stderr}");
    // Reading shows what this device has, but says it may be missing what is new.
    let out = alice.run(&["read", "circle"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("may be out of date"), "{stderr}");
    // Once the server answers again, sync succeeds.
    evil.honest(device);
    assert!(alice.ok(&["sync"]).contains("synced"));
    alice.ok(&["read", "circle"]);
}

#[test]
fn send_with_the_server_down_keeps_the_message_says_so_and_the_next_sync_sends_it() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut server = runtime.block_on(TestServer::start());
    let root = tempfile::tempdir().unwrap();
    let alice = person(root.path(), "Alice", &server);
    alice.ok(&["group", "create", "--label", "circle"]);
    runtime.block_on(server.stop());
    let out = alice.run(&["send", "circle", "is anyone there?"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Not sent, so not a success; but kept (encrypted) on this device, and it says so.
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("not sent yet")
            && stderr.contains("cannot be reached")
            && stderr.contains("kept on this device"),
        "{stderr}"
    );
    // Once the server is back, the next command that reaches it sends it, once.
    runtime.block_on(server.restart());
    alice.ok(&["sync"]);
    let read = alice.json(&["read", "circle"]);
    let texts: Vec<&str> = read
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["text"].as_str())
        .collect();
    assert_eq!(texts, ["is anyone there?"], "{read}");
}

#[test]
fn a_profile_open_in_another_confide_is_named_with_what_to_do_and_its_own_exit_code() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(TestServer::start());
    let root = tempfile::tempdir().unwrap();
    let alice = person(root.path(), "Alice", &server);
    // Another process holds the profile's store open, as `confide chat` does.
    let mut config =
        confide_client::ClientConfig::new(&server.url, server.trust(), alice.dir.join("store"));
    config.kdf = confide_protocol::identity::KdfParams::INSECURE_FOR_TESTS;
    let (client, _events) = runtime
        .block_on(confide_client::Client::open(
            config,
            common::PASSPHRASE.as_bytes(),
        ))
        .unwrap();
    let out = alice.run(&["whoami"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(
        stderr.contains("open in another confide process") && !stderr.contains("acquire lock"),
        "{stderr}"
    );
    runtime.block_on(client.shutdown());
    drop(client);
    alice.ok(&["whoami"]);
}

#[test]
fn times_are_shown_as_local_dates_not_unix_milliseconds_except_in_json() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(TestServer::start());
    let root = tempfile::tempdir().unwrap();
    let alice = person(root.path(), "Alice", &server);
    let bob = person(root.path(), "Bob", &server);
    alice.ok(&["group", "create", "--label", "circle"]);
    let invite = alice.json(&["invite", "create", "circle"]);
    bob.ok(&[
        "join",
        invite["link"].as_str().unwrap(),
        "--label",
        "circle",
    ]);
    alice.ok(&["mod", "mute", "circle", "@Bob", "30m"]);
    let log = alice.json(&["mod", "log", "circle"]);
    let until = log
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "mute")
        .map(|e| e["details"]["until"].as_u64().unwrap())
        .unwrap();
    let human = alice.ok(&["mod", "log", "circle"]);
    assert!(
        !human.contains(&until.to_string()) && human.contains("until 20"),
        "{human}"
    );
    assert!(
        !human.contains('{'),
        "no raw JSON in the human log: {human}"
    );
    let refused = bob.run(&["send", "circle", "hello?"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(3), "{stderr}");
    assert!(
        !stderr.contains("unix ms") && stderr.contains("muted until 20"),
        "{stderr}"
    );
}

#[test]
fn mod_delete_takes_the_message_number_read_shows() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(TestServer::start());
    let root = tempfile::tempdir().unwrap();
    let alice = person(root.path(), "Alice", &server);
    let bob = person(root.path(), "Bob", &server);
    alice.ok(&["group", "create", "--label", "circle"]);
    let invite = alice.json(&["invite", "create", "circle"]);
    bob.ok(&[
        "join",
        invite["link"].as_str().unwrap(),
        "--label",
        "circle",
    ]);
    let first = bob.json(&["send", "circle", "first unkind thing"]);
    let second = bob.json(&["send", "circle", "second unkind thing"]);
    bob.ok(&["send", "circle", "a kind thing"]);
    let shown = alice.ok(&["read", "circle"]);
    let first_seq = first["seq"].as_u64().unwrap();
    assert!(shown.contains(&format!("#{first_seq}")), "{shown}");
    alice.ok(&["mod", "delete", "circle", &format!("#{first_seq}")]);
    alice.ok(&["mod", "delete", "circle", &second["seq"].to_string()]);
    let read = alice.ok(&["read", "circle"]);
    assert!(
        !read.contains("unkind") && read.contains("a kind thing"),
        "{read}"
    );
    // A number that names no message is an error, and nothing is deleted.
    let out = alice.run(&["mod", "delete", "circle", "#999"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no message #999"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `confide init` for Alice in `dir` against `server`, with `passphrase` in the environment
/// (or none at all, and no terminal to ask on).
fn init(
    dir: &std::path::Path,
    server: &TestServer,
    passphrase: Option<&str>,
) -> std::process::Output {
    // A session of its own (util-linux `setsid`), without a controlling terminal: asking for
    // the passphrase fails at once, as a mistyped confirmation does.
    let mut command = std::process::Command::new("setsid");
    command
        .args(["--wait", common::BIN])
        .arg("--profile")
        .arg(dir)
        .args([
            "init",
            "--server",
            &server.url,
            "--pin",
            &server.pin,
            "--name",
            "Alice",
        ])
        .env("CONFIDE_INSECURE_FAST_KDF", "1")
        .env_remove("CONFIDE_PASSPHRASE")
        .stdin(std::process::Stdio::null());
    if let Some(p) = passphrase {
        command.env("CONFIDE_PASSPHRASE", p);
    }
    command.output().unwrap()
}

#[test]
fn a_failed_init_leaves_nothing_behind_and_the_next_init_works() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(TestServer::start());
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("Alice");
    let failed = init(&dir, &server, None);
    assert!(!failed.status.success());
    assert!(
        !dir.join("settings.json").exists(),
        "a half-made profile was left"
    );
    let out = init(&dir, &server, Some(common::PASSPHRASE));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A half-made profile an older version left behind is named as such, with what to do.
    let old = root.path().join("Old");
    std::fs::create_dir(&old).unwrap();
    std::fs::write(old.join("settings.json"), "{\"server\":\"wss://x\"}").unwrap();
    let out = init(&old, &server, Some(common::PASSPHRASE));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("unfinished profile") && stderr.contains("remove"),
        "{stderr}"
    );
}

#[test]
fn a_short_or_empty_passphrase_is_refused_and_says_the_minimum() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(TestServer::start());
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("Alice");
    for weak in ["", "   ", "short"] {
        let out = init(&dir, &server, Some(weak));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{weak:?} was accepted");
        assert!(stderr.contains("at least 8 characters"), "{stderr}");
        assert!(!dir.join("settings.json").exists());
    }
    assert!(
        init(&dir, &server, Some(common::PASSPHRASE))
            .status
            .success()
    );
}

#[test]
fn an_empty_message_is_refused_with_a_clear_error() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(TestServer::start());
    let root = tempfile::tempdir().unwrap();
    let alice = person(root.path(), "Alice", &server);
    alice.ok(&["group", "create", "--label", "circle"]);
    for empty in ["", "  \n\t "] {
        let out = alice.run(&["send", "circle", empty]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("empty message"), "{stderr}");
    }
    let read = alice.json(&["read", "circle"]);
    assert_eq!(read.as_array().unwrap().len(), 0, "{read}");
}

#[test]
fn a_message_the_server_could_not_take_is_kept_says_so_and_exits_1_then_the_next_sync_sends_it() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(TestServer::start());
    let evil = runtime.block_on(async { EvilServer::start(&server).await });
    let root = tempfile::tempdir().unwrap();
    let alice = Person {
        dir: root.path().join("Alice"),
    };
    alice.ok(&[
        "init", "--server", &evil.url, "--pin", &evil.pin, "--name", "Alice",
    ]);
    alice.ok(&["group", "create", "--label", "circle"]);
    let device = device_of(&alice);
    // The server's disk is full for posts: the message is sealed, kept, not stored.
    evil.on_requests(device, |frame| match frame {
        ClientFrame::Post { id, .. } => Verdict::Answer(vec![ServerFrame::Error {
            id: Some(id),
            code: ErrorCode::Storage,
            message: "the server's storage failed".into(),
            retry_after_ms: None,
        }]),
        other => Verdict::Forward(other),
    });
    let out = alice.run(&["send", "circle", "kept for later"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        !stdout.contains("sent") && !stdout.contains("queued"),
        "{stdout}"
    );
    assert!(
        stderr.contains("not sent yet")
            && stderr.contains("kept on this device")
            && stderr.contains("confide sync"),
        "{stderr}"
    );
    // Scripts get the same answer as JSON.
    let out = alice.run(&["--json", "send", "circle", "also kept"]);
    assert_eq!(out.status.code(), Some(1));
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(value["kept"], true, "{value}");
    assert_eq!(value["sent"], false, "{value}");
    // Once the server takes posts again, the next command sends them, in order.
    evil.honest(device);
    alice.ok(&["sync"]);
    let read = alice.json(&["read", "circle"]);
    let texts: Vec<&str> = read
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["kept for later", "also kept"], "{read}");
    // The help says what each exit status means.
    let help = alice.ok(&["send", "--help"]);
    assert!(
        help.contains("1 not sent yet but kept")
            && help.contains("5 the connection failed part way"),
        "{help}"
    );
}

#[test]
fn group_list_members_and_status_fail_after_showing_what_they_have_when_the_server_refuses() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(TestServer::start());
    let evil = runtime.block_on(async { EvilServer::start(&server).await });
    let root = tempfile::tempdir().unwrap();
    let alice = Person {
        dir: root.path().join("Alice"),
    };
    alice.ok(&[
        "init", "--server", &evil.url, "--pin", &evil.pin, "--name", "Alice",
    ]);
    alice.ok(&["group", "create", "--label", "circle"]);
    let device = device_of(&alice);
    evil.on_requests(device, |frame| match frame {
        ClientFrame::Sync { id, .. } => Verdict::Answer(vec![ServerFrame::Error {
            id: Some(id),
            code: ErrorCode::Storage,
            message: "the server's storage failed".into(),
            retry_after_ms: None,
        }]),
        other => Verdict::Forward(other),
    });
    for (args, shows) in [
        (&["group", "list"][..], "circle"),
        (&["members", "circle"], "Alice"),
        (&["status", "circle"], "role: facilitator"),
    ] {
        let out = alice.run(args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {stdout}\n{stderr}");
        assert!(stdout.contains(shows), "{args:?}: {stdout}");
        assert!(
            stderr.contains("may be out of date") && stderr.contains("storage"),
            "{args:?}: {stderr}"
        );
    }
    evil.honest(device);
    alice.ok(&["group", "list"]);
    alice.ok(&["status", "circle"]);
}

#[test]
fn a_group_the_server_refuses_for_good_fails_one_sync_not_every_one() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(TestServer::start());
    let evil = runtime.block_on(async { EvilServer::start(&server).await });
    let root = tempfile::tempdir().unwrap();
    let alice = Person {
        dir: root.path().join("Alice"),
    };
    alice.ok(&[
        "init", "--server", &evil.url, "--pin", &evil.pin, "--name", "Alice",
    ]);
    let gone: confide_protocol::GroupId = serde_json::from_value(
        alice.json(&["group", "create", "--label", "gone"])["group"].clone(),
    )
    .unwrap();
    alice.ok(&["group", "create", "--label", "circle"]);
    let device = device_of(&alice);
    // The server no longer knows one of the groups (its data was lost, say).
    evil.on_requests(device, move |frame| match frame {
        ClientFrame::Sync { id, group, .. } if group == gone => {
            Verdict::Answer(vec![ServerFrame::Error {
                id: Some(id),
                code: ErrorCode::NoSuchGroup,
                message: "no such group".into(),
                retry_after_ms: None,
            }])
        }
        other => Verdict::Forward(other),
    });
    let out = alice.run(&["sync"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("refuses to serve gone") && stderr.contains("no_such_group"),
        "{stderr}"
    );
    // Said once: the next syncs work, and the other group goes on as usual.
    for _ in 0..2 {
        let out = alice.run(&["sync"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stderr).is_empty());
    }
    alice.ok(&["send", "circle", "still working"]);
    // Said once as news, but every read of the group says the server no longer serves it
    // (and since when) and fails, and the group list marks it.
    for _ in 0..2 {
        let out = alice.run(&["read", "gone"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{stderr}");
        assert!(
            stderr.contains("the server refuses to serve gone since 20")
                && stderr.contains("(no_such_group)"),
            "{stderr}"
        );
    }
    alice.ok(&["read", "circle"]);
    let list = alice.ok(&["group", "list"]).replace("\n    │ ", "");
    let gone_line = list.lines().find(|l| l.starts_with("gone")).unwrap();
    assert!(
        gone_line.contains("⚠ the server refuses to serve it since 20"),
        "{list}"
    );
    let circle_line = list.lines().find(|l| l.starts_with("circle")).unwrap();
    assert!(!circle_line.contains('⚠'), "{list}");
    // A passing refusal, by contrast, fails every sync that meets it.
    evil.on_requests(device, |frame| match frame {
        ClientFrame::Sync { id, .. } => Verdict::Answer(vec![ServerFrame::Error {
            id: Some(id),
            code: ErrorCode::ShuttingDown,
            message: "the server is restarting".into(),
            retry_after_ms: None,
        }]),
        other => Verdict::Forward(other),
    });
    for _ in 0..2 {
        assert_eq!(alice.run(&["sync"]).status.code(), Some(3));
    }
}

#[test]
fn init_shows_the_passphrase_strength_and_refuses_an_easy_one_with_a_hint() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(TestServer::start());
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("Alice");
    for weak in ["password1", "12345678", "Alice1234"] {
        let out = init(&dir, &server, Some(weak));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{weak:?} was accepted");
        assert!(
            stderr.contains("easy to guess") && stderr.contains("a few unrelated words"),
            "{weak:?}: {stderr}"
        );
        assert!(!dir.exists(), "{weak:?} left something behind");
    }
    let out = init(&dir, &server, Some("maple trumpet gravel onion"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("Passphrase strength: "), "{stderr}");
}

#[test]
fn a_failed_registration_removes_only_what_init_made() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut server = runtime.block_on(TestServer::start());
    runtime.block_on(server.stop());
    let root = tempfile::tempdir().unwrap();
    // An empty directory made beforehand (by the person, or a dotfile manager) stays.
    let dir = root.path().join("Alice");
    std::fs::create_dir(&dir).unwrap();
    let out = init(&dir, &server, Some(common::PASSPHRASE));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("nothing was created"), "{stderr}");
    assert!(dir.is_dir(), "the directory that was there before is gone");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "{stderr}");
    // One init made, parents included, goes entirely.
    let nested = root.path().join("new").join("Alice");
    let out = init(&nested, &server, Some(common::PASSPHRASE));
    assert!(!out.status.success());
    assert!(!root.path().join("new").exists());
    runtime.block_on(server.restart());
    assert!(
        init(&dir, &server, Some(common::PASSPHRASE))
            .status
            .success()
    );
}

/// A profile directory whose parent cannot be looked at (here: a path through a regular file)
/// is refused before anything is made, saying why; no directory it could not see is taken for
/// one that init made (and would remove again).
#[test]
fn init_refuses_a_profile_path_it_cannot_look_at_before_making_anything() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("a file");
    std::fs::write(&file, b"keep me").unwrap();
    let dir = file.join("sub").join("profile");
    let out = std::process::Command::new(common::BIN)
        .arg("--profile")
        .arg(&dir)
        .args(["init", "--server", "wss://localhost:1", "--name", "Alice"])
        .env("CONFIDE_PASSPHRASE", common::PASSPHRASE)
        .env("CONFIDE_INSECURE_FAST_KDF", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("cannot tell whether") && stderr.contains("nothing was created"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
}

/// PROTOCOL.md §11.13: a message written while the server was down, before Eve joined, is not
/// sent to her by itself. The next command says so; `confide held` lists it, exits 1 while it
/// waits, and `--send` sends it to everyone now there.
#[test]
fn a_message_written_offline_before_someone_joined_waits_until_held_send() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut server = runtime.block_on(TestServer::start());
    let root = tempfile::tempdir().unwrap();
    let alice = person(root.path(), "Alice", &server);
    let eve = person(root.path(), "Eve", &server);
    alice.ok(&["group", "create", "--label", "circle"]);
    let invite = alice.json(&["invite", "create", "circle"]);
    let link = invite["link"].as_str().unwrap().to_string();
    runtime.block_on(server.stop());
    let out = alice.run(&["send", "circle", "only for the two of us"]);
    assert_eq!(out.status.code(), Some(1));
    runtime.block_on(server.restart());
    eve.ok(&["join", &link, "--label", "circle"]);

    let out = alice.run(&["held", "circle"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("only for the two of us")
            && stdout.contains("Eve joined after you wrote it"),
        "{stdout}"
    );
    assert!(stderr.contains("is not sent: Eve joined"), "{stderr}");
    let eve_reads = |eve: &Person| -> Vec<String> {
        eve.json(&["read", "circle"])
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["text"].as_str().map(str::to_string))
            .collect()
    };
    assert!(eve_reads(&eve).is_empty());

    // Exit 1 while it waits; the list is printed all the same.
    let out = alice.run(&["--json", "held", "circle"]);
    assert_eq!(out.status.code(), Some(1));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = listed["held"][0]["id"].as_str().unwrap().to_string();
    let send_id = listed["held"][0]["send_id"].as_str().unwrap().to_string();
    assert_eq!(listed["held"][0]["needs_confirm"], true, "{listed}");
    // The bare id does not say who the answer was for: refused, nothing sent.
    let bare = alice.run(&["held", "circle", "--send", &id]);
    assert!(!bare.status.success());
    assert!(eve_reads(&eve).is_empty());
    alice.ok(&["held", "circle", "--send", &send_id]);
    assert!(
        alice
            .ok(&["held", "circle"])
            .contains("nothing of yours waits")
    );
    assert_eq!(eve_reads(&eve), ["only for the two of us"]);
}

#[test]
fn renewing_a_groups_keys_within_a_minute_of_its_last_change_is_refused_and_says_why() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(TestServer::start());
    let root = tempfile::tempdir().unwrap();
    let alice = person(root.path(), "Alice", &server);
    alice.ok(&["group", "create", "--label", "circle"]);
    // The group began a moment ago: the log allows no rekey for a minute (PROTOCOL.md §8.5).
    let out = alice.run(&["group", "rekey", "circle"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("too soon"), "{stderr}");
}
