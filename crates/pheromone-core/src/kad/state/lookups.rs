//! The lookups of [`Kademlia`]: starting one, stepping it as answers and failures come
//! in, and ending it with a [`QueryResult`]. An `impl` block of the state machine; the
//! bookkeeping of one lookup's candidates is `query.rs`'s.

use super::{Kademlia, Purpose, Query};
use crate::identity::PeerId;
use crate::kad::event::{Event, Output, QueryId, QueryKind, QueryOutcome, QueryResult};
use crate::kad::key::Key;
use crate::kad::query::Lookup;
use crate::kad::wire::Request;
use crate::overlay::RequestId;
use bytes::Bytes;
use std::time::Instant;

impl Kademlia {
    pub(super) fn new_query_id(&mut self) -> QueryId {
        let id = QueryId(self.next_query);
        self.next_query += 1;
        id
    }

    pub(super) fn start_query(
        &mut self,
        now: Instant,
        kind: QueryKind,
        key_bytes: Vec<u8>,
        target: Option<PeerId>,
    ) -> QueryId {
        let id = self.new_query_id();
        if self.queries.len() >= self.config.max_queries || self.table.is_empty() {
            self.finish_now(id, kind, QueryOutcome::Refused);
            return id;
        }
        let key = Key::from_preimage(&key_bytes);
        let mut lookup = Lookup::new(key, target, self.config.max_per_subnet_lookup);
        // Seeded with more than `k`: the ones beyond are asked only in place of seeds that
        // fail or stall, which under churn saves waiting for answers from further away.
        for entry in self.table.closest(&key, self.config.k.saturating_mul(2)) {
            lookup.seed(entry.peer, &entry.key, entry.addrs.clone());
        }
        self.queries.insert(
            id,
            Query {
                kind,
                key_bytes: Bytes::from(key_bytes),
                lookup,
                started: now,
                deadline: now + self.config.query_timeout,
            },
        );
        self.step_query(id, now);
        id
    }

    pub(super) fn finish_now(&mut self, id: QueryId, kind: QueryKind, outcome: QueryOutcome) {
        self.outputs
            .push_back(Output::Event(Event::QueryFinished(QueryResult {
                id,
                kind,
                outcome,
                closest: Vec::new(),
                hops: 0,
                messages: 0,
                failures: 0,
                duration: std::time::Duration::ZERO,
            })));
    }

    pub(super) fn step_queries(&mut self, now: Instant) {
        let ids: Vec<QueryId> = self.queries.keys().copied().collect();
        for id in ids {
            self.step_query(id, now);
        }
    }

    pub(super) fn step_query(&mut self, id: QueryId, now: Instant) {
        let (alpha, k) = (self.config.alpha.max(1), self.config.k.max(1));
        loop {
            let Some(q) = self.queries.get(&id) else {
                return;
            };
            let Some(next) = q.lookup.next(alpha, k) else {
                break;
            };
            let request = Request::FindNode {
                key: q.key_bytes.to_vec(),
            };
            let rid = self.send(
                now,
                next.peer,
                next.addrs,
                &request,
                Purpose::Lookup(id, next.distance),
            );
            if let Some(q) = self.queries.get_mut(&id) {
                q.lookup.sent(&next.distance, rid.0);
            }
        }
        if self
            .queries
            .get(&id)
            .is_some_and(|q| q.lookup.is_finished(k))
        {
            self.finish(id, now, None);
        }
    }

    pub(super) fn finish(&mut self, id: QueryId, now: Instant, forced: Option<QueryOutcome>) {
        let Some(q) = self.queries.remove(&id) else {
            return;
        };
        for rid in q.lookup.waiting() {
            if let Some(p) = self.requests.get_mut(&RequestId(rid)) {
                p.purpose = Purpose::Orphan;
            }
        }
        let (outcome, hops) = match (&q.lookup.found, forced, q.kind) {
            (Some((addrs, hops)), _, _) => (QueryOutcome::Found(addrs.clone()), *hops),
            (None, Some(outcome), _) => (outcome, q.lookup.max_hop),
            (None, None, QueryKind::FindPeer(_)) => (QueryOutcome::NotFound, q.lookup.max_hop),
            (None, None, _) => (QueryOutcome::Completed, q.lookup.max_hop),
        };
        if q.kind == QueryKind::Bootstrap && !self.table.is_empty() {
            // As libp2p does after its self-lookup: the buckets far from us are filled by
            // lookups of random keys right away rather than at the first refresh, and a
            // bucket the self-lookup left empty gets a lookup aimed into it.
            self.refresh_random(now);
            self.refresh_empty_buckets(now);
        }
        let k = self.config.k;
        self.outputs
            .push_back(Output::Event(Event::QueryFinished(QueryResult {
                id,
                kind: q.kind,
                outcome,
                closest: q.lookup.closest_succeeded(k),
                hops,
                messages: q.lookup.messages,
                failures: q.lookup.failures,
                duration: now.saturating_duration_since(q.started),
            })));
    }
}
