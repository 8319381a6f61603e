//! Discovery over real sockets on 127.0.0.1: fifty nodes joining from one and reaching each
//! other by peer ID alone (addresses found through the DHT), the connection manager's
//! watermarks, pruning and bootstrap redials, and hostile kad peers that must not break
//! lookups.

#![allow(clippy::disallowed_methods)] // tests measure wall time

mod node_util;

use bytes::Bytes;
use futures::FutureExt;
use node_util::{echo, ECHO};
use pheromone::discovery::{DiscoveryConfig, DiscoveryError};
use pheromone::node::{Node, NodeConfig, NodeEvent};
use pheromone::{Access, Endpoint, EndpointConfig, Keypair, Multiaddr, PeerId};
use pheromone_core::kad::{self, wire, ConnectionType};
use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every test here finishes well within this; it only turns a hang into a failure.
const LIMIT: Duration = Duration::from_secs(90);

async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("test timed out")
}

/// The resident set of this process in KiB (Linux), for the memory report.
fn vm_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Peers with a live direct connection to `node`.
fn direct_peers(node: &Node) -> HashSet<PeerId> {
    node.endpoint()
        .connections()
        .into_iter()
        .filter(|c| c.info().relay.is_none() && !c.is_closed() && !c.is_going_away())
        .map(|c| c.remote_peer())
        .collect()
}

