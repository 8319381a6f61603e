//! Node request/response on 127.0.0.1: handlers, replies, failures, message size limits in
//! both directions, dispatch_all and raw streams.
//!
//! Every test runs over TCP and over QUIC (`name::tcp`, `name::quic`; `transports/mod.rs`).

#![allow(clippy::disallowed_methods)] // tests measure wall time

mod node_util;

use bytes::Bytes;
use node_util::{addr, bounded, listening, node, transports, ECHO};
use pheromone::node::{DispatchError, DispatchOptions, HandlerError, Node, Peer};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SILENT: &str = "/test/silent/1.0.0";
const FAILS: &str = "/test/fails/1.0.0";
const PANICS: &str = "/test/panics/1.0.0";
const WHO: &str = "/test/who/1.0.0";
const BIG_REPLY: &str = "/test/big-reply/1.0.0";
const STREAM: &str = "/test/stream/1.0.0";

over_transports! {
    #[tokio::test]
    async fn handlers_reply_fail_and_unknown_protocols_are_refused() {
        bounded(async {
            let server = listening("yoghurt")
                .handle_requests(SILENT, |_p: Peer, _r: Bytes| async move { Ok(None) })
                .handle_requests(FAILS, |_p: Peer, _r: Bytes| async move {
                    Err(HandlerError::msg("no cheese today"))
                })
                .handle_requests(PANICS, |_p: Peer, r: Bytes| async move {
                    if !r.is_empty() {
                        panic!("handler bug");
                    }
                    Ok(None)
                })
                .handle_requests(WHO, |p: Peer, _r: Bytes| async move {
                    Ok(Some(Bytes::from(format!(
                        "{}|{}",
                        p.id(),
                        p.name().unwrap_or("?")
                    ))))
                })
                .build()
                .await
                .expect("server");
            let client = node("luda").await;
            let contact = client
                .add_contact("yoghurt", addr(&server))
                .await
                .expect("contact");
            assert_eq!(contact.peer, server.peer_id());
            assert_eq!(contact.announced_name.as_deref(), Some("yoghurt"));

            let reply = client
                .dispatch("yoghurt", ECHO, "hello")
                .await
                .expect("echo");
            assert_eq!(reply, "hello");
            let reply = client
                .dispatch(server.peer_id(), ECHO, Bytes::new())
                .await
                .expect("empty echo");
            assert!(reply.is_empty());
            // A handler with no reply answers with nothing.
            let none = client
                .dispatch_with("yoghurt", SILENT, "x", &DispatchOptions::new())
                .await
                .expect("no reply");
            assert!(none.is_empty());

            match client.dispatch("yoghurt", FAILS, "x").await {
                Err(DispatchError::HandlerFailed { message, peer, .. }) => {
                    assert_eq!(message, "no cheese today");
                    assert_eq!(peer, server.peer_id());
                }
                other => panic!("{other:?}"),
            }
            match client.dispatch("yoghurt", PANICS, "x").await {
                Err(DispatchError::HandlerFailed { message, .. }) => {
                    assert!(message.contains("panicked"), "{message}")
                }
                other => panic!("{other:?}"),
            }
            match client
                .dispatch("yoghurt", "/not/registered/1.0.0", "x")
                .await
            {
                Err(DispatchError::Refused { protocol, .. }) => {
                    assert_eq!(protocol, "/not/registered/1.0.0")
                }
                other => panic!("{other:?}"),
            }
            // The handler saw who we are, by ID and by announced name.
            let who = client.dispatch("yoghurt", WHO, "").await.expect("who");
            assert_eq!(who, format!("{}|luda", client.peer_id()));
            // None of that cost the connection.
            assert_eq!(client.endpoint().connections().len(), 1);
            client.close().await;
            server.close().await;
        })
        .await;
    }
}

