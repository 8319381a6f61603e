//! [`Config`]: every constant of the Kademlia protocol that an operator or a test may want
//! to change, with the defaults of the issue (k = 20, α = 3, …) and why.
//!
//! Plain data; nothing here is enforced, the table and the state machine read it.

use std::net::IpAddr;
use std::time::Duration;

/// Default protocol id: libp2p kad messages under our own name, so that a pheromone node
/// never joins the public IPFS DHT by accident.
pub const DEFAULT_PROTOCOL: &str = "/pheromone/kad/1.0.0";

/// The public IPFS DHT's protocol id, for interoperating with it on request.
pub const IPFS_PROTOCOL: &str = "/ipfs/kad/1.0.0";

/// An IP range (address and prefix length) exempt from the diversity limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    /// Network address.
    pub addr: IpAddr,
    /// Prefix length in bits (clamped to 32 or 128).
    pub prefix: u8,
}

impl IpRange {
    /// Whether `ip` is inside the range (an IPv4 range never contains an IPv6 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let bits = u32::from(self.prefix.min(32));
                let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let bits = u32::from(self.prefix.min(128));
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Tunables of [`super::Kademlia`].
#[derive(Debug, Clone)]
pub struct Config {
    /// Protocol id the driver negotiates for kad streams ([`DEFAULT_PROTOCOL`] or
    /// [`IPFS_PROTOCOL`]). The state machine never reads it; it lives here so that one
    /// value configures the whole protocol.
    pub protocol: String,
    /// Bucket size and lookup width, `k` (20 in libp2p and the Kademlia paper).
    pub k: usize,
    /// Requests a lookup keeps in flight, `α`.
    pub alpha: usize,
    /// Replacement candidates kept per bucket.
    pub replacements: usize,
    /// How long one request may take before it counts as failed.
    pub request_timeout: Duration,
    /// How long a lookup request may go unanswered before the lookup stops counting it
    /// against `alpha` and asks another candidate meanwhile (the answer is still used if
    /// it comes before `request_timeout`). Under churn many requests go to peers that left
    /// without a word; without this a lookup would stall for a whole `request_timeout`
    /// whenever `alpha` of them are in flight at once.
    pub slow_request_after: Duration,
    /// How long a whole lookup may take.
    pub query_timeout: Duration,
    /// Interval of liveness checks: each pings the least recently seen entry of one random
    /// non-empty bucket.
    pub liveness_interval: Duration,
    /// Interval of table refreshes (a lookup of our own ID plus `refresh_random_targets`
    /// lookups of random keys). `None` turns periodic refresh off.
    pub refresh_interval: Option<Duration>,
    /// Random-key lookups per refresh.
    pub refresh_random_targets: usize,
    /// Peers of one response we look at; the rest are ignored unread (a response listing
    /// 10,000 peers costs no more than one listing this many).
    pub max_peers_per_response: usize,
    /// Addresses kept per peer, in the table and in a lookup.
    pub max_addrs_per_peer: usize,
    /// Candidates one lookup remembers; the farthest uncontacted ones are dropped beyond it.
    pub max_candidates: usize,
    /// Lookups running at once; commands beyond it are refused with an immediate
    /// `QueryFinished` carrying no result.
    pub max_queries: usize,
    /// Inbound requests whose responses the driver has not taken yet.
    pub max_pending_inbound: usize,
    /// Table entries per bucket with an IPv4 address in the same /24 (IPv6: the same /48).
    pub max_per_subnet_bucket: usize,
    /// Table entries overall in the same /24 (IPv6: /48).
    pub max_per_subnet_table: usize,
    /// Peers of one lookup's `k` closest (those it asks and waits for) listed with an
    /// address in the same /24 (IPv6: /48); the rest of that subnet are passed over. Keeps
    /// IDs minted next to a key on a few hosts from eclipsing it. 0 turns it off.
    pub max_per_subnet_lookup: usize,
    /// Ranges exempt from the diversity limits (loopback always is).
    pub diversity_exempt: Vec<IpRange>,
    /// Whether advertised loopback and private-range addresses are kept. On (the default)
    /// for local clusters and tests; a node on the public internet can turn it off so that
    /// peers cannot point it at its own LAN.
    pub allow_private_addrs: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            protocol: DEFAULT_PROTOCOL.to_owned(),
            k: 20,
            alpha: 3,
            replacements: 10,
            request_timeout: Duration::from_secs(10),
            slow_request_after: Duration::from_secs(2),
            query_timeout: Duration::from_secs(60),
            liveness_interval: Duration::from_secs(10),
            refresh_interval: Some(Duration::from_secs(30)),
            refresh_random_targets: 1,
            max_peers_per_response: 40,
            max_addrs_per_peer: 8,
            max_candidates: 200,
            max_queries: 64,
            max_pending_inbound: 256,
            max_per_subnet_bucket: 2,
            max_per_subnet_table: 10,
            max_per_subnet_lookup: 2,
            diversity_exempt: Vec::new(),
            allow_private_addrs: true,
        }
    }
}

impl Config {
    /// The default configuration speaking on the public IPFS protocol id.
    pub fn ipfs() -> Self {
        Self {
            protocol: IPFS_PROTOCOL.to_owned(),
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_match_by_prefix() {
        let r = IpRange {
            addr: "10.1.0.0".parse().unwrap(),
            prefix: 16,
        };
        assert!(r.contains("10.1.200.3".parse().unwrap()));
        assert!(!r.contains("10.2.0.1".parse().unwrap()));
        assert!(!r.contains("::1".parse().unwrap()));
        let all = IpRange {
            addr: "0.0.0.0".parse().unwrap(),
            prefix: 0,
        };
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let v6 = IpRange {
            addr: "2001:db8::".parse().unwrap(),
            prefix: 32,
        };
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        assert!(!v6.contains("2001:db9::5".parse().unwrap()));
    }
}
