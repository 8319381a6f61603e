//! Topic interest: which neighbours want which topics, and the interest distances this
//! node advertises (split-horizon distance vector, capped at `Config::interest_horizon`).
//!
//! This file only maintains the per-topic neighbour table and queues INTEREST entries; it
//! does not forward messages. The rule it implements: a node tells each neighbour, per
//! topic, its hop distance to the nearest subscriber not counting that neighbour, so
//! messages are sent only toward neighbours behind which some subscriber waits.

use super::state::Broadcast;
use super::wire::Entry;
use super::{SignatureVerifier, Topic, TopicError};
use crate::identity::PeerId;
use std::time::Instant;

/// "No subscriber reachable through me": the distance advertised to withdraw interest.
pub(super) const UNREACHABLE: u8 = u8::MAX;

/// One neighbour's standing for one topic.
#[derive(Debug, Clone)]
pub(super) struct PeerTopic {
    pub(super) peer: PeerId,
    pub(super) link: u64,
    /// The distance this neighbour advertised to us.
    pub(super) dist_in: u8,
    /// The distance we last advertised to it.
    pub(super) dist_out: u8,
    /// Plumtree: whether we push this topic to it eagerly (tree edge) or only announce.
    pub(super) eager: bool,
    /// Plumtree: the tree edge's weight, agreed by both ends (see [`edge_weight`]).
    pub(super) weight: u64,
    /// Tree: the (root, distance) this neighbour advertised, unless it named us its parent.
    pub(super) root_in: Option<(u64, u8)>,
    /// Tree: this neighbour named us its parent.
    pub(super) child: bool,
    /// Tree: we chose this neighbour as our parent.
    pub(super) parent: bool,
    /// Tree: what we last advertised to it.
    pub(super) tree_out: Option<(u64, u8, bool)>,
}

impl PeerTopic {
    /// A parent or child link of the root tree: never pruned.
    pub(super) fn is_tree_edge(&self) -> bool {
        self.parent || self.child
    }
}

