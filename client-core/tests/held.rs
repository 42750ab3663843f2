#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! PROTOCOL.md §11.13, what the user wrote offline and where it goes: a held message keeps the
//! group's epoch it was written in; when people joined since, it is not sent by itself (the
//! user is asked, and sends it anyway or discards it), while a removal alone does not stop it;
//! the group's later held messages wait behind it; `held` lists them all by id. And §11.1's
//! order: a held message that meets a failed reconnect stops the rest, which go later in the
//! order they were written. A connection lost while a new message's sender key or sync went out
//! keeps the message too.

mod support;

use confide_client_core::{Event, HeldMessage};
use confide_protocol::frames::ClientFrame;
use confide_protocol::group_log::{OpBody, Role};
use confide_protocol::{GroupId, Timestamp};
use pollster::block_on;
use support::{Device, Member, alice_and_bob, silence};

/// The connection drops and the server cannot be reached: every connect attempt times out.
fn go_offline(device: &mut Device) {
    block_on(device.core.connection_lost("the test went offline".into()));
    device.answer(Some(silence()));
}

/// The server answers again: the device reconnects as its driver would.
fn come_back(device: &mut Device) {
    device.answer(None);
    block_on(device.core.connect()).unwrap();
    block_on(device.core.after_connect());
    device.drive();
}

/// What the core lists as waiting to be sent in `group`.
fn held(device: &Device, group: GroupId) -> Vec<HeldMessage> {
    block_on(device.core.held(group)).unwrap()
}

/// The texts the application was told were sent, in order.
fn sent(device: &Device) -> Vec<String> {
    device.events_as(|e| match e {
        Event::Sent(m) => Some(m.text),
        _ => None,
    })
}

/// Each `HeldNeedsConfirm` said: the ids and the names of who joined.
fn asked(device: &Device) -> Vec<(confide_client_core::HeldId, Vec<String>)> {
    device.events_as(|e| match e {
        Event::HeldNeedsConfirm { id, added, .. } => {
            Some((id, added.into_iter().map(|a| a.display_name).collect()))
        }
        _ => None,
    })
}

/// Alice and Bob's group, with Bob a co-facilitator (so that he can add and remove people
/// while Alice is offline), and Carol in it too when `with_carol`.
fn group(with_carol: bool) -> (Device, GroupId, Member, Member) {
    let (mut device, group, bob, _) = alice_and_bob();
    let carol = Member::new(4, "Carol");
    if with_carol {
        device.append(group, support::add(carol.entry()));
    }
    device.set_role(group, bob.user, Role::CoFacilitator);
    device.clear();
    (device, group, bob, carol)
}

#[test]
fn a_message_written_offline_is_not_sent_to_people_added_since_without_asking() {
    let (mut device, group, bob, _) = group(false);
    go_offline(&mut device);
    assert_eq!(
        device.send(group, "what I said").unwrap_err().code(),
        "held"
    );
    let listed = held(&device, group);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].text, "what I said");
    assert!(!listed[0].needs_confirm && !listed[0].sealed);
    assert!(
        device
            .events()
            .iter()
            .any(|e| matches!(e, Event::HeldChanged { group: g } if *g == group)),
        "the list of waiting messages changed"
    );
    // Meanwhile Bob adds Eve.
    let eve = Member::new(5, "Eve");
    device.member_adds(group, &bob, eve.entry());
    come_back(&mut device);

    assert_eq!(device.posted().len(), 0, "nothing sealed for Eve");
    assert_eq!(sent(&device), Vec::<String>::new());
    let id = listed[0].id;
    assert_eq!(asked(&device), [(id, vec!["Eve".to_string()])]);
    let listed = held(&device, group);
    assert_eq!(listed.len(), 1);
    assert!(listed[0].needs_confirm);
    assert_eq!(listed[0].added.len(), 1);
    assert_eq!(listed[0].added[0].user, eve.user);
    assert_eq!(listed[0].added[0].display_name, "Eve");

    // Another attempt (a retry, a new connection) does not ask again in the same epoch.
    block_on(device.core.retry_now());
    device.drive();
    assert_eq!(asked(&device).len(), 1);
    assert_eq!(device.posted().len(), 0);
}

#[test]
fn sent_anyway_it_goes_in_the_current_epoch_to_everyone_now_there() {
    let (mut device, group, bob, _) = group(false);
    go_offline(&mut device);
    device.send(group, "before Eve").unwrap_err();
    device.member_adds(group, &bob, Member::new(5, "Eve").entry());
    come_back(&mut device);
    let shown = &held(&device, group)[0];
    let id = shown.id;

    block_on(device.core.send_held_anyway(group, id, shown.epoch)).unwrap();
    device.drive();
    assert_eq!(sent(&device), ["before Eve"]);
    let posted = device.posted();
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0].epoch, device.state(group).epoch());
    assert!(held(&device, group).is_empty());
    // Gone: nothing left to send or discard.
    assert_eq!(
        block_on(device.core.discard_held(group, id))
            .unwrap_err()
            .code(),
        "not_found"
    );
}

