//! The dialer (initiator) side of multistream-select: propose protocols until one is echoed.
//!
//! A [`Dialer`] is a sans-IO state machine: it is fed the bytes read from the stream and
//! hands back the bytes to write; it never touches a socket or a clock (time-outs belong to
//! the caller, which owns the timer). It consumes only negotiation messages, so whatever
//! the listener sends after its echo stays in the caller's buffer as application data.

use super::wire::{self, Message};
use super::NegotiationError;
use bytes::{Buf, Bytes, BytesMut};

/// The dialer side of one multistream-select negotiation.
///
/// # Calling contract
///
/// 1. Create it with [`Dialer::new`] (propose each protocol in turn, one round trip per
///    proposal) or [`Dialer::lazy`] (propose a single protocol and start writing at once).
/// 2. Write everything [`poll_transmit`](Self::poll_transmit) returns, in order, before
///    any application data. Call it again after every [`handle_input`](Self::handle_input):
///    a refusal makes the dialer propose its next protocol.
/// 3. Once [`may_write`](Self::may_write) returns the protocol, application data may be
///    written behind the negotiation bytes. For a lazy dialer that is right after creation
///    (0-RTT); for an eager one, after the listener's echo.
/// 4. Append what you read to one buffer and pass it to `handle_input`, which removes the
///    negotiation messages it has used from the front. Then call
///    [`poll_outcome`](Self::poll_outcome): `None` means read more; `Some(Ok(protocol))`
///    means the listener confirmed `protocol` and whatever is left in the buffer is that
///    protocol's data; `Some(Err(_))` means give up and close the stream.
/// 5. If the stream ends first, call [`handle_eof`](Self::handle_eof).
///
/// A lazy dialer's write side is settled early, but its read side is not: the first bytes
/// it reads are the listener's header and echo, and the outcome is only known once they
/// have been verified. If the listener answers `na` instead, the outcome is
/// [`NegotiationError::ProtocolRejected`] and the application data already sent was lost.
///
/// The first message from the listener must be the multistream header, as the spec
/// requires; both sides send theirs without waiting, so the dialer sends its header and
/// first proposal together at creation.
#[derive(Debug)]
pub struct Dialer {
    /// The protocols to propose, in order; `proposals[next]` awaits an answer.
    proposals: Vec<String>,
    next: usize,
    lazy: bool,
    state: State,
    /// Messages not yet handed out by `poll_transmit`. Bounded: one header plus one
    /// proposal per entry of `proposals`.
    transmit: Vec<u8>,
    /// The result, kept until `poll_outcome` hands it over.
    outcome: Option<Result<String, NegotiationError>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for the listener's `/multistream/1.0.0`.
    AwaitHeader,
    /// Waiting for the echo of, or `na` to, `proposals[next]`.
    AwaitAnswer,
    /// Confirmed: reading more would eat application data.
    Negotiated,
    Failed,
}

impl Dialer {
    /// A dialer that proposes `protocols` one after the other, waiting for each answer,
    /// until the listener echoes one.
    ///
    /// Fails with [`NegotiationError::NoProtocols`] for an empty list and
    /// [`NegotiationError::InvalidProtocolName`] for a name that may not go on the wire
    /// (see [`wire::validate_protocol`]).
    pub fn new(protocols: Vec<String>) -> Result<Self, NegotiationError> {
        Self::with_mode(protocols, false)
    }

    /// A dialer that proposes only `protocol` and lets the caller write that protocol's
    /// data straight behind the proposal, without waiting for the echo (what rust-libp2p
    /// calls `V1Lazy`; identical on the wire to an eager negotiation).
    ///
    /// Use it only when there is no alternative to fall back to: a refusal costs the
    /// stream. [`may_write`](Self::may_write) returns `protocol` from the start.
    pub fn lazy(protocol: String) -> Result<Self, NegotiationError> {
        Self::with_mode(vec![protocol], true)
    }

    fn with_mode(proposals: Vec<String>, lazy: bool) -> Result<Self, NegotiationError> {
        let first = proposals.first().ok_or(NegotiationError::NoProtocols)?;
        for name in &proposals {
            wire::validate_protocol(name)?;
        }
        let mut transmit = Vec::new();
        Message::Header.encode(&mut transmit);
        Message::Protocol(first).encode(&mut transmit);
        Ok(Self {
            proposals,
            next: 0,
            lazy,
            state: State::AwaitHeader,
            transmit,
            outcome: None,
        })
    }

