//! Invites and join requests: making an invite, joining with one (verifying the group's log
//! against it from genesis first), asking the facilitators when the invite needs approval,
//! and the facilitators' side (receiving, approving and declining requests).

use std::time::Duration;

use confide_protocol::frames::{self, ClientFrame, ServerFrame};
use confide_protocol::group_log::{GroupState, InviteSecret, MemberEntry, OpBody, SignedOp};
use confide_protocol::policy::{SYNC_PAGE_REQUEST, SyncCursor};
use confide_protocol::seal::{self, SealKind, SealedPayload};
use confide_protocol::{GroupId, Seq, Signature, UserId};
use serde::{Deserialize, Serialize};

use crate::error::{ClientError, InviteUnusable, Missing, unexpected_reply};
use crate::events::{Event, JoinRequest};
use crate::group::{GroupCtx, GroupMeta, look_alikes, member_entries};
use crate::invite::{CheckedInvite, Invite, InviteOptions, InvitePreview};
use crate::machine::ClientCore;
use crate::store::{ClientStore, T_GROUPS, T_JOIN_REQUESTS, T_OPS, T_PENDING_JOINS, key2};
use crate::{HostRng, Network};

/// The plaintext of a join request (sealed with [`SealKind::JoinRequest`]).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JoinRequestPayload {
    pub(crate) invite: confide_protocol::InviteId,
    pub(crate) invite_sig: Signature,
    pub(crate) member: MemberEntry,
    pub(crate) note: Option<String>,
}

/// The group's log fetched with an invite and verified ([`ClientCore::fetch_invited_log`]).
struct InvitedLog {
    /// The state the whole log verifies to.
    state: GroupState,
    /// Every op, from the genesis.
    ops: Vec<SignedOp>,
    /// How many of them this device had verified before (a group it was in): their keys were
    /// compared then.
    verified_before: usize,
}

impl<S: ClientStore, N: Network> ClientCore<S, N> {
    /// Creates an invite (facilitators), as `options` say: how many may use it, for how long,
    /// and whether each join needs approval ([`InviteOptions::default`]: one use, 7 days).
    pub async fn create_invite(
        &mut self,
        group: GroupId,
        options: InviteOptions,
    ) -> Result<Invite, ClientError> {
        let r = self
            .make_invite(
                group,
                options.requires_approval,
                options.max_uses,
                options.valid_for,
            )
            .await;
        self.end_step(r).await
    }

    /// Joins with an invite, after verifying the group's log against it. With an invite that
    /// needs approval, sends a join request (with an optional note) to the facilitators.
    ///
    /// # Errors
    ///
    /// [`ClientError::BadInvite`] when the group's log the server shows does not verify, does not
    /// match the invite, or is older than the one this device verified before;
    /// [`ClientError::SyncStalled`] if the server's log stops coming; [`ClientError::NotAllowed`]
    /// if the join op cannot be made; [`ClientError::Encrypt`] or [`ClientError::Encode`] if a
    /// join request cannot be sealed; and those of a command that reaches the server ([the errors
    /// every command shares](crate::ClientCore#errors)), such as [`ClientError::Server`] for an
    /// invite the server knows is revoked, expired or used up.
    pub async fn join(
        &mut self,
        invite: Invite,
        note: Option<String>,
    ) -> Result<crate::JoinOutcome, ClientError> {
        let r = self.join_with(invite, note).await;
        self.end_step(r).await
    }

    /// What can be known about an invite before joining with it, for the person to decide:
    /// the facilitator who made it (their pseudonym and role), how many people the group has,
    /// whether a facilitator must approve, and until when it is valid. Everything but the group
    /// id comes from the group's log, fetched with the invite and verified from the genesis the
    /// link names exactly as [`Self::join`] verifies it; nothing the server says is taken on
    /// trust. The group has no verifiable name, so none is given ([`InvitePreview`]).
    ///
    /// When the log cannot be fetched (no connection, or the server does not answer), the
    /// preview holds only what the link says ([`InvitePreview::checked`] is `None`): joining
    /// checks the rest. (A member's device then previews from the log it verified before.) Nothing is stored and nothing is sent but the request for the log.
    ///
    /// # Errors
    ///
    /// [`ClientError::InviteUnusable`] (`invite_unknown`, `invite_revoked`, `invite_used_up`,
    /// `invite_expired`) when the verified log, or the server refusing to show it, says the
    /// invite cannot be used; [`ClientError::BadInvite`] when the log does not verify, is for
    /// another group or genesis than the link names, or the inviter is not a facilitator in
    /// it; otherwise those of [`Self::join`] before it sends anything.
    pub async fn preview_invite(&mut self, invite: &Invite) -> Result<InvitePreview, ClientError> {
        let r = match self.preview_with(invite).await {
            Err(ClientError::Transport(_) | ClientError::Timeout { .. }) => {
                // Offline, a member still has the log it verified; anyone else has the link.
                let me = self.device();
                if self
                    .groups
                    .get(&invite.group)
                    .is_some_and(|c| c.is_member(&me))
                {
                    self.member_preview(invite).await
                } else {
                    Ok(invite.unchecked_preview())
                }
            }
            r => r,
        };
        self.end_step(r).await
    }

