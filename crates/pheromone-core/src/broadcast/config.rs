//! Tunables of the broadcast state machine: strategy, timers, and every size cap.
//!
//! Only plain data lives here; nothing in this file reads a clock or touches the network.
//! Every cap bounds memory or work that a hostile neighbour could otherwise grow at will.

use std::time::Duration;

/// How a node forwards a message it has not seen before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Strategy {
    /// Forward every new message to every neighbour that wants its topic, except the one it
    /// came from. Simple and fast to converge, but every link carries every message: a node
    /// receives about as many copies as it has interested neighbours.
    Flood,
    /// Epidemic broadcast tree (Plumtree): eager push along a spanning tree that forms from
    /// the first-arriving copies, lazy "I have" announcements to the other neighbours, and
    /// GRAFT / PRUNE to repair the tree. About one copy per node per message.
    #[default]
    Tree,
}

impl Strategy {
    /// The lowercase name used on the command line and in reports (`flood`, `tree`).
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Flood => "flood",
            Strategy::Tree => "tree",
        }
    }
}

impl std::str::FromStr for Strategy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "flood" => Ok(Strategy::Flood),
            "tree" | "plumtree" => Ok(Strategy::Tree),
            other => Err(format!(
                "unknown strategy {other:?} (expected flood or tree)"
            )),
        }
    }
}

