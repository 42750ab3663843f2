//! `cargo xtask test`: every test of the project, the README's one test command and what CI
//! runs. In order: the tools (installed if missing), `cargo test --workspace`, the end-to-end
//! suite again on PostgreSQL ([`END_TO_END_CRATE`], [`STORAGE_VAR`]), the wasm32 builds
//! of the crates a browser client links ([`WASM_CRATES`]), the browser tests in headless
//! Chromium ([`BROWSER_TEST_CRATE`]), the web app's build (`cargo xtask web`, with the wasm of
//! [`WEB_TEST_PROFILE`]) and its Playwright tests against the real server ([`crate::webtest`]).
//! Any failure, a missing browser included, stops it with a non-zero exit; nothing is skipped.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::cmd::{self, TestCounts};
use crate::tools::{self, CHROMEDRIVER, WASM_TARGET};
use crate::{web, webtest};

/// The crates that must build for `wasm32-unknown-unknown`: what a browser client links.
pub const WASM_CRATES: &[&str] = &["confide-protocol", "confide-client-core"];

/// The end-to-end suite (`tests/`), which runs a second time on PostgreSQL.
pub const END_TO_END_CRATE: &str = "confide-tests";

/// Set to `postgres` for the end-to-end suite's second run (`confide_tests::TEST_STORAGE_VAR`);
/// PostgreSQL and NATS are named by `CONFIDE_TEST_POSTGRES` and `CONFIDE_TEST_NATS` (the local
/// services when unset), and tests fail when they cannot be reached.
pub const STORAGE_VAR: &str = "CONFIDE_TEST_STORAGE";

/// The crate of wasm-bindgen tests that run in headless Chromium (`wasm-tests/`).
pub const BROWSER_TEST_CRATE: &str = "confide-wasm-tests";

/// The wasm profile of the web app the tests run against: the release profile itself. Measured
/// (2 shared cores, the size probe that links all of client-core): a thin-LTO profile with 16
/// codegen units links in 36 s where the fat-LTO `wasm-release` takes 29 s, and a second profile
/// would compile every dependency a second time; so the tests run the wasm that ships.
pub const WEB_TEST_PROFILE: &str = web::PROFILE;

/// What `wasm-bindgen-test-runner` prints once it drives Chromium through ChromeDriver: seen,
/// it proves the browser tests ran in the browser and not somewhere else.
const IN_CHROMIUM: &str = "Running headless tests in Chrome";

/// Runs every test; see the module documentation.
pub fn run(root: &Path) -> Result<()> {
    let mut timings: Vec<(&str, Duration)> = Vec::new();

    let start = Instant::now();
    tools::ensure_wasm_target()?;
    tools::ensure_browser()?;
    let wasm_bindgen = tools::ensure_wasm_bindgen(root)?;
    timings.push(("tools", start.elapsed()));

    let start = Instant::now();
    let native = cmd::run_tests(cmd::cargo(root).args(["test", "--workspace"]), |_| {})?;
    timings.push(("cargo test --workspace", start.elapsed()));

    // The end-to-end suite again, with every server on PostgreSQL instead of sled.
    let start = Instant::now();
    let on_postgres = cmd::run_tests(
        cmd::cargo(root)
            .args(["test", "-p", END_TO_END_CRATE])
            .env(STORAGE_VAR, "postgres"),
        |_| {},
    )?;
    timings.push(("end-to-end on PostgreSQL", start.elapsed()));
    let native = TestCounts {
        passed: native.passed + on_postgres.passed,
        failed: native.failed + on_postgres.failed,
    };

    let start = Instant::now();
    let mut build = cmd::cargo(root);
    build.args(["build", "--target", WASM_TARGET]);
    for krate in WASM_CRATES {
        build.args(["-p", krate]);
    }
    cmd::run(&mut build)?;
    timings.push(("wasm32 builds", start.elapsed()));

    let start = Instant::now();
    let mut in_chromium = false;
    let mut browser = cmd::cargo(root);
    browser
        .args(["test", "-p", BROWSER_TEST_CRATE, "--target", WASM_TARGET])
        .env(
            "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER",
            &wasm_bindgen.test_runner,
        )
        .env("CHROMEDRIVER", CHROMEDRIVER);
    let browser_counts = cmd::run_tests(&mut browser, |line| {
        in_chromium |= line.contains(IN_CHROMIUM);
    })?;
    timings.push(("browser tests", start.elapsed()));
    if !in_chromium {
        bail!(
            "the browser tests did not say they ran in Chromium (no `{IN_CHROMIUM}` line): \
             is `wasm_bindgen_test_configure!(run_in_browser)` still in {BROWSER_TEST_CRATE}?"
        );
    }
    if browser_counts.passed == 0 {
        bail!("no browser test ran: {BROWSER_TEST_CRATE} must test something in Chromium");
    }

    let start = Instant::now();
    let built = web::build(root, WEB_TEST_PROFILE)?;
    timings.push(("web build", start.elapsed()));

    let start = Instant::now();
    let web_counts = webtest::run(root, &built.dir)?;
    timings.push(("web tests", start.elapsed()));

    let timing: Vec<String> = timings
        .iter()
        .map(|(what, took)| format!("{what} {:.1} s", took.as_secs_f64()))
        .collect();
    println!("xtask: {}", timing.join(", "));
    println!(
        "xtask: {} native, {} browser and {} web tests passed (wasm-bindgen {})",
        native.passed, browser_counts.passed, web_counts.passed, wasm_bindgen.version
    );
    let all = TestCounts {
        passed: native.passed + browser_counts.passed + web_counts.passed,
        failed: native.failed + browser_counts.failed + web_counts.failed,
    };
    println!("tests: {} passed, {} failed", all.passed, all.failed);
    Ok(())
}

/// `cargo xtask test-web`: only the web app's build and its Playwright tests (what the last two
/// steps of [`run`] do), for work on the web app.
pub fn run_web(root: &Path) -> Result<()> {
    let start = Instant::now();
    tools::ensure_browser()?;
    let built = web::build(root, WEB_TEST_PROFILE)?;
    let build_took = start.elapsed();
    let start = Instant::now();
    let counts = webtest::run(root, &built.dir)?;
    println!(
        "xtask: web build {:.1} s, web tests {:.1} s",
        build_took.as_secs_f64(),
        start.elapsed().as_secs_f64()
    );
    println!("tests: {} passed, {} failed", counts.passed, counts.failed);
    Ok(())
}
