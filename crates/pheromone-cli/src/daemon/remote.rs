//! Remote access through the daemon: exposing and forwarding TCP services
//! (`pheromone::forward`) and running a command on many peers (`pheromone::exec`), as
//! control operations.
//!
//! The daemon owns the node, so the fleet run happens here and every host's progress is
//! streamed to the client as events; the CLI only prints. Nothing here decides who may
//! use a service or run a command on this node: that is the allow-lists the operator set
//! (`expose --allow`, `up --allow-exec`), checked by the library during negotiation.

use super::control::Events;
use super::net::Net;
use crate::control_proto::{
    ControlError, ErrorCode, Event, ExecChunk, ExecCommand, ExposeEntry, ForwardCounters,
    ForwardEntry, ForwardList, HostRef, HostSummary, OutputStream,
};
use pheromone::exec::{
    exec_fleet, ExecError, ExecOutput, ExecRequest, ExitStatus, FleetEvent, FleetOptions,
    HostResult,
};
use pheromone::forward::{ExposeInfo, ForwardError, ForwardInfo, ForwardStats};
use pheromone::{Access, PeerId};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

/// Most hosts one exec request may name.
const MAX_HOSTS: usize = 4096;
/// Most hosts running a command at once, whatever the client asks.
const MAX_CONCURRENCY: u32 = 256;

fn counters(stats: ForwardStats) -> ForwardCounters {
    ForwardCounters {
        bytes_in: stats.bytes_in,
        bytes_out: stats.bytes_out,
        open: stats.open,
        total: stats.total,
        failed: stats.failed,
    }
}

fn expose_entry(info: ExposeInfo) -> ExposeEntry {
    ExposeEntry {
        name: info.name,
        protocol: info.protocol,
        target: info.target.to_string(),
        allow: info
            .allow
            .map(|peers| peers.iter().map(ToString::to_string).collect()),
        stats: counters(info.stats),
    }
}

fn forward_entry(net: &Net, info: ForwardInfo) -> ForwardEntry {
    ForwardEntry {
        name: info.name,
        protocol: info.protocol,
        peer_id: info.peer.to_string(),
        peer_name: net.peer_name(&info.peer),
        listen: info.listen.to_string(),
        stats: counters(info.stats),
    }
}

fn forward_error(e: &ForwardError) -> ControlError {
    let code = match e {
        ForwardError::NotExposed { .. } | ForwardError::NotForwarded { .. } => ErrorCode::NotFound,
        ForwardError::AlreadyExposed { .. } | ForwardError::AlreadyForwarded { .. } => {
            ErrorCode::AlreadyExists
        }
        ForwardError::Peer(_) => ErrorCode::UnknownPeer,
        ForwardError::Open(_) => ErrorCode::StreamFailed,
        _ => ErrorCode::BadRequest,
    };
    ControlError::new(code, e.to_string())
}

/// `host:port`, resolved (names such as `localhost` too); the first address.
async fn socket_addr(text: &str, what: &str) -> Result<SocketAddr, ControlError> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bad = |why: String| {
        ControlError::new(ErrorCode::BadRequest, format!("bad {what} {text:?}: {why}"))
    };
    let mut addrs = tokio::net::lookup_host(text)
        .await
        .map_err(|e| bad(format!("{e} (expected HOST:PORT)")))?;
    addrs
        .next()
        .ok_or_else(|| bad("the name has no address".to_owned()))
}

/// `expose NAME --target HOST:PORT --allow PEER…`.
pub async fn expose(
    net: &Net,
    name: &str,
    target: &str,
    allow: &[String],
    allow_any: bool,
) -> Result<ExposeEntry, ControlError> {
    let target = socket_addr(target, "target").await?;
    let access = if allow_any {
        if !allow.is_empty() {
            return Err(ControlError::new(
                ErrorCode::BadRequest,
                "give --allow PEER or --allow-any, not both",
            ));
        }
        Access::Open
    } else {
        if allow.is_empty() {
            return Err(ControlError::new(
                ErrorCode::BadRequest,
                format!(
                    "name the peers allowed to use {name:?} with --allow PEER (repeatable), \
                     or let every peer in with --allow-any"
                ),
            ));
        }
        let mut peers = HashSet::new();
        // Who gets in is the operator's call: only peer IDs and aliases it set.
        for spec in allow {
            peers.insert(net.resolve_trusted(spec)?.peer);
        }
        Access::AllowList(peers)
    };
    net.forwards()
        .expose(name, target, access)
        .map(expose_entry)
        .map_err(|e| forward_error(&e))
}

