//! The JSON frames between client and server: one websocket text message carries one frame.
//!
//! Every frame is a JSON object whose `"type"` names it (`snake_case`); byte strings are base64
//! (see [`crate::encoding`]). [`ClientFrame`] lists what a client may send, [`ServerFrame`] what
//! a server may send. PROTOCOL.md shows an example of each.
//!
//! # A connection
//!
//! 1. The server opens with [`ServerFrame::Challenge`]: its protocol version, its name, a fresh
//!    random nonce and its clock.
//! 2. The client answers with [`ClientFrame::Register`] (a new device) or
//!    [`ClientFrame::Authenticate`] (a registered one), signed with the device identity key over
//!    the server name and the nonce ([`sign_auth`], [`verify_auth`]). Until the server has answered
//!    [`ServerFrame::Authenticated`], only those two and [`ClientFrame::Ping`] are accepted;
//!    anything else gets [`ErrorCode::NotAuthenticated`].
//! 3. Then requests and live deliveries interleave. Every client frame is a request carrying a
//!    client-chosen [`RequestId`]; the server's reply (a success frame or [`ServerFrame::Error`])
//!    echoes it, so a client may pipeline requests and match replies by id (replies need not
//!    come in request order; ids should be unique per connection). Live deliveries
//!    ([`ServerFrame::Message`], [`ServerFrame::Op`], [`ServerFrame::Inbox`],
//!    [`ServerFrame::GoingAway`]) carry no id.
//!
//! # Strictness
//!
//! A server recognises a client frame completely before acting on it: [`ClientFrame::from_json`]
//! rejects oversized input before parsing, rejects unknown fields (a field the server ignored
//! could be one the client believes is enforced) at the top level and inside the envelopes,
//! sealed payloads and device keys a frame carries (the [`SignedOp`] wrapper is the one nested
//! object that ignores them), and checks the per-frame limits in [`ClientFrame::validate`]. Each
//! failure is a [`FrameError`] that maps onto a stable [`ErrorCode`] and, when the frame's `id`
//! could be read, echoes it.
//!
//! A client is tolerant of what a server adds: [`ServerFrame`] and the server's own objects in it
//! ([`InboxItem`], [`StoredMessage`], [`GroupSummary`], [`DeviceInfo`]) ignore unknown fields, and
//! an unknown error code parses as [`ErrorCode::Unrecognized`], so a server may add an optional
//! field or a code within protocol version 1 without breaking deployed clients. That costs no
//! security: the server is not trusted with anything a client does not verify by signature. The
//! envelopes, sealed payloads and device keys a server frame relays were written by clients and
//! stay strict. A client ignores a frame of unknown type that carries no `id`.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

use crate::device_list::SignedDeviceList;
use crate::encoding::b64_array;
use crate::envelope::Envelope;
use crate::error::CryptoError;
use crate::group_log::SignedOp;
use crate::identity::{self, DeviceIdentity, DeviceKeys, Signature};
use crate::ids::{DeviceId, GroupId, InviteId, MessageId, RequestId, Seq, Timestamp, UserId};
use crate::seal::SealedPayload;

/// The frame protocol version: sent by the server in [`ServerFrame::Challenge`] and by the
/// client in [`ClientFrame::Register`] and [`ClientFrame::Authenticate`]. A change to any frame
/// that an older peer could misread bumps it.
pub const PROTOCOL_VERSION: u16 = 2;

/// Label of the device's signature over a server's challenge (see [`auth_message`]).
pub const LABEL_AUTH: &str = "confide/v1/auth";

/// Default largest client frame, in bytes of JSON, a server accepts: room for the largest
/// envelope (64 KiB of ciphertext, about 88 KB as base64) or a [`ClientFrame::SendSealed`] with a
/// few reports, without letting one connection buffer much.
pub const DEFAULT_MAX_CLIENT_FRAME_BYTES: usize = 1024 * 1024;

/// Default largest server frame, in bytes of JSON, a client accepts. A server should keep its
/// frames below this: the reference server bounds the ciphertext of a [`ServerFrame::SyncPage`]'s
/// messages and of an [`ServerFrame::Inbox`] frame (its `page_bytes`, 4 MiB by default), but not
/// the size of a sync page's ops, so a client syncing a log with large ops asks for small pages.
pub const DEFAULT_MAX_SERVER_FRAME_BYTES: usize = 8 * 1024 * 1024;

/// Most sealed payloads in one [`ClientFrame::SendSealed`]: a sender-key distribution to every
/// device of a large group fits; more is split across frames.
pub const MAX_SEALED_PER_FRAME: usize = 256;

/// Splits sealed payloads into the item lists of as few [`ClientFrame::SendSealed`] frames as
/// needed for each to hold at most [`MAX_SEALED_PER_FRAME`] items and stay within `max_bytes` of
/// JSON (for a server with the default limit, [`DEFAULT_MAX_CLIENT_FRAME_BYTES`]): a report of a
/// large message to sixteen facilitators is over a megabyte. An item too large for any frame
/// goes alone (the server will refuse it with `frame_too_large`). Order is kept.
pub fn sealed_frames(items: Vec<SealedPayload>, max_bytes: usize) -> Vec<Vec<SealedPayload>> {
    // The frame around the items: `{"type":"send_sealed","id":…,"items":[…]}`.
    const ENVELOPE_BYTES: usize = 64;
    let mut frames: Vec<Vec<SealedPayload>> = Vec::new();
    let mut current: Vec<SealedPayload> = Vec::new();
    let mut bytes = ENVELOPE_BYTES;
    for item in items {
        // The item's JSON plus a separating comma; serialization of a payload cannot fail (no
        // maps with non-string keys), and a failure would only make the estimate generous.
        let len = serde_json::to_vec(&item).map_or(max_bytes, |json| json.len()) + 1;
        if !current.is_empty() && (current.len() >= MAX_SEALED_PER_FRAME || bytes + len > max_bytes)
        {
            frames.push(std::mem::take(&mut current));
            bytes = ENVELOPE_BYTES;
        }
        bytes += len;
        current.push(item);
    }
    if !current.is_empty() {
        frames.push(current);
    }
    frames
}

/// Most inbox ids in one [`ClientFrame::AckInbox`].
pub const MAX_INBOX_ACKS_PER_FRAME: usize = 1024;

/// Most lists in one [`ServerFrame::DeviceListChain`] (16 lists of at most 20 KiB, about 440 KiB
/// as base64).
pub const MAX_DEVICE_LISTS_PER_REPLY: usize = 16;

/// Most devices in one [`ClientFrame::LookupDevices`], and most users in one
/// [`ClientFrame::LookupUsers`]: 64, so that a reply about 64 people with 8 devices each, their
/// X-Wing keys and device lists (about 40 KB a person) stays far under the 8 MiB a client
/// accepts (256 before protocol version 2).
pub const MAX_LOOKUP_PER_FRAME: usize = 64;

/// Largest `limit` a server honours in [`ClientFrame::Sync`]; a larger one is clamped to it (or to
/// the server's own lower page limit), not refused. A server may return fewer messages still, to
/// stay within its byte budget for a page.
pub const MAX_SYNC_LIMIT: u32 = 500;

/// Longest display name in [`ClientFrame::Register`], in bytes of UTF-8. The server also applies
/// the group log's member-entry rules to it (not blank, no control or bidirectional characters).
pub const MAX_DISPLAY_NAME_BYTES: usize = 64;

/// Longest registration token, in bytes of UTF-8.
pub const MAX_REGISTRATION_TOKEN_BYTES: usize = 256;

/// Longest server name a client accepts in a challenge (a DNS name is at most 253 bytes).
pub const MAX_SERVER_NAME_BYTES: usize = 255;

/// Longest parser detail, in characters, that a [`FrameError`] repeats. Parser messages can quote
/// the offending value; an error frame should not echo a megabyte back.
pub const MAX_ERROR_DETAIL_CHARS: usize = 200;

/// Longest unknown frame type, in characters, that a [`FrameError::UnknownType`] repeats.
const MAX_TYPE_NAME_CHARS: usize = 64;

// ---------------------------------------------------------------------------------------------
// Authentication
// ---------------------------------------------------------------------------------------------

/// The bytes a device signs to authenticate, after the label [`LABEL_AUTH`]:
/// `len(server_name) as u16 big-endian || server_name || nonce (32) || device (32)`.
///
/// Binding the server name stops a malicious server from relaying another server's challenge
/// and logging in there with the answer; binding the device stops an answer being replayed for
/// another device. A name longer than `u16::MAX` bytes gets the length `u16::MAX`; the message
/// stays unambiguous because the two parts after the name have fixed lengths, and clients refuse
/// names longer than [`MAX_SERVER_NAME_BYTES`] anyway.
pub fn auth_message(server_name: &str, nonce: &[u8; 32], device: &DeviceId) -> Vec<u8> {
    let name = server_name.as_bytes();
    let len = u16::try_from(name.len()).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(2 + name.len() + 32 + DeviceId::LEN);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(name);
    out.extend_from_slice(nonce);
    out.extend_from_slice(device.as_bytes());
    out
}

/// Signs a server's challenge for [`ClientFrame::Register`] or [`ClientFrame::Authenticate`].
///
/// `server_name` must be the name the client dialled (the TLS server name), never the one the
/// challenge claims: signing whatever name a server offers would defeat the binding.
pub fn sign_auth(identity: &DeviceIdentity, server_name: &str, nonce: &[u8; 32]) -> Signature {
    let message = auth_message(server_name, nonce, &identity.device_id());
    identity.sign(LABEL_AUTH, &[&message])
}

/// Checks a device's answer to a challenge. The server passes its own configured name and the
/// nonce it sent on this connection.
pub fn verify_auth(
    device: &DeviceId,
    server_name: &str,
    nonce: &[u8; 32],
    signature: &Signature,
) -> Result<(), CryptoError> {
    let message = auth_message(server_name, nonce, device);
    identity::verify(device, LABEL_AUTH, &[&message], signature)
}

// ---------------------------------------------------------------------------------------------
// Client → server
// ---------------------------------------------------------------------------------------------

