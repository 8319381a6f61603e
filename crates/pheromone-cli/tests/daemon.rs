//! The `pheromone` daemon and CLI, driven as separate processes: daemons in temp data dirs
//! on 127.0.0.1 port 0, the CLI's `--json` output checked field by field, errors checked
//! to be one line with a non-zero exit.

#![allow(clippy::disallowed_methods)] // process tests run on the real clock

mod common;

use base64::Engine;
use common::{eventually, peer_ids, run, Background, Daemon};
use std::time::{Duration, SystemTime};

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn connect(from: &Daemon, to: &Daemon) -> serde_json::Value {
    let peer = from.json(&["connect", &to.addr]);
    assert_eq!(peer["peer_id"], to.peer_id.as_str(), "{peer}");
    peer
}

fn find<'a>(peers: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    peers
        .as_array()
        .expect("array")
        .iter()
        .find(|p| p["peer_id"] == id)
        .unwrap_or_else(|| panic!("{id} not in {peers}"))
}

#[test]
fn three_daemons_connect_and_report() {
    let started = unix_now();
    let a = Daemon::start("alpha");
    let b = Daemon::start("beta");
    let c = Daemon::start("gamma");
    assert!(a.addr.starts_with("/ip4/127.0.0.1/tcp/"), "{}", a.addr);
    assert!(
        a.addr.ends_with(&format!("/p2p/{}", a.peer_id)),
        "{}",
        a.addr
    );

    let ab = connect(&a, &b);
    assert_eq!(ab["name"], "beta");
    assert_eq!(ab["direction"], "outbound");
    connect(&a, &c);
    connect(&b, &c);
    // Connecting again to a connected peer reuses the link.
    connect(&a, &b);

    for (d, name, peers) in [(&a, "alpha", 2), (&b, "beta", 2), (&c, "gamma", 2)] {
        let status = d.json(&["status"]);
        assert_eq!(status["peer_id"], d.peer_id.as_str(), "{status}");
        assert_eq!(status["name"], name, "{status}");
        assert_eq!(status["mode"], "long", "{status}");
        assert_eq!(status["connections"], peers, "{status}");
        // TCP, and QUIC beside it on the same port number (free on loopback here).
        let port = d.addr.split('/').nth(4).expect("port");
        assert_eq!(
            status["listen_addrs"],
            serde_json::json!([
                d.addr,
                format!("/ip4/127.0.0.1/udp/{port}/quic-v1/p2p/{}", d.peer_id)
            ]),
            "{status}"
        );
        assert!(
            status["uptime_secs"].as_u64().expect("uptime") < 600,
            "{status}"
        );
        assert_eq!(status["inbox_messages"], 0, "{status}");
    }

    let peers = a.json(&["peers"]);
    assert_eq!(peer_ids(&peers), {
        let mut ids = vec![b.peer_id.clone(), c.peer_id.clone()];
        ids.sort();
        ids
    });
    for (other, name) in [(&b, "beta"), (&c, "gamma")] {
        let p = find(&peers, &other.peer_id);
        assert_eq!(p["name"], name, "{p}");
        assert_eq!(p["direction"], "outbound", "{p}");
        // `connect` dialled the TCP address it was given.
        assert_eq!(p["transport"], "tcp", "{p}");
        assert_eq!(
            p["connections"],
            serde_json::json!([{
                "transport": "tcp",
                "direction": "outbound",
                "addr": p["addrs"][0],
            }]),
            "{p}"
        );
        // Two pheromone daemons pick AES-256-GCM where the CPU has it.
        let cipher = if pheromone::cpu_has_fast_aes_gcm() {
            "aes256gcm"
        } else {
            "chacha20poly1305"
        };
        assert_eq!(p["cipher"], cipher, "{p}");
        let port = other.addr.split('/').nth(4).expect("port");
        assert_eq!(
            p["addrs"],
            serde_json::json!([format!("/ip4/127.0.0.1/tcp/{port}")]),
            "{p}"
        );
        let since = p["since"].as_u64().expect("since");
        assert!(since >= started && since <= unix_now(), "{p}");
        assert!(
            p["connected_secs"].as_u64().expect("connected_secs") < 600,
            "{p}"
        );
        assert!(
            p["rtt_ms"].is_null() || p["rtt_ms"].as_f64().is_some(),
            "{p}"
        );
    }
    let on_c = c.json(&["peers"]);
    assert_eq!(find(&on_c, &a.peer_id)["direction"], "inbound");
    assert_eq!(find(&on_c, &a.peer_id)["name"], "alpha");
    assert_eq!(find(&on_c, &b.peer_id)["direction"], "inbound");

    // The keep-alive (1 s here) measures an RTT that peers then shows.
    assert!(eventually(Duration::from_secs(5), || {
        find(&a.json(&["peers"]), &b.peer_id)["rtt_ms"]
            .as_f64()
            .is_some()
    }));

    let routes = a.json(&["routes"]);
    assert_eq!(routes.as_array().expect("routes").len(), 2, "{routes}");
    for route in routes.as_array().expect("routes") {
        assert_eq!(route["via"], "direct", "{route}");
        assert_eq!(route["hops"], 1, "{route}");
    }

    let human = a.cli(&["peers"]);
    assert!(human.status.success());
    assert!(
        human.stdout.contains("beta")
            && human.stdout.contains(&c.peer_id)
            && human.stdout.contains("CIPHER"),
        "{human:?}"
    );

    let gone = a.json(&["disconnect", "gamma"]);
    assert_eq!(gone["peer_id"], c.peer_id.as_str());
    assert!(eventually(Duration::from_secs(5), || {
        peer_ids(&a.json(&["peers"])) == vec![b.peer_id.clone()]
    }));
}

