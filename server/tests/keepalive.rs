//! What the server's writer task is asked to send besides queued frames: websocket pings to a
//! silent peer, and the going-away frame and close frame that end a connection.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{Server, WAIT};
use confide_protocol::frames::ServerFrame;
use confide_server::Limits;
use futures_util::StreamExt as _;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// The next websocket message, failing the test if none comes within [`WAIT`].
async fn next<S>(ws: &mut S) -> Message
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("the server sent nothing")
        .expect("the server closed the connection")
        .expect("the websocket failed")
}

/// A server with `limits`, and a raw websocket to it (control frames visible).
async fn server_and_socket(
    limits: Limits,
) -> (
    Server,
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
) {
    let server = Server::start(limits).await;
    let (ws, _) = tokio_tungstenite::connect_async(server.url.as_str())
        .await
        .unwrap();
    (server, ws)
}

/// Reads the next message and fails the test unless it is the server's challenge.
async fn expect_challenge<S>(ws: &mut S)
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let challenge = next(ws).await;
    assert!(
        matches!(&challenge, Message::Text(text) if text.contains("challenge")),
        "{challenge:?}"
    );
}

#[tokio::test]
async fn a_silent_connection_is_pinged_again_and_again() {
    let (_server, mut ws) = server_and_socket(Limits {
        ping_interval: Duration::from_millis(50),
        ..Limits::default()
    })
    .await;
    expect_challenge(&mut ws).await;
    for _ in 0..3 {
        let message = next(&mut ws).await;
        assert!(matches!(message, Message::Ping(_)), "{message:?}");
    }
}

#[tokio::test]
async fn a_connection_that_never_authenticates_is_told_why_then_closed_with_policy() {
    let (_server, mut ws) = server_and_socket(Limits {
        auth_timeout: Duration::from_millis(300),
        ..Limits::default()
    })
    .await;
    let mut texts = Vec::new();
    let close = loop {
        match next(&mut ws).await {
            Message::Text(text) => texts.push(ServerFrame::from_json(text.as_str(), usize::MAX)),
            Message::Close(close) => break close,
            _ => {}
        }
    };
    let close = close.expect("a close frame with a code");
    assert_eq!(close.code, CloseCode::Policy);
    assert_eq!(close.reason.as_str(), "authentication timed out");
    // In order: the challenge, the error that says why (no request id: it concerns the
    // connection), and the going-away frame, queued frames first (PROTOCOL.md §9.10).
    let kinds: Vec<&str> = texts
        .iter()
        .map(|frame| match frame {
            Ok(ServerFrame::Challenge { .. }) => "challenge",
            Ok(ServerFrame::Error {
                id: None,
                code: confide_protocol::frames::ErrorCode::NotAuthenticated,
                ..
            }) => "not_authenticated",
            Ok(ServerFrame::GoingAway { reason }) if reason == "authentication timed out" => {
                "going_away"
            }
            _ => "other",
        })
        .collect();
    assert_eq!(
        kinds,
        ["challenge", "not_authenticated", "going_away"],
        "{texts:?}"
    );
}

#[tokio::test]
async fn a_peer_that_closes_first_gets_the_servers_close_in_reply() {
    let (_server, mut ws) = server_and_socket(Limits::default()).await;
    expect_challenge(&mut ws).await;
    ws.close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    }))
    .await
    .unwrap();
    // The reader stops on the peer's close; the writer then sends the websocket's reply to it.
    let reply = loop {
        match next(&mut ws).await {
            Message::Close(close) => break close,
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected the close reply, got {other:?}"),
        }
    };
    assert_eq!(reply.map(|close| close.code), Some(CloseCode::Normal));
}
