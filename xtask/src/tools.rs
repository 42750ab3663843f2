//! The tools the wasm tests and the size measurement need, found or installed by name from the
//! package registries: rustup's wasm32 target, Debian's `chromium` and `chromium-driver`,
//! `wasm-bindgen-cli` of exactly the wasm-bindgen version in Cargo.lock, and Debian's
//! `binaryen` (wasm-opt) for the size measurement only.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::cmd;

/// The browser's compilation target.
pub const WASM_TARGET: &str = "wasm32-unknown-unknown";
/// Debian's Chromium.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Debian's ChromeDriver, which `wasm-bindgen-test-runner` drives Chromium through.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The Debian packages that provide [`CHROMIUM`] and [`CHROMEDRIVER`].
const BROWSER_PACKAGES: &[&str] = &["chromium", "chromium-driver"];
/// `wasm-opt`'s feature flags: the features rustc enables by default for the wasm32 target;
/// wasm-opt must accept them and may use them, as the browser does.
pub const WASM_OPT_FEATURES: &[&str] = &[
    "--enable-bulk-memory",
    "--enable-mutable-globals",
    "--enable-nontrapping-float-to-int",
    "--enable-sign-ext",
    "--enable-reference-types",
    "--enable-multivalue",
];
/// The Debian package that provides `wasm-opt`.
const BINARYEN_PACKAGE: &str = "binaryen";
/// The crate whose version `wasm-bindgen-cli` must match exactly: the test runner and the
/// `wasm-bindgen` macro share a format that changes between versions.
const WASM_BINDGEN_CRATE: &str = "wasm-bindgen";

/// Adds the wasm32 target to the current toolchain if it is missing.
pub fn ensure_wasm_target() -> Result<()> {
    let installed = cmd::output(Command::new("rustup").args(["target", "list", "--installed"]))
        .context("rustup is needed to add the wasm32 target (https://rustup.rs)")?;
    if installed.lines().any(|line| line.trim() == WASM_TARGET) {
        return Ok(());
    }
    cmd::run(Command::new("rustup").args(["target", "add", WASM_TARGET]))
}

/// Installs Debian's Chromium and ChromeDriver when either is missing, and checks that both are
/// there and that the driver runs. Missing afterwards is an error: the browser tests are never
/// skipped.
pub fn ensure_browser() -> Result<()> {
    let present = || Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists();
    if !present() {
        eprintln!("xtask: {CHROMIUM} or {CHROMEDRIVER} is missing; installing Debian's packages");
        if let Err(error) = apt_install(BROWSER_PACKAGES) {
            eprintln!("xtask: installing {BROWSER_PACKAGES:?} failed: {error:#}");
        }
    }
    for path in [CHROMIUM, CHROMEDRIVER] {
        if !Path::new(path).exists() {
            bail!(
                "{path} is missing, so the browser tests cannot run (they are never skipped): \
                 install Debian's packages {} (`apt-get install -y {}`)",
                BROWSER_PACKAGES.join(" and "),
                BROWSER_PACKAGES.join(" ")
            );
        }
    }
    if !cmd::runs(CHROMEDRIVER, &["--version"]) {
        bail!("{CHROMEDRIVER} is installed but does not run (`{CHROMEDRIVER} --version` fails)");
    }
    Ok(())
}

/// `wasm-opt` if it is installed, or after installing Debian's `binaryen` (15 MB, seconds);
/// `None` if neither works, and the caller says the figure is without it.
pub fn find_or_install_wasm_opt() -> Option<PathBuf> {
    if let Some(path) = find_in_path("wasm-opt") {
        return Some(path);
    }
    eprintln!("xtask: wasm-opt is missing; installing Debian's {BINARYEN_PACKAGE}");
    if let Err(error) = apt_install(&[BINARYEN_PACKAGE]) {
        eprintln!("xtask: installing {BINARYEN_PACKAGE} failed: {error:#}");
    }
    find_in_path("wasm-opt")
}

