//! The group-work tools (issue 17) between real clients through a real server: the meeting
//! schedule, check-in rounds, content warnings and hidden topics, the resource library, and
//! the personal safety plan — what members see, what a member cannot do, and what never
//! leaves the person's own devices.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use confide_client::protocol::envelope::ContentBody;
use confide_client::{
    ClientError, Event, GroupId, Meeting, MeetingSchedule, PinnedKind, Resource, ResourceLibrary,
    RoundPart, RoundTag, SafetyPlan, Timestamp, WarningTopic, WarningTopics,
};
use confide_tests::{
    RECV_TIMEOUT, RecordingProxy, TestServer, TestUser, contains, now, read_tree, users_in_group,
};

/// Evaluates `$check` (an expression giving an `Option`) until it is `Some`, letting `$user`'s
/// client take in what arrives meanwhile; fails after [`RECV_TIMEOUT`] naming `$what`.
macro_rules! wait_for {
    ($user:expr, $what:expr, $check:expr) => {{
        let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
        loop {
            if let Some(v) = $check {
                break v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting: {}",
                $what
            );
            let _ = tokio::time::timeout(Duration::from_millis(100), $user.events.next()).await;
        }
    }};
}

fn not_allowed<T: std::fmt::Debug>(r: Result<T, ClientError>) {
    assert!(matches!(r, Err(ClientError::NotAllowed(_))), "{r:?}");
}

fn invalid<T: std::fmt::Debug>(r: Result<T, ClientError>) {
    assert!(matches!(r, Err(ClientError::Invalid(_))), "{r:?}");
}

/// One meeting on 1 June 2030, 18:00–19:00 in Berlin (16:00 UTC, summer time), a link and a
/// note.
fn schedule() -> MeetingSchedule {
    MeetingSchedule {
        time_zone: "Europe/Berlin".into(),
        meetings: vec![Meeting::Once {
            date: "2030-06-01".into(),
            start_minute: 18 * 60,
            minutes: 60,
        }],
        video_link: Some("https://meet.example.org/circle".into()),
        note: Some("Bring your workbook".into()),
    }
}

fn topics() -> WarningTopics {
    WarningTopics {
        topics: vec![
            WarningTopic {
                id: 1,
                label: "Grief".into(),
            },
            WarningTopic {
                id: 2,
                label: "Self-harm".into(),
            },
        ],
    }
}

/// A text in a round, as a misbehaving client could send it.
fn round_text(text: &str, round: confide_client::RoundId, part: RoundPart) -> ContentBody {
    ContentBody::Text {
        text: text.into(),
        reply_to: None,
        warnings: Vec::new(),
        round: Some(RoundTag {
            id: round,
            part,
            order: None,
        }),
    }
}

/// The message of `user`'s history with text `text`, once it is there.
async fn wait_message(
    user: &mut TestUser,
    group: GroupId,
    text: &str,
) -> confide_client::ChatMessage {
    wait_for!(user, format!("the message {text:?}"), {
        user.client
            .history(group, None, 1000)
            .await
            .unwrap()
            .into_iter()
            .find(|m| m.text == text)
    })
}

#[tokio::test]
async fn a_facilitator_publishes_a_schedule_and_a_member_sees_the_next_meeting() {
    let server = TestServer::start().await;
    let (mut users, group) = users_in_group(&server.url, server.trust(), &["Alice", "Bob"]).await;
    assert_eq!(users[1].client.next_meeting(group).await.unwrap(), None);

    users[0]
        .client
        .set_meetings(group, &schedule())
        .await
        .unwrap();
    users[1]
        .wait_event(|e| {
            matches!(e, Event::Pinned { kind: PinnedKind::Meetings, group: g, .. } if *g == group)
        })
        .await;
    let pinned = users[1].client.pinned(group).await.unwrap();
    assert_eq!(pinned.meetings, Some(schedule()));
    let next = users[1].client.next_meeting(group).await.unwrap().unwrap();
    assert_eq!(next.starts_at, Timestamp(1_906_560_000_000), "16:00 UTC");
    assert_eq!(next.ends_at, Timestamp(1_906_563_600_000));
    assert_eq!(next.index, 0);

    // A member cannot: refused before anything is sent, and nothing changes for anyone.
    let mut theirs = schedule();
    theirs.note = Some("Bob's own schedule".into());
    not_allowed(users[1].client.set_meetings(group, &theirs).await);
    not_allowed(users[1].client.set_warning_topics(group, &topics()).await);
    // The facilitator writes again, so that anything Bob's attempt had sent would have
    // arrived before this.
    users[0]
        .client
        .send_text(group, "after Bob's attempt", None)
        .await
        .unwrap();
    wait_message(&mut users[1], group, "after Bob's attempt").await;
    for u in &users {
        let pinned = u.client.pinned(group).await.unwrap();
        assert_eq!(pinned.meetings, Some(schedule()));
        assert_eq!(pinned.warning_topics, None);
    }

    // An invalid schedule is refused.
    let mut bad = schedule();
    bad.time_zone = "Mars/Olympus".into();
    invalid(users[0].client.set_meetings(group, &bad).await);
}

