//! The table of protocols this endpoint answers on inbound streams, with per-protocol access.
//!
//! Negotiation asks [`Router::allows`] for each proposal, so a protocol a peer may not use
//! is refused with `na` before any handler runs. Handlers and allow-lists can change while
//! the endpoint runs; lookups copy an `Arc` out and never hold the lock across an await.

use crate::connection::{Connection, Stream};
use futures::future::BoxFuture;
use pheromone_core::identity::PeerId;
use std::collections::{HashMap, HashSet};
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

/// Protocol name → handler and access rule.
#[derive(Default, Clone)]
pub(crate) struct Router {
    entries: Arc<RwLock<HashMap<String, Entry>>>,
}

impl Router {
    pub(crate) fn insert(&self, protocol: String, handler: StreamHandler, access: Access) {
        self.write().insert(protocol, Entry { handler, access });
    }

    pub(crate) fn remove(&self, protocol: &str) -> bool {
        self.write().remove(protocol).is_some()
    }

    /// Replaces the access rule of a registered protocol; false if it is not registered.
    pub(crate) fn set_access(&self, protocol: &str, access: Access) -> bool {
        match self.write().get_mut(protocol) {
            Some(entry) => {
                entry.access = access;
                true
            }
            None => false,
        }
    }

    /// Whether `peer` may open `protocol`, logging refusals of registered protocols.
    pub(crate) fn allows(&self, protocol: &str, peer: &PeerId) -> bool {
        match self.read().get(protocol) {
            Some(entry) if entry.access.allows(peer) => true,
            Some(_) => {
                tracing::info!(%peer, protocol, "refused: peer is not on the protocol's allow-list");
                false
            }
            None => false,
        }
    }

    pub(crate) fn handler(&self, protocol: &str) -> Option<StreamHandler> {
        self.read().get(protocol).map(|e| e.handler.clone())
    }

    /// Names of the protocols open to everyone (what identify advertises).
    pub(crate) fn protocols(&self) -> Vec<String> {
        let mut names: Vec<String> = self.read().keys().cloned().collect();
        names.sort();
        names
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Entry>> {
        self.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Entry>> {
        self.entries.write().unwrap_or_else(|e| e.into_inner())
    }
}
