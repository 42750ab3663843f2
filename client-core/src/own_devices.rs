//! Keeping the person's own safety plan and hidden topics the same on every device they linked
//! (PROTOCOL.md §7.4): a change made here is sealed, padded to one size, to each other device of
//! the person's current device list; a change made there replaces what is here only if it is
//! newer. Nothing goes to a group, and the server sees only that an update went between two of
//! the person's devices.
//!
//! Updates go out, and come in, only once this device has caught up with its own list chain on
//! the current connection, so that it neither seals to a device a newer list dropped nor takes
//! an update from one. Updates that arrive before that wait in the store.

use confide_protocol::frames::InboxItem;
use confide_protocol::own_devices::{OwnDevicesPayload, payload_user};
use confide_protocol::seal::SealError;
use confide_protocol::{DeviceId, GroupId, Timestamp};
use serde::{Deserialize, Serialize};

use crate::error::{ClientError, EncryptError};
use crate::events::Event;
use crate::machine::ClientCore;
use crate::store::{ClientStore, T_OWN_STAMPS, T_OWN_WAITING};
use crate::{HostRng, Network};

/// Most updates kept while this device catches up with its own list (a person has at most
/// eight devices, and updates are rare: beyond this the oldest are dropped).
pub(crate) const MAX_OWN_WAITING: usize = 64;

/// The stamp key of the safety plan (hidden topics are stamped under their group id).
pub(crate) const PLAN_STAMP: &[u8] = b"plan";

/// Updates stamped further ahead of this device's clock than this are refused: a device with
/// a clock far ahead (or a stolen one) cannot freeze a value for everyone until then.
pub(crate) const MAX_OWN_UPDATE_AHEAD_MS: u64 = 24 * 60 * 60 * 1000;

/// When a value was last changed, and by which device; and whether this device still owes its
/// other devices the change it made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Stamp {
    /// `updated_at` of the value held (PROTOCOL.md §7.4).
    pub(crate) at: Timestamp,
    /// The device that made the change (the tie-break of equal times).
    pub(crate) by: DeviceId,
    /// Whether this device made the change and has not yet sent it to its other devices.
    pub(crate) owed: bool,
}

impl Default for Stamp {
    /// Older than any change: time 0 by the all-zero device id.
    fn default() -> Self {
        Stamp {
            at: Timestamp(0),
            by: DeviceId([0; 32]),
            owed: false,
        }
    }
}

impl Stamp {
    /// A value the link bundle brought, last changed at `at` (by a device it does not name).
    pub(crate) fn imported(at: Timestamp) -> Self {
        Stamp {
            at,
            ..Stamp::default()
        }
    }

    /// Whether an update stamped `(at, by)` replaces the value this stamp describes.
    fn is_older_than(&self, at: Timestamp, by: &DeviceId) -> bool {
        (self.at, self.by) < (at, *by)
    }
}

/// Which value an own-devices update carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OwnValue {
    /// The safety plan.
    SafetyPlan,
    /// The hidden topics of one group.
    HiddenTopics(GroupId),
}

impl OwnValue {
    fn stamp_key(self) -> Vec<u8> {
        match self {
            OwnValue::SafetyPlan => PLAN_STAMP.to_vec(),
            OwnValue::HiddenTopics(group) => group.as_bytes().to_vec(),
        }
    }
}

impl<S: ClientStore, N: Network> ClientCore<S, N> {
    /// The stamp of `value`, if it was ever changed.
    pub(crate) async fn own_stamp(&self, value: OwnValue) -> Result<Option<Stamp>, ClientError> {
        Ok(self
            .db
            .get::<Stamp>(T_OWN_STAMPS, &value.stamp_key())
            .await?)
    }

    /// This device changed `value` (in the step's batch): stamps it later than anything held,
    /// and owes the change to the person's other devices ([`Self::send_own_updates`]).
    pub(crate) async fn own_value_changed(&mut self, value: OwnValue) -> Result<(), ClientError> {
        let key = value.stamp_key();
        let held = self.db.get::<Stamp>(T_OWN_STAMPS, &key).await?;
        // After the value held, even if this device's clock is behind the one that made it: a
        // change made after receiving another wins (§7.4).
        let at = held.map_or(Timestamp(0), |s| Timestamp(s.at.0.saturating_add(1)));
        let stamp = Stamp {
            at: at.max(self.host.now()),
            by: self.identity.device_id(),
            owed: true,
        };
        self.db.put(T_OWN_STAMPS, &key, &stamp)?;
        self.own_updates_due = true;
        Ok(())
    }

