//! Which addresses a Kademlia table may hold: not unspecified, multicast or broadcast, no
//! port 0, no `/p2p/` naming another peer, and private ranges only where the operator
//! vouches for them. Pure functions; no table here.

use crate::addr::{Multiaddr, Protocol};
use crate::identity::PeerId;
use std::net::IpAddr;

/// Why `addr` cannot be used to reach `peer`, if it cannot.
pub(crate) fn unusable(
    peer: &PeerId,
    addr: &Multiaddr,
    allow_private: bool,
) -> Option<&'static str> {
    let parts = addr.protocols();
    if let Some(Protocol::P2p(id)) = parts.iter().find(|p| matches!(p, Protocol::P2p(_))) {
        if id != peer {
            return Some("names another peer");
        }
    }
    let ip = match parts.first() {
        Some(Protocol::Ip4(ip)) => IpAddr::V4(*ip),
        Some(Protocol::Ip6(ip)) => IpAddr::V6(*ip),
        Some(Protocol::Dns(_) | Protocol::Dns4(_) | Protocol::Dns6(_) | Protocol::Dnsaddr(_)) => {
            return None
        }
        Some(Protocol::Memory(_)) => {
            return (!allow_private).then_some("in-memory address");
        }
        _ => return Some("no IP or DNS host"),
    };
    if matches!(parts.get(1), Some(Protocol::Tcp(0) | Protocol::Udp(0))) {
        return Some("port 0");
    }
    match ip {
        IpAddr::V4(v4) => {
            if v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast() {
                return Some("unspecified, multicast or broadcast IP");
            }
            if !allow_private && (v4.is_loopback() || v4.is_private() || v4.is_link_local()) {
                return Some("private IP");
            }
        }
        IpAddr::V6(v6) => {
            if v6.is_unspecified() || v6.is_multicast() {
                return Some("unspecified or multicast IP");
            }
            let seg = v6.segments()[0];
            let local = (seg & 0xfe00) == 0xfc00 || (seg & 0xffc0) == 0xfe80;
            if !allow_private && (v6.is_loopback() || local) {
                return Some("private IP");
            }
        }
    }
    None
}
