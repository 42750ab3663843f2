//! Linking a new device to this user (PROTOCOL.md §3.7), from both ends.
//!
//! - The **new device** has no profile yet: [`NewDeviceLink`] dials the server on its own,
//!   opens a link channel, shows the code, and after its person confirmed the numbers receives
//!   the link bundle, from which the application makes the new profile
//!   ([`crate::profile::create_linked`]).
//! - The **existing device** is a [`ClientCore`]: [`ClientCore::link_start`] joins the channel
//!   and gives the numbers to compare; [`ClientCore::link_confirm`], once its person confirmed,
//!   publishes the list with the new device and seals the bundle to it.
//!
//! Both ends wait for the other's messages with their own bounds; the person's answer comes
//! between the calls.

use std::collections::VecDeque;
use std::time::Duration;

use confide_protocol::device_list::{ListedDevice, SignedDeviceList};
use confide_protocol::envelope::{ContentBody, MessageContent};
use confide_protocol::frames::{ClientFrame, PROTOCOL_VERSION, ServerFrame};
use confide_protocol::link::{
    self as proto, BundleGroup, BundleHiddenTopics, BundlePinned, HistoryItem, IdentitySecret,
    KnownIdentity, LINK_BUNDLE_FORMAT, LINK_HISTORY_AGE_MS, LINK_HISTORY_MESSAGES, LinkBundle,
    LinkCode, LinkEphemeral, LinkMessage, LinkSecrets, MAX_LINK_BUNDLE_BYTES,
};
use confide_protocol::{DeviceId, DeviceIdentity, GroupId, RequestId, UserId};
use serde::Serialize;

use crate::error::{ClientError, unexpected_reply};
use crate::events::ChatMessage;
use crate::host::{Host, HostRng};
use crate::machine::{ClientCore, millis};
use crate::store::ClientStore;
use crate::{Link, Network};

/// How long the existing device waits for the new one's `done` after sending the bundle.
pub const LINK_DONE_WAIT: Duration = Duration::from_secs(120);

/// The most link messages kept unread for a link under way (a handful are expected); more is a
/// peer or server flooding the channel, and stops the link.
const MAX_LINK_INBOX: usize = 8;

/// Whether `mac` is the new device's confirmation for the link under way.
fn side_confirms(side: Option<&OldSide>, mac: &[u8; 32]) -> bool {
    side.is_some_and(|side| side.secrets.confirm_mac_valid(mac))
}

/// How long either end waits for the other device's next message: the person may take a while
/// to type the code or compare the numbers, and the server keeps a channel 10 minutes.
pub const LINK_WAIT: Duration = Duration::from_secs(600);

/// What the existing device shows its person after [`ClientCore::link_start`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LinkCheck {
    /// The numbers to compare with the new device's screen, e.g. `"4821 7390 1066"`.
    pub sas: String,
    /// The new device's id.
    pub device: DeviceId,
}

/// What the new device shows its person once the existing device answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LinkOffer {
    /// The numbers to compare with the other device's screen.
    pub sas: String,
    /// The name of the person whose device this becomes (from the other device; shown only to
    /// help the person recognise their own account).
    pub display_name: String,
    /// That user's half of every safety number (30 digits).
    pub fingerprint: String,
}

/// The existing device's side of a link under way.
pub(crate) struct OldSide {
    channel: [u8; 32],
    listed: ListedDevice,
    transcript: [u8; 32],
    secrets: LinkSecrets,
}

/// Link messages received on this core's connection, by channel, until a link step reads them.
#[derive(Default)]
pub(crate) struct LinkInbox {
    /// The channel being followed, if any.
    pub channel: Option<[u8; 32]>,
    /// What arrived on it (`None`: the peer joined).
    pub messages: VecDeque<Option<Vec<u8>>>,
    /// Whether the other end left or the channel expired.
    pub closed: bool,
}

fn mismatch(why: &'static str) -> ClientError {
    ClientError::LinkFailed {
        code: "link_mismatch",
        reason: format!("linking stopped: {why}"),
    }
}

fn cancelled() -> ClientError {
    ClientError::LinkFailed {
        code: "link_cancelled",
        reason: "the other device stopped linking".into(),
    }
}

fn link_error(e: proto::LinkError) -> ClientError {
    ClientError::LinkFailed {
        code: e.code(),
        reason: e.to_string(),
    }
}

impl<S: ClientStore, N: Network> ClientCore<S, N> {
    pub(crate) fn on_link_data(&mut self, channel: [u8; 32], data: Option<Vec<u8>>) {
        if self.link_inbox.channel == Some(channel) {
            if self.link_inbox.messages.len() >= MAX_LINK_INBOX {
                self.link_inbox.closed = true;
                return;
            }
            self.link_inbox.messages.push_back(data);
        }
    }

    pub(crate) fn on_link_closed(&mut self, channel: [u8; 32]) {
        if self.link_inbox.channel == Some(channel) {
            self.link_inbox.closed = true;
        }
    }

