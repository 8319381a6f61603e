//! Counts of requests in flight per peer, with a cap.
//!
//! A [`PendingGuard`] holds one slot and gives it back when dropped, whatever way the
//! request ends (reply, error, timeout, cancellation). Entries vanish when their count
//! returns to zero, so the table holds only peers with requests in flight. A std mutex:
//! nothing awaits while it is held.

use super::FastMap;
use pheromone_core::identity::PeerId;
use std::sync::{Arc, Mutex};

/// Requests in flight per peer.
#[derive(Debug)]
pub(super) struct PendingTable {
    counts: Mutex<FastMap<PeerId, usize>>,
    limit: usize,
}

/// One request's slot; released on drop.
#[derive(Debug)]
pub(super) struct PendingGuard {
    table: Arc<PendingTable>,
    peer: PeerId,
}

impl PendingTable {
    pub(super) fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            counts: Mutex::new(FastMap::default()),
            limit: limit.max(1),
        })
    }

    pub(super) fn limit(&self) -> usize {
        self.limit
    }

    /// Takes a slot for `peer`; `None` when it already has `limit` requests in flight.
    pub(super) fn acquire(self: &Arc<Self>, peer: PeerId) -> Option<PendingGuard> {
        let mut counts = self.lock();
        let count = counts.entry(peer).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(PendingGuard {
            table: self.clone(),
            peer,
        })
    }

    /// Requests in flight, over all peers.
    pub(super) fn total(&self) -> usize {
        self.lock().values().sum()
    }

    /// Peers with requests in flight.
    pub(super) fn peers(&self) -> usize {
        self.lock().len()
    }

    /// Whether `peer` has anything in flight.
    pub(super) fn has(&self, peer: &PeerId) -> bool {
        self.lock().contains_key(peer)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FastMap<PeerId, usize>> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        let mut counts = self.table.lock();
        if let Some(count) = counts.get_mut(&self.peer) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.peer);
            }
        }
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
}
