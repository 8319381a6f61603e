//! pheromone: TCP + Noise XX + yamux of our own, streams opened with lazy
//! multistream-select, on two endpoints in this process; the same benches over TCP +
//! TLS 1.3 + yamux (`pheromone-tls`) and over QUIC v1 (`pheromone-quic`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{ensure, Context as _, Result};
use futures::FutureExt;
use pheromone::{Access, Connection, Endpoint, EndpointConfig, Keypair, Multiaddr, Stream};
use tokio::sync::mpsc;

use crate::{
    report::{ConnectResult, RrResult, ThroughputResult},
    workload::{self, Measure},
};

/// The name printed in the `stack` field.
pub const NAME: &str = "pheromone";
/// The name of the TCP + TLS 1.3 + yamux variant.
pub const NAME_TLS: &str = "pheromone-tls";
/// The name of the QUIC variant.
pub const NAME_QUIC: &str = "pheromone-quic";

/// Which link the pheromone endpoints use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// TCP, Noise, yamux.
    Noise,
    /// TCP, `/tls/1.0.0`, yamux.
    Tls,
    /// QUIC v1.
    Quic,
}

impl Link {
    fn name(self) -> &'static str {
        match self {
            Link::Noise => NAME,
            Link::Tls => NAME_TLS,
            Link::Quic => NAME_QUIC,
        }
    }

    fn listen(self) -> &'static str {
        match self {
            Link::Noise | Link::Tls => "/ip4/127.0.0.1/tcp/0",
            Link::Quic => "/ip4/127.0.0.1/udp/0/quic-v1",
        }
    }
}
const BENCH: &str = "/bench/1.0.0";
const PING: &str = "/ipfs/ping/1.0.0";

/// Set by `--no-aes-gcm`: the endpoints do not offer AES-256-GCM, so the transport is
/// ChaCha20-Poly1305 whatever the CPU.
static NO_AES_GCM: AtomicBool = AtomicBool::new(false);

/// Makes every pheromone endpoint of this process skip the AES-256-GCM offer.
pub fn disable_aes_gcm() {
    NO_AES_GCM.store(true, Ordering::Relaxed);
}

/// The endpoint settings every pheromone stack runs with.
pub fn endpoint_config() -> EndpointConfig {
    let mut config = EndpointConfig::default();
    if NO_AES_GCM.load(Ordering::Relaxed) {
        config.connection.aes_gcm = false;
    }
    config
}

/// A client endpoint and a server endpoint whose `BENCH` handler is `serve`.
async fn pair<F, Fut>(link: Link, serve: F) -> Result<(Endpoint, Endpoint, Multiaddr)>
where
    F: Fn(Stream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut config = endpoint_config();
    if link == Link::Tls {
        config.tcp_security = pheromone::TcpSecurity::Tls;
    }
    let server = Endpoint::new(Keypair::generate(&mut rand::rngs::OsRng), config.clone());
    let addr = server.listen(&link.listen().parse()?)?;
    let serve = Arc::new(serve);
    server.set_handler(
        BENCH,
        Arc::new(move |_conn, stream| serve(stream).boxed()),
        Access::Open,
    );
    let client = Endpoint::new(Keypair::generate(&mut rand::rngs::OsRng), config);
    Ok((client, server, addr))
}

/// Closes both endpoints, so nothing of this bench (connections, keep-alive timers,
/// listeners, buffers) is left running under the next one in the process.
async fn close_pair(client: &Endpoint, server: &Endpoint) {
    client.close().await;
    server.close().await;
}

async fn dial(client: &Endpoint, addr: &Multiaddr) -> Result<Connection> {
    client.dial(addr).await.context("dial")
}

/// Bulk transfer of `total` bytes over one stream.
pub async fn throughput(link: Link, total: u64) -> Result<ThroughputResult> {
    let (done_tx, mut done_rx) = mpsc::channel(1);
    let (client, server, addr) = pair(link, move |mut stream| {
        let done = done_tx.clone();
        async move {
            if let Ok(got) = workload::sink_bulk(&mut stream).await {
                let _ = done.send(got).await;
            }
        }
    })
    .await?;
    let conn = dial(&client, &addr).await?;
    let mut stream = client.open_stream(&conn, BENCH).await?;
    let measure = Measure::start();
    workload::send_bulk(&mut stream, total).await?;
    let (wall, cpu) = measure.stop();
    let got = done_rx.recv().await.context("receiver stopped")?;
    ensure!(got == total, "receiver got {got} of {total} bytes");
    let cipher = conn.info().cipher.as_str();
    drop(stream);
    close_pair(&client, &server).await;
    Ok(ThroughputResult::new(link.name(), total, wall, cpu).with_cipher(cipher))
}

/// `requests` round trips of 64 bytes over `concurrency` streams of one connection.
pub async fn request_response(link: Link, concurrency: usize, requests: usize) -> Result<RrResult> {
    let (client, server, addr) = pair(link, |stream| async move {
        let _ = workload::echo(stream).await;
    })
    .await?;
    let conn = dial(&client, &addr).await?;
    let mut streams = Vec::with_capacity(concurrency.max(1));
    for _ in 0..concurrency.max(1) {
        streams.push(client.open_stream(&conn, BENCH).await?);
    }
    let (mut latencies, wall) = workload::rr_on_streams(streams, requests).await?;
    close_pair(&client, &server).await;
    Ok(RrResult::new(
        link.name(),
        concurrency.max(1),
        &mut latencies,
        wall,
    ))
}

/// `n` sequential connections: dial, full upgrade, one `/ipfs/ping/1.0.0`, close.
pub async fn connect(link: Link, n: usize) -> Result<ConnectResult> {
    let (client, server, addr) = pair(link, |_stream| async {}).await?;
    let mut latencies = Vec::with_capacity(n);
    let start = Instant::now();
    for _ in 0..n {
        let t0 = Instant::now();
        let conn = dial(&client, &addr).await?;
        let mut stream = client.open_stream(&conn, PING).await?;
        workload::ping(&mut stream).await?;
        latencies.push(t0.elapsed());
        drop(stream);
        conn.close().await;
    }
    let wall = start.elapsed();
    close_pair(&client, &server).await;
    Ok(ConnectResult::new(link.name(), &mut latencies, wall))
}
