//! What happened lately, for the dashboard: peers coming and going, pings, broadcasts
//! published and delivered, route changes, exec runs and forwards, each one line with a
//! few fields. A bounded ring of recent events plus a channel that pushes each new one to
//! the dashboard's live streams, and per-topic broadcast tallies (bounded too).
//!
//! Recording is cheap and never waits: a full channel just means a slow viewer misses an
//! event (it still has the ring). Nothing here touches the network.

use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::SystemTime;
use tokio::sync::broadcast;

/// Recent events kept for a page that opens later.
const RING: usize = 200;
/// Topics tallied; later topics are not tallied (their events still show).
const MAX_TOPICS: usize = 256;
/// Events buffered per live viewer before it misses some.
const CHANNEL: usize = 256;

/// One thing that happened.
#[derive(Debug, Clone, Serialize)]
pub struct ActivityEvent {
    /// Unix time in milliseconds.
    pub at_ms: u64,
    /// What kind: `peer_connected`, `peer_disconnected`, `ping`, `broadcast_published`,
    /// `broadcast_delivered`, `route_added`, `route_changed` (changed or lost), `exec`,
    /// `forward`.
    pub kind: &'static str,
    /// One line for a person.
    pub summary: String,
    /// The peer concerned (peer ID), if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_id: Option<String>,
    /// The broadcast topic, if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// A number that goes with it: RTT in ms for a ping, bytes for a broadcast.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
}

/// What went through one topic here.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TopicTally {
    /// The topic.
    pub topic: String,
    /// Messages this node published.
    pub published: u64,
    /// Messages delivered to this node's subscribers.
    pub delivered: u64,
    /// Payload bytes of both.
    pub bytes: u64,
    /// Unix time (ms) of the last one.
    pub last_at_ms: u64,
    /// Who sent the last one (peer ID).
    pub last_from: String,
}

/// The log; one per daemon, shared by the control handlers and the dashboard.
pub struct Activity {
    ring: Mutex<VecDeque<ActivityEvent>>,
    topics: Mutex<BTreeMap<String, TopicTally>>,
    tx: broadcast::Sender<ActivityEvent>,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            ring: Mutex::new(VecDeque::with_capacity(RING)),
            topics: Mutex::new(BTreeMap::new()),
            tx: broadcast::channel(CHANNEL).0,
        }
    }
}

/// Unix time now, in milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

impl Activity {
    /// Records an event that happens now.
    pub fn record(
        &self,
        kind: &'static str,
        summary: String,
        peer_id: Option<String>,
        topic: Option<String>,
        value: Option<f64>,
    ) {
        self.record_at(now_ms(), kind, summary, peer_id, topic, value);
    }

    /// Records an event that happened at `at_ms` (Unix ms), a moment ago.
    pub fn record_at(
        &self,
        at_ms: u64,
        kind: &'static str,
        summary: String,
        peer_id: Option<String>,
        topic: Option<String>,
        value: Option<f64>,
    ) {
        let event = ActivityEvent {
            at_ms,
            kind,
            summary,
            peer_id,
            topic,
            value,
        };
        {
            let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
            if ring.len() == RING {
                ring.pop_front();
            }
            ring.push_back(event.clone());
        }
        // No viewer: nobody to tell.
        let _ = self.tx.send(event);
    }

    /// Records a broadcast message published here (`from` is us) or delivered here.
    pub fn broadcast(
        &self,
        topic: &str,
        from: &str,
        from_name: Option<&str>,
        bytes: u64,
        published: bool,
    ) {
        {
            let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
            if topics.len() < MAX_TOPICS || topics.contains_key(topic) {
                let t = topics
                    .entry(topic.to_owned())
                    .or_insert_with(|| TopicTally {
                        topic: topic.to_owned(),
                        ..TopicTally::default()
                    });
                if published {
                    t.published += 1;
                } else {
                    t.delivered += 1;
                }
                t.bytes += bytes;
                t.last_at_ms = now_ms();
                t.last_from = from.to_owned();
            }
        }
        let who = from_name.map_or_else(|| short_id(from), str::to_owned);
        let (kind, summary) = if published {
            (
                "broadcast_published",
                format!("published {bytes} B on {topic}"),
            )
        } else {
            (
                "broadcast_delivered",
                format!("{bytes} B on {topic} from {who}"),
            )
        };
        self.record(
            kind,
            summary,
            Some(from.to_owned()),
            Some(topic.to_owned()),
            Some(bytes as f64),
        );
    }

    /// The recent events, oldest first.
    pub fn recent(&self) -> Vec<ActivityEvent> {
        self.ring
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// The per-topic tallies, by topic.
    pub fn topics(&self) -> Vec<TopicTally> {
        self.topics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// New events as they are recorded.
    pub fn subscribe(&self) -> broadcast::Receiver<ActivityEvent> {
        self.tx.subscribe()
    }
}

/// The first characters of a peer ID's tail, for a summary line.
pub fn short_id(id: &str) -> String {
    let tail: String = id
        .chars()
        .rev()
        .take(6)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_and_the_topics_are_bounded() {
        let a = Activity::default();
        for i in 0..(RING + 10) {
            a.record("ping", format!("{i}"), None, None, None);
        }
        let recent = a.recent();
        assert_eq!(recent.len(), RING);
        assert_eq!(recent[0].summary, "10");
        for i in 0..(MAX_TOPICS + 5) {
            a.broadcast(&format!("t{i}"), "me", None, 1, true);
        }
        a.broadcast("t0", "you", Some("luda"), 5, false);
        let topics = a.topics();
        assert_eq!(topics.len(), MAX_TOPICS);
        let t0 = topics.iter().find(|t| t.topic == "t0").expect("t0");
        assert_eq!((t0.published, t0.delivered, t0.bytes), (1, 1, 6));
        assert_eq!(
            a.recent().last().map(|e| e.kind),
            Some("broadcast_delivered")
        );
    }
}
