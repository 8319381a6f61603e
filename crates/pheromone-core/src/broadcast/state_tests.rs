//! Unit tests of the state machine: storm freedom, replay and forgery handling, interest
//! routing, Plumtree repair. A tiny in-test network moves frames with zero latency; the
//! many-node behaviour is tested in `pheromone-sim`.

use super::*;
use crate::broadcast::test_now;
use crate::broadcast::DecodeError;
use crate::overlay::Overlay;
use std::time::Duration;

fn keypair(seed: u8) -> Keypair {
    Keypair::from_seed([seed; 32])
}

fn topic(name: &str) -> Topic {
    Topic::new(name).expect("topic")
}

/// Zero-latency network of nodes; frames and deliveries are recorded.
struct Net {
    nodes: Vec<Broadcast>,
    now: Instant,
    /// (from, to, frame) of every frame sent, in order.
    sent: Vec<(usize, usize, Bytes)>,
    /// (node, message) of every delivery.
    delivered: Vec<(usize, Message)>,
}

impl Net {
    fn new(count: u8, config: Config) -> Self {
        let now = test_now();
        let nodes = (0..count)
            .map(|i| Broadcast::new(keypair(i + 1), config.clone()))
            .collect();
        Self {
            nodes,
            now,
            sent: Vec::new(),
            delivered: Vec::new(),
        }
    }

    fn id(&self, i: usize) -> PeerId {
        self.nodes[i].local_peer_id()
    }

    fn index(&self, peer: &PeerId) -> usize {
        self.nodes
            .iter()
            .position(|n| n.local_peer_id() == *peer)
            .expect("known peer")
    }

    fn link(&mut self, a: usize, b: usize) {
        let (pa, pb) = (self.id(a), self.id(b));
        self.nodes[a].neighbour_up(self.now, pb.into());
        self.nodes[b].neighbour_up(self.now, pa.into());
        self.settle();
    }

    fn subscribe(&mut self, i: usize, name: &str) {
        self.nodes[i]
            .subscribe(self.now, &topic(name))
            .expect("subscribe");
        self.settle();
    }

    /// Moves frames until no node has output, then runs due timers, until quiet.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                while let Some(out) = self.nodes[i].poll_output() {
                    moved = true;
                    match out {
                        Output::Send { to, frame: bytes } => {
                            let j = self.index(&to);
                            self.sent.push((i, j, bytes.clone()));
                            let from = self.id(i);
                            self.nodes[j]
                                .handle_frame(self.now, from, &bytes)
                                .expect("an honest frame is taken");
                        }
                        Output::Event(Event::Delivered(m)) => self.delivered.push((i, m)),
                        other => panic!("broadcast asked for {other:?}"),
                    }
                }
            }
            if !moved {
                return;
            }
        }
        panic!("network did not settle");
    }

    /// Advances time by `step` repeatedly for `total`, firing timers.
    fn run_for(&mut self, total: Duration, step: Duration) {
        let end = self.now + total;
        while self.now < end {
            self.now += step;
            for i in 0..self.nodes.len() {
                if self.nodes[i].poll_timeout().is_some_and(|t| t <= self.now) {
                    self.nodes[i].handle_timeout(self.now);
                }
            }
            self.settle();
        }
    }

    fn gossip_frames(&self) -> Vec<(usize, usize)> {
        self.sent
            .iter()
            .filter(|(_, _, b)| b.get(1) == Some(&wire::KIND_GOSSIP))
            .map(|(a, b, _)| (*a, *b))
            .collect()
    }
}

fn flood() -> Config {
    Config::with_strategy(Strategy::Flood)
}

/// The tree strategy without the flooded first hop, so every copy crosses a tree edge.
fn pure_tree() -> Config {
    Config {
        eager_hops: 0,
        ..Config::default()
    }
}

/// A square 0-1-2-3-0 plus a diagonal 1-3, everyone subscribed.
fn square(config: Config) -> Net {
    let mut net = Net::new(4, config);
    for (a, b) in [(0, 1), (1, 2), (2, 3), (3, 0), (1, 3)] {
        net.link(a, b);
    }
    for i in 0..4 {
        net.subscribe(i, "t");
    }
    net
}

