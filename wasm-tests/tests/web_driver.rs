//! The web app's core in a real browser page (headless Chromium; `cargo xtask test` runs it):
//! two people's [`Session`]s of `confide-client-web` — each a client core under the web driver,
//! with the browser's clock and `crypto.getRandomValues` as its host — make a group, one joins
//! with the https link the web app shares, and they talk. Everything a person's app would see
//! arrives at a JavaScript callback as the camelCase objects the TypeScript types describe, and a
//! failed call rejects with `{ code, message }`.
//!
//! Between them is the in-memory relay of `confide-test-relay` (see `tests/core.rs`), wrapped
//! so that the driver can wait for what it pushes ([`PushLink`]): the relay has no way to wake
//! a waiting task, so the wrapper looks for queued frames on a short timer. Nothing asserted
//! depends on timing: each wait is for something a person would see, with a generous bound that
//! fails the test by name if it never comes.
//!
//! [`Session`]: confide_client_web::session::Session

#![cfg(target_arch = "wasm32")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use chacha20::ChaCha20Rng;
use confide_client_core::{ClientError, Link, MemoryStore, Network, Profile, TransportError};
use confide_client_web::IdbStore;
use confide_client_web::api::ConfideCore;
use confide_client_web::driver::PushLink;
use confide_client_web::dto::{
    ApiError, CreateInviteParams, GroupParams, HistoryParams, JoinOutcome, JoinParams, OpenOptions,
    SendTextParams,
};
use confide_client_web::session::Session;
use confide_protocol::frames::{ClientFrame, ServerFrame};
use confide_protocol::identity::KdfParams;
use confide_protocol::{DeviceIdentity, UserId};
use confide_test_relay::{Clock, RelayLink, RelayNet, SharedRelay};
use gloo_timers::future::TimeoutFuture;
use js_sys::{Array, Function, Object, Promise, Reflect, Uint8Array};
use rand_core::SeedableRng as _;
use tsify::Tsify as _;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast as _, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

/// The relay as the driver's network.
struct TestNet(RelayNet);

/// A connection to the relay that the driver can wait on.
struct TestLink(RelayLink);

impl Network for TestNet {
    type Link = TestLink;

    async fn dial(&mut self) -> Result<TestLink, ClientError> {
        Ok(TestLink(self.0.dial().await?))
    }
}

impl Link for TestLink {
    fn host(&self) -> &str {
        self.0.host()
    }

    async fn send(&mut self, frame: &ClientFrame) -> Result<(), TransportError> {
        self.0.send(frame).await
    }

    async fn recv(&mut self, within: Duration) -> Result<Option<ServerFrame>, TransportError> {
        self.0.recv(within).await
    }

    async fn close(self) {
        self.0.close().await
    }
}

impl PushLink for TestLink {
    /// The next frame the relay queued for this device. The relay cannot wake a task, so this
    /// looks again every few milliseconds; giving the wait up loses nothing (a frame is taken
    /// only when it is returned).
    async fn next_frame(&mut self) -> Result<ServerFrame, TransportError> {
        loop {
            if self.0.has_frames()
                && let Some(frame) = self.0.recv(Duration::ZERO).await?
            {
                return Ok(frame);
            }
            TimeoutFuture::new(5).await;
        }
    }
}

/// One person: their session, and everything their app's callback was handed.
struct Person {
    name: &'static str,
    session: Session<MemoryStore, TestNet>,
    events: Array,
    _callback: Closure<dyn FnMut(JsValue)>,
}

/// A callback that keeps every event it is handed, as an app would receive them.
fn recorder() -> (Array, Closure<dyn FnMut(JsValue)>, Function) {
    let events = Array::new();
    let kept = events.clone();
    let callback = Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
        kept.push(&event);
    });
    let function: Function = callback.as_ref().unchecked_ref::<Function>().clone();
    (events, callback, function)
}

impl Person {
    /// A new person (identity seeded with `seed`) whose session starts on the relay.
    async fn start(relay: &SharedRelay, seed: u8, name: &'static str) -> Person {
        let store = MemoryStore::new();
        let identity = DeviceIdentity::generate(&mut ChaCha20Rng::from_seed([seed; 32]));
        let profile = Profile::new(UserId([seed; 16]), name);
        confide_client_core::profile::create(&store, &identity, &profile)
            .await
            .unwrap();
        let (events, callback, function) = recorder();
        let session = Session::start(
            store,
            TestNet(RelayNet(relay.clone())),
            identity,
            profile,
            function,
        )
        .await
        .unwrap();
        Person {
            name,
            session,
            events,
            _callback: callback,
        }
    }

