//! The connection manager's rules, as pure functions of what it is shown: which pinned
//! (bootstrap and static) peers to redial and when (static peers always, bootstrap peers
//! while we are below the low watermark), which candidates to dial below the low
//! watermark, and which connections to close above the high watermark.
//!
//! [`super::ConnectionManager`] gathers what it is shown (connected peers, candidates,
//! dial results) and turns the [`Action`]s into overlay outputs; this file keeps no view
//! of the network of its own.

use crate::addr::Multiaddr;
use crate::identity::PeerId;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

/// Table peers a failed dial keeps off the manager's dial list for this long.
const FAILED_DIAL_QUARANTINE: Duration = Duration::from_secs(30);
/// Most failed table peers remembered (the oldest are forgotten first).
const MAX_QUARANTINED: usize = 1024;

/// A bootstrap or static peer, kept connected.
#[derive(Debug, Clone)]
pub(crate) struct Pinned {
    /// The configured address.
    pub(crate) addr: Multiaddr,
    /// Who it is: from the address's `/p2p/`, or learned from the first dial.
    pub(crate) peer: Option<PeerId>,
    /// A bootstrap peer (seeds the table) rather than a static one.
    pub(crate) bootstrap: bool,
    dialing: bool,
    /// Failed dials (or short-lived connections) in a row.
    attempt: u32,
    next_dial: Instant,
    connected_since: Option<Instant>,
}

/// What the manager wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Dial pinned peer number `index` at its address.
    DialPinned {
        /// Index into [`Policy::pinned`].
        index: usize,
    },
    /// Dial a table peer.
    Dial {
        /// The peer.
        peer: PeerId,
        /// Its table addresses.
        addrs: Vec<Multiaddr>,
    },
    /// Close every connection to the peer.
    Prune {
        /// The peer.
        peer: PeerId,
    },
}

/// One connected peer as the manager sees it.
#[derive(Debug, Clone)]
pub(crate) struct ConnectedPeer {
    /// The peer.
    pub(crate) peer: PeerId,
    /// Its kad bucket (`None` for a peer not in the table).
    pub(crate) bucket: Option<usize>,
    /// When the table last heard from it (`None` if not in the table).
    pub(crate) last_seen: Option<Instant>,
    /// How long its youngest connection has existed.
    pub(crate) age: Duration,
    /// Pinned, protected by the owner, or in use: never pruned.
    pub(crate) keep: bool,
}

/// A table entry the manager may dial.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    /// The peer.
    pub(crate) peer: PeerId,
    /// Its bucket.
    pub(crate) bucket: usize,
    /// Its addresses.
    pub(crate) addrs: Vec<Multiaddr>,
}

/// Watermarks, backoff and dial cap.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) low: usize,
    pub(crate) high: usize,
    pub(crate) grace: Duration,
    pub(crate) redial_initial: Duration,
    pub(crate) redial_max: Duration,
}

/// The rules' memory: pinned peers and their backoff, dials in flight, quarantine.
#[derive(Debug)]
pub(crate) struct Policy {
    limits: Limits,
    pinned: Vec<Pinned>,
    /// Table peers being dialled by the manager.
    dialing: BTreeSet<PeerId>,
    quarantine: BTreeMap<PeerId, Instant>,
    rng: u64,
}

impl Policy {
    /// A manager keeping `bootstrap` and `static_peers` connected, dialling them at once.
    pub(crate) fn new(
        limits: Limits,
        bootstrap: &[Multiaddr],
        static_peers: &[Multiaddr],
        now: Instant,
        seed: u64,
    ) -> Self {
        let pin = |addr: &Multiaddr, bootstrap: bool| Pinned {
            addr: addr.clone(),
            peer: addr.peer_id(),
            bootstrap,
            dialing: false,
            attempt: 0,
            next_dial: now,
            connected_since: None,
        };
        let mut pinned: Vec<Pinned> = bootstrap.iter().map(|a| pin(a, true)).collect();
        pinned.extend(static_peers.iter().map(|a| pin(a, false)));
        Self {
            limits,
            pinned,
            dialing: BTreeSet::new(),
            quarantine: BTreeMap::new(),
            rng: seed | 1,
        }
    }

    /// The pinned peers.
    pub(crate) fn pinned(&self) -> &[Pinned] {
        &self.pinned
    }

    /// Whether `peer` is a pinned peer.
    pub(crate) fn is_pinned(&self, peer: &PeerId) -> bool {
        self.pinned.iter().any(|p| p.peer.as_ref() == Some(peer))
    }