/// `forward NAME PEER --listen HOST:PORT`.
pub async fn forward(
    net: &Net,
    name: &str,
    peer: &str,
    listen: &str,
) -> Result<ForwardEntry, ControlError> {
    let listen = socket_addr(listen, "listen address").await?;
    // A forwarded port carries the operator's traffic: only to a peer it named.
    let peer = net.reach(&net.resolve_trusted(peer)?).await?;
    let info = net
        .forwards()
        .forward(name, peer, listen)
        .await
        .map_err(|e| forward_error(&e))?;
    Ok(forward_entry(net, info))
}

/// `forwards`.
pub fn list(net: &Net) -> ForwardList {
    let snapshot = net.forwards().snapshot();
    ForwardList {
        exposed: snapshot.exposed.into_iter().map(expose_entry).collect(),
        forwarded: snapshot
            .forwarded
            .into_iter()
            .map(|f| forward_entry(net, f))
            .collect(),
    }
}

/// `unexpose NAME`: its final counters.
pub async fn unexpose(net: &Net, name: &str) -> Result<ExposeEntry, ControlError> {
    net.forwards()
        .unexpose(name)
        .await
        .map(expose_entry)
        .map_err(|e| forward_error(&e))
}

/// `unforward ADDR` (a bare port means 127.0.0.1): its final counters.
pub async fn unforward(net: &Net, listen: &str) -> Result<ForwardEntry, ControlError> {
    let addr = match listen.parse::<u16>() {
        Ok(port) => SocketAddr::from(([127, 0, 0, 1], port)),
        Err(_) => socket_addr(listen, "listen address").await?,
    };
    let info = net
        .forwards()
        .unforward(addr)
        .await
        .map_err(|e| forward_error(&e))?;
    Ok(forward_entry(net, info))
}

fn host_name(net: &Net, peer: &PeerId) -> String {
    net.peer_name(peer).unwrap_or_else(|| peer.to_string())
}

