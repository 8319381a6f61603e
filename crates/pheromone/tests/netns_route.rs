//! Routing and relaying between real hosts: one node per network namespace, each linked
//! by veth only to its neighbours, so nodes two hops apart cannot open a socket to each
//! other and every byte between them crosses relays.
//!
//! Needs root and iproute2; skips (saying why) without them.

mod netns;
mod node_util;

use bytes::Bytes;
use netns::{Host, Topology};
use pheromone::node::{HandlerResult, Node, Peer};
use pheromone::{Multiaddr, PeerId};
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

const PORT: u16 = 4001;
const SINK: &str = "/test/sink/1.0.0";
const CHUNKS: &str = "/test/chunks/1.0.0";
/// Every scenario must finish within this.
const LIMIT: Duration = Duration::from_secs(240);

/// What the chunk receiver has taken in order: the next index it expects and the hash of
/// everything before it.
#[derive(Default)]
struct Received {
    next: u64,
    hasher: Sha256,
}

/// Starts a node on host `i` listening on its link addresses; links it to `neighbours`.
async fn start(topo: &Topology, hosts: &[Host], i: usize, received: Arc<Mutex<Received>>) -> Node {
    let listen: Vec<Multiaddr> = topo
        .links()
        .iter()
        .filter_map(|l| match (l.a == i, l.b == i) {
            (true, _) => Some(l.addr_a),
            (_, true) => Some(l.addr_b),
            _ => None,
        })
        .map(|ip| format!("/ip4/{ip}/tcp/{PORT}").parse().expect("addr"))
        .collect();
    hosts[i]
        .run(move || async move {
            let mut builder = Node::builder()
                .name(format!("h{i}"))
                .handle_streams(SINK, node_util::sink_digest)
                .handle_requests(CHUNKS, move |_peer: Peer, request: Bytes| {
                    let received = received.clone();
                    async move { take_chunk(&received, &request) }
                });
            for addr in listen {
                builder = builder.listen(addr);
            }
            builder.build().await.expect("build node")
        })
        .await
}

/// Takes chunk `index` if it is the next one (a retried chunk that already arrived is
/// acknowledged again, not counted twice); answers the next index expected.
fn take_chunk(received: &Mutex<Received>, request: &[u8]) -> HandlerResult {
    let (index, data) = request.split_at(8);
    let index = u64::from_be_bytes(index.try_into().expect("8 bytes"));
    let mut r = received.lock().expect("lock");
    if index == r.next {
        r.hasher.update(data);
        r.next += 1;
    }
    Ok(Some(Bytes::copy_from_slice(&r.next.to_be_bytes())))
}

/// Links every node to its neighbours (the lower index dials).
async fn link(topo: &Topology, hosts: &[Host], nodes: &[Node]) {
    for l in topo.links() {
        let node = nodes[l.a].clone();
        let target: Multiaddr = format!("/ip4/{}/tcp/{PORT}", l.addr_b)
            .parse()
            .expect("addr");
        let name = format!("h{}", l.b);
        hosts[l.a]
            .run(move || async move { node.add_contact(name, &target).await.expect("link") })
            .await;
    }
}