/// A frame from client to server. Every one is a request with an `id` the reply echoes.
///
/// `Debug` shows a registration token in full: log [`Self::type_name`] and [`Self::request_id`]
/// rather than a whole frame.
// `Register` is about 500 bytes inline since device keys carry the X-Wing key's signature; a
// frame lives only while it is sent or handled, one at a time, so boxing its fields (and every
// place that builds one) would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    /// Registers this device, and with it a new user, and authenticates the connection.
    ///
    /// The server checks the version, the registration token if it requires one
    /// (`registration_closed`), that `keys` verify and that `signature` is the answer of
    /// `keys.device` to this connection's challenge (`auth_failed`), that `display_name` follows
    /// the group log's member-entry rules (`bad_frame`), and that neither the device nor the user
    /// exists (`already_registered`). Registering again with the same user and keys succeeds
    /// (a retry after a lost reply) and answers with the stored display name. Reply:
    /// [`ServerFrame::Authenticated`], or `too_many_connections` and a close when the device has
    /// as many connections as the server allows.
    Register {
        /// Request id.
        id: RequestId,
        /// [`PROTOCOL_VERSION`] as the client speaks it (`unsupported_version` otherwise).
        version: u16,
        /// The new user's id, chosen at random by the client.
        user: UserId,
        /// The name other members see, 1 to [`MAX_DISPLAY_NAME_BYTES`] bytes, following the
        /// member-entry rules ([`crate::group_log::MemberEntry`]: not blank, no control,
        /// bidirectional or line-separator characters). Visible to the server.
        display_name: String,
        /// The device's public keys; `keys.device` is the device id.
        keys: DeviceKeys,
        /// A token from the server's operator, for servers that do not register just anyone.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        registration_token: Option<String>,
        /// The user's current device list, listing this device with exactly `keys`
        /// (PROTOCOL.md §3.6): version 1 for a new user; for a device linked to an existing
        /// user, the list the server holds (no registration token is then needed).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        device_list: Option<SignedDeviceList>,
        /// [`sign_auth`] over the challenge by the device's identity key.
        signature: Signature,
    },
    /// Authenticates the connection as a registered device.
    ///
    /// Errors: `unsupported_version`, `unknown_device` (register first), `auth_failed`,
    /// `already_authenticated`, `too_many_connections` (then the connection is closed). Reply:
    /// [`ServerFrame::Authenticated`].
    Authenticate {
        /// Request id.
        id: RequestId,
        /// [`PROTOCOL_VERSION`] as the client speaks it.
        version: u16,
        /// The device.
        device: DeviceId,
        /// [`sign_auth`] over the challenge by the device's identity key.
        signature: Signature,
    },
    /// Creates a group from its signed genesis op, which names the group id and makes the
    /// creator (whose device must be the author and the authenticated device) its facilitator.
    /// Every device of the creator entry must be registered to the creator's user with exactly
    /// those keys.
    ///
    /// Idempotent: sending the same genesis op again answers [`ServerFrame::GroupCreated`] once
    /// the group exists. Errors: `invalid_op`, `group_exists` (another genesis op holds the id,
    /// or a creation of it is in progress), `storage`. Reply: [`ServerFrame::GroupCreated`].
    CreateGroup {
        /// Request id.
        id: RequestId,
        /// The genesis op.
        genesis: SignedOp,
    },
    /// Appends a signed op to a group's log.
    ///
    /// The op names the hash of the op before it; if that is no longer the head the server
    /// answers `op_conflict`, and the client syncs, re-checks and re-signs. A server answers a
    /// retried op that is already in the log with its seq, so a client may retry after a lost
    /// reply. Errors: `no_such_group`, `not_member` (the author is not a current member's
    /// device), `invalid_op`, `op_conflict`, `storage`. Reply: [`ServerFrame::OpAppended`], once
    /// durable; other devices get [`ServerFrame::Op`].
    AppendOp {
        /// Request id.
        id: RequestId,
        /// The group whose log the op extends.
        group: GroupId,
        /// The op.
        op: SignedOp,
    },
    /// Posts an encrypted message to the group named in its envelope.
    ///
    /// The server checks what it can without reading: the envelope's sender is the
    /// authenticated device and its signature verifies, membership, the group log's moderation
    /// (mute, lock, open hours, agreement, slow mode), and that the envelope's epoch and epoch
    /// hash are the group's current ones (or the previous ones, for a grace period after a join
    /// or add; never after a removal). Re-posting an envelope already stored answers with the seq
    /// it got the first time. Reply: [`ServerFrame::Posted`], only once durable; other devices
    /// get [`ServerFrame::Message`].
    Post {
        /// Request id.
        id: RequestId,
        /// The encrypted, signed message.
        envelope: Envelope,
    },
    /// Puts sealed payloads (sender keys, join requests, reports) into their recipients'
    /// inboxes. All or nothing: [`ServerFrame::Ok`] once every item is durable.
    ///
    /// Each item's `sender` must be the authenticated device (`bad_frame`). Sender and recipient
    /// must be members of the item's group, except that anyone may send a join request to a
    /// facilitator device while the group has an open invite that requires approval. At most
    /// [`MAX_SEALED_PER_FRAME`] items (`frame_too_large`). Errors also: `message_too_large`,
    /// `no_such_group`, `not_member`, `unknown_device`, `inbox_full` (counting every item of
    /// the frame), `storage`.
    SendSealed {
        /// Request id.
        id: RequestId,
        /// The payloads, each naming its recipient.
        items: Vec<SealedPayload>,
    },
    /// Deletes inbox items the client has processed and stored. Idempotent: unknown or already
    /// deleted ids are ignored. At most [`MAX_INBOX_ACKS_PER_FRAME`] ids. Reply:
    /// [`ServerFrame::Ok`].
    AckInbox {
        /// Request id.
        id: RequestId,
        /// [`InboxItem::inbox_id`]s.
        inbox_ids: Vec<u64>,
    },
    /// Asks for a group's ops and messages after the given positions, one page at a time.
    ///
    /// Ops are numbered from 0 (the genesis op), messages from 1. A member gets the ops and the
    /// messages of the epochs since it joined; a non-member that names a valid invite gets the
    /// ops only. Reply: [`ServerFrame::SyncPage`]; [`Self::sync_from`] builds the next request
    /// from a page. Errors: `no_such_group`, `not_member` (neither a member nor holding a valid
    /// invite).
    Sync {
        /// Request id.
        id: RequestId,
        /// The group.
        group: GroupId,
        /// The last op the client holds; absent to start from the genesis op.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after_op_seq: Option<u64>,
        /// The last message the client holds; `0` to start from the oldest the server keeps.
        after_seq: Seq,
        /// Most ops, and most messages, to return: at least 1; above the server's page limit
        /// (at most [`MAX_SYNC_LIMIT`]) it is clamped.
        limit: u32,
        /// For a device that is not a member yet: proof that it holds an invite in the group's
        /// log that is still valid (not revoked, not used up, not expired by the server's
        /// clock). The server then returns the group's ops (never its messages), so the device
        /// can verify the group before joining or asking to join.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        invite: Option<InviteProof>,
    },
    /// Lists the groups the device is a member of. Reply: [`ServerFrame::Groups`].
    ListGroups {
        /// Request id.
        id: RequestId,
    },
    /// Looks up devices' public keys and owners. Unknown devices are left out of the reply, not
    /// an error. At most [`MAX_LOOKUP_PER_FRAME`]. Reply: [`ServerFrame::Devices`].
    LookupDevices {
        /// Request id.
        id: RequestId,
        /// The devices.
        devices: Vec<DeviceId>,
    },
    /// Looks up every device of the given users. Unknown users are left out of the reply. At
    /// most [`MAX_LOOKUP_PER_FRAME`]. Reply: [`ServerFrame::Devices`].
    LookupUsers {
        /// Request id.
        id: RequestId,
        /// The users.
        users: Vec<UserId>,
    },
    /// Replaces the user's device list with its successor (PROTOCOL.md §3.6, §10.1): signed by
    /// the user's identity key, version + 1, naming the current list's hash; the publishing
    /// device must be in the current list. Devices it drops are unregistered and their
    /// connections closed. Errors: `device_list_refused`, `storage`. Reply: [`ServerFrame::Ok`],
    /// once durable; the user's other devices get [`ServerFrame::DeviceList`].
    PublishDevices {
        /// Request id.
        id: RequestId,
        /// The new list.
        device_list: SignedDeviceList,
    },
    /// A user's device lists after `after_version`, oldest first, at most
    /// [`MAX_DEVICE_LISTS_PER_REPLY`] (ask again from the last one for more): so that a device
    /// that missed versions can check each one succeeds the one before (PROTOCOL.md §3.6).
    /// Reply: [`ServerFrame::DeviceListChain`] (empty for an unknown user).
    DeviceListChain {
        /// Request id.
        id: RequestId,
        /// Whose lists.
        user: UserId,
        /// The version the client holds; lists after it are sent.
        after_version: u64,
    },
    /// Opens a link channel (PROTOCOL.md §3.7); allowed before authentication, by the device
    /// being linked. The connection enters link mode. Errors: `link_busy`, `rate_limited`.
    /// Reply: [`ServerFrame::Ok`].
    LinkOpen {
        /// Request id.
        id: RequestId,
        /// `SHA-256("confide/v1/link-channel" || 0x00 || code)`.
        #[serde(with = "b64_array")]
        channel: [u8; 32],
    },
    /// Joins a link channel opened by the device being linked; authenticated devices only.
    /// Errors: `link_unknown`. Reply: [`ServerFrame::Ok`]; the opener gets
    /// [`ServerFrame::LinkData`] without data.
    LinkJoin {
        /// Request id.
        id: RequestId,
        /// The channel.
        #[serde(with = "b64_array")]
        channel: [u8; 32],
    },
    /// Relays opaque bytes to the other party of a link channel. Errors: `link_unknown`,
    /// `frame_too_large` (over 4096 bytes from the opener). Reply: [`ServerFrame::Ok`].
    LinkSend {
        /// Request id.
        id: RequestId,
        /// The channel.
        #[serde(with = "b64_array")]
        channel: [u8; 32],
        /// The link message's bytes.
        #[serde(with = "crate::encoding::b64")]
        data: Vec<u8>,
    },
    /// Keep-alive and round-trip probe; allowed before authentication. Reply:
    /// [`ServerFrame::Pong`].
    Ping {
        /// Request id.
        id: RequestId,
    },
}

impl ClientFrame {
    /// Every client frame `"type"`, in declaration order.
    pub const TYPES: [&'static str; 17] = [
        "register",
        "authenticate",
        "create_group",
        "append_op",
        "post",
        "send_sealed",
        "ack_inbox",
        "sync",
        "list_groups",
        "lookup_devices",
        "lookup_users",
        "publish_devices",
        "device_list_chain",
        "link_open",
        "link_join",
        "link_send",
        "ping",
    ];

    /// The frame's `"type"`, for logs and metrics.
    pub fn type_name(&self) -> &'static str {
        match self {
            ClientFrame::Register { .. } => "register",
            ClientFrame::Authenticate { .. } => "authenticate",
            ClientFrame::CreateGroup { .. } => "create_group",
            ClientFrame::AppendOp { .. } => "append_op",
            ClientFrame::Post { .. } => "post",
            ClientFrame::SendSealed { .. } => "send_sealed",
            ClientFrame::AckInbox { .. } => "ack_inbox",
            ClientFrame::Sync { .. } => "sync",
            ClientFrame::ListGroups { .. } => "list_groups",
            ClientFrame::LookupDevices { .. } => "lookup_devices",
            ClientFrame::LookupUsers { .. } => "lookup_users",
            ClientFrame::PublishDevices { .. } => "publish_devices",
            ClientFrame::DeviceListChain { .. } => "device_list_chain",
            ClientFrame::LinkOpen { .. } => "link_open",
            ClientFrame::LinkJoin { .. } => "link_join",
            ClientFrame::LinkSend { .. } => "link_send",
            ClientFrame::Ping { .. } => "ping",
        }
    }

    /// The request id the reply will echo.
    pub fn request_id(&self) -> RequestId {
        match self {
            ClientFrame::Register { id, .. }
            | ClientFrame::Authenticate { id, .. }
            | ClientFrame::CreateGroup { id, .. }
            | ClientFrame::AppendOp { id, .. }
            | ClientFrame::Post { id, .. }
            | ClientFrame::SendSealed { id, .. }
            | ClientFrame::AckInbox { id, .. }
            | ClientFrame::Sync { id, .. }
            | ClientFrame::ListGroups { id }
            | ClientFrame::LookupDevices { id, .. }
            | ClientFrame::LookupUsers { id, .. }
            | ClientFrame::PublishDevices { id, .. }
            | ClientFrame::DeviceListChain { id, .. }
            | ClientFrame::LinkOpen { id, .. }
            | ClientFrame::LinkJoin { id, .. }
            | ClientFrame::LinkSend { id, .. }
            | ClientFrame::Ping { id } => *id,
        }
    }

    /// The [`ClientFrame::Sync`] that continues after a [`ServerFrame::SyncPage`], from that
    /// page's `next_op_seq` and `next_seq` (or from `0` and `Seq(1)` for a first sync).
    pub fn sync_from(
        id: RequestId,
        group: GroupId,
        next_op_seq: u64,
        next_seq: Seq,
        limit: u32,
    ) -> ClientFrame {
        ClientFrame::Sync {
            id,
            group,
            after_op_seq: next_op_seq.checked_sub(1),
            after_seq: Seq(next_seq.0.saturating_sub(1)),
            limit,
            invite: None,
        }
    }

    /// Checks the per-frame limits that typing alone does not: list lengths, the display name
    /// and token lengths, and a non-zero sync limit. [`Self::from_json`] calls it; a client may
    /// call it before sending.
    pub fn validate(&self) -> Result<(), FrameError> {
        let id = self.request_id();
        let too_many = |field: &'static str, len: usize, max: usize| {
            if len > max {
                Err(FrameError::TooManyItems {
                    id,
                    field,
                    len,
                    max,
                })
            } else {
                Ok(())
            }
        };
        match self {
            ClientFrame::Register {
                display_name,
                registration_token,
                ..
            } => {
                if display_name.is_empty() || display_name.len() > MAX_DISPLAY_NAME_BYTES {
                    return Err(FrameError::Invalid {
                        id,
                        field: "display_name",
                        reason: format!(
                            "must be 1 to {MAX_DISPLAY_NAME_BYTES} bytes, is {}",
                            display_name.len()
                        ),
                    });
                }
                match registration_token {
                    Some(token) if token.len() > MAX_REGISTRATION_TOKEN_BYTES => {
                        Err(FrameError::Invalid {
                            id,
                            field: "registration_token",
                            reason: format!(
                                "must be at most {MAX_REGISTRATION_TOKEN_BYTES} bytes, is {}",
                                token.len()
                            ),
                        })
                    }
                    _ => Ok(()),
                }
            }
            ClientFrame::SendSealed { items, .. } => {
                too_many("items", items.len(), MAX_SEALED_PER_FRAME)
            }
            ClientFrame::AckInbox { inbox_ids, .. } => {
                too_many("inbox_ids", inbox_ids.len(), MAX_INBOX_ACKS_PER_FRAME)
            }
            ClientFrame::LookupDevices { devices, .. } => {
                too_many("devices", devices.len(), MAX_LOOKUP_PER_FRAME)
            }
            ClientFrame::LookupUsers { users, .. } => {
                too_many("users", users.len(), MAX_LOOKUP_PER_FRAME)
            }
            ClientFrame::Sync { limit: 0, .. } => Err(FrameError::Invalid {
                id,
                field: "limit",
                reason: "must be at least 1".into(),
            }),
            ClientFrame::Authenticate { .. }
            | ClientFrame::CreateGroup { .. }
            | ClientFrame::AppendOp { .. }
            | ClientFrame::Post { .. }
            | ClientFrame::Sync { .. }
            | ClientFrame::ListGroups { .. }
            | ClientFrame::PublishDevices { .. }
            | ClientFrame::DeviceListChain { .. }
            | ClientFrame::LinkOpen { .. }
            | ClientFrame::LinkJoin { .. }
            | ClientFrame::LinkSend { .. }
            | ClientFrame::Ping { .. } => Ok(()),
        }
    }

    /// Parses and validates a client frame of at most `max_bytes` bytes (the server's limit,
    /// by default [`DEFAULT_MAX_CLIENT_FRAME_BYTES`]). The length is checked before any parsing.
    pub fn from_json(text: &str, max_bytes: usize) -> Result<Self, FrameError> {
        let frame: Self = parse(text, max_bytes, &Self::TYPES)?;
        frame.validate()?;
        Ok(frame)
    }

    /// The frame as JSON text.
    pub fn to_json(&self) -> Result<String, FrameError> {
        serde_json::to_string(self).map_err(|e| FrameError::Encode(e.to_string()))
    }
}

