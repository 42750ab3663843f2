//! `cargo xtask wasm-size`: what the browser downloads. Builds the size probe (a cdylib that
//! exports the calls a browser client makes, so the linker keeps what they reach) with the
//! `wasm-release` profile, runs `wasm-bindgen` and then `wasm-opt -Oz` as a web build would,
//! and prints each stage's bytes raw, gzip -9 and brotli 11. The result is compared with
//! [`BUDGET_BROTLI_BYTES`]; BENCHMARKS.md records the figures.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::cmd;
use crate::tools::{self, WASM_TARGET};

/// The crate holding the size probe, and the feature that turns it on.
const PROBE_CRATE: &str = "confide-wasm-tests";
/// `PROBE_CRATE`'s library name: the file name of its wasm.
const PROBE_LIB: &str = "confide_wasm_tests";
/// The feature that compiles the probe's exports.
const PROBE_FEATURE: &str = "size-probe";
/// The cargo profile for the browser build (workspace Cargo.toml: opt-level "z", fat LTO, one
/// codegen unit).
const PROFILE: &str = "wasm-release";
/// Brotli quality: 11, the highest, as a server pre-compresses static files.
const BROTLI_QUALITY: u32 = 11;
/// Brotli window: 2^22 bytes, the largest of standard brotli, which browsers accept.
const BROTLI_WINDOW_LOG: u32 = 22;
/// The budget (issue 14): confide-client-core and the protocol together, optimised, at most
/// 1 MiB brotli-compressed.
pub const BUDGET_BROTLI_BYTES: usize = 1024 * 1024;

/// One measured file.
struct Stage {
    what: String,
    bytes: Vec<u8>,
}

/// Builds and measures the size probe; see the module documentation.
pub fn run(root: &Path) -> Result<()> {
    tools::ensure_wasm_target()?;
    let wasm_bindgen = tools::ensure_wasm_bindgen(root)?;

    cmd::run(cmd::cargo(root).args([
        "rustc",
        "-p",
        PROBE_CRATE,
        "--lib",
        "--crate-type",
        "cdylib",
        "--features",
        PROBE_FEATURE,
        "--profile",
        PROFILE,
        "--target",
        WASM_TARGET,
    ]))?;
    let target_dir = tools::target_dir(root)?;
    let built = target_dir
        .join(WASM_TARGET)
        .join(PROFILE)
        .join(format!("{PROBE_LIB}.wasm"));
    let out_dir = target_dir.join("wasm-size");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;

    let mut stages = vec![Stage {
        what: "cdylib from rustc".into(),
        bytes: read(&built)?,
    }];

    // wasm-bindgen as a web app's build runs it: the JavaScript glue for the ES module target,
    // the function names and producer notes dropped from the wasm (no one downloads them).
    cmd::run(
        Command::new(&wasm_bindgen.bindgen)
            .args([
                "--target",
                "web",
                "--remove-name-section",
                "--remove-producers-section",
                "--out-dir",
            ])
            .arg(&out_dir)
            .arg(&built),
    )?;
    let bindgen_wasm = out_dir.join(format!("{PROBE_LIB}_bg.wasm"));
    let glue = Stage {
        what: "JavaScript glue (wasm-bindgen)".into(),
        bytes: read(&out_dir.join(format!("{PROBE_LIB}.js")))?,
    };
    stages.push(Stage {
        what: format!("after wasm-bindgen {}", wasm_bindgen.version),
        bytes: read(&bindgen_wasm)?,
    });

    let wasm_opt_note = match tools::find_or_install_wasm_opt() {
        Some(wasm_opt) => {
            let optimised = out_dir.join(format!("{PROBE_LIB}_opt.wasm"));
            let version = cmd::output(Command::new(&wasm_opt).arg("--version"))
                .unwrap_or_else(|_| "wasm-opt".into());
            cmd::run(
                Command::new(&wasm_opt)
                    .arg("-Oz")
                    .args(tools::WASM_OPT_FEATURES)
                    .arg(&bindgen_wasm)
                    .arg("-o")
                    .arg(&optimised),
            )?;
            stages.push(Stage {
                what: format!("after wasm-opt -Oz ({version})"),
                bytes: read(&optimised)?,
            });
            None
        }
        None => Some("wasm-opt is not available: the figure is without it (larger)"),
    };
    stages.push(glue);

    println!();
    println!("{PROBE_CRATE} size probe ({PROFILE} profile, {WASM_TARGET}):");
    println!(
        "{:<46} {:>10} {:>10} {:>10}",
        "stage", "raw", "gzip -9", "brotli 11"
    );
    // What a browser downloads: the smallest compressed wasm a web build can ship, that is after
    // wasm-bindgen (the rustc output cannot be loaded without its glue), with or without
    // wasm-opt (which can make the brotli figure larger while it shrinks the raw one).
    let mut shipped: Option<(usize, &str)> = None;
    for (index, stage) in stages.iter().enumerate() {
        let gz = gzip(&stage.bytes)?.len();
        let br = brotli(&stage.bytes)?.len();
        println!(
            "{:<46} {:>10} {:>10} {:>10}",
            stage.what,
            stage.bytes.len(),
            gz,
            br
        );
        let loadable_wasm = index > 0 && index + 1 < stages.len();
        if loadable_wasm && shipped.is_none_or(|(best, _)| br < best) {
            shipped = Some((br, &stage.what));
        }
    }
    let (shipped_brotli, shipped_stage) = shipped.context("no wasm after wasm-bindgen")?;
    if let Some(note) = wasm_opt_note {
        println!("note: {note}");
    }
    println!(
        "shipped wasm ({shipped_stage}): {shipped_brotli} bytes brotli ({:.1} KiB); \
         budget {} KiB for core + protocol",
        shipped_brotli as f64 / 1024.0,
        BUDGET_BROTLI_BYTES / 1024
    );
    if shipped_brotli > BUDGET_BROTLI_BYTES {
        bail!("the wasm is over its brotli budget of {BUDGET_BROTLI_BYTES} bytes");
    }
    Ok(())
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// `bytes` compressed with gzip at level 9.
pub fn gzip(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).context("gzip")?;
    encoder.finish().context("gzip")
}

/// `bytes` compressed with brotli at [`BROTLI_QUALITY`] with a [`BROTLI_WINDOW_LOG`] window.
pub fn brotli(bytes: &[u8]) -> Result<Vec<u8>> {
    let params = brotli::enc::BrotliEncoderParams {
        quality: BROTLI_QUALITY as i32,
        lgwin: BROTLI_WINDOW_LOG as i32,
        ..Default::default()
    };
    let mut out = Vec::new();
    brotli::BrotliCompress(&mut &bytes[..], &mut out, &params).context("brotli")?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn the_measured_streams_decompress_to_the_input_and_shrink_repetitive_bytes() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();

        let br = brotli(&data).unwrap();
        let mut back = Vec::new();
        brotli::BrotliDecompress(&mut &br[..], &mut back).unwrap();
        assert_eq!(back, data);
        assert!(br.len() < 2_000, "brotli gave {} bytes", br.len());

        let gz = gzip(&data).unwrap();
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        assert!(gz.len() < 5_000, "gzip gave {} bytes", gz.len());
    }
}
