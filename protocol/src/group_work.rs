//! The group-work tools' content: the meeting schedule, warning topics, the resource library,
//! check-in round tags and a person's own safety plan (PROTOCOL.md §6.9).
//!
//! The schedule, the topics and the library are facilitator-owned *pinned* documents
//! ([`crate::envelope::PinnedKind`]): the group log holds only a keyed commitment
//! (`set_pinned`), and the document travels end-to-end encrypted as the text of a pinned
//! message, this module's JSON. Rounds are opened and closed by ops (`open_round`,
//! `close_round`) that carry no text; the prompt and the answers are ordinary encrypted text
//! messages tagged with a [`RoundTag`]. The safety plan never leaves the person's devices.
//!
//! Every document is parsed strictly (unknown members are refused) and checked with its
//! `validate`, which the author's client runs before publishing and every reader runs before
//! showing: a document that fails is not shown (the reader keeps the last good one, if any).

use serde::{Deserialize, Serialize};

use crate::ids::{Timestamp, UserId};

/// Most bytes of a group-work document's JSON (the `text` of its pinned message). JSON escaping
/// at most doubles it inside the pinned message's body, so a valid document always fits one
/// message (`MAX_BODY_LEN` = 65,503 bytes) with room for the rest of the body.
pub const MAX_DOCUMENT_BYTES: usize = 30_000;
/// Most meetings in one schedule.
pub const MAX_MEETINGS: usize = 32;
/// Longest meeting, in minutes (a whole day).
pub const MAX_MEETING_MINUTES: u16 = 1440;
/// Most characters (Unicode scalar values) in a schedule's note.
pub const MAX_MEETING_NOTE_CHARS: usize = 1000;
/// Most characters in a link (a video link or a resource's link).
pub const MAX_LINK_CHARS: usize = 2048;
/// Most warning topics a group defines.
pub const MAX_WARNING_TOPICS: usize = 32;
/// Most characters in a warning topic's label.
pub const MAX_TOPIC_LABEL_CHARS: usize = 64;
/// Most warning topics on one message (a sender's tags, or a facilitator's added warning).
pub const MAX_WARNINGS_PER_MESSAGE: usize = 8;
/// Most resources in the library.
pub const MAX_RESOURCES: usize = 100;
/// Most characters in a resource's title.
pub const MAX_RESOURCE_TITLE_CHARS: usize = 200;
/// Most characters in a resource's category.
pub const MAX_RESOURCE_CATEGORY_CHARS: usize = 64;
/// Most characters in a resource's text.
pub const MAX_RESOURCE_TEXT_CHARS: usize = 4000;
/// Most people named in a round's turn order.
pub const MAX_ROUND_ORDER: usize = 64;
/// Longest a round may stay open when it closes by itself (`closes_at` − `at`): one week.
pub const MAX_ROUND_MILLIS: u64 = 7 * 24 * 60 * 60 * 1000;
/// Most entries in one section of a safety plan.
pub const MAX_PLAN_ENTRIES: usize = 20;
/// Most characters in one entry of a safety plan.
pub const MAX_PLAN_ENTRY_CHARS: usize = 500;
/// Most bytes of a safety plan as JSON: it must fit one sealed payload to the person's own
/// other devices ([`crate::own_devices`]) with room to spare.
pub const MAX_PLAN_BYTES: usize = 32 * 1024;

/// Why a group-work document was refused (the message names the field and the limit).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidDocument(pub String);

fn invalid(msg: impl Into<String>) -> InvalidDocument {
    InvalidDocument(msg.into())
}

/// Checks a short human text: 1 to `max` characters, not blank, and no control character
/// (line breaks are allowed only where `multiline`). A one-line text (a label, a title, a
/// category) also has no bidirectional control and no line or paragraph separator, as display
/// names (front ends show these in their own chrome); multi-line texts keep bidi controls, which
/// right-to-left writing needs, and are neutralised when shown ([`crate::display`]).
fn check_text(what: &str, text: &str, max: usize, multiline: bool) -> Result<(), InvalidDocument> {
    use crate::group_log::{is_bidi_control, is_line_separator};
    let chars = text.chars().count();
    if chars == 0 || chars > max || text.trim().is_empty() {
        return Err(invalid(format!("{what} must have 1 to {max} characters")));
    }
    let bad = |c: char| {
        if multiline {
            c.is_control() && c != '\n'
        } else {
            c.is_control() || is_bidi_control(c) || is_line_separator(c)
        }
    };
    if text.chars().any(bad) {
        return Err(invalid(format!(
            "{what} contains a control, bidirectional or line-separator character"
        )));
    }
    Ok(())
}

