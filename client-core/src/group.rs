//! Group state: each group's verified log replayed into a [`GroupState`], with what this
//! device keeps beside it ([`GroupMeta`]: cursors, consent, epochs seen ahead of the log).
//! Applying ops (refusing forks and ops that do not verify), membership changes of this
//! device, key changes of others, creating groups and appending ops.

use std::collections::{BTreeMap, HashMap};

use confide_protocol::frames::{ClientFrame, ErrorCode, ServerFrame};
use confide_protocol::group_log::{
    AppliedOp, GroupSettings, GroupState, MemberEntry, Op, OpBody, SignedOp,
};
use confide_protocol::{DeviceId, DeviceKeys, EpochRef, GroupId, Timestamp, UserId};
use serde::{Deserialize, Serialize};

use crate::error::{ClientError, unexpected_reply};
use crate::events::{Event, GroupChange, Rejection};
use crate::machine::ClientCore;
use crate::moderation::known_people;
use crate::store::{ClientStore, T_GROUPS, T_KNOWN_KEYS, T_OPS, T_PENDING_JOINS, Tx, key2};
use crate::{HostRng, Network};

/// How many member devices' claims of a later epoch a group keeps (the highest are kept).
pub(crate) const MAX_BEHIND_CLAIMS: usize = 64;

/// How many refused ops a group remembers, so that a server serving them again and again does
/// not warn the user again and again.
pub(crate) const MAX_REFUSED_OPS_REMEMBERED: usize = 16;

/// How far ahead of the verified log a sealed payload's epoch may be to be kept for later.
pub(crate) const MAX_EPOCH_AHEAD: u64 = 16;

/// What the store keeps per group besides its ops.
#[derive(Clone, Default, Serialize, Deserialize)]
pub(crate) struct GroupMeta {
    /// The first message seq not yet processed.
    pub(crate) next_seq: u64,
    /// Why the log was rejected, if it was.
    pub(crate) tampered: Option<String>,
    /// Whether the user agreed to be in this group (created it, joined it, or accepted being
    /// added). Until then nothing from it is shown.
    #[serde(default)]
    pub(crate) accepted: bool,
    /// The lowest message seq known in each epoch (received, or this device's own post), to
    /// refuse messages from an epoch that had already ended with a removal when later epochs
    /// were under way.
    #[serde(default)]
    pub(crate) epoch_first_seq: std::collections::BTreeMap<u64, u64>,
    /// Log positions at which the server served an op that did not verify and was refused, so
    /// that the user is told once per position however often (and in however many variants)
    /// the server serves it again (at most [`MAX_REFUSED_OPS_REMEMBERED`], newest last).
    #[serde(default)]
    pub(crate) refused_at: Vec<u64>,
    /// Per member device, the highest epoch its signed message or sealed key named while this
    /// device's verified log had not reached it. While any claim of a device that is still a
    /// member is ahead of the log, this device holds its own posts and seals no new sender key
    /// (PROTOCOL.md §11.1), since a removal it has not seen may be what started that epoch. A
    /// claim ends when the log reaches it or shows its device is no longer a member (a member
    /// cannot keep others silent beyond their own removal), and each member's claim is kept on
    /// its own, so dropping a hostile member's claim leaves the honest ones standing. At most
    /// [`MAX_BEHIND_CLAIMS`].
    #[serde(default)]
    pub(crate) behind_claims: BTreeMap<DeviceId, u64>,
    /// The highest epoch the user was already warned about.
    #[serde(default)]
    pub(crate) behind_warned: Option<u64>,
    /// The last epoch in which this device was a member, when it was removed: messages of that
    /// epoch and before are still shown without asking for consent again.
    #[serde(default)]
    pub(crate) removed_after_epoch: Option<u64>,
    /// The highest message seq of this group this device has processed (received or posted),
    /// named as `seen_seq` in what it writes. Not the sync cursor, which the server moves.
    #[serde(default)]
    pub(crate) last_seen_seq: u64,
    /// The code ([`ClientError::code`]) of a lasting refusal of this group's sync (the server
    /// no longer knows the group, say) once it was reported, so that it is reported once, not
    /// at every sync; cleared when a sync of the group works again.
    #[serde(default)]
    pub(crate) sync_refused: Option<String>,
    /// When this device first met that refusal (stores from before this field have none), to
    /// show how long the group has been silent ([`crate::GroupInfo::sync_refused`]).
    #[serde(default)]
    pub(crate) sync_refused_at: Option<Timestamp>,
    /// The number ([`crate::ChatMessage::number`]) of the last message stored in this group; the
    /// next one gets the one after.
    #[serde(default)]
    pub(crate) last_number: u64,
    /// How far the person has read here, by message number ([`crate::ChatMessage::number`]:
    /// this device's own count, in the order messages were stored, which the server cannot
    /// move): what a front end marked read ([`crate::ClientCore::mark_read`]), or this
    /// device's own latest post (writing in a group is reading it).
    #[serde(default = "ReadMarker::from_older_store")]
    pub(crate) read: ReadMarker,
    /// Messages of others stored after [`Self::read`] and still stored: "3 new"
    /// ([`crate::GroupInfo::unread`]). Kept up to date as messages are stored and deleted.
    #[serde(default)]
    pub(crate) unread: u64,
}

