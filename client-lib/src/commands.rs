//! The requests [`crate::Client`] queues for its background task, and how each becomes one
//! call on the client core ([`dispatch`]). Each command is one step of the core: what it
//! changes is stored before its reply is sent.

use tokio::sync::oneshot;

use confide_client_core::{
    ChatMessage, ClientCore, ClientError, Departure, FacilitatorItem, GroupInfo, GroupNotice,
    HeldId, HeldMessage, Invite, InviteInfo, InviteOptions, JoinOutcome, JoinRequest, MemberInfo,
    MessagePlace, ModerationEntry, PinnedInfo, Status,
};
use std::time::Duration;

use confide_protocol::envelope::Envelope;
use confide_protocol::group_log::{GroupSettings, OpBody, OpenHours, Role};
use confide_protocol::{GroupId, InviteId, MessageId, Seq, UserId};

use crate::native::WsNetwork;
use crate::store::Store;

/// The core as the native shell runs it: over the encrypted sled store and TLS websockets.
pub(crate) type Core = ClientCore<Store, WsNetwork>;

/// What the [`crate::Client`] handle asks for.
pub(crate) enum Command {
    CreateGroup(oneshot::Sender<Result<GroupId, ClientError>>),
    CreateInvite {
        group: GroupId,
        options: InviteOptions,
        reply: oneshot::Sender<Result<Invite, ClientError>>,
    },
    Join {
        invite: Invite,
        note: Option<String>,
        reply: oneshot::Sender<Result<JoinOutcome, ClientError>>,
    },
    Approve {
        group: GroupId,
        user: UserId,
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
    Op {
        group: GroupId,
        // Boxed: an op body with a device list is large, and every command is as large as
        // the largest.
        body: Box<OpBody>,
        reply: oneshot::Sender<Result<u64, ClientError>>,
    },
    Send {
        group: GroupId,
        text: String,
        reply_to: Option<MessageId>,
        reply: oneshot::Sender<Result<ChatMessage, ClientError>>,
    },
    History {
        group: GroupId,
        before: Option<Seq>,
        limit: usize,
        reply: oneshot::Sender<Result<Vec<ChatMessage>, ClientError>>,
    },
    SeqOfNumber {
        group: GroupId,
        number: u64,
        reply: oneshot::Sender<Result<Option<Seq>, ClientError>>,
    },
    MessagePlace {
        group: GroupId,
        message: MessageId,
        reply: oneshot::Sender<Result<Option<MessagePlace>, ClientError>>,
    },
    Groups(oneshot::Sender<Vec<GroupInfo>>),
    Members {
        group: GroupId,
        reply: oneshot::Sender<Result<Vec<MemberInfo>, ClientError>>,
    },
    SafetyNumber {
        user: UserId,
        reply: oneshot::Sender<Result<String, ClientError>>,
    },
    Inspect {
        envelope: Box<Envelope>,
        reply: oneshot::Sender<Result<Vec<u8>, ClientError>>,
    },
    Sync(oneshot::Sender<Result<(), ClientError>>),
    /// The outcome of the latest full sync (connecting, and so syncing, first if needed),
    /// without fetching again.
    Synced(oneshot::Sender<Result<(), ClientError>>),
    /// Whether the server has registered this device (answered `authenticated` to `register`).
    Registered(oneshot::Sender<bool>),
    LinkStart {
        code: String,
        reply: oneshot::Sender<Result<confide_client_core::linking::LinkCheck, ClientError>>,
    },
    LinkConfirm(oneshot::Sender<Result<confide_protocol::DeviceId, ClientError>>),
    LinkCancel(oneshot::Sender<()>),
    OwnDevices(oneshot::Sender<confide_client_core::devices::OwnDevices>),
    OwnEntry(oneshot::Sender<confide_protocol::group_log::MemberEntry>),
    Unlink {
        device: confide_protocol::DeviceId,
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
    Moderation(ModerationCommand),
    /// One of the group-work tools (meetings, rounds, warnings, resources, safety plan).
    GroupWork(crate::group_work::GroupWorkCommand),
    /// One of the group commands the core composes ([`Action`]).
    Act {
        action: Action,
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
    Shutdown(oneshot::Sender<()>),
}

/// The group and moderation commands the client core builds from its primitives (ops, reasons,
/// pinned texts): each is one call of the core, which knows how it is made.
pub(crate) enum Action {
    Leave {
        group: GroupId,
    },
    Rekey {
        group: GroupId,
    },
    MarkRead {
        group: GroupId,
        number: u64,
    },
    Remove {
        group: GroupId,
        user: UserId,
        ban: bool,
        reason: Option<String>,
    },
    Unban {
        group: GroupId,
        user: UserId,
    },
    SetRole {
        group: GroupId,
        user: UserId,
        role: Role,
    },
    Mute {
        group: GroupId,
        user: UserId,
        duration: Duration,
        reason: Option<String>,
    },
    Unmute {
        group: GroupId,
        user: UserId,
    },
    SetLocked {
        group: GroupId,
        locked: bool,
    },
    SetOpenHours {
        group: GroupId,
        schedule: Option<OpenHours>,
    },
    SetSlowMode {
        group: GroupId,
        seconds: u32,
    },
    DeleteForEveryone {
        group: GroupId,
        messages: Vec<MessageId>,
    },
    SetRetention {
        group: GroupId,
        keep_for: Option<Duration>,
    },
    SetSettings {
        group: GroupId,
        settings: GroupSettings,
    },
    SetAgreement {
        group: GroupId,
        text: String,
    },
    SetCrisisResources {
        group: GroupId,
        text: String,
    },
    RevokeInvite {
        group: GroupId,
        invite: InviteId,
    },
}

impl Action {
    /// Carries out the command on the core.
    async fn run(self, core: &mut Core) -> Result<(), ClientError> {
        match self {
            Action::Leave { group } => core.leave(group).await,
            Action::Rekey { group } => core.rekey(group).await,
            Action::MarkRead { group, number } => core.mark_read(group, number).await,
            Action::Remove {
                group,
                user,
                ban,
                reason,
            } => core.remove_member(group, user, ban, reason).await,
            Action::Unban { group, user } => core.unban(group, user).await,
            Action::SetRole { group, user, role } => core.set_role(group, user, role).await,
            Action::Mute {
                group,
                user,
                duration,
                reason,
            } => core.mute(group, user, duration, reason).await,
            Action::Unmute { group, user } => core.unmute(group, user).await,
            Action::SetLocked { group, locked } => core.set_locked(group, locked).await,
            Action::SetOpenHours { group, schedule } => core.set_open_hours(group, schedule).await,
            Action::SetSlowMode { group, seconds } => core.set_slow_mode(group, seconds).await,
            Action::DeleteForEveryone { group, messages } => {
                core.delete_for_everyone(group, messages).await
            }
            Action::SetRetention { group, keep_for } => core.set_retention(group, keep_for).await,
            Action::SetSettings { group, settings } => core.set_settings(group, settings).await,
            Action::SetAgreement { group, text } => core.set_agreement(group, text).await,
            Action::SetCrisisResources { group, text } => {
                core.set_crisis_resources(group, text).await
            }
            Action::RevokeInvite { group, invite } => core.revoke_invite(group, invite).await,
        }
    }
}

/// Requests for the facilitator tools.
pub(crate) enum ModerationCommand {
    Report {
        group: GroupId,
        seq: Seq,
        reason: String,
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
    Urgent {
        group: GroupId,
        text: String,
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
    AcceptAgreement {
        group: GroupId,
        version: u32,
        /// The text the person was shown: it must be the agreement's.
        text: String,
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
    Invites {
        group: GroupId,
        reply: oneshot::Sender<Result<Vec<InviteInfo>, ClientError>>,
    },
    InviteOf {
        group: GroupId,
        user: UserId,
        reply: oneshot::Sender<Result<Option<InviteId>, ClientError>>,
    },
    Departure {
        group: GroupId,
        reply: oneshot::Sender<Result<Option<Departure>, ClientError>>,
    },
    Pinned {
        group: GroupId,
        reply: oneshot::Sender<Result<PinnedInfo, ClientError>>,
    },
    Status {
        group: GroupId,
        reply: oneshot::Sender<Result<Status, ClientError>>,
    },
    Log {
        group: GroupId,
        reply: oneshot::Sender<Result<Vec<ModerationEntry>, ClientError>>,
    },
    DeleteRecentOf {
        group: GroupId,
        user: UserId,
        count: usize,
        reply: oneshot::Sender<Result<usize, ClientError>>,
    },
    Decline {
        group: GroupId,
        user: UserId,
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
    OpenPrivate {
        group: GroupId,
        with: UserId,
        reply: oneshot::Sender<Result<GroupId, ClientError>>,
    },
    Queue {
        group: GroupId,
        reply: oneshot::Sender<Result<Vec<(String, FacilitatorItem)>, ClientError>>,
    },
    Resolve {
        id: String,
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
    AcceptGroup {
        group: GroupId,
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
    JoinRequests {
        group: GroupId,
        reply: oneshot::Sender<Result<Vec<JoinRequest>, ClientError>>,
    },
    Notices {
        group: GroupId,
        reply: oneshot::Sender<Result<Vec<GroupNotice>, ClientError>>,
    },
    Held {
        group: GroupId,
        reply: oneshot::Sender<Result<Vec<HeldMessage>, ClientError>>,
    },
    SendHeldAnyway {
        group: GroupId,
        id: HeldId,
        epoch: u64,
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
    DiscardHeld {
        group: GroupId,
        id: HeldId,
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
}

/// Carries out one command on the core and sends its reply. [`Command::Shutdown`] is the
/// runner's to handle (it closes the core first); here it is only acknowledged.
pub(crate) async fn dispatch(core: &mut Core, cmd: Command) {
    match cmd {
        Command::CreateGroup(reply) => {
            let _ = reply.send(core.create_group().await);
        }
        Command::CreateInvite {
            group,
            options,
            reply,
        } => {
            let _ = reply.send(core.create_invite(group, options).await);
        }
        Command::Join {
            invite,
            note,
            reply,
        } => {
            let _ = reply.send(core.join(invite, note).await);
        }
        Command::Approve { group, user, reply } => {
            let _ = reply.send(core.approve(group, user).await);
        }
        Command::Op { group, body, reply } => {
            let _ = reply.send(core.append(group, *body).await);
        }
        Command::Send {
            group,
            text,
            reply_to,
            reply,
        } => {
            let _ = reply.send(core.send_text(group, text, reply_to).await);
        }
        Command::History {
            group,
            before,
            limit,
            reply,
        } => {
            let _ = reply.send(core.history(group, before, limit).await);
        }
        Command::SeqOfNumber {
            group,
            number,
            reply,
        } => {
            let _ = reply.send(core.seq_of_number(group, number).await);
        }
        Command::MessagePlace {
            group,
            message,
            reply,
        } => {
            let _ = reply.send(core.message_place(group, message).await);
        }
        Command::Groups(reply) => {
            let _ = reply.send(core.groups().await);
        }
        Command::Members { group, reply } => {
            let _ = reply.send(core.members(group));
        }
        Command::SafetyNumber { user, reply } => {
            let _ = reply.send(core.safety_number(user));
        }
        Command::Inspect { envelope, reply } => {
            let _ = reply.send(core.inspect(&envelope).await);
        }
        Command::Sync(reply) => {
            let _ = reply.send(core.sync().await);
        }
        Command::Synced(reply) => {
            let _ = reply.send(core.synced().await);
        }
        Command::Registered(reply) => {
            let _ = reply.send(core.is_registered());
        }
        Command::LinkStart { code, reply } => {
            let _ = reply.send(core.link_start(&code).await);
        }
        Command::LinkConfirm(reply) => {
            let _ = reply.send(core.link_confirm().await);
        }
        Command::LinkCancel(reply) => {
            core.link_cancel().await;
            let _ = reply.send(());
        }
        Command::OwnDevices(reply) => {
            let _ = reply.send(core.own_devices());
        }
        Command::OwnEntry(reply) => {
            let _ = reply.send(core.own_entry());
        }
        Command::Unlink { device, reply } => {
            let _ = reply.send(core.unlink_device(device).await);
        }
        Command::Moderation(cmd) => moderate(core, cmd).await,
        Command::GroupWork(cmd) => crate::group_work::dispatch(core, cmd).await,
        Command::Act { action, reply } => {
            let _ = reply.send(action.run(core).await);
        }
        Command::Shutdown(done) => {
            let _ = done.send(());
        }
    }
}

/// Carries out one facilitator-tool command on the core and sends its reply.
async fn moderate(core: &mut Core, cmd: ModerationCommand) {
    use ModerationCommand as M;
    match cmd {
        M::Report {
            group,
            seq,
            reason,
            reply,
        } => {
            let _ = reply.send(core.report(group, seq, reason).await);
        }
        M::Urgent { group, text, reply } => {
            let _ = reply.send(core.request_facilitator(group, text).await);
        }
        M::AcceptAgreement {
            group,
            version,
            text,
            reply,
        } => {
            let _ = reply.send(core.accept_agreement(group, version, &text).await);
        }
        M::Invites { group, reply } => {
            let _ = reply.send(core.invites(group).await);
        }
        M::InviteOf { group, user, reply } => {
            let _ = reply.send(core.invite_of(group, user).await);
        }
        M::Departure { group, reply } => {
            let _ = reply.send(core.departure(group).await);
        }
        M::Pinned { group, reply } => {
            let _ = reply.send(core.pinned(group).await);
        }
        M::Status { group, reply } => {
            let _ = reply.send(core.status(group));
        }
        M::Log { group, reply } => {
            let _ = reply.send(core.moderation_log(group).await);
        }
        M::DeleteRecentOf {
            group,
            user,
            count,
            reply,
        } => {
            let _ = reply.send(core.delete_recent_of(group, user, count).await);
        }
        M::Decline { group, user, reply } => {
            let _ = reply.send(core.decline(group, user).await);
        }
        M::OpenPrivate { group, with, reply } => {
            let _ = reply.send(core.open_private(group, with).await);
        }
        M::Queue { group, reply } => {
            let _ = reply.send(core.facilitator_queue(group).await);
        }
        M::Resolve { id, reply } => {
            let _ = reply.send(core.resolve(&id).await);
        }
        M::AcceptGroup { group, reply } => {
            let _ = reply.send(core.accept_group(group).await);
        }
        M::Notices { group, reply } => {
            let _ = reply.send(core.notices(group).await);
        }
        M::JoinRequests { group, reply } => {
            let _ = reply.send(core.join_requests(group).await);
        }
        M::Held { group, reply } => {
            let _ = reply.send(core.held(group).await);
        }
        M::SendHeldAnyway {
            group,
            id,
            epoch,
            reply,
        } => {
            let _ = reply.send(core.send_held_anyway(group, id, epoch).await);
        }
        M::DiscardHeld { group, id, reply } => {
            let _ = reply.send(core.discard_held(group, id).await);
        }
    }
}
