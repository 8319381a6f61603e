//! Well-behaved peers: streams, flow control, events, closing, go away, keep-alive.

use std::time::Duration;

use super::super::frame::{FrameType, DEFAULT_WINDOW};
use super::super::{Config, Event, GoAwayCode, ReadOutcome, StreamError, StreamState, YamuxError};
use super::{events, read_all, sent_frames, Pair};
use crate::yamux::frame::Flags;

#[test]
fn open_accept_write_read_fin_both_directions() {
    let mut pair = Pair::new();
    let id = pair.client.open_stream().unwrap();
    assert_eq!(pair.client.write(id, b"ping").unwrap(), 4);
    pair.client.close_write(id).unwrap();
    pair.pump();

    assert_eq!(events(&mut pair.server), vec![Event::IncomingStream]);
    let inbound = pair.server.accept_stream().unwrap();
    assert_eq!(inbound, id);
    assert_eq!(pair.server.accept_stream(), None);
    assert_eq!(events(&mut pair.server), vec![Event::Readable(id)]);
    assert_eq!(read_all(&mut pair.server, id), (b"ping".to_vec(), true));
    assert_eq!(pair.server.stream_state(id), Some(StreamState::ReadClosed));

    pair.server.write(id, b"pong").unwrap();
    pair.server.close_write(id).unwrap();
    assert_eq!(pair.server.stream_state(id), Some(StreamState::Closed));
    pair.pump();
    assert_eq!(pair.client.is_acknowledged(id), Some(true));
    assert_eq!(events(&mut pair.client), vec![Event::Readable(id)]);
    assert_eq!(read_all(&mut pair.client, id), (b"pong".to_vec(), true));
    assert_eq!(pair.client.stream_state(id), Some(StreamState::Closed));

    pair.client.drop_stream(pair.now, id);
    pair.server.drop_stream(pair.now, id);
    assert!(
        sent_frames(&mut pair.client).is_empty(),
        "closed streams vanish quietly"
    );
    assert!(sent_frames(&mut pair.server).is_empty());
    assert_eq!(
        (pair.client.num_streams(), pair.server.num_streams()),
        (0, 0)
    );
    assert_eq!(
        pair.client.write(id, b"x"),
        Err(StreamError::UnknownStream(id))
    );
}

#[test]
fn syn_goes_out_without_any_write_and_carries_the_window() {
    let mut pair = Pair::new();
    let id = pair.client.open_stream().unwrap();
    let frames = sent_frames(&mut pair.client);
    assert_eq!(frames.len(), 1);
    let header = frames[0].header;
    assert_eq!(header.frame_type, FrameType::WindowUpdate);
    assert_eq!(header.flags, Flags::SYN);
    assert_eq!(header.stream_id, id.get());
    assert_eq!(
        header.length,
        Config::default().receive_window - DEFAULT_WINDOW
    );
    assert_eq!(id.get() % 2, 1, "client ids are odd");

    let mut pair = Pair::new();
    let id = pair.server.open_stream().unwrap();
    assert_eq!(id.get(), 2, "server ids are even");
    pair.pump();
    assert_eq!(pair.client.accept_stream(), Some(id));
    let frames = sent_frames(&mut pair.client);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].header.flags, Flags::ACK);
}

