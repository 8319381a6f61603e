//! `pheromone up`: the daemon. Checks the data dir ([`datadir`]), takes its lock, loads or
//! creates the identity, starts the node ([`net`]), listens, serves the control socket
//! ([`control`]), keeps the bootstrap peers linked ([`bootstrap`]) and the remembered ones
//! ([`redial`]), tells systemd it is ready, reloads the exec allow-list on SIGHUP and runs
//! until Ctrl-C or SIGTERM, then closes links gracefully and removes the socket.
//!
//! Layout:
//! - [`config`]: flags, config file, validated settings.
//! - [`net`]: the library's `Node` plus the CLI's bookkeeping (peers, routes, inbox).
//! - [`control`]: the control socket server and one handler per operation.
//! - [`remote`]: expose, forward and fleet exec as control operations; [`routes`]: what
//!   the node reaches and how (direct, through relays, by dialling).
//! - [`protocols`], [`inbox`]: the direct-message protocols and the durable, bounded
//!   inbox (a checksummed log on disk).
//! - [`peerstore`], [`redial`]: the peers met, on disk, and keeping links to them.
//! - [`datadir`]: StrictModes-like checks, `O_NOFOLLOW` opens, atomic rewrites.
//! - [`bootstrap`]: dial and redial bootstrap peers; [`perf`]: throughput runs;
//!   [`errors`]: network failures as control errors.
//! - [`observe`]: `/metrics` over HTTP, the web dashboard, the activity log.
//!
//! Nothing here prints except the start-up lines on stdout; the rest goes through tracing.

pub mod aliases;
pub mod bootstrap;
pub mod config;
pub mod control;
pub mod datadir;
pub mod dht;
pub mod errors;
pub mod inbox;
pub mod net;
pub mod observe;
pub mod peerstore;
pub mod perf;
pub mod protocols;
pub mod redial;
pub mod remote;
pub mod resources;
pub mod routes;

use crate::control_proto::{LOCK_NAME, SOCKET_NAME};
use anyhow::{bail, Context, Result};
use config::Settings;
use net::Net;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a graceful shutdown may take before the daemon exits anyway.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(10);

/// Runs the daemon in the foreground until SIGTERM or SIGINT; on SIGHUP, `reload` reads
/// the settings again and the exec allow-list is replaced (links stay up).
pub async fn run(settings: Settings, reload: impl Fn() -> Result<Settings>) -> Result<()> {
    let data_dir = settings.data_dir.clone();
    create_private_dir(&data_dir)?;
    // Like OpenSSH's StrictModes: whoever else can write these can replace who we are.
    datadir::check_strict(&data_dir)?;
    let identity = crate::cli::identity_path(&data_dir);
    datadir::check_strict(&identity)?;
    let _lock = lock_data_dir(&data_dir)?;
    let keypair = pheromone::identity_file::load_or_generate(&identity)?;

    let net = Net::start(keypair, &settings)
        .await
        .context("cannot start the node")?;
    if let Err(e) = listen(&net, &settings) {
        net.close().await;
        return Err(e);
    }

    let socket_path = data_dir.join(SOCKET_NAME);
    // We hold the lock, so a socket file left here belongs to a daemon that died.
    match std::fs::remove_file(&socket_path) {
        Ok(()) => tracing::info!(path = %socket_path.display(), "removed a stale control socket"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            net.close().await;
            return Err(e)
                .with_context(|| format!("cannot remove stale {}", socket_path.display()));
        }
    }
    let listener = match bind_control(&socket_path) {
        Ok(l) => l,
        Err(e) => {
            net.close().await;
            return Err(e);
        }
    };

    let cancel = CancellationToken::new();
    let tasks = TaskTracker::new();
    let urls = match observe::start(&net, &settings, &cancel, &tasks).await {
        Ok(urls) => urls,
        Err(e) => {
            cancel.cancel();
            tasks.close();
            tasks.wait().await;
            net.close().await;
            let _ = std::fs::remove_file(&socket_path);
            return Err(e);
        }
    };
    net.set_urls(urls.clone());

    println!("peer id: {}", net.node().peer_id());
    if let Some(name) = &settings.name {
        println!("name: {name}");
    }
    println!("mode: {}", settings.mode.as_str());
    for addr in net.listen_addrs() {
        println!("listening on {addr}");
    }
    if let Some((peers, what)) = net.exec_allowed() {
        println!("exec: allowed for {peers} peer(s): {what}");
    }
    if let Some(url) = &urls.metrics {
        println!("metrics: {url}");
    }
    if urls.dashboard.is_some() {
        println!("dashboard: on (`pheromone dashboard` prints its URL)");
    }
    // Last: tools wait for this line to know the daemon is ready.
    println!("control socket: {}", socket_path.display());
    tasks.spawn(control::serve(
        listener,
        net.clone(),
        cancel.clone(),
        tasks.clone(),
    ));
    for addr in settings.bootstrap.clone() {
        tasks.spawn(bootstrap::supervise(net.clone(), addr, cancel.clone()));
    }
    redial::reconnect_remembered(&net);

    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut hangup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    notify_systemd();
    let which = loop {
        tokio::select! {
            _ = terminate.recv() => break "SIGTERM",
            _ = interrupt.recv() => break "SIGINT",
            _ = hangup.recv() => match reload() {
                Ok(new) => net.reload(&new),
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "SIGHUP: settings not reloaded"),
            },
        }
    };
    tracing::info!(signal = which, "shutting down");

    // New clients find no socket at once; running requests are cancelled.
    let _ = std::fs::remove_file(&socket_path);
    cancel.cancel();
    tasks.close();
    let shutdown = async {
        tasks.wait().await;
        net.close().await;
    };
    tokio::select! {
        _ = shutdown => {}
        _ = tokio::time::sleep(SHUTDOWN_LIMIT) => {
            tracing::warn!(limit = ?SHUTDOWN_LIMIT, "graceful shutdown took too long; exiting");
        }
        _ = terminate.recv() => tracing::warn!("second signal: exiting without waiting"),
        _ = interrupt.recv() => tracing::warn!("second signal: exiting without waiting"),
    }
    Ok(())
}

