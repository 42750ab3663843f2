//! Slash commands typed into the chat's input line (`/mute @Bob 30m`), parsed completely into a
//! [`Slash`] before anything is sent, so a typo never half-runs a facilitator action.

use std::time::Duration;

/// Every command with its usage and what it does, in the order `/help` lists them.
pub const COMMANDS: &[(&str, &str)] = &[
    ("/help", "this list"),
    ("/crisis", "crisis resources pinned to this group"),
    ("/urgent <text>", "ask the facilitators for help, privately"),
    ("/plan", "your own safety plan (only on your devices)"),
    ("/agreement", "read the group agreement (and accept it)"),
    ("/meeting", "the meeting schedule and the next meeting"),
    ("/round", "the check-in round: the prompt and the answers"),
    ("/answer <text>", "answer the open round"),
    ("/pass", "pass in the open round"),
    (
        "/cw <topics> <text>",
        "send with a content warning, e.g. /cw 1,2 text",
    ),
    ("/hide <topics>", "hide messages with these topics here"),
    ("/unhide <topics>", "show them again"),
    (
        "/resources [words]",
        "the group's resources, or those matching",
    ),
    (
        "/agreement set <text>",
        "pin a new agreement (facilitators)",
    ),
    ("/members", "who is in this group"),
    (
        "/accept",
        "join the group someone added you to (open it with Tab first)",
    ),
    (
        "/leave",
        "leave this group, or decline one someone added you to",
    ),
    ("/safety @name", "the safety number to compare with someone"),
    (
        "/report <number> <reason>",
        "report message #number to the facilitators",
    ),
    (
        "/mute @name 30m [reason]",
        "mute someone for 30s, 30m, 2h, 1d… (facilitators)",
    ),
    ("/unmute @name", "lift a mute (facilitators)"),
    ("/remove @name [reason]", "remove someone (facilitators)"),
    (
        "/ban @name [reason]",
        "remove someone for good (facilitators)",
    ),
    ("/lock", "only facilitators can post (facilitators)"),
    ("/unlock", "everyone can post again (facilitators)"),
    ("/quit", "leave the chat (also Ctrl-C)"),
];

/// A parsed slash command. People are named as typed (without the `@`); they are resolved
/// against the group's members when the command runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Slash {
    /// Lists the commands.
    Help,
    /// Mutes a member for a while.
    Mute {
        /// The member's pseudonym or user id.
        who: String,
        /// How long.
        duration: Duration,
        /// A reason only the facilitators read.
        reason: Option<String>,
    },
    /// Lifts a mute.
    Unmute {
        /// The member.
        who: String,
    },
    /// Removes a member, and with `ban` keeps them out.
    Remove {
        /// The member.
        who: String,
        /// Whether they may come back.
        ban: bool,
        /// A reason only the facilitators read.
        reason: Option<String>,
    },
    /// Locks (`true`) or unlocks the chat.
    Lock(bool),
    /// Shows the agreement (with the choice to accept it, if pending).
    AgreementShow,
    /// Pins a new agreement (facilitators).
    AgreementSet(String),
    /// Shows the crisis resources.
    Crisis,
    /// Shows the user's own safety plan.
    Plan,
    /// Shows the meeting schedule.
    Meeting,
    /// Shows the latest round.
    Round,
    /// Answers the open round.
    Answer(String),
    /// Passes in the open round.
    Pass,
    /// Sends a message with content warnings.
    Warned {
        /// Topic ids.
        warnings: Vec<u16>,
        /// The text.
        text: String,
    },
    /// Hides (`true`) or shows again topics on this device.
    Hide(Vec<u16>, bool),
    /// Lists the resources matching the words (all without).
    Resources(String),
    /// Reports a message by its number.
    Report {
        /// The message's number as the chat shows it (`#12`).
        number: u64,
        /// Why.
        reason: String,
    },
    /// "I need a facilitator".
    Urgent(String),
    /// Shows the safety number with a member.
    Safety {
        /// The member.
        who: String,
    },
    /// Lists the members.
    Members,
    /// Accepts being in the open group, which someone added this user to.
    AcceptGroup,
    /// Leaves the open group (declines it, if someone added the user and they did not accept).
    Leave,
    /// Leaves the chat.
    Quit,
}

