//! Network failures as the control protocol reports them: each library error mapped to an
//! [`ErrorCode`] a client can match and a one-line message a person can act on. Nothing
//! here does IO.

use crate::control_proto::{ControlError, ErrorCode};
use pheromone::negotiate::NegotiateError;
use pheromone::pubsub::PubSubError;
use pheromone::swarm::ConnectError;
use pheromone::transport::TransportError;
use pheromone::upgrade::UpgradeError;
use pheromone::{DialError, DispatchError, Multiaddr, NodeError, PeerId};
use pheromone_core::multistream::NegotiationError;
use pheromone_core::noise::NoiseError;

/// A dial failure as the CLI reports it: refused, wrong peer and timeouts get their own
/// codes and wording.
pub fn dial_error(addr: &Multiaddr, e: &DialError) -> ControlError {
    match e {
        DialError::Transport(TransportError::Connect { addr: to, source })
            if source.kind() == std::io::ErrorKind::ConnectionRefused =>
        {
            ControlError::new(
                ErrorCode::ConnectionRefused,
                format!("connection refused by {to}: nothing is listening there"),
            )
        }
        DialError::Transport(TransportError::ConnectTimeout { .. }) => {
            ControlError::new(ErrorCode::Timeout, e.to_string())
        }
        DialError::Upgrade(upgrade) => match upgrade.as_ref() {
            UpgradeError::Noise {
                addr: at,
                source: NoiseError::PeerIdMismatch { expected, actual },
            } => ControlError::new(
                ErrorCode::WrongPeer,
                format!("wrong peer at {at}: expected {expected} but it authenticated as {actual}"),
            ),
            UpgradeError::Timeout { .. } => ControlError::new(ErrorCode::Timeout, e.to_string()),
            _ => ControlError::new(
                ErrorCode::DialFailed,
                format!("cannot connect to {addr}: {e}"),
            ),
        },
        _ => ControlError::new(
            ErrorCode::DialFailed,
            format!("cannot connect to {addr}: {e}"),
        ),
    }
}

fn refused(peer: &PeerId, protocol: &str) -> ControlError {
    ControlError::new(
        ErrorCode::ProtocolRefused,
        format!("{peer} does not answer {protocol}"),
    )
}

/// An IO error on a stream, with a lazy negotiation's refusal told apart.
pub fn stream_error(peer: &PeerId, protocol: &str, e: &std::io::Error) -> ControlError {
    let negotiation = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<NegotiateError>());
    if let Some(NegotiateError::Negotiation(
        NegotiationError::ProtocolRejected { .. } | NegotiationError::AllRejected { .. },
    )) = negotiation
    {
        return refused(peer, protocol);
    }
    ControlError::new(
        ErrorCode::StreamFailed,
        format!("{protocol} stream to {peer} failed: {e}"),
    )
}

/// An unknown name, worded for a person who typed it.
pub fn unknown_name(name: &str, known: &[String]) -> ControlError {
    let hint = if known.is_empty() {
        "no known peer has a name".to_owned()
    } else {
        format!("known names: {}", known.join(", "))
    };
    ControlError::new(
        ErrorCode::UnknownPeer,
        format!("unknown peer {name:?}: not a peer ID and no known peer has that name ({hint})"),
    )
}

/// A name several peers share; the error lists them.
pub fn ambiguous_name(name: &str, candidates: &[PeerId]) -> ControlError {
    let candidates: Vec<String> = candidates.iter().map(ToString::to_string).collect();
    let mut error = ControlError::new(
        ErrorCode::AmbiguousPeer,
        format!(
            "name {name:?} is ambiguous: {} peers have it ({}); use a peer ID",
            candidates.len(),
            candidates.join(", ")
        ),
    );
    error.candidates = candidates;
    error
}

/// A failed route or connect, from the node.
pub fn node_error(e: &NodeError) -> ControlError {
    match e {
        NodeError::Dial { addr, source } => match (addr.parse::<Multiaddr>(), source.as_ref()) {
            (Ok(addr), ConnectError::Dial { source, .. }) => dial_error(&addr, source),
            _ => ControlError::new(ErrorCode::DialFailed, e.to_string()),
        },
        NodeError::BadAddress { .. } | NodeError::SelfContact { .. } => {
            ControlError::new(ErrorCode::BadRequest, e.to_string())
        }
        NodeError::UnknownName { name } => unknown_name(name, &[]),
        NodeError::AmbiguousName { name, candidates } => ambiguous_name(name, candidates),
        NodeError::Closed => ControlError::new(ErrorCode::ShuttingDown, e.to_string()),
        _ => ControlError::new(ErrorCode::DialFailed, e.to_string()),
    }
}

/// A failed request or stream to a peer, from the node.
pub fn dispatch_error(e: &DispatchError) -> ControlError {
    use DispatchError as D;
    let code = match e {
        D::Closed => ErrorCode::ShuttingDown,
        D::UnknownName { name } => return unknown_name(name, &[]),
        D::AmbiguousName { name, candidates } => return ambiguous_name(name, candidates),
        D::NoAddress { peer } => {
            return ControlError::new(
                ErrorCode::NotConnected,
                format!(
                    "not connected to {peer} and no address is known for it; run \
                     `pheromone connect <its address>` first"
                ),
            )
        }
        D::Dial { peer, source } => {
            let mut error = dial_error(&Multiaddr::empty(), source);
            if error.code == ErrorCode::DialFailed {
                error.message = format!("cannot reach {peer}: {source}");
            }
            return error;
        }
        D::RequestTooLarge { .. }
        | D::RemoteRequestTooLarge { .. }
        | D::ResponseTooLarge { .. } => ErrorCode::MessageTooLarge,
        D::Refused { .. } => ErrorCode::ProtocolRefused,
        D::Timeout { .. } => ErrorCode::Timeout,
        D::ConnectionLimit { .. } => ErrorCode::DialFailed,
        _ => ErrorCode::StreamFailed,
    };
    ControlError::new(code, e.to_string())
}

/// A failed publish or subscribe.
pub fn pubsub_error(e: &PubSubError) -> ControlError {
    let code = match e {
        PubSubError::Topic(_) => ErrorCode::BadRequest,
        PubSubError::Publish(_) => ErrorCode::MessageTooLarge,
        _ => ErrorCode::ShuttingDown,
    };
    ControlError::new(code, e.to_string())
}
