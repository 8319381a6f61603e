//! Turning a fresh TCP socket into an authenticated, encrypted, multiplexed [`Connection`].
//!
//! The sequence is libp2p's: multistream-select picks a security protocol — `/noise` (the
//! Noise XX handshake, here) or `/tls/1.0.0` (TLS 1.3 with the libp2p certificates,
//! `tls.rs`) — which authenticates both peer IDs, multistream-select (now encrypted) picks
//! `/yamux/1.0.0`, and a yamux session starts. The listener accepts either security
//! protocol; the dialer proposes the one [`TcpSecurity`] names, alone, in the lazy form of
//! multistream-select, so its first handshake message rides with the proposal, and the
//! `/yamux/1.0.0` proposal rides with its last: after the TCP handshake a Noise connection
//! costs one round trip before the first stream's data flows (TLS 1.3: one and a half).
//! The listener's confirmation of `/yamux/1.0.0` is checked by the driver before any yamux
//! frame is accepted. A listener that refuses the proposal has read the handshake bytes
//! behind it as garbage, so the fallback to the other protocol is a new dial
//! ([`UpgradeError::is_security_refused`], used by the endpoint).
//!
//! Everything here runs under the endpoint's handshake timeout; the protocol logic lives
//! in [`pheromone_core`] and rustls, this file only moves bytes.

mod tls;

use crate::connection::driver::Driver;
use crate::connection::secure::{Opener, Sealer};
use crate::connection::{
    Connection, ConnectionId, ConnectionInfo, Direction, Security, Shared, Socket,
};
use crate::endpoint::EndpointConfig;
use crate::negotiate::{self, NegotiateError};
use crate::transport::TlsIdentity;
use bytes::BytesMut;
use pheromone_core::identity::{Keypair, PeerId};
use pheromone_core::multistream::NegotiationError;
use pheromone_core::multistream::{Dialer, Listener};
use pheromone_core::noise::{self, Handshake, HandshakeConfig, NoiseError, StaticKey};
use pheromone_core::yamux::{self, Session};
use rand::RngCore;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The multiplexer protocol we negotiate.
pub const YAMUX_PROTOCOL: &str = "/yamux/1.0.0";

/// Why an upgrade failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum UpgradeError {
    /// The socket failed mid-handshake.
    #[error("handshake with {addr} failed: {source}")]
    Io {
        /// The remote address.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The remote closed the socket mid-handshake.
    #[error("{addr} closed the connection during the handshake")]
    Eof {
        /// The remote address.
        addr: SocketAddr,
    },
    /// Security or multiplexer negotiation failed (the remote speaks neither `/noise` nor
    /// `/yamux/1.0.0`, or is not speaking multistream-select at all).
    #[error("negotiation with {addr} failed: {source}")]
    Negotiate {
        /// The remote address.
        addr: SocketAddr,
        /// What went wrong.
        source: NegotiateError,
    },
    /// The Noise handshake failed: bad signature, wrong peer, garbage.
    #[error("Noise handshake with {addr} failed: {source}")]
    Noise {
        /// The remote address.
        addr: SocketAddr,
        /// What went wrong.
        source: NoiseError,
    },
    /// The TLS handshake over TCP failed: a certificate refused (bad signature, wrong peer,
    /// unsupported key), no common cipher suite or ALPN, or bytes that are not TLS.
    #[error("TLS handshake with {addr} failed: {reason}")]
    Tls {
        /// The remote address.
        addr: SocketAddr,
        /// What went wrong (rustls's error, naming the certificate problem).
        reason: String,
    },
    /// The QUIC handshake failed: TLS (a certificate refused, wrong peer, no common
    /// ALPN), the peer closed, or it did not answer.
    #[error("QUIC handshake with {addr} failed: {reason}")]
    Quic {
        /// The remote address.
        addr: SocketAddr,
        /// What went wrong (the certificate error, when that was it).
        reason: String,
    },
    /// The resource manager refused it (handshakes, circuits or connections at a limit).
    #[error(transparent)]
    Resource(#[from] crate::resources::ResourceError),
    /// The whole upgrade did not finish in time (a peer that stalls mid-handshake).
    #[error("handshake with {addr} did not finish within {timeout:?}")]
    Timeout {
        /// The remote address.
        addr: SocketAddr,
        /// The limit.
        timeout: Duration,
    },
}

impl UpgradeError {
    /// Whether the listener refused the security protocol we proposed (it answered `na`):
    /// a new dial with the other one may succeed.
    pub fn is_security_refused(&self) -> bool {
        matches!(
            self,
            UpgradeError::Negotiate {
                source: NegotiateError::Negotiation(NegotiationError::ProtocolRejected { protocol }),
                ..
            } if protocol == noise::PROTOCOL_ID || protocol == pheromone_core::tls::PROTOCOL_ID
        )
    }
}

/// The security protocol a TCP dialer proposes (the listener accepts both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TcpSecurity {
    /// `/noise` (the default: libp2p's common ground, and the fastest handshake), with
    /// `/tls/1.0.0` on a second dial when the listener refuses it.
    #[default]
    Noise,
    /// `/tls/1.0.0`, with `/noise` on a second dial when the listener refuses it.
    Tls,
}