#[test]
fn discarded_it_is_never_sent_and_later_ones_go() {
    let (mut device, group, bob, _) = group(false);
    go_offline(&mut device);
    device.send(group, "never mind").unwrap_err();
    device.member_adds(group, &bob, Member::new(5, "Eve").entry());
    come_back(&mut device);
    // Written online after Eve joined, but behind the first: it waits too, in order.
    assert_eq!(device.send(group, "hello Eve").unwrap_err().code(), "held");
    assert_eq!(device.posted().len(), 0);
    let listed = held(&device, group);
    assert_eq!(listed.len(), 2);
    assert!(listed[0].needs_confirm && !listed[1].needs_confirm);
    assert!(listed[1].behind_earlier);

    block_on(device.core.discard_held(group, listed[0].id)).unwrap();
    device.drive();
    assert_eq!(sent(&device), ["hello Eve"]);
    assert_eq!(device.posted().len(), 1);
    assert!(held(&device, group).is_empty());
    assert!(!device.history(group).contains(&"never mind".to_string()));
}

#[test]
fn a_message_waiting_for_the_user_keeps_later_ones_behind_it() {
    let (mut device, group, bob, _) = group(false);
    go_offline(&mut device);
    device.send(group, "one").unwrap_err();
    device.member_adds(group, &bob, Member::new(5, "Eve").entry());
    come_back(&mut device);
    device.send(group, "two").unwrap_err();
    device.send(group, "three").unwrap_err();
    assert_eq!(device.posted().len(), 0, "nothing goes before the first");

    let first = &held(&device, group)[0];
    block_on(device.core.send_held_anyway(group, first.id, first.epoch)).unwrap();
    device.drive();
    assert_eq!(sent(&device), ["one", "two", "three"]);
    let seqs: Vec<u64> = device.events_as(|e| match e {
        Event::Sent(m) => Some(m.seq.0),
        _ => None,
    });
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
}

// Not only offline: a post the server refuses as stale, whose sync shows that someone was
// added before it was written but after this device last looked, waits the same way.
#[test]
fn a_post_that_finds_people_added_meanwhile_waits_for_the_user() {
    let (mut device, group, bob, _) = group(false);
    device.send(group, "first").unwrap();
    device.member_adds(group, &bob, Member::new(5, "Eve").entry());
    let mut first = true;
    device.answer(Some(support::refuse(
        confide_protocol::frames::ErrorCode::StaleEpoch,
        move |frame| matches!(frame, ClientFrame::Post { .. }) && std::mem::take(&mut first),
    )));
    device.clear();
    assert_eq!(device.send(group, "second").unwrap_err().code(), "held");
    assert_eq!(device.posted().len(), 1, "only the refused post");
    let listed = held(&device, group);
    assert_eq!(listed.len(), 1);
    assert!(listed[0].needs_confirm);
    assert_eq!(asked(&device), [(listed[0].id, vec!["Eve".to_string()])]);
}

#[test]
fn a_removal_alone_does_not_stop_a_held_message() {
    let (mut device, group, bob, carol) = group(true);
    go_offline(&mut device);
    device.send(group, "still here").unwrap_err();
    let before = device.state(group).epoch();
    device.member_op(
        group,
        &bob,
        OpBody::Remove {
            user: carol.user,
            ban: false,
        },
    );
    come_back(&mut device);
    assert_eq!(asked(&device), []);
    assert_eq!(sent(&device), ["still here"]);
    let posted = device.posted();
    assert_eq!(posted.len(), 1);
    assert!(
        posted[0].epoch > before,
        "sealed in the epoch without Carol"
    );
}

