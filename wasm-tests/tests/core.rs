//! Confide's client core in a real browser page (headless Chromium, through
//! `wasm-bindgen-test-runner`; `cargo xtask test` runs it): three [`ClientCore`]s, each over its
//! own [`MemoryStore`], with a seeded generator and a shared clock as their [`Host`], make a group
//! with an invite link, hand each other their sender keys and exchange messages, all inside the
//! page. One test runs them over encrypted IndexedDB stores instead, as the web app does, and
//! reloads one of them.
//!
//! Between them is the relay of `confide-test-relay`, a stand-in for the server: it answers the
//! frames of PROTOCOL.md §9 the cores send and delivers `message`, `op` and `inbox` frames to
//! the other devices. Like the server it reads the signed group log to know who is in a group,
//! and it stores and forwards ciphertext only: it holds no device's keys and never opens an
//! envelope or a sealed payload, so every key exchange and every decryption here is the cores'
//! own. Frames cross it as JSON text, as over a websocket, and in the browser every send and
//! receive yields to the page's event loop first, so the cores' futures are suspended on real
//! JavaScript promises.
//!
//! What is checked is what people would notice: everyone reads everyone else's words exactly once
//! and in order, the relay never sees a word of them, and a message the relay alters is refused
//! rather than shown with other text.
//!
//! [`ClientCore`]: confide_client_core::ClientCore
//! [`MemoryStore`]: confide_client_core::MemoryStore
//! [`Host`]: confide_client_core::Host

