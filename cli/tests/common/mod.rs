//! Running the real `confide` binary as a person would: one profile directory per person,
//! the passphrase from the environment, and a fast key derivation so tests stay quick.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Output;

use confide_tests::TestServer;

/// The `confide` binary cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_confide");
/// Every test person's passphrase.
pub const PASSPHRASE: &str = "a long passphrase";

/// A person with their own profile directory.
pub struct Person {
    /// The profile directory.
    pub dir: PathBuf,
}

impl Person {
    /// Runs `confide --profile DIR ARGS…`.
    pub fn run(&self, args: &[&str]) -> Output {
        std::process::Command::new(BIN)
            .arg("--profile")
            .arg(&self.dir)
            .args(args)
            .env("CONFIDE_PASSPHRASE", PASSPHRASE)
            .env("CONFIDE_INSECURE_FAST_KDF", "1")
            .output()
            .unwrap()
    }

    /// Runs and expects success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "confide {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs with `--json` and expects success; returns the value printed.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }
}

/// `confide init` for `name` in `root/name`.
pub fn person(root: &Path, name: &str, server: &TestServer) -> Person {
    let p = Person {
        dir: root.join(name),
    };
    p.ok(&[
        "init",
        "--server",
        &server.url,
        "--pin",
        &server.pin,
        "--name",
        name,
    ]);
    p
}
