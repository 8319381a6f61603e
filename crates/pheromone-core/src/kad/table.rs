//! The k-bucket routing table: 256 buckets by XOR distance, each holding up to `k` live
//! entries in least-recently-seen order plus a short replacement list, with IP diversity
//! limits against eclipse attempts.
//!
//! The table decides where a peer goes and who is evicted; it never decides *whether* a
//! peer is trustworthy enough to be offered (that is `state.rs`: only peers we have
//! exchanged kad messages with are offered) and it sends nothing.

use super::config::{Config, IpRange};
use super::key::{Distance, Key};
use super::wire::encode_peer_fields;
use crate::addr::{Multiaddr, Protocol};
use crate::identity::PeerId;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// Number of buckets: one per bit of a SHA-256 key.
pub const NUM_BUCKETS: usize = 256;

/// The network an address counts against in the diversity limits: an IPv4 /24 or an IPv6
/// /48 (the smallest block one operator commonly gets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subnet {
    /// The first three octets of an IPv4 address.
    V4([u8; 3]),
    /// The first six bytes of an IPv6 address.
    V6([u8; 6]),
    /// Peers whose connection address we never saw and whose announced addresses are
    /// loopback, exempt or DNS names: nothing tells them apart, so they share one group
    /// (and one group's limits) rather than counting against none.
    Unobserved,
}

impl Subnet {
    /// The subnet of the first IP address in `addrs`, unless that address is loopback or
    /// in an exempt range (then the entry counts against no limit). Addresses without an
    /// IP (DNS names) count against none either. For addresses the *operator* gave
    /// (bootstrap and static peers); peers met on the network go through
    /// [`Subnet::observed`].
    pub fn of(addrs: &[Multiaddr], exempt: &[IpRange]) -> Option<Subnet> {
        let ip = first_ip(addrs)?;
        if ip.is_loopback() || exempt.iter().any(|r| r.contains(ip)) {
            return None;
        }
        Some(Self::of_ip(ip))
    }

    /// The subnet a peer met on the network counts against: that of `observed`, the IP
    /// its connection's socket really talks to, whatever it announces (an attacker can
    /// announce addresses in as many subnets as it likes, or loopback and DNS names to be
    /// exempt). Only an observed loopback or exempt address is exempt, so nodes on
    /// 127.0.0.1 still fill their tables. With no observed address (the connection is
    /// gone), the first announced IP counts, and announced loopback, exempt or DNS
    /// addresses fall in [`Subnet::Unobserved`].
    pub fn observed(
        observed: Option<IpAddr>,
        addrs: &[Multiaddr],
        exempt: &[IpRange],
    ) -> Option<Subnet> {
        let exempted = |ip: IpAddr| ip.is_loopback() || exempt.iter().any(|r| r.contains(ip));
        match observed {
            Some(ip) if exempted(ip) => None,
            Some(ip) => Some(Self::of_ip(ip)),
            None => match first_ip(addrs) {
                Some(ip) if !exempted(ip) => Some(Self::of_ip(ip)),
                _ => Some(Subnet::Unobserved),
            },
        }
    }

    /// The subnet a peer listed in a FIND_NODE answer counts against in a lookup: that
    /// of its first IP address (loopback: none, so one-machine tests are not capped), or
    /// [`Subnet::Unobserved`] for DNS names and addresses without an IP.
    pub fn of_listed(addrs: &[Multiaddr]) -> Option<Subnet> {
        match first_ip(addrs) {
            Some(ip) if ip.is_loopback() => None,
            Some(ip) => Some(Self::of_ip(ip)),
            None if addrs.is_empty() => None,
            None => Some(Subnet::Unobserved),
        }
    }

    fn of_ip(ip: IpAddr) -> Subnet {
        match ip {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                Subnet::V4([o[0], o[1], o[2]])
            }
            IpAddr::V6(v6) => {
                let o = v6.octets();
                Subnet::V6([o[0], o[1], o[2], o[3], o[4], o[5]])
            }
        }
    }
}