    /// Consumes the negotiation messages at the front of `input`.
    ///
    /// Stops at the listener's echo, so any bytes behind it are left in `input` for the
    /// negotiated protocol; stops at an incomplete message, leaving its bytes for the next
    /// call. Does nothing once the negotiation is over.
    pub fn handle_input(&mut self, input: &mut BytesMut) {
        while matches!(self.state, State::AwaitHeader | State::AwaitAnswer) {
            let (message, len) = match wire::decode(input) {
                Ok(Some(decoded)) => decoded,
                Ok(None) => return,
                Err(error) => return self.fail(error),
            };
            self.on_message(message);
            input.advance(len);
        }
    }

    /// Tells the dialer that the stream ended. Fails the negotiation if it was not over.
    pub fn handle_eof(&mut self) {
        if matches!(self.state, State::AwaitHeader | State::AwaitAnswer) {
            self.fail(NegotiationError::UnexpectedEof);
        }
    }

    /// The bytes to write next, if any: the header and first proposal at first, then one
    /// proposal after each refusal. Several messages may come in one buffer.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        if self.transmit.is_empty() {
            return None;
        }
        Some(Bytes::from(std::mem::take(&mut self.transmit)))
    }

    /// The protocol whose data may be written now, behind the bytes of
    /// [`poll_transmit`](Self::poll_transmit): for a lazy dialer from creation until a
    /// failure, for an eager one once the listener has confirmed.
    pub fn may_write(&self) -> Option<&str> {
        match self.state {
            State::Negotiated => Some(self.current()),
            State::AwaitHeader | State::AwaitAnswer if self.lazy => Some(self.current()),
            _ => None,
        }
    }

    /// The result of the negotiation, handed out once: `None` while it is still running
    /// (and after the result was taken).
    pub fn poll_outcome(&mut self) -> Option<Result<String, NegotiationError>> {
        self.outcome.take()
    }

    /// Whether the negotiation is over, successfully or not.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Negotiated | State::Failed)
    }

    fn current(&self) -> &str {
        self.proposals.get(self.next).map_or("", String::as_str)
    }

    fn on_message(&mut self, message: Message<'_>) {
        match (self.state, message) {
            (State::AwaitHeader, Message::Header) => self.state = State::AwaitAnswer,
            (State::AwaitHeader, other) => self.fail(NegotiationError::InvalidHeader {
                received: other.text().to_owned(),
            }),
            (State::AwaitAnswer, Message::Protocol(name)) if name == self.current() => {
                self.state = State::Negotiated;
                self.outcome = Some(Ok(name.to_owned()));
            }
            (State::AwaitAnswer, Message::NotAvailable) => self.on_refusal(),
            (_, other) => self.fail(NegotiationError::UnexpectedMessage {
                expected: "the echo of our proposal or na",
                received: other.text().to_owned(),
            }),
        }
    }

    fn on_refusal(&mut self) {
        if self.lazy {
            let protocol = self.current().to_owned();
            return self.fail(NegotiationError::ProtocolRejected { protocol });
        }
        self.next += 1;
        match self.proposals.get(self.next) {
            Some(name) => Message::Protocol(name).encode(&mut self.transmit),
            None => {
                let tried = std::mem::take(&mut self.proposals);
                self.fail(NegotiationError::AllRejected { tried });
            }
        }
    }

    fn fail(&mut self, error: NegotiationError) {
        self.state = State::Failed;
        self.outcome = Some(Err(error));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(list: &[Message<'_>]) -> BytesMut {
        let mut out = Vec::new();
        for message in list {
            message.encode(&mut out);
        }
        BytesMut::from(&out[..])
    }

    #[test]
    fn sends_header_and_first_proposal_at_once() {
        let mut dialer = Dialer::new(vec!["/a".into(), "/b".into()]).unwrap();
        let sent = dialer.poll_transmit().unwrap();
        assert_eq!(&sent[..], b"\x13/multistream/1.0.0\n\x03/a\n");
        assert_eq!(dialer.poll_transmit(), None);
        assert_eq!(dialer.may_write(), None);
        assert_eq!(dialer.poll_outcome(), None);
    }

    #[test]
    fn falls_back_then_leaves_application_data() {
        let mut dialer = Dialer::new(vec!["/a".into(), "/b".into()]).unwrap();
        dialer.poll_transmit();
        let mut input = messages(&[Message::Header, Message::NotAvailable]);
        dialer.handle_input(&mut input);
        assert!(input.is_empty());
        assert_eq!(&dialer.poll_transmit().unwrap()[..], b"\x03/b\n");
        let mut input = messages(&[Message::Protocol("/b")]);
        input.extend_from_slice(b"\x13/multistream/1.0.0\n");
        dialer.handle_input(&mut input);
        assert_eq!(dialer.poll_outcome(), Some(Ok("/b".to_owned())));
        assert_eq!(dialer.may_write(), Some("/b"));
        // Application data that looks like a negotiation message is still left alone.
        assert_eq!(&input[..], b"\x13/multistream/1.0.0\n");
        dialer.handle_input(&mut input);
        assert_eq!(input.len(), 20);
        assert_eq!(dialer.poll_outcome(), None);
    }

    #[test]
    fn all_rejected_lists_every_proposal() {
        let mut dialer = Dialer::new(vec!["/a".into(), "/b".into()]).unwrap();
        let mut input = messages(&[Message::Header, Message::NotAvailable]);
        dialer.handle_input(&mut input);
        let mut input = messages(&[Message::NotAvailable]);
        dialer.handle_input(&mut input);
        assert_eq!(
            dialer.poll_outcome(),
            Some(Err(NegotiationError::AllRejected {
                tried: vec!["/a".into(), "/b".into()]
            }))
        );
        assert!(dialer.is_finished());
    }

    #[test]
    fn lazy_reports_early_and_verifies_late() {
        let mut dialer = Dialer::lazy("/noise".into()).unwrap();
        assert_eq!(dialer.may_write(), Some("/noise"));
        assert_eq!(
            &dialer.poll_transmit().unwrap()[..],
            b"\x13/multistream/1.0.0\n\x07/noise\n"
        );
        let mut input = messages(&[Message::Header]);
        dialer.handle_input(&mut input);
        assert_eq!(dialer.poll_outcome(), None);
        let mut input = messages(&[Message::NotAvailable]);
        dialer.handle_input(&mut input);
        assert_eq!(
            dialer.poll_outcome(),
            Some(Err(NegotiationError::ProtocolRejected {
                protocol: "/noise".into()
            }))
        );
        assert_eq!(dialer.may_write(), None);
    }

    #[test]
    fn protocol_violations() {
        let mut dialer = Dialer::new(vec!["/a".into()]).unwrap();
        dialer.handle_input(&mut messages(&[Message::Protocol("/a")]));
        assert_eq!(
            dialer.poll_outcome(),
            Some(Err(NegotiationError::InvalidHeader {
                received: "/a".into()
            }))
        );

        let mut dialer = Dialer::lazy("/a".into()).unwrap();
        dialer.handle_input(&mut messages(&[Message::Header, Message::Protocol("/b")]));
        assert!(matches!(
            dialer.poll_outcome(),
            Some(Err(NegotiationError::UnexpectedMessage { .. }))
        ));
        assert_eq!(dialer.may_write(), None);

        let mut dialer = Dialer::new(vec!["/a".into()]).unwrap();
        dialer.handle_input(&mut messages(&[Message::Header, Message::ListProtocols]));
        assert!(matches!(
            dialer.poll_outcome(),
            Some(Err(NegotiationError::UnexpectedMessage { .. }))
        ));

        let mut dialer = Dialer::new(vec!["/a".into()]).unwrap();
        dialer.handle_input(&mut messages(&[Message::Header]));
        dialer.handle_eof();
        assert_eq!(
            dialer.poll_outcome(),
            Some(Err(NegotiationError::UnexpectedEof))
        );
    }

    #[test]
    fn refuses_bad_local_names() {
        assert_eq!(
            Dialer::new(vec![]).unwrap_err(),
            NegotiationError::NoProtocols
        );
        assert!(Dialer::new(vec!["/ok".into(), "bad".into()]).is_err());
        assert!(Dialer::lazy(String::new()).is_err());
        assert!(Dialer::lazy(wire::PROTOCOL_ID.into()).is_err());
    }
}
