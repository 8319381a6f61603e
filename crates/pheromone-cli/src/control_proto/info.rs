//! The values inside replies and events: a node's status, its peers and routes, ping
//! statistics, messages and perf results. Plain data shared by daemon and CLI; nothing
//! here does IO.

use super::base64_bytes;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// This node, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Its peer ID.
    pub peer_id: String,
    /// Its human name, if it has one.
    pub name: Option<String>,
    /// Dialable addresses, each ending in `/p2p/<peer_id>`.
    pub listen_addrs: Vec<String>,
    /// `long` or `short`.
    pub mode: String,
    /// Live connections.
    pub connections: usize,
    /// Seconds since the daemon started.
    pub uptime_secs: u64,
    /// Direct messages waiting for `recv`.
    pub inbox_messages: usize,
    /// The daemon's version.
    pub version: String,
}

/// A connected peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// Its peer ID.
    pub peer_id: String,
    /// The name it told us, if any.
    pub name: Option<String>,
    /// Remote addresses of our connections to it.
    pub addrs: Vec<String>,
    /// `inbound` or `outbound`: who dialled the oldest connection.
    pub direction: String,
    /// Unix time (seconds) the oldest connection was established.
    pub since: u64,
    /// Seconds the oldest connection has been up.
    pub connected_secs: u64,
    /// The last round-trip time measured, in milliseconds.
    pub rtt_ms: Option<f64>,
    /// The transport of the connection new streams to it go to: `tcp`, `quic`, or `relay`
    /// for a relayed circuit. Absent when no connection is open (short mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    /// Every live connection to it, oldest first.
    pub connections: Vec<ConnectionSummary>,
    /// For a peer reached only through a relayed circuit: the first relay's peer ID
    /// (`addrs` are then the relay's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<String>,
    /// The transport cipher of the oldest connection (`aes256gcm` or `chacha20poly1305`;
    /// a libp2p peer always gets the latter). Absent when no connection is open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cipher: Option<String>,
}

/// One connection to a peer, as `peers` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionSummary {
    /// `tcp`, `quic` or `relay`.
    pub transport: String,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// The remote address (the relay's for a relayed circuit).
    pub addr: String,
}

/// A way to reach a peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteInfo {
    /// The destination.
    pub peer_id: String,
    /// Its name, if known.
    pub name: Option<String>,
    /// How: `direct` for a link of our own, `relay` through other nodes along the route
    /// table, `dial` for a known address with no live link (dialled on use).
    pub via: String,
    /// Links on the path.
    pub hops: u32,
    /// The neighbour traffic goes through (the destination itself for a direct link);
    /// `None` when the route table has no entry.
    #[serde(default)]
    pub next_hop: Option<String>,
    /// The next hop's name, if known.
    #[serde(default)]
    pub next_hop_name: Option<String>,
    /// The route's metric (sum of link costs), when the route table has it.
    #[serde(default)]
    pub metric: Option<u32>,
    /// Whether we have a direct link to the destination.
    #[serde(default)]
    pub direct: bool,
    /// The remote address of the direct link (or of the first relay, or the dial
    /// address); empty when there is none.
    pub addr: String,
    /// The last round-trip time measured, in milliseconds.
    pub rtt_ms: Option<f64>,
}

/// A peer named in an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerRef {
    /// Its peer ID.
    pub peer_id: String,
    /// Its name, if known.
    pub name: Option<String>,
    /// The remote address of the connection used.
    pub addr: String,
}

/// The header of a ping run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PingStart {
    /// Who is pinged.
    #[serde(flatten)]
    pub peer: PeerRef,
    /// Payload bytes per ping (32 for `/ipfs/ping/1.0.0`).
    pub payload_bytes: u32,
    /// Links between us and the peer: 1 for a direct link; for a relayed one, the route
    /// table's hop count (`None` if it has none).
    #[serde(default)]
    pub hops: Option<u32>,
    /// For a relayed connection, the first relay.
    #[serde(default)]
    pub relay: Option<super::TraceHop>,
    /// The transport of the connection the pings go over: `tcp`, `quic` or `relay`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
}

/// A direct message taken from the inbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirectMessage {
    /// The message's id (hex): a reader that may see it twice (it died between printing
    /// a message and acknowledging it) tells the copies apart by it.
    #[serde(default)]
    pub message_id: String,
    /// The sender's peer ID.
    pub from: String,
    /// The sender's name, if known.
    pub from_name: Option<String>,
    /// Unix time (milliseconds) it was stored.
    pub received_at_ms: u64,
    /// Its length.
    pub bytes: u64,
    /// The message itself.
    #[serde(with = "base64_bytes")]
    pub data: Vec<u8>,
}

/// A message published on a topic, as a subscriber receives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicMessage {
    /// The topic.
    pub topic: String,
    /// The publisher's peer ID (its signature was verified).
    pub from: String,
    /// The publisher's name, if known.
    pub from_name: Option<String>,
    /// The message's id (hex): the same on every node.
    pub message_id: String,
    /// The publisher's sequence number.
    pub seq: u64,
    /// Links the copy that reached us crossed.
    pub hops: u8,
    /// Unix time (milliseconds) it arrived here.
    pub received_at_ms: u64,
    /// Its length.
    pub bytes: u64,
    /// The message itself.
    #[serde(with = "base64_bytes")]
    pub data: Vec<u8>,
}

/// Statistics of a ping run, kept by both the daemon and the client (which prints them
/// even when interrupted).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PingStats {
    /// Who was pinged.
    pub peer_id: String,
    /// Pings sent.
    pub transmitted: u32,
    /// Pings answered.
    pub received: u32,
    /// Round-trip times of the answered pings, in microseconds.
    pub rtts_us: Vec<u64>,
    /// Milliseconds from the first ping to the last answer.
    pub time_ms: u64,
}

