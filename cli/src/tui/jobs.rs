//! Client calls the chat makes, each run as its own task so the screen never waits on the
//! network: the [`super::app::App`] asks for a [`Job`], [`Runner`] runs it against the
//! [`Client`] and sends the [`Outcome`] back to the event loop.
//!
//! Errors arrive as sentences for people; no message text is ever logged.

use tokio::sync::mpsc;

use confide_client::{
    AgreementInfo, ChatMessage, Client, ClientError, GroupInfo, GroupNotice, MemberInfo,
    NextMeeting, PinnedInfo, RemoveOptions, RoundView, Status, WarningTopics,
};
use confide_protocol::frames::ErrorCode;
use confide_protocol::group_log::Role;
use confide_protocol::{GroupId, Seq, UserId};

use super::slash::Slash;
use super::text::{Clock, look_alike_note, one_line, role_name};

/// How many messages one history page holds.
pub const HISTORY_PAGE: usize = 200;

/// Something the chat needs from the client. Its `Debug` names the job, never its text.
#[derive(Clone, PartialEq, Eq)]
pub enum Job {
    /// The list of groups.
    Groups,
    /// A page of history, before a message or the newest.
    History {
        /// The group.
        group: GroupId,
        /// Only messages before this one.
        before: Option<Seq>,
    },
    /// What happened among a group's messages (removals, deletions).
    Notices {
        /// The group.
        group: GroupId,
    },
    /// What the user may do in a group.
    Status {
        /// The group.
        group: GroupId,
    },
    /// The agreement, to ask the user to accept it.
    Agreement {
        /// The group.
        group: GroupId,
        /// Show it even if it is already accepted (the user asked for it).
        asked: bool,
    },
    /// Sends a message.
    Send {
        /// The group.
        group: GroupId,
        /// The text.
        text: String,
        /// Its content warnings (topic ids; none for most messages).
        warnings: Vec<u16>,
        /// The local echo to replace with the stored message.
        local_id: u64,
    },
    /// The group-work state the screen shows: next meeting, open round, warning topics.
    GroupWork {
        /// The group.
        group: GroupId,
    },
    /// Accepts the group's agreement: the one that was shown.
    Accept {
        /// The group.
        group: GroupId,
        /// The agreement shown (version and text, from [`Client::pinned`]).
        shown: AgreementInfo,
    },
    /// A slash command for the open group.
    Command {
        /// The group.
        group: GroupId,
        /// The command.
        command: Slash,
    },
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Job::Groups => f.write_str("Groups"),
            Job::History { group, before } => f
                .debug_struct("History")
                .field("group", group)
                .field("before", before)
                .finish(),
            Job::Status { group } => f.debug_struct("Status").field("group", group).finish(),
            Job::Notices { group } => f.debug_struct("Notices").field("group", group).finish(),
            Job::GroupWork { group } => f.debug_struct("GroupWork").field("group", group).finish(),
            Job::Agreement { group, asked } => f
                .debug_struct("Agreement")
                .field("group", group)
                .field("asked", asked)
                .finish(),
            Job::Send {
                group, local_id, ..
            } => f
                .debug_struct("Send")
                .field("group", group)
                .field("local_id", local_id)
                .finish_non_exhaustive(),
            Job::Accept { group, shown } => f
                .debug_struct("Accept")
                .field("group", group)
                .field("version", &shown.version)
                .finish_non_exhaustive(),
            Job::Command { group, .. } => f
                .debug_struct("Command")
                .field("group", group)
                .finish_non_exhaustive(),
        }
    }
}

