//! Turning a fresh TCP socket into an authenticated, encrypted, multiplexed [`Connection`].
//!
//! The sequence is libp2p's: multistream-select picks `/noise`, the Noise XX handshake
//! authenticates both peer IDs, multistream-select (now encrypted) picks `/yamux/1.0.0`, and
//! a yamux session starts. The dialer uses the lazy form of multistream-select both times,
//! so its first Noise message rides with the `/noise` proposal and the `/yamux/1.0.0`
//! proposal rides with Noise message 3: after the TCP handshake a connection costs one
//! round trip before the first stream's data flows. The listener's confirmation of
//! `/yamux/1.0.0` is checked by the driver before any yamux frame is accepted.
//!
//! Everything here runs under the endpoint's handshake timeout; the protocol logic lives
//! in [`pheromone_core`], this file only moves bytes.

use crate::connection::driver::Driver;
use crate::connection::{Connection, ConnectionId, ConnectionInfo, Direction, Shared, Socket};
use crate::endpoint::EndpointConfig;
use crate::negotiate::{self, NegotiateError};
use bytes::BytesMut;
use pheromone_core::identity::{Keypair, PeerId};
use pheromone_core::multistream::{Dialer, Listener};
use pheromone_core::noise::{
    self, Handshake, HandshakeConfig, NoiseError, NoiseReceiver, NoiseSender, StaticKey,
};
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

struct Io {
    socket: Socket,
    buf: BytesMut,
    addr: SocketAddr,
}

