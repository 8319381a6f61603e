//! Multiaddrs: self-describing network addresses such as `/ip4/127.0.0.1/tcp/4001/p2p/12D3KooW…`.
//!
//! [`Multiaddr`] is a list of [`Protocol`] components with the text and binary forms of the
//! multiformats spec, so addresses round-trip with rust-libp2p and go-libp2p (identify and
//! Kademlia carry them in binary). [`parse_dial_address`] also accepts the `host:port` form
//! people type. Everything from outside is capped at [`MAX_LEN`] bytes and checked
//! component by component; errors name the part that is wrong. Nothing here resolves names
//! or opens sockets: the dialer in the `pheromone` crate does that with
//! [`Multiaddr::tcp_socket_addr`] and [`Multiaddr::dns_tcp_target`].

mod error;
mod protocol;

pub use error::{AddrError, AddrErrorKind};
pub use protocol::{Protocol, MAX_DNS_NAME_LEN};

use crate::identity::PeerId;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// Longest multiaddr we accept, in bytes of its binary form. Real addresses are well under
/// 200 bytes; the cap bounds what a peer can make us allocate per address.
pub const MAX_LEN: usize = 1024;

/// Longest text we try to parse as a multiaddr, in bytes. Text is up to six times longer
/// than binary (`/p2p-circuit` is 12 characters and 2 bytes), so the text of any address
/// within [`MAX_LEN`] fits; parsed text must still encode within [`MAX_LEN`].
pub const MAX_TEXT_LEN: usize = 8 * MAX_LEN;

/// A network address as a list of protocol components, outermost first.
///
/// Any `Multiaddr` that came out of [`FromStr`] or [`Multiaddr::from_bytes`] is non-empty and
/// encodes to at most [`MAX_LEN`] bytes. One built by hand with [`Multiaddr::push`] is not
/// checked; peers will drop it if it breaks those limits.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Multiaddr(Vec<Protocol>);

/// Which address family a `/dns*` component may resolve to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DnsFamily {
    /// `/dns`: IPv4 or IPv6.
    Any,
    /// `/dns4`: IPv4 only.
    V4,
    /// `/dns6`: IPv6 only.
    V6,
}

/// A TCP address given by host name: what a dialer must resolve before connecting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DnsTarget<'a> {
    /// The name to resolve.
    pub host: &'a str,
    /// The TCP port.
    pub port: u16,
    /// Which resolved addresses may be used.
    pub family: DnsFamily,
}

impl Multiaddr {
    /// The empty address (not valid on the wire; build on it with [`Self::with`]).
    pub fn empty() -> Self {
        Self(Vec::new())
    }

    /// `/ip4/<ip>/tcp/<port>` or `/ip6/<ip>/tcp/<port>` for a TCP socket address. An IPv6
    /// scope ID is dropped: multiaddrs have no standard place for it.
    pub fn from_socket_addr(addr: SocketAddr) -> Self {
        let ip = match addr.ip() {
            IpAddr::V4(ip) => Protocol::Ip4(ip),
            IpAddr::V6(ip) => Protocol::Ip6(ip),
        };
        Self(vec![ip, Protocol::Tcp(addr.port())])
    }

    /// `/ip4|ip6/<ip>/udp/<port>/quic-v1` for a QUIC socket address.
    pub fn from_quic_socket_addr(addr: SocketAddr) -> Self {
        let ip = match addr.ip() {
            IpAddr::V4(ip) => Protocol::Ip4(ip),
            IpAddr::V6(ip) => Protocol::Ip6(ip),
        };
        Self(vec![ip, Protocol::Udp(addr.port()), Protocol::QuicV1])
    }

    /// Whether the address ends (before any `/p2p/`) in `/quic-v1`: a QUIC address,
    /// by IP or by DNS name.
    pub fn is_quic(&self) -> bool {
        matches!(self.without_p2p_slice().last(), Some(Protocol::QuicV1))
    }

