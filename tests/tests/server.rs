//! The relay against real clients over real TLS: authentication, bad input, durability across
//! restarts, resync after a disconnect, several connections per device, and the moderation the
//! server enforces without reading content.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use confide_client::{Connection, ServerTrust, TransportError};
use confide_protocol::envelope::Envelope;
use confide_protocol::frames::{
    ClientFrame, ErrorCode, PROTOCOL_VERSION, ServerFrame, StoredMessage,
};
use confide_protocol::group_log::{GroupState, OpBody};
use confide_protocol::seal::{self, SealKind};
use confide_protocol::sender_key::SenderChain;
use confide_protocol::{DeviceIdentity, Seq, Signature, Timestamp};
use confide_server::Limits;
use confide_tests::{
    RawClient, TestServer, epoch_of, error_code, now, raw_group_of_two, rng, seal_to,
};
use std::sync::atomic::Ordering;
use tokio_tungstenite::tungstenite::Message as WsMessage;

fn seal_text(
    client: &RawClient,
    state: &GroupState,
    chain: &mut SenderChain,
    text: &str,
) -> Envelope {
    Envelope::seal(
        &client.identity,
        state.group(),
        epoch_of(state),
        chain,
        text.as_bytes(),
        &mut rng(),
    )
    .unwrap()
}

async fn post(client: &mut RawClient, envelope: &Envelope) -> ServerFrame {
    let envelope = envelope.clone();
    client
        .request(|id| ClientFrame::Post { id, envelope })
        .await
}

async fn say(
    client: &mut RawClient,
    state: &GroupState,
    chain: &mut SenderChain,
    text: &str,
) -> ServerFrame {
    let envelope = seal_text(client, state, chain, text);
    post(client, &envelope).await
}

async fn say_ok(
    client: &mut RawClient,
    state: &GroupState,
    chain: &mut SenderChain,
    text: &str,
) -> Seq {
    let envelope = seal_text(client, state, chain, text);
    post_ok(client, &envelope).await
}

async fn post_ok(client: &mut RawClient, envelope: &Envelope) -> Seq {
    match post(client, envelope).await {
        ServerFrame::Posted { seq, .. } => seq,
        other => panic!("post refused: {other:?}"),
    }
}

/// Syncs a whole group from the start (or after `after_seq`), following pages.
async fn sync_all(
    client: &mut RawClient,
    state: &GroupState,
    after_seq: Seq,
) -> (usize, Vec<StoredMessage>) {
    let group = state.group();
    let (mut ops, mut messages) = (0usize, Vec::new());
    let mut request = ClientFrame::Sync {
        id: client.next_id(),
        group,
        after_op_seq: None,
        after_seq,
        limit: 3,
        invite: None,
    };
    loop {
        match client.send_request(&request).await {
            ServerFrame::SyncPage {
                ops: o,
                messages: m,
                next_op_seq,
                next_seq,
                complete,
                ..
            } => {
                ops += o.len();
                messages.extend(m);
                if complete {
                    return (ops, messages);
                }
                request = ClientFrame::sync_from(client.next_id(), group, next_op_seq, next_seq, 3);
            }
            other => panic!("sync failed: {other:?}"),
        }
    }
}

#[tokio::test]
async fn pinned_tls_and_challenge_response_authentication() {
    let server = TestServer::start().await;
    // A wrong pin is refused before any frame is exchanged.
    let wrong = ServerTrust::Pinned("00".repeat(32));
    assert!(matches!(
        Connection::connect(&server.url, &wrong).await,
        Err(TransportError::Io(_))
    ));

    let alice = RawClient::register(&server, "Alice").await;
    // The same device authenticates on a new connection.
    let _again = alice.reconnect(&server).await;

    // A signature for another nonce is refused, and the connection can still authenticate.
    let mut conn =
        RawClient::connect_as(&server, alice.clone_identity(), alice.user, "Alice").await;
    let device = conn.identity.device_id();
    let stale = confide_protocol::frames::sign_auth(&conn.identity, "localhost", &[7u8; 32]);
    let reply = conn
        .request(|id| ClientFrame::Authenticate {
            id,
            version: PROTOCOL_VERSION,
            device,
            signature: stale,
        })
        .await;
    assert_eq!(error_code(&reply), Some(ErrorCode::AuthFailed));
    // Requests before authentication are refused.
    let reply = conn.request(|id| ClientFrame::ListGroups { id }).await;
    assert_eq!(error_code(&reply), Some(ErrorCode::NotAuthenticated));
    assert!(matches!(
        conn.authenticate().await,
        ServerFrame::Authenticated { .. }
    ));

    // Someone holding only the device id cannot log in as it.
    let mallory = DeviceIdentity::generate(&mut rng());
    let mut imposter = RawClient::connect_as(&server, mallory, alice.user, "Alice").await;
    let forged = confide_protocol::frames::sign_auth(
        &imposter.identity,
        "localhost",
        &imposter.nonce.clone(),
    );
    let reply = imposter
        .request(|id| ClientFrame::Authenticate {
            id,
            version: PROTOCOL_VERSION,
            device,
            signature: forged,
        })
        .await;
    assert_eq!(error_code(&reply), Some(ErrorCode::AuthFailed));
    // An unregistered device is told to register.
    let reply = imposter.authenticate().await;
    assert_eq!(error_code(&reply), Some(ErrorCode::UnknownDevice));
}

