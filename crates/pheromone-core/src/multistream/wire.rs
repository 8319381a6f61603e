//! The multistream-select 1.0 message codec: varint length ‖ UTF-8 text ‖ `\n`.
//!
//! Every message is an unsigned varint giving the length of the rest (text plus the
//! newline), the text, and a `\n`. Four messages exist: the header `/multistream/1.0.0`,
//! a protocol name (proposal or echo), `na` and `ls`; the answer to `ls` is a fifth,
//! nested format with its own decoder. This file only turns bytes into messages and back:
//! it keeps no state, never consumes input (callers advance by the length it reports, so
//! application bytes behind a message stay where they are) and checks every length before
//! looking further.

use super::NegotiationError;
use crate::varint;

/// Text of the multistream-select 1.0 header, the protocol ID of multistream-select itself.
pub const PROTOCOL_ID: &str = "/multistream/1.0.0";

/// Text of the "not available" answer.
pub const NOT_AVAILABLE: &str = "na";

/// Text of the request for the listener's protocol list.
pub const LIST: &str = "ls";

/// Largest message we accept or send, counting the text and its newline but not the
/// length prefix.
///
/// go-multistream refuses messages longer than 1024 bytes and jvm-libp2p caps protocol IDs
/// at 1024, so nothing longer can be negotiated with them anyway; rust-libp2p's only limit
/// is its 16383-byte frame. Real protocol IDs are a few dozen bytes.
pub const MAX_MESSAGE_LEN: usize = 1024;

/// Longest protocol name we accept or send: a message minus its newline.
pub const MAX_PROTOCOL_LEN: usize = MAX_MESSAGE_LEN - 1;

/// Largest `ls` answer we accept or send, not counting its outer length prefix.
///
/// rust-libp2p frames messages with at most a two-byte varint, so this is the largest
/// answer it can read.
pub const MAX_LIST_LEN: usize = (1 << 14) - 1;

/// Most entries we accept in an `ls` answer (rust-libp2p's limit too).
pub const MAX_LIST_PROTOCOLS: usize = 1000;

/// One multistream-select message, borrowing its protocol name from the input buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// `/multistream/1.0.0`: both sides send it first.
    Header,
    /// A protocol name: a proposal from the dialer or the listener's echo accepting it.
    Protocol(&'a str),
    /// `na`: the listener does not support (or refuses) the proposed protocol.
    NotAvailable,
    /// `ls`: the dialer asks for the listener's protocol list.
    ListProtocols,
}

impl Message<'_> {
    /// The message's text, without length prefix or newline.
    pub fn text(&self) -> &str {
        match self {
            Message::Header => PROTOCOL_ID,
            Message::Protocol(name) => name,
            Message::NotAvailable => NOT_AVAILABLE,
            Message::ListProtocols => LIST,
        }
    }

    /// Number of bytes [`encode`](Self::encode) appends.
    pub fn encoded_len(&self) -> usize {
        framed_len(self.text().len() + 1)
    }

    /// Appends the encoded message to `out`.
    ///
    /// A [`Message::Protocol`] name is expected to have passed [`validate_protocol`];
    /// encoding an invalid one produces a message the peer will refuse.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let text = self.text();
        out.reserve(self.encoded_len());
        varint::encode(text.len() as u64 + 1, out);
        out.extend_from_slice(text.as_bytes());
        out.push(b'\n');
    }
}

/// Checks that `name` may be proposed, echoed or listed as a protocol.
///
/// A name must be non-empty, start with `/`, hold no newline (the newline ends a message),
/// fit in [`MAX_PROTOCOL_LEN`] bytes and not be the multistream-select header itself.
pub fn validate_protocol(name: &str) -> Result<(), NegotiationError> {
    let reason = if name.is_empty() {
        "empty"
    } else if !name.starts_with('/') {
        "does not start with '/'"
    } else if name.len() > MAX_PROTOCOL_LEN {
        "longer than 1023 bytes"
    } else if name.contains('\n') {
        "contains a newline"
    } else if name == PROTOCOL_ID {
        "is the multistream-select header"
    } else {
        return Ok(());
    };
    Err(NegotiationError::InvalidProtocolName {
        name: truncated(name.as_bytes()),
        reason,
    })
}