// The fix of the second review (§11.1): a held message that meets a failed connect stops
// `process_held`, so that the rest are not tried one connect each and do not overtake it.
#[test]
fn a_held_message_that_meets_a_failed_reconnect_stops_the_rest_which_keep_their_order() {
    let (mut device, group, _, _) = group(false);
    go_offline(&mut device);
    for words in ["a", "b", "c"] {
        assert_eq!(device.send(group, words).unwrap_err().code(), "held");
    }
    device.clear();
    // Back: the first post gets no answer (the connection drops, "a" stays in the outbox), and
    // the next connect fails; after that the server answers again.
    let mut post_silenced = false;
    let mut auth_silenced = false;
    device.answer(Some(Box::new(move |frame| match frame {
        ClientFrame::Post { .. } if !post_silenced => {
            post_silenced = true;
            Some(Vec::new())
        }
        ClientFrame::Authenticate { .. } if post_silenced && !auth_silenced => {
            auth_silenced = true;
            Some(Vec::new())
        }
        _ => None,
    })));
    block_on(device.core.connect()).unwrap();
    block_on(device.core.after_connect());
    device.drive();
    let connects = device.sent_as(|f| matches!(f, ClientFrame::Authenticate { .. }).then_some(()));
    assert_eq!(
        connects.len(),
        2,
        "one connect, one failed reconnect, no more"
    );
    assert_eq!(sent(&device), Vec::<String>::new());
    assert!(
        !device
            .events()
            .iter()
            .any(|e| matches!(e, Event::SendFailed { .. })),
        "nothing is given up"
    );
    assert_eq!(held(&device, group).len(), 3, "a sealed, b and c held");

    come_back(&mut device);
    assert_eq!(sent(&device), ["a", "b", "c"]);
    let seqs: Vec<u64> = device.events_as(|e| match e {
        Event::Sent(m) => Some(m.seq.0),
        _ => None,
    });
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert!(held(&device, group).is_empty());
}

// A store of an earlier version kept the bare content, without the epoch it was written in:
// it is still listed, and counts as written before anyone joined, so the user is asked (who
// joined since cannot be told: a server could have kept the device offline across the update).
#[test]
fn a_message_held_by_an_earlier_version_is_listed_and_asked_about() {
    use confide_client_core::{Batch, ClientStore};
    let (device, group, _, _) = group(false);
    let content = support::text("from an older version", device.now());
    let key = [
        group.as_bytes().as_slice(),
        &device.now().0.to_be_bytes(),
        &0u64.to_be_bytes(),
    ]
    .concat();
    let mut batch = Batch::new();
    batch.put(
        "held",
        &key,
        zeroize::Zeroizing::new(serde_json::to_vec(&content).unwrap()),
    );
    block_on(device.store.commit(batch)).unwrap();
    let mut device = device.restart(7);
    let listed = held(&device, group);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].text, "from an older version");
    assert!(listed[0].needs_confirm);
    assert_eq!(
        listed[0].added.len(),
        1,
        "Bob, who came after the group began"
    );
    come_back(&mut device);
    assert_eq!(sent(&device), Vec::<String>::new());
    let shown = &held(&device, group)[0];
    block_on(device.core.send_held_anyway(group, shown.id, shown.epoch)).unwrap();
    device.drive();
    assert_eq!(sent(&device), ["from an older version"]);
    assert!(held(&device, group).is_empty());
}

// The user agrees to the people they were shown: someone added after that is not included.
#[test]
fn sending_anyway_covers_only_who_was_shown_and_is_refused_once_more_joined() {
    let (mut device, group, bob, _) = group(false);
    go_offline(&mut device);
    device.send(group, "before Eve").unwrap_err();
    device.member_adds(group, &bob, Member::new(5, "Eve").entry());
    come_back(&mut device);
    let shown = held(&device, group)[0].clone();
    assert_eq!(shown.added.len(), 1);

    // Mallory is added, and this device sees it, before the user answers.
    let mallory = Member::new(6, "Mallory");
    device.member_adds(group, &bob, mallory.entry());
    block_on(device.core.sync()).unwrap();
    device.drive();
    assert!(device.state(group).member(&mallory.user).is_some());
    let e = block_on(device.core.send_held_anyway(group, shown.id, shown.epoch)).unwrap_err();
    assert_eq!(e.code(), "changed_since_asked");
    device.drive();
    assert_eq!(device.posted().len(), 0, "nothing sealed for Mallory");

    let now = held(&device, group)[0].clone();
    let names: Vec<&str> = now.added.iter().map(|a| a.display_name.as_str()).collect();
    assert_eq!(names, ["Eve", "Mallory"]);
    block_on(device.core.send_held_anyway(group, now.id, now.epoch)).unwrap();
    device.drive();
    assert_eq!(sent(&device), ["before Eve"]);
}

// Someone who was there, removed and added back with another device, would read it on that
// device: asked about too.
#[test]
fn a_member_back_on_a_new_device_is_asked_about() {
    let (mut device, group, bob, carol) = group(true);
    go_offline(&mut device);
    device.send(group, "for the three of us").unwrap_err();
    device.member_op(
        group,
        &bob,
        OpBody::Remove {
            user: carol.user,
            ban: false,
        },
    );
    let mut carol_again = Member::new(7, "Carol");
    carol_again.user = carol.user;
    device.member_adds(group, &bob, carol_again.entry());
    come_back(&mut device);

    assert_eq!(device.posted().len(), 0);
    let listed = held(&device, group);
    assert!(listed[0].needs_confirm);
    assert_eq!(listed[0].added.len(), 1);
    assert_eq!(listed[0].added[0].user, carol.user);
    assert!(listed[0].added[0].new_device);
}

