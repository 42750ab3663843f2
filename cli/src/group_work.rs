//! The group-work tools' commands (issue 17): `confide meeting`, `round`, `warn`, `resources`
//! and `safety-plan`, and the pieces `confide read`, `send` and `crisis show` share with them
//! (how a message's content warnings and round part are shown).
//!
//! Meeting times are entered in the schedule's own time zone (the facilitator's choice, as for
//! open hours) and shown in the viewer's. Everything a facilitator or member wrote — prompts,
//! answers, topic labels, resources, notes, links — is shown through [`crate::text`], like any
//! other text someone else chose; the safety plan is the person's own, yet printed the same way.

use anyhow::{anyhow, bail};
use clap::Subcommand;
use serde_json::json;

use confide_client::{
    ChatMessage, Client, ClientError, Meeting, MeetingSchedule, Resource, ResourceLibrary,
    RoundPart, RoundTag, RoundView, SafetyPlan, WarningTopic, WarningTopics,
};
use confide_protocol::group_log::LogError;
use confide_protocol::{GroupId, Timestamp};

use crate::EXIT_FAILURE;
use crate::commands::{Out, Said, local_time, message_id, now_ms, parse_duration};
use crate::profile::{self, Profile};
use crate::text::{entry, line, one_line, quoted};

/// The days as `--weekly` takes them and the schedule lists them, Monday first (day 0).
const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// `confide meeting`: the group's meeting schedule.
#[derive(Subcommand, Debug)]
pub enum MeetingCommand {
    /// Shows the next meeting (in your time zone), the schedule, the video link and the note.
    Show {
        /// The group.
        group: String,
    },
    /// Sets the meeting schedule (facilitators). Times are in the schedule's time zone.
    ///
    /// Example: confide meeting set circle --time-zone Europe/Berlin --weekly "tue 18:00 90"
    ///          --once "2026-12-10 18:00 60" --link https://meet.example.org/circle
    #[command(verbatim_doc_comment)]
    // clap shows this comment verbatim as the help text: the link stays as people type it.
    #[allow(rustdoc::bare_urls)]
    Set {
        /// The group.
        group: String,
        /// IANA time zone the times are in, e.g. Europe/Berlin.
        #[arg(long, visible_alias = "tz")]
        time_zone: String,
        /// A weekly meeting: day (mon..sun), start time, minutes: "tue 18:00 90".
        #[arg(long, value_name = "DAY HH:MM MINUTES")]
        weekly: Vec<String>,
        /// A one-off meeting: date, start time, minutes: "2026-12-10 18:00 60".
        #[arg(long, value_name = "YYYY-MM-DD HH:MM MINUTES")]
        once: Vec<String>,
        /// Where the group meets online (https:// only).
        #[arg(long, value_name = "URL")]
        link: Option<String>,
        /// A note for members ("Bring your workbook").
        #[arg(long)]
        note: Option<String>,
    },
}

/// `confide round`: check-in rounds.
#[derive(Subcommand, Debug)]
pub enum RoundCommand {
    /// Opens a round with a prompt (facilitators); one round is open at a time.
    Open {
        /// The group.
        group: String,
        /// The prompt, e.g. "How are you, 1 to 5?".
        prompt: String,
        /// The turn order: members by pseudonym (@name) or user id, comma-separated.
        #[arg(long, value_delimiter = ',', value_name = "NAME,...")]
        order: Vec<String>,
        /// Closes by itself after this long, e.g. 30m, 2h.
        #[arg(long, value_name = "DURATION")]
        closes_in: Option<String>,
    },
    /// Answers the open round (a later answer replaces an earlier one).
    Answer {
        /// The group.
        group: String,
        /// Your answer.
        text: String,
    },
    /// Passes in the open round.
    Pass {
        /// The group.
        group: String,
    },
    /// Closes the open round (facilitators).
    Close {
        /// The group.
        group: String,
    },
    /// Shows the latest round as one block: the prompt, then the answers in turn order.
    Show {
        /// The group.
        group: String,
    },
}

