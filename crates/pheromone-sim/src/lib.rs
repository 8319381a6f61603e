//! Deterministic multi-node simulator for pheromone's overlays.
//!
//! N nodes each run a [`Stack`] of the core's real overlays — anything that implements
//! [`pheromone_core::overlay::Overlay`], the same trait the tokio driver runs in production
//! — with no adapter in between. A virtual clock jumps from event to event; links have
//! seeded latency, jitter and loss; hosts without a link reach each other through a
//! seeded latency model when an overlay dials or sends a request ([`Reach`]); the network
//! can be partitioned and nodes killed and revived. Everything random comes from one seed,
//! and every table whose iteration order could reach an output is ordered, so the same
//! seed replays the same run bit for bit. One thread, no sleeping, no real IO.
//!
//! # What the simulator plays
//!
//! - **Links** are connections: [`Sim::connect`] (or an overlay's
//!   [`Output::Dial`](pheromone_core::overlay::Output)) makes one, and every overlay of
//!   either end whose protocol the other end also runs gets
//!   `neighbour_up` — as the production driver does once identify lists the protocol.
//!   Frames ([`Wire::Frames`](pheromone_core::overlay::Wire)) travel only over links.
//! - **Requests** go to any peer: over the link if there is one, otherwise after a dial
//!   that makes one (with [`Reach`] latency; without reachability they fail at once), as
//!   the driver connects to a peer it must ask. Links made only for requests close once
//!   idle ([`Sim::set_idle_timeout`]). A request in flight to a node that dies is lost, so
//!   the requester's own timeout notices.
//! - **Dials** take one and a half round trips (TCP, then Noise XX) and end in a link, or
//!   fail after one round trip when nobody is there.
//!
//! # Layout
//!
//! - [`Sim`]: the public face (this file); its event loop in `engine.rs`.
//! - [`Stack`], [`slot`], [`SimOverlay`]: what a node runs (`stack.rs`).
//! - [`LinkConfig`], [`Reach`], [`NetStats`]: the network's properties (`net.rs`).
//! - [`graph`]: random connected topologies.
//! - [`scenario`]: ready-made experiments used by the tests and the `pheromone-sim`
//!   command.
//!
//! # Driving a simulation
//!
//! Add nodes with [`Sim::add_node`], link them with [`Sim::connect`], give them commands
//! with [`Sim::with_overlay`], and advance time with [`Sim::run_until`] /
//! [`Sim::run_for`], which hand every application event to a callback together with the
//! virtual time and the node that produced it. [`Sim::set_event_hook`] lets one overlay's
//! events feed another of the same node (Kademlia's table feeding the connection manager),
//! as the node's services do in production.

#![deny(missing_docs, unreachable_pub)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod engine;
pub mod graph;
mod net;
pub mod scenario;
mod stack;

pub use net::{LinkConfig, NetStats, Reach};
pub use stack::{slot, SimOverlay, Stack};

use engine::{Event, EventKind, Link, Waiting};
use pheromone_core::addr::Multiaddr;
use pheromone_core::identity::PeerId;
use pheromone_core::overlay::{InboundId, Neighbour, RequestId};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

/// Index of a node in a [`Sim`], stable for the whole run (kills do not renumber).
pub type NodeId = usize;

/// A hook run for every event an overlay produces, before the scenario sees it, with the
/// node's whole stack: how one overlay's news reaches another overlay of the same node.
pub type EventHook<E> = Box<dyn FnMut(Instant, &E, &mut Stack<E>)>;

type FastMap<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

/// A request this node is answering: who asked, which of its requests it is.
#[derive(Debug, Clone, Copy)]
struct Asked {
    from: NodeId,
    from_incarnation: u32,
    proto: u16,
    id: RequestId,
}

struct Node<E> {
    peer: PeerId,
    stack: Option<Stack<E>>,
    /// (interned protocol, slot index) of the overlays that have a protocol.
    protocols: Vec<(u16, usize)>,
    incarnation: u32,
    timer_at: Option<Instant>,
    neighbours: Vec<NodeId>,
    group: u32,
    position: (f32, f32),
    next_inbound: u64,
    inbound: FastMap<InboundId, Asked>,
    span: tracing::Span,
}

