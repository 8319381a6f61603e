use super::*;
use crate::addr::Protocol;
use crate::identity::Keypair;
use proptest::prelude::*;
use std::net::Ipv4Addr;

fn sample() -> IdentifyInfo {
    IdentifyInfo {
        public_key: Keypair::from_seed([3; 32]).public(),
        listen_addrs: vec![
            "/ip4/127.0.0.1/tcp/4001".parse().expect("addr"),
            "/ip6/::1/udp/4001/quic-v1".parse().expect("addr"),
        ],
        protocols: vec![PROTOCOL_ID.into(), "/ipfs/ping/1.0.0".into()],
        observed_addr: Some("/ip4/127.0.0.1/tcp/51234".parse().expect("addr")),
        protocol_version: "/pheromone/0.1.0".into(),
        agent_version: "pheromone/0.1.0".into(),
        pheromone_name: Some("luda".into()),
    }
}

fn frame(proto: &IdentifyProto) -> Vec<u8> {
    let mut out = Vec::new();
    wire::write_frame(&proto.encode_to_vec(), &mut out);
    out
}

fn key_bytes() -> Vec<u8> {
    Keypair::from_seed([3; 32]).public().to_protobuf_encoding()
}

#[test]
fn round_trip_and_partial_input() {
    let info = sample();
    let mut out = Vec::new();
    info.encode(&mut out).expect("encode");
    assert_eq!(
        IdentifyInfo::decode(&out),
        Ok(Some((info.clone(), out.len())))
    );
    assert_eq!(IdentifyInfo::decode_stream(&out), Ok(info.clone()));
    for cut in 0..out.len() {
        assert_eq!(IdentifyInfo::decode(&out[..cut]), Ok(None), "cut at {cut}");
        let short = IdentifyInfo::decode_stream(&out[..cut]);
        assert!(short.is_err(), "cut at {cut}");
    }
    assert_eq!(info.peer_id(), Keypair::from_seed([3; 32]).peer_id());
}

#[test]
fn field_numbers_follow_the_spec() {
    let info = sample();
    let mut out = Vec::new();
    info.encode(&mut out).expect("encode");
    let (body, _) = wire::split_frame(&out).expect("frame").expect("complete");
    // publicKey is field 1, length-delimited: tag byte (1 << 3) | 2.
    let key = info.public_key.to_protobuf_encoding();
    let mut expected = vec![0x0a, key.len() as u8];
    expected.extend_from_slice(&key);
    assert!(body.windows(expected.len()).any(|w| w == expected));
    // protocolVersion is field 5: tag 0x2a.
    let version = b"/pheromone/0.1.0";
    let mut expected = vec![0x2a, version.len() as u8];
    expected.extend_from_slice(version);
    assert!(body.windows(expected.len()).any(|w| w == expected));
}

#[test]
fn pheromone_name_is_field_1000_and_capped() {
    let info = sample();
    let mut out = Vec::new();
    info.encode(&mut out).expect("encode");
    let (body, _) = wire::split_frame(&out).expect("frame").expect("complete");
    // Field 1000, length-delimited: tag (1000 << 3) | 2 = 8002 as a varint.
    let expected = [0xc2, 0x3e, 4, b'l', b'u', b'd', b'a'];
    assert!(body.windows(expected.len()).any(|w| w == expected));
    let long = IdentifyProto {
        public_key: Some(key_bytes()),
        listen_addrs: vec![],
        observed_addr: None,
        protocols: vec![],
        protocol_version: None,
        agent_version: None,
        pheromone_name: Some("é".repeat(MAX_NAME_LEN).into_bytes()),
    };
    let decoded = IdentifyInfo::decode_stream(&frame(&long)).expect("decode");
    let name = decoded.pheromone_name.expect("name kept");
    assert!(name.len() <= MAX_NAME_LEN && name.len() > MAX_NAME_LEN - 2);
    // An empty name counts as none, and a peer without the field has none.
    let empty = IdentifyProto {
        pheromone_name: Some(Vec::new()),
        ..long.clone()
    };
    assert_eq!(
        IdentifyInfo::decode_stream(&frame(&empty))
            .expect("decode")
            .pheromone_name,
        None
    );
}

