//! The scripted subcommands: one function per command, printing a human line or, with
//! `--json`, one JSON value. Human output shows text from other people (and from the server)
//! only through [`crate::text`], so it cannot take over the terminal or forge a line; JSON
//! output carries the exact text.

use anyhow::{Context as _, anyhow, bail};
use serde_json::json;
use std::time::Duration;

use confide_client::{
    Client, ClientError, Events, InviteOptions, JoinOutcome, RemoveOptions, WarningCollector,
};
use confide_protocol::group_log::{GroupSettings, OpenHours, OpenWindow, Role};
use confide_protocol::{MessageId, Seq, Timestamp, UserId};

use crate::profile::{self, Profile, Settings};
use crate::text::{entry, line, one_line, quoted};
use crate::tui::text::{look_alike_mark, looks_like, name_with_note};
use crate::{
    AgreementCommand, Args, Command, CrisisCommand, DeviceCommand, EXIT_FAILURE, EXIT_KEPT,
    EXIT_NOT_MEMBER, EXIT_PROFILE, EXIT_PROFILE_IN_USE, EXIT_REFUSED, EXIT_UNREACHABLE,
    EXIT_WEB_MISMATCH, GroupCommand, InviteCommand, ModCommand, WebCommand,
};

/// How results are printed.
pub(crate) struct Out {
    pub(crate) json: bool,
    /// The terminal's width, to wrap other people's text (see [`crate::text::entry`]).
    pub(crate) columns: Option<usize>,
}

impl Out {
    /// Prints `human` for people or `value` for scripts.
    pub(crate) fn print(&self, human: impl std::fmt::Display, value: serde_json::Value) {
        if self.json {
            println!("{value}");
        } else {
            println!("{human}");
        }
    }
}

/// A failure already put in words for people, with its exit code.
#[derive(Debug)]
pub(crate) struct Said {
    /// What to print (already safe for a terminal).
    pub(crate) text: String,
    /// The exit code.
    pub(crate) exit: u8,
}

impl std::fmt::Display for Said {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for Said {}

/// The exit code for an error: refused by the server, profile or passphrase trouble,
/// unreachable server, not in the group, or anything else.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    if let Some(said) = e.downcast_ref::<Said>() {
        return said.exit;
    }
    match e.downcast_ref::<ClientError>() {
        Some(ClientError::Removed { .. } | ClientError::NotMember) => EXIT_NOT_MEMBER,
        Some(ClientError::Server { .. }) => EXIT_REFUSED,
        Some(ClientError::Store(confide_client::store::StoreError::InUse(_))) => {
            EXIT_PROFILE_IN_USE
        }
        Some(ClientError::Store(_)) => EXIT_PROFILE,
        Some(ClientError::Transport(_)) => EXIT_UNREACHABLE,
        Some(_) => EXIT_FAILURE,
        None if e.to_string().contains("no Confide profile") => EXIT_PROFILE,
        None => EXIT_FAILURE,
    }
}

/// Asks a yes/no question on the terminal (stderr), reading the answer from stdin.
fn confirm(question: &str) -> anyhow::Result<bool> {
    use std::io::Write as _;
    eprint!("{question}");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

/// Parses `45s`, `30m`, `2h`, `7d` (or plain seconds).
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number
        .parse()
        .with_context(|| format!("invalid duration {text:?}: use e.g. 30m, 2h, 7d"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => bail!("invalid duration {text:?}: use s, m, h or d"),
    };
    Ok(Duration::from_secs(secs))
}

/// Local time of day for a timestamp, HH:MM.
pub fn local_time(t: Timestamp) -> String {
    let Ok(ts) = jiff::Timestamp::from_millisecond(t.0 as i64) else {
        return "--:--".into();
    };
    ts.to_zoned_datetime(jiff::tz::TimeZone::system())
        .strftime("%Y-%m-%d %H:%M")
        .to_string()
}

/// `text` with every `N (unix ms)` (as servers write times) replaced by the local date and time,
/// e.g. "you are muted until 2026-05-01 18:30".
pub fn human_times(text: &str) -> String {
    const MARK: &str = " (unix ms)";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(MARK) {
        let before = &rest[..at];
        let digits = before.len() - before.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        match before[before.len() - digits..].parse::<u64>() {
            Ok(ms) if digits > 0 => {
                out.push_str(&before[..before.len() - digits]);
                out.push_str(&local_time(Timestamp(ms)));
            }
            _ => {
                out.push_str(before);
                out.push_str(MARK);
            }
        }
        rest = &rest[at + MARK.len()..];
    }
    out.push_str(rest);
    out
}

/// A moderation log entry's details for people: times as local dates, durations in words, no
/// JSON (`--json` keeps the exact values).
fn details_text(details: &serde_json::Value) -> String {
    let Some(fields) = details.as_object() else {
        return one_line(&details.to_string());
    };
    let seconds = |v: &serde_json::Value| match v.as_u64() {
        Some(0) => "off".to_string(),
        Some(s) if s % 86_400 == 0 => format!("{} d", s / 86_400),
        Some(s) if s % 3_600 == 0 => format!("{} h", s / 3_600),
        Some(s) if s % 60 == 0 => format!("{} min", s / 60),
        Some(s) => format!("{s} s"),
        None => one_line(&v.to_string()),
    };
    let time = |v: &serde_json::Value| {
        v.as_u64()
            .map_or_else(|| one_line(&v.to_string()), |t| local_time(Timestamp(t)))
    };
    let mut parts = Vec::new();
    for (key, value) in fields {
        parts.push(match (key.as_str(), value) {
            ("until", v) => format!("until {}", time(v)),
            ("expires_at", v) => format!("expires {}", time(v)),
            ("seconds", v) => seconds(v),
            ("ban", serde_json::Value::Bool(true)) => "and banned".into(),
            ("ban", serde_json::Value::Bool(false)) => continue,
            ("requires_approval", serde_json::Value::Bool(b)) => {
                (if *b { "needs approval" } else { "direct" }).into()
            }
            ("max_uses", v) => format!("{} uses", one_line(&v.to_string())),
            ("messages", v) => format!("{} messages", one_line(&v.to_string())),
            ("schedule", serde_json::Value::Null) => "cleared".into(),
            ("windows", serde_json::Value::Array(windows)) => windows
                .iter()
                .map(|w| match serde_json::from_value::<OpenWindow>(w.clone()) {
                    Ok(w) => window_text(&w),
                    Err(_) => one_line(&w.to_string()),
                })
                .collect::<Vec<_>>()
                .join("; "),
            (key, serde_json::Value::String(v)) => format!("{key} {}", one_line(v)),
            (key, serde_json::Value::Number(v)) => format!("{key} {v}"),
            (key, serde_json::Value::Bool(v)) => format!("{key} {}", if *v { "on" } else { "off" }),
            (key, serde_json::Value::Object(inner)) if !inner.is_empty() => format!(
                "{key}: {}",
                details_text(&serde_json::Value::Object(inner.clone()))
            ),
            (key, v) => format!("{key} {}", one_line(&v.to_string())),
        });
    }
    parts.join(", ")
}

/// `mon 18:00-20:00`, as `--window` takes it.
fn window_text(w: &OpenWindow) -> String {
    const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let hm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
    format!(
        "{} {}-{}",
        DAYS.get(usize::from(w.day)).unwrap_or(&"?"),
        hm(w.start_minute),
        hm(w.end_minute)
    )
}

/// `e` said plainly where the library's words need the group's name: "you were removed from
/// circle on 2026-05-01 18:30 (removed)" rather than "you were removed from this group".
fn in_words(e: anyhow::Error, profile: &Profile) -> anyhow::Error {
    match e.downcast_ref::<ClientError>() {
        Some(c @ ClientError::Removed { group, departure }) => {
            let label = profile
                .label_of(group)
                .map_or_else(|| group.to_string(), one_line);
            anyhow::Error::new(Said {
                text: format!("{} ({})", departure_line(&label, departure), c.code()),
                exit: EXIT_NOT_MEMBER,
            })
        }
        _ => e,
    }
}

/// After showing what this device has: fails, saying so, if the sync at start could not ask
/// the server for everything new (refused, or unreachable), so that a script never takes
/// possibly stale output for current.
pub(crate) fn fresh(synced: Result<(), ClientError>) -> anyhow::Result<()> {
    synced.map_err(|e| {
        anyhow::Error::from(e).context(
            "this is what this device already had; it may be out of date because the server \
             could not be asked for what is new",
        )
    })
}

/// "you were removed from circle on 2026-05-01 18:30" for a group this device is no longer in.
fn departure_line(label: &str, d: &confide_client::Departure) -> String {
    let when = local_time(d.at);
    match (d.left, d.banned) {
        (true, _) => format!("you left {label} on {when}"),
        (false, true) => format!("you were removed and banned from {label} on {when}"),
        (false, false) => format!("you were removed from {label} on {when}"),
    }
}

/// An invite of `group` by its id or a unique beginning of it.
async fn find_invite(
    client: &Client,
    group: confide_protocol::GroupId,
    text: &str,
) -> anyhow::Result<confide_client::InviteInfo> {
    let text = text.trim();
    let invites = client.invites(group).await?;
    let found: Vec<_> = invites
        .into_iter()
        .filter(|i| !text.is_empty() && i.id.to_string().starts_with(text))
        .collect();
    match <[_; 1]>::try_from(found) {
        Ok([one]) => Ok(one),
        Err(found) if found.is_empty() => {
            bail!("no invite of this group starts with {text:?} (see `confide invite list`)")
        }
        Err(_) => bail!("several invites start with {text:?}: give more of the id"),
    }
}

/// This computer's time in unix milliseconds.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Whether an invite can still be used now, and if not why.
fn invite_state(i: &confide_client::InviteInfo) -> &'static str {
    if i.revoked {
        "revoked"
    } else if i.uses >= i.max_uses {
        "used up"
    } else if now_ms() > i.expires_at.0 {
        "expired"
    } else {
        "active"
    }
}