/// The number of the newest message read. `None` only in a store from before read markers,
/// until it is loaded: everything it had stored then counts as read, so that an update does
/// not show every group's whole history as new.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ReadMarker(pub(crate) Option<u64>);

impl Default for ReadMarker {
    /// A new group: nothing read yet.
    fn default() -> ReadMarker {
        ReadMarker(Some(0))
    }
}

impl ReadMarker {
    fn from_older_store() -> ReadMarker {
        ReadMarker(None)
    }

    /// The number of the newest message read (0: none).
    pub(crate) fn number(self) -> u64 {
        self.0.unwrap_or(0)
    }
}

impl GroupMeta {
    /// The highest epoch a current member claims that the log has not reached, if any.
    pub(crate) fn behind(&self, state: &GroupState) -> Option<u64> {
        let log_epoch = state.epoch().0;
        self.behind_claims
            .iter()
            .filter(|(device, epoch)| {
                **epoch > log_epoch && state.member_of_device(device).is_some()
            })
            .map(|(_, epoch)| *epoch)
            .max()
    }

    /// How many messages of the group the server stored from the first one this device knows
    /// in `epoch` to the last it processed (of any epoch): the messages sent since the epoch
    /// began, by the server's dense numbering, as far as this device has got. 0 before it
    /// knows one. Derived from what survives a restart, it needs no count of its own.
    pub(crate) fn messages_since_epoch_began(&self, epoch: u64) -> u64 {
        self.epoch_first_seq
            .get(&epoch)
            .map_or(0, |first| (self.last_seen_seq + 1).saturating_sub(*first))
    }

    /// Records that message `seq` belongs to `epoch`, keeping the lowest seq per epoch.
    pub(crate) fn note_epoch_seq(&mut self, epoch: u64, seq: u64) {
        let first = self.epoch_first_seq.entry(epoch).or_insert(seq);
        *first = (*first).min(seq);
        self.last_seen_seq = self.last_seen_seq.max(seq);
    }
}

/// One group as this device holds it.
pub(crate) struct GroupCtx {
    pub(crate) state: GroupState,
    /// Every departure of the verified log: per epoch number that ended because someone was
    /// removed or left (no grace for it), who went and when the op says it happened. Rebuilt
    /// from the stored log at every start, like the rest of this context. A departure covers
    /// every epoch up to the one it ended, not only that one: the member holds the keys of all
    /// of them ([`Self::departure_covering`], [`Self::departure_of`]).
    pub(crate) ended_by_removal: BTreeMap<u64, Removal>,
    /// Every epoch the verified log went through, with the devices (and their users and
    /// names) that were members in it: who may send in that epoch.
    pub(crate) epochs: HashMap<EpochRef, HashMap<DeviceId, (UserId, String)>>,
    pub(crate) meta: GroupMeta,
}

impl GroupCtx {
    pub(crate) fn new(state: GroupState, meta: GroupMeta) -> Self {
        let mut ctx = GroupCtx {
            state,
            ended_by_removal: Default::default(),
            epochs: HashMap::new(),
            meta,
        };
        ctx.record_epoch();
        ctx
    }

    pub(crate) fn record_epoch(&mut self) {
        let mut devices = HashMap::new();
        for (user, member) in self.state.members() {
            for keys in &member.entry.devices {
                devices.insert(keys.device, (*user, member.entry.display_name.clone()));
            }
        }
        self.epochs.insert(self.state.epoch_ref(), devices);
    }

