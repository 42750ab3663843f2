//! Limits and operations: rate limits, slow consumers, connection caps, registration tokens,
//! graceful shutdown, and who may appear in a member entry.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use confide_client::TransportError;
use confide_protocol::envelope::Envelope;
use confide_protocol::frames::{ClientFrame, ErrorCode, ServerFrame};
use confide_protocol::group_log::{GroupSettings, GroupState, MemberEntry, Op, OpBody};
use confide_protocol::sender_key::SenderChain;
use confide_protocol::{DeviceIdentity, GroupId, Seq, UserId};
use confide_server::Limits;
use confide_tests::{
    RECV_TIMEOUT, RawClient, TestServer, epoch_of, error_code, now, raw_group_of_two, rng, seal_to,
};
use std::sync::atomic::Ordering;
use std::time::Duration;

#[tokio::test]
async fn flooding_past_the_rate_limit_is_refused_with_a_retry_hint() {
    let limits = Limits {
        rate_per_second: 1,
        rate_burst: 5,
        ..Limits::default()
    };
    let server = TestServer::start_with(limits).await;
    let mut alice = RawClient::register(&server, "Alice").await;
    let mut codes = Vec::new();
    for _ in 0..8 {
        let reply = alice.request(|id| ClientFrame::ListGroups { id }).await;
        codes.push(error_code(&reply));
    }
    assert_eq!(
        codes.iter().filter(|c| c.is_none()).count(),
        5,
        "the burst passes: {codes:?}"
    );
    assert_eq!(codes.last().unwrap(), &Some(ErrorCode::RateLimited));
    // Other devices are not affected.
    let mut bob = RawClient::register(&server, "Bob").await;
    assert!(matches!(
        bob.request(|id| ClientFrame::ListGroups { id }).await,
        ServerFrame::Groups { .. }
    ));
    // Pings are never rate limited, so a client can always tell it is still connected.
    assert!(matches!(
        alice.request(|id| ClientFrame::Ping { id }).await,
        ServerFrame::Pong { .. }
    ));
}

