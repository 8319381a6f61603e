//! The `route` scenario: N nodes on a line, ring, random tree or random mesh run the real
//! `pheromone_core::route` state machine; after initial convergence links are failed and
//! nodes killed one at a time, and the report measures reachability, path stretch, loops,
//! reconvergence time and control traffic.
//!
//! Routing is checked from the outside, like a packet would see it: for every ordered
//! pair of live nodes, follow `next_hop` from node to node over links that are really up.
//! A pair is *routable* when that walk reaches the destination, a *loop* when it revisits
//! a node, *stale* when a node still routes to a destination it is no longer connected to.
//! The network has *converged* when every connected pair is routable and nothing is stale
//! or looping; after a failure, the time until then is the reconvergence time.

use crate::graph;
use crate::scenario::percentile;
use crate::{slot, LinkConfig, NodeId, Sim};
use pheromone_core::identity::{Keypair, PeerId};
use pheromone_core::route::{Config, Event, Router};
use rand::seq::SliceRandom;
use rand::Rng;
use serde::Serialize;
use std::collections::VecDeque;
use std::time::Duration;

/// Shape of the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// `0 – 1 – … – n−1`.
    Line,
    /// A closed line.
    Ring,
    /// A random tree: node `i` links to a random earlier node.
    Tree,
    /// A random connected mesh of the configured average degree.
    Random,
}

impl Topology {
    /// The name used on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Topology::Line => "line",
            Topology::Ring => "ring",
            Topology::Tree => "tree",
            Topology::Random => "random",
        }
    }
}

impl std::str::FromStr for Topology {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "line" => Ok(Topology::Line),
            "ring" => Ok(Topology::Ring),
            "tree" => Ok(Topology::Tree),
            "random" | "mesh" => Ok(Topology::Random),
            other => Err(format!(
                "unknown topology {other:?} (line, ring, tree, random)"
            )),
        }
    }
}

/// A random tree on `n` nodes (each node after the first links to a uniformly chosen
/// earlier one), kept here so the scenario owns its topologies.
pub fn random_tree(n: usize, rng: &mut impl Rng) -> Vec<(usize, usize)> {
    (1..n).map(|b| (rng.gen_range(0..b), b)).collect()
}

/// Parameters of one routing run.
#[derive(Debug, Clone)]
pub struct RouteParams {
    /// Number of nodes.
    pub nodes: usize,
    /// Shape of the network.
    pub topology: Topology,
    /// Average degree of the random mesh.
    pub degree: usize,
    /// Links failed (one at a time, each after the previous reconvergence).
    pub fail_links: usize,
    /// Nodes killed (one at a time, after the link failures).
    pub kill_nodes: usize,
    /// The seed everything derives from.
    pub seed: u64,
    /// Link latencies are drawn uniformly from this range (inclusive).
    pub latency: (Duration, Duration),
    /// Virtual time between two convergence checks: the resolution of the timings.
    pub check_step: Duration,
    /// Give up waiting for (re)convergence after this long; the event counts as a failure.
    pub converge_timeout: Duration,
    /// Window over which steady-state control traffic is measured (0: not measured).
    pub steady_window: Duration,
    /// Router configuration of every node.
    pub config: Config,
}

impl Default for RouteParams {
    fn default() -> Self {
        Self {
            nodes: 100,
            topology: Topology::Random,
            degree: 6,
            fail_links: 0,
            kill_nodes: 0,
            seed: 1,
            latency: (Duration::from_millis(5), Duration::from_millis(25)),
            check_step: Duration::from_millis(10),
            converge_timeout: Duration::from_secs(30),
            steady_window: Duration::from_secs(60),
            config: Config::default(),
        }
    }
}