    /// Records what an applied op means for message acceptance.
    pub(crate) fn note_op(&mut self, applied: &AppliedOp) {
        let op = &applied.op;
        if !applied.ends_epoch_by_departure() {
            return;
        }
        let (user, devices) = match &op.body {
            OpBody::Remove { user, .. } => (*user, None),
            // The author's user, from the epochs before the op (they are gone from the state).
            OpBody::Leave {} => match self.user_of_device(&op.author) {
                Some(user) => (user, None),
                None => return,
            },
            // Only the devices the new list dropped went; the user stays (§8.5).
            OpBody::UpdateDevices { .. } => match self.user_of_device(&op.author) {
                Some(user) => (user, Some(applied.departed.clone())),
                None => return,
            },
            _ => return,
        };
        self.ended_by_removal.insert(
            self.state.epoch().0.saturating_sub(1),
            Removal {
                user,
                devices,
                at: op.at,
            },
        );
    }

    /// The epoch the first departure at or after `epoch` ended, if any. Whoever went then can
    /// still read (and write) messages of `epoch` (PROTOCOL.md §11.2 step 9): nothing of
    /// `epoch` may be stored after a message of an epoch that began after that one.
    pub(crate) fn departure_covering(&self, epoch: u64) -> Option<u64> {
        self.ended_by_removal
            .range(epoch..)
            .next()
            .map(|(ended, _)| *ended)
    }

    /// When `user` went after being a member in `epoch`: their first removal or leaving that
    /// ended `epoch` or a later one (PROTOCOL.md §11.2 step 14). Anything they say they wrote
    /// in `epoch` after that moment was written when they were out, whichever epoch it names.
    pub(crate) fn departure_of(
        &self,
        user: &UserId,
        device: &DeviceId,
        epoch: u64,
    ) -> Option<Timestamp> {
        self.ended_by_removal
            .range(epoch..)
            .find(|(_, removal)| {
                removal.user == *user
                    && removal
                        .devices
                        .as_ref()
                        .is_none_or(|devices| devices.contains(device))
            })
            .map(|(_, removal)| removal.at)
    }

    /// The user a device belonged to in any epoch of the verified log.
    pub(crate) fn user_of_device(&self, device: &DeviceId) -> Option<UserId> {
        self.epochs
            .values()
            .find_map(|devices| devices.get(device).map(|(user, _)| *user))
    }

    pub(crate) fn is_member(&self, device: &DeviceId) -> bool {
        self.state.member_of_device(device).is_some()
    }
}

/// A member's removal (or leaving) that ended an epoch.
pub(crate) struct Removal {
    /// Who went.
    pub(crate) user: UserId,
    /// Which of their devices went: all of them (`None`, a removal or leaving), or those an
    /// `update_devices` dropped.
    pub(crate) devices: Option<Vec<DeviceId>>,
    /// When the op says it happened: their posts in the ended epoch, or any earlier one they
    /// were a member in, that say they were written later are refused (PROTOCOL.md §11.2 step
    /// 14, §12.3).
    pub(crate) at: Timestamp,
}

/// The display names of `state`'s members other than `user` that look like `name`
/// ([`confide_protocol::names`]).
pub(crate) fn look_alikes(state: &GroupState, user: &UserId, name: &str) -> Vec<String> {
    confide_protocol::names::confusable_with(
        name,
        state
            .members()
            .iter()
            .filter(|(other, _)| *other != user)
            .map(|(_, m)| m.entry.display_name.as_str()),
    )
}

/// The op types whose target is a user, for [`GroupChange::target`].
pub(crate) fn op_target(body: &OpBody) -> Option<UserId> {
    match body {
        OpBody::Join { member, .. } | OpBody::Add { member, .. } => Some(member.user),
        OpBody::Remove { user, .. }
        | OpBody::Unban { user }
        | OpBody::SetRole { user, .. }
        | OpBody::Mute { user, .. }
        | OpBody::Unmute { user } => Some(*user),
        _ => None,
    }
}

