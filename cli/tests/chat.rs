//! The terminal chat, end to end: the real `confide` binary runs `confide chat` in a real
//! pseudo-terminal against a real server, and the test reads the screen through a terminal
//! emulator, as a person would see it. The other members are library clients.
//!
//! The chat's profile is made directly (a registered store plus `settings.json`), so these
//! tests depend only on `confide chat` itself. Every wait is bounded: the screen is read until
//! the expected text appears or the deadline passes, and a failure prints the screen.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portable_pty::{CommandBuilder, PtySize, native_pty_system};

use confide_client::{Client, ClientConfig, ClientError, Events, InviteOptions, RemoveOptions};
use confide_protocol::GroupId;
use confide_protocol::frames::ErrorCode;
use confide_protocol::identity::KdfParams;
use confide_tests::{TestServer, TestUser};

/// How long the screen may take to show something before the test fails (a hang is a
/// failure, not a timing claim).
const SCREEN_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the screen is read while waiting.
const POLL: Duration = Duration::from_millis(50);
/// Rows of the pseudo-terminal.
const ROWS: u16 = 32;
/// Columns of the pseudo-terminal.
const COLS: u16 = 120;
/// The label the chat's profile gives the group.
const LABEL: &str = "support";
/// The chat user's store passphrase.
const PASSPHRASE: &str = "a long passphrase for the chat test";

/// The `confide` binary cargo built for this test.
fn confide_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_confide"))
}

/// A profile directory for the chat, as `confide init` would leave it: a registered,
/// encrypted store holding the group's label, and the settings naming the server.
struct Profile {
    dir: tempfile::TempDir,
}

impl Profile {
    fn config(dir: &Path, server: &TestServer) -> ClientConfig {
        let mut config = ClientConfig::new(&server.url, server.trust(), dir.join("store"));
        config.kdf = KdfParams::INSECURE_FOR_TESTS;
        config
    }

    /// Registers `name` in a new profile; the client stays open so the test can set things
    /// up with it (create or join the group) before [`Self::finish`].
    async fn register(server: &TestServer, name: &str) -> (Profile, Client, Events) {
        let dir = tempfile::tempdir().unwrap();
        let (client, events) = Client::register(
            Self::config(dir.path(), server),
            name,
            PASSPHRASE.as_bytes(),
        )
        .await
        .unwrap();
        (Profile { dir }, client, events)
    }

    /// Labels the group (in the encrypted store), closes the library client (the chat opens
    /// the store itself) and writes the settings.
    async fn finish(
        &self,
        server: &TestServer,
        client: Client,
        mut events: Events,
        group: GroupId,
    ) {
        client.set_label(group, Some(LABEL)).await.unwrap();
        client.shutdown().await;
        while events.next().await.is_some() {}
        let settings = serde_json::json!({
            "server": server.url,
            "pin": server.pin,
        });
        std::fs::write(
            self.dir.path().join("settings.json"),
            serde_json::to_string_pretty(&settings).unwrap(),
        )
        .unwrap();
    }
}

/// `confide chat` running in a pseudo-terminal.
struct Chat {
    /// The terminal emulator fed with everything the chat writes.
    screen: Arc<Mutex<vt100::Parser>>,
    /// Keys go here.
    keys: Box<dyn std::io::Write + Send>,
    /// The `confide` process.
    child: Mutex<Box<dyn portable_pty::Child + Send + Sync>>,
    /// Kept open for the chat's lifetime (dropping it hangs up the terminal).
    _pty: Box<dyn portable_pty::MasterPty + Send>,
}

