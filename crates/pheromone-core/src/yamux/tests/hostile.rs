//! Hostile peers: every violation is a typed error, a go away, and no unbounded memory.

use bytes::BytesMut;

use super::super::frame::{FrameError, FrameType, Header, DEFAULT_WINDOW, HEADER_LEN};
use super::super::{
    Config, Event, GoAwayCode, Mode, ReadOutcome, Session, StreamError, StreamId, YamuxError,
};
use super::{events, read_all, sent_frames, t0, wire, Pair};
use crate::yamux::frame::Flags;

fn server() -> Session {
    Session::new(Mode::Server, Config::default(), t0())
}

/// Feeds `input` to a fresh server and returns the result and what it sent.
fn feed(input: &mut BytesMut) -> (Result<(), YamuxError>, Session) {
    let mut session = server();
    let result = session.handle_input(t0(), input);
    (result, session)
}

fn assert_protocol_error(session: &mut Session) {
    assert!(session.is_closed());
    let frames = sent_frames(session);
    let last = frames.last().expect("a go away");
    assert_eq!(last.header, Header::go_away(GoAwayCode::ProtocolError));
    let mut more = wire(&[(Header::ping(Flags::SYN, 1), &[])]);
    assert_eq!(
        session.handle_input(t0(), &mut more),
        Err(YamuxError::SessionClosed)
    );
    assert_eq!(session.open_stream(), Err(YamuxError::SessionClosed));
    let id = StreamId::new(1);
    assert_eq!(session.read(id), Err(StreamError::SessionClosed));
    assert_eq!(session.num_streams(), 0, "state released");
}

#[test]
fn data_beyond_the_window_is_fatal() {
    let body = vec![0u8; DEFAULT_WINDOW as usize + 1];
    let mut input = wire(&[
        (Header::window_update(1, Flags::SYN, 0), &[]),
        (Header::data(1, Flags::NONE, DEFAULT_WINDOW + 1), &body),
    ]);
    let (result, mut session) = feed(&mut input);
    assert_eq!(
        result,
        Err(YamuxError::WindowExceeded {
            stream: 1,
            len: DEFAULT_WINDOW + 1,
            window: DEFAULT_WINDOW
        })
    );
    assert_protocol_error(&mut session);
}

#[test]
fn window_overflow_is_detected_from_the_header_alone() {
    let mut input = wire(&[
        (Header::window_update(1, Flags::SYN, 0), &[]),
        (Header::data(1, Flags::NONE, 100), &[0u8; 100]),
    ]);
    let mut session = server();
    session.handle_input(t0(), &mut input).unwrap();
    // Only the header of a frame one byte over the remaining window.
    let mut input = wire(&[(Header::data(1, Flags::NONE, DEFAULT_WINDOW - 99), &[])]);
    assert!(matches!(
        session.handle_input(t0(), &mut input),
        Err(YamuxError::WindowExceeded { stream: 1, .. })
    ));
}

#[test]
fn window_is_enforced_across_frames_until_credit_is_returned() {
    let mut pair = Pair::new();
    let (id, _) = pair.open();
    let window = Config::default().receive_window;
    // A peer ignoring flow control: a full window, then one more byte.
    let full = vec![0u8; window as usize];
    let mut input = wire(&[
        (Header::data(id.get(), Flags::NONE, window), &full),
        (Header::data(id.get(), Flags::NONE, 1), &[0]),
    ]);
    assert!(matches!(
        pair.server.handle_input(pair.now, &mut input),
        Err(YamuxError::WindowExceeded {
            len: 1,
            window: 0,
            ..
        })
    ));
}

#[test]
fn frame_for_a_never_opened_stream_is_fatal() {
    for header in [
        Header::data(7, Flags::NONE, 0),
        Header::window_update(7, Flags::NONE, 5),
        Header::window_update(8, Flags::ACK, 5), // our parity, never opened by us
    ] {
        let mut input = wire(&[(header, &[])]);
        let (result, mut session) = feed(&mut input);
        assert_eq!(result, Err(YamuxError::UnknownStream(header.stream_id)));
        assert_protocol_error(&mut session);
    }
}

