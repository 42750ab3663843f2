//! The device's profile: its identity secret and who its user is, stored in the `profile`
//! tree beside everything else. Written once when the device is set up, and again when the
//! server first registers it.

use confide_protocol::{DeviceIdentity, UserId};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::StoreError;
use crate::store::{Batch, ClientStore, T_PROFILE, corrupt};

/// Key of the identity secret in the `profile` tree: the raw 96 bytes of
/// [`DeviceIdentity::to_secret_bytes`], or the 64 of a device of protocol version 1 until the
/// core starts on it and it adds its X-Wing key (PROTOCOL.md §4.7).
pub(crate) const IDENTITY_KEY: &[u8] = b"identity";
/// Key of the [`Profile`] (JSON) in the `profile` tree.
const PROFILE_KEY: &[u8] = b"profile";

/// Who this device's user is, as stored beside the identity.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Profile {
    /// The user (random, chosen at setup).
    pub user: UserId,
    /// Their pseudonym in every group.
    pub display_name: String,
    /// Whether the server has registered this device (it answered `authenticated` to the
    /// registration). Until then every connection registers again.
    pub registered: bool,
}

impl Profile {
    /// The profile of a new device, not yet registered.
    pub fn new(user: UserId, display_name: impl Into<String>) -> Profile {
        Profile {
            user,
            display_name: display_name.into(),
            registered: false,
        }
    }
}

/// A batch that stores a device's identity (its secrets, which the store encrypts) and its
/// profile: what every way of making a profile writes first.
fn identity_and_profile(identity: &DeviceIdentity, profile: &Profile) -> Result<Batch, StoreError> {
    let mut batch = Batch::new();
    batch.put(
        T_PROFILE,
        IDENTITY_KEY,
        Zeroizing::new(identity.to_secret_bytes().to_vec()),
    );
    let json = serde_json::to_vec(profile).map_err(|e| StoreError::Db(e.to_string()))?;
    batch.put(T_PROFILE, PROFILE_KEY, Zeroizing::new(json));
    Ok(batch)
}

/// Stores a new device's identity and profile in `store`, both in one commit.
///
/// # Errors
///
/// Whatever the store's [`ClientStore::commit`] fails with; then nothing was stored.
pub async fn create<S: ClientStore>(
    store: &S,
    identity: &DeviceIdentity,
    profile: &Profile,
) -> Result<(), StoreError> {
    let batch = identity_and_profile(identity, profile)?;
    store.commit(batch).await
}

/// **For tests only** (feature `test-hooks`): stores a device that the server has on record
/// already — its registration, and `device_list` as its user's current list, made with
/// `user_identity` — as an older client would have left it: a device of protocol version 1 (an
/// identity without an X-Wing key) registered before the server moved to version 2, which
/// registers no such device any more. `profile` should say it is registered. One commit.
///
/// # Errors
///
/// Whatever the store's [`ClientStore::commit`] fails with; then nothing was stored.
#[cfg(feature = "test-hooks")]
pub async fn create_registered<S: ClientStore>(
    store: &S,
    identity: &DeviceIdentity,
    profile: &Profile,
    user_identity: &confide_protocol::device_list::UserIdentity,
    device_list: &confide_protocol::device_list::SignedDeviceList,
) -> Result<(), StoreError> {
    let mut batch = identity_and_profile(identity, profile)?;
    batch.put(
        T_PROFILE,
        crate::devices::USER_IDENTITY_KEY,
        Zeroizing::new(user_identity.to_secret_bytes().to_vec()),
    );
    let own = crate::devices::OwnList {
        signed: device_list.clone(),
        published: true,
    };
    let json = serde_json::to_vec(&own).map_err(|e| StoreError::Db(e.to_string()))?;
    batch.put(
        T_PROFILE,
        crate::devices::OWN_LIST_KEY,
        Zeroizing::new(json),
    );
    store.commit(batch).await
}

