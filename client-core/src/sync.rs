//! Sync: fetching each group's ops and messages from its cursors, page by page, and the
//! outcome a full sync reports (passing failures every time, lasting refusals once).

use std::collections::BTreeSet;
use std::sync::Arc;

use confide_protocol::frames::{self, ClientFrame, ServerFrame, StoredMessage};
use confide_protocol::group_log::GroupState;
use confide_protocol::group_log::OpBody;
use confide_protocol::page_checks::PageChecks;
use confide_protocol::policy::{SYNC_PAGE_REQUEST, SyncCursor};
use confide_protocol::{GroupId, Seq};

use crate::Network;
use crate::error::{ClientError, VerificationError, unexpected_reply};
use crate::events::Event;
use crate::group::{GroupCtx, GroupMeta, state_genesis_body};
use crate::machine::ClientCore;
use crate::session::is_passing_failure;
use crate::store::{ClientStore, T_GROUPS, T_OPS, T_PENDING_JOINS, key2};

/// Stops a page's helpers when the page is done with, however its handling ends (a step
/// dropped half way included): they claim no more checks nobody will ask for.
struct StopHelpers<'a>(&'a PageChecks<StoredMessage>);

impl Drop for StopHelpers<'_> {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// How many sync pages one sync of a group fetches before it lets other work in; the rest
/// follows in a later sync (a server that never says `complete` cannot starve commands).
pub(crate) const MAX_SYNC_PAGES: usize = 1_000;

impl<S: ClientStore, N: Network> ClientCore<S, N> {
    /// Connects if needed and fetches everything new in every group. If the server refused to
    /// serve any group (or the connection failed meanwhile), the first such error is returned
    /// after the other groups were fetched: not everything new has arrived. A refusal that will
    /// not pass by itself (the server does not know the group, say) fails only the first sync
    /// that meets it ([`Event::SyncRefused`]); a passing one fails every sync.
    ///
    /// # Errors
    ///
    /// As [`Self::connect`] when it connects; otherwise the first error met:
    /// [`ClientError::Server`] for the server's refusal of a group (or of the list of groups),
    /// [`ClientError::Verification`] for a group whose log cannot be the group's,
    /// [`ClientError::Transport`], [`ClientError::Timeout`], [`ClientError::UnexpectedReply`] or
    /// [`ClientError::SyncStalled`] for a connection or server that failed meanwhile,
    /// [`ClientError::Store`] if what arrived cannot be stored.
    pub async fn sync(&mut self) -> Result<(), ClientError> {
        // Connecting syncs everything already.
        let r = if self.conn.is_none() {
            self.connect().await
        } else {
            self.sync_all().await
        };
        // A group that could not be fetched makes the whole sync fail: the caller must not
        // believe it has everything.
        let r = self.end_step(r).await;
        r.and_then(|()| self.take_sync_outcome())
    }

    /// The outcome of the first full sync since this core started (connecting, and so
    /// syncing, if it is not connected), without fetching again. Fails like [`Self::sync`].
    ///
    /// # Errors
    ///
    /// As [`Self::sync`].
    pub async fn synced(&mut self) -> Result<(), ClientError> {
        let r = if self.conn.is_none() {
            self.connect().await
        } else if !self.full_sync_done {
            // Connected, but the first full sync did not get through (the server refused to
            // list the groups, say): try it again now.
            self.sync_all().await
        } else {
            Ok(())
        };
        let r = self.end_step(r).await;
        r.and_then(|()| self.take_sync_outcome())
    }

    pub(crate) async fn process_needs_sync(&mut self) {
        // One pass over what is due now: a group that asks for more (a long backlog, or a
        // server that never says `complete`) waits for the next turn, after other work.
        for group in std::mem::take(&mut self.needs_sync) {
            if self.conn.is_none() {
                self.needs_sync.insert(group);
                continue;
            }
            if let Err(e) = self.sync_group(group, None).await {
                tracing::warn!(%group, error = %e, "sync failed");
            }
        }
    }

