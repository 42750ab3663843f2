//! Users and their devices (PROTOCOL.md §3.6): the user identity key and the device list it
//! signs.
//!
//! A user holds one to [`MAX_DEVICES_PER_USER`] devices. What ties a device to its user is a
//! [`DeviceList`] signed by the user's identity key ([`UserIdentity`]) and, for each device, the
//! device's own consent (`link_sig`). The group log pins the identity key when it admits the
//! user, so a server cannot add a device to anyone: it can neither sign a list under the user's
//! identity key nor make a device consent.
//!
//! Lists are signed over their exact JSON bytes, like group-log ops, so no canonical JSON is
//! needed. Each list names the hash of the one it replaces (`prev`) and a version one higher:
//! two different lists with the same version are a fork only a holder of the identity key can
//! make.

use ed25519_dalek::{Signer as _, SigningKey};
use serde::{Deserialize, Serialize};
use std::fmt;
use zeroize::Zeroizing;

use crate::encoding::{b64, b64_array};
use crate::identity::{self, DeviceIdentity, DeviceKeys, Signature};
use crate::ids::{DeviceId, Timestamp, UserId};
use crate::primitives::{hash, labelled};

pub use crate::group_log::MAX_DEVICES_PER_USER;

/// Label of the identity key's signature over a device list's bytes.
pub const LABEL_DEVICE_LIST: &str = "confide/v1/device-list";
/// Label of a device's signature consenting to its place in a user's list.
pub const LABEL_DEVICE_LINK: &str = "confide/v1/device-link";
/// Label of the signature by the device that made a list (its `by`) over the list's bytes.
pub const LABEL_DEVICE_LIST_BY: &str = "confide/v1/device-list-by";
/// Label of a device list's hash.
pub const LABEL_DEVICE_LIST_HASH: &str = "confide/v1/device-list-hash";
/// Largest device list, in bytes of JSON (eight devices with their X-Wing keys take about 17
/// KiB).
pub const MAX_DEVICE_LIST_BYTES: usize = 20 * 1024;
/// The list format version, `v`.
pub const DEVICE_LIST_FORMAT: u8 = 1;

/// A user identity public key (Ed25519, 32 bytes, base64 on the wire).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IdentityKey(#[serde(with = "b64_array")] pub [u8; 32]);

impl IdentityKey {
    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The key as the id type [`identity::verify`] takes (the same 32-byte Ed25519 encoding).
    fn as_verifier(&self) -> DeviceId {
        DeviceId(self.0)
    }
}

impl fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdentityKey({}…)", hex::encode(&self.0[..8]))
    }
}

/// The hash of a device list's bytes, `SHA-256("confide/v1/device-list-hash" || 0x00 || list)`;
/// what the next list names as `prev`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeviceListHash(#[serde(with = "b64_array")] pub [u8; 32]);

impl DeviceListHash {
    /// The `prev` of a version-1 list: 32 zero bytes.
    pub const ZERO: DeviceListHash = DeviceListHash([0; 32]);
}

impl fmt::Debug for DeviceListHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceListHash({}…)", hex::encode(&self.0[..8]))
    }
}

/// The user identity key's secret half. Held by every device of the user (it travels sealed in
/// the link bundle), so that any of them can link or unlink another. Zeroized on drop; never
/// `Debug`-printed beyond its public key.
pub struct UserIdentity {
    signing: SigningKey,
}

impl fmt::Debug for UserIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserIdentity")
            .field("public", &self.public())
            .finish_non_exhaustive()
    }
}

impl UserIdentity {
    /// A fresh identity from the caller's cryptographic randomness.
    pub fn generate(rng: &mut impl rand_core::CryptoRng) -> Self {
        let mut secret = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(secret.as_mut());
        Self::from_secret_bytes(&secret)
    }

    /// Rebuilds the identity from its 32-byte secret (RFC 8032 seed).
    pub fn from_secret_bytes(secret: &[u8; 32]) -> Self {
        UserIdentity {
            signing: SigningKey::from_bytes(secret),
        }
    }

