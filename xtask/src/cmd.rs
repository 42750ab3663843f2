//! Running other programs: echoing each command before it runs, turning a failure into an
//! error that names the command, and teeing a test run's output so its results can be counted.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// `cargo`, as the one running xtask (cargo sets `CARGO` for the programs it runs), so nested
/// builds use the same toolchain.
pub fn cargo(root: &Path) -> Command {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(program);
    command.current_dir(root);
    command
}

/// The command line as a person would type it (environment variables set for it first).
pub fn display(command: &Command) -> String {
    let mut words: Vec<String> = command
        .get_envs()
        .filter_map(|(key, value)| {
            Some(format!(
                "{}={}",
                key.to_string_lossy(),
                value?.to_string_lossy()
            ))
        })
        .collect();
    words.push(command.get_program().to_string_lossy().into_owned());
    words.extend(command.get_args().map(|a| a.to_string_lossy().into_owned()));
    words.join(" ")
}

/// Runs `command` with inherited output; an error if it cannot start or does not succeed.
pub fn run(command: &mut Command) -> Result<()> {
    let line = display(command);
    eprintln!("$ {line}");
    let status = command
        .status()
        .with_context(|| format!("cannot start `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// Runs `command` and returns its standard output, trimmed; an error if it fails.
pub fn output(command: &mut Command) -> Result<String> {
    let line = display(command);
    let out = command
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot start `{line}`"))?;
    if !out.status.success() {
        bail!("`{line}` failed ({})", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Whether `program` runs at all (found and executable), ignoring what it prints.
pub fn runs(program: impl AsRef<OsStr>, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// What a test run printed that xtask checks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TestCounts {
    /// Tests passed, over every `test result:` line.
    pub passed: u64,
    /// Tests failed, over every `test result:` line.
    pub failed: u64,
}

/// The passed and failed counts of one `test result: ok. 3 passed; 0 failed; …` line, as both
/// libtest and wasm-bindgen-test-runner print it.
pub fn parse_test_result(line: &str) -> Option<TestCounts> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let mut counts = TestCounts::default();
    for part in rest.split(';') {
        let mut words = part.split_whitespace().rev();
        let (Some(what), Some(number)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(number) = number.parse::<u64>() else {
            continue;
        };
        match what {
            "passed" => counts.passed = number,
            "failed" => counts.failed = number,
            _ => {}
        }
    }
    Some(counts)
}

/// Runs a test command, printing its standard output as it comes while adding up its
/// `test result:` lines and calling `watch` on each line. An error if the command fails.
pub fn run_tests(command: &mut Command, mut watch: impl FnMut(&str)) -> Result<TestCounts> {
    let line = display(command);
    eprintln!("$ {line}");
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{line}`"))?;
    let mut counts = TestCounts::default();
    if let Some(stdout) = child.stdout.take() {
        let mut out = std::io::stdout().lock();
        for text in BufReader::new(stdout).lines() {
            let text = text.context("reading the test output")?;
            writeln!(out, "{text}").context("writing the test output")?;
            if let Some(c) = parse_test_result(&text) {
                counts.passed += c.passed;
                counts.failed += c.failed;
            }
            watch(&text);
        }
    }
    let status = child
        .wait()
        .with_context(|| format!("waiting for `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtest_and_wasm_bindgen_result_lines_are_counted() {
        assert_eq!(
            parse_test_result(
                "test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.31s"
            ),
            Some(TestCounts {
                passed: 12,
                failed: 0
            })
        );
        assert_eq!(
            parse_test_result("test result: FAILED. 5 passed; 1 failed; 0 ignored; 0 filtered out"),
            Some(TestCounts {
                passed: 5,
                failed: 1
            })
        );
        assert_eq!(parse_test_result("test wasm::works ... ok"), None);
    }
}
