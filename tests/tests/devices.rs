//! Linked devices (issue 16), end to end: real clients through a real server over TLS.
//!
//! A person links a second computer to their account by comparing numbers on both screens; the
//! new device then holds their groups with the recent history, what they send on one device
//! shows on the other, and others' messages reach both. Unlinking a device leaves it reading
//! nothing sent afterwards. A code joined by someone else's device, too many devices, and an
//! unknown or expired code are refused without linking anything.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use confide_client::{
    Client, ClientConfig, ClientFrame, ErrorCode, Event, GroupId, ServerTrust, UserId,
};
use confide_protocol::DeviceId;
use confide_protocol::identity::KdfParams;
use confide_server::Limits;
use confide_tests::{EvilServer, PASSPHRASE, RECV_TIMEOUT, TestServer, TestUser, users_in_group};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The configuration of a new device's store (a fresh directory) for the server at `url`.
fn new_device_config(url: &str, trust: ServerTrust) -> (ClientConfig, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ClientConfig::new(url, trust, dir.path().join("store"));
    config.kdf = KdfParams::INSECURE_FOR_TESTS;
    (config, dir)
}

/// The devices `user`'s client lists for itself.
async fn own_device_ids(user: &TestUser) -> Vec<DeviceId> {
    user.client
        .own_devices()
        .await
        .unwrap()
        .devices
        .into_iter()
        .map(|d| d.device)
        .collect()
}

/// Waits until `user` sees exactly `n` devices for `whose` in `group`'s member list.
async fn wait_member_devices(user: &mut TestUser, group: GroupId, whose: UserId, n: usize) {
    let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
    loop {
        let members = user.client.members(group).await.unwrap();
        let seen = members
            .iter()
            .find(|m| m.user == whose)
            .map(|m| m.devices.len());
        if seen == Some(n) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the member shows {seen:?} devices, not {n}"
        );
        let _ = tokio::time::timeout(Duration::from_millis(100), user.events.next()).await;
    }
}

/// Waits until `user` holds `group` as an accepted member.
async fn wait_group(user: &mut TestUser, group: GroupId) {
    let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
    loop {
        let groups = user.client.groups().await.unwrap();
        if groups
            .iter()
            .any(|g| g.group == group && g.member && !g.invited)
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the group never showed as accepted: {groups:?}"
        );
        let _ = tokio::time::timeout(Duration::from_millis(100), user.events.next()).await;
    }
}

/// The texts of `user`'s history of `group`, oldest first.
async fn texts(user: &TestUser, group: GroupId) -> Vec<String> {
    user.client
        .history(group, None, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect()
}

/// Waits until `text` is in `user`'s history of `group`.
async fn wait_text(user: &mut TestUser, group: GroupId, text: &str) {
    let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
    loop {
        let seen = texts(user, group).await;
        if seen.iter().any(|t| t == text) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{text:?} never arrived; history: {seen:?}"
        );
        let _ = tokio::time::timeout(Duration::from_millis(100), user.events.next()).await;
    }
}

