//! The simulator's own contract, with a trivial overlay: latency, loss, partitions, kills
//! and revivals, timers, requests and dials across the reachability model, idle links,
//! event hooks, and determinism.

use bytes::Bytes;
use pheromone_core::identity::{Keypair, PeerId};
use pheromone_core::overlay::{
    DialFailure, DialId, InboundId, Neighbour, Output, Overlay, RequestFailure, RequestId, Wire,
};
use pheromone_sim::{slot, LinkConfig, Reach, Sim, Stack};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

const PROTOCOL: &str = "/test/echo/1.0.0";

/// Echoes "ping" frames with "pong" and requests with their bytes reversed, reports every
/// frame, response, dial result and neighbour change as an event, and can arm one timer.
#[derive(Default)]
struct Echo {
    out: VecDeque<Output<String>>,
    timer: Option<Instant>,
    local: Option<PeerId>,
}

impl Echo {
    fn new(peer: PeerId) -> Self {
        Self {
            local: Some(peer),
            ..Self::default()
        }
    }

    fn send(&mut self, to: PeerId, text: &'static str) {
        self.out.push_back(Output::Send {
            to,
            frame: Bytes::from_static(text.as_bytes()),
        });
    }

    fn ask(&mut self, to: PeerId, id: u64, text: &'static str) {
        self.out.push_back(Output::Request {
            id: RequestId(id),
            to,
            addrs: Vec::new(),
            request: Bytes::from_static(text.as_bytes()),
        });
    }

    fn dial(&mut self, id: u64, peer: PeerId) {
        self.out.push_back(Output::Dial {
            id: DialId(id),
            peer: Some(peer),
            addrs: Vec::new(),
        });
    }

    fn event(&mut self, text: String) {
        self.out.push_back(Output::Event(text));
    }
}

impl Overlay for Echo {
    type Event = String;
    type Error = std::io::Error;

    fn protocol(&self) -> Option<&str> {
        Some(PROTOCOL)
    }

    fn wire(&self) -> Wire {
        Wire::Frames
    }

    fn max_message_len(&self) -> usize {
        1024
    }

    fn local_peer_id(&self) -> PeerId {
        self.local.unwrap_or_else(|| peer(0))
    }

    fn neighbour_up(&mut self, _: Instant, _: Neighbour) {
        self.event("up".into());
    }

    fn neighbour_down(&mut self, _: Instant, _: PeerId) {
        self.event("down".into());
    }

    fn handle_frame(&mut self, _: Instant, from: PeerId, frame: &[u8]) -> Result<(), Self::Error> {
        let text = String::from_utf8_lossy(frame).into_owned();
        if text == "bad" {
            return Err(std::io::Error::other("bad frame"));
        }
        if text == "ping" {
            self.send(from, "pong");
        }
        self.event(text);
        Ok(())
    }

    fn handle_request(
        &mut self,
        _: Instant,
        _: PeerId,
        id: InboundId,
        request: &[u8],
    ) -> Result<(), Self::Error> {
        let mut answer = request.to_vec();
        answer.reverse();
        self.out.push_back(Output::Respond {
            id,
            response: answer.into(),
        });
        Ok(())
    }

    fn handle_response(
        &mut self,
        _: Instant,
        id: RequestId,
        response: Result<&[u8], RequestFailure>,
    ) -> Result<(), Self::Error> {
        let text = match response {
            Ok(bytes) => format!("answer {} {}", id.0, String::from_utf8_lossy(bytes)),
            Err(e) => format!("failed {} {e:?}", id.0),
        };
        self.event(text);
        Ok(())
    }

