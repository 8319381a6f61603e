//! Broadcast from real processes against the simulator: ten `pheromone up` daemons on
//! loopback, linked into a random graph of average degree 4, each subscribed; twenty
//! broadcasts from random origins. The daemons count copies received and the hops of the
//! copies they deliver (their Prometheus counters); the simulator runs the same state
//! machine on the same links with the same identities (so the same node is the tree's
//! root) and equal link latencies. Copies per node per message must agree within 10%, hop
//! stretch (hops taken / shortest hops) within 20% on this small sample (see below).
//!
//! This is the CI-sized slice; `scripts/broadcast-daemons.py` runs 50 daemons and 200
//! broadcasts and prints the figures.

#![allow(clippy::disallowed_methods)] // process tests run on the real clock

mod common;

use common::{eventually, Background, Daemon};
use pheromone_core::identity::Keypair;
use pheromone_sim::scenario::broadcast::{run, BroadcastParams};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::io::{Read, Write};
use std::time::Duration;

const NODES: usize = 10;
const BROADCASTS: usize = 20;
const TOPIC: &str = "fleet/news";

/// A small seeded generator, so the graph and the origins are the same in every run.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// Every node dials two random others; components are then joined in a line.
fn random_graph(rng: &mut Lcg) -> BTreeSet<(usize, usize)> {
    let mut edges = BTreeSet::new();
    for a in 0..NODES {
        let mut made = 0;
        while made < 2 {
            let b = rng.below(NODES);
            if b != a && edges.insert((a.min(b), a.max(b))) {
                made += 1;
            }
        }
    }
    let mut comp: Vec<usize> = (0..NODES).collect();
    for _ in 0..NODES {
        for &(a, b) in &edges {
            let c = comp[a].min(comp[b]);
            comp[a] = c;
            comp[b] = c;
        }
    }
    let mut firsts: Vec<usize> = (0..NODES).filter(|&x| comp[x] == x).collect();
    firsts.dedup();
    for pair in firsts.windows(2) {
        edges.insert((pair[0], pair[1]));
    }
    edges
}

fn bfs(edges: &BTreeSet<(usize, usize)>, from: usize) -> Vec<Option<u64>> {
    let mut dist = vec![None; NODES];
    dist[from] = Some(0);
    let mut queue = VecDeque::from([from]);
    while let Some(x) = queue.pop_front() {
        for &(a, b) in edges {
            let y = if a == x {
                b
            } else if b == x {
                a
            } else {
                continue;
            };
            if dist[y].is_none() {
                dist[y] = dist[x].map(|d| d + 1);
                queue.push_back(y);
            }
        }
    }
    dist
}

/// `count` distinct free ports (all held until all are found, so none repeats).
fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("bound").port())
        .collect()
}

