//! The chat's state and every change to it. [`App`] never touches the network or the
//! terminal: keys, client [`Event`]s and finished [`Outcome`]s go in, [`Job`]s for the client
//! come out, and [`super::view`] draws whatever the state is. That keeps the event loop free
//! to answer the keyboard while a backlog is still arriving.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use confide_client::{
    AgreementInfo, ChatMessage, Event, GroupInfo, GroupNotice, MemberInfo, PinnedInfo, Status,
};
use confide_protocol::envelope::PinnedKind;
use confide_protocol::{GroupId, Seq, Timestamp, UserId};

use super::jobs::{GroupWork, HISTORY_PAGE, Job, Outcome, Reply, SendFailure};
use super::slash::{self, COMMANDS, Slash};
use super::text::{Clock, look_alike_note, name_with_note, now, one_line, role_name};

/// How long an informational notice stays on the banner line.
const INFO_NOTICE_TTL: Duration = Duration::from_secs(12);
/// How long a warning or an error stays (long enough to read it calmly).
const ALERT_NOTICE_TTL: Duration = Duration::from_secs(30);
/// Notices kept at most (only the newest is shown; older ones are history).
const MAX_NOTICES: usize = 20;
/// How long the agreement is on screen before `y` accepts it.
pub const AGREEMENT_READ_DELAY: Duration = Duration::from_secs(1);
/// How many characters of group id name a group that has no label.
const SHORT_ID_CHARS: usize = 8;
/// The most text the input line holds, in bytes: a message this long always fits the envelope
/// ([`confide_protocol::envelope::MAX_BODY_LEN`]) even if every byte doubles when encoded,
/// with room left for the rest of the message. Typing or pasting more is refused with a notice.
pub const MAX_INPUT_BYTES: usize = 30_000;

/// The state of the chat screen.
pub struct App {
    /// This device's user, to mark their own messages.
    pub me: UserId,
    /// Their pseudonym.
    pub my_name: String,
    /// Local times.
    pub clock: Clock,
    /// Labels the user gave groups on this device.
    labels: BTreeMap<GroupId, String>,
    /// The other person's pseudonym for each private conversation (from the group list), to
    /// name a conversation the user did not label "private: Alice".
    private_names: BTreeMap<GroupId, String>,
    /// Every group shown in the list, sorted by label.
    pub groups: Vec<GroupView>,
    /// The open group.
    pub current: Option<GroupId>,
    /// The input line.
    pub input: Input,
    /// The connection, as the client last reported it.
    pub connection: Connection,
    /// Whether a resync is running, and how many messages it brought so far.
    pub syncing: Option<usize>,
    /// Confirmations, warnings and errors, newest last.
    pub notices: VecDeque<Notice>,
    /// Members whose keys changed and whose safety number was not looked at since.
    pub key_warnings: Vec<KeyWarning>,
    /// A window over the chat (agreement, help, …).
    pub modal: Option<Modal>,
    /// Set when the user wants to leave.
    pub quit: bool,
    /// Whether something changed since the last draw.
    pub dirty: bool,
    /// The message pane's inner size at the last draw, for paging and scroll keeping.
    pub pane: (u16, u16),
    /// Whether a group-list request is out, and whether another is wanted after it.
    groups_request: Request,
    /// The group list has arrived at least once.
    pub groups_loaded: bool,
    /// Numbers local echoes of messages being sent.
    next_local: u64,
}

/// A group in the list, with what the chat knows of it.
pub struct GroupView {
    /// The group.
    pub id: GroupId,
    /// Its label on this device, or a short id.
    pub label: String,
    /// Whether this device is a member (the client lists held invitations too).
    pub member: bool,
    /// Removed (or left): during this session, or before it (a group this device is no longer
    /// a member of).
    pub removed: bool,
    /// Someone added the user and they have not accepted yet: nothing of it is shown until
    /// they do (`/accept`).
    pub invited: bool,
    /// While invited: how many messages wait for the user to accept.
    pub waiting: usize,
    /// The server refuses to serve this group for good, since when (from the group list):
    /// shown as a lasting badge, since the event that says it comes once.
    pub refused: Option<confide_client::SyncRefusal>,
    /// For a private conversation: whether its other person is someone from the user's
    /// groups ("⚠ looks like Alice (circle)", "not in any of your groups"), for its invitation.
    pub peer_note: Option<String>,
    /// What happened among the messages (removals, deletions), where it happened.
    pub notices: Vec<GroupNotice>,
    /// Messages from others not yet seen (for the open group: below the scrolled view).
    pub unread: usize,
    /// Messages by their number in the group; history pages and live ones merge here.
    pub messages: BTreeMap<Seq, ChatMessage>,
    /// Messages being sent, shown until the server stores them.
    pub pending: Vec<Pending>,
    /// What the user may do, once known.
    pub status: Option<Status>,
    /// The current members, as of the last status: to mark a sender whose name looks like
    /// another member's.
    pub members: Vec<MemberInfo>,
    /// A status request in flight.
    status_request: Request,
    /// The next meeting, the open round and the warning topics, once read.
    pub work: GroupWork,
    /// A group-work request in flight.
    work_request: Request,
    /// The user asked to see the messages they hide by topic (Ctrl-R), in this group.
    pub show_hidden: bool,
    /// History paging.
    pub history: History,
    /// Lines scrolled up from the newest.
    pub scroll: usize,
    /// Set by the view when the oldest loaded message is on screen.
    pub at_top: bool,
    /// The agreement version the user chose not to accept for now (Esc), so it is not
    /// shown again until they ask or try to post.
    agreement_declined: Option<u32>,
    /// An agreement request is in flight.
    agreement_loading: bool,
}

/// History paging state of one group.
#[derive(Clone, Copy, Debug, Default)]
pub struct History {
    /// The newest page arrived.
    pub loaded: bool,
    /// A page is being fetched.
    pub loading: bool,
    /// Older messages may exist before the oldest loaded one.
    pub more_before: bool,
}

/// Coalesces repeated requests for the same thing: one in flight, at most one more after it.
#[derive(Clone, Copy, Debug, Default)]
struct Request {
    /// One is out.
    in_flight: bool,
    /// Something changed meanwhile: ask again when it returns.
    stale: bool,
}

impl Request {
    /// Whether to send a request now.
    fn want(&mut self) -> bool {
        if self.in_flight {
            self.stale = true;
            false
        } else {
            self.in_flight = true;
            true
        }
    }

    /// The answer arrived; whether to ask again.
    fn done(&mut self) -> bool {
        self.in_flight = false;
        std::mem::take(&mut self.stale) && self.want()
    }
}

/// A message on its way.
pub struct Pending {
    /// Matches the [`Outcome::Sent`].
    pub local_id: u64,
    /// The text.
    pub text: String,
    /// When the user pressed Enter.
    pub at: Timestamp,
    /// The client holds it until the connection returns.
    pub waiting: bool,
}

/// The connection state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Connection {
    /// Not yet connected.
    Connecting,
    /// Connected and authenticated.
    Online,
    /// Lost; the client reconnects by itself.
    Offline(String),
}

/// How a notice is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// A confirmation.
    Info,
    /// Something to pay attention to.
    Warning,
    /// Something failed.
    Error,
}

/// A line on the banner.
#[derive(Clone)]
pub struct Notice {
    /// The text.
    pub text: String,
    /// How it is shown.
    pub level: Level,
    /// When it appeared.
    pub at: Instant,
}

/// A member whose keys changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyWarning {
    /// The member.
    pub user: UserId,
    /// Their pseudonym.
    pub name: String,
    /// The look-alike warning for that pseudonym, or nothing ([`look_alike_note`]).
    pub look_alike: String,
}

/// A window over the chat.
#[derive(Clone, PartialEq, Eq)]
pub enum Modal {
    /// The group agreement, to accept (`y`) or not now (Esc).
    Agreement {
        /// The group.
        group: GroupId,
        /// The version shown: the one `y` accepts.
        version: u32,
        /// The text, once it has arrived.
        text: Option<String>,
        /// The agreement as `pinned()` gave it, once its text has arrived: what `y` accepts,
        /// exactly the text on the screen.
        shown: Option<AgreementInfo>,
        /// Accepting is in progress.
        accepting: bool,
        /// Lines scrolled.
        scroll: u16,
        /// When it appeared: `y` counts only after [`AGREEMENT_READ_DELAY`], so a key typed
        /// ahead (a `y` in "hey") cannot accept an agreement nobody read.
        since: Instant,
    },
    /// Text to read (help, crisis resources, members, a safety number).
    Info {
        /// The title.
        title: String,
        /// The text.
        body: String,
        /// Lines scrolled.
        scroll: u16,
    },
}

