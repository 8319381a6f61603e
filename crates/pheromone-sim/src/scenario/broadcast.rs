//! The `broadcast` scenario: N nodes on a random connected graph run the real
//! `pheromone_core::broadcast` state machine; messages are published from random origins,
//! optionally with node kills mid-run and packet loss; the report measures delivery,
//! duplicates, hops, latency and control overhead.
//!
//! Signature checks in the simulation go through [`SimVerifier`]: by default a memo shared
//! by all nodes of one run, keyed by the exact (origin, signed bytes, signature) triple.
//! Ed25519 verification is a pure function, so the memo gives every node the answer the
//! real check would (the first node to see a triple really verifies it); it only saves
//! 10,000 nodes from repeating the same 100 verifications. `full_verify` turns it off.
//! The core's production path always verifies.

use crate::graph;
use crate::scenario::{percentile, Fnv};
use crate::{slot, LinkConfig, NodeId, Sim};
use pheromone_core::broadcast::{
    Broadcast, Config, Ed25519Verifier, Event, MessageId, Metrics, SignatureVerifier, Strategy,
    Topic,
};
use pheromone_core::identity::{Keypair, PeerId};
use rand::seq::SliceRandom;
use rand::Rng;
use serde::Serialize;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Signature checking in the simulator: memoised across nodes, or the full check each time.
#[derive(Debug, Clone)]
pub enum SimVerifier {
    /// Shares results across all nodes of a run; exact keys, so it never changes an answer.
    Memo(Rc<RefCell<HashMap<Vec<u8>, bool>>>),
    /// Verifies every time, like production.
    Full(Ed25519Verifier),
}

impl SignatureVerifier for SimVerifier {
    fn verify(&mut self, origin: &PeerId, signed: &[u8], signature: &[u8]) -> bool {
        match self {
            SimVerifier::Full(v) => v.verify(origin, signed, signature),
            SimVerifier::Memo(memo) => {
                let origin_bytes = origin.as_bytes();
                let mut key =
                    Vec::with_capacity(2 + origin_bytes.len() + signature.len() + signed.len());
                key.push(origin_bytes.len() as u8);
                key.extend_from_slice(origin_bytes);
                key.push(signature.len() as u8);
                key.extend_from_slice(signature);
                key.extend_from_slice(signed);
                let mut memo = memo.borrow_mut();
                if let Some(&ok) = memo.get(&key) {
                    return ok;
                }
                let ok = Ed25519Verifier.verify(origin, signed, signature);
                memo.insert(key, ok);
                ok
            }
        }
    }
}

/// The state machine each node runs.
pub type SimBroadcast = Broadcast<SimVerifier>;

/// Parameters of one broadcast run.
#[derive(Debug, Clone)]
pub struct BroadcastParams {
    /// Number of nodes.
    pub nodes: usize,
    /// Forwarding strategy.
    pub strategy: Strategy,
    /// Average degree of the random graph.
    pub degree: usize,
    /// Messages published, from random live origins.
    pub messages: usize,
    /// Fraction of nodes killed just before the middle message is published.
    pub kill: f64,
    /// Loss probability of every link.
    pub loss: f64,
    /// The seed everything derives from.
    pub seed: u64,
    /// Fraction of nodes subscribed to the topic (the others only relay).
    pub subscribers: f64,
    /// Payload size in bytes.
    pub payload: usize,
    /// Time between two publications.
    pub interval: Duration,
    /// Link latencies are drawn uniformly from this range (inclusive).
    pub latency: (Duration, Duration),
    /// Verify every signature instead of sharing results across nodes.
    pub full_verify: bool,
    /// Tree strategy: links a message is flooded over near its origin before it follows
    /// the tree (`Config::eager_hops`).
    pub eager_hops: u8,
    /// Run on these edges (node indices below `nodes`) instead of a random graph, e.g. to
    /// compare with real daemons linked the same way.
    pub edges: Option<Vec<(usize, usize)>>,
    /// The nodes' identities, in node order, instead of seeded ones (e.g. real daemons'
    /// keys, so that the same node becomes the tree's root); missing ones are seeded.
    pub keys: Vec<Keypair>,
}