// ---------------------------------------------------------------------------------------------
// Server → client
// ---------------------------------------------------------------------------------------------

/// A frame from server to client: a reply echoing a request's `id`, or a live delivery without
/// one. Unknown fields are ignored (see the module docs).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// The server's first frame on every connection. The client checks `version` and answers
    /// with [`ClientFrame::Register`] or [`ClientFrame::Authenticate`], signing the name it
    /// dialled, not `server_name`.
    Challenge {
        /// The server's [`PROTOCOL_VERSION`].
        version: u16,
        /// The name the server signs challenges under; a client may show a mismatch with the
        /// name it dialled, which makes authentication fail.
        server_name: String,
        /// 32 fresh random bytes, used once.
        #[serde(with = "b64_array")]
        nonce: [u8; 32],
        /// The server's clock, so the client can notice clock skew.
        server_time: Timestamp,
    },
    /// Reply to [`ClientFrame::Register`] or [`ClientFrame::Authenticate`]: the connection now
    /// acts for this device. Pending inbox items follow as [`ServerFrame::Inbox`]. Not sent when
    /// the device already has as many connections as the server allows (the reply is then a
    /// `too_many_connections` error, and the connection closes).
    Authenticated {
        /// Request id.
        id: RequestId,
        /// The device's user.
        user: UserId,
        /// The device.
        device: DeviceId,
        /// The user's display name as the server has it.
        display_name: String,
    },
    /// Generic success, for requests with nothing else to say.
    Ok {
        /// Request id.
        id: RequestId,
    },
    /// A request failed, or (without `id`) the connection has a problem. The connection stays
    /// usable unless a close follows.
    Error {
        /// The failed request's id; `null` when the frame could not be parsed far enough to read
        /// one, or the error concerns the whole connection.
        #[serde(default)]
        id: Option<RequestId>,
        /// What went wrong, stable and machine-readable.
        code: ErrorCode,
        /// A human-readable explanation in English, for logs and developers; not for parsing.
        message: String,
        /// When to try again, in milliseconds, for `rate_limited`, `slow_mode`, `muted`,
        /// `too_many_connections` and `inbox_full`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
    /// Reply to [`ClientFrame::CreateGroup`], once the genesis op is durable.
    GroupCreated {
        /// Request id.
        id: RequestId,
        /// The new group.
        group: GroupId,
    },
    /// Reply to [`ClientFrame::AppendOp`], once the op is durable.
    OpAppended {
        /// Request id.
        id: RequestId,
        /// The group.
        group: GroupId,
        /// The op's seq in the group log.
        seq: u64,
    },
    /// Reply to [`ClientFrame::Post`]: the message is durable and has this seq.
    Posted {
        /// Request id.
        id: RequestId,
        /// The group.
        group: GroupId,
        /// The message's seq in the group.
        seq: Seq,
        /// The message's id, as computed from the envelope.
        message: MessageId,
    },
    /// Live delivery of a message another device posted.
    Message {
        /// The group; the same as `envelope.group`.
        group: GroupId,
        /// The message's seq in the group; a client that sees a gap syncs.
        seq: Seq,
        /// When the server stored it (the server's claim).
        received_at: Timestamp,
        /// The message.
        envelope: Envelope,
    },
    /// Live delivery of an op appended to a group's log.
    Op {
        /// The group.
        group: GroupId,
        /// The op.
        op: SignedOp,
        /// Its seq in the group log; a client that sees a gap syncs.
        seq: u64,
    },
    /// Live delivery of sealed payloads for this device: pending ones after authentication (in
    /// frames bounded in items and in bytes of ciphertext), then new ones as they arrive. Each is
    /// delivered again on later connections until acknowledged with [`ClientFrame::AckInbox`].
    Inbox {
        /// The payloads, oldest first.
        items: Vec<InboxItem>,
    },
    /// Reply to [`ClientFrame::Sync`].
    ///
    /// `ops` are the consecutive ops after `after_op_seq` in log order (each carries its seq
    /// inside its signed bytes). `messages` are the stored messages after `after_seq` in seq
    /// order, without those of epochs before the requesting member joined (and none at all for
    /// a non-member syncing with an invite); seqs missing between them are messages left out or
    /// no longer stored. The server fills a page with ops before messages, so the log a client
    /// holds reaches the epochs of the messages it reads.
    SyncPage {
        /// Request id.
        id: RequestId,
        /// The group.
        group: GroupId,
        /// Ops, in log order.
        ops: Vec<SignedOp>,
        /// Messages, in seq order.
        messages: Vec<StoredMessage>,
        /// The first op seq not yet delivered: every op below it is in this page or an earlier
        /// one.
        next_op_seq: u64,
        /// The first message seq not yet delivered: every message below it is in this page or
        /// an earlier one, or no longer stored.
        next_seq: Seq,
        /// `true` when this page reaches the head of both log and messages; `false` means ask
        /// again with [`ClientFrame::sync_from`]. A page whose messages were cut to fit the
        /// server's byte budget is never complete.
        complete: bool,
    },
    /// Reply to [`ClientFrame::ListGroups`].
    Groups {
        /// Request id.
        id: RequestId,
        /// The device's groups.
        groups: Vec<GroupSummary>,
    },
    /// Reply to [`ClientFrame::LookupDevices`] or [`ClientFrame::LookupUsers`]. Clients verify
    /// each `keys` and compare it with keys seen before: the server could lie.
    Devices {
        /// Request id.
        id: RequestId,
        /// The devices found.
        devices: Vec<DeviceInfo>,
        /// The current device list of each user found that has one (for
        /// [`ClientFrame::LookupUsers`]); clients verify each and compare its identity key with
        /// the one they saw before.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        device_lists: Vec<SignedDeviceList>,
    },
    /// Reply to [`ClientFrame::DeviceListChain`]: the user's lists after the version asked for,
    /// oldest first.
    DeviceListChain {
        /// Request id.
        id: RequestId,
        /// The lists.
        lists: Vec<SignedDeviceList>,
    },
    /// A link message from the other party of a link channel; without `data` when the existing
    /// device has just joined the channel (sent to the opener).
    LinkData {
        /// The channel.
        #[serde(with = "b64_array")]
        channel: [u8; 32],
        /// The other party's bytes, or none: the peer arrived.
        #[serde(default, with = "crate::encoding::b64_option")]
        data: Option<Vec<u8>>,
    },
    /// The other party left the link channel, or it expired.
    LinkClosed {
        /// The channel.
        #[serde(with = "b64_array")]
        channel: [u8; 32],
    },
    /// Another device of this user published a new device list. Clients verify it and compare
    /// it with the lists their own devices made (PROTOCOL.md §11.14).
    DeviceList {
        /// The list.
        list: SignedDeviceList,
    },
    /// Reply to [`ClientFrame::Ping`].
    Pong {
        /// Request id.
        id: RequestId,
    },
    /// Advisory notice that the server is about to close the connection: sent before every close
    /// the server makes with a close code (shutdown, idle timeout, a client that reads too
    /// slowly, no authentication in time, too many connections, an oversized message); the
    /// websocket close code and reason say the same. The client reconnects with back-off.
    GoingAway {
        /// Why, in English, for logs.
        reason: String,
    },
}

impl ServerFrame {
    /// Every server frame `"type"`, in declaration order.
    pub const TYPES: [&'static str; 19] = [
        "challenge",
        "authenticated",
        "ok",
        "error",
        "group_created",
        "op_appended",
        "posted",
        "message",
        "op",
        "inbox",
        "sync_page",
        "groups",
        "devices",
        "device_list_chain",
        "link_data",
        "link_closed",
        "device_list",
        "pong",
        "going_away",
    ];

    /// The frame's `"type"`, for logs and metrics.
    pub fn type_name(&self) -> &'static str {
        match self {
            ServerFrame::Challenge { .. } => "challenge",
            ServerFrame::Authenticated { .. } => "authenticated",
            ServerFrame::Ok { .. } => "ok",
            ServerFrame::Error { .. } => "error",
            ServerFrame::GroupCreated { .. } => "group_created",
            ServerFrame::OpAppended { .. } => "op_appended",
            ServerFrame::Posted { .. } => "posted",
            ServerFrame::Message { .. } => "message",
            ServerFrame::Op { .. } => "op",
            ServerFrame::Inbox { .. } => "inbox",
            ServerFrame::SyncPage { .. } => "sync_page",
            ServerFrame::Groups { .. } => "groups",
            ServerFrame::Devices { .. } => "devices",
            ServerFrame::DeviceListChain { .. } => "device_list_chain",
            ServerFrame::LinkData { .. } => "link_data",
            ServerFrame::LinkClosed { .. } => "link_closed",
            ServerFrame::DeviceList { .. } => "device_list",
            ServerFrame::Pong { .. } => "pong",
            ServerFrame::GoingAway { .. } => "going_away",
        }
    }

    /// The id of the request this frame answers; `None` for live deliveries, the challenge and
    /// connection-level errors.
    pub fn request_id(&self) -> Option<RequestId> {
        match self {
            ServerFrame::Authenticated { id, .. }
            | ServerFrame::Ok { id }
            | ServerFrame::GroupCreated { id, .. }
            | ServerFrame::OpAppended { id, .. }
            | ServerFrame::Posted { id, .. }
            | ServerFrame::SyncPage { id, .. }
            | ServerFrame::Groups { id, .. }
            | ServerFrame::Devices { id, .. }
            | ServerFrame::DeviceListChain { id, .. }
            | ServerFrame::Pong { id } => Some(*id),
            ServerFrame::Error { id, .. } => *id,
            ServerFrame::Challenge { .. }
            | ServerFrame::Message { .. }
            | ServerFrame::Op { .. }
            | ServerFrame::Inbox { .. }
            | ServerFrame::LinkData { .. }
            | ServerFrame::LinkClosed { .. }
            | ServerFrame::DeviceList { .. }
            | ServerFrame::GoingAway { .. } => None,
        }
    }

    /// An error frame without a retry hint.
    pub fn error(id: Option<RequestId>, code: ErrorCode, message: impl Into<String>) -> Self {
        ServerFrame::Error {
            id,
            code,
            message: message.into(),
            retry_after_ms: None,
        }
    }

    /// Parses a server frame of at most `max_bytes` bytes (the client's limit, by default
    /// [`DEFAULT_MAX_SERVER_FRAME_BYTES`]). The length is checked before any parsing.
    pub fn from_json(text: &str, max_bytes: usize) -> Result<Self, FrameError> {
        check_len(text, max_bytes)?;
        if let Some(page) = Self::sync_page_directly(text) {
            return Ok(page);
        }
        parse(text, max_bytes, &Self::TYPES)
    }

    /// A [`ServerFrame::SyncPage`] read without serde's buffering of tagged enums
    /// ([`SyncPageFields`]), in one pass that stops at the `type` of any other frame (the
    /// server writes it first); `None` for any other frame, and for a sync page that does not
    /// read, which [`parse`] then reads again to say why.
    fn sync_page_directly(text: &str) -> Option<Self> {
        let page: SyncPageFields = serde_json::from_str(text).ok()?;
        Some(ServerFrame::SyncPage {
            id: page.id,
            group: page.group,
            ops: page.ops,
            messages: page.messages,
            next_op_seq: page.next_op_seq,
            next_seq: page.next_seq,
            complete: page.complete,
        })
    }

    /// The frame as JSON text.
    pub fn to_json(&self) -> Result<String, FrameError> {
        serde_json::to_string(self).map_err(|e| FrameError::Encode(e.to_string()))
    }
}

/// Proof that the requesting device holds an invite: the invite's id and its signature made
/// with [`crate::group_log::InviteSecret::sign_sync`] over the group and the requesting device.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InviteProof {
    /// The invite's public id.
    pub id: InviteId,
    /// The invite key's signature.
    pub signature: Signature,
}

/// A sealed payload waiting in a device's inbox.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct InboxItem {
    /// The server's id for this item, unique per device, used to acknowledge it.
    pub inbox_id: u64,
    /// When the server stored it (the server's claim).
    pub received_at: Timestamp,
    /// The payload.
    pub payload: SealedPayload,
}

/// A message as stored, in a [`ServerFrame::SyncPage`].
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct StoredMessage {
    /// Its seq in the group.
    pub seq: Seq,
    /// When the server stored it (the server's claim).
    pub received_at: Timestamp,
    /// The message.
    pub envelope: Envelope,
}

/// One group in a [`ServerFrame::Groups`] reply: enough to tell whether a sync is needed.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct GroupSummary {
    /// The group.
    pub group: GroupId,
    /// The seq of the newest op in its log.
    pub op_head_seq: u64,
    /// The seq of the newest message, `0` if none.
    pub last_seq: Seq,
}

