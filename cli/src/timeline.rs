//! Notices among a group's messages — "Alice removed Bob", "a message was deleted by Alice" —
//! for `confide read` and the chat alike: their wording (every name cleaned by
//! [`crate::text::one_line`], so a pseudonym cannot forge a line) and where they go among the
//! messages shown.

use confide_client::{ChatMessage, GroupNotice, NoticeKind};
use confide_protocol::UserId;

use crate::text::one_line;

/// A notice for people, `me` being this device's user: "Alice removed Bob", "you left",
/// "a message was deleted by Alice".
pub fn notice_text(notice: &GroupNotice, me: UserId) -> String {
    let name = |user: UserId, name: &str| {
        if user == me {
            "you".to_string()
        } else if name.is_empty() {
            "someone".to_string()
        } else {
            one_line(name)
        }
    };
    let by = name(notice.by, &notice.by_name);
    match &notice.kind {
        NoticeKind::Removed {
            user,
            name: removed,
            banned,
        } => format!(
            "{by} removed{} {}",
            if *banned { " and banned" } else { "" },
            name(*user, removed)
        ),
        NoticeKind::Left => format!("{by} left"),
        NoticeKind::MessageDeleted { .. } if notice.by == me => {
            "you deleted a message for everyone".into()
        }
        NoticeKind::MessageDeleted { .. } => format!("a message was deleted by {by}"),
        NoticeKind::DevicesUpdated if notice.by == me => "you updated your devices".into(),
        NoticeKind::DevicesUpdated => format!("{by} updated their devices"),
        // A kind a newer library knows: who, at least.
        _ => format!("{by} changed the group"),
    }
}

/// The number of the message a notice is about (a deleted message's), to show where the
/// message's number would be.
pub fn notice_number(notice: &GroupNotice) -> Option<u64> {
    match notice.kind {
        NoticeKind::MessageDeleted { number } => number,
        _ => None,
    }
}

/// The part of a group's messages on screen (or in one page of `confide read`): its messages,
/// oldest first, and what is known of the messages around it.
pub struct Shown<'a> {
    /// The messages shown, oldest first.
    pub messages: &'a [&'a ChatMessage],
    /// The message just before the first one shown, if one exists and is known (`confide read`
    /// fetches one more than it shows to know it).
    pub before: Option<&'a ChatMessage>,
    /// Whether older messages may exist that are not known here at all (the chat before it
    /// loaded the older pages): then nothing is placed above the first message shown.
    pub older_unknown: bool,
    /// Whether the newest message shown is the group's newest: notices after it go at the end.
    pub newest: bool,
}

/// Where `notice` goes among `shown.messages`: before the message at the returned index (the
/// number of messages for after the last one), or `None` if it belongs outside what is shown.
/// A notice goes after every message up to its [`GroupNotice::after_seq`]; without one (a
/// message deleted before it reached this device), after every message received before it
/// happened.
pub fn place(notice: &GroupNotice, shown: &Shown<'_>) -> Option<usize> {
    let goes_after = |m: &ChatMessage| match notice.after_seq {
        Some(after) => m.seq <= after,
        None => m.received_at <= notice.at,
    };
    let slot = shown.messages.iter().take_while(|m| goes_after(m)).count();
    if slot == 0 {
        match shown.before {
            Some(before) if !goes_after(before) => return None,
            None if shown.older_unknown => return None,
            _ => {}
        }
    }
    if slot == shown.messages.len() && !shown.newest {
        return None;
    }
    Some(slot)
}

#[cfg(test)]
mod tests {
    use super::*;
    use confide_protocol::{DeviceId, GroupId, MessageId, Seq, Timestamp};

    fn after(seq: u64) -> Option<Seq> {
        Some(Seq(seq))
    }

    fn at(ms: u64) -> Timestamp {
        Timestamp(ms)
    }

