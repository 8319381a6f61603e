//! Dialer against listener in memory: every combination of eager and lazy dialing, refusals,
//! access control, application data behind the negotiation and chunked delivery, plus
//! hostile input. A tiny pipe moves bytes between the two state machines `chunk` bytes at
//! a time; a side that fails closes its end, which the other sees as end of stream.

use super::wire::{self, Message};
use super::{fuzzing, Dialer, Listener, ListenerConfig, NegotiationError};
use bytes::BytesMut;
use proptest::prelude::*;

/// Chunk sizes every scenario is run with: byte by byte, awkward splits, all at once.
const CHUNKS: [usize; 5] = [1, 2, 3, 7, 4096];

#[derive(Debug)]
struct Run {
    dialer: Option<Result<String, NegotiationError>>,
    listener: Option<Result<String, NegotiationError>>,
    /// What is left in the listener's read buffer: the dialer's application data.
    at_listener: Vec<u8>,
    /// What is left in the dialer's read buffer: the listener's application data.
    at_dialer: Vec<u8>,
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|&name| name.to_owned()).collect()
}

fn negotiate(
    mut dialer: Dialer,
    mut listener: Listener,
    chunk: usize,
    mut accept: impl FnMut(&str) -> bool,
    dialer_data: &[u8],
    listener_data: &[u8],
) -> Run {
    let (mut to_listener, mut to_dialer) = (Vec::new(), Vec::new());
    let (mut at_listener, mut at_dialer) = (BytesMut::new(), BytesMut::new());
    let (mut dialer_out, mut listener_out) = (None, None);
    let (mut dialer_wrote, mut listener_wrote) = (false, false);
    let (mut listener_saw_eof, mut dialer_saw_eof) = (false, false);
    for _ in 0..1_000_000 {
        while let Some(bytes) = dialer.poll_transmit() {
            to_listener.extend_from_slice(&bytes);
        }
        if !dialer_wrote && dialer.may_write().is_some() {
            to_listener.extend_from_slice(dialer_data);
            dialer_wrote = true;
        }
        dialer_out = dialer_out.or_else(|| dialer.poll_outcome());
        while let Some(bytes) = listener.poll_transmit() {
            to_dialer.extend_from_slice(&bytes);
        }
        listener_out = listener_out.or_else(|| listener.poll_outcome());
        if !listener_wrote && matches!(listener_out, Some(Ok(_))) {
            to_dialer.extend_from_slice(listener_data);
            listener_wrote = true;
        }
        let dialer_closed = matches!(dialer_out, Some(Err(_)));
        let listener_closed = matches!(listener_out, Some(Err(_)));

        let mut progress = false;
        if !to_listener.is_empty() {
            let n = chunk.min(to_listener.len());
            at_listener.extend_from_slice(&to_listener[..n]);
            to_listener.drain(..n);
            listener.handle_input_with(&mut at_listener, &mut accept);
            progress = true;
        } else if dialer_closed && !listener_saw_eof {
            listener.handle_eof();
            listener_saw_eof = true;
            progress = true;
        }
        if !to_dialer.is_empty() {
            let n = chunk.min(to_dialer.len());
            at_dialer.extend_from_slice(&to_dialer[..n]);
            to_dialer.drain(..n);
            dialer.handle_input(&mut at_dialer);
            progress = true;
        } else if listener_closed && !dialer_saw_eof {
            dialer.handle_eof();
            dialer_saw_eof = true;
            progress = true;
        }
        if !progress {
            break;
        }
    }
    Run {
        dialer: dialer_out,
        listener: listener_out,
        at_listener: at_listener.to_vec(),
        at_dialer: at_dialer.to_vec(),
    }
}

