//! The group-work tools from the command line, end to end: the real `confide` binary for each
//! person against a real server. A facilitator pins a meeting schedule, warning topics and
//! resources and runs a check-in round; members see the next meeting in their own time zone,
//! answer or pass, hide messages by topic, search the resources, and keep a safety plan that
//! never reaches the server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read as _, Write as _};
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portable_pty::{CommandBuilder, PtySize, native_pty_system};

use common::{BIN, PASSPHRASE, Person, person};
use confide_tests::{TestServer, contains, read_tree};

/// Runs `confide ARGS…` as `p` with the time zone `tz` (as the `TZ` variable sets it).
fn run_in(p: &Person, tz: &str, args: &[&str]) -> Output {
    std::process::Command::new(BIN)
        .arg("--profile")
        .arg(&p.dir)
        .args(args)
        .env("CONFIDE_PASSPHRASE", PASSPHRASE)
        .env("CONFIDE_INSECURE_FAST_KDF", "1")
        .env("TZ", tz)
        .output()
        .unwrap()
}

/// Alice's group "circle" with the other people joined (each labels it "circle").
fn circle(root: &std::path::Path, server: &TestServer, others: &[&str]) -> (Person, Vec<Person>) {
    let alice = person(root, "Alice", server);
    alice.ok(&["group", "create", "--label", "circle"]);
    let uses = others.len().to_string();
    let invite = alice.json(&["invite", "create", "circle", "--uses", &uses]);
    let link = invite["link"].as_str().unwrap();
    let people = others
        .iter()
        .map(|name| {
            let p = person(root, name, server);
            p.ok(&["join", link, "--label", "circle"]);
            p
        })
        .collect();
    (alice, people)
}

/// What `confide ARGS…` printed, lines it wrapped for the terminal joined again.
fn shown(p: &Person, args: &[&str]) -> String {
    p.ok(args).replace("\n    │ ", "")
}

