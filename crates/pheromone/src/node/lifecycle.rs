//! Connections entering and leaving the node: the endpoint hook that adopts inbound
//! connections, installing a connection in the pool (closing the loser of a simultaneous
//! open), identify to learn names, the watcher that notices a close, the idle sweeper, and
//! adding routes.
//!
//! Tasks here hold a `Weak` to the node where they may outlive a call, so dropping the
//! last [`Node`](super::Node) handle ends them.

use super::config::ConnectionMode;
use super::pool::Offer;
use super::{Inner, NodeError, NodeEvent, RouteInfo};
use crate::connection::{Connection, Direction};
use futures::FutureExt;
use pheromone_core::addr::Multiaddr;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// A peer identified less than this long ago is not asked again on a new connection.
const REIDENTIFY_AFTER: Duration = Duration::from_secs(30);
/// Most attempts at identifying a route's peer when its connection keeps being replaced.
const IDENTIFY_ATTEMPTS: usize = 3;

/// Installs the endpoint hook and starts the idle sweeper.
pub(super) fn start(inner: &Arc<Inner>) {
    let weak = Arc::downgrade(inner);
    inner
        .endpoint
        .set_connection_hook(Arc::new(move |conn: &Connection| {
            // Our own dials adopt their connections themselves, knowing their mode.
            if conn.info().direction == Direction::Inbound {
                if let Some(inner) = weak.upgrade() {
                    let pooled = inner.config.mode == ConnectionMode::Long;
                    inner.adopt(conn.clone(), pooled);
                }
            }
        }));
    if let Some(idle) = inner.config.idle_timeout {
        let weak = Arc::downgrade(inner);
        let cancel = inner.cancel.clone();
        inner.tasks.spawn(sweep(weak, cancel, idle));
    }
}

/// Closes connections that stayed unused for `idle`.
async fn sweep(weak: Weak<Inner>, cancel: tokio_util::sync::CancellationToken, idle: Duration) {
    let tick = (idle / 4).clamp(Duration::from_millis(10), Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        let Some(inner) = weak.upgrade() else { return };
        for conn in inner.pool.idle(idle, Instant::now()) {
            tracing::debug!(peer = %conn.remote_peer(), id = %conn.id(), ?idle, "closing idle connection");
            inner.tasks.spawn(async move { conn.close().await });
        }
    }
}

impl Inner {
    /// Takes charge of a connection: tracks it until it closes and, in long mode, offers it
    /// as its peer's connection. Learns the peer's name if we do not know it yet.
    pub(super) fn adopt(self: &Arc<Self>, conn: Connection, pooled: bool) {
        if self.is_closed() {
            self.tasks.spawn(async move { conn.close().await });
            return;
        }
        self.pool.track(&conn, Instant::now());
        let weak = Arc::downgrade(self);
        let watched = conn.clone();
        self.tasks.spawn(async move {
            let error = watched.closed().await;
            if let Some(inner) = weak.upgrade() {
                inner.on_closed(&watched, &error);
            }
        });
        if pooled {
            self.install(&conn);
        } else {
            self.start_identify(&conn);
        }
    }

    /// Offers a connection to the pool and acts on the decision.
    fn install(self: &Arc<Self>, conn: &Connection) {
        let peer = conn.remote_peer();
        match self.pool.offer(conn) {
            Offer::Installed { replaced, first } => {
                if let Some(old) = replaced {
                    tracing::debug!(%peer, kept = %conn.id(), closed = %old.id(), "replacing connection");
                    self.emit(NodeEvent::ConnectionReplaced {
                        peer,
                        kept: conn.id(),
                        closed: old.id(),
                    });
                    self.tasks.spawn(async move { old.close().await });
                }
                if first {
                    let info = conn.info();
                    self.emit(NodeEvent::PeerConnected {
                        peer,
                        addr: info.remote_addr,
                        direction: info.direction,
                    });
                }
                self.start_identify(conn);
            }
            Offer::Rejected { current } => {
                tracing::debug!(%peer, kept = %current.id(), closed = %conn.id(), "keeping the existing connection");
                self.emit(NodeEvent::ConnectionReplaced {
                    peer,
                    kept: current.id(),
                    closed: conn.id(),
                });
                let conn = conn.clone();
                self.tasks.spawn(async move { conn.close().await });
            }
            Offer::Ignored => {}
        }
    }

