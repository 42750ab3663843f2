//! SVG charts of the history (issue 20): `confide-bench charts` draws what `--record` kept, so
//! that BENCHMARKS.md shows the trend across runs and the peer side by side.
//!
//! The charts are drawn with `plotters`' SVG backend only: text is written as `<text>`
//! elements (no font files are read, and none are referenced), so the files show as they are
//! on GitHub. Each chart is drawn into a string first, so that a chart that fails leaves no
//! half-written file.
//!
//! | file | what |
//! |---|---|
//! | `throughput.svg` | fan-out ÷ relay, delivered messages/s, at 272 B and 4112 B per run, with the targets |
//! | `latency.svg` | the newest run's latency percentiles, Confide and the relay, per size |
//! | `durable.svg` | durable acks ÷ the fdatasync floor, and server CPU per acknowledged post, per run |
//! | `peer.svg` | Confide, the relay and the peer (Matrix Synapse) side by side, if a run measured it |

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use plotters::prelude::*;

use crate::history::{self, Entry};
use crate::report::Distribution;
use crate::report::Figure;

/// Width and height of every chart, in pixels.
const SIZE: (u32, u32) = (900, 480);
/// The series colours, in order (readable on white and on GitHub's dark background).
const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(127, 127, 127),
];
/// Target lines.
const TARGET_COLOUR: RGBColor = RGBColor(200, 0, 0);
/// The fan-out sizes drawn, with issue 20's target for each.
const FANOUT: [(&str, f64); 2] = [("272 B", 0.6), ("4112 B", 0.5)];
/// The scenario name of the peer comparison (`confide-bench peer`).
pub const PEER: &str = "peer";

/// Reads the history at `history` and writes the charts into `out_dir`; returns the files
/// written. A chart without data is skipped with a note on standard error.
pub fn render(history: &Path, out_dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = history::read(history)?;
    if entries.is_empty() {
        bail!(
            "{} holds no runs: record some with `confide-bench <scenario> --record` first",
            history.display()
        );
    }
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let charts: [(&str, Option<String>); 4] = [
        ("throughput.svg", throughput(&entries)?),
        ("latency.svg", latency(&entries)?),
        ("durable.svg", durable(&entries)?),
        ("peer.svg", peer(&entries)?),
    ];
    let mut written = Vec::new();
    for (file, svg) in charts {
        let Some(svg) = svg else {
            eprintln!("note: no data for {file} in {}; skipped", history.display());
            continue;
        };
        let path = out_dir.join(file);
        std::fs::write(&path, svg).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// A short name for a run on an axis: its label if it has one, else its date and commit.
fn run_label(entry: &Entry) -> String {
    // `YYYY-MM-DDTHH:MM…` → `MM-DD HH:MM`.
    let date = entry
        .date
        .get(5..16)
        .map_or_else(|| entry.date.clone(), |d| d.replace('T', " "));
    match &entry.label {
        Some(label) => format!("{label} {}", date.get(..5).unwrap_or(&date)),
        None => date,
    }
}

/// The figure of `entry` in `scenario` named exactly `name`.
fn figure<'a>(entry: &'a Entry, scenario: &str, name: &str) -> Option<&'a Figure> {
    entry
        .measured()
        .find(|f| f.scenario == scenario && f.name == name)
}

/// One line per series over the runs that have any of them: `(series, [(run index, y)])`, and
/// the runs' labels.
type PerRun = (Vec<(String, Vec<(f64, f64)>)>, Vec<String>);

/// `values(entry)` gives `(series, y)` pairs; runs without any are left out of the axis.
fn per_run(entries: &[Entry], values: impl Fn(&Entry) -> Vec<(String, f64)>) -> PerRun {
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    let mut labels = Vec::new();
    for entry in entries {
        let found: Vec<_> = values(entry)
            .into_iter()
            .filter(|(_, y)| y.is_finite())
            .collect();
        if found.is_empty() {
            continue;
        }
        let x = labels.len() as f64;
        labels.push(run_label(entry));
        for (name, y) in found {
            match series.iter_mut().find(|(n, _)| *n == name) {
                Some((_, points)) => points.push((x, y)),
                None => series.push((name, vec![(x, y)])),
            }
        }
    }
    // The same series in the same colour on every panel, whichever run had it first.
    series.sort_by(|a, b| a.0.cmp(&b.0));
    (series, labels)
}

/// A horizontal target line: its legend, its value, and the series it belongs to (by a part
/// of that series' name), whose colour it takes.
type TargetLine = (String, f64, String);

