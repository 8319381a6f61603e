//! `up --metrics`, `up --dashboard`, `pheromone dashboard` and `up --log-format json`
//! against real daemons on 127.0.0.1: the metrics text a scraper reads (every family
//! documented in docs/observability.md), the dashboard's token guard and its data and
//! event endpoints, the HTTP server's limits, and JSON log lines.

mod common;

use common::{eventually, Daemon};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One HTTP exchange with a raw socket: the status, the head and the body.
fn http(addr: &str, request: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(request.as_bytes()).expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

fn get(addr: &str, path: &str) -> (u16, String, String) {
    http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
    )
}

/// `http://HOST:PORT/...` → `HOST:PORT`.
fn host_of(url: &str) -> String {
    url.trim_start_matches("http://")
        .split('/')
        .next()
        .expect("host")
        .to_owned()
}

fn banner_value(d: &Daemon, prefix: &str) -> String {
    d.banner
        .iter()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in {:?}", d.banner))
        .to_owned()
}

#[test]
fn metrics_are_served_and_every_family_is_documented() {
    let temp = tempfile::tempdir().expect("tempdir");
    let stranger = "12D3KooWLHGrW43omUigM33tkoY76PreFke8s4oT1jaEF69Ru6Kb";
    let a = Daemon::start_in(
        &temp.path().join("a"),
        &[
            "--name",
            "luda",
            "--metrics",
            "127.0.0.1:0",
            "--allow-exec",
            stranger,
        ],
    )
    .expect("daemon a");
    let b = Daemon::start("yoghurt");
    assert!(a.cli(&["connect", &b.addr]).status.success());
    assert!(a
        .cli(&["ping", "yoghurt", "-c", "2", "-i", "100ms"])
        .status
        .success());
    assert!(a.cli(&["broadcast", "news", "fresh milk"]).status.success());

    let url = banner_value(&a, "metrics: ");
    let addr = host_of(&url);
    let (status, head, body) = get(&addr, "/metrics");
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("application/openmetrics-text"), "{head}");
    assert!(body.ends_with("# EOF\n"));
    let sample = |key: &str| -> f64 {
        body.lines()
            .find_map(|l| l.strip_prefix(key).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no {key} in\n{body}"))
    };
    assert_eq!(
        sample(r#"pheromone_connections{direction="outbound",transport="tcp",path="direct"}"#),
        1.0
    );
    assert!(
        sample(
            r#"pheromone_streams_opened_total{protocol="/ipfs/ping/1.0.0",direction="outbound"}"#
        ) >= 1.0
    );
    assert_eq!(sample("pheromone_broadcast_published_total"), 1.0);
    assert_eq!(sample("pheromone_exec_started_total"), 0.0);
    assert_eq!(sample(r#"pheromone_forward_services{kind="expose"}"#), 0.0);
    // No peer ID is ever a label.
    assert!(!body.contains(&a.peer_id) && !body.contains(&b.peer_id));

    let docs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/observability.md"
    ))
    .expect("docs/observability.md");
    let families: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    assert!(families.len() > 40, "{families:?}");
    for family in families {
        assert!(
            docs.contains(&format!("`{family}")),
            "metric family {family} is not documented in docs/observability.md"
        );
    }
    let (status, _, _) = get(&addr, "/nothing");
    assert_eq!(status, 404);
}

#[test]
fn the_dashboard_needs_its_token_and_serves_data_and_events() {
    let temp = tempfile::tempdir().expect("tempdir");
    let a = Daemon::start_in(
        &temp.path().join("a"),
        &["--name", "luda", "--dashboard", "127.0.0.1:0"],
    )
    .expect("daemon");
    let out = a.cli(&["dashboard"]);
    assert!(out.status.success(), "{}", out.stderr);
    let url = out.stdout.trim().to_owned();
    let token = url.split("token=").nth(1).expect("token in url").to_owned();
    assert_eq!(token.len(), 64);
    let on_disk = std::fs::read_to_string(a.data_dir.join("dashboard.token")).expect("token file");
    assert_eq!(on_disk.trim(), token);
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(a.data_dir.join("dashboard.token"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let json = a.json(&["dashboard"]);
    assert_eq!(json["url"].as_str(), Some(url.as_str()));
    let addr = host_of(&url);

    let (status, _, body) = get(&addr, "/");
    assert_eq!(status, 401);
    assert!(body.contains("needs its token"));
    let (status, _, _) = get(&addr, "/api/snapshot?token=0000");
    assert_eq!(status, 401);
    let (status, head, body) = get(&addr, &format!("/?token={token}"));
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("Content-Security-Policy"), "{head}");
    assert!(body.contains("<script src=\"/app.js\">"));
    let (status, _, body) = get(&addr, "/app.js");
    assert_eq!(status, 200);
    assert!(body.contains("EventSource"));

    // The sampler's first snapshot is taken at start.
    let mut snapshot = serde_json::Value::Null;
    assert!(eventually(Duration::from_secs(10), || {
        let (_, _, body) = get(&addr, &format!("/api/snapshot?token={token}"));
        snapshot = serde_json::from_str(&body).unwrap_or_default();
        snapshot["node"]["peer_id"].as_str() == Some(a.peer_id.as_str())
    }));
    assert_eq!(snapshot["node"]["name"], "luda");
    assert_eq!(snapshot["node"]["reachability"], "unknown");
    assert!(snapshot["peers"].as_array().is_some());

    // A page rebinding its own name to 127.0.0.1 is refused.
    let (status, _, _) = http(
        &addr,
        &format!("GET /?token={token} HTTP/1.1\r\nHost: evil.example:80\r\n\r\n"),
    );
    assert_eq!(status, 403);
    // Limits of the server.
    let (status, _, _) = http(&addr, "POST / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, 405);
    let huge = format!("GET / HTTP/1.1\r\nX-Junk: {}\r\n\r\n", "a".repeat(20_000));
    let (status, _, _) = http(&addr, &huge);
    assert_eq!(status, 413);

    // At most 32 connections at once: idle ones hold their slots (until the 10 s head
    // timeout), the next is told 503 and closed; once they go, requests are served again.
    let idle: Vec<TcpStream> = (0..32)
        .map(|_| TcpStream::connect(&addr).expect("connect"))
        .collect();
    assert!(eventually(Duration::from_secs(10), || get(
        &addr, "/app.js"
    )
    .0 == 503));
    drop(idle);
    assert!(eventually(Duration::from_secs(10), || get(
        &addr, "/app.js"
    )
    .0 == 200));

    // The event stream starts with a snapshot, then pushes activity as it happens.
    let mut s = TcpStream::connect(&addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET /api/events?token={token} HTTP/1.1\r\nHost: {addr}\r\n\r\n"
    )
    .expect("write");
    let b = Daemon::start("yoghurt");
    assert!(a.cli(&["connect", &b.addr]).status.success());
    assert!(a.cli(&["ping", "yoghurt", "-c", "1"]).status.success());
    let mut seen = String::new();
    let mut buf = [0u8; 8192];
    let found = eventually(Duration::from_secs(15), || {
        if let Ok(n) = s.read(&mut buf) {
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        seen.contains("event: snapshot") && seen.contains(r#""kind":"ping""#)
    });
    assert!(found, "{seen}");
    assert!(seen.starts_with("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream"));
}

#[test]
fn http_services_bind_loopback_unless_told() {
    let temp = tempfile::tempdir().expect("tempdir");
    let err = Daemon::start_in(&temp.path().join("a"), &["--metrics", "0.0.0.0:0"])
        .err()
        .expect("refused");
    assert!(err.stderr.contains("--metrics-public"), "{}", err.stderr);
    let err = Daemon::start_in(&temp.path().join("b"), &["--dashboard", "0.0.0.0:0"])
        .err()
        .expect("refused");
    assert!(err.stderr.contains("--dashboard-public"), "{}", err.stderr);
    let d = Daemon::start("nodash");
    let out = d.cli(&["dashboard"]);
    assert!(!out.status.success());
    assert!(
        out.one_line_error().contains("up --dashboard"),
        "{}",
        out.stderr
    );
}

#[test]
fn json_logs_are_one_object_per_line_with_span_fields() {
    let temp = tempfile::tempdir().expect("tempdir");
    let mut d = Daemon::start_in(
        &temp.path().join("a"),
        &["--name", "luda", "--log-format", "json"],
    )
    .expect("daemon");
    d.signal(libc::SIGTERM);
    let (_, stderr) = d.wait_exit(Duration::from_secs(15));
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(!lines.is_empty());
    let listening = lines
        .iter()
        .find(|l| l["fields"]["message"] == "listening on TCP")
        .expect("a listening line");
    assert_eq!(listening["level"], "INFO");
    assert!(listening["fields"]["addr"].as_str().is_some());
    assert_eq!(listening["span"]["name"], "daemon");
    assert_eq!(listening["span"]["node"], "luda");
    assert_eq!(listening["spans"][0]["node"], "luda");
}

#[test]
fn the_grafana_board_uses_only_documented_metrics() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let docs = std::fs::read_to_string(format!("{root}/docs/observability.md")).expect("docs");
    let text =
        std::fs::read_to_string(format!("{root}/contrib/grafana/pheromone.json")).expect("board");
    let board: serde_json::Value = serde_json::from_str(&text).expect("the board is JSON");
    let exprs: Vec<String> = board["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_owned))
        .collect();
    assert!(exprs.len() > 40, "{}", exprs.len());
    let mut used = std::collections::BTreeSet::new();
    for expr in &exprs {
        let mut rest = expr.as_str();
        while let Some(i) = rest.find("pheromone_") {
            let name: String = rest[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[i + name.len()..];
            let family = ["_total", "_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name)
                .to_owned();
            used.insert(family);
        }
    }
    for family in &used {
        assert!(
            docs.contains(&format!("`{family}")),
            "the Grafana board uses {family}, which docs/observability.md does not list"
        );
    }
    assert!(used.len() > 40, "{used:?}");
}
