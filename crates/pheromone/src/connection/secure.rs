//! The security layer of a TCP (or relayed) connection after its handshake: Noise frames
//! or TLS 1.3 records, behind one sealing and one opening half.
//!
//! The driver opens what it reads with an [`Opener`] and its [`Writer`](super::writer)
//! seals what it sends with a [`Sealer`]; neither knows which protocol it is. The record
//! work is in the core ([`pheromone_core::noise`], [`pheromone_core::tls::record`]); what
//! lives here is TLS's key update, whose next key rustls derives (it keeps the traffic
//! secrets): the opening half rekeys when the peer announces an update, and when the peer
//! asked for ours, or our key has sealed its share of records, the sealing half sends a
//! `KeyUpdate` before its next data and rekeys. The two halves share only that rustls
//! state, behind a std mutex held for one key derivation.

use bytes::BytesMut;
use pheromone_core::noise::{self, NoiseError, NoiseReceiver, NoiseSender, TransportCipher};
use pheromone_core::tls::record::{
    self, Opened, RecordCipher, RecordError, RecordOpener, RecordSealer, TrafficKey,
    KEY_UPDATE_RECORD_LEN,
};
use rustls::client::ClientConnectionData;
use rustls::kernel::KernelConnection;
use rustls::server::ServerConnectionData;
use rustls::ConnectionTrafficSecrets;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use thiserror::Error;

/// Why sealing or opening failed; every variant ends the connection.
#[derive(Debug, Error)]
pub(crate) enum SecureError {
    /// A Noise frame.
    #[error(transparent)]
    Noise(#[from] NoiseError),
    /// A TLS record.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// rustls could not derive the next key.
    #[error("TLS key update failed: {0}")]
    KeyUpdate(String),
    /// The TLS peer sent `close_notify`.
    #[error("the peer closed the TLS session")]
    CloseNotify,
}

/// rustls's state after the handshake, kept for key updates.
pub(crate) enum Kernel {
    /// We dialled.
    Client(KernelConnection<ClientConnectionData>),
    /// We accepted.
    Server(KernelConnection<ServerConnectionData>),
}

impl Kernel {
    fn update(&mut self, tx: bool) -> Result<TrafficKey, SecureError> {
        let result = match (self, tx) {
            (Kernel::Client(k), true) => k.update_tx_secret(),
            (Kernel::Client(k), false) => k.update_rx_secret(),
            (Kernel::Server(k), true) => k.update_tx_secret(),
            (Kernel::Server(k), false) => k.update_rx_secret(),
        };
        let (seq, secrets) = result.map_err(|e| SecureError::KeyUpdate(e.to_string()))?;
        traffic_key(seq, secrets)
    }
}

/// What both halves of a TLS session share.
pub(crate) struct TlsShared {
    kernel: Mutex<Kernel>,
    /// The peer asked us to update our sending key (set by the opener, done by the sealer).
    update_requested: AtomicBool,
}

/// A record key from rustls's extracted secrets.
pub(crate) fn traffic_key(
    seq: u64,
    secrets: ConnectionTrafficSecrets,
) -> Result<TrafficKey, SecureError> {
    let (cipher, key, iv) = match secrets {
        ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (RecordCipher::Aes128Gcm, key, iv),
        ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (RecordCipher::Aes256Gcm, key, iv),
        ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
            (RecordCipher::ChaCha20Poly1305, key, iv)
        }
        _ => return Err(SecureError::KeyUpdate("unsupported cipher suite".into())),
    };
    let iv: [u8; 12] = iv
        .as_ref()
        .try_into()
        .map_err(|_| SecureError::KeyUpdate("IV is not 12 bytes".into()))?;
    Ok(TrafficKey {
        cipher,
        key: key.as_ref().to_vec(),
        iv,
        seq,
    })
}

/// The two halves of a TLS session from its keys and rustls's remaining state.
pub(crate) fn tls_pair(
    tx: &TrafficKey,
    rx: &TrafficKey,
    kernel: Kernel,
) -> Result<(Sealer, Opener), SecureError> {
    let shared = Arc::new(TlsShared {
        kernel: Mutex::new(kernel),
        update_requested: AtomicBool::new(false),
    });
    Ok((
        Sealer::Tls {
            sealer: RecordSealer::new(tx)?,
            shared: shared.clone(),
        },
        Opener::Tls {
            opener: RecordOpener::new(rx)?,
            shared,
        },
    ))
}

