//! The moderation and group commands a front end offers, each built from the core's primitives
//! ([`ClientCore::append`] of one [`OpBody`], [`ClientCore::reason`], [`ClientCore::pin`]):
//! leave, remove or ban with a reason, mute for a while, roles, lock, open hours, slow mode,
//! deletion for everyone, retention, settings, pinned texts and revoking invites. Written once
//! here so that every shell (the native client, the browser bindings) builds each the same way:
//! which op it is, how a mute's end is computed, and that a reason follows the op it explains.

use std::time::Duration;

use confide_protocol::envelope::PinnedKind;
use confide_protocol::group_log::{GroupSettings, OpBody, OpenHours, Role};
use confide_protocol::{GroupId, InviteId, MessageId, UserId};

use crate::Network;
use crate::error::ClientError;
use crate::machine::ClientCore;
use crate::store::ClientStore;

impl<S: ClientStore, N: Network> ClientCore<S, N> {
    /// Leaves the group (an [`OpBody::Leave`]).
    ///
    /// # Errors
    ///
    /// As [`Self::append`].
    pub async fn leave(&mut self, group: GroupId) -> Result<(), ClientError> {
        self.append(group, OpBody::Leave {}).await.map(|_| ())
    }

    /// Removes a member (facilitators), also banning them (keeping them and their devices out)
    /// when `ban` is set, and with a `reason` only the facilitators can read. A new epoch
    /// starts: they can read nothing sent afterwards.
    ///
    /// # Errors
    ///
    /// As [`Self::append`]; with a reason, also as [`Self::reason`] if the reason cannot be
    /// sent (the removal stands then).
    pub async fn remove_member(
        &mut self,
        group: GroupId,
        user: UserId,
        ban: bool,
        reason: Option<String>,
    ) -> Result<(), ClientError> {
        let seq = self.append(group, OpBody::Remove { user, ban }).await?;
        self.reason_for(group, seq, reason).await
    }

    /// Lifts a ban (facilitators).
    ///
    /// # Errors
    ///
    /// As [`Self::append`].
    pub async fn unban(&mut self, group: GroupId, user: UserId) -> Result<(), ClientError> {
        self.append(group, OpBody::Unban { user }).await.map(|_| ())
    }

    /// Gives a member a role (facilitators).
    ///
    /// # Errors
    ///
    /// As [`Self::append`].
    pub async fn set_role(
        &mut self,
        group: GroupId,
        user: UserId,
        role: Role,
    ) -> Result<(), ClientError> {
        self.append(group, OpBody::SetRole { user, role })
            .await
            .map(|_| ())
    }

    /// Mutes a member for `duration` from now (by the host's clock), with an optional `reason`
    /// only the facilitators can read. The server refuses their posts until it ends.
    ///
    /// # Errors
    ///
    /// As [`Self::append`]; with a reason, also as [`Self::reason`] if the reason cannot be
    /// sent (the mute stands then).
    pub async fn mute(
        &mut self,
        group: GroupId,
        user: UserId,
        duration: Duration,
        reason: Option<String>,
    ) -> Result<(), ClientError> {
        let until = self.host.now().saturating_add(duration);
        let seq = self.append(group, OpBody::Mute { user, until }).await?;
        self.reason_for(group, seq, reason).await
    }

    /// Lifts a mute.
    ///
    /// # Errors
    ///
    /// As [`Self::append`].
    pub async fn unmute(&mut self, group: GroupId, user: UserId) -> Result<(), ClientError> {
        self.append(group, OpBody::Unmute { user })
            .await
            .map(|_| ())
    }

    /// Locks the chat (only facilitators can post) or unlocks it.
    ///
    /// # Errors
    ///
    /// As [`Self::append`].
    pub async fn set_locked(&mut self, group: GroupId, locked: bool) -> Result<(), ClientError> {
        let body = if locked {
            OpBody::Lock {}
        } else {
            OpBody::Unlock {}
        };
        self.append(group, body).await.map(|_| ())
    }

    /// Sets (or, with `None`, clears) the weekly open hours, in the group's time zone.
    ///
    /// # Errors
    ///
    /// As [`Self::append`].
    pub async fn set_open_hours(
        &mut self,
        group: GroupId,
        schedule: Option<OpenHours>,
    ) -> Result<(), ClientError> {
        self.append(group, OpBody::SetOpenHours { schedule })
            .await
            .map(|_| ())
    }

    /// Slow mode: one message per `seconds` per member (0 turns it off).
    ///
    /// # Errors
    ///
    /// As [`Self::append`].
    pub async fn set_slow_mode(&mut self, group: GroupId, seconds: u32) -> Result<(), ClientError> {
        self.append(group, OpBody::SetSlowMode { seconds })
            .await
            .map(|_| ())
    }

    /// Deletes messages for everyone: the server drops the ciphertext, every client the text.
    ///
    /// # Errors
    ///
    /// As [`Self::append`].
    pub async fn delete_for_everyone(
        &mut self,
        group: GroupId,
        messages: Vec<MessageId>,
    ) -> Result<(), ClientError> {
        self.append(group, OpBody::DeleteMessages { messages })
            .await
            .map(|_| ())
    }

    /// Sets how long messages are kept (on the server and on every device); `None` keeps
    /// them. Whole seconds count.
    ///
    /// # Errors
    ///
    /// As [`Self::append`].
    pub async fn set_retention(
        &mut self,
        group: GroupId,
        keep_for: Option<Duration>,
    ) -> Result<(), ClientError> {
        let seconds = keep_for.map(|d| d.as_secs());
        self.append(group, OpBody::SetRetention { seconds })
            .await
            .map(|_| ())
    }

    /// Changes the group settings (whether members may message each other privately).
    ///
    /// # Errors
    ///
    /// As [`Self::append`].
    pub async fn set_settings(
        &mut self,
        group: GroupId,
        settings: GroupSettings,
    ) -> Result<(), ClientError> {
        self.append(group, OpBody::SetSettings { settings })
            .await
            .map(|_| ())
    }

    /// Pins a new version of the group agreement (facilitators). Members must accept it before
    /// they can post again.
    ///
    /// # Errors
    ///
    /// As [`Self::pin`].
    pub async fn set_agreement(&mut self, group: GroupId, text: String) -> Result<(), ClientError> {
        self.pin(group, PinnedKind::Agreement, text).await
    }

    /// Pins "if you are in crisis" resources (facilitators), readable by members at any time.
    ///
    /// # Errors
    ///
    /// As [`Self::pin`].
    pub async fn set_crisis_resources(
        &mut self,
        group: GroupId,
        text: String,
    ) -> Result<(), ClientError> {
        self.pin(group, PinnedKind::CrisisResources, text).await
    }

    /// Revokes an invite (facilitators and co-facilitators): nobody can join or be approved
    /// with it any more.
    ///
    /// # Errors
    ///
    /// As [`Self::append`].
    pub async fn revoke_invite(
        &mut self,
        group: GroupId,
        invite: InviteId,
    ) -> Result<(), ClientError> {
        self.append(group, OpBody::RevokeInvite { invite })
            .await
            .map(|_| ())
    }

    /// Sends the reason for the moderation op at `op_seq`, if there is one.
    async fn reason_for(
        &mut self,
        group: GroupId,
        op_seq: u64,
        reason: Option<String>,
    ) -> Result<(), ClientError> {
        match reason {
            Some(text) => self.reason(group, op_seq, text).await,
            None => Ok(()),
        }
    }
}
