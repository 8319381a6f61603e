//! Connections: one authenticated, encrypted, multiplexed link to a peer, and its streams.
//!
//! A [`Connection`] is a cloneable handle; the link itself is driven by one task
//! (`driver.rs`) that reads the socket, opens Noise frames or TLS records (`secure.rs`)
//! and feeds the yamux [`Session`](pheromone_core::yamux::Session). Streams and the handle share the session
//! through one std mutex that is never held across an `.await`. A stream write copies into
//! the session's outgoing buffer — the connection's bounded send queue — and wakes the
//! driver, the connection's only writer, which lets the other ready tasks queue theirs,
//! then encrypts the lot and writes it in one system call (`writer.rs` says how, and
//! states the lock discipline).
//!
//! This module negotiates nothing and knows no protocols; [`crate::upgrade`] builds
//! connections and [`crate::negotiate`] picks a protocol per stream.
//!
//! A connection over QUIC (`quic.rs`) has the same handles: its streams are QUIC's own
//! and quinn drives it, so it has no driver task of ours and no yamux session. Everything
//! above this module — negotiation, the endpoint, the swarm, the node — sees one kind of
//! [`Connection`] and [`Stream`], whatever the transport ([`ConnectionInfo::transport`]).

pub(crate) mod driver;
pub(crate) mod quic;
mod read_buffers;
pub(crate) mod secure;
mod send_buffer;
mod shared;
mod socket;
mod stream;
mod writer;

#[cfg(test)]
mod tests;

pub(crate) use stream::Reuse;
pub use stream::Stream;

use pheromone_core::addr::Multiaddr;
use pheromone_core::identity::{PeerId, PublicKey};
pub use pheromone_core::noise::TransportCipher;
pub(crate) use shared::Shared;
pub(crate) use socket::{Circuit, Socket};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// A process-unique number naming one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(u64);

impl ConnectionId {
    pub(crate) fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Self(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl std::fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

/// Which side opened a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// We dialled.
    Outbound,
    /// The remote dialled us.
    Inbound,
}

/// What a connection runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Transport {
    /// TCP, with Noise or TLS and yamux on top.
    Tcp,
    /// QUIC v1 (its streams are the streams; TLS 1.3 inside).
    Quic,
    /// A relayed circuit: a stream of another connection, spliced hop by hop to the peer.
    Relay,
}

impl Transport {
    /// `tcp`, `quic` or `relay` (what `peers --json` says).
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Quic => "quic",
            Transport::Relay => "relay",
        }
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The security protocol that authenticated a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Security {
    /// Noise XX (`/noise`).
    Noise,
    /// TLS 1.3 with the libp2p certificate extension (`/tls/1.0.0`, and always in QUIC).
    Tls,
}

impl Security {
    /// `noise` or `tls`.
    pub fn as_str(self) -> &'static str {
        match self {
            Security::Noise => "noise",
            Security::Tls => "tls",
        }
    }
}

/// What is known about the two ends of a connection.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// This connection's handle number.
    pub id: ConnectionId,
    /// The remote's verified peer ID.
    pub remote_peer: PeerId,
    /// The remote's verified public key.
    pub remote_public_key: PublicKey,
    /// The remote socket address.
    pub remote_addr: SocketAddr,
    /// Our socket address.
    pub local_addr: SocketAddr,
    /// Whether we dialled or accepted it.
    pub direction: Direction,
    /// For a relayed connection, the first relay on the way to the peer (the remote
    /// address is then that relay's); `None` for a direct link.
    pub relay: Option<PeerId>,
    /// The cipher of the Noise transport phase: AES-256-GCM when both nodes offered it
    /// ([`ConnectionConfig::aes_gcm`]), ChaCha20-Poly1305 otherwise (always with libp2p).
    /// For TLS (QUIC and `/tls/1.0.0`) the AEAD family our side puts first, which every
    /// TLS 1.3 peer supports: AES-GCM on CPUs with AES instructions, else ChaCha20-Poly1305.
    pub cipher: TransportCipher,
    /// TCP, QUIC, or a relayed circuit.
    pub transport: Transport,
    /// Noise or TLS.
    pub security: Security,
}

