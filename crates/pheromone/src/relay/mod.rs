//! Relayed connections over `/pheromone/relay/1.0.0`: reaching a peer with no direct link
//! through a chain of others.
//!
//! The source opens a relay stream to the first hop of its route to the destination and
//! sends CONNECT; each relay looks up its own next hop, opens a relay stream to it, passes
//! CONNECT on with one less hop of budget, and on the answer OK splices the two streams.
//! The two ends then run Noise (each authenticating the other's peer ID) and yamux over
//! the circuit, so relays carry only ciphertext and the caller gets an ordinary
//! [`Connection`]. The handshake codec lives in [`pheromone_core::relay`]; the wire is in
//! `docs/protocols/relay.md`.
//!
//! This module moves bytes and enforces limits (hops; circuits per neighbour and in total,
//! both those relayed through us and those ending here, counted by the endpoint's
//! [resource manager](crate::resources); bytes, idle time and lifetime per circuit, as
//! circuit relay v2 has; setup time); which neighbour is the next hop is asked of a lookup function the node wires to
//! its route table.

mod error;
mod splice;

pub use error::RelayError;

use crate::connection::{Circuit, Connection, Direction, Socket, Stream};
use crate::endpoint::{Access, Endpoint};
use bytes::BytesMut;
use futures::FutureExt;
use pheromone_core::identity::PeerId;
use pheromone_core::relay::wire::{self, Connect, RelayMessage, Response, Status};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The relay protocol id.
pub const PROTOCOL: &str = pheromone_core::relay::PROTOCOL;

/// Limits and switches of the relay service.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RelayConfig {
    /// Carry circuits between other peers.
    pub relay_for_others: bool,
    /// Accept circuits that end at this node.
    pub accept_circuits: bool,
    /// Most links a circuit this node opens may cross.
    pub max_hops: u8,
    /// Bytes one relayed circuit may carry (both directions); it is reset beyond that.
    /// (How many circuits may be relayed, in total and per neighbour, is the resource
    /// manager's: `max_relayed_circuits`, `max_relayed_circuits_per_peer`.)
    pub max_circuit_bytes: u64,
    /// A relayed circuit that carries nothing either way for this long is reset (the ends'
    /// keep-alive pings keep a live one busy).
    pub circuit_idle_timeout: Duration,
    /// A relayed circuit is reset after this long, whatever it carries.
    pub max_circuit_lifetime: Duration,
    /// How long opening a circuit (every hop's answer) may take.
    pub setup_timeout: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            relay_for_others: true,
            accept_circuits: true,
            max_hops: wire::DEFAULT_MAX_HOPS,
            max_circuit_bytes: 64 << 30,
            circuit_idle_timeout: Duration::from_secs(120),
            max_circuit_lifetime: Duration::from_secs(24 * 3600),
            setup_timeout: Duration::from_secs(10),
        }
    }
}

/// Finds the neighbour through which a destination is reached.
pub type NextHopFn = Arc<dyn Fn(&PeerId) -> Option<PeerId> + Send + Sync>;

/// Counters of the relay service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RelayStats {
    /// Circuits relayed through this node right now.
    pub active_circuits: usize,
    /// Circuits relayed through this node so far.
    pub circuits_relayed: u64,
    /// Circuit requests this node refused (any reason).
    pub circuits_refused: u64,
    /// Bytes carried for others, both directions.
    pub bytes_relayed: u64,
}

/// The relay service of one endpoint: serves the protocol, opens circuits.
#[derive(Clone)]
pub struct Relay {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: Endpoint,
    config: RelayConfig,
    next_hop: NextHopFn,
    active: AtomicUsize,
    relayed: AtomicU64,
    refused: AtomicU64,
    bytes: Arc<AtomicU64>,
    /// Circuits being set up or carried through here, to refuse one that loops back.
    circuits: Mutex<HashSet<u64>>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("config", &self.inner.config)
            .finish()
    }
}

