//! The daemon over several links, driven as separate processes: topic broadcast across a
//! relay, bootstrap peers redialled after a restart, and what short mode changes.

#![allow(clippy::disallowed_methods)] // process tests run on the real clock

mod common;

use base64::Engine;
use common::{eventually, peer_ids, Background, Daemon};
use std::collections::HashMap;
use std::time::Duration;

fn connect(from: &Daemon, to: &Daemon) {
    let peer = from.json(&["connect", &to.addr]);
    assert_eq!(peer["peer_id"], to.peer_id.as_str(), "{peer}");
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

#[test]
fn broadcast_reaches_a_subscriber_two_hops_away_exactly_once() {
    // A line A – B – C: B relays without subscribing.
    let a = Daemon::start("alpha");
    let b = Daemon::start("beta");
    let c = Daemon::start("gamma");
    connect(&a, &b);
    connect(&b, &c);

    let mut everything = Background::start(&c.data_dir, &["subscribe", "news", "--json"]);
    let mut first = Background::start(&c.data_dir, &["subscribe", "news", "--count", "1"]);
    assert!(
        eventually(Duration::from_secs(10), || first
            .stderr()
            .contains("subscribed to news")),
        "subscription not confirmed: {}",
        first.stderr()
    );

    // Interest spreads from C toward A through B; a message published before it arrives
    // reaches nobody, so publish distinct texts until the first subscriber has one.
    let mut published = Vec::new();
    for i in 0..40 {
        if !first.is_running() {
            break;
        }
        let text = format!("hello {i}");
        let reply = a.json(&["broadcast", "news", &text]);
        assert_eq!(reply["topic"], "news", "{reply}");
        assert_eq!(reply["bytes"], text.len(), "{reply}");
        let id = reply["message_id"].as_str().expect("message_id");
        assert_eq!(id.len(), 32, "{reply}");
        assert!(id.chars().all(|ch| ch.is_ascii_hexdigit()), "{reply}");
        published.push(text);
        std::thread::sleep(Duration::from_millis(300));
    }
    let first = first.finish();
    assert!(first.status.success(), "{first:?}");
    let lines: Vec<&str> = first.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "--count 1 prints one message: {first:?}");
    // C has no link to A, so it knows A by peer ID only (names travel in identify).
    assert!(
        lines[0].starts_with(&format!("[news] from {}, ", a.peer_id))
            && lines[0].contains("2 hops: hello "),
        "{first:?}"
    );
    let text = lines[0].rsplit(": ").next().expect("text");
    assert!(published.iter().any(|p| p == text), "{text}");

    // Once interest is in place, one more message reaches C once and only once.
    let reply = a.json(&["broadcast", "news", "final"]);
    let final_id = reply["message_id"].as_str().expect("id").to_owned();
    assert!(
        eventually(Duration::from_secs(10), || everything
            .stdout()
            .contains("\"text\":\"final\"")),
        "final message not delivered: {}",
        everything.stdout()
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(everything.is_running());
    let seen = json_lines(&everything.kill().stdout);
    let mut copies: HashMap<String, usize> = HashMap::new();
    for m in &seen {
        *copies
            .entry(m["message_id"].as_str().expect("id").to_owned())
            .or_default() += 1;
        assert_eq!(m["topic"], "news", "{m}");
        assert_eq!(m["from"], a.peer_id.as_str(), "{m}");
        assert!(m["from_name"].is_null(), "{m}");
        assert_eq!(m["hops"], 2, "{m}");
        let text = m["text"].as_str().expect("text");
        assert!(
            text == "final" || published.iter().any(|p| p == text),
            "{m}"
        );
        assert_eq!(m["bytes"], text.len(), "{m}");
        let data = base64::engine::general_purpose::STANDARD
            .decode(m["data"].as_str().expect("data"))
            .expect("base64");
        assert_eq!(data, text.as_bytes());
    }
    assert_eq!(copies.get(&final_id), Some(&1), "{seen:?}");
    assert!(copies.values().all(|&n| n == 1), "a duplicate: {seen:?}");

    // The publisher and the relay do not deliver to themselves: nothing to receive there.
    let line = a.cli(&["broadcast", "", "x"]).one_line_error();
    assert!(line.contains("topic"), "{line}");
}

#[test]
fn bootstrap_peer_is_redialled_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a_dir = dir.path().join("a");
    let mut a = Daemon::start_in(&a_dir, &["--name", "alpha"]).expect("alpha");
    let port = a.addr.split('/').nth(4).expect("port").to_owned();
    let b = Daemon::start_in(
        &dir.path().join("b"),
        &["--name", "beta", "--bootstrap", &a.addr],
    )
    .expect("beta");
    assert!(eventually(Duration::from_secs(10), || {
        peer_ids(&b.json(&["peers"])) == vec![a.peer_id.clone()]
    }));

    a.signal(libc::SIGKILL);
    a.wait_exit(Duration::from_secs(10));
    assert!(
        eventually(Duration::from_secs(5), || b
            .json(&["peers"])
            .as_array()
            .expect("peers")
            .is_empty()),
        "the killed bootstrap peer is still listed"
    );
    // Let a few redials fail before it comes back.
    std::thread::sleep(Duration::from_secs(2));

    let listen = format!("/ip4/127.0.0.1/tcp/{port}");
    let again = Daemon::start_in(&a_dir, &["--name", "alpha", "--listen", &listen])
        .expect("alpha again, same port");
    assert_eq!(again.peer_id, a.peer_id);
    assert!(
        eventually(Duration::from_secs(20), || {
            peer_ids(&b.json(&["peers"])) == vec![a.peer_id.clone()]
        }),
        "beta did not redial its bootstrap peer"
    );
    let peers = b.json(&["peers"]);
    assert_eq!(peers[0]["direction"], "outbound", "{peers}");
    assert_eq!(peers[0]["name"], "alpha", "{peers}");

    // A peer the operator disconnects stays disconnected.
    b.json(&["disconnect", "alpha"]);
    std::thread::sleep(Duration::from_secs(3));
    assert!(b.json(&["peers"]).as_array().expect("peers").is_empty());
}

