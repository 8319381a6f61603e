//! What one simulated node runs: a [`Stack`] of overlays, each a real
//! [`Overlay`](pheromone_core::overlay::Overlay) from the core behind an object-safe
//! wrapper, so that one node can run Kademlia, routing, broadcast and the connection
//! manager side by side and the simulator can hand each its own protocol's traffic.
//!
//! Nothing here knows a particular protocol; the wrapper only erases the overlay's types
//! (its events are mapped into the scenario's event type `E`, its errors into text).

use pheromone_core::identity::PeerId;
use pheromone_core::overlay::{
    DialFailure, DialId, InboundId, Neighbour, Output, Overlay, RequestFailure, RequestId, Wire,
};
use std::any::Any;
use std::time::Instant;

/// An [`Overlay`] with its types erased, as the simulator drives it. Implemented for every
/// overlay by [`slot`]; scenarios never implement it themselves.
pub trait SimOverlay<E>: Any {
    /// [`Overlay::protocol`].
    fn protocol(&self) -> Option<&str>;
    /// [`Overlay::wire`].
    fn wire(&self) -> Wire;
    /// [`Overlay::neighbour_up`].
    fn neighbour_up(&mut self, now: Instant, neighbour: Neighbour);
    /// [`Overlay::neighbour_down`].
    fn neighbour_down(&mut self, now: Instant, peer: PeerId);
    /// [`Overlay::handle_frame`], the error as text.
    fn handle_frame(&mut self, now: Instant, from: PeerId, frame: &[u8]) -> Result<(), String>;
    /// [`Overlay::handle_request`], the error as text.
    fn handle_request(
        &mut self,
        now: Instant,
        from: PeerId,
        id: InboundId,
        request: &[u8],
    ) -> Result<(), String>;
    /// [`Overlay::handle_response`], the error as text.
    fn handle_response(
        &mut self,
        now: Instant,
        id: RequestId,
        response: Result<&[u8], RequestFailure>,
    ) -> Result<(), String>;
    /// [`Overlay::handle_dial_result`].
    fn handle_dial_result(&mut self, now: Instant, id: DialId, result: Result<PeerId, DialFailure>);
    /// [`Overlay::handle_timeout`].
    fn handle_timeout(&mut self, now: Instant);
    /// [`Overlay::poll_timeout`].
    fn poll_timeout(&self) -> Option<Instant>;
    /// [`Overlay::poll_output`], the event mapped into `E`.
    fn poll_output(&mut self) -> Option<Output<E>>;
    /// The overlay itself, for typed access.
    fn as_any(&self) -> &dyn Any;
    /// The overlay itself, for typed access.
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

/// An overlay and the map of its events into the scenario's event type.
struct Slot<O: Overlay, E> {
    overlay: O,
    wrap: fn(O::Event) -> E,
}

impl<O, E> SimOverlay<E> for Slot<O, E>
where
    O: Overlay + 'static,
    E: 'static,
{
    fn protocol(&self) -> Option<&str> {
        self.overlay.protocol()
    }

    fn wire(&self) -> Wire {
        self.overlay.wire()
    }

    fn neighbour_up(&mut self, now: Instant, neighbour: Neighbour) {
        self.overlay.neighbour_up(now, neighbour);
    }

    fn neighbour_down(&mut self, now: Instant, peer: PeerId) {
        self.overlay.neighbour_down(now, peer);
    }

    fn handle_frame(&mut self, now: Instant, from: PeerId, frame: &[u8]) -> Result<(), String> {
        self.overlay
            .handle_frame(now, from, frame)
            .map_err(|e| e.to_string())
    }

    fn handle_request(
        &mut self,
        now: Instant,
        from: PeerId,
        id: InboundId,
        request: &[u8],
    ) -> Result<(), String> {
        self.overlay
            .handle_request(now, from, id, request)
            .map_err(|e| e.to_string())
    }

    fn handle_response(
        &mut self,
        now: Instant,
        id: RequestId,
        response: Result<&[u8], RequestFailure>,
    ) -> Result<(), String> {
        self.overlay
            .handle_response(now, id, response)
            .map_err(|e| e.to_string())
    }

    fn handle_dial_result(
        &mut self,
        now: Instant,
        id: DialId,
        result: Result<PeerId, DialFailure>,
    ) {
        self.overlay.handle_dial_result(now, id, result);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.overlay.handle_timeout(now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.overlay.poll_timeout()
    }

    fn poll_output(&mut self) -> Option<Output<E>> {
        Some(self.overlay.poll_output()?.map_event(self.wrap))
    }

    fn as_any(&self) -> &dyn Any {
        &self.overlay
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        &mut self.overlay
    }
}

/// Wraps `overlay` for a node's [`Stack`]; `wrap` turns its events into the scenario's.
pub fn slot<O, E>(overlay: O, wrap: fn(O::Event) -> E) -> Box<dyn SimOverlay<E>>
where
    O: Overlay + 'static,
    E: 'static,
{
    Box::new(Slot { overlay, wrap })
}

/// The overlays one node runs, in the order given.
pub struct Stack<E> {
    pub(crate) slots: Vec<Box<dyn SimOverlay<E>>>,
}

impl<E: 'static> Stack<E> {
    /// A stack of `slots` (see [`slot`]).
    pub fn new(slots: Vec<Box<dyn SimOverlay<E>>>) -> Self {
        Self { slots }
    }

    /// The overlay of type `O`, if the node runs one.
    pub fn get<O: 'static>(&self) -> Option<&O> {
        self.slots
            .iter()
            .find_map(|s| s.as_any().downcast_ref::<O>())
    }

    /// The overlay of type `O`, mutably.
    pub fn get_mut<O: 'static>(&mut self) -> Option<&mut O> {
        self.slots
            .iter_mut()
            .find_map(|s| s.as_any_mut().downcast_mut::<O>())
    }

    /// When the earliest overlay wants its timer.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.slots.iter().filter_map(|s| s.poll_timeout()).min()
    }
}

impl<E: 'static> From<Vec<Box<dyn SimOverlay<E>>>> for Stack<E> {
    fn from(slots: Vec<Box<dyn SimOverlay<E>>>) -> Self {
        Self::new(slots)
    }
}