over_transports! {
    #[tokio::test]
    async fn oversized_messages_fail_clearly_on_both_sides_and_the_connection_survives() {
        bounded(async {
            let server = listening("small")
                .max_message_size(1000)
                .handle_requests(BIG_REPLY, |_p: Peer, r: Bytes| async move {
                    let len: usize = String::from_utf8_lossy(&r).parse().unwrap_or(0);
                    Ok(Some(Bytes::from(vec![7u8; len])))
                })
                .build()
                .await
                .expect("server");
            let client = listening("big")
                .max_message_size(4000)
                .build()
                .await
                .expect("client");
            client
                .add_contact("small", addr(&server))
                .await
                .expect("route");
            let conn_id = client.endpoint().connections()[0].id();

            // Over our own limit: refused before sending.
            match client.dispatch("small", ECHO, vec![1u8; 4001]).await {
                Err(DispatchError::RequestTooLarge { size, max, .. }) => {
                    assert_eq!((size, max), (4001, 4000))
                }
                other => panic!("{other:?}"),
            }
            // Within ours, over the peer's: the peer refuses it unread and says its limit.
            match client.dispatch("small", ECHO, vec![1u8; 3000]).await {
                Err(DispatchError::RemoteRequestTooLarge { size, max, .. }) => {
                    assert_eq!((size, max), (3000, 1000))
                }
                other => panic!("{other:?}"),
            }
            // The peer's reply over its own limit is not sent.
            match client.dispatch("small", BIG_REPLY, "1500").await {
                Err(DispatchError::Remote { message, .. }) => {
                    assert!(message.contains("1500"), "{message}")
                }
                other => panic!("{other:?}"),
            }
            // A reply over our limit is refused by us, the other way round.
            match server
                .dispatch(client.peer_id(), ECHO, vec![2u8; 900])
                .await
            {
                Ok(reply) => assert_eq!(reply.len(), 900),
                other => panic!("{other:?}"),
            }
            let tiny = Node::builder()
                .max_message_size(10)
                .build()
                .await
                .expect("tiny");
            tiny.add_contact("small", addr(&server))
                .await
                .expect("route");
            match tiny.dispatch("small", BIG_REPLY, "11").await {
                Err(DispatchError::ResponseTooLarge { size, max, .. }) => {
                    assert_eq!((size, max), (11, 10))
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(
                tiny.dispatch("small", BIG_REPLY, "10")
                    .await
                    .expect("fits")
                    .len(),
                10
            );

            // Every failure above left the one connection working.
            let reply = client
                .dispatch("small", ECHO, vec![3u8; 1000])
                .await
                .expect("at the limit");
            assert_eq!(reply.len(), 1000);
            let conns = client.endpoint().connections();
            assert_eq!(conns.len(), 1);
            assert_eq!(conns[0].id(), conn_id);
            for n in [client, server, tiny] {
                n.close().await;
            }
        })
        .await;
    }
}

over_transports! {
    #[tokio::test]
    async fn dispatch_all_asks_every_contact_concurrently() {
        bounded(async {
            const N: usize = 12;
            let hits = Arc::new(AtomicUsize::new(0));
            let all_in = Arc::new(tokio::sync::Barrier::new(N));
            let mut servers = Vec::new();
            for i in 0..N {
                let hits = hits.clone();
                let all_in = all_in.clone();
                let server = listening(&format!("s{i}"))
                    .handle_requests("/test/id/1.0.0", move |_p: Peer, r: Bytes| {
                        let hits = hits.clone();
                        let all_in = all_in.clone();
                        async move {
                            hits.fetch_add(1, Ordering::SeqCst);
                            // On the first round every handler waits for all the others: this
                            // completes only if the calls run at once (sequential calls would
                            // wait forever).
                            if r == "ping" {
                                all_in.wait().await;
                            }
                            Ok(Some(Bytes::from(format!(
                                "{i}:{}",
                                String::from_utf8_lossy(&r)
                            ))))
                        }
                    })
                    .build()
                    .await
                    .expect("server");
                servers.push(server);
            }
            let client = node("client").await;
            for (i, s) in servers.iter().enumerate() {
                client
                    .add_contact(format!("s{i}"), addr(s))
                    .await
                    .expect("route");
            }
            let results = client.dispatch_all("/test/id/1.0.0", "ping").await;
            assert_eq!(results.len(), N);
            for (i, s) in servers.iter().enumerate() {
                let reply = results[&s.peer_id()].as_ref().expect("reply");
                assert_eq!(reply, &format!("{i}:ping"));
            }
            assert_eq!(hits.load(Ordering::SeqCst), N);
            // A route that cannot answer shows up as an error for that peer only.
            servers[0].close().await;
            let results = client.dispatch_all("/test/id/1.0.0", "again").await;
            assert!(results[&servers[0].peer_id()].is_err());
            assert_eq!(results.values().filter(|r| r.is_ok()).count(), N - 1);
            client.close().await;
            for s in servers {
                s.close().await;
            }
        })
        .await;
    }
}

over_transports! {
    #[tokio::test]
    async fn raw_streams_both_ways_and_refusal_at_open() {
        bounded(async {
            let server = listening("yoghurt")
                .handle_streams(
                    STREAM,
                    |peer: Peer, mut stream: pheromone::Stream| async move {
                        let mut buf = Vec::new();
                        if stream.read_to_end(&mut buf).await.is_ok() {
                            buf.extend_from_slice(peer.name().unwrap_or("?").as_bytes());
                            let _ = stream.write_all(&buf).await;
                            let _ = stream.shutdown().await;
                        }
                    },
                )
                .build()
                .await
                .expect("server");
            let client = node("luda").await;
            client
                .add_contact("yoghurt", addr(&server))
                .await
                .expect("route");
            let mut stream = client.open_stream("yoghurt", STREAM).await.expect("open");
            assert_eq!(stream.peer(), server.peer_id());
            stream.write_all(&[5u8; 100_000]).await.expect("write");
            stream.shutdown().await.expect("shutdown");
            let mut back = Vec::new();
            stream.read_to_end(&mut back).await.expect("read");
            assert_eq!(back.len(), 100_004);
            assert_eq!(&back[100_000..], b"luda");
            drop(stream);
            match client.open_stream("yoghurt", "/nope/1.0.0").await {
                Err(DispatchError::Refused { .. }) => {}
                other => panic!("{other:?}"),
            }
            client.close().await;
            server.close().await;
        })
        .await;
    }
}
