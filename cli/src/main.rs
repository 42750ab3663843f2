//! `confide`: the command-line and terminal chat client for Confide.
//!
//! Every action of the client library is a subcommand, for people and for scripts (`--json`);
//! `confide chat` opens an interactive terminal chat.

mod commands;
mod devices;
mod group_work;
mod profile;
mod text;
mod timeline;
mod tui;
mod web;

use clap::{CommandFactory as _, Parser, Subcommand};
use std::path::PathBuf;

/// jemalloc instead of the system's malloc (feature `jemalloc`, on by default): the client's
/// store is sled, whose old nodes are freed by whichever thread next reads it, and glibc's
/// malloc then makes threads wait on each other's arena locks (BENCHMARKS.md, "Issue 20, a
/// fifth round").
#[cfg(all(feature = "jemalloc", unix))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Exit code: something went wrong that is not one of the cases below.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code: the command line was wrong (clap uses it too).
pub const EXIT_USAGE: u8 = 2;
/// Exit code: the server refused the request (its stable error code is printed).
pub const EXIT_REFUSED: u8 = 3;
/// Exit code: the passphrase is wrong or the profile is missing.
pub const EXIT_PROFILE: u8 = 4;
/// Exit code: the server could not be reached.
pub const EXIT_UNREACHABLE: u8 = 5;
/// Exit code: the profile is open in another `confide` process (the chat, say).
pub const EXIT_PROFILE_IN_USE: u8 = 6;
/// Exit code: you are not (or no longer) in that group: you were removed, or left.
pub const EXIT_NOT_MEMBER: u8 = 7;
/// Exit code of `confide send` for a message that was not sent yet but is kept on this device,
/// to be sent by the next `confide` command that reaches the server, or by the chat (the same
/// as [`EXIT_FAILURE`]: the command did not do what it was asked, yet).
pub const EXIT_KEPT: u8 = EXIT_FAILURE;
/// Exit code of `confide web verify`: the server does not serve the expected release of the
/// web app (or a part of it could not be checked).
pub const EXIT_WEB_MISMATCH: u8 = 8;
/// Exit code: another of your devices unlinked this one; it can no longer read or send.
pub const EXIT_UNLINKED: u8 = 9;