#[test]
fn sixty_four_mib_through_one_stream() {
    const TOTAL: usize = 64 * 1024 * 1024;
    let data: Vec<u8> = (0..TOTAL).map(|i| (i ^ (i >> 11)) as u8).collect();
    let mut pair = Pair::new();
    let (id, _) = pair.open();
    let (mut sent, mut received, mut short_writes) = (0, 0, 0);
    let mut rounds = 0;
    while received < TOTAL {
        rounds += 1;
        assert!(rounds < 1_000, "transfer stalled");
        // Offer more than the 16 MiB window so that every round exhausts it.
        let end = TOTAL.min(sent + 24 * 1024 * 1024);
        let n = pair.client.write(id, &data[sent..end]).unwrap();
        sent += n;
        if sent < end {
            short_writes += 1;
            assert_eq!(pair.client.send_window(id), Some(0));
        } else if sent == TOTAL {
            pair.client.close_write(id).unwrap();
        }
        pair.pump();
        loop {
            match pair.server.read(id).unwrap() {
                ReadOutcome::Data(chunk) => {
                    assert!(chunk.len() <= Config::default().max_frame_data as usize);
                    assert_eq!(&chunk[..], &data[received..received + chunk.len()]);
                    received += chunk.len();
                }
                ReadOutcome::Pending => break,
                ReadOutcome::Eof => {
                    assert_eq!(received, TOTAL);
                    break;
                }
            }
        }
        pair.pump();
        if sent < TOTAL {
            // Reading the window's worth of data sent updates that reopened it.
            assert_eq!(events(&mut pair.client), vec![Event::Writable(id)]);
            assert!(pair.client.send_window(id).unwrap() > 0);
        }
    }
    assert_eq!(pair.server.read(id), Ok(ReadOutcome::Eof));
    assert!(short_writes >= 3, "the window limited the sender");
    assert_eq!(sent, TOTAL);
}

#[test]
fn hundred_concurrent_streams() {
    let mut pair = Pair::new();
    let ids: Vec<_> = (0..100)
        .map(|_| pair.client.open_stream().unwrap())
        .collect();
    for (i, &id) in ids.iter().enumerate() {
        let msg = format!("request {i}");
        pair.client.write(id, msg.as_bytes()).unwrap();
        pair.client.close_write(id).unwrap();
    }
    pair.pump();
    let mut accepted = Vec::new();
    while let Some(id) = pair.server.accept_stream() {
        accepted.push(id);
    }
    assert_eq!(accepted, ids);
    for &id in &accepted {
        let (request, eof) = read_all(&mut pair.server, id);
        assert!(eof);
        let reply: Vec<u8> = request.iter().rev().copied().collect();
        pair.server.write(id, &reply).unwrap();
        pair.server.close_write(id).unwrap();
        pair.server.drop_stream(pair.now, id);
    }
    pair.pump();
    for (i, &id) in ids.iter().enumerate() {
        let (reply, eof) = read_all(&mut pair.client, id);
        assert!(eof);
        let expected: Vec<u8> = format!("request {i}").bytes().rev().collect();
        assert_eq!(reply, expected);
        pair.client.drop_stream(pair.now, id);
    }
    assert_eq!(
        (pair.client.num_streams(), pair.server.num_streams()),
        (0, 0)
    );
}

#[test]
fn half_close_keeps_the_other_direction_open() {
    let mut pair = Pair::new();
    let (id, _) = pair.open();
    pair.client.close_write(id).unwrap();
    pair.client.close_write(id).unwrap(); // idempotent
    assert_eq!(
        pair.client.write(id, b"x"),
        Err(StreamError::WriteClosed(id))
    );
    assert_eq!(pair.client.stream_state(id), Some(StreamState::WriteClosed));
    pair.pump();
    assert_eq!(pair.server.read(id), Ok(ReadOutcome::Eof));
    for _ in 0..3 {
        pair.server.write(id, b"still talking").unwrap();
        pair.pump();
        assert_eq!(
            read_all(&mut pair.client, id),
            (b"still talking".to_vec(), false)
        );
    }
    pair.server.close_write(id).unwrap();
    pair.pump();
    assert_eq!(pair.client.read(id), Ok(ReadOutcome::Eof));
}

#[test]
fn reset_reaches_the_peer_and_late_frames_are_ignored() {
    let mut pair = Pair::new();
    let (id, _) = pair.open();
    // Both act at once: the server writes while the client's RST is in flight.
    pair.server.write(id, b"late").unwrap();
    pair.client.write(id, b"doomed").unwrap();
    pair.client.reset(id);
    assert_eq!(pair.client.stream_state(id), None);
    pair.pump();
    assert_eq!(events(&mut pair.server), vec![Event::Reset(id)]);
    assert_eq!(pair.server.stream_state(id), Some(StreamState::Reset));
    assert_eq!(pair.server.read(id), Err(StreamError::Reset(id)));
    assert_eq!(pair.server.write(id, b"x"), Err(StreamError::Reset(id)));
    assert!(events(&mut pair.client).is_empty());
    pair.server.drop_stream(pair.now, id);
    assert!(
        sent_frames(&mut pair.server).is_empty(),
        "no RST for a reset stream"
    );
    assert_eq!(
        (pair.client.num_streams(), pair.server.num_streams()),
        (0, 0)
    );
    // Both sides still work.
    pair.open();
}