impl TcpSecurity {
    /// The other one (what a refused dial falls back to).
    pub fn other(self) -> Self {
        match self {
            TcpSecurity::Noise => TcpSecurity::Tls,
            TcpSecurity::Tls => TcpSecurity::Noise,
        }
    }

    /// The multistream-select protocol ID.
    pub fn protocol_id(self) -> &'static str {
        match self {
            TcpSecurity::Noise => noise::PROTOCOL_ID,
            TcpSecurity::Tls => pheromone_core::tls::PROTOCOL_ID,
        }
    }
}

/// Our side of the security handshakes: the identity key, the Noise static key and the
/// TLS configurations.
#[derive(Clone, Copy)]
pub(crate) struct LocalKeys<'a> {
    pub(crate) keypair: &'a Keypair,
    pub(crate) static_key: &'a StaticKey,
    pub(crate) tls: &'a TlsIdentity,
}

/// What a finished security handshake hands the muxer negotiation.
pub(super) struct Secured {
    sealer: Sealer,
    opener: Opener,
    remote_peer: PeerId,
    remote_key: pheromone_core::identity::PublicKey,
    security: Security,
}

/// An upgraded connection and the driver future that must be spawned to run it.
pub(crate) struct Upgraded {
    pub(crate) connection: Connection,
    /// `None` for QUIC, which quinn drives.
    pub(crate) driver: Option<Driver>,
}

/// A fresh X25519 secret from the OS RNG: the ephemeral key of one handshake, or the
/// static key of an endpoint.
pub(crate) fn x25519_secret() -> [u8; 32] {
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    secret
}

/// The endpoint's static Noise key, its public half and its signed payload, made once:
/// the identity is proven by the signature, so the key need not change per connection.
pub(crate) fn static_key(keypair: &Keypair) -> StaticKey {
    StaticKey::new(keypair, x25519_secret(), &[])
}

pub(super) struct Io {
    socket: Socket,
    buf: BytesMut,
    addr: SocketAddr,
}

impl Io {
    pub(super) async fn read_more(&mut self) -> Result<(), UpgradeError> {
        let n = self
            .socket
            .read_buf(&mut self.buf)
            .await
            .map_err(|source| UpgradeError::Io {
                addr: self.addr,
                source,
            })?;
        if n == 0 {
            return Err(UpgradeError::Eof { addr: self.addr });
        }
        Ok(())
    }

    pub(super) async fn write(&mut self, bytes: &[u8]) -> Result<(), UpgradeError> {
        self.socket
            .write_all(bytes)
            .await
            .map_err(|source| UpgradeError::Io {
                addr: self.addr,
                source,
            })
    }

    fn noise_err(&self, source: NoiseError) -> UpgradeError {
        UpgradeError::Noise {
            addr: self.addr,
            source,
        }
    }

    pub(super) fn secure_err(
        &self,
        source: crate::connection::secure::SecureError,
    ) -> UpgradeError {
        use crate::connection::secure::SecureError;
        match source {
            SecureError::Noise(source) => self.noise_err(source),
            other => UpgradeError::Tls {
                addr: self.addr,
                reason: other.to_string(),
            },
        }
    }

    pub(super) fn negotiate_err(&self, source: impl Into<NegotiateError>) -> UpgradeError {
        UpgradeError::Negotiate {
            addr: self.addr,
            source: source.into(),
        }
    }
}

/// Upgrades a socket we dialled, proposing `security`. With `expected`, the remote must
/// authenticate as that peer.
pub(crate) async fn outbound(
    socket: Socket,
    keys: LocalKeys<'_>,
    expected: Option<PeerId>,
    security: TcpSecurity,
    config: &EndpointConfig,
) -> Result<Upgraded, UpgradeError> {
    let addr = socket.peer_addr();
    let upgrade = outbound_inner(socket, addr, keys, expected, security, config);
    with_timeout(addr, config.handshake_timeout, upgrade).await
}

/// Upgrades a socket we accepted, with whichever security protocol the dialer proposes.
pub(crate) async fn inbound(
    socket: Socket,
    keys: LocalKeys<'_>,
    config: &EndpointConfig,
) -> Result<Upgraded, UpgradeError> {
    let addr = socket.peer_addr();
    let upgrade = inbound_inner(socket, addr, keys, config);
    with_timeout(addr, config.handshake_timeout, upgrade).await
}

