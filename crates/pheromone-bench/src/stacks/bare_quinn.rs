//! Bare quinn: QUIC v1 with no libp2p layer — no multistream-select, one bidirectional
//! stream straight to the workload — in the best configuration we know: pheromone's QUIC
//! transport settings (16 MiB stream and 64 MiB connection windows, GSO, 8 MiB socket
//! buffers) and TLS 1.3 with AES-GCM first where the CPU has AES instructions. The TLS
//! certificates are the libp2p ones (they only cost in the handshake). This is the
//! ceiling `pheromone-quic` is measured against.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{ensure, Context as _, Result};
use pheromone::transport::{bind_udp, QuicConfig, TlsConfig, TlsIdentity};
use pheromone::Keypair;
use tokio::sync::mpsc;

use crate::{
    report::{ConnectResult, RrResult, ThroughputResult},
    workload::{self, AbortOnDrop, Measure},
};

/// The name printed in the `stack` field.
pub const NAME: &str = "quinn";

/// A quinn stream's two halves as one tokio IO object.
type Bi = tokio::io::Join<quinn::RecvStream, quinn::SendStream>;

fn bi((send, recv): (quinn::SendStream, quinn::RecvStream)) -> Bi {
    tokio::io::join(recv, send)
}

/// A server endpoint that hands every accepted stream to `serve`, and a client endpoint.
struct Pair {
    client: quinn::Endpoint,
    server: quinn::Endpoint,
    addr: SocketAddr,
    _accept: AbortOnDrop<()>,
}

impl Pair {
    async fn new<F, Fut>(serve: F) -> Result<Self>
    where
        F: Fn(Bi) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let config = QuicConfig::default();
        let transport = Arc::new(config.transport_config());
        let tls = TlsIdentity::new(
            &Keypair::generate(&mut rand::rngs::OsRng),
            &TlsConfig::default(),
        );
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls.server_config())?;
        let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        server_config.transport_config(transport.clone());
        let runtime = Arc::new(quinn::TokioRuntime);
        let server = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(server_config),
            bind_udp("127.0.0.1:0".parse()?, config.socket_buffer)?,
            runtime.clone(),
        )?;
        let addr = server.local_addr()?;
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls.client_config(None))?;
        let mut client_config = quinn::ClientConfig::new(Arc::new(crypto));
        client_config.transport_config(transport);
        let mut client = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            None,
            bind_udp("127.0.0.1:0".parse()?, config.socket_buffer)?,
            runtime,
        )?;
        client.set_default_client_config(client_config);
        let serve = Arc::new(serve);
        let accepting = server.clone();
        let accept = AbortOnDrop(tokio::spawn(async move {
            while let Some(incoming) = accepting.accept().await {
                let serve = serve.clone();
                tokio::spawn(async move {
                    let Ok(conn) = incoming.await else { return };
                    while let Ok(stream) = conn.accept_bi().await {
                        tokio::spawn(serve(bi(stream)));
                    }
                });
            }
        }));
        Ok(Self {
            client,
            server,
            addr,
            _accept: accept,
        })
    }

    async fn connect(&self) -> Result<quinn::Connection> {
        Ok(self.client.connect(self.addr, "l")?.await?)
    }

    async fn close(self) {
        self.client.close(0u32.into(), b"");
        self.server.close(0u32.into(), b"");
    }
}

/// Bulk transfer of `total` bytes on one stream.
pub async fn throughput(total: u64) -> Result<ThroughputResult> {
    let (done_tx, mut done_rx) = mpsc::channel(1);
    let pair = Pair::new(move |mut stream| {
        let done = done_tx.clone();
        async move {
            if let Ok(got) = workload::sink_bulk(&mut stream).await {
                let _ = done.send(got).await;
            }
        }
    })
    .await?;
    let conn = pair.connect().await?;
    let mut stream = bi(conn.open_bi().await?);
    let measure = Measure::start();
    workload::send_bulk(&mut stream, total).await?;
    let (wall, cpu) = measure.stop();
    let got = done_rx.recv().await.context("receiver stopped")?;
    ensure!(got == total, "receiver got {got} of {total} bytes");
    drop(stream);
    pair.close().await;
    Ok(ThroughputResult::new(NAME, total, wall, cpu))
}

/// `requests` round trips of 64 bytes over `concurrency` streams of one connection.
pub async fn request_response(concurrency: usize, requests: usize) -> Result<RrResult> {
    let pair = Pair::new(|stream| async move {
        let _ = workload::echo(stream).await;
    })
    .await?;
    let conn = pair.connect().await?;
    let mut streams = Vec::with_capacity(concurrency.max(1));
    for _ in 0..concurrency.max(1) {
        streams.push(bi(conn.open_bi().await?));
    }
    let (mut latencies, wall) = workload::rr_on_streams(streams, requests).await?;
    pair.close().await;
    Ok(RrResult::new(
        NAME,
        concurrency.max(1),
        &mut latencies,
        wall,
    ))
}

/// `n` sequential connections: QUIC handshake, one stream with one 32-byte ping, close.
pub async fn connect(n: usize) -> Result<ConnectResult> {
    let pair = Pair::new(|stream| async move {
        let _ = workload::echo(stream).await;
    })
    .await?;
    let mut latencies = Vec::with_capacity(n);
    let start = Instant::now();
    for _ in 0..n {
        let t0 = Instant::now();
        let conn = pair.connect().await?;
        let mut stream = bi(conn.open_bi().await?);
        workload::ping(&mut stream).await?;
        latencies.push(t0.elapsed());
        drop(stream);
        conn.close(0u32.into(), b"");
    }
    let wall = start.elapsed();
    pair.close().await;
    Ok(ConnectResult::new(NAME, &mut latencies, wall))
}
