//! The limits of every scope, as plain data, and the defaults sized from the machine's memory.
//!
//! Nothing here reads the machine: the IO crate measures the RAM and calls
//! [`ResourceLimits::for_memory`].

/// Every limit the resource manager enforces. Field names are the keys of the daemon's
/// `[resources]` TOML table (see `docs/resources.md`).
///
/// The scopes are go-libp2p rcmgr's: system, handshaking (its "transient"), per IP prefix
/// (a /32 for IPv4, a /56 for IPv6), per peer, per protocol and per connection. The
/// per-IP and per-peer defaults are rcmgr's; the system ones are scaled from the memory
/// given (see [`ResourceLimits::for_memory`]), because an idle pheromone connection costs
/// a third of what rcmgr's small fixed system defaults assume.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResourceLimits {
    /// System: live inbound connections at most (relayed connections that end here
    /// included).
    pub max_inbound_connections: usize,
    /// System: live outbound connections at most.
    pub max_outbound_connections: usize,
    /// Handshaking: inbound handshakes in progress at once. When full, a new one takes the
    /// place of the oldest handshake of the address with the most of them, so idle sockets
    /// cannot keep a good peer out.
    pub max_pending_handshakes: usize,
    /// Handshaking, per IP prefix: inbound handshakes in progress from one address at once.
    pub max_pending_handshakes_per_ip: usize,
    /// Per IP prefix: live connections (both directions) with one address (rcmgr: 8).
    pub max_connections_per_ip: usize,
    /// Per peer: live connections with one peer, both directions (rcmgr: 8).
    pub max_connections_per_peer: usize,
    /// System: inbound streams being served at once.
    pub max_streams: usize,
    /// Per peer: inbound streams of one peer being served at once (rcmgr: 512).
    pub max_streams_per_peer: usize,
    /// Per protocol: inbound streams of one protocol being served at once.
    pub max_streams_per_protocol: usize,
    /// System: bytes held for all connections (receive buffers, send queues).
    pub max_memory: u64,
    /// Per peer: bytes held for one peer's connections (rcmgr: 64 MiB).
    pub max_memory_per_peer: u64,
    /// Per connection: bytes one connection may hold in received data that its reader has
    /// not taken yet; beyond it the connection copies what it holds out of its large
    /// receive buffers so that only what is buffered stays in memory.
    pub max_memory_per_connection: u64,
    /// System: circuits relayed through this node (for others) at once.
    pub max_relayed_circuits: usize,
    /// Per peer: circuits one neighbour asks us to relay at once.
    pub max_relayed_circuits_per_peer: usize,
    /// System: relayed connections that end at this node at once (they also count as
    /// inbound connections).
    pub max_circuits_ending_here: usize,
    /// Per peer: relayed connections that end here and arrive through one neighbour.
    pub max_circuits_ending_here_per_relay: usize,
    /// Loopback addresses (127.0.0.0/8, ::1) are exempt from the per-IP limits, as in
    /// go-libp2p, so that many local daemons and tests keep working.
    pub exempt_loopback: bool,
}

/// Bytes the defaults assume one connection may come to hold: what sizes the system
/// connection limits from the memory budget.
pub const CONNECTION_BUDGET: u64 = 256 * 1024;

impl ResourceLimits {
    /// Defaults for a machine with `ram` bytes of memory: an eighth of it for the system
    /// memory limit (as rcmgr's autoscaling), and as many connections as that budget holds
    /// at [`CONNECTION_BUDGET`] each, between 256 and 65,536 per direction.
    pub fn for_memory(ram: u64) -> Self {
        let memory = (ram / 8).max(64 << 20);
        let connections = (memory / CONNECTION_BUDGET).clamp(256, 65_536) as usize;
        Self {
            max_inbound_connections: connections,
            max_outbound_connections: connections,
            max_pending_handshakes: (connections / 16).clamp(64, 1024),
            max_pending_handshakes_per_ip: 16,
            max_connections_per_ip: 8,
            max_connections_per_peer: 8,
            max_streams: connections * 16,
            max_streams_per_peer: 512,
            max_streams_per_protocol: connections * 8,
            max_memory: memory,
            max_memory_per_peer: 64 << 20,
            max_memory_per_connection: 4 << 20,
            max_relayed_circuits: (connections / 8).clamp(128, 4096),
            max_relayed_circuits_per_peer: 16,
            max_circuits_ending_here: (connections / 8).clamp(128, 4096),
            max_circuits_ending_here_per_relay: 64,
            exempt_loopback: true,
        }
    }

    /// No limit worth the name: for tests and benches that measure something else.
    pub fn unlimited() -> Self {
        Self {
            max_inbound_connections: usize::MAX,
            max_outbound_connections: usize::MAX,
            max_pending_handshakes: usize::MAX,
            max_pending_handshakes_per_ip: usize::MAX,
            max_connections_per_ip: usize::MAX,
            max_connections_per_peer: usize::MAX,
            max_streams: usize::MAX,
            max_streams_per_peer: usize::MAX,
            max_streams_per_protocol: usize::MAX,
            max_memory: u64::MAX,
            max_memory_per_peer: u64::MAX,
            max_memory_per_connection: u64::MAX,
            max_relayed_circuits: usize::MAX,
            max_relayed_circuits_per_peer: usize::MAX,
            max_circuits_ending_here: usize::MAX,
            max_circuits_ending_here_per_relay: usize::MAX,
            exempt_loopback: true,
        }
    }
}

impl Default for ResourceLimits {
    /// The defaults of a machine with 8 GiB; the `pheromone` crate's endpoint measures the
    /// real machine instead.
    fn default() -> Self {
        Self::for_memory(8 << 30)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_scale_with_memory_within_bounds() {
        let small = ResourceLimits::for_memory(512 << 20);
        assert_eq!(small.max_inbound_connections, 256);
        assert_eq!(small.max_memory, 64 << 20);
        let here = ResourceLimits::for_memory(24 << 30);
        // 3 GiB of budget at 256 KiB each: 12,288, enough for 10,000 idle peers.
        assert_eq!(here.max_memory, 3 << 30);
        assert_eq!(here.max_inbound_connections, 12_288);
        assert_eq!(here.max_connections_per_ip, 8);
        let huge = ResourceLimits::for_memory(1 << 50);
        assert_eq!(huge.max_inbound_connections, 65_536);
        assert_eq!(huge.max_pending_handshakes, 1024);
    }
}
