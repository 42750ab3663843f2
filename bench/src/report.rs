//! Figures and how they are printed: every figure is a value, the baseline it is compared with
//! (measured in the same run on the same machine), their ratio, and the target if there is one.

use std::fmt::Write as _;

/// A target a figure is held to.
#[derive(Clone, Copy, Debug)]
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
        }
    }

    fn describe(self, unit: &str) -> String {
        match self {
            Target::RatioAtLeast(t) => format!("ratio ≥ {t}"),
            Target::RatioBelow(t) => format!("ratio < {t}"),
            Target::ValueBelow(t) => format!("< {} {unit}", fmt_num(t)),
            Target::ValueAtMost(t) => format!("≤ {} {unit}", fmt_num(t)),
            Target::ExcessAtMost(t) => format!("≤ baseline + {} {unit}", fmt_num(t)),
        }
    }
}

/// One measured figure.
#[derive(Clone, Debug)]
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

/// Everything one invocation measured.
#[derive(Default, Debug)]
pub struct Report {
    /// The figures, in the order measured.
    pub figures: Vec<Figure>,
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
