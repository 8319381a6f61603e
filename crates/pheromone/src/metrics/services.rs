//! The collectors of the node's services: the DHT and broadcast families (encoded as part
//! of the node's scrape), and the exec and forward collectors the daemon registers beside
//! the node's. Nothing here counts anything.

use super::collector::{gauge_value, Families, Labels};
use crate::exec::ExecStats;
use crate::forward::{ForwardStats, Forwards};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use std::fmt;
use std::sync::Arc;

pub(super) fn encode_discovery(
    f: &mut Families<'_, '_>,
    d: &crate::discovery::DiscoveryMetrics,
) -> fmt::Result {
    f.gauge(
        "pheromone_kad_table_size",
        "Peers in the DHT routing table (replacements not counted).",
        gauge_value(d.table_size),
    )?;
    f.gauge(
        "pheromone_kad_running_lookups",
        "DHT lookups running.",
        gauge_value(d.running_queries),
    )?;
    f.counter(
        "pheromone_kad_requests_sent",
        "DHT requests sent.",
        d.kad.requests_sent,
    )?;
    f.counter(
        "pheromone_kad_requests_failed",
        "DHT requests that failed or timed out.",
        d.kad.requests_failed,
    )?;
    f.counter(
        "pheromone_kad_inbound_requests",
        "DHT requests from peers answered.",
        d.kad.inbound_requests,
    )?;
    f.counter(
        "pheromone_kad_malformed",
        "DHT messages that did not decode.",
        d.kad.malformed,
    )?;
    f.counter(
        "pheromone_kad_evictions",
        "DHT table entries evicted.",
        d.kad.evictions,
    )?;
    f.counter(
        "pheromone_kad_dials",
        "Dials the discovery service started (for lookups and the connection manager).",
        d.dials,
    )?;
    f.counter(
        "pheromone_kad_dials_failed",
        "Dials of the discovery service that failed.",
        d.dials_failed,
    )
}

pub(super) fn encode_broadcast(
    f: &mut Families<'_, '_>,
    b: &pheromone_core::broadcast::Metrics,
) -> fmt::Result {
    f.counter(
        "pheromone_broadcast_published",
        "Broadcast messages this node published.",
        b.published,
    )?;
    f.counter(
        "pheromone_broadcast_delivered",
        "Broadcast messages handed to local subscribers.",
        b.delivered,
    )?;
    f.counter(
        "pheromone_broadcast_duplicates",
        "Valid copies of broadcast messages already seen, dropped (never delivered nor forwarded).",
        b.duplicates,
    )?;
    let d = &b.dropped;
    f.counters(
        "pheromone_broadcast_dropped",
        "Broadcast frames dropped, by reason.",
        &[
            (&[("reason", "oversized")], d.oversized),
            (&[("reason", "malformed")], d.malformed),
            (&[("reason", "unsupported_version")], d.unsupported_version),
            (&[("reason", "bad_signature")], d.bad_signature),
            (&[("reason", "not_a_neighbour")], d.not_a_neighbour),
            (&[("reason", "too_many_topics")], d.too_many_topics),
        ],
    )?;
    f.counters(
        "pheromone_broadcast_frames_sent",
        "Broadcast frames sent, by kind (gossip: messages; control: announcements, grafts, prunes).",
        &[
            (&[("kind", "gossip")], b.gossip_sent),
            (&[("kind", "control")], b.control_sent),
        ],
    )?;
    f.counters(
        "pheromone_broadcast_sent_bytes",
        "Bytes of broadcast frames sent, by kind.",
        &[
            (&[("kind", "gossip")], b.gossip_bytes_sent),
            (&[("kind", "control")], b.control_bytes_sent),
        ],
    )?;
    f.counter(
        "pheromone_broadcast_delivered_hops",
        "Sum of the hop counts of delivered broadcast messages (links each crossed).",
        b.delivered_hops,
    )?;
    f.counter(
        "pheromone_broadcast_gossip_received",
        "Broadcast message frames received (every copy, valid or not).",
        b.gossip_received,
    )?;
    f.counter(
        "pheromone_broadcast_retransmits",
        "Announcements repeated because a neighbour did not answer in time.",
        b.retransmits,
    )?;
    f.counter(
        "pheromone_broadcast_missing_given_up",
        "Missing broadcast messages given up on after every request for them failed.",
        b.missing_given_up,
    )?;
    f.counter(
        "pheromone_broadcast_grafts_refused",
        "GRAFTs refused because the neighbour reached its per-message or byte cap.",
        b.grafts_refused,
    )
}

