//! The GOSSIP path of the state machine: a copy arrives, is deduplicated, verified,
//! delivered once and forwarded once; duplicates feed the tree's cycle rule.
//!
//! An `impl` block of [`Broadcast`]; it never decodes frames (the caller hands it a parsed
//! [`Gossip`]) and never reads a clock.

use super::interest::weight_gen;
use super::recovery::{Recent, Timer, HAS, TOLD};
use super::state::Broadcast;
use super::wire::{self, Entry, Gossip};
use super::{FrameError, Message, MessageId, SignatureVerifier, Strategy, Topic};
use crate::identity::PeerId;
use bytes::Bytes;
use std::time::Instant;

/// How the first copy of a message reached us.
#[derive(Debug, Clone, Copy)]
pub(super) struct FirstCopy {
    pub(super) hops: u8,
    pub(super) path_max: u64,
    pub(super) link_weight: u64,
    pub(super) from: Option<(PeerId, u64)>,
}

impl<V: SignatureVerifier> Broadcast<V> {
    pub(super) fn on_gossip(
        &mut self,
        now: Instant,
        from: PeerId,
        link: u64,
        frame: &[u8],
        g: Gossip<'_>,
    ) -> Result<(), FrameError> {
        self.metrics.gossip_received += 1;
        let id = MessageId::new(&g.origin, g.seq);
        if self.seen.contains(now, &id) {
            self.on_duplicate(now, from, link, id, &g);
            return Ok(());
        }
        wire::signing_input(g.signed, &mut self.scratch);
        if !self.verifier.verify(&g.origin, &self.scratch, g.signature) {
            self.metrics.dropped.bad_signature += 1;
            return Err(FrameError::BadSignature { origin: g.origin });
        }
        self.seen.insert(now, id);
        let topic = self.canonical_topic(g.topic);
        if self.config.strategy == Strategy::Tree {
            // Plumtree: whoever pushes us a new message over a grafted edge (generation
            // above 0) makes it a tree edge for us too; adopt its weight. Root-tree links
            // are eager already, and answers to pulls come with generation 0.
            if let Some(state) = self.topics.get_mut(g.topic) {
                state.clock = state.clock.max(weight_gen(g.path_max));
                if let Some(p) = state.peer_mut(link) {
                    if !p.eager && weight_gen(g.link_weight) > 0 {
                        p.eager = true;
                        p.weight = g.link_weight;
                    }
                }
            }
        }
        if self.is_subscribed(g.topic) {
            self.metrics.delivered += 1;
            self.metrics.delivered_hops += u64::from(g.hops);
            let message = Message {
                id,
                origin: g.origin,
                topic: topic.clone(),
                seq: g.seq,
                data: Bytes::copy_from_slice(g.data),
                hops: g.hops,
            };
            self.deliver(now, message);
        }
        let frame = Bytes::copy_from_slice(frame);
        // The sender has it and waits for our "I have it".
        self.queue_control(now, from, &topic, Entry::Ack(id), false);
        let first = FirstCopy {
            hops: g.hops,
            path_max: g.path_max,
            link_weight: g.link_weight,
            from: Some((from, link)),
        };
        self.accept_new(now, id, topic, frame, first);
        Ok(())
    }

