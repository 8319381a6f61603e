//! One multiaddr component: the [`Protocol`] enum with its codes, names, text and binary forms.
//!
//! Codes and value sizes follow the multiformats `protocols.csv` table. Only the protocols
//! pheromone can use (or relay through) are known; any other code is an
//! [`AddrErrorKind::UnknownCode`] error, never a guess about how long its value is. This
//! file knows nothing about whole addresses: lengths of the address as a whole are checked
//! by the caller.

use super::error::AddrErrorKind;
use crate::identity::PeerId;
use crate::varint;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Longest DNS name, in bytes (RFC 1035 limits a name to 255 octets on the wire, which is
/// 253 characters of text).
pub const MAX_DNS_NAME_LEN: usize = 253;

/// Longest peer ID multihash we read after `/p2p`, in bytes. The identity module accepts at
/// most 44; a few bytes of slack keep the error about the ID rather than the length.
const MAX_PEER_ID_BYTES: usize = 64;

const IP4: u64 = 4;
const TCP: u64 = 6;
const IP6: u64 = 41;
const DNS: u64 = 53;
const DNS4: u64 = 54;
const DNS6: u64 = 55;
const DNSADDR: u64 = 56;
const UDP: u64 = 273;
const P2P_CIRCUIT: u64 = 290;
const P2P: u64 = 421;
const TLS: u64 = 448;
const QUIC: u64 = 460;
const QUIC_V1: u64 = 461;
const WS: u64 = 477;
const WSS: u64 = 478;
const MEMORY: u64 = 777;

/// The protocol names the text parser accepts, for error messages.
pub(crate) const EXPECTED_NAMES: &str = "ip4, ip6, dns, dns4, dns6, dnsaddr, tcp, udp, quic, \
     quic-v1, tls, ws, wss, p2p, p2p-circuit, memory";

/// One component of a [`super::Multiaddr`].
///
/// Values are checked when parsed or decoded; a component built by hand with an invalid DNS
/// name (empty, over 253 bytes, containing `/`) still encodes, but its text form will not
/// parse back and peers will drop it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Protocol {
    /// `/ip4/1.2.3.4`: an IPv4 address (code 4, 4 bytes).
    Ip4(Ipv4Addr),
    /// `/ip6/::1`: an IPv6 address (code 41, 16 bytes).
    Ip6(Ipv6Addr),
    /// `/dns/example.com`: a name resolved to IPv4 or IPv6 addresses (code 53).
    Dns(String),
    /// `/dns4/example.com`: a name resolved to IPv4 addresses only (code 54).
    Dns4(String),
    /// `/dns6/example.com`: a name resolved to IPv6 addresses only (code 55).
    Dns6(String),
    /// `/dnsaddr/example.com`: a name whose TXT records hold multiaddrs (code 56).
    Dnsaddr(String),
    /// `/tcp/4001`: a TCP port (code 6, 2 bytes big-endian).
    Tcp(u16),
    /// `/udp/4001`: a UDP port (code 273, 2 bytes big-endian).
    Udp(u16),
    /// `/quic`: the draft-29 QUIC of old libp2p versions (code 460).
    Quic,
    /// `/quic-v1`: QUIC version 1, RFC 9000 (code 461).
    QuicV1,
    /// `/tls`: TLS on the layer below (code 448).
    Tls,
    /// `/ws`: WebSocket (code 477).
    Ws,
    /// `/wss`: WebSocket over TLS, a deprecated alias of `/tls/ws` (code 478).
    Wss,
    /// `/p2p-circuit`: reached through the relay named on its left (code 290).
    P2pCircuit,
    /// `/p2p/12D3KooW…`: the peer at this address (code 421; `/ipfs` is accepted when parsing).
    P2p(PeerId),
    /// `/memory/7`: an in-process transport endpoint (code 777, 8 bytes big-endian, as
    /// rust-libp2p encodes it).
    Memory(u64),
}

