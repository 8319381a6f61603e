//! The exec server: one stream, one request, one process. Reads the request (bounded in
//! size and time), checks the shell rule and the concurrency cap, starts the program in
//! its own process group, streams its output back up to the cap, kills the group on
//! timeout, on a vanished caller or when the service closes, and ends with the status.
//!
//! Access was decided during negotiation; a stream that reaches this module comes from an
//! allowed peer. Nothing here blocks a thread or holds a lock across an await.

use super::policy::{ProgramList, Refusal};
use super::{ExecConfig, ExecStats};
use crate::connection::Stream;
use crate::node::Peer;
use bytes::{Bytes, BytesMut};
use pheromone_core::exec::{Exit, ExitStatus, FailureKind, Reply, Request, MAX_CHUNK};
use pheromone_core::identity::PeerId;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a caller has to send its request once the stream is open.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// After the program exits, how long its output pipes may stay open (held by a child it
/// left behind) before we stop reading them.
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// Read size for the program's output; at most one reply frame's chunk.
const READ_CHUNK: usize = 32 * 1024;
const _: () = assert!(READ_CHUNK <= MAX_CHUNK);

/// What the handler and the service handle share.
pub(super) struct ServerShared {
    config: Mutex<ExecConfig>,
    /// The program allow-list, resolved when the service started.
    programs: Option<ProgramList>,
    slots: Arc<Semaphore>,
    cancel: CancellationToken,
    tasks: TaskTracker,
    running: AtomicU64,
    started: AtomicU64,
    rejected: AtomicU64,
    timed_out: AtomicU64,
}

impl ServerShared {
    pub(super) fn new(config: ExecConfig, programs: Option<ProgramList>) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(config.max_concurrent)),
            config: Mutex::new(config),
            programs,
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
            running: AtomicU64::new(0),
            started: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
        }
    }

    pub(super) fn config(&self) -> ExecConfig {
        self.config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(super) fn set_allow(&self, allow: Vec<PeerId>) {
        self.config.lock().unwrap_or_else(|e| e.into_inner()).allow = allow;
    }

    pub(super) fn stats(&self) -> ExecStats {
        ExecStats {
            running: self.running.load(Ordering::Relaxed),
            started: self.started.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            timed_out: self.timed_out.load(Ordering::Relaxed),
        }
    }

    pub(super) fn cancel(&self) {
        self.cancel.cancel();
    }

    pub(super) async fn wait(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }

    async fn reject(&self, stream: &mut Stream, peer: &PeerId, kind: FailureKind, message: &str) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        tracing::info!(%peer, %kind, message, "exec request rejected");
        let _ = send(
            stream,
            &Reply::Error {
                kind,
                message: message.to_owned(),
            },
        )
        .await;
        let _ = stream.shutdown().await;
    }
}

async fn send(stream: &mut Stream, reply: &Reply) -> std::io::Result<()> {
    let mut out = BytesMut::with_capacity(reply.encoded_len());
    reply
        .encode(&mut out)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    stream.write_all(&out).await
}

/// Reads the request frame; `Err` carries the message for a malformed one, `Ok(None)` a
/// stream that ended (or failed) first.
async fn read_request(stream: &mut Stream) -> Result<Option<Request>, String> {
    let mut buf = BytesMut::new();
    loop {
        match Request::decode(&mut buf) {
            Ok(Some(request)) => return Ok(Some(request)),
            Ok(None) => {}
            Err(e) => return Err(format!("malformed request: {e}")),
        }
        match stream.read_chunk().await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
            Ok(None) | Err(_) => return Ok(None),
        }
    }
}