    pub(crate) async fn sync_all(&mut self) -> Result<(), ClientError> {
        let reply = self.request_ok(|id| ClientFrame::ListGroups { id }).await?;
        let ServerFrame::Groups { groups, .. } = reply else {
            return Err(unexpected_reply(reply, "groups"));
        };
        let mut all: BTreeSet<GroupId> = groups.iter().map(|g| g.group).collect();
        all.extend(self.groups.keys().copied());
        all.extend(std::mem::take(&mut self.needs_sync));
        self.sync_failure = None;
        for group in all {
            match self.sync_group(group, None).await {
                Ok(()) => self.sync_works_again(group),
                Err(e) if is_passing_failure(&e) => {
                    tracing::warn!(%group, error = %e, "sync failed");
                    self.sync_failure.get_or_insert(e);
                }
                Err(e) => self.sync_refused(group, e),
            }
        }
        self.full_sync_done = true;
        self.flush_acks().await;
        let groups: Vec<GroupId> = self.groups.keys().copied().collect();
        for group in groups {
            self.enforce_retention(group).await;
        }
        self.emit(Event::Synced);
        self.commit().await?;
        Ok(())
    }

    /// A group's sync was refused (or failed) for a reason that will not pass by itself (the
    /// server does not know the group, or says this device is not in it; it served a log that
    /// cannot be its genesis). Reported once — as [`Event::SyncRefused`] and by the next
    /// [`Self::sync`] — and then only logged, so that one such group does not make every
    /// later sync fail; the refusal and its date stay in [`crate::GroupInfo::sync_refused`]
    /// until a sync works again, for front ends to show wherever the group is.
    ///
    /// A group this device never held is no concern of its user's: a server listing a made-up
    /// group and refusing it must not make syncs fail, so that is only logged.
    pub(crate) fn sync_refused(&mut self, group: GroupId, e: ClientError) {
        let code = e.code().to_string();
        let now = self.host.now();
        let Some(ctx) = self.groups.get_mut(&group) else {
            tracing::debug!(%group, error = %e, "sync of a group this device never held refused");
            return;
        };
        let known = ctx.meta.sync_refused.as_deref() == Some(code.as_str());
        if !known {
            ctx.meta.sync_refused = Some(code.clone());
            ctx.meta.sync_refused_at = Some(now);
            let _ = self.db.put(T_GROUPS, group.as_bytes(), &ctx.meta);
        }
        tracing::warn!(%group, error = %e, reported = known, "sync refused");
        if known {
            return;
        }
        self.emit(Event::SyncRefused {
            group,
            reason: e.to_string(),
        });
        self.refusals_unreported.push(e);
    }

    /// A group's sync worked: a lasting refusal noted for it is over.
    pub(crate) fn sync_works_again(&mut self, group: GroupId) {
        if let Some(ctx) = self.groups.get_mut(&group)
            && ctx.meta.sync_refused.take().is_some()
        {
            ctx.meta.sync_refused_at = None;
            let _ = self.db.put(T_GROUPS, group.as_bytes(), &ctx.meta);
        }
    }

    /// What the latest full sync should report, once: a passing failure of its own, else the
    /// first lasting refusal not reported yet (all of them are then reported: each was also
    /// an [`Event::SyncRefused`]).
    pub(crate) fn take_sync_outcome(&mut self) -> Result<(), ClientError> {
        if let Some(e) = self.sync_failure.take() {
            return Err(e);
        }
        let mut refusals = std::mem::take(&mut self.refusals_unreported).into_iter();
        refusals.next().map_or(Ok(()), Err)
    }