impl Protocol {
    /// The multicodec code of this protocol.
    pub fn code(&self) -> u64 {
        match self {
            Self::Ip4(_) => IP4,
            Self::Ip6(_) => IP6,
            Self::Dns(_) => DNS,
            Self::Dns4(_) => DNS4,
            Self::Dns6(_) => DNS6,
            Self::Dnsaddr(_) => DNSADDR,
            Self::Tcp(_) => TCP,
            Self::Udp(_) => UDP,
            Self::Quic => QUIC,
            Self::QuicV1 => QUIC_V1,
            Self::Tls => TLS,
            Self::Ws => WS,
            Self::Wss => WSS,
            Self::P2pCircuit => P2P_CIRCUIT,
            Self::P2p(_) => P2P,
            Self::Memory(_) => MEMORY,
        }
    }

    /// The protocol's name in text multiaddrs, e.g. `quic-v1`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Ip4(_) => "ip4",
            Self::Ip6(_) => "ip6",
            Self::Dns(_) => "dns",
            Self::Dns4(_) => "dns4",
            Self::Dns6(_) => "dns6",
            Self::Dnsaddr(_) => "dnsaddr",
            Self::Tcp(_) => "tcp",
            Self::Udp(_) => "udp",
            Self::Quic => "quic",
            Self::QuicV1 => "quic-v1",
            Self::Tls => "tls",
            Self::Ws => "ws",
            Self::Wss => "wss",
            Self::P2pCircuit => "p2p-circuit",
            Self::P2p(_) => "p2p",
            Self::Memory(_) => "memory",
        }
    }

    /// Parses one component from text: `name` is the protocol name, `value` yields the next
    /// `/`-separated part when the protocol takes a value.
    pub(crate) fn parse_text<'a>(
        name: &str,
        value: &mut impl Iterator<Item = &'a str>,
    ) -> Result<Self, AddrErrorKind> {
        let mut take = |protocol: &'static str, what: &'static str| {
            value
                .next()
                .filter(|v| !v.is_empty())
                .ok_or(AddrErrorKind::MissingValue { protocol, what })
        };
        Ok(match name {
            "ip4" => {
                let text = take("ip4", "address")?;
                Self::Ip4(
                    text.parse()
                        .map_err(|_| AddrErrorKind::InvalidIp4(super::error::clip(text)))?,
                )
            }
            "ip6" => {
                let text = take("ip6", "address")?;
                Self::Ip6(
                    text.parse()
                        .map_err(|_| AddrErrorKind::InvalidIp6(super::error::clip(text)))?,
                )
            }
            "dns" => Self::Dns(parse_dns_name(take("dns", "host name")?)?),
            "dns4" => Self::Dns4(parse_dns_name(take("dns4", "host name")?)?),
            "dns6" => Self::Dns6(parse_dns_name(take("dns6", "host name")?)?),
            "dnsaddr" => Self::Dnsaddr(parse_dns_name(take("dnsaddr", "host name")?)?),
            "tcp" => Self::Tcp(parse_port(take("tcp", "port")?)?),
            "udp" => Self::Udp(parse_port(take("udp", "port")?)?),
            "quic" => Self::Quic,
            "quic-v1" => Self::QuicV1,
            "tls" => Self::Tls,
            "ws" => Self::Ws,
            "wss" => Self::Wss,
            "p2p-circuit" => Self::P2pCircuit,
            "p2p" | "ipfs" => {
                let text = take("p2p", "peer ID")?;
                Self::P2p(text.parse().map_err(|e: crate::identity::IdentityError| {
                    AddrErrorKind::InvalidPeerId {
                        text: super::error::clip(text),
                        reason: e.to_string(),
                    }
                })?)
            }
            "memory" => {
                let text = take("memory", "number")?;
                let valid = text.bytes().all(|b| b.is_ascii_digit());
                Self::Memory(
                    text.parse()
                        .ok()
                        .filter(|_| valid)
                        .ok_or_else(|| AddrErrorKind::InvalidMemory(super::error::clip(text)))?,
                )
            }
            "" => return Err(AddrErrorKind::EmptyProtocolName),
            other => return Err(AddrErrorKind::UnknownProtocol(super::error::clip(other))),
        })
    }

    /// Number of bytes [`Self::write_bytes`] appends.
    pub(crate) fn encoded_len(&self) -> usize {
        let value = match self {
            Self::Ip4(_) => 4,
            Self::Ip6(_) => 16,
            Self::Tcp(_) | Self::Udp(_) => 2,
            Self::Memory(_) => 8,
            Self::Dns(name) | Self::Dns4(name) | Self::Dns6(name) | Self::Dnsaddr(name) => {
                varint::encoded_len(name.len() as u64) + name.len()
            }
            Self::P2p(id) => {
                let len = id.as_bytes().len();
                varint::encoded_len(len as u64) + len
            }
            Self::Quic | Self::QuicV1 | Self::Tls | Self::Ws | Self::Wss | Self::P2pCircuit => 0,
        };
        varint::encoded_len(self.code()) + value
    }

    /// Appends the binary form: varint code, then the value.
    pub(crate) fn write_bytes(&self, out: &mut Vec<u8>) {
        varint::encode(self.code(), out);
        match self {
            Self::Ip4(ip) => out.extend_from_slice(&ip.octets()),
            Self::Ip6(ip) => out.extend_from_slice(&ip.octets()),
            Self::Tcp(port) | Self::Udp(port) => out.extend_from_slice(&port.to_be_bytes()),
            Self::Memory(n) => out.extend_from_slice(&n.to_be_bytes()),
            Self::Dns(name) | Self::Dns4(name) | Self::Dns6(name) | Self::Dnsaddr(name) => {
                varint::encode(name.len() as u64, out);
                out.extend_from_slice(name.as_bytes());
            }
            Self::P2p(id) => {
                let bytes = id.as_bytes();
                varint::encode(bytes.len() as u64, out);
                out.extend_from_slice(bytes);
            }
            Self::Quic | Self::QuicV1 | Self::Tls | Self::Ws | Self::Wss | Self::P2pCircuit => {}
        }
    }

    /// Decodes one component from the front of `buf`: the component and the bytes after it.
    /// `buf` holds the whole address, so running out of bytes is an error, not `Ok(None)`.
    pub(crate) fn read_bytes(buf: &[u8]) -> Result<(Self, &[u8]), AddrErrorKind> {
        let (code, used) =
            varint::decode(buf)?.ok_or(AddrErrorKind::Truncated { protocol: "code" })?;
        let rest = &buf[used..];
        let (protocol, rest) = match code {
            IP4 => {
                let (bytes, rest) = fixed::<4>(rest, "ip4")?;
                (Self::Ip4(Ipv4Addr::from(bytes)), rest)
            }
            IP6 => {
                let (bytes, rest) = fixed::<16>(rest, "ip6")?;
                (Self::Ip6(Ipv6Addr::from(bytes)), rest)
            }
            TCP => {
                let (bytes, rest) = fixed::<2>(rest, "tcp")?;
                (Self::Tcp(u16::from_be_bytes(bytes)), rest)
            }
            UDP => {
                let (bytes, rest) = fixed::<2>(rest, "udp")?;
                (Self::Udp(u16::from_be_bytes(bytes)), rest)
            }
            MEMORY => {
                let (bytes, rest) = fixed::<8>(rest, "memory")?;
                (Self::Memory(u64::from_be_bytes(bytes)), rest)
            }
            DNS => read_dns(rest, "dns", Self::Dns)?,
            DNS4 => read_dns(rest, "dns4", Self::Dns4)?,
            DNS6 => read_dns(rest, "dns6", Self::Dns6)?,
            DNSADDR => read_dns(rest, "dnsaddr", Self::Dnsaddr)?,
            P2P => {
                let (bytes, rest) = length_prefixed(rest, "p2p", MAX_PEER_ID_BYTES)?;
                let id = PeerId::from_bytes(bytes).map_err(|e| AddrErrorKind::InvalidPeerId {
                    text: "<binary>".into(),
                    reason: e.to_string(),
                })?;
                (Self::P2p(id), rest)
            }
            QUIC => (Self::Quic, rest),
            QUIC_V1 => (Self::QuicV1, rest),
            TLS => (Self::Tls, rest),
            WS => (Self::Ws, rest),
            WSS => (Self::Wss, rest),
            P2P_CIRCUIT => (Self::P2pCircuit, rest),
            other => return Err(AddrErrorKind::UnknownCode(other)),
        };
        Ok((protocol, rest))
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}", self.name())?;
        match self {
            Self::Ip4(ip) => write!(f, "/{ip}"),
            Self::Ip6(ip) => write!(f, "/{ip}"),
            Self::Dns(name) | Self::Dns4(name) | Self::Dns6(name) | Self::Dnsaddr(name) => {
                write!(f, "/{name}")
            }
            Self::Tcp(port) | Self::Udp(port) => write!(f, "/{port}"),
            Self::P2p(id) => write!(f, "/{id}"),
            Self::Memory(n) => write!(f, "/{n}"),
            Self::Quic | Self::QuicV1 | Self::Tls | Self::Ws | Self::Wss | Self::P2pCircuit => {
                Ok(())
            }
        }
    }
}