#[tokio::test]
async fn bad_input_gets_stable_errors_and_the_connection_keeps_working() {
    let server = TestServer::start().await;
    let (mut alice, _bob, state) = raw_group_of_two(&server).await;
    let mut chain = SenderChain::generate(&mut rng());
    let first = seal_text(&alice, &state, &mut chain, "before the noise");
    post_ok(&mut alice, &first).await;

    let cases: Vec<(String, ErrorCode)> = vec![
        ("{not json".into(), ErrorCode::BadFrame),
        (
            r#"{"type":"teleport","id":5}"#.into(),
            ErrorCode::UnknownFrame,
        ),
        (r#"{"type":"ping","id":"five"}"#.into(), ErrorCode::BadFrame),
        (r#"{"type":"ping"}"#.into(), ErrorCode::BadFrame),
        (
            format!(
                r#"{{"type":"ping","id":1,"pad":"{}"}}"#,
                "x".repeat(1024 * 1024 + 10)
            ),
            ErrorCode::FrameTooLarge,
        ),
        (r#"[1,2,3]"#.into(), ErrorCode::BadFrame),
        (
            r#"{"type":"sync","id":9,"group":"!!notbase64!!","after_seq":0,"limit":5}"#.into(),
            ErrorCode::BadFrame,
        ),
    ];
    for (text, code) in cases {
        alice.conn.send_raw(text.clone()).await.unwrap();
        let reply = alice
            .wait_for(|f| matches!(f, ServerFrame::Error { .. }))
            .await;
        assert_eq!(error_code(&reply), Some(code), "input {:.60}", text);
    }
    alice
        .conn
        .send_message(WsMessage::Binary(vec![0u8, 1, 2].into()))
        .await
        .unwrap();
    let reply = alice
        .wait_for(|f| matches!(f, ServerFrame::Error { .. }))
        .await;
    assert_eq!(error_code(&reply), Some(ErrorCode::BadFrame));

    // An op with a broken signature is refused and changes nothing.
    let mut bad = alice.sign_next(&state, OpBody::Lock {});
    bad.sig = Signature([0u8; 64]);
    let group = state.group();
    let reply = alice
        .request(|id| ClientFrame::AppendOp { id, group, op: bad })
        .await;
    assert_eq!(error_code(&reply), Some(ErrorCode::InvalidOp));

    // A post into a group the device is not in.
    let mut eve = RawClient::register(&server, "Eve").await;
    let eve_envelope = Envelope::seal(
        &eve.identity,
        group,
        epoch_of(&state),
        &mut SenderChain::generate(&mut rng()),
        b"hi",
        &mut rng(),
    )
    .unwrap();
    assert_eq!(
        error_code(&post(&mut eve, &eve_envelope).await),
        Some(ErrorCode::NotMember)
    );
    // A post claiming another sender.
    assert_eq!(
        error_code(&post(&mut eve, &first).await),
        Some(ErrorCode::BadEnvelope)
    );
    // (A tampered envelope of the device's own is stored: the server leaves signatures to the
    // recipients, who drop it; `a_members_badly_signed_post_is_dropped_by_every_recipient`.)

    // Still usable, and nothing stored was lost or altered.
    let reply = alice.request(|id| ClientFrame::Ping { id }).await;
    assert!(matches!(reply, ServerFrame::Pong { .. }));
    let (_, messages) = sync_all(&mut alice, &state, Seq(0)).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].envelope, first);
}

#[tokio::test]
async fn restart_keeps_every_acknowledged_message_and_the_group_log() {
    let mut server = TestServer::start().await;
    let (mut alice, bob, mut state) = raw_group_of_two(&server).await;
    assert!(matches!(
        alice
            .append(&mut state, OpBody::SetSlowMode { seconds: 5 })
            .await,
        ServerFrame::OpAppended { .. }
    ));
    let mut chain = SenderChain::generate(&mut rng());
    let mut sent = Vec::new();
    for i in 0..20 {
        let envelope = seal_text(&alice, &state, &mut chain, &format!("message {i}"));
        let seq = post_ok(&mut alice, &envelope).await;
        sent.push((seq, envelope));
    }
    server.restart().await;

    let mut bob = bob.reconnect(&server).await;
    let (ops, messages) = sync_all(&mut bob, &state, Seq(0)).await;
    assert_eq!(ops, 3, "genesis, add, slow mode");
    assert_eq!(messages.len(), sent.len());
    for ((seq, envelope), stored) in sent.iter().zip(&messages) {
        assert_eq!(stored.seq, *seq);
        assert_eq!(&stored.envelope, envelope);
    }
    // The restarted server still enforces the log: Bob is a member and can post.
    let mut bob_chain = SenderChain::generate(&mut rng());
    let envelope = seal_text(&bob, &state, &mut bob_chain, "after restart");
    let seq = post_ok(&mut bob, &envelope).await;
    assert_eq!(seq, Seq(sent.last().unwrap().0.0 + 1));
}

#[tokio::test]
async fn reconnecting_member_gets_exactly_what_it_missed_then_live() {
    let server = TestServer::start().await;
    let (mut alice, bob, state) = raw_group_of_two(&server).await;
    let mut chain = SenderChain::generate(&mut rng());
    let seen = say_ok(&mut alice, &state, &mut chain, "seen live").await;
    let mut bob = bob;
    let live = bob
        .wait_for(|f| matches!(f, ServerFrame::Message { .. }))
        .await;
    let ServerFrame::Message { seq, .. } = live else {
        unreachable!()
    };
    assert_eq!(seq, seen);
    let bob = bob.close().await;

    let mut missed = Vec::new();
    for i in 0..7 {
        missed.push(say_ok(&mut alice, &state, &mut chain, &format!("missed {i}")).await);
    }
    let mut bob = bob.connect(&server).await;
    let (_, messages) = sync_all(&mut bob, &state, seen).await;
    let got: Vec<Seq> = messages.iter().map(|m| m.seq).collect();
    assert_eq!(got, missed, "exactly the missed messages, once, in order");
    // Then live, continuing the sequence with no gap.
    let next = say_ok(&mut alice, &state, &mut chain, "live again").await;
    let live = bob
        .wait_for(|f| matches!(f, ServerFrame::Message { .. }))
        .await;
    let ServerFrame::Message { seq, .. } = live else {
        unreachable!()
    };
    assert_eq!(seq, next);
    assert_eq!(next.0, missed.last().unwrap().0 + 1);
    assert!(
        !bob.pending
            .iter()
            .any(|f| matches!(f, ServerFrame::Message { .. })),
        "no duplicates"
    );
}

#[tokio::test]
async fn a_device_connected_twice_receives_on_both() {
    let server = TestServer::start().await;
    let (mut alice, bob_laptop, state) = raw_group_of_two(&server).await;
    let mut bob_terminal = bob_laptop.reconnect(&server).await;
    let mut bob_laptop = bob_laptop;
    let mut chain = SenderChain::generate(&mut rng());
    let envelope = seal_text(&alice, &state, &mut chain, "to both");
    let seq = post_ok(&mut alice, &envelope).await;
    for conn in [&mut bob_laptop, &mut bob_terminal] {
        let frame = conn
            .wait_for(|f| matches!(f, ServerFrame::Message { .. }))
            .await;
        let ServerFrame::Message {
            seq: got,
            envelope: e,
            ..
        } = frame
        else {
            unreachable!()
        };
        assert_eq!((got, &e), (seq, &envelope));
    }
    // Alice's own second connection gets her message too, her first only the acknowledgement.
    let mut alice_other = alice.reconnect(&server).await;
    let seq2 = say_ok(&mut alice, &state, &mut chain, "mine").await;
    let frame = alice_other
        .wait_for(|f| matches!(f, ServerFrame::Message { .. }))
        .await;
    assert!(matches!(frame, ServerFrame::Message { seq, .. } if seq == seq2));
}

#[tokio::test]
async fn server_enforces_mute_lock_slow_mode_agreement_and_epoch() {
    let server = TestServer::start().await;
    let (mut alice, mut bob, mut state) = raw_group_of_two(&server).await;
    let mut bob_chain = SenderChain::generate(&mut rng());
    let bob_user = bob.user;
    say_ok(&mut bob, &state, &mut bob_chain, "hello").await;

    let until = Timestamp(now().0 + 30 * 60 * 1000);
    assert!(matches!(
        alice
            .append(
                &mut state,
                OpBody::Mute {
                    user: bob_user,
                    until
                }
            )
            .await,
        ServerFrame::OpAppended { .. }
    ));
    let reply = say(&mut bob, &state, &mut bob_chain, "muted?").await;
    assert_eq!(error_code(&reply), Some(ErrorCode::Muted));
    assert!(
        matches!(reply, ServerFrame::Error { retry_after_ms: Some(ms), .. } if ms > 29 * 60 * 1000)
    );
    assert!(matches!(
        alice
            .append(&mut state, OpBody::Unmute { user: bob_user })
            .await,
        ServerFrame::OpAppended { .. }
    ));
    say_ok(&mut bob, &state, &mut bob_chain, "unmuted").await;

    assert!(matches!(
        alice.append(&mut state, OpBody::Lock {}).await,
        ServerFrame::OpAppended { .. }
    ));
    let reply = say(&mut bob, &state, &mut bob_chain, "locked?").await;
    assert_eq!(error_code(&reply), Some(ErrorCode::Locked));
    // Facilitators can always post.
    let mut alice_chain = SenderChain::generate(&mut rng());
    say_ok(&mut alice, &state, &mut alice_chain, "facilitator note").await;
    assert!(matches!(
        alice.append(&mut state, OpBody::Unlock {}).await,
        ServerFrame::OpAppended { .. }
    ));

    assert!(matches!(
        alice
            .append(&mut state, OpBody::SetSlowMode { seconds: 600 })
            .await,
        ServerFrame::OpAppended { .. }
    ));
    // Bob posted moments ago, so he waits for the rest of the interval; facilitators do not.
    let reply = say(&mut bob, &state, &mut bob_chain, "too soon").await;
    assert_eq!(error_code(&reply), Some(ErrorCode::SlowMode));
    assert!(
        matches!(reply, ServerFrame::Error { retry_after_ms: Some(ms), .. } if ms <= 600_000 && ms > 500_000)
    );
    say_ok(&mut alice, &state, &mut alice_chain, "facilitator, once").await;
    say_ok(&mut alice, &state, &mut alice_chain, "facilitator, twice").await;
    assert!(matches!(
        alice
            .append(&mut state, OpBody::SetSlowMode { seconds: 0 })
            .await,
        ServerFrame::OpAppended { .. }
    ));

    let text_hash = [9u8; 32];
    assert!(matches!(
        alice
            .append(
                &mut state,
                OpBody::SetAgreement {
                    version: 1,
                    text_hash
                }
            )
            .await,
        ServerFrame::OpAppended { .. }
    ));
    let reply = say(&mut bob, &state, &mut bob_chain, "no agreement").await;
    assert_eq!(error_code(&reply), Some(ErrorCode::AgreementRequired));
    assert!(matches!(
        bob.append(
            &mut state,
            OpBody::AcceptAgreement {
                version: 1,
                text_hash: Some(text_hash)
            }
        )
        .await,
        ServerFrame::OpAppended { .. }
    ));
    say_ok(&mut bob, &state, &mut bob_chain, "agreed").await;

    // Open hours in the group's time zone: a window that is certainly not now closes the chat
    // for members (facilitators can still post); an unknown zone is refused up front.
    // 1970-01-01 was a Thursday (day 3, counting from Monday = 0): open only three days from now.
    let today = ((now().0 / 86_400_000 + 3) % 7) as u8;
    let closed_today = confide_protocol::group_log::OpenHours {
        time_zone: "UTC".into(),
        windows: vec![confide_protocol::group_log::OpenWindow {
            day: (today + 3) % 7,
            start_minute: 0,
            end_minute: 1440,
        }],
    };
    assert!(!closed_today.is_open_at(now()).unwrap());
    assert!(matches!(
        alice
            .append(
                &mut state,
                OpBody::SetOpenHours {
                    schedule: Some(closed_today)
                }
            )
            .await,
        ServerFrame::OpAppended { .. }
    ));
    let reply = say(&mut bob, &state, &mut bob_chain, "after hours").await;
    assert_eq!(error_code(&reply), Some(ErrorCode::Locked));
    say_ok(
        &mut alice,
        &state,
        &mut alice_chain,
        "facilitator after hours",
    )
    .await;
    let bogus = confide_protocol::group_log::OpenHours {
        time_zone: "Mars/Olympus_Mons".into(),
        windows: vec![confide_protocol::group_log::OpenWindow {
            day: 0,
            start_minute: 0,
            end_minute: 1440,
        }],
    };
    let reply = alice
        .append(
            &mut state,
            OpBody::SetOpenHours {
                schedule: Some(bogus),
            },
        )
        .await;
    assert_eq!(error_code(&reply), Some(ErrorCode::InvalidOp));
    assert!(matches!(
        alice
            .append(&mut state, OpBody::SetOpenHours { schedule: None })
            .await,
        ServerFrame::OpAppended { .. }
    ));
    say_ok(&mut bob, &state, &mut bob_chain, "open again").await;

    // A post from an epoch that never existed is refused, and so is one claiming the current
    // epoch number but another branch of the log (a fork).
    let future_epoch = confide_protocol::EpochRef {
        epoch: confide_protocol::Epoch(state.epoch().0 + 5),
        hash: state.epoch_hash(),
    };
    let future = Envelope::seal(
        &bob.identity,
        state.group(),
        future_epoch,
        &mut bob_chain,
        b"x",
        &mut rng(),
    )
    .unwrap();
    assert_eq!(
        error_code(&post(&mut bob, &future).await),
        Some(ErrorCode::StaleEpoch)
    );
    let forked_epoch = confide_protocol::EpochRef {
        epoch: state.epoch(),
        hash: confide_protocol::OpHash([7; 32]),
    };
    let forked = Envelope::seal(
        &bob.identity,
        state.group(),
        forked_epoch,
        &mut bob_chain,
        b"x",
        &mut rng(),
    )
    .unwrap();
    assert_eq!(
        error_code(&post(&mut bob, &forked).await),
        Some(ErrorCode::StaleEpoch)
    );

    // A plain member cannot sign moderation ops.
    let reply = bob.append(&mut state, OpBody::Lock {}).await;
    assert_eq!(error_code(&reply), Some(ErrorCode::InvalidOp));
    assert!(!state.locked());
}

#[tokio::test]
async fn inbox_items_are_delivered_until_acknowledged() {
    let server = TestServer::start().await;
    let (mut alice, bob, state) = raw_group_of_two(&server).await;
    let bob = bob.close().await;
    let sealed = seal_to(
        &alice.identity,
        &bob.identity.public_keys(),
        SealKind::SenderKey,
        &state,
        b"chain",
    );
    let reply = alice
        .request(|id| ClientFrame::SendSealed {
            id,
            items: vec![sealed.clone()],
        })
        .await;
    assert!(matches!(reply, ServerFrame::Ok { .. }), "{reply:?}");

    let mut bob = bob.connect(&server).await;
    let frame = bob
        .wait_for(|f| matches!(f, ServerFrame::Inbox { .. }))
        .await;
    let ServerFrame::Inbox { items } = frame else {
        unreachable!()
    };
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].payload, sealed);
    assert_eq!(
        &*seal::open(&bob.identity, &items[0].payload).unwrap(),
        b"chain"
    );
    let inbox_id = items[0].inbox_id;

    // Not acknowledged: delivered again on the next connection.
    let mut bob = bob.close().await.connect(&server).await;
    let frame = bob
        .wait_for(|f| matches!(f, ServerFrame::Inbox { .. }))
        .await;
    assert!(matches!(&frame, ServerFrame::Inbox { items } if items[0].inbox_id == inbox_id));
    let reply = bob
        .request(|id| ClientFrame::AckInbox {
            id,
            inbox_ids: vec![inbox_id],
        })
        .await;
    assert!(matches!(reply, ServerFrame::Ok { .. }));

    // Acknowledged: gone. A ping round trip proves no inbox frame was queued before it.
    let mut bob = bob.close().await.connect(&server).await;
    let reply = bob.request(|id| ClientFrame::Ping { id }).await;
    assert!(matches!(reply, ServerFrame::Pong { .. }));
    assert!(
        !bob.pending
            .iter()
            .any(|f| matches!(f, ServerFrame::Inbox { .. }))
    );

    // An outsider cannot fill a member's inbox.
    let mut eve = RawClient::register(&server, "Eve").await;
    let spam = seal_to(
        &eve.identity,
        &bob.identity.public_keys(),
        SealKind::SenderKey,
        &state,
        b"spam",
    );
    let reply = eve.send_sealed(vec![spam]).await;
    assert_eq!(error_code(&reply), Some(ErrorCode::NotMember));
}

