//! Streams dropped before the peer closed: FIN, then bounded lingering (stream limit,
//! discarded bytes, grace period) until the peer's FIN or our RST.

use std::time::Duration;

use super::super::frame::Flags;
use super::super::{Config, Event, ReadOutcome, StreamState};
use super::{events, read_all, sent_frames, Pair};

fn rst_count(frames: &[super::super::frame::Frame]) -> usize {
    frames
        .iter()
        .filter(|f| f.header.flags.contains(Flags::RST))
        .count()
}

#[test]
fn peer_fin_after_our_drop_ends_the_stream_without_a_reset() {
    let mut pair = Pair::new();
    let (id, _) = pair.open();
    pair.client.write(id, b"request").unwrap();
    pair.client.drop_stream(pair.now, id);
    assert_eq!(pair.client.num_lingering(), 1);
    assert_eq!(pair.client.stream_state(id), None, "the id is unknown now");
    pair.pump();
    assert_eq!(read_all(&mut pair.server, id), (b"request".to_vec(), true));
    // The peer answers into the dropped stream (discarded) and closes.
    pair.server.write(id, b"answer nobody reads").unwrap();
    pair.server.close_write(id).unwrap();
    pair.pump();
    assert_eq!(
        (pair.client.num_streams(), pair.client.num_lingering()),
        (0, 0)
    );
    assert_eq!(pair.server.stream_state(id), Some(StreamState::Closed));
    assert!(!events(&mut pair.server).contains(&Event::Reset(id)));
    pair.server.drop_stream(pair.now, id);
    assert_eq!(pair.server.num_streams(), 0);
    // Nothing was reset, and the grace timer has nothing left to do.
    let (a, b) = pair.advance(Duration::from_secs(60));
    assert!(a.is_ok() && b.is_ok());
    assert_eq!(rst_count(&sent_frames(&mut pair.client)), 0);
}

#[test]
fn silent_peer_is_reset_after_the_grace_period() {
    let config = Config {
        dropped_stream_grace: Duration::from_secs(3),
        keepalive_interval: None,
        ..Config::default()
    };
    let mut pair = Pair::with(config, Config::default());
    let (id, _) = pair.open();
    pair.client.drop_stream(pair.now, id);
    let deadline = pair.now + Duration::from_secs(3);
    assert_eq!(pair.client.poll_timeout(), Some(deadline));
    pair.pump();
    assert_eq!(pair.server.read(id), Ok(ReadOutcome::Eof));
    assert_eq!(pair.advance(Duration::from_secs(2)).0, Ok(()));
    assert_eq!(pair.client.num_lingering(), 1, "still within the grace");
    assert!(sent_frames(&mut pair.client).is_empty());
    assert_eq!(pair.advance(Duration::from_secs(1)).0, Ok(()));
    let frames = sent_frames(&mut pair.client);
    assert_eq!(rst_count(&frames), 1, "{frames:?}");
    assert_eq!(pair.client.num_streams(), 0);
    assert_eq!(pair.client.poll_timeout(), None);
}

#[test]
fn peer_sending_past_the_cap_is_reset_and_nothing_is_buffered() {
    let config = Config {
        dropped_stream_max_bytes: 1000,
        ..Config::default()
    };
    let mut pair = Pair::with(config, Config::default());
    let (id, _) = pair.open();
    pair.client.drop_stream(pair.now, id);
    pair.pump();
    pair.server.write(id, &[7u8; 600]).unwrap();
    pair.pump();
    assert_eq!(
        pair.client.num_lingering(),
        1,
        "600 bytes are within the cap"
    );
    pair.server.write(id, &[7u8; 600]).unwrap();
    pair.pump();
    assert_eq!(pair.client.num_streams(), 0, "reset past the cap");
    assert!(events(&mut pair.server).contains(&Event::Reset(id)));
}

#[test]
fn dropped_streams_count_against_the_stream_limit() {
    let config = Config {
        max_streams: 2,
        ..Config::default()
    };
    let mut pair = Pair::with(config, Config::default());
    let (a, _) = pair.open();
    let (_b, _) = pair.open();
    pair.client.drop_stream(pair.now, a);
    assert!(
        pair.client.open_stream().is_err(),
        "a lingering stream still holds its slot"
    );
    pair.server.close_write(a).unwrap();
    pair.pump();
    assert_eq!(pair.client.num_streams(), 1);
    pair.client
        .open_stream()
        .expect("the slot is free once the peer closed");
}

#[test]
fn stale_deadlines_stay_bounded() {
    let config = Config {
        max_streams: 4,
        ..Config::default()
    };
    let mut pair = Pair::with(config, Config::default());
    for _ in 0..200 {
        let (id, _) = pair.open();
        pair.client.drop_stream(pair.now, id);
        pair.server.close_write(id).unwrap();
        pair.pump();
        pair.server.drop_stream(pair.now, id);
        assert_eq!(pair.client.num_streams(), 0);
    }
    assert!(pair.client.lingering.len() <= 2 * 4 + 16);
}