#[test]
fn flood_delivers_once_forwards_once_and_never_back() {
    for config in [flood(), Config::default()] {
        let mut net = square(config);
        let id = net.nodes[0]
            .publish(net.now, &topic("t"), b"hello")
            .expect("publish");
        net.settle();
        net.run_for(Duration::from_secs(5), Duration::from_millis(10));
        let mut got: Vec<usize> = net.delivered.iter().map(|(i, _)| *i).collect();
        got.sort_unstable();
        assert_eq!(got, vec![1, 2, 3], "each other node delivers exactly once");
        assert!(net
            .delivered
            .iter()
            .all(|(_, m)| m.id == id && &m.data[..] == b"hello"));
        let frames = net.gossip_frames();
        for node in 0..4 {
            // At most one push per neighbour: a node forwards a message at most once.
            let mut targets: Vec<usize> = frames
                .iter()
                .filter(|(a, _)| *a == node)
                .map(|(_, b)| *b)
                .collect();
            let before = targets.len();
            targets.dedup();
            assert_eq!(
                before,
                targets.len(),
                "node {node} pushed twice to one peer"
            );
        }
        // Nobody sends the message back to the node it first came from.
        for (i, m) in &net.delivered {
            let _ = m;
            let first_from = frames.iter().find(|(_, b)| b == i).map(|(a, _)| *a);
            if let Some(parent) = first_from {
                assert!(
                    !frames.iter().any(|(a, b)| a == i && *b == parent),
                    "node {i} sent the message back to {parent}"
                );
            }
        }
        assert!(
            !frames.iter().any(|(_, b)| *b == 0),
            "the origin got its own message"
        );
    }
}

#[test]
fn replays_within_the_window_are_neither_delivered_nor_forwarded() {
    let mut net = Net::new(3, flood());
    net.link(0, 1);
    net.link(1, 2);
    for i in 0..3 {
        net.subscribe(i, "t");
    }
    net.nodes[0]
        .publish(net.now, &topic("t"), b"once")
        .expect("publish");
    net.settle();
    let frame = net
        .sent
        .iter()
        .find(|(a, b, f)| *a == 0 && *b == 1 && f[1] == wire::KIND_GOSSIP)
        .map(|(_, _, f)| f.clone())
        .expect("frame");
    let (sent_before, delivered_before) = (net.gossip_frames().len(), net.delivered.len());
    net.now += Duration::from_secs(60);
    let from = net.id(0);
    net.nodes[1]
        .handle_frame(net.now, from, &frame)
        .expect("an honest frame is taken");
    net.settle();
    assert_eq!(net.delivered.len(), delivered_before);
    assert_eq!(net.gossip_frames().len(), sent_before);
    assert_eq!(net.nodes[1].metrics().duplicates, 1);
}

#[test]
fn forged_tampered_oversized_and_malformed_frames_are_dropped_and_counted() {
    let mut net = Net::new(2, flood());
    net.link(0, 1);
    net.subscribe(1, "t");
    let origin = keypair(1);
    let good = wire::encode_gossip(5, &origin.peer_id(), "t", b"data", |m| origin.sign(m));
    let from = net.id(0);
    let now = net.now;
    let node = &mut net.nodes[1];

    let mut tampered = good.to_vec();
    let last_data = tampered.len() - wire::SIGNATURE_LEN - 1;
    tampered[last_data] ^= 1;
    let bad_signature = FrameError::BadSignature {
        origin: origin.peer_id(),
    };
    assert_eq!(
        node.handle_frame(now, from, &tampered),
        Err(bad_signature.clone())
    );

    // Signed by someone else but claiming origin 1.
    let mallory = keypair(99);
    let forged = wire::encode_gossip(6, &origin.peer_id(), "t", b"data", |m| mallory.sign(m));
    assert_eq!(node.handle_frame(now, from, &forged), Err(bad_signature));

    let huge = vec![0u8; node.config().max_frame_len() + 1];
    assert!(matches!(
        node.handle_frame(now, from, &huge),
        Err(FrameError::Decode(DecodeError::Oversized { .. }))
    ));
    assert!(matches!(
        node.handle_frame(now, from, &good[..good.len() - 1]),
        Err(FrameError::Decode(_))
    ));
    assert!(matches!(
        node.handle_frame(now, from, &[9, wire::KIND_GOSSIP]),
        Err(FrameError::Decode(DecodeError::UnsupportedVersion(9)))
    ));
    assert_eq!(
        node.handle_frame(now, keypair(50).peer_id(), &good),
        Err(FrameError::NotANeighbour)
    );

    let m = node.metrics();
    assert_eq!(m.dropped.bad_signature, 2);
    assert_eq!(m.dropped.oversized, 1);
    assert_eq!(m.dropped.malformed, 1);
    assert_eq!(m.dropped.unsupported_version, 1);
    assert_eq!(m.dropped.not_a_neighbour, 1);
    assert_eq!(m.delivered, 0);
    assert!(node
        .poll_output()
        .into_iter()
        .all(|o| !matches!(o, Output::Event(Event::Delivered(_)))));

    // The genuine frame still gets through.
    node.handle_frame(now, from, &good)
        .expect("a genuine frame is taken");
    let delivered: Vec<Message> = std::iter::from_fn(|| node.poll_output())
        .filter_map(|o| match o {
            Output::Event(Event::Delivered(m)) => Some(m),
            _ => None,
        })
        .collect();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].origin, origin.peer_id());
    assert_eq!(delivered[0].seq, 5);
}

