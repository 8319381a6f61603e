//! Why an exec call failed. Only the error types live here.

use crate::node::{DispatchError, NodeError};
use pheromone_core::exec::{ExecWireError, FailureKind};
use pheromone_core::identity::PeerId;
use std::sync::Arc;
use thiserror::Error;

/// Why a command could not be run on a peer, or its result not read.
#[derive(Debug, Clone, Error)]
#[non_exhaustive]
pub enum ExecError {
    /// The request breaks a protocol limit (empty program, stdin too large, …); nothing
    /// was sent.
    #[error("invalid exec request: {0}")]
    InvalidRequest(#[source] ExecWireError),
    /// The peer refused `/pheromone/exec/1.0.0`: exec is off there, or we are not on its
    /// allow-list. Nothing ran.
    #[error("{peer} refused exec: exec is disabled there or this node is not on its allow-list")]
    Refused {
        /// The peer.
        peer: PeerId,
    },
    /// The stream to the peer could not be opened (unreachable, unknown name, limits).
    #[error("cannot reach {peer}: {source}")]
    Open {
        /// The peer (or the target as given, if it never resolved).
        peer: String,
        /// What went wrong.
        source: Arc<DispatchError>,
    },
    /// The peer answered with an error instead of running the command (or while it ran):
    /// see `kind`.
    #[error("{peer}: {kind}: {message}")]
    Remote {
        /// The peer.
        peer: PeerId,
        /// What kind of failure.
        kind: FailureKind,
        /// The peer's explanation.
        message: String,
    },
    /// The peer sent bytes that are not a valid reply frame.
    #[error("{peer} sent a malformed reply: {source}")]
    Protocol {
        /// The peer.
        peer: PeerId,
        /// What was wrong.
        source: ExecWireError,
    },
    /// The stream failed or ended before the exit status arrived.
    #[error("stream to {peer} ended before the exit status: {reason}")]
    Lost {
        /// The peer.
        peer: PeerId,
        /// What happened.
        reason: String,
    },
    /// No exit status within the request's timeout plus a grace period.
    #[error("{peer} sent no exit status in time")]
    Timeout {
        /// The peer.
        peer: PeerId,
    },
}

/// Why the exec service could not be started.
#[derive(Debug, Clone, Error)]
#[non_exhaustive]
pub enum ExecServeError {
    /// The node already answers `/pheromone/exec/1.0.0` (another service is running);
    /// close it first.
    #[error("exec is already served by this node")]
    AlreadyServing,
    /// A setting is out of range.
    #[error("invalid exec config: {0}")]
    InvalidConfig(&'static str),
    /// A program of the allow-list does not exist (or is not executable).
    #[error("invalid exec config: {0}")]
    UnknownProgram(String),
    /// Registering the handler failed.
    #[error("cannot register the exec handler: {0}")]
    Node(#[source] Arc<NodeError>),
}
