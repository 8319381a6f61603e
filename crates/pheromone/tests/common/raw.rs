//! A hand-rolled libp2p dialer over a raw `TcpStream`, built from `pheromone_core` pieces
//! with no `Endpoint`: it can stop anywhere in the upgrade, or finish it and then send any
//! yamux bytes it likes. This is the attacker of the hostile-input tests; it checks nothing
//! it does not have to, and never panics on what the listener sends (the tests decide).

use bytes::{Bytes, BytesMut};
use pheromone_core::identity::Keypair;
use pheromone_core::multistream::{wire::Message, Dialer};
use pheromone_core::noise::{self, Handshake, HandshakeConfig, NoiseReceiver, NoiseSender};
use pheromone_core::yamux::frame::{self as yframe, Flags, Frame, FrameType, Header};
use rand::RngCore;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// The multiplexer our listener negotiates.
pub const YAMUX: &str = "/yamux/1.0.0";

/// Bytes of one multistream message (`varint len ‖ text ‖ \n`).
pub fn ms_message(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    match text {
        "/multistream/1.0.0" => Message::Header.encode(&mut out),
        other => Message::Protocol(other).encode(&mut out),
    }
    out
}

/// `/multistream/1.0.0` + `protocol`, what a lazy dialer sends first.
pub fn ms_proposal(protocol: &str) -> Vec<u8> {
    let mut out = ms_message("/multistream/1.0.0");
    out.extend_from_slice(&ms_message(protocol));
    out
}

/// A fresh initiator handshake for `identity`, with secrets from the OS RNG.
pub fn initiator(identity: &Keypair) -> Handshake {
    let mut rng = rand::rngs::OsRng;
    let (mut s, mut e) = ([0u8; 32], [0u8; 32]);
    rng.fill_bytes(&mut s);
    rng.fill_bytes(&mut e);
    Handshake::initiator(HandshakeConfig::new(identity, s, e))
}

/// Everything a handshake wants sent, concatenated.
pub fn drain(hs: &mut Handshake) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(b) = hs.poll_transmit() {
        out.extend_from_slice(&b);
    }
    out
}

/// How a socket ended when we waited for the listener to close it.
#[derive(Debug)]
pub struct Closed {
    /// Bytes the listener sent before closing.
    pub received: Vec<u8>,
}

/// Reads until the listener closes the socket (EOF or reset), collecting what it sent.
/// Panics if the socket is still open after `limit`: the listener failed to drop us.
pub async fn wait_for_close(socket: &mut TcpStream, limit: Duration) -> Closed {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let outcome = tokio::time::timeout(limit, async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        outcome.is_ok(),
        "listener kept the socket open for {limit:?} (received {} bytes)",
        received.len()
    );
    Closed { received }
}

/// Reads from `socket` into `buf` until `done(buf)` holds; panics on close or after `limit`.
pub async fn read_until(
    socket: &mut TcpStream,
    buf: &mut BytesMut,
    limit: Duration,
    mut done: impl FnMut(&mut BytesMut) -> bool,
) {
    tokio::time::timeout(limit, async {
        while !done(buf) {
            let n = socket.read_buf(buf).await.expect("read");
            assert!(n > 0, "listener closed the socket early");
        }
    })
    .await
    .expect("listener did not answer in time");
}

/// Runs the unencrypted part of the upgrade: `/noise` (lazy) and Noise messages 1 and 2.
/// Returns the socket, the handshake with message 3 queued, and what was read past
/// message 2. `tamper` may change the handshake before it answers message 2 (to forge the
/// payload of message 3).
pub async fn handshake_until_msg3(
    addr: SocketAddr,
    identity: &Keypair,
    tamper: impl FnOnce(&mut Handshake),
) -> (TcpStream, Handshake, BytesMut) {
    let socket = TcpStream::connect(addr).await.expect("connect");
    handshake_on(socket, identity, tamper).await
}

