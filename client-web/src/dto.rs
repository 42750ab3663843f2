//! What crosses into JavaScript: plain-object mirrors of the core's results and events, and
//! the parameter objects of the [`crate::api::ConfideCore`] methods. Each derives `Tsify`, so
//! its TypeScript type is generated into the module's `.d.ts` and the web app cannot drift from
//! it. The conventions:
//!
//! - field names are camelCase; enums are tagged `{ type: "…", … }` with camelCase tags;
//! - every id (group, user, device, message, invite) is the protocol's base64 text (the
//!   `Display` of the id types), and is parsed back from it ([`parse_id`]);
//! - times are milliseconds since the Unix epoch, durations whole seconds, as numbers;
//! - a failure is an [`ApiError`] `{ code, message, retryAfterMs? }`, which a call rejects with.
//!
//! Nothing here holds a secret: message texts, names and notes are the person's own data,
//! shown to them; keys and invite secrets never leave the core (an invite crosses only as the
//! link text the person shares).

use confide_client_core as core;
use confide_client_core::ClientError;
use confide_protocol::envelope::PinnedKind as CorePinnedKind;
use confide_protocol::group_log::{
    GroupSettings as CoreGroupSettings, OpenHours as CoreOpenHours, OpenWindow as CoreOpenWindow,
    Role as CoreRole,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tsify::Tsify;
use wasm_bindgen::JsValue;

use crate::host::Output;

// ---------------------------------------------------------------------------------------------
// Numbers

/// How every `u64` crosses into JavaScript (`#[serde(serialize_with = "js_number::serialize")]`
/// on each such field): clamped to `Number.MAX_SAFE_INTEGER`.
///
/// JavaScript numbers are exact only up to 2^53 − 1, and serde-wasm-bindgen refuses to encode
/// a larger `u64` at all, which would fail the whole result or drop the whole event. Some of
/// these numbers are claims of other people (a message's `sentAt`, a report's `seq` and
/// `reportedAt`, a mute's end), so a hostile member could otherwise hide a page of history or
/// the facilitator queue with one value. Clamped, such a value reads as "the far future" or
/// "the largest seq", and the TypeScript type stays `number`. Below the bound nothing changes.
pub mod js_number {
    use serde::{Serialize, Serializer};

    /// `Number.MAX_SAFE_INTEGER`: the largest integer a JavaScript number holds exactly.
    pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

    /// `n`, or [`MAX_SAFE_INTEGER`] if it is larger.
    pub fn clamp(n: u64) -> u64 {
        n.min(MAX_SAFE_INTEGER)
    }

    /// A number field, or an optional one, that can be clamped for JavaScript.
    pub trait Clamp {
        /// The clamped value, of the same shape.
        fn clamped(&self) -> Self;
    }

    impl Clamp for u64 {
        fn clamped(&self) -> u64 {
            clamp(*self)
        }
    }

    impl Clamp for Option<u64> {
        fn clamped(&self) -> Option<u64> {
            self.map(clamp)
        }
    }

    /// Serializes `value` clamped to [`MAX_SAFE_INTEGER`].
    ///
    /// # Errors
    ///
    /// Only the serializer's own.
    pub fn serialize<T, S>(value: &T, serializer: S) -> Result<S::Ok, S::Error>
    where
        T: Clamp + Serialize,
        S: Serializer,
    {
        value.clamped().serialize(serializer)
    }
}

// ---------------------------------------------------------------------------------------------
// Errors

/// Why a call failed: what a rejected promise carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct ApiError {
    /// Stable and machine-readable: `ClientError::code()` of the core (`unknown_group`,
    /// `muted`, `wrong_passphrase`, …), or one of the bindings' own ([`ApiError`]'s
    /// constructors: `no_profile`, `locked`, `profile_exists`, `busy`, `invalid`, `encode`,
    /// `no_crypto`).
    pub code: String,
    /// For people; may change between versions.
    pub message: String,
    /// When the server said to try again, in milliseconds, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[tsify(optional)]
    #[serde(serialize_with = "js_number::serialize")]
    pub retry_after_ms: Option<u64>,
}

impl ApiError {
    /// An error of the bindings' own.
    pub fn new(code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            code: code.to_string(),
            message: message.into(),
            retry_after_ms: None,
        }
    }

    /// No profile is kept in this database yet: create one first.
    pub fn no_profile() -> ApiError {
        ApiError::new(
            "no_profile",
            "there is no profile in this browser yet: create one first",
        )
    }

    /// The profile is locked: unlock it with the passphrase first.
    pub fn locked() -> ApiError {
        // Not `locked`, which is the server's code for a paused group.
        ApiError::new("profile_locked", "the profile is locked: unlock it first")
    }

    /// A parameter was missing or malformed.
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new("invalid", message)
    }

    /// The error as the plain JavaScript object a promise rejects with.
    pub fn into_js(self) -> JsValue {
        match serde_wasm_bindgen::to_value(&self) {
            Ok(value) => value,
            // Only strings and a small number: serializing cannot fail; if it ever did, the
            // message alone still says what went wrong.
            Err(_) => JsValue::from_str(&self.message),
        }
    }
}

impl From<ClientError> for ApiError {
    fn from(e: ClientError) -> ApiError {
        let retry_after_ms = match &e {
            ClientError::Server { retry_after_ms, .. } => *retry_after_ms,
            _ => None,
        };
        ApiError {
            code: e.code().to_string(),
            message: e.to_string(),
            retry_after_ms,
        }
    }
}

impl From<ApiError> for JsValue {
    fn from(e: ApiError) -> JsValue {
        e.into_js()
    }
}

/// Parses an id from its base64 text; `what` names the parameter in the error.
///
/// # Errors
///
/// [`ApiError::invalid`] if `text` is not the base64 of an id of that type.
pub fn parse_id<T: DeserializeOwned>(text: &str, what: &str) -> Result<T, ApiError> {
    serde_json::from_value(serde_json::Value::String(text.to_string()))
        .map_err(|_| ApiError::invalid(format!("{what} is not a valid id: {text:?}")))
}

// ---------------------------------------------------------------------------------------------
// The profile

/// Whether this browser holds a profile, and whether it is unlocked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub enum ProfileState {
    /// No profile yet: create one.
    None,
    /// A profile, locked: unlock it with its passphrase.
    Locked,
    /// Unlocked: the core is running.
    Unlocked,
}

/// Who this device is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct Me {
    /// The user.
    pub user: String,
    /// This device.
    pub device: String,
    /// The pseudonym the device registered with.
    pub display_name: String,
}

/// The connection to the server, as the driver last saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub enum ConnectionState {
    /// Dialling.
    Connecting,
    /// Connected and authenticated.
    Online,
    /// Not connected; the driver tries again after a back-off.
    Offline,
}

// ---------------------------------------------------------------------------------------------
// Shared values

/// A role in a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    /// Runs the group: may sign every op.
    Facilitator,
    /// Helps run the group: invites, admits, moderates plain members, controls the chat.
    CoFacilitator,
    /// Takes part.
    Member,
}

impl From<CoreRole> for Role {
    fn from(role: CoreRole) -> Role {
        match role {
            CoreRole::Facilitator => Role::Facilitator,
            CoreRole::CoFacilitator => Role::CoFacilitator,
            CoreRole::Member => Role::Member,
        }
    }
}

impl From<Role> for CoreRole {
    fn from(role: Role) -> CoreRole {
        match role {
            Role::Facilitator => CoreRole::Facilitator,
            Role::CoFacilitator => CoreRole::CoFacilitator,
            Role::Member => CoreRole::Member,
        }
    }
}

