//! The wire format of fleet exec, `/pheromone/exec/1.0.0`: one [`Request`] from the
//! caller, then a sequence of [`Reply`] frames from the peer running the command — output
//! chunks as they come, ended by exactly one [`Reply::Exit`] or [`Reply::Error`].
//!
//! Every frame is `uvarint(length) ‖ body`; the decoders check each length against its
//! limit ([`MAX_REQUEST_LEN`], [`MAX_REPLY_LEN`] and the per-field limits) before buffering
//! anything for it, and "not enough bytes yet" is `Ok(None)`. The format is specified in
//! `docs/protocols/exec.md`.
//!
//! This module only encodes and decodes. It runs nothing, decides nothing about who may
//! run what (the IO side in `pheromone::exec` does), and keeps no state between frames.

mod error;
mod wire;

#[cfg(test)]
mod tests;

pub use error::ExecWireError;

use bytes::Bytes;
use std::time::Duration;

/// The protocol name exec streams are negotiated for.
pub const PROTOCOL: &str = "/pheromone/exec/1.0.0";

/// Longest program name (or shell script), in bytes.
pub const MAX_PROGRAM_LEN: usize = 16 * 1024;
/// Most arguments in one request.
pub const MAX_ARGS: usize = 4096;
/// Longest single argument, in bytes (Linux's own limit on one argument string).
pub const MAX_ARG_LEN: usize = 128 * 1024;
/// Most stdin bytes a request may carry.
pub const MAX_STDIN: usize = 1024 * 1024;
/// Largest request frame body, in bytes: stdin plus room for the program and arguments.
pub const MAX_REQUEST_LEN: usize = MAX_STDIN + 1024 * 1024;
/// Largest output chunk in one reply frame, in bytes.
pub const MAX_CHUNK: usize = 64 * 1024;
/// Longest error message, in bytes; longer messages are cut when encoded.
pub const MAX_MESSAGE_LEN: usize = 1024;
/// Largest reply frame body, in bytes: a full chunk and its tag.
pub const MAX_REPLY_LEN: usize = MAX_CHUNK + 1;

/// What to run on the remote peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The program to run (looked up in the remote's `PATH`), or with [`Request::shell`]
    /// the start of the shell command line.
    pub program: String,
    /// Its arguments (with `shell`, appended to the command line, separated by spaces).
    pub args: Vec<String>,
    /// Run `sh -c "program args…"` instead of the program itself; refused unless the
    /// remote operator allowed shell commands.
    pub shell: bool,
    /// Bytes written to the program's stdin, which is then closed; `None` gives it an
    /// empty stdin. At most [`MAX_STDIN`] bytes.
    pub stdin: Option<Bytes>,
    /// How long the program may run before it is killed; zero asks for the remote's
    /// maximum, and anything above the remote's maximum is lowered to it. Carried in
    /// whole milliseconds.
    pub timeout: Duration,
    /// Most stdout + stderr bytes to send back; the rest is dropped and the exit reports
    /// the truncation. Zero asks for the remote's maximum, which also caps larger values.
    pub max_output: u64,
}

impl Request {
    /// A request to run `program` with `args`, no shell, no stdin, remote defaults for the
    /// timeout and the output cap.
    pub fn new(
        program: impl Into<String>,
        args: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            shell: false,
            stdin: None,
            timeout: Duration::ZERO,
            max_output: 0,
        }
    }

    /// The command line as one text, arguments separated by spaces (what `sh -c` gets).
    pub fn command_line(&self) -> String {
        let mut line = self.program.clone();
        for arg in &self.args {
            line.push(' ');
            line.push_str(arg);
        }
        line
    }
}

/// How a program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// A signal ended it (Unix), and not our timeout.
    Signal(i32),
    /// It outlived its timeout and was killed (with its process group).
    KilledByTimeout,
}

impl ExitStatus {
    /// Whether the program exited with code 0.
    pub fn success(&self) -> bool {
        matches!(self, ExitStatus::Code(0))
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit {c}"),
            ExitStatus::Signal(s) => write!(f, "signal {s}"),
            ExitStatus::KilledByTimeout => f.write_str("killed by timeout"),
        }
    }
}

/// The last frame of a run that started: how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Exit {
    /// How the program ended.
    pub status: ExitStatus,
    /// Whether output past the cap was dropped.
    pub output_truncated: bool,
}