/// `confide warn`: content warnings.
#[derive(Subcommand, Debug)]
pub enum WarnCommand {
    /// Lists the group's warning topics, and which you hide on this device.
    Topics {
        /// The group.
        group: String,
    },
    /// Sets the group's warning topics (facilitators): "1=Self-harm" "2=Grief" … Keep a
    /// topic's number when you rename it: messages and members' choices name it by number.
    SetTopics {
        /// The group.
        group: String,
        /// Topics as NUMBER=LABEL.
        #[arg(value_name = "ID=LABEL")]
        topics: Vec<String>,
    },
    /// Hides messages with these topics on your devices (never sent to the group or the server).
    Hide {
        /// The group.
        group: String,
        /// Topic numbers, as `confide warn topics` lists them.
        #[arg(required = true, value_name = "ID")]
        topics: Vec<u16>,
    },
    /// Shows messages with these topics again on this device.
    Unhide {
        /// The group.
        group: String,
        /// Topic numbers.
        #[arg(required = true, value_name = "ID")]
        topics: Vec<u16>,
    },
    /// Adds content warnings to a message (facilitators); everyone's devices add them.
    Add {
        /// The group.
        group: String,
        /// The message number as `confide read` shows it (5, or quoted: `'#5'`).
        message: String,
        /// Topic numbers.
        #[arg(required = true, value_name = "ID")]
        topics: Vec<u16>,
    },
}

/// `confide resources`: the group's resource library.
#[derive(Subcommand, Debug)]
pub enum ResourcesCommand {
    /// Lists the resources by category; --search keeps those with every word given.
    List {
        /// The group.
        group: String,
        /// Words to look for in the title, category and text.
        #[arg(long, value_name = "WORDS")]
        search: Option<String>,
    },
    /// Adds a resource (facilitators): a title in a category with a text, a link, or both.
    Add {
        /// The group.
        group: String,
        /// The title.
        #[arg(long)]
        title: String,
        /// The category, e.g. Grounding, Reading.
        #[arg(long)]
        category: String,
        /// The text.
        #[arg(long)]
        text: Option<String>,
        /// A link (https:// only).
        #[arg(long, value_name = "URL")]
        link: Option<String>,
    },
    /// Removes a resource (facilitators), by its number as `confide resources list` shows it.
    Remove {
        /// The group.
        group: String,
        /// The resource's number.
        index: usize,
    },
}

/// `confide safety-plan`: your own safety plan, kept only on your devices.
#[derive(Subcommand, Debug)]
pub enum SafetyPlanCommand {
    /// Shows your safety plan.
    Show,
    /// Adds an entry to a section: warning_signs, coping_steps, people_and_places, contacts,
    /// safe_environment or reasons.
    Add {
        /// The section.
        section: String,
        /// The entry.
        text: String,
    },
    /// Removes an entry, by its number as `confide safety-plan show` shows it.
    Remove {
        /// The section.
        section: String,
        /// The entry's number.
        index: usize,
    },
}

/// What a refusal of a facilitator's action says: who may do it, and the rule that refused.
/// A `NotAllowed` for another reason (a round already open, say) is said as the core says it.
fn facilitators_only(e: ClientError, what: &str) -> anyhow::Error {
    match &e {
        ClientError::NotAllowed(LogError::NotAllowed { role, .. }) if !role.is_moderator() => {
            anyhow::Error::new(Said {
                text: format!(
                    "only the group's facilitators can {what}; you are a {} here ({})",
                    role.as_str(),
                    e.code()
                ),
                exit: EXIT_FAILURE,
            })
        }
        _ => e.into(),
    }
}

/// Parses `HH:MM` into minutes after midnight.
fn parse_clock(text: &str) -> anyhow::Result<u16> {
    let (h, m) = text
        .split_once(':')
        .ok_or_else(|| anyhow!("a time looks like 18:00, got {text:?}"))?;
    let (h, m): (u16, u16) = (h.parse()?, m.parse()?);
    if h > 23 || m > 59 {
        bail!("{text:?} is not a time of day");
    }
    Ok(h * 60 + m)
}

/// Parses a meeting's length in minutes.
fn parse_minutes(text: &str) -> anyhow::Result<u16> {
    text.parse()
        .map_err(|_| anyhow!("a meeting's length is a number of minutes, got {text:?}"))
}

/// Parses `--weekly "tue 18:00 90"`.
fn parse_weekly(text: &str) -> anyhow::Result<Meeting> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [day, start, minutes] = parts.as_slice() else {
        bail!("a weekly meeting looks like \"tue 18:00 90\" (day, start, minutes), got {text:?}");
    };
    let day = DAYS
        .iter()
        .position(|d| day.to_ascii_lowercase().starts_with(d))
        .ok_or_else(|| anyhow!("unknown day {day:?}: mon, tue, wed, thu, fri, sat or sun"))?;
    Ok(Meeting::Weekly {
        // At most 6: an index into the seven days.
        day: day as u8,
        start_minute: parse_clock(start)?,
        minutes: parse_minutes(minutes)?,
    })
}

