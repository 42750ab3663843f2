//! `cargo xtask web-budgets`: the web app's budgets (docs/web-app-plan.md §8), measured in one
//! run and written into BENCHMARKS.md as its "Web app" section, with the command, the machine
//! and the figures. Benchmarks measure; nothing here fails because something is slow.
//!
//! 1. Builds the app (`cargo xtask web`'s build) and takes the gzip -9 and brotli 11 sizes of
//!    every JS, CSS and wasm file in `target/web`: the first load, and the passphrase-strength
//!    module the create-profile screen loads lazily, apart.
//! 2. Builds the release `confide-server` and `confide-bench`, then runs the Playwright script
//!    `web/bench/budgets.spec.ts` (its own configuration, outside `cargo xtask test`) in
//!    Debian's Chromium against the release server: first load with a cold cache, unlock, and a
//!    group of 10,000 messages seeded by `confide-bench seed-group`. The script writes its
//!    samples as JSON; medians of five are reported.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::cmd;
use crate::tools::{self, CHROMIUM};
use crate::web::{self, FileSizes};

/// The command, as BENCHMARKS.md quotes it.
const COMMAND: &str = "cargo xtask web-budgets";
/// The section's heading in BENCHMARKS.md.
const HEADING: &str = "## Web app";
/// The section goes before this one when it is not there yet.
const BEFORE: &str = "## Targets: met, missed";
/// The download budget of the plan, in bytes (brotli).
const BUDGET: usize = 3 * 1024 * 1024 / 2;

/// Runs the budgets and rewrites BENCHMARKS.md's section; see the module documentation. With
/// `measure` false, only the sizes are taken again and the samples of the last run
/// (`target/web-budgets.json`) are written up (`cargo xtask web-budgets --report-only`).
pub fn run(root: &Path, measure: bool) -> Result<()> {
    let built = web::build(root, web::PROFILE)?;
    let files: Vec<&FileSizes> = built
        .files
        .iter()
        .filter(|f| {
            [".js", ".css", ".wasm"]
                .iter()
                .any(|ext| f.path.ends_with(ext))
        })
        .collect();

    let target = tools::target_dir(root)?;
    let out = target.join("web-budgets.json");
    if measure {
        measure_in_browser(root, &built.dir, &out)?;
    }
    let text =
        std::fs::read_to_string(&out).with_context(|| format!("reading {}", out.display()))?;
    let results: Value = serde_json::from_str(&text).context("parsing the budgets' samples")?;
    let commit =
        cmd::output(
            Command::new("git")
                .current_dir(root)
                .args(["rev-parse", "--short", "HEAD"]),
        )
        .unwrap_or_default();
    let date =
        cmd::output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"])).unwrap_or_default();
    let browser = cmd::output(Command::new(CHROMIUM).arg("--version")).unwrap_or_default();
    let section = section(
        &files,
        &results,
        &RunInfo {
            machine: machine(),
            commit: commit.trim().to_owned(),
            date: date.trim().to_owned(),
            browser: browser.trim().to_owned(),
        },
    )?;
    println!("{section}");
    let path = root.join("BENCHMARKS.md");
    let old =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    std::fs::write(&path, replace_section(&old, &section))
        .with_context(|| format!("writing {}", path.display()))?;
    println!(
        "xtask: web-budgets: wrote the \"Web app\" section of {}",
        path.display()
    );
    Ok(())
}

/// Builds the release server and seeder and runs the Playwright script, which writes `out`.
fn measure_in_browser(root: &Path, web_dir: &Path, out: &Path) -> Result<()> {
    tools::ensure_browser()?;
    cmd::run(cmd::cargo(root).args([
        "build",
        "--release",
        "-p",
        "confide-server",
        "-p",
        "confide-bench",
    ]))?;
    let target = tools::target_dir(root)?;
    if out.exists() {
        std::fs::remove_file(out).with_context(|| format!("removing {}", out.display()))?;
    }
    let web_root = root.join("web");
    let playwright = web_root
        .join("node_modules")
        .join(".bin")
        .join("playwright");
    cmd::run(
        Command::new(&playwright)
            .current_dir(&web_root)
            .args([
                "test",
                "--config",
                "bench/playwright.config.ts",
                "--reporter=list",
            ])
            .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
            .env(
                "CONFIDE_SERVER_BIN",
                target.join("release").join("confide-server"),
            )
            .env(
                "CONFIDE_BENCH_BIN",
                target.join("release").join("confide-bench"),
            )
            .env("CONFIDE_WEB_DIR", web_dir)
            .env("CONFIDE_TARGET_DIR", &target)
            .env("CONFIDE_BUDGETS_OUT", out),
    )
}

