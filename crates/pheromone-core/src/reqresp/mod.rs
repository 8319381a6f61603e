//! Request/response between nodes (`docs/protocols/reqresp.md`): the wire format every
//! user protocol registered with `handle_requests` speaks on its streams.
//!
//! A request is `uvarint length ‖ bytes`; a response is `status ‖ uvarint length ‖ bytes`.
//! Only the codec lives here ([`wire`]); the `pheromone` crate's node moves the bytes, keeps
//! streams for reuse and runs the handlers.

pub mod wire;
