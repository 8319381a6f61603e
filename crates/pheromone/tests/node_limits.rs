//! Access per protocol (allow-lists checked during negotiation, changed at run time),
//! limits that fail clearly instead of hanging, and no leak after many requests.
//!
//! Every test runs over TCP and over QUIC (`name::tcp`, `name::quic`; `transports/mod.rs`).

#![allow(clippy::disallowed_methods)] // tests measure wall time

mod node_util;

use bytes::Bytes;
use node_util::{addr, bounded, eventually, listening, node, transports, ECHO};
use pheromone::node::{
    Access, ConnectionMode, DispatchError, DispatchOptions, Limits, NodeError, Peer,
};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const PRIVATE: &str = "/test/private/1.0.0";
const SLOW: &str = "/test/slow/1.0.0";
const HOLD: &str = "/test/hold/1.0.0";

async fn slow(_p: Peer, r: Bytes) -> pheromone::node::HandlerResult {
    tokio::time::sleep(Duration::from_millis(400)).await;
    Ok(Some(r))
}

over_transports! {
    #[tokio::test]
    async fn allow_lists_refuse_in_negotiation_and_change_at_run_time() {
        bounded(async {
            let calls = Arc::new(AtomicUsize::new(0));
            let friend = node("friend").await;
            let stranger = node("stranger").await;
            let counted = calls.clone();
            let server = listening("server")
                .handle_requests_with(
                    PRIVATE,
                    move |_p: Peer, r: Bytes| {
                        let counted = counted.clone();
                        async move {
                            counted.fetch_add(1, Ordering::SeqCst);
                            Ok(Some(r))
                        }
                    },
                    Access::AllowList(HashSet::from([friend.peer_id()])),
                )
                .build()
                .await
                .expect("server");
            friend
                .add_contact("server", addr(&server))
                .await
                .expect("route");
            stranger
                .add_contact("server", addr(&server))
                .await
                .expect("route");

            assert_eq!(
                friend
                    .dispatch("server", PRIVATE, "hi")
                    .await
                    .expect("friend"),
                "hi"
            );
            match stranger.dispatch("server", PRIVATE, "hi").await {
                Err(DispatchError::Refused { protocol, peer }) => {
                    assert_eq!(protocol, PRIVATE);
                    assert_eq!(peer, server.peer_id());
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(
                calls.load(Ordering::SeqCst),
                1,
                "the refused peer never reached the handler"
            );
            // Other protocols stay open to the stranger, on the same connection.
            assert_eq!(
                stranger.dispatch("server", ECHO, "e").await.expect("echo"),
                "e"
            );

            // Swap the list at run time.
            assert!(server.set_access(
                PRIVATE,
                Access::AllowList(HashSet::from([stranger.peer_id()]))
            ));
            assert_eq!(
                stranger
                    .dispatch("server", PRIVATE, "now")
                    .await
                    .expect("now allowed"),
                "now"
            );
            assert!(matches!(
                friend.dispatch("server", PRIVATE, "x").await,
                Err(DispatchError::Refused { .. })
            ));
            assert!(server.set_access(PRIVATE, Access::Open));
            friend
                .dispatch("server", PRIVATE, "open")
                .await
                .expect("open to all");
            assert_eq!(calls.load(Ordering::SeqCst), 3);
            assert!(!server.set_access("/not/registered/1.0.0", Access::Open));
            // Raw streams obey the same rule.
            server
                .handle_streams_with(
                    HOLD,
                    |_p: Peer, _s: pheromone::Stream| async move {},
                    Access::AllowList(HashSet::new()),
                )
                .expect("register");
            assert!(matches!(
                friend.open_stream("server", HOLD).await,
                Err(DispatchError::Refused { .. })
            ));
            // Bad protocol names are refused at registration.
            assert!(matches!(
                server.handle_requests("no-slash", node_util::echo),
                Err(NodeError::InvalidProtocol { .. })
            ));
            for n in [friend, stranger, server] {
                n.close().await;
            }
        })
        .await;
    }
}

over_transports! {
    #[tokio::test]
    async fn pending_request_limits_fail_fast_on_both_sides() {
        bounded(async {
            let limits = Limits {
                max_pending_requests_per_peer: 2,
                ..Limits::default()
            };
            let server = listening("server")
                .limits(limits.clone())
                .handle_requests(SLOW, slow)
                .build()
                .await
                .expect("server");
            // Our own cap: the third concurrent request is refused before it is sent.
            let client = listening("client")
                .limits(limits)
                .build()
                .await
                .expect("client");
            client
                .add_contact("server", addr(&server))
                .await
                .expect("route");
            let busy: Vec<_> = (0..2)
                .map(|_| {
                    let c = client.clone();
                    tokio::spawn(async move { c.dispatch("server", SLOW, "x").await })
                })
                .collect();
            eventually(|| client.stats().pending_outbound == 2).await;
            match client.dispatch("server", ECHO, "third").await {
                Err(DispatchError::TooManyPending { limit, peer }) => {
                    assert_eq!(limit, 2);
                    assert_eq!(peer, server.peer_id());
                }
                other => panic!("{other:?}"),
            }
            // Refused at once: the two slow calls are still in flight.
            assert_eq!(
                client.stats().pending_outbound,
                2,
                "refused without waiting"
            );
            for b in busy {
                b.await.expect("task").expect("the two in flight finish");
            }

            // The peer's cap: a client allowing more sees "busy" for the third.
            let eager = node("eager").await;
            eager
                .add_contact("server", addr(&server))
                .await
                .expect("route");
            let calls: Vec<_> = (0..3)
                .map(|_| {
                    let c = eager.clone();
                    tokio::spawn(async move { c.dispatch("server", SLOW, "x").await })
                })
                .collect();
            let mut busy = 0;
            for call in calls {
                match call.await.expect("task") {
                    Ok(_) => {}
                    Err(DispatchError::Busy { limit: 2, .. }) => busy += 1,
                    Err(other) => panic!("{other}"),
                }
            }
            assert_eq!(busy, 1);
            for n in [client, server, eager] {
                n.close().await;
            }
        })
        .await;
    }
}

over_transports! {
    #[tokio::test]
    async fn stream_and_connection_limits_fail_clearly() {
        bounded(async {
            let hold = |_p: Peer, mut s: pheromone::Stream| async move {
                use tokio::io::AsyncReadExt;
                let mut sink = Vec::new();
                let _ = s.read_to_end(&mut sink).await;
            };
            // Routing updates would take stream slots at moments this test cannot predict.
            let server = listening("server")
                .routing(None)
                .limits(Limits {
                    max_streams_per_connection: 3,
                    max_inbound_connections: 2,
                    ..Limits::default()
                })
                .handle_streams(HOLD, hold)
                .build()
                .await
                .expect("server");
            let client = listening("client")
                .routing(None)
                .limits(Limits {
                    max_streams_per_connection: 2,
                    max_outbound_connections: 1,
                    ..Limits::default()
                })
                .build()
                .await
                .expect("client");
            client
                .add_contact("server", addr(&server))
                .await
                .expect("route");

            // Our stream cap: two held streams, the third open fails here.
            let s1 = client.open_stream("server", HOLD).await.expect("first");
            let s2 = client.open_stream("server", HOLD).await.expect("second");
            match client.dispatch("server", ECHO, "x").await {
                Err(DispatchError::StreamLimit { reason, .. }) => assert!(!reason.is_empty()),
                other => panic!("{other:?}"),
            }
            drop((s1, s2));
            eventually(|| client.stats().streams == 0).await;
            assert_eq!(
                client
                    .dispatch("server", ECHO, "y")
                    .await
                    .expect("after release"),
                "y"
            );

            // The peer's cap: a client allowing more streams is refused on the fourth.
            let wide = listening("wide").routing(None).build().await.expect("wide");
            wide.add_contact("server", addr(&server))
                .await
                .expect("route");
            let mut held = Vec::new();
            for _ in 0..3 {
                held.push(
                    wide.open_stream("server", HOLD)
                        .await
                        .expect("within the peer's cap"),
                );
            }
            match wide.open_stream("server", HOLD).await {
                Err(DispatchError::StreamLimit { .. }) => {}
                other => panic!("{other:?}"),
            }
            drop(held);

            // Our outbound connection cap: a second connection (a short-mode call) is refused.
            match client
                .dispatch_with(
                    "server",
                    ECHO,
                    "z",
                    &DispatchOptions::new().mode(ConnectionMode::Short),
                )
                .await
            {
                Err(DispatchError::ConnectionLimit { limit: 1, .. }) => {}
                other => panic!("{other:?}"),
            }
            // The peer's inbound cap (two: client and wide): a third node cannot connect, and
            // is told so instead of hanging.
            let third = node("third").await;
            assert!(matches!(
                third.add_contact("server", addr(&server)).await,
                Err(NodeError::Dial { .. })
            ));
            for n in [client, server, wide, third] {
                n.close().await;
            }
        })
        .await;
    }
}

over_transports! {
    #[tokio::test]
    async fn many_requests_leave_nothing_behind() {
        bounded(async {
            // Kept request streams end after 300 ms unused, so "nothing behind" is checkable.
            let kept_idle = Duration::from_millis(300);
            let build = |name| listening(name).request_stream_idle(kept_idle).build();
            let server = build("server").await.expect("server");
            let client = build("client").await.expect("client");
            client
                .add_contact("server", addr(&server))
                .await
                .expect("route");
            for _ in 0..50 {
                client
                    .dispatch("server", ECHO, "warm")
                    .await
                    .expect("warm-up");
            }
            let settled = |n: &pheromone::Node| n.stats().identifying == 0 && n.stats().streams == 0;
            eventually(|| settled(&client) && settled(&server)).await;
            let (c0, s0) = (client.stats(), server.stats());
            let opened_before = client.endpoint().connections()[0].streams_total();
            for i in 0..3000u32 {
                let reply = client
                    .dispatch("server", ECHO, i.to_le_bytes().to_vec())
                    .await
                    .expect("dispatch");
                assert_eq!(&reply[..], &i.to_le_bytes());
            }
            // Sequential requests of one protocol share a kept stream (a new one only if the
            // kept one expired between two requests on a slow machine).
            let opened = client.endpoint().connections()[0].streams_total() - opened_before;
            assert!(
                opened < 30,
                "3000 sequential requests opened {opened} streams"
            );
            // A burst in parallel, both directions.
            let mut calls = Vec::new();
            for i in 0..200u32 {
                let (from, to) = if i % 2 == 0 {
                    (&client, server.peer_id())
                } else {
                    (&server, client.peer_id())
                };
                let from = from.clone();
                calls.push(tokio::spawn(async move {
                    from.dispatch(to, ECHO, "burst").await
                }));
            }
            for c in calls {
                c.await.expect("task").expect("burst");
            }
            eventually(|| client.stats() == c0 && server.stats() == s0).await;
            assert_eq!(c0.streams, 0);
            assert_eq!(c0.pending_outbound_peers, 0);
            assert_eq!(s0.pending_inbound_peers, 0);
            assert_eq!(c0.connections, 1);
            let conns = client.endpoint().connections();
            assert_eq!(conns.len(), 1);
            assert_eq!(conns[0].num_streams(), 0);
            client.close().await;
            server.close().await;
        })
        .await;
    }
}

over_transports! {
    /// A kept request stream carries one timer for all its requests: each call must still get
    /// exactly its own deadline, shorter or longer than the previous call's.
    #[tokio::test]
    async fn each_call_on_a_kept_stream_keeps_its_own_deadline() {
        bounded(async {
            let server = listening("server")
                .handle_requests(SLOW, slow)
                .build()
                .await
                .expect("server");
            let client = node("client").await;
            client
                .add_contact("server", addr(&server))
                .await
                .expect("route");
            let within = |ms| DispatchOptions::new().timeout(Duration::from_millis(ms));
            // A 400 ms handler: in time for 600 ms; the stream is kept.
            let first = client
                .dispatch_with("server", SLOW, "a", &within(600))
                .await;
            assert_eq!(first.expect("first call").as_ref(), b"a");
            // Starts about 400 ms in and ends past the first call's deadline: not cut by it.
            let second = client
                .dispatch_with("server", SLOW, "b", &within(5_000))
                .await;
            assert_eq!(second.expect("second call").as_ref(), b"b");
            // A deadline shorter than the reply takes is kept too.
            let third = client
                .dispatch_with("server", SLOW, "c", &within(100))
                .await;
            match third {
                Err(DispatchError::Timeout { timeout, .. }) => {
                    assert_eq!(timeout, Duration::from_millis(100));
                }
                other => panic!("expected a timeout, got {other:?}"),
            }
            // The connection survives the abandoned request.
            let fourth = client
                .dispatch_with("server", SLOW, "d", &within(5_000))
                .await;
            assert_eq!(fourth.expect("after a timeout").as_ref(), b"d");
            client.close().await;
            server.close().await;
        })
        .await;
    }
}
