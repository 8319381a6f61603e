//! Port forwarding through two real nodes on 127.0.0.1: a 10 MB HTTP-like download
//! byte-exact, 50 concurrent connections, half-close in both directions, resets passed
//! on, refusal of peers not on the allow-list (the target is never connected), listing
//! and removal.
//!
//! Every test runs over TCP and over QUIC (`name::tcp`, `name::quic`; `transports/mod.rs`).

#![allow(clippy::disallowed_methods)] // tests measure wall time

mod node_util;

use node_util::{addr, bounded, node, transports};
use pheromone::forward::{ForwardError, Forwards};
use pheromone::node::{Access, DispatchError, Node};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ANY: &str = "127.0.0.1:0";

fn any() -> SocketAddr {
    ANY.parse().expect("addr")
}

fn only(node: &Node) -> Access {
    Access::AllowList([node.peer_id()].into_iter().collect())
}

/// Payload bytes that are not all alike.
fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// A TCP server on loopback that runs `serve` for every connection and counts them.
async fn server<F, Fut>(serve: F) -> (SocketAddr, Arc<AtomicUsize>)
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind(ANY).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(tcp));
        }
    });
    (addr, accepted)
}

/// An HTTP/1.0-like server: reads the request head, answers `body` with its length, closes.
async fn http_server(body: Arc<Vec<u8>>) -> (SocketAddr, Arc<AtomicUsize>) {
    server(move |mut tcp| {
        let body = body.clone();
        async move {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match tcp.read(&mut byte).await {
                    Ok(1) => head.push(byte[0]),
                    _ => return,
                }
            }
            assert!(head.starts_with(b"GET /file HTTP/1.0\r\n"));
            let header = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
            tcp.write_all(header.as_bytes()).await.expect("header");
            tcp.write_all(&body).await.expect("body");
            tcp.shutdown().await.expect("shutdown");
        }
    })
    .await
}

/// Reads until EOF, waits a little, then answers with the reverse of what it read and a
/// large tail, then closes: only a client whose half-close was passed on gets an answer.
async fn half_close_server() -> (SocketAddr, Arc<AtomicUsize>) {
    server(|mut tcp| async move {
        let mut got = Vec::new();
        if tcp.read_to_end(&mut got).await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        got.reverse();
        let _ = tcp.write_all(&got).await;
        let _ = tcp.write_all(&payload(1 << 20, 7)).await;
        let _ = tcp.shutdown().await;
    })
    .await
}

/// Two nodes: `exposer` exposes `name` at `target` to `forwarder`, which forwards a local
/// port to it. Returns the nodes, the registries and the forward's listen address.
async fn pair(name: &str, target: SocketAddr) -> (Node, Node, Forwards, Forwards, SocketAddr) {
    let exposer = node("exposer").await;
    let forwarder = node("forwarder").await;
    forwarder
        .add_contact("exposer", addr(&exposer))
        .await
        .expect("route");
    let exposes = Forwards::new(&exposer);
    exposes
        .expose(name, target, only(&forwarder))
        .expect("expose");
    let forwards = Forwards::new(&forwarder);
    let info = forwards
        .forward(name, "exposer", any())
        .await
        .expect("forward");
    assert_ne!(info.listen.port(), 0, "the real port is reported");
    (exposer, forwarder, exposes, forwards, info.listen)
}

over_transports! {
    #[tokio::test]
    async fn a_10_mb_download_arrives_byte_exact() {
        bounded(async {
            let body = Arc::new(payload(10 * 1024 * 1024, 3));
            let (target, accepted) = http_server(body.clone()).await;
            let (exposer, forwarder, exposes, forwards, listen) = pair("web", target).await;

            let mut client = TcpStream::connect(listen).await.expect("connect");
            client
                .write_all(b"GET /file HTTP/1.0\r\nHost: web\r\n\r\n")
                .await
                .expect("request");
            let mut response = Vec::new();
            client.read_to_end(&mut response).await.expect("response");
            let split = response
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .expect("header end")
                + 4;
            let header = std::str::from_utf8(&response[..split]).expect("header text");
            assert!(header.contains(&format!("Content-Length: {}", body.len())));
            assert_eq!(response.len() - split, body.len());
            assert!(response[split..] == body[..], "body differs");
            assert_eq!(accepted.load(Ordering::SeqCst), 1);
            // The client's side stays open (half-open, as TCP allows) until it closes too.
            assert_eq!(forwards.snapshot().forwarded[0].stats.open, 1);
            drop(client);

            // Both sides counted the bytes, seen from the mesh.
            node_util::eventually(|| forwards.snapshot().forwarded[0].stats.open == 0).await;
            let f = forwards.snapshot().forwarded[0].stats;
            assert_eq!(f.total, 1);
            assert_eq!(f.bytes_in, response.len() as u64);
            assert_eq!(f.bytes_out, 33);
            node_util::eventually(|| exposes.snapshot().exposed[0].stats.open == 0).await;
            let e = exposes.snapshot().exposed[0].stats;
            assert_eq!((e.bytes_in, e.bytes_out), (33, response.len() as u64));
            assert_eq!(e.failed, 0);

            forwards.close().await;
            exposes.close().await;
            forwarder.close().await;
            exposer.close().await;
        })
        .await;
    }
}

