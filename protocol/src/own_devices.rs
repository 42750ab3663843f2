//! What one person's devices tell each other outside any group (PROTOCOL.md §7.4): their own
//! safety plan and the warning topics they hide, kept the same on every device they linked.
//!
//! It is a sealed payload of kind [`SealKind::OwnDevices`], the construction of §4 unchanged:
//! the `group` field carries the person's user id and the epoch fields the version and hash of
//! their current device list, so the HPKE `info` and the sender's signature bind the payload to
//! that person and to the exact list both devices are on. The server accepts it only between
//! two devices of one user's current list (§10.1); the recipient opens it only from a device of
//! its own current list. Each update carries the whole value with a signed `updated_at`; a
//! device keeps the newest, so a replayed older update changes nothing.

use serde::{Deserialize, Serialize};

use crate::device_list::{DeviceList, DeviceListHash};
use crate::group_work::SafetyPlan;
use crate::identity::{DeviceIdentity, DeviceKeys};
use crate::ids::{Epoch, EpochRef, GroupId, OpHash, Timestamp, UserId};
use crate::seal::{self, SealError, SealKind, SealedPayload};

/// The size every own-devices payload is padded to before sealing (ISO/IEC 7816-4: the JSON,
/// `0x80`, then zeros), so that the server, which sees the kind, cannot tell a safety plan from
/// hidden topics, nor one plan from another, by length. A full safety plan
/// ([`crate::group_work::MAX_PLAN_BYTES`] of JSON) and its envelope fit.
pub const OWN_DEVICES_PADDED_LEN: usize = 34 * 1024;

/// One update between a person's own devices. Its `Debug` shows only which kind it is.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case", deny_unknown_fields)]
pub enum OwnDevicesPayload {
    /// The whole safety plan as it now is (an empty plan: it was cleared).
    SafetyPlan {
        /// The plan.
        plan: SafetyPlan,
        /// When the person changed it (the sending device's clock).
        updated_at: Timestamp,
    },
    /// The whole set of warning topics the person hides in one group.
    HiddenTopics {
        /// The group.
        group: GroupId,
        /// The hidden topic ids (at most [`crate::group_work::MAX_WARNING_TOPICS`], distinct).
        topics: Vec<u16>,
        /// When the person changed it.
        updated_at: Timestamp,
    },
}

impl std::fmt::Debug for OwnDevicesPayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OwnDevicesPayload::SafetyPlan { .. } => f.write_str("OwnDevicesPayload::SafetyPlan"),
            OwnDevicesPayload::HiddenTopics { .. } => {
                f.write_str("OwnDevicesPayload::HiddenTopics")
            }
        }
    }
}

/// Why an own-devices payload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OwnDevicesError {
    /// Sealing or opening failed (§4.6).
    #[error(transparent)]
    Seal(#[from] SealError),
    /// Not of kind `own_devices`, or not for this user and list, or from a device the list
    /// does not name.
    #[error("not from one of this person's own devices on their current list")]
    NotOwnDevice,
    /// The payload does not parse or breaks a limit.
    #[error("invalid own-devices payload: {0}")]
    Invalid(String),
}

fn invalid(what: &str) -> OwnDevicesError {
    OwnDevicesError::Invalid(what.into())
}

/// The epoch fields of an own-devices payload: the list's version and hash.
fn list_ref(version: u64, hash: &DeviceListHash) -> EpochRef {
    EpochRef {
        epoch: Epoch(version),
        hash: OpHash(hash.0),
    }
}

impl OwnDevicesPayload {
    /// Checks the limits: a valid plan; distinct hidden topics, at most
    /// [`crate::group_work::MAX_WARNING_TOPICS`].
    pub fn validate(&self) -> Result<(), OwnDevicesError> {
        match self {
            OwnDevicesPayload::SafetyPlan { plan, .. } => plan
                .validate()
                .map_err(|_| invalid("the safety plan breaks a limit")),
            OwnDevicesPayload::HiddenTopics { topics, .. } => {
                let distinct: std::collections::BTreeSet<_> = topics.iter().collect();
                if topics.len() > crate::group_work::MAX_WARNING_TOPICS
                    || distinct.len() != topics.len()
                {
                    return Err(invalid("hidden topics must be distinct, at most 32"));
                }
                Ok(())
            }
        }
    }

    /// Seals this update from `sender` to `recipient`, both devices of `list` (the person's
    /// current list, `hash` its [`crate::device_list::SignedDeviceList::hash`]).
    pub fn seal(
        &self,
        sender: &DeviceIdentity,
        list: &DeviceList,
        hash: &DeviceListHash,
        recipient: &DeviceKeys,
        rng: &mut impl rand_core::CryptoRng,
    ) -> Result<SealedPayload, OwnDevicesError> {
        self.validate()?;
        let names = |d: &crate::DeviceId| list.devices.iter().any(|l| l.keys.device == *d);
        if !names(&sender.device_id()) || !names(&recipient.device) {
            return Err(OwnDevicesError::NotOwnDevice);
        }
        let mut padded = zeroize::Zeroizing::new(
            serde_json::to_vec(self).map_err(|_| invalid("does not serialise"))?,
        );
        if padded.len() >= OWN_DEVICES_PADDED_LEN {
            return Err(invalid("too large"));
        }
        padded.push(0x80);
        padded.resize(OWN_DEVICES_PADDED_LEN, 0);
        Ok(seal::seal(
            sender,
            recipient,
            SealKind::OwnDevices,
            GroupId(list.user.0),
            list_ref(list.version, hash),
            &padded,
            rng,
        )?)
    }

