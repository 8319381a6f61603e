//! The dashboard: a token-guarded web page served by the daemon, fed by a sampler that
//! reads the daemon's own views (status, peers, routes, forwards, the DHT table — the same
//! data the control API answers with) once a second and pushes each snapshot, and every
//! [`Activity`](super::activity::Activity) event as it happens, to open pages over
//! server-sent events.
//!
//! The page's HTML, CSS and JavaScript are compiled into the binary; nothing is loaded
//! from anywhere else. Every data path needs the token (a random 32-byte hex string kept
//! in the data dir, mode 0600); the static assets do not (they hold no data).

use super::activity::{short_id, ActivityEvent};
use super::http::{Request, Response};
use crate::control_proto::{DhtTable, RouteInfo};
use crate::daemon::net::Net;
use crate::daemon::remote;
use anyhow::{Context, Result};
use serde::Serialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// File name of the dashboard token inside the data dir.
pub const TOKEN_NAME: &str = "dashboard.token";
/// How often the sampler takes a snapshot.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// How often the sampler reads the DHT table (a round trip to the DHT task).
const DHT_EVERY: Duration = Duration::from_secs(5);
/// Events queued for one page before it is dropped as too slow.
const PAGE_QUEUE: usize = 64;
/// Traffic samples kept for a page that opens later (five minutes at one a second).
const HISTORY: usize = 300;
/// Peers kept per traffic sample (the busiest), so the history stays small.
const HISTORY_PEERS: usize = 32;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");
const FAVICON_SVG: &str = include_str!("assets/favicon.svg");

