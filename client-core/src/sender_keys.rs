//! Sender keys: this device's chain per epoch, sealed to exactly the devices the verified log
//! lists before it is used; the chains of others, received sealed through the inbox (kept
//! for later when their epoch is ahead of the log); and the inbox items that carry them.

use confide_protocol::envelope::Envelope;
use confide_protocol::frames::{self, ClientFrame, InboxItem};
use confide_protocol::seal::{self, SealError, SealKind, SealedPayload};
use confide_protocol::sender_key::{ReceiverChain, SenderChain};
use confide_protocol::{DeviceKeys, EpochRef, GroupId};

use crate::error::{ClientError, EncryptError, Missing, VerificationError};
use crate::group::MAX_EPOCH_AHEAD;
use crate::machine::ClientCore;
use crate::store::{
    ClientStore, T_OWN_CHAINS, T_PARKED_KEYS, T_RECV_CHAINS, Tx, corrupt, key2, key3,
};
use crate::{HostRng, Network};

/// Sender keys (or facilitator notes) kept per sender while their epoch is ahead of the log.
pub(crate) const MAX_PARKED_PER_SENDER: usize = 64;

/// Early sealed payloads kept in all for groups this device does not hold (PROTOCOL.md §11.5):
/// the server can name any number of made-up groups and senders, so the per-sender bound alone
/// does not bound these. A reconnect after being added to a few groups needs a handful per
/// group (one sender key per member device); beyond this they are dropped, still acknowledged.
pub(crate) const MAX_PARKED_UNHELD: usize = 256;

impl<S: ClientStore, N: Network> ClientCore<S, N> {
    /// Processes one inbox item. Returns whether it may be acknowledged: every item is, once
    /// it is stored or deliberately dropped, so nothing piles up on the server.
    pub(crate) async fn handle_inbox(&mut self, item: &InboxItem) -> bool {
        let sealed = &item.payload;
        // Dispatched on the kind first: an own-devices update's `group` is a user id.
        if sealed.kind == SealKind::OwnDevices {
            return self.receive_own_devices(item).await;
        }
        if !matches!(
            sealed.kind,
            SealKind::SenderKey
                | SealKind::Report
                | SealKind::FacilitatorNote
                | SealKind::JoinRequest
        ) {
            // Kinds this version does not use are dropped.
            return true;
        }
        if sealed.kind != SealKind::JoinRequest && self.is_early(sealed) {
            return self.park_sealed(item).await;
        }
        match sealed.kind {
            SealKind::SenderKey => self.receive_sender_key(sealed).await,
            SealKind::JoinRequest => self.receive_join_request(sealed).await,
            SealKind::Report => self.receive_report(sealed).await,
            _ => self.receive_note(sealed).await,
        }
    }

    /// Whether a sealed payload belongs to a group or an epoch ahead of this device's verified
    /// log (normal after a reconnect: the inbox arrives before the sync).
    pub(crate) fn is_early(&self, sealed: &SealedPayload) -> bool {
        match self.groups.get(&sealed.group) {
            None => true,
            Some(ctx) => {
                !ctx.epochs.contains_key(&sealed.epoch_ref()) && sealed.epoch > ctx.state.epoch()
            }
        }
    }

    /// Keeps an early sealed payload until the log gets to its epoch. Only payloads that open
    /// and are signed by their sender are kept, at most [`MAX_PARKED_PER_SENDER`] per sender,
    /// and only for epochs at most [`MAX_EPOCH_AHEAD`] ahead, so junk cannot crowd out real keys.
    pub(crate) async fn park_sealed(&mut self, item: &InboxItem) -> bool {
        let sealed = &item.payload;
        if seal::open(&self.identity, sealed).is_err() {
            return true;
        }
        if let Some(ctx) = self.groups.get(&sealed.group)
            && sealed.epoch.0 > ctx.state.epoch().0.saturating_add(MAX_EPOCH_AHEAD)
        {
            return true;
        }
        let prefix = key2(sealed.group.as_bytes(), sealed.sender.as_bytes());
        if let Ok((n, _)) = self.db.count(T_PARKED_KEYS, &prefix).await
            && n >= MAX_PARKED_PER_SENDER
        {
            return true;
        }
        if !self.groups.contains_key(&sealed.group)
            && self.parked_unheld().await >= MAX_PARKED_UNHELD
        {
            tracing::debug!(group = %sealed.group, "early payload for a group not held dropped: too many kept");
            return true;
        }
        self.needs_sync.insert(sealed.group);
        // Opened and signed by a current member's device: that member uses a later epoch.
        if self
            .groups
            .get(&sealed.group)
            .is_some_and(|ctx| ctx.is_member(&sealed.sender))
        {
            self.note_behind(sealed.group, sealed.epoch.0, sealed.sender);
        }
        let key = key3(
            sealed.group.as_bytes(),
            sealed.sender.as_bytes(),
            &item.inbox_id.to_be_bytes(),
        );
        self.db.put(T_PARKED_KEYS, &key, sealed).is_ok()
    }

