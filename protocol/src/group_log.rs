//! The group log: signed, hash-chained operations of membership and moderation.
//!
//! Every group has an append-only log of [`Op`]s. The first op is a genesis op naming the group
//! and its creator (the first facilitator); every later op names the group, its position
//! (`seq`), the hash of the op before it (`prev`), its author device, the author's claimed time
//! and a typed [`OpBody`]. The server stores and relays the log and enforces it (who may post,
//! when, how often); every client replays and verifies the whole chain itself, and shares sender
//! keys only with the devices that the verified log lists ([`GroupState::current_devices`]).
//! The log doubles as the audit log of moderation: who did what and when, never message content.
//!
//! # Wire form, signature and hash
//!
//! An op travels and is stored as a [`SignedOp`]: `op` holds the exact UTF-8 JSON bytes of an
//! [`Op`] (base64 in JSON), `sig` the author device's Ed25519 signature over
//! `"confide/v1/op" || 0x00 || op` ([`LABEL_OP`]). The hash that chains ops together is
//! `SHA-256("confide/v1/op-hash" || 0x00 || op)` ([`LABEL_OP_HASH`], [`SignedOp::hash`]).
//! Because both are computed over the exact bytes, no canonical JSON is needed: a verifier
//! rejects ops longer than [`MAX_OP_BYTES`], reads only the `v` and `author` fields to learn
//! which key to check, verifies the signature over the exact bytes, and only then parses the
//! whole op ([`SignedOp::verify`]). Unknown fields are rejected.
//!
//! # Replay
//!
//! [`GroupState::from_genesis`] starts a state from the genesis op (`seq` 0, `prev` all zeros);
//! [`GroupState::apply`] applies the next op atomically (on error the state is unchanged);
//! [`verify_log`] replays a whole log. An op is accepted only if, in this order:
//!
//! 1. it is at most [`MAX_OP_BYTES`] long and its signature verifies under its `author`;
//! 2. its version `v` is [`OP_VERSION`] and it parses completely;
//! 3. it names this group, has `seq` = previous `seq` + 1 and `prev` = hash of the previous op
//!    (a different op at an already applied `seq` is reported as a [`LogError::Fork`]), and its
//!    `at` is not backdated (see [Time](#time));
//! 4. its author is a device of a current member ([`OpBody::Join`] excepted: it is authored by
//!    the joining device), and the author's role may sign this kind of op ([`allowed`]);
//! 5. the op's own rules (documented on each [`OpBody`] variant) hold, and it changes the state:
//!    an op that would leave the replayed state exactly as it is (`lock` when locked, accepting an
//!    agreement version already accepted, setting a value to its current value, …) is rejected
//!    with [`LogError::NoChange`], so that nobody can grow the log with no-ops.
//!
//! # Policy
//!
//! | op | facilitator | co-facilitator | member |
//! |---|:-:|:-:|:-:|
//! | `invite`, `revoke_invite`, `add` | yes | yes | no |
//! | `remove` (incl. ban), `mute`, `unmute` | yes | plain members only | no |
//! | `lock`, `unlock`, `set_open_hours`, `set_slow_mode`, `delete_messages` | yes | yes | no |
//! | `set_pinned`, `open_round`, `close_round` | yes | yes | no |
//! | `unban`, `set_role`, `set_agreement`, `set_retention`, `set_settings`, `set_crisis_resources` | yes | no | no |
//! | `accept_agreement`, `leave`, `update_devices` (own list only), `rekey` | yes | yes | yes |
//! | `join` | authored by the joining device, which is not yet a member | | |
//! | `genesis` | only as the first op | | |
//!
//! Besides the table: only a facilitator may remove, ban, mute or unmute a facilitator or
//! co-facilitator (`unmute` of a user who is no longer a member has no such target rule: they
//! hold no role); nobody removes themselves with `remove` (they `leave`); and the group always
//! keeps at least one facilitator while it has other members (demoting the last facilitator,
//! or the last facilitator leaving, is rejected with [`LogError::LastFacilitator`]). The last
//! facilitator may leave only when alone; the group then has no facilitator and nobody can
//! `join` or be `add`ed any more ([`LogError::NoFacilitator`]), whatever invites remain.
//!
//! A ban covers the user and every device they had when banned
//! ([`GroupState::is_device_banned`]): a `join` or `add` listing such a device is rejected with
//! [`LogError::BannedDevice`], so a banned person cannot come back under a new user id with the
//! same device. A mute belongs to the user, not to the membership: it survives `leave`,
//! `remove` and rejoining, and ends only at its time or by `unmute`.
//!
//! # Epochs
//!
//! `join`, `add`, `remove`, `leave`, `update_devices` and `rekey` each start a new epoch
//! ([`Epoch::next`]); nothing else does ([`OpBody::changes_epoch`]). After a new epoch every member sends a fresh sender key,
//! sealed only to [`GroupState::current_devices`].
//!
//! `rekey` changes nothing but the epoch: clients append it by themselves after many messages
//! or a long time in one epoch, so that a sender key that leaked stops working (PROTOCOL.md
//! §5.5). It is refused ([`LogError::RekeyTooSoon`]) unless its `at` is at least
//! [`MIN_REKEY_INTERVAL_MS`] after the `at` of the op that started the current epoch and no
//! earlier than the log's latest `at` (a `rekey` is never back-dated)
//! ([`GroupState::earliest_rekey_at`]), which bounds how often one member can make every device
//! seal a new key. The server also bounds it on its own clock (PROTOCOL.md §10.1).
//!
//! Each epoch is named by its epoch hash ([`GroupState::epoch_hash`]): the hash of the op that
//! started it, i.e. the genesis hash for epoch 0 and otherwise the hash of the membership op
//! that moved the group into it. Unlike the epoch number, the epoch hash pins down the exact
//! history (and so the exact member list) of the epoch, so messages can be bound to it.
//! [`GroupState::previous_epoch`] keeps the epoch number and hash just before the current one,
//! for messages sent across an epoch change.
//!
//! # Time
//!
//! `at` is the author's claimed time; the crate has no clock. Replay uses it for invite expiry
//! and to check that a mute ends after it starts. The server, which has a clock, should refuse
//! ops whose `at` is more than [`MAX_CLOCK_SKEW_MS`] from its own time ([`Op::check_clock`]),
//! so that a joiner cannot back-date a join to use an expired invite.
//!
//! Replay also bounds `at` by the log itself, so that the rule does not rest on the server
//! alone: every op after genesis must have `at` ≥ [`GroupState::latest_at`] −
//! [`MAX_CLOCK_SKEW_MS`], where `latest_at` is the latest `at` of any op already in the log
//! (genesis included); otherwise it is rejected with [`LogError::Backdated`]. Times may thus
//! go backwards by at most the skew, never step by step further. A client writing an op claims
//! the later of its own clock and [`GroupState::min_next_at`]; the latter is never ahead of the
//! server's time when every earlier op passed [`Op::check_clock`], so the server accepts it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use ed25519_dalek::{Signer as _, SigningKey};
use serde::{Deserialize, Serialize};
use zeroize::{ZeroizeOnDrop, Zeroizing};

use crate::device_list::{DeviceList, DeviceListHash, IdentityKey, SignedDeviceList};
use crate::encoding::{b64, b64_array};
use crate::identity::{self, DeviceIdentity, DeviceKeys, Signature};
use crate::ids::{
    DeviceId, Epoch, GroupId, InviteId, MessageId, OpHash, RoundId, Timestamp, UserId,
};
use crate::primitives::{hash, labelled};

/// Label of the author's signature over an op's bytes.
pub const LABEL_OP: &str = "confide/v1/op";
/// Label of the hash that chains ops (`prev`) and identifies them.
pub const LABEL_OP_HASH: &str = "confide/v1/op-hash";
/// Label of the invite key's signature in a join: over `group (16) || user (16) || device (32)`.
pub const LABEL_JOIN: &str = "confide/v1/join";
/// Label of an invite holder's proof, when fetching a group's log before joining.
pub const LABEL_INVITE_SYNC: &str = "confide/v1/invite-sync";

/// The op format version this crate writes and accepts.
pub const OP_VERSION: u8 = 1;
/// Largest accepted op, in bytes of JSON (256 KiB); checked before anything else. Room for an
/// `update_devices` whose chain carries [`MAX_UPDATE_CHAIN`] full lists of 8 devices with their
/// X-Wing keys (each up to 20 KiB, a third more as base64: about 190 KiB in all); 64 KiB before
/// protocol version 2.
pub const MAX_OP_BYTES: usize = 256 * 1024;
/// Most devices one member may list.
pub const MAX_DEVICES_PER_USER: usize = 8;
/// Longest display name, in Unicode scalar values.
pub const MAX_DISPLAY_NAME_CHARS: usize = 64;
/// Longest IANA time-zone name in [`OpenHours`], in characters.
pub const MAX_TIME_ZONE_CHARS: usize = 64;
/// Most windows in one [`OpenHours`] schedule.
pub const MAX_OPEN_WINDOWS: usize = 64;
/// Minutes in a day: the exclusive upper bound of a window's start and the inclusive upper
/// bound of its end.
pub const MINUTES_PER_DAY: u16 = 1440;
/// Longest slow-mode interval, in seconds (one day).
pub const MAX_SLOW_MODE_SECONDS: u32 = 86_400;
/// Most messages one `delete_messages` op may name.
pub const MAX_DELETE_BATCH: usize = 500;
/// How far (in ms) an op's claimed time may be from the server's clock when the server accepts
/// it (five minutes). See [`Op::check_clock`].
pub const MAX_CLOCK_SKEW_MS: u64 = 5 * 60 * 1000;
/// How long (in ms) after the `at` of the op that started the current epoch a `rekey` may
/// claim to be, at the earliest (one minute; nor may it claim less than the log's latest `at`).
/// Each rekey costs every device one seal per other device (PROTOCOL.md §8.5); the server also
/// holds a member to one a minute on its own clock (its `min_rekey_interval_ms`).
pub const MIN_REKEY_INTERVAL_MS: u64 = 60 * 1000;

/// One op as it travels and is stored: the op's exact bytes (UTF-8 JSON of [`Op`]) and the
/// author's signature over them. Verifiers check the signature over these bytes and only then
/// parse them, so no canonical JSON is needed.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct SignedOp {
    /// The op's bytes: UTF-8 JSON of an [`Op`].
    #[serde(with = "b64")]
    pub op: Vec<u8>,
    /// The author device's signature over `"confide/v1/op" || 0x00 || op`.
    pub sig: Signature,
}

/// The two fields a verifier reads before the signature is checked: the version (to refuse
/// an unknown format cleanly) and the author (whose key checks the signature).
#[derive(Deserialize)]
struct OpHeader {
    v: u8,
    author: DeviceId,
}

impl SignedOp {
    /// The op's hash, `SHA-256("confide/v1/op-hash" || 0x00 || op)`: what the next op's `prev`
    /// must be.
    pub fn hash(&self) -> OpHash {
        OpHash(hash(LABEL_OP_HASH, &[&self.op]))
    }

    /// Checks the size and the author's signature over the exact bytes, then the version, and
    /// only then parses the op. Says nothing about whether the op fits a group's state: use
    /// [`GroupState::apply`] for that.
    pub fn verify(&self) -> Result<Op, LogError> {
        check_size(self.op.len())?;
        let header: OpHeader = serde_json::from_slice(&self.op).map_err(malformed)?;
        identity::verify(&header.author, LABEL_OP, &[&self.op], &self.sig)
            .map_err(|_| LogError::BadSignature)?;
        if header.v != OP_VERSION {
            return Err(LogError::UnsupportedVersion { got: header.v });
        }
        let op: Op = serde_json::from_slice(&self.op).map_err(malformed)?;
        if op.author != header.author {
            // The same parser read the same bytes twice; kept as a cheap guard all the same.
            return Err(LogError::Malformed("inconsistent author field".into()));
        }
        Ok(op)
    }

    /// Parses the op WITHOUT checking its signature: for display and diagnostics only, never
    /// for a decision. Still refuses ops above [`MAX_OP_BYTES`].
    pub fn parse_unverified(&self) -> Result<Op, LogError> {
        check_size(self.op.len())?;
        serde_json::from_slice(&self.op).map_err(malformed)
    }
}

fn check_size(len: usize) -> Result<(), LogError> {
    if len > MAX_OP_BYTES {
        return Err(LogError::TooLarge {
            len,
            max: MAX_OP_BYTES,
        });
    }
    Ok(())
}

fn malformed(e: serde_json::Error) -> LogError {
    LogError::Malformed(e.to_string())
}

/// One operation of the group log, as signed by its author. Serialized as JSON with the
/// fields in this order; byte strings are base64.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Op {
    /// Format version, [`OP_VERSION`] (1).
    pub v: u8,
    /// The group this op belongs to, fixed by the genesis op, so an op cannot be replayed into
    /// another group.
    pub group: GroupId,
    /// Position in the log: 0 for genesis, then exactly one more than the previous op.
    pub seq: u64,
    /// Hash of the previous op ([`SignedOp::hash`]); [`OpHash::ZERO`] for genesis.
    pub prev: OpHash,
    /// The device that signed this op.
    pub author: DeviceId,
    /// The author's claimed time (unix ms).
    pub at: Timestamp,
    /// What the op does.
    pub body: OpBody,
}

impl Op {
    /// A genesis op: `seq` 0, `prev` zero, the creator (who must own `author`) as facilitator.
    pub fn genesis(
        group: GroupId,
        author: DeviceId,
        at: Timestamp,
        creator: MemberEntry,
        settings: GroupSettings,
    ) -> Op {
        Op {
            v: OP_VERSION,
            group,
            seq: 0,
            prev: OpHash::ZERO,
            author,
            at,
            body: OpBody::Genesis { creator, settings },
        }
    }

    /// Serializes this op and signs the bytes with `identity`, which must be the op's author.
    /// Fails if the identity is not the author or the op is larger than [`MAX_OP_BYTES`].
    pub fn sign(&self, identity: &DeviceIdentity) -> Result<SignedOp, LogError> {
        if identity.device_id() != self.author {
            return Err(LogError::InvalidValue(
                "the signing identity is not the op's author".into(),
            ));
        }
        let op = serde_json::to_vec(self).map_err(malformed)?;
        check_size(op.len())?;
        let sig = identity.sign(LABEL_OP, &[&op]);
        Ok(SignedOp { op, sig })
    }

    /// For the server, which has a clock: refuses an op whose claimed time `at` is more than
    /// [`MAX_CLOCK_SKEW_MS`] away from `now`. Replay does not call this (an old log is valid).
    pub fn check_clock(&self, now: Timestamp) -> Result<(), LogError> {
        if self.at.0.abs_diff(now.0) > MAX_CLOCK_SKEW_MS {
            return Err(LogError::ClockSkew { at: self.at, now });
        }
        Ok(())
    }

    /// For the server, on a newly written op: refuses forms that replay still accepts in old
    /// logs but that no client may write any more. Today one: an `accept_agreement` without its
    /// `text_hash` (an acceptance must name the exact text that was shown).
    pub fn check_current_form(&self) -> Result<(), LogError> {
        if let OpBody::AcceptAgreement {
            text_hash: None, ..
        } = self.body
        {
            return Err(LogError::InvalidValue(
                "an acceptance must name the agreement's text_hash: update the app".into(),
            ));
        }
        Ok(())
    }
}

/// What an op does. JSON: an object whose `"type"` is the variant's snake_case name, next to
/// the variant's fields, e.g. `{"type":"mute","user":"…","until":1700000000000}`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum OpBody {
    /// The first op (`seq` 0, `prev` zero): creates the group in epoch 0 with `creator` as its
    /// only member and facilitator. The author must be one of the creator's devices.
    Genesis {
        /// The group's creator, its first facilitator.
        creator: MemberEntry,
        /// The group's initial settings.
        settings: GroupSettings,
    },
    /// Creates an invite whose secret half travels in an invite link. The id must be a valid
    /// Ed25519 public key not used by an earlier invite; `max_uses` ≥ 1; `expires_at` > `at`.
    Invite {
        /// The invite's Ed25519 public key.
        invite: InviteId,
        /// If true, the invite cannot be used to `join` directly: the joiner sends a sealed
        /// join request and a facilitator or co-facilitator `add`s them.
        requires_approval: bool,
        /// How many people may join (or be added) through this invite.
        max_uses: u32,
        /// The last moment (unix ms) at which a `join` may claim to use it.
        expires_at: Timestamp,
    },
    /// Revokes an existing, not yet revoked invite: no more joins or approvals through it.
    RevokeInvite {
        /// The invite to revoke.
        invite: InviteId,
    },
    /// A person joins through an invite link. Authored by the joining device itself, which must
    /// be the only device in `member.devices` ([`only_proven_device`]) — or, for an entry with a
    /// device list, one of its devices. Accepted only if the
    /// invite exists, is not revoked, does not require approval, `at` ≤ `expires_at`, and it
    /// has been used fewer than `max_uses` times; the group has a facilitator; the user is
    /// neither banned nor a member and no listed device is banned; the entry is valid
    /// ([`MemberEntry`]); and `invite_sig` is the invite key's signature over
    /// `"confide/v1/join" || 0x00 || group || user || device` with `device` the author.
    /// Uses the invite once; new epoch.
    Join {
        /// The invite used.
        invite: InviteId,
        /// Who joins, with their devices.
        member: MemberEntry,
        /// Proof of holding the invite's secret, bound to this group, user and device.
        invite_sig: Signature,
    },
    /// A facilitator or co-facilitator admits someone. The group must have a facilitator, the
    /// user must be neither banned (unban first) nor a member, no listed device may be banned,
    /// and the entry must be valid. When this approves a join request made
    /// through an invite, `invite` and `invite_sig` are both present: the invite must exist,
    /// not be revoked and not be used up (its expiry is not checked: a request made in time may
    /// be approved later), `invite_sig` must verify as for `join` with `device` the device that
    /// asked ([`requesting_device`]: the entry's only device, `invite_device` absent; or, for an
    /// entry with a device list, `invite_device`, one of its devices), and the invite's use
    /// count increments. `invite_device` is absent when `invite` is. New epoch.
    Add {
        /// Who is admitted, with their devices.
        member: MemberEntry,
        /// The invite the request came through, if any.
        invite: Option<InviteId>,
        /// The requester's invite signature (as for `join`), present exactly when `invite` is.
        invite_sig: Option<Signature>,
        /// The device that made the join request (PROTOCOL.md §8.5, §8.9), whose `invite_sig`
        /// this is: present exactly when `invite` is and the entry carries a device list, and
        /// then one of its devices. Omitted from the JSON when absent, so entries written before
        /// it keep their exact bytes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        invite_device: Option<DeviceId>,
    },
    /// Removes a member (not the author: use `leave`), and with `ban` keeps them, their pinned
    /// identity key and every device any of their entries or lists in this log ever named, from
    /// joining or being added again until unbanned. Only a facilitator may remove a facilitator
    /// or co-facilitator. Does not end the member's mute. New epoch.
    Remove {
        /// The member to remove.
        user: UserId,
        /// Also ban them.
        ban: bool,
    },
    /// Lifts a ban on the user and on the identity key and devices banned with them; the user
    /// must be banned.
    /// Facilitators only.
    Unban {
        /// The banned user.
        user: UserId,
    },
    /// The author's own user leaves with all their devices. The last facilitator cannot leave
    /// while other members remain (make someone else facilitator first); if they leave alone,
    /// nobody can join the group any more. Does not end the author's mute. New epoch.
    Leave {},
    /// Gives a member a role other than their current one. Facilitators only; demoting the last
    /// facilitator is rejected.
    SetRole {
        /// The member.
        user: UserId,
        /// The new role.
        role: Role,
    },
    /// Mutes a member until a time after `at`. Only a facilitator may mute a facilitator or
    /// co-facilitator. A later mute replaces an earlier one (it must end at another time). The
    /// mute stays with the user if they leave or are removed, and applies again if they rejoin.
    Mute {
        /// The member to mute.
        user: UserId,
        /// When the mute ends (unix ms); must be after the op's `at`.
        until: Timestamp,
    },
    /// Ends a user's mute early; the user must have a mute on record (expired or not). The user
    /// need not be a member any more (a mute outlives membership); if they are, only a
    /// facilitator may unmute a facilitator or co-facilitator.
    Unmute {
        /// The muted member.
        user: UserId,
    },
    /// Closes the chat by hand until `unlock`; the chat must not be locked.
    Lock {},
    /// Reopens a chat closed by `lock`; the chat must be locked.
    Unlock {},
    /// Sets (or with `null` removes) the hours in which the chat is open; must differ from the
    /// current schedule.
    SetOpenHours {
        /// The schedule; validated as documented on [`OpenHours`].
        schedule: Option<OpenHours>,
    },
    /// Each member may post at most once per `seconds` (0 = off, at most
    /// [`MAX_SLOW_MODE_SECONDS`]); must differ from the current interval.
    SetSlowMode {
        /// Minimum interval between one member's messages.
        seconds: u32,
    },
    /// Deletes messages for everyone (the server drops them; clients hide them). Names 1 to
    /// [`MAX_DELETE_BATCH`] messages.
    DeleteMessages {
        /// The messages to delete.
        messages: Vec<MessageId>,
    },
    /// Publishes a new version of the group agreement (its text travels encrypted; the log holds
    /// its keyed commitment, [`crate::envelope::pinned_commitment`]). Facilitators only.
    /// `version` must be exactly the previous version + 1 (the first agreement is version 1).
    SetAgreement {
        /// The new version.
        version: u32,
        /// The keyed commitment to the agreement text
        /// ([`crate::envelope::pinned_commitment`]).
        #[serde(with = "b64_array")]
        text_hash: [u8; 32],
    },
    /// The author's user accepts the agreement; `version` must be the current version, and one
    /// the author's user has not accepted yet. `text_hash`, when present, must be the current
    /// agreement's `text_hash`: it names the exact text the person was shown. Clients write it
    /// always and the server refuses a new acceptance without it ([`Op::check_current_form`]);
    /// replay accepts its absence, so logs written before it existed keep verifying.
    AcceptAgreement {
        /// The version accepted.
        version: u32,
        /// The `text_hash` of the agreement accepted (`SetAgreement::text_hash`).
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            with = "b64_array_opt"
        )]
        text_hash: Option<[u8; 32]>,
    },
    /// Sets how long messages are kept (`null` = no limit; 0 is rejected); must differ from the
    /// current retention. Facilitators only.
    SetRetention {
        /// Retention in seconds.
        seconds: Option<u64>,
    },
    /// Replaces the group settings with different ones. Facilitators only.
    SetSettings {
        /// The new settings.
        settings: GroupSettings,
    },
    /// Sets (or with `null` removes) the hash of the crisis-resources text shown to members (the
    /// text travels encrypted); must differ from the current one. Facilitators only.
    SetCrisisResources {
        /// SHA-256 of the crisis-resources text.
        #[serde(with = "b64_array_opt")]
        text_hash: Option<[u8; 32]>,
    },
    /// The author's user replaces their own device list (PROTOCOL.md §8.5): links or unlinks a
    /// device. Any role. Rules, in this order: the list is valid (`invalid_member`); it names
    /// the author's user (`not_allowed`); if the member's entry already carries a list, the new
    /// one has the same identity key ([`LogError::IdentityChanged`]), a greater version
    /// (`invalid_value`) and another set of devices, order ignored (`no_change`); if it carries
    /// none, the new list lists the author (`invalid_member`); the identity key is not banned
    /// (`banned`) nor pinned for another current member (`invalid_member`); no listed device
    /// is banned (`banned_device`) or belongs to another current member (`invalid_member`).
    /// The member's devices become the list's and the list is pinned (with its identity key,
    /// for an entry that had none); role, mute and accepted agreement stay. The author may drop
    /// its own device. A dropped device departs as in a `remove` (its epoch gets no grace,
    /// [`AppliedOp::grants_epoch_grace`]); one that only adds devices is treated like an `add`.
    /// New epoch.
    UpdateDevices {
        /// The member's new device list.
        device_list: SignedDeviceList,
        /// The lists between the one the log pins and `device_list`, oldest first (at most
        /// [`MAX_UPDATE_CHAIN`]): each must succeed the one before (PROTOCOL.md §8.5), so that a
        /// list out of the person's chain (a fork made with a stolen identity key) never
        /// replaces the one the log holds.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        chain: Vec<SignedDeviceList>,
    },
    /// Publishes a new version of a group-work document (the meeting schedule, the warning
    /// topics or the resource library), or with `null` removes it: `text_hash` is the keyed
    /// commitment [`crate::envelope::pinned_commitment`] to the document, which travels
    /// encrypted as a pinned message. Rules: `kind` is one of those three (`invalid_value`);
    /// `version` = the kind's current version + 1, the first 1 (`invalid_value`); `text_hash`
    /// differs from the current one (`no_change`). Facilitators and co-facilitators.
    SetPinned {
        /// Which document.
        kind: crate::envelope::PinnedKind,
        /// Its new version.
        version: u32,
        /// The commitment to its text, or `null` to remove it.
        #[serde(with = "b64_array_opt")]
        text_hash: Option<[u8; 32]>,
    },
    /// Opens a check-in round; the prompt travels encrypted as a text message tagged with the
    /// round ([`crate::group_work::RoundTag`]). Rules: the id was never used in this log
    /// (`invalid_value`); no round is open at `at` (`invalid_value`); `closes_at`, if present,
    /// is after `at` and at most [`crate::group_work::MAX_ROUND_MILLIS`] later
    /// (`invalid_value`). Facilitators and co-facilitators.
    OpenRound {
        /// The round's id, fresh random bytes.
        round: RoundId,
        /// When it closes by itself, if it does.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        closes_at: Option<Timestamp>,
    },
    /// Closes an open round by hand. Rules: the round is open at `at` (`invalid_value`).
    /// Facilitators and co-facilitators.
    CloseRound {
        /// The round.
        round: RoundId,
    },
    /// Starts the next epoch with the same members and devices (PROTOCOL.md §5.5, §8.5): every
    /// device then seals a fresh sender chain, so a sender key that leaked stops working.
    /// Signed by a device of any current member, of any role, muted or not. Rules: `at` is at
    /// least [`MIN_REKEY_INTERVAL_MS`] after the `at` of the op that started the current epoch,
    /// and not before the log's latest `at` ([`LogError::RekeyTooSoon`]). The epoch it ends gets the grace of an admission
    /// ([`Self::grants_epoch_grace`]): nobody left. New epoch.
    Rekey {},
}

/// Most lists an `update_devices` carries between the pinned list and the new one: a device
/// further behind appends several ops (each list is at most 20 KiB, an op at most 256 KiB).
pub const MAX_UPDATE_CHAIN: usize = 6;

impl OpBody {
    /// The op's type as it appears in JSON (`"type"`), e.g. `"set_role"`; also the `action`
    /// of [`LogError::NotAllowed`].
    pub fn action(&self) -> &'static str {
        match self {
            OpBody::Genesis { .. } => "genesis",
            OpBody::Invite { .. } => "invite",
            OpBody::RevokeInvite { .. } => "revoke_invite",
            OpBody::Join { .. } => "join",
            OpBody::Add { .. } => "add",
            OpBody::Remove { .. } => "remove",
            OpBody::Unban { .. } => "unban",
            OpBody::Leave {} => "leave",
            OpBody::SetRole { .. } => "set_role",
            OpBody::Mute { .. } => "mute",
            OpBody::Unmute { .. } => "unmute",
            OpBody::Lock {} => "lock",
            OpBody::Unlock {} => "unlock",
            OpBody::SetOpenHours { .. } => "set_open_hours",
            OpBody::SetSlowMode { .. } => "set_slow_mode",
            OpBody::DeleteMessages { .. } => "delete_messages",
            OpBody::SetAgreement { .. } => "set_agreement",
            OpBody::AcceptAgreement { .. } => "accept_agreement",
            OpBody::SetRetention { .. } => "set_retention",
            OpBody::SetSettings { .. } => "set_settings",
            OpBody::SetCrisisResources { .. } => "set_crisis_resources",
            OpBody::UpdateDevices { .. } => "update_devices",
            OpBody::SetPinned { .. } => "set_pinned",
            OpBody::OpenRound { .. } => "open_round",
            OpBody::CloseRound { .. } => "close_round",
            OpBody::Rekey {} => "rekey",
        }
    }

    /// Whether applying this op starts a new epoch: exactly `join`, `add`, `remove`, `leave`
    /// and `update_devices` (the changes of who, or which devices, may read), and `rekey`
    /// (the same people and devices, with fresh keys).
    pub fn changes_epoch(&self) -> bool {
        matches!(
            self,
            OpBody::Join { .. }
                | OpBody::Add { .. }
                | OpBody::Remove { .. }
                | OpBody::Leave {}
                | OpBody::UpdateDevices { .. }
                | OpBody::Rekey {}
        )
    }

    /// Whether this op may start a new epoch by someone's departure (`remove` or `leave`), or
    /// by an `update_devices`, which may drop a device (a lost or stolen one): the epoch it
    /// ends gets **no** grace (PROTOCOL.md §10.1 `post` step 8), so from the moment the op is
    /// applied nothing encrypted under keys the departed member or device holds is accepted,
    /// and a client rejects a message of that epoch stored after a later epoch began (§11.2
    /// step 9, [`crate::policy::slipped_in_after_departure`]). The op alone does not say
    /// whether an `update_devices` drops a device, so this answers yes for every one: the
    /// exact answer, against the state the op was applied to, is
    /// [`AppliedOp::ends_epoch_by_departure`], which the server and clients use.
    pub fn ends_epoch_by_departure(&self) -> bool {
        matches!(
            self,
            OpBody::Remove { .. } | OpBody::Leave {} | OpBody::UpdateDevices { .. }
        )
    }

    /// Whether the epoch this op ends surely still accepts posts for a grace period after it
    /// (PROTOCOL.md §10.1 `post` step 8): the admissions, `join` and `add`, and `rekey`, which
    /// changes nobody, so that messages already in flight when the epoch changed are not lost.
    /// Never after a departure ([`Self::ends_epoch_by_departure`]); no other op ends an epoch.
    /// An `update_devices` that only adds devices grants the grace of an `add` too, which only
    /// [`AppliedOp::grants_epoch_grace`] can tell.
    pub fn grants_epoch_grace(&self) -> bool {
        self.changes_epoch() && !self.ends_epoch_by_departure()
    }
}