    /// The secret, for the encrypted store and the sealed link bundle only. Never log it.
    pub fn to_secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.signing.to_bytes())
    }

    /// The public key that lists are verified under.
    pub fn public(&self) -> IdentityKey {
        IdentityKey(self.signing.verifying_key().to_bytes())
    }

    /// Signs `list`, made by the device `by` (which must be the list's `by`): serializes it
    /// once, and both the identity key and the device sign those exact bytes.
    pub fn sign_list(
        &self,
        list: &DeviceList,
        by: &DeviceIdentity,
    ) -> Result<SignedDeviceList, ListError> {
        if list.by != by.device_id() {
            return Err(ListError::Malformed("the list names another maker".into()));
        }
        let bytes = serde_json::to_vec(list).map_err(|e| ListError::Malformed(e.to_string()))?;
        if bytes.len() > MAX_DEVICE_LIST_BYTES {
            return Err(ListError::TooLarge(bytes.len()));
        }
        let message = labelled(LABEL_DEVICE_LIST, &[&bytes]);
        let sig = Signature(self.signing.sign(&message).to_bytes());
        let by_sig = by.sign(LABEL_DEVICE_LIST_BY, &[&bytes]);
        Ok(SignedDeviceList {
            list: bytes,
            sig,
            by_sig,
        })
    }
}

/// One device in a [`DeviceList`]: its keys and its consent to belong to the list's user under
/// the list's identity key.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListedDevice {
    /// The device's public keys.
    pub keys: DeviceKeys,
    /// The device's signature over `"confide/v1/device-link" || 0x00 || user || identity`.
    pub link_sig: Signature,
}

impl ListedDevice {
    /// Lists `device` for `user` under `identity`, signing its consent.
    pub fn new(device: &DeviceIdentity, user: &UserId, identity: &IdentityKey) -> Self {
        ListedDevice {
            keys: device.public_keys(),
            link_sig: device.sign(LABEL_DEVICE_LINK, &[user.as_bytes(), identity.as_bytes()]),
        }
    }
}

/// A user's device list (PROTOCOL.md §3.6), as signed.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceList {
    /// Format version, [`DEVICE_LIST_FORMAT`].
    pub v: u8,
    /// The user.
    pub user: UserId,
    /// The user identity key that signs the list.
    pub identity: IdentityKey,
    /// 1 for the user's first list, then +1 for each list that replaces one.
    pub version: u64,
    /// The hash of the list this one replaces; [`DeviceListHash::ZERO`] for version 1.
    pub prev: DeviceListHash,
    /// The device that made the list: listed in the list it replaces (for version 1, in this
    /// one). It signs the list too (`by_sig`), so a device that was unlinked cannot make a
    /// successor even with the identity key, and everyone can tell which device made a list.
    pub by: DeviceId,
    /// The signer's clock; shown, not checked.
    pub at: Timestamp,
    /// The devices, 1 to [`MAX_DEVICES_PER_USER`], distinct.
    pub devices: Vec<ListedDevice>,
}

impl DeviceList {
    /// The first list of a new user: version 1 with one device.
    pub fn first(
        user: UserId,
        identity: &UserIdentity,
        device: &DeviceIdentity,
        at: Timestamp,
    ) -> Self {
        let key = identity.public();
        DeviceList {
            v: DEVICE_LIST_FORMAT,
            user,
            identity: key,
            version: 1,
            prev: DeviceListHash::ZERO,
            by: device.device_id(),
            at,
            devices: vec![ListedDevice::new(device, &user, &key)],
        }
    }

    /// The successor of `self` (whose signed form hashes to `hash`), made by the listed device
    /// `by`, with `devices` instead.
    pub fn successor(
        &self,
        hash: DeviceListHash,
        by: DeviceId,
        at: Timestamp,
        devices: Vec<ListedDevice>,
    ) -> Self {
        DeviceList {
            v: DEVICE_LIST_FORMAT,
            user: self.user,
            identity: self.identity,
            version: self.version.saturating_add(1),
            prev: hash,
            by,
            at,
            devices,
        }
    }

    /// The listed devices' public keys, in order.
    pub fn device_keys(&self) -> Vec<DeviceKeys> {
        self.devices.iter().map(|d| d.keys.clone()).collect()
    }

    /// Whether `device` is listed.
    pub fn lists(&self, device: &DeviceId) -> bool {
        self.devices.iter().any(|d| d.keys.device == *device)
    }
}

/// A device list as it travels and is stored: the exact bytes and the identity key's signature.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedDeviceList {
    /// The list's bytes: UTF-8 JSON of a [`DeviceList`].
    #[serde(with = "b64")]
    pub list: Vec<u8>,
    /// The identity key's signature over `"confide/v1/device-list" || 0x00 || list`.
    pub sig: Signature,
    /// The maker device's (`by`) signature over `"confide/v1/device-list-by" || 0x00 || list`.
    pub by_sig: Signature,
}

