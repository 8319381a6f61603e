use super::*;
use crate::identity::Keypair;
use proptest::prelude::*;
use std::net::{Ipv4Addr, Ipv6Addr};

const PEER: &str = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";

fn peer() -> PeerId {
    PEER.parse().expect("peer id")
}

fn parse(text: &str) -> Multiaddr {
    text.parse()
        .unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
}

fn parse_err(text: &str) -> String {
    match text.parse::<Multiaddr>() {
        Ok(addr) => panic!("{text:?} should not parse, got {addr}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn text_round_trips() {
    for text in [
        "/ip4/127.0.0.1/tcp/4001",
        "/ip6/::1/tcp/4001",
        "/ip6/2001:db8::8a2e:370:7334/udp/443/quic-v1",
        "/ip4/192.0.2.42/udp/4001/quic",
        "/dns/example.com/tcp/443/tls/ws",
        "/dns4/localhost/tcp/1/wss",
        "/dns6/a.b/tcp/65535",
        "/dnsaddr/bootstrap.libp2p.io",
        &format!("/ip4/10.0.0.1/tcp/4001/p2p/{PEER}/p2p-circuit/p2p/{PEER}"),
        &format!("/p2p/{PEER}"),
        "/memory/1234",
    ] {
        let addr = parse(text);
        assert_eq!(addr.to_string(), text);
        assert_eq!(
            Multiaddr::from_bytes(&addr.to_bytes()).expect("binary"),
            addr
        );
    }
}

#[test]
fn spec_example_binary() {
    let addr = parse("/ip4/192.0.2.42/tcp/443");
    assert_eq!(
        addr.to_bytes(),
        [0x04, 0xc0, 0x00, 0x02, 0x2a, 0x06, 0x01, 0xbb]
    );
    assert_eq!(addr.encoded_len(), 8);
}

#[test]
fn lenient_forms_normalise() {
    assert_eq!(parse("/ip4/1.2.3.4/tcp/80/"), parse("/ip4/1.2.3.4/tcp/80"));
    assert_eq!(
        parse(&format!("/ipfs/{PEER}")).to_string(),
        format!("/p2p/{PEER}")
    );
    assert_eq!(
        parse("/ip6/0:0:0:0:0:0:0:1/tcp/1").to_string(),
        "/ip6/::1/tcp/1"
    );
    assert_eq!(
        parse("/ip4/1.2.3.4/tcp/080").to_string(),
        "/ip4/1.2.3.4/tcp/80"
    );
}

#[test]
fn text_errors_name_the_wrong_part() {
    assert_eq!(
        parse_err("/ip4/1.2.3/tcp/80"),
        "invalid multiaddr \"/ip4/1.2.3/tcp/80\": \"1.2.3\" is not an IPv4 address"
    );
    assert_eq!(
        parse_err("/ip4/1.2.3.4/tpc/80"),
        "invalid multiaddr \"/ip4/1.2.3.4/tpc/80\": unknown protocol \"tpc\" (expected ip4, \
         ip6, dns, dns4, dns6, dnsaddr, tcp, udp, quic, quic-v1, tls, ws, wss, p2p, \
         p2p-circuit, memory)"
    );
    assert!(parse_err("/ip4/1.2.3.4/tcp").ends_with(": missing port after /tcp"));
    assert!(parse_err("/ip4/1.2.3.4/tcp/").ends_with(": missing port after /tcp"));
    assert!(parse_err("/ip4/1.2.3.4/tcp/70000").ends_with(": port 70000 out of range"));
    assert!(parse_err("/ip4/1.2.3.4/tcp/http").ends_with(": \"http\" is not a port number"));
    assert!(parse_err("/ip4").ends_with(": missing address after /ip4"));
    assert!(parse_err("/ip6/fe80::1%eth0").ends_with("is not an IPv6 address"));
    assert!(parse_err("/p2p/not-a-peer").contains("\"not-a-peer\" is not a peer ID"));
    assert!(parse_err("/dns/a b/tcp/1").contains("not a valid DNS name"));
    assert!(parse_err("/memory/-1").contains("not a memory address"));
    assert!(parse_err("ip4/1.2.3.4").contains("starts with \"/\""));
    assert!(parse_err("/ip4//1.2.3.4").contains("missing address after /ip4"));
    assert!(parse_err("/ip4/1.2.3.4//tcp/1").contains("empty protocol name"));
    assert!(parse_err("").ends_with("empty address"));
    assert!(parse_err("/").ends_with("empty address"));
}

#[test]
fn lengths_are_capped() {
    let long = "/ws".repeat(MAX_TEXT_LEN / 3 + 1);
    assert!(matches!(
        long.parse::<Multiaddr>().unwrap_err().kind(),
        Some(AddrErrorKind::TooLong { .. })
    ));
    // Short enough as text, too long as binary.
    let many = "/ws".repeat(MAX_LEN / 2 + 1);
    assert!(matches!(
        many.parse::<Multiaddr>().unwrap_err().kind(),
        Some(AddrErrorKind::TooLong { .. })
    ));
    assert!(matches!(
        Multiaddr::from_bytes(&[0xdd, 0x03].repeat(MAX_LEN / 2 + 1)),
        Err(AddrError::Binary {
            kind: AddrErrorKind::TooLong { .. }
        })
    ));
    assert!(parse_err(&format!("/dns/{}", "a".repeat(254))).contains("longer than 253"));
    // The longest text error message stays short.
    let err = parse_err(&format!("/dns/{}", "a".repeat(5000)));
    assert!(err.len() < 400, "{err}");
}

#[test]
fn binary_errors_are_typed() {
    let mut bytes = parse("/ip4/1.2.3.4/tcp/1").to_bytes();
    bytes.extend_from_slice(&[0x80, 0x80, 0x01]); // code 16384: not a protocol we know
    assert_eq!(
        Multiaddr::from_bytes(&bytes),
        Err(AddrError::Binary {
            kind: AddrErrorKind::UnknownCode(16384)
        })
    );
    assert_eq!(
        Multiaddr::from_bytes(&[]),
        Err(AddrError::Binary {
            kind: AddrErrorKind::Empty
        })
    );
    assert_eq!(
        Multiaddr::from_bytes(&[0x06, 0x01])
            .unwrap_err()
            .to_string(),
        "invalid binary multiaddr: ends in the middle of /tcp"
    );
    // A p2p value that is not a multihash.
    assert!(matches!(
        Multiaddr::from_bytes(&[0xa5, 0x03, 0x03, 0x55, 0x00, 0x00]),
        Err(AddrError::Binary {
            kind: AddrErrorKind::InvalidPeerId { .. }
        })
    ));
}

#[test]
fn p2p_helpers() {
    let id = peer();
    let base = parse("/ip4/127.0.0.1/tcp/4001");
    assert_eq!(base.peer_id(), None);
    let full = base.clone().with_p2p(id).expect("add p2p");
    assert_eq!(
        full.to_string(),
        format!("/ip4/127.0.0.1/tcp/4001/p2p/{PEER}")
    );
    assert_eq!(full.peer_id(), Some(id));
    assert_eq!(full.clone().with_p2p(id), Ok(full.clone()));
    assert_eq!(full.clone().without_p2p(), base);
    assert_eq!(base.clone().without_p2p(), base);

    let other = Keypair::from_seed([9; 32]).peer_id();
    let err = full.with_p2p(other).unwrap_err();
    assert_eq!(
        err,
        AddrError::PeerIdMismatch {
            existing: id,
            requested: other
        }
    );
    assert!(err.to_string().contains(PEER));

    // A relay's ID is not the destination.
    let relayed = parse(&format!("/ip4/1.2.3.4/tcp/1/p2p/{PEER}/p2p-circuit"));
    assert_eq!(relayed.peer_id(), None);
    assert_eq!(relayed.tcp_socket_addr(), None);
}

#[test]
fn socket_helpers() {
    let v4: SocketAddr = "127.0.0.1:4001".parse().expect("socket addr");
    let v6: SocketAddr = "[::1]:4001".parse().expect("socket addr");
    assert_eq!(
        Multiaddr::from_socket_addr(v4).to_string(),
        "/ip4/127.0.0.1/tcp/4001"
    );
    assert_eq!(Multiaddr::from(v6).to_string(), "/ip6/::1/tcp/4001");
    assert_eq!(Multiaddr::from_socket_addr(v4).tcp_socket_addr(), Some(v4));
    assert_eq!(
        parse(&format!("/ip6/::1/tcp/4001/p2p/{PEER}")).tcp_socket_addr(),
        Some(v6)
    );
    assert_eq!(parse("/ip4/127.0.0.1/tcp/4001/ws").tcp_socket_addr(), None);
    assert_eq!(
        parse("/ip4/127.0.0.1/udp/4001/quic-v1").tcp_socket_addr(),
        None
    );
    assert_eq!(
        parse("/ip4/127.0.0.1/udp/4001/quic-v1").quic_socket_addr(),
        Some(v4)
    );
    assert_eq!(
        parse("/ip4/127.0.0.1/udp/4001/quic").quic_socket_addr(),
        None
    );

    let target = parse(&format!("/dns4/localhost/tcp/80/p2p/{PEER}"));
    assert_eq!(
        target.dns_tcp_target(),
        Some(DnsTarget {
            host: "localhost",
            port: 80,
            family: DnsFamily::V4
        })
    );
    assert_eq!(
        parse("/dns/x/tcp/1").dns_tcp_target().map(|t| t.family),
        Some(DnsFamily::Any)
    );
    assert_eq!(
        parse("/dns6/x/tcp/1").dns_tcp_target().map(|t| t.family),
        Some(DnsFamily::V6)
    );
    assert_eq!(parse("/dns/x/udp/1").dns_tcp_target(), None);
    assert_eq!(parse("/ip4/1.2.3.4/tcp/1").dns_tcp_target(), None);
}

#[test]
fn dial_addresses() {
    let dial = |s: &str| {
        parse_dial_address(s)
            .unwrap_or_else(|e| panic!("{s:?}: {e}"))
            .to_string()
    };
    assert_eq!(dial("127.0.0.1:4001"), "/ip4/127.0.0.1/tcp/4001");
    assert_eq!(dial("[::1]:4001"), "/ip6/::1/tcp/4001");
    assert_eq!(dial("localhost:4001"), "/dns/localhost/tcp/4001");
    assert_eq!(dial(" node-1.example:1 "), "/dns/node-1.example/tcp/1");
    assert_eq!(
        dial(&format!("/ip4/127.0.0.1/tcp/4001/p2p/{PEER}")),
        format!("/ip4/127.0.0.1/tcp/4001/p2p/{PEER}")
    );

    let err = |s: &str| parse_dial_address(s).unwrap_err().to_string();
    assert_eq!(
        err("localhost"),
        "invalid address \"localhost\": missing port (expected host:port or a multiaddr such \
         as /ip4/127.0.0.1/tcp/4001)"
    );
    assert!(err("localhost:").contains("missing port"));
    assert!(err("127.0.0.1:70000").ends_with("port 70000 out of range"));
    assert!(err("127.0.0.1:http").ends_with("\"http\" is not a port number"));
    assert!(err("1.2.3:80").ends_with("\"1.2.3\" is not an IPv4 address"));
    assert!(err("::1:4001").contains("need brackets"));
    assert!(err("[::g]:4001").contains("is not an IPv6 address"));
    assert!(err("[::1]").contains("missing port"));
    assert!(err("a b:1").contains("not a valid DNS name"));
    assert!(err("").contains("empty address"));
    assert!(err("/ip4/1.2.3").starts_with("invalid multiaddr"));
}

#[test]
fn builders() {
    let addr: Multiaddr = [Protocol::Ip4(Ipv4Addr::LOCALHOST), Protocol::Tcp(1)]
        .into_iter()
        .collect();
    assert_eq!(
        addr,
        Multiaddr::from(Protocol::Ip4(Ipv4Addr::LOCALHOST)).with(Protocol::Tcp(1))
    );
    let mut addr = addr;
    assert_eq!(addr.len(), 2);
    assert_eq!(addr.pop(), Some(Protocol::Tcp(1)));
    addr.push(Protocol::Udp(2));
    assert_eq!(addr.iter().count(), 2);
    assert_eq!(addr.protocols()[1], Protocol::Udp(2));
    assert!(Multiaddr::empty().is_empty());
    assert_eq!(Multiaddr::empty().to_string(), "");
    assert_eq!(format!("{addr:?}"), "Multiaddr(/ip4/127.0.0.1/udp/2)");
}

fn arb_peer_id() -> impl Strategy<Value = PeerId> {
    prop_oneof![
        any::<[u8; 32]>().prop_map(|seed| Keypair::from_seed(seed).peer_id()),
        any::<[u8; 32]>().prop_map(|digest| {
            let mut bytes = vec![0x12, 32];
            bytes.extend_from_slice(&digest);
            PeerId::from_bytes(&bytes).expect("sha256 multihash")
        }),
    ]
}

fn arb_protocol() -> impl Strategy<Value = Protocol> {
    let name = "[a-z0-9][a-z0-9.-]{0,30}";
    prop_oneof![
        any::<[u8; 4]>().prop_map(|b| Protocol::Ip4(Ipv4Addr::from(b))),
        any::<[u8; 16]>().prop_map(|b| Protocol::Ip6(Ipv6Addr::from(b))),
        name.prop_map(Protocol::Dns),
        name.prop_map(Protocol::Dns4),
        name.prop_map(Protocol::Dns6),
        name.prop_map(Protocol::Dnsaddr),
        any::<u16>().prop_map(Protocol::Tcp),
        any::<u16>().prop_map(Protocol::Udp),
        Just(Protocol::Quic),
        Just(Protocol::QuicV1),
        Just(Protocol::Tls),
        Just(Protocol::Ws),
        Just(Protocol::Wss),
        Just(Protocol::P2pCircuit),
        arb_peer_id().prop_map(Protocol::P2p),
        any::<u64>().prop_map(Protocol::Memory),
    ]
}

fn arb_multiaddr() -> impl Strategy<Value = Multiaddr> {
    proptest::collection::vec(arb_protocol(), 1..8).prop_map(Multiaddr::from_iter)
}

proptest! {
    #[test]
    fn binary_round_trip(addr in arb_multiaddr()) {
        let bytes = addr.to_bytes();
        prop_assert_eq!(bytes.len(), addr.encoded_len());
        prop_assert_eq!(Multiaddr::from_bytes(&bytes), Ok(addr));
    }

    #[test]
    fn text_round_trip(addr in arb_multiaddr()) {
        let text = addr.to_string();
        prop_assert_eq!(text.parse::<Multiaddr>(), Ok(addr.clone()));
        prop_assert_eq!(parse_dial_address(&text), Ok(addr));
    }

    #[test]
    fn dial_round_trip(ip in any::<std::net::IpAddr>(), port in any::<u16>()) {
        let socket = SocketAddr::new(ip, port);
        let addr = parse_dial_address(&socket.to_string()).expect("dial address");
        prop_assert_eq!(addr.tcp_socket_addr(), Some(socket));
    }

    #[test]
    fn binary_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        fuzzing::fuzz_decode_binary(&bytes);
    }

    #[test]
    fn mutated_binary_never_panics(addr in arb_multiaddr(), at in any::<usize>(), byte in any::<u8>()) {
        let mut bytes = addr.to_bytes();
        let at = at % bytes.len();
        bytes[at] = byte;
        fuzzing::fuzz_decode_binary(&bytes);
        fuzzing::fuzz_decode_binary(&bytes[..at]);
    }

    #[test]
    fn text_parse_never_panics(text in "(/[a-z0-9:.%-]{0,12}){0,6}|.{0,40}") {
        fuzzing::fuzz_parse_text(text.as_bytes());
    }
}