/// Serde helpers for an optional 32-byte value carried as base64 or `null`.
mod b64_array_opt {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub fn serialize<S: Serializer>(value: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(bytes) => s.serialize_some(&crate::encoding::b64_encode(bytes)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u8; 32]>, D::Error> {
        let Some(text) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        let bytes = crate::encoding::b64_decode(&text)
            .map_err(|e| D::Error::custom(format!("invalid base64: {e}")))?;
        let len = bytes.len();
        let array = bytes
            .try_into()
            .map_err(|_| D::Error::custom(format!("expected 32 bytes, got {len}")))?;
        Ok(Some(array))
    }
}

/// A member's role.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Runs the group: may sign every op. A group always keeps at least one.
    Facilitator,
    /// Helps run the group: invites, admits, moderates plain members, controls the chat.
    CoFacilitator,
    /// Takes part: may only accept the agreement and leave.
    Member,
}

impl Role {
    /// The role's name as in JSON: `facilitator`, `co_facilitator` or `member`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Facilitator => "facilitator",
            Role::CoFacilitator => "co_facilitator",
            Role::Member => "member",
        }
    }

    /// Facilitators and co-facilitators: the people reports and facilitator notes go to.
    pub fn is_moderator(self) -> bool {
        matches!(self, Role::Facilitator | Role::CoFacilitator)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A member as listed in the log: the user, the name others see, and every device whose keys
/// may receive the group's sender keys.
///
/// Valid when: `display_name` has 1 to [`MAX_DISPLAY_NAME_CHARS`] characters, is not blank and
/// contains no control characters, no bidirectional marks, overrides or isolates (which could
/// disguise a name) and no line or paragraph separator (which could make it pass for two lines); `devices` lists 1 to [`MAX_DEVICES_PER_USER`] distinct devices, each
/// of whose sealing key verifies ([`DeviceKeys::verify`]); `device_list`, when present, is a
/// valid [`SignedDeviceList`] of this `user` whose devices' keys are exactly `devices`, in
/// order; and no device already belongs to another member.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberEntry {
    /// The user.
    pub user: UserId,
    /// The name shown to the group.
    pub display_name: String,
    /// The user's devices with their signed public keys.
    pub devices: Vec<DeviceKeys>,
    /// The user's device list, signed by their identity key (PROTOCOL.md §3.6, §8.6): pins the
    /// identity key in the log. Absent in entries written before device lists (omitted from
    /// the JSON then, so such entries keep their exact bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_list: Option<SignedDeviceList>,
}

/// Whether `name` follows the member-entry rules for display names (PROTOCOL.md §8.6): 1 to
/// [`MAX_DISPLAY_NAME_CHARS`] characters, not blank, no control, bidirectional-control or
/// line-separator character. Also for names that travel outside a log (a link offer).
pub fn valid_display_name(name: &str) -> bool {
    let count = name.chars().count();
    count > 0
        && count <= MAX_DISPLAY_NAME_CHARS
        && !name.trim().is_empty()
        && !name
            .chars()
            .any(|c| c.is_control() || is_bidi_control(c) || is_line_separator(c))
}

/// Why `name` is not a valid display name.
fn display_name_error(name: &str) -> LogError {
    let count = name.chars().count();
    if count == 0 || count > MAX_DISPLAY_NAME_CHARS || name.trim().is_empty() {
        LogError::InvalidMember(format!(
            "the display name must have 1 to {MAX_DISPLAY_NAME_CHARS} characters and not be blank"
        ))
    } else {
        LogError::InvalidMember(
            "the display name contains control, bidirectional or line-separator characters: \
             choose a name of visible characters on one line"
                .into(),
        )
    }
}

impl MemberEntry {
    /// Checks the entry on its own (everything but other members' devices), including its
    /// device list when it carries one.
    pub fn validate(&self) -> Result<(), LogError> {
        self.validate_pinning().map(|_| ())
    }

    /// [`Self::validate`], returning what the entry's device list pins, if it carries one.
    fn validate_pinning(&self) -> Result<Option<PinnedList>, LogError> {
        if !valid_display_name(&self.display_name) {
            return Err(display_name_error(&self.display_name));
        }
        if self.devices.is_empty() || self.devices.len() > MAX_DEVICES_PER_USER {
            return Err(LogError::InvalidMember(format!(
                "a member must list 1 to {MAX_DEVICES_PER_USER} devices, not {}",
                self.devices.len()
            )));
        }
        let mut seen = BTreeSet::new();
        for keys in &self.devices {
            if !seen.insert(keys.device) {
                return Err(LogError::InvalidMember(format!(
                    "device {} is listed twice",
                    keys.device.short()
                )));
            }
            if keys.verify().is_err() {
                return Err(LogError::InvalidMember(format!(
                    "the sealing keys of device {} are not signed by its identity key, or one is \
                     not a valid key (PROTOCOL.md §3.2)",
                    keys.device.short()
                )));
            }
        }
        let Some(signed) = &self.device_list else {
            return Ok(None);
        };
        let list = verify_list(signed)?;
        if list.user != self.user {
            return Err(LogError::InvalidMember(
                "the device list belongs to another user than the entry".into(),
            ));
        }
        if !same_devices(&list, &self.devices) {
            return Err(LogError::InvalidMember(
                "the entry's devices are not exactly those of its device list".into(),
            ));
        }
        Ok(Some(PinnedList::of(&list, signed)))
    }

    /// Whether `device` is one of this member's devices.
    pub fn has_device(&self, device: &DeviceId) -> bool {
        self.devices.iter().any(|keys| keys.device == *device)
    }
}

/// Unicode bidirectional marks, embedding, override and isolate controls (format characters
/// that `char::is_control` does not cover): LRM, RLM, the Arabic letter mark U+061C, U+202A–E,
/// U+2066–9.
pub(crate) fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}'
    )
}

/// The Unicode line and paragraph separators (categories Zl and Zp, U+2028 and U+2029): not
/// control characters, but a renderer may start a new line at them, which in a name would let
/// the rest pass for another line (a member list entry of its own).
pub(crate) fn is_line_separator(c: char) -> bool {
    matches!(c, '\u{2028}' | '\u{2029}')
}

/// A device list checked as in PROTOCOL.md §3.6; an invalid one is an invalid member
/// (`invalid_member`, §8.5, §8.6).
fn verify_list(signed: &SignedDeviceList) -> Result<DeviceList, LogError> {
    signed
        .verify()
        .map_err(|e| LogError::InvalidMember(format!("invalid device list ({}): {e}", e.code())))
}

/// Whether `list` names exactly `devices`, in the same order.
fn same_devices(list: &DeviceList, devices: &[DeviceKeys]) -> bool {
    list.devices.len() == devices.len()
        && list
            .devices
            .iter()
            .zip(devices)
            .all(|(listed, keys)| listed.keys == *keys)
}

/// What the log pins of a member's device list (PROTOCOL.md §8.6): the user identity key, which
/// no later op can change, and the version and hash of the list the entry carries now.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PinnedList {
    /// The user identity key that signs the member's lists.
    pub identity: IdentityKey,
    /// The version of the member's current list.
    pub version: u64,
    /// The hash of the member's current list ([`SignedDeviceList::hash`]).
    pub hash: DeviceListHash,
}

impl PinnedList {
    fn of(list: &DeviceList, signed: &SignedDeviceList) -> Self {
        PinnedList {
            identity: list.identity,
            version: list.version,
            hash: signed.hash(),
        }
    }
}

/// Group-wide settings.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSettings {
    /// Whether members may message each other privately (default: no, as is usual in
    /// facilitated groups).
    pub members_may_message_privately: bool,
}

/// When the chat is open, as weekly windows in a named time zone (the server resolves the zone).
///
/// Valid when `time_zone` is 1 to [`MAX_TIME_ZONE_CHARS`] ASCII letters, digits or `/ _ + -`
/// (an IANA name such as `Europe/Berlin`), and `windows` has 1 to [`MAX_OPEN_WINDOWS`] entries
/// (to close the chat entirely, use `lock`), each valid as documented on [`OpenWindow`].
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenHours {
    /// IANA time-zone name.
    pub time_zone: String,
    /// The weekly windows in which the chat is open.
    pub windows: Vec<OpenWindow>,
}

/// One weekly window of [`OpenHours`]: `day` 0 (Monday) to 6 (Sunday), minutes after local
/// midnight with `start_minute` < `end_minute` ≤ [`MINUTES_PER_DAY`].
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenWindow {
    /// Day of the week, 0 = Monday … 6 = Sunday.
    pub day: u8,
    /// Start, in minutes after local midnight (inclusive).
    pub start_minute: u16,
    /// End, in minutes after local midnight (exclusive); 1440 is midnight at the day's end.
    pub end_minute: u16,
}

impl OpenHours {
    /// Whether the chat is open at `now`: some window's day is the local weekday and the local
    /// minute of the day is in `[start_minute, end_minute)`. Local time uses the tz database
    /// bundled with this crate. An unknown time zone is an error (callers fail closed: only
    /// facilitators post). Log validity never depends on this, so implementations with
    /// different tz databases still agree on the log.
    pub fn is_open_at(&self, now: Timestamp) -> Result<bool, LogError> {
        let tz = jiff::tz::TimeZone::get(&self.time_zone).map_err(|_| {
            LogError::InvalidValue(format!("unknown time zone {:?}", self.time_zone))
        })?;
        let ms =
            i64::try_from(now.0).map_err(|_| LogError::InvalidValue("time out of range".into()))?;
        let instant = jiff::Timestamp::from_millisecond(ms)
            .map_err(|_| LogError::InvalidValue("time out of range".into()))?;
        let local = instant.to_zoned_datetime(tz);
        let day = local.weekday().to_monday_zero_offset() as u8;
        let minute = local.hour() as u16 * 60 + local.minute() as u16;
        Ok(self
            .windows
            .iter()
            .any(|w| w.day == day && w.start_minute <= minute && minute < w.end_minute))
    }

    /// Checks the ranges documented on [`OpenHours`] and [`OpenWindow`].
    pub fn validate(&self) -> Result<(), LogError> {
        let tz = &self.time_zone;
        if tz.is_empty()
            || tz.len() > MAX_TIME_ZONE_CHARS
            || !tz
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "/_+-".contains(c))
        {
            return Err(LogError::InvalidValue(format!(
                "the time zone must be an IANA name of 1 to {MAX_TIME_ZONE_CHARS} characters"
            )));
        }
        if self.windows.is_empty() || self.windows.len() > MAX_OPEN_WINDOWS {
            return Err(LogError::InvalidValue(format!(
                "open hours need 1 to {MAX_OPEN_WINDOWS} windows (use lock to close the chat)"
            )));
        }
        for w in &self.windows {
            if w.day > 6 || w.start_minute >= w.end_minute || w.end_minute > MINUTES_PER_DAY {
                return Err(LogError::InvalidValue(format!(
                    "invalid window (day {}, {}..{}): day must be 0..=6 and start < end <= {MINUTES_PER_DAY}",
                    w.day, w.start_minute, w.end_minute
                )));
            }
        }
        Ok(())
    }
}

/// The secret half of an invite, held by whoever has the invite link. Zeroized on drop; its
/// `Debug` shows only the public id; it is never serialized except through [`Self::to_bytes`].
pub struct InviteSecret {
    signing: SigningKey,
}

// The inner `SigningKey` zeroizes itself on drop (ed25519-dalek's `zeroize` feature).
impl ZeroizeOnDrop for InviteSecret {}

impl fmt::Debug for InviteSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InviteSecret")
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}

impl InviteSecret {
    /// A fresh invite from the caller's cryptographic randomness.
    pub fn generate(rng: &mut impl rand_core::CryptoRng) -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(bytes.as_mut());
        Self::from_bytes(&bytes)
    }

    /// Rebuilds an invite from its 32-byte secret (as carried in an invite link).
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        InviteSecret {
            signing: SigningKey::from_bytes(bytes),
        }
    }

    /// The 32-byte secret, for the invite link.
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.signing.to_bytes())
    }

    /// The invite's id: its Ed25519 public key.
    pub fn id(&self) -> InviteId {
        InviteId(self.signing.verifying_key().to_bytes())
    }

    /// The `invite_sig` of a join: a signature over
    /// `"confide/v1/join" || 0x00 || group || user || device`.
    pub fn sign_join(&self, group: &GroupId, user: &UserId, device: &DeviceId) -> Signature {
        let message = labelled(
            LABEL_JOIN,
            &[group.as_bytes(), user.as_bytes(), device.as_bytes()],
        );
        Signature(self.signing.sign(&message).to_bytes())
    }
}

impl InviteSecret {
    /// Proof that `device` holds this invite, for fetching the group's log before joining: a
    /// signature over `"confide/v1/invite-sync" || 0x00 || group || device`. Bound to the
    /// device, so it is useless to anyone else who sees it.
    pub fn sign_sync(&self, group: &GroupId, device: &DeviceId) -> Signature {
        let message = labelled(LABEL_INVITE_SYNC, &[group.as_bytes(), device.as_bytes()]);
        Signature(self.signing.sign(&message).to_bytes())
    }
}

/// Checks a proof made by [`InviteSecret::sign_sync`].
pub fn verify_invite_sync(
    invite: &InviteId,
    group: &GroupId,
    device: &DeviceId,
    sig: &Signature,
) -> Result<(), LogError> {
    identity::verify(
        &DeviceId(invite.0),
        LABEL_INVITE_SYNC,
        &[group.as_bytes(), device.as_bytes()],
        sig,
    )
    .map_err(|_| LogError::InvalidInvite("the invite proof does not verify".into()))
}

/// The one device of a member entry that joins through an invite (a `join`, or an `add`
/// approving a join request). Only the device that signs the join (or the request) proves it
/// holds its key; any other device listed could belong to someone else, whose posts would then
/// be attributed to the joiner. Until a user identity key signs a user's device list, such an
/// entry lists exactly that one device.
pub fn only_proven_device(member: &MemberEntry) -> Result<&DeviceKeys, LogError> {
    match member.devices.as_slice() {
        [device] => Ok(device),
        [] => Err(LogError::InvalidMember("a member needs a device".into())),
        _ => Err(LogError::InvalidMember(
            "a member joining through an invite lists only the device that asks: other devices \
             cannot prove they are theirs"
                .into(),
        )),
    }
}

/// The device whose join signature an `add` approving a join request carries (PROTOCOL.md
/// §8.5): for an entry without a device list, its one device ([`only_proven_device`]), and
/// `invite_device` must be absent; for an entry with one, `invite_device`, which must be given
/// and be one of the listed devices (each consented with its `link_sig`, §3.6). Every failure
/// is `invalid_member`. Trusts the list only as far as the entry was validated
/// ([`MemberEntry::validate`]): call that first.
pub fn requesting_device(
    member: &MemberEntry,
    invite_device: Option<&DeviceId>,
) -> Result<DeviceId, LogError> {
    match (&member.device_list, invite_device) {
        (None, None) => only_proven_device(member).map(|keys| keys.device),
        (None, Some(_)) => Err(LogError::InvalidMember(
            "invite_device is only for an entry with a device list".into(),
        )),
        (Some(_), None) => Err(LogError::InvalidMember(
            "an approval of an entry with a device list names the device that asked \
             (invite_device)"
                .into(),
        )),
        (Some(_), Some(device)) if member.has_device(device) => Ok(*device),
        (Some(_), Some(device)) => Err(LogError::InvalidMember(format!(
            "invite_device {} is not one of the entry's devices",
            device.short()
        ))),
    }
}

/// Checks an `invite_sig` made by [`InviteSecret::sign_join`].
pub fn verify_join_sig(
    invite: &InviteId,
    group: &GroupId,
    user: &UserId,
    device: &DeviceId,
    sig: &Signature,
) -> Result<(), LogError> {
    identity::verify(
        &DeviceId(invite.0),
        LABEL_JOIN,
        &[group.as_bytes(), user.as_bytes(), device.as_bytes()],
        sig,
    )
    .map_err(|_| LogError::InvalidInvite("the invite signature does not verify".into()))
}

/// Whether `role` may sign an op of this kind at all: the policy table of this module. Target
/// rules (who may act on whom) and the last-facilitator rule are checked by
/// [`GroupState::apply`] on top. `genesis` and `join` are never signed by a current member.
pub fn allowed(role: Role, body: &OpBody) -> bool {
    use OpBody as B;
    match role {
        Role::Facilitator => !matches!(body, B::Genesis { .. } | B::Join { .. }),
        Role::CoFacilitator => matches!(
            body,
            B::Invite { .. }
                | B::RevokeInvite { .. }
                | B::Add { .. }
                | B::Remove { .. }
                | B::Mute { .. }
                | B::Unmute { .. }
                | B::Lock {}
                | B::Unlock {}
                | B::SetOpenHours { .. }
                | B::SetSlowMode { .. }
                | B::DeleteMessages { .. }
                | B::SetPinned { .. }
                | B::OpenRound { .. }
                | B::CloseRound { .. }
                | B::AcceptAgreement { .. }
                | B::Leave {}
                | B::UpdateDevices { .. }
                | B::Rekey {}
        ),
        Role::Member => matches!(
            body,
            B::AcceptAgreement { .. } | B::Leave {} | B::UpdateDevices { .. } | B::Rekey {}
        ),
    }
}

/// A member of the group, as the replayed log sees them.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Member {
    /// The entry they joined or were added with, with the devices and device list of their
    /// latest `update_devices`.
    pub entry: MemberEntry,
    /// What the log pinned of their device list: set when their entry carried one, or by their
    /// first `update_devices`; `None` for a member written before device lists who has not
    /// updated since.
    pub pinned: Option<PinnedList>,
    /// Their current role.
    pub role: Role,
    /// The epoch their membership started in: they can read nothing sent before it.
    pub joined_epoch: Epoch,
    /// The agreement version they last accepted (0: none).
    pub accepted_agreement: u32,
}

impl Member {
    /// The user identity key the log pinned for this member, if any.
    pub fn identity(&self) -> Option<IdentityKey> {
        self.pinned.map(|p| p.identity)
    }

    /// Whether this member can read messages of `epoch` ([`crate::policy::can_read_epoch`]).
    pub fn can_read_epoch(&self, epoch: Epoch) -> bool {
        crate::policy::can_read_epoch(self.joined_epoch, epoch)
    }
}

/// An invite as the log sees it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct InviteState {
    /// Whether joining needs a facilitator's approval (an `add`).
    pub requires_approval: bool,
    /// How many times it may be used.
    pub max_uses: u32,
    /// When it stops accepting joins.
    pub expires_at: Timestamp,
    /// How many times it has been used (joins plus approved adds).
    pub uses: u32,
    /// Whether it was revoked.
    pub revoked: bool,
}

impl InviteState {
    /// Why the invite can no longer be used at `now`, if it cannot (revoked first, then used
    /// up, then expired); `None` while it can (PROTOCOL.md §8.9). The server tells an invite
    /// holder this instead of a bare "not a member".
    ///
    /// An invite is usable up to and including the millisecond `expires_at`, and expired from
    /// the one after: the same bound as the log's own rule for a `join` (`at ≤ expires_at`),
    /// so that whatever the clock says the invite may be used for, a `join` claiming that
    /// time is valid too.
    pub fn problem(&self, now: Timestamp) -> Option<InviteProblem> {
        if self.revoked {
            Some(InviteProblem::Revoked)
        } else if self.uses >= self.max_uses {
            Some(InviteProblem::UsedUp)
        } else if now > self.expires_at {
            Some(InviteProblem::Expired)
        } else {
            None
        }
    }
}

impl InviteState {
    /// Whether the invite can be used at `now`: not revoked, not used up, not expired
    /// ([`Self::problem`] is `None`). What the server checks before serving an invited device
    /// the log (PROTOCOL.md §9.6) and before taking a join request (§10.1 `send_sealed`).
    pub fn is_usable(&self, now: Timestamp) -> bool {
        self.problem(now).is_none()
    }

    /// Whether a join request naming this invite may be made at `now`: it requires approval
    /// and is usable (PROTOCOL.md §8.9, "Approval"). The server accepts a `join_request` only
    /// while the group has such an invite; a facilitator's client drops a request whose invite
    /// is not one by its own clock.
    pub fn takes_join_requests(&self, now: Timestamp) -> bool {
        self.requires_approval && self.is_usable(now)
    }
}

/// Why an invite can no longer be used ([`InviteState::problem`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum InviteProblem {
    /// A facilitator revoked it.
    #[error("this invite was revoked: ask a facilitator for a new one")]
    Revoked,
    /// As many people joined with it as it allows.
    #[error("this invite has been used up: ask a facilitator for a new one")]
    UsedUp,
    /// Its time ran out.
    #[error("this invite has expired: ask a facilitator for a new one")]
    Expired,
}

/// The current group agreement.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Agreement {
    /// Its version (1, 2, …).
    pub version: u32,
    /// The keyed commitment to its text
    /// ([`crate::envelope::pinned_commitment`]), not a plain hash: the log does not reveal a
    /// guessable text.
    pub text_hash: [u8; 32],
}

/// The current version of a group-work document (`set_pinned`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PinnedDocument {
    /// Its version (1, 2, …; a removal is a version too).
    pub version: u32,
    /// The keyed commitment to its text, or `None` once removed.
    pub text_hash: Option<[u8; 32]>,
}

/// A check-in round, as the log opened (and perhaps closed) it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Round {
    /// The round.
    pub id: RoundId,
    /// The user whose device opened it: only their prompt is the round's.
    pub opened_by: UserId,
    /// The `at` of the `open_round` op.
    pub opened_at: Timestamp,
    /// When it closes by itself, if it does.
    pub closes_at: Option<Timestamp>,
    /// The `at` of the `close_round` op that closed it by hand, if one did.
    pub closed_at: Option<Timestamp>,
}

impl Round {
    /// When the round ended (by hand or by its own time), or `None` while it can still be open.
    pub fn ended_at(&self) -> Option<Timestamp> {
        match (self.closed_at, self.closes_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether the round is open at `t`: opened at or before `t` and not ended by then.
    pub fn is_open_at(&self, t: Timestamp) -> bool {
        self.opened_at <= t && self.ended_at().is_none_or(|end| t < end)
    }
}

/// Most check-in rounds one log may open (each is kept in the replayed state).
pub const MAX_ROUNDS: usize = 10_000;

/// An op that [`GroupState::apply`] accepted.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AppliedOp {
    /// The parsed op.
    pub op: Op,
    /// Its hash (the new head of the log).
    pub hash: OpHash,
    /// The devices whose membership the op ended, their **departures** (PROTOCOL.md §8.10):
    /// every device of the member a `remove` or `leave` took out, or the devices an
    /// `update_devices` dropped; empty for every other op.
    pub departed: Vec<DeviceId>,
}

impl AppliedOp {
    /// Whether the op started a new epoch by a departure (PROTOCOL.md §8.5, §10.1 `post` step
    /// 8): a `remove`, a `leave`, or an `update_devices` that dropped a device. The epoch it
    /// ended "ended with a removal" (§11.1, §11.2 steps 9 and 14) of [`Self::departed`].
    pub fn ends_epoch_by_departure(&self) -> bool {
        self.op.body.changes_epoch() && !self.departed.is_empty()
    }

    /// Whether the epoch the op ended still accepts posts for a grace period (PROTOCOL.md §10.1
    /// `post` step 8): a `join`, an `add`, a `rekey`, or an `update_devices` that only added
    /// devices.
    pub fn grants_epoch_grace(&self) -> bool {
        self.op.body.changes_epoch() && self.departed.is_empty()
    }
}

/// The state of a group, obtained only by replaying a verified log: from
/// [`GroupState::from_genesis`] and [`GroupState::apply`], or [`verify_log`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct GroupState {
    /// The group; every op must name it.
    group: GroupId,
    /// Hash of the genesis op: names this exact group history.
    genesis_hash: OpHash,
    /// Hash of the last applied op: the next op's `prev`.
    head: OpHash,
    /// `seq` of the last applied op: the next op's `seq` is one more.
    seq: u64,
    /// The latest claimed time (`at`) of any applied op, genesis included: the next op may be
    /// at most [`MAX_CLOCK_SKEW_MS`] earlier.
    latest_at: Timestamp,
    /// The current epoch.
    epoch: Epoch,
    /// Hash of the op that started the current epoch (the genesis hash for epoch 0).
    epoch_hash: OpHash,
    /// The claimed time (`at`) of the op that started the current epoch: a `rekey` must claim
    /// [`MIN_REKEY_INTERVAL_MS`] more.
    epoch_at: Timestamp,
    /// The epoch and epoch hash just before the current epoch (`None` in epoch 0).
    previous_epoch: Option<(Epoch, OpHash)>,
    /// Current members by user.
    members: BTreeMap<UserId, Member>,
    /// Index from each current device to its user, kept in step with `members`, so the server
    /// can find a message's sender without scanning every member.
    devices: BTreeMap<DeviceId, UserId>,
    /// Every invite ever created.
    invites: BTreeMap<InviteId, InviteState>,
    /// For each device whose membership ended (`remove`, `leave`, or dropped by an
    /// `update_devices`) and that has not come back: the `seq` of the op that ended it. The
    /// server serves such a device the log up to and including that op, so an offline device
    /// learns it was removed.
    departed: BTreeMap<DeviceId, u64>,
    /// The devices whose membership the op that started the current epoch ended (empty when
    /// that op was an admission, or in epoch 0): the previous epoch "ended with a removal" of
    /// these devices (PROTOCOL.md §8.5, §11.2).
    epoch_departed: BTreeSet<DeviceId>,
    /// Users who may not join or be added.
    banned: BTreeSet<UserId>,
    /// Devices that may not be listed by a joining or added member: each device a banned user's
    /// entries or lists in this log ever named, with that user (an unban lifts their entries).
    banned_devices: BTreeMap<DeviceId, UserId>,
    /// Identity keys that may not be pinned by a joining or added member or an
    /// `update_devices`: the pinned identity key of each banned user, with that user.
    banned_identities: BTreeMap<IdentityKey, UserId>,
    /// For every user who was ever a member: every device any of their entries or device lists
    /// in this log named, so that a ban covers devices dropped before it (PROTOCOL.md §8.5).
    ever_listed: BTreeMap<UserId, BTreeSet<DeviceId>>,
    /// Devices an `update_devices` dropped (unlinked), with their user: never listed again in
    /// this log (a stolen device that kept the identity key cannot come back, §8.5).
    unlinked: BTreeMap<DeviceId, UserId>,
    /// Whether the log holds a device list (in an entry or an `update_devices`): every later
    /// entry must carry one (PROTOCOL.md §8.6).
    holds_device_list: bool,
    /// Mute end times by user, members or not (an entry whose time has passed no longer mutes;
    /// leaving or being removed does not end a mute).
    mutes: BTreeMap<UserId, Timestamp>,
    /// Whether the chat was closed by hand.
    locked: bool,
    /// When the chat is open, if restricted.
    open_hours: Option<OpenHours>,
    /// Slow-mode interval (0 = off).
    slow_mode_seconds: u32,
    /// The current agreement, if any.
    agreement: Option<Agreement>,
    /// Message retention in seconds (`None`: no limit).
    retention_seconds: Option<u64>,
    /// Group settings.
    settings: GroupSettings,
    /// Hash of the crisis-resources text, if set.
    crisis_resources: Option<[u8; 32]>,
    /// The group-work documents published with `set_pinned`, by kind.
    documents: BTreeMap<crate::envelope::PinnedKind, PinnedDocument>,
    /// Every check-in round this log opened.
    rounds: BTreeMap<RoundId, Round>,
    /// The round opened last: round ops are never back-dated, so it is the only one that can
    /// be open at a later op's `at`.
    last_round: Option<RoundId>,
}