async fn wait_until(what: &str, limit: Duration, mut pred: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !pred() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Settings of the fifty nodes: defaults, except multi-hop routing, off because this test
/// is about the DHT alone (every dispatch must find its address there, not take a relayed
/// path) and because fifty distance-vector routers re-converging on every connection change
/// cost more CPU than a shared two-core debug build has.
fn fifty_node_config() -> NodeConfig {
    NodeConfig {
        routing: None,
        ..NodeConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_nodes_reach_each_other_by_peer_id_through_the_dht() {
    const NODES: usize = 50;
    bounded(async {
        let rss_before = vm_rss_kib();
        let t0 = Instant::now();
        let first = Node::builder()
            .config(fifty_node_config())
            .listen("/ip4/127.0.0.1/tcp/0")
            .handle_requests(ECHO, echo)
            .build()
            .await
            .expect("bootstrap node");
        let boot = first.listen_addrs()[0].clone();
        let mut nodes = vec![first];
        for _ in 1..NODES {
            let node = Node::builder()
                .config(fifty_node_config())
                .listen("/ip4/127.0.0.1/tcp/0")
                .handle_requests(ECHO, echo)
                .bootstrap(boot.clone())
                .build()
                .await
                .expect("node");
            nodes.push(node);
        }
        println!("{NODES} nodes started in {:?}", t0.elapsed());
        // Each node bootstrapped on its own when it started; once all exist, each joins
        // again so the late ones are known across the key space.
        let joins = nodes.iter().skip(1).map(|node| async move {
            node.discovery()
                .expect("discovery on by default")
                .bootstrap()
                .await
                .expect("bootstrap")
        });
        for joined in futures::future::join_all(joins).await {
            assert!(joined.table_size > 0);
        }
        println!("joined in {:?}", t0.elapsed());
        let peers: Vec<PeerId> = nodes.iter().map(Node::peer_id).collect();
        let mut ok = 0usize;
        let mut unconnected = 0usize;
        for (i, node) in nodes.iter().enumerate() {
            let calls = peers
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(j, peer)| {
                    if !node.is_connected(peer) {
                        unconnected += 1;
                    }
                    let payload = Bytes::from(format!("{i}->{j}"));
                    async move {
                        let reply = node.dispatch(*peer, ECHO, payload.clone()).await;
                        (j, reply.map(|r| r == payload))
                    }
                });
            for (j, result) in futures::future::join_all(calls).await {
                match result {
                    Ok(true) => ok += 1,
                    Ok(false) => panic!("node {i} -> {j}: wrong echo"),
                    Err(e) => panic!("node {i} -> {j}: {e}"),
                }
            }
        }
        assert_eq!(ok, NODES * (NODES - 1), "every node reaches every other");
        assert!(
            unconnected > 0,
            "some destinations had to be resolved through the DHT"
        );
        let rss_after = vm_rss_kib();
        let mut table_sizes = Vec::new();
        for node in &nodes {
            let m = node
                .discovery()
                .expect("discovery")
                .metrics()
                .await
                .expect("metrics");
            table_sizes.push(m.table_size);
        }
        let mean_table = table_sizes.iter().sum::<usize>() as f64 / NODES as f64;
        if let (Some(before), Some(after)) = (rss_before, rss_after) {
            let per_node = after.saturating_sub(before) as f64 / NODES as f64 / 1024.0;
            println!(
                "discovery 50 nodes: {ok} dispatches ok, {unconnected} needed a dial, mean table \
                 {mean_table:.1}; RSS before {before} KiB, after {after} KiB, \
                 {per_node:.2} MiB per node"
            );
            assert!(per_node < 10.0, "{per_node:.2} MiB per node");
        }
        for node in &nodes {
            node.close().await;
        }
    })
    .await;
}

/// A node config with small watermarks and fast maintenance, for the manager tests.
fn managed(low: usize, high: usize) -> DiscoveryConfig {
    DiscoveryConfig {
        low_watermark: low,
        high_watermark: high,
        maintenance_interval: Duration::from_millis(100),
        prune_grace: Duration::from_millis(300),
        redial_initial: Duration::from_millis(100),
        redial_max: Duration::from_secs(1),
        ..DiscoveryConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manager_keeps_connections_between_the_watermarks_and_never_prunes_bootstrap() {
    const NODES: usize = 12;
    const LOW: usize = 3;
    const HIGH: usize = 5;
    bounded(async {
        // The bootstrap node is sized like a real one: everyone stays connected to it.
        let first = Node::builder()
            .listen("/ip4/127.0.0.1/tcp/0")
            .discovery(Some(managed(LOW, 32)))
            .build()
            .await
            .expect("bootstrap node");
        let boot = first.listen_addrs()[0].clone();
        let boot_peer = first.peer_id();
        let mut nodes = Vec::new();
        let mut watchers = Vec::new();
        for _ in 1..NODES {
            let mut config = managed(LOW, HIGH);
            config.bootstrap.push(boot.clone());
            let node = Node::builder()
                .listen("/ip4/127.0.0.1/tcp/0")
                .discovery(Some(config))
                .build()
                .await
                .expect("node");
            // Any loss of the bootstrap connection shows up as an event.
            let mut events = node.events();
            watchers.push(tokio::spawn(async move {
                loop {
                    match events.recv().await {
                        Ok(NodeEvent::PeerDisconnected { peer }) if peer == boot_peer => {
                            return true
                        }
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(_) => return false,
                    }
                }
            }));
            nodes.push(node);
        }
        for node in &nodes {
            node.discovery()
                .expect("discovery")
                .bootstrap()
                .await
                .expect("bootstrap");
        }
        // The bootstrap lookups connect each node to most of the others; the manager
        // brings every node back into [LOW, HIGH] and keeps it there.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut settled = 0;
        let mut counts = Vec::new();
        while settled < 5 {
            assert!(
                Instant::now() < deadline,
                "watermarks not respected: {counts:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
            counts = nodes.iter().map(|n| direct_peers(n).len()).collect();
            let in_range = counts.iter().all(|c| (LOW..=HIGH).contains(c));
            let with_boot = nodes.iter().all(|n| direct_peers(n).contains(&boot_peer));
            settled = if in_range && with_boot {
                settled + 1
            } else {
                0
            };
        }
        let mut pruned = 0;
        for node in &nodes {
            pruned += node
                .discovery()
                .expect("discovery")
                .metrics()
                .await
                .expect("m")
                .pruned;
        }
        assert!(
            pruned > 0,
            "the lookups pushed nodes over the high mark: {counts:?}"
        );
        for watcher in watchers {
            watcher.abort();
            if let Ok(lost) = watcher.await {
                assert!(!lost, "a bootstrap connection was dropped");
            }
        }
        for node in nodes.iter().chain(std::iter::once(&first)) {
            node.close().await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_bootstrap_peer_is_redialled_when_it_comes_back() {
    bounded(async {
        let key = Keypair::from_seed([42; 32]);
        let start_boot = |listen: String| {
            Node::builder()
                .keypair(key.clone())
                .listen(listen)
                .discovery(Some(managed(2, 8)))
                .build()
        };
        let boot = start_boot("/ip4/127.0.0.1/tcp/0".into())
            .await
            .expect("boot");
        let boot_addr = boot.listen_addrs()[0].clone();
        let boot_peer = boot.peer_id();
        let socket = boot_addr.tcp_socket_addr().expect("tcp address");
        let mut config = managed(2, 8);
        config.bootstrap.push(boot_addr.clone());
        let node = Node::builder()
            .listen("/ip4/127.0.0.1/tcp/0")
            .discovery(Some(config))
            .build()
            .await
            .expect("node");
        wait_until("the first dial", Duration::from_secs(10), || {
            direct_peers(&node).contains(&boot_peer)
        })
        .await;
        boot.close().await;
        wait_until("the loss", Duration::from_secs(10), || {
            !direct_peers(&node).contains(&boot_peer)
        })
        .await;
        // Down for a while: redials fail and back off.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let failed = node
            .discovery()
            .expect("d")
            .metrics()
            .await
            .expect("m")
            .dials_failed;
        assert!(failed >= 1, "redials were attempted while it was down");
        let boot = start_boot(format!("/ip4/127.0.0.1/tcp/{}", socket.port()))
            .await
            .expect("boot again on the same port");
        wait_until("the redial", Duration::from_secs(10), || {
            direct_peers(&node).contains(&boot_peer)
        })
        .await;
        let m = node.discovery().expect("d").metrics().await.expect("m");
        assert!(m.redials >= 2, "{m:?}");
        node.close().await;
        boot.close().await;
    })
    .await;
}

/// How a hostile kad peer answers every request.
#[derive(Clone, Copy, Debug)]
enum Hostility {
    /// Bytes that are no protobuf.
    Garbage,
    /// A length prefix announcing far more than the cap.
    Huge,
    /// A valid response listing 10,000 peers that do not exist, at addresses nobody has.
    Flood,
    /// Reads the request and never answers.
    Silent,
}

/// A bare endpoint answering the kad protocol the hostile way; its listen address.
fn hostile(kind: Hostility, flood: Arc<Vec<u8>>) -> (Endpoint, Multiaddr) {
    let endpoint = Endpoint::new(
        Keypair::generate(&mut rand::rngs::OsRng),
        EndpointConfig::default(),
    );
    endpoint.set_handler(
        kad::DEFAULT_PROTOCOL,
        Arc::new(move |_conn, mut stream| {
            let flood = flood.clone();
            async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                loop {
                    match pheromone_core::varint::decode(&buf) {
                        Ok(Some((len, prefix)))
                            if len <= wire::MAX_REQUEST_LEN as u64
                                && buf.len() >= prefix + len as usize =>
                        {
                            break
                        }
                        Ok(Some((len, _))) if len > wire::MAX_REQUEST_LEN as u64 => return,
                        Ok(_) => {}
                        Err(_) => return,
                    }
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let answer: Vec<u8> = match kind {
                    Hostility::Garbage => vec![0x05, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02],
                    Hostility::Huge => {
                        let mut out = Vec::new();
                        pheromone_core::varint::encode(100 << 20, &mut out);
                        out.extend_from_slice(&[0u8; 4096]);
                        out
                    }
                    Hostility::Flood => flood.to_vec(),
                    Hostility::Silent => {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        return;
                    }
                };
                let _ = stream.write_all(&answer).await;
                let _ = stream.shutdown().await;
            }
            .boxed()
        }),
        Access::Open,
    );
    let addr = endpoint
        .listen(&"/ip4/127.0.0.1/tcp/0".parse().expect("addr"))
        .expect("listen");
    (endpoint, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_kad_peers_do_not_break_lookups() {
    bounded(async {
        // 9,000 peers (as many as fit under the response cap) that exist nowhere, "at" an address where nothing listens.
        let fake_ids: Vec<PeerId> = (0..9_000u32)
            .map(|i| {
                let mut seed = [3u8; 32];
                seed[..4].copy_from_slice(&i.to_le_bytes());
                Keypair::from_seed(seed).peer_id()
            })
            .collect();
        let nowhere: Vec<Multiaddr> = vec!["/ip4/127.0.0.1/tcp/1".parse().expect("addr")];
        let mut flood = Vec::new();
        wire::encode_find_node_response(
            fake_ids
                .iter()
                .map(|p| (p, nowhere.as_slice(), ConnectionType::Connected)),
            &mut flood,
        );
        assert!(flood.len() > 100_000 && flood.len() < wire::MAX_RESPONSE_LEN);
        // On the stream a message goes behind its length.
        let mut framed = Vec::new();
        pheromone_core::varint::encode(flood.len() as u64, &mut framed);
        framed.extend_from_slice(&flood);
        let flood = Arc::new(framed);
        let hostiles: Vec<(Hostility, Endpoint, Multiaddr)> = [
            Hostility::Garbage,
            Hostility::Huge,
            Hostility::Flood,
            Hostility::Silent,
        ]
        .into_iter()
        .map(|k| {
            let (endpoint, addr) = hostile(k, flood.clone());
            (k, endpoint, addr)
        })
        .collect();

        // An honest network of five, the target among them.
        let honest_boot = Node::builder()
            .listen("/ip4/127.0.0.1/tcp/0")
            .handle_requests(ECHO, echo)
            .build()
            .await
            .expect("honest");
        let boot_addr = honest_boot.listen_addrs()[0].clone();
        let mut honest = vec![honest_boot];
        for _ in 0..4 {
            let node = Node::builder()
                .listen("/ip4/127.0.0.1/tcp/0")
                .handle_requests(ECHO, echo)
                .bootstrap(boot_addr.clone())
                .build()
                .await
                .expect("honest");
            node.discovery()
                .expect("d")
                .bootstrap()
                .await
                .expect("join");
            honest.push(node);
        }
        let target = honest[4].peer_id();

        // The searcher knows the hostile peers and one honest one; it must not wait out
        // the silent one for long.
        let mut config = DiscoveryConfig::default();
        config.kad.request_timeout = Duration::from_secs(2);
        let searcher = Node::builder()
            .discovery(Some(config))
            .build()
            .await
            .expect("searcher");
        let discovery = searcher.discovery().expect("discovery");
        for (_, endpoint, addr) in &hostiles {
            discovery
                .add_address(endpoint.peer_id(), addr.clone().without_p2p())
                .await
                .expect("add hostile");
        }
        discovery
            .add_address(honest[0].peer_id(), boot_addr.clone().without_p2p())
            .await
            .expect("add honest");
        let found = discovery
            .find_peer(target)
            .await
            .expect("found despite hostiles");
        assert!(!found.addrs.is_empty());
        // Every hostile peer was asked by now or is asked by a bootstrap; each fails.
        let _ = discovery.bootstrap().await;
        let m = discovery.metrics().await.expect("metrics");
        assert!(m.kad.malformed >= 1 || m.kad.requests_failed >= 3, "{m:?}");
        assert!(
            m.kad.peers_ignored >= 8_900,
            "the flood was not read past the cap: {m:?}"
        );
        let table: HashSet<PeerId> = discovery
            .table()
            .await
            .expect("table")
            .peers()
            .into_iter()
            .collect();
        for id in &fake_ids {
            assert!(
                !table.contains(id),
                "a peer that does not exist got into the table"
            );
        }
        for (kind, endpoint, _) in &hostiles {
            // The flood is a valid (if long) answer: its sender may stay; the others failed
            // their requests and were evicted.
            if !matches!(kind, Hostility::Flood) {
                assert!(
                    !table.contains(&endpoint.peer_id()),
                    "the {kind:?} peer stayed in the table"
                );
            }
        }
        // And the address found works.
        let reply = searcher
            .dispatch(target, ECHO, "hi")
            .await
            .expect("dispatch");
        assert_eq!(reply, "hi");
        // A peer that is nowhere is reported as such, not as a hang.
        let nobody = Keypair::from_seed([99; 32]).peer_id();
        match discovery.find_peer(nobody).await {
            Err(DiscoveryError::NotFound { .. }) => {}
            other => panic!("expected NotFound, got {other:?}"),
        }
        searcher.close().await;
        for node in &honest {
            node.close().await;
        }
        for (_, endpoint, _) in &hostiles {
            endpoint.close().await;
        }
    })
    .await;
}
