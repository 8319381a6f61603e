//! Errors of multiaddr parsing, decoding and editing.
//!
//! An [`AddrError`] says where the address came from (text the user typed, bytes a peer
//! sent, an edit of an existing address) and an [`AddrErrorKind`] names the part that is
//! wrong, so that a message like `invalid multiaddr "/ip4/1.2.3/tcp/80": "1.2.3" is not an
//! IPv4 address` tells the user what to fix. Nothing here parses anything.

use super::protocol::EXPECTED_NAMES;
use crate::identity::PeerId;
use crate::varint::VarintError;
use thiserror::Error;

/// Longest piece of user input an error message repeats, in characters: inputs can be up
/// to [`super::MAX_TEXT_LEN`] bytes, and a message should stay readable.
const MAX_QUOTED_CHARS: usize = 96;

/// Why an address could not be parsed, decoded or edited.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AddrError {
    /// Text given as a multiaddr is not one. Fix the part `kind` names.
    #[error("invalid multiaddr {input:?}: {kind}")]
    Text {
        /// The text that was given (clipped if very long).
        input: String,
        /// What is wrong with it.
        kind: AddrErrorKind,
    },
    /// Text given to [`super::parse_dial_address`] is neither `host:port` nor a multiaddr.
    #[error("invalid address {input:?}: {kind}")]
    DialAddress {
        /// The text that was given (clipped if very long).
        input: String,
        /// What is wrong with it.
        kind: AddrErrorKind,
    },
    /// Bytes given as a binary multiaddr (usually by a peer) are not one. Callers that
    /// receive lists of addresses skip such an address rather than fail the whole list;
    /// [`AddrErrorKind::UnknownCode`] in particular just means the peer knows a transport
    /// we do not.
    #[error("invalid binary multiaddr: {kind}")]
    Binary {
        /// What is wrong with the bytes.
        kind: AddrErrorKind,
    },
    /// [`super::Multiaddr::with_p2p`] was asked to add a peer ID to an address that already
    /// ends in a different one. The address names another peer; do not dial it as `requested`.
    #[error("address already names peer {existing}, not {requested}")]
    PeerIdMismatch {
        /// The peer ID the address ends in.
        existing: PeerId,
        /// The peer ID that was to be added.
        requested: PeerId,
    },
}

impl AddrError {
    /// What was wrong, for errors that come from parsing or decoding.
    pub fn kind(&self) -> Option<&AddrErrorKind> {
        match self {
            Self::Text { kind, .. } | Self::DialAddress { kind, .. } | Self::Binary { kind } => {
                Some(kind)
            }
            Self::PeerIdMismatch { .. } => None,
        }
    }

    pub(crate) fn text(input: &str, kind: AddrErrorKind) -> Self {
        Self::Text {
            input: clip(input),
            kind,
        }
    }

    pub(crate) fn dial(input: &str, kind: AddrErrorKind) -> Self {
        Self::DialAddress {
            input: clip(input),
            kind,
        }
    }
}

/// The part of an address that is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AddrErrorKind {
    /// The address has no components at all; give at least one, e.g. `/ip4/127.0.0.1/tcp/4001`.
    #[error("empty address")]
    Empty,
    /// Text multiaddrs start with `/`; `host:port` is only accepted where a dial address is.
    #[error("a multiaddr starts with \"/\" (like /ip4/127.0.0.1/tcp/4001)")]
    MissingLeadingSlash,
    /// Two slashes in a row where a protocol name should be.
    #[error("empty protocol name (two \"/\" in a row?)")]
    EmptyProtocolName,
    /// A protocol name we do not know, probably a typo.
    #[error("unknown protocol {0:?} (expected {EXPECTED_NAMES})")]
    UnknownProtocol(String),
    /// A binary protocol code we do not know: the peer speaks a transport we do not.
    #[error("unknown protocol code {0}")]
    UnknownCode(u64),
    /// A protocol that takes a value (address, port, name, peer ID) was not followed by one.
    #[error("missing {what} after /{protocol}")]
    MissingValue {
        /// The protocol whose value is missing, e.g. `tcp`.
        protocol: &'static str,
        /// What should have followed, e.g. `port`.
        what: &'static str,
    },
    /// The value after `/ip4` is not a dotted-quad IPv4 address.
    #[error("{0:?} is not an IPv4 address")]
    InvalidIp4(String),
    /// The value after `/ip6` is not an IPv6 address.
    #[error("{0:?} is not an IPv6 address")]
    InvalidIp6(String),
    /// A port that is not a decimal number.
    #[error("{0:?} is not a port number")]
    InvalidPort(String),
    /// A decimal port above 65535.
    #[error("port {0} out of range")]
    PortOutOfRange(String),
    /// A host name that is empty, longer than 253 bytes, or holds `/`, spaces or control
    /// characters.
    #[error("{name:?} is not a valid DNS name: {reason}")]
    InvalidDnsName {
        /// The name that was given (clipped if very long; lossy if not UTF-8).
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// The value after `/p2p` is not a peer ID.
    #[error("{text:?} is not a peer ID: {reason}")]
    InvalidPeerId {
        /// The text that was given, or `<binary>` when decoding bytes.
        text: String,
        /// What the peer ID parser reported.
        reason: String,
    },
    /// The value after `/memory` is not a decimal `u64`.
    #[error("{0:?} is not a memory address (a number below 2^64)")]
    InvalidMemory(String),
    /// The address is longer than [`super::MAX_LEN`] bytes of binary or
    /// [`super::MAX_TEXT_LEN`] bytes of text; no real address is this long.
    #[error("address is {len} bytes long, over the {max}-byte limit")]
    TooLong {
        /// How long the input was, in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A binary component announces a value longer than its protocol allows (253 bytes
    /// for DNS names, 64 for peer IDs); refused before reading it.
    #[error("/{protocol} value of {len} bytes is over the {max}-byte limit")]
    ValueTooLong {
        /// The protocol whose value it is.
        protocol: &'static str,
        /// The announced length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// The bytes end in the middle of a component.
    #[error("ends in the middle of /{protocol}")]
    Truncated {
        /// The protocol whose value was cut off, or `code` when the protocol code itself was.
        protocol: &'static str,
    },
    /// A protocol code or length prefix is not a valid varint.
    #[error("bad varint: {0}")]
    Varint(#[from] VarintError),
    /// A `host:port` dial address had no port.
    #[error("missing port (expected host:port or a multiaddr such as /ip4/127.0.0.1/tcp/4001)")]
    MissingPort,
    /// A bare IPv6 address in a `host:port` dial address, which is ambiguous.
    #[error("IPv6 addresses need brackets, as in [::1]:4001")]
    UnbracketedIpv6,
}

/// Shortens `text` for inclusion in an error message.
pub(crate) fn clip(text: &str) -> String {
    match text.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}
