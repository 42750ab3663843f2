//! This user's devices, and what the device knows of everyone's device lists (PROTOCOL.md
//! §3.6–3.9, §11.14).
//!
//! The user identity key and the user's current device list live in the `profile` tree beside
//! the device's own keys. A device that has none (a profile made before device lists) makes them
//! when it starts: a version-1 list naming itself, which it publishes once it is connected. Every
//! group whose log pins this user at an older list (or at none) then gets an `update_devices`
//! op, a durable task resumed at each start.
//!
//! A device of protocol version 1 that moved to version 2 when the core started (its X-Wing key
//! is new) publishes, once connected, the successor of its user's list that names the key; the
//! same task then moves every group to that list (PROTOCOL.md §4.7).
//!
//! For every other user the device keeps a **high-water mark**: the identity key and the newest
//! list seen (version, hash, devices). Sealing uses it: a device that a newer list dropped gets
//! nothing, even where a group's log still lists it (a server may have shown an `add`'s author an
//! older list).

use std::collections::HashMap;

use confide_protocol::device_list::{
    DeviceList, DeviceListHash, IdentityKey, ListedDevice, SignedDeviceList, UserIdentity,
};
use confide_protocol::frames::{ClientFrame, ServerFrame};
use confide_protocol::group_log::{GroupState, MemberEntry, OpBody};
use confide_protocol::{DeviceId, DeviceKeys, GroupId, Timestamp, UserId};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use confide_protocol::DeviceIdentity;

use crate::Network;
use crate::error::{ClientError, unexpected_reply};
use crate::events::Event;
use crate::host::{Host, HostRng};
use crate::machine::ClientCore;
use crate::store::{ClientStore, T_KNOWN_LISTS, T_PROFILE, Tx, corrupt};

/// Key of the user identity key's secret in the `profile` tree.
pub(crate) const USER_IDENTITY_KEY: &[u8] = b"user_identity";
/// Key of this user's current device list in the `profile` tree.
pub(crate) const OWN_LIST_KEY: &[u8] = b"device_list";
/// Key of the mark left when this device learned, from a verified list, that it was unlinked.
pub(crate) const UNLINKED_KEY: &[u8] = b"unlinked";

/// This user's current device list as this device holds it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct OwnList {
    /// The signed list.
    pub signed: SignedDeviceList,
    /// Whether the server accepted it (registration or `publish_devices` answered). Until then
    /// it is published at the next connection, and no op carries it.
    pub published: bool,
}

/// The newest list seen for a user (the high-water mark of PROTOCOL.md §11.14).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct KnownList {
    /// The user's identity key.
    pub identity: IdentityKey,
    /// The newest version seen.
    pub version: u64,
    /// Its hash.
    pub hash: DeviceListHash,
    /// The devices it names.
    pub devices: Vec<DeviceId>,
    /// Their keys, as that verified list names them (each signed by its device): a sealer
    /// takes a device's X-Wing key from here when a group's log still pins an older list that
    /// names the device without one (PROTOCOL.md §4.7). Empty in a mark stored by an earlier
    /// version or brought by a link bundle: then the keys are not known, and the log's are
    /// used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<DeviceKeys>,
}

impl KnownList {
    /// The keys this list names for `device`, if they are known.
    fn keys_of(&self, device: &DeviceId) -> Option<&DeviceKeys> {
        self.keys.iter().find(|k| k.device == *device)
    }
}

/// The keys to seal to for a device that a group's log lists with `logged` and the newest
/// verified list of its user names with `newest` (`None`: not known). The newest list's X-Wing
/// key is used when the log has none and both name the same X25519 key (the device moved to
/// protocol version 2, and the log has not caught up); `None` — nothing is sealed — when the
/// newest list gives the device an X-Wing key that cannot be used with the log's keys, since a
/// device known to have one is never sealed to with X25519 alone (PROTOCOL.md §4.7).
fn keys_to_seal(logged: &DeviceKeys, newest: Option<&DeviceKeys>) -> Option<DeviceKeys> {
    match newest {
        Some(newest) if logged.pq_key.is_none() && newest.pq_key.is_some() => {
            (newest.device == logged.device && newest.sealing_key == logged.sealing_key)
                .then(|| newest.clone())
        }
        _ => Some(logged.clone()),
    }
}

/// One of this user's devices, for the application to show.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LinkedDevice {
    /// The device.
    pub device: DeviceId,
    /// Whether it is this device.
    pub this_device: bool,
    /// Whether it made the current list (it linked or unlinked a device last).
    pub made_current_list: bool,
}