/// Tells systemd (`Type=notify`) the daemon is ready, when it runs under one: a datagram
/// `READY=1` to `$NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace).
fn notify_systemd() {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = (|| -> std::io::Result<()> {
        let socket = std::os::unix::net::UnixDatagram::unbound()?;
        let bytes = target.as_encoded_bytes();
        if let Some(name) = bytes.strip_prefix(b"@") {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(b"READY=1", &addr)?;
        } else {
            socket.send_to(b"READY=1", &target)?;
        }
        Ok(())
    })();
    if let Err(e) = sent {
        tracing::warn!(error = %e, "cannot notify systemd that the daemon is ready");
    }
}

fn listen(net: &Net, settings: &Settings) -> Result<()> {
    let mut bound = 0;
    let mut failures = Vec::new();
    for addr in &settings.listen {
        match net.node().listen(addr) {
            Ok(actual) => {
                bound += 1;
                if settings.quic {
                    listen_quic_beside(net, settings, &actual);
                }
            }
            Err(e) => failures.push((addr, e)),
        }
    }
    for (addr, e) in &failures {
        // Default addresses may not all exist (no IPv6 on this host, or IPv6 sockets that
        // also take IPv4 and so clash with the IPv4 wildcard): a warning if one worked.
        if settings.listen_is_default && bound > 0 {
            tracing::info!(%addr, error = %e, "not listening on this default address");
        } else {
            bail!("{e}");
        }
    }
    if bound == 0 {
        bail!("not listening on any address");
    }
    Ok(())
}

/// QUIC beside a bound TCP address: the same IP, and the same port number where that UDP
/// port is free (else any), unless a QUIC address of that IP was asked for. Logged, never
/// fatal: TCP alone still serves.
fn listen_quic_beside(net: &Net, settings: &Settings, tcp: &pheromone::Multiaddr) {
    let Some(tcp) = tcp.tcp_socket_addr() else {
        return;
    };
    let explicit = settings
        .listen
        .iter()
        .filter_map(pheromone::Multiaddr::quic_socket_addr)
        .any(|q| q.ip() == tcp.ip());
    if explicit {
        return;
    }
    let at = |port| pheromone::Multiaddr::from_quic_socket_addr((tcp.ip(), port).into());
    let result = net.node().listen(at(tcp.port())).or_else(|e| {
        tracing::info!(port = tcp.port(), error = %e, "UDP port taken; QUIC on another");
        net.node().listen(at(0))
    });
    if let Err(e) = result {
        tracing::warn!(ip = %tcp.ip(), error = %e, "not listening on QUIC");
    }
}

/// Creates the data dir (owner-only) if it does not exist.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .with_context(|| format!("cannot create data dir {}", dir.display()))
}

/// Takes the data dir's lock (held until the returned file is dropped or the process
/// dies, even by SIGKILL) and writes our pid into it.
fn lock_data_dir(dir: &Path) -> Result<File> {
    use std::os::unix::io::AsRawFd;
    let path = dir.join(LOCK_NAME);
    // Not through a symlink: truncating below must never reach a file outside the dir.
    let mut file = datadir::open_private(&path)?;
    // SAFETY: flock takes a file descriptor we own for the duration of the call.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if locked != 0 {
        let error = std::io::Error::last_os_error();
        if error.kind() == std::io::ErrorKind::WouldBlock {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            let who = if pid.is_empty() {
                String::new()
            } else {
                format!(" (pid {pid})")
            };
            bail!(
                "a pheromone daemon{who} is already running on data dir {}; stop it first or choose another --data-dir",
                dir.display()
            );
        }
        return Err(error).with_context(|| format!("cannot lock {}", path.display()));
    }
    file.set_len(0)?;
    file.rewind()?;
    writeln!(file, "{}", std::process::id())?;
    Ok(file)
}

/// Binds the control socket, readable and writable by the owner only.
fn bind_control(path: &PathBuf) -> Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    // The socket is created with the umask's mode; narrow it for the bind so the socket is
    // never reachable by others, even for a moment in a data dir that is not private.
    // SAFETY: umask only swaps the process's file-creation mask; nothing else creates
    // files at start-up while it is narrowed.
    let previous = unsafe { libc::umask(0o177) };
    let bound = tokio::net::UnixListener::bind(path);
    // SAFETY: as above, restoring the mask we replaced.
    unsafe { libc::umask(previous) };
    let listener =
        bound.with_context(|| format!("cannot bind control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict {}", path.display()))?;
    Ok(listener)
}
