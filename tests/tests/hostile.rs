//! A hostile client: at least fifty distinct bad inputs, each answered with its documented
//! error code, while another member keeps chatting undisturbed and nothing stored is altered.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use confide_client::TransportError;
use confide_protocol::envelope::Envelope;
use confide_protocol::frames::{ClientFrame, ErrorCode, PROTOCOL_VERSION, ServerFrame, sign_auth};
use confide_protocol::group_log::OpBody;
use confide_protocol::seal::SealKind;
use confide_protocol::sender_key::SenderChain;
use confide_protocol::{DeviceIdentity, GroupId, Seq, Signature, UserId};
use confide_server::Limits;
use confide_tests::{RawClient, TestServer, error_code, now, raw_group_of_two, rng, seal_to};
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Sends raw text and returns the next error frame's code.
async fn raw_code(client: &mut RawClient, text: String) -> Option<ErrorCode> {
    client.conn.send_raw(text).await.unwrap();
    let frame = client
        .wait_for(|f| matches!(f, ServerFrame::Error { .. }))
        .await;
    error_code(&frame)
}

/// The other member checks the server still works for them: a round trip and a post.
async fn still_fine(
    bob: &mut RawClient,
    state: &confide_protocol::group_log::GroupState,
    chain: &mut SenderChain,
) {
    assert!(matches!(
        bob.request(|id| ClientFrame::Ping { id }).await,
        ServerFrame::Pong { .. }
    ));
    let envelope = Envelope::seal(
        &bob.identity,
        state.group(),
        state.epoch_ref(),
        chain,
        b"still here",
        &mut rng(),
    )
    .unwrap();
    let reply = bob.request(|id| ClientFrame::Post { id, envelope }).await;
    assert!(matches!(reply, ServerFrame::Posted { .. }), "{reply:?}");
}

