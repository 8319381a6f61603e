//! How the discovery service reaches peers and learns about connections: the [`Connector`]
//! seam between the service and whoever owns the connections.
//!
//! Standing alone on an [`Endpoint`], the service dials with the endpoint and asks identify
//! itself ([`EndpointConnector`]). Inside a node, the node's connector dials through the
//! node (so the pool adopts the connection), reads identify's answers from the node's
//! directory and protects the node's routes from pruning. Nothing here speaks kad.

use crate::connection::Connection;
use crate::endpoint::Endpoint;
use futures::future::{BoxFuture, Shared};
use futures::FutureExt;
use pheromone_core::addr::Multiaddr;
use pheromone_core::identity::PeerId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// What the discovery service needs from the owner of the connections.
pub(crate) trait Connector: Send + Sync + 'static {
    /// A live connection to `peer`: an existing one, or a dial of `addrs` (each carrying
    /// the peer's `/p2p/` suffix or not) one after the other.
    fn connect(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
    ) -> BoxFuture<'static, Result<Connection, String>>;

    /// Dials a bare address (a bootstrap peer given without `/p2p/`).
    fn dial_addr(&self, addr: Multiaddr) -> BoxFuture<'static, Result<Connection, String>>;

    /// The listen addresses the peer on `conn` announced (identify), or none.
    fn listen_addrs(&self, conn: Connection) -> BoxFuture<'static, Vec<Multiaddr>>;

    /// Addresses the DHT found for `peer`, for the owner to remember.
    fn learned(&self, _peer: PeerId, _addrs: &[Multiaddr]) {}

    /// Whether the owner wants `peer` kept connected whatever the watermarks say (a route
    /// the application added).
    fn protected(&self, _peer: &PeerId) -> bool {
        false
    }

    /// Whether the owner is using a connection to `peer` right now (requests or streams
    /// in flight), so that pruning it would hurt.
    fn in_use(&self, peer: &PeerId, conns: &[Connection]) -> bool {
        let _ = peer;
        conns.iter().any(|c| c.num_streams() > 0)
    }
}

/// Dials `addrs` one after the other with `endpoint` until one answers as `peer`.
pub(crate) async fn dial_each(
    endpoint: &Endpoint,
    peer: PeerId,
    addrs: &[Multiaddr],
) -> Result<Connection, String> {
    let mut last = format!("no address for {peer}");
    for addr in addrs {
        let Ok(addr) = addr.clone().with_p2p(peer) else {
            last = format!("{addr} names another peer");
            continue;
        };
        // Boxed: the upgrade's state is kilobytes and would bloat every caller's future.
        match Box::pin(endpoint.dial(&addr)).await {
            Ok(conn) => return Ok(conn),
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(last)
}

/// A live connection to `peer` the endpoint holds, direct ones first.
pub(crate) fn existing(endpoint: &Endpoint, peer: &PeerId) -> Option<Connection> {
    endpoint.direct_connection(peer).or_else(|| {
        endpoint
            .connections()
            .into_iter()
            .find(|c| c.remote_peer() == *peer && !c.is_closed() && !c.is_going_away())
    })
}

/// A dial shared by everyone who needs the same peer meanwhile.
type SharedDial = Shared<BoxFuture<'static, Result<Connection, String>>>;

/// The connector of a service standing alone on an endpoint. Concurrent dials to one peer
/// are merged: two connections to the same peer would only race each other.
pub(crate) struct EndpointConnector {
    pub(crate) endpoint: Endpoint,
    pub(crate) dials: Arc<Mutex<HashMap<PeerId, SharedDial>>>,
}

impl EndpointConnector {
    pub(crate) fn new(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            dials: Arc::default(),
        }
    }
}

impl Connector for EndpointConnector {
    fn connect(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
    ) -> BoxFuture<'static, Result<Connection, String>> {
        if let Some(conn) = existing(&self.endpoint, &peer) {
            return futures::future::ready(Ok(conn)).boxed();
        }
        let mut dials = self.dials.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(dial) = dials.get(&peer) {
            return dial.clone().boxed();
        }
        let endpoint = self.endpoint.clone();
        let table = self.dials.clone();
        let dial: SharedDial = async move {
            let result = dial_each(&endpoint, peer, &addrs).await;
            table
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&peer);
            result
        }
        .boxed()
        .shared();
        dials.insert(peer, dial.clone());
        dial.boxed()
    }

    fn dial_addr(&self, addr: Multiaddr) -> BoxFuture<'static, Result<Connection, String>> {
        let endpoint = self.endpoint.clone();
        async move { endpoint.dial(&addr).await.map_err(|e| e.to_string()) }.boxed()
    }

    fn listen_addrs(&self, conn: Connection) -> BoxFuture<'static, Vec<Multiaddr>> {
        let endpoint = self.endpoint.clone();
        async move {
            match endpoint.identify(&conn).await {
                Ok(info) => info.listen_addrs,
                Err(e) => {
                    tracing::debug!(peer = %conn.remote_peer(), error = %e, "identify for discovery failed");
                    Vec::new()
                }
            }
        }
        .boxed()
    }
}