/// Serves one exec stream from an allowed peer.
pub(super) async fn serve_stream(shared: &ServerShared, peer: Peer, mut stream: Stream) {
    let _task = shared.tasks.token();
    let peer_id = peer.id();
    let request = match tokio::time::timeout(REQUEST_TIMEOUT, read_request(&mut stream)).await {
        Ok(Ok(Some(request))) => request,
        Ok(Ok(None)) => return,
        Ok(Err(message)) => {
            shared
                .reject(&mut stream, &peer_id, FailureKind::BadRequest, &message)
                .await;
            return;
        }
        Err(_) => {
            tracing::debug!(peer = %peer_id, "no exec request within {REQUEST_TIMEOUT:?}");
            return;
        }
    };
    let config = shared.config();
    if request.shell && !config.allow_shell {
        let message = "this node does not allow shell commands (--allow-exec-shell)";
        shared
            .reject(&mut stream, &peer_id, FailureKind::ShellNotAllowed, message)
            .await;
        return;
    }
    let program = match &shared.programs {
        None => PathBuf::from(&request.program),
        Some(list) => match list.check(&request.program, &config.env) {
            Ok(path) => path,
            Err(refusal) => {
                let (kind, message) = match refusal {
                    Refusal::NotFound(p) => (FailureKind::NotFound, format!("{p:?} not found")),
                    Refusal::NotAllowed(m) => (FailureKind::ProgramNotAllowed, m),
                };
                shared.reject(&mut stream, &peer_id, kind, &message).await;
                return;
            }
        },
    };
    let Ok(_slot) = shared.slots.clone().try_acquire_owned() else {
        let message = format!("already running {} commands", config.max_concurrent);
        shared
            .reject(&mut stream, &peer_id, FailureKind::Busy, &message)
            .await;
        return;
    };
    let timeout = limit(request.timeout, config.max_timeout);
    let cap = if request.max_output == 0 {
        config.max_output
    } else {
        request.max_output.min(config.max_output)
    };
    tracing::info!(
        peer = %peer,
        program = %request.program,
        args = ?request.args,
        shell = request.shell,
        ?timeout,
        cap,
        "exec"
    );
    let mut child = match spawn(&request, &program, &config) {
        Ok(child) => child,
        Err(e) => {
            let kind = match e.kind() {
                std::io::ErrorKind::NotFound => FailureKind::NotFound,
                std::io::ErrorKind::PermissionDenied => FailureKind::PermissionDenied,
                _ => FailureKind::SpawnFailed,
            };
            let message = format!("cannot run {:?}: {e}", request.program);
            shared.reject(&mut stream, &peer_id, kind, &message).await;
            return;
        }
    };
    shared.started.fetch_add(1, Ordering::Relaxed);
    shared.running.fetch_add(1, Ordering::Relaxed);
    let run = Run {
        stream: &mut stream,
        cap,
        sent: 0,
        truncated: false,
    };
    let outcome = run
        .drive(
            &mut child,
            request.stdin,
            timeout,
            &shared.cancel,
            &shared.tasks,
        )
        .await;
    shared.running.fetch_sub(1, Ordering::Relaxed);
    match outcome {
        Ok(exit) => {
            if exit.status == ExitStatus::KilledByTimeout {
                shared.timed_out.fetch_add(1, Ordering::Relaxed);
            }
            tracing::info!(peer = %peer_id, program = %request.program, status = %exit.status, truncated = exit.output_truncated, "exec done");
            if send(&mut stream, &Reply::Exit(exit)).await.is_ok() {
                let _ = stream.shutdown().await;
            }
        }
        Err(Abort::CallerGone(e)) => {
            tracing::info!(peer = %peer_id, program = %request.program, error = %e, "exec caller went away; command killed");
        }
        Err(Abort::Closed) => {
            let message = "the exec service was stopped; command killed";
            let reply = Reply::Error {
                kind: FailureKind::Internal,
                message: message.into(),
            };
            let _ = send(&mut stream, &reply).await;
            let _ = stream.shutdown().await;
        }
    }
}

/// The effective timeout: the request's, at most the maximum; zero means the maximum.
fn limit(asked: Duration, max: Duration) -> Duration {
    if asked.is_zero() {
        max
    } else {
        asked.min(max)
    }
}