/// What this device knows of its user's devices.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OwnDevices {
    /// The devices, in the order of the list.
    pub devices: Vec<LinkedDevice>,
    /// The list's version.
    pub version: u64,
    /// When the device that made the list says it made it.
    pub at: Timestamp,
    /// This user's half of every safety number (30 digits): it covers the identity key, so it
    /// stays the same when devices are linked or unlinked.
    pub fingerprint: String,
}

/// What [`load_devices`] gives the core.
pub(crate) struct LoadedDevices {
    pub identity: UserIdentity,
    pub own: OwnList,
    pub list: DeviceList,
    pub known: KnownLists,
}

/// Loads the user identity key, this user's list and the high-water marks; makes the key and a
/// first list naming this device for a profile from before device lists (published once
/// connected). The new values wait in `db`'s batch, committed with the core's first step.
pub(crate) async fn load_devices<S: ClientStore>(
    db: &mut Tx<S>,
    host: &mut dyn Host,
    device: &DeviceIdentity,
    user: UserId,
) -> Result<LoadedDevices, ClientError> {
    let secret = db.get_bytes(T_PROFILE, USER_IDENTITY_KEY).await?;
    let own: Option<OwnList> = db.get(T_PROFILE, OWN_LIST_KEY).await?;
    let (identity, own, list) = match (secret, own) {
        (Some(secret), Some(own)) => {
            let secret: Zeroizing<[u8; 32]> = Zeroizing::new(
                secret
                    .as_slice()
                    .try_into()
                    .map_err(|_| corrupt(T_PROFILE, USER_IDENTITY_KEY))?,
            );
            let identity = UserIdentity::from_secret_bytes(&secret);
            let list = own
                .signed
                .verify()
                .map_err(|_| corrupt(T_PROFILE, OWN_LIST_KEY))?;
            if list.identity != identity.public() || list.user != user {
                return Err(corrupt(T_PROFILE, OWN_LIST_KEY).into());
            }
            (identity, own, list)
        }
        _ => {
            let identity = UserIdentity::generate(&mut HostRng(host));
            let list = DeviceList::first(user, &identity, device, host.now());
            let signed = identity.sign_list(&list, device).map_err(list_error)?;
            db.put_bytes(
                T_PROFILE,
                USER_IDENTITY_KEY,
                identity.to_secret_bytes().as_ref(),
            );
            let own = OwnList {
                signed,
                published: false,
            };
            db.put(T_PROFILE, OWN_LIST_KEY, &own)?;
            (identity, own, list)
        }
    };
    // Keys of 16 bytes are the marks; longer ones (user || identity) only say that a change to
    // that identity key was told.
    let mut known = KnownLists::new();
    for (k, v) in db.scan_bytes(T_KNOWN_LISTS, &[], usize::MAX).await? {
        if let Ok(user) = <[u8; 16]>::try_from(k.as_slice()) {
            let mark: KnownList = crate::store::parse(T_KNOWN_LISTS, &k, &v)?;
            known.insert(UserId(user), mark);
        }
    }
    Ok(LoadedDevices {
        identity,
        own,
        list,
        known,
    })
}

/// The list inside `signed`, parsed but **not verified again**: only for a list this device
/// has verified already — one a verified group log holds, or one it checked before storing it.
/// A list from the server is verified with [`SignedDeviceList::verify`] instead.
pub(crate) fn checked_list(signed: &SignedDeviceList) -> Option<DeviceList> {
    serde_json::from_slice(&signed.list).ok()
}

/// A list this device made that does not sign or fit (a bug, or more devices than allowed).
fn list_error(e: confide_protocol::device_list::ListError) -> ClientError {
    ClientError::LinkFailed {
        code: e.code(),
        reason: e.to_string(),
    }
}

impl<S: ClientStore, N: Network> ClientCore<S, N> {
    /// This device's member entry: the user, their name, and their current device list.
    pub(crate) fn member_entry(&self) -> MemberEntry {
        MemberEntry {
            user: self.profile.user,
            display_name: self.profile.display_name.clone(),
            devices: self.own_list_parsed.device_keys(),
            device_list: Some(self.own_list.signed.clone()),
        }
    }

    /// This device's member entry as a group's `add` names this person: their user id, name and
    /// current device list (for an application that hands it to a facilitator out of band).
    pub fn own_entry(&self) -> MemberEntry {
        self.member_entry()
    }

    /// The list to send with a registration.
    pub(crate) fn registration_list(&self) -> SignedDeviceList {
        self.own_list.signed.clone()
    }

