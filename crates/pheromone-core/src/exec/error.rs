//! Why an exec frame could not be decoded or encoded. Only error types live here.

use crate::varint::VarintError;
use thiserror::Error;

/// A malformed or oversized exec frame. The stream it came on cannot be trusted any more:
/// close it (the server answers with an `Error` reply first where it still can).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ExecWireError {
    /// A length prefix was not a valid varint (too long or not minimal).
    #[error("bad varint: {0}")]
    Varint(#[from] VarintError),
    /// A frame announced more bytes than this side accepts; nothing was buffered for it.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// The announced length.
        len: u64,
        /// The limit it broke.
        max: usize,
    },
    /// A field inside a frame is longer than its own limit.
    #[error("{field} of {len} bytes exceeds the limit of {max}")]
    FieldTooLarge {
        /// Which field.
        field: &'static str,
        /// The announced length.
        len: u64,
        /// The limit it broke.
        max: usize,
    },
    /// More arguments than [`MAX_ARGS`](super::MAX_ARGS).
    #[error("{count} arguments exceed the limit of {max}")]
    TooManyArgs {
        /// The announced count.
        count: u64,
        /// The limit.
        max: usize,
    },
    /// The frame ended in the middle of a field.
    #[error("frame ends inside the {field} field")]
    Truncated {
        /// The field being read.
        field: &'static str,
    },
    /// Bytes were left over after the last field of a frame.
    #[error("{extra} unexpected bytes after the end of the frame")]
    TrailingBytes {
        /// How many.
        extra: usize,
    },
    /// A text field (program, argument, error message) is not UTF-8.
    #[error("the {field} field is not UTF-8")]
    NotUtf8 {
        /// Which field.
        field: &'static str,
    },
    /// A reply frame's tag byte is not one this version knows.
    #[error("unknown reply tag {0}")]
    UnknownTag(u8),
    /// An exit frame's status kind is not one this version knows.
    #[error("unknown exit status kind {0}")]
    UnknownStatus(u8),
    /// Flag bits this version does not define were set.
    #[error("unknown flag bits {0:#04x}")]
    UnknownFlags(u8),
    /// A numeric field does not fit its type (an exit code beyond `i32`, a signal beyond
    /// `i32`).
    #[error("the {field} field is out of range")]
    OutOfRange {
        /// Which field.
        field: &'static str,
    },
    /// A program name is empty.
    #[error("the program is empty")]
    EmptyProgram,
    /// An output chunk is empty (a sender must not send empty chunks).
    #[error("empty output chunk")]
    EmptyChunk,
}
