//! The daemon's part in keeping the mesh: the peer store fed and written, the peers it
//! dialled kept linked (see `redial.rs`), `hosts`, the tight keep-alive on each peer's
//! long-mode direct link (the one the overlays run on), and what SIGHUP reloads. An
//! `impl Net` block beside the core of [`Net`] in `mod.rs`; no protocol logic here.

use super::super::config::{Mode, Settings};
use super::super::peerstore::PeerStore;
use super::Net;
use crate::control_proto::HostInfo;
use pheromone::PeerId;
use std::time::Duration;

/// Keep-alive on the links the overlays use (a peer's one long-mode direct link): a ping
/// every 2 s, the link given up after 5 s without an answer, so a link that dies without a
/// reset (cable pulled, `ip link set down`) is noticed within 7 s and routes move on.
/// Other connections keep the endpoint's (looser) keep-alive.
pub const NEIGHBOUR_KEEPALIVE: (Duration, Duration) =
    (Duration::from_secs(2), Duration::from_secs(5));

impl Net {
    /// The peers met, as remembered on disk.
    pub fn peer_store(&self) -> &PeerStore {
        &self.inner.peer_store
    }

    /// Keeps `peer` linked from now on (long mode; at most [`crate::daemon::redial::MAX_KEPT`]
    /// peers); `join` joins the DHT through it once reached.
    pub fn keep_linked(&self, peer: PeerId, join: bool) {
        if self.inner.mode != Mode::Long || self.inner.cancel.is_cancelled() {
            return;
        }
        {
            let mut book = self.book();
            if book.kept.len() >= super::super::redial::MAX_KEPT || !book.kept.insert(peer) {
                return;
            }
        }
        let cancel = self.inner.cancel.clone();
        self.inner
            .tasks
            .spawn(super::super::redial::keep(self.clone(), peer, join, cancel));
    }

    /// Runs `task` on the daemon's tracker (closing the node waits for it).
    pub fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.inner.tasks.spawn(task);
    }

    /// Fires when the node starts closing.
    pub fn cancelled(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.inner.cancel.cancelled()
    }

    /// Writes the peer store a moment after it changes (so a burst of events is one
    /// write), and once more when the daemon stops.
    pub(super) async fn save_peer_store(self) {
        let store = self.inner.peer_store.clone();
        loop {
            let stop = tokio::select! {
                _ = self.inner.cancel.cancelled() => true,
                _ = store.changed() => false,
            };
            if !stop {
                tokio::select! {
                    _ = self.inner.cancel.cancelled() => {}
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
            let saving = store.clone();
            let saved = tokio::task::spawn_blocking(move || saving.save_if_changed()).await;
            if let Ok(Err(e)) = saved {
                tracing::warn!(error = %e, "cannot write the peer store");
            }
            if stop || self.inner.cancel.is_cancelled() {
                return;
            }
        }
    }

    /// What the peer store remembers, and how each peer is reached now.
    pub fn hosts(&self) -> Vec<HostInfo> {
        let routing = self.inner.node.routing();
        self.inner
            .peer_store
            .list()
            .into_iter()
            .map(|r| {
                let peer = r.peer_id.parse::<PeerId>().ok();
                let conns = peer.map(|p| self.live_connections(&p)).unwrap_or_default();
                let (reached, relay) = if conns.iter().any(|c| c.info().relay.is_none()) {
                    ("direct", None)
                } else if let Some(relay) = conns.iter().find_map(|c| c.info().relay) {
                    ("relay", Some(relay.to_string()))
                } else if let Some(hop) = peer
                    .and_then(|p| routing.and_then(|r| r.next_hop(&p)))
                    .filter(|hop| Some(hop.peer) != peer)
                {
                    ("relay", Some(hop.peer.to_string()))
                } else {
                    ("not_connected", None)
                };
                HostInfo {
                    name: peer.and_then(|p| self.peer_name(&p)).or(r.name),
                    peer_id: r.peer_id,
                    addrs: r.addrs,
                    last_seen: r.last_seen,
                    reached: reached.to_owned(),
                    relay,
                    successes: r.successes,
                    failures: r.failures,
                }
            })
            .collect()
    }

    /// Applies what SIGHUP re-read: the exec allow-list (for the next requests; commands
    /// running go on). Other settings need a restart, and the log says so.
    pub fn reload(&self, settings: &Settings) {
        let exec = self.inner.exec.lock().unwrap_or_else(|e| e.into_inner());
        match exec.as_ref() {
            Some(service) if service.is_enabled() => {
                service.set_allow(settings.exec_allow.clone());
                tracing::info!(
                    peers = settings.exec_allow.len(),
                    "SIGHUP: exec allow-list reloaded"
                );
            }
            _ if !settings.exec_allow.is_empty() => {
                tracing::warn!("SIGHUP: exec was off at start; restart the daemon to turn it on")
            }
            _ => tracing::info!("SIGHUP: reloaded; exec stays off"),
        }
    }

    /// Gives each peer's long-mode direct link (the one the overlays run on) the tight
    /// keep-alive of [`NEIGHBOUR_KEEPALIVE`] (or the endpoint's, when that is tighter).
    pub(super) async fn tighten_neighbour_keepalive(
        self,
        mut events: tokio::sync::broadcast::Receiver<pheromone::NodeEvent>,
        (interval, timeout): (Duration, Duration),
    ) {
        use pheromone::NodeEvent;
        loop {
            let event = tokio::select! {
                _ = self.inner.cancel.cancelled() => return,
                event = events.recv() => event,
            };
            let peer = match event {
                Ok(
                    NodeEvent::PeerConnected { peer, .. }
                    | NodeEvent::ConnectionReplaced { peer, .. },
                ) => peer,
                Ok(_) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    // Catch up on every current link rather than miss one.
                    for (conn, _) in self.inner.node.swarm().ready_connections() {
                        if conn.info().relay.is_none() {
                            conn.set_keepalive(Some(interval), timeout);
                        }
                    }
                    continue;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            if let Some(conn) = self.inner.node.swarm().current(&peer) {
                if conn.info().relay.is_none() && conn.set_keepalive(Some(interval), timeout) {
                    tracing::debug!(%peer, ?interval, ?timeout, "neighbour link keep-alive tightened");
                }
            }
        }
    }
}