/// Cargo's target directory (it may be moved by `CARGO_TARGET_DIR` or configuration).
pub fn target_dir(root: &Path) -> Result<PathBuf> {
    let json =
        cmd::output(cmd::cargo(root).args(["metadata", "--format-version", "1", "--no-deps"]))?;
    let metadata: serde_json::Value =
        serde_json::from_str(&json).context("parsing `cargo metadata`")?;
    metadata["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .context("`cargo metadata` names no target directory")
}

/// `apt-get update` then `apt-get install -y PACKAGES`, through sudo unless running as root.
/// The update comes first because a fresh machine's package lists may be empty or stale.
fn apt_install(packages: &[&str]) -> Result<()> {
    let root = cmd::output(Command::new("id").arg("-u")).is_ok_and(|uid| uid == "0");
    let apt_get = |args: &[&str]| {
        let mut command = if root {
            let mut apt = Command::new("apt-get");
            apt.env("DEBIAN_FRONTEND", "noninteractive");
            apt
        } else {
            // sudo clears the environment, so the variable goes on its command line.
            let mut sudo = Command::new("sudo");
            sudo.args(["DEBIAN_FRONTEND=noninteractive", "apt-get"]);
            sudo
        };
        command.args(args);
        command
    };
    cmd::run(&mut apt_get(&["update"]))?;
    let mut install = apt_get(&["install", "-y"]);
    install.args(packages);
    cmd::run(&mut install)
}

/// The `wasm-bindgen` and `wasm-bindgen-test-runner` programs of the version in Cargo.lock.
#[derive(Debug, Clone)]
pub struct WasmBindgen {
    /// `wasm-bindgen`: post-processes a cdylib for the web (the size measurement).
    pub bindgen: PathBuf,
    /// `wasm-bindgen-test-runner`: cargo's runner for wasm32 test binaries.
    pub test_runner: PathBuf,
    /// Their version, equal to the `wasm-bindgen` crate's in Cargo.lock.
    pub version: String,
}

/// Finds `wasm-bindgen-cli` of exactly the wasm-bindgen version in Cargo.lock, or installs it
/// with `cargo install` (a few minutes of compiling, once per machine).
pub fn ensure_wasm_bindgen(root: &Path) -> Result<WasmBindgen> {
    let version = locked_version(root, WASM_BINDGEN_CRATE)?;
    if let Some(found) = find_wasm_bindgen(&version) {
        return Ok(found);
    }
    eprintln!(
        "xtask: wasm-bindgen-cli {version} (the wasm-bindgen version in Cargo.lock) is not \
         installed; installing it (compiles for a few minutes, once)"
    );
    let locked = cmd::run(cmd::cargo(root).args([
        "install",
        "--locked",
        "wasm-bindgen-cli",
        "--version",
        &format!("={version}"),
    ]));
    if let Err(error) = locked {
        // Its own lock file can name a dependency version the registry no longer serves (a
        // yanked release); resolving afresh within its requirements then still works.
        eprintln!("xtask: {error:#}; retrying without --locked");
        cmd::run(cmd::cargo(root).args([
            "install",
            "wasm-bindgen-cli",
            "--version",
            &format!("={version}"),
        ]))?;
    }
    find_wasm_bindgen(&version).with_context(|| {
        format!("wasm-bindgen-cli {version} is still not found after installing it")
    })
}

/// Where `cargo install` puts programs: `$CARGO_HOME/bin`, by default `~/.cargo/bin`.
fn cargo_bin_dir() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        return Some(PathBuf::from(home).join("bin"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo").join("bin"))
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// The `wasm-bindgen` pair of `version`: first where `cargo install` puts it, then on `PATH`.
fn find_wasm_bindgen(version: &str) -> Option<WasmBindgen> {
    let mut dirs: Vec<PathBuf> = cargo_bin_dir().into_iter().collect();
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.into_iter().find_map(|dir| {
        let bindgen = dir.join("wasm-bindgen");
        let test_runner = dir.join("wasm-bindgen-test-runner");
        let matches = |program: &Path, name: &str| {
            cmd::output(Command::new(program).arg("--version"))
                .is_ok_and(|out| out.split_whitespace().collect::<Vec<_>>() == [name, version])
        };
        (matches(&bindgen, "wasm-bindgen") && matches(&test_runner, "wasm-bindgen-test-runner"))
            .then(|| WasmBindgen {
                bindgen,
                test_runner,
                version: version.to_owned(),
            })
    })
}

#[derive(Deserialize)]
struct Lock {
    package: Vec<LockedPackage>,
}

#[derive(Deserialize)]
struct LockedPackage {
    name: String,
    version: String,
}

/// The one version of `name` in the workspace's Cargo.lock.
fn locked_version(root: &Path, name: &str) -> Result<String> {
    let path = root.join("Cargo.lock");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let lock: Lock =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let versions: Vec<String> = lock
        .package
        .into_iter()
        .filter(|p| p.name == name)
        .map(|p| p.version)
        .collect();
    match versions.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("Cargo.lock has no {name}: is the wasm-tests crate still a workspace member?"),
        many => bail!(
            "Cargo.lock has several versions of {name} ({}): the test runner can match only one",
            many.join(", ")
        ),
    }
}
