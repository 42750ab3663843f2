//! The machine-readable history of benchmark runs (issue 20): `confide-bench … --record`
//! appends one JSON line per invocation to `bench/results/history.jsonl`, with the date, the
//! commit, the command, the machine's load, the sizes, every figure and the latency
//! distributions. [`crate::charts`] draws it.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::report::{Distribution, Figure, Report};
use crate::scenarios::Sizes;

/// Where `--record` appends and `charts` reads unless told otherwise (relative to the
/// workspace root, where `cargo run` is started).
pub const DEFAULT_PATH: &str = "bench/results/history.jsonl";

/// One invocation of the harness: one line of the history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// When it started, UTC, `YYYY-MM-DDTHH:MM:SSZ`.
    pub date: String,
    /// `git rev-parse --short HEAD` of the harness, or `unknown`.
    pub commit: String,
    /// The command line.
    pub command: String,
    /// The load averages (1, 5, 15 minutes) when it started, if known (an imported run has
    /// only the one figure BENCHMARKS.md gave).
    #[serde(default)]
    pub load_start: Option<Vec<f64>>,
    /// … and when it ended.
    #[serde(default)]
    pub load_end: Option<Vec<f64>>,
    /// The processor it ran on and what of it the signature checks can use ([`cpu`]): the
    /// machines differ from session to session, and one without AVX-512 IFMA checks an
    /// Ed25519 signature about half again as slowly. Older runs did not record it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// Copied by hand from an older table in BENCHMARKS.md rather than recorded by the harness.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub imported: bool,
    /// A label to show instead of the date, e.g. the run's letter in BENCHMARKS.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The sizes it ran with (free-form, so that older and newer harnesses can share a file).
    #[serde(default)]
    pub sizes: serde_json::Value,
    /// Every figure of the report.
    pub figures: Vec<FigureRecord>,
    /// The latency distributions of both sides.
    #[serde(default)]
    pub distributions: Vec<Distribution>,
}

/// A [`Figure`] as stored: its verdict included, so that the file reads on its own.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FigureRecord {
    /// The figure, its fields inline in the JSON.
    #[serde(flatten)]
    pub figure: Figure,
    /// Whether the target was met.
    #[serde(default)]
    pub met: Option<bool>,
}

impl From<&Figure> for FigureRecord {
    fn from(f: &Figure) -> FigureRecord {
        FigureRecord {
            figure: f.clone(),
            met: f.met(),
        }
    }
}

impl Entry {
    /// The run's figures, without their stored verdicts.
    pub fn measured(&self) -> impl Iterator<Item = &Figure> {
        self.figures.iter().map(|record| &record.figure)
    }
}

/// What was known when the run started: its date, the load, the command.
#[derive(Clone, Debug)]
pub struct Start {
    date: String,
    load: Option<Vec<f64>>,
    command: String,
}

impl Start {
    /// Now, with the process's command line.
    pub fn now() -> Start {
        Start {
            date: utc_now(),
            load: load_average(),
            command: command_line(),
        }
    }

    /// The history entry for `report`, measured with `sizes` on `storages`, ending now.
    pub fn finish(self, report: &Report, sizes: &Sizes, storages: &[String]) -> Entry {
        Entry {
            date: self.date,
            commit: git_commit(),
            command: self.command,
            load_start: self.load,
            load_end: load_average(),
            cpu: Some(cpu()),
            imported: false,
            label: None,
            sizes: sizes_json(sizes, storages),
            figures: report.figures.iter().map(FigureRecord::from).collect(),
            distributions: report.distributions.clone(),
        }
    }
}

/// Appends `entry` as one line to `path`, creating the file and its directory.
pub fn append(path: &Path, entry: &Entry) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut line = serde_json::to_string(entry)?;
    line.push('\n');
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    // One write of the whole line: concurrent runs appending to the same file do not interleave.
    file.write_all(line.as_bytes())
        .with_context(|| format!("appending to {}", path.display()))?;
    Ok(())
}

/// Every entry of the history at `path`, oldest first (by date; the file's order breaks ties).
pub fn read(path: &Path) -> anyhow::Result<Vec<Entry>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut entries = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let entry: Entry = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not a history entry", path.display(), n + 1))?;
        entries.push(entry);
    }
    entries.sort_by(|a, b| a.date.cmp(&b.date));
    Ok(entries)
}

fn sizes_json(s: &Sizes, storages: &[String]) -> serde_json::Value {
    serde_json::json!({
        "groups": s.groups,
        "members": s.members,
        "buckets": s.buckets,
        "posts_per_sender": s.posts_per_sender,
        "window": s.window,
        "latency_secs": s.latency.as_secs_f64(),
        "warmup_secs": s.warmup.as_secs_f64(),
        "durable": s.durable.iter().map(|(c, w)| format!("{c}x{w}")).collect::<Vec<_>>(),
        "durable_posts": s.durable_posts,
        "fsync_secs": s.fsync.as_secs_f64(),
        "connections": s.connections,
        "addresses": s.addresses,
        "backlog": s.backlog,
        "nodes": s.nodes,
        "storage": storages,
    })
}

