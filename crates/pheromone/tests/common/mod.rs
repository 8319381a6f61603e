//! Helpers shared by the integration tests: endpoints on 127.0.0.1 and an echo protocol.

#![allow(dead_code)]

use futures::FutureExt;
use pheromone::{Access, Connection, Endpoint, EndpointConfig, Keypair, Multiaddr, PeerId};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub const ECHO: &str = "/test/echo/1.0.0";

/// An endpoint listening on an ephemeral loopback port, answering the echo protocol.
pub async fn endpoint() -> (Endpoint, Multiaddr) {
    endpoint_with(EndpointConfig::default()).await
}

pub async fn endpoint_with(config: EndpointConfig) -> (Endpoint, Multiaddr) {
    let endpoint = Endpoint::new(Keypair::generate(&mut rand::rngs::OsRng), config);
    let addr = endpoint
        .listen(&"/ip4/127.0.0.1/tcp/0".parse().expect("addr"))
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