/// Parses `--once "2026-12-10 18:00 60"`.
fn parse_once(text: &str) -> anyhow::Result<Meeting> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [date, start, minutes] = parts.as_slice() else {
        bail!(
            "a one-off meeting looks like \"2026-12-10 18:00 60\" (date, start, minutes), got {text:?}"
        );
    };
    Ok(Meeting::Once {
        date: (*date).to_string(),
        start_minute: parse_clock(start)?,
        minutes: parse_minutes(minutes)?,
    })
}

/// `HH:MM` of minutes after midnight.
fn clock(minute: u16) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

/// A meeting of the schedule, in the schedule's own time: "every Tuesday 18:00, 90 min".
fn meeting_text(m: &Meeting) -> String {
    const NAMES: [&str; 7] = [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ];
    match m {
        Meeting::Weekly {
            day,
            start_minute,
            minutes,
        } => format!(
            "every {} {}, {minutes} min",
            NAMES.get(usize::from(*day)).unwrap_or(&"?"),
            clock(*start_minute)
        ),
        Meeting::Once {
            date,
            start_minute,
            minutes,
        } => format!(
            "once on {} {}, {minutes} min",
            one_line(date),
            clock(*start_minute)
        ),
    }
}

/// The day of the week of `t` in this computer's time zone ("Tue").
fn local_weekday(t: Timestamp) -> String {
    jiff::Timestamp::from_millisecond(i64::try_from(t.0).unwrap_or(i64::MAX))
        .map(|ts| {
            ts.to_zoned_datetime(jiff::tz::TimeZone::system())
                .strftime("%a")
                .to_string()
        })
        .unwrap_or_default()
}

/// When a meeting runs, in this computer's time zone: "Tue 2026-12-08 18:00–19:30", the
/// end's date given only when it is another day.
pub(crate) fn meeting_span(starts_at: Timestamp, ends_at: Timestamp) -> String {
    let (start, end) = (local_time(starts_at), local_time(ends_at));
    let end = match (start.split_once(' '), end.split_once(' ')) {
        (Some((start_day, _)), Some((end_day, end_time))) if start_day == end_day => {
            end_time.to_string()
        }
        _ => end,
    };
    format!("{} {start}–{end}", local_weekday(starts_at))
}

/// "Next meeting: Tue 2026-12-08 18:00–19:30 (your time)", or "Meeting now: …" for one in
/// progress.
pub(crate) fn next_meeting_line(next: &confide_client::NextMeeting) -> String {
    let span = meeting_span(next.starts_at, next.ends_at);
    if next.starts_at.0 <= now_ms() {
        format!("Meeting now: {span} (your time)")
    } else {
        format!("Next meeting: {span} (your time)")
    }
}

/// The labels of `warnings` as the group's topics name them, e.g. "Grief, Self-harm"; a topic
/// the group does not define (any more) is said as such, never left out.
pub(crate) fn warning_labels(warnings: &[u16], topics: Option<&WarningTopics>) -> String {
    let mut known = Vec::new();
    let mut unknown = 0;
    for id in warnings {
        match topics.and_then(|t| t.label(*id)) {
            Some(label) => known.push(one_line(label)),
            None => unknown += 1,
        }
    }
    match (known.is_empty(), unknown) {
        (_, 0) => known.join(", "),
        (true, _) => "a topic without a label".into(),
        (false, _) => format!("{}, another topic", known.join(", ")),
    }
}

/// What `confide read` puts after the sender's name for a message's warnings and round part:
/// " [content warning: Grief]", " [round answer]". Built from safe parts only.
pub(crate) fn message_marks(
    m: &ChatMessage,
    topics: Option<&WarningTopics>,
    show_hidden: bool,
) -> String {
    let mut marks = String::new();
    if let Some(RoundTag { part, .. }) = &m.round {
        marks.push_str(match part {
            RoundPart::Prompt => " [round prompt]",
            RoundPart::Answer => " [round answer]",
            RoundPart::Pass => " [round: passed]",
        });
    }
    // A hidden message says its warning in place of its text ([`hidden_text`]).
    if !m.warnings.is_empty() && (show_hidden || !m.hidden) {
        marks.push_str(&format!(
            " [content warning: {}]",
            warning_labels(&m.warnings, topics)
        ));
    }
    marks
}

/// What `confide read` shows instead of a hidden message's text.
pub(crate) fn hidden_text(m: &ChatMessage, topics: Option<&WarningTopics>) -> String {
    format!(
        "[content warning: {} — hidden: confide read --show-hidden]",
        warning_labels(&m.warnings, topics)
    )
}