async fn wait_for_route(host: &Host, node: &Node, to: PeerId, hops: u8) {
    loop {
        let node = node.clone();
        let found = host
            .run(move || async move { node.routing().and_then(|r| r.next_hop(&to)) })
            .await;
        if found.is_some_and(|h| h.hops == hops) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn block(seed: &mut u32, len: usize) -> Vec<u8> {
    (0..len)
        .map(|_| {
            *seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (*seed >> 24) as u8
        })
        .collect()
}

async fn close_all(hosts: &[Host], nodes: &[Node]) {
    for (host, node) in hosts.iter().zip(nodes) {
        let node = node.clone();
        host.run(move || async move { node.close().await }).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_of_five_streams_100_mb_end_to_end() {
    let edges: Vec<(usize, usize)> = (0..4).map(|i| (i, i + 1)).collect();
    let Some(topo) = Topology::new(5, &edges) else {
        return;
    };
    let hosts: Vec<Host> = (0..5).map(|i| topo.host(i)).collect();
    tokio::time::timeout(LIMIT, async {
        let mut nodes = Vec::new();
        for i in 0..5 {
            nodes.push(start(&topo, &hosts, i, Arc::default()).await);
        }
        link(&topo, &hosts, &nodes).await;
        let last = nodes[4].peer_id();
        wait_for_route(&hosts[0], &nodes[0], last, 4).await;

        let first = nodes[0].clone();
        let (answer, digest, relayed_via) = hosts[0]
            .run(move || async move {
                let mut stream = first.open_stream(last, SINK).await.expect("open");
                let mut hasher = Sha256::new();
                let mut seed = 7u32;
                let chunk = block(&mut seed, 1 << 20);
                for _ in 0..100 {
                    stream.write_all(&chunk).await.expect("write");
                    hasher.update(&chunk);
                }
                stream.shutdown().await.expect("half-close");
                let mut answer = Vec::new();
                stream.read_to_end(&mut answer).await.expect("answer");
                let relay = first
                    .endpoint()
                    .connections()
                    .into_iter()
                    .find(|c| c.remote_peer() == last)
                    .and_then(|c| c.info().relay);
                (answer, hasher.finalize().to_vec(), relay)
            })
            .await;
        assert_eq!(answer.len(), 40, "byte count and digest");
        assert_eq!(
            u64::from_be_bytes(answer[..8].try_into().expect("8")),
            100 << 20
        );
        assert_eq!(&answer[8..], &digest[..], "checksum end to end");
        assert_eq!(relayed_via, Some(nodes[1].peer_id()));
        close_all(&hosts, &nodes).await;
    })
    .await
    .expect("line scenario timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ring_of_six_reroutes_around_a_cut_link() {
    let edges: Vec<(usize, usize)> = (0..6).map(|i| (i, (i + 1) % 6)).collect();
    let Some(topo) = Topology::new(6, &edges) else {
        return;
    };
    let hosts: Vec<Host> = (0..6).map(|i| topo.host(i)).collect();
    tokio::time::timeout(LIMIT, async {
        let received = Arc::new(Mutex::new(Received::default()));
        let mut nodes = Vec::new();
        for i in 0..6 {
            nodes.push(start(&topo, &hosts, i, received.clone()).await);
        }
        link(&topo, &hosts, &nodes).await;
        let target = nodes[2].peer_id();
        wait_for_route(&hosts[0], &nodes[0], target, 2).await;

        // Chunks go 0 → 1 → 2; the link 1–2 is cut half way, and the sender retries each
        // chunk until it is acknowledged, so the transfer resumes over 0 → 5 → 4 → 3 → 2.
        let state = (Sha256::new(), 11u32);
        let (state, before) = send_chunks(&hosts[0], &nodes[0], target, 0..100, state).await;
        topo.cut(1);
        let cut_at = Instant::now();
        let ((hasher, _), after) = send_chunks(&hosts[0], &nodes[0], target, 100..200, state).await;
        let digest = hasher.finalize().to_vec();
        eprintln!(
            "ring: longest chunk before the cut {before:?}, after it {after:?} (resumed within {:?})",
            cut_at.elapsed().min(after)
        );
        let node = nodes[0].clone();
        let via = hosts[0]
            .run(move || async move { node.routing().and_then(|r| r.next_hop(&target)) })
            .await
            .expect("route after the cut");
        assert_eq!(via.peer, nodes[5].peer_id(), "rerouted the other way round");
        assert_eq!(via.hops, 4);
        let (next, received_digest) = {
            let r = received.lock().expect("lock");
            (r.next, r.hasher.clone().finalize().to_vec())
        };
        assert_eq!(next, 200, "every chunk arrived once, in order");
        assert_eq!(received_digest, digest);
        close_all(&hosts, &nodes).await;
    })
    .await
    .expect("ring scenario timed out");
}

type ChunkState = (Sha256, u32);

/// Sends chunks `range` to `target`, each retried until acknowledged; returns the running
/// hash and seed, and the longest time one chunk took.
async fn send_chunks(
    host: &Host,
    node: &Node,
    target: PeerId,
    range: std::ops::Range<u64>,
    state: ChunkState,
) -> (ChunkState, Duration) {
    let sender = node.clone();
    host.run(move || async move {
        let (mut hasher, mut seed) = state;
        let mut longest = Duration::ZERO;
        for index in range {
            let data = block(&mut seed, 64 * 1024);
            let mut request = index.to_be_bytes().to_vec();
            request.extend_from_slice(&data);
            let request = Bytes::from(request);
            let started = Instant::now();
            let mut attempts = 0;
            loop {
                attempts += 1;
                assert!(attempts < 300, "chunk {index} never got through");
                let options =
                    pheromone::node::DispatchOptions::new().timeout(Duration::from_secs(2));
                match sender
                    .dispatch_with(target, CHUNKS, request.clone(), &options)
                    .await
                {
                    Ok(next) if next[..] == (index + 1).to_be_bytes() => break,
                    Ok(next) => panic!("receiver out of step: {next:?} after chunk {index}"),
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
            longest = longest.max(started.elapsed());
            hasher.update(&data);
        }
        ((hasher, seed), longest)
    })
    .await
}