/// What came back.
pub enum Outcome {
    /// The groups.
    Groups(Result<Vec<GroupInfo>, String>),
    /// A page of history.
    History {
        /// The group.
        group: GroupId,
        /// The page.
        result: Result<Vec<ChatMessage>, String>,
    },
    /// What happened among a group's messages.
    Notices {
        /// The group.
        group: GroupId,
        /// The notices, oldest first.
        result: Result<Vec<GroupNotice>, String>,
    },
    /// A group's status.
    Status {
        /// The group.
        group: GroupId,
        /// The status.
        result: Result<Status, String>,
        /// Its current members, to mark look-alike names (empty if they could not be read).
        members: Vec<MemberInfo>,
    },
    /// A group's pinned texts.
    Agreement {
        /// The group.
        group: GroupId,
        /// Whether the user asked to see it.
        asked: bool,
        /// The texts.
        result: Result<PinnedInfo, String>,
    },
    /// A send finished.
    Sent {
        /// The group.
        group: GroupId,
        /// The local echo.
        local_id: u64,
        /// The stored message, or why it was refused.
        result: Result<ChatMessage, SendFailure>,
    },
    /// The agreement was accepted (or not).
    Accepted {
        /// The group.
        group: GroupId,
        /// Whether it worked.
        result: Result<(), String>,
    },
    /// A group's group-work state.
    GroupWork {
        /// The group.
        group: GroupId,
        /// The state.
        result: Result<GroupWork, String>,
    },
    /// A slash command finished.
    Reply {
        /// The group.
        group: GroupId,
        /// What to show.
        result: Result<Reply, String>,
    },
}

/// What the chat shows of a group's group-work tools (issue 17): the next meeting (in the
/// header), the open round's prompt (above the messages), and what content warnings need.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupWork {
    /// The meeting in progress or the next one.
    pub next_meeting: Option<NextMeeting>,
    /// The round open now, if one is.
    pub round: Option<RoundView>,
    /// The group's warning topics, to name a message's warnings.
    pub topics: Option<WarningTopics>,
    /// The topics this device hides in the group (local only).
    pub hidden_topics: Vec<u16>,
}

/// Reads a group's [`GroupWork`].
async fn group_work(client: &Client, group: GroupId) -> Result<GroupWork, ClientError> {
    let pinned = client.pinned(group).await?;
    Ok(GroupWork {
        next_meeting: client.next_meeting(group).await?,
        round: client
            .rounds(group)
            .await?
            .into_iter()
            .rev()
            .find(|r| r.open),
        topics: pinned.warning_topics,
        hidden_topics: client.hidden_topics(group).await?,
    })
}

/// Why a message was not sent.
#[derive(Clone, PartialEq, Eq)]
pub struct SendFailure {
    /// For people.
    pub text: String,
    /// The server wants the agreement accepted first.
    pub agreement_required: bool,
    /// Not refused: the connection failed before the server acknowledged it, and the client
    /// sends it again when the connection returns ([`confide_client::Event::Sent`] or
    /// [`confide_client::Event::SendFailed`] follows).
    pub pending: bool,
}

/// What a finished slash command shows.
#[derive(Clone, PartialEq, Eq)]
pub enum Reply {
    /// A one-line confirmation.
    Notice(String),
    /// A titled text in a window.
    Window {
        /// The title.
        title: String,
        /// The text.
        body: String,
    },
    /// The group's pinned texts, for `/agreement`.
    Pinned(PinnedInfo),
    /// A command posted a message (a round's answer or pass): shown among the messages, with
    /// a confirmation.
    Posted {
        /// The confirmation.
        notice: String,
        /// The message, as stored.
        message: Box<ChatMessage>,
    },
    /// The user checked a member's safety number: their key warning can go.
    SafetyChecked {
        /// The member.
        user: UserId,
        /// The window to show.
        title: String,
        /// The number.
        body: String,
    },
}

/// Runs [`Job`]s on tasks and reports their [`Outcome`]s.
pub struct Runner {
    /// The client; every clone talks to the same background task.
    client: Client,
    /// Where outcomes go (the event loop holds the receiver).
    done: mpsc::UnboundedSender<Outcome>,
    /// Formats times in the user's zone.
    clock: Clock,
}

impl Runner {
    /// A runner reporting on `done`.
    pub fn new(client: Client, done: mpsc::UnboundedSender<Outcome>, clock: Clock) -> Runner {
        Runner {
            client,
            done,
            clock,
        }
    }

    /// Starts every job on its own task.
    pub fn start(&self, jobs: Vec<Job>) {
        for job in jobs {
            let client = self.client.clone();
            let done = self.done.clone();
            let clock = self.clock.clone();
            tokio::spawn(async move {
                let outcome = run(&client, &clock, job).await;
                // The loop has ended if nobody listens: nothing left to show.
                let _ = done.send(outcome);
            });
        }
    }
}

