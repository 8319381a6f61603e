//! The requester side: finding or making a connection to a peer, sending a request on it,
//! opening raw streams, and turning every failure into a [`DispatchError`] with context.
//!
//! Long mode takes the peer's pooled connection, or joins (or starts) the one dial to it.
//! A request that never reached the peer's application — the stream could not be opened,
//! or the peer reset it before accepting it because the connection is going away — is
//! retried on the peer's current connection: this is how requests issued while two
//! connections race, or while one is being replaced, all complete. A request that may have
//! been seen is never retried. Short mode dials per call and closes after the reply.

use super::error::DispatchError;
use super::reqresp::{self, RequestError, Response};
use super::{ConnectionMode, DispatchOptions, Inner, NodeStream, Target};
use crate::connection::{Connection, ConnectionError, Direction};
use crate::endpoint::OpenStreamError;
use crate::negotiate::NegotiateError;
use bytes::Bytes;
use pheromone_core::identity::PeerId;
use pheromone_core::multistream::NegotiationError;
use pheromone_core::reqresp::wire::{self, Status, WireError};
use std::sync::Arc;
use std::time::Duration;

/// Tries per call: a connection replaced mid-call costs one, a lost race one more.
const ATTEMPTS: usize = 4;

impl Inner {
    /// [`Node::dispatch_with`](super::Node::dispatch_with), timed for metrics.
    pub(super) async fn dispatch(
        self: &Arc<Self>,
        target: &Target,
        protocol: &str,
        request: Bytes,
        options: &DispatchOptions,
    ) -> Result<Option<Bytes>, DispatchError> {
        let started = std::time::Instant::now();
        let result = self
            .dispatch_inner(target, protocol, request, options)
            .await;
        let counters = self.endpoint.counters();
        counters.request_finished(protocol, started.elapsed(), result.is_ok());
        result
    }

    async fn dispatch_inner(
        self: &Arc<Self>,
        target: &Target,
        protocol: &str,
        request: Bytes,
        options: &DispatchOptions,
    ) -> Result<Option<Bytes>, DispatchError> {
        if self.is_closed() {
            return Err(DispatchError::Closed);
        }
        let peer = self.resolve_target(target)?;
        let max = self.config.max_message_size;
        if request.len() > max {
            return Err(DispatchError::RequestTooLarge {
                peer,
                protocol: protocol.to_owned(),
                size: request.len(),
                max,
            });
        }
        // Held until the call returns.
        let _slot = self
            .pending_out
            .acquire(peer)
            .ok_or(DispatchError::TooManyPending {
                peer,
                limit: self.pending_out.limit(),
            })?;
        let deadline = CallDeadline::after(options.timeout.unwrap_or(self.config.request_timeout));
        match options.mode.unwrap_or(self.config.mode) {
            ConnectionMode::Long => self.request_long(peer, protocol, &request, deadline).await,
            ConnectionMode::Short => {
                // Boxed: a short call's state (its own connection's) would otherwise
                // enlarge every long-mode call too.
                let call = Box::pin(self.request_short(peer, protocol, &request, deadline));
                crate::deadline::before(deadline.at, call)
                    .await
                    .unwrap_or_else(|_| Err(deadline.missed(peer, protocol)))
            }
        }
    }

    fn resolve_target(&self, target: &Target) -> Result<PeerId, DispatchError> {
        match target {
            Target::Peer(p) => Ok(*p),
            Target::Name(name) => Ok(self.swarm.book().resolve(name)?),
        }
    }