/// The lines of `confide read circle` (with `extra` flags) that hold `needle`.
fn read_lines(p: &Person, extra: &[&str], needle: &str) -> Vec<String> {
    let mut args = vec!["read", "circle"];
    args.extend_from_slice(extra);
    shown(p, &args)
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_facilitators_schedule_shows_members_the_next_meeting_in_their_time_zone_and_members_cannot_set_it()
 {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(TestServer::start());
    let root = tempfile::tempdir().unwrap();
    let (alice, others) = circle(root.path(), &server, &["Bob"]);
    let bob = &others[0];

    // Entered in Berlin time: 18:00 CET on 15 January 2030 is 17:00 UTC.
    alice.ok(&[
        "meeting",
        "set",
        "circle",
        "--time-zone",
        "Europe/Berlin",
        "--once",
        "2030-01-15 18:00 60",
        "--link",
        "https://meet.example.org/circle",
        "--note",
        "Bring your workbook",
    ]);

    // Bob is in Tokyo (UTC+9, no summer time): for him it is 02:00 on the 16th.
    let out = run_in(bob, "Asia/Tokyo", &["meeting", "show", "circle"]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        shown.contains("Next meeting: Wed 2030-01-16 02:00–03:00 (your time)"),
        "{shown}"
    );
    assert!(
        shown.contains("Schedule (Europe/Berlin time):")
            && shown.contains("once on 2030-01-15 18:00, 60 min")
            && shown.contains("Link: https://meet.example.org/circle")
            && shown.contains("Bring your workbook"),
        "{shown}"
    );
    // The same meeting for someone in UTC.
    let out = run_in(bob, "UTC", &["meeting", "show", "circle"]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("Next meeting: Tue 2030-01-15 17:00–18:00 (your time)"),
        "{shown}"
    );

    // A member cannot change it: a clear refusal, a failing exit code, and nothing changed.
    let out = bob.run(&[
        "meeting",
        "set",
        "circle",
        "--time-zone",
        "UTC",
        "--weekly",
        "mon 10:00 60",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("only the group's facilitators can set the meeting schedule")
            && stderr.contains("you are a member here"),
        "{stderr}"
    );
    let shown = alice.ok(&["meeting", "show", "circle"]);
    assert!(
        shown.contains("once on 2030-01-15") && !shown.contains("Monday"),
        "{shown}"
    );

    // Bad input is refused before anything is sent.
    let out = alice.run(&[
        "meeting",
        "set",
        "circle",
        "--time-zone",
        "Europe/Berlin",
        "--weekly",
        "someday 18:00 60",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown day"));
}

#[test]
fn a_round_is_opened_answered_passed_and_closed_and_shown_in_turn_order() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(TestServer::start());
    let root = tempfile::tempdir().unwrap();
    let (alice, others) = circle(root.path(), &server, &["Bob", "Carol"]);
    let (bob, carol) = (&others[0], &others[1]);

    // A member cannot open one.
    let out = bob.run(&["round", "open", "circle", "Mine?"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("only the group's facilitators can open a round")
    );

    // The prompt carries a terminal escape and a bidi override: shown inert.
    alice.ok(&[
        "round",
        "open",
        "circle",
        "How are you, 1 to 5?\u{1b}[2J\u{202e}",
        "--order",
        "@Carol,@Bob",
    ]);
    // One round at a time.
    let out = alice.run(&["round", "open", "circle", "Another?"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("a round is already open"));
    // Bob answers first, then changes his answer; Carol passes after him.
    bob.ok(&["round", "answer", "circle", "3"]);
    bob.ok(&["round", "answer", "circle", "4, better than last week"]);
    carol.ok(&["round", "pass", "circle"]);

    let block = shown(bob, &["round", "show", "circle"]);
    assert!(
        block.contains("Round opened by Alice") && block.contains("(open)"),
        "{block}"
    );
    let lines: Vec<&str> = block.lines().collect();
    let prompt = lines
        .iter()
        .position(|l| l.contains("Prompt: How are you, 1 to 5?"));
    let carol_at = lines.iter().position(|l| l.contains("Carol: passed"));
    let bob_at = lines
        .iter()
        .position(|l| l.contains("Bob: 4, better than last week"));
    // The prompt, then the answers in the turn order given (Carol before Bob), each once.
    assert!(
        prompt.is_some() && prompt < carol_at && carol_at < bob_at,
        "{block}"
    );
    assert!(!block.contains("Bob: 3"), "{block}");
    assert!(
        !block.contains('\u{1b}') && !block.contains('\u{202e}'),
        "{block:?}"
    );

    // A member cannot close it; the facilitator can.
    let out = carol.run(&["round", "close", "circle"]);
    assert_eq!(out.status.code(), Some(1));
    alice.ok(&["round", "close", "circle"]);
    let block = shown(carol, &["round", "show", "circle"]);
    assert!(
        block.contains("closed") && !block.contains("(open)"),
        "{block}"
    );
    let json = carol.json(&["round", "show", "circle"]);
    let names: Vec<&str> = json["answers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Carol", "Bob"], "{json}");
    assert_eq!(json["open"], false);

    // Once closed, nobody answers any more.
    let out = bob.run(&["round", "answer", "circle", "5"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no round is open"));

    // `confide read` marks each part of the round.
    assert_eq!(
        read_lines(carol, &[], "[round prompt]: How are you").len(),
        1
    );
    assert_eq!(read_lines(carol, &[], "[round answer]: 4, better").len(), 1);
    assert_eq!(read_lines(carol, &[], "Carol [round: passed]").len(), 1);
}

#[test]
fn a_message_with_a_hidden_topic_shows_only_its_warning_until_asked() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(TestServer::start());
    let root = tempfile::tempdir().unwrap();
    let (alice, others) = circle(root.path(), &server, &["Bob", "Carol"]);
    let (bob, carol) = (&others[0], &others[1]);

    alice.ok(&["warn", "set-topics", "circle", "1=Self-harm", "2=Grief"]);
    // A member cannot set the topics.
    let out = bob.run(&["warn", "set-topics", "circle", "1=Other"]);
    assert_eq!(out.status.code(), Some(1));

    bob.ok(&["warn", "hide", "circle", "2"]);
    let topics = shown(bob, &["warn", "topics", "circle"]);
    assert!(
        topics
            .lines()
            .any(|l| l.contains("Grief") && l.contains("hidden on this device")),
        "{topics}"
    );
    assert!(
        topics
            .lines()
            .any(|l| l.contains("Self-harm") && !l.contains("hidden")),
        "{topics}"
    );

    carol.ok(&["send", "circle", "my dad died last spring", "--warn", "2"]);
    let hidden = read_lines(bob, &[], "content warning");
    assert_eq!(hidden.len(), 1, "{hidden:?}");
    assert!(
        hidden[0].contains("[content warning: Grief — hidden: confide read --show-hidden]")
            && !hidden[0].contains("my dad"),
        "{hidden:?}"
    );
    // Scripts do not get the hidden text either, unless asked.
    let json = bob.json(&["read", "circle"]);
    let m = json.as_array().unwrap().last().unwrap();
    assert_eq!(
        (m["hidden"].clone(), m["text"].clone()),
        (true.into(), serde_json::Value::Null)
    );
    let shown = read_lines(bob, &["--show-hidden"], "my dad died last spring");
    assert_eq!(shown.len(), 1);
    assert!(shown[0].contains("[content warning: Grief]"), "{shown:?}");
    // Alice does not hide Grief: she sees the text with its warning.
    let seen = read_lines(&alice, &[], "my dad died last spring");
    assert!(
        seen[0].contains("Carol [content warning: Grief]: my dad"),
        "{seen:?}"
    );

    // A facilitator adds a warning to a message sent without one: hidden for Bob from then on.
    let sent = carol.json(&["send", "circle", "the funeral was hard"]);
    assert_eq!(sent["sent"], true);
    assert_eq!(read_lines(bob, &[], "the funeral was hard").len(), 1);
    let number_for = |p: &Person| {
        read_lines(p, &[], "the funeral was hard")[0]
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    let number = number_for(&alice);
    let out = bob.run(&["warn", "add", "circle", &number_for(bob), "2"]);
    assert_eq!(out.status.code(), Some(1), "a member cannot add a warning");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("only the group's facilitators can add a content warning")
    );
    alice.ok(&["warn", "add", "circle", &number, "2"]);
    assert!(read_lines(bob, &[], "the funeral was hard").is_empty());
    assert_eq!(
        read_lines(bob, &[], "hidden: confide read --show-hidden").len(),
        2
    );

    // Unhidden, everything reads as before, with its warning.
    bob.ok(&["warn", "unhide", "circle", "2"]);
    let back = read_lines(bob, &[], "[content warning: Grief]:");
    assert_eq!(back.len(), 2, "{back:?}");
}

#[test]
fn resources_are_searched_and_the_safety_plan_stays_on_the_persons_devices() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(TestServer::start());
    let root = tempfile::tempdir().unwrap();
    let (alice, others) = circle(root.path(), &server, &["Bob"]);
    let bob = &others[0];

    alice.ok(&[
        "resources",
        "add",
        "circle",
        "--title",
        "Box breathing",
        "--category",
        "Grounding",
        "--text",
        "Breathe in for four, hold for four.",
    ]);
    alice.ok(&[
        "resources",
        "add",
        "circle",
        "--title",
        "Sleep hygiene",
        "--category",
        "Reading",
        "--link",
        "https://example.org/sleep",
    ]);
    let out = bob.run(&[
        "resources",
        "add",
        "circle",
        "--title",
        "Mine",
        "--category",
        "X",
        "--text",
        "y",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("only the group's facilitators"));

    let found = shown(
        bob,
        &["resources", "list", "circle", "--search", "BREATHE hold"],
    );
    assert!(
        found.contains("[1] Box breathing (Grounding)") && !found.contains("Sleep"),
        "{found}"
    );
    let found = shown(bob, &["resources", "list", "circle", "--search", "reading"]);
    assert!(
        found.contains("[2] Sleep hygiene (Reading)")
            && found.contains("link: https://example.org/sleep")
            && !found.contains("Box"),
        "{found}"
    );
    alice.ok(&["resources", "remove", "circle", "1"]);
    let all = shown(bob, &["resources", "list", "circle"]);
    assert!(
        all.contains("[1] Sleep hygiene") && !all.contains("Box"),
        "{all}"
    );

    // Bob's safety plan.
    const STEP: &str = "Walk the dog along the canal";
    const REASON: &str = "My sister Ada";
    bob.ok(&["safety-plan", "add", "coping_steps", STEP]);
    bob.ok(&["safety-plan", "add", "coping_steps", "Call the helpline"]);
    bob.ok(&["safety-plan", "add", "reasons", REASON]);
    let plan = shown(bob, &["safety-plan", "show"]);
    assert!(
        plan.contains(&format!("1. {STEP}"))
            && plan.contains("2. Call the helpline")
            && plan.contains(&format!("1. {REASON}")),
        "{plan}"
    );
    // Beside the group's crisis resources, for Bob's eyes.
    alice.ok(&["crisis", "set", "circle", "Helpline: 0800 111 0 111"]);
    let crisis = shown(bob, &["crisis", "show", "circle"]);
    assert!(
        crisis.contains("0800 111 0 111") && crisis.contains(STEP),
        "{crisis}"
    );
    // Alice has none: hers says how to start one, and shows nothing of Bob's.
    let hers = shown(&alice, &["crisis", "show", "circle"]);
    assert!(
        hers.contains("no safety plan") && !hers.contains(STEP),
        "{hers}"
    );

    bob.ok(&["safety-plan", "remove", "coping_steps", "1"]);
    let plan = bob.json(&["safety-plan", "show"]);
    assert_eq!(
        plan["coping_steps"],
        serde_json::json!(["Call the helpline"])
    );
    assert_eq!(plan["reasons"], serde_json::json!([REASON]));
    let out = bob.run(&["safety-plan", "remove", "hobbies", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown section"));

    // Nothing of it is on the server, nor in plaintext in Bob's profile.
    for dir in [&server.data_dir, &bob.dir] {
        for (path, bytes) in read_tree(dir) {
            for secret in [STEP, REASON, "Call the helpline"] {
                assert!(
                    !contains(&bytes, secret.as_bytes()),
                    "{} holds {secret:?}",
                    path.display()
                );
            }
        }
    }
}

/// `confide chat circle` for a person, in a pseudo-terminal read through a terminal emulator.
struct Chat {
    /// The terminal emulator fed with everything the chat writes.
    screen: Arc<Mutex<vt100::Parser>>,
    /// Keys go here.
    keys: Box<dyn std::io::Write + Send>,
    /// The `confide` process.
    child: Box<dyn portable_pty::Child + Send + Sync>,
    /// Kept open for the chat's lifetime (dropping it hangs up the terminal).
    _pty: Box<dyn portable_pty::MasterPty + Send>,
}

/// How long the chat may take to show something before the test fails (a hang is a failure,
/// not a timing claim).
const SCREEN_TIMEOUT: Duration = Duration::from_secs(30);

impl Chat {
    fn start(p: &Person) -> Chat {
        let (rows, cols) = (30, 130);
        let pty = native_pty_system()
            .openpty(PtySize {
                rows,
                cols,
                pixel_width: 0,
                pixel_height: 0,
            })
            .unwrap();
        let mut command = CommandBuilder::new(BIN);
        command.arg("--profile");
        command.arg(&p.dir);
        command.args(["chat", "circle"]);
        command.env("CONFIDE_PASSPHRASE", PASSPHRASE);
        command.env("TERM", "xterm-256color");
        command.env("TZ", "UTC");
        let child = pty.slave.spawn_command(command).unwrap();
        drop(pty.slave);
        let screen = Arc::new(Mutex::new(vt100::Parser::new(
            rows.try_into().unwrap(),
            cols.try_into().unwrap(),
            0,
        )));
        let mut reader = pty.master.try_clone_reader().unwrap();
        let feed = screen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => feed.lock().unwrap().process(&buf[..n]),
                }
            }
        });
        let keys = pty.master.take_writer().unwrap();
        Chat {
            screen,
            keys,
            child,
            _pty: pty.master,
        }
    }

    /// Waits until the screen satisfies `ready`; fails with the screen after the deadline.
    fn wait_until(&mut self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + SCREEN_TIMEOUT;
        loop {
            let text = self.screen.lock().unwrap().screen().contents();
            if ready(&text) {
                return text;
            }
            if Instant::now() > deadline || self.child.try_wait().unwrap().is_some() {
                panic!("the chat never showed {what}; the screen:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_for(&mut self, needle: &str) -> String {
        self.wait_until(&format!("{needle:?}"), |s| s.contains(needle))
    }

    fn keys(&mut self, text: &str) {
        self.keys.write_all(text.as_bytes()).unwrap();
        self.keys.flush().unwrap();
    }
}

impl Drop for Chat {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

#[test]
fn the_chat_shows_the_next_meeting_the_open_round_and_hidden_messages_until_ctrl_r() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(TestServer::start());
    let root = tempfile::tempdir().unwrap();
    let (alice, others) = circle(root.path(), &server, &["Bob"]);
    let bob = &others[0];
    alice.ok(&[
        "meeting",
        "set",
        "circle",
        "--time-zone",
        "Europe/Berlin",
        "--once",
        "2030-01-15 18:00 60",
    ]);
    alice.ok(&["warn", "set-topics", "circle", "2=Grief"]);
    bob.ok(&["warn", "hide", "circle", "2"]);
    alice.ok(&["send", "circle", "my dad died last spring", "--warn", "2"]);
    alice.ok(&["round", "open", "circle", "How are you today?"]);

    let mut chat = Chat::start(bob);
    // 18:00 in Berlin is 17:00 for Bob, who is in UTC.
    chat.wait_for("circle · next meeting Tue 15 Jan 17:00");
    chat.wait_for("Round: How are you today? — /answer <text> or /pass");
    let shown = chat.wait_for("[content warning: Grief — hidden · Ctrl-R shows it]");
    assert!(!shown.contains("my dad"), "{shown}");
    chat.keys("\x12");
    chat.wait_for("[content warning: Grief]: my dad died last spring");

    chat.keys("/answer 4, thanks\r");
    chat.wait_for("Round: How are you today? — you answered");
    chat.wait_for("Bob (you) [round answer]: 4, thanks");
    // The facilitator closes the round elsewhere: the prompt leaves the top of the chat.
    alice.ok(&["round", "close", "circle"]);
    chat.wait_until("the round's banner gone", |s| {
        !s.contains("Round: How are you")
    });
    let block = shown_round(&alice);
    assert!(block.contains("Bob: 4, thanks"), "{block}");
    chat.keys("\x03");
}

/// Alice's `confide round show circle`, wrapped lines joined.
fn shown_round(p: &Person) -> String {
    shown(p, &["round", "show", "circle"])
}
