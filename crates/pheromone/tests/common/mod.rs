//! Helpers shared by the integration tests: endpoints on 127.0.0.1 and an echo protocol.

#![allow(dead_code)]

pub mod raw;
#[path = "../transports/mod.rs"]
pub mod transports;

use futures::FutureExt;
use pheromone::{
    Access, Connection, ConnectionError, Endpoint, EndpointConfig, EndpointEvent, Keypair,
    Multiaddr, PeerId,
};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Once};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub const ECHO: &str = "/test/echo/1.0.0";

/// An endpoint listening on an ephemeral loopback port (of the conformance run's transport,
/// TCP outside one), answering the echo protocol.
pub async fn endpoint() -> (Endpoint, Multiaddr) {
    endpoint_with(EndpointConfig::default()).await
}

pub async fn endpoint_with(mut config: EndpointConfig) -> (Endpoint, Multiaddr) {
    config.tcp_security = transports::tcp_security();
    let endpoint = Endpoint::new(Keypair::generate(&mut rand::rngs::OsRng), config);
    let addr = endpoint
        .listen(&transports::listen_multiaddr())
        .expect("listen");
    endpoint.set_handler(
        ECHO,
        Arc::new(|_conn, mut stream| {
            async move {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = stream.shutdown().await;
            }
            .boxed()
        }),
        Access::Open,
    );
    (endpoint, addr)
}

/// Deterministic test payload.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// The endpoint's connection with `peer`, once its upgrade has finished.
pub async fn connection_from(endpoint: &Endpoint, peer: PeerId) -> Connection {
    loop {
        if let Some(c) = endpoint
            .connections()
            .into_iter()
            .find(|c| c.remote_peer() == peer)
        {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Writes `data` to an echoing stream and closes our side while reading everything that
/// comes back.
pub async fn echo_round_trip<S: AsyncRead + AsyncWrite>(stream: S, data: &[u8]) -> Vec<u8> {
    let (mut r, mut w) = tokio::io::split(stream);
    let writer = async {
        w.write_all(data).await.expect("write");
        w.shutdown().await.expect("close our side");
    };
    let reader = async {
        let mut back = Vec::with_capacity(data.len());
        r.read_to_end(&mut back).await.expect("read the echo");
        back
    };
    let ((), back) = tokio::join!(writer, reader);
    back
}

/// The handshake timeout of the listeners the hostile tests attack.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// Settings of an attacked listener: short handshake and stream negotiation timeouts so that
/// stalls are cut off quickly.
pub fn hostile_config() -> EndpointConfig {
    EndpointConfig {
        handshake_timeout: HANDSHAKE_TIMEOUT,
        stream_negotiation_timeout: Duration::from_secs(1),
        ..EndpointConfig::default()
    }
}

/// Settings of a listener that never times a handshake out within a test: a socket it
/// closes, it closed because of what it received.
pub fn patient_config() -> EndpointConfig {
    EndpointConfig {
        handshake_timeout: Duration::from_secs(3600),
        ..hostile_config()
    }
}

/// A listener with `config` and its TCP address (for raw sockets).
pub async fn listener_with(config: EndpointConfig) -> (Endpoint, Multiaddr, SocketAddr) {
    install_panic_counter();
    let (endpoint, addr) = endpoint_with(config).await;
    let socket = addr.tcp_socket_addr().expect("tcp address");
    (endpoint, addr, socket)
}

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// Counts panics on every thread, including the endpoint's tasks, whose panics a test
/// would otherwise never see. The default hook still prints them.
pub fn install_panic_counter() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            default(info);
        }));
    });
}

/// Fails if anything in this test process panicked.
pub fn assert_no_panics() {
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "something panicked");
}

/// A well-behaved peer dials the listener, pings and identifies it: the listener survived
/// whatever came before. Also checks that nothing panicked.
pub async fn assert_still_serves(listener: &Endpoint, addr: &Multiaddr) {
    let peer = Endpoint::new(
        Keypair::generate(&mut rand::rngs::OsRng),
        EndpointConfig::default(),
    );
    let conn = peer.dial(addr).await.expect("well-behaved dial");
    assert_eq!(conn.remote_peer(), listener.peer_id());
    peer.ping(&conn).await.expect("well-behaved ping");
    let info = peer.identify(&conn).await.expect("well-behaved identify");
    assert_eq!(info.public_key, listener.keypair().public());
    peer.close().await;
    assert_no_panics();
}

/// Waits for the listener to report the end of the connection from `remote` (our raw
/// socket's local address); panics after `limit`.
pub async fn connection_closed(
    events: &mut tokio::sync::broadcast::Receiver<EndpointEvent>,
    remote: SocketAddr,
    limit: Duration,
) -> ConnectionError {
    tokio::time::timeout(limit, async {
        loop {
            match events.recv().await.expect("endpoint events") {
                EndpointEvent::ConnectionClosed { info, error } if info.remote_addr == remote => {
                    return error
                }
                _ => continue,
            }
        }
    })
    .await
    .expect("the listener did not report the connection closed in time")
}
