//! [`Session`]: one unlocked profile — a [`ClientCore`] running under its [`Driver`], the task
//! that hands its events to the JavaScript callback, and one method per command or read, taking
//! the parameter objects of [`crate::dto`] and returning their mirrors. [`crate::api`] exports
//! these over the browser's store and websocket; being generic over the store and the network,
//! the same code runs in the browser tests over the in-memory relay.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use confide_client_core::{
    ClientCore, ClientError, ClientStore, Event, Invite, InviteOptions, Network, Profile,
};
use confide_protocol::group_log::OpBody;
use confide_protocol::group_work::{MeetingSchedule, SafetyPlan};
use confide_protocol::ids::RoundId;
use confide_protocol::{DeviceId, DeviceIdentity, GroupId, InviteId, MessageId, Seq, UserId};
use futures_channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use futures_util::StreamExt as _;
use futures_util::future::LocalBoxFuture;
use tsify::Tsify as _;
use wasm_bindgen::JsValue;

use crate::driver::{Driver, PushLink};
use crate::dto::{self, ApiError, CoreEvent, Me, parse_id};
use crate::group_work as gw;
use crate::host::{Output, WebHost};

/// An unlocked profile: see the module documentation.
pub struct Session<S: ClientStore, N: Network> {
    driver: Driver<S, N>,
    me: Me,
    /// Where events go (to [`forward`]); kept to report a moderation reason that was not sent.
    out: UnboundedSender<Output>,
    /// Set when [`Session::stop`] begins: [`forward`] then delivers nothing but connection
    /// states, so no message text reaches a tab after it was told the profile is locked.
    stopping: Rc<Cell<bool>>,
}

impl<S: ClientStore, N: Network> std::fmt::Debug for Session<S, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

/// Hands every output of the core and the driver to `on_event`, as the [`CoreEvent`] object,
/// until the core and driver are gone. The callback runs here, never inside a step of the core;
/// what it throws is its own business (the next event still goes).
///
/// Once `stopping` is set, only connection states are delivered: events still queued when the
/// profile is locked are dropped.
async fn forward(
    mut outputs: UnboundedReceiver<Output>,
    on_event: js_sys::Function,
    stopping: Rc<Cell<bool>>,
) {
    while let Some(output) = outputs.next().await {
        if stopping.get() && !matches!(output, Output::Connection(_)) {
            continue;
        }
        let Some(event) = CoreEvent::from_output(output) else {
            continue;
        };
        // Serializing holds only strings and numbers clamped below 2^53 (`dto::js_number`,
        // whatever a hostile member signed): it does not fail; if it ever did, that one event
        // is left out rather than stopping the rest.
        if let Ok(value) = event.into_js() {
            let _ = on_event.call1(&JsValue::UNDEFINED, &value);
        }
    }
}