#[test]
fn bad_syns_are_fatal() {
    // Our parity (server ids are even), the session id, a reused and a lower id.
    let cases = [
        (
            vec![Header::window_update(2, Flags::SYN, 0)],
            YamuxError::InvalidStreamId(2),
        ),
        (
            vec![Header::data(0, Flags::SYN, 0)],
            YamuxError::WrongStreamId {
                frame_type: FrameType::Data,
                stream_id: 0,
            },
        ),
        (
            vec![
                Header::window_update(5, Flags::SYN, 0),
                Header::window_update(5, Flags::SYN, 0),
            ],
            YamuxError::DuplicateStream(5),
        ),
        (
            vec![
                Header::window_update(5, Flags::SYN, 0),
                Header::data(3, Flags::SYN, 0),
            ],
            YamuxError::DuplicateStream(3),
        ),
    ];
    for (headers, expected) in cases {
        let frames: Vec<_> = headers.iter().map(|h| (*h, &[][..])).collect();
        let mut input = wire(&frames);
        let (result, mut session) = feed(&mut input);
        assert_eq!(result, Err(expected));
        assert_protocol_error(&mut session);
    }
}

#[test]
fn wrong_version_and_unknown_type_are_fatal() {
    let mut input = wire(&[(Header::ping(Flags::SYN, 1), &[])]);
    input[0] = 1;
    let (result, mut session) = feed(&mut input);
    assert_eq!(
        result,
        Err(YamuxError::Frame(FrameError::UnsupportedVersion(1)))
    );
    assert_protocol_error(&mut session);

    let mut input = wire(&[(Header::ping(Flags::SYN, 1), &[])]);
    input[1] = 9;
    let (result, _) = feed(&mut input);
    assert_eq!(result, Err(YamuxError::Frame(FrameError::UnknownType(9))));
}

#[test]
fn huge_length_is_rejected_without_buffering() {
    let mut input = wire(&[
        (Header::window_update(1, Flags::SYN, 0), &[]),
        (Header::data(1, Flags::NONE, u32::MAX), &[]),
    ]);
    let capacity = input.capacity();
    let (result, mut session) = feed(&mut input);
    assert!(matches!(
        result,
        Err(YamuxError::Frame(FrameError::BodyTooLarge {
            len: u32::MAX,
            ..
        }))
    ));
    assert!(input.capacity() <= capacity, "nothing grew");
    assert_protocol_error(&mut session);
}

#[test]
fn go_away_on_a_stream_id_is_fatal() {
    let mut input = wire(&[(
        Header {
            stream_id: 3,
            ..Header::go_away(GoAwayCode::Normal)
        },
        &[],
    )]);
    let (result, _) = feed(&mut input);
    assert!(matches!(
        result,
        Err(YamuxError::WrongStreamId { stream_id: 3, .. })
    ));
}

#[test]
fn pings_are_answered_with_the_same_opaque_value() {
    let mut input = wire(&[
        (Header::ping(Flags::SYN, 0xdead_beef), &[]),
        (Header::ping(Flags::ACK, 77), &[]), // an answer to nothing we sent: ignored
    ]);
    let (result, mut session) = feed(&mut input);
    result.unwrap();
    let frames = sent_frames(&mut session);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].header, Header::ping(Flags::ACK, 0xdead_beef));
    assert!(events(&mut session).is_empty());
}

#[test]
fn partial_frames_stay_in_the_input() {
    let full = wire(&[
        (Header::window_update(1, Flags::SYN, 0), &[]),
        (Header::data(1, Flags::FIN, 5), b"hello"),
    ]);
    let mut session = server();
    let mut input = BytesMut::new();
    for &byte in full.iter() {
        input.extend_from_slice(&[byte]);
        session.handle_input(t0(), &mut input).unwrap();
        assert!(input.len() < HEADER_LEN + 5);
    }
    assert!(input.is_empty());
    let id = session.accept_stream().unwrap();
    assert_eq!(read_all(&mut session, id), (b"hello".to_vec(), true));
}

