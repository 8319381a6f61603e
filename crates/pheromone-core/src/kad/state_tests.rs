//! Tests of the [`Kademlia`] state machine: a small synchronous network of instances for
//! lookups, and hand-made hostile inputs.

use super::wire::{MessageProto, PeerProto};
use super::*;
use crate::addr::Multiaddr;
use crate::identity::{Keypair, PeerId};
use crate::overlay::{Direction, InboundId, Neighbour, Overlay, RequestFailure, RequestId};
use bytes::Bytes;
use proptest::prelude::*;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// The inputs these tests feed, spelled as the driver sees them, and mapped onto the
/// overlay contract by [`Feed::handle_input`].
enum Input<'a> {
    Connected {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        direction: Direction,
    },
    InboundRequest {
        peer: PeerId,
        id: InboundId,
        bytes: &'a [u8],
    },
    Response {
        id: RequestId,
        bytes: &'a [u8],
    },
    RequestFailed {
        id: RequestId,
        reason: RequestFailure,
    },
}

trait Feed {
    fn handle_input(&mut self, now: Instant, input: Input<'_>) -> Result<(), KadError>;
}

impl Feed for Kademlia {
    fn handle_input(&mut self, now: Instant, input: Input<'_>) -> Result<(), KadError> {
        match input {
            Input::Connected {
                peer,
                addrs,
                direction,
            } => {
                self.neighbour_up(now, Neighbour::direct(peer, addrs, direction));
                Ok(())
            }
            Input::InboundRequest { peer, id, bytes } => self.handle_request(now, peer, id, bytes),
            Input::Response { id, bytes } => self.handle_response(now, id, Ok(bytes)),
            Input::RequestFailed { id, reason } => self.handle_response(now, id, Err(reason)),
        }
    }
}

/// Tests need some origin for the clock; only differences from it matter.
#[allow(clippy::disallowed_methods)]
fn test_now() -> Instant {
    Instant::now()
}

fn peer(i: u32) -> PeerId {
    let mut seed = [0u8; 32];
    seed[..4].copy_from_slice(&i.to_le_bytes());
    Keypair::from_seed(seed).peer_id()
}

fn addr_of(i: u32) -> Multiaddr {
    Multiaddr::from_socket_addr(([20, (i >> 8) as u8, i as u8, 1], 4001).into())
}

fn drain(kad: &mut Kademlia) -> Vec<Output> {
    std::iter::from_fn(|| kad.poll_output()).collect()
}

fn requests(outputs: &[Output]) -> Vec<(RequestId, PeerId, Vec<Multiaddr>, Bytes)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Request {
                id,
                to: peer,
                addrs,
                request: bytes,
            } => Some((*id, *peer, addrs.clone(), bytes.clone())),
            _ => None,
        })
        .collect()
}

fn finished(outputs: &[Output]) -> Vec<QueryResult> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Event(Event::QueryFinished(r)) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

/// A synchronous network: every request is answered at once by its target, if alive.
struct Net {
    now: Instant,
    nodes: Vec<Kademlia>,
    index: HashMap<PeerId, usize>,
    dead: Vec<bool>,
    results: Vec<(usize, QueryResult)>,
}

impl Net {
    fn new(n: u32) -> Self {
        let now = test_now();
        let config = Config {
            refresh_interval: None,
            ..Config::default()
        };
        let nodes: Vec<Kademlia> = (0..n)
            .map(|i| Kademlia::new(peer(i), config.clone(), now, u64::from(i)))
            .collect();
        let index = (0..n).map(|i| (peer(i), i as usize)).collect();
        Self {
            now,
            nodes,
            index,
            dead: vec![false; n as usize],
            results: Vec::new(),
        }
    }