/// Parses a document of type `T` from `text`: at most [`MAX_DOCUMENT_BYTES`], strict JSON. The
/// error names no value (documents are content; errors may reach logs).
pub(crate) fn parse_document<T: serde::de::DeserializeOwned>(
    text: &str,
) -> Result<T, InvalidDocument> {
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(invalid(format!(
            "the document is too long: at most {MAX_DOCUMENT_BYTES} bytes"
        )));
    }
    serde_json::from_str(text).map_err(|e| {
        invalid(format!(
            "not a valid document (line {}, column {})",
            e.line(),
            e.column()
        ))
    })
}

/// Parses a date written exactly `YYYY-MM-DD` (jiff alone also takes other ISO 8601 forms,
/// which another reader might not).
fn parse_date(date: &str) -> Result<jiff::civil::Date, InvalidDocument> {
    let b = date.as_bytes();
    let exact = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !exact {
        return Err(invalid("a date is written YYYY-MM-DD"));
    }
    date.parse::<jiff::civil::Date>()
        .map_err(|_| invalid("a date is written YYYY-MM-DD and must exist"))
}

/// Checks a link, by an allowlist rather than a URL parser (parsers disagree on the edge cases
/// an attacker would use): `https://`, then a host of dot-separated labels of ASCII letters,
/// digits and `-` (at least two labels, none empty or starting or ending with `-`; an
/// internationalised name in its `xn--` form), an optional `:port`, then optionally a path,
/// query or fragment starting with `/`, `?` or `#` of printable ASCII without space, `"`, `<`,
/// `>`, `\`, `^`, `` ` ``, `{`, `|` or `}`; at most [`MAX_LINK_CHARS`] in all. So there is no
/// user-info (`https://trusted@evil`), no backslash that parsers read differently, nothing a
/// page could interpret, and the host a person reads is the host that is opened. Front ends
/// still show the whole link, and open it only when asked.
pub fn validate_link(link: &str) -> Result<(), InvalidDocument> {
    let refuse = || {
        invalid(format!(
            "a link must be https://host/... with a plain host name, at most {MAX_LINK_CHARS} characters"
        ))
    };
    if link.len() > MAX_LINK_CHARS {
        return Err(refuse());
    }
    let rest = link.strip_prefix("https://").ok_or_else(refuse)?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    // A name, not an address: the last label has a letter (no `https://192.168.1.1/`, which
    // points into the reader's own network).
    let host_ok = host.split('.').count() >= 2
        && host.split('.').all(label_ok)
        && host
            .rsplit('.')
            .next()
            .is_some_and(|tld| tld.chars().any(|c| c.is_ascii_alphabetic()));
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.chars().all(|c| c.is_ascii_digit()));
    let tail_ok = tail
        .chars()
        .all(|c| c.is_ascii_graphic() && !"\"<>\\^`{|}".contains(c));
    if host_ok && port_ok && tail_ok {
        Ok(())
    } else {
        Err(refuse())
    }
}

/// The group's meeting schedule (pinned kind `meetings`).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeetingSchedule {
    /// IANA time zone the meetings' local times are in (as for open hours).
    pub time_zone: String,
    /// The meetings: 0 to [`MAX_MEETINGS`].
    pub meetings: Vec<Meeting>,
    /// Where the group meets online: an `https://` link, shown whole, opened only on a tap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video_link: Option<String>,
    /// A note for members ("Bring your workbook").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One meeting of a [`MeetingSchedule`], in the schedule's local time.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Meeting {
    /// Once, on `date` (`YYYY-MM-DD`) at `start_minute` after local midnight.
    Once {
        /// The local date, `YYYY-MM-DD`.
        date: String,
        /// Minutes after local midnight, below 1440.
        start_minute: u16,
        /// How long, 1 to [`MAX_MEETING_MINUTES`].
        minutes: u16,
    },
    /// Every week on `day` (0 = Monday … 6 = Sunday) at `start_minute`.
    Weekly {
        /// Day of the week, 0 = Monday … 6 = Sunday.
        day: u8,
        /// Minutes after local midnight, below 1440.
        start_minute: u16,
        /// How long, 1 to [`MAX_MEETING_MINUTES`].
        minutes: u16,
    },
}

