//! `Session::read_copy`: received data handed to a caller's buffer without a `Bytes` per
//! chunk, with the same order, window accounting and end of stream as `read`.

use super::*;
use crate::yamux::frame::FrameType;
use crate::yamux::CopyOutcome;

/// Reads with `read_copy` in pieces of at most `max` until nothing is buffered.
fn copy_all(session: &mut Session, id: StreamId, max: usize) -> (Vec<u8>, CopyOutcome) {
    let mut out = Vec::new();
    loop {
        let before = out.len();
        match session
            .read_copy(id, max, |bytes| out.extend_from_slice(bytes))
            .expect("read_copy")
        {
            CopyOutcome::Copied(n) => {
                assert!(n > 0 && n <= max.max(1));
                assert_eq!(out.len() - before, n, "the count is what the sink got");
            }
            other => return (out, other),
        }
    }
}

#[test]
fn small_and_large_bodies_come_out_in_order_in_any_piece_size() {
    let mut pair = Pair::new();
    let (id, _) = pair.open();
    // Small bodies (copied on arrival) between large ones (kept as slices of the input).
    let mut data = Vec::new();
    for k in 0..40usize {
        let len = if k % 3 == 0 {
            20_000 + k * 101
        } else {
            1 + k * 13
        };
        let piece: Vec<u8> = (0..len).map(|i| (i * 7 + k) as u8).collect();
        pair.client.write(id, &piece).unwrap();
        data.extend_from_slice(&piece);
    }
    pair.client.close_write(id).unwrap();
    pair.pump();
    for max in [1, 7, 1000, 64 * 1024] {
        let mut pair2 = Pair::new();
        let (id2, _) = pair2.open();
        let mut sent = 0;
        let mut got = Vec::new();
        while sent < data.len() {
            let end = (sent + 5000).min(data.len());
            pair2.client.write(id2, &data[sent..end]).unwrap();
            sent = end;
            pair2.pump();
            let (bytes, outcome) = copy_all(&mut pair2.server, id2, max);
            assert_eq!(outcome, CopyOutcome::Pending);
            got.extend_from_slice(&bytes);
        }
        pair2.client.close_write(id2).unwrap();
        pair2.pump();
        let (rest, outcome) = copy_all(&mut pair2.server, id2, max);
        got.extend_from_slice(&rest);
        assert_eq!(outcome, CopyOutcome::Eof);
        assert!(got == data, "piece size {max}: bytes differ");
    }
    let (got, outcome) = copy_all(&mut pair.server, id, 3000);
    assert_eq!(outcome, CopyOutcome::Eof);
    assert!(got == data, "bytes differ");
    assert_eq!(pair.server.buffered(id), Some(0));
}

#[test]
fn reading_by_copy_gives_the_window_back_like_reading_chunks() {
    let mut pair = Pair::new();
    let (id, _) = pair.open();
    let window = Config::default().receive_window as usize;
    let data = vec![9u8; window / 2 + 1];
    assert_eq!(pair.client.write(id, &data).unwrap(), data.len());
    pair.pump();
    let (got, _) = copy_all(&mut pair.server, id, 100_000);
    assert_eq!(got.len(), data.len());
    let updates: Vec<_> = sent_frames(&mut pair.server)
        .into_iter()
        .filter(|f| {
            f.header.frame_type == FrameType::WindowUpdate && f.header.stream_id == id.get()
        })
        .collect();
    assert_eq!(updates.len(), 1, "one update once half the window was read");
    assert!(updates[0].header.length as usize >= data.len());
}

#[test]
fn a_reset_stream_fails_and_unknown_streams_are_reported() {
    let mut pair = Pair::new();
    let (id, _) = pair.open();
    pair.client.reset(id);
    pair.pump();
    assert!(pair.server.read_copy(id, 10, |_| {}).is_err());
    let unknown = StreamId::new(999);
    assert!(pair.server.read_copy(unknown, 10, |_| {}).is_err());
}