    fn run(&mut self, from: usize) {
        let mut queue: VecDeque<(usize, Output)> = drain(&mut self.nodes[from])
            .into_iter()
            .map(|o| (from, o))
            .collect();
        while let Some((node, out)) = queue.pop_front() {
            match out {
                Output::Request {
                    id,
                    to: peer,
                    request: bytes,
                    ..
                } => {
                    let to = self.index[&peer];
                    if self.dead[to] {
                        let fail = Input::RequestFailed {
                            id,
                            reason: RequestFailure::Dial,
                        };
                        self.nodes[node].handle_input(self.now, fail).unwrap();
                        queue.extend(drain(&mut self.nodes[node]).into_iter().map(|o| (node, o)));
                        continue;
                    }
                    let me = self.nodes[node].local_peer_id();
                    let now = self.now;
                    let target = &mut self.nodes[to];
                    let connected = Input::Connected {
                        peer: me,
                        addrs: vec![addr_of(node as u32)],
                        direction: Direction::Inbound,
                    };
                    target.handle_input(now, connected).unwrap();
                    let request = Input::InboundRequest {
                        peer: me,
                        id: InboundId(id.0),
                        bytes: &bytes,
                    };
                    target.handle_input(now, request).unwrap();
                    let mut response = None;
                    for o in drain(target) {
                        match o {
                            Output::Respond {
                                response: bytes, ..
                            } => response = Some(bytes),
                            other => queue.push_back((to, other)),
                        }
                    }
                    let response = response.expect("a response");
                    let src = &mut self.nodes[node];
                    src.handle_input(
                        now,
                        Input::Response {
                            id,
                            bytes: &response,
                        },
                    )
                    .unwrap();
                    queue.extend(drain(src).into_iter().map(|o| (node, o)));
                }
                Output::Respond { .. } => {}
                Output::Event(Event::QueryFinished(r)) => self.results.push((node, r)),
                Output::Event(_) => {}
                other => panic!("kad asked for {other:?}"),
            }
        }
    }

    fn join_all(&mut self) {
        for i in 1..self.nodes.len() {
            let now = self.now;
            self.nodes[i].add_address(now, peer(0), addr_of(0)).unwrap();
            self.nodes[i].bootstrap(now);
            self.run(i);
        }
    }
}

#[test]
fn nodes_joining_through_one_bootstrap_find_each_other() {
    let mut net = Net::new(60);
    net.join_all();
    assert!(net
        .results
        .iter()
        .all(|(_, r)| r.outcome == QueryOutcome::Completed));
    // Each join is a self-lookup followed by a random-key refresh lookup.
    let bootstraps = net
        .results
        .iter()
        .filter(|(_, r)| r.kind == QueryKind::Bootstrap)
        .count();
    assert_eq!(bootstraps, 59);
    net.results.clear();
    for from in [1usize, 17, 59] {
        for target in [2u32, 30, 58] {
            let now = net.now;
            net.nodes[from].find_peer(now, peer(target));
            net.run(from);
        }
    }
    assert_eq!(net.results.len(), 9);
    for (_, r) in &net.results {
        let QueryKind::FindPeer(target) = r.kind else {
            panic!("unexpected kind")
        };
        let i = net.index[&target] as u32;
        assert_eq!(r.outcome, QueryOutcome::Found(vec![addr_of(i)]), "{r:?}");
        assert!(r.hops <= 3, "{r:?}");
    }
}

#[test]
fn a_dead_peer_fails_the_request_and_is_replaced() {
    let mut net = Net::new(40);
    net.join_all();
    // Kill a peer that node 1 knows; a lookup through it marks it failed and evicts it.
    let own = Key::from_peer(&peer(1));
    let victim = net.nodes[1].table().closest(&own, 1)[0].peer;
    let v = net.index[&victim];
    net.dead[v] = true;
    let now = net.now;
    net.nodes[1].bootstrap(now);
    net.run(1);
    assert!(net.nodes[1].table().get(&victim).is_none());
    assert!(net.nodes[1].metrics().evictions >= 1);
}

fn one_peer_node() -> (Kademlia, Instant) {
    let now = test_now();
    let config = Config {
        refresh_interval: None,
        ..Config::default()
    };
    let mut kad = Kademlia::new(peer(0), config, now, 7);
    kad.add_address(now, peer(1), addr_of(1)).unwrap();
    drain(&mut kad);
    (kad, now)
}

