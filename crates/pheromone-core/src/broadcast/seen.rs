//! The seen-cache: which message ids this node has already handled, bounded by age and by
//! count.
//!
//! Lookups, inserts and evictions are O(1) (amortised). Ids are kept in insertion order,
//! which is also time order because callers pass a `now` that never goes backwards, so
//! expiry and eviction both pop from the front. This file knows nothing of the wire.

use super::MessageId;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// A set of recently seen message ids with a time-to-live and a capacity.
///
/// Memory stays below `capacity` entries whatever arrives: a flood of unique ids only
/// evicts the oldest ones early (which shortens the replay window for those, and is
/// counted by [`SeenCache::evicted_early`]).
#[derive(Debug, Clone)]
pub struct SeenCache {
    ttl: Duration,
    capacity: usize,
    order: VecDeque<(Instant, MessageId)>,
    set: HashMap<MessageId, Instant>,
    evicted_early: u64,
}

impl SeenCache {
    /// An empty cache keeping ids for `ttl`, at most `capacity` of them (at least one).
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            ttl,
            capacity,
            order: VecDeque::new(),
            set: HashMap::new(),
            evicted_early: 0,
        }
    }

    /// Records `id` as seen at `now`. Returns `true` if it was new, `false` if it was
    /// already in the window (a duplicate or replay).
    pub fn insert(&mut self, now: Instant, id: MessageId) -> bool {
        self.expire(now);
        if self.set.contains_key(&id) {
            return false;
        }
        if self.set.len() >= self.capacity {
            if let Some((_, oldest)) = self.order.pop_front() {
                self.set.remove(&oldest);
                self.evicted_early += 1;
            }
        }
        self.set.insert(id, now);
        self.order.push_back((now, id));
        true
    }

    /// Whether `id` was seen within the window ending at `now`.
    pub fn contains(&self, now: Instant, id: &MessageId) -> bool {
        match self.set.get(id) {
            Some(&at) => now.saturating_duration_since(at) < self.ttl,
            None => false,
        }
    }

    /// Drops every id older than the time-to-live.
    pub fn expire(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.order.front() {
            if now.saturating_duration_since(at) < self.ttl {
                break;
            }
            self.order.pop_front();
            self.set.remove(&id);
        }
    }

    /// Number of ids held.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// How many ids were evicted before their time-to-live because the cache was full.
    pub fn evicted_early(&self) -> u64 {
        self.evicted_early
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> MessageId {
        let mut raw = [0u8; MessageId::LEN];
        raw[..8].copy_from_slice(&n.to_be_bytes());
        MessageId(raw)
    }

    #[test]
    fn replay_within_window_is_seen_and_after_is_new() {
        let t0 = crate::broadcast::test_now();
        let mut cache = SeenCache::new(Duration::from_secs(120), 100);
        assert!(cache.insert(t0, id(1)));
        assert!(!cache.insert(t0 + Duration::from_secs(119), id(1)));
        assert!(cache.contains(t0 + Duration::from_secs(119), &id(1)));
        assert!(!cache.contains(t0 + Duration::from_secs(120), &id(1)));
        assert!(cache.insert(t0 + Duration::from_secs(121), id(1)));
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_unique_ids() {
        let t0 = crate::broadcast::test_now();
        let mut cache = SeenCache::new(Duration::from_secs(120), 1000);
        for n in 0..100_000 {
            assert!(cache.insert(t0 + Duration::from_micros(n), id(n)));
            assert!(cache.len() <= 1000);
        }
        assert_eq!(cache.len(), 1000);
        assert!(cache.order.len() <= 1000);
        assert_eq!(cache.evicted_early(), 99_000);
        // The most recent ids are still recognised as replays.
        let later = t0 + Duration::from_secs(1);
        assert!(!cache.insert(later, id(99_999)));
        assert!(cache.insert(later, id(0)));
    }

    #[test]
    fn expiry_frees_memory() {
        let t0 = crate::broadcast::test_now();
        let mut cache = SeenCache::new(Duration::from_secs(2), 1000);
        for n in 0..500 {
            cache.insert(t0, id(n));
        }
        cache.expire(t0 + Duration::from_secs(3));
        assert!(cache.is_empty());
        assert_eq!(cache.evicted_early(), 0);
    }
}
