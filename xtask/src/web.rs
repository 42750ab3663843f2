//! `cargo xtask web`: builds the web app into `target/web/`, the directory `confide-server
//! --web-dir` serves. In order:
//!
//! 1. the tools: the wasm32 target and `wasm-bindgen-cli` (as for the browser tests), `wasm-opt`
//!    if it can be had, and Node ≥ [`MIN_NODE`] with npm;
//! 2. `cargo build -p confide-client-web --target wasm32-unknown-unknown` with a wasm profile
//!    ([`PROFILE`] unless the caller picks another);
//! 3. `wasm-bindgen --target web --typescript` into `web/src/wasm-pkg/` (generated, ignored by
//!    git), then `wasm-opt -Oz` on the wasm;
//! 4. `npm ci` when `web/node_modules` is older than `web/package-lock.json` (never a browser
//!    download: `PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1`);
//! 5. `npm run build`: svelte-check with warnings as errors, tsc, vite build into `web/dist/`;
//! 6. the post-processing ([`post_process`]): `integrity="sha384-…"` on every script, stylesheet
//!    and modulepreload of `index.html`; `asset-manifest.json` (`{"/path": {"sha256", "size"}}`,
//!    which the server checks every file against at startup); a `.br` (quality 11) and a `.gz`
//!    beside each file; `release-hash.txt`, the SHA-256 of the manifest's bytes, which names the
//!    release.
//!
//! Before any of it, the sources are checked for Svelte's raw-HTML tag ([`RAW_HTML`]): text is
//! only ever interpolated as text.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use sha2::{Digest as _, Sha256, Sha384};

use crate::cmd;
use crate::size::{brotli, gzip};
use crate::tools::{self, WASM_TARGET};

/// The crate compiled to wasm for the app.
pub const WEB_CRATE: &str = "confide-client-web";
/// Its library name: the wasm's file name and wasm-bindgen's output names.
const WEB_LIB: &str = "confide_client_web";
/// The profile of `cargo xtask web` and `cargo xtask run`: the release build (smallest code,
/// whole-program LTO; workspace Cargo.toml).
pub const PROFILE: &str = "wasm-release";
/// The npm package of the app, relative to the workspace root.
const WEB_DIR: &str = "web";
/// Where wasm-bindgen writes the module and its TypeScript declarations, relative to the root.
const WASM_PKG: &str = "web/src/wasm-pkg";
/// The crate of the passphrase rule, built as the create-profile screen's own wasm module.
const PASSPHRASE_CRATE: &str = "confide-passphrase";
/// Its library name.
const PASSPHRASE_LIB: &str = "confide_passphrase";
/// Where its wasm-bindgen output goes (inside [`WASM_PKG`], so generated and ignored alike).
const PASSPHRASE_PKG: &str = "web/src/wasm-pkg/passphrase";
/// The oldest Node that Vite 8 runs on (its `engines`: `^20.19.0 || >=22.12.0`).
pub const MIN_NODE: (u64, u64) = (20, 19);
/// Svelte's raw-HTML tag: never used, so untrusted text cannot become markup (and the Trusted
/// Types policy `svelte-trusted-html` only ever sees the compiler's own templates).
const RAW_HTML: &str = "{@html";
/// The files of `index.html` that get an `integrity` attribute: `<script src>` and these
/// `<link rel>` kinds (the browser checks SRI for exactly these).
const SRI_LINK_RELS: &[&str] = &["stylesheet", "modulepreload"];
/// The build's manifest, in the output directory.
pub const MANIFEST_FILE: &str = "asset-manifest.json";
/// The release hash (SHA-256 of the manifest's bytes, hex), in the output directory.
pub const RELEASE_HASH_FILE: &str = "release-hash.txt";

/// A finished build.
#[derive(Debug)]
pub struct Built {
    /// `target/web/`: what `--web-dir` takes.
    pub dir: PathBuf,
    /// SHA-256 of `asset-manifest.json`, hex.
    pub release_hash: String,
    /// Every served file with its sizes, by URL path.
    pub files: Vec<FileSizes>,
    /// How long each step took.
    pub timings: Vec<(&'static str, Duration)>,
}

/// One file of the build, raw and compressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSizes {
    /// Its URL path (`/assets/index-….js`).
    pub path: String,
    /// Bytes as served without compression.
    pub raw: usize,
    /// Bytes of the `.gz` sibling.
    pub gzip: usize,
    /// Bytes of the `.br` sibling.
    pub brotli: usize,
}

