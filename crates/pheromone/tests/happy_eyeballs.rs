//! Happy Eyeballs (RFC 8305) in the swarm's dial: a peer known at a TCP and a QUIC address
//! is dialled over QUIC first, and over TCP when QUIC does not answer in time — on real
//! sockets on 127.0.0.1.

mod node_util;

use node_util::{bounded, ECHO};
use pheromone::{Multiaddr, Transport};

/// A node listening on TCP and QUIC; its two addresses (with `/p2p/`).
async fn dual_stack() -> (pheromone::Node, Multiaddr, Multiaddr) {
    let node = node_util::listening("dual")
        .listen("/ip4/127.0.0.1/udp/0/quic-v1")
        .build()
        .await
        .expect("node");
    let addrs = node.listen_addrs();
    let quic = addrs.iter().find(|a| a.is_quic()).expect("quic").clone();
    let tcp = addrs.iter().find(|a| !a.is_quic()).expect("tcp").clone();
    (node, tcp, quic)
}

#[tokio::test]
async fn quic_is_dialled_first_when_both_answer() {
    bounded(async {
        let (server, tcp, quic) = dual_stack().await;
        let client = pheromone::Node::builder().build().await.expect("client");
        // TCP listed first: the order is the dial's, not the caller's.
        let conn = client
            .swarm()
            .connect_at(server.peer_id(), vec![tcp, quic])
            .await
            .expect("connect");
        assert_eq!(conn.transport(), Transport::Quic);
        let reply = client
            .dispatch(server.peer_id(), ECHO, "over quic")
            .await
            .expect("echo");
        assert_eq!(reply, "over quic");
        assert_eq!(
            client.endpoint().connections().len(),
            1,
            "one connection: the TCP attempt never started or was dropped"
        );
    })
    .await;
}

#[tokio::test]
async fn tcp_takes_over_when_quic_is_silent() {
    bounded(async {
        let (server, tcp, _) = dual_stack().await;
        // A UDP socket that reads nothing and answers nothing: a QUIC path that black-holes.
        let silent = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let black_hole = Multiaddr::from_quic_socket_addr(silent.local_addr().expect("addr"))
            .with_p2p(server.peer_id())
            .expect("p2p");
        let client = pheromone::Node::builder().build().await.expect("client");
        let conn = client
            .swarm()
            .connect_at(server.peer_id(), vec![tcp, black_hole])
            .await
            .expect("TCP connects after the attempt delay");
        assert_eq!(conn.transport(), Transport::Tcp);
        // QUIC was tried first: its Initial is waiting in the silent socket.
        let mut buf = [0u8; 2048];
        let (n, _) = silent
            .try_recv_from(&mut buf)
            .expect("a QUIC Initial arrived");
        assert!(
            n >= 1200,
            "a client Initial is padded to 1200 bytes, got {n}"
        );
        assert_eq!(buf[0] & 0xf0, 0xc0, "a long-header Initial packet");
        let reply = client
            .dispatch(server.peer_id(), ECHO, "over tcp")
            .await
            .expect("echo");
        assert_eq!(reply, "over tcp");
    })
    .await;
}

#[tokio::test]
async fn every_address_failing_is_one_error() {
    bounded(async {
        let peer = pheromone::Keypair::generate(&mut rand::rngs::OsRng).peer_id();
        // Closed ports: TCP is refused at once, QUIC gets ICMP or nothing.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr");
        let tcp = Multiaddr::from_socket_addr(closed);
        let client = pheromone::Node::builder().build().await.expect("client");
        let error = client
            .swarm()
            .connect_at(peer, vec![tcp])
            .await
            .expect_err("nothing listens");
        assert!(error.to_string().contains(&peer.to_string()), "{error}");
    })
    .await;
}