    /// This user's list changed: updates sealed under the old one may have been dropped by
    /// devices already on the new one (§7.4), so this device sends what it changed itself
    /// again, to the devices of the new list.
    async fn resend_own_values(&mut self) {
        let me = self.identity.device_id();
        let Ok(all) = self.db.scan(T_OWN_STAMPS, &[], usize::MAX).await else {
            return;
        };
        for (key, stamp) in all {
            let stamp: Stamp = stamp;
            if stamp.by == me && !stamp.owed {
                let _ = self.db.put(
                    T_OWN_STAMPS,
                    &key,
                    &Stamp {
                        owed: true,
                        ..stamp
                    },
                );
            }
        }
        self.own_updates_due = true;
    }

    /// Whether updates may go out and come in: connected, with this user's list followed on
    /// this connection.
    fn own_exchange_ready(&self) -> bool {
        self.conn.is_some() && self.own_list_current && !self.unlinked
    }

    /// The person's other devices on the current list.
    fn other_own_devices(&self) -> Vec<confide_protocol::DeviceKeys> {
        let me = self.identity.device_id();
        self.own_list_parsed
            .devices
            .iter()
            .map(|d| d.keys.clone())
            .filter(|k| k.device != me)
            .collect()
    }

    /// The update that carries `value` as this device holds it now, with `stamp`.
    async fn own_update(
        &self,
        value: OwnValue,
        stamp: &Stamp,
    ) -> Result<OwnDevicesPayload, ClientError> {
        Ok(match value {
            OwnValue::SafetyPlan => OwnDevicesPayload::SafetyPlan {
                plan: self.safety_plan().await?,
                updated_at: stamp.at,
            },
            OwnValue::HiddenTopics(group) => OwnDevicesPayload::HiddenTopics {
                group,
                topics: self.stored_hidden_topics(group).await?,
                updated_at: stamp.at,
            },
        })
    }