/// Replays a whole log from its genesis op, verifying every signature, link and rule.
pub fn verify_log(log: &[SignedOp]) -> Result<GroupState, LogError> {
    let Some((genesis, rest)) = log.split_first() else {
        return Err(LogError::NotGenesis);
    };
    let mut state = GroupState::from_genesis(genesis)?;
    for signed in rest {
        state.apply(signed)?;
    }
    Ok(state)
}

impl GroupState {
    /// Starts a group from its genesis op: checks its size, signature and version, that it is
    /// a genesis op with `seq` 0 and `prev` zero, that the creator entry is valid and that the
    /// author is one of the creator's devices. The creator becomes facilitator in epoch 0.
    pub fn from_genesis(signed: &SignedOp) -> Result<GroupState, LogError> {
        let op = signed.verify()?;
        let OpBody::Genesis { creator, settings } = &op.body else {
            return Err(LogError::NotGenesis);
        };
        if op.seq != 0 {
            return Err(LogError::OutOfOrder {
                expected: 0,
                got: op.seq,
            });
        }
        if op.prev != OpHash::ZERO {
            return Err(LogError::BrokenChain {
                seq: 0,
                expected: OpHash::ZERO,
                got: op.prev,
            });
        }
        let pin = creator.validate_pinning()?;
        if !creator.has_device(&op.author) {
            return Err(LogError::InvalidMember(
                "the genesis op must be signed by one of the creator's devices".into(),
            ));
        }
        let hash = signed.hash();
        let mut state = GroupState {
            group: op.group,
            genesis_hash: hash,
            head: hash,
            seq: 0,
            latest_at: op.at,
            epoch: Epoch(0),
            epoch_hash: hash,
            epoch_at: op.at,
            previous_epoch: None,
            members: BTreeMap::new(),
            devices: BTreeMap::new(),
            invites: BTreeMap::new(),
            departed: BTreeMap::new(),
            epoch_departed: BTreeSet::new(),
            banned: BTreeSet::new(),
            banned_devices: BTreeMap::new(),
            banned_identities: BTreeMap::new(),
            ever_listed: BTreeMap::new(),
            unlinked: BTreeMap::new(),
            holds_device_list: false,
            mutes: BTreeMap::new(),
            locked: false,
            open_hours: None,
            slow_mode_seconds: 0,
            agreement: None,
            retention_seconds: None,
            settings: settings.clone(),
            crisis_resources: None,
            documents: BTreeMap::new(),
            rounds: BTreeMap::new(),
            last_round: None,
        };
        state.admit(creator, Role::Facilitator, Epoch(0), pin);
        Ok(state)
    }

    /// Applies the next op after checking everything listed in the module documentation.
    /// Atomic: on error the state is unchanged (all checks read `&self`; only then is the op
    /// committed, by code that cannot fail).
    pub fn apply(&mut self, signed: &SignedOp) -> Result<AppliedOp, LogError> {
        let op = signed.verify()?;
        let hash = signed.hash();
        let pin = self.check(&op, &hash)?;
        let departed = self.commit(&op, hash, pin);
        Ok(AppliedOp { op, hash, departed })
    }

    /// The next op by `author` at `at`: fills in the version, group, `seq` and `prev`.
    pub fn next_op(&self, author: DeviceId, at: Timestamp, body: OpBody) -> Op {
        Op {
            v: OP_VERSION,
            group: self.group,
            seq: self.seq.saturating_add(1),
            prev: self.head,
            author,
            at,
            body,
        }
    }

    /// The group.
    pub fn group(&self) -> GroupId {
        self.group
    }

    /// Hash of the genesis op.
    pub fn genesis_hash(&self) -> OpHash {
        self.genesis_hash
    }

    /// Hash of the last applied op.
    pub fn head(&self) -> OpHash {
        self.head
    }

    /// `seq` of the last applied op.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The latest claimed time (`at`) of any op in the log, genesis included.
    pub fn latest_at(&self) -> Timestamp {
        self.latest_at
    }

    /// The earliest `at` the next op may claim: [`Self::latest_at`] − [`MAX_CLOCK_SKEW_MS`]
    /// (saturating at 0); an earlier op is rejected with [`LogError::Backdated`]. A client writes
    /// `max(its clock, min_next_at())`.
    pub fn min_next_at(&self) -> Timestamp {
        Timestamp(self.latest_at.0.saturating_sub(MAX_CLOCK_SKEW_MS))
    }

    /// The current epoch.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The current epoch by number and hash: what envelopes and sealed payloads must name.
    pub fn epoch_ref(&self) -> crate::ids::EpochRef {
        crate::ids::EpochRef {
            epoch: self.epoch,
            hash: self.epoch_hash,
        }
    }

    /// The current epoch's hash: the hash of the op that started the epoch, i.e. the genesis
    /// hash in epoch 0 and otherwise the hash of the latest applied `join`, `add`, `remove`,
    /// `leave`, `update_devices` or `rekey` ([`OpBody::changes_epoch`]). Names the epoch's exact history and member list, so
    /// messages can be bound to it; it changes exactly when [`Self::epoch`] does.
    pub fn epoch_hash(&self) -> OpHash {
        self.epoch_hash
    }

    /// The claimed time (`at`) of the op that started the current epoch (the genesis op in epoch
    /// 0): how old the epoch is by the log's own times, which a client's rekeying goes by
    /// (PROTOCOL.md §5.5).
    pub fn epoch_started_at(&self) -> Timestamp {
        self.epoch_at
    }

    /// The earliest `at` a `rekey` may claim now (PROTOCOL.md §8.5): [`MIN_REKEY_INTERVAL_MS`]
    /// after [`Self::epoch_started_at`], and never before [`Self::latest_at`]; an earlier one
    /// is refused with [`LogError::RekeyTooSoon`]. A `rekey` is not back-dated (the 5 minutes
    /// §8.11 allows other ops), as round ops are not: otherwise a member could append a burst of
    /// rekeys at once, each claiming a minute more than the last, from 5 minutes in the past to
    /// 5 minutes in the future.
    pub fn earliest_rekey_at(&self) -> Timestamp {
        Timestamp(
            self.epoch_at
                .0
                .saturating_add(MIN_REKEY_INTERVAL_MS)
                .max(self.latest_at.0),
        )
    }

    /// The epoch just before the current one with its epoch hash ([`Self::epoch_hash`] as it was
    /// then), or `None` in epoch 0. For accepting messages sent just before an epoch change.
    pub fn previous_epoch(&self) -> Option<(Epoch, OpHash)> {
        self.previous_epoch
    }

    /// Current members by user.
    pub fn members(&self) -> &BTreeMap<UserId, Member> {
        &self.members
    }

    /// A current member.
    pub fn member(&self, user: &UserId) -> Option<&Member> {
        self.members.get(user)
    }

    /// The member owning `device`, if it is a current member's device.
    pub fn member_of_device(&self, device: &DeviceId) -> Option<(&UserId, &Member)> {
        let user = self.devices.get(device)?;
        self.members.get_key_value(user)
    }

    /// The user identity key the log pinned for a current member (PROTOCOL.md §8.6): `None`
    /// for a non-member and for a member written before device lists who has not sent an
    /// `update_devices` yet.
    pub fn identity_of(&self, user: &UserId) -> Option<IdentityKey> {
        self.members.get(user).and_then(Member::identity)
    }

    /// A current member's device list as the log holds it (the one their entry or their latest
    /// `update_devices` carried), if any.
    pub fn device_list_of(&self, user: &UserId) -> Option<&SignedDeviceList> {
        self.members.get(user)?.entry.device_list.as_ref()
    }

    /// The version of a current member's device list as the log holds it, if any.
    pub fn device_list_version_of(&self, user: &UserId) -> Option<u64> {
        self.members.get(user)?.pinned.map(|p| p.version)
    }

    /// A current member's role.
    pub fn role_of(&self, user: &UserId) -> Option<Role> {
        self.members.get(user).map(|m| m.role)
    }

    /// Whether `user` is muted at `now` (a mute lasts while `until` > `now`). A mute stays with
    /// the user across leaving, removal and rejoining.
    pub fn is_muted(&self, user: &UserId, now: Timestamp) -> bool {
        self.mutes.get(user).is_some_and(|until| *until > now)
    }

    /// When `user`'s mute ends, if they are muted at `now` (PROTOCOL.md §8.10): what the server
    /// tells a muted poster to wait for (§10.1 `post` step 6) and what a client shows.
    pub fn muted_until(&self, user: &UserId, now: Timestamp) -> Option<Timestamp> {
        self.mutes.get(user).copied().filter(|until| *until > now)
    }

    /// Whether `user` is banned.
    pub fn is_banned(&self, user: &UserId) -> bool {
        self.banned.contains(user)
    }

    /// Banned users.
    pub fn banned(&self) -> &BTreeSet<UserId> {
        &self.banned
    }

    /// Whether `device` was a device of a user when they were banned, and that user is still
    /// banned: no `join` or `add` may list it.
    pub fn is_device_banned(&self, device: &DeviceId) -> bool {
        self.banned_devices.contains_key(device)
    }

    /// Banned devices, each with the banned user it belonged to when they were banned.
    pub fn banned_devices(&self) -> &BTreeMap<DeviceId, UserId> {
        &self.banned_devices
    }

    /// Mute end times by user, members or not (expired entries included until an unmute).
    pub fn mutes(&self) -> &BTreeMap<UserId, Timestamp> {
        &self.mutes
    }

    /// Every device of every current member: the only devices sender keys may be sealed to.
    pub fn current_devices(&self) -> Vec<&DeviceKeys> {
        self.members
            .values()
            .flat_map(|m| m.entry.devices.iter())
            .collect()
    }

    /// The devices of facilitators and co-facilitators: where reports, join requests and
    /// facilitator notes are sealed to.
    pub fn facilitator_devices(&self) -> Vec<&DeviceKeys> {
        self.members
            .values()
            .filter(|m| m.role.is_moderator())
            .flat_map(|m| m.entry.devices.iter())
            .collect()
    }

    /// An invite, revoked or not.
    pub fn invite(&self, invite: &InviteId) -> Option<&InviteState> {
        self.invites.get(invite)
    }

    /// Every invite ever created.
    pub fn invites(&self) -> &BTreeMap<InviteId, InviteState> {
        &self.invites
    }

    /// The `seq` of the op (`remove`, `leave`, or an `update_devices` that dropped it) that
    /// ended `device`'s membership, if it was a member's device once and is not one now.
    pub fn departure_of(&self, device: &DeviceId) -> Option<u64> {
        self.departed.get(device).copied()
    }

    /// Whether the op that started the current epoch was a departure (`remove`, `leave`, or an
    /// `update_devices` that dropped a device): then the previous epoch gets no grace and
    /// "ended with a removal" (PROTOCOL.md §10.1 `post` step 8, §11.2 step 9).
    pub fn epoch_began_with_departure(&self) -> bool {
        !self.epoch_departed.is_empty()
    }

    /// Whether the previous epoch ended with the removal of `device` (by `remove`, `leave` or an
    /// `update_devices` that dropped it; PROTOCOL.md §11.2 step 14 compares per device).
    pub fn epoch_began_with_departure_of(&self, device: &DeviceId) -> bool {
        self.epoch_departed.contains(device)
    }

    /// Whether the identity key `identity` is banned (with a banned user's pinned list).
    pub fn is_identity_banned(&self, identity: &IdentityKey) -> bool {
        self.banned_identities.contains_key(identity)
    }

    /// Banned identity keys, each with the banned user it was pinned for.
    pub fn banned_identities(&self) -> &BTreeMap<IdentityKey, UserId> {
        &self.banned_identities
    }

    /// Whether the log holds a device list, so that every later entry must carry one
    /// (PROTOCOL.md §8.6).
    pub fn holds_device_list(&self) -> bool {
        self.holds_device_list
    }

    /// The current member other than `except` whose pinned identity key is `identity`.
    fn member_with_identity(&self, identity: &IdentityKey, except: &UserId) -> Option<&UserId> {
        self.members
            .iter()
            .find(|(user, m)| *user != except && m.identity() == Some(*identity))
            .map(|(user, _)| user)
    }

    /// Whether the chat was closed by hand.
    pub fn locked(&self) -> bool {
        self.locked
    }

    /// When the chat is open, if restricted.
    pub fn open_hours(&self) -> Option<&OpenHours> {
        self.open_hours.as_ref()
    }

    /// Whether the group's open hours let people post at `now` (PROTOCOL.md §8.6): `Ok(true)`
    /// when no hours are set. An error when they cannot be evaluated (a time zone this
    /// crate's tz database does not know), which callers treat as closed (§10.1 `post` step
    /// 7.2: "fails closed"). Says nothing about [`Self::locked`], which is separate.
    pub fn within_open_hours(&self, now: Timestamp) -> Result<bool, LogError> {
        self.open_hours
            .as_ref()
            .map_or(Ok(true), |hours| hours.is_open_at(now))
    }

    /// Slow-mode interval in seconds (0 = off).
    pub fn slow_mode_seconds(&self) -> u32 {
        self.slow_mode_seconds
    }

    /// The current agreement.
    pub fn agreement(&self) -> Option<&Agreement> {
        self.agreement.as_ref()
    }

    /// Whether `user` is a member who has accepted the current agreement (true for every member
    /// while there is none).
    pub fn has_accepted_agreement(&self, user: &UserId) -> bool {
        match (self.members.get(user), &self.agreement) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(m), Some(a)) => m.accepted_agreement == a.version,
        }
    }

    /// The agreement version `user` must accept before posting: `Some` only for a current
    /// member who has not accepted the current agreement (PROTOCOL.md §8.10, §10.1 `post` step
    /// 7.3); someone who is not a member has nothing to accept.
    pub fn agreement_pending(&self, user: &UserId) -> Option<u32> {
        let member = self.members.get(user)?;
        self.agreement
            .map(|a| a.version)
            .filter(|version| member.accepted_agreement != *version)
    }

    /// Message retention in seconds (`None`: no limit).
    pub fn retention_seconds(&self) -> Option<u64> {
        self.retention_seconds
    }

    /// With a retention period set, the cutoff at `now`: a message whose `received_at` is
    /// before it is past retention ([`crate::policy::retention_cutoff`]). `None` keeps
    /// everything.
    pub fn retention_cutoff(&self, now: Timestamp) -> Option<Timestamp> {
        self.retention_seconds
            .map(|seconds| crate::policy::retention_cutoff(now, seconds))
    }

    /// The `at` a new op should claim when its author's clock reads `now`:
    /// `max(now, min_next_at)` (PROTOCOL.md §8.11), so that an author whose clock is behind
    /// the log's latest claim by more than [`MAX_CLOCK_SKEW_MS`] still writes an op that is
    /// not `backdated`.
    pub fn claim_time(&self, now: Timestamp) -> Timestamp {
        now.max(self.min_next_at())
    }

    /// Whether the group has an invite that takes join requests at `now`
    /// ([`InviteState::takes_join_requests`]): the server accepts a `join_request` only then
    /// (PROTOCOL.md §8.9, §10.1 `send_sealed` step 4).
    pub fn takes_join_requests(&self, now: Timestamp) -> bool {
        self.invites
            .values()
            .any(|invite| invite.takes_join_requests(now))
    }

    /// Group settings.
    pub fn settings(&self) -> &GroupSettings {
        &self.settings
    }

    /// Hash of the crisis-resources text, if set.
    pub fn crisis_resources(&self) -> Option<&[u8; 32]> {
        self.crisis_resources.as_ref()
    }

    /// The current version of a group-work document, if one was ever published (a removed one
    /// has `text_hash` `None`).
    pub fn document(&self, kind: crate::envelope::PinnedKind) -> Option<PinnedDocument> {
        self.documents.get(&kind).copied()
    }

    /// A check-in round this log opened.
    pub fn round(&self, id: &RoundId) -> Option<&Round> {
        self.rounds.get(id)
    }

    /// Every check-in round this log opened, oldest first.
    pub fn rounds(&self) -> impl Iterator<Item = &Round> {
        let mut rounds: Vec<&Round> = self.rounds.values().collect();
        rounds.sort_by_key(|r| r.opened_at);
        rounds.into_iter()
    }

    /// The round open at `t`, if any (at most one is).
    pub fn open_round_at(&self, t: Timestamp) -> Option<&Round> {
        self.rounds.values().find(|r| r.is_open_at(t))
    }

    fn facilitator_count(&self) -> usize {
        self.members
            .values()
            .filter(|m| m.role == Role::Facilitator)
            .count()
    }

    /// Every check of an op against this state. Reads only: atomicity rests on this.
    fn check(&self, op: &Op, hash: &OpHash) -> Result<Option<PinnedList>, LogError> {
        if op.v != OP_VERSION {
            return Err(LogError::UnsupportedVersion { got: op.v });
        }
        if op.group != self.group {
            return Err(LogError::WrongGroup {
                expected: self.group,
                got: op.group,
            });
        }
        if matches!(op.body, OpBody::Genesis { .. }) {
            return Err(LogError::UnexpectedGenesis);
        }
        let Some(expected) = self.seq.checked_add(1) else {
            return Err(LogError::InvalidValue("the log is full".into()));
        };
        if op.seq != expected {
            if op.seq == self.seq && *hash != self.head {
                return Err(LogError::Fork { seq: op.seq });
            }
            return Err(LogError::OutOfOrder {
                expected,
                got: op.seq,
            });
        }
        if op.prev != self.head {
            return Err(LogError::BrokenChain {
                seq: op.seq,
                expected: self.head,
                got: op.prev,
            });
        }
        if op.at < self.min_next_at() {
            return Err(LogError::Backdated {
                at: op.at,
                latest: self.latest_at,
            });
        }

        if let OpBody::Join {
            invite,
            member,
            invite_sig,
        } = &op.body
        {
            return self.check_join(op, invite, member, invite_sig);
        }

        let Some((author_user, author)) = self.member_of_device(&op.author) else {
            return Err(LogError::UnknownAuthor { device: op.author });
        };
        let role = author.role;
        if !allowed(role, &op.body) {
            return Err(LogError::NotAllowed {
                role,
                action: op.body.action(),
            });
        }

        match &op.body {
            OpBody::Genesis { .. } => Err(LogError::UnexpectedGenesis),
            OpBody::Join {
                invite,
                member,
                invite_sig,
            } => self.check_join(op, invite, member, invite_sig),
            OpBody::Invite {
                invite,
                max_uses,
                expires_at,
                ..
            } => {
                if self.invites.contains_key(invite) {
                    return Err(LogError::InvalidInvite(
                        "an invite with this id already exists".into(),
                    ));
                }
                if identity::check_public_key(invite.as_bytes()).is_err() {
                    return Err(LogError::InvalidInvite(
                        "the invite id is not a valid Ed25519 public key".into(),
                    ));
                }
                if *max_uses == 0 {
                    return Err(LogError::InvalidValue(
                        "an invite needs max_uses >= 1".into(),
                    ));
                }
                if *expires_at <= op.at {
                    return Err(LogError::InvalidValue(
                        "the invite expires before it is created".into(),
                    ));
                }
                Ok(None)
            }
            OpBody::RevokeInvite { invite } => match self.invites.get(invite) {
                None => Err(LogError::InvalidInvite("unknown invite".into())),
                Some(state) if state.revoked => Err(LogError::InvalidInvite(
                    "the invite is already revoked".into(),
                )),
                Some(_) => Ok(None),
            },
            OpBody::Add {
                member,
                invite,
                invite_sig,
                invite_device,
            } => {
                let pin = self.check_new_member(member)?;
                match (invite, invite_sig) {
                    (None, None) if invite_device.is_some() => Err(LogError::InvalidInvite(
                        "invite_device is given only with an invite".into(),
                    )),
                    (None, None) => Ok(pin),
                    (Some(invite), Some(sig)) => {
                        let state = self.usable_invite(invite)?;
                        if state.uses >= state.max_uses {
                            return Err(LogError::InvalidInvite("the invite is used up".into()));
                        }
                        // Without a device list only the one device that asked is proven; with
                        // one, every listed device consented (its `link_sig`), and the approval
                        // names the one that asked.
                        let device = requesting_device(member, invite_device.as_ref())?;
                        verify_join_sig(invite, &self.group, &member.user, &device, sig)?;
                        Ok(pin)
                    }
                    _ => Err(LogError::InvalidInvite(
                        "invite and invite_sig must be given together".into(),
                    )),
                }
            }
            OpBody::Remove { user, .. } => {
                if user == author_user {
                    return Err(LogError::NotAllowed {
                        role,
                        action: "remove themselves (use leave)",
                    });
                }
                let target = self.target(user)?;
                check_target(role, target, "remove a facilitator or co-facilitator")?;
                if target == Role::Facilitator && self.facilitator_count() <= 1 {
                    return Err(LogError::LastFacilitator);
                }
                Ok(None)
            }
            OpBody::Unban { user } => {
                if !self.banned.contains(user) {
                    return Err(LogError::InvalidValue("the user is not banned".into()));
                }
                Ok(None)
            }
            OpBody::Leave {} => {
                if role == Role::Facilitator
                    && self.facilitator_count() <= 1
                    && self.members.len() > 1
                {
                    return Err(LogError::LastFacilitator);
                }
                Ok(None)
            }
            OpBody::SetRole {
                user,
                role: new_role,
            } => {
                let target = self.target(user)?;
                if target == *new_role {
                    return no_change(&op.body);
                }
                if target == Role::Facilitator
                    && *new_role != Role::Facilitator
                    && self.facilitator_count() <= 1
                {
                    return Err(LogError::LastFacilitator);
                }
                Ok(None)
            }
            OpBody::Mute { user, until } => {
                let target = self.target(user)?;
                check_target(role, target, "mute a facilitator or co-facilitator")?;
                if *until <= op.at {
                    return Err(LogError::InvalidValue(
                        "a mute must end after it starts".into(),
                    ));
                }
                if self.mutes.get(user) == Some(until) {
                    return no_change(&op.body);
                }
                Ok(None)
            }
            OpBody::Unmute { user } => {
                // A mute outlives membership: a user who left or was removed may still be
                // unmuted, and then holds no role to protect.
                if let Some(target) = self.role_of(user) {
                    check_target(role, target, "unmute a facilitator or co-facilitator")?;
                }
                if !self.mutes.contains_key(user) {
                    return Err(LogError::InvalidValue("the user is not muted".into()));
                }
                Ok(None)
            }
            OpBody::Lock {} => {
                if self.locked {
                    return no_change(&op.body);
                }
                Ok(None)
            }
            OpBody::Unlock {} => {
                if !self.locked {
                    return no_change(&op.body);
                }
                Ok(None)
            }
            OpBody::SetOpenHours { schedule } => {
                if let Some(hours) = schedule {
                    hours.validate()?;
                }
                if *schedule == self.open_hours {
                    return no_change(&op.body);
                }
                Ok(None)
            }
            OpBody::SetSlowMode { seconds } => {
                if *seconds > MAX_SLOW_MODE_SECONDS {
                    return Err(LogError::InvalidValue(format!(
                        "slow mode is at most {MAX_SLOW_MODE_SECONDS} seconds"
                    )));
                }
                if *seconds == self.slow_mode_seconds {
                    return no_change(&op.body);
                }
                Ok(None)
            }
            OpBody::DeleteMessages { messages } => {
                if messages.is_empty() || messages.len() > MAX_DELETE_BATCH {
                    return Err(LogError::InvalidValue(format!(
                        "delete 1 to {MAX_DELETE_BATCH} messages per op, not {}",
                        messages.len()
                    )));
                }
                Ok(None)
            }
            OpBody::SetAgreement { version, .. } => {
                let current = self.agreement.map_or(0, |a| a.version);
                if current.checked_add(1) != Some(*version) {
                    return Err(LogError::InvalidValue(format!(
                        "the next agreement version is {}, not {version}",
                        u64::from(current) + 1
                    )));
                }
                Ok(None)
            }
            OpBody::AcceptAgreement { version, text_hash } => match self.agreement {
                Some(a) if a.version == *version => {
                    if text_hash.is_some_and(|h| h != a.text_hash) {
                        return Err(LogError::InvalidValue(format!(
                            "the acceptance names another text than agreement version {version}"
                        )));
                    }
                    if author.accepted_agreement == *version {
                        return no_change(&op.body);
                    }
                    Ok(None)
                }
                Some(a) => Err(LogError::InvalidValue(format!(
                    "the current agreement is version {}, not {version}",
                    a.version
                ))),
                None => Err(LogError::InvalidValue(
                    "there is no agreement to accept".into(),
                )),
            },
            OpBody::SetRetention { seconds } => {
                if *seconds == Some(0) {
                    return Err(LogError::InvalidValue(
                        "retention must be at least 1 second (null: no limit)".into(),
                    ));
                }
                if *seconds == self.retention_seconds {
                    return no_change(&op.body);
                }
                Ok(None)
            }
            OpBody::SetSettings { settings } => {
                if *settings == self.settings {
                    return no_change(&op.body);
                }
                Ok(None)
            }
            OpBody::SetCrisisResources { text_hash } => {
                if *text_hash == self.crisis_resources {
                    return no_change(&op.body);
                }
                Ok(None)
            }
            OpBody::UpdateDevices { device_list, chain } => self
                .check_update_devices(op, author_user, author, device_list, chain)
                .map(Some),
            OpBody::SetPinned {
                kind,
                version,
                text_hash,
            } => {
                if !kind.is_document() {
                    return Err(LogError::InvalidValue(format!(
                        "set_pinned publishes meetings, warning_topics or resources, not {kind:?}"
                    )));
                }
                let current = self.documents.get(kind);
                let expected = current.map_or(1, |d| d.version.saturating_add(1));
                if *version != expected {
                    return Err(LogError::InvalidValue(format!(
                        "the next version is {expected}, not {version}"
                    )));
                }
                if *text_hash == current.and_then(|d| d.text_hash) {
                    return no_change(&op.body);
                }
                Ok(None)
            }
            OpBody::OpenRound { round, closes_at } => {
                self.check_round_time(op)?;
                if self.rounds.contains_key(round) {
                    return Err(LogError::InvalidValue(
                        "this round id was used before".into(),
                    ));
                }
                if self.rounds.len() >= MAX_ROUNDS {
                    return Err(LogError::InvalidValue(format!(
                        "a group opens at most {MAX_ROUNDS} rounds"
                    )));
                }
                if self.last_round_open_at(op.at) {
                    return Err(LogError::InvalidValue(
                        "a round is already open: close it first".into(),
                    ));
                }
                if let Some(closes_at) = closes_at {
                    let max = op.at.0.saturating_add(crate::group_work::MAX_ROUND_MILLIS);
                    if closes_at.0 <= op.at.0 || closes_at.0 > max {
                        return Err(LogError::InvalidValue(
                            "a round closes after it opens and within a week".into(),
                        ));
                    }
                }
                Ok(None)
            }
            OpBody::CloseRound { round } => {
                self.check_round_time(op)?;
                match self.rounds.get(round) {
                    Some(r) if r.is_open_at(op.at) => Ok(None),
                    _ => Err(LogError::InvalidValue("that round is not open".into())),
                }
            }
            OpBody::Rekey {} => {
                let earliest = self.earliest_rekey_at();
                if op.at < earliest {
                    return Err(LogError::RekeyTooSoon {
                        at: op.at,
                        earliest,
                    });
                }
                Ok(None)
            }
        }
    }

    /// Round ops are not back-dated (the 5 minutes §8.11 allows other ops): otherwise two rounds
    /// could be open at once, or a round closed after the fact, turning answers sent since into
    /// ordinary messages.
    fn check_round_time(&self, op: &Op) -> Result<(), LogError> {
        if op.at < self.latest_at {
            return Err(LogError::InvalidValue(
                "a round is opened or closed no earlier than the log's latest op".into(),
            ));
        }
        Ok(())
    }

    /// Whether the round opened last is open at `t`.
    fn last_round_open_at(&self, t: Timestamp) -> bool {
        self.last_round
            .and_then(|id| self.rounds.get(&id))
            .is_some_and(|r| r.is_open_at(t))
    }

    /// Refuses a device an `update_devices` of this log dropped: it is never listed again (§8.5).
    fn check_not_unlinked<'a>(
        &self,
        devices: impl IntoIterator<Item = &'a DeviceId>,
    ) -> Result<(), LogError> {
        match devices.into_iter().find(|d| self.unlinked.contains_key(d)) {
            Some(device) => Err(LogError::InvalidMember(format!(
                "device {} was unlinked in this group before and cannot be listed again",
                device.short()
            ))),
            None => Ok(()),
        }
    }

    /// The rules of `update_devices` (PROTOCOL.md §8.5), in their order; returns what the op
    /// pins.
    fn check_update_devices(
        &self,
        op: &Op,
        author_user: &UserId,
        author: &Member,
        signed: &SignedDeviceList,
        chain: &[SignedDeviceList],
    ) -> Result<PinnedList, LogError> {
        let list = verify_list(signed)?;
        if list.user != *author_user {
            return Err(LogError::NotAllowed {
                role: author.role,
                action: "update another user's devices",
            });
        }
        if let Some(pinned) = &author.pinned {
            if list.identity != pinned.identity {
                return Err(LogError::IdentityChanged { user: *author_user });
            }
            if list.version <= pinned.version {
                return Err(LogError::InvalidValue(format!(
                    "the device list has version {}, not newer than the version {} the log holds",
                    list.version, pinned.version
                )));
            }
            let current = author
                .entry
                .device_list
                .as_ref()
                .and_then(|signed| serde_json::from_slice::<DeviceList>(&signed.list).ok());
            // Each list succeeds the one before, from the pinned one (§8.5): version + 1, its
            // hash, made by a device it lists.
            if chain.len() > MAX_UPDATE_CHAIN {
                return Err(LogError::InvalidValue(format!(
                    "at most {MAX_UPDATE_CHAIN} lists between the pinned list and the new one"
                )));
            }
            let Some(mut previous) = current.clone() else {
                return Err(LogError::InvalidMember(
                    "the pinned list does not parse".into(),
                ));
            };
            let mut previous_hash = pinned.hash;
            for next in chain.iter().chain(std::iter::once(signed)) {
                let next_list = verify_list(next)?;
                if !next_list.succeeds(&previous, &previous_hash) {
                    return Err(LogError::InvalidValue(format!(
                        "device list version {} does not succeed version {} (the log's, or the \
                         one before it in the chain)",
                        next_list.version, previous.version
                    )));
                }
                previous_hash = next.hash();
                previous = next_list;
            }
            if current.is_some_and(|current| current.same_devices(&list)) {
                return no_change(&op.body);
            }
        } else if !list.lists(&op.author) || !chain.is_empty() {
            // Only the member's own listed device vouches for a first pin (§8.5): a device a
            // server registered for an entry without a list cannot pin a key of its choice.
            return Err(LogError::InvalidMember(
                "a member's first device list must list the device that publishes it, alone".into(),
            ));
        }
        self.check_not_unlinked(list.devices.iter().map(|d| &d.keys.device))?;
        if let Some(banned_with) = self.banned_identities.get(&list.identity) {
            return Err(LogError::Banned { user: *banned_with });
        }
        if self
            .member_with_identity(&list.identity, author_user)
            .is_some()
        {
            return Err(LogError::InvalidMember(
                "the identity key is pinned for another member".into(),
            ));
        }
        if let Some(listed) = list
            .devices
            .iter()
            .find(|d| self.banned_devices.contains_key(&d.keys.device))
        {
            return Err(LogError::BannedDevice {
                device: listed.keys.device,
            });
        }
        if let Some(listed) = list.devices.iter().find(|d| {
            self.devices
                .get(&d.keys.device)
                .is_some_and(|owner| owner != author_user)
        }) {
            return Err(LogError::InvalidMember(format!(
                "device {} already belongs to another member",
                listed.keys.device.short()
            )));
        }
        Ok(PinnedList::of(&list, signed))
    }

    fn check_join(
        &self,
        op: &Op,
        invite: &InviteId,
        member: &MemberEntry,
        invite_sig: &Signature,
    ) -> Result<Option<PinnedList>, LogError> {
        let pin = self.check_new_member(member)?;
        let proven = match member.device_list {
            // Each listed device consented to the list with its `link_sig` (§3.6).
            Some(_) => member.has_device(&op.author),
            None => only_proven_device(member)?.device == op.author,
        };
        if !proven {
            return Err(LogError::InvalidMember(
                "a join must be signed by the joining member's device".into(),
            ));
        }
        let state = self.usable_invite(invite)?;
        if state.requires_approval {
            return Err(LogError::InvalidInvite(
                "the invite requires approval: send a join request to the facilitators".into(),
            ));
        }
        if op.at > state.expires_at {
            return Err(LogError::InvalidInvite("the invite has expired".into()));
        }
        if state.uses >= state.max_uses {
            return Err(LogError::InvalidInvite("the invite is used up".into()));
        }
        verify_join_sig(invite, &self.group, &member.user, &op.author, invite_sig)?;
        Ok(pin)
    }

    /// An invite that exists and is not revoked.
    fn usable_invite(&self, invite: &InviteId) -> Result<&InviteState, LogError> {
        match self.invites.get(invite) {
            None => Err(LogError::InvalidInvite("unknown invite".into())),
            Some(state) if state.revoked => {
                Err(LogError::InvalidInvite("the invite was revoked".into()))
            }
            Some(state) => Ok(state),
        }
    }

    /// A user about to be admitted: into a group that has a facilitator; not a member, not
    /// banned, listing no banned device; a valid entry whose devices belong to nobody else.
    /// Returns what the entry's device list pins, if it carries one.
    fn check_new_member(&self, member: &MemberEntry) -> Result<Option<PinnedList>, LogError> {
        // Only possible after the last facilitator left alone: nobody could moderate a newcomer.
        if self.facilitator_count() == 0 {
            return Err(LogError::NoFacilitator);
        }
        if self.members.contains_key(&member.user) {
            return Err(LogError::AlreadyMember { user: member.user });
        }
        if self.banned.contains(&member.user) {
            return Err(LogError::Banned { user: member.user });
        }
        // The list is not verified yet (validity comes later, §8.6): its claimed identity key is
        // enough to refuse it, and a valid entry must carry the same one.
        if let Some(banned_with) = member
            .device_list
            .as_ref()
            .and_then(|signed| serde_json::from_slice::<DeviceList>(&signed.list).ok())
            .and_then(|list| self.banned_identities.get(&list.identity))
        {
            return Err(LogError::Banned { user: *banned_with });
        }
        if let Some(keys) = member
            .devices
            .iter()
            .find(|k| self.banned_devices.contains_key(&k.device))
        {
            return Err(LogError::BannedDevice {
                device: keys.device,
            });
        }
        self.check_not_unlinked(member.devices.iter().map(|k| &k.device))?;
        let pin = member.validate_pinning()?;
        if pin.is_none() && self.holds_device_list {
            return Err(LogError::InvalidMember(
                "this group uses device lists: the entry must carry one (update the app)".into(),
            ));
        }
        if let Some(keys) = member
            .devices
            .iter()
            .find(|k| self.devices.contains_key(&k.device))
        {
            return Err(LogError::InvalidMember(format!(
                "device {} already belongs to another member",
                keys.device.short()
            )));
        }
        if let Some(pin) = &pin
            && self
                .member_with_identity(&pin.identity, &member.user)
                .is_some()
        {
            return Err(LogError::InvalidMember(
                "the identity key is pinned for another member".into(),
            ));
        }
        Ok(pin)
    }

    /// The role of a member an op acts on.
    fn target(&self, user: &UserId) -> Result<Role, LogError> {
        self.role_of(user)
            .ok_or(LogError::UnknownMember { user: *user })
    }

    /// Applies a checked op. Cannot fail: every condition was checked by [`Self::check`], which
    /// also returned `pin`, what the op's device list pins (if it carries one). Returns the
    /// devices whose membership the op ended ([`AppliedOp::departed`]).
    fn commit(&mut self, op: &Op, hash: OpHash, pin: Option<PinnedList>) -> Vec<DeviceId> {
        let departed = self.commit_body(op, hash, pin);
        if op.body.changes_epoch() {
            self.epoch_departed = departed.iter().copied().collect();
        }
        departed
    }

    fn commit_body(&mut self, op: &Op, hash: OpHash, pin: Option<PinnedList>) -> Vec<DeviceId> {
        let mut departed = Vec::new();
        self.seq = op.seq;
        self.head = hash;
        self.latest_at = self.latest_at.max(op.at);
        if op.body.changes_epoch() {
            self.previous_epoch = Some((self.epoch, self.epoch_hash));
            self.epoch = self.epoch.next();
            self.epoch_hash = hash;
            self.epoch_at = op.at;
        }
        let epoch = self.epoch;
        let author_user = self.devices.get(&op.author).copied();
        match &op.body {
            // Rejected by `check`; a genesis never reaches commit.
            OpBody::Genesis { .. } => {}
            OpBody::Invite {
                invite,
                requires_approval,
                max_uses,
                expires_at,
            } => {
                self.invites.insert(
                    *invite,
                    InviteState {
                        requires_approval: *requires_approval,
                        max_uses: *max_uses,
                        expires_at: *expires_at,
                        uses: 0,
                        revoked: false,
                    },
                );
            }
            OpBody::RevokeInvite { invite } => {
                if let Some(state) = self.invites.get_mut(invite) {
                    state.revoked = true;
                }
            }
            OpBody::Join { invite, member, .. } => {
                self.use_invite(invite);
                self.admit(member, Role::Member, epoch, pin);
            }
            OpBody::Add { member, invite, .. } => {
                if let Some(invite) = invite {
                    self.use_invite(invite);
                }
                self.admit(member, Role::Member, epoch, pin);
            }
            OpBody::Remove { user, ban } => {
                let expelled = self.expel(user);
                if let Some(member) = &expelled {
                    departed.extend(member.entry.devices.iter().map(|k| k.device));
                }
                if *ban {
                    self.banned.insert(*user);
                    if let Some(identity) = expelled.as_ref().and_then(Member::identity) {
                        self.banned_identities.insert(identity, *user);
                    }
                    let listed = self.ever_listed.get(user).cloned().unwrap_or_default();
                    for device in listed {
                        self.banned_devices.insert(device, *user);
                    }
                }
            }
            OpBody::Unban { user } => {
                self.banned.remove(user);
                self.banned_devices.retain(|_, banned| banned != user);
                self.banned_identities.retain(|_, banned| banned != user);
            }
            OpBody::Leave {} => {
                if let Some(member) = author_user.and_then(|user| self.expel(&user)) {
                    departed.extend(member.entry.devices.iter().map(|k| k.device));
                }
            }
            OpBody::SetRole { user, role } => {
                if let Some(member) = self.members.get_mut(user) {
                    member.role = *role;
                }
            }
            OpBody::Mute { user, until } => {
                self.mutes.insert(*user, *until);
            }
            OpBody::Unmute { user } => {
                self.mutes.remove(user);
            }
            OpBody::Lock {} => self.locked = true,
            OpBody::Unlock {} => self.locked = false,
            OpBody::SetOpenHours { schedule } => self.open_hours = schedule.clone(),
            OpBody::SetSlowMode { seconds } => self.slow_mode_seconds = *seconds,
            // The log records the deletion; the server and clients act on it.
            OpBody::DeleteMessages { .. } => {}
            OpBody::SetAgreement { version, text_hash } => {
                self.agreement = Some(Agreement {
                    version: *version,
                    text_hash: *text_hash,
                });
            }
            OpBody::AcceptAgreement { version, .. } => {
                if let Some(member) = author_user.and_then(|u| self.members.get_mut(&u)) {
                    member.accepted_agreement = *version;
                }
            }
            OpBody::SetRetention { seconds } => self.retention_seconds = *seconds,
            OpBody::SetSettings { settings } => self.settings = settings.clone(),
            OpBody::SetCrisisResources { text_hash } => self.crisis_resources = *text_hash,
            OpBody::UpdateDevices { device_list, .. } => {
                if let Some(user) = author_user {
                    departed = self.replace_devices(&user, device_list, pin);
                }
            }
            OpBody::SetPinned {
                kind,
                version,
                text_hash,
            } => {
                self.documents.insert(
                    *kind,
                    PinnedDocument {
                        version: *version,
                        text_hash: *text_hash,
                    },
                );
            }
            OpBody::OpenRound { round, closes_at } => {
                // `check` found the author's user among the members.
                if let Some(user) = author_user {
                    self.last_round = Some(*round);
                    self.rounds.insert(
                        *round,
                        Round {
                            id: *round,
                            opened_by: user,
                            opened_at: op.at,
                            closes_at: *closes_at,
                            closed_at: None,
                        },
                    );
                }
            }
            OpBody::CloseRound { round } => {
                if let Some(r) = self.rounds.get_mut(round) {
                    r.closed_at = Some(op.at);
                }
            }
            // The epoch moved on above; members, devices and everything else stay.
            OpBody::Rekey {} => {}
        }
        departed
    }

    /// Gives `user` the devices of `signed` (checked by [`Self::check`], which also parsed what
    /// it pins). A dropped device is no member's any more and departs as in a `remove` (§8.5,
    /// §8.10); returns the dropped devices.
    fn replace_devices(
        &mut self,
        user: &UserId,
        signed: &SignedDeviceList,
        pin: Option<PinnedList>,
    ) -> Vec<DeviceId> {
        let Some(member) = self.members.get_mut(user) else {
            return Vec::new();
        };
        let Ok(list) = serde_json::from_slice::<DeviceList>(&signed.list) else {
            // Unreachable: `check` verified (and so parsed) these very bytes.
            return Vec::new();
        };
        let dropped: Vec<DeviceId> = member
            .entry
            .devices
            .iter()
            .map(|keys| keys.device)
            .filter(|device| !list.lists(device))
            .collect();
        for keys in &member.entry.devices {
            self.devices.remove(&keys.device);
        }
        member.entry.devices = list.device_keys();
        member.entry.device_list = Some(signed.clone());
        member.pinned = pin;
        let listed = self.ever_listed.entry(*user).or_default();
        for keys in &member.entry.devices {
            self.departed.remove(&keys.device);
            self.devices.insert(keys.device, *user);
            listed.insert(keys.device);
        }
        for device in &dropped {
            self.departed.insert(*device, self.seq);
            self.unlinked.insert(*device, *user);
        }
        self.holds_device_list = true;
        dropped
    }

    fn use_invite(&mut self, invite: &InviteId) {
        if let Some(state) = self.invites.get_mut(invite) {
            state.uses = state.uses.saturating_add(1);
        }
    }

    fn admit(
        &mut self,
        entry: &MemberEntry,
        role: Role,
        joined_epoch: Epoch,
        pinned: Option<PinnedList>,
    ) {
        let listed = self.ever_listed.entry(entry.user).or_default();
        for keys in &entry.devices {
            self.departed.remove(&keys.device);
            self.devices.insert(keys.device, entry.user);
            listed.insert(keys.device);
        }
        if pinned.is_some() {
            self.holds_device_list = true;
        }
        self.members.insert(
            entry.user,
            Member {
                entry: entry.clone(),
                pinned,
                role,
                joined_epoch,
                accepted_agreement: 0,
            },
        );
    }

    /// Removes a member and their devices; returns what they were. Keeps their mute.
    fn expel(&mut self, user: &UserId) -> Option<Member> {
        let member = self.members.remove(user)?;
        for keys in &member.entry.devices {
            self.departed.insert(keys.device, self.seq);
            self.devices.remove(&keys.device);
        }
        Some(member)
    }
}

