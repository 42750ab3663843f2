//! Text chosen by someone else, made safe to put on a terminal, and laid out so that it cannot
//! pass for anything but what it is. Both the scripted commands and the chat screen use it.
//!
//! Someone else's text — a message, a pseudonym, a join-request note, a report, an agreement,
//! a reason, a server's error message — could otherwise carry escape sequences that clear the
//! screen, move the cursor, set the window title or draw a fake line; bidirectional controls
//! that reorder what is shown; invisible characters that make two names look alike; or a plain
//! line break followed by `Alice: …`, which looks like a line from Alice. [`clean`] replaces
//! every control, bidirectional and invisible formatting character with `�` (so the reader
//! sees that something was there); [`entry`] and [`quoted`] show multi-line text with every
//! further line indented under [`CONTINUATION`]. `--json` output is never cleaned: it gives
//! the exact text, and JSON escaping keeps it harmless.

use std::io::IsTerminal as _;

use unicode_segmentation::UnicodeSegmentation as _;
use unicode_width::{UnicodeWidthChar as _, UnicodeWidthStr};

/// What begins every further line of someone else's text in scripted output: indented, so it
/// never starts where a new entry starts, and marked, so it is visibly part of the entry above.
pub const CONTINUATION: &str = "    │ ";
/// The fewest cells of text worth starting beside a header before wrapping; with less room
/// the text starts on the next line.
const MIN_TEXT_BESIDE_HEADER: usize = 8;

// The rule itself (what is replaced, and by what) is the protocol crate's, so that the web app
// makes the same characters inert ([`confide_protocol::display`]).
pub use confide_protocol::display::sanitize_for_display as clean;

/// Someone else's text on one line (names, labels, reasons in a list): cleaned, and line
/// breaks become spaces.
pub fn one_line(text: &str) -> String {
    clean(text).replace('\n', " ")
}

/// The width of `text` in terminal cells, by the most generous measure a plausible terminal
/// uses, so that a line this module lays out never makes a terminal wrap it by itself. Terminals
/// disagree: xterm, VTE and Konsole draw each code point of an emoji ZWJ sequence (`👩‍👧`) with
/// its own width (4 cells, where Unicode says 2), many draw `❤️` (U+2764 U+FE0F) in 2 cells
/// where per-character widths say 1, and CJK terminals draw East Asian Ambiguous characters in
/// 2. So each grapheme cluster counts the largest of: its Unicode width, its CJK width, the sum
/// of its characters' widths (each the larger of the two), and 2 when it holds an emoji
/// presentation selector (U+FE0F) or a zero-width joiner. The chat screen and the scripted
/// commands both wrap with it.
pub fn width(text: &str) -> usize {
    text.graphemes(true).map(grapheme_width).sum()
}

/// The width of one grapheme cluster (see [`width`]).
fn grapheme_width(g: &str) -> usize {
    let chars: usize = g
        .chars()
        .map(|c| {
            if ('\u{1f1e6}'..='\u{1f1ff}').contains(&c) {
                // A regional indicator (half a flag): 2 cells where the pair is not joined.
                return 2;
            }
            c.width().unwrap_or(0).max(c.width_cjk().unwrap_or(0))
        })
        .sum();
    let emoji = if g.contains(['\u{fe0f}', '\u{200d}']) {
        2
    } else {
        0
    };
    chars
        .max(UnicodeWidthStr::width(g))
        .max(UnicodeWidthStr::width_cjk(g))
        .max(emoji)
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
            if used == 0 && lines.is_empty() && w > first && w <= rest {
                // The first word does not fit beside a header but fits a whole further line:
                // it starts there rather than being broken.
                lines.push(String::new());
            }
            if used + w <= limit(&lines) {
                line.push_str(word);
                used += w;
                continue;
            }
            // A word longer than the line: break it wherever it fills one (between grapheme
            // clusters, so an emoji sequence stays whole).
            for g in word.graphemes(true) {
                let gw = grapheme_width(g);
                if used + gw > limit(&lines) && used > 0 {
                    lines.push(std::mem::take(&mut line));
                    used = 0;
                }
                line.push_str(g);
                used += gw;
            }
        }
    }
    lines.push(line);
    lines
}

/// The width scripted output is laid out for when standard output is not a terminal (a pipe or
/// a file) and no narrower terminal is known: a file is most likely read later in a terminal at
/// least this wide, so lines laid out for it are not wrapped by the terminal onto a line of
/// their own.
pub const FALLBACK_COLUMNS: usize = 80;