over_transports! {
    #[tokio::test]
    async fn fifty_concurrent_connections() {
        bounded(async {
            let (target, accepted) = half_close_server().await;
            let (exposer, forwarder, exposes, forwards, listen) = pair("echo", target).await;
            let clients = (0..50u8).map(|i| async move {
                let mut tcp = TcpStream::connect(listen).await.expect("connect");
                let sent = payload(32 * 1024 + usize::from(i), i);
                tcp.write_all(&sent).await.expect("write");
                tcp.shutdown().await.expect("half-close");
                let mut got = Vec::new();
                tcp.read_to_end(&mut got).await.expect("read");
                let mut expected = sent;
                expected.reverse();
                expected.extend_from_slice(&payload(1 << 20, 7));
                assert!(got == expected, "connection {i} got the wrong bytes");
            });
            futures::future::join_all(clients).await;
            assert_eq!(accepted.load(Ordering::SeqCst), 50);
            node_util::eventually(|| forwards.snapshot().forwarded[0].stats.open == 0).await;
            let stats = forwards.snapshot().forwarded[0].stats;
            assert_eq!((stats.total, stats.failed), (50, 0));
            node_util::eventually(|| exposes.snapshot().exposed[0].stats.open == 0).await;
            assert_eq!(exposes.snapshot().exposed[0].stats.total, 50);
            forwards.close().await;
            exposes.close().await;
            forwarder.close().await;
            exposer.close().await;
        })
        .await;
    }
}

over_transports! {
    #[tokio::test]
    async fn half_close_passes_both_ways() {
        bounded(async {
            let (target, _) = half_close_server().await;
            let (exposer, forwarder, exposes, forwards, listen) = pair("halfclose", target).await;
            let mut tcp = TcpStream::connect(listen).await.expect("connect");
            tcp.write_all(b"hello, half-close").await.expect("write");
            // Our FIN must reach the target (it answers only after EOF), and its reply must
            // still reach us after we stopped writing.
            tcp.shutdown().await.expect("shutdown");
            let mut got = Vec::new();
            tcp.read_to_end(&mut got).await.expect("read");
            assert_eq!(&got[..17], b"esolc-flah ,olleh");
            assert!(got[17..] == payload(1 << 20, 7)[..]);
            forwards.close().await;
            exposes.close().await;
            forwarder.close().await;
            exposer.close().await;
        })
        .await;
    }
}

over_transports! {
    #[tokio::test]
    async fn a_reset_target_resets_the_client() {
        bounded(async {
            let (target, _) = server(|tcp| async move {
                // Abort: zero linger makes the close an RST.
                let sock = socket2::SockRef::from(&tcp);
                sock.set_linger(Some(Duration::ZERO)).expect("linger");
                drop(tcp);
            })
            .await;
            let (exposer, forwarder, exposes, forwards, listen) = pair("resets", target).await;
            let mut tcp = TcpStream::connect(listen).await.expect("connect");
            let _ = tcp.write_all(b"anyone there?").await;
            let mut buf = [0u8; 16];
            let read = tcp.read(&mut buf).await;
            assert!(
                read.is_err(),
                "the client sees a reset, not an orderly end: {read:?}"
            );
            node_util::eventually(|| exposes.snapshot().exposed[0].stats.failed == 1).await;
            node_util::eventually(|| forwards.snapshot().forwarded[0].stats.failed == 1).await;
            forwards.close().await;
            exposes.close().await;
            forwarder.close().await;
            exposer.close().await;
        })
        .await;
    }
}