    /// This device just moved to protocol version 2: it has a new X-Wing key (PROTOCOL.md
    /// §4.7). A first list that no server has yet — made by this device for a new profile, or
    /// for one from before device lists — is made again naming the new keys, in the same step
    /// (a server of version 2 takes no list that names this device without its X-Wing key); a
    /// list on record is followed by one naming them once connected ([`Self::publish_own_keys`]).
    pub(crate) fn keys_moved(&mut self) -> Result<(), ClientError> {
        let list = &self.own_list_parsed;
        let me = self.device();
        if self.own_list.published || list.version != 1 || list.by != me || list.devices.len() != 1
        {
            return Ok(());
        }
        let list = DeviceList::first(
            self.profile.user,
            &self.user_identity,
            &self.identity,
            list.at,
        );
        let signed = self
            .user_identity
            .sign_list(&list, &self.identity)
            .map_err(list_error)?;
        self.own_list = OwnList {
            signed,
            published: false,
        };
        self.db.put(T_PROFILE, OWN_LIST_KEY, &self.own_list)?;
        self.own_list_parsed = list;
        Ok(())
    }

    /// After authenticating: if this user's current list names this device without the X-Wing
    /// key it has now (it moved from protocol version 1 to 2), publishes the successor that
    /// names it — the same device id and X25519 key, its X-Wing key added (PROTOCOL.md §4.7).
    /// Once the server accepted it, it is the current list, and the durable task of §11.14
    /// ([`Self::update_own_entries`]) moves every group to it: an `update_devices`, so a new
    /// epoch, whose sender keys are sealed to the device with X-Wing. Done again at each
    /// connection until the list names the key, and after this user's list moves (a refusal
    /// leaves the device working with the list on record, and is told to the application:
    /// [`Event::PostQuantumKeyRefused`]).
    pub(crate) async fn publish_own_keys(&mut self) -> Result<(), ClientError> {
        if !self.own_list.published || !self.identity.has_pq_key() {
            return Ok(());
        }
        let me = self.device();
        let list = self.own_list_parsed.clone();
        let Some(at) = list.devices.iter().position(|d| d.keys.device == me) else {
            return Ok(());
        };
        let keys = self.identity.public_keys();
        let listed = &list.devices[at].keys;
        if listed.pq_key.is_some() && listed.pq_key != keys.pq_key {
            // The list names another X-Wing key for this device: its store is from before it
            // moved to version 2, and what others seal to it cannot be opened here.
            return Err(crate::error::StoreError::RelinkNeeded.into());
        }
        // Only ever an X-Wing key added to the X25519 key listed: a list never drops or swaps a
        // device's X-Wing key (§3.6), and a different X25519 key is not this device's to fix.
        if listed.pq_key.is_some() || listed.sealing_key != keys.sealing_key {
            return Ok(());
        }
        let mut devices = list.devices.clone();
        if let Some(entry) = devices.get_mut(at) {
            *entry = ListedDevice::new(&self.identity, &self.profile.user, &list.identity);
        }
        let next = list.successor(self.own_list.signed.hash(), me, self.host.now(), devices);
        self.publish_list(next).await?;
        Ok(())
    }

    /// The server refused the list naming this device's X-Wing key: the application is told
    /// ([`Event::PostQuantumKeyRefused`]); it is tried again when this user's list moves.
    pub(crate) fn own_keys_refused(&mut self, e: &ClientError) {
        tracing::warn!(error = %e, "could not publish this device's X-Wing key");
        if self.conn.is_none() {
            // Not a refusal: the connection failed, and the next one tries again.
            return;
        }
        self.emit(Event::PostQuantumKeyRefused {
            code: e.code().to_owned(),
            reason: e.to_string(),
        });
    }

    /// The server registered this device with its list: the list is on record.
    pub(crate) fn list_registered(&mut self) -> Result<(), ClientError> {
        if !self.own_list.published {
            self.own_list.published = true;
            self.db.put(T_PROFILE, OWN_LIST_KEY, &self.own_list)?;
        }
        Ok(())
    }

    /// After authenticating: publishes a list the server does not have yet (a profile from
    /// before device lists).
    pub(crate) async fn publish_pending_list(&mut self) -> Result<(), ClientError> {
        if self.own_list.published {
            return Ok(());
        }
        let signed = self.own_list.signed.clone();
        self.request_ok(|id| ClientFrame::PublishDevices {
            id,
            device_list: signed,
        })
        .await?;
        self.list_registered()?;
        self.commit().await
    }

