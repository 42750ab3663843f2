//! **For tests only** (feature `test-hooks`): a `Default` for each result and event type that
//! a front end's own tests build by hand. Those types are `#[non_exhaustive]`, so code outside
//! this crate cannot write them as literals; a test starts from the default and sets the
//! fields it cares about. The defaults are placeholders (all-zero ids, empty texts, a plain
//! member), never values the client produces. (`SyncRefusal`, `AgreementInfo` and
//! `PinnedInfo` derive theirs, under the same feature.)

use confide_protocol::group_log::Role;
use confide_protocol::{DeviceId, Epoch, GroupId, MessageId, Seq, Timestamp, UserId};

use crate::events::{ChatMessage, GroupNotice, NoticeKind, ReportInfo};
use crate::invite::{CheckedInvite, InvitePreview};
use crate::settings::SettingsInfo;
use crate::types::{GroupInfo, MemberInfo, Peer, Status};

const GROUP: GroupId = GroupId([0; 16]);
const USER: UserId = UserId([0; 16]);

impl Default for ChatMessage {
    fn default() -> ChatMessage {
        ChatMessage {
            group: GROUP,
            seq: Seq(0),
            number: 0,
            id: MessageId([0; 16]),
            sender: USER,
            sender_device: DeviceId([0; 32]),
            sender_name: String::new(),
            sent_at: Timestamp(0),
            received_at: Timestamp(0),
            text: String::new(),
            reply_to: None,
            warnings: Vec::new(),
            hidden: false,
            round: None,
        }
    }
}

impl Default for GroupNotice {
    fn default() -> GroupNotice {
        GroupNotice {
            group: GROUP,
            op_seq: 0,
            index: 0,
            at: Timestamp(0),
            by: USER,
            by_name: String::new(),
            kind: NoticeKind::Left,
            after_seq: None,
        }
    }
}

impl Default for ReportInfo {
    fn default() -> ReportInfo {
        ReportInfo {
            group: GROUP,
            seq: Seq(0),
            message: MessageId([0; 16]),
            offender: USER,
            offender_name: String::new(),
            reporter: USER,
            reporter_name: String::new(),
            text: String::new(),
            reason: String::new(),
            reported_at: Timestamp(0),
        }
    }
}

impl Default for GroupInfo {
    fn default() -> GroupInfo {
        GroupInfo {
            group: GROUP,
            member: false,
            role: None,
            members: 0,
            epoch: Epoch(0),
            tampered: None,
            invited: false,
            waiting: 0,
            unread: 0,
            private_with: None,
            sync_refused: None,
            post_quantum: false,
        }
    }
}

impl Default for Peer {
    fn default() -> Peer {
        Peer {
            user: USER,
            display_name: String::new(),
            shared_groups: Vec::new(),
            looks_like: Vec::new(),
        }
    }
}

impl Default for MemberInfo {
    fn default() -> MemberInfo {
        MemberInfo {
            user: USER,
            display_name: String::new(),
            role: Role::Member,
            devices: Vec::new(),
            muted_until: None,
            looks_like: Vec::new(),
        }
    }
}

/// A member who may post: the chat open, nothing pending.
impl Default for Status {
    fn default() -> Status {
        Status {
            role: Some(Role::Member),
            muted_until: None,
            locked: false,
            open_now: true,
            slow_mode_seconds: 0,
            agreement_pending: None,
        }
    }
}

/// A link read without fetching anything: no approval, nothing checked.
impl Default for InvitePreview {
    fn default() -> InvitePreview {
        InvitePreview {
            group: GROUP,
            requires_approval: false,
            checked: None,
        }
    }
}

/// An invite from a facilitator with an empty name, to a group of one, valid for ever.
impl Default for CheckedInvite {
    fn default() -> CheckedInvite {
        CheckedInvite {
            inviter: USER,
            inviter_name: String::new(),
            inviter_role: Role::Facilitator,
            members: 1,
            expires_at: Some(Timestamp(u64::MAX)),
            already_member: false,
        }
    }
}

/// A group as it is created: open at any time, no slow mode, messages kept, nothing pinned.
impl Default for SettingsInfo {
    fn default() -> SettingsInfo {
        SettingsInfo {
            locked: false,
            open_hours: None,
            open_now: true,
            slow_mode_seconds: 0,
            retention_seconds: None,
            members_may_message_privately: false,
            agreement_version: None,
            crisis_resources: false,
        }
    }
}
