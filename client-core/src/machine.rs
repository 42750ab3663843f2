//! [`ClientCore`]: the client's state, how it is built and loaded, and the step discipline
//! every entry point follows (changes into the batch, events queued, one commit, then the
//! events; a failed commit reverts the step). Also the entry points a driver calls between
//! commands: connection changes, pushed frames, retries.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use confide_protocol::frames::ServerFrame;
use confide_protocol::group_log::{GroupState, SignedOp};
use confide_protocol::{DeviceId, DeviceIdentity, GroupId, Timestamp};

use crate::error::{ClientError, StoreError};
use crate::events::Event;
use crate::group::{GroupCtx, GroupMeta, ReadMarker};
use crate::profile::Profile;
use crate::store::{ClientStore, T_GROUPS, T_OPS, T_PROFILE, Tx};
use crate::{Host, HostRng, Link, Network};

/// One device of one user: its groups as verified from their logs, its keys, its outbox, and
/// every decision about what arrives and what goes out, with no I/O of its own.
///
/// Its three seams are given at [`ClientCore::new`]: a [`ClientStore`] (`S`), a [`Network`]
/// (`N`) and a [`Host`]. Every method is one *step*: its changes are committed to the store
/// in one batch before anything they imply is sent to the server or handed to
/// [`Host::event`] (see the crate overview). Commands take `&mut self`; reads of what is
/// stored take `&self`.
///
/// The caller drives it: [`ClientCore::connect`] (then [`ClientCore::after_connect`]), and for
/// every frame the server pushes [`ClientCore::receive`], for every due retry
/// ([`ClientCore::retry_due_at`]) [`ClientCore::retry_now`], and after each of these and each
/// command [`ClientCore::after_input`]. A request waits for its reply inside the call that
/// makes it, handling whatever else arrives meanwhile.
///
/// # Errors
///
/// Each fallible method says what is its own. Besides that:
///
/// - a command that needs the server connects first when it is not connected, failing as
///   [`ClientCore::connect`] does; its own requests fail with [`ClientError::Transport`] when
///   the connection fails, [`ClientError::Timeout`] when the reply does not come in time (the
///   connection is then dropped), [`ClientError::Server`] when the server refuses, with its
///   code, and [`ClientError::UnexpectedReply`] for a reply of the wrong type;
/// - a command in a group fails, before anything is sent, with [`ClientError::UnknownGroup`]
///   for a group this device does not know, [`ClientError::GroupTampered`] for one whose
///   stored log no longer verifies, [`ClientError::Removed`] once this device has left it or
///   was removed, and [`ClientError::NotMember`] for one it is not (yet) in;
/// - every method fails with [`ClientError::Store`] when the store cannot be read or the
///   step cannot be committed; nothing of the step is then kept.
///
/// [`ClientError::code`] names each for scripts.
pub struct ClientCore<S: ClientStore, N: Network> {
    /// Dials the server.
    pub(crate) net: N,
    /// The clock, randomness and the application's event sink.
    pub(crate) host: Box<dyn Host>,
    /// The store, read and written through one step's change batch: every write waits in it
    /// until [`Self::commit`], which persists the step atomically before anything it implies
    /// is sent or shown.
    pub(crate) db: Tx<S>,
    /// This device's keys: it signs, seals and opens with them.
    pub(crate) identity: DeviceIdentity,
    /// Who this device's user is, and whether the server has registered the device.
    pub(crate) profile: Profile,
    /// Sent when registering with a server that requires one.
    pub(crate) registration_token: Option<String>,
    /// Events of the step under way, handed out only once the batch they report is committed
    /// (and dropped if it fails).
    pub(crate) pending_events: Vec<Event>,
    /// The connection to the server, while one is open.
    pub(crate) conn: Option<N::Link>,
    /// The last request id used: each request gets the next, so its reply can be told apart.
    pub(crate) next_id: u64,
    /// Every group this device holds, as replayed from its verified log.
    pub(crate) groups: HashMap<GroupId, GroupCtx>,
    /// Groups found to need a sync (a gap in what arrived, an epoch ahead of the log), synced
    /// after the current input.
    pub(crate) needs_sync: BTreeSet<GroupId>,
    /// Groups whose post was refused as `stale_epoch` since their last completed sync, and
    /// until when their held messages wait for one: sealed again before it, they would be
    /// sealed for the same ended epoch, and refused again. Once that time has passed, the
    /// outbox's retry ([`Self::retry_now`], scheduled for it) syncs the group again and then
    /// tries them whatever the sync gave, so that a sync that keeps failing cannot keep them
    /// waiting for ever; the waits grow with each refusal (`stale_retry_wait`), and the
    /// refusals are bounded (`MAX_STALE_REFUSALS`). In memory: after a restart the first sync
    /// runs before anything held is sent.
    pub(crate) stale_until_synced: BTreeMap<GroupId, Timestamp>,
    /// Why the last full sync could not fetch some group for a passing reason (the server's
    /// disk, a restart, a rate limit, the connection), for [`ClientCore::sync`] to report instead
    /// of success: such a failure is reported by every sync that meets it.
    pub(crate) sync_failure: Option<ClientError>,
    /// The store failure that last undid a step ([`Self::revert`]), for [`ClientCore::connect`]
    /// to report when one ended the connection it was making.
    pub(crate) reverted: Option<crate::StoreError>,
    /// Lasting refusals of a group's sync met for the first time and not yet reported by a
    /// [`ClientCore::sync`] or [`ClientCore::synced`]: each is reported once (and as
    /// [`Event::SyncRefused`]); later syncs that meet it again do not fail for it.
    pub(crate) refusals_unreported: Vec<ClientError>,
    /// Whether a full sync has run since this client started.
    pub(crate) full_sync_done: bool,
    /// Groups whose pinned texts this facilitator device should post again (new epoch).
    pub(crate) needs_repost: BTreeSet<GroupId>,
    /// When this device rekeys a group by itself ([`crate::RekeyPolicy`]).
    pub(crate) rekey_policy: crate::RekeyPolicy,
    /// Groups whose sync has caught up since their rekeying was last considered
    /// ([`Self::process_rekey_checks`]).
    pub(crate) rekey_check: BTreeSet<GroupId>,
    /// Per group, the epoch in which the server (or the log) refused this device's `rekey`
    /// for a reason that would come again: it is not tried again until the epoch changes, so
    /// a refusal costs one request, not one per message sent. Not kept across a restart.
    pub(crate) rekey_refused: HashMap<GroupId, confide_protocol::EpochRef>,
    /// Inbox items processed and stored, to acknowledge.
    pub(crate) pending_acks: Vec<u64>,
    /// When to post the outbox again, after the server refused a message for a passing reason.
    pub(crate) outbox_retry_at: Option<Timestamp>,
    /// Messages already named in an [`Event::OrderWarning`] (group, seq), so that one swap is
    /// reported once even when both of its messages show it; cleared when it grows past
    /// [`crate::receive::MAX_ORDER_WARNED`].
    pub(crate) order_warned: std::collections::HashSet<(GroupId, u64)>,
    /// Whether held messages may be ready to go (something was held, a group caught up, a
    /// connection or a retry came): [`Self::process_held`] reads the store only then.
    pub(crate) held_dirty: bool,
    /// Whether the message the current send sealed is stored in the outbox (the commit before
    /// it left went through): a store failure after that answers `Pending`
    /// ([`Self::end_send_step`]), for the outbox copy goes. Cleared as each post starts (and
    /// as a round answer starts, before the reads that precede its post), so that what a
    /// retry or a held message's send left in it is never read as this send's.
    pub(crate) sealed_this_send: bool,
    /// The user identity key (every device of the user holds it, PROTOCOL.md §3.6).
    pub(crate) user_identity: confide_protocol::device_list::UserIdentity,
    /// This user's current device list, and whether the server has it.
    pub(crate) own_list: crate::devices::OwnList,
    /// The same list, parsed.
    pub(crate) own_list_parsed: confide_protocol::device_list::DeviceList,
    /// The newest list seen for every other user (the high-water marks of §11.14).
    pub(crate) known_lists: crate::devices::KnownLists,
    /// Whether some group may pin this user at another list than the current one, so that
    /// [`Self::update_own_entries`] has work to do.
    pub(crate) devices_dirty: bool,
    /// Whether this device learned from a verified list that it was unlinked.
    pub(crate) unlinked: bool,
    /// Whether a newer list of this user was seen out of the chain: follow the server's chain
    /// ([`Self::catch_up_own_list`]).
    pub(crate) own_list_stale: bool,
    /// Whether this device has followed its own list chain on the current connection: only
    /// then do updates go to, or come from, its other devices (PROTOCOL.md §7.4).
    pub(crate) own_list_current: bool,
    /// Whether own-device updates may be owed: a change, a list move or a new connection since
    /// the last try ([`Self::send_own_updates`]).
    pub(crate) own_updates_due: bool,
    /// Whether this user's list changed since own-device updates last went out: what this
    /// device changed itself is sent again (`resend_own_values`).
    pub(crate) own_list_moved: bool,
    /// Whether to publish this device's X-Wing key again ([`Self::publish_own_keys`]): set when
    /// this user's list moves (a list another device published first may be why the server
    /// refused it), tried once by the next [`Self::update_own_entries`] pass, so that a refused
    /// publication does not wait for the next connection.
    pub(crate) own_keys_retry: bool,
    /// The existing device's side of a link under way.
    pub(crate) old_side: Option<crate::linking::OldSide>,
    /// Link messages received for the link under way.
    pub(crate) link_inbox: crate::linking::LinkInbox,
}