/// A line chart of `series` over runs, linear y from 0, with horizontal `targets`.
fn runs_chart(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    title: &str,
    y_desc: &str,
    (series, labels): &PerRun,
    targets: &[TargetLine],
) -> anyhow::Result<()> {
    // Headroom above the data for the legend.
    let top = series
        .iter()
        .flat_map(|(_, points)| points.iter().map(|p| p.1))
        .chain(targets.iter().map(|t| t.1))
        .fold(0.0f64, f64::max)
        * 1.4;
    let top = if top > 0.0 { top } else { 1.0 };
    let last = labels.len().saturating_sub(1).max(1) as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(55)
        .build_cartesian_2d(-0.3..last + 0.3, 0.0..top)?;
    // At most about 80 pixels per label: every `step`-th run is named.
    let room = (area.dim_in_pixel().0 as usize / 80).max(1);
    let step = labels.len().div_ceil(room).max(1);
    let label_at = |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize).is_multiple_of(step) {
            labels.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .x_labels(labels.len().max(2) * 4)
        .x_label_formatter(&label_at)
        .x_label_style(("sans-serif", 11))
        .y_desc(y_desc)
        .disable_x_mesh()
        .light_line_style(WHITE)
        .draw()?;
    for (i, (name, points)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                colour.stroke_width(2),
            ))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], colour.stroke_width(2)));
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, colour.filled())))?;
    }
    for (name, y, of) in targets {
        let colour = series
            .iter()
            .position(|(n, _)| n.contains(of.as_str()))
            .map_or(TARGET_COLOUR, |i| COLOURS[i % COLOURS.len()]);
        let style = colour.stroke_width(1);
        chart
            .draw_series(DashedLineSeries::new(
                [(-0.3, *y), (last + 0.3, *y)],
                6,
                4,
                style,
            ))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 8, y)], style));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 12))
        .draw()?;
    Ok(())
}

/// (a) Fan-out ÷ relay, delivered messages/s, at 272 B and 4112 B per run, with the targets.
fn throughput(entries: &[Entry]) -> anyhow::Result<Option<String>> {
    let data = per_run(entries, |entry| {
        FANOUT
            .iter()
            .filter_map(|(size, _)| {
                let name = format!("{size} ciphertext: delivered messages/s");
                figure(entry, "fan-out", &name)
                    .map(|f| (format!("Confide ÷ relay, {size}"), f.ratio()))
            })
            .collect()
    });
    if data.0.is_empty() {
        return Ok(None);
    }
    let targets: Vec<_> = FANOUT
        .iter()
        .map(|(size, t)| (format!("target at {size}: ≥ {t}"), *t, size.to_string()))
        .collect();
    svg(|area| {
        runs_chart(
            area,
            "Fan-out: delivered messages/s, Confide ÷ bare relay, per run",
            "ratio to the relay in the same run",
            &data,
            &targets,
        )
    })
    .map(Some)
}

/// `(connections × window, what)` of a durable figure on sled, e.g. `("100 × 10", "cpu")`.
fn durable_figure(f: &Figure) -> Option<(String, &'static str)> {
    if f.scenario != "durable acks" || f.name.contains("PostgreSQL") {
        return None;
    }
    let (run, what) = f.name.split_once(" in flight")?;
    let run = run.replace(" connections", "");
    if what.ends_with("acknowledged posts/s") {
        Some((run, "rate"))
    } else if what.ends_with("server CPU per acknowledged post") {
        Some((run, "cpu"))
    } else {
        None
    }
}

/// (c) Durable acks ÷ the fdatasync floor, and server CPU per acknowledged post, per run.
fn durable(entries: &[Entry]) -> anyhow::Result<Option<String>> {
    let pick = |kind: &'static str, value: fn(&Figure) -> f64| {
        per_run(entries, move |entry| {
            entry
                .measured()
                .filter_map(|f| match durable_figure(f) {
                    Some((run, k)) if k == kind => Some((run, value(f))),
                    _ => None,
                })
                .collect()
        })
    };
    let rate = pick("rate", Figure::ratio);
    let cpu = pick("cpu", |f| f.value);
    if rate.0.is_empty() && cpu.0.is_empty() {
        return Ok(None);
    }
    let cpu_targets: Vec<_> = entries
        .iter()
        .rev()
        .flat_map(Entry::measured)
        .filter(|f| durable_figure(f).is_some_and(|(_, k)| k == "cpu"))
        .find_map(|f| match f.target {
            Some(crate::report::Target::ValueAtMost(t)) => {
                let run = durable_figure(f).map(|(run, _)| run).unwrap_or_default();
                Some((format!("target at {run}: ≤ {t} µs"), t, run))
            }
            _ => None,
        })
        .into_iter()
        .collect();
    svg(|area| {
        let (left, right) = area.split_horizontally(SIZE.0 / 2);
        runs_chart(
            &left,
            "Durable acks ÷ write+fdatasync floor",
            "ratio to the floor in the same run",
            &rate,
            &[],
        )?;
        runs_chart(
            &right,
            "Server CPU per acknowledged post",
            "µs",
            &cpu,
            &cpu_targets,
        )
    })
    .map(Some)
}