over_transports! {
    #[tokio::test]
    async fn peers_not_allowed_are_refused_and_the_target_never_connected() {
        bounded(async {
            let (target, accepted) = http_server(Arc::new(b"secret".to_vec())).await;
            let exposer = node("exposer").await;
            let friend = node("friend").await;
            let stranger = node("stranger").await;
            let exposed = exposer
                .expose("web", target, only(&friend))
                .expect("expose");
            stranger
                .add_contact("exposer", addr(&exposer))
                .await
                .expect("route");

            // Refused in negotiation.
            match stranger.open_stream("exposer", "/x/web").await {
                Err(DispatchError::Refused { .. }) => {}
                other => panic!("expected a refusal, got {other:?}"),
            }
            // Through a forward: the local connection is reset, and nothing reached the target.
            let forwarded = stranger
                .forward("web", "exposer", any())
                .await
                .expect("forward");
            let mut tcp = TcpStream::connect(forwarded.local_addr())
                .await
                .expect("connect");
            let _ = tcp.write_all(b"GET /file HTTP/1.0\r\n\r\n").await;
            let mut got = Vec::new();
            let read = tcp.read_to_end(&mut got).await;
            assert!(got.is_empty(), "no bytes from the target: {read:?}");
            node_util::eventually(|| forwarded.info().stats.failed == 1).await;
            assert_eq!(
                accepted.load(Ordering::SeqCst),
                0,
                "the target was never connected"
            );
            assert_eq!(exposed.info().stats.total, 0);

            // Allowing the stranger lets it in.
            exposed.set_allow(Access::AllowList(
                [friend.peer_id(), stranger.peer_id()].into_iter().collect(),
            ));
            let mut tcp = TcpStream::connect(forwarded.local_addr())
                .await
                .expect("connect");
            tcp.write_all(b"GET /file HTTP/1.0\r\n\r\n")
                .await
                .expect("write");
            let mut got = Vec::new();
            tcp.read_to_end(&mut got).await.expect("read");
            assert!(got.ends_with(b"\r\n\r\nsecret"));
            assert_eq!(accepted.load(Ordering::SeqCst), 1);

            forwarded.close().await;
            exposed.close().await;
            stranger.close().await;
            friend.close().await;
            exposer.close().await;
        })
        .await;
    }
}

over_transports! {
    #[tokio::test]
    async fn listing_and_removal() {
        bounded(async {
            let (target, _) = half_close_server().await;
            let (exposer, forwarder, exposes, forwards, listen) = pair("svc", target).await;

            let snap = exposes.snapshot();
            assert_eq!(snap.exposed.len(), 1);
            assert!(snap.forwarded.is_empty());
            let e = &snap.exposed[0];
            assert_eq!((e.name.as_str(), e.protocol.as_str()), ("svc", "/x/svc"));
            assert_eq!(e.target, target);
            assert_eq!(e.allow, Some(vec![forwarder.peer_id()]));
            let f = &forwards.snapshot().forwarded[0];
            assert_eq!((f.peer, f.listen), (exposer.peer_id(), listen));

            // Duplicates and bad names are refused.
            assert!(matches!(
                exposes.expose("svc", target, Access::Open),
                Err(ForwardError::AlreadyExposed { .. })
            ));
            assert!(matches!(
                exposes.expose("a/b", target, Access::Open),
                Err(ForwardError::InvalidName { .. })
            ));
            assert!(matches!(
                forwards.forward("svc", "exposer", listen).await,
                Err(ForwardError::AlreadyForwarded { .. })
            ));

            // An open connection is aborted by unforward, and the port is free afterwards.
            let mut open = TcpStream::connect(listen).await.expect("connect");
            open.write_all(b"x").await.expect("write");
            node_util::eventually(|| forwards.snapshot().forwarded[0].stats.open == 1).await;
            let removed = forwards.unforward(listen).await.expect("unforward");
            assert_eq!(removed.stats.total, 1);
            let mut buf = Vec::new();
            let read = open.read_to_end(&mut buf).await;
            assert!(read.is_err() || buf.is_empty(), "aborted: {read:?}");
            assert!(TcpStream::connect(listen).await.is_err(), "listener closed");
            assert!(matches!(
                forwards.unforward(listen).await,
                Err(ForwardError::NotForwarded { .. })
            ));

            // After unexpose the protocol is gone.
            exposes.unexpose("svc").await.expect("unexpose");
            assert!(exposes.snapshot().exposed.is_empty());
            assert!(!exposer.protocols().contains(&"/x/svc".to_string()));
            match forwarder.open_stream("exposer", "/x/svc").await {
                Err(DispatchError::Refused { .. }) => {}
                other => panic!("expected a refusal, got {other:?}"),
            }
            // And the name can be exposed again.
            exposes
                .expose("svc", target, Access::Open)
                .expect("expose again");
            exposes.close().await;
            forwarder.close().await;
            exposer.close().await;
        })
        .await;
    }
}