/// Which pinned text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub enum PinnedKind {
    /// The group agreement members accept before posting.
    Agreement,
    /// "If you are in crisis" resources.
    CrisisResources,
    /// The meeting schedule.
    Meetings,
    /// The content-warning topics.
    WarningTopics,
    /// The resource library.
    Resources,
}

impl From<CorePinnedKind> for PinnedKind {
    fn from(kind: CorePinnedKind) -> PinnedKind {
        match kind {
            CorePinnedKind::Agreement => PinnedKind::Agreement,
            CorePinnedKind::CrisisResources => PinnedKind::CrisisResources,
            CorePinnedKind::Meetings => PinnedKind::Meetings,
            CorePinnedKind::WarningTopics => PinnedKind::WarningTopics,
            CorePinnedKind::Resources => PinnedKind::Resources,
        }
    }
}

/// Weekly open hours in a named time zone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct OpenHours {
    /// IANA time-zone name, such as `Europe/Berlin`.
    pub time_zone: String,
    /// The windows in which the chat is open.
    pub windows: Vec<OpenWindow>,
}

/// One weekly window of [`OpenHours`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct OpenWindow {
    /// 0 = Monday … 6 = Sunday.
    pub day: u8,
    /// Start, minutes after local midnight (inclusive).
    pub start_minute: u16,
    /// End, minutes after local midnight (exclusive); 1440 is midnight at the day's end.
    pub end_minute: u16,
}

impl From<OpenHours> for CoreOpenHours {
    fn from(h: OpenHours) -> CoreOpenHours {
        CoreOpenHours {
            time_zone: h.time_zone,
            windows: h
                .windows
                .into_iter()
                .map(|w| CoreOpenWindow {
                    day: w.day,
                    start_minute: w.start_minute,
                    end_minute: w.end_minute,
                })
                .collect(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Results

/// A decrypted, verified message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct ChatMessage {
    /// The group.
    pub group: String,
    /// Its position in the group (the server's order); what `before`, `report` and
    /// `seqOfNumber` use.
    #[serde(serialize_with = "js_number::serialize")]
    pub seq: u64,
    /// Its number as people see it here (1, 2, 3, … in the order it became readable).
    #[serde(serialize_with = "js_number::serialize")]
    pub number: u64,
    /// Its id.
    pub id: String,
    /// The author (verified).
    pub sender: String,
    /// The author's device.
    pub sender_device: String,
    /// The author's pseudonym at the time.
    pub sender_name: String,
    /// When the author says it was sent.
    #[serde(serialize_with = "js_number::serialize")]
    pub sent_at: u64,
    /// When the server stored it.
    #[serde(serialize_with = "js_number::serialize")]
    pub received_at: u64,
    /// The text (someone else's: show it through `sanitizeForDisplay`, as text).
    pub text: String,
    /// The message replied to.
    pub reply_to: Option<String>,
    /// Content warnings on it: ids of the group's warning topics (the author's and those a
    /// moderator added), sorted, distinct. An id the group's topics do not define still counts.
    pub warnings: Vec<u16>,
    /// Hidden on this device: one of its warnings is a topic the person hides in this group.
    /// Show "Content warning: …" and the text only when they ask.
    pub hidden: bool,
    /// Its part in a check-in round, when the core honoured its tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[tsify(optional)]
    pub round: Option<crate::group_work::RoundTag>,
}

impl From<core::ChatMessage> for ChatMessage {
    fn from(m: core::ChatMessage) -> ChatMessage {
        ChatMessage {
            group: m.group.to_string(),
            seq: m.seq.0,
            number: m.number,
            id: m.id.to_string(),
            sender: m.sender.to_string(),
            sender_device: m.sender_device.to_string(),
            sender_name: m.sender_name,
            sent_at: m.sent_at.0,
            received_at: m.received_at.0,
            text: m.text,
            reply_to: m.reply_to.map(|id| id.to_string()),
            warnings: m.warnings,
            hidden: m.hidden,
            round: m.round.map(crate::group_work::RoundTag::from),
        }
    }
}

/// A page of history, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct HistoryPage {
    /// The messages.
    pub messages: Vec<ChatMessage>,
}

/// Another person as a group's verified log names them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct Peer {
    /// The user.
    pub user: String,
    /// Their pseudonym.
    pub display_name: String,
    /// The user's other groups in which this same person is a member.
    pub shared_groups: Vec<String>,
    /// Members of the user's other groups whose names look like this person's.
    pub looks_like: Vec<LookAlike>,
}

/// A name that looks like another, and the group it is in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct LookAlike {
    /// The pseudonym.
    pub name: String,
    /// Its group.
    pub group: String,
}

impl From<core::Peer> for Peer {
    fn from(p: core::Peer) -> Peer {
        Peer {
            user: p.user.to_string(),
            display_name: p.display_name,
            shared_groups: p.shared_groups.iter().map(ToString::to_string).collect(),
            looks_like: p
                .looks_like
                .into_iter()
                .map(|(name, group)| LookAlike {
                    name,
                    group: group.to_string(),
                })
                .collect(),
        }
    }
}

/// A lasting refusal of a group's sync by the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct SyncRefusal {
    /// Why (a `code` like the errors').
    pub code: String,
    /// Since when.
    #[serde(serialize_with = "js_number::serialize")]
    pub since: Option<u64>,
}

/// A group as this device sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct GroupInfo {
    /// The group.
    pub group: String,
    /// Whether this device is a member.
    pub member: bool,
    /// This user's role.
    pub role: Option<Role>,
    /// Number of members.
    pub members: u32,
    /// The current epoch.
    #[serde(serialize_with = "js_number::serialize")]
    pub epoch: u64,
    /// Why the group's stored log was rejected, if it was (the group is frozen).
    pub tampered: Option<String>,
    /// Added by someone and not accepted yet (`acceptGroup`, or `leave` to decline).
    pub invited: bool,
    /// While invited: how many messages wait.
    pub waiting: u32,
    /// Others' messages after the person's read marker (`markRead`; posting moves it too):
    /// "3 new".
    pub unread: u32,
    /// For a private conversation: the other person.
    pub private_with: Option<Peer>,
    /// The server refuses to serve this group, since when and why.
    pub sync_refused: Option<SyncRefusal>,
    /// Whether every current member's every device has an X-Wing key, so that everything
    /// sealed in the group is sealed with the post-quantum hybrid (false while someone's device
    /// of protocol version 1 has not moved to version 2).
    pub post_quantum: bool,
    /// The label this device gave the group (`setLabel`), if any: the person's own name for
    /// it, never sent anywhere.
    pub label: Option<String>,
}

/// A count as a JavaScript number (counts here are far below `u32::MAX`).
fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl From<core::GroupInfo> for GroupInfo {
    fn from(g: core::GroupInfo) -> GroupInfo {
        GroupInfo {
            group: g.group.to_string(),
            member: g.member,
            role: g.role.map(Role::from),
            members: count(g.members),
            epoch: g.epoch.0,
            tampered: g.tampered,
            invited: g.invited,
            waiting: count(g.waiting),
            unread: count(g.unread),
            private_with: g.private_with.map(Peer::from),
            label: None,
            post_quantum: g.post_quantum,
            sync_refused: g.sync_refused.map(|r| SyncRefusal {
                code: r.code,
                since: r.since.map(|t| t.0),
            }),
        }
    }
}

/// A member as the verified log lists them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct MemberInfo {
    /// The user.
    pub user: String,
    /// Their pseudonym.
    pub display_name: String,
    /// Their role.
    pub role: Role,
    /// Their devices.
    pub devices: Vec<String>,
    /// Until when they are muted.
    #[serde(serialize_with = "js_number::serialize")]
    pub muted_until: Option<u64>,
    /// Other members whose names look like this one's: show a warning.
    pub looks_like: Vec<String>,
}

