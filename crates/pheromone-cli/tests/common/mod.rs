//! Harness for tests that drive the real `pheromone` binary as separate processes.
//!
//! [`Daemon`] runs `pheromone up` in a temp data dir on 127.0.0.1 port 0 and kills it on
//! drop; [`run`] runs a short CLI command with a deadline and kills it if it overruns;
//! [`Background`] is a long-running CLI command (such as `recv`) killed on drop. Every
//! wait is bounded, and every process a test starts is ended by the test.

#![allow(dead_code)] // each test file uses a different part of the harness
#![allow(clippy::disallowed_methods)] // tests run on the real clock

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_pheromone");
/// Longest a CLI command may take.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(30);
/// Longest a daemon may take to start.
pub const START_LIMIT: Duration = Duration::from_secs(20);

/// What a finished command printed.
#[derive(Debug)]
pub struct Output {
    /// Exit status.
    pub status: ExitStatus,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Output {
    /// Stdout parsed as one JSON value; panics with the output on failure.
    pub fn json(&self) -> serde_json::Value {
        assert!(self.status.success(), "command failed: {self:?}");
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    /// Stdout parsed as JSON lines.
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        assert!(self.status.success(), "command failed: {self:?}");
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
            .collect()
    }

    /// Asserts a failure with exactly one line on stderr, and returns that line.
    pub fn one_line_error(&self) -> String {
        assert!(!self.status.success(), "expected a failure: {self:?}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "expected one line on stderr: {self:?}");
        lines[0].to_owned()
    }
}

fn reader_thread<R: Read + Send + 'static>(mut r: R) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = r.read_to_string(&mut text);
        text
    })
}

/// Waits for `child` until `limit`, killing it if it overruns.
fn wait_bounded(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("process {} did not finish within {limit:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn command(data_dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("PHEROMONE_DATA_DIR")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs `pheromone --data-dir DIR ARGS…` to completion, within [`COMMAND_LIMIT`].
pub fn run(data_dir: &Path, args: &[&str]) -> Output {
    let mut child = command(data_dir, args).spawn().expect("spawn pheromone");
    let out = reader_thread(child.stdout.take().expect("stdout"));
    let err = reader_thread(child.stderr.take().expect("stderr"));
    let status = wait_bounded(&mut child, COMMAND_LIMIT);
    Output {
        status,
        stdout: out.join().expect("stdout thread"),
        stderr: err.join().expect("stderr thread"),
    }
}

/// Reads `r` to the end into `sink`, as it arrives.
fn shared_reader<R: Read + Send + 'static>(
    mut r: R,
    sink: Arc<Mutex<String>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => sink
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
    })
}

/// A CLI command left running (e.g. `recv`); killed on drop unless [`Background::finish`]
/// collected it. What it prints can be read while it runs.
pub struct Background {
    child: Option<Child>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Background {
    /// Starts `pheromone --data-dir DIR ARGS…`.
    pub fn start(data_dir: &Path, args: &[&str]) -> Self {
        let mut child = command(data_dir, args).spawn().expect("spawn pheromone");
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            shared_reader(child.stdout.take().expect("stdout"), stdout.clone()),
            shared_reader(child.stderr.take().expect("stderr"), stderr.clone()),
        ];
        Self {
            child: Some(child),
            stdout,
            stderr,
            readers,
        }
    }

