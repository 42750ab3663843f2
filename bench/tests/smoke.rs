//! The harness cannot rot: every scenario runs with tiny sizes, in-process, in the test suite.
//! This asserts that the harness works end to end, never how fast anything is.
//!
//! The PostgreSQL and cluster tests need the machine's PostgreSQL (`CONFIDE_BENCH_POSTGRES`,
//! default `postgres://postgres@127.0.0.1:5432/postgres`) and NATS (`CONFIDE_BENCH_NATS`,
//! default `nats://127.0.0.1:4222`); they fail, never skip, without them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use confide_bench::{Backend, Options, Scenario, ServerMode, Sizes};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_runs_in_smoke_mode() {
    let opts = Options::new(Sizes::smoke(), ServerMode::InProcess);
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
    // The latency runs keep both sides' distributions for the history and its charts.
    let sides: std::collections::BTreeSet<&str> = report
        .distributions
        .iter()
        .filter(|d| d.scenario == "latency" && d.percentiles.len() == 12)
        .map(|d| d.side.as_str())
        .collect();
    assert_eq!(
        sides,
        ["Confide", "bare relay"].into(),
        "{:?}",
        report.distributions
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_and_durable_acks_compare_postgresql_with_sled() {
    let mut opts = Options::new(Sizes::smoke(), ServerMode::InProcess);
    opts.storages = vec![Backend::Sled, Backend::Postgres];
    let mut report = confide_bench::Report::default();
    confide_bench::scenarios::fanout::throughput(&opts, &mut report)
        .await
        .unwrap();
    confide_bench::scenarios::durable::run(&opts, &mut report)
        .await
        .unwrap();
    let names: Vec<&str> = report.figures.iter().map(|f| f.name.as_str()).collect();
    for expected in [
        "272 B ciphertext: delivered messages/s",
        "272 B ciphertext, PostgreSQL: delivered messages/s",
        "272 B ciphertext, PostgreSQL against sled: delivered messages/s",
        "2 connections × 2 in flight, PostgreSQL: acknowledged posts/s",
        "2 connections × 2 in flight, PostgreSQL against sled: acknowledged posts/s",
    ] {
        assert!(
            names.contains(&expected),
            "no figure {expected:?} in {names:?}"
        );
    }
    // The PostgreSQL runs read the round trips from the server's storage.
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("PostgreSQL: ") && n.contains("round trips")),
        "{:?}",
        report.notes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_scenario_delivers_every_message_across_three_nodes() {
    let opts = Options::new(Sizes::smoke(), ServerMode::InProcess);
    let mut report = confide_bench::Report::default();
    let deliveries = confide_bench::scenarios::cluster::run(&opts, &mut report)
        .await
        .unwrap();
    assert_eq!(deliveries.len(), 4, "{deliveries:?}");
    for run in &deliveries {
        assert!(run.expected > 0, "{run:?}");
        assert_eq!(run.delivered, run.expected, "messages lost in {}", run.run);
        if run.nodes == 1 {
            assert_eq!(run.cross_node, 0, "{run:?}");
        } else {
            // Groups of 3 over 3 nodes: every member is on its own node, so every delivery
            // crosses nodes.
            assert_eq!(run.cross_node, run.expected, "{run:?}");
        }
    }
    let names: Vec<&str> = report.figures.iter().map(|f| f.name.as_str()).collect();
    assert!(
        names
            .iter()
            .any(|n| n.contains("delivery on another node than the sender: p99")),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .any(|n| n.contains("PostgreSQL round trips per group commit")),
        "{names:?}"
    );
}