#[test]
fn ping_send_recv_and_perf() {
    let a = Daemon::start("alpha");
    let b = Daemon::start("beta");
    connect(&a, &b);

    let ping = a.cli(&["ping", "beta", "-c", "3", "-i", "100ms"]);
    assert!(ping.status.success(), "{ping:?}");
    let lines: Vec<&str> = ping.stdout.lines().collect();
    assert!(lines[0].starts_with("PING beta ("), "{}", ping.stdout);
    let pongs = lines
        .iter()
        .filter(|l| l.contains("bytes from beta"))
        .count();
    assert_eq!(pongs, 3, "{}", ping.stdout);
    for seq in 1..=3 {
        assert!(
            ping.stdout.contains(&format!("seq={seq} time=")),
            "{}",
            ping.stdout
        );
    }
    assert!(
        ping.stdout
            .contains("3 packets transmitted, 3 received, 0% packet loss"),
        "{}",
        ping.stdout
    );
    assert!(
        ping.stdout.contains("rtt min/avg/max/mdev = "),
        "{}",
        ping.stdout
    );

    // By peer ID and by /p2p/ multiaddr too, with JSON lines.
    let json = a
        .cli(&["ping", &b.peer_id, "-c", "2", "-i", "10ms", "--json"])
        .json_lines();
    assert_eq!(json.len(), 3, "{json:?}");
    assert_eq!(json[0]["seq"], 1);
    assert!(json[0]["rtt_ms"].as_f64().expect("rtt") > 0.0);
    assert_eq!(json[2]["received"], 2);
    assert_eq!(json[2]["peer_id"], b.peer_id.as_str());
    let by_addr = a.cli(&["ping", &b.addr, "-c", "1"]);
    assert!(by_addr.status.success(), "{by_addr:?}");

    // A text, stored in B's inbox before anyone reads it.
    let sent = a.json(&["send", "beta", "hello, beta"]);
    assert_eq!(sent["peer_id"], b.peer_id.as_str());
    assert_eq!(sent["bytes"], 11);
    assert_eq!(b.json(&["status"])["inbox_messages"], 1);
    let got = b.cli(&["recv", "--count", "1", "--json"]).json_lines();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["from"], a.peer_id.as_str());
    assert_eq!(got[0]["from_name"], "alpha");
    assert_eq!(got[0]["bytes"], 11);
    assert_eq!(got[0]["text"], "hello, beta");

    // A 1 MiB binary file to a `recv` already waiting, byte-exact.
    let waiting = Background::start(&b.data_dir, &["recv", "--count", "1", "--json"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("blob.bin");
    let blob: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&file, &blob).expect("write blob");
    let file_arg = file.to_str().expect("utf-8 path");
    let sent = a.json(&["send", &b.peer_id, "--file", file_arg]);
    assert_eq!(sent["bytes"], 1 << 20);
    let got = waiting.finish().json_lines();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["bytes"], 1 << 20);
    assert!(got[0].get("text").is_none(), "binary data has no text");
    let data = base64::engine::general_purpose::STANDARD
        .decode(got[0]["data"].as_str().expect("data"))
        .expect("base64");
    assert!(data == blob, "1 MiB file arrived changed");

    // Human recv output.
    a.json(&["send", "beta", "plain"]);
    let human = b.cli(&["recv", "--count", "1"]);
    assert!(human.status.success(), "{human:?}");
    assert!(human.stdout.contains("from alpha ("), "{}", human.stdout);
    assert!(
        human.stdout.trim_end().ends_with("5 bytes: plain"),
        "{}",
        human.stdout
    );

    // Throughput, both ways.
    let perf = a
        .cli(&["perf", "beta", "--bytes", "2M", "--json"])
        .json_lines();
    let summary = perf.last().expect("summary");
    assert_eq!(summary["peer_id"], b.peer_id.as_str());
    assert_eq!(summary["upload"]["bytes"], 2 << 20);
    assert_eq!(summary["download"]["bytes"], 2 << 20);
    assert!(summary["upload"]["bits_per_sec"].as_f64().expect("rate") > 0.0);
    let intervals: u64 = perf[..perf.len() - 1]
        .iter()
        .filter(|i| i["direction"] == "upload")
        .map(|i| i["bytes"].as_u64().expect("bytes"))
        .sum();
    assert_eq!(intervals, 2 << 20, "intervals add up to the upload");
    let human = a.cli(&["perf", "beta", "--duration", "300ms"]);
    assert!(human.status.success(), "{human:?}");
    assert!(human.stdout.contains("[ ID] Interval"), "{}", human.stdout);
    assert!(
        human.stdout.contains("bits/sec  upload"),
        "{}",
        human.stdout
    );
    assert!(
        human.stdout.contains("bits/sec  download"),
        "{}",
        human.stdout
    );
}

