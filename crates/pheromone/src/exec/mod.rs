//! Fleet exec, `/pheromone/exec/1.0.0`: run a command on peers that allow us, with its
//! output streamed back as it comes and its exit status at the end.
//!
//! - Server: [`serve`] registers the handler with an [`ExecConfig`]. Exec is **off**
//!   unless the allow-list names at least one peer; peers not on it are refused during
//!   negotiation (nothing runs, the node logs the refusal). An allowed peer may run **any
//!   program** the server's user may run (`sh` included, by naming it) unless
//!   [`ExecConfig::programs`] lists the programs allowed; `shell` requests (`sh -c` with
//!   a command line) also need [`ExecConfig::allow_shell`], which a program list rules
//!   out. Commands start with a cleared environment ([`ExecEnv`]). Each run has a timeout (the request's, at most the config's) after which
//!   the program and its process group are killed and the exit reports
//!   [`ExitStatus::KilledByTimeout`]; output past the cap is dropped and the exit says so.
//! - Client: [`exec`] runs one request on one peer and yields [`ExecOutput`] events ending
//!   with the exit; [`exec_fleet`] / [`exec_many`] run it on many peers at once with a
//!   concurrency cap and collect a [`HostResult`] per peer.
//!
//! The wire format lives in [`pheromone_core::exec`] (`docs/protocols/exec.md`). This
//! module does the IO: streams, processes, timers. It holds no lock across an await.

mod client;
mod error;
mod fleet;
mod policy;
mod server;

pub use client::{exec, ExecOutput, ExecSession};
pub use error::{ExecError, ExecServeError};
pub use fleet::{exec_fleet, exec_many, Fleet, FleetEvent, FleetOptions, HostResult};
pub use pheromone_core::exec::{
    Exit, ExitStatus, FailureKind, Request as ExecRequest, MAX_STDIN, PROTOCOL,
};
pub use policy::{ExecEnv, CLEAN_PATH};

use crate::node::{Access, Node};
use pheromone_core::identity::PeerId;
use server::ServerShared;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Settings of the exec service. The default allows nobody, so exec stays off. Build one
/// with [`ExecConfig::allowing`] or `ExecConfig { allow, ..ExecConfig::default() }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecConfig {
    /// Peers allowed to run commands; empty turns exec off.
    pub allow: Vec<PeerId>,
    /// Whether requests may ask for `sh -c` with a command line; without it they must name
    /// a program. (Naming `sh` as the program is still possible unless
    /// [`programs`](Self::programs) rules it out.)
    pub allow_shell: bool,
    /// The programs allowed, by name (looked up in the commands' `PATH`) or path; `None`
    /// allows every program. Names and symlinks are resolved to canonical paths when the
    /// service starts and for every request, and the resolved path is what runs. Cannot be
    /// combined with [`allow_shell`](Self::allow_shell).
    pub programs: Option<Vec<String>>,
    /// The environment commands start with; cleared by default.
    pub env: ExecEnv,
    /// Longest a command may run; requests asking for more (or for no limit) get this.
    pub max_timeout: Duration,
    /// Most stdout + stderr bytes sent back per command; requests asking for more (or
    /// for no limit) get this.
    pub max_output: u64,
    /// Most commands running at once; more are answered "busy".
    pub max_concurrent: usize,
}

impl Default for ExecConfig {
    fn default() -> Self {
        Self {
            allow: Vec::new(),
            allow_shell: false,
            programs: None,
            env: ExecEnv::Cleared,
            max_timeout: Duration::from_secs(600),
            max_output: 16 * 1024 * 1024,
            max_concurrent: 16,
        }
    }
}

impl ExecConfig {
    /// The default settings, allowing `peers`.
    pub fn allowing(peers: impl IntoIterator<Item = PeerId>) -> Self {
        Self {
            allow: peers.into_iter().collect(),
            ..Self::default()
        }
    }

    /// Whether exec is on (someone is allowed).
    pub fn is_enabled(&self) -> bool {
        !self.allow.is_empty()
    }

    fn access(&self) -> Access {
        Access::AllowList(self.allow.iter().copied().collect())
    }
}