    /// Parses the binary form (as identify and Kademlia carry addresses).
    ///
    /// Errors are [`AddrError::Binary`]; an unknown protocol code is
    /// [`AddrErrorKind::UnknownCode`], and callers decoding a list should skip that address.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, AddrError> {
        let binary = |kind| AddrError::Binary { kind };
        if bytes.len() > MAX_LEN {
            return Err(binary(AddrErrorKind::TooLong {
                len: bytes.len(),
                max: MAX_LEN,
            }));
        }
        if bytes.is_empty() {
            return Err(binary(AddrErrorKind::Empty));
        }
        let mut components = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let (component, tail) = Protocol::read_bytes(rest).map_err(binary)?;
            components.push(component);
            rest = tail;
        }
        Ok(Self(components))
    }

    /// The binary form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.write_bytes(&mut out);
        out
    }

    /// Appends the binary form to `out`.
    pub fn write_bytes(&self, out: &mut Vec<u8>) {
        for component in &self.0 {
            component.write_bytes(out);
        }
    }

    /// Length of the binary form, in bytes.
    pub fn encoded_len(&self) -> usize {
        self.0.iter().map(Protocol::encoded_len).sum()
    }

    /// The components, outermost first.
    pub fn protocols(&self) -> &[Protocol] {
        &self.0
    }

    /// Iterates over the components, outermost first.
    pub fn iter(&self) -> std::slice::Iter<'_, Protocol> {
        self.0.iter()
    }

    /// Number of components.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no components.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Appends a component.
    pub fn push(&mut self, protocol: Protocol) {
        self.0.push(protocol);
    }

    /// Removes and returns the last component.
    pub fn pop(&mut self) -> Option<Protocol> {
        self.0.pop()
    }

    /// This address with `protocol` appended.
    pub fn with(mut self, protocol: Protocol) -> Self {
        self.0.push(protocol);
        self
    }

    /// The peer this address leads to: the value of a trailing `/p2p` component.
    ///
    /// A `/p2p` further left (the relay in `/…/p2p/<relay>/p2p-circuit/p2p/<target>`) does
    /// not count: it names a hop, not the destination.
    pub fn peer_id(&self) -> Option<PeerId> {
        match self.0.last() {
            Some(Protocol::P2p(id)) => Some(*id),
            _ => None,
        }
    }

    /// This address ending in `/p2p/<peer>`: unchanged if it already names `peer`, an error
    /// if it names another peer.
    pub fn with_p2p(self, peer: PeerId) -> Result<Self, AddrError> {
        match self.peer_id() {
            Some(existing) if existing == peer => Ok(self),
            Some(existing) => Err(AddrError::PeerIdMismatch {
                existing,
                requested: peer,
            }),
            None => Ok(self.with(Protocol::P2p(peer))),
        }
    }

    /// This address without its trailing `/p2p` component, if any: the part a transport dials.
    pub fn without_p2p(mut self) -> Self {
        if self.peer_id().is_some() {
            self.0.pop();
        }
        self
    }

    /// The socket address of `/ip4|ip6/<ip>/tcp/<port>`, optionally followed by `/p2p/<id>`.
    ///
    /// `None` for anything else, including TCP addresses with more layers (`/ws`, relays):
    /// those are not a plain TCP dial.
    pub fn tcp_socket_addr(&self) -> Option<SocketAddr> {
        match self.without_p2p_slice() {
            [Protocol::Ip4(ip), Protocol::Tcp(port)] => Some(SocketAddr::new((*ip).into(), *port)),
            [Protocol::Ip6(ip), Protocol::Tcp(port)] => Some(SocketAddr::new((*ip).into(), *port)),
            _ => None,
        }
    }

    /// The UDP socket address of `/ip4|ip6/<ip>/udp/<port>/quic-v1`, optionally followed by
    /// `/p2p/<id>`: a direct QUIC v1 dial.
    pub fn quic_socket_addr(&self) -> Option<SocketAddr> {
        match self.without_p2p_slice() {
            [Protocol::Ip4(ip), Protocol::Udp(port), Protocol::QuicV1] => {
                Some(SocketAddr::new((*ip).into(), *port))
            }
            [Protocol::Ip6(ip), Protocol::Udp(port), Protocol::QuicV1] => {
                Some(SocketAddr::new((*ip).into(), *port))
            }
            _ => None,
        }
    }

    /// The host, port and family of `/dns|dns4|dns6/<host>/tcp/<port>`, optionally followed
    /// by `/p2p/<id>`: a TCP dial that needs a name lookup first.
    pub fn dns_tcp_target(&self) -> Option<DnsTarget<'_>> {
        let (host, family, port) = match self.without_p2p_slice() {
            [Protocol::Dns(host), Protocol::Tcp(port)] => (host, DnsFamily::Any, port),
            [Protocol::Dns4(host), Protocol::Tcp(port)] => (host, DnsFamily::V4, port),
            [Protocol::Dns6(host), Protocol::Tcp(port)] => (host, DnsFamily::V6, port),
            _ => return None,
        };
        Some(DnsTarget {
            host,
            port: *port,
            family,
        })
    }

    fn without_p2p_slice(&self) -> &[Protocol] {
        match self.0.split_last() {
            Some((Protocol::P2p(_), rest)) => rest,
            _ => &self.0,
        }
    }
}

impl FromStr for Multiaddr {
    type Err = AddrError;

    /// Parses the text form, `/ip4/127.0.0.1/tcp/4001`. A single trailing `/` is allowed;
    /// `/ipfs/<id>` is read as `/p2p/<id>`.
    fn from_str(input: &str) -> Result<Self, AddrError> {
        parse_text(input).map_err(|kind| AddrError::text(input, kind))
    }
}

impl TryFrom<&[u8]> for Multiaddr {
    type Error = AddrError;

    fn try_from(bytes: &[u8]) -> Result<Self, AddrError> {
        Self::from_bytes(bytes)
    }
}

impl From<Protocol> for Multiaddr {
    fn from(protocol: Protocol) -> Self {
        Self(vec![protocol])
    }
}

impl From<SocketAddr> for Multiaddr {
    /// Same as [`Multiaddr::from_socket_addr`]: a TCP address.
    fn from(addr: SocketAddr) -> Self {
        Self::from_socket_addr(addr)
    }
}

