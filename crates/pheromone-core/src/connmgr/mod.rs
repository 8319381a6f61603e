//! The connection manager: keeps a node between a low and a high watermark of direct
//! connections, as an [`Overlay`] with no protocol of its own ([`Wire::None`]).
//!
//! It watches every direct connection (each connected peer is a neighbour), keeps the
//! operator's bootstrap and static peers connected (redialled with capped, jittered
//! backoff), dials candidates below the low watermark — spread over their groups (Kademlia
//! buckets), so connections cover the key space — and asks to close the least useful
//! connections above the high watermark. Candidates come from whoever knows peers: the
//! node's discovery service feeds it Kademlia's table with [`ConnectionManager::learn`] and
//! [`ConnectionManager::forget`] (see [`ConnectionManager::follow_kad`]).
//!
//! The rules themselves are in `policy.rs`; this file gathers what they are shown and turns
//! their decisions into [`Output::Dial`] and [`Output::Disconnect`]. No IO, no clock.

mod policy;

use crate::addr::Multiaddr;
use crate::identity::PeerId;
use crate::overlay::{
    DialFailure, DialId, InboundId, Neighbour, Output, Overlay, RequestFailure, RequestId, Wire,
};
use policy::{Action, Candidate, ConnectedPeer, Limits, Policy};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

/// Settings of the [`ConnectionManager`].
#[derive(Debug, Clone)]
pub struct Config {
    /// Bootstrap peers: kept connected while the node is short of peers, redialled with
    /// backoff, never pruned. An address without `/p2p/` is dialled to learn who answers.
    pub bootstrap: Vec<Multiaddr>,
    /// Peers kept connected always (redialled, never pruned).
    pub static_peers: Vec<Multiaddr>,
    /// Below this many connected peers, candidates are dialled.
    pub low_watermark: usize,
    /// Above this many connected peers, the least useful connections are closed.
    pub high_watermark: usize,
    /// Dials in flight at once.
    pub max_parallel_dials: usize,
    /// How often the connections are looked at.
    pub maintenance_interval: Duration,
    /// A connection younger than this is never pruned: it was made for a reason that may
    /// not have produced a stream yet.
    pub prune_grace: Duration,
    /// First wait before redialling a lost pinned peer; doubled after each failure (±50%
    /// jitter) up to `redial_max`.
    pub redial_initial: Duration,
    /// Longest wait between redials of a pinned peer.
    pub redial_max: Duration,
    /// Candidates remembered; beyond it the ones heard of longest ago are forgotten.
    pub max_candidates: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bootstrap: Vec::new(),
            static_peers: Vec::new(),
            low_watermark: 8,
            high_watermark: 32,
            max_parallel_dials: 8,
            maintenance_interval: Duration::from_secs(1),
            prune_grace: Duration::from_secs(20),
            redial_initial: Duration::from_secs(1),
            redial_max: Duration::from_secs(60),
            max_candidates: 4096,
        }
    }
}

/// What the connection manager tells the application.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A dial it asked for ended.
    Dialled {
        /// The peer that answered, or the one expected.
        peer: Option<PeerId>,
        /// Whether a connection was made.
        ok: bool,
    },
    /// A pinned (bootstrap or static) peer answered at `addr`.
    PinnedConnected {
        /// The peer that answered.
        peer: PeerId,
        /// The address dialled (no `/p2p/`).
        addr: Multiaddr,
        /// Whether it is a bootstrap peer (rather than a static one).
        bootstrap: bool,
    },
    /// It asked to close the connections to `peer`, above the high watermark.
    Pruned {
        /// The peer.
        peer: PeerId,
    },
}

/// Counters; they only grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Dials asked for.
    pub dials: u64,
    /// Dials that failed.
    pub dials_failed: u64,
    /// Dials of pinned (bootstrap and static) peers among them.
    pub redials: u64,
    /// Peers whose connections it asked to close.
    pub pruned: u64,
}

/// One known peer it may dial.
#[derive(Debug, Clone)]
struct Known {
    group: usize,
    addrs: Vec<Multiaddr>,
    heard: Instant,
}

#[derive(Debug, Clone, Copy)]
enum DialFor {
    Pinned(usize),
    Candidate(PeerId),
}

