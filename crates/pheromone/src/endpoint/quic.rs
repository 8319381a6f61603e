//! The endpoint's QUIC side: listening on a UDP socket, accepting and dialling QUIC
//! connections. An `impl` block of [`Endpoint`]; admission and adoption are `mod.rs`'s, the
//! same calls the TCP path makes, so limits (and whatever later guards admission) apply to
//! both transports alike.
//!
//! quinn runs the handshake; what is ours is the order: admit (a handshake slot, the
//! connection limits; a stateless retry first when many handshakes are pending), handshake
//! within the endpoint's handshake timeout, read the peer ID the verifier proved, adopt.

use super::{DialError, Endpoint};
use crate::connection::quic::QuicShared;
use crate::connection::{
    Connection, ConnectionId, ConnectionInfo, Direction, Security, Transport, TransportCipher,
};
use crate::transport::quic::QuicDialError;
use crate::transport::tls;
use crate::upgrade::{UpgradeError, Upgraded};
use futures::FutureExt;
use pheromone_core::addr::{Multiaddr, Protocol};
use pheromone_core::identity::PeerId;
use rustls::pki_types::CertificateDer;
use std::net::SocketAddr;
use std::sync::Arc;

impl Endpoint {
    /// Serves [`GOAWAY_PROTOCOL`](crate::connection::quic::GOAWAY_PROTOCOL): the peer is
    /// closing this QUIC connection, so no new stream goes to it.
    pub(super) fn register_quic_goaway(&self) {
        self.set_handler(
            crate::connection::quic::GOAWAY_PROTOCOL,
            Arc::new(|conn, _stream| {
                tracing::debug!(peer = %conn.remote_peer(), id = %conn.id(), "the peer is going away");
                conn.peer_going_away();
                futures::future::ready(()).boxed()
            }),
            crate::endpoint::Access::Open,
        );
    }

    pub(super) fn listen_quic(&self, addr: SocketAddr) -> Result<Multiaddr, DialError> {
        let (endpoint, bound) = self.inner.quic.listen(addr)?;
        self.add_listen_addr(bound, Transport::Quic);
        let this = self.clone();
        self.inner
            .tasks
            .spawn(async move { this.quic_accept_loop(endpoint, bound).await });
        tracing::info!(addr = %bound, peer = %self.peer_id(), "listening on QUIC");
        Ok(self.p2p_addr(bound, Transport::Quic))
    }