#[tokio::test]
async fn a_member_who_stops_reading_is_disconnected_and_resyncs_without_loss() {
    let limits = Limits {
        outbound_queue: 8,
        rate_per_second: 10_000,
        rate_burst: 10_000,
        ..Limits::default()
    };
    let server = TestServer::start_with(limits).await;
    let (mut alice, bob, state) = raw_group_of_two(&server).await;
    let mut carol = RawClient::register(&server, "Carol").await;
    let mut state = state;
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
    let carol_op = carol
        .wait_for(|f| matches!(f, ServerFrame::Op { .. }))
        .await;
    assert!(matches!(carol_op, ServerFrame::Op { .. }));
    // Bob never reads. Alice posts large messages until his socket and queue are full.
    let mut chain = SenderChain::generate(&mut rng());
    let body = vec![b'x'; 60_000];
    let total = 200;
    let mut last = Seq(0);
    for _ in 0..total {
        let envelope = Envelope::seal(
            &alice.identity,
            state.group(),
            epoch_of(&state),
            &mut chain,
            &body,
            &mut rng(),
        )
        .unwrap();
        let reply = alice.request(|id| ClientFrame::Post { id, envelope }).await;
        let ServerFrame::Posted { seq, .. } = reply else {
            panic!("{reply:?}")
        };
        last = seq;
        // Carol keeps up and sees every message live.
        let frame = carol
            .wait_for(|f| matches!(f, ServerFrame::Message { .. }))
            .await;
        assert!(matches!(frame, ServerFrame::Message { seq: s, .. } if s == seq));
    }
    // Bob's connection was closed for falling behind, with a reason he can read.
    let mut bob = bob;
    let closed = loop {
        match tokio::time::timeout(RECV_TIMEOUT, bob.conn.recv())
            .await
            .unwrap()
        {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    assert!(
        matches!(&closed, TransportError::Closed(Some(reason)) if reason.contains("slow consumer")),
        "{closed:?}"
    );
    // He comes back and resyncs everything.
    let mut bob = bob.close().await.connect(&server).await;
    let mut got = Vec::new();
    let mut after = Seq(0);
    loop {
        let request = ClientFrame::Sync {
            id: bob.next_id(),
            group: state.group(),
            after_op_seq: Some(state.seq()),
            after_seq: after,
            limit: 500,
            invite: None,
        };
        let ServerFrame::SyncPage {
            messages, complete, ..
        } = bob.send_request(&request).await
        else {
            panic!()
        };
        after = messages.last().map(|m| m.seq).unwrap_or(after);
        got.extend(messages.into_iter().map(|m| m.seq));
        if complete {
            break;
        }
    }
    assert_eq!(got.len(), total);
    assert_eq!(got.last(), Some(&last));
}

#[tokio::test]
async fn connections_per_device_are_capped() {
    let limits = Limits {
        max_connections_per_device: 2,
        ..Limits::default()
    };
    let server = TestServer::start_with(limits).await;
    let alice = RawClient::register(&server, "Alice").await;
    let _second = alice.reconnect(&server).await;
    let mut third =
        RawClient::connect_as(&server, alice.clone_identity(), alice.user, "Alice").await;
    let reply = third.authenticate().await;
    assert_eq!(error_code(&reply), Some(ErrorCode::TooManyConnections));
}

#[tokio::test]
async fn registration_can_require_a_token() {
    let limits = Limits {
        registration_token: Some("let-me-in".into()),
        ..Limits::default()
    };
    let server = TestServer::start_with(limits).await;
    let mut client = RawClient::connect_as(
        &server,
        DeviceIdentity::generate(&mut rng()),
        UserId::random(&mut rng()),
        "Dana",
    )
    .await;
    let id = client.next_id();
    let frame = client.register_frame(id);
    assert_eq!(
        error_code(&client.send_request(&frame).await),
        Some(ErrorCode::RegistrationClosed)
    );
    let id = client.next_id();
    let mut frame = client.register_frame(id);
    if let ClientFrame::Register {
        registration_token, ..
    } = &mut frame
    {
        *registration_token = Some("let-me-in".into());
    }
    assert!(matches!(
        client.send_request(&frame).await,
        ServerFrame::Authenticated { .. }
    ));
}

#[tokio::test]
async fn shutdown_tells_clients_and_keeps_acknowledged_messages() {
    let mut server = TestServer::start().await;
    let (mut alice, bob, state) = raw_group_of_two(&server).await;
    let mut chain = SenderChain::generate(&mut rng());
    let envelope = Envelope::seal(
        &alice.identity,
        state.group(),
        epoch_of(&state),
        &mut chain,
        b"before shutdown",
        &mut rng(),
    )
    .unwrap();
    let reply = alice
        .request(|id| ClientFrame::Post {
            id,
            envelope: envelope.clone(),
        })
        .await;
    assert!(matches!(reply, ServerFrame::Posted { .. }));
    server.stop().await;
    let going = alice
        .wait_for(|f| matches!(f, ServerFrame::GoingAway { .. }))
        .await;
    assert!(matches!(going, ServerFrame::GoingAway { reason } if reason.contains("shutting down")));
    server.restart().await;
    let mut bob = bob.close().await.connect(&server).await;
    let request = ClientFrame::Sync {
        id: bob.next_id(),
        group: state.group(),
        after_op_seq: None,
        after_seq: Seq(0),
        limit: 10,
        invite: None,
    };
    let ServerFrame::SyncPage { messages, .. } = bob.send_request(&request).await else {
        panic!()
    };
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].envelope, envelope);
}

