//! Round trips, caps and hostile-input tests of the routing wire format.

use super::*;
use crate::identity::Keypair;
use proptest::prelude::*;

fn peer(n: u8) -> PeerId {
    Keypair::from_seed([n; 32]).peer_id()
}

fn limits() -> Limits {
    Limits::from_config(&crate::route::Config::default())
}

fn arb_peer() -> impl Strategy<Value = PeerId> {
    any::<u8>().prop_map(peer)
}

fn arb_status() -> impl Strategy<Value = TraceStatus> {
    prop_oneof![
        Just(TraceStatus::Reached),
        Just(TraceStatus::NoRoute),
        Just(TraceStatus::HopLimit),
        Just(TraceStatus::Loop),
        Just(TraceStatus::Timeout),
    ]
}

fn arb_message() -> impl Strategy<Value = Message> {
    let update = (
        arb_peer(),
        any::<u32>(),
        any::<u16>(),
        any::<u8>(),
        any::<u8>(),
    )
        .prop_map(|(destination, seqno, metric, hops, fill)| UpdateEntry {
            destination,
            seqno,
            metric,
            hops,
            signature: (metric != INFINITY).then_some([fill; SIGNATURE_LEN]),
        });
    let request =
        (arb_peer(), any::<u32>(), any::<u8>()).prop_map(|(destination, seqno, hop_count)| {
            RequestEntry {
                destination,
                seqno,
                hop_count,
            }
        });
    prop_oneof![
        proptest::collection::vec(update, 0..40).prop_map(Message::Update),
        proptest::collection::vec(request, 0..40).prop_map(Message::Request),
        (
            any::<u64>(),
            arb_peer(),
            any::<u8>(),
            proptest::collection::vec(arb_peer(), 0..MAX_TRACE_PATH)
        )
            .prop_map(|(id, target, ttl, path)| Message::Trace(TraceProbe {
                id,
                target,
                ttl,
                path
            })),
        (
            any::<u64>(),
            arb_peer(),
            arb_status(),
            proptest::collection::vec(arb_peer(), 0..MAX_TRACE_PATH)
        )
            .prop_map(
                |(id, target, status, path)| Message::TraceReply(TraceReply {
                    id,
                    target,
                    status,
                    path,
                    signature: (status == TraceStatus::Reached).then_some([7; SIGNATURE_LEN]),
                })
            ),
    ]
}

#[test]
fn update_layout_is_compact() {
    let m = Message::Update(vec![UpdateEntry {
        destination: peer(1),
        seqno: 300,
        metric: 2,
        hops: 2,
        signature: Some([9; SIGNATURE_LEN]),
    }]);
    let bytes = m.to_vec();
    // version, kind, count, peer len + 38 peer bytes, seqno (2), metric (1), hops,
    // signature (64).
    assert_eq!(bytes.len(), 3 + 39 + 2 + 1 + 1 + 64);
    assert_eq!(bytes.len(), m.encoded_len());
    assert_eq!(&bytes[..4], &[VERSION, KIND_UPDATE, 1, 38]);
    assert_eq!(decode(&bytes, &limits()), Ok(m));
}

#[test]
fn counts_are_capped_before_allocation() {
    let mut frame = vec![VERSION, KIND_UPDATE];
    varint::encode(1 << 40, &mut frame);
    assert!(matches!(
        decode(&frame, &limits()),
        Err(DecodeError::LengthCap { .. })
    ));
    let frame = [VERSION, KIND_TRACE, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    assert_eq!(
        decode(&frame, &limits()),
        Err(DecodeError::BadPeerId("target"))
    );
    let mut frame = vec![VERSION, KIND_TRACE];
    frame.extend_from_slice(&[0; 8]);
    frame.push(38);
    frame.extend_from_slice(peer(1).as_bytes());
    frame.extend_from_slice(&[3, 200]);
    assert!(matches!(
        decode(&frame, &limits()),
        Err(DecodeError::LengthCap {
            field: "path length",
            ..
        })
    ));
}

#[test]
fn bad_frames_are_typed_errors() {
    let l = limits();
    assert_eq!(decode(&[], &l), Err(DecodeError::Truncated("version")));
    assert_eq!(decode(&[9, 1], &l), Err(DecodeError::UnsupportedVersion(9)));
    // Version 1 frames (unsigned records) are refused.
    assert_eq!(
        decode(&[1, 1, 0], &l),
        Err(DecodeError::UnsupportedVersion(1))
    );
    assert_eq!(decode(&[VERSION, 9], &l), Err(DecodeError::UnknownKind(9)));
    assert_eq!(
        decode(&[VERSION, 1, 0, 0], &l),
        Err(DecodeError::TrailingBytes(1))
    );
    assert_eq!(
        decode(&[VERSION, 1, 1], &l),
        Err(DecodeError::Truncated("destination"))
    );
    // A finite entry cut off in its signature.
    let mut frame = vec![VERSION, KIND_UPDATE, 1, 38];
    frame.extend_from_slice(peer(1).as_bytes());
    frame.extend_from_slice(&[1, 1, 1]);
    frame.extend_from_slice(&[0; SIGNATURE_LEN - 1]);
    assert_eq!(
        decode(&frame, &l),
        Err(DecodeError::Truncated("record signature"))
    );
    let big = vec![0u8; l.max_frame_len + 1];
    assert!(matches!(
        decode(&big, &l),
        Err(DecodeError::Oversized { .. })
    ));
    // A metric beyond u16.
    let mut frame = vec![VERSION, KIND_UPDATE, 1, 38];
    frame.extend_from_slice(peer(1).as_bytes());
    frame.push(1);
    varint::encode(1 << 20, &mut frame);
    frame.push(1);
    assert_eq!(decode(&frame, &l), Err(DecodeError::Varint("metric")));
}

#[test]
fn length_prefixed_waits_for_whole_frames() {
    let frame = Message::Request(vec![RequestEntry {
        destination: peer(2),
        seqno: 7,
        hop_count: 3,
    }])
    .to_vec();
    let mut stream = Vec::new();
    encode_length_prefixed(&frame, &mut stream);
    let mut buf = BytesMut::from(&stream[..stream.len() - 1]);
    assert_eq!(decode_length_prefixed(&mut buf, 1024), Ok(None));
    buf.extend_from_slice(&stream[stream.len() - 1..]);
    assert_eq!(
        decode_length_prefixed(&mut buf, 1024).map(|f| f.map(|f| f.to_vec())),
        Ok(Some(frame))
    );
    assert!(buf.is_empty());
    let mut huge = BytesMut::new();
    let mut prefix = Vec::new();
    varint::encode(1 << 30, &mut prefix);
    huge.extend_from_slice(&prefix);
    assert!(matches!(
        decode_length_prefixed(&mut huge, 1024),
        Err(DecodeError::LengthCap { .. })
    ));
}

proptest! {
    #[test]
    fn round_trip(m in arb_message()) {
        let bytes = m.to_vec();
        prop_assert_eq!(bytes.len(), m.encoded_len());
        prop_assert_eq!(decode(&bytes, &limits()), Ok(m));
    }

    #[test]
    fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&bytes, &limits());
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = decode_length_prefixed(&mut buf, 256) {}
    }

    #[test]
    fn never_panics_on_mutated_frames(m in arb_message(), at in any::<usize>(), byte in any::<u8>()) {
        let mut bytes = m.to_vec();
        let i = at % bytes.len();
        bytes[i] = byte;
        let _ = decode(&bytes, &limits());
        bytes.truncate(i);
        let _ = decode(&bytes, &limits());
    }
}
