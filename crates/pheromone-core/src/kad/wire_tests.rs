use super::*;
use crate::identity::Keypair;
use proptest::prelude::*;

fn peer(seed: u8) -> PeerId {
    Keypair::from_seed([seed; 32]).peer_id()
}

fn addr(i: u16) -> Multiaddr {
    format!("/ip4/10.0.{}.{}/tcp/{}", i >> 8, i & 0xff, 4000 + i % 1000)
        .parse()
        .unwrap()
}

fn frame(message: &MessageProto) -> Vec<u8> {
    let mut out = Vec::new();
    write_body(message, &mut out);
    out
}

#[test]
fn find_node_request_round_trips_and_matches_prost() {
    let key = peer(1).to_bytes();
    let mut out = Vec::new();
    Request::FindNode { key: key.clone() }.encode(&mut out);
    assert_eq!(
        Request::decode(&out),
        Ok(Request::FindNode { key: key.clone() })
    );
    let proto = <MessageProto as prost::Message>::decode(out.as_slice()).unwrap();
    assert_eq!(proto.r#type, 4);
    assert_eq!(proto.key, key);
}

#[test]
fn ping_round_trips() {
    let mut out = Vec::new();
    Request::Ping.encode(&mut out);
    assert_eq!(Request::decode(&out), Ok(Request::Ping));
    let mut out = Vec::new();
    Response::Ping.encode(&mut out);
    assert_eq!(
        Response::decode(&out, 5, DecodeLimits::default()),
        Ok(Response::Ping)
    );
}

#[test]
fn malformed_requests_are_typed_errors() {
    // An empty message is type 0, PUT_VALUE (proto3's default), which we do not serve.
    assert_eq!(Request::decode(&[]), Err(WireError::UnsupportedType(0)));
    // A type tag with no value after it.
    assert!(matches!(Request::decode(&[8]), Err(WireError::Protobuf(_))));
    assert!(matches!(
        Request::decode(&[0xff, 0xff]),
        Err(WireError::Protobuf(_))
    ));
    // FIND_NODE without a key, and with one longer than any peer ID.
    assert_eq!(Request::decode(&[8, 4]), Err(WireError::BadKey(0)));
    let mut long = empty(4);
    long.key = vec![1; MAX_KEY_LEN + 1];
    assert_eq!(
        Request::decode(&frame(&long)),
        Err(WireError::BadKey(MAX_KEY_LEN + 1))
    );
    // Field number 0 does not exist.
    let mut out = Vec::new();
    Request::Ping.encode(&mut out);
    out.push(0);
    assert!(matches!(Request::decode(&out), Err(WireError::Protobuf(_))));
    // Groups (wire type 3) are refused rather than guessed at.
    assert!(matches!(
        Request::decode(&[0x0b]),
        Err(WireError::Protobuf(_))
    ));
}

#[test]
fn responses_of_the_wrong_type_are_refused() {
    let mut out = Vec::new();
    Response::Ping.encode(&mut out);
    assert_eq!(
        Response::decode(&out, 4, DecodeLimits::default()),
        Err(WireError::TypeMismatch {
            expected: 4,
            got: 5
        })
    );
}

#[test]
fn a_response_listing_ten_thousand_peers_costs_only_the_cap() {
    let id = peer(9).to_bytes();
    let mut message = empty(4);
    message.closer_peers = (0..10_000)
        .map(|_| PeerProto {
            id: id.clone(),
            addrs: Vec::new(),
            connection: 0,
        })
        .collect();
    let out = frame(&message);
    assert!(out.len() < MAX_RESPONSE_LEN);
    let limits = DecodeLimits {
        max_peers: 40,
        max_addrs: 8,
    };
    match Response::decode(&out, 4, limits).unwrap() {
        Response::FindNode {
            closer_peers,
            ignored,
            invalid,
        } => {
            assert_eq!(closer_peers.len(), 40);
            assert_eq!(ignored, 10_000 - 40);
            assert_eq!(invalid, 0);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn addresses_per_peer_are_capped_and_bad_ones_skipped() {
    let mut message = empty(4);
    let mut addrs: Vec<Vec<u8>> = vec![vec![0xff, 0xff]];
    addrs.extend((0..100).map(|i| addr(i).to_bytes()));
    message.closer_peers = vec![
        PeerProto {
            id: peer(1).to_bytes(),
            addrs,
            connection: 1,
        },
        PeerProto {
            id: vec![0x99, 1, 2],
            addrs: Vec::new(),
            connection: 0,
        },
    ];
    let limits = DecodeLimits {
        max_peers: 40,
        max_addrs: 3,
    };
    match Response::decode(&frame(&message), 4, limits).unwrap() {
        Response::FindNode {
            closer_peers,
            invalid,
            ..
        } => {
            assert_eq!(closer_peers.len(), 1);
            assert_eq!(invalid, 1);
            // The unparsable one does not use up the cap.
            assert_eq!(closer_peers[0].addrs, vec![addr(0), addr(1), addr(2)]);
            assert_eq!(closer_peers[0].connection, ConnectionType::Connected);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn messages_over_the_caps_are_refused_before_parsing() {
    let huge = vec![0u8; MAX_REQUEST_LEN + 1];
    assert_eq!(
        Request::decode(&huge),
        Err(WireError::FrameTooLarge {
            len: huge.len() as u64,
            max: MAX_REQUEST_LEN
        })
    );
    let huge = vec![0u8; MAX_RESPONSE_LEN + 1];
    assert!(matches!(
        Response::decode(&huge, 4, DecodeLimits::default()),
        Err(WireError::FrameTooLarge { .. })
    ));
}

fn arb_peer() -> impl Strategy<Value = KadPeer> {
    (
        any::<u8>(),
        proptest::collection::vec(any::<u16>(), 0..8),
        0i32..4,
    )
        .prop_map(|(seed, addrs, c)| KadPeer {
            id: peer(seed),
            addrs: addrs.into_iter().map(addr).collect(),
            connection: ConnectionType::from_i32(c as u64),
        })
}

proptest! {
    #[test]
    fn responses_round_trip(peers in proptest::collection::vec(arb_peer(), 0..30)) {
        let response = Response::FindNode { closer_peers: peers, ignored: 0, invalid: 0 };
        let mut out = Vec::new();
        response.encode(&mut out);
        let limits = DecodeLimits { max_peers: 40, max_addrs: 8 };
        prop_assert_eq!(Response::decode(&out, 4, limits), Ok(response));
    }

    #[test]
    fn the_hand_encoder_writes_what_prost_writes(peers in proptest::collection::vec(arb_peer(), 0..10)) {
        let response = Response::FindNode { closer_peers: peers.clone(), ignored: 0, invalid: 0 };
        let mut ours = Vec::new();
        response.encode(&mut ours);
        let mut message = empty(4);
        message.closer_peers = peers
            .iter()
            .map(|p| PeerProto {
                id: p.id.to_bytes(),
                addrs: p.addrs.iter().map(Multiaddr::to_bytes).collect(),
                connection: p.connection.to_i32(),
            })
            .collect();
        prop_assert_eq!(ours, frame(&message));
    }

    #[test]
    fn requests_round_trip(key in proptest::collection::vec(any::<u8>(), 1..MAX_KEY_LEN)) {
        let request = Request::FindNode { key };
        let mut out = Vec::new();
        request.encode(&mut out);
        prop_assert_eq!(Request::decode(&out), Ok(request));
    }

    #[test]
    fn decoders_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        crate::kad::fuzzing::fuzz_decode(&data);
    }
}