#[tokio::test]
async fn nobody_can_list_someone_elses_device_in_a_member_entry() {
    let server = TestServer::start().await;
    let mut alice = RawClient::register(&server, "Alice").await;
    let bob = RawClient::register(&server, "Bob").await;
    let mut state = alice.create_group().await;
    // Alice adds "Bob" but under a made-up user id: refused, Bob's device belongs to Bob's user.
    let fake = MemberEntry {
        user: UserId::random(&mut rng()),
        display_name: "Bob".into(),
        devices: vec![bob.identity.public_keys()],
        device_list: None,
    };
    let reply = alice
        .append(
            &mut state,
            OpBody::Add {
                member: fake,
                invite: None,
                invite_sig: None,
                invite_device: None,
            },
        )
        .await;
    assert_eq!(error_code(&reply), Some(ErrorCode::InvalidOp));
    // A genesis listing an unregistered device is refused too.
    let ghost = DeviceIdentity::generate(&mut rng());
    let mut entry = alice.member_entry();
    entry.devices.push(ghost.public_keys());
    let genesis = Op::genesis(
        GroupId::random(&mut rng()),
        alice.identity.device_id(),
        now(),
        entry,
        GroupSettings::default(),
    )
    .sign(&alice.identity)
    .unwrap();
    let reply = alice
        .request(|id| ClientFrame::CreateGroup { id, genesis })
        .await;
    assert_eq!(error_code(&reply), Some(ErrorCode::InvalidOp));
}

#[tokio::test]
async fn creating_a_group_is_idempotent_for_its_author_only() {
    let server = TestServer::start().await;
    let mut alice = RawClient::register(&server, "Alice").await;
    let group = GroupId::random(&mut rng());
    let genesis = Op::genesis(
        group,
        alice.identity.device_id(),
        now(),
        alice.member_entry(),
        GroupSettings::default(),
    )
    .sign(&alice.identity)
    .unwrap();
    for _ in 0..2 {
        let reply = alice
            .request(|id| ClientFrame::CreateGroup {
                id,
                genesis: genesis.clone(),
            })
            .await;
        assert!(
            matches!(reply, ServerFrame::GroupCreated { group: g, .. } if g == group),
            "{reply:?}"
        );
    }
    let mut eve = RawClient::register(&server, "Eve").await;
    let squat = Op::genesis(
        group,
        eve.identity.device_id(),
        now(),
        eve.member_entry(),
        GroupSettings::default(),
    )
    .sign(&eve.identity)
    .unwrap();
    let reply = eve
        .request(|id| ClientFrame::CreateGroup { id, genesis: squat })
        .await;
    assert_eq!(error_code(&reply), Some(ErrorCode::GroupExists));
    let _ = GroupState::from_genesis(&genesis).unwrap();
}

#[tokio::test]
async fn a_large_inbox_backlog_arrives_page_by_page_as_it_is_acknowledged() {
    use confide_protocol::seal::SealKind;
    let limits = Limits {
        page_bytes: 64 * 1024,
        rate_per_second: 10_000,
        rate_burst: 10_000,
        ..Limits::default()
    };
    let server = TestServer::start_with(limits).await;
    let (mut alice, bob, state) = raw_group_of_two(&server).await;
    let bob = bob.close().await;
    let payload = vec![7u8; 20_000];
    let mut sent = 0;
    for _ in 0..6 {
        let items: Vec<_> = (0..5)
            .map(|_| {
                seal_to(
                    &alice.identity,
                    &bob.identity.public_keys(),
                    SealKind::Direct,
                    &state,
                    &payload,
                )
            })
            .collect();
        sent += items.len();
        let reply = alice.send_sealed(items).await;
        assert!(matches!(reply, ServerFrame::Ok { .. }), "{reply:?}");
    }
    let mut bob = bob.connect(&server).await;
    let mut received = 0;
    let mut pages = 0;
    while received < sent {
        let frame = bob
            .wait_for(|f| matches!(f, ServerFrame::Inbox { .. }))
            .await;
        let ServerFrame::Inbox { items } = frame else {
            unreachable!()
        };
        pages += 1;
        received += items.len();
        let inbox_ids = items.iter().map(|i| i.inbox_id).collect();
        let reply = bob
            .request(|id| ClientFrame::AckInbox { id, inbox_ids })
            .await;
        assert!(matches!(reply, ServerFrame::Ok { .. }));
    }
    assert_eq!(received, sent);
    assert!(pages > 1, "the backlog came in several pages");
}

