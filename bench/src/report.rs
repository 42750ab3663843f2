//! Figures and how they are printed: every figure is a value, the baseline it is compared with
//! (measured in the same run on the same machine), their ratio, and the target if there is one.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// A target a figure is held to.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum Target {
    /// The ratio must be at least this.
    RatioAtLeast(f64),
    /// The ratio must be below this.
    RatioBelow(f64),
    /// The value itself must be below this.
    ValueBelow(f64),
    /// The value itself must be at most this.
    ValueAtMost(f64),
    /// The value may exceed the baseline by at most this.
    ExcessAtMost(f64),
    /// The value must be below the first, and the ratio at most the second (issue 20's latency
    /// target: p99 under 10 ms and at most three times the relay's).
    ValueBelowRatioAtMost(f64, f64),
}

impl Target {
    fn met(self, value: f64, baseline: f64) -> bool {
        let ratio = value / baseline;
        match self {
            Target::ExcessAtMost(t) => value - baseline <= t,
            Target::RatioAtLeast(t) => ratio >= t,
            Target::RatioBelow(t) => ratio < t,
            Target::ValueBelow(t) => value < t,
            Target::ValueAtMost(t) => value <= t,
            Target::ValueBelowRatioAtMost(v, r) => value < v && ratio <= r,
        }
    }

    /// The target in words, for the tables.
    pub fn describe(self, unit: &str) -> String {
        match self {
            Target::RatioAtLeast(t) => format!("ratio ≥ {t}"),
            Target::RatioBelow(t) => format!("ratio < {t}"),
            Target::ValueBelow(t) => format!("< {} {unit}", fmt_num(t)),
            Target::ValueAtMost(t) => format!("≤ {} {unit}", fmt_num(t)),
            Target::ExcessAtMost(t) => format!("≤ baseline + {} {unit}", fmt_num(t)),
            Target::ValueBelowRatioAtMost(v, r) => {
                format!("< {} {unit} and ratio ≤ {r}", fmt_num(v))
            }
        }
    }
}

/// One measured figure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    /// The scenario it belongs to.
    pub scenario: String,
    /// What was measured.
    pub name: String,
    /// The measured value.
    pub value: f64,
    /// Its unit.
    pub unit: String,
    /// What it is compared with.
    pub baseline_name: String,
    /// The baseline's value, in the same unit.
    pub baseline: f64,
    /// The target, if the issue sets one.
    #[serde(default)]
    pub target: Option<Target>,
}

impl Figure {
    /// `value / baseline`.
    pub fn ratio(&self) -> f64 {
        if self.baseline == 0.0 {
            f64::NAN
        } else {
            self.value / self.baseline
        }
    }

    /// Whether the target is met (`None` without a target).
    pub fn met(&self) -> Option<bool> {
        self.target.map(|t| t.met(self.value, self.baseline))
    }
}

/// Percentiles of one latency histogram: what the charts draw as a distribution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Distribution {
    /// The scenario it belongs to.
    pub scenario: String,
    /// Which run, e.g. `272 B` or `272 B, PostgreSQL`.
    pub name: String,
    /// Whose latencies: `Confide`, `bare relay`, …
    pub side: String,
    /// `(percentile, milliseconds)` pairs, percentiles ascending.
    pub percentiles: Vec<(f64, f64)>,
}

/// The percentiles a [`Distribution`] keeps: enough nines to see the tail.
pub const PERCENTILES: [f64; 12] = [
    0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.99, 100.0,
];

impl Distribution {
    /// [`PERCENTILES`] of `histogram`, which holds nanoseconds.
    pub fn of(
        scenario: &str,
        name: impl Into<String>,
        side: impl Into<String>,
        histogram: &hdrhistogram::Histogram<u64>,
    ) -> Distribution {
        let percentiles = PERCENTILES
            .iter()
            .map(|&p| {
                // The extremes are the histogram's own min and max, not a quantile's bucket.
                let ns = if p <= 0.0 {
                    histogram.min()
                } else if p >= 100.0 {
                    histogram.max()
                } else {
                    histogram.value_at_quantile(p / 100.0)
                };
                (p, ns as f64 / 1e6)
            })
            .collect();
        Distribution {
            scenario: scenario.to_string(),
            name: name.into(),
            side: side.into(),
            percentiles,
        }
    }
}

/// Everything one invocation measured.
#[derive(Default, Debug)]
pub struct Report {
    /// The figures, in the order measured.
    pub figures: Vec<Figure>,
    /// Latency distributions behind the latency figures, for the history and its charts.
    pub distributions: Vec<Distribution>,
    /// Context: batch sizes, disconnects, memory samples.
    pub notes: Vec<String>,
}

impl Report {
    /// Adds a figure and prints it at once (long runs show progress).
    #[allow(clippy::too_many_arguments)]
    pub fn figure(
        &mut self,
        scenario: &str,
        name: impl Into<String>,
        value: f64,
        unit: &str,
        baseline_name: impl Into<String>,
        baseline: f64,
        target: Option<Target>,
    ) {
        let figure = Figure {
            scenario: scenario.to_string(),
            name: name.into(),
            value,
            unit: unit.to_string(),
            baseline_name: baseline_name.into(),
            baseline,
            target,
        };
        eprintln!("  {}", row(&figure));
        self.figures.push(figure);
    }

    /// Adds a note and prints it.
    pub fn note(&mut self, scenario: &str, text: impl Into<String>) {
        let text = format!("{scenario}: {}", text.into());
        eprintln!("  note: {text}");
        self.notes.push(text);
    }

    /// The report as a Markdown table plus notes.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "| scenario | figure | value | baseline | ratio | target | met |\n|---|---|---|---|---|---|---|\n",
        );
        for f in &self.figures {
            let _ = writeln!(out, "{}", row(f));
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for note in &self.notes {
                let _ = writeln!(out, "- {note}");
            }
        }
        out
    }

    /// Whether every figure with a target met it.
    pub fn all_met(&self) -> bool {
        self.figures.iter().all(|f| f.met() != Some(false))
    }
}

fn row(f: &Figure) -> String {
    let target = f.target.map(|t| t.describe(&f.unit)).unwrap_or_default();
    let met = match f.met() {
        Some(true) => "yes",
        Some(false) => "**no**",
        None => "",
    };
    format!(
        "| {} | {} | {} {} | {}: {} {} | {:.2} | {} | {} |",
        f.scenario,
        f.name,
        fmt_num(f.value),
        f.unit,
        f.baseline_name,
        fmt_num(f.baseline),
        f.unit,
        f.ratio(),
        target,
        met
    )
}

/// Three significant figures, without scientific notation.
pub fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let a = v.abs();
    if a >= 100.0 {
        format!("{:.0}", v)
    } else if a >= 10.0 {
        format!("{:.1}", v)
    } else if a >= 1.0 {
        format!("{:.2}", v)
    } else {
        format!("{:.3}", v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_judge_ratio_or_value() {
        let mut report = Report::default();
        report.figure(
            "s",
            "f",
            6.0,
            "x",
            "b",
            10.0,
            Some(Target::RatioAtLeast(0.5)),
        );
        report.figure(
            "s",
            "g",
            12.0,
            "ms",
            "b",
            1.0,
            Some(Target::ValueBelow(10.0)),
        );
        assert_eq!(report.figures[0].met(), Some(true));
        assert_eq!(report.figures[1].met(), Some(false));
        assert!(!report.all_met());
        assert!(report.to_markdown().contains("| s | g | 12.0 ms |"));
    }
}
