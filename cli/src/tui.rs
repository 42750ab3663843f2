//! The interactive terminal chat (`confide chat [GROUP]`).
//!
//! One loop waits on three sources at once — keys from the terminal, [`Events`] from the
//! client, and a clock tick — and hands each to the [`app::App`] state machine, which answers
//! with [`jobs::Job`]s; each job runs on its own task and reports back on a fourth channel.
//! Nothing in the loop waits for the network, so typing, scrolling and switching groups stay
//! immediate while a large backlog is still being synced and decrypted.
//!
//! - [`app`]: the state and everything that changes it (keys, events, outcomes).
//! - [`view`]: drawing it with ratatui.
//! - [`jobs`]: the client calls, and errors as sentences for people.
//! - [`slash`]: parsing `/mute @Bob 30m` and the other commands.
//! - [`text`]: local times; wrapping and cleaning other people's text for the terminal are
//!   shared with the scripted commands ([`crate::text`]).
//!
//! The terminal is put back (raw mode off, main screen, cursor shown) when the chat ends,
//! however it ends: normally, by an error, or by a panic. Message text is only ever drawn on
//! the screen, never logged or printed.

mod app;
mod jobs;
mod slash;
pub(crate) mod text;
mod view;

use std::collections::BTreeMap;
use std::io::{Stdout, stdout};
use std::time::Duration;

use anyhow::Context as _;
use crossterm::event::{DisableBracketedPaste, EnableBracketedPaste};
use crossterm::terminal::{
    Clear, ClearType, EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use crossterm::{cursor, execute};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use tokio::sync::mpsc;
use tokio::time::Instant;

use confide_client::{Client, Events};
use confide_protocol::GroupId;

use app::App;
use jobs::Runner;
use text::Clock;

/// How often the clock ticks (mutes end, notices fade) when nothing else happens.
const TICK: Duration = Duration::from_secs(1);
/// The most frames drawn per second while events stream in; keys are drawn at once.
const FRAME: Duration = Duration::from_millis(33);
/// Client events handled per draw when a backlog arrives, so keys still get their turn.
const EVENT_BATCH: usize = 256;
/// How long the keyboard thread waits for a key before checking whether the chat ended.
const KEY_POLL: Duration = Duration::from_millis(100);

/// Runs the chat until the user quits, showing groups by their `labels`.
pub async fn run(
    labels: BTreeMap<GroupId, String>,
    client: Client,
    mut events: Events,
    group: Option<GroupId>,
) -> anyhow::Result<()> {
    let clock = Clock::system();
    let mut app = App::new(
        client.user(),
        client.display_name(),
        clock.clone(),
        labels,
        group,
    );
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let runner = Runner::new(client, done_tx, clock);

    let mut screen = Screen::enter().context("cannot start the terminal chat")?;
    let mut keys = spawn_keyboard();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // Draws follow keys at once, and events at most once a frame.
    let mut next_draw = Instant::now();
    let mut keyed = false;

    runner.start(app.start());
    loop {
        if app.dirty && (keyed || Instant::now() >= next_draw) {
            screen
                .terminal
                .draw(|f| view::draw(f, &mut app))
                .context("drawing the chat")?;
            app.dirty = false;
            keyed = false;
            next_draw = Instant::now() + FRAME;
            runner.start(app.after_draw());
        }
        let jobs = tokio::select! {
            key = keys.recv() => match key {
                Some(Ok(event)) => {
                    keyed = true;
                    app.handle_terminal(event)
                }
                Some(Err(e)) => return Err(e).context("reading the keyboard"),
                None => anyhow::bail!("the keyboard was closed"),
            },
            event = events.next() => match event {
                Some(event) => {
                    let mut jobs = app.handle_event(event);
                    for _ in 0..EVENT_BATCH {
                        let Some(event) = events.try_next() else { break };
                        jobs.extend(app.handle_event(event));
                    }
                    jobs
                }
                None => anyhow::bail!("the client stopped unexpectedly; start `confide chat` again"),
            },
            Some(outcome) = done_rx.recv() => app.handle_outcome(outcome),
            _ = tick.tick() => app.tick(),
            _ = tokio::time::sleep_until(next_draw), if app.dirty => Vec::new(),
        };
        runner.start(jobs);
        if app.quit {
            break;
        }
    }
    drop(screen);
    Ok(())
}

/// Reads the keyboard on its own thread (crossterm's reads block) and forwards every event;
/// the thread ends soon after the receiver is dropped.
fn spawn_keyboard() -> mpsc::UnboundedReceiver<std::io::Result<crossterm::event::Event>> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        loop {
            match crossterm::event::poll(KEY_POLL) {
                Ok(true) => {
                    let event = crossterm::event::read();
                    let failed = event.is_err();
                    if tx.send(event).is_err() || failed {
                        return;
                    }
                }
                Ok(false) => {
                    if tx.is_closed() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
    });
    rx
}

/// The terminal in chat mode: raw, on the alternate screen, pastes bracketed. Dropping it puts
/// the terminal back; a panic hook does the same before the panic message is printed.
struct Screen {
    /// The ratatui terminal drawing to stdout.
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Screen {
    fn enter() -> std::io::Result<Screen> {
        install_panic_hook();
        enable_raw_mode()?;
        // From here on, any failure must undo what was done: `Restore` does it on drop.
        let restore = Restore;
        execute!(
            stdout(),
            EnterAlternateScreen,
            EnableBracketedPaste,
            Clear(ClearType::All)
        )?;
        let terminal = Terminal::new(CrosstermBackend::new(stdout()))?;
        std::mem::forget(restore);
        Ok(Screen { terminal })
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// Restores the terminal when dropped (used while entering chat mode).
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// Leaves chat mode. Errors are ignored: there is nothing better to do while leaving.
fn restore_terminal() {
    let _ = disable_raw_mode();
    let _ = execute!(
        stdout(),
        DisableBracketedPaste,
        LeaveAlternateScreen,
        cursor::Show
    );
}

/// Makes a panic leave chat mode first, so its message is readable and the shell usable.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            previous(info);
        }));
    });
}
