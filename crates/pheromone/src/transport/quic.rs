//! QUIC v1 on quinn: UDP sockets, quinn endpoints, and the settings that make it fast.
//!
//! One quinn endpoint per listening address (its UDP socket, GSO/GRO on where the kernel
//! has them, which quinn-udp detects), and outbound connections leave from a listening
//! endpoint of the same address family when there is one (so the peer sees our listening
//! port, as libp2p peers expect and hole punching will need), else from a client-only
//! endpoint bound on demand. The TLS side is [`super::tls`]; this file knows nothing of
//! peers beyond passing the expected peer ID to the verifier.

use super::tls::{TlsConfig, TlsIdentity};
use super::TransportError;
use pheromone_core::identity::{Keypair, PeerId};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Settings of the QUIC transport.
#[derive(Debug, Clone)]
pub struct QuicConfig {
    /// Bytes a peer may send on one stream before we read them (QUIC's per-stream flow
    /// control window). Loopback and LAN paths need several megabytes to stay busy.
    pub stream_receive_window: u32,
    /// Bytes a peer may send on all streams of a connection before we read them.
    pub receive_window: u64,
    /// Bytes we keep unacknowledged in flight on one connection at most.
    pub send_window: u64,
    /// Streams a peer may have open to us at once.
    pub max_concurrent_streams: u32,
    /// A PING this often keeps an idle connection (and its NAT binding) alive.
    pub keep_alive_interval: Duration,
    /// A connection that hears nothing for this long is dead.
    pub max_idle_timeout: Duration,
    /// The largest UDP payload path MTU discovery probes for. 1452 is safe on any
    /// Ethernet path; a larger bound only costs a few lost probes where the path is
    /// narrower, and lets loopback and jumbo-frame LANs carry fewer, larger packets.
    pub mtu_upper_bound: u16,
    /// Hand quinn-udp batches to the kernel with UDP GSO where available.
    pub segmentation_offload: bool,
    /// Socket receive and send buffer sizes asked of the kernel (it may clamp them).
    pub socket_buffer: usize,
    /// Inbound handshakes in progress above which new ones must first prove their address
    /// with a stateless retry (one more round trip; keeps a spoofed flood from costing us
    /// handshake state).
    pub retry_above_pending: usize,
    /// Connection attempts quinn queues before our accept loop takes them (each holds its
    /// first packet); beyond it, new ones are refused. The accept loop takes them at once,
    /// so only a flood fills it.
    pub max_incoming: usize,
    /// Bytes of further packets quinn buffers for all connection attempts not yet taken
    /// (0-RTT and handshake data); beyond it they are dropped and retransmitted.
    pub incoming_buffer_bytes: u64,
    /// How our certificates are made.
    pub tls: TlsConfig,
}

impl Default for QuicConfig {
    fn default() -> Self {
        Self {
            stream_receive_window: 16 * 1024 * 1024,
            receive_window: 64 * 1024 * 1024,
            send_window: 64 * 1024 * 1024,
            max_concurrent_streams: 1024,
            keep_alive_interval: Duration::from_secs(10),
            max_idle_timeout: Duration::from_secs(30),
            mtu_upper_bound: 1452,
            segmentation_offload: true,
            socket_buffer: 8 * 1024 * 1024,
            retry_above_pending: 64,
            max_incoming: 4096,
            incoming_buffer_bytes: 4 << 20,
            tls: TlsConfig::default(),
        }
    }
}

impl QuicConfig {
    /// quinn's transport settings from these.
    pub fn transport_config(&self) -> quinn::TransportConfig {
        let mut t = quinn::TransportConfig::default();
        t.max_concurrent_bidi_streams(self.max_concurrent_streams.into())
            .max_concurrent_uni_streams(0u32.into())
            .stream_receive_window(self.stream_receive_window.into())
            .receive_window(
                quinn::VarInt::from_u64(self.receive_window).unwrap_or(quinn::VarInt::MAX),
            )
            .send_window(self.send_window)
            .keep_alive_interval(Some(self.keep_alive_interval))
            .max_idle_timeout(quinn::IdleTimeout::try_from(self.max_idle_timeout).ok())
            .enable_segmentation_offload(self.segmentation_offload);
        let mut mtu = quinn::MtuDiscoveryConfig::default();
        mtu.upper_bound(self.mtu_upper_bound);
        t.mtu_discovery_config(Some(mtu));
        t
    }
}

