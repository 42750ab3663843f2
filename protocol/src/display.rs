//! Text chosen by someone else, made inert before it is shown: the one rule every front end
//! applies (the CLI on a terminal, the web app in a page), so that they agree on what a person
//! is shown.
//!
//! Someone else's text — a message, a pseudonym, a join-request note, a report, an agreement,
//! a reason, a server's error message — could otherwise carry escape sequences that clear a
//! terminal, move the cursor or set the window title; bidirectional controls that reorder what
//! is shown (`abc\u{202e}fed`); or invisible characters that make two names look alike
//! (`Al\u{200b}ice`). [`sanitize_for_display`] replaces every control, bidirectional and
//! invisible formatting character with [`REPLACEMENT`] (`�`), so the reader sees that
//! something was there. Laying text out (wrapping, marking continuation lines) is each front
//! end's own.

use std::borrow::Cow;

/// What replaces a character that must not reach the screen.
pub const REPLACEMENT: char = '\u{fffd}';
/// Whether `c` changes how text is shown rather than showing something: control characters
/// (C0, DEL, C1 — escape sequences start with them), bidirectional marks, embeddings,
/// overrides and isolates, and the invisible formatting characters (Unicode category Cf) and
/// fillers that render as nothing.
fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00ad}'
                | '\u{034f}'
                | '\u{061c}'
                | '\u{0600}'..='\u{0605}'
                | '\u{06dd}'
                | '\u{070f}'
                | '\u{0890}'..='\u{0891}'
                | '\u{08e2}'
                | '\u{115f}'..='\u{1160}'
                | '\u{17b4}'..='\u{17b5}'
                | '\u{180b}'..='\u{180f}'
                | '\u{200b}'..='\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2060}'..='\u{206f}'
                | '\u{3164}'
                | '\u{feff}'
                | '\u{ffa0}'
                | '\u{fff9}'..='\u{fffb}'
                | '\u{110bd}'
                | '\u{110cd}'
                | '\u{13430}'..='\u{1343f}'
                | '\u{1bca0}'..='\u{1bca3}'
                | '\u{1d173}'..='\u{1d17a}'
                | '\u{e0000}'..='\u{e007f}'
        )
}

/// Zero-width (non-)joiners shape emoji sequences and many scripts (Persian, Indic); between
/// two non-ASCII letters or symbols they are kept. Anywhere else they only hide something
/// (`Al\u{200d}ice` looks like `Alice`).
fn is_needed_joiner(prev: Option<char>, c: char, next: Option<char>) -> bool {
    let visible_non_ascii =
        |c: Option<char>| c.is_some_and(|c| !c.is_ascii() && !c.is_whitespace() && !is_hidden(c));
    matches!(c, '\u{200c}' | '\u{200d}') && visible_non_ascii(prev) && visible_non_ascii(next)
}

/// Text from someone else, made inert for display: line breaks (also `\r\n`, `\r` and the
/// Unicode line and paragraph separators) become `\n`, tabs spaces, and every other control,
/// bidirectional or invisible formatting character [`REPLACEMENT`]. Zero-width (non-)joiners
/// stay only between two visible non-ASCII characters (emoji sequences, Persian, Indic
/// scripts). Text that needs no change is returned as it is.
pub fn sanitize_for_display(text: &str) -> Cow<'_, str> {
    if text
        .chars()
        .all(|c| c == '\n' || !(is_hidden(c) || matches!(c, '\u{2028}' | '\u{2029}')))
    {
        return Cow::Borrowed(text);
    }
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    for (i, &c) in chars.iter().enumerate() {
        let prev = i.checked_sub(1).and_then(|p| chars.get(p)).copied();
        let next = chars.get(i + 1).copied();
        match c {
            '\n' | '\u{2028}' | '\u{2029}' => out.push('\n'),
            // `\r\n` is one line break; a lone `\r` is one too.
            '\r' if next == Some('\n') => {}
            '\r' => out.push('\n'),
            '\t' => out.push(' '),
            c if is_needed_joiner(prev, c, next) => out.push(c),
            c if is_hidden(c) => out.push(REPLACEMENT),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_are_made_inert() {
        assert_eq!(
            sanitize_for_display("hi\u{1b}[2J there\n"),
            "hi\u{fffd}[2J there\n"
        );
        assert_eq!(sanitize_for_display("\u{9b}31m"), "\u{fffd}31m");
        assert_eq!(
            sanitize_for_display("\u{1b}]0;title\u{7}"),
            "\u{fffd}]0;title\u{fffd}"
        );
        // Every line break becomes `\n`; tabs become spaces.
        assert_eq!(
            sanitize_for_display("two\r\nlines\rand\u{2028}more\tx"),
            "two\nlines\nand\nmore x"
        );
    }

    #[test]
    fn bidirectional_and_invisible_characters_are_shown_as_replacements() {
        assert_eq!(sanitize_for_display("abc\u{202e}fed"), "abc\u{fffd}fed");
        assert_eq!(
            sanitize_for_display("\u{2067}x\u{2069}"),
            "\u{fffd}x\u{fffd}"
        );
        assert_eq!(sanitize_for_display("Al\u{200b}ice"), "Al\u{fffd}ice");
        assert_eq!(sanitize_for_display("Al\u{200d}ice"), "Al\u{fffd}ice");
        assert_eq!(
            sanitize_for_display("\u{feff}Alice\u{e0041}"),
            "\u{fffd}Alice\u{fffd}"
        );
        // Joiners inside emoji sequences and scripts that need them stay.
        let family = "👩\u{200d}👧";
        assert_eq!(sanitize_for_display(family), family);
        let persian = "می\u{200c}خواهم";
        assert_eq!(sanitize_for_display(persian), persian);
        // Ordinary text, emoji with variation selectors and accents pass unchanged.
        let ordinary = "Héllo ❤\u{fe0f} — ça va? 你好";
        assert!(matches!(sanitize_for_display(ordinary), Cow::Borrowed(_)));
    }
}
