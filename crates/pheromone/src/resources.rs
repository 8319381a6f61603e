//! The resource manager: one [`Ledger`] per endpoint behind a lock, grants handed out as
//! guards that give back what they took when dropped, refusals counted and logged at a
//! throttled rate.
//!
//! The accounting and the limits are sans-IO ([`pheromone_core::resources`]); this file
//! adds what needs the runtime: the lock, the guards, the machine's RAM for the defaults,
//! cancelling a handshake that lost its slot, the memory gauge each connection's driver
//! keeps up to date, and the throttled log. Nothing here opens a socket; the endpoint and
//! the relay ask it before they take anything.

use crate::throttle::Throttle;
use pheromone_core::identity::PeerId;
use pheromone_core::resources::{ConnectionKey, Ledger};
pub use pheromone_core::resources::{
    IpPrefix, Resource, ResourceError, ResourceLimits, Scope, Usage, Way,
};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The defaults for this machine: [`ResourceLimits::for_memory`] with the RAM that
/// `/proc/meminfo` reports (8 GiB where it cannot be read).
pub fn machine_limits() -> ResourceLimits {
    ResourceLimits::for_memory(machine_memory().unwrap_or(8 << 30))
}

fn machine_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// How often one kind of refusal is logged at most; the rest are counted and summed into
/// the next line.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// A cloneable handle to one endpoint's resource accounting.
#[derive(Clone)]
pub struct ResourceManager {
    inner: Arc<Inner>,
}

struct Inner {
    ledger: Mutex<Ledger>,
    /// Handshakes in progress that can be told to give up their slot.
    handshakes: Mutex<HashMap<u64, CancellationToken>>,
    /// Bytes held by every connection's driver (see [`MemoryGauge`]).
    memory: AtomicU64,
    /// The same per peer (only peers holding something), for the per-peer memory limit
    /// without a walk over every connection.
    peer_memory: Mutex<HashMap<PeerId, u64>>,
    refusals: Mutex<HashMap<(&'static str, &'static str), u64>>,
    log: Throttle,
}

impl std::fmt::Debug for ResourceManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceManager")
            .field("usage", &self.usage())
            .finish()
    }
}

impl ResourceManager {
    /// A manager enforcing `limits`.
    pub fn new(limits: ResourceLimits) -> Self {
        Self {
            inner: Arc::new(Inner {
                ledger: Mutex::new(Ledger::new(limits)),
                handshakes: Mutex::new(HashMap::new()),
                memory: AtomicU64::new(0),
                peer_memory: Mutex::new(HashMap::new()),
                refusals: Mutex::new(HashMap::new()),
                log: Throttle::new(LOG_INTERVAL),
            }),
        }
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.inner.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The limits enforced.
    pub fn limits(&self) -> ResourceLimits {
        self.ledger().limits().clone()
    }

    /// The system scope's counts now.
    pub fn usage(&self) -> Usage {
        self.ledger().usage()
    }

    /// Bytes all connections hold now (receive buffers, send queues).
    pub fn memory(&self) -> u64 {
        self.inner.memory.load(Ordering::Relaxed)
    }

    /// Bytes the connections with `peer` hold now.
    pub fn peer_memory(&self, peer: &PeerId) -> u64 {
        let map = self
            .inner
            .peer_memory
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        map.get(peer).copied().unwrap_or(0)
    }

    /// Refusals so far by (scope kind, resource), for metrics.
    pub fn refusals(&self) -> Vec<(&'static str, &'static str, u64)> {
        let map = self
            .inner
            .refusals
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        map.iter().map(|((s, r), n)| (*s, *r, *n)).collect()
    }

    /// Counts `error` and logs it, at most once per [`LOG_INTERVAL`] for its kind of scope
    /// and resource. `what` says what was refused ("inbound connection from 1.2.3.4").
    pub fn refused(&self, error: &ResourceError, what: &dyn std::fmt::Display) {
        let key = (error.scope.label(), error.resource.label());
        *self
            .inner
            .refusals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_insert(0) += 1;
        if let Some(suppressed) = self.inner.log.allow(key) {
            tracing::warn!(%error, refused = %what, suppressed, "resource limit reached");
        }
    }

    /// Admits an inbound handshake from `ip` (see [`Ledger::open_handshake`]); a
    /// handshake it evicts is cancelled.
    pub fn open_handshake(&self, ip: IpAddr) -> Result<HandshakeGuard, ResourceError> {
        let admission = self.ledger().open_handshake(ip)?;
        let token = CancellationToken::new();
        let mut handshakes = self
            .inner
            .handshakes
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(evicted) = admission.evicted.and_then(|t| handshakes.remove(&t)) {
            evicted.cancel();
        }
        handshakes.insert(admission.ticket, token.clone());
        Ok(HandshakeGuard {
            manager: self.clone(),
            ticket: admission.ticket,
            evicted: token,
        })
    }

    /// Checks the system outbound limit before a dial.
    pub fn check_dial(&self) -> Result<(), ResourceError> {
        self.ledger().check_dial()
    }

    /// Counts an authenticated connection, checking the memory held by all connections and
    /// by this peer's (`peer_memory`) first.
    pub fn open_connection(
        &self,
        way: Way,
        ip: Option<IpAddr>,
        peer: PeerId,
        peer_memory: u64,
    ) -> Result<ConnectionGuard, ResourceError> {
        let mut ledger = self.ledger();
        ledger.check_memory(self.memory(), Some((peer, peer_memory)))?;
        let key = ledger.open_connection(way, ip, peer)?;
        Ok(ConnectionGuard {
            manager: self.clone(),
            key,
        })
    }

    /// Counts an inbound stream of `peer` for `protocol`, checking memory first.
    pub fn open_stream(
        &self,
        peer: PeerId,
        protocol: &str,
        peer_memory: u64,
    ) -> Result<StreamGuard, ResourceError> {
        let mut ledger = self.ledger();
        ledger.check_memory(self.memory(), Some((peer, peer_memory)))?;
        ledger.open_stream(peer, protocol)?;
        Ok(StreamGuard {
            manager: self.clone(),
            peer,
            protocol: protocol.to_owned(),
        })
    }

    /// Counts a circuit relayed through us for neighbour `from`.
    pub fn open_relayed_circuit(&self, from: PeerId) -> Result<CircuitGuard, ResourceError> {
        self.ledger().open_relayed_circuit(from)?;
        Ok(CircuitGuard {
            manager: self.clone(),
            peer: from,
            ending_here: false,
        })
    }

    /// Counts a relayed connection ending here, arriving through neighbour `relay`.
    pub fn open_circuit_ending_here(&self, relay: PeerId) -> Result<CircuitGuard, ResourceError> {
        self.ledger().open_circuit_ending_here(relay)?;
        Ok(CircuitGuard {
            manager: self.clone(),
            peer: relay,
            ending_here: true,
        })
    }

    /// A gauge for the held memory of one connection with `peer`, counted in the system
    /// and peer totals.
    pub(crate) fn memory_gauge(&self, peer: PeerId) -> MemoryGauge {
        MemoryGauge {
            manager: self.clone(),
            peer,
            held: AtomicU64::new(0),
        }
    }
}

/// An inbound handshake's slot, given back when dropped.
#[derive(Debug)]
pub struct HandshakeGuard {
    manager: ResourceManager,
    ticket: u64,
    evicted: CancellationToken,
}

impl HandshakeGuard {
    /// Completes when a newer handshake took this one's slot: the handshake must stop.
    pub async fn evicted(&self) {
        self.evicted.cancelled().await
    }
}

impl Drop for HandshakeGuard {
    fn drop(&mut self) {
        self.manager.ledger().close_handshake(self.ticket);
        self.manager
            .inner
            .handshakes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.ticket);
    }
}