/// Where and when the figures were taken.
struct RunInfo {
    machine: String,
    commit: String,
    date: String,
    browser: String,
}

/// The CPU model, the cores, the memory and the load average, from /proc.
fn machine() -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')))
        .map_or("unknown CPU", |(_, m)| m.trim())
        .to_owned();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    let load = read("/proc/loadavg");
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!(
        "{cores} cores of an {model}, {mem_gib:.0} GiB (load average {} at the end of the run, \
         shared with other work)",
        load.join(" / ")
    )
}

/// A JSON number at `pointer`, or an error naming it.
fn num(value: &Value, pointer: &str) -> Result<f64> {
    value
        .pointer(pointer)
        .and_then(Value::as_f64)
        .with_context(|| format!("the budgets' samples have no number at {pointer}"))
}

/// The median of `values` (the mean of the middle two for an even count).
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Every number of the array at `pointer`, or of `field` of each of its objects.
fn samples(value: &Value, pointer: &str, field: Option<&str>) -> Result<Vec<f64>> {
    let items = value
        .pointer(pointer)
        .and_then(Value::as_array)
        .with_context(|| format!("the budgets' samples have no array at {pointer}"))?;
    items
        .iter()
        .map(|item| {
            field
                .map_or(item, |f| &item[f])
                .as_f64()
                .with_context(|| format!("a sample of {pointer} is not a number"))
        })
        .collect()
}