#[test]
fn malformed_inbound_requests_are_typed_errors() {
    let (mut kad, now) = one_peer_node();
    let err = kad
        .handle_input(
            now,
            Input::InboundRequest {
                peer: peer(1),
                id: InboundId(1),
                bytes: &[3, 0xff, 0xff, 0xff],
            },
        )
        .unwrap_err();
    assert!(matches!(
        err,
        KadError::Wire {
            source: WireError::Protobuf(_),
            ..
        }
    ));
    assert_eq!(kad.metrics().malformed, 1);
    assert!(drain(&mut kad).is_empty());
}

#[test]
fn unsolicited_responses_are_ignored_and_counted() {
    let (mut kad, now) = one_peer_node();
    let mut out = Vec::new();
    Response::Ping.encode(&mut out);
    for i in 0..1000 {
        let err = kad
            .handle_input(
                now,
                Input::Response {
                    id: RequestId(500 + i),
                    bytes: &out,
                },
            )
            .unwrap_err();
        assert_eq!(err, KadError::UnknownRequest(500 + i));
    }
    assert_eq!(kad.metrics().unsolicited, 1000);
    assert_eq!(kad.table().len(), 1);
    assert!(drain(&mut kad).is_empty());
}

#[test]
fn a_huge_response_is_capped_and_listed_peers_are_not_trusted() {
    let (mut kad, now) = one_peer_node();
    let q = kad.bootstrap(now);
    let out = drain(&mut kad);
    let sent = requests(&out);
    assert_eq!(sent.len(), 1);
    // 10,000 entries: real peers with honest-looking addresses, one with unroutable ones.
    let mut message = MessageProto {
        r#type: 4,
        cluster_level_raw: 0,
        key: Vec::new(),
        closer_peers: Vec::new(),
        provider_peers: Vec::new(),
    };
    let bogus: Vec<Vec<u8>> = [
        "/ip4/0.0.0.0/tcp/1",
        "/ip4/224.0.0.1/tcp/1",
        "/ip4/9.9.9.9/tcp/0",
    ]
    .iter()
    .map(|a| a.parse::<Multiaddr>().unwrap().to_bytes())
    .collect();
    message.closer_peers.push(PeerProto {
        id: peer(2).to_bytes(),
        addrs: bogus,
        connection: 1,
    });
    for i in 0..9999u32 {
        message.closer_peers.push(PeerProto {
            id: peer(3 + i % 50).to_bytes(),
            addrs: vec![addr_of(3 + i % 50).to_bytes()],
            connection: 0,
        });
    }
    let mut bytes = Vec::new();
    prost::Message::encode(&message, &mut bytes).unwrap();
    kad.handle_input(
        now,
        Input::Response {
            id: sent[0].0,
            bytes: &bytes,
        },
    )
    .unwrap();
    let m = kad.metrics();
    assert_eq!(m.peers_ignored, 10_000 - 40);
    assert_eq!(m.addrs_rejected, 3);
    assert_eq!(m.peers_unreachable, 1);
    // Only the peer that answered is in the table; the listed ones are only candidates,
    // asked next (α = 3 at a time).
    assert_eq!(kad.table().len(), 1);
    let out = drain(&mut kad);
    let next = requests(&out);
    assert_eq!(next.len(), 3);
    assert!(next.iter().all(|(_, p, _, _)| *p != peer(2)));
    // Candidates that never answer never enter the table, and the lookup still ends.
    let mut t = now;
    for _ in 0..30 {
        t += Duration::from_secs(11);
        kad.handle_timeout(t);
        let out = drain(&mut kad);
        if let Some(r) = finished(&out).into_iter().find(|r| r.id == q) {
            // Twenty silent candidates at ten seconds each, three at a time, may outlast
            // the lookup's own deadline; either way it ends.
            assert!(matches!(
                r.outcome,
                QueryOutcome::Completed | QueryOutcome::TimedOut
            ));
            // (Peer 1 itself is gone too by now: it stopped answering liveness pings.)
            assert!((2..53).all(|i| !kad.table().knows(&peer(i))));
            return;
        }
    }
    panic!("the lookup never ended");
}

