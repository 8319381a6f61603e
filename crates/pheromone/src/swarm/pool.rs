//! The connection pool: every connection the node uses, and in long mode the one
//! connection per peer that requests go over, with dial de-duplication.
//!
//! Simultaneous open is settled by [`prefers_new`], a rule both ends evaluate alone from
//! what each knows about a connection (who dialled it): of two live connections between
//! the same peers, keep the one dialled by the smaller peer ID; of two dialled by the same
//! peer, keep the newer (that peer only dials when it believes the older one is gone); a
//! direct connection always beats a relayed one. The
//! pool only decides; the swarm closes the loser gracefully, so requests already on it
//! finish there.
//!
//! A std mutex guards the tables; it is never held across an await. Entries are removed
//! when connections close and when a peer has neither a connection nor a dial, so the
//! tables return to empty.

use super::error::ConnectError;
use crate::connection::{Connection, ConnectionId, ConnectionInfo, Direction};
use crate::FastMap;
use futures::future::{BoxFuture, Shared};
use pheromone_core::identity::PeerId;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// What a dial resolves to; shared by every caller waiting on it.
pub(super) type DialFuture = Shared<BoxFuture<'static, Result<Connection, ConnectError>>>;

/// Whether `new` should replace `old` as the connection to their common peer, seen from
/// `local`. Both peers reach the same answer about the same two connections.
pub(super) fn prefers_new(local: PeerId, old: &ConnectionInfo, new: &ConnectionInfo) -> bool {
    let dialer = |c: &ConnectionInfo| match c.direction {
        Direction::Outbound => local,
        Direction::Inbound => c.remote_peer,
    };
    // A direct link beats a relayed circuit whoever dialled: it is cheaper for everyone.
    if old.relay.is_some() != new.relay.is_some() {
        return new.relay.is_none();
    }
    let (old_dialer, new_dialer) = (dialer(old), dialer(new));
    if old_dialer == new_dialer {
        true
    } else {
        new_dialer < old_dialer
    }
}

/// What [`Pool::offer`] decided.
#[derive(Debug)]
pub(super) enum Offer {
    /// The offered connection is now the peer's. `replaced` lost to it and must be closed;
    /// `first` says the peer had no connection before (it just connected).
    Installed {
        replaced: Option<Connection>,
        first: bool,
    },
    /// The peer's current connection wins; the offered one must be closed.
    Rejected { current: Connection },
    /// Already the current connection, or already closed: nothing to do.
    Ignored,
}

/// What [`Pool::untrack`] found.
#[derive(Debug, Default)]
pub(super) struct Untracked {
    /// The peer has no usable connection left and had been announced as connected.
    pub(super) disconnected: bool,
}

/// Sizes of the pool's tables, for stats.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct PoolSizes {
    pub(super) connections: usize,
    pub(super) peers: usize,
    pub(super) connected_peers: usize,
    pub(super) dials: usize,
    pub(super) streams: usize,
}

#[derive(Debug)]
struct Tracked {
    conn: Connection,
    /// The connection's stream counter when last looked at, and when it last moved (or
    /// had streams open): activity is read from the connection, so requests pay nothing.
    last_count: u64,
    last_active: Instant,
}

#[derive(Default)]
struct Slot {
    current: Option<Connection>,
    dialing: Option<(u64, DialFuture)>,
    /// `PeerConnected` was reported and `PeerDisconnected` not yet.
    announced: bool,
}

impl Slot {
    fn live(&self) -> Option<&Connection> {
        self.current.as_ref().filter(|c| !c.is_going_away())
    }

    fn is_empty(&self) -> bool {
        self.current.is_none() && self.dialing.is_none() && !self.announced
    }
}

#[derive(Default)]
struct State {
    conns: FastMap<ConnectionId, Tracked>,
    peers: FastMap<PeerId, Slot>,
}

/// Connections by id and, in long mode, the chosen one by peer.
pub(super) struct Pool {
    local: PeerId,
    state: Mutex<State>,
    /// Notified whenever a connection becomes some peer's current one.
    installed: Notify,
}

