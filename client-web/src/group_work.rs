//! What crosses into JavaScript for the group-work tools (issue 17, PROTOCOL.md §6.9): the
//! meeting schedule, warning topics, the resource library, check-in rounds and the person's own
//! safety plan, as plain-object mirrors of `confide_protocol::group_work` and the core's round
//! views, with the parameter objects of their [`crate::api::ConfideCore`] methods. The
//! conventions are [`crate::dto`]'s: camelCase, ids as base64 text, times in milliseconds.
//!
//! The documents are checked by the core (`validate`) before they are published or shown; these
//! mirrors only carry them. A safety plan is the person's own text and never leaves their
//! devices.

use confide_client_core as core;
use confide_protocol::group_work as work;
use confide_protocol::{Timestamp, UserId};
use serde::{Deserialize, Serialize};
use tsify::Tsify;

use crate::dto::{ApiError, js_number, parse_id};

// ---------------------------------------------------------------------------------------------
// Meetings

/// The group's meeting schedule (pinned by its facilitators).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct MeetingSchedule {
    /// IANA time zone the meetings' local times are in, such as `Europe/Berlin`.
    pub time_zone: String,
    /// The meetings (at most 32).
    pub meetings: Vec<Meeting>,
    /// Where the group meets online: an `https://` link. Show it whole; open it only when the
    /// person asks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[tsify(optional)]
    pub video_link: Option<String>,
    /// A note for members ("Bring your workbook").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[tsify(optional)]
    pub note: Option<String>,
}

/// One meeting of a [`MeetingSchedule`], in the schedule's local time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Meeting {
    /// Once, on `date` (`YYYY-MM-DD`) at `startMinute` after local midnight.
    Once {
        /// The local date, `YYYY-MM-DD`.
        date: String,
        /// Minutes after local midnight, below 1440.
        start_minute: u16,
        /// How long, in minutes (1 to 1440).
        minutes: u16,
    },
    /// Every week on `day` (0 = Monday … 6 = Sunday) at `startMinute`.
    Weekly {
        /// Day of the week, 0 = Monday … 6 = Sunday.
        day: u8,
        /// Minutes after local midnight, below 1440.
        start_minute: u16,
        /// How long, in minutes (1 to 1440).
        minutes: u16,
    },
}

impl From<work::MeetingSchedule> for MeetingSchedule {
    fn from(s: work::MeetingSchedule) -> MeetingSchedule {
        MeetingSchedule {
            time_zone: s.time_zone,
            meetings: s
                .meetings
                .into_iter()
                .map(|m| match m {
                    work::Meeting::Once {
                        date,
                        start_minute,
                        minutes,
                    } => Meeting::Once {
                        date,
                        start_minute,
                        minutes,
                    },
                    work::Meeting::Weekly {
                        day,
                        start_minute,
                        minutes,
                    } => Meeting::Weekly {
                        day,
                        start_minute,
                        minutes,
                    },
                })
                .collect(),
            video_link: s.video_link,
            note: s.note,
        }
    }
}

impl From<MeetingSchedule> for work::MeetingSchedule {
    fn from(s: MeetingSchedule) -> work::MeetingSchedule {
        work::MeetingSchedule {
            time_zone: s.time_zone,
            meetings: s
                .meetings
                .into_iter()
                .map(|m| match m {
                    Meeting::Once {
                        date,
                        start_minute,
                        minutes,
                    } => work::Meeting::Once {
                        date,
                        start_minute,
                        minutes,
                    },
                    Meeting::Weekly {
                        day,
                        start_minute,
                        minutes,
                    } => work::Meeting::Weekly {
                        day,
                        start_minute,
                        minutes,
                    },
                })
                .collect(),
            video_link: s.video_link,
            note: s.note,
        }
    }
}

