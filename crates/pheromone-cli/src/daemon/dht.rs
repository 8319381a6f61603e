//! The daemon's view of the DHT for `pheromone dht find` and `pheromone dht table`: one
//! lookup, one snapshot of the Kademlia routing table, turned into the control protocol's
//! types. Nothing here keeps state; the DHT itself is the library's
//! ([`pheromone::discovery`]).

use super::net::Net;
use crate::control_proto::{ControlError, DhtBucket, DhtEntry, DhtFound, DhtTable, ErrorCode};
use pheromone::discovery::{Discovery, EntrySnapshot};

impl Net {
    fn discovery(&self) -> Result<&Discovery, ControlError> {
        self.node().discovery().ok_or_else(|| {
            ControlError::new(
                ErrorCode::NotAvailable,
                "this daemon runs without the DHT (discovery is off)",
            )
        })
    }

    /// Looks `spec` up in the DHT: the addresses found and what the lookup took.
    pub async fn dht_find(&self, spec: &str) -> Result<DhtFound, ControlError> {
        let peer = self.resolve(spec)?.peer;
        let found = self
            .discovery()?
            .find_peer(peer)
            .await
            .map_err(|e| ControlError::new(ErrorCode::NotFound, format!("{spec}: {e}")))?;
        Ok(DhtFound {
            peer_id: found.peer.to_string(),
            name: self.peer_name(&found.peer),
            addrs: found.addrs.iter().map(ToString::to_string).collect(),
            hops: found.hops,
            messages: found.messages,
            failures: found.failures,
            duration_ms: found.duration.as_secs_f64() * 1e3,
        })
    }

    /// The Kademlia routing table, non-empty buckets closest first.
    pub async fn dht_table(&self) -> Result<DhtTable, ControlError> {
        let table = self
            .discovery()?
            .table()
            .await
            .map_err(|e| ControlError::new(ErrorCode::NotAvailable, e.to_string()))?;
        let entry = |e: &EntrySnapshot| DhtEntry {
            peer_id: e.peer.to_string(),
            name: self.peer_name(&e.peer),
            addrs: e.addrs.iter().map(ToString::to_string).collect(),
            last_seen_secs: e.last_seen.as_secs_f64(),
            connected: e.connected,
        };
        Ok(DhtTable {
            local: table.local.to_string(),
            size: table.len(),
            buckets: table
                .buckets
                .iter()
                .map(|b| DhtBucket {
                    index: b.index,
                    entries: b.entries.iter().map(entry).collect(),
                    replacements: b.replacements.iter().map(entry).collect(),
                })
                .collect(),
        })
    }
}