/// One device in a [`ServerFrame::Devices`] reply.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// The device's user.
    pub user: UserId,
    /// The device's public keys, signed by its identity key; `keys.device` is the device id.
    pub keys: DeviceKeys,
    /// The user's display name.
    pub display_name: String,
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// The stable, machine-readable reason in a [`ServerFrame::Error`]. Codes are never renamed or
/// reused; new ones may be added (clients see those as [`ErrorCode::Unrecognized`]).
///
/// | code | meaning | the client should |
/// |---|---|---|
/// | `bad_frame` | The frame is not valid JSON, has a missing, unknown, duplicate or mistyped field (at any level), breaks a per-frame limit (a display name too long, a sync limit of 0), is a binary websocket message, registers a display name that breaks the group log's member-entry rules, or carries a sealed payload whose sender is not the authenticated device. | fix the client; do not retry unchanged |
/// | `unknown_frame` | The frame's `type` is not one this server knows. | check the protocol version |
/// | `frame_too_large` | The frame exceeds the server's size limit (much larger ones close the connection instead), or a list in it exceeds its per-frame item limit. | split the request |
/// | `unsupported_version` | The client's protocol version is not one this server speaks. | upgrade |
/// | `not_authenticated` | The request needs an authenticated connection; also sent, without an id, when the authentication deadline passes. | register or authenticate first |
/// | `already_authenticated` | The connection is already authenticated. | nothing; keep using it |
/// | `auth_failed` | The challenge signature, or the signature on the device's sealing key, does not verify. | check the dialled name and keys; do not retry unchanged |
/// | `registration_closed` | The server does not register new devices without a valid registration token. | ask the operator for a token |
/// | `already_registered` | The device is registered with another user or other keys, or the user id already has a device. | authenticate, or choose a fresh user id |
/// | `unknown_device` | A device named in the request (the one authenticating, or a recipient) is not registered. | register, or refresh device lists |
/// | `invalid_op` | A group-log op is malformed, badly signed, not allowed by the group's policy, breaks an op rule, is too far from the server's clock, names another group than the request or another author than the sender, sets open hours in an unknown time zone, or lists a device in a member entry that is not registered to that entry's user with those keys. | resync the log; report a bug if it persists |
/// | `op_conflict` | The op does not extend the current head of the log (a stale head or a fork). | resync, re-check and re-sign |
/// | `no_such_group` | The group does not exist on this server. | drop it or resync the group list |
/// | `group_exists` | A group with this id exists with another genesis op, or is being created. | create with a fresh id, or retry and then sync |
/// | `not_member` | The device is not a member of the group (for an op: its author is not a current member's device; for a sync: nor does it name a valid invite), or a sealed payload's sender or recipient is not; a join request goes to no facilitator device, or the group has no open invite that requires approval. | resync the log |
/// | `muted` | The sender is muted in this group (`retry_after_ms` until the mute ends). | wait |
/// | `locked` | The group is locked, or outside its open hours; only facilitators and co-facilitators can post. | wait until it opens |
/// | `slow_mode` | Slow mode allows no message from this sender yet (`retry_after_ms`). | wait, then retry |
/// | `agreement_required` | The sender has not accepted the group's current agreement. | accept it, then retry |
/// | `stale_epoch` | The envelope names an epoch (number and epoch hash) other than the group's current one, and not the previous one within the grace period after a join or add. | resync, rekey, re-encrypt |
/// | `bad_envelope` | The envelope's sender is not the authenticated device, or its version, ciphertext size (not on the padding buckets) or signature is wrong. | fix the client |
/// | `message_too_large` | A sealed payload's ciphertext is larger than the server stores. | send less |
/// | `rate_limited` | Too many requests from this device (`retry_after_ms`). | back off, then retry |
/// | `too_many_connections` | This device has as many connections as the server allows (`retry_after_ms`); the connection is closed. | back off, then reconnect |
/// | `inbox_full` | A recipient's inbox, with this frame's items, would hold more pending items than the server allows (`retry_after_ms`); nothing was stored. | retry later |
/// | `device_list_refused` | A device list (in `register` or `publish_devices`) is invalid, names another user or another identity key than the one on record, is not the successor of the current list (or, at `register` of a linked device, not the current list itself), or the publishing device is not in the current list. | fetch the current list and retry from a listed device |
/// | `device_unlinked` | The device was removed from its user's device list; it can no longer register or authenticate. | delete the local store and tell the person |
/// | `link_busy` | A link channel with this id is open already. | make a new link code |
/// | `link_unknown` | No open link channel with this id that this connection may use (never opened, expired, joined already, or the other party left). | start linking again |
/// | `storage` | The server could not store durably; nothing in the request was acknowledged or kept. | retry |
/// | `shutting_down` | The server is shutting down and takes no new work. | reconnect later |
/// | `internal` | A bug in the server. | retry later; report it |
/// | `unrecognized` | (Never sent.) A code this client version does not know. | treat as `internal` |
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// Not valid JSON, a missing, unknown, duplicate or mistyped field, a broken per-frame limit,
    /// a binary message, an invalid registration display name, or a sealed payload whose sender
    /// is not this device.
    BadFrame,
    /// The frame's `type` is unknown.
    UnknownFrame,
    /// The frame, or a list in it, is larger than allowed.
    FrameTooLarge,
    /// The client's protocol version is not supported.
    UnsupportedVersion,
    /// The request needs an authenticated connection.
    NotAuthenticated,
    /// The connection is already authenticated.
    AlreadyAuthenticated,
    /// A signature over the challenge or over the sealing key does not verify.
    AuthFailed,
    /// The registration token is missing or wrong.
    RegistrationClosed,
    /// The device is registered with another user or other keys, or the user already has a
    /// device.
    AlreadyRegistered,
    /// A device named in the request is not registered.
    UnknownDevice,
    /// A group-log op is malformed, badly signed, not allowed by the policy, breaks an op rule,
    /// is too far from the server's clock, or lists a device not registered to its member's user.
    InvalidOp,
    /// The op does not extend the current head of the log; resync.
    OpConflict,
    /// The group does not exist.
    NoSuchGroup,
    /// A group with this id exists with another genesis op, or is being created.
    GroupExists,
    /// The device (or an op's author, or a sealed payload's recipient) is not a member of the
    /// group; or a join request is not addressed to a facilitator device of a group with an open
    /// invite that requires approval.
    NotMember,
    /// `sync` named an invite (with a valid proof of holding it) that a facilitator revoked.
    InviteRevoked,
    /// `sync` named an invite (with a valid proof of holding it) whose time ran out.
    InviteExpired,
    /// `sync` named an invite (with a valid proof of holding it) that as many people have used
    /// as it allows.
    InviteUsedUp,
    /// `sync` named an invite (with a valid proof of holding it) from a device that is banned
    /// from the group, or whose user is: a ban also ends reading the group's log with an invite.
    Banned,
    /// The sender is muted.
    Muted,
    /// The group is locked, or outside its open hours.
    Locked,
    /// Slow mode: too soon after the sender's last message.
    SlowMode,
    /// The sender must first accept the group agreement.
    AgreementRequired,
    /// Not the group's current epoch and epoch hash (nor the previous ones within the grace
    /// period after a join or add).
    StaleEpoch,
    /// The envelope is not from the authenticated device, or fails its version, size or
    /// signature check.
    BadEnvelope,
    /// A sealed payload is larger than the server stores.
    MessageTooLarge,
    /// Too many requests from this device.
    RateLimited,
    /// Too many connections of this device; the connection closes.
    TooManyConnections,
    /// A recipient's inbox would be over its limit with this frame's items.
    InboxFull,
    /// A fixed limit of the server was reached that waiting does not lift (for instance the
    /// groups one device may create): retrying the same request does not help.
    LimitReached,
    /// A device list was refused (invalid, another user or identity, not the successor, or the
    /// publishing device is not listed).
    DeviceListRefused,
    /// The device was removed from its user's device list.
    DeviceUnlinked,
    /// A link channel with this id is open already.
    LinkBusy,
    /// No open link channel with this id that this connection may use.
    LinkUnknown,
    /// Nothing was stored: the server could not write durably.
    Storage,
    /// The server is shutting down.
    ShuttingDown,
    /// A server bug.
    Internal,
    /// A code this version does not know (parsed from a newer server); never sent.
    #[serde(other)]
    Unrecognized,
}

impl ErrorCode {
    /// Every code a server may send, in table order (without [`ErrorCode::Unrecognized`]).
    pub const ALL: [ErrorCode; 37] = [
        ErrorCode::BadFrame,
        ErrorCode::UnknownFrame,
        ErrorCode::FrameTooLarge,
        ErrorCode::UnsupportedVersion,
        ErrorCode::NotAuthenticated,
        ErrorCode::AlreadyAuthenticated,
        ErrorCode::AuthFailed,
        ErrorCode::RegistrationClosed,
        ErrorCode::AlreadyRegistered,
        ErrorCode::UnknownDevice,
        ErrorCode::InvalidOp,
        ErrorCode::OpConflict,
        ErrorCode::NoSuchGroup,
        ErrorCode::GroupExists,
        ErrorCode::NotMember,
        ErrorCode::InviteRevoked,
        ErrorCode::InviteExpired,
        ErrorCode::InviteUsedUp,
        ErrorCode::Banned,
        ErrorCode::Muted,
        ErrorCode::Locked,
        ErrorCode::SlowMode,
        ErrorCode::AgreementRequired,
        ErrorCode::StaleEpoch,
        ErrorCode::BadEnvelope,
        ErrorCode::MessageTooLarge,
        ErrorCode::RateLimited,
        ErrorCode::TooManyConnections,
        ErrorCode::InboxFull,
        ErrorCode::LimitReached,
        ErrorCode::DeviceListRefused,
        ErrorCode::DeviceUnlinked,
        ErrorCode::LinkBusy,
        ErrorCode::LinkUnknown,
        ErrorCode::Storage,
        ErrorCode::ShuttingDown,
        ErrorCode::Internal,
    ];

    /// Whether a refusal with this code is one a client may send again unchanged once the
    /// reason has passed (PROTOCOL.md §9.9, "Retryable codes"): `rate_limited`,
    /// `too_many_connections`, `inbox_full`, `muted`, `slow_mode`, `storage` and
    /// `shutting_down`. Exactly these carry `retry_after_ms` ([`Self::retry_hint_ms`]). Every
    /// other code means the same request will be refused again until the client, a person or
    /// the group's log changes something — including `locked` and `group_exists`, which clear
    /// at a time nobody announces, and `internal` and [`ErrorCode::Unrecognized`] — so a client
    /// following the specification never retries them in a loop.
    ///
    /// This says what *may* be retried; which refusals a client retries by itself is its own
    /// policy (the reference client re-posts after `storage`, `shutting_down` and
    /// `rate_limited`, and tells the user about `muted` and `slow_mode`, §9.8).
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::RateLimited
                | ErrorCode::TooManyConnections
                | ErrorCode::InboxFull
                | ErrorCode::Muted
                | ErrorCode::SlowMode
                | ErrorCode::Storage
                | ErrorCode::ShuttingDown
        )
    }

    /// The `retry_after_ms` an `error` frame with this code carries (PROTOCOL.md §9.9): for a
    /// [retryable](Self::is_retryable) code, `wait` (or `fallback` when the refusal named none)
    /// in whole milliseconds, at least 1; for every other code none, whatever `wait` says, as
    /// a hint would invite a retry loop.
    pub fn retry_hint_ms(self, wait: Option<Duration>, fallback: Duration) -> Option<u64> {
        self.is_retryable()
            .then(|| crate::ids::duration_ms(wait.unwrap_or(fallback)).max(1))
    }

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadFrame => "bad_frame",
            ErrorCode::UnknownFrame => "unknown_frame",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::NotAuthenticated => "not_authenticated",
            ErrorCode::AlreadyAuthenticated => "already_authenticated",
            ErrorCode::AuthFailed => "auth_failed",
            ErrorCode::RegistrationClosed => "registration_closed",
            ErrorCode::AlreadyRegistered => "already_registered",
            ErrorCode::UnknownDevice => "unknown_device",
            ErrorCode::InvalidOp => "invalid_op",
            ErrorCode::OpConflict => "op_conflict",
            ErrorCode::NoSuchGroup => "no_such_group",
            ErrorCode::GroupExists => "group_exists",
            ErrorCode::NotMember => "not_member",
            ErrorCode::InviteRevoked => "invite_revoked",
            ErrorCode::InviteExpired => "invite_expired",
            ErrorCode::InviteUsedUp => "invite_used_up",
            ErrorCode::Banned => "banned",
            ErrorCode::Muted => "muted",
            ErrorCode::Locked => "locked",
            ErrorCode::SlowMode => "slow_mode",
            ErrorCode::AgreementRequired => "agreement_required",
            ErrorCode::StaleEpoch => "stale_epoch",
            ErrorCode::BadEnvelope => "bad_envelope",
            ErrorCode::MessageTooLarge => "message_too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::InboxFull => "inbox_full",
            ErrorCode::LimitReached => "limit_reached",
            ErrorCode::DeviceListRefused => "device_list_refused",
            ErrorCode::DeviceUnlinked => "device_unlinked",
            ErrorCode::LinkBusy => "link_busy",
            ErrorCode::LinkUnknown => "link_unknown",
            ErrorCode::Storage => "storage",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::Internal => "internal",
            ErrorCode::Unrecognized => "unrecognized",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a frame could not be read or written. Each maps onto the [`ErrorCode`] the peer is told
