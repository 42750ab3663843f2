//! The bounded queue of [`Event`]s between the background task and the application, and its
//! back-pressure.
//!
//! The core hands over events synchronously ([`confide_client_core::Host::event`]), only once
//! what they report is committed. The native host puts each into a bounded channel of
//! [`crate::ClientConfig::event_queue`] places; when the channel is full, into a *backlog* in
//! order. While the backlog is not empty the background task takes no new input from the
//! server (frames, outbox retries, reconnecting): it waits for the application to make room
//! and moves the backlog over, one event per freed place.
//!
//! The backlog has a hard cap, [`crate::ClientConfig::event_backlog`]: commands are served
//! while it waits (see [`Events`]), and one step may produce many events, so without a cap a
//! malicious server could fill memory through an application that awaits commands without
//! reading. An event that finds the backlog full is not kept: the backlog *overflows*, and
//! ends with one [`Event::EventsDropped`] that counts every event left out until the
//! application takes it — except security warnings ([`crate::is_security_warning`]), which
//! wait behind the marker in a deduplicated list of at most [`WARNING_BACKLOG`]. The marker
//! never goes into the channel: the application takes it from the backlog itself, and only
//! that ends the overflow. While it has overflowed the native link refuses to carry anything
//! (`crate::native`), so the connection drops and the client takes nothing more from the
//! server until the application has caught up. So what is held is at most the channel's
//! capacity plus the cap, the marker and the warnings' bound.
//!
//! The backlog sits behind a lock shared by the three parties: the host (pushing, on the
//! background task), the background task (moving it into the channel) and [`Events`] (taking
//! from it directly once the channel is empty, so that an application reading with
//! [`Events::try_next`], or after shutdown, never waits for the task and never sees an event
//! out of order). Every move between the backlog and the channel happens under that lock.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::mpsc::error::{TryRecvError, TrySendError};
use tokio::sync::{Notify, mpsc};

use confide_client_core::Event;

use crate::warnings::{KeptWarnings, WARNING_BACKLOG};

/// Events that did not fit into the channel, oldest first, and the gap after them once the
/// backlog overflowed.
#[derive(Default)]
struct Waiting {
    /// The events, oldest first.
    events: VecDeque<Event>,
    /// How many events may wait before the backlog overflows.
    cap: usize,
    /// Since an event found the backlog full and until the application has taken the
    /// [`Event::EventsDropped`] that reports it: what was left out, and the warnings kept.
    gap: Option<Gap>,
}

/// What came after the kept events once the backlog overflowed: the application reads the
/// marker, then these warnings.
struct Gap {
    /// How many events were left out: what the marker says.
    dropped: u64,
    /// The security warnings among them, kept apart from the capped backlog.
    warnings: KeptWarnings,
}

impl Waiting {
    /// Puts `event` at the end, or — when the backlog is full or has overflowed — keeps it
    /// in the gap's warnings if it is a security warning not kept yet, and else counts it.
    /// Never holds more than `cap` events, the marker and [`WARNING_BACKLOG`] warnings.
    fn queue(&mut self, event: Event) {
        if self.gap.is_none() && self.events.len() < self.cap {
            self.events.push_back(event);
            return;
        }
        let gap = self.gap.get_or_insert_with(|| Gap {
            dropped: 0,
            warnings: KeptWarnings::new(WARNING_BACKLOG),
        });
        // A repeat of a warning kept, or one beyond the list's bound, is counted like any
        // other: the marker then says that something was left out.
        if !gap.warnings.keep(event) {
            gap.dropped = gap.dropped.saturating_add(1);
        }
    }