    /// A request on the peer's long-mode connection, by `deadline`. Waits that usually do
    /// not happen (a dial, a lost race) arm a timer only when they do; the exchange uses
    /// the kept stream's own timer.
    async fn request_long(
        self: &Arc<Self>,
        peer: PeerId,
        protocol: &str,
        payload: &[u8],
        deadline: CallDeadline,
    ) -> Result<Option<Bytes>, DispatchError> {
        let max = self.config.max_message_size;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let conn = crate::deadline::before(deadline.at, self.swarm.connect_pooled(peer))
                .await
                .map_err(|_| deadline.missed(peer, protocol))??;
            let streams = &self.request_streams;
            let call = reqresp::Call {
                protocol,
                payload,
                max_reply: max,
                deadline: deadline.at,
            };
            let result = reqresp::request_reusing(&conn, streams, call).await;
            match result {
                Ok((response, stream)) => {
                    streams.put(&conn, protocol, stream, |task| {
                        drop(self.swarm.tasks().spawn(task))
                    });
                    return answer(peer, protocol, payload.len(), response);
                }
                Err(e) if attempt < ATTEMPTS && never_delivered(&e, &conn) => {
                    tracing::debug!(%peer, protocol, id = %conn.id(), error = ?e, "request not delivered; retrying on the peer's current connection");
                    tokio::time::timeout_at(deadline.at, self.after_undelivered(peer, &conn))
                        .await
                        .map_err(|_| deadline.missed(peer, protocol))?;
                }
                Err(e) => return Err(failure(peer, protocol, e, &conn, deadline)),
            }
        }
    }

    async fn request_short(
        self: &Arc<Self>,
        peer: PeerId,
        protocol: &str,
        payload: &[u8],
        deadline: CallDeadline,
    ) -> Result<Option<Bytes>, DispatchError> {
        let conn = self.swarm.connect_new(peer).await?;
        let max = self.config.max_message_size;
        let result = reqresp::request(&conn, protocol, payload, max).await;
        conn.close().await;
        match result {
            Ok(response) => answer(peer, protocol, payload.len(), response),
            Err(e) => Err(failure(peer, protocol, e, &conn, deadline)),
        }
    }

    /// A request on `conn` never reached the peer's application. If we dialled `conn` and
    /// the peer's dials win ties, the peer is replacing it with its own connection: wait
    /// for that one instead of dialling again (which would lose again).
    async fn after_undelivered(&self, peer: PeerId, conn: &Connection) {
        let peers_dial_wins = peer < self.endpoint.peer_id();
        if conn.info().direction == Direction::Outbound && peers_dial_wins {
            let wait = self.config.endpoint.handshake_timeout;
            self.swarm.wait_connected(&peer, wait).await;
        }
    }

    /// [`Node::open_stream_with`](super::Node::open_stream_with).
    pub(super) async fn open_stream(
        self: &Arc<Self>,
        target: &Target,
        protocol: &str,
        options: &DispatchOptions,
    ) -> Result<NodeStream, DispatchError> {
        if self.is_closed() {
            return Err(DispatchError::Closed);
        }
        let peer = self.resolve_target(target)?;
        let timeout = options.timeout.unwrap_or(self.config.request_timeout);
        let mode = options.mode.unwrap_or(self.config.mode);
        let open = async {
            match mode {
                ConnectionMode::Short => {
                    let conn = self.swarm.connect_new(peer).await?;
                    match self.endpoint.open_stream_confirmed(&conn, protocol).await {
                        Ok(stream) => Ok(NodeStream::new(
                            stream,
                            peer,
                            Some(conn),
                            self.streams_open.acquire(peer),
                        )),
                        Err(e) => {
                            conn.close().await;
                            Err(open_failure(peer, protocol, e))
                        }
                    }
                }
                ConnectionMode::Long => {
                    let mut attempt = 0;
                    loop {
                        attempt += 1;
                        let conn = self.swarm.connect_pooled(peer).await?;
                        match self.endpoint.open_stream_confirmed(&conn, protocol).await {
                            Ok(stream) => {
                                let open = self.streams_open.acquire(peer);
                                return Ok(NodeStream::new(stream, peer, None, open));
                            }
                            Err(e) if attempt < ATTEMPTS && open_never_delivered(&e, &conn) => {
                                self.after_undelivered(peer, &conn).await;
                            }
                            Err(e) => return Err(open_failure(peer, protocol, e)),
                        }
                    }
                }
            }
        };
        tokio::time::timeout(timeout, open)
            .await
            .unwrap_or_else(|_| {
                Err(DispatchError::Timeout {
                    peer,
                    protocol: protocol.to_owned(),
                    timeout,
                })
            })
    }
}

/// Whether a connection error on opening a stream means "try another connection".
fn closed_for_new_streams(e: &ConnectionError) -> bool {
    !matches!(e, ConnectionError::StreamLimit { .. })
}

/// Whether a failed request certainly never reached the peer's application and the
/// connection is the reason (so another connection may do better).
fn never_delivered(e: &RequestError, conn: &Connection) -> bool {
    match e {
        RequestError::Open(ce) => closed_for_new_streams(ce),
        RequestError::NotAccepted => conn.is_going_away(),
        _ => false,
    }
}

fn open_never_delivered(e: &OpenStreamError, conn: &Connection) -> bool {
    match e {
        OpenStreamError::Connection(ce) => closed_for_new_streams(ce),
        OpenStreamError::Negotiate(NegotiateError::Io(io)) => {
            conn.is_going_away() && reqresp::is_stream_reset(io)
        }
        _ => false,
    }
}

fn open_failure(peer: PeerId, protocol: &str, e: OpenStreamError) -> DispatchError {
    let protocol = protocol.to_owned();
    match e {
        OpenStreamError::Connection(ConnectionError::StreamLimit { reason, .. }) => {
            DispatchError::StreamLimit { peer, reason }
        }
        OpenStreamError::Negotiate(NegotiateError::Negotiation(
            NegotiationError::ProtocolRejected { .. } | NegotiationError::AllRejected { .. },
        )) => DispatchError::Refused { peer, protocol },
        OpenStreamError::Negotiate(NegotiateError::Io(io)) if reqresp::is_stream_reset(&io) => {
            DispatchError::StreamLimit {
                peer,
                reason: format!(
                    "the peer reset the stream before negotiating it (its stream limit, or it \
                     is going away): {io}"
                ),
            }
        }
        OpenStreamError::Negotiate(NegotiateError::Negotiation(
            e @ NegotiationError::InvalidProtocolName { .. },
        )) => DispatchError::InvalidProtocol {
            protocol,
            reason: e.to_string(),
        },
        OpenStreamError::Timeout { timeout, .. } => DispatchError::Timeout {
            peer,
            protocol,
            timeout,
        },
        other => DispatchError::ConnectionLost {
            peer,
            protocol,
            reason: other.to_string(),
        },
    }
}

