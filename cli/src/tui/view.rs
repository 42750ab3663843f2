//! Drawing the chat: the group list on the left, the conversation, a status line, a notice
//! line and the input at the bottom, and a window over it all for the agreement and the like.
//!
//! Only the visible part of a conversation is wrapped, newest first, so drawing costs the
//! same with ten messages or a hundred thousand.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Clear, Padding, Paragraph};

use confide_client::{ChatMessage, GroupNotice, RoundPart};
use confide_protocol::UserId;

use super::app::{AGREEMENT_READ_DELAY, App, Connection, GroupView, Level, Modal};
use super::text::{Clock, clean, look_alike_mark, one_line, width, wrap};

/// Columns below which the group list is hidden to leave room for the conversation.
const SIDEBAR_MIN_TERMINAL_WIDTH: u16 = 60;
/// The group list's width bounds.
const SIDEBAR_WIDTH: (u16, u16) = (16, 28);
/// Continuation lines of a message start under the name, after `HH:MM `.
const INDENT: usize = 6;
/// A message's first line starts below its header when less than this is left beside it.
const MIN_TEXT_BESIDE_HEADER: usize = 12;
/// The window's share of the screen width, and its widest.
const MODAL_WIDTH_PERCENT: u16 = 70;
const MODAL_MAX_WIDTH: u16 = 90;
/// How far a window's wrapped lines are indented under the line they continue.
const WINDOW_INDENT: usize = 4;

fn dim() -> Style {
    Style::new().add_modifier(Modifier::DIM)
}

/// Draws everything and records the conversation pane's size in the app.
pub fn draw(frame: &mut Frame, app: &mut App) {
    let area = frame.area();
    let [main, status, notice, input] = Layout::vertical([
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(3),
    ])
    .areas(area);
    let conversation = if area.width >= SIDEBAR_MIN_TERMINAL_WIDTH {
        let side = (area.width / 5).clamp(SIDEBAR_WIDTH.0, SIDEBAR_WIDTH.1);
        let [list, conversation] =
            Layout::horizontal([Constraint::Length(side), Constraint::Min(20)]).areas(main);
        draw_groups(frame, list, app);
        conversation
    } else {
        main
    };
    draw_conversation(frame, conversation, app);
    frame.render_widget(Paragraph::new(status_line(app)), status);
    frame.render_widget(Paragraph::new(notice_line(app)), notice);
    draw_input(frame, input, app);
    let about = match &app.modal {
        Some(Modal::Agreement { group, .. }) => Some(*group),
        _ => app.current,
    };
    let label = about.map(|g| app.label(g)).unwrap_or_default();
    if let Some(modal) = app.modal.as_mut() {
        draw_modal(frame, area, modal, &label);
    }
}

fn draw_groups(frame: &mut Frame, area: Rect, app: &App) {
    let block = Block::bordered().title(" Groups ").border_style(dim());
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let room = usize::from(inner.width);
    let mut lines = Vec::new();
    for g in &app.groups {
        let open = app.current == Some(g.id);
        if !(g.member || open || g.removed) {
            continue;
        }
        let marker = if open { "› " } else { "  " };
        let badge = match (g.unread, g.removed || !g.member, g.invited) {
            // Silent for good: said before anything else, as long as it lasts.
            _ if g.refused.is_some() => " ⚠".to_string(),
            (_, true, _) => " (left)".to_string(),
            // Waiting to be accepted: counted like unread messages (the room is narrow).
            (_, _, true) if g.waiting > 0 => format!(" {}", g.waiting),
            (_, _, true) => " (invited)".to_string(),
            (0, _, _) => String::new(),
            (n, _, _) => format!(" {n}"),
        };
        let label = truncate(&g.label, room.saturating_sub(2 + width(&badge)));
        let style = if open {
            Style::new().add_modifier(Modifier::BOLD).fg(Color::Cyan)
        } else if g.removed || !g.member || g.invited {
            dim()
        } else {
            Style::new()
        };
        let badge_style = if g.refused.is_some() {
            Style::new()
                .fg(Color::LightRed)
                .add_modifier(Modifier::BOLD)
        } else if (g.unread > 0 || g.waiting > 0) && !g.removed {
            Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD)
        } else {
            dim()
        };
        lines.push(Line::from(vec![
            Span::styled(marker, style),
            Span::styled(label, style),
            Span::styled(badge, badge_style),
        ]));
    }
    if lines.is_empty() {
        lines.push(Line::styled("no groups yet", dim()));
    }
    frame.render_widget(Paragraph::new(lines), inner);
}

