//! The dashboard's sampler: once a second it reads the daemon's own views (status, peers,
//! routes, forwards, the DHT table — the data the control API answers with — and the
//! node's metrics) into one JSON snapshot, keeps five minutes of per-peer and
//! per-protocol byte counters for the traffic charts, and notes route changes in the
//! activity log. It only reads; the page does the drawing.

use super::activity::short_id;
use crate::control_proto::{DhtTable, RouteInfo};
use crate::daemon::net::Net;
use crate::daemon::remote;
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often the sampler takes a snapshot.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// How often the sampler reads the DHT table (a round trip to the DHT task).
const DHT_EVERY: Duration = Duration::from_secs(5);
/// Traffic samples kept for a page that opens later (five minutes at one a second).
const HISTORY: usize = 300;
/// Peers kept per traffic sample (the busiest), so the history stays small.
const HISTORY_PEERS: usize = 32;

/// The traffic samples, oldest first, shared with the pages' streams.
pub type History = Arc<Mutex<VecDeque<TrafficSample>>>;

/// How a destination is reached: next hop, hops, `via`.
type RouteKey = (Option<String>, u32, String);

/// Bytes (in + out) per peer and per protocol at one moment, for the traffic charts.
#[derive(Serialize, Clone)]
pub struct TrafficSample {
    at: u64,
    peers: HashMap<String, u64>,
    protocols: HashMap<String, u64>,
}

/// One peer as the dashboard shows it: what `peers` says plus the link's counters.
#[derive(Serialize)]
struct PeerRow {
    #[serde(flatten)]
    info: crate::control_proto::PeerInfo,
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
pub async fn run(
    net: Net,
    tx: watch::Sender<Arc<String>>,
    history: History,
    cancel: CancellationToken,
) {
    let metrics = net.node().metrics();
    let mut dht: Option<DhtTable> = None;
    let mut dht_at: Option<tokio::time::Instant> = None;
    let mut last_routes: Option<HashMap<String, RouteKey>> = None;
    loop {
        metrics.refresh().await;
        if dht_at.is_none_or(|at| at.elapsed() >= DHT_EVERY) {
            dht = net.dht_table().await.ok();
            dht_at = Some(tokio::time::Instant::now());
        }
        let snapshot = take(&net, &metrics, dht.clone());
        let routes: HashMap<String, RouteKey> = snapshot
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
        busiest.sort_by_key(|p| std::cmp::Reverse(p.1));
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
    before: &HashMap<String, RouteKey>,
    after: &HashMap<String, RouteKey>,
    rows: &[RouteInfo],
) {
    let name = |id: &str| {
        rows.iter()
            .find(|r| r.peer_id == id)
            .and_then(|r| r.name.clone())
            .or_else(|| id.parse().ok().and_then(|p| net.peer_name(&p)))
            .unwrap_or_else(|| short_id(id))
    };
    let describe = |(hop, hops, via): &RouteKey| match via.as_str() {
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
                "route_added",
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
