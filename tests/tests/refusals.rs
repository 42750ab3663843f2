//! What a client is told when the server refuses it or closes on it: every retryable refusal
//! says when to retry and no other does; a stream of unusable frames, or invalid UTF-8, closes
//! the connection with a clear code and reason, delivered through a proper close handshake even
//! to a client that is still sending; and an address has a tight limit of connections that have
//! not authenticated and a far higher one of authenticated connections, so that one host can
//! neither lock out everyone behind the same address nor take every connection slot.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};

use confide_protocol::envelope::Envelope;
use confide_protocol::frames::{self, ClientFrame, ErrorCode, PROTOCOL_VERSION, ServerFrame};
use confide_protocol::group_log::{GroupSettings, Op, OpBody};
use confide_protocol::seal::SealKind;
use confide_protocol::sender_key::SenderChain;
use confide_protocol::{DeviceIdentity, GroupId, Timestamp, UserId};
use confide_server::Limits;
use confide_tests::{
    RECV_TIMEOUT, RawClient, TestServer, error_code, now, raw_group_of_two, rng, seal_to,
};

/// The codes PROTOCOL.md §9.9 calls retryable: refused for a passing reason, so the same request
/// may be sent again after `retry_after_ms`. Written out here, from the specification, rather
/// than taken from the server.
fn retryable_by_the_spec(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::RateLimited
            | ErrorCode::TooManyConnections
            | ErrorCode::InboxFull
            | ErrorCode::Muted
            | ErrorCode::SlowMode
            | ErrorCode::Storage
            | ErrorCode::ShuttingDown
    )
}