    /// The next message on the followed channel, reading frames (and handling the others) until
    /// one comes, the channel closes, or `within` passes.
    async fn next_link_message(&mut self, within: Duration) -> Result<Vec<u8>, ClientError> {
        let deadline = self.host.now().0.saturating_add(millis(within));
        loop {
            while let Some(message) = self.link_inbox.messages.pop_front() {
                if let Some(bytes) = message {
                    return Ok(bytes);
                }
            }
            if self.link_inbox.closed {
                return Err(cancelled());
            }
            let Some(conn) = self.conn.as_mut() else {
                return Err(ClientError::Closed);
            };
            let left = Duration::from_millis(deadline.saturating_sub(self.host.now().0));
            if left.is_zero() {
                return Err(ClientError::Timeout {
                    waiting_for: "link_data",
                    after: within,
                });
            }
            match Link::recv(conn, left).await {
                Ok(Some(frame)) => {
                    Box::pin(self.handle_frame(frame)).await;
                    self.flush_acks().await;
                    self.commit().await?;
                }
                Ok(None) => {}
                Err(e) => {
                    self.disconnected(e.to_string());
                    return Err(e.into());
                }
            }
        }
    }

    async fn link_send(&mut self, channel: [u8; 32], data: Vec<u8>) -> Result<(), ClientError> {
        self.request_ok(|id| ClientFrame::LinkSend { id, channel, data })
            .await
            .map(|_| ())
    }

    /// Starts linking a new device from this one: `code` is what the new device shows (typed,
    /// or the text of its QR code). Joins the link channel, exchanges keys, and returns the
    /// numbers the person compares with the new device's screen. Then call
    /// [`Self::link_confirm`] if they match, or [`Self::link_cancel`].
    ///
    /// # Errors
    ///
    /// [`ClientError::LinkFailed`]: `link_bad_code`, `too_many_devices` (8 already),
    /// `link_mismatch` (the new device's answer does not fit: someone may be in the middle, or
    /// it runs a version without an X-Wing key),
    /// `link_cancelled`; [`ClientError::Server`] `link_unknown` (no such code, or it expired);
    /// the errors of a request.
    pub async fn link_start(&mut self, code: &str) -> Result<LinkCheck, ClientError> {
        let r = self.link_start_inner(code).await;
        if r.is_err() {
            self.link_abandon().await;
        }
        self.end_step(r).await
    }

    async fn link_start_inner(&mut self, code: &str) -> Result<LinkCheck, ClientError> {
        let (code, expected) = LinkCode::parse_qr_or_code(code).map_err(link_error)?;
        if self.own_list_parsed.devices.len() >= confide_protocol::device_list::MAX_DEVICES_PER_USER
        {
            return Err(ClientError::LinkFailed {
                code: "too_many_devices",
                reason: format!(
                    "you have {} devices already, the most one person can have",
                    self.own_list_parsed.devices.len()
                ),
            });
        }
        self.ensure_connected().await?;
        let channel = code.channel();
        self.link_inbox = LinkInbox {
            channel: Some(channel),
            ..LinkInbox::default()
        };
        self.old_side = None;
        self.request_ok(|id| ClientFrame::LinkJoin { id, channel })
            .await?;
        let hello = self.next_link_message(LINK_WAIT).await?;
        let LinkMessage::Hello { keys, commit } = LinkMessage::parse(&hello).map_err(link_error)?
        else {
            return Err(mismatch("the new device did not say hello"));
        };
        keys.verify()
            .map_err(|_| mismatch("the new device's keys are not signed"))?;
        // A device joins this user's list with an X-Wing key or not at all (PROTOCOL.md §4.7):
        // refused before anything is offered, so that no list naming it is published.
        if !keys.has_pq_key() {
            return Err(mismatch(
                "the new device has no post-quantum key: update the app on it, then link again",
            ));
        }
        if expected.is_some_and(|d| d != keys.device) {
            return Err(mismatch(
                "the device that answered is not the one in the QR code",
            ));
        }
        if self.own_list_parsed.lists(&keys.device) {
            return Err(mismatch("that device is linked already"));
        }
        let ephemeral = LinkEphemeral::generate(&mut HostRng(&mut *self.host));
        let offer = LinkMessage::Offer {
            user: self.profile.user,
            display_name: self.profile.display_name.clone(),
            list: self.own_list.signed.clone(),
            eph: ephemeral.public(),
        }
        .to_bytes();
        self.link_send(channel, offer.clone()).await?;
        let reveal = self.next_link_message(LINK_WAIT).await?;
        let LinkMessage::Reveal { eph, link_sig } =
            LinkMessage::parse(&reveal).map_err(link_error)?
        else {
            return Err(mismatch("the new device did not reveal its key"));
        };
        if proto::commitment(&eph) != commit {
            return Err(mismatch(
                "the new device's key is not the one it committed to",
            ));
        }
        confide_protocol::identity::verify(
            &keys.device,
            confide_protocol::device_list::LABEL_DEVICE_LINK,
            &[
                self.profile.user.as_bytes(),
                self.own_list_parsed.identity.as_bytes(),
            ],
            &link_sig,
        )
        .map_err(|_| mismatch("the new device did not sign its place in your list"))?;
        let transcript = proto::transcript(&channel, &hello, &offer, &eph);
        let secrets = ephemeral.agree(&eph, &transcript).map_err(link_error)?;
        let check = LinkCheck {
            sas: secrets.sas.to_string(),
            device: keys.device,
        };
        self.old_side = Some(OldSide {
            channel,
            listed: ListedDevice { keys, link_sig },
            transcript,
            secrets,
        });
        Ok(check)
    }