/// The connection manager state machine; see the module docs. Calling contract: the
/// [`Overlay`] trait's.
#[derive(Debug)]
pub struct ConnectionManager {
    local: PeerId,
    config: Config,
    policy: Policy,
    /// Connected peers and when each became one.
    connected: BTreeMap<PeerId, Instant>,
    candidates: BTreeMap<PeerId, Known>,
    protected: BTreeSet<PeerId>,
    dials: BTreeMap<DialId, DialFor>,
    next_dial: u64,
    next_tick: Instant,
    outputs: VecDeque<Output<Event>>,
    metrics: Metrics,
}

impl ConnectionManager {
    /// A manager for node `local` that dials its pinned peers at its first tick, `now`;
    /// `seed` spreads redials of many nodes apart.
    pub fn new(local: PeerId, config: Config, now: Instant, seed: u64) -> Self {
        let limits = Limits {
            low: config.low_watermark,
            high: config.high_watermark.max(config.low_watermark),
            grace: config.prune_grace,
            redial_initial: config.redial_initial,
            redial_max: config.redial_max.max(config.redial_initial),
        };
        let policy = Policy::new(limits, &config.bootstrap, &config.static_peers, now, seed);
        Self {
            local,
            policy,
            connected: BTreeMap::new(),
            candidates: BTreeMap::new(),
            protected: BTreeSet::new(),
            dials: BTreeMap::new(),
            next_dial: 0,
            next_tick: now,
            outputs: VecDeque::new(),
            metrics: Metrics::default(),
            config,
        }
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Counters.
    pub fn metrics(&self) -> Metrics {
        self.metrics
    }

    /// Peers it counts as connected.
    pub fn connected(&self) -> usize {
        self.connected.len()
    }

    /// Candidates it knows.
    pub fn candidates(&self) -> usize {
        self.candidates.len()
    }

    /// Whether `peer` is one of the pinned (bootstrap or static) peers.
    pub fn is_pinned(&self, peer: &PeerId) -> bool {
        self.policy.is_pinned(peer)
    }

    /// The configured address of pinned peer `peer`.
    pub fn pinned_addr(&self, peer: &PeerId) -> Option<Multiaddr> {
        self.policy
            .pinned()
            .iter()
            .find(|p| p.peer.as_ref() == Some(peer))
            .map(|p| p.addr.clone())
    }

    /// `peer` can be dialled at `addrs`; `group` spreads dials (a Kademlia bucket).
    /// Hearing of a known peer again refreshes it.
    pub fn learn(&mut self, now: Instant, peer: PeerId, group: usize, addrs: Vec<Multiaddr>) {
        if peer == self.local || addrs.is_empty() {
            return;
        }
        if !self.candidates.contains_key(&peer)
            && self.candidates.len() >= self.config.max_candidates
        {
            let stalest = self
                .candidates
                .iter()
                .min_by_key(|(p, k)| (k.heard, **p))
                .map(|(p, _)| *p);
            if let Some(stalest) = stalest {
                self.candidates.remove(&stalest);
            }
        }
        self.candidates.insert(
            peer,
            Known {
                group,
                addrs,
                heard: now,
            },
        );
    }

    /// `peer` is no longer a candidate (it left the table).
    pub fn forget(&mut self, peer: &PeerId) {
        self.candidates.remove(peer);
    }

    /// Feeds a Kademlia event: table additions become candidates (the bucket is the
    /// group), evictions are forgotten. Other events are ignored.
    pub fn follow_kad(&mut self, now: Instant, event: &crate::kad::Event) {
        match event {
            crate::kad::Event::PeerAdded {
                peer,
                bucket,
                addrs,
            } => self.learn(now, *peer, *bucket, addrs.clone()),
            crate::kad::Event::PeerEvicted { peer, .. } => self.forget(peer),
            _ => {}
        }
    }

    /// Never prune `peer` (a peer the application named, or one in use); `false` undoes it.
    pub fn protect(&mut self, peer: PeerId, protected: bool) {
        if protected {
            self.protected.insert(peer);
        } else {
            self.protected.remove(&peer);
        }
    }

    fn tick(&mut self, now: Instant) {
        let connected: Vec<ConnectedPeer> = self
            .connected
            .iter()
            .map(|(peer, since)| {
                let known = self.candidates.get(peer);
                ConnectedPeer {
                    peer: *peer,
                    bucket: known.map(|k| k.group),
                    last_seen: known.map(|k| k.heard),
                    age: now.saturating_duration_since(*since),
                    keep: self.protected.contains(peer),
                }
            })
            .collect();
        let mut candidates: Vec<Candidate> = self
            .candidates
            .iter()
            .map(|(peer, k)| Candidate {
                peer: *peer,
                bucket: k.group,
                addrs: k.addrs.clone(),
            })
            .collect();
        // Groups in order, so that the spread over groups is the same from run to run.
        candidates.sort_by_key(|c| c.bucket);
        let free = self
            .config
            .max_parallel_dials
            .saturating_sub(self.dials.len());
        for action in self.policy.tick(now, &connected, &candidates, free) {
            match action {
                Action::DialPinned { index } => {
                    let Some(pinned) = self.policy.pinned().get(index) else {
                        continue;
                    };
                    let (peer, addr) = (pinned.peer, pinned.addr.clone().without_p2p());
                    self.metrics.redials += 1;
                    self.dial(DialFor::Pinned(index), peer, vec![addr]);
                }
                Action::Dial { peer, addrs } => {
                    self.dial(DialFor::Candidate(peer), Some(peer), addrs);
                }
                Action::Prune { peer } => {
                    self.metrics.pruned += 1;
                    self.outputs.push_back(Output::Disconnect { peer });
                    self.outputs
                        .push_back(Output::Event(Event::Pruned { peer }));
                }
            }
        }
    }

    fn dial(&mut self, purpose: DialFor, peer: Option<PeerId>, addrs: Vec<Multiaddr>) {
        let id = DialId(self.next_dial);
        self.next_dial += 1;
        self.metrics.dials += 1;
        self.dials.insert(id, purpose);
        self.outputs.push_back(Output::Dial { id, peer, addrs });
    }
}

impl Overlay for ConnectionManager {
    type Event = Event;
    type Error = std::convert::Infallible;