/// Configuration of one [`Broadcast`](super::Broadcast) node.
///
/// The defaults suit links with round-trip times up to a few hundred milliseconds; every
/// timer is a plain [`Duration`] so that a simulator can run them on a virtual clock.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Forwarding strategy. Default: [`Strategy::Tree`].
    pub strategy: Strategy,
    /// Tree strategy: a message is also pushed to every interested neighbour, as flooding
    /// does, while its copy has crossed fewer than this many links; beyond that it follows
    /// the tree. 0 is the pure tree; the default, 1, has the origin push to all its
    /// neighbours, which costs about 1% more copies and shortens every path that would
    /// have left the origin the long way round the tree (a neighbour across a lazy link
    /// gets the message in one hop, not many). Each further step trades copies for
    /// latency; at 1,000 nodes of degree 8 copies per node are 1.00 (0), 1.01 (1),
    /// 1.10 (2) and 1.58 (3) — `pheromone-sim broadcast --eager-hops 0,1,2,3`.
    pub eager_hops: u8,
    /// Largest payload `publish` accepts and a received message may carry (bytes).
    pub max_data_len: usize,
    /// Longest topic name (bytes of UTF-8).
    pub max_topic_len: usize,
    /// Most topics this node keeps state for (its own subscriptions plus topics neighbours
    /// asked for). Interest in further topics is ignored and counted.
    pub max_topics: usize,
    /// Most topics one neighbour's interest can make us track (topics it advertised a
    /// finite distance for). Further interest from it is ignored and counted, so one
    /// neighbour advertising junk topics neither fills our table nor spreads more than
    /// this many of them to the rest of the mesh.
    pub max_topics_per_neighbour: usize,
    /// Room in `max_topics` that only local subscriptions may take: neighbours' interest
    /// never creates a topic past `max_topics - reserved_local_topics`, so junk interest
    /// cannot block `subscribe`.
    pub reserved_local_topics: usize,
    /// Most times one message is sent to one neighbour in answer to its GRAFTs (the first
    /// answer plus retries after a lost copy); further GRAFTs for it are refused.
    pub max_graft_answers: u8,
    /// Bytes of GRAFT answers a neighbour may draw at once (the token bucket's depth).
    pub graft_serve_burst: usize,
    /// Bytes per second of GRAFT answers a neighbour may draw on average (the bucket's
    /// refill rate). GRAFTs beyond the budget are refused and counted.
    pub graft_serve_rate: usize,
    /// Most entries one control frame may carry; longer batches are split over frames.
    pub max_control_entries: usize,
    /// How long a message id stays in the seen-cache. A copy arriving within this window
    /// is neither delivered nor forwarded.
    pub seen_ttl: Duration,
    /// Most ids the seen-cache holds; the oldest is evicted first when it is full.
    pub seen_capacity: usize,
    /// How long a received message is kept to answer GRAFTs and re-announce it.
    pub history_ttl: Duration,
    /// Most messages kept in that history; the oldest is dropped first.
    pub history_capacity: usize,
    /// Control entries (IHAVE, ACK) wait at most this long so that several fit one frame.
    /// GRAFT, PRUNE and interest changes are sent at once.
    pub control_interval: Duration,
    /// INTEREST and TREE advertisements are restated to a neighbour at most this often,
    /// riding on control frames that go out anyway, so that a lost one is repaired.
    pub state_refresh: Duration,
    /// After the first IHAVE of an unknown message, wait this long for the eager copy
    /// before sending GRAFT to the announcer (Plumtree's first timeout).
    pub graft_timeout: Duration,
    /// A node with no tree edge for a topic waits this long after the first IHAVE, then
    /// grafts the announcer whose copy took the fewest hops (the tree grows breadth-first).
    pub tree_join_delay: Duration,
    /// After a GRAFT, wait this long for the message before asking the next announcer.
    pub graft_retry_timeout: Duration,
    /// Most GRAFTs sent for one missing message before giving up on it.
    pub max_graft_attempts: u8,
    /// A neighbour that was sent a message or an announcement and has not said "I have it"
    /// within this long is announced the message again (doubling each time).
    pub retransmit_timeout: Duration,
    /// Most re-announcements of one message to one neighbour.
    pub max_retransmits: u8,
    /// Largest interest distance advertised; a subscriber further away than this many
    /// relaying hops is unreachable. Bounds the count-to-infinity after an unsubscribe.
    pub interest_horizon: u8,
    /// Most IHAVE announcers remembered for one missing message.
    pub max_announcers: usize,
    /// Most missing messages tracked at once (IHAVE for ids we do not have).
    pub max_missing: usize,
    /// Sequence number of this node's first published message. Set it to something that
    /// grows across restarts (such as wall-clock nanoseconds at start-up) so that a
    /// restarted node's messages are not mistaken for replays of its previous life's.
    pub first_seq: u64,
    /// Whether a node's own published messages are delivered to its local subscribers.
    pub deliver_own: bool,
    /// Per-origin ordering of deliveries (see [`OrderedDelivery`](super::OrderedDelivery)):
    /// how long a message waits for an earlier one of its origin before it is delivered
    /// anyway. `None` delivers every message the moment it arrives. Default 2 s (a few
    /// pull timeouts).
    pub order_window: Option<Duration>,
    /// Messages held back per origin while waiting for a gap to fill.
    pub order_max_held: usize,
    /// Origins whose sequence the ordering remembers.
    pub order_max_origins: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            strategy: Strategy::Tree,
            eager_hops: 1,
            max_data_len: 64 * 1024,
            max_topic_len: 256,
            max_topics: 1024,
            max_topics_per_neighbour: 64,
            reserved_local_topics: 64,
            max_graft_answers: 2,
            graft_serve_burst: 1024 * 1024,
            graft_serve_rate: 256 * 1024,
            max_control_entries: 4096,
            seen_ttl: Duration::from_secs(120),
            seen_capacity: 100_000,
            history_ttl: Duration::from_secs(30),
            history_capacity: 4096,
            control_interval: Duration::from_millis(200),
            state_refresh: Duration::from_secs(1),
            graft_timeout: Duration::from_millis(250),
            tree_join_delay: Duration::ZERO,
            graft_retry_timeout: Duration::from_millis(300),
            max_graft_attempts: 8,
            retransmit_timeout: Duration::from_millis(1500),
            max_retransmits: 4,
            interest_horizon: 32,
            max_announcers: 16,
            max_missing: 4096,
            first_seq: 1,
            deliver_own: false,
            order_window: Some(Duration::from_secs(2)),
            order_max_held: 4096,
            order_max_origins: 4096,
        }
    }
}

impl Config {
    /// The default configuration with `strategy`.
    pub fn with_strategy(strategy: Strategy) -> Self {
        Self {
            strategy,
            ..Self::default()
        }
    }

    /// Longest frame a neighbour may send us: a full message plus its envelope, or a full
    /// control batch, whichever is larger.
    pub fn max_frame_len(&self) -> usize {
        let gossip = super::wire::GOSSIP_OVERHEAD + self.max_topic_len + self.max_data_len;
        let control = super::wire::CONTROL_OVERHEAD
            + self.max_control_entries * (super::wire::CONTROL_ENTRY_MAX + self.max_topic_len);
        gossip.max(control)
    }
}