    /// The person confirmed that both devices show the same numbers: once the new device's
    /// person confirmed too, publishes the list with the new device, sends it the sealed
    /// bundle, and moves every group to a new epoch that includes it.
    ///
    /// # Errors
    ///
    /// [`ClientError::LinkFailed`] (`link_cancelled`, `link_mismatch`, `no_link`), and the
    /// errors of a request.
    pub async fn link_confirm(&mut self) -> Result<DeviceId, ClientError> {
        let r = self.link_confirm_inner().await;
        self.link_abandon().await;
        self.end_step(r).await
    }

    async fn link_confirm_inner(&mut self) -> Result<DeviceId, ClientError> {
        let Some(side) = self.old_side.as_ref() else {
            return Err(ClientError::LinkFailed {
                code: "no_link",
                reason: "no link is under way".into(),
            });
        };
        let channel = side.channel;
        let listed = side.listed.clone();
        let keys = listed.keys.clone();
        let confirmed = self.next_link_message(LINK_WAIT).await?;
        match LinkMessage::parse(&confirmed).map_err(link_error)? {
            // Only the device that took part in the key agreement can make this MAC: the
            // server cannot confirm in its person's place.
            LinkMessage::Confirmed { mac } if side_confirms(self.old_side.as_ref(), &mac) => {}
            LinkMessage::Confirmed { .. } => {
                return Err(mismatch("the new device's confirmation does not verify"));
            }
            LinkMessage::Cancel {} => return Err(cancelled()),
            _ => {
                return Err(mismatch(
                    "the new device sent something else than its confirmation",
                ));
            }
        }
        // The list with the new device, made by this one, accepted by the server first.
        let current = self.own_list_parsed.clone();
        let mut devices = current.devices.clone();
        let user = self.profile.user;
        devices.push(listed);
        let next = current.successor(
            self.own_list.signed.hash(),
            self.device(),
            self.host.now(),
            devices,
        );
        // The bundle is made before the list is published, so that a bundle that cannot be made
        // leaves nothing half done; it is sent only once the server accepted the list.
        let signed = self
            .user_identity
            .sign_list(&next, &self.identity)
            .map_err(|e| ClientError::LinkFailed {
                code: e.code(),
                reason: e.to_string(),
            })?;
        let bundle = self.make_bundle(signed.clone()).await?;
        let payload =
            zeroize::Zeroizing::new(serde_json::to_vec(&bundle).map_err(ClientError::Encode)?);
        drop(bundle);
        self.publish_signed(signed, next).await?;
        let Some(side) = self.old_side.as_ref() else {
            return Err(mismatch("the link was abandoned"));
        };
        let sealed = proto::seal_bundle(
            &self.identity,
            &keys,
            &channel,
            &side.transcript,
            &side.secrets.psk,
            &payload,
            &mut HostRng(&mut *self.host),
        )
        .map_err(link_error)?;
        let message = LinkMessage::Bundle { sealed }.to_bytes();
        self.link_send(channel, message).await?;
        self.emit(crate::Event::DevicesChanged { user });
        // Every group moves to an epoch that includes the new device.
        self.update_own_entries().await;
        // The new device says it stored everything and registered; without that the person
        // is told, and can unlink it (§3.7 step 8).
        match self.next_link_message(LINK_DONE_WAIT).await {
            Ok(bytes) if matches!(LinkMessage::parse(&bytes), Ok(LinkMessage::Done {})) => {
                Ok(keys.device)
            }
            _ => Err(ClientError::LinkFailed {
                code: "link_unfinished",
                reason: "the new device was added, but did not confirm that it received \
                         everything: if it does not show your groups, unlink it"
                    .into(),
            }),
        }
    }

    /// Stops a link under way (the numbers differ, or the person changed their mind).
    pub async fn link_cancel(&mut self) {
        if let Some(channel) = self.link_inbox.channel
            && self.conn.is_some()
        {
            let _ = self
                .link_send(channel, LinkMessage::Cancel {}.to_bytes())
                .await;
        }
        self.link_abandon().await;
        let _ = self.commit().await;
    }

    async fn link_abandon(&mut self) {
        self.old_side = None;
        self.link_inbox = LinkInbox::default();
    }

