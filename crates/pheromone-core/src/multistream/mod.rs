//! multistream-select 1.0: how two peers agree on the protocol spoken on a byte stream.
//!
//! libp2p runs it three times per TCP connection and once per stream: on the raw socket to
//! pick `/noise`, inside Noise to pick `/yamux/1.0.0`, and on every new yamux stream to
//! pick the application protocol. The wire follows the libp2p `connections` spec and the
//! multiformats `multistream-select` README; interoperability targets are rust-libp2p and
//! go-multistream. This module is sans-IO: it turns bytes read into bytes to write and an
//! outcome, and leaves sockets, buffers and time-outs to the caller. A negotiation should
//! run under a caller-side deadline; nothing here can tell time.
//!
//! # The exchange
//!
//! ```text
//! dialer                                  listener
//!   /multistream/1.0.0  /tls/1.0.0   -->
//!                                    <--  /multistream/1.0.0  na
//!   /noise                           -->
//!                                    <--  /noise
//!   <noise handshake ...>            <->  <noise handshake ...>
//! ```
//!
//! Each message is an unsigned varint length ‖ UTF-8 text ‖ `\n`, the length counting the
//! newline; `/multistream/1.0.0` encodes as `0x13` followed by its 19 bytes. See
//! [`wire`] for the codec and its limits (1024-byte messages, so names of at most 1023
//! bytes; `ls` answers of at most 16383 bytes and 1000 names).
//!
//! # Roles
//!
//! - [`Dialer`] proposes. [`Dialer::new`] tries a list in order, a round trip each;
//!   [`Dialer::lazy`] proposes a single protocol and lets the caller write its data at
//!   once (0-RTT), verifying the listener's confirmation when reading.
//! - [`Listener`] answers: an echo for the protocol it accepts, `na` otherwise, the
//!   supported list for `ls`. The caller decides each proposal, so access control per peer
//!   is a predicate. The number of refusals per negotiation is capped.
//!
//! Both have the same shape: `handle_input(&mut BytesMut)` consumes only negotiation
//! messages from the front of the read buffer, `poll_transmit()` yields bytes to write,
//! `poll_outcome()` yields `Result<protocol, NegotiationError>` once, and `handle_eof()`
//! reports the end of the stream. Whatever follows the last negotiation message stays in
//! the buffer for the negotiated protocol.
//!
//! ```
//! use bytes::BytesMut;
//! use pheromone_core::multistream::{Dialer, Listener};
//!
//! let mut dialer = Dialer::lazy("/noise".to_owned())?;
//! let mut listener = Listener::new(vec!["/noise".to_owned()])?;
//!
//! // The lazy dialer may write its protocol's data right behind the proposal.
//! assert_eq!(dialer.may_write(), Some("/noise"));
//! let mut to_listener = BytesMut::from(&dialer.poll_transmit().unwrap()[..]);
//! to_listener.extend_from_slice(b"first noise message");
//!
//! listener.handle_input(&mut to_listener);
//! assert_eq!(listener.poll_outcome(), Some(Ok("/noise".to_owned())));
//! assert_eq!(&to_listener[..], b"first noise message");
//!
//! let mut to_dialer = BytesMut::from(&listener.poll_transmit().unwrap()[..]);
//! dialer.handle_input(&mut to_dialer);
//! assert_eq!(dialer.poll_outcome(), Some(Ok("/noise".to_owned())));
//! # Ok::<(), pheromone_core::multistream::NegotiationError>(())
//! ```

mod dialer;
mod error;
mod listener;
pub mod wire;

#[cfg(test)]
mod tests;

pub use dialer::Dialer;
pub use error::NegotiationError;
pub use listener::{Listener, ListenerConfig, DEFAULT_MAX_REFUSALS};

/// Fuzz target bodies: each feeds arbitrary bytes to one decoder or state machine and
/// must neither panic nor loop. Used by the fuzz crate; not part of the API.
#[doc(hidden)]
pub mod fuzzing {
    use super::{wire, Dialer, Listener};
    use bytes::BytesMut;

    /// Decodes `data` as a stream of messages, then as an `ls` answer.
    pub fn fuzz_decode(data: &[u8]) {
        let mut rest = data;
        while let Ok(Some((_, len))) = wire::decode(rest) {
            rest = &rest[len..];
        }
        let _ = wire::decode_list(data);
    }

    /// Feeds `data` to a dialer and a listener, cut into chunks whose sizes come from
    /// the first byte, so that split messages are exercised too.
    pub fn fuzz_negotiation(data: &[u8]) {
        let Some((&chunk, data)) = data.split_first() else {
            return;
        };
        let chunk = usize::from(chunk % 32) + 1;
        let protocols = vec!["/a".to_owned(), "/b/1.0.0".to_owned()];
        let dialers = [
            Dialer::new(protocols.clone()),
            Dialer::lazy("/a".to_owned()),
        ];
        for dialer in dialers.into_iter().flatten() {
            let mut dialer = dialer;
            let mut buf = BytesMut::new();
            for piece in data.chunks(chunk) {
                buf.extend_from_slice(piece);
                dialer.handle_input(&mut buf);
                let _ = dialer.poll_transmit();
            }
            dialer.handle_eof();
            let _ = dialer.poll_outcome();
        }
        if let Ok(mut listener) = Listener::new(protocols) {
            let mut buf = BytesMut::new();
            for piece in data.chunks(chunk) {
                buf.extend_from_slice(piece);
                listener.handle_input(&mut buf);
                let _ = listener.poll_transmit();
            }
            listener.handle_eof();
            let _ = listener.poll_outcome();
        }
    }
}
