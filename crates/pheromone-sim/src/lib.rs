//! Deterministic multi-node simulator for pheromone's sans-IO state machines.
//!
//! N nodes run the real core state machines behind a small [`Protocol`] trait; a virtual
//! clock jumps from event to event; links have seeded latency, jitter and loss; the network
//! can be partitioned and nodes killed and revived. Everything random comes from one seed,
//! and every table whose iteration order could reach an output is ordered, so the same
//! seed replays the same run bit for bit. One thread, no sleeping, no real IO.
//!
//! # Layout
//!
//! - [`Sim`]: the simulator itself (this file); [`Protocol`], [`LinkConfig`] and
//!   [`NetStats`]: what it drives and measures (`protocol.rs`).
//! - [`graph`]: random connected topologies.
//! - [`scenario`]: ready-made experiments (the `broadcast` and `kad` scenarios) used by the
//!   tests and by the `pheromone-sim` command.
//!
//! # Driving a simulation
//!
//! Add nodes with [`Sim::add_node`], link them with [`Sim::connect`], give them commands
//! with [`Sim::with_node`], and advance time with [`Sim::run_until`] /
//! [`Sim::run_for`], which hand every application event (`Protocol::Event`) to a callback
//! together with the virtual time and the node that produced it. Protocols that dial
//! arbitrary peers (Kademlia) run in full-reachability mode
//! ([`Sim::set_full_reachability`]) instead of over explicit links.

#![deny(missing_docs, unreachable_pub)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod graph;
mod protocol;
pub mod scenario;

pub use protocol::{LinkConfig, NetStats, Protocol, ProtocolOutput};

use bytes::Bytes;
use pheromone_core::identity::PeerId;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

/// Index of a node in a [`Sim`], stable for the whole run (kills do not renumber).
pub type NodeId = usize;

#[derive(Debug)]
struct Link {
    config: LinkConfig,
    up: bool,
    /// Bumped whenever the link goes down, so frames in flight on an old incarnation of
    /// the link are discarded (a dead TCP connection loses its buffers).
    epoch: u32,
}

struct Node<P> {
    peer: PeerId,
    proto: Option<P>,
    incarnation: u32,
    timer_at: Option<Instant>,
    neighbours: Vec<NodeId>,
    group: u32,
    span: tracing::Span,
}

enum EventKind {
    Deliver {
        to: NodeId,
        from: NodeId,
        epoch: u32,
        bytes: Bytes,
    },
    Timer {
        node: NodeId,
        incarnation: u32,
    },
    LinkDown {
        node: NodeId,
        peer: NodeId,
        incarnation: u32,
    },
    /// A frame sent without a link, in full-reachability mode: delivered only to the
    /// incarnation of `to` that was alive when it was sent.
    DeliverDirect {
        to: NodeId,
        from: NodeId,
        incarnation: u32,
        bytes: Bytes,
    },
}

/// A queue entry: time (nanoseconds since the start), insertion number, payload slot.
/// Kept small because the heap moves it around on every push and pop; the payload waits
/// in a slab.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Event {
    // Ties in time break by insertion order: the determinism of the whole run rests on
    // this.
    at: u64,
    seq: u64,
    slot: u32,
}

/// The simulator: nodes, links, a virtual clock and an event queue.
pub struct Sim<P: Protocol> {
    start: Instant,
    now: Instant,
    rng: StdRng,
    nodes: Vec<Node<P>>,
    by_peer: HashMap<PeerId, NodeId>,
    links: HashMap<(NodeId, NodeId), Link>,
    queue: BinaryHeap<Reverse<Event>>,
    payloads: Vec<Option<EventKind>>,
    free: Vec<u32>,
    seq: u64,
    events: Vec<(Instant, NodeId, P::Event)>,
    stats: NetStats,
    /// Full-reachability mode: any node may send to any node it has no link with.
    reach: Option<LinkConfig>,
}

fn key(a: NodeId, b: NodeId) -> (NodeId, NodeId) {
    (a.min(b), a.max(b))
}