/// A message's round tag for `--json`.
pub(crate) fn round_json(tag: Option<&RoundTag>) -> serde_json::Value {
    match tag {
        Some(t) => json!({ "id": t.id, "part": t.part }),
        None => serde_json::Value::Null,
    }
}

/// The open round of a group, or a plain "no round is open".
async fn open_round(client: &Client, group: GroupId) -> anyhow::Result<RoundView> {
    client
        .rounds(group)
        .await?
        .into_iter()
        .rev()
        .find(|r| r.open)
        .ok_or_else(|| {
            anyhow::Error::new(Said {
                text: "no round is open in this group (`confide round show` shows the last one)"
                    .into(),
                exit: EXIT_FAILURE,
            })
        })
}

/// The group's current topics, or none.
async fn topics_of(client: &Client, group: GroupId) -> anyhow::Result<Option<WarningTopics>> {
    Ok(client.pinned(group).await?.warning_topics)
}

/// A schedule for people: the next meeting in this computer's time zone, then the meetings in
/// the schedule's own, the video link and the note.
pub(crate) fn schedule_text(
    schedule: &MeetingSchedule,
    next: Option<&confide_client::NextMeeting>,
    columns: Option<usize>,
) -> String {
    let mut lines = vec![match next {
        Some(n) => next_meeting_line(n),
        None => "No meeting ahead.".into(),
    }];
    lines.push(line(
        &format!("Schedule ({} time):", one_line(&schedule.time_zone)),
        columns,
    ));
    for m in &schedule.meetings {
        lines.push(format!("  {}", meeting_text(m)));
    }
    if let Some(link) = &schedule.video_link {
        lines.push(line(&format!("Link: {}", one_line(link)), columns));
    }
    if let Some(note) = &schedule.note {
        lines.push(format!("Note:\n{}", quoted(note, columns)));
    }
    lines.join("\n")
}

/// Runs `confide meeting …`.
pub async fn meeting(
    cmd: &MeetingCommand,
    out: &Out,
    profile: &Profile,
    client: &Client,
) -> anyhow::Result<()> {
    match cmd {
        MeetingCommand::Show { group } => {
            let group = profile.group(group)?;
            let synced = client.synced().await;
            let schedule = client.pinned(group).await?.meetings;
            let next = client.next_meeting(group).await?;
            let Some(schedule) = schedule else {
                out.print(
                    "this group has no meeting schedule (or it has not arrived yet)",
                    json!({ "schedule": null, "next": null }),
                );
                return crate::commands::fresh(synced);
            };
            let lines = schedule_text(&schedule, next.as_ref(), out.columns);
            out.print(lines, json!({ "schedule": schedule, "next": next }));
            crate::commands::fresh(synced)?;
        }
        MeetingCommand::Set {
            group,
            time_zone,
            weekly,
            once,
            link,
            note,
        } => {
            let group = profile.group(group)?;
            let mut meetings = weekly
                .iter()
                .map(|w| parse_weekly(w))
                .collect::<anyhow::Result<Vec<_>>>()?;
            for o in once {
                meetings.push(parse_once(o)?);
            }
            let schedule = MeetingSchedule {
                time_zone: time_zone.clone(),
                meetings,
                video_link: link.clone(),
                note: note.clone(),
            };
            client
                .set_meetings(group, &schedule)
                .await
                .map_err(|e| facilitators_only(e, "set the meeting schedule"))?;
            let next = client.next_meeting(group).await?;
            out.print(
                match &next {
                    Some(n) => format!("meeting schedule pinned. {}", next_meeting_line(n)),
                    None => "meeting schedule pinned (no meeting ahead)".into(),
                },
                json!({ "pinned": true, "next": next }),
            );
        }
    }
    Ok(())
}