fn parse_role(text: &str) -> anyhow::Result<Role> {
    match text.to_ascii_lowercase().replace('_', "-").as_str() {
        "facilitator" => Ok(Role::Facilitator),
        "co-facilitator" | "cofacilitator" => Ok(Role::CoFacilitator),
        "member" => Ok(Role::Member),
        _ => bail!("unknown role {text:?}: facilitator, co-facilitator or member"),
    }
}

/// Parses `mon 18:00-20:00`.
fn parse_window(text: &str) -> anyhow::Result<OpenWindow> {
    let days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let mut parts = text.split_whitespace();
    let (Some(day), Some(range)) = (parts.next(), parts.next()) else {
        bail!("a window looks like \"mon 18:00-20:00\", got {text:?}");
    };
    let day = days
        .iter()
        .position(|d| day.to_ascii_lowercase().starts_with(d))
        .ok_or_else(|| anyhow!("unknown day {day:?}"))? as u8;
    let (start, end) = range
        .split_once('-')
        .ok_or_else(|| anyhow!("a window's times look like 18:00-20:00"))?;
    let minutes = |t: &str| -> anyhow::Result<u16> {
        let (h, m) = t
            .split_once(':')
            .ok_or_else(|| anyhow!("a time looks like 18:00, got {t:?}"))?;
        Ok(h.parse::<u16>()? * 60 + m.parse::<u16>()?)
    };
    Ok(OpenWindow {
        day,
        start_minute: minutes(start)?,
        end_minute: minutes(end)?,
    })
}

fn parse_message_id(text: &str) -> anyhow::Result<MessageId> {
    profile::parse_id(text)
        .map(MessageId)
        .ok_or_else(|| anyhow!("invalid message id {text:?}"))
}

/// A number as `confide read` shows it, `#5` or `5`; `None` if `text` is not one.
fn parse_number(text: &str) -> Option<u64> {
    let text = text.trim();
    text.strip_prefix('#').unwrap_or(text).parse().ok()
}

/// The message `confide read` showed as `number` in `group`. Numbers are this device's own and
/// never change ([`confide_client::ChatMessage::number`]), so the number names what the person
/// saw, whatever arrived since; one whose message was deleted (or expired) says so.
async fn numbered_message(
    client: &Client,
    group: confide_protocol::GroupId,
    number: u64,
) -> anyhow::Result<confide_client::ChatMessage> {
    let Some(seq) = client.seq_of_number(group, number).await? else {
        bail!("no message #{number} on this device in this group (see `confide read`)");
    };
    let message = client
        .history(group, Some(Seq(seq.0.saturating_add(1))), 1)
        .await?
        .into_iter()
        .find(|m| m.seq == seq)
        .ok_or_else(|| anyhow!("message #{number} was deleted (or expired) already"))?;
    // The message at that position must be the one read showed as this number: anything else
    // would make a command act on another message than the one the person named.
    if message.number != number {
        bail!(
            "message #{number} is not where this device recorded it (it now finds #{} there):              nothing was done; see `confide read`",
            message.number
        );
    }
    Ok(message)
}

/// How many characters of a message `mod delete` shows, to say which message it deletes.
const DELETE_PREVIEW_CHARS: usize = 40;

/// "#3 Bob, 2026-05-01 18:30: “first words…”": which message a command acts on, for people
/// (the name and the text made safe for a terminal, the text cut short).
fn message_summary(m: &confide_client::ChatMessage) -> String {
    if m.hidden {
        // A message the person hides stays hidden here too (PROTOCOL.md §6.9).
        return format!(
            "#{} {}, {}: [content warning — hidden]",
            m.number,
            one_line(&m.sender_name),
            local_time(m.sent_at)
        );
    }
    let text = one_line(&m.text);
    let mut words: String = text.chars().take(DELETE_PREVIEW_CHARS).collect();
    if text.chars().count() > DELETE_PREVIEW_CHARS {
        words.push('…');
    }
    format!(
        "#{} {}, {}: “{words}”",
        m.number,
        one_line(&m.sender_name),
        local_time(m.sent_at)
    )
}

/// A message of `group` by the number `confide read` shows (`#5` or `5`) or by its id.
pub(crate) async fn message_id(
    client: &Client,
    group: confide_protocol::GroupId,
    text: &str,
) -> anyhow::Result<MessageId> {
    let text = text.trim();
    match parse_number(text) {
        Some(number) => Ok(numbered_message(client, group, number).await?.id),
        None => parse_message_id(text).map_err(|_| {
            anyhow!("{text:?} is neither a message number (#5, as `confide read` shows) nor a message id")
        }),
    }
}

/// Which message a report is about, as this device shows it: "#5", found by the reported
/// message's id (which franking proves), never by the position the reporter's client names
/// (which it does not); with a warning when that position is not where this device has it.
async fn report_place(client: &Client, r: &confide_client::ReportInfo) -> anyhow::Result<String> {
    Ok(match client.message_place(r.group, r.message).await? {
        Some(place) => {
            let which = place.number.map_or_else(
                || "a message not shown on this device".to_string(),
                |n| format!("#{n}"),
            );
            if place.seq == r.seq {
                which
            } else {
                format!(
                    "{which}; ⚠ the reporter's device named another position for it, so go by \
                     the text below"
                )
            }
        }
        None => "a message not on this device".into(),
    })
}

/// The name of a group for people: the label the user gave it, "private: Alice" for a private
/// conversation, else its id.
fn group_name(profile: &Profile, g: &confide_client::GroupInfo) -> String {
    match (profile.label_of(&g.group), &g.private_with) {
        (Some(label), _) => one_line(label),
        (None, Some(peer)) => format!("private: {}", one_line(&peer.display_name)),
        (None, None) => g.group.to_string(),
    }
}

/// Opens the profile: returns it, the client and its events, and the passphrase that opened
/// it (for a command that asks for it again, `device unlink`).
async fn open(
    args: &Args,
) -> anyhow::Result<(Profile, Client, Events, profile::zeroize_string::Secret)> {
    let dir = Profile::locate(args.profile.as_deref());
    let mut profile = Profile::load(&dir)?;
    let passphrase = profile::passphrase(false, &[])?;
    let (client, events) = profile.open(passphrase.bytes()).await.map_err(|e| match e
        .downcast_ref::<ClientError>()
    {
        _ if crate::devices::was_unlinked(&e) => crate::devices::unlinked_error(&dir),
        Some(ClientError::Store(confide_client::store::StoreError::InUse(_))) => {
            e.context(format!(
                "this profile ({}) is open in another confide process (the chat?): close \
                     it, or do this from the chat (/help lists its commands), then try again",
                dir.display()
            ))
        }
        _ => e,
    })?;
    Ok((profile, client, events, passphrase))
}

