//! The listener (responder) side of multistream-select: answer proposals with an echo or `na`.
//!
//! A [`Listener`] is a sans-IO state machine like the [`Dialer`](super::Dialer): bytes in,
//! bytes out, no socket, no clock. It decides each proposal through a caller-supplied
//! predicate so that access control (this peer may not use that protocol) lives with the
//! caller, and it bounds how long a peer can keep it busy by capping the number of
//! refusals per negotiation.

use super::wire::{self, Message};
use super::NegotiationError;
use bytes::{Buf, Bytes, BytesMut};

/// How many proposals a [`Listener`] refuses by default before giving up.
pub const DEFAULT_MAX_REFUSALS: usize = 16;

/// Limits and options of a [`Listener`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerConfig {
    max_refusals: usize,
    answer_ls: bool,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        Self {
            max_refusals: DEFAULT_MAX_REFUSALS,
            answer_ls: true,
        }
    }
}

impl ListenerConfig {
    /// How many answers that are not an agreement (`na` to a proposal, or a protocol list
    /// in reply to `ls`) the listener sends before failing with
    /// [`NegotiationError::TooManyProposals`]. Default [`DEFAULT_MAX_REFUSALS`]; with `0`
    /// the first refused proposal fails the negotiation without an answer.
    pub fn with_max_refusals(mut self, max: usize) -> Self {
        self.max_refusals = max;
        self
    }

    /// Whether to answer `ls` with the supported list (the default). When off, `ls` is
    /// answered `na`, as current go-multistream does; turn it off when the list itself is
    /// something a peer should not learn.
    pub fn with_answer_ls(mut self, answer: bool) -> Self {
        self.answer_ls = answer;
        self
    }
}

/// The listener side of one multistream-select negotiation.
///
/// # Calling contract
///
/// 1. Create it with [`Listener::new`] (or [`with_config`](Self::with_config)). It queues
///    its `/multistream/1.0.0` header at once, as go-multistream does; rust-libp2p waits
///    for the dialer's header first, and the spec allows either because both sides send
///    the header unconditionally.
/// 2. Write everything [`poll_transmit`](Self::poll_transmit) returns, in order; call it
///    after creation and after every `handle_input`. When the negotiation succeeds, the
///    echo is the last thing it returns; write it before any application data.
/// 3. Append what you read to one buffer and pass it to
///    [`handle_input`](Self::handle_input) (accept exactly the supported protocols) or
///    [`handle_input_with`](Self::handle_input_with) (decide each proposal yourself, e.g.
///    per peer). Negotiation messages are removed from the front of the buffer; once a
///    proposal is accepted nothing more is read, so application data that arrived in the
///    same read (a lazy dialer sends header, proposal and data together) stays there.
/// 4. Call [`poll_outcome`](Self::poll_outcome): `None` means read more,
///    `Some(Ok(protocol))` means hand the stream and what is left in the buffer to
///    `protocol`, `Some(Err(_))` means close the stream.
/// 5. If the stream ends first, call [`handle_eof`](Self::handle_eof).
///
/// After a refusal the dialer may give up by closing the stream, or — if it was lazy — by
/// sending its application data regardless. Both end the negotiation with
/// [`NegotiationError::PeerGaveUp`], not a protocol violation.
#[derive(Debug)]
pub struct Listener {
    /// What `handle_input` accepts and `ls` lists.
    supported: Vec<String>,
    config: ListenerConfig,
    state: State,
    /// Refusals and `ls` answers sent so far; at most `config.max_refusals`.
    answered: usize,
    /// Proposals refused so far, for [`NegotiationError::PeerGaveUp`]; bounded like
    /// `answered`.
    rejected: Vec<String>,
    /// Whether our last answer was `na`, after which junk means "the dialer gave up".
    last_was_refusal: bool,
    /// Messages not yet handed out by `poll_transmit`. Bounded: one header plus at most
    /// `max_refusals + 1` answers, each at most one `ls` list long.
    transmit: Vec<u8>,
    /// The result, kept until `poll_outcome` hands it over.
    outcome: Option<Result<String, NegotiationError>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitHeader,
    AwaitProposal,
    /// Agreed: reading more would eat application data.
    Negotiated,
    Failed,
}