/// A duration given in seconds.
fn secs(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

impl<S, N> Session<S, N>
where
    S: ClientStore + 'static,
    N: Network + 'static,
    N::Link: PushLink,
{
    /// Starts the core for `identity` and `profile` over `store` and `net`, and its driver,
    /// which connects at once (registering the device with the server if it is new). Every
    /// event goes to `on_event`.
    ///
    /// # Errors
    ///
    /// As `ClientCore::new`: the store cannot be read.
    pub async fn start(
        store: S,
        net: N,
        identity: DeviceIdentity,
        profile: Profile,
        on_event: js_sys::Function,
    ) -> Result<Session<S, N>, ApiError> {
        let me = Me {
            user: profile.user.to_string(),
            device: identity.device_id().to_string(),
            display_name: profile.display_name.clone(),
        };
        let (out, outputs) = unbounded();
        let host = Box::new(WebHost::new(out.clone()));
        let core = ClientCore::new(store, net, host, identity, profile, None).await?;
        let stopping = Rc::new(Cell::new(false));
        wasm_bindgen_futures::spawn_local(forward(outputs, on_event, stopping.clone()));
        let driver = Driver::spawn(core, out.clone());
        Ok(Session {
            driver,
            me,
            out,
            stopping,
        })
    }

    /// Who this device is.
    pub fn me(&self) -> &Me {
        &self.me
    }

    /// Closes the core (storing what is pending) and its connection; returns once it is done.
    pub async fn stop(&self) {
        self.stopping.set(true);
        self.driver.stop().await;
    }

    /// Runs one command on the core.
    async fn run<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: 'static,
        F: for<'a> FnOnce(&'a mut ClientCore<S, N>) -> LocalBoxFuture<'a, Result<T, ClientError>>
            + 'static,
    {
        Ok(self.driver.call(f).await??)
    }

    /// Whether the server has registered this device (the first connection registers it).
    pub async fn is_registered(&self) -> Result<bool, ApiError> {
        self.run(|core| Box::pin(async move { Ok(core.is_registered()) }))
            .await
    }

    /// Connects if needed and fetches everything new in every group.
    pub async fn sync(&self) -> Result<(), ApiError> {
        self.run(|core| Box::pin(core.sync())).await
    }

    /// The groups this device knows.
    pub async fn groups(&self) -> Result<Vec<dto::GroupInfo>, ApiError> {
        self.run(|core| {
            Box::pin(async move {
                let groups = core.groups().await;
                let mut labels = core.labels().await?;
                Ok(groups
                    .into_iter()
                    .map(|g| {
                        let label = labels.remove(&g.group);
                        dto::GroupInfo {
                            label,
                            ..dto::GroupInfo::from(g)
                        }
                    })
                    .collect())
            })
        })
        .await
    }

    /// Up to `limit` messages before `before` (or the newest), oldest first.
    pub async fn history(&self, p: dto::HistoryParams) -> Result<dto::HistoryPage, ApiError> {
        let group: GroupId = parse_id(&p.group, "group")?;
        let before = p.before.map(Seq);
        let limit = usize::try_from(p.limit).unwrap_or(usize::MAX);
        let messages = self
            .run(move |core| Box::pin(async move { core.history(group, before, limit).await }))
            .await?;
        Ok(dto::HistoryPage {
            messages: messages.into_iter().map(dto::ChatMessage::from).collect(),
        })
    }

    /// Sends a text message; returns it as stored once the server acknowledged it.
    pub async fn send_text(&self, p: dto::SendTextParams) -> Result<dto::ChatMessage, ApiError> {
        let group: GroupId = parse_id(&p.group, "group")?;
        let reply_to: Option<MessageId> = match &p.reply_to {
            Some(id) => Some(parse_id(id, "replyTo")?),
            None => None,
        };
        let text = p.text;
        let warnings = p.warnings.unwrap_or_default();
        let sent = if warnings.is_empty() {
            self.run(move |core| Box::pin(core.send_text(group, text, reply_to)))
                .await?
        } else {
            self.run(move |core| {
                Box::pin(core.send_text_with_warnings(group, text, reply_to, warnings))
            })
            .await?
        };
        Ok(sent.into())
    }

    /// Creates a group with this user as its facilitator; returns its id.
    pub async fn create_group(&self) -> Result<String, ApiError> {
        let group = self.run(|core| Box::pin(core.create_group())).await?;
        Ok(group.to_string())
    }

    /// Creates an invite.
    pub async fn create_invite(
        &self,
        p: dto::CreateInviteParams,
    ) -> Result<dto::InviteCreated, ApiError> {
        let group: GroupId = parse_id(&p.group, "group")?;
        let mut options = InviteOptions::new().requires_approval(p.requires_approval);
        if let Some(max_uses) = p.max_uses {
            options = options.max_uses(max_uses);
        }
        if let Some(valid_for) = p.valid_for_secs {
            options = options.valid_for(secs(valid_for));
        }
        let invite = self
            .run(move |core| Box::pin(core.create_invite(group, options)))
            .await?;
        Ok(invite.into())
    }

    /// Joins with an invite (its text, or an https link with `#invite=`).
    pub async fn join(&self, p: dto::JoinParams) -> Result<dto::JoinOutcome, ApiError> {
        let invite = Invite::from_link(&p.invite)?;
        let note = p.note;
        let outcome = self
            .run(move |core| Box::pin(core.join(invite, note)))
            .await?;
        Ok(outcome.into())
    }

    /// Approves a pending join request.
    pub async fn approve(&self, p: dto::GroupUserParams) -> Result<(), ApiError> {
        let (group, user) = group_user(&p)?;
        self.run(move |core| Box::pin(core.approve(group, user)))
            .await
    }

    /// Declines a pending join request.
    pub async fn decline(&self, p: dto::GroupUserParams) -> Result<(), ApiError> {
        let (group, user) = group_user(&p)?;
        self.run(move |core| Box::pin(core.decline(group, user)))
            .await
    }

    /// Pending join requests.
    pub async fn join_requests(
        &self,
        p: dto::GroupParams,
    ) -> Result<Vec<dto::JoinRequest>, ApiError> {
        let group: GroupId = parse_id(&p.group, "group")?;
        let requests = self
            .run(move |core| Box::pin(core.join_requests(group)))
            .await?;
        Ok(requests.into_iter().map(dto::JoinRequest::from).collect())
    }

    /// A group's members.
    pub async fn members(&self, p: dto::GroupParams) -> Result<Vec<dto::MemberInfo>, ApiError> {
        let group: GroupId = parse_id(&p.group, "group")?;
        let members = self
            .run(move |core| Box::pin(async move { core.members(group) }))
            .await?;
        Ok(members.into_iter().map(dto::MemberInfo::from).collect())
    }

    /// The safety number to compare with a user out of band.
    pub async fn safety_number(&self, p: dto::UserParams) -> Result<String, ApiError> {
        let user: UserId = parse_id(&p.user, "user")?;
        self.run(move |core| Box::pin(async move { core.safety_number(user) }))
            .await
    }

    /// Gives a group a label on this device (none removes it).
    pub async fn set_label(&self, p: dto::SetLabelParams) -> Result<(), ApiError> {
        let group: GroupId = parse_id(&p.group, "group")?;
        self.run(move |core| {
            Box::pin(async move { core.set_label(group, p.label.as_deref()).await })
        })
        .await
    }

    /// The draft kept for a group.
    pub async fn draft(&self, p: dto::GroupParams) -> Result<Option<String>, ApiError> {
        let group: GroupId = parse_id(&p.group, "group")?;
        self.run(move |core| Box::pin(core.draft(group))).await
    }

    /// Keeps (or, empty, removes) a group's draft.
    pub async fn set_draft(&self, p: dto::SetDraftParams) -> Result<(), ApiError> {
        let group: GroupId = parse_id(&p.group, "group")?;
        self.run(move |core| Box::pin(async move { core.set_draft(group, &p.text).await }))
            .await
    }

    /// Marks a group read up to message `number`.
    pub async fn mark_read(&self, p: dto::MarkReadParams) -> Result<(), ApiError> {
        let group: GroupId = parse_id(&p.group, "group")?;
        self.run(move |core| Box::pin(core.mark_read(group, p.number)))
            .await
    }

    /// Leaves a group.
    pub async fn leave(&self, p: dto::GroupParams) -> Result<(), ApiError> {
        let group: GroupId = parse_id(&p.group, "group")?;
        self.run(move |core| Box::pin(core.leave(group))).await
    }

    /// Removes (and perhaps bans) a member, with an optional reason.
    pub async fn remove(&self, p: dto::RemoveParams) -> Result<(), ApiError> {
        let group: GroupId = parse_id(&p.group, "group")?;
        let user: UserId = parse_id(&p.user, "user")?;
        let ban = p.ban.unwrap_or(false);
        let reason = p.reason;
        self.moderate(group, OpBody::Remove { user, ban }, reason, "removal")
            .await
    }

    /// Appends a moderation op, then sends its `reason` if any. The call fails only if the op
    /// was not made: once it is in the log, a reason that cannot be sent resolves the call all
    /// the same (a retry would make the op twice, or fail with "not a member") and is reported
    /// as a `sendFailed` event for the group.
    async fn moderate(
        &self,
        group: GroupId,
        body: OpBody,
        reason: Option<String>,
        what: &'static str,
    ) -> Result<(), ApiError> {
        let out = self.out.clone();
        self.run(move |core| {
            Box::pin(async move {
                let seq = core.append(group, body).await?;
                if let Some(text) = reason
                    && let Err(e) = core.reason(group, seq, text).await
                {
                    let reason = format!("the {what} was made, but its reason was not sent: {e}");
                    let code = e.code().to_string();
                    let _ = out.unbounded_send(Output::Event(Box::new(Event::SendFailed {
                        group,
                        reason,
                        code,
                    })));
                }
                Ok(())
            })
        })
        .await
    }

    /// Lifts a ban.
    pub async fn unban(&self, p: dto::GroupUserParams) -> Result<(), ApiError> {
        let (group, user) = group_user(&p)?;
        self.run(move |core| Box::pin(core.unban(group, user)))
            .await
    }

    /// Mutes a member for a while, with an optional reason.
    pub async fn mute(&self, p: dto::MuteParams) -> Result<(), ApiError> {
        let group: GroupId = parse_id(&p.group, "group")?;
        let user: UserId = parse_id(&p.user, "user")?;
        let duration = secs(p.duration_secs);
        let reason = p.reason;
        // From now by the host's clock, as the core's `mute` does (this host is the browser's).
        let until = crate::host::now().saturating_add(duration);
        self.moderate(group, OpBody::Mute { user, until }, reason, "mute")
            .await
    }

    /// Lifts a mute.
    pub async fn unmute(&self, p: dto::GroupUserParams) -> Result<(), ApiError> {
        let (group, user) = group_user(&p)?;
        self.run(move |core| Box::pin(core.unmute(group, user)))
            .await
    }

    /// Gives a member a role.
    pub async fn set_role(&self, p: dto::SetRoleParams) -> Result<(), ApiError> {
        let group: GroupId = parse_id(&p.group, "group")?;
        let user: UserId = parse_id(&p.user, "user")?;
        let role = p.role.into();
        self.run(move |core| Box::pin(core.set_role(group, user, role)))
            .await
    }

    /// Locks or unlocks the chat.
    pub async fn set_locked(&self, p: dto::SetLockedParams) -> Result<(), ApiError> {
        let group: GroupId = parse_id(&p.group, "group")?;
        let locked = p.locked;
        self.run(move |core| Box::pin(core.set_locked(group, locked)))
            .await
    }

    /// Sets or clears the weekly open hours.
    pub async fn set_open_hours(&self, p: dto::SetOpenHoursParams) -> Result<(), ApiError> {
        let group: GroupId = parse_id(&p.group, "group")?;
        let schedule = p.schedule.map(Into::into);
        self.run(move |core| Box::pin(core.set_open_hours(group, schedule)))
            .await
    }

    /// Sets slow mode (0 turns it off).
    pub async fn set_slow_mode(&self, p: dto::SetSlowModeParams) -> Result<(), ApiError> {
        let group: GroupId = parse_id(&p.group, "group")?;
        let seconds = p.seconds;
        self.run(move |core| Box::pin(core.set_slow_mode(group, seconds)))
            .await
    }

    /// Deletes messages for everyone.
    pub async fn delete_for_everyone(
        &self,
        p: dto::DeleteForEveryoneParams,
    ) -> Result<(), ApiError> {
        let group: GroupId = parse_id(&p.group, "group")?;
        let messages = p
            .messages
            .iter()
            .map(|id| parse_id::<MessageId>(id, "messages"))
            .collect::<Result<Vec<_>, _>>()?;
        self.run(move |core| Box::pin(core.delete_for_everyone(group, messages)))
            .await
    }

    /// Deletes for everyone the latest `count` messages of a member; returns how many.
    pub async fn delete_recent_of(&self, p: dto::DeleteRecentOfParams) -> Result<u32, ApiError> {
        let group: GroupId = parse_id(&p.group, "group")?;
        let user: UserId = parse_id(&p.user, "user")?;
        let count = usize::try_from(p.count).unwrap_or(usize::MAX);
        let deleted = self
            .run(move |core| Box::pin(core.delete_recent_of(group, user, count)))
            .await?;
        Ok(u32::try_from(deleted).unwrap_or(u32::MAX))
    }

    /// Sets how long messages are kept (absent: kept).
    pub async fn set_retention(&self, p: dto::SetRetentionParams) -> Result<(), ApiError> {
        let group: GroupId = parse_id(&p.group, "group")?;
        let keep_for = p.keep_for_secs.map(secs);
        self.run(move |core| Box::pin(core.set_retention(group, keep_for)))
            .await
    }

    /// Changes the group settings.
    pub async fn set_settings(&self, p: dto::SetSettingsParams) -> Result<(), ApiError> {
        let group: GroupId = parse_id(&p.group, "group")?;
        let settings = p.settings();
        self.run(move |core| Box::pin(core.set_settings(group, settings)))
            .await
    }

    /// Pins a new version of the group agreement.
    pub async fn set_agreement(&self, p: dto::GroupTextParams) -> Result<(), ApiError> {
        let group: GroupId = parse_id(&p.group, "group")?;
        let text = p.text;
        self.run(move |core| Box::pin(core.set_agreement(group, text)))
            .await
    }

    /// Accepts the agreement version and text that were shown.
    pub async fn accept_agreement(&self, p: dto::AcceptAgreementParams) -> Result<(), ApiError> {
        let group: GroupId = parse_id(&p.group, "group")?;
        let (version, text) = (p.version, p.text);
        self.run(move |core| {
            Box::pin(async move { core.accept_agreement(group, version, &text).await })
        })
        .await
    }

    /// Pins "if you are in crisis" resources.
    pub async fn set_crisis_resources(&self, p: dto::GroupTextParams) -> Result<(), ApiError> {
        let group: GroupId = parse_id(&p.group, "group")?;
        let text = p.text;
        self.run(move |core| Box::pin(core.set_crisis_resources(group, text)))
            .await
    }

    /// The group's pinned texts.
    pub async fn pinned(&self, p: dto::GroupParams) -> Result<dto::PinnedInfo, ApiError> {
        let group: GroupId = parse_id(&p.group, "group")?;
        let pinned = self
            .run(move |core| Box::pin(async move { core.pinned(group).await }))
            .await?;
        Ok(pinned.into())
    }

    /// What this user may do in the group right now.
    pub async fn status(&self, p: dto::GroupParams) -> Result<dto::Status, ApiError> {
        let group: GroupId = parse_id(&p.group, "group")?;
        let status = self
            .run(move |core| Box::pin(async move { core.status(group) }))
            .await?;
        Ok(status.into())
    }

    /// Reports a received message to the facilitators.
    pub async fn report(&self, p: dto::ReportParams) -> Result<(), ApiError> {
        let group: GroupId = parse_id(&p.group, "group")?;
        let (seq, reason) = (Seq(p.seq), p.reason);
        self.run(move |core| Box::pin(core.report(group, seq, reason)))
            .await
    }

    /// "I need a facilitator".
    pub async fn request_facilitator(&self, p: dto::GroupTextParams) -> Result<(), ApiError> {
        let group: GroupId = parse_id(&p.group, "group")?;
        let text = p.text;
        self.run(move |core| Box::pin(core.request_facilitator(group, text)))
            .await
    }

    /// Reports and urgent requests waiting for a facilitator, oldest first.
    pub async fn facilitator_queue(
        &self,
        p: dto::GroupParams,
    ) -> Result<Vec<dto::QueueItem>, ApiError> {
        let group: GroupId = parse_id(&p.group, "group")?;
        let queue = self
            .run(move |core| Box::pin(async move { core.facilitator_queue(group).await }))
            .await?;
        Ok(queue
            .into_iter()
            .filter_map(|(id, item)| dto::QueueItem::from_core(id, item))
            .collect())
    }

    /// Marks a queued item as handled.
    pub async fn resolve(&self, p: dto::ResolveParams) -> Result<(), ApiError> {
        let id = p.id;
        self.run(move |core| Box::pin(async move { core.resolve(&id).await }))
            .await
    }

    /// The moderation log.
    pub async fn moderation_log(
        &self,
        p: dto::GroupParams,
    ) -> Result<Vec<dto::ModerationEntry>, ApiError> {
        let group: GroupId = parse_id(&p.group, "group")?;
        let log = self
            .run(move |core| Box::pin(async move { core.moderation_log(group).await }))
            .await?;
        Ok(log.into_iter().map(dto::ModerationEntry::from).collect())
    }

    /// Every invite of the group.
    pub async fn invites(&self, p: dto::GroupParams) -> Result<Vec<dto::InviteInfo>, ApiError> {
        let group: GroupId = parse_id(&p.group, "group")?;
        let invites = self
            .run(move |core| Box::pin(async move { core.invites(group).await }))
            .await?;
        Ok(invites.into_iter().map(dto::InviteInfo::from).collect())
    }

    /// Revokes an invite.
    pub async fn revoke_invite(&self, p: dto::RevokeInviteParams) -> Result<(), ApiError> {
        let group: GroupId = parse_id(&p.group, "group")?;
        let invite: InviteId = parse_id(&p.invite, "invite")?;
        self.run(move |core| Box::pin(core.revoke_invite(group, invite)))
            .await
    }

    /// The invite a member joined with, if any.
    pub async fn invite_of(&self, p: dto::GroupUserParams) -> Result<Option<String>, ApiError> {
        let (group, user) = group_user(&p)?;
        let invite = self
            .run(move |core| Box::pin(async move { core.invite_of(group, user).await }))
            .await?;
        Ok(invite.map(|id| id.to_string()))
    }

    /// Opens a private conversation with a member; returns the new group.
    pub async fn open_private(&self, p: dto::OpenPrivateParams) -> Result<String, ApiError> {
        let group: GroupId = parse_id(&p.group, "group")?;
        let with: UserId = parse_id(&p.with, "with")?;
        let private = self
            .run(move |core| Box::pin(core.open_private(group, with)))
            .await?;
        Ok(private.to_string())
    }

    /// Accepts being in a group someone added this device to.
    pub async fn accept_group(&self, p: dto::GroupParams) -> Result<(), ApiError> {
        let group: GroupId = parse_id(&p.group, "group")?;
        self.run(move |core| Box::pin(core.accept_group(group)))
            .await
    }

    /// What members see among a group's messages (removals, departures, deletions).
    pub async fn notices(&self, p: dto::GroupParams) -> Result<Vec<dto::GroupNotice>, ApiError> {
        let group: GroupId = parse_id(&p.group, "group")?;
        let notices = self
            .run(move |core| Box::pin(async move { core.notices(group).await }))
            .await?;
        Ok(notices.into_iter().map(dto::GroupNotice::from).collect())
    }

    /// This user's messages to the group that are not sent yet, in the order they go.
    pub async fn held(&self, p: dto::GroupParams) -> Result<Vec<dto::HeldMessage>, ApiError> {
        let group: GroupId = parse_id(&p.group, "group")?;
        let held = self
            .run(move |core| Box::pin(async move { core.held(group).await }))
            .await?;
        Ok(held.into_iter().map(dto::HeldMessage::from).collect())
    }

    /// Sends a held message that waits because people joined since it was written.
    pub async fn send_held_anyway(&self, p: dto::SendHeldParams) -> Result<(), ApiError> {
        let (group, id) = held_params(&p.group, &p.id)?;
        let epoch = p.epoch;
        self.run(move |core| Box::pin(core.send_held_anyway(group, id, epoch)))
            .await
    }

    /// Discards a held message: it is never sent.
    pub async fn discard_held(&self, p: dto::HeldParams) -> Result<(), ApiError> {
        let (group, id) = held_params(&p.group, &p.id)?;
        self.run(move |core| Box::pin(core.discard_held(group, id)))
            .await
    }

    /// How this device's membership of the group ended, if it did.
    pub async fn departure(&self, p: dto::GroupParams) -> Result<Option<dto::Departure>, ApiError> {
        let group: GroupId = parse_id(&p.group, "group")?;
        let departure = self
            .run(move |core| Box::pin(async move { core.departure(group).await }))
            .await?;
        Ok(departure.map(dto::Departure::from))
    }

    /// Where a message is on this device, by its id.
    pub async fn message_place(
        &self,
        p: dto::MessagePlaceParams,
    ) -> Result<Option<dto::MessagePlace>, ApiError> {
        let group: GroupId = parse_id(&p.group, "group")?;
        let message: MessageId = parse_id(&p.message, "message")?;
        let place = self
            .run(move |core| Box::pin(async move { core.message_place(group, message).await }))
            .await?;
        Ok(place.map(dto::MessagePlace::from))
    }

    /// The `seq` of the message this device numbered `number` (a JavaScript number: a `seq` is
    /// far below 2^53).
    pub async fn seq_of_number(&self, p: dto::SeqOfNumberParams) -> Result<Option<f64>, ApiError> {
        let group: GroupId = parse_id(&p.group, "group")?;
        let number = p.number;
        let seq = self
            .run(move |core| Box::pin(async move { core.seq_of_number(group, number).await }))
            .await?;
        Ok(seq.map(|s| s.0 as f64))
    }
}

