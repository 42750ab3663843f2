//! What a member sees with the `confide` binary around moderation: message numbers from #1
//! that `mod delete` takes as shown, notices where someone was removed or a message deleted, a
//! removed member told so plainly, and a private conversation named by the other person while
//! its first message waits to be accepted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Person, person};
use confide_client::Event;
use confide_protocol::frames::ClientFrame;
use confide_protocol::report::{self, ReportPayload};
use confide_protocol::seal::{self, SealKind};
use confide_protocol::{DeviceIdentity, GroupId};
use confide_tests::{EvilServer, TestServer, TestUser, Verdict, rng, users_in_group};

/// Alice's group "circle" with an agreement and crisis resources pinned (each pinned text is
/// stored in the group as a message too), and Bob and Carol in it, having accepted.
fn circle(root: &std::path::Path, server: &TestServer) -> (Person, Person, Person) {
    let alice = person(root, "Alice", server);
    let bob = person(root, "Bob", server);
    let carol = person(root, "Carol", server);
    alice.ok(&["group", "create", "--label", "circle"]);
    let invite = alice.json(&["invite", "create", "circle", "--uses", "2"]);
    let link = invite["link"].as_str().unwrap();
    // The browser form of the same invite opens the server's web app; the CLI takes it too.
    let web_link = invite["web_link"].as_str().unwrap();
    assert!(web_link.starts_with("https://") && web_link.ends_with(&format!("/#invite={link}")));
    bob.ok(&["join", link, "--label", "circle"]);
    carol.ok(&["join", web_link, "--label", "circle"]);
    alice.ok(&["agreement", "set", "circle", "Be kind."]);
    alice.ok(&["crisis", "set", "circle", "Call 116 123."]);
    for p in [&bob, &carol] {
        p.ok(&["agreement", "accept", "circle", "--yes"]);
    }
    (alice, bob, carol)
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn messages_are_numbered_from_one_and_mod_delete_takes_the_number_read_shows() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(TestServer::start());
    let root = tempfile::tempdir().unwrap();
    let (alice, bob, carol) = circle(root.path(), &server);
    let first = bob.json(&["send", "circle", "first unkind thing"]);
    bob.ok(&["send", "circle", "a kind thing"]);
    bob.ok(&["send", "circle", "third"]);
    // The server's position counts the pinned texts; what people see starts at #1.
    assert!(first["seq"].as_u64().unwrap() > 1, "{first}");
    assert_eq!(first["number"], 1, "{first}");
    let shown = alice.ok(&["read", "circle"]);
    let lines: Vec<&str> = shown.lines().collect();
    assert!(
        lines[0].starts_with("#1 ") && lines[0].contains("first unkind thing"),
        "{shown}"
    );
    assert!(
        lines[1].starts_with("#2 ") && lines[1].contains("a kind thing"),
        "{shown}"
    );
    assert!(lines[2].starts_with("#3 "), "{shown}");

    // Deleting #1 deletes what read showed as #1, saying who wrote it, when, and how it
    // began; the others keep their numbers.
    let deleted = alice.ok(&["mod", "delete", "circle", "#1"]);
    assert!(
        deleted.contains("#1 Bob, 20") && deleted.contains("“first unkind thing”"),
        "{deleted}"
    );
    let after = alice.ok(&["read", "circle"]);
    assert!(!after.contains("unkind"), "{after}");
    let lines: Vec<&str> = after.lines().collect();
    // Where #1 was, every member sees that it was deleted, and by whom.
    assert!(
        lines[0].starts_with("#1 ") && lines[0].contains("— you deleted a message for everyone"),
        "{after}"
    );
    assert!(
        lines[1].starts_with("#2 ") && lines[1].contains("a kind thing"),
        "{after}"
    );
    let bobs = bob.ok(&["read", "circle"]);
    let first_line = bobs.lines().next().unwrap();
    assert!(
        first_line.starts_with("#1 ")
            && first_line.contains("— a message was deleted by Alice")
            && first_line.contains(" 20"),
        "{bobs}"
    );
    // The same numbers on the next run, and #1 now names a deleted message, not #2.
    assert_eq!(bob.ok(&["read", "circle"]), bobs);
    let again = alice.run(&["mod", "delete", "circle", "1"]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("#1 was deleted"),
        "{}",
        stderr(&again)
    );
    assert!(alice.ok(&["read", "circle"]).contains("a kind thing"));
    // Paging back takes the numbers read shows.
    let before = alice.ok(&["read", "circle", "--before", "3"]);
    assert!(
        before.contains("a kind thing") && !before.contains("third"),
        "{before}"
    );
    // A report names the message by the number the reporter sees; the facilitators' queue by
    // the number each of them sees.
    let carols = carol.ok(&["read", "circle"]);
    let kind = carols.lines().find(|l| l.contains("a kind thing")).unwrap();
    let number = kind.split_whitespace().next().unwrap();
    carol.ok(&["report", "circle", number, "checking reports"]);
    let queue = alice.ok(&["mod", "queue", "circle"]);
    assert!(queue.contains("about Bob (#2)"), "{queue}");
}