/// Starts `program` (the request's, resolved against the allow-list if there is one) with
/// the request's arguments, or `sh -c` for a shell request, in the configured environment.
fn spawn(request: &Request, program: &Path, config: &ExecConfig) -> std::io::Result<Child> {
    let mut cmd = if request.shell {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(request.command_line());
        cmd
    } else {
        let mut cmd = Command::new(program);
        cmd.args(&request.args);
        cmd
    };
    if let Some(vars) = config.env.vars() {
        // With PATH set here, a bare program name is looked up in the command's PATH.
        cmd.env_clear().envs(vars);
    }
    cmd.stdin(if request.stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    // Its own process group, so a timeout kills whatever it started too.
    #[cfg(unix)]
    cmd.process_group(0);
    cmd.spawn()
}

/// Kills the process group led by `pid` unless disarmed (the program was reaped).
struct GroupKill(Option<u32>);

impl GroupKill {
    fn kill(&mut self) {
        if let Some(pid) = self.0 {
            kill_group(pid);
        }
    }
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(unix)]
fn kill_group(pid: u32) {
    let Ok(pgid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) takes plain integers and touches no memory of ours. The group is
    // the one the unreaped child leads (it was started with process_group(0)), so its id
    // cannot have been reused yet.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

#[cfg(not(unix))]
fn kill_group(_pid: u32) {}

/// Why a run ended without an exit status to send.
enum Abort {
    /// Writing to the caller failed (it reset the stream or the connection died).
    CallerGone(std::io::Error),
    /// The service was closed.
    Closed,
}

/// One running command's output accounting.
struct Run<'a> {
    stream: &'a mut Stream,
    cap: u64,
    sent: u64,
    truncated: bool,
}

impl Run<'_> {
    /// Sends what fits under the cap of `data`, as stdout or stderr.
    async fn forward(&mut self, stdout: bool, data: &[u8]) -> Result<(), Abort> {
        let room = self.cap.saturating_sub(self.sent);
        let take = usize::try_from(room).map_or(data.len(), |r| r.min(data.len()));
        if take < data.len() {
            self.truncated = true;
        }
        if take == 0 {
            return Ok(());
        }
        let chunk = Bytes::copy_from_slice(&data[..take]);
        self.sent += take as u64;
        let reply = if stdout {
            Reply::Stdout(chunk)
        } else {
            Reply::Stderr(chunk)
        };
        send(self.stream, &reply).await.map_err(Abort::CallerGone)
    }

    async fn drive(
        mut self,
        child: &mut Child,
        stdin: Option<Bytes>,
        timeout: Duration,
        cancel: &CancellationToken,
        tasks: &TaskTracker,
    ) -> Result<Exit, Abort> {
        let mut group = GroupKill(child.id());
        if let (Some(mut pipe), Some(data)) = (child.stdin.take(), stdin) {
            // A program that never reads its stdin must not stall the output; the pipe
            // closes (and this task ends) when the program exits or is killed.
            tasks.spawn(async move {
                let _ = pipe.write_all(&data).await;
            });
        }
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let mut out_buf = vec![0u8; READ_CHUNK];
        let mut err_buf = vec![0u8; READ_CHUNK];
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let drain = tokio::time::sleep(Duration::MAX);
        tokio::pin!(drain);
        let mut status: Option<ExitStatus> = None;
        let mut timed_out = false;
        let mut caller_open = true;
        let mut probe = [0u8; 1];
        loop {
            if status.is_some() && stdout.is_none() && stderr.is_none() {
                break;
            }
            tokio::select! {
                n = read_some(&mut stdout, &mut out_buf), if stdout.is_some() => match n {
                    Some(n) => self.forward(true, &out_buf[..n]).await?,
                    None => stdout = None,
                },
                n = read_some(&mut stderr, &mut err_buf), if stderr.is_some() => match n {
                    Some(n) => self.forward(false, &err_buf[..n]).await?,
                    None => stderr = None,
                },
                exited = child.wait(), if status.is_none() => {
                    // Waiting failed: the child is gone from our view, its status unknown.
                    status = Some(exited.map_or(ExitStatus::Code(-1), convert));
                    if !timed_out {
                        group.0 = None;
                    }
                    drain.as_mut().reset(tokio::time::Instant::now() + DRAIN_GRACE);
                }
                () = &mut deadline, if !timed_out => {
                    timed_out = true;
                    group.kill();
                    let _ = child.start_kill();
                }
                () = &mut drain => break,
                () = cancel.cancelled() => {
                    group.kill();
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                    group.0 = None;
                    return Err(Abort::Closed);
                }
                // A caller sends nothing after its request but keeps its side open, so a
                // reset (it went away) shows here. An early EOF is allowed; after it only a
                // failed write can tell that the caller is gone. Stray bytes are ignored.
                read = self.stream.read(&mut probe), if caller_open => match read {
                    Ok(0) => caller_open = false,
                    Ok(_) => {}
                    Err(e) => {
                        group.kill();
                        let _ = child.start_kill();
                        let _ = child.wait().await;
                        group.0 = None;
                        return Err(Abort::CallerGone(e));
                    }
                },
            }
        }
        // Killed by the timeout: the group went with it; the status is the timeout's.
        group.0 = None;
        let status = if timed_out {
            ExitStatus::KilledByTimeout
        } else {
            status.unwrap_or(ExitStatus::Code(-1))
        };
        Ok(Exit {
            status,
            output_truncated: self.truncated,
        })
    }
}

/// The next read from an output pipe: `Some(n)` bytes, `None` at its end (or failure).
async fn read_some<R: AsyncRead + Unpin>(pipe: &mut Option<R>, buf: &mut [u8]) -> Option<usize> {
    let pipe = pipe.as_mut()?;
    match pipe.read(buf).await {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(n),
    }
}

fn convert(status: std::process::ExitStatus) -> ExitStatus {
    if let Some(code) = status.code() {
        return ExitStatus::Code(code);
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return ExitStatus::Signal(signal);
        }
    }
    ExitStatus::Code(-1)
}
