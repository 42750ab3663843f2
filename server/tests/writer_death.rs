//! A storage writer that dies (a panic in the storage or in a completion) used to leave the
//! server answering `shutting_down` to every write forever while it went on serving. It now
//! says why and shuts down cleanly with an error, for its supervisor to restart it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Device, Mode, Server, WAIT, chain, refusal, register};
use confide_protocol::frames::{ClientFrame, ErrorCode, ServerFrame};
use confide_server::{Limits, ServerError};

#[tokio::test]
async fn a_writer_that_dies_shuts_the_server_down_for_a_restart() {
    let server = Server::start(Limits::default()).await;
    let (reply, _alice) = register(&server.url).await;
    assert!(
        matches!(reply, ServerFrame::Authenticated { .. }),
        "{reply:?}"
    );

    server.storage.set(Mode::Panic);
    let (reply, _bob) = register(&server.url).await;
    let (code, retry_after) = refusal(&reply).expect("the write is refused");
    assert_eq!(code, ErrorCode::ShuttingDown, "{reply:?}");
    assert!(retry_after.is_some(), "told when to come back: {reply:?}");

    let outcome = tokio::time::timeout(WAIT, server.task)
        .await
        .expect("the server stopped by itself")
        .unwrap();
    let err = outcome.expect_err("the server reports why it stopped");
    assert!(matches!(err, ServerError::StorageFailed(_)), "{err}");
    let message = err.to_string();
    assert!(message.contains("must restart"), "{message}");
    assert!(message.contains("a bug in the storage"), "{message}");
}

/// Review of issue 13: a post's completion, dropped unrun when the writer died, answered the
/// requests waiting for the same envelope but not the post itself: its sender waited forever.
#[tokio::test]
async fn a_post_whose_writer_dies_is_answered_shutting_down() {
    let server = Server::start(Limits::default()).await;
    let mut alice = Device::register(&server.url).await;
    let state = alice.create_group().await;

    server.storage.set(Mode::Panic);
    let post = ClientFrame::Post {
        id: alice.next_id(),
        envelope: alice.envelope(&state, &mut chain(), "the writer dies on this one"),
    };
    let reply = alice.request(post).await;
    let (code, retry_after) = refusal(&reply).expect("the post is refused");
    assert_eq!(code, ErrorCode::ShuttingDown, "{reply:?}");
    assert!(retry_after.is_some(), "told when to come back: {reply:?}");
}
