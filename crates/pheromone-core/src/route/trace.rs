//! Path tracing for `pheromone ping --trace`: TRACE probes forwarded hop by hop along the
//! route table, each node appending itself, and TRACE_REPLY answers walked back along the
//! reversed path.
//!
//! Intermediate nodes keep no state for a probe (the path travels in the frame); only the
//! origin remembers its pending traces, bounded by `Config::max_pending_traces`. Part of
//! [`Router`]; nothing here does IO.

use super::record;
use super::state::PendingTrace;
use super::wire::{Message, TraceProbe, TraceReply, TraceStatus, MAX_TRACE_PATH};
use super::{Event, MessageError, Output, Router, TraceError, TraceId, TraceOutcome};
use crate::identity::PeerId;
use std::time::Instant;

impl Router {
    /// Starts tracing the path to `destination`: the answer comes as
    /// [`Event::TraceFinished`] with the same id (at once for this node itself, otherwise
    /// after a round trip or `Config::trace_timeout`).
    pub fn trace(&mut self, now: Instant, destination: PeerId) -> Result<TraceId, TraceError> {
        let id = TraceId(self.next_trace_id);
        if destination == self.local {
            self.next_trace_id += 1;
            self.finish_trace(id, destination, TraceStatus::Reached, vec![self.local]);
            return Ok(id);
        }
        let hop = self.next_hop(&destination).ok_or(TraceError::NoRoute)?;
        if self.traces.len() >= self.config.max_pending_traces {
            return Err(TraceError::TooManyTraces(self.traces.len()));
        }
        self.next_trace_id += 1;
        self.traces.insert(
            id,
            PendingTrace {
                destination,
                deadline: now + self.config.trace_timeout,
            },
        );
        let probe = TraceProbe {
            id: id.0,
            target: destination,
            ttl: self.config.max_hops,
            path: vec![self.local],
        };
        self.send(hop.peer, &Message::Trace(probe));
        Ok(id)
    }

    pub(super) fn handle_trace(
        &mut self,
        _now: Instant,
        from: PeerId,
        mut probe: TraceProbe,
    ) -> Result<(), MessageError> {
        if probe.path.last() != Some(&from) {
            return Err(MessageError::BadTracePath);
        }
        let looped = probe.path.contains(&self.local);
        probe.path.push(self.local);
        let status = if probe.target == self.local {
            Some(TraceStatus::Reached)
        } else if looped {
            Some(TraceStatus::Loop)
        } else if probe.ttl <= 1 || probe.path.len() >= MAX_TRACE_PATH {
            Some(TraceStatus::HopLimit)
        } else {
            match self.next_hop(&probe.target) {
                None => Some(TraceStatus::NoRoute),
                Some(hop) if probe.path.contains(&hop.peer) => Some(TraceStatus::Loop),
                Some(hop) => {
                    probe.ttl -= 1;
                    self.send(hop.peer, &Message::Trace(probe.clone()));
                    None
                }
            }
        };
        if let Some(status) = status {
            // Only the target can say it was reached: it signs (id, path).
            let signature = (status == TraceStatus::Reached)
                .then(|| record::sign_trace(&self.keypair, probe.id, &probe.path));
            let reply = TraceReply {
                id: probe.id,
                target: probe.target,
                status,
                path: probe.path,
                signature,
            };
            // Back to the sender; it is still linked (the frame just came from it).
            self.send(from, &Message::TraceReply(reply));
        }
        Ok(())
    }

    pub(super) fn handle_trace_reply(
        &mut self,
        now: Instant,
        from: PeerId,
        reply: TraceReply,
    ) -> Result<(), MessageError> {
        // We must be on the path just before the sender; the reply walks back one step.
        let Some(at) = reply
            .path
            .iter()
            .position(|p| *p == self.local)
            .filter(|&i| reply.path.get(i + 1) == Some(&from))
        else {
            return Err(MessageError::BadTracePath);
        };
        if at == 0 {
            if reply.status == TraceStatus::Reached {
                let genuine = reply.path.last() == Some(&reply.target)
                    && reply.signature.is_some_and(|sig| {
                        record::verify_trace(&reply.target, reply.id, &reply.path, &sig)
                    });
                if !genuine {
                    return Err(MessageError::BadTraceSignature {
                        target: reply.target,
                    });
                }
            }
            let id = TraceId(reply.id);
            if self.probes.contains_key(&id) {
                self.finish_probe(now, id, &reply);
                return Ok(());
            }
            let pending = self.traces.get(&id).map(|t| t.destination);
            if pending == Some(reply.target) {
                self.traces.remove(&id);
                self.finish_trace(id, reply.target, reply.status, reply.path);
            }
            return Ok(());
        }
        let back = reply.path[at - 1];
        if self.neighbours.contains_key(&back) {
            self.send(back, &Message::TraceReply(reply));
        }
        Ok(())
    }

    pub(super) fn expire_traces(&mut self, now: Instant) {
        let expired: Vec<(TraceId, PeerId)> = self
            .traces
            .iter()
            .filter(|(_, t)| t.deadline <= now)
            .map(|(id, t)| (*id, t.destination))
            .collect();
        for (id, destination) in expired {
            self.traces.remove(&id);
            self.finish_trace(id, destination, TraceStatus::Timeout, vec![self.local]);
        }
    }

    fn finish_trace(
        &mut self,
        id: TraceId,
        destination: PeerId,
        status: TraceStatus,
        path: Vec<PeerId>,
    ) {
        self.outputs
            .push_back(Output::Event(Event::TraceFinished(TraceOutcome {
                id,
                destination,
                status,
                path,
            })));
    }
}
