//! Confide in the browser: the client core (`confide_client_core`) over IndexedDB and the
//! browser's websocket, exported with wasm-bindgen for the web app's worker and the JavaScript
//! SDK (`web/src/sdk/`). On native targets the crate is empty: it only makes sense in a browser.

#![cfg(target_arch = "wasm32")]

use wasm_bindgen::prelude::wasm_bindgen;

// The core in the browser: its store (IndexedDB), host (clock, randomness, events) and link
// (the browser's websocket), the driver that owns it, the generic session over them, and the
// bindings.
pub mod api;
pub mod driver;
pub mod dto;
pub mod group_work;
pub mod host;
pub mod link;
pub mod session;
pub mod store;

pub use store::IdbStore;

/// This build's version (the workspace version), for the app's About screen and the worker's
/// hello to the tabs.
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