/// Milliseconds, rounded for reading.
fn ms(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

/// The samples, comma-separated.
fn list(values: &[f64]) -> String {
    values.iter().map(|v| ms(*v)).collect::<Vec<_>>().join(", ")
}

fn kib(bytes: usize) -> String {
    format!("{:.1}", bytes as f64 / 1024.0)
}

/// A whole number with thousands separators, as the rest of BENCHMARKS.md writes them.
fn thousands(n: f64) -> String {
    let digits = format!("{n:.0}");
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Whether a file of the build is the lazily loaded passphrase-strength module.
fn lazy(path: &str) -> bool {
    path.contains("passphrase")
}

/// The section's Markdown.
fn section(files: &[&FileSizes], r: &Value, at: &RunInfo) -> Result<String> {
    let mut s = String::new();
    let w = &mut s;
    writeln!(w, "{HEADING}\n")?;
    writeln!(
        w,
        "The web app's budgets (docs/web-app-plan.md §8), measured in one run of\n\n```sh\n\
         {COMMAND}\n```\n\n\
         which builds the app as `cargo xtask web` does, takes the compressed sizes of \
         `target/web`, then runs `web/bench/budgets.spec.ts` (Playwright, its own configuration, \
         never part of `cargo xtask test`) in {} against the release `confide-server` on \
         loopback, and rewrites this section. Times are taken in the page with \
         `performance.now()` at the first animation frame after the DOM shows what is waited \
         for; each is the median of five unless it says otherwise. Benchmarks measure; nothing \
         fails for being slow.\n",
        if at.browser.is_empty() {
            CHROMIUM
        } else {
            &at.browser
        }
    )?;
    writeln!(
        w,
        "Run on {} at commit {}: {}.\n",
        at.date, at.commit, at.machine
    )?;

    // 1. Sizes.
    writeln!(w, "### Download size\n")?;
    writeln!(
        w,
        "| file | loaded | raw, KiB | gzip -9, KiB | brotli 11, KiB |"
    )?;
    writeln!(w, "|---|---|---|---|---|")?;
    for f in files {
        writeln!(
            w,
            "| `{}` | {} | {} | {} | {} |",
            f.path,
            if lazy(&f.path) {
                "lazily, create-profile screen"
            } else {
                "first load"
            },
            kib(f.raw),
            kib(f.gzip),
            kib(f.brotli)
        )?;
    }
    let sum = |pick: fn(&FileSizes) -> usize, want_lazy: bool| -> usize {
        files
            .iter()
            .filter(|f| lazy(&f.path) == want_lazy)
            .map(|f| pick(f))
            .sum()
    };
    let (first_br, lazy_br) = (sum(|f| f.brotli, false), sum(|f| f.brotli, true));
    writeln!(
        w,
        "| **first load** | | {} | {} | **{}** |",
        kib(sum(|f| f.raw, false)),
        kib(sum(|f| f.gzip, false)),
        kib(first_br)
    )?;
    writeln!(
        w,
        "| **passphrase strength (lazy)** | | {} | {} | **{}** |",
        kib(sum(|f| f.raw, true)),
        kib(sum(|f| f.gzip, true)),
        kib(lazy_br)
    )?;
    writeln!(
        w,
        "\nAgainst the 1.5 MiB (1,536 KiB, brotli) aim: the first load is {} KiB ({:.0} % of \
         it); with the lazy module, {} KiB ({:.0} %). The first load counts the page's script and \
         style, the worker and the core wasm (the worker starts at once); the HTML, the icons and \
         the manifest are left out.\n",
        kib(first_br),
        100.0 * first_br as f64 / BUDGET as f64,
        kib(first_br + lazy_br),
        100.0 * (first_br + lazy_br) as f64 / BUDGET as f64
    )?;

    // 2 and 3. First load and unlock.
    let usable = samples(r, "/firstLoad/samples", Some("usable"))?;
    let response = samples(r, "/firstLoad/samples", Some("responseEnd"))?;
    let dcl = samples(r, "/firstLoad/samples", Some("domContentLoaded"))?;
    let load = samples(r, "/firstLoad/samples", Some("load"))?;
    let unlock = samples(r, "/unlock/samplesMs", None)?;
    writeln!(w, "### First load and unlock\n")?;
    writeln!(w, "| figure | median, ms | samples, ms |")?;
    writeln!(w, "|---|---|---|")?;
    writeln!(
        w,
        "| first load, cold cache: navigation start → \"Create my profile\" enabled | **{}** | {} |",
        ms(median(&usable)),
        list(&usable)
    )?;
    writeln!(
        w,
        "| … of which: HTML response end / DOMContentLoaded / load event | {} / {} / {} | |",
        ms(median(&response)),
        ms(median(&dcl)),
        ms(median(&load))
    )?;
    writeln!(
        w,
        "| unlock: click on Unlock → \"Your groups\" (Argon2id, store open, groups) | **{}** | {} |",
        ms(median(&unlock)),
        list(&unlock)
    )?;
    writeln!(
        w,
        "\nEach first-load sample is a fresh browser context (empty cache, no service worker, \
         no storage). The app sets no `performance.mark`; the moment the button is in the DOM \
         and enabled is taken instead. The worker does not report the Argon2id part of an \
         unlock on its own, so only the whole is measured.\n"
    )?;

    // 4. History at scale.
    let h = "/history";
    let n = num(r, &format!("{h}/messages"))?;
    let opens = samples(r, &format!("{h}/openSamplesMs"), None)?;
    let seeder = r
        .pointer(&format!("{h}/seeder"))
        .and_then(Value::as_str)
        .unwrap_or("?");
    writeln!(w, "### A group with {} messages\n", thousands(n))?;
    writeln!(
        w,
        "`confide-bench seed-group --messages {n:.0}` (a real `confide_client::Client`) creates \
         the group and prints an invite link; the browser member joins with it; the seeder then \
         sends the messages one after another ({seeder}). The server holds each device to 50 \
         messages a second (burst 200) by default, so the seeding takes minutes. The member \
         waits on the groups list until its entry has not changed for ten seconds (settled {:.1} \
         s after the seeder finished), then opens the group five times; a sample ends at the \
         first frame whose last row in the log is a seeded message.\n",
        num(r, &format!("{h}/syncedAfterSeedS"))?
    )?;
    writeln!(w, "| figure | value |")?;
    writeln!(w, "|---|---|")?;
    writeln!(
        w,
        "| click on the group → its last message painted, median, ms | **{}** (samples {}; the first open {}) |",
        ms(median(&opens)),
        list(&opens),
        ms(opens.first().copied().unwrap_or(f64::NAN))
    )?;
    let sc = &format!("{h}/scroll");
    writeln!(
        w,
        "| scroll to the very top: \"Show earlier messages\" {} times (200 a page), ms | {} |",
        num(r, &format!("{sc}/earlierPages"))?,
        ms(num(r, &format!("{sc}/loadAllMs"))?)
    )?;
    writeln!(
        w,
        "| … long tasks > 50 ms meanwhile: count / total / longest, ms | {:.0} / {} / {} |",
        num(r, &format!("{sc}/loadAllLongTasks/count"))?,
        ms(num(r, &format!("{sc}/loadAllLongTasks/totalMs"))?),
        ms(num(r, &format!("{sc}/loadAllLongTasks/maxMs"))?)
    )?;
    writeln!(
        w,
        "| the whole loaded history, from the bottom to the top one page per frame: pages / ms | {:.0} / {} |",
        num(r, &format!("{sc}/pageScroll/steps"))?,
        ms(num(r, &format!("{sc}/pageScroll/ms"))?)
    )?;
    writeln!(
        w,
        "| … long tasks > 50 ms meanwhile: count / total / longest, ms | {:.0} / {} / {} |",
        num(r, &format!("{sc}/pageScroll/longTasks/count"))?,
        ms(num(r, &format!("{sc}/pageScroll/longTasks/totalMs"))?),
        ms(num(r, &format!("{sc}/pageScroll/longTasks/maxMs"))?)
    )?;
    writeln!(
        w,
        "| rows in the DOM: most at any time / at the end (virtualised) | {:.0} / {:.0} |",
        num(r, &format!("{sc}/maxRowsInDom"))?,
        num(r, &format!("{sc}/rowsInDomAtEnd"))?
    )?;
    let top = r
        .pointer(&format!("{sc}/topShown"))
        .and_then(Value::as_bool);
    let top2 = r
        .pointer(&format!("{sc}/pageScroll/topShown"))
        .and_then(Value::as_bool);
    if top != Some(true) || top2 != Some(true) {
        writeln!(
            w,
            "\nThe first message was {}shown at the top after the pages were loaded and {}after \
             the page-by-page scroll.",
            if top == Some(true) { "" } else { "not " },
            if top2 == Some(true) { "" } else { "not " }
        )?;
    }
    let errors: Vec<&str> = r
        .pointer(&format!("{h}/pageErrors"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Some(count) = r.pointer(&format!("{h}/newCount")).and_then(Value::as_f64) {
        writeln!(
            w,
            "\nWhen the member's groups list had settled it counted {count:.0} new messages."
        )?;
    }
    if !errors.is_empty() {
        writeln!(
            w,
            "\nThe page reported these errors during the run (the benchmark records them and \
             goes on): {}.",
            errors
                .iter()
                .map(|e| format!("`{e}`"))
                .collect::<Vec<_>>()
                .join("; ")
        )?;
    }
    writeln!(w)?;
    Ok(s)
}

/// `old` with its "Web app" section replaced by `section`, or `section` inserted before the
/// targets section (at the end when there is none).
fn replace_section(old: &str, section: &str) -> String {
    if let Some(start) = old.find(&format!("\n{HEADING}\n")).map(|i| i + 1) {
        let end = old[start + HEADING.len()..]
            .find("\n## ")
            .map_or(old.len(), |i| start + HEADING.len() + i + 1);
        return format!("{}{section}{}", &old[..start], &old[end..]);
    }
    match old.find(&format!("\n{BEFORE}")).map(|i| i + 1) {
        Some(at) => format!("{}{section}{}", &old[..at], &old[at..]),
        None => format!(
            "{}\n{section}",
            old.trim_end_matches('\n').to_owned() + "\n"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_is_inserted_once_then_replaced() {
        let doc = "# B\n\n## Sizes\n\ntext\n\n## Targets: met, missed\n\nmore\n";
        let once = replace_section(doc, "## Web app\n\nfirst\n\n");
        assert_eq!(
            once,
            "# B\n\n## Sizes\n\ntext\n\n## Web app\n\nfirst\n\n## Targets: met, missed\n\nmore\n"
        );
        let twice = replace_section(&once, "## Web app\n\nsecond\n\n");
        assert!(
            twice.contains("second") && !twice.contains("first"),
            "{twice}"
        );
        assert_eq!(twice.matches(HEADING).count(), 1);
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[5.0, 1.0, 3.0]), 3.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn the_passphrase_module_is_the_lazy_one() {
        assert!(lazy("/assets/confide_passphrase_bg-abc.wasm"));
        assert!(!lazy("/assets/confide_client_web_bg-abc.wasm"));
    }
}