/// Checks a DNS name as multiaddrs carry it. We do not enforce hostname syntax (labels,
/// allowed characters): resolvers do, and other implementations accept more than RFC 1123.
/// We only refuse what would break the text form or is surely not a name.
pub(crate) fn parse_dns_name(name: &str) -> Result<String, AddrErrorKind> {
    let invalid = |reason| AddrErrorKind::InvalidDnsName {
        name: super::error::clip(name),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("empty"));
    }
    if name.len() > MAX_DNS_NAME_LEN {
        return Err(invalid("longer than 253 bytes"));
    }
    if name.contains('/') {
        return Err(invalid("contains \"/\""));
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("contains spaces or control characters"));
    }
    Ok(name.to_owned())
}

/// Parses a decimal port, telling "not a number" apart from "too large".
pub(crate) fn parse_port(text: &str) -> Result<u16, AddrErrorKind> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AddrErrorKind::InvalidPort(super::error::clip(text)));
    }
    text.parse()
        .map_err(|_| AddrErrorKind::PortOutOfRange(super::error::clip(text)))
}

fn fixed<'a, const N: usize>(
    buf: &'a [u8],
    protocol: &'static str,
) -> Result<([u8; N], &'a [u8]), AddrErrorKind> {
    let value = buf
        .get(..N)
        .and_then(|v| <[u8; N]>::try_from(v).ok())
        .ok_or(AddrErrorKind::Truncated { protocol })?;
    Ok((value, &buf[N..]))
}