#[tokio::test]
async fn registrations_per_address_and_frames_before_authentication_are_limited() {
    let limits = Limits {
        registration_burst: 2,
        registrations_per_hour: 1,
        max_preauth_frames: 4,
        ..Limits::default()
    };
    let server = TestServer::start_with(limits).await;
    RawClient::register(&server, "One").await;
    RawClient::register(&server, "Two").await;
    let mut third = RawClient::connect_as(
        &server,
        DeviceIdentity::generate(&mut rng()),
        UserId::random(&mut rng()),
        "Three",
    )
    .await;
    let id = third.next_id();
    let frame = third.register_frame(id);
    assert_eq!(
        error_code(&third.send_request(&frame).await),
        Some(ErrorCode::RateLimited)
    );
    // A connection that never authenticates may not keep talking.
    let mut idle = RawClient::connect_as(
        &server,
        DeviceIdentity::generate(&mut rng()),
        UserId::random(&mut rng()),
        "Idle",
    )
    .await;
    for _ in 0..4 {
        assert!(matches!(
            idle.request(|id| ClientFrame::Ping { id }).await,
            ServerFrame::Pong { .. }
        ));
    }
    let reply = idle.request(|id| ClientFrame::Ping { id }).await;
    assert_eq!(error_code(&reply), Some(ErrorCode::NotAuthenticated));
    let going = idle.conn.recv().await.unwrap();
    assert!(matches!(going, ServerFrame::GoingAway { .. }), "{going:?}");
    assert!(matches!(
        idle.conn.recv().await,
        Err(TransportError::Closed(_))
    ));
}

#[tokio::test]
async fn a_stranger_cannot_make_the_server_hold_a_large_frame_before_authenticating() {
    let server = TestServer::start().await;
    let ping_with = |pad: usize| format!(r#"{{"type":"ping","id":1,"pad":"{}"}}"#, "x".repeat(pad));

    // Frames of 10 KiB, each answered before the next is sent (so that nothing is left unread
    // when the server closes, and its notice cannot be lost to a connection reset): the budget
    // before authentication (64 KiB) runs out after the sixth or seventh.
    let mut stranger = RawClient::connect_as(
        &server,
        DeviceIdentity::generate(&mut rng()),
        UserId::random(&mut rng()),
        "Stranger",
    )
    .await;
    let mut answered = 0;
    let notice = loop {
        assert!(answered < 10, "the server kept reading past its budget");
        stranger.conn.send_raw(ping_with(10 * 1024)).await.unwrap();
        let reply = stranger
            .wait_for(|f| matches!(f, ServerFrame::Error { .. }))
            .await;
        match error_code(&reply) {
            Some(ErrorCode::BadFrame) => answered += 1, // `pad` is not a field of `ping`
            _ => break reply,
        }
    };
    assert!(answered >= 5, "only {answered} frames were read");
    let ServerFrame::Error { code, message, .. } = notice else {
        unreachable!()
    };
    assert_eq!(code, ErrorCode::NotAuthenticated);
    assert_eq!(message, "too much data before authentication");
    let going_away = stranger
        .wait_for(|f| matches!(f, ServerFrame::GoingAway { .. }))
        .await;
    assert!(
        matches!(&going_away, ServerFrame::GoingAway { reason } if reason == "too much data before authentication"),
        "{going_away:?}"
    );
    assert!(matches!(
        stranger.conn.recv().await,
        Err(TransportError::Closed(_) | TransportError::Io(_))
    ));

    // A single 200 KiB frame (under the 1 MiB frame limit) is cut off the same way…
    let mut stranger = RawClient::connect_as(
        &server,
        DeviceIdentity::generate(&mut rng()),
        UserId::random(&mut rng()),
        "Stranger",
    )
    .await;
    let _ = stranger.conn.send_raw(ping_with(200 * 1024)).await;
    let closed = loop {
        match tokio::time::timeout(RECV_TIMEOUT, stranger.conn.recv()).await {
            Ok(Ok(ServerFrame::GoingAway { .. })) => {}
            Ok(Ok(frame)) => assert_eq!(
                error_code(&frame),
                Some(ErrorCode::NotAuthenticated),
                "{frame:?}"
            ),
            Ok(Err(e)) => break e,
            Err(_) => panic!("the connection stayed open"),
        }
    };
    assert!(
        matches!(closed, TransportError::Closed(_) | TransportError::Io(_)),
        "{closed:?}"
    );

    // … while from an authenticated device it is just a frame: answered, connection open.
    let mut alice = RawClient::register(&server, "Alice").await;
    alice.conn.send_raw(ping_with(200 * 1024)).await.unwrap();
    let reply = alice
        .wait_for(|f| matches!(f, ServerFrame::Error { .. }))
        .await;
    assert_eq!(error_code(&reply), Some(ErrorCode::BadFrame), "{reply:?}");
    let pong = alice.request(|id| ClientFrame::Ping { id }).await;
    assert!(matches!(pong, ServerFrame::Pong { .. }), "{pong:?}");
}

#[tokio::test]
async fn one_user_id_registered_from_two_devices_at_once_gets_exactly_one() {
    let (server, disk) = TestServer::start_with_disk_faults(Limits::default()).await;
    let user = UserId::random(&mut rng());
    let connect = |name: &'static str| {
        RawClient::connect_as(&server, DeviceIdentity::generate(&mut rng()), user, name)
    };
    let (mut first, mut second) = (connect("Twin").await, connect("Twin").await);

    // The first registration is being written (the disk stalls) when the second arrives.
    disk.stalled.store(true, Ordering::SeqCst);
    let first_id = first.next_id();
    let first_frame = first.register_frame(first_id);
    first.conn.send(&first_frame).await.unwrap();
    disk.until_a_write_is_stalled().await;
    let second_id = second.next_id();
    let second_frame = second.register_frame(second_id);
    second.conn.send(&second_frame).await.unwrap();
    // Give the second registration time to reach the server's check (the outcome must be the
    // same however long this takes; without the check being atomic it would be two devices).
    tokio::time::sleep(Duration::from_millis(300)).await;
    disk.stalled.store(false, Ordering::SeqCst);

    let one = first.reply_to(first_id).await;
    let two = second.reply_to(second_id).await;
    assert!(matches!(one, ServerFrame::Authenticated { .. }), "{one:?}");
    assert_eq!(
        error_code(&two),
        Some(ErrorCode::AlreadyRegistered),
        "{two:?}"
    );
}