impl From<core::MemberInfo> for MemberInfo {
    fn from(m: core::MemberInfo) -> MemberInfo {
        MemberInfo {
            user: m.user.to_string(),
            display_name: m.display_name,
            role: m.role.into(),
            devices: m.devices.iter().map(ToString::to_string).collect(),
            muted_until: m.muted_until.map(|t| t.0),
            looks_like: m.looks_like,
        }
    }
}

/// A new invite: `invite` is the text to share (`confide-invite:…`), which also goes into an
/// https link as `https://host/#invite=<invite>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct InviteCreated {
    /// The invite text. Whoever holds it can join (or ask to): share it privately.
    pub invite: String,
    /// Its public id (what `revokeInvite` takes).
    pub id: String,
    /// The group.
    pub group: String,
    /// Whether each join needs a facilitator's approval.
    pub requires_approval: bool,
}

impl From<core::Invite> for InviteCreated {
    fn from(invite: core::Invite) -> InviteCreated {
        InviteCreated {
            invite: invite.to_link(),
            id: invite.id().to_string(),
            group: invite.group.to_string(),
            requires_approval: invite.requires_approval,
        }
    }
}

/// What a join did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum JoinOutcome {
    /// This device is now a member.
    Joined {
        /// The group.
        group: String,
    },
    /// The request went to the facilitators; a `joined` event follows if they approve.
    Pending {
        /// The group.
        group: String,
    },
}

impl From<core::JoinOutcome> for JoinOutcome {
    fn from(o: core::JoinOutcome) -> JoinOutcome {
        match o {
            core::JoinOutcome::Joined(group) => JoinOutcome::Joined {
                group: group.to_string(),
            },
            core::JoinOutcome::Pending(group) => JoinOutcome::Pending {
                group: group.to_string(),
            },
            // A new outcome (non-exhaustive) is at least not a membership yet.
            _ => JoinOutcome::Pending {
                group: String::new(),
            },
        }
    }
}

/// A request to join, shown to facilitators.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct JoinRequest {
    /// The group.
    pub group: String,
    /// The requester.
    pub user: String,
    /// The requesting device (compare its safety number before approving).
    pub device: String,
    /// Their pseudonym.
    pub display_name: String,
    /// Their note to the facilitators.
    pub note: Option<String>,
    /// Members whose names look like the requester's: warn before approving.
    pub looks_like: Vec<String>,
}

impl From<core::JoinRequest> for JoinRequest {
    fn from(r: core::JoinRequest) -> JoinRequest {
        JoinRequest {
            group: r.group.to_string(),
            user: r.user.to_string(),
            device: r.device.to_string(),
            display_name: r.display_name,
            note: r.note,
            looks_like: r.looks_like,
        }
    }
}

/// The group agreement as this device holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct AgreementInfo {
    /// Its version.
    pub version: u32,
    /// Its text (checked against the signed log).
    pub text: String,
    /// Whether this user has accepted this version.
    pub accepted: bool,
}

/// The texts pinned to a group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct PinnedInfo {
    /// The current agreement, once its text has arrived (show it, then `acceptAgreement`).
    pub agreement: Option<AgreementInfo>,
    /// The current agreement version in the log (its text may still be on its way).
    pub agreement_version: Option<u32>,
    /// "If you are in crisis" resources.
    pub crisis_resources: Option<String>,
    /// The meeting schedule, once its text arrived and matches the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[tsify(optional)]
    pub meetings: Option<crate::group_work::MeetingSchedule>,
    /// The content-warning topics, once their text arrived and matches the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[tsify(optional)]
    pub warning_topics: Option<Vec<crate::group_work::WarningTopic>>,
    /// The resource library, once its text arrived and matches the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[tsify(optional)]
    pub resources: Option<Vec<crate::group_work::Resource>>,
}

impl From<core::PinnedInfo> for PinnedInfo {
    fn from(p: core::PinnedInfo) -> PinnedInfo {
        PinnedInfo {
            agreement: p.agreement.map(|a| AgreementInfo {
                version: a.version,
                text: a.text,
                accepted: a.accepted,
            }),
            agreement_version: p.agreement_version,
            crisis_resources: p.crisis_resources,
            meetings: p.meetings.map(Into::into),
            warning_topics: p.warning_topics.map(crate::group_work::topics_from),
            resources: p.resources.map(crate::group_work::resources_from),
        }
    }
}

/// What this user may do in a group right now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// The user's role (absent: not a member).
    pub role: Option<Role>,
    /// Until when the user is muted.
    #[serde(serialize_with = "js_number::serialize")]
    pub muted_until: Option<u64>,
    /// Whether the chat is locked by hand.
    pub locked: bool,
    /// Whether the chat is inside its open hours (always without a schedule).
    pub open_now: bool,
    /// Slow mode interval in seconds (0: off).
    pub slow_mode_seconds: u32,
    /// The agreement version to accept before posting.
    pub agreement_pending: Option<u32>,
}

impl From<core::Status> for Status {
    fn from(s: core::Status) -> Status {
        Status {
            role: s.role.map(Role::from),
            muted_until: s.muted_until.map(|t| t.0),
            locked: s.locked,
            open_now: s.open_now,
            slow_mode_seconds: s.slow_mode_seconds,
            agreement_pending: s.agreement_pending,
        }
    }
}

/// A verified report, as facilitators see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct ReportInfo {
    /// The group.
    pub group: String,
    /// The position the reporter names (not proven: find the message by `message`).
    #[serde(serialize_with = "js_number::serialize")]
    pub seq: u64,
    /// The reported message (proven).
    pub message: String,
    /// Who wrote it (proven).
    pub offender: String,
    /// Their pseudonym.
    pub offender_name: String,
    /// Who reported it.
    pub reporter: String,
    /// Their pseudonym.
    pub reporter_name: String,
    /// The reported text (proven).
    pub text: String,
    /// The reporter's reason.
    pub reason: String,
    /// When the reporter's device says it wrote the report.
    #[serde(serialize_with = "js_number::serialize")]
    pub reported_at: u64,
}

impl From<core::ReportInfo> for ReportInfo {
    fn from(r: core::ReportInfo) -> ReportInfo {
        ReportInfo {
            group: r.group.to_string(),
            seq: r.seq.0,
            message: r.message.to_string(),
            offender: r.offender.to_string(),
            offender_name: r.offender_name,
            reporter: r.reporter.to_string(),
            reporter_name: r.reporter_name,
            text: r.text,
            reason: r.reason,
            reported_at: r.reported_at.0,
        }
    }
}

/// "I need a facilitator".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct UrgentRequest {
    /// The group.
    pub group: String,
    /// Who asks.
    pub user: String,
    /// Their pseudonym.
    pub display_name: String,
    /// What they wrote.
    pub text: String,
    /// When this device received it.
    #[serde(serialize_with = "js_number::serialize")]
    pub received_at: u64,
}

impl From<core::UrgentRequest> for UrgentRequest {
    fn from(u: core::UrgentRequest) -> UrgentRequest {
        UrgentRequest {
            group: u.group.to_string(),
            user: u.user.to_string(),
            display_name: u.display_name,
            text: u.text,
            received_at: u.received_at.0,
        }
    }
}

/// Something waiting for a facilitator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum FacilitatorItem {
    /// A verified report.
    Report {
        /// The report.
        report: ReportInfo,
    },
    /// An urgent request.
    Urgent {
        /// The request.
        request: UrgentRequest,
    },
}

/// An item of the facilitator queue with the id `resolve` takes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct QueueItem {
    /// The id for `resolve`.
    pub id: String,
    /// The item.
    pub item: FacilitatorItem,
}

