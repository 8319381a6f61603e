//! Keeping [`Kademlia`]'s table fresh: liveness checks of the oldest entries, periodic
//! refresh lookups, and lookups aimed into buckets left empty. An `impl` block of the state
//! machine.

use super::{Kademlia, Purpose, EMPTY_BUCKET_TRIES_LOG2};
use crate::kad::event::QueryKind;
use crate::kad::key::Key;
use crate::kad::table::NUM_BUCKETS;
use crate::kad::wire::Request;
use std::time::Instant;

impl Kademlia {
    pub(super) fn random(&mut self) -> u64 {
        // SplitMix64: tiny, seeded, good enough to pick buckets and refresh targets.
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub(super) fn check_liveness(&mut self, now: Instant) {
        if self.liveness_in_flight.is_some() {
            return;
        }
        let buckets: Vec<usize> = self.table.non_empty_buckets().collect();
        if buckets.is_empty() {
            return;
        }
        let index = buckets[(self.random() % buckets.len() as u64) as usize];
        let Some(entry) = self.table.oldest(index) else {
            return;
        };
        let (peer, addrs) = (entry.peer, entry.addrs.clone());
        let id = self.send(now, peer, addrs, &Request::Ping, Purpose::Liveness);
        self.liveness_in_flight = Some(id);
    }

    pub(super) fn refresh(&mut self, now: Instant) {
        if self.table.is_empty() {
            return;
        }
        let own = self.local.to_bytes();
        self.start_query(now, QueryKind::Refresh, own, None);
        self.refresh_random(now);
    }

    /// A lookup aimed into each empty bucket between our closest neighbour's and the
    /// farthest: a self-lookup can pass a whole region of the key space by, and a bucket
    /// left empty there makes us (and whoever asks us) blind to it. Targets are random
    /// preimages whose hash falls in the bucket, found by trying a few (as libp2p does);
    /// only buckets holding at least 1/2^[`EMPTY_BUCKET_TRIES_LOG2`] of the key space are
    /// reachable that way, which are the ones a network of any size populates.
    pub(super) fn refresh_empty_buckets(&mut self, now: Instant) {
        let Some(closest) = self.table.non_empty_buckets().next() else {
            return;
        };
        let local = Key::from_peer(&self.local);
        let lowest = closest.max(NUM_BUCKETS.saturating_sub(EMPTY_BUCKET_TRIES_LOG2 + 1));
        for bucket in lowest..NUM_BUCKETS {
            if !self.table.bucket(bucket).is_empty() {
                continue;
            }
            for _ in 0..(1usize << EMPTY_BUCKET_TRIES_LOG2) {
                let mut bytes = vec![0x12, 0x20];
                for _ in 0..4 {
                    bytes.extend_from_slice(&self.random().to_le_bytes());
                }
                if local.distance(&Key::from_preimage(&bytes)).bucket_index() == Some(bucket) {
                    self.start_query(now, QueryKind::Refresh, bytes, None);
                    break;
                }
            }
        }
    }

    /// Lookups of random keys: they reach into every part of the key space, so the far
    /// buckets fill with peers we would never meet near our own ID.
    pub(super) fn refresh_random(&mut self, now: Instant) {
        for _ in 0..self.config.refresh_random_targets {
            // A random SHA-256 multihash: a valid peer ID nobody has, whose key is uniform.
            let mut bytes = vec![0x12, 0x20];
            for _ in 0..4 {
                bytes.extend_from_slice(&self.random().to_le_bytes());
            }
            self.start_query(now, QueryKind::Refresh, bytes, None);
        }
    }
}
