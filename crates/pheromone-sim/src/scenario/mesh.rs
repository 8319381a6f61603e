//! The `mesh` scenario: every node runs the production stack of overlays side by side —
//! discovery (Kademlia and the connection manager), routing and broadcast — on one
//! seeded random network, exactly as the node's overlay driver runs them.
//!
//! Nodes join one after another, each bootstrapping from a random node that joined
//! before it; the connection manager dials what Kademlia learns until every node holds
//! its low watermark of links; routes converge over those links; then lookups of random
//! nodes from random nodes, broadcasts from random origins, and a check of the route
//! table by walking next hops over live links. Every link has its latency from the
//! [`Reach`](crate::Reach) model (nodes at random points) and loses 1% of what it carries.
//! The report is one JSON object; the same seed gives the same `trace_digest`.

use crate::scenario::broadcast::{SimBroadcast, SimVerifier};
use crate::scenario::Fnv;
use crate::{slot, NodeId, Reach, Sim, SimOverlay};
use pheromone_core::broadcast::{self, Topic};
use pheromone_core::connmgr::{self, ConnectionManager};
use pheromone_core::discovery::{self, Discovery};
use pheromone_core::identity::{Keypair, PeerId};
use pheromone_core::kad::{self, Kademlia, QueryId, QueryKind, QueryOutcome};
use pheromone_core::route::{self, Router};
use rand::Rng;
use serde::Serialize;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

const TOPIC: &str = "sim/mesh";

/// What any overlay of a mesh node reports.
#[derive(Debug, Clone)]
pub enum MeshEvent {
    /// From discovery.
    Discovery(discovery::Event),
    /// From the router.
    Route(route::Event),
    /// From broadcast.
    Broadcast(broadcast::Event),
}

/// Parameters of one mesh run.
#[derive(Debug, Clone)]
pub struct MeshParams {
    /// Nodes.
    pub nodes: usize,
    /// The seed everything derives from.
    pub seed: u64,
    /// Whether routing runs (its table holds a row per destination: it does not scale to
    /// 100,000 nodes).
    pub route: bool,
    /// Time between two joins.
    pub join_interval: Duration,
    /// Quiet time after the last join, for the mesh and its routes to settle.
    pub settle: Duration,
    /// Lookups of random nodes from random nodes.
    pub lookups: usize,
    /// Broadcasts from random origins.
    pub broadcasts: usize,
    /// Payload of a broadcast.
    pub payload: usize,
    /// Node pairs whose route is checked.
    pub route_pairs: usize,
    /// Loss on every link.
    pub loss: f64,
}

impl Default for MeshParams {
    fn default() -> Self {
        Self {
            nodes: 1000,
            seed: 1,
            route: true,
            join_interval: Duration::from_millis(2),
            settle: Duration::from_secs(30),
            lookups: 1000,
            broadcasts: 20,
            payload: 256,
            route_pairs: 1000,
            loss: 0.01,
        }
    }
}

/// What one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct MeshReport {
    /// Nodes.
    pub nodes: usize,
    /// Seed.
    pub seed: u64,
    /// Lookups that ended `Found` with the target's true address.
    pub lookup_success_ratio: f64,
    /// Mean hops of successful lookups.
    pub lookup_hops_mean: f64,
    /// Delivered / expected (broadcast, subscriber) pairs.
    pub broadcast_delivery_ratio: f64,
    /// Broadcast copies received per node per broadcast (1.0 is the ideal).
    pub broadcast_copies_per_node: f64,
    /// Checked pairs whose next-hop walk over live links reaches the destination; `null`
    /// without routing.
    pub route_reachable_ratio: Option<f64>,
    /// Routing frames sent per node over the run; `null` without routing.
    pub route_frames_per_node: Option<f64>,
    /// Sequence-number raises over all nodes (each answers a request); `null` without
    /// routing.
    pub route_seqno_bumps: Option<u64>,
    /// Mean direct links per node at the end.
    pub links_per_node: f64,
    /// Mean Kademlia table size at the end.
    pub kad_table_mean: f64,
    /// Events the simulator processed.
    pub events: u64,
    /// Virtual time covered, seconds.
    pub sim_s: f64,
    /// Wall-clock time of the run, seconds.
    pub wall_s: f64,
    /// Peak resident memory of the process, MiB.
    pub peak_rss_mb: f64,
    /// Digest of every application event (time, node, kind) in order: the same seed gives
    /// the same digest.
    pub trace_digest: String,
}

/// Counts as the events arrive.
#[derive(Default)]
struct Tally {
    digest: Fnv,
    finished: HashMap<(NodeId, QueryId), kad::QueryResult>,
    delivered: HashMap<broadcast::MessageId, u32>,
}

