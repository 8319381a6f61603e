//! A UDP flood at a node's QUIC port — random datagrams, Initials with valid headers and
//! garbage inside, and real handshakes that are abandoned after their first packet — while
//! a good peer connects and pings: the good peer is served, the half-open handshakes are
//! capped (past `retry_above_pending`, a new peer first proves its address with a stateless
//! Retry, which the abandoned ones never answer), and the node keeps serving afterwards.

// Real sockets: the flood is bounded by the real clock, and its rate is reported.
#![allow(clippy::disallowed_methods)]

mod node_util;

use node_util::{bounded, ECHO};
use pheromone::{EndpointConfig, Multiaddr, Transport};
use rand::{Rng, RngCore, SeedableRng};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The junk flooder stops by itself after this long at the latest.
const FLOOD_LIMIT: Duration = Duration::from_secs(30);
/// Datagrams per burst, and a burst every [`BURST_EVERY`]: about 50,000 datagrams (some
/// 40 MB) a second. Unthrottled, the flooder (in this process, on the same two cores)
/// would measure how much CPU it can take from the node rather than what junk costs it.
const BURST: u64 = 256;
const BURST_EVERY: Duration = Duration::from_millis(5);
/// Real handshakes started and abandoned.
const ABANDONED: usize = 64;
/// Pings the good peer makes during the flood.
const PINGS: usize = 10;

/// A QUIC v1 long-header Initial with random connection IDs and random (undecryptable)
/// protected payload, padded as a client's first packet is.
fn bogus_initial(rng: &mut impl RngCore) -> Vec<u8> {
    let mut p = vec![0xc0 | (rng.next_u32() as u8 & 0x0f)];
    p.extend_from_slice(&1u32.to_be_bytes());
    for _ in 0..2 {
        p.push(8);
        let mut cid = [0u8; 8];
        rng.fill_bytes(&mut cid);
        p.extend_from_slice(&cid);
    }
    p.push(0); // token length
    let body = 1200 - p.len() - 2;
    p.extend_from_slice(&(0x4000u16 | body as u16).to_be_bytes());
    let start = p.len();
    p.resize(start + body, 0);
    rng.fill_bytes(&mut p[start..]);
    p
}

/// Sends junk at `target` until `stop` (or [`FLOOD_LIMIT`]), counting into `sent`.
async fn flood(target: SocketAddr, stop: Arc<AtomicBool>, sent: Arc<AtomicU64>) {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let mut rng = rand::rngs::StdRng::from_entropy();
    // Made once and varied per send (a fresh destination connection ID in every Initial),
    // so that sending, not making junk, sets the pace.
    let mut pool: Vec<Vec<u8>> = (0..512)
        .map(|i| {
            if i % 2 == 0 {
                bogus_initial(&mut rng)
            } else {
                let mut junk = vec![0u8; rng.gen_range(1..1500)];
                rng.fill_bytes(&mut junk);
                junk
            }
        })
        .collect();
    let started = std::time::Instant::now();
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) && started.elapsed() < FLOOD_LIMIT {
        let datagram = &mut pool[n % 512];
        n += 1;
        if n % 2 == 1 {
            // The DCID of a bogus Initial: bytes 6..14.
            datagram[6..14].copy_from_slice(&(n as u64).to_be_bytes());
        }
        // A full socket buffer drops the datagram; the flood goes on.
        let _ = socket.send_to(datagram, target).await;
        if sent.fetch_add(1, Ordering::Relaxed) % BURST == BURST - 1 {
            tokio::time::sleep(BURST_EVERY).await;
        }
    }
}

/// Starts real QUIC handshakes at `target` and abandons each after its first flight: the
/// client endpoint is dropped, so the server's handshake waits for a peer that is gone.
async fn abandon_handshakes(target: SocketAddr) {
    let keypair = pheromone::Keypair::generate(&mut rand::rngs::OsRng);
    let tls = pheromone::transport::TlsIdentity::new(&keypair, &Default::default());
    for _ in 0..ABANDONED {
        let socket = pheromone::transport::bind_udp("127.0.0.1:0".parse().expect("addr"), 1 << 16)
            .expect("udp");
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            None,
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .expect("endpoint");
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls.client_config(None))
            .expect("quic crypto");
        let connecting = endpoint
            .connect_with(quinn::ClientConfig::new(Arc::new(crypto)), target, "l")
            .expect("connect");
        // Let the Initial leave, then vanish.
        let _ = tokio::time::timeout(Duration::from_millis(5), connecting).await;
        drop(endpoint);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_udp_flood_does_not_stop_a_good_peer() {
    bounded(async {
        let mut config = EndpointConfig::default();
        // A small threshold, so that the abandoned handshakes reach it.
        config.quic.retry_above_pending = 8;
        config.handshake_timeout = Duration::from_secs(3);
        let server = node_util::listening("target")
            .endpoint_config(config)
            .listen("/ip4/127.0.0.1/udp/0/quic-v1")
            .build()
            .await
            .expect("server");
        let quic = server
            .listen_addrs()
            .into_iter()
            .find(Multiaddr::is_quic)
            .expect("quic address");
        let target = quic.quic_socket_addr().expect("socket addr");

        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let flood_started = std::time::Instant::now();
        let flooder = tokio::spawn(flood(target, stop.clone(), sent.clone()));
        abandon_handshakes(target).await;

        // The good peer arrives in the middle of it and pings.
        let client = pheromone::Node::builder().build().await.expect("client");
        let conn = client
            .swarm()
            .connect_at(server.peer_id(), vec![quic.clone()])
            .await
            .expect("the good peer connects during the flood");
        assert_eq!(conn.transport(), Transport::Quic);
        for i in 0..PINGS {
            let rtt = client
                .endpoint()
                .ping(&conn)
                .await
                .unwrap_or_else(|e| panic!("ping {i} during the flood: {e}"));
            assert!(rtt < node_util::LIMIT);
        }
        let reply = client
            .dispatch(server.peer_id(), ECHO, "still here")
            .await
            .expect("echo during the flood");
        assert_eq!(reply, "still here");
        assert!(
            !flooder.is_finished(),
            "the flood lasted the whole exchange"
        );

        stop.store(true, Ordering::Relaxed);
        flooder.await.expect("flooder");
        let sent = sent.load(Ordering::Relaxed);
        assert!(sent > 1000, "the flood sent only {sent} datagrams");

        // Afterwards a fresh peer still gets in, and the server is whole.
        let late = pheromone::Node::builder().build().await.expect("late");
        let late_conn = late
            .swarm()
            .connect_at(server.peer_id(), vec![quic])
            .await
            .expect("a new peer connects after the flood");
        late.endpoint()
            .ping(&late_conn)
            .await
            .expect("ping after the flood");
        println!(
            "flood: {sent} junk datagrams in {:?}, {ABANDONED} abandoned handshakes",
            flood_started.elapsed()
        );
    })
    .await;
}