/// The input line: text and a cursor (a byte offset on a character boundary).
#[derive(Clone, Default)]
pub struct Input {
    /// The text.
    pub text: String,
    /// The cursor.
    pub cursor: usize,
}

impl Input {
    fn insert(&mut self, c: char) {
        self.text.insert(self.cursor, c);
        self.cursor += c.len_utf8();
    }

    fn insert_str(&mut self, s: &str) {
        self.text.insert_str(self.cursor, s);
        self.cursor += s.len();
    }

    fn prev_boundary(&self) -> usize {
        self.text[..self.cursor]
            .char_indices()
            .next_back()
            .map_or(0, |(i, _)| i)
    }

    fn next_boundary(&self) -> usize {
        self.text[self.cursor..]
            .chars()
            .next()
            .map_or(self.cursor, |c| self.cursor + c.len_utf8())
    }

    fn backspace(&mut self) {
        let start = self.prev_boundary();
        self.text.replace_range(start..self.cursor, "");
        self.cursor = start;
    }

    fn delete(&mut self) {
        let end = self.next_boundary();
        self.text.replace_range(self.cursor..end, "");
    }

    fn delete_word(&mut self) {
        let before = &self.text[..self.cursor];
        let trimmed = before.trim_end();
        let start = trimmed.rfind(char::is_whitespace).map_or(0, |i| {
            i + trimmed[i..].chars().next().map_or(1, char::len_utf8)
        });
        self.text.replace_range(start..self.cursor, "");
        self.cursor = start;
    }

    fn take(&mut self) -> String {
        self.cursor = 0;
        std::mem::take(&mut self.text)
    }

    fn set(&mut self, text: String) {
        self.cursor = text.len();
        self.text = text;
    }
}

impl GroupView {
    fn new(id: GroupId, label: String) -> GroupView {
        GroupView {
            id,
            label,
            member: true,
            removed: false,
            invited: false,
            waiting: 0,
            refused: None,
            peer_note: None,
            notices: Vec::new(),
            unread: 0,
            messages: BTreeMap::new(),
            pending: Vec::new(),
            status: None,
            members: Vec::new(),
            status_request: Request::default(),
            work: GroupWork::default(),
            work_request: Request::default(),
            show_hidden: false,
            history: History {
                more_before: true,
                ..History::default()
            },
            scroll: 0,
            at_top: false,
            agreement_declined: None,
            agreement_loading: false,
        }
    }

    /// Whether the user is muted now.
    pub fn muted_until(&self) -> Option<Timestamp> {
        self.status
            .as_ref()
            .and_then(|s| s.muted_until)
            .filter(|u| *u > now())
    }

    /// Whether only facilitators can post now (locked by hand or outside open hours).
    pub fn locked(&self) -> bool {
        self.status
            .as_ref()
            .is_some_and(|s| s.locked || !s.open_now)
    }

    /// Whether the user moderates this group.
    pub fn moderator(&self) -> bool {
        self.status
            .as_ref()
            .and_then(|s| s.role)
            .is_some_and(|r| r.is_moderator())
    }

    /// The agreement version the user still has to accept before posting (never for a group
    /// they are no longer in, or have not accepted being in).
    pub fn agreement_pending(&self) -> Option<u32> {
        if self.moderator() || self.removed || !self.member || self.invited {
            return None;
        }
        self.status.as_ref().and_then(|s| s.agreement_pending)
    }
}

impl App {
    /// A chat for user `me`, opening `initial` (or the first group once the list arrives).
    pub fn new(
        me: UserId,
        my_name: &str,
        clock: Clock,
        labels: BTreeMap<GroupId, String>,
        initial: Option<GroupId>,
    ) -> App {
        let mut app = App {
            me,
            my_name: my_name.to_string(),
            clock,
            labels,
            private_names: BTreeMap::new(),
            groups: Vec::new(),
            current: None,
            input: Input::default(),
            connection: Connection::Connecting,
            syncing: Some(0),
            notices: VecDeque::new(),
            key_warnings: Vec::new(),
            modal: None,
            quit: false,
            dirty: true,
            pane: (80, 20),
            groups_request: Request::default(),
            groups_loaded: false,
            next_local: 0,
        };
        if let Some(group) = initial {
            app.ensure_group(group);
            app.current = Some(group);
        }
        app
    }

    /// The requests to start with.
    pub fn start(&mut self) -> Vec<Job> {
        let mut jobs = Vec::new();
        if self.groups_request.want() {
            jobs.push(Job::Groups);
        }
        if let Some(group) = self.current {
            jobs.extend(self.enter(group));
        }
        jobs
    }

    /// The open group.
    pub fn current_group(&self) -> Option<&GroupView> {
        let id = self.current?;
        self.groups.iter().find(|g| g.id == id)
    }

    fn group_mut(&mut self, id: GroupId) -> Option<&mut GroupView> {
        self.groups.iter_mut().find(|g| g.id == id)
    }

    /// The name of a group for people: the user's label, "private: Alice" for a private
    /// conversation, else "group" and the beginning of its id.
    pub fn label(&self, id: GroupId) -> String {
        if let Some(label) = self.labels.get(&id) {
            return one_line(label);
        }
        if let Some(name) = self.private_names.get(&id) {
            return format!("private: {}", one_line(name));
        }
        let short: String = id.to_string().chars().take(SHORT_ID_CHARS).collect();
        format!("group {short}")
    }

    /// The other person's pseudonym (cleaned) if the group is a private conversation.
    pub fn private_name(&self, id: GroupId) -> Option<String> {
        self.private_names.get(&id).map(|n| one_line(n))
    }

    fn ensure_group(&mut self, id: GroupId) -> &mut GroupView {
        let index = match self.groups.iter().position(|g| g.id == id) {
            Some(i) => i,
            None => {
                let label = self.label(id);
                self.groups.push(GroupView::new(id, label));
                self.groups.len() - 1
            }
        };
        &mut self.groups[index]
    }

    /// Tells the person that `adding` more bytes would make the input longer than one message
    /// may be; nothing was added.
    fn too_long(&mut self, adding: usize) {
        self.notice(
            Level::Error,
            format!(
                "Too long for one message: it would be {} bytes, at most {MAX_INPUT_BYTES} fit. \
                 Nothing was added; send it in parts.",
                self.input.text.len() + adding
            ),
        );
    }

    fn notice(&mut self, level: Level, text: impl Into<String>) {
        let text = text.into();
        if text.is_empty() {
            return;
        }
        self.notices.push_back(Notice {
            text,
            level,
            at: Instant::now(),
        });
        while self.notices.len() > MAX_NOTICES {
            self.notices.pop_front();
        }
        self.dirty = true;
    }

    /// The notice to show now, if any is still fresh.
    pub fn current_notice(&self) -> Option<&Notice> {
        self.notices.back().filter(|n| {
            let ttl = match n.level {
                Level::Info => INFO_NOTICE_TTL,
                Level::Warning | Level::Error => ALERT_NOTICE_TTL,
            };
            n.at.elapsed() < ttl
        })
    }

    // ---------------------------------------------------------------------------------------
    // Opening groups
    // ---------------------------------------------------------------------------------------

    /// Opens a group: its newest messages and its status (which may bring the agreement).
    fn enter(&mut self, id: GroupId) -> Vec<Job> {
        self.current = Some(id);
        self.dirty = true;
        let g = self.ensure_group(id);
        g.unread = 0;
        g.scroll = 0;
        let mut jobs = Vec::new();
        if !g.history.loaded && !g.history.loading {
            g.history.loading = true;
            jobs.push(Job::History {
                group: id,
                before: None,
            });
        }
        jobs.push(Job::Notices { group: id });
        jobs.extend(self.want_status(id));
        jobs.extend(self.want_work(id));
        jobs.extend(self.check_agreement(id));
        jobs
    }