/// The meeting in progress or the next one to start (`nextMeeting`), by this device's clock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct NextMeeting {
    /// When it starts.
    #[serde(serialize_with = "js_number::serialize")]
    pub starts_at: u64,
    /// When it ends.
    #[serde(serialize_with = "js_number::serialize")]
    pub ends_at: u64,
    /// Which entry of `MeetingSchedule.meetings` it is.
    pub index: u32,
}

impl From<work::NextMeeting> for NextMeeting {
    fn from(n: work::NextMeeting) -> NextMeeting {
        NextMeeting {
            starts_at: n.starts_at.0,
            ends_at: n.ends_at.0,
            index: u32::try_from(n.index).unwrap_or(u32::MAX),
        }
    }
}

/// Parameters of `setMeetings`.
#[derive(Clone, Debug, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct SetMeetingsParams {
    /// The group.
    pub group: String,
    /// The whole new schedule (an empty `meetings` list: no meetings).
    pub schedule: MeetingSchedule,
}

// ---------------------------------------------------------------------------------------------
// Content warnings

/// One of the group's warning topics. Its `id` stays when its label is edited.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct WarningTopic {
    /// The topic's id in this group (what messages and hidden topics name).
    pub id: u16,
    /// What members see ("Self-harm"), one line.
    pub label: String,
}

/// The group's topics as a list of [`WarningTopic`].
pub fn topics_from(t: work::WarningTopics) -> Vec<WarningTopic> {
    t.topics
        .into_iter()
        .map(|t| WarningTopic {
            id: t.id,
            label: t.label,
        })
        .collect()
}

/// Parameters of `setWarningTopics`.
#[derive(Clone, Debug, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct SetWarningTopicsParams {
    /// The group.
    pub group: String,
    /// Every topic of the group (at most 32, distinct ids).
    pub topics: Vec<WarningTopic>,
}

impl SetWarningTopicsParams {
    /// The document the parameters name.
    pub fn document(&self) -> work::WarningTopics {
        work::WarningTopics {
            topics: self
                .topics
                .iter()
                .map(|t| work::WarningTopic {
                    id: t.id,
                    label: t.label.clone(),
                })
                .collect(),
        }
    }
}

/// Parameters of `addWarning` (moderators): warnings added to someone's message.
#[derive(Clone, Debug, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct AddWarningParams {
    /// The group.
    pub group: String,
    /// The message's id.
    pub message: String,
    /// Topic ids to add (1 to 8, distinct).
    pub warnings: Vec<u16>,
}

/// Parameters of `setHiddenTopics`: this device's topics to hide in a group (never sent).
#[derive(Clone, Debug, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct SetHiddenTopicsParams {
    /// The group.
    pub group: String,
    /// The topic ids whose messages are hidden until the person asks to see them.
    pub topics: Vec<u16>,
}

// ---------------------------------------------------------------------------------------------
// Resources

/// One resource of the group's library: a title in a category with a text, a link, or both.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct Resource {
    /// Its title, one line.
    pub title: String,
    /// Its category ("Grounding", "Reading"), one line.
    pub category: String,
    /// A text, which may span lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[tsify(optional)]
    pub text: Option<String>,
    /// An `https://` link. Show it whole; open it only when the person asks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[tsify(optional)]
    pub link: Option<String>,
}

/// The library as a list of [`Resource`], in the facilitators' order.
pub fn resources_from(l: work::ResourceLibrary) -> Vec<Resource> {
    l.resources
        .into_iter()
        .map(|r| Resource {
            title: r.title,
            category: r.category,
            text: r.text,
            link: r.link,
        })
        .collect()
}

/// Parameters of `setResources`.
#[derive(Clone, Debug, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct SetResourcesParams {
    /// The group.
    pub group: String,
    /// The whole new library (at most 100).
    pub resources: Vec<Resource>,
}