/// Runs `confide round …`.
pub async fn round(
    cmd: &RoundCommand,
    out: &Out,
    profile: &Profile,
    client: &Client,
) -> anyhow::Result<()> {
    match cmd {
        RoundCommand::Open {
            group,
            prompt,
            order,
            closes_in,
        } => {
            let group = profile.group(group)?;
            let order = if order.is_empty() {
                None
            } else {
                let mut users = Vec::new();
                for name in order {
                    users.push(profile::user(client, group, name.trim()).await?);
                }
                Some(users)
            };
            let closes_at = closes_in
                .as_deref()
                .map(parse_duration)
                .transpose()?
                .map(|d| {
                    Timestamp(
                        now_ms().saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                    )
                });
            let id = client
                .open_round(group, prompt, order, closes_at)
                .await
                .map_err(|e| facilitators_only(e, "open a round"))?;
            out.print(
                match closes_at {
                    Some(t) => format!("round opened; it closes at {}", local_time(t)),
                    None => "round opened; close it with `confide round close`".into(),
                },
                json!({ "round": id, "closes_at": closes_at }),
            );
        }
        RoundCommand::Answer { group, text } => {
            let group = profile.group(group)?;
            let r = open_round(client, group).await?;
            let m = client.answer_round(group, r.id, text).await?;
            out.print(
                format!("answered (#{})", m.number),
                json!({ "round": r.id, "number": m.number, "id": m.id }),
            );
        }
        RoundCommand::Pass { group } => {
            let group = profile.group(group)?;
            let r = open_round(client, group).await?;
            let m = client.pass_round(group, r.id).await?;
            out.print(
                format!("passed (#{})", m.number),
                json!({ "round": r.id, "number": m.number, "id": m.id }),
            );
        }
        RoundCommand::Close { group } => {
            let group = profile.group(group)?;
            let r = open_round(client, group).await?;
            client
                .close_round(group, r.id)
                .await
                .map_err(|e| facilitators_only(e, "close a round"))?;
            out.print("round closed", json!({ "round": r.id, "closed": true }));
        }
        RoundCommand::Show { group } => {
            let group = profile.group(group)?;
            let synced = client.synced().await;
            let rounds = client.rounds(group).await?;
            match rounds.last() {
                None => out.print("no round in this group yet", serde_json::Value::Null),
                Some(r) => {
                    let members = client.members(group).await.unwrap_or_default();
                    out.print(round_block(r, &members, out.columns), round_value(r));
                }
            }
            crate::commands::fresh(synced)?;
        }
    }
    Ok(())
}

/// A hidden prompt in a round block: its text stays out, as everywhere (PROTOCOL.md §6.9).
const HIDDEN_IN_ROUND_PROMPT: &str =
    "  Prompt: [content warning — hidden: confide read --show-hidden]";

/// A round as `--json` gives it.
fn round_value(r: &RoundView) -> serde_json::Value {
    let answers: Vec<_> = r
        .answers
        .iter()
        // A hidden answer's text stays out, as in `read --json` (PROTOCOL.md §6.9).
        .map(|a| json!({ "user": a.user, "name": a.name, "number": a.number, "id": a.message, "text": (!a.hidden).then_some(&a.text), "hidden": a.hidden, "warnings": a.warnings, "passed": a.passed, "sent_at": a.sent_at }))
        .collect();
    json!({
        "round": r.id,
        "opened_by": r.opened_by,
        "opened_by_name": r.opened_by_name,
        "opened_at": r.opened_at,
        "closes_at": r.closes_at,
        "ended_at": r.ended_at,
        "open": r.open,
        "prompt": if r.prompt_hidden { None } else { r.prompt.as_ref() },
        "prompt_hidden": r.prompt_hidden,
        "prompt_warnings": r.prompt_warnings,
        "order": r.order,
        "answers": answers,
        "answered": r.answered,
    })
}

/// A round as one block: who opened it and whether it is open, the prompt, the answers (turn
/// order first), then who in the turn order has not answered yet.
pub(crate) fn round_block(
    r: &RoundView,
    members: &[confide_client::MemberInfo],
    columns: Option<usize>,
) -> String {
    let state = match (r.open, r.closes_at, r.ended_at) {
        (true, Some(t), _) => format!("open until {}", local_time(t)),
        (true, None, _) => "open".into(),
        (false, _, Some(t)) => format!("closed {}", local_time(t)),
        (false, _, None) => "closed".into(),
    };
    let mut lines = vec![line(
        &format!(
            "Round opened by {} {} ({state})",
            one_line(&r.opened_by_name),
            local_time(r.opened_at)
        ),
        columns,
    )];
    lines.push(match &r.prompt {
        Some(_) if r.prompt_hidden => HIDDEN_IN_ROUND_PROMPT.into(),
        Some(p) => entry("  Prompt: ", p, columns),
        None => "  Prompt: (not arrived yet)".into(),
    });
    for a in &r.answers {
        let header = format!("  #{:<5} {}: ", a.number, one_line(&a.name));
        lines.push(if a.passed {
            line(&format!("{header}passed"), columns)
        } else if a.hidden {
            line(
                &format!("{header}[content warning — hidden: confide read --show-hidden]"),
                columns,
            )
        } else {
            entry(&header, &a.text, columns)
        });
    }
    if r.answers.is_empty() {
        lines.push("  (no answers yet)".into());
    }
    if let Some(order) = &r.order {
        let waiting: Vec<String> = order
            .iter()
            .filter(|u| !r.answers.iter().any(|a| a.user == **u))
            .map(|u| {
                members
                    .iter()
                    .find(|m| m.user == *u)
                    .map_or_else(|| u.to_string(), |m| one_line(&m.display_name))
            })
            .collect();
        if !waiting.is_empty() && r.open {
            lines.push(line(
                &format!("  Still to answer: {}", waiting.join(", ")),
                columns,
            ));
        }
    }
    lines.join("\n")
}

