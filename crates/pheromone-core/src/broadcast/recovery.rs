//! Loss recovery and tree repair: the bounded message history, lazy IHAVE announcements,
//! re-announcements to neighbours that never said "I have it", missing-message timers and
//! GRAFT retries, and the handling of received control entries.
//!
//! Every retry here has a budget (`max_retransmits`, `max_graft_attempts`) and every table
//! a cap (`history_capacity`, `max_missing`, `max_announcers`). Nothing here decodes
//! frames or verifies signatures; the GOSSIP path is in `gossip.rs`.

use super::interest::edge_weight;
use super::state::Broadcast;
use super::wire::{self, Entry};
use super::{Config, MessageId, SignatureVerifier, Strategy, Topic};
use crate::identity::PeerId;
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::time::Instant;

/// Flag: the neighbour has the message (it sent it, announced it, or acknowledged it).
pub(super) const HAS: u8 = 1;
/// Flag: we told the neighbour we have it (sent it, announced it, or acknowledged it).
pub(super) const TOLD: u8 = 2;
/// Bits 2..=4: how many times we answered the neighbour's GRAFTs for the message.
const SERVED_SHIFT: u8 = 2;
const SERVED_MASK: u8 = 0b111 << SERVED_SHIFT;

/// Timers of the state machine; stale ones (for resolved ids) fire harmlessly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Timer {
    /// Re-announce a message to neighbours that have not said they have it.
    Check(MessageId),
    /// A missing message did not arrive in time: GRAFT the next announcer.
    Graft(MessageId),
}

/// A message kept to answer GRAFTs and drive re-announcements.
#[derive(Debug, Clone)]
pub(super) struct Recent {
    pub(super) topic: Topic,
    /// The frame as we received it (or built it); its hop byte is rewritten on sending.
    pub(super) frame: Bytes,
    pub(super) hops: u8,
    /// The first copy's path maximum and the weight of the link it came over; a later
    /// duplicate is compared against them (the cycle rule).
    pub(super) first_path_max: u64,
    pub(super) first_link_weight: u64,
    /// The link the first copy came over (`None` for our own messages).
    pub(super) first_link: Option<u64>,
    /// Re-announcement rounds done so far.
    pub(super) rounds: u8,
    /// Per-link `HAS` / `TOLD` flags; a neighbour has at most one entry.
    peers: Vec<(u64, u8)>,
}

impl Recent {
    pub(super) fn new(topic: Topic, frame: Bytes, hops: u8) -> Self {
        Self {
            topic,
            frame,
            hops,
            first_path_max: 0,
            first_link_weight: 0,
            first_link: None,
            rounds: 0,
            peers: Vec::new(),
        }
    }

    pub(super) fn flags(&self, link: u64) -> u8 {
        self.peers
            .iter()
            .find(|(l, _)| *l == link)
            .map_or(0, |(_, f)| *f)
    }

    /// How many GRAFT answers for this message went to `link`.
    fn served(&self, link: u64) -> u8 {
        (self.flags(link) & SERVED_MASK) >> SERVED_SHIFT
    }

    fn count_served(&mut self, link: u64) {
        let served = (self.served(link) + 1).min(SERVED_MASK >> SERVED_SHIFT);
        match self.peers.iter_mut().find(|(l, _)| *l == link) {
            Some((_, f)) => *f = (*f & !SERVED_MASK) | (served << SERVED_SHIFT),
            None => self.peers.push((link, served << SERVED_SHIFT)),
        }
    }

    pub(super) fn set(&mut self, link: u64, flags: u8) {
        match self.peers.iter_mut().find(|(l, _)| *l == link) {
            Some((_, f)) => *f |= flags,
            None => self.peers.push((link, flags)),
        }
    }
}

/// Recent messages by id, bounded by age (`history_ttl`) and count (`history_capacity`).
#[derive(Debug, Default)]
pub(super) struct History {
    map: HashMap<MessageId, Recent>,
    order: VecDeque<(Instant, MessageId)>,
}

impl History {
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    pub(super) fn get_mut(&mut self, id: &MessageId) -> Option<&mut Recent> {
        self.map.get_mut(id)
    }