impl QueueItem {
    /// The mirror of one queue entry, `None` for a kind of item these bindings do not know.
    pub fn from_core(id: String, item: core::FacilitatorItem) -> Option<QueueItem> {
        let item = match item {
            core::FacilitatorItem::Report(r) => FacilitatorItem::Report { report: r.into() },
            core::FacilitatorItem::Urgent(u) => FacilitatorItem::Urgent { request: u.into() },
            _ => return None,
        };
        Some(QueueItem { id, item })
    }
}

/// How this device's membership of a group ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct Departure {
    /// The log position of the op that ended it.
    #[serde(serialize_with = "js_number::serialize")]
    pub op_seq: u64,
    /// When.
    #[serde(serialize_with = "js_number::serialize")]
    pub at: u64,
    /// True if the user left; false if a facilitator removed them.
    pub left: bool,
    /// Whether they were also banned.
    pub banned: bool,
    /// Who removed them (or the user, for a leave).
    pub by: String,
    /// Their pseudonym, if known.
    pub by_name: Option<String>,
}

impl From<core::Departure> for Departure {
    fn from(d: core::Departure) -> Departure {
        Departure {
            op_seq: d.op_seq,
            at: d.at.0,
            left: d.left,
            banned: d.banned,
            by: d.by.to_string(),
            by_name: d.by_name,
        }
    }
}

/// A change in a group's log (never message content).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct GroupChange {
    /// The group.
    pub group: String,
    /// The op's position in the log.
    #[serde(serialize_with = "js_number::serialize")]
    pub op_seq: u64,
    /// The op type: `add`, `remove`, `mute`, `lock`, … (the protocol's names).
    pub action: String,
    /// Who did it.
    pub author: String,
    /// Whom it concerns.
    pub target: Option<String>,
    /// When the author says it happened.
    #[serde(serialize_with = "js_number::serialize")]
    pub at: u64,
}

impl From<core::GroupChange> for GroupChange {
    fn from(c: core::GroupChange) -> GroupChange {
        GroupChange {
            group: c.group.to_string(),
            op_seq: c.op_seq,
            action: c.action,
            author: c.author.to_string(),
            target: c.target.map(|u| u.to_string()),
            at: c.at.0,
        }
    }
}

/// What a [`GroupNotice`] tells.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum NoticeKind {
    /// A facilitator removed a member.
    Removed {
        /// Who.
        user: String,
        /// Their pseudonym.
        name: String,
        /// Whether they were also banned.
        banned: bool,
    },
    /// A member left (`by`).
    Left,
    /// A facilitator deleted a message for everyone.
    MessageDeleted {
        /// Its number here, if it was shown here.
        #[serde(serialize_with = "js_number::serialize")]
        number: Option<u64>,
    },
    /// A member linked or unlinked a device (`by`).
    DevicesUpdated,
    /// A kind of notice these bindings do not know yet.
    Other,
}

/// Something members see among a group's messages, where it happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct GroupNotice {
    /// The group.
    pub group: String,
    /// The op that did it.
    #[serde(serialize_with = "js_number::serialize")]
    pub op_seq: u64,
    /// Which of the op's messages (0 otherwise); with `opSeq` it tells notices apart.
    pub index: u32,
    /// When.
    #[serde(serialize_with = "js_number::serialize")]
    pub at: u64,
    /// Who did it.
    pub by: String,
    /// Their pseudonym.
    pub by_name: String,
    /// What happened.
    pub kind: NoticeKind,
    /// Goes after every message up to this `seq`, before any later one; absent: by `at`.
    #[serde(serialize_with = "js_number::serialize")]
    pub after_seq: Option<u64>,
}

impl From<core::GroupNotice> for GroupNotice {
    fn from(n: core::GroupNotice) -> GroupNotice {
        let kind = match n.kind {
            core::NoticeKind::Removed { user, name, banned } => NoticeKind::Removed {
                user: user.to_string(),
                name,
                banned,
            },
            core::NoticeKind::Left => NoticeKind::Left,
            core::NoticeKind::MessageDeleted { number } => NoticeKind::MessageDeleted { number },
            core::NoticeKind::DevicesUpdated => NoticeKind::DevicesUpdated,
            _ => NoticeKind::Other,
        };
        GroupNotice {
            group: n.group.to_string(),
            op_seq: n.op_seq,
            index: count(n.index),
            at: n.at.0,
            by: n.by.to_string(),
            by_name: n.by_name,
            kind,
            after_seq: n.after_seq.map(|s| s.0),
        }
    }
}

/// Why something from the server was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct Rejection {
    /// The group.
    pub group: String,
    /// The message's or op's position.
    #[serde(serialize_with = "js_number::serialize")]
    pub seq: u64,
    /// What was wrong, for people.
    pub reason: String,
}

impl From<core::Rejection> for Rejection {
    fn from(r: core::Rejection) -> Rejection {
        Rejection {
            group: r.group.to_string(),
            seq: r.seq,
            reason: r.reason,
        }
    }
}

/// One line of the moderation log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
// `details` is a JSON object: as a plain JavaScript object, not a `Map`.
#[tsify(hashmap_as_object)]
pub struct ModerationEntry {
    /// Position in the group log.
    #[serde(serialize_with = "js_number::serialize")]
    pub op_seq: u64,
    /// When the author says it happened.
    #[serde(serialize_with = "js_number::serialize")]
    pub at: u64,
    /// What happened (the op type).
    pub action: String,
    /// Who did it.
    pub author: Option<String>,
    /// Their pseudonym.
    pub author_name: Option<String>,
    /// Whom it concerned.
    pub target: Option<String>,
    /// Their pseudonym.
    pub target_name: Option<String>,
    /// Non-content details (mute end, ban, role, interval, …), as the protocol names them.
    #[tsify(type = "Record<string, unknown>")]
    pub details: serde_json::Value,
    /// The reason, if this device received it (facilitators only).
    pub reason: Option<String>,
}

impl From<core::ModerationEntry> for ModerationEntry {
    fn from(e: core::ModerationEntry) -> ModerationEntry {
        ModerationEntry {
            op_seq: e.op_seq,
            at: e.at.0,
            action: e.action,
            author: e.author.map(|u| u.to_string()),
            author_name: e.author_name,
            target: e.target.map(|u| u.to_string()),
            target_name: e.target_name,
            details: e.details,
            reason: e.reason,
        }
    }
}

/// Someone who joined with an invite.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct Joiner {
    /// The user.
    pub user: String,
    /// Their pseudonym.
    pub display_name: String,
}

/// An invite as the group's verified log records it (no secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct InviteInfo {
    /// Its public id.
    pub id: String,
    /// Who created it.
    pub created_by: String,
    /// Their pseudonym.
    pub created_by_name: Option<String>,
    /// When it was created.
    #[serde(serialize_with = "js_number::serialize")]
    pub created_at: u64,
    /// Whether joining needs approval.
    pub requires_approval: bool,
    /// How many joined with it.
    pub uses: u32,
    /// How many may.
    pub max_uses: u32,
    /// When it stops accepting joins.
    #[serde(serialize_with = "js_number::serialize")]
    pub expires_at: u64,
    /// Whether it was revoked.
    pub revoked: bool,
    /// Who joined with it, oldest first.
    pub joined: Vec<Joiner>,
}

impl From<core::InviteInfo> for InviteInfo {
    fn from(i: core::InviteInfo) -> InviteInfo {
        InviteInfo {
            id: i.id.to_string(),
            created_by: i.created_by.to_string(),
            created_by_name: i.created_by_name,
            created_at: i.created_at.0,
            requires_approval: i.requires_approval,
            uses: i.uses,
            max_uses: i.max_uses,
            expires_at: i.expires_at.0,
            revoked: i.revoked,
            joined: i
                .joined
                .into_iter()
                .map(|(user, display_name)| Joiner {
                    user: user.to_string(),
                    display_name,
                })
                .collect(),
        }
    }
}