// `send_text` promises that a message the server could not be reached for goes once connected
// again. The connection can also drop after the device found itself connected, while its
// sender key goes out (the first message of an epoch) or while a sync after a `stale_epoch`
// refusal runs: the message is kept then too, not lost with an `unreachable` error.
#[test]
fn a_connection_lost_while_the_sender_key_goes_out_keeps_the_message_for_later() {
    let (mut device, group, _, _) = group(true);
    device.answer(Some(Box::new(|frame| {
        matches!(frame, ClientFrame::SendSealed { .. }).then(Vec::new)
    })));
    assert_eq!(
        device
            .send(group, "while the train went")
            .unwrap_err()
            .code(),
        "held"
    );
    assert_eq!(held(&device, group).len(), 1);
    assert!(device.posted().is_empty());

    come_back(&mut device);
    assert_eq!(sent(&device), ["while the train went"]);
    assert!(held(&device, group).is_empty());
}

/// A server that refuses the first `count` posts as `stale_epoch` and answers the rest
/// honestly.
fn posts_refused_as_stale(count: usize) -> support::Answer {
    let mut left = count;
    support::refuse(
        confide_protocol::frames::ErrorCode::StaleEpoch,
        move |frame| {
            let refused = matches!(frame, ClientFrame::Post { .. }) && left > 0;
            left -= usize::from(refused);
            refused
        },
    )
}

/// The (epoch, iteration) of every envelope posted: a message key is never used twice.
fn keys_used_once(device: &Device) -> usize {
    let posted = device.posted();
    let keys: std::collections::BTreeSet<_> =
        posted.iter().map(|e| (e.epoch, e.iteration)).collect();
    assert_eq!(keys.len(), posted.len(), "a message key used twice");
    posted.len()
}

// A new message refused as stale is held, and sealed again once a sync has shown the new epoch.
// Refused as stale a second time (the log moved on again meanwhile), it was reported not sent,
// although the user had written it and nothing was wrong with it; now it stays held, listed as
// waiting, and goes with the next sync.
#[test]
fn a_new_message_refused_as_stale_again_stays_held_and_goes_later() {
    let (mut device, group, _, _) = group(true);
    device.send(group, "first").unwrap();
    // The send's own try, and the held message's try after the sync, in the same step.
    device.answer(Some(posts_refused_as_stale(2)));
    device.clear();
    assert_eq!(device.send(group, "second").unwrap_err().code(), "held");
    let listed = held(&device, group);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].text, "second");
    assert!(!listed[0].sealed);
    assert_eq!(keys_used_once(&device), 2);

    come_back(&mut device);
    assert_eq!(sent(&device), ["second"]);
    assert!(held(&device, group).is_empty());
    assert_eq!(device.history(group), ["first", "second"]);
    assert!(failed_codes(&device).is_empty());
    assert_eq!(keys_used_once(&device), 3);
}

// The sync after a stale refusal may be refused for a while (`rate_limited`): the message stays
// held, and is not sealed again before a sync has shown the new epoch (it would be sealed for
// the ended epoch again, refused again, and use up its tries); it goes with the retry, in the
// new epoch. (A version that synced inside the send dropped it with the refusal as its answer.)
#[test]
fn a_new_message_whose_sync_after_a_stale_refusal_is_refused_for_a_while_goes_with_the_retry() {
    use confide_protocol::frames::ErrorCode;
    let (mut device, group, bob, carol) = group(true);
    device.send(group, "first").unwrap();
    let ended = device.state(group).epoch();
    // Bob removes Carol through the server; Alice's device is not told.
    device.member_op(
        group,
        &bob,
        OpBody::Remove {
            user: carol.user,
            ban: false,
        },
    );
    // The server refuses posts sealed for the ended epoch, and its first sync for a while.
    let mut sync_refused = false;
    device.answer(Some(Box::new(move |frame| {
        let code = match frame {
            ClientFrame::Post { envelope, .. } if envelope.epoch == ended => ErrorCode::StaleEpoch,
            ClientFrame::Sync { .. } if !std::mem::replace(&mut sync_refused, true) => {
                ErrorCode::RateLimited
            }
            _ => return None,
        };
        Some(support::refusal(frame, code))
    })));
    device.clear();
    assert_eq!(device.send(group, "second").unwrap_err().code(), "held");
    assert_eq!(held(&device, group).len(), 1);
    assert_eq!(
        keys_used_once(&device),
        1,
        "sealed again before the new epoch was shown"
    );
    // A retry before the wait is over does not end it.
    retry(&mut device);
    assert_eq!(
        keys_used_once(&device),
        1,
        "tried again before the wait was over"
    );

    device.set_clock(Timestamp(device.now().0 + 2_000));
    retry(&mut device);
    assert_eq!(sent(&device), ["second"]);
    assert!(held(&device, group).is_empty());
    assert_eq!(device.history(group), ["first", "second"]);
    let epochs: Vec<_> = device.posted().iter().map(|e| e.epoch).collect();
    assert_eq!(epochs.len(), 2);
    assert_eq!(epochs[0], ended);
    assert!(epochs[1] > ended);
    assert!(failed_codes(&device).is_empty());
}

