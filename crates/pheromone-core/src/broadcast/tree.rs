//! The root tree of the tree strategy: a breadth-first spanning tree of each topic's
//! nodes, grown by a distance vector toward the node with the smallest root key.
//!
//! Every node advertises to each neighbour the best (root key, hops) it knows and whether
//! that neighbour is its parent; the parent is the neighbour offering the best root at the
//! fewest hops. Parent and child links are the tree's eager edges (weight generation 0, so
//! the cycle rule never removes them); GRAFT repairs add heavier edges on top. Distances
//! are capped by `Config::interest_horizon`, which ends the count-to-infinity after a root
//! dies. This file only maintains that state and queues TREE entries; it sends no
//! messages.

use super::interest::{edge_weight, UNREACHABLE};
use super::state::Broadcast;
use super::wire::Entry;
use super::{SignatureVerifier, Strategy, Topic};
use crate::identity::PeerId;
use sha2::Digest;
use std::time::Instant;

/// A node's root key: the first 8 bytes of SHA-256(`"pheromone-broadcast-root/1:"` ‖ peer
/// ID bytes). The smallest key in a connected network becomes the root.
pub(super) fn root_key(peer: &PeerId) -> u64 {
    let mut hasher = sha2::Sha256::new();
    hasher.update(b"pheromone-broadcast-root/1:");
    hasher.update(peer.as_bytes());
    let digest = hasher.finalize();
    let mut key = [0u8; 8];
    key.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(key)
}

impl<V: SignatureVerifier> Broadcast<V> {
    /// A neighbour advertised its root.
    pub(super) fn on_tree(
        &mut self,
        now: Instant,
        link: u64,
        topic: &str,
        (root, dist, parent): (u64, u8, bool),
    ) {
        if self.config.strategy != Strategy::Tree {
            return;
        }
        if !self.topics.contains_key(topic) {
            return;
        }
        let topic = self.canonical_topic(topic);
        if let Some(p) = self.topics.get_mut(&topic).and_then(|s| s.peer_mut(link)) {
            // Poison reverse: a child's route to the root runs through us, so it is no
            // route for us.
            p.root_in = (!parent && dist < UNREACHABLE).then_some((root, dist));
            if p.child != parent {
                p.child = parent;
                if parent {
                    p.eager = true;
                    p.weight = edge_weight(0, &self.local, &p.peer);
                } else if !p.parent {
                    p.eager = false;
                }
            }
        }
        self.recompute_tree(now, &topic);
    }

    /// Re-chooses the root and parent for `topic` and queues changed advertisements.
    pub(super) fn recompute_tree(&mut self, now: Instant, topic: &Topic) {
        if self.config.strategy != Strategy::Tree {
            return;
        }
        let horizon = self.config.interest_horizon;
        let own = root_key(&self.local);
        let local = self.local;
        let Some(state) = self.topics.get_mut(topic) else {
            return;
        };
        // Best offer: smallest root key, then fewest hops, then the neighbour's peer ID, so
        // every node breaks ties the same way in every run.
        let mut best: (u64, u8) = (own, 0);
        let mut parent: Option<u64> = None;
        let mut parent_peer: Option<PeerId> = None;
        for p in &state.peers {
            let Some((root, dist)) = p.root_in else {
                continue;
            };
            let Some(dist) = dist.checked_add(1).filter(|d| *d < horizon) else {
                continue;
            };
            let better = (root, dist) < best
                || ((root, dist) == best && parent_peer.is_some_and(|q| p.peer < q));
            if better {
                best = (root, dist);
                parent = Some(p.link);
                parent_peer = Some(p.peer);
            }
        }
        state.root = Some(best);
        let mut changes = Vec::new();
        for p in &mut state.peers {
            let is_parent = parent == Some(p.link);
            if p.parent != is_parent {
                p.parent = is_parent;
                if is_parent {
                    p.eager = true;
                    p.weight = edge_weight(0, &local, &p.peer);
                } else if !p.child {
                    p.eager = false;
                }
            }
            let out = (best.0, best.1, is_parent);
            if p.tree_out != Some(out) {
                p.tree_out = Some(out);
                changes.push((p.peer, out));
            }
        }
        for (peer, (root, dist, parent)) in changes {
            self.queue_control(now, peer, topic, Entry::Tree { root, dist, parent }, true);
        }
    }
}