impl Default for BroadcastParams {
    fn default() -> Self {
        Self {
            nodes: 1000,
            strategy: Strategy::Tree,
            degree: 8,
            messages: 100,
            kill: 0.0,
            loss: 0.0,
            seed: 1,
            subscribers: 1.0,
            payload: 256,
            interval: Duration::from_millis(50),
            latency: (Duration::from_millis(5), Duration::from_millis(50)),
            full_verify: false,
            eager_hops: Config::default().eager_hops,
            edges: None,
            keys: Vec::new(),
        }
    }
}

/// Results of one run (one JSON object).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BroadcastReport {
    /// Number of nodes.
    pub nodes: usize,
    /// `flood` or `tree`.
    pub strategy: &'static str,
    /// Average degree asked for.
    pub degree: usize,
    /// Messages published.
    pub messages: usize,
    /// Fraction of nodes killed mid-run.
    pub kill: f64,
    /// Link loss probability.
    pub loss: f64,
    /// Fraction of nodes subscribed.
    pub subscribers: f64,
    /// Links flooded near the origin before the tree takes over (tree strategy).
    pub eager_hops: u8,
    /// The seed.
    pub seed: u64,
    /// Delivered / expected (message, subscriber) pairs. Expected: subscribers other than
    /// the origin, alive at the end, and (for messages published after the kill)
    /// connected to the origin through live nodes.
    pub delivery_ratio: f64,
    /// The same, only for messages published after the kill (equal to `delivery_ratio`
    /// without kills).
    pub delivery_ratio_after_kill: f64,
    /// Pairs delivered.
    pub delivered: u64,
    /// Pairs expected.
    pub expected: u64,
    /// Pairs left out of `expected` because the subscriber was cut off from the origin by
    /// the kills.
    pub unreachable: u64,
    /// Copies of messages received (every GOSSIP frame, first copies included) per live
    /// node per message: 1.0 is the ideal, flood is about the degree.
    pub duplicates_per_node_per_msg: f64,
    /// The same, not counting first copies: pure redundancy.
    pub extra_copies_per_node_per_msg: f64,
    /// Mean hop count of delivered copies.
    pub hops_mean: f64,
    /// 99th percentile hop count.
    pub hops_p99: f64,
    /// Hops taken over shortest hops: the sum of delivered copies' hop counts divided by
    /// the sum of the fewest hops from their origins (1.0: every copy took a shortest
    /// path in hops; flooding over links of unequal latency takes a little more).
    pub hop_stretch: f64,
    /// Median publish-to-delivery latency.
    pub latency_ms_p50: f64,
    /// 99th percentile latency.
    pub latency_ms_p99: f64,
    /// Control-frame bytes (IHAVE, ACK, GRAFT, PRUNE, INTEREST) sent after warm-up, per
    /// message.
    pub control_bytes_per_msg: f64,
    /// GOSSIP-frame bytes sent per message.
    pub gossip_bytes_per_msg: f64,
    /// Messages handed to the same subscriber twice (storm freedom requires 0).
    pub double_deliveries: u64,
    /// Links both ends push eagerly at the end of the run (a spanning tree of the live
    /// nodes has nodes − 1; flood counts every interested link).
    pub tree_edges: usize,
    /// Connected components of that eager graph over live nodes (1: the tree spans).
    pub tree_components: usize,
    /// GRAFTs sent by all nodes.
    pub grafts: u64,
    /// PRUNEs sent by all nodes.
    pub prunes: u64,
    /// Frames dropped as invalid by any node.
    pub dropped_invalid: u64,
    /// Nodes killed.
    pub killed: usize,
    /// Frames lost to link loss.
    pub frames_lost: u64,
    /// Events the simulator processed.
    pub events: u64,
    /// Virtual time the run covered, in seconds.
    pub sim_s: f64,
    /// Real time the run took, in seconds.
    pub wall_s: f64,
    /// Digest of every delivery (time, node, message, hops) in order; equal for equal
    /// seeds.
    pub trace_digest: String,
}

struct Published {
    at: Instant,
    origin: NodeId,
    after_kill: bool,
    delivered: Vec<bool>,
}

const TOPIC: &str = "sim/broadcast";
const WARM_UP: Duration = Duration::from_secs(2);
const SETTLE_LIMIT: Duration = Duration::from_secs(120);

