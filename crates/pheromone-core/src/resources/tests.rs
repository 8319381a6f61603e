use super::*;
use crate::identity::Keypair;
use std::net::{Ipv4Addr, Ipv6Addr};

fn peer(n: u8) -> PeerId {
    Keypair::from_seed([n; 32]).peer_id()
}

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
}

fn limits() -> ResourceLimits {
    let mut l = ResourceLimits::for_memory(8 << 30);
    l.max_pending_handshakes = 4;
    l.max_pending_handshakes_per_ip = 3;
    l.max_inbound_connections = 5;
    l.max_outbound_connections = 2;
    l.max_connections_per_ip = 2;
    l.max_connections_per_peer = 3;
    l.max_streams = 10;
    l.max_streams_per_peer = 4;
    l.max_streams_per_protocol = 6;
    l.max_relayed_circuits = 3;
    l.max_relayed_circuits_per_peer = 2;
    l.max_circuits_ending_here = 2;
    l.max_circuits_ending_here_per_relay = 1;
    l
}

#[test]
fn ipv6_prefixes_are_slash_56_and_mapped_v4_is_v4() {
    let a: IpAddr = "2001:db8:1:2ff::1".parse().unwrap();
    let b: IpAddr = "2001:db8:1:200::9".parse().unwrap();
    let c: IpAddr = "2001:db8:1:300::1".parse().unwrap();
    assert_eq!(IpPrefix::of(a), IpPrefix::of(b));
    assert_ne!(IpPrefix::of(a), IpPrefix::of(c));
    let mapped = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped());
    assert_eq!(IpPrefix::of(mapped), IpPrefix::of(ip(1)));
    assert_eq!(IpPrefix::of(a).to_string(), "2001:db8:1:200::/56");
}

#[test]
fn one_address_gets_only_its_share_of_handshakes() {
    let mut ledger = Ledger::new(limits());
    for _ in 0..3 {
        ledger.open_handshake(ip(1)).expect("within share");
    }
    let err = ledger.open_handshake(ip(1)).unwrap_err();
    assert_eq!(err.scope, Scope::Ip(IpPrefix::of(ip(1))));
    assert_eq!(err.resource, Resource::PendingHandshakes);
    assert_eq!(err.limit, 3);
    assert!(err.to_string().contains("10.0.0.1/32"), "{err}");
    // Another address still gets in.
    ledger.open_handshake(ip(2)).expect("other address");
}

#[test]
fn a_full_handshake_table_evicts_the_busiest_address_oldest_first() {
    let mut ledger = Ledger::new(limits());
    let a1 = ledger.open_handshake(ip(1)).unwrap();
    let a2 = ledger.open_handshake(ip(1)).unwrap();
    let b1 = ledger.open_handshake(ip(2)).unwrap();
    let _a3 = ledger.open_handshake(ip(1)).unwrap();
    assert_eq!(ledger.usage().pending_handshakes, 4);
    // Full: the good peer at .3 takes the place of .1's oldest.
    let good = ledger.open_handshake(ip(3)).unwrap();
    assert_eq!(good.evicted, Some(a1.ticket));
    assert!(!ledger.handshake_is_open(a1.ticket));
    assert!(ledger.handshake_is_open(b1.ticket));
    assert_eq!(ledger.usage().pending_handshakes, 4);
    // .1 now has 2 in progress, so may open one more, evicting its own oldest.
    let next = ledger.open_handshake(ip(1)).unwrap();
    assert_eq!(next.evicted, Some(a2.ticket));
    ledger.close_handshake(good.ticket);
    ledger.close_handshake(good.ticket);
    assert_eq!(ledger.usage().pending_handshakes, 3);
}

#[test]
fn loopback_is_exempt_from_per_ip_limits_unless_configured() {
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut ledger = Ledger::new(limits());
    for i in 0..10 {
        let admission = ledger.open_handshake(lo).expect("exempt");
        // Full after four: each newcomer evicts the oldest.
        assert_eq!(admission.evicted.is_some(), i >= 4);
    }
    let mut strict = limits();
    strict.exempt_loopback = false;
    let mut ledger = Ledger::new(strict);
    for _ in 0..3 {
        ledger.open_handshake(lo).unwrap();
    }
    assert!(ledger.open_handshake(lo).is_err());
    assert!(Ledger::new(limits())
        .prefix(IpAddr::V6(Ipv6Addr::LOCALHOST))
        .is_none());
}

