//! Security warnings: the [`Event`]s a person must see even when the application fell behind
//! ([`is_security_warning`]), how repeats of one are recognised, and [`WarningCollector`],
//! which reads an application's [`Events`] for it and keeps only the warnings.
//!
//! A malicious server can make the client produce many cheap events (messages that fail
//! verification, say) and put a key substitution behind them. The event queue keeps
//! warnings apart from its capped backlog ([`crate::queue`]), and a scripted front end that
//! does not show events as they come drains them with a [`WarningCollector`] so that a long
//! catch-up never fills the queue.

use std::collections::HashSet;

use confide_client_core::Event;
use confide_protocol::{GroupId, UserId};

use crate::queue::Events;

/// How many distinct security warnings wait, beyond the event backlog, while it has
/// overflowed ([`Events`]); repeats of one are not kept twice. Each is about a group this
/// device holds (per member, for a key change), so only a device in more groups than this,
/// or with more members whose keys changed at once, can reach it.
pub const WARNING_BACKLOG: usize = 1024;

/// Whether `event` warns of something the server may be doing to this device — a member's
/// keys substituted, an op that failed verification, a withheld membership change, a refused
/// sync, messages out of order, this device removed. These are never silently dropped when
/// the application falls behind ([`Events`]): they wait in a list of their own.
///
/// [`Event::MessageRejected`] is not one: it is the cheapest event a server can produce in
/// bulk (any bytes that fail verification), and the message it concerns is simply not shown.
pub fn is_security_warning(event: &Event) -> bool {
    warning_key(event).is_some()
}

/// What tells repeats of one warning apart: a key change per member of a group, every other
/// warning per group (a server that serves a thousand forged ops to one group gets one
/// warning kept, the first).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum WarningKey {
    /// [`Event::KeyChanged`] of this member in this group.
    KeyChanged(GroupId, UserId),
    /// [`Event::GroupRejected`] in this group.
    GroupRejected(GroupId),
    /// [`Event::GroupBehind`] of this group.
    GroupBehind(GroupId),
    /// [`Event::SyncRefused`] of this group.
    SyncRefused(GroupId),
    /// [`Event::OrderWarning`] in this group.
    OrderWarning(GroupId),
    /// [`Event::Removed`] from this group.
    Removed(GroupId),
    /// [`Event::IdentityMisuse`] of this person's identity key.
    IdentityMisuse(UserId),
    /// [`Event::DeviceUnlinked`]: this device was unlinked.
    DeviceUnlinked,
}

/// The key of a security warning; `None` for any other event.
pub(crate) fn warning_key(event: &Event) -> Option<WarningKey> {
    Some(match event {
        Event::KeyChanged { group, user, .. } => WarningKey::KeyChanged(*group, *user),
        Event::GroupRejected(r) => WarningKey::GroupRejected(r.group),
        Event::GroupBehind { group, .. } => WarningKey::GroupBehind(*group),
        Event::SyncRefused { group, .. } => WarningKey::SyncRefused(*group),
        Event::OrderWarning(r) => WarningKey::OrderWarning(r.group),
        Event::Removed { group, .. } => WarningKey::Removed(*group),
        Event::IdentityMisuse { user } => WarningKey::IdentityMisuse(*user),
        Event::DeviceUnlinked { .. } => WarningKey::DeviceUnlinked,
        _ => return None,
    })
}

/// Warnings kept in order, at most a given number, each repeat once. What is not kept is
/// counted.
pub(crate) struct KeptWarnings {
    /// The warnings, oldest first.
    pub(crate) events: Vec<Event>,
    /// The keys of those in `events`.
    seen: HashSet<WarningKey>,
    /// The most `events` holds.
    limit: usize,
}

impl KeptWarnings {
    /// An empty list of at most `limit` warnings.
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            events: Vec::new(),
            seen: HashSet::new(),
            limit,
        }
    }

    /// Keeps `event` if it is a warning not kept yet and there is room; false if it was not
    /// kept: not a warning, a repeat, or one beyond the limit.
    pub(crate) fn keep(&mut self, event: Event) -> bool {
        let Some(key) = warning_key(&event) else {
            return false;
        };
        if self.seen.contains(&key) || self.events.len() >= self.limit {
            return false;
        }
        self.seen.insert(key);
        self.events.push(event);
        true
    }
}

