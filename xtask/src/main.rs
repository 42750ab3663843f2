//! Confide's task runner (the cargo-xtask convention: `cargo xtask …` is an alias, in
//! `.cargo/config.toml`, for `cargo run --package xtask --`). The tests need more than
//! `cargo test` since the protocol also runs in a browser, and the web app needs a build:
//!
//! - `cargo xtask test`: the README's test command and what CI runs (`src/test.rs`), the web
//!   app's Playwright tests included (`src/webtest.rs`).
//! - `cargo xtask test-web`: only the web app's build and Playwright tests.
//! - `cargo xtask web`: builds the web app into `target/web/` (`src/web.rs`).
//! - `cargo xtask run`: builds the web app and runs the server in development mode serving it,
//!   the README's run command.
//! - `cargo xtask wasm-size`: the browser download's size, for BENCHMARKS.md (`src/size.rs`).
//! - `cargo xtask web-budgets`: the web app's budgets, for BENCHMARKS.md (`src/budgets.rs`).
//!
//! Everything it needs and does not find it installs, by name, from the package registries
//! (rustup's wasm32 target, Debian's Chromium and binaryen, wasm-bindgen-cli from crates.io, the
//! web app's npm packages from its lock file); it never downloads a browser build of its own.

mod budgets;
mod cmd;
mod screenshots;
mod size;
mod test;
mod tools;
mod web;
mod webtest;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

/// What `cargo xtask help` prints.
const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  test        install what the tests need if it is missing, then run them all: cargo test
              --workspace, the wasm32 builds, the browser tests in headless Chromium, the web
              app's build and its Playwright tests against the real server
  test-web    only the web app's build and its Playwright tests (the last steps of test)
  web         build the web app into target/web/ (the wasm of client-web, wasm-bindgen,
              wasm-opt, npm ci if needed, svelte-check, tsc, vite; then SRI, the asset
              manifest, .br/.gz copies and the release hash) and print its sizes
  run [ARGS]  build the web app, then run the release server in development mode serving it
              (cargo run --release -p confide-server -- --dev --web-dir target/web ARGS)
  screenshots copy the screenshots the web tests wrote (target/screenshots/) into
              docs/screenshots/ for the README
  wasm-size   build the wasm size probe optimised for the browser and print its size raw,
              gzip -9 and brotli 11 (the figure BENCHMARKS.md records)
  web-budgets build the web app and measure its budgets (download size, first load with a
              cold cache, unlock, a group of 10,000 messages) in Chromium against the release
              server; writes the \"Web app\" section of BENCHMARKS.md (--report-only: only
              the sizes again, with the samples of the last run)
  help        this text";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let root = workspace_root()?;
    match args.as_slice() {
        ["test"] => test::run(&root),
        ["test-web"] => test::run_web(&root),
        ["web"] => web::run(&root),
        ["run", extra @ ..] => web::serve(&root, extra),
        ["wasm-size"] => size::run(&root),
        ["screenshots"] => screenshots::run(&root),
        ["web-budgets"] => budgets::run(&root, true),
        ["web-budgets", "--report-only"] => budgets::run(&root, false),
        [] | ["help" | "--help" | "-h"] => {
            println!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown task or arguments {other:?}\n\n{USAGE}"),
    }
}

/// The workspace root: the parent of this crate's directory, fixed at compile time, so the
/// tasks work from any directory inside the workspace.
fn workspace_root() -> Result<PathBuf> {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .parent()
        .context("xtask/ has no parent directory")?
        .to_path_buf();
    if !root.join("Cargo.lock").is_file() {
        bail!(
            "{} holds no Cargo.lock: not the workspace root",
            root.display()
        );
    }
    Ok(root)
}