    /// How many early sealed payloads are kept for groups this device does not hold (a store
    /// that cannot be read counts as full: nothing more is kept then).
    async fn parked_unheld(&self) -> usize {
        let Ok(keys) = self.db.keys(T_PARKED_KEYS, &[]).await else {
            return MAX_PARKED_UNHELD;
        };
        keys.iter()
            .filter(|key| {
                key.get(..16)
                    .and_then(|g| <[u8; 16]>::try_from(g).ok())
                    .is_none_or(|g| !self.groups.contains_key(&GroupId(g)))
            })
            .count()
    }

    /// Forgets the early sealed payloads kept for a group this device will not hold.
    pub(crate) async fn drop_parked_keys(&mut self, group: GroupId) {
        if let Ok(keys) = self.db.keys(T_PARKED_KEYS, group.as_bytes()).await {
            for key in keys {
                self.db.remove(T_PARKED_KEYS, &key);
            }
        }
    }

    /// Processes the sealed payloads kept for a group whose log has since moved on.
    pub(crate) async fn retry_parked_keys(&mut self, group: GroupId) {
        let Ok(parked) = self
            .db
            .scan::<SealedPayload>(T_PARKED_KEYS, group.as_bytes(), usize::MAX)
            .await
        else {
            return;
        };
        for (key, sealed) in parked {
            if self.is_early(&sealed) {
                continue;
            }
            self.db.remove(T_PARKED_KEYS, &key);
            match sealed.kind {
                SealKind::SenderKey => self.receive_sender_key(&sealed).await,
                SealKind::Report => self.receive_report(&sealed).await,
                _ => self.receive_note(&sealed).await,
            };
        }
    }

    pub(crate) async fn receive_sender_key(&mut self, sealed: &SealedPayload) -> bool {
        let group = sealed.group;
        let Some(ctx) = self.groups.get(&group) else {
            return true;
        };
        let Some(devices) = ctx.epochs.get(&sealed.epoch_ref()) else {
            tracing::warn!(%group, "sender key for an epoch not in the verified log: dropped");
            return true;
        };
        if !devices.contains_key(&sealed.sender) || !devices.contains_key(&self.device()) {
            tracing::warn!(%group, "sender key from or to a non-member: dropped");
            return true;
        }
        let Ok(distribution) = seal::open(&self.identity, sealed) else {
            tracing::warn!(%group, "sender key does not open: dropped");
            return true;
        };
        let chain_key = key3(
            group.as_bytes(),
            sealed.epoch_hash.as_bytes(),
            sealed.sender.as_bytes(),
        );
        // The first distribution per (group, epoch, sender) wins: a replayed one must never
        // rewind the chain and make old messages decrypt again.
        if matches!(
            self.db.get_bytes(T_RECV_CHAINS, &chain_key).await,
            Ok(Some(_))
        ) {
            return true;
        }
        let Ok(chain) = ReceiverChain::from_distribution(&distribution) else {
            return true;
        };
        self.db
            .put_bytes(T_RECV_CHAINS, &chain_key, &chain.to_bytes());
        self.retry_parked(group).await;
        true
    }

    /// Makes sure this device's sender key for the group's current epoch exists and was sealed
    /// to every other device the verified log lists (and to nobody else).
    pub(crate) async fn ensure_sender_key(
        &mut self,
        group: GroupId,
    ) -> Result<(EpochRef, SenderChain), ClientError> {
        let me = self.device();
        let ctx = self.groups.get(&group).ok_or(ClientError::UnknownGroup)?;
        let epoch = ctx.state.epoch_ref();
        let key = key2(group.as_bytes(), epoch.hash.as_bytes());
        let (chain, distributed) = match self.db.get_bytes(T_OWN_CHAINS, &key).await? {
            Some(bytes) if !bytes.is_empty() => (
                SenderChain::from_bytes(&bytes[1..]).map_err(|_| corrupt(T_OWN_CHAINS, &key))?,
                bytes[0] == 1,
            ),
            _ => {
                let chain = SenderChain::generate(&mut HostRng(&mut *self.host));
                // Stored before anything is sealed or sent with it (`send_frame` commits).
                Self::save_chain(&mut self.db, &key, &chain, false);
                (chain, false)
            }
        };
        if !distributed {
            let distribution = chain.distribution();
            // Only devices the newest known lists still name (PROTOCOL.md §11.14).
            let recipients: Vec<DeviceKeys> = self.sealable(
                &ctx.state,
                ctx.state
                    .current_devices()
                    .into_iter()
                    .filter(|k| k.device != me),
            );
            // A device whose keys cannot be sealed to gets nothing; the others get the key.
            let (items, _) = self.seal_to_each(
                &recipients,
                SealKind::SenderKey,
                group,
                epoch,
                &distribution,
            )?;
            self.send_sealed(items).await?;
            Self::save_chain(&mut self.db, &key, &chain, true);
        }
        Ok((epoch, chain))
    }