/// A TCP connection to `addr` from the local address `from` (any port): loopback offers
/// all of 127.0.0.0/8, so one machine can play many hosts.
pub async fn connect_from(from: std::net::IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(addr).await
}

/// [`handshake_until_msg3`] on a socket already connected.
pub async fn handshake_on(
    mut socket: TcpStream,
    identity: &Keypair,
    tamper: impl FnOnce(&mut Handshake),
) -> (TcpStream, Handshake, BytesMut) {
    let mut hs = initiator(identity);
    tamper(&mut hs);
    let mut first = ms_proposal(noise::PROTOCOL_ID);
    first.extend_from_slice(&drain(&mut hs));
    socket.write_all(&first).await.expect("write");
    let mut security = Dialer::lazy(noise::PROTOCOL_ID.to_owned()).expect("dialer");
    let _ = security.poll_transmit();
    let mut buf = BytesMut::new();
    let limit = Duration::from_secs(5);
    read_until(&mut socket, &mut buf, limit, |buf| {
        security.handle_input(buf);
        match security.poll_outcome() {
            Some(outcome) => {
                outcome.expect("listener accepts /noise");
                true
            }
            None => false,
        }
    })
    .await;
    read_until(&mut socket, &mut buf, limit, |buf| {
        hs.handle_input(buf).expect("listener's message 2 verifies");
        hs.remote_peer().is_some()
    })
    .await;
    (socket, hs, buf)
}

/// Something the reader half saw from the listener after the upgrade.
#[derive(Debug)]
pub enum Incoming {
    /// The listener confirmed `/yamux/1.0.0`.
    Confirmed,
    /// A yamux frame.
    Frame(Frame),
    /// The socket ended; why, in words.
    Closed(String),
}

/// A client that completed (its side of) the upgrade and speaks raw yamux frames.
pub struct RawConn {
    pub local_addr: SocketAddr,
    write: OwnedWriteHalf,
    sender: NoiseSender,
    incoming: mpsc::UnboundedReceiver<Incoming>,
    confirmed: bool,
    reader: tokio::task::JoinHandle<()>,
}

impl RawConn {
    /// Dials and upgrades like a well-behaved peer (lazy `/noise`, Noise XX, lazy
    /// `/yamux/1.0.0` riding with message 3). The listener's confirmation is checked by the
    /// reader task; see [`RawConn::wait_confirmed`].
    pub async fn connect(addr: SocketAddr, identity: &Keypair) -> Self {
        Self::connect_with(addr, identity, |_| {}).await
    }

    /// As [`RawConn::connect`], with `tamper` applied to the handshake before message 3.
    pub async fn connect_with(
        addr: SocketAddr,
        identity: &Keypair,
        tamper: impl FnOnce(&mut Handshake),
    ) -> Self {
        let socket = TcpStream::connect(addr).await.expect("connect");
        Self::upgrade(socket, identity, tamper).await
    }

    /// As [`RawConn::connect`], from the local address `from`.
    pub async fn connect_from(
        from: std::net::IpAddr,
        addr: SocketAddr,
        identity: &Keypair,
    ) -> Self {
        let socket = connect_from(from, addr).await.expect("connect");
        Self::upgrade(socket, identity, |_| {}).await
    }