/// Seals a short payload of `kind` from `from` to `to` in the group's current epoch and sends it.
async fn seal_and_send(
    from: &mut RawClient,
    to: &confide_protocol::DeviceKeys,
    state: &GroupState,
    kind: confide_protocol::seal::SealKind,
) -> ServerFrame {
    let item = seal_to(&from.identity, to, kind, state, b"hello");
    from.send_sealed(vec![item]).await
}

#[tokio::test]
async fn one_member_cannot_fill_a_recipients_inbox_for_everyone_else() {
    use confide_protocol::seal::SealKind::Direct;
    let limits = Limits {
        max_inbox_items_per_sender: 3,
        ..Limits::default()
    };
    let server = TestServer::start_with(limits).await;
    let (mut alice, bob, mut state) = raw_group_of_two(&server).await;
    let mut carol = RawClient::register(&server, "Carol").await;
    let add = OpBody::Add {
        member: carol.member_entry(),
        invite: None,
        invite_sig: None,
        invite_device: None,
    };
    let added = alice.append(&mut state, add).await;
    assert!(matches!(added, ServerFrame::OpAppended { .. }), "{added:?}");
    let bob = bob.close().await;
    let bob_keys = bob.identity.public_keys();
    let send = async |from: &mut RawClient| seal_and_send(from, &bob_keys, &state, Direct).await;

    // Carol fills her share of Bob's inbox, and no more…
    for _ in 0..3 {
        let reply = send(&mut carol).await;
        assert!(matches!(reply, ServerFrame::Ok { .. }), "{reply:?}");
    }
    let refused = send(&mut carol).await;
    assert_eq!(
        error_code(&refused),
        Some(ErrorCode::InboxFull),
        "{refused:?}"
    );
    // …while Alice can still reach him.
    let reply = send(&mut alice).await;
    assert!(matches!(reply, ServerFrame::Ok { .. }), "{reply:?}");

    // Once Bob has received and acknowledged Carol's items, she has room again.
    let mut bob = bob.connect(&server).await;
    let mut received = Vec::new();
    while received.len() < 4 {
        let frame = bob
            .wait_for(|f| matches!(f, ServerFrame::Inbox { .. }))
            .await;
        let ServerFrame::Inbox { items } = frame else {
            unreachable!()
        };
        received.extend(items);
    }
    let inbox_ids = received.iter().map(|i| i.inbox_id).collect();
    let acked = bob
        .request(|id| ClientFrame::AckInbox { id, inbox_ids })
        .await;
    assert!(matches!(acked, ServerFrame::Ok { .. }), "{acked:?}");
    let reply = send(&mut carol).await;
    assert!(matches!(reply, ServerFrame::Ok { .. }), "{reply:?}");
}