/// The next meeting of a schedule, as [`MeetingSchedule::next_meeting`] finds it.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct NextMeeting {
    /// When it starts.
    pub starts_at: Timestamp,
    /// When it ends.
    pub ends_at: Timestamp,
    /// Which entry of [`MeetingSchedule::meetings`] it is.
    pub index: usize,
}

fn time_zone(name: &str) -> Result<jiff::tz::TimeZone, InvalidDocument> {
    let ok = !name.is_empty()
        && name.len() <= crate::group_log::MAX_TIME_ZONE_CHARS
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_+-".contains(c));
    if !ok {
        return Err(invalid(
            "the time zone must be an IANA name such as Europe/Berlin",
        ));
    }
    jiff::tz::TimeZone::get(name).map_err(|_| invalid("the time zone is not one this device knows"))
}

fn timestamp(t: jiff::Timestamp) -> Option<Timestamp> {
    u64::try_from(t.as_millisecond()).ok().map(Timestamp)
}

impl MeetingSchedule {
    /// Checks the limits documented on the fields, that the time zone is known, and that each
    /// date is a real date.
    pub fn validate(&self) -> Result<(), InvalidDocument> {
        time_zone(&self.time_zone)?;
        if self.meetings.len() > MAX_MEETINGS {
            return Err(invalid(format!("at most {MAX_MEETINGS} meetings")));
        }
        for m in &self.meetings {
            let (start_minute, minutes) = match m {
                Meeting::Once {
                    date,
                    start_minute,
                    minutes,
                } => {
                    parse_date(date)?;
                    (*start_minute, *minutes)
                }
                Meeting::Weekly {
                    day,
                    start_minute,
                    minutes,
                } => {
                    if *day > 6 {
                        return Err(invalid("the day must be 0 (Monday) to 6 (Sunday)"));
                    }
                    (*start_minute, *minutes)
                }
            };
            if start_minute >= crate::group_log::MINUTES_PER_DAY
                || minutes == 0
                || minutes > MAX_MEETING_MINUTES
            {
                return Err(invalid(format!(
                    "a meeting starts before minute 1440 and lasts 1 to {MAX_MEETING_MINUTES} minutes"
                )));
            }
        }
        if let Some(link) = &self.video_link {
            validate_link(link)?;
        }
        if let Some(note) = &self.note {
            check_text("the note", note, MAX_MEETING_NOTE_CHARS, true)?;
        }
        Ok(())
    }

    /// The meeting in progress at `now` or, if none is, the next one to start: the earliest
    /// occurrence whose end is after `now`. `None` when no meeting is ahead (or the schedule
    /// is invalid). Local times that a clock change skips or repeats resolve as jiff's
    /// `compatible` disambiguation does (the later time in a gap, the earlier in a fold).
    pub fn next_meeting(&self, now: Timestamp) -> Option<NextMeeting> {
        let tz = time_zone(&self.time_zone).ok()?;
        let now_j = jiff::Timestamp::from_millisecond(i64::try_from(now.0).ok()?).ok()?;
        let today = now_j.to_zoned_datetime(tz.clone()).date();
        let mut best: Option<NextMeeting> = None;
        for (index, m) in self.meetings.iter().enumerate() {
            let candidates: Vec<(jiff::civil::Date, u16, u16)> = match m {
                Meeting::Once {
                    date,
                    start_minute,
                    minutes,
                } => match parse_date(date) {
                    Ok(d) => vec![(d, *start_minute, *minutes)],
                    Err(_) => continue,
                },
                Meeting::Weekly {
                    day,
                    start_minute,
                    minutes,
                } => {
                    // Yesterday (a meeting past midnight may still run) and the next 7 days.
                    (-1i64..=7)
                        .filter_map(|offset| today.checked_add(jiff::Span::new().days(offset)).ok())
                        .filter(|d| d.weekday().to_monday_zero_offset() as u8 == *day)
                        .map(|d| (d, *start_minute, *minutes))
                        .collect()
                }
            };
            for (date, start_minute, minutes) in candidates {
                let start = date
                    .to_datetime(jiff::civil::Time::midnight())
                    .checked_add(jiff::Span::new().minutes(i64::from(start_minute)));
                let Ok(start) = start else { continue };
                let Ok(start) = start.to_zoned_datetime(tz.clone()) else {
                    continue;
                };
                let start = start.timestamp();
                let Ok(end) = start.checked_add(jiff::Span::new().minutes(i64::from(minutes)))
                else {
                    continue;
                };
                if end <= now_j {
                    continue;
                }
                let (Some(starts_at), Some(ends_at)) = (timestamp(start), timestamp(end)) else {
                    continue;
                };
                if best.is_none_or(|b| starts_at < b.starts_at) {
                    best = Some(NextMeeting {
                        starts_at,
                        ends_at,
                        index,
                    });
                }
            }
        }
        best
    }
}