impl Relay {
    /// Serves the relay protocol on `endpoint`, asking `next_hop` where to forward.
    pub fn install(endpoint: &Endpoint, config: RelayConfig, next_hop: NextHopFn) -> Relay {
        let relay = Relay {
            inner: Arc::new(Inner {
                endpoint: endpoint.clone(),
                config,
                next_hop,
                active: AtomicUsize::new(0),
                relayed: AtomicU64::new(0),
                refused: AtomicU64::new(0),
                bytes: Arc::new(AtomicU64::new(0)),
                circuits: Mutex::new(HashSet::new()),
            }),
        };
        let weak = Arc::downgrade(&relay.inner);
        endpoint.set_handler(
            PROTOCOL,
            Arc::new(move |conn: Connection, stream: Stream| {
                let weak = weak.clone();
                async move {
                    if let Some(inner) = weak.upgrade() {
                        Relay { inner }.serve(conn, stream).await;
                    }
                }
                .boxed()
            }),
            Access::Open,
        );
        relay
    }

    /// The service's limits.
    pub fn config(&self) -> &RelayConfig {
        &self.inner.config
    }

    /// Counters so far.
    pub fn stats(&self) -> RelayStats {
        RelayStats {
            active_circuits: self.inner.active.load(Ordering::Relaxed),
            circuits_relayed: self.inner.relayed.load(Ordering::Relaxed),
            circuits_refused: self.inner.refused.load(Ordering::Relaxed),
            bytes_relayed: self.inner.bytes.load(Ordering::Relaxed),
        }
    }

    /// Opens a relayed connection to `destination` along the route table, authenticated
    /// as that peer end to end. The connection joins the endpoint like a dialled one.
    pub async fn connect(&self, destination: PeerId) -> Result<Connection, RelayError> {
        let timeout = self.inner.config.setup_timeout;
        tokio::time::timeout(timeout, self.connect_inner(destination))
            .await
            .unwrap_or(Err(RelayError::Timeout {
                destination,
                timeout,
            }))
    }

    async fn connect_inner(&self, destination: PeerId) -> Result<Connection, RelayError> {
        let endpoint = &self.inner.endpoint;
        let first = (self.inner.next_hop)(&destination)
            .filter(|hop| *hop != destination)
            .ok_or(RelayError::NoRoute { destination })?;
        let via = endpoint
            .direct_connection(&first)
            .ok_or(RelayError::NoRoute { destination })?;
        let mut stream = endpoint
            .open_stream(&via, PROTOCOL)
            .await
            .map_err(|source| RelayError::Open {
                peer: first,
                source: Box::new(source),
            })?;
        let request = Connect::new(
            rand::random(),
            endpoint.peer_id(),
            destination,
            self.inner.config.max_hops,
        );
        let response = exchange(&mut stream, first, &request).await?;
        if response.status != Status::Ok {
            return Err(RelayError::Refused {
                destination,
                status: response.status,
                hops: response.hops,
                reason: response.text,
            });
        }
        tracing::debug!(%destination, via = %first, hops = response.hops, "circuit open");
        let socket = Socket::Circuit(Box::new(Circuit::new(
            stream,
            first,
            via.info().remote_addr,
            via.info().local_addr,
        )));
        endpoint
            .adopt_circuit(socket, Direction::Outbound, Some(destination), None)
            .await
            .map_err(|e| RelayError::Upgrade {
                destination,
                source: Box::new(e),
            })
    }

    /// Serves one inbound relay stream: a circuit to us, or one to pass on.
    async fn serve(self, conn: Connection, mut stream: Stream) {
        let from = conn.remote_peer();
        let timeout = self.inner.config.setup_timeout;
        let request = match tokio::time::timeout(timeout, read_message(&mut stream, from)).await {
            Ok(Ok(RelayMessage::Connect(c))) => c,
            Ok(Ok(RelayMessage::Response(_))) => {
                tracing::debug!(peer = %from, "relay stream opened with a response; resetting");
                stream.reset();
                return;
            }
            Ok(Err(e)) => {
                tracing::debug!(peer = %from, error = %e, "bad relay request; resetting");
                stream.reset();
                return;
            }
            Err(_) => {
                tracing::debug!(peer = %from, ?timeout, "relay request did not arrive in time");
                stream.reset();
                return;
            }
        };
        if request.destination == self.inner.endpoint.peer_id() {
            self.accept(conn, stream, request).await;
        } else {
            self.pass_on(stream, from, request).await;
        }
    }

