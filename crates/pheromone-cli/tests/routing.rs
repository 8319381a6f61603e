//! Multi-hop routing through real daemons: a line A – B – C where A and C have no link of
//! their own. A's route table learns C through B; ping, trace and send reach C through B
//! as a relay.

#![allow(clippy::disallowed_methods)] // process tests run on the real clock

mod common;

use common::{eventually, Daemon};
use std::time::Duration;

fn route_to<'a>(routes: &'a serde_json::Value, peer: &str) -> Option<&'a serde_json::Value> {
    routes
        .as_array()
        .expect("routes")
        .iter()
        .find(|r| r["peer_id"] == peer)
}

#[test]
fn a_line_of_three_reaches_the_far_end_through_the_middle() {
    // Without the DHT: on loopback it would find C's address and A would dial it.
    let a = Daemon::start_no_dht("alpha");
    let b = Daemon::start_no_dht("beta");
    let c = Daemon::start_no_dht("gamma");
    a.json(&["connect", &b.addr]);
    b.json(&["connect", &c.addr]);

    // A learns C from B: two hops, next hop B, no direct link.
    assert!(
        eventually(Duration::from_secs(15), || {
            route_to(&a.json(&["routes"]), &c.peer_id).is_some_and(|r| r["hops"] == 2)
        }),
        "A never learned a route to C: {}",
        a.json(&["routes"])
    );
    let routes = a.json(&["routes"]);
    let to_c = route_to(&routes, &c.peer_id).expect("route to C");
    assert_eq!(to_c["next_hop"], b.peer_id.as_str(), "{to_c}");
    assert_eq!(to_c["next_hop_name"], "beta", "{to_c}");
    assert_eq!(to_c["via"], "relay", "{to_c}");
    assert_eq!(to_c["direct"], false, "{to_c}");
    assert_eq!(to_c["metric"], 2, "{to_c}");
    let to_b = route_to(&routes, &b.peer_id).expect("route to B");
    assert_eq!(to_b["direct"], true, "{to_b}");
    assert_eq!(to_b["hops"], 1, "{to_b}");
    assert_eq!(to_b["via"], "direct", "{to_b}");
    let table = a.cli(&["routes"]);
    let row = table
        .stdout
        .lines()
        .find(|l| l.starts_with(&c.peer_id))
        .expect("a row for C");
    assert!(row.contains("relay") && row.contains("beta"), "{table:?}");

    // Ping by peer ID: A has no address for C, so it goes through B.
    let ping = a.cli(&["ping", &c.peer_id, "-c", "2", "-i", "100ms"]);
    assert!(ping.status.success(), "{ping:?}");
    let header = ping.stdout.lines().next().expect("header");
    assert!(header.starts_with("PING "), "{ping:?}");
    assert!(header.contains("via beta over relay, 2 hops"), "{ping:?}");
    assert!(ping.stdout.contains("2 received"), "{ping:?}");
    let json = a
        .cli(&["ping", &c.peer_id, "-c", "1", "--json"])
        .json_lines();
    let summary = json.last().expect("summary");
    assert_eq!(summary["hops"], 2, "{summary}");
    assert_eq!(summary["relay"], b.peer_id.as_str(), "{summary}");

    // The trace names every hop: A → B → C.
    let traced = a.cli(&["ping", &c.peer_id, "-c", "1", "--trace"]);
    assert!(traced.status.success(), "{traced:?}");
    assert!(
        traced.stdout.contains("route: reached in 2 hops"),
        "{traced:?}"
    );
    let hops: Vec<&str> = traced
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("route:"))
        .skip(1)
        .take(3)
        .collect();
    assert!(
        hops[0].contains(&a.peer_id) && hops[0].contains("alpha"),
        "{traced:?}"
    );
    assert!(
        hops[1].contains(&b.peer_id) && hops[1].contains("beta"),
        "{traced:?}"
    );
    assert!(hops[2].contains(&c.peer_id), "{traced:?}");
    let path = traced
        .stdout
        .lines()
        .find(|l| l.starts_with("path: "))
        .expect("path line");
    assert!(path.starts_with("path: alpha → beta → "), "{path}");
    let json = a
        .cli(&["ping", &c.peer_id, "-c", "1", "--trace", "--json"])
        .json_lines();
    let trace = &json[0]["trace"];
    assert_eq!(trace["status"], "reached", "{trace}");
    let ids: Vec<&str> = trace["path"]
        .as_array()
        .expect("path")
        .iter()
        .map(|h| h["peer_id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, [&a.peer_id, &b.peer_id, &c.peer_id]);

    // A message from A reaches C's inbox through B.
    let sent = a.json(&["send", &c.peer_id, "over two hops"]);
    assert_eq!(sent["peer_id"], c.peer_id.as_str(), "{sent}");
    let got = c.cli(&["recv", "--count", "1", "--json"]).json_lines();
    assert_eq!(got[0]["text"], "over two hops", "{got:?}");
    assert_eq!(got[0]["from"], a.peer_id.as_str(), "{got:?}");

    // A's peers list marks the link to C as relayed.
    let peers = a.json(&["peers"]);
    if let Some(p) = peers
        .as_array()
        .expect("peers")
        .iter()
        .find(|p| p["peer_id"] == c.peer_id.as_str())
    {
        assert_eq!(p["relay"], b.peer_id.as_str(), "{p}");
    }
}
