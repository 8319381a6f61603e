//! Outbound control traffic of the state machine: the per-neighbour queue of control
//! entries, the flush timer that batches them, urgent sends at the end of an input, frame
//! splitting at `Config::max_control_entries`, and the periodic restatement of INTEREST
//! and TREE state.
//!
//! An `impl` block of [`Broadcast`]; it decides when and how entries leave, never what
//! they say (the callers in `interest.rs`, `tree.rs`, `gossip.rs` and `recovery.rs` do),
//! and it never reads a clock.

use super::state::Broadcast;
use super::wire::{self, Entry};
use super::{Output, SignatureVerifier, Topic};
use crate::identity::PeerId;
use bytes::Bytes;
use std::time::Instant;

impl<V: SignatureVerifier> Broadcast<V> {
    pub(super) fn schedule_flush(&mut self, now: Instant) {
        if self.flush_at.is_none() {
            self.flush_at = Some(now + self.config.control_interval);
        }
    }

    /// Queues a control entry for `peer`; `urgent` ones leave at the end of this input.
    pub(super) fn queue_control(
        &mut self,
        now: Instant,
        peer: PeerId,
        topic: &Topic,
        entry: Entry,
        urgent: bool,
    ) {
        let max = self.config.max_control_entries;
        let Some(n) = self.neighbours.get_mut(&peer) else {
            return;
        };
        match n.pending.iter_mut().find(|(t, _)| t == topic) {
            Some((_, entries)) => entries.push(entry),
            None => n.pending.push((topic.clone(), vec![entry])),
        }
        n.pending_len += 1;
        if (urgent || n.pending_len >= max) && !n.urgent {
            n.urgent = true;
            self.urgent.push(peer);
        } else if !urgent {
            self.schedule_flush(now);
        }
    }

    /// Sends everything queued for `peer` now, split into frames of at most
    /// `max_control_entries` entries.
    pub(super) fn send_control(&mut self, now: Instant, peer: PeerId) {
        self.restate(now, peer);
        let max = self.config.max_control_entries.max(1);
        let Some(n) = self.neighbours.get_mut(&peer) else {
            return;
        };
        n.urgent = false;
        if n.pending_len == 0 {
            return;
        }
        if n.pending_len <= max {
            // The common case: one frame, and the per-topic lists keep their capacity
            // for the next batch (no allocation per frame but the frame itself).
            let bytes = wire::encode_pending(&n.pending);
            for (_, entries) in &mut n.pending {
                entries.clear();
            }
            n.pending_len = 0;
            self.push_control(peer, bytes);
            return;
        }
        n.pending_len = 0;
        let pending = std::mem::take(&mut n.pending);
        let mut chunk: Vec<(&str, &[Entry])> = Vec::new();
        let mut chunk_len = 0;
        for (topic, entries) in &pending {
            let mut rest = entries.as_slice();
            while !rest.is_empty() {
                let take = rest.len().min(max - chunk_len);
                chunk.push((topic.as_str(), &rest[..take]));
                chunk_len += take;
                rest = &rest[take..];
                if chunk_len == max {
                    let bytes = wire::encode_control(chunk.drain(..));
                    self.push_control(peer, bytes);
                    chunk_len = 0;
                }
            }
        }
        if !chunk.is_empty() {
            let bytes = wire::encode_control(chunk.drain(..));
            self.push_control(peer, bytes);
        }
    }

    pub(super) fn push_control(&mut self, to: PeerId, bytes: Bytes) {
        self.metrics.control_sent += 1;
        self.metrics.control_bytes_sent += bytes.len() as u64;
        self.outputs.push_back(Output::Send { to, frame: bytes });
    }

    /// Ends every input: urgent control entries leave now.
    pub(super) fn after_input(&mut self, now: Instant) {
        for peer in std::mem::take(&mut self.urgent) {
            self.send_control(now, peer);
        }
    }

    /// The flush timer: lazy announcements, then every queued control entry.
    pub(super) fn flush_all(&mut self, now: Instant) {
        self.flush_at = None;
        self.announce(now);
        let peers: Vec<PeerId> = self
            .neighbours
            .iter()
            .filter(|(_, n)| n.pending_len > 0)
            .map(|(p, _)| *p)
            .collect();
        for peer in peers {
            self.send_control(now, peer);
        }
    }

    /// Advertisements (INTEREST, TREE) are sent once, when they change; a lost one would
    /// leave a neighbour wrong for good. So whenever a control frame goes to a neighbour
    /// anyway and `Config::state_refresh` has passed, our current state rides along.
    /// Receivers treat repeats as no-ops, and an idle link costs nothing.
    pub(super) fn restate(&mut self, now: Instant, peer: PeerId) {
        let refresh = self.config.state_refresh;
        let Some(n) = self.neighbours.get(&peer) else {
            return;
        };
        let link = n.link;
        match n.restated_at {
            None => {
                // The full state went out when the link came up.
                if let Some(n) = self.neighbours.get_mut(&peer) {
                    n.restated_at = Some(now);
                }
                return;
            }
            Some(at) if now.saturating_duration_since(at) < refresh => return,
            Some(_) => {}
        }
        let mut entries = Vec::new();
        for (topic, state) in &self.topics {
            let Some(p) = state.peers.iter().find(|p| p.link == link) else {
                continue;
            };
            if p.dist_out != super::interest::UNREACHABLE {
                entries.push((topic.clone(), Entry::Interest(p.dist_out)));
            }
            if let Some((root, dist, parent)) = p.tree_out {
                entries.push((topic.clone(), Entry::Tree { root, dist, parent }));
            }
        }
        let Some(n) = self.neighbours.get_mut(&peer) else {
            return;
        };
        n.restated_at = Some(now);
        for (topic, entry) in entries {
            match n.pending.iter_mut().find(|(t, _)| *t == topic) {
                Some((_, list)) => list.push(entry),
                None => n.pending.push((topic, vec![entry])),
            }
            n.pending_len += 1;
        }
    }
}