    /// Asks the server for one sync page of `group` after the given op and message seqs. The
    /// request goes out before the step so far (the page before, with its cursor) is
    /// committed; **the caller commits it** once this page is here, after lending cores to
    /// this page's signature checks, so that storing the page before and checking this one
    /// overlap. The page before is stored, whole, before this one is handled.
    async fn request_page(
        &mut self,
        group: GroupId,
        after_op_seq: Option<u64>,
        after_seq: Seq,
        invite: Option<frames::InviteProof>,
    ) -> Result<SyncPage, ClientError> {
        let reply = self
            .request_ok_commit_after(|id| ClientFrame::Sync {
                id,
                group,
                after_op_seq,
                after_seq,
                limit: SYNC_PAGE_REQUEST,
                invite,
            })
            .await;
        let page = match reply {
            Ok(ServerFrame::SyncPage {
                ops,
                messages,
                next_seq,
                complete,
                ..
            }) => Ok(SyncPage {
                ops,
                messages,
                next_seq,
                complete,
            }),
            Ok(other) => Err(unexpected_reply(other, "sync_page")),
            Err(e) => Err(e),
        };
        // No page to handle: the step so far is stored now, as it would have been had a page
        // come.
        if page.is_err() {
            self.commit().await?;
        }
        page
    }

    /// Fetches and processes everything new in one group (ops first, then messages).
    pub(crate) async fn sync_group(
        &mut self,
        group: GroupId,
        invite: Option<frames::InviteProof>,
    ) -> Result<(), ClientError> {
        if !self.groups.contains_key(&group) && !self.adopt_if_listed(group, invite).await? {
            return Ok(());
        }
        for _ in 0..MAX_SYNC_PAGES {
            let cursor = match self.groups.get(&group) {
                Some(ctx) if ctx.meta.tampered.is_some() => return Ok(()),
                // A former member still asks: the server answers with nothing new, or with the
                // log since, if this device was admitted again.
                Some(ctx) => SyncCursor::resume(ctx.state.seq(), Seq(ctx.meta.next_seq)),
                None => SyncCursor::START,
            };
            let SyncPage {
                ops,
                messages,
                next_seq,
                complete,
            } = self
                .request_page(group, cursor.after_op_seq, cursor.after_seq, invite)
                .await?;
            // Only messages after the position asked from, each after the one before: a page
            // that serves one again at or below a position already passed would give it
            // another message's place (PROTOCOL.md §11.2).
            let mut last = cursor.after_seq;
            let mut in_order = Vec::with_capacity(messages.len());
            for m in messages {
                if m.seq <= last {
                    tracing::warn!(%group, seq = m.seq.0, after = last.0, "sync page message out of order: ignored");
                    continue;
                }
                last = m.seq;
                in_order.push(m);
            }
            // Every signature is checked (strictly, one by one) before its message is handled.
            // The host may lend other cores to check ahead while this thread handles the page;
            // whatever no helper has claimed, this thread checks as it gets there.
            let checks = Arc::new(PageChecks::new(in_order));
            let _stop = StopHelpers(&checks);
            self.host.lend_cores(&checks);
            // The page before (the step so far) is stored while the helpers check this one.
            self.commit().await?;
            let mut refused = false;
            for op in &ops {
                if self.apply_op(group, op).await.is_err() {
                    // Refused (and the user told once): the rest of this page's ops cannot
                    // chain onto the verified head. Its messages are still checked against
                    // the verified log; the next sync asks from the verified head again.
                    refused = true;
                    break;
                }
            }
            // The cursor moves past each message in memory and is saved once, with the page's
            // last message: the page is one step, committed whole, so a crash keeps all of it
            // (cursor included) or none.
            let mut moved = false;
            for (index, m) in checks.items().iter().enumerate() {
                let checked = checks.check(index).unwrap_or_else(|| m.envelope.verified());
                self.handle_checked(group, m, checked).await;
                moved |= self.advance_cursor_unsaved(group, Seq(m.seq.0.saturating_add(1)));
            }
            moved |= self.advance_cursor_unsaved(group, next_seq);
            if moved && let Some(ctx) = self.groups.get(&group) {
                let _ = self.db.put(T_GROUPS, group.as_bytes(), &ctx.meta);
            }
            if complete || refused || self.conn.is_none() {
                self.warn_if_behind(group);
                if complete && !refused {
                    // Caught up: is the epoch due for fresh keys (PROTOCOL.md §5.5)?
                    self.rekey_check.insert(group);
                    // Held messages refused as stale may be sealed again now.
                    if self.stale_until_synced.remove(&group).is_some() {
                        self.held_dirty = true;
                    }
                }
                return Ok(());
            }
            // A page that moves neither cursor would repeat forever: stop (a server bug or a
            // hostile server).
            let now_at = self
                .groups
                .get(&group)
                .map(|c| SyncCursor::resume(c.state.seq(), Seq(c.meta.next_seq)));
            if now_at == Some(cursor) {
                return Err(ClientError::SyncStalled { group });
            }
        }
        // Enough for one go: the rest follows in a later sync, after other work.
        self.needs_sync.insert(group);
        Ok(())
    }