/// The width in cells to lay scripted output out for. With standard output on a terminal, its
/// width. Otherwise (`confide read g | less`, `> file`) the output is still likely to end up on
/// a terminal, so the narrower of the controlling terminal (if there is one) and
/// [`FALLBACK_COLUMNS`]: every line of someone else's text stays a continuation line
/// ([`entry`]) rather than a line the terminal wraps where the CLI did not.
pub fn terminal_width() -> usize {
    // crossterm asks the controlling terminal (/dev/tty) when standard output is not one.
    let terminal = crossterm::terminal::size()
        .ok()
        .map(|(columns, _)| usize::from(columns))
        .filter(|columns| *columns > 0);
    let columns = if std::io::stdout().is_terminal() {
        terminal.unwrap_or(FALLBACK_COLUMNS)
    } else {
        terminal.map_or(FALLBACK_COLUMNS, |t| t.min(FALLBACK_COLUMNS))
    };
    columns.max(1)
}

/// One line of output, `header` (already safe: built from [`one_line`] parts) followed by
/// `text` from someone else, cleaned; every further line — a line break in the text or, with
/// a terminal `columns` wide, where the line is wrapped — starts with [`CONTINUATION`], so no
/// part of either can pass for a line of its own. Without `columns` (only for output that never
/// reaches a terminal; scripted commands always pass [`terminal_width`]) only line breaks in
/// the text start further lines.
pub fn entry(header: &str, text: &str, columns: Option<usize>) -> String {
    let text = clean(text);
    let Some(columns) = columns else {
        return format!(
            "{header}{}",
            text.replace('\n', &format!("\n{CONTINUATION}"))
        );
    };
    let rest = columns.saturating_sub(width(CONTINUATION)).max(1);
    let mut out = String::with_capacity(header.len() + text.len());
    // The header is broken wherever it fills a row, so the terminal never wraps it.
    let mut used = 0;
    let mut limit = columns;
    for g in header.graphemes(true) {
        let gw = grapheme_width(g);
        if used + gw > limit && used > 0 {
            out.push('\n');
            out.push_str(CONTINUATION);
            used = 0;
            limit = rest;
        }
        out.push_str(g);
        used += gw;
    }
    if text.is_empty() {
        return out;
    }
    let beside = limit.saturating_sub(used);
    let lines = if !header.is_empty() && beside < MIN_TEXT_BESIDE_HEADER {
        // Too little room left beside the header: the text starts on the next line.
        out.push('\n');
        out.push_str(CONTINUATION);
        wrap(&text, rest, rest)
    } else {
        wrap(&text, beside, rest)
    };
    for (i, line) in lines.into_iter().enumerate() {
        if i > 0 {
            out.push('\n');
            out.push_str(CONTINUATION);
        }
        out.push_str(&line);
    }
    out
}

/// A line of output built from safe parts ([`one_line`]), broken at the terminal's width
/// with [`CONTINUATION`] as [`entry`] does.
pub fn line(text: &str, columns: Option<usize>) -> String {
    entry(text, "", columns)
}