    fn protocol(&self) -> Option<&str> {
        None
    }

    fn wire(&self) -> Wire {
        Wire::None
    }

    fn max_message_len(&self) -> usize {
        0
    }

    fn local_peer_id(&self) -> PeerId {
        self.local
    }

    fn neighbour_up(&mut self, now: Instant, neighbour: Neighbour) {
        if neighbour.peer != self.local {
            self.connected.entry(neighbour.peer).or_insert(now);
        }
    }

    fn neighbour_down(&mut self, _now: Instant, peer: PeerId) {
        self.connected.remove(&peer);
    }

    /// Never called: with [`Wire::None`] there are no streams to bring frames.
    fn handle_frame(&mut self, _: Instant, _: PeerId, _: &[u8]) -> Result<(), Self::Error> {
        Ok(())
    }

    /// Never called: with [`Wire::None`] there are no streams to bring requests.
    fn handle_request(
        &mut self,
        _: Instant,
        _: PeerId,
        _: InboundId,
        _: &[u8],
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    /// Never called: the manager sends no requests.
    fn handle_response(
        &mut self,
        _: Instant,
        _: RequestId,
        _: Result<&[u8], RequestFailure>,
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    fn handle_dial_result(
        &mut self,
        now: Instant,
        id: DialId,
        result: Result<PeerId, DialFailure>,
    ) {
        let Some(purpose) = self.dials.remove(&id) else {
            return;
        };
        let ok = result.is_ok();
        if !ok {
            self.metrics.dials_failed += 1;
        }
        let peer = match purpose {
            DialFor::Pinned(index) => {
                self.policy
                    .pinned_dialled(index, result.map_err(|_| ()), now);
                let pinned = self.policy.pinned().get(index);
                if let (Ok(peer), Some(p)) = (result, pinned) {
                    let (addr, bootstrap) = (p.addr.clone().without_p2p(), p.bootstrap);
                    self.outputs
                        .push_back(Output::Event(Event::PinnedConnected {
                            peer,
                            addr,
                            bootstrap,
                        }));
                }
                self.policy.pinned().get(index).and_then(|p| p.peer)
            }
            DialFor::Candidate(peer) => {
                self.policy.dialled(peer, ok, now);
                Some(peer)
            }
        };
        self.outputs
            .push_back(Output::Event(Event::Dialled { peer, ok }));
    }

    fn handle_timeout(&mut self, now: Instant) {
        if now < self.next_tick {
            return;
        }
        self.next_tick = now + self.config.maintenance_interval;
        self.tick(now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Some(self.next_tick)
    }

    fn poll_output(&mut self) -> Option<Output<Event>> {
        self.outputs.pop_front()
    }
}

#[cfg(test)]
mod tests;