fn draw_conversation(frame: &mut Frame, area: Rect, app: &mut App) {
    let title = match app.current_group() {
        Some(g) => format!(" {}{} ", g.label, meeting_title(g, &app.clock)),
        None => " Confide ".to_string(),
    };
    let block = Block::bordered()
        .title(truncate(&title, usize::from(area.width.saturating_sub(2))))
        .border_style(dim());
    let mut inner = block.inner(area);
    frame.render_widget(block, area);
    // The open round's prompt stays above the messages while the round is open.
    if let Some(banner) = app.current_group().and_then(round_banner)
        && inner.height > 2
    {
        let [top, rest] =
            Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(inner);
        let text = truncate(&banner, usize::from(top.width));
        frame.render_widget(
            Paragraph::new(Span::styled(
                text,
                Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
            )),
            top,
        );
        inner = rest;
    }
    app.pane = (inner.width, inner.height);
    let Some(id) = app.current else {
        let text = if !app.groups_loaded {
            vec![
                Line::raw(""),
                Line::styled("Loading your groups…", dim()).centered(),
            ]
        } else {
            vec![
                Line::raw(""),
                Line::raw("You are not in a group yet.").centered(),
                Line::styled(
                    "Close the chat (Ctrl-C) and join one with an invite link: confide join <link>",
                    dim(),
                )
                .centered(),
                Line::styled("Facilitators start one with: confide group create", dim()).centered(),
            ]
        };
        frame.render_widget(Paragraph::new(text), inner);
        return;
    };
    let height = usize::from(inner.height);
    let Some(g) = app.groups.iter().find(|g| g.id == id) else {
        return;
    };
    if g.invited {
        // Nothing of it is shown before the user accepts: say what waits, and how to accept.
        let who = match app.private_name(id) {
            Some(name) => format!("{name} wants to talk with you privately."),
            None => "Someone added you to this group.".into(),
        };
        let waiting = match g.waiting {
            0 => "No messages yet".to_string(),
            1 => "1 message waiting".to_string(),
            n => format!("{n} messages waiting"),
        };
        let mut text = vec![Line::raw(""), Line::raw(who).centered()];
        // Whether they are someone from the user's groups, before anything is accepted.
        if let Some(note) = &g.peer_note {
            text.push(
                Line::styled(
                    format!("({note})"),
                    Style::new()
                        .fg(Color::LightRed)
                        .add_modifier(Modifier::BOLD),
                )
                .centered(),
            );
        }
        text.extend([
            Line::styled(
                format!("{waiting} — accept with /accept to read and reply."),
                Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
            )
            .centered(),
            Line::styled(
                "Not now? Switch away with Tab. To decline, type /leave.",
                dim(),
            )
            .centered(),
        ]);
        frame.render_widget(
            Paragraph::new(text).wrap(ratatui::widgets::Wrap { trim: true }),
            inner,
        );
        return;
    }
    if g.messages.is_empty() && g.pending.is_empty() && g.notices.is_empty() {
        let waiting = !g.history.loaded || app.syncing.is_some();
        let text = if waiting {
            vec![
                Line::raw(""),
                Line::styled("Loading messages…", dim()).centered(),
            ]
        } else {
            vec![
                Line::raw(""),
                Line::raw("No messages yet.").centered(),
                Line::styled("Say hello — or just read along; both are fine.", dim()).centered(),
            ]
        };
        frame.render_widget(Paragraph::new(text), inner);
        if let Some(g) = app.groups.iter_mut().find(|g| g.id == id) {
            g.at_top = g.history.loaded;
            g.scroll = 0;
        }
        return;
    }
    let (lines, scroll, at_top) = visible_lines(app, g, inner.width, height);
    let new_below = g.unread;
    if let Some(g) = app.groups.iter_mut().find(|g| g.id == id) {
        g.scroll = scroll;
        g.at_top = at_top;
    }
    // Anchor the conversation to the bottom, next to the input.
    let top_pad = height.saturating_sub(lines.len());
    let mut text: Vec<Line> = std::iter::repeat_n(Line::raw(""), top_pad).collect();
    text.extend(lines);
    frame.render_widget(Paragraph::new(text), inner);
    if scroll > 0 && inner.height > 0 && area.bottom() > inner.bottom() {
        let hint = if new_below > 0 {
            format!(" ↓ {new_below} new — Esc jumps to the newest ")
        } else {
            " ↓ Esc jumps to the newest ".to_string()
        };
        let w = u16::try_from(width(&hint))
            .unwrap_or(u16::MAX)
            .min(inner.width);
        // On the bottom border, so it hides no message.
        let at = Rect {
            x: inner.x + inner.width - w,
            y: inner.y + inner.height,
            width: w,
            height: 1,
        };
        frame.render_widget(
            Paragraph::new(Span::styled(
                hint,
                Style::new().fg(Color::Black).bg(Color::Yellow),
            )),
            at,
        );
    }
}

/// The next meeting for the conversation's title: " · next meeting Tue 8 Dec 18:00" (local
/// time), or " · meeting now, until 19:30".
fn meeting_title(g: &GroupView, clock: &Clock) -> String {
    match g.work.next_meeting {
        Some(m) if m.starts_at <= super::text::now() => {
            format!(" · meeting now, until {}", clock.hhmm(m.ends_at))
        }
        Some(m) => format!(" · next meeting {}", clock.when(m.starts_at)),
        None => String::new(),
    }
}

/// The line above the messages while a round is open: its prompt and how to answer.
fn round_banner(g: &GroupView) -> Option<String> {
    let r = g.work.round.as_ref()?;
    let prompt = match r.prompt.as_deref() {
        // A hidden prompt stays hidden here too (PROTOCOL.md §6.9).
        Some(_) if r.prompt_hidden => "[content warning — hidden]".to_string(),
        Some(p) => one_line(p),
        None => "(the prompt is on its way)".to_string(),
    };
    let how = if r.answered {
        "you answered (/round shows all)"
    } else {
        "/answer <text> or /pass"
    };
    Some(format!("Round: {prompt} — {how}"))
}