    /// Signs `list` (made by this device), publishes it, and only once the server accepted it
    /// makes it this user's current list (PROTOCOL.md §3.6: a list is used only after that).
    pub(crate) async fn publish_list(
        &mut self,
        list: DeviceList,
    ) -> Result<SignedDeviceList, ClientError> {
        let signed = self
            .user_identity
            .sign_list(&list, &self.identity)
            .map_err(list_error)?;
        self.publish_signed(signed, list).await
    }

    /// Publishes `signed` (made by this device) and, once the server accepted it, makes it this
    /// user's current list.
    pub(crate) async fn publish_signed(
        &mut self,
        signed: SignedDeviceList,
        list: DeviceList,
    ) -> Result<SignedDeviceList, ClientError> {
        let frame_list = signed.clone();
        self.request_ok(|id| ClientFrame::PublishDevices {
            id,
            device_list: frame_list,
        })
        .await?;
        self.adopt_own_list(signed.clone(), list)?;
        self.commit().await?;
        Ok(signed)
    }

    /// Makes `signed` (already accepted by the server) this user's current list.
    pub(crate) fn adopt_own_list(
        &mut self,
        signed: SignedDeviceList,
        list: DeviceList,
    ) -> Result<(), ClientError> {
        self.own_list = OwnList {
            signed,
            published: true,
        };
        self.db.put(T_PROFILE, OWN_LIST_KEY, &self.own_list)?;
        self.own_list_parsed = list;
        self.devices_dirty = true;
        self.own_list_moved = true;
        self.own_keys_retry = true;
        Ok(())
    }

    /// Appends `update_devices` with the current list to every group whose log pins this user
    /// at another list (or none): the durable task of PROTOCOL.md §11.14, run after connecting
    /// and whenever the list changes. A group that refuses it is tried again next time.
    pub(crate) async fn update_own_entries(&mut self) {
        // A key publication the server refused, tried again once this user's list moved (on
        // the chain this device followed on this connection only).
        if self.own_keys_retry && self.own_list_current && self.conn.is_some() {
            self.own_keys_retry = false;
            // Boxed: publishing may connect, and connecting runs this task.
            if let Err(e) = Box::pin(self.publish_own_keys()).await {
                self.own_keys_refused(&e);
            }
        }
        if !self.own_list.published || !self.devices_dirty || self.conn.is_none() {
            return;
        }
        let me = self.device();
        let user = self.profile.user;
        let current = self.own_list.signed.hash();
        let own_version = self.own_list_parsed.version;
        let stale: Vec<GroupId> = self
            .groups
            .iter()
            .filter(|(_, ctx)| ctx.meta.tampered.is_none() && ctx.is_member(&me))
            .filter(|(_, ctx)| {
                ctx.state
                    .device_list_of(&user)
                    .is_none_or(|pinned| pinned.hash() != current)
                    // A log ahead of this device: it catches up first (its list chain).
                    && ctx
                        .state
                        .device_list_version_of(&user)
                        .is_none_or(|v| v <= own_version)
            })
            .map(|(g, _)| *g)
            .collect();
        let mut all_done = true;
        for group in stale {
            // Boxed: appending may connect, and connecting runs this task.
            if let Err(e) = Box::pin(self.update_group_devices(group)).await {
                tracing::warn!(%group, error = %e, "could not update this user's devices in a group");
                all_done = false;
            }
        }
        self.devices_dirty = !all_done;
    }

    /// Moves `group` from the list it pins for this user to the current one: each
    /// `update_devices` carries the lists in between, which must succeed one another from the
    /// pinned one (PROTOCOL.md §8.5); a group far behind gets several.
    async fn update_group_devices(&mut self, group: GroupId) -> Result<(), ClientError> {
        let user = self.profile.user;
        let pinned = self
            .groups
            .get(&group)
            .and_then(|ctx| ctx.state.device_list_of(&user).cloned());
        // The lists after the pinned one, up to the current (a first pin carries the current
        // list alone).
        let mut pending: Vec<SignedDeviceList> = match &pinned {
            None => vec![self.own_list.signed.clone()],
            Some(pinned) => self.own_lists_after(pinned).await?,
        };
        while !pending.is_empty() {
            let take = pending
                .len()
                .min(confide_protocol::group_log::MAX_UPDATE_CHAIN + 1);
            let mut segment: Vec<SignedDeviceList> = pending.drain(..take).collect();
            let Some(device_list) = segment.pop() else {
                break;
            };
            let body = OpBody::UpdateDevices {
                device_list,
                chain: segment,
            };
            self.append_op(group, body).await?;
        }
        Ok(())
    }