/// Parses a line that starts with `/`. The error is a sentence for the person typing.
pub fn parse(line: &str) -> Result<Slash, String> {
    let line = line.trim();
    let body = line.strip_prefix('/').unwrap_or(line);
    let (name, rest) = split_word(body);
    let rest = rest.trim();
    let usage = |name: &str| -> String {
        let hint = COMMANDS
            .iter()
            .filter(|(usage, _)| usage.split_whitespace().next() == Some(name))
            .map(|(usage, _)| *usage)
            .collect::<Vec<_>>()
            .join("  or  ");
        format!("Usage: {hint}")
    };
    let command = match name.to_ascii_lowercase().as_str() {
        "help" | "?" => Slash::Help,
        "quit" | "exit" | "q" => Slash::Quit,
        "lock" => Slash::Lock(true),
        "unlock" => Slash::Lock(false),
        "crisis" => Slash::Crisis,
        "plan" | "safety-plan" => Slash::Plan,
        "meeting" | "meetings" => Slash::Meeting,
        "round" => Slash::Round,
        "pass" if rest.is_empty() => Slash::Pass,
        "pass" => return Err(usage("/pass")),
        "answer" if !rest.is_empty() => Slash::Answer(rest.to_string()),
        "answer" => return Err(usage("/answer")),
        "resources" => Slash::Resources(rest.to_string()),
        "cw" => {
            let (ids, text) = split_word(rest);
            let warnings = topics(ids).ok_or_else(|| usage("/cw"))?;
            let text = text.trim();
            if text.is_empty() {
                return Err(usage("/cw"));
            }
            Slash::Warned {
                warnings,
                text: text.to_string(),
            }
        }
        "hide" | "unhide" => {
            let hide = name.eq_ignore_ascii_case("hide");
            let shown = if hide { "/hide" } else { "/unhide" };
            let ids: Vec<&str> = rest.split_whitespace().collect();
            Slash::Hide(topics(&ids.join(",")).ok_or_else(|| usage(shown))?, hide)
        }
        "members" | "who" => Slash::Members,
        "accept" => Slash::AcceptGroup,
        // Nothing may follow: a typo such as "/leave it be" does not leave a group.
        "leave" if rest.is_empty() => Slash::Leave,
        "leave" => return Err(usage("/leave")),
        "agreement" => {
            let (sub, text) = split_word(rest);
            match sub {
                "" => Slash::AgreementShow,
                "set" if !text.trim().is_empty() => Slash::AgreementSet(text.trim().to_string()),
                _ => return Err(usage("/agreement")),
            }
        }
        "urgent" => {
            if rest.is_empty() {
                return Err(usage("/urgent"));
            }
            Slash::Urgent(rest.to_string())
        }
        "report" => {
            let (number, reason) = split_word(rest);
            let number = number
                .trim_start_matches('#')
                .parse::<u64>()
                .map_err(|_| usage("/report"))?;
            let reason = reason.trim();
            if reason.is_empty() {
                return Err(usage("/report"));
            }
            Slash::Report {
                number,
                reason: reason.to_string(),
            }
        }
        "safety" => Slash::Safety {
            who: person(rest).ok_or_else(|| usage("/safety"))?.0,
        },
        "unmute" => Slash::Unmute {
            who: person(rest).ok_or_else(|| usage("/unmute"))?.0,
        },
        "mute" => {
            let (who, rest) = person(rest).ok_or_else(|| usage("/mute"))?;
            let (duration, reason) = split_word(rest);
            if duration.is_empty() {
                return Err(usage("/mute"));
            }
            Slash::Mute {
                who,
                duration: parse_duration(duration)?,
                reason: optional(reason),
            }
        }
        "remove" | "kick" | "ban" => {
            let ban = name.eq_ignore_ascii_case("ban");
            let shown = if ban { "/ban" } else { "/remove" };
            let (who, reason) = person(rest).ok_or_else(|| usage(shown))?;
            Slash::Remove {
                who,
                ban,
                reason: optional(reason),
            }
        }
        "" => return Err("Type a command after the /, or /help to see them all.".into()),
        other => {
            return Err(format!(
                "There is no command /{other}. Type /help to see them all (start with // to send a message beginning with /)."
            ));
        }
    };
    Ok(command)
}