/// Where a message is on this device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct MessagePlace {
    /// The position it was processed at.
    #[serde(serialize_with = "js_number::serialize")]
    pub seq: u64,
    /// The number people were shown for it, if it was shown here.
    #[serde(serialize_with = "js_number::serialize")]
    pub number: Option<u64>,
}

impl From<core::MessagePlace> for MessagePlace {
    fn from(p: core::MessagePlace) -> MessagePlace {
        MessagePlace {
            seq: p.seq.0,
            number: p.number,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Events

/// Everything the core reports, in the order it happened, plus the connection's state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum CoreEvent {
    /// The connection changed (the driver's summary; `connected`/`disconnected` give details).
    Connection {
        /// The new state.
        state: ConnectionState,
    },
    /// Connected and authenticated; a resync follows.
    Connected,
    /// The connection dropped, or a connection attempt failed; the driver tries again.
    Disconnected {
        /// Why.
        reason: String,
    },
    /// A resync of every group finished.
    Synced,
    /// A new message.
    Message {
        /// The message.
        message: ChatMessage,
    },
    /// A message that was pending (`pending` error) was acknowledged by the server.
    Sent {
        /// The message.
        message: ChatMessage,
    },
    /// A pending message was refused when sent again; it was not delivered. Also: a removal or
    /// mute was made but its reason for the facilitators could not be sent (the call resolved).
    SendFailed {
        /// The group.
        group: String,
        /// The server's reason: its own words, not to be shown (show what `code` means).
        reason: String,
        /// Why, as a stable code (an [`ApiError`]'s `code`).
        code: String,
    },
    /// A membership or moderation change.
    GroupChanged {
        /// The change.
        change: GroupChange,
    },
    /// Something to show among the group's messages.
    Notice {
        /// The notice.
        notice: GroupNotice,
    },
    /// This device joined a group.
    Joined {
        /// The group.
        group: String,
    },
    /// Someone added this device to a group: nothing is shown until `acceptGroup`.
    Invited {
        /// The group.
        group: String,
        /// Who added this device.
        by: String,
        /// Their pseudonym.
        by_name: String,
        /// Whether it is a private conversation with them.
        private: bool,
    },
    /// A message arrived in a group not accepted yet.
    MessageWaiting {
        /// The group.
        group: String,
        /// How many wait now.
        waiting: u32,
    },
    /// This device was removed from a group (or left it); `departure` says by whom.
    Removed {
        /// The group.
        group: String,
        /// When.
        #[serde(serialize_with = "js_number::serialize")]
        at: u64,
    },
    /// The server refuses to sync a group for a lasting reason (said once).
    SyncRefused {
        /// The group.
        group: String,
        /// The server's reason: its own words, not to be shown (the code and date are in
        /// [`GroupInfo::sync_refused`]; show what the code means).
        reason: String,
    },
    /// A member's keys changed: compare safety numbers.
    KeyChanged {
        /// The group.
        group: String,
        /// The member.
        user: String,
        /// Their pseudonym.
        display_name: String,
    },
    /// A message failed verification and was dropped.
    MessageRejected {
        /// What and why.
        rejection: Rejection,
    },
    /// An op the server served does not verify; the group keeps its last verified state.
    GroupRejected {
        /// What and why.
        rejection: Rejection,
    },
    /// Members use an epoch this device has not verified: own messages are held.
    GroupBehind {
        /// The group.
        group: String,
        /// The epoch members were seen to use.
        #[serde(serialize_with = "js_number::serialize")]
        seen_epoch: u64,
        /// This device's verified epoch.
        #[serde(serialize_with = "js_number::serialize")]
        log_epoch: u64,
    },
    /// A group that was behind caught up.
    CaughtUp {
        /// The group.
        group: String,
    },
    /// The server's order contradicts the authors' own (the message is authentic).
    OrderWarning {
        /// What and why.
        rejection: Rejection,
    },
    /// Someone asks to join a group this user facilitates.
    JoinRequest {
        /// The request.
        request: JoinRequest,
    },
    /// A member reported a message (facilitators).
    Report {
        /// The report.
        report: ReportInfo,
    },
    /// "I need a facilitator" (facilitators).
    UrgentRequest {
        /// The request.
        request: UrgentRequest,
    },
    /// Messages were deleted for everyone or expired: remove them from view.
    MessagesDeleted {
        /// The group.
        group: String,
        /// The messages.
        messages: Vec<String>,
    },
    /// A pinned text arrived or changed.
    Pinned {
        /// The group.
        group: String,
        /// Which text.
        kind: PinnedKind,
        /// The agreement version (0 for crisis resources).
        version: u32,
    },
    /// This user's role changed.
    RoleChanged {
        /// The group.
        group: String,
        /// The new role.
        role: Role,
    },
    /// Events were left out (nothing stored is lost: re-read what is shown).
    EventsDropped {
        /// How many.
        #[serde(serialize_with = "js_number::serialize")]
        count: u64,
    },
    /// The group was read up to message `number` (`markRead` or a post, in this tab or
    /// another): re-read its `unread` count from `groups()`.
    Read {
        /// The group.
        group: String,
        /// The `number` of the newest message now read.
        #[serde(serialize_with = "js_number::serialize")]
        number: u64,
    },
    /// The messages of a group that wait to be sent changed (one was kept, sealed, sent,
    /// refused or discarded): read `held` again.
    HeldChanged {
        /// The group.
        group: String,
    },
    /// A held message is not sent because people joined the group after it was written: it
    /// (and the group's later held messages) waits until `sendHeldAnyway` or `discardHeld`.
    HeldNeedsConfirm {
        /// The group.
        group: String,
        /// The message (`HeldMessage.id`).
        id: String,
        /// Who joined since it was written (empty: the group changed, who is not known).
        added: Vec<AddedMember>,
        /// The epoch `added` was worked out against: what `sendHeldAnyway` takes back.
        #[serde(serialize_with = "js_number::serialize")]
        epoch: u64,
    },
    /// A person's devices changed (`user` is this user when a device of theirs was linked or
    /// unlinked): re-read `ownDevices`, or their safety number.
    DevicesChanged {
        /// Whose devices.
        user: String,
    },
    /// Someone holds a user's identity key who should not (two device lists that cannot both
    /// be theirs). For this user: their account's key may have been stolen.
    IdentityMisuse {
        /// Whose identity key.
        user: String,
    },
    /// The server refused the device list naming this device's post-quantum (X-Wing) key:
    /// others seal to it with X25519 alone until a server takes it (tried again when this
    /// user's devices change and at each connection). `code` `relink_needed`: the list names
    /// another key than this device holds; it must be linked again.
    PostQuantumKeyRefused {
        /// Why, as a stable code.
        code: String,
        /// The reason, for logs.
        reason: String,
    },
    /// Another device of this user unlinked this one: its keys are deleted, it can do nothing
    /// more. The app tells the person and deletes the profile (`forget`).
    DeviceUnlinked {
        /// The device that unlinked this one.
        by: String,
    },
    /// Another of this person's devices changed their safety plan (`group` absent) or the topics
    /// they hide in `group`: read it again.
    OwnSettingsChanged {
        /// The group whose hidden topics changed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[tsify(optional)]
        group: Option<String>,
    },
    /// A moderator added content warnings to a message: re-read it (it may be hidden now).
    WarningAdded {
        /// The group.
        group: String,
        /// The message.
        message: String,
        /// Its whole set of warnings after the addition.
        warnings: Vec<u16>,
    },
    /// A check-in round was opened, got its prompt or an answer, or closed: read `rounds` again.
    RoundChanged {
        /// The group.
        group: String,
        /// The round.
        round: String,
    },
}

impl CoreEvent {
    /// The mirror of what the driver handed out; `None` for a kind of event these bindings do
    /// not know yet (the core's `Event` is non-exhaustive).
    pub fn from_output(out: Output) -> Option<CoreEvent> {
        use core::Event as E;
        let event = match out {
            Output::Connection(state) => return Some(CoreEvent::Connection { state }),
            Output::Event(event) => *event,
        };
        Some(match event {
            E::Connected => CoreEvent::Connected,
            E::Disconnected { reason } => CoreEvent::Disconnected { reason },
            E::Synced => CoreEvent::Synced,
            E::Message(m) => CoreEvent::Message { message: m.into() },
            E::Sent(m) => CoreEvent::Sent { message: m.into() },
            E::SendFailed {
                group,
                reason,
                code,
            } => CoreEvent::SendFailed {
                group: group.to_string(),
                reason,
                code,
            },
            E::GroupChanged(c) => CoreEvent::GroupChanged { change: c.into() },
            E::Notice(n) => CoreEvent::Notice { notice: n.into() },
            E::Joined { group } => CoreEvent::Joined {
                group: group.to_string(),
            },
            E::Invited {
                group,
                by,
                by_name,
                private,
            } => CoreEvent::Invited {
                group: group.to_string(),
                by: by.to_string(),
                by_name,
                private,
            },
            E::MessageWaiting { group, waiting } => CoreEvent::MessageWaiting {
                group: group.to_string(),
                waiting: count(waiting),
            },
            E::Removed { group, at } => CoreEvent::Removed {
                group: group.to_string(),
                at: at.0,
            },
            E::SyncRefused { group, reason } => CoreEvent::SyncRefused {
                group: group.to_string(),
                reason,
            },
            E::KeyChanged {
                group,
                user,
                display_name,
            } => CoreEvent::KeyChanged {
                group: group.to_string(),
                user: user.to_string(),
                display_name,
            },
            E::MessageRejected(r) => CoreEvent::MessageRejected {
                rejection: r.into(),
            },
            E::GroupRejected(r) => CoreEvent::GroupRejected {
                rejection: r.into(),
            },
            E::GroupBehind {
                group,
                seen_epoch,
                log_epoch,
            } => CoreEvent::GroupBehind {
                group: group.to_string(),
                seen_epoch,
                log_epoch,
            },
            E::CaughtUp { group } => CoreEvent::CaughtUp {
                group: group.to_string(),
            },
            E::OrderWarning(r) => CoreEvent::OrderWarning {
                rejection: r.into(),
            },
            E::JoinRequest(r) => CoreEvent::JoinRequest { request: r.into() },
            E::Report(r) => CoreEvent::Report { report: r.into() },
            E::UrgentRequest(u) => CoreEvent::UrgentRequest { request: u.into() },
            E::MessagesDeleted { group, messages } => CoreEvent::MessagesDeleted {
                group: group.to_string(),
                messages: messages.iter().map(ToString::to_string).collect(),
            },
            E::Pinned {
                group,
                kind,
                version,
            } => CoreEvent::Pinned {
                group: group.to_string(),
                kind: kind.into(),
                version,
            },
            E::RoleChanged { group, role } => CoreEvent::RoleChanged {
                group: group.to_string(),
                role: role.into(),
            },
            E::EventsDropped { count } => CoreEvent::EventsDropped { count },
            E::Read { group, number } => CoreEvent::Read {
                group: group.to_string(),
                number,
            },
            E::HeldChanged { group } => CoreEvent::HeldChanged {
                group: group.to_string(),
            },
            E::HeldNeedsConfirm {
                group,
                id,
                added,
                epoch,
            } => CoreEvent::HeldNeedsConfirm {
                group: group.to_string(),
                id: id.to_hex(),
                added: added.into_iter().map(AddedMember::from).collect(),
                epoch,
            },
            E::DevicesChanged { user } => CoreEvent::DevicesChanged {
                user: user.to_string(),
            },
            E::IdentityMisuse { user } => CoreEvent::IdentityMisuse {
                user: user.to_string(),
            },
            E::DeviceUnlinked { by } => CoreEvent::DeviceUnlinked { by: by.to_string() },
            E::PostQuantumKeyRefused { code, reason } => {
                CoreEvent::PostQuantumKeyRefused { code, reason }
            }
            E::WarningAdded {
                group,
                message,
                warnings,
            } => CoreEvent::WarningAdded {
                group: group.to_string(),
                message: message.to_string(),
                warnings,
            },
            E::OwnSettingsChanged { group } => CoreEvent::OwnSettingsChanged {
                group: group.map(|g| g.to_string()),
            },
            E::RoundChanged { group, round } => CoreEvent::RoundChanged {
                group: group.to_string(),
                round: round.to_string(),
            },
            _ => return None,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Parameters

/// `{ group }`.
#[derive(Clone, Debug, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct GroupParams {
    /// The group.
    pub group: String,
}

/// `{ group, user }`.
#[derive(Clone, Debug, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct GroupUserParams {
    /// The group.
    pub group: String,
    /// The user.
    pub user: String,
}

/// `{ user }`.
#[derive(Clone, Debug, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct UserParams {
    /// The user.
    pub user: String,
}

/// `{ group, text }`: a pinned text, or the words of "I need a facilitator".
#[derive(Clone, Debug, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct GroupTextParams {
    /// The group.
    pub group: String,
    /// The text.
    pub text: String,
}

/// Parameters of `history`.
#[derive(Clone, Debug, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct HistoryParams {
    /// The group.
    pub group: String,
    /// Only messages before this `seq` (absent: the newest).
    #[serde(default)]
    #[tsify(optional)]
    #[serde(serialize_with = "js_number::serialize")]
    pub before: Option<u64>,
    /// At most this many.
    pub limit: u32,
}

/// Parameters of `sendText`.
#[derive(Clone, Debug, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct SendTextParams {
    /// The group.
    pub group: String,
    /// The text (not empty).
    pub text: String,
    /// The id of the message replied to.
    #[serde(default)]
    #[tsify(optional)]
    pub reply_to: Option<String>,
    /// Content warnings: ids of the group's warning topics (1 to 8, distinct); absent or empty
    /// for none.
    #[serde(default)]
    #[tsify(optional)]
    pub warnings: Option<Vec<u16>>,
}

