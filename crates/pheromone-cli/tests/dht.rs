//! The DHT through the CLI: daemons that only know one bootstrap node find each other's
//! addresses (`dht find`) and show their tables (`dht table`).

#![allow(clippy::disallowed_methods)] // process tests run on the real clock

mod common;

use common::{eventually, Daemon};
use std::time::Duration;

fn start_joining(name: &str, bootstrap: &Daemon) -> (tempfile::TempDir, Daemon) {
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = temp.path().join("node");
    let daemon = Daemon::start_in(&dir, &["--name", name, "--bootstrap", &bootstrap.addr])
        .expect("daemon starts");
    (temp, daemon)
}

#[test]
fn peers_known_only_through_the_bootstrap_node_are_found() {
    let hub = Daemon::start("hub");
    let (_ta, a) = start_joining("alpha", &hub);
    let (_tb, b) = start_joining("beta", &hub);

    // The hub's table fills with both as they join.
    assert!(
        eventually(Duration::from_secs(20), || {
            let table = hub.json(&["dht", "table"]);
            table["size"].as_u64() == Some(2)
        }),
        "the hub's table: {}",
        hub.json(&["dht", "table"])
    );
    let table = hub.json(&["dht", "table"]);
    assert_eq!(table["local"], hub.peer_id.as_str());
    let listed: Vec<&str> = table["buckets"]
        .as_array()
        .expect("buckets")
        .iter()
        .flat_map(|b| b["entries"].as_array().expect("entries").iter())
        .map(|e| e["peer_id"].as_str().expect("peer_id"))
        .collect();
    assert!(listed.contains(&a.peer_id.as_str()), "{table}");
    assert!(listed.contains(&b.peer_id.as_str()), "{table}");

    // Alpha never linked to beta, yet finds beta's address through the DHT.
    let mut found = serde_json::Value::Null;
    assert!(
        eventually(Duration::from_secs(20), || {
            let out = a.cli(&["--json", "dht", "find", &b.peer_id]);
            if !out.status.success() {
                return false;
            }
            found = serde_json::from_str(&out.stdout).expect("json");
            !found["addrs"].as_array().is_none_or(|a| a.is_empty())
        }),
        "alpha could not find beta: {found}"
    );
    assert_eq!(found["peer_id"], b.peer_id.as_str());
    let port = b
        .addr
        .split("/tcp/")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("port");
    assert!(
        found["addrs"]
            .as_array()
            .expect("addrs")
            .iter()
            .any(|addr| addr
                .as_str()
                .is_some_and(|s| s.ends_with(&format!("/tcp/{port}")))),
        "beta's listen address is among those found: {found}"
    );

    // The human form says how far it went.
    let out = a.cli(&["dht", "find", &b.peer_id]);
    assert!(out.status.success(), "{out:?}");
    let text = &out.stdout;
    assert!(text.contains("hop(s)"), "{text}");
}

/// Two daemons linked with `connect` (no bootstrap, no kad exchange yet) put each other
/// in their tables: a connection to a peer that speaks kad makes it a neighbour.
#[test]
fn peers_linked_with_connect_fill_each_others_tables() {
    let a = Daemon::start("alpha");
    let b = Daemon::start("beta");
    a.json(&["connect", &b.addr]);
    for (me, other) in [(&a, &b), (&b, &a)] {
        assert!(
            eventually(Duration::from_secs(20), || {
                let table = me.json(&["dht", "table"]);
                table["size"].as_u64() == Some(1)
                    && table.to_string().contains(other.peer_id.as_str())
            }),
            "{}'s table: {}",
            me.peer_id,
            me.json(&["dht", "table"])
        );
    }
    // And a lookup answers from the table at once.
    let out = a.cli(&["--json", "dht", "find", &b.peer_id]);
    assert!(out.status.success(), "{out:?}");
}
