//! End-to-end encrypted group chat between real clients, through a real server over TLS,
//! asserting what people would notice — and what a malicious server could not do.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use base64::Engine as _;
use confide_client::{Event, GroupId, InviteOptions, JoinOutcome, RemoveOptions};
use confide_tests::{RecordingProxy, TestServer, TestUser, contains, read_tree, users_in_group};

#[tokio::test]
async fn three_members_see_every_message_in_the_same_order() {
    let server = TestServer::start().await;
    let (mut users, group) =
        users_in_group(&server.url, server.trust(), &["Alice", "Bob", "Carol"]).await;
    // Everyone talks at once.
    let sends: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let client = u.client.clone();
            tokio::spawn(async move {
                for n in 0..4 {
                    client
                        .send_text(group, &format!("{i}-{n}"), None)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for send in sends {
        send.await.unwrap();
    }
    let mut histories = Vec::new();
    for user in users.iter_mut() {
        let history = user.wait_history(group, 12).await;
        histories.push(
            history
                .iter()
                .map(|m| (m.seq, m.text.clone(), m.sender))
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(histories[0].len(), 12);
    assert_eq!(histories[0], histories[1]);
    assert_eq!(histories[1], histories[2]);
    // The display names and senders are the verified ones.
    let bob_said = users[0]
        .client
        .history(group, None, 100)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.text == "1-0")
        .unwrap();
    assert_eq!(bob_said.sender, users[1].client.user());
    assert_eq!(bob_said.sender_name, "Bob");
    // Replies carry their reference.
    let reply = users[2]
        .client
        .send_text(group, "re", Some(bob_said.id))
        .await
        .unwrap();
    let seen = users[1].wait_history(group, 13).await;
    assert_eq!(seen.last().unwrap().reply_to, Some(bob_said.id));
    assert_eq!(seen.last().unwrap().seq, reply.seq);
}

#[tokio::test]
async fn an_offline_member_gets_everything_on_reconnect_in_order_once() {
    let server = TestServer::start().await;
    let (mut users, group) =
        users_in_group(&server.url, server.trust(), &["Alice", "Bob", "Carol"]).await;
    users[0]
        .client
        .send_text(group, "before", None)
        .await
        .unwrap();
    users[1].wait_history(group, 1).await;
    users[1].go_offline().await;
    for n in 0..10 {
        let who = if n % 2 == 0 { 0 } else { 2 };
        users[who]
            .client
            .send_text(group, &format!("while away {n}"), None)
            .await
            .unwrap();
    }
    users[1].come_back().await;
    let (_, events) = users[1].wait_event(|e| matches!(e, Event::Synced)).await;
    let received: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(m.text.clone()),
            _ => None,
        })
        .collect();
    let expected: Vec<String> = (0..10).map(|n| format!("while away {n}")).collect();
    assert_eq!(
        received, expected,
        "exactly the missed messages, once each, in order"
    );
    let history = users[1].client.history(group, None, 100).await.unwrap();
    assert_eq!(history.len(), 11);
    // And live again afterwards.
    users[2]
        .client
        .send_text(group, "welcome back", None)
        .await
        .unwrap();
    let (event, _) = users[1]
        .wait_event(|e| matches!(e, Event::Message(_)))
        .await;
    assert!(matches!(event, Event::Message(m) if m.text == "welcome back"));
}

#[tokio::test]
async fn the_server_and_the_wire_never_see_plaintext_or_private_keys() {
    let server = TestServer::start_plaintext().await;
    let proxy = RecordingProxy::start(server.port).await;
    let url = format!("ws://127.0.0.1:{}", proxy.port);
    let (mut users, group) = users_in_group(&url, server.trust(), &["Alice", "Bob"]).await;
    let markers = [
        "MARKER-7f3a-confidential-disclosure",
        "MARKER-91bc-second-secret",
    ];
    users[0]
        .client
        .send_text(group, markers[0], None)
        .await
        .unwrap();
    users[1]
        .client
        .send_text(group, markers[1], None)
        .await
        .unwrap();
    users[0].wait_history(group, 2).await;
    users[1].wait_history(group, 2).await;
    let secrets: Vec<Vec<u8>> = users.iter().map(|u| u.secret.clone()).collect();
    for u in users.iter_mut() {
        u.go_offline().await;
    }
    let mut server = server;
    server.stop().await;

    let wire = proxy.bytes.lock().unwrap().clone();
    // The recording sees what the server sees: the pseudonyms (metadata) are there in clear.
    assert!(
        contains(&wire, b"\"display_name\":\"Alice\""),
        "the proxy saw the traffic"
    );
    let mut places: Vec<(String, Vec<u8>)> = vec![("wire".into(), wire)];
    let stored = server.stored_bytes();
    // The search looks at the right bytes: what the server must keep (the pseudonyms) is there.
    assert!(
        stored
            .iter()
            .any(|(_, bytes)| contains(bytes, b"\"display_name\":\"Alice\"")),
        "the server's stored records were read"
    );
    places.extend(stored);
    // The clients' own stores are encrypted at rest too.
    for u in &users {
        places.extend(
            read_tree(u.dir.path())
                .into_iter()
                .map(|(p, b)| (p.display().to_string(), b)),
        );
    }
    for (place, bytes) in &places {
        for marker in markers {
            assert!(
                !contains(bytes, marker.as_bytes()),
                "{marker} found in {place}"
            );
        }
        for secret in &secrets {
            for half in [&secret[..32], &secret[32..]] {
                let encodings = [
                    half.to_vec(),
                    base64::engine::general_purpose::STANDARD
                        .encode(half)
                        .into_bytes(),
                    hex::encode(half).into_bytes(),
                ];
                for e in encodings {
                    assert!(
                        !contains(bytes, &e),
                        "private key material found in {place}"
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn a_removed_member_reads_nothing_new_and_a_joiner_reads_nothing_old() {
    let mut server = TestServer::start().await;
    let (mut users, group) =
        users_in_group(&server.url, server.trust(), &["Alice", "Bob", "Eve"]).await;
    users[0]
        .client
        .send_text(group, "before the removal", None)
        .await
        .unwrap();
    users[2].wait_history(group, 1).await;
    let eve = users[2].client.user();
    users[0]
        .client
        .remove(group, eve, RemoveOptions::new())
        .await
        .unwrap();
    let (event, _) = users[2]
        .wait_event(|e| matches!(e, Event::Removed { .. }))
        .await;
    assert!(matches!(event, Event::Removed { group: g, .. } if g == group));
    users[0]
        .client
        .send_text(group, "after the removal, from Alice", None)
        .await
        .unwrap();
    users[1]
        .client
        .send_text(group, "after the removal, from Bob", None)
        .await
        .unwrap();
    // Dan joins later with a new invite.
    let dan = TestUser::new(&server, "Dan").await;
    let invite = users[0]
        .client
        .create_invite(
            group,
            InviteOptions::new().valid_for(Duration::from_secs(600)),
        )
        .await
        .unwrap();
    dan.client.join(&invite, None).await.unwrap();
    dan.client
        .send_text(group, "hello, I am new", None)
        .await
        .unwrap();
    users[1].wait_history(group, 4).await;
    assert!(
        users[2]
            .client
            .history(group, None, 100)
            .await
            .unwrap()
            .iter()
            .all(|m| !m.text.contains("after"))
    );

    // Take every ciphertext the server stores.
    server.stop().await;
    let storage = server.open_storage();
    let stored = storage
        .messages(&group, confide_protocol::Seq(0), 1000)
        .unwrap();
    drop(storage);
    assert_eq!(stored.len(), 4);
    // #1 was sent before the removal, #2 and #3 after it, #4 after Dan joined.
    for m in &stored {
        if m.seq.0 >= 2 {
            assert!(
                users[2].client.inspect_envelope(&m.envelope).await.is_err(),
                "Eve must not read #{}",
                m.seq.0
            );
        }
        if m.seq.0 <= 3 {
            assert!(
                dan.client.inspect_envelope(&m.envelope).await.is_err(),
                "Dan must not read #{}",
                m.seq.0
            );
        }
    }
    // Dan's history starts at his join; Eve's stops at her removal.
    assert_eq!(dan.client.history(group, None, 100).await.unwrap().len(), 1);
    assert_eq!(
        users[2]
            .client
            .history(group, None, 100)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn a_ghost_member_slipped_into_storage_is_rejected_by_every_client() {
    use confide_protocol::group_log::{MemberEntry, OpBody};
    let mut server = TestServer::start().await;
    let (mut users, group) = users_in_group(&server.url, server.trust(), &["Alice", "Bob"]).await;
    users[0]
        .client
        .send_text(group, "just us", None)
        .await
        .unwrap();
    users[1].wait_history(group, 1).await;
    for u in users.iter_mut() {
        u.go_offline().await;
    }
    server.stop().await;

    // Someone with access to the server's disk writes an `add` of a ghost, signed by the ghost.
    let ghost = confide_protocol::DeviceIdentity::generate(&mut confide_tests::rng());
    let storage = server.open_storage();
    let ops = storage.ops(&group, 0, 1000).unwrap();
    let mut state = confide_protocol::group_log::verify_log(&ops).unwrap();
    let entry = MemberEntry {
        user: confide_protocol::UserId([0x66; 16]),
        display_name: "Ghost".into(),
        devices: vec![ghost.public_keys()],
        device_list: None,
    };
    let forged = state
        .next_op(
            ghost.device_id(),
            confide_tests::now(),
            OpBody::Add {
                member: entry,
                invite: None,
                invite_sig: None,
                invite_device: None,
            },
        )
        .sign(&ghost)
        .unwrap();
    assert!(
        state.apply(&forged).is_err(),
        "the forgery really is invalid"
    );
    storage
        .commit(&[confide_server::storage::Write::Op {
            group,
            seq: ops.len() as u64,
            op: forged,
        }])
        .unwrap();
    drop(storage);
    server.restart().await;

    for u in users.iter_mut() {
        u.come_back().await;
        let (event, _) = u.wait_event(|e| matches!(e, Event::GroupRejected(_))).await;
        assert!(matches!(event, Event::GroupRejected(r) if r.group == group));
        let members = u.client.members(group).await.unwrap();
        assert_eq!(members.len(), 2, "the ghost is not a member");
        // The forgery is refused, not made permanent: the group is not frozen, keeps its
        // verified members, and goes on working for them (the server's own check refuses the
        // stored forgery too); nothing is ever sealed to the ghost.
        let groups = u.client.groups().await.unwrap();
        assert!(
            groups
                .iter()
                .any(|g| g.group == group && g.tampered.is_none())
        );
        u.client
            .send_text(group, "not to the ghost", None)
            .await
            .unwrap();
    }
    server.stop().await;
    let storage = server.open_storage();
    let ghost_inbox = storage.inbox(&ghost.device_id(), 0, 100).unwrap();
    assert!(
        ghost_inbox.is_empty(),
        "no sender key was ever sealed to the ghost"
    );
}

#[tokio::test]
async fn tampered_and_replayed_envelopes_are_rejected_and_the_conversation_goes_on() {
    use confide_server::storage::Write;
    // Rewrites a stored message in place.
    let mut server = TestServer::start_on_sled().await;
    let (mut users, group) = users_in_group(&server.url, server.trust(), &["Alice", "Bob"]).await;
    users[0].client.send_text(group, "one", None).await.unwrap();
    users[1].wait_history(group, 1).await;
    users[1].go_offline().await;
    for text in ["two", "three", "four"] {
        users[0].client.send_text(group, text, None).await.unwrap();
    }
    users[0].go_offline().await;
    server.stop().await;

    let storage = confide_tests::open_stopped_sled(&server.data_dir);
    let stored =
        confide_server::Storage::messages(&storage, &group, confide_protocol::Seq(0), 100).unwrap();
    assert_eq!(stored.len(), 4);
    // Flip a bit of "three", and replay "two" as a new message at the end.
    let mut tampered = stored[2].clone();
    tampered.envelope.ciphertext[10] ^= 0x01;
    let mut replayed = stored[1].clone();
    replayed.seq = confide_protocol::Seq(5);
    confide_server::Storage::commit(
        &storage,
        &[
            Write::Message {
                group,
                message: tampered,
            },
            Write::Message {
                group,
                message: replayed,
            },
        ],
    )
    .unwrap();
    drop(storage);
    server.restart().await;

    users[1].come_back().await;
    let (_, events) = users[1].wait_event(|e| matches!(e, Event::Synced)).await;
    let rejected: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::MessageRejected(r) => Some(r.seq),
            _ => None,
        })
        .collect();
    assert_eq!(
        rejected,
        vec![3, 5],
        "the altered and the replayed message are reported"
    );
    let texts: Vec<String> = users[1]
        .client
        .history(group, None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(texts, ["one", "two", "four"]);
    // The conversation goes on.
    users[0].come_back().await;
    users[0]
        .client
        .send_text(group, "five", None)
        .await
        .unwrap();
    let history = users[1].wait_history(group, 4).await;
    assert_eq!(history.last().unwrap().text, "five");
}

#[tokio::test]
async fn joining_with_approval_safety_numbers_and_key_change_warnings() {
    let server = TestServer::start().await;
    let mut alice = TestUser::new(&server, "Alice").await;
    let mut bob = TestUser::new(&server, "Bob").await;
    let group = alice.client.create_group().await.unwrap();
    let invite = alice
        .client
        .create_invite(
            group,
            InviteOptions::new()
                .requires_approval(true)
                .valid_for(Duration::from_secs(600)),
        )
        .await
        .unwrap();
    let outcome = bob
        .client
        .join(&invite, Some("I was referred by the clinic".into()))
        .await
        .unwrap();
    assert_eq!(outcome, JoinOutcome::Pending(group));
    let (event, _) = alice
        .wait_event(|e| matches!(e, Event::JoinRequest(_)))
        .await;
    let Event::JoinRequest(request) = event else {
        unreachable!()
    };
    assert_eq!(request.display_name, "Bob");
    assert_eq!(
        request.note.as_deref(),
        Some("I was referred by the clinic")
    );
    alice.client.approve(group, request.user).await.unwrap();
    let (event, _) = bob.wait_event(|e| matches!(e, Event::Joined { .. })).await;
    assert!(matches!(event, Event::Joined { group: g } if g == group));
    bob.client
        .send_text(group, "thank you", None)
        .await
        .unwrap();
    assert_eq!(alice.wait_history(group, 1).await[0].text, "thank you");

    // Both compute the same safety number for each other.
    let a = alice.client.safety_number(bob.client.user()).await.unwrap();
    let b = bob.client.safety_number(alice.client.user()).await.unwrap();
    assert_eq!(a, b);
    assert_eq!(a.split(' ').count(), 12);

    // A wrong passphrase is a clear error, never a corrupt store.
    bob.go_offline().await;
    let err = confide_client::Client::open(bob.config.clone(), b"not my passphrase")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            confide_client::ClientError::Store(confide_client::store::StoreError::WrongPassphrase)
        ),
        "{err}"
    );
    bob.come_back().await;
    bob.client
        .send_text(group, "still here", None)
        .await
        .unwrap();
    assert_eq!(alice.wait_history(group, 2).await[1].text, "still here");
}

#[tokio::test]
async fn clients_reconnect_by_themselves_after_the_server_restarts() {
    let mut server = TestServer::start().await;
    let (mut users, group) = users_in_group(&server.url, server.trust(), &["Alice", "Bob"]).await;
    users[0]
        .client
        .send_text(group, "before the restart", None)
        .await
        .unwrap();
    users[1].wait_history(group, 1).await;
    server.restart().await;
    for u in users.iter_mut() {
        u.wait_event(|e| matches!(e, Event::Disconnected { .. }))
            .await;
        u.wait_event(|e| matches!(e, Event::Connected)).await;
    }
    users[0]
        .client
        .send_text(group, "after the restart", None)
        .await
        .unwrap();
    let history = users[1].wait_history(group, 2).await;
    assert_eq!(
        history.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(),
        ["before the restart", "after the restart"]
    );
}

#[tokio::test]
async fn a_client_can_trust_the_server_through_a_ca_bundle_and_pages_history() {
    let server = TestServer::start().await;
    let ca = std::fs::read(server.data_dir.join(confide_server::tls::DEV_CERT_FILE)).unwrap();
    let trust = confide_client::ServerTrust::CaPem(ca);
    let (users, group) = users_in_group(&server.url, trust, &["Alice"]).await;
    for n in 0..5 {
        users[0]
            .client
            .send_text(group, &format!("note {n}"), None)
            .await
            .unwrap();
    }
    let newest = users[0].client.history(group, None, 2).await.unwrap();
    assert_eq!(
        newest.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(),
        ["note 3", "note 4"]
    );
    let older = users[0]
        .client
        .history(group, Some(newest[0].seq), 2)
        .await
        .unwrap();
    assert_eq!(
        older.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(),
        ["note 1", "note 2"]
    );
    // A CA that did not issue the server's certificate is refused.
    let other = tempfile::tempdir().unwrap();
    let wrong = std::fs::read(
        confide_server::TlsIdentity::dev(other.path())
            .map(|_| other.path().join(confide_server::tls::DEV_CERT_FILE))
            .unwrap(),
    )
    .unwrap();
    let conn = confide_client::Connection::connect(
        &server.url,
        &confide_client::ServerTrust::CaPem(wrong),
    )
    .await;
    assert!(conn.is_err());
}

#[tokio::test]
async fn labels_and_front_end_settings_are_kept_encrypted_and_survive_a_restart() {
    let server = TestServer::start().await;
    let mut alice = TestUser::new(&server, "Alice").await;
    let group = alice.client.create_group().await.unwrap();
    alice
        .client
        .set_label(group, Some("my-secret-grief-circle"))
        .await
        .unwrap();
    alice
        .client
        .set_setting("theme", Some(&"night-owl-secret-theme"))
        .await
        .unwrap();
    // An unusable label is refused with a reason, and nothing changes.
    let refused = alice.client.set_label(group, Some("   ")).await;
    assert!(matches!(
        refused,
        Err(confide_client::ClientError::Invalid(_))
    ));

    alice.go_offline().await;
    // After shutdown the store is closed: the calls say so instead of touching it.
    assert!(matches!(
        alice.client.labels().await,
        Err(confide_client::ClientError::Closed)
    ));
    for (path, bytes) in read_tree(alice.dir.path()) {
        for secret in ["my-secret-grief-circle", "night-owl-secret-theme"] {
            assert!(
                !contains(&bytes, secret.as_bytes()),
                "{} holds {secret:?} in plaintext",
                path.display()
            );
        }
    }
    // Every file of the store is readable by this user only, every directory enterable only
    // by them (the test process's own umask would leave them open).
    fn assert_private(path: &std::path::Path) {
        use std::os::unix::fs::PermissionsExt as _;
        let meta = std::fs::symlink_metadata(path).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        if meta.is_dir() {
            assert_eq!(mode, 0o700, "{}", path.display());
            for entry in std::fs::read_dir(path).unwrap() {
                assert_private(&entry.unwrap().path());
            }
        } else {
            assert_eq!(mode, 0o600, "{}", path.display());
        }
    }
    assert_private(&alice.config.store_path);

    alice.come_back().await;
    assert_eq!(
        alice.client.label(group).await.unwrap().as_deref(),
        Some("my-secret-grief-circle")
    );
    assert_eq!(
        alice.client.labels().await.unwrap(),
        std::collections::BTreeMap::from([(group, "my-secret-grief-circle".to_string())])
    );
    let theme: Option<String> = alice.client.setting("theme").await.unwrap();
    assert_eq!(theme.as_deref(), Some("night-owl-secret-theme"));
    alice.client.set_label(group, None).await.unwrap();
    alice
        .client
        .set_setting::<String>("theme", None)
        .await
        .unwrap();
    assert!(alice.client.labels().await.unwrap().is_empty());
    assert_eq!(alice.client.setting::<String>("theme").await.unwrap(), None);
}

/// Alice and Bob in a group; Bob's client restarted with an event queue of `queue` (and a
/// backlog of `backlog`), then his application stops reading while Alice sends `sent` messages
/// `m0`, `m1`, …, and a moment passes for them to reach him.
async fn bob_stops_reading(
    queue: usize,
    backlog: Option<usize>,
    sent: usize,
) -> (TestServer, Vec<TestUser>, GroupId) {
    let server = TestServer::start().await;
    let (mut users, group) = users_in_group(&server.url, server.trust(), &["Alice", "Bob"]).await;
    let bob = &mut users[1];
    bob.go_offline().await;
    bob.config.event_queue = queue;
    if let Some(backlog) = backlog {
        bob.config.event_backlog = backlog;
    }
    bob.come_back().await;
    bob.wait_event(|e| matches!(e, Event::Synced)).await;
    let alice = users[0].client.clone();
    for n in 0..sent {
        alice
            .send_text(group, &format!("m{n}"), None)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    (server, users, group)
}

/// A reader that falls behind holds the client back instead of losing events or filling
/// memory: with a queue of 4 events left unread, the client stops taking in messages (the
/// server keeps them) while its commands still work; once read, every message arrives, once
/// and in order.
#[tokio::test]
async fn an_unread_event_queue_holds_the_client_back_and_loses_nothing() {
    const CAPACITY: usize = 4;
    const SENT: usize = 40;
    let (_server, mut users, group) = bob_stops_reading(CAPACITY, None, SENT).await;
    let bob = &mut users[1];
    // A command is still served while nobody reads, and shows that Bob's client took in no
    // more than the queue holds plus the one step that found it full.
    let taken_in = bob.client.history(group, None, 1_000).await.unwrap().len();
    assert!(
        taken_in <= CAPACITY + 1,
        "{taken_in} of {SENT} messages were taken in while the queue of {CAPACITY} was unread"
    );

    // Reading again: everything arrives, once each, in order.
    let mut texts = Vec::new();
    while texts.len() < SENT {
        let (event, _) = bob
            .wait_event(|e| matches!(e, Event::Message(m) if m.group == group))
            .await;
        if let Event::Message(m) = event {
            texts.push(m.text);
        }
    }
    let expected: Vec<String> = (0..SENT).map(|n| format!("m{n}")).collect();
    assert_eq!(texts, expected);
    let late = tokio::time::timeout(Duration::from_millis(500), async {
        loop {
            if let Some(Event::Message(m)) = bob.events.next().await {
                return m.text;
            }
        }
    })
    .await;
    assert!(late.is_err(), "a message arrived twice: {late:?}");
    assert_eq!(bob.wait_history(group, SENT).await.len(), SENT);
}

/// An application that awaits commands but does not read its events cannot be made to hold
/// them without bound: with a queue of 4 and a backlog of 8 left unread while its own commands
/// take in a flood, the client keeps at most those 12 events and one marker counting what it
/// left out, drops its connection and makes none until read. Nothing is lost: once Bob reads,
/// his history has every message, once.
#[tokio::test]
async fn an_unread_backlog_is_capped_and_loses_no_message() {
    const CAPACITY: usize = 4;
    const BACKLOG: usize = 8;
    const SENT: usize = 60;
    // Bob's application stops reading but keeps issuing commands; Alice floods the group.
    let (_server, mut users, group) = bob_stops_reading(CAPACITY, Some(BACKLOG), SENT).await;
    let bob = &mut users[1];
    // Each sync takes in what the server has: without a cap, every message becomes an event
    // held for an application that never reads.
    for _ in 0..3 {
        let _ = bob.client.sync().await;
    }
    // Once it overflowed, the client does not reach the server until Bob reads.
    assert!(
        matches!(
            bob.client.sync().await,
            Err(confide_client::ClientError::Transport(_))
        ),
        "a command reached the server while the backlog overflowed"
    );
    // Local commands still work.
    bob.client.history(group, None, 1_000).await.unwrap();

    // What the client holds for Bob (taken without yielding, so the client adds nothing).
    let mut held = Vec::new();
    while let Some(event) = bob.events.try_next() {
        held.push(event);
    }
    assert!(
        held.len() <= CAPACITY + BACKLOG + 1,
        "{} events held for an application that does not read (queue {CAPACITY}, backlog \
         {BACKLOG})",
        held.len()
    );
    assert!(
        matches!(held.last(), Some(Event::EventsDropped { count }) if *count > 0),
        "the events left out are not reported: {:?}",
        held.last()
    );

    // Bob reads again: the client reconnects, and every message is in his history, once.
    let history = bob.wait_history(group, SENT).await;
    let mut texts: Vec<String> = history.into_iter().map(|m| m.text).collect();
    texts.sort();
    let mut expected: Vec<String> = (0..SENT).map(|n| format!("m{n}")).collect();
    expected.sort();
    assert_eq!(texts, expected);
}

/// Found from outside (the backlog benchmark, issue 20): an application that sends message
/// after message without reading its events (Alice filling a group while Bob is away) overflows
/// the event backlog, the client drops its connection, and the next message is kept to be sent
/// later — but the error said "this device has not yet seen the group's latest membership
/// change", as if a member had used an epoch her log had not reached, when she is alone and
/// nothing changed. The error names what happened (the server was not reached); once she reads,
/// the kept message goes, and every message is stored once.
#[tokio::test]
async fn a_sender_whose_events_go_unread_is_told_its_message_waits_for_the_server_not_for_a_membership_change()
 {
    const CAPACITY: usize = 4;
    const BACKLOG: usize = 8;
    let server = TestServer::start().await;
    let (mut users, group) = users_in_group(&server.url, server.trust(), &["Alice", "Bob"]).await;
    // Bob is away; Alice's application, restarted with a small queue, stops reading events.
    users[1].go_offline().await;
    let alice = &mut users[0];
    alice.go_offline().await;
    alice.config.event_queue = CAPACITY;
    alice.config.event_backlog = BACKLOG;
    alice.come_back().await;
    alice.wait_event(|e| matches!(e, Event::Synced)).await;
    let mut sent = 0;
    let held = loop {
        assert!(
            sent < 10 * (CAPACITY + BACKLOG),
            "no send was ever held back"
        );
        match alice
            .client
            .send_text(group, &format!("m{sent}"), None)
            .await
        {
            Ok(_) => sent += 1,
            Err(e) => break e,
        }
    };
    assert!(
        matches!(held, confide_client::ClientError::Held),
        "kept to be sent later: {held:?}"
    );
    let said = held.to_string();
    // Not told only of a membership change: the error cannot tell the two causes apart, so it
    // names the one that happened here too.
    assert!(
        said.contains("server cannot be reached"),
        "a single member who only sent was told: {said}"
    );
    // Alice reads again: the kept message goes, and every message is stored once.
    let last = format!("m{sent}");
    alice
        .wait_event(|e| matches!(e, Event::Sent(m) if m.text == last))
        .await;
    let history = alice.wait_history(group, sent + 1).await;
    let texts: Vec<String> = history.into_iter().map(|m| m.text).collect();
    let expected: Vec<String> = (0..=sent).map(|n| format!("m{n}")).collect();
    assert_eq!(texts, expected);
}

/// Found from outside (the web app's scenario test): a message written while the server was
/// unreachable was refused with a transport error instead of being kept, so a member who wrote
/// offline had to send it again. It is kept (encrypted in the store), reported as held, and
/// sent once the server is back, without a second try by the writer.
#[tokio::test]
async fn a_message_written_while_the_server_is_down_is_kept_and_sent_when_it_is_back() {
    let mut server = TestServer::start().await;
    let (mut users, group) = users_in_group(&server.url, server.trust(), &["Alice", "Bob"]).await;
    server.stop().await;
    let written = users[0]
        .client
        .send_text(group, "written while the server was down", None)
        .await;
    assert!(
        matches!(written, Err(confide_client::ClientError::Held)),
        "kept to be sent later, not refused: {written:?}"
    );
    server.restart().await;
    let (sent, _) = users[0]
        .wait_event(
            |e| matches!(e, Event::Sent(m) if m.text == "written while the server was down"),
        )
        .await;
    assert!(matches!(sent, Event::Sent(_)));
    let history = users[1].wait_history(group, 1).await;
    assert_eq!(
        history.last().map(|m| m.text.as_str()),
        Some("written while the server was down")
    );
}