    /// A group this device does not hold, which the server listed or named (PROTOCOL.md
    /// §11.7): its whole log is fetched and verified first, and the group is adopted only if
    /// the verified log lists this device at its head — a group someone added it to, held for
    /// the user's consent, or one whose join request was approved. Any other group (one the
    /// server made up, or one this device was removed from before it ever synced) is not
    /// adopted: its ops would feed the key-change warnings and the keys this device knows, and
    /// its messages and early sealed payloads would take up room, for a group this device
    /// cannot read. Its early payloads are dropped. Returns whether the group was adopted.
    async fn adopt_if_listed(
        &mut self,
        group: GroupId,
        invite: Option<frames::InviteProof>,
    ) -> Result<bool, ClientError> {
        let me = self.device();
        let mut state: Option<GroupState> = None;
        let mut ops_held = Vec::new();
        // Whether the whole log was fetched. Not only a `complete` page says so: a group with
        // more stored messages than a page holds is never `complete` on a page that starts
        // from the first message, and only ops matter here (§9.6). A page that brings no new
        // op, or that covers messages (the server serves messages only once the ops reach the
        // head), says the ops are all in.
        let mut fetched = false;
        for _ in 0..MAX_SYNC_PAGES {
            let after_op_seq = state.as_ref().map(|s| s.seq());
            let page = match self
                .request_page(group, after_op_seq, SyncCursor::START.after_seq, invite)
                .await
            {
                // The step so far is stored before this page's ops are applied (the request
                // left that commit to its caller).
                Ok(page) => {
                    self.commit().await?;
                    page
                }
                Err(e) => {
                    // Refused for good (the server does not know the group, or will not serve
                    // it to this device): nothing will list this device, so its early payloads
                    // go rather than take up the room kept for groups not held (§11.5). A
                    // passing failure keeps them for the next try.
                    if !is_passing_failure(&e) {
                        self.drop_parked_keys(group).await;
                    }
                    return Err(e);
                }
            };
            let SyncPage {
                ops,
                messages,
                next_seq,
                complete,
            } = page;
            let no_new_op = ops.is_empty();
            let covers_messages =
                !messages.is_empty() || next_seq > Seq(SyncCursor::START.after_seq.0 + 1);
            for op in ops {
                match state.as_mut() {
                    None => {
                        state =
                            Some(GroupState::from_genesis(&op).map_err(VerificationError::Log)?);
                    }
                    Some(s) => {
                        s.apply(&op).map_err(VerificationError::Log)?;
                    }
                }
                ops_held.push(op);
            }
            fetched = complete || no_new_op || covers_messages;
            if fetched || self.conn.is_none() {
                break;
            }
        }
        let listed = state
            .as_ref()
            .is_some_and(|s| s.member_of_device(&me).is_some());
        if !fetched {
            // Cut short (the connection dropped, or the pages ran out for now): the log may
            // still list this device further on, so its early payloads are kept.
            tracing::debug!(%group, "a group's log was not fetched in full: not adopted yet");
            return Ok(false);
        }
        if !listed {
            tracing::debug!(%group, "a group whose log does not list this device was not adopted");
            self.drop_parked_keys(group).await;
            return Ok(false);
        }
        let mut ops_held = ops_held.into_iter();
        let Some(genesis) = ops_held.next() else {
            return Ok(false);
        };
        let mut admitted_by_sibling = self.admitted_by_sibling(&genesis);
        self.adopt_genesis(group, &genesis).await?;
        for op in ops_held {
            // Verified above: a refusal here would be the store's, and is the same as for any
            // op a sync brings (told once, the group keeps its verified head).
            self.apply_op(group, &op).await?;
            if let Some(by_sibling) = self.admits_this_user(&op) {
                admitted_by_sibling = by_sibling;
            }
        }
        // Consent is the person's (§11.7): a group one of their other devices joined, or
        // asked to join, is accepted here too.
        if admitted_by_sibling
            && self
                .groups
                .get(&group)
                .is_some_and(|ctx| !ctx.meta.accepted)
        {
            self.accept_membership(group).await?;
        }
        Ok(true)
    }

