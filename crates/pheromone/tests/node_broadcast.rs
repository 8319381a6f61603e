//! Topic broadcast through the Node API: a line of three nodes, the middle one relays
//! without subscribing.
//!
//! Every test runs over TCP and over QUIC (`name::tcp`, `name::quic`; `transports/mod.rs`).

mod node_util;

use node_util::{addr, bounded, node, transports};
use std::time::Duration;

over_transports! {
    #[tokio::test]
    async fn a_message_reaches_a_subscriber_two_hops_away_once() {
        bounded(async {
            let (a, b, c) = (node("a").await, node("b").await, node("c").await);
            a.add_contact("b", addr(&b)).await.expect("a-b");
            b.add_contact("c", addr(&c)).await.expect("b-c");
            let mut sub = c.subscribe("news").await.expect("subscribe");
            // Interest spreads toward a through b; publish until a copy arrives.
            let first = loop {
                a.broadcast("news", &b"hello"[..]).await.expect("broadcast");
                if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), sub.recv()).await
                {
                    break m;
                }
            };
            assert_eq!(first.origin, a.peer_id());
            assert_eq!(&first.data[..], b"hello");
            assert_eq!(first.topic.as_str(), "news");
            // From now on each message arrives exactly once.
            let id = a
                .broadcast("news", &b"second"[..])
                .await
                .expect("broadcast");
            loop {
                let m = sub.recv().await.expect("open");
                if m.id == id {
                    assert_eq!(&m.data[..], b"second");
                    break;
                }
            }
            assert!(
                tokio::time::timeout(Duration::from_millis(300), async {
                    loop {
                        let m = sub.recv().await.expect("open");
                        if m.id == id {
                            return;
                        }
                    }
                })
                .await
                .is_err(),
                "no duplicate of the second message"
            );
            let metrics = b.broadcast_metrics().await.expect("metrics");
            assert_eq!(
                metrics.delivered, 0,
                "the relay is not subscribed and delivers nothing"
            );
            for n in [a, b, c] {
                n.close().await;
            }
        })
        .await;
    }
}