// A sync that is refused every time after a stale refusal does not keep the message waiting
// for ever (the whole group's later messages would wait behind it, silently): once each wait is
// over, the outbox's retry tries it again, and after the bound the user is told it was not
// sent. The waits grow (2 s, doubling, at most a minute), so an honest server's trouble of a
// minute or so does not use the tries up.
#[test]
fn a_message_whose_group_never_syncs_after_a_stale_refusal_is_reported_not_sent_after_a_bound() {
    use confide_protocol::frames::ErrorCode;
    let (mut device, group, _, _) = group(true);
    device.send(group, "first").unwrap();
    device.answer(Some(Box::new(move |frame| {
        let code = match frame {
            ClientFrame::Post { .. } => ErrorCode::StaleEpoch,
            ClientFrame::Sync { .. } => ErrorCode::RateLimited,
            _ => return None,
        };
        Some(support::refusal(frame, code))
    })));
    device.clear();
    assert_eq!(device.send(group, "second").unwrap_err().code(), "held");
    assert_eq!(keys_used_once(&device), 1);
    // Within a minute and a half of failing syncs: five more tries (after 2, 4, 8, 16, 32 s).
    let mut tries = 0;
    for _ in 0..90 {
        device.set_clock(Timestamp(device.now().0 + 1_000));
        retry(&mut device);
        tries = keys_used_once(&device);
    }
    assert_eq!(tries, 6);
    assert!(failed_codes(&device).is_empty());
    for _ in 0..4 {
        device.set_clock(Timestamp(device.now().0 + 60_000));
        retry(&mut device);
    }
    assert_eq!(failed_codes(&device), ["stale_epoch"]);
    assert!(held(&device, group).is_empty());
    assert_eq!(keys_used_once(&device), 8);
}

// A server that refuses every post as stale gets the message sealed again a bounded number of
// times, each with a new message key (a key is never used twice), and then the user is told it
// was not sent: it is not sealed again at every reconnect, without end.
#[test]
fn a_message_refused_as_stale_every_time_is_reported_not_sent_after_a_bound() {
    let (mut device, group, _, _) = group(true);
    device.send(group, "first").unwrap();
    device.answer(Some(posts_refused_as_stale(usize::MAX)));
    device.clear();
    assert_eq!(device.send(group, "second").unwrap_err().code(), "held");
    for _ in 0..10 {
        retry(&mut device);
        block_on(device.core.connection_lost("the test went offline".into()));
        come_back_refused(&mut device);
    }
    assert_eq!(failed_codes(&device), ["stale_epoch"]);
    assert!(held(&device, group).is_empty());
    // Eight tries in all (the core's `MAX_STALE_REFUSALS`).
    assert_eq!(keys_used_once(&device), 8);
    assert_eq!(device.history(group), ["first"]);
}

// The bound holds when the server makes the message wait in the outbox between refusals: each
// new envelope refused for a while (`rate_limited`), then, posted again from the outbox, refused
// as stale. The count is carried through the outbox; a version that started it again there had
// the message sealed again at every retry, without end.
#[test]
fn a_message_refused_as_stale_from_the_outbox_every_time_is_reported_not_sent_after_a_bound() {
    use confide_protocol::frames::ErrorCode;
    let (mut device, group, _, _) = group(true);
    device.send(group, "first").unwrap();
    // A new envelope is refused for a while; posted again, it is refused as stale.
    let mut seen = std::collections::BTreeSet::new();
    device.answer(Some(Box::new(move |frame| {
        let ClientFrame::Post { envelope, .. } = frame else {
            return None;
        };
        let code = if seen.insert(envelope.message_id()) {
            ErrorCode::RateLimited
        } else {
            ErrorCode::StaleEpoch
        };
        Some(support::refusal(frame, code))
    })));
    device.clear();
    assert_eq!(device.send(group, "second").unwrap_err().code(), "pending");
    for _ in 0..20 {
        retry(&mut device);
    }
    assert_eq!(failed_codes(&device), ["stale_epoch"]);
    assert!(held(&device, group).is_empty());
    assert_eq!(keys_used_once_per_envelope(&device), 8);
    assert_eq!(device.history(group), ["first"]);
}