#[test]
fn liveness_checks_ping_the_oldest_and_evict_on_failure() {
    let now = test_now();
    let config = Config {
        refresh_interval: None,
        ..Config::default()
    };
    let mut kad = Kademlia::new(peer(0), config, now, 1);
    kad.add_address(now, peer(1), addr_of(1)).unwrap();
    drain(&mut kad);
    assert_eq!(kad.poll_timeout(), Some(now + Duration::from_secs(10)));
    let t = now + Duration::from_secs(10);
    kad.handle_timeout(t);
    let sent = requests(&drain(&mut kad));
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1, peer(1));
    assert_eq!(Request::decode(&sent[0].3), Ok(Request::Ping));
    // A ping answered keeps it; a ping unanswered (timeout) evicts it.
    let mut pong = Vec::new();
    Response::Ping.encode(&mut pong);
    kad.handle_input(
        t,
        Input::Response {
            id: sent[0].0,
            bytes: &pong,
        },
    )
    .unwrap();
    assert_eq!(kad.table().len(), 1);
    let t = t + Duration::from_secs(10);
    kad.handle_timeout(t);
    let sent = requests(&drain(&mut kad));
    assert_eq!(sent.len(), 1);
    kad.handle_timeout(t + Duration::from_secs(10));
    let out = drain(&mut kad);
    assert!(out.contains(&Output::Event(Event::PeerEvicted {
        peer: peer(1),
        promoted: None
    })));
    assert!(kad.table().is_empty());
}

#[test]
fn commands_without_peers_or_over_the_cap_are_refused() {
    let now = test_now();
    let mut kad = Kademlia::new(peer(0), Config::default(), now, 1);
    let q = kad.find_peer(now, peer(5));
    let r = finished(&drain(&mut kad));
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].id, q);
    assert_eq!(r[0].outcome, QueryOutcome::Refused);
    assert_eq!(
        kad.add_address(now, peer(0), addr_of(0)),
        Err(KadError::SelfPeer)
    );
    assert!(matches!(
        kad.add_address(now, peer(1), "/ip4/0.0.0.0/tcp/1".parse().unwrap()),
        Err(KadError::BadAddress { .. })
    ));
    assert!(matches!(
        kad.add_address(now, peer(1), addr_of(1).with_p2p(peer(2)).unwrap()),
        Err(KadError::BadAddress { .. })
    ));
}

/// Feeds a FIND_NODE for its own ID from `from`, as inbound request `id`.
fn find_node_from(kad: &mut Kademlia, now: Instant, from: u32, id: u64) {
    let mut req = Vec::new();
    Request::FindNode {
        key: peer(from).to_bytes(),
    }
    .encode(&mut req);
    let input = Input::InboundRequest {
        peer: peer(from),
        id: InboundId(id),
        bytes: &req,
    };
    kad.handle_input(now, input).unwrap();
}

/// Reports an inbound connection from `from` whose address the driver vouches for.
fn vouched_inbound(kad: &mut Kademlia, now: Instant, from: u32) {
    let input = Input::Connected {
        peer: peer(from),
        addrs: vec![addr_of(from)],
        direction: Direction::Inbound,
    };
    kad.handle_input(now, input).unwrap();
}

