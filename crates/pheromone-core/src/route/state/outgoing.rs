//! What the [`Router`] sends: advertisements (with split horizon and poisoned reverse),
//! periodic dumps, and the flush of triggered updates and sequence-number requests into
//! frames. An `impl` block of the state machine.

use super::Router;
use crate::identity::PeerId;
use crate::route::wire::{Message, UpdateEntry, INFINITY};
use crate::route::Output;
use bytes::Bytes;
use std::time::Instant;

impl Router {
    /// Our advertisement of `dest` as `to` should hear it: poisoned (metric infinity)
    /// when `to` is our next hop, a retraction when we have no route.
    pub(super) fn advert(&self, dest: &PeerId, to: &PeerId) -> Option<UpdateEntry> {
        if *dest == self.local {
            return Some(UpdateEntry {
                destination: self.local,
                seqno: self.seqno,
                metric: 0,
                hops: 0,
                signature: Some(self.own_signature),
            });
        }
        let d = self.dests.get(dest)?;
        Some(match d.selected {
            Some(sel) => UpdateEntry {
                destination: *dest,
                seqno: sel.seqno,
                metric: if sel.via == *to { INFINITY } else { sel.metric },
                hops: sel.hops,
                signature: (sel.via != *to).then_some(sel.signature),
            },
            None => UpdateEntry {
                destination: *dest,
                seqno: d.last_seqno,
                metric: INFINITY,
                hops: 0,
                signature: None,
            },
        })
    }

    /// The whole table for `to`: our own route, every route not through `to` (split
    /// horizon), and recent retractions.
    pub(super) fn send_dump(&mut self, now: Instant, to: PeerId) {
        let hold = self.config.retraction_hold;
        let mut entries = Vec::with_capacity(self.dests.len() + 1);
        if let Some(own) = self.advert(&self.local, &to) {
            entries.push(own);
        }
        for (dest, d) in &self.dests {
            let include = match (d.selected, d.lost_at) {
                (Some(sel), _) => sel.via != to,
                (None, Some(at)) => now.saturating_duration_since(at) < hold,
                (None, None) => false,
            };
            if include {
                if let Some(entry) = self.advert(dest, &to) {
                    entries.push(entry);
                }
            }
        }
        self.send_updates(to, entries);
    }

    /// Sends the queued requests, and triggered updates for every changed destination
    /// once `triggered_delay` has passed since the first change was held.
    pub(in crate::route) fn flush(&mut self, now: Instant) {
        if !self.dirty.is_empty() {
            let at = *self
                .flush_at
                .get_or_insert(now + self.config.triggered_delay);
            if at > now {
                self.send_requests();
                return;
            }
            self.flush_at = None;
            let dirty = std::mem::take(&mut self.dirty);
            let peers: Vec<PeerId> = self.neighbours.keys().copied().collect();
            for to in peers {
                let entries: Vec<UpdateEntry> =
                    dirty.iter().filter_map(|d| self.advert(d, &to)).collect();
                self.send_updates(to, entries);
            }
        }
        self.send_requests();
    }

    pub(super) fn send_requests(&mut self) {
        let answers = std::mem::take(&mut self.answers);
        for (to, dests) in answers {
            if !self.neighbours.contains_key(&to) {
                continue;
            }
            let entries = dests.iter().filter_map(|d| self.advert(d, &to)).collect();
            self.send_updates(to, entries);
        }
        let requests = std::mem::take(&mut self.out_requests);
        for (to, entries) in requests {
            self.metrics.request_entries_sent += entries.len() as u64;
            for chunk in entries.chunks(self.config.max_entries_per_frame.max(1)) {
                self.send(to, &Message::Request(chunk.to_vec()));
            }
        }
    }

    pub(super) fn send_updates(&mut self, to: PeerId, entries: Vec<UpdateEntry>) {
        self.metrics.update_entries_sent += entries.len() as u64;
        for chunk in entries.chunks(self.config.max_entries_per_frame.max(1)) {
            self.send(to, &Message::Update(chunk.to_vec()));
        }
    }

    pub(in crate::route) fn send(&mut self, to: PeerId, message: &Message) {
        let bytes = Bytes::from(message.to_vec());
        self.metrics.frames_sent += 1;
        self.metrics.bytes_sent += bytes.len() as u64;
        self.outputs.push_back(Output::Send { to, frame: bytes });
    }
}