/// The rejection of an op that would not change the state.
fn no_change<T>(body: &OpBody) -> Result<T, LogError> {
    Err(LogError::NoChange {
        action: body.action(),
    })
}

/// Only a facilitator may act on a facilitator or co-facilitator.
fn check_target(author: Role, target: Role, action: &'static str) -> Result<(), LogError> {
    if target.is_moderator() && author != Role::Facilitator {
        return Err(LogError::NotAllowed {
            role: author,
            action,
        });
    }
    Ok(())
}

/// Why an op was rejected. Each variant has a stable code ([`LogError::code`]) for error frames.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// The op is larger than [`MAX_OP_BYTES`].
    #[error("op is {len} bytes, more than the maximum of {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// The signature does not verify under the op's author (or the author is not a valid key).
    #[error("op signature does not verify under its author's key")]
    BadSignature,
    /// The op is not valid JSON of an [`Op`].
    #[error("malformed op: {0}")]
    Malformed(String),
    /// The op's format version is not [`OP_VERSION`].
    #[error(
        "unsupported op version {got} (this software understands version {OP_VERSION}): update"
    )]
    UnsupportedVersion {
        /// The version found.
        got: u8,
    },
    /// The op names another group.
    #[error("op belongs to group {got}, not {expected}")]
    WrongGroup {
        /// This group.
        expected: GroupId,
        /// The group the op names.
        got: GroupId,
    },
    /// The op's `seq` is not the next one.
    #[error("op has seq {got} but the next op must have seq {expected}: fetch the missing ops")]
    OutOfOrder {
        /// The next seq.
        expected: u64,
        /// The op's seq.
        got: u64,
    },
    /// A different, correctly signed op was already applied at this `seq`: two histories of
    /// the group exist. (Only the signature of the rejected op was checked, not its author's
    /// authority at that point: keep both ops as the evidence.)
    #[error("a different op is already at seq {seq}: the group log has forked")]
    Fork {
        /// The contested seq.
        seq: u64,
    },
    /// The op's `prev` is not the hash of the previous op.
    #[error("op {seq} does not chain onto the previous op (prev {got}, expected {expected})")]
    BrokenChain {
        /// The op's seq.
        seq: u64,
        /// The previous op's hash.
        expected: OpHash,
        /// The op's `prev`.
        got: OpHash,
    },
    /// The log does not start with a genesis op (or is empty).
    #[error("the group log must start with a genesis op")]
    NotGenesis,
    /// A genesis op appeared after the start of the log.
    #[error("a genesis op can only be the first op of a log")]
    UnexpectedGenesis,
    /// The author is not a device of a current member.
    #[error("op author {device} is not a device of a current member")]
    UnknownAuthor {
        /// The author device.
        device: DeviceId,
    },
    /// The policy forbids this author's role this action.
    #[error("a {role} may not {action}")]
    NotAllowed {
        /// The author's role.
        role: Role,
        /// The op type ([`OpBody::action`]) or a description of the forbidden target.
        action: &'static str,
    },
    /// The op acts on a user who is not a member.
    #[error("user {user} is not a member of the group")]
    UnknownMember {
        /// The user.
        user: UserId,
    },
    /// The op admits a user who is already a member.
    #[error("user {user} is already a member of the group")]
    AlreadyMember {
        /// The user.
        user: UserId,
    },
    /// The op admits a banned user.
    #[error("user {user} is banned from the group (a facilitator must unban them first)")]
    Banned {
        /// The user.
        user: UserId,
    },
    /// The op admits a member listing a device of a banned user (a ban covers the devices the
    /// user had when banned, whatever user id they come back with).
    #[error(
        "device {device} belongs to a user banned from the group (a facilitator must unban them first)"
    )]
    BannedDevice {
        /// The banned device.
        device: DeviceId,
    },
    /// The op admits someone into a group that has no facilitator (its last facilitator left
    /// alone): nobody could moderate the group, so it takes no new members.
    #[error("the group has no facilitator: nobody can join it or be added")]
    NoFacilitator,
    /// The op would leave the state exactly as it is (e.g. `lock` while locked, accepting an
    /// agreement version already accepted, setting a value to its current value).
    #[error("{action} would change nothing")]
    NoChange {
        /// The op type ([`OpBody::action`]).
        action: &'static str,
    },
    /// The op claims a time more than [`MAX_CLOCK_SKEW_MS`] before the latest time claimed by
    /// an earlier op of the log ([`GroupState::min_next_at`]).
    #[error(
        "op time {at:?} is more than {MAX_CLOCK_SKEW_MS} ms before the log's latest op time {latest:?}: check the device clock"
    )]
    Backdated {
        /// The op's claimed time.
        at: Timestamp,
        /// The latest claimed time of an earlier op ([`GroupState::latest_at`]).
        latest: Timestamp,
    },
    /// The invite is unknown, revoked, expired, used up, needs approval, or its signature fails.
    #[error("invalid invite: {0}")]
    InvalidInvite(String),
    /// A member entry is invalid (see [`MemberEntry`]).
    #[error("invalid member: {0}")]
    InvalidMember(String),
    /// The op would leave the group without a facilitator.
    #[error("the group must keep a facilitator: make someone else facilitator first")]
    LastFacilitator,
    /// A value in the op is out of range or does not fit the current state.
    #[error("invalid value: {0}")]
    InvalidValue(String),
    /// An `update_devices` whose list is signed by another identity key than the one the log
    /// pinned for the member (PROTOCOL.md §8.5): a user id never changes its identity key.
    #[error(
        "the device list of user {user} is signed by another identity key than the one the group holds for them"
    )]
    IdentityChanged {
        /// The member.
        user: UserId,
    },
    /// A `rekey` claims a time less than [`MIN_REKEY_INTERVAL_MS`] after the op that started
    /// the current epoch (the epoch is still fresh), or earlier than the log's latest op (it is
    /// back-dated) ([`GroupState::earliest_rekey_at`]).
    #[error(
        "rekey at {at:?} is too soon: it must be at least {MIN_REKEY_INTERVAL_MS} ms after the current epoch began and not before the log's latest op; the earliest is {earliest:?}"
    )]
    RekeyTooSoon {
        /// The op's claimed time.
        at: Timestamp,
        /// The earliest time a `rekey` may claim ([`GroupState::earliest_rekey_at`]).
        earliest: Timestamp,
    },
    /// The op's claimed time is too far from the server's clock ([`Op::check_clock`]).
    #[error(
        "op time {at:?} is more than {MAX_CLOCK_SKEW_MS} ms from the server's time {now:?}: check the device clock"
    )]
    ClockSkew {
        /// The op's claimed time.
        at: Timestamp,
        /// The server's time.
        now: Timestamp,
    },
}

impl LogError {
    /// A stable snake_case code for error frames and logs.
    pub fn code(&self) -> &'static str {
        match self {
            LogError::TooLarge { .. } => "too_large",
            LogError::BadSignature => "bad_signature",
            LogError::Malformed(_) => "malformed",
            LogError::UnsupportedVersion { .. } => "unsupported_version",
            LogError::WrongGroup { .. } => "wrong_group",
            LogError::OutOfOrder { .. } => "out_of_order",
            LogError::Fork { .. } => "fork",
            LogError::BrokenChain { .. } => "broken_chain",
            LogError::NotGenesis => "not_genesis",
            LogError::UnexpectedGenesis => "unexpected_genesis",
            LogError::UnknownAuthor { .. } => "unknown_author",
            LogError::NotAllowed { .. } => "not_allowed",
            LogError::UnknownMember { .. } => "unknown_member",
            LogError::AlreadyMember { .. } => "already_member",
            LogError::Banned { .. } => "banned",
            LogError::BannedDevice { .. } => "banned_device",
            LogError::NoFacilitator => "no_facilitator",
            LogError::NoChange { .. } => "no_change",
            LogError::Backdated { .. } => "backdated",
            LogError::InvalidInvite(_) => "invalid_invite",
            LogError::InvalidMember(_) => "invalid_member",
            LogError::LastFacilitator => "last_facilitator",
            LogError::InvalidValue(_) => "invalid_value",
            LogError::IdentityChanged { .. } => "identity_changed",
            LogError::ClockSkew { .. } => "clock_skew",
            LogError::RekeyTooSoon { .. } => "rekey_too_soon",
        }
    }
}

#[cfg(test)]
mod open_hours_tests {
    use super::*;

    fn hours(tz: &str, windows: &[(u8, u16, u16)]) -> OpenHours {
        OpenHours {
            time_zone: tz.into(),
            windows: windows
                .iter()
                .map(|&(day, start_minute, end_minute)| OpenWindow {
                    day,
                    start_minute,
                    end_minute,
                })
                .collect(),
        }
    }