/// The other person, if `ctx` is a private conversation of `me`'s (what `open_private`
/// makes): a group of exactly two members, `me` and one other, for which no invite was ever
/// made, and in which nobody else was ever a member — so one of the two created it and added
/// the other. "Two members now" alone is not enough: someone could create a group, add two
/// people, hand one of them the facilitator role and leave, and it would pass as a private
/// conversation with a person who never started it.
pub(crate) fn private_peer(ctx: &GroupCtx, me: &UserId) -> Option<crate::Peer> {
    let members = ctx.state.members();
    if members.len() != 2 || !members.contains_key(me) || !ctx.state.invites().is_empty() {
        return None;
    }
    let (peer, entry) = members.iter().find(|(user, _)| *user != me)?;
    // Every epoch of the verified log, the genesis (its creator alone) included.
    let only_the_two = ctx
        .epochs
        .values()
        .all(|devices| devices.values().all(|(user, _)| user == me || user == peer));
    only_the_two.then(|| crate::Peer {
        user: *peer,
        display_name: entry.entry.display_name.clone(),
        shared_groups: Vec::new(),
        looks_like: Vec::new(),
    })
}

/// Whether `op`, which conflicts with the op this device holds at the head's position, is
/// evidence of a real fork: validly signed by a device the verified log knows, and chained onto
/// the same predecessor as the op it conflicts with.
pub(crate) async fn is_signed_fork<S: ClientStore>(
    db: &Tx<S>,
    ctx: &GroupCtx,
    group: GroupId,
    op: &SignedOp,
) -> bool {
    let Ok(other) = op.verify() else {
        return false;
    };
    let Some(before) = other.seq.checked_sub(1) else {
        return false;
    };
    let predecessor: Option<SignedOp> = db
        .get(T_OPS, &key2(group.as_bytes(), &before.to_be_bytes()))
        .await
        .ok()
        .flatten();
    ctx.user_of_device(&other.author).is_some()
        && predecessor.is_some_and(|p| p.hash() == other.prev)
}

/// The body of a genesis op, for key-change bookkeeping (empty when it does not parse).
pub(crate) fn state_genesis_body(op: &SignedOp) -> OpBody {
    op.verify().map(|o| o.body).unwrap_or(OpBody::Leave {})
}

impl<S: ClientStore, N: Network> ClientCore<S, N> {
    /// Creates a group with this device's user as its facilitator.
    ///
    /// # Errors
    ///
    /// Those of a command that reaches the server ([the errors every command
    /// shares](crate::ClientCore#errors)); [`ClientError::Server`] if the server refuses the
    /// group.
    pub async fn create_group(&mut self) -> Result<GroupId, ClientError> {
        let r = self.new_group().await;
        self.end_step(r).await
    }

    /// Signs and appends any group-log op (the moderation commands are built on this).
    /// Returns the op's position in the log.
    ///
    /// # Errors
    ///
    /// Those of a command in a group that reaches the server ([the errors every command
    /// shares](crate::ClientCore#errors)); [`ClientError::NotAllowed`] when the group's rules, as
    /// this device's verified log has them, refuse the op (nothing is sent);
    /// [`ClientError::Server`] when the server refuses it (after an `op_conflict` the group is
    /// synced and the op tried once more on the new head).
    pub async fn append(&mut self, group: GroupId, body: OpBody) -> Result<u64, ClientError> {
        let r = self.append_op(group, body).await;
        self.end_step(r).await
    }

    /// Accepts being in a group someone added this device to ([`Event::Invited`]): its
    /// messages are shown from then on. To decline, leave it (an [`OpBody::Leave`]).
    ///
    /// # Errors
    ///
    /// [`ClientError::UnknownGroup`], [`ClientError::GroupTampered`], [`ClientError::Removed`] or
    /// [`ClientError::NotMember`] if this device is not in that group ([the errors every command
    /// shares](crate::ClientCore#errors)); [`ClientError::Store`] if the acceptance cannot be
    /// stored.
    pub async fn accept_group(&mut self, group: GroupId) -> Result<(), ClientError> {
        let r = self.accept_membership(group).await;
        self.end_step(r).await
    }