/// The sending half: plaintext in, Noise frames or TLS records out.
#[allow(clippy::large_enum_variant)] // as `Opener`
pub(crate) enum Sealer {
    /// Noise.
    Noise(NoiseSender),
    /// TLS 1.3 records.
    Tls {
        /// The record protection.
        sealer: RecordSealer,
        /// The key-update state shared with the opener.
        shared: Arc<TlsShared>,
    },
}

impl Sealer {
    /// Bytes sealing `len` bytes of plaintext writes.
    pub(crate) fn sealed_len(&self, len: usize) -> usize {
        match self {
            Sealer::Noise(_) => noise::encrypted_len(len),
            Sealer::Tls { .. } => record::sealed_len(len),
        }
    }

    /// Seals `first` then `second` to the front of `out` (at least
    /// [`Sealer::sealed_len`] bytes); the bytes written.
    pub(crate) fn seal_pair_into(
        &mut self,
        first: &[u8],
        second: &[u8],
        out: &mut [u8],
    ) -> Result<usize, SecureError> {
        Ok(match self {
            Sealer::Noise(s) => s.encrypt_pair_into(first, second, out)?,
            Sealer::Tls { sealer, .. } => sealer.seal_pair_into(first, second, out)?,
        })
    }

    /// Appends `plain`, sealed, to `out`.
    pub(crate) fn seal(&mut self, plain: &[u8], out: &mut BytesMut) -> Result<(), SecureError> {
        let start = out.len();
        out.resize(start + self.sealed_len(plain.len()), 0);
        match self.seal_pair_into(plain, &[], &mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                Ok(())
            }
            Err(e) => {
                out.truncate(start);
                Err(e)
            }
        }
    }

    /// Bytes of control records due before the next data (a TLS `KeyUpdate`), 0 if none.
    pub(crate) fn control_len(&self) -> usize {
        match self {
            Sealer::Tls { sealer, shared }
                if sealer.wants_key_update() || shared.update_requested.load(Ordering::Relaxed) =>
            {
                KEY_UPDATE_RECORD_LEN
            }
            _ => 0,
        }
    }

    /// Seals the control records [`Sealer::control_len`] announced into `out`: our
    /// `KeyUpdate` under the old key, then switches to the next one.
    pub(crate) fn seal_control_into(&mut self, out: &mut [u8]) -> Result<usize, SecureError> {
        let Sealer::Tls { sealer, shared } = self else {
            return Ok(0);
        };
        let n = sealer.seal_key_update_into(out)?;
        let next = shared
            .kernel
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .update(true)?;
        sealer.rekey(&next)?;
        shared.update_requested.store(false, Ordering::Relaxed);
        tracing::debug!("TLS sending key updated");
        Ok(n)
    }

    /// The cipher, in the terms [`ConnectionInfo::cipher`](super::ConnectionInfo) uses.
    pub(crate) fn cipher(&self) -> TransportCipher {
        match self {
            Sealer::Noise(s) => s.cipher(),
            Sealer::Tls { sealer, .. } if sealer.cipher().is_aes_gcm() => TransportCipher::AesGcm,
            Sealer::Tls { .. } => TransportCipher::ChaChaPoly,
        }
    }
}

/// The receiving half: Noise frames or TLS records in, plaintext out.
// One per connection, owned by its driver: the Noise variant's inline key schedule costs
// nothing worth a box on the path every frame takes.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Opener {
    /// Noise.
    Noise(NoiseReceiver),
    /// TLS 1.3 records.
    Tls {
        /// The record protection.
        opener: RecordOpener,
        /// The key-update state shared with the sealer.
        shared: Arc<TlsShared>,
    },
}

impl Opener {
    /// Splits the next complete frame or record off `input` and returns its plaintext
    /// (possibly empty); `Ok(None)` when it is not complete yet. Call until `Ok(None)`.
    pub(crate) fn open(&mut self, input: &mut BytesMut) -> Result<Option<BytesMut>, SecureError> {
        match self {
            Opener::Noise(r) => Ok(r.decrypt_frame(input)?),
            Opener::Tls { opener, shared } => loop {
                match opener.open(input)? {
                    None => return Ok(None),
                    Some(Opened::Data(data)) => return Ok(Some(data)),
                    Some(Opened::Skipped) => {}
                    Some(Opened::CloseNotify) => return Err(SecureError::CloseNotify),
                    Some(Opened::KeyUpdate { update_requested }) => {
                        let next = shared
                            .kernel
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .update(false)?;
                        opener.rekey(&next)?;
                        if update_requested {
                            shared.update_requested.store(true, Ordering::Relaxed);
                        }
                        tracing::debug!(update_requested, "TLS receiving key updated");
                    }
                }
            },
        }
    }
}
