//! Purpose-built malicious clients against a real listener, one attack per test: idle
//! sockets, handshakes with fresh identities, streams, relayed circuits, and a peer that
//! withholds window while it sends frames just large enough to be kept as slices. Each
//! asserts that what the victim holds stays within its resource limits and that a good
//! peer still connects and pings; the good peer's connect time is printed as a figure,
//! not asserted.
//!
//! Loopback is exempt from the per-IP limits by default; the tests that exercise those
//! turn the exemption off and play the attacker from 127.0.0.2 (loopback is all of
//! 127.0.0.0/8), the good peer from 127.0.0.1.

#![allow(clippy::disallowed_methods)] // the good peer's connect time is measured as a figure

mod common;

use bytes::BytesMut;
use common::raw::{body, connect_from, ms_proposal, RawConn};
use common::{hostile_config, listener_with, patient_config};
use futures::FutureExt;
use pheromone::relay::{Relay, RelayConfig};
use pheromone::{Access, Endpoint, EndpointConfig, Keypair, Multiaddr};
use pheromone_core::relay::wire::{Connect, RelayMessage, Status};
use pheromone_core::yamux::frame::{Flags, Header};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A bound on each test, not the expected time (each takes about a second or two).
const LIMIT: Duration = Duration::from_secs(60);
const WAIT: Duration = Duration::from_secs(5);
const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

fn identity() -> Keypair {
    Keypair::generate(&mut rand::rngs::OsRng)
}

/// A good peer dials `addr` and pings; how long the connect took.
async fn good_peer_connects(addr: &Multiaddr) -> Duration {
    let good = Endpoint::new(identity(), EndpointConfig::default());
    let started = Instant::now();
    let conn = good.dial(addr).await.expect("the good peer connects");
    let took = started.elapsed();
    good.ping(&conn).await.expect("the good peer pings");
    good.close().await;
    took
}

/// Opens `n` TCP sockets to `sock` from `from` that never send a byte.
async fn idle_sockets(from: IpAddr, sock: std::net::SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut sockets = Vec::with_capacity(n);
    for _ in 0..n {
        // A refused one is closed by the listener after accept; connect still succeeds.
        sockets.push(connect_from(from, sock).await.expect("connect"));
    }
    sockets
}