/// How many envelopes were posted (each may be posted more than once, the same envelope again):
/// a message key is never used for two of them.
fn keys_used_once_per_envelope(device: &Device) -> usize {
    let envelopes: std::collections::BTreeMap<_, _> = device
        .posted()
        .iter()
        .map(|e| (e.message_id(), (e.epoch, e.iteration)))
        .collect();
    let keys: std::collections::BTreeSet<_> = envelopes.values().collect();
    assert_eq!(keys.len(), envelopes.len(), "a message key used twice");
    envelopes.len()
}

/// The codes of every `SendFailed` the application heard: "not sent", and why.
fn failed_codes(device: &Device) -> Vec<String> {
    device.events_as(|e| match e {
        Event::SendFailed { code, .. } => Some(code),
        _ => None,
    })
}

/// Connected again to a server that still refuses every post as stale.
fn come_back_refused(device: &mut Device) {
    block_on(device.core.connect()).unwrap();
    block_on(device.core.after_connect());
    device.drive();
}

#[test]
fn a_connection_lost_in_the_sync_after_a_stale_refusal_keeps_the_message_for_later() {
    let (mut device, group, _, _) = group(true);
    device.send(group, "first").unwrap();
    let mut refused = false;
    device.answer(Some(Box::new(move |frame| match frame {
        ClientFrame::Post { .. } if !refused => {
            refused = true;
            Some(vec![confide_protocol::frames::ServerFrame::error(
                Some(frame.request_id()),
                confide_protocol::frames::ErrorCode::StaleEpoch,
                "stale",
            )])
        }
        ClientFrame::Sync { .. } => Some(Vec::new()),
        _ => None,
    })));
    device.clear();
    assert_eq!(device.send(group, "second").unwrap_err().code(), "held");
    let listed = held(&device, group);
    assert_eq!(listed.len(), 1);
    assert!(!listed[0].sealed, "kept as text, to be sealed again");

    come_back(&mut device);
    assert_eq!(sent(&device), ["second"]);
    assert!(held(&device, group).is_empty());
    // The refused envelope and the one that went: sealed with different message keys.
    let posted = device.posted();
    assert_eq!(posted.len(), 2);
    assert_ne!(posted[0].message_id(), posted[1].message_id());
    assert_ne!(
        (posted[0].epoch, posted[0].iteration),
        (posted[1].epoch, posted[1].iteration),
        "a message key used twice"
    );
}

/// The device's clock moves on a second (held messages go in the order they were written).
fn a_second_later(device: &Device) {
    device.set_clock(confide_protocol::Timestamp(device.now().0 + 1_000));
}

/// The outbox's retry comes, and what follows it (as a driver runs it).
fn retry(device: &mut Device) {
    block_on(device.core.retry_now());
    block_on(device.core.after_input());
    device.drive();
}

/// Alice wrote "one" offline and Eve was added meanwhile: connected again, "one" waits for
/// Alice's word.
fn one_waiting_for_alice() -> (Device, GroupId) {
    let (mut device, group, bob, _) = group(false);
    go_offline(&mut device);
    device.send(group, "one").unwrap_err();
    device.member_adds(group, &bob, Member::new(5, "Eve").entry());
    come_back(&mut device);
    assert_eq!(asked(&device).len(), 1, "\"one\" waits for Alice's word");
    (device, group)
}

/// A server that refuses the device's posts, in turn, with `codes` (one each), then answers
/// honestly.
fn posts_refused(codes: Vec<confide_protocol::frames::ErrorCode>) -> support::Answer {
    let mut codes = codes.into_iter();
    Box::new(move |frame| {
        if !matches!(frame, ClientFrame::Post { .. }) {
            return None;
        }
        let code = codes.next()?;
        Some(vec![confide_protocol::frames::ServerFrame::error(
            Some(frame.request_id()),
            code,
            "refused by the script",
        )])
    })
}

// "first" waits in the outbox (refused for a while) and "second" is held (written offline).
// Connected again, "first" is refused once more; then, when the outbox's retry is due as
// "second" goes, it is posted again first, refused as stale and held again, to be sealed anew:
// "second" waits behind it, and they reach the group in the order written.
#[test]
fn a_held_message_waits_behind_an_earlier_one_that_the_outbox_holds_again() {
    use confide_protocol::frames::ErrorCode::{RateLimited, StaleEpoch};
    let (mut device, group, _, _) = group(false);
    device.answer(Some(posts_refused(vec![RateLimited])));
    assert_eq!(device.send(group, "first").unwrap_err().code(), "pending");
    a_second_later(&device);
    go_offline(&mut device);
    assert_eq!(device.send(group, "second").unwrap_err().code(), "held");

    device.answer(Some(posts_refused(vec![RateLimited, StaleEpoch])));
    block_on(device.core.connect()).unwrap();
    device.set_clock(confide_protocol::Timestamp(device.now().0 + 60_000));
    block_on(device.core.after_connect());
    device.drive();
    retry(&mut device);
    assert_eq!(sent(&device), ["first", "second"]);
}