    fn jitter(&mut self, base: Duration) -> Duration {
        // xorshift64: only spreads redials of many nodes apart, needs no quality.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let factor = 0.5 + (self.rng % 1000) as f64 / 1000.0;
        base.mul_f64(factor)
    }

    /// The wait before redial number `attempt` (0 = the first after a loss).
    fn backoff(&mut self, attempt: u32) -> Duration {
        let base = self
            .limits
            .redial_initial
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.limits.redial_max);
        self.jitter(base).min(self.limits.redial_max)
    }

    /// A dial of pinned peer `index` ended; `Ok` carries the peer that answered.
    pub(crate) fn pinned_dialled(
        &mut self,
        index: usize,
        result: Result<PeerId, ()>,
        now: Instant,
    ) {
        let Some(attempt) = self.pinned.get(index).map(|p| p.attempt) else {
            return;
        };
        let wait = self.backoff(attempt);
        let Some(p) = self.pinned.get_mut(index) else {
            return;
        };
        p.dialing = false;
        match result {
            Ok(peer) => {
                p.peer = Some(peer);
                p.connected_since = Some(now);
            }
            Err(()) => {
                p.attempt = p.attempt.saturating_add(1);
                p.next_dial = now + wait;
            }
        }
    }

    /// A dial of table peer `peer` ended.
    pub(crate) fn dialled(&mut self, peer: PeerId, ok: bool, now: Instant) {
        self.dialing.remove(&peer);
        if !ok {
            if self.quarantine.len() >= MAX_QUARANTINED {
                if let Some(oldest) = self
                    .quarantine
                    .iter()
                    .min_by_key(|(_, at)| **at)
                    .map(|(p, _)| *p)
                {
                    self.quarantine.remove(&oldest);
                }
            }
            self.quarantine.insert(peer, now);
        }
    }

    /// One round: notes which pinned peers are connected, and returns the dials and prunes
    /// to do. `connected` lists every peer with a live direct connection; `candidates` the
    /// table entries in the order the table gives them; `free_dials` how many dials may
    /// start now.
    pub(crate) fn tick(
        &mut self,
        now: Instant,
        connected: &[ConnectedPeer],
        candidates: &[Candidate],
        mut free_dials: usize,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        let is_connected = |peer: &PeerId| connected.iter().any(|c| c.peer == *peer);
        self.quarantine
            .retain(|_, at| now.saturating_duration_since(*at) < FAILED_DIAL_QUARANTINE);

        // Pinned peers: notice losses, schedule and start redials.
        for index in 0..self.pinned.len() {
            let (peer, since, dialing, attempt) = {
                let p = &self.pinned[index];
                (p.peer, p.connected_since, p.dialing, p.attempt)
            };
            let up = peer.as_ref().is_some_and(&is_connected);
            if up {
                let p = &mut self.pinned[index];
                if since.is_none() {
                    p.connected_since = Some(now);
                }
                // A connection that lasted resets the backoff; one that keeps dropping
                // (a remote that prunes us, a flapping link) does not.
                if since.is_some_and(|s| now.saturating_duration_since(s) >= self.limits.redial_max)
                {
                    p.attempt = 0;
                }
                continue;
            }
            if let Some(since) = since {
                let lived = now.saturating_duration_since(since);
                let attempt = if lived >= self.limits.redial_max {
                    0
                } else {
                    attempt
                };
                let wait = self.backoff(attempt);
                let p = &mut self.pinned[index];
                p.connected_since = None;
                p.attempt = attempt.saturating_add(1);
                p.next_dial = now + wait;
                tracing::debug!(addr = %p.addr, ?wait, "pinned peer lost; redialling after backoff");
            }
            let p = &mut self.pinned[index];
            // A bootstrap peer is the way back into the network: needed when we are short
            // of peers, not otherwise (a busy bootstrap node prunes its excess, and
            // everyone redialling it would undo that). Static peers are always kept.
            let needed = !p.bootstrap || connected.len() < self.limits.low;
            if needed && !dialing && now >= p.next_dial && free_dials > 0 {
                p.dialing = true;
                free_dials -= 1;
                actions.push(Action::DialPinned { index });
            }
        }

        // Below the low watermark: dial table peers, one per bucket first so the
        // connections spread over the key space.
        let pending = self.dialing.len() + self.pinned.iter().filter(|p| p.dialing).count();
        let want = self
            .limits
            .low
            .saturating_sub(connected.len() + pending)
            .min(free_dials);
        if want > 0 {
            let mut used_buckets: HashSet<usize> =
                connected.iter().filter_map(|c| c.bucket).collect();
            let eligible: Vec<&Candidate> = candidates
                .iter()
                .filter(|c| {
                    !is_connected(&c.peer)
                        && !self.dialing.contains(&c.peer)
                        && !self.quarantine.contains_key(&c.peer)
                        && !c.addrs.is_empty()
                })
                .collect();
            let mut chosen: Vec<&Candidate> = Vec::new();
            for c in &eligible {
                if chosen.len() >= want {
                    break;
                }
                if used_buckets.insert(c.bucket) {
                    chosen.push(c);
                }
            }
            for c in &eligible {
                if chosen.len() >= want {
                    break;
                }
                if !chosen.iter().any(|x| x.peer == c.peer) {
                    chosen.push(c);
                }
            }
            for c in chosen {
                self.dialing.insert(c.peer);
                actions.push(Action::Dial {
                    peer: c.peer,
                    addrs: c.addrs.clone(),
                });
            }
        }

        // Above the high watermark: close the least useful.
        for peer in self.prune(connected) {
            actions.push(Action::Prune { peer });
        }
        actions
    }

    /// Which connected peers to drop to get back to the high watermark: never kept ones,
    /// never connections younger than the grace period; first peers outside the table,
    /// then peers of the most crowded bucket (so every bucket keeps its last connection
    /// longest), the least recently seen first.
    fn prune(&self, connected: &[ConnectedPeer]) -> Vec<PeerId> {
        let excess = connected.len().saturating_sub(self.limits.high);
        if excess == 0 {
            return Vec::new();
        }
        let mut per_bucket: HashMap<usize, usize> = HashMap::new();
        for c in connected {
            if let Some(b) = c.bucket {
                *per_bucket.entry(b).or_default() += 1;
            }
        }
        let mut prunable: Vec<&ConnectedPeer> = connected
            .iter()
            .filter(|c| !c.keep && c.age >= self.limits.grace && !self.is_pinned(&c.peer))
            .collect();
        let mut victims = Vec::new();
        while victims.len() < excess && !prunable.is_empty() {
            let pick = prunable
                .iter()
                .enumerate()
                .max_by(|(_, a), (_, b)| {
                    let crowd = |c: &ConnectedPeer| c.bucket.map_or(usize::MAX, |b| per_bucket[&b]);
                    crowd(a)
                        .cmp(&crowd(b))
                        // Least recently seen loses: an older `last_seen` ranks higher.
                        .then_with(|| b.last_seen.cmp(&a.last_seen))
                        .then_with(|| a.peer.cmp(&b.peer))
                })
                .map(|(i, _)| i);
            let Some(i) = pick else { break };
            let victim = prunable.swap_remove(i);
            if let Some(b) = victim.bucket {
                if let Some(n) = per_bucket.get_mut(&b) {
                    *n -= 1;
                }
            }
            victims.push(victim.peer);
        }
        victims
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Keypair;

    /// Some origin for the clock; only differences from it matter.
    #[allow(clippy::disallowed_methods)]
    fn test_now() -> Instant {
        Instant::now()
    }

    fn peer(i: u32) -> PeerId {
        let mut seed = [7u8; 32];
        seed[..4].copy_from_slice(&i.to_le_bytes());
        Keypair::from_seed(seed).peer_id()
    }

    fn addr(p: PeerId) -> Multiaddr {
        "/ip4/127.0.0.1/tcp/4001"
            .parse::<Multiaddr>()
            .expect("addr")
            .with_p2p(p)
            .expect("p2p")
    }

    fn limits() -> Limits {
        Limits {
            low: 2,
            high: 3,
            grace: Duration::from_secs(1),
            redial_initial: Duration::from_millis(100),
            redial_max: Duration::from_secs(2),
        }
    }

    fn connected(p: PeerId, bucket: Option<usize>, keep: bool) -> ConnectedPeer {
        ConnectedPeer {
            peer: p,
            bucket,
            last_seen: None,
            age: Duration::from_secs(10),
            keep,
        }
    }

    #[test]
    fn pinned_peers_are_dialled_at_once_and_redialled_with_capped_backoff() {
        let now = test_now();
        let boot = peer(1);
        let mut m = Policy::new(limits(), &[addr(boot)], &[], now, 42);
        assert_eq!(
            m.tick(now, &[], &[], 8),
            vec![Action::DialPinned { index: 0 }]
        );
        // No second dial while one runs.
        assert!(m.tick(now, &[], &[], 8).is_empty());
        let mut at = now;
        let mut waits = Vec::new();
        for _ in 0..10 {
            m.pinned_dialled(0, Err(()), at);
            let next = m.pinned[0].next_dial;
            waits.push(next - at);
            assert!(m.tick(at, &[], &[], 8).is_empty(), "dialled before backoff");
            at = next;
            assert_eq!(
                m.tick(at, &[], &[], 8),
                vec![Action::DialPinned { index: 0 }]
            );
        }
        assert!(waits.iter().all(|w| *w <= limits().redial_max));
        assert!(waits[0] <= Duration::from_millis(150));
        assert!(
            waits[9] >= Duration::from_secs(1),
            "backoff grows: {waits:?}"
        );
        // Connected, then lost: redialled after a short wait, and no dial is wasted
        // without a free slot.
        m.pinned_dialled(0, Ok(boot), at);
        assert!(m
            .tick(at, &[connected(boot, None, false)], &[], 8)
            .is_empty());
        let later = at + Duration::from_secs(5);
        assert!(m
            .tick(later, &[connected(boot, None, false)], &[], 8)
            .is_empty());
        assert!(m.tick(later, &[], &[], 0).is_empty());
        let redial = m.pinned[0].next_dial;
        assert!(
            redial - later <= Duration::from_millis(150),
            "a long-lived connection resets the backoff"
        );
        assert_eq!(
            m.tick(redial, &[], &[], 1),
            vec![Action::DialPinned { index: 0 }]
        );
    }

    #[test]
    fn a_bootstrap_peer_is_redialled_only_when_short_of_peers_a_static_one_always() {
        let now = test_now();
        let (boot, fixed) = (peer(1), peer(2));
        let mut m = Policy::new(limits(), &[addr(boot)], &[addr(fixed)], now, 3);
        let others = [
            connected(peer(3), None, false),
            connected(peer(4), None, false),
        ];
        // Enough peers (low = 2): only the static peer is dialled.
        assert_eq!(
            m.tick(now, &others, &[], 8),
            vec![Action::DialPinned { index: 1 }]
        );
        // Short of peers: the bootstrap peer too.
        assert_eq!(
            m.tick(now, &others[..1], &[], 8),
            vec![Action::DialPinned { index: 0 }]
        );
    }

    #[test]
    fn below_low_watermark_table_peers_are_dialled_spread_over_buckets() {
        let now = test_now();
        let mut m = Policy::new(limits(), &[], &[], now, 1);
        let cands: Vec<Candidate> = (0..4)
            .map(|i| Candidate {
                peer: peer(10 + i),
                bucket: if i < 3 { 200 } else { 100 },
                addrs: vec![addr(peer(10 + i))],
            })
            .collect();
        let actions = m.tick(now, &[], &cands, 8);
        let dialled: Vec<PeerId> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Dial { peer, .. } => Some(*peer),
                _ => None,
            })
            .collect();
        assert_eq!(dialled, vec![peer(10), peer(13)]);
        // Dials in flight count toward the watermark.
        assert!(m.tick(now, &[], &cands, 8).is_empty());
        // A failed peer is not retried at once; another takes its place.
        m.dialled(peer(10), false, now);
        let again = m.tick(now, &[connected(peer(13), Some(100), false)], &cands, 8);
        assert!(
            again.is_empty(),
            "peer 13 dialling and connected: at the low mark"
        );
        m.dialled(peer(13), true, now);
        let again = m.tick(now, &[connected(peer(13), Some(100), false)], &cands, 8);
        assert_eq!(
            again,
            vec![Action::Dial {
                peer: peer(11),
                addrs: vec![addr(peer(11))]
            }],
            "the failed peer 10 is quarantined"
        );
    }

    #[test]
    fn pruning_spares_pinned_kept_young_and_lonely_bucket_peers() {
        let now = test_now();
        let boot = peer(1);
        let m = Policy::new(limits(), &[addr(boot)], &[], now, 1);
        let mut young = connected(peer(5), Some(7), false);
        young.age = Duration::from_millis(10);
        let conns = vec![
            connected(boot, Some(9), false),
            connected(peer(2), Some(9), true),
            connected(peer(3), Some(9), false),
            connected(peer(4), Some(9), false),
            young,
            connected(peer(6), Some(50), false),
            connected(peer(7), None, false),
        ];
        let victims = m.prune(&conns);
        // 7 connected, high 3: four to go, but only peers 3, 4, 6, 7 may go; the one
        // outside the table first, then bucket 9 (crowded) before bucket 50 (alone).
        assert_eq!(victims.len(), 4);
        assert_eq!(victims[0], peer(7));
        assert!(victims[1..3].contains(&peer(3)) && victims[1..3].contains(&peer(4)));
        assert_eq!(victims[3], peer(6));
        assert!(!victims.contains(&boot));
    }
}