/// Every device `device` sealed a payload to (sender keys and the like), as the relay saw.
fn sealed_recipients(evil: &EvilServer, device: DeviceId) -> Vec<DeviceId> {
    evil.requests_from(device)
        .into_iter()
        .flat_map(|frame| match frame {
            ClientFrame::SendSealed { items, .. } => items,
            _ => Vec::new(),
        })
        .map(|item| item.recipient)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 1. Linking
// ---------------------------------------------------------------------------------------------

/// Alice links a second computer. Both screens show the same numbers; afterwards each of her
/// devices lists both, the new one holds the group she is in (accepted), the messages sent
/// before the link, and the group agreement she pinned.
#[tokio::test]
async fn a_linked_device_holds_the_persons_groups_history_and_agreement() {
    let server = TestServer::start().await;
    let (mut users, group) = users_in_group(&server.url, server.trust(), &["Alice", "Bob"]).await;
    let mut bob = users.pop().unwrap();
    let mut alice = users.pop().unwrap();
    alice
        .client
        .send_text(group, "hello from before", None)
        .await
        .unwrap();
    wait_text(&mut bob, group, "hello from before").await;
    bob.client.send_text(group, "hi Alice", None).await.unwrap();
    wait_text(&mut alice, group, "hi Alice").await;
    alice
        .client
        .set_agreement(group, "We keep what is said here in here.")
        .await
        .unwrap();
    assert_eq!(own_device_ids(&alice).await, vec![alice.client.device()]);

    let mut laptop = alice.link_new_device(&server.url, server.trust()).await;

    // The same person, on two devices, which both know it.
    assert_eq!(laptop.client.user(), alice.client.user());
    assert_eq!(laptop.client.display_name(), "Alice");
    let both = vec![alice.client.device(), laptop.client.device()];
    let mut on_laptop = own_device_ids(&laptop).await;
    let mut on_alice = own_device_ids(&alice).await;
    on_laptop.sort();
    on_alice.sort();
    let mut expected = both.clone();
    expected.sort();
    assert_eq!(on_laptop, expected);
    assert_eq!(on_alice, expected);
    let laptop_view = laptop.client.own_devices().await.unwrap();
    let alice_view = alice.client.own_devices().await.unwrap();
    assert_eq!(laptop_view.version, alice_view.version);
    assert_eq!(laptop_view.fingerprint, alice_view.fingerprint);
    assert!(
        laptop_view
            .devices
            .iter()
            .any(|d| d.this_device && d.device == laptop.client.device())
    );
    assert!(
        laptop_view
            .devices
            .iter()
            .any(|d| d.made_current_list && d.device == alice.client.device()),
        "the device that linked made the current list"
    );

    // The group, accepted, with what was said before the link and the pinned agreement.
    wait_group(&mut laptop, group).await;
    wait_text(&mut laptop, group, "hello from before").await;
    wait_text(&mut laptop, group, "hi Alice").await;
    let history = texts(&laptop, group).await;
    let before = history.iter().position(|t| t == "hello from before");
    let after = history.iter().position(|t| t == "hi Alice");
    assert!(before < after, "the history keeps its order: {history:?}");
    let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
    loop {
        let pinned = laptop.client.pinned(group).await.unwrap();
        if let Some(agreement) = pinned.agreement {
            assert_eq!(agreement.text, "We keep what is said here in here.");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the agreement never reached the new device: {pinned:?}"
        );
        let _ = tokio::time::timeout(Duration::from_millis(100), laptop.events.next()).await;
    }
    // Bob sees Alice with both devices, Alice still once.
    wait_member_devices(&mut bob, group, alice.client.user(), 2).await;
    let members = bob.client.members(group).await.unwrap();
    assert_eq!(members.len(), 2);
}

// ---------------------------------------------------------------------------------------------
// 2. Messages across devices
// ---------------------------------------------------------------------------------------------

/// What Alice sends from her new device shows on her first one and reaches Bob; what Bob sends
/// reaches both of her devices.
#[tokio::test]
async fn messages_reach_every_device_of_a_person() {
    let server = TestServer::start().await;
    let (mut users, group) = users_in_group(&server.url, server.trust(), &["Alice", "Bob"]).await;
    let mut bob = users.pop().unwrap();
    let mut alice = users.pop().unwrap();
    let mut laptop = alice.link_new_device(&server.url, server.trust()).await;
    wait_group(&mut laptop, group).await;
    // Everyone has seen the new device in the group before anyone speaks.
    let alice_user = alice.client.user();
    wait_member_devices(&mut bob, group, alice_user, 2).await;
    wait_member_devices(&mut alice, group, alice_user, 2).await;
    wait_member_devices(&mut laptop, group, alice_user, 2).await;

    let sent = laptop
        .client
        .send_text(group, "typed on the laptop", None)
        .await
        .unwrap();
    wait_text(&mut alice, group, "typed on the laptop").await;
    wait_text(&mut bob, group, "typed on the laptop").await;
    let at_bob = bob
        .client
        .history(group, None, 100)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.text == "typed on the laptop")
        .unwrap();
    assert_eq!(at_bob.sender, alice_user, "Bob sees it as Alice's");
    assert_eq!(at_bob.sender_name, "Alice");
    assert_eq!(at_bob.seq, sent.seq);

    alice
        .client
        .send_text(group, "typed on the phone", None)
        .await
        .unwrap();
    wait_text(&mut laptop, group, "typed on the phone").await;
    wait_text(&mut bob, group, "typed on the phone").await;

    bob.client
        .send_text(group, "to both of Alice's devices", None)
        .await
        .unwrap();
    wait_text(&mut alice, group, "to both of Alice's devices").await;
    wait_text(&mut laptop, group, "to both of Alice's devices").await;
    // Both of Alice's devices show the same conversation in the same order.
    assert_eq!(texts(&alice, group).await, texts(&laptop, group).await);
}

