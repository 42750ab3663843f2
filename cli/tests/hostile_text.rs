//! Text chosen by someone else cannot take over the reader's terminal: a member who puts
//! escape sequences, bidirectional overrides or line breaks into a message, a join-request
//! note, a report or an urgent request cannot clear the screen, draw on it, reorder what is
//! shown or forge a line that looks like it came from another person. `--json` still gives the
//! exact text back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Person, person};
use confide_tests::TestServer;

/// The line an attacker tries to pass off as one from Alice, the facilitator.
const FORGED: &str = "Alice: what is your phone number?";

/// A text that clears the screen, moves the cursor, sets the window title (OSC), colours
/// (CSI, also as the one-byte C1 form), reverses the rest of the line (bidi override), hides a
/// character (zero-width space), and starts a new line that looks like Alice's.
fn hostile(tag: &str) -> String {
    format!(
        "{tag}\u{1b}[2J\u{1b}[H\u{1b}]0;owned\u{7}\u{1b}[31m\u{9b}1m\u{202e}desrever\u{202c}\u{200b}\r\n{FORGED}"
    )
}

/// Whether a character, printed raw, changes what the terminal shows rather than adding a
/// visible character: control characters, bidirectional controls, invisible format characters.
fn dangerous(c: char) -> bool {
    (c.is_control() && c != '\n')
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{061c}' | '\u{feff}')
}

/// `out` shows `tag`'s text with nothing raw in it, and the forged line cannot be taken for a
/// line of Alice's: it is not at the start of a line.
fn assert_neutralised(out: &str, tag: &str, what: &str) {
    assert!(
        out.contains(tag),
        "{what}: the text is not shown at all:\n{out}"
    );
    if let Some(c) = out.chars().find(|c| dangerous(*c)) {
        panic!("{what}: {c:?} reached the terminal raw:\n{out:?}");
    }
    let line = out
        .lines()
        .find(|l| l.contains("what is your phone number?"))
        .unwrap_or_else(|| panic!("{what}: the second line of the text is missing:\n{out}"));
    assert!(
        !line.trim_start().starts_with("Alice"),
        "{what}: a line of its own that looks like it is from Alice:\n{out}"
    );
}

/// Every line `confide read` prints starts a message (`#seq`) or is indented under one.
fn assert_every_line_belongs_to_a_message(out: &str) {
    for line in out.lines() {
        assert!(
            line.starts_with('#') || line.starts_with(' '),
            "a line that belongs to no message: {line:?}\n{out}"
        );
    }
}

struct Group {
    alice: Person,
    bob: Person,
    mallory: Person,
    _root: tempfile::TempDir,
    server: TestServer,
    _runtime: tokio::runtime::Runtime,
}

/// Alice facilitates "circle"; Bob and Mallory are members who accepted its agreement.
fn group() -> Group {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(TestServer::start());
    let root = tempfile::tempdir().unwrap();
    let alice = person(root.path(), "Alice", &server);
    let bob = person(root.path(), "Bob", &server);
    let mallory = person(root.path(), "Mallory", &server);
    alice.ok(&["group", "create", "--label", "circle"]);
    let invite = alice.json(&["invite", "create", "circle", "--uses", "2", "--valid", "1h"]);
    let link = invite["link"].as_str().unwrap();
    bob.ok(&["join", link, "--label", "circle"]);
    mallory.ok(&["join", link, "--label", "circle"]);
    Group {
        alice,
        bob,
        mallory,
        _root: root,
        server,
        _runtime: runtime,
    }
}

#[test]
fn a_message_cannot_rewrite_another_members_terminal_or_forge_a_line() {
    let g = group();
    g.bob.ok(&["send", "circle", "hello everyone"]);
    let text = hostile("mallory-says");
    g.mallory.ok(&["send", "circle", &text]);

    let out = g.bob.ok(&["read", "circle"]);
    assert_neutralised(&out, "mallory-says", "confide read");
    assert_every_line_belongs_to_a_message(&out);
    // The text is Mallory's: beside her name or, too long for that, on the line below.
    let lines: Vec<&str> = out.lines().collect();
    let at = lines.iter().position(|l| l.contains("Mallory: ")).unwrap();
    assert!(
        lines[at..=at + 1]
            .iter()
            .any(|l| l.contains("mallory-says")),
        "{out}"
    );

    let json = g.bob.json(&["read", "circle"]);
    let texts: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["hello everyone", text.as_str()]);
}

#[test]
fn a_report_and_an_urgent_request_reach_the_facilitator_neutralised() {
    let g = group();
    let text = hostile("reported-text");
    g.mallory.ok(&["send", "circle", &text]);
    let reason = hostile("report-reason");
    g.bob.ok(&["report", "circle", "1", &reason]);
    let urgent = hostile("urgent-text");
    g.mallory.ok(&["urgent", "circle", &urgent]);

    let out = g.alice.ok(&["mod", "queue", "circle"]);
    assert_neutralised(
        &out,
        "reported-text",
        "the report's quote in confide mod queue",
    );
    assert_neutralised(
        &out,
        "report-reason",
        "the report's reason in confide mod queue",
    );
    assert_neutralised(
        &out,
        "urgent-text",
        "an urgent request in confide mod queue",
    );

    let json = g.alice.json(&["mod", "queue", "circle"]);
    let items: Vec<&serde_json::Value> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["item"])
        .collect();
    let report = items.iter().find(|i| i["kind"] == "report").unwrap();
    assert_eq!(report["text"], text.as_str());
    assert_eq!(report["reason"], reason.as_str());
    let request = items.iter().find(|i| i["kind"] == "urgent").unwrap();
    assert_eq!(request["text"], urgent.as_str());
}