#[tokio::test]
async fn strangers_join_requests_share_one_allowance_and_cannot_crowd_out_members() {
    use confide_protocol::group_log::InviteSecret;
    use confide_protocol::seal::SealKind;
    let limits = Limits {
        max_inbox_items_per_sender: 2,
        max_join_requests_per_sender: 1,
        ..Limits::default()
    };
    let server = TestServer::start_with(limits).await;
    let (mut alice, mut bob, mut state) = raw_group_of_two(&server).await;
    // An invite that needs approval is what lets non-members send join requests at all.
    let invite = OpBody::Invite {
        invite: InviteSecret::generate(&mut rng()).id(),
        requires_approval: true,
        max_uses: 10,
        expires_at: confide_protocol::Timestamp(now().0 + 3_600_000),
    };
    let opened = alice.append(&mut state, invite).await;
    assert!(
        matches!(opened, ServerFrame::OpAppended { .. }),
        "{opened:?}"
    );
    let alice_keys = alice.identity.public_keys();
    let send =
        async |from: &mut RawClient, kind| seal_and_send(from, &alice_keys, &state, kind).await;

    // One stranger may have one join request waiting (in this test), not two…
    let mut one = RawClient::register(&server, "One").await;
    let reply = send(&mut one, SealKind::JoinRequest).await;
    assert!(matches!(reply, ServerFrame::Ok { .. }), "{reply:?}");
    let again = send(&mut one, SealKind::JoinRequest).await;
    assert_eq!(error_code(&again), Some(ErrorCode::InboxFull), "{again:?}");
    // …and all strangers together two: the third finds the allowance used up, although it is
    // its own first join request.
    let mut two = RawClient::register(&server, "Two").await;
    let reply = send(&mut two, SealKind::JoinRequest).await;
    assert!(matches!(reply, ServerFrame::Ok { .. }), "{reply:?}");
    let mut three = RawClient::register(&server, "Three").await;
    let refused = send(&mut three, SealKind::JoinRequest).await;
    assert_eq!(
        error_code(&refused),
        Some(ErrorCode::InboxFull),
        "{refused:?}"
    );
    // A member still reaches the facilitator.
    let reply = send(&mut bob, SealKind::Direct).await;
    assert!(matches!(reply, ServerFrame::Ok { .. }), "{reply:?}");

    // Once the facilitator has received and acknowledged the join requests, there is room.
    let mut inbox_ids = Vec::new();
    while inbox_ids.len() < 3 {
        let frame = alice
            .wait_for(|f| matches!(f, ServerFrame::Inbox { .. }))
            .await;
        let ServerFrame::Inbox { items } = frame else {
            unreachable!()
        };
        inbox_ids.extend(items.iter().map(|i| i.inbox_id));
    }
    let acked = alice
        .request(|id| ClientFrame::AckInbox { id, inbox_ids })
        .await;
    assert!(matches!(acked, ServerFrame::Ok { .. }), "{acked:?}");
    let reply = send(&mut three, SealKind::JoinRequest).await;
    assert!(matches!(reply, ServerFrame::Ok { .. }), "{reply:?}");
}