    /// The events of type `kind` handed to the callback so far.
    fn events_of(&self, kind: &str) -> Vec<JsValue> {
        self.events
            .iter()
            .filter(|event| field(event, "type").as_string().as_deref() == Some(kind))
            .collect()
    }

    /// The texts of the `message` events so far, in order.
    fn shown(&self) -> Vec<String> {
        self.events_of("message")
            .iter()
            .map(|event| field(&field(event, "message"), "text").as_string().unwrap())
            .collect()
    }

    /// Waits until `done` holds for this person, failing the test with `what` if it never does.
    async fn until(&self, what: &str, done: impl Fn(&Person) -> bool) {
        // 500 looks, 10 ms apart: far more than any of these steps takes (milliseconds), and
        // within the test runner's own time limit, so that a failure names what was missing.
        for _ in 0..500 {
            if done(self) {
                return;
            }
            TimeoutFuture::new(10).await;
        }
        panic!("{} never saw {what}", self.name);
    }
}

/// A member of a JavaScript object.
fn field(object: &JsValue, name: &str) -> JsValue {
    Reflect::get(object, &JsValue::from_str(name)).unwrap()
}

/// Whether a JavaScript object has a member of that name at all.
fn has(object: &JsValue, name: &str) -> bool {
    Reflect::has(object, &JsValue::from_str(name)).unwrap()
}

#[wasm_bindgen_test]
async fn two_people_make_a_group_join_by_the_web_link_and_talk_seen_through_the_callback() {
    let relay = SharedRelay::new(Clock::ticking(js_sys::Date::now() as u64));
    let alice = Person::start(&relay, 1, "Alice").await;
    let bob = Person::start(&relay, 2, "Bob").await;
    for person in [&alice, &bob] {
        person
            .until("the connection come online", |p| {
                p.events_of("connection")
                    .iter()
                    .any(|e| field(e, "state").as_string().as_deref() == Some("online"))
            })
            .await;
    }

    // Alice makes a group and an invite; Bob joins with the https link the app shares.
    let group = alice.session.create_group().await.unwrap();
    let invite = alice
        .session
        .create_invite(CreateInviteParams {
            group: group.clone(),
            requires_approval: false,
            max_uses: Some(2),
            valid_for_secs: Some(3600),
        })
        .await
        .unwrap();
    assert!(invite.invite.starts_with("confide-invite:"), "{invite:?}");
    // The moderation log shows the invite, its details a plain object as the app reads them.
    let log = alice
        .session
        .moderation_log(GroupParams {
            group: group.clone(),
        })
        .await
        .unwrap();
    let entry = log.iter().find(|e| e.action == "invite").unwrap();
    let entry = JsValue::from(entry.into_ts().unwrap());
    let details = field(&entry, "details");
    assert!(!details.is_instance_of::<js_sys::Map>(), "details is a Map");
    assert_eq!(field(&details, "max_uses").as_f64(), Some(2.0));
    let outcome = bob
        .session
        .join(JoinParams {
            invite: format!("https://confide.example/#invite={}", invite.invite),
            note: None,
        })
        .await
        .unwrap();
    assert_eq!(
        outcome,
        JoinOutcome::Joined {
            group: group.clone()
        }
    );
    // Alice's app learns of Bob's join by itself (the relay pushed the op to her driver).
    let in_group = |p: &Person| {
        p.events_of("groupChanged").iter().any(|e| {
            let change = field(e, "change");
            field(&change, "action").as_string().as_deref() == Some("join")
                && field(&change, "group").as_string().as_deref() == Some(group.as_str())
        })
    };
    alice.until("Bob join the group", in_group).await;

    // They talk; each one's words reach the other's callback.
    let welcome = "Welcome, Bob. Same time every Tuesday.";
    let sent = alice
        .session
        .send_text(SendTextParams {
            group: group.clone(),
            text: welcome.into(),
            reply_to: None,
            warnings: None,
        })
        .await
        .unwrap();
    assert_eq!(sent.text, welcome);
    assert_eq!(sent.sender_name, "Alice");
    bob.until("Alice's welcome", |p| p.shown() == [welcome])
        .await;
    let reply = "Thanks. Glad this group exists.";
    bob.session
        .send_text(SendTextParams {
            group: group.clone(),
            text: reply.into(),
            reply_to: Some(sent.id.clone()),
            warnings: None,
        })
        .await
        .unwrap();
    alice.until("Bob's reply", |p| p.shown() == [reply]).await;

    // The event as the app's JavaScript receives it: a plain object, camelCase, ids as the
    // protocol's base64 text, times as numbers.
    let event = alice.events_of("message").pop().unwrap();
    let message = field(&event, "message");
    assert_eq!(field(&message, "text").as_string().unwrap(), reply);
    assert_eq!(field(&message, "senderName").as_string().unwrap(), "Bob");
    assert_eq!(field(&message, "group").as_string().unwrap(), group);
    assert_eq!(field(&message, "replyTo").as_string().unwrap(), sent.id);
    assert!(field(&message, "sentAt").as_f64().unwrap() > 1.7e12);
    assert!(!has(&message, "sender_name") && !has(&message, "reply_to"));

    // Each one's history has both, in order.
    for person in [&alice, &bob] {
        let page = person
            .session
            .history(HistoryParams {
                group: group.clone(),
                before: None,
                limit: 50,
            })
            .await
            .unwrap();
        let texts: Vec<&str> = page.messages.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(texts, [welcome, reply], "{}'s history", person.name);
    }
    // The relay carried ciphertext only.
    assert!(
        !relay
            .lock()
            .wire
            .iter()
            .any(|frame| frame.contains("Tuesday") || frame.contains("Glad")),
        "the relay saw a text"
    );

    // Stopping a session says so, and then it takes no more commands.
    alice.session.stop().await;
    let last = alice.events.get(alice.events.length() - 1);
    assert_eq!(field(&last, "type").as_string().unwrap(), "connection");
    assert_eq!(field(&last, "state").as_string().unwrap(), "offline");
    let after = alice.session.groups().await.unwrap_err();
    assert_eq!(after.code, "closed");
}