    fn handle_dial_result(&mut self, _: Instant, id: DialId, result: Result<PeerId, DialFailure>) {
        self.event(format!("dialled {} {}", id.0, result.is_ok()));
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.timer.is_some_and(|t| t <= now) {
            self.timer = None;
            self.event("timer".into());
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.timer
    }

    fn poll_output(&mut self) -> Option<Output<String>> {
        self.out.pop_front()
    }
}

fn peer(i: u8) -> PeerId {
    Keypair::from_seed([i; 32]).peer_id()
}

fn echo(i: u8) -> Stack<String> {
    vec![slot(Echo::new(peer(i)), |e| e)].into()
}

fn nodes(sim: &mut Sim<String>, count: u8) {
    for i in 1..=count {
        sim.add_node(peer(i), echo(i));
    }
}

fn two_nodes(link: LinkConfig) -> Sim<String> {
    let mut sim = Sim::new(1);
    nodes(&mut sim, 2);
    sim.connect(0, 1, link);
    sim
}

type Log = Vec<(Duration, usize, String)>;

fn run(sim: &mut Sim<String>, d: Duration) -> Log {
    let start = sim.start();
    let mut log = Vec::new();
    sim.run_for(d, &mut |at, node, e| log.push((at - start, node, e)));
    log
}

fn find(log: &Log, what: &str) -> Option<(Duration, usize)> {
    log.iter()
        .find(|(_, _, e)| e == what)
        .map(|(t, n, _)| (*t, *n))
}

#[test]
fn frames_take_the_link_latency_and_timers_fire_on_time() {
    let link = LinkConfig {
        latency: Duration::from_millis(30),
        ..LinkConfig::default()
    };
    let mut sim = two_nodes(link);
    let to = peer(2);
    sim.with_overlay(0, |p: &mut Echo, now| {
        p.send(to, "ping");
        p.timer = Some(now + Duration::from_millis(45));
    });
    let log = run(&mut sim, Duration::from_secs(1));
    assert_eq!(find(&log, "ping"), Some((Duration::from_millis(30), 1)));
    assert_eq!(find(&log, "timer"), Some((Duration::from_millis(45), 0)));
    assert_eq!(find(&log, "pong"), Some((Duration::from_millis(60), 0)));
    assert_eq!(sim.stats().frames_delivered, 2);
}

#[test]
fn both_ends_of_a_link_become_neighbours_and_refused_frames_are_counted() {
    let mut sim = Sim::new(1);
    nodes(&mut sim, 2);
    sim.connect(0, 1, LinkConfig::default());
    let log = run(&mut sim, Duration::from_millis(1));
    assert_eq!(log.iter().filter(|(_, _, e)| e == "up").count(), 2);
    let to = peer(2);
    sim.with_overlay(0, |p: &mut Echo, _| p.send(to, "bad"));
    run(&mut sim, Duration::from_secs(1));
    assert_eq!(sim.stats().inputs_refused, 1);
}

#[test]
fn partitions_drop_frames_and_heal() {
    let mut sim = two_nodes(LinkConfig::default());
    let to = peer(2);
    sim.partition(|node| node as u32);
    sim.with_overlay(0, |p: &mut Echo, _| p.send(to, "ping"));
    assert!(find(&run(&mut sim, Duration::from_secs(1)), "ping").is_none());
    assert_eq!(sim.stats().frames_dropped, 1);
    sim.heal();
    sim.with_overlay(0, |p: &mut Echo, _| p.send(to, "ping"));
    assert!(find(&run(&mut sim, Duration::from_secs(1)), "pong").is_some());
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
    sim.with_overlay(0, |p: &mut Echo, _| p.send(to, "ping"));
    assert!(sim.kill(1).is_some());
    assert!(!sim.is_alive(1));
    assert!(sim.with_overlay(1, |_: &mut Echo, _| ()).is_none());
    let log = run(&mut sim, Duration::from_secs(1));
    assert!(log
        .iter()
        .any(|(t, n, e)| *n == 0 && e == "down" && t.as_millis() == 21));
    assert!(
        find(&log, "ping").is_none(),
        "frame in flight died with the node"
    );
    sim.revive(1, echo(2));
    assert!(sim.link_is_up(0, 1));
    sim.with_overlay(0, |p: &mut Echo, _| p.send(to, "ping"));
    let log = run(&mut sim, Duration::from_secs(1));
    assert!(log.iter().any(|(_, n, e)| *n == 0 && e == "pong"));
}

#[test]
fn requests_connect_on_demand_and_the_link_closes_when_idle() {
    let mut sim = Sim::new(3);
    nodes(&mut sim, 3);
    // Without reachability an unlinked peer cannot be asked.
    let to = peer(2);
    sim.with_overlay(0, |p: &mut Echo, _| p.ask(to, 1, "abc"));
    assert!(find(&run(&mut sim, Duration::from_secs(1)), "failed 1 Dial").is_some());
    sim.set_full_reachability(Some(Reach::default()));
    sim.set_idle_timeout(Duration::from_secs(10));
    sim.with_overlay(0, |p: &mut Echo, _| p.ask(to, 2, "abc"));
    let one_way = sim.latency(0, 1);
    let log = run(&mut sim, Duration::from_secs(1));
    // A dial (one and a half round trips), then the request and its answer.
    let (at, node) = find(&log, "answer 2 cba").expect("answered");
    assert_eq!((at, node), (one_way * 5 + Duration::from_secs(1), 0));
    assert!(sim.link_is_up(0, 1), "the connection made for the request");
    assert_eq!(log.iter().filter(|(_, _, e)| e == "up").count(), 2);
    // Unused for the idle timeout, it closes.
    run(&mut sim, Duration::from_secs(11));
    assert!(!sim.link_is_up(0, 1));
    // A dead host refuses.
    sim.kill(2);
    let gone = peer(3);
    sim.with_overlay(0, |p: &mut Echo, _| p.ask(gone, 3, "x"));
    assert!(find(&run(&mut sim, Duration::from_secs(1)), "failed 3 Dial").is_some());
}

#[test]
fn overlay_dials_make_lasting_links_and_report_back() {
    let mut sim = Sim::new(4);
    nodes(&mut sim, 3);
    sim.set_full_reachability(Some(Reach::default()));
    sim.set_idle_timeout(Duration::from_secs(1));
    let (to, dead) = (peer(2), peer(3));
    sim.kill(2);
    sim.with_overlay(0, |p: &mut Echo, _| {
        p.dial(1, to);
        p.dial(2, dead);
    });
    let log = run(&mut sim, Duration::from_secs(5));
    assert!(find(&log, "dialled 1 true").is_some());
    assert!(find(&log, "dialled 2 false").is_some());
    assert!(sim.link_is_up(0, 1), "a dialled link is not an idle one");
    assert_eq!(sim.stats().dials_failed, 1);
}

#[test]
fn an_event_hook_lets_one_overlay_feed_another() {
    let mut sim: Sim<String> = Sim::new(5);
    nodes(&mut sim, 2);
    sim.set_event_hook(Box::new(
        |now, event: &String, stack: &mut Stack<String>| {
            if event == "ping" {
                if let Some(echo) = stack.get_mut::<Echo>() {
                    echo.timer = Some(now);
                }
            }
        },
    ));
    sim.connect(0, 1, LinkConfig::default());
    let to = peer(2);
    sim.with_overlay(0, |p: &mut Echo, _| p.send(to, "ping"));
    let log = run(&mut sim, Duration::from_secs(1));
    assert_eq!(find(&log, "timer").map(|(_, n)| n), Some(1));
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
        nodes(&mut sim, 2);
        sim.connect(0, 1, link);
        let to = peer(2);
        for _ in 0..200 {
            sim.with_overlay(0, |p: &mut Echo, _| p.send(to, "x"));
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