impl SetResourcesParams {
    /// The document the parameters name.
    pub fn document(&self) -> work::ResourceLibrary {
        work::ResourceLibrary {
            resources: self
                .resources
                .iter()
                .map(|r| work::Resource {
                    title: r.title.clone(),
                    category: r.category.clone(),
                    text: r.text.clone(),
                    link: r.link.clone(),
                })
                .collect(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Check-in rounds

/// What a message is in a check-in round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub enum RoundPart {
    /// The round's prompt.
    Prompt,
    /// A member's answer.
    Answer,
    /// A member passed (the text is empty).
    Pass,
}

/// How a message takes part in a round (only a tag the core honoured).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct RoundTag {
    /// The round.
    pub id: String,
    /// What the message is in it.
    pub part: RoundPart,
    /// The turn order (prompt only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[tsify(optional)]
    pub order: Option<Vec<String>>,
}

impl From<work::RoundTag> for RoundTag {
    fn from(t: work::RoundTag) -> RoundTag {
        RoundTag {
            id: t.id.to_string(),
            part: match t.part {
                work::RoundPart::Prompt => RoundPart::Prompt,
                work::RoundPart::Answer => RoundPart::Answer,
                work::RoundPart::Pass => RoundPart::Pass,
            },
            order: t
                .order
                .map(|users| users.iter().map(ToString::to_string).collect()),
        }
    }
}

/// One person's part in a round: their latest answer, or that they passed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct RoundAnswer {
    /// Who.
    pub user: String,
    /// Their pseudonym.
    pub name: String,
    /// The message that carries it.
    pub message: String,
    /// That message's number here.
    #[serde(serialize_with = "js_number::serialize")]
    pub number: u64,
    /// The answer (empty for a pass).
    pub text: String,
    /// They passed.
    pub passed: bool,
    /// When they say they sent it.
    #[serde(serialize_with = "js_number::serialize")]
    pub sent_at: u64,
    /// The answer message's content warnings (topic ids).
    pub warnings: Vec<u16>,
    /// Whether it is hidden on this device: show its warning and a Show button, not its text.
    pub hidden: bool,
}

/// A check-in round as this device sees it (`rounds`): the prompt, and the answers in turn order
/// (when one was given), then in the order they came.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct RoundView {
    /// The round.
    pub id: String,
    /// Who opened it.
    pub opened_by: String,
    /// Their pseudonym.
    pub opened_by_name: String,
    /// When it was opened.
    #[serde(serialize_with = "js_number::serialize")]
    pub opened_at: u64,
    /// When it closes by itself, if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(serialize_with = "js_number::serialize")]
    #[tsify(optional)]
    pub closes_at: Option<u64>,
    /// When it ended (closed by hand, or by itself), if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(serialize_with = "js_number::serialize")]
    #[tsify(optional)]
    pub ended_at: Option<u64>,
    /// Whether it is open now.
    pub open: bool,
    /// The prompt, once it arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[tsify(optional)]
    pub prompt: Option<String>,
    /// The prompt message's content warnings (topic ids).
    pub prompt_warnings: Vec<u16>,
    /// Whether the prompt is hidden on this device.
    pub prompt_hidden: bool,
    /// The turn order, if the opener gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[tsify(optional)]
    pub order: Option<Vec<String>>,
    /// The answers and passes.
    pub answers: Vec<RoundAnswer>,
    /// Whether this user has answered or passed.
    pub answered: bool,
}

impl From<core::RoundView> for RoundView {
    fn from(r: core::RoundView) -> RoundView {
        RoundView {
            id: r.id.to_string(),
            opened_by: r.opened_by.to_string(),
            opened_by_name: r.opened_by_name,
            opened_at: r.opened_at.0,
            closes_at: r.closes_at.map(|t| t.0),
            ended_at: r.ended_at.map(|t| t.0),
            open: r.open,
            prompt: r.prompt,
            prompt_warnings: r.prompt_warnings,
            prompt_hidden: r.prompt_hidden,
            order: r
                .order
                .map(|users| users.iter().map(ToString::to_string).collect()),
            answers: r
                .answers
                .into_iter()
                .map(|a| RoundAnswer {
                    user: a.user.to_string(),
                    name: a.name,
                    message: a.message.to_string(),
                    number: a.number,
                    text: a.text,
                    passed: a.passed,
                    sent_at: a.sent_at.0,
                    warnings: a.warnings,
                    hidden: a.hidden,
                })
                .collect(),
            answered: r.answered,
        }
    }
}