    /// This user's lists after `pinned`, oldest first, up to the current one, each checked to
    /// succeed the one before: from the server's chain.
    async fn own_lists_after(
        &mut self,
        pinned: &SignedDeviceList,
    ) -> Result<Vec<SignedDeviceList>, ClientError> {
        // The group's pinned list: its log verified it.
        let mut previous = checked_list(pinned)
            .ok_or_else(|| ClientError::Encode(serde::de::Error::custom("pinned list")))?;
        let mut previous_hash = pinned.hash();
        let target = self.own_list.signed.hash();
        if previous.version.checked_add(1) == Some(self.own_list_parsed.version) {
            return Ok(vec![self.own_list.signed.clone()]);
        }
        let mut out = Vec::new();
        while previous_hash != target {
            let lists = self.own_list_chain(previous.version).await?;
            if lists.is_empty() {
                return Err(ClientError::LinkFailed {
                    code: "stale_device_list",
                    reason: "the server does not have this person's lists up to the current one"
                        .into(),
                });
            }
            for signed in lists {
                let list = signed.verify().map_err(list_error)?;
                if !list.succeeds(&previous, &previous_hash) {
                    return Err(ClientError::LinkFailed {
                        code: "stale_device_list",
                        reason: "the server's list chain does not follow the list the group holds"
                            .into(),
                    });
                }
                previous_hash = signed.hash();
                previous = list;
                out.push(signed);
                if previous_hash == target {
                    break;
                }
                if previous.version >= self.own_list_parsed.version {
                    return Err(ClientError::LinkFailed {
                        code: "stale_device_list",
                        reason: "the server's list chain leads elsewhere than this device's list"
                            .into(),
                    });
                }
            }
        }
        Ok(out)
    }

    /// This user's devices as this device knows them.
    pub fn own_devices(&self) -> OwnDevices {
        let me = self.device();
        let list = &self.own_list_parsed;
        OwnDevices {
            devices: list
                .devices
                .iter()
                .map(|d| LinkedDevice {
                    device: d.keys.device,
                    this_device: d.keys.device == me,
                    made_current_list: d.keys.device == list.by,
                })
                .collect(),
            version: list.version,
            at: list.at,
            fingerprint: confide_protocol::identity::identity_fingerprint_digits(
                &self.profile.user,
                &list.identity,
            ),
        }
    }

    /// Unlinks one of this user's other devices (or this one: signing out): publishes the list
    /// without it, then moves every group to a new epoch without it (PROTOCOL.md §3.8). The
    /// application asks for the passphrase again before calling this.
    ///
    /// # Errors
    ///
    /// [`ClientError::NotFound`] if `device` is not one of this user's devices;
    /// [`ClientError::LinkFailed`] (`last_device`) for the only device; the errors of a request.
    pub async fn unlink_device(&mut self, device: DeviceId) -> Result<(), ClientError> {
        let r = self.unlink(device).await;
        self.end_step(r).await
    }

    async fn unlink(&mut self, device: DeviceId) -> Result<(), ClientError> {
        let list = self.own_list_parsed.clone();
        if !list.lists(&device) {
            return Err(ClientError::LinkFailed {
                code: "unknown_device",
                reason: "that device is not one of yours".into(),
            });
        }
        if list.devices.len() == 1 {
            return Err(ClientError::LinkFailed {
                code: "last_device",
                reason: "this is your only device: unlinking it would lose your identity".into(),
            });
        }
        self.ensure_connected().await?;
        let devices: Vec<ListedDevice> = list
            .devices
            .iter()
            .filter(|d| d.keys.device != device)
            .cloned()
            .collect();
        let next = list.successor(
            self.own_list.signed.hash(),
            self.device(),
            self.host.now(),
            devices,
        );
        self.publish_list(next).await?;
        if device == self.device() {
            // Signing out: the other devices move the groups on; this one keeps nothing.
            let by = self.device();
            self.unlinked_by(by).await;
            return Ok(());
        }
        self.emit(Event::DevicesChanged {
            user: self.profile.user,
        });
        Box::pin(self.update_own_entries()).await;
        Ok(())
    }

    /// A list pushed by the server (`device_list`): another device of this user published it,
    /// or this device was unlinked.
    pub(crate) async fn on_device_list(&mut self, signed: SignedDeviceList) {
        let Ok(list) = signed.verify() else {
            tracing::warn!("the server pushed a device list that does not verify; ignored");
            return;
        };
        if list.user != self.profile.user {
            // Another person's list from the server moves nothing: only verified logs do
            // (§11.14), so a server cannot plant or roll back what this device seals to.
            return;
        }
        self.own_list_candidate(signed, list).await;
    }