    /// What it printed on stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// What it printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().expect("try_wait").is_none())
    }

    /// Waits for it to exit by itself, within [`COMMAND_LIMIT`].
    pub fn finish(mut self) -> Output {
        let mut child = self.child.take().expect("child");
        let status = wait_bounded(&mut child, COMMAND_LIMIT);
        self.collect(status)
    }

    /// Kills it and returns what it printed.
    pub fn kill(mut self) -> Output {
        let mut child = self.child.take().expect("child");
        let _ = child.kill();
        let status = child.wait().expect("wait");
        self.collect(status)
    }

    fn collect(&mut self, status: ExitStatus) -> Output {
        for reader in self.readers.drain(..) {
            reader.join().expect("reader thread");
        }
        Output {
            status,
            stdout: self.stdout(),
            stderr: self.stderr(),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A running `pheromone up`, killed on drop.
pub struct Daemon {
    child: Option<Child>,
    /// Its data dir (a temp dir removed on drop, unless it was given).
    pub data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    /// Its peer ID, as printed.
    pub peer_id: String,
    /// Its dialable address with /p2p/, as printed.
    pub addr: String,
    /// Everything it printed on stdout at start.
    pub banner: Vec<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

/// Flags every test daemon gets: loopback, port 0, a short keep-alive, perf on.
pub const TEST_FLAGS: [&str; 7] = [
    "--listen",
    "/ip4/127.0.0.1/tcp/0",
    "--keepalive-interval",
    "1s",
    "--keepalive-timeout",
    "2s",
    "--perf",
];

impl Daemon {
    /// Starts a daemon named `name` in a fresh temp data dir.
    pub fn start(name: &str) -> Self {
        let temp = tempfile::tempdir().expect("tempdir");
        let dir = temp.path().join("node");
        let mut d = Self::start_in(&dir, &["--name", name]).expect("daemon starts");
        d._temp = Some(temp);
        d
    }

    /// Starts a daemon named `name` without the DHT, in a fresh temp data dir.
    pub fn start_no_dht(name: &str) -> Self {
        let temp = tempfile::tempdir().expect("tempdir");
        let dir = temp.path().join("node");
        let mut d = Self::start_in(&dir, &["--name", name, "--no-dht"]).expect("daemon starts");
        d._temp = Some(temp);
        d
    }

    /// Starts a daemon on `dir` with `extra` flags after the test flags; the error output
    /// if it exits before it is ready.
    pub fn start_in(dir: &Path, extra: &[&str]) -> Result<Self, Output> {
        Self::start_with_env(dir, extra, &[])
    }

    /// Like [`Daemon::start_in`], with extra environment variables for the daemon (and
    /// so for the commands it runs for `exec`).
    pub fn start_with_env(
        dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Self, Output> {
        let mut args = vec!["up"];
        args.extend(TEST_FLAGS);
        args.extend(extra);
        let mut cmd = command(dir, &args);
        cmd.envs(env.iter().copied());
        let mut child = cmd.spawn().expect("spawn pheromone up");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = reader_thread(child.stderr.take().expect("stderr"));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let deadline = Instant::now() + START_LIMIT;
        let mut banner = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    let ready = line.starts_with("control socket: ");
                    banner.push(line);
                    if ready {
                        break;
                    }
                }
                Err(_) => {
                    // Exited (stdout closed) or too slow: collect what it said and fail.
                    let _ = child.kill();
                    let status = child.wait().expect("wait");
                    return Err(Output {
                        status,
                        stdout: banner.join("\n"),
                        stderr: stderr.join().expect("stderr thread"),
                    });
                }
            }
        }
        let field = |prefix: &str| {
            banner
                .iter()
                .find_map(|l| l.strip_prefix(prefix))
                .unwrap_or_else(|| panic!("no {prefix:?} line in {banner:?}"))
                .to_owned()
        };
        let peer_id = field("peer id: ");
        let addr = field("listening on ");
        Ok(Self {
            child: Some(child),
            data_dir: dir.to_owned(),
            _temp: None,
            peer_id,
            addr,
            banner,
            stderr: Some(stderr),
        })
    }

    /// Runs a CLI command against this daemon.
    pub fn cli(&self, args: &[&str]) -> Output {
        run(&self.data_dir, args)
    }

    /// Runs a CLI command with `--json` and parses its output.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.push("--json");
        self.cli(&all).json()
    }

    /// Its process ID.
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.as_ref().expect("running").id()).expect("pid")
    }

    /// Sends `signal` to it.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on the pid of a child we own and have not reaped.
        let rc = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Waits for it to exit, within `limit`; its status and stderr.
    pub fn wait_exit(&mut self, limit: Duration) -> (ExitStatus, String) {
        let mut child = self.child.take().expect("running");
        let status = wait_bounded(&mut child, limit);
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().expect("stderr"))
            .unwrap_or_default();
        (status, stderr)
    }

    /// The control socket's path.
    pub fn socket(&self) -> PathBuf {
        self.data_dir.join("control.sock")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `check` every 50 ms until it holds or `limit` passes; whether it held.
pub fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The peer IDs in a `peers --json` answer.
pub fn peer_ids(peers: &serde_json::Value) -> Vec<String> {
    let mut ids: Vec<String> = peers
        .as_array()
        .expect("array")
        .iter()
        .map(|p| p["peer_id"].as_str().expect("peer_id").to_owned())
        .collect();
    ids.sort();
    ids
}