    /// Sends every change this device owes its other devices, when it may
    /// ([`Self::own_exchange_ready`]); a change not sent stays owed for the next connection.
    pub(crate) async fn send_own_updates(&mut self) {
        if self.own_list_moved && self.own_exchange_ready() {
            self.own_list_moved = false;
            self.resend_own_values().await;
        }
        if !self.own_updates_due || !self.own_exchange_ready() {
            return;
        }
        // Tried once per change, list move or connection: a device whose inbox stays full is
        // not retried on every input.
        self.own_updates_due = false;
        let owed: Vec<(Vec<u8>, Stamp)> = match self.db.scan(T_OWN_STAMPS, &[], usize::MAX).await {
            Ok(all) => all
                .into_iter()
                .filter(|(_, s): &(_, Stamp)| s.owed)
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "own-device stamps could not be read");
                return;
            }
        };
        for (key, stamp) in owed {
            let value = match <[u8; 16]>::try_from(key.as_slice()) {
                Ok(group) => OwnValue::HiddenTopics(GroupId(group)),
                Err(_) if key == PLAN_STAMP => OwnValue::SafetyPlan,
                Err(_) => continue,
            };
            if let Err(e) = self.send_own_update(value, &stamp).await {
                tracing::warn!(error = %e, "an update to this person's other devices waits");
                return;
            }
            let sent = Stamp {
                owed: false,
                ..stamp
            };
            if self.db.put(T_OWN_STAMPS, &key, &sent).is_err() || self.commit().await.is_err() {
                return;
            }
        }
    }

    async fn send_own_update(&mut self, value: OwnValue, stamp: &Stamp) -> Result<(), ClientError> {
        let update = self.own_update(value, stamp).await?;
        let recipients = self.other_own_devices();
        if recipients.is_empty() {
            return Ok(());
        }
        let hash = self.own_list.signed.hash();
        // One frame per device: one device's full inbox does not hold back the others. The
        // change stays owed (sent again next time) if any of them failed; a device that has it
        // already ignores it (not newer).
        let mut failed = None;
        for keys in &recipients {
            let sealed = match update.seal(
                &self.identity,
                &self.own_list_parsed,
                &hash,
                keys,
                &mut HostRng(&mut *self.host),
            ) {
                Ok(sealed) => sealed,
                // A device whose keys cannot be sealed to is left out (it would fail every
                // time); the others still get the update.
                Err(confide_protocol::own_devices::OwnDevicesError::Seal(e))
                    if !matches!(e, SealError::TooLarge(_)) =>
                {
                    tracing::warn!(
                        device = %keys.device,
                        error = %e,
                        "a device's keys cannot be sealed to: it is left out"
                    );
                    continue;
                }
                Err(confide_protocol::own_devices::OwnDevicesError::Seal(e)) => {
                    return Err(ClientError::Encrypt(EncryptError::Seal(e)));
                }
                Err(other) => return Err(ClientError::Invalid(other.to_string())),
            };
            if let Err(e) = self.send_sealed(vec![sealed]).await {
                failed = Some(e);
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// An `own_devices` inbox item (dispatched on its kind before anything looks at its
    /// `group`, which is a user id). Kept to wait while this device has not followed its own
    /// list on this connection; otherwise applied or dropped. Always acknowledged.
    pub(crate) async fn receive_own_devices(&mut self, item: &InboxItem) -> bool {
        if payload_user(&item.payload) != Some(self.profile.user) {
            return true;
        }
        if !self.own_list_current {
            let (waiting, oldest) = match self.db.count(T_OWN_WAITING, &[]).await {
                Ok(n) => n,
                Err(_) => return false,
            };
            if waiting >= MAX_OWN_WAITING
                && let Some(oldest) = oldest
            {
                self.db.remove(T_OWN_WAITING, &oldest);
            }
            return self
                .db
                .put(T_OWN_WAITING, &item.inbox_id.to_be_bytes(), item)
                .is_ok();
        }
        self.apply_own_update(item).await;
        true
    }

    /// Opens and applies an update that waited, once this device follows its own list.
    pub(crate) async fn process_own_waiting(&mut self) {
        if !self.own_exchange_ready() {
            return;
        }
        let waiting: Vec<(Vec<u8>, InboxItem)> =
            match self.db.scan(T_OWN_WAITING, &[], MAX_OWN_WAITING).await {
                Ok(w) => w,
                Err(_) => return,
            };
        for (key, item) in waiting {
            self.apply_own_update(&item).await;
            self.db.remove(T_OWN_WAITING, &key);
        }
        let _ = self.commit().await;
    }

    /// Opens an update against this device's current list and keeps its value if newer
    /// (PROTOCOL.md §7.4). Anything that does not open or is not newer is dropped.
    async fn apply_own_update(&mut self, item: &InboxItem) {
        let hash = self.own_list.signed.hash();
        let update = match OwnDevicesPayload::open(
            &self.identity,
            &self.own_list_parsed,
            &hash,
            &item.payload,
        ) {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "an own-device update was dropped");
                return;
            }
        };
        let sender = item.payload.sender;
        let (value, at) = match &update {
            OwnDevicesPayload::SafetyPlan { updated_at, .. } => (OwnValue::SafetyPlan, *updated_at),
            OwnDevicesPayload::HiddenTopics {
                group, updated_at, ..
            } => (OwnValue::HiddenTopics(*group), *updated_at),
        };
        if at.0 > self.host.now().0.saturating_add(MAX_OWN_UPDATE_AHEAD_MS) {
            tracing::debug!("an own-device update stamped far in the future was dropped");
            return;
        }
        let key = value.stamp_key();
        let held = self
            .db
            .get::<Stamp>(T_OWN_STAMPS, &key)
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        if !held.is_older_than(at, &sender) {
            return;
        }
        let stored = match update {
            OwnDevicesPayload::SafetyPlan { plan, .. } => self.store_safety_plan(&plan),
            OwnDevicesPayload::HiddenTopics { group, topics, .. } => {
                self.store_hidden_topics_anywhere(group, topics)
            }
        };
        if stored.is_err() {
            return;
        }
        let stamp = Stamp {
            at,
            by: sender,
            owed: false,
        };
        if self.db.put(T_OWN_STAMPS, &key, &stamp).is_ok() {
            self.emit(Event::OwnSettingsChanged {
                group: match value {
                    OwnValue::SafetyPlan => None,
                    OwnValue::HiddenTopics(group) => Some(group),
                },
            });
        }
    }
}
