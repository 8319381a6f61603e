//! Two endpoints on 127.0.0.1: upgrade, streams, ping, identify, close — each test over TCP
//! and over QUIC (`name::tcp`, `name::quic`; see `transports/mod.rs`).

mod common;

use common::{endpoint, pattern, transports, ECHO};
use pheromone::{DialError, Keypair};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(30);

/// Writes `data` to an echo stream in writes of `sizes` (which add up to its length), then
/// half-closes, while reading everything that comes back.
async fn echo_in_pieces(
    mut stream: pheromone::Stream,
    data: &[u8],
    sizes: impl IntoIterator<Item = usize>,
) -> Vec<u8> {
    let (mut r, mut w) = tokio::io::split(&mut stream);
    let writer = async {
        let mut at = 0;
        for n in sizes {
            w.write_all(&data[at..at + n]).await.expect("write");
            at += n;
        }
        w.shutdown().await.expect("shutdown");
    };
    let reader = async {
        let mut back = Vec::new();
        r.read_to_end(&mut back).await.expect("read");
        back
    };
    let ((), back) = tokio::join!(writer, reader);
    back
}

over_transports! {
    #[tokio::test]
    async fn dial_authenticates_both_sides_and_pings() {
        tokio::time::timeout(LIMIT, async {
            let (a, _) = endpoint().await;
            let (b, b_addr) = endpoint().await;
            let conn = a.dial(&b_addr).await.expect("dial");
            assert_eq!(conn.remote_peer(), b.peer_id());
            assert_eq!(conn.transport(), transports::expected());
            assert_eq!(conn.info().security, transports::expected_security());
            let rtt = a.ping(&conn).await.expect("ping");
            assert!(rtt < LIMIT);
            // The listener sees the dialer's authenticated identity.
            let inbound = loop {
                if let Some(c) = b.connections().into_iter().next() {
                    break c;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            };
            assert_eq!(inbound.remote_peer(), a.peer_id());
            assert_eq!(inbound.info().security, transports::expected_security());
            b.ping(&inbound)
                .await
                .expect("ping back over the same connection");
        })
        .await
        .expect("test timed out");
    }

    #[tokio::test]
    async fn identify_reports_every_field() {
        tokio::time::timeout(LIMIT, async {
            let (a, _) = endpoint().await;
            let (b, b_addr) = endpoint().await;
            let conn = a.dial(&b_addr).await.expect("dial");
            let info = a.identify(&conn).await.expect("identify");
            assert_eq!(info.public_key, b.keypair().public());
            assert_eq!(info.listen_addrs, vec![b_addr.without_p2p()]);
            assert!(info.protocols.iter().any(|p| p == ECHO));
            assert!(info.protocols.iter().any(|p| p == "/ipfs/ping/1.0.0"));
            assert_eq!(
                info.observed_addr,
                Some(transports::multiaddr(conn.info().local_addr))
            );
            assert!(info.agent_version.starts_with("pheromone/"));
            assert_eq!(info.protocol_version, "/pheromone/1.0.0");
        })
        .await
        .expect("test timed out");
    }

    #[tokio::test]
    async fn wrong_expected_peer_fails_clearly() {
        tokio::time::timeout(LIMIT, async {
            let (a, _) = endpoint().await;
            let (_b, b_addr) = endpoint().await;
            let someone_else = Keypair::generate(&mut rand::rngs::OsRng).peer_id();
            let wrong = b_addr.without_p2p().with_p2p(someone_else).expect("addr");
            let err = a.dial(&wrong).await.expect_err("must fail");
            assert!(matches!(err, DialError::Upgrade(_)), "{err}");
            let text = err.to_string();
            assert!(text.contains(&someone_else.to_string()), "{text}");
        })
        .await
        .expect("test timed out");
    }

    #[tokio::test]
    async fn hundred_concurrent_streams_both_directions() {
        tokio::time::timeout(LIMIT, async {
            let (a, _) = endpoint().await;
            let (b, b_addr) = endpoint().await;
            let conn = a.dial(&b_addr).await.expect("dial");
            let inbound = loop {
                if let Some(c) = b.connections().into_iter().next() {
                    break c;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            };
            let mut tasks = Vec::new();
            for (side, ep, c) in [
                (0u8, a.clone(), conn.clone()),
                (1u8, b.clone(), inbound.clone()),
            ] {
                for i in 0..100u8 {
                    let ep = ep.clone();
                    let c = c.clone();
                    tasks.push(tokio::spawn(async move {
                        let data = pattern(10_000 + i as usize * 1000, i ^ side);
                        let s = ep.open_stream(&c, ECHO).await.expect("open");
                        let back = echo_in_pieces(s, &data, [data.len()]).await;
                        assert!(
                            back == data,
                            "stream {i} side {side}: got {} bytes, sent {}",
                            back.len(),
                            data.len()
                        );
                    }));
                }
            }
            for t in tasks {
                t.await.expect("stream task");
            }
        })
        .await
        .expect("test timed out");
    }

    #[tokio::test]
    async fn refused_protocol_is_reported_on_read() {
        tokio::time::timeout(LIMIT, async {
            let (a, _) = endpoint().await;
            let (_b, b_addr) = endpoint().await;
            let conn = a.dial(&b_addr).await.expect("dial");
            let err = a
                .open_stream_confirmed(&conn, "/not/there/1.0.0")
                .await
                .expect_err("refused");
            assert!(err.to_string().contains("/not/there/1.0.0"), "{err}");
            let mut lazy = a
                .open_stream(&conn, "/not/there/1.0.0")
                .await
                .expect("lazy open");
            let mut buf = [0u8; 1];
            let err = lazy.read(&mut buf).await.expect_err("refusal on read");
            assert_eq!(err.kind(), std::io::ErrorKind::Unsupported);
            // The connection survives the refusal.
            a.ping(&conn).await.expect("ping after refusal");
        })
        .await
        .expect("test timed out");
    }

    #[tokio::test]
    async fn close_is_graceful_and_seen_by_both_sides() {
        tokio::time::timeout(LIMIT, async {
            let (a, _) = endpoint().await;
            let (b, b_addr) = endpoint().await;
            let mut events = b.events();
            let conn = a.dial(&b_addr).await.expect("dial");
            a.ping(&conn).await.expect("ping");
            conn.close().await;
            assert!(conn.is_closed());
            loop {
                match events.recv().await.expect("event") {
                    pheromone::EndpointEvent::ConnectionClosed { info, .. } => {
                        assert_eq!(info.remote_peer, a.peer_id());
                        break;
                    }
                    _ => continue,
                }
            }
            assert!(a.open_stream(&conn, ECHO).await.is_err());
            a.close().await;
            b.close().await;
        })
        .await
        .expect("test timed out");
    }

    #[tokio::test]
    async fn perf_runs_when_enabled_and_is_refused_otherwise() {
        tokio::time::timeout(LIMIT, async {
            let config = pheromone::EndpointConfig {
                perf: Some(pheromone::Access::Open),
                ..Default::default()
            };
            let (a, _) = endpoint().await;
            let (_b, b_addr) = common::endpoint_with(config).await;
            let conn = a.dial(&b_addr).await.expect("dial");
            let stream = a
                .open_stream_confirmed(&conn, pheromone::protocols::perf::PROTOCOL)
                .await
                .expect("perf open");
            let report = pheromone::protocols::perf::run_client(stream, 3 << 20, 5 << 20)
                .await
                .expect("perf");
            assert_eq!((report.uploaded, report.downloaded), (3 << 20, 5 << 20));

            // Off by default, as the perf spec asks.
            let (_c, c_addr) = endpoint().await;
            let conn = a.dial(&c_addr).await.expect("dial");
            assert!(a
                .open_stream_confirmed(&conn, pheromone::protocols::perf::PROTOCOL)
                .await
                .is_err());
        })
        .await
        .expect("test timed out");
    }

    #[tokio::test]
    async fn listens_on_several_addresses() {
        tokio::time::timeout(LIMIT, async {
            let (a, first) = endpoint().await;
            let second = a
                .listen(&transports::listen_multiaddr())
                .expect("listen");
            assert_ne!(first, second);
            assert_eq!(a.listen_addrs(), vec![first.clone(), second.clone()]);
            let (b, _) = endpoint().await;
            for addr in [first, second] {
                let conn = b.dial(&addr).await.expect("dial");
                assert_eq!(conn.remote_peer(), a.peer_id());
            }
            // `host:port` works too (it means TCP).
            if transports::current() == transports::Kind::Tcp {
                let plain = pheromone::parse_dial_address(
                    &transports::socket_addr(&a.listen_addrs()[0]).to_string(),
                )
                .expect("parse");
                b.dial(&plain).await.expect("dial host:port");
            }
        })
        .await
        .expect("test timed out");
    }

    /// Writes below and above the size sealed straight from the caller's buffer, on several
    /// streams at once, with both ciphers: every stream's bytes come back whole and in order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn small_and_large_writes_interleave_intact_on_concurrent_streams() {
        tokio::time::timeout(LIMIT, async {
            for aes_gcm in [true, false] {
                let mut config = pheromone::EndpointConfig::default();
                config.connection.aes_gcm = aes_gcm;
                config.quic.tls.prefer_aes_gcm = aes_gcm;
                let (a, _) = common::endpoint_with(config.clone()).await;
                let (_b, b_addr) = common::endpoint_with(config).await;
                let conn = a.dial(&b_addr).await.expect("dial");
                let mut tasks = Vec::new();
                for i in 0..8u8 {
                    let (a, conn) = (a.clone(), conn.clone());
                    tasks.push(tokio::spawn(async move {
                        // 1 B to 300 KiB, alternating small and large, ~2 MiB in all.
                        let sizes = (0..24).map(|k| {
                            if k % 2 == 0 {
                                1 + k * 37
                            } else {
                                16_384 + k * 12_000
                            }
                        });
                        let data = pattern(sizes.clone().sum(), i);
                        let s = a.open_stream(&conn, ECHO).await.expect("open");
                        let back = echo_in_pieces(s, &data, sizes).await;
                        assert!(
                            back == data,
                            "stream {i}, aes {aes_gcm}: {} bytes back of {}",
                            back.len(),
                            data.len()
                        );
                    }));
                }
                for t in tasks {
                    t.await.expect("stream task");
                }
            }
        })
        .await
        .expect("test timed out");
    }

    /// Both ends keep at most 32 KiB of ciphertext queued, and the reader stalls every 2 MiB:
    /// writers behind the full sockets (the client's and the echo handler's) wait and are
    /// woken again each time, and every byte comes back in order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writers_behind_a_full_socket_wait_and_resume() {
        tokio::time::timeout(LIMIT, async {
            let mut config = pheromone::EndpointConfig::default();
            config.connection.send_buffer_high_water = 32 * 1024;
            let (a, _) = common::endpoint_with(config.clone()).await;
            let (_b, b_addr) = common::endpoint_with(config).await;
            let conn = a.dial(&b_addr).await.expect("dial");
            let data = pattern(16 << 20, 9);
            let mut s = a.open_stream(&conn, ECHO).await.expect("open");
            let (mut r, mut w) = tokio::io::split(&mut s);
            let writer = async {
                for piece in data.chunks(200 * 1024) {
                    w.write_all(piece).await.expect("write");
                }
                w.shutdown().await.expect("shutdown");
            };
            let reader = async {
                let mut back = Vec::with_capacity(data.len());
                let mut buf = vec![0u8; 64 * 1024];
                let mut next_stall = 2 << 20;
                loop {
                    let n = r.read(&mut buf).await.expect("read");
                    if n == 0 {
                        break back;
                    }
                    back.extend_from_slice(&buf[..n]);
                    if back.len() >= next_stall {
                        next_stall += 2 << 20;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            };
            let ((), back) = tokio::join!(writer, reader);
            assert_eq!(back.len(), data.len());
            assert!(back == data, "the echo differs from what was sent");
        })
        .await
        .expect("test timed out");
    }
}
