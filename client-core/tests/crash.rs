#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Crash consistency of the commit rule (issue 14), without a network: a [`ClientCore`] over a
//! [`MemoryStore`], a scripted server behind a [`Link`] and a host with a fixed clock and seeded
//! randomness (the shared harness in `support`).
//!
//! Alice's device creates a group and adds Bob; then Bob's sender key (an inbox item) and his
//! message arrive. The store fails once, at every step of that reception in turn; the device
//! is then started again over what the store kept, and resyncs. Whatever step failed, Bob's
//! message must end up stored and shown exactly once, and never shown before it was stored.
//!
//! A backlog of several sync pages, each page stored while the next is fetched, is put through
//! the same failures: whichever page's store write fails, every message is shown once, and
//! only once stored.
//!
//! A send that answers `held` (the connection dropped while the sender key went out) has its
//! message stored, whatever step of it the store fails at: it goes after a restart.
//! A text in the outbox whose post is refused as `stale_epoch` is held to be sealed again in
//! the commit that takes it out of the outbox: whatever step fails, it is sent exactly once.
//! So is a new text refused as `stale_epoch` while the device syncs to seal it again.
//!
//! The same run over a store that writes each batch one value at a time (as the client did
//! before the commit rule) must break that somewhere: that shows the test can fail.
//!
//! [`ClientCore`]: confide_client_core::ClientCore
//! [`Link`]: confide_client_core::Link

mod support;

use confide_client_core::memory::{FaultProbe, Faults};
use confide_client_core::{Event, MemoryStore};
use confide_protocol::frames::{ClientFrame, ErrorCode};
use confide_protocol::group_log::{OpBody, Role};
use confide_protocol::{GroupId, Timestamp};
use pollster::block_on;
use support::{Device, Member, Shared, at_seq};

/// What Bob writes.
const TEXT: &str = "Rough week. Glad this group exists.";

/// What one device's application saw.
#[derive(Default)]
struct Seen {
    /// Bob's messages shown, by seq.
    shown: Vec<u64>,
    /// Messages shown while the store did not hold them yet.
    shown_before_stored: Vec<u64>,
}

/// Sets up Alice's group with Bob in it on a healthy run, then delivers Bob's key and message
/// (the store's `faults` may hit there), then starts Alice's device again and resyncs. Returns
/// what the store's steps were counted to before the delivery, and what the application saw.
fn run(faults: Faults) -> (u64, u64, Seen) {
    let (store, probe) = MemoryStore::with_faults(faults);
    let mut device = Device::create(store, Shared::default());
    let mut bob = Member::new(2, "Bob");
    let group = device.group_with(&[&bob]);
    let setup_steps = probe.steps();

    // Bob, from the log the server holds: his sender key sealed to Alice, then his message,
    // both stored on the server and delivered live, as the server pushes them.
    device.member_posts(group, &mut bob, TEXT);
    let delivery_steps = probe.steps() - setup_steps;

    // A crash: the device stops and starts again over what its store kept.
    let mut again = device.restart(5);
    block_on(again.core.connect()).unwrap();
    again.drive();
    let stored = again.history(group).iter().filter(|t| *t == TEXT).count();
    assert!(stored <= 1, "Bob's message is stored {stored} times");
    let mut seen = Seen::default();
    for (event, snapshot) in again.events.lock().unwrap().iter() {
        if let Event::Message(m) = event {
            if snapshot.get("messages", &at_seq(group, m.seq.0)).is_none() {
                seen.shown_before_stored.push(m.seq.0);
            }
            seen.shown.push(m.seq.0);
        }
    }
    if stored == 0 {
        // Reported as "shown 0 times" below: it is lost on this device.
        seen.shown.clear();
    }
    (setup_steps, delivery_steps, seen)
}

/// Whether the run kept the rule: Bob's message stored and shown exactly once, and never
/// before it was stored.
fn kept(seen: &Seen) -> bool {
    seen.shown == [1] && seen.shown_before_stored.is_empty()
}