/// Parameters of `openRound` (moderators).
#[derive(Clone, Debug, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct OpenRoundParams {
    /// The group.
    pub group: String,
    /// The question everyone answers in turn.
    pub prompt: String,
    /// The turn order: users (1 to 64, distinct), if there is one.
    #[serde(default)]
    #[tsify(optional)]
    pub order: Option<Vec<String>>,
    /// When the round closes by itself (at most a week away), if it does.
    #[serde(default)]
    #[tsify(optional)]
    #[serde(serialize_with = "js_number::serialize")]
    pub closes_at: Option<u64>,
}

impl OpenRoundParams {
    /// The turn order as user ids.
    ///
    /// # Errors
    ///
    /// [`ApiError::invalid`] for an entry that is not a user id.
    pub fn order_ids(&self) -> Result<Option<Vec<UserId>>, ApiError> {
        self.order
            .as_ref()
            .map(|users| users.iter().map(|u| parse_id(u, "order")).collect())
            .transpose()
    }

    /// The closing time as a timestamp.
    pub fn closes_at(&self) -> Option<Timestamp> {
        self.closes_at.map(Timestamp)
    }
}

/// `{ group, round }`: closing a round, or passing in it.
#[derive(Clone, Debug, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct RoundParams {
    /// The group.
    pub group: String,
    /// The round.
    pub round: String,
}

/// Parameters of `answerRound`.
#[derive(Clone, Debug, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct AnswerRoundParams {
    /// The group.
    pub group: String,
    /// The round.
    pub round: String,
    /// The answer (not empty); a later answer replaces an earlier one.
    pub text: String,
}

// ---------------------------------------------------------------------------------------------
// The safety plan

/// The person's own safety plan: six sections of short texts, kept only on their devices. Its
/// `Debug` shows nothing of it.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct SafetyPlan {
    /// Warning signs that a crisis may be coming.
    pub warning_signs: Vec<String>,
    /// Things they can do on their own to cope.
    pub coping_steps: Vec<String>,
    /// People and places that help take their mind off things.
    pub people_and_places: Vec<String>,
    /// People to ask for help, and professionals or services to contact.
    pub contacts: Vec<String>,
    /// How they make their surroundings safer.
    pub safe_environment: Vec<String>,
    /// What matters most to them.
    pub reasons: Vec<String>,
}

impl std::fmt::Debug for SafetyPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafetyPlan").finish_non_exhaustive()
    }
}

impl From<work::SafetyPlan> for SafetyPlan {
    fn from(p: work::SafetyPlan) -> SafetyPlan {
        SafetyPlan {
            warning_signs: p.warning_signs,
            coping_steps: p.coping_steps,
            people_and_places: p.people_and_places,
            contacts: p.contacts,
            safe_environment: p.safe_environment,
            reasons: p.reasons,
        }
    }
}

impl From<SafetyPlan> for work::SafetyPlan {
    fn from(p: SafetyPlan) -> work::SafetyPlan {
        work::SafetyPlan {
            warning_signs: p.warning_signs,
            coping_steps: p.coping_steps,
            people_and_places: p.people_and_places,
            contacts: p.contacts,
            safe_environment: p.safe_environment,
            reasons: p.reasons,
        }
    }
}

/// Parameters of `setSafetyPlan`: the whole plan.
#[derive(Clone, Debug, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct SetSafetyPlanParams {
    /// The plan (each section at most 20 entries of 1 to 500 characters).
    pub plan: SafetyPlan,
}
