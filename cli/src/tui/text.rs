//! Text for the screen: local times and role names. Display widths, word wrapping and making
//! text from other people safe to put on a terminal are shared with the scripted commands, in
//! [`crate::text`].

use std::time::SystemTime;

use confide_client::MemberInfo;
use confide_protocol::group_log::Role;
use confide_protocol::{Timestamp, UserId};

pub use crate::text::{clean, one_line, width, wrap};

/// Formats times in the user's time zone.
#[derive(Clone, Debug)]
pub struct Clock {
    /// The zone, looked up once: the system's, or UTC in tests.
    tz: jiff::tz::TimeZone,
}

impl Clock {
    /// The system's time zone.
    pub fn system() -> Clock {
        Clock {
            tz: jiff::tz::TimeZone::system(),
        }
    }

    /// UTC, for tests.
    #[cfg(test)]
    pub fn utc() -> Clock {
        Clock {
            tz: jiff::tz::TimeZone::UTC,
        }
    }

    fn zoned(&self, t: Timestamp) -> Option<jiff::ZonedDateTime> {
        let millis = i64::try_from(t.0).ok()?;
        let ts = jiff::Timestamp::from_millisecond(millis).ok()?;
        Some(ts.to_zoned_datetime(self.tz.clone()))
    }

    /// Local `HH:MM`.
    pub fn hhmm(&self, t: Timestamp) -> String {
        match self.zoned(t) {
            Some(z) => z.strftime("%H:%M").to_string(),
            None => "--:--".into(),
        }
    }

    /// Local day of the week, day, month and time, e.g. `Tue 8 Dec 18:00`: when a meeting is.
    pub fn when(&self, t: Timestamp) -> String {
        match self.zoned(t) {
            Some(z) => z.strftime("%a %-d %b %H:%M").to_string(),
            None => "--:--".into(),
        }
    }

    /// Local `HH:MM` of a system time.
    pub fn system_time(&self, t: SystemTime) -> String {
        self.hhmm(timestamp(t))
    }

    /// The local day, e.g. `Monday 3 June 2024`, for day separators.
    pub fn day(&self, t: Timestamp) -> String {
        match self.zoned(t) {
            Some(z) => z.strftime("%A %-d %B %Y").to_string(),
            None => String::new(),
        }
    }

    /// Whether `t` has passed.
    pub fn is_past(&self, t: Timestamp) -> bool {
        t <= now()
    }
}

/// The current time as a protocol timestamp.
pub fn now() -> Timestamp {
    timestamp(SystemTime::now())
}

fn timestamp(t: SystemTime) -> Timestamp {
    let millis = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    Timestamp(millis)
}

/// A role for people.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Facilitator => "facilitator",
        Role::CoFacilitator => "co-facilitator",
        Role::Member => "member",
    }
}

/// The warning shown after a display name that looks like other members' names (Unicode
/// confusables): `" ⚠ looks like Alice (another member)"`, or nothing when `looks_like` is empty.
pub fn look_alike_note(looks_like: &[String]) -> String {
    if looks_like.is_empty() {
        return String::new();
    }
    let names: Vec<String> = looks_like.iter().map(|n| one_line(n)).collect();
    let whom = if names.len() == 1 {
        "another member"
    } else {
        "other members"
    };
    format!(" \u{26a0} looks like {} ({whom})", names.join(", "))
}

/// What the user's groups say of the other person of a private conversation, for its
/// invitation: `"⚠ looks like Alice (circle)"` when their name passes for someone else's in
/// one of the user's groups, `"not in any of your groups"` for a stranger, nothing for someone
/// from the user's groups. `label` names a group (text already safe to show).
pub fn peer_note(
    peer: &confide_client::Peer,
    label: impl Fn(confide_protocol::GroupId) -> String,
) -> Option<String> {
    if !peer.looks_like.is_empty() {
        let names: Vec<String> = peer
            .looks_like
            .iter()
            .map(|(name, group)| format!("{} ({})", one_line(name), label(*group)))
            .collect();
        return Some(format!("\u{26a0} looks like {}", names.join(", ")));
    }
    peer.shared_groups
        .is_empty()
        .then(|| "not in any of your groups".to_string())
}