#[test]
fn inbound_requesters_join_the_table_only_with_vouched_addresses() {
    let (mut kad, now) = one_peer_node();
    // Unknown peer, no connection info: answered, not inserted.
    find_node_from(&mut kad, now, 9, 1);
    let out = drain(&mut kad);
    assert!(matches!(
        out[0],
        Output::Respond {
            id: InboundId(1),
            ..
        }
    ));
    assert!(kad.table().get(&peer(9)).is_none());
    // With a connection the driver vouches for: inserted.
    vouched_inbound(&mut kad, now, 9);
    assert!(matches!(drain(&mut kad)[..], [Output::Event(_)]));
    find_node_from(&mut kad, now, 9, 2);
    assert_eq!(kad.table().get(&peer(9)).unwrap().addrs, vec![addr_of(9)]);
    // The requester is not told about itself; the response lists peer 1.
    let out = drain(&mut kad);
    let Some(Output::Respond {
        response: bytes, ..
    }) = out.first()
    else {
        panic!("no response: {out:?}")
    };
    match Response::decode(bytes, 4, DecodeLimits::default()).unwrap() {
        Response::FindNode { closer_peers, .. } => {
            let ids: Vec<PeerId> = closer_peers.iter().map(|p| p.id).collect();
            assert_eq!(ids, vec![peer(1)]);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_requester_vouched_for_after_its_request_joins_the_table() {
    let (mut kad, now) = one_peer_node();
    // The request overtakes identify: no address yet, so no entry.
    find_node_from(&mut kad, now, 9, 1);
    assert!(kad.table().get(&peer(9)).is_none());
    // Identify answers: the requester joins without having to ask again.
    vouched_inbound(&mut kad, now, 9);
    assert_eq!(kad.table().get(&peer(9)).unwrap().addrs, vec![addr_of(9)]);
    // A neighbour that never asked anything joins too: the driver makes a peer a kad
    // neighbour only when its identify lists the kad protocol.
    vouched_inbound(&mut kad, now, 10);
    assert_eq!(kad.table().get(&peer(10)).unwrap().addrs, vec![addr_of(10)]);
}

#[test]
fn pending_inbound_responses_are_capped() {
    let now = test_now();
    let config = Config {
        max_pending_inbound: 4,
        ..Config::default()
    };
    let mut kad = Kademlia::new(peer(0), config, now, 1);
    let mut req = Vec::new();
    Request::Ping.encode(&mut req);
    let input = |i| Input::InboundRequest {
        peer: peer(1),
        id: InboundId(i),
        bytes: &req,
    };
    for i in 0..4 {
        kad.handle_input(now, input(i)).unwrap();
    }
    assert_eq!(
        kad.handle_input(now, input(4)),
        Err(KadError::TooManyInbound(4))
    );
    drain(&mut kad);
    kad.handle_input(now, input(5)).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn the_state_machine_never_panics_on_arbitrary_bytes(
        data in proptest::collection::vec(any::<u8>(), 0..400)
    ) {
        fuzzing::fuzz_state(test_now(), &data);
        // A well-framed body of random bytes reaches the protobuf walker too.
        let mut framed = Vec::new();
        crate::varint::encode(data.len() as u64, &mut framed);
        framed.extend_from_slice(&data);
        fuzzing::fuzz_state(test_now(), &framed);
        fuzzing::fuzz_decode(&framed);
    }
}

fn find_node_response(peers: &[(PeerId, Multiaddr)]) -> Vec<u8> {
    let mut out = Vec::new();
    super::wire::encode_find_node_response(
        peers.iter().map(|(p, a)| {
            (
                p,
                std::slice::from_ref(a),
                super::wire::ConnectionType::NotConnected,
            )
        }),
        &mut out,
    );
    out
}

fn node_with_peers(config: Config, peers: std::ops::RangeInclusive<u32>) -> (Kademlia, Instant) {
    let now = test_now();
    let mut kad = Kademlia::new(peer(0), config, now, 7);
    for i in peers {
        kad.add_address(now, peer(i), addr_of(i)).unwrap();
    }
    drain(&mut kad);
    (kad, now)
}

#[test]
fn a_slow_request_frees_its_slot_and_its_late_answer_still_counts() {
    let config = Config {
        refresh_interval: None,
        ..Config::default()
    };
    let slow = config.slow_request_after;
    let (mut kad, now) = node_with_peers(config, 1..=4);
    let target = peer(99);
    let q = kad.find_peer(now, target);
    let first = requests(&drain(&mut kad));
    assert_eq!(first.len(), 3, "alpha requests in flight");
    assert_eq!(kad.poll_timeout(), Some(now + slow));
    // Nobody answers within the slow threshold: the fourth peer is asked meanwhile.
    kad.handle_timeout(now + slow);
    let second = requests(&drain(&mut kad));
    assert_eq!(second.len(), 1);
    assert!(first.iter().all(|r| r.1 != second[0].1));
    // A slow peer answers after all (before its timeout), naming the target.
    let bytes = find_node_response(&[(target, addr_of(99))]);
    let t = now + slow + Duration::from_secs(1);
    kad.handle_input(
        t,
        Input::Response {
            id: first[0].0,
            bytes: &bytes,
        },
    )
    .unwrap();
    let done = finished(&drain(&mut kad));
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].id, q);
    assert_eq!(done[0].outcome, QueryOutcome::Found(vec![addr_of(99)]));
    assert_eq!(done[0].duration, slow + Duration::from_secs(1));
    // The slow peers that answered nothing are not evicted before their own timeout.
    assert_eq!(kad.table().len(), 4);
}

#[test]
fn slow_peers_give_up_their_place_among_the_k_closest() {
    let config = Config {
        refresh_interval: None,
        k: 2,
        ..Config::default()
    };
    let slow = config.slow_request_after;
    // Buckets hold two here, so more peers are offered than stay; at least four do.
    let (mut kad, now) = node_with_peers(config, 1..=12);
    assert!(kad.table().len() >= 4);
    let q = kad.bootstrap(now);
    let first = requests(&drain(&mut kad));
    assert_eq!(first.len(), 2, "only the k closest are asked");
    kad.handle_timeout(now + slow);
    let second = requests(&drain(&mut kad));
    assert_eq!(second.len(), 2, "the next two take the slow ones' places");
    let t = now + slow + Duration::from_millis(100);
    let empty = find_node_response(&[]);
    for r in &second {
        kad.handle_input(
            t,
            Input::Response {
                id: r.0,
                bytes: &empty,
            },
        )
        .unwrap();
    }
    // The k closest responsive peers answered: done, without waiting out the timeouts.
    let done: Vec<QueryResult> = finished(&drain(&mut kad))
        .into_iter()
        .filter(|r| r.id == q)
        .collect();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].outcome, QueryOutcome::Completed);
    let mut closest = done[0].closest.clone();
    closest.sort();
    let mut expected: Vec<PeerId> = second.iter().map(|r| r.1).collect();
    expected.sort();
    assert_eq!(closest, expected);
    // Their late answers are still accepted (the table refreshes) but change nothing.
    kad.handle_input(
        t,
        Input::Response {
            id: first[0].0,
            bytes: &empty,
        },
    )
    .unwrap();
    assert!(finished(&drain(&mut kad)).is_empty());
}