#[test]
fn unsubscribed_relays_carry_traffic_but_do_not_deliver() {
    // 0 - 1 - 2, and a leaf 3 hanging off 1. Only 2 subscribes.
    let mut net = Net::new(4, Config::default());
    net.link(0, 1);
    net.link(1, 2);
    net.link(1, 3);
    net.subscribe(2, "t");
    assert_eq!(net.nodes[0].interested_peers("t"), vec![net.id(1)]);
    assert!(net.nodes[1].interested_peers("t").contains(&net.id(2)));
    assert!(
        net.nodes[1].interested_peers("t").len() == 1,
        "leaf 3 wants nothing"
    );
    net.nodes[0]
        .publish(net.now, &topic("t"), b"x")
        .expect("publish");
    net.settle();
    net.run_for(Duration::from_secs(3), Duration::from_millis(10));
    let got: Vec<usize> = net.delivered.iter().map(|(i, _)| *i).collect();
    assert_eq!(got, vec![2]);
    assert_eq!(net.delivered[0].1.hops, 2);
    assert!(
        !net.sent
            .iter()
            .any(|(_, b, f)| *b == 3 && f[1] == wire::KIND_GOSSIP),
        "no message went into the branch without subscribers"
    );
}

#[test]
fn unsubscribe_stops_delivery_and_withdraws_interest() {
    let mut net = Net::new(2, flood());
    net.link(0, 1);
    net.subscribe(1, "t");
    assert_eq!(net.nodes[0].interested_peers("t"), vec![net.id(1)]);
    assert!(net.nodes[1].unsubscribe(net.now, &topic("t")));
    net.settle();
    assert!(net.nodes[0].interested_peers("t").is_empty());
    net.nodes[0]
        .publish(net.now, &topic("t"), b"x")
        .expect("publish");
    net.settle();
    assert!(net.delivered.is_empty());
    assert!(net.gossip_frames().is_empty());
    assert!(!net.nodes[1].unsubscribe(net.now, &topic("t")));
}

#[test]
fn tree_is_a_spanning_tree_and_heals_after_a_link_dies() {
    let mut net = square(pure_tree());
    // The root tree forms from TREE advertisements alone: 3 edges, seen from both ends.
    let eager: usize = net.nodes.iter().map(|n| n.eager_peers("t").len()).sum();
    assert_eq!(eager, 6);
    for round in 0..3u8 {
        let origin = usize::from(round);
        net.nodes[origin]
            .publish(net.now, &topic("t"), &[round])
            .expect("publish");
        net.settle();
        net.run_for(Duration::from_secs(3), Duration::from_millis(10));
    }
    assert_eq!(net.delivered.len(), 9);
    let duplicates: u64 = net.nodes.iter().map(|n| n.metrics().duplicates).sum();
    assert_eq!(duplicates, 0, "a tree carries one copy per node");
    // Cut every tree edge of node 2 and publish again: it must still get it.
    let p2 = net.id(2);
    for peer in net.nodes[2].eager_peers("t") {
        let j = net.index(&peer);
        net.nodes[j].neighbour_down(net.now, p2);
        net.nodes[2].neighbour_down(net.now, peer);
    }
    net.settle();
    if net.nodes[2].neighbours().count() == 0 {
        net.link(2, 3);
    }
    net.delivered.clear();
    net.nodes[0]
        .publish(net.now, &topic("t"), b"after")
        .expect("publish");
    net.settle();
    net.run_for(Duration::from_secs(5), Duration::from_millis(10));
    let mut got: Vec<usize> = net.delivered.iter().map(|(i, _)| *i).collect();
    got.sort_unstable();
    assert_eq!(got, vec![1, 2, 3]);
    let eager: usize = net.nodes.iter().map(|n| n.eager_peers("t").len()).sum();
    assert_eq!(eager, 6, "the tree re-formed around the cut");
}