fn first_ip(addrs: &[Multiaddr]) -> Option<IpAddr> {
    addrs.iter().find_map(|a| match a.protocols().first() {
        Some(Protocol::Ip4(ip)) => Some(IpAddr::V4(*ip)),
        Some(Protocol::Ip6(ip)) => Some(IpAddr::V6(*ip)),
        _ => None,
    })
}

/// Where a peer offered to the table was learned, which decides the subnet it counts
/// against in the diversity limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The operator gave its address (bootstrap, static peer): the address it names
    /// counts, with the loopback, DNS and exempt-range exemptions of [`Subnet::of`].
    Operator,
    /// Met on the network; the connection's socket address if known (see
    /// [`Subnet::observed`]).
    Network(Option<IpAddr>),
}

/// One peer in the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The peer.
    pub peer: PeerId,
    /// Its key (SHA-256 of the peer ID).
    pub key: Key,
    /// Addresses it can be dialled at, most recently confirmed first.
    pub addrs: Vec<Multiaddr>,
    /// When we last heard from it.
    pub last_seen: Instant,
    /// The subnet it counts against, fixed at insertion.
    pub subnet: Option<Subnet>,
}

/// What [`RoutingTable::insert`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertOutcome {
    /// A new entry in bucket `bucket`.
    Inserted {
        /// Bucket index.
        bucket: usize,
    },
    /// The peer was already an entry; it is now the most recently seen of its bucket.
    Refreshed,
    /// The bucket is full; the peer waits in its replacement list.
    Pending,
    /// The peer's subnet already has its share of the bucket or the table.
    RejectedDiversity,
    /// The peer is us.
    RejectedSelf,
}

#[derive(Debug, Clone, Default)]
struct Bucket {
    /// Index 0 is the least recently seen.
    entries: Vec<Entry>,
    /// `wire[i]`: the ID and address fields of a kad `Peer` message for `entries[i]`,
    /// encoded once when the entry or its addresses change rather than for every
    /// FIND_NODE answer that lists it.
    wire: Vec<Vec<u8>>,
    /// `keys[i]`: the key of `entries[i]`, packed so that scanning a bucket for the closest
    /// entries reads 32 bytes per entry rather than a whole cold [`Entry`].
    keys: Vec<Key>,
    /// The last one is the newest candidate.
    replacements: Vec<Entry>,
}

/// The routing table. See the module docs.
#[derive(Debug, Clone)]
pub struct RoutingTable {
    local: Key,
    buckets: Vec<Bucket>,
    /// The bucket of every entry and replacement: finding a known peer costs a hash-map
    /// probe, not a SHA-256 of its ID (every message a peer sends us looks it up).
    index: HashMap<PeerId, usize>,
    subnets: HashMap<Subnet, usize>,
    len: usize,
    k: usize,
    replacements: usize,
    max_addrs: usize,
    per_bucket: usize,
    per_table: usize,
    exempt: Vec<IpRange>,
}

impl RoutingTable {
    /// An empty table around `local`, sized by `config`.
    pub fn new(local: Key, config: &Config) -> Self {
        Self {
            local,
            buckets: vec![Bucket::default(); NUM_BUCKETS],
            index: HashMap::new(),
            subnets: HashMap::new(),
            len: 0,
            // Positions in a bucket are kept in a byte (see `closest_with_wire`).
            k: config.k.clamp(1, 255),
            replacements: config.replacements,
            max_addrs: config.max_addrs_per_peer.max(1),
            per_bucket: config.max_per_subnet_bucket,
            per_table: config.max_per_subnet_table,
            exempt: config.diversity_exempt.clone(),
        }
    }

    /// Our own key.
    pub fn local_key(&self) -> Key {
        self.local
    }

    /// Entries (not counting replacements).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table has no entry.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bucket `key` falls in, `None` for our own key.
    pub fn bucket_of(&self, key: &Key) -> Option<usize> {
        self.local.distance(key).bucket_index()
    }

