//! Property tests: arbitrary input never panics, arbitrary operation sequences keep every
//! stream's bytes intact and in order.

use bytes::BytesMut;
use proptest::prelude::*;

use super::super::frame::{Flags, FrameType, Header};
use super::super::fuzzing::{fuzz_decode_frame, fuzz_session_input};
use super::super::{Config, Mode, ReadOutcome, Session};
use super::{t0, wire, Pair};

fn arb_header() -> impl Strategy<Value = Header> {
    (
        0u8..4,
        0u16..16,
        0u32..12,
        prop_oneof![0u32..64, any::<u32>()],
    )
        .prop_map(|(ty, flags, stream_id, length)| {
            let frame_type = FrameType::from_u8(ty).unwrap_or(FrameType::Data);
            let length = if frame_type == FrameType::Data {
                length % 64
            } else {
                length
            };
            Header {
                frame_type,
                flags: Flags::from_bits(flags),
                stream_id,
                length,
            }
        })
}

#[derive(Debug, Clone)]
enum Op {
    Write {
        stream: usize,
        len: usize,
        from_client: bool,
    },
    Read {
        stream: usize,
        max: usize,
        by_client: bool,
    },
    Pump,
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0usize..4, 0usize..100_000, any::<bool>()).prop_map(|(stream, len, from_client)| {
            Op::Write {
                stream,
                len,
                from_client,
            }
        }),
        (0usize..4, 1usize..70_000, any::<bool>()).prop_map(|(stream, max, by_client)| {
            Op::Read {
                stream,
                max,
                by_client,
            }
        }),
        Just(Op::Pump),
    ]
}

/// Byte `i` of the stream `stream` sent by one side: distinct per stream and direction.
fn byte_at(stream: usize, from_client: bool, i: usize) -> u8 {
    (i as u8)
        .wrapping_mul(7)
        .wrapping_add(stream as u8 * 31)
        .wrapping_add(u8::from(from_client) * 101)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn session_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        fuzz_session_input(&bytes);
        fuzz_decode_frame(&bytes);
    }

    #[test]
    fn session_never_panics_on_arbitrary_frames(
        headers in proptest::collection::vec(arb_header(), 0..40),
        server in any::<bool>(),
    ) {
        let frames: Vec<_> = headers.iter().map(|h| (*h, &[0x5a; 64][..h.body_len() as usize])).collect();
        let mut input = wire(&frames);
        let mode = if server { Mode::Server } else { Mode::Client };
        let mut session = Session::new(mode, Config { max_pending_accept: 2, ..Config::default() }, t0());
        let mut bytes_fed = BytesMut::new();
        // Feed in two pieces to cross frame boundaries.
        let second = input.split_off(input.len() / 2);
        bytes_fed.extend_from_slice(&input);
        if session.handle_input(t0(), &mut bytes_fed).is_ok() {
            bytes_fed.extend_from_slice(&second);
            let result = session.handle_input(t0(), &mut bytes_fed);
            prop_assert_eq!(result.is_err(), session.is_closed());
        }
        prop_assert!(session.pending_accept() <= 2);
        while let Some(id) = session.accept_stream() {
            let _ = session.read(id);
        }
        while session.poll_event().is_some() {}
    }

    #[test]
    fn random_operations_keep_data_intact(ops in proptest::collection::vec(arb_op(), 1..60)) {
        let config = Config {
            receive_window: 256 * 1024,
            max_frame_data: 16 * 1024,
            copy_threshold: 4 * 1024,
            ..Config::default()
        };
        let mut pair = Pair::with(config.clone(), config);
        let ids: Vec<_> = (0..4).map(|_| pair.open().0).collect();
        // [stream][direction: 0 = client->server, 1 = server->client]
        let mut written = [[0usize; 2]; 4];
        let mut read = [[0usize; 2]; 4];
        let mut scratch = Vec::new();
        for op in ops {
            match op {
                Op::Write { stream, len, from_client } => {
                    let dir = usize::from(!from_client);
                    let start = written[stream][dir];
                    scratch.clear();
                    scratch.extend((start..start + len).map(|i| byte_at(stream, from_client, i)));
                    let session = if from_client { &mut pair.client } else { &mut pair.server };
                    let n = session.write(ids[stream], &scratch).unwrap();
                    prop_assert!(n <= len);
                    written[stream][dir] += n;
                }
                Op::Read { stream, max, by_client } => {
                    let dir = usize::from(by_client);
                    let session = if by_client { &mut pair.client } else { &mut pair.server };
                    if let ReadOutcome::Data(chunk) = session.read_up_to(ids[stream], max).unwrap() {
                        prop_assert!(!chunk.is_empty() && chunk.len() <= max);
                        let start = read[stream][dir];
                        for (k, &b) in chunk.iter().enumerate() {
                            prop_assert_eq!(b, byte_at(stream, !by_client, start + k));
                        }
                        read[stream][dir] += chunk.len();
                    }
                }
                Op::Pump => pair.pump(),
            }
        }
        // Drain everything: flow control must let all written bytes through.
        for _ in 0..64 {
            pair.pump();
            for (stream, &id) in ids.iter().enumerate() {
                for by_client in [false, true] {
                    let dir = usize::from(by_client);
                    let session = if by_client { &mut pair.client } else { &mut pair.server };
                    while let ReadOutcome::Data(chunk) = session.read(id).unwrap() {
                        read[stream][dir] += chunk.len();
                    }
                }
            }
        }
        prop_assert_eq!(read, written);
    }
}
