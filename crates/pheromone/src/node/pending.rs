//! Counts of requests in flight per peer, with a cap.
//!
//! A [`PendingGuard`] holds one slot and gives it back when dropped, whatever way the
//! request ends (reply, error, timeout, cancellation). Each peer's count is an atomic the
//! guard holds, so giving a slot back takes neither the lock nor a lookup; counts at zero
//! that no guard holds are swept out when the table has doubled since the last sweep, so
//! it stays proportional to the peers with requests in flight. A std mutex: nothing awaits
//! while it is held.

use crate::FastMap;
use pheromone_core::identity::PeerId;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Entries kept before the first sweep.
const MIN_SWEEP: usize = 64;

/// Requests in flight per peer.
#[derive(Debug)]
pub(super) struct PendingTable {
    counts: Mutex<Counts>,
    limit: usize,
}

#[derive(Debug, Default)]
struct Counts {
    by_peer: FastMap<PeerId, Arc<AtomicUsize>>,
    /// Size at which idle entries are swept out.
    sweep_at: usize,
}

/// One peer's count in a [`PendingTable`].
#[derive(Debug)]
pub(super) struct PeerCounter {
    count: Arc<AtomicUsize>,
    limit: usize,
}

impl PeerCounter {
    /// Takes a slot; `None` when the peer already has `limit` requests in flight.
    pub(super) fn acquire(&self) -> Option<PendingGuard> {
        let before = self.count.fetch_add(1, Ordering::AcqRel);
        if before >= self.limit {
            self.count.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(PendingGuard {
            count: self.count.clone(),
        })
    }
}

/// One request's slot; released on drop.
#[derive(Debug)]
pub(super) struct PendingGuard {
    count: Arc<AtomicUsize>,
}

impl PendingTable {
    pub(super) fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            counts: Mutex::new(Counts {
                by_peer: FastMap::default(),
                sweep_at: MIN_SWEEP,
            }),
            limit: limit.max(1),
        })
    }

    pub(super) fn limit(&self) -> usize {
        self.limit
    }

    /// Takes a slot for `peer`; `None` when it already has `limit` requests in flight.
    pub(super) fn acquire(&self, peer: PeerId) -> Option<PendingGuard> {
        self.counter(peer).acquire()
    }

    /// `peer`'s count, to take slots from without looking the peer up each time (a loop
    /// answering one peer's requests). Holding it keeps the entry in the table.
    pub(super) fn counter(&self, peer: PeerId) -> PeerCounter {
        let count = {
            let mut counts = self.lock();
            match counts.by_peer.get(&peer) {
                Some(count) => count.clone(),
                None => counts.insert(peer),
            }
        };
        PeerCounter {
            count,
            limit: self.limit,
        }
    }

    /// Requests in flight, over all peers.
    pub(super) fn total(&self) -> usize {
        self.lock()
            .by_peer
            .values()
            .map(|c| c.load(Ordering::Acquire))
            .sum()
    }

    /// Peers with requests in flight.
    pub(super) fn peers(&self) -> usize {
        let counts = self.lock();
        counts
            .by_peer
            .values()
            .filter(|c| c.load(Ordering::Acquire) > 0)
            .count()
    }

    /// Whether `peer` has anything in flight.
    pub(super) fn has(&self, peer: &PeerId) -> bool {
        self.lock()
            .by_peer
            .get(peer)
            .is_some_and(|c| c.load(Ordering::Acquire) > 0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Counts {
    /// A new count for `peer`, after sweeping out idle ones if the table has grown.
    fn insert(&mut self, peer: PeerId) -> Arc<AtomicUsize> {
        if self.by_peer.len() >= self.sweep_at {
            // Counts are cloned only under this lock, so one held by the table alone has
            // no guard now and cannot get one while we sweep.
            self.by_peer.retain(|_, c| Arc::strong_count(c) > 1);
            self.sweep_at = (self.by_peer.len() * 2).max(MIN_SWEEP);
        }
        let count = Arc::new(AtomicUsize::new(0));
        self.by_peer.insert(peer, count.clone());
        count
    }
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pheromone_core::identity::Keypair;

    #[test]
    fn slots_are_capped_and_given_back() {
        let table = PendingTable::new(2);
        let a = Keypair::from_seed([1; 32]).peer_id();
        let b = Keypair::from_seed([2; 32]).peer_id();
        let g1 = table.acquire(a).expect("first");
        let g2 = table.acquire(a).expect("second");
        assert!(table.acquire(a).is_none(), "third is over the limit");
        let g3 = table.acquire(b).expect("other peer has its own count");
        assert_eq!((table.total(), table.peers()), (3, 2));
        drop(g1);
        let g4 = table.acquire(a).expect("slot given back");
        drop((g2, g3, g4));
        assert_eq!((table.total(), table.peers()), (0, 0));
        // A refused acquire leaves no entry behind either.
        let t = PendingTable::new(1);
        let g = t.acquire(a).expect("one");
        assert!(t.acquire(a).is_none());
        drop(g);
        assert_eq!(t.peers(), 0);
    }

    #[test]
    fn idle_counts_are_swept_as_peers_come_and_go() {
        let table = PendingTable::new(4);
        let held = table.acquire(Keypair::from_seed([0; 32]).peer_id());
        for i in 1..=1000u16 {
            let mut seed = [0u8; 32];
            seed[..2].copy_from_slice(&i.to_le_bytes());
            drop(table.acquire(Keypair::from_seed(seed).peer_id()));
        }
        let size = table.lock().by_peer.len();
        assert!(
            size <= MIN_SWEEP + 1,
            "{size} entries kept for 1 peer in flight"
        );
        assert_eq!((table.total(), table.peers()), (1, 1));
        drop(held);
        assert_eq!(table.total(), 0);
    }
}