    /// Opens an update sealed to `me`: it must be of kind `own_devices`, name `list`'s user,
    /// version and hash (this device's current list, `hash` its hash), come from another device
    /// that list names, open and verify (§4.6), and parse and validate.
    pub fn open(
        me: &DeviceIdentity,
        list: &DeviceList,
        hash: &DeviceListHash,
        sealed: &SealedPayload,
    ) -> Result<OwnDevicesPayload, OwnDevicesError> {
        let expected = list_ref(list.version, hash);
        if sealed.kind != SealKind::OwnDevices
            || sealed.group != GroupId(list.user.0)
            || sealed.epoch_ref() != expected
            || sealed.sender == me.device_id()
            || !list.devices.iter().any(|l| l.keys.device == sealed.sender)
        {
            return Err(OwnDevicesError::NotOwnDevice);
        }
        let opened = seal::open(me, sealed)?;
        if opened.len() != OWN_DEVICES_PADDED_LEN {
            return Err(invalid("not padded to the fixed size"));
        }
        let end = opened
            .iter()
            .rposition(|b| *b != 0)
            .filter(|i| opened[*i] == 0x80)
            .ok_or_else(|| invalid("bad padding"))?;
        // The error names no value: the plan is the person's own, and errors may reach logs.
        let payload: OwnDevicesPayload =
            serde_json::from_slice(&opened[..end]).map_err(|_| invalid("does not parse"))?;
        payload.validate()?;
        Ok(payload)
    }

    /// When the person made this change.
    pub fn updated_at(&self) -> Timestamp {
        match self {
            OwnDevicesPayload::SafetyPlan { updated_at, .. }
            | OwnDevicesPayload::HiddenTopics { updated_at, .. } => *updated_at,
        }
    }
}

/// The user id an own-devices payload names (its `group` field); `None` for any other kind,
/// whose `group` is a group. Clients dispatch on the kind before they look at the group: group
/// ids and user ids are both 16 bytes, and anyone may create a group whose id equals a user id.
pub fn payload_user(sealed: &SealedPayload) -> Option<UserId> {
    (sealed.kind == SealKind::OwnDevices).then_some(UserId(sealed.group.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device_list::{ListedDevice, UserIdentity};
    use crate::test_rng;

    #[test]
    fn only_the_persons_own_devices_on_the_same_list_exchange_updates() {
        let phone = DeviceIdentity::generate(&mut test_rng(1));
        let laptop = DeviceIdentity::generate(&mut test_rng(2));
        let stranger = DeviceIdentity::generate(&mut test_rng(3));
        let user = UserId([9; 16]);
        let identity = UserIdentity::from_secret_bytes(&[7; 32]);
        let key = identity.public();
        let v1 = DeviceList::first(user, &identity, &phone, Timestamp(1));
        let s1 = identity.sign_list(&v1, &phone).unwrap();
        let v2 = v1.successor(
            s1.hash(),
            phone.device_id(),
            Timestamp(2),
            vec![
                ListedDevice::new(&phone, &user, &key),
                ListedDevice::new(&laptop, &user, &key),
            ],
        );
        let s2 = identity.sign_list(&v2, &phone).unwrap();
        let h2 = s2.hash();
        let mut plan = SafetyPlan::default();
        plan.coping_steps.push("Call my sister".into());
        let update = OwnDevicesPayload::SafetyPlan {
            plan,
            updated_at: Timestamp(5),
        };
        let mut rng = test_rng(4);
        let sealed = update
            .seal(&phone, &v2, &h2, &laptop.public_keys(), &mut rng)
            .unwrap();
        assert_eq!(sealed.kind, SealKind::OwnDevices);
        assert_eq!(payload_user(&sealed), Some(user));
        // Every update is the same size, whatever it carries.
        let topics = OwnDevicesPayload::HiddenTopics {
            group: GroupId([1; 16]),
            topics: vec![1],
            updated_at: Timestamp(6),
        }
        .seal(&phone, &v2, &h2, &laptop.public_keys(), &mut rng)
        .unwrap();
        assert_eq!(topics.ciphertext.len(), sealed.ciphertext.len());
        assert_eq!(
            OwnDevicesPayload::open(&laptop, &v2, &h2, &sealed).unwrap(),
            update
        );
        // The laptop on another list version (the server replays an update from an older list).
        assert_eq!(
            OwnDevicesPayload::open(&laptop, &v1, &s1.hash(), &sealed),
            Err(OwnDevicesError::NotOwnDevice)
        );
        // Not to a device the list does not name, and not from one.
        assert_eq!(
            update
                .seal(&phone, &v2, &h2, &stranger.public_keys(), &mut rng)
                .unwrap_err(),
            OwnDevicesError::NotOwnDevice
        );
        let forged = seal::seal(
            &stranger,
            &laptop.public_keys(),
            SealKind::OwnDevices,
            GroupId(user.0),
            list_ref(v2.version, &h2),
            &serde_json::to_vec(&update).unwrap(),
            &mut rng,
        )
        .unwrap();
        assert_eq!(
            OwnDevicesPayload::open(&laptop, &v2, &h2, &forged),
            Err(OwnDevicesError::NotOwnDevice)
        );
        // Relabelled as another kind, it does not open as an own-devices update.
        let mut relabelled = sealed.clone();
        relabelled.kind = SealKind::Direct;
        assert!(OwnDevicesPayload::open(&laptop, &v2, &h2, &relabelled).is_err());
        assert_eq!(format!("{update:?}"), "OwnDevicesPayload::SafetyPlan");
        let bad = OwnDevicesPayload::HiddenTopics {
            group: GroupId([1; 16]),
            topics: vec![1, 1],
            updated_at: Timestamp(1),
        };
        assert!(bad.validate().is_err());
    }
}