#[test]
fn drop_stream_closes_with_fin_never_rst() {
    let mut pair = Pair::new();
    // Peer finished and everything was read: FIN, the peer sees a clean end.
    let (a, _) = pair.open();
    pair.server.close_write(a).unwrap();
    pair.pump();
    assert_eq!(pair.client.read(a), Ok(ReadOutcome::Eof));
    pair.client.drop_stream(pair.now, a);
    pair.pump();
    assert_eq!(pair.server.read(a), Ok(ReadOutcome::Eof));
    assert_eq!(pair.server.stream_state(a), Some(StreamState::Closed));

    // Peer may still send: what we wrote is closed with FIN and nothing else; the peer
    // reads all of it and may still finish its side.
    events(&mut pair.server);
    let (b, _) = pair.open();
    pair.client.write(b, b"bye").unwrap();
    pair.client.drop_stream(pair.now, b);
    let frames = sent_frames(&mut pair.client);
    assert!(
        frames.iter().all(|f| !f.header.flags.contains(Flags::RST)),
        "no RST: {frames:?}"
    );
    assert!(frames.last().unwrap().header.flags.contains(Flags::FIN));
    pair.server
        .handle_input(pair.now, &mut super::wire_of(&frames))
        .unwrap();
    assert!(!events(&mut pair.server).contains(&Event::Reset(b)));
    assert_eq!(read_all(&mut pair.server, b), (b"bye".to_vec(), true));
    assert_eq!(
        pair.client.num_streams(),
        1,
        "dropped stream counted until FIN"
    );
    pair.server.write(b, b"late answer").unwrap();
    pair.server.close_write(b).unwrap();
    pair.pump();
    assert_eq!(pair.client.num_streams(), 0);

    // Peer finished but data was left unread: FIN, the data is discarded, no RST.
    let (c, _) = pair.open();
    pair.server.write(c, b"unread").unwrap();
    pair.server.close_write(c).unwrap();
    pair.pump();
    pair.client.drop_stream(pair.now, c);
    let frames = sent_frames(&mut pair.client);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].header.flags, Flags::FIN);
    assert_eq!(pair.client.stream_state(c), None);
}

#[test]
fn go_away_stops_new_streams_only() {
    let mut pair = Pair::new();
    let (id, _) = pair.open();
    pair.client.go_away(GoAwayCode::Normal);
    pair.client.go_away(GoAwayCode::InternalError); // only the first is sent
    pair.pump();
    assert_eq!(
        events(&mut pair.server),
        vec![Event::GoAwayReceived(GoAwayCode::Normal)]
    );
    assert_eq!(pair.server.remote_go_away(), Some(GoAwayCode::Normal));
    assert_eq!(
        pair.server.open_stream(),
        Err(YamuxError::RemoteGoAway(GoAwayCode::Normal))
    );
    assert_eq!(pair.client.open_stream(), Err(YamuxError::LocalGoAway));
    pair.server.write(id, b"still here").unwrap();
    pair.pump();
    assert_eq!(
        read_all(&mut pair.client, id),
        (b"still here".to_vec(), false)
    );
    assert!(!pair.client.is_finished());
    pair.client.reset(id);
    assert!(pair.client.is_finished());
}

#[test]
fn syn_after_our_go_away_is_refused() {
    let mut pair = Pair::new();
    pair.server.go_away(GoAwayCode::Normal);
    let id = pair.client.open_stream().unwrap(); // crosses the go away in flight
    pair.pump();
    assert_eq!(pair.server.accept_stream(), None);
    assert_eq!(
        events(&mut pair.client),
        vec![Event::GoAwayReceived(GoAwayCode::Normal), Event::Reset(id)]
    );
}

