//! [`Kademlia`] as an [`Overlay`]: neighbours, requests and responses, timers and outputs
//! mapped onto the state machine's own methods.

use super::Kademlia;
use crate::identity::PeerId;
use crate::kad::event::{Event, Output};
use crate::kad::KadError;
use crate::overlay::{InboundId, Neighbour, Overlay, RequestFailure, RequestId, Wire};
use std::time::Instant;

impl Overlay for Kademlia {
    type Event = Event;
    type Error = KadError;

    fn protocol(&self) -> Option<&str> {
        Some(&self.config.protocol)
    }

    fn wire(&self) -> Wire {
        Wire::Requests
    }

    fn max_message_len(&self) -> usize {
        crate::kad::wire::MAX_RESPONSE_LEN
    }

    fn local_peer_id(&self) -> PeerId {
        self.local
    }

    fn neighbour_up(&mut self, now: Instant, neighbour: Neighbour) {
        self.add_neighbour(now, neighbour);
    }

    /// The peer's table entry stays: connections come and go, liveness checks decide.
    fn neighbour_down(&mut self, _now: Instant, peer: PeerId) {
        self.connected.remove(&peer);
        self.observed.remove(&peer);
    }

    fn handle_frame(&mut self, _now: Instant, from: PeerId, _frame: &[u8]) -> Result<(), KadError> {
        Err(KadError::NotAFrame { peer: from })
    }

    fn handle_request(
        &mut self,
        now: Instant,
        from: PeerId,
        id: InboundId,
        request: &[u8],
    ) -> Result<(), KadError> {
        if request.len() > crate::kad::wire::MAX_REQUEST_LEN {
            self.metrics.malformed += 1;
            return Err(KadError::Wire {
                peer: from,
                source: crate::kad::WireError::FrameTooLarge {
                    len: request.len() as u64,
                    max: crate::kad::wire::MAX_REQUEST_LEN,
                },
            });
        }
        self.on_request(now, from, id, request)
    }

    fn handle_response(
        &mut self,
        now: Instant,
        id: RequestId,
        response: Result<&[u8], RequestFailure>,
    ) -> Result<(), KadError> {
        match response {
            Ok(bytes) => self.on_response(now, id, bytes),
            Err(reason) => {
                let Some(pending) = self.take_request(id) else {
                    self.metrics.unsolicited += 1;
                    return Err(KadError::UnknownRequest(id.0));
                };
                self.on_failure(now, id, pending, reason);
                self.step_queries(now);
                Ok(())
            }
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.run_timers(now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.next_timer()
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.next_output()
    }
}