/// The lines on screen for a conversation scrolled `g.scroll` lines up, the scroll clamped to
/// what exists, and whether the oldest loaded message is visible.
fn visible_lines(
    app: &App,
    g: &GroupView,
    pane_width: u16,
    height: usize,
) -> (Vec<Line<'static>>, usize, bool) {
    let need = height.saturating_add(g.scroll);
    // Newest first, each message's lines in order.
    let mut blocks: Vec<Vec<Line<'static>>> = Vec::new();
    let mut total = 0;
    for p in g.pending.iter().rev() {
        let name = format!("{} (you)", one_line(&app.my_name));
        let mut lines = entry_lines(
            &app.clock.hhmm(p.at),
            None,
            &name,
            Style::new().fg(Color::Cyan),
            &format!(
                "{} ({})",
                clean(&p.text),
                if p.waiting {
                    "waiting for the connection…"
                } else {
                    "sending…"
                }
            ),
            dim(),
            pane_width,
        );
        total += lines.len();
        blocks.push(std::mem::take(&mut lines));
    }
    // Notices go where they happened, between the loaded messages: slot i is above message
    // i (oldest first), the last slot below the newest.
    let loaded: Vec<&ChatMessage> = g.messages.values().collect();
    let shown = crate::timeline::Shown {
        messages: &loaded,
        before: None,
        older_unknown: g.history.more_before,
        newest: true,
    };
    let mut slots: Vec<Vec<&GroupNotice>> = vec![Vec::new(); loaded.len() + 1];
    for n in &g.notices {
        if let Some(slot) = crate::timeline::place(n, &shown) {
            slots[slot].push(n);
        }
    }
    let notice_block = |slot: &[&GroupNotice]| -> Vec<Line<'static>> {
        slot.iter()
            .flat_map(|n| notice_lines(n, app.me, &app.clock, pane_width))
            .collect()
    };
    if let Some(last) = slots.last().filter(|s| !s.is_empty()) {
        let lines = notice_block(last);
        total += lines.len();
        blocks.push(lines);
    }
    let mut messages = loaded.iter().enumerate().rev().peekable();
    let mut reached_oldest = true;
    while let Some((i, m)) = messages.next() {
        let m = *m;
        let mut lines = message_lines(m, app.me, &app.clock, g, pane_width);
        // Its notices above it (the block is reversed into place below).
        let above = notice_block(&slots[i]);
        if !above.is_empty() {
            lines.splice(0..0, above);
        }
        let day = app.clock.day(m.received_at);
        let separator = match messages.peek() {
            Some((_, older)) => app.clock.day(older.received_at) != day,
            // Above the oldest loaded message too: it may be the first of its day.
            None => true,
        };
        if separator {
            let rule = format!("── {day} ──");
            lines.insert(0, Line::styled(rule, dim()).centered());
        }
        total += lines.len();
        blocks.push(lines);
        if total >= need {
            reached_oldest = messages.peek().is_none();
            break;
        }
    }
    let all: Vec<Line<'static>> = blocks.into_iter().rev().flatten().collect();
    let max_scroll = all.len().saturating_sub(height);
    let scroll = if reached_oldest {
        g.scroll.min(max_scroll)
    } else {
        g.scroll
    };
    let end = all.len().saturating_sub(scroll);
    let start = end.saturating_sub(height);
    let at_top = reached_oldest && start == 0;
    (all[start..end].to_vec(), scroll, at_top)
}

/// How many lines a message takes at this width (to keep a scrolled reader's place).
pub fn message_height(
    m: &ChatMessage,
    me: UserId,
    clock: &Clock,
    g: &GroupView,
    pane_width: u16,
) -> usize {
    message_lines(m, me, clock, g, pane_width).len()
}

/// A message's lines; a sender whose name looks like another member's is marked
/// ([`LOOK_ALIKE_MARK`](super::text::LOOK_ALIKE_MARK)), and so are a round's part and content
/// warnings. A message hidden by its warning shows only the warning, unless the user asked to
/// see hidden messages (Ctrl-R).
fn message_lines(
    m: &ChatMessage,
    me: UserId,
    clock: &Clock,
    g: &GroupView,
    pane_width: u16,
) -> Vec<Line<'static>> {
    let mine = m.sender == me;
    let round = match m.round.as_ref().map(|r| r.part) {
        Some(RoundPart::Prompt) => " [round prompt]",
        Some(RoundPart::Answer) => " [round answer]",
        Some(RoundPart::Pass) => " [round: passed]",
        None => "",
    };
    let topics = g.work.topics.as_ref();
    let hidden = m.hidden && !g.show_hidden;
    let warning = if m.warnings.is_empty() || hidden {
        String::new()
    } else {
        format!(
            " [content warning: {}]",
            crate::group_work::warning_labels(&m.warnings, topics)
        )
    };
    let name = format!(
        "{}{}",
        one_line(&m.sender_name),
        look_alike_mark(m.sender, &m.sender_name, &g.members)
    );
    let (name, style) = if mine {
        (format!("{name} (you)"), Style::new().fg(Color::Cyan))
    } else {
        (name, Style::new().add_modifier(Modifier::BOLD))
    };
    let name = format!("{name}{round}{warning}");
    let (text, text_style) = if hidden {
        (
            format!(
                "[content warning: {} — hidden · Ctrl-R shows it]",
                crate::group_work::warning_labels(&m.warnings, topics)
            ),
            dim().add_modifier(Modifier::ITALIC),
        )
    } else if m.text.is_empty() && m.round.as_ref().is_some_and(|r| r.part == RoundPart::Pass) {
        // A pass has no text of its own.
        ("(passed)".to_string(), dim())
    } else {
        (clean(&m.text).into_owned(), Style::new())
    };
    entry_lines(
        &clock.hhmm(m.received_at),
        Some(m.number),
        &name,
        style,
        &text,
        text_style,
        pane_width,
    )
}

/// A notice's lines, dimmed and without a name column: `HH:MM #4 — a message was deleted by
/// Alice` (the number only for a deleted message this device had shown), wrapped like a
/// message.
fn notice_lines(n: &GroupNotice, me: UserId, clock: &Clock, pane_width: u16) -> Vec<Line<'static>> {
    let pane_width = usize::from(pane_width).max(1);
    let number = crate::timeline::notice_number(n)
        .map(|n| format!("#{n} "))
        .unwrap_or_default();
    let text = format!(
        "{} {number}— {}",
        clock.hhmm(n.at),
        crate::timeline::notice_text(n, me)
    );
    let rest = pane_width.saturating_sub(INDENT).max(1);
    let style = dim().add_modifier(Modifier::ITALIC);
    let indent = " ".repeat(INDENT.min(pane_width.saturating_sub(1)));
    wrap(&text, pane_width, rest)
        .into_iter()
        .enumerate()
        .map(|(i, line)| {
            if i == 0 {
                Line::styled(line, style)
            } else {
                Line::from(vec![Span::raw(indent.clone()), Span::styled(line, style)])
            }
        })
        .collect()
}

/// `HH:MM #seq Name: text`, wrapped, continuation lines indented.
fn entry_lines(
    time: &str,
    seq: Option<u64>,
    name: &str,
    name_style: Style,
    text: &str,
    text_style: Style,
    pane_width: u16,
) -> Vec<Line<'static>> {
    let pane_width = usize::from(pane_width).max(1);
    let time = format!("{time} ");
    let seq = seq.map(|s| format!("#{s} ")).unwrap_or_default();
    let who = format!("{name}: ");
    let header = width(&time) + width(&seq) + width(&who);
    let rest = pane_width.saturating_sub(INDENT).max(1);
    let beside = pane_width.saturating_sub(header);
    let header_alone = beside < MIN_TEXT_BESIDE_HEADER;
    let wrapped = wrap(text, if header_alone { rest } else { beside }, rest);
    let mut head = vec![
        Span::styled(time, dim()),
        Span::styled(seq, dim()),
        Span::styled(who, name_style),
    ];
    let mut lines = Vec::with_capacity(wrapped.len() + 1);
    let mut body = wrapped.into_iter();
    if !header_alone && let Some(first) = body.next() {
        head.push(Span::styled(first, text_style));
    }
    lines.push(Line::from(head));
    let indent = " ".repeat(INDENT.min(pane_width.saturating_sub(1)));
    for line in body {
        lines.push(Line::from(vec![
            Span::raw(indent.clone()),
            Span::styled(line, text_style),
        ]));
    }
    lines
}