#[test]
fn keepalive_measures_rtt_and_detects_silence() {
    let config = Config {
        keepalive_interval: Some(Duration::from_secs(1)),
        keepalive_timeout: Duration::from_secs(2),
        ..Config::default()
    };
    let mut pair = Pair::with(config.clone(), config);
    let at = pair.client.poll_timeout().unwrap();
    assert_eq!(at, pair.now + Duration::from_secs(1));
    let (c, s) = pair.advance(Duration::from_secs(1));
    assert!(c.is_ok() && s.is_ok());
    let frames = sent_frames(&mut pair.client);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].header.frame_type, FrameType::Ping);
    assert_eq!(frames[0].header.flags, Flags::SYN);
    // Deliver the ping late so there is a measurable RTT.
    pair.server.outgoing().clear();
    let mut ping = bytes::BytesMut::new();
    frames[0].encode(&mut ping);
    pair.now += Duration::from_millis(30);
    pair.server.handle_input(pair.now, &mut ping).unwrap();
    pair.pump();
    assert_eq!(
        events(&mut pair.client),
        vec![Event::PingRtt(Duration::from_millis(30))]
    );

    // The next ping goes unanswered: silence for the timeout is fatal.
    pair.now += Duration::from_millis(970);
    pair.client.handle_timeout(pair.now).unwrap();
    assert_eq!(sent_frames(&mut pair.client).len(), 1, "second ping");
    // Bytes from the peer (here: its own ping) prove it is alive and push the deadline.
    pair.now += Duration::from_millis(1500);
    let mut input = super::wire(&[(super::Header::ping(Flags::SYN, 9), &[])]);
    pair.client.handle_input(pair.now, &mut input).unwrap();
    pair.now += Duration::from_millis(1000);
    pair.client.handle_timeout(pair.now).unwrap();
    let deadline = pair.client.poll_timeout().unwrap();
    assert!(deadline <= pair.now + Duration::from_secs(1));
    pair.now += Duration::from_secs(1);
    assert_eq!(
        pair.client.handle_timeout(pair.now),
        Err(YamuxError::KeepaliveTimeout(Duration::from_secs(2)))
    );
    assert!(pair.client.is_closed());
    assert_eq!(pair.client.poll_timeout(), None);
    assert_eq!(pair.client.open_stream(), Err(YamuxError::SessionClosed));
}

#[test]
fn window_updates_are_batched() {
    let mut pair = Pair::new();
    let (id, _) = pair.open();
    pair.client.write(id, &[7u8; 64 * 1024]).unwrap();
    pair.pump();
    let (data, _) = read_all(&mut pair.server, id);
    assert_eq!(data.len(), 64 * 1024);
    assert!(
        sent_frames(&mut pair.server).is_empty(),
        "no update for 64 KiB of a 16 MiB window"
    );
}

#[test]
fn short_write_arms_writable() {
    let config = Config {
        receive_window: DEFAULT_WINDOW,
        ..Config::default()
    };
    let mut pair = Pair::with(config.clone(), config);
    let (id, _) = pair.open();
    let big = vec![1u8; 300 * 1024];
    assert_eq!(
        pair.client.write(id, &big).unwrap(),
        DEFAULT_WINDOW as usize
    );
    assert_eq!(pair.client.write(id, &big).unwrap(), 0);
    assert_eq!(pair.client.send_window(id), Some(0));
    pair.pump();
    assert!(events(&mut pair.client).is_empty());
    let _ = read_all(&mut pair.server, id);
    pair.pump();
    assert_eq!(events(&mut pair.client), vec![Event::Writable(id)]);
    assert_eq!(pair.client.send_window(id), Some(DEFAULT_WINDOW));
}