/// Parses `30s`, `30m`, `2h` or `1d` (a unit is required, so `30` is never misread).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration: use e.g. 30s, 30m, 2h or 1d.");
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let unit_secs: u64 = match unit.to_ascii_lowercase().as_str() {
        "s" | "sec" | "secs" => 1,
        "m" | "min" | "mins" => 60,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 86_400,
        _ => return Err(bad()),
    };
    match n.checked_mul(unit_secs) {
        Some(0) => Err("A duration must be longer than zero.".into()),
        Some(secs) => Ok(Duration::from_secs(secs)),
        None => Err(bad()),
    }
}

/// Topic ids, comma-separated: `1,2`; `None` unless every one is a number.
fn topics(text: &str) -> Option<Vec<u16>> {
    let ids: Option<Vec<u16>> = text
        .split(',')
        .filter(|t| !t.trim().is_empty())
        .map(|t| t.trim().parse().ok())
        .collect();
    ids.filter(|ids| !ids.is_empty())
}

/// The first whitespace-separated word and the rest.
fn split_word(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    match text.find(char::is_whitespace) {
        Some(at) => (&text[..at], &text[at..]),
        None => (text, ""),
    }
}

/// A person: `@name`, `name`, or `@"two words"` for pseudonyms with spaces. Returns the name
/// without the `@` and the rest of the line.
fn person(text: &str) -> Option<(String, &str)> {
    let text = text.trim_start();
    let text = text.strip_prefix('@').unwrap_or(text);
    if let Some(quoted) = text.strip_prefix('"') {
        let end = quoted.find('"')?;
        let name = quoted[..end].trim();
        return (!name.is_empty()).then(|| (name.to_string(), &quoted[end + 1..]));
    }
    let (name, rest) = split_word(text);
    (!name.is_empty()).then(|| (name.to_string(), rest))
}

/// Trimmed text, or `None` if there is none.
fn optional(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn facilitator_commands_parse_with_and_without_reasons() {
        assert_eq!(
            parse("/mute @Bob 30m cooling off").unwrap(),
            Slash::Mute {
                who: "Bob".into(),
                duration: Duration::from_secs(1800),
                reason: Some("cooling off".into())
            }
        );
        assert_eq!(
            parse("/ban @\"River Song\"").unwrap(),
            Slash::Remove {
                who: "River Song".into(),
                ban: true,
                reason: None
            }
        );
        assert_eq!(
            parse("/remove Bob  spam ").unwrap(),
            Slash::Remove {
                who: "Bob".into(),
                ban: false,
                reason: Some("spam".into())
            }
        );
        assert_eq!(parse("/unlock").unwrap(), Slash::Lock(false));
        assert_eq!(
            parse("/agreement set Be kind.").unwrap(),
            Slash::AgreementSet("Be kind.".into())
        );
        assert_eq!(
            parse("/report #12 personal attack").unwrap(),
            Slash::Report {
                number: 12,
                reason: "personal attack".into()
            }
        );
    }

    #[test]
    fn mistakes_explain_the_usage_instead_of_acting() {
        assert!(parse("/mute @Bob").unwrap_err().contains("/mute @name 30m"));
        assert!(
            parse("/mute @Bob 30")
                .unwrap_err()
                .contains("not a duration")
        );
        assert!(parse("/report twelve rude").unwrap_err().contains("Usage"));
        assert!(parse("/urgent").unwrap_err().contains("/urgent <text>"));
        assert!(parse("/frobnicate").unwrap_err().contains("/help"));
        assert_eq!(parse("/accept"), Ok(Slash::AcceptGroup));
        assert_eq!(parse("/leave"), Ok(Slash::Leave));
        assert!(parse("/leave it be").unwrap_err().contains("/leave"));
    }

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86_400));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("0m").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }
}