async fn run(client: &Client, clock: &Clock, job: Job) -> Outcome {
    match job {
        Job::Groups => Outcome::Groups(client.groups().await.map_err(|e| describe(&e))),
        Job::History { group, before } => Outcome::History {
            group,
            result: client
                .history(group, before, HISTORY_PAGE)
                .await
                .map_err(|e| describe(&e)),
        },
        Job::Notices { group } => Outcome::Notices {
            group,
            result: client.notices(group).await.map_err(|e| describe(&e)),
        },
        Job::Status { group } => Outcome::Status {
            group,
            result: client.status(group).await.map_err(|e| describe(&e)),
            // Only for the look-alike marks: a failure here shows up in the status instead.
            members: client.members(group).await.unwrap_or_default(),
        },
        Job::Agreement { group, asked } => Outcome::Agreement {
            group,
            asked,
            result: client.pinned(group).await.map_err(|e| describe(&e)),
        },
        Job::Send {
            group,
            text,
            warnings,
            local_id,
        } => Outcome::Sent {
            group,
            local_id,
            result: if warnings.is_empty() {
                client.send_text(group, &text, None).await
            } else {
                client
                    .send_text_with_warnings(group, &text, None, warnings)
                    .await
            }
            .map_err(|e| send_failure(&e, clock)),
        },
        Job::GroupWork { group } => Outcome::GroupWork {
            group,
            result: group_work(client, group).await.map_err(|e| describe(&e)),
        },
        Job::Accept { group, shown } => Outcome::Accepted {
            group,
            result: client
                .accept_agreement(group, &shown)
                .await
                .map_err(|e| describe(&e)),
        },
        Job::Command { group, command } => Outcome::Reply {
            group,
            result: command_reply(client, clock, group, command).await,
        },
    }
}

