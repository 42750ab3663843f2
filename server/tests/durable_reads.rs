//! Reads serve only durable data. sled shows a batch to readers as soon as it is applied, before
//! its flush; a message read in that window and then lost in a crash would be one a reader had
//! already moved past.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Device, Server, chain};
use confide_protocol::Seq;
use confide_protocol::frames::{ClientFrame, ServerFrame};
use confide_server::Limits;

/// Review of issue 13: `sync` bounded what it served by the posts in flight when it held the
/// group's lock, and read storage after releasing it. With nothing in flight there was no bound,
/// so a post that took its seq and was applied between the two was served before it was
/// durable. The sync here is held between the lock and its read while such a post is applied.
///
/// Multi-threaded: the held read blocks its runtime thread, as a slow disk read would.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_post_applied_while_a_sync_is_reading_is_not_served_before_it_is_durable() {
    let server = Server::start(Limits::default()).await;
    let mut poster = Device::register(&server.url).await;
    let state = poster.create_group().await;
    let mut reader = poster.again(&server.url).await;
    let group = state.group();

    // The sync takes the group's lock (nothing is in flight), lets it go, and is held before
    // it reads the page's ops and messages.
    server.storage.before_op_read.close();
    let sync = ClientFrame::Sync {
        id: reader.next_id(),
        group,
        after_op_seq: None,
        after_seq: Seq(0),
        limit: 50,
        invite: None,
    };
    reader.send(&sync).await;
    server.storage.before_op_read.until_held().await;

    // Meanwhile a post takes the next seq, and the database applies it but has not yet said it
    // is durable.
    server.storage.after_write.close();
    let post = ClientFrame::Post {
        id: poster.next_id(),
        envelope: poster.envelope(&state, &mut chain(), "not yet durable"),
    };
    poster.send(&post).await;
    server.storage.after_write.until_held().await;

    server.storage.before_op_read.open();
    let page = reader.reply_to(sync.request_id()).await;
    let ServerFrame::SyncPage { messages, .. } = page else {
        panic!("expected a sync page, got {page:?}");
    };
    assert!(
        messages.is_empty(),
        "a post the server had not acknowledged was served: {messages:?}"
    );

    server.storage.after_write.open();
    let posted = poster.reply_to(post.request_id()).await;
    assert!(matches!(posted, ServerFrame::Posted { .. }), "{posted:?}");
    let again = ClientFrame::Sync {
        id: reader.next_id(),
        group,
        after_op_seq: None,
        after_seq: Seq(0),
        limit: 50,
        invite: None,
    };
    let page = reader.request(again).await;
    let ServerFrame::SyncPage { messages, .. } = page else {
        panic!("expected a sync page, got {page:?}");
    };
    assert_eq!(messages.len(), 1, "served once durable");
}