#[test]
fn connections_are_limited_per_ip_per_peer_and_per_direction() {
    let mut ledger = Ledger::new(limits());
    let k1 = ledger
        .open_connection(Way::Inbound, Some(ip(1)), peer(1))
        .unwrap();
    ledger
        .open_connection(Way::Inbound, Some(ip(1)), peer(2))
        .unwrap();
    let err = ledger
        .open_connection(Way::Inbound, Some(ip(1)), peer(3))
        .unwrap_err();
    assert_eq!(
        (err.scope, err.resource, err.limit),
        (Scope::Ip(IpPrefix::of(ip(1))), Resource::Connections, 2)
    );
    // Per peer: 3, whatever the address.
    ledger
        .open_connection(Way::Inbound, Some(ip(2)), peer(1))
        .unwrap();
    ledger
        .open_connection(Way::Outbound, None, peer(1))
        .unwrap();
    let err = ledger
        .open_connection(Way::Outbound, None, peer(1))
        .unwrap_err();
    assert_eq!(err.scope, Scope::Peer(peer(1)));
    // System outbound: 2.
    ledger
        .open_connection(Way::Outbound, None, peer(4))
        .unwrap();
    assert_eq!(
        ledger.check_dial().unwrap_err().resource,
        Resource::OutboundConnections
    );
    ledger.close_connection(&k1);
    ledger
        .open_connection(Way::Inbound, Some(ip(1)), peer(3))
        .expect("room again after a close");
    assert_eq!(ledger.usage().inbound_connections, 3);
}

#[test]
fn streams_are_limited_per_peer_protocol_and_system() {
    let mut ledger = Ledger::new(limits());
    for _ in 0..4 {
        ledger.open_stream(peer(1), "/a").unwrap();
    }
    assert_eq!(
        ledger.open_stream(peer(1), "/b").unwrap_err().scope,
        Scope::Peer(peer(1))
    );
    ledger.open_stream(peer(2), "/a").unwrap();
    ledger.open_stream(peer(2), "/a").unwrap();
    assert_eq!(
        ledger.open_stream(peer(3), "/a").unwrap_err().scope,
        Scope::Protocol("/a".into())
    );
    ledger.close_stream(peer(1), "/a");
    ledger.open_stream(peer(3), "/b").unwrap();
    assert_eq!(ledger.usage().streams, 6);
}

#[test]
fn circuits_are_capped_per_neighbour_and_in_total_and_ending_ones_count_as_inbound() {
    let mut ledger = Ledger::new(limits());
    ledger.open_relayed_circuit(peer(1)).unwrap();
    ledger.open_relayed_circuit(peer(1)).unwrap();
    assert_eq!(
        ledger.open_relayed_circuit(peer(1)).unwrap_err().scope,
        Scope::Peer(peer(1))
    );
    ledger.open_relayed_circuit(peer(2)).unwrap();
    assert_eq!(
        ledger.open_relayed_circuit(peer(3)).unwrap_err().scope,
        Scope::System
    );
    ledger.close_relayed_circuit(peer(1));
    ledger.open_relayed_circuit(peer(3)).unwrap();

    ledger.open_circuit_ending_here(peer(1)).unwrap();
    assert_eq!(
        ledger.open_circuit_ending_here(peer(1)).unwrap_err().scope,
        Scope::Peer(peer(1))
    );
    // The inbound limit covers relayed connections too.
    for n in 0..5 {
        ledger
            .open_connection(Way::Inbound, None, peer(10 + n))
            .unwrap();
    }
    let err = ledger.open_circuit_ending_here(peer(2)).unwrap_err();
    assert_eq!(err.resource, Resource::InboundConnections);
}

#[test]
fn memory_checks_name_the_scope() {
    let ledger = Ledger::new(limits());
    let max = ledger.limits().max_memory;
    assert!(ledger.check_memory(max - 1, None).is_ok());
    assert_eq!(
        ledger.check_memory(max, None).unwrap_err().scope,
        Scope::System
    );
    let err = ledger
        .check_memory(0, Some((peer(1), 64 << 20)))
        .unwrap_err();
    assert_eq!(
        (err.scope, err.resource),
        (Scope::Peer(peer(1)), Resource::Memory)
    );
}
