//! Multi-hop routing and relayed connections between nodes on 127.0.0.1: a chain of nodes
//! where only neighbours are linked, so the ends reach each other only through the middle.
//! On loopback every node can dial every other, so the DHT (which would find the far end's
//! address and dial it) is off here; `netns_route.rs` runs real topologies with it on.
//!
//! Every test runs over TCP and over QUIC (`name::tcp`, `name::quic`; `transports/mod.rs`).

mod node_util;

use bytes::Bytes;
use node_util::{addr, bounded, eventually, listening, transports, ECHO};
use pheromone::node::{DispatchError, Node, NodeConfig};
use pheromone::PeerId;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SINK: &str = "/test/sink/1.0.0";

/// Nodes in a line, each linked to the next (and to nothing else).
async fn line(n: usize, config: impl Fn(usize) -> NodeConfig) -> Vec<Node> {
    let mut nodes = Vec::new();
    for i in 0..n {
        let config = NodeConfig {
            discovery: None,
            ..config(i)
        };
        let node = listening(&format!("n{i}"))
            .config(config)
            .handle_streams(SINK, node_util::sink_digest)
            .build()
            .await
            .expect("build");
        nodes.push(node);
    }
    for pair in nodes.windows(2) {
        let name = format!("{}", pair[1].peer_id());
        pair[0]
            .add_contact(name, &addr(&pair[1]))
            .await
            .expect("link");
    }
    nodes
}

fn routed(nodes: &[Node], from: usize, to: &PeerId) -> bool {
    nodes[from].routing().and_then(|r| r.next_hop(to)).is_some()
}

over_transports! {
    #[tokio::test]
    async fn the_ends_of_a_line_talk_through_relays() {
        bounded(async {
            let nodes = line(4, |_| NodeConfig::default()).await;
            let last = nodes[3].peer_id();
            eventually(|| routed(&nodes, 0, &last)).await;
            let hop = nodes[0]
                .routing()
                .expect("routing")
                .next_hop(&last)
                .expect("route");
            assert_eq!(hop.peer, nodes[1].peer_id());
            assert_eq!(hop.hops, 3);

            let reply = nodes[0]
                .dispatch(last, ECHO, "over three links")
                .await
                .expect("dispatch");
            assert_eq!(reply, Bytes::from("over three links"));
            let conn = nodes[0]
                .endpoint()
                .connections()
                .into_iter()
                .find(|c| c.remote_peer() == last)
                .expect("a connection to the last node");
            assert_eq!(
                conn.info().relay,
                Some(nodes[1].peer_id()),
                "relayed through the neighbour"
            );

            // Both middle nodes carried the circuit, and saw only ciphertext: the payload
            // never appears in what they relayed (Noise encrypts end to end).
            assert_eq!(nodes[1].relay().expect("relay").stats().circuits_relayed, 1);
            assert_eq!(nodes[2].relay().expect("relay").stats().circuits_relayed, 1);

            // The far end answers back over the same circuit: requests both ways.
            let back = nodes[3]
                .dispatch(nodes[0].peer_id(), ECHO, "and back")
                .await
                .expect("reverse");
            assert_eq!(back, Bytes::from("and back"));
            for node in &nodes {
                node.close().await;
            }
        })
        .await;
    }
}

over_transports! {
    #[tokio::test]
    async fn a_large_stream_crosses_the_circuit_intact() {
        bounded(async {
            let nodes = line(3, |_| NodeConfig::default()).await;
            let last = nodes[2].peer_id();
            eventually(|| routed(&nodes, 0, &last)).await;
            let mut stream = nodes[0].open_stream(last, SINK).await.expect("open");
            let mut hasher = Sha256::new();
            let mut block = vec![0u8; 256 * 1024];
            let total = 32u64 << 20;
            let mut sent = 0u64;
            let mut seed = 1u32;
            while sent < total {
                fill(&mut seed, &mut block);
                stream.write_all(&block).await.expect("write");
                hasher.update(&block);
                sent += block.len() as u64;
            }
            expect_sink_answer(&mut stream, total, hasher).await;
            let relayed = nodes[1].relay().expect("relay").stats().bytes_relayed;
            assert!(
                relayed > total,
                "the middle node carried the bytes (and the overhead): {relayed}"
            );
            for node in &nodes {
                node.close().await;
            }
        })
        .await;
    }
}

over_transports! {
    /// Writes of odd sizes — a byte, a Noise frame's worth and one more, a yamux frame and
    /// one more — cross two relays byte for byte; a large request and its echo cross both
    /// ways. The relays move whatever has arrived in one batch, so chunk boundaries shift at
    /// every hop.
    #[tokio::test]
    async fn odd_sized_writes_cross_two_relays_intact() {
        bounded(async {
            let nodes = line(4, |_| NodeConfig::default()).await;
            let last = nodes[3].peer_id();
            eventually(|| routed(&nodes, 0, &last)).await;
            let mut stream = nodes[0].open_stream(last, SINK).await.expect("open");
            let mut hasher = Sha256::new();
            let sizes = [
                1usize, 7, 65_519, 65_520, 262_144, 262_145, 3, 100_003, 1_000_001,
            ];
            let mut total = 0u64;
            let mut seed = 7u32;
            for (round, size) in sizes.iter().cycle().take(3 * sizes.len()).enumerate() {
                let mut block = vec![0u8; *size];
                fill(&mut seed, &mut block);
                stream.write_all(&block).await.expect("write");
                if round % 4 == 0 {
                    // Let some writes leave alone and others pile up behind them.
                    tokio::task::yield_now().await;
                }
                hasher.update(&block);
                total += *size as u64;
            }
            expect_sink_answer(&mut stream, total, hasher).await;

            let request: Vec<u8> = (0..700_001u32).map(|i| (i % 253) as u8).collect();
            let echoed = nodes[0]
                .dispatch(last, ECHO, request.clone())
                .await
                .expect("echo through two relays");
            assert_eq!(&echoed[..], &request[..]);
            for node in &nodes {
                node.close().await;
            }
        })
        .await;
    }
}