    /// The entry of `peer`, if it is in the table proper.
    pub fn get(&self, peer: &PeerId) -> Option<&Entry> {
        let bucket = *self.index.get(peer)?;
        self.buckets[bucket]
            .entries
            .iter()
            .find(|e| e.peer == *peer)
    }

    /// Whether `peer` is an entry or a replacement candidate.
    pub fn knows(&self, peer: &PeerId) -> bool {
        self.index.contains_key(peer)
    }

    /// Entries of bucket `index`, least recently seen first.
    pub fn bucket(&self, index: usize) -> &[Entry] {
        self.buckets.get(index).map_or(&[], |b| &b.entries)
    }

    /// Replacement candidates of bucket `index`, oldest first.
    pub fn replacements(&self, index: usize) -> &[Entry] {
        self.buckets.get(index).map_or(&[], |b| &b.replacements)
    }

    /// All entries, bucket by bucket from the closest.
    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.buckets.iter().flat_map(|b| b.entries.iter())
    }

    /// Indices of non-empty buckets.
    pub fn non_empty_buckets(&self) -> impl Iterator<Item = usize> + '_ {
        self.buckets
            .iter()
            .enumerate()
            .filter(|(_, b)| !b.entries.is_empty())
            .map(|(i, _)| i)
    }

    /// Offers `peer`, reachable at `addrs`, as seen alive at `now`.
    ///
    /// A known entry moves to the most-recently-seen end and takes `addrs` in front of its
    /// old ones. A new peer joins its bucket if the bucket has room and its subnet is within
    /// the limits, else the bucket's replacement list (oldest dropped beyond the cap).
    pub fn insert(&mut self, now: Instant, peer: PeerId, addrs: &[Multiaddr]) -> InsertOutcome {
        self.insert_from(now, peer, addrs, Origin::Operator)
    }

    /// [`insert`](Self::insert) for a peer learned as `origin` says: a peer met on the
    /// network counts against the subnet of its observed address.
    pub fn insert_from(
        &mut self,
        now: Instant,
        peer: PeerId,
        addrs: &[Multiaddr],
        origin: Origin,
    ) -> InsertOutcome {
        let known = self.index.get(&peer).copied();
        let max_addrs = self.max_addrs;
        if let Some(index) = known {
            let bucket = &mut self.buckets[index];
            if let Some(pos) = bucket.entries.iter().position(|e| e.peer == peer) {
                let mut entry = bucket.entries.remove(pos);
                let mut wire = bucket.wire.remove(pos);
                let key = bucket.keys.remove(pos);
                entry.last_seen = now;
                if merge_addrs(&mut entry.addrs, addrs, max_addrs) {
                    wire.clear();
                    encode_peer_fields(&entry.peer, &entry.addrs, &mut wire);
                }
                bucket.entries.push(entry);
                bucket.wire.push(wire);
                bucket.keys.push(key);
                return InsertOutcome::Refreshed;
            }
        }
        // A replacement already has its key; only a peer never seen is hashed.
        let key = known
            .and_then(|i| {
                self.buckets[i]
                    .replacements
                    .iter()
                    .find(|e| e.peer == peer)
                    .map(|e| e.key)
            })
            .unwrap_or_else(|| Key::from_peer(&peer));
        let Some(index) = self.bucket_of(&key) else {
            return InsertOutcome::RejectedSelf;
        };
        let bucket = &mut self.buckets[index];
        let subnet = match origin {
            Origin::Operator => Subnet::of(addrs, &self.exempt),
            Origin::Network(observed) => Subnet::observed(observed, addrs, &self.exempt),
        };
        if let Some(subnet) = subnet {
            let in_bucket = bucket
                .entries
                .iter()
                .filter(|e| e.subnet == Some(subnet))
                .count();
            let in_table = self.subnets.get(&subnet).copied().unwrap_or(0);
            if in_bucket >= self.per_bucket || in_table >= self.per_table {
                // A replacement from a crowded subnet could never be promoted either.
                if known.is_some() {
                    bucket.replacements.retain(|e| e.peer != peer);
                    self.index.remove(&peer);
                }
                return InsertOutcome::RejectedDiversity;
            }
        }
        let mut entry = Entry {
            peer,
            key,
            addrs: Vec::new(),
            last_seen: now,
            subnet,
        };
        merge_addrs(&mut entry.addrs, addrs, max_addrs);
        if bucket.entries.len() < self.k {
            if known.is_some() {
                bucket.replacements.retain(|e| e.peer != peer);
            }
            bucket.wire.push(wire_of(&entry));
            bucket.keys.push(entry.key);
            bucket.entries.push(entry);
            self.index.insert(peer, index);
            self.len += 1;
            if let Some(subnet) = subnet {
                *self.subnets.entry(subnet).or_insert(0) += 1;
            }
            return InsertOutcome::Inserted { bucket: index };
        }
        if self.replacements == 0 {
            return InsertOutcome::Pending;
        }
        if let Some(pos) = bucket.replacements.iter().position(|e| e.peer == peer) {
            let old = bucket.replacements.remove(pos);
            merge_addrs(&mut entry.addrs, &old.addrs, max_addrs);
        } else if let Some(subnet) = subnet {
            // The diversity limit applies to the replacement list too, or one subnet could
            // fill it and be promoted in a block.
            let crowded = bucket
                .replacements
                .iter()
                .filter(|e| e.subnet == Some(subnet))
                .count();
            if crowded >= self.per_bucket {
                return InsertOutcome::RejectedDiversity;
            }
        }
        if bucket.replacements.len() >= self.replacements {
            let dropped = bucket.replacements.remove(0);
            self.index.remove(&dropped.peer);
        }
        bucket.replacements.push(entry);
        self.index.insert(peer, index);
        InsertOutcome::Pending
    }

    /// Removes `peer` (an entry or a replacement). When an entry leaves, the newest
    /// replacement whose subnet is within the limits takes its place. Returns the removed
    /// entry and the promoted one.
    pub fn remove(&mut self, peer: &PeerId) -> (Option<Entry>, Option<PeerId>) {
        let Some(index) = self.index.remove(peer) else {
            return (None, None);
        };
        let bucket = &mut self.buckets[index];
        if let Some(pos) = bucket.replacements.iter().position(|e| e.peer == *peer) {
            return (Some(bucket.replacements.remove(pos)), None);
        }
        let Some(pos) = bucket.entries.iter().position(|e| e.peer == *peer) else {
            return (None, None);
        };
        let removed = bucket.entries.remove(pos);
        bucket.wire.remove(pos);
        bucket.keys.remove(pos);
        self.len -= 1;
        if let Some(subnet) = removed.subnet {
            if let Some(count) = self.subnets.get_mut(&subnet) {
                *count -= 1;
                if *count == 0 {
                    self.subnets.remove(&subnet);
                }
            }
        }
        let promoted = self.promote(index);
        (Some(removed), promoted)
    }

    fn promote(&mut self, index: usize) -> Option<PeerId> {
        let bucket = &mut self.buckets[index];
        let pos = bucket.replacements.iter().rposition(|candidate| {
            candidate.subnet.is_none_or(|subnet| {
                let in_bucket = bucket
                    .entries
                    .iter()
                    .filter(|e| e.subnet == Some(subnet))
                    .count();
                in_bucket < self.per_bucket
                    && self.subnets.get(&subnet).copied().unwrap_or(0) < self.per_table
            })
        })?;
        let entry = bucket.replacements.remove(pos);
        let peer = entry.peer;
        if let Some(subnet) = entry.subnet {
            *self.subnets.entry(subnet).or_insert(0) += 1;
        }
        // Promoted candidates were seen when they were offered, which is at least as recent
        // as the oldest entry: they go to the most recently seen end.
        bucket.wire.push(wire_of(&entry));
        bucket.keys.push(entry.key);
        bucket.entries.push(entry);
        self.len += 1;
        Some(peer)
    }

    /// The least recently seen entry of bucket `index`.
    pub fn oldest(&self, index: usize) -> Option<&Entry> {
        self.buckets.get(index).and_then(|b| b.entries.first())
    }

    /// The `n` entries closest to `target`, closest first.
    ///
    /// Buckets partition the distances to `target` into ranges that do not overlap, so
    /// they are visited in order of those ranges and only the last one visited needs
    /// sorting in earnest: a lookup reads about `n + k` entries, not the whole table.
    pub fn closest(&self, target: &Key, n: usize) -> Vec<&Entry> {
        self.closest_with_wire(target, n)
            .into_iter()
            .map(|(e, _)| e)
            .collect()
    }

    /// [`closest`](Self::closest), each entry with its encoded `Peer` fields (ID and
    /// addresses, see `wire::encode_peer_fields`), for answering FIND_NODE.
    pub(crate) fn closest_with_wire(&self, target: &Key, n: usize) -> Vec<(&Entry, &[u8])> {
        let d = self.local.distance(target);
        let mut found: Vec<(Distance, u8, u8)> = Vec::with_capacity(n + self.k);
        for index in bucket_order(&d) {
            for (pos, key) in self.buckets[index].keys.iter().enumerate() {
                // Bucket indices are below 256 and positions below k ≤ 255 (see `new`).
                found.push((key.distance(target), index as u8, pos as u8));
            }
            if found.len() >= n {
                break;
            }
        }
        found.sort_unstable_by_key(|(d, _, _)| *d);
        found.truncate(n);
        found
            .into_iter()
            .map(|(_, index, pos)| {
                let bucket = &self.buckets[usize::from(index)];
                let pos = usize::from(pos);
                (&bucket.entries[pos], bucket.wire[pos].as_slice())
            })
            .collect()
    }
}

