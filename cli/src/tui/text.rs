//! Text for the screen: local times, display widths, word wrapping, and making text from other
//! people safe to put on a terminal.

use std::borrow::Cow;
use std::time::SystemTime;

use confide_protocol::Timestamp;
use confide_protocol::group_log::Role;
use ratatui::text::Span;

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

/// Text from someone else, made safe for a terminal: control characters (escape sequences
/// could rewrite the screen) become `�`; line breaks stay.
pub fn clean(text: &str) -> Cow<'_, str> {
    if text.chars().all(|c| c == '\n' || !c.is_control()) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| match c {
                '\n' => '\n',
                '\t' => ' ',
                c if c.is_control() => '\u{fffd}',
                c => c,
            })
            .collect(),
    )
}

/// Text on one line: line breaks become spaces too.
pub fn one_line(text: &str) -> String {
    clean(text).replace('\n', " ")
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

/// The width of `text` in terminal cells.
pub fn width(text: &str) -> usize {
    Span::raw(text).width()
}

fn char_width(c: char) -> usize {
    let mut buf = [0u8; 4];
    width(c.encode_utf8(&mut buf))
}

/// Wraps `text` into lines: the first at most `first` cells wide, the others at most `rest`.
/// Words longer than a line are broken. Line breaks in the text are kept.
pub fn wrap(text: &str, first: usize, rest: usize) -> Vec<String> {
    let first = first.max(1);
    let rest = rest.max(1);
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    let mut used = 0;
    let limit = |lines: &Vec<String>| if lines.is_empty() { first } else { rest };
    for (i, paragraph) in text.split('\n').enumerate() {
        if i > 0 {
            lines.push(std::mem::take(&mut line));
            used = 0;
        }
        for word in paragraph.split(' ').filter(|w| !w.is_empty()) {
            let w = width(word);
            if used > 0 {
                if used + 1 + w <= limit(&lines) {
                    line.push(' ');
                    used += 1;
                } else {
                    lines.push(std::mem::take(&mut line));
                    used = 0;
                }
            }
            if used + w <= limit(&lines) {
                line.push_str(word);
                used += w;
                continue;
            }
            // A word longer than the line: break it wherever it fills one.
            for c in word.chars() {
                let cw = char_width(c);
                if used + cw > limit(&lines) && used > 0 {
                    lines.push(std::mem::take(&mut line));
                    used = 0;
                }
                line.push(c);
                used += cw;
            }
        }
    }
    lines.push(line);
    lines
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
    fn wrapping_keeps_words_and_breaks_only_long_ones() {
        assert_eq!(wrap("one two three", 7, 7), ["one two", "three"]);
        assert_eq!(wrap("one two three", 3, 10), ["one", "two three"]);
        assert_eq!(wrap("abcdefghij", 4, 4), ["abcd", "efgh", "ij"]);
        assert_eq!(wrap("a\nb", 10, 10), ["a", "b"]);
        assert_eq!(wrap("", 10, 10), [""]);
    }

    #[test]
    fn escape_sequences_cannot_reach_the_terminal() {
        assert_eq!(clean("hi\u{1b}[2J there\n"), "hi\u{fffd}[2J there\n");
        assert_eq!(one_line("two\nlines"), "two lines");
    }

    #[test]
    fn times_are_local_hours_and_minutes() {
        let clock = Clock::utc();
        assert_eq!(clock.hhmm(Timestamp(0)), "00:00");
        assert_eq!(clock.hhmm(Timestamp(90 * 60 * 1000)), "01:30");
        assert_eq!(clock.day(Timestamp(0)), "Thursday 1 January 1970");
    }
}