/// The daemon's `pheromone_broadcast_*` counters, from its metrics endpoint.
fn counters(port: u16) -> HashMap<String, f64> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .expect("request");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("response");
    text.lines()
        .filter(|l| l.starts_with("pheromone_broadcast_") && !l.contains('{'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            let name = name.strip_suffix("_total").unwrap_or(name);
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

#[test]
fn ten_daemons_agree_with_the_simulator_on_copies_and_hop_stretch() {
    let temp = tempfile::tempdir().expect("tempdir");
    let ports = free_ports(NODES);
    let daemons: Vec<Daemon> = (0..NODES)
        .map(|i| {
            let dir = temp.path().join(format!("n{i}"));
            let metrics = format!("127.0.0.1:{}", ports[i]);
            let name = format!("n{i}");
            Daemon::start_in(&dir, &["--name", &name, "--no-dht", "--metrics", &metrics])
                .unwrap_or_else(|out| panic!("daemon n{i} did not start: {}", out.stderr))
        })
        .collect();
    let index: HashMap<&str, usize> = daemons
        .iter()
        .enumerate()
        .map(|(i, d)| (d.peer_id.as_str(), i))
        .collect();
    let mut rng = Lcg(23);
    for (a, b) in random_graph(&mut rng) {
        let peer = daemons[a].json(&["connect", &daemons[b].addr]);
        assert_eq!(peer["peer_id"], daemons[b].peer_id.as_str(), "{peer}");
    }
    // The links as the daemons see them (the simulator runs on exactly these).
    let mut edges = BTreeSet::new();
    for (i, d) in daemons.iter().enumerate() {
        let peers = d.json(&["peers"]);
        for peer in peers.as_array().expect("a list of peers") {
            if let Some(&j) = peer["peer_id"].as_str().and_then(|p| index.get(p)) {
                edges.insert((i.min(j), i.max(j)));
            }
        }
    }
    let mut subscriptions: Vec<Background> = daemons
        .iter()
        .map(|d| Background::start(&d.data_dir, &["subscribe", TOPIC]))
        .collect();
    for s in &mut subscriptions {
        assert!(
            eventually(Duration::from_secs(20), || s
                .stderr()
                .contains("subscribed to")),
            "subscription not confirmed: {}",
            s.stderr()
        );
    }
    // Interest and the tree settle within a few round trips; give them ample time.
    std::thread::sleep(Duration::from_secs(3));
    let before: Vec<_> = ports.iter().map(|&p| counters(p)).collect();
    let origins: Vec<usize> = (0..BROADCASTS).map(|_| rng.below(NODES)).collect();
    for (k, &origin) in origins.iter().enumerate() {
        let reply = daemons[origin].json(&["broadcast", TOPIC, &format!("message {k}")]);
        assert_eq!(reply["topic"], TOPIC, "{reply}");
    }
    let pairs = (BROADCASTS * (NODES - 1)) as f64;
    let total = |name: &str| -> f64 {
        ports
            .iter()
            .zip(&before)
            .map(|(&p, b)| {
                counters(p).get(name).copied().unwrap_or(0.0) - b.get(name).copied().unwrap_or(0.0)
            })
            .sum()
    };
    assert!(
        eventually(Duration::from_secs(20), || total(
            "pheromone_broadcast_delivered"
        ) >= pairs),
        "delivered {} of {pairs}",
        total("pheromone_broadcast_delivered")
    );
    // Late duplicates would still count as copies: let the last ones land.
    std::thread::sleep(Duration::from_millis(500));
    let delivered = total("pheromone_broadcast_delivered");
    let copies = total("pheromone_broadcast_gossip_received") / pairs;
    let hops = total("pheromone_broadcast_delivered_hops");
    let shortest: u64 = origins
        .iter()
        .flat_map(|&o| bfs(&edges, o))
        .map(|d| d.unwrap_or(0))
        .sum();
    let stretch = hops / shortest as f64;
    drop(subscriptions);

    let keys: Vec<Keypair> = daemons
        .iter()
        .map(|d| {
            let bytes = std::fs::read(d.data_dir.join("identity.key")).expect("identity.key");
            Keypair::from_protobuf_encoding(&bytes).expect("an identity key")
        })
        .collect();
    let sim = run(&BroadcastParams {
        nodes: NODES,
        degree: 4,
        messages: BROADCASTS,
        latency: (Duration::from_millis(1), Duration::from_millis(1)),
        edges: Some(edges.iter().copied().collect()),
        keys,
        ..BroadcastParams::default()
    });
    let figures = format!(
        "daemons: delivered {delivered}/{pairs}, copies {copies:.3}, stretch {stretch:.3}; \
         simulator: {sim:?}"
    );
    assert_eq!(delivered, pairs, "{figures}");
    assert_eq!(sim.delivery_ratio, 1.0, "{figures}");
    let near = |a: f64, b: f64, by: f64| (a / b - 1.0).abs() <= by;
    assert!(
        near(copies, sim.duplicates_per_node_per_msg, 0.10),
        "copies: {figures}"
    );
    // With equal simulated links the first copy to arrive is always one with the fewest
    // hops; on a busy loopback a longer path sometimes wins the race, so the daemons'
    // stretch runs a little higher: 5% at 50 daemons and 200 broadcasts (the script's
    // run, held to 10%), 9-13% on this small sample, held to 20% here.
    assert!(
        near(stretch, sim.hop_stretch, 0.20),
        "hop stretch: {figures}"
    );
}