    /// The bundle for a new device: the identity key, the list that adds it, the groups the
    /// user accepted with their pinned texts and recent history, and the high-water marks
    /// (PROTOCOL.md §3.7), cut to [`MAX_LINK_BUNDLE_BYTES`] by dropping the oldest messages.
    async fn make_bundle(&mut self, list: SignedDeviceList) -> Result<LinkBundle, ClientError> {
        let me = self.device();
        let now = self.host.now().0;
        let mut groups = Vec::new();
        let accepted: Vec<GroupId> = self
            .groups
            .iter()
            .filter(|(_, ctx)| {
                ctx.meta.accepted && ctx.is_member(&me) && ctx.meta.tampered.is_none()
            })
            .map(|(g, _)| *g)
            .collect();
        for group in accepted {
            let Some(ctx) = self.groups.get(&group) else {
                continue;
            };
            let genesis = ctx.state.genesis_hash();
            let retention_ms = ctx
                .state
                .retention_seconds()
                .map(|s| s.saturating_mul(1000))
                .unwrap_or(u64::MAX);

            let pinned = self
                .pinned_texts(group)
                .await
                .into_iter()
                .map(|(kind, version, key, text)| BundlePinned {
                    kind,
                    version,
                    key,
                    text,
                })
                .collect();
            let recent: Vec<ChatMessage> = self
                .history(group, None, LINK_HISTORY_MESSAGES)
                .await
                .unwrap_or_default();
            let history = recent_history(recent, now, retention_ms);
            groups.push(BundleGroup {
                group,
                genesis,
                pinned,
                history,
            });
        }
        let known_identities = self
            .known_lists
            .iter()
            .map(|(user, k)| KnownIdentity {
                user: *user,
                identity: k.identity,
                version: k.version,
                list_hash: k.hash,
                devices: k.devices.clone(),
            })
            .collect();
        let safety_plan = self.safety_plan().await?;
        let mut hidden_topics = Vec::new();
        for (group, topics) in self.all_hidden_topics().await? {
            let updated_at = self
                .own_stamp(crate::own_devices::OwnValue::HiddenTopics(group))
                .await?
                .map(|s| s.at);
            hidden_topics.push(BundleHiddenTopics {
                group,
                topics,
                updated_at,
            });
        }
        let safety_plan_updated_at = self
            .own_stamp(crate::own_devices::OwnValue::SafetyPlan)
            .await?
            .map(|s| s.at);
        let mut bundle = LinkBundle {
            v: LINK_BUNDLE_FORMAT,
            user: self.profile.user,
            display_name: self.profile.display_name.clone(),
            identity_secret: IdentitySecret(*self.user_identity.to_secret_bytes()),
            device_list: list,
            groups,
            known_identities,
            safety_plan: (!safety_plan.is_empty()).then_some(safety_plan),
            safety_plan_updated_at,
            hidden_topics,
        };
        fit_bundle(&mut bundle)?;
        Ok(bundle)
    }
}

/// The history items of `messages` (a group's newest, at most [`LINK_HISTORY_MESSAGES`]) that a
/// link bundle carries: none older than [`LINK_HISTORY_AGE_MS`] nor than the group's retention.
pub(crate) fn recent_history(
    messages: Vec<ChatMessage>,
    now: u64,
    retention_ms: u64,
) -> Vec<HistoryItem> {
    let oldest = now.saturating_sub(LINK_HISTORY_AGE_MS.min(retention_ms));
    let skip = messages.len().saturating_sub(LINK_HISTORY_MESSAGES);
    messages
        .into_iter()
        .skip(skip)
        .filter(|m| m.sent_at.0 >= oldest)
        .map(|m| HistoryItem {
            id: m.id,
            seq: m.seq,
            sender_user: m.sender,
            sender_device: m.sender_device,
            content: MessageContent {
                sent_at: m.sent_at,
                seen_seq: None,
                body: ContentBody::Text {
                    text: m.text,
                    reply_to: m.reply_to,
                    // The whole set, moderators' additions included: the new device cannot
                    // get those `add_warning`s (sent before it existed) any other way.
                    warnings: m.warnings,
                    round: m.round,
                },
            },
        })
        .collect()
}