/// Decodes the message at the front of `buf` without consuming it.
///
/// Returns `Ok(None)` when `buf` holds only part of a message (read more and call again),
/// otherwise the message and the number of bytes it occupies; advance past exactly that
/// many. Lengths above [`MAX_MESSAGE_LEN`] are refused as soon as the prefix shows them.
pub fn decode(buf: &[u8]) -> Result<Option<(Message<'_>, usize)>, NegotiationError> {
    let Some((body, consumed)) = frame(buf, MAX_MESSAGE_LEN)? else {
        return Ok(None);
    };
    let text = line(body)?;
    let message = match text {
        PROTOCOL_ID => Message::Header,
        NOT_AVAILABLE => Message::NotAvailable,
        LIST => Message::ListProtocols,
        name => {
            validate_protocol(name)?;
            Message::Protocol(name)
        }
    };
    Ok(Some((message, consumed)))
}

/// Number of bytes [`encode_list`] appends for `protocols`.
pub fn encoded_list_len<S: AsRef<str>>(protocols: &[S]) -> usize {
    framed_len(list_body_len(protocols))
}

/// Appends the answer to `ls` listing `protocols`.
///
/// The multistream-select README describes two different layouts for this answer and no
/// implementation follows either; this is the one rust-libp2p reads and writes: a single
/// length-prefixed message whose body is every name encoded as a message of its own
/// (varint ‖ name ‖ `\n`), followed by one more `\n`. Names are expected to have passed
/// [`validate_protocol`], and the whole to fit [`MAX_LIST_LEN`].
pub fn encode_list<S: AsRef<str>>(protocols: &[S], out: &mut Vec<u8>) {
    out.reserve(encoded_list_len(protocols));
    varint::encode(list_body_len(protocols) as u64, out);
    for name in protocols {
        Message::Protocol(name.as_ref()).encode(out);
    }
    out.push(b'\n');
}

/// Decodes an answer to `ls` at the front of `buf` without consuming it.
///
/// Returns `Ok(None)` while incomplete, otherwise the listed names and the number of bytes
/// the answer occupies. Accepts the body with or without its final `\n` (older
/// go-multistream versions omitted it). The answer is capped at [`MAX_LIST_LEN`] bytes and
/// [`MAX_LIST_PROTOCOLS`] entries.
pub fn decode_list(buf: &[u8]) -> Result<Option<(Vec<String>, usize)>, NegotiationError> {
    let Some((mut body, consumed)) = frame(buf, MAX_LIST_LEN)? else {
        return Ok(None);
    };
    let mut protocols = Vec::new();
    while !body.is_empty() && body != b"\n" {
        if protocols.len() == MAX_LIST_PROTOCOLS {
            return Err(NegotiationError::TooManyProtocols {
                max: MAX_LIST_PROTOCOLS,
            });
        }
        let Some((len, prefix)) = varint::decode(body)? else {
            return Err(NegotiationError::MalformedList {
                reason: "entry length prefix is cut off",
            });
        };
        if len == 0 {
            return Err(NegotiationError::MalformedList {
                reason: "zero-length entry",
            });
        }
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| len.checked_add(prefix))
            .filter(|&end| end <= body.len())
            .ok_or(NegotiationError::MalformedList {
                reason: "entry runs past the end of the list",
            })?;
        let name = line(&body[prefix..end])?;
        validate_protocol(name)?;
        protocols.push(name.to_owned());
        body = &body[end..];
    }
    Ok(Some((protocols, consumed)))
}

/// Splits the varint-framed body at the front of `buf`, refusing bodies over `max` bytes.
fn frame(buf: &[u8], max: usize) -> Result<Option<(&[u8], usize)>, NegotiationError> {
    let Some((len, prefix)) = varint::decode(buf)? else {
        // Every byte so far had its continuation bit set, and a minimal varint's last byte
        // is non-zero, so the length is at least 2^(7 * bytes seen): refuse it now rather
        // than wait for a prefix we already know is too long.
        let at_least = 1u64 << (7 * buf.len().min(varint::MAX_LEN - 1));
        if !buf.is_empty() && at_least > max as u64 {
            return Err(NegotiationError::MessageTooLong { len: at_least, max });
        }
        return Ok(None);
    };
    if len > max as u64 {
        return Err(NegotiationError::MessageTooLong { len, max });
    }
    // `len <= max`, a usize, so the cast is lossless.
    let end = prefix + len as usize;
    Ok(buf.get(prefix..end).map(|body| (body, end)))
}