/// The group's content-warning topics (pinned kind `warning_topics`).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarningTopics {
    /// 0 to [`MAX_WARNING_TOPICS`] topics with distinct ids.
    pub topics: Vec<WarningTopic>,
}

/// One warning topic. Its `id` stays the same when its label is edited, so what a member
/// chose to hide, and what messages were tagged with, keep their meaning.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarningTopic {
    /// The topic's id in this group.
    pub id: u16,
    /// What members see ("Self-harm"): 1 to [`MAX_TOPIC_LABEL_CHARS`] characters, one line.
    pub label: String,
}

impl WarningTopics {
    /// Checks the limits and that ids are distinct.
    pub fn validate(&self) -> Result<(), InvalidDocument> {
        if self.topics.len() > MAX_WARNING_TOPICS {
            return Err(invalid(format!("at most {MAX_WARNING_TOPICS} topics")));
        }
        let mut seen = std::collections::BTreeSet::new();
        for t in &self.topics {
            if !seen.insert(t.id) {
                return Err(invalid(format!("topic id {} is used twice", t.id)));
            }
            check_text("a topic's label", &t.label, MAX_TOPIC_LABEL_CHARS, false)?;
        }
        Ok(())
    }

    /// The label of topic `id`, if the group defines it.
    pub fn label(&self, id: u16) -> Option<&str> {
        self.topics
            .iter()
            .find(|t| t.id == id)
            .map(|t| t.label.as_str())
    }
}

/// Checks a message's warning tags: 1 to [`MAX_WARNINGS_PER_MESSAGE`] distinct ids. (Whether
/// the group defines them is the reader's business: an id it does not know is shown as a
/// warning without a label, never ignored.)
pub fn validate_warnings(warnings: &[u16]) -> Result<(), InvalidDocument> {
    let distinct: std::collections::BTreeSet<_> = warnings.iter().collect();
    if warnings.is_empty()
        || warnings.len() > MAX_WARNINGS_PER_MESSAGE
        || distinct.len() != warnings.len()
    {
        return Err(invalid(format!(
            "a message carries 1 to {MAX_WARNINGS_PER_MESSAGE} distinct warnings"
        )));
    }
    Ok(())
}

/// The group's resource library (pinned kind `resources`).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceLibrary {
    /// 0 to [`MAX_RESOURCES`] resources, in the order the facilitators chose.
    pub resources: Vec<Resource>,
}

/// One resource: a title in a category with a text, a link, or both.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resource {
    /// 1 to [`MAX_RESOURCE_TITLE_CHARS`] characters, one line.
    pub title: String,
    /// 1 to [`MAX_RESOURCE_CATEGORY_CHARS`] characters, one line ("Grounding", "Reading").
    pub category: String,
    /// 1 to [`MAX_RESOURCE_TEXT_CHARS`] characters, may span lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// An `https://` link ([`validate_link`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

impl ResourceLibrary {
    /// Checks the limits; each resource has a text or a link (or both).
    pub fn validate(&self) -> Result<(), InvalidDocument> {
        if self.resources.len() > MAX_RESOURCES {
            return Err(invalid(format!("at most {MAX_RESOURCES} resources")));
        }
        for r in &self.resources {
            check_text("a title", &r.title, MAX_RESOURCE_TITLE_CHARS, false)?;
            check_text(
                "a category",
                &r.category,
                MAX_RESOURCE_CATEGORY_CHARS,
                false,
            )?;
            if r.text.is_none() && r.link.is_none() {
                return Err(invalid("a resource needs a text or a link"));
            }
            if let Some(text) = &r.text {
                check_text("a resource's text", text, MAX_RESOURCE_TEXT_CHARS, true)?;
            }
            if let Some(link) = &r.link {
                validate_link(link)?;
            }
        }
        Ok(())
    }

    /// The resources whose title, category or text contains every word of `query`, ignoring
    /// case (an empty query matches all), with their indices.
    pub fn search(&self, query: &str) -> Vec<(usize, &Resource)> {
        let words: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
        self.resources
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                let hay = format!(
                    "{}\n{}\n{}",
                    r.title,
                    r.category,
                    r.text.as_deref().unwrap_or_default()
                )
                .to_lowercase();
                words.iter().all(|w| hay.contains(w.as_str()))
            })
            .collect()
    }
}