    fn on_closed(&self, conn: &Connection, error: &crate::connection::ConnectionError) {
        tracing::debug!(peer = %conn.remote_peer(), id = %conn.id(), %error, "node connection closed");
        self.identifying
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&conn.id());
        if self.pool.untrack(conn).disconnected {
            self.emit(NodeEvent::PeerDisconnected {
                peer: conn.remote_peer(),
            });
        }
    }

    /// Asks the peer on `conn` who it is, unless we learned it recently; handlers of
    /// requests on `conn` wait for the answer before running.
    fn start_identify(self: &Arc<Self>, conn: &Connection) {
        let peer = conn.remote_peer();
        let fresh = self
            .lock_directory()
            .known(&peer)
            .is_some_and(|k| k.identified_at.elapsed() < REIDENTIFY_AFTER);
        if fresh {
            return;
        }
        let weak = Arc::downgrade(self);
        let target = conn.clone();
        let exchange = async move {
            let Some(inner) = weak.upgrade() else { return };
            if let Err(e) = inner.identify(&target).await {
                tracing::debug!(peer = %target.remote_peer(), error = %e, "identify failed");
            }
            inner
                .identifying
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&target.id());
        }
        .boxed()
        .shared();
        self.identifying
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(conn.id(), exchange.clone());
        self.tasks.spawn(exchange);
    }

    /// Runs identify on `conn` and records what the peer said.
    pub(super) async fn identify(&self, conn: &Connection) -> Result<Option<String>, String> {
        let info = self
            .endpoint
            .identify(conn)
            .await
            .map_err(|e| e.to_string())?;
        let peer = conn.remote_peer();
        let name = info.pheromone_name.clone();
        let changed = self.lock_directory().learn(
            peer,
            info.pheromone_name,
            info.listen_addrs,
            Instant::now(),
        );
        if changed {
            tracing::debug!(%peer, name = ?name, "peer identified");
            self.emit(NodeEvent::PeerIdentified {
                peer,
                name: name.clone(),
            });
        }
        Ok(name)
    }

    /// [`Node::add_route`](super::Node::add_route).
    pub(super) async fn add_route(
        self: &Arc<Self>,
        name: String,
        addr: Multiaddr,
    ) -> Result<RouteInfo, NodeError> {
        if self.is_closed() {
            return Err(NodeError::Closed);
        }
        if addr.peer_id() == Some(self.endpoint.peer_id()) {
            return Err(NodeError::SelfRoute {
                addr: addr.to_string(),
            });
        }
        let dial_error = |e| NodeError::Dial {
            addr: addr.to_string(),
            source: Arc::new(e),
        };
        // A route to a peer we are connected to reuses the connection.
        let existing = addr
            .peer_id()
            .and_then(|p| self.pool.current(&p))
            .filter(|_| self.config.mode == ConnectionMode::Long);
        let fresh = existing.is_none();
        let conn = match existing {
            Some(conn) => conn,
            None => Box::pin(self.endpoint.dial(&addr))
                .await
                .map_err(dial_error)?,
        };
        let peer = conn.remote_peer();
        if peer == self.endpoint.peer_id() {
            conn.close().await;
            return Err(NodeError::SelfRoute {
                addr: addr.to_string(),
            });
        }
        let result = match self.config.mode {
            ConnectionMode::Long => {
                if fresh {
                    self.adopt(conn.clone(), true);
                }
                self.identify_route(&conn).await
            }
            ConnectionMode::Short => {
                let identified = self.identify(&conn).await;
                conn.close().await;
                identified
            }
        };
        result.map_err(|reason| NodeError::Identify { peer, reason })?;
        let addr = addr
            .without_p2p()
            .with_p2p(peer)
            .map_err(|e| NodeError::BadAddress {
                addr: peer.to_string(),
                reason: e.to_string(),
            })?;
        Ok(self.record_route(peer, name, addr))
    }

    /// Identifies a freshly dialled long-mode peer over whichever of its connections won,
    /// retrying when the one asked is closed under us (a simultaneous open).
    async fn identify_route(
        self: &Arc<Self>,
        dialled: &Connection,
    ) -> Result<Option<String>, String> {
        let peer = dialled.remote_peer();
        let mut last = String::from("no connection");
        for _ in 0..IDENTIFY_ATTEMPTS {
            let conn = match self.pool.current(&peer) {
                Some(c) => c,
                None if !dialled.is_going_away() => dialled.clone(),
                None => {
                    let wait = self.config.endpoint.handshake_timeout;
                    if !self.pool.wait_installed(&peer, wait).await {
                        return Err(format!("every connection to {peer} closed"));
                    }
                    continue;
                }
            };
            match self.identify_joined(&conn).await {
                Ok(name) => return Ok(name),
                Err(e) if conn.is_going_away() => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    /// Identifies the peer on `conn`, joining the exchange [`start_identify`] already runs
    /// on it instead of asking a second time: a connection carries one identify request.
    /// Asks anew only if that exchange failed.
    ///
    /// [`start_identify`]: Inner::start_identify
    async fn identify_joined(&self, conn: &Connection) -> Result<Option<String>, String> {
        let running = self
            .identifying
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&conn.id())
            .cloned();
        if let Some(exchange) = running {
            exchange.await;
            let peer = conn.remote_peer();
            let directory = self.lock_directory();
            if let Some(known) = directory
                .known(&peer)
                .filter(|k| k.identified_at.elapsed() < REIDENTIFY_AFTER)
            {
                return Ok(known.name.as_deref().map(str::to_owned));
            }
        }
        self.identify(conn).await
    }
}
