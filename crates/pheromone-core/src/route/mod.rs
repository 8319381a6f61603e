//! Multi-hop routing (`/pheromone/route/2.0.0`): a loop-free distance-vector protocol in
//! the style of Babel (RFC 8966) and DSDV, over route records that only their destination
//! can sign, as a sans-IO state machine — one [`Router`] per node, fed `(now, input)`,
//! drained with [`Router::poll_output`].
//!
//! This module decides which routes exist and what to tell which neighbour; it never
//! touches a socket, never reads a clock and never draws a random number. [`Router`]
//! implements the [`Overlay`](crate::overlay::Overlay) contract: the `pheromone` crate's
//! overlay driver maps direct connections to neighbours and carries frames;
//! `pheromone-sim` runs thousands of routers on a virtual clock. Wire format and
//! rules: `docs/protocols/route.md`.
//!
//! # How routes are kept right
//!
//! - Every node originates a route to itself with a sequence number only it raises.
//!   Updates carry (destination, seqno, metric, hops); metric is the sum of link costs
//!   (1 per link by default, so metric = hops) and `0xFFFF` retracts.
//! - **Feasibility** (Babel's rule): a route is used only if its advertised (seqno,
//!   metric) is strictly better than the best this node ever advertised for that
//!   destination. That keeps the next-hop graph loop-free at every instant, not just after
//!   convergence; when no feasible route is left the node retracts and sends a
//!   **sequence-number request** toward the destination, whose answer (a new seqno) makes
//!   the alternatives feasible again within one round trip.
//! - **Triggered updates** go to every neighbour as soon as a selected route changes
//!   (poisoned reverse: the next hop hears a retraction); **periodic full dumps** per
//!   neighbour (split horizon) repair anything lost; routes not refreshed expire.
//! - **Hostile neighbours** (`record.rs`, `probe.rs`): every route record carries its
//!   destination's signature of (destination, seqno), so nobody else can make a route to
//!   it or raise its seqno; metric lies are caught by probing the routes in use (a signed
//!   trace) and setting aside those whose probes fail; one neighbour may hold only
//!   `max_destinations_per_neighbour` destinations.
//! - Everything is bounded: destinations (in all and per neighbour), neighbours, entries
//!   per frame, frame length, pending requests, traces and probes.
//!
//! # Tracing a path
//!
//! [`Router::trace`] sends a TRACE probe that every node forwards to its next hop while
//! appending itself; the destination (or the node where it stops) sends a TRACE_REPLY back
//! along the reversed path, and the origin reports [`Event::TraceFinished`] with the
//! whole path. Probes carry no state at the nodes they cross.
//!
//! # Calling contract
//!
//! The [`Overlay`](crate::overlay::Overlay) trait's, with [`Wire::Frames`](crate::overlay::Wire):
//! create with [`Router::new`]; a neighbour is a peer with a *direct* connection that
//! speaks [`PROTOCOL`] (a relayed circuit never counts, or routes would lean on
//! themselves); every frame a neighbour sends goes to `handle_frame` (frames arrive whole;
//! on a byte stream use [`wire::decode_length_prefixed`]); after every input drain
//! `poll_output` and arm `handle_timeout` at `poll_timeout`. Commands of its own:
//! [`Router::trace`], [`Router::neighbour_up_with_cost`], [`Router::set_link_cost`],
//! [`Router::mark_in_use`].
//!
//! `now` must never go backwards between calls.

mod config;
mod error;
mod probe;
mod record;
mod state;
mod table;
mod trace;
pub mod wire;

pub use config::Config;
pub use error::{DecodeError, MessageError, TraceError};
pub use record::sign_record;
pub use state::Router;
pub use wire::TraceStatus;

use crate::identity::PeerId;
use std::time::Duration;

/// Where traffic for a destination goes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NextHop {
    /// The neighbour to send through.
    pub peer: PeerId,
    /// Links to the destination along the route (1 for a neighbour).
    pub hops: u8,
    /// Sum of link costs along the route (equal to `hops` with the default cost of 1).
    pub metric: u16,
}

/// One row of [`Router::table`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteEntry {
    /// The destination.
    pub destination: PeerId,
    /// The neighbour traffic goes through.
    pub next_hop: PeerId,
    /// Links to the destination.
    pub hops: u8,
    /// Sum of link costs.
    pub metric: u16,
    /// The destination's sequence number this route carries.
    pub seqno: u32,
    /// Time since the next hop last confirmed the route.
    pub age: Duration,
}

