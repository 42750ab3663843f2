//! Regression tests from the client security review: what a malicious server or member tries,
//! and what the user sees instead.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use confide_client::{Event, InviteOptions, RemoveOptions};
use confide_protocol::group_log::{MemberEntry, OpBody};
use confide_protocol::{DeviceIdentity, Seq};
use confide_server::storage::Write;
use confide_tests::{TestServer, TestUser, users_in_group};

/// A test user's member entry (with their device list), under `name`.
async fn entry_of(user: &TestUser, name: &str) -> MemberEntry {
    MemberEntry {
        display_name: name.into(),
        ..user.client.member_entry().await.unwrap()
    }
}

/// Review finding 1: anyone could put anyone into a group and the client showed it at once.
#[tokio::test]
async fn a_group_someone_else_adds_you_to_is_held_until_you_accept() {
    let server = TestServer::start().await;
    let mut alice = TestUser::new(&server, "Alice").await;
    let mallory = TestUser::new(&server, "Dr. Jane (facilitator)").await;
    let group = mallory.client.create_group().await.unwrap();
    mallory
        .client
        .op(
            group,
            OpBody::Add {
                member: entry_of(&alice, "Alice").await,
                invite: None,
                invite_sig: None,
                invite_device: None,
            },
        )
        .await
        .unwrap();
    mallory
        .client
        .send_text(group, "Please introduce yourself and your diagnosis", None)
        .await
        .unwrap();
    let (event, before) = alice
        .wait_event(|e| matches!(e, Event::Invited { .. }))
        .await;
    assert!(
        matches!(event, Event::Invited { group: g, ref by_name, .. } if g == group && by_name == "Dr. Jane (facilitator)")
    );
    assert!(
        !before
            .iter()
            .any(|e| matches!(e, Event::Joined { .. } | Event::Message(_)))
    );
    alice.client.sync().await.unwrap();
    assert!(
        alice
            .client
            .history(group, None, 10)
            .await
            .unwrap()
            .is_empty(),
        "nothing shown before accepting"
    );
    // Declining: leave.
    alice.client.leave(group).await.unwrap();
    assert!(
        alice
            .client
            .history(group, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Review finding 2: a removed member's old-epoch message slipped in later was shown.
#[tokio::test]
async fn a_removed_members_old_epoch_message_slipped_in_later_is_refused() {
    // Moves a stored message in place.
    let mut server = TestServer::start_on_sled().await;
    let (mut users, group) =
        users_in_group(&server.url, server.trust(), &["Alice", "Bob", "Carol"]).await;
    users[0]
        .client
        .send_text(group, "welcome", None)
        .await
        .unwrap();
    users[1].wait_history(group, 1).await;
    users[1].go_offline().await;
    users[2]
        .client
        .send_text(group, "held back", None)
        .await
        .unwrap();
    users[0]
        .client
        .remove(
            group,
            users[2].client.user(),
            RemoveOptions::new().ban(true),
        )
        .await
        .unwrap();
    users[0]
        .client
        .send_text(group, "after the removal", None)
        .await
        .unwrap();
    users[0].go_offline().await;
    server.stop().await;
    // The server moves Carol's message behind the post-removal one.
    let storage = confide_tests::open_stopped_sled(&server.data_dir);
    let stored = confide_server::Storage::messages(&storage, &group, Seq(0), 100).unwrap();
    assert_eq!(stored.len(), 3);
    let mut held = stored[1].clone();
    let id = held.envelope.message_id();
    held.seq = Seq(4);
    confide_server::Storage::commit(
        &storage,
        &[
            Write::DeleteMessage { group, message: id },
            Write::Message {
                group,
                message: held,
            },
        ],
    )
    .unwrap();
    drop(storage);
    server.restart().await;
    users[1].come_back().await;
    let (_, events) = users[1].wait_event(|e| matches!(e, Event::Synced)).await;
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::MessageRejected(r) if r.seq == 4))
    );
    let texts: Vec<String> = users[1]
        .client
        .history(group, None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(texts, ["welcome", "after the removal"]);
}

/// Review finding 6: a forged copy delivered first made the genuine message a "replay".
#[tokio::test]
async fn a_forged_copy_does_not_get_the_genuine_message_refused() {
    // Rewrites a stored message in place.
    let mut server = TestServer::start_on_sled().await;
    let (mut users, group) = users_in_group(&server.url, server.trust(), &["Alice", "Bob"]).await;
    users[0]
        .client
        .send_text(group, "first", None)
        .await
        .unwrap();
    users[1].wait_history(group, 1).await;
    users[1].go_offline().await;
    users[0]
        .client
        .send_text(group, "genuine", None)
        .await
        .unwrap();
    users[0].go_offline().await;
    server.stop().await;
    let storage = confide_tests::open_stopped_sled(&server.data_dir);
    let stored = confide_server::Storage::messages(&storage, &group, Seq(0), 100).unwrap();
    let genuine = stored[1].clone();
    let mut forged = genuine.clone();
    forged.envelope.ciphertext[0] ^= 1;
    let moved = confide_protocol::frames::StoredMessage {
        seq: Seq(3),
        ..genuine
    };
    confide_server::Storage::commit(
        &storage,
        &[
            Write::Message {
                group,
                message: forged,
            },
            Write::Message {
                group,
                message: moved,
            },
        ],
    )
    .unwrap();
    drop(storage);
    server.restart().await;
    users[1].come_back().await;
    users[1].wait_event(|e| matches!(e, Event::Synced)).await;
    let texts: Vec<String> = users[1]
        .client
        .history(group, None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(texts, ["first", "genuine"]);
}

/// Review finding 5: an urgent request sealed in an epoch the facilitator had not seen yet
/// was acknowledged and lost.
#[tokio::test]
async fn an_urgent_request_across_an_epoch_change_reaches_the_offline_facilitator() {
    let server = TestServer::start().await;
    let (mut users, group) = users_in_group(&server.url, server.trust(), &["Alice", "Bob"]).await;
    let invite = users[0]
        .client
        .create_invite(
            group,
            InviteOptions::new().valid_for(Duration::from_secs(600)),
        )
        .await
        .unwrap();
    users[0].go_offline().await;
    let carol = TestUser::new(&server, "Carol").await;
    carol.client.join(&invite, None).await.unwrap();
    users[1].client.sync().await.unwrap();
    users[1]
        .client
        .request_facilitator(group, "I am not safe tonight")
        .await
        .unwrap();
    users[0].come_back().await;
    let (event, _) = users[0]
        .wait_event(|e| matches!(e, Event::UrgentRequest(_)))
        .await;
    assert!(matches!(event, Event::UrgentRequest(r) if r.text == "I am not safe tonight"));
    let queue = users[0].client.facilitator_queue(group).await.unwrap();
    assert_eq!(queue.len(), 1);
    users[0].client.resolve(&queue[0].0).await.unwrap();
    assert!(
        users[0]
            .client
            .facilitator_queue(group)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Review finding 3: payload kinds the client did not use stayed in the inbox forever.
#[tokio::test]
async fn every_inbox_item_is_acknowledged_so_nothing_piles_up() {
    use confide_protocol::frames::ServerFrame;
    use confide_protocol::seal::{self, SealKind};
    let mut server = TestServer::start().await;
    let (mut users, group) = users_in_group(&server.url, server.trust(), &["Alice", "Bob"]).await;
    users[0].client.sync().await.unwrap();
    // Bob, by hand, floods Alice with a kind she does not use.
    let bob_identity = DeviceIdentity::from_secrets(&users[1].secret).unwrap();
    let alice_keys = DeviceIdentity::from_secrets(&users[0].secret)
        .unwrap()
        .public_keys();
    let mut raw =
        confide_tests::RawClient::connect_as(&server, bob_identity, users[1].client.user(), "Bob")
            .await;
    assert!(matches!(
        raw.authenticate().await,
        ServerFrame::Authenticated { .. }
    ));
    let epoch = users[0]
        .client
        .groups()
        .await
        .unwrap()
        .iter()
        .find(|g| g.group == group)
        .unwrap()
        .epoch;
    // The epoch hash does not matter: Alice's client must drop and acknowledge them anyway.
    let items: Vec<_> = (0..5)
        .map(|_| {
            seal::seal(
                &raw.identity,
                &alice_keys,
                SealKind::Direct,
                group,
                confide_protocol::EpochRef {
                    epoch,
                    hash: confide_protocol::OpHash([0; 32]),
                },
                b"junk",
                &mut confide_tests::rng(),
            )
            .unwrap()
        })
        .collect();
    let reply = raw.send_sealed(items).await;
    assert!(matches!(reply, ServerFrame::Ok { .. }), "{reply:?}");
    users[0].go_offline().await;
    users[0].come_back().await;
    users[0].wait_event(|e| matches!(e, Event::Synced)).await;
    users[0].client.sync().await.unwrap();
    users[0].go_offline().await;
    drop(raw);
    server.stop().await;
    let storage = server.open_storage();
    let alice_device = DeviceIdentity::from_secrets(&users[0].secret)
        .unwrap()
        .device_id();
    assert!(storage.inbox(&alice_device, 0, 100).unwrap().is_empty());
}

/// The invite's secret, read from its link as anyone holding the link can.
fn invite_secret(link: &str) -> confide_protocol::group_log::InviteSecret {
    use base64::Engine as _;
    let body = link.strip_prefix("confide-invite:").unwrap();
    let json: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .unwrap(),
    )
    .unwrap();
    let secret = confide_protocol::encoding::b64_decode(json["secret"].as_str().unwrap()).unwrap();
    confide_protocol::group_log::InviteSecret::from_bytes(&secret.try_into().unwrap())
}

/// Issue 12, point 7: the facilitator's client checked only the first device of a join
/// request, so a requester could list someone else's device too and, once approved, have that
/// device's posts shown under their own name.
#[tokio::test]
async fn a_join_request_listing_someone_elses_device_is_dropped() {
    use confide_protocol::seal::SealKind;
    let server = TestServer::start().await;
    let mut fay = TestUser::new(&server, "Fay").await;
    let bob = TestUser::new(&server, "Bob").await;
    let group = fay.client.create_group().await.unwrap();
    let invite = fay
        .client
        .create_invite(
            group,
            InviteOptions::new()
                .requires_approval(true)
                .max_uses(5)
                .valid_for(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    let secret = invite_secret(&invite.to_link());
    let mut mallory = confide_tests::RawClient::register(&server, "Mallory").await;
    let proof = confide_protocol::frames::InviteProof {
        id: secret.id(),
        signature: secret.sign_sync(&group, &mallory.identity.device_id()),
    };
    let confide_protocol::frames::ServerFrame::SyncPage { ops, .. } =
        mallory.sync_page(group, 50, Some(proof)).await
    else {
        panic!("the invite did not let Mallory read the log");
    };
    let state = confide_protocol::group_log::verify_log(&ops).unwrap();
    let fay_keys = state.facilitator_devices()[0].clone();
    let request = |devices: Vec<confide_protocol::DeviceKeys>, note: &str| {
        let member = MemberEntry {
            user: mallory.user,
            display_name: "Mallory".into(),
            devices,
            device_list: None,
        };
        let sig = secret.sign_join(&group, &mallory.user, &mallory.identity.device_id());
        let payload = serde_json::json!({
            "invite": secret.id(),
            "invite_sig": sig,
            "member": member,
            "note": note,
        });
        confide_tests::seal_to(
            &mallory.identity,
            &fay_keys,
            SealKind::JoinRequest,
            &state,
            &serde_json::to_vec(&payload).unwrap(),
        )
    };
    let bobs_device = entry_of(&bob, "Bob").await.devices[0].clone();
    let forged = request(
        vec![mallory.identity.public_keys(), bobs_device],
        "with Bob's device",
    );
    let honest = request(vec![mallory.identity.public_keys()], "only mine");
    assert!(matches!(
        mallory.send_sealed(vec![forged, honest]).await,
        confide_protocol::frames::ServerFrame::Ok { .. }
    ));
    let (event, before) = fay.wait_event(|e| matches!(e, Event::JoinRequest(_))).await;
    let Event::JoinRequest(request) = event else {
        unreachable!()
    };
    assert_eq!(request.note.as_deref(), Some("only mine"));
    assert!(
        !before.iter().any(|e| matches!(e, Event::JoinRequest(_))),
        "the request listing Bob's device was shown"
    );
}

/// Issue 20: the server no longer verifies envelope signatures (PROTOCOL.md §10.1, `post`
/// step 2). Bob's genuine post, its signature spoiled on the way out (as a faulty or hostile
/// client of his own would send it), is stored by the honest server behind; Alice, online, and
/// Carol, offline until later, drop it without showing a word of it, tell their application,
/// and show the conversation around it.
#[tokio::test]
async fn a_members_badly_signed_post_is_dropped_by_every_recipient() {
    use confide_protocol::frames::ClientFrame;
    use confide_tests::evil::{EvilServer, Verdict};
    const SPOILED: &str = "words that Bob's signature does not cover";
    let server = TestServer::start().await;
    let evil = EvilServer::start(&server).await;
    let (mut users, group) =
        users_in_group(&evil.url, evil.trust(), &["Alice", "Bob", "Carol"]).await;
    users[1]
        .client
        .send_text(group, "before", None)
        .await
        .unwrap();
    users[0].wait_history(group, 1).await;
    users[2].wait_history(group, 1).await;
    users[2].go_offline().await;

    let bob = users[1].client.device();
    evil.on_requests(bob, |frame| match frame {
        ClientFrame::Post { id, mut envelope } => {
            envelope.signature.0[5] ^= 0x01;
            Verdict::Forward(ClientFrame::Post { id, envelope })
        }
        other => Verdict::Forward(other),
    });
    // Acknowledged: the server stores it like any other post.
    users[1]
        .client
        .send_text(group, SPOILED, None)
        .await
        .unwrap();
    evil.honest(bob);
    users[1]
        .client
        .send_text(group, "after", None)
        .await
        .unwrap();
    users[2].come_back().await;

    for index in [0, 2] {
        let user = &mut users[index];
        let (event, _) = user
            .wait_event(|e| matches!(e, Event::MessageRejected(r) if r.seq == 2))
            .await;
        let Event::MessageRejected(rejection) = event else {
            panic!("waited for a rejection, got {event:?}");
        };
        assert_eq!(rejection.group, group);
        assert!(
            rejection.reason.contains("signature"),
            "refused for its signature: {}",
            rejection.reason
        );
        let history = user.wait_history(group, 2).await;
        let texts: Vec<&str> = history.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(texts, ["before", "after"], "user {index}");
    }
}
