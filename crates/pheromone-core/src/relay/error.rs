//! Errors of the relay circuit handshake codec.
//!
//! A relay that gets one of these answers nothing useful can be done with the stream:
//! it resets it (the peer is not speaking the protocol).

use thiserror::Error;

/// Why a relay handshake message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RelayError {
    /// The length prefix is overlong or not minimally encoded.
    #[error("bad varint in {0}")]
    Varint(&'static str),
    /// A length field announced more than its cap; nothing was buffered or allocated for it.
    #[error("{field} of {len} exceeds the cap of {max}")]
    LengthCap {
        /// Which field.
        field: &'static str,
        /// What the peer announced.
        len: u64,
        /// The cap in force.
        max: usize,
    },
    /// The message ended before a field did (the length prefix said it was whole).
    #[error("message truncated while reading {0}")]
    Truncated(&'static str),
    /// The message starts with a version we do not speak.
    #[error("unsupported relay wire version {0}")]
    UnsupportedVersion(u8),
    /// The message kind byte is unknown.
    #[error("unknown relay message kind {0:#04x}")]
    UnknownKind(u8),
    /// A peer ID field is not a valid multihash.
    #[error("{0} is not a valid peer ID")]
    BadPeerId(&'static str),
    /// The hop budget is above [`MAX_HOP_BUDGET`](super::wire::MAX_HOP_BUDGET).
    #[error("hop budget {0} above the protocol maximum")]
    HopBudget(u8),
    /// The status text is not UTF-8.
    #[error("status text is not valid UTF-8")]
    BadText,
    /// Bytes were left over inside the length-prefixed message.
    #[error("{0} trailing bytes inside the message")]
    TrailingBytes(usize),
}