/// Bucket indices in order of increasing distance to a target whose distance from the
/// local key is `d`: with `j` the highest set bit of `d`, bucket `j` first (distances below
/// 2^j), then the lower buckets whose bit is set in `d`, from high to low, then the lower
/// buckets whose bit is clear, from low to high, then the buckets above `j`, from low to
/// high.
fn bucket_order(d: &Distance) -> impl Iterator<Item = usize> + '_ {
    let bit = move |i: usize| d.as_bytes()[31 - i / 8] >> (i % 8) & 1 == 1;
    let top = d.bucket_index();
    let below = top.unwrap_or(0);
    let first = top.into_iter();
    let set = (0..below).rev().filter(move |&i| top.is_some() && bit(i));
    let clear = (0..below).filter(move |&i| top.is_some() && !bit(i));
    let above = match top {
        Some(j) => (j + 1)..NUM_BUCKETS,
        None => 0..NUM_BUCKETS,
    };
    first.chain(set).chain(clear).chain(above)
}

fn wire_of(entry: &Entry) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    encode_peer_fields(&entry.peer, &entry.addrs, &mut out);
    out
}

/// Puts `fresh` in front of `addrs`, without duplicates, keeping at most `max`. Returns
/// whether anything changed.
fn merge_addrs(addrs: &mut Vec<Multiaddr>, fresh: &[Multiaddr], max: usize) -> bool {
    // The common case by far: a peer seen again at the address it is listed with.
    if fresh.is_empty() || addrs.starts_with(fresh) {
        return false;
    }
    let mut merged: Vec<Multiaddr> = Vec::with_capacity(max.min(fresh.len() + addrs.len()));
    for addr in fresh.iter().chain(addrs.iter()) {
        if merged.len() >= max {
            break;
        }
        if !merged.contains(addr) {
            merged.push(addr.clone());
        }
    }
    let changed = *addrs != merged;
    *addrs = merged;
    changed
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