    fn switch(&mut self, step: isize) -> Vec<Job> {
        let shown: Vec<GroupId> = self
            .groups
            .iter()
            .filter(|g| g.member || Some(g.id) == self.current)
            .map(|g| g.id)
            .collect();
        if shown.is_empty() {
            return Vec::new();
        }
        let len = shown.len() as isize;
        let at = self
            .current
            .and_then(|c| shown.iter().position(|g| *g == c))
            .map_or(-1, |i| i as isize);
        let next = if at < 0 && step < 0 {
            len - 1
        } else {
            (at + step).rem_euclid(len)
        };
        let id = shown[next as usize];
        if Some(id) == self.current {
            return Vec::new();
        }
        self.enter(id)
    }

    fn want_status(&mut self, id: GroupId) -> Option<Job> {
        let g = self.group_mut(id)?;
        g.status_request.want().then_some(Job::Status { group: id })
    }

    fn want_work(&mut self, id: GroupId) -> Option<Job> {
        let g = self.group_mut(id)?;
        g.work_request
            .want()
            .then_some(Job::GroupWork { group: id })
    }

    fn want_groups(&mut self) -> Option<Job> {
        self.groups_request.want().then_some(Job::Groups)
    }

    /// Asks for the agreement if the open group needs it accepted and the user has not
    /// put it off.
    fn check_agreement(&mut self, id: GroupId) -> Option<Job> {
        if self.current != Some(id) {
            return None;
        }
        let waiting_for_text = matches!(
            &self.modal,
            Some(Modal::Agreement { group, text: None, .. }) if *group == id
        );
        if self.modal.is_some() && !waiting_for_text {
            return None;
        }
        let g = self.group_mut(id)?;
        let version = g.agreement_pending()?;
        if g.agreement_declined == Some(version) || g.agreement_loading {
            return None;
        }
        g.agreement_loading = true;
        Some(Job::Agreement {
            group: id,
            asked: false,
        })
    }

    // ---------------------------------------------------------------------------------------
    // Keys
    // ---------------------------------------------------------------------------------------