/// Only the identity, read before the signature is checked (it names the key to check with).
#[derive(Deserialize)]
struct ListHeader {
    identity: IdentityKey,
}

impl SignedDeviceList {
    /// The list's hash, which its successor names as `prev`.
    pub fn hash(&self) -> DeviceListHash {
        DeviceListHash(hash(LABEL_DEVICE_LIST_HASH, &[&self.list]))
    }

    /// Checks the list in the order of PROTOCOL.md §3.6 and returns it parsed. Says nothing about
    /// whether it is the list a group or a server holds for the user: compare identity and
    /// version with [`DeviceList::succeeds`] or the log's rules.
    pub fn verify(&self) -> Result<DeviceList, ListError> {
        if self.list.len() > MAX_DEVICE_LIST_BYTES {
            return Err(ListError::TooLarge(self.list.len()));
        }
        let header: ListHeader =
            serde_json::from_slice(&self.list).map_err(|e| ListError::Malformed(e.to_string()))?;
        let list: DeviceList =
            serde_json::from_slice(&self.list).map_err(|e| ListError::Malformed(e.to_string()))?;
        if list.v != DEVICE_LIST_FORMAT {
            return Err(ListError::Malformed(format!(
                "unknown list format {}",
                list.v
            )));
        }
        if header.identity != list.identity {
            // The same parser read the same bytes twice; kept as a cheap guard all the same.
            return Err(ListError::Malformed("inconsistent identity field".into()));
        }
        identity::verify(
            &list.identity.as_verifier(),
            LABEL_DEVICE_LIST,
            &[&self.list],
            &self.sig,
        )
        .map_err(|_| ListError::BadSignature)?;
        identity::verify(&list.by, LABEL_DEVICE_LIST_BY, &[&self.list], &self.by_sig)
            .map_err(|_| ListError::BadSignature)?;
        if list.version == 0 || (list.version == 1) != (list.prev == DeviceListHash::ZERO) {
            return Err(ListError::BadChain);
        }
        if list.devices.is_empty() || list.devices.len() > MAX_DEVICES_PER_USER {
            return Err(ListError::BadDevices);
        }
        for (i, d) in list.devices.iter().enumerate() {
            if list.devices[..i]
                .iter()
                .any(|e| e.keys.device == d.keys.device)
            {
                return Err(ListError::BadDevices);
            }
        }
        if list
            .devices
            .iter()
            .any(|d| d.keys.device.0 == list.identity.0)
        {
            // The identity key is its own key, never a device's (PROTOCOL.md §3.6).
            return Err(ListError::BadDevices);
        }
        if list.version == 1 && !list.lists(&list.by) {
            return Err(ListError::BadChain);
        }
        for d in &list.devices {
            d.keys.verify().map_err(|_| ListError::BadLink)?;
            identity::verify(
                &d.keys.device,
                LABEL_DEVICE_LINK,
                &[list.user.as_bytes(), list.identity.as_bytes()],
                &d.link_sig,
            )
            .map_err(|_| ListError::BadLink)?;
        }
        Ok(list)
    }
}

impl DeviceList {
    /// Whether `self` is the successor of `previous` (whose bytes hash to `previous_hash`): same
    /// user and identity, version + 1, `prev` = that hash, made by a device `previous` lists,
    /// and no X-Wing key dropped or device of version 1 introduced ([`Self::keeps_pq_keys`]).
    pub fn succeeds(&self, previous: &DeviceList, previous_hash: &DeviceListHash) -> bool {
        self.user == previous.user
            && self.identity == previous.identity
            && previous.version.checked_add(1) == Some(self.version)
            && self.prev == *previous_hash
            && previous.lists(&self.by)
            && self.keeps_pq_keys(previous)
    }