/// Runs one broadcast experiment.
pub fn run(params: &BroadcastParams) -> BroadcastReport {
    #[allow(clippy::disallowed_methods)]
    let wall = Instant::now();
    let n = params.nodes.max(2);
    let mut sim: Sim<Event> = Sim::new(params.seed);
    let memo = Rc::new(RefCell::new(HashMap::new()));
    let mut config = Config::with_strategy(params.strategy);
    config.eager_hops = params.eager_hops;
    let topic = Topic::new(TOPIC).unwrap_or_else(|_| unreachable!("constant topic is valid"));

    let mut node_config = |sim: &mut Sim<Event>, index: usize| {
        let seed: [u8; 32] = sim.rng().gen();
        config.first_seq = sim.rng().gen_range(1..1 << 40);
        let keypair = params
            .keys
            .get(index)
            .cloned()
            .unwrap_or_else(|| Keypair::from_seed(seed));
        let verifier = if params.full_verify {
            SimVerifier::Full(Ed25519Verifier)
        } else {
            SimVerifier::Memo(memo.clone())
        };
        let peer = keypair.peer_id();
        let node = Broadcast::with_verifier(keypair, config.clone(), verifier);
        (peer, vec![slot(node, |e| e)])
    };
    for index in 0..n {
        let (peer, node) = node_config(&mut sim, index);
        sim.add_node(peer, node);
    }
    let edges = match &params.edges {
        Some(edges) => edges
            .iter()
            .copied()
            .filter(|&(a, b)| a < n && b < n && a != b)
            .collect(),
        None => graph::random_connected(n, params.degree, sim.rng()),
    };
    let (lo, hi) = params.latency;
    for &(a, b) in &edges {
        let latency_ns = sim
            .rng()
            .gen_range(lo.as_nanos() as u64..=hi.as_nanos().max(lo.as_nanos()) as u64);
        let link = LinkConfig {
            latency: Duration::from_nanos(latency_ns),
            jitter: Duration::ZERO,
            loss: params.loss,
        };
        sim.connect(a, b, link);
    }
    let mut order: Vec<NodeId> = (0..n).collect();
    order.shuffle(sim.rng());
    let subscribers = ((params.subscribers.clamp(0.0, 1.0) * n as f64).round() as usize).max(1);
    let mut subscribed = vec![false; n];
    for &node in &order[..subscribers.min(n)] {
        subscribed[node] = true;
        sim.with_overlay(node, |b: &mut SimBroadcast, now| b.subscribe(now, &topic));
    }

    let mut rec = Recorder {
        start: sim.start(),
        ids: HashMap::new(),
        published: Vec::with_capacity(params.messages),
        latencies: Vec::new(),
        hops: Vec::new(),
        deliveries: Vec::new(),
        double: 0,
        digest: Fnv::default(),
    };
    sim.run_for(WARM_UP, &mut |at, node, msg| rec.record(at, node, msg));
    let control_at_warm_up: u64 = live_metrics(&sim).map(|m| m.control_bytes_sent).sum();

    let mut harvested: Vec<Metrics> = Vec::new();
    let mut killed = 0usize;
    let kill_count = (params.kill.clamp(0.0, 1.0) * n as f64).round() as usize;
    let mut kill_done = kill_count == 0;
    let mut denominator = 0u64;
    let mut payload = vec![0u8; params.payload.max(8)];
    for index in 0..params.messages {
        if !kill_done && index >= params.messages / 2 {
            let mut victims: Vec<NodeId> = (0..n).collect();
            victims.shuffle(sim.rng());
            for &victim in victims.iter().take(kill_count) {
                if let Some(stack) = sim.kill(victim) {
                    harvested.extend(stack.get::<SimBroadcast>().map(SimBroadcast::metrics));
                    killed += 1;
                }
            }
            kill_done = true;
        }
        let live: Vec<NodeId> = (0..n).filter(|&x| sim.is_alive(x)).collect();
        let Some(&origin) = live.choose(sim.rng()) else {
            break;
        };
        denominator += live.len().saturating_sub(1) as u64;
        sim.rng().fill(&mut payload[..]);
        payload[..8].copy_from_slice(&(index as u64).to_be_bytes());
        let now = sim.now();
        let id = sim
            .with_overlay(origin, |b: &mut SimBroadcast, now| {
                b.publish(now, &topic, &payload)
            })
            .and_then(Result::ok);
        if let Some(id) = id {
            rec.ids.insert(id, rec.published.len());
            rec.published.push(Published {
                at: now,
                origin,
                after_kill: killed > 0,
                delivered: vec![false; n],
            });
        }
        sim.run_for(params.interval, &mut |at, node, msg| {
            rec.record(at, node, msg)
        });
    }
    let deadline = sim.now() + SETTLE_LIMIT;
    sim.run_until_quiet(deadline, &mut |at, node, msg| rec.record(at, node, msg));

    // Messages published before the kill could reach every node of the whole graph;
    // later ones only the nodes still connected to their origin through live nodes.
    let comps_before = graph::components(n, &edges, |_| true);
    let comps_after = graph::components(n, &edges, |x| sim.is_alive(x));
    let (mut delivered, mut expected, mut unreachable) = (0u64, 0u64, 0u64);
    let (mut delivered_after, mut expected_after) = (0u64, 0u64);
    for p in &rec.published {
        for node in 0..n {
            if node == p.origin || !subscribed[node] || !sim.is_alive(node) {
                continue;
            }
            let comps = if p.after_kill {
                &comps_after
            } else {
                &comps_before
            };
            if comps[node] != comps[p.origin] {
                unreachable += 1;
                continue;
            }
            expected += 1;
            let got = u64::from(p.delivered[node]);
            delivered += got;
            if p.after_kill || kill_count == 0 {
                expected_after += 1;
                delivered_after += got;
            }
        }
    }
    let all: Vec<Metrics> = live_metrics(&sim).chain(harvested).collect();
    let copies: u64 = all.iter().map(|m| m.gossip_received).sum();
    let extra: u64 = all.iter().map(|m| m.duplicates).sum();
    let control: u64 = all.iter().map(|m| m.control_bytes_sent).sum::<u64>() - control_at_warm_up;
    let gossip_bytes: u64 = all.iter().map(|m| m.gossip_bytes_sent).sum();
    let dropped_invalid: u64 = all.iter().map(|m| m.dropped.total()).sum();
    let grafts: u64 = all.iter().map(|m| m.grafts_sent).sum();
    let prunes: u64 = all.iter().map(|m| m.prunes_sent).sum();
    let (tree_edges, tree_components) = eager_graph(&sim);
    let hop_stretch = hop_stretch(n, &edges, &rec, |x| sim.is_alive(x));
    let Recorder {
        published,
        mut latencies,
        mut hops,
        double,
        digest,
        ..
    } = rec;
    latencies.sort_by(f64::total_cmp);
    hops.sort_by(f64::total_cmp);
    let msgs = published.len().max(1) as f64;
    let ratio = |a: u64, b: u64| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    BroadcastReport {
        nodes: n,
        strategy: params.strategy.as_str(),
        degree: params.degree,
        messages: published.len(),
        kill: params.kill,
        loss: params.loss,
        subscribers: params.subscribers,
        eager_hops: params.eager_hops,
        seed: params.seed,
        delivery_ratio: ratio(delivered, expected),
        delivery_ratio_after_kill: ratio(delivered_after, expected_after),
        delivered,
        expected,
        unreachable,
        duplicates_per_node_per_msg: ratio(copies, denominator),
        extra_copies_per_node_per_msg: ratio(extra, denominator),
        hops_mean: if hops.is_empty() {
            0.0
        } else {
            hops.iter().sum::<f64>() / hops.len() as f64
        },
        hops_p99: percentile(&hops, 99.0),
        hop_stretch,
        latency_ms_p50: percentile(&latencies, 50.0),
        latency_ms_p99: percentile(&latencies, 99.0),
        control_bytes_per_msg: control as f64 / msgs,
        gossip_bytes_per_msg: gossip_bytes as f64 / msgs,
        double_deliveries: double,
        tree_edges,
        tree_components,
        grafts,
        prunes,
        dropped_invalid,
        killed,
        frames_lost: sim.stats().frames_lost,
        events: sim.stats().events,
        sim_s: sim.elapsed().as_secs_f64(),
        wall_s: wall.elapsed().as_secs_f64(),
        trace_digest: format!("{:016x}", digest.finish()),
    }
}