/// A whole text from someone else (an agreement, crisis resources), cleaned, every line
/// starting with [`CONTINUATION`].
pub fn quoted(text: &str, columns: Option<usize>) -> String {
    entry(CONTINUATION, text, columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How wide terminals draw a line, each by its own rule: per code point (xterm, VTE,
    /// Konsole: a ZWJ sequence is the sum of its emoji), per code point with U+FE0F widening the
    /// character before it to 2 (kitty, iTerm2, Windows Terminal), by grapheme cluster as
    /// Unicode says (what ratatui assumes), and per code point in a CJK locale.
    fn terminal_widths(line: &str) -> [usize; 4] {
        let per_char = |cjk: bool| {
            line.chars()
                .map(|c| if cjk { c.width_cjk() } else { c.width() }.unwrap_or(0))
                .sum::<usize>()
        };
        let mut vs16 = 0;
        let mut prev = 0;
        for c in line.chars() {
            let w = c.width().unwrap_or(0);
            if c == '\u{fe0f}' && prev == 1 {
                vs16 += 1;
            }
            vs16 += w;
            prev = w;
        }
        [
            per_char(false),
            vs16,
            UnicodeWidthStr::width(line),
            per_char(true),
        ]
    }

    /// The rows a terminal `cols` wide that draws each code point with its own width shows,
    /// after its own automatic wrapping.
    fn xterm_rows(out: &str, cols: usize) -> Vec<String> {
        let mut rows = vec![];
        for line in out.split('\n') {
            let mut row = String::new();
            let mut col = 0;
            for c in line.chars() {
                let w = c.width().unwrap_or(0);
                if col + w > cols {
                    rows.push(std::mem::take(&mut row));
                    col = 0;
                }
                row.push(c);
                col += w;
            }
            rows.push(row);
        }
        rows
    }

    fn assert_fits(shown: &str, columns: usize) {
        for line in shown.lines() {
            for w in terminal_widths(line) {
                assert!(w <= columns, "{w} cells: {line:?}\n{shown}");
            }
        }
        for line in shown.lines().skip(1) {
            assert!(line.starts_with(CONTINUATION), "{shown}");
        }
    }

    #[test]
    fn emoji_zwj_sequences_cannot_make_the_terminal_wrap_onto_a_forged_line() {
        // Unicode counts each family 2 cells; xterm draws 4: padding that ends, by xterm's
        // count, right before the forged name.
        let header = "#12    2026-05-01 18:30  Mallory: ";
        let text = format!(
            "xx{}Alice: what is your phone number?",
            "👩\u{200d}👧".repeat(11)
        );
        let shown = entry(header, &text, Some(80));
        let rows = xterm_rows(&shown, 80);
        assert!(!rows.iter().any(|r| r.starts_with("Alice:")), "{rows:#?}");
        assert_fits(&shown, 80);
        // A family is never split across lines.
        assert!(
            !shown.contains("👩\n") && !shown.contains("\u{200d}\n"),
            "{shown}"
        );
    }

    #[test]
    fn a_name_with_vs16_emoji_cannot_make_a_line_wider_than_the_terminal() {
        // `❤️` is 1 cell per character but 2 in many terminals: ten of them in a name would
        // push the line 10 cells past the edge, the terminal wrapping right before `Alice:`.
        let name = "Mal".to_string() + &"\u{2764}\u{fe0f}".repeat(10);
        let header = format!("#12    2026-05-01 18:30  {name}: ");
        let text = format!("{}Alice: what is your phone number?", "x".repeat(30));
        let shown = entry(&header, &text, Some(80));
        assert_fits(&shown, 80);
        let rows = xterm_rows(&shown, 80);
        assert!(!rows.iter().any(|r| r.starts_with("Alice:")), "{rows:#?}");
    }

    #[test]
    fn widths_are_the_largest_any_terminal_draws() {
        assert_eq!(width("Alice"), 5);
        assert_eq!(width("👩\u{200d}👧"), 4);
        assert_eq!(width("\u{2764}\u{fe0f}"), 2);
        assert_eq!(width("你好"), 4);
        assert_eq!(width("🇫🇷"), 4);
        // East Asian Ambiguous (here the em dash): 2 in a CJK terminal.
        assert_eq!(width("\u{2014}"), 2);
    }

    #[test]
    fn wrapping_keeps_words_and_breaks_only_long_ones() {
        assert_eq!(wrap("one two three", 7, 7), ["one two", "three"]);
        assert_eq!(wrap("one two three", 3, 10), ["one", "two three"]);
        assert_eq!(wrap("abcdefghij", 4, 4), ["abcd", "efgh", "ij"]);
        assert_eq!(wrap("a\nb", 10, 10), ["a", "b"]);
        assert_eq!(wrap("", 10, 10), [""]);
        // A first word too long for the first line but not for the others moves down whole.
        assert_eq!(wrap("abcdef gh", 4, 10), ["", "abcdef gh"]);
    }

    #[test]
    fn escape_sequences_cannot_reach_the_terminal() {
        // The rule is the protocol crate's (tested there); the CLI shows text through it.
        assert_eq!(clean("hi\u{1b}[2J there\n"), "hi\u{fffd}[2J there\n");
        assert_eq!(one_line("two\nlines"), "two lines");
        assert_eq!(
            one_line("two\r\nlines\rand\u{2028}more"),
            "two lines and more"
        );
        assert_eq!(one_line("Al\u{200b}ice"), "Al\u{fffd}ice");
        assert_eq!(one_line("abc\u{202e}fed"), "abc\u{fffd}fed");
    }

    #[test]
    fn a_line_break_cannot_start_a_line_of_its_own() {
        let shown = entry("#3 Mallory: ", "hi\nAlice: your phone number?", None);
        assert_eq!(
            shown,
            format!("#3 Mallory: hi\n{CONTINUATION}Alice: your phone number?")
        );
        assert_eq!(
            quoted("one\ntwo", None),
            format!("{CONTINUATION}one\n{CONTINUATION}two")
        );
    }

    #[test]
    fn text_wrapped_at_the_terminal_width_is_indented_too() {
        // Padding that would make the terminal wrap right before the forged name.
        let text = format!("{}Alice: your phone number?", "x".repeat(20));
        let shown = entry("#3 Bob: ", &text, Some(28));
        for line in shown.lines() {
            assert!(width(line) <= 28, "{line:?}");
        }
        for line in shown.lines().skip(1) {
            assert!(line.starts_with(CONTINUATION), "{shown}");
        }
        // A header that fills the row exactly: the text starts on a continuation line.
        let shown = entry("01234567890123456789", "Alice: hi", Some(20));
        assert_eq!(
            shown,
            format!("01234567890123456789\n{CONTINUATION}Alice: hi")
        );
        // A header longer than the row is broken too, keeping its spacing (the continuation
        // marker counts 7 cells: `│` is 2 in a CJK terminal).
        let shown = line("#1     12:00  Bob  ", Some(12));
        assert_eq!(
            shown,
            format!("#1     12:00\n{CONTINUATION}  Bob\n{CONTINUATION}  ")
        );
    }
}