/// confide — end-to-end encrypted group chat for facilitated peer-support groups.
///
/// Your messages are encrypted on this device and can be read only by the members of the group;
/// the server relays and stores ciphertext only. A profile (by default ~/.confide, or
/// $CONFIDE_HOME, or --profile) holds your identity in a store encrypted with your passphrase.
/// Scripts can set the passphrase in $CONFIDE_PASSPHRASE.
///
/// Start with `confide init`, then `confide group create`, `confide invite create`, and
/// `confide chat`. Groups are named by the label you give them or by their id; people by their
/// pseudonym (`@River`) or user id.
#[derive(Parser, Debug)]
#[command(name = "confide", version, about, long_about, verbatim_doc_comment)]
pub struct Args {
    /// Profile directory (default: $CONFIDE_HOME or ~/.confide).
    #[arg(long, global = true, value_name = "DIR")]
    pub profile: Option<PathBuf>,
    /// Print results as JSON, for scripts.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Creates your identity and encrypted profile, and registers with a server.
    Init {
        /// Server URL, e.g. wss://chat.example.org:7443.
        #[arg(long)]
        server: String,
        /// SHA-256 fingerprint of the server's certificate (as `confide-server --dev` prints);
        /// without it the system's certificate authorities are trusted.
        #[arg(long)]
        pin: Option<String>,
        /// The pseudonym others in your groups will see.
        #[arg(long)]
        name: String,
        /// Registration token, if the server requires one.
        #[arg(long)]
        token: Option<String>,
    },
    /// Shows your user id, device and server.
    Whoami,
    /// Shows the safety number to compare with another member, out of band.
    SafetyNumber {
        /// The group you share.
        group: String,
        /// The member (@name or user id).
        user: String,
    },
    /// Fetches everything new from the server.
    Sync,
    /// Groups: create, list, label.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Lists a group's members with their roles.
    Members {
        /// The group.
        group: String,
    },
    /// Invites: create a link to share privately, list and revoke them.
    #[command(subcommand)]
    Invite(InviteCommand),
    /// Joins a group with an invite link (or asks to, if it needs approval).
    Join {
        /// The link.
        link: String,
        /// A note for the facilitators (for invites that need approval).
        #[arg(long)]
        note: Option<String>,
        /// A label for the group on this device.
        #[arg(long)]
        label: Option<String>,
    },
    /// Accepts being in a group someone added you to.
    Accept {
        /// The group.
        group: String,
        /// A label for the group on this device.
        #[arg(long)]
        label: Option<String>,
    },
    /// Leaves a group.
    Leave {
        /// The group.
        group: String,
    },
    /// Sends a message.
    ///
    /// Exit status: 0 sent (the server stored it); 1 not sent yet but kept on this device,
    /// encrypted, and sent by the next confide command that reaches the server (such as
    /// `confide sync`) or by the chat (also when the server cannot be reached); 3 refused by
    /// the server (muted, locked, …: not kept); 5 the connection failed part way, before the
    /// message was sealed (not kept: send it again later); 7 you are no longer in the group.
    #[command(verbatim_doc_comment)]
    Send {
        /// The group.
        group: String,
        /// The text.
        text: String,
        /// Reply to this message: its number as `confide read` shows it (5, or quoted: `'#5'`) or its id.
        #[arg(long)]
        reply_to: Option<String>,
        /// Content warnings: topic numbers as `confide warn topics` lists them, e.g. --warn 1,2.
        /// Members who hide a topic see only that the message has a warning.
        #[arg(long, value_delimiter = ',', value_name = "ID,...")]
        warn: Vec<u16>,
    },
    /// Lists your messages to a group that are not sent yet (written offline, say), and sends
    /// or discards one that waits because people joined the group after you wrote it.
    ///
    /// Exit status: 0 listed (or done); 1 a listed message waits for you (`--send` or
    /// `--discard` it).
    #[command(verbatim_doc_comment)]
    Held {
        /// The group.
        group: String,
        /// Send this message (its id as listed) to everyone in the group now.
        #[arg(long, value_name = "ID", conflicts_with = "discard")]
        send: Option<String>,
        /// Discard this message (its id as listed): it is never sent.
        #[arg(long, value_name = "ID")]
        discard: Option<String>,
    },
    /// Shows a group's messages, oldest first (after a sync).
    Read {
        /// The group.
        group: String,
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Only messages before this number, as read shows it (to page back).
        #[arg(long, value_name = "NUMBER")]
        before: Option<u64>,
        /// Shows the messages you hide by their content warning (`confide warn hide`); without
        /// it they show only their warning (and `--json` gives their text as null).
        #[arg(long)]
        show_hidden: bool,
    },
    /// Shows what you may do in a group right now (muted, locked, open hours, agreement).
    Status {
        /// The group.
        group: String,
    },
    /// The group agreement: show, accept, or set a new version (facilitators).
    #[command(subcommand)]
    Agreement(AgreementCommand),
    /// Crisis resources pinned to the group: show (with your own safety plan), or set
    /// (facilitators).
    #[command(subcommand)]
    Crisis(CrisisCommand),
    /// The group's meetings: the next one in your time zone, or set the schedule (facilitators).
    #[command(subcommand)]
    Meeting(group_work::MeetingCommand),
    /// Check-in rounds: open (facilitators), answer, pass, close, show.
    #[command(subcommand)]
    Round(group_work::RoundCommand),
    /// Content warnings: the group's topics, which you hide, and adding one to a message.
    #[command(subcommand)]
    Warn(group_work::WarnCommand),
    /// The group's resource library: list and search, or add and remove (facilitators).
    #[command(subcommand)]
    Resources(group_work::ResourcesCommand),
    /// Your own safety plan: kept only on your devices, never sent to a group or the server.
    #[command(subcommand)]
    SafetyPlan(group_work::SafetyPlanCommand),
    /// Reports a message to the facilitators, with proof of who wrote it.
    Report {
        /// The group.
        group: String,
        /// The message number as `confide read` shows it (5, or quoted: `'#5'`).
        message: String,
        /// Why.
        reason: String,
    },
    /// "I need a facilitator": an urgent request only the facilitators can read.
    Urgent {
        /// The group.
        group: String,
        /// What you want them to know.
        text: String,
    },
    /// Opens a private conversation with a member (facilitators; members if the group allows).
    Private {
        /// The group you share.
        group: String,
        /// The member.
        user: String,
        /// A label for the conversation on this device.
        #[arg(long)]
        label: Option<String>,
    },
    /// Facilitator tools.
    #[command(subcommand)]
    Mod(ModCommand),
    /// Opens the interactive terminal chat.
    Chat {
        /// The group to open (default: the list of groups).
        group: Option<String>,
    },
    /// Checks a server's certificate pin and protocol version.
    Ping {
        /// Server URL.
        #[arg(long)]
        server: String,
        /// Certificate fingerprint.
        #[arg(long)]
        pin: String,
    },
    /// Your other devices: link a new one, list them, unlink one.
    ///
    /// On the NEW device: `confide device link --server URL --pin FP` shows a code; on a device
    /// that already has your profile: `confide device add CODE`. Both then show numbers: type
    /// on each device the numbers the other one shows. If they differ, nothing is linked.
    #[command(subcommand, verbatim_doc_comment)]
    Device(DeviceCommand),
    /// The web app a server serves.
    #[command(subcommand)]
    Web(WebCommand),
    /// Prints shell completions.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Device subcommands.
#[derive(Subcommand, Debug)]
pub enum DeviceCommand {
    /// Makes this computer a new device of yours: shows a code to type on your other device,
    /// then the numbers to compare, and creates the profile here once they match.
    ///
    /// Exit status: 0 linked; 1 the numbers differ or the link was stopped (nothing was
    /// linked, no profile made); 3 refused by the server; 5 the server could not be reached.
    #[command(verbatim_doc_comment)]
    Link {
        /// Server URL (the same as your other device's), e.g. wss://chat.example.org:7443.
        #[arg(long)]
        server: String,
        /// SHA-256 fingerprint of the server's certificate; without it the system's
        /// certificate authorities are trusted.
        #[arg(long)]
        pin: Option<String>,
    },
    /// Links a new device to your profile, from this device: CODE is what the new device
    /// shows (`confide device link` there). Then type the numbers the new device shows.
    Add {
        /// The code the new device shows, like ABCDE-FGHIJ (or the text of its QR code).
        code: String,
        /// The numbers the new device shows, e.g. "1234 5678 9012", instead of typing them
        /// when asked (for scripts).
        #[arg(long, value_name = "NUMBERS")]
        expect_sas: Option<String>,
    },
    /// Lists your devices.
    List,
    /// Unlinks one of your devices: it reads nothing sent afterwards, and it deletes its keys
    /// when it next connects. Asks for your passphrase again.
    Unlink {
        /// The device, as `confide device list` shows it (a unique beginning is enough).
        device: String,
    },
}

/// Web app subcommands.
#[derive(Subcommand, Debug)]
pub enum WebCommand {
    /// Checks that a server serves exactly a release of the web app.
    ///
    /// Fetches the server's asset-manifest.json and compares its SHA-256 with the release
    /// hash (published with each release, in the build's release-hash.txt, and shown in the
    /// app's About screen), or with the manifest of a local build; then fetches every file the
    /// release lists, and `/`, each as it is, gzip- and brotli-compressed and as a browser asks
    /// (gzip, deflate, br, zstd), and checks size and SHA-256 and every answer's security
    /// headers (the CSP and the others the server sends). Names every difference.
    ///
    /// Exit status: 0 the server serves the release; 8 it does not, or part of it could not be
    /// checked; 5 the server could not be reached.
    #[command(verbatim_doc_comment)]
    #[command(group(clap::ArgGroup::new("release").required(true).args(["expect", "against"])))]
    Verify {
        /// The server, wss://host:port or https://host:port (default: your profile's).
        #[arg(long)]
        server: Option<String>,
        /// SHA-256 fingerprint of the server's certificate (default: your profile's pin, when
        /// checking your profile's server; otherwise the system's certificate authorities).
        #[arg(long)]
        pin: Option<String>,
        /// The release hash: 64 hex digits.
        #[arg(long, value_name = "HASH")]
        expect: Option<String>,
        /// A local build of the release: the directory holding its asset-manifest.json.
        #[arg(long, value_name = "DIR")]
        against: Option<PathBuf>,
    },
}

/// Group subcommands.
#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// Creates a group with you as its facilitator.
    Create {
        /// A label for it on this device (never sent to the server).
        #[arg(long)]
        label: Option<String>,
    },
    /// Lists your groups.
    List,
    /// Gives a group a label on this device.
    Label {
        /// The group.
        group: String,
        /// The label.
        label: String,
    },
    /// Renews the group's encryption keys now: a new epoch with the same members, so that a
    /// key that leaked stops working. Done by itself after 1,000 messages or a day; not within
    /// a minute of the last change.
    Rekey {
        /// The group.
        group: String,
    },
}