impl ConnectionInfo {
    /// The remote address as a multiaddr of this connection's transport
    /// (`/ip4/…/tcp/N`, or `/ip4/…/udp/N/quic-v1`), without `/p2p/`.
    pub fn remote_multiaddr(&self) -> Multiaddr {
        socket_multiaddr(self.remote_addr, self.transport)
    }

    /// Our address on this connection, as [`ConnectionInfo::remote_multiaddr`] gives theirs.
    pub fn local_multiaddr(&self) -> Multiaddr {
        socket_multiaddr(self.local_addr, self.transport)
    }
}

/// `addr` as a multiaddr of `transport` (a relayed circuit's socket addresses are TCP's).
pub(crate) fn socket_multiaddr(addr: SocketAddr, transport: Transport) -> Multiaddr {
    match transport {
        Transport::Quic => Multiaddr::from_quic_socket_addr(addr),
        Transport::Tcp | Transport::Relay => Multiaddr::from_socket_addr(addr),
    }
}

/// The error inside the `io::Error` of a QUIC stream the peer refused before serving it
/// (see [`Stream::is_acknowledged`]); a yamux stream's is
/// [`StreamError::Reset`](pheromone_core::yamux::StreamError::Reset).
#[derive(Debug, Error)]
#[error(
    "stream refused by {peer} before it was served (the peer is closing or at its stream limit)"
)]
pub struct StreamRefused {
    /// The peer.
    pub peer: PeerId,
}

/// Whether `e` is the peer resetting (or refusing) one stream, not the connection failing:
/// a yamux reset, a QUIC `RESET_STREAM` or `STOP_SENDING`, or a refusal.
pub fn is_stream_reset(e: &std::io::Error) -> bool {
    e.get_ref().is_some_and(|inner| {
        inner
            .downcast_ref::<pheromone_core::yamux::StreamError>()
            .is_some_and(|s| matches!(s, pheromone_core::yamux::StreamError::Reset(_)))
            || inner.is::<StreamRefused>()
            || matches!(
                inner.downcast_ref::<quinn::ReadError>(),
                Some(quinn::ReadError::Reset(_))
            )
            || matches!(
                inner.downcast_ref::<quinn::WriteError>(),
                Some(quinn::WriteError::Stopped(_))
            )
    })
}

/// Why a connection or one of its streams failed.
#[derive(Debug, Clone, Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The socket failed; the connection is gone.
    #[error("connection to {peer} failed: {reason}")]
    Io {
        /// The remote peer.
        peer: PeerId,
        /// What the OS said.
        reason: String,
    },
    /// The remote closed the socket.
    #[error("connection to {peer} closed by the remote")]
    ClosedByRemote {
        /// The remote peer.
        peer: PeerId,
    },
    /// We closed the connection.
    #[error("connection to {peer} was closed locally")]
    ClosedLocally {
        /// The remote peer.
        peer: PeerId,
    },
    /// The remote sent bytes that break Noise (bad tag, bad frame).
    #[error("connection to {peer}: encryption failure: {reason}")]
    Noise {
        /// The remote peer.
        peer: PeerId,
        /// What went wrong.
        reason: String,
    },
    /// The remote broke the yamux protocol (window overflow, unknown stream, …).
    #[error("connection to {peer}: multiplexer protocol error: {reason}")]
    Yamux {
        /// The remote peer.
        peer: PeerId,
        /// What went wrong.
        reason: String,
    },
    /// The remote stopped answering keep-alive pings.
    #[error("connection to {peer}: keep-alive timed out")]
    KeepAliveTimeout {
        /// The remote peer.
        peer: PeerId,
    },
    /// The remote sent GoAway: no new streams may be opened on this connection.
    #[error("connection to {peer} is going away; open a new connection")]
    GoingAway {
        /// The remote peer.
        peer: PeerId,
    },
    /// A TLS record failed to open or seal, or the peer sent a fatal alert (over TCP).
    #[error("TLS session with {peer} failed: {reason}")]
    Tls {
        /// The remote peer.
        peer: PeerId,
        /// What went wrong.
        reason: String,
    },
    /// QUIC reported a transport or protocol error (the connection is gone).
    #[error("QUIC connection to {peer} failed: {reason}")]
    Quic {
        /// The remote peer.
        peer: PeerId,
        /// What quinn said.
        reason: String,
    },
    /// A stream could not be opened: the stream limit of this connection is reached.
    #[error("connection to {peer}: stream limit reached ({reason})")]
    StreamLimit {
        /// The remote peer.
        peer: PeerId,
        /// Which limit.
        reason: String,
    },
}