    async fn quic_accept_loop(self, endpoint: quinn::Endpoint, bound: SocketAddr) {
        loop {
            let incoming = tokio::select! {
                _ = self.inner.cancel.cancelled() => return,
                incoming = endpoint.accept() => incoming,
            };
            let Some(incoming) = incoming else {
                return; // the endpoint was closed
            };
            let remote = incoming.remote_address();
            // Under load, make a new peer prove its address before it costs us a handshake:
            // a flood of spoofed Initials then costs one stateless packet each.
            if !incoming.remote_address_validated()
                && self.pending_handshakes() >= self.inner.quic.config().retry_above_pending
            {
                if let Err(e) = incoming.retry() {
                    tracing::debug!(%remote, error = %e, "QUIC retry failed");
                }
                continue;
            }
            let Some(slot) = self.admit_inbound(remote, Transport::Quic) else {
                incoming.refuse();
                continue;
            };
            let connecting = match incoming.accept() {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(%remote, error = %e, "QUIC accept failed");
                    continue;
                }
            };
            let this = self.clone();
            self.inner.tasks.spawn(async move {
                let started = std::time::Instant::now();
                let handshake =
                    this.quic_handshake(connecting, remote, bound, Direction::Inbound, None);
                let result = tokio::select! {
                    result = handshake => result,
                    _ = slot.evicted() => {
                        // Dropping the half-made connection closes it.
                        tracing::debug!(%remote, "inbound QUIC handshake evicted by a newer one");
                        return;
                    }
                };
                drop(slot);
                let counters = &this.inner.counters;
                counters.handshake(Direction::Inbound, started.elapsed(), &result);
                match result {
                    Ok(upgraded) => {
                        let _ = this.adopt(upgraded, None);
                    }
                    Err(e) => tracing::debug!(%remote, error = %e, "inbound QUIC handshake failed"),
                }
            });
        }
    }

    /// Dials a `/…/udp/PORT/quic-v1` address (by IP or DNS name).
    pub(super) async fn dial_quic_addr(
        &self,
        addr: &Multiaddr,
        expected: Option<PeerId>,
    ) -> Result<Connection, DialError> {
        let targets = self
            .resolve_quic(addr)
            .await
            .inspect_err(|e| self.inner.counters.dial_failed(e))?;
        let mut last_error = None;
        for target in targets {
            match self.dial_quic(target, expected).await {
                Ok(conn) => return Ok(conn),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| DialError::UnsupportedAddress {
            addr: addr.to_string(),
        }))
    }

    /// Dials one UDP socket address over QUIC, optionally requiring the remote to be
    /// `expected`.
    pub async fn dial_quic(
        &self,
        addr: SocketAddr,
        expected: Option<PeerId>,
    ) -> Result<Connection, DialError> {
        let result = self.dial_quic_inner(addr, expected).await;
        if let Err(e) = &result {
            self.inner.counters.dial_failed(e);
        }
        result
    }

    async fn dial_quic_inner(
        &self,
        addr: SocketAddr,
        expected: Option<PeerId>,
    ) -> Result<Connection, DialError> {
        self.admit_outbound(addr, Transport::Quic)?;
        let started = std::time::Instant::now();
        let (connecting, local) = match self.inner.quic.connect(addr, expected) {
            Ok(c) => c,
            Err(QuicDialError::Transport(e)) => return Err(e.into()),
            Err(QuicDialError::Connect(reason)) => {
                return Err(UpgradeError::Quic { addr, reason }.into())
            }
        };
        let upgraded = self
            .quic_handshake(connecting, addr, local, Direction::Outbound, expected)
            .await;
        let counters = &self.inner.counters;
        counters.handshake(Direction::Outbound, started.elapsed(), &upgraded);
        Ok(self.adopt(upgraded?, None)?)
    }

    /// Runs a QUIC handshake to its end within the handshake timeout and builds the
    /// connection handle.
    async fn quic_handshake(
        &self,
        connecting: quinn::Connecting,
        addr: SocketAddr,
        local: SocketAddr,
        direction: Direction,
        expected: Option<PeerId>,
    ) -> Result<Upgraded, UpgradeError> {
        let timeout = self.inner.config.handshake_timeout;
        let conn = tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| UpgradeError::Timeout { addr, timeout })?
            .map_err(|e| UpgradeError::Quic {
                addr,
                reason: e.to_string(),
            })?;
        let certs = conn
            .peer_identity()
            .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok())
            .ok_or_else(|| UpgradeError::Quic {
                addr,
                reason: "the peer presented no certificate".into(),
            })?;
        let key = tls::peer_of(&certs).map_err(|e| UpgradeError::Quic {
            addr,
            reason: e.to_string(),
        })?;
        let remote_peer = key.to_peer_id();
        if let Some(expected) = expected {
            // The verifier checked this already; a second look costs nothing.
            if expected != remote_peer {
                conn.close(1u32.into(), b"wrong peer");
                return Err(UpgradeError::Quic {
                    addr,
                    reason: format!("expected {expected}, got {remote_peer}"),
                });
            }
        }
        let local_addr = match conn.local_ip() {
            Some(ip) => SocketAddr::new(ip, local.port()),
            None => local,
        };
        let cipher = if self.inner.quic.prefers_aes_gcm() {
            TransportCipher::AesGcm
        } else {
            TransportCipher::ChaChaPoly
        };
        let info = ConnectionInfo {
            id: ConnectionId::next(),
            remote_peer,
            remote_public_key: key,
            remote_addr: conn.remote_address(),
            local_addr,
            direction,
            relay: None,
            cipher,
            transport: Transport::Quic,
            security: Security::Tls,
        };
        let shared = Arc::new(QuicShared::new(
            conn,
            remote_peer,
            self.inner.config.connection.close_grace,
            self.inner.config.quic.max_concurrent_streams as usize,
        ));
        Ok(Upgraded {
            connection: Connection::quic(shared, info),
            driver: None,
        })
    }

    async fn resolve_quic(&self, addr: &Multiaddr) -> Result<Vec<SocketAddr>, DialError> {
        if let Some(sa) = addr.quic_socket_addr() {
            return Ok(vec![sa]);
        }
        let unsupported = || DialError::UnsupportedAddress {
            addr: addr.to_string(),
        };
        let mut host = None;
        let mut port = None;
        for proto in addr.iter() {
            match proto {
                Protocol::Dns(h) => host = Some((h.clone(), true, true)),
                Protocol::Dns4(h) => host = Some((h.clone(), true, false)),
                Protocol::Dns6(h) => host = Some((h.clone(), false, true)),
                Protocol::Udp(p) => port = Some(*p),
                _ => {}
            }
        }
        let ((host, v4, v6), port) = host.zip(port).ok_or_else(unsupported)?;
        Ok(self.inner.transport.resolve(&host, port, v4, v6).await?)
    }
}