/// Cuts a bundle's history to [`MAX_LINK_BUNDLE_BYTES`] of JSON: the oldest message of the group
/// that has the most goes first, until it fits. Each item is measured once (not the whole bundle
/// again per message dropped), and every serialization that holds the identity secret is
/// zeroized.
pub(crate) fn fit_bundle(bundle: &mut LinkBundle) -> Result<(), ClientError> {
    let too_large = || ClientError::LinkFailed {
        code: "too_large",
        reason: "this account's groups do not fit in a link bundle".into(),
    };
    let histories: Vec<Vec<HistoryItem>> = bundle
        .groups
        .iter_mut()
        .map(|g| std::mem::take(&mut g.history))
        .collect();
    let base = serde_json::to_vec(&*bundle)
        .map(|b| zeroize::Zeroizing::new(b).len())
        .map_err(|_| too_large())?;
    let mut sizes: Vec<VecDeque<usize>> = histories
        .iter()
        .map(|h| {
            h.iter()
                // One more byte each for the comma between items.
                .map(|item| serde_json::to_vec(item).map_or(usize::MAX, |b| b.len() + 1))
                .collect()
        })
        .collect();
    let mut total = sizes
        .iter()
        .flatten()
        .fold(base, |acc, s| acc.saturating_add(*s));
    let mut dropped = vec![0usize; histories.len()];
    while total > MAX_LINK_BUNDLE_BYTES {
        let Some((i, _)) = sizes
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.is_empty())
            .max_by_key(|(_, s)| s.len())
        else {
            return Err(too_large());
        };
        let size = sizes[i].pop_front().unwrap_or(0);
        total = total.saturating_sub(size);
        dropped[i] += 1;
    }
    for ((group, history), dropped) in bundle.groups.iter_mut().zip(histories).zip(dropped) {
        group.history = history.into_iter().skip(dropped).collect();
    }
    Ok(())
}

/// The new device's side of a link: it has no profile yet, so it dials the server itself.
pub struct NewDeviceLink<L: Link> {
    conn: L,
    identity: DeviceIdentity,
    code: LinkCode,
    channel: [u8; 32],
    ephemeral: LinkEphemeral,
    hello: Vec<u8>,
    offered: Option<(UserId, String, SignedDeviceList)>,
    transcript: [u8; 32],
    secrets: Option<LinkSecrets>,
    next_id: u64,
    /// What the other device said (or that the channel closed) while this one waited for the
    /// reply to a request: the server relays before it answers, so it can come first.
    pending: VecDeque<ServerFrame>,
}

impl<L: Link> std::fmt::Debug for NewDeviceLink<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewDeviceLink")
            .field("device", &self.identity.device_id())
            .finish_non_exhaustive()
    }
}

/// What a finished link gives the new device: its keys, and the bundle to make its profile from
/// ([`crate::profile::create_linked`]).
pub struct LinkedDevice {
    /// The new device's own keys.
    pub(crate) identity: DeviceIdentity,
    /// The bundle, checked (only [`NewDeviceLink::confirm`] makes one).
    pub(crate) bundle: LinkBundle,
}

impl LinkedDevice {
    /// The user this device now belongs to.
    pub fn user(&self) -> UserId {
        self.bundle.user
    }

    /// This device's id.
    pub fn device(&self) -> DeviceId {
        self.identity.device_id()
    }

    /// This device's keys, to start the core with once the profile is made
    /// ([`crate::profile::create_linked`] first).
    pub fn into_identity(self) -> DeviceIdentity {
        self.identity
    }
}

impl std::fmt::Debug for LinkedDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkedDevice")
            .field("device", &self.identity.device_id())
            .field("user", &self.bundle.user)
            .finish_non_exhaustive()
    }
}

impl<L: Link> NewDeviceLink<L> {
    /// Makes this device's keys and a link code, dials the server through `net` and opens the
    /// link channel. Show [`Self::code`] and [`Self::qr_text`], then call
    /// [`Self::wait_for_offer`].
    ///
    /// # Errors
    ///
    /// The errors of connecting; [`ClientError::Server`] `link_busy` or `rate_limited`.
    pub async fn open<N: Network<Link = L>>(
        net: &mut N,
        host: &mut dyn Host,
    ) -> Result<Self, ClientError> {
        let mut conn = net.dial().await?;
        let challenge = Link::recv(&mut conn, crate::session::REQUEST_TIMEOUT)
            .await?
            .ok_or(ClientError::Timeout {
                waiting_for: "connect",
                after: crate::session::REQUEST_TIMEOUT,
            })?;
        let ServerFrame::Challenge { version, .. } = challenge else {
            return Err(unexpected_reply(challenge, "challenge"));
        };
        if version != PROTOCOL_VERSION {
            return Err(ClientError::IncompatibleServer { version });
        }
        let identity = DeviceIdentity::generate(&mut HostRng(host));
        let code = LinkCode::generate(&mut HostRng(host));
        let ephemeral = LinkEphemeral::generate(&mut HostRng(host));
        let channel = code.channel();
        let mut link = NewDeviceLink {
            conn,
            identity,
            code,
            channel,
            ephemeral,
            hello: Vec::new(),
            offered: None,
            transcript: [0; 32],
            secrets: None,
            next_id: 0,
            pending: VecDeque::new(),
        };
        link.request(|id| ClientFrame::LinkOpen { id, channel })
            .await?;
        Ok(link)
    }

    /// The code to show, as `XXXXX-XXXXX`.
    pub fn code(&self) -> String {
        self.code.display()
    }

    /// The text to draw as a QR code: the code and this device's id.
    pub fn qr_text(&self) -> String {
        self.code.qr_text(&self.identity.device_id())
    }