#[tokio::test]
async fn a_round_gathers_answers_and_passes_in_turn_order_until_it_is_closed() {
    let server = TestServer::start().await;
    let (mut users, group) =
        users_in_group(&server.url, server.trust(), &["Alice", "Bob", "Carol"]).await;
    let (alice, bob, carol) = (
        users[0].client.user(),
        users[1].client.user(),
        users[2].client.user(),
    );
    // A member cannot open a round.
    not_allowed(
        users[1]
            .client
            .open_round(group, "Bob's round", None, None)
            .await,
    );
    let round = users[0]
        .client
        .open_round(
            group,
            "How are you arriving today?",
            Some(vec![carol, bob]),
            None,
        )
        .await
        .unwrap();
    for u in users.iter_mut().skip(1) {
        wait_for!(u, "the prompt", {
            let rounds = u.client.rounds(group).await.unwrap();
            rounds.first().filter(|r| r.prompt.is_some()).map(|r| r.id)
        });
    }
    users[1]
        .client
        .answer_round(group, round, "Tired but here")
        .await
        .unwrap();
    let passed = users[2].client.pass_round(group, round).await.unwrap();
    assert_eq!(passed.round.as_ref().map(|t| t.part), Some(RoundPart::Pass));
    // Someone other than the opener sends a "prompt": an ordinary message, not the round's.
    users[2]
        .client
        .send_body_unchecked(
            group,
            round_text("A prompt of my own", round, RoundPart::Prompt),
        )
        .await
        .unwrap();
    // A later answer replaces the earlier one.
    users[1]
        .client
        .answer_round(group, round, "Actually, hopeful")
        .await
        .unwrap();

    let mut blocks = Vec::new();
    for u in users.iter_mut() {
        wait_message(u, group, "Actually, hopeful").await;
        wait_message(u, group, "A prompt of my own").await;
        let view = u.client.rounds(group).await.unwrap().remove(0);
        blocks.push(view);
    }
    for (i, view) in blocks.iter().enumerate() {
        assert_eq!(view.id, round);
        assert_eq!(view.opened_by, alice);
        assert_eq!(view.opened_by_name, "Alice");
        assert!(view.open);
        assert_eq!(view.prompt.as_deref(), Some("How are you arriving today?"));
        assert_eq!(view.order, Some(vec![carol, bob]));
        let answers: Vec<_> = view
            .answers
            .iter()
            .map(|a| (a.user, a.name.as_str(), a.text.as_str(), a.passed))
            .collect();
        assert_eq!(
            answers,
            vec![
                (carol, "Carol", "", true),
                (bob, "Bob", "Actually, hopeful", false)
            ],
            "everyone sees the same block, in the turn order"
        );
        assert_eq!(view.answered, i > 0, "only Alice has not answered");
    }
    let fake = users[0]
        .client
        .history(group, None, 1000)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.text == "A prompt of my own")
        .unwrap();
    assert_eq!(
        fake.round, None,
        "a prompt from someone else is an ordinary message"
    );

    // A member cannot close it; the facilitator does.
    not_allowed(users[1].client.close_round(group, round).await);
    users[0].client.close_round(group, round).await.unwrap();
    for u in users.iter_mut() {
        wait_for!(u, "the round closed", {
            let rounds = u.client.rounds(group).await.unwrap();
            rounds.first().filter(|r| !r.open).map(|r| r.ended_at)
        })
        .unwrap();
    }
    // After the close, an answer is refused by Bob's client; one sent anyway does not count.
    invalid(users[1].client.answer_round(group, round, "Too late").await);
    users[1]
        .client
        .send_body_unchecked(
            group,
            round_text("Too late anyway", round, RoundPart::Answer),
        )
        .await
        .unwrap();
    for u in users.iter_mut() {
        let late = wait_message(u, group, "Too late anyway").await;
        assert_eq!(late.round, None);
        let view = u.client.rounds(group).await.unwrap().remove(0);
        let texts: Vec<_> = view.answers.iter().map(|a| a.text.as_str()).collect();
        assert_eq!(texts, vec!["", "Actually, hopeful"]);
    }
}