#[test]
fn a_lost_push_is_pulled_without_adding_a_tree_edge() {
    let mut net = square(pure_tree());
    // Find a tree edge and drop the next push over it by removing the frame in flight:
    // publish at the root's child, then hand-deliver everything except one GOSSIP frame.
    let origin = 0;
    net.nodes[origin]
        .publish(net.now, &topic("t"), b"x")
        .expect("publish");
    let mut dropped = None;
    while let Some(out) = net.nodes[origin].poll_output() {
        match out {
            Output::Send { to, frame: bytes }
                if bytes[1] == wire::KIND_GOSSIP && dropped.is_none() =>
            {
                dropped = Some(net.index(&to));
            }
            Output::Send { to, frame: bytes } => {
                let j = net.index(&to);
                let from = net.id(origin);
                let _ = net.nodes[j].handle_frame(net.now, from, &bytes);
            }
            Output::Event(Event::Delivered(_)) => {}
            other => panic!("broadcast asked for {other:?}"),
        }
    }
    let victim = dropped.expect("the origin pushed over a tree edge");
    net.settle();
    net.run_for(Duration::from_secs(3), Duration::from_millis(10));
    let mut got: Vec<usize> = net.delivered.iter().map(|(i, _)| *i).collect();
    got.sort_unstable();
    assert_eq!(got, vec![1, 2, 3], "node {victim} pulled the lost message");
    let grafts: u64 = net.nodes.iter().map(|n| n.metrics().grafts_sent).sum();
    assert!(grafts >= 1, "the gap was filled by a pull");
    let eager: usize = net.nodes.iter().map(|n| n.eager_peers("t").len()).sum();
    assert_eq!(eager, 6, "a pull does not add a tree edge");
}

#[test]
fn the_cycle_rule_prunes_only_the_heaviest_grafted_edge() {
    // Line 0 - 1 - 2 plus a link 0 - 2: the root tree uses two of the three links. A
    // GRAFT then makes the third eager too, closing a cycle; a duplicate over it, carrying
    // the cycle's heaviest weight, must prune it and only it.
    let mut net = Net::new(3, Config::default());
    for (a, b) in [(0, 1), (1, 2), (0, 2)] {
        net.link(a, b);
    }
    for i in 0..3 {
        net.subscribe(i, "t");
    }
    let spare = (0..3)
        .flat_map(|a| (0..3).map(move |b| (a, b)))
        .find(|&(a, b)| a < b && !net.nodes[a].eager_peers("t").contains(&net.id(b)))
        .expect("one link is not in the tree");
    let (x, y) = spare;
    // y grafts x with a generation above the tree's (0).
    let graft = wire::encode_control([(
        "t",
        &[wire::Entry::Graft {
            id: MessageId::from_bytes([0; 16]),
            gen: 7,
        }][..],
    )]);
    let from = net.id(y);
    net.nodes[x]
        .handle_frame(net.now, from, &graft)
        .expect("an honest frame is taken");
    net.settle();
    assert!(net.nodes[x].eager_peers("t").contains(&net.id(y)));
    // Now x sees the same message first over the tree, then from y over the grafted link.
    let origin = keypair(9);
    let frame = wire::encode_gossip(1, &origin.peer_id(), "t", b"m", |m| origin.sign(m));
    let tree_peer = net.nodes[x]
        .eager_peers("t")
        .into_iter()
        .find(|p| *p != net.id(y))
        .expect("a tree neighbour");
    let heavy = crate::broadcast::interest::edge_weight(7, &net.id(x), &net.id(y));
    let light = crate::broadcast::interest::edge_weight(0, &net.id(x), &tree_peer);
    let (now, y_id) = (net.now, net.id(y));
    let first = wire::relay_copy(&frame, 1, light, light);
    let second = wire::relay_copy(&frame, 2, heavy, heavy);
    net.nodes[x]
        .handle_frame(now, tree_peer, &first)
        .expect("an honest frame is taken");
    net.nodes[x]
        .handle_frame(now, y_id, &second)
        .expect("an honest frame is taken");
    assert_eq!(net.nodes[x].metrics().prunes_sent, 1);
    assert!(!net.nodes[x].eager_peers("t").contains(&net.id(y)));
    assert!(
        net.nodes[x].eager_peers("t").contains(&tree_peer),
        "the tree edge stays"
    );
    net.settle();
    assert!(
        !net.nodes[y].eager_peers("t").contains(&net.id(x)),
        "PRUNE reached y"
    );
}