/// `d` in milliseconds, as protocol timestamps count.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl<S: ClientStore, N: Network> ClientCore<S, N> {
    /// A core over `store`, reaching the server through `net` and the platform through
    /// `host`, for the device `identity` of `profile`'s user. `registration_token` is sent
    /// when registering with a server that requires one. Every stored group log is replayed
    /// and verified again; a log that no longer verifies freezes only its group.
    ///
    /// Nothing is dialled yet: call [`Self::connect`].
    ///
    /// # Errors
    ///
    /// [`ClientError::Store`] if the store cannot be read, or the step (numbering the messages of
    /// an older store) cannot be committed. A stored log that no longer verifies is not an error:
    /// it freezes its group ([`ClientError::GroupTampered`]). [`StoreError::RelinkNeeded`] when
    /// this user's list names this device with an X-Wing key that the store does not hold (a
    /// store from before the device moved to version 2): it must be linked again.
    ///
    /// A device of protocol version 1 (an identity without an X-Wing key) moves to version 2
    /// here: it adds its X-Wing key, and the new secret is stored with the rest of this first
    /// step; once connected it publishes the device list that names the key (PROTOCOL.md §4.7).
    pub async fn new(
        store: S,
        net: N,
        host: Box<dyn Host>,
        identity: DeviceIdentity,
        profile: Profile,
        registration_token: Option<String>,
    ) -> Result<Self, ClientError> {
        Self::start(
            store,
            net,
            host,
            identity,
            profile,
            registration_token,
            true,
        )
        .await
    }

    /// **For tests only** (feature `test-hooks`): as [`Self::new`], except that a device of
    /// protocol version 1 stays one — it adds no X-Wing key and publishes none — so that a test
    /// can play a device that has not moved to version 2 yet (PROTOCOL.md §4.7).
    ///
    /// # Errors
    ///
    /// As [`Self::new`].
    #[cfg(feature = "test-hooks")]
    pub async fn new_version_1(
        store: S,
        net: N,
        host: Box<dyn Host>,
        identity: DeviceIdentity,
        profile: Profile,
        registration_token: Option<String>,
    ) -> Result<Self, ClientError> {
        Self::start(
            store,
            net,
            host,
            identity,
            profile,
            registration_token,
            false,
        )
        .await
    }

    /// [`Self::new`]; `move_to_version_2` says whether a device of version 1 adds its X-Wing key.
    async fn start(
        store: S,
        net: N,
        host: Box<dyn Host>,
        identity: DeviceIdentity,
        profile: Profile,
        registration_token: Option<String>,
        move_to_version_2: bool,
    ) -> Result<Self, ClientError> {
        let mut host = host;
        let mut identity = identity;
        let mut db = Tx::new(store);
        // With the keys the device had so far: a profile from before device lists gets a first
        // list naming the keys the server has on record for it.
        let devices =
            crate::devices::load_devices(&mut db, &mut *host, &identity, profile.user).await?;
        // A list naming this device with an X-Wing key the store does not hold: the store is
        // from before the device moved to version 2. A new key would not help (a list never
        // swaps a device's X-Wing key, PROTOCOL.md §4.7): the device must be linked again.
        if !identity.has_pq_key()
            && devices
                .list
                .devices
                .iter()
                .any(|d| d.keys.device == identity.device_id() && d.keys.pq_key.is_some())
        {
            return Err(StoreError::RelinkNeeded.into());
        }
        let moved = move_to_version_2 && !identity.has_pq_key();
        if moved {
            identity.add_pq_key(&mut HostRng(&mut *host));
            // Stored in this step's commit, before anything could be sealed to the new key.
            db.put_bytes(
                T_PROFILE,
                crate::profile::IDENTITY_KEY,
                identity.to_secret_bytes().as_ref(),
            );
        }
        let mut core = ClientCore {
            net,
            host,
            db,
            identity,
            profile,
            registration_token,
            pending_events: Vec::new(),
            conn: None,
            next_id: 0,
            groups: HashMap::new(),
            needs_sync: BTreeSet::new(),
            stale_until_synced: BTreeMap::new(),
            sync_failure: None,
            reverted: None,
            refusals_unreported: Vec::new(),
            full_sync_done: false,
            needs_repost: BTreeSet::new(),
            rekey_policy: crate::RekeyPolicy::default(),
            rekey_check: BTreeSet::new(),
            rekey_refused: HashMap::new(),
            pending_acks: Vec::new(),
            outbox_retry_at: None,
            order_warned: Default::default(),
            held_dirty: true,
            sealed_this_send: false,
            user_identity: devices.identity,
            own_list: devices.own,
            own_list_parsed: devices.list,
            known_lists: devices.known,
            devices_dirty: true,
            unlinked: false,
            own_list_stale: false,
            own_list_current: false,
            own_updates_due: true,
            own_list_moved: false,
            own_keys_retry: false,
            old_side: None,
            link_inbox: Default::default(),
        };
        if moved {
            core.keys_moved()?;
        }
        core.load_groups().await?;
        // Numbers given to messages of an older store (and a new X-Wing key) are kept.
        core.commit().await?;
        Ok(core)
    }

    /// Replays every stored group log (verifying it again) into memory.
    pub(crate) async fn load_groups(&mut self) -> Result<(), ClientError> {
        let metas: Vec<(Vec<u8>, GroupMeta)> = self.db.scan(T_GROUPS, &[], usize::MAX).await?;
        for (key, meta) in metas {
            let Ok(group) = <[u8; 16]>::try_from(key.as_slice()).map(GroupId) else {
                continue;
            };
            let ops: Vec<(Vec<u8>, SignedOp)> =
                self.db.scan(T_OPS, group.as_bytes(), usize::MAX).await?;
            // Frozen is recomputed from the stored log at every start: earlier versions also
            // froze a group for an invalid op the server served, which must not last.
            let (read, unread) = match meta.read {
                ReadMarker(None) => (ReadMarker(Some(meta.last_number)), 0),
                read => (read, meta.unread),
            };
            let meta = GroupMeta {
                tampered: None,
                read,
                unread,
                ..meta
            };
            let mut ctx: Option<GroupCtx> = None;
            for (_, op) in &ops {
                match ctx.as_mut() {
                    None => match GroupState::from_genesis(op) {
                        Ok(state) => ctx = Some(GroupCtx::new(state, meta.clone())),
                        Err(_) => break,
                    },
                    Some(c) => match c.state.apply(op) {
                        Ok(applied) => {
                            c.record_epoch();
                            c.note_op(&applied);
                        }
                        Err(e) => {
                            // A damaged store freezes that group, not the whole client.
                            c.meta
                                .tampered
                                .get_or_insert_with(|| format!("stored log does not verify: {e}"));
                            break;
                        }
                    },
                }
            }
            if let Some(ctx) = ctx {
                self.groups.insert(group, ctx);
                self.number_old_messages(group).await?;
            }
        }
        Ok(())
    }

    /// Queues an event for the application: it is handed out once the step's batch, which
    /// holds what the event reports, is committed ([`Self::commit`]).
    pub(crate) fn emit(&mut self, event: Event) {
        self.pending_events.push(event);
    }

    /// Persists the step's changes atomically and durably, then hands out the events they
    /// back. Called before any frame is sent ([`Self::send_frame`]), where the store was
    /// flushed before, and at the end of every command and loop turn: so nothing is sent or
    /// shown that a crash could take back. If the store fails, the step is reverted
    /// ([`Self::revert`]) and the error returned.
    pub(crate) async fn commit(&mut self) -> Result<(), ClientError> {
        match self.db.commit().await {
            Ok(()) => {
                for mut event in std::mem::take(&mut self.pending_events) {
                    // Whether a message is hidden is this device's setting at the time it is
                    // shown, not something stored with it.
                    self.mark_hidden_event(&mut event).await;
                    self.host.event(event);
                }
                Ok(())
            }
            Err(e) => {
                self.revert(&e).await;
                Err(e.into())
            }
        }
    }

    /// Undoes a step whose changes could not be stored: its batch (already dropped by the
    /// failed commit), its events and the acknowledgements it meant to send are forgotten,
    /// the groups are read again from the store, and the connection is dropped, so that the
    /// next connection resyncs from the cursors stored: nothing acknowledged or shown is lost.
    pub(crate) async fn revert(&mut self, e: &crate::StoreError) {
        tracing::warn!(error = %e, "the local store failed: the step is undone");
        self.reverted = Some(e.clone());
        self.db.discard();
        self.pending_events.clear();
        self.pending_acks.clear();
        self.order_warned.clear();
        self.held_dirty = true;
        self.groups.clear();
        if let Err(e) = self.load_groups().await {
            tracing::warn!(error = %e, "the groups could not be read again from the store");
        }
        // Renumbering an older store's messages is left to the next start.
        self.db.discard();
        self.disconnected(format!("the local store failed: {e}"));
        // Told at once: no commit backs this event.
        for event in std::mem::take(&mut self.pending_events) {
            self.host.event(event);
        }
    }

    /// Commits the step a command or loop turn made ([`Self::commit`]) and returns the
    /// command's result: a result that cannot be stored is not reported as a success.
    pub(crate) async fn end_step<T>(
        &mut self,
        r: Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let committed = self.commit().await;
        match (r, committed) {
            (Ok(_), Err(e)) => Err(e),
            (r, _) => r,
        }
    }

    /// [`Self::end_step`] for a command that posts a message of the user's. A store failure
    /// (in the step, or in its commit) after the message was stored in the outbox answers
    /// `Pending`: the failure undid the rest of the step, the outbox copy is posted again (the
    /// server answers with the seq it has, if it had it) and `Sent` or `SendFailed` follows.
    /// Answering `store` ("not sent") would have the user send it a second time.
    pub(crate) async fn end_send_step<T>(
        &mut self,
        r: Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let in_outbox = self.sealed_this_send;
        match self.end_step(r).await {
            Err(ClientError::Store(_)) if in_outbox => Err(ClientError::Pending),
            r => r,
        }
    }

    pub(crate) fn device(&self) -> DeviceId {
        self.identity.device_id()
    }

    /// The group, if this device may act in it: known, not frozen, and a member of it. A device
    /// that was removed from it (or left) is told so, with how and when
    /// ([`ClientError::Removed`]), rather than meeting a protocol error further on.
    pub(crate) async fn member_ctx(&self, group: GroupId) -> Result<&GroupCtx, ClientError> {
        let ctx = self.groups.get(&group).ok_or(ClientError::UnknownGroup)?;
        if let Some(why) = &ctx.meta.tampered {
            return Err(ClientError::GroupTampered(why.clone()));
        }
        if !ctx.is_member(&self.device()) {
            return Err(match self.departure(group).await? {
                Some(departure) => ClientError::Removed { group, departure },
                None => ClientError::NotMember,
            });
        }
        Ok(ctx)
    }

    /// Whether this device is registered with the server (the server answered `authenticated`
    /// to its registration, now or earlier).
    pub fn is_registered(&self) -> bool {
        self.profile.registered
    }

    /// Whether a connection to the server is open.
    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// The open connection, for a caller that waits on it between steps (the native shell
    /// receives on it beside its command queue) and hands each frame to [`Self::receive`].
    pub fn link_mut(&mut self) -> Option<&mut N::Link> {
        self.conn.as_mut()
    }

    /// The connection failed or the server closed it: it is dropped and the application told
    /// once ([`Event::Disconnected`]). The next [`Self::connect`] resyncs.
    pub async fn connection_lost(&mut self, reason: String) {
        self.disconnected(reason);
        let _ = self.commit().await;
    }

    /// A [`Self::connect`] failed: the application is told ([`Event::Disconnected`]), for
    /// every attempt, so it can show that the client is trying again.
    pub async fn connect_failed(&mut self, reason: String) {
        self.emit(Event::Disconnected { reason });
        let _ = self.commit().await;
    }

    /// What waited for a connection goes now, after a successful [`Self::connect`]: pinned
    /// texts to post again, messages held while offline.
    pub async fn after_connect(&mut self) {
        self.held_dirty = true;
        self.update_own_entries().await;
        self.process_own_waiting().await;
        self.send_own_updates().await;
        // Before anything is posted: what goes now goes in the fresh epoch.
        self.process_rekey_checks().await;
        self.process_needs_repost().await;
        self.process_held().await;
        let _ = self.commit().await;
    }

    /// One frame the server pushed (a message, an op, inbox items): verified, applied and
    /// stored as one step, then acknowledged where the protocol asks for it. Replies to this
    /// core's requests never come here: the request waiting for them takes them.
    pub async fn receive(&mut self, frame: ServerFrame) {
        self.handle_frame(frame).await;
        self.flush_acks().await;
        let _ = self.commit().await;
    }

    /// When the outbox (and held messages) should be posted again, after the server refused
    /// a post for a passing reason or as sealed for an ended epoch; `None` when no retry waits.
    /// Then call [`Self::retry_now`], and [`Self::after_input`] after it.
    pub fn retry_due_at(&self) -> Option<Timestamp> {
        self.outbox_retry_at
    }

    /// Posts the outbox again, in order (its retry is due: [`Self::retry_due_at`]).
    pub async fn retry_now(&mut self) {
        self.outbox_retry_at = None;
        self.held_dirty = true;
        // Groups whose held messages wait for a sync after a stale refusal, and whose wait is
        // over: synced again first (`after_input`), and their messages tried again whatever
        // that sync gives. The others wait on, with a retry due for them.
        let now = self.host.now();
        for (group, until) in std::mem::take(&mut self.stale_until_synced) {
            if until <= now {
                self.needs_sync.insert(group);
            } else {
                self.stale_until_synced.insert(group, until);
                self.retry_outbox_after(Some(until.0.saturating_sub(now.0)));
            }
        }
        self.resend_outbox().await;
        let _ = self.commit().await;
    }

    /// The follow-up work after any input (a command, a frame, a retry): acknowledgements,
    /// groups found to need a sync, rekeying groups that are due ([`crate::RekeyPolicy`]),
    /// pinned texts to post to a new epoch, held messages whose group has caught up.
    pub async fn after_input(&mut self) {
        // The step's changes are stored before the acknowledgements they allow go out
        // (`flush_acks` commits first) and before its events are handed out.
        self.flush_acks().await;
        let _ = self.commit().await;
        self.process_needs_sync().await;
        if self.own_list_stale && self.conn.is_some() {
            match Box::pin(self.catch_up_own_list()).await {
                Ok(()) => self.own_list_current = self.conn.is_some(),
                Err(e) => {
                    tracing::warn!(error = %e, "could not follow this user's device list chain")
                }
            }
        }
        if let Err(e) = self.import_link_bundle().await {
            tracing::warn!(error = %e, "could not import what the link bundle brought");
        }
        self.update_own_entries().await;
        self.process_own_waiting().await;
        self.send_own_updates().await;
        self.process_rekey_checks().await;
        self.process_needs_repost().await;
        self.process_held().await;
        let _ = self.commit().await;
    }

    /// Stores whatever is pending and closes the connection politely. The core can be
    /// dropped afterwards (or connect again).
    pub async fn shutdown(&mut self) {
        let _ = self.commit().await;
        if let Some(conn) = self.conn.take() {
            conn.close().await;
        }
    }
}