#[tokio::test]
async fn a_round_closes_at_its_time() {
    let server = TestServer::start().await;
    let (mut users, group) = users_in_group(&server.url, server.trust(), &["Alice", "Bob"]).await;
    let closes_at = Timestamp(now().0 + 3_000);
    let round = users[0]
        .client
        .open_round(group, "One word for this week?", None, Some(closes_at))
        .await
        .unwrap();
    wait_for!(users[1], "the prompt", {
        let rounds = users[1].client.rounds(group).await.unwrap();
        rounds.first().and_then(|r| r.prompt.clone())
    });
    users[1]
        .client
        .answer_round(group, round, "Steady")
        .await
        .unwrap();
    // Nobody closes it: it ends by itself at its time, for everyone.
    for u in users.iter_mut() {
        let view = wait_for!(u, "the round's end", {
            let mut rounds = u.client.rounds(group).await.unwrap();
            rounds
                .first()
                .is_some_and(|r| !r.open && r.answers.len() == 1)
                .then(|| rounds.remove(0))
        });
        assert_eq!(view.closes_at, Some(closes_at));
        assert_eq!(view.ended_at, Some(closes_at));
        assert_eq!(view.answers[0].text, "Steady");
    }
    invalid(users[1].client.pass_round(group, round).await);
    users[1]
        .client
        .send_body_unchecked(group, round_text("", round, RoundPart::Pass))
        .await
        .unwrap();
    users[1]
        .client
        .send_text(group, "after the late pass", None)
        .await
        .unwrap();
    wait_message(&mut users[0], group, "after the late pass").await;
    let view = users[0].client.rounds(group).await.unwrap().remove(0);
    assert_eq!(view.answers.len(), 1);
    assert!(
        !view.answers[0].passed,
        "the pass after the end does not count"
    );
}

#[tokio::test]
async fn warnings_hide_a_message_only_where_its_topic_is_hidden() {
    let server = TestServer::start().await;
    let (mut users, group) =
        users_in_group(&server.url, server.trust(), &["Alice", "Bob", "Carol"]).await;
    users[0]
        .client
        .set_warning_topics(group, &topics())
        .await
        .unwrap();
    users[1]
        .client
        .set_hidden_topics(group, vec![2])
        .await
        .unwrap();
    assert_eq!(users[1].client.hidden_topics(group).await.unwrap(), vec![2]);
    assert_eq!(
        users[2].client.hidden_topics(group).await.unwrap(),
        Vec::<u16>::new()
    );
    invalid(
        users[0]
            .client
            .send_text_with_warnings(group, "twice", None, vec![1, 1])
            .await,
    );

    let sent = users[0]
        .client
        .send_text_with_warnings(group, "About last week's news", None, vec![2, 1])
        .await
        .unwrap();
    assert_eq!(sent.warnings, vec![1, 2]);
    let (event, _) = users[1]
        .wait_event(|e| matches!(e, Event::Message(m) if m.id == sent.id))
        .await;
    let Event::Message(shown) = event else {
        unreachable!()
    };
    assert!(shown.hidden, "Bob hides self-harm");
    assert_eq!(shown.warnings, vec![1, 2]);
    let at_carol = wait_message(&mut users[2], group, "About last week's news").await;
    assert!(!at_carol.hidden, "Carol hides nothing");
    assert_eq!(at_carol.warnings, vec![1, 2]);
    let topics_at_bob = users[1].client.pinned(group).await.unwrap().warning_topics;
    assert_eq!(topics_at_bob, Some(topics()));
    // Bob unhides it: the same message is shown again.
    users[1]
        .client
        .set_hidden_topics(group, vec![])
        .await
        .unwrap();
    assert!(
        !wait_message(&mut users[1], group, "About last week's news")
            .await
            .hidden
    );
    users[1]
        .client
        .set_hidden_topics(group, vec![2])
        .await
        .unwrap();

    // A moderator adds a warning to Carol's message: it reaches the others.
    let carols = users[2]
        .client
        .send_text(group, "My brother hurt himself", None)
        .await
        .unwrap();
    assert!(carols.warnings.is_empty());
    wait_message(&mut users[0], group, "My brother hurt himself").await;
    let before = wait_message(&mut users[1], group, "My brother hurt himself").await;
    assert!(!before.hidden);
    users[0]
        .client
        .add_warning(group, carols.id, vec![2])
        .await
        .unwrap();
    users[1]
        .wait_event(|e| {
            matches!(e, Event::WarningAdded { message, warnings, .. }
                if *message == carols.id && warnings == &vec![2])
        })
        .await;
    let after = wait_message(&mut users[1], group, "My brother hurt himself").await;
    assert_eq!(after.warnings, vec![2]);
    assert!(after.hidden);
    let at_carol = wait_for!(users[2], "the warning at Carol", {
        let m = wait_message(&mut users[2], group, "My brother hurt himself").await;
        (m.warnings == vec![2]).then_some(m)
    });
    assert!(!at_carol.hidden);

    // A member's add_warning: refused by their client, and ignored by everyone when sent
    // anyway.
    let alices = users[0]
        .client
        .send_text(group, "A plain message", None)
        .await
        .unwrap();
    wait_message(&mut users[1], group, "A plain message").await;
    not_allowed(users[1].client.add_warning(group, alices.id, vec![1]).await);
    users[1]
        .client
        .send_body_unchecked(
            group,
            ContentBody::AddWarning {
                message: alices.id,
                warnings: vec![2],
            },
        )
        .await
        .unwrap();
    users[1]
        .client
        .send_text(group, "after my warning", None)
        .await
        .unwrap();
    for u in [0, 2] {
        wait_message(&mut users[u], group, "after my warning").await;
        let m = wait_message(&mut users[u], group, "A plain message").await;
        assert!(m.warnings.is_empty(), "a member's warning is ignored");
    }
}