#[wasm_bindgen_test]
async fn a_failed_call_rejects_with_a_code_and_a_message() {
    let relay = SharedRelay::new(Clock::ticking(js_sys::Date::now() as u64));
    let alice = Person::start(&relay, 3, "Alice").await;

    // The core's refusals keep their stable code, as a plain object the app can switch on.
    let unknown = GroupParams {
        group: "AAAAAAAAAAAAAAAAAAAAAA==".into(),
    };
    let refused = alice.session.members(unknown).await.unwrap_err();
    assert_eq!(refused.code, "unknown_group");
    let js = refused.clone().into_js();
    assert_eq!(field(&js, "code").as_string().unwrap(), "unknown_group");
    assert_eq!(field(&js, "message").as_string().unwrap(), refused.message);
    assert!(!refused.message.is_empty());
    assert!(!has(&js, "retryAfterMs"), "no retry time was given");

    // A malformed id and an empty text are refused before anything is done.
    let group = alice.session.create_group().await.unwrap();
    let bad_id = alice
        .session
        .send_text(SendTextParams {
            group: "not an id".into(),
            text: "hello".into(),
            reply_to: None,
            warnings: None,
        })
        .await
        .unwrap_err();
    assert_eq!(bad_id.code, "invalid", "{bad_id:?}");
    let empty = alice
        .session
        .send_text(SendTextParams {
            group,
            text: "   ".into(),
            reply_to: None,
            warnings: None,
        })
        .await
        .unwrap_err();
    assert_eq!(empty.code, "invalid", "{empty:?}");

    // Through the exported class, as the worker calls it: a call with no profile rejects its
    // promise with `{ code: "no_profile", message }`.
    let (_events, _callback, function) = recorder();
    let options = OpenOptions {
        db_name: "confide-web-driver-test".into(),
        server_url: "wss://confide.example/".into(),
    };
    let core = ConfideCore::open(options.into_ts().unwrap(), function.unchecked_into())
        .await
        .unwrap();
    let core = JsValue::from(core);
    let state: Function = field(&core, "profileState").dyn_into().unwrap();
    assert_eq!(state.call0(&core).unwrap().as_string().unwrap(), "none");
    let groups: Function = field(&core, "groups").dyn_into().unwrap();
    let promise: Promise = groups.call0(&core).unwrap().dyn_into().unwrap();
    let rejection = JsFuture::from(promise).await.unwrap_err();
    let error: ApiError = serde_wasm_bindgen::from_value(rejection.clone()).unwrap();
    assert_eq!(error.code, "no_profile");
    assert!(!error.message.is_empty());
    assert!(!has(&rejection, "retryAfterMs"));
    // A server URL that is neither wss:// nor loopback is refused when opening.
    let plaintext = OpenOptions {
        db_name: "confide-web-driver-test-2".into(),
        server_url: "ws://confide.example/".into(),
    };
    let (_events, _callback, function) = recorder();
    let refused = ConfideCore::open(plaintext.into_ts().unwrap(), function.unchecked_into())
        .await
        .err()
        .unwrap();
    assert_eq!(field(&refused, "code").as_string().unwrap(), "unreachable");
}