/// Counters of the exec service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ExecStats {
    /// Commands running now.
    pub running: u64,
    /// Commands started since the service started.
    pub started: u64,
    /// Requests answered with an error instead of a run (busy, shell refused, not found,
    /// malformed).
    pub rejected: u64,
    /// Commands killed by their timeout.
    pub timed_out: u64,
}

/// The running exec service of a node. Dropping it (or [`ExecService::close`]) stops
/// answering exec and kills the commands still running.
pub struct ExecService {
    node: Node,
    shared: Arc<ServerShared>,
    enabled: bool,
    closed: AtomicBool,
}

impl std::fmt::Debug for ExecService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecService")
            .field("enabled", &self.enabled)
            .field("config", &self.shared.config())
            .finish()
    }
}

/// Starts the exec service on `node` with `config`. With an empty allow-list nothing is
/// registered (exec stays off and every peer is refused, like any unknown protocol) and
/// the returned service reports `is_enabled() == false`.
pub fn serve(node: &Node, config: ExecConfig) -> Result<ExecService, ExecServeError> {
    if config.max_concurrent == 0 {
        return Err(ExecServeError::InvalidConfig(
            "max_concurrent must be at least 1",
        ));
    }
    if config.max_timeout.is_zero() {
        return Err(ExecServeError::InvalidConfig(
            "max_timeout must be positive",
        ));
    }
    if config.programs.is_some() && config.allow_shell {
        return Err(ExecServeError::InvalidConfig(
            "a program allow-list cannot be combined with shell commands (sh -c runs anything)",
        ));
    }
    let programs = match &config.programs {
        Some(list) => Some(
            policy::ProgramList::resolve(list, &config.env)
                .map_err(ExecServeError::UnknownProgram)?,
        ),
        None => None,
    };
    if node.protocols().iter().any(|p| p == PROTOCOL) {
        return Err(ExecServeError::AlreadyServing);
    }
    let enabled = config.is_enabled();
    let access = config.access();
    let shared = Arc::new(ServerShared::new(config, programs));
    if enabled {
        let handler_shared = shared.clone();
        node.handle_streams_with(
            PROTOCOL,
            move |peer, stream| {
                let shared = handler_shared.clone();
                async move { server::serve_stream(&shared, peer, stream).await }
            },
            access,
        )
        .map_err(|e| ExecServeError::Node(Arc::new(e)))?;
        let c = shared.config();
        tracing::info!(
            allowed = c.allow.len(),
            shell = c.allow_shell,
            programs = ?c.programs,
            env = ?c.env,
            "exec enabled"
        );
    }
    Ok(ExecService {
        node: node.clone(),
        shared,
        enabled,
        closed: AtomicBool::new(false),
    })
}

impl ExecService {
    /// Whether exec is on.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// The settings it runs with.
    pub fn config(&self) -> ExecConfig {
        self.shared.config()
    }

    /// Its counters.
    pub fn stats(&self) -> ExecStats {
        self.shared.stats()
    }

    /// A metrics collector of its counters, to register beside the node's.
    pub fn collector(&self) -> crate::metrics::ExecCollector {
        let shared = self.shared.clone();
        crate::metrics::ExecCollector::new(Arc::new(move || shared.stats()))
    }

    /// Replaces the allow-list (for the next streams; commands running go on). An empty
    /// list refuses everyone but keeps the service registered; to turn exec off for good,
    /// close the service.
    pub fn set_allow(&self, allow: Vec<PeerId>) {
        let access = Access::AllowList(allow.iter().copied().collect());
        if self.enabled {
            self.node.set_access(PROTOCOL, access);
        }
        self.shared.set_allow(allow);
    }

    /// Stops answering exec, kills the commands still running (reporting them as failed
    /// to their callers) and waits for them to end.
    pub async fn close(self) {
        self.stop();
        self.shared.wait().await;
    }

    fn stop(&self) {
        if !self.closed.swap(true, Ordering::SeqCst) && self.enabled {
            self.node.remove_handler(PROTOCOL);
            self.shared.cancel();
            tracing::info!("exec disabled");
        }
    }
}

impl Drop for ExecService {
    fn drop(&mut self) {
        self.stop();
    }
}