#[test]
fn short_mode_dials_a_link_per_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = Daemon::start_in(
        &dir.path().join("a"),
        &["--name", "alpha", "--mode", "short"],
    )
    .expect("alpha");
    let b = Daemon::start_in(
        &dir.path().join("b"),
        &["--name", "beta", "--mode", "short"],
    )
    .expect("beta");

    // Connecting reaches and identifies the peer, then lets the link go.
    let reached = a.json(&["connect", &b.addr]);
    assert_eq!(reached["peer_id"], b.peer_id.as_str(), "{reached}");
    assert_eq!(reached["name"], "beta", "{reached}");
    assert_eq!(reached["connections"], serde_json::json!([]), "{reached}");
    let quiet =
        || a.json(&["status"])["connections"] == 0 && b.json(&["status"])["connections"] == 0;
    assert!(eventually(Duration::from_secs(5), quiet), "links left open");
    let routes = a.json(&["routes"]);
    assert_eq!(routes[0]["peer_id"], b.peer_id.as_str(), "{routes}");
    assert_eq!(routes[0]["name"], "beta", "{routes}");
    assert_eq!(routes[0]["via"], "dial", "{routes}");

    // Each message dials its own link by the name identify taught, and closes it.
    for text in ["one", "two"] {
        let sent = a.json(&["send", "beta", text]);
        assert_eq!(sent["peer_id"], b.peer_id.as_str(), "{sent}");
        assert!(eventually(Duration::from_secs(5), quiet), "links left open");
    }
    let got = b.cli(&["recv", "--count", "2", "--json"]).json_lines();
    let texts: Vec<&str> = got
        .iter()
        .map(|m| m["text"].as_str().expect("text"))
        .collect();
    assert_eq!(texts, ["one", "two"]);
    assert_eq!(got[0]["from"], a.peer_id.as_str());

    let ping = a.cli(&["ping", "beta", "-c", "2", "-i", "50ms"]);
    assert!(ping.status.success(), "{ping:?}");
    assert!(ping.stdout.contains("2 received"), "{ping:?}");
    assert!(
        eventually(Duration::from_secs(5), quiet),
        "ping link left open"
    );
}
