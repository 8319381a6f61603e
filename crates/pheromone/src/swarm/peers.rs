//! The swarm's peer book: what it knows about peers besides live connections.
//!
//! Three kinds of knowledge, kept apart because they are trusted differently:
//! - **contacts**: peers the operator named (`Node::add_contact`): an alias chosen locally
//!   and the address dialled. They are never evicted.
//! - **identified**: what each peer said about itself in identify: its announced name
//!   (unauthenticated, for display and lookup), listen addresses, protocols, agent.
//! - **found**: addresses the DHT returned for a peer.
//!
//! Names resolve to peers here: an alias or an announced name must name exactly one peer.
//! The learned tables are bounded: past their cap, the entry heard of longest ago that is
//! not a contact is forgotten. Pure bookkeeping under the swarm's lock: no IO, no awaiting.

use pheromone_core::addr::Multiaddr;
use pheromone_core::identify::IdentifyInfo;
use pheromone_core::identity::PeerId;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// Most peers remembered from identify (contacts come on top), and most DHT findings.
pub(crate) const MAX_KNOWN_PEERS: usize = 4096;

/// A peer the operator added to the address book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// The peer, authenticated when the contact was added.
    pub peer: PeerId,
    /// The alias given to `Node::add_contact`: a local name, trusted.
    pub alias: String,
    /// The address dialled, with the peer's `/p2p/` suffix.
    pub addr: Multiaddr,
    /// The name the peer announces for itself, if any (unauthenticated).
    pub announced_name: Option<String>,
}

/// What a peer told us in identify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRecord {
    /// The peer.
    pub peer: PeerId,
    /// The name it announces (unauthenticated: anyone may announce any name).
    pub name: Option<Arc<str>>,
    /// Where it listens.
    pub listen_addrs: Vec<Multiaddr>,
    /// The protocols it serves, sorted.
    pub protocols: Vec<String>,
    /// Its agent version (`pheromone/0.1.0`, `rust-libp2p/…`).
    pub agent_version: String,
    /// The address it saw us connect from.
    pub observed_addr: Option<Multiaddr>,
}

impl PeerRecord {
    /// The record of an identify answer from `peer`.
    pub(crate) fn from_identify(peer: PeerId, info: IdentifyInfo) -> Self {
        let mut protocols = info.protocols;
        protocols.sort();
        protocols.dedup();
        Self {
            peer,
            name: info.pheromone_name.map(Arc::from),
            listen_addrs: info.listen_addrs,
            protocols,
            agent_version: info.agent_version,
            observed_addr: info.observed_addr,
        }
    }

    /// Whether the peer said it serves `protocol`.
    pub fn speaks(&self, protocol: &str) -> bool {
        self.protocols
            .binary_search_by(|p| p.as_str().cmp(protocol))
            .is_ok()
    }
}

#[derive(Debug, Clone)]
struct Identified {
    record: Arc<PeerRecord>,
    at: Instant,
}

/// What [`PeerBook::add_contact`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ContactChange {
    /// A new contact.
    Added,
    /// The peer was a contact; its alias or address changed.
    Updated,
    /// The same contact again.
    Unchanged,
}

/// A name that resolves to no peer or to several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unresolved {
    /// Nobody has the name.
    Unknown(String),
    /// Several peers have it; sorted.
    Ambiguous(String, Vec<PeerId>),
}

#[derive(Debug, Clone)]
struct ContactEntry {
    alias: String,
    addr: Multiaddr,
}

/// Contacts, identify records and DHT findings.
#[derive(Debug)]
pub(crate) struct PeerBook {
    contacts: HashMap<PeerId, ContactEntry>,
    identified: HashMap<PeerId, Identified>,
    found: HashMap<PeerId, (Vec<Multiaddr>, Instant)>,
    max_known: usize,
}

impl Default for PeerBook {
    fn default() -> Self {
        Self::with_max_known(MAX_KNOWN_PEERS)
    }
}

impl PeerBook {
    /// A book remembering at most `max_known` identified peers and DHT findings each.
    pub(crate) fn with_max_known(max_known: usize) -> Self {
        Self {
            contacts: HashMap::new(),
            identified: HashMap::new(),
            found: HashMap::new(),
            max_known: max_known.max(1),
        }
    }

    /// Adds or replaces the contact `peer`; what changed, and the contact as it is now.
    pub(crate) fn add_contact(
        &mut self,
        peer: PeerId,
        alias: String,
        addr: Multiaddr,
    ) -> (ContactChange, Contact) {
        let entry = ContactEntry { alias, addr };
        let change = match self.contacts.insert(peer, entry.clone()) {
            None => ContactChange::Added,
            Some(old) if old.alias == entry.alias && old.addr == entry.addr => {
                ContactChange::Unchanged
            }
            Some(_) => ContactChange::Updated,
        };
        (change, self.contact_of(peer, entry))
    }