    /// Seals `payload` to each of `recipients`, one at a time: a recipient whose keys cannot be
    /// sealed to (a key HPKE refuses, a signature that does not verify) is left out and named
    /// in the log by its device id, and every other recipient still gets its payload, so that
    /// one broken device never silences a group. Returns the sealed
    /// payloads and the last failure, if any recipient was left out.
    ///
    /// # Errors
    ///
    /// [`EncryptError::Seal`] for a payload too large to seal to anyone
    /// ([`seal::MAX_SEALED_PAYLOAD`]).
    pub(crate) fn seal_to_each(
        &mut self,
        recipients: &[DeviceKeys],
        kind: SealKind,
        group: GroupId,
        epoch: EpochRef,
        payload: &[u8],
    ) -> Result<(Vec<SealedPayload>, Option<SealError>), ClientError> {
        if payload.len() > seal::MAX_SEALED_PAYLOAD {
            return Err(ClientError::Encrypt(EncryptError::Seal(
                SealError::TooLarge(payload.len()),
            )));
        }
        let mut items = Vec::with_capacity(recipients.len());
        let mut failed = None;
        for keys in recipients {
            match seal::seal(
                &self.identity,
                keys,
                kind,
                group,
                epoch,
                payload,
                &mut HostRng(&mut *self.host),
            ) {
                Ok(sealed) => items.push(sealed),
                Err(e) => {
                    tracing::warn!(
                        %group,
                        device = %keys.device,
                        error = %e,
                        "a device's keys cannot be sealed to: it is left out"
                    );
                    failed = Some(e);
                }
            }
        }
        Ok((items, failed))
    }

    /// As [`Self::seal_to_each`], for a payload meant for people who must get it (a report, a
    /// note or a join request to the facilitators): an error when `recipients` named someone
    /// and none of them could be sealed to, since then nobody would get it.
    pub(crate) fn seal_to_some(
        &mut self,
        recipients: &[DeviceKeys],
        kind: SealKind,
        group: GroupId,
        epoch: EpochRef,
        payload: &[u8],
    ) -> Result<Vec<SealedPayload>, ClientError> {
        let (items, failed) = self.seal_to_each(recipients, kind, group, epoch, payload)?;
        match failed {
            Some(e) if items.is_empty() => Err(ClientError::Encrypt(EncryptError::Seal(e))),
            _ => Ok(items),
        }
    }

    /// Sends sealed payloads in as many `send_sealed` frames as the server's frame limit needs
    /// (a report of a large message to many facilitators does not fit in one).
    pub(crate) async fn send_sealed(
        &mut self,
        items: Vec<SealedPayload>,
    ) -> Result<(), ClientError> {
        for items in frames::sealed_frames(items, frames::DEFAULT_MAX_CLIENT_FRAME_BYTES) {
            self.request_ok(|id| ClientFrame::SendSealed { id, items })
                .await?;
        }
        Ok(())
    }

    /// Keeps this device's sender chain for an epoch (and whether it was distributed) in the
    /// step's batch, which is committed before anything sealed with it is sent.
    pub(crate) fn save_chain(db: &mut Tx<S>, key: &[u8], chain: &SenderChain, distributed: bool) {
        let mut bytes = zeroize::Zeroizing::new(vec![u8::from(distributed)]);
        bytes.extend_from_slice(&chain.to_bytes());
        db.put_bytes(T_OWN_CHAINS, key, &bytes);
    }

    /// Tries to decrypt an envelope with the keys this device holds, changing nothing. For
    /// audits: it shows what this device could read of stored ciphertext.
    ///
    /// # Errors
    ///
    /// [`ClientError::NotFound`] ([`Missing::SenderKey`](crate::Missing::SenderKey)) when this
    /// device holds no key for the envelope's sender and epoch; [`ClientError::Verification`]
    /// ([`VerificationError::Envelope`](crate::VerificationError::Envelope)) when the envelope's
    /// signature, decryption or padding fails, or its key was already used; [`ClientError::Store`]
    /// if the key cannot be read.
    pub async fn inspect(&self, envelope: &Envelope) -> Result<Vec<u8>, ClientError> {
        let chain_key = key3(
            envelope.group.as_bytes(),
            envelope.epoch_hash.as_bytes(),
            envelope.sender.as_bytes(),
        );
        let bytes = self
            .db
            .get_bytes(T_RECV_CHAINS, &chain_key)
            .await?
            .ok_or(ClientError::NotFound(Missing::SenderKey))?;
        let mut chain =
            ReceiverChain::from_bytes(&bytes).map_err(|_| corrupt(T_RECV_CHAINS, &chain_key))?;
        let opened = envelope
            .open(&mut chain)
            .map_err(|e| ClientError::from(VerificationError::Envelope(e)))?;
        Ok(opened.body.to_vec())
    }
}
