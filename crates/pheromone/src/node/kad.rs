//! The node's side of discovery: starting the service and the [`Connector`] through which it
//! reaches peers as the node does.
//!
//! Dials made for the DHT are adopted by the node (so the pool, identify and the overlay
//! protocols see them); listen addresses come from the node's identify exchanges; addresses
//! the DHT finds go into the node's directory; routes the application added and peers with
//! requests or streams in flight are never pruned. The connector holds a `Weak` to the node,
//! so the service never keeps a dropped node alive.

use super::config::ConnectionMode;
use super::Inner;
use crate::connection::Connection;
use crate::discovery::connector::{existing, Connector};
use crate::discovery::{Discovery, DiscoveryError, FoundPeer};
use futures::future::BoxFuture;
use futures::FutureExt;
use pheromone_core::addr::Multiaddr;
use pheromone_core::identity::PeerId;
use std::sync::{Arc, Weak};
use std::time::Instant;

/// Starts the node's discovery service if it is configured.
pub(super) fn start(inner: &Arc<Inner>) {
    let Some(config) = inner.config.discovery.clone() else {
        return;
    };
    let connector = Arc::new(NodeConnector {
        node: Arc::downgrade(inner),
    });
    let discovery = Discovery::spawn_with(&inner.endpoint, config, connector);
    let _ = inner.discovery.set(discovery);
}

struct NodeConnector {
    node: Weak<Inner>,
}

fn gone() -> String {
    "the node is closed".to_owned()
}

impl Connector for NodeConnector {
    fn connect(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
    ) -> BoxFuture<'static, Result<Connection, String>> {
        let node = self.node.clone();
        async move {
            let inner = node.upgrade().ok_or_else(gone)?;
            if let Some(conn) = inner.pool.current(&peer) {
                return Ok(conn);
            }
            if let Some(conn) = existing(&inner.endpoint, &peer) {
                return Ok(conn);
            }
            let addrs: Vec<Multiaddr> = addrs
                .into_iter()
                .filter_map(|a| a.without_p2p().with_p2p(peer).ok())
                .collect();
            inner
                .connect_direct(peer, addrs)
                .await
                .map_err(|e| e.to_string())
        }
        .boxed()
    }

    fn dial_addr(&self, addr: Multiaddr) -> BoxFuture<'static, Result<Connection, String>> {
        let node = self.node.clone();
        async move {
            let endpoint = node.upgrade().ok_or_else(gone)?.endpoint.clone();
            let conn = Box::pin(endpoint.dial(&addr))
                .await
                .map_err(|e| e.to_string())?;
            let inner = node.upgrade().ok_or_else(gone)?;
            inner.adopt(conn.clone(), inner.config.mode == ConnectionMode::Long);
            Ok(conn)
        }
        .boxed()
    }

    fn listen_addrs(&self, conn: Connection) -> BoxFuture<'static, Vec<Multiaddr>> {
        let node = self.node.clone();
        async move {
            let Some(inner) = node.upgrade() else {
                return Vec::new();
            };
            let running = inner
                .identifying
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&conn.id())
                .cloned();
            let running_was = running.is_some();
            if let Some(exchange) = running {
                exchange.await;
            }
            let peer = conn.remote_peer();
            let known = inner
                .lock_directory()
                .known(&peer)
                .map(|k| k.listen_addrs.clone());
            tracing::trace!(%peer, conn = %conn.id(), waited = running_was, known = ?known, "listen addrs for discovery");
            match known {
                Some(addrs) => addrs,
                // Identify was not started for this connection (the node adopts inbound
                // connections a moment later) or failed: ask now.
                None => match inner.identify(&conn).await {
                    Ok(_) => inner
                        .lock_directory()
                        .known(&peer)
                        .map(|k| k.listen_addrs.clone())
                        .unwrap_or_default(),
                    Err(e) => {
                        tracing::trace!(%peer, error = %e, "identify for discovery failed");
                        Vec::new()
                    }
                },
            }
        }
        .boxed()
    }

    fn learned(&self, peer: PeerId, addrs: &[Multiaddr]) {
        if let Some(inner) = self.node.upgrade() {
            inner
                .lock_directory()
                .learn_found(peer, addrs, Instant::now());
        }
    }

    fn protected(&self, peer: &PeerId) -> bool {
        self.node
            .upgrade()
            .is_some_and(|inner| inner.lock_directory().has_route(peer))
    }

    fn in_use(&self, peer: &PeerId, _conns: &[Connection]) -> bool {
        self.node.upgrade().is_some_and(|inner| {
            inner.pending_out.has(peer)
                || inner.pending_in.has(peer)
                || inner.streams_open.has(peer)
        })
    }
}

impl Inner {
    /// Asks the DHT for `peer`'s addresses (the step between known addresses and a relayed
    /// dial); what it finds is also recorded in the directory.
    pub(super) async fn find_in_dht(
        &self,
        peer: PeerId,
    ) -> Option<Result<FoundPeer, DiscoveryError>> {
        let discovery = self.discovery.get()?.clone();
        Some(discovery.find_peer(peer).await)
    }
}
