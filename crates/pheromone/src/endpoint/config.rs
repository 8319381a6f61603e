//! Settings of an endpoint: transport, connection, limits and what identify says.

use super::Access;
use crate::connection::ConnectionConfig;
use crate::resources::ResourceLimits;
use crate::transport::{QuicConfig, TcpConfig};
use crate::upgrade::TcpSecurity;
use std::time::Duration;

/// Settings of an [`Endpoint`](super::Endpoint). `Default` gives safe, fast values.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// TCP dial timeout and listen backlog.
    pub tcp: TcpConfig,
    /// QUIC windows, stream limits, keep-alive, MTU, certificates.
    pub quic: QuicConfig,
    /// The security protocol a TCP dial proposes first (`/noise` by default; the other one
    /// on a second dial when the listener refuses it). Inbound, both are accepted.
    pub tcp_security: TcpSecurity,
    /// Yamux windows, stream limits, keep-alive and close grace.
    pub connection: ConnectionConfig,
    /// The whole upgrade (multistream, Noise, multistream, yamux) must finish within this.
    pub handshake_timeout: Duration,
    /// The resource manager's limits: connections (per direction, IP prefix and peer),
    /// pending handshakes, streams, circuits and memory. Defaults are sized from this
    /// machine's RAM ([`machine_limits`](crate::resources::machine_limits)).
    pub resources: ResourceLimits,
    /// Per-stream protocol negotiation, and a ping or identify reply, must finish within this.
    pub stream_negotiation_timeout: Duration,
    /// A ping stream with no ping for this long is closed.
    pub ping_idle_timeout: Duration,
    /// Who may use `/perf/1.0.0`; `None` (the default, as the perf spec asks) disables it.
    pub perf: Option<Access>,
    /// The most bytes a perf client may ask us to send back.
    pub perf_max_download: u64,
    /// Identify's `protocolVersion`.
    pub protocol_version: String,
    /// Identify's `agentVersion`.
    pub agent_version: String,
    /// The human name sent in identify's `pheromone_name` extension (field 1000); `None`
    /// sends none. Set by the node from its builder.
    pub node_name: Option<String>,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        Self {
            tcp: TcpConfig::default(),
            quic: QuicConfig::default(),
            tcp_security: TcpSecurity::default(),
            connection: ConnectionConfig::default(),
            handshake_timeout: Duration::from_secs(10),
            resources: crate::resources::machine_limits(),
            stream_negotiation_timeout: Duration::from_secs(10),
            ping_idle_timeout: Duration::from_secs(60),
            perf: None,
            perf_max_download: 16 << 30,
            protocol_version: "/pheromone/1.0.0".to_owned(),
            agent_version: concat!("pheromone/", env!("CARGO_PKG_VERSION")).to_owned(),
            node_name: None,
        }
    }
}
