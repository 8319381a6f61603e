//! Counters a node keeps about its broadcast traffic: what it delivered, forwarded, dropped
//! and why, and how many bytes went to control frames.
//!
//! Plain monotonically increasing integers, copied out by [`Broadcast::metrics`]
//! (super::Broadcast::metrics); nothing here decides anything.

/// Why received frames were dropped, one counter per reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DropCounts {
    /// Frames longer than the configured maximum (not parsed).
    pub oversized: u64,
    /// Frames that failed to parse (truncated, bad lengths, bad varints, trailing bytes …).
    pub malformed: u64,
    /// Frames of an unknown wire version.
    pub unsupported_version: u64,
    /// Messages whose origin signature did not verify (forged or tampered).
    pub bad_signature: u64,
    /// Frames from a peer that is not a neighbour.
    pub not_a_neighbour: u64,
    /// Interest announcements for topics beyond `Config::max_topics` (less the room kept
    /// for local subscriptions) or beyond the neighbour's `Config::max_topics_per_neighbour`.
    pub too_many_topics: u64,
}

impl DropCounts {
    /// Sum over all reasons.
    pub fn total(&self) -> u64 {
        self.oversized
            + self.malformed
            + self.unsupported_version
            + self.bad_signature
            + self.not_a_neighbour
            + self.too_many_topics
    }
}

/// Counters of one node since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metrics {
    /// Messages this node published.
    pub published: u64,
    /// Messages handed to local subscribers.
    pub delivered: u64,
    /// Sum of the hop counts of those messages' first copies (links crossed); divided by
    /// `delivered` it is the mean path length, which tools compare with shortest paths.
    pub delivered_hops: u64,
    /// GOSSIP frames received (every copy, valid or not).
    pub gossip_received: u64,
    /// Valid copies of messages already seen (duplicates and replays); never delivered
    /// nor forwarded.
    pub duplicates: u64,
    /// GOSSIP frames sent (forwards, GRAFT answers and own messages).
    pub gossip_sent: u64,
    /// Bytes of GOSSIP frames sent.
    pub gossip_bytes_sent: u64,
    /// CONTROL frames sent.
    pub control_sent: u64,
    /// Bytes of CONTROL frames sent.
    pub control_bytes_sent: u64,
    /// CONTROL frames received and accepted.
    pub control_received: u64,
    /// IHAVE entries sent (first announcements and re-announcements).
    pub ihave_sent: u64,
    /// Re-announcements sent because a neighbour did not answer in time.
    pub retransmits: u64,
    /// GRAFT entries sent.
    pub grafts_sent: u64,
    /// PRUNE entries sent.
    pub prunes_sent: u64,
    /// GRAFTs received for messages no longer (or never) in our history.
    pub grafts_unanswerable: u64,
    /// GRAFTs refused: the message was already answered `Config::max_graft_answers` times
    /// to that neighbour, or the neighbour spent its GRAFT byte budget.
    pub grafts_refused: u64,
    /// Missing messages given up on after every GRAFT attempt failed.
    pub missing_given_up: u64,
    /// IHAVE entries ignored because `Config::max_missing` messages were already missing.
    pub missing_dropped: u64,
    /// Seen-cache entries evicted before their time-to-live because the cache was full.
    pub seen_evicted_early: u64,
    /// Frames dropped, by reason.
    pub dropped: DropCounts,
}