impl Tally {
    fn record(&mut self, start: Instant, at: Instant, node: NodeId, event: MeshEvent) {
        self.digest.write_u64((at - start).as_nanos() as u64);
        self.digest.write_u64(node as u64);
        match event {
            MeshEvent::Discovery(discovery::Event::Kad(kad::Event::QueryFinished(result))) => {
                self.digest.write_u64(1);
                self.digest.write_u64(u64::from(result.hops));
                if matches!(result.kind, QueryKind::FindPeer(_)) {
                    self.finished.insert((node, result.id), result);
                }
            }
            MeshEvent::Discovery(_) => self.digest.write_u64(2),
            MeshEvent::Route(_) => self.digest.write_u64(3),
            MeshEvent::Broadcast(broadcast::Event::Delivered(message)) => {
                self.digest.write_u64(4);
                self.digest.write(message.id.as_bytes());
                *self.delivered.entry(message.id).or_default() += 1;
            }
            MeshEvent::Broadcast(_) => self.digest.write_u64(5),
        }
    }
}

/// The stack one node runs.
fn stack(
    sim: &mut Sim<MeshEvent>,
    keypair: Keypair,
    bootstrap: Option<pheromone_core::addr::Multiaddr>,
    params: &MeshParams,
    memo: &Rc<RefCell<HashMap<Vec<u8>, bool>>>,
) -> Vec<Box<dyn SimOverlay<MeshEvent>>> {
    let peer = keypair.peer_id();
    let now = sim.now();
    let seed: u64 = sim.rng().gen();
    let kad_config = kad::Config {
        // Refresh lookups every few minutes would add nothing a run of this length needs.
        refresh_interval: None,
        ..kad::Config::default()
    };
    let kad = Kademlia::new(peer, kad_config, now, seed);
    let manager = ConnectionManager::new(
        peer,
        connmgr::Config {
            bootstrap: bootstrap.into_iter().collect(),
            ..connmgr::Config::default()
        },
        now,
        seed,
    );
    let mut discovery = Discovery::new(kad, manager, now);
    if !discovery.manager().config().bootstrap.is_empty() {
        discovery.kad_mut().bootstrap(now);
    }
    let mut overlays: Vec<Box<dyn SimOverlay<MeshEvent>>> =
        vec![slot(discovery, MeshEvent::Discovery)];
    if params.route {
        let config = route::Config {
            initial_seqno: sim.rng().gen_range(0..1 << 20),
            ..route::Config::default()
        };
        overlays.push(slot(
            Router::new(keypair.clone(), config, now),
            MeshEvent::Route,
        ));
    }
    let mut broadcast_config = broadcast::Config::default();
    broadcast_config.first_seq = sim.rng().gen_range(1..1 << 40);
    let mut broadcast =
        SimBroadcast::with_verifier(keypair, broadcast_config, SimVerifier::Memo(memo.clone()));
    if let Ok(topic) = Topic::new(TOPIC) {
        let _ = broadcast.subscribe(now, &topic);
    }
    overlays.push(slot(broadcast, MeshEvent::Broadcast));
    overlays
}

