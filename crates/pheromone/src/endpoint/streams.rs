//! The endpoint's streams: serving every inbound stream (negotiated against the handler
//! table, then handed to its handler) and opening outbound ones, with ping and identify
//! on top. An `impl` block of [`Endpoint`]; the connections themselves are `mod.rs`'s.

use super::{Endpoint, EndpointEvent, OpenStreamError};
use crate::connection::{Connection, Stream};
use crate::negotiate;
use crate::protocols::{identify, ping};
use pheromone_core::identify::IdentifyInfo;
use std::sync::Arc;
use std::time::Duration;

impl Endpoint {
    /// Serves the connection's inbound streams until it closes; `held` (its grants from
    /// the resource manager) is given back after it is removed from the table.
    pub(super) async fn serve_inbound_streams(self, conn: Connection, held: super::Held) {
        loop {
            let stream = tokio::select! {
                _ = self.inner.cancel.cancelled() => break,
                s = conn.accept_stream() => s,
            };
            let stream = match stream {
                Ok(s) => s,
                Err(_) => break,
            };
            let this = self.clone();
            let stream_conn = conn.clone();
            let mut serve: futures::future::BoxFuture<'static, ()> =
                Box::pin(async move { this.handle_inbound_stream(stream_conn, stream).await });
            // Most streams (a request whose bytes came with the SYN, answered at once) finish
            // in their first poll: run it here, and give a stream a task of its own only when
            // it has to wait. A spawn per stream would hand every request to the scheduler
            // (and often to the other worker thread). The future re-registers its wakers with
            // the new task on the task's first poll.
            let first = std::future::poll_fn(|cx| {
                std::task::Poll::Ready(std::panic::catch_unwind(std::panic::AssertUnwindSafe(
                    || serve.as_mut().poll(cx),
                )))
            })
            .await;
            match first {
                Ok(std::task::Poll::Ready(())) => {}
                Ok(std::task::Poll::Pending) => {
                    self.inner.tasks.spawn(serve);
                }
                Err(_) => {
                    tracing::error!(peer = %conn.remote_peer(), "inbound stream handler panicked")
                }
            }
        }
        let error = conn.closed().await;
        let info = conn.info().clone();
        self.inner
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&info.id);
        self.inner.counters.connection_closed(&info);
        drop(held);
        tracing::debug!(peer = %info.remote_peer, id = %info.id, %error, "connection closed");
        let _ = self.inner.events.send(EndpointEvent::ConnectionClosed {
            info: Box::new(info),
            error,
        });
    }

    async fn handle_inbound_stream(&self, conn: Connection, mut stream: Stream) {
        let peer = conn.remote_peer();
        let handlers = &self.inner.handlers;
        let timeout = self.inner.config.stream_negotiation_timeout;
        let negotiated = crate::deadline::within(
            timeout,
            negotiate::listen_on(&mut stream, handlers.protocols(), |proto| {
                handlers.allows(proto, &peer)
            }),
        )
        .await;
        // A dialer that gave up after our `na` gets an orderly end, so that it can still
        // read the `na`; a stream that broke the protocol or stalled is reset.
        let protocol = match negotiated {
            Ok(Ok(protocol)) => protocol,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "inbound stream negotiation failed");
                if !matches!(
                    e,
                    negotiate::NegotiateError::Negotiation(
                        pheromone_core::multistream::NegotiationError::PeerGaveUp { .. }
                    )
                ) {
                    stream.reset();
                }
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, ?timeout, "inbound stream negotiation timed out");
                stream.reset();
                return;
            }
        };
        let resources = &self.inner.resources;
        let _counted = match resources.open_stream(peer, &protocol, self.peer_memory(&peer)) {
            Ok(guard) => guard,
            Err(e) => {
                resources.refused(&e, &format_args!("{protocol} stream of {peer}"));
                stream.reset();
                return;
            }
        };
        match handlers.handler(&protocol) {
            Some(handler) => handler(conn, stream).await,
            None => tracing::debug!(%peer, protocol, "handler removed during negotiation"),
        }
    }

    /// Opens a stream to the connection's peer for `protocol`. The negotiation is lazy: the
    /// stream is returned at once and the peer's confirmation is checked on the first read.
    /// Where identify said the peer speaks `protocol`, the first write follows the proposal
    /// at once, so a request costs no extra round trip; otherwise it waits for the
    /// confirmation (see [`negotiate::dialer_lazy`]).
    pub async fn open_stream(
        &self,
        conn: &Connection,
        protocol: &str,
    ) -> Result<Stream, OpenStreamError> {
        let stream = conn.open_stream()?;
        Ok(negotiate::dialer_lazy(stream, protocol).await?)
    }

    /// Opens a stream for `protocol` and waits for the peer to accept it, so that a refusal
    /// is reported here rather than on the first read.
    pub async fn open_stream_confirmed(
        &self,
        conn: &Connection,
        protocol: &str,
    ) -> Result<Stream, OpenStreamError> {
        let stream = conn.open_stream()?;
        let timeout = self.inner.config.stream_negotiation_timeout;
        let stream = tokio::time::timeout(timeout, negotiate::dialer(stream, protocol))
            .await
            .map_err(|_| OpenStreamError::Timeout {
                protocol: protocol.to_owned(),
                timeout,
            })??;
        Ok(stream)
    }

    /// Pings the connection's peer over `/ipfs/ping/1.0.0`; the round-trip time.
    pub async fn ping(&self, conn: &Connection) -> Result<Duration, OpenStreamError> {
        let mut stream = self.open_stream(conn, ping::PROTOCOL).await?;
        let rtt = ping::ping(&mut stream, self.inner.config.stream_negotiation_timeout)
            .await
            .map_err(|e| OpenStreamError::Protocol {
                protocol: ping::PROTOCOL.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(rtt)
    }

    /// Asks the connection's peer who it is over `/ipfs/id/1.0.0`. The answer's public key
    /// must match the connection's authenticated peer.
    pub async fn identify(&self, conn: &Connection) -> Result<IdentifyInfo, OpenStreamError> {
        let stream = self.open_stream(conn, identify::PROTOCOL).await?;
        let timeout = self.inner.config.stream_negotiation_timeout;
        let fail = |reason: String| OpenStreamError::Protocol {
            protocol: identify::PROTOCOL.to_owned(),
            reason,
        };
        let info = tokio::time::timeout(timeout, identify::receive(stream))
            .await
            .map_err(|_| fail(format!("no reply within {timeout:?}")))?
            .map_err(|e| fail(e.to_string()))?;
        if info.public_key.to_peer_id() != conn.remote_peer() {
            return Err(fail(format!(
                "identify names {} but the connection is authenticated as {}",
                info.public_key.to_peer_id(),
                conn.remote_peer()
            )));
        }
        let protocols: Arc<[String]> = Arc::from(info.protocols.clone());
        conn.set_remote_protocols(protocols.clone());
        self.inner
            .protocol_book
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(conn.remote_peer(), protocols);
        Ok(info)
    }

    /// What we tell a peer in identify on `conn`.
    pub fn identify_info(&self, conn: &Connection) -> IdentifyInfo {
        IdentifyInfo {
            public_key: self.inner.keypair.public(),
            listen_addrs: self
                .listen_addrs()
                .into_iter()
                .map(|a| a.without_p2p())
                .collect(),
            protocols: self.protocols(),
            observed_addr: Some(conn.info().remote_multiaddr()),
            protocol_version: self.inner.config.protocol_version.clone(),
            agent_version: self.inner.config.agent_version.clone(),
            pheromone_name: self.inner.config.node_name.clone(),
        }
    }
}