impl ConnectionError {
    /// The error of a failed seal or open on the link to `peer`.
    pub(crate) fn secure(peer: PeerId, e: secure::SecureError) -> Self {
        match e {
            secure::SecureError::Noise(e) => ConnectionError::Noise {
                peer,
                reason: e.to_string(),
            },
            secure::SecureError::CloseNotify => ConnectionError::ClosedByRemote { peer },
            other => ConnectionError::Tls {
                peer,
                reason: other.to_string(),
            },
        }
    }
}

impl From<ConnectionError> for std::io::Error {
    fn from(e: ConnectionError) -> Self {
        let kind = match e {
            ConnectionError::ClosedByRemote { .. } | ConnectionError::ClosedLocally { .. } => {
                std::io::ErrorKind::ConnectionAborted
            }
            ConnectionError::KeepAliveTimeout { .. } => std::io::ErrorKind::TimedOut,
            _ => std::io::ErrorKind::ConnectionReset,
        };
        std::io::Error::new(kind, e)
    }
}

/// Settings of a connection once it is established.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// The yamux settings: windows, stream limits, keep-alive.
    pub yamux: pheromone_core::yamux::Config,
    /// How long [`Connection::close`] waits for open streams to finish before dropping them.
    pub close_grace: Duration,
    /// Most plaintext bytes the connection's send queue holds: a stream write takes what
    /// fits below this mark and waits while nothing does. Bounds memory per connection when
    /// the socket is slower than the writers (at most this much plaintext queued plus about
    /// as much ciphertext waiting for the socket).
    pub send_buffer_high_water: usize,
    /// Offer AES-256-GCM for the Noise transport phase. It is used only when the remote
    /// offers it too — other pheromone nodes, never libp2p peers, which keep the spec's
    /// ChaCha20-Poly1305. Defaults to [`cpu_has_fast_aes_gcm`]: on a CPU with AES and
    /// carry-less multiply instructions AES-GCM costs much less CPU per byte. Turn it off to
    /// force ChaCha20-Poly1305 on every connection this side makes or accepts.
    pub aes_gcm: bool,
}

/// Whether this CPU runs AES-256-GCM in hardware — x86 AES-NI and PCLMULQDQ — which is
/// when it beats ChaCha20-Poly1305. Always `false` on other architectures, where we do not
/// know without measuring.
pub fn cpu_has_fast_aes_gcm() -> bool {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        std::is_x86_feature_detected!("aes") && std::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
    {
        false
    }
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            yamux: pheromone_core::yamux::Config::default(),
            close_grace: Duration::from_secs(5),
            send_buffer_high_water: 1024 * 1024,
            aes_gcm: cpu_has_fast_aes_gcm(),
        }
    }
}

/// A live connection to a peer: a cloneable handle; the link closes when [`close`] is called
/// or the remote goes away (dropping handles does not close it).
///
/// [`close`]: Connection::close
#[derive(Clone)]
pub struct Connection {
    link: Link,
    info: Arc<ConnectionInfo>,
}

/// The connection underneath a handle.
#[derive(Clone)]
pub(crate) enum Link {
    /// Our own driver: TCP or a circuit, a security layer, yamux.
    Muxed(Arc<Shared>),
    /// quinn's.
    Quic(Arc<quic::QuicShared>),
}

impl Link {
    pub(crate) fn traffic(&self) -> &crate::metrics::Traffic {
        match self {
            Link::Muxed(s) => &s.traffic,
            Link::Quic(q) => &q.traffic,
        }
    }

    pub(crate) fn counters(&self) -> &std::sync::OnceLock<Arc<crate::metrics::Counters>> {
        match self {
            Link::Muxed(s) => &s.counters,
            Link::Quic(q) => &q.counters,
        }
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.info.id)
            .field("remote_peer", &self.info.remote_peer)
            .field("remote_addr", &self.info.remote_addr)
            .finish()
    }
}