impl<E> Node<E> {
    fn slot_of(&self, proto: u16) -> Option<usize> {
        self.protocols
            .iter()
            .find(|(p, _)| *p == proto)
            .map(|(_, slot)| *slot)
    }
}

/// The simulator: nodes, links, a virtual clock and an event queue.
pub struct Sim<E> {
    start: Instant,
    now: Instant,
    rng: StdRng,
    nodes: Vec<Node<E>>,
    by_peer: FastMap<PeerId, NodeId>,
    by_addr: FastMap<Multiaddr, NodeId>,
    /// Addresses given with [`Sim::add_node_at`], in place of the computed one.
    addr_override: FastMap<NodeId, Multiaddr>,
    links: FastMap<(NodeId, NodeId), Link>,
    protocols: Vec<String>,
    queue: BinaryHeap<Reverse<Event>>,
    payloads: Vec<Option<EventKind>>,
    free: Vec<u32>,
    seq: u64,
    events: Vec<(Instant, NodeId, E)>,
    hook: Option<EventHook<E>>,
    stats: NetStats,
    /// Full reachability: any node may dial or ask any node it has no link with.
    reach: Option<Reach>,
    /// Connections being made, (dialler, target), and what waits for them.
    dialing: std::collections::BTreeSet<(NodeId, NodeId)>,
    waiting: FastMap<(NodeId, NodeId), Waiting>,
    /// How long a link made only for requests stays up unused.
    idle_timeout: Duration,
}

fn key(a: NodeId, b: NodeId) -> (NodeId, NodeId) {
    (a.min(b), a.max(b))
}