/// Collects deliveries as the simulation reports them.
struct Recorder {
    start: Instant,
    ids: HashMap<MessageId, usize>,
    published: Vec<Published>,
    latencies: Vec<f64>,
    hops: Vec<f64>,
    /// (message index, node, hops) of every first delivery.
    deliveries: Vec<(usize, NodeId, u8)>,
    double: u64,
    digest: Fnv,
}

impl Recorder {
    fn record(&mut self, at: Instant, node: NodeId, event: Event) {
        let Event::Delivered(msg) = event else {
            return;
        };
        let Some(&index) = self.ids.get(&msg.id) else {
            return;
        };
        let Some(p) = self.published.get_mut(index) else {
            return;
        };
        if p.delivered[node] {
            self.double += 1;
            return;
        }
        p.delivered[node] = true;
        self.latencies.push((at - p.at).as_secs_f64() * 1000.0);
        self.hops.push(f64::from(msg.hops));
        self.deliveries.push((index, node, msg.hops));
        self.digest.write_u64((at - self.start).as_nanos() as u64);
        self.digest.write_u64(node as u64);
        self.digest.write_u64(index as u64);
        self.digest.write_u64(u64::from(msg.hops));
    }
}

/// Sum of delivered hops over the sum of shortest hops from each message's origin (over
/// the whole graph before the kill, over live nodes after it).
fn hop_stretch(
    n: usize,
    edges: &[(usize, usize)],
    rec: &Recorder,
    alive: impl Fn(NodeId) -> bool,
) -> f64 {
    let mut adjacency = vec![Vec::new(); n];
    for &(a, b) in edges {
        adjacency[a].push(b);
        adjacency[b].push(a);
    }
    let mut shortest: HashMap<(NodeId, bool), Vec<u32>> = HashMap::new();
    let (mut taken, mut best) = (0u64, 0u64);
    for &(index, node, hops) in &rec.deliveries {
        let p = &rec.published[index];
        let dist = shortest
            .entry((p.origin, p.after_kill))
            .or_insert_with(|| graph_bfs(&adjacency, p.origin, |x| !p.after_kill || alive(x)));
        if let Some(&d) = dist.get(node).filter(|d| **d != u32::MAX) {
            taken += u64::from(hops);
            best += u64::from(d);
        }
    }
    if best == 0 {
        1.0
    } else {
        taken as f64 / best as f64
    }
}

