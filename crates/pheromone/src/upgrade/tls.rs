//! `/tls/1.0.0` over TCP: the TLS 1.3 handshake with the libp2p certificates, run by
//! rustls's unbuffered state machine, after which the record keys and rustls's remaining
//! state (for key updates) are taken out of it and the connection's driver seals and opens
//! records itself ([`crate::connection::secure`]).
//!
//! What rustls wants sent is gathered until it needs the peer's next flight, and sent then
//! in one write; the dialer's first flight rides with its `/tls/1.0.0` proposal, and its
//! last (its Finished) is handed back to go out with the `/yamux/1.0.0` proposal.
//! Application data the peer sent right behind its handshake is decrypted by rustls and
//! handed on as plaintext. The certificate checks are the ones QUIC uses
//! ([`crate::transport::tls`]).

// `UpgradeError` is large for a `Result`, but these run once per handshake.
#![allow(clippy::result_large_err)]

use super::{await_confirmation, drain_into, Io, Secured, UpgradeError};
use crate::connection::secure::{tls_pair, traffic_key, Kernel};
use crate::connection::Security;
use crate::transport::tls::peer_of;
use crate::transport::TlsIdentity;
use bytes::{Buf, BytesMut};
use pheromone_core::identity::PeerId;
use pheromone_core::multistream::Dialer;
use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::pki_types::ServerName;
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{ConnectionState, EncodeError, UnbufferedStatus};

/// The most handshake bytes we let rustls ask us to send at once (our flights are about
/// 1.5 KiB; this only bounds a bug).
const MAX_FLIGHT: usize = 64 * 1024;

/// The two sides' rustls connections, behind one call.
trait Unbuffered:
    std::ops::DerefMut<Target = rustls::unbuffered::UnbufferedConnectionCommon<Self::Data>>
{
    type Data;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data>;
}

impl Unbuffered for UnbufferedClientConnection {
    type Data = ClientConnectionData;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(incoming)
    }
}

impl Unbuffered for UnbufferedServerConnection {
    type Data = ServerConnectionData;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(incoming)
    }
}

/// The dialer's handshake. Returns the secured link, the client's last flight (to send
/// with the `/yamux/1.0.0` proposal) and any plaintext that arrived.
pub(super) async fn outbound(
    io: &mut Io,
    proposal: Dialer,
    tls: &TlsIdentity,
    expected: Option<PeerId>,
) -> Result<(Secured, Vec<u8>, BytesMut), UpgradeError> {
    let name = ServerName::IpAddress(io.addr.ip().into());
    let mut conn = UnbufferedClientConnection::new(tls.tcp_client_config(expected), name)
        .map_err(|e| tls_err(io.addr, &e))?;
    let (last_flight, plain) = handshake(io, &mut conn, Some(proposal)).await?;
    let remote = peer(io, &conn)?;
    let (secrets, kernel) = conn
        .dangerous_into_kernel_connection()
        .map_err(|e| tls_err(io.addr, &e))?;
    let secured = secured(io, remote, secrets, Kernel::Client(kernel))?;
    Ok((secured, last_flight, plain))
}

/// The listener's handshake, after `/tls/1.0.0` was agreed; also any plaintext that
/// arrived.
pub(super) async fn inbound(
    io: &mut Io,
    tls: &TlsIdentity,
) -> Result<(Secured, BytesMut), UpgradeError> {
    let mut conn = UnbufferedServerConnection::new(tls.tcp_server_config())
        .map_err(|e| tls_err(io.addr, &e))?;
    let (out, plain) = handshake(io, &mut conn, None).await?;
    if !out.is_empty() {
        io.write(&out).await?;
    }
    let remote = peer(io, &conn)?;
    let (secrets, kernel) = conn
        .dangerous_into_kernel_connection()
        .map_err(|e| tls_err(io.addr, &e))?;
    Ok((secured(io, remote, secrets, Kernel::Server(kernel))?, plain))
}