/// Identifies a trace started with [`Router::trace`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId(pub u64);

/// Result of a trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceOutcome {
    /// The trace.
    pub id: TraceId,
    /// The node traced.
    pub destination: PeerId,
    /// How it ended; [`TraceStatus::Reached`] means `path` ends with the destination.
    pub status: TraceStatus,
    /// The nodes the probe crossed, this node first; on failure it ends with the node
    /// where the probe stopped (just this node on `Timeout`).
    pub path: Vec<PeerId>,
}

/// Something the application may want to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The selected route to `destination` changed next hop, hop count or metric
    /// (`None`: the destination became unreachable). Only with `Config::route_events`.
    RouteChanged {
        /// The destination.
        destination: PeerId,
        /// The new route, if any.
        route: Option<NextHop>,
    },
    /// A trace finished.
    TraceFinished(TraceOutcome),
}

/// What the router asks its driver to do: only [`Output::Send`] and [`Output::Event`].
pub type Output = crate::overlay::Output<Event>;

/// The routing protocol id.
pub const PROTOCOL: &str = "/pheromone/route/2.0.0";

/// Counters of one router, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Frames handed to `handle_message`.
    pub frames_received: u64,
    /// Frames dropped as malformed or from a non-neighbour.
    pub frames_rejected: u64,
    /// Frames produced (all kinds).
    pub frames_sent: u64,
    /// Bytes of frames produced.
    pub bytes_sent: u64,
    /// Update entries sent (advertisements and retractions).
    pub update_entries_sent: u64,
    /// Sequence-number request entries sent or forwarded.
    pub request_entries_sent: u64,
    /// New destinations refused because `max_destinations` was reached.
    pub table_full_drops: u64,
    /// `link_up` calls ignored because `max_neighbours` was reached.
    pub neighbour_limit_drops: u64,
    /// Times this node raised its own sequence number.
    pub seqno_bumps: u64,
    /// Changes of a selected route (next hop, metric or hops).
    pub route_changes: u64,
    /// Route records dropped for a bad signature.
    pub records_rejected: u64,
    /// New destinations refused because their neighbour reached
    /// `max_destinations_per_neighbour`.
    pub neighbour_cap_drops: u64,
    /// Path probes sent.
    pub probes_sent: u64,
    /// Path probes that failed (timeout, no signed answer, dead end).
    pub probes_failed: u64,
    /// Times a route was found lying and set aside.
    pub routes_suspected: u64,
}

/// Entry points for fuzz targets: each takes arbitrary bytes and must never panic.
#[doc(hidden)]
pub mod fuzzing {
    use super::*;
    use crate::overlay::Overlay;

    /// Decodes `data` as a routing frame under the default limits, and as a stream of
    /// length-prefixed frames.
    pub fn fuzz_decode(data: &[u8]) {
        let config = Config::default();
        let limits = wire::Limits::from_config(&config);
        if let Ok(message) = wire::decode(data, &limits) {
            // Whatever decodes must encode to a frame that decodes to the same thing.
            let again = wire::decode(&message.to_vec(), &limits);
            assert_eq!(again.as_ref(), Ok(&message));
        }
        let mut buf = bytes::BytesMut::from(data);
        while let Ok(Some(frame)) = wire::decode_length_prefixed(&mut buf, config.max_frame_len) {
            let _ = wire::decode(&frame, &limits);
        }
    }

    /// Feeds `data` as a frame from a neighbour to a router with two neighbours, then
    /// runs its timers; drains every output. `start` is any instant (the harness reads
    /// the clock; this crate never does).
    pub fn fuzz_handle_message(start: std::time::Instant, data: &[u8]) {
        let local = crate::identity::Keypair::from_seed([7; 32]);
        let a = crate::identity::Keypair::from_seed([8; 32]).peer_id();
        let b = crate::identity::Keypair::from_seed([9; 32]).peer_id();
        let mut router = Router::new(local, Config::default(), start);
        router.neighbour_up(start, a.into());
        router.neighbour_up(start, b.into());
        let _ = router.handle_frame(start, a, data);
        while router.poll_output().is_some() {}
        if let Some(at) = router.poll_timeout() {
            router.handle_timeout(at);
        }
        router.neighbour_down(start + Duration::from_secs(1), a);
        while router.poll_output().is_some() {}
    }
}

#[cfg(test)]
mod tests;
