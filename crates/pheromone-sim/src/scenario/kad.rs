//! The `kad` scenario: N nodes run the real `pheromone_core::kad::Kademlia` state machine
//! in full-reachability mode (any node may send to any node, as internet hosts dial
//! addresses). They join one after another from a single bootstrap node; then M lookups
//! of random live nodes (joined, bootstrapped, not left) run from random live nodes, optionally while a fraction of the
//! nodes leaves without notice and as many new ones join.
//!
//! Each request travels as the simulator's requests do: over a connection to its target,
//! made on demand (and closed again once idle) as the node's driver does; a dial to a node
//! that left fails, and a request in flight to one is never answered, so the requester's
//! own timeout notices. A lookup succeeds when it ends `Found` with the target's true
//! address. Hops are the lookup's count of sequential requests along the chain that named
//! the target (1 when a peer from the source's own table knew it, 0 when the source did).

use crate::scenario::{percentile, Fnv};
use crate::{slot, NodeId, Reach, Sim};
use pheromone_core::addr::Multiaddr;
use pheromone_core::identity::{Keypair, PeerId};
use pheromone_core::kad::{Config, Event, Kademlia, QueryId, QueryKind, QueryOutcome, QueryResult};
use rand::Rng;
use serde::Serialize;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// Parameters of one kad run.
#[derive(Debug, Clone)]
pub struct KadParams {
    /// Nodes joining before the lookups (the first is the bootstrap node).
    pub nodes: usize,
    /// Lookups of random live nodes from random live nodes.
    pub lookups: usize,
    /// Fraction of `nodes` that leaves without notice during the lookup phase; as many new
    /// nodes join during it.
    pub churn: f64,
    /// The seed everything derives from.
    pub seed: u64,
    /// Time between two joins.
    pub join_interval: Duration,
    /// Quiet time between the last join and the first lookup.
    pub settle: Duration,
    /// Time between two lookups.
    pub lookup_interval: Duration,
    /// One-way latency between any two nodes is drawn uniformly from this range (per frame).
    pub latency: (Duration, Duration),
    /// The Kademlia configuration of every node.
    pub config: Config,
}

impl Default for KadParams {
    fn default() -> Self {
        Self {
            nodes: 1000,
            lookups: 100,
            churn: 0.0,
            seed: 1,
            join_interval: Duration::from_millis(2),
            settle: Duration::from_secs(5),
            lookup_interval: Duration::from_millis(10),
            latency: (Duration::from_millis(10), Duration::from_millis(60)),
            config: Config::default(),
        }
    }
}

/// What one run measured; serialises to the JSON line `pheromone-sim kad` prints.
#[derive(Debug, Clone, Serialize)]
pub struct KadReport {
    /// Nodes joined before the lookups.
    pub nodes: usize,
    /// Lookups run.
    pub lookups: usize,
    /// Churn fraction.
    pub churn: f64,
    /// Seed.
    pub seed: u64,
    /// Lookups that ended `Found` with the target's true address, over the lookups whose
    /// source stayed until they ended (`lookups - abandoned`).
    pub success_ratio: f64,
    /// Lookups whose source left (churn) before they ended: a node that is gone cannot
    /// finish a lookup, so these measure nothing about the protocol and are left out of
    /// `success_ratio` (they are counted in `success_ratio_all`).
    pub abandoned: usize,
    /// Successful lookups over all lookups issued, abandoned ones counted as failures.
    pub success_ratio_all: f64,
    /// Lookups that failed, not counting abandoned ones.
    pub failures: usize,
    /// Failed lookups that converged without anyone naming the target.
    pub failed_not_found: usize,
    /// Failed lookups that ran out of time.
    pub failed_timed_out: usize,
    /// Lookups whose source is still there but that never ended (a bug if not zero).
    pub failed_unfinished: usize,
    /// Mean hops of successful lookups.
    pub hops_mean: f64,
    /// Median hops.
    pub hops_p50: f64,
    /// 99th percentile of hops.
    pub hops_p99: f64,
    /// Most hops seen.
    pub hops_max: f64,
    /// Mean requests sent per lookup.
    pub messages_per_lookup: f64,
    /// Mean requests per lookup that failed or timed out.
    pub failed_requests_per_lookup: f64,
    /// Median virtual time from command to result, milliseconds.
    pub latency_ms_p50: f64,
    /// 99th percentile of it.
    pub latency_ms_p99: f64,
    /// Mean routing table size at the end, over live nodes.
    pub table_size_mean: f64,
    /// Bootstrap lookups that completed, over joins.
    pub bootstrap_ok_ratio: f64,
    /// Nodes that left during the lookup phase.
    pub left: usize,
    /// Nodes that joined during the lookup phase.
    pub joined_late: usize,
    /// Frames (requests plus responses) sent in the whole run.
    pub frames_sent: u64,
    /// Bytes sent in the whole run.
    pub bytes_sent: u64,
    /// Virtual duration of the run, seconds.
    pub virtual_s: f64,
    /// Wall-clock duration of the run, seconds.
    pub wall_s: f64,
    /// Digest of the outcomes: the same seed must give the same digest.
    pub digest: String,
}

