//! Network failures as the control protocol reports them: each library error mapped to an
//! [`ErrorCode`] a client can match and a one-line message a person can act on. Nothing
//! here does IO.

use crate::control_proto::{ControlError, ErrorCode};
use pheromone::negotiate::NegotiateError;
use pheromone::transport::TransportError;
use pheromone::upgrade::UpgradeError;
use pheromone::{DialError, Multiaddr, OpenStreamError, PeerId};
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

/// An error opening a stream, with protocol refusals told apart.
pub fn open_error(peer: &PeerId, protocol: &str, e: OpenStreamError) -> ControlError {
    match e {
        OpenStreamError::Negotiate(NegotiateError::Negotiation(
            NegotiationError::ProtocolRejected { .. } | NegotiationError::AllRejected { .. },
        )) => refused(peer, protocol),
        OpenStreamError::Timeout { .. } => ControlError::new(ErrorCode::Timeout, e.to_string()),
        other => ControlError::new(
            ErrorCode::StreamFailed,
            format!("{protocol} stream to {peer} failed: {other}"),
        ),
    }
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