    /// Whether `op` admits this device's user, and if so whether a device of this user did it:
    /// a `genesis` or `join` authored by one, or an `add` approving a request one made
    /// (`invite_device`). `None` for an op that does not admit this user.
    fn admits_this_user(&self, op: &confide_protocol::group_log::SignedOp) -> Option<bool> {
        let op = op.parse_unverified().ok()?;
        let own = |d: &confide_protocol::DeviceId| self.own_list_parsed.lists(d);
        match &op.body {
            OpBody::Genesis { creator, .. } if creator.user == self.profile.user => {
                Some(own(&op.author))
            }
            OpBody::Join { member, .. } if member.user == self.profile.user => {
                Some(own(&op.author))
            }
            OpBody::Add {
                member,
                invite_device,
                ..
            } if member.user == self.profile.user => Some(invite_device.as_ref().is_some_and(own)),
            _ => None,
        }
    }

    fn admitted_by_sibling(&self, genesis: &confide_protocol::group_log::SignedOp) -> bool {
        self.admits_this_user(genesis).unwrap_or(false)
    }

    /// Starts holding a group from its genesis op (the rest of its log follows as ops).
    async fn adopt_genesis(
        &mut self,
        group: GroupId,
        op: &confide_protocol::group_log::SignedOp,
    ) -> Result<(), ClientError> {
        let state = GroupState::from_genesis(op).map_err(VerificationError::Log)?;
        // A group this device did not create or join itself: accepted only if it matches a
        // join request the user made; otherwise the user is asked.
        let pending: Option<confide_protocol::OpHash> =
            self.db.get(T_PENDING_JOINS, group.as_bytes()).await?;
        let accepted = pending == Some(state.genesis_hash());
        self.db
            .put(T_OPS, &key2(group.as_bytes(), &0u64.to_be_bytes()), op)?;
        let meta = GroupMeta {
            next_seq: 1,
            accepted,
            ..GroupMeta::default()
        };
        self.db.put(T_GROUPS, group.as_bytes(), &meta)?;
        // Only a group the user asked for: one held for consent is checked when accepted.
        if accepted {
            self.check_key_change(group, &state_genesis_body(op)).await;
        }
        self.groups.insert(group, GroupCtx::new(state, meta));
        self.retry_parked_keys(group).await;
        Ok(())
    }
}

/// What one `sync_page` brought (the server's frame without its request id).
struct SyncPage {
    ops: Vec<confide_protocol::group_log::SignedOp>,
    messages: Vec<frames::StoredMessage>,
    next_seq: Seq,
    complete: bool,
}