impl Connection {
    pub(crate) fn new(shared: Arc<Shared>, info: ConnectionInfo) -> Self {
        Self {
            link: Link::Muxed(shared),
            info: Arc::new(info),
        }
    }

    pub(crate) fn quic(shared: Arc<quic::QuicShared>, info: ConnectionInfo) -> Self {
        Self {
            link: Link::Quic(shared),
            info: Arc::new(info),
        }
    }

    /// The transport this connection runs over (a shorthand for `info().transport`).
    pub fn transport(&self) -> Transport {
        self.info.transport
    }

    /// Who is on the other end, and how we got there.
    pub fn info(&self) -> &ConnectionInfo {
        &self.info
    }

    /// The remote's verified peer ID.
    pub fn remote_peer(&self) -> PeerId {
        self.info.remote_peer
    }

    /// This connection's handle number.
    pub fn id(&self) -> ConnectionId {
        self.info.id
    }

    /// Opens a new outbound stream (no protocol negotiated yet; see [`crate::negotiate`]).
    pub fn open_stream(&self) -> Result<Stream, ConnectionError> {
        match &self.link {
            Link::Muxed(shared) => {
                let id = shared.open_stream()?;
                Ok(Stream::new(id, shared.clone()))
            }
            Link::Quic(q) => {
                let (send, recv) = q.open_stream()?;
                Ok(Stream::quic(send, recv, q.clone()))
            }
        }
    }

    /// Waits for the next inbound stream; an error once the connection is closed. Its ACK
    /// leaves with what the stream's handler writes in the same scheduling round.
    pub async fn accept_stream(&self) -> Result<Stream, ConnectionError> {
        match &self.link {
            Link::Muxed(shared) => {
                let id = std::future::poll_fn(|cx| shared.poll_accept(cx)).await?;
                Ok(Stream::new(id, shared.clone()))
            }
            Link::Quic(q) => {
                let (send, recv) = q.accept_stream().await?;
                Ok(Stream::quic(send, recv, q.clone()))
            }
        }
    }

    /// Whether the connection is closed or closing.
    pub fn is_closed(&self) -> bool {
        match &self.link {
            Link::Muxed(s) => s.is_closed(),
            Link::Quic(q) => q.is_closed(),
        }
    }

    /// Whether no new stream can be opened here any more: closed, closing, or the remote
    /// sent GoAway. Existing streams may still be finishing.
    pub fn is_going_away(&self) -> bool {
        match &self.link {
            Link::Muxed(s) => s.is_going_away(),
            Link::Quic(q) => q.is_going_away(),
        }
    }

    /// The peer said it is going away (over QUIC, a stream of
    /// [`quic::GOAWAY_PROTOCOL`]; yamux has its own GoAway frame): open no more streams here.
    pub(crate) fn peer_going_away(&self) {
        if let Link::Quic(q) = &self.link {
            q.remote_refused();
        }
    }

    /// Waits until no new stream can be opened here any more (see
    /// [`Connection::is_going_away`]): the moment to wind down streams kept open for reuse.
    pub async fn going_away(&self) {
        match &self.link {
            Link::Muxed(s) => std::future::poll_fn(|cx| s.poll_going_away(cx)).await,
            Link::Quic(q) => q.going_away().await,
        }
    }

    /// Streams opened or accepted on this connection so far, both directions: a counter
    /// that moves whenever the connection is used (for idle detection).
    pub fn streams_total(&self) -> u64 {
        match &self.link {
            Link::Muxed(s) => s.streams_total(),
            Link::Quic(q) => q.streams_total(),
        }
    }

    /// Records the protocols the peer listed in identify. From then on a stream proposing
    /// one of them may send data before the peer's confirmation; any other proposal waits
    /// for it before the first write (see [`negotiate::dialer_lazy`](crate::negotiate::dialer_lazy)).
    pub fn set_remote_protocols(&self, protocols: Arc<[String]>) {
        match &self.link {
            Link::Muxed(s) => s.set_remote_protocols(protocols),
            Link::Quic(q) => q.set_remote_protocols(protocols),
        }
    }