/// A connection counted in its scopes, given back when dropped.
#[derive(Debug)]
pub struct ConnectionGuard {
    manager: ResourceManager,
    key: ConnectionKey,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.manager.ledger().close_connection(&self.key);
    }
}

/// An inbound stream counted in its scopes, given back when dropped.
#[derive(Debug)]
pub struct StreamGuard {
    manager: ResourceManager,
    peer: PeerId,
    protocol: String,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.manager
            .ledger()
            .close_stream(self.peer, &self.protocol);
    }
}

/// A circuit (relayed through us, or ending here) counted, given back when dropped.
#[derive(Debug)]
pub struct CircuitGuard {
    manager: ResourceManager,
    peer: PeerId,
    ending_here: bool,
}

impl Drop for CircuitGuard {
    fn drop(&mut self) {
        let mut ledger = self.manager.ledger();
        if self.ending_here {
            ledger.close_circuit_ending_here(self.peer);
        } else {
            ledger.close_relayed_circuit(self.peer);
        }
    }
}

/// The bytes one connection holds, kept by its driver and added into the manager's
/// system and peer totals when it changes (it changes when a receive buffer is added or
/// let go, not per read: the driver reports after every read, and an unchanged value
/// costs one atomic swap).
#[derive(Debug)]
pub(crate) struct MemoryGauge {
    manager: ResourceManager,
    peer: PeerId,
    held: AtomicU64,
}

impl MemoryGauge {
    /// Records that the connection now holds `bytes`.
    pub(crate) fn set(&self, bytes: u64) {
        let before = self.held.swap(bytes, Ordering::Relaxed);
        if before == bytes {
            return;
        }
        let total = &self.manager.inner.memory;
        if bytes >= before {
            total.fetch_add(bytes - before, Ordering::Relaxed);
        } else {
            total.fetch_sub(before - bytes, Ordering::Relaxed);
        }
        let mut peers = self
            .manager
            .inner
            .peer_memory
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let entry = peers.entry(self.peer).or_insert(0);
        *entry = (*entry + bytes).saturating_sub(before);
        if *entry == 0 {
            peers.remove(&self.peer);
        }
    }

    /// What the connection holds now.
    pub(crate) fn get(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }
}

impl Drop for MemoryGauge {
    fn drop(&mut self) {
        self.set(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pheromone_core::identity::Keypair;

    #[test]
    fn gauges_add_up_per_peer_and_in_total_and_give_back_on_drop() {
        let manager = ResourceManager::new(ResourceLimits::for_memory(8 << 30));
        let (a, b) = (
            Keypair::from_seed([1; 32]).peer_id(),
            Keypair::from_seed([2; 32]).peer_id(),
        );
        let a1 = manager.memory_gauge(a);
        let a2 = manager.memory_gauge(a);
        let b1 = manager.memory_gauge(b);
        a1.set(100);
        a2.set(50);
        b1.set(7);
        a1.set(30);
        assert_eq!(manager.peer_memory(&a), 80);
        assert_eq!(manager.peer_memory(&b), 7);
        assert_eq!(manager.memory(), 87);
        drop((a1, a2));
        assert_eq!(manager.peer_memory(&a), 0);
        assert_eq!(manager.memory(), 7);
        // At the peer's memory limit, its new streams are refused, naming the scope.
        let limit = manager.limits().max_memory_per_peer;
        b1.set(limit);
        let err = manager
            .open_stream(b, "/x", manager.peer_memory(&b))
            .unwrap_err();
        assert_eq!(
            (err.scope, err.resource),
            (Scope::Peer(b), Resource::Memory)
        );
    }
}