    async fn upgrade(
        socket: TcpStream,
        identity: &Keypair,
        tamper: impl FnOnce(&mut Handshake),
    ) -> Self {
        let (socket, mut hs, leftover) = handshake_on(socket, identity, tamper).await;
        let msg3 = drain(&mut hs);
        assert!(hs.is_complete());
        let (transport, _, _) = hs.into_transport().expect("transport");
        let noise::NoiseTransport {
            mut sender,
            receiver,
        } = transport;
        let mut wire = BytesMut::from(&msg3[..]);
        sender
            .encrypt(&ms_proposal(YAMUX), &mut wire)
            .expect("encrypt");
        let local_addr = socket.local_addr().expect("local addr");
        let (read, mut write) = socket.into_split();
        write.write_all(&wire).await.expect("write");
        let (tx, incoming) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read_loop(read, receiver, leftover, tx));
        Self {
            local_addr,
            write,
            sender,
            incoming,
            confirmed: false,
            reader,
        }
    }

    /// Stops reading the socket for good: whatever the listener sends now piles up in the
    /// kernel buffers and then in the listener. (Dropping the read half leaves the socket
    /// open.)
    pub fn stop_reading(&mut self) {
        self.reader.abort();
    }

    /// Encrypts `plain` (any bytes; split into Noise frames) and writes it.
    pub async fn send_plain(&mut self, plain: &[u8]) -> std::io::Result<()> {
        let mut wire = BytesMut::new();
        self.sender
            .encrypt(plain, &mut wire)
            .map_err(std::io::Error::other)?;
        self.write.write_all(&wire).await
    }

    /// Writes bytes as they are, outside Noise.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.write.write_all(bytes).await
    }

    /// Sends yamux frames (header, body) in one write.
    pub async fn send_frames(&mut self, frames: &[(Header, &[u8])]) -> std::io::Result<()> {
        let mut plain = BytesMut::new();
        for (header, body) in frames {
            header.encode(&mut plain);
            plain.extend_from_slice(body);
        }
        self.send_plain(&plain).await
    }

    /// The next thing the listener sent; panics after `limit`.
    pub async fn next(&mut self, limit: Duration) -> Incoming {
        let next = tokio::time::timeout(limit, self.incoming.recv())
            .await
            .expect("nothing from the listener in time");
        let next = next.unwrap_or_else(|| Incoming::Closed("reader gone".into()));
        if matches!(next, Incoming::Confirmed) {
            self.confirmed = true;
        }
        next
    }

    /// Waits for the listener's `/yamux/1.0.0` confirmation.
    pub async fn wait_confirmed(&mut self, limit: Duration) {
        while !self.confirmed {
            match self.next(limit).await {
                Incoming::Confirmed => {}
                Incoming::Closed(why) => panic!("closed before confirming yamux: {why}"),
                Incoming::Frame(f) => panic!("frame before the yamux confirmation: {f:?}"),
            }
        }
    }

    /// Collects frames until the listener closes the socket; panics after `limit`.
    pub async fn wait_closed(&mut self, limit: Duration) -> Vec<Frame> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut frames = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Incoming::Confirmed => {}
                Incoming::Frame(f) => frames.push(f),
                Incoming::Closed(_) => return frames,
            }
        }
    }

    /// Frames for `stream` until `done` says stop; other frames go to `others`.
    pub async fn frames_for(
        &mut self,
        stream: u32,
        limit: Duration,
        others: &mut Vec<Frame>,
        mut done: impl FnMut(&Frame) -> bool,
    ) -> Vec<Frame> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut mine = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Incoming::Confirmed => {}
                Incoming::Frame(f) if f.header.stream_id == stream => {
                    let stop = done(&f);
                    mine.push(f);
                    if stop {
                        return mine;
                    }
                }
                Incoming::Frame(f) => others.push(f),
                Incoming::Closed(why) => panic!("closed while waiting on stream {stream}: {why}"),
            }
        }
    }

    /// Sends a yamux ping and waits for its answer: proof that the session is alive.
    pub async fn yamux_ping(&mut self, opaque: u32, limit: Duration) {
        self.send_frames(&[(Header::ping(Flags::SYN, opaque), &[])])
            .await
            .expect("send ping");
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Incoming::Frame(f)
                    if f.header.frame_type == FrameType::Ping
                        && f.header.flags.contains(Flags::ACK)
                        && f.header.length == opaque =>
                {
                    return
                }
                Incoming::Closed(why) => panic!("closed while waiting for a pong: {why}"),
                _ => {}
            }
        }
    }

    /// Opens stream `id`, negotiates `/ipfs/ping/1.0.0` on it and checks one ping echo,
    /// all in raw frames: proof that the connection still serves streams.
    pub async fn ping_protocol(&mut self, id: u32, limit: Duration) {
        let mut payload = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut payload);
        let mut body = ms_proposal("/ipfs/ping/1.0.0");
        body.extend_from_slice(&payload);
        let len = body.len() as u32;
        self.send_frames(&[
            (Header::window_update(id, Flags::SYN, 0), &[]),
            (Header::data(id, Flags::NONE, len), &body),
        ])
        .await
        .expect("send ping stream");
        let mut dialer = Dialer::lazy("/ipfs/ping/1.0.0".to_owned()).expect("dialer");
        let _ = dialer.poll_transmit();
        let mut received = BytesMut::new();
        let mut negotiated = false;
        let mut others = Vec::new();
        self.frames_for(id, limit, &mut others, |f| {
            assert!(
                !f.header.flags.contains(Flags::RST),
                "listener reset the ping stream"
            );
            received.extend_from_slice(&f.body);
            if !negotiated {
                dialer.handle_input(&mut received);
                match dialer.poll_outcome() {
                    Some(Ok(_)) => negotiated = true,
                    Some(Err(e)) => panic!("ping refused: {e}"),
                    None => return false,
                }
            }
            received.len() >= payload.len()
        })
        .await;
        assert_eq!(&received[..], &payload[..], "ping echo differs");
        // Close our side; the listener's ping handler then ends the stream too.
        let _ = self
            .send_frames(&[(Header::window_update(id, Flags::FIN, 0), &[])])
            .await;
    }
}

