//! The `kad` scenario at scale (the simulator's request and dial model is tested in
//! `sim.rs`).

use pheromone_sim::scenario::kad::{self, KadParams, KadReport};

fn check(report: &KadReport, min_success: f64, max_mean: f64, max_p99: f64) {
    eprintln!("{}", serde_json::to_string(report).unwrap());
    assert!(report.success_ratio >= min_success, "{report:?}");
    assert!(report.hops_mean <= max_mean, "{report:?}");
    assert!(report.hops_p99 <= max_p99, "{report:?}");
    assert_eq!(report.bootstrap_ok_ratio, 1.0, "{report:?}");
}

/// The full size: 10,000 nodes join one after another from one bootstrap node,
/// then 1,000 lookups of random live nodes, every one of which must succeed.
#[test]
fn ten_thousand_nodes_join_from_one_and_every_lookup_succeeds() {
    let report = kad::run(&KadParams {
        nodes: 10_000,
        lookups: 1000,
        seed: 5,
        ..KadParams::default()
    });
    assert_eq!(report.lookups, 1000);
    assert_eq!(report.abandoned, 0);
    // log2(10,000)/2 ≈ 6.6 and log2(10,000) ≈ 13.3.
    check(&report, 1.0, 6.6, 13.0);
}

/// 30% of the nodes leave without notice during the lookups and as many join; lookups of
/// live nodes by nodes that stay must still succeed (≥ 99%, the target). Lookups
/// whose source itself left before they ended are reported apart (`abandoned`).
#[test]
fn lookups_of_live_nodes_succeed_under_thirty_percent_churn() {
    let report = kad::run(&KadParams {
        nodes: 2000,
        lookups: 300,
        churn: 0.3,
        seed: 9,
        ..KadParams::default()
    });
    assert_eq!(report.left, 600);
    assert_eq!(report.joined_late, 600);
    assert_eq!(report.failed_unfinished, 0);
    assert!(report.abandoned < 15, "{report:?}");
    check(&report, 0.99, 11.0 / 2.0, 11.0);
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let params = KadParams {
        nodes: 300,
        lookups: 50,
        churn: 0.2,
        seed: 11,
        ..KadParams::default()
    };
    let (a, b) = (kad::run(&params), kad::run(&params));
    assert_eq!(a.digest, b.digest);
    assert_eq!(a.frames_sent, b.frames_sent);
    check(&a, 0.98, 5.0, 9.0);
}