    /// A circuit ends here: answer OK and run the inbound upgrade over it.
    async fn accept(&self, conn: Connection, mut stream: Stream, request: Connect) {
        if !self.inner.config.accept_circuits {
            self.refuse(
                &mut stream,
                &request,
                Status::DestinationRefused,
                "this node accepts no relayed connections",
            )
            .await;
            return;
        }
        // Counted before the answer, so that a refused circuit costs no handshake; held for
        // as long as the connection over it lives.
        let resources = self.inner.endpoint.resources();
        let counted = match resources.open_circuit_ending_here(conn.remote_peer()) {
            Ok(guard) => guard,
            Err(e) => {
                resources.refused(
                    &e,
                    &format_args!("circuit from {} via {}", request.source, conn.remote_peer()),
                );
                self.refuse(&mut stream, &request, Status::ResourceLimit, &e.to_string())
                    .await;
                return;
            }
        };
        let ok = response(&request, Status::Ok, "");
        if stream.write_all(&ok.to_vec()).await.is_err() {
            return;
        }
        let info = conn.info();
        let socket = Socket::Circuit(Box::new(Circuit::new(
            stream,
            conn.remote_peer(),
            info.remote_addr,
            info.local_addr,
        )));
        match self
            .inner
            .endpoint
            .adopt_circuit(socket, Direction::Inbound, None, Some(counted))
            .await
        {
            Ok(circuit) if circuit.remote_peer() != request.source => {
                tracing::warn!(claimed = %request.source, actual = %circuit.remote_peer(), "relayed peer is not who the request named; closing");
                circuit.close().await;
            }
            Ok(circuit) => {
                tracing::debug!(peer = %circuit.remote_peer(), via = %conn.remote_peer(), hops = request.hops, "relayed connection accepted");
            }
            Err(e) => {
                tracing::debug!(source = %request.source, error = %e, "relayed handshake failed")
            }
        }
    }

    /// A circuit goes further: open the next hop, pass the request and the answer, splice.
    async fn pass_on(&self, mut inbound: Stream, from: PeerId, request: Connect) {
        let _counted = match self.admit(from, &request) {
            Ok(guard) => guard,
            Err((status, reason)) => {
                self.refuse(&mut inbound, &request, status, &reason).await;
                return;
            }
        };
        let _slot = CircuitSlot::take(&self.inner, request.circuit_id);
        let outcome =
            tokio::time::timeout(self.inner.config.setup_timeout, self.open_next(&request)).await;
        let (mut outbound, answer) = match outcome {
            Ok(Ok(pair)) => pair,
            Ok(Err((status, reason))) => {
                self.refuse(&mut inbound, &request, status, &reason).await;
                return;
            }
            Err(_) => {
                self.refuse(
                    &mut inbound,
                    &request,
                    Status::Timeout,
                    "the next hop did not answer in time",
                )
                .await;
                return;
            }
        };
        let passed = inbound
            .write_all(&RelayMessage::Response(answer.clone()).to_vec())
            .await;
        if passed.is_err() || answer.status != Status::Ok {
            outbound.reset();
            return;
        }
        self.inner.relayed.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(circuit = request.circuit_id, source = %request.source, destination = %request.destination, "relaying");
        let config = &self.inner.config;
        let limits = splice::Limits {
            bytes: config.max_circuit_bytes,
            idle: config.circuit_idle_timeout,
            lifetime: config.max_circuit_lifetime,
        };
        if let Err(e) = splice::splice(inbound, outbound, limits, &self.inner.bytes).await {
            tracing::debug!(circuit = request.circuit_id, error = %e, "relayed circuit ended with an error");
        }
    }

    /// Checks the limits before a circuit is passed on; the grant counts it in the resource
    /// manager (in total and for `from`) until dropped.
    fn admit(
        &self,
        from: PeerId,
        request: &Connect,
    ) -> Result<crate::resources::CircuitGuard, (Status, String)> {
        let config = &self.inner.config;
        if !config.relay_for_others {
            return Err((Status::RelayDisabled, "this node does not relay".into()));
        }
        if request.budget == 0 {
            return Err((
                Status::HopLimit,
                format!("hop limit reached after {} hops", request.hops),
            ));
        }
        if self.lock_circuits().contains(&request.circuit_id) {
            return Err((
                Status::Loop,
                "the circuit came back to a relay it crossed".into(),
            ));
        }
        if from == request.destination {
            return Err((Status::Loop, "the request came from its destination".into()));
        }
        let resources = self.inner.endpoint.resources();
        resources.open_relayed_circuit(from).map_err(|e| {
            resources.refused(
                &e,
                &format_args!("circuit {} for {from}", request.circuit_id),
            );
            (Status::ResourceLimit, e.to_string())
        })
    }

