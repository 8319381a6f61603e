//! Broadcast over real sockets: 20 endpoints on 127.0.0.1 in one process, random links.

mod common;

use pheromone::pubsub::{PubSub, Subscription};
use pheromone::swarm::{Swarm, SwarmConfig};
use pheromone::{Endpoint, EndpointConfig, Keypair, PeerId};
use rand::{Rng, SeedableRng};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

const NODES: usize = 20;
const PER_NODE: u32 = 50;
const TOPIC: &str = "test/news";

struct Node {
    swarm: Swarm,
    pubsub: PubSub,
    subscription: Subscription,
}

async fn mesh(seed: u64) -> Vec<Node> {
    let mut nodes = Vec::new();
    let mut addrs = Vec::new();
    for _ in 0..NODES {
        let endpoint = Endpoint::new(
            Keypair::generate(&mut rand::rngs::OsRng),
            EndpointConfig::default(),
        );
        addrs.push(
            endpoint
                .listen(&"/ip4/127.0.0.1/tcp/0".parse().expect("addr"))
                .expect("listen"),
        );
        let swarm = Swarm::new(endpoint, SwarmConfig::default());
        let pubsub = PubSub::start(&swarm, Default::default());
        let subscription = pubsub.subscribe(TOPIC).await.expect("subscribe");
        nodes.push(Node {
            swarm,
            pubsub,
            subscription,
        });
    }
    // A random connected graph: a random spanning tree plus extra links, average degree ~4.
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut links = HashSet::new();
    for i in 1..NODES {
        links.insert((rng.gen_range(0..i), i));
    }
    while links.len() < NODES * 2 {
        let (a, b) = (rng.gen_range(0..NODES), rng.gen_range(0..NODES));
        if a != b {
            links.insert((a.min(b), a.max(b)));
        }
    }
    for (a, b) in links {
        nodes[a].swarm.dial_addr(&addrs[b]).await.expect("dial");
    }
    nodes
}

/// Every node announces itself until every node has heard every other: the interest and
/// the tree have spread.
async fn wait_until_ready(nodes: &mut [Node]) {
    let ids: Vec<PeerId> = nodes.iter().map(|n| n.swarm.local_peer_id()).collect();
    let mut heard: Vec<HashSet<PeerId>> = vec![HashSet::new(); nodes.len()];
    for _ in 0..100 {
        for n in nodes.iter() {
            n.pubsub
                .broadcast(TOPIC, &b"probe"[..])
                .await
                .expect("probe");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        for (i, n) in nodes.iter_mut().enumerate() {
            while let Ok(Some(m)) =
                tokio::time::timeout(Duration::from_millis(1), n.subscription.recv()).await
            {
                heard[i].insert(m.origin);
            }
        }
        if heard.iter().enumerate().all(|(i, h)| {
            ids.iter()
                .enumerate()
                .all(|(j, id)| i == j || h.contains(id))
        }) {
            return;
        }
    }
    let sizes: Vec<usize> = heard.iter().map(|h| h.len()).collect();
    let mut metrics = Vec::new();
    for n in nodes.iter() {
        let conns = n.swarm.endpoint().connections().len();
        metrics.push((conns, n.pubsub.metrics().await));
    }
    panic!(
        "broadcast did not reach every node within 20 s of probing: {sizes:?}; \
         connections and metrics per node: {metrics:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_nodes_each_publish_fifty_every_subscriber_gets_each_once_in_order() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let mut nodes = mesh(7).await;
        wait_until_ready(&mut nodes).await;
        for round in 0..PER_NODE {
            for n in &nodes {
                n.pubsub
                    .broadcast(TOPIC, format!("msg {round}").into_bytes())
                    .await
                    .expect("broadcast");
            }
        }
        let expected = (NODES - 1) * PER_NODE as usize;
        for (i, n) in nodes.iter_mut().enumerate() {
            let mut per_origin: HashMap<PeerId, Vec<u32>> = HashMap::new();
            let mut got = 0;
            while got < expected {
                let m = tokio::time::timeout(Duration::from_secs(30), n.subscription.recv())
                    .await
                    .unwrap_or_else(|_| panic!("node {i} got only {got} of {expected} messages"))
                    .expect("subscription open");
                let text = String::from_utf8(m.data.to_vec()).expect("utf-8");
                let Some(round) = text.strip_prefix("msg ") else {
                    continue;
                };
                per_origin
                    .entry(m.origin)
                    .or_default()
                    .push(round.parse().expect("round"));
                got += 1;
            }
            assert_eq!(
                per_origin.len(),
                NODES - 1,
                "node {i} heard from every other node"
            );
            for (origin, rounds) in per_origin {
                let want: Vec<u32> = (0..PER_NODE).collect();
                assert_eq!(
                    rounds, want,
                    "node {i}: messages of {origin} exactly once, in order"
                );
            }
            // Nothing more arrives (no duplicates behind the last expected message).
            while let Ok(Some(m)) =
                tokio::time::timeout(Duration::from_millis(200), n.subscription.recv()).await
            {
                assert!(
                    m.data.starts_with(b"probe"),
                    "node {i}: unexpected extra message"
                );
            }
        }
        futures::future::join_all(nodes.iter().map(|n| n.swarm.close())).await;
    })
    .await
    .expect("test timed out");
}