#[test]
fn ihave_for_unknown_ids_is_bounded_and_given_up() {
    let config = Config {
        max_missing: 10,
        ..Config::default()
    };
    let mut net = Net::new(2, config);
    net.link(0, 1);
    net.subscribe(0, "t");
    net.subscribe(1, "t");
    let entries: Vec<wire::Entry> = (0..50u8)
        .map(|i| wire::Entry::IHave {
            id: MessageId::from_bytes([i; 16]),
            hops: 1,
        })
        .collect();
    let frame = wire::encode_control([("t", entries.as_slice())]);
    let from = net.id(0);
    net.nodes[1]
        .handle_frame(net.now, from, &frame)
        .expect("an honest frame is taken");
    assert_eq!(net.nodes[1].missing_len(), 10);
    assert_eq!(net.nodes[1].metrics().missing_dropped, 40);
    net.run_for(Duration::from_secs(10), Duration::from_millis(50));
    assert_eq!(net.nodes[1].missing_len(), 0);
    let m = net.nodes[1].metrics();
    assert_eq!(m.missing_given_up, 10);
    assert!(m.grafts_sent <= 10 * u64::from(Config::default().max_graft_attempts));
    assert_eq!(net.nodes[0].metrics().grafts_unanswerable, m.grafts_sent);
}

#[test]
fn publish_checks_sizes_and_topics() {
    let now = test_now();
    let mut node = Broadcast::new(keypair(1), Config::default());
    let big = vec![0u8; Config::default().max_data_len + 1];
    assert!(matches!(
        node.publish(now, &topic("t"), &big),
        Err(PublishError::DataTooLarge { .. })
    ));
    let long = topic(&"x".repeat(300));
    assert!(matches!(
        node.publish(now, &long, b""),
        Err(PublishError::Topic(TopicError::TooLong { .. }))
    ));
    assert!(matches!(
        node.subscribe(now, &long),
        Err(TopicError::TooLong { .. })
    ));
    assert_eq!(Topic::new(""), Err(TopicError::Empty));
    assert!(node.publish(now, &topic("t"), b"ok").is_ok());
}

#[test]
fn memory_stays_bounded_under_a_flood_of_unique_messages() {
    let config = Config {
        seen_capacity: 200,
        history_capacity: 50,
        ..flood()
    };
    let mut net = Net::new(2, config);
    net.link(0, 1);
    net.subscribe(1, "t");
    let origin = keypair(1);
    let from = net.id(0);
    for seq in 0..500u64 {
        let frame = wire::encode_gossip(seq, &origin.peer_id(), "t", b"x", |m| origin.sign(m));
        net.now += Duration::from_millis(1);
        net.nodes[1]
            .handle_frame(net.now, from, &frame)
            .expect("an honest frame is taken");
        while net.nodes[1].poll_output().is_some() {}
    }
    assert!(net.nodes[1].seen_len() <= 200);
    assert!(net.nodes[1].history_len() <= 50);
    assert_eq!(net.nodes[1].metrics().delivered, 500);
    assert_eq!(net.nodes[1].metrics().seen_evicted_early, 300);
}

#[test]
fn interest_withdraws_from_a_ring_within_the_horizon() {
    // In a ring, split horizon alone cannot stop stale interest circling after the only
    // subscriber leaves; the horizon must end it, with a bounded number of frames.
    let config = Config {
        interest_horizon: 8,
        ..Config::default()
    };
    let mut net = Net::new(6, config);
    for i in 0..6 {
        net.link(i, (i + 1) % 6);
    }
    net.subscribe(0, "t");
    for i in 1..6 {
        assert_eq!(net.nodes[i].interested_peers("t").len(), 2, "node {i}");
    }
    let before = net.sent.len();
    assert!(net.nodes[0].unsubscribe(net.now, &topic("t")));
    net.settle();
    for i in 0..6 {
        assert!(net.nodes[i].interested_peers("t").is_empty(), "node {i}");
        assert!(!net.nodes[i].is_subscribed("t"));
    }
    assert!(
        net.sent.len() - before < 6 * 2 * 8,
        "withdrawal took {} frames",
        net.sent.len() - before
    );
}