/// Runs the handshake until rustls may send application data. Returns what is still to be
/// sent and the plaintext that arrived. A `proposal` (the dialer's lazy `/tls/1.0.0`)
/// goes out in front of the first flight, and its answer is read before the server's.
async fn handshake<C: Unbuffered>(
    io: &mut Io,
    conn: &mut C,
    mut proposal: Option<Dialer>,
) -> Result<(Vec<u8>, BytesMut), UpgradeError> {
    let addr = io.addr;
    let mut out = Vec::new();
    let mut plain = BytesMut::new();
    if let Some(p) = proposal.as_mut() {
        drain_into(&mut out, || p.poll_transmit());
    }
    loop {
        let UnbufferedStatus { discard, state } = conn.process(&mut io.buf);
        let state = match state {
            Ok(state) => state,
            Err(e) => return Err(tls_err(addr, &e)),
        };
        let (blocked, done) = match state {
            ConnectionState::EncodeTlsData(mut encode) => {
                let at = out.len();
                out.resize(at + 4096, 0);
                let written = loop {
                    match encode.encode(&mut out[at..]) {
                        Ok(n) => break n,
                        Err(EncodeError::InsufficientSize(e))
                            if at + e.required_size <= MAX_FLIGHT =>
                        {
                            out.resize(at + e.required_size, 0)
                        }
                        Err(e) => {
                            return Err(UpgradeError::Tls {
                                addr,
                                reason: e.to_string(),
                            })
                        }
                    }
                };
                out.truncate(at + written);
                (false, false)
            }
            // Sent once rustls needs the peer's answer, or with what follows the handshake.
            ConnectionState::TransmitTlsData(transmit) => {
                transmit.done();
                (false, false)
            }
            ConnectionState::ReadTraffic(mut traffic) => {
                while let Some(record) = traffic.next_record() {
                    let record = record.map_err(|e| tls_err(addr, &e))?;
                    plain.extend_from_slice(record.payload);
                }
                (false, false)
            }
            ConnectionState::BlockedHandshake => (true, false),
            ConnectionState::WriteTraffic(_) => (false, true),
            other => {
                return Err(UpgradeError::Tls {
                    addr,
                    reason: format!("unexpected TLS state during the handshake: {other:?}"),
                })
            }
        };
        io.buf.advance(discard);
        if done {
            return Ok((out, plain));
        }
        if blocked {
            if !out.is_empty() {
                io.write(&out).await?;
                out.clear();
            }
            match proposal.take() {
                Some(mut p) => await_confirmation(io, &mut p).await?,
                None => io.read_more().await?,
            }
        }
    }
}

/// The peer's verified public key (rustls's verifier checked the certificate).
fn peer(
    io: &Io,
    conn: &rustls::unbuffered::UnbufferedConnectionCommon<impl Sized>,
) -> Result<pheromone_core::identity::PublicKey, UpgradeError> {
    let certs = conn.peer_certificates().unwrap_or_default();
    peer_of(certs).map_err(|e| UpgradeError::Tls {
        addr: io.addr,
        reason: e.to_string(),
    })
}

/// The record layer with the negotiated keys.
fn secured(
    io: &Io,
    remote_key: pheromone_core::identity::PublicKey,
    secrets: rustls::ExtractedSecrets,
    kernel: Kernel,
) -> Result<Secured, UpgradeError> {
    let (tx_seq, tx) = secrets.tx;
    let (rx_seq, rx) = secrets.rx;
    let (sealer, opener) = traffic_key(tx_seq, tx)
        .and_then(|tx| traffic_key(rx_seq, rx).map(|rx| (tx, rx)))
        .and_then(|(tx, rx)| tls_pair(&tx, &rx, kernel))
        .map_err(|e| io.secure_err(e))?;
    Ok(Secured {
        sealer,
        opener,
        remote_peer: remote_key.to_peer_id(),
        remote_key,
        security: Security::Tls,
    })
}

