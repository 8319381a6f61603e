//! Helpers shared by the node tests: nodes on 127.0.0.1, an echo handler, a deadline.

#![allow(dead_code)]

#[path = "../transports/mod.rs"]
pub mod transports;

use bytes::Bytes;
use pheromone::node::{HandlerResult, Node, NodeBuilder, NodeEvent, Peer};
use std::future::Future;
use std::time::Duration;

pub const ECHO: &str = "/test/echo/1.0.0";

/// Every node test runs under this deadline.
pub const LIMIT: Duration = Duration::from_secs(60);

/// Runs `f` under [`LIMIT`]; a hang fails the test instead of blocking it.
pub async fn bounded<T>(f: impl Future<Output = T>) -> T {
    // `RUST_LOG=pheromone=debug` shows what a failing test did.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("test timed out")
}

pub async fn echo(_peer: Peer, request: Bytes) -> HandlerResult {
    Ok(Some(request))
}

/// A builder listening on an ephemeral loopback port (of the conformance run's transport,
/// TCP outside one) with the echo handler, discovery off:
/// these tests count and close connections, and the DHT's connection manager keeps its
/// peers connected (discovery has tests of its own in `discovery.rs`).
pub fn listening(name: &str) -> NodeBuilder {
    Node::builder()
        .name(name)
        .listen(transports::listen_addr())
        .tcp_security(transports::tcp_security())
        .discovery(None)
        .handle_requests(ECHO, echo)
}

pub async fn node(name: &str) -> Node {
    listening(name).build().await.expect("build node")
}

/// The node's first listen address.
pub fn addr(node: &Node) -> pheromone::Multiaddr {
    node.listen_addrs()[0].clone()
}

/// Waits until `pred` holds, polling every few milliseconds.
pub async fn eventually(mut pred: impl FnMut() -> bool) {
    while !pred() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits for an event matching `pred`.
pub async fn wait_event(
    events: &mut tokio::sync::broadcast::Receiver<NodeEvent>,
    mut pred: impl FnMut(&NodeEvent) -> bool,
) -> NodeEvent {
    loop {
        let event = events.recv().await.expect("event channel");
        if pred(&event) {
            return event;
        }
    }
}

/// A stream handler that reads to the end and answers the byte count (8 bytes, big
/// endian) and the SHA-256 of what it read.
pub async fn sink_digest(_peer: Peer, mut stream: pheromone::Stream) {
    use sha2::{Digest, Sha256};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                total += n as u64;
                hasher.update(&buf[..n]);
            }
            Err(_) => return,
        }
    }
    let mut answer = total.to_be_bytes().to_vec();
    answer.extend_from_slice(&hasher.finalize());
    let _ = stream.write_all(&answer).await;
    let _ = stream.shutdown().await;
}