    pub(super) fn insert(&mut self, now: Instant, id: MessageId, recent: Recent, config: &Config) {
        self.expire(now, config);
        if self.map.len() >= config.history_capacity.max(1) {
            if let Some((_, oldest)) = self.order.pop_front() {
                self.map.remove(&oldest);
            }
        }
        if self.map.insert(id, recent).is_none() {
            self.order.push_back((now, id));
        }
    }

    pub(super) fn expire(&mut self, now: Instant, config: &Config) {
        while let Some(&(at, id)) = self.order.front() {
            if now.saturating_duration_since(at) < config.history_ttl {
                break;
            }
            self.order.pop_front();
            self.map.remove(&id);
        }
    }
}

/// A message announced to us that we do not have yet.
#[derive(Debug, Clone)]
pub(super) struct Missing {
    pub(super) topic: Topic,
    /// Announcers not yet asked, in announcement order, with their copies' hop counts.
    pub(super) announcers: VecDeque<(PeerId, u8)>,
    /// Announcers already sent a GRAFT, in order; asked again round-robin when the others
    /// run out.
    pub(super) tried: VecDeque<PeerId>,
    pub(super) attempts: u8,
}

/// Takes `len` bytes from the neighbour's GRAFT budget, refilling it first; `false` if
/// the budget does not cover them (nothing is taken then).
fn take_graft_tokens(
    neighbour: Option<&mut super::state::Neighbour>,
    config: &Config,
    now: Instant,
    len: usize,
) -> bool {
    let Some(n) = neighbour else {
        return false;
    };
    let elapsed = n.graft_refilled_at.map_or(std::time::Duration::ZERO, |at| {
        now.saturating_duration_since(at)
    });
    let refill = (elapsed.as_secs_f64() * config.graft_serve_rate as f64) as usize;
    n.graft_tokens = n
        .graft_tokens
        .saturating_add(refill)
        .min(config.graft_serve_burst);
    n.graft_refilled_at = Some(now);
    if n.graft_tokens < len {
        return false;
    }
    n.graft_tokens -= len;
    true
}

impl<V: SignatureVerifier> Broadcast<V> {
    /// One received control entry.
    pub(super) fn on_control(
        &mut self,
        now: Instant,
        from: PeerId,
        link: u64,
        topic: &str,
        entry: Entry,
    ) {
        match entry {
            Entry::Interest(dist) => self.on_interest(now, from, link, topic, dist),
            Entry::Tree { root, dist, parent } => {
                self.on_tree(now, link, topic, (root, dist, parent));
            }
            Entry::Prune => {
                if self.config.strategy == Strategy::Tree {
                    if let Some(p) = self.topics.get_mut(topic).and_then(|s| s.peer_mut(link)) {
                        // Root-tree links stay eager; PRUNE only undoes repairs.
                        if !p.is_tree_edge() {
                            p.eager = false;
                        }
                    }
                }
            }
            Entry::Ack(id) => {
                if let Some(recent) = self.history.get_mut(&id) {
                    recent.set(link, HAS);
                }
            }
            Entry::IHave { id, hops } | Entry::IHaveAgain { id, hops } => {
                let again = matches!(entry, Entry::IHaveAgain { .. });
                self.on_ihave(now, from, link, topic, (id, hops, again));
            }
            Entry::Graft { id, gen } => self.on_graft(now, from, link, topic, (id, gen)),
        }
    }