    /// This device's id.
    pub fn device(&self) -> DeviceId {
        self.identity.device_id()
    }

    async fn request(
        &mut self,
        make: impl FnOnce(RequestId) -> ClientFrame,
    ) -> Result<(), ClientError> {
        self.next_id += 1;
        let id = RequestId(self.next_id);
        let frame = make(id);
        self.conn.send(&frame).await?;
        loop {
            let frame = Link::recv(&mut self.conn, crate::session::REQUEST_TIMEOUT)
                .await?
                .ok_or(ClientError::Timeout {
                    waiting_for: "link",
                    after: crate::session::REQUEST_TIMEOUT,
                })?;
            match frame {
                ServerFrame::Ok { id: got } if got == id => return Ok(()),
                ServerFrame::Error {
                    id: Some(got),
                    code,
                    message,
                    retry_after_ms,
                } if got == id => {
                    return Err(ClientError::Server {
                        code,
                        message,
                        retry_after_ms,
                    });
                }
                // Kept for `next`, in order: the other device may answer (or cancel) before
                // the server replies to this request.
                frame @ (ServerFrame::LinkData { .. } | ServerFrame::LinkClosed { .. }) => {
                    if self.pending.len() >= MAX_LINK_INBOX {
                        return Err(mismatch("the other device sent too much"));
                    }
                    self.pending.push_back(frame);
                }
                _ => {}
            }
        }
    }

    async fn send(&mut self, message: &LinkMessage) -> Result<Vec<u8>, ClientError> {
        let bytes = message.to_bytes();
        let channel = self.channel;
        let data = bytes.clone();
        self.request(|id| ClientFrame::LinkSend { id, channel, data })
            .await?;
        Ok(bytes)
    }

    /// The next thing the other device says; `None` when it joined the channel.
    async fn next(&mut self, within: Duration) -> Result<Option<Vec<u8>>, ClientError> {
        loop {
            let frame = match self.pending.pop_front() {
                Some(frame) => frame,
                None => Link::recv(&mut self.conn, within)
                    .await?
                    .ok_or(ClientError::Timeout {
                        waiting_for: "link_data",
                        after: within,
                    })?,
            };
            match frame {
                ServerFrame::LinkData { channel, data } if channel == self.channel => {
                    return Ok(data);
                }
                ServerFrame::LinkClosed { .. } => return Err(cancelled()),
                _ => {}
            }
        }
    }

    /// Waits for the existing device (its person types or scans the code), exchanges keys, and
    /// returns the numbers to compare. Then call [`Self::confirm`] if they match, or
    /// [`Self::cancel`].
    ///
    /// # Errors
    ///
    /// [`ClientError::Timeout`] if nobody came within [`LINK_WAIT`];
    /// [`ClientError::LinkFailed`] (`link_mismatch`, `link_cancelled`); the connection's.
    pub async fn wait_for_offer(&mut self) -> Result<LinkOffer, ClientError> {
        // The existing device joins first.
        while self.next(LINK_WAIT).await?.is_some() {}
        let hello = LinkMessage::Hello {
            keys: self.identity.public_keys(),
            commit: self.ephemeral.commitment(),
        };
        self.hello = self.send(&hello).await?;
        let offer_bytes = self
            .next(LINK_WAIT)
            .await?
            .ok_or_else(|| mismatch("the other device joined twice"))?;
        let LinkMessage::Offer {
            user,
            display_name,
            list,
            eph,
        } = LinkMessage::parse(&offer_bytes).map_err(link_error)?
        else {
            return Err(mismatch("the other device did not offer an account"));
        };
        let parsed = list
            .verify()
            .map_err(|_| mismatch("the other device's list does not verify"))?;
        if parsed.user != user {
            return Err(mismatch("the other device's list is another person's"));
        }
        if !confide_protocol::group_log::valid_display_name(&display_name) {
            return Err(mismatch("the other device's name is not a valid name"));
        }
        // This device's consent to its place in that user's list (§3.6).
        let reveal = LinkMessage::Reveal {
            eph: self.ephemeral.public(),
            link_sig: ListedDevice::new(&self.identity, &user, &parsed.identity).link_sig,
        };
        self.send(&reveal).await?;
        self.transcript = proto::transcript(
            &self.channel,
            &self.hello,
            &offer_bytes,
            &self.ephemeral.public(),
        );
        let secrets = self
            .ephemeral
            .agree(&eph, &self.transcript)
            .map_err(link_error)?;
        let offer = LinkOffer {
            sas: secrets.sas.to_string(),
            display_name: display_name.clone(),
            fingerprint: confide_protocol::identity::identity_fingerprint_digits(
                &user,
                &parsed.identity,
            ),
        };
        self.secrets = Some(secrets);
        self.offered = Some((user, display_name, list));
        Ok(offer)
    }