#[test]
fn a_store_failure_at_any_step_neither_loses_nor_repeats_a_received_message() {
    let (setup, delivery, seen) = run(Faults::new());
    assert!(kept(&seen), "without faults: shown {:?}", seen.shown);
    assert!(delivery > 0);
    for step in setup + 1..=setup + delivery {
        let (_, _, seen) = run(Faults::new().fail_at(step));
        assert!(
            kept(&seen),
            "store failing at step {step}: Bob's message shown {:?}, before it was stored {:?}",
            seen.shown,
            seen.shown_before_stored
        );
    }
}

#[test]
fn the_crash_test_catches_a_store_that_writes_a_step_one_value_at_a_time() {
    let faults = Faults::new().split_writes();
    let (setup, delivery, seen) = run(faults.clone());
    assert!(kept(&seen), "without a failure: shown {:?}", seen.shown);
    let broken = (setup + 1..=setup + delivery)
        .filter(|step| !kept(&run(faults.clone().fail_at(*step)).2))
        .count();
    assert!(
        broken > 0,
        "no failure among {delivery} single writes lost or repeated the message"
    );
}

/// Texts of a backlog of three sync pages (the server's page limit set to [`PAGE`]).
const PAGE: u32 = 20;

/// Alice's device over a store with `faults`, in a group where Bob wrote `3 * PAGE` messages
/// while she was away; she syncs (the store may fail there), then starts again and syncs again.
/// Returns the store's steps before the first sync, the steps that sync took, the seqs the
/// application was shown over both runs (in order) and those shown while the store did not
/// hold them, and the device's frames of the first sync, each with the store as it was.
#[allow(clippy::type_complexity)]
fn catch_up(
    faults: Faults,
) -> (
    u64,
    u64,
    Vec<u64>,
    Vec<u64>,
    Vec<(
        confide_protocol::frames::ClientFrame,
        confide_client_core::memory::Snapshot,
    )>,
) {
    let (store, probe) = MemoryStore::with_faults(faults);
    let mut device = Device::create(store, Shared::default());
    let mut bob = Member::new(2, "Bob");
    let group = device.group_with(&[&bob]);
    let (mut chain, item) = device.member_key(group, &mut bob);
    device.push_inbox(&[item]);
    device.server.lock().unwrap().page_limit = Some(PAGE);
    for i in 0..3 * PAGE {
        device.member_writes(
            group,
            &mut bob,
            &mut chain,
            &format!("while you were away {i}"),
        );
    }
    device.clear();
    let before = probe.steps();
    let _ = device.sync();
    let steps = probe.steps() - before;
    let sent = device.server.lock().unwrap().sent.clone();
    let mut shown = Vec::new();
    let mut unstored = Vec::new();
    let mut look = |device: &Device| {
        for (event, snapshot) in device.events.lock().unwrap().iter() {
            if let Event::Message(m) = event {
                if snapshot.get("messages", &at_seq(group, m.seq.0)).is_none() {
                    unstored.push(m.seq.0);
                }
                shown.push(m.seq.0);
            }
        }
    };
    look(&device);
    device.clear();
    let mut again = device.restart(5);
    block_on(again.core.connect()).unwrap();
    again.drive();
    look(&again);
    (before, steps, shown, unstored, sent)
}

