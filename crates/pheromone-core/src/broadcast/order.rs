//! Per-origin ordering of delivered messages, as a small sans-IO buffer.
//!
//! The broadcast state machine delivers each message once, as soon as it arrives; a copy
//! repaired by a pull (after a loss or while the tree re-forms) can arrive after later
//! messages of the same origin. Subscribers want each origin's messages in the order it
//! published them, so [`Broadcast`](super::Broadcast) passes its deliveries through this
//! buffer (see [`Config::order_window`](super::Config::order_window)): a message is released when
//! every earlier message of its origin has been, or when it has waited `window` for the gap
//! to fill (a message that never comes must not hold back the rest forever). The first
//! message heard from an origin is released at once and starts its sequence. Memory is
//! bounded by `max_held` messages per origin and `max_origins` origins.

use super::Message;
use crate::identity::PeerId;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// What one origin's sequence looks like from here.
#[derive(Debug, Default)]
struct Origin {
    /// The next sequence number to release; `None` until the first release.
    next: Option<u64>,
    /// Messages waiting for an earlier one, by sequence number, with their arrival time.
    held: BTreeMap<u64, (Instant, Message)>,
    last_used: Option<Instant>,
}

/// Releases messages in per-origin sequence order (see the module docs).
///
/// Calling contract: [`push`](Self::push) every delivered message, then take released ones
/// with [`pop`](Self::pop); call [`handle_timeout`](Self::handle_timeout) at
/// [`poll_timeout`](Self::poll_timeout).
#[derive(Debug)]
pub struct OrderedDelivery {
    window: Duration,
    max_held: usize,
    max_origins: usize,
    // Ordered, so that which idle origin is evicted never depends on hashing.
    origins: BTreeMap<PeerId, Origin>,
    ready: VecDeque<Message>,
}

impl OrderedDelivery {
    /// A buffer that lets a gap stay open at most `window`.
    pub fn new(window: Duration, max_held: usize, max_origins: usize) -> Self {
        Self {
            window,
            max_held: max_held.max(1),
            max_origins: max_origins.max(1),
            origins: BTreeMap::new(),
            ready: VecDeque::new(),
        }
    }

    /// Takes a message the state machine delivered.
    pub fn push(&mut self, now: Instant, message: Message) {
        if !self.origins.contains_key(&message.origin) && self.origins.len() >= self.max_origins {
            self.evict_idle_origin();
        }
        let origin = self.origins.entry(message.origin).or_default();
        origin.last_used = Some(now);
        match origin.next {
            Some(next) if message.seq == next => {
                self.ready.push_back(message);
                origin.next = Some(next + 1);
                release_run(origin, &mut self.ready);
            }
            // Older than what was already released: its gap was given up on; late is
            // better than lost.
            Some(next) if message.seq < next => self.ready.push_back(message),
            // The first message heard from this origin starts its sequence: there is no
            // telling whether earlier ones exist (a subscriber joins mid-stream, an origin
            // numbers from the clock), and holding it would delay every first message.
            None => {
                origin.next = Some(message.seq + 1);
                self.ready.push_back(message);
                release_run(origin, &mut self.ready);
            }
            // Ahead of a gap: the missing ones may still be on their way.
            Some(_) => {
                origin.held.insert(message.seq, (now, message));
                if origin.held.len() > self.max_held {
                    skip_gap(origin, &mut self.ready);
                }
            }
        }
    }

    /// The next message to hand to subscribers.
    pub fn pop(&mut self) -> Option<Message> {
        self.ready.pop_front()
    }

