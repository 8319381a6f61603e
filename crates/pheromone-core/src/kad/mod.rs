//! Kademlia discovery on the libp2p kad wire: a k-bucket routing table, iterative
//! FIND_NODE lookups, liveness checks and refreshes, as one sans-IO state machine,
//! [`Kademlia`].
//!
//! Nothing here opens a stream or reads a clock. [`Kademlia`] implements the
//! [`Overlay`](crate::overlay::Overlay) contract with
//! [`Wire::Requests`](crate::overlay::Wire): one stream per request under
//! [`Config::protocol`], to any peer. A neighbour is a peer with a direct connection that
//! speaks that protocol (the driver knows it from identify), so it enters the table at
//! once; other peers enter after a kad exchange. Commands of its own:
//! [`Kademlia::bootstrap`], [`Kademlia::find_peer`], [`Kademlia::add_address`]; lookups end
//! in [`Event::QueryFinished`].
//!
//! The protocol is described for humans in `docs/protocols/kad.md`.
//!
//! # Layout
//!
//! - `key.rs`: [`Key`] (SHA-256 of a peer ID) and XOR [`Distance`].
//! - `table.rs`: [`RoutingTable`] — buckets, replacement lists, diversity limits.
//! - `query.rs`: the bookkeeping of one iterative lookup.
//! - `state.rs`: [`Kademlia`], the state machine; its lookups (`state/lookups.rs`), table
//!   upkeep (`state/maintain.rs`) and overlay contract (`state/overlay.rs`).
//! - `addrs.rs`: which addresses a table may hold.
//! - `event.rs`: [`Output`], [`Event`], query ids and results, [`Metrics`].
//! - `wire.rs`: the `Message` protobuf, [`Request`]/[`Response`] ([`wire`]).
//! - `config.rs`, `error.rs`: [`Config`]; [`WireError`] and [`KadError`].

mod addrs;
mod config;
mod error;
mod event;
mod key;
mod query;
mod state;
mod table;
pub mod wire;

pub use config::{Config, IpRange, DEFAULT_PROTOCOL, IPFS_PROTOCOL};
pub use error::{KadError, WireError};
pub use event::{Event, Metrics, Output, QueryId, QueryKind, QueryOutcome, QueryResult};
pub use key::{Distance, Key};
pub use state::Kademlia;
pub use table::{Entry, InsertOutcome, Origin, RoutingTable, Subnet, NUM_BUCKETS};
pub use wire::{ConnectionType, DecodeLimits, KadPeer, Request, Response};

#[cfg(test)]
mod state_tests;

/// Fuzz target bodies (used by `fuzz/fuzz_targets/kad_message.rs`).
#[doc(hidden)]
pub mod fuzzing {
    use super::wire::{DecodeLimits, Request, Response};

    /// Decodes `data` as a request and as responses of both types; anything that decodes
    /// must survive an encode/decode round trip.
    pub fn fuzz_decode(data: &[u8]) {
        if let Ok(request) = Request::decode(data) {
            let mut out = Vec::new();
            request.encode(&mut out);
            assert_eq!(Request::decode(&out).as_ref(), Ok(&request));
        }
        let limits = DecodeLimits::default();
        for expected in [4, 5] {
            if let Ok(response) = Response::decode(data, expected, limits) {
                let mut out = Vec::new();
                response.encode(&mut out);
                let back =
                    Response::decode(&out, expected, limits).expect("re-encoded response decodes");
                match (back, response) {
                    (
                        Response::FindNode {
                            closer_peers: a, ..
                        },
                        Response::FindNode {
                            closer_peers: b, ..
                        },
                    ) => assert_eq!(a, b),
                    (a, b) => assert_eq!(a, b),
                }
            }
        }
    }

    /// Feeds `data` to a fresh state machine as an inbound request and as the response to
    /// the bootstrap lookup it sends; it must never panic. `now` comes from the caller
    /// (this crate never reads the clock).
    pub fn fuzz_state(now: std::time::Instant, data: &[u8]) {
        use super::{Config, Kademlia, Output};
        use crate::addr::Multiaddr;
        use crate::identity::Keypair;
        use crate::overlay::{InboundId, Overlay};
        let local = Keypair::from_seed([1; 32]).peer_id();
        let remote = Keypair::from_seed([2; 32]).peer_id();
        let mut kad = Kademlia::new(local, Config::default(), now, 0);
        let addr = Multiaddr::from_socket_addr(([1, 2, 3, 4], 4001).into());
        let _ = kad.add_address(now, remote, addr);
        let _ = kad.handle_request(now, remote, InboundId(0), data);
        kad.bootstrap(now);
        let mut sent = None;
        while let Some(out) = kad.poll_output() {
            if let Output::Request { id, .. } = out {
                sent = Some(id);
            }
        }
        if let Some(id) = sent {
            let _ = kad.handle_response(now, id, Ok(data));
        }
        while kad.poll_output().is_some() {}
    }
}
