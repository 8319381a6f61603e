//! The simulator's own contract, with a trivial protocol: latency, loss, partitions,
//! kills and revivals, timers, and determinism.

use bytes::Bytes;
use pheromone_core::identity::{Keypair, PeerId};
use pheromone_sim::{LinkConfig, Protocol, ProtocolOutput, Sim};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Echoes "ping" with "pong", reports every frame and link change as an event, and can
/// arm one timer.
#[derive(Default)]
struct Echo {
    out: VecDeque<ProtocolOutput<String>>,
    timer: Option<Instant>,
}

impl Echo {
    fn send(&mut self, to: PeerId, text: &'static str) {
        self.out.push_back(ProtocolOutput::Send {
            to,
            bytes: Bytes::from_static(text.as_bytes()),
        });
    }
}

impl Protocol for Echo {
    type Event = String;

    fn link_up(&mut self, _now: Instant, _peer: PeerId) {
        self.out.push_back(ProtocolOutput::Event("up".into()));
    }

    fn link_down(&mut self, _now: Instant, _peer: PeerId) {
        self.out.push_back(ProtocolOutput::Event("down".into()));
    }

    fn handle_message(&mut self, _now: Instant, from: PeerId, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes).into_owned();
        if text == "ping" {
            self.send(from, "pong");
        }
        self.out.push_back(ProtocolOutput::Event(text));
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.timer.is_some_and(|t| t <= now) {
            self.timer = None;
            self.out.push_back(ProtocolOutput::Event("timer".into()));
        }
    }

    fn poll_output(&mut self) -> Option<ProtocolOutput<String>> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.timer
    }
}

fn peer(i: u8) -> PeerId {
    Keypair::from_seed([i; 32]).peer_id()
}

fn two_nodes(link: LinkConfig) -> Sim<Echo> {
    let mut sim = Sim::new(1);
    sim.add_node(peer(1), Echo::default());
    sim.add_node(peer(2), Echo::default());
    sim.connect(0, 1, link);
    sim
}

type Log = Vec<(Duration, usize, String)>;

fn run(sim: &mut Sim<Echo>, d: Duration) -> Log {
    let start = sim.start();
    let mut log = Vec::new();
    sim.run_for(d, &mut |at, node, e| log.push((at - start, node, e)));
    log
}

#[test]
fn frames_take_the_link_latency_and_timers_fire_on_time() {
    let link = LinkConfig {
        latency: Duration::from_millis(30),
        ..LinkConfig::default()
    };
    let mut sim = two_nodes(link);
    let to = peer(2);
    sim.with_node(0, |p, now| {
        p.send(to, "ping");
        p.timer = Some(now + Duration::from_millis(45));
    });
    let log = run(&mut sim, Duration::from_secs(1));
    let find = |what: &str| log.iter().find(|(_, _, e)| e == what).cloned();
    assert_eq!(
        find("ping"),
        Some((Duration::from_millis(30), 1, "ping".into()))
    );
    assert_eq!(
        find("timer"),
        Some((Duration::from_millis(45), 0, "timer".into()))
    );
    assert_eq!(
        find("pong"),
        Some((Duration::from_millis(60), 0, "pong".into()))
    );
    assert_eq!(sim.stats().frames_delivered, 2);
}

#[test]
fn partitions_drop_frames_and_heal() {
    let mut sim = two_nodes(LinkConfig::default());
    let to = peer(2);
    sim.partition(|node| node as u32);
    sim.with_node(0, |p, _| p.send(to, "ping"));
    assert!(!run(&mut sim, Duration::from_secs(1))
        .iter()
        .any(|(_, _, e)| e == "ping"));
    assert_eq!(sim.stats().frames_dropped, 1);
    sim.heal();
    sim.with_node(0, |p, _| p.send(to, "ping"));
    assert!(run(&mut sim, Duration::from_secs(1))
        .iter()
        .any(|(_, _, e)| e == "pong"));
}

#[test]
fn kills_tell_neighbours_after_the_latency_and_revive_restores_links() {
    let link = LinkConfig {
        latency: Duration::from_millis(20),
        ..LinkConfig::default()
    };
    let mut sim = two_nodes(link);
    let _ = run(&mut sim, Duration::from_millis(1));
    let to = peer(2);
    sim.with_node(0, |p, _| p.send(to, "ping"));
    assert!(sim.kill(1).is_some());
    assert!(!sim.is_alive(1));
    assert!(sim.with_node(1, |_, _| ()).is_none());
    let log = run(&mut sim, Duration::from_secs(1));
    assert!(log
        .iter()
        .any(|(t, n, e)| *n == 0 && e == "down" && t.as_millis() == 21));
    assert!(
        !log.iter().any(|(_, _, e)| e == "ping"),
        "frame in flight died with the node"
    );
    sim.revive(1, Echo::default());
    assert!(sim.link_is_up(0, 1));
    sim.with_node(0, |p, _| p.send(to, "ping"));
    assert!(run(&mut sim, Duration::from_secs(1))
        .iter()
        .any(|(_, n, e)| *n == 0 && e == "pong"));
}

#[test]
fn loss_is_seeded_and_deterministic() {
    let link = LinkConfig {
        latency: Duration::from_millis(5),
        jitter: Duration::from_millis(5),
        loss: 0.3,
    };
    let outcome = |seed| {
        let mut sim = Sim::new(seed);
        sim.add_node(peer(1), Echo::default());
        sim.add_node(peer(2), Echo::default());
        sim.connect(0, 1, link);
        let to = peer(2);
        for _ in 0..200 {
            sim.with_node(0, |p, _| p.send(to, "x"));
        }
        let log = run(&mut sim, Duration::from_secs(1));
        (sim.stats(), log)
    };
    let (a, log_a) = outcome(5);
    let (b, log_b) = outcome(5);
    let (c, _) = outcome(6);
    assert_eq!(a, b);
    assert_eq!(log_a, log_b);
    assert!(a.frames_lost > 30 && a.frames_lost < 100, "{a:?}");
    assert_ne!(a.frames_lost, c.frames_lost);
}
