//! # confide-wasm-tests
//!
//! Confide's protocol and client core in a real browser. The tests run in headless Chromium
//! under `wasm-bindgen-test-runner`, and `cargo xtask test` installs the tools and runs them
//! (README, "Running the tests"): `tests/browser.rs` checks the protocol's primitives in the page,
//! and `tests/core.rs` has three `ClientCore`s make a group, exchange sender keys and talk through
//! an in-page relay that only ever holds ciphertext. On native targets this crate is empty,
//! so `cargo test --workspace` builds it in a moment and runs none of its tests.
//!
//! With the `size-probe` feature, on wasm32, the library exports through wasm-bindgen the
//! calls a browser client makes into the protocol (`src/size_probe.rs`) and into the client
//! core, a `ClientCore` over a `MemoryStore` (`src/client_probe.rs`). `cargo xtask wasm-size`
//! builds it as an optimised cdylib and reports its compressed size: without exports the linker
//! would drop nearly all of the protocol and the figure would mean nothing.

#[cfg(all(feature = "size-probe", target_arch = "wasm32"))]
pub mod client_probe;
#[cfg(all(feature = "size-probe", target_arch = "wasm32"))]
pub mod size_probe;
