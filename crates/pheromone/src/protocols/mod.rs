//! Built-in protocols spoken on streams: ping, identify and perf.
//!
//! Each works on any `AsyncRead + AsyncWrite` stream whose protocol has already been
//! negotiated; registering them with an endpoint is the endpoint's business.

pub mod identify;
pub mod perf;
pub mod ping;