impl Listener {
    /// A listener supporting `supported`, with the default [`ListenerConfig`].
    ///
    /// The list may be empty when every decision is made by the predicate given to
    /// [`handle_input_with`](Self::handle_input_with); it is then also what `ls` shows.
    /// Fails with [`NegotiationError::InvalidProtocolName`] for a name that may not go on
    /// the wire, and with [`NegotiationError::TooManyProtocols`] or
    /// [`NegotiationError::MessageTooLong`] when the `ls` answer would not fit in
    /// [`wire::MAX_LIST_PROTOCOLS`] entries or [`wire::MAX_LIST_LEN`] bytes.
    pub fn new(supported: Vec<String>) -> Result<Self, NegotiationError> {
        Self::with_config(supported, ListenerConfig::default())
    }

    /// A listener supporting `supported`, with `config`. See [`Listener::new`].
    pub fn with_config(
        supported: Vec<String>,
        config: ListenerConfig,
    ) -> Result<Self, NegotiationError> {
        for name in &supported {
            wire::validate_protocol(name)?;
        }
        if config.answer_ls {
            if supported.len() > wire::MAX_LIST_PROTOCOLS {
                return Err(NegotiationError::TooManyProtocols {
                    max: wire::MAX_LIST_PROTOCOLS,
                });
            }
            let len = wire::encoded_list_len(&supported);
            if len > wire::MAX_LIST_LEN {
                return Err(NegotiationError::MessageTooLong {
                    len: len as u64,
                    max: wire::MAX_LIST_LEN,
                });
            }
        }
        let mut transmit = Vec::new();
        Message::Header.encode(&mut transmit);
        Ok(Self {
            supported,
            config,
            state: State::AwaitHeader,
            answered: 0,
            rejected: Vec::new(),
            last_was_refusal: false,
            transmit,
            outcome: None,
        })
    }

    /// The protocols given at creation.
    pub fn supported(&self) -> &[String] {
        &self.supported
    }

    /// Consumes negotiation messages at the front of `input`, accepting a proposal exactly
    /// when it is one of the supported protocols.
    pub fn handle_input(&mut self, input: &mut BytesMut) {
        let supported = std::mem::take(&mut self.supported);
        self.drive(input, &supported, |name| {
            supported.iter().any(|s| s == name)
        });
        self.supported = supported;
    }

    /// Consumes negotiation messages at the front of `input`, accepting a proposal exactly
    /// when `accept` returns `true` for it; a refused proposal is answered `na`.
    ///
    /// `accept` alone decides, so it may accept names that are not in the supported list
    /// (prefix or version matching) or refuse listed ones (access control). It sees only
    /// well-formed names and is called once per proposal.
    pub fn handle_input_with(&mut self, input: &mut BytesMut, accept: impl FnMut(&str) -> bool) {
        let supported = std::mem::take(&mut self.supported);
        self.drive(input, &supported, accept);
        self.supported = supported;
    }

    /// Tells the listener that the stream ended. Fails the negotiation if it was not over.
    pub fn handle_eof(&mut self) {
        if matches!(self.state, State::AwaitHeader | State::AwaitProposal) {
            let error = self.gave_up_or(NegotiationError::UnexpectedEof);
            self.fail(error);
        }
    }