    /// Takes the oldest event for the channel. The marker does not go there: it stays until
    /// the application takes it ([`Self::take`]), so that the overflow lasts until then.
    fn pop_movable(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Takes the oldest event for the application: a kept one, else the marker. Taking the
    /// marker ends the overflow — the application has caught up to the gap — and puts the
    /// warnings kept meanwhile at the head of the backlog, next after it. A gap that left
    /// nothing out (only warnings came) has no marker: its first warning comes instead.
    fn take(&mut self) -> Option<Event> {
        if let Some(event) = self.events.pop_front() {
            return Some(event);
        }
        let gap = self.gap.take()?;
        self.events.extend(gap.warnings.events);
        if gap.dropped > 0 {
            Some(Event::EventsDropped { count: gap.dropped })
        } else {
            self.events.pop_front()
        }
    }

    /// Whether anything waits: events, or the gap.
    fn is_empty(&self) -> bool {
        self.events.is_empty() && self.gap.is_none()
    }

    /// Forgets everything: nobody reads any more.
    fn clear(&mut self) {
        self.events.clear();
        self.gap = None;
    }
}

/// The backlog, shared by the host, the background task and [`Events`].
type Backlog = Arc<Mutex<Waiting>>;

/// Locks the backlog. Nothing but `VecDeque` pushes and pops and flag changes runs under the
/// lock, which cannot leave it half changed, so a poisoned lock still guards a consistent
/// queue.
fn lock(backlog: &Mutex<Waiting>) -> MutexGuard<'_, Waiting> {
    backlog.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A new queue of `capacity` places (at least 1), with a backlog of at most `backlog_cap`
/// events beyond them: the sending side for the background task and its host, and the
/// application's [`Events`].
pub(crate) fn channel(capacity: usize, backlog_cap: usize) -> (EventSink, Events) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let backlog = Arc::new(Mutex::new(Waiting {
        cap: backlog_cap,
        ..Waiting::default()
    }));
    let gap_taken = Arc::new(Notify::new());
    (
        EventSink {
            tx,
            backlog: backlog.clone(),
            gap_taken: gap_taken.clone(),
        },
        Events {
            rx,
            backlog,
            gap_taken,
        },
    )
}

/// The sending side: the native host's and the background task's. Clones share one queue.
#[derive(Clone)]
pub(crate) struct EventSink {
    tx: mpsc::Sender<Event>,
    backlog: Backlog,
    /// Signalled when the application has taken a gap's marker, or dropped its [`Events`]:
    /// then what waits behind the marker can move.
    gap_taken: Arc<Notify>,
}

impl EventSink {
    /// Queues `event` without waiting: into the channel if it has room and nothing waits
    /// before it, else at the end of the backlog — or, once the backlog is full, counted in
    /// its [`Event::EventsDropped`]. Dropped if the application dropped its [`Events`]:
    /// nobody listens, and what it reports is in the store.
    pub(crate) fn push(&self, event: Event) {
        let mut backlog = lock(&self.backlog);
        if !backlog.is_empty() {
            backlog.queue(event);
            return;
        }
        match self.tx.try_send(event) {
            Ok(()) | Err(TrySendError::Closed(_)) => {}
            Err(TrySendError::Full(event)) => backlog.queue(event),
        }
    }

    /// Whether events wait for room in the channel: then the background task takes no new
    /// input from the server.
    pub(crate) fn is_backed_up(&self) -> bool {
        !lock(&self.backlog).is_empty()
    }

    /// Whether the backlog overflowed and the application has not read up to its
    /// [`Event::EventsDropped`] yet: then the connection is dropped and none is made.
    pub(crate) fn has_overflowed(&self) -> bool {
        lock(&self.backlog).gap.is_some()
    }

    /// How many events wait beyond the channel (the marker included, the gap's warnings
    /// not).
    #[cfg(test)]
    pub(crate) fn backlog_len(&self) -> usize {
        let backlog = lock(&self.backlog);
        backlog.events.len() + usize::from(backlog.gap.is_some())
    }

    /// Waits for a free place in the channel and moves the oldest waiting event into it —
    /// or, when only a gap's marker waits (which the application takes itself), waits until
    /// it has. Cancel-safe: an event moves only once the place is held. If the application
    /// dropped its [`Events`], the backlog is dropped with it.
    pub(crate) async fn move_one(&self) {
        match self.tx.reserve().await {
            Ok(permit) => {
                let (event, gap_waits) = {
                    let mut backlog = lock(&self.backlog);
                    (backlog.pop_movable(), backlog.gap.is_some())
                };
                let Some(event) = event else {
                    drop(permit);
                    // Nothing to move: the application took it all itself, or only a marker
                    // waits. `notify_one` keeps its signal for a waiter to come, so a marker
                    // taken between the look above and this wait is not missed (at worst a
                    // stale signal ends one wait early, and the caller looks again).
                    if gap_waits {
                        self.gap_taken.notified().await;
                    }
                    return;
                };
                permit.send(event);
            }
            Err(_) => lock(&self.backlog).clear(),
        }
    }
}