#[tokio::test]
async fn a_message_far_over_the_frame_limit_closes_the_connection() {
    let server = TestServer::start().await;
    let mut alice = RawClient::register(&server, "Alice").await;
    // Past the frame limit by more than the margin in which the server still answers
    // `frame_too_large`: it stops reading at the header and closes (1009).
    let limit = confide_protocol::frames::DEFAULT_MAX_CLIENT_FRAME_BYTES;
    let huge = format!(
        r#"{{"type":"ping","id":1,"pad":"{}"}}"#,
        "x".repeat(limit + 200 * 1024)
    );
    let _ = alice.conn.send_raw(huge).await;
    let closed = loop {
        match tokio::time::timeout(RECV_TIMEOUT, alice.conn.recv()).await {
            Ok(Ok(ServerFrame::GoingAway { reason })) => assert_eq!(reason, "message too big"),
            Ok(Ok(other)) => panic!("expected the connection to close, got {other:?}"),
            Ok(Err(e)) => break e,
            Err(_) => panic!("the connection stayed open"),
        }
    };
    assert!(
        matches!(&closed, TransportError::Closed(_) | TransportError::Io(_)),
        "{closed:?}"
    );
    // The server is fine, and so is the device on a new connection.
    let mut again = alice.reconnect(&server).await;
    let pong = again.request(|id| ClientFrame::Ping { id }).await;
    assert!(matches!(pong, ServerFrame::Pong { .. }), "{pong:?}");
}

#[tokio::test]
async fn a_sync_pages_ops_and_messages_share_one_byte_budget() {
    // The two ops (genesis and Bob's add, each with a device's keys and its 1,216-byte X-Wing
    // key) take about 5 KB; the 20 messages below about 5.5 KB more.
    const BUDGET: usize = 8192;
    let limits = Limits {
        page_bytes: BUDGET,
        ..Limits::default()
    };
    let server = TestServer::start_with(limits).await;
    let (mut alice, mut bob, state) = raw_group_of_two(&server).await;
    let mut chain = SenderChain::generate(&mut rng());
    for _ in 0..20 {
        let envelope = Envelope::seal(
            &alice.identity,
            state.group(),
            epoch_of(&state),
            &mut chain,
            b"short",
            &mut rng(),
        )
        .unwrap();
        let reply = alice.request(|id| ClientFrame::Post { id, envelope }).await;
        assert!(matches!(reply, ServerFrame::Posted { .. }), "{reply:?}");
    }
    // The first page completes the log (two ops) and then carries only as many messages as
    // the rest of the budget allows — not another whole budget's worth.
    let (ops, messages) = bob.sync_from_start(state.group()).await;
    let op_bytes: usize = ops.iter().map(|op| op.op.len()).sum();
    let message_bytes: usize = messages.iter().map(|m| m.envelope.ciphertext.len()).sum();
    assert_eq!(ops.len(), 2);
    assert!(
        !messages.is_empty() && messages.len() < 20,
        "{}",
        messages.len()
    );
    assert!(
        op_bytes + message_bytes <= BUDGET,
        "ops {op_bytes} + messages {message_bytes} bytes in one page"
    );
}

/// Issue 13: the cap on groups one device may create answered `rate_limited` without a retry
/// hint, so a client following PROTOCOL.md would retry forever. It is a fixed limit: it says
/// so, with a code that tells clients retrying does not help.
#[tokio::test]
async fn the_groups_per_device_cap_says_retrying_will_not_help() {
    let server = TestServer::start_with(Limits {
        max_groups_created_per_device: 2,
        ..Limits::default()
    })
    .await;
    let mut alice = RawClient::register(&server, "Alice").await;
    alice.create_group().await;
    alice.create_group().await;
    let genesis = Op::genesis(
        GroupId::random(&mut rng()),
        alice.identity.device_id(),
        now(),
        alice.member_entry(),
        GroupSettings::default(),
    )
    .sign(&alice.identity)
    .unwrap();
    let reply = alice
        .request(|id| ClientFrame::CreateGroup { id, genesis })
        .await;
    assert_eq!(
        error_code(&reply),
        Some(ErrorCode::LimitReached),
        "{reply:?}"
    );
    assert!(
        matches!(&reply, ServerFrame::Error { retry_after_ms: None, message, .. } if message.contains("retrying will not help")),
        "{reply:?}"
    );
}