/// ([`Self::code`]); [`Self::to_error_frame`] builds that reply, echoing the request id when
/// the frame got far enough for one to be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The frame is longer than the receiver accepts; it was not parsed at all.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// The frame's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not JSON, not an object, no string `type`, or a known type with a missing, unknown or
    /// mistyped field.
    #[error("malformed frame: {detail}")]
    Malformed {
        /// The frame's `id`, if it had a readable one.
        id: Option<RequestId>,
        /// What the parser objected to (truncated to [`MAX_ERROR_DETAIL_CHARS`]).
        detail: String,
    },
    /// A well-formed object whose `type` the receiver does not know.
    #[error("unknown frame type {type_name:?}")]
    UnknownType {
        /// The frame's `id`, if it had a readable one.
        id: Option<RequestId>,
        /// The unknown type (truncated).
        type_name: String,
    },
    /// A list in the frame has more items than one frame may carry.
    #[error("{field} has {len} items; at most {max} fit in one frame, split the request")]
    TooManyItems {
        /// The frame's id.
        id: RequestId,
        /// The field.
        field: &'static str,
        /// Its number of items.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A field breaks a limit that its type does not express.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The frame's id.
        id: RequestId,
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Serializing a frame failed (not expected: every frame type serializes).
    #[error("could not encode frame: {0}")]
    Encode(String),
}

impl FrameError {
    /// The code to tell the peer.
    pub fn code(&self) -> ErrorCode {
        match self {
            FrameError::TooLarge { .. } | FrameError::TooManyItems { .. } => {
                ErrorCode::FrameTooLarge
            }
            FrameError::Malformed { .. } | FrameError::Invalid { .. } => ErrorCode::BadFrame,
            FrameError::UnknownType { .. } => ErrorCode::UnknownFrame,
            FrameError::Encode(_) => ErrorCode::Internal,
        }
    }

    /// The id of the request the bad frame carried, when it could be read.
    pub fn request_id(&self) -> Option<RequestId> {
        match self {
            FrameError::Malformed { id, .. } | FrameError::UnknownType { id, .. } => *id,
            FrameError::TooManyItems { id, .. } | FrameError::Invalid { id, .. } => Some(*id),
            FrameError::TooLarge { .. } | FrameError::Encode(_) => None,
        }
    }

    /// The [`ServerFrame::Error`] that answers the bad frame.
    pub fn to_error_frame(&self) -> ServerFrame {
        ServerFrame::error(self.request_id(), self.code(), self.to_string())
    }
}

/// Parses a frame of one of the two directions, classifying failures: oversized input is refused
/// unread; otherwise a failed typed parse is re-read as a plain JSON value to tell an unknown
/// `type` from a malformed frame and to recover the `id`.
fn parse<T: serde::de::DeserializeOwned>(
    text: &str,
    max_bytes: usize,
    known_types: &[&str],
) -> Result<T, FrameError> {
    check_len(text, max_bytes)?;
    let error = match serde_json::from_str::<T>(text) {
        Ok(frame) => return Ok(frame),
        Err(error) => error,
    };
    let detail = truncate(&error.to_string(), MAX_ERROR_DETAIL_CHARS);
    let Ok(serde_json::Value::Object(object)) = serde_json::from_str::<serde_json::Value>(text)
    else {
        return Err(FrameError::Malformed { id: None, detail });
    };
    let id = object
        .get("id")
        .and_then(serde_json::Value::as_u64)
        .map(RequestId);
    match object.get("type") {
        Some(serde_json::Value::String(type_name))
            if !known_types.contains(&type_name.as_str()) =>
        {
            Err(FrameError::UnknownType {
                id,
                type_name: truncate(type_name, MAX_TYPE_NAME_CHARS),
            })
        }
        _ => Err(FrameError::Malformed { id, detail }),
    }
}

/// A frame longer than `max_bytes` is refused before anything of it is read.
fn check_len(text: &str, max_bytes: usize) -> Result<(), FrameError> {
    if text.len() > max_bytes {
        return Err(FrameError::TooLarge {
            len: text.len(),
            max: max_bytes,
        });
    }
    Ok(())
}

/// A frame's `type` that reads only as `"sync_page"` (escaped or not): any other makes
/// [`SyncPageFields`] fail where it stands.
struct SyncPageTag;

impl<'de> Deserialize<'de> for SyncPageTag {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Tag;
        impl serde::de::Visitor<'_> for Tag {
            type Value = SyncPageTag;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"sync_page\"")
            }
            fn visit_str<E: serde::de::Error>(self, kind: &str) -> Result<SyncPageTag, E> {
                match kind {
                    "sync_page" => Ok(SyncPageTag),
                    other => Err(E::invalid_value(serde::de::Unexpected::Str(other), &self)),
                }
            }
        }
        deserializer.deserialize_str(Tag)
    }
}

/// [`ServerFrame::SyncPage`]'s fields, read straight from a frame's JSON. serde reads an
/// internally tagged enum such as [`ServerFrame`] by first copying the whole frame into a
/// generic tree and then reading the variant from that; for a page of hundreds of messages
/// the copy cost a catching-up client about 4 µs per message on its busiest thread
/// (BENCHMARKS.md, "Issue 20, an eighth round"). `type` must say `sync_page`; unknown fields
/// are ignored, as [`ServerFrame`] ignores them, so a page reads the same either way. The one
/// difference is in fields both ignore: the buffering refuses some that this skips (nested
/// deeper than serde_json's recursion limit, a lone surrogate escape, a number beyond `f64`),
/// so such a page is read here where the generic path would refuse it; what is read is the
/// same.
#[derive(Deserialize)]
struct SyncPageFields {
    /// Read first in every frame the server writes, so another frame fails at once.
    #[serde(rename = "type")]
    _kind: SyncPageTag,
    id: RequestId,
    group: GroupId,
    ops: Vec<SignedOp>,
    messages: Vec<StoredMessage>,
    next_op_seq: u64,
    next_seq: Seq,
    complete: bool,
}