/// How a text message takes part in a check-in round (the `round` member of a `text` body).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoundTag {
    /// The round, as its `open_round` op names it.
    pub id: crate::ids::RoundId,
    /// What this message is in the round.
    pub part: RoundPart,
    /// The turn order (prompt only): 1 to [`MAX_ROUND_ORDER`] distinct users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<Vec<UserId>>,
}

/// What a message is in a round.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoundPart {
    /// The round's prompt, from the moderator who opened it.
    Prompt,
    /// A member's answer.
    Answer,
    /// A member passes (the text is empty).
    Pass,
}

impl RoundTag {
    /// Checks the tag against the text it rides on: a pass has an empty text, a prompt or an
    /// answer a non-empty one; only a prompt has an order, of distinct users.
    pub fn validate(&self, text: &str) -> Result<(), InvalidDocument> {
        match self.part {
            RoundPart::Pass if !text.is_empty() => Err(invalid("a pass has no text")),
            RoundPart::Prompt | RoundPart::Answer if text.trim().is_empty() => {
                Err(invalid("a prompt or an answer needs a text"))
            }
            RoundPart::Pass | RoundPart::Answer if self.order.is_some() => {
                Err(invalid("only a prompt has a turn order"))
            }
            _ => match &self.order {
                Some(order) => {
                    let distinct: std::collections::BTreeSet<_> = order.iter().collect();
                    if order.is_empty()
                        || order.len() > MAX_ROUND_ORDER
                        || distinct.len() != order.len()
                    {
                        Err(invalid(format!(
                            "a turn order names 1 to {MAX_ROUND_ORDER} distinct people"
                        )))
                    } else {
                        Ok(())
                    }
                }
                None => Ok(()),
            },
        }
    }
}

/// Why a reader does not honour a message's [`RoundTag`] (PROTOCOL.md §6.9), in the order the
/// checks run. The message is then an ordinary message.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RoundTagRefusal {
    /// The tag does not fit its text ([`RoundTag::validate`]).
    Tag,
    /// The verified log has no such round.
    Log,
    /// The message's `sent_at` is outside the round's `[opened_at, ended_at)`.
    Time,
    /// A prompt from someone other than the round's opener.
    Opener,
}

impl RoundTagRefusal {
    /// The check's name as the test vectors give it.
    pub fn check(self) -> &'static str {
        match self {
            RoundTagRefusal::Tag => "tag",
            RoundTagRefusal::Log => "log",
            RoundTagRefusal::Time => "time",
            RoundTagRefusal::Opener => "opener",
        }
    }
}

/// Whether a reader honours `tag` on a text `text` sent at `sent_at` by a device of
/// `sender_user`, judged against `state`, the reader's verified log when the message arrives
/// (PROTOCOL.md §6.9): the first failing check, or `Ok`.
pub fn check_round_tag(
    state: &crate::group_log::GroupState,
    sender_user: &UserId,
    sent_at: Timestamp,
    text: &str,
    tag: &RoundTag,
) -> Result<(), RoundTagRefusal> {
    tag.validate(text).map_err(|_| RoundTagRefusal::Tag)?;
    let round = state.round(&tag.id).ok_or(RoundTagRefusal::Log)?;
    if !round.is_open_at(sent_at) {
        return Err(RoundTagRefusal::Time);
    }
    if tag.part == RoundPart::Prompt && round.opened_by != *sender_user {
        return Err(RoundTagRefusal::Opener);
    }
    Ok(())
}

/// Why a reader ignores an `add_warning` (PROTOCOL.md §6.9), in the order the checks run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AddWarningRefusal {
    /// Not sent by a device of a current moderator.
    Moderator,
    /// The warnings are not 1 to [`MAX_WARNINGS_PER_MESSAGE`] distinct ids.
    Warnings,
}

impl AddWarningRefusal {
    /// The check's name as the test vectors give it.
    pub fn check(self) -> &'static str {
        match self {
            AddWarningRefusal::Moderator => "moderator",
            AddWarningRefusal::Warnings => "warnings",
        }
    }
}

/// Whether a reader applies an `add_warning` with `warnings` from device `sender` of the same
/// group, judged against `state`, its verified log when it arrives. (It names a message of the
/// group it was sent in: readers keep warnings by group and message id, so it never reaches
/// another group's message.)
pub fn check_add_warning(
    state: &crate::group_log::GroupState,
    sender: &crate::ids::DeviceId,
    warnings: &[u16],
) -> Result<(), AddWarningRefusal> {
    if !state
        .member_of_device(sender)
        .is_some_and(|(_, m)| m.role.is_moderator())
    {
        return Err(AddWarningRefusal::Moderator);
    }
    validate_warnings(warnings).map_err(|_| AddWarningRefusal::Warnings)
}