    /// Opens the relay stream to the next hop and returns it with the answer it gave.
    async fn open_next(&self, request: &Connect) -> Result<(Stream, Response), (Status, String)> {
        let endpoint = &self.inner.endpoint;
        let destination = request.destination;
        let next = if endpoint.direct_connection(&destination).is_some() {
            destination
        } else {
            (self.inner.next_hop)(&destination)
                .ok_or((Status::NoRoute, format!("no route to {destination}")))?
        };
        if next == request.source {
            return Err((
                Status::NoRoute,
                format!("the only route to {destination} leads back to the source"),
            ));
        }
        let conn = endpoint
            .direct_connection(&next)
            .ok_or((Status::ConnectFailed, format!("no link to next hop {next}")))?;
        let mut stream = endpoint
            .open_stream(&conn, PROTOCOL)
            .await
            .map_err(|e| (Status::ConnectFailed, format!("next hop {next}: {e}")))?;
        let forwarded = request
            .forwarded()
            .map_err(|status| (status, "hop limit reached".to_owned()))?;
        let answer = exchange(&mut stream, next, &forwarded)
            .await
            .map_err(|e| (Status::ConnectFailed, e.to_string()))?;
        Ok((stream, answer))
    }

    async fn refuse(&self, stream: &mut Stream, request: &Connect, status: Status, reason: &str) {
        self.inner.refused.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(circuit = request.circuit_id, source = %request.source, destination = %request.destination, ?status, reason, "circuit refused");
        let answer = response(request, status, reason);
        let _ = stream.write_all(&answer.to_vec()).await;
        let _ = stream.shutdown().await;
    }

    fn lock_circuits(&self) -> std::sync::MutexGuard<'_, HashSet<u64>> {
        self.inner
            .circuits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

fn response(request: &Connect, status: Status, text: &str) -> RelayMessage {
    RelayMessage::Response(Response {
        circuit_id: request.circuit_id,
        status,
        hops: request.hops,
        text: text.to_owned(),
    })
}

/// A circuit counted as active (and its id remembered) for as long as this lives.
struct CircuitSlot<'a> {
    inner: &'a Inner,
    id: u64,
}

impl<'a> CircuitSlot<'a> {
    fn take(inner: &'a Inner, id: u64) -> Self {
        inner.active.fetch_add(1, Ordering::Relaxed);
        inner
            .circuits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id);
        Self { inner, id }
    }
}

impl Drop for CircuitSlot<'_> {
    fn drop(&mut self) {
        self.inner.active.fetch_sub(1, Ordering::Relaxed);
        self.inner
            .circuits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

/// Sends a CONNECT and reads the answer; bytes after it stay in the stream.
async fn exchange(
    stream: &mut Stream,
    peer: PeerId,
    request: &Connect,
) -> Result<Response, RelayError> {
    let message = RelayMessage::Connect(*request);
    stream
        .write_all(&message.to_vec())
        .await
        .map_err(|source| RelayError::Io { peer, source })?;
    match read_message(stream, peer).await? {
        RelayMessage::Response(r) if r.circuit_id == request.circuit_id => Ok(r),
        _ => Err(RelayError::UnexpectedMessage { peer }),
    }
}

/// Reads one handshake message; what follows it is put back in front of the stream.
async fn read_message(stream: &mut Stream, peer: PeerId) -> Result<RelayMessage, RelayError> {
    let mut buf = BytesMut::with_capacity(256);
    loop {
        match wire::decode(&mut buf) {
            Ok(Some(message)) => {
                stream.push_unread(buf.freeze());
                return Ok(message);
            }
            Ok(None) => {}
            Err(source) => return Err(RelayError::Protocol { peer, source }),
        }
        let n = stream
            .read_buf(&mut buf)
            .await
            .map_err(|source| RelayError::Io { peer, source })?;
        if n == 0 {
            return Err(RelayError::Closed { peer });
        }
    }
}
