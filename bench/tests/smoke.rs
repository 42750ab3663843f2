//! The harness cannot rot: every scenario runs with tiny sizes, in-process, in the test suite.
//! This asserts that the harness works end to end, never how fast anything is.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use confide_bench::{Options, Scenario, ServerMode, Sizes};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_runs_in_smoke_mode() {
    let opts = Options {
        sizes: Sizes::smoke(),
        mode: ServerMode::InProcess,
    };
    let report = confide_bench::run(Scenario::All, &opts).await.unwrap();
    let scenarios: std::collections::BTreeSet<&str> =
        report.figures.iter().map(|f| f.scenario.as_str()).collect();
    for expected in [
        "fan-out",
        "latency",
        "durable acks",
        "memory",
        "slow consumer",
        "backlog",
    ] {
        assert!(scenarios.contains(expected), "no figure for {expected}");
    }
    for figure in &report.figures {
        assert!(
            figure.value.is_finite() && figure.baseline.is_finite(),
            "{figure:?}"
        );
    }
    assert!(report.to_markdown().contains("| fan-out |"));
}
