//! Metrics of real nodes on 127.0.0.1: connections, handshakes, streams and bytes per
//! protocol, request latency, dial errors by cause, and the OpenMetrics text a scraper
//! reads. Also that a protocol a peer proposes never becomes a label.

mod node_util;

use node_util::{addr, bounded, node, ECHO};
use std::collections::HashMap;

/// The samples of an OpenMetrics text: `name{labels}` → value.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (key, value) = l.rsplit_once(' ').expect("sample line has a value");
            (key.to_owned(), value.parse::<f64>().expect("numeric value"))
        })
        .collect()
}

fn get(samples: &HashMap<String, f64>, key: &str) -> f64 {
    *samples
        .get(key)
        .unwrap_or_else(|| panic!("no sample {key}; have {:#?}", samples.keys()))
}

#[tokio::test]
async fn a_request_is_counted_on_both_sides() {
    bounded(async {
        let server = node("yoghurt").await;
        let client = pheromone::Node::builder()
            .name("luda")
            .build()
            .await
            .expect("client");
        client
            .add_contact("yoghurt", addr(&server))
            .await
            .expect("route");
        for _ in 0..3 {
            let reply = client
                .dispatch("yoghurt", ECHO, "hello metrics")
                .await
                .expect("echo");
            assert_eq!(reply, "hello metrics");
        }
        // A protocol nobody serves: refused by the server, and no label anywhere.
        let refused = client.dispatch("yoghurt", "/made/up/by/a/peer", "x").await;
        assert!(refused.is_err());

        let text = client.metrics().encode().await;
        assert!(
            text.ends_with("# EOF\n"),
            "OpenMetrics text ends with # EOF"
        );
        let c = samples(&text);
        let out = r#"direction="outbound",transport="tcp",path="direct""#;
        assert_eq!(
            get(&c, &format!("pheromone_connections_opened_total{{{out}}}")),
            1.0
        );
        assert_eq!(get(&c, &format!("pheromone_connections{{{out}}}")), 1.0);
        assert_eq!(
            get(
                &c,
                r#"pheromone_handshake_duration_seconds_count{direction="outbound"}"#
            ),
            1.0
        );
        // The client does not serve the echo protocol, so its requests count as `other`.
        assert_eq!(
            get(
                &c,
                r#"pheromone_requests_total{protocol="other",outcome="ok"}"#
            ),
            3.0
        );
        assert_eq!(
            get(
                &c,
                r#"pheromone_requests_total{protocol="other",outcome="error"}"#
            ),
            1.0
        );
        assert_eq!(
            get(
                &c,
                r#"pheromone_request_duration_seconds_count{protocol="other"}"#
            ),
            3.0
        );
        assert!(
            get(
                &c,
                r#"pheromone_protocol_sent_bytes_total{protocol="other"}"#
            ) >= 3.0 * "hello metrics".len() as f64
        );
        assert!(!text.contains("/made/up/by/a/peer"));
        // Histogram buckets are cumulative and end at the count.
        assert_eq!(
            get(
                &c,
                r#"pheromone_request_duration_seconds_bucket{le="+Inf",protocol="other"}"#
            ),
            3.0
        );
        assert!(
            get(
                &c,
                r#"pheromone_request_duration_seconds_bucket{le="10.0",protocol="other"}"#
            ) <= 3.0
        );

        let text = server.metrics().encode().await;
        let s = samples(&text);
        let inbound = r#"direction="inbound",transport="tcp",path="direct""#;
        assert_eq!(
            get(
                &s,
                &format!("pheromone_connections_opened_total{{{inbound}}}")
            ),
            1.0
        );
        // Long mode keeps a request stream for the next request: one stream or more.
        assert!(
            get(
                &s,
                &format!(
                    r#"pheromone_streams_opened_total{{protocol="{ECHO}",direction="inbound"}}"#
                )
            ) >= 1.0
        );
        assert!(
            get(
                &s,
                &format!(r#"pheromone_protocol_received_bytes_total{{protocol="{ECHO}"}}"#)
            ) >= 3.0 * "hello metrics".len() as f64
        );
        // Identify ran over its own label, in both directions of the one connection.
        assert!(
            get(
                &s,
                r#"pheromone_streams_opened_total{protocol="/ipfs/id/1.0.0",direction="inbound"}"#
            ) >= 1.0
        );
        assert!(!text.contains("/made/up/by/a/peer"));
        assert_eq!(get(&s, "pheromone_peers_connected"), 1.0);

        // The same numbers through the structured view.
        let echo = server
            .metrics()
            .protocols()
            .into_iter()
            .find(|p| p.protocol == ECHO)
            .expect("echo label");
        assert!(echo.streams_inbound >= 1);
        assert!(echo.bytes_in >= 3 * "hello metrics".len() as u64);

        // The per-connection byte counters the dashboard shows.
        let conn = client.endpoint().connections().pop().expect("a connection");
        assert!(conn.bytes_sent() >= 3 * "hello metrics".len() as u64);
        assert!(conn.bytes_received() >= 3 * "hello metrics".len() as u64);

        client.close().await;
        node_util::eventually(|| server.stats().connected_peers == 0).await;
        let s = samples(&server.metrics().encode().await);
        assert_eq!(
            get(
                &s,
                &format!("pheromone_connections_closed_total{{{inbound}}}")
            ),
            1.0
        );
        assert_eq!(get(&s, &format!("pheromone_connections{{{inbound}}}")), 0.0);
        server.close().await;
    })
    .await;
}

/// A QUIC connection is counted under `transport="quic"` on both sides, and nothing
/// under `tcp`.
#[tokio::test]
async fn connections_carry_their_transport_label() {
    bounded(async {
        let server = node_util::listening("yoghurt")
            .listen("/ip4/127.0.0.1/udp/0/quic-v1")
            .build()
            .await
            .expect("server");
        let quic = server
            .listen_addrs()
            .into_iter()
            .find(|a| a.is_quic())
            .expect("a QUIC address");
        let client = pheromone::Node::builder().build().await.expect("client");
        client.add_contact("yoghurt", quic).await.expect("route");
        client.dispatch("yoghurt", ECHO, "x").await.expect("echo");
        for (node, direction) in [(&client, "outbound"), (&server, "inbound")] {
            let c = samples(&node.metrics().encode().await);
            let label = |t: &str| {
                format!(
                    r#"pheromone_connections_opened_total{{direction="{direction}",transport="{t}",path="direct"}}"#
                )
            };
            assert_eq!(get(&c, &label("quic")), 1.0, "{direction}");
            assert_eq!(get(&c, &label("tcp")), 0.0, "{direction}");
        }
    })
    .await;
}

#[tokio::test]
async fn dial_errors_are_counted_by_cause() {
    bounded(async {
        let n = node("luda").await;
        // A port that was just free: the dial is refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let refused = n.add_contact("nobody", format!("127.0.0.1:{port}")).await;
        assert!(refused.is_err());
        // A peer that is not the one the address names.
        let other = node("yoghurt").await;
        let stranger = pheromone::Keypair::generate(&mut rand::rngs::OsRng).peer_id();
        let wrong = addr(&other).without_p2p().with_p2p(stranger).expect("addr");
        assert!(n.add_contact("wrong", wrong).await.is_err());

        let text = n.metrics().encode().await;
        let m = samples(&text);
        assert_eq!(
            get(&m, r#"pheromone_dial_errors_total{cause="refused"}"#),
            1.0
        );
        assert_eq!(
            get(&m, r#"pheromone_dial_errors_total{cause="wrong_peer"}"#),
            1.0
        );
        assert_eq!(
            get(&m, r#"pheromone_dial_errors_total{cause="timeout"}"#),
            0.0
        );
        assert_eq!(
            get(
                &m,
                r#"pheromone_handshake_failures_total{direction="outbound"}"#
            ),
            1.0
        );
        n.close().await;
        other.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_registry_of_the_programs_own_holds_the_node() {
    bounded(async {
        let n = node("luda").await;
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(n.metrics().collector()));
        let text = pheromone::metrics::encode_registry(&registry);
        let m = samples(&text);
        assert_eq!(get(&m, "pheromone_peers_connected"), 0.0);
        assert!(text.contains("# TYPE pheromone_handshake_duration_seconds histogram"));
        // The node is gone: its collector still encodes the counters it kept.
        let metrics = n.metrics();
        n.close().await;
        drop(n);
        let text = metrics.encode().await;
        assert!(text.contains("pheromone_connections_opened_total"));
    })
    .await;
}
