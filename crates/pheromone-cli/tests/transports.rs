//! TCP and QUIC side by side, with real `pheromone` processes: `up` listens on both (the
//! same port number), `connect` to a QUIC address makes a QUIC link, `peers` and `ping`
//! name the transport, and a redial of a peer known at both kinds of address picks QUIC
//! (Happy Eyeballs).

#![allow(clippy::disallowed_methods)] // process tests run on the real clock

mod common;

use common::{eventually, Daemon};
use std::time::Duration;

fn find<'a>(peers: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    peers
        .as_array()
        .expect("array")
        .iter()
        .find(|p| p["peer_id"] == id)
        .unwrap_or_else(|| panic!("{id} not in {peers}"))
}

/// The daemon's QUIC listen address (with `/p2p/`), on the TCP address's port.
fn quic_addr(d: &Daemon) -> String {
    let status = d.json(&["status"]);
    let addrs: Vec<&str> = status["listen_addrs"]
        .as_array()
        .expect("listen_addrs")
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    let quic = addrs
        .iter()
        .find(|a| a.contains("/quic-v1"))
        .unwrap_or_else(|| panic!("no QUIC address in {addrs:?}"));
    let tcp_port = d.addr.split('/').nth(4).expect("port");
    assert!(
        quic.starts_with(&format!("/ip4/127.0.0.1/udp/{tcp_port}/quic-v1/p2p/")),
        "{quic}"
    );
    (*quic).to_owned()
}

#[test]
fn quic_beside_tcp_and_named_everywhere() {
    let a = Daemon::start("alpha");
    let b = Daemon::start("beta");
    let b_quic = quic_addr(&b);

    let peer = a.json(&["connect", &b_quic]);
    assert_eq!(peer["peer_id"], b.peer_id.as_str(), "{peer}");
    assert_eq!(peer["transport"], "quic", "{peer}");

    let on_a = find(&a.json(&["peers"]), &b.peer_id).clone();
    assert_eq!(on_a["transport"], "quic", "{on_a}");
    assert_eq!(
        on_a["connections"],
        serde_json::json!([{
            "transport": "quic",
            "direction": "outbound",
            "addr": b_quic.split("/p2p/").next().expect("addr"),
        }]),
        "{on_a}"
    );
    let on_b = find(&b.json(&["peers"]), &a.peer_id).clone();
    assert_eq!(on_b["transport"], "quic", "{on_b}");
    assert_eq!(on_b["connections"][0]["direction"], "inbound", "{on_b}");

    let table = a.cli(&["peers"]);
    assert!(table.status.success(), "{table:?}");
    assert!(table.stdout.contains("TRANSPORT"), "{table:?}");
    let row = table
        .stdout
        .lines()
        .find(|l| l.contains(&b.peer_id))
        .expect("a row for beta");
    assert!(row.contains(" quic "), "{row}");

    let ping = a.cli(&["ping", "beta", "-c", "2", "-i", "100ms"]);
    assert!(ping.status.success(), "{ping:?}");
    let header = ping.stdout.lines().next().expect("header");
    assert!(header.contains("over quic"), "{header}");
}

#[test]
fn a_redial_prefers_quic_when_both_are_known() {
    // A long attempt delay, so that the order of the attempts, not which handshake is
    // quicker on a loaded machine, decides the transport.
    let temp = tempfile::tempdir().expect("tempdir");
    let config = temp.path().join("alpha.toml");
    std::fs::write(&config, "happy_eyeballs_delay = \"5s\"\n").expect("config");
    let config = config.to_str().expect("utf-8 path");
    let a = Daemon::start_in(
        &temp.path().join("alpha"),
        &["--name", "alpha", "--no-dht", "--config", config],
    )
    .expect("alpha starts");
    let b = Daemon::start_no_dht("beta");
    // The first link is the TCP address `connect` was given; identify then tells alpha
    // both of beta's addresses.
    let first = a.json(&["connect", &b.addr]);
    assert_eq!(first["transport"], "tcp", "{first}");
    a.json(&["disconnect", "beta"]);
    assert!(eventually(Duration::from_secs(5), || {
        a.json(&["peers"]).as_array().is_some_and(|p| p.is_empty())
    }));
    // Using the peer again dials it at every address it is known at: QUIC first.
    let ping = a.cli(&["ping", "beta", "-c", "1"]);
    assert!(ping.status.success(), "{ping:?}");
    assert!(
        ping.stdout
            .lines()
            .next()
            .is_some_and(|h| h.contains("over quic")),
        "{ping:?}"
    );
    let on_a = find(&a.json(&["peers"]), &b.peer_id).clone();
    assert_eq!(on_a["transport"], "quic", "{on_a}");
}

#[test]
fn no_quic_listens_on_tcp_alone() {
    let temp = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start_in(&temp.path().join("n"), &["--no-quic"]).expect("starts");
    let status = d.json(&["status"]);
    assert_eq!(
        status["listen_addrs"],
        serde_json::json!([d.addr]),
        "{status}"
    );
}