/// Why the remote did not run (or could not finish running) a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureKind {
    /// The request was malformed or over a limit.
    BadRequest,
    /// The program was not found.
    NotFound,
    /// The program could not be executed (permissions).
    PermissionDenied,
    /// The request asked for a shell and the remote operator does not allow shell
    /// commands.
    ShellNotAllowed,
    /// The remote already runs its maximum number of commands; try again later.
    Busy,
    /// Starting the program failed for another reason.
    SpawnFailed,
    /// Something failed on the remote while the program ran.
    Internal,
    /// The remote operator allows only certain programs, and this is not one of them.
    ProgramNotAllowed,
    /// A kind this version does not know (a newer peer); the byte as sent.
    Other(u8),
}

impl FailureKind {
    fn to_byte(self) -> u8 {
        match self {
            FailureKind::BadRequest => 1,
            FailureKind::NotFound => 2,
            FailureKind::PermissionDenied => 3,
            FailureKind::ShellNotAllowed => 4,
            FailureKind::Busy => 5,
            FailureKind::SpawnFailed => 6,
            FailureKind::Internal => 7,
            FailureKind::ProgramNotAllowed => 8,
            FailureKind::Other(b) => b,
        }
    }

    fn from_byte(b: u8) -> Self {
        match b {
            1 => FailureKind::BadRequest,
            2 => FailureKind::NotFound,
            3 => FailureKind::PermissionDenied,
            4 => FailureKind::ShellNotAllowed,
            5 => FailureKind::Busy,
            6 => FailureKind::SpawnFailed,
            7 => FailureKind::Internal,
            8 => FailureKind::ProgramNotAllowed,
            other => FailureKind::Other(other),
        }
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FailureKind::BadRequest => f.write_str("bad request"),
            FailureKind::NotFound => f.write_str("program not found"),
            FailureKind::PermissionDenied => f.write_str("permission denied"),
            FailureKind::ShellNotAllowed => f.write_str("shell not allowed"),
            FailureKind::Busy => f.write_str("busy"),
            FailureKind::SpawnFailed => f.write_str("spawn failed"),
            FailureKind::Internal => f.write_str("internal error"),
            FailureKind::ProgramNotAllowed => f.write_str("program not allowed"),
            FailureKind::Other(b) => write!(f, "error kind {b}"),
        }
    }
}

/// One frame from the peer running the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A chunk of the program's stdout (never empty, at most [`MAX_CHUNK`] bytes).
    Stdout(Bytes),
    /// A chunk of the program's stderr (never empty, at most [`MAX_CHUNK`] bytes).
    Stderr(Bytes),
    /// The program ended; the last frame.
    Exit(Exit),
    /// The request was not run, or running it failed; the last frame.
    Error {
        /// What kind of failure.
        kind: FailureKind,
        /// A human-readable explanation, at most [`MAX_MESSAGE_LEN`] bytes.
        message: String,
    },
}

impl Reply {
    /// Whether this frame ends the reply.
    pub fn is_final(&self) -> bool {
        matches!(self, Reply::Exit(_) | Reply::Error { .. })
    }
}

/// Fuzz target bodies for the exec decoders.
#[doc(hidden)]
pub mod fuzzing {
    use super::{Reply, Request};
    use bytes::BytesMut;

    /// Decodes `data` as a request and as a sequence of replies; whatever decodes must
    /// re-encode to bytes that decode to the same value.
    pub fn fuzz_frame(data: &[u8]) {
        let mut buf = BytesMut::from(data);
        if let Ok(Some(request)) = Request::decode(&mut buf) {
            let mut out = BytesMut::new();
            request
                .encode(&mut out)
                .expect("a decoded request re-encodes");
            assert_eq!(out.len(), request.encoded_len());
            let back = Request::decode(&mut out).expect("re-encoded request decodes");
            assert_eq!(back, Some(request));
        }
        let mut buf = BytesMut::from(data);
        while let Ok(Some(reply)) = Reply::decode(&mut buf) {
            let mut out = BytesMut::new();
            reply.encode(&mut out).expect("a decoded reply re-encodes");
            assert_eq!(out.len(), reply.encoded_len());
            let back = Reply::decode(&mut out).expect("re-encoded reply decodes");
            assert_eq!(back, Some(reply));
        }
    }
}