    /// The bytes to write next, if any: the header at first, then each answer. Several
    /// messages may come in one buffer.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        if self.transmit.is_empty() {
            return None;
        }
        Some(Bytes::from(std::mem::take(&mut self.transmit)))
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

    fn drive(
        &mut self,
        input: &mut BytesMut,
        supported: &[String],
        mut accept: impl FnMut(&str) -> bool,
    ) {
        while matches!(self.state, State::AwaitHeader | State::AwaitProposal) {
            let (message, len) = match wire::decode(input) {
                Ok(Some(decoded)) => decoded,
                Ok(None) => return,
                Err(error) => {
                    let error = self.gave_up_or(error);
                    return self.fail(error);
                }
            };
            match (self.state, message) {
                (State::AwaitHeader, Message::Header) => self.state = State::AwaitProposal,
                (State::AwaitHeader, other) => self.fail(NegotiationError::InvalidHeader {
                    received: other.text().to_owned(),
                }),
                (_, Message::Protocol(name)) if accept(name) => {
                    Message::Protocol(name).encode(&mut self.transmit);
                    self.state = State::Negotiated;
                    self.outcome = Some(Ok(name.to_owned()));
                }
                (_, Message::Protocol(name)) => {
                    if self.count_answer() {
                        self.rejected.push(name.to_owned());
                        self.refuse();
                    }
                }
                (_, Message::ListProtocols) => {
                    if self.count_answer() {
                        if self.config.answer_ls {
                            wire::encode_list(supported, &mut self.transmit);
                            self.last_was_refusal = false;
                        } else {
                            self.refuse();
                        }
                    }
                }
                (_, other @ (Message::Header | Message::NotAvailable)) => {
                    let error = self.gave_up_or(NegotiationError::UnexpectedMessage {
                        expected: "a protocol proposal or ls",
                        received: other.text().to_owned(),
                    });
                    self.fail(error);
                }
            }
            input.advance(len);
        }
    }

    /// Counts one more answer that is not an agreement; fails instead if that would go
    /// past the limit. Returns whether to answer.
    fn count_answer(&mut self) -> bool {
        if self.answered >= self.config.max_refusals {
            self.fail(NegotiationError::TooManyProposals {
                max: self.config.max_refusals,
            });
            return false;
        }
        self.answered += 1;
        true
    }

    fn refuse(&mut self) {
        Message::NotAvailable.encode(&mut self.transmit);
        self.last_was_refusal = true;
    }

    /// After an `na`, a dialer that closes the stream or sends non-negotiation bytes has
    /// given up (a lazy one sends its data regardless); that is not a protocol violation.
    fn gave_up_or(&mut self, error: NegotiationError) -> NegotiationError {
        if self.last_was_refusal {
            NegotiationError::PeerGaveUp {
                rejected: std::mem::take(&mut self.rejected),
            }
        } else {
            error
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

    fn listener(names: &[&str]) -> Listener {
        Listener::new(names.iter().map(|&n| n.to_owned()).collect()).unwrap()
    }

    #[test]
    fn sends_header_eagerly() {
        let mut listener = listener(&["/a"]);
        assert_eq!(
            &listener.poll_transmit().unwrap()[..],
            b"\x13/multistream/1.0.0\n"
        );
        assert_eq!(listener.poll_transmit(), None);
    }

    #[test]
    fn lazy_dialer_in_one_read() {
        let mut listener = listener(&["/a", "/b"]);
        listener.poll_transmit();
        let mut input = messages(&[Message::Header, Message::Protocol("/b")]);
        input.extend_from_slice(b"\x03/a\nhello");
        listener.handle_input(&mut input);
        assert_eq!(listener.poll_outcome(), Some(Ok("/b".to_owned())));
        assert_eq!(&listener.poll_transmit().unwrap()[..], b"\x03/b\n");
        assert_eq!(&input[..], b"\x03/a\nhello");
    }

    #[test]
    fn answers_ls_and_refusals() {
        let mut listener = listener(&["/a", "/b"]);
        listener.poll_transmit();
        let mut input = messages(&[
            Message::Header,
            Message::ListProtocols,
            Message::Protocol("/c"),
        ]);
        listener.handle_input(&mut input);
        let sent = listener.poll_transmit().unwrap();
        let (list, len) = wire::decode_list(&sent).unwrap().unwrap();
        assert_eq!(list, ["/a", "/b"]);
        assert_eq!(&sent[len..], b"\x03na\n");
        assert_eq!(listener.poll_outcome(), None);
        listener.handle_eof();
        assert_eq!(
            listener.poll_outcome(),
            Some(Err(NegotiationError::PeerGaveUp {
                rejected: vec!["/c".into()]
            }))
        );
    }

    #[test]
    fn ls_can_be_refused() {
        let config = ListenerConfig::default().with_answer_ls(false);
        let mut listener = Listener::with_config(vec!["/a".into()], config).unwrap();
        listener.poll_transmit();
        listener.handle_input(&mut messages(&[Message::Header, Message::ListProtocols]));
        assert_eq!(&listener.poll_transmit().unwrap()[..], b"\x03na\n");
    }

    #[test]
    fn predicate_decides() {
        let mut listener = listener(&["/a", "/admin"]);
        let mut input = messages(&[
            Message::Header,
            Message::Protocol("/admin"),
            Message::Protocol("/other"),
        ]);
        let mut asked = Vec::new();
        listener.handle_input_with(&mut input, |name| {
            asked.push(name.to_owned());
            name != "/admin"
        });
        assert_eq!(asked, ["/admin", "/other"]);
        assert_eq!(listener.poll_outcome(), Some(Ok("/other".to_owned())));
        assert_eq!(
            &listener.poll_transmit().unwrap()[..],
            b"\x13/multistream/1.0.0\n\x03na\n\x07/other\n"
        );
    }

    #[test]
    fn caps_refusals() {
        let config = ListenerConfig::default().with_max_refusals(2);
        let mut listener = Listener::with_config(vec!["/a".into()], config).unwrap();
        let mut input = messages(&[
            Message::Header,
            Message::Protocol("/x"),
            Message::ListProtocols,
            Message::Protocol("/y"),
            Message::Protocol("/a"),
        ]);
        listener.handle_input(&mut input);
        assert_eq!(
            listener.poll_outcome(),
            Some(Err(NegotiationError::TooManyProposals { max: 2 }))
        );
        assert!(listener.is_finished());
        // A supported proposal within the limit still succeeds after refusals.
        let config = ListenerConfig::default().with_max_refusals(1);
        let mut listener = Listener::with_config(vec!["/a".into()], config).unwrap();
        let mut input = messages(&[
            Message::Header,
            Message::Protocol("/x"),
            Message::Protocol("/a"),
        ]);
        listener.handle_input(&mut input);
        assert_eq!(listener.poll_outcome(), Some(Ok("/a".to_owned())));
    }

    #[test]
    fn violations() {
        let mut l = listener(&["/a"]);
        l.handle_input(&mut messages(&[Message::Protocol("/a")]));
        assert_eq!(
            l.poll_outcome(),
            Some(Err(NegotiationError::InvalidHeader {
                received: "/a".into()
            }))
        );

        let mut l = listener(&["/a"]);
        l.handle_input(&mut messages(&[Message::Header, Message::NotAvailable]));
        assert!(matches!(
            l.poll_outcome(),
            Some(Err(NegotiationError::UnexpectedMessage { .. }))
        ));

        let mut l = listener(&["/a"]);
        l.handle_input(&mut BytesMut::from(
            &b"\x13/multistream/1.0.0\n\x03xy\n"[..],
        ));
        assert!(matches!(
            l.poll_outcome(),
            Some(Err(NegotiationError::InvalidProtocolName { .. }))
        ));

        let mut l = listener(&["/a"]);
        l.handle_eof();
        assert_eq!(l.poll_outcome(), Some(Err(NegotiationError::UnexpectedEof)));
    }

    #[test]
    fn refuses_bad_local_configuration() {
        assert!(Listener::new(vec!["no-slash".into()]).is_err());
        let many: Vec<String> = (0..=wire::MAX_LIST_PROTOCOLS)
            .map(|i| format!("/{i}"))
            .collect();
        assert!(matches!(
            Listener::new(many.clone()),
            Err(NegotiationError::TooManyProtocols { .. })
        ));
        let config = ListenerConfig::default().with_answer_ls(false);
        assert!(Listener::with_config(many, config).is_ok());
        let long: Vec<String> = (0..20).map(|i| format!("/{i:01000}")).collect();
        assert!(matches!(
            Listener::new(long),
            Err(NegotiationError::MessageTooLong { .. })
        ));
    }
}