    /// Approves a pending join request (facilitators).
    ///
    /// # Errors
    ///
    /// [`ClientError::NotFound`] ([`Missing::JoinRequest`](crate::Missing::JoinRequest)) if no
    /// request from `user` is waiting; otherwise as [`Self::append`].
    pub async fn approve(&mut self, group: GroupId, user: UserId) -> Result<(), ClientError> {
        let r = self.admit(group, user).await;
        self.end_step(r).await
    }

    /// Declines a pending join request (facilitators): it is forgotten.
    ///
    /// # Errors
    ///
    /// [`ClientError::Store`] if the store cannot be written.
    pub async fn decline(&mut self, group: GroupId, user: UserId) -> Result<(), ClientError> {
        self.db
            .remove(T_JOIN_REQUESTS, &key2(group.as_bytes(), user.as_bytes()));
        self.end_step(Ok(())).await
    }

    /// Pending join requests (facilitators), to approve or decline.
    ///
    /// # Errors
    ///
    /// [`ClientError::Store`] if the store cannot be read (a group this device does not know has
    /// none).
    pub async fn join_requests(&self, group: GroupId) -> Result<Vec<JoinRequest>, ClientError> {
        let items = self
            .db
            .scan::<JoinRequestPayload>(T_JOIN_REQUESTS, group.as_bytes(), usize::MAX)
            .await?;
        Ok(items
            .into_iter()
            .filter_map(|(_, r)| {
                let device = r.member.devices.first()?.device;
                Some(JoinRequest {
                    group,
                    user: r.member.user,
                    device,
                    looks_like: self.groups.get(&group).map_or_else(Vec::new, |c| {
                        look_alikes(&c.state, &r.member.user, &r.member.display_name)
                    }),
                    display_name: r.member.display_name,
                    note: r.note,
                })
            })
            .collect())
    }

    pub(crate) async fn make_invite(
        &mut self,
        group: GroupId,
        requires_approval: bool,
        max_uses: u32,
        valid_for: Duration,
    ) -> Result<Invite, ClientError> {
        let secret = InviteSecret::generate(&mut HostRng(&mut *self.host));
        let expires_at = self.host.now().saturating_add(valid_for);
        let body = OpBody::Invite {
            invite: secret.id(),
            requires_approval,
            max_uses,
            expires_at,
        };
        self.append_op(group, body).await?;
        let ctx = self.groups.get(&group).ok_or(ClientError::UnknownGroup)?;
        Ok(Invite::new(
            group,
            ctx.state.genesis_hash(),
            self.device(),
            requires_approval,
            &secret,
        ))
    }

    /// [`Self::preview_invite`], failing also when offline.
    async fn preview_with(&mut self, invite: &Invite) -> Result<InvitePreview, ClientError> {
        self.ensure_connected().await?;
        let me = self.device();
        let group = invite.group;
        // A member already: its own verified log (brought up to date) says all, and the
        // server shows a member the log without the invite.
        if self.groups.get(&group).is_some_and(|c| c.is_member(&me)) {
            self.sync_group(group, None).await?;
            if self.groups.get(&group).is_some_and(|c| c.is_member(&me)) {
                return self.member_preview(invite).await;
            }
        }
        let log = self.fetch_invited_log(invite).await.map_err(|e| {
            match e.server_code().and_then(InviteUnusable::of_refusal) {
                Some(why) => ClientError::InviteUnusable(why),
                None => e,
            }
        })?;
        // The server shows the log only to a holder of a usable invite; a server that shows it
        // anyway is caught here, by the log's own record and this device's clock.
        let recorded = log
            .state
            .invite(&invite.id())
            .ok_or(ClientError::InviteUnusable(InviteUnusable::Unknown))?;
        if let Some(problem) = recorded.problem(self.host.now()) {
            return Err(ClientError::InviteUnusable(problem.into()));
        }
        checked_preview(&log.state, invite, false)
    }