/// Invite subcommands.
#[derive(Subcommand, Debug)]
pub enum InviteCommand {
    /// Creates an invite link (facilitators).
    Create {
        /// The group.
        group: String,
        /// Joining needs a facilitator's approval (screening).
        #[arg(long)]
        approval: bool,
        /// How many people may use it.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// How long it is valid, e.g. 30m, 24h, 7d.
        #[arg(long, default_value = "7d")]
        valid: String,
    },
    /// Lists the group's invites: who made them, uses, expiry, revoked, who joined with them.
    List {
        /// The group.
        group: String,
    },
    /// Revokes an invite (facilitators): nobody can join with it any more.
    Revoke {
        /// The group.
        group: String,
        /// The invite's id as `confide invite list` shows it (a unique beginning is enough).
        invite: String,
    },
}

/// Agreement subcommands.
#[derive(Subcommand, Debug)]
pub enum AgreementCommand {
    /// Shows the current agreement.
    Show {
        /// The group.
        group: String,
    },
    /// Shows the current agreement and, once you confirm, accepts exactly that text.
    Accept {
        /// The group.
        group: String,
        /// Accept without asking (the text is still printed first).
        #[arg(long)]
        yes: bool,
    },
    /// Sets a new version (facilitators); everyone must accept it again.
    Set {
        /// The group.
        group: String,
        /// The text.
        text: String,
    },
}