/// `cargo xtask web`: builds with [`PROFILE`] and prints the sizes.
pub fn run(root: &Path) -> Result<()> {
    let built = build(root, PROFILE)?;
    print_report(&built);
    Ok(())
}

/// `cargo xtask run ARGS…`: builds the app, then runs the release server in development mode
/// serving it, with `ARGS` passed on to the server.
pub fn serve(root: &Path, extra: &[&str]) -> Result<()> {
    let built = build(root, PROFILE)?;
    print_report(&built);
    let mut server = cmd::cargo(root);
    server
        .args([
            "run",
            "--release",
            "-p",
            "confide-server",
            "--",
            "--dev",
            "--web-dir",
        ])
        .arg(&built.dir)
        .args(extra);
    run_in_place(&mut server)
}

/// Runs `command` in place of xtask where the system allows (Unix `exec`; cargo run does the
/// same), so that Ctrl-C and SIGTERM reach the server alone and it shuts down gracefully while
/// the terminal waits for it.
#[cfg(unix)]
fn run_in_place(command: &mut Command) -> Result<()> {
    use std::os::unix::process::CommandExt as _;
    eprintln!("$ {}", cmd::display(command));
    let error = command.exec();
    Err(error).with_context(|| format!("cannot start `{}`", cmd::display(command)))
}

/// Runs `command` and waits for it, where exec is not available.
#[cfg(not(unix))]
fn run_in_place(command: &mut Command) -> Result<()> {
    cmd::run(command)
}