/// A connection from `peer`, which announces `announced` while its socket talks from
/// `observed`.
fn connect_observed(
    kad: &mut Kademlia,
    now: Instant,
    peer: PeerId,
    announced: Multiaddr,
    observed: [u8; 4],
) {
    let mut n = Neighbour::direct(peer, vec![announced], Direction::Inbound);
    n.observed_ip = Some(std::net::IpAddr::from(observed));
    kad.neighbour_up(now, n);
}

#[test]
fn diversity_counts_the_observed_address_not_the_announced_ones() {
    // Issue 16: one host (one /24 on the wire) announcing a different subnet, loopback or a
    // DNS name per identity filled the table past the per-subnet cap.
    let config = Config::default();
    let cap = config.max_per_subnet_table;
    let now = test_now();
    let mut kad = Kademlia::new(peer(0), config, now, 1);
    let attacker = [66, 1, 2, 3];
    for i in 1..=3 * cap as u32 {
        let announced: Multiaddr = match i % 3 {
            0 => addr_of(i),
            1 => "/ip4/127.0.0.1/tcp/4001".parse().unwrap(),
            _ => format!("/dns4/n{i}.example/tcp/4001").parse().unwrap(),
        };
        connect_observed(&mut kad, now, peer(i), announced, attacker);
    }
    assert!(
        kad.table().len() <= cap,
        "{} entries from one observed /24 (cap {cap})",
        kad.table().len()
    );
    // Peers really on loopback (tests, one machine) stay exempt.
    let mut local = Kademlia::new(peer(0), Config::default(), now, 1);
    for i in 1..=3 * cap as u32 {
        let announced: Multiaddr = "/ip4/127.0.0.1/tcp/4001".parse().unwrap();
        connect_observed(&mut local, now, peer(i), announced, [127, 0, 0, 1]);
    }
    assert!(local.table().len() > cap);
}