    /// Removes the contact `peer`.
    pub(crate) fn remove_contact(&mut self, peer: &PeerId) -> Option<Contact> {
        let entry = self.contacts.remove(peer)?;
        Some(self.contact_of(*peer, entry))
    }

    fn contact_of(&self, peer: PeerId, entry: ContactEntry) -> Contact {
        Contact {
            peer,
            alias: entry.alias,
            addr: entry.addr,
            announced_name: self.name(&peer).map(|n| n.to_string()),
        }
    }

    /// Every contact, sorted by alias then peer.
    pub(crate) fn contacts(&self) -> Vec<Contact> {
        let mut all: Vec<Contact> = self
            .contacts
            .iter()
            .map(|(peer, entry)| self.contact_of(*peer, entry.clone()))
            .collect();
        all.sort_by(|a, b| a.alias.cmp(&b.alias).then(a.peer.cmp(&b.peer)));
        all
    }

    /// The peers that are contacts.
    pub(crate) fn contact_peers(&self) -> Vec<PeerId> {
        self.contacts.keys().copied().collect()
    }

    /// Whether the operator made `peer` a contact.
    pub(crate) fn is_contact(&self, peer: &PeerId) -> bool {
        self.contacts.contains_key(peer)
    }

    pub(crate) fn num_contacts(&self) -> usize {
        self.contacts.len()
    }

    pub(crate) fn num_identified(&self) -> usize {
        self.identified.len()
    }

    /// Records an identify answer; true when the announced name changed (or is new).
    pub(crate) fn identified(&mut self, record: PeerRecord, now: Instant) -> bool {
        let peer = record.peer;
        if !self.identified.contains_key(&peer) && self.identified.len() >= self.max_known {
            self.evict_identified();
        }
        let changed = self.identified.get(&peer).map(|i| &i.record.name) != Some(&record.name);
        self.identified.insert(
            peer,
            Identified {
                record: Arc::new(record),
                at: now,
            },
        );
        changed
    }

    /// Forgets the least recently identified peer that is not a contact.
    fn evict_identified(&mut self) {
        let victim = self
            .identified
            .iter()
            .filter(|(peer, _)| !self.contacts.contains_key(peer))
            .min_by_key(|(_, i)| i.at)
            .map(|(peer, _)| *peer);
        if let Some(peer) = victim {
            self.identified.remove(&peer);
        }
    }