impl Io {
    async fn read_more(&mut self) -> Result<(), UpgradeError> {
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

    async fn write(&mut self, bytes: &[u8]) -> Result<(), UpgradeError> {
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

    fn negotiate_err(&self, source: impl Into<NegotiateError>) -> UpgradeError {
        UpgradeError::Negotiate {
            addr: self.addr,
            source: source.into(),
        }
    }
}

/// Upgrades a socket we dialled. With `expected`, the remote must authenticate as that peer.
pub(crate) async fn outbound(
    socket: Socket,
    identity: (&Keypair, &StaticKey),
    expected: Option<PeerId>,
    config: &EndpointConfig,
) -> Result<Upgraded, UpgradeError> {
    let addr = socket.peer_addr();
    let upgrade = outbound_inner(socket, addr, identity, expected, config);
    with_timeout(addr, config.handshake_timeout, upgrade).await
}

/// Upgrades a socket we accepted.
pub(crate) async fn inbound(
    socket: Socket,
    identity: (&Keypair, &StaticKey),
    config: &EndpointConfig,
) -> Result<Upgraded, UpgradeError> {
    let addr = socket.peer_addr();
    let upgrade = inbound_inner(socket, addr, identity, config);
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
    (keypair, static_key): (&Keypair, &StaticKey),
    expected: Option<PeerId>,
    config: &EndpointConfig,
) -> Result<Upgraded, UpgradeError> {
    let mut io = Io {
        socket,
        buf: BytesMut::with_capacity(4096),
        addr,
    };
    let mut security =
        Dialer::lazy(noise::PROTOCOL_ID.to_owned()).map_err(|e| io.negotiate_err(e))?;
    let mut hs_config = HandshakeConfig::new(keypair, [0; 32], x25519_secret())
        .with_static_key(static_key)
        .with_aes_gcm(config.connection.aes_gcm);
    if let Some(peer) = expected {
        hs_config = hs_config.with_expected_remote(peer);
    }
    let mut handshake = Handshake::initiator(hs_config);

    // `/multistream/1.0.0`, `/noise` and Noise message 1 in one segment.
    let mut out = Vec::new();
    drain_into(&mut out, || security.poll_transmit());
    drain_into(&mut out, || handshake.poll_transmit());
    io.write(&out).await?;

    // The listener's confirmation of `/noise`.
    loop {
        security.handle_input(&mut io.buf);
        if let Some(outcome) = security.poll_outcome() {
            outcome.map_err(|e| io.negotiate_err(e))?;
            break;
        }
        io.read_more().await?;
    }

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
    let (transport, remote_peer, remote_key) =
        handshake.into_transport().map_err(|e| io.noise_err(e))?;
    let noise::NoiseTransport {
        mut sender,
        receiver,
    } = transport;

    // `/multistream/1.0.0` + `/yamux/1.0.0`, encrypted, behind Noise message 3.
    let mut muxer = Dialer::lazy(YAMUX_PROTOCOL.to_owned()).map_err(|e| io.negotiate_err(e))?;
    let mut plain = Vec::new();
    drain_into(&mut plain, || muxer.poll_transmit());
    let mut wire = BytesMut::from(&final_message[..]);
    sender
        .encrypt(&plain, &mut wire)
        .map_err(|e| io.noise_err(e))?;
    io.write(&wire).await?;

    let info = connection_info(&io, (remote_peer, remote_key), Direction::Outbound, &sender);
    Ok(start(
        io,
        info,
        yamux::Mode::Client,
        (sender, receiver),
        Some(muxer),
        BytesMut::new(),
        config,
    ))
}

async fn inbound_inner(
    socket: Socket,
    addr: SocketAddr,
    (keypair, static_key): (&Keypair, &StaticKey),
    config: &EndpointConfig,
) -> Result<Upgraded, UpgradeError> {
    let mut io = Io {
        socket,
        buf: BytesMut::with_capacity(4096),
        addr,
    };
    let security = vec![noise::PROTOCOL_ID.to_owned()];
    negotiate::run_listener(&mut io.socket, &mut io.buf, security, |p| {
        p == noise::PROTOCOL_ID
    })
    .await
    .map_err(|e| io.negotiate_err(e))?;

    let mut handshake = Handshake::responder(
        HandshakeConfig::new(keypair, [0; 32], x25519_secret())
            .with_static_key(static_key)
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
    let (transport, remote_peer, remote_key) =
        handshake.into_transport().map_err(|e| io.noise_err(e))?;
    let noise::NoiseTransport {
        mut sender,
        mut receiver,
    } = transport;

    // The encrypted `/yamux/1.0.0` proposal; what follows it is the first yamux input.
    let mut listener =
        Listener::new(vec![YAMUX_PROTOCOL.to_owned()]).map_err(|e| io.negotiate_err(e))?;
    let mut plain = BytesMut::new();
    loop {
        while let Some(frame) = receiver
            .decrypt_frame(&mut io.buf)
            .map_err(|e| io.noise_err(e))?
        {
            plain.extend_from_slice(&frame);
        }
        listener.handle_input_with(&mut plain, |p| p == YAMUX_PROTOCOL);
        let mut out = Vec::new();
        drain_into(&mut out, || listener.poll_transmit());
        if !out.is_empty() {
            let mut wire = BytesMut::new();
            sender
                .encrypt(&out, &mut wire)
                .map_err(|e| io.noise_err(e))?;
            io.write(&wire).await?;
        }
        if let Some(outcome) = listener.poll_outcome() {
            outcome.map_err(|e| io.negotiate_err(e))?;
            break;
        }
        io.read_more().await?;
    }

    let info = connection_info(&io, (remote_peer, remote_key), Direction::Inbound, &sender);
    Ok(start(
        io,
        info,
        yamux::Mode::Server,
        (sender, receiver),
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

fn connection_info(
    io: &Io,
    (remote_peer, remote_public_key): (PeerId, pheromone_core::identity::PublicKey),
    direction: Direction,
    sender: &NoiseSender,
) -> ConnectionInfo {
    ConnectionInfo {
        cipher: sender.cipher(),
        id: ConnectionId::next(),
        remote_peer,
        remote_public_key,
        remote_addr: io.addr,
        local_addr: io.socket.local_addr(),
        direction,
        relay: io.socket.relay(),
        transport: if io.socket.relay().is_some() {
            crate::connection::Transport::Relay
        } else {
            crate::connection::Transport::Tcp
        },
        security: crate::connection::Security::Noise,
    }
}

/// Builds the session, the shared state, the handle and the driver.
fn start(
    io: Io,
    info: ConnectionInfo,
    mode: yamux::Mode,
    (sender, receiver): (NoiseSender, NoiseReceiver),
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
        (sender, receiver),
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