/// Refusals collected from the server, each with what provoked it and the code it must have.
#[derive(Default)]
struct Refusals(Vec<(&'static str, ErrorCode, ServerFrame)>);

impl Refusals {
    fn expect(&mut self, what: &'static str, code: ErrorCode, reply: ServerFrame) {
        self.0.push((what, code, reply));
    }

    /// Every refusal has its code, and a retry hint exactly when the code is retryable.
    fn check(&self) {
        for (what, expected, reply) in &self.0 {
            let ServerFrame::Error {
                code,
                retry_after_ms,
                ..
            } = reply
            else {
                panic!("{what}: expected an error, got {reply:?}");
            };
            assert_eq!(code, expected, "{what}: {reply:?}");
            if retryable_by_the_spec(*code) {
                assert!(
                    retry_after_ms.is_some_and(|ms| ms > 0),
                    "{what}: a retryable refusal without a retry hint: {reply:?}"
                );
            } else {
                assert_eq!(
                    *retry_after_ms, None,
                    "{what}: a refusal that retrying cannot lift has a retry hint: {reply:?}"
                );
            }
        }
    }
}

fn post_of(
    client: &RawClient,
    chain: &mut SenderChain,
    state: &confide_protocol::group_log::GroupState,
) -> Envelope {
    Envelope::seal(
        &client.identity,
        state.group(),
        state.epoch_ref(),
        chain,
        b"hello",
        &mut rng(),
    )
    .unwrap()
}

async fn a_new_device(server: &TestServer) -> RawClient {
    RawClient::connect_as(
        server,
        DeviceIdentity::generate(&mut rng()),
        UserId::random(&mut rng()),
        "Someone",
    )
    .await
}

#[tokio::test]
async fn every_refusal_a_client_can_trigger_says_whether_and_when_to_retry() {
    // The protocol's classification (which the server answers by) agrees with the
    // specification, code for code.
    for code in ErrorCode::ALL {
        assert_eq!(code.is_retryable(), retryable_by_the_spec(code), "{code:?}");
    }
    let mut refusals = Refusals::default();

    // One server for the refusals of moderation, frames and fixed limits.
    let limits = Limits {
        max_connections_per_device: 1,
        max_inbox_items: 1,
        max_groups_created_per_device: 1,
        ..Limits::default()
    };
    let server = TestServer::start_with(limits).await;
    let (mut alice, mut bob, mut state) = raw_group_of_two(&server).await;
    let mut bob_chain = SenderChain::generate(&mut rng());

    alice.conn.send_raw("not json".into()).await.unwrap();
    let reply = alice
        .wait_for(|f| matches!(f, ServerFrame::Error { .. }))
        .await;
    refusals.expect("malformed JSON", ErrorCode::BadFrame, reply);
    alice
        .conn
        .send_raw(r#"{"type":"teleport","id":9}"#.into())
        .await
        .unwrap();
    let reply = alice.reply_to(confide_protocol::RequestId(9)).await;
    refusals.expect("a frame of unknown type", ErrorCode::UnknownFrame, reply);
    let huge = format!(
        r#"{{"type":"ping","id":1,"pad":"{}"}}"#,
        "x".repeat(frames::DEFAULT_MAX_CLIENT_FRAME_BYTES)
    );
    alice.conn.send_raw(huge).await.unwrap();
    let reply = alice
        .wait_for(|f| matches!(f, ServerFrame::Error { .. }))
        .await;
    refusals.expect(
        "a frame over the size limit",
        ErrorCode::FrameTooLarge,
        reply,
    );
    let reply = alice
        .request(|id| ClientFrame::Register {
            id,
            version: PROTOCOL_VERSION,
            user: UserId::random(&mut rng()),
            display_name: "Again".into(),
            keys: DeviceIdentity::generate(&mut rng()).public_keys(),
            registration_token: None,
            device_list: None,
            signature: confide_protocol::Signature([0; 64]),
        })
        .await;
    refusals.expect(
        "register on an authenticated connection",
        ErrorCode::AlreadyAuthenticated,
        reply,
    );

    let mut stranger = a_new_device(&server).await;
    let reply = stranger.request(|id| ClientFrame::ListGroups { id }).await;
    refusals.expect(
        "a request before authenticating",
        ErrorCode::NotAuthenticated,
        reply,
    );
    let reply = stranger.authenticate().await;
    refusals.expect(
        "authenticating an unregistered device",
        ErrorCode::UnknownDevice,
        reply,
    );
    let device = alice.identity.device_id();
    let signature = frames::sign_auth(&alice.identity, "elsewhere.example", &stranger.nonce);
    let reply = stranger
        .request(|id| ClientFrame::Authenticate {
            id,
            version: PROTOCOL_VERSION,
            device,
            signature,
        })
        .await;
    refusals.expect(
        "a signature for another server",
        ErrorCode::AuthFailed,
        reply,
    );
    let mut second = RawClient::connect_as(&server, alice.clone_identity(), alice.user, "A").await;
    let reply = second.authenticate().await;
    refusals.expect(
        "a connection over the device's limit",
        ErrorCode::TooManyConnections,
        reply,
    );
    let crowded = TestServer::start_with(Limits {
        max_authenticated_per_ip: 1,
        ..Limits::default()
    })
    .await;
    let _first = RawClient::register(&crowded, "First").await;
    let mut next = a_new_device(&crowded).await;
    let id = next.next_id();
    let frame = next.register_frame(id);
    let reply = next.send_request(&frame).await;
    refusals.expect(
        "a connection over the address's limit",
        ErrorCode::TooManyConnections,
        reply,
    );

    let reply = alice.sync_page(GroupId::random(&mut rng()), 10, None).await;
    refusals.expect("sync of an unknown group", ErrorCode::NoSuchGroup, reply);
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
    refusals.expect(
        "a group over the device's lifetime limit",
        ErrorCode::LimitReached,
        reply,
    );
    let bob_keys = bob.identity.public_keys();
    let items = vec![
        seal_to(&alice.identity, &bob_keys, SealKind::Direct, &state, b"1"),
        seal_to(&alice.identity, &bob_keys, SealKind::Direct, &state, b"2"),
    ];
    let reply = alice.send_sealed(items).await;
    refusals.expect("a full inbox", ErrorCode::InboxFull, reply);
    let envelope = post_of(&alice, &mut SenderChain::generate(&mut rng()), &state);
    let reply = bob.request(|id| ClientFrame::Post { id, envelope }).await;
    refusals.expect(
        "a post of someone else's envelope",
        ErrorCode::BadEnvelope,
        reply,
    );

    // Moderation, in the order the server checks it.
    assert!(matches!(
        alice
            .append(&mut state, OpBody::SetSlowMode { seconds: 600 })
            .await,
        ServerFrame::OpAppended { .. }
    ));
    let envelope = post_of(&bob, &mut bob_chain, &state);
    let first = bob.request(|id| ClientFrame::Post { id, envelope }).await;
    assert!(matches!(first, ServerFrame::Posted { .. }), "{first:?}");
    let envelope = post_of(&bob, &mut bob_chain, &state);
    let reply = bob.request(|id| ClientFrame::Post { id, envelope }).await;
    refusals.expect("a post in slow mode", ErrorCode::SlowMode, reply);
    assert!(matches!(
        alice.append(&mut state, OpBody::Lock {}).await,
        ServerFrame::OpAppended { .. }
    ));
    let envelope = post_of(&bob, &mut bob_chain, &state);
    let reply = bob.request(|id| ClientFrame::Post { id, envelope }).await;
    refusals.expect("a post to a locked group", ErrorCode::Locked, reply);
    let mute = OpBody::Mute {
        user: bob.user,
        until: Timestamp(now().0 + 3_600_000),
    };
    assert!(matches!(
        alice.append(&mut state, mute).await,
        ServerFrame::OpAppended { .. }
    ));
    let envelope = post_of(&bob, &mut bob_chain, &state);
    let reply = bob.request(|id| ClientFrame::Post { id, envelope }).await;
    refusals.expect("a post while muted", ErrorCode::Muted, reply);
    let mut carol = RawClient::register(&server, "Carol").await;
    let reply = carol.sync_page(state.group(), 10, None).await;
    refusals.expect("sync of someone else's group", ErrorCode::NotMember, reply);

    // Rates, on servers of their own.
    let server = TestServer::start_with(Limits {
        rate_per_second: 1,
        rate_burst: 2,
        ..Limits::default()
    })
    .await;
    let mut dana = RawClient::register(&server, "Dana").await;
    let reply = loop {
        let reply = dana.request(|id| ClientFrame::ListGroups { id }).await;
        if error_code(&reply).is_some() {
            break reply;
        }
    };
    refusals.expect(
        "requests over the device's rate",
        ErrorCode::RateLimited,
        reply,
    );
    let server = TestServer::start_with(Limits {
        inbox_acks_per_second: 1,
        inbox_ack_burst: 0,
        ..Limits::default()
    })
    .await;
    let mut hal = RawClient::register(&server, "Hal").await;
    // The burst is never below one full frame.
    let full_frame: Vec<u64> = (1..=frames::MAX_INBOX_ACKS_PER_FRAME as u64).collect();
    let reply = hal
        .request(|id| ClientFrame::AckInbox {
            id,
            inbox_ids: full_frame.clone(),
        })
        .await;
    assert!(matches!(reply, ServerFrame::Ok { .. }), "{reply:?}");
    let reply = hal
        .request(|id| ClientFrame::AckInbox {
            id,
            inbox_ids: full_frame,
        })
        .await;
    refusals.expect(
        "inbox acknowledgements over the device's rate",
        ErrorCode::RateLimited,
        reply,
    );
    let server = TestServer::start_with(Limits {
        registration_burst: 1,
        registrations_per_hour: 1,
        ..Limits::default()
    })
    .await;
    RawClient::register(&server, "Erin").await;
    let mut frank = a_new_device(&server).await;
    let id = frank.next_id();
    let frame = frank.register_frame(id);
    let reply = frank.send_request(&frame).await;
    refusals.expect(
        "registrations over the address's rate",
        ErrorCode::RateLimited,
        reply,
    );

    // A disk that cannot write: every kind of write.
    let (server, faults) = TestServer::start_with_disk_faults(Limits::default()).await;
    let (mut alice, mut bob, state) = raw_group_of_two(&server).await;
    let bob_keys = bob.identity.public_keys();
    let item = seal_to(&alice.identity, &bob_keys, SealKind::Direct, &state, b"i");
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
    let waiting = items[0].inbox_id;
    faults.full.store(true, Ordering::SeqCst);
    let envelope = post_of(&alice, &mut SenderChain::generate(&mut rng()), &state);
    let reply = alice.request(|id| ClientFrame::Post { id, envelope }).await;
    refusals.expect("a post on a full disk", ErrorCode::Storage, reply);
    let reply = alice.append(&mut state.clone(), OpBody::Lock {}).await;
    refusals.expect("an op on a full disk", ErrorCode::Storage, reply);
    let items = vec![seal_to(
        &alice.identity,
        &bob_keys,
        SealKind::Direct,
        &state,
        b"k",
    )];
    let reply = alice.send_sealed(items).await;
    refusals.expect("sealed items on a full disk", ErrorCode::Storage, reply);
    let reply = bob
        .request(|id| ClientFrame::AckInbox {
            id,
            inbox_ids: vec![waiting],
        })
        .await;
    refusals.expect(
        "an acknowledgement on a full disk",
        ErrorCode::Storage,
        reply,
    );
    let mut gina = a_new_device(&server).await;
    let id = gina.next_id();
    let frame = gina.register_frame(id);
    let reply = gina.send_request(&frame).await;
    refusals.expect("a registration on a full disk", ErrorCode::Storage, reply);
    faults.full.store(false, Ordering::SeqCst);

    refusals.check();
    assert!(refusals.0.len() >= 22, "{} refusals", refusals.0.len());
}

/// A plain websocket to a plaintext [`TestServer`], registered as a new device: a client that
/// shows exactly what arrives, close frames and their codes included.
async fn registered_ws(server: &TestServer) -> WebSocketStream<TcpStream> {
    let tcp = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(server.url.as_str(), tcp)
        .await
        .unwrap();
    let challenge = next_frame(&mut ws).await;
    let ServerFrame::Challenge { nonce, .. } = challenge else {
        panic!("expected a challenge, got {challenge:?}");
    };
    let identity = DeviceIdentity::generate(&mut rng());
    let register = ClientFrame::Register {
        id: confide_protocol::RequestId(1),
        version: PROTOCOL_VERSION,
        user: UserId::random(&mut rng()),
        display_name: "Raw".into(),
        keys: identity.public_keys(),
        registration_token: None,
        device_list: None,
        signature: frames::sign_auth(&identity, "127.0.0.1", &nonce),
    };
    ws.send(WsMessage::Text(register.to_json().unwrap().into()))
        .await
        .unwrap();
    let reply = next_frame(&mut ws).await;
    assert!(
        matches!(reply, ServerFrame::Authenticated { .. }),
        "{reply:?}"
    );
    ws
}

/// The next protocol frame (text message) on a raw websocket.
async fn next_frame<S>(ws: &mut S) -> ServerFrame
where
    S: futures_util::Stream<Item = Result<WsMessage, tokio_tungstenite::tungstenite::Error>>
        + Unpin,
{
    loop {
        let message = tokio::time::timeout(RECV_TIMEOUT, ws.next())
            .await
            .expect("timed out waiting for a frame")
            .expect("the connection ended")
            .expect("the connection failed");
        if let WsMessage::Text(text) = message {
            return ServerFrame::from_json(text.as_str(), usize::MAX).unwrap();
        }
    }
}

/// What a client reads until the server's close frame: the protocol frames, then the close
/// code and reason. Fails on a reset or a connection that ends without a close frame.
async fn until_closed<S>(ws: &mut S) -> (Vec<ServerFrame>, CloseCode, String)
where
    S: futures_util::Stream<Item = Result<WsMessage, tokio_tungstenite::tungstenite::Error>>
        + Unpin,
{
    let mut frames = Vec::new();
    loop {
        let message = tokio::time::timeout(RECV_TIMEOUT, ws.next())
            .await
            .expect("the server neither closed nor sent anything")
            .expect("the connection ended without a close frame")
            .unwrap_or_else(|e| panic!("the connection failed instead of closing: {e}"));
        match message {
            WsMessage::Text(text) => {
                frames.push(ServerFrame::from_json(text.as_str(), usize::MAX).unwrap());
            }
            WsMessage::Close(Some(close)) => {
                return (frames, close.code, close.reason.to_string());
            }
            WsMessage::Close(None) => panic!("a close frame without a code"),
            _ => {}
        }
    }
}

#[tokio::test]
async fn a_stream_of_unusable_frames_closes_the_connection_with_a_clear_reason() {
    let server = TestServer::start_plaintext().await;
    let mut ws = registered_ws(&server).await;
    let burst = confide_server::config::DEFAULT_BAD_FRAME_BURST as usize;
    // Malformed JSON, binary messages and unknown types all count; each is answered until the
    // allowance is spent.
    for i in 0..burst + 10 {
        let message = match i % 3 {
            0 => WsMessage::Text("{not json".into()),
            1 => WsMessage::Binary(vec![0u8; 64].into()),
            _ => WsMessage::Text(r#"{"type":"teleport","id":3}"#.into()),
        };
        if ws.send(message).await.is_err() {
            break;
        }
    }
    let (frames, code, reason) = until_closed(&mut ws).await;
    let errors = frames
        .iter()
        .filter(|f| {
            error_code(f) == Some(ErrorCode::BadFrame)
                || error_code(f) == Some(ErrorCode::UnknownFrame)
        })
        .count();
    assert_eq!(
        errors,
        burst + 1,
        "each frame within the allowance answered, then the one that closes: {frames:?}"
    );
    assert!(
        matches!(frames.last(), Some(ServerFrame::GoingAway { reason: r }) if *r == reason),
        "{frames:?}"
    );
    assert_eq!(code, CloseCode::Policy);
    assert!(reason.contains("too many malformed"), "{reason}");
}

#[tokio::test]
async fn invalid_utf8_in_a_text_frame_closes_with_1007() {
    let server = TestServer::start_plaintext().await;
    let mut ws = registered_ws(&server).await;
    let invalid = Frame::message(vec![b'{', 0xff, 0xfe, b'}'], OpCode::Data(Data::Text), true);
    ws.send(WsMessage::Frame(invalid)).await.unwrap();
    let (frames, code, reason) = until_closed(&mut ws).await;
    assert_eq!(code, CloseCode::Invalid, "{reason}");
    assert!(reason.contains("UTF-8"), "{reason}");
    assert!(
        matches!(frames.last(), Some(ServerFrame::GoingAway { .. })),
        "{frames:?}"
    );
}

#[tokio::test]
async fn a_client_still_sending_when_the_server_closes_gets_the_close_frame_not_a_reset() {
    let server = TestServer::start_plaintext().await;
    let ws = registered_ws(&server).await;
    let (mut sink, mut stream) = ws.split();
    // Far more than the kernel buffers hold: the client is still sending when the server,
    // after the allowance of unusable frames, closes.
    let sender = tokio::spawn(async move {
        let junk = format!("{{\"junk\":\"{}\"}}", "x".repeat(60 * 1024));
        for _ in 0..400 {
            sink.send(WsMessage::Text(junk.clone().into())).await?;
        }
        Ok(())
    });
    let (frames, code, reason) = until_closed(&mut stream).await;
    assert_eq!(code, CloseCode::Policy, "{reason}");
    assert!(
        matches!(frames.last(), Some(ServerFrame::GoingAway { .. })),
        "{frames:?}"
    );
    // The client's sends end because the connection closed, not because it was reset.
    let sent = tokio::time::timeout(RECV_TIMEOUT, sender)
        .await
        .expect("the client's sends neither finished nor failed")
        .unwrap();
    if let Err(e) = sent {
        assert!(
            !matches!(e, tokio_tungstenite::tungstenite::Error::Io(_)),
            "the connection was reset under the sending client: {e}"
        );
    }
}

#[tokio::test]
async fn many_authenticated_connections_from_one_address_do_not_lock_out_others_behind_it() {
    let limits = Limits {
        max_unauthenticated_per_ip: 2,
        ..Limits::default()
    };
    let server = TestServer::start_with(limits).await;
    // Everyone here dials from 127.0.0.1, like people behind one NAT: far more authenticated
    // connections than the per-address limit.
    let mut people = Vec::new();
    for name in ["Ann", "Ben", "Cat", "Dan", "Eve"] {
        people.push(RawClient::register(&server, name).await);
    }
    for person in &mut people {
        let pong = person.request(|id| ClientFrame::Ping { id }).await;
        assert!(matches!(pong, ServerFrame::Pong { .. }), "{pong:?}");
    }
    // Connections that have not authenticated are still limited per address: with two of
    // them open, a third is dropped before TLS.
    let idle: Vec<TcpStream> = vec![
        TcpStream::connect(("127.0.0.1", server.port))
            .await
            .unwrap(),
        TcpStream::connect(("127.0.0.1", server.port))
            .await
            .unwrap(),
    ];
    let third = tokio::time::timeout(
        RECV_TIMEOUT,
        confide_client::Connection::connect(&server.url, &server.trust()),
    )
    .await
    .expect("the dropped connection fails rather than hangs");
    assert!(
        third.is_err(),
        "a third unauthenticated connection was served"
    );
    drop(idle);
    // Once those are gone, newcomers get in again (the server notices the closed sockets as it
    // reads them; the wait is bounded).
    let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
    while confide_client::Connection::connect(&server.url, &server.trust())
        .await
        .is_err()
    {
        assert!(tokio::time::Instant::now() < deadline, "still locked out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Review of issue 13: authenticated connections were not counted per address at all, and
/// devices are free to register, so one host could take every connection slot of the server.
#[tokio::test]
async fn one_address_cannot_hold_more_authenticated_connections_than_its_limit() {
    let limits = Limits {
        max_authenticated_per_ip: 3,
        ..Limits::default()
    };
    let server = TestServer::start_with(limits).await;
    let mut people = Vec::new();
    for name in ["Ann", "Ben", "Cat"] {
        people.push(RawClient::register(&server, name).await);
    }
    let mut dan = a_new_device(&server).await;
    let id = dan.next_id();
    let frame = dan.register_frame(id);
    let reply = dan.send_request(&frame).await;
    let ServerFrame::Error {
        code,
        retry_after_ms,
        ..
    } = &reply
    else {
        panic!("a fourth authenticated connection was served: {reply:?}");
    };
    assert_eq!(*code, ErrorCode::TooManyConnections);
    assert!(retry_after_ms.is_some());
    let going = dan
        .wait_for(|f| matches!(f, ServerFrame::GoingAway { .. }))
        .await;
    assert!(matches!(going, ServerFrame::GoingAway { .. }));

    // One leaves: the device gets in (bounded wait: the server notices the close as it reads).
    let ann = people.remove(0).close().await;
    let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
    let mut ann = ann;
    loop {
        let mut again = RawClient::connect_as(&server, ann.identity, ann.user, &ann.name).await;
        match again.authenticate().await {
            ServerFrame::Authenticated { .. } => break,
            other => assert_eq!(error_code(&other), Some(ErrorCode::TooManyConnections)),
        }
        assert!(tokio::time::Instant::now() < deadline, "still locked out");
        tokio::time::sleep(Duration::from_millis(20)).await;
        ann = again.close().await;
    }
}