/// Reads an application's [`Events`] on a task of its own, so that the client never holds
/// back for it, and keeps only what a front end that shows no live events must still tell
/// the person: the security warnings ([`is_security_warning`], each repeat once, at most
/// [`WARNING_BACKLOG`]), [`Event::MessageRejected`] and [`Event::HeldNeedsConfirm`] (at most
/// [`WARNING_BACKLOG`] each) and every [`Event::EventsDropped`]. Every other event is discarded: what it reported is stored.
///
/// For scripted front ends (a command-line tool): start one right after opening the client,
/// and [`Self::finish`] it after [`crate::Client::shutdown`].
#[derive(Debug)]
pub struct WarningCollector {
    task: tokio::task::JoinHandle<Vec<Event>>,
}

impl WarningCollector {
    /// Starts reading `events` on a new task (on the current Tokio runtime).
    pub fn start(mut events: Events) -> Self {
        let task = tokio::spawn(async move {
            let mut warnings = KeptWarnings::new(WARNING_BACKLOG);
            let mut kept = Vec::new();
            let mut rejected = 0;
            let mut held = 0;
            // Warnings and rejections this collector had no room for.
            let mut left_out: u64 = 0;
            while let Some(event) = events.next().await {
                match event {
                    Event::EventsDropped { .. } => kept.push(event),
                    // A message the person wrote waits for their word: said after the command
                    // like a warning (once per message and epoch, so few).
                    Event::HeldNeedsConfirm { .. } if held < WARNING_BACKLOG => {
                        held += 1;
                        kept.push(event);
                    }
                    Event::MessageRejected(_) if rejected < WARNING_BACKLOG => {
                        rejected += 1;
                        kept.push(event);
                    }
                    Event::MessageRejected(_) => left_out = left_out.saturating_add(1),
                    event if is_security_warning(&event) => {
                        // Kept in order among the rest; the list only decides whether.
                        if warnings.keep(event.clone()) {
                            kept.push(event);
                        } else if warnings.events.len() >= WARNING_BACKLOG {
                            left_out = left_out.saturating_add(1);
                        }
                    }
                    _ => {}
                }
            }
            if left_out > 0 {
                kept.push(Event::EventsDropped { count: left_out });
            }
            kept
        });
        Self { task }
    }

    /// The warnings kept, in the order they happened, once the client has shut down and every
    /// event is read (it waits until then). If it could not keep them all, the last is an
    /// [`Event::EventsDropped`] counting those it left out.
    pub async fn finish(self) -> Vec<Event> {
        // The task only fails if it panicked or its runtime is shutting down: then there is
        // nothing to report but that something may be missing.
        self.task
            .await
            .unwrap_or_else(|_| vec![Event::EventsDropped { count: 1 }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(n: u8) -> Event {
        Event::Joined {
            group: GroupId([n; 16]),
        }
    }

    fn key_changed(user: u8) -> Event {
        Event::KeyChanged {
            group: GroupId([0; 16]),
            user: UserId([user; 16]),
            display_name: format!("user {user}"),
        }
    }

    /// A catch-up of far more events than the queue (4) and backlog (8) hold, produced the
    /// way the background task does (waiting while the queue is backed up): with a collector
    /// reading, nothing overflows, and the key change in the middle is kept.
    #[tokio::test]
    async fn a_collector_keeps_the_queue_from_overflowing_and_keeps_the_warnings() {
        let (sink, events) = crate::queue::channel(4, 8);
        let collector = WarningCollector::start(events);
        for n in 0..1_000u32 {
            while sink.is_backed_up() {
                sink.move_one().await;
            }
            assert!(!sink.has_overflowed());
            sink.push(if n == 500 {
                key_changed(7)
            } else {
                joined((n % 200) as u8)
            });
            // One step produces many events before the task looks again.
            if n % 10 == 0 {
                tokio::task::yield_now().await;
            }
        }
        drop(sink);
        assert_eq!(collector.finish().await, vec![key_changed(7)]);
    }
}