/// The stream of [`Event`]s, in the order they happened, each once.
///
/// # Back-pressure
///
/// The queue holds [`crate::ClientConfig::event_queue`] events ([`crate::EVENT_QUEUE`] by
/// default). When the application does not read and it fills, the client stops taking in
/// anything new from the server — frames, outbox retries, reconnecting — until the
/// application has read; nothing is lost meanwhile, because an event is only produced once
/// its change is stored, and what the client has not taken in yet stays on the server (which
/// may close the unread connection; the client then reconnects and resyncs once read).
///
/// Commands ([`crate::Client`]'s methods) are always served, also while the queue is full: a
/// task that awaits a command and reads events only between commands never waits for itself.
/// While the queue is full a command does only its own work (the follow-up syncing and
/// posting that normally comes after each input waits until the application has read). The
/// events produced meanwhile — by commands, and by a step that produced more than the queue
/// holds (a sync of a long backlog is one step) — wait beyond the capacity, in order, up to
/// [`crate::ClientConfig::event_backlog`] ([`crate::EVENT_BACKLOG`] by default).
///
/// # Overflow
///
/// Past that cap, events are not kept: the application reads, after the last one kept, one
/// [`Event::EventsDropped`] counting those left out. What they reported is stored (history,
/// members and statuses show it); only the notifications are gone, so an application that
/// reads one should re-read what it shows. When the backlog overflows, the client also drops
/// its connection and refuses to make one — commands that need the server fail with
/// [`crate::ClientError::Transport`] — until the application has taken the marker itself
/// (from [`Events::next`] or [`Events::try_next`]); then it reconnects and resyncs, and what
/// the server still held arrives as events again.
///
/// # Security warnings
///
/// The security warnings ([`crate::is_security_warning`]: [`Event::KeyChanged`],
/// [`Event::GroupRejected`], [`Event::GroupBehind`], [`Event::SyncRefused`],
/// [`Event::OrderWarning`], [`Event::Removed`]) are not left out with the rest, so a server
/// cannot hide a key substitution behind a flood of cheap events (messages that fail
/// verification, which are not warnings of this kind). Those that come while the backlog
/// has overflowed wait in a list of their own, read right after the marker, in the order
/// they came: each repeat once (a key change per member of a group, the others per group; a
/// repeat is counted in the marker), at most [`crate::WARNING_BACKLOG`]. Should more distinct
/// ones come, those beyond are counted in the marker like any other event — a key change
/// then shows only in the safety numbers, so an application that reads an
/// [`Event::EventsDropped`] should tell the person that warnings may be among what it missed.
/// So the events held never exceed the capacity, the cap, the marker and
/// [`crate::WARNING_BACKLOG`], whatever the server sends.
///
/// An application that shows no events as they come (a scripted command) can have a
/// [`crate::WarningCollector`] read them for it, keeping only the warnings: then the queue
/// never fills, however long the catch-up.
///
/// An application that does not want events drops its `Events`: the client goes on, and
/// discards them.
///
/// After [`crate::Client::shutdown`], every event produced before it can still be read; then
/// [`Events::next`] returns `None`.
pub struct Events {
    rx: mpsc::Receiver<Event>,
    backlog: Backlog,
    /// Signalled when this takes a gap's marker, or is dropped ([`EventSink::move_one`]).
    gap_taken: Arc<Notify>,
}

impl Drop for Events {
    /// Nobody reads any more: what waits is dropped, and the background task stops waiting
    /// for this to take a marker.
    fn drop(&mut self) {
        lock(&self.backlog).clear();
        self.gap_taken.notify_one();
    }
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}