    /// A list of this user seen in a push, a chain reply or a verified log: adopted only as the
    /// strict successor of the current one (§3.6), which may also unlink this device.
    async fn own_list_candidate(&mut self, signed: SignedDeviceList, list: DeviceList) {
        let current = &self.own_list_parsed;
        if list.identity != current.identity {
            // Anyone can sign a list under another key; it says nothing about this one's.
            tracing::warn!("a device list of this user under another identity key; ignored");
            return;
        }
        let hash = signed.hash();
        if list.version <= current.version {
            if list.version == current.version && hash != self.own_list.signed.hash() {
                // Two lists of one version: someone holds the identity key who should not.
                self.emit(Event::IdentityMisuse {
                    user: self.profile.user,
                });
            }
            return;
        }
        if !list.succeeds(current, &self.own_list.signed.hash()) {
            if list.version == current.version.saturating_add(1) {
                // The next version, but not made from this one by a listed device: a fork.
                self.emit(Event::IdentityMisuse {
                    user: self.profile.user,
                });
            } else {
                // Versions missed: follow the chain from the server before acting.
                self.own_list_stale = true;
                // Until the chain is followed, nothing goes to or comes from "own" devices.
                self.own_list_current = false;
            }
            return;
        }
        if !list.lists(&self.device()) {
            self.unlinked_by(list.by).await;
            return;
        }
        if self.adopt_own_list(signed, list).is_ok() {
            self.emit(Event::DevicesChanged {
                user: self.profile.user,
            });
        }
    }

    /// One page of this user's lists after `after_version` from the server, oldest first, not
    /// yet verified (each caller checks succession its own way).
    async fn own_list_chain(
        &mut self,
        after_version: u64,
    ) -> Result<Vec<SignedDeviceList>, ClientError> {
        let user = self.profile.user;
        let reply = self
            .request_ok(|id| ClientFrame::DeviceListChain {
                id,
                user,
                after_version,
            })
            .await?;
        match reply {
            ServerFrame::DeviceListChain { lists, .. } => Ok(lists),
            reply => Err(unexpected_reply(reply, "device_list_chain")),
        }
    }

    /// Follows this user's list chain from the server, from the current list on, each list
    /// checked to succeed the one before (so a device that missed versions catches up, or
    /// learns it was unlinked, without trusting a list out of the chain).
    pub(crate) async fn catch_up_own_list(&mut self) -> Result<(), ClientError> {
        self.own_list_stale = false;
        loop {
            let lists = self.own_list_chain(self.own_list_parsed.version).await?;
            let full = lists.len() >= confide_protocol::frames::MAX_DEVICE_LISTS_PER_REPLY;
            let before = self.own_list_parsed.version;
            for signed in lists {
                let Ok(list) = signed.verify() else {
                    tracing::warn!("the server's list chain holds a list that does not verify");
                    return Ok(());
                };
                self.own_list_candidate(signed, list).await;
                if self.unlinked {
                    return Ok(());
                }
            }
            self.commit().await?;
            if !full || self.own_list_parsed.version == before {
                return Ok(());
            }
        }
    }

    /// A verified, newer list of this user dropped this device: its secrets are deleted and the
    /// application told (PROTOCOL.md §3.8).
    async fn unlinked_by(&mut self, by: DeviceId) {
        self.db.remove(T_PROFILE, USER_IDENTITY_KEY);
        self.db.remove(T_PROFILE, crate::profile::IDENTITY_KEY);
        let _ = self.db.put(T_PROFILE, UNLINKED_KEY, &by);
        self.unlinked = true;
        self.emit(Event::DeviceUnlinked { by });
        let _ = self.commit().await;
        if let Some(conn) = self.conn.take() {
            crate::Link::close(conn).await;
        }
    }

    /// Whether this device learned that it was unlinked: it can do nothing more.
    pub fn is_unlinked(&self) -> bool {
        self.unlinked
    }

