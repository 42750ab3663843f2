//! The web tests of `cargo xtask test`: Playwright (`web/tests/`) in Debian's Chromium against
//! the debug `confide-server` serving `target/web/`, with the debug `confide` CLI
//! (`CONFIDE_CLI_BIN`) for the tests that need a second person. The run's JSON report is read back and the
//! run fails unless at least one test passed, none was skipped or flaky, and every test that
//! used a browser says it was [`CHROMIUM`] (the fixtures record it as a `browser` annotation).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::cmd;
use crate::tools::{self, CHROMIUM};

/// What the web tests counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WebCounts {
    /// Tests that passed (Playwright's `expected`).
    pub passed: u64,
    /// Tests that failed (`unexpected`).
    pub failed: u64,
}

/// Runs the Playwright tests against `web_dir` and checks the report; see the module
/// documentation.
pub fn run(root: &Path, web_dir: &Path) -> Result<WebCounts> {
    let target = tools::target_dir(root)?;
    cmd::run(cmd::cargo(root).args(["build", "-p", "confide-server", "-p", "confide-cli"]))?;
    let server = target.join("debug").join("confide-server");
    // The member tests play the facilitator with the CLI.
    let cli = target.join("debug").join("confide");
    let report = target.join("web-tests.json");
    if report.exists() {
        std::fs::remove_file(&report).with_context(|| format!("removing {}", report.display()))?;
    }
    let web = root.join("web");
    let playwright = web.join("node_modules").join(".bin").join("playwright");
    let status = cmd::run(
        Command::new(&playwright)
            .current_dir(&web)
            .args(["test", "--reporter=json,list"])
            .env("PLAYWRIGHT_JSON_OUTPUT_FILE", &report)
            .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
            .env("CONFIDE_SERVER_BIN", &server)
            .env("CONFIDE_CLI_BIN", &cli)
            .env("CONFIDE_WEB_DIR", web_dir)
            .env("CONFIDE_TARGET_DIR", &target),
    );
    // The report says more than the exit status, so it is read whether or not the run failed.
    let text = std::fs::read_to_string(&report);
    let checked = text
        .with_context(|| format!("Playwright wrote no report at {}", report.display()))
        .and_then(|text| check_report(&text));
    match (status, checked) {
        (Ok(()), Ok(counts)) => Ok(counts),
        (Err(error), Ok(counts)) => Err(error.context(format!(
            "{} web tests passed, {} failed",
            counts.passed, counts.failed
        ))),
        (Ok(()), Err(error)) => Err(error),
        (Err(run), Err(report)) => Err(run.context(format!("{report:#}"))),
    }
}

/// Checks a Playwright JSON report: see the module documentation.
pub fn check_report(text: &str) -> Result<WebCounts> {
    let report: Value = serde_json::from_str(text).context("parsing Playwright's JSON report")?;
    let stats = &report["stats"];
    let count = |name: &str| -> Result<u64> {
        stats[name]
            .as_u64()
            .with_context(|| format!("the Playwright report has no stats.{name}"))
    };
    let counts = WebCounts {
        passed: count("expected")?,
        failed: count("unexpected")?,
    };
    let skipped = count("skipped")?;
    let flaky = count("flaky")?;
    if let Some(errors) = report["errors"].as_array().filter(|e| !e.is_empty()) {
        bail!("Playwright reported errors outside any test: {errors:?}");
    }
    if counts.failed > 0 {
        bail!("{} web tests failed", counts.failed);
    }
    if skipped > 0 {
        bail!("{skipped} web tests were skipped: the web tests are never skipped");
    }
    if flaky > 0 {
        bail!("{flaky} web tests were flaky (failed, then passed): a flaky test is a failing test");
    }
    if counts.passed == 0 {
        bail!("no web test ran: web/tests must test something in Chromium");
    }
    let mut browsers = Vec::new();
    collect_browsers(&report["suites"], &mut browsers);
    if browsers.is_empty() {
        bail!(
            "no web test said which browser it ran in (the `browser` annotation of \
             web/tests/fixtures.ts): did the tests stop using its context?"
        );
    }
    if let Some(other) = browsers
        .iter()
        .find(|b| !b.starts_with(&format!("{CHROMIUM} ")))
    {
        bail!("a web test ran in {other:?}, not in {CHROMIUM}");
    }
    Ok(counts)
}

/// Every `browser` annotation anywhere under `value`.
fn collect_browsers(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Array(items) => {
            for item in items {
                collect_browsers(item, found);
            }
        }
        Value::Object(object) => {
            if object.get("type").and_then(Value::as_str) == Some("browser")
                && let Some(description) = object.get("description").and_then(Value::as_str)
            {
                found.push(description.to_owned());
            }
            for (_, item) in object {
                collect_browsers(item, found);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(expected: u64, unexpected: u64, skipped: u64, flaky: u64, browser: &str) -> String {
        serde_json::json!({
            "suites": [{
                "title": "smoke.spec.ts",
                "specs": [{
                    "title": "loads",
                    "tests": [{
                        "annotations": [],
                        "results": [{
                            "status": "passed",
                            "annotations": [{"type": "browser", "description": browser}]
                        }]
                    }]
                }]
            }],
            "errors": [],
            "stats": {"expected": expected, "unexpected": unexpected, "skipped": skipped, "flaky": flaky}
        })
        .to_string()
    }

    const CHROMIUM_156: &str = "/usr/bin/chromium chromium 156.0.8078.114";

    #[test]
    fn a_clean_run_in_debian_chromium_is_counted() {
        assert_eq!(
            check_report(&report(3, 0, 0, 0, CHROMIUM_156)).unwrap(),
            WebCounts {
                passed: 3,
                failed: 0
            }
        );
    }

    #[test]
    fn failed_skipped_flaky_empty_or_elsewhere_runs_fail() {
        for (bad, why) in [
            (report(2, 1, 0, 0, CHROMIUM_156), "failed"),
            (report(2, 0, 1, 0, CHROMIUM_156), "skipped"),
            (report(2, 0, 0, 1, CHROMIUM_156), "flaky"),
            (report(0, 0, 0, 0, CHROMIUM_156), "no web test"),
            (
                report(
                    1,
                    0,
                    0,
                    0,
                    "/root/.cache/ms-playwright/chromium chromium 150",
                ),
                "not in /usr/bin/chromium",
            ),
            (report(1, 0, 0, 0, ""), "not in /usr/bin/chromium"),
        ] {
            let error = check_report(&bad).unwrap_err().to_string();
            assert!(error.contains(why), "{why}: {error}");
        }
        let no_annotation = report(1, 0, 0, 0, CHROMIUM_156).replace("\"browser\"", "\"other\"");
        let error = check_report(&no_annotation).unwrap_err().to_string();
        assert!(error.contains("which browser"), "{error}");
    }
}
