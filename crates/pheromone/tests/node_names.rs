//! Names: aliases shared by several peers, names learned both ways through identify,
//! events for routes.
//!
//! Every test runs over TCP and over QUIC (`name::tcp`, `name::quic`; `transports/mod.rs`).

mod node_util;

use node_util::{addr, bounded, eventually, node, transports, wait_event, ECHO};
use pheromone::node::{DispatchError, NodeError, NodeEvent};

over_transports! {
    #[tokio::test]
    async fn a_shared_name_is_an_error_listing_the_candidates() {
        bounded(async {
            let twin_a = node("twin").await;
            let twin_b = node("twin").await;
            let solo = node("solo").await;
            let client = node("client").await;
            let a = client
                .add_contact("twin", addr(&twin_a))
                .await
                .expect("route a");
            let b = client
                .add_contact("twin", addr(&twin_b))
                .await
                .expect("route b");
            client
                .add_contact("solo", addr(&solo))
                .await
                .expect("route solo");
            assert_ne!(a.peer, b.peer);

            let err = client
                .dispatch("twin", ECHO, "x")
                .await
                .expect_err("ambiguous");
            match &err {
                DispatchError::AmbiguousName { name, candidates } => {
                    assert_eq!(name, "twin");
                    let mut want = vec![twin_a.peer_id(), twin_b.peer_id()];
                    want.sort();
                    assert_eq!(candidates, &want);
                }
                other => panic!("{other:?}"),
            }
            let text = err.to_string();
            assert!(text.contains(&twin_a.peer_id().to_string()), "{text}");
            assert!(text.contains(&twin_b.peer_id().to_string()), "{text}");

            // By peer ID each twin works; the unique name works.
            assert_eq!(
                client
                    .dispatch(twin_a.peer_id(), ECHO, "a")
                    .await
                    .expect("a"),
                "a"
            );
            assert_eq!(
                client
                    .dispatch(twin_b.peer_id(), ECHO, "b")
                    .await
                    .expect("b"),
                "b"
            );
            assert_eq!(client.dispatch("solo", ECHO, "s").await.expect("solo"), "s");
            assert!(matches!(
                client.dispatch("nobody", ECHO, "x").await,
                Err(DispatchError::UnknownName { .. })
            ));
            // Removing a route by a shared name is refused the same way; by ID it works.
            assert!(matches!(
                client.remove_contact("twin"),
                Err(NodeError::AmbiguousName { .. })
            ));
            client.remove_contact(twin_b.peer_id()).expect("remove b");
            // The alias "twin" now names one route, but twin_b still announces "twin" (it was
            // identified), so the name stays ambiguous until it is forgotten.
            assert!(matches!(
                client.dispatch("twin", ECHO, "x").await,
                Err(DispatchError::AmbiguousName { .. })
            ));
            for n in [client, twin_a, twin_b, solo] {
                n.close().await;
            }
        })
        .await;
    }
}

over_transports! {
    #[tokio::test]
    async fn names_are_learned_both_ways() {
        bounded(async {
            let luda = node("luda").await;
            let yoghurt = node("yoghurt").await;
            let mut y_events = yoghurt.events();
            let mut l_events = luda.events();
            // luda calls yoghurt "y" locally; yoghurt announces "yoghurt".
            let contact = luda
                .add_contact("y", addr(&yoghurt))
                .await
                .expect("contact");
            assert_eq!(contact.alias, "y");
            assert_eq!(contact.announced_name.as_deref(), Some("yoghurt"));
            match wait_event(&mut l_events, |e| matches!(e, NodeEvent::ContactAdded(_))).await {
                NodeEvent::ContactAdded(r) => assert_eq!(r.peer, yoghurt.peer_id()),
                _ => unreachable!(),
            }
            assert_eq!(
                luda.peer_name(&yoghurt.peer_id()).as_deref(),
                Some("yoghurt")
            );
            // Both the alias and the announced name resolve.
            assert_eq!(luda.resolve("y").expect("alias"), yoghurt.peer_id());
            assert_eq!(
                luda.resolve("yoghurt").expect("announced"),
                yoghurt.peer_id()
            );

            // yoghurt learned luda's name from the inbound connection, without a contact.
            let event = wait_event(&mut y_events, |e| {
                matches!(e, NodeEvent::PeerIdentified { .. })
            })
            .await;
            match event {
                NodeEvent::PeerIdentified { peer, name } => {
                    assert_eq!(peer, luda.peer_id());
                    assert_eq!(name.as_deref(), Some("luda"));
                }
                _ => unreachable!(),
            }
            assert!(yoghurt.contacts().is_empty());
            assert_eq!(
                yoghurt.dispatch("luda", ECHO, "hi").await.expect("by name"),
                "hi"
            );
            eventually(|| yoghurt.is_connected(&luda.peer_id())).await;
            luda.close().await;
            yoghurt.close().await;
        })
        .await;
    }
}

over_transports! {
    #[tokio::test]
    async fn contact_events_and_removal() {
        bounded(async {
            let server = node("server").await;
            let client = node("client").await;
            let mut events = client.events();
            let contact = client
                .add_contact("s", addr(&server))
                .await
                .expect("contact");
            wait_event(&mut events, |e| {
                matches!(e, NodeEvent::PeerConnected { .. })
            })
            .await;
            let again = client
                .add_contact("s2", addr(&server))
                .await
                .expect("rename");
            assert_eq!(again.peer, contact.peer);
            match wait_event(&mut events, |e| matches!(e, NodeEvent::ContactUpdated(_))).await {
                NodeEvent::ContactUpdated(r) => assert_eq!(r.alias, "s2"),
                _ => unreachable!(),
            }
            assert_eq!(client.contacts().len(), 1);
            // Adding a contact reused the connection.
            assert_eq!(client.endpoint().connections().len(), 1);
            let removed = client.remove_contact("s2").expect("remove");
            assert_eq!(removed.peer, server.peer_id());
            wait_event(&mut events, |e| matches!(e, NodeEvent::ContactRemoved(_))).await;
            assert!(client.contacts().is_empty());
            assert!(matches!(
                client.remove_contact(server.peer_id()),
                Err(NodeError::NoContact { .. })
            ));
            // Adding ourselves is refused.
            assert!(matches!(
                client.add_contact("me", addr(&client)).await,
                Err(NodeError::SelfContact { .. })
            ));
            client.disconnect(&server.peer_id()).await;
            wait_event(&mut events, |e| {
                matches!(e, NodeEvent::PeerDisconnected { .. })
            })
            .await;
            client.close().await;
            server.close().await;
        })
        .await;
    }
}