    /// Whether `self` keeps every X-Wing key `previous` holds and introduces no device without
    /// one (PROTOCOL.md §3.6): every device that `previous` lists with an X-Wing key and `self`
    /// still lists keeps exactly that key, and every device `self` lists without an X-Wing key
    /// is listed in `previous` without one too, with identical keys. A successor may thus add a
    /// device's X-Wing key (a device of protocol version 1 moving to version 2) but never drop
    /// or swap one, never add a device of version 1, and never list again, without its X-Wing
    /// key, a device it dropped: nobody holding the identity key can move a device back to
    /// sealing without post-quantum protection.
    pub fn keeps_pq_keys(&self, previous: &DeviceList) -> bool {
        let keeps = previous.devices.iter().all(|old| {
            old.keys.pq_key.is_none()
                || self
                    .devices
                    .iter()
                    .filter(|new| new.keys.device == old.keys.device)
                    .all(|new| new.keys.pq_key == old.keys.pq_key)
        });
        let adds_no_legacy = self
            .devices
            .iter()
            .filter(|new| new.keys.pq_key.is_none())
            .all(|new| previous.devices.iter().any(|old| old.keys == new.keys));
        keeps && adds_no_legacy
    }

    /// Whether the two lists hold the same devices with the same keys, in any order (a list that
    /// only reorders devices is no change).
    pub fn same_devices(&self, other: &DeviceList) -> bool {
        self.devices.len() == other.devices.len()
            && self
                .devices
                .iter()
                .all(|d| other.devices.iter().any(|e| e.keys == d.keys))
    }
}

/// Why a device list was refused. Each has a stable code ([`ListError::code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ListError {
    /// The list is larger than [`MAX_DEVICE_LIST_BYTES`].
    #[error("device list of {0} bytes exceeds the {MAX_DEVICE_LIST_BYTES}-byte limit")]
    TooLarge(usize),
    /// Not a device list (strict JSON), or an unknown format.
    #[error("malformed device list: {0}")]
    Malformed(String),
    /// The identity key is not acceptable or its signature does not verify.
    #[error("the device list is not signed by its identity key")]
    BadSignature,
    /// Version 0, or `prev` zero for a version other than 1 (or not zero for version 1).
    #[error("the device list's version and previous hash do not fit")]
    BadChain,
    /// No device, more than eight, or one listed twice.
    #[error("a device list names 1 to {MAX_DEVICES_PER_USER} distinct devices")]
    BadDevices,
    /// A device's keys or its consent signature do not verify.
    #[error("a listed device did not sign its place in the list")]
    BadLink,
}

impl ListError {
    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            ListError::TooLarge(_) => "too_large",
            ListError::Malformed(_) => "malformed",
            ListError::BadSignature => "bad_signature",
            ListError::BadChain => "bad_chain",
            ListError::BadDevices => "bad_devices",
            ListError::BadLink => "bad_link",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng;

    fn setup() -> (UserId, UserIdentity, DeviceIdentity) {
        let mut rng = test_rng(41);
        (
            UserId([7; 16]),
            UserIdentity::generate(&mut rng),
            DeviceIdentity::generate(&mut rng),
        )
    }

    #[test]
    fn a_signed_list_verifies_and_its_successor_chains() {
        let (user, id, phone) = setup();
        let laptop = DeviceIdentity::generate(&mut test_rng(42));
        let first = DeviceList::first(user, &id, &phone, Timestamp(1000));
        let signed = id.sign_list(&first, &phone).unwrap();
        assert_eq!(signed.verify().unwrap(), first);
        let mut devices = first.devices.clone();
        devices.push(ListedDevice::new(&laptop, &user, &id.public()));
        let second = first.successor(signed.hash(), phone.device_id(), Timestamp(2000), devices);
        let signed2 = id.sign_list(&second, &phone).unwrap();
        let parsed = signed2.verify().unwrap();
        assert!(parsed.succeeds(&first, &signed.hash()));
        assert!(parsed.lists(&laptop.device_id()));
        assert!(!first.succeeds(&parsed, &signed2.hash()));
        // A successor made by a device the previous list does not name does not succeed it.
        let mut by_laptop = first.successor(
            signed.hash(),
            laptop.device_id(),
            Timestamp(3000),
            parsed.devices.clone(),
        );
        assert!(!by_laptop.succeeds(&first, &signed.hash()));
        by_laptop.by = phone.device_id();
        assert!(by_laptop.succeeds(&first, &signed.hash()));
        // Signed by the identity key but not by the device it names as its maker: refused.
        let mut forged = id.sign_list(&second, &phone).unwrap();
        forged.by_sig = laptop.sign(LABEL_DEVICE_LIST_BY, &[&forged.list]);
        assert_eq!(forged.verify(), Err(ListError::BadSignature));
        // A first list whose maker is not in it is refused.
        let mut orphan = DeviceList::first(user, &id, &phone, Timestamp(1));
        orphan.by = laptop.device_id();
        assert_eq!(
            id.sign_list(&orphan, &laptop).unwrap().verify(),
            Err(ListError::BadChain)
        );
    }

