//! The table of protocols this endpoint answers on inbound streams, with per-protocol access.
//!
//! Negotiation asks [`HandlerTable::allows`] for each proposal, so a protocol a peer may not use
//! is refused with `na` before any handler runs. Handlers and allow-lists can change while
//! the endpoint runs; lookups copy an `Arc` out and never hold the lock across an await.

use crate::connection::{Connection, Stream};
use crate::throttle;
use futures::future::BoxFuture;
use pheromone_core::identity::PeerId;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// A handler for inbound streams of one protocol: gets the connection and the negotiated
/// stream, and owns the stream from then on.
pub type StreamHandler = Arc<dyn Fn(Connection, Stream) -> BoxFuture<'static, ()> + Send + Sync>;

/// Who may open streams of a protocol.
#[derive(Debug, Clone, Default)]
pub enum Access {
    /// Every authenticated peer.
    #[default]
    Open,
    /// Only the listed peers; others are refused during negotiation.
    AllowList(HashSet<PeerId>),
}

impl Access {
    /// Whether `peer` may use the protocol.
    pub fn allows(&self, peer: &PeerId) -> bool {
        match self {
            Access::Open => true,
            Access::AllowList(peers) => peers.contains(peer),
        }
    }
}

#[derive(Clone)]
struct Entry {
    handler: StreamHandler,
    access: Access,
}

/// The table and its names, sorted: every inbound stream's negotiation needs the list, so
/// it is kept ready instead of being collected and sorted per stream.
#[derive(Default)]
struct Table {
    entries: HashMap<String, Entry>,
    names: Vec<String>,
}

impl Table {
    fn refresh_names(&mut self) {
        self.names = self.entries.keys().cloned().collect();
        self.names.sort();
    }
}

/// Protocol name → handler and access rule.
#[derive(Default, Clone)]
pub(crate) struct HandlerTable {
    entries: Arc<RwLock<Table>>,
    /// Moves whenever a protocol's access rule (or the protocol itself) changes, so a
    /// handler that serves many requests on one stream re-checks access only then.
    generation: Arc<AtomicU64>,
}

impl HandlerTable {
    pub(crate) fn insert(&self, protocol: String, handler: StreamHandler, access: Access) {
        let mut table = self.write();
        if table
            .entries
            .insert(protocol, Entry { handler, access })
            .is_none()
        {
            table.refresh_names();
        }
    }

    pub(crate) fn remove(&self, protocol: &str) -> bool {
        let mut table = self.write();
        let removed = table.entries.remove(protocol).is_some();
        if removed {
            table.refresh_names();
            self.generation.fetch_add(1, Ordering::Release);
        }
        removed
    }

    /// Replaces the access rule of a registered protocol; false if it is not registered.
    pub(crate) fn set_access(&self, protocol: &str, access: Access) -> bool {
        match self.write().entries.get_mut(protocol) {
            Some(entry) => {
                entry.access = access;
                self.generation.fetch_add(1, Ordering::Release);
                true
            }
            None => false,
        }
    }

    /// Whether `peer` may open `protocol`, logging refusals of registered protocols.
    pub(crate) fn allows(&self, protocol: &str, peer: &PeerId) -> bool {
        match self.read().entries.get(protocol) {
            Some(entry) if entry.access.allows(peer) => true,
            Some(_) => {
                // Any peer can provoke this at will: throttled.
                if let Some(suppressed) = throttle::negotiation().allow(("allow-list", "refused")) {
                    tracing::info!(%peer, protocol, suppressed, "refused: peer is not on the protocol's allow-list");
                }
                false
            }
            None => false,
        }
    }

    /// The current access generation (see the field).
    pub(crate) fn access_generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(crate) fn handler(&self, protocol: &str) -> Option<StreamHandler> {
        self.read().entries.get(protocol).map(|e| e.handler.clone())
    }

    /// Names of the protocols open to everyone (what identify advertises).
    pub(crate) fn protocols(&self) -> Vec<String> {
        self.read().names.clone()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.entries.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod throttle_tests {
    use super::*;
    use std::sync::Mutex;

    /// Collects what a `fmt` subscriber writes.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_flood_of_refused_negotiations_logs_at_most_one_line() {
        let table = HandlerTable::default();
        let handler: StreamHandler = Arc::new(|_, _| Box::pin(async {}));
        let allowed = pheromone_core::identity::Keypair::from_seed([1; 32]).peer_id();
        let stranger = pheromone_core::identity::Keypair::from_seed([2; 32]).peer_id();
        table.insert("/x".into(), handler, Access::AllowList([allowed].into()));
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..100 {
                assert!(!table.allows("/x", &stranger));
            }
        });
        let text = String::from_utf8(lines.0.lock().expect("lock").clone()).expect("utf8");
        assert!(text.lines().count() <= 1, "{text}");
    }
}
