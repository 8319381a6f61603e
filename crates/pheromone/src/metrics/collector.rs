//! Encoding: the `prometheus_client` collectors that turn a node's counters into metric
//! families at scrape time. One function per source; each writes its families in a fixed
//! order so the text output is stable. Nothing here counts anything.

use super::histogram::HistogramSnapshot;
use super::services::{encode_broadcast, encode_discovery};
use super::{Counters, DialCause, NodeMetrics, DIRECTIONS, LOOKUP_KINDS, LOOKUP_OUTCOMES, PATHS};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use std::fmt;
use std::sync::atomic::Ordering;

pub(super) type Labels<'a> = &'a [(&'a str, &'a str)];

/// Writes helpers over a [`DescriptorEncoder`], so each family is one line below.
pub(super) struct Families<'e, 'a>(pub(super) &'e mut DescriptorEncoder<'a>);

impl Families<'_, '_> {
    pub(super) fn counter(&mut self, name: &str, help: &str, value: u64) -> fmt::Result {
        self.0
            .encode_descriptor(name, help, None, MetricType::Counter)?
            .encode_counter::<NoLabelSet, _, u64>(&value, None)
    }

    pub(super) fn gauge(&mut self, name: &str, help: &str, value: i64) -> fmt::Result {
        self.0
            .encode_descriptor(name, help, None, MetricType::Gauge)?
            .encode_gauge(&value)
    }

