//! Codec tests: round trips, every cap, and "never panics" on arbitrary bytes.

use super::*;
use crate::identity::Keypair;
use proptest::prelude::*;

fn limits() -> Limits {
    Limits::from_config(&super::super::Config::default())
}

fn signed_frame(seq: u64, topic: &str, data: &[u8]) -> (Keypair, Bytes) {
    let kp = Keypair::from_seed([3; 32]);
    let frame = encode_gossip(seq, &kp.peer_id(), topic, data, |m| kp.sign(m));
    (kp, frame)
}

#[test]
fn gossip_round_trips_and_the_signature_covers_the_signed_part() {
    let (kp, frame) = signed_frame(42, "news", b"payload");
    let Frame::Gossip(g) = decode(&frame, &limits()).expect("decode") else {
        panic!("not gossip");
    };
    assert_eq!(
        (g.seq, g.topic, g.data, g.hops),
        (42, "news", &b"payload"[..], 0)
    );
    assert_eq!(g.origin, kp.peer_id());
    let mut input = Vec::new();
    signing_input(g.signed, &mut input);
    assert!(kp.public().verify(&input, g.signature));

    // Relays rewrite only the unsigned header.
    let relayed = relay_copy(&frame, 3, 77, 5);
    let Frame::Gossip(r) = decode(&relayed, &limits()).expect("decode") else {
        panic!("not gossip");
    };
    assert_eq!((r.hops, r.path_max, r.link_weight), (3, 77, 5));
    assert_eq!(r.signed, g.signed);
    assert_eq!(r.signature, g.signature);
}

#[test]
fn caps_are_enforced_before_allocation() {
    let l = Limits {
        max_frame_len: 10_000,
        max_topic_len: 8,
        max_data_len: 16,
        max_control_entries: 4,
    };
    let (_, ok) = signed_frame(1, "short", b"0123456789abcdef");
    assert!(matches!(decode(&ok, &l), Ok(Frame::Gossip(_))));
    let (_, long_topic) = signed_frame(1, "much-too-long", b"x");
    assert!(matches!(
        decode(&long_topic, &l),
        Err(DecodeError::LengthCap { field: "topic", .. })
    ));
    let (_, big_data) = signed_frame(1, "t", &[0; 17]);
    assert!(matches!(
        decode(&big_data, &l),
        Err(DecodeError::LengthCap { field: "data", .. })
    ));
    let tiny = Limits {
        max_frame_len: 10,
        ..l
    };
    assert!(matches!(
        decode(&ok, &tiny),
        Err(DecodeError::Oversized { .. })
    ));

    let entries = [Entry::Prune; 5];
    let control = encode_control([("t", &entries[..])]);
    assert!(matches!(
        decode(&control, &l),
        Err(DecodeError::LengthCap { .. })
    ));
    // A group count far beyond the cap is refused without walking it.
    let mut bogus = vec![VERSION, KIND_CONTROL];
    varint::encode(u64::MAX >> 2, &mut bogus);
    assert!(matches!(
        decode(&bogus, &l),
        Err(DecodeError::LengthCap { .. })
    ));
}

#[test]
fn malformed_frames_get_typed_errors() {
    let l = limits();
    let (_, frame) = signed_frame(9, "t", b"d");
    assert_eq!(decode(&[], &l), Err(DecodeError::Truncated("version")));
    assert_eq!(decode(&[2, 1], &l), Err(DecodeError::UnsupportedVersion(2)));
    assert_eq!(decode(&[VERSION, 9], &l), Err(DecodeError::UnknownKind(9)));
    assert!(matches!(
        decode(&frame[..frame.len() - 1], &l),
        Err(DecodeError::Truncated("signature"))
    ));
    let mut trailing = frame.to_vec();
    trailing.push(0);
    assert_eq!(decode(&trailing, &l), Err(DecodeError::TrailingBytes(1)));
    let control = [VERSION, KIND_CONTROL, 1, 1, b't', 1, 0x7f];
    assert_eq!(decode(&control, &l), Err(DecodeError::UnknownEntry(0x7f)));
    let empty_topic = [VERSION, KIND_CONTROL, 1, 0, 0];
    assert_eq!(decode(&empty_topic, &l), Err(DecodeError::BadTopic));
    let bad_utf8 = [VERSION, KIND_CONTROL, 1, 1, 0xff, 0];
    assert_eq!(decode(&bad_utf8, &l), Err(DecodeError::BadTopic));
}

