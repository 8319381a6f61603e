//! The overlay contract: one trait, [`Overlay`], for every protocol that runs over a
//! node's neighbour links — Kademlia, the route table, broadcast, the connection manager,
//! and whatever comes after them — and the plain types that cross it.
//!
//! An overlay is a sans-IO state machine. Its driver (the tokio glue in the `pheromone`
//! crate, or the deterministic simulator) owns the links, the streams and the clock; the
//! overlay only sees neighbours come and go, whole frames, requests and responses, dial
//! results and the time, and answers with [`Output`]s. Nothing in this module does IO.
//!
//! ```text
//! driver                                          overlay
//! direct connection to a peer that speaks it ──▶  neighbour_up(now, Neighbour)
//! its last such connection closed            ──▶  neighbour_down(now, peer)
//! one whole frame on the neighbour link      ──▶  handle_frame(now, from, frame) -> Result
//! one whole request on an inbound stream     ──▶  handle_request(now, from, id, request) -> Result
//!                                            ◀──  Output::Respond { id, response }
//!                                            ◀──  Output::Request { id, to, addrs, request }
//! the response, or why there is none         ──▶  handle_response(now, id, result) -> Result
//!                                            ◀──  Output::Dial { id, .. } / Output::Disconnect
//! the dial's outcome                         ──▶  handle_dial_result(now, id, result)
//! the instant from poll_timeout              ──▶  handle_timeout(now)
//!                                            ◀──  Output::Send { to, frame } / Output::Event(_)
//! ```
//!
//! Frames, requests and responses are whole messages: the driver frames them on a byte
//! stream (an unsigned-varint length prefix, as libp2p protocols do) and refuses anything
//! longer than [`Overlay::max_message_len`] before buffering it.

use crate::addr::Multiaddr;
use crate::identity::PeerId;
use bytes::Bytes;
use std::time::Instant;

/// An outbound request, numbered by the overlay; the driver quotes it back with the
/// response or the failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// An inbound request, numbered by the driver (one per request received); the overlay
/// quotes it in the [`Output::Respond`] that answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InboundId(pub u64);

/// A dial the overlay asked for; its outcome comes back with the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DialId(pub u64);

/// Who opened a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// We dialled: the address used is known to work.
    Outbound,
    /// The peer dialled us: its source address is ephemeral, so the addresses the driver
    /// passes are the listen addresses the peer announced (identify), or none.
    Inbound,
}

/// How the overlay's peers reach each other on the wire, which tells the driver how to
/// use the overlay's protocol streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// Frames on neighbour links, in both directions, as long as the link lives.
    Frames,
    /// One request and one response per stream, to any peer (dialled if need be).
    Requests,
    /// No protocol of its own: the overlay only watches connections and asks for dials
    /// (the connection manager). Every direct connection is its neighbour.
    None,
}

/// A neighbour that came up: a peer with a connection that speaks the overlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    /// The peer.
    pub peer: PeerId,
    /// Where it can be dialled, as far as the driver knows (see [`Direction`]).
    pub addrs: Vec<Multiaddr>,
    /// Who dialled the connection that made it a neighbour.
    pub direction: Direction,
    /// Whether that connection is a circuit through other nodes (only for overlays whose
    /// [`Overlay::accepts_relayed`] is true).
    pub relayed: bool,
    /// The IP address the connection's socket really talks to (not an address the peer
    /// announced), for limits per network such as Kademlia's diversity; `None` on a
    /// relayed circuit or where the driver has no socket (the simulator).
    pub observed_ip: Option<std::net::IpAddr>,
}

impl Neighbour {
    /// A neighbour over a direct connection.
    pub fn direct(peer: PeerId, addrs: Vec<Multiaddr>, direction: Direction) -> Self {
        Self {
            peer,
            addrs,
            direction,
            relayed: false,
            observed_ip: None,
        }
    }
}

/// Why a request produced no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFailure {
    /// No connection could be made to any of the addresses.
    Dial,
    /// The peer does not speak the overlay's protocol (negotiation failed).
    Unsupported,
    /// The stream broke or was reset before a whole response arrived, or the response was
    /// longer than [`Overlay::max_message_len`].
    Io,
    /// The driver gave up waiting (overlays time their requests out themselves too).
    Timeout,
}

/// Why a dial failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialFailure {
    /// No address answered, or the handshake failed.
    Unreachable,
    /// A peer answered, but not the one expected.
    WrongPeer,
    /// A local limit refused the dial.
    Refused,
}

/// What an overlay asks its driver to do, or tells the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output<E> {
    /// Send one frame to neighbour `to` on the neighbour link. A frame for a peer that is
    /// not (or no longer) a neighbour, or whose send queue is full, is dropped: overlays
    /// repair their own losses.
    Send {
        /// The neighbour.
        to: PeerId,
        /// The frame.
        frame: Bytes,
    },
    /// Send `request` to `to` on a stream of its own (dialling one of `addrs` if there is
    /// no connection), read one response and hand it back with `id`.
    Request {
        /// Quote it back.
        id: RequestId,
        /// The peer.
        to: PeerId,
        /// Where to dial it if it is not connected.
        addrs: Vec<Multiaddr>,
        /// The request.
        request: Bytes,
    },
    /// Answer inbound request `id`, then close its stream.
    Respond {
        /// The driver's number for the request.
        id: InboundId,
        /// The response.
        response: Bytes,
    },
    /// Make a direct connection: to `peer` at one of `addrs`, or, with `peer` unknown
    /// (an operator's address without `/p2p/`), to whoever answers at them.
    Dial {
        /// Quote it back with the outcome.
        id: DialId,
        /// The peer expected, if known.
        peer: Option<PeerId>,
        /// Where to dial.
        addrs: Vec<Multiaddr>,
    },
    /// Close every connection to `peer` gracefully.
    Disconnect {
        /// The peer.
        peer: PeerId,
    },
    /// Something for the application.
    Event(E),
}