fn status_line(app: &App) -> Line<'static> {
    let mut parts: Vec<Span<'static>> = Vec::new();
    parts.push(match &app.connection {
        Connection::Connecting => Span::styled("○ connecting…", Style::new().fg(Color::Yellow)),
        Connection::Online => Span::styled("● connected", Style::new().fg(Color::Green)),
        Connection::Offline(_) => Span::styled(
            "○ offline — reconnecting…",
            Style::new().fg(Color::LightRed),
        ),
    });
    if let Some(count) = app.syncing {
        let text = match count {
            0 => "syncing…".to_string(),
            n => format!("syncing… {n} new"),
        };
        parts.push(Span::styled(text, Style::new().fg(Color::Yellow)));
    }
    if let Some(g) = app.current_group() {
        if let Some(r) = &g.refused {
            let since = r
                .since
                .map(|t| format!(" since {}", app.clock.day(t)))
                .unwrap_or_default();
            parts.push(Span::styled(
                format!(
                    "⚠ the server no longer serves this group{since} ({}): nothing new arrives",
                    one_line(&r.code)
                ),
                Style::new().fg(Color::LightRed),
            ));
        }
        if g.removed {
            parts.push(Span::styled(
                "you are no longer in this group",
                Style::new().fg(Color::LightRed),
            ));
        }
        if g.locked() {
            let why = match &g.status {
                Some(s) if !s.locked && !s.open_now => " (outside open hours)",
                _ => "",
            };
            parts.push(Span::styled(
                format!("🔒 locked — only facilitators can post{why}"),
                Style::new().fg(Color::Yellow),
            ));
        }
        if let Some(until) = g.muted_until() {
            parts.push(Span::styled(
                format!("muted until {}", app.clock.hhmm(until)),
                Style::new().fg(Color::LightRed),
            ));
        }
        if g.agreement_pending().is_some() {
            parts.push(Span::styled(
                "agreement not yet accepted — /agreement",
                Style::new().fg(Color::Yellow),
            ));
        }
        if let Some(s) = &g.status
            && s.slow_mode_seconds > 0
        {
            parts.push(Span::styled(
                format!("slow mode: one message per {} s", s.slow_mode_seconds),
                dim(),
            ));
        }
    }
    let mut spans = vec![Span::raw(" ")];
    for (i, part) in parts.into_iter().enumerate() {
        if i > 0 {
            spans.push(Span::styled("  ·  ", dim()));
        }
        spans.push(part);
    }
    Line::from(spans)
}

fn notice_line(app: &App) -> Line<'static> {
    if let Some(n) = app.current_notice() {
        let (mark, style) = match n.level {
            Level::Info => ("", Style::new().fg(Color::Green)),
            Level::Warning => ("⚠ ", Style::new().fg(Color::Yellow)),
            Level::Error => ("", Style::new().fg(Color::LightRed)),
        };
        // Notices quote server messages and other people's names: cleaned here, where they
        // reach the screen.
        return Line::from(Span::styled(format!(" {mark}{}", one_line(&n.text)), style));
    }
    if let Some(w) = app.key_warnings.last() {
        let more = match app.key_warnings.len() {
            1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        return Line::from(Span::styled(
            format!(
                " ⚠ {}'s keys changed{more}{}: compare safety numbers with /safety @{}",
                one_line(&w.name),
                w.look_alike,
                one_line(&w.name)
            ),
            Style::new().fg(Color::Yellow),
        ));
    }
    Line::raw("")
}

/// The part of the input line to show in `room` columns with the cursor visible: the byte
/// range `start..end` and the width of `start..cursor`. Only the graphemes around the cursor
/// are measured (at most `room` columns each way), never the whole line, so a redraw costs the
/// same however long the input is.
fn input_window(text: &str, cursor: usize, room: usize) -> (usize, usize, usize) {
    use unicode_segmentation::UnicodeSegmentation as _;
    let (mut start, mut before) = (cursor, 0);
    for (i, g) in text[..cursor].grapheme_indices(true).rev() {
        let w = width(g);
        if before + w > room {
            break;
        }
        before += w;
        start = i;
    }
    let (mut end, mut shown) = (cursor, before);
    for (i, g) in text[cursor..].grapheme_indices(true) {
        let w = width(g);
        if shown + w > room {
            break;
        }
        shown += w;
        end = cursor + i + g.len();
    }
    (start, end, before)
}

fn draw_input(frame: &mut Frame, area: Rect, app: &App) {
    let title = " Message · Enter sends · /help · Tab switches group · Ctrl-C quits ";
    let block = Block::bordered().title(title).border_style(dim());
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if inner.width < 3 || inner.height == 0 {
        return;
    }
    let prompt = "› ";
    let room = usize::from(inner.width) - width(prompt) - 1;
    let input = &app.input;
    if input.text.is_empty() {
        let placeholder = match app.current_group() {
            None => "Open a group to write (Tab)".to_string(),
            Some(g) if g.removed => "You are no longer in this group".to_string(),
            Some(g) if g.locked() && !g.moderator() => {
                "The chat is locked — you can still read; /crisis and /urgent work".to_string()
            }
            Some(g) => match g.muted_until() {
                Some(until) => format!(
                    "You are muted until {} — you can still read",
                    app.clock.hhmm(until)
                ),
                None => "Write a message…".to_string(),
            },
        };
        frame.render_widget(
            Paragraph::new(Line::from(vec![
                Span::raw(prompt),
                Span::styled(placeholder, dim()),
            ])),
            inner,
        );
    } else {
        // Scroll sideways so the cursor stays visible.
        let (start, end, before) = input_window(&input.text, input.cursor, room);
        frame.render_widget(
            Paragraph::new(Line::from(vec![
                Span::raw(prompt),
                Span::raw(input.text[start..end].to_string()),
            ])),
            inner,
        );
        let column = width(prompt) + before;
        if app.modal.is_none() {
            let x = inner.x + u16::try_from(column).unwrap_or(inner.width - 1);
            frame.set_cursor_position(Position::new(x.min(inner.right() - 1), inner.y));
        }
        return;
    }
    if app.modal.is_none() {
        let x = inner.x + u16::try_from(width(prompt)).unwrap_or(0);
        frame.set_cursor_position(Position::new(x, inner.y));
    }
}