    /// The preview of `invite` for a member of its group, from the log this device verified:
    /// the link's inviter must be the author of the invite op there too.
    async fn member_preview(&self, invite: &Invite) -> Result<InvitePreview, ClientError> {
        let ops: Vec<SignedOp> = self
            .db
            .scan::<SignedOp>(T_OPS, invite.group.as_bytes(), usize::MAX)
            .await?
            .into_iter()
            .map(|(_, op)| op)
            .collect();
        check_invite_author(&ops, invite)?;
        let ctx = self
            .groups
            .get(&invite.group)
            .ok_or(ClientError::UnknownGroup)?;
        checked_preview(&ctx.state, invite, true)
    }

    /// Fetches the group's log with the invite, checks it against the invite, then joins (or
    /// asks the facilitators to let us in).
    pub(crate) async fn join_with(
        &mut self,
        invite: Invite,
        note: Option<String>,
    ) -> Result<crate::JoinOutcome, ClientError> {
        self.ensure_connected().await?;
        let me = self.device();
        let group = invite.group;
        // Local state may be stale (removed while offline): ask the server first.
        if self.groups.get(&group).is_some_and(|c| c.is_member(&me)) {
            self.sync_group(group, None).await?;
            if self.groups.get(&group).is_some_and(|c| c.is_member(&me)) {
                return Ok(crate::JoinOutcome::Joined(group));
            }
        }
        let InvitedLog {
            state,
            ops: ops_held,
            verified_before,
        } = self.fetch_invited_log(&invite).await?;
        let secret = invite.secret();
        let invite_sig = secret.sign_join(&group, &self.profile.user, &self.device());
        // Whether a facilitator must approve is the signed log's to say, not the link's (which
        // anyone passing it on can edit); `fetch_invited_log` refused a log without the invite.
        let requires_approval = state
            .invite(&invite.id())
            .ok_or(ClientError::InviteUnusable(InviteUnusable::Unknown))?
            .requires_approval;
        if requires_approval {
            let request = JoinRequestPayload {
                invite: invite.id(),
                invite_sig,
                member: self.member_entry(),
                note,
            };
            let bytes =
                zeroize::Zeroizing::new(serde_json::to_vec(&request).map_err(ClientError::Encode)?);
            let facilitators = self.sealable(&state, state.facilitator_devices());
            let items = self.seal_to_some(
                &facilitators,
                SealKind::JoinRequest,
                group,
                state.epoch_ref(),
                &bytes,
            )?;
            self.send_sealed(items).await?;
            // Remember the request, so the group is accepted when a facilitator approves it.
            self.db
                .put(T_PENDING_JOINS, group.as_bytes(), &state.genesis_hash())?;
            self.commit().await?;
            return Ok(crate::JoinOutcome::Pending(group));
        }
        let body = OpBody::Join {
            invite: invite.id(),
            member: self.member_entry(),
            invite_sig,
        };
        let op = state
            .next_op(self.device(), state.claim_time(self.host.now()), body)
            .sign(&self.identity)
            .map_err(ClientError::NotAllowed)?;
        let mut joined = state.clone();
        joined
            .apply(&op)
            .map_err(|e| ClientError::BadInvite(e.to_string()))?;
        let signed = op.clone();
        self.request_ok(|id| ClientFrame::AppendOp {
            id,
            group,
            op: signed,
        })
        .await?;
        // Adopt the verified log.
        for (seq, held) in ops_held.iter().chain(std::iter::once(&op)).enumerate() {
            self.db.put(
                T_OPS,
                &key2(group.as_bytes(), &(seq as u64).to_be_bytes()),
                held,
            )?;
        }
        // A device that was in this group before keeps its record: its message numbers above
        // all (a number never names another message, §11.11), where it had read to, and what
        // it noted about epochs. Only what the rejoin changes is set: the user agreed again,
        // and the log just verified from the genesis is not tampered with.
        // A group held without the user's consent (never accepted, or consent withdrawn by a
        // removal, §11.7) had ops verified that were not compared with the keys this device
        // knows (`accept_membership` compares them): joining is the consent, so its members
        // are compared now, below.
        let checked_before = self
            .groups
            .get(&group)
            .is_some_and(|before| before.meta.accepted);
        let meta = match self.groups.get(&group) {
            Some(before) => GroupMeta {
                accepted: true,
                tampered: None,
                next_seq: before.meta.next_seq.max(1),
                ..before.meta.clone()
            },
            None => GroupMeta {
                next_seq: 1,
                accepted: true,
                ..GroupMeta::default()
            },
        };
        self.db.put(T_GROUPS, group.as_bytes(), &meta)?;
        // The members' keys, against the ones this device knows, as for ops a sync brings: a
        // known user with other keys here is told (PROTOCOL.md §3.5). Ops this device verified
        // before were compared then only if the group was accepted; if not, its members are
        // compared below.
        for held in ops_held.iter().skip(verified_before) {
            if let Ok(adopted) = held.parse_unverified() {
                self.check_key_change(group, &adopted.body).await;
            }
        }
        // Every epoch of the log, as a restart replays it: a rejoining device still tells who
        // could send in the epochs it was a member in before.
        let genesis = ops_held
            .first()
            .ok_or_else(|| ClientError::BadInvite("the group has no log".into()))?;
        let state_at_genesis =
            GroupState::from_genesis(genesis).map_err(|e| ClientError::BadInvite(e.to_string()))?;
        let mut ctx = GroupCtx::new(state_at_genesis, meta);
        for held in ops_held.iter().skip(1).chain(std::iter::once(&op)) {
            let applied = ctx
                .state
                .apply(held)
                .map_err(|e| ClientError::BadInvite(e.to_string()))?;
            ctx.record_epoch();
            ctx.note_op(&applied);
        }
        if !checked_before {
            let entries = member_entries(&ctx.state);
            self.check_entries_keys(group, &entries).await;
        }
        self.commit().await?;
        self.groups.insert(group, ctx);
        self.emit(Event::Joined { group });
        self.sync_group(group, None).await?;
        Ok(crate::JoinOutcome::Joined(group))
    }