impl<E> Output<E> {
    /// The same output with its event (if it is one) mapped by `f`: how a composite
    /// overlay, or a driver, turns one overlay's events into its own.
    pub fn map_event<F>(self, f: impl FnOnce(E) -> F) -> Output<F> {
        match self {
            Output::Send { to, frame } => Output::Send { to, frame },
            Output::Request {
                id,
                to,
                addrs,
                request,
            } => Output::Request {
                id,
                to,
                addrs,
                request,
            },
            Output::Respond { id, response } => Output::Respond { id, response },
            Output::Dial { id, peer, addrs } => Output::Dial { id, peer, addrs },
            Output::Disconnect { peer } => Output::Disconnect { peer },
            Output::Event(event) => Output::Event(f(event)),
        }
    }
}

/// A protocol that runs over neighbour links, as a sans-IO state machine.
///
/// # Calling contract
///
/// - Every method that takes `now` is an input. After each input, and after every command
///   the overlay's own API offers (a lookup, a publish …), the driver calls
///   [`poll_output`](Self::poll_output) until it returns `None`, carries the outputs out,
///   then arranges to call [`handle_timeout`](Self::handle_timeout) at
///   [`poll_timeout`](Self::poll_timeout) (calling it early is harmless).
/// - `now` never goes backwards. The overlay never reads a clock itself.
/// - A neighbour is a peer with at least one live connection that counts for this overlay:
///   a direct connection to a peer that speaks [`protocol`](Self::protocol) (however it
///   was made: our dial, theirs, bootstrap, `connect`), or also a relayed one where
///   [`accepts_relayed`](Self::accepts_relayed) says so. The driver calls
///   [`neighbour_up`](Self::neighbour_up) once when the first such connection appears and
///   [`neighbour_down`](Self::neighbour_down) once when the last one closes; several
///   connections to one peer are one neighbour.
/// - Frames come only from neighbours ([`Wire::Frames`]); requests may come from any peer
///   ([`Wire::Requests`]). An `Err` from an input means the input was refused (malformed,
///   unexpected, over a limit): the overlay's state stays consistent and counts it, and
///   the driver logs the error (throttled) and drops the stream it came on.
/// - Every [`Output::Request`] gets exactly one [`handle_response`](Self::handle_response)
///   with its id, and every [`Output::Dial`] one
///   [`handle_dial_result`](Self::handle_dial_result), unless the driver shuts down.
pub trait Overlay {
    /// What the overlay reports to the application.
    type Event;
    /// Why an input was refused.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The protocol id its streams are negotiated under; `None` for [`Wire::None`].
    fn protocol(&self) -> Option<&str>;

    /// How it uses its protocol's streams.
    fn wire(&self) -> Wire;

    /// Whether a relayed connection (a circuit through other nodes) makes its peer a
    /// neighbour. Off by default: most overlays map the mesh of direct links, and routing
    /// must never treat a link that rides on its own routes as one of them.
    fn accepts_relayed(&self) -> bool {
        false
    }

    /// The longest frame, request or response it sends or accepts.
    fn max_message_len(&self) -> usize;

    /// The peer this overlay runs as.
    fn local_peer_id(&self) -> PeerId;

    /// `neighbour` became a neighbour.
    fn neighbour_up(&mut self, now: Instant, neighbour: Neighbour);

    /// `peer` is no longer a neighbour.
    fn neighbour_down(&mut self, now: Instant, peer: PeerId);

    /// One whole frame from neighbour `from`.
    fn handle_frame(&mut self, now: Instant, from: PeerId, frame: &[u8])
        -> Result<(), Self::Error>;

    /// One whole request from `from`, numbered `id` by the driver. Accepted, it is answered
    /// by an [`Output::Respond`] with `id` (now or later); refused, the stream is dropped.
    fn handle_request(
        &mut self,
        now: Instant,
        from: PeerId,
        id: InboundId,
        request: &[u8],
    ) -> Result<(), Self::Error>;

    /// The response to our request `id`, or why none came.
    fn handle_response(
        &mut self,
        now: Instant,
        id: RequestId,
        response: Result<&[u8], RequestFailure>,
    ) -> Result<(), Self::Error>;

    /// The outcome of dial `id`: the peer that answered, or why none did. Overlays that
    /// never dial ignore it.
    fn handle_dial_result(
        &mut self,
        now: Instant,
        id: DialId,
        result: Result<PeerId, DialFailure>,
    ) {
        let _ = (now, id, result);
    }

    /// Runs whatever is due at `now`.
    fn handle_timeout(&mut self, now: Instant);

    /// When [`handle_timeout`](Self::handle_timeout) should next run, if ever.
    fn poll_timeout(&self) -> Option<Instant>;

    /// The next output, if any.
    fn poll_output(&mut self) -> Option<Output<Self::Event>>;
}

impl From<PeerId> for Neighbour {
    /// A neighbour over a direct connection we dialled, with no address known: what tests
    /// and overlays that ignore addresses need.
    fn from(peer: PeerId) -> Self {
        Self::direct(peer, Vec::new(), Direction::Outbound)
    }
}