/// Waits (bounded) until `done` holds, polling.
async fn eventually(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn idle_socket_flood_does_not_keep_a_good_peer_out() {
    tokio::time::timeout(LIMIT, async {
        const SLOTS: usize = 32;
        // Handshakes never time out within the test: only eviction frees a slot.
        let mut config = patient_config();
        config.resources.max_pending_handshakes = SLOTS;
        let (listener, addr, sock) = listener_with(config).await;
        let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let _flood = idle_sockets(local, sock, 10 * SLOTS).await;
        eventually(|| listener.resources().usage().pending_handshakes >= SLOTS).await;

        let took = good_peer_connects(&addr).await;
        eprintln!(
            "figure: good peer connect with {} idle sockets: {took:?}",
            10 * SLOTS
        );
        assert!(listener.resources().usage().pending_handshakes <= SLOTS);
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn one_address_gets_only_its_share_of_handshake_slots() {
    tokio::time::timeout(LIMIT, async {
        let mut config = patient_config();
        config.resources.exempt_loopback = false;
        config.resources.max_pending_handshakes = 64;
        config.resources.max_pending_handshakes_per_ip = 8;
        let (listener, addr, sock) = listener_with(config).await;
        let _flood = idle_sockets(ATTACKER, sock, 200).await;
        eventually(|| listener.resources().usage().pending_handshakes >= 8).await;
        // Give the accept loop time to see (and refuse) all of them.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(listener.resources().usage().pending_handshakes, 8);
        let refused: u64 = listener
            .resources()
            .refusals()
            .iter()
            .filter(|(scope, what, _)| *scope == "ip" && *what == "pending_handshakes")
            .map(|(_, _, n)| n)
            .sum();
        assert!(refused >= 150, "refusals counted: {refused}");

        let took = good_peer_connects(&addr).await;
        eprintln!("figure: good peer connect with 200 idle sockets from one address: {took:?}");
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn handshake_flood_with_fresh_identities_is_held_to_the_per_ip_limit() {
    tokio::time::timeout(LIMIT, async {
        let mut config = hostile_config();
        config.resources.exempt_loopback = false;
        config.resources.max_connections_per_ip = 4;
        config.resources.max_inbound_connections = 12;
        let (listener, addr, sock) = listener_with(config).await;
        let mut flood = Vec::new();
        for _ in 0..24 {
            flood.push(RawConn::connect_from(ATTACKER, sock, &identity()).await);
        }
        let from_attacker = || {
            listener
                .connections()
                .iter()
                .filter(|c| c.info().remote_addr.ip() == ATTACKER)
                .count()
        };
        eventually(|| from_attacker() >= 4).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(from_attacker(), 4);
        assert_eq!(listener.resources().usage().inbound_connections, 4);

        let took = good_peer_connects(&addr).await;
        eprintln!("figure: good peer connect after 24 fresh identities from one address: {took:?}");
    })
    .await
    .expect("test timed out");
}

/// A protocol whose handler holds the stream, unread, until the connection closes.
const PARK: &str = "/test/park/1.0.0";
/// A protocol whose handler reads and discards everything.
const DISCARD: &str = "/test/discard/1.0.0";

fn park_and_discard(listener: &Endpoint, parked: Arc<AtomicUsize>) {
    listener.set_handler(
        PARK,
        Arc::new(move |conn, stream| {
            let parked = parked.clone();
            async move {
                parked.fetch_add(1, Ordering::SeqCst);
                conn.closed().await;
                drop(stream);
            }
            .boxed()
        }),
        Access::Open,
    );
    listener.set_handler(
        DISCARD,
        Arc::new(|_conn, mut stream| {
            async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            }
            .boxed()
        }),
        Access::Open,
    );
}

#[tokio::test]
async fn stream_flood_is_held_to_the_per_peer_stream_limit() {
    tokio::time::timeout(LIMIT, async {
        let mut config = hostile_config();
        config.resources.max_streams_per_peer = 16;
        let (listener, addr, _) = listener_with(config).await;
        let parked = Arc::new(AtomicUsize::new(0));
        park_and_discard(&listener, parked.clone());

        let attacker = Endpoint::new(identity(), EndpointConfig::default());
        let conn = attacker.dial(&addr).await.expect("dial");
        let mut streams = Vec::new();
        for _ in 0..64 {
            if let Ok(mut s) = attacker.open_stream(&conn, PARK).await {
                let _ = s.write_all(b"x").await;
                streams.push(s);
            }
        }
        eventually(|| parked.load(Ordering::SeqCst) >= 16).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(parked.load(Ordering::SeqCst), 16);
        assert_eq!(listener.resources().usage().streams, 16);

        let took = good_peer_connects(&addr).await;
        eprintln!("figure: good peer connect during a 64-stream flood: {took:?}");
        drop(streams);
        attacker.close().await;
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn window_withholding_peer_with_8_kib_frames_pins_no_more_than_the_limit() {
    tokio::time::timeout(LIMIT, async {
        const MAX_HELD: u64 = 4 << 20;
        const PARKED: u32 = 24;
        let mut config = hostile_config();
        config.resources.max_memory_per_connection = MAX_HELD;
        let (listener, _addr, sock) = listener_with(config).await;
        park_and_discard(&listener, Arc::new(AtomicUsize::new(0)));
        let mut raw = RawConn::connect(sock, &identity()).await;
        raw.wait_confirmed(WAIT).await;

        let mut next_id = 1u32;
        let mut open = |protocol: &str, first: &[u8]| {
            let id = next_id;
            next_id += 2;
            let mut data = ms_proposal(protocol);
            data.extend_from_slice(first);
            (id, data)
        };
        let mut peak = 0u64;
        for _ in 0..PARKED {
            // About 1 MiB through streams that are read, so that the listener's receive
            // buffer moves on...
            for _ in 0..4 {
                let (id, data) = open(DISCARD, &[]);
                let filler = body(240 * 1024);
                raw.send_frames(&[
                    (Header::window_update(id, Flags::SYN, 0), &[]),
                    (Header::data(id, Flags::NONE, data.len() as u32), &data),
                    (Header::data(id, Flags::FIN, filler.len() as u32), &filler),
                ])
                .await
                .expect("send filler");
            }
            // ...and one 8 KiB frame (zero-copy size) on a stream nobody reads, sent once
            // the listener has negotiated it (so it stays in the stream's receive buffer).
            let (id, data) = open(PARK, &[]);
            raw.send_frames(&[
                (Header::window_update(id, Flags::SYN, 0), &[]),
                (Header::data(id, Flags::NONE, data.len() as u32), &data),
            ])
            .await
            .expect("send proposal");
            let mut echoed = 0;
            let mut others = Vec::new();
            raw.frames_for(id, WAIT, &mut others, |f| {
                echoed += f.body.len();
                echoed >= data.len()
            })
            .await;
            let pin = body(8 * 1024);
            raw.send_frames(&[(Header::data(id, Flags::NONE, pin.len() as u32), &pin)])
                .await
                .expect("send pin");
            raw.yamux_ping(id, WAIT).await;
            let held: u64 = listener.connections().iter().map(|c| c.held_memory()).sum();
            peak = peak.max(held);
        }
        eprintln!(
            "figure: receive buffers held with {PARKED} parked 8 KiB frames: peak {peak} B (limit {MAX_HELD} B)"
        );
        // The limit, plus the one buffer being filled.
        assert!(peak <= MAX_HELD + (2 << 20), "held {peak} B");
        assert!(listener.resources().memory() <= MAX_HELD + (2 << 20));
        assert_eq!(listener.connections().len(), 1, "the connection lives on");
    })
    .await
    .expect("test timed out");
}

/// A relay R between an attacker A, a good peer G and a destination B: A floods R with
/// CONNECTs to B and holds them; R relays only its per-peer share for A, and G still gets
/// a circuit to B.
#[tokio::test]
async fn circuit_flood_is_held_to_the_per_peer_circuit_limit() {
    tokio::time::timeout(LIMIT, async {
        let mut relay_config = hostile_config();
        relay_config.resources.max_relayed_circuits_per_peer = 4;
        let (r, r_addr, _) = listener_with(relay_config).await;
        let (b, b_addr) = common::endpoint_with(hostile_config()).await;
        let direct = |ep: &Endpoint| {
            let ep = ep.clone();
            Arc::new(move |dest: &pheromone::PeerId| ep.direct_connection(dest).map(|_| *dest))
                as pheromone::relay::NextHopFn
        };
        let relay = Relay::install(&r, RelayConfig::default(), direct(&r));
        let _b_relay = Relay::install(&b, RelayConfig::default(), direct(&b));
        r.dial(&b_addr).await.expect("relay dials the destination");

        let a = Endpoint::new(identity(), EndpointConfig::default());
        let to_r = a.dial(&r_addr).await.expect("attacker dials the relay");
        let mut held = Vec::new();
        let mut refused = 0;
        for _ in 0..16 {
            let mut s = a
                .open_stream(&to_r, pheromone::relay::PROTOCOL)
                .await
                .expect("relay stream");
            let connect = Connect::new(rand::random(), a.peer_id(), b.peer_id(), 4);
            s.write_all(&RelayMessage::Connect(connect).to_vec())
                .await
                .expect("send CONNECT");
            let mut buf = BytesMut::new();
            let answer = loop {
                if let Some(m) = pheromone_core::relay::wire::decode(&mut buf).expect("decode") {
                    break m;
                }
                let n = tokio::time::timeout(WAIT, s.read_buf(&mut buf))
                    .await
                    .expect("relay answers")
                    .expect("read");
                assert!(n > 0, "relay closed without an answer");
            };
            match answer {
                RelayMessage::Response(r) if r.status == Status::Ok => held.push(s),
                RelayMessage::Response(r) if r.status == Status::ResourceLimit => refused += 1,
                other => panic!("unexpected answer {other:?}"),
            }
        }
        assert_eq!(held.len(), 4, "circuits relayed for the attacker");
        assert_eq!(refused, 12);
        assert_eq!(relay.stats().active_circuits, 4);
        assert_eq!(r.resources().usage().relayed_circuits, 4);

        // A good peer still gets a circuit through R to B, and pings over it.
        let g = Endpoint::new(identity(), EndpointConfig::default());
        g.dial(&r_addr).await.expect("good peer dials the relay");
        let r_id = r.peer_id();
        let via_r: pheromone::relay::NextHopFn = Arc::new(move |_| Some(r_id));
        let g_relay = Relay::install(&g, RelayConfig::default(), via_r);
        let started = Instant::now();
        let circuit = g_relay.connect(b.peer_id()).await.expect("good circuit");
        eprintln!(
            "figure: good circuit during a flood: {:?}",
            started.elapsed()
        );
        g.ping(&circuit).await.expect("ping over the circuit");
        drop(held);
        for ep in [&g, &a, &r, &b] {
            ep.close().await;
        }
    })
    .await
    .expect("test timed out");
}

/// A relayed connection that ends here is an inbound connection: at the inbound limit, a
/// circuit to this node is refused before its handshake (before, circuits bypassed it).
#[tokio::test]
async fn circuits_ending_here_count_as_inbound_connections() {
    tokio::time::timeout(LIMIT, async {
        let (r, r_addr, _) = listener_with(hostile_config()).await;
        let mut b_config = hostile_config();
        b_config.resources.max_inbound_connections = 1;
        let (b, b_addr) = common::endpoint_with(b_config).await;
        let direct = |ep: &Endpoint| {
            let ep = ep.clone();
            Arc::new(move |dest: &pheromone::PeerId| ep.direct_connection(dest).map(|_| *dest))
                as pheromone::relay::NextHopFn
        };
        let _r_relay = Relay::install(&r, RelayConfig::default(), direct(&r));
        let _b_relay = Relay::install(&b, RelayConfig::default(), direct(&b));
        // R's link to B is B's one inbound connection.
        r.dial(&b_addr).await.expect("relay dials the destination");

        let g = Endpoint::new(identity(), EndpointConfig::default());
        g.dial(&r_addr).await.expect("dial the relay");
        let r_id = r.peer_id();
        let via_r: pheromone::relay::NextHopFn = Arc::new(move |_| Some(r_id));
        let g_relay = Relay::install(&g, RelayConfig::default(), via_r);
        match g_relay.connect(b.peer_id()).await {
            Err(pheromone::relay::RelayError::Refused { status, reason, .. }) => {
                assert_eq!(status, Status::ResourceLimit, "{reason}");
                assert!(reason.contains("inbound_connections"), "{reason}");
            }
            Ok(_) => panic!("a circuit passed the inbound connection limit"),
            Err(e) => panic!("unexpected failure: {e}"),
        }
        assert_eq!(b.resources().usage().inbound_connections, 1);
        assert_eq!(b.resources().usage().circuits_ending_here, 0);
        for ep in [&g, &r, &b] {
            ep.close().await;
        }
    })
    .await
    .expect("test timed out");
}