// "first" waits in the outbox (refused for a while), sealed before Carol joined. "second",
// written after she joined, is not sealed behind it: "first" may yet be refused as stale and
// sealed again, behind "second", and then wait for Alice's word (Carol joined since it was
// written) while "second" reached everyone. So "second" waits, unsealed, and goes after
// "first" once Alice says "first" may go.
#[test]
fn a_message_waits_unsealed_behind_one_in_the_outbox_from_an_earlier_epoch() {
    use confide_protocol::frames::ErrorCode::{RateLimited, StaleEpoch};
    let (mut device, group, _, _) = group(false);
    device.answer(Some(posts_refused(vec![RateLimited])));
    assert_eq!(device.send(group, "first").unwrap_err().code(), "pending");
    device.answer(None);
    device.append(group, support::add(Member::new(4, "Carol").entry()));
    // Sent while the outbox's retry is not due yet: "first" is not posted again meanwhile.
    device.answer(Some(posts_refused(vec![StaleEpoch])));
    a_second_later(&device);
    let posts = device.posted().len();
    let answered = device
        .send(group, "second")
        .map_err(|e| e.code().to_string());
    assert_eq!(
        device.posted().len(),
        posts,
        "posted before the server's pause passed"
    );
    retry(&mut device);
    assert!(sent(&device).is_empty(), "the send answered {answered:?}");
    let asks = asked(&device);
    assert_eq!(asks.len(), 1, "only \"first\" needs Alice's word");
    assert_eq!(asks[0].1, ["Carol"]);

    let first = &held(&device, group)[0];
    assert_eq!(first.text, "first");
    block_on(device.core.send_held_anyway(group, first.id, first.epoch)).unwrap();
    device.drive();
    assert_eq!(sent(&device), ["first", "second"]);
}

// A pinned text does not wait behind the user's own texts: it is for whoever is a member when it
// goes (a new member must be able to read the crisis resources). Alice's "first" waits in the
// outbox (refused for a while) when she adds Carol; the crisis resources are sent again for the
// new epoch, and go although "first", refused as stale and held again, then waits for Alice's
// word (Carol joined after it was written).
#[test]
fn a_pinned_text_for_a_new_epoch_does_not_wait_behind_a_text_that_waits_for_the_user() {
    use confide_protocol::frames::ErrorCode::{RateLimited, StaleEpoch};
    let (mut device, group, _, _) = group(false);
    block_on(
        device
            .core
            .set_crisis_resources(group, "Samaritans: 116 123".into()),
    )
    .unwrap();
    block_on(device.core.after_input());
    device.drive();
    let stored_before = device.log(group).messages.len();
    device.answer(Some(posts_refused(vec![RateLimited, StaleEpoch])));
    assert_eq!(device.send(group, "first").unwrap_err().code(), "pending");
    a_second_later(&device);
    device.append(group, support::add(Member::new(4, "Carol").entry()));
    device.drive();
    retry(&mut device);

    assert_eq!(asked(&device).len(), 1, "\"first\" waits for Alice's word");
    assert!(sent(&device).is_empty());
    let epoch = device.state(group).epoch();
    let stored = device.log(group).messages;
    assert_eq!(stored.len(), stored_before + 1, "the crisis resources went");
    assert_eq!(stored.last().map(|m| m.envelope.epoch), Some(epoch));
}

// The same for a pinned text written while a text waits for the user's word: Alice wrote "one"
// offline, Eve was added meanwhile, so "one" waits for Alice; the crisis resources she pins
// now go at once, in the current epoch, and "one" still waits.
#[test]
fn a_pinned_text_goes_while_a_text_waits_for_the_user() {
    let (mut device, group) = one_waiting_for_alice();
    let stored_before = device.log(group).messages.len();

    block_on(
        device
            .core
            .set_crisis_resources(group, "Samaritans: 116 123".into()),
    )
    .unwrap();
    block_on(device.core.after_input());
    device.drive();
    let stored = device.log(group).messages;
    assert_eq!(stored.len(), stored_before + 1, "the crisis resources went");
    assert_eq!(
        stored.last().map(|m| m.envelope.epoch),
        Some(device.state(group).epoch())
    );
    let waiting = held(&device, group);
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].text, "one");
    assert!(waiting[0].needs_confirm);
    assert!(sent(&device).is_empty());
}