/// Builds the app with the wasm of `profile` into `target/web/`; see the module documentation.
pub fn build(root: &Path, profile: &str) -> Result<Built> {
    let mut timings: Vec<(&'static str, Duration)> = Vec::new();

    let start = Instant::now();
    ban_raw_html(&root.join(WEB_DIR).join("src"))?;
    tools::ensure_wasm_target()?;
    let wasm_bindgen = tools::ensure_wasm_bindgen(root)?;
    let wasm_opt = tools::find_or_install_wasm_opt();
    ensure_node()?;
    timings.push(("tools", start.elapsed()));

    let start = Instant::now();
    cmd::run(cmd::cargo(root).args([
        "build",
        "-p",
        WEB_CRATE,
        "--lib",
        "--target",
        WASM_TARGET,
        "--profile",
        profile,
    ]))?;
    timings.push(("wasm build", start.elapsed()));

    let start = Instant::now();
    let target_dir = tools::target_dir(root)?;
    let built_wasm = target_dir
        .join(WASM_TARGET)
        .join(profile)
        .join(format!("{WEB_LIB}.wasm"));
    let pkg = root.join(WASM_PKG);
    if pkg.exists() {
        std::fs::remove_dir_all(&pkg).with_context(|| format!("removing {}", pkg.display()))?;
    }
    cmd::run(
        Command::new(&wasm_bindgen.bindgen)
            .args([
                "--target",
                "web",
                "--typescript",
                "--remove-name-section",
                "--remove-producers-section",
                "--out-dir",
            ])
            .arg(&pkg)
            .arg(&built_wasm),
    )?;
    let pkg_wasm = pkg.join(format!("{WEB_LIB}_bg.wasm"));
    match &wasm_opt {
        Some(wasm_opt) => optimise(wasm_opt, &pkg_wasm)?,
        None => {
            eprintln!("xtask: wasm-opt was not found: the wasm is shipped as wasm-bindgen wrote it")
        }
    }
    timings.push(("wasm-bindgen + wasm-opt", start.elapsed()));

    let start = Instant::now();
    build_passphrase(
        root,
        profile,
        &target_dir,
        &wasm_bindgen.bindgen,
        wasm_opt.as_deref(),
    )?;
    timings.push(("passphrase wasm", start.elapsed()));

    let start = Instant::now();
    let web = root.join(WEB_DIR);
    if node_modules_stale(&web)? {
        cmd::run(
            npm(&web)
                .args(["ci", "--prefer-offline"])
                .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1"),
        )?;
    }
    timings.push(("npm ci", start.elapsed()));

    let start = Instant::now();
    cmd::run(npm(&web).args(["run", "build"]))?;
    timings.push(("npm run build", start.elapsed()));

    let start = Instant::now();
    let dir = target_dir.join("web");
    let (release_hash, files) = post_process(&web.join("dist"), &dir)?;
    timings.push(("post-process", start.elapsed()));

    Ok(Built {
        dir,
        release_hash,
        files,
        timings,
    })
}

/// Builds the passphrase rule (crate [`PASSPHRASE_CRATE`], feature `wasm`) as its own wasm
/// module into [`PASSPHRASE_PKG`]: the create-profile screen loads it with a dynamic import, so
/// zxcvbn's dictionaries never count towards the app's first load. `cargo rustc --crate-type
/// cdylib` keeps native builds of the crate free of a cdylib.
fn build_passphrase(
    root: &Path,
    profile: &str,
    target_dir: &Path,
    bindgen: &Path,
    wasm_opt: Option<&Path>,
) -> Result<()> {
    cmd::run(cmd::cargo(root).args([
        "rustc",
        "-p",
        PASSPHRASE_CRATE,
        "--lib",
        "--target",
        WASM_TARGET,
        "--profile",
        profile,
        "--features",
        "wasm",
        "--crate-type",
        "cdylib",
    ]))?;
    let built = target_dir
        .join(WASM_TARGET)
        .join(profile)
        .join(format!("{PASSPHRASE_LIB}.wasm"));
    let pkg = root.join(PASSPHRASE_PKG);
    cmd::run(
        Command::new(bindgen)
            .args([
                "--target",
                "web",
                "--typescript",
                "--remove-name-section",
                "--remove-producers-section",
                "--out-dir",
            ])
            .arg(&pkg)
            .arg(&built),
    )?;
    if let Some(wasm_opt) = wasm_opt {
        optimise(wasm_opt, &pkg.join(format!("{PASSPHRASE_LIB}_bg.wasm")))?;
    }
    Ok(())
}

/// Runs `wasm-opt -Oz` on `wasm` in place, keeping its output only if the exported tables keep
/// their element types. Seen with Debian 12's binaryen (wasm-opt 108): with two tables it exports
/// the function table under the name of wasm-bindgen's externref table, and the module then
/// fails to start in the browser; the wasm is then shipped unoptimised.
fn optimise(wasm_opt: &Path, wasm: &Path) -> Result<()> {
    let optimised = wasm.with_extension("opt.wasm");
    cmd::run(
        Command::new(wasm_opt)
            .arg("-Oz")
            .args(tools::WASM_OPT_FEATURES)
            .arg(wasm)
            .arg("-o")
            .arg(&optimised),
    )?;
    let before = exported_tables(&read(wasm)?)?;
    let after = exported_tables(&read(&optimised)?)?;
    if before == after {
        std::fs::rename(&optimised, wasm)
            .with_context(|| format!("replacing {}", wasm.display()))?;
    } else {
        eprintln!(
            "xtask: warning: wasm-opt changed the element types of the exported tables of {} \
             ({before:x?} became {after:x?}; 70 funcref, 6f externref), a wasm-opt bug; it is \
             shipped without wasm-opt (larger). A newer binaryen fixes it.",
            wasm.display()
        );
        std::fs::remove_file(&optimised)
            .with_context(|| format!("removing {}", optimised.display()))?;
    }
    Ok(())
}

/// Prints each step's time, each file's sizes and the totals.
pub fn print_report(built: &Built) {
    println!();
    println!(
        "{:<52} {:>10} {:>10} {:>10}",
        "file", "raw", "gzip", "brotli"
    );
    for file in &built.files {
        println!(
            "{:<52} {:>10} {:>10} {:>10}",
            file.path, file.raw, file.gzip, file.brotli
        );
    }
    let total = |size: fn(&FileSizes) -> usize| built.files.iter().map(size).sum::<usize>();
    println!(
        "{:<52} {:>10} {:>10} {:>10}",
        "total",
        total(|f| f.raw),
        total(|f| f.gzip),
        total(|f| f.brotli)
    );
    let timing: Vec<String> = built
        .timings
        .iter()
        .map(|(what, took)| format!("{what} {:.1} s", took.as_secs_f64()))
        .collect();
    println!("xtask: web: {}", timing.join(", "));
    println!(
        "xtask: web app in {} (release hash {})",
        built.dir.display(),
        built.release_hash
    );
}

/// `npm` in `dir`.
fn npm(dir: &Path) -> Command {
    let mut command = Command::new("npm");
    command.current_dir(dir);
    command
}

/// Checks that Node ≥ [`MIN_NODE`] and npm are installed, saying how to get them if not.
fn ensure_node() -> Result<()> {
    let install = "install Debian's packages: `apt-get install -y nodejs npm`";
    let version = cmd::output(Command::new("node").arg("--version"))
        .with_context(|| format!("Node.js is needed to build the web app: {install}"))?;
    let (major, minor) = MIN_NODE;
    match parse_node_version(&version) {
        Some(found) if found >= MIN_NODE => {}
        _ => bail!(
            "Node.js {version} is too old to build the web app: it needs {major}.{minor} or newer \
             (Vite's engines); {install}, or a newer Node from nodejs.org"
        ),
    }
    if !cmd::runs("npm", &["--version"]) {
        bail!("npm is needed to build the web app: {install}");
    }
    Ok(())
}

/// `(major, minor)` of what `node --version` prints (`v20.20.2`).
fn parse_node_version(text: &str) -> Option<(u64, u64)> {
    let mut parts = text.trim().strip_prefix('v')?.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Whether `npm ci` must run: no `node_modules`, or one installed from an older lock file.
fn node_modules_stale(web: &Path) -> Result<bool> {
    let modified = |path: &Path| -> Result<Option<SystemTime>> {
        match std::fs::metadata(path) {
            Ok(meta) => Ok(Some(meta.modified()?)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error).with_context(|| format!("reading {}", path.display())),
        }
    };
    let lock = modified(&web.join("package-lock.json"))?
        .context("web/package-lock.json is missing: it is committed with web/package.json")?;
    Ok(
        match modified(&web.join("node_modules").join(".package-lock.json"))? {
            Some(installed) => installed < lock,
            None => true,
        },
    )
}

/// Fails if any source file under `src` uses Svelte's raw-HTML tag.
fn ban_raw_html(src: &Path) -> Result<()> {
    let mut found = Vec::new();
    for file in files_under(src)? {
        if file.components().any(|c| c.as_os_str() == "wasm-pkg") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for (number, line) in text.lines().enumerate() {
            if line.contains(RAW_HTML) {
                found.push(format!("{}:{}", file.display(), number + 1));
            }
        }
    }
    if !found.is_empty() {
        bail!(
            "{RAW_HTML} is not allowed in the web app (untrusted text must stay text; the CSP's \
             Trusted Types would refuse it too): {}",
            found.join(", ")
        );
    }
    Ok(())
}

/// Every file under `dir`, sorted.
fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
        {
            let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Turns vite's output in `dist` into the served directory `out` (emptied first): SRI in
/// `index.html`, the manifest, the compressed siblings and the release hash. Returns the release
/// hash and each file's sizes.
pub fn post_process(dist: &Path, out: &Path) -> Result<(String, Vec<FileSizes>)> {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for file in files_under(dist)? {
        let relative = file
            .strip_prefix(dist)
            .context("a file outside vite's output directory")?;
        let mut path = String::new();
        for part in relative.components() {
            let part = part
                .as_os_str()
                .to_str()
                .with_context(|| format!("{} is not UTF-8", file.display()))?;
            path.push('/');
            path.push_str(part);
        }
        files.insert(path, read(&file)?);
    }
    let index = files
        .get("/index.html")
        .context("vite wrote no index.html")?;
    let index = std::str::from_utf8(index).context("index.html is not UTF-8")?;
    let (index, sri_count) = add_integrity(index, |path| {
        files
            .get(path)
            .cloned()
            .with_context(|| format!("index.html refers to {path}, which the build did not write"))
    })?;
    if sri_count == 0 {
        bail!("index.html loads no script: vite's output is not the app");
    }
    files.insert("/index.html".into(), index.into_bytes());

    let manifest = manifest_json(&files)?;
    let release_hash = hex::encode(Sha256::digest(&manifest));

    if out.exists() {
        std::fs::remove_dir_all(out).with_context(|| format!("removing {}", out.display()))?;
    }
    let mut sizes = Vec::with_capacity(files.len());
    let write = |path: &str, bytes: &[u8]| -> Result<FileSizes> {
        let file = out.join(path.trim_start_matches('/'));
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let br = brotli(bytes)?;
        let gz = gzip(bytes)?;
        write_file(&file, bytes)?;
        write_file(&sibling(&file, "br"), &br)?;
        write_file(&sibling(&file, "gz"), &gz)?;
        Ok(FileSizes {
            path: path.to_owned(),
            raw: bytes.len(),
            gzip: gz.len(),
            brotli: br.len(),
        })
    };
    for (path, bytes) in &files {
        sizes.push(write(path, bytes)?);
    }
    sizes.push(write(&format!("/{MANIFEST_FILE}"), &manifest)?);
    write_file(
        &out.join(RELEASE_HASH_FILE),
        format!("{release_hash}\n").as_bytes(),
    )?;
    Ok((release_hash, sizes))
}

/// The wasm sections [`exported_tables`] reads.
const SECTION_IMPORT: u8 = 2;
const SECTION_TABLE: u8 = 4;
const SECTION_EXPORT: u8 = 7;

/// Every exported table of a wasm module with its element type (`0x70` funcref, `0x6f`
/// externref), by export name: what a wasm optimiser must not change, and what Debian's
/// binaryen 108 does change (see [`build`]).
fn exported_tables(wasm: &[u8]) -> Result<BTreeMap<String, u8>> {
    let mut reader = WasmReader { bytes: wasm, at: 0 };
    if reader.take(8)? != b"\0asm\x01\0\0\0" {
        bail!("not a version-1 wasm module");
    }
    let mut table_types: Vec<u8> = Vec::new();
    let mut exported = BTreeMap::new();
    while reader.at < wasm.len() {
        let id = reader.byte()?;
        let size = usize::try_from(reader.leb()?)?;
        let mut section = WasmReader {
            bytes: reader.take(size)?,
            at: 0,
        };
        match id {
            SECTION_IMPORT => {
                for _ in 0..section.leb()? {
                    section.name()?;
                    section.name()?;
                    match section.byte()? {
                        0x00 => drop(section.leb()?),
                        0x01 => table_types.push(section.table_type()?),
                        0x02 => section.limits()?,
                        0x03 => drop(section.take(2)?),
                        0x04 => {
                            section.byte()?;
                            section.leb()?;
                        }
                        other => bail!("unknown import kind {other:#x}"),
                    }
                }
            }
            SECTION_TABLE => {
                for _ in 0..section.leb()? {
                    table_types.push(section.table_type()?);
                }
            }
            SECTION_EXPORT => {
                for _ in 0..section.leb()? {
                    let name = section.name()?;
                    let kind = section.byte()?;
                    let index = usize::try_from(section.leb()?)?;
                    if kind == 0x01 {
                        let table = *table_types
                            .get(index)
                            .with_context(|| format!("export {name} names no table"))?;
                        exported.insert(name, table);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(exported)
}

/// Reads the parts of the wasm binary format [`exported_tables`] needs.
struct WasmReader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> WasmReader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).context("wasm: length overflow")?;
        let taken = self.bytes.get(self.at..end).context("wasm: truncated")?;
        self.at = end;
        Ok(taken)
    }

    fn byte(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    /// An unsigned LEB128 number of at most 32 bits.
    fn leb(&mut self) -> Result<u32> {
        let mut value: u32 = 0;
        for shift in (0..35).step_by(7) {
            let byte = self.byte()?;
            value |= u32::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        bail!("wasm: LEB128 number too long")
    }

    fn name(&mut self) -> Result<String> {
        let len = usize::try_from(self.leb()?)?;
        Ok(String::from_utf8_lossy(self.take(len)?).into_owned())
    }

    fn limits(&mut self) -> Result<()> {
        let flags = self.byte()?;
        self.leb()?;
        if flags & 0x01 != 0 {
            self.leb()?;
        }
        Ok(())
    }

    /// A table type: its element type, then its limits (skipped).
    fn table_type(&mut self) -> Result<u8> {
        let element = self.byte()?;
        self.limits()?;
        Ok(element)
    }
}

/// `file` with `.ext` appended (`a.js` → `a.js.br`).
fn sibling(file: &Path, ext: &str) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".");
    name.push(ext);
    PathBuf::from(name)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// `asset-manifest.json`: every file by URL path with its SHA-256 (hex) and size, in path
/// order, so the same build gives the same bytes (and the same release hash).
fn manifest_json(files: &BTreeMap<String, Vec<u8>>) -> Result<Vec<u8>> {
    let entries: BTreeMap<&str, serde_json::Value> = files
        .iter()
        .map(|(path, bytes)| {
            let entry = serde_json::json!({
                "sha256": hex::encode(Sha256::digest(bytes)),
                "size": bytes.len(),
            });
            (path.as_str(), entry)
        })
        .collect();
    let mut json = serde_json::to_vec_pretty(&entries).context("writing the manifest")?;
    json.push(b'\n');
    Ok(json)
}

/// The SRI value of `bytes`: `sha384-` and the base64 of their SHA-384.
fn sri(bytes: &[u8]) -> String {
    format!(
        "sha384-{}",
        base64::engine::general_purpose::STANDARD.encode(Sha384::digest(bytes))
    )
}

/// One attribute of a tag: its name (lowercase) and value (`None` for a bare attribute).
type Attribute = (String, Option<String>);

/// Adds `integrity` to every `<script src>` and `<link rel=stylesheet|modulepreload href>` of
/// `html`, hashing the file `file(path)` returns for the tag's URL path. Refuses what the CSP
/// would refuse anyway, so the build fails rather than the page: inline scripts and styles, and
/// anything loaded from another origin. Returns the new HTML and how many tags it changed.
fn add_integrity(
    html: &str,
    mut file: impl FnMut(&str) -> Result<Vec<u8>>,
) -> Result<(String, usize)> {
    let mut out = String::with_capacity(html.len() + 512);
    let mut rest = html;
    let mut changed = 0;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let tag = &rest[start..];
        let name_len = tag[1..]
            .find(|c: char| c.is_ascii_whitespace() || c == '>' || c == '/')
            .unwrap_or(tag.len() - 1);
        let name = tag[1..=name_len].to_ascii_lowercase();
        if !matches!(name.as_str(), "script" | "link" | "style") {
            out.push('<');
            rest = &tag[1..];
            continue;
        }
        if name == "style" {
            bail!("index.html has an inline <style>: the CSP allows style files only");
        }
        let end = tag_end(tag).with_context(|| format!("index.html: unclosed <{name}"))?;
        let attributes = parse_attributes(&tag[1 + name_len..end]);
        let value = |wanted: &str| {
            attributes
                .iter()
                .find(|(attr, _)| attr == wanted)
                .and_then(|(_, value)| value.as_deref())
        };
        let url =
            match name.as_str() {
                "script" => Some(value("src").context(
                    "index.html has an inline <script>: the CSP allows script files only",
                )?),
                _ => {
                    let rel = value("rel").unwrap_or_default().to_ascii_lowercase();
                    rel.split_ascii_whitespace()
                        .any(|rel| SRI_LINK_RELS.contains(&rel))
                        .then(|| value("href"))
                        .flatten()
                }
            };
        match url {
            Some(url) => {
                if value("integrity").is_some() {
                    bail!("index.html: <{name}> for {url} already has an integrity attribute");
                }
                let path = local_path(url)?;
                let digest = sri(&file(path)?);
                let close = if tag[..end].ends_with('/') {
                    end - 1
                } else {
                    end
                };
                out.push_str(tag[..close].trim_end());
                out.push_str(&format!(" integrity=\"{digest}\""));
                if close < end {
                    out.push(' ');
                }
                out.push_str(&tag[close..=end]);
                changed += 1;
            }
            None => out.push_str(&tag[..=end]),
        }
        rest = &tag[end + 1..];
    }
    out.push_str(rest);
    Ok((out, changed))
}

/// The index of the `>` closing the tag that starts `tag`, skipping quoted attribute values.
fn tag_end(tag: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    for (index, c) in tag.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '>') => return Some(index),
            (None, _) => {}
        }
    }
    None
}

/// The attributes between a tag's name and its `>`.
fn parse_attributes(text: &str) -> Vec<Attribute> {
    let mut attributes = Vec::new();
    let mut chars = text.trim_end_matches('/').chars().peekable();
    loop {
        while chars
            .next_if(|c| c.is_ascii_whitespace() || *c == '/')
            .is_some()
        {}
        let mut name = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_ascii_whitespace() && *c != '=') {
            name.push(c.to_ascii_lowercase());
        }
        if name.is_empty() {
            return attributes;
        }
        while chars.next_if(char::is_ascii_whitespace).is_some() {}
        if chars.next_if_eq(&'=').is_none() {
            attributes.push((name, None));
            continue;
        }
        while chars.next_if(char::is_ascii_whitespace).is_some() {}
        let mut value = String::new();
        match chars.next_if(|c| *c == '"' || *c == '\'') {
            Some(quote) => {
                for c in chars.by_ref() {
                    if c == quote {
                        break;
                    }
                    value.push(c);
                }
            }
            None => {
                while let Some(c) = chars.next_if(|c| !c.is_ascii_whitespace()) {
                    value.push(c);
                }
            }
        }
        attributes.push((name, Some(value)));
    }
}

/// The build's path of a URL in index.html: same-origin and absolute (`/assets/x.js`), without
/// query or fragment. Anything from elsewhere is refused.
fn local_path(url: &str) -> Result<&str> {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    if !path.starts_with('/') || path.starts_with("//") {
        bail!(
            "index.html loads {url:?}: the app loads only its own files, by absolute path \
             (is vite's `base` still '/'?)"
        );
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(path: &str) -> Result<Vec<u8>> {
        match path {
            "/assets/index-abc.js" => Ok(b"console.log(1)".to_vec()),
            "/assets/index-def.css" => Ok(b"body{}".to_vec()),
            "/assets/chunk-1.js" => Ok(b"export{}".to_vec()),
            other => bail!("no file {other}"),
        }
    }

    #[test]
    fn every_script_stylesheet_and_modulepreload_gets_the_sha384_of_its_file() {
        let html = r#"<!doctype html>
<html><head>
<link rel="icon" href="/assets/favicon-1.svg" type="image/svg+xml" />
<script type="module" crossorigin src="/assets/index-abc.js"></script>
<link rel="modulepreload" crossorigin href="/assets/chunk-1.js">
<link rel="stylesheet" crossorigin href="/assets/index-def.css?v=1">
</head><body><div id="app"></div></body></html>"#;
        let (out, changed) = add_integrity(html, files).unwrap();
        assert_eq!(changed, 3);
        let js = sri(b"console.log(1)");
        let css = sri(b"body{}");
        let chunk = sri(b"export{}");
        assert!(out.contains(&format!(
            r#"<script type="module" crossorigin src="/assets/index-abc.js" integrity="{js}"></script>"#
        )));
        assert!(out.contains(&format!(
            r#"<link rel="modulepreload" crossorigin href="/assets/chunk-1.js" integrity="{chunk}">"#
        )));
        assert!(out.contains(&format!(
            r#"href="/assets/index-def.css?v=1" integrity="{css}">"#
        )));
        // The icon is not a script or style: untouched.
        assert!(
            out.contains(
                r#"<link rel="icon" href="/assets/favicon-1.svg" type="image/svg+xml" />"#
            )
        );
        assert!(out.ends_with(r#"<div id="app"></div></body></html>"#));
        // SHA-384 of "console.log(1)" is 48 bytes: 64 base64 characters.
        assert_eq!(js.len(), "sha384-".len() + 64);
    }

    #[test]
    fn a_self_closing_tag_and_a_quoted_angle_bracket_are_handled() {
        let html = r#"<link title="a > b" rel=stylesheet href=/assets/index-def.css/>"#;
        let (out, changed) = add_integrity(html, files).unwrap();
        assert_eq!(changed, 1);
        let css = sri(b"body{}");
        assert_eq!(
            out,
            format!(
                r#"<link title="a > b" rel=stylesheet href=/assets/index-def.css integrity="{css}" />"#
            )
        );
    }

    #[test]
    fn inline_scripts_styles_and_other_origins_fail_the_build() {
        for html in [
            "<script>alert(1)</script>",
            "<style>body{}</style>",
            r#"<script src="https://cdn.example/x.js"></script>"#,
            r#"<script src="//cdn.example/x.js"></script>"#,
            r#"<script src="assets/index-abc.js"></script>"#,
            r#"<script src="/assets/missing.js"></script>"#,
            r#"<link rel="stylesheet" href="/assets/index-def.css" integrity="sha384-x">"#,
        ] {
            assert!(add_integrity(html, files).is_err(), "{html}");
        }
    }

    #[test]
    fn the_manifest_lists_every_file_with_its_sha256_and_size_in_path_order() {
        let mut files = BTreeMap::new();
        files.insert("/index.html".to_string(), b"<html>".to_vec());
        files.insert("/assets/a.js".to_string(), b"".to_vec());
        let json = manifest_json(&files).unwrap();
        let parsed: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!({
                "/assets/a.js": {
                    "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                    "size": 0
                },
                "/index.html": {
                    "sha256": hex::encode(Sha256::digest(b"<html>")),
                    "size": 6
                }
            })
        );
        // Deterministic bytes: the release hash of a build depends on its files only.
        assert_eq!(json, manifest_json(&files.clone()).unwrap());
        let text = String::from_utf8(json).unwrap();
        assert!(text.find("/assets/a.js") < text.find("/index.html"));
    }

    #[test]
    fn post_processing_writes_the_served_directory() {
        let dir = std::env::temp_dir().join(format!("xtask-web-{}", std::process::id()));
        let dist = dir.join("dist");
        let out = dir.join("out");
        std::fs::create_dir_all(dist.join("assets")).unwrap();
        std::fs::write(
            dist.join("index.html"),
            r#"<script type="module" src="/assets/index-abc.js"></script>"#,
        )
        .unwrap();
        std::fs::write(dist.join("assets/index-abc.js"), "console.log(1)").unwrap();
        // A stale file from an earlier build must not survive.
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join("stale.js"), "old").unwrap();

        let (hash, sizes) = post_process(&dist, &out).unwrap();

        let manifest = std::fs::read(out.join(MANIFEST_FILE)).unwrap();
        assert_eq!(hash, hex::encode(Sha256::digest(&manifest)));
        assert_eq!(
            std::fs::read_to_string(out.join(RELEASE_HASH_FILE)).unwrap(),
            format!("{hash}\n")
        );
        let listed: BTreeMap<String, serde_json::Value> =
            serde_json::from_slice(&manifest).unwrap();
        assert_eq!(
            listed.keys().collect::<Vec<_>>(),
            ["/assets/index-abc.js", "/index.html"]
        );
        let index = std::fs::read(out.join("index.html")).unwrap();
        assert!(String::from_utf8_lossy(&index).contains("integrity=\"sha384-"));
        assert_eq!(
            listed["/index.html"]["sha256"],
            hex::encode(Sha256::digest(&index))
        );
        let mut unbrotli = Vec::new();
        brotli::BrotliDecompress(
            &mut &std::fs::read(out.join("index.html.br")).unwrap()[..],
            &mut unbrotli,
        )
        .unwrap();
        assert_eq!(unbrotli, index);
        assert!(out.join("assets/index-abc.js.gz").is_file());
        assert!(out.join("asset-manifest.json.br").is_file());
        assert!(!out.join("stale.js").exists());
        assert_eq!(sizes.len(), 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn raw_html_in_a_component_fails_the_build() {
        let dir = std::env::temp_dir().join(format!("xtask-rawhtml-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("ui")).unwrap();
        std::fs::write(dir.join("ui/Ok.svelte"), "<p>{text}</p>").unwrap();
        assert!(ban_raw_html(&dir).is_ok());
        std::fs::write(dir.join("ui/Bad.svelte"), "<p>\n{@html text}</p>").unwrap();
        let error = ban_raw_html(&dir).unwrap_err().to_string();
        assert!(error.contains("Bad.svelte:2"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A module with two tables (funcref, externref), the second exported as "refs" (or the
    /// first, when `swapped`): the shape wasm-bindgen writes and binaryen 108 breaks.
    fn two_table_module(swapped: bool) -> Vec<u8> {
        let mut wasm = b"\0asm\x01\0\0\0".to_vec();
        // Import section: one function import "m"."f" of type 0 (a type section is not
        // needed by the reader).
        wasm.extend([SECTION_IMPORT, 7, 1, 1, b'm', 1, b'f', 0x00, 0]);
        // Table section: funcref with min 1, externref with min 1 and max 300 (a 2-byte LEB).
        wasm.extend([
            SECTION_TABLE,
            9,
            2,
            0x70,
            0x00,
            1,
            0x6f,
            0x01,
            1,
            0xac,
            0x02,
        ]);
        // Export section: "refs" → table 1 (or 0).
        wasm.extend([SECTION_EXPORT, 8, 1, 4, b'r', b'e', b'f', b's', 0x01]);
        wasm.push(if swapped { 0 } else { 1 });
        wasm
    }

    #[test]
    fn the_exported_tables_element_types_are_read_and_a_swap_is_seen() {
        let good = exported_tables(&two_table_module(false)).unwrap();
        assert_eq!(good, BTreeMap::from([("refs".to_string(), 0x6f)]));
        let swapped = exported_tables(&two_table_module(true)).unwrap();
        assert_eq!(swapped, BTreeMap::from([("refs".to_string(), 0x70)]));
        assert_ne!(good, swapped);
        assert!(exported_tables(b"\0asm\x01\0\0\0\x07\x09").is_err());
        assert!(exported_tables(b"not wasm").is_err());
    }

    #[test]
    fn node_versions_are_compared_as_numbers() {
        assert_eq!(parse_node_version("v20.20.2\n"), Some((20, 20)));
        assert!(parse_node_version("v20.9.0").unwrap() < MIN_NODE);
        assert!(parse_node_version("v22.0.1").unwrap() >= MIN_NODE);
        assert_eq!(parse_node_version("20.19"), None);
    }
}