    pub(super) fn counters(
        &mut self,
        name: &str,
        help: &str,
        rows: &[(Labels<'_>, u64)],
    ) -> fmt::Result {
        let mut metric = self
            .0
            .encode_descriptor(name, help, None, MetricType::Counter)?;
        for (labels, value) in rows {
            metric
                .encode_family(labels)?
                .encode_counter::<NoLabelSet, _, u64>(value, None)?;
        }
        Ok(())
    }

    pub(super) fn gauges(
        &mut self,
        name: &str,
        help: &str,
        rows: &[(Labels<'_>, i64)],
    ) -> fmt::Result {
        let mut metric = self
            .0
            .encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (labels, value) in rows {
            metric.encode_family(labels)?.encode_gauge(value)?;
        }
        Ok(())
    }

    pub(super) fn histograms(
        &mut self,
        name: &str,
        help: &str,
        rows: &[(Labels<'_>, HistogramSnapshot)],
    ) -> fmt::Result {
        let mut metric = self
            .0
            .encode_descriptor(name, help, None, MetricType::Histogram)?;
        for (labels, h) in rows {
            metric
                .encode_family(labels)?
                .encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets, None)?;
        }
        Ok(())
    }

    pub(super) fn histogram(
        &mut self,
        name: &str,
        help: &str,
        h: &HistogramSnapshot,
    ) -> fmt::Result {
        self.0
            .encode_descriptor(name, help, None, MetricType::Histogram)?
            .encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets, None)
    }
}

pub(super) fn gauge_value(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

/// Every metric of one node; see [`NodeMetrics::collector`].
#[derive(Debug, Clone)]
pub struct NodeCollector {
    metrics: NodeMetrics,
}

impl NodeCollector {
    pub(super) fn new(metrics: NodeMetrics) -> Self {
        Self { metrics }
    }
}

impl Collector for NodeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let mut f = Families(&mut encoder);
        let shared = &self.metrics.shared;
        let version = [("version", env!("CARGO_PKG_VERSION"))];
        f.gauges(
            "pheromone_build_info",
            "Always 1; the library version as a label.",
            &[(&version, 1)],
        )?;
        let start = shared
            .started
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        f.gauge(
            "pheromone_start_time_seconds",
            "When the node's metrics started, in seconds since the Unix epoch.",
            gauge_value(start),
        )?;
        encode_counters(&mut f, &shared.counters)?;
        if let Some(node) = shared.node.upgrade() {
            encode_node(&mut f, &node)?;
        }
        let cache = self.metrics.lock_cache().clone();
        if let Some(d) = cache.discovery {
            encode_discovery(&mut f, &d)?;
        }
        if let Some(b) = cache.broadcast {
            encode_broadcast(&mut f, &b)?;
        }
        Ok(())
    }
}

fn encode_counters(f: &mut Families<'_, '_>, c: &Counters) -> fmt::Result {
    let mut opened = Vec::new();
    let mut closed = Vec::new();
    let mut now = Vec::new();
    let labels: Vec<[(&str, &str); 3]> = (0..2)
        .flat_map(|d| {
            PATHS.iter().map(move |(transport, path)| {
                [
                    ("direction", DIRECTIONS[d]),
                    ("transport", *transport),
                    ("path", *path),
                ]
            })
        })
        .collect();
    for (i, l) in labels.iter().enumerate() {
        let (d, p) = (i / PATHS.len(), i % PATHS.len());
        let o = c.opened[d][p].load(Ordering::Relaxed);
        let x = c.closed[d][p].load(Ordering::Relaxed);
        opened.push((&l[..], o));
        closed.push((&l[..], x));
        now.push((&l[..], gauge_value(o.saturating_sub(x))));
    }
    f.counters(
        "pheromone_connections_opened",
        "Connections established (handshake done), by direction, transport and path.",
        &opened,
    )?;
    f.counters(
        "pheromone_connections_closed",
        "Connections that ended, by direction, transport and path.",
        &closed,
    )?;
    f.gauges(
        "pheromone_connections",
        "Connections open now, by direction, transport and path.",
        &now,
    )?;
    let causes: Vec<[(&str, &str); 1]> = DialCause::ALL
        .iter()
        .map(|c| [("cause", c.label())])
        .collect();
    let rows: Vec<_> = causes
        .iter()
        .zip(c.dial_errors.iter())
        .map(|(l, v)| (&l[..], v.load(Ordering::Relaxed)))
        .collect();
    f.counters(
        "pheromone_dial_errors",
        "Outbound dials that failed, by cause.",
        &rows,
    )?;
    let dirs: Vec<[(&str, &str); 1]> = DIRECTIONS.iter().map(|d| [("direction", *d)]).collect();
    let rows: Vec<_> = dirs
        .iter()
        .zip(c.handshake.iter())
        .map(|(l, h)| (&l[..], h.snapshot()))
        .collect();
    f.histograms(
        "pheromone_handshake_duration_seconds",
        "Time from socket to usable connection (multistream, Noise, yamux), successful handshakes, by direction.",
        &rows,
    )?;
    let rows: Vec<_> = dirs
        .iter()
        .zip(c.handshake_failures.iter())
        .map(|(l, v)| (&l[..], v.load(Ordering::Relaxed)))
        .collect();
    f.counters(
        "pheromone_handshake_failures",
        "Handshakes that failed or timed out, by direction.",
        &rows,
    )?;
    encode_protocols(f, c)?;
    let lookup_labels: Vec<[(&str, &str); 2]> = LOOKUP_KINDS
        .iter()
        .flat_map(|k| {
            LOOKUP_OUTCOMES
                .iter()
                .map(move |o| [("kind", *k), ("outcome", *o)])
        })
        .collect();
    let rows: Vec<_> = lookup_labels
        .iter()
        .enumerate()
        .filter_map(|(i, l)| {
            let (k, o) = (i / LOOKUP_OUTCOMES.len(), i % LOOKUP_OUTCOMES.len());
            let v = c.lookups[k][o].load(Ordering::Relaxed);
            // Only combinations that happened: most kinds have two or three outcomes.
            (v > 0).then_some((&l[..], v))
        })
        .collect();
    f.counters(
        "pheromone_kad_lookups",
        "DHT lookups finished, by kind (bootstrap, refresh, find_peer) and outcome.",
        &rows,
    )?;
    f.histogram(
        "pheromone_kad_lookup_hops",
        "Request chain length of finished DHT lookups (for a found peer: the hops that named it).",
        &c.lookup_hops.snapshot(),
    )?;
    f.histogram(
        "pheromone_kad_lookup_duration_seconds",
        "Duration of finished DHT lookups.",
        &c.lookup_duration.snapshot(),
    )
}

fn encode_protocols(f: &mut Families<'_, '_>, c: &Counters) -> fmt::Result {
    let entries = c.protocols.entries();
    let labels: Vec<[(&str, &str); 1]> = entries
        .iter()
        .map(|(p, _)| [("protocol", p.as_str())])
        .collect();
    let stream_labels: Vec<[(&str, &str); 2]> = entries
        .iter()
        .flat_map(|(p, _)| {
            DIRECTIONS
                .iter()
                .map(move |d| [("protocol", p.as_str()), ("direction", *d)])
        })
        .collect();
    let rows: Vec<_> = stream_labels
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let counters = &entries[i / 2].1;
            let v = if i % 2 == 0 {
                &counters.streams_inbound
            } else {
                &counters.streams_outbound
            };
            (&l[..], v.load(Ordering::Relaxed))
        })
        .collect();
    f.counters(
        "pheromone_streams_opened",
        "Streams negotiated, by protocol and by who opened them.",
        &rows,
    )?;
    let load = |pick: fn(&super::ProtocolCounters) -> &std::sync::atomic::AtomicU64| -> Vec<(Labels<'_>, u64)> {
        labels
            .iter()
            .zip(entries.iter())
            .map(|(l, (_, c))| (&l[..], pick(c).load(Ordering::Relaxed)))
            .collect()
    };
    f.counters(
        "pheromone_protocol_received_bytes",
        "Stream payload received, by protocol.",
        &load(|c| &c.bytes_in),
    )?;
    f.counters(
        "pheromone_protocol_sent_bytes",
        "Stream payload sent, by protocol.",
        &load(|c| &c.bytes_out),
    )?;
    let outcome_labels: Vec<[(&str, &str); 2]> = entries
        .iter()
        .flat_map(|(p, _)| ["ok", "error"].map(|o| [("protocol", p.as_str()), ("outcome", o)]))
        .collect();
    let rows: Vec<_> = outcome_labels
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let counters = &entries[i / 2].1;
            let v = if i % 2 == 0 {
                &counters.requests_ok
            } else {
                &counters.requests_failed
            };
            (&l[..], v.load(Ordering::Relaxed))
        })
        .collect();
    f.counters(
        "pheromone_requests",
        "Requests this node sent (dispatch), by protocol and outcome.",
        &rows,
    )?;
    let rows: Vec<_> = labels
        .iter()
        .zip(entries.iter())
        .map(|(l, (_, c))| (&l[..], c.request_duration.snapshot()))
        .collect();
    f.histograms(
        "pheromone_request_duration_seconds",
        "Time from dispatch to reply of requests this node sent, by protocol.",
        &rows,
    )
}