#[tokio::test]
async fn delete_for_everyone_removes_the_ciphertext_from_the_server() {
    let server = TestServer::start().await;
    let (mut alice, bob, mut state) = raw_group_of_two(&server).await;
    let mut chain = SenderChain::generate(&mut rng());
    let mut ids = Vec::new();
    for text in ["kind words", "something harmful", "more kind words"] {
        let envelope = seal_text(&alice, &state, &mut chain, text);
        ids.push(envelope.message_id());
        post_ok(&mut alice, &envelope).await;
    }
    // A plain member may not delete for everyone.
    let mut bob = bob;
    let reply = bob
        .append(
            &mut state,
            OpBody::DeleteMessages {
                messages: vec![ids[1]],
            },
        )
        .await;
    assert_eq!(error_code(&reply), Some(ErrorCode::InvalidOp));
    let reply = alice
        .append(
            &mut state,
            OpBody::DeleteMessages {
                messages: vec![ids[1]],
            },
        )
        .await;
    assert!(matches!(reply, ServerFrame::OpAppended { .. }), "{reply:?}");
    let (_, messages) = sync_all(&mut bob, &state, Seq(0)).await;
    let left: Vec<_> = messages.iter().map(|m| m.envelope.message_id()).collect();
    assert_eq!(left, vec![ids[0], ids[2]]);
}

