//! pheromone's node layer: `Node::dispatch` with an echo handler, in long mode (one
//! pooled connection, a stream per request) and short mode (a connection per request),
//! `dispatch_all` to many in-process peers, and resident memory after many dispatches.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _, Result};
use bytes::Bytes;
use pheromone::node::{ConnectionMode, HandlerResult, Node, NodeStream, Peer};

use crate::{
    report::{self, DispatchAllResult, DispatchMemoryResult, DispatchResult},
    workload::{self, AbortOnDrop},
};

/// The name printed in the `stack` field.
pub const NAME: &str = "pheromone";
const PROTOCOL: &str = "/bench/rr/1.0.0";
/// The raw-stream echo the long-mode dispatch figure is compared with.
const RAW: &str = "/bench/raw/1.0.0";

async fn echo(_peer: Peer, request: Bytes) -> HandlerResult {
    Ok(Some(request))
}

/// A server with the echo handler and a client with a route to it, both in `mode`.
/// How long the client keeps an unused request stream: short, so the memory bench can
/// check that none is left once they expire (a dispatch loop never leaves one idle that
/// long).
const KEPT_STREAM_IDLE: Duration = Duration::from_millis(300);

async fn pair(mode: ConnectionMode) -> Result<(Node, Node)> {
    let server = Node::builder()
        .mode(mode)
        .listen("/ip4/127.0.0.1/tcp/0")
        .handle_requests(PROTOCOL, echo)
        .handle_streams(RAW, |_peer, stream| async move {
            let _ = workload::echo(stream).await;
        })
        .build()
        .await?;
    let client = Node::builder()
        .mode(mode)
        .request_stream_idle(KEPT_STREAM_IDLE)
        .build()
        .await?;
    client
        .add_contact("server", &server.listen_addrs()[0])
        .await
        .context("route")?;
    Ok((client, server))
}

/// Runs `per_task` sequential dispatches on each of `concurrency` tasks; every latency and
/// the wall time from the common start.
async fn run(
    client: &Node,
    target: pheromone::PeerId,
    concurrency: usize,
    per_task: usize,
) -> Result<(Vec<Duration>, Duration)> {
    let message = Bytes::from(workload::pattern(workload::MESSAGE));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let client = client.clone();
        let message = message.clone();
        tasks.push(AbortOnDrop(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_task);
            for _ in 0..per_task {
                let t0 = Instant::now();
                let reply = client.dispatch(target, PROTOCOL, message.clone()).await?;
                latencies.push(t0.elapsed());
                ensure!(reply == message, "echo mismatch");
            }
            Ok::<_, anyhow::Error>(latencies)
        })));
    }
    let mut all = Vec::with_capacity(per_task * concurrency);
    for task in tasks {
        all.extend(task.join().await??);
    }
    Ok((all, start.elapsed()))
}

/// Blocks each kind of run is split into, alternating, so that both see the same machine.
const INTERLEAVED_BLOCKS: usize = 16;

/// `requests` 64-byte dispatches with `concurrency` in flight on one long connection,
/// against the same round trips on `concurrency` raw streams between the same two nodes:
/// blocks of each alternate, and each kind's rate is its round trips over its blocks'
/// summed wall time.
pub async fn dispatch_long(concurrency: usize, requests: usize) -> Result<DispatchResult> {
    let concurrency = concurrency.max(1);
    let (client, server) = pair(ConnectionMode::Long).await?;
    let target = server.peer_id();
    let mut streams = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        streams.push(
            client
                .open_stream(target, RAW)
                .await
                .context("raw stream")?,
        );
    }
    // Warm-up, as the rr bench: not timed.
    let warm = (requests / concurrency / 10).clamp(1, 200);
    run(&client, target, concurrency, warm).await?;
    let (back, _, _) = raw_round_trips(streams, warm).await?;
    streams = back;
    let per_block = requests.div_ceil(concurrency * INTERLEAVED_BLOCKS).max(1);
    let (mut latencies, mut wall) = (Vec::new(), Duration::ZERO);
    let (mut raw_latencies, mut raw_wall) = (Vec::new(), Duration::ZERO);
    for _ in 0..INTERLEAVED_BLOCKS {
        let (back, block, took) = raw_round_trips(streams, per_block).await?;
        streams = back;
        raw_latencies.extend(block);
        raw_wall += took;
        let (block, took) = run(&client, target, concurrency, per_block).await?;
        latencies.extend(block);
        wall += took;
    }
    drop(streams);
    client.close().await;
    server.close().await;
    Ok(
        DispatchResult::new(NAME, "long", concurrency, &mut latencies, wall)
            .against_raw_stream(&mut raw_latencies, raw_wall),
    )
}