    #[test]
    fn open_hours_follow_the_groups_time_zone() {
        // 2026-01-05 is a Monday. 17:30 UTC is 18:30 in Berlin (CET, UTC+1) and 12:30 in New York.
        let monday_1730_utc = Timestamp(1_767_634_200_000);
        let evening = hours("Europe/Berlin", &[(0, 18 * 60, 20 * 60)]);
        assert!(evening.is_open_at(monday_1730_utc).unwrap());
        let ny = hours("America/New_York", &[(0, 18 * 60, 20 * 60)]);
        assert!(!ny.is_open_at(monday_1730_utc).unwrap());
        let tuesday = hours("Europe/Berlin", &[(1, 0, 1440)]);
        assert!(!tuesday.is_open_at(monday_1730_utc).unwrap());
        assert!(
            hours("Mars/Olympus_Mons", &[(0, 0, 1440)])
                .is_open_at(monday_1730_utc)
                .is_err()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::PinnedKind;
    use crate::test_rng;

    const T0: u64 = 1_700_000_000_000;
    const HOUR: u64 = 3_600_000;

    struct Person {
        user: UserId,
        device: DeviceIdentity,
        name: &'static str,
    }

    impl Person {
        fn new(seed: u8, name: &'static str) -> Person {
            let mut rng = test_rng(seed);
            let user = UserId::random(&mut rng);
            Person {
                user,
                device: DeviceIdentity::generate(&mut rng),
                name,
            }
        }

        fn id(&self) -> DeviceId {
            self.device.device_id()
        }

        fn entry(&self) -> MemberEntry {
            MemberEntry {
                user: self.user,
                display_name: self.name.into(),
                devices: vec![self.device.public_keys()],
                device_list: None,
            }
        }
    }

    /// A group created by `fac`, with its log kept alongside the state.
    struct Group {
        state: GroupState,
        log: Vec<SignedOp>,
        clock: u64,
    }

    impl Group {
        fn new(fac: &Person) -> Group {
            let group = GroupId::random(&mut test_rng(200));
            let genesis = Op::genesis(
                group,
                fac.id(),
                Timestamp(T0),
                fac.entry(),
                GroupSettings::default(),
            )
            .sign(&fac.device)
            .unwrap();
            let state = GroupState::from_genesis(&genesis).unwrap();
            Group {
                state,
                log: vec![genesis],
                clock: T0,
            }
        }

        fn sign(&mut self, author: &Person, body: OpBody) -> SignedOp {
            self.clock += 1000;
            self.state
                .next_op(author.id(), Timestamp(self.clock), body)
                .sign(&author.device)
                .unwrap()
        }

        fn apply(&mut self, signed: SignedOp) -> Result<AppliedOp, LogError> {
            let applied = self.state.apply(&signed)?;
            self.log.push(signed);
            Ok(applied)
        }

        /// Signs and applies; checks the epoch rule on every accepted op.
        fn push(&mut self, author: &Person, body: OpBody) -> Result<AppliedOp, LogError> {
            let signed = self.sign(author, body);
            let before = self.state.epoch();
            let before_hash = self.state.epoch_hash();
            let before_previous = self.state.previous_epoch();
            let applied = self.apply(signed)?;
            let action = applied.op.body.action();
            if applied.op.body.changes_epoch() {
                assert_eq!(self.state.epoch(), before.next(), "epoch after {action}");
                assert_eq!(
                    self.state.epoch_hash(),
                    applied.hash,
                    "epoch hash after {action}"
                );
                assert_eq!(
                    self.state.previous_epoch(),
                    Some((before, before_hash)),
                    "previous epoch after {action}"
                );
            } else {
                assert_eq!(self.state.epoch(), before, "epoch after {action}");
                assert_eq!(
                    self.state.epoch_hash(),
                    before_hash,
                    "epoch hash after {action}"
                );
                assert_eq!(self.state.previous_epoch(), before_previous);
            }
            Ok(applied)
        }

        fn ok(&mut self, author: &Person, body: OpBody) {
            if let Err(e) = self.push(author, body) {
                panic!("op rejected: {e}");
            }
        }

        /// Signs `body`, expects `apply` to fail with `expected`, and checks that the state is
        /// exactly as before (atomicity).
        fn rejects(&mut self, author: &Person, body: OpBody, expected: LogError) {
            let signed = self.sign(author, body);
            self.rejects_signed(&signed, expected);
        }

        /// Signs `body` and expects `apply` to refuse it as an invalid value, changing nothing.
        fn invalid_value(&mut self, author: &Person, body: OpBody) -> bool {
            let signed = self.sign(author, body);
            let before = self.state.clone();
            let refused = matches!(self.state.apply(&signed), Err(LogError::InvalidValue(_)));
            refused && self.state == before
        }

        fn rejects_signed(&mut self, signed: &SignedOp, expected: LogError) {
            let before = self.state.clone();
            assert_eq!(self.state.apply(signed).unwrap_err(), expected);
            assert_eq!(self.state, before, "state changed by a rejected op");
        }

        fn invite(
            &mut self,
            author: &Person,
            seed: u8,
            approval: bool,
            max_uses: u32,
        ) -> InviteSecret {
            let secret = InviteSecret::generate(&mut test_rng(seed));
            let expires_at = Timestamp(self.clock + 24 * HOUR);
            self.ok(
                author,
                OpBody::Invite {
                    invite: secret.id(),
                    requires_approval: approval,
                    max_uses,
                    expires_at,
                },
            );
            secret
        }

        fn join_body(&self, who: &Person, secret: &InviteSecret) -> OpBody {
            OpBody::Join {
                invite: secret.id(),
                member: who.entry(),
                invite_sig: secret.sign_join(&self.state.group(), &who.user, &who.id()),
            }
        }

        fn add_body(&self, who: &Person, secret: Option<&InviteSecret>) -> OpBody {
            OpBody::Add {
                member: who.entry(),
                invite: secret.map(|s| s.id()),
                invite_sig: secret.map(|s| s.sign_join(&self.state.group(), &who.user, &who.id())),
                invite_device: None,
            }
        }
    }

    fn set_role(user: &Person, role: Role) -> OpBody {
        OpBody::SetRole {
            user: user.user,
            role,
        }
    }

    fn not_allowed(role: Role, action: &'static str) -> LogError {
        LogError::NotAllowed { role, action }
    }

    /// A facilitator, a co-facilitator and two plain members.
    fn populated() -> (Group, [Person; 4]) {
        let people = [
            Person::new(1, "Fay"),
            Person::new(2, "Cole"),
            Person::new(3, "Mia"),
            Person::new(4, "Noor"),
        ];
        let [fac, co, mia, noor] = &people;
        let mut g = Group::new(fac);
        let secret = g.invite(fac, 100, false, 10);
        for p in [co, mia, noor] {
            let body = g.join_body(p, &secret);
            g.ok(p, body);
        }
        g.ok(fac, set_role(co, Role::CoFacilitator));
        (g, people)
    }

    #[test]
    fn full_sequence_replays_to_expected_state() {
        let fac = Person::new(1, "Fay");
        let alice = Person::new(2, "Alice");
        let bob = Person::new(3, "Bob");
        let carol = Person::new(4, "Carol");
        let mut g = Group::new(&fac);
        assert_eq!(g.state.epoch(), Epoch(0));
        assert_eq!(g.state.role_of(&fac.user), Some(Role::Facilitator));
        assert_eq!(g.state.genesis_hash(), g.log[0].hash());

        let open = g.invite(&fac, 100, false, 2);
        let body = g.join_body(&alice, &open);
        g.ok(&alice, body);
        let gated = g.invite(&fac, 101, true, 1);
        let body = g.add_body(&bob, Some(&gated));
        g.ok(&fac, body);
        g.ok(&fac, set_role(&bob, Role::CoFacilitator));
        g.ok(
            &bob,
            OpBody::Mute {
                user: alice.user,
                until: Timestamp(g.clock + HOUR),
            },
        );
        assert!(g.state.is_muted(&alice.user, Timestamp(g.clock)));
        g.ok(&bob, OpBody::Unmute { user: alice.user });
        assert!(!g.state.is_muted(&alice.user, Timestamp(g.clock)));
        g.ok(&bob, OpBody::Lock {});
        assert!(g.state.locked());
        g.ok(&bob, OpBody::Unlock {});
        let hours = OpenHours {
            time_zone: "Europe/Berlin".into(),
            windows: vec![OpenWindow {
                day: 0,
                start_minute: 18 * 60,
                end_minute: 21 * 60,
            }],
        };
        g.ok(
            &bob,
            OpBody::SetOpenHours {
                schedule: Some(hours.clone()),
            },
        );
        g.ok(&bob, OpBody::SetSlowMode { seconds: 30 });
        g.ok(
            &bob,
            OpBody::DeleteMessages {
                messages: vec![MessageId([9; 16])],
            },
        );
        g.ok(
            &fac,
            OpBody::SetAgreement {
                version: 1,
                text_hash: [7; 32],
            },
        );
        assert!(!g.state.has_accepted_agreement(&alice.user));
        g.ok(
            &alice,
            OpBody::AcceptAgreement {
                version: 1,
                text_hash: None,
            },
        );
        assert!(g.state.has_accepted_agreement(&alice.user));
        g.ok(
            &fac,
            OpBody::SetRetention {
                seconds: Some(30 * 86_400),
            },
        );
        let settings = GroupSettings {
            members_may_message_privately: true,
        };
        g.ok(
            &fac,
            OpBody::SetSettings {
                settings: settings.clone(),
            },
        );
        g.ok(
            &fac,
            OpBody::SetCrisisResources {
                text_hash: Some([5; 32]),
            },
        );
        g.ok(
            &bob,
            OpBody::Remove {
                user: alice.user,
                ban: true,
            },
        );
        assert!(g.state.is_banned(&alice.user));
        g.ok(&fac, OpBody::Unban { user: alice.user });
        let body = g.join_body(&carol, &open);
        g.ok(&carol, body);
        g.ok(&carol, OpBody::Leave {});

        let s = &g.state;
        assert_eq!(s.seq(), g.log.len() as u64 - 1);
        assert_eq!(s.head(), g.log.last().unwrap().hash());
        // join, add, remove, join, leave
        assert_eq!(s.epoch(), Epoch(5));
        let users: Vec<_> = s.members().keys().copied().collect();
        let mut expected = vec![fac.user, bob.user];
        expected.sort();
        assert_eq!(users, expected);
        assert_eq!(s.role_of(&bob.user), Some(Role::CoFacilitator));
        assert_eq!(s.member(&bob.user).unwrap().joined_epoch, Epoch(2));
        assert!(s.banned().is_empty());
        assert!(s.mutes().is_empty());
        assert!(!s.locked());
        assert_eq!(s.open_hours(), Some(&hours));
        assert_eq!(s.slow_mode_seconds(), 30);
        assert_eq!(
            s.agreement(),
            Some(&Agreement {
                version: 1,
                text_hash: [7; 32]
            })
        );
        assert_eq!(s.retention_seconds(), Some(30 * 86_400));
        assert_eq!(s.settings(), &settings);
        assert_eq!(s.crisis_resources(), Some(&[5; 32]));
        assert_eq!(s.invite(&open.id()).unwrap().uses, 2);
        assert_eq!(s.invite(&gated.id()).unwrap().uses, 1);

        // Devices: only current members'; the facilitator list excludes nobody here.
        let devices: Vec<_> = s.current_devices().iter().map(|k| k.device).collect();
        assert_eq!(devices.len(), 2);
        assert!(devices.contains(&fac.id()) && devices.contains(&bob.id()));
        assert!(!devices.contains(&carol.id()) && !devices.contains(&alice.id()));
        assert_eq!(s.facilitator_devices().len(), 2);
        assert_eq!(
            s.member_of_device(&bob.id()).map(|(u, _)| *u),
            Some(bob.user)
        );
        assert!(s.member_of_device(&alice.id()).is_none());

        // A fresh replay of the stored log reaches the same state, including through JSON.
        assert_eq!(&verify_log(&g.log).unwrap(), s);
        let json = serde_json::to_string(&g.log).unwrap();
        let parsed: Vec<SignedOp> = serde_json::from_str(&json).unwrap();
        assert_eq!(&verify_log(&parsed).unwrap(), s);
    }

    #[test]
    fn epoch_changes_exactly_on_membership_changes() {
        let (mut g, [fac, co, mia, noor]) = populated();
        // Genesis (0) and three joins: epoch 3. SetRole did not change it.
        assert_eq!(g.state.epoch(), Epoch(3));
        let epoch = g.state.epoch();
        g.ok(
            &co,
            OpBody::Mute {
                user: mia.user,
                until: Timestamp(g.clock + HOUR),
            },
        );
        g.ok(&co, OpBody::Lock {});
        g.ok(
            &fac,
            OpBody::SetAgreement {
                version: 1,
                text_hash: [1; 32],
            },
        );
        g.ok(&fac, set_role(&mia, Role::CoFacilitator));
        let _ = g.invite(&fac, 120, true, 1);
        assert_eq!(g.state.epoch(), epoch);
        g.ok(
            &fac,
            OpBody::Remove {
                user: noor.user,
                ban: false,
            },
        );
        assert_eq!(g.state.epoch(), epoch.next());
        let body = g.add_body(&noor, None);
        g.ok(&co, body);
        assert_eq!(
            g.state.member(&noor.user).unwrap().joined_epoch,
            epoch.next().next()
        );
        g.ok(&noor, OpBody::Leave {});
        assert_eq!(g.state.epoch(), Epoch(epoch.0 + 3));
        for body in [
            OpBody::Join {
                invite: InviteId([0; 32]),
                member: noor.entry(),
                invite_sig: Signature([0; 64]),
            },
            OpBody::Add {
                member: noor.entry(),
                invite: None,
                invite_sig: None,
                invite_device: None,
            },
            OpBody::Remove {
                user: noor.user,
                ban: false,
            },
            OpBody::Leave {},
        ] {
            assert!(body.changes_epoch());
        }
        assert!(!OpBody::Lock {}.changes_epoch());
        assert!(!set_role(&mia, Role::Member).changes_epoch());
    }

    #[test]
    fn altered_or_missigned_ops_are_rejected() {
        let (mut g, [fac, _co, mia, _noor]) = populated();
        let stranger = DeviceIdentity::generate(&mut test_rng(77));
        let good = g.sign(&fac, OpBody::Lock {});

        let mut flipped_sig = good.clone();
        flipped_sig.sig.0[10] ^= 1;
        g.rejects_signed(&flipped_sig, LogError::BadSignature);

        let mut flipped_op = good.clone();
        let pos = flipped_op.op.iter().position(|b| *b == b'k').unwrap(); // in "lock"
        flipped_op.op[pos] = b'K';
        g.rejects_signed(&flipped_op, LogError::BadSignature);

        let other_key = SignedOp {
            op: good.op.clone(),
            sig: stranger.sign(LABEL_OP, &[&good.op]),
        };
        g.rejects_signed(&other_key, LogError::BadSignature);

        // A member's key cannot vouch for the facilitator's op either.
        let member_key = SignedOp {
            op: good.op.clone(),
            sig: mia.device.sign(LABEL_OP, &[&good.op]),
        };
        g.rejects_signed(&member_key, LogError::BadSignature);

        // Right key, wrong label.
        let wrong_label = SignedOp {
            op: good.op.clone(),
            sig: fac.device.sign("confide/v1/other", &[&good.op]),
        };
        g.rejects_signed(&wrong_label, LogError::BadSignature);

        let unsigned = SignedOp {
            op: good.op.clone(),
            sig: Signature([0; 64]),
        };
        g.rejects_signed(&unsigned, LogError::BadSignature);

        // Validly signed by a device that is not a member's.
        let op = g
            .state
            .next_op(stranger.device_id(), Timestamp(g.clock), OpBody::Lock {});
        g.rejects_signed(
            &op.sign(&stranger).unwrap(),
            LogError::UnknownAuthor {
                device: stranger.device_id(),
            },
        );

        // Op::sign refuses to sign someone else's op.
        let op = g
            .state
            .next_op(fac.id(), Timestamp(g.clock), OpBody::Lock {});
        assert!(matches!(op.sign(&stranger), Err(LogError::InvalidValue(_))));

        g.apply(good).unwrap();
        assert!(g.state.locked());
    }

    #[test]
    fn malformed_oversized_and_future_ops_are_rejected() {
        let (mut g, [fac, ..]) = populated();
        let sign_raw = |bytes: Vec<u8>| SignedOp {
            sig: fac.device.sign(LABEL_OP, &[&bytes]),
            op: bytes,
        };

        let huge = sign_raw(vec![b' '; MAX_OP_BYTES + 1]);
        g.rejects_signed(
            &huge,
            LogError::TooLarge {
                len: MAX_OP_BYTES + 1,
                max: MAX_OP_BYTES,
            },
        );
        let big_name = Person {
            name: "x",
            ..Person::new(50, "x")
        };
        let mut entry = big_name.entry();
        entry.display_name = "x".repeat(MAX_OP_BYTES);
        let op = g.state.next_op(
            fac.id(),
            Timestamp(g.clock),
            OpBody::Add {
                member: entry,
                invite: None,
                invite_sig: None,
                invite_device: None,
            },
        );
        assert!(matches!(
            op.sign(&fac.device),
            Err(LogError::TooLarge { .. })
        ));

        // Unknown fields are refused, after the signature checked out.
        let op = g
            .state
            .next_op(fac.id(), Timestamp(g.clock), OpBody::Lock {});
        let mut value = serde_json::to_value(&op).unwrap();
        value["extra"] = serde_json::json!(1);
        let extra = sign_raw(serde_json::to_vec(&value).unwrap());
        assert!(matches!(g.state.apply(&extra), Err(LogError::Malformed(_))));
        let mut value = serde_json::to_value(&op).unwrap();
        value["body"]["extra"] = serde_json::json!(1);
        let extra_in_body = sign_raw(serde_json::to_vec(&value).unwrap());
        assert!(matches!(
            g.state.apply(&extra_in_body),
            Err(LogError::Malformed(_))
        ));
        let mut value = serde_json::to_value(&op).unwrap();
        value["body"]["type"] = serde_json::json!("self_destruct");
        let unknown_type = sign_raw(serde_json::to_vec(&value).unwrap());
        assert!(matches!(
            g.state.apply(&unknown_type),
            Err(LogError::Malformed(_))
        ));
        let not_json = sign_raw(b"{\"v\":1,".to_vec());
        assert!(matches!(
            g.state.apply(&not_json),
            Err(LogError::Malformed(_))
        ));

        // A future version is reported as such even if its body would not parse today.
        let mut value = serde_json::to_value(&op).unwrap();
        value["v"] = serde_json::json!(2);
        value["body"]["type"] = serde_json::json!("from_the_future");
        let future = sign_raw(serde_json::to_vec(&value).unwrap());
        g.rejects_signed(&future, LogError::UnsupportedVersion { got: 2 });

        // The state is untouched by all of that and still accepts the real next op.
        g.apply(op.sign(&fac.device).unwrap()).unwrap();
    }

    #[test]
    fn policy_table() {
        let u = UserId([1; 16]);
        let bodies = [
            OpBody::Invite {
                invite: InviteId([1; 32]),
                requires_approval: false,
                max_uses: 1,
                expires_at: Timestamp(1),
            },
            OpBody::RevokeInvite {
                invite: InviteId([1; 32]),
            },
            OpBody::Add {
                member: Person::new(9, "P").entry(),
                invite: None,
                invite_sig: None,
                invite_device: None,
            },
            OpBody::Remove { user: u, ban: true },
            OpBody::Unban { user: u },
            OpBody::Leave {},
            OpBody::SetRole {
                user: u,
                role: Role::Member,
            },
            OpBody::Mute {
                user: u,
                until: Timestamp(1),
            },
            OpBody::Unmute { user: u },
            OpBody::Lock {},
            OpBody::Unlock {},
            OpBody::SetOpenHours { schedule: None },
            OpBody::SetSlowMode { seconds: 1 },
            OpBody::DeleteMessages {
                messages: vec![MessageId([1; 16])],
            },
            OpBody::SetAgreement {
                version: 1,
                text_hash: [0; 32],
            },
            OpBody::AcceptAgreement {
                version: 1,
                text_hash: None,
            },
            OpBody::SetRetention { seconds: None },
            OpBody::SetSettings {
                settings: GroupSettings::default(),
            },
            OpBody::SetCrisisResources { text_hash: None },
            OpBody::SetPinned {
                kind: PinnedKind::Meetings,
                version: 1,
                text_hash: None,
            },
            OpBody::OpenRound {
                round: RoundId([1; 16]),
                closes_at: None,
            },
            OpBody::CloseRound {
                round: RoundId([1; 16]),
            },
            OpBody::Genesis {
                creator: Person::new(9, "P").entry(),
                settings: GroupSettings::default(),
            },
            OpBody::Join {
                invite: InviteId([1; 32]),
                member: Person::new(9, "P").entry(),
                invite_sig: Signature([0; 64]),
            },
        ];
        // (action, facilitator, co-facilitator, member)
        let table = [
            ("invite", true, true, false),
            ("revoke_invite", true, true, false),
            ("add", true, true, false),
            ("remove", true, true, false),
            ("unban", true, false, false),
            ("leave", true, true, true),
            ("set_role", true, false, false),
            ("mute", true, true, false),
            ("unmute", true, true, false),
            ("lock", true, true, false),
            ("unlock", true, true, false),
            ("set_open_hours", true, true, false),
            ("set_slow_mode", true, true, false),
            ("delete_messages", true, true, false),
            ("set_agreement", true, false, false),
            ("accept_agreement", true, true, true),
            ("set_retention", true, false, false),
            ("set_settings", true, false, false),
            ("set_crisis_resources", true, false, false),
            ("set_pinned", true, true, false),
            ("open_round", true, true, false),
            ("close_round", true, true, false),
            ("genesis", false, false, false),
            ("join", false, false, false),
        ];
        assert_eq!(bodies.len(), table.len());
        for (body, (action, f, c, m)) in bodies.iter().zip(table) {
            assert_eq!(body.action(), action);
            assert_eq!(allowed(Role::Facilitator, body), f, "facilitator {action}");
            assert_eq!(
                allowed(Role::CoFacilitator, body),
                c,
                "co-facilitator {action}"
            );
            assert_eq!(allowed(Role::Member, body), m, "member {action}");
            // `action()` is the JSON tag.
            assert_eq!(serde_json::to_value(body).unwrap()["type"], action);
        }
    }

    #[test]
    fn group_work_documents_are_versioned_and_only_moderators_publish_them() {
        let (mut g, [fac, co, mia, _]) = populated();
        let set = |kind, version, hash: Option<u8>| OpBody::SetPinned {
            kind,
            version,
            text_hash: hash.map(|b| [b; 32]),
        };
        assert_eq!(g.state.document(PinnedKind::Meetings), None);
        g.rejects(
            &mia,
            set(PinnedKind::Meetings, 1, Some(1)),
            not_allowed(Role::Member, "set_pinned"),
        );
        // Agreement and crisis resources have ops of their own.
        assert!(g.invalid_value(&fac, set(PinnedKind::Agreement, 1, Some(1))));
        assert!(g.invalid_value(&fac, set(PinnedKind::Meetings, 2, Some(1))));
        g.ok(&co, set(PinnedKind::Meetings, 1, Some(1)));
        g.ok(&fac, set(PinnedKind::Resources, 1, Some(2)));
        g.rejects(
            &fac,
            set(PinnedKind::Meetings, 2, Some(1)),
            LogError::NoChange {
                action: "set_pinned",
            },
        );
        g.ok(&fac, set(PinnedKind::Meetings, 2, None));
        assert_eq!(
            g.state.document(PinnedKind::Meetings),
            Some(PinnedDocument {
                version: 2,
                text_hash: None
            })
        );
        g.rejects(
            &fac,
            set(PinnedKind::Meetings, 3, None),
            LogError::NoChange {
                action: "set_pinned",
            },
        );
        g.ok(&fac, set(PinnedKind::Meetings, 3, Some(3)));
        assert_eq!(
            g.state.document(PinnedKind::Resources).unwrap().text_hash,
            Some([2; 32])
        );
        assert_eq!(g.state.document(PinnedKind::WarningTopics), None);
    }

    #[test]
    fn one_round_is_open_at_a_time_and_closes_by_hand_or_at_its_time() {
        let (mut g, [fac, co, mia, _]) = populated();
        let r1 = RoundId([1; 16]);
        let r2 = RoundId([2; 16]);
        let open = |round, closes_at: Option<u64>| OpBody::OpenRound {
            round,
            closes_at: closes_at.map(Timestamp),
        };
        g.rejects(
            &mia,
            open(r1, None),
            not_allowed(Role::Member, "open_round"),
        );
        // `sign` moves the clock on by a second: the op's `at` is `g.clock + 1000`.
        let at = g.clock + 1000;
        assert!(g.invalid_value(&fac, open(r1, Some(at))));
        let at = g.clock + 1000;
        let too_late = at + crate::group_work::MAX_ROUND_MILLIS + 1;
        assert!(g.invalid_value(&fac, open(r1, Some(too_late))));
        g.ok(&co, open(r1, None));
        let r = *g.state.round(&r1).unwrap();
        assert_eq!(r.opened_by, co.user);
        assert_eq!(
            g.state.open_round_at(Timestamp(g.clock)).map(|r| r.id),
            Some(r1)
        );
        assert!(g.invalid_value(&fac, open(r2, None)));
        g.ok(&fac, OpBody::CloseRound { round: r1 });
        assert!(g.invalid_value(&fac, OpBody::CloseRound { round: r1 }));
        // A closed round's id is never used again.
        assert!(g.invalid_value(&fac, open(r1, None)));
        // A round that closes by itself is closed for every op after its time.
        let closes = g.clock + 1000 + 5000;
        g.ok(&fac, open(r2, Some(closes)));
        assert!(
            g.state
                .round(&r2)
                .unwrap()
                .is_open_at(Timestamp(closes - 1))
        );
        while g.clock < closes {
            g.ok(&fac, OpBody::Lock {});
            g.ok(&fac, OpBody::Unlock {});
        }
        assert!(g.invalid_value(&fac, OpBody::CloseRound { round: r2 }));
        assert_eq!(g.state.open_round_at(Timestamp(g.clock)), None);
        // Round ops are never back-dated (other ops may be, by up to five minutes).
        let latest = g.state.latest_at();
        let back = g
            .state
            .next_op(
                fac.id(),
                Timestamp(latest.0 - 1),
                open(RoundId([4; 16]), None),
            )
            .sign(&fac.device)
            .unwrap();
        let before = g.state.clone();
        assert!(matches!(
            g.state.apply(&back),
            Err(LogError::InvalidValue(_))
        ));
        assert_eq!(g.state, before);
        g.ok(&fac, open(RoundId([3; 16]), None));
        assert_eq!(
            g.state.rounds().map(|r| r.id).collect::<Vec<_>>(),
            vec![r1, r2, RoundId([3; 16])]
        );
    }

    #[test]
    fn members_need_a_facilitator_for_moderation() {
        let (mut g, [fac, _co, mia, noor]) = populated();
        let m = Role::Member;
        g.rejects(&mia, OpBody::Lock {}, not_allowed(m, "lock"));
        g.rejects(
            &mia,
            OpBody::Remove {
                user: noor.user,
                ban: false,
            },
            not_allowed(m, "remove"),
        );
        g.rejects(
            &mia,
            OpBody::Mute {
                user: noor.user,
                until: Timestamp(u64::MAX),
            },
            not_allowed(m, "mute"),
        );
        g.rejects(
            &mia,
            set_role(&mia, Role::Facilitator),
            not_allowed(m, "set_role"),
        );
        g.rejects(
            &mia,
            OpBody::Invite {
                invite: InviteSecret::generate(&mut test_rng(60)).id(),
                requires_approval: false,
                max_uses: 1,
                expires_at: Timestamp(u64::MAX),
            },
            not_allowed(m, "invite"),
        );
        g.rejects(
            &mia,
            OpBody::DeleteMessages {
                messages: vec![MessageId([1; 16])],
            },
            not_allowed(m, "delete_messages"),
        );
        // What a member may do.
        g.ok(
            &fac,
            OpBody::SetAgreement {
                version: 1,
                text_hash: [1; 32],
            },
        );
        g.ok(
            &mia,
            OpBody::AcceptAgreement {
                version: 1,
                text_hash: None,
            },
        );
        g.ok(&mia, OpBody::Leave {});
    }

    #[test]
    fn co_facilitators_cannot_touch_roles_settings_or_moderators() {
        let (mut g, [fac, co, mia, _noor]) = populated();
        let c = Role::CoFacilitator;
        g.rejects(
            &co,
            set_role(&mia, Role::CoFacilitator),
            not_allowed(c, "set_role"),
        );
        g.rejects(
            &co,
            set_role(&co, Role::Facilitator),
            not_allowed(c, "set_role"),
        );
        g.rejects(
            &co,
            OpBody::SetAgreement {
                version: 1,
                text_hash: [1; 32],
            },
            not_allowed(c, "set_agreement"),
        );
        g.rejects(
            &co,
            OpBody::SetRetention { seconds: Some(60) },
            not_allowed(c, "set_retention"),
        );
        g.rejects(
            &co,
            OpBody::SetSettings {
                settings: GroupSettings::default(),
            },
            not_allowed(c, "set_settings"),
        );
        g.rejects(
            &co,
            OpBody::SetCrisisResources { text_hash: None },
            not_allowed(c, "set_crisis_resources"),
        );
        let until = Timestamp(g.clock + 10 * HOUR);
        g.rejects(
            &co,
            OpBody::Mute {
                user: fac.user,
                until,
            },
            not_allowed(c, "mute a facilitator or co-facilitator"),
        );
        g.rejects(
            &co,
            OpBody::Remove {
                user: fac.user,
                ban: true,
            },
            not_allowed(c, "remove a facilitator or co-facilitator"),
        );
        // A second co-facilitator is out of reach too.
        g.ok(&fac, set_role(&mia, Role::CoFacilitator));
        g.rejects(
            &co,
            OpBody::Mute {
                user: mia.user,
                until,
            },
            not_allowed(c, "mute a facilitator or co-facilitator"),
        );
        g.ok(
            &fac,
            OpBody::Mute {
                user: mia.user,
                until,
            },
        );
        g.rejects(
            &co,
            OpBody::Unmute { user: mia.user },
            not_allowed(c, "unmute a facilitator or co-facilitator"),
        );
        g.ok(&fac, OpBody::Unmute { user: mia.user });
        g.ok(&fac, set_role(&mia, Role::Member));
        // Plain members are within reach.
        g.ok(
            &co,
            OpBody::Mute {
                user: mia.user,
                until,
            },
        );
        g.ok(
            &co,
            OpBody::Remove {
                user: mia.user,
                ban: true,
            },
        );
        // Nobody removes themselves with `remove`.
        g.rejects(
            &co,
            OpBody::Remove {
                user: co.user,
                ban: false,
            },
            not_allowed(c, "remove themselves (use leave)"),
        );
        g.rejects(
            &fac,
            OpBody::Remove {
                user: fac.user,
                ban: false,
            },
            not_allowed(Role::Facilitator, "remove themselves (use leave)"),
        );
        g.rejects(
            &fac,
            OpBody::Remove {
                user: mia.user,
                ban: false,
            },
            LogError::UnknownMember { user: mia.user },
        );
    }

    #[test]
    fn the_last_facilitator_stays() {
        let (mut g, [fac, co, mia, _noor]) = populated();
        g.rejects(
            &fac,
            set_role(&fac, Role::Member),
            LogError::LastFacilitator,
        );
        g.rejects(
            &fac,
            set_role(&fac, Role::CoFacilitator),
            LogError::LastFacilitator,
        );
        g.rejects(&fac, OpBody::Leave {}, LogError::LastFacilitator);
        g.rejects(
            &fac,
            OpBody::Remove {
                user: fac.user,
                ban: false,
            },
            not_allowed(Role::Facilitator, "remove themselves (use leave)"),
        );
        // With a second facilitator, either may step down or leave.
        g.ok(&fac, set_role(&co, Role::Facilitator));
        g.ok(&co, set_role(&fac, Role::Member));
        g.rejects(&co, set_role(&co, Role::Member), LogError::LastFacilitator);
        g.ok(&co, set_role(&mia, Role::Facilitator));
        g.ok(
            &mia,
            OpBody::Remove {
                user: co.user,
                ban: false,
            },
        );
        assert_eq!(g.state.role_of(&mia.user), Some(Role::Facilitator));
        assert_eq!(g.state.role_of(&co.user), None);
        g.rejects(&mia, OpBody::Leave {}, LogError::LastFacilitator);

        // Alone in the group, the last facilitator may leave.
        let solo = Person::new(40, "Solo");
        let mut g = Group::new(&solo);
        g.ok(&solo, OpBody::Leave {});
        assert!(g.state.members().is_empty());
    }

    #[test]
    fn out_of_order_forked_and_broken_chains_are_rejected() {
        let (mut g, people) = populated();
        let [fac, co, ..] = &people;
        let seq = g.state.seq();

        // Skipping ahead.
        let mut op = g
            .state
            .next_op(fac.id(), Timestamp(g.clock), OpBody::Lock {});
        op.seq += 1;
        g.rejects_signed(
            &op.sign(&fac.device).unwrap(),
            LogError::OutOfOrder {
                expected: seq + 1,
                got: seq + 2,
            },
        );
        // Right seq, wrong prev.
        let mut op = g
            .state
            .next_op(fac.id(), Timestamp(g.clock), OpBody::Lock {});
        op.prev = OpHash([9; 32]);
        g.rejects_signed(
            &op.sign(&fac.device).unwrap(),
            LogError::BrokenChain {
                seq: seq + 1,
                expected: g.state.head(),
                got: OpHash([9; 32]),
            },
        );

        // Two different ops at the same seq and prev: the first wins, the second is a fork.
        let first = g.sign(fac, OpBody::Lock {});
        let second = g.sign(co, OpBody::SetSlowMode { seconds: 10 });
        g.apply(first.clone()).unwrap();
        g.rejects_signed(&second, LogError::Fork { seq: seq + 1 });
        // Re-applying the same op is a stale duplicate, not a fork.
        g.rejects_signed(
            &first,
            LogError::OutOfOrder {
                expected: seq + 2,
                got: seq + 1,
            },
        );
        // An old op from further back.
        let old = g.log[2].clone();
        g.rejects_signed(
            &old,
            LogError::OutOfOrder {
                expected: seq + 2,
                got: 2,
            },
        );

        // A log whose links do not chain fails to verify.
        let mut forged = g.log.clone();
        forged.remove(2);
        assert!(matches!(
            verify_log(&forged),
            Err(LogError::OutOfOrder { .. })
        ));
        // Re-signing a middle op with the same seq but different content breaks the next link.
        let mut forked = g.log.clone();
        let mut op = forked[3].verify().unwrap();
        op.at = Timestamp(op.at.0 + 1);
        let author = people.iter().find(|p| p.id() == op.author).unwrap();
        let resigned = op.sign(&author.device).unwrap();
        forked[3] = resigned;
        let err = verify_log(&forked).unwrap_err();
        assert!(
            matches!(err, LogError::BrokenChain { seq: 4, .. }),
            "{err:?}"
        );

        assert_eq!(verify_log(&[]).unwrap_err(), LogError::NotGenesis);
        assert_eq!(verify_log(&g.log[1..]).unwrap_err(), LogError::NotGenesis);
    }

    #[test]
    fn ops_for_another_group_and_late_genesis_are_rejected() {
        let (mut g, [fac, ..]) = populated();
        let mut op = g
            .state
            .next_op(fac.id(), Timestamp(g.clock), OpBody::Lock {});
        op.group = GroupId([0xEE; 16]);
        g.rejects_signed(
            &op.sign(&fac.device).unwrap(),
            LogError::WrongGroup {
                expected: g.state.group(),
                got: GroupId([0xEE; 16]),
            },
        );
        let genesis = g.state.next_op(
            fac.id(),
            Timestamp(g.clock),
            OpBody::Genesis {
                creator: fac.entry(),
                settings: GroupSettings::default(),
            },
        );
        g.rejects_signed(
            &genesis.sign(&fac.device).unwrap(),
            LogError::UnexpectedGenesis,
        );
        g.rejects_signed(&g.log[0].clone(), LogError::UnexpectedGenesis);
        assert_eq!(
            GroupState::from_genesis(&g.log[1]).unwrap_err(),
            LogError::NotGenesis
        );
    }

    #[test]
    fn genesis_is_checked() {
        let fac = Person::new(1, "Fay");
        let other = Person::new(2, "Other");
        let group = GroupId([3; 16]);
        let at = Timestamp(T0);
        // Signed by a device that is not the creator's.
        let op = Op::genesis(group, other.id(), at, fac.entry(), GroupSettings::default());
        assert!(matches!(
            GroupState::from_genesis(&op.sign(&other.device).unwrap()),
            Err(LogError::InvalidMember(_))
        ));
        let mut op = Op::genesis(group, fac.id(), at, fac.entry(), GroupSettings::default());
        op.seq = 1;
        assert_eq!(
            GroupState::from_genesis(&op.sign(&fac.device).unwrap()).unwrap_err(),
            LogError::OutOfOrder {
                expected: 0,
                got: 1
            }
        );
        let mut op = Op::genesis(group, fac.id(), at, fac.entry(), GroupSettings::default());
        op.prev = OpHash([1; 32]);
        assert!(matches!(
            GroupState::from_genesis(&op.sign(&fac.device).unwrap()),
            Err(LogError::BrokenChain { .. })
        ));
        let mut entry = fac.entry();
        entry.devices[0].sealing_key[0] ^= 1;
        let op = Op::genesis(group, fac.id(), at, entry, GroupSettings::default());
        assert!(matches!(
            GroupState::from_genesis(&op.sign(&fac.device).unwrap()),
            Err(LogError::InvalidMember(_))
        ));
    }

    #[test]
    fn join_with_a_valid_invite() {
        let fac = Person::new(1, "Fay");
        let alice = Person::new(2, "Alice");
        let mut g = Group::new(&fac);
        let secret = g.invite(&fac, 100, false, 1);
        // The invite secret survives a round trip through its link bytes.
        let from_link = InviteSecret::from_bytes(&secret.to_bytes());
        assert_eq!(from_link.id(), secret.id());
        let body = g.join_body(&alice, &from_link);
        let applied = g.push(&alice, body).unwrap();
        assert_eq!(applied.hash, g.state.head());
        assert_eq!(applied.op.author, alice.id());
        let member = g.state.member(&alice.user).unwrap();
        assert_eq!(member.role, Role::Member);
        assert_eq!(member.joined_epoch, Epoch(1));
        assert_eq!(member.entry.display_name, "Alice");
        assert_eq!(g.state.invite(&secret.id()).unwrap().uses, 1);
        // A member cannot join a second time.
        let secret2 = g.invite(&fac, 101, false, 5);
        let body = g.join_body(&alice, &secret2);
        g.rejects(&alice, body, LogError::AlreadyMember { user: alice.user });
    }

    #[test]
    fn unusable_invites_and_forged_invite_signatures_are_rejected() {
        let fac = Person::new(1, "Fay");
        let alice = Person::new(2, "Alice");
        let bob = Person::new(3, "Bob");
        let mut g = Group::new(&fac);
        let invalid = |reason: &str| LogError::InvalidInvite(reason.into());

        // Expired: the join claims a time after `expires_at`.
        let expiring = g.invite(&fac, 100, false, 5);
        let expires_at = g.state.invite(&expiring.id()).unwrap().expires_at;
        let body = g.join_body(&alice, &expiring);
        let late = g
            .state
            .next_op(alice.id(), Timestamp(expires_at.0 + 1), body.clone());
        g.rejects_signed(
            &late.sign(&alice.device).unwrap(),
            invalid("the invite has expired"),
        );
        let on_time = g.state.next_op(alice.id(), expires_at, body);
        let on_time = on_time.sign(&alice.device).unwrap();
        assert!(g.state.clone().apply(&on_time).is_ok());

        // Revoked.
        let revoked = g.invite(&fac, 101, false, 5);
        g.ok(
            &fac,
            OpBody::RevokeInvite {
                invite: revoked.id(),
            },
        );
        g.rejects(
            &fac,
            OpBody::RevokeInvite {
                invite: revoked.id(),
            },
            invalid("the invite is already revoked"),
        );
        let body = g.join_body(&alice, &revoked);
        g.rejects(&alice, body, invalid("the invite was revoked"));

        // Used up.
        let once = g.invite(&fac, 102, false, 1);
        let body = g.join_body(&alice, &once);
        g.ok(&alice, body);
        let body = g.join_body(&bob, &once);
        g.rejects(&bob, body, invalid("the invite is used up"));

        // Needs approval: a direct join is refused, an approving add works once.
        let gated = g.invite(&fac, 103, true, 1);
        let body = g.join_body(&bob, &gated);
        g.rejects(
            &bob,
            body,
            invalid("the invite requires approval: send a join request to the facilitators"),
        );
        let body = g.add_body(&bob, Some(&gated));
        g.ok(&fac, body);
        assert_eq!(g.state.invite(&gated.id()).unwrap().uses, 1);

        // Unknown invite.
        let carol = Person::new(4, "Carol");
        let unknown = InviteSecret::generate(&mut test_rng(104));
        let body = g.join_body(&carol, &unknown);
        g.rejects(&carol, body, invalid("unknown invite"));

        // Forged invite signatures: by another invite's key, or bound to another device,
        // user or group.
        let open = g.invite(&fac, 105, false, 5);
        let forged_by = |sig: Signature| OpBody::Join {
            invite: open.id(),
            member: carol.entry(),
            invite_sig: sig,
        };
        let bad_sig = invalid("the invite signature does not verify");
        let group = g.state.group();
        let sig = unknown.sign_join(&group, &carol.user, &carol.id());
        g.rejects(&carol, forged_by(sig), bad_sig.clone());
        let sig = open.sign_join(&group, &carol.user, &alice.id());
        g.rejects(&carol, forged_by(sig), bad_sig.clone());
        let sig = open.sign_join(&group, &alice.user, &carol.id());
        g.rejects(&carol, forged_by(sig), bad_sig.clone());
        let sig = open.sign_join(&GroupId([0; 16]), &carol.user, &carol.id());
        g.rejects(&carol, forged_by(sig), bad_sig.clone());
        // An approving add with a bad signature, or only half of the invite fields.
        let dave = Person::new(5, "Dave");
        let gated = g.invite(&fac, 106, true, 3);
        let add = |sig: Option<Signature>, invite: Option<InviteId>| OpBody::Add {
            member: dave.entry(),
            invite,
            invite_sig: sig,
            invite_device: None,
        };
        let sig = gated.sign_join(&group, &dave.user, &carol.id());
        g.rejects(&fac, add(Some(sig), Some(gated.id())), bad_sig);
        g.rejects(
            &fac,
            add(None, Some(gated.id())),
            invalid("invite and invite_sig must be given together"),
        );
        // A joiner must sign their own join.
        let body = g.join_body(&carol, &open);
        g.rejects(
            &fac,
            body,
            LogError::InvalidMember("a join must be signed by the joining member's device".into()),
        );
        // A join, or an add approving a request, that also lists someone else's device would
        // have that device's posts shown as the joiner's: refused.
        let only_proven = LogError::InvalidMember(
            "a member joining through an invite lists only the device that asks: other devices \
             cannot prove they are theirs"
                .into(),
        );
        let mut carol_and_erin = carol.entry();
        carol_and_erin
            .devices
            .push(Person::new(6, "Erin").entry().devices[0].clone());
        let body = OpBody::Join {
            invite: open.id(),
            member: carol_and_erin.clone(),
            invite_sig: open.sign_join(&group, &carol.user, &carol.id()),
        };
        g.rejects(&carol, body, only_proven.clone());
        let mut dave_and_erin = dave.entry();
        dave_and_erin.devices = carol_and_erin.devices.split_off(1);
        dave_and_erin
            .devices
            .insert(0, dave.entry().devices[0].clone());
        let body = OpBody::Add {
            member: dave_and_erin,
            invite: Some(gated.id()),
            invite_sig: Some(gated.sign_join(&group, &dave.user, &dave.id())),
            invite_device: None,
        };
        g.rejects(&fac, body, only_proven);
        let body = g.join_body(&carol, &open);
        g.ok(&carol, body);
    }

    #[test]
    fn banned_users_stay_out_until_unbanned() {
        let (mut g, [fac, co, mia, _noor]) = populated();
        let secret = g.invite(&fac, 110, false, 10);
        g.ok(
            &co,
            OpBody::Remove {
                user: mia.user,
                ban: true,
            },
        );
        assert!(g.state.member_of_device(&mia.id()).is_none());
        let body = g.join_body(&mia, &secret);
        g.rejects(&mia, body, LogError::Banned { user: mia.user });
        let body = g.add_body(&mia, None);
        g.rejects(&fac, body, LogError::Banned { user: mia.user });
        // A removed member's device can no longer author anything.
        g.rejects(
            &mia,
            OpBody::Leave {},
            LogError::UnknownAuthor { device: mia.id() },
        );
        g.ok(&fac, OpBody::Unban { user: mia.user });
        g.rejects(
            &fac,
            OpBody::Unban { user: mia.user },
            LogError::InvalidValue("the user is not banned".into()),
        );
        let body = g.join_body(&mia, &secret);
        g.ok(&mia, body);
    }

    #[test]
    fn a_display_name_with_a_line_separator_or_an_arabic_letter_mark_is_invalid() {
        let eve = Person::new(30, "Eve");
        let mut entry = eve.entry();
        for name in [
            // A line or paragraph separator would start a forged line in a member list.
            "Mallory\u{2028}Bob \u{2014} facilitator",
            "Mallory\u{2029}Bob",
            // The Arabic letter mark is a bidirectional mark like LRM and RLM.
            "Eve\u{061C}",
        ] {
            entry.display_name = name.into();
            let err = entry.validate().unwrap_err();
            assert!(
                matches!(err, LogError::InvalidMember(_)),
                "{name:?}: {err:?}"
            );
        }
        // Invisible characters that only make a name look like another's stay valid: clients
        // warn about them (§11.9).
        entry.display_name = "Eve\u{200B}\u{2800}".into();
        entry.validate().unwrap();
    }

    #[test]
    fn member_entries_are_validated() {
        let (mut g, [fac, _co, mia, _noor]) = populated();
        let eve = Person::new(30, "Eve");
        let add = |entry: MemberEntry| OpBody::Add {
            member: entry,
            invite: None,
            invite_sig: None,
            invite_device: None,
        };
        let invalid_member = |g: &mut Group, entry: MemberEntry| {
            let signed = g.sign(&fac, add(entry));
            let before = g.state.clone();
            let err = g.state.apply(&signed).unwrap_err();
            assert!(matches!(err, LogError::InvalidMember(_)), "{err:?}");
            assert_eq!(g.state, before);
        };

        let mut tampered = eve.entry();
        tampered.devices[0].sealing_sig.0[0] ^= 1;
        invalid_member(&mut g, tampered);
        let mut swapped = eve.entry();
        swapped.devices[0].sealing_key =
            DeviceIdentity::generate(&mut test_rng(31)).sealing_public();
        invalid_member(&mut g, swapped);
        // Someone else's device.
        let mut stolen = eve.entry();
        stolen.devices.push(mia.device.public_keys());
        invalid_member(&mut g, stolen);
        let mut twice = eve.entry();
        twice.devices.push(eve.device.public_keys());
        invalid_member(&mut g, twice);
        invalid_member(
            &mut g,
            MemberEntry {
                devices: vec![],
                ..eve.entry()
            },
        );
        let many = (0..=MAX_DEVICES_PER_USER as u8)
            .map(|i| DeviceIdentity::generate(&mut test_rng(150 + i)).public_keys())
            .collect();
        invalid_member(
            &mut g,
            MemberEntry {
                devices: many,
                ..eve.entry()
            },
        );
        for name in [
            "",
            "   ",
            "a\nb",
            "evil\u{202E}gnp",
            &"x".repeat(MAX_DISPLAY_NAME_CHARS + 1),
        ] {
            invalid_member(
                &mut g,
                MemberEntry {
                    display_name: name.into(),
                    ..eve.entry()
                },
            );
        }

        // A join with a tampered device is refused as well.
        let secret = g.invite(&fac, 111, false, 1);
        let mut body = g.join_body(&eve, &secret);
        if let OpBody::Join { member, .. } = &mut body {
            member.devices[0].sealing_sig.0[5] ^= 1;
        }
        let signed = g.sign(&eve, body);
        assert!(matches!(
            g.state.apply(&signed),
            Err(LogError::InvalidMember(_))
        ));

        // The longest valid name, multi-device entries and non-ASCII names are fine.
        let devices = (0..MAX_DEVICES_PER_USER as u8)
            .map(|i| DeviceIdentity::generate(&mut test_rng(170 + i)).public_keys())
            .collect();
        let name = "é".repeat(MAX_DISPLAY_NAME_CHARS);
        g.ok(
            &fac,
            add(MemberEntry {
                display_name: name,
                devices,
                ..eve.entry()
            }),
        );
        assert_eq!(g.state.current_devices().len(), 4 + MAX_DEVICES_PER_USER);
    }

    #[test]
    fn values_are_range_checked() {
        let (mut g, [fac, co, mia, _noor]) = populated();
        let bad = |g: &mut Group, author: &Person, body: OpBody| {
            let signed = g.sign(author, body);
            let before = g.state.clone();
            let err = g.state.apply(&signed).unwrap_err();
            assert!(matches!(err, LogError::InvalidValue(_)), "{err:?}");
            assert_eq!(g.state, before);
        };
        let window = |day, start_minute, end_minute| OpenWindow {
            day,
            start_minute,
            end_minute,
        };
        let hours = |tz: &str, windows: Vec<OpenWindow>| OpBody::SetOpenHours {
            schedule: Some(OpenHours {
                time_zone: tz.into(),
                windows,
            }),
        };
        bad(&mut g, &co, hours("Europe/Berlin", vec![window(7, 0, 60)]));
        bad(&mut g, &co, hours("Europe/Berlin", vec![window(0, 60, 60)]));
        bad(
            &mut g,
            &co,
            hours("Europe/Berlin", vec![window(0, 0, MINUTES_PER_DAY + 1)]),
        );
        bad(&mut g, &co, hours("Europe/Berlin", vec![]));
        bad(
            &mut g,
            &co,
            hours(
                "Europe/Berlin",
                vec![window(0, 0, 60); MAX_OPEN_WINDOWS + 1],
            ),
        );
        bad(&mut g, &co, hours("", vec![window(0, 0, 60)]));
        bad(
            &mut g,
            &co,
            hours("Europe/Berlin;drop", vec![window(0, 0, 60)]),
        );
        bad(
            &mut g,
            &co,
            hours(&"A".repeat(MAX_TIME_ZONE_CHARS + 1), vec![window(0, 0, 60)]),
        );
        g.ok(
            &co,
            hours(
                "America/Argentina/Buenos_Aires",
                vec![window(6, 0, MINUTES_PER_DAY); MAX_OPEN_WINDOWS],
            ),
        );
        g.ok(&co, OpBody::SetOpenHours { schedule: None });
        assert_eq!(g.state.open_hours(), None);

        bad(
            &mut g,
            &co,
            OpBody::SetSlowMode {
                seconds: MAX_SLOW_MODE_SECONDS + 1,
            },
        );
        g.ok(
            &co,
            OpBody::SetSlowMode {
                seconds: MAX_SLOW_MODE_SECONDS,
            },
        );
        bad(&mut g, &co, OpBody::DeleteMessages { messages: vec![] });
        bad(
            &mut g,
            &co,
            OpBody::DeleteMessages {
                messages: vec![MessageId([1; 16]); MAX_DELETE_BATCH + 1],
            },
        );
        g.ok(
            &co,
            OpBody::DeleteMessages {
                messages: vec![MessageId([1; 16]); MAX_DELETE_BATCH],
            },
        );

        bad(
            &mut g,
            &fac,
            OpBody::SetAgreement {
                version: 2,
                text_hash: [0; 32],
            },
        );
        bad(
            &mut g,
            &mia,
            OpBody::AcceptAgreement {
                version: 1,
                text_hash: None,
            },
        );
        g.ok(
            &fac,
            OpBody::SetAgreement {
                version: 1,
                text_hash: [1; 32],
            },
        );
        bad(
            &mut g,
            &fac,
            OpBody::SetAgreement {
                version: 1,
                text_hash: [2; 32],
            },
        );
        g.ok(
            &fac,
            OpBody::SetAgreement {
                version: 2,
                text_hash: [2; 32],
            },
        );
        bad(
            &mut g,
            &mia,
            OpBody::AcceptAgreement {
                version: 1,
                text_hash: None,
            },
        );
        g.ok(
            &mia,
            OpBody::AcceptAgreement {
                version: 2,
                text_hash: None,
            },
        );
        assert_eq!(g.state.member(&mia.user).unwrap().accepted_agreement, 2);

        bad(&mut g, &fac, OpBody::SetRetention { seconds: Some(0) });
        g.ok(&fac, OpBody::SetRetention { seconds: Some(1) });
        assert_eq!(g.state.retention_seconds(), Some(1));
        g.ok(&fac, OpBody::SetRetention { seconds: None });

        let now = g.clock + 1000; // the next op's `at`
        bad(
            &mut g,
            &co,
            OpBody::Mute {
                user: mia.user,
                until: Timestamp(now),
            },
        );
        bad(&mut g, &co, OpBody::Unmute { user: mia.user });
        g.rejects(
            &co,
            OpBody::Mute {
                user: UserId([0; 16]),
                until: Timestamp(u64::MAX),
            },
            LogError::UnknownMember {
                user: UserId([0; 16]),
            },
        );

        let invite = InviteSecret::generate(&mut test_rng(120)).id();
        let inv = |max_uses, expires_at| OpBody::Invite {
            invite,
            requires_approval: false,
            max_uses,
            expires_at: Timestamp(expires_at),
        };
        bad(&mut g, &co, inv(0, u64::MAX));
        bad(&mut g, &co, inv(1, T0));
        g.ok(&co, inv(1, u64::MAX));
        g.rejects(
            &co,
            inv(1, u64::MAX),
            LogError::InvalidInvite("an invite with this id already exists".into()),
        );
        g.rejects(
            &co,
            OpBody::Invite {
                invite: InviteId([0; 32]), // a small-order point
                requires_approval: false,
                max_uses: 1,
                expires_at: Timestamp(u64::MAX),
            },
            LogError::InvalidInvite("the invite id is not a valid Ed25519 public key".into()),
        );
    }

    #[test]
    fn an_invite_id_in_a_non_canonical_encoding_is_refused_so_strict_decoders_agree() {
        // y = p + 3 (little-endian p = ed ff … ff 7f): a point of large order that lax
        // decoders reduce to y = 3. An implementation that refuses non-canonical keys would
        // reject this op, so every implementation must.
        let mut non_canonical = [0xff; 32];
        non_canonical[0] = 0xed + 3;
        non_canonical[31] = 0x7f;
        let fac = Person::new(1, "Fay");
        let mut g = Group::new(&fac);
        g.rejects(
            &fac,
            OpBody::Invite {
                invite: InviteId(non_canonical),
                requires_approval: false,
                max_uses: 1,
                expires_at: Timestamp(u64::MAX),
            },
            LogError::InvalidInvite("the invite id is not a valid Ed25519 public key".into()),
        );
    }

    #[test]
    fn mutes_expire_by_time_or_unmute() {
        let (mut g, [_fac, co, mia, _noor]) = populated();
        let until = Timestamp(g.clock + HOUR);
        g.ok(
            &co,
            OpBody::Mute {
                user: mia.user,
                until,
            },
        );
        assert!(g.state.is_muted(&mia.user, Timestamp(until.0 - 1)));
        assert!(!g.state.is_muted(&mia.user, until));
        assert!(!g.state.is_muted(&co.user, Timestamp(0)));
        // An expired mute stays on record (and may still be lifted) until an unmute.
        g.clock = until.0;
        assert!(!g.state.is_muted(&mia.user, Timestamp(g.clock)));
        assert_eq!(g.state.mutes().get(&mia.user), Some(&until));
        g.ok(&co, OpBody::Unmute { user: mia.user });
        assert!(g.state.mutes().is_empty());
    }

    #[test]
    fn op_json_is_stable() {
        let op = Op {
            v: 1,
            group: GroupId([1; 16]),
            seq: 3,
            prev: OpHash([2; 32]),
            author: DeviceId([3; 32]),
            at: Timestamp(T0),
            body: OpBody::Mute {
                user: UserId([4; 16]),
                until: Timestamp(T0 + 1),
            },
        };
        let json = serde_json::to_string(&op).unwrap();
        assert_eq!(
            json,
            concat!(
                r#"{"v":1,"group":"AQEBAQEBAQEBAQEBAQEBAQ==","seq":3,"#,
                r#""prev":"AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=","#,
                r#""author":"AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=","at":1700000000000,"#,
                r#""body":{"type":"mute","user":"BAQEBAQEBAQEBAQEBAQEBA==","until":1700000000001}}"#
            )
        );
        assert_eq!(serde_json::from_str::<Op>(&json).unwrap(), op);
        let bodies = [
            (OpBody::Leave {}, r#"{"type":"leave"}"#),
            (
                OpBody::SetRole {
                    user: UserId([0; 16]),
                    role: Role::CoFacilitator,
                },
                r#"{"type":"set_role","user":"AAAAAAAAAAAAAAAAAAAAAA==","role":"co_facilitator"}"#,
            ),
            (
                OpBody::SetCrisisResources { text_hash: None },
                r#"{"type":"set_crisis_resources","text_hash":null}"#,
            ),
            (
                OpBody::SetCrisisResources {
                    text_hash: Some([0xFF; 32]),
                },
                r#"{"type":"set_crisis_resources","text_hash":"//////////////////////////////////////////8="}"#,
            ),
            (
                OpBody::SetRetention { seconds: None },
                r#"{"type":"set_retention","seconds":null}"#,
            ),
        ];
        for (body, expected) in bodies {
            assert_eq!(serde_json::to_string(&body).unwrap(), expected);
            assert_eq!(serde_json::from_str::<OpBody>(expected).unwrap(), body);
        }
        assert!(
            serde_json::from_str::<OpBody>(r#"{"type":"set_crisis_resources","text_hash":"AAAA"}"#)
                .is_err()
        );
        // The hash is over the exact bytes, with its own label.
        let signed = SignedOp {
            op: json.clone().into_bytes(),
            sig: Signature([0; 64]),
        };
        assert_eq!(
            signed.hash(),
            OpHash(crate::primitives::hash(
                "confide/v1/op-hash",
                &[json.as_bytes()]
            ))
        );
        assert_eq!(signed.parse_unverified().unwrap(), op);
        assert_eq!(signed.verify().unwrap_err(), LogError::BadSignature);
    }

    #[test]
    fn signing_is_deterministic_and_verifiable() {
        let fac = Person::new(1, "Fay");
        let op = Op::genesis(
            GroupId([1; 16]),
            fac.id(),
            Timestamp(T0),
            fac.entry(),
            GroupSettings::default(),
        );
        let a = op.sign(&fac.device).unwrap();
        let b = op.sign(&fac.device).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.verify().unwrap(), op);
        identity::verify(&fac.id(), "confide/v1/op", &[&a.op], &a.sig).unwrap();
    }

    #[test]
    fn clock_check_bounds_the_claimed_time() {
        let fac = Person::new(1, "Fay");
        let op = Op::genesis(
            GroupId([1; 16]),
            fac.id(),
            Timestamp(T0),
            fac.entry(),
            GroupSettings::default(),
        );
        op.check_clock(Timestamp(T0 + MAX_CLOCK_SKEW_MS)).unwrap();
        op.check_clock(Timestamp(T0 - MAX_CLOCK_SKEW_MS)).unwrap();
        let late = Timestamp(T0 + MAX_CLOCK_SKEW_MS + 1);
        assert_eq!(
            op.check_clock(late).unwrap_err(),
            LogError::ClockSkew {
                at: Timestamp(T0),
                now: late
            }
        );
    }

    #[test]
    fn invite_secret_never_prints_its_secret() {
        let secret = InviteSecret::from_bytes(&[0xAB; 32]);
        let text = format!("{secret:?}");
        assert!(text.contains("InviteSecret") && !text.to_lowercase().contains("abab"));
        assert!(!text.contains(&crate::encoding::b64_encode(&[0xAB; 32])));
        assert_eq!(*secret.to_bytes(), [0xAB; 32]);
    }

    #[test]
    fn error_codes_are_stable_and_distinct() {
        let errors = [
            LogError::TooLarge { len: 1, max: 0 },
            LogError::BadSignature,
            LogError::Malformed(String::new()),
            LogError::UnsupportedVersion { got: 2 },
            LogError::WrongGroup {
                expected: GroupId([0; 16]),
                got: GroupId([1; 16]),
            },
            LogError::OutOfOrder {
                expected: 1,
                got: 2,
            },
            LogError::Fork { seq: 1 },
            LogError::BrokenChain {
                seq: 1,
                expected: OpHash::ZERO,
                got: OpHash::ZERO,
            },
            LogError::NotGenesis,
            LogError::UnexpectedGenesis,
            LogError::UnknownAuthor {
                device: DeviceId([0; 32]),
            },
            LogError::NotAllowed {
                role: Role::Member,
                action: "lock",
            },
            LogError::UnknownMember {
                user: UserId([0; 16]),
            },
            LogError::AlreadyMember {
                user: UserId([0; 16]),
            },
            LogError::Banned {
                user: UserId([0; 16]),
            },
            LogError::BannedDevice {
                device: DeviceId([0; 32]),
            },
            LogError::NoFacilitator,
            LogError::NoChange { action: "lock" },
            LogError::Backdated {
                at: Timestamp(0),
                latest: Timestamp(1),
            },
            LogError::InvalidInvite(String::new()),
            LogError::InvalidMember(String::new()),
            LogError::LastFacilitator,
            LogError::InvalidValue(String::new()),
            LogError::IdentityChanged {
                user: UserId([0; 16]),
            },
            LogError::ClockSkew {
                at: Timestamp(0),
                now: Timestamp(1),
            },
        ];
        let codes: BTreeSet<_> = errors.iter().map(LogError::code).collect();
        assert_eq!(codes.len(), errors.len());
        assert!(
            codes
                .iter()
                .all(|c| c.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_'))
        );
        assert_eq!(
            LogError::NotAllowed {
                role: Role::CoFacilitator,
                action: "set_role"
            }
            .to_string(),
            "a co_facilitator may not set_role"
        );
    }

    // Regression tests for the security review's findings.

    #[test]
    fn ban_evasion_h4_banned_device_cannot_rejoin_under_a_new_user_id() {
        let (mut g, [fac, co, mia, noor]) = populated();
        let secret = g.invite(&fac, 110, false, 10);
        g.ok(
            &co,
            OpBody::Remove {
                user: mia.user,
                ban: true,
            },
        );
        assert!(g.state.is_device_banned(&mia.id()));
        assert_eq!(g.state.banned_devices().get(&mia.id()), Some(&mia.user));
        // The same device (same seed) under a fresh user id of their own choosing.
        let alias = Person {
            user: UserId([0xA1; 16]),
            ..Person::new(3, "Mia again")
        };
        assert_eq!(alias.id(), mia.id());
        let banned_device = LogError::BannedDevice { device: mia.id() };
        let body = g.join_body(&alias, &secret);
        g.rejects(&alias, body, banned_device.clone());
        let body = g.add_body(&alias, None);
        g.rejects(&fac, body, banned_device.clone());
        // Listing the banned device next to a fresh one does not help.
        let fresh = DeviceIdentity::generate(&mut test_rng(90));
        let both = MemberEntry {
            user: alias.user,
            display_name: "Mia again".into(),
            devices: vec![fresh.public_keys(), mia.device.public_keys()],
            device_list: None,
        };
        g.rejects(
            &fac,
            OpBody::Add {
                member: both,
                invite: None,
                invite_sig: None,
                invite_device: None,
            },
            banned_device,
        );
        // A removal without a ban bans no device.
        g.ok(
            &co,
            OpBody::Remove {
                user: noor.user,
                ban: false,
            },
        );
        assert!(!g.state.is_device_banned(&noor.id()));
        // Unbanning the user lifts the ban on their devices too.
        g.ok(&fac, OpBody::Unban { user: mia.user });
        assert!(!g.state.is_device_banned(&mia.id()));
        assert!(g.state.banned_devices().is_empty());
        let body = g.join_body(&alias, &secret);
        g.ok(&alias, body);
        assert_eq!(verify_log(&g.log).unwrap(), g.state);
    }

    #[test]
    fn a_removed_or_departed_device_is_remembered_until_it_comes_back() {
        let (mut g, [fac, _co, mia, noor]) = populated();
        assert_eq!(g.state.departure_of(&mia.id()), None);
        g.ok(
            &fac,
            OpBody::Remove {
                user: mia.user,
                ban: false,
            },
        );
        let removed_at = g.state.seq();
        g.ok(&noor, OpBody::Leave {});
        g.ok(&fac, OpBody::Lock {});
        assert_eq!(g.state.departure_of(&mia.id()), Some(removed_at));
        assert_eq!(g.state.departure_of(&noor.id()), Some(removed_at + 1));
        let secret = g.invite(&fac, 101, false, 1);
        let body = g.join_body(&mia, &secret);
        g.ok(&mia, body);
        assert_eq!(g.state.departure_of(&mia.id()), None);
        assert_eq!(verify_log(&g.log).unwrap(), g.state);
    }

    #[test]
    fn an_unusable_invite_says_why() {
        let state = |revoked, uses| InviteState {
            requires_approval: false,
            max_uses: 2,
            expires_at: Timestamp(1000),
            uses,
            revoked,
        };
        assert_eq!(state(false, 1).problem(Timestamp(1000)), None);
        assert_eq!(
            state(false, 1).problem(Timestamp(1001)),
            Some(InviteProblem::Expired)
        );
        assert_eq!(
            state(false, 2).problem(Timestamp(1001)),
            Some(InviteProblem::UsedUp)
        );
        assert_eq!(
            state(true, 2).problem(Timestamp(1001)),
            Some(InviteProblem::Revoked)
        );
        assert!(InviteProblem::Revoked.to_string().contains("revoked"));
    }

    #[test]
    fn an_acceptance_naming_another_text_is_refused_and_old_acceptances_still_replay() {
        let (mut g, [fac, _co, mia, noor]) = populated();
        let hash = [7; 32];
        g.ok(
            &fac,
            OpBody::SetAgreement {
                version: 1,
                text_hash: hash,
            },
        );
        g.rejects(
            &mia,
            OpBody::AcceptAgreement {
                version: 1,
                text_hash: Some([8; 32]),
            },
            LogError::InvalidValue(
                "the acceptance names another text than agreement version 1".into(),
            ),
        );
        let named = OpBody::AcceptAgreement {
            version: 1,
            text_hash: Some(hash),
        };
        let op = g
            .state
            .next_op(mia.id(), Timestamp(g.clock + 1000), named.clone());
        assert_eq!(op.check_current_form(), Ok(()));
        g.ok(&mia, named);
        assert!(g.state.has_accepted_agreement(&mia.user));

        // The form written before `text_hash` existed: the same bytes as then, still replayed,
        // but the server refuses it as a new op.
        let old = OpBody::AcceptAgreement {
            version: 1,
            text_hash: None,
        };
        let op = g
            .state
            .next_op(noor.id(), Timestamp(g.clock + 1000), old.clone());
        assert!(!serde_json::to_string(&op).unwrap().contains("text_hash"));
        assert!(matches!(
            op.check_current_form(),
            Err(LogError::InvalidValue(_))
        ));
        g.ok(&noor, old);
        assert_eq!(verify_log(&g.log).unwrap(), g.state);
    }

    #[test]
    fn log_bloat_m3_no_op_moderation_and_repeated_acceptance_are_rejected() {
        let (mut g, [fac, co, mia, _noor]) = populated();
        let no_change = |action| LogError::NoChange { action };

        // A plain member cannot repeat an acceptance.
        g.ok(
            &fac,
            OpBody::SetAgreement {
                version: 1,
                text_hash: [1; 32],
            },
        );
        g.ok(
            &mia,
            OpBody::AcceptAgreement {
                version: 1,
                text_hash: None,
            },
        );
        g.rejects(
            &mia,
            OpBody::AcceptAgreement {
                version: 1,
                text_hash: None,
            },
            no_change("accept_agreement"),
        );

        g.rejects(&co, OpBody::Unlock {}, no_change("unlock"));
        g.ok(&co, OpBody::Lock {});
        g.rejects(&co, OpBody::Lock {}, no_change("lock"));
        g.ok(&co, OpBody::Unlock {});

        g.rejects(
            &co,
            OpBody::SetSlowMode { seconds: 0 },
            no_change("set_slow_mode"),
        );
        g.ok(&co, OpBody::SetSlowMode { seconds: 30 });
        g.rejects(
            &co,
            OpBody::SetSlowMode { seconds: 30 },
            no_change("set_slow_mode"),
        );

        g.rejects(
            &fac,
            set_role(&co, Role::CoFacilitator),
            no_change("set_role"),
        );
        g.rejects(&fac, set_role(&mia, Role::Member), no_change("set_role"));
        g.rejects(
            &fac,
            set_role(&fac, Role::Facilitator),
            no_change("set_role"),
        );

        let hours = OpenHours {
            time_zone: "Europe/Berlin".into(),
            windows: vec![OpenWindow {
                day: 2,
                start_minute: 600,
                end_minute: 660,
            }],
        };
        g.rejects(
            &co,
            OpBody::SetOpenHours { schedule: None },
            no_change("set_open_hours"),
        );
        g.ok(
            &co,
            OpBody::SetOpenHours {
                schedule: Some(hours.clone()),
            },
        );
        g.rejects(
            &co,
            OpBody::SetOpenHours {
                schedule: Some(hours),
            },
            no_change("set_open_hours"),
        );

        g.rejects(
            &fac,
            OpBody::SetRetention { seconds: None },
            no_change("set_retention"),
        );
        g.ok(&fac, OpBody::SetRetention { seconds: Some(60) });
        g.rejects(
            &fac,
            OpBody::SetRetention { seconds: Some(60) },
            no_change("set_retention"),
        );

        g.rejects(
            &fac,
            OpBody::SetSettings {
                settings: GroupSettings::default(),
            },
            no_change("set_settings"),
        );
        let open = GroupSettings {
            members_may_message_privately: true,
        };
        g.ok(
            &fac,
            OpBody::SetSettings {
                settings: open.clone(),
            },
        );
        g.rejects(
            &fac,
            OpBody::SetSettings { settings: open },
            no_change("set_settings"),
        );

        g.rejects(
            &fac,
            OpBody::SetCrisisResources { text_hash: None },
            no_change("set_crisis_resources"),
        );
        g.ok(
            &fac,
            OpBody::SetCrisisResources {
                text_hash: Some([5; 32]),
            },
        );
        g.rejects(
            &fac,
            OpBody::SetCrisisResources {
                text_hash: Some([5; 32]),
            },
            no_change("set_crisis_resources"),
        );

        // Re-muting until the very same time changes nothing; another time does.
        let until = Timestamp(g.clock + HOUR);
        let mute = |until| OpBody::Mute {
            user: mia.user,
            until,
        };
        g.ok(&co, mute(until));
        g.rejects(&co, mute(until), no_change("mute"));
        g.ok(&co, mute(Timestamp(until.0 + 1)));

        // A new agreement version is a new acceptance.
        g.ok(
            &fac,
            OpBody::SetAgreement {
                version: 2,
                text_hash: [2; 32],
            },
        );
        g.ok(
            &mia,
            OpBody::AcceptAgreement {
                version: 2,
                text_hash: None,
            },
        );
        assert!(g.state.has_accepted_agreement(&mia.user));
        assert_eq!(verify_log(&g.log).unwrap(), g.state);
    }

    #[test]
    fn mute_evasion_m4_mutes_survive_leave_remove_and_rejoin() {
        let (mut g, [fac, co, mia, noor]) = populated();
        let secret = g.invite(&fac, 110, false, 10);
        let until = Timestamp(g.clock + HOUR);
        for user in [mia.user, noor.user] {
            g.ok(&co, OpBody::Mute { user, until });
        }

        // Leaving and rejoining does not end a mute.
        g.ok(&mia, OpBody::Leave {});
        assert!(g.state.is_muted(&mia.user, Timestamp(g.clock)));
        let body = g.join_body(&mia, &secret);
        g.ok(&mia, body);
        assert!(g.state.member(&mia.user).is_some());
        assert!(g.state.is_muted(&mia.user, Timestamp(g.clock)));
        assert!(!g.state.is_muted(&mia.user, until));

        // Nor does a removal.
        g.ok(
            &co,
            OpBody::Remove {
                user: noor.user,
                ban: false,
            },
        );
        assert!(g.state.is_muted(&noor.user, Timestamp(g.clock)));
        assert_eq!(g.state.mutes().get(&noor.user), Some(&until));
        // A user who is no longer a member can still be unmuted (by a co-facilitator too).
        g.ok(&co, OpBody::Unmute { user: noor.user });
        assert!(!g.state.is_muted(&noor.user, Timestamp(g.clock)));
        let not_muted = LogError::InvalidValue("the user is not muted".into());
        g.rejects(&co, OpBody::Unmute { user: noor.user }, not_muted.clone());
        g.rejects(
            &co,
            OpBody::Unmute {
                user: UserId([0; 16]),
            },
            not_muted,
        );
        // Muting still needs a member.
        g.rejects(
            &co,
            OpBody::Mute {
                user: noor.user,
                until,
            },
            LogError::UnknownMember { user: noor.user },
        );
        g.ok(&co, OpBody::Unmute { user: mia.user });
        assert!(g.state.mutes().is_empty());
        assert_eq!(verify_log(&g.log).unwrap(), g.state);
    }

    #[test]
    fn leaderless_group_l2_nobody_joins_a_group_without_a_facilitator() {
        let solo = Person::new(1, "Fay");
        let alice = Person::new(2, "Alice");
        let mut g = Group::new(&solo);
        let secret = g.invite(&solo, 100, false, 5);
        // Alone, the last facilitator may leave; the invite is still unexpired and unused.
        g.ok(&solo, OpBody::Leave {});
        assert!(g.state.members().is_empty());
        let body = g.join_body(&alice, &secret);
        g.rejects(&alice, body, LogError::NoFacilitator);
        // Not even the former facilitator comes back.
        let body = g.join_body(&solo, &secret);
        g.rejects(&solo, body, LogError::NoFacilitator);

        // `add` is refused as well. The log rules never let a group with members lose its last
        // facilitator, so this state is built by hand, as defence in depth.
        let (mut g, [fac, co, _mia, _noor]) = populated();
        let secret = g.invite(&fac, 110, false, 5);
        g.state.members.get_mut(&fac.user).unwrap().role = Role::Member;
        let eve = Person::new(30, "Eve");
        let body = g.add_body(&eve, None);
        g.rejects(&co, body, LogError::NoFacilitator);
        let body = g.join_body(&eve, &secret);
        g.rejects(&eve, body, LogError::NoFacilitator);
    }

    #[test]
    fn unban_policy_l7_only_a_facilitator_may_unban() {
        let (mut g, [fac, co, mia, _noor]) = populated();
        let unban = OpBody::Unban { user: mia.user };
        assert!(allowed(Role::Facilitator, &unban));
        assert!(!allowed(Role::CoFacilitator, &unban));
        assert!(!allowed(Role::Member, &unban));
        // A co-facilitator may still ban a plain member, but not lift the ban.
        g.ok(
            &co,
            OpBody::Remove {
                user: mia.user,
                ban: true,
            },
        );
        g.rejects(
            &co,
            unban.clone(),
            not_allowed(Role::CoFacilitator, "unban"),
        );
        assert!(g.state.is_banned(&mia.user));
        g.ok(&fac, unban);
        assert!(!g.state.is_banned(&mia.user));
    }

    #[test]
    fn timestamps_m2_backdated_ops_are_rejected() {
        let fac = Person::new(1, "Fay");
        let alice = Person::new(2, "Alice");
        let mut g = Group::new(&fac);
        let at = |g: &Group, author: &Person, at: u64, body: OpBody| {
            g.state
                .next_op(author.id(), Timestamp(at), body)
                .sign(&author.device)
                .unwrap()
        };
        assert_eq!(g.state.latest_at(), Timestamp(T0));
        let secret = g.invite(&fac, 100, false, 5);
        let expires_at = g.state.invite(&secret.id()).unwrap().expires_at.0;

        // The invite expires; an hour later the facilitator locks the chat.
        let later = expires_at + HOUR;
        let lock = at(&g, &fac, later, OpBody::Lock {});
        g.apply(lock).unwrap();
        assert_eq!(g.state.latest_at(), Timestamp(later));
        assert_eq!(g.state.min_next_at(), Timestamp(later - MAX_CLOCK_SKEW_MS));

        // A join back-dated to the invite's last valid moment is refused, even if a colluding
        // server accepted it.
        let body = g.join_body(&alice, &secret);
        let backdated = at(&g, &alice, expires_at, body);
        g.rejects_signed(
            &backdated,
            LogError::Backdated {
                at: Timestamp(expires_at),
                latest: Timestamp(later),
            },
        );

        // Within the skew an op may be earlier than the latest one...
        let unlock = at(&g, &fac, later - MAX_CLOCK_SKEW_MS, OpBody::Unlock {});
        g.apply(unlock).unwrap();
        assert_eq!(g.state.latest_at(), Timestamp(later));
        // ...but times cannot walk back step by step: the bound is the latest time so far.
        let lock = at(&g, &fac, later - MAX_CLOCK_SKEW_MS - 1, OpBody::Lock {});
        g.rejects_signed(
            &lock,
            LogError::Backdated {
                at: Timestamp(later - MAX_CLOCK_SKEW_MS - 1),
                latest: Timestamp(later),
            },
        );
        assert_eq!(verify_log(&g.log).unwrap(), g.state);

        // The first op after genesis is bounded by the genesis time.
        let mut g = Group::new(&fac);
        let early = at(&g, &fac, T0 - MAX_CLOCK_SKEW_MS - 1, OpBody::Lock {});
        g.rejects_signed(
            &early,
            LogError::Backdated {
                at: Timestamp(T0 - MAX_CLOCK_SKEW_MS - 1),
                latest: Timestamp(T0),
            },
        );
        let on_time = at(&g, &fac, T0 - MAX_CLOCK_SKEW_MS, OpBody::Lock {});
        g.apply(on_time).unwrap();
    }

    #[test]
    fn epoch_binding_epoch_hash_names_the_op_that_started_the_epoch() {
        let fac = Person::new(1, "Fay");
        let alice = Person::new(2, "Alice");
        let mut g = Group::new(&fac);
        assert_eq!(g.state.epoch_hash(), g.state.genesis_hash());
        assert_eq!(g.state.previous_epoch(), None);

        // Ops that do not change the epoch do not change its hash.
        let secret = g.invite(&fac, 100, false, 5);
        g.ok(&fac, OpBody::Lock {});
        assert_eq!(g.state.epoch_hash(), g.state.genesis_hash());

        let body = g.join_body(&alice, &secret);
        let join = g.push(&alice, body).unwrap();
        assert_eq!(g.state.epoch(), Epoch(1));
        assert_eq!(g.state.epoch_hash(), join.hash);
        assert_eq!(
            g.state.previous_epoch(),
            Some((Epoch(0), g.state.genesis_hash()))
        );
        g.ok(&fac, OpBody::Unlock {});
        assert_eq!(g.state.epoch_hash(), join.hash);
        assert_ne!(g.state.head(), join.hash);

        let leave = g.push(&alice, OpBody::Leave {}).unwrap();
        assert_eq!(g.state.epoch(), Epoch(2));
        assert_eq!(g.state.epoch_hash(), leave.hash);
        assert_eq!(g.state.previous_epoch(), Some((Epoch(1), join.hash)));

        // Replay agrees.
        let replayed = verify_log(&g.log).unwrap();
        assert_eq!(replayed.epoch_hash(), leave.hash);
        assert_eq!(replayed.previous_epoch(), Some((Epoch(1), join.hash)));

        // The same genesis and epoch number with another member: another epoch hash.
        let bob = Person::new(3, "Bob");
        let mut other = Group::new(&fac);
        assert_eq!(other.state.genesis_hash(), g.state.genesis_hash());
        let secret = other.invite(&fac, 100, false, 5);
        let body = other.join_body(&bob, &secret);
        other.ok(&bob, body);
        assert_eq!(other.state.epoch(), Epoch(1));
        assert_ne!(other.state.epoch_hash(), join.hash);
    }

    // ---------------------------------------------------------------------------------------
    // Device lists (PROTOCOL.md §3.6, §8.5 `update_devices`, §8.6)
    // ---------------------------------------------------------------------------------------

    use crate::device_list::{ListedDevice, UserIdentity};

    /// A user with an identity key and several devices, the first of which is `Person`-like.
    struct Linked {
        user: UserId,
        name: &'static str,
        identity: UserIdentity,
        devices: Vec<Person>,
        /// The latest list signed, with its hash.
        list: Option<(DeviceList, SignedDeviceList)>,
    }

    impl Linked {
        /// A user whose devices are the given people's devices (all under the first one's user
        /// id), with identity key from `seed`.
        fn new(seed: u8, name: &'static str, device_seeds: &[u8]) -> Linked {
            let user = UserId::random(&mut test_rng(seed));
            let devices = device_seeds
                .iter()
                .map(|&d| Person {
                    user,
                    device: DeviceIdentity::generate(&mut test_rng(d)),
                    name,
                })
                .collect();
            Linked {
                user,
                name,
                identity: UserIdentity::generate(&mut test_rng(seed.wrapping_add(100))),
                devices,
                list: None,
            }
        }

        /// Signs the next list naming the devices at `which` (the successor of the latest).
        fn sign(&mut self, which: &[usize]) -> SignedDeviceList {
            let key = self.identity.public();
            let listed: Vec<ListedDevice> = which
                .iter()
                .map(|&i| ListedDevice::new(&self.devices[i].device, &self.user, &key))
                .collect();
            // The maker: the first device of the new list (version 1) or of the previous one.
            let list = match &self.list {
                None => DeviceList {
                    by: listed[0].keys.device,
                    devices: listed,
                    ..DeviceList::first(
                        self.user,
                        &self.identity,
                        &self.devices[0].device,
                        Timestamp(T0),
                    )
                },
                Some((prev, signed)) => prev.successor(
                    signed.hash(),
                    prev.devices[0].keys.device,
                    Timestamp(T0),
                    listed,
                ),
            };
            let maker = self
                .devices
                .iter()
                .find(|d| d.device.device_id() == list.by)
                .unwrap();
            let signed = self.identity.sign_list(&list, &maker.device).unwrap();
            self.list = Some((list, signed.clone()));
            signed
        }

        /// The entry for the latest list.
        fn entry(&self) -> MemberEntry {
            let (list, signed) = self.list.as_ref().unwrap();
            MemberEntry {
                user: self.user,
                display_name: self.name.into(),
                devices: list.device_keys(),
                device_list: Some(signed.clone()),
            }
        }

        fn device(&self, i: usize) -> &Person {
            &self.devices[i]
        }
    }

    fn update(signed: SignedDeviceList) -> OpBody {
        OpBody::UpdateDevices {
            device_list: signed,
            chain: Vec::new(),
        }
    }

    fn devices_of(g: &Group, user: &UserId) -> Vec<DeviceId> {
        g.state
            .member(user)
            .unwrap()
            .entry
            .devices
            .iter()
            .map(|k| k.device)
            .collect()
    }

    /// A group of `fac` (legacy entry) with `sam`, who joined with a one-device list.
    fn group_with_linked_member() -> (Group, Person, Linked) {
        let fac = Person::new(1, "Fay");
        let mut sam = Linked::new(20, "Sam", &[21, 22, 23]);
        let mut g = Group::new(&fac);
        let secret = g.invite(&fac, 100, false, 5);
        sam.sign(&[0]);
        let joiner = sam.device(0);
        let body = OpBody::Join {
            invite: secret.id(),
            member: sam.entry(),
            invite_sig: secret.sign_join(&g.state.group(), &sam.user, &joiner.id()),
        };
        g.ok(joiner, body);
        (g, fac, sam)
    }

    /// Re-review H1: a stale device took a fork (a list made with a stolen identity key by a
    /// device the person had unlinked) as its next list and pushed it into every group, because
    /// the log asked only for a greater version. Now each list must succeed the pinned one.
    #[test]
    fn an_update_must_follow_the_pinned_list_through_its_chain() {
        let (mut g, _fac, mut sam) = group_with_linked_member();
        // Versions 2 and 3 were published while this group still pins version 1.
        let v2 = sam.sign(&[0, 1]);
        let v3 = sam.sign(&[0, 1, 2]);
        // Version 3 alone skips version 2: refused.
        g.rejects(
            sam.device(0),
            update(v3.clone()),
            LogError::InvalidValue(
                "device list version 3 does not succeed version 1 (the log's, or the one before \
                 it in the chain)"
                    .into(),
            ),
        );
        // With version 2 as its chain it follows the pinned list: accepted.
        g.ok(
            sam.device(0),
            OpBody::UpdateDevices {
                device_list: v3,
                chain: vec![v2.clone()],
            },
        );
        assert_eq!(g.state.device_list_version_of(&sam.user), Some(3));
        // A fork of version 4, made by a device version 3 does not name (a thief's), is
        // refused however validly the identity key signed it.
        let (v3_list, v3_signed) = sam.list.clone().unwrap();
        let thief = DeviceIdentity::generate(&mut test_rng(99));
        let mut fork = v3_list.successor(
            v3_signed.hash(),
            thief.device_id(),
            Timestamp(T0),
            vec![ListedDevice::new(&thief, &sam.user, &sam.identity.public())],
        );
        fork.devices.push(ListedDevice::new(
            &sam.device(0).device,
            &sam.user,
            &sam.identity.public(),
        ));
        let fork = sam.identity.sign_list(&fork, &thief).unwrap();
        assert!(matches!(
            g.push(sam.device(0), update(fork)),
            Err(LogError::InvalidValue(why)) if why.contains("does not succeed")
        ));
    }

    #[test]
    fn linking_a_second_device_starts_an_epoch_and_lets_it_act() {
        let (mut g, _fac, mut sam) = group_with_linked_member();
        assert_eq!(g.state.identity_of(&sam.user), Some(sam.identity.public()));
        assert_eq!(g.state.device_list_version_of(&sam.user), Some(1));
        let before = g.state.epoch();
        let list = sam.sign(&[0, 1]);
        // Like a departure, it gives the epoch it ends no grace (a device may have gone).
        assert!(update(list.clone()).ends_epoch_by_departure());
        assert!(!update(list.clone()).grants_epoch_grace());
        let applied = g.push(sam.device(0), update(list.clone())).unwrap();
        assert_eq!(g.state.epoch(), before.next());
        assert_eq!(g.state.epoch_hash(), applied.hash);
        assert_eq!(
            devices_of(&g, &sam.user),
            vec![sam.device(0).id(), sam.device(1).id()]
        );
        let current: Vec<DeviceId> = g.state.current_devices().iter().map(|k| k.device).collect();
        assert!(current.contains(&sam.device(1).id()));
        assert_eq!(g.state.device_list_of(&sam.user), Some(&list));
        assert_eq!(g.state.device_list_version_of(&sam.user), Some(2));
        assert_eq!(g.state.identity_of(&sam.user), Some(sam.identity.public()));
        assert_eq!(
            g.state
                .member_of_device(&sam.device(1).id())
                .map(|(u, _)| *u),
            Some(sam.user)
        );
        // The new device authors ops for its user, and the log replays to the same state.
        g.ok(sam.device(1), OpBody::Leave {});
        assert!(g.state.member(&sam.user).is_none());
        assert_eq!(verify_log(&g.log).unwrap(), g.state);
    }

    #[test]
    fn an_unlinked_device_is_gone_and_cannot_author() {
        let (mut g, fac, mut sam) = group_with_linked_member();
        let two = sam.sign(&[0, 1]);
        g.ok(sam.device(0), update(two));
        g.ok(&fac, OpBody::Lock {});
        // Device 0 signs a list without itself ("sign out this device").
        let one = sam.sign(&[1]);
        g.ok(sam.device(0), update(one));
        assert_eq!(devices_of(&g, &sam.user), vec![sam.device(1).id()]);
        assert!(g.state.member_of_device(&sam.device(0).id()).is_none());
        assert!(
            !g.state
                .current_devices()
                .iter()
                .any(|k| k.device == sam.device(0).id())
        );
        g.rejects(
            sam.device(0),
            OpBody::AcceptAgreement {
                version: 1,
                text_hash: None,
            },
            LogError::UnknownAuthor {
                device: sam.device(0).id(),
            },
        );
        // Role, membership and the rest of the member stay.
        assert_eq!(g.state.role_of(&sam.user), Some(Role::Member));
        assert!(g.state.locked());
        assert_eq!(verify_log(&g.log).unwrap(), g.state);
    }

    #[test]
    fn mute_role_and_agreement_survive_an_update() {
        let (mut g, fac, mut sam) = group_with_linked_member();
        g.ok(
            &fac,
            OpBody::SetAgreement {
                version: 1,
                text_hash: [9; 32],
            },
        );
        g.ok(
            sam.device(0),
            OpBody::AcceptAgreement {
                version: 1,
                text_hash: Some([9; 32]),
            },
        );
        g.ok(&fac, set_role_user(sam.user, Role::CoFacilitator));
        let until = Timestamp(g.clock + HOUR);
        g.ok(
            &fac,
            OpBody::Mute {
                user: sam.user,
                until,
            },
        );
        let list = sam.sign(&[0, 2]);
        g.ok(sam.device(0), update(list));
        assert!(g.state.has_accepted_agreement(&sam.user));
        assert_eq!(g.state.role_of(&sam.user), Some(Role::CoFacilitator));
        assert!(g.state.is_muted(&sam.user, Timestamp(g.clock)));
    }

    fn set_role_user(user: UserId, role: Role) -> OpBody {
        OpBody::SetRole { user, role }
    }

    #[test]
    fn a_list_under_another_identity_key_is_refused() {
        let (mut g, _fac, mut sam) = group_with_linked_member();
        sam.identity = UserIdentity::generate(&mut test_rng(99));
        sam.list = None;
        let forged = sam.sign(&[0, 1]);
        // Version 1 again, but the identity check comes first.
        g.rejects(
            sam.device(0),
            update(forged),
            LogError::IdentityChanged { user: sam.user },
        );
    }

    #[test]
    fn a_stale_or_equal_version_is_refused() {
        let (mut g, _fac, mut sam) = group_with_linked_member();
        let v1 = sam.list.clone().unwrap();
        let v2 = sam.sign(&[0, 1]);
        g.ok(sam.device(0), update(v2.clone()));
        // The same list again: equal version.
        let again = g.sign(sam.device(0), update(v2));
        assert!(matches!(
            g.state.apply(&again),
            Err(LogError::InvalidValue(_))
        ));
        // An older list, with other devices than the current ones.
        let signed = g.sign(sam.device(0), update(v1.1));
        let before = g.state.clone();
        assert!(matches!(
            g.state.apply(&signed),
            Err(LogError::InvalidValue(_))
        ));
        assert_eq!(g.state, before);
        // A newer list naming the same devices changes nothing.
        let v3 = sam.sign(&[0, 1]);
        g.rejects(
            sam.device(0),
            update(v3),
            LogError::NoChange {
                action: "update_devices",
            },
        );
    }

    #[test]
    fn a_list_with_another_members_device_is_refused() {
        let (mut g, fac, sam) = group_with_linked_member();
        // Fay's device consents to Sam's list (a device can be tricked, or be both people's).
        let key = sam.identity.public();
        let (prev, prev_signed) = sam.list.clone().unwrap();
        let list = prev.successor(
            prev_signed.hash(),
            sam.device(0).device.device_id(),
            Timestamp(T0),
            vec![
                ListedDevice::new(&sam.device(0).device, &sam.user, &key),
                ListedDevice::new(&fac.device, &sam.user, &key),
            ],
        );
        let signed = sam
            .identity
            .sign_list(&list, &sam.device(0).device)
            .unwrap();
        let body = update(signed);
        let signed_op = g.sign(sam.device(0), body);
        let before = g.state.clone();
        assert!(matches!(
            g.state.apply(&signed_op),
            Err(LogError::InvalidMember(_))
        ));
        assert_eq!(g.state, before);
        assert_eq!(devices_of(&g, &fac.user), vec![fac.id()]);
    }

    #[test]
    fn a_list_with_a_banned_device_is_refused() {
        let (mut g, fac, mut sam) = group_with_linked_member();
        let secret = g.invite(&fac, 101, false, 5);
        // Device 1 of Sam once joined under another user id and was banned with it.
        let mut other = Linked::new(50, "Other", &[22]);
        assert_eq!(other.device(0).id(), sam.device(1).id());
        join_linked(&mut g, &secret, &mut other, &[0], 0);
        g.ok(
            &fac,
            OpBody::Remove {
                user: other.user,
                ban: true,
            },
        );
        let list = sam.sign(&[0, 1]);
        g.rejects(
            sam.device(0),
            update(list),
            LogError::BannedDevice {
                device: sam.device(1).id(),
            },
        );
    }

    #[test]
    fn a_list_for_another_user_is_refused() {
        let (mut g, fac, mut sam) = group_with_linked_member();
        // Fay sends Sam's list.
        let list = sam.sign(&[0, 1]);
        g.rejects(
            &fac,
            update(list),
            not_allowed(Role::Facilitator, "update another user's devices"),
        );
        // An invalid list is an invalid member.
        let (_, mut broken) = sam.list.clone().unwrap();
        broken.sig.0[0] ^= 1;
        let signed = g.sign(sam.device(0), update(broken));
        assert!(matches!(
            g.state.apply(&signed),
            Err(LogError::InvalidMember(_))
        ));
    }

    #[test]
    fn a_legacy_member_pins_their_identity_with_their_first_update() {
        let (mut g, people) = populated();
        let [_fac, _co, mia, _noor] = &people;
        assert_eq!(g.state.identity_of(&mia.user), None);
        assert_eq!(g.state.device_list_of(&mia.user), None);
        assert_eq!(g.state.device_list_version_of(&mia.user), None);
        // Mia's first list names the device her entry already has: pinning still changes the
        // state, so it is no no-op. Her own device vouches for the identity key.
        let identity = UserIdentity::generate(&mut test_rng(30));
        let first = DeviceList::first(mia.user, &identity, &mia.device, Timestamp(T0));
        let signed = identity.sign_list(&first, &mia.device).unwrap();
        g.ok(mia, update(signed.clone()));
        assert_eq!(g.state.identity_of(&mia.user), Some(identity.public()));
        assert_eq!(g.state.device_list_version_of(&mia.user), Some(1));
        assert_eq!(g.state.device_list_of(&mia.user), Some(&signed));
        assert_eq!(devices_of(&g, &mia.user), vec![mia.id()]);
        // From then on the identity is pinned: a list under another key is refused, whatever
        // its version.
        let other = UserIdentity::generate(&mut test_rng(77));
        let laptop = DeviceIdentity::generate(&mut test_rng(78));
        let mut list = DeviceList::first(mia.user, &other, &mia.device, Timestamp(T0));
        list.devices
            .push(ListedDevice::new(&laptop, &mia.user, &other.public()));
        list.version = 5;
        list.prev = DeviceListHash([1; 32]);
        g.rejects(
            mia,
            update(other.sign_list(&list, &mia.device).unwrap()),
            LogError::IdentityChanged { user: mia.user },
        );
        assert_eq!(verify_log(&g.log).unwrap(), g.state);
    }

    #[test]
    fn a_join_with_several_listed_devices_may_be_signed_by_any_of_them() {
        let fac = Person::new(1, "Fay");
        let mut sam = Linked::new(20, "Sam", &[21, 22]);
        let mut g = Group::new(&fac);
        let secret = g.invite(&fac, 100, false, 5);
        sam.sign(&[0, 1]);
        let second = sam.device(1);
        let body = OpBody::Join {
            invite: secret.id(),
            member: sam.entry(),
            invite_sig: secret.sign_join(&g.state.group(), &sam.user, &second.id()),
        };
        g.ok(second, body);
        assert_eq!(
            devices_of(&g, &sam.user),
            vec![sam.device(0).id(), sam.device(1).id()]
        );
        assert_eq!(g.state.identity_of(&sam.user), Some(sam.identity.public()));
        // Without a list, the same entry is refused: only the author is proven.
        let mut g = Group::new(&fac);
        let secret = g.invite(&fac, 100, false, 5);
        let mut entry = sam.entry();
        entry.device_list = None;
        let body = OpBody::Join {
            invite: secret.id(),
            member: entry,
            invite_sig: secret.sign_join(&g.state.group(), &sam.user, &second.id()),
        };
        let signed = g.sign(second, body);
        assert!(matches!(
            g.state.apply(&signed),
            Err(LogError::InvalidMember(_))
        ));
        // A join by a device the list does not name is refused too.
        let stranger = Person::new(9, "Stranger");
        let body = OpBody::Join {
            invite: secret.id(),
            member: sam.entry(),
            invite_sig: secret.sign_join(&g.state.group(), &sam.user, &stranger.id()),
        };
        let signed = g.sign(&stranger, body);
        assert!(matches!(
            g.state.apply(&signed),
            Err(LogError::InvalidMember(_))
        ));
    }

    /// Signs `linked`'s list of `which` and joins it through `secret`, authored by its device
    /// `author`.
    fn join_linked(
        g: &mut Group,
        secret: &InviteSecret,
        linked: &mut Linked,
        which: &[usize],
        author: usize,
    ) {
        let body = join_linked_body(g, secret, linked, which, author);
        g.ok(linked.device(author), body);
    }

    fn join_linked_body(
        g: &Group,
        secret: &InviteSecret,
        linked: &mut Linked,
        which: &[usize],
        author: usize,
    ) -> OpBody {
        linked.sign(which);
        OpBody::Join {
            invite: secret.id(),
            member: linked.entry(),
            invite_sig: secret.sign_join(
                &g.state.group(),
                &linked.user,
                &linked.device(author).id(),
            ),
        }
    }

    #[test]
    fn an_approval_names_the_device_that_asked_m1() {
        let fac = Person::new(1, "Fay");
        let mut sam = Linked::new(20, "Sam", &[21, 22, 23]);
        let mut g = Group::new(&fac);
        let secret = g.invite(&fac, 100, true, 5);
        sam.sign(&[0, 1, 2]);
        let group = g.state.group();
        let sig_of = |device: &Person| Some(secret.sign_join(&group, &sam.user, &device.id()));
        let add = |sig, invite_device| OpBody::Add {
            member: sam.entry(),
            invite: Some(secret.id()),
            invite_sig: sig,
            invite_device,
        };
        // An entry with a list must name the device that asked, and it must be listed.
        let signed = g.sign(&fac, add(sig_of(sam.device(2)), None));
        assert!(matches!(
            g.state.apply(&signed),
            Err(LogError::InvalidMember(_))
        ));
        let stranger = Person::new(9, "Stranger");
        let signed = g.sign(&fac, add(sig_of(&stranger), Some(stranger.id())));
        assert!(matches!(
            g.state.apply(&signed),
            Err(LogError::InvalidMember(_))
        ));
        // The signature is checked for that one device, not for any listed one.
        let signed = g.sign(&fac, add(sig_of(sam.device(2)), Some(sam.device(1).id())));
        assert!(matches!(
            g.state.apply(&signed),
            Err(LogError::InvalidInvite(_))
        ));
        // Without an invite there is no device that asked.
        let signed = g.sign(
            &fac,
            OpBody::Add {
                member: sam.entry(),
                invite: None,
                invite_sig: None,
                invite_device: Some(sam.device(0).id()),
            },
        );
        assert!(matches!(
            g.state.apply(&signed),
            Err(LogError::InvalidInvite(_))
        ));
        let body = add(sig_of(sam.device(2)), Some(sam.device(2).id()));
        let json = serde_json::to_string(&body).unwrap();
        assert!(json.contains("\"invite_device\""));
        assert_eq!(serde_json::from_str::<OpBody>(&json).unwrap(), body);
        g.ok(&fac, body);
        assert_eq!(devices_of(&g, &sam.user).len(), 3);
        assert_eq!(g.state.invite(&secret.id()).unwrap().uses, 1);

        // An entry without a list names no device: its only device is the one that asked.
        let mut g = Group::new(&fac);
        let secret = g.invite(&fac, 100, true, 5);
        let bob = Person::new(2, "Bob");
        let mut body = g.add_body(&bob, Some(&secret));
        if let OpBody::Add { invite_device, .. } = &mut body {
            *invite_device = Some(bob.id());
        }
        let signed = g.sign(&fac, body);
        assert!(matches!(
            g.state.apply(&signed),
            Err(LogError::InvalidMember(_))
        ));
        let body = g.add_body(&bob, Some(&secret));
        assert!(
            !serde_json::to_string(&body)
                .unwrap()
                .contains("invite_device")
        );
        g.ok(&fac, body);
    }

    #[test]
    fn once_a_log_holds_a_list_every_entry_needs_one_m5() {
        let fac = Person::new(1, "Fay");
        let bob = Person::new(2, "Bob");
        let (mut g, _, _) = group_with_linked_member();
        assert!(g.state.holds_device_list());
        let body = g.add_body(&bob, None);
        let signed = g.sign(&fac, body);
        assert!(matches!(
            g.state.apply(&signed),
            Err(LogError::InvalidMember(_))
        ));
        let secret = g.invite(&fac, 101, false, 5);
        let body = g.join_body(&bob, &secret);
        let signed = g.sign(&bob, body);
        assert!(matches!(
            g.state.apply(&signed),
            Err(LogError::InvalidMember(_))
        ));

        // A log whose first list came with an update_devices.
        let mut g = Group::new(&fac);
        assert!(!g.state.holds_device_list());
        let mut fay = Linked::new(30, "Fay", &[]);
        fay.user = fac.user;
        fay.devices.push(Person::new(1, "Fay"));
        g.ok(&fac, update(fay.sign(&[0])));
        assert!(g.state.holds_device_list());
        let body = g.add_body(&bob, None);
        let signed = g.sign(&fac, body);
        assert!(matches!(
            g.state.apply(&signed),
            Err(LogError::InvalidMember(_))
        ));
        assert_eq!(verify_log(&g.log).unwrap(), g.state);
    }

    #[test]
    fn a_legacy_members_first_list_must_list_the_device_that_sends_it_m5() {
        let fac = Person::new(1, "Fay");
        let mut g = Group::new(&fac);
        // Sam's legacy entry lists two devices; the second may be one a server registered.
        let mut sam = Linked::new(20, "Sam", &[21, 22]);
        let entry = MemberEntry {
            user: sam.user,
            display_name: "Sam".into(),
            devices: vec![
                sam.device(0).device.public_keys(),
                sam.device(1).device.public_keys(),
            ],
            device_list: None,
        };
        g.ok(
            &fac,
            OpBody::Add {
                member: entry,
                invite: None,
                invite_sig: None,
                invite_device: None,
            },
        );
        let list = sam.sign(&[0]);
        let signed = g.sign(sam.device(1), update(list.clone()));
        g.rejects_signed(
            &signed,
            LogError::InvalidMember(
                "a member's first device list must list the device that publishes it, alone".into(),
            ),
        );
        g.ok(sam.device(0), update(list));
        assert_eq!(g.state.identity_of(&sam.user), Some(sam.identity.public()));
    }

    #[test]
    fn a_ban_covers_the_identity_key_and_every_device_ever_listed_m7() {
        let (mut g, fac, mut sam) = group_with_linked_member();
        let secret = g.invite(&fac, 101, false, 9);
        // Sam links device 1, then drops it just before the ban.
        let list = sam.sign(&[0, 1]);
        g.ok(sam.device(0), update(list));
        let list = sam.sign(&[0]);
        g.ok(sam.device(0), update(list));
        g.ok(
            &fac,
            OpBody::Remove {
                user: sam.user,
                ban: true,
            },
        );
        assert!(g.state.is_identity_banned(&sam.identity.public()));
        assert!(g.state.is_device_banned(&sam.device(1).id()));
        // The dropped device cannot come back under another user id.
        let mut other = Linked::new(50, "Other", &[22]);
        let body = join_linked_body(&g, &secret, &mut other, &[0], 0);
        g.rejects(
            other.device(0),
            body,
            LogError::BannedDevice {
                device: sam.device(1).id(),
            },
        );
        // Nor the identity key with a new user id and a new device.
        let mut again = Linked::new(60, "Sam again", &[24]);
        again.identity = UserIdentity::generate(&mut test_rng(120));
        assert_eq!(again.identity.public(), sam.identity.public());
        let body = join_linked_body(&g, &secret, &mut again, &[0], 0);
        g.rejects(again.device(0), body, LogError::Banned { user: sam.user });
        // Nor through a legacy member's first list.
        let bob = Person::new(2, "Bob");
        let mut h = Group::new(&fac);
        let hs = h.invite(&fac, 102, false, 9);
        let body = h.join_body(&bob, &hs);
        h.ok(&bob, body);
        let mut sam_h = Linked::new(20, "Sam", &[21]);
        join_linked(&mut h, &hs, &mut sam_h, &[0], 0);
        h.ok(
            &fac,
            OpBody::Remove {
                user: sam_h.user,
                ban: true,
            },
        );
        let mut bobs = Linked::new(70, "Bob", &[]);
        bobs.user = bob.user;
        bobs.identity = UserIdentity::generate(&mut test_rng(120));
        bobs.devices.push(Person::new(2, "Bob"));
        h.rejects(
            &bob,
            update(bobs.sign(&[0])),
            LogError::Banned { user: sam_h.user },
        );
        // Unban lifts the identity key and every device.
        g.ok(&fac, OpBody::Unban { user: sam.user });
        assert!(!g.state.is_identity_banned(&sam.identity.public()));
        assert!(!g.state.is_device_banned(&sam.device(1).id()));
        join_linked(&mut g, &secret, &mut again, &[0], 0);
        assert_eq!(verify_log(&g.log).unwrap(), g.state);
    }

    #[test]
    fn an_identity_key_belongs_to_one_member_m7() {
        let (mut g, fac, sam) = group_with_linked_member();
        let secret = g.invite(&fac, 101, false, 9);
        let mut twin = Linked::new(60, "Twin", &[25]);
        twin.identity = UserIdentity::generate(&mut test_rng(120));
        assert_eq!(twin.identity.public(), sam.identity.public());
        let body = join_linked_body(&g, &secret, &mut twin, &[0], 0);
        let signed = g.sign(twin.device(0), body);
        g.rejects_signed(
            &signed,
            LogError::InvalidMember("the identity key is pinned for another member".into()),
        );
        // A legacy member cannot pin it with their first list either.
        let bob = Person::new(2, "Bob");
        let mut h = Group::new(&fac);
        let mut sam_h = Linked::new(20, "Sam", &[21]);
        let hs = h.invite(&fac, 102, false, 9);
        let body = h.join_body(&bob, &hs);
        h.ok(&bob, body);
        join_linked(&mut h, &hs, &mut sam_h, &[0], 0);
        let mut bobs = Linked::new(70, "Bob", &[]);
        bobs.user = bob.user;
        bobs.identity = UserIdentity::generate(&mut test_rng(120));
        bobs.devices.push(Person::new(2, "Bob"));
        h.rejects(
            &bob,
            update(bobs.sign(&[0])),
            LogError::InvalidMember("the identity key is pinned for another member".into()),
        );
    }

    #[test]
    fn a_list_that_only_reorders_devices_is_no_change() {
        let (mut g, _fac, mut sam) = group_with_linked_member();
        let list = sam.sign(&[0, 1]);
        g.ok(sam.device(0), update(list));
        let list = sam.sign(&[1, 0]);
        g.rejects(
            sam.device(0),
            update(list),
            LogError::NoChange {
                action: "update_devices",
            },
        );
    }

    #[test]
    fn dropping_a_device_is_its_departure_and_adding_one_keeps_the_grace_m2() {
        let (mut g, _fac, mut sam) = group_with_linked_member();
        let list = sam.sign(&[0, 1]);
        let added = g.push(sam.device(0), update(list)).unwrap();
        assert!(added.departed.is_empty());
        assert!(added.grants_epoch_grace());
        assert!(!added.ends_epoch_by_departure());
        assert!(!g.state.epoch_began_with_departure());
        let list = sam.sign(&[0, 2]);
        let dropped = g.push(sam.device(0), update(list)).unwrap();
        assert_eq!(dropped.departed, vec![sam.device(1).id()]);
        assert!(!dropped.grants_epoch_grace());
        assert!(dropped.ends_epoch_by_departure());
        assert!(g.state.epoch_began_with_departure());
        assert!(g.state.epoch_began_with_departure_of(&sam.device(1).id()));
        assert!(!g.state.epoch_began_with_departure_of(&sam.device(0).id()));
        assert_eq!(
            g.state.departure_of(&sam.device(1).id()),
            Some(dropped.op.seq)
        );
        assert_eq!(g.state.departure_of(&sam.device(0).id()), None);
        assert_eq!(verify_log(&g.log).unwrap(), g.state);
        // An unlinked device is never listed again: its keys were deleted, so only a thief who
        // kept them (and the identity key) could offer it.
        let list = sam.sign(&[0, 1, 2]);
        assert!(matches!(
            g.push(sam.device(0), update(list)),
            Err(LogError::InvalidMember(why)) if why.contains("unlinked")
        ));
        // A leave departs every device.
        let left = g.push(sam.device(2), OpBody::Leave {}).unwrap();
        assert_eq!(left.departed.len(), 2);
        assert!(!left.grants_epoch_grace());
    }

    #[test]
    fn an_entry_whose_list_does_not_match_its_devices_is_refused() {
        let fac = Person::new(1, "Fay");
        let mut sam = Linked::new(20, "Sam", &[21, 22]);
        sam.sign(&[0, 1]);
        let mut g = Group::new(&fac);
        let add = |member: MemberEntry| OpBody::Add {
            member,
            invite: None,
            invite_sig: None,
            invite_device: None,
        };
        let invalid = |g: &mut Group, member: MemberEntry| {
            let signed = g.sign(&fac, add(member));
            let before = g.state.clone();
            assert!(matches!(
                g.state.apply(&signed),
                Err(LogError::InvalidMember(_))
            ));
            assert_eq!(g.state, before);
        };
        // A device missing.
        let mut entry = sam.entry();
        entry.devices.pop();
        invalid(&mut g, entry);
        // The devices in another order.
        let mut entry = sam.entry();
        entry.devices.reverse();
        invalid(&mut g, entry);
        // The list of another user.
        let mut entry = sam.entry();
        entry.user = UserId([0x66; 16]);
        invalid(&mut g, entry);
        // The entry as it should be is admitted.
        g.ok(&fac, add(sam.entry()));
        // A genesis whose creator's list does not match is refused as well.
        let mut creator = sam.entry();
        creator.devices.pop();
        let genesis = Op::genesis(
            GroupId([3; 16]),
            sam.device(0).id(),
            Timestamp(T0),
            creator,
            GroupSettings::default(),
        )
        .sign(&sam.device(0).device)
        .unwrap();
        assert!(matches!(
            GroupState::from_genesis(&genesis),
            Err(LogError::InvalidMember(_))
        ));
    }

    #[test]
    fn an_entry_without_a_list_keeps_its_bytes_and_a_list_round_trips() {
        let fay = Person::new(1, "Fay");
        let json = serde_json::to_string(&fay.entry()).unwrap();
        assert!(!json.contains("device_list"));
        let parsed: MemberEntry = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed, fay.entry());
        let mut sam = Linked::new(20, "Sam", &[21]);
        sam.sign(&[0]);
        let body = update(sam.list.clone().unwrap().1);
        let json = serde_json::to_string(&body).unwrap();
        assert!(json.starts_with(r#"{"type":"update_devices","device_list":{"list":"#));
        assert_eq!(serde_json::from_str::<OpBody>(&json).unwrap(), body);
        // Strict: an unknown member next to the list is refused.
        let extra = json.replacen(r#""device_list""#, r#""x":1,"device_list""#, 1);
        assert!(serde_json::from_str::<OpBody>(&extra).is_err());
    }

    /// Fay (facilitator) and Bob (plain member), Bob added at `T0 + 1 s`.
    fn fay_and_bob() -> (Person, Person, Group) {
        let (fay, bob) = (Person::new(1, "Fay"), Person::new(2, "Bob"));
        let mut g = Group::new(&fay);
        let add = g.add_body(&bob, None);
        g.ok(&fay, add);
        (fay, bob, g)
    }

    /// Sets the group's clock so that the next op signed claims `at`.
    fn next_at(g: &mut Group, at: Timestamp) {
        g.clock = at.0 - 1000;
    }

    #[test]
    fn a_rekey_starts_the_next_epoch_with_the_same_members_and_devices() {
        let (fay, bob, mut g) = fay_and_bob();
        let members = g.state.members().clone();
        let devices: Vec<DeviceKeys> = g.state.current_devices().into_iter().cloned().collect();
        let epoch = g.state.epoch();
        assert_eq!(g.state.epoch_started_at(), Timestamp(T0 + 1000));
        let at = g.state.earliest_rekey_at();
        assert_eq!(at, Timestamp(T0 + 1000 + MIN_REKEY_INTERVAL_MS));
        next_at(&mut g, at);
        let applied = g.push(&bob, OpBody::Rekey {}).unwrap();
        assert_eq!(g.state.epoch(), epoch.next());
        assert_eq!(g.state.epoch_hash(), applied.hash);
        assert_eq!(g.state.epoch_started_at(), at);
        assert!(applied.departed.is_empty());
        assert!(applied.grants_epoch_grace());
        assert_eq!(
            g.state.members(),
            &members,
            "nobody came or went, no role changed"
        );
        let after: Vec<DeviceKeys> = g.state.current_devices().into_iter().cloned().collect();
        assert_eq!(after, devices, "keys are sealed to the same devices");
        // Bob still reads from the epoch he joined in, and the new one.
        let bob_member = g.state.member(&bob.user).unwrap();
        assert!(bob_member.can_read_epoch(g.state.epoch()));
        assert_eq!(bob_member.joined_epoch, epoch);
        // The log round-trips.
        assert_eq!(verify_log(&g.log).unwrap(), g.state);
        // JSON: an empty body, like `lock`.
        let json = serde_json::to_string(&OpBody::Rekey {}).unwrap();
        assert_eq!(json, r#"{"type":"rekey"}"#);
        let _ = fay;
    }

    #[test]
    fn a_rekey_sooner_than_a_minute_after_the_epoch_began_is_refused() {
        let (fay, bob, mut g) = fay_and_bob();
        let earliest = g.state.earliest_rekey_at();
        let too_soon = Timestamp(earliest.0 - 1);
        next_at(&mut g, too_soon);
        let refused = LogError::RekeyTooSoon {
            at: too_soon,
            earliest,
        };
        assert_eq!(refused.code(), "rekey_too_soon");
        g.rejects(&bob, OpBody::Rekey {}, refused);
        // Other ops meanwhile (claiming no later than the rekey) do not move the bound: it
        // counts from the op that began the epoch.
        next_at(&mut g, Timestamp(earliest.0 - 30_000));
        g.ok(&fay, OpBody::Lock {});
        next_at(&mut g, earliest);
        g.ok(&fay, OpBody::Rekey {});
        // The rekey began an epoch of its own: the next one waits a minute again.
        let next = g.state.earliest_rekey_at();
        assert_eq!(next, Timestamp(earliest.0 + MIN_REKEY_INTERVAL_MS));
        next_at(&mut g, Timestamp(next.0 - 1000));
        g.rejects(
            &bob,
            OpBody::Rekey {},
            LogError::RekeyTooSoon {
                at: Timestamp(next.0 - 1000),
                earliest: next,
            },
        );
        // So does a rekey right after a membership change.
        let cleo = Person::new(3, "Cleo");
        next_at(&mut g, Timestamp(next.0 + HOUR));
        let add = g.add_body(&cleo, None);
        g.ok(&fay, add);
        let at = Timestamp(g.clock + 1000);
        g.rejects(
            &cleo,
            OpBody::Rekey {},
            LogError::RekeyTooSoon {
                at,
                earliest: g.state.earliest_rekey_at(),
            },
        );
    }

    #[test]
    fn a_rekey_cannot_be_back_dated_so_a_burst_of_rekeys_is_refused() {
        let (fay, bob, mut g) = fay_and_bob();
        // The epoch is an hour old; Fay's latest op claims T0 + 1 h.
        next_at(&mut g, Timestamp(T0 + HOUR));
        g.ok(&fay, OpBody::Lock {});
        let latest = g.state.latest_at();
        assert_eq!(g.state.earliest_rekey_at(), latest);
        // Bob claims 5 minutes in the past (other ops may, §8.11): refused.
        let back = Timestamp(latest.0 - 4 * MIN_REKEY_INTERVAL_MS);
        assert!(back >= g.state.min_next_at(), "any other op could claim it");
        next_at(&mut g, back);
        g.rejects(
            &bob,
            OpBody::Rekey {},
            LogError::RekeyTooSoon {
                at: back,
                earliest: latest,
            },
        );
        // At the latest time, it goes; a second one a minute later by the log's clock only.
        next_at(&mut g, latest);
        g.ok(&bob, OpBody::Rekey {});
        next_at(&mut g, Timestamp(latest.0 + MIN_REKEY_INTERVAL_MS - 1));
        g.rejects(
            &bob,
            OpBody::Rekey {},
            LogError::RekeyTooSoon {
                at: Timestamp(latest.0 + MIN_REKEY_INTERVAL_MS - 1),
                earliest: Timestamp(latest.0 + MIN_REKEY_INTERVAL_MS),
            },
        );
    }

    #[test]
    fn a_member_whose_signed_sealing_key_is_of_small_order_is_not_added() {
        let (fay, _bob, mut g) = fay_and_bob();
        let cleo = Person::new(3, "Cleo");
        let mut body = g.add_body(&cleo, None);
        let OpBody::Add { member, .. } = &mut body else {
            unreachable!()
        };
        // X25519's point of order 8, signed by Cleo's own device.
        let low: [u8; 32] =
            hex::decode("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")
                .unwrap()
                .try_into()
                .unwrap();
        member.devices[0].sealing_key = low;
        member.devices[0].sealing_sig = cleo
            .device
            .sign(crate::identity::LABEL_SEALING_KEY, &[&low]);
        assert!(matches!(
            g.push(&fay, body),
            Err(LogError::InvalidMember(_))
        ));
        assert!(g.state.member(&cleo.user).is_none());
    }

    #[test]
    fn only_a_current_member_may_rekey_muted_or_not_of_any_role() {
        let (fay, bob, mut g) = fay_and_bob();
        let (cleo, stranger) = (Person::new(3, "Cleo"), Person::new(4, "Stranger"));
        let add = g.add_body(&cleo, None);
        g.ok(&fay, add);
        g.ok(&fay, set_role(&cleo, Role::CoFacilitator));
        g.ok(
            &fay,
            OpBody::Mute {
                user: bob.user,
                until: Timestamp(T0 + 24 * HOUR),
            },
        );
        // Someone who never was a member.
        next_at(&mut g, Timestamp(T0 + HOUR));
        g.rejects(
            &stranger,
            OpBody::Rekey {},
            LogError::UnknownAuthor {
                device: stranger.id(),
            },
        );
        // A muted plain member, a co-facilitator and a facilitator may.
        g.ok(&bob, OpBody::Rekey {});
        next_at(&mut g, Timestamp(T0 + 2 * HOUR));
        g.ok(&cleo, OpBody::Rekey {});
        next_at(&mut g, Timestamp(T0 + 3 * HOUR));
        g.ok(&fay, OpBody::Rekey {});
        // Once removed and banned, Bob may not, however long he waits.
        g.ok(
            &fay,
            OpBody::Remove {
                user: bob.user,
                ban: true,
            },
        );
        next_at(&mut g, Timestamp(T0 + 5 * HOUR));
        g.rejects(
            &bob,
            OpBody::Rekey {},
            LogError::UnknownAuthor { device: bob.id() },
        );
    }
}