/// Calls `method` of the exported object `core` as JavaScript would, with `params` if given,
/// and awaits its promise.
async fn call(core: &JsValue, method: &str, params: Option<&JsValue>) -> Result<JsValue, JsValue> {
    let function: Function = field(core, method).dyn_into().unwrap();
    let returned = match params {
        Some(params) => function.call1(core, params),
        None => function.call0(core),
    }?;
    JsFuture::from(returned.dyn_into::<Promise>().unwrap()).await
}

/// `{ passphrase }` as the worker passes it: the text's UTF-8 bytes.
fn passphrase_params(text: &str) -> (JsValue, Uint8Array) {
    let bytes = Uint8Array::from(text.as_bytes());
    let params = Object::new();
    Reflect::set(&params, &"passphrase".into(), &bytes).unwrap();
    (params.into(), bytes)
}

#[wasm_bindgen_test]
async fn a_profile_in_indexeddb_is_locked_unlocked_with_its_passphrase_and_forgotten() {
    // A profile made as `createProfile` makes one (cheap key derivation: this is a test).
    let db = "confide-web-driver-lifecycle";
    IdbStore::delete_database(db).await.unwrap();
    let store = IdbStore::create(
        db,
        b"correct horse battery staple",
        KdfParams::INSECURE_FOR_TESTS,
    )
    .await
    .unwrap();
    let identity = DeviceIdentity::generate(&mut ChaCha20Rng::from_seed([7; 32]));
    let profile = Profile::new(UserId([7; 16]), "Dana");
    confide_client_core::profile::create(&store, &identity, &profile)
        .await
        .unwrap();
    store.close();
    drop(store);

    let (events, _callback, function) = recorder();
    let options = OpenOptions {
        db_name: db.into(),
        // Nothing listens there: the core keeps trying in the background, which is fine.
        server_url: "wss://127.0.0.1:9/".into(),
    };
    let core = ConfideCore::open(options.into_ts().unwrap(), function.unchecked_into())
        .await
        .unwrap();
    let core = JsValue::from(core);
    let state = |core: &JsValue| {
        let function: Function = field(core, "profileState").dyn_into().unwrap();
        function.call0(core).unwrap().as_string().unwrap()
    };
    assert_eq!(state(&core), "locked");

    // A wrong passphrase is refused, and its bytes are zeroed all the same.
    let (wrong, wrong_bytes) = passphrase_params("correct horse battery stapler");
    let refused = call(&core, "unlock", Some(&wrong)).await.unwrap_err();
    assert_eq!(
        field(&refused, "code").as_string().unwrap(),
        "wrong_passphrase"
    );
    assert!(wrong_bytes.to_vec().iter().all(|b| *b == 0));
    assert_eq!(state(&core), "locked");

    let (right, right_bytes) = passphrase_params("correct horse battery staple");
    let me = call(&core, "unlock", Some(&right)).await.unwrap();
    assert!(right_bytes.to_vec().iter().all(|b| *b == 0));
    assert_eq!(field(&me, "displayName").as_string().unwrap(), "Dana");
    assert_eq!(
        field(&me, "user").as_string().unwrap(),
        UserId([7; 16]).to_string()
    );
    assert_eq!(state(&core), "unlocked");
    let groups = call(&core, "groups", None).await.unwrap();
    assert_eq!(Array::from(&groups).length(), 0);
    // The driver says it is trying to reach the server.
    assert!(events.iter().any(|e| {
        field(&e, "type").as_string().as_deref() == Some("connection")
            && field(&e, "state").as_string().as_deref() == Some("connecting")
    }));

    // Locked: the core is gone, calls are refused, and the passphrase opens it again.
    call(&core, "lock", None).await.unwrap();
    assert_eq!(state(&core), "locked");
    let locked = call(&core, "groups", None).await.unwrap_err();
    assert_eq!(
        field(&locked, "code").as_string().unwrap(),
        "profile_locked"
    );
    let (again, _) = passphrase_params("correct horse battery staple");
    call(&core, "unlock", Some(&again)).await.unwrap();
    assert_eq!(state(&core), "unlocked");

    // Forgotten: the database is gone; the browser holds no profile any more.
    call(&core, "forget", None).await.unwrap();
    assert_eq!(state(&core), "none");
    assert!(!IdbStore::exists(db).await.unwrap());
    let gone = call(&core, "groups", None).await.unwrap_err();
    assert_eq!(field(&gone, "code").as_string().unwrap(), "no_profile");
}