impl PingStats {
    /// Records one answered ping.
    pub fn pong(&mut self, rtt: Duration) {
        self.transmitted += 1;
        self.received += 1;
        self.rtts_us
            .push(u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX));
    }

    /// Records one lost ping.
    pub fn lost(&mut self) {
        self.transmitted += 1;
    }

    /// Percentage of pings that got no answer.
    pub fn loss_percent(&self) -> f64 {
        if self.transmitted == 0 {
            return 0.0;
        }
        f64::from(self.transmitted - self.received) * 100.0 / f64::from(self.transmitted)
    }

    /// min, avg, max and mean deviation of the round trips, in milliseconds, as ping(8)
    /// prints them; `None` before the first answer.
    pub fn summary_ms(&self) -> Option<(f64, f64, f64, f64)> {
        if self.rtts_us.is_empty() {
            return None;
        }
        let ms: Vec<f64> = self.rtts_us.iter().map(|&us| us as f64 / 1000.0).collect();
        let n = ms.len() as f64;
        let min = ms.iter().copied().fold(f64::INFINITY, f64::min);
        let max = ms.iter().copied().fold(0.0, f64::max);
        let avg = ms.iter().sum::<f64>() / n;
        // ping(8)'s "mdev" is the standard deviation: sqrt(E[x²] − E[x]²).
        let mean_sq = ms.iter().map(|x| x * x).sum::<f64>() / n;
        let mdev = (mean_sq - avg * avg).max(0.0).sqrt();
        Some((min, avg, max, mdev))
    }
}

/// Which way a perf phase moves bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PerfDirection {
    /// From us to the peer.
    Upload,
    /// From the peer to us.
    Download,
}

/// Bytes moved in one interval of a perf phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerfInterval {
    /// Which phase.
    pub direction: PerfDirection,
    /// Start of the interval, seconds since the phase began.
    pub start_secs: f64,
    /// End of the interval.
    pub end_secs: f64,
    /// Bytes moved in it.
    pub bytes: u64,
}

/// One phase of a perf run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerfPhase {
    /// Bytes moved.
    pub bytes: u64,
    /// Seconds it took.
    pub secs: f64,
    /// Bits per second.
    pub bits_per_sec: f64,
}

impl PerfPhase {
    /// A phase that moved `bytes` in `elapsed`.
    pub fn new(bytes: u64, elapsed: Duration) -> Self {
        let secs = elapsed.as_secs_f64();
        let bits_per_sec = if secs > 0.0 {
            bytes as f64 * 8.0 / secs
        } else {
            0.0
        };
        Self {
            bytes,
            secs,
            bits_per_sec,
        }
    }
}

/// The result of a perf run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerfSummary {
    /// The peer measured.
    pub peer_id: String,
    /// Our upload to it.
    pub upload: PerfPhase,
    /// Our download from it.
    pub download: PerfPhase,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_stats_match_ping8() {
        let mut stats = PingStats::default();
        stats.pong(Duration::from_micros(1000));
        stats.pong(Duration::from_micros(3000));
        stats.lost();
        let (min, avg, max, mdev) = stats.summary_ms().expect("summary");
        assert_eq!((min, avg, max), (1.0, 2.0, 3.0));
        assert!((mdev - 1.0).abs() < 1e-9);
        assert!((stats.loss_percent() - 100.0 / 3.0).abs() < 1e-9);
        assert_eq!(PingStats::default().summary_ms(), None);
    }
}

/// What a DHT lookup found (`dht find`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DhtFound {
    /// The peer looked up.
    pub peer_id: String,
    /// Its name, if known.
    pub name: Option<String>,
    /// The addresses the DHT holds for it (not verified by a dial).
    pub addrs: Vec<String>,
    /// Requests in the chain that led to it (0: our own table knew it).
    pub hops: u32,
    /// Requests the lookup sent.
    pub messages: u32,
    /// Requests that failed or timed out.
    pub failures: u32,
    /// How long the lookup took.
    pub duration_ms: f64,
}

/// One entry of the DHT's routing table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DhtEntry {
    /// The peer.
    pub peer_id: String,
    /// Its name, if known.
    pub name: Option<String>,
    /// Its addresses, most recently confirmed first.
    pub addrs: Vec<String>,
    /// Seconds since we last heard from it.
    pub last_seen_secs: f64,
    /// Whether we hold a connection to it.
    pub connected: bool,
}

/// One non-empty bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DhtBucket {
    /// Peers at XOR distance `[2^index, 2^(index+1))` of our key.
    pub index: usize,
    /// Entries, least recently seen first.
    pub entries: Vec<DhtEntry>,
    /// Replacement candidates, oldest first.
    pub replacements: Vec<DhtEntry>,
}

/// The DHT's routing table (`dht table`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DhtTable {
    /// Our own peer ID, the table's centre.
    pub local: String,
    /// Entries in the table (replacements not counted).
    pub size: usize,
    /// The non-empty buckets, closest first.
    pub buckets: Vec<DhtBucket>,
}

/// A peer the peer store remembers (`pheromone hosts`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostInfo {
    /// Its peer ID.
    pub peer_id: String,
    /// The name it last announced, if any.
    pub name: Option<String>,
    /// Addresses to dial it at, best first.
    pub addrs: Vec<String>,
    /// Unix time (seconds) a connection to it was last up.
    pub last_seen: u64,
    /// How it is reached now: `direct`, `relay` (through another node), or
    /// `not_connected`.
    pub reached: String,
    /// The relay, when reached through one.
    pub relay: Option<String>,
    /// Connections that came up.
    pub successes: u64,
    /// Dials that failed.
    pub failures: u64,
}