/// The text of a message body: UTF-8 ending in `\n`, returned without the newline.
fn line(body: &[u8]) -> Result<&str, NegotiationError> {
    let Some((b'\n', text)) = body.split_last() else {
        return Err(NegotiationError::MissingNewline);
    };
    std::str::from_utf8(text).map_err(|_| NegotiationError::NotUtf8)
}

/// Length of an `ls` answer's body: every name as a message, plus the closing newline.
fn list_body_len<S: AsRef<str>>(protocols: &[S]) -> usize {
    protocols
        .iter()
        .map(|name| Message::Protocol(name.as_ref()).encoded_len())
        .sum::<usize>()
        + 1
}

/// Length of a body of `len` bytes with its varint prefix.
fn framed_len(len: usize) -> usize {
    varint::encoded_len(len as u64) + len
}

/// Peer-supplied bytes as text for an error message, cut to [`MAX_MESSAGE_LEN`] bytes.
pub(super) fn truncated(bytes: &[u8]) -> String {
    let bytes = bytes.get(..MAX_MESSAGE_LEN).unwrap_or(bytes);
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encoded(message: Message<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        message.encode(&mut out);
        assert_eq!(out.len(), message.encoded_len());
        out
    }

    #[test]
    fn golden_bytes() {
        let mut header = vec![0x13];
        header.extend_from_slice(b"/multistream/1.0.0\n");
        assert_eq!(encoded(Message::Header), header);
        // The two examples the specs give in hex.
        assert_eq!(encoded(Message::NotAvailable), [0x03, 0x6e, 0x61, 0x0a]);
        assert_eq!(encoded(Message::ListProtocols), [0x03, 0x6c, 0x73, 0x0a]);
        assert_eq!(encoded(Message::Protocol("/noise")), b"\x07/noise\n");
        assert_eq!(decode(&header), Ok(Some((Message::Header, 20))));
    }

    #[test]
    fn golden_list() {
        let mut out = Vec::new();
        encode_list(&["/a", "/bc"], &mut out);
        assert_eq!(out, b"\x0a\x03/a\n\x04/bc\n\n");
        assert_eq!(out.len(), encoded_list_len(&["/a", "/bc"]));
        let expected = vec!["/a".to_owned(), "/bc".to_owned()];
        assert_eq!(decode_list(&out), Ok(Some((expected.clone(), out.len()))));
        // Without the closing newline, as older go-multistream wrote it.
        assert_eq!(
            decode_list(b"\x09\x03/a\n\x04/bc\n"),
            Ok(Some((expected, 10)))
        );
        assert_eq!(decode_list(b"\x01\n"), Ok(Some((vec![], 2))));
        assert_eq!(decode_list(b"\x00"), Ok(Some((vec![], 1))));
    }

    #[test]
    fn leaves_following_bytes_alone() {
        let mut buf = encoded(Message::Protocol("/yamux/1.0.0"));
        let len = buf.len();
        buf.extend_from_slice(b"\x13application data");
        assert_eq!(
            decode(&buf),
            Ok(Some((Message::Protocol("/yamux/1.0.0"), len)))
        );
    }

    #[test]
    fn incomplete_is_not_an_error() {
        let header = encoded(Message::Header);
        for cut in 0..header.len() {
            assert_eq!(decode(&header[..cut]), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn hostile_lengths_are_refused_before_the_body_arrives() {
        // 1025 = 0x81 0x08: one byte over the limit.
        assert_eq!(
            decode(&[0x81, 0x08]),
            Err(NegotiationError::MessageTooLong {
                len: 1025,
                max: MAX_MESSAGE_LEN
            })
        );
        // Two continuation bytes already mean at least 2^14 bytes.
        assert_eq!(
            decode(&[0xff, 0xff]),
            Err(NegotiationError::MessageTooLong {
                len: 1 << 14,
                max: MAX_MESSAGE_LEN
            })
        );
        assert_eq!(decode(&[0xff]), Ok(None));
        assert_eq!(
            decode(&[0xff; 9]),
            Err(NegotiationError::InvalidLength(
                varint::VarintError::Overflow
            ))
        );
        assert_eq!(
            decode_list(&[0xff; 9]),
            Err(NegotiationError::InvalidLength(
                varint::VarintError::Overflow
            ))
        );
        assert_eq!(
            decode(&[0x80, 0x00]),
            Err(NegotiationError::InvalidLength(
                varint::VarintError::NotMinimal
            ))
        );
    }

    #[test]
    fn malformed_messages() {
        assert_eq!(decode(b"\x00"), Err(NegotiationError::MissingNewline));
        assert_eq!(decode(b"\x03/ab"), Err(NegotiationError::MissingNewline));
        assert_eq!(decode(b"\x03/\xff\n"), Err(NegotiationError::NotUtf8));
        assert!(matches!(
            decode(b"\x01\n"),
            Err(NegotiationError::InvalidProtocolName {
                reason: "empty",
                ..
            })
        ));
        assert!(matches!(
            decode(b"\x04abc\n"),
            Err(NegotiationError::InvalidProtocolName {
                reason: "does not start with '/'",
                ..
            })
        ));
        assert!(matches!(
            decode(b"\x05/a\nb\n"),
            Err(NegotiationError::InvalidProtocolName {
                reason: "contains a newline",
                ..
            })
        ));
        let long = format!("/{}", "x".repeat(MAX_PROTOCOL_LEN - 1));
        let mut buf = Vec::new();
        Message::Protocol(&long).encode(&mut buf);
        assert_eq!(
            decode(&buf),
            Ok(Some((Message::Protocol(&long), buf.len())))
        );
        assert!(validate_protocol(&format!("{long}x")).is_err());
        assert!(validate_protocol(PROTOCOL_ID).is_err());
    }

    #[test]
    fn malformed_lists() {
        assert!(matches!(
            decode_list(b"\x02\x00\n"),
            Err(NegotiationError::MalformedList { .. })
        ));
        assert!(matches!(
            decode_list(b"\x03\x05/a\n"),
            Err(NegotiationError::MalformedList { .. })
        ));
        assert!(matches!(
            decode_list(b"\x01\x80"),
            Err(NegotiationError::MalformedList { .. })
        ));
        assert_eq!(
            decode_list(b"\x04\x03/ab"),
            Err(NegotiationError::MissingNewline)
        );
        let many: Vec<String> = (0..=MAX_LIST_PROTOCOLS).map(|i| format!("/{i}")).collect();
        let mut out = Vec::new();
        encode_list(&many, &mut out);
        assert_eq!(
            decode_list(&out),
            Err(NegotiationError::TooManyProtocols {
                max: MAX_LIST_PROTOCOLS
            })
        );
    }

    fn protocol_name() -> impl Strategy<Value = String> {
        // Any UTF-8 without newlines, behind the mandatory slash.
        "/[^\n]{0,60}".prop_filter("reserved", |name| name != PROTOCOL_ID)
    }

    proptest! {
        #[test]
        fn message_round_trip(
            name in protocol_name(),
            kind in 0u8..4,
            tail in proptest::collection::vec(any::<u8>(), 0..8),
        ) {
            let message = match kind {
                0 => Message::Header,
                1 => Message::NotAvailable,
                2 => Message::ListProtocols,
                _ => Message::Protocol(&name),
            };
            let mut buf = Vec::new();
            message.encode(&mut buf);
            let len = buf.len();
            prop_assert_eq!(len, message.encoded_len());
            buf.extend_from_slice(&tail);
            prop_assert_eq!(decode(&buf), Ok(Some((message, len))));
            for cut in 0..len {
                prop_assert_eq!(decode(&buf[..cut]), Ok(None));
            }
        }

        #[test]
        fn list_round_trip(
            names in proptest::collection::vec(protocol_name(), 0..20),
            tail in proptest::collection::vec(any::<u8>(), 0..8),
        ) {
            let mut buf = Vec::new();
            encode_list(&names, &mut buf);
            let len = buf.len();
            prop_assert_eq!(len, encoded_list_len(&names));
            buf.extend_from_slice(&tail);
            prop_assert_eq!(decode_list(&buf), Ok(Some((names, len))));
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(Some((_, consumed))) = decode(&bytes) {
                prop_assert!(consumed <= bytes.len());
            }
            if let Ok(Some((_, consumed))) = decode_list(&bytes) {
                prop_assert!(consumed <= bytes.len());
            }
        }

        #[test]
        fn decode_never_panics_on_plausible_frames(
            body in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            // Arbitrary bodies behind a correct length, so the body checks get exercised.
            let mut bytes = Vec::new();
            varint::encode(body.len() as u64, &mut bytes);
            bytes.extend_from_slice(&body);
            let _ = decode(&bytes);
            let _ = decode_list(&bytes);
        }
    }
}