    /// The group's log as the server shows it to the holder of `invite`, verified from its
    /// genesis before anything in it is trusted, and checked against the invite: the group and
    /// genesis it names, an inviter who is a facilitator there, and (for a group this device
    /// verified before) a history that extends the one it holds. What joining and the preview
    /// both rely on. The server's refusal to show the log is its [`ClientError::Server`] (the
    /// preview turns those about the invite into [`ClientError::InviteUnusable`]).
    async fn fetch_invited_log(&mut self, invite: &Invite) -> Result<InvitedLog, ClientError> {
        let group = invite.group;
        // Verify the whole log from genesis before trusting anything in it.
        let mut state: Option<GroupState> = None;
        let mut ops_held: Vec<SignedOp> = Vec::new();
        loop {
            // The whole log from the genesis: no message is served before the device is in.
            let cursor = SyncCursor {
                after_op_seq: state.as_ref().map(|s| s.seq()),
                after_seq: Seq(0),
            };
            let invite_id = Some(frames::InviteProof {
                id: invite.id(),
                signature: invite.secret().sign_sync(&group, &self.device()),
            });
            let reply = self
                .request_ok(|id| ClientFrame::Sync {
                    id,
                    group,
                    after_op_seq: cursor.after_op_seq,
                    after_seq: cursor.after_seq,
                    limit: SYNC_PAGE_REQUEST,
                    invite: invite_id,
                })
                .await?;
            let ServerFrame::SyncPage { ops, complete, .. } = reply else {
                return Err(unexpected_reply(reply, "sync_page"));
            };
            for op in ops {
                match state.as_mut() {
                    None => {
                        state = Some(
                            GroupState::from_genesis(&op)
                                .map_err(|e| ClientError::BadInvite(e.to_string()))?,
                        )
                    }
                    Some(s) => {
                        s.apply(&op).map_err(|e| {
                            ClientError::BadInvite(format!("the group's log does not verify: {e}"))
                        })?;
                    }
                }
                ops_held.push(op);
            }
            if complete {
                break;
            }
            if state.as_ref().map(|s| s.seq()) == cursor.after_op_seq {
                return Err(ClientError::SyncStalled { group });
            }
        }
        let state = state.ok_or_else(|| ClientError::BadInvite("the group has no log".into()))?;
        // A group this device was in before: the log it is shown now must extend the one it
        // verified then, op for op. An older or different history (a rollback to before a
        // removal, say) would make it seal keys to people it knows are gone.
        let verified: Vec<(Vec<u8>, SignedOp)> =
            self.db.scan(T_OPS, group.as_bytes(), usize::MAX).await?;
        if !verified.is_empty()
            && (ops_held.len() < verified.len()
                || verified
                    .iter()
                    .zip(&ops_held)
                    .any(|((_, mine), shown)| mine.hash() != shown.hash()))
        {
            return Err(ClientError::BadInvite(
                "the server showed an older or different history of this group than this device \
                 verified before; not joining"
                    .into(),
            ));
        }
        if state.group() != invite.group || state.genesis_hash() != invite.genesis {
            return Err(ClientError::BadInvite(
                "the server showed a different group than the invite names".into(),
            ));
        }
        check_invite_author(&ops_held, invite)?;
        if !state
            .member_of_device(&invite.inviter)
            .is_some_and(|(_, m)| m.role.is_moderator())
        {
            return Err(ClientError::BadInvite(
                "the inviter is not a facilitator of the group".into(),
            ));
        }
        Ok(InvitedLog {
            state,
            ops: ops_held,
            verified_before: verified.len(),
        })
    }