    /// The person confirmed the numbers match: tells the other device, signs this device's
    /// place in the list, and waits for the bundle, which is opened and checked (PROTOCOL.md
    /// §3.7). Then make the profile with [`crate::profile::create_linked`] and connect.
    ///
    /// # Errors
    ///
    /// [`ClientError::LinkFailed`] (`link_mismatch`, `link_bad_bundle`, `link_cancelled`);
    /// [`ClientError::Timeout`]; the connection's.
    pub async fn confirm(mut self) -> Result<LinkedDevice, ClientError> {
        let (Some((_user, name, offered)), Some(secrets)) =
            (self.offered.clone(), self.secrets.as_ref())
        else {
            return Err(ClientError::LinkFailed {
                code: "no_link",
                reason: "confirm comes after the numbers were shown".into(),
            });
        };
        let psk = secrets.psk.clone();

        let mac = secrets.confirm_mac();
        self.send(&LinkMessage::Confirmed { mac }).await?;
        let bytes = self
            .next(LINK_WAIT)
            .await?
            .ok_or_else(|| mismatch("the other device joined twice"))?;
        let sealed = match LinkMessage::parse(&bytes).map_err(link_error)? {
            LinkMessage::Bundle { sealed } => sealed,
            LinkMessage::Cancel {} => return Err(cancelled()),
            _ => return Err(mismatch("the other device did not send the bundle")),
        };
        let payload = proto::open_bundle(
            &self.identity,
            &self.channel,
            &self.transcript,
            &psk,
            &sealed,
        )
        .map_err(link_error)?;
        let bundle: LinkBundle =
            serde_json::from_slice(&payload).map_err(|e| ClientError::LinkFailed {
                code: "link_bad_bundle",
                reason: format!("the bundle does not parse: {e}"),
            })?;
        bundle
            .check(&self.identity.public_keys(), &sealed.sender, &offered)
            .map_err(link_error)?;
        if bundle.display_name != name {
            return Err(mismatch(
                "the bundle names another person than the one offered",
            ));
        }
        let _ = self.send(&LinkMessage::Done {}).await;
        self.conn.close().await;
        Ok(LinkedDevice {
            identity: self.identity,
            bundle,
        })
    }

    /// Stops: tells the other device, and closes the connection.
    pub async fn cancel(mut self) {
        let _ = self.send(&LinkMessage::Cancel {}).await;
        self.conn.close().await;
    }
}

/// Key, in the `profile` tree, of the groups a link bundle brought that are not imported yet.
pub(crate) const LINK_IMPORT_KEY: &[u8] = b"link_import";

/// What a link bundle brought for the groups, until each is in this device's hands.
#[derive(Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct PendingImport {
    pub(crate) groups: Vec<BundleGroup>,
}