/// The reader half: checks the yamux confirmation, then decodes frames until the socket
/// ends. Everything goes to the channel; nothing here panics.
async fn read_loop(
    mut read: OwnedReadHalf,
    mut receiver: NoiseReceiver,
    mut cipher: BytesMut,
    tx: mpsc::UnboundedSender<Incoming>,
) {
    let mut plain = BytesMut::new();
    let mut confirmation = Dialer::lazy(YAMUX.to_owned()).ok();
    if let Some(d) = confirmation.as_mut() {
        let _ = d.poll_transmit();
    }
    loop {
        loop {
            match receiver.decrypt_frame(&mut cipher) {
                Ok(Some(frame)) => plain.extend_from_slice(&frame),
                Ok(None) => break,
                Err(e) => {
                    let _ = tx.send(Incoming::Closed(format!("listener sent bad Noise: {e}")));
                    return;
                }
            }
        }
        if let Some(d) = confirmation.as_mut() {
            d.handle_input(&mut plain);
            match d.poll_outcome() {
                Some(Ok(_)) => {
                    confirmation = None;
                    let _ = tx.send(Incoming::Confirmed);
                }
                Some(Err(e)) => {
                    let _ = tx.send(Incoming::Closed(format!("yamux refused: {e}")));
                    return;
                }
                None => {}
            }
        }
        if confirmation.is_none() {
            loop {
                match yframe::decode(&mut plain, 64 << 20) {
                    Ok(Some(frame)) => {
                        let _ = tx.send(Incoming::Frame(frame));
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let _ = tx.send(Incoming::Closed(format!("bad frame from listener: {e}")));
                        return;
                    }
                }
            }
        }
        match read.read_buf(&mut cipher).await {
            Ok(0) => {
                let _ = tx.send(Incoming::Closed("eof".into()));
                return;
            }
            Ok(_) => {}
            Err(e) => {
                let _ = tx.send(Incoming::Closed(format!("read error: {e}")));
                return;
            }
        }
    }
}

/// A data frame body of `len` bytes (for window tests).
pub fn body(len: usize) -> Bytes {
    Bytes::from(vec![0x5a; len])
}
