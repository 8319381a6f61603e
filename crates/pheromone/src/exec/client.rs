//! The exec client: send one request on a new stream to one peer, then read its reply
//! frames as [`ExecOutput`] events until the exit status.
//!
//! Nothing here decides what runs; the peer does. Every frame is decoded with the
//! limits of [`pheromone_core::exec`], and the whole exchange is bounded by the request's
//! timeout plus a grace period (when the request sets one).

use super::ExecError;
use crate::node::{DispatchError, Node, NodeStream, Target};
use bytes::{Bytes, BytesMut};
use pheromone_core::exec::{Exit, Reply, Request, PROTOCOL};
use pheromone_core::identity::PeerId;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

/// How long past the request's own timeout the caller waits for the exit status (the
/// peer needs time to kill the program and report).
const GRACE: Duration = Duration::from_secs(15);

/// One event of a remote run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecOutput {
    /// A chunk of the program's stdout.
    Stdout(Bytes),
    /// A chunk of the program's stderr.
    Stderr(Bytes),
    /// How it ended; the last event.
    Exit(Exit),
}

/// A run in progress on one peer: call [`ExecSession::next`] until it returns `None`.
/// Dropping it before the end resets the stream, and the peer kills the program.
#[derive(Debug)]
pub struct ExecSession {
    peer: PeerId,
    /// The stream, until the run ends (then released at once, not when the session drops).
    stream: Option<NodeStream>,
    buf: BytesMut,
    deadline: Option<Instant>,
    done: bool,
}

/// Sends `request` to `peer` and returns the run's event source. Fails at once if the
/// request breaks a protocol limit, the peer cannot be reached, or it refuses exec (exec
/// off there, or we are not on its allow-list).
pub async fn exec(
    node: &Node,
    peer: impl Into<Target>,
    request: &Request,
) -> Result<ExecSession, ExecError> {
    let mut frame = BytesMut::with_capacity(request.encoded_len());
    request
        .encode(&mut frame)
        .map_err(ExecError::InvalidRequest)?;
    let target = peer.into();
    let stream = node
        .open_stream(target.clone(), PROTOCOL)
        .await
        .map_err(|e| match e {
            DispatchError::Refused { peer, .. } => ExecError::Refused { peer },
            other => ExecError::Open {
                peer: other
                    .peer()
                    .map_or_else(|| target.to_string(), |p| p.to_string()),
                source: Arc::new(other),
            },
        })?;
    let peer = stream.peer();
    let mut session = ExecSession {
        peer,
        stream: Some(stream),
        buf: BytesMut::new(),
        deadline: (!request.timeout.is_zero()).then(|| Instant::now() + request.timeout + GRACE),
        done: false,
    };
    let lost = |e: std::io::Error| ExecError::Lost {
        peer,
        reason: e.to_string(),
    };
    // No half-close after the request: the peer watches our side of the stream to learn
    // that we went away (a reset) and kill the command; after an EOF it could not.
    match session.stream.as_mut() {
        Some(stream) => stream.write_all(&frame).await.map_err(lost)?,
        None => unreachable_stream(peer)?,
    }
    Ok(session)
}

impl ExecSession {
    /// The peer running the command.
    pub fn peer(&self) -> PeerId {
        self.peer
    }

    /// The next event; `None` after the exit (or after an error, which is the last item).
    pub async fn next(&mut self) -> Option<Result<ExecOutput, ExecError>> {
        if self.done {
            return None;
        }
        let result = match self.deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, self.read_event()).await {
                Ok(result) => result,
                Err(_) => Err(ExecError::Timeout { peer: self.peer }),
            },
            None => self.read_event().await,
        };
        if !matches!(result, Ok(ExecOutput::Stdout(_) | ExecOutput::Stderr(_))) {
            self.done = true;
            self.stream = None;
        }
        Some(result)
    }

    /// Reads events until the exit, handing each output chunk to `on_output`; the exit.
    pub async fn wait(mut self, mut on_output: impl FnMut(&ExecOutput)) -> Result<Exit, ExecError> {
        while let Some(event) = self.next().await {
            match event? {
                ExecOutput::Exit(exit) => return Ok(exit),
                output => on_output(&output),
            }
        }
        Err(ExecError::Lost {
            peer: self.peer,
            reason: "the run already ended".into(),
        })
    }

    async fn read_event(&mut self) -> Result<ExecOutput, ExecError> {
        let peer = self.peer;
        loop {
            match Reply::decode(&mut self.buf) {
                Ok(Some(reply)) => {
                    return match reply {
                        Reply::Stdout(b) => Ok(ExecOutput::Stdout(b)),
                        Reply::Stderr(b) => Ok(ExecOutput::Stderr(b)),
                        Reply::Exit(exit) => Ok(ExecOutput::Exit(exit)),
                        Reply::Error { kind, message } => Err(ExecError::Remote {
                            peer,
                            kind,
                            message,
                        }),
                    };
                }
                Ok(None) => {}
                Err(source) => return Err(ExecError::Protocol { peer, source }),
            }
            let Some(stream) = self.stream.as_mut() else {
                return unreachable_stream(peer);
            };
            match stream.get_mut().read_chunk().await {
                Ok(Some(chunk)) => self.buf.extend_from_slice(&chunk),
                Ok(None) => {
                    return Err(ExecError::Lost {
                        peer,
                        reason: "the peer closed the stream".into(),
                    })
                }
                Err(e) => {
                    return Err(ExecError::Lost {
                        peer,
                        reason: e.to_string(),
                    })
                }
            }
        }
    }
}

/// The stream is released only once the run ended, after which nothing reads it.
fn unreachable_stream<T>(peer: PeerId) -> Result<T, ExecError> {
    Err(ExecError::Lost {
        peer,
        reason: "the run already ended".into(),
    })
}

impl Drop for ExecSession {
    fn drop(&mut self) {
        // A plain drop would close our side with a FIN before its reset, and the peer
        // reads a FIN as "still waiting"; a bare reset tells it we are gone.
        if let Some(mut stream) = self.stream.take() {
            stream.get_mut().reset();
        }
    }
}