impl<P: Protocol> Sim<P> {
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
            by_peer: HashMap::new(),
            links: HashMap::new(),
            queue: BinaryHeap::new(),
            payloads: Vec::new(),
            free: Vec::new(),
            seq: 0,
            events: Vec::new(),
            stats: NetStats::default(),
            reach: None,
        }
    }

    /// Turns full-reachability mode on (`Some`) or off (`None`, the default).
    ///
    /// In this mode a node may send to any other node, linked or not, as an internet host
    /// may dial any address: frames between unlinked nodes travel with `config`'s latency,
    /// jitter and loss and are delivered if the receiver is still the same live
    /// incarnation and in the same partition group; a frame to a dead node is silently
    /// lost, so the sender's own timeouts must notice (as with a host that vanished without
    /// a word). No `link_up`/`link_down` calls are made for such traffic. Explicit links
    /// keep their own properties.
    pub fn set_full_reachability(&mut self, config: Option<LinkConfig>) {
        self.reach = config;
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

    /// Adds a live node named `peer` running `proto`.
    pub fn add_node(&mut self, peer: PeerId, proto: P) -> NodeId {
        let id = self.nodes.len();
        self.nodes.push(Node {
            peer,
            proto: Some(proto),
            incarnation: 0,
            timer_at: None,
            neighbours: Vec::new(),
            group: 0,
            span: tracing::info_span!("node", id),
        });
        self.by_peer.insert(peer, id);
        self.drain(id);
        id
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
        self.nodes.get(node).is_some_and(|n| n.proto.is_some())
    }

    /// The protocol instance of a live node.
    pub fn node(&self, node: NodeId) -> Option<&P> {
        self.nodes.get(node).and_then(|n| n.proto.as_ref())
    }

    /// Nodes `node` has a link to (up or down), in the order the links were made.
    pub fn neighbours(&self, node: NodeId) -> &[NodeId] {
        self.nodes.get(node).map_or(&[], |n| &n.neighbours)
    }

    /// Whether the link between `a` and `b` exists and is up.
    pub fn link_is_up(&self, a: NodeId, b: NodeId) -> bool {
        self.links.get(&key(a, b)).is_some_and(|l| l.up)
    }

    /// Runs `f` on a live node at the current time, then collects its outputs.
    pub fn with_node<R>(
        &mut self,
        node: NodeId,
        f: impl FnOnce(&mut P, Instant) -> R,
    ) -> Option<R> {
        let now = self.now;
        let slot = self.nodes.get_mut(node)?;
        let span = slot.span.clone();
        let _entered = span.enter();
        let out = f(slot.proto.as_mut()?, now);
        self.drain(node);
        Some(out)
    }

    /// Creates (or brings back up) the link between `a` and `b`; both ends are told at once
    /// if alive.
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
                self.links.insert(
                    key(a, b),
                    Link {
                        config,
                        up: true,
                        epoch: 0,
                    },
                );
                self.nodes[a].neighbours.push(b);
                self.nodes[b].neighbours.push(a);
            }
        }
        self.notify_up(a, b);
    }

    fn notify_up(&mut self, a: NodeId, b: NodeId) {
        if !(self.is_alive(a) && self.is_alive(b)) {
            return;
        }
        let (pa, pb) = (self.nodes[a].peer, self.nodes[b].peer);
        self.with_node(a, |p, now| p.link_up(now, pb));
        self.with_node(b, |p, now| p.link_up(now, pa));
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
        let (pa, pb) = (self.nodes[a].peer, self.nodes[b].peer);
        self.with_node(a, |p, now| p.link_down(now, pb));
        self.with_node(b, |p, now| p.link_down(now, pa));
    }

    /// Kills `node`: its state is dropped (and returned), its links go down, and each live
    /// neighbour learns of it one link latency later, as a TCP reset would tell it.
    pub fn kill(&mut self, node: NodeId) -> Option<P> {
        let proto = self.nodes.get_mut(node)?.proto.take()?;
        self.nodes[node].timer_at = None;
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
        Some(proto)
    }

    /// Brings a dead `node` back with fresh state `proto`; its links to live neighbours come
    /// back up.
    pub fn revive(&mut self, node: NodeId, proto: P) {
        let Some(slot) = self.nodes.get_mut(node) else {
            return;
        };
        if slot.proto.is_some() {
            return;
        }
        slot.proto = Some(proto);
        slot.incarnation = slot.incarnation.wrapping_add(1);
        self.drain(node);
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
    pub fn run_until(
        &mut self,
        until: Instant,
        on_event: &mut impl FnMut(Instant, NodeId, P::Event),
    ) {
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
    pub fn run_for(
        &mut self,
        duration: Duration,
        on_event: &mut impl FnMut(Instant, NodeId, P::Event),
    ) {
        let until = self.now + duration;
        self.run_until(until, on_event);
    }

    /// Runs until no event is left or `deadline` is reached; returns whether it went quiet.
    pub fn run_until_quiet(
        &mut self,
        deadline: Instant,
        on_event: &mut impl FnMut(Instant, NodeId, P::Event),
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

    /// Hands buffered events (produced by `with_node` calls) to `on_event`.
    pub fn flush_events(&mut self, on_event: &mut impl FnMut(Instant, NodeId, P::Event)) {
        for (at, node, event) in self.events.drain(..) {
            on_event(at, node, event);
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.start).as_nanos()).unwrap_or(u64::MAX)
    }

    fn push(&mut self, at: Instant, kind: EventKind) {
        self.seq += 1;
        let slot = match self.free.pop() {
            Some(slot) => {
                self.payloads[slot as usize] = Some(kind);
                slot
            }
            None => {
                self.payloads.push(Some(kind));
                // Slots never exceed the events in flight at once, far below 2^32.
                (self.payloads.len() - 1) as u32
            }
        };
        let at = self.nanos(at);
        self.queue.push(Reverse(Event {
            at,
            seq: self.seq,
            slot,
        }));
    }

    fn pop_and_step(&mut self) {
        let Some(Reverse(event)) = self.queue.pop() else {
            return;
        };
        let Some(kind) = self
            .payloads
            .get_mut(event.slot as usize)
            .and_then(Option::take)
        else {
            return;
        };
        self.free.push(event.slot);
        self.now = self.now.max(self.start + Duration::from_nanos(event.at));
        self.stats.events += 1;
        self.step(kind);
    }

    fn step(&mut self, kind: EventKind) {
        match kind {
            EventKind::Deliver {
                to,
                from,
                epoch,
                bytes,
            } => {
                let live_link = self
                    .links
                    .get(&key(to, from))
                    .is_some_and(|l| l.up && l.epoch == epoch);
                let same_side = self.nodes[to].group == self.nodes[from].group;
                if !(live_link && same_side && self.is_alive(to)) {
                    self.stats.frames_dropped += 1;
                    return;
                }
                self.stats.frames_delivered += 1;
                let peer = self.nodes[from].peer;
                self.with_node(to, |p, now| p.handle_message(now, peer, &bytes));
            }
            EventKind::Timer { node, incarnation } => {
                let now = self.nanos(self.now);
                let scheduled = self.nodes[node].timer_at.map(|at| self.nanos(at));
                let slot = &mut self.nodes[node];
                if slot.incarnation != incarnation || scheduled != Some(now) {
                    return;
                }
                slot.timer_at = None;
                self.with_node(node, |p, now| {
                    if p.poll_timeout().is_some_and(|at| at <= now) {
                        p.handle_timeout(now);
                    }
                });
            }
            EventKind::DeliverDirect {
                to,
                from,
                incarnation,
                bytes,
            } => {
                let same_side = self.nodes[to].group == self.nodes[from].group;
                if !(same_side && self.is_alive(to) && self.nodes[to].incarnation == incarnation) {
                    self.stats.frames_dropped += 1;
                    return;
                }
                self.stats.frames_delivered += 1;
                let peer = self.nodes[from].peer;
                self.with_node(to, |p, now| p.handle_message(now, peer, &bytes));
            }
            EventKind::LinkDown {
                node,
                peer,
                incarnation,
            } => {
                if self.nodes[node].incarnation != incarnation {
                    return;
                }
                let gone = self.nodes[peer].peer;
                self.with_node(node, |p, now| p.link_down(now, gone));
            }
        }
    }

    /// Collects a node's outputs after an input and (re)schedules its timer.
    fn drain(&mut self, node: NodeId) {
        let now = self.now;
        loop {
            let Some(output) = self.nodes[node]
                .proto
                .as_mut()
                .and_then(|p| p.poll_output())
            else {
                break;
            };
            match output {
                ProtocolOutput::Event(event) => self.events.push((now, node, event)),
                ProtocolOutput::Send { to, bytes } => self.send(node, to, bytes),
            }
        }
        let slot = &mut self.nodes[node];
        let Some(at) = slot.proto.as_ref().and_then(|p| p.poll_timeout()) else {
            return;
        };
        let at = at.max(now);
        if slot.timer_at.is_none_or(|current| at < current) {
            slot.timer_at = Some(at);
            let incarnation = slot.incarnation;
            self.push(at, EventKind::Timer { node, incarnation });
        }
    }

    fn send(&mut self, from: NodeId, to: PeerId, bytes: Bytes) {
        self.stats.frames_sent += 1;
        self.stats.bytes_sent += bytes.len() as u64;
        let Some(&to) = self.by_peer.get(&to) else {
            self.stats.frames_dropped += 1;
            return;
        };
        let Some(link) = self.links.get(&key(from, to)) else {
            match self.reach {
                Some(config) if to != from => self.send_direct(from, to, config, bytes),
                _ => self.stats.frames_dropped += 1,
            }
            return;
        };
        if !link.up {
            self.stats.frames_dropped += 1;
            return;
        }
        let config = link.config;
        let epoch = link.epoch;
        if config.loss > 0.0 && self.rng.gen_bool(config.loss.clamp(0.0, 1.0)) {
            self.stats.frames_lost += 1;
            return;
        }
        let mut delay = config.latency;
        if !config.jitter.is_zero() {
            let jitter = self.rng.gen_range(0..=config.jitter.as_nanos() as u64);
            delay += Duration::from_nanos(jitter);
        }
        let at = self.now + delay;
        self.push(
            at,
            EventKind::Deliver {
                to,
                from,
                epoch,
                bytes,
            },
        );
    }

    fn send_direct(&mut self, from: NodeId, to: NodeId, config: LinkConfig, bytes: Bytes) {
        if config.loss > 0.0 && self.rng.gen_bool(config.loss.clamp(0.0, 1.0)) {
            self.stats.frames_lost += 1;
            return;
        }
        let mut delay = config.latency;
        if !config.jitter.is_zero() {
            let jitter = self.rng.gen_range(0..=config.jitter.as_nanos() as u64);
            delay += Duration::from_nanos(jitter);
        }
        let at = self.now + delay;
        let incarnation = self.nodes[to].incarnation;
        self.push(
            at,
            EventKind::DeliverDirect {
                to,
                from,
                incarnation,
                bytes,
            },
        );
    }
}
