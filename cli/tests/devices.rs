//! `confide device`: a person links a second computer to their profile by comparing the
//! numbers both show, both read their groups, and one unlinks the other — with the real
//! `confide` binary against a real server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{BIN, PASSPHRASE, Person, person};
use confide_tests::TestServer;

/// Longest a test waits for a running `confide` to print its next line: only so that a broken
/// link fails the test instead of hanging it; never reached when things work.
const STUCK: Duration = Duration::from_secs(120);

/// A `confide` process a test talks to: its standard input, and its standard output line by
/// line as JSON.
struct Running {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Running {
    /// Starts `confide --profile DIR --json ARGS…` with piped standard input and output.
    fn start(dir: &std::path::Path, args: &[&str]) -> Running {
        let mut child = Command::new(BIN)
            .arg("--profile")
            .arg(dir)
            .arg("--json")
            .args(args)
            .env("CONFIDE_PASSPHRASE", PASSPHRASE)
            .env("CONFIDE_INSECURE_FAST_KDF", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Running {
            child,
            stdin,
            lines,
        }
    }

    /// The next line printed, as JSON; `None` once the process closed its output.
    fn next(&mut self) -> Option<serde_json::Value> {
        match self.lines.recv_timeout(STUCK) {
            Ok(line) => Some(
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: not JSON: {line}")),
            ),
            Err(mpsc::RecvTimeoutError::Disconnected) => None,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("confide printed nothing more"),
        }
    }

    /// Types `text` and Enter, then closes standard input.
    fn type_line(&mut self, text: &str) {
        let mut stdin = self.stdin.take().unwrap();
        writeln!(stdin, "{text}").unwrap();
    }

    /// Waits for the process to end: whether it succeeded, and its standard error.
    fn finish(mut self) -> (bool, String) {
        drop(self.stdin.take());
        let out = self.child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// The texts `person` reads in `group` (`confide read --json`).
fn texts(person: &Person, group: &str) -> Vec<String> {
    person
        .json(&["read", group])
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_string())
        .collect()
}

/// The devices `confide device list --json` shows.
fn devices(person: &Person) -> Vec<serde_json::Value> {
    person.json(&["device", "list"])["devices"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn a_second_computer_is_linked_reads_the_groups_and_is_unlinked() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(TestServer::start());
    let root = tempfile::tempdir().unwrap();
    let alice = person(root.path(), "Alice", &server);
    let bob = person(root.path(), "Bob", &server);
    alice.ok(&["group", "create", "--label", "circle"]);
    let invite = alice.json(&["invite", "create", "circle", "--valid", "1h"]);
    bob.ok(&[
        "join",
        invite["link"].as_str().unwrap(),
        "--label",
        "circle",
    ]);
    let group = alice.json(&["group", "list"])[0]["group"]
        .as_str()
        .unwrap()
        .to_string();
    let laptop = Person {
        dir: root.path().join("Alice-laptop"),
    };
    let link_args = [
        "device",
        "link",
        "--server",
        &server.url,
        "--pin",
        &server.pin,
    ];

    // Numbers that differ: nothing is linked, on either side, and no profile is left behind.
    let mut new = Running::start(&laptop.dir, &link_args);
    let code = new.next().unwrap()["code"].as_str().unwrap().to_string();
    let refused = alice.run(&["device", "add", &code, "--expect-sas", "0000 0000 0000"]);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("The numbers differ: someone may be in the middle. Nothing was linked."),
        "{said}"
    );
    if let Some(shown) = new.next() {
        let sas = shown["sas"].as_str().unwrap().to_string();
        new.type_line(&sas);
    }
    let (linked, said) = new.finish();
    assert!(!linked, "{said}");
    assert!(!laptop.dir.join("settings.json").exists());
    assert_eq!(devices(&alice).len(), 1);

    // The same numbers typed on both: linked.
    let mut new = Running::start(&laptop.dir, &link_args);
    let shown = new.next().unwrap();
    let code = shown["code"].as_str().unwrap().to_string();
    assert!(
        shown["qr"]
            .as_str()
            .unwrap()
            .contains(&code.replace('-', "")),
        "{shown}"
    );
    let mut old = Running::start(&alice.dir, &["device", "add", &code]);
    let on_old = old.next().unwrap();
    let on_new = new.next().unwrap();
    assert_eq!(on_old["sas"], on_new["sas"], "{on_old} {on_new}");
    assert_eq!(on_new["name"], "Alice");
    old.type_line(on_new["sas"].as_str().unwrap());
    new.type_line(on_old["sas"].as_str().unwrap());
    let done_new = new.next().unwrap();
    let done_old = old.next().unwrap();
    assert_eq!(done_new["linked"], true, "{done_new}");
    assert_eq!(done_old["linked"], true, "{done_old}");
    assert_eq!(done_new["device"], done_old["device"]);
    assert_eq!(done_new["device"], on_old["device"]);
    let laptop_device = done_new["device"].as_str().unwrap().to_string();
    let (ok, said) = new.finish();
    assert!(ok, "{said}");
    let (ok, said) = old.finish();
    assert!(ok, "{said}");
    assert_eq!(
        laptop.json(&["whoami"])["user"],
        alice.json(&["whoami"])["user"]
    );

    // Both list the two devices, each marking itself.
    for (who, this) in [(&alice, false), (&laptop, true)] {
        let list = devices(who);
        assert_eq!(list.len(), 2, "{list:?}");
        let laptop_entry = list
            .iter()
            .find(|d| d["device"] == laptop_device.as_str())
            .unwrap_or_else(|| panic!("{list:?}"));
        assert_eq!(laptop_entry["this_device"], this);
    }

    let shown = laptop.ok(&["device", "list"]);
    assert!(
        shown.contains("Your devices: 2")
            && shown.contains(&format!("{laptop_device} (this device")),
        "{shown}"
    );

    // What one of Alice's devices sends, the other reads; what Bob sends, both read.
    alice.ok(&["send", "circle", "written on the desktop"]);
    assert!(texts(&laptop, &group).contains(&"written on the desktop".to_string()));
    laptop.ok(&["send", &group, "written on the laptop"]);
    assert!(texts(&alice, "circle").contains(&"written on the laptop".to_string()));
    assert!(texts(&bob, "circle").contains(&"written on the laptop".to_string()));
    bob.ok(&["send", "circle", "hello to both of your computers"]);
    for who in [&alice, &laptop] {
        let read = texts(who, &group);
        assert!(
            read.contains(&"hello to both of your computers".to_string()),
            "{read:?}"
        );
    }

    // The desktop unlinks the laptop: the laptop reads nothing new, and says why.
    let unlinked = alice.json(&["device", "unlink", &laptop_device[..8]]);
    assert_eq!(unlinked["unlinked"], laptop_device.as_str());
    assert_eq!(devices(&alice).len(), 1);
    bob.ok(&["send", "circle", "after the laptop was unlinked"]);
    assert!(texts(&alice, "circle").contains(&"after the laptop was unlinked".to_string()));
    for _ in 0..2 {
        let out = laptop.run(&["read", &group]);
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(9), "{said}");
        assert!(
            said.contains("this device was unlinked from another of your devices"),
            "{said}"
        );
        assert!(!String::from_utf8_lossy(&out.stdout).contains("after the laptop was unlinked"));
    }

    // The last device cannot be unlinked.
    let alice_device = alice.json(&["whoami"])["device"]
        .as_str()
        .unwrap()
        .to_string();
    let out = alice.run(&["device", "unlink", &alice_device]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("this is your only device"), "{said}");
    assert_eq!(devices(&alice).len(), 1);
}