async fn with_timeout<T>(
    addr: SocketAddr,
    timeout: Duration,
    fut: impl std::future::Future<Output = Result<T, UpgradeError>>,
) -> Result<T, UpgradeError> {
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| UpgradeError::Timeout { addr, timeout })?
}

async fn outbound_inner(
    socket: Socket,
    addr: SocketAddr,
    keys: LocalKeys<'_>,
    expected: Option<PeerId>,
    security: TcpSecurity,
    config: &EndpointConfig,
) -> Result<Upgraded, UpgradeError> {
    let mut io = Io {
        socket,
        buf: BytesMut::with_capacity(4096),
        addr,
    };
    let proposal =
        Dialer::lazy(security.protocol_id().to_owned()).map_err(|e| io.negotiate_err(e))?;
    let (mut secured, final_message, plaintext) = match security {
        TcpSecurity::Noise => {
            let (secured, last) = noise_outbound(&mut io, proposal, keys, expected, config).await?;
            (secured, last, BytesMut::new())
        }
        TcpSecurity::Tls => tls::outbound(&mut io, proposal, keys.tls, expected).await?,
    };

    // `/multistream/1.0.0` + `/yamux/1.0.0`, encrypted, behind the handshake's last message.
    let mut muxer = Dialer::lazy(YAMUX_PROTOCOL.to_owned()).map_err(|e| io.negotiate_err(e))?;
    let mut plain = Vec::new();
    drain_into(&mut plain, || muxer.poll_transmit());
    let mut wire = BytesMut::from(&final_message[..]);
    secured
        .sealer
        .seal(&plain, &mut wire)
        .map_err(|e| io.secure_err(e))?;
    io.write(&wire).await?;

    let info = connection_info(&io, &secured, Direction::Outbound);
    Ok(start(
        io,
        info,
        yamux::Mode::Client,
        secured,
        Some(muxer),
        plaintext,
        config,
    ))
}

/// Waits for the listener's answer to a lazy security proposal.
pub(super) async fn await_confirmation(
    io: &mut Io,
    proposal: &mut Dialer,
) -> Result<(), UpgradeError> {
    loop {
        proposal.handle_input(&mut io.buf);
        if let Some(outcome) = proposal.poll_outcome() {
            outcome.map_err(|e| io.negotiate_err(e))?;
            return Ok(());
        }
        io.read_more().await?;
    }
}

/// The dialer's Noise XX handshake; also returns message 3, held back to share a segment
/// with the `/yamux/1.0.0` proposal.
async fn noise_outbound(
    io: &mut Io,
    mut proposal: Dialer,
    keys: LocalKeys<'_>,
    expected: Option<PeerId>,
    config: &EndpointConfig,
) -> Result<(Secured, Vec<u8>), UpgradeError> {
    let mut hs_config = HandshakeConfig::new(keys.keypair, [0; 32], x25519_secret())
        .with_static_key(keys.static_key)
        .with_aes_gcm(config.connection.aes_gcm);
    if let Some(peer) = expected {
        hs_config = hs_config.with_expected_remote(peer);
    }
    let mut handshake = Handshake::initiator(hs_config);

    // `/multistream/1.0.0`, `/noise` and Noise message 1 in one segment.
    let mut out = Vec::new();
    drain_into(&mut out, || proposal.poll_transmit());
    drain_into(&mut out, || handshake.poll_transmit());
    io.write(&out).await?;
    await_confirmation(io, &mut proposal).await?;

    // Noise message 2 in, message 3 out (held back to share a segment with `/yamux`).
    let final_message = loop {
        handshake
            .handle_input(&mut io.buf)
            .map_err(|e| io.noise_err(e))?;
        let mut out = Vec::new();
        drain_into(&mut out, || handshake.poll_transmit());
        if handshake.is_complete() {
            break out;
        }
        if !out.is_empty() {
            io.write(&out).await?;
        }
        io.read_more().await?;
    };
    Ok((noise_secured(io, handshake)?, final_message))
}

/// The two halves and the proven peer of a completed Noise handshake.
#[allow(clippy::result_large_err)] // once per handshake
fn noise_secured(io: &Io, handshake: Handshake) -> Result<Secured, UpgradeError> {
    let (transport, remote_peer, remote_key) =
        handshake.into_transport().map_err(|e| io.noise_err(e))?;
    let noise::NoiseTransport { sender, receiver } = transport;
    Ok(Secured {
        sealer: Sealer::Noise(sender),
        opener: Opener::Noise(receiver),
        remote_peer,
        remote_key,
        security: Security::Noise,
    })
}