/// Parameters of `createInvite`.
#[derive(Clone, Debug, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct CreateInviteParams {
    /// The group.
    pub group: String,
    /// Whether a facilitator must approve each join.
    pub requires_approval: bool,
    /// How many may use it (default 1).
    #[serde(default)]
    #[tsify(optional)]
    pub max_uses: Option<u32>,
    /// How long it is valid, in seconds (default 7 days).
    #[serde(default)]
    #[tsify(optional)]
    #[serde(serialize_with = "js_number::serialize")]
    pub valid_for_secs: Option<u64>,
}

/// Parameters of `join`.
#[derive(Clone, Debug, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct JoinParams {
    /// The invite text (`confide-invite:…`) or an https link with `#invite=<invite text>`.
    pub invite: String,
    /// A note to the facilitators, for an invite that needs approval.
    #[serde(default)]
    #[tsify(optional)]
    pub note: Option<String>,
}

/// Parameters of `remove`.
#[derive(Clone, Debug, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct RemoveParams {
    /// The group.
    pub group: String,
    /// The member.
    pub user: String,
    /// Also ban them (default no).
    #[serde(default)]
    #[tsify(optional)]
    pub ban: Option<bool>,
    /// A reason only the facilitators can read.
    #[serde(default)]
    #[tsify(optional)]
    pub reason: Option<String>,
}