/// Crisis-resources subcommands.
#[derive(Subcommand, Debug)]
pub enum CrisisCommand {
    /// Shows the pinned crisis resources, and your own safety plan (`confide safety-plan`).
    Show {
        /// The group.
        group: String,
    },
    /// Pins crisis resources (facilitators).
    Set {
        /// The group.
        group: String,
        /// The text, e.g. local helplines.
        text: String,
    },
}

/// Facilitator subcommands.
#[derive(Subcommand, Debug)]
pub enum ModCommand {
    /// Mutes a member for a while, e.g. 30m, 2h, 1d.
    Mute {
        /// The group.
        group: String,
        /// The member.
        user: String,
        /// How long.
        duration: String,
        /// A reason only facilitators can read.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Lifts a mute.
    Unmute {
        /// The group.
        group: String,
        /// The member.
        user: String,
    },
    /// Removes a member (they read nothing new); with --ban they cannot come back.
    Remove {
        /// The group.
        group: String,
        /// The member.
        user: String,
        /// Keep them out, also with old invites.
        #[arg(long)]
        ban: bool,
        /// Also revoke the invite they joined with, so nobody can use it again (the default
        /// with --ban).
        #[arg(long)]
        revoke_invite: bool,
        /// With --ban, leave the invite they joined with usable (others may still be using it).
        #[arg(long, requires = "ban", conflicts_with = "revoke_invite")]
        keep_invite: bool,
        /// A reason only facilitators can read.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Lifts a ban (by user id).
    Unban {
        /// The group.
        group: String,
        /// The user id.
        user: String,
    },
    /// Sets a member's role: facilitator, co-facilitator or member.
    Role {
        /// The group.
        group: String,
        /// The member.
        user: String,
        /// The role.
        role: String,
    },
    /// Locks the chat: only facilitators can post.
    Lock {
        /// The group.
        group: String,
    },
    /// Unlocks the chat.
    Unlock {
        /// The group.
        group: String,
    },
    /// Slow mode: one message per N seconds per member (0: off).
    SlowMode {
        /// The group.
        group: String,
        /// Seconds.
        seconds: u32,
    },
    /// Weekly open hours in a time zone, e.g. --window "mon 18:00-20:00"; --clear removes them.
    OpenHours {
        /// The group.
        group: String,
        /// IANA time zone, e.g. Europe/Berlin.
        #[arg(long, required_unless_present = "clear")]
        tz: Option<String>,
        /// A window: day (mon..sun) and local times.
        #[arg(long = "window")]
        windows: Vec<String>,
        /// Remove the schedule.
        #[arg(long)]
        clear: bool,
    },
    /// Deletes messages for everyone (by number as `confide read` shows it, e.g. 5 — quote `'#5'` in a shell, where # starts a comment — or id).
    Delete {
        /// The group.
        group: String,
        /// Message numbers (5, or `'#5'` quoted) or ids.
        #[arg(required = true)]
        messages: Vec<String>,
    },
    /// Deletes a member's last N messages for everyone.
    DeleteRecent {
        /// The group.
        group: String,
        /// The member.
        user: String,
        /// How many.
        count: usize,
    },
    /// Lists pending join requests.
    Requests {
        /// The group.
        group: String,
    },
    /// Approves a join request.
    Approve {
        /// The group.
        group: String,
        /// The requester's user id (see `confide mod requests`).
        user: String,
    },
    /// Declines a join request.
    Decline {
        /// The group.
        group: String,
        /// The requester's user id.
        user: String,
    },
    /// Reports and urgent requests waiting for you.
    Queue {
        /// The group.
        group: String,
    },
    /// Marks a queued item as handled.
    Resolve {
        /// The item id (from `confide mod queue`).
        id: String,
    },
    /// The moderation log (who did what and when).
    Log {
        /// The group.
        group: String,
    },
    /// Deletes messages after a period everywhere, e.g. 30d; "off" keeps them.
    Retention {
        /// The group.
        group: String,
        /// The period, or "off".
        period: String,
    },
    /// Whether members may message each other privately (off by default).
    PrivateMessages {
        /// The group.
        group: String,
        /// on or off.
        setting: String,
    },
}

fn main() -> std::process::ExitCode {
    // Everything this process creates (profile files, the store's database files, now and as
    // the database adds them) is readable only by this user.
    #[cfg(unix)]
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    // Keys and decrypted messages live in this process's memory: never in a core dump, nor
    // readable by another process of this user.
    if let Err(e) = confide_client::harden_process() {
        eprintln!("confide: warning: core dumps could not be turned off: {e}");
    }
    let args = Args::parse();
    if let Command::Completions { shell } = &args.command {
        clap_complete::generate(
            *shell,
            &mut Args::command(),
            "confide",
            &mut std::io::stdout(),
        );
        return std::process::ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("confide: error: {e}");
            return std::process::ExitCode::from(EXIT_FAILURE);
        }
    };
    match runtime.block_on(commands::run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // Errors can quote the server, which may be hostile: cleaned like other people's text.
            eprintln!(
                "confide: error: {}",
                text::one_line(&commands::human_times(&format!("{e:#}")))
            );
            std::process::ExitCode::from(commands::exit_code(&e))
        }
    }
}