#[tokio::test]
async fn fifty_bad_inputs_get_their_documented_errors_and_disturb_nobody() {
    let limits = Limits {
        rate_per_second: 10_000,
        rate_burst: 10_000,
        // One connection sends far more unusable frames than a connection is allowed by
        // default before it is closed (refusals.rs tests that allowance).
        bad_frame_burst: 1_000,
        ..Limits::default()
    };
    let server = TestServer::start_with(limits).await;
    let (mut alice, mut bob, mut state) = raw_group_of_two(&server).await;
    let mut bob_chain = SenderChain::generate(&mut rng());
    let mut alice_chain = SenderChain::generate(&mut rng());
    let group = state.group();
    let mut checked = 0usize;

    // 1. Malformed, truncated and mistyped JSON from an authenticated member.
    let nested = format!(
        r#"{{"type":"ping","id":1,"x":{}{}}}"#,
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let g = group.to_string();
    let raw_cases: Vec<(String, ErrorCode)> = vec![
        ("{".into(), ErrorCode::BadFrame),
        ("}".into(), ErrorCode::BadFrame),
        ("".into(), ErrorCode::BadFrame),
        ("null".into(), ErrorCode::BadFrame),
        ("42".into(), ErrorCode::BadFrame),
        (r#""a string""#.into(), ErrorCode::BadFrame),
        ("[]".into(), ErrorCode::BadFrame),
        (r#"{"type":}"#.into(), ErrorCode::BadFrame),
        (r#"{"type":"ping","id":1"#.into(), ErrorCode::BadFrame),
        (
            r#"{"type":"ping","id":1}garbage"#.into(),
            ErrorCode::BadFrame,
        ),
        (r#"{"id":1}"#.into(), ErrorCode::BadFrame),
        (r#"{"type":7,"id":1}"#.into(), ErrorCode::BadFrame),
        (r#"{"type":"ping","id":"one"}"#.into(), ErrorCode::BadFrame),
        (r#"{"type":"ping","id":-1}"#.into(), ErrorCode::BadFrame),
        (r#"{"type":"ping","id":1.5}"#.into(), ErrorCode::BadFrame),
        (
            r#"{"type":"ping","id":18446744073709551616}"#.into(),
            ErrorCode::BadFrame,
        ),
        (r#"{"type":"ping","id":1e400}"#.into(), ErrorCode::BadFrame),
        (
            r#"{"type":"ping","id":1,"extra":true}"#.into(),
            ErrorCode::BadFrame,
        ),
        (nested, ErrorCode::BadFrame),
        (
            r#"{"type":"format_disk","id":1}"#.into(),
            ErrorCode::UnknownFrame,
        ),
        (r#"{"type":"PING","id":1}"#.into(), ErrorCode::UnknownFrame),
        (
            format!(r#"{{"type":"sync","id":2,"group":"{g}","after_seq":0,"limit":0}}"#),
            ErrorCode::BadFrame,
        ),
        (
            format!(r#"{{"type":"sync","id":2,"group":"{g}","after_seq":"zero","limit":5}}"#),
            ErrorCode::BadFrame,
        ),
        (
            r#"{"type":"sync","id":2,"group":"!!!not base64!!!","after_seq":0,"limit":5}"#.into(),
            ErrorCode::BadFrame,
        ),
        (
            r#"{"type":"sync","id":2,"group":"AAAA","after_seq":0,"limit":5}"#.into(),
            ErrorCode::BadFrame,
        ),
        (
            r#"{"type":"lookup_devices","id":3,"devices":["AAAA"]}"#.into(),
            ErrorCode::BadFrame,
        ),
        (
            r#"{"type":"post","id":4,"envelope":[]}"#.into(),
            ErrorCode::BadFrame,
        ),
        (
            r#"{"type":"ack_inbox","id":5,"inbox_ids":"all"}"#.into(),
            ErrorCode::BadFrame,
        ),
        (
            format!(
                r#"{{"type":"ping","id":1,"pad":"{}"}}"#,
                "x".repeat(1024 * 1024 + 1)
            ),
            ErrorCode::FrameTooLarge,
        ),
    ];
    for (text, code) in raw_cases {
        assert_eq!(
            raw_code(&mut alice, text.clone()).await,
            Some(code),
            "input {:.80}",
            text
        );
        checked += 1;
    }
    alice
        .conn
        .send_message(WsMessage::Binary(vec![0xff, 0x00].into()))
        .await
        .unwrap();
    assert_eq!(
        error_code(
            &alice
                .wait_for(|f| matches!(f, ServerFrame::Error { .. }))
                .await
        ),
        Some(ErrorCode::BadFrame)
    );
    checked += 1;
    still_fine(&mut bob, &state, &mut bob_chain).await;

    // 2. Per-frame limits.
    let too_many: Vec<_> = (0..300)
        .map(|_| confide_protocol::DeviceId([1; 32]))
        .collect();
    let reply = alice
        .request(|id| ClientFrame::LookupDevices {
            id,
            devices: too_many,
        })
        .await;
    assert_eq!(error_code(&reply), Some(ErrorCode::FrameTooLarge));
    checked += 1;
    let reply = alice
        .request(|id| ClientFrame::AckInbox {
            id,
            inbox_ids: vec![1; 2000],
        })
        .await;
    assert_eq!(error_code(&reply), Some(ErrorCode::FrameTooLarge));
    checked += 1;

    // 3. Requests that make sense but are not allowed.
    let me = alice.identity.device_id();
    let signature = sign_auth(&alice.identity, "localhost", &alice.nonce);
    let reply = alice
        .request(|id| ClientFrame::Authenticate {
            id,
            version: PROTOCOL_VERSION,
            device: me,
            signature,
        })
        .await;
    assert_eq!(error_code(&reply), Some(ErrorCode::AlreadyAuthenticated));
    checked += 1;
    let unknown_group = GroupId::random(&mut rng());
    let reply = alice.sync_page(unknown_group, 5, None).await;
    assert_eq!(error_code(&reply), Some(ErrorCode::NoSuchGroup));
    checked += 1;
    // An op for another group than the request names.
    let op = alice.sign_next(&state, OpBody::Lock {});
    let reply = alice
        .request(|id| ClientFrame::AppendOp {
            id,
            group: unknown_group,
            op: op.clone(),
        })
        .await;
    assert_eq!(error_code(&reply), Some(ErrorCode::NoSuchGroup));
    checked += 1;
    let mut other = alice.create_group().await;
    let reply = alice
        .request(|id| ClientFrame::AppendOp {
            id,
            group: other.group(),
            op: op.clone(),
        })
        .await;
    assert_eq!(error_code(&reply), Some(ErrorCode::InvalidOp));
    checked += 1;
    // An op from the future, and one on an old head.
    let mut future = state.next_op(me, now(), OpBody::Lock {});
    future.seq += 5;
    let future = future.sign(&alice.identity).unwrap();
    let reply = alice
        .request(|id| ClientFrame::AppendOp {
            id,
            group,
            op: future,
        })
        .await;
    assert_eq!(error_code(&reply), Some(ErrorCode::OpConflict));
    checked += 1;
    // A forged signature, and an op submitted by someone other than its author.
    let mut forged = alice.sign_next(&state, OpBody::Lock {});
    forged.sig = Signature([7; 64]);
    let reply = alice
        .request(|id| ClientFrame::AppendOp {
            id,
            group,
            op: forged,
        })
        .await;
    assert_eq!(error_code(&reply), Some(ErrorCode::InvalidOp));
    checked += 1;
    let bobs = bob.sign_next(
        &state,
        OpBody::AcceptAgreement {
            version: 1,
            text_hash: None,
        },
    );
    let reply = alice
        .request(|id| ClientFrame::AppendOp {
            id,
            group,
            op: bobs,
        })
        .await;
    assert_eq!(error_code(&reply), Some(ErrorCode::InvalidOp));
    checked += 1;
    // A member signing a facilitator's op.
    let reply = bob
        .append(
            &mut state,
            OpBody::Mute {
                user: alice.user,
                until: confide_protocol::Timestamp(now().0 + 60_000),
            },
        )
        .await;
    assert_eq!(error_code(&reply), Some(ErrorCode::InvalidOp));
    checked += 1;
    // A genesis for an existing group id, and one signed by somebody else.
    let squat = confide_protocol::group_log::Op::genesis(
        group,
        me,
        now(),
        alice.member_entry(),
        Default::default(),
    )
    .sign(&alice.identity)
    .unwrap();
    let reply = alice
        .request(|id| ClientFrame::CreateGroup { id, genesis: squat })
        .await;
    assert_eq!(error_code(&reply), Some(ErrorCode::GroupExists));
    checked += 1;
    let not_mine = confide_protocol::group_log::Op::genesis(
        GroupId::random(&mut rng()),
        bob.identity.device_id(),
        now(),
        bob.member_entry(),
        Default::default(),
    )
    .sign(&bob.identity)
    .unwrap();
    let reply = alice
        .request(|id| ClientFrame::CreateGroup {
            id,
            genesis: not_mine,
        })
        .await;
    assert_eq!(error_code(&reply), Some(ErrorCode::InvalidOp));
    checked += 1;
    // A genesis with a wildly wrong clock.
    let backdated = confide_protocol::group_log::Op::genesis(
        GroupId::random(&mut rng()),
        me,
        confide_protocol::Timestamp(1),
        alice.member_entry(),
        Default::default(),
    )
    .sign(&alice.identity)
    .unwrap();
    let reply = alice
        .request(|id| ClientFrame::CreateGroup {
            id,
            genesis: backdated,
        })
        .await;
    assert_eq!(error_code(&reply), Some(ErrorCode::InvalidOp));
    checked += 1;

    // 4. Bad envelopes.
    let good = Envelope::seal(
        &alice.identity,
        group,
        state.epoch_ref(),
        &mut alice_chain,
        b"ok",
        &mut rng(),
    )
    .unwrap();
    let cases: Vec<(Envelope, ErrorCode)> = vec![
        (
            Envelope {
                v: 2,
                ..good.clone()
            },
            ErrorCode::BadEnvelope,
        ),
        (
            Envelope {
                ciphertext: vec![0; 100],
                ..good.clone()
            },
            ErrorCode::BadEnvelope,
        ),
        (
            Envelope {
                sender: bob.identity.device_id(),
                ..good.clone()
            },
            ErrorCode::BadEnvelope,
        ),
        (
            Envelope {
                group: unknown_group,
                ..good.clone()
            },
            ErrorCode::NoSuchGroup,
        ),
    ];
    for (envelope, code) in cases {
        let reply = alice.request(|id| ClientFrame::Post { id, envelope }).await;
        assert_eq!(error_code(&reply), Some(code));
        checked += 1;
    }
    // A signature of zeros is not the server's to refuse (PROTOCOL.md §10.1, `post` step 2):
    // stored, and every recipient drops it (tests/tests/client_attacks.rs).
    let unsigned = Envelope {
        signature: Signature([0; 64]),
        ..good.clone()
    };
    let reply = alice
        .request(|id| ClientFrame::Post {
            id,
            envelope: unsigned,
        })
        .await;
    assert!(matches!(reply, ServerFrame::Posted { .. }), "{reply:?}");
    let stale = confide_protocol::EpochRef {
        epoch: confide_protocol::Epoch(99),
        hash: state.epoch_hash(),
    };
    let envelope = Envelope::seal(
        &alice.identity,
        group,
        stale,
        &mut alice_chain,
        b"old",
        &mut rng(),
    )
    .unwrap();
    assert_eq!(
        error_code(&alice.request(|id| ClientFrame::Post { id, envelope }).await),
        Some(ErrorCode::StaleEpoch)
    );
    checked += 1;
    let envelope = Envelope::seal(
        &alice.identity,
        other.group(),
        state.epoch_ref(),
        &mut alice_chain,
        b"x",
        &mut rng(),
    )
    .unwrap();
    assert_eq!(
        error_code(&alice.request(|id| ClientFrame::Post { id, envelope }).await),
        Some(ErrorCode::StaleEpoch)
    );
    checked += 1;
    still_fine(&mut bob, &state, &mut bob_chain).await;

    // 5. Bad sealed payloads.
    let stranger = DeviceIdentity::generate(&mut rng());
    let to_stranger = seal_to(
        &alice.identity,
        &stranger.public_keys(),
        SealKind::SenderKey,
        &state,
        b"k",
    );
    let reply = alice.send_sealed(vec![to_stranger]).await;
    assert_eq!(error_code(&reply), Some(ErrorCode::NotMember));
    checked += 1;
    let mut huge = seal_to(
        &alice.identity,
        &bob.identity.public_keys(),
        SealKind::SenderKey,
        &state,
        b"k",
    );
    huge.ciphertext = vec![0; 70 * 1024];
    let reply = alice.send_sealed(vec![huge]).await;
    assert_eq!(error_code(&reply), Some(ErrorCode::MessageTooLarge));
    checked += 1;
    let mut not_from_me = seal_to(
        &alice.identity,
        &bob.identity.public_keys(),
        SealKind::SenderKey,
        &state,
        b"k",
    );
    not_from_me.sender = bob.identity.device_id();
    let reply = alice.send_sealed(vec![not_from_me]).await;
    assert_eq!(error_code(&reply), Some(ErrorCode::BadFrame));
    checked += 1;
    let join_request = seal_to(
        &stranger,
        &alice.identity.public_keys(),
        SealKind::JoinRequest,
        &state,
        b"let me in",
    );
    let mut outsider =
        RawClient::connect_as(&server, stranger, UserId::random(&mut rng()), "Outsider").await;
    let id = outsider.next_id();
    let frame = outsider.register_frame(id);
    assert!(matches!(
        outsider.send_request(&frame).await,
        ServerFrame::Authenticated { .. }
    ));
    let reply = outsider.send_sealed(vec![join_request]).await;
    assert_eq!(
        error_code(&reply),
        Some(ErrorCode::NotMember),
        "no approval invite is open"
    );
    checked += 1;

    // 6. Moderation the server enforces.
    let until = confide_protocol::Timestamp(now().0 + 600_000);
    assert!(matches!(
        alice
            .append(
                &mut state,
                OpBody::Mute {
                    user: bob.user,
                    until
                }
            )
            .await,
        ServerFrame::OpAppended { .. }
    ));
    let envelope = Envelope::seal(
        &bob.identity,
        group,
        state.epoch_ref(),
        &mut bob_chain,
        b"muted",
        &mut rng(),
    )
    .unwrap();
    assert_eq!(
        error_code(&bob.request(|id| ClientFrame::Post { id, envelope }).await),
        Some(ErrorCode::Muted)
    );
    checked += 1;
    assert!(matches!(
        alice
            .append(&mut state, OpBody::Unmute { user: bob.user })
            .await,
        ServerFrame::OpAppended { .. }
    ));
    assert!(matches!(
        alice.append(&mut state, OpBody::Lock {}).await,
        ServerFrame::OpAppended { .. }
    ));
    let envelope = Envelope::seal(
        &bob.identity,
        group,
        state.epoch_ref(),
        &mut bob_chain,
        b"locked",
        &mut rng(),
    )
    .unwrap();
    assert_eq!(
        error_code(&bob.request(|id| ClientFrame::Post { id, envelope }).await),
        Some(ErrorCode::Locked)
    );
    checked += 1;
    assert!(matches!(
        alice.append(&mut state, OpBody::Unlock {}).await,
        ServerFrame::OpAppended { .. }
    ));
    // The outsider posting into a group it is not in.
    let mut outsider_chain = SenderChain::generate(&mut rng());
    let envelope = Envelope::seal(
        &outsider.identity,
        group,
        state.epoch_ref(),
        &mut outsider_chain,
        b"hi",
        &mut rng(),
    )
    .unwrap();
    assert_eq!(
        error_code(
            &outsider
                .request(|id| ClientFrame::Post { id, envelope })
                .await
        ),
        Some(ErrorCode::NotMember)
    );
    checked += 1;
    let reply = outsider.sync_page(group, 5, None).await;
    assert_eq!(error_code(&reply), Some(ErrorCode::NotMember));
    checked += 1;
    // After removal, the removed member can no longer post.
    let carol = RawClient::register(&server, "Carol").await;
    assert!(matches!(
        alice
            .append(
                &mut state,
                OpBody::Add {
                    member: carol.member_entry(),
                    invite: None,
                    invite_sig: None,
                    invite_device: None
                }
            )
            .await,
        ServerFrame::OpAppended { .. }
    ));
    assert!(matches!(
        alice
            .append(
                &mut state,
                OpBody::Remove {
                    user: carol.user,
                    ban: false
                }
            )
            .await,
        ServerFrame::OpAppended { .. }
    ));
    let mut carol = carol;
    let envelope = Envelope::seal(
        &carol.identity,
        group,
        state.epoch_ref(),
        &mut SenderChain::generate(&mut rng()),
        b"still?",
        &mut rng(),
    )
    .unwrap();
    assert_eq!(
        error_code(&carol.request(|id| ClientFrame::Post { id, envelope }).await),
        Some(ErrorCode::NotMember)
    );
    checked += 1;
    let _ = &mut other;
    bob_chain = SenderChain::generate(&mut rng());
    still_fine(&mut bob, &state, &mut bob_chain).await;

    // 7. Before authentication, and broken authentication.
    for (name, make) in [
        (
            "list_groups",
            Box::new(|id| ClientFrame::ListGroups { id })
                as Box<dyn Fn(confide_protocol::RequestId) -> ClientFrame>,
        ),
        (
            "sync",
            Box::new(move |id| ClientFrame::Sync {
                id,
                group,
                after_op_seq: None,
                after_seq: Seq(0),
                limit: 5,
                invite: None,
            }),
        ),
        (
            "ack_inbox",
            Box::new(|id| ClientFrame::AckInbox {
                id,
                inbox_ids: vec![1],
            }),
        ),
        (
            "lookup_users",
            Box::new(|id| ClientFrame::LookupUsers {
                id,
                users: vec![UserId([1; 16])],
            }),
        ),
        (
            "send_sealed",
            Box::new(|id| ClientFrame::SendSealed { id, items: vec![] }),
        ),
    ] {
        let mut fresh = RawClient::connect_as(
            &server,
            DeviceIdentity::generate(&mut rng()),
            UserId::random(&mut rng()),
            "Fresh",
        )
        .await;
        let reply = fresh.request(make).await;
        assert_eq!(
            error_code(&reply),
            Some(ErrorCode::NotAuthenticated),
            "{name} before authentication"
        );
        checked += 1;
    }
    // A replayed authentication: a signature made for another connection's challenge.
    let mut second = RawClient::connect_as(&server, bob.clone_identity(), bob.user, "Bob").await;
    let old = sign_auth(&bob.identity, "localhost", &bob.nonce);
    let device = bob.identity.device_id();
    let authenticate = async |client: &mut RawClient, version, signature| {
        client
            .request(|id| ClientFrame::Authenticate {
                id,
                version,
                device,
                signature,
            })
            .await
    };
    let reply = authenticate(&mut second, PROTOCOL_VERSION, old).await;
    assert_eq!(error_code(&reply), Some(ErrorCode::AuthFailed));
    checked += 1;
    // A signature for another server name.
    let wrong_name = sign_auth(&second.identity, "evil.example", &second.nonce);
    let reply = authenticate(&mut second, PROTOCOL_VERSION, wrong_name).await;
    assert_eq!(error_code(&reply), Some(ErrorCode::AuthFailed));
    checked += 1;
    // A future protocol version.
    let signature = sign_auth(&second.identity, "localhost", &second.nonce);
    let reply = authenticate(&mut second, 99, signature).await;
    assert_eq!(error_code(&reply), Some(ErrorCode::UnsupportedVersion));
    checked += 1;
    // Registration with bad names and a taken user id.
    let mut reg = RawClient::connect_as(
        &server,
        DeviceIdentity::generate(&mut rng()),
        UserId::random(&mut rng()),
        "",
    )
    .await;
    let id = reg.next_id();
    let frame = reg.register_frame(id);
    assert_eq!(
        error_code(&reg.send_request(&frame).await),
        Some(ErrorCode::BadFrame)
    );
    checked += 1;
    reg.name = "bell\u{7}".into();
    let id = reg.next_id();
    let frame = reg.register_frame(id);
    assert_eq!(
        error_code(&reg.send_request(&frame).await),
        Some(ErrorCode::BadFrame)
    );
    checked += 1;
    reg.name = "Dup".into();
    reg.user = bob.user;
    let id = reg.next_id();
    let frame = reg.register_frame(id);
    assert_eq!(
        error_code(&reg.send_request(&frame).await),
        Some(ErrorCode::AlreadyRegistered)
    );
    checked += 1;
    // The same device registering under another user.
    let mut again = RawClient::connect_as(
        &server,
        alice.clone_identity(),
        UserId::random(&mut rng()),
        "Alice2",
    )
    .await;
    let id = again.next_id();
    let frame = again.register_frame(id);
    assert_eq!(
        error_code(&again.send_request(&frame).await),
        Some(ErrorCode::AlreadyRegistered)
    );
    checked += 1;

    // Everything stored is intact, and Bob never noticed.
    still_fine(&mut bob, &state, &mut bob_chain).await;
    let reply = bob.sync_page(group, 500, None).await;
    let ServerFrame::SyncPage { messages, .. } = reply else {
        panic!()
    };
    assert_eq!(
        messages.len(),
        5,
        "Bob's four posts and Alice's unsigned one (stored; recipients drop it), nothing else"
    );
    assert!(checked >= 50, "only {checked} distinct bad inputs");
}

#[tokio::test]
async fn flooding_and_many_connections_do_not_lock_others_out() {
    let limits = Limits {
        rate_per_second: 5,
        rate_burst: 10,
        max_connections_per_device: 3,
        ..Limits::default()
    };
    let server = TestServer::start_with(limits).await;
    let (mut alice, mut bob, state) = raw_group_of_two(&server).await;
    let mut refused = 0;
    for _ in 0..40 {
        if error_code(&alice.request(|id| ClientFrame::ListGroups { id }).await)
            == Some(ErrorCode::RateLimited)
        {
            refused += 1;
        }
    }
    assert!(refused >= 25, "flooding was refused ({refused} of 40)");
    let mut extra = Vec::new();
    for _ in 0..2 {
        extra.push(alice.reconnect(&server).await);
    }
    let mut fourth =
        RawClient::connect_as(&server, alice.clone_identity(), alice.user, "Alice").await;
    assert_eq!(
        error_code(&fourth.authenticate().await),
        Some(ErrorCode::TooManyConnections)
    );
    assert!(matches!(
        fourth.conn.recv().await,
        Ok(ServerFrame::GoingAway { .. })
    ));
    assert!(matches!(
        fourth.conn.recv().await,
        Err(TransportError::Closed(_))
    ));
    let mut chain = SenderChain::generate(&mut rng());
    still_fine(&mut bob, &state, &mut chain).await;
}
