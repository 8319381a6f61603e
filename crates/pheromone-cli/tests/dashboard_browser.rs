//! The dashboard in a real browser: Debian's chromium, driven by Playwright
//! (`tests/browser/dashboard.mjs`), against three `pheromone up` processes on 127.0.0.1.
//! The page loads with the token and refuses without it; the peers table lists the hub's
//! two peers; the mesh graph shows three nodes and their links; a ping and a broadcast
//! show up live without a reload; a screenshot of each page lands in
//! `target/ci-artifacts/`. On an edge node whose direct link to the third is cut, the
//! graph shows that node reached through the hub, 2 hops away, and the route change.
//!
//! Needs /usr/bin/chromium, node, and `npm ci` in `tests/browser`; without them the test
//! prints `SKIP:` and passes, unless `PHEROMONE_CI=1`, where it fails.

#![allow(clippy::disallowed_methods)] // the browser run is bounded on the real clock

mod common;

use common::{eventually, Daemon};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The whole browser run (chromium start, every check, eight screenshots).
const BROWSER_LIMIT: Duration = Duration::from_secs(180);

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Why the browser test cannot run here, if it cannot.
fn missing_tools() -> Option<String> {
    if !Path::new("/usr/bin/chromium").exists() {
        return Some("/usr/bin/chromium is not installed (apt-get install chromium)".into());
    }
    let node = Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        return Some("node is not installed".into());
    }
    if !browser_dir().join("node_modules/playwright-core").exists() {
        return Some(
            "playwright-core is not installed (npm ci in crates/pheromone-cli/tests/browser)"
                .into(),
        );
    }
    None
}

#[test]
fn the_dashboard_in_chromium() {
    if let Some(why) = missing_tools() {
        if std::env::var("PHEROMONE_CI").as_deref() == Ok("1") {
            panic!("PHEROMONE_CI=1 and the browser test cannot run: {why}");
        }
        eprintln!("SKIP: dashboard browser test: {why}");
        return;
    }
    let temp = tempfile::tempdir().expect("tempdir");
    let hub = Daemon::start_in(
        &temp.path().join("beta"),
        &["--name", "beta", "--dashboard", "127.0.0.1:0"],
    )
    .expect("hub daemon");
    // alpha shows its own dashboard too: gamma seen through the hub, once their direct
    // link is gone.
    let alpha = Daemon::start_in(
        &temp.path().join("alpha"),
        &[
            "--name",
            "alpha",
            "--bootstrap",
            &hub.addr,
            "--dashboard",
            "127.0.0.1:0",
        ],
    )
    .expect("alpha");
    // gamma lets the hub run commands, so the hub's exec runs show on its page.
    let gamma = Daemon::start_in(
        &temp.path().join("gamma"),
        &[
            "--name",
            "gamma",
            "--bootstrap",
            &hub.addr,
            "--allow-exec",
            &hub.peer_id,
        ],
    )
    .expect("gamma");
    // Both peers linked to the hub and identified by name.
    assert!(
        eventually(Duration::from_secs(20), || {
            let peers = hub.json(&["peers"]);
            let names: Vec<&str> = peers
                .as_array()
                .map(|a| a.iter().filter_map(|p| p["name"].as_str()).collect())
                .unwrap_or_default();
            names.contains(&"alpha") && names.contains(&"gamma")
        }),
        "the hub never saw both peers"
    );
    // Something for the services and traffic pages: an exposed service, an exec run, a
    // throughput run.
    let service = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let target = service.local_addr().expect("addr").to_string();
    let out = hub.cli(&["expose", "web", "--target", &target, "--allow-any"]);
    assert!(out.status.success(), "{}", out.stderr);
    let out = hub.cli(&["alias", "gamma", &gamma.peer_id]);
    assert!(out.status.success(), "{}", out.stderr);
    let out = hub.cli(&["exec", "gamma", "--", "true"]);
    assert!(out.status.success(), "{}", out.stderr);
    let out = hub.cli(&["perf", "alpha", "--bytes", "4MiB"]);
    assert!(out.status.success(), "{}", out.stderr);

    let out = hub.cli(&["dashboard"]);
    assert!(out.status.success(), "{}", out.stderr);
    let url = out.stdout.trim().to_owned();
    let out = alpha.cli(&["dashboard"]);
    assert!(out.status.success(), "{}", out.stderr);
    let alpha_url = out.stdout.trim().to_owned();

    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/ci-artifacts");
    let mut child = Command::new("node")
        .arg("dashboard.mjs")
        .current_dir(browser_dir())
        .env("DASH_URL", &url)
        .env("PHEROMONE", common::BIN)
        .env("HUB_DIR", &hub.data_dir)
        .env("PEERS", "alpha,gamma")
        .env("EDGE_URL", &alpha_url)
        .env("EDGE_DIR", &alpha.data_dir)
        .env("EDGE_VIA", "beta")
        .env("EDGE_FAR", "gamma")
        .env("SHOTS", &shots)
        .env("PROFILE", temp.path().join("chromium-profile"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn node");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait node") {
            break status;
        }
        if started.elapsed() > BROWSER_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the browser run took longer than {BROWSER_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = child.wait_with_output().expect("node output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        status.success(),
        "browser checks failed:\n{stdout}\n{stderr}"
    );
    for page in [
        "node",
        "peers",
        "mesh",
        "traffic",
        "broadcast",
        "dht",
        "services",
        "mesh-relayed",
    ] {
        let shot = shots.join(format!("dashboard-{page}.png"));
        let len = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
        assert!(len > 10_000, "{} missing or empty", shot.display());
    }
    drop((alpha, gamma));
}