impl Chat {
    /// Starts `confide chat support` with the profile.
    fn start(profile: &Profile) -> Chat {
        let pty = native_pty_system()
            .openpty(PtySize {
                rows: ROWS,
                cols: COLS,
                pixel_width: 0,
                pixel_height: 0,
            })
            .unwrap();
        let mut command = CommandBuilder::new(confide_binary());
        command.args(["chat", LABEL]);
        command.cwd(profile.dir.path());
        command.env("CONFIDE_HOME", profile.dir.path());
        command.env("CONFIDE_PASSPHRASE", PASSPHRASE);
        command.env("TERM", "xterm-256color");
        command.env("TZ", "UTC");
        let child = pty.slave.spawn_command(command).unwrap();
        // Only the child keeps the terminal's other end, so reads end when it exits.
        drop(pty.slave);
        let screen = Arc::new(Mutex::new(vt100::Parser::new(
            ROWS.try_into().unwrap(),
            COLS.try_into().unwrap(),
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
            child: Mutex::new(child),
            _pty: pty.master,
        }
    }

    /// The screen's text.
    fn text(&self) -> String {
        self.screen.lock().unwrap().screen().contents()
    }

    /// Waits until the screen satisfies `ready`, failing with the screen after the deadline.
    async fn wait_until(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + SCREEN_TIMEOUT;
        loop {
            let text = self.text();
            if ready(&text) {
                return text;
            }
            if Instant::now() > deadline {
                panic!("the chat never showed {what}; the screen:\n{text}");
            }
            if let Some(status) = self.exited() {
                panic!("the chat exited ({status:?}) before showing {what}; the screen:\n{text}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until `needle` is on the screen.
    async fn wait_for(&self, needle: &str) -> String {
        self.wait_until(&format!("{needle:?}"), |s| s.contains(needle))
            .await
    }

    /// Types text (no Enter).
    fn type_text(&mut self, text: &str) {
        self.keys.write_all(text.as_bytes()).unwrap();
        self.keys.flush().unwrap();
    }

    /// Types a line and presses Enter.
    fn enter(&mut self, line: &str) {
        self.type_text(line);
        self.type_text("\r");
    }

    /// The exit status, once the chat has exited.
    fn exited(&self) -> Option<portable_pty::ExitStatus> {
        self.child.lock().unwrap().try_wait().unwrap()
    }

    /// Waits for the chat to exit.
    async fn wait_exit(&self) -> portable_pty::ExitStatus {
        let deadline = Instant::now() + SCREEN_TIMEOUT;
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            if Instant::now() > deadline {
                panic!("the chat did not exit; the screen:\n{}", self.text());
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for Chat {
    fn drop(&mut self) {
        if let Ok(child) = self.child.get_mut() {
            let _ = child.kill();
        }
    }
}

/// A facilitator (library client) and an open group with an invite for others.
async fn facilitated_group(server: &TestServer) -> (TestUser, GroupId, confide_client::Invite) {
    let alice = TestUser::new(server, "Alice").await;
    let group = alice.client.create_group().await.unwrap();
    let invite = alice
        .client
        .create_invite(
            group,
            InviteOptions::new()
                .max_uses(10)
                .valid_for(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    (alice, group, invite)
}

/// Waits until `user`'s history of `group` holds a message with `text`.
async fn wait_for_text(
    user: &mut TestUser,
    group: GroupId,
    text: &str,
) -> confide_client::ChatMessage {
    let deadline = Instant::now() + SCREEN_TIMEOUT;
    loop {
        let history = user.client.history(group, None, 1000).await.unwrap();
        if let Some(m) = history.into_iter().find(|m| m.text == text) {
            return m;
        }
        assert!(Instant::now() < deadline, "{text:?} never arrived");
        let _ = tokio::time::timeout(Duration::from_millis(100), user.events.next()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_accepts_the_agreement_then_talks_with_the_group() {
    let server = TestServer::start().await;
    let (mut alice, group, invite) = facilitated_group(&server).await;
    let (profile, bob, bob_events) = Profile::register(&server, "Bob").await;
    bob.join(&invite, None).await.unwrap();
    alice
        .client
        .set_agreement(group, "What is said here stays here. Be kind.")
        .await
        .unwrap();
    profile.finish(&server, bob, bob_events, group).await;

    let mut chat = Chat::start(&profile);
    // The group opens by its label, and the agreement comes first.
    chat.wait_for(LABEL).await;
    chat.wait_for("What is said here stays here. Be kind.")
        .await;
    chat.wait_for("I accept").await;
    chat.type_text("y");
    chat.wait_until("the agreement window closed and the thanks", |s| {
        !s.contains("I accept") && s.contains("You can take part now")
    })
    .await;

    // Enter sends; the facilitator's library client receives it.
    chat.enter("Hello from the terminal");
    let sent = wait_for_text(&mut alice, group, "Hello from the terminal").await;
    assert_eq!(sent.sender_name, "Bob");
    chat.wait_for("Bob (you): Hello from the terminal").await;

    // A reply appears on the screen, with its author.
    alice
        .client
        .send_text(group, "Welcome, Bob. Glad you are here.", None)
        .await
        .unwrap();
    chat.wait_for("Alice: Welcome, Bob. Glad you are here.")
        .await;

    // /help lists the commands in a window that Esc closes.
    chat.enter("/help");
    chat.wait_for("/mute @name 30m [reason]").await;
    chat.type_text("\u{1b}");
    chat.wait_until("the help window closed", |s| !s.contains("/mute @name 30m"))
        .await;

    // Ctrl-C leaves and gives the terminal back.
    chat.type_text("\u{3}");
    let status = chat.wait_exit().await;
    assert!(status.success(), "{status:?}");
    chat.wait_until("the main screen again", |_| {
        !chat.screen.lock().unwrap().screen().alternate_screen()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_facilitator_mutes_a_member_from_the_chat_and_the_server_refuses_their_posts() {
    let server = TestServer::start().await;
    // The chat user is the facilitator this time.
    let (profile, alice, alice_events) = Profile::register(&server, "Alice").await;
    let group = alice.create_group().await.unwrap();
    let invite = alice
        .create_invite(
            group,
            InviteOptions::new()
                .max_uses(10)
                .valid_for(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    let bob = TestUser::new(&server, "Bob").await;
    bob.client.join(&invite, None).await.unwrap();
    profile.finish(&server, alice, alice_events, group).await;

    let mut chat = Chat::start(&profile);
    chat.wait_for(LABEL).await;
    chat.wait_for("● connected").await;
    chat.enter("/mute @Bob 30m cooling off");
    chat.wait_for("Bob is muted until").await;

    bob.client.sync().await.unwrap();
    let status = bob.client.status(group).await.unwrap();
    assert!(status.muted_until.is_some(), "Bob sees that he is muted");
    let err = bob
        .client
        .send_text(group, "let me speak", None)
        .await
        .unwrap_err();
    assert_eq!(err.server_code(), Some(ErrorCode::Muted), "{err}");
    assert!(matches!(err, ClientError::Server { .. }));

    // And lifts it again.
    chat.enter("/unmute @Bob");
    chat.wait_for("Bob can post again.").await;
    bob.client.sync().await.unwrap();
    bob.client
        .send_text(group, "thank you", None)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_muted_member_sees_the_mute_and_the_servers_refusal() {
    let server = TestServer::start().await;
    let (alice, group, invite) = facilitated_group(&server).await;
    let (profile, bob, bob_events) = Profile::register(&server, "Bob").await;
    bob.join(&invite, None).await.unwrap();
    let bob_id = bob.user();
    profile.finish(&server, bob, bob_events, group).await;

    let mut chat = Chat::start(&profile);
    chat.wait_for(LABEL).await;
    chat.wait_for("● connected").await;
    // Muted while the chat is open: the banner shows it without any key pressed.
    alice
        .client
        .mute(
            group,
            bob_id,
            Duration::from_secs(30 * 60),
            Some("cooling off"),
        )
        .await
        .unwrap();
    chat.wait_until("the muted banner on the status line", |s| {
        s.lines()
            .any(|l| l.contains("● connected") && l.contains("muted until"))
    })
    .await;
    // Trying anyway shows the refusal, and the text stays in the input line.
    chat.enter("can I say something?");
    chat.wait_for("Not sent: you are muted until").await;
    chat.wait_for("› can I say something?").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_conversation_is_named_by_the_person_and_accepted_with_slash_accept() {
    let server = TestServer::start().await;
    let (alice, group, invite) = facilitated_group(&server).await;
    let (profile, bob, bob_events) = Profile::register(&server, "Bob").await;
    bob.join(&invite, None).await.unwrap();
    let bob_id = bob.user();
    profile.finish(&server, bob, bob_events, group).await;

    let mut chat = Chat::start(&profile);
    chat.wait_for(LABEL).await;
    chat.wait_for("● connected").await;
    let private = alice.client.open_private(group, bob_id).await.unwrap();
    alice
        .client
        .send_text(private, "Are you OK after today?", None)
        .await
        .unwrap();
    // Told who and what to type: /accept, in the chat itself.
    chat.wait_for("Alice wants to talk with you privately (private: Alice)")
        .await;
    chat.wait_for("/accept").await;
    chat.type_text("\t");
    chat.wait_for("Alice wants to talk with you privately.")
        .await;
    chat.wait_for("1 message waiting — accept with /accept")
        .await;
    let screen = chat.text();
    assert!(!screen.contains("No messages yet"), "{screen}");
    // Nothing points at a command that cannot run while the chat holds the profile.
    assert!(
        !screen.contains("confide accept") && !screen.contains("confide leave"),
        "{screen}"
    );
    assert!(screen.contains("/leave"), "{screen}");
    chat.enter("/accept");
    chat.wait_for("Alice: Are you OK after today?").await;
    chat.wait_for("#1 Alice").await;
    chat.enter("I am, thank you");
    chat.wait_for("Bob (you): I am, thank you").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_is_not_asked_to_accept_the_agreement_and_sees_who_removed_them() {
    let server = TestServer::start().await;
    let (alice, group, invite) = facilitated_group(&server).await;
    let (profile, bob, bob_events) = Profile::register(&server, "Bob").await;
    bob.join(&invite, None).await.unwrap();
    let bob_id = bob.user();
    // An agreement Bob has not accepted yet when he is removed.
    alice.client.set_agreement(group, "Be kind.").await.unwrap();
    alice
        .client
        .send_text(group, "Welcome, everyone", None)
        .await
        .unwrap();
    bob.sync().await.unwrap();
    alice
        .client
        .remove(group, bob_id, RemoveOptions::new())
        .await
        .unwrap();
    bob.sync().await.unwrap();
    profile.finish(&server, bob, bob_events, group).await;

    let mut chat = Chat::start(&profile);
    chat.wait_for("Alice: Welcome, everyone").await;
    chat.wait_for("— Alice removed you").await;
    chat.wait_for("(left)").await;
    chat.enter("still there?");
    chat.wait_for("You are no longer in support: you can read what was said, not post.")
        .await;
    let screen = chat.text();
    assert!(!screen.contains("Be kind."), "asked to accept: {screen}");
    assert!(!screen.contains("I accept"), "asked to accept: {screen}");
    assert!(!screen.contains("protocol"), "{screen}");
}