#[test]
fn a_join_request_note_reaches_the_facilitator_neutralised() {
    let g = group();
    let root = tempfile::tempdir().unwrap();
    let invite = g.alice.json(&["invite", "create", "circle", "--approval"]);
    let link = invite["link"].as_str().unwrap();
    let note = hostile("join-note");
    // Anyone holding the link can ask to join, with any note.
    let eve = person(root.path(), "Eve", &g.server);
    eve.ok(&["join", link, "--note", &note]);

    let out = g.alice.ok(&["mod", "requests", "circle"]);
    assert_neutralised(&out, "join-note", "confide mod requests");
    let json = g.alice.json(&["mod", "requests", "circle"]);
    assert_eq!(json[0]["note"], note.as_str());
}

#[test]
fn pinned_texts_and_moderation_reasons_are_neutralised() {
    let g = group();
    // A facilitator's texts are someone else's text too for everyone else.
    let agreement = hostile("agreement-text");
    g.alice.ok(&["agreement", "set", "circle", &agreement]);
    let crisis = hostile("crisis-text");
    g.alice.ok(&["crisis", "set", "circle", &crisis]);
    let reason = hostile("mute-reason");
    g.alice.ok(&[
        "mod", "mute", "circle", "@Mallory", "10m", "--reason", &reason,
    ]);

    let out = g.bob.ok(&["agreement", "show", "circle"]);
    assert_neutralised(&out, "agreement-text", "confide agreement show");
    let out = g.bob.ok(&["crisis", "show", "circle"]);
    assert_neutralised(&out, "crisis-text", "confide crisis show");
    let out = g.alice.ok(&["mod", "log", "circle"]);
    assert_neutralised(&out, "mute-reason", "confide mod log");

    assert_eq!(
        g.bob.json(&["agreement", "show", "circle"])["text"],
        agreement.as_str()
    );
    assert_eq!(
        g.bob.json(&["crisis", "show", "circle"])["text"],
        crisis.as_str()
    );
}

#[test]
fn accepting_the_agreement_shows_its_text_neutralised() {
    let g = group();
    let agreement = hostile("agreement-text");
    g.alice.ok(&["agreement", "set", "circle", &agreement]);
    let out = g.bob.ok(&["agreement", "accept", "circle", "--yes"]);
    assert_neutralised(&out, "agreement-text", "confide agreement accept");
    // With --json the text goes to stderr (stdout is the JSON answer): neutralised there too.
    let out = g
        .mallory
        .run(&["--json", "agreement", "accept", "circle", "--yes"]);
    assert!(out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_neutralised(&stderr, "agreement-text", "confide --json agreement accept");
}

#[test]
fn invite_list_shows_joiners_names_neutralised() {
    let g = group();
    let root = tempfile::tempdir().unwrap();
    let invite = g.alice.json(&["invite", "create", "circle"]);
    let link = invite["link"].as_str().unwrap();
    // The name rules allow invisible characters; a terminal must not get them raw.
    let eve = person(root.path(), "Ev\u{200b}e\u{feff}", &g.server);
    eve.ok(&["join", link, "--label", "circle"]);
    let out = g.alice.ok(&["invite", "list", "circle"]);
    assert!(out.contains("Ev\u{fffd}e\u{fffd}"), "{out}");
    if let Some(c) = out.chars().find(|c| dangerous(*c)) {
        panic!("{c:?} reached the terminal raw:\n{out:?}");
    }
}

#[test]
fn read_through_a_pipe_is_wrapped_before_a_terminal_could_wrap_it_onto_a_forged_line() {
    let g = group();
    // Padding that, unwrapped, puts the forged line right at the start of a terminal's second
    // row on an 80-column terminal (`confide read circle | less`).
    let header = "#1     2026-05-01 18:30  Mallory: ";
    let text = format!("{}{FORGED}", "x".repeat(80 - header.len()));
    g.mallory.ok(&["send", "circle", &text]);
    let out = g.bob.ok(&["read", "circle"]);
    assert_every_line_belongs_to_a_message(&out);
    for line in out.lines() {
        assert!(
            line.chars().count() <= 80,
            "wider than 80 columns: {line:?}"
        );
    }
}

#[test]
fn a_look_alike_name_is_marked_where_its_messages_are_read() {
    let g = group();
    let root = tempfile::tempdir().unwrap();
    let invite = g.alice.json(&["invite", "create", "circle"]);
    let link = invite["link"].as_str().unwrap();
    // A Cyrillic А (U+0410): looks exactly like the facilitator's name.
    let fake = person(root.path(), "\u{410}lice", &g.server);
    fake.ok(&["join", link, "--label", "circle"]);
    g.alice.ok(&["send", "circle", "welcome everyone"]);
    fake.ok(&["send", "circle", "what is your phone number?"]);

    let out = g.bob.ok(&["read", "circle"]);
    let fake_line = out
        .lines()
        .find(|l| l.contains("phone number"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        fake_line.contains("\u{410}lice \u{26a0}: what is your phone number?"),
        "{out}"
    );
    // The real Alice's name looks like the newcomer's too: both are marked, so neither passes
    // for the only Alice.
    let real_line = out.lines().find(|l| l.contains("welcome")).unwrap();
    assert!(real_line.contains("Alice \u{26a0}: welcome"), "{out}");
    let json = g.bob.json(&["read", "circle"]);
    assert_eq!(json[1]["looks_like"][0], "Alice");
}
