//! Moderation's effects on this device and its records: deletions and retention applied to
//! stored messages, the notices members see, the moderation log, invites as the log records
//! them, how this device's membership ended, deleting a member's recent messages, and
//! private conversations.

use std::collections::HashMap;

use confide_protocol::group_log::{LogError, MemberEntry, Op, OpBody, SignedOp};
use confide_protocol::{DeviceId, GroupId, MessageId, Seq, Timestamp, UserId, policy};

use crate::Network;
use crate::error::{ClientError, Missing};
use crate::events::{ChatMessage, Event};
use crate::group::{GroupCtx, op_target};
use crate::machine::ClientCore;
use crate::receive::NUMBER_UNKNOWN;
use crate::reports::ReasonRecord;
use crate::store::{
    ClientStore, T_DELETED, T_MESSAGES, T_NOTES, T_OPS, T_PRIVATE, T_SEEN, corrupt, key2, parse,
};
use crate::types::{ModerationEntry, Status};

/// Names of every user the verified log has shown this device, and each device's user.
pub(crate) fn known_people(ctx: &GroupCtx) -> (HashMap<UserId, String>, HashMap<DeviceId, UserId>) {
    let mut names = HashMap::new();
    let mut devices = HashMap::new();
    for d in ctx.epochs.values() {
        for (device, (user, name)) in d {
            devices.insert(*device, *user);
            names.insert(*user, name.clone());
        }
    }
    (names, devices)
}

/// The non-content details of an op worth showing in an audit trail.
pub(crate) fn moderation_details(body: &OpBody) -> serde_json::Value {
    use serde_json::json;
    match body {
        OpBody::Mute { until, .. } => json!({ "until": until }),
        OpBody::Remove { ban, .. } => json!({ "ban": ban }),
        OpBody::SetRole { role, .. } => json!({ "role": role }),
        OpBody::SetSlowMode { seconds } => json!({ "seconds": seconds }),
        OpBody::SetRetention { seconds } => json!({ "seconds": seconds }),
        OpBody::SetAgreement { version, .. } | OpBody::AcceptAgreement { version, .. } => {
            json!({ "version": version })
        }
        OpBody::DeleteMessages { messages } => json!({ "messages": messages.len() }),
        OpBody::Invite {
            requires_approval,
            max_uses,
            expires_at,
            ..
        } => {
            json!({ "requires_approval": requires_approval, "max_uses": max_uses, "expires_at": expires_at })
        }
        OpBody::SetOpenHours { schedule } => json!({ "schedule": schedule }),
        OpBody::SetSettings { settings } => json!({ "settings": settings }),
        _ => json!({}),
    }
}

/// The number alone of a stored message record ([`ChatMessage::number`]): what is still read
/// of a record that no longer parses whole, so that deleting it keeps its number.
#[derive(serde::Deserialize)]
struct NumberOnly {
    number: u64,
}

impl<S: ClientStore, N: Network> ClientCore<S, N> {
    /// Every invite of the group, as its verified log records them: who made it, uses,
    /// expiry, whether it was revoked, and who joined with it.
    ///
    /// # Errors
    ///
    /// [`ClientError::UnknownGroup`] for a group this device does not know, and
    /// [`ClientError::Store`] if the store cannot be read.
    pub async fn invites(&self, group: GroupId) -> Result<Vec<crate::InviteInfo>, ClientError> {
        self.invite_records(group).await.map(|(invites, _)| invites)
    }

    /// The invite a member joined with (or was approved through), if any.
    ///
    /// # Errors
    ///
    /// [`ClientError::UnknownGroup`] for a group this device does not know, and
    /// [`ClientError::Store`] if the store cannot be read.
    pub async fn invite_of(
        &self,
        group: GroupId,
        user: UserId,
    ) -> Result<Option<confide_protocol::InviteId>, ClientError> {
        self.invite_records(group)
            .await
            .map(|(_, admitted)| admitted.get(&user).copied().flatten())
    }

