//! The [`Network`] a core dials to reach a [`SharedRelay`], and the [`Link`] it gets.

use std::time::Duration;

use confide_client_core::{ClientError, Link, Network, TransportError};
use confide_protocol::frames::{
    ClientFrame, DEFAULT_MAX_CLIENT_FRAME_BYTES, DEFAULT_MAX_SERVER_FRAME_BYTES, ServerFrame,
};

use crate::relay::{Conn, SERVER_NAME, SharedRelay};

/// What a core dials: a new connection to the relay.
#[derive(Clone, Debug)]
pub struct RelayNet(pub SharedRelay);

/// One connection to the relay.
#[derive(Debug)]
pub struct RelayLink {
    relay: SharedRelay,
    conn: Conn,
}

/// In a browser: lets the page's event loop run before going on, so the future is suspended on
/// a JavaScript promise, as it would be on a websocket or IndexedDB.
#[cfg(target_arch = "wasm32")]
async fn yield_now() {
    let resolved = js_sys::Promise::resolve(&wasm_bindgen::JsValue::UNDEFINED);
    wasm_bindgen_futures::JsFuture::from(resolved)
        .await
        .unwrap();
}

/// Natively there is no event loop to yield to: the relay answers at once.
#[cfg(not(target_arch = "wasm32"))]
async fn yield_now() {}

impl Network for RelayNet {
    type Link = RelayLink;

    async fn dial(&mut self) -> Result<RelayLink, ClientError> {
        yield_now().await;
        let conn = self.0.lock().dial();
        Ok(RelayLink {
            relay: self.0.clone(),
            conn,
        })
    }
}

impl RelayLink {
    /// Whether the relay has queued a frame this connection has not read yet.
    pub fn has_frames(&self) -> bool {
        !self.conn.queue.lock().unwrap().is_empty()
    }

    /// Takes every frame queued on this connection without handing it to the core: what the
    /// device would have received, for a test to deliver later in an order of its choosing.
    pub fn take_frames(&mut self) -> Vec<ServerFrame> {
        let texts: Vec<String> = self.conn.queue.lock().unwrap().drain(..).collect();
        texts
            .iter()
            .map(|text| ServerFrame::from_json(text, DEFAULT_MAX_SERVER_FRAME_BYTES).unwrap())
            .collect()
    }
}

impl Link for RelayLink {
    fn host(&self) -> &str {
        SERVER_NAME
    }

    async fn send(&mut self, frame: &ClientFrame) -> Result<(), TransportError> {
        yield_now().await;
        let text = frame.to_json()?;
        let frame = ClientFrame::from_json(&text, DEFAULT_MAX_CLIENT_FRAME_BYTES)?;
        let mut relay = self.relay.lock();
        relay.wire.push(text);
        relay.handle(&mut self.conn, frame);
        Ok(())
    }

    async fn recv(&mut self, _within: Duration) -> Result<Option<ServerFrame>, TransportError> {
        yield_now().await;
        // The relay answers every request as it is sent, so an empty queue is a wait that
        // would time out.
        let Some(text) = self.conn.queue.lock().unwrap().pop_front() else {
            return Ok(None);
        };
        Ok(Some(ServerFrame::from_json(
            &text,
            DEFAULT_MAX_SERVER_FRAME_BYTES,
        )?))
    }

    async fn close(self) {
        if let Some(device) = self.conn.device {
            self.relay.lock().closed(&device);
        }
    }
}