/// Parameters of `mute`.
#[derive(Clone, Debug, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct MuteParams {
    /// The group.
    pub group: String,
    /// The member.
    pub user: String,
    /// For how long, in seconds.
    #[serde(serialize_with = "js_number::serialize")]
    pub duration_secs: u64,
    /// A reason only the facilitators can read.
    #[serde(default)]
    #[tsify(optional)]
    pub reason: Option<String>,
}

/// Parameters of `setRole`.
#[derive(Clone, Debug, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct SetRoleParams {
    /// The group.
    pub group: String,
    /// The member.
    pub user: String,
    /// The new role.
    pub role: Role,
}

/// Parameters of `setLocked`.
#[derive(Clone, Debug, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct SetLockedParams {
    /// The group.
    pub group: String,
    /// Locked (only facilitators post) or not.
    pub locked: bool,
}

/// Parameters of `setOpenHours`.
#[derive(Clone, Debug, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct SetOpenHoursParams {
    /// The group.
    pub group: String,
    /// The schedule; absent or `null` clears it.
    #[serde(default)]
    #[tsify(optional)]
    pub schedule: Option<OpenHours>,
}

/// Parameters of `setSlowMode`.
#[derive(Clone, Debug, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct SetSlowModeParams {
    /// The group.
    pub group: String,
    /// One message per this many seconds per member; 0 turns it off.
    pub seconds: u32,
}

/// Parameters of `deleteForEveryone`.
#[derive(Clone, Debug, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct DeleteForEveryoneParams {
    /// The group.
    pub group: String,
    /// The messages' ids.
    pub messages: Vec<String>,
}

/// Parameters of `deleteRecentOf`.
#[derive(Clone, Debug, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct DeleteRecentOfParams {
    /// The group.
    pub group: String,
    /// The member.
    pub user: String,
    /// How many of their latest messages.
    pub count: u32,
}

/// Parameters of `setLabel`.
#[derive(Clone, Debug, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct SetLabelParams {
    /// The group.
    pub group: String,
    /// The label (1 to 64 characters, not blank); absent or `null` removes it.
    #[serde(default)]
    #[tsify(optional)]
    pub label: Option<String>,
}

/// Parameters of `setRetention`.
#[derive(Clone, Debug, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct SetRetentionParams {
    /// The group.
    pub group: String,
    /// How long messages are kept, in seconds; absent or `null` keeps them.
    #[serde(default)]
    #[tsify(optional)]
    #[serde(serialize_with = "js_number::serialize")]
    pub keep_for_secs: Option<u64>,
}

/// Parameters of `setSettings`.
#[derive(Clone, Debug, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct SetSettingsParams {
    /// The group.
    pub group: String,
    /// Whether members may message each other privately.
    pub members_may_message_privately: bool,
}

impl SetSettingsParams {
    /// The settings the parameters name.
    pub fn settings(&self) -> CoreGroupSettings {
        CoreGroupSettings {
            members_may_message_privately: self.members_may_message_privately,
        }
    }
}

/// Parameters of `acceptAgreement`: the version and text that were shown (from `pinned`).
#[derive(Clone, Debug, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct AcceptAgreementParams {
    /// The group.
    pub group: String,
    /// The version shown.
    pub version: u32,
    /// The text shown.
    pub text: String,
}

/// Parameters of `report`.
#[derive(Clone, Debug, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct ReportParams {
    /// The group.
    pub group: String,
    /// The message's `seq`.
    #[serde(serialize_with = "js_number::serialize")]
    pub seq: u64,
    /// Why, for the facilitators.
    pub reason: String,
}

/// Parameters of `resolve`.
#[derive(Clone, Debug, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct ResolveParams {
    /// The queue item's id.
    pub id: String,
}

/// Parameters of `revokeInvite`.
#[derive(Clone, Debug, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct RevokeInviteParams {
    /// The group.
    pub group: String,
    /// The invite's id.
    pub invite: String,
}

/// Parameters of `openPrivate`.
#[derive(Clone, Debug, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct OpenPrivateParams {
    /// The group both are in.
    pub group: String,
    /// The other member.
    pub with: String,
}

/// Parameters of `messagePlace`.
#[derive(Clone, Debug, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct MessagePlaceParams {
    /// The group.
    pub group: String,
    /// The message's id.
    pub message: String,
}

/// Parameters of `seqOfNumber`.
#[derive(Clone, Debug, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct SeqOfNumberParams {
    /// The group.
    pub group: String,
    /// The number people were shown.
    #[serde(serialize_with = "js_number::serialize")]
    pub number: u64,
}

/// Parameters of `ConfideCore.open`.
#[derive(Clone, Debug, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct OpenOptions {
    /// The IndexedDB database the profile is kept in.
    pub db_name: String,
    /// The server, `wss://host[:port]/` (the worker passes `wss://${location.host}/`).
    pub server_url: String,
}

/// Parameters of `markRead`.
#[derive(Clone, Debug, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct MarkReadParams {
    /// The group.
    pub group: String,
    /// The `number` of the newest message the person has seen (a message's own count on
    /// this device, not its `seq`).
    #[serde(serialize_with = "js_number::serialize")]
    pub number: u64,
}

/// Parameters of `setDraft`.
#[derive(Clone, Debug, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct SetDraftParams {
    /// The group.
    pub group: String,
    /// The draft; empty or blank removes it.
    pub text: String,
}

// ---------------------------------------------------------------------------------------------
// Invite preview and group settings

/// Parameters of `previewInvite`.
#[derive(Clone, Debug, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct PreviewInviteParams {
    /// The invite text (`confide-invite:…`) or an https link with `#invite=<invite text>`.
    pub invite: String,
    /// Fetch the group's log with the invite and verify it (the profile must be unlocked).
    /// This asks the server, which then knows this device looked at the invite, so a front end
    /// does it only when the person asks. Without it only the link is read and nothing is sent.
    #[serde(default)]
    #[tsify(optional)]
    pub check: bool,
}

/// What can be known about an invite before joining (`previewInvite`). The group has no name
/// anyone could check, so none is given; the inviter's name comes from the group's verified
/// log, or is absent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct InvitePreview {
    /// The group the link names.
    pub group: String,
    /// Whether a facilitator must approve: from the verified log with `checked`, otherwise
    /// what the link says.
    pub requires_approval: bool,
    /// What the group's verified log says; absent when it could not be fetched (offline, or no
    /// profile unlocked yet): joining checks the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[tsify(optional)]
    pub checked: Option<CheckedInvite>,
}

/// What the group's verified log says about an invite ([`InvitePreview::checked`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct CheckedInvite {
    /// The facilitator who made the invite.
    pub inviter: InviterInfo,
    /// How many people the group has.
    pub members: u32,
    /// When the invite stops accepting joins (absent only for a member's own group whose log
    /// has no such invite).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(serialize_with = "js_number::serialize")]
    #[tsify(optional)]
    pub expires_at: Option<u64>,
    /// Whether this device is in the group already.
    pub already_member: bool,
}

/// The facilitator who made an invite. `displayName` is someone else's text: the SDK's
/// worker sanitises it as every `displayName`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct InviterInfo {
    /// Their user id.
    pub user: String,
    /// Their pseudonym, as the log records it.
    pub display_name: String,
    /// Their role (a facilitator or co-facilitator).
    pub role: Role,
}