#[test]
fn ten_thousand_syns_are_bounded_and_the_session_keeps_working() {
    let client = Config {
        max_streams: 20_000,
        ..Config::default()
    };
    let mut pair = Pair::with(client, Config::default());
    let ids: Vec<_> = (0..10_000)
        .map(|_| pair.client.open_stream().unwrap())
        .collect();
    pair.pump();
    let limit = Config::default().max_pending_accept;
    assert_eq!(pair.server.pending_accept(), limit);
    assert_eq!(pair.server.num_streams(), limit);

    let reset: Vec<_> = events(&mut pair.client)
        .into_iter()
        .map(|event| match event {
            Event::Reset(id) => id,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        reset,
        ids[limit..].to_vec(),
        "everything beyond the limit got RST"
    );
    for &id in &reset {
        assert_eq!(pair.client.write(id, b"x"), Err(StreamError::Reset(id)));
        pair.client.drop_stream(pair.now, id);
    }
    assert_eq!(pair.client.num_streams(), limit);

    // The admitted ones work end to end.
    let mut accepted = Vec::new();
    while let Some(id) = pair.server.accept_stream() {
        accepted.push(id);
    }
    assert_eq!(accepted, ids[..limit].to_vec());
    for &id in &accepted {
        pair.client.write(id, &id.get().to_be_bytes()).unwrap();
    }
    pair.pump();
    for &id in &accepted {
        assert_eq!(
            pair.server.read(id),
            Ok(ReadOutcome::Data(id.get().to_be_bytes().to_vec().into()))
        );
    }
    // And new streams are admitted again once there is room.
    let id = pair.client.open_stream().unwrap();
    pair.pump();
    assert_eq!(pair.server.accept_stream(), Some(id));
}

#[test]
fn max_streams_counts_both_directions() {
    let server = Config {
        max_streams: 3,
        ..Config::default()
    };
    let mut pair = Pair::with(Config::default(), server);
    pair.server.open_stream().unwrap();
    pair.server.open_stream().unwrap();
    let (a, _) = pair.open();
    assert_eq!(
        pair.server.open_stream(),
        Err(YamuxError::TooManyStreams(3))
    );
    let b = pair.client.open_stream().unwrap();
    pair.pump();
    assert!(events(&mut pair.client).contains(&Event::Reset(b)));
    pair.server.drop_stream(pair.now, a);
    // A dropped stream holds its slot until the peer closes its side too.
    assert_eq!(
        pair.server.open_stream(),
        Err(YamuxError::TooManyStreams(3))
    );
    pair.client.close_write(a).unwrap();
    pair.pump();
    pair.server.open_stream().unwrap();
}

#[test]
fn event_queue_stays_bounded_by_streams() {
    let mut pair = Pair::new();
    let ids: Vec<_> = (0..20).map(|_| pair.open().0).collect();
    events(&mut pair.server);
    for _ in 0..50 {
        for &id in &ids {
            pair.client.write(id, b"spam").unwrap();
        }
        pair.pump();
        // The application reads without polling events: still one event per stream.
        for &id in &ids {
            let _ = pair.server.read_up_to(id, 1);
        }
    }
    assert_eq!(events(&mut pair.server).len(), ids.len());
}

#[test]
fn refused_syn_still_respects_the_initial_window() {
    let config = Config {
        max_streams: 0,
        ..Config::default()
    };
    let mut session = Session::new(Mode::Server, config, t0());
    let body = vec![1u8; DEFAULT_WINDOW as usize];
    let mut input = wire(&[(Header::data(1, Flags::SYN, DEFAULT_WINDOW), &body)]);
    session.handle_input(t0(), &mut input).unwrap();
    let frames = sent_frames(&mut session);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].header, Header::window_update(1, Flags::RST, 0));
    // Late frames for the refused stream are a race, not an error.
    let mut input = wire(&[(Header::window_update(1, Flags::NONE, 9), &[])]);
    session.handle_input(t0(), &mut input).unwrap();

    let body = vec![1u8; DEFAULT_WINDOW as usize + 1];
    let mut input = wire(&[(Header::data(3, Flags::SYN, DEFAULT_WINDOW + 1), &body)]);
    assert!(matches!(
        session.handle_input(t0(), &mut input),
        Err(YamuxError::WindowExceeded { stream: 3, .. })
    ));
}
