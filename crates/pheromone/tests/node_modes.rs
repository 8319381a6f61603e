//! Long mode (one connection per peer used by both sides, keep-alive, idle timeout,
//! redial after loss) and short mode (a connection per request, closed after the reply).
//!
//! Every test runs over TCP and over QUIC (`name::tcp`, `name::quic`; `transports/mod.rs`).

#![allow(clippy::disallowed_methods)] // tests measure wall time

mod node_util;

use node_util::{addr, bounded, eventually, listening, node, transports, wait_event, ECHO};
use pheromone::node::{ConnectionMode, DispatchOptions, NodeEvent};
use pheromone::{Direction, Keypair};
use std::time::Duration;

over_transports! {
    #[tokio::test]
    async fn long_mode_reaches_a_peer_through_its_inbound_connection() {
        bounded(async {
            let luda = node("luda").await;
            let yoghurt = node("yoghurt").await;
            luda.add_contact("yoghurt", addr(&yoghurt))
                .await
                .expect("route");
            for i in 0..20 {
                let msg = format!("{i}");
                assert_eq!(
                    luda.dispatch("yoghurt", ECHO, msg.clone())
                        .await
                        .expect("l→y"),
                    msg
                );
                assert_eq!(
                    yoghurt
                        .dispatch(luda.peer_id(), ECHO, msg.clone())
                        .await
                        .expect("y→l"),
                    msg
                );
            }
            // One connection, dialled by luda, used both ways.
            let l = luda.endpoint().connections();
            let y = yoghurt.endpoint().connections();
            assert_eq!((l.len(), y.len()), (1, 1));
            assert_eq!(l[0].info().direction, Direction::Outbound);
            assert_eq!(y[0].info().direction, Direction::Inbound);
            assert_eq!(l[0].info().local_addr, y[0].info().remote_addr);
            luda.close().await;
            yoghurt.close().await;
        })
        .await;
    }
}

over_transports! {
    #[tokio::test]
    async fn keep_alive_pings_and_idle_timeout_then_redial() {
        bounded(async {
            let mut endpoint = pheromone::EndpointConfig::default();
            endpoint.connection.yamux.keepalive_interval = Some(Duration::from_millis(20));
            let server = listening("server")
                .endpoint_config(endpoint.clone())
                .idle_timeout(None)
                .build()
                .await
                .expect("server");
            let client = listening("client")
                .endpoint_config(endpoint)
                .idle_timeout(Some(Duration::from_millis(300)))
                .build()
                .await
                .expect("client");
            let mut events = client.events();
            client
                .add_contact("server", addr(&server))
                .await
                .expect("route");
            let conn = client.endpoint().connections().remove(0);
            // Keep-alive pings flow on an otherwise quiet connection.
            eventually(|| conn.rtt().is_some()).await;
            // Unused for the idle timeout: closed (by the client, which has the shorter one).
            wait_event(&mut events, |e| {
                matches!(e, NodeEvent::PeerDisconnected { .. })
            })
            .await;
            assert!(conn.is_closed());
            assert!(!client.is_connected(&server.peer_id()));
            // The next use redials transparently.
            assert_eq!(
                client
                    .dispatch("server", ECHO, "again")
                    .await
                    .expect("redial"),
                "again"
            );
            let now = client.endpoint().connections();
            assert_eq!(now.len(), 1);
            assert_ne!(now[0].id(), conn.id());
            // A connection in use is not idle: requests every 100 ms keep it for a second.
            let kept = now[0].id();
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                client.dispatch("server", ECHO, "tick").await.expect("tick");
            }
            assert_eq!(client.endpoint().connections()[0].id(), kept);
            client.close().await;
            server.close().await;
        })
        .await;
    }
}

over_transports! {
    #[tokio::test]
    async fn redial_after_the_peer_restarts() {
        bounded(async {
            let key = Keypair::generate(&mut rand::rngs::OsRng);
            let server = listening("server")
                .keypair(key.clone())
                .build()
                .await
                .expect("server");
            let server_addr = addr(&server);
            let client = node("client").await;
            client
                .add_contact("server", server_addr.clone())
                .await
                .expect("route");
            assert_eq!(
                client.dispatch("server", ECHO, "1").await.expect("first"),
                "1"
            );
            let port_addr = server_addr.clone().without_p2p();
            server.close().await;
            eventually(|| !client.is_connected(&key.peer_id())).await;
            // The same peer comes back on the same address.
            let server = pheromone::node::Node::builder()
                .keypair(key)
                .name("server")
                .listen(port_addr)
                .handle_requests(ECHO, node_util::echo)
                .build()
                .await
                .expect("restart");
            assert_eq!(
                client
                    .dispatch("server", ECHO, "2")
                    .await
                    .expect("after restart"),
                "2"
            );
            client.close().await;
            server.close().await;
        })
        .await;
    }
}

over_transports! {
    #[tokio::test]
    async fn short_mode_uses_a_connection_per_request() {
        bounded(async {
            let server = listening("server")
                .mode(ConnectionMode::Short)
                .build()
                .await
                .expect("server");
            let client = listening("client")
                .mode(ConnectionMode::Short)
                .build()
                .await
                .expect("client");
            let contact = client
                .add_contact("server", addr(&server))
                .await
                .expect("contact");
            assert_eq!(contact.announced_name.as_deref(), Some("server"));
            // add_contact's connection is already gone.
            eventually(|| client.endpoint().connections().is_empty()).await;
            for i in 0..10 {
                let msg = format!("req {i}");
                assert_eq!(
                    client
                        .dispatch("server", ECHO, msg.clone())
                        .await
                        .expect("dispatch"),
                    msg
                );
                // The client closed its connection as soon as it had the reply...
                assert!(client.endpoint().connections().is_empty());
                // ...and the server closes its side after replying.
                eventually(|| server.endpoint().connections().is_empty()).await;
            }
            // The server learned the client's name from the first short connection.
            assert_eq!(
                server.peer_name(&client.peer_id()).as_deref(),
                Some("client")
            );
            // A short-mode client talking to a long-mode server, and a per-call mode override.
            let long = node("long").await;
            client
                .add_contact("long", addr(&long))
                .await
                .expect("route to long");
            assert_eq!(
                client
                    .dispatch("long", ECHO, "x")
                    .await
                    .expect("short→long"),
                "x"
            );
            assert!(client.endpoint().connections().is_empty());
            let reply = client
                .dispatch_with(
                    "long",
                    ECHO,
                    "y",
                    &DispatchOptions::new().mode(ConnectionMode::Long),
                )
                .await
                .expect("long call from a short node");
            assert_eq!(reply.as_ref(), b"y");
            assert!(client.is_connected(&long.peer_id()));
            for n in [client, server, long] {
                n.close().await;
            }
        })
        .await;
    }
}