impl<S, N> Session<S, N>
where
    S: ClientStore + 'static,
    N: Network + 'static,
    N::Link: PushLink,
{
    /// What can be known about an invite before joining with it (the core's
    /// `preview_invite`): read from the link, then checked against the group's log, fetched
    /// and verified; offline, only what the link says.
    pub async fn preview_invite(
        &self,
        p: dto::PreviewInviteParams,
    ) -> Result<dto::InvitePreview, ApiError> {
        let invite = Invite::from_link(&p.invite)?;
        let preview = self
            .run(move |core| Box::pin(async move { core.preview_invite(&invite).await }))
            .await?;
        Ok(preview.into())
    }

    /// A group's current settings, from its verified log.
    pub async fn settings(&self, p: dto::GroupParams) -> Result<dto::SettingsInfo, ApiError> {
        let group: GroupId = parse_id(&p.group, "group")?;
        let settings = self
            .run(move |core| Box::pin(async move { core.settings(group) }))
            .await?;
        Ok(settings.into())
    }
}

impl<S, N> Session<S, N>
where
    S: ClientStore + 'static,
    N: Network + 'static,
    N::Link: PushLink,
{
    /// Starts linking a new device from this one (`code`: what the new device shows, typed, or
    /// its QR text); returns the numbers to compare. The core waits here for the new device's
    /// keys (up to ten minutes).
    pub async fn link_start(&self, p: dto::LinkStartParams) -> Result<dto::LinkCheck, ApiError> {
        let code = p.code;
        let check = self
            .run(move |core| Box::pin(async move { core.link_start(&code).await }))
            .await?;
        Ok(check.into())
    }

    /// The person confirmed the numbers match: once the new device's person confirmed too,
    /// adds it to this user's devices and hands it the account. Returns the new device's id.
    pub async fn link_confirm(&self) -> Result<String, ApiError> {
        let device = self.run(|core| Box::pin(core.link_confirm())).await?;
        Ok(device.to_string())
    }

    /// Stops a link under way (the numbers differ, or the person changed their mind).
    pub async fn link_cancel(&self) -> Result<(), ApiError> {
        self.run(|core| {
            Box::pin(async move {
                core.link_cancel().await;
                Ok(())
            })
        })
        .await
    }

    /// This user's devices as this device knows them.
    pub async fn own_devices(&self) -> Result<dto::OwnDevices, ApiError> {
        let devices = self
            .run(|core| Box::pin(async move { Ok(core.own_devices()) }))
            .await?;
        Ok(devices.into())
    }

    /// Unlinks another device of this user (the caller checked the passphrase).
    pub async fn unlink_device(&self, device: &str) -> Result<(), ApiError> {
        let device: DeviceId = parse_id(device, "device")?;
        self.run(move |core| Box::pin(core.unlink_device(device)))
            .await
    }
}

