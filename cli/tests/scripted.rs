//! The `confide` binary as people and scripts use it, against a real server over TLS: two
//! people chatting and a facilitator moderating.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{BIN, Person, person};
use confide_tests::TestServer;

#[test]
fn two_people_chat_and_a_facilitator_moderates() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(TestServer::start());
    let root = tempfile::tempdir().unwrap();
    let alice = person(root.path(), "Alice", &server);
    let bob = person(root.path(), "Bob", &server);
    let carol = person(root.path(), "Carol", &server);

    alice.ok(&["group", "create", "--label", "circle"]);
    let invite = alice.json(&["invite", "create", "circle", "--uses", "2", "--valid", "1h"]);
    let link = invite["link"].as_str().unwrap();
    bob.ok(&["join", link, "--label", "circle"]);
    carol.ok(&["join", link, "--label", "circle"]);

    let sent = bob.json(&["send", "circle", "Rough week. Glad this group exists."]);
    assert_eq!(sent["seq"], 1);
    carol.ok(&["send", "circle", "Same here, Bob."]);
    let read = carol.json(&["read", "circle"]);
    let texts: Vec<&str> = read
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        ["Rough week. Glad this group exists.", "Same here, Bob."]
    );
    let human = alice.ok(&["read", "circle"]);
    assert!(human.contains("Bob: Rough week."), "{human}");

    let members = alice.json(&["members", "circle"]);
    assert_eq!(members.as_array().unwrap().len(), 3);

    // The facilitator mutes Bob: his send fails with the server's reason and exit code 3.
    alice.ok(&[
        "mod",
        "mute",
        "circle",
        "@Bob",
        "30m",
        "--reason",
        "needs a break",
    ]);
    let refused = bob.run(&["send", "circle", "let me speak"]);
    assert_eq!(refused.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("muted"));
    let status = bob.json(&["status", "circle"]);
    assert!(status["muted_until"].is_u64());
    // A member cannot moderate: a clear error, nothing changes.
    let denied = carol.run(&["mod", "lock", "circle"]);
    assert!(!denied.status.success());
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("may not lock"),
        "{}",
        String::from_utf8_lossy(&denied.stderr)
    );
    // The agreement: set by the facilitator, shown to and accepted by a member.
    alice.ok(&[
        "agreement",
        "set",
        "circle",
        "What is shared here stays here.",
    ]);
    let shown = carol.ok(&["agreement", "show", "circle"]);
    assert!(shown.contains("What is shared here stays here."), "{shown}");
    assert_eq!(carol.run(&["send", "circle", "hi"]).status.code(), Some(3));
    // Accepting shows the text first and asks; no answer accepts nothing.
    let unanswered = carol.run(&["agreement", "accept", "circle"]);
    assert!(!unanswered.status.success());
    assert!(
        String::from_utf8_lossy(&unanswered.stdout).contains("What is shared here stays here.")
    );
    assert_eq!(carol.run(&["send", "circle", "hi"]).status.code(), Some(3));
    let accepted = carol.ok(&["agreement", "accept", "circle", "--yes"]);
    assert!(
        accepted.contains("What is shared here stays here.")
            && accepted.contains("version 1 accepted"),
        "{accepted}"
    );
    carol.ok(&["send", "circle", "I accept, thank you"]);

    // Invites: listed with their uses and who joined with them.
    let invites = alice.ok(&["invite", "list", "circle"]);
    assert!(
        invites.contains("used up") && invites.contains("2/2") && invites.contains("Bob, Carol"),
        "{invites}"
    );

    // Removal: Carol reads nothing new.
    alice.ok(&[
        "mod",
        "remove",
        "circle",
        "@Carol",
        "--reason",
        "asked to leave",
    ]);
    alice.ok(&["send", "circle", "after Carol left"]);
    let told = carol.ok(&["read", "circle"]);
    assert!(told.contains("you were removed from circle on"), "{told}");
    assert!(!told.contains("after Carol left"), "{told}");
    let groups = carol.ok(&["group", "list"]);
    assert!(
        groups.contains("you were removed from circle on"),
        "{groups}"
    );
    let carols = carol.json(&["read", "circle"]);
    assert!(
        carols
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["text"] != "after Carol left")
    );
    let log = alice.json(&["mod", "log", "circle"]);
    let actions: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"mute") && actions.contains(&"remove"),
        "{actions:?}"
    );

    // Safety numbers agree.
    let a = alice.json(&["safety-number", "circle", "@Bob"]);
    let b = bob.json(&["safety-number", "circle", "@Alice"]);
    assert_eq!(a, b);
}

#[test]
fn errors_are_clear_and_exit_codes_meaningful() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(TestServer::start());
    let root = tempfile::tempdir().unwrap();
    let alice = person(root.path(), "Alice", &server);
    // Wrong passphrase.
    let out = std::process::Command::new(BIN)
        .args(["--profile"])
        .arg(&alice.dir)
        .args(["whoami"])
        .env("CONFIDE_PASSPHRASE", "wrong")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong passphrase"));
    // No profile.
    let nobody = Person {
        dir: root.path().join("nobody"),
    };
    let out = nobody.run(&["whoami"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("confide init"));
    // Unknown group.
    let out = alice.run(&["send", "no-such-group", "hi"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no group labelled"));
    // Usage errors.
    assert_eq!(alice.run(&["mod", "mute"]).status.code(), Some(2));
    // Help reads like a man page, and completions are generated.
    let help = alice.ok(&["--help"]);
    assert!(help.contains("end-to-end encrypted") && help.contains("CONFIDE_PASSPHRASE"));
    let completions = alice.ok(&["completions", "bash"]);
    assert!(completions.contains("confide"));
}

#[test]
fn a_ban_revokes_the_invite_the_person_joined_with_unless_told_to_keep_it() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(TestServer::start());
    let root = tempfile::tempdir().unwrap();
    let alice = person(root.path(), "Alice", &server);
    let bob = person(root.path(), "Bob", &server);
    let carol = person(root.path(), "Carol", &server);
    alice.ok(&["group", "create", "--label", "circle"]);
    let first = alice.json(&["invite", "create", "circle", "--uses", "5"]);
    bob.ok(&["join", first["link"].as_str().unwrap(), "--label", "circle"]);
    let second = alice.json(&["invite", "create", "circle", "--uses", "5"]);
    carol.ok(&[
        "join",
        second["link"].as_str().unwrap(),
        "--label",
        "circle",
    ]);

    let out = alice.ok(&["mod", "remove", "circle", "@Bob", "--ban"]);
    assert!(out.contains("revoked the invite they joined with"), "{out}");
    let out = alice.ok(&[
        "mod",
        "remove",
        "circle",
        "@Carol",
        "--ban",
        "--keep-invite",
    ]);
    assert!(out.contains("can still be used"), "{out}");
    let invites = alice.json(&["invite", "list", "circle"]);
    let state_of = |name: &str| {
        invites
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["invite"]["joined"].to_string().contains(name))
            .map(|i| i["state"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("{invites}"))
    };
    assert_eq!(state_of("Bob"), "revoked");
    assert_eq!(state_of("Carol"), "active");
}