    /// When the oldest held message has waited long enough.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.origins
            .values()
            .filter_map(|o| o.held.values().map(|(at, _)| *at).min())
            .min()
            .map(|at| at + self.window)
    }

    /// Gives up on gaps that stayed open for the window.
    pub fn handle_timeout(&mut self, now: Instant) {
        for origin in self.origins.values_mut() {
            while let Some(oldest) = origin.held.values().map(|(at, _)| *at).min() {
                if now < oldest + self.window {
                    break;
                }
                skip_gap(origin, &mut self.ready);
            }
        }
    }

    /// Messages waiting for an earlier one.
    pub fn held(&self) -> usize {
        self.origins.values().map(|o| o.held.len()).sum()
    }

    fn evict_idle_origin(&mut self) {
        let idle = self
            .origins
            .iter()
            .filter(|(_, o)| o.held.is_empty())
            .min_by_key(|(_, o)| o.last_used)
            .map(|(p, _)| *p);
        if let Some(peer) = idle {
            self.origins.remove(&peer);
        } else if let Some(peer) = self.origins.keys().next().copied() {
            // Every origin holds something: release one origin's messages rather than grow.
            if let Some(mut origin) = self.origins.remove(&peer) {
                while !origin.held.is_empty() {
                    skip_gap(&mut origin, &mut self.ready);
                }
            }
        }
    }
}

/// Releases held messages that continue the sequence.
fn release_run(origin: &mut Origin, ready: &mut VecDeque<Message>) {
    while let Some(next) = origin.next {
        let Some((_, message)) = origin.held.remove(&next) else {
            break;
        };
        ready.push_back(message);
        origin.next = Some(next + 1);
    }
}

/// Moves past the gap before the lowest held message and releases what follows it.
fn skip_gap(origin: &mut Origin, ready: &mut VecDeque<Message>) {
    if let Some((&lowest, _)) = origin.held.iter().next() {
        origin.next = Some(lowest);
        release_run(origin, ready);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broadcast::{MessageId, Topic};
    use crate::identity::Keypair;

    fn msg(origin: PeerId, seq: u64) -> Message {
        Message {
            id: MessageId::new(&origin, seq),
            origin,
            topic: Topic::new("t").expect("topic"),
            seq,
            data: bytes::Bytes::new(),
            hops: 1,
        }
    }

    fn drain(o: &mut OrderedDelivery) -> Vec<u64> {
        std::iter::from_fn(|| o.pop()).map(|m| m.seq).collect()
    }

    #[test]
    fn reorders_within_the_window_and_skips_lasting_gaps() {
        let t0 = crate::broadcast::test_now();
        let a = Keypair::from_seed([1; 32]).peer_id();
        let mut o = OrderedDelivery::new(Duration::from_secs(2), 100, 10);
        o.push(t0, msg(a, 5));
        assert_eq!(
            drain(&mut o),
            vec![5],
            "the first message starts the sequence"
        );
        o.push(t0, msg(a, 4));
        assert_eq!(drain(&mut o), vec![4], "an earlier one is late, not lost");
        o.push(t0, msg(a, 8));
        o.push(t0, msg(a, 7));
        assert_eq!(drain(&mut o), Vec::<u64>::new(), "6 is missing");
        o.push(t0, msg(a, 6));
        assert_eq!(drain(&mut o), vec![6, 7, 8]);
        assert_eq!(o.poll_timeout(), None);
        o.push(t0, msg(a, 10));
        assert_eq!(o.poll_timeout(), Some(t0 + Duration::from_secs(2)));
        o.handle_timeout(t0 + Duration::from_secs(2));
        assert_eq!(
            drain(&mut o),
            vec![10],
            "9 never came: skipped after the window"
        );
        o.push(t0, msg(a, 9));
        assert_eq!(drain(&mut o), vec![9], "late is better than lost");
    }

    #[test]
    fn memory_is_bounded() {
        let t0 = crate::broadcast::test_now();
        let mut o = OrderedDelivery::new(Duration::from_secs(60), 3, 2);
        let a = Keypair::from_seed([1; 32]).peer_id();
        o.push(t0, msg(a, 1));
        assert_eq!(drain(&mut o), vec![1]);
        for seq in [3, 4, 5, 6] {
            o.push(t0, msg(a, seq));
        }
        assert!(o.held() <= 3);
        assert_eq!(drain(&mut o), vec![3, 4, 5, 6]);
        for seed in 2..10u8 {
            o.push(t0, msg(Keypair::from_seed([seed; 32]).peer_id(), 1));
        }
        assert!(o.origins.len() <= 2);
    }
}
