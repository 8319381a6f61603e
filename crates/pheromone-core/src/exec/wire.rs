//! Encoding and decoding of exec frames: `uvarint(length) ‖ body`, bodies as in
//! `docs/protocols/exec.md`. Lengths are checked against their limits before anything is
//! buffered or allocated for them; nothing here does IO.

use super::{
    ExecWireError, Exit, ExitStatus, FailureKind, Reply, Request, MAX_ARGS, MAX_ARG_LEN, MAX_CHUNK,
    MAX_MESSAGE_LEN, MAX_PROGRAM_LEN, MAX_REPLY_LEN, MAX_REQUEST_LEN, MAX_STDIN,
};
use crate::varint;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::time::Duration;

/// Request flag: run through `sh -c`.
const FLAG_SHELL: u8 = 0x01;
/// Request flag: a stdin field follows the arguments.
const FLAG_STDIN: u8 = 0x02;
/// Exit flag: output past the cap was dropped.
const FLAG_TRUNCATED: u8 = 0x01;

const TAG_STDOUT: u8 = 1;
const TAG_STDERR: u8 = 2;
const TAG_EXIT: u8 = 3;
const TAG_ERROR: u8 = 4;

const STATUS_CODE: u8 = 0;
const STATUS_SIGNAL: u8 = 1;
const STATUS_TIMEOUT: u8 = 2;

/// Largest value a spec-conforming varint carries (63 bits); larger numbers are clamped.
const MAX_VARINT: u64 = (1 << 63) - 1;

fn put_varint(value: u64, out: &mut BytesMut) {
    let mut tmp = Vec::with_capacity(varint::MAX_LEN);
    varint::encode(value, &mut tmp);
    out.put_slice(&tmp);
}

fn zigzag(v: i32) -> u64 {
    u64::from(((v << 1) ^ (v >> 31)) as u32)
}

fn unzigzag(v: u32) -> i32 {
    ((v >> 1) as i32) ^ -((v & 1) as i32)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis())
        .unwrap_or(u64::MAX)
        .min(MAX_VARINT)
}

/// Splits one frame body off the front of `buf`: `Ok(None)` until it is all there.
fn take_frame(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, ExecWireError> {
    let Some((len, used)) = varint::decode(buf)? else {
        return Ok(None);
    };
    if len > max as u64 {
        return Err(ExecWireError::FrameTooLarge { len, max });
    }
    let len = len as usize;
    if buf.len() < used + len {
        return Ok(None);
    }
    buf.advance(used);
    Ok(Some(buf.split_to(len).freeze()))
}

/// A cursor over one complete frame body.
struct Body(Bytes);

impl Body {
    fn u8(&mut self, field: &'static str) -> Result<u8, ExecWireError> {
        if self.0.is_empty() {
            return Err(ExecWireError::Truncated { field });
        }
        Ok(self.0.get_u8())
    }

    fn varint(&mut self, field: &'static str) -> Result<u64, ExecWireError> {
        match varint::decode(&self.0)? {
            Some((value, used)) => {
                self.0.advance(used);
                Ok(value)
            }
            None => Err(ExecWireError::Truncated { field }),
        }
    }

    fn bytes(&mut self, field: &'static str, max: usize) -> Result<Bytes, ExecWireError> {
        let len = self.varint(field)?;
        if len > max as u64 {
            return Err(ExecWireError::FieldTooLarge { field, len, max });
        }
        let len = len as usize;
        if self.0.len() < len {
            return Err(ExecWireError::Truncated { field });
        }
        Ok(self.0.split_to(len))
    }

    fn text(&mut self, field: &'static str, max: usize) -> Result<String, ExecWireError> {
        let bytes = self.bytes(field, max)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| ExecWireError::NotUtf8 { field })
    }

    fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.0)
    }

    fn finish(self) -> Result<(), ExecWireError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ExecWireError::TrailingBytes {
                extra: self.0.len(),
            })
        }
    }
}

fn check_field(field: &'static str, len: usize, max: usize) -> Result<(), ExecWireError> {
    if len > max {
        return Err(ExecWireError::FieldTooLarge {
            field,
            len: len as u64,
            max,
        });
    }
    Ok(())
}

fn field_len(len: usize) -> usize {
    varint::encoded_len(len as u64) + len
}

impl Request {
    fn body_len(&self) -> usize {
        1 + varint::encoded_len(millis(self.timeout))
            + varint::encoded_len(self.max_output.min(MAX_VARINT))
            + field_len(self.program.len())
            + varint::encoded_len(self.args.len() as u64)
            + self.args.iter().map(|a| field_len(a.len())).sum::<usize>()
            + self.stdin.as_ref().map_or(0, |s| field_len(s.len()))
    }