    fn on_ihave(
        &mut self,
        now: Instant,
        from: PeerId,
        link: u64,
        topic: &str,
        (id, hops, again): (MessageId, u8, bool),
    ) {
        // A re-announcement of a message we are already waiting for changes nothing: the
        // announcer is recorded, and the eager copy may still be on its way.
        if let Some(recent) = self.history.get_mut(&id) {
            let told = recent.flags(link) & TOLD != 0;
            recent.set(link, HAS | TOLD);
            // A first announcement that crossed ours needs no answer; a repeated one means
            // our statement was lost.
            if again || !told {
                let topic = recent.topic.clone();
                self.queue_control(now, from, &topic, Entry::Ack(id), false);
            }
            return;
        }
        if self.seen.contains(now, &id) {
            // Seen long ago, no longer in history: still answer so the peer stops asking.
            let topic = self.canonical_topic(topic);
            self.queue_control(now, from, &topic, Entry::Ack(id), false);
            return;
        }
        // Only pull what we asked this neighbour for.
        let wanted = self
            .topics
            .get(topic)
            .and_then(|s| s.peers.iter().find(|p| p.link == link))
            .is_some_and(|p| p.dist_out != super::interest::UNREACHABLE);
        if !wanted {
            return;
        }
        if let Some(missing) = self.missing.get_mut(&id) {
            if missing.announcers.len() + missing.tried.len() < self.config.max_announcers
                && !missing.announcers.iter().any(|(p, _)| *p == from)
                && !missing.tried.contains(&from)
            {
                missing.announcers.push_back((from, hops));
            }
            return;
        }
        if self.missing.len() >= self.config.max_missing {
            self.metrics.missing_dropped += 1;
            return;
        }
        let name = self.canonical_topic(topic);
        self.missing.insert(
            id,
            Missing {
                topic: name,
                announcers: VecDeque::from([(from, hops)]),
                tried: VecDeque::new(),
                attempts: 0,
            },
        );
        // With no eager peer for the topic no eager copy is coming at all: ask at once.
        let no_tree = self.config.strategy == Strategy::Tree
            && self
                .topics
                .get(topic)
                .is_none_or(|s| !s.peers.iter().any(|p| p.eager && p.link != link));
        let wait = if no_tree {
            self.config.tree_join_delay
        } else {
            self.config.graft_timeout
        };
        self.schedule(now + wait, super::recovery::Timer::Graft(id));
    }

    /// A GRAFT: make the link eager if it asks to, and answer with the message, within
    /// the caps. An answer is a full copy (up to `max_data_len` bytes) for a few bytes of
    /// request, so each neighbour gets at most `max_graft_answers` per message and
    /// `graft_serve_rate` bytes per second of them (a token bucket `graft_serve_burst`
    /// deep); a refused GRAFT is counted, and the asker's retry goes to another announcer.
    fn on_graft(
        &mut self,
        now: Instant,
        from: PeerId,
        link: u64,
        topic: &str,
        (id, gen): (MessageId, u32),
    ) {
        let mut weight = edge_weight(gen, &self.local, &from);
        if let Some(state) = self.topics.get_mut(topic) {
            state.clock = state.clock.max(gen);
            if let Some(p) = state.peer_mut(link) {
                if p.is_tree_edge() {
                    weight = p.weight;
                } else if gen > 0 {
                    // Generation 0 asks for the message only; the link stays as it is.
                    p.eager = true;
                    p.weight = weight;
                }
            }
        }
        let Some(recent) = self.history.get_mut(&id) else {
            self.metrics.grafts_unanswerable += 1;
            return;
        };
        let len = recent.frame.len();
        if recent.served(link) >= self.config.max_graft_answers
            || !take_graft_tokens(self.neighbours.get_mut(&from), &self.config, now, len)
        {
            self.metrics.grafts_refused += 1;
            tracing::debug!(peer = %from, %id, "GRAFT refused: per-message or byte cap reached");
            return;
        }
        recent.count_served(link);
        recent.set(link, TOLD);
        let path_max = recent.first_path_max.max(weight);
        let out = wire::relay_copy(
            &recent.frame,
            recent.hops.saturating_add(1),
            path_max,
            weight,
        );
        self.send_gossip(from, out);
    }