/// Percentile → position on the "nines" axis: 0 → 0, 90 → 1, 99 → 2, 99.9 → 3, …; the
/// maximum (100) is drawn one step after 99.99.
fn nines(p: f64) -> f64 {
    if p >= 100.0 {
        5.0
    } else {
        (-(1.0 - p / 100.0).log10()).min(5.0)
    }
}

/// (b) The newest run's latency percentiles: Confide and the relay per size.
fn latency(entries: &[Entry]) -> anyhow::Result<Option<String>> {
    let Some(entry) = entries.iter().rev().find(|e| !e.distributions.is_empty()) else {
        return Ok(None);
    };
    let title = format!(
        "Latency, send → delivery, at half max: {} ({})",
        run_label(entry),
        entry.command
    );
    svg(|area| draw_latency(area, &title, &entry.distributions)).map(Some)
}

fn draw_latency(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    title: &str,
    distributions: &[Distribution],
) -> anyhow::Result<()> {
    let values = distributions
        .iter()
        .flat_map(|d| d.percentiles.iter().map(|p| p.1))
        .filter(|v| *v > 0.0);
    let (low, high) = values.fold((f64::INFINITY, 0.0f64), |(l, h), v| (l.min(v), h.max(v)));
    let (low, high) = if low.is_finite() {
        (low / 1.5, high * 1.5)
    } else {
        (0.01, 10.0)
    };
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..5.0f64, (low..high).log_scale())?;
    let nine_label = |x: &f64| match x.round() as i64 {
        _ if (x - x.round()).abs() > 1e-6 => String::new(),
        0 => "0".into(),
        1 => "90".into(),
        2 => "99".into(),
        3 => "99.9".into(),
        4 => "99.99".into(),
        5 => "max".into(),
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .x_labels(6)
        .x_label_formatter(&nine_label)
        .y_label_formatter(&axis_num)
        .x_desc("percentile")
        .light_line_style(WHITE)
        .y_desc("ms (log)")
        .draw()?;
    // One colour per size, Confide solid, the baseline dashed.
    let sizes: Vec<&str> = {
        let mut sizes: Vec<&str> = distributions.iter().map(|d| d.name.as_str()).collect();
        sizes.dedup();
        sizes
    };
    for d in distributions {
        let i = sizes.iter().position(|s| *s == d.name).unwrap_or(0);
        let colour = COLOURS[i % COLOURS.len()];
        let points: Vec<(f64, f64)> = d
            .percentiles
            .iter()
            .map(|&(p, ms)| (nines(p), ms.max(low)))
            .collect();
        let label = format!("{}, {}", d.side, d.name);
        let solid = d.side == "Confide";
        let style = colour.stroke_width(if solid { 2 } else { 1 });
        if solid {
            chart
                .draw_series(LineSeries::new(points.iter().copied(), style))?
                .label(label)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], style));
        } else {
            chart
                .draw_series(DashedLineSeries::new(points.iter().copied(), 6, 4, style))?
                .label(label)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 8, y)], style));
        }
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, colour.filled())))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .position(SeriesLabelPosition::LowerRight)
        .label_font(("sans-serif", 12))
        .draw()?;
    Ok(())
}

/// One measure of the peer comparison: its name, unit, and each side's value.
struct Measure {
    name: String,
    unit: String,
    sides: Vec<(String, f64)>,
}