/// A backlog's next sync page is asked for before the page before it is stored, so that the
/// server reads while this device writes; yet every message is stored before it is shown, and
/// a page whose store write fails — its successor already asked for — is fetched again whole
/// after a restart: nothing is lost, and nothing shown twice.
#[test]
fn a_sync_page_stored_while_the_next_is_fetched_neither_loses_nor_repeats_a_message() {
    let all: Vec<u64> = (1..=u64::from(3 * PAGE)).collect();
    let (before, steps, shown, unstored, sent) = catch_up(Faults::new());
    assert_eq!(shown, all);
    assert!(unstored.is_empty(), "shown before stored: {unstored:?}");
    // The second page was asked for after the first page's last message, before the store
    // held it.
    let (_, when) = sent
        .iter()
        .find(|(frame, _)| {
            matches!(frame, confide_protocol::frames::ClientFrame::Sync { after_seq, .. }
                if after_seq.0 >= u64::from(PAGE))
        })
        .expect("a second page was asked for");
    assert!(when.get("messages", &at_seq_of(&sent, PAGE)).is_none());
    // But a page is stored whole before the reply after it is handled: when page k + 2 is
    // asked for (its request goes out as page k + 1 is handled), the store holds page k.
    let mut checked = 0;
    for (frame, when) in &sent {
        if let confide_protocol::frames::ClientFrame::Sync { after_seq, .. } = frame
            && let Some(stored_up_to) = after_seq.0.checked_sub(u64::from(PAGE))
        {
            for seq in 1..=stored_up_to {
                let seq = u32::try_from(seq).unwrap();
                assert!(
                    when.get("messages", &at_seq_of(&sent, seq)).is_some(),
                    "message {seq} not stored when the page after {} was asked for",
                    after_seq.0
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= PAGE, "a third page was asked for");
    for step in before + 1..=before + steps {
        let (_, _, shown, unstored, _) = catch_up(Faults::new().fail_at(step));
        assert_eq!(shown, all, "store failing at step {step}");
        assert!(
            unstored.is_empty(),
            "store failing at step {step}: {unstored:?}"
        );
    }
}

/// The `messages` key of message `seq` in the group the sync frames in `sent` name.
fn at_seq_of(
    sent: &[(
        confide_protocol::frames::ClientFrame,
        confide_client_core::memory::Snapshot,
    )],
    seq: u32,
) -> Vec<u8> {
    let group = sent
        .iter()
        .find_map(|(frame, _)| match frame {
            confide_protocol::frames::ClientFrame::Sync { group, .. } => Some(*group),
            _ => None,
        })
        .expect("a sync frame");
    at_seq(group, u64::from(seq))
}

/// What a send run gives.
struct SendRun {
    /// The store's steps before the send.
    setup_steps: u64,
    /// The steps the send took.
    send_steps: u64,
    /// What the send answered: the seq, or its error's code.
    answered: Result<u64, String>,
    /// The texts reported sent: after a restart, and before it too unless the run cleared them.
    sent: Vec<String>,
}

/// Alice's device over a store with `faults`, in a group with Bob, is put in a situation by
/// `prepare`, then sends [`TEXT`] (the store may fail there). Then the device starts again
/// over what its store kept and connects.
fn send_run(faults: Faults, prepare: fn(&mut Device, GroupId)) -> SendRun {
    let (store, probe) = MemoryStore::with_faults(faults);
    let mut device = Device::create(store, Shared::default());
    let bob = Member::new(2, "Bob");
    let group = device.group_with(&[&bob]);
    prepare(&mut device, group);
    let setup_steps = probe.steps();
    let answered = device.send(group, TEXT).map_err(|e| e.code().to_string());
    let send_steps = probe.steps() - setup_steps;

    device.answer(None);
    device.clear();
    let sent = sent_texts(&restarted(device));
    SendRun {
        setup_steps,
        send_steps,
        answered,
        sent,
    }
}

/// The device started again over what its store kept, and connected as its driver would.
fn restarted(device: Device) -> Device {
    let mut again = device.restart(5);
    block_on(again.core.connect()).unwrap();
    block_on(again.core.after_connect());
    again.drive();
    again
}

/// The texts the application was told were sent, in order.
fn sent_texts(device: &Device) -> Vec<String> {
    device.events_as(|e| match e {
        Event::Sent(m) => Some(m.text),
        _ => None,
    })
}

/// Her sender key is yet to go out, and the connection drops while it goes (the server never
/// answers it).
fn drop_the_sender_key(device: &mut Device, _: GroupId) {
    device.answer(Some(Box::new(|frame| {
        matches!(frame, ClientFrame::SendSealed { .. }).then(Vec::new)
    })));
}

/// She is offline and wrote "first" (held): the next message waits behind it.
fn hold_one_first(device: &mut Device, group: GroupId) {
    block_on(device.core.connection_lost("the test went offline".into()));
    device.answer(Some(support::silence()));
    assert_eq!(device.send(group, "first").unwrap_err().code(), "held");
}

/// Runs [`send_run`] with `prepare`, without faults, then with the store failing at each step
/// of the send in turn: whenever the send answered `held`, its message goes after a restart,
/// exactly once, after `before`; whenever it answered with the store's error, only `before`
/// goes.
fn held_is_a_promise(prepare: fn(&mut Device, GroupId), before: &[&str]) {
    let clean = send_run(Faults::new(), prepare);
    let with_it: Vec<&str> = before.iter().copied().chain([TEXT]).collect();
    assert_eq!(clean.answered, Err("held".to_string()));
    assert_eq!(clean.sent, with_it);
    assert!(clean.send_steps > 0);
    let first = clean.setup_steps + 1;
    for step in first..first + clean.send_steps {
        let SendRun { answered, sent, .. } = send_run(Faults::new().fail_at(step), prepare);
        match answered.as_ref().map_err(String::as_str) {
            Err("held") => assert_eq!(sent, with_it, "store failing at step {step}"),
            Err("store") => assert_eq!(sent, before, "store failing at step {step}"),
            other => panic!("store failing at step {step}: the send answered {other:?}"),
        }
    }
}

// `held` is a promise: the message is in the store and goes once connected, also when the
// connection dropped while its sender key went out.
#[test]
fn a_send_that_answers_held_has_its_message_stored_whatever_step_fails() {
    held_is_a_promise(drop_the_sender_key, &[]);
}

// The same for a message that waits behind one held earlier (the group's held path).
#[test]
fn a_send_held_behind_another_has_its_message_stored_whatever_step_fails() {
    held_is_a_promise(hold_one_first, &["first"]);
}

/// What a reseal run gives.
struct ResealRun {
    /// The store's steps before the reconnection.
    setup_steps: u64,
    /// The steps from the reconnection until the device went quiet.
    reconnect_steps: u64,
    /// What the reconnection answered: whether it stood when it said so, or its error's code.
    connected: Result<bool, String>,
    /// The posts the device made in all, refused or not.
    posts: usize,
    /// The messages the server stored.
    stored: usize,
    /// The texts reported sent, before and after a restart.
    sent: Vec<String>,
    /// How many `SendFailed` the application heard.
    failed: usize,
}

/// Alice writes [`TEXT`] and it does not go: `start` leaves it in the outbox or held, and the
/// device offline. Connected again, the server refuses its post once as `stale_epoch` (sealed
/// for an epoch that has ended), so the device holds it, to be sealed again; the store may
/// fail there (`faults`), and with `fail_held_reads` every read of the held table fails from
/// that refusal on. Then the device starts again over what its store kept, and connects.
fn reseal_run(faults: Faults, start: fn(&mut Device, GroupId), fail_held_reads: bool) -> ResealRun {
    let (store, probe) = MemoryStore::with_faults(faults);
    let mut device = Device::create(store, Shared::default());
    let bob = Member::new(2, "Bob");
    let group = device.group_with(&[&bob]);
    start(&mut device, group);
    device.answer(Some(first_post_stale(&probe, fail_held_reads)));
    let setup_steps = probe.steps();
    let connected = block_on(device.core.connect())
        .map(|()| device.core.is_connected())
        .map_err(|e| e.code().to_string());
    if connected.is_ok() {
        block_on(device.core.after_connect());
        device.drive();
    }
    let reconnect_steps = probe.steps() - setup_steps;

    probe.fail_reads_of(None);
    device.answer(None);
    let again = restarted(device);
    let server = again.server.lock().unwrap();
    let posts = server
        .sent
        .iter()
        .filter(|(frame, _)| matches!(frame, ClientFrame::Post { .. }))
        .count();
    let stored = server.logs[&group].messages.len();
    drop(server);
    ResealRun {
        setup_steps,
        reconnect_steps,
        connected,
        posts,
        stored,
        sent: sent_texts(&again),
        failed: again
            .events_as(|e| matches!(e, Event::SendFailed { .. }).then_some(()))
            .len(),
    }
}

/// Her post goes into the outbox and the server does not answer it (`pending`); she goes
/// offline.
fn post_unanswered(device: &mut Device, group: GroupId) {
    device.answer(Some(Box::new(|frame| {
        matches!(frame, ClientFrame::Post { .. }).then(Vec::new)
    })));
    assert_eq!(device.send(group, TEXT).unwrap_err().code(), "pending");
    block_on(device.core.connection_lost("the test went offline".into()));
}

/// She writes it offline (`held`).
fn written_offline(device: &mut Device, group: GroupId) {
    block_on(device.core.connection_lost("the test went offline".into()));
    device.answer(Some(support::silence()));
    assert_eq!(device.send(group, TEXT).unwrap_err().code(), "held");
}

/// The text was sent exactly once in the end, and never reported not sent.
fn sent_once(run: &ResealRun, context: &str) {
    assert_eq!(run.sent, [TEXT], "{context}");
    assert_eq!(run.stored, 1, "{context}: stored");
    assert_eq!(run.failed, 0, "{context}: reported not sent");
}

// A text in the outbox that must be sealed again (its epoch ended) is held in the commit that
// takes it out of the outbox: whatever step of that fails, it is neither lost, nor reported
// not sent, nor sent twice.
#[test]
fn a_text_sealed_again_after_a_stale_epoch_survives_a_store_failure_at_any_step() {
    let clean = reseal_run(Faults::new(), post_unanswered, false);
    sent_once(&clean, "no failure");
    assert_eq!(clean.connected, Ok(true));
    // Unanswered, refused as stale, sealed again and posted.
    assert_eq!(clean.posts, 3);
    assert!(clean.reconnect_steps > 0);
    let first = clean.setup_steps + 1;
    for step in first..first + clean.reconnect_steps {
        let run = reseal_run(Faults::new().fail_at(step), post_unanswered, false);
        sent_once(&run, &format!("store failing at step {step}"));
    }
}

// The same when it is a read of the held table that fails as the text is held again, for a
// text from the outbox and for one held since it was written offline: the step is undone, the
// outbox copy's removal with it, and nothing is reported not sent.
#[test]
fn a_text_sealed_again_after_a_stale_epoch_survives_a_failing_read_of_the_held_table() {
    // A connection that a store failure ended while it was being made is not reported as
    // made, and the error says why: the caller backs off before dialling again, instead of
    // dialling straight into the same failure. (A text written offline is held again after
    // connecting: the connection stood until then.)
    let store_failed = Err("store".to_string());
    for (start, which, connected) in [
        (
            post_unanswered as fn(&mut Device, GroupId),
            "from the outbox",
            store_failed,
        ),
        (written_offline, "held since written offline", Ok(true)),
    ] {
        let run = reseal_run(Faults::new(), start, true);
        sent_once(&run, which);
        assert_eq!(run.connected, connected, "{which}");
    }
}

/// A scripted answer: the first post is refused as `stale_epoch`; with `fail_held_reads`,
/// every read of the held table fails from that refusal on.
fn first_post_stale(probe: &FaultProbe, fail_held_reads: bool) -> support::Answer {
    let mut first = true;
    let reads = probe.clone();
    Box::new(move |frame| {
        if !(matches!(frame, ClientFrame::Post { .. }) && std::mem::take(&mut first)) {
            return None;
        }
        if fail_held_reads {
            reads.fail_reads_of(Some("held"));
        }
        Some(support::refusal(frame, ErrorCode::StaleEpoch))
    })
}

/// Alice's "first" is refused for a while and waits in the outbox; a minute later she sends
/// "second", and posting "first" before it is refused as `stale_epoch` (the store may fail
/// there, `faults`). The device starts again, and "first" is refused as stale once more. Gives
/// the store's steps before the second send, the steps it took, what it answered, and the
/// texts reported sent in all, in order.
fn behind_run(faults: Faults) -> SendRun {
    let (store, probe) = MemoryStore::with_faults(faults);
    let mut device = Device::create(store, Shared::default());
    let bob = Member::new(2, "Bob");
    let group = device.group_with(&[&bob]);
    device.answer(Some(support::first_refused(
        ErrorCode::RateLimited,
        |frame| matches!(frame, ClientFrame::Post { .. }),
    )));
    assert_eq!(device.send(group, "first").unwrap_err().code(), "pending");
    // A minute later: the outbox's retry is due, so the send posts "first" again first.
    device.set_clock(Timestamp(device.now().0 + 60_000));
    device.answer(Some(first_post_stale(&probe, false)));
    let setup_steps = probe.steps();
    let answered = device
        .send(group, "second")
        .map_err(|e| e.code().to_string());
    let send_steps = probe.steps() - setup_steps;

    device.answer(Some(first_post_stale(&probe, false)));
    SendRun {
        setup_steps,
        send_steps,
        answered,
        sent: sent_texts(&restarted(device)),
    }
}

// A message waits behind the one before it in the outbox. When posting that one first is
// refused as stale and holding it again fails (the step undone, the connection gone), the new
// one is not sealed into the outbox after it regardless: refused as stale once more later, the
// earlier one would be sealed again behind it, and everyone would read them in the wrong order.
// Whatever step of the send the store fails at, what goes, goes in the order written.
#[test]
fn a_message_behind_the_outbox_keeps_its_place_whatever_step_fails() {
    let clean = behind_run(Faults::new());
    assert_eq!(clean.answered, Err("held".to_string()));
    assert_eq!(clean.sent, ["first", "second"]);
    let first = clean.setup_steps + 1;
    for step in first..first + clean.send_steps {
        let SendRun { answered, sent, .. } = behind_run(Faults::new().fail_at(step));
        match answered.as_ref().map_err(String::as_str) {
            Err("held" | "pending") => {
                assert_eq!(sent, ["first", "second"], "store failing at step {step}")
            }
            Err("store") => assert_eq!(sent, ["first"], "store failing at step {step}"),
            other => panic!("store failing at step {step}: the send answered {other:?}"),
        }
    }
}

/// What a run of a new text refused as stale gives.
struct StaleSendRun {
    /// The store's steps before the send.
    setup_steps: u64,
    /// The steps the send took.
    send_steps: u64,
    /// What the send answered: the seq, or its error's code.
    answered: Result<u64, String>,
    /// The epochs of the group's messages the server stored in the end.
    stored_epochs: Vec<u64>,
    /// The texts reported sent (`Sent`, for a message the send did not answer with a seq),
    /// before the restart and after it.
    reported_sent: Vec<String>,
    /// How many `SendFailed` the application heard, before the restart and after it.
    failed: usize,
}

/// Alice has sent "first" (her sender key is out); with `stale`, the server refuses her next
/// post, [`TEXT`], as `stale_epoch` once, so the device holds it, syncs and seals it again
/// (PROTOCOL.md §11.3). With `removal`, Bob has removed Carol through the server just before
/// (not yet pushed), so the sync brings a new epoch. The store may fail at a step of that send
/// (`faults`); then the device starts again over what its store kept, and connects.
fn stale_send_run(faults: Faults, stale: bool, removal: bool) -> StaleSendRun {
    let (store, probe) = MemoryStore::with_faults(faults);
    let mut device = Device::create(store, Shared::default());
    let bob = Member::new(2, "Bob");
    let carol = Member::new(4, "Carol");
    let group = device.group_with(&[&bob, &carol]);
    device.set_role(group, bob.user, Role::CoFacilitator);
    device.send(group, "first").unwrap();
    if removal {
        device.member_op(
            group,
            &bob,
            OpBody::Remove {
                user: carol.user,
                ban: false,
            },
        );
    }
    if stale {
        device.answer(Some(support::first_refused(
            ErrorCode::StaleEpoch,
            |frame| matches!(frame, ClientFrame::Post { .. }),
        )));
    }
    let setup_steps = probe.steps();
    let answered = device.send(group, TEXT).map_err(|e| e.code().to_string());
    let send_steps = probe.steps() - setup_steps;

    device.answer(None);
    let failed = |device: &Device| {
        device
            .events_as(|e| matches!(e, Event::SendFailed { .. }).then_some(()))
            .len()
    };
    let mut reported_sent = sent_texts(&device);
    let failed_before = failed(&device);
    device.clear();
    let again = restarted(device);
    reported_sent.extend(sent_texts(&again));
    let stored_epochs = again.server.lock().unwrap().logs[&group]
        .messages
        .iter()
        .map(|m| m.envelope.epoch.0)
        .collect();
    StaleSendRun {
        setup_steps,
        send_steps,
        answered,
        stored_epochs,
        reported_sent,
        failed: failed_before + failed(&again),
    }
}

// A new text refused as stale is taken out of the outbox to be sealed again after a sync. It is
// held in the commit that takes it out, so that no step of the sync and the new seal has it
// nowhere: a crash there (a store failure is one) must not lose a text the store already had.
// Whatever step fails, what the send answered is what happens: `held` (it goes once the sync
// has shown the new epoch, in the same step when nothing fails) or `pending`, and it goes once
// and is reported sent; `store`, and it never goes (the app keeps the text for the user to send
// again, so going later would send it twice). With a removal behind the refusal, it goes in the
// new epoch, never in the one Carol holds keys for.
#[test]
fn a_new_text_refused_as_stale_is_never_out_of_the_store_whatever_step_fails() {
    for removal in [false, true] {
        let clean = stale_send_run(Faults::new(), true, removal);
        assert_eq!(clean.answered, Err("held".to_string()));
        assert_eq!(clean.reported_sent, [TEXT]);
        let first_epoch = clean.stored_epochs[0];
        let resealed = first_epoch + u64::from(removal);
        assert_eq!(clean.stored_epochs, [first_epoch, resealed]);
        let first = clean.setup_steps + 1;
        for step in first..first + clean.send_steps {
            let run = stale_send_run(Faults::new().fail_at(step), true, removal);
            let context = format!(
                "removal {removal}, store failing at step {step}, the send answered {:?}",
                run.answered
            );
            assert_eq!(run.failed, 0, "{context}: reported not sent");
            match run.answered.as_ref().map_err(String::as_str) {
                Err("held" | "pending") => assert_eq!(run.reported_sent, [TEXT], "{context}"),
                Err("store") => {
                    assert_eq!(run.stored_epochs, [first_epoch], "{context}");
                    assert!(run.reported_sent.is_empty(), "{context}");
                    continue;
                }
                other => panic!("{context}: {other:?}"),
            }
            assert_eq!(run.stored_epochs, [first_epoch, resealed], "{context}");
        }
    }
}

// A send is answered with what happens to it, whatever step of it the store fails at: a seq,
// and it is stored once; `pending`, and it goes once and is reported sent; `store`, and it
// never goes. A store failure after the message was stored in the outbox (in the step that
// records the server's answer, say) used to answer `store` while the outbox copy went after
// all: the user, told it was not sent, would send it a second time.
#[test]
fn a_sends_answer_is_what_happens_to_it_whatever_step_fails() {
    let clean = stale_send_run(Faults::new(), false, false);
    assert!(clean.answered.is_ok(), "{:?}", clean.answered);
    let epoch = clean.stored_epochs[0];
    assert_eq!(clean.stored_epochs, [epoch, epoch]);
    let first = clean.setup_steps + 1;
    assert!(clean.send_steps > 1);
    for step in first..first + clean.send_steps {
        let run = stale_send_run(Faults::new().fail_at(step), false, false);
        let context = format!(
            "store failing at step {step}, the send answered {:?}",
            run.answered
        );
        assert_eq!(run.failed, 0, "{context}: reported not sent");
        match run.answered.as_ref().map_err(String::as_str) {
            Ok(_) => assert!(run.reported_sent.is_empty(), "{context}"),
            Err("pending") => assert_eq!(run.reported_sent, [TEXT], "{context}"),
            Err("store") => {
                assert_eq!(run.stored_epochs, [epoch], "{context}");
                assert!(run.reported_sent.is_empty(), "{context}");
                continue;
            }
            other => panic!("{context}: {other:?}"),
        }
        assert_eq!(run.stored_epochs, [epoch, epoch], "{context}");
    }
}