struct World {
    sim: Sim<Event>,
    config: Config,
    bootstrap_peer: PeerId,
    bootstrap_addr: Multiaddr,
    key_seed: u64,
}

impl World {
    fn add(&mut self) -> NodeId {
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&self.key_seed.to_le_bytes());
        seed[8..16].copy_from_slice(&(self.sim.len() as u64).to_le_bytes());
        let peer = Keypair::from_seed(seed).peer_id();
        let node_seed = self.sim.rng().gen();
        let now = self.sim.now();
        let kad = Kademlia::new(peer, self.config.clone(), now, node_seed);
        self.sim.add_node(peer, vec![slot(kad, |e| e)])
    }

    fn join(&mut self) -> NodeId {
        let id = self.add();
        let (peer, addr) = (self.bootstrap_peer, self.bootstrap_addr.clone());
        self.sim.with_overlay(id, |kad: &mut Kademlia, now| {
            let _ = kad.add_address(now, peer, addr);
            kad.bootstrap(now);
        });
        id
    }
}

/// Runs one kad experiment.
pub fn run(params: &KadParams) -> KadReport {
    #[allow(clippy::disallowed_methods)]
    let wall = Instant::now();
    let mut sim: Sim<Event> = Sim::new(params.seed);
    let (lo, hi) = params.latency;
    sim.set_full_reachability(Some(Reach {
        base: lo,
        spread: hi
            .saturating_sub(lo)
            .mul_f64(std::f64::consts::FRAC_1_SQRT_2),
        loss: 0.0,
    }));
    let mut world = World {
        sim,
        config: params.config.clone(),
        bootstrap_peer: PeerId::from_public_key(&Keypair::from_seed([0; 32]).public()),
        bootstrap_addr: Multiaddr::empty(),
        key_seed: params.seed,
    };
    let nodes = params.nodes.max(2);
    let first = world.add();
    world.bootstrap_peer = world.sim.peer_id(first).unwrap_or(world.bootstrap_peer);
    world.bootstrap_addr = world.sim.addr(first);

    let mut bootstraps = (0usize, 0usize);
    // A node counts as a lookup target once its own bootstrap lookup has ended: before
    // that nobody can know it.
    let joined: RefCell<HashSet<NodeId>> = RefCell::new(HashSet::from([first]));
    let finished: RefCell<Vec<(NodeId, QueryResult)>> = RefCell::new(Vec::new());
    let mut on_event = |_: Instant, node: NodeId, event: Event| {
        let Event::QueryFinished(result) = event else {
            return;
        };
        match result.kind {
            QueryKind::Bootstrap => {
                joined.borrow_mut().insert(node);
                bootstraps.0 += 1;
                if result.outcome == QueryOutcome::Completed {
                    bootstraps.1 += 1;
                } else if std::env::var_os("KAD_DEBUG").is_some() {
                    eprintln!("bootstrap of node {node}: {result:?}");
                }
            }
            QueryKind::FindPeer(_) => finished.borrow_mut().push((node, result)),
            QueryKind::Refresh => {}
        }
    };

    // Join phase.
    for _ in 1..nodes {
        let at = world.sim.now() + params.join_interval;
        world.sim.run_until(at, &mut on_event);
        world.join();
    }
    let at = world.sim.now() + params.settle;
    world.sim.run_until(at, &mut on_event);

    // Lookup phase, with churn spread evenly over it.
    let churn_events = ((params.churn.clamp(0.0, 0.9)) * nodes as f64).round() as usize;
    let steps = params.lookups.max(churn_events).max(1);
    let mut live: Vec<NodeId> = (0..world.sim.len()).collect();
    let (mut left, mut joined_late) = (0, 0);
    let (mut lookups_done, mut churn_done) = (0, 0);
    let step_interval = params
        .lookup_interval
        .mul_f64(params.lookups.max(1) as f64 / steps as f64);
    let mut issued: HashMap<(NodeId, QueryId), PeerId> = HashMap::new();
    for step in 0..steps {
        let at = world.sim.now() + step_interval;
        world.sim.run_until(at, &mut on_event);
        while churn_done * steps < churn_events * (step + 1) {
            churn_done += 1;
            // Leave: any node but the bootstrap node, without notice.
            if live.len() > 2 {
                let i = world.sim.rng().gen_range(1..live.len());
                let gone = live.swap_remove(i);
                world.sim.kill(gone);
                left += 1;
            }
            live.push(world.join());
            joined_late += 1;
        }
        while lookups_done * steps < params.lookups * (step + 1) {
            lookups_done += 1;
            let from = live[world.sim.rng().gen_range(0..live.len())];
            let mut to = from;
            while to == from || !joined.borrow().contains(&to) {
                to = live[world.sim.rng().gen_range(0..live.len())];
            }
            let Some(target) = world.sim.peer_id(to) else {
                continue;
            };
            if let Some(q) = world
                .sim
                .with_overlay(from, |kad: &mut Kademlia, now| kad.find_peer(now, target))
            {
                issued.insert((from, q), target);
            }
        }
    }
    // Let the last lookups finish (a lookup ends by its own deadline at the latest).
    let deadline = world.sim.now() + params.config.query_timeout + params.config.request_timeout;
    while world.sim.now() < deadline {
        let at = world.sim.now() + Duration::from_millis(100);
        world.sim.run_until(at, &mut on_event);
        // Lookups whose source left will never end: they are not waited for.
        let done: HashSet<(NodeId, QueryId)> =
            finished.borrow().iter().map(|(n, r)| (*n, r.id)).collect();
        let waiting = issued
            .keys()
            .any(|key| world.sim.is_alive(key.0) && !done.contains(key));
        if !waiting {
            break;
        }
    }

    // Report. A lookup counts only if it ended with the target's true address; one that
    // never ended counts as failed.
    let mut results_keys: HashSet<(NodeId, QueryId)> = HashSet::new();
    let finished_src: HashMap<QueryId, NodeId> =
        finished.borrow().iter().map(|(n, r)| (r.id, *n)).collect();
    let results: Vec<(QueryResult, bool)> = finished
        .into_inner()
        .into_iter()
        .filter_map(|(node, result)| {
            let target = issued.get(&(node, result.id))?;
            let truth = world.sim.node_id(target).map(|n| world.sim.addr(n));
            let ok = matches!(&result.outcome, QueryOutcome::Found(addrs)
                if truth.as_ref().is_some_and(|t| addrs.contains(t)));
            results_keys.insert((node, result.id));
            Some((result, ok))
        })
        .collect();
    let lookups = issued.len();
    let count = |f: &dyn Fn(&QueryOutcome) -> bool| {
        results
            .iter()
            .filter(|(r, ok)| !ok && f(&r.outcome))
            .count()
    };
    let failed_not_found = count(&|o| *o == QueryOutcome::NotFound);
    let failed_timed_out = count(&|o| *o == QueryOutcome::TimedOut);
    let ended: HashSet<(NodeId, QueryId)> = results_keys;
    let unfinished = issued.keys().filter(|key| !ended.contains(key));
    let (abandoned, failed_unfinished) = unfinished.fold((0, 0), |(a, f), (node, _)| {
        if world.sim.is_alive(*node) {
            (a, f + 1)
        } else {
            (a + 1, f)
        }
    });
    if std::env::var_os("KAD_DEBUG").is_some() {
        for (r, ok) in &results {
            if *ok {
                continue;
            }
            let QueryKind::FindPeer(target) = r.kind else {
                continue;
            };
            let key = pheromone_core::kad::Key::from_peer(&target);
            let mut near: Vec<(pheromone_core::kad::Distance, NodeId)> = live
                .iter()
                .filter_map(|&n| {
                    let p = world.sim.peer_id(n)?;
                    Some((pheromone_core::kad::Key::from_peer(&p).distance(&key), n))
                })
                .collect();
            near.sort();
            let holders: Vec<(NodeId, bool)> = near
                .iter()
                .skip(1)
                .take(20)
                .map(|&(_, n)| {
                    let has = world
                        .sim
                        .overlay::<Kademlia>(n)
                        .is_some_and(|k| k.table().get(&target).is_some());
                    (n, has)
                })
                .collect();
            let src = finished_src.get(&r.id).copied();
            let ranks: Vec<usize> = r
                .closest
                .iter()
                .filter_map(|p| world.sim.node_id(p))
                .filter_map(|n| near.iter().position(|&(_, m)| m == n))
                .collect();
            eprintln!("ranks of the lookup's closest among all live nodes: {ranks:?}");
            eprintln!("failed lookup of {target} (node {:?}) from {src:?}: {r:?}\nits 20 closest and whether they hold it: {holders:?}", world.sim.node_id(&target));
        }
    }
    let successes: Vec<&QueryResult> = results
        .iter()
        .filter(|(_, ok)| *ok)
        .map(|(r, _)| r)
        .collect();
    let mut hops: Vec<f64> = successes.iter().map(|r| f64::from(r.hops)).collect();
    hops.sort_by(f64::total_cmp);
    let mut latency: Vec<f64> = results
        .iter()
        .map(|(r, _)| r.duration.as_secs_f64() * 1000.0)
        .collect();
    latency.sort_by(f64::total_cmp);
    let mean = |v: &[f64]| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    let messages: Vec<f64> = results.iter().map(|(r, _)| f64::from(r.messages)).collect();
    let failed: Vec<f64> = results.iter().map(|(r, _)| f64::from(r.failures)).collect();
    let tables: Vec<f64> = live
        .iter()
        .filter_map(|&n| world.sim.overlay::<Kademlia>(n))
        .map(|kad| kad.table().len() as f64)
        .collect();
    let mut digest = Fnv::default();
    for (r, ok) in &results {
        digest.write_u64(u64::from(r.hops));
        digest.write_u64(u64::from(r.messages));
        digest.write_u64(u64::from(*ok));
        digest.write_u64(r.duration.as_nanos() as u64);
    }
    let stats = world.sim.stats();
    KadReport {
        nodes,
        lookups,
        churn: params.churn,
        seed: params.seed,
        success_ratio: if lookups == abandoned {
            0.0
        } else {
            successes.len() as f64 / (lookups - abandoned) as f64
        },
        abandoned,
        success_ratio_all: if lookups == 0 {
            0.0
        } else {
            successes.len() as f64 / lookups as f64
        },
        failures: lookups - abandoned - successes.len(),
        failed_not_found,
        failed_timed_out,
        failed_unfinished,
        hops_mean: mean(&hops),
        hops_p50: percentile(&hops, 50.0),
        hops_p99: percentile(&hops, 99.0),
        hops_max: hops.last().copied().unwrap_or(0.0),
        messages_per_lookup: mean(&messages),
        failed_requests_per_lookup: mean(&failed),
        latency_ms_p50: percentile(&latency, 50.0),
        latency_ms_p99: percentile(&latency, 99.0),
        table_size_mean: mean(&tables),
        bootstrap_ok_ratio: if bootstraps.0 == 0 {
            0.0
        } else {
            bootstraps.1 as f64 / bootstraps.0 as f64
        },
        left,
        joined_late,
        frames_sent: stats.requests_sent + stats.responses_sent,
        bytes_sent: stats.bytes_sent,
        virtual_s: world.sim.elapsed().as_secs_f64(),
        wall_s: wall.elapsed().as_secs_f64(),
        digest: format!("{:016x}", digest.finish()),
    }
}