#[test]
fn members_see_who_was_removed_and_the_removed_member_is_told_plainly() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(TestServer::start());
    let root = tempfile::tempdir().unwrap();
    let (alice, bob, carol) = circle(root.path(), &server);
    bob.ok(&["send", "circle", "hello from Bob"]);
    alice.ok(&["mod", "remove", "circle", "@Bob"]);
    carol.ok(&["send", "circle", "hello from Carol"]);

    // Carol sees the removal between the two messages, with its time.
    let read = carol.ok(&["read", "circle"]);
    let lines: Vec<&str> = read.lines().collect();
    assert!(lines[0].contains("hello from Bob"), "{read}");
    assert!(
        lines[1].contains("— Alice removed Bob") && lines[1].contains(" 20"),
        "{read}"
    );
    assert!(lines[2].contains("hello from Carol"), "{read}");

    // Bob: no agreement to accept, no protocol error; said plainly, with a code of its own.
    let status = bob.ok(&["status", "circle"]);
    assert!(
        status.contains("you were removed from circle on"),
        "{status}"
    );
    assert!(!status.contains("agreement"), "{status}");
    for args in [
        &["send", "circle", "still here?"][..],
        &["agreement", "accept", "circle", "--yes"],
        &["urgent", "circle", "help"],
        &["report", "circle", "1", "why"],
    ] {
        let out = bob.run(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(7), "{args:?}: {err}");
        assert!(
            err.contains("you were removed from circle on") && err.contains("(removed)"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("protocol"), "{args:?}: {err}");
    }
    let bobs = bob.ok(&["read", "circle"]);
    assert!(bobs.contains("— Alice removed you"), "{bobs}");
    assert!(!bobs.contains("hello from Carol"), "{bobs}");
}

#[test]
fn a_private_conversation_is_named_by_the_other_person_and_says_a_message_waits() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(TestServer::start());
    let root = tempfile::tempdir().unwrap();
    let (alice, bob, _carol) = circle(root.path(), &server);
    let opened = alice.json(&["private", "circle", "@Bob", "--label", "with Bob"]);
    let private = opened["group"].as_str().unwrap();
    alice.ok(&["send", private, "Are you OK after today?"]);

    // (Lines wrapped for the terminal joined again.)
    let groups = bob.ok(&["group", "list"]).replace("\n    │ ", "");
    let line = groups.lines().find(|l| l.contains(private)).unwrap();
    assert!(line.starts_with("private: Alice"), "{groups}");
    assert!(
        line.contains("1 message waiting") && line.contains(&format!("confide accept {private}")),
        "{groups}"
    );
    let read = bob.ok(&["read", private]).replace("\n    │ ", "");
    assert!(
        read.contains("1 message waiting") && !read.contains("No messages"),
        "{read}"
    );
    assert!(!read.contains("Are you OK"), "{read}");
    let listed = bob.json(&["group", "list"]);
    let entry = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["group"] == private)
        .unwrap();
    assert_eq!(entry["private_with"]["name"], "Alice", "{entry}");
    assert_eq!(entry["waiting"], 1, "{entry}");

    bob.ok(&["accept", private]);
    let read = bob.ok(&["read", private]);
    assert!(
        read.contains("#1 ") && read.contains("Are you OK after today?"),
        "{read}"
    );
    // Alice's own label wins over the name for her.
    let hers = alice.ok(&["group", "list"]);
    assert!(hers.lines().any(|l| l.starts_with("with Bob")), "{hers}");
}

/// A library test user's identity, to act for their device in a test.
fn identity_of(user: &TestUser) -> DeviceIdentity {
    DeviceIdentity::from_secrets(&user.secret).unwrap()
}