/// The exec service's counters; from
/// [`ExecService::collector`](crate::exec::ExecService::collector).
#[derive(Clone)]
pub struct ExecCollector {
    stats: Arc<dyn Fn() -> ExecStats + Send + Sync>,
}

impl fmt::Debug for ExecCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecCollector").finish_non_exhaustive()
    }
}

impl ExecCollector {
    pub(crate) fn new(stats: Arc<dyn Fn() -> ExecStats + Send + Sync>) -> Self {
        Self { stats }
    }
}

impl Collector for ExecCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let s = (self.stats)();
        let mut f = Families(&mut encoder);
        f.gauge(
            "pheromone_exec_running",
            "Commands peers run on this node now.",
            gauge_value(s.running),
        )?;
        f.counter(
            "pheromone_exec_started",
            "Commands peers started on this node.",
            s.started,
        )?;
        f.counter(
            "pheromone_exec_rejected",
            "Exec requests answered with an error instead of a run (busy, shell refused, not found, malformed).",
            s.rejected,
        )?;
        f.counter(
            "pheromone_exec_timed_out",
            "Commands killed by their timeout.",
            s.timed_out,
        )
    }
}

/// The counters of every expose and forward of a [`Forwards`] registry, summed per kind;
/// from [`ForwardsCollector::new`]. An expose or forward that is removed takes its counts
/// with it.
#[derive(Clone)]
pub struct ForwardsCollector {
    forwards: Forwards,
}

impl fmt::Debug for ForwardsCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForwardsCollector").finish_non_exhaustive()
    }
}

impl ForwardsCollector {
    /// Reads `forwards` at every scrape.
    pub fn new(forwards: Forwards) -> Self {
        Self { forwards }
    }
}

impl Collector for ForwardsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let snapshot = self.forwards.snapshot();
        let sum = |stats: &mut dyn Iterator<Item = ForwardStats>| {
            stats.fold(ForwardStats::default(), |mut a, s| {
                a.bytes_in += s.bytes_in;
                a.bytes_out += s.bytes_out;
                a.open += s.open;
                a.total += s.total;
                a.failed += s.failed;
                a
            })
        };
        let exposed = sum(&mut snapshot.exposed.iter().map(|e| e.stats));
        let forwarded = sum(&mut snapshot.forwarded.iter().map(|e| e.stats));
        let mut f = Families(&mut encoder);
        let kinds: [(Labels<'_>, &ForwardStats); 2] = [
            (&[("kind", "expose")], &exposed),
            (&[("kind", "forward")], &forwarded),
        ];
        f.gauges(
            "pheromone_forward_services",
            "Exposed services and forwarded ports configured now, by kind.",
            &[
                (&[("kind", "expose")], gauge_value(snapshot.exposed.len())),
                (
                    &[("kind", "forward")],
                    gauge_value(snapshot.forwarded.len()),
                ),
            ],
        )?;
        let rows = |pick: fn(&ForwardStats) -> u64| -> Vec<(Labels<'_>, u64)> {
            kinds.iter().map(|(l, s)| (*l, pick(s))).collect()
        };
        let open: Vec<(Labels<'_>, i64)> = kinds
            .iter()
            .map(|(l, s)| (*l, gauge_value(s.open)))
            .collect();
        f.gauges(
            "pheromone_forward_connections_open",
            "TCP connections being spliced over the mesh now, by kind.",
            &open,
        )?;
        f.counters(
            "pheromone_forward_connections",
            "TCP connections accepted for splicing, by kind.",
            &rows(|s| s.total),
        )?;
        f.counters(
            "pheromone_forward_connections_failed",
            "Spliced connections that failed (target refused, stream refused or reset), by kind.",
            &rows(|s| s.failed),
        )?;
        f.counters(
            "pheromone_forward_received_bytes",
            "Bytes received from peers and written to the local TCP side, by kind.",
            &rows(|s| s.bytes_in),
        )?;
        f.counters(
            "pheromone_forward_sent_bytes",
            "Bytes read from the local TCP side and sent to peers, by kind.",
            &rows(|s| s.bytes_out),
        )
    }
}
