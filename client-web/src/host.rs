//! [`WebHost`]: the core's [`Host`] in a browser worker. The clock is `Date.now()`, randomness is
//! `crypto.getRandomValues` (through getrandom's `wasm_js` backend, which reaches it through
//! `globalThis`, so it works in workers as in pages), and events go into a queue that the
//! driver's forwarding task drains into the JavaScript callback ([`crate::driver`]): the callback
//! never runs inside a step of the core.

use confide_client_core::{Event, Host};
use confide_protocol::Timestamp;
use futures_channel::mpsc::UnboundedSender;

use crate::dto::ConnectionState;

/// What the core and its driver hand to the application, in order.
#[derive(Debug)]
pub enum Output {
    /// An event of the core (boxed: a message event is far larger than a connection state, and
    /// the queue holds many).
    Event(Box<Event>),
    /// The connection changed (the driver's summary of it, [`crate::driver`]).
    Connection(ConnectionState),
}

/// The browser under the core: `Date.now()`, `crypto.getRandomValues` and the output queue.
#[derive(Debug)]
pub struct WebHost {
    /// Where events go; the forwarding task hands them to the JavaScript callback.
    out: UnboundedSender<Output>,
}

impl WebHost {
    /// A host whose events go to `out`.
    pub fn new(out: UnboundedSender<Output>) -> WebHost {
        WebHost { out }
    }
}

/// The wall clock, in milliseconds since the Unix epoch.
pub fn now() -> Timestamp {
    let ms = js_sys::Date::now();
    // `Date.now()` is a whole, non-negative number of milliseconds below 2^53 on any real
    // clock; a clock before 1970 counts as 1970 (times only order messages and expiries).
    Timestamp(if ms > 0.0 { ms as u64 } else { 0 })
}

/// Whether the browser gives cryptographic randomness here. Checked before a core is started,
/// so that [`WebHost::fill_random`] can rely on it.
pub fn randomness_available() -> bool {
    getrandom::fill(&mut [0u8; 8]).is_ok()
}

/// A random number from the browser's generator (for the reconnect jitter), 0 if it failed.
pub fn random_u32() -> u32 {
    let mut bytes = [0u8; 4];
    match getrandom::fill(&mut bytes) {
        Ok(()) => u32::from_le_bytes(bytes),
        Err(_) => 0,
    }
}

impl Host for WebHost {
    fn now(&self) -> Timestamp {
        now()
    }

    fn fill_random(&mut self, out: &mut [u8]) {
        if getrandom::fill(out).is_err() {
            // Unreachable in practice: a core is started only once `randomness_available()`
            // said yes, and Web Crypto does not stop working. If it ever did, going on would
            // make keys from zeros: stop this call with a JavaScript exception instead.
            wasm_bindgen::throw_str("crypto.getRandomValues failed: no randomness for keys");
        }
    }

    fn event(&mut self, event: Event) {
        // Unbounded, so it never waits: the forwarding task hands each event to the callback
        // (a synchronous call) as soon as the page's event loop turns. If the forwarding task
        // is gone (the profile was locked), the event has nobody to go to.
        let _ = self.out.unbounded_send(Output::Event(Box::new(event)));
    }
}