#[test]
fn readable_is_edge_triggered() {
    let mut pair = Pair::new();
    let (id, _) = pair.open();
    for _ in 0..5 {
        pair.client.write(id, b"chunk").unwrap();
        pair.pump();
    }
    assert_eq!(events(&mut pair.server), vec![Event::Readable(id)]);
    assert!(matches!(pair.server.read_up_to(id, 3), Ok(ReadOutcome::Data(b)) if &b[..] == b"chu"));
    pair.client.write(id, b"more").unwrap();
    pair.pump();
    assert_eq!(events(&mut pair.server), vec![Event::Readable(id)]);
    let (rest, _) = read_all(&mut pair.server, id);
    assert_eq!(rest, b"nkchunkchunkchunkchunkmore");
}

#[test]
fn remote_reset_of_unaccepted_stream_removes_it() {
    let mut pair = Pair::new();
    let a = pair.client.open_stream().unwrap();
    let b = pair.client.open_stream().unwrap();
    pair.pump();
    pair.client.reset(a);
    pair.pump();
    assert_eq!(pair.server.pending_accept(), 1);
    assert_eq!(pair.server.num_streams(), 1);
    assert_eq!(events(&mut pair.server), vec![Event::IncomingStream]);
    assert_eq!(pair.server.accept_stream(), Some(b));
    assert_eq!(pair.server.accept_stream(), None);
}

#[test]
fn connection_budget_limits_window_growth() {
    let server = Config {
        max_connection_receive_window: 3 * u64::from(DEFAULT_WINDOW) + 1000,
        ..Config::default()
    };
    let mut pair = Pair::with(Config::default(), server);
    let a = pair.server.open_stream().unwrap();
    let b = pair.server.open_stream().unwrap();
    let c = pair.server.open_stream().unwrap();
    pair.pump();
    for _ in 0..3 {
        pair.client.accept_stream().unwrap();
    }
    pair.pump();
    // a took the whole spare budget; b and c get only the spec's base window.
    assert_eq!(pair.client.send_window(a), Some(3 * DEFAULT_WINDOW + 1000));
    assert_eq!(pair.client.send_window(b), Some(DEFAULT_WINDOW));
    assert_eq!(pair.client.send_window(c), Some(DEFAULT_WINDOW));
    // Dropping a frees budget that later window updates of c hand out.
    pair.server.reset(a);
    pair.pump();
    pair.client
        .write(c, &vec![0u8; DEFAULT_WINDOW as usize])
        .unwrap();
    pair.pump();
    let _ = read_all(&mut pair.server, c);
    pair.pump();
    assert!(pair.client.send_window(c).unwrap() > DEFAULT_WINDOW);
}

#[test]
fn large_bodies_are_zero_copy_small_ones_copied() {
    let mut pair = Pair::new();
    let (id, _) = pair.open();
    let big = vec![3u8; 64 * 1024];
    pair.client.write(id, &big).unwrap();
    pair.client.write(id, b"small").unwrap();
    let mut input = pair.client.outgoing().split();
    let base = input.as_ptr() as usize;
    pair.server.handle_input(pair.now, &mut input).unwrap();
    let ReadOutcome::Data(chunk) = pair.server.read(id).unwrap() else {
        panic!("data expected");
    };
    assert_eq!(chunk.len(), big.len());
    assert_eq!(
        chunk.as_ptr() as usize,
        base + 12,
        "a slice of the input buffer"
    );
    let ReadOutcome::Data(chunk) = pair.server.read(id).unwrap() else {
        panic!("data expected");
    };
    assert_eq!(&chunk[..], b"small");
    let start = chunk.as_ptr() as usize;
    assert!(
        !(base..base + 2 * 12 + big.len() + 5).contains(&start),
        "small bodies do not pin the input buffer"
    );
}

