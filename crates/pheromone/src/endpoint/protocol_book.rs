//! What each peer said it speaks in identify, remembered across connections so that a new
//! connection to a known peer (every request in short mode) may send data behind its
//! protocol proposals at once instead of waiting for the confirmation.
//!
//! Bounded: at most [`MAX_PEERS`] peers, the oldest answer forgotten first. Nothing here
//! does IO; the endpoint records answers and seeds new connections.

use pheromone_core::identity::PeerId;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Peers whose protocol lists are kept.
pub(crate) const MAX_PEERS: usize = 4096;

/// Protocol lists by peer, oldest first out.
#[derive(Debug, Default)]
pub(crate) struct ProtocolBook {
    lists: HashMap<PeerId, Arc<[String]>>,
    /// Peers in the order their lists were recorded (each at most once).
    order: VecDeque<PeerId>,
}

impl ProtocolBook {
    /// Records `peer`'s latest list.
    pub(crate) fn record(&mut self, peer: PeerId, protocols: Arc<[String]>) {
        if self.lists.insert(peer, protocols).is_some() {
            self.order.retain(|p| p != &peer);
        }
        self.order.push_back(peer);
        while self.order.len() > MAX_PEERS {
            if let Some(old) = self.order.pop_front() {
                self.lists.remove(&old);
            }
        }
    }

    /// `peer`'s last known list.
    pub(crate) fn get(&self, peer: &PeerId) -> Option<Arc<[String]>> {
        self.lists.get(peer).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pheromone_core::identity::Keypair;

    #[test]
    fn keeps_the_latest_list_and_forgets_the_oldest_peer() {
        let mut book = ProtocolBook::default();
        let mut rng = rand::rngs::OsRng;
        let peers: Vec<PeerId> = (0..=MAX_PEERS)
            .map(|_| Keypair::generate(&mut rng).peer_id())
            .collect();
        let list: Arc<[String]> = Arc::from(vec!["/a".to_owned()]);
        for peer in &peers {
            book.record(*peer, list.clone());
        }
        assert!(book.get(&peers[0]).is_none(), "oldest forgotten");
        assert_eq!(book.get(&peers[MAX_PEERS]).as_deref(), Some(&list[..]));
        book.record(peers[1], Arc::from(vec!["/b".to_owned()]));
        assert_eq!(book.get(&peers[1]).unwrap()[0], "/b");
        assert_eq!(book.lists.len(), MAX_PEERS);
        assert_eq!(book.order.len(), MAX_PEERS);
    }
}