    /// Records a user's list seen in a group's log or from the server, moving the high-water
    /// mark, and tells the application what changed: another identity key (a key change), a
    /// fork (misuse of an identity key), or other devices.
    pub(crate) async fn note_list(
        &mut self,
        group: Option<(GroupId, &str)>,
        list: &DeviceList,
        signed: &SignedDeviceList,
    ) {
        let user = list.user;
        if user == self.profile.user {
            return;
        }
        let hash = signed.hash();
        let seen = KnownList {
            identity: list.identity,
            version: list.version,
            hash,
            devices: list.devices.iter().map(|d| d.keys.device).collect(),
            keys: list.device_keys(),
        };
        let known = self.known_lists.get(&user).cloned();
        // One identity key belongs to one user id (§3.6): the same key under another user id is
        // someone re-using it.
        if self
            .known_lists
            .iter()
            .any(|(other, k)| *other != user && k.identity == list.identity)
        {
            self.emit(Event::IdentityMisuse { user });
            return;
        }
        let store = match &known {
            None => {
                // First list of someone known by device keys: the safety number moves from the
                // device to the identity key, which people see as a change (§3.9).
                let had_device_keys = self
                    .db
                    .get_bytes(crate::store::T_KNOWN_KEYS, user.as_bytes())
                    .await
                    .ok()
                    .flatten()
                    .is_some();
                if had_device_keys && let Some((group, name)) = group {
                    self.emit(Event::KeyChanged {
                        group,
                        user,
                        display_name: name.to_owned(),
                    });
                }
                true
            }
            Some(k) if k.identity != list.identity => {
                // A user id is never handed to a new identity key (§3.8): this is someone else
                // under that id. Told once per key; the mark stays with the first key, so
                // nobody can flip it to another key and back to an old list of the real one.
                let other = crate::store::key2(user.as_bytes(), list.identity.as_bytes());
                let told = self
                    .db
                    .get_bytes(T_KNOWN_LISTS, &other)
                    .await
                    .ok()
                    .flatten()
                    .is_some();
                if !told && let Some((group, name)) = group {
                    self.emit(Event::KeyChanged {
                        group,
                        user,
                        display_name: name.to_owned(),
                    });
                    self.db.put_bytes(T_KNOWN_LISTS, &other, &[1]);
                }
                false
            }
            Some(k) if k.version == list.version && k.hash != hash => {
                self.emit(Event::IdentityMisuse { user });
                false
            }
            Some(k)
                if k.version.checked_add(1) == Some(list.version)
                    && (list.prev != k.hash || !k.devices.contains(&list.by)) =>
            {
                // Claims to follow the list this device holds, but was not made from it by a
                // device it names: someone holds the identity key who should not (§11.14).
                self.emit(Event::IdentityMisuse { user });
                false
            }
            Some(k) if k.version < list.version => {
                if k.devices != seen.devices {
                    self.emit(Event::DevicesChanged { user });
                }
                true
            }
            // The same list again, for a mark of an earlier version that kept no keys.
            Some(k) if k.version == list.version && k.keys.is_empty() => true,
            Some(_) => false,
        };
        if store {
            let _ = self.db.put(T_KNOWN_LISTS, user.as_bytes(), &seen);
            self.known_lists.insert(user, seen);
        }
    }

    /// Notes the lists an op of an accepted group carries (PROTOCOL.md §11.14).
    pub(crate) async fn note_op_lists(&mut self, group: GroupId, body: &OpBody) {
        let entry_list = |entry: &MemberEntry| entry.device_list.clone();
        let (name, signed) = match body {
            OpBody::Genesis { creator, .. } => (creator.display_name.clone(), entry_list(creator)),
            OpBody::Join { member, .. } | OpBody::Add { member, .. } => {
                (member.display_name.clone(), entry_list(member))
            }
            OpBody::UpdateDevices { device_list, .. } => (String::new(), Some(device_list.clone())),
            _ => return,
        };
        let Some(signed) = signed else {
            return;
        };
        // The op's log was verified (every list in it with it): parsed, not verified again.
        let Some(list) = checked_list(&signed) else {
            return;
        };
        let name = match name.is_empty() {
            true => self
                .groups
                .get(&group)
                .and_then(|ctx| ctx.state.member(&list.user))
                .map(|m| m.entry.display_name.clone())
                .unwrap_or_default(),
            false => name,
        };
        if list.user == self.profile.user {
            if list.version < self.own_list_parsed.version {
                // A log pins this user at an older list: correct it (PROTOCOL.md §11.14).
                self.devices_dirty = true;
            } else if list.version > self.own_list_parsed.version {
                // A sibling's newer list, verified in a log: this device missed it.
                self.own_list_candidate(signed, list).await;
            }
            return;
        }
        self.note_list(Some((group, &name)), &list, &signed).await;
    }