    /// Records addresses the DHT found for `peer` (dialled after identify's, which the
    /// peer itself vouched for). Past the cap the oldest finding is forgotten.
    pub(crate) fn found(&mut self, peer: PeerId, addrs: &[Multiaddr], now: Instant) {
        if addrs.is_empty() {
            return;
        }
        if !self.found.contains_key(&peer) && self.found.len() >= self.max_known {
            let oldest = self
                .found
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(p, _)| *p);
            if let Some(oldest) = oldest {
                self.found.remove(&oldest);
            }
        }
        self.found.insert(peer, (addrs.to_vec(), now));
    }

    /// What `peer` said in identify, and when.
    pub(crate) fn record(&self, peer: &PeerId) -> Option<(Arc<PeerRecord>, Instant)> {
        self.identified.get(peer).map(|i| (i.record.clone(), i.at))
    }

    /// The name `peer` announced.
    pub(crate) fn name(&self, peer: &PeerId) -> Option<Arc<str>> {
        self.identified
            .get(peer)
            .and_then(|i| i.record.name.clone())
    }

    /// Addresses to dial `peer` at: its contact address first, then what it announced,
    /// then what the DHT found, each with the `/p2p/` suffix so the dial authenticates it.
    pub(crate) fn addresses(&self, peer: &PeerId) -> Vec<Multiaddr> {
        let mut addrs: Vec<Multiaddr> = Vec::new();
        if let Some(contact) = self.contacts.get(peer) {
            addrs.push(contact.addr.clone());
        }
        let announced = self
            .identified
            .get(peer)
            .map(|i| i.record.listen_addrs.as_slice());
        let found = self.found.get(peer).map(|(a, _)| a.as_slice());
        for addr in announced.into_iter().chain(found).flatten() {
            let Ok(addr) = addr.clone().without_p2p().with_p2p(*peer) else {
                continue;
            };
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
        addrs
    }

    /// The one peer called `name`: by contact alias or by announced name.
    pub(crate) fn resolve(&self, name: &str) -> Result<PeerId, Unresolved> {
        let mut candidates: Vec<PeerId> = self
            .contacts
            .iter()
            .filter(|(_, c)| c.alias == name)
            .map(|(p, _)| *p)
            .chain(
                self.identified
                    .iter()
                    .filter(|(_, i)| i.record.name.as_deref() == Some(name))
                    .map(|(p, _)| *p),
            )
            .collect();
        candidates.sort();
        candidates.dedup();
        match candidates.len() {
            0 => Err(Unresolved::Unknown(name.to_owned())),
            1 => Ok(candidates[0]),
            _ => Err(Unresolved::Ambiguous(name.to_owned(), candidates)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pheromone_core::identity::Keypair;

    fn peer(seed: u8) -> PeerId {
        Keypair::from_seed([seed; 32]).peer_id()
    }

    fn addr(port: u16) -> Multiaddr {
        format!("/ip4/127.0.0.1/tcp/{port}").parse().expect("addr")
    }

    fn record(p: PeerId, name: Option<&str>, addrs: Vec<Multiaddr>) -> PeerRecord {
        PeerRecord {
            peer: p,
            name: name.map(Arc::from),
            listen_addrs: addrs,
            protocols: vec!["/a/1".into(), "/b/1".into()],
            agent_version: "test".into(),
            observed_addr: None,
        }
    }

    #[test]
    fn names_resolve_by_alias_or_announcement() {
        let mut d = PeerBook::default();
        let now = Instant::now();
        assert_eq!(
            d.add_contact(peer(1), "a".into(), addr(1)).0,
            ContactChange::Added
        );
        assert_eq!(
            d.add_contact(peer(1), "a".into(), addr(1)).0,
            ContactChange::Unchanged
        );
        assert_eq!(
            d.add_contact(peer(1), "alpha".into(), addr(1)).0,
            ContactChange::Updated
        );
        assert!(d.identified(record(peer(2), Some("beta"), vec![addr(2)]), now));
        assert!(!d.identified(record(peer(2), Some("beta"), vec![addr(2)]), now));
        assert_eq!(d.resolve("alpha"), Ok(peer(1)));
        assert_eq!(d.resolve("beta"), Ok(peer(2)));
        assert!(matches!(d.resolve("gamma"), Err(Unresolved::Unknown(_))));
        // An alias that equals another peer's announced name makes it ambiguous.
        d.add_contact(peer(3), "beta".into(), addr(3));
        match d.resolve("beta") {
            Err(Unresolved::Ambiguous(name, candidates)) => {
                assert_eq!(name, "beta");
                let mut want = vec![peer(2), peer(3)];
                want.sort();
                assert_eq!(candidates, want);
            }
            other => panic!("{other:?}"),
        }
        // The same peer found twice (alias and announcement) is one candidate.
        d.identified(record(peer(1), Some("alpha"), vec![]), now);
        assert_eq!(d.resolve("alpha"), Ok(peer(1)));
        let (rec, _) = d.record(&peer(2)).expect("identified");
        assert!(rec.speaks("/b/1") && !rec.speaks("/c/1"));
    }

    #[test]
    fn addresses_prefer_the_contact_and_carry_the_peer_id() {
        let mut d = PeerBook::default();
        let contact = addr(1).with_p2p(peer(1)).expect("p2p");
        d.add_contact(peer(1), "a".into(), contact.clone());
        d.identified(
            record(peer(1), None, vec![addr(1), addr(7)]),
            Instant::now(),
        );
        let addrs = d.addresses(&peer(1));
        assert_eq!(addrs[0], contact);
        assert_eq!(addrs.len(), 2);
        assert_eq!(addrs[1].peer_id(), Some(peer(1)));
        assert!(d.addresses(&peer(9)).is_empty());
        // DHT findings come after what the peer announced.
        d.found(peer(1), &[addr(7), addr(8)], Instant::now());
        let addrs = d.addresses(&peer(1));
        assert_eq!(addrs.len(), 3);
        assert_eq!(addrs[2], addr(8).with_p2p(peer(1)).expect("p2p"));
        d.found(peer(9), &[addr(9)], Instant::now());
        assert_eq!(d.addresses(&peer(9)).len(), 1);
        assert_eq!(
            d.remove_contact(&peer(1)).map(|c| c.alias),
            Some("a".into())
        );
        assert_eq!(d.num_contacts(), 0);
    }

    #[test]
    fn identified_peers_are_bounded_and_contacts_kept() {
        const MAX: usize = 16;
        let mut d = PeerBook::with_max_known(MAX);
        let start = Instant::now();
        let contact = peer(0);
        d.add_contact(contact, "r".into(), addr(1));
        d.identified(record(contact, None, vec![]), start);
        for i in 0..(MAX as u32 + 10) {
            let mut seed = [0u8; 32];
            seed[..4].copy_from_slice(&(i + 1).to_le_bytes());
            let p = Keypair::from_seed(seed).peer_id();
            d.identified(
                record(p, None, vec![]),
                start + std::time::Duration::from_millis(u64::from(i) + 1),
            );
        }
        assert_eq!(d.num_identified(), MAX);
        assert!(d.record(&contact).is_some(), "a contact is never evicted");
    }
}