#[test]
fn answer_completed_with_fin_survives_the_responder_dropping_its_stream() {
    // An identify-style responder: writes its answer, closes, and drops the stream without
    // waiting for our side. The requester reads the whole answer and closes normally.
    let mut pair = Pair::new();
    let (id, _) = pair.open();
    pair.server.write(id, b"answer").unwrap();
    pair.server.close_write(id).unwrap();
    pair.server.drop_stream(pair.now, id);
    pair.pump();
    assert_eq!(read_all(&mut pair.client, id), (b"answer".to_vec(), true));
    assert!(!events(&mut pair.client).contains(&Event::Reset(id)));
    pair.client.close_write(id).unwrap();
    pair.client.drop_stream(pair.now, id);
    pair.pump();
    assert_eq!(
        (pair.client.num_streams(), pair.server.num_streams()),
        (0, 0)
    );
}

#[test]
fn large_frames_delivered_piecewise_keep_data_and_flags() {
    // Bodies arriving in pieces (as Noise frames cut them) are handed over as they come,
    // SYN on the first piece and FIN only after the last.
    for piece in [1usize, 7, 11, 12, 13, 4096, 65519] {
        let mut client =
            super::super::Session::new(super::super::Mode::Client, Config::default(), super::t0());
        let mut server =
            super::super::Session::new(super::super::Mode::Server, Config::default(), super::t0());
        let id = client.open_stream().unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(client.write(id, &data).unwrap(), data.len());
        client.close_write(id).unwrap();
        let wire = client.outgoing().split();
        let mut input = bytes::BytesMut::new();
        for chunk in wire.chunks(piece) {
            input.extend_from_slice(chunk);
            server.handle_input(super::t0(), &mut input).unwrap();
            assert!(
                input.len() < 12,
                "only a partial header may wait, piece {piece}"
            );
        }
        assert_eq!(server.accept_stream(), Some(id));
        assert_eq!(read_all(&mut server, id), (data, true), "piece {piece}");
    }
}

#[test]
fn a_header_written_alone_carries_the_body_sent_after_it() {
    let config = Config {
        receive_window: DEFAULT_WINDOW,
        max_frame_data: 100 * 1024,
        ..Config::default()
    };
    let mut pair = Pair::with(config.clone(), config);
    let (id, _) = pair.open();
    let body: Vec<u8> = (0..300 * 1024u32).map(|i| (i % 251) as u8).collect();
    let mut sent = 0;
    // One frame per call: the frame limit first, then what is left of the window.
    for expected in [100 * 1024, 100 * 1024, 56 * 1024, 0] {
        let n = pair.client.write_header(id, body.len() - sent).unwrap();
        assert_eq!(n, expected);
        pair.client
            .outgoing()
            .extend_from_slice(&body[sent..sent + n]);
        sent += n;
    }
    assert_eq!(pair.client.send_window(id), Some(0));
    pair.pump();
    let (got, _) = read_all(&mut pair.server, id);
    assert_eq!(got, body[..sent]);
    pair.pump();
    assert_eq!(events(&mut pair.client), vec![Event::Writable(id)]);
    pair.client.close_write(id).unwrap();
    assert_eq!(
        pair.client.write_header(id, 1),
        Err(StreamError::WriteClosed(id))
    );
}

#[test]
fn keepalive_can_be_tightened_on_a_live_session() {
    // The default: a ping after 15 s, silence tolerated for 20 s.
    let mut pair = Pair::with(Config::default(), Config::default());
    assert_eq!(
        pair.client.poll_timeout(),
        Some(pair.now + Duration::from_secs(15))
    );
    // A link an overlay relies on: ping every 2 s, fail after 5 s of silence.
    pair.client.set_keepalive(
        Some(Duration::from_secs(2)),
        Duration::from_secs(5),
        pair.now,
    );
    assert_eq!(
        pair.client.poll_timeout(),
        Some(pair.now + Duration::from_secs(2))
    );
    pair.now += Duration::from_secs(2);
    pair.client.handle_timeout(pair.now).unwrap();
    assert_eq!(sent_frames(&mut pair.client).len(), 1, "a ping");
    // The peer went silent (its link died without a reset): 5 s after the ping it fails,
    // 7 s after the last byte, where the default would have taken 35 s.
    pair.now += Duration::from_secs(5);
    assert_eq!(
        pair.client.handle_timeout(pair.now),
        Err(YamuxError::KeepaliveTimeout(Duration::from_secs(5)))
    );
}