#[test]
fn bad_addresses_and_names_are_skipped() {
    let good: Multiaddr = "/ip4/1.2.3.4/tcp/1".parse().expect("addr");
    let proto = IdentifyProto {
        public_key: Some(key_bytes()),
        listen_addrs: vec![
            vec![0x80, 0x80, 0x01, 1, 2], // unknown protocol code
            good.to_bytes(),
            Vec::new(),
            vec![0x04, 1],
        ],
        observed_addr: Some(vec![0xff]),
        protocols: vec![
            b"/ok/1".to_vec(),
            vec![0xff, 0xfe],
            Vec::new(),
            vec![b'a'; MAX_PROTOCOL_NAME_LEN + 1],
        ],
        protocol_version: Some(vec![b'v', 0xff]),
        agent_version: Some(vec![b'x'; MAX_VERSION_LEN + 10]),
        pheromone_name: None,
    };
    let info = IdentifyInfo::decode_stream(&frame(&proto)).expect("decode");
    assert_eq!(info.listen_addrs, vec![good]);
    assert_eq!(info.observed_addr, None);
    assert_eq!(info.protocols, vec!["/ok/1".to_string()]);
    assert_eq!(info.protocol_version, "v\u{fffd}");
    assert_eq!(info.agent_version.len(), MAX_VERSION_LEN);
}

#[test]
fn public_key_is_required_and_checked() {
    let missing = IdentifyProto {
        public_key: None,
        listen_addrs: vec![],
        observed_addr: None,
        protocols: vec![],
        protocol_version: None,
        agent_version: None,
        pheromone_name: None,
    };
    assert_eq!(
        IdentifyInfo::decode_stream(&frame(&missing)),
        Err(IdentifyError::MissingPublicKey)
    );
    // A push may leave it out.
    assert_eq!(
        IdentifyPush::decode_stream(&frame(&missing)),
        Ok(IdentifyPush::default())
    );
    let garbage = IdentifyProto {
        public_key: Some(vec![0x08, 0x00, 0x12, 0x01, 0x00]),
        ..missing
    };
    assert!(matches!(
        IdentifyInfo::decode_stream(&frame(&garbage)),
        Err(IdentifyError::InvalidPublicKey(_))
    ));
}

#[test]
fn split_messages_merge() {
    // go-libp2p sends the bulk first and the rest in a second frame.
    let first = IdentifyProto {
        public_key: Some(key_bytes()),
        listen_addrs: vec!["/ip4/1.1.1.1/tcp/1"
            .parse::<Multiaddr>()
            .expect("a")
            .to_bytes()],
        observed_addr: None,
        protocols: vec![b"/a".to_vec()],
        protocol_version: Some(b"old".to_vec()),
        agent_version: Some(b"agent".to_vec()),
        pheromone_name: None,
    };
    let second = IdentifyProto {
        public_key: None,
        listen_addrs: vec!["/ip4/2.2.2.2/tcp/2"
            .parse::<Multiaddr>()
            .expect("a")
            .to_bytes()],
        observed_addr: Some(
            "/ip4/3.3.3.3/tcp/3"
                .parse::<Multiaddr>()
                .expect("a")
                .to_bytes(),
        ),
        protocols: vec![b"/b".to_vec()],
        protocol_version: Some(b"new".to_vec()),
        agent_version: None,
        pheromone_name: None,
    };
    let mut stream = frame(&first);
    stream.extend_from_slice(&frame(&second));
    let info = IdentifyInfo::decode_stream(&stream).expect("decode");
    assert_eq!(info.listen_addrs.len(), 2);
    assert_eq!(info.protocols, vec!["/a".to_string(), "/b".to_string()]);
    assert_eq!(info.protocol_version, "new");
    assert_eq!(info.agent_version, "agent");
    assert!(info.observed_addr.is_some());
    // One frame at a time sees only the first.
    let (single, used) = IdentifyInfo::decode(&stream).expect("ok").expect("frame");
    assert_eq!(used, frame(&first).len());
    assert_eq!(single.protocols, vec!["/a".to_string()]);
}

