//! Discovery: Kademlia and the connection manager of one node, composed into one
//! [`Overlay`] so that the rules tying them together run in the core, where the simulator
//! runs them too.
//!
//! - Kademlia's table additions become the manager's dial candidates (grouped by bucket)
//!   and its evictions leave them ([`ConnectionManager::follow_kad`]).
//! - A pinned (bootstrap or static) peer the manager connects to goes into Kademlia's table
//!   at the address dialled, and a bootstrap peer met again after an outage with a thin
//!   table starts a new bootstrap lookup.
//! - The operator vouches for pinned peers: one failed request does not remove them from
//!   the table (they are put back), the manager redials them if they are really gone.
//!
//! Neighbours are the peers that speak Kademlia's protocol: the manager keeps the node
//! among its DHT peers, and peers that do not speak the DHT are neither counted nor pruned.
//! No IO, no clock.

use crate::addr::Multiaddr;
use crate::connmgr::{self, ConnectionManager};
use crate::identity::PeerId;
use crate::kad::{self, Kademlia};
use crate::overlay::{
    DialFailure, DialId, InboundId, Neighbour, Output, Overlay, RequestFailure, RequestId, Wire,
};
use std::collections::VecDeque;
use std::time::Instant;

/// What discovery tells the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Kademlia's news (lookups finished, table changes).
    Kad(kad::Event),
    /// The connection manager's news (dials, prunes).
    Manager(connmgr::Event),
}

/// Kademlia and the connection manager of one node; see the module docs. Calling
/// contract: the [`Overlay`] trait's; commands go to [`Discovery::kad_mut`] (lookups) and
/// [`Discovery::manager_mut`].
#[derive(Debug)]
pub struct Discovery {
    kad: Kademlia,
    manager: ConnectionManager,
    outputs: VecDeque<Output<Event>>,
    /// The latest input's time: commands given straight to the parts carry no `now`, and
    /// their outputs are moved over at the next `poll_output`.
    last_now: Instant,
}

impl Discovery {
    /// Kademlia and a manager for the same node. The pinned peers whose address names
    /// them (`/p2p/`) go into the table at once; the others once a dial tells who they are.
    pub fn new(mut kad: Kademlia, manager: ConnectionManager, now: Instant) -> Self {
        let config = manager.config().clone();
        for addr in config.bootstrap.iter().chain(&config.static_peers) {
            if let Some(peer) = addr.peer_id() {
                if let Err(e) = kad.add_address(now, peer, addr.clone().without_p2p()) {
                    tracing::warn!(%addr, error = %e, "pinned address refused");
                }
            }
        }
        let mut discovery = Self {
            kad,
            manager,
            outputs: VecDeque::new(),
            last_now: now,
        };
        discovery.pump(now);
        discovery
    }

    /// Kademlia, read-only.
    pub fn kad(&self) -> &Kademlia {
        &self.kad
    }

    /// Kademlia, for commands (`bootstrap`, `find_peer`, `add_address`, `remove_peer`).
    pub fn kad_mut(&mut self) -> &mut Kademlia {
        &mut self.kad
    }

    /// The connection manager, read-only.
    pub fn manager(&self) -> &ConnectionManager {
        &self.manager
    }

    /// The connection manager, for commands (`protect`, `learn`).
    pub fn manager_mut(&mut self) -> &mut ConnectionManager {
        &mut self.manager
    }