    fn message(seq: u64, received: u64) -> ChatMessage {
        {
            let mut v = ChatMessage::default();
            v.group = GroupId([1; 16]);
            v.seq = Seq(seq);
            v.number = seq;
            v.id = MessageId([seq as u8; 16]);
            v.sender = UserId([2; 16]);
            v.sender_device = DeviceId([0; 32]);
            v.sender_name = "Bob".into();
            v.sent_at = at(received);
            v.received_at = at(received);
            v.text = "hi".into();
            v.reply_to = None;
            v
        }
    }

    fn notice(after_seq: Option<Seq>, when: u64, kind: NoticeKind) -> GroupNotice {
        {
            let mut v = GroupNotice::default();
            v.group = GroupId([1; 16]);
            v.op_seq = 9;
            v.index = 0;
            v.at = at(when);
            v.by = UserId([1; 16]);
            v.by_name = "Alice\u{1b}[2J".into();
            v.kind = kind;
            v.after_seq = after_seq;
            v
        }
    }

    #[test]
    fn notices_read_as_sentences_with_names_cleaned() {
        let me = UserId([3; 16]);
        let removed = notice(
            None,
            0,
            NoticeKind::Removed {
                user: UserId([2; 16]),
                name: "Bob\nAlice: hi".into(),
                banned: false,
            },
        );
        assert_eq!(
            notice_text(&removed, me),
            "Alice\u{fffd}[2J removed Bob Alice: hi"
        );
        let deleted = notice(None, 0, NoticeKind::MessageDeleted { number: Some(4) });
        assert_eq!(
            notice_text(&deleted, me),
            "a message was deleted by Alice\u{fffd}[2J"
        );
        assert_eq!(notice_number(&deleted), Some(4));
        let mine = {
            let mut v = removed;
            v.kind = NoticeKind::Removed {
                user: me,
                name: "Carol".into(),
                banned: true,
            };
            v
        };
        assert_eq!(
            notice_text(&mine, me),
            "Alice\u{fffd}[2J removed and banned you"
        );
        let linked = notice(None, 0, NoticeKind::DevicesUpdated);
        assert_eq!(
            notice_text(&linked, me),
            "Alice\u{fffd}[2J updated their devices"
        );
        assert_eq!(
            notice_text(&linked, UserId([1; 16])),
            "you updated your devices"
        );
    }

    #[test]
    fn notices_go_where_they_happened_and_only_on_the_page_that_holds_that_place() {
        let (m1, m2, m3, m4) = (
            message(1, 10),
            message(3, 30),
            message(5, 50),
            message(7, 70),
        );
        let page = [&m2, &m3];
        let shown = Shown {
            messages: &page,
            before: Some(&m1),
            older_unknown: false,
            newest: false,
        };
        let deleted = |seq| notice(after(seq), 0, NoticeKind::MessageDeleted { number: None });
        // Where message 4 was: between 3 and 5.
        assert_eq!(place(&deleted(4), &shown), Some(1));
        // Between the page and the message before it: at the top of this page.
        assert_eq!(place(&deleted(2), &shown), Some(0));
        // Before the message before the page: on an older page.
        assert_eq!(place(&deleted(0), &shown), None);
        // After the page, which is not the newest: on a newer page.
        assert_eq!(place(&deleted(6), &shown), None);
        let newest = [&m3, &m4];
        let last = Shown {
            messages: &newest,
            before: Some(&m2),
            older_unknown: false,
            newest: true,
        };
        assert_eq!(place(&deleted(9), &last), Some(2));
        // Without a position: by time.
        let by_time = notice(None, 60, NoticeKind::Left);
        assert_eq!(place(&by_time, &last), Some(1));
        // Older messages not loaded yet: nothing above the first one shown.
        let loading = Shown {
            messages: &newest,
            before: None,
            older_unknown: true,
            newest: true,
        };
        assert_eq!(place(&deleted(2), &loading), None);
    }
}