over_transports! {
    #[tokio::test]
    async fn a_node_that_does_not_relay_refuses_circuits() {
        bounded(async {
            let nodes = line(3, |i| {
                let mut config = NodeConfig::default();
                if i == 1 {
                    config.relay.relay_for_others = false;
                }
                config
            })
            .await;
            let last = nodes[2].peer_id();
            eventually(|| routed(&nodes, 0, &last)).await;
            let err = nodes[0]
                .dispatch(last, ECHO, "x")
                .await
                .expect_err("refused");
            assert!(matches!(err, DispatchError::Relay { .. }), "{err}");
            assert!(err.to_string().contains("RelayDisabled"), "{err}");
            // The node keeps serving its direct neighbours.
            let ok = nodes[0]
                .dispatch(nodes[1].peer_id(), ECHO, "hi")
                .await
                .expect("direct");
            assert_eq!(ok, Bytes::from("hi"));
            for node in &nodes {
                node.close().await;
            }
        })
        .await;
    }
}

over_transports! {
    #[tokio::test]
    async fn the_hop_limit_stops_long_circuits() {
        bounded(async {
            let nodes = line(4, |i| {
                let mut config = NodeConfig::default();
                if i == 0 {
                    config.relay.max_hops = 2;
                }
                config
            })
            .await;
            let last = nodes[3].peer_id();
            eventually(|| routed(&nodes, 0, &last)).await;
            let err = nodes[0]
                .dispatch(last, ECHO, "x")
                .await
                .expect_err("too far");
            assert!(err.to_string().contains("HopLimit"), "{err}");
            // Two links is within the limit.
            let two = nodes[0]
                .dispatch(nodes[2].peer_id(), ECHO, "ok")
                .await
                .expect("two hops");
            assert_eq!(two, Bytes::from("ok"));
            for node in &nodes {
                node.close().await;
            }
        })
        .await;
    }
}

over_transports! {
    #[tokio::test]
    async fn routes_are_withdrawn_when_a_link_dies() {
        bounded(async {
            let nodes = line(3, |_| NodeConfig::default()).await;
            let last = nodes[2].peer_id();
            eventually(|| routed(&nodes, 0, &last)).await;
            nodes[2].close().await;
            eventually(|| !routed(&nodes, 0, &last)).await;
            for node in &nodes[..2] {
                node.close().await;
            }
        })
        .await;
    }
}

over_transports! {
    #[tokio::test]
    async fn a_forwarded_port_works_through_a_relay() {
        bounded(async {
            let nodes = line(3, |_| NodeConfig::default()).await;
            let last = nodes[2].peer_id();
            eventually(|| routed(&nodes, 0, &last)).await;

            // A TCP echo service next to the last node, exposed to the first one only.
            let service = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let service_addr = service.local_addr().expect("addr");
            tokio::spawn(async move {
                while let Ok((mut socket, _)) = service.accept().await {
                    tokio::spawn(async move {
                        let (mut r, mut w) = socket.split();
                        let _ = tokio::io::copy(&mut r, &mut w).await;
                    });
                }
            });
            let allow = pheromone::Access::AllowList([nodes[0].peer_id()].into_iter().collect());
            let _exposed =
                pheromone::forward::expose(&nodes[2], "echo", service_addr, allow).expect("expose");
            let forwarded = pheromone::forward::forward(
                &nodes[0],
                "echo",
                last,
                "127.0.0.1:0".parse().expect("addr"),
            )
            .await
            .expect("forward");

            let mut client = tokio::net::TcpStream::connect(forwarded.local_addr())
                .await
                .expect("connect to the forwarded port");
            let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
            client.write_all(&payload).await.expect("write");
            client.shutdown().await.expect("half-close");
            let mut back = Vec::new();
            client.read_to_end(&mut back).await.expect("read");
            assert_eq!(back, payload, "echoed byte-exact through the relay");
            let conn = nodes[0]
                .endpoint()
                .connections()
                .into_iter()
                .find(|c| c.remote_peer() == last)
                .expect("a connection to the last node");
            assert_eq!(conn.info().relay, Some(nodes[1].peer_id()));
            for node in &nodes {
                node.close().await;
            }
        })
        .await;
    }
}

/// Fills `block` with the test's pseudo-random bytes, continuing from `seed`.
fn fill(seed: &mut u32, block: &mut [u8]) {
    for b in block {
        *seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        *b = (*seed >> 24) as u8;
    }
}

/// Half-closes `stream` and checks the sink's answer: the byte count and SHA-256 of
/// everything written.
async fn expect_sink_answer(stream: &mut pheromone::node::NodeStream, total: u64, hasher: Sha256) {
    stream.shutdown().await.expect("half-close");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("answer");
    assert_eq!(answer.len(), 40);
    assert_eq!(
        u64::from_be_bytes(answer[..8].try_into().expect("8")),
        total
    );
    assert_eq!(&answer[8..], &hasher.finalize()[..]);
}