/// Stores a device just linked to an existing user (PROTOCOL.md §3.7): its own keys, the
/// profile from the bundle (not yet registered: the first connection registers it with the
/// bundle's list), the user identity key, the list, the high-water marks, and what the bundle
/// brought for the groups, imported once each group's log lists this device. One commit.
///
/// # Errors
///
/// Whatever the store's [`ClientStore::commit`] fails with; then nothing was stored.
pub async fn create_linked<S: ClientStore>(
    store: &S,
    linked: &crate::linking::LinkedDevice,
) -> Result<Profile, StoreError> {
    let bundle = &linked.bundle;
    let profile = Profile::new(bundle.user, bundle.display_name.clone());
    let mut batch = identity_and_profile(&linked.identity, &profile)?;
    batch.put(
        T_PROFILE,
        crate::devices::USER_IDENTITY_KEY,
        Zeroizing::new(bundle.identity_secret.0.to_vec()),
    );
    let own = crate::devices::OwnList {
        signed: bundle.device_list.clone(),
        published: true,
    };
    let json = serde_json::to_vec(&own).map_err(|e| StoreError::Db(e.to_string()))?;
    batch.put(
        T_PROFILE,
        crate::devices::OWN_LIST_KEY,
        Zeroizing::new(json),
    );
    for known in &bundle.known_identities {
        let k = crate::devices::KnownList {
            identity: known.identity,
            version: known.version,
            hash: known.list_hash,
            devices: known.devices.clone(),
            // A bundle names device ids only: the keys are learnt from the next verified list.
            keys: Vec::new(),
        };
        let json = serde_json::to_vec(&k).map_err(|e| StoreError::Db(e.to_string()))?;
        batch.put(
            crate::store::T_KNOWN_LISTS,
            known.user.as_bytes(),
            Zeroizing::new(json),
        );
    }
    // The person's own settings from their other device: their safety plan and the warning
    // topics they hide (kept whether or not this device holds the group yet).
    // With the times they were last changed, so that this device orders later updates from
    // the others as they do (PROTOCOL.md §7.4).
    let stamp = |at: confide_protocol::Timestamp| -> Result<Zeroizing<Vec<u8>>, StoreError> {
        serde_json::to_vec(&crate::own_devices::Stamp::imported(at))
            .map(Zeroizing::new)
            .map_err(|e| StoreError::Db(e.to_string()))
    };
    if let Some(plan) = &bundle.safety_plan {
        let json = serde_json::to_vec(plan).map_err(|e| StoreError::Db(e.to_string()))?;
        batch.put(
            crate::store::T_SAFETY_PLAN,
            crate::safety_plan::PLAN_KEY,
            Zeroizing::new(json),
        );
    }
    if let Some(at) = bundle.safety_plan_updated_at {
        batch.put(
            crate::store::T_OWN_STAMPS,
            crate::own_devices::PLAN_STAMP,
            stamp(at)?,
        );
    }
    for hidden in &bundle.hidden_topics {
        let json = serde_json::to_vec(&hidden.topics).map_err(|e| StoreError::Db(e.to_string()))?;
        batch.put(
            crate::store::T_HIDDEN_TOPICS,
            hidden.group.as_bytes(),
            Zeroizing::new(json),
        );
        if let Some(at) = hidden.updated_at {
            batch.put(
                crate::store::T_OWN_STAMPS,
                hidden.group.as_bytes(),
                stamp(at)?,
            );
        }
    }
    let pending = crate::linking::PendingImport {
        groups: bundle.groups.clone(),
    };
    let json = serde_json::to_vec(&pending).map_err(|e| StoreError::Db(e.to_string()))?;
    batch.put(
        T_PROFILE,
        crate::linking::LINK_IMPORT_KEY,
        Zeroizing::new(json),
    );
    store.commit(batch).await?;
    Ok(profile)
}

/// The identity and profile stored in `store`.
///
/// # Errors
///
/// [`StoreError::Unlinked`] if another device of this person unlinked this one;
/// [`StoreError::Missing`] if the store holds no identity or no profile (it was never set up
/// with [`create`], or is damaged), [`StoreError::Corrupt`] if either is there but unreadable,
/// and whatever the store's own reads fail with ([`ClientStore::get`]).
pub async fn load<S: ClientStore>(store: &S) -> Result<(DeviceIdentity, Profile), StoreError> {
    if store
        .get(T_PROFILE, crate::devices::UNLINKED_KEY)
        .await?
        .is_some()
    {
        return Err(StoreError::Unlinked);
    }
    let secret = store
        .get(T_PROFILE, IDENTITY_KEY)
        .await?
        .ok_or_else(|| missing(IDENTITY_KEY))?;
    // 96 bytes, or the 64 of a device made by protocol version 1 (which then adds its X-Wing
    // key when the core starts, PROTOCOL.md §4.7).
    let identity = DeviceIdentity::from_secrets(&Zeroizing::new(secret))
        .map_err(|_| corrupt(T_PROFILE, IDENTITY_KEY))?;
    let plain = store
        .get(T_PROFILE, PROFILE_KEY)
        .await?
        .ok_or_else(|| missing(PROFILE_KEY))?;
    let profile = serde_json::from_slice(&plain).map_err(|_| corrupt(T_PROFILE, PROFILE_KEY))?;
    Ok((identity, profile))
}

/// [`StoreError::Missing`] for a value of the `profile` tree.
fn missing(key: &[u8]) -> StoreError {
    StoreError::Missing {
        tree: T_PROFILE.into(),
        key: hex::encode(key),
    }
}
