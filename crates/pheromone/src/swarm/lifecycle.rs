//! Connections entering and leaving the swarm: the endpoint hook that adopts inbound
//! connections, installing a connection in the pool (closing the loser of a simultaneous
//! open), the one identify exchange per connection, the watcher that notices a close, and
//! the idle sweeper.
//!
//! Tasks here hold a `Weak` to the swarm where they may outlive a call, so dropping the
//! last handle ends them.

use super::peers::PeerRecord;
use super::pool::Offer;
use super::{ConnectionMode, Inner, SwarmEvent};
use crate::connection::{Connection, Direction};
use futures::FutureExt;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// A peer identified less than this long ago is not asked again on a new connection: its
/// record is reused.
const REIDENTIFY_AFTER: Duration = Duration::from_secs(30);

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
    /// Takes charge of a connection: tracks it until it closes, identifies its peer and,
    /// in long mode, offers it as its peer's connection.
    pub(crate) fn adopt(self: &Arc<Self>, conn: Connection, pooled: bool) {
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
        }
        self.start_identify(&conn);
    }

    /// Offers a connection to the pool and acts on the decision.
    fn install(self: &Arc<Self>, conn: &Connection) {
        let peer = conn.remote_peer();
        match self.pool.offer(conn) {
            Offer::Installed { replaced, first } => {
                if let Some(old) = replaced {
                    tracing::debug!(%peer, kept = %conn.id(), closed = %old.id(), "replacing connection");
                    self.emit(SwarmEvent::ConnectionReplaced {
                        peer,
                        kept: conn.id(),
                        closed: old.id(),
                    });
                    self.tasks.spawn(async move { old.close().await });
                }
                if first {
                    let info = conn.info();
                    self.emit(SwarmEvent::PeerConnected {
                        peer,
                        addr: info.remote_addr,
                        direction: info.direction,
                    });
                }
            }
            Offer::Rejected { current } => {
                tracing::debug!(%peer, kept = %current.id(), closed = %conn.id(), "keeping the existing connection");
                self.emit(SwarmEvent::ConnectionReplaced {
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
        tracing::debug!(peer = %conn.remote_peer(), id = %conn.id(), %error, "connection closed");
        self.identifying
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&conn.id());
        self.ready
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&conn.id());
        if self.pool.untrack(conn).disconnected {
            self.emit(SwarmEvent::PeerDisconnected {
                peer: conn.remote_peer(),
            });
        }
        self.emit(SwarmEvent::ConnectionClosed {
            info: Box::new(conn.info().clone()),
        });
    }

    /// Identifies the peer on `conn` once (or reuses a record younger than
    /// [`REIDENTIFY_AFTER`]), then reports the connection ready. Handlers of requests on
    /// `conn` may wait for the answer with `Swarm::identified`.
    fn start_identify(self: &Arc<Self>, conn: &Connection) {
        let peer = conn.remote_peer();
        let fresh = self
            .book()
            .record(&peer)
            .filter(|(_, at)| at.elapsed() < REIDENTIFY_AFTER)
            .map(|(record, _)| record);
        if let Some(record) = fresh {
            self.ready(conn, Some(record));
            return;
        }
        let weak = Arc::downgrade(self);
        let target = conn.clone();
        let exchange = async move {
            let inner = weak.upgrade()?;
            let record = match inner.identify(&target).await {
                Ok(record) => Some(record),
                Err(e) => {
                    tracing::debug!(peer = %target.remote_peer(), error = %e, "identify failed");
                    None
                }
            };
            inner
                .identifying
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&target.id());
            inner.ready(&target, record.clone());
            record
        }
        .boxed()
        .shared();
        self.identifying
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(conn.id(), exchange.clone());
        self.tasks.spawn(exchange);
    }

    fn ready(&self, conn: &Connection, record: Option<Arc<PeerRecord>>) {
        if conn.is_closed() {
            return;
        }
        self.ready
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(conn.id(), (conn.clone(), record.clone()));
        self.emit(SwarmEvent::ConnectionReady {
            conn: conn.clone(),
            record,
        });
    }

    /// Runs identify on `conn` and records what the peer said.
    pub(crate) async fn identify(&self, conn: &Connection) -> Result<Arc<PeerRecord>, String> {
        let info = self
            .endpoint
            .identify(conn)
            .await
            .map_err(|e| e.to_string())?;
        let peer = conn.remote_peer();
        let record = PeerRecord::from_identify(peer, info);
        let name = record.name.as_ref().map(|n| n.to_string());
        let changed = self.book().identified(record, Instant::now());
        if changed {
            tracing::debug!(%peer, name = ?name, "peer identified");
            self.emit(SwarmEvent::PeerIdentified { peer, name });
        }
        self.book()
            .record(&peer)
            .map(|(r, _)| r)
            .ok_or_else(|| format!("the record of {peer} was evicted at once"))
    }
}
