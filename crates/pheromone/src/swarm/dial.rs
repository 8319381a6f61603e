//! Getting a connection to a peer: the pooled one, the dial in progress (shared by every
//! caller), or a new dial at each address the peer book knows, then the fallback (the
//! addresses the DHT finds, then a relayed connection).
//!
//! Dials run on tasks of their own, so a caller that gives up does not cancel a dial the
//! others wait for. A peer's addresses are raced the Happy Eyeballs way (RFC 8305): QUIC
//! ones first, each next one started when the attempts before it have neither succeeded
//! nor all failed within [`SwarmConfig::happy_eyeballs_delay`](super::SwarmConfig).

use super::error::ConnectError;
use super::pool::DialFuture;
use super::{ConnectionMode, Inner, Swarm};
use crate::connection::Connection;
use futures::FutureExt;
use pheromone_core::addr::Multiaddr;
use pheromone_core::identity::PeerId;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Tries per call: a connection replaced as soon as it was made costs one, a lost race one
/// more.
const ATTEMPTS: usize = 4;

impl Swarm {
    /// Waits until `peer` has a long-mode connection, at most `limit`; whether it has.
    pub async fn wait_connected(&self, peer: &PeerId, limit: Duration) -> bool {
        self.inner.pool.wait_installed(peer, limit).await
    }
}

impl Inner {
    /// The peer's long-mode connection: the pooled one, or the result of the (shared) dial.
    pub(super) async fn connection_to(
        self: &Arc<Self>,
        peer: PeerId,
    ) -> Result<Connection, ConnectError> {
        for _ in 0..ATTEMPTS {
            if let Some(conn) = self.pool.current(&peer) {
                return Ok(conn);
            }
            if self.is_closed() {
                return Err(ConnectError::Closed);
            }
            let id = self.next_dial.fetch_add(1, Ordering::Relaxed);
            let dial = self.pool.dial(peer, id, || self.spawn_dial(peer, id, None));
            let conn = dial.await?;
            // The dialled connection may have lost to one the peer dialled meanwhile;
            // whichever won is the pool's current one.
            if let Some(current) = self.pool.current(&peer) {
                return Ok(current);
            }
            if !conn.is_going_away() {
                return Ok(conn);
            }
        }
        Err(ConnectError::ConnectionLost {
            peer,
            reason: format!("every connection to {peer} closed as soon as it was made"),
        })
    }

    /// Starts the one dial to `peer` on a task of its own: at `addrs` alone when given,
    /// otherwise everywhere the swarm can think of.
    fn spawn_dial(
        self: &Arc<Self>,
        peer: PeerId,
        id: u64,
        addrs: Option<Vec<Multiaddr>>,
    ) -> DialFuture {
        let inner = self.clone();
        let task = self.tasks.spawn(async move {
            let result = match addrs {
                Some(addrs) => inner.dial_addrs(peer, &addrs).await,
                None => inner.dial(peer).await,
            };
            if let Ok(conn) = &result {
                inner.adopt(conn.clone(), true);
            }
            inner.pool.end_dial(&peer, id);
            result
        });
        async move {
            task.await.unwrap_or_else(|e| {
                Err(ConnectError::ConnectionLost {
                    peer,
                    reason: format!("dial task failed: {e}"),
                })
            })
        }
        .boxed()
        .shared()
    }

    /// Dials `peer` at each address we know for it until one works; failing that, at the
    /// addresses the fallback finds; failing that, through the fallback's relay.
    async fn dial(&self, peer: PeerId) -> Result<Connection, ConnectError> {
        let tried = self.book().addresses(&peer);
        let direct = self.dial_addrs(peer, &tried).await;
        let Err(mut direct_error) = direct else {
            return direct;
        };
        let Some(fallback) = self.fallback() else {
            return Err(direct_error);
        };
        let found = fallback.find_addrs(peer).await;
        let fresh: Vec<Multiaddr> = found
            .iter()
            .filter_map(|a| a.clone().without_p2p().with_p2p(peer).ok())
            .filter(|a| !tried.contains(a))
            .collect();
        if !fresh.is_empty() {
            tracing::debug!(%peer, addrs = fresh.len(), "the DHT found addresses");
            match self.dial_addrs(peer, &fresh).await {
                Ok(conn) => return Ok(conn),
                Err(ConnectError::NoAddress { .. }) => {}
                Err(e) => direct_error = e,
            }
        }
        let Some(relayed) = fallback.relay(peer) else {
            return Err(direct_error);
        };
        match relayed.await {
            Ok(conn) => Ok(conn),
            Err(source) => {
                tracing::debug!(%peer, error = %source, "relayed dial failed");
                Err(match direct_error {
                    ConnectError::NoAddress { .. } => ConnectError::Unreachable { peer, source },
                    other => other,
                })
            }
        }
    }

