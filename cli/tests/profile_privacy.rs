//! What the profile directory gives away to someone who can read the disk or who shares the
//! machine: no label a person gave a group or a conversation is in any file (they are in the
//! encrypted store), and nothing in the profile can be read by other users (the directory and
//! every directory in it 0700, every file 0600). An old profile with labels in plaintext
//! `settings.json` is moved over when opened.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use common::person;
use confide_tests::{TestServer, contains, read_tree};

/// Every directory in the profile, the profile itself included, has mode 0700 and every file
/// 0600.
fn assert_private(dir: &Path) {
    let mode = std::fs::symlink_metadata(dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{} is mode {mode:o}, not 700", dir.display());
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            assert_private(&path);
        } else {
            let mode = meta.permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{} is mode {mode:o}, not 600", path.display());
        }
    }
}

/// No file in `dir` contains any of `secrets`.
fn assert_nowhere_on_disk(dir: &Path, secrets: &[&str]) {
    let files = read_tree(dir);
    assert!(!files.is_empty());
    for (path, bytes) in files {
        for secret in secrets {
            assert!(
                !contains(&bytes, secret.as_bytes()),
                "{} contains the label {secret:?}",
                path.display()
            );
        }
    }
}

#[test]
fn labels_are_not_on_disk_in_plaintext_and_the_profile_is_private() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(TestServer::start());
    let root = tempfile::tempdir().unwrap();
    let alice = person(root.path(), "Alice", &server);
    let bob = person(root.path(), "Bob", &server);

    alice.ok(&["group", "create", "--label", "grief-circle-label"]);
    let invite = alice.json(&["invite", "create", "grief-circle-label", "--valid", "1h"]);
    bob.ok(&[
        "join",
        invite["link"].as_str().unwrap(),
        "--label",
        "bobs-grief-label",
    ]);
    alice.ok(&[
        "group",
        "label",
        "grief-circle-label",
        "renamed-grief-label",
    ]);
    alice.ok(&[
        "private",
        "renamed-grief-label",
        "@Bob",
        "--label",
        "talk-with-bob-label",
    ]);
    bob.ok(&["send", "bobs-grief-label", "hello"]);
    alice.ok(&["send", "renamed-grief-label", "welcome"]);
    assert!(
        alice
            .ok(&["read", "renamed-grief-label"])
            .contains("Bob: hello")
    );

    // The labels still name the groups.
    let groups = alice.json(&["group", "list"]);
    let mut labels: Vec<&str> = groups
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["label"].as_str().unwrap())
        .collect();
    labels.sort();
    assert_eq!(labels, ["renamed-grief-label", "talk-with-bob-label"]);

    let secrets = [
        "grief-circle-label",
        "renamed-grief-label",
        "talk-with-bob-label",
        "bobs-grief-label",
    ];
    assert_nowhere_on_disk(&alice.dir, &secrets);
    assert_nowhere_on_disk(&bob.dir, &secrets);
    assert_private(&alice.dir);
    assert_private(&bob.dir);
}

#[test]
fn an_old_profile_with_plaintext_labels_and_open_permissions_is_migrated() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(TestServer::start());
    let root = tempfile::tempdir().unwrap();
    let alice = person(root.path(), "Alice", &server);
    let group = alice.json(&["group", "create"])["group"]
        .as_str()
        .unwrap()
        .to_string();

    // The profile as earlier versions left it: labels in settings.json, readable by everyone.
    let settings = serde_json::json!({
        "server": server.url,
        "pin": server.pin,
        "labels": { "old-plaintext-label": group },
    });
    std::fs::write(
        alice.dir.join("settings.json"),
        serde_json::to_string_pretty(&settings).unwrap(),
    )
    .unwrap();
    open_up(&alice.dir);

    // The label still works, and is now only in the encrypted store.
    alice.ok(&["send", "old-plaintext-label", "still here"]);
    let groups = alice.json(&["group", "list"]);
    assert_eq!(groups[0]["label"], "old-plaintext-label");
    assert_nowhere_on_disk(&alice.dir, &["old-plaintext-label"]);
    assert_private(&alice.dir);
    let settings: serde_json::Value =
        serde_json::from_slice(&std::fs::read(alice.dir.join("settings.json")).unwrap()).unwrap();
    assert_eq!(settings["server"], server.url.as_str());
    assert!(settings.get("labels").is_none(), "{settings}");
}

/// Makes every directory 0755 and every file 0644, as a default umask would.
fn open_up(dir: &Path) {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            open_up(&path);
        } else {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
}

#[test]
fn init_refuses_a_directory_holding_other_files_and_opening_changes_only_the_profiles_own() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(TestServer::start());
    let root = tempfile::tempdir().unwrap();
    // A directory like a home directory: someone's files, readable by others on purpose.
    let home = root.path().join("home");
    std::fs::create_dir(&home).unwrap();
    std::fs::create_dir(home.join("public_html")).unwrap();
    std::fs::write(home.join("public_html/index.html"), "hello").unwrap();
    open_up(&home);
    let someone = common::Person { dir: home.clone() };
    let out = someone.run(&[
        "init",
        "--server",
        &server.url,
        "--pin",
        &server.pin,
        "--name",
        "Alice",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not empty"), "{stderr}");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&home), 0o755);
    assert_eq!(mode(&home.join("public_html/index.html")), 0o644);
    assert!(home.join("public_html/index.html").exists());

    // A profile that shares its directory with other files (made by hand, or by an older
    // version): opening it makes the profile private and leaves the other files as they are.
    let alice = person(root.path(), "Alice", &server);
    std::fs::create_dir(alice.dir.join("notes")).unwrap();
    std::fs::write(alice.dir.join("notes/todo.txt"), "x").unwrap();
    open_up(&alice.dir);
    alice.ok(&["whoami"]);
    assert_eq!(mode(&alice.dir), 0o700);
    assert_eq!(mode(&alice.dir.join("settings.json")), 0o600);
    assert_eq!(mode(&alice.dir.join("store")), 0o700);
    assert_eq!(mode(&alice.dir.join("notes")), 0o755);
    assert_eq!(mode(&alice.dir.join("notes/todo.txt")), 0o644);
}