#[test]
fn stream_limits() {
    let empty_frame = [0u8];
    assert_eq!(
        IdentifyPush::decode_stream(&[]),
        Err(IdentifyError::NoMessage)
    );
    assert_eq!(
        IdentifyPush::decode_stream(&empty_frame.repeat(MAX_FRAMES)),
        Ok(IdentifyPush::default())
    );
    assert_eq!(
        IdentifyPush::decode_stream(&empty_frame.repeat(MAX_FRAMES + 1)),
        Err(IdentifyError::TooManyFrames { max: MAX_FRAMES })
    );
    assert_eq!(
        IdentifyPush::decode_stream(&[0x05, 0x0a]),
        Err(IdentifyError::Truncated)
    );
    assert!(matches!(
        IdentifyPush::decode_stream(&[0x02, 0xff, 0xff]),
        Err(IdentifyError::Protobuf(_))
    ));
}

#[test]
fn list_caps() {
    let addr = Multiaddr::from(Protocol::Ip4(Ipv4Addr::LOCALHOST)).to_bytes();
    let proto = IdentifyProto {
        public_key: Some(key_bytes()),
        listen_addrs: vec![addr; MAX_LISTEN_ADDRS + 5],
        observed_addr: None,
        protocols: vec![b"/p".to_vec(); MAX_PROTOCOLS + 5],
        protocol_version: None,
        agent_version: None,
        pheromone_name: None,
    };
    let info = IdentifyInfo::decode_stream(&frame(&proto)).expect("decode");
    assert_eq!(info.listen_addrs.len(), MAX_LISTEN_ADDRS);
    assert_eq!(info.protocols.len(), MAX_PROTOCOLS);
}

#[test]
fn oversized_messages_are_not_sent() {
    let mut info = sample();
    info.protocols = vec!["/a/very/long/protocol/name/1.0.0".into(); 200];
    let mut out = vec![7];
    assert!(matches!(
        info.encode(&mut out),
        Err(IdentifyError::MessageTooLarge {
            max: MAX_SEND_LEN,
            ..
        })
    ));
    assert_eq!(out, [7]);
}

fn arb_info() -> impl Strategy<Value = IdentifyInfo> {
    let addr = (any::<[u8; 4]>(), any::<u16>(), any::<bool>()).prop_map(|(ip, port, quic)| {
        let base = Multiaddr::from(Protocol::Ip4(Ipv4Addr::from(ip)));
        if quic {
            base.with(Protocol::Udp(port)).with(Protocol::QuicV1)
        } else {
            base.with(Protocol::Tcp(port))
        }
    });
    (
        any::<[u8; 32]>(),
        proptest::collection::vec(addr.clone(), 0..10),
        proptest::collection::vec("/[a-z]{1,10}/[0-9.]{1,5}", 0..10),
        proptest::option::of(addr),
        "[ -~]{0,40}",
        "\\PC{0,40}",
        proptest::option::of("\\PC{1,40}"),
    )
        .prop_map(
            |(
                seed,
                listen_addrs,
                protocols,
                observed_addr,
                protocol_version,
                agent_version,
                pheromone_name,
            )| {
                IdentifyInfo {
                    public_key: Keypair::from_seed(seed).public(),
                    listen_addrs,
                    protocols,
                    observed_addr,
                    protocol_version,
                    agent_version,
                    pheromone_name,
                }
            },
        )
}

proptest! {
    #[test]
    fn round_trip(info in arb_info(), tail in proptest::collection::vec(any::<u8>(), 0..8)) {
        let mut out = Vec::new();
        info.encode(&mut out).expect("small messages encode");
        let len = out.len();
        prop_assert_eq!(IdentifyInfo::decode_stream(&out), Ok(info.clone()));
        out.extend_from_slice(&tail);
        prop_assert_eq!(IdentifyInfo::decode(&out), Ok(Some((info, len))));
    }

    #[test]
    fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        fuzzing::fuzz_decode(&bytes);
    }

    #[test]
    fn mutated_messages_never_panic(info in arb_info(), at in any::<usize>(), byte in any::<u8>()) {
        let mut out = Vec::new();
        info.encode(&mut out).expect("encode");
        let at = at % out.len();
        out[at] = byte;
        fuzzing::fuzz_decode(&out);
        fuzzing::fuzz_decode(&out[..at]);
    }
}