/// `confide web verify`: the server and pin are the profile's unless given (the profile's pin
/// only for the profile's own server); prints the differences and the verdict.
async fn web_verify(
    args: &Args,
    out: &Out,
    server: Option<&str>,
    pin: Option<&str>,
    expect: &Option<String>,
    against: &Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    use crate::web::{Expected, Origin};
    let expected = match (expect, against) {
        (Some(hash), _) => Expected::hash(hash)?,
        (None, Some(dir)) => Expected::build(dir)?,
        (None, None) => bail!("give --expect <release hash> or --against <build directory>"),
    };
    let dir = Profile::locate(args.profile.as_deref());
    let settings = if Profile::exists(&dir) {
        Some(Profile::load(&dir)?.settings)
    } else {
        None
    };
    let origin = match (server, &settings) {
        (Some(server), _) => Origin::parse(server)?,
        (None, Some(settings)) => Origin::parse(&settings.server)?,
        (None, None) => bail!(
            "no Confide profile in {} to take the server from: give --server wss://host:port",
            dir.display()
        ),
    };
    let profile_pin = settings
        .as_ref()
        .filter(|s| Origin::parse(&s.server).is_ok_and(|o| o == origin))
        .and_then(|s| s.pin.clone());
    let trust = match pin.map(str::to_string).or(profile_pin) {
        Some(pin) => confide_client::ServerTrust::Pinned(confide_client::tls::normalize_pin(&pin)?),
        None => confide_client::ServerTrust::SystemRoots,
    };
    let report = crate::web::verify(origin, &trust, &expected)
        .await
        .map_err(|e| match e.downcast::<crate::web::Unreachable>() {
            Ok(unreachable) => anyhow::Error::new(Said {
                text: unreachable.0,
                exit: EXIT_UNREACHABLE,
            }),
            Err(e) => e,
        })?;
    if !out.json {
        for problem in &report.problems {
            println!("{}", problem.line());
        }
        if report.served.is_some() {
            println!("{}", report.connects_to());
        }
    }
    if report.serves_release() {
        out.print(report.verdict(), report.json());
        return Ok(());
    }
    if out.json {
        println!("{}", report.json());
    }
    Err(anyhow::Error::new(Said {
        text: report.verdict(),
        exit: EXIT_WEB_MISMATCH,
    }))
}

/// Runs one command.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let out = Out {
        json: args.json,
        columns: Some(crate::text::terminal_width()),
    };
    match &args.command {
        Command::Init {
            server,
            pin,
            name,
            token,
        } => {
            let dir = Profile::locate(args.profile.as_deref());
            let pin = pin
                .as_deref()
                .map(confide_client::tls::normalize_pin)
                .transpose()?;
            let settings = Settings::new(server.clone(), pin);
            // All or nothing: everything that can fail before registering is asked first, and
            // nothing is written until it has.
            Profile::check_new(&dir)?;
            let passphrase = profile::passphrase(true, &[name.as_str(), "confide"])?;
            let (profile, created) = Profile::create(&dir, settings)?;
            let mut config = profile.client_config();
            config.registration_token = token.clone();
            if std::env::var_os("CONFIDE_INSECURE_FAST_KDF").is_some() {
                // For tests only: a weak key derivation so test suites stay fast.
                config.kdf = confide_protocol::identity::KdfParams::INSECURE_FOR_TESTS;
            }
            // `register` closes the store before it reports a failure, and succeeds once the
            // server has registered the identity: a failure here means nothing is registered,
            // and what this init made can go.
            // Nothing here reads events: the `Events` is dropped at once, so the client discards
            // them rather than holding back once its queue is full.
            let (client, _) = match Client::register(config, name, passphrase.bytes()).await {
                Ok(registered) => registered,
                Err(e) => {
                    let left = created.undo();
                    let e = anyhow::Error::from(e);
                    return Err(if left.is_empty() {
                        e.context("nothing was created; run `confide init` again")
                    } else {
                        e.context(format!(
                            "not registered; these could not be removed: {}",
                            left.join(", ")
                        ))
                    });
                }
            };
            out.print(
                format!(
                    "Welcome, {}. Your profile is in {}.\nuser id: {}",
                    one_line(name),
                    dir.display(),
                    client.user()
                ),
                json!({ "user": client.user(), "device": client.device(), "profile": dir }),
            );
            client.shutdown().await;
        }
        Command::Ping { server, pin } => {
            let trust = confide_client::ServerTrust::Pinned(pin.clone());
            let mut conn = confide_client::Connection::connect(server, &trust)
                .await
                .map_err(ClientError::from)?;
            let frame = conn.recv().await.map_err(ClientError::from)?;
            let confide_protocol::frames::ServerFrame::Challenge {
                version,
                server_name,
                ..
            } = frame
            else {
                bail!("unexpected first frame: {}", frame.type_name());
            };
            out.print(
                format!(
                    "connected to {} (protocol version {version}); certificate pin matches",
                    one_line(&server_name)
                ),
                json!({ "server_name": server_name, "version": version }),
            );
            conn.close().await;
        }
        Command::Web(WebCommand::Verify {
            server,
            pin,
            expect,
            against,
        }) => {
            web_verify(
                &args,
                &out,
                server.as_deref(),
                pin.as_deref(),
                expect,
                against,
            )
            .await?;
        }
        Command::Completions { .. } => {}
        Command::Device(DeviceCommand::Link { server, pin }) => {
            crate::devices::link_new(&args, &out, server, pin.as_deref()).await?;
        }
        command => {
            let (mut profile, client, events, passphrase) = open(&args).await?;
            // The chat shows events as they come. Any other command reads them while it
            // runs, keeping only the warnings to tell afterwards: a catch-up longer than the
            // client's event queue must not stall waiting for a reader.
            let (mut events, collector) = if matches!(command, Command::Chat { .. }) {
                (Some(events), None)
            } else {
                (None, Some(WarningCollector::start(events)))
            };
            let result = match command {
                Command::Device(device) => {
                    crate::devices::run(device, &out, &client, &passphrase).await
                }
                command => run_with_client(command, &out, &mut profile, &client, &mut events).await,
            };
            client.shutdown().await;
            let mut unlinked = false;
            if let Some(collector) = collector {
                let events = collector.finish().await;
                unlinked = events
                    .iter()
                    .any(|e| matches!(e, confide_client::Event::DeviceUnlinked { .. }));
                for line in warning_lines(events, &profile) {
                    eprintln!("{line}");
                }
            }
            // The server closes an unlinked device's connection once it has sent the list
            // without it; the client then deletes this device's keys (an event the collector
            // does not keep): whether it did is seen in the store.
            if !unlinked
                && result.as_ref().is_err_and(|e| {
                    crate::devices::connection_lost(e) || crate::devices::server_says_unlinked(e)
                })
            {
                unlinked = crate::devices::keys_gone(&profile, &passphrase).await;
            }
            drop(passphrase);
            if unlinked {
                return Err(crate::devices::unlinked_error(&profile.dir));
            }
            result.map_err(|e| {
                if crate::devices::was_unlinked(&e) {
                    crate::devices::unlinked_error(&profile.dir)
                } else if crate::devices::server_says_unlinked(&e) {
                    e.context(crate::devices::UNLINKED_UNVERIFIED)
                } else {
                    in_words(e, &profile)
                }
            })?;
        }
    }
    Ok(())
}

/// What the client noticed while a scripted command ran and must not go unseen — a member's
/// keys changed, refused ops, a log that is behind, messages out of order or refused, this
/// device removed, and that some of it may not have been kept — one line each, for standard
/// error.
fn warning_lines(events: Vec<confide_client::Event>, profile: &Profile) -> Vec<String> {
    use confide_client::Event;
    let label = |group: &confide_protocol::GroupId| {
        profile
            .label_of(group)
            .map_or_else(|| group.to_string(), crate::text::one_line)
    };
    let mut lines = Vec::new();
    for event in events {
        let line = match event {
            Event::KeyChanged {
                group,
                display_name,
                ..
            } => format!(
                "warning: {}'s keys changed in {}: compare safety numbers (`confide \
                 safety-number {} <them>`) before you trust what they send",
                crate::text::one_line(&display_name),
                label(&group),
                label(&group)
            ),
            Event::Removed { group, .. } => {
                format!("warning: this device is no longer in {}", label(&group))
            }
            Event::IdentityMisuse { user } => {
                format!("{} (user {user})", crate::devices::IDENTITY_MISUSE)
            }
            Event::PostQuantumKeyRefused { code, .. } if code == "relink_needed" => {
                "warning: your device list names another post-quantum key for this device than \
                 it holds (its store is from before an update): link this device again from \
                 another of your devices"
                    .to_string()
            }
            Event::PostQuantumKeyRefused { code, .. } => format!(
                "warning: the server refused this device's post-quantum key ({code}): until it \
                 takes it, others seal to this device without post-quantum protection; it is \
                 tried again when your devices change and at each connection"
            ),
            Event::EventsDropped { count } => format!(
                "warning: {count} update(s) were not shown, and warnings (such as a member's \
                 keys changing) may be among them. Nothing is lost (it is stored): check \
                 `confide group list`, the history of your groups, and compare safety numbers \
                 (`confide safety-number`) with the people you talk to"
            ),
            Event::GroupRejected(r) => format!(
                "warning: the server sent {} a change that failed verification; it was refused and the group stays as last verified ({})",
                label(&r.group),
                crate::text::one_line(&r.reason)
            ),
            Event::GroupBehind { group, .. } => format!(
                "warning: others in {} are past a membership change this device has not been shown; your messages to it are held until it catches up",
                label(&group)
            ),
            Event::OrderWarning(r) => format!(
                "warning: messages in {} may be out of order: {}",
                label(&r.group),
                crate::text::one_line(&r.reason)
            ),
            Event::SyncRefused { group, reason } => format!(
                "warning: the server refuses to serve {} ({}); this is said once, and later syncs \
                 go on without it",
                label(&group),
                crate::text::one_line(&reason)
            ),
            Event::MessageRejected(r) => format!(
                "warning: message #{} in {} failed verification and is not shown ({})",
                r.seq,
                label(&r.group),
                crate::text::one_line(&r.reason)
            ),
            Event::HeldNeedsConfirm {
                group,
                id,
                added,
                epoch,
            } => held_waits_line(
                &label(&group),
                &format!("{}@{epoch}", id.to_hex()),
                &added
                    .iter()
                    .map(|a| a.display_name.as_str())
                    .collect::<Vec<_>>(),
            ),
            _ => continue,
        };
        lines.push(line);
    }
    lines
}

