//! Adding contacts to the address book: dial, authenticate, learn the peer's announced
//! name from the identify exchange the swarm runs on the connection (never a second one),
//! and record the operator's alias.

use super::{Contact, Inner, NodeError, NodeEvent};
use crate::connection::Connection;
use crate::swarm::{ConnectionMode, ContactChange, PeerRecord};
use pheromone_core::addr::Multiaddr;
use std::sync::Arc;

/// Most attempts at identifying a contact when its connection keeps being replaced.
const IDENTIFY_ATTEMPTS: usize = 3;

impl Inner {
    /// [`Node::add_contact`](super::Node::add_contact).
    pub(super) async fn add_contact(
        self: &Arc<Self>,
        alias: String,
        addr: Multiaddr,
    ) -> Result<Contact, NodeError> {
        if self.is_closed() {
            return Err(NodeError::Closed);
        }
        if addr.peer_id() == Some(self.endpoint.peer_id()) {
            return Err(NodeError::SelfContact {
                addr: addr.to_string(),
            });
        }
        // A contact we are connected to reuses the connection.
        let existing = addr
            .peer_id()
            .and_then(|p| self.swarm.current(&p))
            .filter(|_| self.config.mode == ConnectionMode::Long);
        let conn = match existing {
            Some(conn) => conn,
            None => self
                .swarm
                .dial_addr(&addr)
                .await
                .map_err(|e| NodeError::Dial {
                    addr: addr.to_string(),
                    source: Arc::new(e),
                })?,
        };
        let peer = conn.remote_peer();
        if peer == self.endpoint.peer_id() {
            conn.close().await;
            return Err(NodeError::SelfContact {
                addr: addr.to_string(),
            });
        }
        let identified = self.identify_contact(&conn).await;
        if self.config.mode == ConnectionMode::Short {
            conn.close().await;
        }
        identified.map_err(|reason| NodeError::Identify { peer, reason })?;
        let addr = addr
            .without_p2p()
            .with_p2p(peer)
            .map_err(|e| NodeError::BadAddress {
                addr: peer.to_string(),
                reason: e.to_string(),
            })?;
        let (change, contact) = self.swarm.book().add_contact(peer, alias, addr);
        match change {
            ContactChange::Added => self.emit(NodeEvent::ContactAdded(contact.clone())),
            ContactChange::Updated => self.emit(NodeEvent::ContactUpdated(contact.clone())),
            ContactChange::Unchanged => {}
        }
        Ok(contact)
    }

    /// What the contact's peer said in identify: the exchange the swarm runs on the
    /// connection, or — when that connection lost a simultaneous open and closed under us
    /// — on the one that won, asking again only if the exchange failed.
    async fn identify_contact(&self, dialled: &Connection) -> Result<Arc<PeerRecord>, String> {
        let peer = dialled.remote_peer();
        let mut last = String::from("no connection");
        for _ in 0..IDENTIFY_ATTEMPTS {
            let conn = match self.swarm.current(&peer) {
                Some(c) => c,
                None if !dialled.is_going_away() => dialled.clone(),
                None => {
                    let wait = self.config.endpoint.handshake_timeout;
                    if !self.swarm.wait_connected(&peer, wait).await {
                        return Err(format!("every connection to {peer} closed"));
                    }
                    continue;
                }
            };
            if let Some(record) = self.swarm.identified(&conn).await {
                return Ok(record);
            }
            match self.swarm.identify(&conn).await {
                Ok(record) => return Ok(record),
                Err(e) if conn.is_going_away() => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }
}