#[wasm_bindgen_test]
fn someone_elses_text_is_made_inert_for_display() {
    use confide_client_web::api::sanitize_for_display;
    assert_eq!(sanitize_for_display("abc\u{202e}fed"), "abc\u{fffd}fed");
    assert_eq!(sanitize_for_display("Al\u{200b}ice"), "Al\u{fffd}ice");
    assert_eq!(sanitize_for_display("\u{1b}[2Jhi"), "\u{fffd}[2Jhi");
    assert_eq!(sanitize_for_display("two\r\nlines"), "two\nlines");
    let family = "👩\u{200d}👧 ça va";
    assert_eq!(sanitize_for_display(family), family);
}

/// A hostile member signs a message with `sentAt = u64::MAX` and reports one with
/// `seq = reportedAt = u64::MAX` (review H1): the history page, the facilitator queue and the
/// events that carry them still reach JavaScript, the huge numbers read as
/// `Number.MAX_SAFE_INTEGER`, and the ordinary items next to them are untouched.
#[wasm_bindgen_test]
fn numbers_above_2_pow_53_cross_to_javascript_clamped_instead_of_failing() {
    use confide_client_web::dto::{ChatMessage, CoreEvent, FacilitatorItem, HistoryPage};
    use confide_client_web::dto::{QueueItem, ReportInfo};
    const MAX_SAFE: f64 = 9_007_199_254_740_991.0;
    let message = |seq: u64, sent_at: u64, text: &str| ChatMessage {
        group: "g".into(),
        seq,
        number: seq,
        id: format!("m{seq}"),
        sender: "u".into(),
        sender_device: "d".into(),
        sender_name: "Sam".into(),
        sent_at,
        received_at: 1_700_000_000_000,
        text: text.into(),
        reply_to: None,
        warnings: Vec::new(),
        hidden: false,
        round: None,
    };
    let page = HistoryPage {
        messages: vec![
            message(1, 1_700_000_000_000, "hello"),
            message(2, u64::MAX, "from the far future"),
        ],
    };
    let page = JsValue::from(page.into_ts().expect("the page crosses"));
    let messages: Array = field(&page, "messages").into();
    assert_eq!(messages.length(), 2);
    assert_eq!(field(&messages.get(0), "sentAt").as_f64(), Some(1.7e12));
    assert_eq!(field(&messages.get(1), "sentAt").as_f64(), Some(MAX_SAFE));
    assert_eq!(
        field(&messages.get(1), "text").as_string().as_deref(),
        Some("from the far future")
    );

    let report = ReportInfo {
        group: "g".into(),
        seq: u64::MAX,
        message: "m1".into(),
        offender: "u".into(),
        offender_name: "Sam".into(),
        reporter: "r".into(),
        reporter_name: "Kim".into(),
        text: "hello".into(),
        reason: "spam".into(),
        reported_at: u64::MAX,
    };
    let item = QueueItem {
        id: "q1".into(),
        item: FacilitatorItem::Report {
            report: report.clone(),
        },
    };
    let item = JsValue::from(item.into_ts().expect("the queue item crosses"));
    let crossed = field(&field(&item, "item"), "report");
    assert_eq!(field(&crossed, "seq").as_f64(), Some(MAX_SAFE));
    assert_eq!(field(&crossed, "reportedAt").as_f64(), Some(MAX_SAFE));
    assert_eq!(field(&item, "id").as_string().as_deref(), Some("q1"));

    // The events that carry them are delivered too, not dropped.
    for event in [
        CoreEvent::Message {
            message: message(3, u64::MAX, "again"),
        },
        CoreEvent::Report { report },
    ] {
        let value = event.into_js().expect("the event crosses");
        assert!(field(&value, "type").is_string());
    }
}