    #[test]
    fn a_successor_may_add_a_devices_x_wing_key_but_never_drop_or_swap_it() {
        let (user, id, _) = setup();
        let mut phone = DeviceIdentity::from_secret_bytes(&[1; 32], &[2; 32], None);
        let first = DeviceList::first(user, &id, &phone, Timestamp(1000));
        let signed = id.sign_list(&first, &phone).unwrap();
        phone.add_pq_key(&mut test_rng(44));
        let upgraded = ListedDevice::new(&phone, &user, &id.public());
        let second = first.successor(
            signed.hash(),
            phone.device_id(),
            Timestamp(2000),
            vec![upgraded.clone()],
        );
        let signed2 = id.sign_list(&second, &phone).unwrap();
        assert!(signed2.verify().unwrap().succeeds(&first, &signed.hash()));
        // Back to the version-1 keys: refused as a successor.
        let back = second.successor(
            signed2.hash(),
            phone.device_id(),
            Timestamp(3000),
            first.devices.clone(),
        );
        assert!(!back.succeeds(&second, &signed2.hash()));
        // Another X-Wing key under the same device: refused too.
        let mut swapped = upgraded;
        swapped.keys.pq_key = DeviceIdentity::generate(&mut test_rng(45))
            .public_keys()
            .pq_key;
        let other = second.successor(
            signed2.hash(),
            phone.device_id(),
            Timestamp(3000),
            vec![swapped],
        );
        assert!(!other.succeeds(&second, &signed2.hash()));
    }

    #[test]
    fn a_successor_cannot_add_a_device_without_an_x_wing_key_nor_bring_one_back() {
        let (user, id, phone) = setup();
        let old_tablet = DeviceIdentity::from_secret_bytes(&[3; 32], &[4; 32], None);
        let tablet = ListedDevice::new(&old_tablet, &user, &id.public());
        // The phone (version 2) and the tablet (version 1): the tablet may stay as it is.
        let mut first = DeviceList::first(user, &id, &phone, Timestamp(1000));
        first.devices.push(tablet.clone());
        let signed = id.sign_list(&first, &phone).unwrap();
        let kept = first.successor(
            signed.hash(),
            phone.device_id(),
            Timestamp(2000),
            first.devices.clone(),
        );
        assert!(kept.succeeds(&first, &signed.hash()));
        // A new device of version 1: refused.
        let laptop = DeviceIdentity::from_secret_bytes(&[5; 32], &[6; 32], None);
        let mut devices = first.devices.clone();
        devices.push(ListedDevice::new(&laptop, &user, &id.public()));
        let added = first.successor(signed.hash(), phone.device_id(), Timestamp(2000), devices);
        assert!(!added.succeeds(&first, &signed.hash()));
        // The tablet dropped, then listed again with its version-1 keys: refused.
        let dropped = first.successor(
            signed.hash(),
            phone.device_id(),
            Timestamp(2000),
            vec![first.devices[0].clone()],
        );
        assert!(dropped.succeeds(&first, &signed.hash()));
        let signed2 = id.sign_list(&dropped, &phone).unwrap();
        let back = dropped.successor(
            signed2.hash(),
            phone.device_id(),
            Timestamp(3000),
            first.devices.clone(),
        );
        assert!(!back.succeeds(&dropped, &signed2.hash()));
        // With an X-Wing key, a device may be added.
        let mut devices = first.devices.clone();
        let new_laptop = DeviceIdentity::generate(&mut test_rng(46));
        devices.push(ListedDevice::new(&new_laptop, &user, &id.public()));
        let added = first.successor(signed.hash(), phone.device_id(), Timestamp(2000), devices);
        assert!(added.succeeds(&first, &signed.hash()));
    }

    #[test]
    fn eight_devices_with_x_wing_keys_fit_in_a_list() {
        let (user, id, phone) = setup();
        let mut devices = vec![ListedDevice::new(&phone, &user, &id.public())];
        for i in 0..7 {
            let d = DeviceIdentity::generate(&mut test_rng(50 + i));
            devices.push(ListedDevice::new(&d, &user, &id.public()));
        }
        let first = DeviceList::first(user, &id, &phone, Timestamp(1000));
        let signed = id.sign_list(&first, &phone).unwrap();
        let full = first.successor(signed.hash(), phone.device_id(), Timestamp(2000), devices);
        let signed_full = id.sign_list(&full, &phone).unwrap();
        assert_eq!(
            signed_full.verify().unwrap().devices.len(),
            MAX_DEVICES_PER_USER
        );
    }