fn draw_modal(frame: &mut Frame, area: Rect, modal: &mut Modal, label: &str) {
    let (title, body, footer, scroll) = match modal {
        Modal::Agreement {
            text,
            accepting,
            scroll,
            since,
            ..
        } => {
            let body = match text {
                Some(text) => format!(
                    "Before you take part in {label}, please read the group's agreement.\n\n{}",
                    clean(text)
                ),
                None => "The agreement is on its way from the facilitators. One moment…".into(),
            };
            let readable = since.elapsed() >= AGREEMENT_READ_DELAY;
            let footer = match (text.is_some() && readable, *accepting) {
                (_, true) => Line::styled("Accepting…", dim()),
                (true, false) => Line::from(vec![
                    Span::styled("y", Style::new().add_modifier(Modifier::BOLD)),
                    Span::raw("  I accept      "),
                    Span::styled("Esc", Style::new().add_modifier(Modifier::BOLD)),
                    Span::raw("  not now"),
                ]),
                (false, false) => Line::from(vec![
                    Span::styled("Esc", Style::new().add_modifier(Modifier::BOLD)),
                    Span::raw("  not now"),
                ]),
            };
            ("Group agreement".to_string(), body, footer, scroll)
        }
        Modal::Info {
            title,
            body,
            scroll,
        } => (
            one_line(title),
            clean(body).into_owned(),
            Line::from(vec![
                Span::styled("Esc", Style::new().add_modifier(Modifier::BOLD)),
                Span::raw("  close      "),
                Span::styled("↑/↓", Style::new().add_modifier(Modifier::BOLD)),
                Span::raw("  scroll"),
            ]),
            scroll,
        ),
    };
    let w = (area.width * MODAL_WIDTH_PERCENT / 100)
        .max(area.width.min(40))
        .min(MODAL_MAX_WIDTH)
        .min(area.width);
    let text_width = usize::from(w.saturating_sub(4)).max(1);
    let body = window_lines(&body, text_width);
    let body_lines = body.len();
    let wanted = u16::try_from(body_lines + 4).unwrap_or(u16::MAX);
    let h = wanted
        .min(area.height.saturating_sub(2))
        .max(5)
        .min(area.height);
    let rect = Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    };
    frame.render_widget(Clear, rect);
    let block = Block::bordered()
        .title(format!(" {title} "))
        .border_style(Style::new().fg(Color::Cyan))
        .padding(Padding::horizontal(1));
    let inner = block.inner(rect);
    frame.render_widget(block, rect);
    let [text_area, _, footer_area] = Layout::vertical([
        Constraint::Min(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(inner);
    let max_scroll = body_lines.saturating_sub(usize::from(text_area.height));
    *scroll = (*scroll).min(u16::try_from(max_scroll).unwrap_or(u16::MAX));
    // Wrapped already, by the CLI's conservative width: ratatui's own wrapping measures
    // emoji sequences narrower than many terminals draw them.
    frame.render_widget(
        Paragraph::new(Text::from(
            body.into_iter().map(Line::raw).collect::<Vec<_>>(),
        ))
        .scroll((*scroll, 0)),
        text_area,
    );
    frame.render_widget(Paragraph::new(footer), footer_area);
}

/// A window's text (already cleaned) as the lines shown `text_width` cells wide: each line of
/// the text wrapped, its further lines indented by [`WINDOW_INDENT`], so a wrapped line never
/// starts where an entry (a member in the member list) starts.
fn window_lines(body: &str, text_width: usize) -> Vec<String> {
    let indent = WINDOW_INDENT.min(text_width.saturating_sub(1));
    let rest = text_width.saturating_sub(indent).max(1);
    let mut lines = Vec::new();
    for paragraph in body.split('\n') {
        for (i, line) in wrap(paragraph, text_width, rest).into_iter().enumerate() {
            lines.push(if i == 0 {
                line
            } else {
                format!("{}{line}", " ".repeat(indent))
            });
        }
    }
    lines
}

/// At most `max` cells of `text`, with `…` if cut.
fn truncate(text: &str, max: usize) -> String {
    if width(text) <= max {
        return text.to_string();
    }
    let mut out = String::new();
    for c in text.chars() {
        let mut buf = [0u8; 4];
        if width(&out) + width(c.encode_utf8(&mut buf)) + 1 > max {
            break;
        }
        out.push(c);
    }
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;

    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use confide_client::{Event, MemberInfo, Status};
    use confide_protocol::group_log::Role;
    use confide_protocol::{DeviceId, GroupId, MessageId, Seq, Timestamp};

    use super::*;
    use crate::tui::jobs::Outcome;

    fn screen(app: &mut App, w: u16, h: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
        terminal.draw(|f| draw(f, app)).unwrap();
        let buffer = terminal.backend().buffer().clone();
        let mut out = String::new();
        for y in 0..h {
            for x in 0..w {
                out.push_str(buffer[(x, y)].symbol());
            }
            out.push('\n');
        }
        out
    }

    #[test]
    fn the_input_window_keeps_the_cursor_visible_and_ends_on_grapheme_boundaries() {
        let text = "hello wörld 👩\u{200d}👧 and more";
        let cursor = text.find(" and").unwrap();
        let (start, end, before) = input_window(text, cursor, 8);
        assert_eq!(&text[start..cursor], "rld 👩\u{200d}👧");
        assert_eq!(before, width(&text[start..cursor]));
        assert!(before <= 8);
        assert_eq!(end, cursor, "no room is left after the cursor");
        let (start, end, before) = input_window(text, 3, 40);
        assert_eq!((start, end, before), (0, text.len(), 3));
    }

    #[test]
    fn typing_a_message_as_long_as_the_limit_redraws_each_key_without_rescanning_the_line() {
        // 30,000 keys, each drawn: with a redraw that measures the whole line again for every
        // column it scrolls (as before), this is ~10^13 steps and never finishes; drawing only
        // what is around the cursor makes it ~30,000 small draws.
        let group = GroupId([1; 16]);
        let labels = BTreeMap::from([(group, "support".to_string())]);
        let mut app = App::new(UserId([9; 16]), "Bob", Clock::utc(), labels, Some(group));
        app.start();
        let mut terminal = Terminal::new(TestBackend::new(60, 12)).unwrap();
        let text: String = "abcdefghij".repeat(super::super::app::MAX_INPUT_BYTES / 10);
        for c in text.chars() {
            app.handle_terminal(crossterm::event::Event::Key(
                crossterm::event::KeyEvent::from(crossterm::event::KeyCode::Char(c)),
            ));
            terminal.draw(|f| draw(f, &mut app)).unwrap();
        }
        assert_eq!(app.input.text, text);
        let shown = screen(&mut app, 60, 12);
        assert!(shown.contains("defghijabcdefghij"), "{shown}");
    }

    #[test]
    fn the_screen_shows_groups_messages_and_why_posting_is_blocked() {
        let group = GroupId([1; 16]);
        let me = UserId([9; 16]);
        let labels = BTreeMap::from([(group, "support".to_string())]);
        let mut app = App::new(me, "Bob", Clock::utc(), labels, Some(group));
        app.start();
        app.handle_event(Event::Connected);
        for (seq, sender, text) in [(1, UserId([1; 16]), "Welcome, everyone."), (2, me, "hi")] {
            app.handle_event(Event::Message({
                let mut v = ChatMessage::default();
                v.group = group;
                v.seq = Seq(seq);
                v.number = seq;
                v.id = MessageId([seq as u8; 16]);
                v.sender = sender;
                v.sender_device = DeviceId([0; 32]);
                v.sender_name = if sender == me { "Bob" } else { "Alice" }.into();
                v.sent_at = Timestamp(0);
                v.received_at = Timestamp(60_000);
                v.text = text.into();
                v.reply_to = None;
                v
            }));
        }
        app.handle_outcome(Outcome::Status {
            group,
            result: Ok({
                let mut v = Status::default();
                v.role = Some(Role::Member);
                v.muted_until = Some(Timestamp(crate::tui::text::now().0 + 3_600_000));
                v.locked = true;
                v.open_now = true;
                v.slow_mode_seconds = 0;
                v.agreement_pending = None;
                v
            }),
            members: vec![],
        });
        let shown = screen(&mut app, 100, 20);
        assert!(shown.contains("support"), "{shown}");
        assert!(
            shown.contains("00:01 #1 Alice: Welcome, everyone."),
            "{shown}"
        );
        assert!(shown.contains("Bob (you): hi"), "{shown}");
        assert!(shown.contains("syncing…"), "{shown}");
        assert!(
            shown.contains("locked — only facilitators can post"),
            "{shown}"
        );
        assert!(shown.contains("muted until"), "{shown}");
        assert!(shown.contains("Thursday 1 January 1970"), "{shown}");
    }

    fn chat_message(group: GroupId, seq: u64, number: u64, text: &str) -> ChatMessage {
        {
            let mut v = ChatMessage::default();
            v.group = group;
            v.seq = Seq(seq);
            v.number = number;
            v.id = MessageId([seq as u8; 16]);
            v.sender = UserId([1; 16]);
            v.sender_device = DeviceId([0; 32]);
            v.sender_name = "Alice".into();
            v.sent_at = Timestamp(0);
            v.received_at = Timestamp(60_000);
            v.text = text.into();
            v.reply_to = None;
            v
        }
    }

    #[test]
    fn messages_show_their_numbers_and_notices_where_they_happened() {
        let group = GroupId([1; 16]);
        let me = UserId([9; 16]);
        let labels = BTreeMap::from([(group, "support".to_string())]);
        let mut app = App::new(me, "Bob", Clock::utc(), labels, Some(group));
        app.start();
        app.handle_event(Event::Connected);
        app.handle_event(Event::Synced);
        // Server positions 7 and 9 (pinned texts came before): shown as #1 and #2.
        app.handle_event(Event::Message(chat_message(group, 7, 1, "first")));
        app.handle_event(Event::Message(chat_message(group, 9, 2, "third")));
        app.handle_outcome(Outcome::History {
            group,
            result: Ok(Vec::new()),
        });
        let notice = |op_seq, kind, after_seq| {
            let mut v = GroupNotice::default();
            v.group = group;
            v.op_seq = op_seq;
            v.index = 0;
            v.at = Timestamp(120_000);
            v.by = UserId([1; 16]);
            v.by_name = "Alice\u{1b}[2J".into();
            v.kind = kind;
            v.after_seq = Some(Seq(after_seq));
            v
        };
        app.handle_event(Event::Notice(notice(
            5,
            confide_client::NoticeKind::MessageDeleted { number: None },
            8,
        )));
        app.handle_event(Event::Notice(notice(
            6,
            confide_client::NoticeKind::Removed {
                user: UserId([3; 16]),
                name: "Mallory".into(),
                banned: false,
            },
            9,
        )));
        let shown = screen(&mut app, 100, 20);
        let rows: Vec<&str> = shown.lines().collect();
        let row = |needle: &str| {
            rows.iter()
                .position(|r| r.contains(needle))
                .unwrap_or_else(|| panic!("{needle:?} not on screen:\n{shown}"))
        };
        assert!(shown.contains("00:01 #1 Alice: first"), "{shown}");
        assert!(!shown.contains("#7") && !shown.contains("#9"), "{shown}");
        let deleted = row("00:02 — a message was deleted by Alice\u{fffd}[2J");
        let removed = row("00:02 — Alice\u{fffd}[2J removed Mallory");
        assert!(row("#1 Alice: first") < deleted, "{shown}");
        assert!(deleted < row("#2 Alice: third"), "{shown}");
        assert!(row("#2 Alice: third") < removed, "{shown}");
    }

    #[test]
    fn an_invitation_to_a_private_conversation_names_the_person_and_what_waits() {
        let group = GroupId([1; 16]);
        let me = UserId([9; 16]);
        let mut app = App::new(me, "Bob", Clock::utc(), BTreeMap::new(), None);
        app.start();
        app.handle_outcome(Outcome::Groups(Ok(vec![{
            let mut v = confide_client::GroupInfo::default();
            v.group = group;
            v.member = true;
            v.role = Some(Role::Member);
            v.members = 2;
            v.epoch = confide_protocol::Epoch(1);
            v.tampered = None;
            v.invited = true;
            v.waiting = 1;
            v.private_with = Some({
                let mut v = confide_client::Peer::default();
                v.user = UserId([1; 16]);
                v.display_name = "Alice".into();
                v.shared_groups = Vec::new();
                v.looks_like = Vec::new();
                v
            });
            v.sync_refused = None;
            v
        }])));
        // Not opened by itself: it is only an invitation.
        assert_eq!(app.current, None);
        app.handle_key(crossterm::event::KeyEvent::new(
            crossterm::event::KeyCode::Tab,
            crossterm::event::KeyModifiers::NONE,
        ));
        let shown = screen(&mut app, 100, 20);
        assert!(shown.contains("› private: Alice 1"), "{shown}");
        assert!(shown.contains("┌ private: Alice ─"), "{shown}");
        assert!(
            shown.contains("Alice wants to talk with you privately."),
            "{shown}"
        );
        assert!(
            shown.contains("1 message waiting — accept with /accept"),
            "{shown}"
        );
        assert!(!shown.contains("No messages yet"), "{shown}");
        assert!(!shown.contains("group AQEB"), "{shown}");
        // Nobody from the user's groups: said on the invitation.
        assert!(shown.contains("(not in any of your groups)"), "{shown}");
    }

    #[test]
    fn an_invitation_from_a_name_that_passes_for_someone_in_your_groups_says_so() {
        let (group, circle) = (GroupId([1; 16]), GroupId([2; 16]));
        let me = UserId([9; 16]);
        let labels = BTreeMap::from([(circle, "circle".to_string())]);
        let mut app = App::new(me, "Bob", Clock::utc(), labels, None);
        app.start();
        let info = |id, invited, private_with| {
            let mut v = confide_client::GroupInfo::default();
            v.group = id;
            v.member = true;
            v.role = Some(Role::Member);
            v.members = 2;
            v.epoch = confide_protocol::Epoch(1);
            v.tampered = None;
            v.invited = invited;
            v.waiting = 0;
            v.private_with = private_with;
            v.sync_refused = None;
            v
        };
        app.handle_outcome(Outcome::Groups(Ok(vec![
            info(circle, false, None),
            info(
                group,
                true,
                Some({
                    let mut v = confide_client::Peer::default();
                    v.user = UserId([1; 16]);
                    // A Cyrillic А.
                    v.display_name = "\u{410}lice".into();
                    v.shared_groups = Vec::new();
                    v.looks_like = vec![("Alice".into(), circle)];
                    v
                }),
            ),
        ])));
        app.current = Some(group);
        let shown = screen(&mut app, 100, 20);
        assert!(shown.contains("(⚠ looks like Alice (circle))"), "{shown}");
    }

    #[test]
    fn a_group_the_server_no_longer_serves_keeps_a_badge_while_it_lasts() {
        let group = GroupId([1; 16]);
        let me = UserId([9; 16]);
        let mut labels = BTreeMap::new();
        labels.insert(group, "circle".to_string());
        let mut app = App::new(me, "Bob", Clock::utc(), labels, Some(group));
        app.start();
        let info = |refused| {
            let mut v = confide_client::GroupInfo::default();
            v.group = group;
            v.member = true;
            v.role = Some(Role::Member);
            v.members = 3;
            v.epoch = confide_protocol::Epoch(1);
            v.tampered = None;
            v.invited = false;
            v.waiting = 0;
            v.private_with = None;
            v.sync_refused = refused;
            v
        };
        app.handle_outcome(Outcome::Groups(Ok(vec![info(Some({
            let mut v = confide_client::SyncRefusal::default();
            v.code = "no_such_group".into();
            v.since = Some(Timestamp(0));
            v
        }))])));
        let shown = screen(&mut app, 160, 20);
        assert!(shown.contains("› circle ⚠"), "{shown}");
        assert!(
            shown.contains(
                "⚠ the server no longer serves this group since Thursday 1 January 1970 \
                 (no_such_group)"
            ),
            "{shown}"
        );
        // Served again: the badge goes.
        app.handle_outcome(Outcome::Groups(Ok(vec![info(None)])));
        let shown = screen(&mut app, 160, 20);
        assert!(!shown.contains('⚠'), "{shown}");
    }

    #[test]
    fn any_terminal_size_draws_without_failing() {
        let group = GroupId([1; 16]);
        let me = UserId([9; 16]);
        let mut app = App::new(me, "Bob", Clock::utc(), BTreeMap::new(), Some(group));
        app.handle_event(Event::Message({ let mut v = ChatMessage::default(); v.group = group; v.seq = Seq(1); v.number = 1; v.id = MessageId([1; 16]); v.sender = UserId([1; 16]); v.sender_device = DeviceId([0; 32]); v.sender_name = "Alice".into(); v.sent_at = Timestamp(0); v.received_at = Timestamp(0); v.text = "a message long enough to wrap on a narrow screen, with a verylongwordthatdoesnotfit".into(); v.reply_to = None; v }));
        for with_modal in [false, true] {
            if with_modal {
                app.handle_terminal(crossterm::event::Event::Paste("/help".into()));
                app.handle_key(crossterm::event::KeyEvent::from(
                    crossterm::event::KeyCode::Enter,
                ));
                assert!(app.modal.is_some());
            }
            for w in [1, 2, 3, 4, 6, 10, 20, 39, 40, 59, 60, 80] {
                for h in [1, 2, 3, 4, 5, 6, 8, 12, 24] {
                    screen(&mut app, w, h);
                }
            }
        }
    }

    #[test]
    fn long_messages_wrap_under_the_name() {
        let lines = entry_lines(
            "12:00",
            Some(3),
            "Alice",
            Style::new(),
            "one two three four five six seven eight nine ten",
            Style::new(),
            30,
        );
        let text: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        assert_eq!(
            text,
            [
                "12:00 #3 Alice: one two three",
                "      four five six seven",
                "      eight nine ten"
            ]
        );
    }

    #[test]
    fn a_long_line_in_a_window_wraps_indented_and_within_any_terminals_width() {
        let name = format!("Mallory{}", "👩\u{200d}👧".repeat(8));
        let body = format!("Alice \u{2014} facilitator\n{name} Bob \u{2014} facilitator");
        let lines = window_lines(&body, 24);
        assert!(lines.len() > 2, "{lines:?}");
        for (i, line) in lines.iter().enumerate() {
            assert!(width(line) <= 24, "{line:?}");
            // xterm draws each code point of a ZWJ sequence: no wider than the window either.
            let xterm: usize = line
                .chars()
                .map(|c| unicode_width::UnicodeWidthChar::width(c).unwrap_or(0))
                .sum();
            assert!(xterm <= 24, "{line:?}");
            if i > 1 {
                assert!(line.starts_with("    "), "{lines:?}");
            }
        }
    }

    #[test]
    fn a_sender_whose_name_looks_like_another_members_is_marked_in_the_chat() {
        let group = GroupId([1; 16]);
        let me = UserId([9; 16]);
        let mut app = App::new(me, "Bob", Clock::utc(), BTreeMap::new(), Some(group));
        app.start();
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
        app.handle_outcome(Outcome::Status {
            group,
            result: Err("offline".into()),
            members: vec![
                member(1, "Alice", &["\u{410}lice"]),
                member(2, "\u{410}lice", &["Alice"]),
                member(3, "Carol", &[]),
                member(9, "Bob", &[]),
            ],
        });
        // 2 is a current member; 7 left, but their name is Carol's.
        for (seq, sender, name, text) in [
            (1, 2, "\u{410}lice", "your phone number?"),
            (2, 7, "Carol", "me too"),
            (3, 3, "Carol", "hello"),
        ] {
            app.handle_event(Event::Message({
                let mut v = ChatMessage::default();
                v.group = group;
                v.seq = Seq(seq);
                v.number = seq;
                v.id = MessageId([seq as u8; 16]);
                v.sender = UserId([sender; 16]);
                v.sender_device = DeviceId([0; 32]);
                v.sender_name = name.into();
                v.sent_at = Timestamp(0);
                v.received_at = Timestamp(60_000);
                v.text = text.into();
                v.reply_to = None;
                v
            }));
        }
        let shown = screen(&mut app, 100, 20);
        assert!(
            shown.contains("#1 \u{410}lice \u{26a0}: your phone number?"),
            "{shown}"
        );
        assert!(shown.contains("#2 Carol \u{26a0}: me too"), "{shown}");
        assert!(shown.contains("#3 Carol: hello"), "{shown}");
    }

    #[test]
    fn a_hidden_message_shows_only_its_warning_until_ctrl_r_and_the_next_meeting_is_in_the_title() {
        use confide_client::{NextMeeting, WarningTopic, WarningTopics};
        use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyModifiers};

        let group = GroupId([1; 16]);
        let me = UserId([9; 16]);
        let labels = BTreeMap::from([(group, "support".to_string())]);
        let mut app = App::new(me, "Bob", Clock::utc(), labels, Some(group));
        app.start();
        app.handle_event(Event::Connected);
        app.handle_event(Event::Synced);
        let mut grief = chat_message(group, 1, 1, "my dad died last spring");
        grief.warnings = vec![2];
        grief.hidden = true;
        app.handle_event(Event::Message(grief));
        let mut plain = chat_message(group, 2, 2, "the funeral was hard");
        plain.warnings = vec![1];
        app.handle_event(Event::Message(plain));
        // In 2100, on Friday 1 January at 18:00 UTC.
        let starts_at = Timestamp(4_102_509_600_000);
        app.handle_outcome(Outcome::GroupWork {
            group,
            result: Ok(crate::tui::jobs::GroupWork {
                next_meeting: Some(NextMeeting {
                    starts_at,
                    ends_at: Timestamp(starts_at.0 + 3_600_000),
                    index: 0,
                }),
                round: None,
                topics: Some(WarningTopics {
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
                }),
                hidden_topics: vec![2],
            }),
        });
        let shown = screen(&mut app, 120, 20);
        assert!(
            shown.contains("support · next meeting Fri 1 Jan 18:00"),
            "{shown}"
        );
        assert!(
            shown.contains("#1 Alice: [content warning: Grief — hidden · Ctrl-R shows it]"),
            "{shown}"
        );
        assert!(!shown.contains("my dad"), "{shown}");
        assert!(
            shown.contains("#2 Alice [content warning: Self-harm]: the funeral was hard"),
            "{shown}"
        );
        let ctrl_r = TermEvent::Key(KeyEvent::new(KeyCode::Char('r'), KeyModifiers::CONTROL));
        app.handle_terminal(ctrl_r.clone());
        let shown = screen(&mut app, 120, 20);
        assert!(
            shown.contains("#1 Alice [content warning: Grief]: my dad died last spring"),
            "{shown}"
        );
        app.handle_terminal(ctrl_r);
        assert!(!screen(&mut app, 120, 20).contains("my dad"));
        // Hiding no topic any more (`/unhide`) shows it, by the client's rule.
        app.handle_outcome(Outcome::GroupWork {
            group,
            result: Ok(crate::tui::jobs::GroupWork::default()),
        });
        let shown = screen(&mut app, 120, 20);
        assert!(shown.contains("my dad died last spring"), "{shown}");
        assert!(!shown.contains("next meeting"), "{shown}");
    }
}