/// The listener's Noise XX handshake, after `/noise` was agreed.
async fn noise_inbound(
    io: &mut Io,
    keys: LocalKeys<'_>,
    config: &EndpointConfig,
) -> Result<Secured, UpgradeError> {
    let mut handshake = Handshake::responder(
        HandshakeConfig::new(keys.keypair, [0; 32], x25519_secret())
            .with_static_key(keys.static_key)
            .with_aes_gcm(config.connection.aes_gcm),
    );
    loop {
        handshake
            .handle_input(&mut io.buf)
            .map_err(|e| io.noise_err(e))?;
        let mut out = Vec::new();
        drain_into(&mut out, || handshake.poll_transmit());
        if !out.is_empty() {
            io.write(&out).await?;
        }
        if handshake.is_complete() {
            break;
        }
        io.read_more().await?;
    }
    noise_secured(io, handshake)
}

async fn inbound_inner(
    socket: Socket,
    addr: SocketAddr,
    keys: LocalKeys<'_>,
    config: &EndpointConfig,
) -> Result<Upgraded, UpgradeError> {
    let mut io = Io {
        socket,
        buf: BytesMut::with_capacity(4096),
        addr,
    };
    let offered = vec![
        noise::PROTOCOL_ID.to_owned(),
        pheromone_core::tls::PROTOCOL_ID.to_owned(),
    ];
    let chosen = negotiate::run_listener(&mut io.socket, &mut io.buf, offered, |p| {
        p == noise::PROTOCOL_ID || p == pheromone_core::tls::PROTOCOL_ID
    })
    .await
    .map_err(|e| io.negotiate_err(e))?;
    let (mut secured, mut plain) = if chosen == noise::PROTOCOL_ID {
        (noise_inbound(&mut io, keys, config).await?, BytesMut::new())
    } else {
        tls::inbound(&mut io, keys.tls).await?
    };

    // The encrypted `/yamux/1.0.0` proposal; what follows it is the first yamux input.
    let mut listener =
        Listener::new(vec![YAMUX_PROTOCOL.to_owned()]).map_err(|e| io.negotiate_err(e))?;
    loop {
        while let Some(frame) = secured
            .opener
            .open(&mut io.buf)
            .map_err(|e| io.secure_err(e))?
        {
            plain.extend_from_slice(&frame);
        }
        listener.handle_input_with(&mut plain, |p| p == YAMUX_PROTOCOL);
        let mut out = Vec::new();
        drain_into(&mut out, || listener.poll_transmit());
        if !out.is_empty() {
            let mut wire = BytesMut::new();
            secured
                .sealer
                .seal(&out, &mut wire)
                .map_err(|e| io.secure_err(e))?;
            io.write(&wire).await?;
        }
        if let Some(outcome) = listener.poll_outcome() {
            outcome.map_err(|e| io.negotiate_err(e))?;
            break;
        }
        io.read_more().await?;
    }

    let info = connection_info(&io, &secured, Direction::Inbound);
    Ok(start(
        io,
        info,
        yamux::Mode::Server,
        secured,
        None,
        plain,
        config,
    ))
}

fn drain_into(out: &mut Vec<u8>, mut next: impl FnMut() -> Option<bytes::Bytes>) {
    while let Some(bytes) = next() {
        out.extend_from_slice(&bytes);
    }
}

fn connection_info(io: &Io, secured: &Secured, direction: Direction) -> ConnectionInfo {
    ConnectionInfo {
        cipher: secured.sealer.cipher(),
        id: ConnectionId::next(),
        remote_peer: secured.remote_peer,
        remote_public_key: secured.remote_key,
        remote_addr: io.addr,
        local_addr: io.socket.local_addr(),
        direction,
        relay: io.socket.relay(),
        transport: if io.socket.relay().is_some() {
            crate::connection::Transport::Relay
        } else {
            crate::connection::Transport::Tcp
        },
        security: secured.security,
    }
}

/// Builds the session, the shared state, the handle and the driver.
fn start(
    io: Io,
    info: ConnectionInfo,
    mode: yamux::Mode,
    secured: Secured,
    muxer_confirmation: Option<Dialer>,
    plaintext: BytesMut,
    config: &EndpointConfig,
) -> Upgraded {
    let session = Session::new(mode, config.connection.yamux.clone(), Instant::now());
    let shared = Arc::new(Shared::new(
        session,
        io.socket,
        info.remote_peer,
        config.connection.send_buffer_high_water,
    ));
    let driver = Driver::new(
        shared.clone(),
        (secured.sealer, secured.opener),
        (io.buf, plaintext),
        muxer_confirmation,
        config.connection.close_grace,
        usize::try_from(config.resources.max_memory_per_connection).unwrap_or(usize::MAX),
    );
    Upgraded {
        connection: Connection::new(shared, info),
        driver: Some(driver),
    }
}
