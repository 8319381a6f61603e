//! The `kad` scenario at scale, and the full-reachability mode it runs in.

use bytes::Bytes;
use pheromone_core::identity::{Keypair, PeerId};
use pheromone_sim::scenario::kad::{self, KadParams, KadReport};
use pheromone_sim::{LinkConfig, Protocol, ProtocolOutput, Sim};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Answers "ping" with "pong" and reports every frame.
#[derive(Default)]
struct Echo {
    out: VecDeque<ProtocolOutput<String>>,
}

impl Protocol for Echo {
    type Event = String;
    fn link_up(&mut self, _: Instant, _: PeerId) {}
    fn link_down(&mut self, _: Instant, _: PeerId) {}
    fn handle_message(&mut self, _: Instant, from: PeerId, bytes: &[u8]) {
        if bytes == b"ping" {
            self.out.push_back(ProtocolOutput::Send {
                to: from,
                bytes: Bytes::from_static(b"pong"),
            });
        }
        let text = String::from_utf8_lossy(bytes).into_owned();
        self.out.push_back(ProtocolOutput::Event(text));
    }
    fn handle_timeout(&mut self, _: Instant) {}
    fn poll_output(&mut self) -> Option<ProtocolOutput<String>> {
        self.out.pop_front()
    }
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}

fn peer(i: u8) -> PeerId {
    Keypair::from_seed([i; 32]).peer_id()
}

#[test]
fn full_reachability_delivers_without_links_and_loses_frames_to_the_dead() {
    let mut sim: Sim<Echo> = Sim::new(3);
    for i in 0..3 {
        sim.add_node(peer(i), Echo::default());
    }
    let ping = |sim: &mut Sim<Echo>, to: u8| {
        sim.with_node(0, |p, _| {
            p.out.push_back(ProtocolOutput::Send {
                to: peer(to),
                bytes: Bytes::from_static(b"ping"),
            })
        });
    };
    // Off (the default): no link, no delivery.
    ping(&mut sim, 1);
    let mut log = Vec::new();
    sim.run_for(Duration::from_secs(1), &mut |at, n, e| log.push((at, n, e)));
    assert!(log.is_empty());
    assert_eq!(sim.stats().frames_dropped, 1);

    sim.set_full_reachability(Some(LinkConfig {
        latency: Duration::from_millis(30),
        ..LinkConfig::default()
    }));
    let start = sim.now();
    ping(&mut sim, 1);
    sim.run_for(Duration::from_secs(1), &mut |at, n, e| log.push((at, n, e)));
    assert_eq!(
        log,
        vec![
            (start + Duration::from_millis(30), 1, "ping".to_owned()),
            (start + Duration::from_millis(60), 0, "pong".to_owned()),
        ]
    );
    // A frame to a node that dies before it arrives is lost, even if the node comes back.
    log.clear();
    ping(&mut sim, 2);
    sim.kill(2);
    sim.revive(2, Echo::default());
    sim.run_for(Duration::from_secs(1), &mut |at, n, e| log.push((at, n, e)));
    assert!(log.is_empty());
}

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