// ---------------------------------------------------------------------------------------------
// 3. Unlinking
// ---------------------------------------------------------------------------------------------

/// Alice (two devices), Bob and Carol in a group through a relay that records what each device
/// sends; `from_new` says which of Alice's devices unlinks the other. The unlinked device learns
/// it and reads nothing sent afterwards; the remaining device and everyone else go on, and no
/// sender key is sealed to the unlinked device any more.
async fn unlink_scenario(from_new: bool) {
    let server = TestServer::start().await;
    let evil = EvilServer::start(&server).await;
    let (mut users, group) =
        users_in_group(&evil.url, evil.trust(), &["Alice", "Bob", "Carol"]).await;
    let mut carol = users.pop().unwrap();
    let mut bob = users.pop().unwrap();
    let mut alice = users.pop().unwrap();
    let mut laptop = alice.link_new_device(&evil.url, evil.trust()).await;
    wait_group(&mut laptop, group).await;
    let alice_user = alice.client.user();
    for user in [&mut alice, &mut bob, &mut carol, &mut laptop] {
        wait_member_devices(user, group, alice_user, 2).await;
    }
    bob.client
        .send_text(group, "before the unlink", None)
        .await
        .unwrap();
    wait_text(&mut alice, group, "before the unlink").await;
    wait_text(&mut laptop, group, "before the unlink").await;

    let (mut stays, mut goes) = if from_new {
        (laptop, alice)
    } else {
        (alice, laptop)
    };
    let gone = goes.client.device();
    stays.client.unlink_device(gone).await.unwrap();
    assert_eq!(own_device_ids(&stays).await, vec![stays.client.device()]);
    let events = goes.wait_unlinked().await;
    let told = events
        .iter()
        .any(|e| matches!(e, Event::DeviceUnlinked { by } if *by == stays.client.device()));
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::IdentityMisuse { .. })),
        "a genuine unlink is not misuse: {events:?}"
    );

    // Everyone sees Alice with one device before speaking again.
    for user in [&mut stays, &mut bob, &mut carol] {
        wait_member_devices(user, group, alice_user, 1).await;
    }
    let sealed_before: Vec<usize> = [&bob, &carol, &stays]
        .iter()
        .map(|u| sealed_recipients(&evil, u.client.device()).len())
        .collect();
    bob.client
        .send_text(group, "after the unlink", None)
        .await
        .unwrap();
    carol
        .client
        .send_text(group, "Carol too", None)
        .await
        .unwrap();
    stays
        .client
        .send_text(group, "Alice is still here", None)
        .await
        .unwrap();
    for text in ["after the unlink", "Carol too", "Alice is still here"] {
        wait_text(&mut stays, group, text).await;
        wait_text(&mut bob, group, text).await;
        wait_text(&mut carol, group, text).await;
    }
    // The unlinked device reads none of it, whatever it tries.
    let _ = tokio::time::timeout(RECV_TIMEOUT, goes.client.sync()).await;
    if let Ok(history) = goes.client.history(group, None, 10_000).await {
        for text in ["after the unlink", "Carol too", "Alice is still here"] {
            assert!(
                !history.iter().any(|m| m.text == text),
                "the unlinked device read {text:?}"
            );
        }
    }
    // Nothing sealed after the unlink is addressed to it.
    for (user, before) in [&bob, &carol, &stays].iter().zip(sealed_before) {
        let after = sealed_recipients(&evil, user.client.device());
        assert!(
            !after[before..].contains(&gone),
            "{} sealed a payload to the unlinked device",
            user.client.display_name()
        );
    }
    // It cannot come back as itself: its profile no longer opens as a working device, or the
    // server refuses it.
    goes.go_offline().await;
    let reopened = Client::open(goes.config.clone(), PASSPHRASE).await;
    if told {
        // It was told, with the list that dropped it: its profile stays unlinked.
        let err = reopened.as_ref().err().map(|e| e.code());
        // `unlinked`: the client verified the list that dropped it (not the server's word).
        assert_eq!(err, Some("unlinked"), "reopening an unlinked profile");
    }
    if let Ok((client, mut events)) = reopened {
        let r = tokio::time::timeout(RECV_TIMEOUT, client.sync()).await;
        assert!(
            matches!(&r, Ok(Err(_))),
            "the unlinked device synced again: {r:?}"
        );
        if let Ok(history) = client.history(group, None, 10_000).await {
            assert!(!history.iter().any(|m| m.text == "after the unlink"));
        }
        client.shutdown().await;
        while events.next().await.is_some() {}
    }
}

