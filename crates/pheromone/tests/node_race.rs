//! Simultaneous open (both peers dial each other at once, 200 times) and draining: a
//! connection replaced or closed with requests in flight lets them finish, or fails them
//! with a clear error — none is lost or left hanging.
//!
//! Every test runs over TCP and over QUIC (`name::tcp`, `name::quic`; `transports/mod.rs`).

#![allow(clippy::disallowed_methods)] // tests measure wall time

mod node_util;

use bytes::Bytes;
use node_util::{addr, bounded, eventually, listening, transports, ECHO};
use pheromone::node::{DispatchError, Node, NodeEvent, Peer};
use pheromone::{Direction, Keypair};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Barrier;

const SLOW: &str = "/test/slow/1.0.0";
/// Requests each side fires into every race.
const PER_SIDE: usize = 3;
const RACES: usize = 200;

/// Two keypairs, the one with the smaller peer ID first.
fn ordered_keys() -> (Keypair, Keypair) {
    let a = Keypair::generate(&mut rand::rngs::OsRng);
    let b = Keypair::generate(&mut rand::rngs::OsRng);
    if a.peer_id() < b.peer_id() {
        (a, b)
    } else {
        (b, a)
    }
}

async fn slow(_peer: Peer, request: Bytes) -> pheromone::node::HandlerResult {
    let ms: u64 = String::from_utf8_lossy(&request).parse().unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(Some(request))
}

async fn pair() -> (Node, Node) {
    let (small_key, big_key) = ordered_keys();
    let small = listening("small")
        .keypair(small_key)
        .handle_requests(SLOW, slow)
        .build()
        .await
        .expect("small");
    let big = listening("big")
        .keypair(big_key)
        .handle_requests(SLOW, slow)
        .build()
        .await
        .expect("big");
    (small, big)
}

/// Fires `PER_SIDE` requests from `from` to `to` once the barrier opens.
fn fire(
    from: &Node,
    to: &Node,
    barrier: &Arc<Barrier>,
    round: usize,
) -> tokio::task::JoinHandle<()> {
    let from = from.clone();
    let to = to.peer_id();
    let barrier = barrier.clone();
    tokio::spawn(async move {
        barrier.wait().await;
        let calls = (0..PER_SIDE).map(|i| {
            let from = from.clone();
            async move {
                let msg = format!("{round}/{i}");
                let reply = from.dispatch(to, ECHO, msg.clone()).await;
                assert_eq!(reply.unwrap_or_else(|e| panic!("round {round}: {e}")), msg);
            }
        });
        futures::future::join_all(calls).await;
    })
}

