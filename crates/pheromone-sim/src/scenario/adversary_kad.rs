//! The kad eclipse scenario: honest nodes run the real `Kademlia`; a fraction of the
//! nodes are adversaries that mint identities close to the keys they attack (grinding key
//! pairs until SHA-256 of the peer ID shares `prefix_bits` leading bits with the target's
//! key) and answer every FIND_NODE with their colluders closest to the key asked, never
//! with an honest peer. They live on a few hosts' subnets, as an attacker's machines do
//! (`subnets` /24s); every honest node has a /24 of its own. Honest nodes then look up the
//! attacked nodes (and random others) and the report counts how many lookups still find
//! the true address.
//!
//! Adversaries otherwise behave: they join through the bootstrap node, answer pings and run
//! their own lookups, so they sit in honest tables wherever the diversity limits let them.

use crate::{slot, NodeId, Reach, Sim};
use bytes::Bytes;
use pheromone_core::addr::Multiaddr;
use pheromone_core::identity::{Keypair, PeerId};
use pheromone_core::kad::{
    wire, Config, ConnectionType, Event, KadError, Kademlia, Key, QueryKind, QueryOutcome, Request,
};
use pheromone_core::overlay::{
    self, InboundId, Neighbour, Overlay, RequestFailure, RequestId, Wire,
};
use rand::Rng;
use serde::Serialize;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Every adversary's identity and address, shared by them all.
pub type Colluders = Rc<RefCell<Vec<(Key, PeerId, Multiaddr)>>>;

/// An eclipsing Kademlia node: a real one that answers FIND_NODE with colluders only.
#[derive(Debug)]
pub struct Eclipser {
    kad: Kademlia,
    colluders: Colluders,
    answers: VecDeque<overlay::Output<Event>>,
    k: usize,
    /// FIND_NODE requests answered with lies.
    pub lies: u64,
}

impl Eclipser {
    /// Wraps `kad`.
    pub fn new(kad: Kademlia, colluders: Colluders) -> Self {
        let k = kad.config().k;
        Self {
            kad,
            colluders,
            answers: VecDeque::new(),
            k,
            lies: 0,
        }
    }
}

impl Overlay for Eclipser {
    type Event = Event;
    type Error = KadError;

    fn protocol(&self) -> Option<&str> {
        self.kad.protocol()
    }

    fn wire(&self) -> Wire {
        self.kad.wire()
    }

    fn max_message_len(&self) -> usize {
        self.kad.max_message_len()
    }

    fn local_peer_id(&self) -> PeerId {
        self.kad.local_peer_id()
    }

    fn neighbour_up(&mut self, now: Instant, neighbour: Neighbour) {
        self.kad.neighbour_up(now, neighbour);
    }

    fn neighbour_down(&mut self, now: Instant, peer: PeerId) {
        self.kad.neighbour_down(now, peer);
    }

    fn handle_frame(&mut self, now: Instant, from: PeerId, frame: &[u8]) -> Result<(), KadError> {
        self.kad.handle_frame(now, from, frame)
    }

    fn handle_request(
        &mut self,
        now: Instant,
        from: PeerId,
        id: InboundId,
        request: &[u8],
    ) -> Result<(), KadError> {
        let Ok(Request::FindNode { key }) = Request::decode(request) else {
            return self.kad.handle_request(now, from, id, request);
        };
        let key = Key::from_preimage(&key);
        let me = self.kad.local_peer_id();
        let mut near: Vec<(pheromone_core::kad::Distance, PeerId, Multiaddr)> = self
            .colluders
            .borrow()
            .iter()
            .filter(|(_, p, _)| *p != me)
            .map(|(k, p, a)| (key.distance(k), *p, a.clone()))
            .collect();
        near.sort_by_key(|n| n.0);
        near.truncate(self.k);
        let listed: Vec<(PeerId, Vec<Multiaddr>)> =
            near.into_iter().map(|(_, p, a)| (p, vec![a])).collect();
        let mut out = Vec::new();
        wire::encode_find_node_response(
            listed
                .iter()
                .map(|(p, a)| (p, a.as_slice(), ConnectionType::Connected)),
            &mut out,
        );
        self.lies += 1;
        self.answers.push_back(overlay::Output::Respond {
            id,
            response: Bytes::from(out),
        });
        Ok(())
    }