#[tokio::test]
async fn a_message_written_offline_keeps_its_warnings() {
    let mut server = TestServer::start().await;
    let (mut users, group) = users_in_group(&server.url, server.trust(), &["Alice", "Bob"]).await;
    users[1]
        .client
        .set_hidden_topics(group, vec![1])
        .await
        .unwrap();
    server.stop().await;
    let written = users[0]
        .client
        .send_text_with_warnings(group, "Written on the train", None, vec![1])
        .await;
    assert!(matches!(written, Err(ClientError::Held)), "{written:?}");
    let held = users[0].client.held(group).await.unwrap();
    assert_eq!(held.len(), 1);
    server.restart().await;
    let (sent, _) = users[0]
        .wait_event(|e| matches!(e, Event::Sent(m) if m.text == "Written on the train"))
        .await;
    let Event::Sent(sent) = sent else {
        unreachable!()
    };
    assert_eq!(sent.warnings, vec![1]);
    let at_bob = wait_message(&mut users[1], group, "Written on the train").await;
    assert_eq!(at_bob.warnings, vec![1]);
    assert!(at_bob.hidden);
}

#[tokio::test]
async fn resources_are_published_and_searched() {
    let server = TestServer::start().await;
    let (mut users, group) = users_in_group(&server.url, server.trust(), &["Alice", "Bob"]).await;
    let library = ResourceLibrary {
        resources: vec![
            Resource {
                title: "Sleep hygiene basics".into(),
                category: "Self-care".into(),
                text: Some("Keep the same bedtime.".into()),
                link: None,
            },
            Resource {
                title: "Grief support line".into(),
                category: "Helplines".into(),
                text: None,
                link: Some("https://example.org/grief".into()),
            },
        ],
    };
    users[0]
        .client
        .set_resources(group, &library)
        .await
        .unwrap();
    let at_bob = wait_for!(users[1], "the library", {
        users[1].client.pinned(group).await.unwrap().resources
    });
    assert_eq!(at_bob, library);
    let found: Vec<_> = at_bob
        .search("BEDTIME")
        .into_iter()
        .map(|(i, r)| (i, r.title.clone()))
        .collect();
    assert_eq!(found, vec![(0, "Sleep hygiene basics".to_string())]);
    assert_eq!(at_bob.search("helplines").len(), 1);
    assert!(at_bob.search("nothing like this").is_empty());
    not_allowed(users[1].client.set_resources(group, &library).await);
}