#[test]
fn errors_are_one_line() {
    let a = Daemon::start("alpha");
    let b = Daemon::start("beta");
    let c = Daemon::start("gamma");

    // A closed port: bind one, note it, free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let refused = a.cli(&["connect", &format!("/ip4/127.0.0.1/tcp/{port}")]);
    let line = refused.one_line_error();
    assert!(line.starts_with("pheromone: "), "{line}");
    assert!(line.contains("connection refused"), "{line}");

    // B's address with C's peer ID.
    let wrong = b.addr.replace(&b.peer_id, &c.peer_id);
    let line = a.cli(&["connect", &wrong]).one_line_error();
    assert!(line.contains("wrong peer"), "{line}");
    assert!(
        line.contains(&c.peer_id) && line.contains(&b.peer_id),
        "{line}"
    );
    assert_eq!(a.json(&["status"])["connections"], 0);

    let line = a.cli(&["ping", "nobody", "-c", "1"]).one_line_error();
    assert!(line.contains("unknown peer \"nobody\""), "{line}");
    let line = a.cli(&["send", &b.peer_id, "hi"]).one_line_error();
    assert!(line.contains("not connected"), "{line}");

    // Two peers with one name: the name is ambiguous and the error lists both.
    let twin1 = Daemon::start("twin");
    let twin2 = Daemon::start("twin");
    connect(&a, &twin1);
    connect(&a, &twin2);
    let line = a.cli(&["ping", "twin", "-c", "1"]).one_line_error();
    assert!(line.contains("ambiguous"), "{line}");
    assert!(
        line.contains(&twin1.peer_id) && line.contains(&twin2.peer_id),
        "{line}"
    );

    let line = a.cli(&["broadcast", "", "hi"]).one_line_error();
    assert!(line.contains("topic"), "{line}");

    let nowhere = tempfile::tempdir().expect("tempdir");
    let line = run(nowhere.path(), &["status"]).one_line_error();
    assert!(line.contains("no pheromone daemon is running"), "{line}");
    assert!(line.contains("pheromone up --data-dir"), "{line}");
}

#[test]
fn one_daemon_per_data_dir_and_clean_exit() {
    let mut a = Daemon::start("alpha");
    let second = Daemon::start_in(&a.data_dir, &[])
        .err()
        .expect("second up refused");
    assert!(!second.status.success());
    assert!(
        second.stderr.contains("already running"),
        "{}",
        second.stderr
    );
    assert_eq!(
        a.json(&["status"])["peer_id"],
        a.peer_id.as_str(),
        "first still serves"
    );

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(a.socket())
            .expect("socket")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    a.signal(libc::SIGTERM);
    let (status, stderr) = a.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(!a.socket().exists(), "socket removed");

    // A daemon killed outright leaves its socket behind; the next start removes it.
    let mut again = Daemon::start_in(&a.data_dir, &[]).expect("restart");
    assert_eq!(again.peer_id, a.peer_id, "same identity");
    again.signal(libc::SIGKILL);
    again.wait_exit(Duration::from_secs(10));
    assert!(again.socket().exists(), "stale socket left by SIGKILL");
    let third = Daemon::start_in(&a.data_dir, &[]).expect("start over a stale socket");
    assert_eq!(third.json(&["status"])["peer_id"], a.peer_id.as_str());
}