/// The command line as typed, program name first, arguments with spaces quoted.
fn command_line() -> String {
    std::env::args()
        .enumerate()
        .map(|(i, a)| {
            // The program's path says nothing across machines: its name does.
            let a = if i == 0 {
                Path::new(&a)
                    .file_name()
                    .map_or(a.clone(), |n| n.to_string_lossy().into_owned())
            } else {
                a
            };
            if a.is_empty() || a.contains(char::is_whitespace) {
                format!("'{a}'")
            } else {
                a
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `git rev-parse --short HEAD`, or `unknown` outside a checkout or without git.
pub fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

/// The 1-, 5- and 15-minute load averages from `/proc/loadavg` (Linux), if readable.
pub fn load_average() -> Option<Vec<f64>> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace()
        .take(3)
        .map(|f| f.parse::<f64>().ok())
        .collect()
}

/// The processor's model name (from `/proc/cpuinfo`, Linux), how many cores this process may
/// use, and whether it has the vector instructions curve25519-dalek picks its backend by:
/// e.g. `AMD EPYC, 2 cores, avx2, no avx512ifma`.
pub fn cpu() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("model name")?.split_once(':'))
                .map(|(_, name)| name.trim().to_string())
        })
        .unwrap_or_else(|| "unknown processor".into());
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZeroUsize::get);
    let has = |yes: bool, name: &str| match yes {
        true => name.to_string(),
        false => format!("no {name}"),
    };
    #[cfg(target_arch = "x86_64")]
    let features = [
        has(std::arch::is_x86_feature_detected!("avx2"), "avx2"),
        has(
            std::arch::is_x86_feature_detected!("avx512ifma"),
            "avx512ifma",
        ),
    ]
    .join(", ");
    #[cfg(not(target_arch = "x86_64"))]
    let features = has(false, "x86-64 vector instructions");
    format!("{model}, {cores} cores, {features}")
}

/// Now, UTC, as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    utc(secs)
}

/// `secs` since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ` (the proleptic Gregorian calendar,
/// after Howard Hinnant's `civil_from_days`).
fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::report::Target;

    /// A small entry with a figure of each kind of target and one distribution.
    pub(crate) fn sample(date: &str, fanout_272: f64) -> Entry {
        let figure =
            |scenario: &str, name: &str, value, unit: &str, baseline, target| FigureRecord {
                figure: Figure {
                    scenario: scenario.into(),
                    name: name.into(),
                    value,
                    unit: unit.into(),
                    baseline_name: "bare relay".into(),
                    baseline,
                    target,
                },
                met: None,
            };
        Entry {
            date: date.into(),
            commit: "abc1234".into(),
            command: "confide-bench fanout --record".into(),
            load_start: Some(vec![1.0, 2.0, 3.0]),
            load_end: None,
            cpu: None,
            imported: false,
            label: None,
            sizes: serde_json::json!({"groups": 10}),
            figures: vec![
                figure(
                    "fan-out",
                    "272 B ciphertext: delivered messages/s",
                    fanout_272,
                    "msg/s",
                    100_000.0,
                    Some(Target::RatioAtLeast(0.6)),
                ),
                figure(
                    "latency",
                    "272 B at 7000 posts/s (half max): p99",
                    6.0,
                    "ms",
                    0.5,
                    Some(Target::ValueBelowRatioAtMost(10.0, 3.0)),
                ),
            ],
            distributions: vec![Distribution {
                scenario: "latency".into(),
                name: "272 B".into(),
                side: "Confide".into(),
                percentiles: vec![(0.0, 0.2), (50.0, 1.2), (99.0, 6.0), (100.0, 20.0)],
            }],
        }
    }

    #[test]
    fn a_recorded_entry_reads_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deeper").join("history.jsonl");
        let mut newer = sample("2026-12-06T05:00:00Z", 60_000.0);
        newer.cpu = Some(cpu());
        let mut older = sample("2026-11-28T20:29:00Z", 30_000.0);
        older.imported = true;
        older.label = Some("run A".into());
        append(&path, &newer).unwrap();
        append(&path, &older).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2, "one line per entry");
        assert_eq!(read(&path).unwrap(), vec![older, newer], "sorted by date");
    }

    /// The processor is named with the one feature that changes a signature check's cost
    /// most, present or not.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_processor_is_recorded_with_whether_it_has_avx512_ifma() {
        let cpu = cpu();
        assert!(cpu.contains("avx512ifma"), "{cpu}");
        assert!(cpu.contains(" cores, "), "{cpu}");
        assert_eq!(
            cpu.contains("no avx512ifma"),
            !std::arch::is_x86_feature_detected!("avx512ifma"),
            "{cpu}"
        );
    }

    #[test]
    fn a_broken_line_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        std::fs::write(&path, "{\"date\": 1}\n").unwrap();
        let error = format!("{:#}", read(&path).unwrap_err());
        assert!(error.contains("history.jsonl:1"), "{error}");
    }

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_796_532_245), "2026-12-06T04:44:05Z");
    }
}