    /// Deletes for everyone the last `count` messages of `user` this device holds. Returns
    /// how many.
    ///
    /// # Errors
    ///
    /// As [`Self::append`], for each op of deletions; [`ClientError::Store`] if this device's
    /// messages cannot be read. Ops appended before a failure stay.
    pub async fn delete_recent_of(
        &mut self,
        group: GroupId,
        user: UserId,
        count: usize,
    ) -> Result<usize, ClientError> {
        let r = self.delete_messages_of(group, user, count).await;
        self.end_step(r).await
    }

    /// Opens a private, equally encrypted conversation with a member of `group`
    /// (facilitators always; members only when the group's settings allow). Returns the new
    /// group.
    ///
    /// # Errors
    ///
    /// Those of a command in a group that reaches the server ([the errors every command
    /// shares](crate::ClientCore#errors)); [`ClientError::NotAllowed`] when the group's settings
    /// do not let members start private conversations; [`ClientError::NotFound`]
    /// ([`Missing::Member`](crate::Missing::Member)) if `with` is not a member; and as
    /// [`Self::create_group`] and [`Self::append`] for the new group.
    pub async fn open_private(
        &mut self,
        group: GroupId,
        with: UserId,
    ) -> Result<GroupId, ClientError> {
        let r = self.start_private(group, with).await;
        self.end_step(r).await
    }

    /// Side effects of an op on this device's data: deletions, retention, re-sending pinned
    /// texts to a new epoch (not after a `rekey`: it has no new reader).
    pub(crate) async fn after_op(&mut self, group: GroupId, body: &OpBody, epoch_changed: bool) {
        match body {
            OpBody::DeleteMessages { messages } => {
                let mut deleted = Vec::new();
                for id in messages {
                    // Remember the deletion, so the message is never shown if it arrives later.
                    self.db
                        .put_bytes(T_DELETED, &key2(group.as_bytes(), id.as_bytes()), &[1]);
                    // A read that fails fails the step (nothing of it is kept, and the op is
                    // handled again with the next sync): a message removed without its number
                    // being kept would free its position for another (§11.2).
                    let seen = match self
                        .db
                        .get::<Seq>(T_SEEN, &key2(group.as_bytes(), id.as_bytes()))
                        .await
                    {
                        Ok(seen) => seen,
                        Err(e) => {
                            self.db.fail_step(e);
                            return;
                        }
                    };
                    let Some(seq) = seen else { continue };
                    let key = key2(group.as_bytes(), &seq.0.to_be_bytes());
                    let kept = match self.db.get_bytes(T_MESSAGES, &key).await {
                        Ok(None) => None,
                        Ok(Some(plain)) => {
                            Some(match parse::<ChatMessage>(T_MESSAGES, &key, &plain) {
                                Ok(message) => {
                                    self.uncount(&message);
                                    message.number
                                }
                                // A record that does not parse still held a message: its number
                                // if that much can be read, else the marker that keeps the
                                // position taken without a number.
                                Err(_) => parse::<NumberOnly>(T_MESSAGES, &key, &plain)
                                    .map_or(NUMBER_UNKNOWN, |n| n.number),
                            })
                        }
                        Err(e) => {
                            self.db.fail_step(e);
                            return;
                        }
                    };
                    self.remove_message(&key, kept);
                    deleted.push(*id);
                }
                if !deleted.is_empty() {
                    self.save_meta(group);
                    self.emit(Event::MessagesDeleted {
                        group,
                        messages: deleted,
                    });
                }
            }
            OpBody::SetRetention { .. } => self.enforce_retention(group).await,
            _ => {}
        }
        let me = self.device();
        // Pinned texts go again to an epoch that may have new readers; a `rekey` brings none
        // (everyone in it holds the texts already), so nothing is posted again after one.
        let new_readers = epoch_changed && !matches!(body, OpBody::Rekey {});
        if new_readers
            && self.groups.get(&group).is_some_and(|c| {
                c.state
                    .member_of_device(&me)
                    .is_some_and(|(_, m)| m.role.is_moderator())
            })
        {
            self.needs_repost.insert(group);
        }
    }