    /// Verifies and applies the next op of a group, stores it, and reports the change.
    ///
    /// An op that does not verify changes nothing: the group keeps its last verified head and
    /// goes on syncing, so it recovers by itself once the server serves the valid chain. The
    /// user is told once per refused op ([`Event::GroupRejected`]), however often the server
    /// serves it again.
    pub(crate) async fn apply_op(
        &mut self,
        group: GroupId,
        op: &SignedOp,
    ) -> Result<(), ClientError> {
        let me = self.device();
        let Some(ctx) = self.groups.get_mut(&group) else {
            return Err(ClientError::UnknownGroup);
        };
        if let Some(why) = &ctx.meta.tampered {
            return Err(ClientError::GroupTampered(why.clone()));
        }
        let was_member = ctx.is_member(&me);
        let old_role = ctx.state.member_of_device(&me).map(|(_, m)| m.role);
        let applied = match ctx.state.apply(op) {
            Ok(applied) => applied,
            Err(e) => {
                let signed_fork = matches!(e, confide_protocol::group_log::LogError::Fork { .. })
                    && is_signed_fork(&self.db, ctx, group, op).await;
                // A fork is told as such only when the other op is validly signed by a device
                // of the log and chains onto the same predecessor: anything else at that
                // position is just an op that does not verify.
                let (seq, reason) = match &e {
                    confide_protocol::group_log::LogError::Fork { seq } if signed_fork => (
                        *seq,
                        format!(
                            "a device of the group signed a different op #{seq} than the one \
                                 this device verified (a change the server refused when two were \
                                 made at once, or a fork of the group's history); this device \
                                 keeps its own"
                        ),
                    ),
                    confide_protocol::group_log::LogError::Fork { seq } => (
                        *seq,
                        format!(
                            "the server served a second op #{seq} that no device of the group \
                             signed onto the verified history; it was refused and this device \
                             keeps the group as last verified"
                        ),
                    ),
                    _ => {
                        let seq = ctx.state.seq().saturating_add(1);
                        (
                            seq,
                            format!(
                                "the server served an op #{seq} that does not verify ({e}); it \
                                 was refused and this device keeps the group as last verified"
                            ),
                        )
                    }
                };
                if !ctx.meta.refused_at.contains(&seq) {
                    ctx.meta.refused_at.push(seq);
                    let excess = ctx
                        .meta
                        .refused_at
                        .len()
                        .saturating_sub(MAX_REFUSED_OPS_REMEMBERED);
                    ctx.meta.refused_at.drain(..excess);
                    let _ = self.db.put(T_GROUPS, group.as_bytes(), &ctx.meta);
                    tracing::warn!(%group, seq, code = e.code(), "op served by the server refused");
                    self.emit(Event::GroupRejected(Rejection { group, seq, reason }));
                }
                return Err(ClientError::OpRefused(e));
            }
        };
        ctx.record_epoch();
        ctx.note_op(&applied);
        // Caught up — or every member whose claim held us back is no longer a member.
        let had_claims = !ctx.meta.behind_claims.is_empty();
        let log_epoch = ctx.state.epoch().0;
        let state = &ctx.state;
        ctx.meta
            .behind_claims
            .retain(|device, epoch| *epoch > log_epoch && state.member_of_device(device).is_some());
        let caught_up = had_claims && ctx.meta.behind_claims.is_empty();
        let was_warned = ctx.meta.behind_warned.is_some();
        if caught_up {
            ctx.meta.behind_warned = None;
            self.held_dirty = true;
            // Outbox entries kept back while behind go now, not at the next reconnect.
            self.outbox_retry_at = Some(self.host.now());
            self.db.put(T_GROUPS, group.as_bytes(), &ctx.meta)?;
        }
        let epoch_changed = applied.op.body.changes_epoch();
        let seq = applied.op.seq;
        self.db
            .put(T_OPS, &key2(group.as_bytes(), &seq.to_be_bytes()), op)?;
        // The author's user: from the epoch before the op (a member who just left is no longer
        // in the current state).
        let author = ctx
            .user_of_device(&applied.op.author)
            .unwrap_or(UserId([0; 16]));
        let is_member = ctx.is_member(&me);
        let new_role = ctx.state.member_of_device(&me).map(|(_, m)| m.role);
        let change = GroupChange {
            group,
            op_seq: seq,
            action: applied.op.body.action().to_string(),
            author,
            target: op_target(&applied.op.body),
            at: applied.op.at,
        };
        // A group the user has not accepted may be anyone's making (the server's too): its
        // members' keys are compared with the known ones only once the user accepts it
        // (`accept_membership`), so that an impostor's keys neither warn nor replace them.
        if self.groups.get(&group).is_some_and(|c| c.meta.accepted) {
            self.check_key_change(group, &applied.op.body).await;
        }
        self.emit(Event::GroupChanged(change));
        if let OpBody::OpenRound { round, .. } | OpBody::CloseRound { round } = &applied.op.body {
            self.emit(Event::RoundChanged {
                group,
                round: *round,
            });
        }
        if caught_up && was_warned {
            self.emit(Event::CaughtUp { group });
        }
        if epoch_changed {
            self.retry_parked_keys(group).await;
        }
        self.after_op(group, &applied.op.body, epoch_changed).await;
        // What members see among the messages (a removal, a deletion), while this device is in
        // the group and the user has accepted it.
        if was_member && let Some(ctx) = self.groups.get(&group) {
            let notices = if ctx.meta.accepted {
                let people = known_people(ctx);
                self.op_notices(group, ctx, &people, &applied.op, ctx.state.epoch().0)
                    .await
            } else {
                Vec::new()
            };
            for notice in notices {
                self.emit(Event::Notice(notice));
            }
        }
        if was_member && !is_member {
            // Being in the group again later needs the user's consent again (their own join
            // request, or accepting an invitation), as for any group: §11.7.
            let mut never_accepted = false;
            if let Some(ctx) = self.groups.get_mut(&group) {
                // What was said while this device was a member stays readable only if the
                // user had accepted being in the group: a group anyone (the server too) made,
                // added this device to and removed it from again shows nothing, and what it
                // kept for the user's consent goes.
                if ctx.meta.accepted {
                    ctx.meta.removed_after_epoch = Some(ctx.state.epoch().0.saturating_sub(1));
                } else {
                    never_accepted = true;
                }
                ctx.meta.accepted = false;
                self.db.put(T_GROUPS, group.as_bytes(), &ctx.meta)?;
            }
            if never_accepted {
                self.drop_unconsented_parked(group).await;
            }
            self.emit(Event::Removed {
                group,
                at: applied.op.at,
            });
        }
        if !was_member && is_member {
            self.became_member(group, &applied.op.author).await;
        }
        if let (Some(old), Some(new)) = (old_role, new_role)
            && old != new
        {
            self.emit(Event::RoleChanged { group, role: new });
        }
        Ok(())
    }