#[tokio::test]
async fn unlinking_the_new_device_from_the_first_cuts_it_off() {
    unlink_scenario(false).await;
}

#[tokio::test]
async fn unlinking_the_first_device_from_the_new_one_cuts_it_off() {
    unlink_scenario(true).await;
}

// ---------------------------------------------------------------------------------------------
// 4. Someone else joins the code
// ---------------------------------------------------------------------------------------------

/// Mallory, another user, enters the code the new device shows before Alice does. The new
/// device shows Mallory's name and safety-number half, not Alice's, and numbers that Alice's
/// screen never showed; its person cancels. Nothing is linked: Mallory's list and Alice's are
/// unchanged, and the code is gone.
#[tokio::test]
async fn a_code_joined_by_someone_elses_device_links_nothing_once_cancelled() {
    let server = TestServer::start().await;
    let alice = TestUser::new(&server, "Alice").await;
    let mallory = TestUser::new(&server, "Mallory").await;
    let alice_before = alice.client.own_devices().await.unwrap();
    let mallory_before = mallory.client.own_devices().await.unwrap();

    let (config, _dir) = new_device_config(&server.url, server.trust());
    let mut new = Client::link_new_device(config).await.unwrap();
    let code = new.code();
    let (check, offer) = tokio::join!(mallory.client.link_start(&code), new.wait_for_offer());
    let (_check, offer) = (check.unwrap(), offer.unwrap());
    // What the person sees on the new device is not their own account.
    assert_eq!(offer.display_name, "Mallory");
    assert_ne!(offer.fingerprint, alice_before.fingerprint);
    // Alice, entering the same code, gets nowhere: the channel is taken.
    let err = alice.client.link_start(&code).await.unwrap_err();
    assert!(
        matches!(err.code(), "link_unknown" | "link_busy"),
        "Alice joining a taken code: {err:?}"
    );

    let ((), confirmed) = tokio::join!(new.cancel(), mallory.client.link_confirm());
    let err = confirmed.unwrap_err();
    assert_eq!(err.code(), "link_cancelled", "{err:?}");
    assert_eq!(mallory.client.own_devices().await.unwrap(), mallory_before);
    assert_eq!(alice.client.own_devices().await.unwrap(), alice_before);
    // The code cannot be used again.
    let err = mallory.client.link_start(&code).await.unwrap_err();
    assert_eq!(err.code(), "link_unknown", "{err:?}");
}