/// The newest run's `peer` figures as `confide-bench peer` names them — "<size and rate>,
/// <side>: <metric>", the value the side's and the baseline the side it is compared with —
/// grouped by size and metric (deliveries per second and p99 only), Confide, the relay and the
/// peer each once.
fn peer_measures(entry: &Entry) -> Vec<Measure> {
    let mut measures: Vec<Measure> = Vec::new();
    for f in entry.measured().filter(|f| f.scenario == PEER) {
        let Some((head, metric)) = f.name.rsplit_once(": ") else {
            continue;
        };
        let Some((what, side)) = head.rsplit_once(", ") else {
            continue;
        };
        if metric != "delivered messages/s" && metric != "p99" {
            continue;
        }
        let size = what.split(" B").next().unwrap_or(what);
        let name = format!("{size} B: {metric}");
        let index = match measures
            .iter()
            .position(|m| m.name == name && m.unit == f.unit)
        {
            Some(index) => index,
            None => {
                measures.push(Measure {
                    name,
                    unit: f.unit.clone(),
                    sides: Vec::new(),
                });
                measures.len() - 1
            }
        };
        let measure = &mut measures[index];
        for (s, v) in [(side, f.value), (f.baseline_name.as_str(), f.baseline)] {
            if !measure.sides.iter().any(|(known, _)| known == s) {
                measure.sides.push((s.to_string(), v));
            }
        }
    }
    for m in &mut measures {
        m.sides.sort_by_key(|(side, _)| side_rank(side));
    }
    measures
}

/// Confide first, then the relay, then the peer.
fn side_rank(side: &str) -> u8 {
    if side == "Confide" {
        0
    } else if side.contains("relay") {
        1
    } else {
        2
    }
}

/// (d) Confide, the relay and the peer side by side: one panel per unit (deliveries/s, ms), a
/// group of bars per figure.
fn peer(entries: &[Entry]) -> anyhow::Result<Option<String>> {
    let Some(entry) = entries
        .iter()
        .rev()
        .find(|e| e.measured().any(|f| f.scenario == PEER))
    else {
        return Ok(None);
    };
    let measures = peer_measures(entry);
    let mut by_unit: BTreeMap<&str, Vec<&Measure>> = BTreeMap::new();
    for m in &measures {
        by_unit.entry(m.unit.as_str()).or_default().push(m);
    }
    let mut sides: Vec<&str> = Vec::new();
    for m in &measures {
        for (s, _) in &m.sides {
            if !sides.contains(&s.as_str()) {
                sides.push(s);
            }
        }
    }
    sides.sort_by_key(|side| side_rank(side));
    let title = format!("Side by side: {}", run_label(entry));
    svg(|area| {
        let area = area.titled(&title, ("sans-serif", 18))?;
        let panels = area.split_evenly((by_unit.len().max(1), 1));
        for (panel, (unit, measures)) in panels.iter().zip(&by_unit) {
            draw_bars(panel, unit, measures, &sides)?;
        }
        Ok(())
    })
    .map(Some)
}

fn draw_bars(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    unit: &str,
    measures: &[&Measure],
    sides: &[&str],
) -> anyhow::Result<()> {
    let width = sides.len() as f64 + 1.0;
    let top = measures
        .iter()
        .flat_map(|m| m.sides.iter().map(|s| s.1))
        .fold(0.0f64, f64::max)
        // Headroom above the bars for the figure names and the legend.
        * 1.6;
    let top = if top > 0.0 { top } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .x_label_area_size(10)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..width * measures.len() as f64, 0.0..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc(unit)
        .light_line_style(WHITE)
        .y_label_formatter(&axis_num)
        .draw()?;
    for (i, side) in sides.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let bars: Vec<_> = measures
            .iter()
            .enumerate()
            .filter_map(|(g, m)| {
                let value = m.sides.iter().find(|(s, _)| s == side)?.1;
                let x = g as f64 * width + 0.5 + i as f64;
                Some((x, value))
            })
            .collect();
        chart
            .draw_series(
                bars.iter()
                    .map(|&(x, v)| Rectangle::new([(x, 0.0), (x + 0.9, v)], colour.filled())),
            )?
            .label(*side)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], colour.filled()));
        chart.draw_series(bars.iter().map(|&(x, v)| {
            Text::new(
                crate::report::fmt_num(v),
                (x, v + top * 0.02),
                ("sans-serif", 11),
            )
        }))?;
    }
    chart.draw_series(measures.iter().enumerate().map(|(g, m)| {
        Text::new(
            m.name.clone(),
            (g as f64 * width + 0.5, top * 0.95),
            ("sans-serif", 12),
        )
    }))?;
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 12))
        .draw()?;
    Ok(())
}

/// An axis label: zero as `0`, the rest with three significant figures.
fn axis_num(v: &f64) -> String {
    if *v == 0.0 {
        "0".into()
    } else {
        crate::report::fmt_num(*v)
    }
}