    /// Deletes local messages older than the group's retention period.
    pub(crate) async fn enforce_retention(&mut self, group: GroupId) {
        let now = self.host.now();
        let Some(cutoff) = self
            .groups
            .get(&group)
            .and_then(|c| c.state.retention_cutoff(now))
        else {
            return;
        };
        let Ok(messages) = self
            .db
            .scan::<ChatMessage>(T_MESSAGES, group.as_bytes(), usize::MAX)
            .await
        else {
            return;
        };
        let mut deleted = Vec::new();
        for (key, m) in messages {
            if policy::is_past_retention(m.received_at, cutoff) {
                self.uncount(&m);
                self.remove_message(&key, Some(m.number));
                deleted.push(m.id);
            }
        }
        if !deleted.is_empty() {
            self.save_meta(group);
            self.emit(Event::MessagesDeleted {
                group,
                messages: deleted,
            });
        }
    }

    /// What this device's user may do in the group right now (muted until, locked, open
    /// hours, an agreement to accept).
    ///
    /// # Errors
    ///
    /// [`ClientError::UnknownGroup`] for a group this device does not know.
    pub fn status(&self, group: GroupId) -> Result<Status, ClientError> {
        let ctx = self.groups.get(&group).ok_or(ClientError::UnknownGroup)?;
        let user = self.profile.user;
        let t = self.host.now();
        // Fails closed: hours that cannot be evaluated count as closed (§10.1 `post` 7.2).
        let open_now = ctx.state.within_open_hours(t).unwrap_or(false);
        Ok(Status {
            role: ctx.state.role_of(&user),
            muted_until: ctx.state.muted_until(&user, t),
            locked: ctx.state.locked(),
            open_now,
            slow_mode_seconds: ctx.state.slow_mode_seconds(),
            // Only a member is asked to accept it: someone removed has nothing to accept. The
            // server's rule, by user (the same as by this device while a user has one device).
            agreement_pending: ctx.state.agreement_pending(&user),
        })
    }

    /// The group log as an audit trail: who did what and when; reasons only where this device
    /// received them (facilitators).
    ///
    /// # Errors
    ///
    /// [`ClientError::UnknownGroup`] for a group this device does not know, and
    /// [`ClientError::Store`] if the store cannot be read.
    pub async fn moderation_log(
        &self,
        group: GroupId,
    ) -> Result<Vec<ModerationEntry>, ClientError> {
        let ctx = self.groups.get(&group).ok_or(ClientError::UnknownGroup)?;
        let ops: Vec<(Vec<u8>, SignedOp)> =
            self.db.scan(T_OPS, group.as_bytes(), usize::MAX).await?;
        let mut names: HashMap<UserId, String> = HashMap::new();
        let mut devices: HashMap<DeviceId, UserId> = HashMap::new();
        for d in ctx.epochs.values() {
            for (device, (user, name)) in d {
                devices.insert(*device, *user);
                names.insert(*user, name.clone());
            }
        }
        let mut out = Vec::new();
        for (_, signed) in ops {
            let Ok(op) = signed.parse_unverified() else {
                continue;
            };
            let author = devices.get(&op.author).copied();
            let target = op_target(&op.body);
            let reason = self
                .db
                .get::<ReasonRecord>(T_NOTES, &key2(group.as_bytes(), &op.seq.to_be_bytes()))
                .await?
                .map(|r| r.text);
            let details = moderation_details(&op.body);
            out.push(ModerationEntry {
                op_seq: op.seq,
                at: op.at,
                action: op.body.action().to_string(),
                author,
                author_name: author.and_then(|a| names.get(&a).cloned()),
                target,
                target_name: target.and_then(|t| names.get(&t).cloned()),
                details,
                reason,
            });
        }
        Ok(out)
    }