/// Parses `1=Self-harm`.
fn parse_topic(text: &str) -> anyhow::Result<WarningTopic> {
    let (id, label) = text
        .split_once('=')
        .ok_or_else(|| anyhow!("a topic looks like 1=Self-harm, got {text:?}"))?;
    let id = id
        .trim()
        .parse()
        .map_err(|_| anyhow!("a topic's number is 0 to 65535, got {id:?}"))?;
    Ok(WarningTopic {
        id,
        label: label.trim().to_string(),
    })
}

/// Runs `confide warn …`.
pub async fn warn(
    cmd: &WarnCommand,
    out: &Out,
    profile: &Profile,
    client: &Client,
) -> anyhow::Result<()> {
    match cmd {
        WarnCommand::Topics { group } => {
            let group = profile.group(group)?;
            let topics = topics_of(client, group).await?.map(|t| t.topics);
            let hidden = client.hidden_topics(group).await?;
            let topics = topics.unwrap_or_default();
            if out.json {
                let list: Vec<_> = topics
                    .iter()
                    .map(|t| json!({ "id": t.id, "label": t.label, "hidden": hidden.contains(&t.id) }))
                    .collect();
                println!("{}", json!({ "topics": list, "hidden": hidden }));
            } else if topics.is_empty() {
                println!("this group has no warning topics");
            } else {
                for t in &topics {
                    let mark = if hidden.contains(&t.id) {
                        "  (hidden on this device)"
                    } else {
                        ""
                    };
                    println!(
                        "{}",
                        line(
                            &format!("{:>5}  {}{mark}", t.id, one_line(&t.label)),
                            out.columns
                        )
                    );
                }
            }
        }
        WarnCommand::SetTopics { group, topics } => {
            let group = profile.group(group)?;
            let topics = WarningTopics {
                topics: topics
                    .iter()
                    .map(|t| parse_topic(t))
                    .collect::<anyhow::Result<_>>()?,
            };
            client
                .set_warning_topics(group, &topics)
                .await
                .map_err(|e| facilitators_only(e, "set the warning topics"))?;
            out.print(
                format!("{} warning topics pinned", topics.topics.len()),
                json!({ "pinned": true }),
            );
        }
        WarnCommand::Hide { group, topics } | WarnCommand::Unhide { group, topics } => {
            let hide = matches!(cmd, WarnCommand::Hide { .. });
            let group = profile.group(group)?;
            let mut hidden = client.hidden_topics(group).await?;
            if hide {
                hidden.extend_from_slice(topics);
            } else {
                hidden.retain(|t| !topics.contains(t));
            }
            hidden.sort_unstable();
            hidden.dedup();
            client.set_hidden_topics(group, hidden.clone()).await?;
            let known = topics_of(client, group).await?;
            let names = if hidden.is_empty() {
                "none".to_string()
            } else {
                warning_labels(&hidden, known.as_ref())
            };
            out.print(
                format!("hidden on this device: {names}"),
                json!({ "hidden": hidden }),
            );
        }
        WarnCommand::Add {
            group,
            message,
            topics,
        } => {
            let group = profile.group(group)?;
            let id = message_id(client, group, message).await?;
            client
                .add_warning(group, id, topics.clone())
                .await
                .map_err(|e| facilitators_only(e, "add a content warning"))?;
            out.print(
                "content warning added for everyone",
                json!({ "ok": true, "message": id, "warnings": topics }),
            );
        }
    }
    Ok(())
}

/// One resource for people: "\[3\] Box breathing (Grounding)" then its text and link.
pub(crate) fn resource_text(number: usize, r: &Resource, columns: Option<usize>) -> String {
    let mut lines = vec![line(
        &format!(
            "[{number}] {} ({})",
            one_line(&r.title),
            one_line(&r.category)
        ),
        columns,
    )];
    if let Some(text) = &r.text {
        lines.push(quoted(text, columns));
    }
    if let Some(link) = &r.link {
        lines.push(line(&format!("    link: {}", one_line(link)), columns));
    }
    lines.join("\n")
}