/// Hop distances from `from` over nodes that pass `keep` (`u32::MAX`: unreachable).
fn graph_bfs(adjacency: &[Vec<usize>], from: usize, keep: impl Fn(usize) -> bool) -> Vec<u32> {
    let mut dist = vec![u32::MAX; adjacency.len()];
    let mut queue = std::collections::VecDeque::from([from]);
    dist[from] = 0;
    while let Some(x) = queue.pop_front() {
        for &y in &adjacency[x] {
            if dist[y] == u32::MAX && keep(y) {
                dist[y] = dist[x] + 1;
                queue.push_back(y);
            }
        }
    }
    dist
}

/// Edges pushed eagerly from both ends, and the components they form over live nodes.
fn eager_graph(sim: &Sim<Event>) -> (usize, usize) {
    let n = sim.len();
    let eager: Vec<Vec<PeerId>> = (0..n)
        .map(|x| {
            sim.overlay::<SimBroadcast>(x)
                .map(|b| b.eager_peers(TOPIC))
                .unwrap_or_default()
        })
        .collect();
    let mut edges = Vec::new();
    for (x, peers) in eager.iter().enumerate() {
        let Some(me) = sim.peer_id(x) else { continue };
        for peer in peers {
            if let Some(y) = sim.node_id(peer) {
                if x < y && eager[y].contains(&me) {
                    edges.push((x, y));
                }
            }
        }
    }
    let comps = graph::components(n, &edges, |x| sim.is_alive(x));
    let mut roots: Vec<usize> = comps.into_iter().filter(|&c| c != usize::MAX).collect();
    roots.sort_unstable();
    roots.dedup();
    (edges.len(), roots.len())
}

fn live_metrics(sim: &Sim<Event>) -> impl Iterator<Item = Metrics> + '_ {
    (0..sim.len()).filter_map(|x| sim.overlay::<SimBroadcast>(x).map(SimBroadcast::metrics))
}