    /// This device was added to a group (or its join was approved): joined if the user asked
    /// for it, otherwise an invitation the user accepts or declines.
    pub(crate) async fn became_member(&mut self, group: GroupId, author: &DeviceId) {
        let asked: Option<confide_protocol::OpHash> = self
            .db
            .get(T_PENDING_JOINS, group.as_bytes())
            .await
            .ok()
            .flatten();
        let Some(ctx) = self.groups.get_mut(&group) else {
            return;
        };
        // A former member whose own join request was approved.
        if !ctx.meta.accepted && asked == Some(ctx.state.genesis_hash()) {
            ctx.meta.accepted = true;
            let _ = self.db.put(T_GROUPS, group.as_bytes(), &ctx.meta);
            self.check_members_keys(group).await;
        }
        let Some(ctx) = self.groups.get_mut(&group) else {
            return;
        };
        if ctx.meta.accepted {
            self.db.remove(T_PENDING_JOINS, group.as_bytes());
            self.emit(Event::Joined { group });
            return;
        }
        let (by, by_name) = ctx
            .epochs
            .values()
            .find_map(|d| d.get(author).cloned())
            .unwrap_or((UserId([0; 16]), String::new()));
        let private = private_peer(ctx, &self.profile.user).is_some();
        self.emit(Event::Invited {
            group,
            by,
            by_name,
            private,
        });
    }

    /// Accepts being in a group someone else added this device to.
    pub(crate) async fn accept_membership(&mut self, group: GroupId) -> Result<(), ClientError> {
        self.member_ctx(group).await?;
        let me = self.device();
        let ctx = self
            .groups
            .get_mut(&group)
            .ok_or(ClientError::UnknownGroup)?;
        let was_accepted = std::mem::replace(&mut ctx.meta.accepted, true);
        let meta = ctx.meta.clone();
        let moderator = ctx
            .state
            .member_of_device(&me)
            .is_some_and(|(_, m)| m.role.is_moderator());
        self.db.put(T_GROUPS, group.as_bytes(), &meta)?;
        if !was_accepted {
            self.check_members_keys(group).await;
        }
        self.emit(Event::Joined { group });
        self.retry_parked(group).await;
        // What waited for the user's consent goes now: pinned texts a moderator re-sends to
        // the current epoch, messages held while the group was not accepted.
        if moderator {
            self.needs_repost.insert(group);
        }
        self.held_dirty = true;
        Ok(())
    }

    /// The user accepted a group whose ops were not checked for key changes while it was
    /// held: its current members are compared with the keys this device knows now.
    async fn check_members_keys(&mut self, group: GroupId) {
        let Some(ctx) = self.groups.get(&group) else {
            return;
        };
        let entries = member_entries(&ctx.state);
        self.check_entries_keys(group, &entries).await;
    }