impl From<core::InvitePreview> for InvitePreview {
    fn from(p: core::InvitePreview) -> InvitePreview {
        InvitePreview {
            group: p.group.to_string(),
            requires_approval: p.requires_approval,
            checked: p.checked.map(|c| CheckedInvite {
                inviter: InviterInfo {
                    user: c.inviter.to_string(),
                    display_name: c.inviter_name,
                    role: c.inviter_role.into(),
                },
                members: u32::try_from(c.members).unwrap_or(u32::MAX),
                expires_at: c.expires_at.map(|t| t.0),
                already_member: c.already_member,
            }),
        }
    }
}

/// A group's current settings (`settings`), from its verified log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct SettingsInfo {
    /// Whether the chat is closed by hand: only facilitators post.
    pub locked: bool,
    /// The weekly hours in which members may post (absent: at any time), in the schedule's
    /// own time zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[tsify(optional)]
    pub open_hours: Option<OpenHours>,
    /// Whether the chat is inside its open hours now.
    pub open_now: bool,
    /// One message per this many seconds per member (0: off).
    pub slow_mode_seconds: u32,
    /// How long messages are kept, in seconds (absent: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(serialize_with = "js_number::serialize")]
    #[tsify(optional)]
    pub retention_seconds: Option<u64>,
    /// Whether members may message each other privately.
    pub members_may_message_privately: bool,
    /// The agreement's current version, if there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[tsify(optional)]
    pub agreement_version: Option<u32>,
    /// Whether crisis resources are pinned.
    pub crisis_resources: bool,
}

impl From<core::SettingsInfo> for SettingsInfo {
    fn from(s: core::SettingsInfo) -> SettingsInfo {
        SettingsInfo {
            locked: s.locked,
            open_hours: s.open_hours.map(|h| OpenHours {
                time_zone: h.time_zone,
                windows: h
                    .windows
                    .into_iter()
                    .map(|w| OpenWindow {
                        day: w.day,
                        start_minute: w.start_minute,
                        end_minute: w.end_minute,
                    })
                    .collect(),
            }),
            open_now: s.open_now,
            slow_mode_seconds: s.slow_mode_seconds,
            retention_seconds: s.retention_seconds,
            members_may_message_privately: s.members_may_message_privately,
            agreement_version: s.agreement_version,
            crisis_resources: s.crisis_resources,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Messages waiting to be sent (held)

/// Parameters of `sendHeldAnyway` and `discardHeld`: a held message of a group.
#[derive(Clone, Debug, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct HeldParams {
    /// The group.
    pub group: String,
    /// The message (`HeldMessage.id`).
    pub id: String,
}

/// Parameters of `sendHeldAnyway`: a held message of a group, and the `epoch` of the
/// `HeldMessage` the person answered (who they were shown). Refused with
/// `changed_since_asked` if the group changed since.
#[derive(Clone, Debug, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct SendHeldParams {
    /// The group.
    pub group: String,
    /// The message (`HeldMessage.id`).
    pub id: String,
    /// `HeldMessage.epoch` as shown.
    #[serde(serialize_with = "js_number::serialize")]
    pub epoch: u64,
}

/// Someone who joined a group after a held message was written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct AddedMember {
    /// The user.
    pub user: String,
    /// Their pseudonym (their own text: show it as text).
    pub display_name: String,
    /// Someone who was there, now with a device that was not (it would read the message too).
    pub new_device: bool,
}

impl From<core::AddedMember> for AddedMember {
    fn from(a: core::AddedMember) -> AddedMember {
        AddedMember {
            user: a.user.to_string(),
            display_name: a.display_name,
            new_device: a.new_device,
        }
    }
}

/// A message of this user's not sent yet (`held`), in the order it goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct HeldMessage {
    /// Its id while it waits.
    pub id: String,
    /// What the user wrote.
    pub text: String,
    /// When they wrote it.
    #[serde(serialize_with = "js_number::serialize")]
    pub written_at: u64,
    /// Encrypted and handed to the server, waiting for its acknowledgement (cannot be
    /// discarded any more).
    pub sealed: bool,
    /// People joined since it was written: it goes only after `sendHeldAnyway`.
    pub needs_confirm: bool,
    /// Who joined since (empty: who is not known).
    pub added: Vec<AddedMember>,
    /// It waits behind an earlier message that waits for the user.
    pub behind_earlier: bool,
    /// The group's epoch `added` was worked out against: give it to `sendHeldAnyway`.
    #[serde(serialize_with = "js_number::serialize")]
    pub epoch: u64,
}

impl From<core::HeldMessage> for HeldMessage {
    fn from(m: core::HeldMessage) -> HeldMessage {
        HeldMessage {
            id: m.id.to_hex(),
            text: m.text,
            written_at: m.written_at.0,
            sealed: m.sealed,
            needs_confirm: m.needs_confirm,
            added: m.added.into_iter().map(AddedMember::from).collect(),
            behind_earlier: m.behind_earlier,
            epoch: m.epoch,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Linked devices (PROTOCOL.md §3.6–3.8)

/// What a new device shows once its link channel is open (`newLinkOpen`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct NewLinkOpened {
    /// The one-time code to type on the other device, `XXXXX-XXXXX`.
    pub code: String,
    /// The text to draw as a QR code (the code and this device's id).
    pub qr_text: String,
    /// This new device's id.
    pub device: String,
}

/// What the new device shows once the other device answered (`newLinkWait`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct LinkOffer {
    /// The numbers to compare with the other device's screen, e.g. `"4821 7390 1066"`.
    pub sas: String,
    /// The name of the account this device joins (from the other device).
    pub display_name: String,
    /// That account's half of every safety number (30 digits).
    pub fingerprint: String,
}

impl From<core::linking::LinkOffer> for LinkOffer {
    fn from(o: core::linking::LinkOffer) -> LinkOffer {
        LinkOffer {
            sas: o.sas,
            display_name: o.display_name,
            fingerprint: o.fingerprint,
        }
    }
}

/// What the existing device shows after `linkStart`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct LinkCheck {
    /// The numbers to compare with the new device's screen.
    pub sas: String,
    /// The new device's id.
    pub device: String,
}

impl From<core::linking::LinkCheck> for LinkCheck {
    fn from(c: core::linking::LinkCheck) -> LinkCheck {
        LinkCheck {
            sas: c.sas,
            device: c.device.to_string(),
        }
    }
}

/// One of this user's devices.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct OwnDevice {
    /// Its id.
    pub device: String,
    /// Whether it is this device.
    pub this_device: bool,
    /// Whether it made the current list (it linked or unlinked a device last).
    pub made_current_list: bool,
}

/// This user's devices as this device knows them (`ownDevices`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct OwnDevices {
    /// The devices, in the list's order.
    pub devices: Vec<OwnDevice>,
    /// The list's version.
    #[serde(serialize_with = "js_number::serialize")]
    pub version: u64,
    /// When the list was made.
    #[serde(serialize_with = "js_number::serialize")]
    pub at: u64,
    /// This user's half of every safety number (30 digits): the same on every device of theirs.
    pub fingerprint: String,
}

impl From<core::devices::OwnDevices> for OwnDevices {
    fn from(o: core::devices::OwnDevices) -> OwnDevices {
        OwnDevices {
            devices: o
                .devices
                .into_iter()
                .map(|d| OwnDevice {
                    device: d.device.to_string(),
                    this_device: d.this_device,
                    made_current_list: d.made_current_list,
                })
                .collect(),
            version: o.version,
            at: o.at.0,
            fingerprint: o.fingerprint,
        }
    }
}

/// `{ code }`: the code the new device shows, typed, or the text of its QR code.
#[derive(Clone, Debug, Serialize, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct LinkStartParams {
    /// The code or QR text.
    pub code: String,
}