/// Binds a UDP socket for quinn: `IPV6_V6ONLY` for IPv6 (the IPv4 wildcard binds its own),
/// large buffers, non-blocking.
pub fn bind_udp(addr: SocketAddr, buffer: usize) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // The kernel clamps these to its maximum; too small a buffer drops packets in bursts.
    let _ = socket.set_recv_buffer_size(buffer);
    let _ = socket.set_send_buffer_size(buffer);
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// quinn's tokio runtime, with every task quinn spawns (the endpoint drivers, which own
/// the UDP sockets, and the connection drivers) tracked, so that closing can wait until
/// they are gone: a socket is free to bind again only once its driver has dropped it.
#[derive(Debug)]
struct TrackedRuntime {
    tasks: tokio_util::task::TaskTracker,
}

impl quinn::Runtime for TrackedRuntime {
    fn new_timer(&self, at: std::time::Instant) -> std::pin::Pin<Box<dyn quinn::AsyncTimer>> {
        quinn::TokioRuntime.new_timer(at)
    }

    fn spawn(&self, future: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>) {
        self.tasks.spawn(future);
    }

    fn wrap_udp_socket(
        &self,
        socket: std::net::UdpSocket,
    ) -> std::io::Result<Arc<dyn quinn::AsyncUdpSocket>> {
        quinn::TokioRuntime.wrap_udp_socket(socket)
    }

    fn now(&self) -> std::time::Instant {
        quinn::TokioRuntime.now()
    }
}

/// The QUIC transport of an endpoint: its quinn endpoints and configurations.
pub(crate) struct QuicTransport {
    config: QuicConfig,
    tls: TlsIdentity,
    transport: Arc<quinn::TransportConfig>,
    /// Listening endpoints, which also dial.
    listeners: Mutex<Vec<quinn::Endpoint>>,
    /// Client-only endpoints (IPv4, IPv6), bound when first needed.
    clients: Mutex<[Option<quinn::Endpoint>; 2]>,
    runtime: Arc<TrackedRuntime>,
}

impl std::fmt::Debug for QuicTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuicTransport").finish_non_exhaustive()
    }
}

impl QuicTransport {
    pub(crate) fn new(keypair: &Keypair, config: QuicConfig) -> Self {
        let tls = TlsIdentity::new(keypair, &config.tls);
        Self {
            transport: Arc::new(config.transport_config()),
            tls,
            config,
            listeners: Mutex::new(Vec::new()),
            clients: Mutex::new([None, None]),
            runtime: Arc::new(TrackedRuntime {
                tasks: tokio_util::task::TaskTracker::new(),
            }),
        }
    }

    /// Our TLS identity (also what `/tls/1.0.0` over TCP uses).
    pub(crate) fn tls(&self) -> &TlsIdentity {
        &self.tls
    }

    /// Whether AES-GCM is our first TLS cipher suite.
    pub(crate) fn prefers_aes_gcm(&self) -> bool {
        self.tls.prefers_aes_gcm()
    }

    /// The settings.
    pub(crate) fn config(&self) -> &QuicConfig {
        &self.config
    }

    fn server_config(&self) -> Result<quinn::ServerConfig, String> {
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(self.tls.server_config())
            .map_err(|e| e.to_string())?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        server.transport_config(self.transport.clone());
        server.migration(true);
        // quinn's defaults (65,536 attempts, 100 MiB) are sized for a server with memory to
        // spare; a flood of valid-looking Initials should cost us far less.
        server
            .max_incoming(self.config.max_incoming)
            .incoming_buffer_size(64 * 1024)
            .incoming_buffer_size_total(self.config.incoming_buffer_bytes);
        Ok(server)
    }

