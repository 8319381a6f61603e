//! Sending a direct message: `/pheromone/msg/2.0.0` with a fresh message id, retried with
//! the same id when the link fails under it (the receiver stores an id once), falling back
//! to `1.0.0` for receivers that do not speak 2.0.0; the ack mapped to a control error.
//! An `impl Net` block beside the core of [`Net`] in `mod.rs`.

use super::super::errors::dispatch_error;
use super::super::protocols::{encode_v2, Ack, ID_LEN, MSG_PROTOCOL, MSG_PROTOCOL_V2};
use super::{Net, MSG_ATTEMPTS, MSG_RETRY_PAUSE, MSG_TIMEOUT};
use crate::control_proto::{ControlError, ErrorCode, MAX_MESSAGE};
use pheromone::{DispatchOptions, PeerId};

impl Net {
    /// Sends one direct message and waits for the receiver's ack, which it gives once the
    /// message is on its disk. When the link fails under it, retries with the same
    /// message id (the receiver stores it once), within [`MSG_TIMEOUT`] in all.
    pub async fn send(&self, spec: &str, data: Vec<u8>) -> Result<PeerId, ControlError> {
        if data.len() > MAX_MESSAGE {
            return Err(ControlError::new(
                ErrorCode::MessageTooLarge,
                format!(
                    "message of {} bytes is over the limit of {MAX_MESSAGE}",
                    data.len()
                ),
            ));
        }
        let len = data.len();
        let peer = self.reach(&self.resolve(spec)?).await?;
        let id: [u8; ID_LEN] = rand::random();
        let request = bytes::Bytes::from(encode_v2(&id, &data));
        let deadline = tokio::time::Instant::now() + MSG_TIMEOUT;
        let mut pause = MSG_RETRY_PAUSE;
        let mut attempt = 0;
        let reply = loop {
            attempt += 1;
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let options = DispatchOptions::new().timeout(left);
            let result = self
                .inner
                .node
                .dispatch_with(peer, MSG_PROTOCOL_V2, request.clone(), &options)
                .await
                .map_err(|e| dispatch_error(&e));
            match result {
                Ok(reply) => break reply,
                Err(e) if e.code == ErrorCode::ProtocolRefused => {
                    // An older receiver: the message without an id, once (no dedup there).
                    let options = DispatchOptions::new().timeout(left);
                    break self
                        .inner
                        .node
                        .dispatch_with(peer, MSG_PROTOCOL, data, &options)
                        .await
                        .map_err(|e| dispatch_error(&e))?;
                }
                Err(e) if attempt < MSG_ATTEMPTS && retryable(e.code) => {
                    if tokio::time::Instant::now() + pause >= deadline {
                        return Err(e);
                    }
                    tracing::debug!(%peer, attempt, error = %e, "message not acked; retrying with the same id");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                Err(e) => return Err(e),
            }
        };
        let ack = Ack::from_reply(&reply).map_err(|e| {
            ControlError::new(
                ErrorCode::StreamFailed,
                format!("{peer} answered {MSG_PROTOCOL_V2} with a bad ack: {e}"),
            )
        })?;
        match ack {
            Ack::Stored => Ok(peer),
            Ack::InboxFull => Err(ControlError::new(
                ErrorCode::InboxFull,
                format!(
                    "{peer}'s inbox is full; it must read its messages (`pheromone recv`) first \
                     (message of {len} bytes not stored)"
                ),
            )),
            Ack::NotStored => Err(ControlError::new(
                ErrorCode::NotStored,
                format!("{peer} could not write the message to its disk (message of {len} bytes not stored)"),
            )),
            Ack::Malformed => Err(ControlError::new(
                ErrorCode::StreamFailed,
                format!("{peer} found our {MSG_PROTOCOL_V2} request malformed"),
            )),
        }
    }
}

/// Whether a failed message may be sent again: the link failed, not the receiver's answer.
fn retryable(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::StreamFailed
            | ErrorCode::NotConnected
            | ErrorCode::Timeout
            | ErrorCode::DialFailed
            | ErrorCode::ConnectionRefused
    )
}