/// At most `max` characters of `text`, with an ellipsis if it was cut.
fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sealed_frames_stay_within_the_count_and_the_bytes_and_keep_the_order() {
        use crate::seal::{SealKind, seal};
        let mut rng = crate::test_rng(41);
        let me = DeviceIdentity::generate(&mut rng);
        let them = DeviceIdentity::generate(&mut rng).public_keys();
        let group = GroupId::random(&mut rng);
        let epoch = crate::ids::EpochRef {
            epoch: crate::ids::Epoch(1),
            hash: crate::ids::OpHash([7; 32]),
        };
        let mut item = |size: usize| {
            seal(
                &me,
                &them,
                SealKind::Direct,
                group,
                epoch,
                &vec![1u8; size],
                &mut rng,
            )
            .unwrap()
        };
        // Sixteen 60 KB payloads (a report of a large message to sixteen facilitators) do not
        // fit in one 1 MiB frame.
        let big: Vec<_> = (0..16).map(|_| item(60_000)).collect();
        let ids: Vec<_> = big.iter().map(|i| i.enc.clone()).collect();
        let frames = sealed_frames(big, DEFAULT_MAX_CLIENT_FRAME_BYTES);
        assert!(frames.len() > 1);
        for items in &frames {
            let frame = ClientFrame::SendSealed {
                id: RequestId(u64::MAX),
                items: items.clone(),
            };
            assert!(frame.to_json().unwrap().len() <= DEFAULT_MAX_CLIENT_FRAME_BYTES);
        }
        let order: Vec<_> = frames.iter().flatten().map(|i| i.enc.clone()).collect();
        assert_eq!(order, ids);
        // Many small ones are cut by count.
        let small: Vec<_> = (0..300).map(|_| item(10)).collect();
        let frames = sealed_frames(small, DEFAULT_MAX_CLIENT_FRAME_BYTES);
        assert_eq!(frames.iter().map(Vec::len).collect::<Vec<_>>(), [256, 44]);
        assert!(sealed_frames(Vec::new(), DEFAULT_MAX_CLIENT_FRAME_BYTES).is_empty());
    }

    use super::*;
    use crate::seal::SealKind;
    use crate::test_rng;
    use proptest::collection::vec;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    // --- strategies --------------------------------------------------------------------------

    fn bytes<const N: usize>() -> impl Strategy<Value = [u8; N]> {
        proptest::array::uniform::<_, N>(any::<u8>())
    }

    fn request_id() -> impl Strategy<Value = RequestId> {
        any::<u64>().prop_map(RequestId)
    }

    fn device_id() -> impl Strategy<Value = DeviceId> {
        bytes::<32>().prop_map(DeviceId)
    }

    fn user_id() -> impl Strategy<Value = UserId> {
        bytes::<16>().prop_map(UserId)
    }

    fn group_id() -> impl Strategy<Value = GroupId> {
        bytes::<16>().prop_map(GroupId)
    }

    fn seq() -> impl Strategy<Value = Seq> {
        any::<u64>().prop_map(Seq)
    }

    fn timestamp() -> impl Strategy<Value = Timestamp> {
        any::<u64>().prop_map(Timestamp)
    }

    fn signature() -> impl Strategy<Value = Signature> {
        bytes::<64>().prop_map(Signature)
    }

    /// Any text, including quotes, backslashes, control characters and non-ASCII.
    fn text() -> impl Strategy<Value = String> {
        any::<String>()
    }

    /// A display name within [`MAX_DISPLAY_NAME_BYTES`] (16 characters of at most 4 bytes).
    fn display_name() -> impl Strategy<Value = String> {
        "\\PC{1,16}"
    }

    fn device_keys() -> impl Strategy<Value = DeviceKeys> {
        (
            device_id(),
            bytes::<32>(),
            signature(),
            // An X-Wing key must be a valid encapsulation key, so it comes from a random seed.
            proptest::option::of((bytes::<32>(), signature())),
        )
            .prop_map(|(device, sealing_key, sealing_sig, pq)| DeviceKeys {
                device,
                sealing_key,
                sealing_sig,
                pq_key: pq.as_ref().and_then(|(seed, _)| {
                    crate::identity::DeviceIdentity::from_secret_bytes(
                        &[1; 32],
                        &[2; 32],
                        Some(seed),
                    )
                    .public_keys()
                    .pq_key
                }),
                pq_sig: pq.map(|(_, sig)| sig),
            })
    }

    fn signed_op() -> impl Strategy<Value = SignedOp> {
        (vec(any::<u8>(), 0..200), signature()).prop_map(|(op, sig)| SignedOp { op, sig })
    }

    fn envelope() -> impl Strategy<Value = Envelope> {
        (
            any::<u8>(),
            group_id(),
            any::<u64>(),
            device_id(),
            any::<u32>(),
            bytes::<32>(),
            vec(any::<u8>(), 0..300),
            signature(),
        )
            .prop_map(
                |(v, group, epoch, sender, iteration, franking_tag, ciphertext, signature)| {
                    Envelope {
                        v,
                        group,
                        epoch: crate::Epoch(epoch),
                        epoch_hash: crate::OpHash(franking_tag),
                        sender,
                        iteration,
                        franking_tag,
                        ciphertext,
                        signature,
                    }
                },
            )
    }

    fn seal_kind() -> impl Strategy<Value = SealKind> {
        prop_oneof![
            Just(SealKind::SenderKey),
            Just(SealKind::JoinRequest),
            Just(SealKind::Report),
            Just(SealKind::FacilitatorNote),
            Just(SealKind::Direct),
        ]
    }

    fn sealed_payload() -> impl Strategy<Value = SealedPayload> {
        (
            seal_kind(),
            group_id(),
            any::<u64>(),
            device_id(),
            device_id(),
            bytes::<32>(),
            vec(any::<u8>(), 0..300),
        )
            .prop_map(|(kind, group, epoch, sender, recipient, enc, ciphertext)| {
                SealedPayload {
                    kind,
                    group,
                    epoch: crate::Epoch(epoch),
                    epoch_hash: crate::OpHash(enc),
                    sender,
                    recipient,
                    enc: crate::seal::Encapsulation::from_bytes(&enc).unwrap(),
                    ciphertext,
                }
            })
    }

    fn error_code() -> impl Strategy<Value = ErrorCode> {
        proptest::sample::select(ErrorCode::ALL.to_vec())
    }

    fn client_frame() -> impl Strategy<Value = ClientFrame> {
        prop_oneof![
            (
                request_id(),
                any::<u16>(),
                user_id(),
                display_name(),
                device_keys(),
                proptest::option::of("\\PC{0,64}"),
                signature()
            )
                .prop_map(
                    |(id, version, user, display_name, keys, registration_token, signature)| {
                        ClientFrame::Register {
                            id,
                            version,
                            user,
                            display_name,
                            keys,
                            registration_token,
                            device_list: None,
                            signature,
                        }
                    }
                ),
            (request_id(), any::<u16>(), device_id(), signature()).prop_map(
                |(id, version, device, signature)| ClientFrame::Authenticate {
                    id,
                    version,
                    device,
                    signature
                }
            ),
            (request_id(), signed_op())
                .prop_map(|(id, genesis)| ClientFrame::CreateGroup { id, genesis }),
            (request_id(), group_id(), signed_op())
                .prop_map(|(id, group, op)| ClientFrame::AppendOp { id, group, op }),
            (request_id(), envelope())
                .prop_map(|(id, envelope)| ClientFrame::Post { id, envelope }),
            (request_id(), vec(sealed_payload(), 0..4))
                .prop_map(|(id, items)| ClientFrame::SendSealed { id, items }),
            (request_id(), vec(any::<u64>(), 0..8))
                .prop_map(|(id, inbox_ids)| ClientFrame::AckInbox { id, inbox_ids }),
            (
                request_id(),
                group_id(),
                proptest::option::of(any::<u64>()),
                seq(),
                1..=u32::MAX
            )
                .prop_map(|(id, group, after_op_seq, after_seq, limit)| {
                    ClientFrame::Sync {
                        id,
                        group,
                        after_op_seq,
                        after_seq,
                        limit,
                        invite: None,
                    }
                }),
            request_id().prop_map(|id| ClientFrame::ListGroups { id }),
            (request_id(), vec(device_id(), 0..4))
                .prop_map(|(id, devices)| ClientFrame::LookupDevices { id, devices }),
            (request_id(), vec(user_id(), 0..4))
                .prop_map(|(id, users)| ClientFrame::LookupUsers { id, users }),
            request_id().prop_map(|id| ClientFrame::Ping { id }),
        ]
    }

    fn server_frame() -> impl Strategy<Value = ServerFrame> {
        let stored_message =
            (seq(), timestamp(), envelope()).prop_map(|(seq, received_at, envelope)| {
                StoredMessage {
                    seq,
                    received_at,
                    envelope,
                }
            });
        let inbox_item = (any::<u64>(), timestamp(), sealed_payload()).prop_map(
            |(inbox_id, received_at, payload)| InboxItem {
                inbox_id,
                received_at,
                payload,
            },
        );
        let summary =
            (group_id(), any::<u64>(), seq()).prop_map(|(group, op_head_seq, last_seq)| {
                GroupSummary {
                    group,
                    op_head_seq,
                    last_seq,
                }
            });
        let device_info =
            (user_id(), device_keys(), text()).prop_map(|(user, keys, display_name)| DeviceInfo {
                user,
                keys,
                display_name,
            });
        prop_oneof![
            (any::<u16>(), text(), bytes::<32>(), timestamp()).prop_map(
                |(version, server_name, nonce, server_time)| ServerFrame::Challenge {
                    version,
                    server_name,
                    nonce,
                    server_time
                }
            ),
            (request_id(), user_id(), device_id(), text()).prop_map(
                |(id, user, device, display_name)| ServerFrame::Authenticated {
                    id,
                    user,
                    device,
                    display_name
                }
            ),
            request_id().prop_map(|id| ServerFrame::Ok { id }),
            (
                proptest::option::of(request_id()),
                error_code(),
                text(),
                proptest::option::of(any::<u64>())
            )
                .prop_map(|(id, code, message, retry_after_ms)| ServerFrame::Error {
                    id,
                    code,
                    message,
                    retry_after_ms
                }),
            (request_id(), group_id())
                .prop_map(|(id, group)| ServerFrame::GroupCreated { id, group }),
            (request_id(), group_id(), any::<u64>())
                .prop_map(|(id, group, seq)| ServerFrame::OpAppended { id, group, seq }),
            (request_id(), group_id(), seq(), bytes::<16>()).prop_map(
                |(id, group, seq, message)| ServerFrame::Posted {
                    id,
                    group,
                    seq,
                    message: MessageId(message)
                }
            ),
            (group_id(), seq(), timestamp(), envelope()).prop_map(
                |(group, seq, received_at, envelope)| ServerFrame::Message {
                    group,
                    seq,
                    received_at,
                    envelope
                }
            ),
            (group_id(), signed_op(), any::<u64>()).prop_map(|(group, op, seq)| ServerFrame::Op {
                group,
                op,
                seq
            }),
            vec(inbox_item, 0..4).prop_map(|items| ServerFrame::Inbox { items }),
            (
                request_id(),
                group_id(),
                vec(signed_op(), 0..4),
                vec(stored_message, 0..4),
                any::<u64>(),
                seq(),
                any::<bool>()
            )
                .prop_map(
                    |(id, group, ops, messages, next_op_seq, next_seq, complete)| {
                        ServerFrame::SyncPage {
                            id,
                            group,
                            ops,
                            messages,
                            next_op_seq,
                            next_seq,
                            complete,
                        }
                    }
                ),
            (request_id(), vec(summary, 0..4))
                .prop_map(|(id, groups)| ServerFrame::Groups { id, groups }),
            (request_id(), vec(device_info, 0..4)).prop_map(|(id, devices)| ServerFrame::Devices {
                id,
                devices,
                device_lists: vec![],
            }),
            request_id().prop_map(|id| ServerFrame::Pong { id }),
            text().prop_map(|reason| ServerFrame::GoingAway { reason }),
        ]
    }

    /// The `"type"` member of a frame's JSON.
    fn json_type(json: &str) -> Option<String> {
        let value: serde_json::Value = serde_json::from_str(json).ok()?;
        value.get("type")?.as_str().map(str::to_owned)
    }

    proptest! {
        #[test]
        fn client_frames_round_trip(frame in client_frame()) {
            let json = frame.to_json()?;
            let parsed = ClientFrame::from_json(&json, DEFAULT_MAX_CLIENT_FRAME_BYTES)?;
            prop_assert_eq!(&parsed, &frame);
            let json_type = json_type(&json);
            prop_assert_eq!(json_type.as_deref(), Some(frame.type_name()));
            prop_assert!(ClientFrame::TYPES.contains(&frame.type_name()));
        }

        #[test]
        fn server_frames_round_trip(frame in server_frame()) {
            let json = frame.to_json()?;
            let parsed = ServerFrame::from_json(&json, DEFAULT_MAX_SERVER_FRAME_BYTES)?;
            prop_assert_eq!(&parsed, &frame);
            let json_type = json_type(&json);
            prop_assert_eq!(json_type.as_deref(), Some(frame.type_name()));
            prop_assert!(ServerFrame::TYPES.contains(&frame.type_name()));
        }

        /// Whatever bytes arrive, parsing returns a value or an error, never panics.
        #[test]
        fn arbitrary_text_never_panics(input in any::<String>()) {
            let _ = ClientFrame::from_json(&input, DEFAULT_MAX_CLIENT_FRAME_BYTES);
            let _ = ServerFrame::from_json(&input, DEFAULT_MAX_SERVER_FRAME_BYTES);
        }
    }

    // --- one of each, with pinned JSON ---------------------------------------------------------

    const ZERO32: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    const ZERO16: &str = "AAAAAAAAAAAAAAAAAAAAAA==";
    const ZERO64: &str =
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==";

    fn zero_keys() -> DeviceKeys {
        DeviceKeys {
            device: DeviceId([0; 32]),
            sealing_key: [0; 32],
            sealing_sig: Signature([0; 64]),
            pq_key: None,
            pq_sig: None,
        }
    }

    fn zero_op() -> SignedOp {
        SignedOp {
            op: b"{}".to_vec(),
            sig: Signature([0; 64]),
        }
    }

    fn zero_envelope() -> Envelope {
        Envelope {
            v: 1,
            group: GroupId([0; 16]),
            epoch: crate::Epoch(2),
            epoch_hash: crate::OpHash([0; 32]),
            sender: DeviceId([0; 32]),
            iteration: 3,
            franking_tag: [0; 32],
            ciphertext: vec![0; 3],
            signature: Signature([0; 64]),
        }
    }

    fn zero_sealed() -> SealedPayload {
        SealedPayload {
            kind: SealKind::SenderKey,
            group: GroupId([0; 16]),
            epoch: crate::Epoch(2),
            epoch_hash: crate::OpHash([0; 32]),
            sender: DeviceId([0; 32]),
            recipient: DeviceId([0; 32]),
            enc: crate::seal::Encapsulation::from_bytes(&[0; crate::seal::X25519_ENC_LEN]).unwrap(),
            ciphertext: vec![0; 3],
        }
    }

    /// One of every client frame with the JSON it must serialize to, all-zero bytes throughout.
    fn client_examples() -> Vec<(ClientFrame, String)> {
        let keys =
            format!(r#"{{"device":"{ZERO32}","sealing_key":"{ZERO32}","sealing_sig":"{ZERO64}"}}"#);
        let op = format!(r#"{{"op":"e30=","sig":"{ZERO64}"}}"#);
        let envelope = format!(
            r#"{{"v":1,"group":"{ZERO16}","epoch":2,"epoch_hash":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","sender":"{ZERO32}","iteration":3,"franking_tag":"{ZERO32}","ciphertext":"AAAA","signature":"{ZERO64}"}}"#
        );
        let sealed = format!(
            r#"{{"kind":"sender_key","group":"{ZERO16}","epoch":2,"epoch_hash":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","sender":"{ZERO32}","recipient":"{ZERO32}","enc":"{ZERO32}","ciphertext":"AAAA"}}"#
        );
        let (id, group) = (RequestId(7), GroupId([0; 16]));
        vec![
            (
                ClientFrame::Register {
                    id,
                    version: PROTOCOL_VERSION,
                    user: UserId([0; 16]),
                    display_name: "Ana".into(),
                    keys: zero_keys(),
                    registration_token: Some("t0ken".into()),
                    device_list: None,
                    signature: Signature([0; 64]),
                },
                format!(
                    r#"{{"type":"register","id":7,"version":2,"user":"{ZERO16}","display_name":"Ana","keys":{keys},"registration_token":"t0ken","signature":"{ZERO64}"}}"#
                ),
            ),
            (
                ClientFrame::Authenticate {
                    id,
                    version: PROTOCOL_VERSION,
                    device: DeviceId([0; 32]),
                    signature: Signature([0; 64]),
                },
                format!(
                    r#"{{"type":"authenticate","id":7,"version":2,"device":"{ZERO32}","signature":"{ZERO64}"}}"#
                ),
            ),
            (
                ClientFrame::CreateGroup {
                    id,
                    genesis: zero_op(),
                },
                format!(r#"{{"type":"create_group","id":7,"genesis":{op}}}"#),
            ),
            (
                ClientFrame::AppendOp {
                    id,
                    group,
                    op: zero_op(),
                },
                format!(r#"{{"type":"append_op","id":7,"group":"{ZERO16}","op":{op}}}"#),
            ),
            (
                ClientFrame::Post {
                    id,
                    envelope: zero_envelope(),
                },
                format!(r#"{{"type":"post","id":7,"envelope":{envelope}}}"#),
            ),
            (
                ClientFrame::SendSealed {
                    id,
                    items: vec![zero_sealed()],
                },
                format!(r#"{{"type":"send_sealed","id":7,"items":[{sealed}]}}"#),
            ),
            (
                ClientFrame::AckInbox {
                    id,
                    inbox_ids: vec![41, 42],
                },
                r#"{"type":"ack_inbox","id":7,"inbox_ids":[41,42]}"#.into(),
            ),
            (
                ClientFrame::Sync {
                    id,
                    group,
                    after_op_seq: Some(4),
                    after_seq: Seq(120),
                    limit: 100,
                    invite: None,
                },
                format!(
                    r#"{{"type":"sync","id":7,"group":"{ZERO16}","after_op_seq":4,"after_seq":120,"limit":100}}"#
                ),
            ),
            (
                ClientFrame::ListGroups { id },
                r#"{"type":"list_groups","id":7}"#.into(),
            ),
            (
                ClientFrame::LookupDevices {
                    id,
                    devices: vec![DeviceId([0; 32])],
                },
                format!(r#"{{"type":"lookup_devices","id":7,"devices":["{ZERO32}"]}}"#),
            ),
            (
                ClientFrame::LookupUsers {
                    id,
                    users: vec![UserId([0; 16])],
                },
                format!(r#"{{"type":"lookup_users","id":7,"users":["{ZERO16}"]}}"#),
            ),
            (
                ClientFrame::PublishDevices {
                    id,
                    device_list: zero_list(),
                },
                format!(
                    r#"{{"type":"publish_devices","id":7,"device_list":{{"list":"e30=","sig":"{ZERO64}","by_sig":"{ZERO64}"}}}}"#
                ),
            ),
            (
                ClientFrame::DeviceListChain {
                    id,
                    user: UserId([0; 16]),
                    after_version: 3,
                },
                format!(
                    r#"{{"type":"device_list_chain","id":7,"user":"{ZERO16}","after_version":3}}"#
                ),
            ),
            (
                ClientFrame::LinkOpen {
                    id,
                    channel: [0; 32],
                },
                format!(r#"{{"type":"link_open","id":7,"channel":"{ZERO32}"}}"#),
            ),
            (
                ClientFrame::LinkJoin {
                    id,
                    channel: [0; 32],
                },
                format!(r#"{{"type":"link_join","id":7,"channel":"{ZERO32}"}}"#),
            ),
            (
                ClientFrame::LinkSend {
                    id,
                    channel: [0; 32],
                    data: b"{}".to_vec(),
                },
                format!(r#"{{"type":"link_send","id":7,"channel":"{ZERO32}","data":"e30="}}"#),
            ),
            (ClientFrame::Ping { id }, r#"{"type":"ping","id":7}"#.into()),
        ]
    }

    fn zero_list() -> SignedDeviceList {
        SignedDeviceList {
            list: b"{}".to_vec(),
            sig: Signature([0; 64]),
            by_sig: Signature([0; 64]),
        }
    }

    /// One of every server frame with the JSON it must serialize to.
    fn server_examples() -> Vec<(ServerFrame, String)> {
        let keys =
            format!(r#"{{"device":"{ZERO32}","sealing_key":"{ZERO32}","sealing_sig":"{ZERO64}"}}"#);
        let op = format!(r#"{{"op":"e30=","sig":"{ZERO64}"}}"#);
        let envelope = format!(
            r#"{{"v":1,"group":"{ZERO16}","epoch":2,"epoch_hash":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","sender":"{ZERO32}","iteration":3,"franking_tag":"{ZERO32}","ciphertext":"AAAA","signature":"{ZERO64}"}}"#
        );
        let sealed = format!(
            r#"{{"kind":"sender_key","group":"{ZERO16}","epoch":2,"epoch_hash":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","sender":"{ZERO32}","recipient":"{ZERO32}","enc":"{ZERO32}","ciphertext":"AAAA"}}"#
        );
        let (id, group) = (RequestId(7), GroupId([0; 16]));
        vec![
            (
                ServerFrame::Challenge {
                    version: PROTOCOL_VERSION,
                    server_name: "chat.example.org".into(),
                    nonce: [0; 32],
                    server_time: Timestamp(1_700_000_000_000),
                },
                format!(
                    r#"{{"type":"challenge","version":2,"server_name":"chat.example.org","nonce":"{ZERO32}","server_time":1700000000000}}"#
                ),
            ),
            (
                ServerFrame::Authenticated {
                    id,
                    user: UserId([0; 16]),
                    device: DeviceId([0; 32]),
                    display_name: "Ana".into(),
                },
                format!(
                    r#"{{"type":"authenticated","id":7,"user":"{ZERO16}","device":"{ZERO32}","display_name":"Ana"}}"#
                ),
            ),
            (ServerFrame::Ok { id }, r#"{"type":"ok","id":7}"#.into()),
            (
                ServerFrame::Error {
                    id: Some(id),
                    code: ErrorCode::SlowMode,
                    message: "slow mode: one message per 30 s".into(),
                    retry_after_ms: Some(12_000),
                },
                r#"{"type":"error","id":7,"code":"slow_mode","message":"slow mode: one message per 30 s","retry_after_ms":12000}"#.into(),
            ),
            (
                ServerFrame::error(None, ErrorCode::BadFrame, "malformed frame"),
                r#"{"type":"error","id":null,"code":"bad_frame","message":"malformed frame"}"#.into(),
            ),
            (
                ServerFrame::GroupCreated { id, group },
                format!(r#"{{"type":"group_created","id":7,"group":"{ZERO16}"}}"#),
            ),
            (
                ServerFrame::OpAppended { id, group, seq: 5 },
                format!(r#"{{"type":"op_appended","id":7,"group":"{ZERO16}","seq":5}}"#),
            ),
            (
                ServerFrame::Posted { id, group, seq: Seq(121), message: MessageId([0; 16]) },
                format!(
                    r#"{{"type":"posted","id":7,"group":"{ZERO16}","seq":121,"message":"{ZERO16}"}}"#
                ),
            ),
            (
                ServerFrame::Message {
                    group,
                    seq: Seq(121),
                    received_at: Timestamp(1_700_000_000_000),
                    envelope: zero_envelope(),
                },
                format!(
                    r#"{{"type":"message","group":"{ZERO16}","seq":121,"received_at":1700000000000,"envelope":{envelope}}}"#
                ),
            ),
            (
                ServerFrame::Op { group, op: zero_op(), seq: 5 },
                format!(r#"{{"type":"op","group":"{ZERO16}","op":{op},"seq":5}}"#),
            ),
            (
                ServerFrame::Inbox {
                    items: vec![InboxItem {
                        inbox_id: 41,
                        received_at: Timestamp(1_700_000_000_000),
                        payload: zero_sealed(),
                    }],
                },
                format!(
                    r#"{{"type":"inbox","items":[{{"inbox_id":41,"received_at":1700000000000,"payload":{sealed}}}]}}"#
                ),
            ),
            (
                ServerFrame::SyncPage {
                    id,
                    group,
                    ops: vec![zero_op()],
                    messages: vec![StoredMessage {
                        seq: Seq(121),
                        received_at: Timestamp(1_700_000_000_000),
                        envelope: zero_envelope(),
                    }],
                    next_op_seq: 6,
                    next_seq: Seq(122),
                    complete: true,
                },
                format!(
                    r#"{{"type":"sync_page","id":7,"group":"{ZERO16}","ops":[{op}],"messages":[{{"seq":121,"received_at":1700000000000,"envelope":{envelope}}}],"next_op_seq":6,"next_seq":122,"complete":true}}"#
                ),
            ),
            (
                ServerFrame::Groups {
                    id,
                    groups: vec![GroupSummary { group, op_head_seq: 5, last_seq: Seq(121) }],
                },
                format!(
                    r#"{{"type":"groups","id":7,"groups":[{{"group":"{ZERO16}","op_head_seq":5,"last_seq":121}}]}}"#
                ),
            ),
            (
                ServerFrame::Devices {
                    id,
                    devices: vec![DeviceInfo {
                        user: UserId([0; 16]),
                        keys: zero_keys(),
                        display_name: "Ana".into(),
                    }],
                    device_lists: vec![],
                },
                format!(
                    r#"{{"type":"devices","id":7,"devices":[{{"user":"{ZERO16}","keys":{keys},"display_name":"Ana"}}]}}"#
                ),
            ),
            (ServerFrame::Pong { id }, r#"{"type":"pong","id":7}"#.into()),
            (
                ServerFrame::LinkData {
                    channel: [0; 32],
                    data: Some(b"{}".to_vec()),
                },
                format!(r#"{{"type":"link_data","channel":"{ZERO32}","data":"e30="}}"#),
            ),
            (
                                ServerFrame::DeviceListChain {
                    id,
                    lists: vec![zero_list()],
                },
                format!(
                    r#"{{"type":"device_list_chain","id":7,"lists":[{{"list":"e30=","sig":"{ZERO64}","by_sig":"{ZERO64}"}}]}}"#
                ),
            ),
            (
                ServerFrame::LinkClosed { channel: [0; 32] },
                format!(r#"{{"type":"link_closed","channel":"{ZERO32}"}}"#),
            ),
            (
                ServerFrame::DeviceList { list: zero_list() },
                format!(
                    r#"{{"type":"device_list","list":{{"list":"e30=","sig":"{ZERO64}","by_sig":"{ZERO64}"}}}}"#
                ),
            ),
            (
                ServerFrame::GoingAway { reason: "server shutting down".into() },
                r#"{"type":"going_away","reason":"server shutting down"}"#.into(),
            ),
        ]
    }

    #[test]
    fn client_frames_serialize_to_pinned_json() -> TestResult {
        for (frame, expected) in client_examples() {
            assert_eq!(frame.to_json()?, expected, "{}", frame.type_name());
            assert_eq!(
                ClientFrame::from_json(&expected, DEFAULT_MAX_CLIENT_FRAME_BYTES)?,
                frame
            );
        }
        Ok(())
    }

    #[test]
    fn server_frames_serialize_to_pinned_json() -> TestResult {
        for (frame, expected) in server_examples() {
            assert_eq!(frame.to_json()?, expected, "{}", frame.type_name());
            assert_eq!(
                ServerFrame::from_json(&expected, DEFAULT_MAX_SERVER_FRAME_BYTES)?,
                frame
            );
        }
        Ok(())
    }

    /// A sync page is read straight into its fields (`SyncPageFields`), not through serde's
    /// buffering of tagged enums; it reads as before: its fields in any order, unknown ones
    /// ignored, an escaped `type` understood, another frame type never taken for a page, and
    /// a damaged page refused with the same error.
    #[test]
    fn a_sync_page_reads_the_same_whatever_its_field_order() -> TestResult {
        let (page, json) = server_examples()
            .into_iter()
            .find(|(f, _)| f.type_name() == "sync_page")
            .ok_or("no sync page example")?;
        let body = json
            .strip_prefix(r#"{"type":"sync_page","#)
            .ok_or("the example does not start with its type")?;
        let read = |text: &str| ServerFrame::from_json(text, DEFAULT_MAX_SERVER_FRAME_BYTES);
        for text in [
            format!(
                r#"{{{}"type":"sync_page"}}"#,
                body.replace(r#""complete":true}"#, r#""complete":true,"#)
            ),
            format!(r#"{{"later":[1,{{"x":null}}],"type":"sync_page",{body}"#),
        ] {
            assert_eq!(read(&text)?, page, "{text}");
            assert!(ServerFrame::sync_page_directly(&text).is_some(), "{text}");
        }
        // Another type with a page's fields is that type, or refused as it would be.
        let pong = format!(r#"{{"type":"pong",{body}"#);
        assert_eq!(read(&pong)?, ServerFrame::Pong { id: RequestId(7) });
        assert!(ServerFrame::sync_page_directly(&pong).is_none());
        // A page without `complete`: refused exactly as the generic reading refuses it.
        let damaged = json.replace(r#","complete":true"#, "");
        let generic = parse::<ServerFrame>(&damaged, usize::MAX, &ServerFrame::TYPES);
        let direct = read(&damaged);
        assert!(ServerFrame::sync_page_directly(&damaged).is_none());
        assert!(matches!(
            direct,
            Err(FrameError::Malformed {
                id: Some(RequestId(7)),
                ..
            })
        ));
        assert_eq!(direct, generic);
        // Too long is refused before anything is read.
        assert!(matches!(
            ServerFrame::from_json(&json, json.len() - 1),
            Err(FrameError::TooLarge { .. })
        ));
        Ok(())
    }

    /// `TYPES` lists exactly the variants: the examples cover every type once.
    #[test]
    fn type_lists_match_the_variants() {
        let client: BTreeSet<_> = client_examples()
            .iter()
            .map(|(f, _)| f.type_name())
            .collect();
        assert_eq!(client, ClientFrame::TYPES.into_iter().collect());
        assert_eq!(client.len(), ClientFrame::TYPES.len());
        let server: BTreeSet<_> = server_examples()
            .iter()
            .map(|(f, _)| f.type_name())
            .collect();
        assert_eq!(server, ServerFrame::TYPES.into_iter().collect());
        assert_eq!(server.len(), ServerFrame::TYPES.len());
    }

    #[test]
    fn request_ids_are_echoed_and_pushes_have_none() {
        for (frame, _) in client_examples() {
            assert_eq!(frame.request_id(), RequestId(7));
        }
        for (frame, _) in server_examples() {
            let expected = match &frame {
                ServerFrame::Challenge { .. }
                | ServerFrame::Message { .. }
                | ServerFrame::Op { .. }
                | ServerFrame::Inbox { .. }
                | ServerFrame::LinkData { .. }
                | ServerFrame::LinkClosed { .. }
                | ServerFrame::DeviceList { .. }
                | ServerFrame::GoingAway { .. } => None,
                ServerFrame::Error { id, .. } => *id,
                _ => Some(RequestId(7)),
            };
            assert_eq!(frame.request_id(), expected, "{}", frame.type_name());
        }
    }

    #[test]
    fn error_codes_are_pinned() -> TestResult {
        let wire = [
            "bad_frame",
            "unknown_frame",
            "frame_too_large",
            "unsupported_version",
            "not_authenticated",
            "already_authenticated",
            "auth_failed",
            "registration_closed",
            "already_registered",
            "unknown_device",
            "invalid_op",
            "op_conflict",
            "no_such_group",
            "group_exists",
            "not_member",
            "invite_revoked",
            "invite_expired",
            "invite_used_up",
            "banned",
            "muted",
            "locked",
            "slow_mode",
            "agreement_required",
            "stale_epoch",
            "bad_envelope",
            "message_too_large",
            "rate_limited",
            "too_many_connections",
            "inbox_full",
            "limit_reached",
            "device_list_refused",
            "device_unlinked",
            "link_busy",
            "link_unknown",
            "storage",
            "shutting_down",
            "internal",
        ];
        assert_eq!(ErrorCode::ALL.map(ErrorCode::as_str), wire);
        for code in ErrorCode::ALL {
            assert_eq!(
                serde_json::to_string(&code)?,
                format!("\"{}\"", code.as_str())
            );
            assert_eq!(
                serde_json::from_str::<ErrorCode>(&format!("\"{code}\""))?,
                code
            );
        }
        Ok(())
    }

    #[test]
    fn unknown_error_code_from_a_newer_server_still_parses() -> TestResult {
        let json = r#"{"type":"error","id":3,"code":"from_the_future","message":"?"}"#;
        let frame = ServerFrame::from_json(json, DEFAULT_MAX_SERVER_FRAME_BYTES)?;
        assert_eq!(
            frame,
            ServerFrame::error(Some(RequestId(3)), ErrorCode::Unrecognized, "?")
        );
        Ok(())
    }

    // --- rejection ----------------------------------------------------------------------------

    fn client_err(json: &str) -> FrameError {
        match ClientFrame::from_json(json, DEFAULT_MAX_CLIENT_FRAME_BYTES) {
            Ok(frame) => FrameError::Encode(format!("unexpectedly parsed as {frame:?}")),
            Err(error) => error,
        }
    }

    #[test]
    fn malformed_json_is_bad_frame() {
        for json in [
            "",
            "{",
            r#"{"type":"ping","id":"#,
            "null",
            "[1,2]",
            r#""ping""#,
            "{}",
        ] {
            let error = client_err(json);
            assert!(
                matches!(error, FrameError::Malformed { id: None, .. }),
                "{json}: {error:?}"
            );
            assert_eq!(error.code(), ErrorCode::BadFrame);
        }
    }

    #[test]
    fn missing_or_non_string_type_is_bad_frame_and_keeps_the_id() {
        for json in [
            r#"{"id":3}"#,
            r#"{"type":7,"id":3}"#,
            r#"{"type":null,"id":3}"#,
        ] {
            let error = client_err(json);
            assert!(
                matches!(
                    error,
                    FrameError::Malformed {
                        id: Some(RequestId(3)),
                        ..
                    }
                ),
                "{json}: {error:?}"
            );
            assert_eq!(error.code(), ErrorCode::BadFrame);
        }
    }

    #[test]
    fn unknown_type_is_unknown_frame_and_keeps_the_id() {
        let error = client_err(r#"{"type":"launch","id":9}"#);
        assert_eq!(
            error,
            FrameError::UnknownType {
                id: Some(RequestId(9)),
                type_name: "launch".into()
            }
        );
        assert_eq!(error.code(), ErrorCode::UnknownFrame);
        // A server frame sent to the server is unknown there, and vice versa.
        assert!(matches!(
            client_err(r#"{"type":"pong","id":1}"#),
            FrameError::UnknownType { .. }
        ));
        let reversed = ServerFrame::from_json(r#"{"type":"ping","id":1}"#, 1000);
        assert!(matches!(
            reversed,
            Err(FrameError::UnknownType {
                id: Some(RequestId(1)),
                ..
            })
        ));
        // No id to echo.
        assert!(matches!(
            client_err(r#"{"type":"launch"}"#),
            FrameError::UnknownType { id: None, .. }
        ));
    }

    #[test]
    fn wrong_field_types_are_bad_frame_and_keep_the_id_when_readable() {
        let short_group =
            r#"{"type":"sync","id":4,"group":"AAAA","after_seq":0,"limit":10}"#.to_owned();
        let bad_base64 = format!(
            r#"{{"type":"sync","id":4,"group":"!!{}","after_seq":0,"limit":10}}"#,
            &ZERO16[2..]
        );
        let negative =
            format!(r#"{{"type":"sync","id":4,"group":"{ZERO16}","after_seq":0,"limit":-1}}"#);
        let string_seq =
            format!(r#"{{"type":"sync","id":4,"group":"{ZERO16}","after_seq":"0","limit":1}}"#);
        let missing = format!(r#"{{"type":"sync","id":4,"group":"{ZERO16}","limit":1}}"#);
        for json in [short_group, bad_base64, negative, string_seq, missing] {
            let error = client_err(&json);
            assert!(
                matches!(
                    error,
                    FrameError::Malformed {
                        id: Some(RequestId(4)),
                        ..
                    }
                ),
                "{json}: {error:?}"
            );
            assert_eq!(error.code(), ErrorCode::BadFrame);
        }
        // An id that is not a u64 cannot be echoed.
        for json in [
            r#"{"type":"ping","id":"seven"}"#,
            r#"{"type":"ping","id":-1}"#,
            r#"{"type":"ping"}"#,
        ] {
            assert!(
                matches!(client_err(json), FrameError::Malformed { id: None, .. }),
                "{json}"
            );
        }
    }

    #[test]
    fn duplicate_fields_are_rejected() {
        assert!(matches!(
            client_err(r#"{"type":"ping","id":1,"id":2}"#),
            FrameError::Malformed { .. }
        ));
        assert!(matches!(
            client_err(r#"{"type":"ping","type":"ping","id":1}"#),
            FrameError::Malformed { .. }
        ));
    }

    #[test]
    fn client_frames_reject_unknown_fields_server_frames_ignore_them() -> TestResult {
        let error = client_err(r#"{"type":"ping","id":1,"urgent":true}"#);
        assert!(
            matches!(
                error,
                FrameError::Malformed {
                    id: Some(RequestId(1)),
                    ..
                }
            ),
            "{error:?}"
        );
        let nested = format!(
            r#"{{"type":"sync","id":2,"group":"{ZERO16}","after_seq":0,"limit":1,"expires":5}}"#
        );
        assert!(matches!(
            client_err(&nested),
            FrameError::Malformed {
                id: Some(RequestId(2)),
                ..
            }
        ));

        let pong = ServerFrame::from_json(r#"{"type":"pong","id":1,"server_load":0.5}"#, 1000)?;
        assert_eq!(pong, ServerFrame::Pong { id: RequestId(1) });
        let summary = format!(
            r#"{{"type":"groups","id":1,"groups":[{{"group":"{ZERO16}","op_head_seq":0,"last_seq":0,"name_hint":"x"}}]}}"#
        );
        assert!(matches!(
            ServerFrame::from_json(&summary, 1000)?,
            ServerFrame::Groups { .. }
        ));
        Ok(())
    }

    #[test]
    fn optional_fields_may_be_absent_or_null() -> TestResult {
        let sync = format!(
            r#"{{"type":"sync","id":2,"group":"{ZERO16}","after_op_seq":null,"after_seq":0,"limit":1}}"#
        );
        let parsed = ClientFrame::from_json(&sync, DEFAULT_MAX_CLIENT_FRAME_BYTES)?;
        assert!(matches!(
            parsed,
            ClientFrame::Sync {
                after_op_seq: None,
                ..
            }
        ));
        let error =
            ServerFrame::from_json(r#"{"type":"error","code":"internal","message":""}"#, 1000)?;
        assert_eq!(error.request_id(), None);
        Ok(())
    }

    #[test]
    fn oversized_frames_are_refused_before_parsing() -> TestResult {
        let ping = r#"{"type":"ping","id":1}"#;
        assert!(ClientFrame::from_json(ping, ping.len()).is_ok());
        let error = ClientFrame::from_json(ping, ping.len() - 1).err();
        assert_eq!(
            error,
            Some(FrameError::TooLarge {
                len: ping.len(),
                max: ping.len() - 1
            })
        );
        assert_eq!(error.map(|e| e.code()), Some(ErrorCode::FrameTooLarge));
        // Refused by length alone: oversized garbage is not a parse error.
        let garbage = "x".repeat(DEFAULT_MAX_CLIENT_FRAME_BYTES + 1);
        assert!(matches!(
            ClientFrame::from_json(&garbage, DEFAULT_MAX_CLIENT_FRAME_BYTES),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(matches!(
            ServerFrame::from_json(ping, 3),
            Err(FrameError::TooLarge { len: 22, max: 3 })
        ));
        Ok(())
    }

    #[test]
    fn per_frame_limits_are_enforced_with_the_id() -> TestResult {
        let sealed = ClientFrame::SendSealed {
            id: RequestId(5),
            items: vec![zero_sealed(); MAX_SEALED_PER_FRAME + 1],
        };
        let error = client_err(&sealed.to_json()?);
        assert_eq!(
            error,
            FrameError::TooManyItems {
                id: RequestId(5),
                field: "items",
                len: MAX_SEALED_PER_FRAME + 1,
                max: MAX_SEALED_PER_FRAME
            }
        );
        assert_eq!(error.code(), ErrorCode::FrameTooLarge);
        let at_limit = ClientFrame::SendSealed {
            id: RequestId(5),
            items: vec![zero_sealed(); MAX_SEALED_PER_FRAME],
        };
        assert_eq!(at_limit.validate(), Ok(()));

        let acks = ClientFrame::AckInbox {
            id: RequestId(5),
            inbox_ids: vec![1; MAX_INBOX_ACKS_PER_FRAME + 1],
        };
        assert!(matches!(
            acks.validate(),
            Err(FrameError::TooManyItems {
                field: "inbox_ids",
                ..
            })
        ));
        let lookup = ClientFrame::LookupUsers {
            id: RequestId(5),
            users: vec![UserId([0; 16]); MAX_LOOKUP_PER_FRAME + 1],
        };
        assert!(matches!(
            lookup.validate(),
            Err(FrameError::TooManyItems { field: "users", .. })
        ));
        let lookup = ClientFrame::LookupDevices {
            id: RequestId(5),
            devices: vec![DeviceId([0; 32]); MAX_LOOKUP_PER_FRAME + 1],
        };
        assert!(matches!(
            lookup.validate(),
            Err(FrameError::TooManyItems {
                field: "devices",
                ..
            })
        ));

        let sync = ClientFrame::Sync {
            id: RequestId(6),
            group: GroupId([0; 16]),
            after_op_seq: None,
            after_seq: Seq(0),
            limit: 0,
            invite: None,
        };
        let error = client_err(&sync.to_json()?);
        assert!(matches!(
            error,
            FrameError::Invalid {
                id: RequestId(6),
                field: "limit",
                ..
            }
        ));
        assert_eq!(error.code(), ErrorCode::BadFrame);

        let register =
            |display_name: String, registration_token: Option<String>| ClientFrame::Register {
                id: RequestId(8),
                version: PROTOCOL_VERSION,
                user: UserId([0; 16]),
                display_name,
                keys: zero_keys(),
                registration_token,
                device_list: None,
                signature: Signature([0; 64]),
            };
        assert_eq!(
            register("é".repeat(MAX_DISPLAY_NAME_BYTES / 2), None).validate(),
            Ok(())
        );
        for frame in [
            register(String::new(), None),
            register("x".repeat(MAX_DISPLAY_NAME_BYTES + 1), None),
            register(
                "Ana".into(),
                Some("t".repeat(MAX_REGISTRATION_TOKEN_BYTES + 1)),
            ),
        ] {
            let error = client_err(&frame.to_json()?);
            assert!(
                matches!(
                    error,
                    FrameError::Invalid {
                        id: RequestId(8),
                        ..
                    }
                ),
                "{error:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn error_frames_echo_the_id_and_bound_the_detail() -> TestResult {
        let error = client_err(r#"{"type":"launch","id":9}"#);
        assert_eq!(
            error.to_error_frame(),
            ServerFrame::error(
                Some(RequestId(9)),
                ErrorCode::UnknownFrame,
                "unknown frame type \"launch\""
            )
        );
        // The parser quotes the offending value; the error frame repeats only a bounded part.
        let huge = format!(r#"{{"type":"ping","id":"{}"}}"#, "A".repeat(100_000));
        let ServerFrame::Error {
            id, code, message, ..
        } = client_err(&huge).to_error_frame()
        else {
            return Err("not an error frame".into());
        };
        assert_eq!((id, code), (None, ErrorCode::BadFrame));
        assert!(
            message.chars().count() < MAX_ERROR_DETAIL_CHARS + 40,
            "{}",
            message.len()
        );
        let long_type = format!(r#"{{"type":"{}","id":1}}"#, "é".repeat(10_000));
        let FrameError::UnknownType { type_name, .. } = client_err(&long_type) else {
            return Err("not an unknown type".into());
        };
        assert_eq!(type_name.chars().count(), MAX_TYPE_NAME_CHARS + 1);
        Ok(())
    }

    #[test]
    fn sync_from_continues_after_a_page() {
        let group = GroupId([1; 16]);
        assert_eq!(
            ClientFrame::sync_from(RequestId(1), group, 0, Seq(1), 50),
            ClientFrame::Sync {
                id: RequestId(1),
                group,
                after_op_seq: None,
                after_seq: Seq(0),
                limit: 50,
                invite: None,
            }
        );
        assert_eq!(
            ClientFrame::sync_from(RequestId(2), group, 6, Seq(122), 50),
            ClientFrame::Sync {
                id: RequestId(2),
                group,
                after_op_seq: Some(5),
                after_seq: Seq(121),
                limit: 50,
                invite: None,
            }
        );
    }

    // --- authentication -----------------------------------------------------------------------

    #[test]
    fn auth_message_layout_is_pinned() {
        let message = auth_message("ex", &[7; 32], &DeviceId([9; 32]));
        let mut expected = vec![0, 2, b'e', b'x'];
        expected.extend([7; 32]);
        expected.extend([9; 32]);
        assert_eq!(message, expected);
    }

    #[test]
    fn auth_signature_binds_server_nonce_and_device() {
        let identity = DeviceIdentity::generate(&mut test_rng(11));
        let other = DeviceIdentity::generate(&mut test_rng(12));
        let device = identity.device_id();
        let nonce = [3u8; 32];
        let sig = sign_auth(&identity, "chat.example.org", &nonce);
        assert_eq!(
            verify_auth(&device, "chat.example.org", &nonce, &sig),
            Ok(())
        );
        assert_eq!(
            verify_auth(&device, "chat.example.org", &[4u8; 32], &sig),
            Err(CryptoError::BadSignature)
        );
        assert_eq!(
            verify_auth(&device, "evil.example.org", &nonce, &sig),
            Err(CryptoError::BadSignature)
        );
        assert_eq!(
            verify_auth(&other.device_id(), "chat.example.org", &nonce, &sig),
            Err(CryptoError::BadSignature)
        );
        // A signature over the same bytes under another label is not an auth answer.
        let message = auth_message("chat.example.org", &nonce, &device);
        let wrong_label = identity.sign("confide/v1/other", &[&message]);
        assert_eq!(
            verify_auth(&device, "chat.example.org", &nonce, &wrong_label),
            Err(CryptoError::BadSignature)
        );
    }
}