/// Runs `confide ARGS…` on a library test user's store, as a profile of `server` (whose client
/// must be shut down: the store is opened by one process at a time).
fn run_on(user: &TestUser, server: &EvilServer, args: &[&str]) -> std::process::Output {
    let settings = serde_json::json!({ "server": server.url, "pin": server.pin });
    std::fs::write(user.dir.path().join("settings.json"), settings.to_string()).unwrap();
    std::process::Command::new(common::BIN)
        .arg("--profile")
        .arg(user.dir.path())
        .args(args)
        .env(
            "CONFIDE_PASSPHRASE",
            std::str::from_utf8(confide_tests::PASSPHRASE).unwrap(),
        )
        .output()
        .unwrap()
}

/// Carol reports Bob's first message, and her device names the second message's position in
/// the report (a hostile reporter's device may name any: franking proves the message, its
/// author and its text, not the position). The facilitator's queue must name the message that
/// was proven — by its id, as this device numbered it — and warn that the position differs.
#[test]
fn the_facilitators_queue_names_a_reported_message_by_what_franking_proves() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(TestServer::start());
    let evil = runtime.block_on(EvilServer::start(&server));
    let (alice, group): (TestUser, GroupId) = runtime.block_on(async {
        let (mut users, group) =
            users_in_group(&evil.url, evil.trust(), &["Alice", "Bob", "Carol"]).await;
        let mut carol = users.pop().unwrap();
        let bob = users.pop().unwrap();
        let mut alice = users.pop().unwrap();
        let first = bob.client.send_text(group, "first", None).await.unwrap();
        let second = bob.client.send_text(group, "second", None).await.unwrap();
        alice.wait_history(group, 2).await;
        carol.wait_history(group, 2).await;
        let (opener, sealer) = (identity_of(&alice), identity_of(&carol));
        let facilitator = opener.public_keys();
        let claimed = second.seq;
        evil.on_requests(carol.client.device(), move |frame| match frame {
            ClientFrame::SendSealed { id, items } => {
                let items = items
                    .into_iter()
                    .map(|sealed| {
                        if sealed.kind != SealKind::Report {
                            return sealed;
                        }
                        let bytes = seal::open(&opener, &sealed).unwrap();
                        let mut payload: ReportPayload = serde_json::from_slice(&bytes).unwrap();
                        payload.seq = claimed;
                        report::seal_report(
                            &sealer,
                            std::slice::from_ref(&facilitator),
                            sealed.epoch_ref(),
                            &payload,
                            &mut rng(),
                        )
                        .unwrap()
                        .remove(0)
                    })
                    .collect();
                Verdict::Forward(ClientFrame::SendSealed { id, items })
            }
            other => Verdict::Forward(other),
        });
        carol
            .client
            .report(group, first.seq, "unkind")
            .await
            .unwrap();
        alice.wait_event(|e| matches!(e, Event::Report(_))).await;
        alice.go_offline().await;
        (alice, group)
    });
    let out = run_on(&alice, &evil, &["mod", "queue", &group.to_string()]);
    // (Lines wrapped for the terminal joined again.)
    let queue = String::from_utf8_lossy(&out.stdout).replace("\n    │ ", "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        queue.contains("about Bob (#1; ⚠ the reporter's device named another position"),
        "{queue}"
    );
    assert!(!queue.contains("#2"), "{queue}");
    let listed = run_on(
        &alice,
        &evil,
        &["--json", "mod", "queue", &group.to_string()],
    );
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed[0]["number"], 1, "{listed}");
}

#[test]
fn group_list_counts_new_messages_until_they_are_read() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(TestServer::start());
    let root = tempfile::tempdir().unwrap();
    let (alice, bob, _carol) = circle(root.path(), &server);
    bob.ok(&["send", "circle", "are you around on Thursday?"]);
    bob.ok(&["send", "circle", "no pressure"]);

    let listed = alice.ok(&["group", "list"]);
    assert!(listed.contains("2 new"), "{listed}");
    let json = alice.json(&["group", "list"]);
    assert_eq!(json[0]["unread"], 2, "{json}");

    // Reading the newest messages reads them; the count is kept with the profile.
    alice.ok(&["read", "circle"]);
    let listed = alice.ok(&["group", "list"]);
    assert!(!listed.contains("new"), "{listed}");
    assert_eq!(alice.json(&["group", "list"])[0]["unread"], 0);

    // Writing is reading too.
    bob.ok(&["send", "circle", "one more"]);
    assert_eq!(alice.json(&["group", "list"])[0]["unread"], 1);
    alice.ok(&["send", "circle", "yes, Thursday works"]);
    assert_eq!(alice.json(&["group", "list"])[0]["unread"], 0);
}