    fn handle_response(
        &mut self,
        now: Instant,
        id: RequestId,
        response: Result<&[u8], RequestFailure>,
    ) -> Result<(), KadError> {
        self.kad.handle_response(now, id, response)
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.kad.handle_timeout(now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.kad.poll_timeout()
    }

    fn poll_output(&mut self) -> Option<overlay::Output<Event>> {
        self.answers.pop_front().or_else(|| self.kad.poll_output())
    }
}

/// Parameters of one eclipse run.
#[derive(Debug, Clone)]
pub struct EclipseParams {
    /// Nodes, adversaries included.
    pub nodes: usize,
    /// Fraction of them that are adversaries.
    pub adversaries: f64,
    /// Honest nodes attacked; the adversaries are split evenly among them.
    pub targets: usize,
    /// Leading bits an adversary's key shares with its target's key.
    pub prefix_bits: usize,
    /// /24 subnets the adversaries live in.
    pub subnets: usize,
    /// Lookups from random honest nodes, each of an attacked node.
    pub lookups: usize,
    /// The seed everything derives from.
    pub seed: u64,
    /// Kademlia configuration of every node.
    pub config: Config,
}

impl Default for EclipseParams {
    fn default() -> Self {
        Self {
            nodes: 500,
            adversaries: 0.2,
            targets: 4,
            prefix_bits: 12,
            subnets: 4,
            lookups: 400,
            seed: 1,
            config: Config::default(),
        }
    }
}

/// What one eclipse run measured (one JSON object).
#[derive(Debug, Clone, Serialize)]
pub struct EclipseReport {
    /// Always "kad-eclipse".
    pub attack: &'static str,
    /// Nodes.
    pub nodes: usize,
    /// Adversaries among them.
    pub adversaries: usize,
    /// Attacked nodes.
    pub targets: usize,
    /// Adversaries per attacked node.
    pub per_target: usize,
    /// Leading key bits shared with the target.
    pub prefix_bits: usize,
    /// Adversaries' subnets.
    pub subnets: usize,
    /// Seed.
    pub seed: u64,
    /// Lookups of attacked nodes by honest nodes.
    pub lookups: usize,
    /// Of those, the fraction that ended with the target's true address.
    pub success_ratio: f64,
    /// Lookups that failed.
    pub failures: usize,
    /// Mean table entries of honest nodes that are adversaries.
    pub adversaries_in_tables_mean: f64,
    /// FIND_NODE answers the adversaries made up.
    pub lies: u64,
    /// Virtual seconds run.
    pub virtual_s: f64,
}

/// A key pair whose table key shares `bits` leading bits with `target`.
fn grind(target: &Key, bits: usize, rng: &mut impl Rng) -> Keypair {
    loop {
        let kp = Keypair::from_seed(rng.gen());
        if target
            .distance(&Key::from_peer(&kp.peer_id()))
            .leading_zeros()
            >= bits
        {
            return kp;
        }
    }
}

/// Runs one eclipse experiment.
pub fn eclipse(params: &EclipseParams) -> EclipseReport {
    let mut sim: Sim<Event> = Sim::new(params.seed);
    sim.set_full_reachability(Some(Reach {
        base: Duration::from_millis(10),
        spread: Duration::from_millis(20),
        loss: 0.0,
    }));
    let n = params.nodes.max(10);
    let bad = ((params.adversaries.clamp(0.0, 0.9)) * n as f64).round() as usize;
    let honest_n = n - bad;
    let targets = params.targets.clamp(1, honest_n - 1);
    let mut honest_keys: Vec<Keypair> = (0..honest_n)
        .map(|_| Keypair::from_seed(sim.rng().gen()))
        .collect();
    // Honest node 0 is the bootstrap node; the attacked ones are 1..=targets.
    let target_peers: Vec<PeerId> = honest_keys[1..=targets]
        .iter()
        .map(|k| k.peer_id())
        .collect();
    let colluders: Colluders = Rc::new(RefCell::new(Vec::new()));
    let mut bad_keys = Vec::new();
    for i in 0..bad {
        let target = Key::from_peer(&target_peers[i % targets]);
        bad_keys.push(grind(&target, params.prefix_bits, sim.rng()));
    }
    let subnets = params.subnets.max(1);
    let bad_addr = |i: usize| -> Multiaddr {
        // 203.0.S.H: adversary i on host i/subnets of subnet i%subnets.
        let s = (i % subnets) as u8;
        let h = (i / subnets) as u8 + 1;
        Multiaddr::from_socket_addr(([203, 0, s, h], 4001).into())
    };
    for (i, kp) in bad_keys.iter().enumerate() {
        let peer = kp.peer_id();
        colluders
            .borrow_mut()
            .push((Key::from_peer(&peer), peer, bad_addr(i)));
    }
    let config = params.config.clone();
    let bootstrap = honest_keys.remove(0);
    let boot_peer = bootstrap.peer_id();
    let now = sim.now();
    let boot = sim.add_node(
        boot_peer,
        vec![slot(
            Kademlia::new(boot_peer, config.clone(), now, 0),
            |e| e,
        )],
    );
    let boot_addr = sim.addr(boot);
    let mut honest: Vec<NodeId> = vec![boot];
    // Interleave joins: adversaries are there from the start, as a patient attacker is.
    let mut order: Vec<Option<usize>> = (0..honest_keys.len()).map(|_| None).collect();
    order.extend((0..bad).map(Some));
    let mut honest_iter = honest_keys.into_iter();
    let mut shuffled = Vec::with_capacity(order.len());
    while !order.is_empty() {
        let i = sim.rng().gen_range(0..order.len());
        shuffled.push(order.swap_remove(i));
    }
    let mut lies_nodes = Vec::new();
    for slot_of in shuffled {
        let node_seed = sim.rng().gen();
        let now = sim.now();
        let id = match slot_of {
            None => {
                let Some(kp) = honest_iter.next() else {
                    continue;
                };
                let peer = kp.peer_id();
                let id = sim.add_node(
                    peer,
                    vec![slot(
                        Kademlia::new(peer, config.clone(), now, node_seed),
                        |e| e,
                    )],
                );
                honest.push(id);
                id
            }
            Some(i) => {
                let peer = bad_keys[i].peer_id();
                let kad = Kademlia::new(peer, config.clone(), now, node_seed);
                let id = sim.add_node_at(
                    peer,
                    bad_addr(i),
                    vec![slot(Eclipser::new(kad, colluders.clone()), |e| e)],
                );
                lies_nodes.push(id);
                id
            }
        };
        let addr = boot_addr.clone();
        if sim.overlay::<Kademlia>(id).is_some() {
            sim.with_overlay(id, |kad: &mut Kademlia, now| {
                let _ = kad.add_address(now, boot_peer, addr);
                kad.bootstrap(now);
            });
        } else {
            sim.with_overlay(id, |e: &mut Eclipser, now| {
                let _ = e.kad.add_address(now, boot_peer, addr);
                e.kad.bootstrap(now);
            });
        }
        sim.run_for(Duration::from_millis(5), &mut |_, _, _| {});
    }
    sim.run_for(Duration::from_secs(10), &mut |_, _, _| {});

    let mut issued: HashMap<(NodeId, u64), PeerId> = HashMap::new();
    let mut finished: Vec<(NodeId, u64, QueryOutcome)> = Vec::new();
    let mut on_event = |_: Instant, node: NodeId, e: Event| {
        if let Event::QueryFinished(r) = e {
            if matches!(r.kind, QueryKind::FindPeer(_)) {
                finished.push((node, r.id.0, r.outcome));
            }
        }
    };
    for l in 0..params.lookups {
        let from = honest[sim.rng().gen_range(1..honest.len())];
        let target = target_peers[l % targets];
        if sim.peer_id(from) == Some(target) {
            continue;
        }
        if let Some(q) =
            sim.with_overlay(from, |kad: &mut Kademlia, now| kad.find_peer(now, target))
        {
            issued.insert((from, q.0), target);
        }
        sim.run_for(Duration::from_millis(20), &mut on_event);
    }
    sim.run_for(config.query_timeout + config.request_timeout, &mut on_event);
    let ok = finished
        .iter()
        .filter(|(node, q, outcome)| {
            let Some(target) = issued.get(&(*node, *q)) else {
                return false;
            };
            let truth = sim.node_id(target).map(|n| sim.addr(n));
            matches!(outcome, QueryOutcome::Found(addrs) if truth.as_ref().is_some_and(|t| addrs.contains(t)))
        })
        .count();
    let bad_set: std::collections::HashSet<PeerId> = bad_keys.iter().map(|k| k.peer_id()).collect();
    let in_tables: Vec<f64> = honest
        .iter()
        .filter_map(|&h| sim.overlay::<Kademlia>(h))
        .map(|k| {
            k.table()
                .iter()
                .filter(|e| bad_set.contains(&e.peer))
                .count() as f64
        })
        .collect();
    let lies = lies_nodes
        .iter()
        .filter_map(|&n| sim.overlay::<Eclipser>(n))
        .map(|e| e.lies)
        .sum();
    let lookups = issued.len();
    EclipseReport {
        attack: "kad-eclipse",
        nodes: n,
        adversaries: bad,
        targets,
        per_target: bad / targets,
        prefix_bits: params.prefix_bits,
        subnets,
        seed: params.seed,
        lookups,
        success_ratio: if lookups == 0 {
            1.0
        } else {
            ok as f64 / lookups as f64
        },
        failures: lookups - ok,
        adversaries_in_tables_mean: in_tables.iter().sum::<f64>() / in_tables.len().max(1) as f64,
        lies,
        virtual_s: sim.elapsed().as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn honest_lookups_survive_an_eclipse_attempt() {
        // 20 adversaries per attacked key, more than k: without the lookup's per-subnet
        // cap they fill its k closest (`--per-subnet 0` at 200 nodes: 0.62 succeed).
        let params = EclipseParams {
            nodes: 200,
            targets: 2,
            lookups: 100,
            prefix_bits: 10,
            ..EclipseParams::default()
        };
        let r = eclipse(&params);
        println!("{}", serde_json::to_string(&r).unwrap_or_default());
        assert!(r.lies > 0, "the adversaries were never asked: {r:?}");
        assert!(r.success_ratio >= 0.99, "{r:?}");
        let mut open = params;
        open.config.max_per_subnet_lookup = 0;
        let before = eclipse(&open);
        assert!(
            before.success_ratio < 0.95,
            "the attack bites without the cap: {before:?}"
        );
    }
}
