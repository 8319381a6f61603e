//! Settings of a node: connection mode, timeouts, message size, limits and its services.
//!
//! Plain data with safe defaults. The limits are written into the endpoint's and the
//! swarm's settings when the node is built ([`NodeConfig::endpoint_config`],
//! [`NodeConfig::swarm_config`]); nothing here opens sockets.

use crate::connection::ConnectionConfig;
use crate::endpoint::EndpointConfig;
use crate::swarm::{ConnectionMode, SwarmConfig};
use std::time::Duration;

/// Caps that turn overload into a clear error instead of a hang or unbounded memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Live inbound connections at most (relayed ones ending here included); further ones
    /// are dropped at accept. Written into the resource manager's limits
    /// ([`EndpointConfig::resources`]).
    pub max_inbound_connections: usize,
    /// Live outbound connections at most; a dial beyond fails with
    /// [`DispatchError::ConnectionLimit`](super::DispatchError::ConnectionLimit).
    pub max_outbound_connections: usize,
    /// Streams alive at once on one connection, both directions (yamux). Opening one more
    /// fails with [`DispatchError::StreamLimit`](super::DispatchError::StreamLimit); a
    /// peer's stream beyond it is refused.
    pub max_streams_per_connection: usize,
    /// Requests in flight to one peer from this node, and from one peer being handled by
    /// this node. Beyond it a dispatch fails with
    /// [`DispatchError::TooManyPending`](super::DispatchError::TooManyPending), and a
    /// peer's request is answered with "busy" without running the handler.
    pub max_pending_requests_per_peer: usize,
}

impl Default for Limits {
    /// The connection limits of the resource manager's defaults for this machine
    /// ([`machine_limits`](crate::resources::machine_limits)).
    fn default() -> Self {
        let machine = crate::resources::machine_limits();
        Self {
            max_inbound_connections: machine.max_inbound_connections,
            max_outbound_connections: machine.max_outbound_connections,
            max_streams_per_connection: 512,
            max_pending_requests_per_peer: 256,
        }
    }
}

/// Settings of a [`Node`](super::Node). `Default` gives a long-mode node with safe limits.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The human name sent to peers in identify; several nodes may share one.
    pub name: Option<String>,
    /// Long or short connections for requests and streams this node starts.
    pub mode: ConnectionMode,
    /// Default deadline of one dispatch, dial included (override per call with
    /// [`DispatchOptions`](super::DispatchOptions)). Also bounds how long a peer may take
    /// to send us a request.
    pub request_timeout: Duration,
    /// Largest request or reply, in bytes (default 1 MiB). A larger request is refused
    /// before it is sent; a peer's larger request is answered "too large" without being
    /// read; either way the connection survives.
    pub max_message_size: usize,
    /// Long mode: a connection with no stream and no use for this long is closed (it is
    /// redialled on the next use). `None` keeps connections until they fail. Short mode:
    /// inbound connections that stay unused this long are closed.
    pub idle_timeout: Option<Duration>,
    /// Happy Eyeballs: how long a dial of a peer with several addresses waits for an
    /// attempt before starting the next (see
    /// [`SwarmConfig::happy_eyeballs_delay`](crate::swarm::SwarmConfig)).
    pub happy_eyeballs_delay: Duration,
    /// Long mode: a request stream is kept open after its reply for the next request of the
    /// same protocol to the same peer (which then costs one frame each way instead of a
    /// stream open, a negotiation and a close), for at most this long without use
    /// (default 15 s; also at most half the idle timeout, so idle connections still
    /// close). A responder waits four times as long for the next request on a kept stream.
    pub request_stream_idle: Duration,
    /// Connection, stream and pending-request caps.
    pub limits: Limits,
    /// Transport, handshake, keep-alive and identify settings of the underlying endpoint.
    /// Its connection limits, stream limit and node name are overwritten from the fields
    /// above when the node is built.
    pub endpoint: EndpointConfig,
    /// Topic broadcast: strategy (tree by default), message and cache limits; `None`
    /// turns it off.
    pub broadcast: Option<pheromone_core::broadcast::Config>,
    /// Multi-hop routing over the node's direct links (`/pheromone/route/2.0.0`); `None`
    /// turns it off, and with it relayed dials. Off in [`ConnectionMode::Short`], whose
    /// links do not outlive a request.
    pub routing: Option<pheromone_core::route::Config>,
    /// Relayed connections: whether this node carries circuits for others, accepts them,
    /// and their limits. Used only with routing on.
    pub relay: crate::relay::RelayConfig,
    /// The Kademlia DHT and connection manager (protocol id, bootstrap peers, watermarks);
    /// `None` turns discovery off. On by default: a dispatch to a peer with no known
    /// address then asks the DHT before trying a relayed dial.
    pub discovery: Option<crate::discovery::DiscoveryConfig>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            name: None,
            mode: ConnectionMode::Long,
            request_timeout: Duration::from_secs(30),
            max_message_size: 1024 * 1024,
            idle_timeout: Some(Duration::from_secs(120)),
            happy_eyeballs_delay: SwarmConfig::default().happy_eyeballs_delay,
            request_stream_idle: Duration::from_secs(15),
            limits: Limits::default(),
            endpoint: EndpointConfig {
                connection: ConnectionConfig {
                    yamux: pheromone_core::yamux::Config {
                        // A dead link must be noticed within about two seconds so routes
                        // around it (and circuits over it) re-form quickly; a ping every
                        // half second costs a few bytes per connection.
                        keepalive_interval: Some(Duration::from_millis(500)),
                        keepalive_timeout: Duration::from_secs(2),
                        ..Default::default()
                    },
                    ..Default::default()
                },
                ..EndpointConfig::default()
            },
            broadcast: Some(pheromone_core::broadcast::Config::default()),
            routing: Some(pheromone_core::route::Config::default()),
            relay: crate::relay::RelayConfig::default(),
            discovery: Some(crate::discovery::DiscoveryConfig::default()),
        }
    }
}