#[tokio::test]
async fn the_safety_plan_and_hidden_topics_stay_private_and_reach_a_new_device() {
    let server = TestServer::start_plaintext().await;
    let proxy = RecordingProxy::start(server.port).await;
    let url = format!("ws://127.0.0.1:{}", proxy.port);
    let (mut users, group) = users_in_group(&url, server.trust(), &["Alice", "Bob"]).await;
    let markers = [
        "MARKER-plan-5c1e-warning-sign",
        "MARKER-plan-a93d-my-sister-Ines",
        "MARKER-plan-07b2-my-dog",
        "MARKER-plan-e4f0-edited-on-the-phone",
    ];
    // Topic ids no frame would hold by chance; as JSON they read `[48271,48272]`.
    let hidden_marker = "48271,48272";
    assert_eq!(
        users[1].client.safety_plan().await.unwrap(),
        SafetyPlan::default()
    );
    let plan = SafetyPlan {
        warning_signs: vec![markers[0].into()],
        contacts: vec![markers[1].into()],
        reasons: vec![markers[2].into()],
        ..SafetyPlan::default()
    };
    let too_long = SafetyPlan {
        coping_steps: vec!["x".repeat(501)],
        ..SafetyPlan::default()
    };
    invalid(users[1].client.set_safety_plan(too_long).await);
    users[1].client.set_safety_plan(plan.clone()).await.unwrap();
    users[1]
        .client
        .set_hidden_topics(group, vec![48272, 48271])
        .await
        .unwrap();
    users[1]
        .client
        .send_text(group, "an ordinary message", None)
        .await
        .unwrap();
    wait_message(&mut users[0], group, "an ordinary message").await;

    // Bob's new device gets both through the link bundle.
    let mut phone = users[1].link_new_device(&url, server.trust()).await;
    assert_eq!(phone.client.safety_plan().await.unwrap(), plan);
    let hidden = wait_for!(phone, "the group on the new device", {
        phone.client.hidden_topics(group).await.ok()
    });
    assert_eq!(hidden, vec![48271, 48272]);

    // Later changes on either device reach the other, sealed between the two (§7.4).
    let edited = SafetyPlan {
        coping_steps: vec![markers[3].into()],
        ..plan.clone()
    };
    phone.client.set_safety_plan(edited.clone()).await.unwrap();
    wait_for!(users[1], "the phone's change on Bob's first device", {
        (users[1].client.safety_plan().await.unwrap() == edited).then_some(())
    });
    users[1]
        .client
        .set_hidden_topics(group, vec![48271])
        .await
        .unwrap();
    wait_for!(phone, "the first device's hidden topics on the phone", {
        (phone.client.hidden_topics(group).await.ok() == Some(vec![48271])).then_some(())
    });
    // Clearing the plan is a change too.
    users[1]
        .client
        .set_safety_plan(SafetyPlan::default())
        .await
        .unwrap();
    wait_for!(phone, "the cleared plan on the phone", {
        phone
            .client
            .safety_plan()
            .await
            .unwrap()
            .is_empty()
            .then_some(())
    });
    // Alice has nothing of it.
    assert_eq!(
        users[0].client.safety_plan().await.unwrap(),
        SafetyPlan::default()
    );
    assert!(
        users[0]
            .client
            .hidden_topics(group)
            .await
            .unwrap()
            .is_empty()
    );

    for u in users.iter_mut() {
        u.go_offline().await;
    }
    phone.go_offline().await;
    let mut server = server;
    server.stop().await;
    let wire = proxy.bytes.lock().unwrap().clone();
    assert!(
        contains(&wire, b"\"display_name\":\"Alice\""),
        "the proxy saw the traffic"
    );
    // What the server sees (the wire and its data directory) does not even name them; the
    // devices' own stores (whose tree names are in the clear) hold them encrypted only.
    let mut places: Vec<(String, Vec<u8>, bool)> = vec![("wire".into(), wire, true)];
    places.extend(server.stored_bytes().into_iter().map(|(p, b)| (p, b, true)));
    for dir in users.iter().map(|u| u.dir.path()).chain([phone.dir.path()]) {
        places.extend(
            read_tree(dir)
                .into_iter()
                .map(|(p, b)| (p.display().to_string(), b, false)),
        );
    }
    for (place, bytes, servers) in &places {
        for marker in markers.iter().chain([&hidden_marker]) {
            assert!(
                !contains(bytes, marker.as_bytes()),
                "{marker} found in {place}"
            );
        }
        if *servers {
            assert!(
                !contains(bytes, b"safety_plan") && !contains(bytes, b"hidden_topics"),
                "a safety plan or hidden topics named in {place}"
            );
        }
    }
}