    pub(crate) async fn admit(&mut self, group: GroupId, user: UserId) -> Result<(), ClientError> {
        let key = key2(group.as_bytes(), user.as_bytes());
        let request: JoinRequestPayload = self
            .db
            .get(T_JOIN_REQUESTS, &key)
            .await?
            .ok_or(ClientError::NotFound(Missing::JoinRequest { user }))?;
        // For an entry with a device list the `add` names the device that asked (PROTOCOL.md
        // §8.5 `invite_device`). The stored request does not keep the sealed payload's sender,
        // so take the listed device the join signature is for (the only one:
        // `receive_join_request` keeps a request only when its one device is the sender).
        let invite_device = request.member.device_list.as_ref().and_then(|_| {
            request
                .member
                .devices
                .iter()
                .map(|keys| keys.device)
                .find(|device| {
                    confide_protocol::group_log::verify_join_sig(
                        &request.invite,
                        &group,
                        &request.member.user,
                        device,
                        &request.invite_sig,
                    )
                    .is_ok()
                })
        });
        // The server takes only the person's current list (§10.1): one they published since the
        // request, under the same identity key and still listing the requesting device,
        // replaces the request's.
        let mut member = request.member;
        if let (Some(_), Some(device)) = (&member.device_list, invite_device)
            && let Ok(Some((signed, list))) = self.fetch_user_list(member.user).await
            && list.lists(&device)
                        // The stored request's list was verified when it arrived.
            && member
                .device_list
                .as_ref()
                .and_then(crate::devices::checked_list)
                .is_some_and(|old| old.identity == list.identity && old.version <= list.version)
        {
            member.devices = list.device_keys();
            member.device_list = Some(signed);
        }
        let body = OpBody::Add {
            member,
            invite: Some(request.invite),
            invite_sig: Some(request.invite_sig),
            invite_device,
        };
        self.append_op(group, body).await?;
        self.db.remove(T_JOIN_REQUESTS, &key);
        Ok(())
    }