async fn command_reply(
    client: &Client,
    clock: &Clock,
    group: GroupId,
    command: Slash,
) -> Result<Reply, String> {
    let e = |e: ClientError| describe(&e);
    let reply = match command {
        Slash::Mute {
            who,
            duration,
            reason,
        } => {
            let member = resolve(client, group, &who).await?;
            client
                .mute(group, member.user, duration, reason.as_deref())
                .await
                .map_err(e)?;
            let until = std::time::SystemTime::now() + duration;
            Reply::Notice(format!(
                "{} is muted until {}.",
                member.display_name,
                clock.system_time(until)
            ))
        }
        Slash::Unmute { who } => {
            let member = resolve(client, group, &who).await?;
            client.unmute(group, member.user).await.map_err(e)?;
            Reply::Notice(format!("{} can post again.", member.display_name))
        }
        Slash::Remove { who, ban, reason } => {
            let member = resolve(client, group, &who).await?;
            let name = one_line(&member.display_name);
            // A ban also revokes the invite the person joined with (as `confide mod remove
            // --ban` does), so they cannot even read the group's log with it.
            let invite = if ban {
                client.invite_of(group, member.user).await.map_err(e)?
            } else {
                None
            };
            let mut removal = RemoveOptions::new().ban(ban);
            removal.reason = reason;
            client
                .remove(group, member.user, removal)
                .await
                .map_err(e)?;
            let usable = match invite {
                Some(id) => client
                    .invites(group)
                    .await
                    .map_err(e)?
                    .into_iter()
                    .any(|i| i.id == id && !i.revoked && i.uses < i.max_uses),
                None => false,
            };
            if let Some(id) = invite.filter(|_| usable) {
                client.revoke_invite(group, id).await.map_err(e)?;
            }
            Reply::Notice(match (ban, usable) {
                (true, true) => format!(
                    "{name} was removed and cannot come back; the invite they joined with is revoked."
                ),
                (true, false) => format!("{name} was removed and cannot come back."),
                (false, _) => format!("{name} was removed from the group."),
            })
        }
        Slash::Lock(locked) => {
            client.set_locked(group, locked).await.map_err(e)?;
            Reply::Notice(if locked {
                "The chat is locked: only facilitators can post.".into()
            } else {
                "The chat is open again: everyone can post.".into()
            })
        }
        Slash::AgreementShow => Reply::Pinned(client.pinned(group).await.map_err(e)?),
        Slash::AgreementSet(text) => {
            client.set_agreement(group, &text).await.map_err(e)?;
            Reply::Notice("The new agreement is pinned; members are asked to accept it.".into())
        }
        Slash::Crisis => {
            let pinned = client.pinned(group).await.map_err(e)?;
            // The person's own safety plan goes with the resources, for their eyes only.
            let plan = crate::group_work::plan_for_crisis(client, None).await;
            Reply::Window {
                title: "If you are in crisis".into(),
                body: format!(
                    "{}\n\n{plan}",
                    pinned
                        .crisis_resources
                        .unwrap_or_else(|| NO_CRISIS_RESOURCES.into())
                ),
            }
        }
        Slash::Plan => Reply::Window {
            title: "My safety plan".into(),
            body: crate::group_work::plan_text(&client.safety_plan().await.map_err(e)?, None),
        },
        Slash::Meeting => {
            let pinned = client.pinned(group).await.map_err(e)?;
            let next = client.next_meeting(group).await.map_err(e)?;
            Reply::Window {
                title: "Meetings".into(),
                body: match pinned.meetings {
                    Some(s) => crate::group_work::schedule_text(&s, next.as_ref(), None),
                    None => "This group has no meeting schedule.".into(),
                },
            }
        }
        Slash::Round => {
            let rounds = client.rounds(group).await.map_err(e)?;
            let members = client.members(group).await.unwrap_or_default();
            Reply::Window {
                title: "Check-in round".into(),
                body: match rounds.last() {
                    Some(r) => {
                        let how = if r.open {
                            "\n\n/answer <text> answers (again, to change it) · /pass passes"
                        } else {
                            ""
                        };
                        format!("{}{how}", crate::group_work::round_block(r, &members, None))
                    }
                    None => "No round in this group yet.".into(),
                },
            }
        }
        Slash::Answer(text) => {
            let round = open_round(client, group).await?;
            let m = client.answer_round(group, round, &text).await.map_err(e)?;
            Reply::Posted {
                notice: format!("Your answer is in (#{}).", m.number),
                message: Box::new(m),
            }
        }
        Slash::Pass => {
            let round = open_round(client, group).await?;
            let m = client.pass_round(group, round).await.map_err(e)?;
            Reply::Posted {
                notice: "You passed this round.".into(),
                message: Box::new(m),
            }
        }
        Slash::Resources(words) => {
            let library = client.pinned(group).await.map_err(e)?.resources;
            let found: Vec<String> = library
                .as_ref()
                .map(|l| {
                    l.search(&words)
                        .into_iter()
                        .map(|(i, r)| crate::group_work::resource_text(i + 1, r, None))
                        .collect()
                })
                .unwrap_or_default();
            Reply::Window {
                title: "Resources".into(),
                body: match (library.is_some(), found.is_empty()) {
                    (_, false) => found.join("\n\n"),
                    (true, true) if !words.trim().is_empty() => "No resource matches.".into(),
                    _ => "This group has no resources.".into(),
                },
            }
        }
        Slash::Hide(topics, hide) => {
            let mut hidden = client.hidden_topics(group).await.map_err(e)?;
            if hide {
                hidden.extend_from_slice(&topics);
            } else {
                hidden.retain(|t| !topics.contains(t));
            }
            hidden.sort_unstable();
            hidden.dedup();
            client
                .set_hidden_topics(group, hidden.clone())
                .await
                .map_err(e)?;
            let topics = client.pinned(group).await.map_err(e)?.warning_topics;
            Reply::Notice(if hidden.is_empty() {
                "You hide no topic in this group.".into()
            } else {
                format!(
                    "Hidden on this device: {} (Ctrl-R shows hidden messages).",
                    crate::group_work::warning_labels(&hidden, topics.as_ref())
                )
            })
        }
        Slash::Report { number, reason } => {
            // The number the chat shows (this device's own, [`ChatMessage::number`]).
            let seq = client
                .seq_of_number(group, number)
                .await
                .map_err(e)?
                .ok_or_else(|| format!("There is no message #{number} here."))?;
            client.report(group, seq, &reason).await.map_err(e)?;
            Reply::Notice(format!(
                "Thank you. Message #{number} was reported to the facilitators."
            ))
        }
        Slash::Urgent(text) => {
            client.request_facilitator(group, &text).await.map_err(e)?;
            Reply::Notice(
                "Your request went to the facilitators, only they can read it. If you are in danger right now, please call your local emergency number."
                    .into(),
            )
        }
        Slash::Safety { who } => {
            let member = resolve(client, group, &who).await?;
            let number = client.safety_number(member.user).await.map_err(e)?;
            let name = one_line(&member.display_name);
            Reply::SafetyChecked {
                user: member.user,
                title: format!("Safety number with {name}"),
                body: format!(
                    "{number}\n\nCompare it with {name}{} in person or on a call. If it matches, your conversation is private between the members you see.",
                    look_alike_note(&member.looks_like)
                ),
            }
        }
        Slash::Members => {
            let members = client.members(group).await.map_err(e)?;
            Reply::Window {
                title: format!("Members ({})", members.len()),
                body: members_text(&members, clock),
            }
        }
        Slash::Leave => {
            // The library then reports `Removed`, which the chat shows.
            client.leave(group).await.map_err(e)?;
            Reply::Notice("You left. You can still read what was said while you were in it.".into())
        }
        Slash::AcceptGroup => {
            // The library then reports `Joined`, which the chat shows.
            client.accept_group(group).await.map_err(e)?;
            Reply::Notice(String::new())
        }
        Slash::Help | Slash::Quit | Slash::Warned { .. } => Reply::Notice(String::new()),
    };
    Ok(reply)
}