    /// The devices among `keys` that may be sealed to in `state`, with the keys to seal to:
    /// those whose user's newest known list still names them (PROTOCOL.md §11.14) — a device
    /// a newer list dropped gets nothing, even where the log still lists it — each with the
    /// X-Wing key of that newest list when the log names it without one (§4.7). A device that
    /// list gives an X-Wing key that cannot be used gets nothing rather than an X25519 seal.
    pub(crate) fn sealable<'a>(
        &self,
        state: &GroupState,
        keys: impl IntoIterator<Item = &'a DeviceKeys>,
    ) -> Vec<DeviceKeys> {
        keys.into_iter()
            .filter_map(|k| {
                let (user, _) = state.member_of_device(&k.device)?;
                if *user == self.profile.user {
                    // This user's own current list: verified, with every device's keys.
                    let listed = self
                        .own_list_parsed
                        .devices
                        .iter()
                        .find(|l| l.keys.device == k.device)?;
                    return keys_to_seal(k, Some(&listed.keys));
                }
                match (
                    self.known_lists.get(user),
                    state.device_list_version_of(user),
                ) {
                    // Only a newer list under the identity this log pinned (§11.14).
                    (Some(known), Some(pinned))
                        if known.version > pinned
                            && state.identity_of(user) == Some(known.identity) =>
                    {
                        if !known.devices.contains(&k.device) {
                            return None;
                        }
                        keys_to_seal(k, known.keys_of(&k.device))
                    }
                    _ => Some(k.clone()),
                }
            })
            .collect()
    }

    /// The current list the server holds for `user`, verified: for writing an `add`. Refused
    /// when it is older than what this device has seen, or under another identity key than
    /// the one this device knows (until the person confirms the change).
    pub(crate) async fn fetch_user_list(
        &mut self,
        user: UserId,
    ) -> Result<Option<(SignedDeviceList, DeviceList)>, ClientError> {
        let reply = self
            .request_ok(|id| ClientFrame::LookupUsers {
                id,
                users: vec![user],
            })
            .await?;
        let ServerFrame::Devices { device_lists, .. } = reply else {
            return Err(unexpected_reply(reply, "devices"));
        };
        for signed in device_lists {
            let Ok(list) = signed.verify() else {
                continue;
            };
            if list.user != user {
                continue;
            }
            if let Some(known) = self.known_lists.get(&user) {
                if known.identity != list.identity {
                    return Err(ClientError::LinkFailed {
                        code: "identity_changed",
                        reason: "the server shows another identity key for this person than \
                                 the one this device knows: compare safety numbers first"
                            .into(),
                    });
                }
                if list.version < known.version {
                    return Err(ClientError::LinkFailed {
                        code: "stale_device_list",
                        reason: "the server shows an older device list for this person than \
                                 this device has seen"
                            .into(),
                    });
                }
            }
            return Ok(Some((signed, list)));
        }
        Ok(None)
    }
}

/// The high-water marks kept in memory, by user.
pub(crate) type KnownLists = HashMap<UserId, KnownList>;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn device(seed: u8, pq: bool) -> DeviceIdentity {
        DeviceIdentity::from_secret_bytes(
            &[seed; 32],
            &[seed ^ 1; 32],
            pq.then_some(&[seed ^ 2; 32]),
        )
    }

    #[test]
    fn a_device_known_to_have_an_x_wing_key_is_never_sealed_to_with_x25519_alone() {
        let logged = device(1, false).public_keys();
        // The newest list adds the X-Wing key to the same keys: that key is used.
        let upgraded = device(1, true).public_keys();
        assert_eq!(
            keys_to_seal(&logged, Some(&upgraded)),
            Some(upgraded.clone())
        );
        // The newest list names another X25519 key with its X-Wing key: nothing is sealed.
        let swapped = DeviceKeys {
            sealing_key: [9; 32],
            ..upgraded
        };
        assert_eq!(keys_to_seal(&logged, Some(&swapped)), None);
        // Unknown, or without an X-Wing key in the newest list: the log's keys.
        assert_eq!(keys_to_seal(&logged, None), Some(logged.clone()));
        assert_eq!(keys_to_seal(&logged, Some(&logged)), Some(logged.clone()));
    }

    #[test]
    fn a_high_water_mark_stored_before_keys_were_kept_reads_with_its_keys_unknown() {
        let mark = KnownList {
            identity: IdentityKey([4; 32]),
            version: 3,
            hash: DeviceListHash([5; 32]),
            devices: vec![device(1, false).device_id()],
            keys: Vec::new(),
        };
        let json = serde_json::to_string(&mark).unwrap();
        assert!(!json.contains("keys"), "{json}");
        let read: KnownList = serde_json::from_str(&json).unwrap();
        assert_eq!(read, mark);
        assert!(read.keys_of(&mark.devices[0]).is_none());
    }
}