/// Turns a response into the call's result.
fn answer(
    peer: PeerId,
    protocol: &str,
    size: usize,
    response: Response,
) -> Result<Option<Bytes>, DispatchError> {
    let protocol = || protocol.to_owned();
    let text = || String::from_utf8_lossy(&response.body).into_owned();
    let limit = || wire::decode_limit(&response.body).unwrap_or(0);
    Err(match response.status {
        Status::Reply => return Ok(Some(response.body)),
        Status::NoReply => return Ok(None),
        Status::TooLarge => DispatchError::RemoteRequestTooLarge {
            peer,
            protocol: protocol(),
            size,
            max: limit(),
        },
        Status::HandlerFailed => DispatchError::HandlerFailed {
            peer,
            protocol: protocol(),
            message: text(),
        },
        Status::Busy => DispatchError::Busy {
            peer,
            protocol: protocol(),
            limit: limit(),
        },
        Status::Error => DispatchError::Remote {
            peer,
            protocol: protocol(),
            message: text(),
        },
        // Only a kept stream is answered so, and a new stream's never is.
        Status::Reopen => DispatchError::Remote {
            peer,
            protocol: protocol(),
            message: "the responder refused a request on a new stream as if it were kept"
                .to_owned(),
        },
        // A status this version does not know: the decoder refuses unknown bytes, so
        // only a newer core could produce one.
        _ => DispatchError::Remote {
            peer,
            protocol: protocol(),
            message: text(),
        },
    })
}

/// When a call must be answered by, and how long it was given.
#[derive(Debug, Clone, Copy)]
struct CallDeadline {
    at: tokio::time::Instant,
    timeout: Duration,
}

impl CallDeadline {
    fn after(timeout: Duration) -> Self {
        Self {
            at: tokio::time::Instant::now() + timeout,
            timeout,
        }
    }

    /// The error of a call that missed this deadline.
    fn missed(&self, peer: PeerId, protocol: &str) -> DispatchError {
        DispatchError::Timeout {
            peer,
            protocol: protocol.to_owned(),
            timeout: self.timeout,
        }
    }
}

/// Turns a failed request into the call's error.
fn failure(
    peer: PeerId,
    protocol: &str,
    e: RequestError,
    conn: &Connection,
    deadline: CallDeadline,
) -> DispatchError {
    let protocol = protocol.to_owned();
    match e {
        RequestError::Open(ConnectionError::StreamLimit { reason, .. }) => {
            DispatchError::StreamLimit { peer, reason }
        }
        RequestError::Open(other) => DispatchError::ConnectionLost {
            peer,
            protocol,
            reason: format!("no stream could be opened (request not sent): {other}"),
        },
        RequestError::NotAccepted if conn.is_going_away() => DispatchError::ConnectionLost {
            peer,
            protocol,
            reason: "the connection closed before the peer accepted the request (not handled)"
                .into(),
        },
        RequestError::NotAccepted => DispatchError::StreamLimit {
            peer,
            reason: "the peer refused the stream (its stream limit or accept queue is full)".into(),
        },
        RequestError::Refused => DispatchError::Refused { peer, protocol },
        RequestError::InvalidProtocol(reason) => {
            DispatchError::InvalidProtocol { protocol, reason }
        }
        RequestError::Lost(io) => DispatchError::ConnectionLost {
            peer,
            protocol,
            reason: io.to_string(),
        },
        RequestError::Wire(WireError::TooLarge { len, max }) => DispatchError::ResponseTooLarge {
            peer,
            protocol,
            size: len,
            max,
        },
        RequestError::Wire(other) => DispatchError::Protocol {
            peer,
            protocol,
            reason: other.to_string(),
        },
        RequestError::Truncated { got, want } if conn.is_closed() => {
            DispatchError::ConnectionLost {
                peer,
                protocol,
                reason: format!(
                    "the connection closed after {got} bytes of the reply (expected {want})"
                ),
            }
        }
        RequestError::Truncated { got, want } => DispatchError::Protocol {
            peer,
            protocol,
            reason: format!("the reply stream ended after {got} bytes (expected {want})"),
        },
        RequestError::TimedOut => deadline.missed(peer, &protocol),
    }
}

#[cfg(test)]
mod tests {
    use super::super::Node;
    use bytes::Bytes;

    /// A call's future is copied whole when it is made and moved, and every dispatch
    /// carries the states of all the paths it might take: the rare ones (a dial, a DHT
    /// lookup, a relayed handshake: kilobytes) are boxed so the common one stays cheap.
    #[tokio::test]
    async fn a_dispatch_future_carries_no_dial_state() {
        let node = Node::builder().build().await.expect("node");
        let call = node.dispatch(node.peer_id(), "/x", Bytes::new());
        let size = std::mem::size_of_val(&call);
        eprintln!("dispatch future: {size} bytes");
        drop(call);
        node.close().await;
        assert!(size <= 3072, "a dispatch future takes {size} bytes");
    }
}