    /// Bytes [`Request::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        let body = self.body_len();
        varint::encoded_len(body as u64) + body
    }

    /// Checks the request against the limits a receiver enforces.
    pub fn validate(&self) -> Result<(), ExecWireError> {
        if self.program.is_empty() {
            return Err(ExecWireError::EmptyProgram);
        }
        check_field("program", self.program.len(), MAX_PROGRAM_LEN)?;
        if self.args.len() > MAX_ARGS {
            return Err(ExecWireError::TooManyArgs {
                count: self.args.len() as u64,
                max: MAX_ARGS,
            });
        }
        for arg in &self.args {
            check_field("argument", arg.len(), MAX_ARG_LEN)?;
        }
        if let Some(stdin) = &self.stdin {
            check_field("stdin", stdin.len(), MAX_STDIN)?;
        }
        let body = self.body_len();
        if body > MAX_REQUEST_LEN {
            return Err(ExecWireError::FrameTooLarge {
                len: body as u64,
                max: MAX_REQUEST_LEN,
            });
        }
        Ok(())
    }

    /// Appends the request frame to `out`; fails (writing nothing) if it breaks a limit
    /// the receiver would refuse. Timeouts are carried in whole milliseconds.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), ExecWireError> {
        self.validate()?;
        let body = self.body_len();
        out.reserve(varint::encoded_len(body as u64) + body);
        put_varint(body as u64, out);
        let mut flags = 0;
        if self.shell {
            flags |= FLAG_SHELL;
        }
        if self.stdin.is_some() {
            flags |= FLAG_STDIN;
        }
        out.put_u8(flags);
        put_varint(millis(self.timeout), out);
        put_varint(self.max_output.min(MAX_VARINT), out);
        put_varint(self.program.len() as u64, out);
        out.put_slice(self.program.as_bytes());
        put_varint(self.args.len() as u64, out);
        for arg in &self.args {
            put_varint(arg.len() as u64, out);
            out.put_slice(arg.as_bytes());
        }
        if let Some(stdin) = &self.stdin {
            put_varint(stdin.len() as u64, out);
            out.put_slice(stdin);
        }
        Ok(())
    }

    /// Takes one request frame off the front of `buf`; `Ok(None)` while it is incomplete.
    pub fn decode(buf: &mut BytesMut) -> Result<Option<Self>, ExecWireError> {
        let Some(body) = take_frame(buf, MAX_REQUEST_LEN)? else {
            return Ok(None);
        };
        let mut body = Body(body);
        let flags = body.u8("flags")?;
        if flags & !(FLAG_SHELL | FLAG_STDIN) != 0 {
            return Err(ExecWireError::UnknownFlags(flags));
        }
        let timeout = Duration::from_millis(body.varint("timeout")?);
        let max_output = body.varint("output cap")?;
        let program = body.text("program", MAX_PROGRAM_LEN)?;
        if program.is_empty() {
            return Err(ExecWireError::EmptyProgram);
        }
        let count = body.varint("argument count")?;
        if count > MAX_ARGS as u64 {
            return Err(ExecWireError::TooManyArgs {
                count,
                max: MAX_ARGS,
            });
        }
        // Every argument takes at least its length byte, so a count the body cannot hold
        // is refused before the vector is sized for it.
        if count > body.0.len() as u64 {
            return Err(ExecWireError::Truncated { field: "argument" });
        }
        let mut args = Vec::with_capacity(count as usize);
        for _ in 0..count {
            args.push(body.text("argument", MAX_ARG_LEN)?);
        }
        let stdin = if flags & FLAG_STDIN != 0 {
            Some(body.bytes("stdin", MAX_STDIN)?)
        } else {
            None
        };
        body.finish()?;
        Ok(Some(Request {
            program,
            args,
            shell: flags & FLAG_SHELL != 0,
            stdin,
            timeout,
            max_output,
        }))
    }
}