/// Draws with `draw` on a white [`SIZE`] canvas and returns the SVG text.
fn svg(
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, plotters::coord::Shift>) -> anyhow::Result<()>,
) -> anyhow::Result<String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root)?;
        root.present()?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::FigureRecord;
    use crate::history::tests::sample;
    use crate::report::Target;

    fn write_history(dir: &Path, entries: &[Entry]) -> PathBuf {
        let path = dir.join("history.jsonl");
        for e in entries {
            history::append(&path, e).unwrap();
        }
        path
    }

    #[test]
    fn charts_render_from_a_small_history_with_their_series_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut older = sample("2026-11-28T20:29:00Z", 30_000.0);
        older.imported = true;
        older.label = Some("run A".into());
        let newer = sample("2026-12-06T05:00:00Z", 60_000.0);
        let path = write_history(dir.path(), &[newer, older]);
        let out = dir.path().join("charts");
        let written = render(&path, &out).unwrap();
        let names: Vec<_> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["throughput.svg", "latency.svg"],
            "no durable or peer data"
        );
        let throughput = std::fs::read_to_string(out.join("throughput.svg")).unwrap();
        assert!(
            throughput.contains("Confide ÷ relay, 272 B"),
            "{throughput}"
        );
        assert!(throughput.contains("target at 272 B: ≥ 0.6"));
        assert!(
            throughput.contains("run A 11-28"),
            "the imported run's label"
        );
        let latency = std::fs::read_to_string(out.join("latency.svg")).unwrap();
        assert!(latency.contains("Confide, 272 B"), "{latency}");
        for svg in [&throughput, &latency] {
            assert!(svg.starts_with("<svg"), "a standalone SVG");
            assert!(!svg.contains("href"), "nothing external");
        }
    }

    #[test]
    fn peer_and_durable_figures_get_their_charts() {
        let dir = tempfile::tempdir().unwrap();
        let mut entry = sample("2026-12-06T05:00:00Z", 60_000.0);
        let fig = |scenario: &str, name: &str, unit: &str, baseline_name: &str, value, baseline| {
            FigureRecord {
                figure: Figure {
                    scenario: scenario.into(),
                    name: name.into(),
                    value,
                    unit: unit.into(),
                    baseline_name: baseline_name.into(),
                    baseline,
                    target: None,
                },
                met: None,
            }
        };
        entry.figures.extend([
            fig(
                "peer",
                "272 B ciphertext, Matrix Synapse: delivered messages/s",
                "msg/s",
                "Confide",
                900.0,
                60_000.0,
            ),
            fig(
                "peer",
                "272 B ciphertext, Confide: delivered messages/s",
                "msg/s",
                "bare relay",
                60_000.0,
                90_000.0,
            ),
            fig(
                "peer",
                "272 B at 47 posts/s (half the lower max), Matrix Synapse: p99",
                "ms",
                "Confide",
                80.0,
                6.0,
            ),
            fig(
                "peer",
                "272 B at 47 posts/s (half the lower max), Matrix Synapse: p50",
                "ms",
                "Confide",
                40.0,
                3.0,
            ),
            fig(
                "durable acks",
                "100 connections × 10 in flight: server CPU per acknowledged post",
                "µs",
                "10 × 1 in flight",
                70.0,
                140.0,
            ),
        ]);
        entry.figures.last_mut().unwrap().figure.target = Some(Target::ValueAtMost(30.0));
        let path = write_history(dir.path(), &[entry]);
        let out = dir.path().join("charts");
        render(&path, &out).unwrap();
        let peer = std::fs::read_to_string(out.join("peer.svg")).unwrap();
        for side in ["Confide", "bare relay", "Matrix Synapse"] {
            assert!(peer.contains(side), "{side} missing from {peer}");
        }
        for measure in ["272 B: delivered messages/s", "272 B: p99"] {
            assert!(peer.contains(measure), "{measure} missing from {peer}");
        }
        assert!(!peer.contains("p50"), "only deliveries and p99 are drawn");
        let durable = std::fs::read_to_string(out.join("durable.svg")).unwrap();
        assert!(durable.contains("100 × 10"), "{durable}");
        assert!(durable.contains("target at 100 × 10: ≤ 30 µs"));
    }

    #[test]
    fn an_empty_history_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        std::fs::write(&path, "\n").unwrap();
        let error = render(&path, &dir.path().join("charts")).unwrap_err();
        assert!(error.to_string().contains("holds no runs"), "{error}");
        assert!(!dir.path().join("charts").exists(), "nothing written");
    }

    #[test]
    fn the_nines_axis_spaces_each_nine_evenly() {
        assert_eq!(nines(0.0), 0.0);
        assert!((nines(99.0) - 2.0).abs() < 1e-9);
        assert!((nines(99.99) - 4.0).abs() < 1e-9);
        assert_eq!(nines(100.0), 5.0);
    }
}
