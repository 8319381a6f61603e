//! The [`Router`] as an [`Overlay`]: neighbours, frames, timers and outputs mapped onto
//! the state machine's own methods.

use super::Router;
use crate::identity::PeerId;
use crate::overlay::{
    self, InboundId, Neighbour as NewNeighbour, Overlay, RequestFailure, RequestId, Wire,
};
use crate::route::{Event, MessageError};
use std::time::Instant;

impl Overlay for Router {
    type Event = Event;
    type Error = MessageError;

    fn protocol(&self) -> Option<&str> {
        Some(crate::route::PROTOCOL)
    }

    fn wire(&self) -> Wire {
        Wire::Frames
    }

    fn max_message_len(&self) -> usize {
        self.config.max_frame_len
    }

    fn local_peer_id(&self) -> PeerId {
        self.local
    }

    fn neighbour_up(&mut self, now: Instant, neighbour: NewNeighbour) {
        self.neighbour_up_with_cost(now, neighbour.peer, self.config.default_link_cost);
    }

    fn neighbour_down(&mut self, now: Instant, peer: PeerId) {
        self.remove_neighbour(now, peer);
    }

    fn handle_frame(
        &mut self,
        now: Instant,
        from: PeerId,
        frame: &[u8],
    ) -> Result<(), MessageError> {
        self.receive_frame(now, from, frame)
    }

    fn handle_request(
        &mut self,
        _now: Instant,
        _from: PeerId,
        _id: InboundId,
        _request: &[u8],
    ) -> Result<(), MessageError> {
        Err(MessageError::NotARequest)
    }

    fn handle_response(
        &mut self,
        _now: Instant,
        _id: RequestId,
        _response: Result<&[u8], RequestFailure>,
    ) -> Result<(), MessageError> {
        Err(MessageError::NotARequest)
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.run_timers(now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.next_timer()
    }

    fn poll_output(&mut self) -> Option<overlay::Output<Event>> {
        self.outputs.pop_front()
    }
}