/// Cuts `message` to at most [`MAX_MESSAGE_LEN`] bytes on a character boundary.
fn cut_message(message: &str) -> &str {
    if message.len() <= MAX_MESSAGE_LEN {
        return message;
    }
    let mut end = MAX_MESSAGE_LEN;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

impl Reply {
    fn body_len(&self) -> usize {
        1 + match self {
            Reply::Stdout(data) | Reply::Stderr(data) => data.len(),
            Reply::Exit(exit) => {
                1 + 1
                    + match exit.status {
                        ExitStatus::Code(c) => varint::encoded_len(zigzag(c)),
                        ExitStatus::Signal(s) => varint::encoded_len(u64::from(s.unsigned_abs())),
                        ExitStatus::KilledByTimeout => 0,
                    }
            }
            Reply::Error { message, .. } => 1 + cut_message(message).len(),
        }
    }

    /// Bytes [`Reply::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        let body = self.body_len();
        varint::encoded_len(body as u64) + body
    }

    /// Appends the reply frame to `out`. Fails (writing nothing) for an empty output chunk,
    /// one over [`MAX_CHUNK`], or a negative signal number; error messages over
    /// [`MAX_MESSAGE_LEN`] are cut.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), ExecWireError> {
        match self {
            Reply::Stdout(data) | Reply::Stderr(data) => {
                if data.is_empty() {
                    return Err(ExecWireError::EmptyChunk);
                }
                check_field("output chunk", data.len(), MAX_CHUNK)?;
            }
            Reply::Exit(Exit {
                status: ExitStatus::Signal(s),
                ..
            }) if *s < 0 => return Err(ExecWireError::OutOfRange { field: "signal" }),
            _ => {}
        }
        let body = self.body_len();
        out.reserve(varint::encoded_len(body as u64) + body);
        put_varint(body as u64, out);
        match self {
            Reply::Stdout(data) => {
                out.put_u8(TAG_STDOUT);
                out.put_slice(data);
            }
            Reply::Stderr(data) => {
                out.put_u8(TAG_STDERR);
                out.put_slice(data);
            }
            Reply::Exit(exit) => {
                out.put_u8(TAG_EXIT);
                match exit.status {
                    ExitStatus::Code(c) => {
                        out.put_u8(STATUS_CODE);
                        put_varint(zigzag(c), out);
                    }
                    ExitStatus::Signal(s) => {
                        out.put_u8(STATUS_SIGNAL);
                        put_varint(u64::from(s.unsigned_abs()), out);
                    }
                    ExitStatus::KilledByTimeout => out.put_u8(STATUS_TIMEOUT),
                }
                out.put_u8(if exit.output_truncated {
                    FLAG_TRUNCATED
                } else {
                    0
                });
            }
            Reply::Error { kind, message } => {
                out.put_u8(TAG_ERROR);
                out.put_u8(kind.to_byte());
                out.put_slice(cut_message(message).as_bytes());
            }
        }
        Ok(())
    }

    /// Takes one reply frame off the front of `buf`; `Ok(None)` while it is incomplete.
    pub fn decode(buf: &mut BytesMut) -> Result<Option<Self>, ExecWireError> {
        let Some(body) = take_frame(buf, MAX_REPLY_LEN)? else {
            return Ok(None);
        };
        let mut body = Body(body);
        let reply = match body.u8("tag")? {
            tag @ (TAG_STDOUT | TAG_STDERR) => {
                let data = body.rest();
                if data.is_empty() {
                    return Err(ExecWireError::EmptyChunk);
                }
                if tag == TAG_STDOUT {
                    Reply::Stdout(data)
                } else {
                    Reply::Stderr(data)
                }
            }
            TAG_EXIT => {
                let status = match body.u8("status")? {
                    STATUS_CODE => {
                        let v = body.varint("exit code")?;
                        let v = u32::try_from(v)
                            .map_err(|_| ExecWireError::OutOfRange { field: "exit code" })?;
                        ExitStatus::Code(unzigzag(v))
                    }
                    STATUS_SIGNAL => {
                        let v = body.varint("signal")?;
                        let v = i32::try_from(v)
                            .map_err(|_| ExecWireError::OutOfRange { field: "signal" })?;
                        ExitStatus::Signal(v)
                    }
                    STATUS_TIMEOUT => ExitStatus::KilledByTimeout,
                    other => return Err(ExecWireError::UnknownStatus(other)),
                };
                let flags = body.u8("exit flags")?;
                if flags & !FLAG_TRUNCATED != 0 {
                    return Err(ExecWireError::UnknownFlags(flags));
                }
                body.finish()?;
                Reply::Exit(Exit {
                    status,
                    output_truncated: flags & FLAG_TRUNCATED != 0,
                })
            }
            TAG_ERROR => {
                let kind = FailureKind::from_byte(body.u8("error kind")?);
                let message = body.rest();
                check_field("error message", message.len(), MAX_MESSAGE_LEN)?;
                let message =
                    String::from_utf8(message.to_vec()).map_err(|_| ExecWireError::NotUtf8 {
                        field: "error message",
                    })?;
                Reply::Error { kind, message }
            }
            other => return Err(ExecWireError::UnknownTag(other)),
        };
        Ok(Some(reply))
    }
}