#[test]
fn dead_peers_leave_the_peer_list() {
    let a = Daemon::start("alpha");
    let b = Daemon::start("beta");
    let mut killed = Daemon::start("killed");
    let mut frozen = Daemon::start("frozen");
    for d in [&b, &killed, &frozen] {
        connect(&a, d);
    }
    connect(&b, &killed);
    assert_eq!(a.json(&["status"])["connections"], 3);

    // SIGKILL: the kernel closes its sockets, and the others notice within the keep-alive
    // timeout (2 s here).
    killed.signal(libc::SIGKILL);
    killed.wait_exit(Duration::from_secs(10));
    for d in [&a, &b] {
        assert!(
            eventually(Duration::from_secs(2), || {
                !peer_ids(&d.json(&["peers"])).contains(&killed.peer_id)
            }),
            "killed peer still listed"
        );
    }

    // SIGSTOP: the sockets stay open but nothing answers; the keep-alive (1 s ping, 2 s
    // timeout) must drop it.
    frozen.signal(libc::SIGSTOP);
    let dropped = eventually(Duration::from_secs(6), || {
        !peer_ids(&a.json(&["peers"])).contains(&frozen.peer_id)
    });
    frozen.signal(libc::SIGKILL);
    frozen.wait_exit(Duration::from_secs(10));
    assert!(dropped, "silent peer not dropped by the keep-alive");
    assert_eq!(peer_ids(&a.json(&["peers"])), vec![b.peer_id.clone()]);
}

#[test]
fn id_works_without_a_daemon() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("fresh");
    let first = run(&data, &["id"]);
    assert!(first.status.success(), "{first:?}");
    let id = first.stdout.trim().to_owned();
    assert!(id.starts_with("12D3KooW"), "{id}");
    assert_eq!(run(&data, &["id", "--json"]).json()["peer_id"], id.as_str());
    let d = Daemon::start_in(&data, &[]).expect("daemon on the same identity");
    assert_eq!(d.peer_id, id);
}

#[test]
fn config_file_mirrors_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("pheromone.toml");
    std::fs::write(&config, "name = \"fromfile\"\nmode = \"short\"\n").expect("write");
    let config_arg = config.to_str().expect("utf-8");
    let d = Daemon::start_in(&dir.path().join("node"), &["--config", config_arg])
        .expect("daemon with config");
    let status = d.json(&["status"]);
    assert_eq!(status["name"], "fromfile");
    assert_eq!(status["mode"], "short");
    drop(d);

    let flag_wins = Daemon::start_in(
        &dir.path().join("node2"),
        &["--config", config_arg, "--name", "flag"],
    )
    .expect("daemon");
    assert_eq!(flag_wins.json(&["status"])["name"], "flag");
    drop(flag_wins);

    std::fs::write(
        &config,
        "name = \"x\"\nlisten_adress = [\"/ip4/127.0.0.1/tcp/0\"]\n",
    )
    .expect("write");
    let bad = Daemon::start_in(&dir.path().join("node3"), &["--config", config_arg])
        .err()
        .expect("unknown key refused");
    let line = bad.one_line_error();
    assert!(line.contains("listen_adress"), "{line}");
}

#[test]
fn a_full_inbox_refuses_senders() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("small.toml");
    std::fs::write(&config, "inbox_max_messages = 1\n").expect("write");
    let small = Daemon::start_in(
        &dir.path().join("small"),
        &[
            "--config",
            config.to_str().expect("utf-8"),
            "--name",
            "small",
        ],
    )
    .expect("daemon");
    let a = Daemon::start("alpha");
    connect(&a, &small);
    a.json(&["send", "small", "first"]);
    let line = a.cli(&["send", "small", "second"]).one_line_error();
    assert!(line.contains("inbox is full"), "{line}");
    let got = small.cli(&["recv", "--count", "1", "--json"]).json_lines();
    assert_eq!(got[0]["text"], "first", "the stored message is kept");
    a.json(&["send", "small", "third"]);
}

#[test]
fn bootstrap_peers_are_dialled_at_start() {
    let a = Daemon::start("alpha");
    let dir = tempfile::tempdir().expect("tempdir");
    let b = Daemon::start_in(
        &dir.path().join("b"),
        &["--name", "beta", "--bootstrap", &a.addr],
    )
    .expect("daemon");
    assert!(eventually(Duration::from_secs(10), || {
        peer_ids(&a.json(&["peers"])) == vec![b.peer_id.clone()]
    }));
    let on_b = b.json(&["peers"]);
    assert_eq!(find(&on_b, &a.peer_id)["direction"], "outbound");
}
