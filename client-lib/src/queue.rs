//! The bounded queue of [`Event`]s between the background task and the application, and its
//! back-pressure.
//!
//! The core hands over events synchronously ([`confide_client_core::Host::event`]), only once
//! what they report is committed. The native host puts each into a bounded channel of
//! [`crate::ClientConfig::event_queue`] places; when the channel is full, into a *backlog* in
//! order. While the backlog is not empty the background task takes no new input from the
//! server (frames, outbox retries, reconnecting): it waits for the application to make room
//! and moves the backlog over, one event per freed place. So what is held is the channel's
//! capacity plus what one step produced — plus what the application's own commands produce
//! while it does not read, because commands are always served (see [`Events`]).
//!
//! The backlog sits behind a lock shared by the three parties: the host (pushing, on the
//! background task), the background task (moving it into the channel) and [`Events`] (taking
//! from it directly once the channel is empty, so that an application reading with
//! [`Events::try_next`], or after shutdown, never waits for the task and never sees an event
//! out of order). Every move between the backlog and the channel happens under that lock.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::{TryRecvError, TrySendError};

use confide_client_core::Event;

/// Events that did not fit into the channel, oldest first.
type Backlog = Arc<Mutex<VecDeque<Event>>>;

/// Locks the backlog. Nothing but `VecDeque` pushes and pops runs under the lock, which cannot
/// leave it half changed, so a poisoned lock still guards a consistent queue.
fn lock(backlog: &Mutex<VecDeque<Event>>) -> MutexGuard<'_, VecDeque<Event>> {
    backlog.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A new queue of `capacity` places (at least 1): the sending side for the background task
/// and its host, and the application's [`Events`].
pub(crate) fn channel(capacity: usize) -> (EventSink, Events) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let backlog = Backlog::default();
    (
        EventSink {
            tx,
            backlog: backlog.clone(),
        },
        Events { rx, backlog },
    )
}

/// The sending side: the native host's and the background task's. Clones share one queue.
#[derive(Clone)]
pub(crate) struct EventSink {
    tx: mpsc::Sender<Event>,
    backlog: Backlog,
}

impl EventSink {
    /// Queues `event` without waiting: into the channel if it has room and nothing waits
    /// before it, else at the end of the backlog. Dropped if the application dropped its
    /// [`Events`]: nobody listens, and what it reports is in the store.
    pub(crate) fn push(&self, event: Event) {
        let mut backlog = lock(&self.backlog);
        if !backlog.is_empty() {
            backlog.push_back(event);
            return;
        }
        match self.tx.try_send(event) {
            Ok(()) | Err(TrySendError::Closed(_)) => {}
            Err(TrySendError::Full(event)) => backlog.push_back(event),
        }
    }

    /// Whether events wait for room in the channel: then the background task takes no new
    /// input from the server.
    pub(crate) fn is_backed_up(&self) -> bool {
        !lock(&self.backlog).is_empty()
    }

    /// Waits for a free place in the channel and moves the oldest waiting event into it.
    /// Cancel-safe: an event moves only once the place is held. If the application dropped
    /// its [`Events`], the backlog is dropped with it.
    pub(crate) async fn move_one(&self) {
        match self.tx.reserve().await {
            Ok(permit) => {
                if let Some(event) = lock(&self.backlog).pop_front() {
                    permit.send(event);
                }
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
/// may close the unread connection; the client then reconnects and resyncs once read). So
/// memory stays bounded by the capacity plus what one step produced (a sync of a long backlog
/// is one step).
///
/// Commands ([`crate::Client`]'s methods) are always served, also while the queue is full: a
/// task that awaits a command and reads events only between commands never waits for itself.
/// The events those commands produce are kept beyond the capacity until read, so an
/// application that holds an `Events` it never reads and issues commands keeps their events;
/// one that does not want events drops its `Events`: the client goes on, and discards them.
///
/// After [`crate::Client::shutdown`], every event produced before it can still be read; then
/// [`Events::next`] returns `None`.
pub struct Events {
    rx: mpsc::Receiver<Event>,
    backlog: Backlog,
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
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => backlog.pop_front(),
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
        let (sink, mut events) = channel(2);
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
    async fn after_shutdown_the_backlog_is_read_then_the_stream_ends() {
        let (sink, mut events) = channel(1);
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
        let (sink, events) = channel(1);
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