/// Results of one run (one JSON object).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RouteReport {
    /// Number of nodes.
    pub nodes: usize,
    /// `line`, `ring`, `tree` or `random`.
    pub topology: &'static str,
    /// Links at the start.
    pub links: usize,
    /// The seed.
    pub seed: u64,
    /// Links failed.
    pub fail_links: usize,
    /// Nodes killed.
    pub kill_nodes: usize,
    /// Time from start until every pair was routable on loop-free paths.
    pub converge_ms: f64,
    /// At the end: routable pairs / pairs connected in the live graph.
    pub reachable_ratio: f64,
    /// At the end: mean of (path length followed / shortest path length in hops).
    pub stretch_mean: f64,
    /// At the end: largest stretch.
    pub stretch_max: f64,
    /// At the end: fraction of routable pairs on a shortest path.
    pub shortest_ratio: f64,
    /// At the end: pairs whose next-hop walk loops.
    pub loops: u64,
    /// Most looping pairs seen in any check during (re)convergence (0 = loop-free even
    /// transiently).
    pub loops_transient_max: u64,
    /// At the end: routes held to destinations that are dead or cut off.
    pub stale_routes: u64,
    /// Median reconvergence time after a link failure.
    pub reconverge_ms_p50: f64,
    /// 99th percentile reconvergence time after a link failure.
    pub reconverge_ms_p99: f64,
    /// Longest reconvergence after a link failure.
    pub reconverge_ms_max: f64,
    /// Median time after a node kill until every connected pair is routable again and no
    /// node routes to the dead one.
    pub kill_reconverge_ms_p50: f64,
    /// 99th percentile of the same.
    pub kill_reconverge_ms_p99: f64,
    /// Failures or kills after which the network did not converge within the timeout.
    pub timeouts: usize,
    /// Routing bytes sent per node per second in steady state (periodic dumps).
    pub control_bytes_per_node_per_s: f64,
    /// Routing bytes sent per node during initial convergence.
    pub converge_bytes_per_node: f64,
    /// Routing bytes sent per node per link failure, until reconverged.
    pub reconverge_bytes_per_node_per_failure: f64,
    /// Mean reachable destinations per live node at the end.
    pub table_size_mean: f64,
}

/// One look at the whole network's routing.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Check {
    expected: u64,
    routable: u64,
    loops: u64,
    stale: u64,
    shortest: u64,
    stretch_sum: f64,
    stretch_max: f64,
}

impl Check {
    fn converged(&self) -> bool {
        self.routable == self.expected && self.loops == 0 && self.stale == 0
    }
}

fn check(sim: &Sim<Event>, edges: &[(usize, usize)]) -> Check {
    let n = sim.len();
    let up: Vec<(usize, usize)> = edges
        .iter()
        .copied()
        .filter(|&(a, b)| sim.link_is_up(a, b))
        .collect();
    let mut adj = vec![Vec::new(); n];
    for &(a, b) in &up {
        adj[a].push(b);
        adj[b].push(a);
    }
    let alive: Vec<bool> = (0..n).map(|i| sim.is_alive(i)).collect();
    let comps = graph::components(n, &up, |i| alive[i]);
    // The next hop of every node toward the current destination, as a node index.
    let next = |v: NodeId, d: &PeerId| -> Option<NodeId> {
        let hop = sim.overlay::<Router>(v)?.next_hop(d)?;
        sim.node_id(&hop.peer)
    };
    let mut out = Check::default();
    let mut dist = vec![u32::MAX; n];
    // Per destination: 0 unknown, 1 reaches it (len in `len`), 2 dead end, 3 loops.
    let mut state = vec![0u8; n];
    let mut len = vec![0u32; n];
    let mut on_path = vec![false; n];
    let mut path = Vec::new();
    for d in 0..n {
        let Some(dest) = sim.peer_id(d) else { continue };
        if !alive[d] {
            out.stale += (0..n)
                .filter(|&v| alive[v] && next(v, &dest).is_some())
                .count() as u64;
            continue;
        }
        dist.fill(u32::MAX);
        dist[d] = 0;
        let mut queue = VecDeque::from([d]);
        while let Some(v) = queue.pop_front() {
            for &w in &adj[v] {
                if dist[w] == u32::MAX {
                    dist[w] = dist[v] + 1;
                    queue.push_back(w);
                }
            }
        }
        state.fill(0);
        state[d] = 1;
        len[d] = 0;
        for s in 0..n {
            if !alive[s] || s == d {
                continue;
            }
            if comps[s] != comps[d] {
                if next(s, &dest).is_some() {
                    out.stale += 1;
                }
                continue;
            }
            out.expected += 1;
            path.clear();
            let mut at = s;
            let outcome = loop {
                if state[at] != 0 {
                    break state[at];
                }
                if on_path[at] {
                    break 3;
                }
                on_path[at] = true;
                path.push(at);
                match next(at, &dest) {
                    Some(hop) if sim.link_is_up(at, hop) => at = hop,
                    _ => break 2,
                }
            };
            let mut base = if outcome == 1 { len[at] } else { 0 };
            for &v in path.iter().rev() {
                on_path[v] = false;
                state[v] = outcome;
                base += 1;
                len[v] = base;
            }
            match state[s] {
                1 => {
                    out.routable += 1;
                    let stretch = f64::from(len[s]) / f64::from(dist[s].max(1));
                    out.stretch_sum += stretch;
                    out.stretch_max = out.stretch_max.max(stretch);
                    if len[s] == dist[s] {
                        out.shortest += 1;
                    }
                }
                3 => out.loops += 1,
                _ => {}
            }
        }
    }
    out
}