    /// The group's invites from its stored, verified log, and for each user admitted the invite
    /// of their latest admission (`None`: added without one).
    #[allow(clippy::type_complexity)]
    pub(crate) async fn invite_records(
        &self,
        group: GroupId,
    ) -> Result<
        (
            Vec<crate::InviteInfo>,
            HashMap<UserId, Option<confide_protocol::InviteId>>,
        ),
        ClientError,
    > {
        let ctx = self.groups.get(&group).ok_or(ClientError::UnknownGroup)?;
        let (names, devices) = known_people(ctx);
        let ops: Vec<(Vec<u8>, SignedOp)> =
            self.db.scan(T_OPS, group.as_bytes(), usize::MAX).await?;
        let mut created = HashMap::new();
        let mut joined: HashMap<confide_protocol::InviteId, Vec<(UserId, String)>> = HashMap::new();
        let mut admitted = HashMap::new();
        for (_, signed) in ops {
            // Stored ops were verified when applied.
            let Ok(op) = signed.parse_unverified() else {
                continue;
            };
            let (member, invite) = match &op.body {
                OpBody::Invite { invite, .. } => {
                    created.insert(*invite, (devices.get(&op.author).copied(), op.at));
                    continue;
                }
                OpBody::Join { invite, member, .. } => (member, Some(*invite)),
                OpBody::Add { invite, member, .. } => (member, *invite),
                _ => continue,
            };
            admitted.insert(member.user, invite);
            if let Some(invite) = invite {
                joined
                    .entry(invite)
                    .or_default()
                    .push((member.user, member.display_name.clone()));
            }
        }
        let invites = ctx
            .state
            .invites()
            .iter()
            .map(|(id, state)| {
                let (by, at) = created.get(id).copied().unwrap_or((None, Timestamp(0)));
                let by = by.unwrap_or(UserId([0; 16]));
                crate::InviteInfo {
                    id: *id,
                    created_by: by,
                    created_by_name: names.get(&by).cloned(),
                    created_at: at,
                    requires_approval: state.requires_approval,
                    uses: state.uses,
                    max_uses: state.max_uses,
                    expires_at: state.expires_at,
                    revoked: state.revoked,
                    joined: joined.remove(id).unwrap_or_default(),
                }
            })
            .collect();
        Ok((invites, admitted))
    }

    /// How this device's membership ended, from the op the verified log names for it.
    ///
    /// # Errors
    ///
    /// [`ClientError::UnknownGroup`] for a group this device does not know; [`ClientError::Store`]
    /// if the store cannot be read, or the op it names is damaged.
    pub async fn departure(&self, group: GroupId) -> Result<Option<crate::Departure>, ClientError> {
        let ctx = self.groups.get(&group).ok_or(ClientError::UnknownGroup)?;
        let Some(seq) = ctx.state.departure_of(&self.device()) else {
            return Ok(None);
        };
        let Some(signed) = self
            .db
            .get::<SignedOp>(T_OPS, &key2(group.as_bytes(), &seq.to_be_bytes()))
            .await?
        else {
            return Ok(None);
        };
        // Verified when it was stored: one that no longer parses is a damaged store.
        let op = signed
            .parse_unverified()
            .map_err(|_| corrupt(T_OPS, &key2(group.as_bytes(), &seq.to_be_bytes())))?;
        let (names, devices) = known_people(ctx);
        let by = devices.get(&op.author).copied().unwrap_or(UserId([0; 16]));
        Ok(Some(crate::Departure {
            op_seq: seq,
            at: op.at,
            left: matches!(op.body, OpBody::Leave {}),
            banned: matches!(op.body, OpBody::Remove { ban: true, .. }),
            by,
            by_name: names.get(&by).cloned(),
        }))
    }

    /// Deletes for everyone the last `count` messages of `user` this device holds.
    pub(crate) async fn delete_messages_of(
        &mut self,
        group: GroupId,
        user: UserId,
        count: usize,
    ) -> Result<usize, ClientError> {
        let messages: Vec<(Vec<u8>, ChatMessage)> = self
            .db
            .scan(T_MESSAGES, group.as_bytes(), usize::MAX)
            .await?;
        let ids: Vec<MessageId> = messages
            .iter()
            .rev()
            .filter(|(_, m)| m.sender == user)
            .take(count)
            .map(|(_, m)| m.id)
            .collect();
        if ids.is_empty() {
            return Ok(0);
        }
        let n = ids.len();
        for chunk in ids.chunks(confide_protocol::group_log::MAX_DELETE_BATCH) {
            self.append_op(
                group,
                OpBody::DeleteMessages {
                    messages: chunk.to_vec(),
                },
            )
            .await?;
        }
        Ok(n)
    }

