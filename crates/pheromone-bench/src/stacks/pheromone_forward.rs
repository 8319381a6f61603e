//! pheromone's port forwarding: the throughput of a TCP connection forwarded through two
//! `Node`s (`forward` on one, `expose` on the other) against the same bulk transfer on a
//! raw stream between the same two nodes, in the same run.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{ensure, Context as _, Result};
use pheromone::forward::Forwards;
use pheromone::node::{Access, Node, Peer};
use pheromone::Stream;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::{
    report::ForwardResult,
    workload::{self, AbortOnDrop, Measure},
};

/// The name printed in the `stack` field.
pub const NAME: &str = "pheromone";
const RAW: &str = "/bench/raw/1.0.0";
/// Each transfer runs this many times, alternating, and the fastest of each is kept (its
/// wall and CPU time): the machine is shared, and a single slow slice should not decide
/// the ratio.
const ROUNDS: usize = 2;

/// Forwarded vs raw-stream throughput of `total` bytes.
pub async fn forward(total: u64) -> Result<ForwardResult> {
    let (done_tx, mut done_rx) = mpsc::channel::<u64>(4);
    let raw_done = done_tx.clone();
    let exposer = Node::builder()
        .listen("/ip4/127.0.0.1/tcp/0")
        .handle_streams(RAW, move |_peer: Peer, mut stream: Stream| {
            let done = raw_done.clone();
            async move {
                if let Ok(got) = workload::sink_bulk(&mut stream).await {
                    let _ = done.send(got).await;
                }
            }
        })
        .build()
        .await?;
    let forwarder = Node::builder().build().await?;
    forwarder
        .add_contact("exposer", &exposer.listen_addrs()[0])
        .await
        .context("route")?;

    // The service behind the exposed name: the same sink, over plain TCP.
    let sink = TcpListener::bind("127.0.0.1:0").await?;
    let target = sink.local_addr()?;
    let _sink_task = AbortOnDrop(tokio::spawn(async move {
        while let Ok((mut tcp, _)) = sink.accept().await {
            let _ = tcp.set_nodelay(true);
            let done = done_tx.clone();
            tokio::spawn(async move {
                if let Ok(got) = workload::sink_bulk(&mut tcp).await {
                    let _ = done.send(got).await;
                }
            });
        }
    }));
    let exposes = Forwards::new(&exposer);
    exposes.expose(
        "bench",
        target,
        Access::AllowList([forwarder.peer_id()].into_iter().collect()),
    )?;
    let forwards = Forwards::new(&forwarder);
    let listen: SocketAddr = "127.0.0.1:0".parse()?;
    let local = forwards
        .forward("bench", exposer.peer_id(), listen)
        .await?
        .listen;

    // Warm-up of both paths (connection, windows, allocator), not timed.
    let warm = (total / 16).clamp(1, 16 << 20);
    raw_once(&forwarder, &exposer, warm, &mut done_rx).await?;
    forwarded_once(local, warm, &mut done_rx).await?;

    let (mut raw, mut fwd) = (
        (Duration::MAX, Duration::ZERO),
        (Duration::MAX, Duration::ZERO),
    );
    for _ in 0..ROUNDS {
        raw = raw.min(raw_once(&forwarder, &exposer, total, &mut done_rx).await?);
        fwd = fwd.min(forwarded_once(local, total, &mut done_rx).await?);
    }
    forwards.close().await;
    exposes.close().await;
    forwarder.close().await;
    exposer.close().await;
    Ok(ForwardResult::new(NAME, total, fwd, raw))
}

/// One bulk transfer on a raw stream; its wall and process CPU time.
async fn raw_once(
    from: &Node,
    to: &Node,
    total: u64,
    done: &mut mpsc::Receiver<u64>,
) -> Result<(Duration, Duration)> {
    let mut stream = from.open_stream(to.peer_id(), RAW).await?;
    let measure = Measure::start();
    workload::send_bulk(&mut stream, total).await?;
    let times = measure.stop();
    let got = done.recv().await.context("raw receiver stopped")?;
    ensure!(got == total, "raw receiver got {got} of {total} bytes");
    Ok(times)
}

/// One bulk transfer on a TCP connection to the forwarded port; its wall and process CPU
/// time.
async fn forwarded_once(
    local: SocketAddr,
    total: u64,
    done: &mut mpsc::Receiver<u64>,
) -> Result<(Duration, Duration)> {
    let mut tcp = TcpStream::connect(local).await?;
    tcp.set_nodelay(true)?;
    let measure = Measure::start();
    workload::send_bulk(&mut tcp, total).await?;
    let times = measure.stop();
    let got = done.recv().await.context("forwarded receiver stopped")?;
    ensure!(
        got == total,
        "forwarded receiver got {got} of {total} bytes"
    );
    Ok(times)
}