    #[test]
    fn a_list_signed_by_anyone_else_is_refused() {
        let (user, id, phone) = setup();
        let other = UserIdentity::generate(&mut test_rng(43));
        let list = DeviceList::first(user, &id, &phone, Timestamp(1000));
        // Signed by another key than the one it names.
        let forged = other.sign_list(&list, &phone).unwrap();
        assert_eq!(forged.verify(), Err(ListError::BadSignature));
        // One byte changed after signing.
        let mut tampered = id.sign_list(&list, &phone).unwrap();
        let last = tampered.list.len() - 2;
        tampered.list[last] ^= 1;
        assert!(tampered.verify().is_err());
    }

    #[test]
    fn a_device_that_did_not_consent_is_refused() {
        let (user, id, phone) = setup();
        let ghost = DeviceIdentity::generate(&mut test_rng(44));
        let mut list = DeviceList::first(user, &id, &phone, Timestamp(1000));
        // The identity key lists a device whose consent was given to another user.
        list.devices
            .push(ListedDevice::new(&ghost, &UserId([8; 16]), &id.public()));
        assert_eq!(
            id.sign_list(&list, &phone).unwrap().verify(),
            Err(ListError::BadLink)
        );
        // Or under another identity key.
        let mut list = DeviceList::first(user, &id, &phone, Timestamp(1000));
        let other = UserIdentity::generate(&mut test_rng(45)).public();
        list.devices.push(ListedDevice::new(&ghost, &user, &other));
        assert_eq!(
            id.sign_list(&list, &phone).unwrap().verify(),
            Err(ListError::BadLink)
        );
    }

    #[test]
    fn device_count_and_chain_limits() {
        let (user, id, phone) = setup();
        let mut list = DeviceList::first(user, &id, &phone, Timestamp(1000));
        list.devices.push(list.devices[0].clone());
        assert_eq!(
            id.sign_list(&list, &phone).unwrap().verify(),
            Err(ListError::BadDevices)
        );
        let mut list = DeviceList::first(user, &id, &phone, Timestamp(1000));
        for seed in 0..MAX_DEVICES_PER_USER as u8 {
            let d = DeviceIdentity::generate(&mut test_rng(100 + seed));
            list.devices
                .push(ListedDevice::new(&d, &user, &id.public()));
        }
        assert_eq!(list.devices.len(), MAX_DEVICES_PER_USER + 1);
        assert_eq!(
            id.sign_list(&list, &phone).unwrap().verify(),
            Err(ListError::BadDevices)
        );
        list.devices.pop();
        assert!(id.sign_list(&list, &phone).unwrap().verify().is_ok());
        let mut list = DeviceList::first(user, &id, &phone, Timestamp(1000));
        list.version = 2;
        assert_eq!(
            id.sign_list(&list, &phone).unwrap().verify(),
            Err(ListError::BadChain)
        );
        list.version = 0;
        assert_eq!(
            id.sign_list(&list, &phone).unwrap().verify(),
            Err(ListError::BadChain)
        );
        list.version = 1;
        list.prev = DeviceListHash([1; 32]);
        assert_eq!(
            id.sign_list(&list, &phone).unwrap().verify(),
            Err(ListError::BadChain)
        );
    }

    #[test]
    fn unknown_members_are_refused() {
        let (user, id, phone) = setup();
        let list = DeviceList::first(user, &id, &phone, Timestamp(1000));
        let mut value = serde_json::to_value(&list).unwrap();
        value["extra"] = serde_json::json!(1);
        let bytes = serde_json::to_vec(&value).unwrap();
        let sig = Signature(
            id.signing
                .sign(&labelled(LABEL_DEVICE_LIST, &[&bytes]))
                .to_bytes(),
        );
        let by_sig = phone.sign(LABEL_DEVICE_LIST_BY, &[&bytes]);
        let signed = SignedDeviceList {
            list: bytes,
            sig,
            by_sig,
        };
        assert!(matches!(signed.verify(), Err(ListError::Malformed(_))));
    }
}