#[tokio::test]
async fn retention_deletes_old_messages_on_the_server() {
    let limits = confide_server::Limits {
        retention_sweep: std::time::Duration::from_millis(100),
        ..Default::default()
    };
    let server = TestServer::start_with(limits).await;
    let (mut alice, mut bob, mut state) = raw_group_of_two(&server).await;
    let mut chain = SenderChain::generate(&mut rng());
    say_ok(&mut alice, &state, &mut chain, "ephemeral").await;
    let reply = alice
        .append(&mut state, OpBody::SetRetention { seconds: Some(1) })
        .await;
    assert!(matches!(reply, ServerFrame::OpAppended { .. }), "{reply:?}");
    // Wait (bounded) until the sweep has run past the one-second period.
    let deadline = tokio::time::Instant::now() + confide_tests::RECV_TIMEOUT;
    loop {
        let (_, messages) = sync_all(&mut bob, &state, Seq(0)).await;
        if messages.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the message outlived its retention period"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn only_an_invite_holder_may_read_a_groups_log_before_joining() {
    use confide_protocol::frames::InviteProof;
    use confide_protocol::group_log::InviteSecret;
    let server = TestServer::start().await;
    let (mut alice, _bob, mut state) = raw_group_of_two(&server).await;
    let secret = InviteSecret::generate(&mut rng());
    let expires_at = Timestamp(now().0 + 3_600_000);
    let reply = alice
        .append(
            &mut state,
            OpBody::Invite {
                invite: secret.id(),
                requires_approval: false,
                max_uses: 1,
                expires_at,
            },
        )
        .await;
    assert!(matches!(reply, ServerFrame::OpAppended { .. }));
    let group = state.group();
    let mut dana = RawClient::register(&server, "Dana").await;
    let device = dana.identity.device_id();
    // Knowing the invite's public id (it is in the log) is not enough.
    let forged = InviteProof {
        id: secret.id(),
        signature: InviteSecret::generate(&mut rng()).sign_sync(&group, &device),
    };
    let reply = dana.sync_page(group, 10, Some(forged)).await;
    assert_eq!(error_code(&reply), Some(ErrorCode::NotMember));
    // A proof made for another device is useless too.
    let stolen = InviteProof {
        id: secret.id(),
        signature: secret.sign_sync(&group, &alice.identity.device_id()),
    };
    let reply = dana.sync_page(group, 10, Some(stolen)).await;
    assert_eq!(error_code(&reply), Some(ErrorCode::NotMember));
    // The holder gets the ops, and no messages.
    say_ok(
        &mut alice,
        &state,
        &mut SenderChain::generate(&mut rng()),
        "members only",
    )
    .await;
    let proof = InviteProof {
        id: secret.id(),
        signature: secret.sign_sync(&group, &device),
    };
    let reply = dana.sync_page(group, 10, Some(proof)).await;
    let ServerFrame::SyncPage { ops, messages, .. } = reply else {
        panic!("{reply:?}")
    };
    assert_eq!(ops.len(), 3);
    assert!(messages.is_empty());
}

#[tokio::test]
async fn only_tls_1_3_is_offered() {
    use std::sync::Arc;
    let server = TestServer::start().await;
    // A client that speaks only TLS 1.2 (and accepts any certificate) cannot connect.
    #[derive(Debug)]
    struct AnyCert(Arc<rustls::crypto::CryptoProvider>);
    impl rustls::client::danger::ServerCertVerifier for AnyCert {
        fn verify_server_cert(
            &self,
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &[rustls::pki_types::CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &rustls::pki_types::CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &rustls::pki_types::CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let connect = |versions: &'static [&'static rustls::SupportedProtocolVersion]| {
        let provider = provider.clone();
        async move {
            let config = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(versions)
                .unwrap()
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
                .with_no_client_auth();
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
                .await
                .unwrap();
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(name, tcp)
                .await
                .map(|_| ())
        }
    };
    static TLS12_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS12];
    static TLS13_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    assert!(
        connect(&TLS12_ONLY).await.is_err(),
        "TLS 1.2 must be refused"
    );
    assert!(connect(&TLS13_ONLY).await.is_ok(), "TLS 1.3 works");
}

/// Posts one envelope on two connections of Alice's device while the disk stalls, so that the
/// first copy is still being written when the second arrives — as when a client resends after a
/// reconnect while its first attempt is in flight. If `disk_fails`, the stalled write then fails.
/// Returns both replies, and the seqs Bob can sync afterwards.
async fn race_the_same_post(disk_fails: bool) -> (ServerFrame, ServerFrame, Vec<Seq>) {
    let (server, disk) = TestServer::start_with_disk_faults(Limits::default()).await;
    let (mut alice, mut bob, state) = raw_group_of_two(&server).await;
    let mut alice_again = alice.reconnect(&server).await;
    let mut chain = SenderChain::generate(&mut rng());
    let envelope = seal_text(&alice, &state, &mut chain, "only once");
    let post_frame = |id| ClientFrame::Post {
        id,
        envelope: envelope.clone(),
    };

    disk.stalled.store(true, Ordering::SeqCst);
    let first = alice.next_id();
    alice.conn.send(&post_frame(first)).await.unwrap();
    let second = alice_again.next_id();
    alice_again.conn.send(&post_frame(second)).await.unwrap();
    // Each connection handles its frames in order, so once both have answered a ping, both
    // posts have been handled and the first is waiting for the stalled disk.
    for client in [&mut alice, &mut alice_again] {
        let pong = client.request(|id| ClientFrame::Ping { id }).await;
        assert!(matches!(pong, ServerFrame::Pong { .. }), "{pong:?}");
    }
    disk.full.store(disk_fails, Ordering::SeqCst);
    disk.stalled.store(false, Ordering::SeqCst);
    let (one, two) = tokio::join!(alice.reply_to(first), alice_again.reply_to(second));

    disk.full.store(false, Ordering::SeqCst);
    let (_, messages) = bob.sync_from_start(state.group()).await;
    (one, two, messages.iter().map(|m| m.seq).collect())
}

#[tokio::test]
async fn the_same_post_sent_again_while_the_first_is_being_written_is_stored_once() {
    let (one, two, stored) = race_the_same_post(false).await;
    let (ServerFrame::Posted { seq: a, .. }, ServerFrame::Posted { seq: b, .. }) = (&one, &two)
    else {
        panic!("expected two acknowledgements, got {one:?} and {two:?}")
    };
    assert_eq!(a, b, "both acknowledgements name the one stored copy");
    assert_eq!(stored, vec![*a], "stored once");
}

#[tokio::test]
async fn a_retry_waiting_for_a_write_that_fails_is_told_so_and_nothing_is_stored() {
    let (one, two, stored) = race_the_same_post(true).await;
    assert_eq!(error_code(&one), Some(ErrorCode::Storage), "{one:?}");
    assert_eq!(error_code(&two), Some(ErrorCode::Storage), "{two:?}");
    assert!(stored.is_empty(), "{stored:?}");
}

#[tokio::test]
async fn a_retry_after_a_failed_flush_is_acknowledged_only_once_a_flush_succeeds() {
    let (server, disk) = TestServer::start_with_disk_faults(Limits::default()).await;
    let (mut alice, mut bob, state) = raw_group_of_two(&server).await;
    let mut chain = SenderChain::generate(&mut rng());
    let envelope = seal_text(&alice, &state, &mut chain, "after the disk hiccup");

    // The flush fails after the database applied the batch: the server cannot know whether
    // the message is durable, so it must not say so — not now, and not to a retry either.
    disk.fail_after_write.store(true, Ordering::SeqCst);
    let first = post(&mut alice, &envelope).await;
    assert_eq!(error_code(&first), Some(ErrorCode::Storage), "{first:?}");
    let retry = post(&mut alice, &envelope).await;
    assert_eq!(error_code(&retry), Some(ErrorCode::Storage), "{retry:?}");

    // Once a flush succeeds, the retry is acknowledged with the copy already stored.
    disk.fail_after_write.store(false, Ordering::SeqCst);
    let retry = post(&mut alice, &envelope).await;
    let ServerFrame::Posted { seq, .. } = retry else {
        panic!("expected posted, got {retry:?}")
    };
    let (_, messages) = bob.sync_from_start(state.group()).await;
    let stored: Vec<Seq> = messages.iter().map(|m| m.seq).collect();
    assert_eq!(stored, vec![seq], "stored once");
}

/// The group-work ops (PROTOCOL.md §8.5): the server lets only moderators publish a document or
/// open and close a round, keeps one round open at a time, and refuses closing a round that is
/// not open — the rules it must enforce, from the log alone (it learns no text).
#[tokio::test]
async fn server_enforces_who_publishes_group_work_and_the_rounds_open_state() {
    use confide_protocol::RoundId;
    use confide_protocol::envelope::PinnedKind;
    let server = TestServer::start().await;
    let (mut alice, mut bob, mut state) = raw_group_of_two(&server).await;
    let refused = |reply: &ServerFrame, code: &str| match reply {
        ServerFrame::Error {
            code: ErrorCode::InvalidOp,
            message,
            ..
        } => message.contains(code),
        _ => false,
    };
    let schedule = OpBody::SetPinned {
        kind: PinnedKind::Meetings,
        version: 1,
        text_hash: Some([3; 32]),
    };
    // Bob is a plain member: his schedule is refused and the log does not move.
    let mut bobs_view = state.clone();
    let reply = bob.append(&mut bobs_view, schedule.clone()).await;
    assert!(refused(&reply, "not_allowed"), "{reply:?}");
    assert!(matches!(
        alice.append(&mut state, schedule).await,
        ServerFrame::OpAppended { .. }
    ));
    assert_eq!(state.document(PinnedKind::Meetings).unwrap().version, 1);

    let (first, second) = (RoundId([1; 16]), RoundId([2; 16]));
    let mut bobs_view = state.clone();
    let reply = bob
        .append(
            &mut bobs_view,
            OpBody::OpenRound {
                round: first,
                closes_at: None,
            },
        )
        .await;
    assert!(refused(&reply, "not_allowed"), "{reply:?}");
    assert!(matches!(
        alice
            .append(
                &mut state,
                OpBody::OpenRound {
                    round: first,
                    closes_at: None
                }
            )
            .await,
        ServerFrame::OpAppended { .. }
    ));
    // One round at a time.
    let reply = alice
        .append(
            &mut state.clone(),
            OpBody::OpenRound {
                round: second,
                closes_at: None,
            },
        )
        .await;
    assert!(refused(&reply, "invalid_value"), "{reply:?}");
    // A round that is not open cannot be closed.
    let reply = alice
        .append(&mut state.clone(), OpBody::CloseRound { round: second })
        .await;
    assert!(refused(&reply, "invalid_value"), "{reply:?}");
    assert!(matches!(
        alice
            .append(&mut state, OpBody::CloseRound { round: first })
            .await,
        ServerFrame::OpAppended { .. }
    ));
    let reply = alice
        .append(&mut state.clone(), OpBody::CloseRound { round: first })
        .await;
    assert!(refused(&reply, "invalid_value"), "{reply:?}");
    assert!(!state.round(&first).unwrap().is_open_at(now()));
}