/// The weight of a tree edge: its generation in the high 32 bits (edges grafted later
/// weigh more), a hash of the two peer IDs in the low 32 bits (so weights are distinct).
/// Both ends compute the same value.
pub(super) fn edge_weight(gen: u32, a: &PeerId, b: &PeerId) -> u64 {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut hash: u32 = 0x811c_9dc5;
    for byte in lo.as_bytes().iter().chain(hi.as_bytes()) {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    (u64::from(gen) << 32) | u64::from(hash)
}

/// The generation part of an edge weight.
pub(super) fn weight_gen(weight: u64) -> u32 {
    (weight >> 32) as u32
}

impl PeerTopic {
    /// A neighbour's initial standing: lazy until the root tree or a GRAFT says otherwise.
    fn new(peer: PeerId, link: u64, local: &PeerId) -> Self {
        Self {
            peer,
            link,
            dist_in: UNREACHABLE,
            dist_out: UNREACHABLE,
            eager: false,
            weight: edge_weight(0, local, &peer),
            root_in: None,
            child: false,
            parent: false,
            tree_out: None,
        }
    }

    /// Whether the neighbour asked for this topic (some subscriber is behind it).
    pub(super) fn wants(&self) -> bool {
        self.dist_in != UNREACHABLE
    }
}

/// What a node knows about one topic.
#[derive(Debug, Clone, Default)]
pub(crate) struct TopicState {
    pub(super) subscribed: bool,
    /// Largest tree-edge generation seen; a new GRAFT gets the next one.
    pub(super) clock: u32,
    /// The best root known: (key, hops); our own key at distance 0 if none is better.
    pub(super) root: Option<(u64, u8)>,
    /// Every current neighbour, in the order links came up (deterministic).
    pub(super) peers: Vec<PeerTopic>,
}

impl TopicState {
    pub(super) fn peer_mut(&mut self, link: u64) -> Option<&mut PeerTopic> {
        self.peers.iter_mut().find(|p| p.link == link)
    }

    /// Nothing to remember: not subscribed, nobody wants it, we advertise nothing.
    fn is_idle(&self) -> bool {
        !self.subscribed
            && self
                .peers
                .iter()
                .all(|p| p.dist_in == UNREACHABLE && p.dist_out == UNREACHABLE)
    }
}

impl<V: SignatureVerifier> Broadcast<V> {
    /// The state of `topic`, created (with every neighbour as a lazy peer) if new. A
    /// neighbour's interest (`local` false) may not take the room kept for local
    /// subscriptions.
    pub(super) fn topic_state_mut(
        &mut self,
        topic: &Topic,
        local: bool,
    ) -> Result<&mut TopicState, TopicError> {
        if !self.topics.contains_key(topic) {
            let max = if local {
                self.config.max_topics
            } else {
                self.config
                    .max_topics
                    .saturating_sub(self.config.reserved_local_topics)
            };
            if self.topics.len() >= max {
                return Err(TopicError::TooManyTopics(self.config.max_topics));
            }
            let local = self.local;
            let peers = self
                .neighbours
                .iter()
                .map(|(peer, n)| PeerTopic::new(*peer, n.link, &local))
                .collect();
            self.topics.insert(
                topic.clone(),
                TopicState {
                    subscribed: false,
                    clock: 0,
                    root: None,
                    peers,
                },
            );
        }
        self.topics
            .get_mut(topic)
            .ok_or(TopicError::TooManyTopics(self.config.max_topics))
    }

    pub(super) fn interest_neighbour_added(&mut self, now: Instant, peer: PeerId, link: u64) {
        let topics: Vec<Topic> = self.topics.keys().cloned().collect();
        for topic in topics {
            if let Some(state) = self.topics.get_mut(&topic) {
                state.peers.push(PeerTopic::new(peer, link, &self.local));
            }
            self.recompute_interest(now, &topic);
        }
    }

    pub(super) fn interest_neighbour_removed(&mut self, now: Instant, peer: PeerId) {
        let topics: Vec<Topic> = self.topics.keys().cloned().collect();
        for topic in topics {
            if let Some(state) = self.topics.get_mut(&topic) {
                state.peers.retain(|p| p.peer != peer);
            }
            self.recompute_interest(now, &topic);
        }
    }

    /// A neighbour advertised `dist` for `topic`.
    pub(super) fn on_interest(
        &mut self,
        now: Instant,
        from: PeerId,
        link: u64,
        topic: &str,
        dist: u8,
    ) {
        let topic = self.canonical_topic(topic);
        let was = self
            .topics
            .get(&topic)
            .and_then(|s| s.peers.iter().find(|p| p.link == link))
            .map_or(UNREACHABLE, |p| p.dist_in);
        if was == UNREACHABLE && dist != UNREACHABLE {
            // New interest from this neighbour: it counts against its own cap first, so
            // that one neighbour can neither fill our table nor push its junk onward.
            let max = self.config.max_topics_per_neighbour;
            if self
                .neighbours
                .get(&from)
                .is_none_or(|n| n.interests >= max)
            {
                tracing::debug!(%from, %topic, max, "ignoring interest beyond the neighbour's topic limit");
                self.metrics.dropped.too_many_topics += 1;
                return;
            }
            if self.topic_state_mut(&topic, false).is_err() {
                tracing::debug!(%from, %topic, "ignoring interest beyond the topic limit");
                self.metrics.dropped.too_many_topics += 1;
                return;
            }
        }
        if !self.topics.contains_key(&topic) {
            // Withdrawn interest in a topic we do not track: nothing to do.
            return;
        }
        if let Some(p) = self.topics.get_mut(&topic).and_then(|s| s.peer_mut(link)) {
            p.dist_in = dist;
        }
        if let Some(n) = self.neighbours.get_mut(&from) {
            match (was == UNREACHABLE, dist == UNREACHABLE) {
                (true, false) => n.interests += 1,
                (false, true) => n.interests = n.interests.saturating_sub(1),
                _ => {}
            }
        }
        self.recompute_interest(now, &topic);
    }

    /// Recomputes what we advertise for `topic` to each neighbour and queues the changes.
    pub(super) fn recompute_interest(&mut self, now: Instant, topic: &Topic) {
        let horizon = self.config.interest_horizon;
        let Some(state) = self.topics.get_mut(topic) else {
            return;
        };
        // Best and second-best distances over neighbours, so that each neighbour's
        // split-horizon distance (best not counting itself) is O(1).
        let (mut best, mut best_link, mut second) = (UNREACHABLE, u64::MAX, UNREACHABLE);
        for p in &state.peers {
            if p.dist_in < best {
                second = best;
                best = p.dist_in;
                best_link = p.link;
            } else if p.dist_in < second {
                second = p.dist_in;
            }
        }
        let mut changes = Vec::new();
        for p in &mut state.peers {
            let dist = if state.subscribed {
                0
            } else {
                let via = if p.link == best_link { second } else { best };
                match via.checked_add(1) {
                    Some(d) if d < horizon => d,
                    _ => UNREACHABLE,
                }
            };
            if dist != p.dist_out {
                p.dist_out = dist;
                changes.push((p.peer, dist));
            }
        }
        let idle = state.is_idle();
        for (peer, dist) in changes {
            self.queue_control(now, peer, topic, Entry::Interest(dist), true);
        }
        if idle {
            self.topics.remove(topic);
        } else {
            self.recompute_tree(now, topic);
        }
    }
}