// And for a pinned text held because the connection dropped while it went out: once connected
// again it goes, although "one" before it still waits for Alice's word.
#[test]
fn a_held_pinned_text_goes_while_a_text_before_it_waits_for_the_user() {
    let (mut device, group) = one_waiting_for_alice();
    let stored_before = device.log(group).messages.len();

    // The new epoch's sender key goes out with the crisis resources, and the server never
    // answers it.
    device.answer(Some(Box::new(|frame| {
        matches!(frame, ClientFrame::SendSealed { .. }).then(Vec::new)
    })));
    let pinned = block_on(
        device
            .core
            .set_crisis_resources(group, "Samaritans: 116 123".into()),
    );
    assert_eq!(pinned.unwrap_err().code(), "held");
    assert_eq!(device.log(group).messages.len(), stored_before);

    come_back(&mut device);
    let stored = device.log(group).messages;
    assert_eq!(stored.len(), stored_before + 1, "the crisis resources went");
    assert_eq!(
        stored.last().map(|m| m.envelope.epoch),
        Some(device.state(group).epoch())
    );
    assert_eq!(held(&device, group).len(), 1, "\"one\" still waits");
}

// A text waits in the outbox (its post was never answered). Alice sends another: connecting
// again, the server refuses another group's sync for a while (`rate_limited`) and again leaves
// the old post unanswered, which drops the connection. The new text waits for the connection
// like the old one, instead of failing with the other group's refusal.
#[test]
fn a_send_that_loses_the_connection_while_connecting_is_held_whatever_another_group_met() {
    use confide_protocol::frames::ErrorCode::RateLimited;
    let (mut device, group, bob, _) = group(false);
    let other = device.group_with(&[&bob]);
    device.answer(Some(Box::new(|frame| {
        matches!(frame, ClientFrame::Post { .. }).then(Vec::new)
    })));
    assert_eq!(device.send(group, "old").unwrap_err().code(), "pending");
    assert!(!device.core.is_connected());

    let refused = support::refuse(
        RateLimited,
        move |frame| matches!(frame, ClientFrame::Sync { group, .. } if *group == other),
    );
    let mut refused = Some(refused);
    device.answer(Some(Box::new(move |frame| match frame {
        ClientFrame::Post { .. } => Some(Vec::new()),
        _ => refused.as_mut().and_then(|answer| answer(frame)),
    })));
    assert_eq!(device.send(group, "new").unwrap_err().code(), "held");
    let waiting: Vec<String> = held(&device, group).into_iter().map(|m| m.text).collect();
    assert_eq!(waiting, ["old", "new"]);
}

// The server refuses this device's sender key for a while (`rate_limited`): the text is kept,
// as a post refused for a passing reason is, and goes with the outbox's retry.
#[test]
fn a_text_whose_sender_key_is_refused_for_a_while_goes_with_the_retry() {
    use confide_protocol::frames::ErrorCode::RateLimited;
    let (mut device, group, _, _) = group(false);
    device.answer(Some(support::first_refused(RateLimited, |frame| {
        matches!(frame, ClientFrame::SendSealed { .. })
    })));
    assert_eq!(device.send(group, "hello").unwrap_err().code(), "held");
    assert!(device.posted().is_empty());
    let waiting: Vec<String> = held(&device, group).into_iter().map(|m| m.text).collect();
    assert_eq!(waiting, ["hello"]);
    assert!(device.core.retry_due_at().is_some(), "a retry is scheduled");

    retry(&mut device);
    assert_eq!(sent(&device), ["hello"]);
    assert!(held(&device, group).is_empty());
}

// The same for a text written offline: sent after the reconnection, its sender key is refused
// for a while; it stays held (the user was told it would go), and goes with the retry.
#[test]
fn a_held_text_whose_sender_key_is_refused_for_a_while_stays_held_and_goes_with_the_retry() {
    use confide_protocol::frames::ErrorCode::RateLimited;
    let (mut device, group, _, _) = group(false);
    go_offline(&mut device);
    assert_eq!(device.send(group, "hello").unwrap_err().code(), "held");
    device.answer(Some(support::first_refused(RateLimited, |frame| {
        matches!(frame, ClientFrame::SendSealed { .. })
    })));
    block_on(device.core.connect()).unwrap();
    block_on(device.core.after_connect());
    device.drive();
    let failed = device.events_as(|e| matches!(e, Event::SendFailed { .. }).then_some(()));
    assert!(failed.is_empty(), "reported not sent");
    let waiting: Vec<String> = held(&device, group).into_iter().map(|m| m.text).collect();
    assert_eq!(waiting, ["hello"]);

    retry(&mut device);
    assert_eq!(sent(&device), ["hello"]);
    assert!(held(&device, group).is_empty());
}