impl Pool {
    pub(super) fn new(local: PeerId) -> Self {
        Self {
            local,
            state: Mutex::new(State::default()),
            installed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts tracking a connection (for idle closing and stats).
    pub(super) fn track(&self, conn: &Connection, now: Instant) {
        self.lock().conns.insert(
            conn.id(),
            Tracked {
                conn: conn.clone(),
                last_count: conn.streams_total(),
                last_active: now,
            },
        );
    }

    /// A tracked connection closed: forget it.
    pub(super) fn untrack(&self, conn: &Connection) -> Untracked {
        let mut state = self.lock();
        state.conns.remove(&conn.id());
        let peer = conn.remote_peer();
        let mut result = Untracked::default();
        if let Some(slot) = state.peers.get_mut(&peer) {
            if slot.current.as_ref().map(Connection::id) == Some(conn.id()) {
                slot.current = None;
            }
            if slot.announced && slot.live().is_none() {
                slot.announced = false;
                result.disconnected = true;
            }
            if slot.is_empty() {
                state.peers.remove(&peer);
            }
        }
        result
    }

    /// Offers a connection as `peer`'s long-mode connection.
    pub(super) fn offer(&self, conn: &Connection) -> Offer {
        if conn.is_going_away() {
            return Offer::Ignored;
        }
        let mut state = self.lock();
        let slot = state.peers.entry(conn.remote_peer()).or_default();
        let offer = match slot.live() {
            Some(current) if current.id() == conn.id() => return Offer::Ignored,
            Some(current) if !prefers_new(self.local, current.info(), conn.info()) => {
                return Offer::Rejected {
                    current: current.clone(),
                }
            }
            _ => Offer::Installed {
                replaced: slot.current.replace(conn.clone()),
                first: !slot.announced,
            },
        };
        slot.announced = true;
        drop(state);
        self.installed.notify_waiters();
        offer
    }

    /// The peer's usable connection.
    pub(super) fn current(&self, peer: &PeerId) -> Option<Connection> {
        self.lock().peers.get(peer)?.live().cloned()
    }

    /// Every tracked connection to `peer`, current or not.
    pub(super) fn connections_to(&self, peer: &PeerId) -> Vec<Connection> {
        self.lock()
            .conns
            .values()
            .filter(|t| t.conn.remote_peer() == *peer)
            .map(|t| t.conn.clone())
            .collect()
    }

    /// Whether `peer` has a usable long-mode connection.
    pub(super) fn is_connected(&self, peer: &PeerId) -> bool {
        self.lock().peers.get(peer).and_then(Slot::live).is_some()
    }

    /// Joins the dial to `peer` in progress, or starts one with `start(id)`.
    pub(super) fn dial(
        &self,
        peer: PeerId,
        id: u64,
        start: impl FnOnce() -> DialFuture,
    ) -> DialFuture {
        let mut state = self.lock();
        let slot = state.peers.entry(peer).or_default();
        if let Some((_, dial)) = &slot.dialing {
            return dial.clone();
        }
        let dial = start();
        slot.dialing = Some((id, dial.clone()));
        dial
    }

    /// The dial `id` to `peer` is over (its connection, if any, was offered already).
    pub(super) fn end_dial(&self, peer: &PeerId, id: u64) {
        let mut state = self.lock();
        if let Some(slot) = state.peers.get_mut(peer) {
            if slot.dialing.as_ref().map(|(i, _)| *i) == Some(id) {
                slot.dialing = None;
            }
            if slot.is_empty() {
                state.peers.remove(peer);
            }
        }
    }

    /// Waits until some connection is installed, at most `limit`.
    pub(super) async fn wait_installed(&self, peer: &PeerId, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.installed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_connected(peer) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return false;
            }
        }
    }

    /// Connections that had no stream open and opened none for `idle`, as far as calls
    /// every fraction of `idle` can tell.
    pub(super) fn idle(&self, idle: Duration, now: Instant) -> Vec<Connection> {
        let mut idle_conns = Vec::new();
        for t in self.lock().conns.values_mut() {
            let count = t.conn.streams_total();
            if count != t.last_count || t.conn.num_streams() > 0 {
                t.last_count = count;
                t.last_active = now;
            } else if now.saturating_duration_since(t.last_active) >= idle
                && !t.conn.is_going_away()
            {
                idle_conns.push(t.conn.clone());
            }
        }
        idle_conns
    }

    pub(super) fn sizes(&self) -> PoolSizes {
        let state = self.lock();
        PoolSizes {
            connections: state.conns.len(),
            peers: state.peers.len(),
            connected_peers: state.peers.values().filter(|s| s.live().is_some()).count(),
            dials: state.peers.values().filter(|s| s.dialing.is_some()).count(),
            streams: state.conns.values().map(|t| t.conn.num_streams()).sum(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pheromone_core::identity::Keypair;

    fn info(remote: PeerId, direction: Direction) -> ConnectionInfo {
        let addr = "127.0.0.1:1".parse().expect("addr");
        ConnectionInfo {
            id: ConnectionId::next(),
            remote_peer: remote,
            remote_public_key: Keypair::from_seed([9; 32]).public(),
            remote_addr: addr,
            local_addr: addr,
            direction,
            relay: None,
            cipher: pheromone_core::noise::TransportCipher::ChaChaPoly,
            transport: crate::connection::Transport::Tcp,
            security: crate::connection::Security::Noise,
        }
    }

    #[test]
    fn both_sides_keep_the_connection_dialled_by_the_smaller_peer() {
        let mut ids = [1u8, 2].map(|s| Keypair::from_seed([s; 32]).peer_id());
        ids.sort();
        let [small, big] = ids;
        // c1 dialled by `small`, c2 dialled by `big`, seen from each side in both orders.
        let small_c1 = info(big, Direction::Outbound);
        let small_c2 = info(big, Direction::Inbound);
        let big_c1 = info(small, Direction::Inbound);
        let big_c2 = info(small, Direction::Outbound);
        assert!(prefers_new(small, &small_c2, &small_c1));
        assert!(!prefers_new(small, &small_c1, &small_c2));
        assert!(prefers_new(big, &big_c2, &big_c1));
        assert!(!prefers_new(big, &big_c1, &big_c2));
    }

    #[test]
    fn a_redial_by_the_same_peer_replaces_the_old_connection() {
        let a = Keypair::from_seed([1; 32]).peer_id();
        let b = Keypair::from_seed([2; 32]).peer_id();
        assert!(prefers_new(
            a,
            &info(b, Direction::Inbound),
            &info(b, Direction::Inbound)
        ));
        assert!(prefers_new(
            a,
            &info(b, Direction::Outbound),
            &info(b, Direction::Outbound)
        ));
    }
}