/// Shown by `/crisis` when the facilitators pinned nothing.
const NO_CRISIS_RESOURCES: &str = "This group has no crisis resources pinned yet.\n\nIf you are in danger or thinking about harming yourself, please call your local emergency number now.\nYou can also ask the facilitators for help privately: /urgent <text>";

fn members_text(members: &[MemberInfo], clock: &Clock) -> String {
    let mut sorted: Vec<&MemberInfo> = members.iter().collect();
    sorted.sort_by_key(|m| {
        (
            !matches!(m.role, Role::Facilitator),
            !matches!(m.role, Role::CoFacilitator),
            m.display_name.to_lowercase(),
        )
    });
    sorted
        .iter()
        .map(|m| {
            // One line per member, whatever the name holds (a name cannot forge another entry).
            let mut line = one_line(&m.display_name);
            line.push_str(&look_alike_note(&m.looks_like));
            if m.role != Role::Member {
                line.push_str(&format!(" — {}", role_name(m.role)));
            }
            if let Some(until) = m.muted_until.filter(|u| !clock.is_past(*u)) {
                line.push_str(&format!(" (muted until {})", clock.hhmm(until)));
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The round open in the group now.
async fn open_round(
    client: &Client,
    group: GroupId,
) -> Result<confide_protocol::ids::RoundId, String> {
    client
        .rounds(group)
        .await
        .map_err(|e| describe(&e))?
        .into_iter()
        .rev()
        .find(|r| r.open)
        .map(|r| r.id)
        .ok_or_else(|| "No round is open in this group.".to_string())
}

/// A member by pseudonym (exact, then ignoring case) or by user id.
async fn resolve(client: &Client, group: GroupId, who: &str) -> Result<MemberInfo, String> {
    let members = client.members(group).await.map_err(|e| describe(&e))?;
    let exact: Vec<&MemberInfo> = members.iter().filter(|m| m.display_name == who).collect();
    let matches = if exact.is_empty() {
        members
            .iter()
            .filter(|m| m.display_name.to_lowercase() == who.to_lowercase())
            .collect()
    } else {
        exact
    };
    match matches.as_slice() {
        [one] => return Ok((*one).clone()),
        [] => {}
        _ => {
            return Err(format!(
                "Several members are called {who}: use their user id (see /members in the command-line client)."
            ));
        }
    }
    members
        .iter()
        .find(|m| m.user.to_string() == who)
        .cloned()
        .ok_or_else(|| format!("Nobody called {who} is in this group (see /members)."))
}

/// Why a send failed, for the person who typed it.
fn send_failure(e: &ClientError, clock: &Clock) -> SendFailure {
    let text = match e {
        ClientError::Server {
            code: ErrorCode::Muted,
            retry_after_ms,
            ..
        } => match retry_after_ms {
            Some(ms) => format!(
                "Not sent: you are muted until {}.",
                clock.system_time(
                    std::time::SystemTime::now() + std::time::Duration::from_millis(*ms)
                )
            ),
            None => "Not sent: you are muted for now.".into(),
        },
        ClientError::Server {
            code: ErrorCode::SlowMode,
            message,
            retry_after_ms,
        } => match retry_after_ms {
            Some(ms) => format!(
                "Not sent: {message}. You can post again in {} s.",
                ms.div_ceil(1000)
            ),
            None => format!("Not sent: {message}."),
        },
        ClientError::Pending => {
            "The connection dropped before the server confirmed your message: it will be sent when the connection returns.".into()
        }
        ClientError::Held => {
            "Held: the server cannot be reached just now or asked this device to wait a moment, or this device has not yet been shown the group's latest membership change. Your message is kept and will be sent later.".into()
        }
        other => format!("Not sent: {}", describe(other)),
    };
    SendFailure {
        text,
        agreement_required: e.server_code() == Some(ErrorCode::AgreementRequired),
        pending: matches!(e, ClientError::Pending | ClientError::Held),
    }
}

/// A client error as a sentence.
pub fn describe(e: &ClientError) -> String {
    match e {
        ClientError::Server { message, .. } => sentence(message),
        ClientError::Transport(_) => {
            "The server cannot be reached right now; the chat keeps trying.".into()
        }
        ClientError::NotMember => "You are not a member of this group.".into(),
        ClientError::Removed { departure, .. } => match (departure.left, departure.banned) {
            (true, _) => "You left this group: you can read what was said, not post.".into(),
            (false, true) => "You were removed and banned from this group.".into(),
            (false, false) => {
                "You were removed from this group: you can read what was said, not post.".into()
            }
        },
        ClientError::UnknownGroup => {
            "This device does not know that group (yet): wait for the sync to finish.".into()
        }
        ClientError::Closed => "The connection to the client stopped.".into(),
        other => sentence(&other.to_string()),
    }
}

/// Capitalised, with a full stop.
fn sentence(text: &str) -> String {
    let mut chars = text.trim().chars();
    let mut out: String = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => return String::new(),
    };
    if !out.ends_with(['.', '!', '?']) {
        out.push('.');
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn refusals_read_as_sentences() {
        let clock = Clock::utc();
        let slow = ClientError::Server {
            code: ErrorCode::SlowMode,
            message: "slow mode: one message per 60 s".into(),
            retry_after_ms: Some(41_200),
        };
        assert_eq!(
            send_failure(&slow, &clock).text,
            "Not sent: slow mode: one message per 60 s. You can post again in 42 s."
        );
        let locked = ClientError::Server {
            code: ErrorCode::Locked,
            message: "the group is locked; only facilitators can post".into(),
            retry_after_ms: None,
        };
        assert_eq!(
            send_failure(&locked, &clock).text,
            "Not sent: The group is locked; only facilitators can post."
        );
        let agreement = ClientError::Server {
            code: ErrorCode::AgreementRequired,
            message: "accept the current group agreement before posting".into(),
            retry_after_ms: None,
        };
        assert!(send_failure(&agreement, &clock).agreement_required);
    }

    #[test]
    fn a_line_separator_in_a_name_cannot_forge_a_facilitator_in_the_members_window() {
        // Names from an older or hostile log: the log refuses U+2028 in names now, but the
        // member list must not depend on it.
        let m = |u: u8, name: &str, role| {
            let mut v = MemberInfo::default();
            v.user = UserId([u; 16]);
            v.display_name = name.into();
            v.role = role;
            v.devices = vec![];
            v.muted_until = None;
            v.looks_like = vec![];
            v
        };
        let members = vec![
            m(1, "Alice", Role::Facilitator),
            m(2, "Mallory\u{2028}Bob \u{2014} facilitator", Role::Member),
            m(3, "Eve\u{2029}Carol \u{2014} facilitator", Role::Member),
        ];
        let body = members_text(&members, &Clock::utc());
        let shown = crate::text::clean(&body);
        assert_eq!(shown.lines().count(), 3, "{shown}");
        assert!(
            !shown
                .lines()
                .any(|l| l.starts_with("Bob") || l.starts_with("Carol")),
            "{shown}"
        );
    }
}
