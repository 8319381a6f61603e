//! Tunables of the routing state machine, with defaults sized for "a link failure is
//! repaired within a few hundred milliseconds, control traffic stays a few KiB/s per node
//! at 500 nodes".
//!
//! Plain data; the rules that use these values live in `state.rs`.

use std::time::Duration;

/// Configuration of a [`Router`](super::Router).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Every neighbour gets a full table dump this often (staggered per neighbour). Dumps
    /// only repair what lost frames broke: link failures and route changes travel at once
    /// as triggered updates, so this can be long. Default 20 s.
    pub update_interval: Duration,
    /// A route not refreshed by its neighbour for this long is dropped. Must exceed
    /// `update_interval` by a margin for a lost dump or two; default 3.5 × the default
    /// interval (Babel's ratio), 70 s.
    pub route_expiry: Duration,
    /// How long an unreachable destination's feasibility distance is remembered after the
    /// last route to it went away. Forgetting it earlier could let an old, longer route be
    /// accepted and loop for a moment. Default 180 s (Babel's `SOURCE_GC_TIME`).
    pub source_gc_time: Duration,
    /// Retractions of recently lost destinations are repeated in full dumps for this long,
    /// so a lost retraction cannot leave a stale route behind. Default: `route_expiry`.
    pub retraction_hold: Duration,
    /// Triggered updates are held this long and sent together: during convergence one
    /// frame per neighbour then carries many changes instead of one frame per change.
    /// Adds at most this much per hop to convergence. Zero sends at once. Default 10 ms.
    pub triggered_delay: Duration,
    /// How often expiry, garbage collection and trace timeouts are checked. Default 1 s.
    pub housekeeping_interval: Duration,
    /// A sequence-number request is sent again after this long without an answer.
    /// Default 400 ms.
    pub request_timeout: Duration,
    /// Times a sequence-number request is resent before giving up. Default 2.
    pub request_resends: u8,
    /// Hop budget of a sequence-number request (how far it is forwarded toward the
    /// destination). Default 64.
    pub request_hop_count: u8,
    /// A forwarded request for the same (destination, seqno) is not forwarded again within
    /// this window. Default 1 s.
    pub request_dedup: Duration,
    /// Most destinations kept (reachable or not). When full, a new destination is refused
    /// (and counted in [`Metrics::table_full_drops`](super::Metrics)), after the oldest
    /// unreachable destination has been dropped to make room if there is one: routes
    /// already known are never evicted by newcomers, so a flood of fake peer IDs cannot
    /// push real routes out. Default 10 000.
    pub max_destinations: usize,
    /// Most destinations one neighbour may hold routes to in our table. Past it, new
    /// destinations from that neighbour are refused (`MessageError::NeighbourRouteCap`,
    /// counted in `Metrics::neighbour_cap_drops`): identities are free to mint, so one
    /// neighbour advertising 10,000 genuine-but-fake destinations must not fill
    /// `max_destinations` alone. Default 5 000 (half the table).
    pub max_destinations_per_neighbour: usize,
    /// Most neighbours; `link_up` beyond this is ignored (counted). Default 256.
    pub max_neighbours: usize,
    /// Most entries in one UPDATE or REQUEST frame, sent and accepted. Default 128.
    pub max_entries_per_frame: usize,
    /// Longest routing frame accepted. Default 16 KiB (128 signed entries take at most
    /// ~15 KiB).
    pub max_frame_len: usize,
    /// Routes longer than this many hops are treated as unreachable. Default 32.
    pub max_hops: u8,
    /// Cost of a link brought up by [`Router::link_up`](super::Router::link_up); the metric
    /// of a route is the sum of its links' costs. Default 1, so metric = hop count.
    pub default_link_cost: u16,
    /// Most traces in flight from this node. Default 64.
    pub max_pending_traces: usize,
    /// A trace without an answer after this long fails with `Timeout`. Default 5 s.
    pub trace_timeout: Duration,
    /// Report every change of a selected route as an [`Event::RouteChanged`](super::Event).
    /// Default true.
    pub route_events: bool,
    /// The sequence number this node starts from. A node restarted with an old number
    /// catches up by itself (it jumps past any number it hears for itself), but starting
    /// from something fresh, e.g. seconds since an epoch, saves that round. Default 0.
    pub initial_seqno: u32,
    /// A selected route to a destination in use is probed again this long after a probe
    /// through it succeeded. Default 30 s.
    pub probe_interval: Duration,
    /// A probe without a signed answer after this long has failed. Default 3 s.
    pub probe_timeout: Duration,
    /// Failures in a row that make a route *suspect*: it is then selected only when no
    /// other feasible route is left, for `probe_penalty` (doubled at each repeat, up to
    /// 16×). Two, so a single lost frame does not condemn an honest path. Default 2.
    pub probe_failures: u8,
    /// How long a suspect route stays set aside. Default 300 s.
    pub probe_penalty: Duration,
    /// Most probes in flight from this node (apart from `max_pending_traces`). Default 64.
    pub max_pending_probes: usize,
    /// Probe every reachable destination, not only those marked with
    /// [`Router::mark_in_use`](super::Router::mark_in_use). For small meshes and the
    /// simulator; the probes cost a round trip per destination per `probe_interval`.
    /// Default false.
    pub probe_all: bool,
    /// A destination marked in use stays probed this long after the last mark.
    /// Default 300 s.
    pub in_use_ttl: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            update_interval: Duration::from_secs(20),
            route_expiry: Duration::from_secs(70),
            source_gc_time: Duration::from_secs(180),
            retraction_hold: Duration::from_secs(70),
            triggered_delay: Duration::from_millis(10),
            housekeeping_interval: Duration::from_secs(1),
            request_timeout: Duration::from_millis(400),
            request_resends: 2,
            request_hop_count: 64,
            request_dedup: Duration::from_secs(1),
            max_destinations: 10_000,
            max_destinations_per_neighbour: 5_000,
            max_neighbours: 256,
            max_entries_per_frame: 128,
            max_frame_len: 16 * 1024,
            max_hops: 32,
            default_link_cost: 1,
            max_pending_traces: 64,
            trace_timeout: Duration::from_secs(5),
            route_events: true,
            initial_seqno: 0,
            probe_interval: Duration::from_secs(30),
            probe_timeout: Duration::from_secs(3),
            probe_failures: 2,
            probe_penalty: Duration::from_secs(300),
            max_pending_probes: 64,
            probe_all: false,
            in_use_ttl: Duration::from_secs(300),
        }
    }
}