impl<S: ClientStore, N: Network> ClientCore<S, N> {
    /// Imports what a link bundle brought for each group this device now holds (its log
    /// verified from the genesis the bundle names): the group counts as accepted (the person
    /// accepted it on their other device, §11.7), its pinned texts are kept (shown only if they
    /// match the log), and its recent history is stored. Groups whose log does not list this
    /// device yet wait for a later call.
    pub(crate) async fn import_link_bundle(&mut self) -> Result<(), ClientError> {
        let Some(mut pending) = self
            .db
            .get::<PendingImport>(crate::store::T_PROFILE, LINK_IMPORT_KEY)
            .await?
        else {
            return Ok(());
        };
        let me = self.device();
        let mut waiting = Vec::new();
        for bundle_group in std::mem::take(&mut pending.groups) {
            let group = bundle_group.group;
            let ready = self.groups.get(&group).is_some_and(|ctx| {
                ctx.is_member(&me) && ctx.state.genesis_hash() == bundle_group.genesis
            });
            if !ready {
                if self
                    .groups
                    .get(&group)
                    .is_some_and(|ctx| ctx.state.genesis_hash() != bundle_group.genesis)
                {
                    tracing::warn!(%group, "a linked group's log starts elsewhere than the bundle says; not imported");
                } else {
                    waiting.push(bundle_group);
                }
                continue;
            }
            for p in bundle_group.pinned {
                self.import_pinned(group, p.kind, p.version, p.key, p.text)?;
            }
            for item in bundle_group.history {
                let sender_name = self
                    .groups
                    .get(&group)
                    .and_then(|ctx| ctx.state.member(&item.sender_user))
                    .map(|m| m.entry.display_name.clone())
                    .unwrap_or_default();
                let ContentBody::Text {
                    text,
                    reply_to,
                    warnings,
                    round,
                } = item.content.body
                else {
                    continue;
                };
                // The bundle comes from the person's own device, which honoured the tag and
                // put moderators' warnings into the item (`recent_history`): it is checked
                // against this device's log all the same.
                let round = self.honoured_round(
                    group,
                    item.sender_user,
                    item.content.sent_at,
                    &text,
                    round,
                );
                let mut message = ChatMessage {
                    group,
                    seq: item.seq,
                    number: 0,
                    id: item.id,
                    sender: item.sender_user,
                    sender_device: item.sender_device,
                    sender_name,
                    sent_at: item.content.sent_at,
                    received_at: item.content.sent_at,
                    text,
                    reply_to,
                    warnings: crate::warnings::union(&warnings, &[]),
                    hidden: false,
                    round,
                };
                if self.store_text(&mut message).await.is_ok() {
                    // The envelope, if the server serves it again, is not processed a second
                    // time (this device holds no key for that epoch anyway).
                    let _ = self.db.put(
                        crate::store::T_SEEN,
                        &crate::store::key2(group.as_bytes(), item.id.as_bytes()),
                        &item.seq,
                    );
                }
            }
            let accepted_now = self
                .groups
                .get(&group)
                .is_some_and(|ctx| !ctx.meta.accepted);
            if accepted_now {
                self.accept_membership(group).await?;
            }
        }
        if waiting.is_empty() {
            self.db.remove(crate::store::T_PROFILE, LINK_IMPORT_KEY);
        } else {
            pending.groups = waiting;
            self.db
                .put(crate::store::T_PROFILE, LINK_IMPORT_KEY, &pending)?;
        }
        self.commit().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confide_protocol::device_list::{DeviceList, UserIdentity};
    use confide_protocol::{MessageId, Seq, Timestamp};

    const DAY: u64 = 24 * 60 * 60 * 1000;
    const NOW: u64 = 100 * DAY;

    fn message(n: u64, sent_at: u64, len: usize) -> ChatMessage {
        ChatMessage {
            group: GroupId([1; 16]),
            seq: Seq(n),
            number: n,
            id: MessageId([(n % 251) as u8; 16]),
            sender: UserId([2; 16]),
            sender_device: DeviceId([3; 32]),
            sender_name: "Noor".into(),
            sent_at: Timestamp(sent_at),
            received_at: Timestamp(sent_at),
            text: "x".repeat(len),
            reply_to: None,
            warnings: Vec::new(),
            hidden: false,
            round: None,
        }
    }

    #[test]
    fn history_keeps_the_newest_200_of_the_last_30_days_and_the_retention() {
        let old = (0..10).map(|n| message(n, NOW - 31 * DAY, 10));
        let recent = (10..260).map(|n| message(n, NOW - DAY, 10));
        let items = recent_history(old.chain(recent).collect(), NOW, u64::MAX);
        assert_eq!(items.len(), LINK_HISTORY_MESSAGES);
        assert_eq!(
            items.first().map(|i| i.seq),
            Some(Seq(60)),
            "the newest 200"
        );
        // A group that keeps messages 12 hours gives only what is younger.
        let mixed = vec![message(1, NOW - DAY, 10), message(2, NOW - DAY / 4, 10)];
        let items = recent_history(mixed, NOW, DAY / 2);
        assert_eq!(items.iter().map(|i| i.seq).collect::<Vec<_>>(), [Seq(2)]);
    }

    #[test]
    fn a_bundle_over_512_kib_loses_its_oldest_messages_until_it_fits() {
        let device = DeviceIdentity::from_secret_bytes(&[1; 32], &[2; 32], Some(&[3; 32]));
        let identity = UserIdentity::from_secret_bytes(&[5; 32]);
        let user = UserId([2; 16]);
        let list = DeviceList::first(user, &identity, &device, Timestamp(0));
        let group = |n: u8, count: u64| BundleGroup {
            group: GroupId([n; 16]),
            genesis: confide_protocol::OpHash([n; 32]),
            pinned: vec![],
            history: recent_history(
                (0..count).map(|i| message(i, NOW - DAY, 4000)).collect(),
                NOW,
                u64::MAX,
            ),
        };
        let mut bundle = LinkBundle {
            v: LINK_BUNDLE_FORMAT,
            user,
            display_name: "Noor".into(),
            identity_secret: IdentitySecret([5; 32]),
            device_list: identity.sign_list(&list, &device).unwrap(),
            // 300 messages of 4 KB: about 1.2 MB, more than twice the limit.
            groups: vec![group(1, 200), group(2, 100)],
            known_identities: vec![],
            safety_plan: None,
            safety_plan_updated_at: None,
            hidden_topics: vec![],
        };
        fit_bundle(&mut bundle).unwrap();
        let size = serde_json::to_vec(&bundle).unwrap().len();
        assert!(size <= MAX_LINK_BUNDLE_BYTES, "{size}");
        assert!(
            size > MAX_LINK_BUNDLE_BYTES - 8 * 1024,
            "it keeps as much as fits: {size}"
        );
        // The oldest went first, from the group with the most.
        let first = bundle.groups[0].history.first().map(|i| i.seq);
        assert!(first > Some(Seq(0)));
        assert_eq!(
            bundle.groups[0].history.last().map(|i| i.seq),
            Some(Seq(199))
        );
        assert!(
            bundle.groups[0]
                .history
                .len()
                .abs_diff(bundle.groups[1].history.len())
                <= 1
        );
    }
}