/// The short mark after a sender's name in a message header (`Аlice ⚠: …`) when the name
/// looks like another member's; the member list and notices give the full
/// [`look_alike_note`].
pub const LOOK_ALIKE_MARK: &str = " \u{26a0}";

/// Which current members' names the name of `user`, shown as `name`, looks like: for a current
/// member, the client's own comparison ([`MemberInfo::looks_like`]); for someone who is no
/// longer a member (whose old messages are still shown), every current member whose name is
/// confusable with `name` ([`confide_protocol::names`]), an identical one included.
pub fn looks_like(user: UserId, name: &str, members: &[MemberInfo]) -> Vec<String> {
    match members.iter().find(|m| m.user == user) {
        Some(member) => member.looks_like.clone(),
        None => confide_protocol::names::confusable_with(
            name,
            members.iter().map(|m| m.display_name.as_str()),
        ),
    }
}

/// [`LOOK_ALIKE_MARK`] if the name of `user`, shown as `name`, looks like a current member's
/// ([`looks_like`]), else nothing.
pub fn look_alike_mark(user: UserId, name: &str, members: &[MemberInfo]) -> &'static str {
    if looks_like(user, name, members).is_empty() {
        ""
    } else {
        LOOK_ALIKE_MARK
    }
}

/// `name` (one line) with the full [`look_alike_note`] when it looks like a current member's.
pub fn name_with_note(user: UserId, name: &str, members: &[MemberInfo]) -> String {
    format!(
        "{}{}",
        one_line(name),
        look_alike_note(&looks_like(user, name, members))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_look_alike_name_gets_a_visible_warning_and_others_none() {
        assert_eq!(
            look_alike_note(&["Alice".into()]),
            " \u{26a0} looks like Alice (another member)"
        );
        assert_eq!(
            look_alike_note(&["Alice".into(), "alice".into()]),
            " \u{26a0} looks like Alice, alice (other members)"
        );
        assert_eq!(look_alike_note(&[]), "");
    }

    #[test]
    fn a_former_member_whose_name_looks_like_a_current_members_is_marked() {
        let member = |u: u8, name: &str, looks_like: &[&str]| {
            let mut v = MemberInfo::default();
            v.user = UserId([u; 16]);
            v.display_name = name.into();
            v.role = Role::Member;
            v.devices = vec![];
            v.muted_until = None;
            v.looks_like = looks_like.iter().map(|n| n.to_string()).collect();
            v
        };
        let members = [
            member(1, "Alice", &["\u{410}lice"]),
            member(2, "\u{410}lice", &["Alice"]),
            member(3, "Bob", &[]),
        ];
        // Members: as the client compared them.
        assert_eq!(
            look_alike_mark(UserId([2; 16]), "\u{410}lice", &members),
            " \u{26a0}"
        );
        assert_eq!(look_alike_mark(UserId([3; 16]), "Bob", &members), "");
        // Someone gone: compared here, with every current member.
        assert_eq!(
            looks_like(UserId([9; 16]), "B\u{200d}ob", &members),
            ["Bob"]
        );
        assert_eq!(looks_like(UserId([9; 16]), "Bob", &members), ["Bob"]);
        assert!(looks_like(UserId([9; 16]), "Carol", &members).is_empty());
        assert_eq!(
            name_with_note(UserId([9; 16]), "Bob", &members),
            "Bob \u{26a0} looks like Bob (another member)"
        );
    }

    #[test]
    fn times_are_local_hours_and_minutes() {
        let clock = Clock::utc();
        assert_eq!(clock.hhmm(Timestamp(0)), "00:00");
        assert_eq!(clock.hhmm(Timestamp(90 * 60 * 1000)), "01:30");
        assert_eq!(clock.day(Timestamp(0)), "Thursday 1 January 1970");
    }
}
