//! Periodic rekeying (PROTOCOL.md §5.5): a device moves a group it is in to a new epoch by
//! itself — a `rekey` op, the same members with fresh sender keys — once the current epoch has
//! carried [`RekeyPolicy::after_messages`] messages or is [`RekeyPolicy::after_ms`] old, so that
//! a sender key that leaked stops working. Checked after a sync of the group has caught up and
//! before this device sends a message there; the op itself then runs the new-epoch machinery
//! every epoch change runs (a fresh chain, sealed to the current devices before its first use).

use confide_protocol::GroupId;
use confide_protocol::frames::ErrorCode;
use confide_protocol::group_log::OpBody;

use crate::Network;
use crate::error::ClientError;
use crate::machine::ClientCore;
use crate::session::is_passing_failure;
use crate::store::ClientStore;

/// How many messages an epoch carries, by default, before a member's device rekeys the group
/// ([`RekeyPolicy::after_messages`]): a sender key that leaked reads at most about this many.
pub const REKEY_AFTER_MESSAGES: u64 = 1_000;

/// How old an epoch gets, by default, before a member's device rekeys the group
/// ([`RekeyPolicy::after_ms`]): one day, so a sender key that leaked reads at most a day's
/// messages, for one round of sealing per group and day.
pub const REKEY_AFTER_MS: u64 = 24 * 60 * 60 * 1000;

/// When this device rekeys a group by itself (PROTOCOL.md §5.5): whichever of the two comes
/// first, and only as soon as the log allows a `rekey`
/// ([`confide_protocol::group_log::MIN_REKEY_INTERVAL_MS`] after the epoch began). 0 turns a
/// trigger off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RekeyPolicy {
    /// Rekey once the current epoch has carried this many messages (anyone's, as this device
    /// has received or sent them); 0: never for this reason. Default
    /// [`REKEY_AFTER_MESSAGES`].
    pub after_messages: u64,
    /// Rekey once the current epoch is this many milliseconds old, by the claimed time of the
    /// op that began it; 0: never for this reason. Default [`REKEY_AFTER_MS`].
    pub after_ms: u64,
}

impl Default for RekeyPolicy {
    fn default() -> Self {
        RekeyPolicy {
            after_messages: REKEY_AFTER_MESSAGES,
            after_ms: REKEY_AFTER_MS,
        }
    }
}

impl RekeyPolicy {
    /// Never rekey by itself (an explicit [`ClientCore::rekey`] still works).
    pub const NEVER: RekeyPolicy = RekeyPolicy {
        after_messages: 0,
        after_ms: 0,
    };
}

impl<S: ClientStore, N: Network> ClientCore<S, N> {
    /// When this device rekeys its groups by itself from now on ([`RekeyPolicy`]).
    pub fn set_rekey_policy(&mut self, policy: RekeyPolicy) {
        self.rekey_policy = policy;
    }

    /// When this device rekeys its groups by itself.
    pub fn rekey_policy(&self) -> RekeyPolicy {
        self.rekey_policy
    }

    /// Moves the group to a new epoch with the same members (a `rekey` op, PROTOCOL.md §8.5):
    /// every member device then seals a fresh sender key, and keys that leaked stop working.
    /// This device does it by itself as its [`RekeyPolicy`] says; this is for doing it by hand.
    /// When another device's op got there first, the group is synced and, if that op began a
    /// new epoch (someone else's rekey, say), this succeeds without trying again.
    ///
    /// # Errors
    ///
    /// Those of a command in a group that reaches the server ([the errors every command
    /// shares](crate::ClientCore#errors)); [`ClientError::NotAllowed`] with
    /// [`confide_protocol::LogError::RekeyTooSoon`] within a minute of the epoch's beginning
    /// (nothing is sent); [`ClientError::Server`] when the server refuses it.
    pub async fn rekey(&mut self, group: GroupId) -> Result<(), ClientError> {
        let r = self.append_rekey(group).await;
        self.end_step(r).await
    }

    /// Appends a `rekey` once: on a conflict the group is synced, and the rekey counts as done
    /// when the op that won began a new epoch (the keys are fresh either way).
    pub(crate) async fn append_rekey(&mut self, group: GroupId) -> Result<(), ClientError> {
        let before = self.member_ctx(group).await?.state.epoch_ref();
        match self
            .append_op_retrying(group, OpBody::Rekey {}, false)
            .await
        {
            Ok(_) => Ok(()),
            Err(ClientError::Server {
                code: ErrorCode::OpConflict,
                ..
            }) if self
                .groups
                .get(&group)
                .is_some_and(|ctx| ctx.state.epoch_ref() != before) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Whether this device should rekey `group` now: it is in the group with the user's consent,
    /// the log is not behind what members use, the log allows a `rekey` at the time this
    /// device would claim, no rekey of this epoch was refused here, and the epoch has carried
    /// enough messages or is old enough ([`RekeyPolicy`]).
    pub(crate) fn rekey_due(&self, group: GroupId) -> bool {
        let Some(ctx) = self.groups.get(&group) else {
            return false;
        };
        let state = &ctx.state;
        if ctx.meta.tampered.is_some()
            || !ctx.meta.accepted
            || !ctx.is_member(&self.device())
            || ctx.meta.behind(state).is_some()
            || self.rekey_refused.get(&group) == Some(&state.epoch_ref())
        {
            return false;
        }
        let at = state.claim_time(self.host.now());
        if at < state.earliest_rekey_at() {
            return false;
        }
        let policy = self.rekey_policy;
        let by_count = policy.after_messages > 0
            && ctx.meta.messages_since_epoch_began(state.epoch().0) >= policy.after_messages;
        let by_age = policy.after_ms > 0
            && at.0.saturating_sub(state.epoch_started_at().0) >= policy.after_ms;
        by_count || by_age
    }

    /// Rekeys `group` if it is due ([`Self::rekey_due`]). A failure is logged and never stops
    /// what comes next (a message is sent in the current epoch then); a refusal that would come
    /// again is not tried again in this epoch.
    pub(crate) async fn rekey_if_due(&mut self, group: GroupId) {
        if self.conn.is_none() || !self.rekey_due(group) {
            return;
        }
        let epoch = self.epoch_ref_of(group);
        match self.append_rekey(group).await {
            Ok(()) => tracing::debug!(%group, "group rekeyed"),
            Err(e) => {
                tracing::warn!(%group, code = e.code(), "could not rekey the group");
                // A conflict with another op, or a passing failure, may go the next time.
                let conflict = matches!(
                    e,
                    ClientError::Server {
                        code: ErrorCode::OpConflict,
                        ..
                    }
                );
                if !conflict
                    && !is_passing_failure(&e)
                    && let Some(epoch) = epoch
                {
                    self.rekey_refused.insert(group, epoch);
                }
            }
        }
    }

    /// Rekeys, where due, the groups whose sync has caught up since the last time; each once
    /// (a sync a rekey makes marks its group for the next time, not for this pass). Those left
    /// when the connection drops wait for the next time.
    pub(crate) async fn process_rekey_checks(&mut self) {
        let mut groups = std::mem::take(&mut self.rekey_check).into_iter();
        while self.conn.is_some()
            && let Some(group) = groups.next()
        {
            self.rekey_if_due(group).await;
        }
        self.rekey_check.extend(groups);
    }
}