/// Waits until both nodes hold exactly one connection, the same one; says who dialled it
/// (seen from the smaller).
async fn settled(small: &Node, big: &Node, round: usize) -> Direction {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = small.endpoint().connections();
        let b = big.endpoint().connections();
        if s.len() == 1 && b.len() == 1 {
            let (s, b) = (&s[0], &b[0]);
            assert_eq!(s.info().local_addr, b.info().remote_addr, "round {round}");

            assert!(small.is_connected(&big.peer_id()) && big.is_connected(&small.peer_id()));
            return s.info().direction;
        }
        assert!(
            Instant::now() < deadline,
            "round {round}: {} and {} connections",
            s.len(),
            b.len()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

over_transports! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn simultaneous_open_settles_on_one_connection_every_time() {
        bounded(async {
            let (small, big) = pair().await;
            let mut replaced = 0usize;
            let mut small_events = small.events();
            let mut big_events = big.events();
            for round in 0..RACES {
                let barrier = Arc::new(Barrier::new(2));
                if round == 0 {
                    // The first race: both add a route to the other at once.
                    let (s, b) = (small.clone(), big.clone());
                    let (sa, ba) = (addr(&small), addr(&big));
                    let b1 = barrier.clone();
                    let t1 = tokio::spawn(async move {
                        b1.wait().await;
                        s.add_contact("big", ba).await.expect("route to big")
                    });
                    let b2 = barrier.clone();
                    let t2 = tokio::spawn(async move {
                        b2.wait().await;
                        b.add_contact("small", sa).await.expect("route to small")
                    });
                    t1.await.expect("task");
                    t2.await.expect("task");
                } else {
                    // Later races: both redial on their next use at the same instant.
                    let t1 = fire(&small, &big, &barrier, round);
                    let t2 = fire(&big, &small, &barrier, round);
                    t1.await.expect("small's requests");
                    t2.await.expect("big's requests");
                }
                let survivor = settled(&small, &big, round).await;
                let mut events = Vec::new();
                while let Ok(event) = small_events.try_recv() {
                    events.push(format!("small: {event:?}"));
                }
                while let Ok(event) = big_events.try_recv() {
                    events.push(format!("big: {event:?}"));
                }
                // A real race (two connections, one closed) keeps the smaller ID's dial. When
                // one side's connection was up before the other even tried, nothing raced and
                // the one connection stays, whoever dialled it.
                let raced = events.iter().any(|e| e.contains("ConnectionReplaced"));
                if raced {
                    replaced += 1;
                    assert_eq!(
                        survivor,
                        Direction::Outbound,
                        "round {round}: smaller ID's dial wins; events: {events:#?}"
                    );
                }
                // Tear down for the next race.
                small.disconnect(&big.peer_id()).await;
                eventually(|| {
                    small.endpoint().connections().is_empty()
                        && big.endpoint().connections().is_empty()
                        && !small.is_connected(&big.peer_id())
                        && !big.is_connected(&small.peer_id())
                })
                .await;
            }
            eprintln!("{replaced} of {RACES} rounds replaced a connection");
            // Most rounds were real races (two connections, one closed).
            assert!(
                replaced > RACES / 4,
                "only {replaced} of {RACES} rounds raced"
            );
            // Nothing is left behind: no request, dial or connection.
            eventually(|| {
                let s = small.stats();
                (s.pending_outbound, s.dials, s.connections, s.pool_entries) == (0, 0, 0, 0)
            })
            .await;
            small.close().await;
            big.close().await;
        })
        .await;
    }
}

over_transports! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replacing_a_connection_drains_requests_in_flight() {
        bounded(async {
            let (small, big) = pair().await;
            let mut events = big.events();
            // big dials first: the connection small will replace.
            big.add_contact("small", addr(&small)).await.expect("route");
            let old = big.endpoint().connections()[0].id();
            let mut calls = Vec::new();
            for i in 0..10 {
                let (from, to) = if i % 2 == 0 {
                    (&big, &small)
                } else {
                    (&small, &big)
                };
                let from = from.clone();
                let to = to.peer_id();
                calls.push(tokio::spawn(
                    async move { from.dispatch(to, SLOW, "300").await },
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            // small dials too (an address without /p2p/ forces a new dial); its dial wins.
            small
                .add_contact("big", addr(&big).without_p2p())
                .await
                .expect("second route");
            let (kept, closed) = wait_event_replaced(&mut events).await;
            assert_eq!(closed, old);
            assert_ne!(kept, old);
            for call in calls {
                assert_eq!(call.await.expect("task").expect("drained request"), "300");
            }
            settled(&small, &big, 0).await;
            // New requests go over the winner.
            assert_eq!(
                big.dispatch(small.peer_id(), ECHO, "after")
                    .await
                    .expect("after"),
                "after"
            );
            small.close().await;
            big.close().await;
        })
        .await;
    }
}

async fn wait_event_replaced(
    events: &mut tokio::sync::broadcast::Receiver<NodeEvent>,
) -> (
    pheromone::connection::ConnectionId,
    pheromone::connection::ConnectionId,
) {
    loop {
        if let NodeEvent::ConnectionReplaced { kept, closed, .. } =
            events.recv().await.expect("event")
        {
            return (kept, closed);
        }
    }
}

over_transports! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closing_drains_or_fails_clearly() {
        bounded(async {
            let mut endpoint = pheromone::EndpointConfig::default();
            endpoint.connection.close_grace = Duration::from_millis(400);
            let server = listening("server")
                .endpoint_config(endpoint)
                .handle_requests(SLOW, slow)
                .build()
                .await
                .expect("server");
            let client = listening("client").build().await.expect("client");
            client
                .add_contact("server", addr(&server))
                .await
                .expect("route");

            // Requests that finish within the close grace all complete.
            let quick: Vec<_> = (0..8)
                .map(|_| {
                    let c = client.clone();
                    tokio::spawn(async move { c.dispatch("server", SLOW, "150").await })
                })
                .collect();
            tokio::time::sleep(Duration::from_millis(30)).await;
            server.disconnect(&client.peer_id()).await;
            for q in quick {
                assert_eq!(q.await.expect("task").expect("drained"), "150");
            }
            // After the close the next request redials.
            assert_eq!(
                client.dispatch("server", ECHO, "x").await.expect("redial"),
                "x"
            );

            // Requests longer than the grace fail with a clear error; none hangs.
            let slow_calls: Vec<_> = (0..4)
                .map(|_| {
                    let c = client.clone();
                    tokio::spawn(async move { c.dispatch("server", SLOW, "3000").await })
                })
                .collect();
            eventually(|| client.stats().pending_outbound == 4).await;
            server.disconnect(&client.peer_id()).await;
            for call in slow_calls {
                // The handlers would answer after 3 s; the calls end with the close, long
                // before (a generous bound, not a measurement).
                let ended = tokio::time::timeout(Duration::from_secs(10), call).await;
                match ended
                    .expect("the call ends with the connection")
                    .expect("task")
                {
                    Err(DispatchError::ConnectionLost { reason, .. }) => assert!(!reason.is_empty()),
                    other => panic!("expected a clear loss, got {other:?}"),
                }
            }
            // Closing the whole node fails later calls clearly.
            client.close().await;
            assert!(matches!(
                client.dispatch("server", ECHO, "x").await,
                Err(DispatchError::Closed)
            ));
            server.close().await;
        })
        .await;
    }
}
