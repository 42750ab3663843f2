//! The platform under a test core: a clock the test controls, seeded randomness, and a record
//! of every event the application was handed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chacha20::ChaCha20Rng;
use confide_client_core::{ChatMessage, Event, Host};
use confide_protocol::Timestamp;
use rand_core::{Rng as _, SeedableRng as _};

/// Where test clocks start, in milliseconds since the Unix epoch (January 2027).
pub const T0: u64 = 1_800_000_000_000;

/// A clock shared by the relay and the devices of one test. A ticking clock moves on a
/// millisecond at every reading, so time passes as the test goes on, the same way for
/// everyone, and no two readings are equal; a fixed one stays where [`Clock::set`] puts it.
#[derive(Clone, Debug)]
pub struct Clock {
    now: Arc<AtomicU64>,
    /// Milliseconds added at every reading.
    tick: u64,
}

impl Clock {
    /// A clock at `start` that moves on a millisecond at every reading.
    pub fn ticking(start: u64) -> Clock {
        Clock {
            now: Arc::new(AtomicU64::new(start)),
            tick: 1,
        }
    }

    /// A clock at `start` that moves only when the test sets it.
    pub fn fixed(start: u64) -> Clock {
        Clock {
            now: Arc::new(AtomicU64::new(start)),
            tick: 0,
        }
    }

    /// The time now (then moved on by the tick).
    pub fn now(&self) -> Timestamp {
        Timestamp(self.now.fetch_add(self.tick, Ordering::Relaxed))
    }

    /// Sets the time, for everyone who shares this clock.
    pub fn set(&self, millis: u64) {
        self.now.store(millis, Ordering::Relaxed);
    }
}

/// The events one core handed its application, in order. Clones share the record.
#[derive(Clone, Debug, Default)]
pub struct Events(Arc<Mutex<Vec<Event>>>);

impl Events {
    /// Every event so far.
    pub fn all(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }

    /// The messages the application was handed as new ([`Event::Message`]), in order.
    pub fn shown(&self) -> Vec<ChatMessage> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|event| match event {
                Event::Message(m) => Some(m.clone()),
                _ => None,
            })
            .collect()
    }

    fn push(&self, event: Event) {
        self.0.lock().unwrap().push(event);
    }
}

/// A [`Host`] for tests: the given clock, a ChaCha20 generator seeded with `[seed; 32]`, and
/// an [`Events`] record.
#[derive(Debug)]
pub struct TestHost {
    clock: Clock,
    rng: ChaCha20Rng,
    events: Events,
}

impl TestHost {
    /// A host on `clock` whose randomness is seeded with `[seed; 32]`, recording into `events`.
    pub fn new(clock: Clock, seed: u8, events: Events) -> TestHost {
        TestHost {
            clock,
            rng: ChaCha20Rng::from_seed([seed; 32]),
            events,
        }
    }
}

impl Host for TestHost {
    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn fill_random(&mut self, out: &mut [u8]) {
        self.rng.fill_bytes(out);
    }

    fn event(&mut self, event: Event) {
        self.events.push(event);
    }
}