impl FromIterator<Protocol> for Multiaddr {
    fn from_iter<I: IntoIterator<Item = Protocol>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl<'a> IntoIterator for &'a Multiaddr {
    type Item = &'a Protocol;
    type IntoIter = std::slice::Iter<'a, Protocol>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Display for Multiaddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for component in &self.0 {
            write!(f, "{component}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Multiaddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Multiaddr({self})")
    }
}

fn parse_text(input: &str) -> Result<Multiaddr, AddrErrorKind> {
    if input.len() > MAX_TEXT_LEN {
        return Err(AddrErrorKind::TooLong {
            len: input.len(),
            max: MAX_TEXT_LEN,
        });
    }
    let body = input.strip_prefix('/').ok_or(if input.is_empty() {
        AddrErrorKind::Empty
    } else {
        AddrErrorKind::MissingLeadingSlash
    })?;
    let body = body.strip_suffix('/').unwrap_or(body);
    if body.is_empty() {
        return Err(AddrErrorKind::Empty);
    }
    let mut parts = body.split('/');
    let mut components = Vec::new();
    while let Some(name) = parts.next() {
        components.push(Protocol::parse_text(name, &mut parts)?);
    }
    let addr = Multiaddr(components);
    // Bound the binary form too, so that every parsed address can be sent and decoded.
    let len = addr.encoded_len();
    if len > MAX_LEN {
        return Err(AddrErrorKind::TooLong { len, max: MAX_LEN });
    }
    Ok(addr)
}

/// Parses an address a person typed: a multiaddr, or `host:port` for TCP.
///
/// `127.0.0.1:4001` becomes `/ip4/127.0.0.1/tcp/4001`, `[::1]:4001` becomes
/// `/ip6/::1/tcp/4001`, and a name such as `localhost:4001` becomes `/dns/localhost/tcp/4001`.
/// Anything starting with `/` is parsed as a multiaddr.
pub fn parse_dial_address(input: &str) -> Result<Multiaddr, AddrError> {
    let input = input.trim();
    if input.starts_with('/') {
        return input.parse();
    }
    parse_host_port(input).map_err(|kind| AddrError::dial(input, kind))
}

fn parse_host_port(input: &str) -> Result<Multiaddr, AddrErrorKind> {
    if input.len() > MAX_TEXT_LEN {
        return Err(AddrErrorKind::TooLong {
            len: input.len(),
            max: MAX_TEXT_LEN,
        });
    }
    if input.is_empty() {
        return Err(AddrErrorKind::Empty);
    }
    if let Ok(addr) = input.parse::<SocketAddr>() {
        return Ok(Multiaddr::from_socket_addr(addr));
    }
    if let Some(bracketed) = input.strip_prefix('[') {
        // `[ip6]:port` that SocketAddr refused: say which half is wrong.
        let (ip, port) = bracketed
            .split_once("]:")
            .filter(|(_, port)| !port.is_empty())
            .ok_or(AddrErrorKind::MissingPort)?;
        let ip = ip
            .parse()
            .map_err(|_| AddrErrorKind::InvalidIp6(error::clip(ip)))?;
        return Ok(Multiaddr(vec![
            Protocol::Ip6(ip),
            Protocol::Tcp(protocol::parse_port(port)?),
        ]));
    }
    let (host, port) = input
        .rsplit_once(':')
        .filter(|(_, port)| !port.is_empty())
        .ok_or(AddrErrorKind::MissingPort)?;
    if host.contains(':') {
        return Err(AddrErrorKind::UnbracketedIpv6);
    }
    let port = protocol::parse_port(port)?;
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        // Looks like an IPv4 address (SocketAddr refused it, so it is a bad one); a name
        // made only of digits and dots would not resolve anyway.
        return Err(AddrErrorKind::InvalidIp4(error::clip(host)));
    }
    let host = protocol::parse_dns_name(host)?;
    Ok(Multiaddr(vec![Protocol::Dns(host), Protocol::Tcp(port)]))
}

/// Entry points for fuzz targets. Each takes arbitrary bytes and must never panic.
#[doc(hidden)]
pub mod fuzzing {
    use super::Multiaddr;

    /// Decodes `data` as a binary multiaddr; a success must re-encode to the same bytes and
    /// its text form must parse back to the same address.
    pub fn fuzz_decode_binary(data: &[u8]) {
        if let Ok(addr) = Multiaddr::from_bytes(data) {
            assert_eq!(addr.to_bytes(), data, "binary re-encoding differs");
            let text = addr.to_string();
            let back: Multiaddr = text.parse().expect("text form of a decoded address parses");
            assert_eq!(back, addr);
        }
    }

    /// Parses `data` (as UTF-8, lossily) as text and as a dial address; a success must
    /// survive a binary round trip.
    pub fn fuzz_parse_text(data: &[u8]) {
        let text = String::from_utf8_lossy(data);
        let parsed = [text.parse::<Multiaddr>(), super::parse_dial_address(&text)];
        for addr in parsed.into_iter().flatten() {
            let back = Multiaddr::from_bytes(&addr.to_bytes()).expect("parsed address decodes");
            assert_eq!(back, addr);
        }
    }
}

#[cfg(test)]
mod tests;