    /// Something from the terminal.
    pub fn handle_terminal(&mut self, event: TermEvent) -> Vec<Job> {
        match event {
            TermEvent::Key(key) => self.handle_key(key),
            TermEvent::Paste(text) => {
                if self.modal.is_none() {
                    // A pasted text is one message: its line breaks must not send it early.
                    let flat: String = text
                        .chars()
                        .map(|c| if c.is_control() { ' ' } else { c })
                        .collect();
                    if self.input.text.len() + flat.len() > MAX_INPUT_BYTES {
                        self.too_long(flat.len());
                    } else {
                        self.input.insert_str(&flat);
                    }
                    self.dirty = true;
                }
                Vec::new()
            }
            TermEvent::Resize(..) | TermEvent::FocusGained => {
                self.dirty = true;
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// A key press.
    pub fn handle_key(&mut self, key: KeyEvent) -> Vec<Job> {
        if key.kind == KeyEventKind::Release {
            return Vec::new();
        }
        self.dirty = true;
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && key.code == KeyCode::Char('c') {
            self.quit = true;
            return Vec::new();
        }
        if self.modal.is_some() {
            return self.modal_key(key);
        }
        let page = usize::from(self.pane.1.saturating_sub(2)).max(1);
        match key.code {
            KeyCode::Enter => return self.submit(),
            KeyCode::Tab => return self.switch(1),
            KeyCode::BackTab => return self.switch(-1),
            KeyCode::Char('n') if ctrl => return self.switch(1),
            KeyCode::Char('p') if ctrl => return self.switch(-1),
            KeyCode::Up => self.scroll_up(1),
            KeyCode::Down => self.scroll_down(1),
            KeyCode::PageUp => self.scroll_up(page),
            KeyCode::PageDown => self.scroll_down(page),
            KeyCode::Esc => {
                if self.current_group().is_some_and(|g| g.scroll > 0) {
                    self.scroll_down(usize::MAX);
                } else {
                    self.notices.clear();
                }
            }
            KeyCode::Left => self.input.cursor = self.input.prev_boundary(),
            KeyCode::Right => self.input.cursor = self.input.next_boundary(),
            KeyCode::Home => self.input.cursor = 0,
            KeyCode::End => self.input.cursor = self.input.text.len(),
            KeyCode::Backspace => self.input.backspace(),
            KeyCode::Delete => self.input.delete(),
            KeyCode::Char('a') if ctrl => self.input.cursor = 0,
            KeyCode::Char('e') if ctrl => self.input.cursor = self.input.text.len(),
            KeyCode::Char('u') if ctrl => {
                self.input.take();
            }
            KeyCode::Char('w') if ctrl => self.input.delete_word(),
            KeyCode::Char('r') if ctrl => {
                // Shows (or hides again) the messages hidden by their content warning.
                if let Some(id) = self.current
                    && let Some(g) = self.group_mut(id)
                {
                    g.show_hidden = !g.show_hidden;
                    let hidden = g.messages.values().filter(|m| m.hidden).count();
                    let text = match (g.show_hidden, hidden) {
                        (true, 0) => "No message is hidden here.",
                        (true, _) => "Hidden messages are shown. Ctrl-R hides them again.",
                        (false, _) => "Messages with topics you hide are hidden again.",
                    };
                    self.notice(Level::Info, text);
                }
            }
            KeyCode::Char(c) if !ctrl => {
                if self.input.text.len() + c.len_utf8() > MAX_INPUT_BYTES {
                    self.too_long(c.len_utf8());
                } else {
                    self.input.insert(c);
                }
            }
            _ => {}
        }
        Vec::new()
    }

    fn scroll_up(&mut self, lines: usize) {
        if let Some(id) = self.current
            && let Some(g) = self.group_mut(id)
        {
            // The view clamps it to what exists once it knows the wrapped height.
            g.scroll = g.scroll.saturating_add(lines);
        }
    }

    fn scroll_down(&mut self, lines: usize) {
        if let Some(id) = self.current
            && let Some(g) = self.group_mut(id)
        {
            g.scroll = g.scroll.saturating_sub(lines);
            if g.scroll == 0 {
                g.unread = 0;
            }
        }
    }

    fn modal_key(&mut self, key: KeyEvent) -> Vec<Job> {
        let Some(modal) = self.modal.as_mut() else {
            return Vec::new();
        };
        let scroll = match modal {
            Modal::Agreement { scroll, .. } | Modal::Info { scroll, .. } => scroll,
        };
        match key.code {
            KeyCode::Up => *scroll = scroll.saturating_sub(1),
            KeyCode::Down => *scroll = scroll.saturating_add(1),
            KeyCode::PageUp => *scroll = scroll.saturating_sub(10),
            KeyCode::PageDown => *scroll = scroll.saturating_add(10),
            _ => {}
        }
        match modal {
            Modal::Agreement {
                group,
                shown: Some(shown),
                accepting,
                since,
                ..
            } if matches!(key.code, KeyCode::Char('y' | 'Y'))
                && !*accepting
                && since.elapsed() >= AGREEMENT_READ_DELAY =>
            {
                *accepting = true;
                return vec![Job::Accept {
                    group: *group,
                    // The text on the screen, as `pinned()` gave it.
                    shown: shown.clone(),
                }];
            }
            Modal::Agreement { group, .. } => match key.code {
                KeyCode::Esc | KeyCode::Char('n' | 'N') => {
                    let group = *group;
                    self.modal = None;
                    if let Some(g) = self.group_mut(group) {
                        g.agreement_declined = g.agreement_pending();
                    }
                    self.notice(
                        Level::Info,
                        "You can read along. To take part, accept the agreement: /agreement",
                    );
                }
                _ => {}
            },
            Modal::Info { .. } => {
                if matches!(key.code, KeyCode::Esc | KeyCode::Enter) {
                    self.modal = None;
                }
            }
        }
        Vec::new()
    }

    /// Enter: a command or a message.
    fn submit(&mut self) -> Vec<Job> {
        let line = self.input.take();
        let trimmed = line.trim();
        if trimmed.is_empty() {
            return Vec::new();
        }
        if trimmed.starts_with('/') && !trimmed.starts_with("//") {
            return match slash::parse(trimmed) {
                Ok(command) => self.command(command, line),
                Err(problem) => {
                    // Keep what they typed, so they can fix it.
                    self.input.set(line);
                    self.notice(Level::Error, problem);
                    Vec::new()
                }
            };
        }
        // `//text` sends `/text`.
        let text = trimmed
            .strip_prefix('/')
            .filter(|t| t.starts_with('/'))
            .unwrap_or(trimmed)
            .to_string();
        self.send(text, line)
    }

    fn command(&mut self, command: Slash, line: String) -> Vec<Job> {
        match command {
            Slash::Help => {
                self.modal = Some(Modal::Info {
                    title: "Commands".into(),
                    body: help_text(),
                    scroll: 0,
                });
                return Vec::new();
            }
            Slash::Quit => {
                self.quit = true;
                return Vec::new();
            }
            _ => {}
        }
        let Some(group) = self.current else {
            self.input.set(line);
            self.notice(Level::Error, "Open a group first (Tab switches groups).");
            return Vec::new();
        };
        if let Slash::Warned { warnings, text } = command {
            return self.send_warned(text, line, warnings);
        }
        if let Slash::AgreementShow = command {
            // Asking to see it again overrides an earlier "not now".
            if let Some(g) = self.group_mut(group) {
                g.agreement_declined = None;
            }
            return vec![Job::Agreement { group, asked: true }];
        }
        vec![Job::Command { group, command }]
    }

    fn send(&mut self, text: String, line: String) -> Vec<Job> {
        self.send_warned(text, line, Vec::new())
    }

    /// Sends `text` with content `warnings` (none for most messages); `line` is what was
    /// typed, given back if it cannot be sent.
    fn send_warned(&mut self, text: String, line: String, warnings: Vec<u16>) -> Vec<Job> {
        let Some(group) = self.current else {
            self.input.set(line);
            self.notice(
                Level::Error,
                "You are not in a group yet: close the chat (Ctrl-C) and join one with an invite link (`confide join`).",
            );
            return Vec::new();
        };
        let Some(g) = self.group_mut(group) else {
            return Vec::new();
        };
        if g.removed || !g.member {
            let label = self.label(group);
            self.input.set(line);
            self.notice(
                Level::Error,
                format!("You are no longer in {label}: you can read what was said, not post."),
            );
            return Vec::new();
        }
        if g.invited {
            self.input.set(line);
            self.notice(
                Level::Info,
                "First accept being in this conversation: type /accept (nothing is sent before).",
            );
            return Vec::new();
        }
        if g.agreement_pending().is_some() {
            // Ask first, and keep the text for after.
            g.agreement_declined = None;
            self.input.set(line);
            return self.check_agreement(group).into_iter().collect();
        }
        self.next_local += 1;
        let local_id = self.next_local;
        if let Some(g) = self.group_mut(group) {
            g.pending.push(Pending {
                local_id,
                text: text.clone(),
                at: now(),
                waiting: false,
            });
            g.scroll = 0;
            g.unread = 0;
        }
        vec![Job::Send {
            group,
            text,
            warnings,
            local_id,
        }]
    }

    // ---------------------------------------------------------------------------------------
    // Client events
    // ---------------------------------------------------------------------------------------

    /// An event from the client.
    pub fn handle_event(&mut self, event: Event) -> Vec<Job> {
        self.dirty = true;
        let mut jobs = Vec::new();
        match event {
            Event::Connected => {
                self.connection = Connection::Online;
                self.syncing = Some(0);
            }
            Event::Disconnected { reason } => {
                let reason = one_line(&reason);
                // Once per outage, not once per reconnection attempt.
                if self.connection == Connection::Online {
                    self.notice(
                        Level::Warning,
                        format!("The connection was lost ({reason}). Reconnecting — you can keep reading."),
                    );
                }
                self.connection = Connection::Offline(reason);
            }
            Event::Synced => {
                self.syncing = None;
                jobs.extend(self.want_groups());
                if let Some(group) = self.current {
                    // Where a removal goes can only be told once later messages came.
                    jobs.push(Job::Notices { group });
                    jobs.extend(self.want_status(group));
                    if let Some(g) = self.group_mut(group)
                        && !g.history.loading
                        && !g.history.loaded
                    {
                        g.history.loading = true;
                        jobs.push(Job::History {
                            group,
                            before: None,
                        });
                    }
                }
            }
            Event::Message(message) => self.add_message(message, true),
            Event::Sent(message) => {
                // A message kept while offline reached the server.
                if let Some(g) = self.group_mut(message.group)
                    && let Some(at) = g
                        .pending
                        .iter()
                        .position(|p| p.waiting && p.text == message.text)
                {
                    g.pending.remove(at);
                }
                self.add_message(message, false);
            }
            Event::SendFailed { group, reason, .. } => {
                let text = self.group_mut(group).and_then(|g| {
                    let at = g.pending.iter().position(|p| p.waiting)?;
                    Some(g.pending.remove(at).text)
                });
                let failure = SendFailure {
                    text: format!(
                        "A message you wrote earlier was not delivered: {}",
                        one_line(&reason)
                    ),
                    agreement_required: false,
                    pending: false,
                };
                jobs.extend(self.send_failed(group, text, failure));
            }
            Event::GroupChanged(change) => jobs.extend(self.want_status(change.group)),
            Event::Joined { group } => {
                let g = self.ensure_group(group);
                g.member = true;
                g.removed = false;
                g.invited = false;
                g.waiting = 0;
                let label = self.label(group);
                self.notice(Level::Info, format!("You joined {label}."));
                jobs.extend(self.want_groups());
                jobs.push(Job::Notices { group });
                if self.current.is_none() {
                    jobs.extend(self.enter(group));
                }
            }
            Event::Invited {
                group,
                by_name,
                private,
                ..
            } => {
                if private && !self.labels.contains_key(&group) {
                    self.private_names.insert(group, by_name.clone());
                }
                let label = self.label(group);
                let g = self.ensure_group(group);
                g.invited = true;
                g.label = label.clone();
                let by = one_line(&by_name);
                self.notice(
                    Level::Info,
                    if private {
                        format!(
                            "{by} wants to talk with you privately ({label}). Open it (Tab) and \
                             type /accept to read it."
                        )
                    } else {
                        format!(
                            "{by} added you to {label}. Open it (Tab) and type /accept to join it."
                        )
                    },
                );
                jobs.extend(self.want_groups());
            }
            Event::MessageWaiting { group, waiting } => {
                let g = self.ensure_group(group);
                if g.invited {
                    g.waiting = waiting;
                }
                // A group list asked for before this message came would count it out again:
                // ask once more after it.
                jobs.extend(self.want_groups());
            }
            Event::Notice(notice) => {
                let g = self.ensure_group(notice.group);
                g.notices
                    .retain(|n| (n.op_seq, n.index) != (notice.op_seq, notice.index));
                g.notices.push(notice);
            }
            Event::SyncRefused { group, reason } => {
                let label = self.label(group);
                self.notice(
                    Level::Warning,
                    format!(
                        "The server no longer serves {label} ({}).",
                        one_line(&reason)
                    ),
                );
                // The list brings the lasting badge, with its date.
                jobs.extend(self.want_groups());
            }
            Event::Removed { group, at } => {
                let label = self.label(group);
                let g = self.ensure_group(group);
                g.removed = true;
                g.member = false;
                self.notice(
                    Level::Warning,
                    format!(
                        "You are no longer in {label} (since {}).",
                        crate::commands::local_time(at)
                    ),
                );
            }
            Event::KeyChanged {
                group,
                user,
                display_name,
            } => {
                let name = one_line(&display_name);
                let label = self.label(group);
                let members = self.group_mut(group).map(|g| g.members.clone());
                let look_alike = look_alike_note(&super::text::looks_like(
                    user,
                    &display_name,
                    members.as_deref().unwrap_or_default(),
                ));
                self.key_warnings.retain(|w| w.user != user);
                self.key_warnings.push(KeyWarning {
                    user,
                    name: name.clone(),
                    look_alike: look_alike.clone(),
                });
                self.notice(
                    Level::Warning,
                    format!(
                        "{name}'s keys changed (in {label}){look_alike}: compare safety numbers with /safety @{name}"
                    ),
                );
            }
            Event::MessageRejected(r) => {
                let label = self.label(r.group);
                self.notice(
                    Level::Warning,
                    format!(
                        "A message in {label} failed verification and was not shown ({}).",
                        one_line(&r.reason)
                    ),
                );
            }
            Event::GroupRejected(r) => {
                let label = self.label(r.group);
                self.notice(
                    Level::Error,
                    format!(
                        "The server sent {label} a change that failed verification; it was refused and the group stays as last verified ({}).",
                        one_line(&r.reason)
                    ),
                );
                jobs.extend(self.want_status(r.group));
            }
            Event::GroupBehind { group, .. } => {
                let label = self.label(group);
                self.notice(
                    Level::Warning,
                    format!(
                        "Others in {label} are past a membership change this device has not been shown. Your messages to {label} are held until it catches up, so nobody who was removed can read them."
                    ),
                );
            }
            Event::HeldNeedsConfirm {
                group,
                id,
                added,
                epoch,
            } => {
                let label = self.label(group);
                let who = match added.len() {
                    0 => "the group changed".to_string(),
                    _ => format!(
                        "{} joined",
                        added
                            .iter()
                            .map(|a| one_line(&a.display_name))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                };
                self.notice(
                    Level::Warning,
                    format!(
                        "A message you wrote to {label} is not sent: {who} after you wrote it. It waits for you: `confide held {label} --send {}@{epoch}` sends it to everyone now, `--discard {}` drops it.",
                        id.to_hex(),
                        id.to_hex()
                    ),
                );
            }
            Event::CaughtUp { group } => {
                let label = self.label(group);
                self.notice(
                    Level::Info,
                    format!("{label} has caught up; held messages are being sent."),
                );
            }
            Event::OrderWarning(r) => {
                let label = self.label(r.group);
                self.notice(
                    Level::Warning,
                    format!(
                        "Messages in {label} may be out of order: {}.",
                        one_line(&r.reason)
                    ),
                );
            }
            Event::JoinRequest(request) => {
                let label = self.label(request.group);
                self.notice(
                    Level::Info,
                    format!(
                        "{}{} asks to join {label} (to decide, close the chat and run `confide mod requests`).",
                        one_line(&request.display_name),
                        look_alike_note(&request.looks_like)
                    ),
                );
            }
            Event::Report(report) => {
                let label = self.label(report.group);
                // The number this device shows for it, if the message is loaded here: found by
                // its id, which franking proves, never by the position the reporter's device
                // names (which it does not), and a warning when that position is another.
                let (members, found) = self
                    .group_mut(report.group)
                    .map(|g| {
                        let found = g
                            .messages
                            .values()
                            .find(|m| m.id == report.message)
                            .map(|m| (m.number, m.seq));
                        (g.members.clone(), found)
                    })
                    .unwrap_or_default();
                let which = match found {
                    None => "a message".to_string(),
                    Some((n, seq)) if seq == report.seq => format!("message #{n}"),
                    Some((n, _)) => {
                        format!("message #{n} (⚠ their device named another position for it)")
                    }
                };
                self.notice(
                    Level::Warning,
                    format!(
                        "{} reported {which} by {} in {label} (to read it, close the chat and run `confide mod queue`).",
                        name_with_note(report.reporter, &report.reporter_name, &members),
                        name_with_note(report.offender, &report.offender_name, &members)
                    ),
                );
            }
            Event::UrgentRequest(request) => {
                let label = self.label(request.group);
                let name = one_line(&request.display_name);
                self.notice(
                    Level::Warning,
                    format!("{name} needs a facilitator in {label}."),
                );
                if self.modal.is_none() {
                    self.modal = Some(Modal::Info {
                        title: format!("{name} needs a facilitator ({label})"),
                        body: request.text,
                        scroll: 0,
                    });
                }
            }
            Event::MessagesDeleted { group, messages } => {
                if let Some(g) = self.group_mut(group) {
                    g.messages.retain(|_, m| !messages.contains(&m.id));
                }
            }
            Event::Pinned { group, kind, .. } => {
                if kind == PinnedKind::Agreement
                    && let Some(g) = self.group_mut(group)
                {
                    // A new version is a new question.
                    g.agreement_declined = None;
                }
                jobs.extend(self.want_status(group));
                if matches!(kind, PinnedKind::Meetings | PinnedKind::WarningTopics) {
                    jobs.extend(self.want_work(group));
                }
            }
            Event::RoundChanged { group, .. } => jobs.extend(self.want_work(group)),
            Event::WarningAdded {
                group,
                message,
                warnings,
            } => {
                if let Some(g) = self.group_mut(group) {
                    let hidden = &g.work.hidden_topics;
                    if let Some(m) = g.messages.values_mut().find(|m| m.id == message) {
                        // An addition can hide a message, never show one the core hid.
                        m.hidden = m.hidden || warnings.iter().any(|w| hidden.contains(w));
                        m.warnings = warnings;
                    }
                }
            }
            // Another of this person's devices changed the topics they hide here.
            Event::OwnSettingsChanged { group: Some(group) } => {
                jobs.extend(self.want_work(group));
            }
            Event::EventsDropped { count } => {
                // The client left out updates this screen did not take in time; what they said
                // is stored, so every group's messages are read again (the current one at the
                // sync that follows, the others when opened).
                for g in &mut self.groups {
                    g.history.loaded = false;
                }
                self.notice(
                    Level::Warning,
                    format!("{count} updates came faster than they could be shown; reloading."),
                );
            }
            Event::RoleChanged { group, role } => {
                let label = self.label(group);
                self.notice(
                    Level::Info,
                    format!("You are now {} in {label}.", role_name(role)),
                );
                jobs.extend(self.want_status(group));
            }
            Event::DevicesChanged { user } if user == self.me => {
                self.notice(
                    Level::Info,
                    "Your devices changed: `confide device list` shows them.".to_string(),
                );
            }
            Event::IdentityMisuse { user } if user == self.me => {
                self.notice(
                    Level::Warning,
                    "Your identity key was used by a device that is not one of yours: check \
                     `confide device list` and unlink every device you do not know."
                        .to_string(),
                );
            }
            Event::IdentityMisuse { .. } => {
                self.notice(
                    Level::Warning,
                    "Someone's identity key was used by a device that is not theirs: compare \
                     safety numbers (/safety) before you trust what they send."
                        .to_string(),
                );
            }
            Event::DeviceUnlinked { .. } => {
                self.notice(
                    Level::Warning,
                    "This device was unlinked from another of your devices: it can no longer \
                     read or send. Quit (Ctrl-C)."
                        .to_string(),
                );
            }
            _ => {}
        }
        jobs
    }

    /// Adds a message (live or from history), keeping the reader's place if they scrolled up.
    fn add_message(&mut self, message: ChatMessage, live: bool) {
        let mine = message.sender == self.me;
        let open = self.current == Some(message.group);
        let width = self.pane.0;
        if live && let Some(count) = self.syncing.as_mut() {
            *count += 1;
        }
        let clock = self.clock.clone();
        let me = self.me;
        let g = self.ensure_group(message.group);
        if g.messages.contains_key(&message.seq) {
            return;
        }
        let newest = g
            .messages
            .keys()
            .next_back()
            .is_none_or(|s| *s < message.seq);
        if live && !mine && (!open || g.scroll > 0) {
            g.unread += 1;
        }
        if open && newest && g.scroll > 0 {
            g.scroll += super::view::message_height(&message, me, &clock, g, width);
        }
        g.messages.insert(message.seq, message);
    }

    // ---------------------------------------------------------------------------------------
    // Outcomes
    // ---------------------------------------------------------------------------------------

    /// A finished client call.
    pub fn handle_outcome(&mut self, outcome: Outcome) -> Vec<Job> {
        self.dirty = true;
        let mut jobs = Vec::new();
        match outcome {
            Outcome::Groups(result) => {
                if self.groups_request.done() {
                    jobs.push(Job::Groups);
                }
                match result {
                    Ok(list) => {
                        self.groups_loaded = true;
                        jobs.extend(self.merge_groups(list));
                    }
                    Err(e) => self.notice(Level::Error, format!("Could not list groups: {e}")),
                }
            }
            Outcome::History { group, result } => {
                let Some(g) = self.group_mut(group) else {
                    return jobs;
                };
                g.history.loading = false;
                match result {
                    Ok(page) => {
                        g.history.loaded = true;
                        g.history.more_before = page.len() >= HISTORY_PAGE;
                        for message in page {
                            self.add_message(message, false);
                        }
                    }
                    Err(e) => {
                        if self.current == Some(group) {
                            self.notice(Level::Error, format!("Could not load messages: {e}"));
                        }
                    }
                }
            }
            Outcome::Notices { group, result } => match result {
                Ok(notices) => {
                    if let Some(g) = self.group_mut(group) {
                        g.notices = notices;
                    }
                }
                Err(e) => {
                    if self.current == Some(group) {
                        self.notice(Level::Error, format!("Could not load what happened: {e}"));
                    }
                }
            },
            Outcome::Status {
                group,
                result,
                members,
            } => {
                if let Some(g) = self.group_mut(group) {
                    g.members = members;
                    if g.status_request.done() {
                        jobs.push(Job::Status { group });
                    }
                }
                match result {
                    Ok(status) => {
                        self.apply_status(group, status);
                        jobs.extend(self.check_agreement(group));
                    }
                    Err(e) => {
                        if self.current == Some(group) {
                            self.notice(Level::Error, e);
                        }
                    }
                }
            }
            Outcome::Agreement {
                group,
                asked,
                result,
            } => {
                if let Some(g) = self.group_mut(group) {
                    g.agreement_loading = false;
                }
                match result {
                    Ok(pinned) => self.show_agreement(group, pinned, asked),
                    Err(e) => self.notice(Level::Error, e),
                }
            }
            Outcome::Sent {
                group,
                local_id,
                result,
            } => {
                if let Err(failure) = &result
                    && failure.pending
                {
                    // Kept by the client: the echo stays until it is delivered or refused.
                    if let Some(p) = self
                        .group_mut(group)
                        .and_then(|g| g.pending.iter_mut().find(|p| p.local_id == local_id))
                    {
                        p.waiting = true;
                    }
                    self.notice(Level::Warning, failure.text.clone());
                    return jobs;
                }
                let text = self.group_mut(group).and_then(|g| {
                    let at = g.pending.iter().position(|p| p.local_id == local_id)?;
                    Some(g.pending.remove(at).text)
                });
                match result {
                    Ok(message) => self.add_message(message, false),
                    Err(failure) => jobs.extend(self.send_failed(group, text, failure)),
                }
            }
            Outcome::Accepted { group, result } => match result {
                Ok(()) => {
                    if matches!(&self.modal, Some(Modal::Agreement { group: g, .. }) if *g == group)
                    {
                        self.modal = None;
                    }
                    self.notice(
                        Level::Info,
                        "Thank you for accepting the agreement. You can take part now.",
                    );
                    jobs.extend(self.want_status(group));
                }
                Err(e) => {
                    if let Some(Modal::Agreement { accepting, .. }) = self.modal.as_mut() {
                        *accepting = false;
                    }
                    self.notice(Level::Error, format!("The agreement was not accepted: {e}"));
                }
            },
            Outcome::GroupWork { group, result } => {
                if let Some(g) = self.group_mut(group)
                    && g.work_request.done()
                {
                    jobs.push(Job::GroupWork { group });
                }
                match result {
                    Ok(work) => {
                        if let Some(g) = self.group_mut(group) {
                            // What this device hides may have changed (`/hide`): the same rule
                            // as the client's ([`ChatMessage::hidden`]).
                            for m in g.messages.values_mut() {
                                m.hidden =
                                    m.warnings.iter().any(|w| work.hidden_topics.contains(w));
                            }
                            g.work = work;
                        }
                    }
                    Err(e) => {
                        if self.current == Some(group) {
                            self.notice(Level::Error, e);
                        }
                    }
                }
            }
            Outcome::Reply { group, result } => match result {
                Ok(reply) => jobs.extend(self.show_reply(group, reply)),
                Err(e) => self.notice(Level::Error, e),
            },
        }
        jobs
    }

    fn merge_groups(&mut self, list: Vec<GroupInfo>) -> Vec<Job> {
        for info in &list {
            match &info.private_with {
                Some(peer) => {
                    self.private_names
                        .insert(info.group, peer.display_name.clone());
                }
                None => {
                    self.private_names.remove(&info.group);
                }
            }
            let label = self.label(info.group);
            let peer_note = info
                .private_with
                .as_ref()
                .and_then(|peer| super::text::peer_note(peer, |group| self.label(group)));
            let g = self.ensure_group(info.group);
            g.label = label;
            g.peer_note = peer_note;
            g.member = info.member;
            // A group this device holds but is not in: it was removed, or left.
            g.removed = !info.member;
            g.invited = info.invited;
            g.waiting = info.waiting;
            g.refused = info.sync_refused.clone();
        }
        self.groups
            .sort_by_key(|g| (g.label.to_lowercase(), g.id.to_string()));
        match self.current {
            Some(_) => Vec::new(),
            None => match self.groups.iter().find(|g| g.member && !g.invited) {
                Some(first) => {
                    let id = first.id;
                    self.enter(id)
                }
                None => Vec::new(),
            },
        }
    }

    fn apply_status(&mut self, group: GroupId, status: Status) {
        let label = self.label(group);
        let clock = self.clock.clone();
        let Some(g) = self.group_mut(group) else {
            return;
        };
        let before = g.status.replace(status);
        let (Some(before), Some(after)) = (before, g.status.as_ref()) else {
            return;
        };
        let mut notices = Vec::new();
        let was_locked = before.locked || !before.open_now;
        let is_locked = after.locked || !after.open_now;
        if !was_locked && is_locked {
            notices.push((
                Level::Info,
                format!("{label} is locked now: only facilitators can post."),
            ));
        } else if was_locked && !is_locked {
            notices.push((Level::Info, format!("{label} is open again.")));
        }
        let live = |s: &Status| s.muted_until.filter(|u| *u > now());
        match (live(&before), live(after)) {
            (None, Some(until)) => notices.push((
                Level::Warning,
                format!(
                    "A facilitator muted you in {label} until {}. You can still read.",
                    clock.hhmm(until)
                ),
            )),
            (Some(_), None) => {
                notices.push((Level::Info, format!("You can post in {label} again.")))
            }
            _ => {}
        }
        for (level, text) in notices {
            self.notice(level, text);
        }
    }

    fn show_agreement(&mut self, group: GroupId, pinned: PinnedInfo, asked: bool) {
        let moderator = self.group_mut(group).is_some_and(|g| g.moderator());
        let label = self.label(group);
        match pinned.agreement {
            Some(a) if !a.accepted && !moderator => {
                if asked || (self.current == Some(group) && self.modal_replaceable(group)) {
                    self.modal = Some(Modal::Agreement {
                        group,
                        version: a.version,
                        text: Some(a.text.clone()),
                        shown: Some(a),
                        accepting: false,
                        scroll: 0,
                        since: Instant::now(),
                    });
                }
            }
            Some(a) => {
                if asked {
                    let note = if a.accepted {
                        "You have accepted this agreement."
                    } else {
                        "As a facilitator you can post without accepting it."
                    };
                    self.modal = Some(Modal::Info {
                        title: format!("Group agreement of {label} (version {})", a.version),
                        body: format!("{}\n\n{note}", a.text),
                        scroll: 0,
                    });
                }
            }
            None if pinned.agreement_version.is_some() => {
                if asked || (self.current == Some(group) && self.modal_replaceable(group)) {
                    self.modal = Some(Modal::Agreement {
                        group,
                        // Some: the match arm's guard.
                        version: pinned.agreement_version.unwrap_or_default(),
                        text: None,
                        shown: None,
                        accepting: false,
                        scroll: 0,
                        since: Instant::now(),
                    });
                }
            }
            None => {
                if asked {
                    self.modal = Some(Modal::Info {
                        title: "Group agreement".into(),
                        body: format!("{label} has no agreement pinned."),
                        scroll: 0,
                    });
                }
            }
        }
    }

    /// Whether an agreement window may be shown without hiding something else.
    fn modal_replaceable(&self, group: GroupId) -> bool {
        match &self.modal {
            None => true,
            Some(Modal::Agreement { group: g, .. }) => *g == group,
            Some(Modal::Info { .. }) => false,
        }
    }

    fn send_failed(
        &mut self,
        group: GroupId,
        text: Option<String>,
        failure: SendFailure,
    ) -> Vec<Job> {
        // Give the text back so nothing typed is lost.
        if let Some(text) = text
            && self.input.text.is_empty()
            && self.current == Some(group)
        {
            self.input.set(text);
        }
        self.notice(Level::Error, failure.text);
        let mut jobs: Vec<Job> = self.want_status(group).into_iter().collect();
        if failure.agreement_required {
            if let Some(g) = self.group_mut(group) {
                g.agreement_declined = None;
            }
            jobs.push(Job::Agreement { group, asked: true });
        }
        jobs
    }

    fn show_reply(&mut self, group: GroupId, reply: Reply) -> Vec<Job> {
        match reply {
            Reply::Notice(text) => {
                self.notice(Level::Info, text);
                // A command may have changed what the screen shows of the group (its status,
                // the round, hidden topics).
                let mut jobs: Vec<Job> = self.want_status(group).into_iter().collect();
                jobs.extend(self.want_work(group));
                jobs
            }
            Reply::Window { title, body } => {
                self.modal = Some(Modal::Info {
                    title,
                    body,
                    scroll: 0,
                });
                Vec::new()
            }
            Reply::Pinned(pinned) => {
                self.show_agreement(group, pinned, true);
                Vec::new()
            }
            Reply::Posted { notice, message } => {
                self.add_message(*message, false);
                self.notice(Level::Info, notice);
                self.want_work(group).into_iter().collect()
            }
            Reply::SafetyChecked { user, title, body } => {
                self.key_warnings.retain(|w| w.user != user);
                self.modal = Some(Modal::Info {
                    title,
                    body,
                    scroll: 0,
                });
                Vec::new()
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // Time
    // ---------------------------------------------------------------------------------------

    /// Called about once a second: mutes end and notices fade without any event.
    pub fn tick(&mut self) -> Vec<Job> {
        self.dirty = true;
        let t = now();
        // A meeting that ended, or a round whose time is up: the header shows the next.
        let stale: Vec<GroupId> = self
            .groups
            .iter()
            .filter(|g| {
                g.work.next_meeting.is_some_and(|m| m.ends_at <= t)
                    || g.work
                        .round
                        .as_ref()
                        .and_then(|r| r.closes_at)
                        .is_some_and(|c| c <= t)
            })
            .map(|g| g.id)
            .collect();
        let mut jobs: Vec<Job> = stale
            .into_iter()
            .filter_map(|g| self.want_work(g))
            .collect();
        let ended: Vec<GroupId> = self
            .groups
            .iter()
            .filter(|g| {
                g.status
                    .as_ref()
                    .and_then(|s| s.muted_until)
                    .is_some_and(|u| u <= t)
            })
            .map(|g| g.id)
            .collect();
        jobs.extend(ended.into_iter().filter_map(|g| self.want_status(g)));
        jobs
    }

    /// After a draw: fetch older messages when the reader reached the top of what is loaded.
    pub fn after_draw(&mut self) -> Vec<Job> {
        let Some(id) = self.current else {
            return Vec::new();
        };
        let Some(g) = self.group_mut(id) else {
            return Vec::new();
        };
        if !(g.at_top && g.history.loaded && g.history.more_before && !g.history.loading) {
            return Vec::new();
        }
        g.history.loading = true;
        vec![Job::History {
            group: id,
            before: g.messages.keys().next().copied(),
        }]
    }
}

/// The `/help` window's text.
fn help_text() -> String {
    let width = COMMANDS.iter().map(|(u, _)| u.len()).max().unwrap_or(0);
    let mut lines: Vec<String> = COMMANDS
        .iter()
        .map(|(usage, what)| format!("{usage:width$}  {what}"))
        .collect();
    lines.push(String::new());
    lines.push("Keys: Enter sends · ↑/↓ and PgUp/PgDn scroll · Esc jumps to the newest".into());
    lines.push("Tab or Ctrl-N / Ctrl-P switch groups · Ctrl-C quits".into());
    lines.push("Ctrl-R shows (or hides again) messages hidden by their content warning.".into());
    lines.push("Start a message with // to send one that begins with /.".into());
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;
    use confide_protocol::group_log::Role;
    use confide_protocol::{DeviceId, MessageId};

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn typed(app: &mut App, text: &str) -> Vec<Job> {
        for c in text.chars() {
            app.handle_key(key(KeyCode::Char(c)));
        }
        app.handle_key(key(KeyCode::Enter))
    }

    fn member_status(agreement_pending: Option<u32>) -> Status {
        {
            let mut v = Status::default();
            v.role = Some(Role::Member);
            v.muted_until = None;
            v.locked = false;
            v.open_now = true;
            v.slow_mode_seconds = 0;
            v.agreement_pending = agreement_pending;
            v
        }
    }

    fn app() -> (App, GroupId) {
        let group = GroupId([1; 16]);
        let labels = BTreeMap::from([(group, "support".to_string())]);
        let app = App::new(UserId([9; 16]), "Bob", Clock::utc(), labels, Some(group));
        (app, group)
    }

    fn message(group: GroupId, seq: u64, sender: UserId, text: &str) -> ChatMessage {
        {
            let mut v = ChatMessage::default();
            v.group = group;
            v.seq = Seq(seq);
            v.number = seq;
            v.id = MessageId([seq as u8; 16]);
            v.sender = sender;
            v.sender_device = DeviceId([0; 32]);
            v.sender_name = "Alice".into();
            v.sent_at = Timestamp(0);
            v.received_at = Timestamp(0);
            v.text = text.into();
            v.reply_to = None;
            v
        }
    }

    #[test]
    fn after_left_out_updates_the_open_group_is_read_again_at_the_next_sync() {
        let (mut app, group) = app();
        app.start();
        app.handle_outcome(Outcome::History {
            group,
            result: Ok(vec![message(group, 1, UserId([1; 16]), "hello")]),
        });
        app.handle_event(Event::EventsDropped { count: 40 });
        assert!(app.current_notice().unwrap().text.contains("40 updates"));
        let jobs = app.handle_event(Event::Synced);
        assert!(
            jobs.contains(&Job::History {
                group,
                before: None
            }),
            "{jobs:?}"
        );
    }

    #[test]
    fn being_added_to_a_group_is_accepted_from_the_chat_itself() {
        let (mut app, _) = app();
        let other = GroupId([2; 16]);
        app.handle_event(Event::Invited {
            group: other,
            by: UserId([1; 16]),
            by_name: "Alice".into(),
            private: true,
        });
        let notice = app.current_notice().unwrap().text.clone();
        assert!(
            notice.contains("/accept") && !notice.contains("confide accept"),
            "{notice}"
        );
        app.current = Some(other);
        let jobs = typed(&mut app, "/accept");
        assert_eq!(
            jobs,
            vec![Job::Command {
                group: other,
                command: Slash::AcceptGroup
            }]
        );
    }

    #[test]
    fn a_removed_member_is_not_asked_to_accept_the_agreement_and_is_told_plainly() {
        let (mut app, group) = app();
        app.start();
        app.handle_event(Event::Removed {
            group,
            at: Timestamp(0),
        });
        // Even a status that still names an agreement (an older client library) asks nothing.
        let jobs = app.handle_outcome(Outcome::Status {
            members: vec![],
            group,
            result: Ok({
                let mut v = member_status(Some(1));
                v.role = None;
                v
            }),
        });
        assert!(
            !jobs.iter().any(|j| matches!(j, Job::Agreement { .. })),
            "{jobs:?}"
        );
        assert!(app.modal.is_none());
        assert!(typed(&mut app, "hello?").is_empty());
        let notice = app.current_notice().unwrap().text.clone();
        assert!(notice.contains("no longer in support"), "{notice}");
        assert_eq!(app.input.text, "hello?");
    }

    #[test]
    fn a_notice_is_shown_where_it_happened_among_the_messages() {
        let (mut app, group) = app();
        app.start();
        let alice = UserId([1; 16]);
        app.handle_event(Event::Message(message(group, 1, alice, "before")));
        app.handle_event(Event::Message(message(group, 3, alice, "after")));
        app.handle_event(Event::Notice({
            let mut v = GroupNotice::default();
            v.group = group;
            v.op_seq = 4;
            v.index = 0;
            v.at = Timestamp(0);
            v.by = alice;
            v.by_name = "Alice".into();
            v.kind = confide_client::NoticeKind::Removed {
                user: UserId([2; 16]),
                name: "Mallory".into(),
                banned: false,
            };
            v.after_seq = Some(Seq(2));
            v
        }));
        let g = app.current_group().unwrap();
        assert_eq!(g.notices.len(), 1);
        let loaded: Vec<&ChatMessage> = g.messages.values().collect();
        let shown = crate::timeline::Shown {
            messages: &loaded,
            before: None,
            older_unknown: false,
            newest: true,
        };
        assert_eq!(crate::timeline::place(&g.notices[0], &shown), Some(1));
    }

    #[test]
    fn input_longer_than_one_message_is_refused_with_a_notice() {
        let (mut app, _) = app();
        let big = "x".repeat(MAX_INPUT_BYTES + 1);
        app.handle_terminal(TermEvent::Paste(big));
        assert!(app.input.text.is_empty());
        let notice = app.current_notice().unwrap();
        assert_eq!(notice.level, Level::Error);
        assert!(
            notice.text.contains("Too long for one message"),
            "{}",
            notice.text
        );
        // Up to the limit fits; one more typed character does not.
        app.handle_terminal(TermEvent::Paste("y".repeat(MAX_INPUT_BYTES)));
        assert_eq!(app.input.text.len(), MAX_INPUT_BYTES);
        app.handle_key(key(KeyCode::Char('z')));
        assert_eq!(app.input.text.len(), MAX_INPUT_BYTES);
    }

    #[test]
    fn a_pending_agreement_is_asked_before_the_first_message_is_sent() {
        let (mut app, group) = app();
        let jobs = app.start();
        assert!(jobs.contains(&Job::Status { group }));
        let jobs = app.handle_outcome(Outcome::Status {
            members: vec![],
            group,
            result: Ok(member_status(Some(1))),
        });
        assert_eq!(
            jobs,
            [Job::Agreement {
                group,
                asked: false
            }]
        );
        // Not now: the text typed afterwards is kept, and the question comes back.
        app.handle_outcome(Outcome::Agreement {
            group,
            asked: false,
            result: Ok({
                let mut v = PinnedInfo::default();
                v.agreement = Some({
                    let mut v = confide_client::AgreementInfo::default();
                    v.version = 1;
                    v.text = "Be kind.".into();
                    v.accepted = false;
                    v
                });
                v.agreement_version = Some(1);
                v.crisis_resources = None;
                v
            }),
        });
        assert!(matches!(app.modal, Some(Modal::Agreement { .. })));
        // A `y` typed ahead, before anyone could read it, does not accept it.
        assert!(app.handle_key(key(KeyCode::Char('y'))).is_empty());
        app.handle_key(key(KeyCode::Esc));
        assert!(app.modal.is_none());
        let jobs = typed(&mut app, "hello");
        assert_eq!(
            jobs,
            [Job::Agreement {
                group,
                asked: false
            }]
        );
        assert_eq!(app.input.text, "hello");
    }

    #[test]
    fn a_refused_message_comes_back_to_the_input_line_with_the_reason() {
        let (mut app, group) = app();
        app.start();
        let jobs = typed(&mut app, "hi there");
        let [Job::Send { local_id, .. }] = jobs.as_slice() else {
            panic!("{jobs:?}")
        };
        assert_eq!(app.current_group().unwrap().pending.len(), 1);
        app.handle_outcome(Outcome::Sent {
            group,
            local_id: *local_id,
            result: Err(SendFailure {
                text: "Not sent: slow mode.".into(),
                agreement_required: false,
                pending: false,
            }),
        });
        assert!(app.current_group().unwrap().pending.is_empty());
        assert_eq!(app.input.text, "hi there");
        assert_eq!(app.current_notice().unwrap().text, "Not sent: slow mode.");
    }

    #[test]
    fn messages_elsewhere_count_as_unread_and_duplicates_once() {
        let (mut app, group) = app();
        let other = GroupId([2; 16]);
        let alice = UserId([1; 16]);
        app.handle_event(Event::Message(message(other, 1, alice, "hi")));
        app.handle_event(Event::Message(message(other, 1, alice, "hi")));
        app.handle_event(Event::Message(message(group, 1, alice, "hey")));
        let unread = |app: &App, id| app.groups.iter().find(|g| g.id == id).unwrap().unread;
        assert_eq!((unread(&app, other), unread(&app, group)), (1, 0));
        let jobs = app.handle_key(key(KeyCode::Tab));
        assert_eq!(app.current, Some(other));
        assert!(jobs.contains(&Job::Status { group: other }));
        assert_eq!(unread(&app, other), 0);
    }

    #[test]
    fn a_report_names_the_reported_message_by_its_id_not_the_position_the_reporter_gave() {
        let (mut app, group) = app();
        app.start();
        let (bob, carol) = (UserId([2; 16]), UserId([3; 16]));
        let reported = message(group, 1, bob, "the reported text");
        app.handle_event(Event::Message(reported.clone()));
        app.handle_event(Event::Message(message(group, 2, bob, "something else")));
        // The reporter's device names the other message's position.
        app.handle_event(Event::Report({
            let mut v = confide_client::ReportInfo::default();
            v.group = group;
            v.seq = Seq(2);
            v.message = reported.id;
            v.offender = bob;
            v.offender_name = "Bob".into();
            v.reporter = carol;
            v.reporter_name = "Carol".into();
            v.text = reported.text.clone();
            v.reason = "unkind".into();
            v.reported_at = Timestamp(0);
            v
        }));
        let notice = app.current_notice().unwrap().text.clone();
        assert!(
            notice.contains("message #1 (⚠") && !notice.contains("#2"),
            "{notice}"
        );
    }

    #[test]
    fn a_key_change_warns_until_the_safety_number_is_checked() {
        let (mut app, group) = app();
        let alice = UserId([1; 16]);
        app.handle_event(Event::KeyChanged {
            group,
            user: alice,
            display_name: "Alice".into(),
        });
        assert_eq!(app.key_warnings.len(), 1);
        assert!(
            app.current_notice()
                .unwrap()
                .text
                .contains("/safety @Alice")
        );
        app.handle_outcome(Outcome::Reply {
            group,
            result: Ok(Reply::SafetyChecked {
                user: alice,
                title: "Safety number with Alice".into(),
                body: "12345".into(),
            }),
        });
        assert!(app.key_warnings.is_empty());
        assert!(matches!(app.modal, Some(Modal::Info { .. })));
    }

    #[test]
    fn this_device_being_unlinked_or_its_identity_misused_is_said() {
        let (mut app, _) = app();
        app.handle_event(Event::DeviceUnlinked {
            by: confide_protocol::DeviceId([7; 32]),
        });
        let said = app.current_notice().unwrap().text.clone();
        assert!(said.contains("This device was unlinked"), "{said}");
        let me = app.me;
        app.handle_event(Event::IdentityMisuse { user: me });
        let said = app.current_notice().unwrap().text.clone();
        assert!(said.contains("not one of yours"), "{said}");
    }

    #[test]
    fn commands_need_no_round_trip_to_be_understood() {
        let (mut app, group) = app();
        assert_eq!(
            typed(&mut app, "/lock"),
            [Job::Command {
                group,
                command: Slash::Lock(true)
            }]
        );
        assert!(typed(&mut app, "/mute @Bob soon").is_empty());
        assert_eq!(app.input.text, "/mute @Bob soon");
        assert_eq!(app.current_notice().unwrap().level, Level::Error);
        app.input.take();
        let jobs = typed(&mut app, "//shrug");
        assert!(
            matches!(jobs.as_slice(), [Job::Send { text, .. }] if text == "/shrug"),
            "{jobs:?}"
        );
        typed(&mut app, "/quit");
        assert!(app.quit);
    }
}