/// "a message you wrote to circle is not sent: Eve joined after you wrote it": a held message
/// that waits for the person ([`confide_client::Event::HeldNeedsConfirm`]), with what to run.
fn held_waits_line(group: &str, id: &str, added: &[&str]) -> String {
    let who = if added.is_empty() {
        "the group changed".to_string()
    } else {
        let names: Vec<String> = added.iter().map(|n| one_line(n)).collect();
        format!("{} joined", names.join(", "))
    };
    format!(
        "a message you wrote to {group} is not sent: {who} after you wrote it. Send it to \
         everyone now with `confide held {group} --send {id}`, or `--discard {id}`"
    )
}

/// "the server refuses to serve circle since 2026-05-01 18:30 (no_such_group)": a lasting
/// refusal of a group's sync, said wherever the group is shown.
fn refusal_line(name: &str, r: &confide_client::SyncRefusal) -> String {
    let since = r
        .since
        .map(|t| format!(" since {}", local_time(t)))
        .unwrap_or_default();
    format!(
        "the server refuses to serve {name}{since} ({}): nothing new arrives from it",
        one_line(&r.code)
    )
}

/// For an invitation to a private conversation, whether its other person is someone from
/// the user's groups: "⚠ looks like Alice (circle)" or "not in any of your groups".
fn private_note(profile: &Profile, g: &confide_client::GroupInfo) -> Option<String> {
    let peer = g.private_with.as_ref()?;
    crate::tui::text::peer_note(peer, |group| {
        profile
            .label_of(&group)
            .map_or_else(|| group.to_string(), one_line)
    })
}

/// "1 message waiting", "3 messages waiting", "no messages yet".
fn waiting_text(waiting: usize) -> String {
    match waiting {
        0 => "no messages yet".into(),
        1 => "1 message waiting".into(),
        n => format!("{n} messages waiting"),
    }
}

fn group_json(
    profile: &Profile,
    g: &confide_client::GroupInfo,
    departure: Option<&confide_client::Departure>,
) -> serde_json::Value {
    json!({
        "group": g.group,
        "label": profile.label_of(&g.group),
        "private_with": g.private_with.as_ref().map(|p| json!({ "user": p.user, "name": p.display_name })),
        "invited": g.invited,
        "waiting": g.waiting,
        "unread": g.unread,
        "member": g.member,
        "role": g.role,
        "members": g.members,
        "epoch": g.epoch,
        "post_quantum": g.post_quantum,
        "tampered": g.tampered,
        "sync_refused": g.sync_refused.as_ref().map(|r| json!({ "code": r.code, "since": r.since })),
        "departure": departure,
    })
}