// The group-work tools (issue 17): meetings, content warnings, resources, check-in rounds and
// the person's own safety plan.
impl<S, N> Session<S, N>
where
    S: ClientStore + 'static,
    N: Network + 'static,
    N::Link: PushLink,
{
    /// Publishes the group's meeting schedule (moderators).
    pub async fn set_meetings(&self, p: gw::SetMeetingsParams) -> Result<(), ApiError> {
        let group: GroupId = parse_id(&p.group, "group")?;
        let schedule: MeetingSchedule = p.schedule.into();
        self.run(move |core| Box::pin(async move { core.set_meetings(group, &schedule).await }))
            .await
    }

    /// The meeting in progress or the next one, by this device's clock.
    pub async fn next_meeting(
        &self,
        p: dto::GroupParams,
    ) -> Result<Option<gw::NextMeeting>, ApiError> {
        let group: GroupId = parse_id(&p.group, "group")?;
        let next = self
            .run(move |core| Box::pin(async move { core.next_meeting(group).await }))
            .await?;
        Ok(next.map(gw::NextMeeting::from))
    }

    /// Publishes the group's content-warning topics (moderators).
    pub async fn set_warning_topics(&self, p: gw::SetWarningTopicsParams) -> Result<(), ApiError> {
        let group: GroupId = parse_id(&p.group, "group")?;
        let topics = p.document();
        self.run(move |core| Box::pin(async move { core.set_warning_topics(group, &topics).await }))
            .await
    }

    /// Adds content warnings to a message (moderators).
    pub async fn add_warning(&self, p: gw::AddWarningParams) -> Result<(), ApiError> {
        let group: GroupId = parse_id(&p.group, "group")?;
        let message: MessageId = parse_id(&p.message, "message")?;
        let warnings = p.warnings;
        self.run(move |core| Box::pin(core.add_warning(group, message, warnings)))
            .await
    }

    /// The topics this device hides in the group.
    pub async fn hidden_topics(&self, p: dto::GroupParams) -> Result<Vec<u16>, ApiError> {
        let group: GroupId = parse_id(&p.group, "group")?;
        self.run(move |core| Box::pin(async move { core.hidden_topics(group).await }))
            .await
    }

    /// Sets the topics this device hides in the group (kept here, never sent).
    pub async fn set_hidden_topics(&self, p: gw::SetHiddenTopicsParams) -> Result<(), ApiError> {
        let group: GroupId = parse_id(&p.group, "group")?;
        let topics = p.topics;
        self.run(move |core| Box::pin(core.set_hidden_topics(group, topics)))
            .await
    }

    /// Publishes the group's resource library (moderators).
    pub async fn set_resources(&self, p: gw::SetResourcesParams) -> Result<(), ApiError> {
        let group: GroupId = parse_id(&p.group, "group")?;
        let library = p.document();
        self.run(move |core| Box::pin(async move { core.set_resources(group, &library).await }))
            .await
    }

    /// Opens a check-in round with its prompt (moderators); returns the round's id.
    pub async fn open_round(&self, p: gw::OpenRoundParams) -> Result<String, ApiError> {
        let group: GroupId = parse_id(&p.group, "group")?;
        let order = p.order_ids()?;
        let closes_at = p.closes_at();
        let prompt = p.prompt;
        let round = self
            .run(move |core| Box::pin(core.open_round(group, prompt, order, closes_at)))
            .await?;
        Ok(round.to_string())
    }

    /// Closes a round (moderators).
    pub async fn close_round(&self, p: gw::RoundParams) -> Result<(), ApiError> {
        let (group, round) = round_params(&p.group, &p.round)?;
        self.run(move |core| Box::pin(core.close_round(group, round)))
            .await
    }

    /// Answers a round (a later answer replaces an earlier one).
    pub async fn answer_round(
        &self,
        p: gw::AnswerRoundParams,
    ) -> Result<dto::ChatMessage, ApiError> {
        let (group, round) = round_params(&p.group, &p.round)?;
        let text = p.text;
        let sent = self
            .run(move |core| Box::pin(core.answer_round(group, round, text)))
            .await?;
        Ok(sent.into())
    }

    /// Passes in a round.
    pub async fn pass_round(&self, p: gw::RoundParams) -> Result<dto::ChatMessage, ApiError> {
        let (group, round) = round_params(&p.group, &p.round)?;
        let sent = self
            .run(move |core| Box::pin(core.pass_round(group, round)))
            .await?;
        Ok(sent.into())
    }

    /// The group's rounds, oldest first.
    pub async fn rounds(&self, p: dto::GroupParams) -> Result<Vec<gw::RoundView>, ApiError> {
        let group: GroupId = parse_id(&p.group, "group")?;
        let rounds = self
            .run(move |core| Box::pin(async move { core.rounds(group).await }))
            .await?;
        Ok(rounds.into_iter().map(gw::RoundView::from).collect())
    }

    /// The person's safety plan (empty until they write one).
    pub async fn safety_plan(&self) -> Result<gw::SafetyPlan, ApiError> {
        let plan = self
            .run(|core| Box::pin(async move { core.safety_plan().await }))
            .await?;
        Ok(plan.into())
    }

    /// Keeps the person's safety plan (only on their devices).
    pub async fn set_safety_plan(&self, p: gw::SetSafetyPlanParams) -> Result<(), ApiError> {
        let plan: SafetyPlan = p.plan.into();
        self.run(move |core| Box::pin(core.set_safety_plan(plan)))
            .await
    }
}

/// The group and round `p` names.
fn round_params(group: &str, round: &str) -> Result<(GroupId, RoundId), ApiError> {
    Ok((parse_id(group, "group")?, parse_id(round, "round")?))
}

/// The group and user of `{ group, user }`.
fn group_user(p: &dto::GroupUserParams) -> Result<(GroupId, UserId), ApiError> {
    Ok((parse_id(&p.group, "group")?, parse_id(&p.user, "user")?))
}

/// The group and held message `p` names.
fn held_params(group: &str, id: &str) -> Result<(GroupId, confide_client_core::HeldId), ApiError> {
    let group: GroupId = parse_id(group, "group")?;
    let id = confide_client_core::HeldId::from_hex(id)
        .ok_or_else(|| ApiError::invalid(format!("id is not a held message's id: {id:?}")))?;
    Ok((group, id))
}