/// The library to edit: refused while the log names a newer version than the one this device
/// holds, which an edit would silently overwrite.
async fn current_library(
    client: &Client,
    group: confide_protocol::GroupId,
) -> anyhow::Result<Option<ResourceLibrary>> {
    let _ = client.sync().await;
    let pinned = client.pinned(group).await?;
    if pinned
        .documents_pending
        .contains(&confide_protocol::envelope::PinnedKind::Resources)
    {
        bail!(
            "the group's newest resource library has not reached this device yet; try again in a moment (editing now would overwrite it)"
        );
    }
    Ok(pinned.resources)
}

/// Runs `confide resources …`.
pub async fn resources(
    cmd: &ResourcesCommand,
    out: &Out,
    profile: &Profile,
    client: &Client,
) -> anyhow::Result<()> {
    match cmd {
        ResourcesCommand::List { group, search } => {
            let group = profile.group(group)?;
            let synced = client.synced().await;
            let library = client
                .pinned(group)
                .await?
                .resources
                .unwrap_or(ResourceLibrary {
                    resources: Vec::new(),
                });
            let mut found = library.search(search.as_deref().unwrap_or(""));
            // By category (in the order each first appears), then in the facilitators' order.
            let first_of = |category: &str| {
                library
                    .resources
                    .iter()
                    .position(|r| r.category == category)
                    .unwrap_or(usize::MAX)
            };
            found.sort_by_key(|(i, r)| (first_of(&r.category), *i));
            if out.json {
                let list: Vec<_> = found
                    .iter()
                    .map(|(i, r)| json!({ "number": i + 1, "resource": r }))
                    .collect();
                println!("{}", serde_json::Value::Array(list));
            } else if found.is_empty() {
                println!(
                    "{}",
                    if library.resources.is_empty() {
                        "this group has no resources"
                    } else {
                        "no resource matches"
                    }
                );
            } else {
                let blocks: Vec<String> = found
                    .iter()
                    .map(|(i, r)| resource_text(i + 1, r, out.columns))
                    .collect();
                println!("{}", blocks.join("\n"));
            }
            crate::commands::fresh(synced)?;
        }
        ResourcesCommand::Add {
            group,
            title,
            category,
            text,
            link,
        } => {
            let group = profile.group(group)?;
            let mut library = current_library(client, group)
                .await?
                .unwrap_or(ResourceLibrary {
                    resources: Vec::new(),
                });
            library.resources.push(Resource {
                title: title.clone(),
                category: category.clone(),
                text: text.clone(),
                link: link.clone(),
            });
            let number = library.resources.len();
            client
                .set_resources(group, &library)
                .await
                .map_err(|e| facilitators_only(e, "change the resources"))?;
            out.print(
                format!("resource [{number}] added"),
                json!({ "number": number }),
            );
        }
        ResourcesCommand::Remove { group, index } => {
            let group = profile.group(group)?;
            let mut library = current_library(client, group)
                .await?
                .ok_or_else(|| anyhow!("this group has no resources"))?;
            if *index == 0 || *index > library.resources.len() {
                bail!(
                    "no resource [{index}]: the library has {} (see `confide resources list`)",
                    library.resources.len()
                );
            }
            let gone = library.resources.remove(index - 1);
            client
                .set_resources(group, &library)
                .await
                .map_err(|e| facilitators_only(e, "change the resources"))?;
            out.print(
                line(
                    &format!("removed [{index}] {}", one_line(&gone.title)),
                    out.columns,
                ),
                json!({ "removed": index }),
            );
        }
    }
    Ok(())
}

/// The sections of a safety plan as people read them, in [`SafetyPlan::sections`] order.
const SECTION_TITLES: [&str; 6] = [
    "Warning signs",
    "Things I can do on my own to cope",
    "People and places that take my mind off things",
    "People and services I can ask for help",
    "Making my surroundings safer",
    "What matters most to me",
];

/// A section of the plan by its name, to change it.
fn section_mut<'a>(plan: &'a mut SafetyPlan, name: &str) -> anyhow::Result<&'a mut Vec<String>> {
    Ok(
        match name.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "warning_signs" => &mut plan.warning_signs,
            "coping_steps" => &mut plan.coping_steps,
            "people_and_places" => &mut plan.people_and_places,
            "contacts" => &mut plan.contacts,
            "safe_environment" => &mut plan.safe_environment,
            "reasons" => &mut plan.reasons,
            _ => bail!(
                "unknown section {name:?}: warning_signs, coping_steps, people_and_places, contacts, \
             safe_environment or reasons"
            ),
        },
    )
}