/// A person's own safety plan (Stanley–Brown): kept only in their encrypted store and carried
/// to their own new device in the link bundle; never sent to a group or readable by the server.
/// Its `Debug` shows nothing of it.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SafetyPlan {
    /// Warning signs that a crisis may be coming.
    #[serde(default)]
    pub warning_signs: Vec<String>,
    /// Things the person can do on their own to cope.
    #[serde(default)]
    pub coping_steps: Vec<String>,
    /// People and places that help take their mind off things.
    #[serde(default)]
    pub people_and_places: Vec<String>,
    /// People they can ask for help, and professionals or services to contact.
    #[serde(default)]
    pub contacts: Vec<String>,
    /// How they make their surroundings safer.
    #[serde(default)]
    pub safe_environment: Vec<String>,
    /// What matters most to them, worth living for.
    #[serde(default)]
    pub reasons: Vec<String>,
}

impl std::fmt::Debug for SafetyPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafetyPlan").finish_non_exhaustive()
    }
}

impl SafetyPlan {
    /// The sections with their names, in the order the plan is shown.
    pub fn sections(&self) -> [(&'static str, &Vec<String>); 6] {
        [
            ("warning_signs", &self.warning_signs),
            ("coping_steps", &self.coping_steps),
            ("people_and_places", &self.people_and_places),
            ("contacts", &self.contacts),
            ("safe_environment", &self.safe_environment),
            ("reasons", &self.reasons),
        ]
    }

    /// Checks each section: at most [`MAX_PLAN_ENTRIES`] entries of 1 to
    /// [`MAX_PLAN_ENTRY_CHARS`] characters; and the whole at most [`MAX_PLAN_BYTES`] of JSON.
    pub fn validate(&self) -> Result<(), InvalidDocument> {
        let bytes = serde_json::to_vec(self).map_or(usize::MAX, |j| j.len());
        if bytes > MAX_PLAN_BYTES {
            return Err(invalid(format!(
                "the plan is too long: at most {MAX_PLAN_BYTES} bytes in all"
            )));
        }
        for (name, entries) in self.sections() {
            if entries.len() > MAX_PLAN_ENTRIES {
                return Err(invalid(format!(
                    "{name} has more than {MAX_PLAN_ENTRIES} entries"
                )));
            }
            for e in entries {
                check_text(name, e, MAX_PLAN_ENTRY_CHARS, true)?;
            }
        }
        Ok(())
    }

    /// Whether nothing is written in it.
    pub fn is_empty(&self) -> bool {
        self.sections().iter().all(|(_, e)| e.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        Timestamp(s.parse::<jiff::Timestamp>().unwrap().as_millisecond() as u64)
    }

    fn weekly(day: u8, start_minute: u16, minutes: u16) -> Meeting {
        Meeting::Weekly {
            day,
            start_minute,
            minutes,
        }
    }

    #[test]
    fn the_next_weekly_meeting_is_found_in_the_groups_time_zone() {
        // Tuesdays 18:00-19:30 Berlin time.
        let s = MeetingSchedule {
            time_zone: "Europe/Berlin".into(),
            meetings: vec![weekly(1, 18 * 60, 90)],
            video_link: None,
            note: None,
        };
        s.validate().unwrap();
        // Thursday 3 December 2026, noon UTC: next is Tuesday 8 December, 17:00 UTC (CET).
        let next = s.next_meeting(ts("2026-12-03T12:00:00Z")).unwrap();
        assert_eq!(next.starts_at, ts("2026-12-08T17:00:00Z"));
        assert_eq!(next.ends_at, ts("2026-12-08T18:30:00Z"));
        // During the meeting it is still the one shown.
        let during = s.next_meeting(ts("2026-12-08T18:00:00Z")).unwrap();
        assert_eq!(during.starts_at, ts("2026-12-08T17:00:00Z"));
        // In summer the same local time is 16:00 UTC.
        let summer = s.next_meeting(ts("2026-07-01T00:00:00Z")).unwrap();
        assert_eq!(summer.starts_at, ts("2026-07-07T16:00:00Z"));
    }

    #[test]
    fn a_one_off_meeting_comes_first_when_it_is_earlier_and_is_forgotten_once_over() {
        let s = MeetingSchedule {
            time_zone: "America/New_York".into(),
            meetings: vec![
                weekly(3, 19 * 60, 60),
                Meeting::Once {
                    date: "2026-12-05".into(),
                    start_minute: 10 * 60,
                    minutes: 120,
                },
            ],
            video_link: Some("https://meet.example.org/group".into()),
            note: Some("Bring your workbook".into()),
        };
        s.validate().unwrap();
        let next = s.next_meeting(ts("2026-12-04T00:00:00Z")).unwrap();
        // Thursday 3 Dec 19:00 New York is 00:00 UTC on the 4th: it is running, so it counts.
        assert_eq!(next.index, 0);
        let next = s.next_meeting(ts("2026-12-04T02:00:00Z")).unwrap();
        assert_eq!(
            (next.index, next.starts_at),
            (1, ts("2026-12-05T15:00:00Z"))
        );
        let next = s.next_meeting(ts("2026-12-05T18:00:00Z")).unwrap();
        assert_eq!(
            (next.index, next.starts_at),
            (0, ts("2026-12-11T00:00:00Z"))
        );
        let only_once = MeetingSchedule {
            meetings: vec![s.meetings[1].clone()],
            ..s
        };
        assert_eq!(only_once.next_meeting(ts("2026-12-06T00:00:00Z")), None);
    }

    #[test]
    fn schedules_outside_the_limits_are_refused() {
        let ok = MeetingSchedule {
            time_zone: "Europe/Berlin".into(),
            meetings: vec![weekly(0, 0, 60)],
            video_link: None,
            note: None,
        };
        ok.validate().unwrap();
        for bad in [
            MeetingSchedule {
                time_zone: "Mars/Olympus".into(),
                ..ok.clone()
            },
            MeetingSchedule {
                meetings: vec![weekly(7, 0, 60)],
                ..ok.clone()
            },
            MeetingSchedule {
                meetings: vec![weekly(0, 1440, 60)],
                ..ok.clone()
            },
            MeetingSchedule {
                meetings: vec![weekly(0, 0, 0)],
                ..ok.clone()
            },
            MeetingSchedule {
                meetings: vec![Meeting::Once {
                    date: "2026-02-30".into(),
                    start_minute: 0,
                    minutes: 60,
                }],
                ..ok.clone()
            },
            MeetingSchedule {
                video_link: Some("javascript:alert(1)".into()),
                ..ok.clone()
            },
            MeetingSchedule {
                video_link: Some("http://meet.example.org".into()),
                ..ok.clone()
            },
            MeetingSchedule {
                video_link: Some("https://meet.example.org/a b".into()),
                ..ok.clone()
            },
            MeetingSchedule {
                note: Some("  ".into()),
                ..ok.clone()
            },
            MeetingSchedule {
                meetings: vec![weekly(0, 0, 60); MAX_MEETINGS + 1],
                ..ok.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        assert!(
            serde_json::from_str::<MeetingSchedule>(
                r#"{"time_zone":"UTC","meetings":[],"extra":1}"#
            )
            .is_err()
        );
    }

    #[test]
    fn links_are_plain_https_with_a_readable_host() {
        for ok in [
            "https://meet.example.org/group",
            "https://meet.example.org:8443/a/b?x=1&y=%20#top",
            "https://xn--bcher-kva.example/",
            "https://example.org",
        ] {
            assert!(validate_link(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://example.org",
            "javascript:alert(1)",
            "https://trusted.org@evil.example/",
            "https://evil.example\\@trusted.org",
            "https://\"><script>",
            "https:///x",
            "https://localhost/",
            "https://-bad.example/",
            "https://example.org:/",
            "https://example.org/a b",
            "https://example.org/<x>",
            "https://bücher.example/",
            "https://192.168.1.1/",
            "HTTPS://example.org",
        ] {
            assert!(validate_link(bad).is_err(), "{bad}");
        }
        let long = format!("https://example.org/{}", "a".repeat(MAX_LINK_CHARS));
        assert!(validate_link(&long).is_err());
    }

    #[test]
    fn dates_are_exactly_year_month_day_and_labels_one_plain_line() {
        let once = |date: &str| MeetingSchedule {
            time_zone: "UTC".into(),
            meetings: vec![Meeting::Once {
                date: date.into(),
                start_minute: 0,
                minutes: 60,
            }],
            video_link: None,
            note: None,
        };
        assert!(once("2026-12-24").validate().is_ok());
        for bad in [
            "20261224",
            "+002026-12-24",
            "2026-12-24T10:00",
            "2026-1-24",
            "2026-02-30",
        ] {
            assert!(once(bad).validate().is_err(), "{bad}");
        }
        let topic = |label: &str| WarningTopics {
            topics: vec![WarningTopic {
                id: 1,
                label: label.into(),
            }],
        };
        assert!(topic("Grief").validate().is_ok());
        for bad in ["Grief\u{2028}Self-harm", "\u{202e}feirG", "Grief\n"] {
            assert!(topic(bad).validate().is_err(), "{bad:?}");
        }
        // A resource's text may span lines and hold right-to-left writing.
        let lib = ResourceLibrary {
            resources: vec![Resource {
                title: "Breathing".into(),
                category: "Grounding".into(),
                text: Some("Line one\nסוף \u{200f}".into()),
                link: None,
            }],
        };
        assert!(lib.validate().is_ok());
        // A document over the byte limit is refused before it is parsed, and errors quote
        // nothing of it.
        let big = format!(
            "{{\"topics\":[],\"x\":\"{}\"}}",
            "a".repeat(MAX_DOCUMENT_BYTES)
        );
        let err = crate::envelope::PinnedKind::WarningTopics
            .validate_text(&big)
            .unwrap_err();
        assert!(!err.0.contains("aaa"), "{err}");
        let err = crate::envelope::PinnedKind::WarningTopics
            .validate_text(r#"{"topics":"my secret"}"#)
            .unwrap_err();
        assert!(!err.0.contains("secret"), "{err}");
    }

    #[test]
    fn topics_resources_tags_and_plans_are_checked() {
        let topics = WarningTopics {
            topics: vec![
                WarningTopic {
                    id: 1,
                    label: "Self-harm".into(),
                },
                WarningTopic {
                    id: 2,
                    label: "Grief".into(),
                },
            ],
        };
        topics.validate().unwrap();
        assert_eq!(topics.label(2), Some("Grief"));
        let mut twice = topics.clone();
        twice.topics[1].id = 1;
        assert!(twice.validate().is_err());
        let mut two_lines = topics.clone();
        two_lines.topics[0].label = "Self\nharm".into();
        assert!(two_lines.validate().is_err());

        assert!(validate_warnings(&[1, 2]).is_ok());
        assert!(validate_warnings(&[]).is_err());
        assert!(validate_warnings(&[1, 1]).is_err());
        assert!(validate_warnings(&[0; MAX_WARNINGS_PER_MESSAGE + 1]).is_err());

        let lib = ResourceLibrary {
            resources: vec![
                Resource {
                    title: "Box breathing".into(),
                    category: "Grounding".into(),
                    text: Some("Breathe in for four…\nHold for four.".into()),
                    link: None,
                },
                Resource {
                    title: "Sleep hygiene".into(),
                    category: "Reading".into(),
                    text: None,
                    link: Some("https://example.org/sleep".into()),
                },
            ],
        };
        lib.validate().unwrap();
        assert_eq!(lib.search("breathe HOLD").len(), 1);
        assert_eq!(lib.search("reading")[0].0, 1);
        assert_eq!(lib.search("").len(), 2);
        let mut empty = lib.clone();
        empty.resources[0].text = None;
        assert!(empty.validate().is_err());

        let id = crate::ids::RoundId([7; 16]);
        let tag = |part, order| RoundTag { id, part, order };
        assert!(tag(RoundPart::Pass, None).validate("").is_ok());
        assert!(tag(RoundPart::Pass, None).validate("x").is_err());
        assert!(tag(RoundPart::Answer, None).validate(" ").is_err());
        assert!(
            tag(RoundPart::Answer, Some(vec![UserId([1; 16])]))
                .validate("4")
                .is_err()
        );
        assert!(
            tag(
                RoundPart::Prompt,
                Some(vec![UserId([1; 16]), UserId([1; 16])])
            )
            .validate("How are you?")
            .is_err()
        );
        assert!(
            tag(RoundPart::Prompt, Some(vec![UserId([1; 16])]))
                .validate("How are you?")
                .is_ok()
        );

        let mut plan = SafetyPlan::default();
        assert!(plan.is_empty());
        plan.coping_steps.push("Walk the dog".into());
        plan.validate().unwrap();
        assert_eq!(format!("{plan:?}"), "SafetyPlan { .. }");
        plan.reasons = vec!["x".repeat(MAX_PLAN_ENTRY_CHARS + 1)];
        assert!(plan.validate().is_err());
    }
}