/// Splits a varint-length-prefixed value off the front of `buf`, refusing lengths over `max`
/// before looking at the value.
fn length_prefixed<'a>(
    buf: &'a [u8],
    protocol: &'static str,
    max: usize,
) -> Result<(&'a [u8], &'a [u8]), AddrErrorKind> {
    let (len, used) = varint::decode(buf)?.ok_or(AddrErrorKind::Truncated { protocol })?;
    let rest = &buf[used..];
    let len = usize::try_from(len)
        .ok()
        .filter(|&len| len <= max)
        .ok_or(AddrErrorKind::ValueTooLong { protocol, len, max })?;
    if rest.len() < len {
        return Err(AddrErrorKind::Truncated { protocol });
    }
    Ok(rest.split_at(len))
}

fn read_dns<'a>(
    buf: &'a [u8],
    protocol: &'static str,
    make: fn(String) -> Protocol,
) -> Result<(Protocol, &'a [u8]), AddrErrorKind> {
    let (bytes, rest) = length_prefixed(buf, protocol, MAX_DNS_NAME_LEN)?;
    let name = std::str::from_utf8(bytes).map_err(|_| AddrErrorKind::InvalidDnsName {
        name: super::error::clip(&String::from_utf8_lossy(bytes)),
        reason: "not UTF-8",
    })?;
    Ok((make(parse_dns_name(name)?), rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(p: Protocol) {
        let mut out = Vec::new();
        p.write_bytes(&mut out);
        assert_eq!(out.len(), p.encoded_len(), "{p}");
        let (back, rest) = Protocol::read_bytes(&out).expect("decode");
        assert_eq!(back, p);
        assert!(rest.is_empty());
    }

    #[test]
    fn every_variant_round_trips_in_binary() {
        let id: PeerId = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
            .parse()
            .expect("peer id");
        for p in [
            Protocol::Ip4(Ipv4Addr::new(192, 0, 2, 42)),
            Protocol::Ip6(Ipv6Addr::LOCALHOST),
            Protocol::Dns("example.com".into()),
            Protocol::Dns4("a".into()),
            Protocol::Dns6("b.c".into()),
            Protocol::Dnsaddr("bootstrap.libp2p.io".into()),
            Protocol::Tcp(443),
            Protocol::Udp(0),
            Protocol::Quic,
            Protocol::QuicV1,
            Protocol::Tls,
            Protocol::Ws,
            Protocol::Wss,
            Protocol::P2pCircuit,
            Protocol::P2p(id),
            Protocol::Memory(u64::MAX),
        ] {
            round_trip(p);
        }
    }

    #[test]
    fn spec_example_bytes() {
        // From the multiformats/multiaddr test suite: /ip4/192.0.2.42/tcp/443.
        let (ip, rest) = Protocol::read_bytes(&[0x04, 0xc0, 0x00, 0x02, 0x2a, 0x06, 0x01, 0xbb])
            .expect("decode");
        assert_eq!(ip, Protocol::Ip4(Ipv4Addr::new(192, 0, 2, 42)));
        let (tcp, rest) = Protocol::read_bytes(rest).expect("decode");
        assert_eq!(tcp, Protocol::Tcp(443));
        assert!(rest.is_empty());
    }

    #[test]
    fn ports_and_names_are_checked() {
        assert_eq!(parse_port("4001"), Ok(4001));
        assert_eq!(parse_port("65535"), Ok(65535));
        assert_eq!(
            parse_port("70000"),
            Err(AddrErrorKind::PortOutOfRange("70000".into()))
        );
        assert_eq!(
            parse_port("+80"),
            Err(AddrErrorKind::InvalidPort("+80".into()))
        );
        assert_eq!(
            AddrErrorKind::PortOutOfRange("70000".into()).to_string(),
            "port 70000 out of range"
        );
        assert!(parse_dns_name(&"a".repeat(253)).is_ok());
        assert!(parse_dns_name(&"a".repeat(254)).is_err());
        assert!(parse_dns_name("has space").is_err());
        assert!(parse_dns_name("").is_err());
    }

    #[test]
    fn binary_errors_are_typed() {
        assert_eq!(
            Protocol::read_bytes(&[0x04, 1, 2]),
            Err(AddrErrorKind::Truncated { protocol: "ip4" })
        );
        // Code 0x0122 is p2p-circuit; 0x0123 is nothing we know.
        assert_eq!(
            Protocol::read_bytes(&[0xa3, 0x02]),
            Err(AddrErrorKind::UnknownCode(0x123))
        );
        assert_eq!(
            Protocol::read_bytes(&[0xe1]),
            Err(AddrErrorKind::Truncated { protocol: "code" })
        );
        // A dns name claiming 1000 bytes is refused before anything is read.
        assert_eq!(
            Protocol::read_bytes(&[0x35, 0xe8, 0x07, b'a']),
            Err(AddrErrorKind::ValueTooLong {
                protocol: "dns",
                len: 1000,
                max: MAX_DNS_NAME_LEN
            })
        );
        assert_eq!(
            Protocol::read_bytes(&[0x35, 0x05, b'a']),
            Err(AddrErrorKind::Truncated { protocol: "dns" })
        );
        assert!(matches!(
            Protocol::read_bytes(&[0x35, 0x02, 0xff, 0xfe]),
            Err(AddrErrorKind::InvalidDnsName {
                reason: "not UTF-8",
                ..
            })
        ));
    }
}