/// `createProfile` with a display name that is not a string rejects as `invalid`, and the
/// caller's passphrase bytes are zeroed all the same (review L6).
#[wasm_bindgen_test]
async fn the_passphrase_is_zeroed_even_when_other_parameters_are_invalid() {
    let db = "confide-web-driver-bad-params";
    IdbStore::delete_database(db).await.unwrap();
    let (_events, _callback, function) = recorder();
    let options = OpenOptions {
        db_name: db.into(),
        server_url: "wss://127.0.0.1:9/".into(),
    };
    let core = ConfideCore::open(options.into_ts().unwrap(), function.unchecked_into())
        .await
        .unwrap();
    let core = JsValue::from(core);
    let (params, bytes) = passphrase_params("correct horse battery staple");
    Reflect::set(&params, &"displayName".into(), &JsValue::from(42)).unwrap();
    let refused = call(&core, "createProfile", Some(&params))
        .await
        .unwrap_err();
    assert_eq!(
        field(&refused, "code").as_string().as_deref(),
        Some("invalid")
    );
    assert!(
        bytes.to_vec().iter().all(|&b| b == 0),
        "the passphrase was left in the caller's buffer"
    );
    IdbStore::delete_database(db).await.unwrap();
}

/// A server's websocket message is measured while still a JavaScript string, and one over the
/// frame limit is refused before it is copied into wasm memory; the frames waiting to be
/// handled are bounded in number and bytes (review L2).
#[wasm_bindgen_test]
fn oversized_messages_and_floods_from_the_server_are_refused() {
    use confide_client_web::link::{Backlog, MAX_QUEUED_FRAMES, Refused, text_of};
    use confide_protocol::frames::DEFAULT_MAX_SERVER_FRAME_BYTES;
    assert_eq!(text_of(&JsValue::from_str("{}")), Ok("{}".to_string()));
    assert_eq!(
        text_of(&js_sys::ArrayBuffer::new(4).into()),
        Err(Refused::NotText)
    );
    let huge = js_sys::JsString::from("x").repeat(DEFAULT_MAX_SERVER_FRAME_BYTES as i32 + 1);
    assert_eq!(text_of(&huge.into()), Err(Refused::TooLarge));
    let at_limit = js_sys::JsString::from("x").repeat(DEFAULT_MAX_SERVER_FRAME_BYTES as i32);
    assert_eq!(
        text_of(&at_limit.into()).map(|t| t.len()),
        Ok(DEFAULT_MAX_SERVER_FRAME_BYTES)
    );

    let mut backlog = Backlog::default();
    for _ in 0..MAX_QUEUED_FRAMES {
        assert!(backlog.admit(10));
    }
    assert!(!backlog.admit(10), "a frame past the bound was queued");
    backlog.release(10);
    assert!(
        !backlog.admit(10),
        "taken again after the connection was to be dropped"
    );
    let mut backlog = Backlog::default();
    assert!(!backlog.admit(usize::MAX), "bytes are bounded too");
}

/// A network whose connection attempt never ends (a server that stalls the handshake).
struct StalledNet;

impl Network for StalledNet {
    type Link = TestLink;

    async fn dial(&mut self) -> Result<TestLink, ClientError> {
        std::future::pending().await
    }
}

/// "Lock now" while the driver is stuck connecting: the lock does not wait for the connection
/// (review L3). The core, with its keys, is dropped at once, and the session takes no more
/// commands.
#[wasm_bindgen_test]
async fn stopping_does_not_wait_behind_a_stalled_connect() {
    let store = MemoryStore::new();
    let identity = DeviceIdentity::generate(&mut ChaCha20Rng::from_seed([9; 32]));
    let profile = Profile::new(UserId([9; 16]), "Eli");
    confide_client_core::profile::create(&store, &identity, &profile)
        .await
        .unwrap();
    let (events, _callback, function) = recorder();
    let session = std::rc::Rc::new(
        Session::start(store, StalledNet, identity, profile, function)
            .await
            .unwrap(),
    );
    // Let the driver begin its connection attempt.
    TimeoutFuture::new(50).await;
    let stopped = std::rc::Rc::new(std::cell::Cell::new(false));
    {
        let (session, stopped) = (session.clone(), stopped.clone());
        wasm_bindgen_futures::spawn_local(async move {
            session.stop().await;
            stopped.set(true);
        });
    }
    // 1,000 looks, 10 ms apart: far longer than stopping takes; the stalled connect would hold
    // it forever.
    for _ in 0..1000 {
        if stopped.get() {
            break;
        }
        TimeoutFuture::new(10).await;
    }
    assert!(stopped.get(), "the lock waited for the connection");
    let last = events.get(events.length() - 1);
    assert_eq!(
        field(&last, "state").as_string().as_deref(),
        Some("offline")
    );
    assert_eq!(session.groups().await.unwrap_err().code, "closed");
}