/// The plan for people: each section with a title and its numbered entries; empty sections
/// say how to fill them.
pub(crate) fn plan_text(plan: &SafetyPlan, columns: Option<usize>) -> String {
    let mut lines = vec!["Your safety plan (kept only on your devices):".to_string()];
    for ((name, entries), title) in plan.sections().iter().zip(SECTION_TITLES) {
        lines.push(format!("\n{title} ({name}):"));
        if entries.is_empty() {
            lines.push(format!(
                "    (nothing yet: `confide safety-plan add {name} TEXT`)"
            ));
        }
        for (i, e) in entries.iter().enumerate() {
            lines.push(entry(&format!("  {}. ", i + 1), e, columns));
        }
    }
    lines.join("\n")
}

/// The plan for `--json`: each section by name.
fn plan_value(plan: &SafetyPlan) -> serde_json::Value {
    let map: serde_json::Map<String, serde_json::Value> = plan
        .sections()
        .iter()
        .map(|(name, entries)| ((*name).to_string(), json!(entries)))
        .collect();
    serde_json::Value::Object(map)
}

/// Runs `confide safety-plan …`.
pub async fn safety_plan(
    cmd: &SafetyPlanCommand,
    out: &Out,
    client: &Client,
) -> anyhow::Result<()> {
    match cmd {
        SafetyPlanCommand::Show => {
            let plan = client.safety_plan().await?;
            out.print(plan_text(&plan, out.columns), plan_value(&plan));
        }
        SafetyPlanCommand::Add { section, text } => {
            let mut plan = client.safety_plan().await?;
            let entries = section_mut(&mut plan, section)?;
            entries.push(text.clone());
            let number = entries.len();
            client.set_safety_plan(plan).await?;
            out.print(
                format!("added as entry {number}; only your devices keep it"),
                json!({ "number": number }),
            );
        }
        SafetyPlanCommand::Remove { section, index } => {
            let mut plan = client.safety_plan().await?;
            let entries = section_mut(&mut plan, section)?;
            if *index == 0 || *index > entries.len() {
                bail!(
                    "no entry {index} in {section}: it has {} (see `confide safety-plan show`)",
                    entries.len()
                );
            }
            entries.remove(index - 1);
            client.set_safety_plan(plan).await?;
            out.print(
                format!("entry {index} removed"),
                json!({ "removed": index }),
            );
        }
    }
    Ok(())
}

/// What `confide crisis show` adds for the person's own eyes: their safety plan, if they wrote
/// one (else how to start one).
pub(crate) async fn plan_for_crisis(client: &Client, columns: Option<usize>) -> String {
    match client.safety_plan().await {
        Ok(plan) if plan.is_empty() => "You have no safety plan on this device; start one with \
             `confide safety-plan add coping_steps TEXT`."
            .into(),
        Ok(plan) => plan_text(&plan, columns),
        Err(_) => "Your safety plan could not be read on this device.".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meetings_are_parsed_as_typed_and_listed_in_the_schedules_time() {
        let weekly = parse_weekly("Tue 18:00 90").unwrap();
        assert_eq!(
            weekly,
            Meeting::Weekly {
                day: 1,
                start_minute: 18 * 60,
                minutes: 90
            }
        );
        assert_eq!(meeting_text(&weekly), "every Tuesday 18:00, 90 min");
        let once = parse_once("2026-12-10 07:05 60").unwrap();
        assert_eq!(meeting_text(&once), "once on 2026-12-10 07:05, 60 min");
        for bad in [
            "tue 18:00",
            "xyz 18:00 90",
            "tue 25:00 90",
            "tue 18:00 long",
        ] {
            assert!(parse_weekly(bad).is_err(), "{bad}");
        }
        assert!(parse_once("2026-12-10 18:00").is_err());
    }

    #[test]
    fn topics_and_sections_are_parsed_and_unknown_topics_still_warn() {
        assert_eq!(
            parse_topic("2= Grief").unwrap(),
            WarningTopic {
                id: 2,
                label: "Grief".into()
            }
        );
        assert!(parse_topic("Grief").is_err());
        let topics = WarningTopics {
            topics: vec![parse_topic("1=Self-harm").unwrap()],
        };
        assert_eq!(warning_labels(&[1], Some(&topics)), "Self-harm");
        assert_eq!(
            warning_labels(&[1, 9], Some(&topics)),
            "Self-harm, another topic"
        );
        assert_eq!(warning_labels(&[9], None), "a topic without a label");
        let mut plan = SafetyPlan::default();
        section_mut(&mut plan, "coping-steps")
            .unwrap()
            .push("walk".into());
        assert_eq!(plan.coping_steps, ["walk"]);
        assert!(section_mut(&mut plan, "hobbies").is_err());
    }
}