impl Events {
    /// The next event; `None` once the client has shut down and every event was read.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.take_ready() {
                return Some(event);
            }
            match self.rx.recv().await {
                Some(event) => return Some(event),
                // Shut down: what is left waits in the backlog (taken on the next turn).
                None if lock(&self.backlog).is_empty() => return None,
                None => continue,
            }
        }
    }

    /// An event if one is ready, without waiting.
    pub fn try_next(&mut self) -> Option<Event> {
        self.take_ready()
    }

    /// The oldest event ready: in the channel, or, once the channel is empty, at the head of
    /// the backlog. The channel is looked at again under the backlog's lock, so an event the
    /// background task moved meanwhile is taken before the ones behind it.
    fn take_ready(&mut self) -> Option<Event> {
        if let Ok(event) = self.rx.try_recv() {
            return Some(event);
        }
        let mut backlog = lock(&self.backlog);
        match self.rx.try_recv() {
            Ok(event) => Some(event),
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => {
                let had_gap = backlog.gap.is_some();
                let event = backlog.take();
                if had_gap && backlog.gap.is_none() {
                    // The marker is read: the client may take in new input again.
                    self.gap_taken.notify_one();
                }
                event
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confide_protocol::GroupId;

    fn joined(n: u8) -> Event {
        Event::Joined {
            group: GroupId([n; 16]),
        }
    }

    fn group_of(event: Option<Event>) -> Option<u8> {
        match event {
            Some(Event::Joined { group }) => Some(group.0[0]),
            _ => None,
        }
    }

    #[tokio::test]
    async fn events_beyond_the_capacity_wait_in_order_and_none_is_lost() {
        let (sink, mut events) = channel(2, 16);
        for n in 0..5 {
            sink.push(joined(n));
        }
        assert!(
            sink.is_backed_up(),
            "three events did not fit: input must wait"
        );
        // Read straight from the backlog once the channel is empty, and moved by the task.
        assert_eq!(group_of(events.try_next()), Some(0));
        sink.move_one().await;
        assert_eq!(group_of(events.next().await), Some(1));
        assert_eq!(group_of(events.next().await), Some(2));
        assert_eq!(group_of(events.try_next()), Some(3));
        // Behind the waiting 4, a new event waits too, though the channel has room.
        sink.push(joined(5));
        assert!(sink.is_backed_up());
        assert_eq!(group_of(events.next().await), Some(4));
        assert_eq!(group_of(events.next().await), Some(5));
        assert!(!sink.is_backed_up());
        sink.push(joined(6));
        assert!(
            !sink.is_backed_up(),
            "with room and nothing waiting, it goes straight in"
        );
        assert_eq!(group_of(events.try_next()), Some(6));
        assert_eq!(group_of(events.try_next()), None);
    }

    #[tokio::test]
    async fn a_full_backlog_keeps_no_more_and_counts_what_it_left_out() {
        let (sink, mut events) = channel(2, 3);
        for n in 0..10 {
            sink.push(joined(n));
        }
        assert_eq!(sink.backlog_len(), 4, "three events and the marker wait");
        assert!(sink.has_overflowed());
        let mut got = Vec::new();
        while let Some(event) = events.try_next() {
            got.push(event);
            // While the application has not reached the marker, nothing more is kept.
            if sink.has_overflowed() {
                sink.push(joined(99));
            }
        }
        let kept: Vec<Option<u8>> = got[..5]
            .iter()
            .cloned()
            .map(|e| group_of(Some(e)))
            .collect();
        assert_eq!(kept, vec![Some(0), Some(1), Some(2), Some(3), Some(4)]);
        // 5..10 left out, and the five pushed while the application read.
        assert_eq!(got[5..], [Event::EventsDropped { count: 10 }]);
        assert!(!sink.has_overflowed() && !sink.is_backed_up());
        // Caught up: events are kept again.
        sink.push(joined(7));
        assert_eq!(group_of(events.try_next()), Some(7));
    }

    fn key_changed(group: u8, user: u8) -> Event {
        Event::KeyChanged {
            group: GroupId([group; 16]),
            user: confide_protocol::UserId([user; 16]),
            display_name: format!("user {user}"),
        }
    }

    /// The attack: a flood of cheap events fills the backlog, and a key substitution
    /// comes behind it. The warning is read, right after the marker; its repeat and the
    /// flood are counted.
    #[tokio::test]
    async fn a_key_change_behind_a_flood_is_kept_after_the_marker() {
        let (sink, mut events) = channel(2, 3);
        for n in 0..50 {
            sink.push(joined(n));
        }
        sink.push(key_changed(1, 7));
        sink.push(key_changed(1, 7));
        sink.push(key_changed(2, 7));
        for n in 50..100 {
            sink.push(joined(n));
        }
        let mut got = Vec::new();
        while let Some(event) = events.try_next() {
            got.push(event);
        }
        assert_eq!(got.len(), 2 + 3 + 1 + 2, "{got:?}");
        assert!(got[..5].iter().all(|e| matches!(e, Event::Joined { .. })));
        // 95 of the flood and the repeated key change were left out.
        assert_eq!(got[5], Event::EventsDropped { count: 96 });
        assert_eq!(got[6..], [key_changed(1, 7), key_changed(2, 7)]);
        assert!(!sink.has_overflowed() && !sink.is_backed_up());
    }

    /// Even the warnings' own list is bounded, and what it could not keep is counted.
    #[tokio::test]
    async fn warnings_beyond_their_bound_are_counted() {
        let (sink, mut events) = channel(1, 1);
        sink.push(joined(0));
        sink.push(joined(1));
        for user in 0..=u8::MAX {
            for group in 0..5 {
                sink.push(key_changed(group, user));
            }
        }
        let mut got = Vec::new();
        while let Some(event) = events.try_next() {
            got.push(event);
        }
        let distinct = 256 * 5;
        assert_eq!(got.len(), 2 + 1 + WARNING_BACKLOG);
        assert_eq!(
            got[2],
            Event::EventsDropped {
                count: (distinct - WARNING_BACKLOG) as u64
            }
        );
    }

    /// The overflow lasts until the application has read the marker, not until the task
    /// has moved the events before it: a slow reader does not reconnect with a queue full.
    #[tokio::test]
    async fn the_overflow_ends_only_when_the_application_reads_the_marker() {
        let (sink, mut events) = channel(2, 2);
        for n in 0..10 {
            sink.push(joined(n));
        }
        // The application reads the channel's two; the task moves the backlog's two.
        assert_eq!(group_of(events.next().await), Some(0));
        assert_eq!(group_of(events.next().await), Some(1));
        sink.move_one().await;
        sink.move_one().await;
        assert!(sink.has_overflowed(), "the marker is not read yet");
        // Nothing more can move: the task waits for the application.
        let waited =
            tokio::time::timeout(std::time::Duration::from_millis(50), sink.move_one()).await;
        assert!(
            waited.is_err(),
            "the task went on before the marker was read"
        );
        assert!(sink.has_overflowed());
        assert_eq!(group_of(events.next().await), Some(2));
        assert!(sink.has_overflowed(), "the marker is not read yet");
        assert_eq!(group_of(events.next().await), Some(3));
        assert!(sink.has_overflowed(), "the marker is not read yet");
        assert_eq!(events.next().await, Some(Event::EventsDropped { count: 6 }));
        assert!(!sink.has_overflowed() && !sink.is_backed_up());
        // The task's wait ends once the marker is read.
        tokio::time::timeout(std::time::Duration::from_secs(5), sink.move_one())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn after_shutdown_the_backlog_is_read_then_the_stream_ends() {
        let (sink, mut events) = channel(1, 16);
        for n in 0..3 {
            sink.push(joined(n));
        }
        drop(sink);
        let mut got = Vec::new();
        while let Some(event) = events.next().await {
            got.push(group_of(Some(event)));
        }
        assert_eq!(got, vec![Some(0), Some(1), Some(2)]);
    }

    #[tokio::test]
    async fn a_dropped_receiver_never_blocks_the_sender() {
        let (sink, events) = channel(1, 16);
        sink.push(joined(0));
        sink.push(joined(1));
        drop(events);
        // Moving fails and drops the backlog instead of waiting for a reader that is gone.
        sink.move_one().await;
        assert!(!sink.is_backed_up());
        sink.push(joined(2));
        assert!(!sink.is_backed_up());
    }
}