    /// The missing-message timer fired: GRAFT the next announcer, or give up.
    pub(super) fn on_graft_timer(&mut self, now: Instant, id: MessageId) {
        if self.seen.contains(now, &id) {
            self.missing.remove(&id);
            return;
        }
        let max = self.config.max_graft_attempts;
        let Some(missing) = self.missing.get_mut(&id) else {
            return;
        };
        // Announcers whose link went down cannot answer.
        let neighbours = &self.neighbours;
        missing
            .announcers
            .retain(|(p, _)| neighbours.contains_key(p));
        missing.tried.retain(|p| neighbours.contains_key(p));
        // The closest announcer first: the tree then grows breadth-first, which keeps
        // its paths short.
        let closest = missing
            .announcers
            .iter()
            .enumerate()
            .min_by_key(|(i, (_, hops))| (*hops, *i))
            .map(|(i, _)| i);
        let next = match closest.and_then(|i| missing.announcers.remove(i)) {
            Some((peer, _)) => Some(peer),
            None => missing.tried.pop_front(),
        };
        let (Some(peer), true) = (next, missing.attempts < max) else {
            self.missing.remove(&id);
            self.metrics.missing_given_up += 1;
            tracing::debug!(%id, "giving up on a missing message");
            return;
        };
        missing.tried.push_back(peer);
        missing.attempts += 1;
        let topic = missing.topic.clone();
        let mut gen = 0;
        if let Some(link) = self.neighbours.get(&peer).map(|n| n.link) {
            if let Some(state) = self.topics.get_mut(&topic) {
                // While the root tree connects us, a lost copy is only pulled (generation
                // 0: the link stays lazy), so losses add no edges and no duplicates.
                // Without a tree edge the graft becomes one, and the heaviest on any
                // cycle it closes, so that the cycle rule undoes it rather than an older
                // edge.
                if state.peers.iter().any(|p| p.is_tree_edge()) {
                    self.metrics.grafts_sent += 1;
                    self.queue_control(now, peer, &topic, Entry::Graft { id, gen: 0 }, true);
                    let at = now + self.config.graft_retry_timeout;
                    self.schedule(at, Timer::Graft(id));
                    return;
                }
                state.clock = state.clock.saturating_add(1);
                gen = state.clock;
                let weight = edge_weight(gen, &self.local, &peer);
                if let Some(p) = state.peer_mut(link) {
                    p.eager = true;
                    p.weight = weight;
                }
            }
        }
        self.metrics.grafts_sent += 1;
        self.queue_control(now, peer, &topic, Entry::Graft { id, gen }, true);
        let at = now + self.config.graft_retry_timeout;
        self.schedule(at, Timer::Graft(id));
    }

    /// The flush timer: announce every message received since the last flush to each
    /// interested neighbour that neither has it nor was told we have it.
    pub(super) fn announce(&mut self, now: Instant) {
        for id in std::mem::take(&mut self.to_announce) {
            let Some(recent) = self.history.get_mut(&id) else {
                continue;
            };
            let Some(state) = self.topics.get(&recent.topic) else {
                continue;
            };
            let mut targets = Vec::new();
            for p in &state.peers {
                if p.wants() && recent.flags(p.link) & (HAS | TOLD) == 0 {
                    recent.set(p.link, TOLD);
                    targets.push(p.peer);
                }
            }
            let topic = recent.topic.clone();
            let hops = recent.hops;
            for peer in targets {
                self.metrics.ihave_sent += 1;
                self.queue_control(now, peer, &topic, Entry::IHave { id, hops }, false);
            }
        }
    }

    /// Re-announcement round for `id`: every interested neighbour that has not said it has
    /// the message is announced it again; rounds back off exponentially and are bounded.
    pub(super) fn on_check(&mut self, now: Instant, id: MessageId) {
        let max_rounds = self.config.max_retransmits;
        let base = self.config.retransmit_timeout;
        let Some(recent) = self.history.get_mut(&id) else {
            return;
        };
        let Some(state) = self.topics.get(&recent.topic) else {
            return;
        };
        let mut targets = Vec::new();
        for p in &state.peers {
            if p.wants() && recent.flags(p.link) & HAS == 0 {
                recent.set(p.link, TOLD);
                targets.push(p.peer);
            }
        }
        if targets.is_empty() {
            return;
        }
        recent.rounds += 1;
        let rounds = recent.rounds;
        let topic = recent.topic.clone();
        let hops = recent.hops;
        for peer in targets {
            self.metrics.ihave_sent += 1;
            self.metrics.retransmits += 1;
            self.queue_control(now, peer, &topic, Entry::IHaveAgain { id, hops }, false);
        }
        if rounds < max_rounds {
            let at = now + base * (1u32 << rounds.min(16));
            self.schedule(at, Timer::Check(id));
        }
    }
}