impl NodeConfig {
    /// How long a kept request stream may stay idle: the configured time, but at most half
    /// the idle timeout (and never zero, which would close every stream at once).
    pub(super) fn kept_stream_idle(&self) -> Duration {
        let idle = match self.idle_timeout {
            Some(timeout) => self.request_stream_idle.min(timeout / 2),
            None => self.request_stream_idle,
        };
        idle.max(Duration::from_millis(10))
    }

    /// How long a responder waits for the next request on a kept stream.
    pub(super) fn responder_stream_idle(&self) -> Duration {
        self.request_stream_idle.max(Duration::from_secs(15)) * 4
    }

    /// The swarm settings: mode and idle timeout.
    pub fn swarm_config(&self) -> SwarmConfig {
        SwarmConfig {
            mode: self.mode,
            idle_timeout: self.idle_timeout,
            happy_eyeballs_delay: self.happy_eyeballs_delay,
            ..SwarmConfig::default()
        }
    }

    /// The endpoint settings with this node's limits and name applied.
    pub fn endpoint_config(&self) -> EndpointConfig {
        let mut config = self.endpoint.clone();
        config.resources.max_inbound_connections = self.limits.max_inbound_connections;
        config.resources.max_outbound_connections = self.limits.max_outbound_connections;
        config.connection.yamux.max_streams = self.limits.max_streams_per_connection;
        config.quic.max_concurrent_streams =
            u32::try_from(self.limits.max_streams_per_connection).unwrap_or(u32::MAX);
        config.node_name = self.name.clone();
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_name_reach_the_endpoint() {
        let config = NodeConfig {
            name: Some("luda".into()),
            limits: Limits {
                max_inbound_connections: 3,
                max_outbound_connections: 4,
                max_streams_per_connection: 5,
                max_pending_requests_per_peer: 6,
            },
            ..NodeConfig::default()
        };
        let ep = config.endpoint_config();
        assert_eq!(ep.resources.max_inbound_connections, 3);
        assert_eq!(ep.resources.max_outbound_connections, 4);
        assert_eq!(ep.connection.yamux.max_streams, 5);
        assert_eq!(ep.quic.max_concurrent_streams, 5);
        assert_eq!(ep.node_name.as_deref(), Some("luda"));
        assert_eq!(NodeConfig::default().max_message_size, 1 << 20);
        assert_eq!(NodeConfig::default().mode, ConnectionMode::Long);
    }
}