/// Runs one mesh experiment.
pub fn run(params: &MeshParams) -> MeshReport {
    #[allow(clippy::disallowed_methods)]
    let wall = Instant::now();
    let n = params.nodes.max(2);
    let mut sim: Sim<MeshEvent> = Sim::new(params.seed);
    sim.set_full_reachability(Some(Reach {
        loss: params.loss,
        ..Reach::default()
    }));
    let memo = Rc::new(RefCell::new(HashMap::new()));
    let tally = RefCell::new(Tally::default());
    let start = sim.start();
    let mut on_event = |at: Instant, node: NodeId, event: MeshEvent| {
        tally.borrow_mut().record(start, at, node, event)
    };

    // Join phase: each node bootstraps from a random node that joined before it.
    let mut keys = Vec::with_capacity(n);
    for i in 0..n {
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&params.seed.to_le_bytes());
        seed[8..16].copy_from_slice(&(i as u64).to_le_bytes());
        keys.push(Keypair::from_seed(seed));
    }
    for (i, keypair) in keys.into_iter().enumerate() {
        let bootstrap = (i > 0).then(|| {
            let j = sim.rng().gen_range(0..i);
            let peer = sim.peer_id(j).unwrap_or_else(|| keypair.peer_id());
            sim.addr(j).with_p2p(peer).unwrap_or_else(|_| sim.addr(j))
        });
        let peer = keypair.peer_id();
        let overlays = stack(&mut sim, keypair, bootstrap, params, &memo);
        sim.add_node(peer, overlays);
        let at = sim.now() + params.join_interval;
        sim.run_until(at, &mut on_event);
    }
    let at = sim.now() + params.settle;
    sim.run_until(at, &mut on_event);

    // Lookups of random nodes from random nodes.
    let mut issued: HashMap<(NodeId, QueryId), PeerId> = HashMap::new();
    for _ in 0..params.lookups {
        let from = sim.rng().gen_range(0..n);
        let mut to = sim.rng().gen_range(0..n);
        if to == from {
            to = (to + 1) % n;
        }
        let Some(target) = sim.peer_id(to) else {
            continue;
        };
        if let Some(id) = sim.with_overlay(from, |d: &mut Discovery, now| {
            d.kad_mut().find_peer(now, target)
        }) {
            issued.insert((from, id), target);
        }
        let at = sim.now() + Duration::from_millis(5);
        sim.run_until(at, &mut on_event);
    }

    // Broadcasts from random origins.
    let topic = Topic::new(TOPIC).ok();
    let mut published = Vec::new();
    let mut payload = vec![0u8; params.payload.max(8)];
    for index in 0..params.broadcasts {
        let origin = sim.rng().gen_range(0..n);
        sim.rng().fill(&mut payload[..]);
        payload[..8].copy_from_slice(&(index as u64).to_be_bytes());
        if let Some(topic) = &topic {
            let id = sim
                .with_overlay(origin, |b: &mut SimBroadcast, now| {
                    b.publish(now, topic, &payload)
                })
                .and_then(Result::ok);
            published.extend(id);
        }
        let at = sim.now() + Duration::from_millis(50);
        sim.run_until(at, &mut on_event);
    }
    let at = sim.now() + Duration::from_secs(20);
    sim.run_until(at, &mut on_event);

    let tally = tally.into_inner();
    // Lookups: found with the target's true address.
    let (mut found, mut hops) = (0usize, Vec::new());
    for (key, target) in &issued {
        let Some(result) = tally.finished.get(key) else {
            continue;
        };
        let truth = sim.node_id(target).map(|t| sim.addr(t));
        if let QueryOutcome::Found(addrs) = &result.outcome {
            if truth.as_ref().is_some_and(|t| addrs.contains(t)) {
                found += 1;
                hops.push(f64::from(result.hops));
            }
        }
    }
    // Broadcast: every node but the origin should deliver each message once.
    let expected = published.len() as u64 * (n as u64 - 1);
    let delivered: u64 = published
        .iter()
        .map(|id| u64::from(tally.delivered.get(id).copied().unwrap_or(0)))
        .sum();
    let copies: u64 = (0..n)
        .filter_map(|x| sim.overlay::<SimBroadcast>(x))
        .map(|b| b.metrics().gossip_received)
        .sum();
    let route_metrics = params.route.then(|| {
        (0..n)
            .filter_map(|x| sim.overlay::<Router>(x))
            .map(|r| r.metrics())
            .fold((0u64, 0u64), |(frames, bumps), m| {
                (frames + m.frames_sent, bumps + m.seqno_bumps)
            })
    });
    let route_reachable_ratio = params
        .route
        .then(|| route_check(&mut sim, params.route_pairs));
    let links = sim.live_links().count();
    let tables: Vec<f64> = (0..n)
        .filter_map(|x| sim.overlay::<Discovery>(x))
        .map(|d| d.kad().table().len() as f64)
        .collect();
    let mean = |v: &[f64]| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    MeshReport {
        nodes: n,
        seed: params.seed,
        lookup_success_ratio: ratio(found as u64, issued.len() as u64),
        lookup_hops_mean: mean(&hops),
        broadcast_delivery_ratio: ratio(delivered, expected),
        broadcast_copies_per_node: ratio(copies, expected),
        route_reachable_ratio,
        route_frames_per_node: route_metrics.map(|(frames, _)| frames as f64 / n as f64),
        route_seqno_bumps: route_metrics.map(|(_, bumps)| bumps),
        links_per_node: 2.0 * links as f64 / n as f64,
        kad_table_mean: mean(&tables),
        events: sim.stats().events,
        sim_s: sim.elapsed().as_secs_f64(),
        wall_s: wall.elapsed().as_secs_f64(),
        peak_rss_mb: peak_rss_mb(),
        trace_digest: format!("{:016x}", tally.digest.finish()),
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}

/// The fraction of random pairs whose next-hop walk over live links reaches the
/// destination without a loop.
fn route_check(sim: &mut Sim<MeshEvent>, pairs: usize) -> f64 {
    let n = sim.len();
    let mut reached = 0usize;
    for _ in 0..pairs {
        let from = sim.rng().gen_range(0..n);
        let to = sim.rng().gen_range(0..n);
        let Some(dest) = sim.peer_id(to) else {
            continue;
        };
        let mut at = from;
        let mut seen = HashSet::new();
        let ok = loop {
            if at == to {
                break true;
            }
            if !seen.insert(at) {
                break false;
            }
            let Some(hop) = sim.overlay::<Router>(at).and_then(|r| r.next_hop(&dest)) else {
                break false;
            };
            let Some(next) = sim.node_id(&hop.peer) else {
                break false;
            };
            if !sim.link_is_up(at, next) {
                break false;
            }
            at = next;
        };
        reached += usize::from(ok);
    }
    ratio(reached as u64, pairs as u64)
}

/// The process's peak resident set (`VmHWM`), MiB; 0 where `/proc` has none.
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}
