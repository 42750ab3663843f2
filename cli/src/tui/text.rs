//! Text for the screen: local times and role names. Display widths, word wrapping and making
//! text from other people safe to put on a terminal are shared with the scripted commands, in
//! [`crate::text`].

use std::time::SystemTime;

use confide_protocol::Timestamp;
use confide_protocol::group_log::Role;

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
    fn times_are_local_hours_and_minutes() {
        let clock = Clock::utc();
        assert_eq!(clock.hhmm(Timestamp(0)), "00:00");
        assert_eq!(clock.hhmm(Timestamp(90 * 60 * 1000)), "01:30");
        assert_eq!(clock.day(Timestamp(0)), "Thursday 1 January 1970");
    }
}