/// `count` round trips on each of `streams` at once; the streams back, every latency and
/// the wall time.
async fn raw_round_trips(
    streams: Vec<NodeStream>,
    count: usize,
) -> Result<(Vec<NodeStream>, Vec<Duration>, Duration)> {
    let start = Instant::now();
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            AbortOnDrop(tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(count);
                workload::round_trips(&mut stream, count, Some(&mut latencies)).await?;
                Ok::<_, std::io::Error>((stream, latencies))
            }))
        })
        .collect();
    let (mut back, mut all) = (Vec::with_capacity(tasks.len()), Vec::new());
    for task in tasks {
        let (stream, latencies) = task.join().await??;
        back.push(stream);
        all.extend(latencies);
    }
    Ok((back, all, start.elapsed()))
}

/// `n` sequential dispatches, each dialling, upgrading, sending, reading the reply and
/// closing.
pub async fn dispatch_short(n: usize) -> Result<DispatchResult> {
    let (client, server) = pair(ConnectionMode::Short).await?;
    let target = server.peer_id();
    let (mut latencies, wall) = run(&client, target, 1, n).await?;
    client.close().await;
    server.close().await;
    Ok(DispatchResult::new(NAME, "short", 1, &mut latencies, wall))
}

/// `rounds` of `dispatch_all` from one node to `peers` in-process nodes (long mode).
pub async fn dispatch_all(peers: usize, rounds: usize) -> Result<DispatchAllResult> {
    let client = Node::builder().build().await?;
    let mut servers = Vec::with_capacity(peers);
    for i in 0..peers {
        let server = Node::builder()
            .listen("/ip4/127.0.0.1/tcp/0")
            .handle_requests(PROTOCOL, echo)
            .build()
            .await?;
        client
            .add_contact(format!("peer{i}"), &server.listen_addrs()[0])
            .await?;
        servers.push(server);
    }
    let message = Bytes::from(workload::pattern(workload::MESSAGE));
    // One untimed round warms every connection.
    client.dispatch_all(PROTOCOL, message.clone()).await;
    let mut latencies = Vec::with_capacity(rounds);
    let start = Instant::now();
    for _ in 0..rounds {
        let t0 = Instant::now();
        let results = client.dispatch_all(PROTOCOL, message.clone()).await;
        latencies.push(t0.elapsed());
        ensure!(
            results.len() == peers,
            "{} of {peers} answered",
            results.len()
        );
        for result in results.into_values() {
            ensure!(result? == message, "echo mismatch");
        }
    }
    let wall = start.elapsed();
    client.close().await;
    for s in servers {
        s.close().await;
    }
    Ok(DispatchAllResult::new(NAME, peers, &mut latencies, wall))
}

/// Resident memory after `small`, then after `large`, sequential dispatches on one
/// long connection.
pub async fn dispatch_memory(small: usize, large: usize) -> Result<DispatchMemoryResult> {
    let (client, server) = pair(ConnectionMode::Long).await?;
    let client = Arc::new(client);
    let target = server.peer_id();
    run(&client, target, 1, small).await?;
    let rss_small_kib = report::resident_kib();
    run(&client, target, 1, large.saturating_sub(small)).await?;
    let rss_large_kib = report::resident_kib();
    // The kept request stream ends once unused for its idle time; give it ten of those.
    let deadline = Instant::now() + KEPT_STREAM_IDLE * 10;
    while client.stats().streams > 0 && Instant::now() < deadline {
        tokio::time::sleep(KEPT_STREAM_IDLE / 4).await;
    }
    let streams_after = client.stats().streams;
    client.close().await;
    server.close().await;
    Ok(DispatchMemoryResult {
        bench: "dispatch_memory",
        stack: NAME,
        small,
        large,
        rss_small_kib,
        rss_large_kib,
        streams_after,
    })
}