    /// Opens a private conversation with a member of `group`: a new two-person group.
    pub(crate) async fn start_private(
        &mut self,
        group: GroupId,
        with: UserId,
    ) -> Result<GroupId, ClientError> {
        let me = self.device();
        let entry = {
            let ctx = self.member_ctx(group).await?;
            let my_role = ctx
                .state
                .member_of_device(&me)
                .map(|(_, m)| m.role)
                .ok_or(ClientError::NotMember)?;
            if !my_role.is_moderator() && !ctx.state.settings().members_may_message_privately {
                return Err(ClientError::NotAllowed(LogError::NotAllowed {
                    role: my_role,
                    action: "start a private conversation in this group",
                }));
            }
            ctx.state
                .member(&with)
                .map(|m| m.entry.clone())
                .ok_or(ClientError::NotFound(Missing::Member { user: with }))?
        };
        // The server takes only the person's current device list (§10.1): a newer one than the
        // group's, under the same identity key, replaces it; another identity is refused.
        // The group's log verified the entry's list.
        let entry = match entry
            .device_list
            .as_ref()
            .and_then(crate::devices::checked_list)
        {
            Some(pinned) => match self.fetch_user_list(with).await? {
                // The person the group knows: same identity key, not an older list.
                Some((signed, list))
                    if list.identity == pinned.identity && list.version >= pinned.version =>
                {
                    MemberEntry {
                        devices: list.device_keys(),
                        device_list: Some(signed),
                        ..entry
                    }
                }
                Some((_, list)) if list.identity != pinned.identity => {
                    return Err(ClientError::LinkFailed {
                        code: "identity_changed",
                        reason: "the server shows another identity key for this person than \
                                 the group has: compare safety numbers first"
                            .into(),
                    });
                }
                Some(_) => {
                    return Err(ClientError::LinkFailed {
                        code: "stale_device_list",
                        reason: "the server shows an older device list for this person than the \
                                 group has"
                            .into(),
                    });
                }
                None => entry,
            },
            None => entry,
        };
        let private = self.new_group().await?;
        self.append_op(
            private,
            OpBody::Add {
                member: entry,
                invite: None,
                invite_sig: None,
                invite_device: None,
            },
        )
        .await?;
        self.db.put(T_PRIVATE, private.as_bytes(), &(group, with))?;
        Ok(private)
    }