#[tokio::test]
async fn a_round_block_hides_what_the_reader_hides_and_forgets_what_was_deleted() {
    let server = TestServer::start().await;
    let (mut users, group) =
        users_in_group(&server.url, server.trust(), &["Alice", "Bob", "Carol"]).await;
    users[0]
        .client
        .set_warning_topics(group, &topics())
        .await
        .unwrap();
    let round = users[0]
        .client
        .open_round(group, "One word for your week?", None, None)
        .await
        .unwrap();
    for u in users.iter_mut().skip(1) {
        wait_for!(u, "the prompt and the topics", {
            let pinned = u.client.pinned(group).await.unwrap();
            let rounds = u.client.rounds(group).await.unwrap();
            (pinned.warning_topics.is_some() && rounds.first().is_some_and(|r| r.prompt.is_some()))
                .then_some(())
        });
    }
    users[2]
        .client
        .set_hidden_topics(group, vec![1])
        .await
        .unwrap();
    let answer = users[1]
        .client
        .answer_round(group, round, "Heavy")
        .await
        .unwrap();
    wait_message(&mut users[0], group, "Heavy").await;
    users[0]
        .client
        .add_warning(group, answer.id, vec![1])
        .await
        .unwrap();
    // Carol hides topic 1: the answer is hidden in her round block; Bob's is not.
    wait_for!(users[2], "the warned answer hidden in Carol's round", {
        let view = users[2].client.rounds(group).await.unwrap().remove(0);
        view.answers
            .first()
            .filter(|a| a.hidden && a.warnings == vec![1])
            .map(|_| ())
    });
    wait_for!(users[1], "the warning on Bob's own answer", {
        let view = users[1].client.rounds(group).await.unwrap().remove(0);
        view.answers
            .first()
            .filter(|a| !a.hidden && a.warnings == vec![1])
            .map(|_| ())
    });
    // The prompt deleted for everyone leaves the round without it, everywhere.
    let prompt = users[0]
        .client
        .history(group, None, 100)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.text == "One word for your week?")
        .unwrap();
    users[0]
        .client
        .delete_for_everyone(group, vec![prompt.id])
        .await
        .unwrap();
    for u in users.iter_mut() {
        wait_for!(u, "the deleted prompt gone from the round", {
            let view = u.client.rounds(group).await.unwrap().remove(0);
            view.prompt.is_none().then_some(())
        });
    }
}

#[tokio::test]
async fn an_add_warning_sent_in_one_group_never_touches_another_groups_message() {
    let server = TestServer::start().await;
    let (mut users, group) =
        users_in_group(&server.url, server.trust(), &["Alice", "Bob", "Carol"]).await;
    users[0]
        .client
        .set_warning_topics(group, &topics())
        .await
        .unwrap();
    let message = users[0]
        .client
        .send_text(group, "Something that helped me this week", None)
        .await
        .unwrap();
    wait_message(&mut users[2], group, "Something that helped me this week").await;
    users[2]
        .client
        .set_hidden_topics(group, vec![1])
        .await
        .unwrap();
    // Bob, a plain member here, facilitates his own group with Carol and names Alice's
    // message there.
    let other = users[1].client.create_group().await.unwrap();
    let invite = users[1]
        .client
        .create_invite(
            other,
            confide_client::InviteOptions::new()
                .max_uses(1)
                .valid_for(Duration::from_secs(600)),
        )
        .await
        .unwrap();
    let invite = confide_client::Invite::from_link(&invite.to_link()).unwrap();
    users[2].client.join(&invite, None).await.unwrap();
    users[1]
        .client
        .send_body_unchecked(
            other,
            ContentBody::AddWarning {
                message: message.id,
                warnings: vec![1],
            },
        )
        .await
        .unwrap();
    users[1]
        .client
        .send_text(other, "after the warning", None)
        .await
        .unwrap();
    wait_message(&mut users[2], other, "after the warning").await;
    let seen = users[2]
        .client
        .history(group, None, 100)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.id == message.id)
        .unwrap();
    assert!(seen.warnings.is_empty() && !seen.hidden, "{seen:?}");
}
