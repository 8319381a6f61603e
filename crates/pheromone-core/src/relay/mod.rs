//! Relayed connections (`/pheromone/relay/1.0.0`): the circuit handshake a node sends to
//! open a stream to a peer it has no link to, hop by hop along the route table.
//!
//! Only the codec lives here: a CONNECT request naming source, destination, circuit id
//! and the remaining hop budget, and the RESPONSE that comes back with a [`Status`].
//! After an `Ok` response the stream carries raw bytes — the two ends run Noise and yamux
//! over it, so relays only ever see ciphertext. Opening streams, looking up next hops,
//! splicing and enforcing per-relay limits are the IO side's job (`pheromone` crate); the
//! hop-by-hop procedure is specified in `docs/protocols/relay.md`. Nothing here does IO.

mod error;
pub mod wire;

pub use error::RelayError;
pub use wire::{Connect, RelayMessage, Response, Status};

/// The protocol name negotiated with multistream-select.
pub const PROTOCOL: &str = "/pheromone/relay/1.0.0";

/// Entry points for fuzz targets: each takes arbitrary bytes and must never panic.
#[doc(hidden)]
pub mod fuzzing {
    use super::*;

    /// Decodes `data` as a stream of relay handshake messages; whatever decodes must
    /// re-encode to the same message.
    pub fn fuzz_decode(data: &[u8]) {
        let mut buf = bytes::BytesMut::from(data);
        while let Ok(Some(message)) = wire::decode(&mut buf) {
            let mut again = bytes::BytesMut::from(&message.to_vec()[..]);
            assert_eq!(
                wire::decode(&mut again).as_ref(),
                Ok(&Some(message.clone()))
            );
            if let RelayMessage::Connect(c) = message {
                let _ = c.forwarded();
            }
        }
    }
}