    /// What happened in the group that its members see among its messages (a member removed
    /// or gone, a message deleted for everyone), oldest first: the verified log replayed from
    /// the store, keeping the ops made while this device was in the group, and nothing for a
    /// group the user has not accepted. Each notice says where among the messages it goes.
    ///
    /// # Errors
    ///
    /// [`ClientError::UnknownGroup`] for a group this device does not know, and
    /// [`ClientError::Store`] if the store cannot be read.
    pub async fn notices(&self, group: GroupId) -> Result<Vec<crate::GroupNotice>, ClientError> {
        let ctx = self.groups.get(&group).ok_or(ClientError::UnknownGroup)?;
        // Nothing is shown of a group the user did not accept (§11.7); one they were removed
        // from shows what happened while they were in it.
        if !ctx.meta.accepted && ctx.meta.removed_after_epoch.is_none() {
            return Ok(Vec::new());
        }
        let ops: Vec<Op> = self
            .db
            .scan::<SignedOp>(T_OPS, group.as_bytes(), usize::MAX)
            .await?
            .into_iter()
            // Stored ops were verified when applied.
            .filter_map(|(_, signed)| signed.parse_unverified().ok())
            .collect();
        let changes = ops.iter().filter(|op| op.body.changes_epoch()).count() as u64;
        let mut epoch = ctx.state.epoch().0.saturating_sub(changes);
        let people = known_people(ctx);
        let (me, my_device) = (self.profile.user, self.device());
        // Put back after a removal (or after leaving) without the user accepting again: nothing
        // from that admission on is shown until they do (§11.7), as for any group not accepted.
        let admits_me = |op: &Op| matches!(&op.body, OpBody::Join { member, .. } | OpBody::Add { member, .. } if member.user == me);
        let ends_mine = |op: &Op| match &op.body {
            OpBody::Remove { user, .. } => *user == me,
            OpBody::Leave {} => op.author == my_device,
            _ => false,
        };
        let end = match ops.iter().rposition(admits_me) {
            Some(readmitted) if !ctx.meta.accepted && ops[..readmitted].iter().any(ends_mine) => {
                readmitted
            }
            _ => ops.len(),
        };
        let mut inside = false;
        let mut out = Vec::new();
        for op in &ops[..end] {
            if op.body.changes_epoch() {
                epoch = epoch.saturating_add(1);
            }
            if inside {
                out.extend(self.op_notices(group, ctx, &people, op, epoch).await);
            }
            inside = match &op.body {
                OpBody::Genesis { creator, .. } => creator.user == me,
                OpBody::Join { member, .. } | OpBody::Add { member, .. } if member.user == me => {
                    true
                }
                OpBody::Remove { user, .. } if *user == me => false,
                OpBody::Leave {} if op.author == my_device => false,
                _ => inside,
            };
        }
        Ok(out)
    }

    /// The notices one op makes, `epoch` being the epoch after it.
    pub(crate) async fn op_notices(
        &self,
        group: GroupId,
        ctx: &GroupCtx,
        (names, devices): &(HashMap<UserId, String>, HashMap<DeviceId, UserId>),
        op: &Op,
        epoch: u64,
    ) -> Vec<crate::GroupNotice> {
        let by = devices.get(&op.author).copied().unwrap_or(UserId([0; 16]));
        let name_of = |user: &UserId| names.get(user).cloned().unwrap_or_default();
        let notice = |index, kind, after_seq| crate::GroupNotice {
            group,
            op_seq: op.seq,
            index,
            at: op.at,
            by,
            by_name: name_of(&by),
            kind,
            after_seq,
        };
        // A removal goes after every message of the epochs before it: before the first
        // message of a later epoch, or after everything so far if none came yet (the server
        // takes nothing more in the ended epoch).
        let after_removal = || {
            Some(Seq(ctx
                .meta
                .epoch_first_seq
                .range(epoch..)
                .map(|(_, first)| first.saturating_sub(1))
                .min()
                .unwrap_or(ctx.meta.last_seen_seq)))
        };
        match &op.body {
            OpBody::Remove { user, ban } => vec![notice(
                0,
                crate::NoticeKind::Removed {
                    user: *user,
                    name: name_of(user),
                    banned: *ban,
                },
                after_removal(),
            )],
            OpBody::Leave {} => vec![notice(0, crate::NoticeKind::Left, after_removal())],
            // Like a departure, it ends its epoch without grace (a device may have gone).
            OpBody::UpdateDevices { .. } => vec![notice(
                0,
                crate::NoticeKind::DevicesUpdated,
                after_removal(),
            )],
            OpBody::DeleteMessages { messages } => {
                let mut out = Vec::with_capacity(messages.len());
                for (index, id) in messages.iter().enumerate() {
                    // Where the message was, if it ever reached this device.
                    let seq: Option<Seq> = self
                        .db
                        .get(T_SEEN, &key2(group.as_bytes(), id.as_bytes()))
                        .await
                        .ok()
                        .flatten();
                    let number = match seq {
                        Some(seq) => self.number_of_seq(group, seq).await,
                        None => None,
                    };
                    out.push(notice(
                        index,
                        crate::NoticeKind::MessageDeleted { number },
                        seq,
                    ));
                }
                out
            }
            _ => Vec::new(),
        }
    }
}