    /// Compares `entries` (the members of a log of `group` this device did not check for key
    /// changes as it verified it) with the keys this device knows, and remembers theirs.
    pub(crate) async fn check_entries_keys(&mut self, group: GroupId, entries: &[MemberEntry]) {
        for entry in entries {
            self.check_entry_keys(group, entry).await;
        }
    }

    /// Warns when a user the device has seen before appears with other device keys in an op
    /// of an accepted group.
    pub(crate) async fn check_key_change(&mut self, group: GroupId, body: &OpBody) {
        // Lists move the high-water marks and tell of identity changes (§11.14).
        self.note_op_lists(group, body).await;
        let entry = match body {
            OpBody::Genesis { creator, .. } => creator,
            OpBody::Join { member, .. } | OpBody::Add { member, .. } => member,
            _ => return,
        };
        self.check_entry_keys(group, entry).await;
    }

    /// Warns when `entry`'s user, seen before, appears with other device keys; remembers the
    /// keys either way.
    async fn check_entry_keys(&mut self, group: GroupId, entry: &MemberEntry) {
        if entry.user == self.profile.user {
            return;
        }
        if let Some(signed) = &entry.device_list {
            // A member with a list is known by the identity key, whose devices change
            // legitimately between versions (PROTOCOL.md §11.14).
            // From a verified log: parsed, not verified again.
            if let Some(list) = crate::devices::checked_list(signed) {
                self.note_list(Some((group, &entry.display_name)), &list, signed)
                    .await;
            }
            return;
        }
        let key = entry.user.as_bytes().to_vec();
        let devices: Vec<DeviceKeys> = entry.devices.clone();
        match self.db.get::<Vec<DeviceKeys>>(T_KNOWN_KEYS, &key).await {
            Ok(Some(known)) if known != devices => {
                self.emit(Event::KeyChanged {
                    group,
                    user: entry.user,
                    display_name: entry.display_name.clone(),
                });
                let _ = self.db.put(T_KNOWN_KEYS, &key, &devices);
            }
            Ok(Some(_)) => {}
            _ => {
                let _ = self.db.put(T_KNOWN_KEYS, &key, &devices);
            }
        }
    }

    /// Notes that a member's signed message or sealed key named `epoch`. If the verified log
    /// has not reached it, this device holds its posts until it has (PROTOCOL.md §12.3).
    pub(crate) fn note_behind(&mut self, group: GroupId, epoch: u64, claimant: DeviceId) {
        let Some(ctx) = self.groups.get_mut(&group) else {
            return;
        };
        let log_epoch = ctx.state.epoch().0;
        // A claim further ahead than any log plausibly moves between two syncs counts as that
        // far (the same bound as for keeping early sealed payloads).
        let epoch = epoch.min(log_epoch.saturating_add(MAX_EPOCH_AHEAD));
        if epoch <= log_epoch
            || ctx
                .meta
                .behind_claims
                .get(&claimant)
                .is_some_and(|e| *e >= epoch)
        {
            return;
        }
        ctx.meta.behind_claims.insert(claimant, epoch);
        if ctx.meta.behind_claims.len() > MAX_BEHIND_CLAIMS
            && let Some((lowest, _)) = ctx
                .meta
                .behind_claims
                .iter()
                .min_by_key(|(_, e)| **e)
                .map(|(d, e)| (*d, *e))
        {
            ctx.meta.behind_claims.remove(&lowest);
        }
        let _ = self.db.put(T_GROUPS, group.as_bytes(), &ctx.meta);
        self.needs_sync.insert(group);
    }

    /// After a sync of `group`: if its log is still behind what members use, tells the user
    /// (once per epoch seen). Right after a reconnect keys often arrive before the sync that
    /// brings their ops, so nobody is warned before a sync has had its chance.
    pub(crate) fn warn_if_behind(&mut self, group: GroupId) {
        let Some(ctx) = self.groups.get_mut(&group) else {
            return;
        };
        let log_epoch = ctx.state.epoch().0;
        let Some(seen_epoch) = ctx.meta.behind(&ctx.state) else {
            return;
        };
        if ctx
            .meta
            .behind_warned
            .is_some_and(|warned| warned >= seen_epoch)
        {
            return;
        }
        ctx.meta.behind_warned = Some(seen_epoch);
        let _ = self.db.put(T_GROUPS, group.as_bytes(), &ctx.meta);
        tracing::warn!(%group, seen_epoch, log_epoch, "members use an epoch the log has not reached: posts held");
        self.emit(Event::GroupBehind {
            group,
            seen_epoch,
            log_epoch,
        });
    }