    /// A copy of a message we already handled: never delivered nor forwarded. With the
    /// tree strategy it reveals a cycle of tree edges; the cycle rule prunes the edge only
    /// when it can prove that edge is the heaviest on the cycle, which keeps the tree
    /// connected however many messages are in flight.
    fn on_duplicate(
        &mut self,
        now: Instant,
        from: PeerId,
        link: u64,
        id: MessageId,
        g: &Gossip<'_>,
    ) {
        self.metrics.duplicates += 1;
        let topic = self.canonical_topic(g.topic);
        let (told, first) = match self.history.get_mut(&id) {
            Some(recent) => {
                let told = recent.flags(link) & TOLD != 0;
                recent.set(link, HAS | TOLD);
                let first = (
                    recent.first_path_max,
                    recent.first_link_weight,
                    recent.first_link,
                );
                (told, Some(first))
            }
            None => (false, None),
        };
        if !told {
            self.queue_control(now, from, &topic, Entry::Ack(id), false);
        }
        if self.config.strategy != Strategy::Tree {
            return;
        }
        let prune = match first {
            // The duplicate's path is heavier, and its heaviest edge is the link it came
            // over: that link is the heaviest edge of the cycle.
            Some((first_max, _, _)) if g.path_max > first_max && g.path_max == g.link_weight => {
                Some(link)
            }
            // The first copy's link is the heaviest edge of the cycle.
            Some((first_max, first_weight, Some(first_link)))
                if first_max > g.path_max && first_max == first_weight =>
            {
                Some(first_link)
            }
            _ => None,
        };
        let Some(state) = self.topics.get_mut(topic.as_str()) else {
            return;
        };
        // A push over a grafted link we do not count as a tree edge is always refused
        // (answers to pulls, generation 0, are not pushes).
        let refuse = state
            .peer_mut(link)
            .is_some_and(|p| !p.eager && weight_gen(g.link_weight) > 0)
            .then_some(link);
        let mut pruned = Vec::new();
        for target in [prune, refuse].into_iter().flatten() {
            if let Some(p) = state.peer_mut(target) {
                if p.is_tree_edge() {
                    // Root-tree links are never pruned; a duplicate over one is the
                    // transient price of a tree that is still settling.
                    continue;
                }
                if p.eager || Some(target) == refuse {
                    p.eager = false;
                    if !pruned.contains(&p.peer) {
                        pruned.push(p.peer);
                    }
                }
            }
        }
        for peer in pruned {
            self.metrics.prunes_sent += 1;
            self.queue_control(now, peer, &topic, Entry::Prune, true);
        }
    }

    /// A message seen for the first time (ours or a neighbour's): forward it once, to
    /// every eager interested neighbour except where it came from, and schedule the lazy
    /// announcements and the retransmission check.
    pub(super) fn accept_new(
        &mut self,
        now: Instant,
        id: MessageId,
        topic: Topic,
        frame: Bytes,
        first: FirstCopy,
    ) {
        let mut recent = Recent::new(topic.clone(), frame, first.hops);
        recent.first_path_max = first.path_max;
        recent.first_link_weight = first.link_weight;
        if let Some((_, link)) = first.from {
            recent.first_link = Some(link);
            recent.set(link, HAS | TOLD);
        }
        if let Some(missing) = self.missing.remove(&id) {
            // Everyone who announced it has it and waits for our answer.
            for peer in missing
                .announcers
                .iter()
                .map(|(p, _)| p)
                .chain(missing.tried.iter())
            {
                if let Some(link) = self.neighbours.get(peer).map(|n| n.link) {
                    if recent.flags(link) & TOLD == 0 {
                        recent.set(link, HAS | TOLD);
                        self.queue_control(now, *peer, &topic, Entry::Ack(id), false);
                    }
                }
            }
        }
        let flood = self.config.strategy == Strategy::Flood;
        // Near its origin a tree message is flooded (`Config::eager_hops`); those copies go
        // over lazy links as answers do (weight 0), so they never make or break tree edges.
        let ball = first.hops < self.config.eager_hops;
        let mut targets = Vec::new();
        if let Some(state) = self.topics.get(topic.as_str()) {
            for p in &state.peers {
                if p.wants() && (flood || ball || p.eager) && recent.flags(p.link) & HAS == 0 {
                    let weight = if flood || !p.eager { 0 } else { p.weight };
                    targets.push((p.peer, p.link, weight));
                }
            }
        }
        let hops = first.hops.saturating_add(1);
        for (peer, link, weight) in targets {
            recent.set(link, TOLD);
            let out = wire::relay_copy(&recent.frame, hops, first.path_max.max(weight), weight);
            self.send_gossip(peer, out);
        }
        self.history.insert(now, id, recent, &self.config);
        // Ids beyond the history's capacity would be gone by the flush anyway.
        if self.to_announce.len() >= self.config.history_capacity.max(1) {
            self.to_announce.remove(0);
        }
        self.to_announce.push(id);
        self.schedule_flush(now);
        let at = now + self.config.retransmit_timeout;
        self.schedule(at, Timer::Check(id));
    }
}