async fn run_with_client(
    command: &Command,
    out: &Out,
    profile: &mut Profile,
    client: &Client,
    events: &mut Option<Events>,
) -> anyhow::Result<()> {
    match command {
        Command::Whoami => {
            out.print(
                format!("{} (user {}, device {})\nserver: {}", one_line(client.display_name()), client.user(), client.device().short(), profile.settings.server),
                json!({ "name": client.display_name(), "user": client.user(), "device": client.device(), "server": profile.settings.server }),
            );
        }
        Command::SafetyNumber { group, user } => {
            let group = profile.group(group)?;
            let user = profile::user(client, group, user).await?;
            let number = client.safety_number(user).await?;
            out.print(
                format!("Safety number (compare it in person or by phone):\n{number}"),
                json!({ "safety_number": number }),
            );
        }
        Command::Sync => {
            // The sync every command starts with is the one asked for: its outcome is waited
            // for, not a second one run.
            client.synced().await?;
            out.print("synced", json!({ "synced": true }));
        }
        Command::Group(GroupCommand::Create { label }) => {
            let group = client.create_group().await?;
            if let Some(label) = label {
                profile.set_label(client, group, label).await?;
            }
            out.print(
                format!(
                    "created group {group}{}",
                    label
                        .as_deref()
                        .map(|l| format!(" ({})", one_line(l)))
                        .unwrap_or_default()
                ),
                json!({ "group": group, "label": label }),
            );
        }
        Command::Group(GroupCommand::List) => {
            let synced = client.synced().await;
            let groups = client.groups().await?;
            let mut departures = Vec::new();
            for g in &groups {
                departures.push(if g.member {
                    None
                } else {
                    client.departure(g.group).await?
                });
            }
            if out.json {
                println!(
                    "{}",
                    serde_json::Value::Array(
                        groups
                            .iter()
                            .zip(&departures)
                            .map(|(g, d)| group_json(profile, g, d.as_ref()))
                            .collect()
                    )
                );
            } else {
                for (g, departure) in groups.iter().zip(&departures) {
                    let name = group_name(profile, g);
                    if let Some(d) = departure {
                        let shown = format!("{name:<16} {}  {}", g.group, departure_line(&name, d));
                        println!("{}", line(&shown, out.columns));
                        continue;
                    }
                    let role = match (g.invited, g.role) {
                        (true, _) => "invited".to_string(),
                        (false, Some(r)) => r.as_str().to_string(),
                        (false, None) => "not a member".into(),
                    };
                    let mut warn = g
                        .tampered
                        .as_deref()
                        .map(|t| format!("  ⚠ {}", one_line(t)))
                        .unwrap_or_default();
                    if let Some(r) = &g.sync_refused {
                        warn.push_str(&format!("  ⚠ {}", refusal_line("it", r)));
                    }
                    let waiting = if g.invited {
                        format!(
                            "{}  {}: accept with `confide accept {}`",
                            private_note(profile, g)
                                .map(|n| format!("  {n}"))
                                .unwrap_or_default(),
                            waiting_text(g.waiting),
                            g.group
                        )
                    } else {
                        String::new()
                    };
                    let unread = if g.unread > 0 {
                        format!("  {} new", g.unread)
                    } else {
                        String::new()
                    };
                    // Said only when it is not: a device in the group has not moved to
                    // version 2 yet, so its sender keys are sealed with X25519 alone.
                    let classic = if g.member && !g.post_quantum {
                        "  not yet post-quantum"
                    } else {
                        ""
                    };
                    let shown = format!(
                        "{name:<16} {}  {role:<14} {} members{unread}{classic}{warn}{waiting}",
                        g.group, g.members
                    );
                    println!("{}", line(&shown, out.columns));
                }
            }
            fresh(synced)?;
        }
        Command::Group(GroupCommand::Rekey { group }) => {
            let id = profile.group(group)?;
            client.rekey(id).await?;
            out.print("the group's keys were renewed", json!({ "rekeyed": id }));
        }
        Command::Group(GroupCommand::Label { group, label }) => {
            let id = profile.group(group)?;
            profile.set_label(client, id, label).await?;
            out.print(
                format!("{id} is now labelled {}", one_line(label)),
                json!({ "group": id, "label": label }),
            );
        }
        Command::Members { group } => {
            let group = profile.group(group)?;
            let synced = client.synced().await;
            let members = client.members(group).await?;
            if out.json {
                let list: Vec<_> = members
                    .iter()
                    .map(|m| json!({ "user": m.user, "name": m.display_name, "role": m.role, "muted_until": m.muted_until, "looks_like": m.looks_like }))
                    .collect();
                println!("{}", serde_json::Value::Array(list));
            } else {
                for m in &members {
                    let muted = m
                        .muted_until
                        .map(|t| format!("  (muted until {})", local_time(t)))
                        .unwrap_or_default();
                    let shown = format!(
                        "{:<20} {:<14} {}{muted}{}",
                        one_line(&m.display_name),
                        m.role.as_str(),
                        m.user,
                        crate::tui::text::look_alike_note(&m.looks_like)
                    );
                    println!("{}", line(&shown, out.columns));
                }
            }
            fresh(synced)?;
        }
        Command::Invite(InviteCommand::Create {
            group,
            approval,
            uses,
            valid,
        }) => {
            let group = profile.group(group)?;
            let invite = client
                .create_invite(
                    group,
                    InviteOptions::new()
                        .requires_approval(*approval)
                        .max_uses(*uses)
                        .valid_for(parse_duration(valid)?),
                )
                .await?;
            let link = invite.to_link();
            // The same invite as a link that opens the server's web app, for people without
            // the CLI (the server serves the app on its own address).
            let web_link = invite.to_web_link(&profile.settings.server);
            let browser = web_link
                .as_deref()
                .map(|web| format!("\nor, to open in a browser:\n{web}"))
                .unwrap_or_default();
            out.print(
                format!(
                    "Share this link privately (whoever has it can {}):\n{link}{browser}",
                    if *approval { "ask to join" } else { "join" }
                ),
                json!({
                    "link": link,
                    "web_link": web_link,
                    "requires_approval": approval,
                    "uses": uses,
                }),
            );
        }
        Command::Invite(InviteCommand::List { group }) => {
            let group = profile.group(group)?;
            let invites = client.invites(group).await?;
            if out.json {
                let list: Vec<_> = invites
                    .iter()
                    .map(|i| json!({ "invite": i, "state": invite_state(i) }))
                    .collect();
                println!("{}", serde_json::Value::Array(list));
            } else if invites.is_empty() {
                println!("this group has no invites");
            } else {
                for i in &invites {
                    let by = one_line(i.created_by_name.as_deref().unwrap_or("?"));
                    let joined: Vec<String> = i.joined.iter().map(|(_, n)| one_line(n)).collect();
                    let shown = format!(
                        "{}  {:<8} {}/{} used  {}  by {by} {}  expires {}{}",
                        i.id,
                        invite_state(i),
                        i.uses,
                        i.max_uses,
                        if i.requires_approval {
                            "approval"
                        } else {
                            "direct  "
                        },
                        local_time(i.created_at),
                        local_time(i.expires_at),
                        if joined.is_empty() {
                            String::new()
                        } else {
                            format!("  joined: {}", joined.join(", "))
                        }
                    );
                    println!("{}", line(&shown, out.columns));
                }
            }
        }
        Command::Invite(InviteCommand::Revoke { group, invite }) => {
            let group = profile.group(group)?;
            let found = find_invite(client, group, invite).await?;
            if found.revoked {
                bail!("invite {} is already revoked", found.id);
            }
            client.revoke_invite(group, found.id).await?;
            out.print(
                format!(
                    "revoked invite {}: nobody can join with it any more",
                    found.id
                ),
                json!({ "revoked": found.id }),
            );
        }
        Command::Join { link, note, label } => {
            let invite = confide_client::Invite::from_link(link)?;
            let outcome = client.join(&invite, note.clone()).await?;
            if let Some(label) = label {
                profile.set_label(client, invite.group, label).await?;
            }
            match outcome {
                JoinOutcome::Joined(g) => out.print(format!("joined {g}"), json!({ "joined": g })),
                JoinOutcome::Pending(g) => out.print(
                    format!("asked to join {g}; a facilitator will review your request"),
                    json!({ "pending": g }),
                ),
                // An outcome a newer library knows: said as it is.
                other => out.print(
                    format!("join: {other:?}"),
                    json!({ "outcome": format!("{other:?}") }),
                ),
            }
        }
        Command::Accept { group, label } => {
            let id = profile.group(group)?;
            client.accept_group(id).await?;
            if let Some(label) = label {
                profile.set_label(client, id, label).await?;
            }
            out.print(format!("accepted {id}"), json!({ "accepted": id }));
        }
        Command::Leave { group } => {
            let group = profile.group(group)?;
            client.leave(group).await?;
            out.print("left the group", json!({ "left": group }));
        }
        Command::Send {
            group,
            text,
            reply_to,
            warn,
        } => {
            let group = profile.group(group)?;
            let reply_to = match reply_to {
                Some(m) => Some(message_id(client, group, m).await?),
                None => None,
            };
            let sent = if warn.is_empty() {
                client.send_text(group, text, reply_to).await
            } else {
                client
                    .send_text_with_warnings(group, text, reply_to, warn.clone())
                    .await
            };
            match sent {
                Ok(m) => out.print(
                    format!("sent #{} ({})", m.number, m.id),
                    json!({ "sent": true, "number": m.number, "seq": m.seq, "id": m.id }),
                ),
                // Kept (encrypted) on this device: the next command that reaches the server,
                // or the chat, sends it. Not sent yet, so not a success (exit 1).
                Err(e @ (ClientError::Held | ClientError::Pending)) => {
                    // A message that waits for the person (people joined since it was written)
                    // keeps this one behind it: say so, and how to settle it.
                    let waits_for_you = matches!(e, ClientError::Held)
                        && client
                            .held(group)
                            .await
                            .is_ok_and(|held| held.iter().any(|m| m.needs_confirm));
                    let why = match e {
                        ClientError::Held if waits_for_you => {
                            "a message you wrote to this group waits for you, because people \
                             joined after you wrote it, and later ones go after it (see `confide \
                             held`)"
                        }
                        ClientError::Held => {
                            "the server cannot be reached or asked this device to wait a moment, \
                             or this device has not yet been shown \
                             the group's latest membership change and sends nothing to it until \
                             it has"
                        }
                        _ => {
                            "the server did not confirm it (the connection dropped, or the \
                              server could not take it just now)"
                        }
                    };
                    if out.json {
                        println!(
                            "{}",
                            json!({ "sent": false, "kept": true, "reason": e.code() })
                        );
                    }
                    return Err(anyhow::Error::new(Said {
                        text: format!(
                            "not sent yet: {why}. Your message is kept on this device and will \
                             be sent by the next confide command that reaches the server (such \
                             as `confide sync`) or by the chat ({})",
                            e.code()
                        ),
                        exit: EXIT_KEPT,
                    }));
                }
                // Failed before the message was sealed: nothing was kept to go out later.
                Err(
                    e @ (ClientError::Transport(_)
                    | ClientError::Timeout { .. }
                    | ClientError::UnexpectedReply { .. }),
                ) => {
                    return Err(anyhow::Error::from(e).context(
                        "your message was not sent and was not kept: send it again once the \
                         server is reachable",
                    ));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Command::Held {
            group,
            send,
            discard,
        } => {
            let label = one_line(group);
            let group = profile.group(group)?;
            let id_of = |text: &str| {
                confide_client::HeldId::from_hex(text.trim())
                    .ok_or_else(|| anyhow!("not a message id as `confide held` lists it"))
            };
            if let Some(id) = send {
                // The answer names the group as the user was shown it (`ID@EPOCH`, as
                // `confide held` lists a message that waits): if people joined since, the core
                // refuses and the user looks again.
                let (id, epoch) = id
                    .split_once('@')
                    .and_then(|(id, epoch)| Some((id, epoch.parse::<u64>().ok()?)))
                    .ok_or_else(|| {
                        anyhow!(
                            "give the message as `confide held {label}` lists it, with what                              follows @: it names who you were shown"
                        )
                    })?;
                client.send_held_anyway(group, id_of(id)?, epoch).await?;
                out.print(
                    "sending it to everyone in the group now (`confide held` shows what still waits)",
                    json!({ "sending": id }),
                );
                return Ok(());
            }
            if let Some(id) = discard {
                client.discard_held(group, id_of(id)?).await?;
                out.print("discarded: it will not be sent", json!({ "discarded": id }));
                return Ok(());
            }
            let held = client.held(group).await?;
            let mut lines = Vec::new();
            for m in &held {
                let state = if m.sealed {
                    "sent, waiting for the server to confirm".to_string()
                } else if m.needs_confirm {
                    let names: Vec<String> = m
                        .added
                        .iter()
                        .map(|a| match a.new_device {
                            true => format!("{} (a new device)", one_line(&a.display_name)),
                            false => one_line(&a.display_name),
                        })
                        .collect();
                    match names.is_empty() {
                        true => "waits for you: the group changed after you wrote it".into(),
                        false => format!(
                            "waits for you: {} joined after you wrote it",
                            names.join(", ")
                        ),
                    }
                } else if m.behind_earlier {
                    "waiting to send, after the one above".into()
                } else {
                    "waiting to send".into()
                };
                // One that waits for the user is answered by this id, which names who they saw.
                let shown_id = match m.needs_confirm {
                    true => format!("{}@{}", m.id.to_hex(), m.epoch),
                    false => m.id.to_hex(),
                };
                lines.push(format!(
                    "{} {}  {}\n    {}",
                    shown_id,
                    local_time(m.written_at),
                    state,
                    one_line(&m.text)
                ));
            }
            let waits = held.iter().any(|m| m.needs_confirm);
            let json_items: Vec<serde_json::Value> = held
                .iter()
                .map(|m| {
                    json!({
                        "id": m.id.to_hex(),
                        "text": m.text,
                        "written_at": m.written_at,
                        "sealed": m.sealed,
                        "needs_confirm": m.needs_confirm,
                        "epoch": m.epoch,
                        "send_id": format!("{}@{}", m.id.to_hex(), m.epoch),
                        "added": m.added.iter().map(|a| json!({ "user": a.user, "name": a.display_name, "new_device": a.new_device })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            let human = if lines.is_empty() {
                format!("nothing of yours waits to be sent to {label}")
            } else {
                lines.join("\n")
            };
            out.print(human, json!({ "held": json_items }));
            if waits {
                return Err(anyhow::Error::new(Said {
                    text: format!(
                        "a message waits for you: people joined {label} after you wrote it. \
                         Send it to everyone now with `confide held {label} --send <id>`, or \
                         `--discard <id>`"
                    ),
                    exit: EXIT_KEPT,
                }));
            }
        }
        Command::Read {
            group,
            limit,
            before,
            show_hidden,
        } => {
            let group = profile.group(group)?;
            // What this device has is shown even if the start-up sync could not ask the server
            // for what is new; the command then fails, saying so, after printing it.
            let synced = client.synced().await;
            // A number names its place also once its message is deleted.
            let before = match before {
                Some(number) => {
                    Some(client.seq_of_number(group, *number).await?.ok_or_else(|| {
                        anyhow!("no message #{number} on this device in this group")
                    })?)
                }
                None => None,
            };
            // One more than shown: the message before the page tells which notices go on it.
            let mut history = client
                .history(group, before, limit.saturating_add(1))
                .await?;
            let older = (history.len() > *limit).then(|| history.remove(0));
            let departure = client.departure(group).await?;
            let info = client
                .groups()
                .await?
                .into_iter()
                .find(|g| g.group == group);
            let name = info
                .as_ref()
                .map_or_else(|| group.to_string(), |g| group_name(profile, g));
            // Only to mark look-alike names: a former member reads the history without them.
            let members = client.members(group).await.unwrap_or_default();
            // To name the topics of content warnings.
            let topics = client.pinned(group).await?.warning_topics;
            // A hidden message's text is given only when asked for, to scripts too.
            let shown_text = |m: &confide_client::ChatMessage| -> Option<String> {
                (*show_hidden || !m.hidden).then(|| m.text.clone())
            };
            if out.json {
                let list: Vec<_> = history
                    .iter()
                    .map(|m| json!({ "number": m.number, "seq": m.seq, "id": m.id, "sender": m.sender, "name": m.sender_name, "looks_like": looks_like(m.sender, &m.sender_name, &members), "sent_at": m.sent_at, "text": shown_text(m), "reply_to": m.reply_to, "warnings": m.warnings, "hidden": m.hidden, "round": crate::group_work::round_json(m.round.as_ref()) }))
                    .collect();
                println!("{}", serde_json::Value::Array(list));
            } else if let Some(g) = info.as_ref().filter(|g| g.invited) {
                println!(
                    "{}",
                    line(
                        &format!(
                            "Someone added you to {name}{}: {}. To read and take part, accept it \
                             with `confide accept {}` (or leave it with `confide leave {}`).",
                            private_note(profile, g)
                                .map(|n| format!(" ({n})"))
                                .unwrap_or_default(),
                            waiting_text(g.waiting),
                            g.group,
                            g.group
                        ),
                        out.columns
                    )
                );
            } else {
                let notices = client.notices(group).await?;
                let shown: Vec<&confide_client::ChatMessage> = history.iter().collect();
                let page = crate::timeline::Shown {
                    messages: &shown,
                    before: older.as_ref(),
                    older_unknown: false,
                    newest: before.is_none(),
                };
                let mut slots: Vec<Vec<&confide_client::GroupNotice>> =
                    vec![Vec::new(); shown.len() + 1];
                for n in &notices {
                    if let Some(slot) = crate::timeline::place(n, &page) {
                        slots[slot].push(n);
                    }
                }
                let me = client.user();
                for (i, at_slot) in slots.iter().enumerate() {
                    for n in at_slot {
                        let number = crate::timeline::notice_number(n)
                            .map(|n| format!("#{n}"))
                            .unwrap_or_default();
                        let shown = format!(
                            "{number:<6} {}  — {}",
                            local_time(n.at),
                            crate::timeline::notice_text(n, me)
                        );
                        println!("{}", line(&shown, out.columns));
                    }
                    let Some(m) = history.get(i) else { break };
                    let header = format!(
                        "{:<6} {}  {}{}{}: ",
                        format!("#{}", m.number),
                        local_time(m.sent_at),
                        one_line(&m.sender_name),
                        look_alike_mark(m.sender, &m.sender_name, &members),
                        crate::group_work::message_marks(m, topics.as_ref(), *show_hidden)
                    );
                    match shown_text(m) {
                        // A pass has no text: its mark says it all.
                        Some(text) if text.is_empty() && m.round.is_some() => {
                            println!("{}", line(header.trim_end_matches(": "), out.columns))
                        }
                        Some(text) => println!("{}", entry(&header, &text, out.columns)),
                        None => println!(
                            "{}",
                            line(
                                &format!(
                                    "{header}{}",
                                    crate::group_work::hidden_text(m, topics.as_ref())
                                ),
                                out.columns
                            )
                        ),
                    }
                }
                if let Some(d) = departure {
                    println!("{}", line(&departure_line(&name, &d), out.columns));
                }
            }
            // What was printed is read: the newest page only (paging back reads nothing new),
            // and up to its newest message ("read up to", as every messenger counts).
            if let Some(newest) = history.last().filter(|_| before.is_none()) {
                client.mark_read(group, newest.number).await?;
            }
            // A group the server no longer serves: every read says so and fails, so that
            // neither a person nor a script takes what this device had for current.
            if let Some(r) = info.as_ref().and_then(|g| g.sync_refused.as_ref()) {
                return Err(anyhow::Error::new(Said {
                    text: format!(
                        "{}; this is what this device had when it stopped",
                        refusal_line(&name, r)
                    ),
                    exit: EXIT_REFUSED,
                }));
            }
            fresh(synced)?;
        }
        Command::Status { group } => {
            let label = group;
            let group = profile.group(group)?;
            let synced = client.synced().await;
            let s = client.status(group).await?;
            let mut lines = match client.departure(group).await? {
                // Said plainly, instead of a role and rules that no longer concern them.
                Some(d) if s.role.is_none() => vec![format!(
                    "{}; you can still read what was said while you were in it",
                    departure_line(&one_line(label), &d)
                )],
                _ => vec![format!(
                    "role: {}",
                    s.role.map(|r| r.as_str()).unwrap_or("not a member")
                )],
            };
            if let Some(t) = s.muted_until {
                lines.push(format!("muted until {}", local_time(t)));
            }
            if s.locked {
                lines.push("the chat is locked: only facilitators can post".into());
            }
            if !s.open_now {
                lines.push("the chat is outside its open hours".into());
            }
            if s.slow_mode_seconds > 0 {
                lines.push(format!(
                    "slow mode: one message per {} s",
                    s.slow_mode_seconds
                ));
            }
            if let Some(v) = s.agreement_pending {
                lines.push(format!(
                    "accept agreement version {v} before posting (`confide agreement show`)"
                ));
            }
            out.print(
                lines.join("\n"),
                json!({ "role": s.role, "muted_until": s.muted_until, "locked": s.locked, "open_now": s.open_now, "slow_mode_seconds": s.slow_mode_seconds, "agreement_pending": s.agreement_pending }),
            );
            fresh(synced)?;
        }
        Command::Agreement(AgreementCommand::Show { group }) => {
            let group = profile.group(group)?;
            let pinned = client.pinned(group).await?;
            match pinned.agreement {
                Some(a) => out.print(
                    format!(
                        "Group agreement, version {}{}:\n\n{}",
                        a.version,
                        if a.accepted { " (accepted)" } else { "" },
                        quoted(&a.text, out.columns)
                    ),
                    json!({ "version": a.version, "text": a.text, "accepted": a.accepted }),
                ),
                None => out.print(
                    "this group has no agreement (or its text has not arrived yet)",
                    json!(null),
                ),
            }
        }
        Command::Agreement(AgreementCommand::Accept { group, yes }) => {
            let group = profile.group(group)?;
            let pinned = client.pinned(group).await?;
            let Some(agreement) = pinned.agreement else {
                return Err(match pinned.agreement_version {
                    Some(version) => ClientError::AgreementNotReceived { version }.into(),
                    None => anyhow!("this group has no agreement to accept"),
                });
            };
            if agreement.accepted {
                out.print(
                    format!("you have already accepted version {}", agreement.version),
                    json!({ "version": agreement.version, "accepted": true }),
                );
                return Ok(());
            }
            // Shown before anything is accepted, whatever the flags.
            let shown = format!(
                "Group agreement, version {}:\n\n{}\n",
                agreement.version,
                quoted(&agreement.text, out.columns)
            );
            if out.json {
                eprintln!("{shown}");
            } else {
                println!("{shown}");
            }
            if !yes && !confirm(&format!("Accept version {}? Type yes: ", agreement.version))? {
                bail!("not accepted");
            }
            client.accept_agreement(group, &agreement).await?;
            out.print(
                format!("agreement version {} accepted", agreement.version),
                json!({ "version": agreement.version, "accepted": true }),
            );
        }
        Command::Agreement(AgreementCommand::Set { group, text }) => {
            let group = profile.group(group)?;
            client.set_agreement(group, text).await?;
            out.print(
                "agreement pinned; members must accept it before posting",
                json!({ "pinned": true }),
            );
        }
        Command::Crisis(CrisisCommand::Show { group }) => {
            let group = profile.group(group)?;
            // The person's own safety plan goes with the group's resources, for their eyes
            // only (`--json` gives the resources alone: `confide safety-plan show --json` has
            // the plan).
            let plan = crate::group_work::plan_for_crisis(client, out.columns).await;
            match client.pinned(group).await?.crisis_resources {
                Some(text) => out.print(
                    format!(
                        "If you are in crisis:\n\n{}\n\n{plan}",
                        quoted(&text, out.columns)
                    ),
                    json!({ "text": text }),
                ),
                None => out.print(
                    format!("no crisis resources are pinned to this group\n\n{plan}"),
                    json!(null),
                ),
            }
        }
        Command::Crisis(CrisisCommand::Set { group, text }) => {
            let group = profile.group(group)?;
            client.set_crisis_resources(group, text).await?;
            out.print("crisis resources pinned", json!({ "pinned": true }));
        }
        Command::Report {
            group,
            message,
            reason,
        } => {
            let group = profile.group(group)?;
            let number = parse_number(message).ok_or_else(|| {
                anyhow!("{message:?} is not a message number (#5, as `confide read` shows)")
            })?;
            let m = numbered_message(client, group, number).await?;
            client.report(group, m.seq, reason).await?;
            out.print(
                format!("message #{number} was reported to the facilitators"),
                json!({ "reported": number }),
            );
        }
        Command::Urgent { group, text } => {
            let group = profile.group(group)?;
            client.request_facilitator(group, text).await?;
            out.print(
                "your request went to the facilitators",
                json!({ "sent": true }),
            );
        }
        Command::Private { group, user, label } => {
            let group = profile.group(group)?;
            let user_name = user.trim_start_matches('@');
            let user = profile::user(client, group, user).await?;
            let private = client.open_private(group, user).await?;
            if let Some(label) = label {
                profile.set_label(client, private, label).await?;
            }
            out.print(
                format!(
                    "opened a private conversation with {} ({private}); they see it once they \
                     accept it",
                    one_line(user_name)
                ),
                json!({ "group": private }),
            );
        }
        Command::Mod(cmd) => moderate(cmd, out, profile, client).await?,
        Command::Meeting(cmd) => crate::group_work::meeting(cmd, out, profile, client).await?,
        Command::Round(cmd) => crate::group_work::round(cmd, out, profile, client).await?,
        Command::Warn(cmd) => crate::group_work::warn(cmd, out, profile, client).await?,
        Command::Resources(cmd) => crate::group_work::resources(cmd, out, profile, client).await?,
        Command::SafetyPlan(cmd) => crate::group_work::safety_plan(cmd, out, client).await?,
        Command::Chat { group } => {
            let group = group.as_deref().map(|g| profile.group(g)).transpose()?;
            let events = events
                .take()
                .ok_or_else(|| anyhow!("the chat needs the client's events"))?;
            crate::tui::run(profile.labels().clone(), client.clone(), events, group).await?;
        }
        Command::Init { .. }
        | Command::Ping { .. }
        | Command::Web(_)
        | Command::Device(_)
        | Command::Completions { .. } => {}
    }
    Ok(())
}

async fn moderate(
    cmd: &ModCommand,
    out: &Out,
    profile: &Profile,
    client: &Client,
) -> anyhow::Result<()> {
    let done = |what: &str| out.print(what, json!({ "ok": true }));
    match cmd {
        ModCommand::Mute {
            group,
            user,
            duration,
            reason,
        } => {
            let group = profile.group(group)?;
            let who = profile::user(client, group, user).await?;
            client
                .mute(group, who, parse_duration(duration)?, reason.as_deref())
                .await?;
            done(&format!("{user} is muted for {duration}"));
        }
        ModCommand::Unmute { group, user } => {
            let group = profile.group(group)?;
            let who = profile::user(client, group, user).await?;
            client.unmute(group, who).await?;
            done(&format!("{user} may post again"));
        }
        ModCommand::Remove {
            group,
            user,
            ban,
            revoke_invite,
            keep_invite,
            reason,
        } => {
            // A ban revokes the invite the person joined with unless asked not to: a banned
            // person holding it could otherwise still ask to join, or try to.
            let revoke_invite = *revoke_invite || (*ban && !*keep_invite);
            let label = group;
            let group = profile.group(group)?;
            let who = profile::user(client, group, user).await?;
            let invite = client.invite_of(group, who).await?;
            let mut removal = RemoveOptions::new().ban(*ban);
            removal.reason = reason.clone();
            client.remove(group, who, removal).await?;
            let mut lines = vec![format!(
                "{user} was removed{}; new keys protect everything from now on",
                if *ban { " and banned" } else { "" }
            )];
            let usable = match invite {
                Some(id) => client
                    .invites(group)
                    .await?
                    .into_iter()
                    .find(|i| i.id == id)
                    .filter(|i| invite_state(i) == "active"),
                None => None,
            };
            let mut revoked = None;
            if let Some(i) = usable {
                if revoke_invite {
                    client.revoke_invite(group, i.id).await?;
                    lines.push(format!(
                        "revoked the invite they joined with ({}){}",
                        i.id,
                        if *ban && !*keep_invite {
                            " (a ban does this unless you add --keep-invite)"
                        } else {
                            ""
                        }
                    ));
                    revoked = Some(i.id);
                } else {
                    lines.push(format!(
                        "they joined with invite {id}, which can still be used ({} of {} uses left): \
                         revoke it with `confide invite revoke {label} {id}`",
                        i.max_uses - i.uses,
                        i.max_uses,
                        id = i.id
                    ));
                }
            }
            out.print(
                lines.join("\n"),
                json!({ "ok": true, "joined_with": invite, "revoked_invite": revoked }),
            );
        }
        ModCommand::Unban { group, user } => {
            let group = profile.group(group)?;
            let who = UserId(
                profile::parse_id(user).ok_or_else(|| anyhow!("give the banned user's id"))?,
            );
            client.unban(group, who).await?;
            done("ban lifted");
        }
        ModCommand::Role { group, user, role } => {
            let group = profile.group(group)?;
            let who = profile::user(client, group, user).await?;
            client.set_role(group, who, parse_role(role)?).await?;
            done(&format!("{user} is now {role}"));
        }
        ModCommand::Lock { group } => {
            client.set_locked(profile.group(group)?, true).await?;
            done("locked: only facilitators can post");
        }
        ModCommand::Unlock { group } => {
            client.set_locked(profile.group(group)?, false).await?;
            done("unlocked");
        }
        ModCommand::SlowMode { group, seconds } => {
            client
                .set_slow_mode(profile.group(group)?, *seconds)
                .await?;
            done(&if *seconds == 0 {
                "slow mode off".to_string()
            } else {
                format!("slow mode: one message per {seconds} s")
            });
        }
        ModCommand::OpenHours {
            group,
            tz,
            windows,
            clear,
        } => {
            let group = profile.group(group)?;
            let schedule = if *clear {
                None
            } else {
                let time_zone = tz.clone().ok_or_else(|| anyhow!("--tz is required"))?;
                let windows = windows
                    .iter()
                    .map(|w| parse_window(w))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                Some(OpenHours { time_zone, windows })
            };
            client.set_open_hours(group, schedule).await?;
            done("open hours set");
        }
        ModCommand::Delete { group, messages } => {
            let group = profile.group(group)?;
            let mut ids = Vec::new();
            // Who said each message, when, and how it starts: the person sees what they
            // deleted, not only a number.
            let mut shown = Vec::new();
            let mut listed = Vec::new();
            for m in messages {
                match parse_number(m) {
                    Some(number) => {
                        let message = numbered_message(client, group, number).await?;
                        shown.push(message_summary(&message));
                        listed.push(json!({ "number": number, "id": message.id, "sender": message.sender, "name": message.sender_name, "sent_at": message.sent_at }));
                        ids.push(message.id);
                    }
                    None => {
                        let id = message_id(client, group, m).await?;
                        shown.push(format!("message {id}"));
                        listed.push(json!({ "id": id }));
                        ids.push(id);
                    }
                }
            }
            client.delete_for_everyone(group, ids).await?;
            let lines: Vec<String> = std::iter::once("deleted for everyone:".to_string())
                .chain(shown.iter().map(|s| line(&format!("  {s}"), out.columns)))
                .collect();
            out.print(lines.join("\n"), json!({ "ok": true, "deleted": listed }));
        }
        ModCommand::DeleteRecent { group, user, count } => {
            let group = profile.group(group)?;
            let who = profile::user(client, group, user).await?;
            let n = client.delete_recent_of(group, who, *count).await?;
            out.print(
                format!("deleted {n} messages of {user} for everyone"),
                json!({ "deleted": n }),
            );
        }
        ModCommand::Requests { group } => {
            let group = profile.group(group)?;
            let requests = client.join_requests(group).await?;
            if out.json {
                let list: Vec<_> = requests.iter().map(|r| json!({ "user": r.user, "name": r.display_name, "note": r.note, "device": r.device, "looks_like": r.looks_like })).collect();
                println!("{}", serde_json::Value::Array(list));
            } else if requests.is_empty() {
                println!("no pending requests");
            } else {
                for r in &requests {
                    let header = format!(
                        "{}  {}{}  ",
                        r.user,
                        one_line(&r.display_name),
                        crate::tui::text::look_alike_note(&r.looks_like)
                    );
                    let note = r.note.as_deref().unwrap_or("");
                    println!("{}", entry(&header, note, out.columns));
                }
            }
        }
        ModCommand::Approve { group, user } => {
            let group = profile.group(group)?;
            let who =
                UserId(profile::parse_id(user).ok_or_else(|| {
                    anyhow!("give the requester's user id (confide mod requests)")
                })?);
            client.approve(group, who).await?;
            done("approved");
        }
        ModCommand::Decline { group, user } => {
            let group = profile.group(group)?;
            let who = UserId(
                profile::parse_id(user).ok_or_else(|| anyhow!("give the requester's user id"))?,
            );
            client.decline(group, who).await?;
            done("declined");
        }
        ModCommand::Queue { group } => {
            let group = profile.group(group)?;
            let queue = client.facilitator_queue(group).await?;
            let members = client.members(group).await?;
            if out.json {
                let mut list = Vec::new();
                for (id, item) in &queue {
                    // The number this device shows for a reported message, found by its id.
                    let number = match item {
                        confide_client::FacilitatorItem::Report(r) => client
                            .message_place(group, r.message)
                            .await?
                            .and_then(|p| p.number),
                        _ => None,
                    };
                    list.push(json!({ "id": id, "item": item, "number": number }));
                }
                println!("{}", serde_json::Value::Array(list));
            } else if queue.is_empty() {
                println!("nothing waiting");
            } else {
                for (id, item) in &queue {
                    match item {
                        confide_client::FacilitatorItem::Report(r) => {
                            // The proven quote and the reporter's reason each start a line of
                            // their own, so neither can pass for the other.
                            let reporter = name_with_note(r.reporter, &r.reporter_name, &members);
                            let which = report_place(client, r).await?;
                            let header = format!(
                                "[{id}] REPORT by {reporter} about {} ({which}): ",
                                name_with_note(r.offender, &r.offender_name, &members),
                            );
                            println!("{}", entry(&header, &r.text, out.columns));
                            let header = format!("[{id}] reason given by {reporter}: ");
                            println!("{}", entry(&header, &r.reason, out.columns));
                        }
                        confide_client::FacilitatorItem::Urgent(u) => {
                            let header = format!(
                                "[{id}] URGENT from {}: ",
                                name_with_note(u.user, &u.display_name, &members)
                            );
                            println!("{}", entry(&header, &u.text, out.columns))
                        }
                        // A kind of item a newer library knows: its id, to resolve it.
                        _ => println!("[{id}] an item this version cannot show"),
                    }
                }
            }
        }
        ModCommand::Resolve { id } => {
            client.resolve(id).await?;
            done("resolved");
        }
        ModCommand::Log { group } => {
            let group = profile.group(group)?;
            if out.json {
                println!("{}", client.export_moderation_log(group).await?);
            } else {
                for e in client.moderation_log(group).await? {
                    let author = one_line(e.author_name.as_deref().unwrap_or("?"));
                    let target = e
                        .target_name
                        .as_deref()
                        .map(|t| format!(" {}", one_line(t)))
                        .unwrap_or_default();
                    let shown = format!(
                        "{:>4} {}  {author}: {}{target} {}",
                        e.op_seq,
                        local_time(e.at),
                        one_line(&e.action),
                        details_text(&e.details)
                    );
                    match e.reason.as_deref() {
                        // The reason wraps at word boundaries, like any text of someone else's.
                        Some(r) => {
                            println!("{}", entry(&format!("{shown} — "), r, out.columns))
                        }
                        None => println!("{}", line(&shown, out.columns)),
                    }
                }
            }
        }
        ModCommand::Retention { group, period } => {
            let group = profile.group(group)?;
            let keep = if period == "off" {
                None
            } else {
                Some(parse_duration(period)?)
            };
            client.set_retention(group, keep).await?;
            done(&match keep {
                Some(_) => format!("messages are deleted everywhere after {period}"),
                None => "messages are kept".into(),
            });
        }
        ModCommand::PrivateMessages { group, setting } => {
            let group = profile.group(group)?;
            let on = match setting.as_str() {
                "on" => true,
                "off" => false,
                _ => bail!("say on or off"),
            };
            client
                .set_settings(
                    group,
                    GroupSettings {
                        members_may_message_privately: on,
                    },
                )
                .await?;
            done(&format!(
                "members may message each other privately: {setting}"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_times_in_unix_ms_are_shown_as_local_dates() {
        let shown = human_times("you are muted until 1796285760874 (unix ms) (muted)");
        assert_eq!(
            shown,
            format!(
                "you are muted until {} (muted)",
                local_time(Timestamp(1_796_285_760_874))
            )
        );
        assert!(shown.contains("until 2026-") || shown.contains("until 2027-"));
        assert_eq!(human_times("no number (unix ms)"), "no number (unix ms)");
    }

    #[test]
    fn moderation_details_read_as_words_not_json() {
        let open_hours = json!({ "schedule": { "time_zone": "Europe/Berlin", "windows": [{ "day": 0, "start_minute": 1080, "end_minute": 1200 }] } });
        let shown = details_text(&open_hours);
        assert!(
            shown.contains("Europe/Berlin") && shown.contains("mon 18:00-20:00"),
            "{shown}"
        );
        assert!(!shown.contains('{') && !shown.contains('"'), "{shown}");
        assert_eq!(details_text(&json!({ "seconds": 2_592_000 })), "30 d");
        assert_eq!(details_text(&json!({ "ban": true })), "and banned");
        assert_eq!(details_text(&json!({})), "");
    }
}
