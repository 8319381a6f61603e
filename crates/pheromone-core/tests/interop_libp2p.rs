//! Our identity and multiaddr encodings against rust-libp2p's (`libp2p-identity`,
//! `multiaddr`): the same key must give the same bytes and text, and each side must parse
//! what the other writes. These crates are dev-dependencies only.

use pheromone_core::addr::{Multiaddr, Protocol};
use pheromone_core::identity::{Keypair, PeerId, PublicKey};
use proptest::prelude::*;
use rand::{RngCore, SeedableRng};
use std::net::{Ipv4Addr, Ipv6Addr};

type TheirKeypair = libp2p_identity::Keypair;
type TheirPeerId = libp2p_identity::PeerId;
type TheirMultiaddr = multiaddr::Multiaddr;

/// Checks every encoding of one key both ways; signatures too when `check_signatures` (they
/// cost several scalar multiplications each, slow in debug builds).
fn assert_same_identity(ours: &Keypair, theirs: &TheirKeypair, check_signatures: bool) {
    let their_public = theirs.public();
    let their_id = their_public.to_peer_id();

    // Peer ID text and bytes.
    assert_eq!(ours.peer_id().to_string(), their_id.to_base58());
    assert_eq!(ours.peer_id().to_bytes(), their_id.to_bytes());
    let parsed: PeerId = their_id
        .to_base58()
        .parse()
        .expect("we parse their peer ID");
    assert_eq!(parsed, ours.peer_id());
    let their_parsed: TheirPeerId = ours.peer_id().to_string().parse().expect("they parse ours");
    assert_eq!(their_parsed, their_id);
    assert_eq!(
        TheirPeerId::from_bytes(ours.peer_id().as_bytes()).expect("they parse our bytes"),
        their_id
    );

    // PublicKey protobuf.
    let our_pk = ours.public().to_protobuf_encoding();
    assert_eq!(our_pk, their_public.encode_protobuf());
    assert_eq!(
        libp2p_identity::PublicKey::try_decode_protobuf(&our_pk).expect("they decode ours"),
        their_public
    );
    assert_eq!(
        PublicKey::from_protobuf_encoding(&their_public.encode_protobuf()).expect("we decode"),
        ours.public()
    );

    // PrivateKey protobuf.
    let our_sk = ours.to_protobuf_encoding();
    let their_sk = theirs.to_protobuf_encoding().expect("encode their key");
    assert_eq!(our_sk, their_sk);
    assert_eq!(
        TheirKeypair::from_protobuf_encoding(&our_sk)
            .expect("they decode ours")
            .public(),
        their_public
    );
    assert_eq!(
        Keypair::from_protobuf_encoding(&their_sk)
            .expect("we decode theirs")
            .public(),
        ours.public()
    );

    if !check_signatures {
        return;
    }
    // Signatures verify across.
    let msg = b"pheromone interop";
    assert!(their_public.verify(msg, &ours.sign(msg)));
    let their_sig = theirs.sign(msg).expect("sign");
    assert!(ours.public().verify(msg, &their_sig));
}

#[test]
fn identities_match_for_200_seeded_keys() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x1d);
    for i in 0..200 {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let ours = Keypair::from_seed(seed);
        let theirs = TheirKeypair::ed25519_from_bytes(seed).expect("their key from seed");
        assert_same_identity(&ours, &theirs, i < 20);
    }
}

#[test]
fn identities_match_for_200_keys_they_generate() {
    for i in 0..200 {
        let theirs = TheirKeypair::generate_ed25519();
        let ours = Keypair::from_protobuf_encoding(&theirs.to_protobuf_encoding().expect("encode"))
            .expect("we decode their generated key");
        assert_same_identity(&ours, &theirs, i < 20);
    }
}

fn assert_same_multiaddr(ours: &Multiaddr) {
    let text = ours.to_string();
    let bytes = ours.to_bytes();
    let from_bytes =
        TheirMultiaddr::try_from(bytes.clone()).expect("they decode our binary multiaddr");
    assert_eq!(from_bytes.to_string(), text, "their text of our bytes");
    let from_text: TheirMultiaddr = text.parse().expect("they parse our text");
    assert_eq!(
        from_text.to_vec(),
        bytes,
        "their bytes of our text for {text}"
    );
    // And back.
    assert_eq!(
        &Multiaddr::from_bytes(&from_text.to_vec()).expect("we decode their bytes"),
        ours
    );
    assert_eq!(
        &from_bytes
            .to_string()
            .parse::<Multiaddr>()
            .expect("we parse their text"),
        ours
    );
}

#[test]
fn multiaddrs_match_for_known_addresses() {
    let peer = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";
    let rsa_peer = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N";
    for text in [
        "/ip4/127.0.0.1/tcp/4001".to_string(),
        "/ip4/192.0.2.42/tcp/443".to_string(),
        "/ip6/::1/tcp/4001".to_string(),
        "/ip6/2001:db8::1/udp/443/quic-v1".to_string(),
        "/ip6/::ffff:1.2.3.4/tcp/1".to_string(),
        "/ip4/0.0.0.0/udp/0/quic".to_string(),
        "/dns/example.com/tcp/443/tls/ws".to_string(),
        "/dns4/localhost/tcp/80/wss".to_string(),
        "/dns6/ipv6.example/tcp/65535".to_string(),
        "/dnsaddr/bootstrap.libp2p.io".to_string(),
        format!("/dnsaddr/bootstrap.libp2p.io/p2p/{rsa_peer}"),
        format!("/ip4/127.0.0.1/tcp/4001/p2p/{peer}"),
        format!("/ip4/1.2.3.4/tcp/1/p2p/{peer}/p2p-circuit/p2p/{rsa_peer}"),
        format!("/p2p/{peer}/p2p-circuit"),
        "/memory/18446744073709551615".to_string(),
    ] {
        let ours: Multiaddr = text.parse().expect("we parse");
        assert_eq!(ours.to_string(), text);
        assert_same_multiaddr(&ours);
    }
}

#[test]
fn unknown_protocols_are_typed_errors() {
    // A protocol rust-libp2p knows and we do not: /sctp (code 132) is not in our table.
    let theirs: TheirMultiaddr = "/ip4/1.2.3.4/udp/1/webrtc-direct".parse().expect("theirs");
    let err = Multiaddr::from_bytes(&theirs.to_vec()).expect_err("webrtc-direct is unknown to us");
    assert_eq!(
        err.kind(),
        Some(&pheromone_core::addr::AddrErrorKind::UnknownCode(280))
    );
}

fn arb_protocol() -> impl Strategy<Value = Protocol> {
    let name = "[a-z0-9][a-z0-9.-]{0,30}";
    let peer = prop_oneof![
        any::<[u8; 32]>().prop_map(|seed| Keypair::from_seed(seed).peer_id()),
        any::<[u8; 32]>().prop_map(|digest| {
            let mut bytes = vec![0x12, 32];
            bytes.extend_from_slice(&digest);
            PeerId::from_bytes(&bytes).expect("sha256 multihash")
        }),
    ];
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
        peer.prop_map(Protocol::P2p),
        any::<u64>().prop_map(Protocol::Memory),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn generated_multiaddrs_match(components in proptest::collection::vec(arb_protocol(), 1..8)) {
        assert_same_multiaddr(&components.into_iter().collect());
    }
}