/// Runs until the network converges or `timeout` passes; returns the time taken (None on
/// timeout) and the most looping pairs seen on the way. Re-checks only after some route
/// changed, since nothing else can change the outcome between two steps.
fn until_converged(
    sim: &mut Sim<Event>,
    edges: &[(usize, usize)],
    params: &RouteParams,
    loops_max: &mut u64,
) -> Option<Duration> {
    let start = sim.now();
    let mut changes = 1u64;
    loop {
        if changes > 0 {
            let c = check(sim, edges);
            *loops_max = (*loops_max).max(c.loops);
            if c.converged() {
                return Some(sim.now() - start);
            }
        }
        if sim.now() - start >= params.converge_timeout {
            return None;
        }
        changes = 0;
        sim.run_for(params.check_step, &mut |_, _, e| {
            if matches!(e, Event::RouteChanged { .. }) {
                changes += 1;
            }
        });
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs one scenario.
pub fn run(params: &RouteParams) -> RouteReport {
    let n = params.nodes;
    let mut sim: Sim<Event> = Sim::new(params.seed);
    for _ in 0..n {
        let seed: [u8; 32] = sim.rng().gen();
        let keypair = Keypair::from_seed(seed);
        let peer = keypair.peer_id();
        let config = Config {
            initial_seqno: sim.rng().gen_range(0..1 << 20),
            ..params.config.clone()
        };
        let now = sim.now();
        sim.add_node(peer, vec![slot(Router::new(keypair, config, now), |e| e)]);
    }
    let edges = match params.topology {
        Topology::Line => graph::line(n),
        Topology::Ring => graph::ring(n),
        Topology::Tree => random_tree(n, sim.rng()),
        Topology::Random => graph::random_connected(n, params.degree, sim.rng()),
    };
    let (lo, hi) = params.latency;
    for &(a, b) in &edges {
        let latency = Duration::from_nanos(
            sim.rng()
                .gen_range(lo.as_nanos() as u64..=hi.as_nanos().max(lo.as_nanos()) as u64),
        );
        sim.connect(
            a,
            b,
            LinkConfig {
                latency,
                ..LinkConfig::default()
            },
        );
    }
    let mut loops_max = 0;
    let mut timeouts = 0;
    let converge = until_converged(&mut sim, &edges, params, &mut loops_max);
    if converge.is_none() {
        timeouts += 1;
    }
    let converge_bytes = sim.stats().bytes_sent;
    // Let triggered updates and the first request rounds die down, then measure the
    // periodic traffic alone.
    sim.run_for(Duration::from_secs(5), &mut |_, _, _| {});
    let mut control = 0.0;
    if !params.steady_window.is_zero() {
        let before = sim.stats().bytes_sent;
        sim.run_for(params.steady_window, &mut |_, _, _| {});
        let bytes = (sim.stats().bytes_sent - before) as f64;
        control = bytes / n.max(1) as f64 / params.steady_window.as_secs_f64();
    }

    let mut reconverge = Vec::new();
    let mut reconverge_bytes = 0u64;
    for _ in 0..params.fail_links {
        let up: Vec<(usize, usize)> = edges
            .iter()
            .copied()
            .filter(|&(a, b)| sim.link_is_up(a, b))
            .collect();
        let Some(&(a, b)) = up.choose(sim.rng()) else {
            break;
        };
        let before = sim.stats().bytes_sent;
        sim.disconnect(a, b);
        match until_converged(&mut sim, &edges, params, &mut loops_max) {
            Some(t) => reconverge.push(ms(t)),
            None => {
                timeouts += 1;
                reconverge.push(ms(params.converge_timeout));
            }
        }
        reconverge_bytes += sim.stats().bytes_sent - before;
        sim.run_for(Duration::from_secs(2), &mut |_, _, _| {});
    }
    let mut kills = Vec::new();
    for _ in 0..params.kill_nodes {
        let live: Vec<NodeId> = (0..n).filter(|&i| sim.is_alive(i)).collect();
        let Some(&victim) = live.choose(sim.rng()) else {
            break;
        };
        sim.kill(victim);
        match until_converged(&mut sim, &edges, params, &mut loops_max) {
            Some(t) => kills.push(ms(t)),
            None => {
                timeouts += 1;
                kills.push(ms(params.converge_timeout));
            }
        }
        sim.run_for(Duration::from_secs(2), &mut |_, _, _| {});
    }
    reconverge.sort_by(f64::total_cmp);
    kills.sort_by(f64::total_cmp);

    let end = check(&sim, &edges);
    let live: Vec<NodeId> = (0..n).filter(|&i| sim.is_alive(i)).collect();
    let table_size_mean = live
        .iter()
        .filter_map(|&i| sim.overlay::<Router>(i))
        .map(|r| r.reachable() as f64)
        .sum::<f64>()
        / live.len().max(1) as f64;
    RouteReport {
        nodes: n,
        topology: params.topology.as_str(),
        links: edges.len(),
        seed: params.seed,
        fail_links: params.fail_links,
        kill_nodes: params.kill_nodes,
        converge_ms: converge.map_or(ms(params.converge_timeout), ms),
        reachable_ratio: if end.expected == 0 {
            1.0
        } else {
            end.routable as f64 / end.expected as f64
        },
        stretch_mean: if end.routable == 0 {
            1.0
        } else {
            end.stretch_sum / end.routable as f64
        },
        stretch_max: end.stretch_max,
        shortest_ratio: if end.routable == 0 {
            1.0
        } else {
            end.shortest as f64 / end.routable as f64
        },
        loops: end.loops,
        loops_transient_max: loops_max,
        stale_routes: end.stale,
        reconverge_ms_p50: percentile(&reconverge, 50.0),
        reconverge_ms_p99: percentile(&reconverge, 99.0),
        reconverge_ms_max: reconverge.last().copied().unwrap_or(0.0),
        kill_reconverge_ms_p50: percentile(&kills, 50.0),
        kill_reconverge_ms_p99: percentile(&kills, 99.0),
        timeouts,
        control_bytes_per_node_per_s: control,
        converge_bytes_per_node: converge_bytes as f64 / n.max(1) as f64,
        reconverge_bytes_per_node_per_failure: if params.fail_links == 0 {
            0.0
        } else {
            reconverge_bytes as f64 / n.max(1) as f64 / params.fail_links as f64
        },
        table_size_mean,
    }
}

#[cfg(test)]
#[path = "route_tests.rs"]
mod tests;