    /// The protocols the peer listed in identify, if it has answered (on this connection or,
    /// as the endpoint remembers, on an earlier one).
    pub fn remote_protocols(&self) -> Option<Arc<[String]>> {
        match &self.link {
            Link::Muxed(s) => s.remote_protocols(),
            Link::Quic(q) => q.remote_protocols(),
        }
    }

    /// Whether the peer listed `protocol` in identify; `None` while that is unknown.
    pub fn remote_supports(&self, protocol: &str) -> Option<bool> {
        match &self.link {
            Link::Muxed(s) => s.remote_supports(protocol),
            Link::Quic(q) => q.remote_supports(protocol),
        }
    }

    /// Number of streams currently open on this connection: held by the application,
    /// waiting to be accepted, or dropped and waiting for the peer's FIN (all count against
    /// the yamux stream limit).
    pub fn num_streams(&self) -> usize {
        match &self.link {
            Link::Muxed(s) => s.num_streams(),
            Link::Quic(q) => q.num_streams(),
        }
    }

    /// Stream payload received on this connection so far (after yamux framing and
    /// decryption; protocol negotiation included).
    pub fn bytes_received(&self) -> u64 {
        self.link.traffic().bytes_in.load(Ordering::Relaxed)
    }

    /// Stream payload sent on this connection so far (protocol proposals not counted).
    pub fn bytes_sent(&self) -> u64 {
        self.link.traffic().bytes_out.load(Ordering::Relaxed)
    }

    /// Makes this connection's streams count into `counters` (once; later calls do
    /// nothing).
    pub(crate) fn attach_counters(&self, counters: &Arc<crate::metrics::Counters>) {
        let _ = self.link.counters().set(counters.clone());
    }

    /// Gives the connection the gauge its driver reports held memory to (our own driver
    /// only: quinn keeps its buffers to itself, bounded by its windows).
    pub(crate) fn attach_memory(&self, gauge: crate::resources::MemoryGauge) {
        if let Link::Muxed(s) = &self.link {
            let _ = s.memory.set(gauge);
        }
    }

    /// Bytes of receive buffer this connection holds now (0 for QUIC, whose buffers are
    /// quinn's).
    pub fn held_memory(&self) -> u64 {
        match &self.link {
            Link::Muxed(s) => s.memory.get().map_or(0, |g| g.get()),
            Link::Quic(_) => 0,
        }
    }

    /// Drops the connection at once, without a goodbye: for one the resource manager
    /// refused before its driver ever ran.
    pub(crate) fn abort(&self) {
        match &self.link {
            Link::Muxed(s) => s.shutdown(std::net::Shutdown::Both),
            Link::Quic(q) => q.conn.close(0u32.into(), b"resource limit"),
        }
    }

    /// The last keep-alive round-trip time measured on this connection.
    pub fn rtt(&self) -> Option<Duration> {
        match &self.link {
            Link::Muxed(s) => s.rtt(),
            Link::Quic(q) => Some(q.conn.rtt()),
        }
    }

    /// Changes this connection's keep-alive (yamux pings every `interval`, the link fails
    /// after `timeout` without an answer). False for QUIC, which keeps itself alive.
    pub fn set_keepalive(&self, interval: Option<Duration>, timeout: Duration) -> bool {
        match &self.link {
            Link::Muxed(s) => {
                s.set_keepalive(interval, timeout);
                true
            }
            Link::Quic(_) => false,
        }
    }

    /// Closes gracefully: sends GoAway so the remote opens no new streams, waits up to the
    /// close grace for open streams to finish, then flushes and shuts the socket down.
    pub async fn close(&self) {
        match &self.link {
            Link::Muxed(s) => {
                s.begin_close();
                std::future::poll_fn(|cx| s.poll_closed(cx)).await;
            }
            Link::Quic(q) => q.close().await,
        }
    }

    /// Waits until the connection is closed, and says why.
    pub async fn closed(&self) -> ConnectionError {
        match &self.link {
            Link::Muxed(s) => std::future::poll_fn(|cx| s.poll_closed(cx)).await,
            Link::Quic(q) => q.closed().await,
        }
    }
}