/// Reads the token from the data dir, or makes one (mode 0600) if there is none.
pub fn load_or_create_token(data_dir: &Path) -> Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join(TOKEN_NAME);
    match std::fs::read_to_string(&path) {
        Ok(text) if valid_token(text.trim()) => return Ok(text.trim().to_owned()),
        Ok(_) => tracing::warn!(path = %path.display(), "replacing a malformed dashboard token"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let bytes: [u8; 32] = rand::random();
    let token = crate::daemon::net::hex(&bytes);
    let _ = std::fs::remove_file(&path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    writeln!(file, "{token}").with_context(|| format!("cannot write {}", path.display()))?;
    Ok(token)
}

fn valid_token(t: &str) -> bool {
    t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Compares without leaking where the first difference is.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The running dashboard's shared state.
pub struct Dashboard {
    net: Net,
    token: String,
    /// The bound address, to refuse requests naming another host (DNS rebinding).
    local: SocketAddr,
    snapshots: watch::Receiver<Arc<String>>,
    /// Byte counters per peer and protocol, one sample a second, oldest first.
    history: Arc<std::sync::Mutex<std::collections::VecDeque<TrafficSample>>>,
}

/// Bytes (in + out) per peer and per protocol at one moment, for the traffic charts.
#[derive(Serialize, Clone)]
struct TrafficSample {
    at: u64,
    peers: HashMap<String, u64>,
    protocols: HashMap<String, u64>,
}

/// Starts the sampler; the returned dashboard answers requests.
pub fn start(
    net: Net,
    token: String,
    local: SocketAddr,
    cancel: CancellationToken,
    tasks: &tokio_util::task::TaskTracker,
) -> Arc<Dashboard> {
    let (tx, rx) = watch::channel(Arc::new(String::from("{}")));
    let history = Arc::new(std::sync::Mutex::new(std::collections::VecDeque::new()));
    tasks.spawn(sample(net.clone(), tx, history.clone(), cancel));
    Arc::new(Dashboard {
        net,
        token,
        local,
        snapshots: rx,
        history,
    })
}

impl Dashboard {
    /// Answers one request.
    pub async fn handle(self: Arc<Self>, req: Request) -> Response {
        match req.path.as_str() {
            "/app.js" => return Response::body("text/javascript; charset=utf-8", APP_JS),
            "/style.css" => return Response::body("text/css; charset=utf-8", STYLE_CSS),
            "/favicon.svg" | "/favicon.ico" => return Response::body("image/svg+xml", FAVICON_SVG),
            _ => {}
        }
        if !self.host_ok(req.host.as_deref()) {
            return Response::text(403, "wrong Host header\n");
        }
        let authorized = req.param("token").is_some_and(|t| same(t, &self.token));
        match (req.path.as_str(), authorized) {
            ("/" | "/index.html", true) => Response::body("text/html; charset=utf-8", INDEX_HTML),
            ("/" | "/index.html", false) => Response::Full {
                status: 401,
                content_type: "text/html; charset=utf-8",
                body: UNAUTHORIZED.as_bytes().to_vec(),
                headers: Vec::new(),
            },
            ("/api/snapshot", true) => Response::body(
                "application/json",
                self.snapshots.borrow().as_bytes().to_vec(),
            ),
            ("/api/events", true) => Response::Events(self.events()),
            (p, false) if p.starts_with("/api/") => {
                Response::text(401, "a valid token is needed: run `pheromone dashboard`\n")
            }
            _ => Response::text(404, "not found\n"),
        }
    }

    /// On a loopback address, only loopback host names: a page on another site that
    /// rebinds its name to 127.0.0.1 cannot read the dashboard (it lacks the token too).
    fn host_ok(&self, host: Option<&str>) -> bool {
        if !self.local.ip().is_loopback() {
            return true;
        }
        let Some(host) = host else { return true };
        let name = match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        };
        let name = name.trim_start_matches('[').trim_end_matches(']');
        name.eq_ignore_ascii_case("localhost")
            || name
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// A page's live stream: the current snapshot, the recent activity, then each new
    /// snapshot and event.
    fn events(&self) -> mpsc::Receiver<String> {
        let (tx, rx) = mpsc::channel(PAGE_QUEUE);
        let mut snapshots = self.snapshots.clone();
        let mut activity = self.net.activity().subscribe();
        let recent = self.net.activity().recent();
        let history: Vec<TrafficSample> = self
            .history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect();
        tokio::spawn(async move {
            let history = serde_json::to_string(&history).unwrap_or_else(|_| "[]".to_owned());
            if tx.send(sse("history", &history)).await.is_err() {
                return;
            }
            let first = snapshots.borrow_and_update().clone();
            if tx.send(sse("snapshot", &first)).await.is_err() {
                return;
            }
            for event in recent {
                if tx.try_send(activity_sse(&event)).is_err() {
                    break;
                }
            }
            loop {
                let line = tokio::select! {
                    changed = snapshots.changed() => match changed {
                        Ok(()) => sse("snapshot", &snapshots.borrow_and_update().clone()),
                        Err(_) => return,
                    },
                    event = activity.recv() => match event {
                        Ok(event) => activity_sse(&event),
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(_) => return,
                    },
                    () = tx.closed() => return,
                };
                // A page that does not keep up is dropped; it reconnects and starts over.
                if tx.try_send(line).is_err() {
                    return;
                }
            }
        });
        rx
    }
}

fn sse(event: &str, data: &str) -> String {
    // JSON has no raw newlines, so the data is one `data:` line.
    format!("event: {event}\ndata: {data}\n\n")
}

fn activity_sse(event: &ActivityEvent) -> String {
    sse(
        "activity",
        &serde_json::to_string(event).unwrap_or_else(|_| "{}".to_owned()),
    )
}

const UNAUTHORIZED: &str = "<!doctype html><html><head><meta charset=\"utf-8\">\
<title>pheromone: token needed</title><link rel=\"stylesheet\" href=\"/style.css\"></head>\
<body class=\"refused\"><main><h1>This dashboard needs its token</h1>\
<p>Run <code>pheromone dashboard</code> on the machine of the daemon and open the URL it \
prints.</p></main></body></html>";

/// One peer as the dashboard shows it: what `peers` says plus the link's counters.
#[derive(Serialize)]
struct PeerRow {
    #[serde(flatten)]
    info: crate::control_proto::PeerInfo,
    transport: &'static str,
    path: &'static str,
    relay_name: Option<String>,
    bytes_in: u64,
    bytes_out: u64,
    streams: usize,
}

#[derive(Serialize)]
struct Snapshot {
    at_ms: u64,
    node: NodeView,
    peers: Vec<PeerRow>,
    routes: Vec<RouteInfo>,
    protocols: Vec<ProtocolRow>,
    broadcast: BroadcastView,
    dht: Option<DhtTable>,
    forwards: crate::control_proto::ForwardList,
    exec: ExecView,
    relay: Option<RelayView>,
}

#[derive(Serialize)]
struct NodeView {
    #[serde(flatten)]
    status: crate::control_proto::Status,
    reachability: &'static str,
    protocols: Vec<String>,
    route_changes: u64,
}

#[derive(Serialize)]
struct ProtocolRow {
    protocol: String,
    streams_inbound: u64,
    streams_outbound: u64,
    bytes_in: u64,
    bytes_out: u64,
    requests_ok: u64,
    requests_failed: u64,
}

#[derive(Serialize, Default)]
struct BroadcastView {
    published: u64,
    delivered: u64,
    duplicates: u64,
    gossip_received: u64,
    gossip_sent: u64,
    dropped: HashMap<&'static str, u64>,
    topics: Vec<super::activity::TopicTally>,
}

#[derive(Serialize)]
struct ExecView {
    enabled: bool,
    allowed: usize,
    shell: bool,
    running: u64,
    started: u64,
    rejected: u64,
    timed_out: u64,
}

#[derive(Serialize)]
struct RelayView {
    active_circuits: usize,
    circuits_relayed: u64,
    circuits_refused: u64,
    bytes_relayed: u64,
}

/// Takes a snapshot every [`SAMPLE_EVERY`] and notes route changes as activity.
async fn sample(
    net: Net,
    tx: watch::Sender<Arc<String>>,
    history: Arc<std::sync::Mutex<std::collections::VecDeque<TrafficSample>>>,
    cancel: CancellationToken,
) {
    let metrics = net.node().metrics();
    let mut dht: Option<DhtTable> = None;
    let mut dht_at: Option<tokio::time::Instant> = None;
    let mut last_routes: Option<HashMap<String, (Option<String>, u32, String)>> = None;
    loop {
        metrics.refresh().await;
        if dht_at.is_none_or(|at| at.elapsed() >= DHT_EVERY) {
            dht = net.dht_table().await.ok();
            dht_at = Some(tokio::time::Instant::now());
        }
        let snapshot = take(&net, &metrics, dht.clone());
        let routes: HashMap<String, (Option<String>, u32, String)> = snapshot
            .routes
            .iter()
            .map(|r| {
                (
                    r.peer_id.clone(),
                    (r.next_hop.clone(), r.hops, r.via.clone()),
                )
            })
            .collect();
        if let Some(before) = &last_routes {
            note_route_changes(&net, before, &routes, &snapshot.routes);
        }
        last_routes = Some(routes);
        let mut busiest: Vec<(String, u64)> = snapshot
            .peers
            .iter()
            .map(|p| (p.info.peer_id.clone(), p.bytes_in + p.bytes_out))
            .collect();
        busiest.sort_by(|a, b| b.1.cmp(&a.1));
        busiest.truncate(HISTORY_PEERS);
        let traffic = TrafficSample {
            at: snapshot.at_ms,
            peers: busiest.into_iter().collect(),
            protocols: snapshot
                .protocols
                .iter()
                .map(|p| (p.protocol.clone(), p.bytes_in + p.bytes_out))
                .collect(),
        };
        {
            let mut h = history.lock().unwrap_or_else(|e| e.into_inner());
            if h.len() == HISTORY {
                h.pop_front();
            }
            h.push_back(traffic);
        }
        match serde_json::to_string(&snapshot) {
            Ok(json) => {
                let _ = tx.send(Arc::new(json));
            }
            Err(e) => tracing::warn!(error = %e, "dashboard snapshot did not encode"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            () = tokio::time::sleep(SAMPLE_EVERY) => {}
        }
    }
}

fn note_route_changes(
    net: &Net,
    before: &HashMap<String, (Option<String>, u32, String)>,
    after: &HashMap<String, (Option<String>, u32, String)>,
    rows: &[RouteInfo],
) {
    let name = |id: &str| {
        rows.iter()
            .find(|r| r.peer_id == id)
            .and_then(|r| r.name.clone())
            .or_else(|| id.parse().ok().and_then(|p| net.peer_name(&p)))
            .unwrap_or_else(|| short_id(id))
    };
    let describe = |(hop, hops, via): &(Option<String>, u32, String)| match via.as_str() {
        "direct" => "direct".to_owned(),
        "dial" => "dialled on use".to_owned(),
        _ => {
            let through = hop.as_deref().map(name).unwrap_or_else(|| "?".to_owned());
            format!("via {through}, {hops} hops")
        }
    };
    for (id, now) in after {
        match before.get(id) {
            None => net.activity().record(
                "route_changed",
                format!("new route to {}: {}", name(id), describe(now)),
                Some(id.clone()),
                None,
                None,
            ),
            Some(was) if was != now => net.activity().record(
                "route_changed",
                format!(
                    "route to {} changed: {} → {}",
                    name(id),
                    describe(was),
                    describe(now)
                ),
                Some(id.clone()),
                None,
                None,
            ),
            Some(_) => {}
        }
    }
    for id in before.keys().filter(|id| !after.contains_key(*id)) {
        net.activity().record(
            "route_changed",
            format!("route to {} lost", name(id)),
            Some(id.clone()),
            None,
            None,
        );
    }
}

fn take(net: &Net, metrics: &pheromone::metrics::NodeMetrics, dht: Option<DhtTable>) -> Snapshot {
    let node = net.node();
    let conns = node.endpoint().connections();
    let peers = net
        .peers()
        .into_iter()
        .map(|info| {
            let live: Vec<_> = conns
                .iter()
                .filter(|c| !c.is_closed() && c.remote_peer().to_string() == info.peer_id)
                .collect();
            let relayed = info.relay.is_some();
            let relay_name = info
                .relay
                .as_deref()
                .and_then(|r| r.parse().ok())
                .and_then(|p| net.peer_name(&p));
            PeerRow {
                transport: "tcp",
                path: if relayed { "relayed" } else { "direct" },
                relay_name,
                bytes_in: live.iter().map(|c| c.bytes_received()).sum(),
                bytes_out: live.iter().map(|c| c.bytes_sent()).sum(),
                streams: live.iter().map(|c| c.num_streams()).sum(),
                info,
            }
        })
        .collect();
    let b = metrics.broadcast().unwrap_or_default();
    let broadcast = BroadcastView {
        published: b.published,
        delivered: b.delivered,
        duplicates: b.duplicates,
        gossip_received: b.gossip_received,
        gossip_sent: b.gossip_sent,
        dropped: [
            ("oversized", b.dropped.oversized),
            ("malformed", b.dropped.malformed),
            ("unsupported_version", b.dropped.unsupported_version),
            ("bad_signature", b.dropped.bad_signature),
            ("not_a_neighbour", b.dropped.not_a_neighbour),
            ("too_many_topics", b.dropped.too_many_topics),
        ]
        .into_iter()
        .collect(),
        topics: net.activity().topics(),
    };
    let exec = net
        .exec_service(|s| {
            let stats = s.stats();
            let config = s.config();
            ExecView {
                enabled: s.is_enabled(),
                allowed: config.allow.len(),
                shell: config.allow_shell,
                running: stats.running,
                started: stats.started,
                rejected: stats.rejected,
                timed_out: stats.timed_out,
            }
        })
        .unwrap_or(ExecView {
            enabled: false,
            allowed: 0,
            shell: false,
            running: 0,
            started: 0,
            rejected: 0,
            timed_out: 0,
        });
    Snapshot {
        at_ms: super::activity::now_ms(),
        node: NodeView {
            status: net.status(),
            reachability: "unknown",
            protocols: node.protocols(),
            route_changes: node.routing().map_or(0, |r| r.metrics().route_changes),
        },
        peers,
        routes: net.routes(),
        protocols: metrics
            .protocols()
            .into_iter()
            .map(|p| ProtocolRow {
                protocol: p.protocol,
                streams_inbound: p.streams_inbound,
                streams_outbound: p.streams_outbound,
                bytes_in: p.bytes_in,
                bytes_out: p.bytes_out,
                requests_ok: p.requests_ok,
                requests_failed: p.requests_failed,
            })
            .collect(),
        broadcast,
        dht,
        forwards: remote::list(net),
        exec,
        relay: node.relay().map(|r| {
            let s = r.stats();
            RelayView {
                active_circuits: s.active_circuits,
                circuits_relayed: s.circuits_relayed,
                circuits_refused: s.circuits_refused,
                bytes_relayed: s.bytes_relayed,
            }
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "abcd"));
        assert!(valid_token(&"a".repeat(64)));
        assert!(!valid_token(&"g".repeat(64)));
    }

    #[test]
    fn the_token_is_kept_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let t1 = load_or_create_token(dir.path()).expect("token");
        let t2 = load_or_create_token(dir.path()).expect("token");
        assert_eq!(t1, t2);
        assert!(valid_token(&t1));
        let mode = std::fs::metadata(dir.path().join(TOKEN_NAME))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
