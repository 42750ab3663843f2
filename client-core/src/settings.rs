//! A group's settings as its verified log has them, typed, for a front end to show and edit
//! without walking the log itself ([`ClientCore::settings`]).

use confide_protocol::GroupId;
use confide_protocol::group_log::OpenHours;

use crate::error::ClientError;
use crate::link::Network;
use crate::machine::ClientCore;
use crate::store::ClientStore;

/// A group's current settings, from its verified log ([`ClientCore::settings`]): what
/// facilitators set and every member may read ("open Mon–Thu 18:00–22:00; messages are kept
/// 30 days").
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SettingsInfo {
    /// Whether the chat is closed by hand (`lock`): only facilitators post until `unlock`.
    pub locked: bool,
    /// The weekly hours in which members may post (`None`: at any time). Local times in the
    /// schedule's own time zone, which may not be the reader's.
    pub open_hours: Option<OpenHours>,
    /// Whether the chat is inside its open hours now, by this device's clock (always with no
    /// schedule; a schedule whose time zone cannot be evaluated counts as closed, as the
    /// server counts it).
    pub open_now: bool,
    /// Slow mode: each member may post at most once per this many seconds (0: off).
    pub slow_mode_seconds: u32,
    /// How long messages are kept, in seconds (`None`: no limit).
    pub retention_seconds: Option<u64>,
    /// Whether members may message each other privately.
    pub members_may_message_privately: bool,
    /// The current version of the group agreement, if there is one (its text: `pinned`).
    pub agreement_version: Option<u32>,
    /// Whether crisis resources are pinned (their text: `pinned`).
    pub crisis_resources: bool,
}

impl<S: ClientStore, N: Network> ClientCore<S, N> {
    /// The group's current settings, from its verified log: lock, open hours, slow mode,
    /// retention, private messages, and whether an agreement and crisis resources are pinned.
    /// Changed by [`Self::set_locked`], [`Self::set_open_hours`], [`Self::set_slow_mode`],
    /// [`Self::set_retention`] and [`Self::set_settings`] (facilitators); each change reaches
    /// members as a [`crate::Event::GroupChanged`].
    ///
    /// # Errors
    ///
    /// [`ClientError::UnknownGroup`] for a group this device does not know.
    pub fn settings(&self, group: GroupId) -> Result<SettingsInfo, ClientError> {
        let ctx = self.groups.get(&group).ok_or(ClientError::UnknownGroup)?;
        let state = &ctx.state;
        Ok(SettingsInfo {
            locked: state.locked(),
            open_hours: state.open_hours().cloned(),
            // Fails closed, as `status` and the server do (§10.1 `post` 7.2).
            open_now: state.within_open_hours(self.host.now()).unwrap_or(false),
            slow_mode_seconds: state.slow_mode_seconds(),
            retention_seconds: state.retention_seconds(),
            members_may_message_privately: state.settings().members_may_message_privately,
            agreement_version: state.agreement().map(|a| a.version),
            crisis_resources: state.crisis_resources().is_some(),
        })
    }
}