impl<E: 'static> Sim<E> {
    /// An empty simulation whose randomness all derives from `seed`.
    pub fn new(seed: u64) -> Self {
        // The one real clock read: an origin for the virtual clock. Only differences from
        // it are ever used, so runs stay deterministic.
        #[allow(clippy::disallowed_methods)]
        let start = Instant::now();
        Self {
            start,
            now: start,
            rng: StdRng::seed_from_u64(seed),
            nodes: Vec::new(),
            by_peer: FastMap::default(),
            by_addr: FastMap::default(),
            addr_override: FastMap::default(),
            links: FastMap::default(),
            protocols: Vec::new(),
            queue: BinaryHeap::new(),
            payloads: Vec::new(),
            free: Vec::new(),
            seq: 0,
            events: Vec::new(),
            hook: None,
            stats: NetStats::default(),
            reach: None,
            dialing: std::collections::BTreeSet::new(),
            waiting: FastMap::default(),
            idle_timeout: Duration::from_secs(120),
        }
    }

    /// How long a link made only to carry requests stays up unused (the node's idle
    /// timeout; default 120 s).
    pub fn set_idle_timeout(&mut self, idle: Duration) {
        self.idle_timeout = idle;
    }

    /// Turns full reachability on (`Some`) or off (`None`, the default).
    ///
    /// With it, an overlay's dials and requests reach nodes it has no link with, with the
    /// latency and loss the [`Reach`] model gives the pair, and are delivered if the
    /// receiver is still the same live incarnation and in the same partition group.
    /// Explicit links keep their own properties.
    pub fn set_full_reachability(&mut self, reach: Option<Reach>) {
        self.reach = reach;
    }

    /// Installs the hook run for every application event (see [`EventHook`]).
    pub fn set_event_hook(&mut self, hook: EventHook<E>) {
        self.hook = Some(hook);
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The instant the simulation started at.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Virtual time elapsed since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// The simulator's seeded RNG, for scenarios that need more randomness in the same
    /// deterministic stream.
    pub fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }

    /// Network counters.
    pub fn stats(&self) -> NetStats {
        self.stats
    }

    /// Number of nodes ever added.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether no node was added.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The address node `node` listens on: a public-looking IPv4 address, unique per node
    /// and in a /24 of its own for the first 89 × 65,536 nodes, so that Kademlia's
    /// diversity limits see an internet-like spread.
    pub fn addr(&self, node: NodeId) -> Multiaddr {
        if let Some(addr) = self.addr_override.get(&node) {
            return addr.clone();
        }
        let n = node as u32;
        // 11.0.0.0–99.255.255.255 holds no private, loopback or shared range.
        let first = 11 + (n % 89) as u8;
        // An odd multiplier permutes the 24-bit numbers: neighbours in index land far apart.
        let rest = (n / 89).wrapping_mul(0x9E37_79B1) & 0x00FF_FFFF;
        let [_, b, c, d] = rest.to_be_bytes();
        Multiaddr::from_socket_addr(([first, b, c, d], 4001).into())
    }

    /// The IP of node `node`'s address ([`Sim::addr`]).
    pub fn ip(&self, node: NodeId) -> Option<std::net::IpAddr> {
        match self.addr(node).protocols().first() {
            Some(pheromone_core::addr::Protocol::Ip4(ip)) => Some((*ip).into()),
            _ => None,
        }
    }

    /// [`Sim::add_node`] at a chosen address (several nodes in one subnet, as one
    /// operator's hosts are). The address must be unique in the run.
    pub fn add_node_at(
        &mut self,
        peer: PeerId,
        addr: Multiaddr,
        stack: impl Into<Stack<E>>,
    ) -> NodeId {
        let id = self.nodes.len();
        self.addr_override.insert(id, addr);
        self.add_node(peer, stack)
    }

    /// Adds a live node named `peer` running `stack`; it sits at a seeded random point
    /// for the [`Reach`] latency model.
    pub fn add_node(&mut self, peer: PeerId, stack: impl Into<Stack<E>>) -> NodeId {
        let id = self.nodes.len();
        let position = (self.rng.gen::<f32>(), self.rng.gen::<f32>());
        self.nodes.push(Node {
            peer,
            stack: None,
            protocols: Vec::new(),
            incarnation: 0,
            timer_at: None,
            neighbours: Vec::new(),
            group: 0,
            position,
            next_inbound: 0,
            inbound: FastMap::default(),
            span: tracing::info_span!("node", id),
        });
        self.by_peer.insert(peer, id);
        let addr = self.addr(id);
        self.by_addr.insert(addr, id);
        self.install(id, stack.into());
        id
    }

    fn install(&mut self, node: NodeId, stack: Stack<E>) {
        let protocols: Vec<(u16, usize)> = stack
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((s.protocol()?.to_owned(), i)))
            .map(|(name, i)| (self.intern(&name), i))
            .collect();
        let slot = &mut self.nodes[node];
        slot.protocols = protocols;
        slot.stack = Some(stack);
        self.drain(node);
    }

    fn intern(&mut self, protocol: &str) -> u16 {
        match self.protocols.iter().position(|p| p == protocol) {
            Some(i) => i as u16,
            None => {
                self.protocols.push(protocol.to_owned());
                (self.protocols.len() - 1) as u16
            }
        }
    }

    /// The peer ID of `node`.
    pub fn peer_id(&self, node: NodeId) -> Option<PeerId> {
        self.nodes.get(node).map(|n| n.peer)
    }

    /// The node named `peer`.
    pub fn node_id(&self, peer: &PeerId) -> Option<NodeId> {
        self.by_peer.get(peer).copied()
    }

    /// Whether `node` is alive.
    pub fn is_alive(&self, node: NodeId) -> bool {
        self.nodes.get(node).is_some_and(|n| n.stack.is_some())
    }

    /// The stack of a live node.
    pub fn stack(&self, node: NodeId) -> Option<&Stack<E>> {
        self.nodes.get(node).and_then(|n| n.stack.as_ref())
    }

    /// The overlay of type `O` of a live node.
    pub fn overlay<O: 'static>(&self, node: NodeId) -> Option<&O> {
        self.stack(node)?.get::<O>()
    }

    /// Nodes `node` has a link to (up or down), in the order the links were made.
    pub fn neighbours(&self, node: NodeId) -> &[NodeId] {
        self.nodes.get(node).map_or(&[], |n| &n.neighbours)
    }

    /// Whether the link between `a` and `b` exists and is up.
    pub fn link_is_up(&self, a: NodeId, b: NodeId) -> bool {
        self.links.get(&key(a, b)).is_some_and(|l| l.up)
    }

    /// Links that are up, each once, in no particular order.
    pub fn live_links(&self) -> impl Iterator<Item = (NodeId, NodeId)> + '_ {
        self.links.iter().filter(|(_, l)| l.up).map(|(k, _)| *k)
    }

    /// The [`Reach`] latency between two nodes (the base latency without reachability).
    pub fn latency(&self, a: NodeId, b: NodeId) -> Duration {
        let reach = self.reach.unwrap_or_default();
        reach.latency(self.nodes[a].position, self.nodes[b].position)
    }

    /// Runs `f` on the overlay of type `O` of a live node at the current time, then
    /// collects the node's outputs.
    pub fn with_overlay<O: 'static, R>(
        &mut self,
        node: NodeId,
        f: impl FnOnce(&mut O, Instant) -> R,
    ) -> Option<R> {
        let now = self.now;
        let slot = self.nodes.get_mut(node)?;
        let span = slot.span.clone();
        let _entered = span.enter();
        let out = f(slot.stack.as_mut()?.get_mut::<O>()?, now);
        self.drain(node);
        Some(out)
    }

    /// Creates (or brings back up) the link between `a` (the dialler) and `b`; both ends
    /// are told at once if alive.
    pub fn connect(&mut self, a: NodeId, b: NodeId, config: LinkConfig) {
        if a == b || a >= self.nodes.len() || b >= self.nodes.len() {
            return;
        }
        match self.links.get_mut(&key(a, b)) {
            Some(link) => {
                link.config = config;
                if link.up {
                    return;
                }
                link.up = true;
            }
            None => {
                let now = self.now;
                self.links.insert(key(a, b), Link::new(config, now));
                self.nodes[a].neighbours.push(b);
                self.nodes[b].neighbours.push(a);
            }
        }
        self.notify_up(a, b);
    }

    /// Tells both ends that a link came up: each overlay whose protocol the other end runs
    /// too (or that has none) gets the other as a neighbour.
    fn notify_up(&mut self, dialler: NodeId, listener: NodeId) {
        if !(self.is_alive(dialler) && self.is_alive(listener)) {
            return;
        }
        for (me, other, direction) in [
            (
                dialler,
                listener,
                pheromone_core::overlay::Direction::Outbound,
            ),
            (
                listener,
                dialler,
                pheromone_core::overlay::Direction::Inbound,
            ),
        ] {
            let addr = self.addr(other);
            let mut neighbour = Neighbour::direct(self.nodes[other].peer, vec![addr], direction);
            // The simulated socket's peer: the node's own address, whatever it announces.
            neighbour.observed_ip = self.ip(other);
            let shared: Vec<usize> = self.shared_slots(me, other);
            self.each_slot(me, &shared, |s, now| s.neighbour_up(now, neighbour.clone()));
        }
    }

    /// Slots of `me` that count a link to `other`: no protocol, or one `other` runs.
    fn shared_slots(&self, me: NodeId, other: NodeId) -> Vec<usize> {
        let Some(stack) = self.nodes[me].stack.as_ref() else {
            return Vec::new();
        };
        let theirs = &self.nodes[other].protocols;
        let mine = &self.nodes[me].protocols;
        (0..stack.slots.len())
            .filter(|i| match mine.iter().find(|(_, s)| s == i) {
                None => true,
                Some((proto, _)) => theirs.iter().any(|(p, _)| p == proto),
            })
            .collect()
    }

    pub(crate) fn each_slot(
        &mut self,
        node: NodeId,
        slots: &[usize],
        mut f: impl FnMut(&mut dyn SimOverlay<E>, Instant),
    ) {
        let now = self.now;
        let span = self.nodes[node].span.clone();
        let _entered = span.enter();
        let Some(stack) = self.nodes[node].stack.as_mut() else {
            return;
        };
        for &i in slots {
            if let Some(s) = stack.slots.get_mut(i) {
                f(s.as_mut(), now);
            }
        }
        self.drain(node);
    }

    /// Changes the latency, jitter and loss of an existing link.
    pub fn set_link(&mut self, a: NodeId, b: NodeId, config: LinkConfig) {
        if let Some(link) = self.links.get_mut(&key(a, b)) {
            link.config = config;
        }
    }

    /// Takes the link between `a` and `b` down; both ends are told at once. Frames in
    /// flight on it are lost.
    pub fn disconnect(&mut self, a: NodeId, b: NodeId) {
        let Some(link) = self.links.get_mut(&key(a, b)) else {
            return;
        };
        if !link.up {
            return;
        }
        link.up = false;
        link.epoch = link.epoch.wrapping_add(1);
        self.notify_down(a, b);
        self.notify_down(b, a);
    }

    pub(crate) fn notify_down(&mut self, node: NodeId, gone: NodeId) {
        if !self.is_alive(node) {
            return;
        }
        let peer = self.nodes[gone].peer;
        let shared = self.shared_slots(node, gone);
        self.each_slot(node, &shared, |s, now| s.neighbour_down(now, peer));
    }

    /// Kills `node`: its stack is dropped (and returned), its links go down, and each live
    /// neighbour learns of it one link latency later, as a TCP reset would tell it.
    pub fn kill(&mut self, node: NodeId) -> Option<Stack<E>> {
        let stack = self.nodes.get_mut(node)?.stack.take()?;
        self.nodes[node].timer_at = None;
        self.nodes[node].inbound.clear();
        let neighbours = self.nodes[node].neighbours.clone();
        for peer in neighbours {
            let Some(link) = self.links.get_mut(&key(node, peer)) else {
                continue;
            };
            if !link.up {
                continue;
            }
            link.up = false;
            link.epoch = link.epoch.wrapping_add(1);
            let at = self.now + link.config.latency;
            let incarnation = self.nodes[peer].incarnation;
            self.push(
                at,
                EventKind::LinkDown {
                    node: peer,
                    peer: node,
                    incarnation,
                },
            );
        }
        Some(stack)
    }

    /// Brings a dead `node` back with a fresh `stack`; its links to live neighbours come
    /// back up.
    pub fn revive(&mut self, node: NodeId, stack: impl Into<Stack<E>>) {
        let Some(slot) = self.nodes.get_mut(node) else {
            return;
        };
        if slot.stack.is_some() {
            return;
        }
        slot.incarnation = slot.incarnation.wrapping_add(1);
        self.install(node, stack.into());
        let neighbours = self.nodes[node].neighbours.clone();
        for peer in neighbours {
            if self.is_alive(peer) {
                if let Some(link) = self.links.get_mut(&key(node, peer)) {
                    link.up = true;
                }
                self.notify_up(node, peer);
            }
        }
    }

    /// Splits the network: frames between nodes of different groups are silently dropped
    /// (links stay "up", as a stalled TCP connection does). `group_of` names each node's
    /// group.
    pub fn partition(&mut self, mut group_of: impl FnMut(NodeId) -> u32) {
        for (id, node) in self.nodes.iter_mut().enumerate() {
            node.group = group_of(id);
        }
    }

    /// Ends any partition.
    pub fn heal(&mut self) {
        self.partition(|_| 0);
    }

    /// Processes events up to and including `until`, then sets the clock to `until`.
    pub fn run_until(&mut self, until: Instant, on_event: &mut impl FnMut(Instant, NodeId, E)) {
        self.flush_events(on_event);
        let limit = self.nanos(until);
        while let Some(Reverse(event)) = self.queue.peek() {
            if event.at > limit {
                break;
            }
            self.pop_and_step();
            self.flush_events(on_event);
        }
        self.now = self.now.max(until);
    }

    /// Runs for `duration` of virtual time.
    pub fn run_for(&mut self, duration: Duration, on_event: &mut impl FnMut(Instant, NodeId, E)) {
        let until = self.now + duration;
        self.run_until(until, on_event);
    }

    /// Runs until no event is left or `deadline` is reached; returns whether it went quiet.
    pub fn run_until_quiet(
        &mut self,
        deadline: Instant,
        on_event: &mut impl FnMut(Instant, NodeId, E),
    ) -> bool {
        self.flush_events(on_event);
        let limit = self.nanos(deadline);
        while let Some(Reverse(event)) = self.queue.peek() {
            if event.at > limit {
                self.now = self.now.max(deadline);
                return false;
            }
            self.pop_and_step();
            self.flush_events(on_event);
        }
        true
    }

    /// Hands buffered events (produced by `with_overlay` calls) to `on_event`.
    pub fn flush_events(&mut self, on_event: &mut impl FnMut(Instant, NodeId, E)) {
        for (at, node, event) in self.events.drain(..) {
            on_event(at, node, event);
        }
    }

    pub(crate) fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.start).as_nanos()).unwrap_or(u64::MAX)
    }
}