fn encode_node(f: &mut Families<'_, '_>, node: &crate::Node) -> fmt::Result {
    encode_resources(f, node.endpoint().resources())?;
    let s = node.stats();
    f.gauge(
        "pheromone_peers_connected",
        "Peers with a usable long-mode connection.",
        gauge_value(s.connected_peers),
    )?;
    f.gauge(
        "pheromone_streams",
        "Streams open on the node's connections, both directions.",
        gauge_value(s.streams),
    )?;
    f.gauges(
        "pheromone_pending_requests",
        "Requests in flight: ours (outbound) and peers' being handled (inbound).",
        &[
            (&[("direction", "inbound")], gauge_value(s.pending_inbound)),
            (
                &[("direction", "outbound")],
                gauge_value(s.pending_outbound),
            ),
        ],
    )?;
    f.gauge(
        "pheromone_dials_in_progress",
        "Dials the node is running.",
        gauge_value(s.dials),
    )?;
    f.gauge(
        "pheromone_known_peers",
        "Peers the node learned a name or addresses from (identify).",
        gauge_value(s.known_peers),
    )?;
    if let Some(routing) = node.routing() {
        let table = routing.table();
        let relayed = table.iter().filter(|r| r.hops > 1).count();
        f.gauges(
            "pheromone_route_destinations",
            "Destinations in the route table, by path (direct: one hop; relayed: more).",
            &[
                (&[("path", "direct")], gauge_value(table.len() - relayed)),
                (&[("path", "relayed")], gauge_value(relayed)),
            ],
        )?;
        let m = routing.metrics();
        f.counter(
            "pheromone_route_changes",
            "Changes of a selected route (next hop, metric or hop count).",
            m.route_changes,
        )?;
        f.counter(
            "pheromone_route_frames_received",
            "Routing frames received from neighbours.",
            m.frames_received,
        )?;
        f.counter(
            "pheromone_route_frames_rejected",
            "Routing frames dropped as malformed or from a non-neighbour.",
            m.frames_rejected,
        )?;
        f.counter(
            "pheromone_route_frames_sent",
            "Routing frames sent.",
            m.frames_sent,
        )?;
        f.counter(
            "pheromone_route_sent_bytes",
            "Bytes of routing frames sent.",
            m.bytes_sent,
        )?;
        f.counter(
            "pheromone_route_table_full_drops",
            "New destinations refused because the route table was full.",
            m.table_full_drops,
        )?;
    }
    if let Some(relay) = node.relay() {
        let r = relay.stats();
        f.gauge(
            "pheromone_relay_circuits",
            "Circuits relayed through this node now.",
            gauge_value(r.active_circuits),
        )?;
        f.counter(
            "pheromone_relay_circuits_opened",
            "Circuits relayed through this node so far.",
            r.circuits_relayed,
        )?;
        f.counter(
            "pheromone_relay_circuits_refused",
            "Circuit requests this node refused (no route, limit, loop, hop limit).",
            r.circuits_refused,
        )?;
        f.counter(
            "pheromone_relay_bytes",
            "Bytes carried for others through this node, both directions.",
            r.bytes_relayed,
        )?;
    }
    Ok(())
}