/// Alice starts a link but the numbers differ: she cancels on her device. The new device is
/// told, and nothing is linked.
#[tokio::test]
async fn cancelling_on_the_existing_device_links_nothing() {
    let server = TestServer::start().await;
    let alice = TestUser::new(&server, "Alice").await;
    let before = alice.client.own_devices().await.unwrap();
    let (config, _dir) = new_device_config(&server.url, server.trust());
    let mut new = Client::link_new_device(config).await.unwrap();
    let code = new.code();
    let (check, offer) = tokio::join!(alice.client.link_start(&code), new.wait_for_offer());
    assert_eq!(check.unwrap().sas, offer.unwrap().sas);
    alice.client.link_cancel().await.unwrap();
    // The new device hears of it at once (a hang until the server drops the channel, minutes
    // later, is a failure).
    let err = tokio::time::timeout(RECV_TIMEOUT, new.finish(PASSPHRASE))
        .await
        .expect("the new device never heard that the link was cancelled")
        .unwrap_err();
    assert_eq!(err.code(), "link_cancelled", "{err:?}");
    assert_eq!(alice.client.own_devices().await.unwrap(), before);
    let err = alice.client.link_confirm().await.unwrap_err();
    assert_eq!(err.code(), "no_link", "{err:?}");
}

// ---------------------------------------------------------------------------------------------
// 5. Limits
// ---------------------------------------------------------------------------------------------

/// A person can have eight devices: linking a ninth is refused on any of them, and nothing
/// changes.
#[tokio::test]
async fn a_ninth_device_is_refused() {
    let server = TestServer::start().await;
    let alice = TestUser::new(&server, "Alice").await;
    let mut devices = Vec::new();
    for _ in 0..7 {
        devices.push(alice.link_new_device(&server.url, server.trust()).await);
    }
    let own = alice.client.own_devices().await.unwrap();
    assert_eq!(own.devices.len(), 8);
    let last = devices.last().unwrap();
    assert_eq!(own_device_ids(last).await.len(), 8);

    for existing in [&alice, last] {
        let (config, _dir) = new_device_config(&server.url, server.trust());
        let ninth = Client::link_new_device(config).await.unwrap();
        let err = existing.client.link_start(&ninth.code()).await.unwrap_err();
        assert_eq!(err.code(), "too_many_devices", "{err:?}");
        ninth.cancel().await;
    }
    assert_eq!(alice.client.own_devices().await.unwrap(), own);
}

/// A code nobody opened, and a code whose new device gave up, are unknown to the server.
#[tokio::test]
async fn an_unknown_or_abandoned_code_is_refused() {
    let server = TestServer::start().await;
    let alice = TestUser::new(&server, "Alice").await;
    let before = alice.client.own_devices().await.unwrap();
    let err = alice.client.link_start("00000-00000").await.unwrap_err();
    assert_eq!(err.code(), "link_unknown", "{err:?}");
    assert_eq!(err.server_code(), Some(ErrorCode::LinkUnknown));

    let (config, _dir) = new_device_config(&server.url, server.trust());
    let new = Client::link_new_device(config).await.unwrap();
    let code = new.code();
    new.cancel().await;
    let err = alice.client.link_start(&code).await.unwrap_err();
    assert_eq!(err.code(), "link_unknown", "{err:?}");

    let err = alice.client.link_start("not a code").await.unwrap_err();
    assert_eq!(err.code(), "link_bad_code", "{err:?}");
    assert_eq!(alice.client.own_devices().await.unwrap(), before);
}

/// A code the server let expire (its link timeout passed with nobody joining) is unknown.
#[tokio::test]
async fn an_expired_code_is_refused() {
    let limits = Limits {
        link_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let server = TestServer::start_with(limits).await;
    let alice = TestUser::new(&server, "Alice").await;
    let (config, _dir) = new_device_config(&server.url, server.trust());
    let mut new = Client::link_new_device(config).await.unwrap();
    let code = new.code();
    // The new device hears that its channel closed.
    let waited = tokio::time::timeout(RECV_TIMEOUT, new.wait_for_offer())
        .await
        .expect("the expiry never reached the new device");
    assert!(waited.is_err(), "an offer on an expired code: {waited:?}");
    let err = alice.client.link_start(&code).await.unwrap_err();
    assert_eq!(err.code(), "link_unknown", "{err:?}");
    assert_eq!(alice.client.own_devices().await.unwrap().devices.len(), 1);
}
