//! Per-protocol counters and the table that hands them out.
//!
//! A protocol gets its own label only if this node serves it (a handler was registered) or
//! it is one of the library's own protocols; every other name — whatever a peer proposes,
//! or a protocol we only dial — is counted under `other`, so a peer cannot grow the label
//! set. The table is capped, entries are never removed (counters stay monotonic), and a
//! stream looks its entry up once, at negotiation, then keeps the `Arc`.

use super::histogram::{AtomicHistogram, LATENCY_BOUNDS};
use crate::connection::Direction;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// The label of every protocol without one of its own.
pub(crate) const OTHER: &str = "other";

/// Most protocols with a label of their own; later registrations count as `other`.
const MAX_LABELLED: usize = 128;

/// The library's protocols, labelled even when this node only dials them.
const BUILTIN: &[&str] = &[
    crate::protocols::ping::PROTOCOL,
    crate::protocols::identify::PROTOCOL,
    crate::protocols::perf::PROTOCOL,
    crate::routing::PROTOCOL,
    crate::relay::PROTOCOL,
    crate::exec::PROTOCOL,
    pheromone_core::kad::DEFAULT_PROTOCOL,
    pheromone_core::kad::IPFS_PROTOCOL,
    crate::pubsub::PROTOCOL,
];

/// What passed over the streams of one protocol label.
#[derive(Debug)]
pub(crate) struct ProtocolCounters {
    pub(crate) streams_inbound: AtomicU64,
    pub(crate) streams_outbound: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) requests_ok: AtomicU64,
    pub(crate) requests_failed: AtomicU64,
    pub(crate) request_duration: AtomicHistogram,
}

impl ProtocolCounters {
    fn new() -> Self {
        Self {
            streams_inbound: AtomicU64::new(0),
            streams_outbound: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            requests_ok: AtomicU64::new(0),
            requests_failed: AtomicU64::new(0),
            request_duration: AtomicHistogram::new(LATENCY_BOUNDS),
        }
    }

    /// Counts a stream of this protocol, negotiated in `direction`.
    pub(crate) fn stream_opened(&self, direction: Direction) {
        match direction {
            Direction::Inbound => &self.streams_inbound,
            Direction::Outbound => &self.streams_outbound,
        }
        .fetch_add(1, Ordering::Relaxed);
    }
}

/// Protocol name → counters, plus `other`.
#[derive(Debug)]
pub(crate) struct ProtocolTable {
    labelled: RwLock<HashMap<Box<str>, Arc<ProtocolCounters>, foldhash::fast::RandomState>>,
    other: Arc<ProtocolCounters>,
}

impl ProtocolTable {
    pub(crate) fn new() -> Self {
        let table = Self {
            labelled: RwLock::new(HashMap::default()),
            other: Arc::new(ProtocolCounters::new()),
        };
        for p in BUILTIN {
            table.register(p);
        }
        table
    }

    /// Gives `protocol` a label of its own (this node serves it), within the cap.
    pub(crate) fn register(&self, protocol: &str) {
        let mut labelled = self.labelled.write().unwrap_or_else(|e| e.into_inner());
        if labelled.len() < MAX_LABELLED && !labelled.contains_key(protocol) {
            labelled.insert(protocol.into(), Arc::new(ProtocolCounters::new()));
        }
    }

    /// The counters `protocol`'s streams count into: its own, or `other`'s.
    pub(crate) fn get(&self, protocol: &str) -> Arc<ProtocolCounters> {
        self.labelled
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(protocol)
            .unwrap_or(&self.other)
            .clone()
    }

    /// Every label and its counters, sorted by label, `other` last.
    pub(crate) fn entries(&self) -> Vec<(String, Arc<ProtocolCounters>)> {
        let mut out: Vec<(String, Arc<ProtocolCounters>)> = self
            .labelled
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.push((OTHER.to_owned(), self.other.clone()));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_protocols_share_other() {
        let table = ProtocolTable::new();
        let a = table.get("/evil/1");
        let b = table.get("/evil/2");
        assert!(Arc::ptr_eq(&a, &b));
        table.register("/demo/1.0.0");
        let demo = table.get("/demo/1.0.0");
        assert!(!Arc::ptr_eq(&demo, &a));
        assert!(Arc::ptr_eq(&demo, &table.get("/demo/1.0.0")));
        let names: Vec<String> = table.entries().into_iter().map(|(n, _)| n).collect();
        assert!(names.contains(&"/demo/1.0.0".to_owned()));
        assert_eq!(names.last().map(String::as_str), Some(OTHER));
    }

    #[test]
    fn the_label_set_is_capped() {
        let table = ProtocolTable::new();
        for i in 0..1000 {
            table.register(&format!("/p/{i}"));
        }
        assert_eq!(table.entries().len(), MAX_LABELLED + 1);
    }
}