#[test]
fn length_prefixed_framing_waits_for_whole_frames() {
    let mut buf = BytesMut::new();
    encode_length_prefixed(b"abc", &mut buf);
    encode_length_prefixed(b"de", &mut buf);
    let mut partial = BytesMut::from(&buf[..3]);
    assert_eq!(decode_length_prefixed(&mut partial, 100), Ok(None));
    assert_eq!(
        partial.len(),
        3,
        "nothing consumed until the frame is whole"
    );
    assert_eq!(
        decode_length_prefixed(&mut buf, 100),
        Ok(Some(Bytes::from_static(b"abc")))
    );
    assert_eq!(
        decode_length_prefixed(&mut buf, 100),
        Ok(Some(Bytes::from_static(b"de")))
    );
    assert_eq!(decode_length_prefixed(&mut buf, 100), Ok(None));
    let mut huge = BytesMut::new();
    encode_length_prefixed(&[0; 200], &mut huge);
    assert!(matches!(
        decode_length_prefixed(&mut huge, 100),
        Err(DecodeError::Oversized { .. })
    ));
}

fn entry() -> impl Strategy<Value = Entry> {
    let id = any::<[u8; 16]>().prop_map(MessageId);
    prop_oneof![
        (id.clone(), any::<u8>()).prop_map(|(id, hops)| Entry::IHave { id, hops }),
        (id.clone(), any::<u8>()).prop_map(|(id, hops)| Entry::IHaveAgain { id, hops }),
        id.clone().prop_map(Entry::Ack),
        (id, any::<u32>()).prop_map(|(id, gen)| Entry::Graft { id, gen }),
        Just(Entry::Prune),
        any::<u8>().prop_map(Entry::Interest),
        (any::<u64>(), any::<u8>(), any::<bool>()).prop_map(|(root, dist, parent)| Entry::Tree {
            root,
            dist,
            parent
        }),
    ]
}

proptest! {
    #[test]
    fn control_round_trips(groups in proptest::collection::vec(
        ("[a-z/]{1,20}", proptest::collection::vec(entry(), 0..20)), 0..6)
    ) {
        let frame = encode_control(groups.iter().map(|(t, e)| (t.as_str(), e.as_slice())));
        let Ok(Frame::Control(control)) = decode(&frame, &limits()) else {
            return Err(TestCaseError::fail("not a control frame"));
        };
        let expected: Vec<(String, Entry)> = groups
            .iter()
            .flat_map(|(t, e)| e.iter().map(move |e| (t.clone(), *e)))
            .collect();
        prop_assert_eq!(control.len(), expected.len());
        prop_assert_eq!(control.to_vec(), expected);
    }

    #[test]
    fn gossip_round_trips(seq in any::<u64>(), topic in "[a-zA-Z0-9/]{1,64}",
                          data in proptest::collection::vec(any::<u8>(), 0..512),
                          hops in any::<u8>(), max in any::<u64>(), weight in any::<u64>()) {
        let (kp, frame) = signed_frame(seq, &topic, &data);
        let frame = relay_copy(&frame, hops, max, weight);
        let Ok(Frame::Gossip(g)) = decode(&frame, &limits()) else {
            return Err(TestCaseError::fail("not a gossip frame"));
        };
        prop_assert_eq!(g.seq, seq);
        prop_assert_eq!(g.topic, topic.as_str());
        prop_assert_eq!(g.data, data.as_slice());
        prop_assert_eq!((g.hops, g.path_max, g.link_weight), (hops, max, weight));
        prop_assert_eq!(g.origin, kp.peer_id());
    }

    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&bytes, &limits());
        super::super::fuzzing::fuzz_decode(&bytes);
        super::super::fuzzing::fuzz_length_prefixed(&bytes);
    }

    #[test]
    fn decode_never_panics_on_mutated_frames(seq in any::<u64>(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let (_, frame) = signed_frame(seq, "topic", b"some data");
        let mut bytes = frame.to_vec();
        for (at, value) in flips {
            let at = at % bytes.len();
            bytes[at] = value;
        }
        let _ = decode(&bytes, &limits());
    }

    #[test]
    fn state_machine_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        super::super::fuzzing::fuzz_handle_message(crate::broadcast::test_now(), &bytes);
    }
}