/// rustls's error, with the certificate problem spelled out when that was it.
fn tls_err(addr: std::net::SocketAddr, e: &rustls::Error) -> UpgradeError {
    let reason = match e {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) => {
            format!("certificate refused: {}", other.0)
        }
        other => other.to_string(),
    };
    UpgradeError::Tls { addr, reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::Socket;
    use pheromone_core::identity::Keypair;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Moves what a buffered rustls connection wants sent to the socket, and reads until
    /// `done` holds, feeding rustls.
    async fn pump(
        conn: &mut rustls::ClientConnection,
        socket: &mut tokio::net::TcpStream,
        mut done: impl FnMut(&mut rustls::ClientConnection) -> bool,
    ) {
        for _ in 0..100 {
            let mut out = Vec::new();
            while conn.wants_write() {
                conn.write_tls(&mut out).expect("write_tls");
            }
            socket.write_all(&out).await.expect("write");
            if done(conn) {
                return;
            }
            let mut buf = vec![0u8; 64 * 1024];
            let n = socket.read(&mut buf).await.expect("read");
            assert!(n > 0, "our side closed");
            let mut slice = &buf[..n];
            while !slice.is_empty() {
                conn.read_tls(&mut slice).expect("read_tls");
                conn.process_new_packets().expect("process");
            }
        }
        panic!("rustls peer made no progress");
    }

    /// Our record layer against plain rustls (as libp2p-tls runs it): the handshake, data
    /// both ways, and a key update the rustls peer asks for — we must follow its new key,
    /// answer with our own `KeyUpdate` before our next data, and seal under the new key.
    #[tokio::test]
    async fn our_records_follow_a_rustls_peer_through_a_key_update() {
        let ours = TlsIdentity::new(
            &Keypair::generate(&mut rand::rngs::OsRng),
            &Default::default(),
        );
        let theirs_key = Keypair::generate(&mut rand::rngs::OsRng);
        let theirs = TlsIdentity::new(&theirs_key, &Default::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (socket, remote) = listener.accept().await.expect("accept");
            let mut io = Io {
                socket: Socket::Tcp(socket),
                buf: BytesMut::new(),
                addr: remote,
            };
            let (secured, plain) = inbound(&mut io, &ours).await.expect("handshake");
            (io, secured, plain)
        });
        let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let mut client = rustls::ClientConnection::new(
            theirs.client_config(None),
            ServerName::IpAddress(addr.ip().into()),
        )
        .expect("client");
        pump(&mut client, &mut socket, |c| !c.is_handshaking()).await;
        let (mut io, secured, mut plain) = server.await.expect("join");
        assert_eq!(secured.remote_peer, theirs_key.peer_id());
        assert_eq!(secured.security, Security::Tls);
        let Secured {
            mut sealer,
            mut opener,
            ..
        } = secured;

        // Their data, their key update (asking for ours), more data.
        use std::io::Write as _;
        client.writer().write_all(b"before ").expect("write");
        client.refresh_traffic_keys().expect("key update");
        client.writer().write_all(b"after").expect("write");
        pump(&mut client, &mut socket, |_| true).await;
        while plain.len() < b"before after".len() {
            while let Some(data) = opener.open(&mut io.buf).expect("open") {
                plain.extend_from_slice(&data);
            }
            if plain.len() < b"before after".len() {
                io.read_more().await.expect("read");
            }
        }
        assert_eq!(&plain[..], b"before after");

        // Our answer: a KeyUpdate first, then data under the new key.
        assert!(sealer.control_len() > 0, "the requested update is due");
        let mut wire = vec![0u8; sealer.control_len()];
        let n = sealer.seal_control_into(&mut wire).expect("key update");
        wire.truncate(n);
        assert_eq!(sealer.control_len(), 0);
        let mut data = BytesMut::new();
        sealer.seal(b"reply", &mut data).expect("seal");
        wire.extend_from_slice(&data);
        io.write(&wire).await.expect("write");
        let mut got = Vec::new();
        pump(&mut client, &mut socket, |c| {
            let mut buf = [0u8; 64];
            if let Ok(n) = std::io::Read::read(&mut c.reader(), &mut buf) {
                got.extend_from_slice(&buf[..n]);
            }
            got.len() >= 5
        })
        .await;
        assert_eq!(got, b"reply");
    }

    /// A dialer that offers TLS to a peer whose certificate does not prove the peer ID it
    /// expects is refused with an error naming the certificate problem.
    #[tokio::test]
    async fn a_wrong_peer_is_refused_by_name() {
        let ours = TlsIdentity::new(
            &Keypair::generate(&mut rand::rngs::OsRng),
            &Default::default(),
        );
        let server_id = TlsIdentity::new(
            &Keypair::generate(&mut rand::rngs::OsRng),
            &Default::default(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (socket, remote) = listener.accept().await.expect("accept");
            let mut io = Io {
                socket: Socket::Tcp(socket),
                buf: BytesMut::new(),
                addr: remote,
            };
            let mut listener = pheromone_core::multistream::Listener::new(vec![
                pheromone_core::tls::PROTOCOL_ID.to_owned(),
            ])
            .expect("listener");
            loop {
                listener.handle_input_with(&mut io.buf, |_| true);
                let mut out = Vec::new();
                drain_into(&mut out, || listener.poll_transmit());
                io.write(&out).await.expect("write");
                if listener.poll_outcome().is_some() {
                    break;
                }
                io.read_more().await.expect("read");
            }
            inbound(&mut io, &server_id).await.map(|_| ())
        });
        let socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let mut io = Io {
            socket: Socket::Tcp(socket),
            buf: BytesMut::new(),
            addr,
        };
        let someone_else = Keypair::generate(&mut rand::rngs::OsRng).peer_id();
        let proposal = Dialer::lazy(pheromone_core::tls::PROTOCOL_ID.to_owned()).expect("dialer");
        let error = match outbound(&mut io, proposal, &ours, Some(someone_else)).await {
            Ok(_) => panic!("a wrong peer must be refused"),
            Err(e) => e.to_string(),
        };
        assert!(error.contains("certificate refused"), "{error}");
        assert!(error.contains(&someone_else.to_string()), "{error}");
        drop(io);
        let _ = server.await;
    }
}