    pub(crate) async fn receive_join_request(&mut self, sealed: &SealedPayload) -> bool {
        let group = sealed.group;
        let Ok(bytes) = seal::open(&self.identity, sealed) else {
            return true;
        };
        let Ok(request) = serde_json::from_slice::<JoinRequestPayload>(&bytes) else {
            return true;
        };
        let Some(ctx) = self.groups.get(&group) else {
            return true;
        };
        let t = self.host.now();
        // The server's own rule (PROTOCOL.md §8.9): usable through the millisecond
        // `expires_at`.
        let valid_invite = ctx
            .state
            .invite(&request.invite)
            .is_some_and(|i| i.takes_join_requests(t));
        // Every device the request lists must be the one that asked (the only device whose
        // key the request proves): another listed device could be someone else's, and its
        // posts would be shown as the requester's. The `add` approving it checks the same.
        // With a device list (§8.9 `device`): valid, the requester's, listing the sender, and not
        // older than the newest list this device has seen for that person (§11.14).
        // The entry first (it verifies the entry's list, once); then what the list says.
        let entry_ok = request.member.validate().is_ok();
        let request_list = request
            .member
            .device_list
            .as_ref()
            .filter(|_| entry_ok)
            .and_then(crate::devices::checked_list);
        let device_ok = match (&request.member.device_list, &request_list) {
            (Some(_), Some(list)) => {
                list.user == request.member.user
                    && list.lists(&sealed.sender)
                    && self
                        .known_lists
                        .get(&list.user)
                        .is_none_or(|k| k.identity == list.identity && k.version <= list.version)
            }
            (Some(_), None) => false,
            (None, _) => confide_protocol::group_log::only_proven_device(&request.member)
                .is_ok_and(|d| d.device == sealed.sender),
        };
        let sig_ok = confide_protocol::group_log::verify_join_sig(
            &request.invite,
            &group,
            &request.member.user,
            &sealed.sender,
            &request.invite_sig,
        )
        .is_ok();
        if !(valid_invite && device_ok && sig_ok && entry_ok) {
            tracing::warn!(%group, "invalid join request dropped");
            return true;
        }
        let user = request.member.user;
        let looks_like = look_alikes(&ctx.state, &user, &request.member.display_name);
        let key = key2(group.as_bytes(), user.as_bytes());
        // A later request under the same user id from another device never replaces the first,
        // unless both devices are listed under the same identity key (§8.9).
        // Both lists were verified: the stored one when it arrived, this one above.
        let request_identity = request_list.map(|l| l.identity);
        if let Ok(Some(existing)) = self
            .db
            .get::<JoinRequestPayload>(T_JOIN_REQUESTS, &key)
            .await
            && existing.member.devices.first().map(|d| d.device) != Some(sealed.sender)
            && {
                let existing_identity = existing
                    .member
                    .device_list
                    .as_ref()
                    .and_then(crate::devices::checked_list)
                    .map(|l| l.identity);
                existing_identity.is_none() || existing_identity != request_identity
            }
        {
            tracing::warn!(%group, "conflicting join request dropped");
            return true;
        }
        // Stored with the step, before the request is acknowledged or shown.
        if self.db.put(T_JOIN_REQUESTS, &key, &request).is_err() {
            return false;
        }
        self.emit(Event::JoinRequest(JoinRequest {
            group,
            user,
            device: sealed.sender,
            display_name: request.member.display_name.clone(),
            note: request.note.clone(),
            looks_like,
        }));
        true
    }
}

/// The link's `inviter` is not signed: whoever passes the link on could name any facilitator.
/// The log's signed invite op says who made it; the two must agree, and a log without that
/// invite is no log to join or ask to join (nothing is sent to its facilitators).
fn check_invite_author(ops: &[SignedOp], invite: &Invite) -> Result<(), ClientError> {
    let id = invite.id();
    let made_by = ops.iter().find_map(|op| {
        let op = op.parse_unverified().ok()?;
        matches!(op.body, OpBody::Invite { invite, .. } if invite == id).then_some(op.author)
    });
    match made_by {
        None => Err(ClientError::InviteUnusable(InviteUnusable::Unknown)),
        Some(author) if author != invite.inviter => Err(ClientError::BadInvite(
            "the invite names another facilitator than the one who made it".into(),
        )),
        Some(_) => Ok(()),
    }
}

/// The preview of `invite` from `state`, a verified log of its group that starts at the
/// genesis the invite names and in which its inviter is a facilitator.
fn checked_preview(
    state: &GroupState,
    invite: &Invite,
    already_member: bool,
) -> Result<InvitePreview, ClientError> {
    if state.group() != invite.group || state.genesis_hash() != invite.genesis {
        return Err(ClientError::BadInvite(
            "the server showed a different group than the invite names".into(),
        ));
    }
    let (inviter, entry) = state
        .member_of_device(&invite.inviter)
        .filter(|(_, m)| m.role.is_moderator())
        .ok_or_else(|| {
            ClientError::BadInvite("the inviter is not a facilitator of the group".into())
        })?;
    let recorded = state.invite(&invite.id());
    Ok(InvitePreview {
        group: invite.group,
        requires_approval: recorded.map_or(invite.requires_approval, |i| i.requires_approval),
        checked: Some(CheckedInvite {
            inviter: *inviter,
            inviter_name: entry.entry.display_name.clone(),
            inviter_role: entry.role,
            members: state.members().len(),
            expires_at: recorded.map(|i| i.expires_at),
            already_member,
        }),
    })
}
