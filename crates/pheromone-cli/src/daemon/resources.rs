//! The `[resources]` table of the daemon's config file: the resource manager's limits and
//! the relay's per-circuit limits, every key optional, each over the defaults sized from
//! this machine (`docs/resources.md` lists them).

use super::config::parse_duration;
use anyhow::{Context, Result};
use pheromone::relay::RelayConfig;
use pheromone::resources::ResourceLimits;
use serde::Deserialize;

/// The `[resources]` table as written; keys are the [`ResourceLimits`] field names.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourcesFile {
    /// Live inbound connections (relayed ones ending here included).
    pub max_inbound_connections: Option<usize>,
    /// Live outbound connections.
    pub max_outbound_connections: Option<usize>,
    /// Inbound handshakes in progress.
    pub max_pending_handshakes: Option<usize>,
    /// Inbound handshakes in progress from one IPv4 address or IPv6 /56.
    pub max_pending_handshakes_per_ip: Option<usize>,
    /// Live connections with one IPv4 address or IPv6 /56.
    pub max_connections_per_ip: Option<usize>,
    /// Live connections with one peer.
    pub max_connections_per_peer: Option<usize>,
    /// Inbound streams served at once.
    pub max_streams: Option<usize>,
    /// Inbound streams of one peer served at once.
    pub max_streams_per_peer: Option<usize>,
    /// Inbound streams of one protocol served at once.
    pub max_streams_per_protocol: Option<usize>,
    /// Bytes all connections may hold.
    pub max_memory: Option<u64>,
    /// Bytes one peer's connections may hold.
    pub max_memory_per_peer: Option<u64>,
    /// Bytes of receive buffer one connection may hold.
    pub max_memory_per_connection: Option<u64>,
    /// Circuits relayed through this node at once.
    pub max_relayed_circuits: Option<usize>,
    /// Circuits one neighbour may have us relay at once.
    pub max_relayed_circuits_per_peer: Option<usize>,
    /// Relayed connections ending here at once.
    pub max_circuits_ending_here: Option<usize>,
    /// Relayed connections ending here through one neighbour at once.
    pub max_circuits_ending_here_per_relay: Option<usize>,
    /// Whether loopback addresses are exempt from the per-IP limits.
    pub exempt_loopback: Option<bool>,
    /// Bytes one relayed circuit may carry.
    pub relay_max_circuit_bytes: Option<u64>,
    /// A relayed circuit idle this long is reset ("2m").
    pub relay_circuit_idle_timeout: Option<String>,
    /// A relayed circuit is reset after this long ("24h").
    pub relay_max_circuit_lifetime: Option<String>,
}

/// What the daemon runs with: the limits and the relay's settings.
#[derive(Debug, Clone)]
pub struct Resources {
    /// The resource manager's limits.
    pub limits: ResourceLimits,
    /// The relay service's settings.
    pub relay: RelayConfig,
}

impl ResourcesFile {
    /// The table's values over this machine's defaults.
    pub fn resolve(&self) -> Result<Resources> {
        let mut l = pheromone::resources::machine_limits();
        macro_rules! set {
            ($($field:ident),*) => {$(
                if let Some(v) = self.$field {
                    l.$field = v;
                }
            )*};
        }
        set!(
            max_inbound_connections,
            max_outbound_connections,
            max_pending_handshakes,
            max_pending_handshakes_per_ip,
            max_connections_per_ip,
            max_connections_per_peer,
            max_streams,
            max_streams_per_peer,
            max_streams_per_protocol,
            max_memory,
            max_memory_per_peer,
            max_memory_per_connection,
            max_relayed_circuits,
            max_relayed_circuits_per_peer,
            max_circuits_ending_here,
            max_circuits_ending_here_per_relay,
            exempt_loopback
        );
        let mut relay = RelayConfig::default();
        if let Some(bytes) = self.relay_max_circuit_bytes {
            relay.max_circuit_bytes = bytes;
        }
        if let Some(text) = &self.relay_circuit_idle_timeout {
            relay.circuit_idle_timeout =
                parse_duration(text).context("bad resources.relay_circuit_idle_timeout")?;
        }
        if let Some(text) = &self.relay_max_circuit_lifetime {
            relay.max_circuit_lifetime =
                parse_duration(text).context("bad resources.relay_max_circuit_lifetime")?;
        }
        Ok(Resources { limits: l, relay })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn keys_override_the_machine_defaults() {
        let file: ResourcesFile = toml::from_str(
            "max_connections_per_ip = 2\nexempt_loopback = false\nmax_memory = 1048576\n\
             relay_circuit_idle_timeout = \"30s\"\n",
        )
        .expect("parse");
        let r = file.resolve().expect("resolve");
        assert_eq!(r.limits.max_connections_per_ip, 2);
        assert!(!r.limits.exempt_loopback);
        assert_eq!(r.limits.max_memory, 1 << 20);
        assert_eq!(
            r.limits.max_inbound_connections,
            pheromone::resources::machine_limits().max_inbound_connections
        );
        assert_eq!(r.relay.circuit_idle_timeout, Duration::from_secs(30));
    }

    #[test]
    fn an_unknown_key_is_an_error_naming_it() {
        let err = toml::from_str::<ResourcesFile>("max_conections = 3\n").unwrap_err();
        assert!(err.to_string().contains("max_conections"), "{err}");
    }
}
