//! Disk and network faults: a full or unwritable disk, connections dropped mid-frame, and
//! half-open connections. Nothing unstored is acknowledged, and the server recovers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::Ordering;
use std::time::Duration;

use confide_client::Event;
use confide_protocol::envelope::Envelope;
use confide_protocol::frames::{ClientFrame, ErrorCode, ServerFrame};
use confide_protocol::group_log::OpBody;
use confide_protocol::sender_key::SenderChain;
use confide_protocol::{DeviceIdentity, UserId};
use confide_server::Limits;
use confide_tests::{
    RECV_TIMEOUT, RawClient, TestServer, error_code, raw_group_of_two, rng, users_in_group,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

#[tokio::test]
async fn a_full_disk_gets_clear_errors_acknowledges_nothing_and_recovers() {
    let (mut server, faults) = TestServer::start_with_disk_faults(Limits::default()).await;
    let (mut alice, mut bob, mut state) = raw_group_of_two(&server).await;
    let mut chain = SenderChain::generate(&mut rng());
    let post = |client: &RawClient,
                chain: &mut SenderChain,
                state: &confide_protocol::group_log::GroupState,
                text: &str| {
        Envelope::seal(
            &client.identity,
            state.group(),
            state.epoch_ref(),
            chain,
            text.as_bytes(),
            &mut rng(),
        )
        .unwrap()
    };
    let envelope = post(&alice, &mut chain, &state, "before");
    assert!(matches!(
        alice.request(|id| ClientFrame::Post { id, envelope }).await,
        ServerFrame::Posted { .. }
    ));

    faults.full.store(true, Ordering::SeqCst);
    let envelope = post(&alice, &mut chain, &state, "while full");
    let reply = alice.request(|id| ClientFrame::Post { id, envelope }).await;
    assert_eq!(error_code(&reply), Some(ErrorCode::Storage));
    let reply = alice.append(&mut state, OpBody::Lock {}).await;
    assert_eq!(error_code(&reply), Some(ErrorCode::Storage));
    assert!(!state.locked(), "a refused op is not applied");
    let mut dana = RawClient::connect_as(
        &server,
        DeviceIdentity::generate(&mut rng()),
        UserId::random(&mut rng()),
        "Dana",
    )
    .await;
    let id = dana.next_id();
    let frame = dana.register_frame(id);
    assert_eq!(
        error_code(&dana.send_request(&frame).await),
        Some(ErrorCode::Storage)
    );
    // Reads still work, and show only what was stored.
    let (_, messages) = bob.sync_from_start(state.group()).await;
    assert_eq!(messages.len(), 1);

    // Space returns: everything works again, with nothing lost.
    faults.full.store(false, Ordering::SeqCst);
    let envelope = post(&alice, &mut chain, &state, "after");
    assert!(matches!(
        alice.request(|id| ClientFrame::Post { id, envelope }).await,
        ServerFrame::Posted { .. }
    ));
    assert!(matches!(
        alice.append(&mut state, OpBody::Lock {}).await,
        ServerFrame::OpAppended { .. }
    ));
    server.restart().await;
    let mut bob = bob.close().await.connect(&server).await;
    let (ops, messages) = bob.sync_from_start(state.group()).await;
    assert_eq!(
        messages.len(),
        2,
        "the two acknowledged posts, not the refused one"
    );
    assert_eq!(
        ops.len(),
        3,
        "genesis, add, and the lock accepted after recovery"
    );
}

#[tokio::test]
async fn a_connection_dropped_mid_frame_disturbs_nobody() {
    let server = TestServer::start_plaintext().await;
    let (_alice, mut bob, _state) = raw_group_of_two(&server).await;
    for cut in [1usize, 6, 40] {
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
            .await
            .unwrap();
        let handshake = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        tcp.write_all(handshake.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 1024];
        let n = tcp.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 101"));
        // A masked text frame announcing 4096 bytes, cut off after `cut` bytes of it.
        let mut frame = vec![0x81, 0x80 | 126, 0x10, 0x00, 1, 2, 3, 4];
        frame.extend(std::iter::repeat_n(b'x', 64));
        tcp.write_all(&frame[..cut.min(frame.len())]).await.unwrap();
        drop(tcp);
    }
    assert!(matches!(
        bob.request(|id| ClientFrame::Ping { id }).await,
        ServerFrame::Pong { .. }
    ));
}

#[tokio::test]
async fn a_half_open_connection_is_closed_by_the_idle_timeout() {
    let limits = Limits {
        ping_interval: Duration::from_millis(100),
        idle_timeout: Duration::from_millis(400),
        max_connections_per_device: 1,
        ..Limits::default()
    };
    let server = TestServer::start_with(limits).await;
    let alice = RawClient::register(&server, "Alice").await;
    // Alice's connection goes silent: it never reads, so it never answers the server's pings.
    let device = alice.clone_identity();
    let user = alice.user;
    let silent = alice;
    // The server notices and frees the device's only connection slot; a new connection then
    // succeeds (waiting, bounded, for the timeout to pass).
    let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
    loop {
        let export = device
            .export(
                b"x",
                confide_protocol::identity::KdfParams::INSECURE_FOR_TESTS,
                &mut rng(),
            )
            .unwrap();
        let identity = DeviceIdentity::import(&export, b"x").unwrap();
        let mut again = RawClient::connect_as(&server, identity, user, "Alice").await;
        match again.authenticate().await {
            ServerFrame::Authenticated { .. } => break,
            other => assert_eq!(error_code(&other), Some(ErrorCode::TooManyConnections)),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the half-open connection was never closed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(silent);
}

#[tokio::test]
async fn a_message_the_full_disk_refused_is_kept_and_sent_when_the_disk_recovers() {
    let (server, faults) = TestServer::start_with_disk_faults(Limits::default()).await;
    let (mut users, group) = users_in_group(&server.url, server.trust(), &["Alice", "Bob"]).await;
    // A first message while all is well (it also hands Alice's sender key to Bob).
    users[0]
        .client
        .send_text(group, "hello", None)
        .await
        .unwrap();
    faults.full.store(true, Ordering::SeqCst);
    let outcome = users[0]
        .client
        .send_text(group, "written while the disk was full", None)
        .await;
    assert!(
        matches!(outcome, Err(confide_client::ClientError::Pending)),
        "the message is kept, not failed: {outcome:?}"
    );
    faults.full.store(false, Ordering::SeqCst);
    // The client posts it again by itself, and says so; Bob gets it once.
    let (sent, _) = users[0].wait_event(|e| matches!(e, Event::Sent(_))).await;
    let Event::Sent(sent) = sent else {
        unreachable!()
    };
    assert_eq!(sent.text, "written while the disk was full");
    let history = users[1].wait_history(group, 2).await;
    let texts: Vec<_> = history.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["hello", "written while the disk was full"]);
}

/// A real filesystem of a few MiB (a tmpfs mounted for the test), so that the database meets a
/// genuinely full disk. Mounting needs root, as in CI.
///
/// Only ever mounted in a private mount namespace (see [`in_private_mount_namespace`]): the
/// mount belongs to the test's own process and vanishes with it, even if the test is killed
/// before it can unmount (a test killed mid-way used to leave the mount behind).
struct SmallDisk {
    dir: tempfile::TempDir,
}

/// Set in the environment of a test re-run inside its own mount namespace.
const IN_MOUNT_NAMESPACE: &str = "CONFIDE_TEST_IN_MOUNT_NAMESPACE";

/// Runs the test named `test` (this function's caller) again in a child process with a private
/// mount namespace (`unshare --mount --propagation private`), and returns `true` once it has
/// passed there; returns `false` when already inside, where the caller goes on with the test.
/// Every mount the child makes is gone when it exits, however it exits.
fn in_private_mount_namespace(test: &str) -> bool {
    if std::env::var_os(IN_MOUNT_NAMESPACE).is_some() {
        return false;
    }
    let exe = std::env::current_exe().unwrap();
    let status = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private"])
        .arg(&exe)
        .args([test, "--exact", "--nocapture", "--test-threads", "1"])
        .env(IN_MOUNT_NAMESPACE, "1")
        .status()
        .expect("running unshare (util-linux) to give the test a private mount namespace");
    assert!(
        status.success(),
        "{test} failed in its private mount namespace (it needs root to mount): {status}"
    );
    true
}

/// Size of [`SmallDisk`]: room for the database and a few hundred messages.
const SMALL_DISK_BYTES: u64 = 32 * 1024 * 1024;

impl SmallDisk {
    fn mount() -> SmallDisk {
        assert!(
            std::env::var_os(IN_MOUNT_NAMESPACE).is_some(),
            "mount only in a private mount namespace, so the mount cannot outlive the test"
        );
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={SMALL_DISK_BYTES}"))
            .arg("tmpfs")
            .arg(dir.path())
            .status()
            .expect("running mount");
        assert!(
            status.success(),
            "mounting a small tmpfs failed (this test needs root): {status}"
        );
        SmallDisk { dir }
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Fills the disk to the last byte.
    fn fill(&self) {
        use std::io::Write as _;
        let mut file = std::fs::File::create(self.path().join("filler")).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while file.write_all(&chunk).is_ok() {}
        while file.write_all(&chunk[..512]).is_ok() {}
        while file.write_all(&chunk[..1]).is_ok() {}
    }

    fn free(&self) {
        std::fs::remove_file(self.path().join("filler")).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn seal_post(
    client: &RawClient,
    chain: &mut SenderChain,
    state: &confide_protocol::group_log::GroupState,
    text: &str,
) -> Envelope {
    Envelope::seal(
        &client.identity,
        state.group(),
        state.epoch_ref(),
        chain,
        text.as_bytes(),
        &mut rng(),
    )
    .unwrap()
}

/// Posts tried on a full [`SmallDisk`] before the test gives up waiting for a refusal.
const MAX_POSTS_TO_FILL: usize = 1000;

#[tokio::test]
async fn a_really_full_disk_keeps_reads_working_and_writes_resume_once_space_is_back() {
    if in_private_mount_namespace(
        "a_really_full_disk_keeps_reads_working_and_writes_resume_once_space_is_back",
    ) {
        return;
    }
    let disk = SmallDisk::mount();
    let mut server = TestServer::start_in(disk.path(), Limits::default(), 4 * 1024 * 1024).await;
    let (mut alice, mut bob, state) = raw_group_of_two(&server).await;
    let mut chain = SenderChain::generate(&mut rng());
    let envelope = seal_post(&alice, &mut chain, &state, "before");
    assert!(matches!(
        alice.request(|id| ClientFrame::Post { id, envelope }).await,
        ServerFrame::Posted { .. }
    ));

    disk.fill();
    // The database may still fit a few posts into space it had already taken; sooner or later
    // (at once, with the server's margin of free space) posts are refused with `storage`.
    let mut acknowledged = 1;
    let mut refused = 0;
    let filler = "x".repeat(4000);
    for _ in 0..MAX_POSTS_TO_FILL {
        let envelope = seal_post(&alice, &mut chain, &state, &filler);
        let reply = alice.request(|id| ClientFrame::Post { id, envelope }).await;
        match error_code(&reply) {
            None => acknowledged += 1,
            Some(code) => {
                assert_eq!(code, ErrorCode::Storage, "{reply:?}");
                refused += 1;
                if refused == 3 {
                    break;
                }
            }
        }
    }
    assert_eq!(refused, 3, "posts were still accepted on a full disk");
    // Members can still read everything acknowledged.
    let (ops, messages) = bob.sync_from_start(state.group()).await;
    assert_eq!((ops.len(), messages.len()), (2, acknowledged));

    // Space returns: writes work again without a restart.
    disk.free();
    let envelope = seal_post(&alice, &mut chain, &state, "after");
    let reply = alice.request(|id| ClientFrame::Post { id, envelope }).await;
    assert!(matches!(reply, ServerFrame::Posted { .. }), "{reply:?}");
    let (_, messages) = bob.sync_from_start(state.group()).await;
    assert_eq!(messages.len(), acknowledged + 1, "every acknowledged post");
    tokio::time::timeout(RECV_TIMEOUT, server.stop())
        .await
        .expect("graceful shutdown completes");
}

#[tokio::test]
async fn shutdown_completes_while_a_durable_write_is_stuck() {
    let limits = Limits {
        shutdown_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let (mut server, faults) = TestServer::start_with_disk_faults(limits).await;
    let (alice, _bob, state) = raw_group_of_two(&server).await;
    let mut alice = alice;
    let mut chain = SenderChain::generate(&mut rng());
    faults.stalled.store(true, Ordering::SeqCst);
    let envelope = seal_post(&alice, &mut chain, &state, "stuck");
    let id = alice.next_id();
    let frame = ClientFrame::Post { id, envelope };
    let posting = tokio::spawn(async move { alice.send_request(&frame).await });
    faults.until_a_write_is_stalled().await;
    // A registration waits for the stuck writer too.
    let mut dana = RawClient::connect_as(
        &server,
        DeviceIdentity::generate(&mut rng()),
        UserId::random(&mut rng()),
        "Dana",
    )
    .await;
    let id = dana.next_id();
    let frame = dana.register_frame(id);
    let waiting = tokio::spawn(async move { dana.send_request(&frame).await });
    tokio::time::timeout(RECV_TIMEOUT, server.stop())
        .await
        .expect("graceful shutdown completes even though the disk never answers");
    waiting.abort();
    posting.abort();
    faults.stalled.store(false, Ordering::SeqCst);
}

#[tokio::test]
async fn a_write_the_database_cannot_recover_from_shuts_the_server_down_cleanly() {
    let (mut server, faults) = TestServer::start_with_disk_faults(Limits::default()).await;
    let (mut alice, _bob, state) = raw_group_of_two(&server).await;
    let mut chain = SenderChain::generate(&mut rng());
    // What sled does after a failed write: it cannot write again until it is reopened.
    faults.broken.store(true, Ordering::SeqCst);
    let envelope = seal_post(&alice, &mut chain, &state, "on a broken disk");
    let reply = alice.request(|id| ClientFrame::Post { id, envelope }).await;
    assert_eq!(error_code(&reply), Some(ErrorCode::Storage), "{reply:?}");
    // The server says it must restart, and stops by itself, gracefully.
    let outcome = server.exited().await;
    let message = outcome
        .expect_err("the server reports why it stopped")
        .to_string();
    assert!(message.contains("must restart"), "{message}");
}

#[tokio::test]
async fn a_disk_that_stops_answering_shuts_the_server_down_cleanly() {
    let limits = Limits {
        stuck_write_timeout: Duration::from_millis(200),
        shutdown_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let (mut server, faults) = TestServer::start_with_disk_faults(limits).await;
    let (alice, _bob, state) = raw_group_of_two(&server).await;
    let mut alice = alice;
    let mut chain = SenderChain::generate(&mut rng());
    faults.stalled.store(true, Ordering::SeqCst);
    let envelope = seal_post(&alice, &mut chain, &state, "never written");
    let id = alice.next_id();
    let frame = ClientFrame::Post { id, envelope };
    let posting = tokio::spawn(async move { alice.send_request(&frame).await });
    faults.until_a_write_is_stalled().await;
    // Instead of leaving posts unanswered forever, the server says it must restart and stops.
    let outcome = server.exited().await;
    let message = outcome
        .expect_err("the server reports why it stopped")
        .to_string();
    assert!(message.contains("must restart"), "{message}");
    assert!(message.contains("not answering"), "{message}");
    posting.abort();
    faults.stalled.store(false, Ordering::SeqCst);
}

/// Review of issue 13: sled shows a batch to readers once it is applied, before it is durable,
/// so a sync could serve a post the server had not acknowledged — which a crash could then lose
/// after the reader had moved past its seq. Sync serves only what is durable.
#[tokio::test]
async fn a_post_not_yet_durable_is_not_served_to_readers() {
    let (_server, faults) = TestServer::start_with_disk_faults(Limits::default()).await;
    let (mut alice, mut bob, state) = raw_group_of_two(&_server).await;
    let mut chain = SenderChain::generate(&mut rng());
    let envelope = Envelope::seal(
        &alice.identity,
        state.group(),
        state.epoch_ref(),
        &mut chain,
        b"not yet durable",
        &mut rng(),
    )
    .unwrap();
    faults.stalled_after_write.store(true, Ordering::SeqCst);
    let id = alice.next_id();
    alice
        .conn
        .send(&ClientFrame::Post { id, envelope })
        .await
        .unwrap();
    faults.until_a_write_is_stalled().await;
    let (_, messages) = bob.sync_from_start(state.group()).await;
    assert!(
        messages.is_empty(),
        "a post the server had not acknowledged was served: {messages:?}"
    );
    faults.stalled_after_write.store(false, Ordering::SeqCst);
    assert!(matches!(
        alice.reply_to(id).await,
        ServerFrame::Posted { .. }
    ));
    let (_, messages) = bob.sync_from_start(state.group()).await;
    assert_eq!(messages.len(), 1, "served once durable");
}

/// Review of issue 13: the inbox backlog read the database directly, which shows a batch as
/// soon as it is applied: an item a crash could still lose was shown to its recipient (who may
/// acknowledge it by id). The backlog serves only durable items; the others come live once
/// durable.
#[tokio::test]
async fn an_inbox_item_not_yet_durable_is_not_in_the_backlog_and_comes_live_once_it_is() {
    let (server, faults) = TestServer::start_with_disk_faults(Limits::default()).await;
    let (mut alice, bob, state) = raw_group_of_two(&server).await;
    let bob_keys = bob.identity.public_keys();
    let bob = bob.close().await;
    let item = confide_tests::seal_to(
        &alice.identity,
        &bob_keys,
        confide_protocol::seal::SealKind::Direct,
        &state,
        b"not yet durable",
    );
    faults.stalled_after_write.store(true, Ordering::SeqCst);
    let id = alice.next_id();
    alice
        .conn
        .send(&ClientFrame::SendSealed {
            id,
            items: vec![item],
        })
        .await
        .unwrap();
    faults.until_a_write_is_stalled().await;

    // Bob comes online: his backlog is queued right after `authenticated`, before the pong.
    let mut bob = bob.connect(&server).await;
    let pong = bob.request(|id| ClientFrame::Ping { id }).await;
    assert!(matches!(pong, ServerFrame::Pong { .. }), "{pong:?}");
    assert!(
        !bob.pending
            .iter()
            .any(|f| matches!(f, ServerFrame::Inbox { .. })),
        "an item the server had not acknowledged was served: {:?}",
        bob.pending
    );

    faults.stalled_after_write.store(false, Ordering::SeqCst);
    assert!(matches!(alice.reply_to(id).await, ServerFrame::Ok { .. }));
    let live = bob
        .wait_for(|f| matches!(f, ServerFrame::Inbox { .. }))
        .await;
    let ServerFrame::Inbox { items } = live else {
        unreachable!()
    };
    assert_eq!(items.len(), 1, "delivered live once durable");
}

/// Review of issue 13: each id of an `ack_inbox` (up to 1,024 a frame) went to the shared
/// writer, whether or not the device's inbox held it. Ids of items that do not exist are done
/// at once, without a write: a disk that cannot write does not even notice them.
#[tokio::test]
async fn acknowledging_items_that_do_not_exist_writes_nothing() {
    let (server, faults) = TestServer::start_with_disk_faults(Limits::default()).await;
    let (mut alice, mut bob, state) = raw_group_of_two(&server).await;
    let bob_keys = bob.identity.public_keys();
    let item = confide_tests::seal_to(
        &alice.identity,
        &bob_keys,
        confide_protocol::seal::SealKind::Direct,
        &state,
        b"Bob's",
    );
    assert!(matches!(
        alice.send_sealed(vec![item]).await,
        ServerFrame::Ok { .. }
    ));
    let ServerFrame::Inbox { items } = bob
        .wait_for(|f| matches!(f, ServerFrame::Inbox { .. }))
        .await
    else {
        unreachable!()
    };
    let bobs = items[0].inbox_id;

    faults.full.store(true, Ordering::SeqCst);
    // Bob's item is not Alice's to acknowledge, and the others do not exist.
    let reply = alice
        .request(|id| ClientFrame::AckInbox {
            id,
            inbox_ids: vec![bobs, bobs + 1, 7, u64::MAX],
        })
        .await;
    assert!(matches!(reply, ServerFrame::Ok { .. }), "{reply:?}");
    faults.full.store(false, Ordering::SeqCst);

    // Bob's item is still there for him.
    let mut bob = bob.close().await.connect(&server).await;
    let backlog = bob
        .wait_for(|f| matches!(f, ServerFrame::Inbox { .. }))
        .await;
    let ServerFrame::Inbox { items } = backlog else {
        unreachable!()
    };
    assert_eq!(items[0].inbox_id, bobs);
}

/// Review of issue 13: slow mode counted a post from the moment it was accepted, so a post the
/// disk then refused still used up its sender's interval, and the client's retry (after the
/// `storage` wait it was told) got `slow_mode` for a message nobody had received.
#[tokio::test]
async fn a_post_the_disk_refused_does_not_use_up_the_senders_slow_mode_interval() {
    let (server, faults) = TestServer::start_with_disk_faults(Limits::default()).await;
    let (mut alice, mut bob, mut state) = raw_group_of_two(&server).await;
    assert!(matches!(
        alice
            .append(&mut state, OpBody::SetSlowMode { seconds: 3600 })
            .await,
        ServerFrame::OpAppended { .. }
    ));
    let mut chain = SenderChain::generate(&mut rng());
    let envelope = seal_post(&bob, &mut chain, &state, "refused by the disk");
    faults.full.store(true, Ordering::SeqCst);
    let again = envelope.clone();
    let reply = bob.request(|id| ClientFrame::Post { id, envelope }).await;
    assert_eq!(error_code(&reply), Some(ErrorCode::Storage), "{reply:?}");
    faults.full.store(false, Ordering::SeqCst);

    let reply = bob
        .request(|id| ClientFrame::Post {
            id,
            envelope: again,
        })
        .await;
    assert!(matches!(reply, ServerFrame::Posted { .. }), "{reply:?}");
    // Slow mode counts from the post that was stored.
    let envelope = seal_post(&bob, &mut chain, &state, "too soon");
    let reply = bob.request(|id| ClientFrame::Post { id, envelope }).await;
    assert_eq!(error_code(&reply), Some(ErrorCode::SlowMode), "{reply:?}");
}

/// The backlog serves only items whose writes it knows finished; items stored before a restart
/// all did, and are served after it.
#[tokio::test]
async fn inbox_items_stored_before_a_restart_are_in_the_backlog_after_it() {
    let mut server = TestServer::start().await;
    let (mut alice, bob, state) = raw_group_of_two(&server).await;
    let bob_keys = bob.identity.public_keys();
    let bob = bob.close().await;
    let item = confide_tests::seal_to(
        &alice.identity,
        &bob_keys,
        confide_protocol::seal::SealKind::Direct,
        &state,
        b"stored before the restart",
    );
    assert!(matches!(
        alice.send_sealed(vec![item]).await,
        ServerFrame::Ok { .. }
    ));
    drop(alice);
    server.restart().await;
    let mut bob = bob.connect(&server).await;
    let backlog = bob
        .wait_for(|f| matches!(f, ServerFrame::Inbox { .. }))
        .await;
    let ServerFrame::Inbox { items } = backlog else {
        unreachable!()
    };
    assert_eq!(items.len(), 1);
}