    /// A connection to `peer` at `addrs` alone (never the fallback): the current one, the
    /// dial in progress, or a dial of `addrs`, registered with the pool so that others
    /// join it.
    pub(super) async fn connect_direct(
        self: &Arc<Self>,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
    ) -> Result<Connection, ConnectError> {
        if let Some(conn) = self.pool.current(&peer) {
            return Ok(conn);
        }
        if self.is_closed() {
            return Err(ConnectError::Closed);
        }
        let addrs: Vec<Multiaddr> = addrs
            .into_iter()
            .filter_map(|a| a.without_p2p().with_p2p(peer).ok())
            .collect();
        if self.config.mode == ConnectionMode::Short {
            let conn = self.dial_addrs(peer, &addrs).await?;
            self.adopt(conn.clone(), false);
            return Ok(conn);
        }
        let id = self.next_dial.fetch_add(1, Ordering::Relaxed);
        let dial = self
            .pool
            .dial(peer, id, || self.spawn_dial(peer, id, Some(addrs)));
        let conn = dial.await?;
        Ok(self.pool.current(&peer).unwrap_or(conn))
    }

    /// Dials `peer` at `addrs` until one works, Happy Eyeballs style: in [`dial_order`],
    /// the next attempt starting when the running ones have not succeeded within the
    /// delay, or at once when they all failed. The first connection made wins; attempts
    /// still running are dropped (before their handshakes end, so nothing is adopted).
    async fn dial_addrs(
        &self,
        peer: PeerId,
        addrs: &[Multiaddr],
    ) -> Result<Connection, ConnectError> {
        let mut last = ConnectError::NoAddress { peer };
        let mut waiting: std::collections::VecDeque<Multiaddr> = dial_order(addrs).into();
        let mut running = futures::stream::FuturesUnordered::new();
        let attempt = |addr: Multiaddr| {
            // Boxed: the upgrade's state is kilobytes, and every future that may dial
            // would otherwise carry (and move) it.
            Box::pin(async move {
                let result = self.endpoint.dial(&addr).await;
                (addr, result)
            })
        };
        loop {
            if running.is_empty() {
                let Some(addr) = waiting.pop_front() else {
                    return Err(last);
                };
                running.push(attempt(addr));
            }
            let delay = tokio::time::sleep(self.config.happy_eyeballs_delay);
            tokio::select! {
                Some((addr, result)) = futures::StreamExt::next(&mut running) => match result {
                    Ok(conn) => return Ok(conn),
                    Err(e) => {
                        tracing::debug!(%peer, %addr, error = %e, "dial failed");
                        last = ConnectError::from_dial(peer, e);
                        if let Some(next) = waiting.pop_front() {
                            running.push(attempt(next));
                        }
                    }
                },
                _ = delay, if !waiting.is_empty() => {
                    if let Some(next) = waiting.pop_front() {
                        tracing::debug!(%peer, addr = %next, "no connection yet; racing the next address");
                        running.push(attempt(next));
                    }
                }
            }
        }
    }

    /// A connection of its own for one short-mode call; adopted (tracked, identified) but
    /// never pooled.
    pub(super) async fn dial_short(
        self: &Arc<Self>,
        peer: PeerId,
    ) -> Result<Connection, ConnectError> {
        if self.is_closed() {
            return Err(ConnectError::Closed);
        }
        let conn = self.dial(peer).await?;
        self.adopt(conn.clone(), false);
        Ok(conn)
    }
}

/// The order a peer's addresses are tried in: QUIC first (one round trip less, and what
/// hole punching needs), then the rest, each group in the order given; duplicates once.
pub(crate) fn dial_order(addrs: &[Multiaddr]) -> Vec<Multiaddr> {
    let mut ordered: Vec<Multiaddr> = Vec::with_capacity(addrs.len());
    for addr in addrs
        .iter()
        .filter(|a| a.is_quic())
        .chain(addrs.iter().filter(|a| !a.is_quic()))
    {
        if !ordered.contains(addr) {
            ordered.push(addr.clone());
        }
    }
    ordered
}

#[cfg(test)]
mod tests {
    use super::dial_order;
    use pheromone_core::addr::Multiaddr;

    #[test]
    fn quic_addresses_go_first_and_the_rest_keep_their_order() {
        let parse = |s: &str| s.parse::<Multiaddr>().expect("addr");
        let given = [
            parse("/ip4/10.0.0.1/tcp/4001"),
            parse("/ip4/10.0.0.2/udp/4001/quic-v1"),
            parse("/ip6/::1/tcp/4001"),
            parse("/ip4/10.0.0.1/tcp/4001"),
            parse("/ip4/10.0.0.1/udp/4001/quic-v1"),
        ];
        let order: Vec<String> = dial_order(&given).iter().map(ToString::to_string).collect();
        assert_eq!(
            order,
            [
                "/ip4/10.0.0.2/udp/4001/quic-v1",
                "/ip4/10.0.0.1/udp/4001/quic-v1",
                "/ip4/10.0.0.1/tcp/4001",
                "/ip6/::1/tcp/4001",
            ]
        );
    }
}