    fn endpoint(&self, addr: SocketAddr, server: bool) -> Result<quinn::Endpoint, TransportError> {
        let listen_err = |source| TransportError::Listen { addr, source };
        let socket = bind_udp(addr, self.config.socket_buffer).map_err(listen_err)?;
        let server_config = if server {
            Some(
                self.server_config()
                    .map_err(|e| listen_err(std::io::Error::other(e)))?,
            )
        } else {
            None
        };
        quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            server_config,
            socket,
            self.runtime.clone(),
        )
        .map_err(listen_err)
    }

    /// Binds a listening endpoint on `addr` (port 0 picks one); its bound address.
    pub(crate) fn listen(
        &self,
        addr: SocketAddr,
    ) -> Result<(quinn::Endpoint, SocketAddr), TransportError> {
        let endpoint = self.endpoint(addr, true)?;
        let bound = endpoint
            .local_addr()
            .map_err(|source| TransportError::Listen { addr, source })?;
        self.listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(endpoint.clone());
        Ok((endpoint, bound))
    }

    /// The endpoint to dial `addr` from: a listening one of its family (unspecified, or of
    /// the same loopback-ness), else a client endpoint.
    fn dialer_for(&self, addr: SocketAddr) -> Result<quinn::Endpoint, TransportError> {
        {
            let listeners = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
            let fits = |e: &&quinn::Endpoint| {
                e.local_addr().is_ok_and(|l| {
                    l.is_ipv4() == addr.is_ipv4()
                        && (l.ip().is_unspecified()
                            || l.ip().is_loopback() == addr.ip().is_loopback())
                })
            };
            if let Some(e) = listeners.iter().find(fits) {
                return Ok(e.clone());
            }
        }
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let slot = &mut clients[usize::from(addr.is_ipv6())];
        if let Some(e) = slot {
            return Ok(e.clone());
        }
        let any: SocketAddr = if addr.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let endpoint = self.endpoint(any, false)?;
        *slot = Some(endpoint.clone());
        Ok(endpoint)
    }

    /// Starts a connection to `addr`; with `expected`, the server must prove that peer.
    /// The handshake runs in the returned future; the address is the local socket's.
    pub(crate) fn connect(
        &self,
        addr: SocketAddr,
        expected: Option<PeerId>,
    ) -> Result<(quinn::Connecting, SocketAddr), QuicDialError> {
        let endpoint = self.dialer_for(addr).map_err(QuicDialError::Transport)?;
        let local = endpoint
            .local_addr()
            .map_err(|source| QuicDialError::Transport(TransportError::Listen { addr, source }))?;
        let crypto =
            quinn::crypto::rustls::QuicClientConfig::try_from(self.tls.client_config(expected))
                .map_err(|e| QuicDialError::Connect(e.to_string()))?;
        let mut client = quinn::ClientConfig::new(Arc::new(crypto));
        client.transport_config(self.transport.clone());
        // No SNI is sent (the TLS config disables it); quinn still wants a valid name.
        let connecting = endpoint
            .connect_with(client, addr, "l")
            .map_err(|e| QuicDialError::Connect(e.to_string()))?;
        Ok((connecting, local))
    }

    /// Closes every endpoint, telling connections still open, and waits (briefly) for
    /// the close packets to leave.
    pub(crate) async fn close(&self) {
        let mut all: Vec<quinn::Endpoint> = self
            .listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        all.extend(
            self.clients
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter_mut()
                .filter_map(Option::take),
        );
        for e in &all {
            e.close(0u32.into(), b"endpoint closed");
        }
        let idle = futures::future::join_all(all.iter().map(|e| e.wait_idle()));
        let _ = tokio::time::timeout(Duration::from_secs(1), idle).await;
        // The drivers end once the last handle is gone and their connections have drained;
        // then the sockets are closed and their ports free again. A connection handle the
        // application still holds keeps its driver (quinn's rule), so this is bounded.
        drop(all);
        self.runtime.tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(1), self.runtime.tasks.wait()).await;
    }
}

/// Why a QUIC dial could not start.
#[derive(Debug)]
pub(crate) enum QuicDialError {
    /// No socket to dial from.
    Transport(TransportError),
    /// quinn refused to start the connection.
    Connect(String),
}