/// `exec PEER… -- CMD` / `exec --all -- CMD`: runs the fleet and streams its events.
pub async fn exec(
    net: &Net,
    specs: &[String],
    all: bool,
    command: ExecCommand,
    concurrency: u32,
    events: &Events,
) -> Result<Vec<HostSummary>, ControlError> {
    let peers: Vec<PeerId> = if all {
        let peers: Vec<PeerId> = net
            .peers()
            .iter()
            .filter_map(|p| p.peer_id.parse().ok())
            .collect();
        if peers.is_empty() {
            return Err(ControlError::new(
                ErrorCode::NotConnected,
                "--all: no peer is connected",
            ));
        }
        peers
    } else {
        if specs.is_empty() {
            return Err(ControlError::new(
                ErrorCode::BadRequest,
                "name at least one PEER, or --all",
            ));
        }
        let mut peers = Vec::with_capacity(specs.len());
        for spec in specs {
            // Commands (and their output) go only to peers the operator named.
            let peer = net.reach(&net.resolve_trusted(spec)?).await?;
            if !peers.contains(&peer) {
                peers.push(peer);
            }
        }
        peers
    };
    if peers.len() > MAX_HOSTS {
        return Err(ControlError::new(
            ErrorCode::BadRequest,
            format!(
                "{} hosts is more than the limit of {MAX_HOSTS}",
                peers.len()
            ),
        ));
    }
    if command.program.is_empty() {
        return Err(ControlError::new(ErrorCode::BadRequest, "no command given"));
    }
    let mut request = ExecRequest::new(command.program, command.args);
    request.shell = command.shell;
    request.timeout = command
        .timeout_ms
        .map_or(Duration::ZERO, Duration::from_millis);
    request.max_output = command.max_output.unwrap_or(0);

    let hosts: Vec<HostRef> = peers
        .iter()
        .map(|p| HostRef {
            peer_id: p.to_string(),
            host: host_name(net, p),
        })
        .collect();
    let line = std::iter::once(request.program.as_str())
        .chain(request.args.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ");
    net.activity().record(
        "exec",
        format!(
            "exec `{}` on {} host(s)",
            crate::control_proto::one_line(&line),
            hosts.len()
        ),
        None,
        None,
        None,
    );
    events.emit(Event::ExecPlan { hosts }).await?;
    let options = FleetOptions::default()
        // Output reaches the client as events; the results need none of it.
        .capture(0)
        .concurrency(concurrency.clamp(1, MAX_CONCURRENCY) as usize);
    let mut fleet = exec_fleet(net.node(), peers.clone(), request, options);
    let mut summaries = Vec::with_capacity(peers.len());
    // Dropping `fleet` (the client went away) resets every stream: the hosts kill the
    // commands.
    while let Some(event) = fleet.next_event().await {
        match event {
            FleetEvent::Started { peer, .. } => {
                events
                    .emit(Event::ExecStarted(HostRef {
                        peer_id: peer.to_string(),
                        host: host_name(net, &peer),
                    }))
                    .await?;
            }
            FleetEvent::Output { peer, output, .. } => {
                let (stream, data) = match output {
                    ExecOutput::Stdout(d) => (OutputStream::Stdout, d),
                    ExecOutput::Stderr(d) => (OutputStream::Stderr, d),
                    ExecOutput::Exit(_) => continue,
                };
                events
                    .emit(Event::ExecOutput(ExecChunk {
                        peer_id: peer.to_string(),
                        stream,
                        data: data.to_vec(),
                    }))
                    .await?;
            }
            FleetEvent::Finished(result) => {
                let summary = summarize(net, &result);
                log_result(&summary);
                net.activity().record(
                    "exec",
                    format!(
                        "exec on {}: {} in {} ms",
                        summary.host,
                        summary.error.as_deref().unwrap_or(&summary.status_text()),
                        summary.duration_ms
                    ),
                    Some(summary.peer_id.clone()),
                    None,
                    None,
                );
                events.emit(Event::ExecFinished(summary.clone())).await?;
                summaries.push(summary);
            }
            _ => {}
        }
    }
    let position = |id: &str| peers.iter().position(|p| p.to_string() == id);
    summaries.sort_by_key(|s| position(&s.peer_id));
    Ok(summaries)
}

fn log_result(s: &HostSummary) {
    match &s.error {
        Some(error) => tracing::info!(host = %s.host, status = %s.status, %error, "exec finished"),
        None => tracing::info!(host = %s.host, status = %s.status_text(), "exec finished"),
    }
}

fn summarize(net: &Net, r: &HostResult) -> HostSummary {
    let mut s = HostSummary {
        peer_id: r.peer.to_string(),
        host: host_name(net, &r.peer),
        status: String::new(),
        exit_code: None,
        signal: None,
        truncated: false,
        error: None,
        success: r.success(),
        duration_ms: u64::try_from(r.duration.as_millis()).unwrap_or(u64::MAX),
        stdout_bytes: r.stdout_bytes,
        stderr_bytes: r.stderr_bytes,
    };
    match &r.outcome {
        Ok(exit) => {
            s.truncated = exit.output_truncated;
            s.status = match exit.status {
                ExitStatus::Code(code) => {
                    s.exit_code = Some(code);
                    "exited"
                }
                ExitStatus::Signal(signal) => {
                    s.signal = Some(signal);
                    "signal"
                }
                ExitStatus::KilledByTimeout => "timeout",
            }
            .to_owned();
        }
        Err(e) => {
            s.status = match e {
                ExecError::Refused { .. } => "refused",
                _ => "error",
            }
            .to_owned();
            s.error = Some(crate::control_proto::one_line(&e.to_string()));
        }
    }
    s
}