fn supported_by<'a>(list: &'a [&'a str]) -> impl FnMut(&str) -> bool + 'a {
    move |name| list.contains(&name)
}

#[test]
fn golden_header_is_the_first_thing_both_sides_send() {
    let header = b"\x13/multistream/1.0.0\n";
    let mut dialer = Dialer::new(names(&["/noise"])).unwrap();
    assert!(dialer.poll_transmit().unwrap().starts_with(header));
    let mut listener = Listener::new(names(&["/noise"])).unwrap();
    assert_eq!(&listener.poll_transmit().unwrap()[..], header);
}

#[test]
fn eager_falls_back_past_rejected_choices() {
    for chunk in CHUNKS {
        let dialer = Dialer::new(names(&["/tls/1.0.0", "/plaintext/2.0.0", "/noise"])).unwrap();
        let listener = Listener::new(names(&["/noise", "/yamux/1.0.0"])).unwrap();
        let supported = ["/noise", "/yamux/1.0.0"];
        let run = negotiate(
            dialer,
            listener,
            chunk,
            supported_by(&supported),
            b"ping",
            b"pong",
        );
        assert_eq!(run.dialer, Some(Ok("/noise".into())), "chunk {chunk}");
        assert_eq!(run.listener, Some(Ok("/noise".into())), "chunk {chunk}");
        assert_eq!(run.at_listener, b"ping");
        assert_eq!(run.at_dialer, b"pong");
    }
}

#[test]
fn eager_all_rejected() {
    for chunk in CHUNKS {
        let dialer = Dialer::new(names(&["/a", "/b"])).unwrap();
        let listener = Listener::new(names(&["/c"])).unwrap();
        let run = negotiate(dialer, listener, chunk, supported_by(&["/c"]), b"", b"");
        assert_eq!(
            run.dialer,
            Some(Err(NegotiationError::AllRejected {
                tried: names(&["/a", "/b"])
            }))
        );
        assert_eq!(
            run.listener,
            Some(Err(NegotiationError::PeerGaveUp {
                rejected: names(&["/a", "/b"])
            }))
        );
    }
}

#[test]
fn lazy_accepted_with_data_in_the_same_read() {
    for chunk in CHUNKS {
        let dialer = Dialer::lazy("/yamux/1.0.0".into()).unwrap();
        let listener = Listener::new(names(&["/mplex/6.7.0", "/yamux/1.0.0"])).unwrap();
        let accept = supported_by(&["/mplex/6.7.0", "/yamux/1.0.0"]);
        // Application data that itself looks like negotiation messages must be left alone.
        let data = b"\x13/multistream/1.0.0\n\x07/noise\n";
        let run = negotiate(dialer, listener, chunk, accept, data, b"\x00\x01");
        assert_eq!(run.dialer, Some(Ok("/yamux/1.0.0".into())), "chunk {chunk}");
        assert_eq!(run.listener, Some(Ok("/yamux/1.0.0".into())));
        assert_eq!(run.at_listener, data);
        assert_eq!(run.at_dialer, b"\x00\x01");
    }
}

#[test]
fn lazy_rejected() {
    // Data that parses as an incomplete message, as a malformed one, and none at all: the
    // listener reports that the dialer gave up in every case.
    for data in [&b"hello"[..], b"\x03xy\nmore", b""] {
        for chunk in CHUNKS {
            let dialer = Dialer::lazy("/noise".into()).unwrap();
            let listener = Listener::new(names(&["/tls/1.0.0"])).unwrap();
            let run = negotiate(
                dialer,
                listener,
                chunk,
                supported_by(&["/tls/1.0.0"]),
                data,
                b"",
            );
            assert_eq!(
                run.dialer,
                Some(Err(NegotiationError::ProtocolRejected {
                    protocol: "/noise".into()
                })),
                "chunk {chunk}"
            );
            assert_eq!(
                run.listener,
                Some(Err(NegotiationError::PeerGaveUp {
                    rejected: names(&["/noise"])
                })),
                "chunk {chunk}, data {data:?}"
            );
        }
    }
}

#[test]
fn access_predicate_refuses_a_supported_protocol() {
    for chunk in CHUNKS {
        let supported = names(&["/admin/1.0.0", "/public/1.0.0"]);
        let refuse_admin = |name: &str| name == "/public/1.0.0";

        let dialer = Dialer::new(supported.clone()).unwrap();
        let listener = Listener::new(supported.clone()).unwrap();
        let run = negotiate(dialer, listener, chunk, refuse_admin, b"x", b"y");
        assert_eq!(run.dialer, Some(Ok("/public/1.0.0".into())));
        assert_eq!(run.listener, Some(Ok("/public/1.0.0".into())));
        assert_eq!(
            (run.at_listener, run.at_dialer),
            (b"x".to_vec(), b"y".to_vec())
        );

        let dialer = Dialer::lazy("/admin/1.0.0".into()).unwrap();
        let listener = Listener::new(supported).unwrap();
        let run = negotiate(dialer, listener, chunk, refuse_admin, b"x", b"");
        assert_eq!(
            run.dialer,
            Some(Err(NegotiationError::ProtocolRejected {
                protocol: "/admin/1.0.0".into()
            }))
        );
    }
}

/// Sends the header plus `tail` to a fresh listener and returns its outcome.
fn listener_outcome(tail: &[u8]) -> Option<Result<String, NegotiationError>> {
    let mut listener = Listener::new(names(&["/a"])).unwrap();
    let mut input = Vec::new();
    Message::Header.encode(&mut input);
    input.extend_from_slice(tail);
    listener.handle_input(&mut BytesMut::from(&input[..]));
    listener.poll_outcome()
}

#[test]
fn hostile_input() {
    assert_eq!(
        listener_outcome(&[0xff, 0xff, 0xff, 0x0f]),
        Some(Err(NegotiationError::MessageTooLong {
            len: (1 << 25) - 1,
            max: wire::MAX_MESSAGE_LEN
        }))
    );
    // Refused as soon as the prefix shows it, without waiting for the rest of it.
    assert_eq!(
        listener_outcome(&[0xff, 0xff]),
        Some(Err(NegotiationError::MessageTooLong {
            len: 1 << 14,
            max: wire::MAX_MESSAGE_LEN
        }))
    );
    assert_eq!(
        listener_outcome(&[0x81, 0x08]),
        Some(Err(NegotiationError::MessageTooLong {
            len: 1025,
            max: wire::MAX_MESSAGE_LEN
        }))
    );
    assert!(matches!(
        listener_outcome(&[0x80, 0x00]),
        Some(Err(NegotiationError::InvalidLength(_)))
    ));
    assert_eq!(
        listener_outcome(b"\x04/\xc3\x28\n"),
        Some(Err(NegotiationError::NotUtf8))
    );
    assert_eq!(
        listener_outcome(b"\x03/ab"),
        Some(Err(NegotiationError::MissingNewline))
    );
    // A dialer that is not speaking multistream at all: 'G' reads as a 71-byte message,
    // which is waited for and then refused.
    let mut listener = Listener::new(names(&["/a"])).unwrap();
    let mut input = BytesMut::from(&b"GET / HTTP/1.1\r\n"[..]);
    listener.handle_input(&mut input);
    assert_eq!(listener.poll_outcome(), None);
    input.extend_from_slice(
        b"Host: 127.0.0.1\r\nUser-Agent: curl/8.0\r\nAccept: */*\r\nConnection: close\r\n\r\n",
    );
    listener.handle_input(&mut input);
    assert!(matches!(
        listener.poll_outcome(),
        Some(Err(NegotiationError::MissingNewline))
    ));
    // The dialer applies the same limits: a runaway varint, then an oversized length.
    let mut dialer = Dialer::new(names(&["/a"])).unwrap();
    dialer.handle_input(&mut BytesMut::from(&[0xff; 10][..]));
    assert_eq!(
        dialer.poll_outcome(),
        Some(Err(NegotiationError::InvalidLength(
            crate::varint::VarintError::Overflow
        )))
    );
    let mut dialer = Dialer::new(names(&["/a"])).unwrap();
    dialer.handle_input(&mut BytesMut::from(&[0x81, 0x08][..]));
    assert!(matches!(
        dialer.poll_outcome(),
        Some(Err(NegotiationError::MessageTooLong { len: 1025, .. }))
    ));
}

#[test]
fn endless_proposals_are_cut_off() {
    let mut input = Vec::new();
    Message::Header.encode(&mut input);
    for i in 0..10_000 {
        Message::Protocol(&format!("/probe/{i}")).encode(&mut input);
    }
    let total = input.len();
    let mut input = BytesMut::from(&input[..]);
    let mut listener = Listener::new(names(&["/a"])).unwrap();
    let mut asked = 0;
    listener.handle_input_with(&mut input, |_| {
        asked += 1;
        false
    });
    let max = super::DEFAULT_MAX_REFUSALS;
    assert_eq!(
        listener.poll_outcome(),
        Some(Err(NegotiationError::TooManyProposals { max }))
    );
    assert_eq!(asked, max + 1);
    // It stopped reading at the cut-off instead of chewing through everything.
    assert!(input.len() > total / 2);
    let mut expected = Vec::new();
    Message::Header.encode(&mut expected);
    for _ in 0..max {
        Message::NotAvailable.encode(&mut expected);
    }
    assert_eq!(&listener.poll_transmit().unwrap()[..], expected);
    // Nothing more happens once failed.
    listener.handle_input(&mut input);
    assert_eq!(listener.poll_transmit(), None);
    assert_eq!(listener.poll_outcome(), None);
}

#[test]
fn repeated_ls_counts_against_the_cap() {
    let config = ListenerConfig::default().with_max_refusals(3);
    let mut listener = Listener::with_config(names(&["/a"]), config).unwrap();
    let mut input = Vec::new();
    Message::Header.encode(&mut input);
    for _ in 0..100 {
        Message::ListProtocols.encode(&mut input);
    }
    listener.handle_input(&mut BytesMut::from(&input[..]));
    assert_eq!(
        listener.poll_outcome(),
        Some(Err(NegotiationError::TooManyProposals { max: 3 }))
    );
}

fn protocol_name() -> impl Strategy<Value = String> {
    "/[a-e]{1,2}"
}

proptest! {
    #[test]
    fn negotiation_agrees(
        supported in proptest::collection::btree_set(protocol_name(), 0..6),
        proposals in proptest::collection::vec(protocol_name(), 1..6),
        lazy in any::<bool>(),
        chunk in 1usize..40,
        data in proptest::collection::vec(any::<u8>(), 0..16),
    ) {
        let supported: Vec<String> = supported.into_iter().collect();
        let dialer = if lazy {
            Dialer::lazy(proposals[0].clone()).unwrap()
        } else {
            Dialer::new(proposals.clone()).unwrap()
        };
        let proposals = if lazy { proposals[..1].to_vec() } else { proposals };
        let listener = Listener::new(supported.clone()).unwrap();
        let accept = |name: &str| supported.iter().any(|s| s == name);
        let run = negotiate(dialer, listener, chunk, accept, &data, b"reply");
        match proposals.iter().position(|p| supported.contains(p)) {
            Some(i) => {
                prop_assert_eq!(&run.dialer, &Some(Ok(proposals[i].clone())));
                prop_assert_eq!(&run.listener, &Some(Ok(proposals[i].clone())));
                prop_assert_eq!(&run.at_listener, &data);
                prop_assert_eq!(&run.at_dialer, b"reply");
            }
            None => {
                let dialer_error = if lazy {
                    NegotiationError::ProtocolRejected { protocol: proposals[0].clone() }
                } else {
                    NegotiationError::AllRejected { tried: proposals.clone() }
                };
                prop_assert_eq!(run.dialer, Some(Err(dialer_error)));
                let gave_up = matches!(
                    run.listener,
                    Some(Err(NegotiationError::PeerGaveUp { .. }))
                );
                prop_assert!(gave_up, "listener: {:?}", run.listener);
            }
        }
    }

    #[test]
    fn state_machines_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        fuzzing::fuzz_negotiation(&data);
        fuzzing::fuzz_decode(&data);
    }

    #[test]
    fn state_machines_never_panic_after_a_valid_start(
        tail in proptest::collection::vec(any::<u8>(), 0..128),
        chunk in 0u8..32,
    ) {
        // Behind a valid header the fuzzer reaches the proposal-handling states.
        let mut data = vec![chunk];
        Message::Header.encode(&mut data);
        data.extend_from_slice(&tail);
        fuzzing::fuzz_negotiation(&data);
    }
}