#![cfg(target_arch = "wasm32")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use confide_client_core::Event;
use confide_protocol::UserId;
use confide_test_relay::{group_of, settle};
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
async fn three_cores_in_the_page_exchange_a_group_sender_keys_and_messages() {
    let (relay, mut devices, group) = group_of(&["Alice", "Bob", "Carol"]).await;
    let texts = [
        "Welcome, both of you. Same time every Tuesday.",
        "Thanks. Rough week, glad this group exists.",
        "Hi! First time here, a bit nervous.",
    ];
    // Each one's first message makes and seals their sender key to the other two.
    for (i, text) in texts.iter().enumerate() {
        let sent = devices[i]
            .core
            .send_text(group, (*text).into(), None)
            .await
            .unwrap();
        assert_eq!(sent.text, *text);
        devices[i].core.after_input().await;
        settle(&mut devices).await;
    }

    for (i, device) in devices.iter().enumerate() {
        // Every other person's words, each exactly once, from the right person; none of one's own.
        let shown: Vec<(UserId, String)> = device
            .shown()
            .into_iter()
            .map(|m| (m.sender, m.text))
            .collect();
        let expected: Vec<(UserId, String)> = (0..texts.len())
            .filter(|j| *j != i)
            .map(|j| (devices[j].user, texts[j].to_string()))
            .collect();
        assert_eq!(shown, expected, "what {} was shown", device.name);
        // The conversation as each one scrolls back: all three, in the order they were sent.
        assert_eq!(
            device.history_texts(group).await,
            texts,
            "{}'s history",
            device.name
        );
        let rejected = device
            .events
            .all()
            .iter()
            .filter(|e| matches!(e, Event::MessageRejected(_) | Event::GroupRejected(_)))
            .count();
        assert_eq!(rejected, 0, "{} rejected something", device.name);
    }

    // The relay carried sender keys and messages, and never a word of them in the clear.
    let relay = relay.lock();
    let posted = relay.wire.iter().filter(|f| f.contains(r#""type":"post""#));
    assert_eq!(posted.count(), texts.len());
    let sealed = relay
        .wire
        .iter()
        .filter(|f| f.contains(r#""type":"send_sealed""#));
    assert_eq!(sealed.count(), texts.len(), "one sender key handout each");
    let words = ["Tuesday", "Rough", "nervous"];
    for seen in texts.iter().chain(&words) {
        assert!(
            !relay.wire.iter().any(|frame| frame.contains(seen)),
            "the relay saw {seen:?}"
        );
    }
}

#[wasm_bindgen_test]
async fn a_message_the_relay_alters_is_refused_not_shown_with_other_text() {
    let (relay, mut devices, group) = group_of(&["Alice", "Bob"]).await;
    let (altered, intact) = ("Meet at the library at seven.", "See you on Tuesday.");

    relay.lock().tamper = true;
    devices[0]
        .core
        .send_text(group, altered.into(), None)
        .await
        .unwrap();
    settle(&mut devices).await;
    relay.lock().tamper = false;
    // The next message comes through: the refusal cost one message, not the conversation.
    devices[0]
        .core
        .send_text(group, intact.into(), None)
        .await
        .unwrap();
    settle(&mut devices).await;

    let bob = &devices[1];
    let rejected: Vec<u64> = bob
        .events
        .all()
        .iter()
        .filter_map(|e| match e {
            Event::MessageRejected(r) if r.group == group => Some(r.seq),
            _ => None,
        })
        .collect();
    assert!(
        rejected.contains(&1),
        "Bob's core did not refuse the altered message: {rejected:?}"
    );
    let shown: Vec<String> = bob.shown().into_iter().map(|m| m.text).collect();
    assert_eq!(shown, [intact], "what Bob was shown");
    assert_eq!(bob.history_texts(group).await, [intact], "Bob's history");
    // Alice's own copy is the text she wrote.
    assert_eq!(devices[0].history_texts(group).await, [altered, intact]);
}

/// The same three people, each core over its own encrypted IndexedDB store in the page
/// ([`IdbStore`]), as the web app runs it: the messages arrive, and a core started again on
/// its reopened store (a reload) has the whole conversation and keeps receiving.
///
/// [`IdbStore`]: confide_client_web::IdbStore
#[wasm_bindgen_test]
async fn three_cores_over_indexeddb_stores_exchange_messages_and_keep_them_across_a_reload() {
    use confide_client_web::IdbStore;
    use confide_protocol::identity::KdfParams;
    use confide_test_relay::{Device, group_on};

    let names = ["Alice", "Bob", "Carol"];
    let mut stores = Vec::new();
    for name in names {
        let db = format!("core-{name}");
        IdbStore::delete_database(&db).await.unwrap();
        stores.push(
            IdbStore::create(&db, name.as_bytes(), KdfParams::INSECURE_FOR_TESTS)
                .await
                .unwrap(),
        );
    }
    let (relay, mut devices, group) = group_on(&names, stores).await;
    let texts = [
        "Kept in this browser, sealed.",
        "Same here, and it survives a reload.",
    ];
    for (i, text) in texts.iter().enumerate() {
        devices[i]
            .core
            .send_text(group, (*text).into(), None)
            .await
            .unwrap();
        devices[i].core.after_input().await;
        settle(&mut devices).await;
    }
    let carol = &devices[2];
    let shown: Vec<String> = carol.shown().into_iter().map(|m| m.text).collect();
    assert_eq!(shown, texts, "what Carol was shown");

    // Carol reloads: her core and store are gone, her store is opened again with her
    // passphrase and a new core starts on it.
    let carol = devices.pop().unwrap();
    carol.store.close();
    drop(carol);
    let store = IdbStore::open("core-Carol", b"Carol").await.unwrap();
    let carol = Device::open(&relay, store, "Carol", 203).await;
    assert_eq!(
        carol.history_texts(group).await,
        texts,
        "Carol's history after a reload"
    );

    let later = "Welcome back.";
    devices[1]
        .core
        .send_text(group, later.into(), None)
        .await
        .unwrap();
    devices[1].core.after_input().await;
    devices.push(carol);
    settle(&mut devices).await;
    let carol = &devices[2];
    let shown: Vec<String> = carol.shown().into_iter().map(|m| m.text).collect();
    assert_eq!(shown, [later], "what Carol was shown after the reload");
    assert_eq!(
        carol.history_texts(group).await,
        [texts[0], texts[1], later],
        "Carol's history"
    );
}