    /// Whether members have been seen to use an epoch of `group` its verified log has not
    /// reached (and the claim still holds).
    pub(crate) fn is_behind(&self, group: GroupId) -> bool {
        self.groups
            .get(&group)
            .is_some_and(|ctx| ctx.meta.behind(&ctx.state).is_some())
    }

    /// Whether the user has agreed to be in `group` (§11.7): until then this device sends
    /// nothing there of its own accord — no pinned text re-sent, no held message posted.
    pub(crate) fn is_accepted(&self, group: GroupId) -> bool {
        self.groups.get(&group).is_some_and(|ctx| ctx.meta.accepted)
    }

    pub(crate) async fn new_group(&mut self) -> Result<GroupId, ClientError> {
        self.ensure_connected().await?;
        let group = GroupId::random(&mut HostRng(&mut *self.host));
        let genesis = Op::genesis(
            group,
            self.device(),
            self.host.now(),
            self.member_entry(),
            GroupSettings::default(),
        )
        .sign(&self.identity)
        .map_err(ClientError::NotAllowed)?;
        let state = GroupState::from_genesis(&genesis).map_err(ClientError::NotAllowed)?;
        let g = genesis.clone();
        self.request_ok(|id| ClientFrame::CreateGroup { id, genesis: g })
            .await?;
        self.db.put(
            T_OPS,
            &key2(group.as_bytes(), &0u64.to_be_bytes()),
            &genesis,
        )?;
        let meta = GroupMeta {
            next_seq: 1,
            accepted: true,
            ..GroupMeta::default()
        };
        self.db.put(T_GROUPS, group.as_bytes(), &meta)?;
        self.commit().await?;
        self.groups.insert(group, GroupCtx::new(state, meta));
        Ok(group)
    }

    /// Signs `body` as the next op of `group` and appends it; on a conflict (someone else's op
    /// got there first) syncs and tries once more on the new head.
    pub(crate) async fn append_op(
        &mut self,
        group: GroupId,
        body: OpBody,
    ) -> Result<u64, ClientError> {
        self.append_op_retrying(group, body, true).await
    }

    /// [`Self::append_op`], trying again after a conflict only if `retry` is set. Without it
    /// the conflict is the answer ([`ClientError::Server`] `op_conflict`), after a sync of the
    /// group has brought the op that got there first.
    pub(crate) async fn append_op_retrying(
        &mut self,
        group: GroupId,
        body: OpBody,
        retry: bool,
    ) -> Result<u64, ClientError> {
        // Said plainly before anything goes out, also when the server cannot be reached.
        self.member_ctx(group).await?;
        self.ensure_connected().await?;
        // Once more after a conflict, then the server's refusal is the answer.
        let mut retried = !retry;
        loop {
            let ctx = self.member_ctx(group).await?;
            let op = ctx
                .state
                .next_op(
                    self.device(),
                    ctx.state.claim_time(self.host.now()),
                    body.clone(),
                )
                .sign(&self.identity)
                .map_err(ClientError::NotAllowed)?;
            // Check locally first: a refused op gets the protocol's own explanation.
            let mut preview = ctx.state.clone();
            preview.apply(&op).map_err(ClientError::NotAllowed)?;
            let signed = op.clone();
            match self
                .request(|id| ClientFrame::AppendOp {
                    id,
                    group,
                    op: signed,
                })
                .await?
            {
                ServerFrame::OpAppended { seq, .. } => {
                    self.apply_op(group, &op).await?;
                    self.commit().await?;
                    return Ok(seq);
                }
                ServerFrame::Error {
                    code: ErrorCode::OpConflict,
                    ..
                } if !retried => {
                    retried = true;
                    self.sync_group(group, None).await?;
                }
                conflict @ ServerFrame::Error {
                    code: ErrorCode::OpConflict,
                    ..
                } if !retry => {
                    self.sync_group(group, None).await?;
                    return Err(unexpected_reply(conflict, "op_appended"));
                }
                other => return Err(unexpected_reply(other, "op_appended")),
            }
        }
    }
}

/// Every current member's entry (user, name and device keys) in `state`.
pub(crate) fn member_entries(state: &GroupState) -> Vec<MemberEntry> {
    state.members().values().map(|m| m.entry.clone()).collect()
}