    /// Moves both machines' outputs into ours, applying the rules between them.
    fn pump(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
        let now = self.last_now;
        loop {
            let mut moved = false;
            while let Some(out) = self.kad.poll_output() {
                moved = true;
                match out {
                    Output::Event(event) => {
                        self.manager.follow_kad(now, &event);
                        if let kad::Event::PeerEvicted { peer, .. } = &event {
                            self.keep_pinned(now, *peer);
                        }
                        self.outputs.push_back(Output::Event(Event::Kad(event)));
                    }
                    other => self.outputs.push_back(other.map_event(Event::Kad)),
                }
            }
            while let Some(out) = self.manager.poll_output() {
                moved = true;
                match out {
                    Output::Event(event) => {
                        if let connmgr::Event::PinnedConnected {
                            peer,
                            addr,
                            bootstrap,
                        } = &event
                        {
                            let _ = self.kad.add_address(now, *peer, addr.clone());
                            // Back from an outage with a thin table: join again.
                            if *bootstrap && self.kad.table().len() < self.kad.config().k {
                                self.kad.bootstrap(now);
                            }
                        }
                        self.outputs.push_back(Output::Event(Event::Manager(event)));
                    }
                    other => self.outputs.push_back(other.map_event(Event::Manager)),
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// Puts an evicted pinned peer back: the operator vouches for it.
    fn keep_pinned(&mut self, now: Instant, peer: PeerId) {
        let addr: Option<Multiaddr> = self.manager.pinned_addr(&peer);
        if let Some(addr) = addr {
            let _ = self.kad.add_address(now, peer, addr.without_p2p());
        }
    }
}

impl Overlay for Discovery {
    type Event = Event;
    type Error = kad::KadError;

    fn protocol(&self) -> Option<&str> {
        self.kad.protocol()
    }

    fn wire(&self) -> Wire {
        Wire::Requests
    }

    fn max_message_len(&self) -> usize {
        self.kad.max_message_len()
    }

    fn local_peer_id(&self) -> PeerId {
        self.kad.local_peer_id()
    }

    fn neighbour_up(&mut self, now: Instant, neighbour: Neighbour) {
        if !neighbour.relayed {
            self.manager.neighbour_up(now, neighbour.clone());
        }
        self.kad.neighbour_up(now, neighbour);
        self.pump(now);
    }

    fn neighbour_down(&mut self, now: Instant, peer: PeerId) {
        self.manager.neighbour_down(now, peer);
        self.kad.neighbour_down(now, peer);
        self.pump(now);
    }

    fn handle_frame(
        &mut self,
        now: Instant,
        from: PeerId,
        frame: &[u8],
    ) -> Result<(), Self::Error> {
        self.kad.handle_frame(now, from, frame)
    }

    fn handle_request(
        &mut self,
        now: Instant,
        from: PeerId,
        id: InboundId,
        request: &[u8],
    ) -> Result<(), Self::Error> {
        let result = self.kad.handle_request(now, from, id, request);
        self.pump(now);
        result
    }

    fn handle_response(
        &mut self,
        now: Instant,
        id: RequestId,
        response: Result<&[u8], RequestFailure>,
    ) -> Result<(), Self::Error> {
        let result = self.kad.handle_response(now, id, response);
        self.pump(now);
        result
    }

    fn handle_dial_result(
        &mut self,
        now: Instant,
        id: DialId,
        result: Result<PeerId, DialFailure>,
    ) {
        self.manager.handle_dial_result(now, id, result);
        self.pump(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.kad.poll_timeout().is_some_and(|at| at <= now) {
            self.kad.handle_timeout(now);
        }
        if self.manager.poll_timeout().is_some_and(|at| at <= now) {
            self.manager.handle_timeout(now);
        }
        self.pump(now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        [self.kad.poll_timeout(), self.manager.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    fn poll_output(&mut self) -> Option<Output<Event>> {
        if self.outputs.is_empty() {
            self.pump(self.last_now);
        }
        self.outputs.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Keypair;

    #[allow(clippy::disallowed_methods)]
    fn test_now() -> Instant {
        Instant::now()
    }

    fn peer(i: u8) -> PeerId {
        Keypair::from_seed([i; 32]).peer_id()
    }

    fn addr(i: u8) -> Multiaddr {
        Multiaddr::from_socket_addr(([20, 0, 0, i], 4001).into())
    }

    fn discovery(now: Instant, bootstrap: Vec<Multiaddr>) -> Discovery {
        let kad = Kademlia::new(peer(0), kad::Config::default(), now, 1);
        let config = connmgr::Config {
            bootstrap,
            low_watermark: 2,
            ..connmgr::Config::default()
        };
        let manager = ConnectionManager::new(peer(0), config, now, 1);
        Discovery::new(kad, manager, now)
    }

    fn drain(d: &mut Discovery) -> Vec<Output<Event>> {
        std::iter::from_fn(|| d.poll_output()).collect()
    }

    #[test]
    fn a_pinned_peer_without_its_id_joins_the_table_once_it_answers() {
        let now = test_now();
        let mut d = discovery(now, vec![addr(1)]);
        d.handle_timeout(now);
        let dial = drain(&mut d)
            .into_iter()
            .find_map(|o| match o {
                Output::Dial {
                    id,
                    peer: None,
                    addrs,
                } => Some((id, addrs)),
                _ => None,
            })
            .expect("the bootstrap address is dialled");
        assert_eq!(dial.1, vec![addr(1)]);
        assert!(d.kad().table().get(&peer(1)).is_none());
        d.handle_dial_result(now, dial.0, Ok(peer(1)));
        assert_eq!(
            d.kad().table().get(&peer(1)).map(|e| e.addrs.clone()),
            Some(vec![addr(1)])
        );
        // A thin table after a bootstrap peer came back: a bootstrap lookup starts.
        assert!(drain(&mut d)
            .iter()
            .any(|o| matches!(o, Output::Request { to, .. } if *to == peer(1))));
    }

    #[test]
    fn kad_neighbours_become_dial_candidates_and_pinned_peers_stay_in_the_table() {
        let now = test_now();
        let pinned = addr(1).with_p2p(peer(1)).expect("p2p");
        let mut d = discovery(now, vec![pinned]);
        assert!(
            d.kad().table().get(&peer(1)).is_some(),
            "named pinned peers go in at once"
        );
        d.neighbour_up(
            now,
            Neighbour::direct(peer(2), vec![addr(2)], crate::overlay::Direction::Outbound),
        );
        // The pinned peer and the neighbour, both in the table.
        assert_eq!(d.manager().candidates(), 2);
        assert_eq!(d.manager().connected(), 1);
        // A pinned peer that fails a request is evicted, and put back.
        d.kad_mut().bootstrap(now);
        let asked = drain(&mut d)
            .into_iter()
            .find_map(|o| match o {
                Output::Request { id, to, .. } if to == peer(1) => Some(id),
                _ => None,
            })
            .expect("the pinned peer is asked");
        d.handle_response(now, asked, Err(RequestFailure::Dial))
            .expect("a failure is an input");
        let events = drain(&mut d);
        assert!(events.iter().any(|o| matches!(
            o,
            Output::Event(Event::Kad(kad::Event::PeerEvicted { peer: p, .. })) if *p == peer(1)
        )));
        assert!(d.kad().table().get(&peer(1)).is_some());
        d.neighbour_down(now, peer(2));
        assert_eq!(d.manager().connected(), 0);
    }
}