/// The resource manager's refusals by scope and resource, and what the system scope holds.
fn encode_resources(
    f: &mut Families<'_, '_>,
    resources: &crate::resources::ResourceManager,
) -> fmt::Result {
    let mut refusals = resources.refusals();
    refusals.sort_unstable();
    let labels: Vec<[(&str, &str); 2]> = refusals
        .iter()
        .map(|(scope, resource, _)| [("scope", *scope), ("resource", *resource)])
        .collect();
    let rows: Vec<_> = labels
        .iter()
        .zip(&refusals)
        .map(|(l, (_, _, n))| (&l[..], *n))
        .collect();
    f.counters(
        "pheromone_resource_refusals",
        "What the resource manager refused, by scope kind and resource.",
        &rows,
    )?;
    let u = resources.usage();
    let held = [
        ("inbound_connections", u.inbound_connections),
        ("outbound_connections", u.outbound_connections),
        ("pending_handshakes", u.pending_handshakes),
        ("streams", u.streams),
        ("relayed_circuits", u.relayed_circuits),
        ("circuits_ending_here", u.circuits_ending_here),
    ];
    let labels: Vec<[(&str, &str); 1]> = held.iter().map(|(r, _)| [("resource", *r)]).collect();
    let mut rows: Vec<_> = labels
        .iter()
        .zip(&held)
        .map(|(l, (_, n))| (&l[..], gauge_value(*n)))
        .collect();
    let memory = [("resource", "memory")];
    rows.push((&memory[..], gauge_value(resources.memory())));
    f.gauges(
        "pheromone_resources_held",
        "What the system scope holds now: connections, handshakes, inbound streams, circuits, bytes of receive buffer.",
        &rows,
    )
}
