//! The control socket server: accepts local clients on the Unix socket, reads requests
//! (one JSON line each), runs each as its own task and writes its events and final answer
//! back, tagged with the request's id.
//!
//! [`handle`] is the one place that maps an operation to the node; adding an operation is
//! one match arm there. The server bounds everything a client can make it hold: line
//! length, clients at once, requests in flight per client, and queued responses (a client
//! that stops reading slows only its own requests). Closing a client connection cancels
//! its requests. Nothing here touches the network except through [`Net`].

use super::net::{hex, Net};
use super::perf::{self, Plan};
use super::remote;
use crate::control_proto::{
    read_line, write_line, Body, ControlError, DirectMessage, ErrorCode, Event, Line, Op,
    PingStart, PingStats, Reply, Request, Response, TopicMessage, TraceHop, TraceInfo,
};
use pheromone::protocols::ping;
use pheromone::PeerId;
use pheromone_core::route::TraceStatus;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::BufReader;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Clients connected at once; more are turned away.
const MAX_CLIENTS: usize = 64;
/// Requests running at once on one client connection.
const MAX_IN_FLIGHT: usize = 32;
/// Responses queued for one client before its requests wait.
const RESPONSE_QUEUE: usize = 64;

/// Where a running request sends its events.
pub struct Events {
    id: u64,
    tx: mpsc::Sender<Response>,
}

impl Events {
    /// Sends one event to the client; fails when the client has gone.
    pub async fn emit(&self, event: Event) -> Result<(), ControlError> {
        self.tx
            .send(Response {
                id: self.id,
                body: Body::Event { event },
            })
            .await
            .map_err(|_| ControlError::new(ErrorCode::Internal, "the client went away"))
    }
}

/// Accepts clients until `cancel` fires; every task it starts is tracked by `tasks`.
pub async fn serve(
    listener: UnixListener,
    net: Net,
    cancel: CancellationToken,
    tasks: TaskTracker,
) {
    let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "control socket accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(
                limit = MAX_CLIENTS,
                "too many control clients; turning one away"
            );
            continue;
        };
        let net = net.clone();
        let cancel = cancel.child_token();
        let inner_tasks = tasks.clone();
        tasks.spawn(async move {
            serve_client(stream, net, cancel, inner_tasks).await;
            drop(permit);
        });
    }
}

async fn serve_client(stream: UnixStream, net: Net, cancel: CancellationToken, tasks: TaskTracker) {
    let (read, mut write) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Response>(RESPONSE_QUEUE);
    let writer = tasks.spawn(async move {
        while let Some(response) = rx.recv().await {
            if let Err(e) = write_line(&mut write, &response).await {
                tracing::debug!(error = %e, "control client write failed");
                return;
            }
        }
    });
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut reader = BufReader::new(read);
    let mut buf = Vec::new();
    loop {
        let line = tokio::select! {
            _ = cancel.cancelled() => break,
            line = read_line(&mut reader, &mut buf) => line,
        };
        match line {
            Ok(Line::Complete) => {}
            Ok(Line::Eof) => break,
            Ok(Line::TooLong) => {
                let _ = tx
                    .send(error_response(0, bad_request("request line too long")))
                    .await;
                break;
            }
            Err(e) => {
                tracing::debug!(error = %e, "control client read failed");
                break;
            }
        }
        let request: Request = match serde_json::from_slice(&buf) {
            Ok(request) => request,
            Err(e) => {
                let id = serde_json::from_slice::<serde_json::Value>(&buf)
                    .ok()
                    .and_then(|v| v.get("id").and_then(serde_json::Value::as_u64))
                    .unwrap_or(0);
                let error = bad_request(&format!("not a request this daemon understands: {e}"));
                if tx.send(error_response(id, error)).await.is_err() {
                    break;
                }
                continue;
            }
        };
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            let error = ControlError::new(
                ErrorCode::BadRequest,
                format!("more than {MAX_IN_FLIGHT} requests in flight on one connection"),
            );
            if tx.send(error_response(request.id, error)).await.is_err() {
                break;
            }
            continue;
        };
        let events = Events {
            id: request.id,
            tx: tx.clone(),
        };
        let net = net.clone();
        let cancel = cancel.clone();
        tasks.spawn(async move {
            let id = events.id;
            let result = tokio::select! {
                _ = cancel.cancelled() => return,
                result = handle(&net, request.op, &events) => result,
            };
            let body = match result {
                Ok(result) => Body::Ok { result },
                Err(error) => Body::Error { error },
            };
            let _ = events.tx.send(Response { id, body }).await;
            drop(permit);
        });
    }
    // The client is gone (or we are shutting down): its requests stop with it.
    cancel.cancel();
    drop(tx);
    let _ = writer.await;
}

fn bad_request(message: &str) -> ControlError {
    ControlError::new(ErrorCode::BadRequest, message)
}

fn error_response(id: u64, error: ControlError) -> Response {
    Response {
        id,
        body: Body::Error { error },
    }
}

/// Runs one operation against the node: one handler per operation, so a new operation is
/// one [`Op`] variant, one arm here and one function below.
async fn handle(net: &Net, op: Op, events: &Events) -> Result<Reply, ControlError> {
    match op {
        Op::Status => Ok(Reply::Status(net.status())),
        Op::Peers => Ok(Reply::Peers(net.peers())),
        Op::Routes => Ok(Reply::Routes(net.routes())),
        Op::DhtFind { peer } => net.dht_find(&peer).await.map(Reply::DhtFound),
        Op::DhtTable => net.dht_table().await.map(Reply::DhtTable),
        Op::Connect { addr } => net.connect(&addr).await.map(Reply::Connected),
        Op::Disconnect { peer } => disconnect(net, &peer).await,
        Op::Ping {
            peer,
            count,
            interval_ms,
            trace,
        } => ping(
            net,
            &peer,
            count,
            Duration::from_millis(interval_ms),
            trace,
            events,
        )
        .await
        .map(Reply::Ping),
        Op::Send { peer, data } => send(net, &peer, data).await,
        Op::Recv { count, ack } => recv(net, count, ack, events).await,
        Op::RecvAck { message_id } => recv_ack(net, &message_id).await,
        Op::Hosts => Ok(Reply::Hosts(net.hosts())),
        Op::Perf {
            peer,
            bytes,
            duration_ms,
        } => perf(net, &peer, bytes, duration_ms, events).await,
        Op::Broadcast { topic, data } => broadcast(net, &topic, data).await,
        Op::Subscribe { topic, count } => subscribe(net, &topic, count, events).await,
        Op::Expose {
            name,
            target,
            allow,
            allow_any,
        } => remote::expose(net, &name, &target, &allow, allow_any)
            .await
            .inspect(|e| forward_activity(net, format!("exposed {} → {}", e.protocol, e.target)))
            .map(Reply::Exposed),
        Op::Forward { name, peer, listen } => remote::forward(net, &name, &peer, &listen)
            .await
            .inspect(|f| {
                let to = f.peer_name.clone().unwrap_or_else(|| f.peer_id.clone());
                forward_activity(
                    net,
                    format!("forwarding {} → {to} {}", f.listen, f.protocol),
                );
            })
            .map(Reply::Forwarding),
        Op::Forwards => Ok(Reply::Forwards(remote::list(net))),
        Op::Alias { name, peer } => net.set_alias(&name, &peer).map(Reply::Alias),
        Op::Unalias { name } => net.aliases().remove(&name).map(Reply::Alias),
        Op::Aliases => Ok(Reply::Aliases(net.aliases().list())),
        Op::Dashboard => {
            let urls = net.urls();
            Ok(Reply::Dashboard {
                url: urls.dashboard,
                metrics_url: urls.metrics,
            })
        }
        Op::Unexpose { name } => remote::unexpose(net, &name)
            .await
            .inspect(|e| forward_activity(net, format!("stopped exposing {}", e.protocol)))
            .map(Reply::Exposed),
        Op::Unforward { listen } => remote::unforward(net, &listen)
            .await
            .inspect(|f| forward_activity(net, format!("stopped forwarding {}", f.listen)))
            .map(Reply::Forwarding),
        Op::Exec {
            peers,
            all,
            command,
            concurrency,
        } => remote::exec(net, &peers, all, command, concurrency, events)
            .await
            .map(Reply::Exec),
    }
}

fn forward_activity(net: &Net, summary: String) {
    net.activity().record("forward", summary, None, None, None);
}

async fn disconnect(net: &Net, peer: &str) -> Result<Reply, ControlError> {
    let (peer, connections) = net.disconnect(peer).await?;
    Ok(Reply::Disconnected {
        peer_id: peer.to_string(),
        connections,
    })
}

async fn send(net: &Net, peer: &str, data: Vec<u8>) -> Result<Reply, ControlError> {
    let bytes = data.len() as u64;
    let to = net.send(peer, data).await?;
    Ok(Reply::Sent {
        peer_id: to.to_string(),
        bytes,
    })
}

async fn perf(
    net: &Net,
    peer: &str,
    bytes: Option<u64>,
    duration_ms: u64,
    events: &Events,
) -> Result<Reply, ControlError> {
    let plan = match bytes {
        Some(n) => Plan::Bytes(n),
        None => Plan::Duration(Duration::from_millis(duration_ms)),
    };
    let peer = net.reach(&net.resolve(peer)?).await?;
    perf::run(net, peer, plan, events).await.map(Reply::Perf)
}

/// A ping that gets no echo within this counts as lost.
const PING_TIMEOUT: Duration = Duration::from_secs(10);

async fn ping(
    net: &Net,
    peer: &str,
    count: Option<u32>,
    interval: Duration,
    trace: bool,
    events: &Events,
) -> Result<PingStats, ControlError> {
    let peer = net.reach(&net.resolve(peer)?).await?;
    // One stream carries the whole run (in short mode, on a link of its own).
    let mut stream = net.open_stream(&peer, ping::PROTOCOL).await?;
    if trace {
        events
            .emit(Event::Trace(trace_path(net, peer).await?))
            .await?;
    }
    let (hops, relay) = net.path_to(&peer);
    events
        .emit(Event::PingStart(PingStart {
            peer: net.peer_ref(&peer),
            payload_bytes: ping::PAYLOAD_LEN as u32,
            hops,
            relay: relay.map(|r| TraceHop {
                peer_id: r.to_string(),
                name: net.peer_name(&r),
            }),
            transport: net.transport_to(&peer).map(str::to_owned),
        }))
        .await?;
    let mut stats = PingStats {
        peer_id: peer.to_string(),
        ..PingStats::default()
    };
    let started = Instant::now();
    let mut seq = 0u32;
    while count.is_none_or(|c| seq < c) {
        seq += 1;
        match ping::ping(&mut stream, PING_TIMEOUT).await {
            Ok(rtt) => {
                net.record_rtt(peer, rtt);
                let ms = rtt.as_secs_f64() * 1000.0;
                let who = net.peer_name(&peer).unwrap_or_else(|| peer.to_string());
                net.activity().record(
                    "ping",
                    format!("ping {who}: seq={seq} {ms:.3} ms"),
                    Some(peer.to_string()),
                    None,
                    Some(ms),
                );
                stats.pong(rtt);
                let rtt_us = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX);
                events.emit(Event::Pong { seq, rtt_us }).await?;
            }
            Err(error) => {
                stats.lost();
                events
                    .emit(Event::PingLost {
                        seq,
                        error: error.to_string(),
                    })
                    .await?;
                // A late echo would be read as the next one's: start a fresh stream (and
                // fail the run if the peer cannot be reached any more).
                stream = net.open_stream(&peer, ping::PROTOCOL).await?;
            }
        }
        stats.time_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        if count.is_none_or(|c| seq < c) {
            tokio::time::sleep(interval).await;
        }
    }
    Ok(stats)
}

/// The path to `peer` along the route table, probed hop by hop.
async fn trace_path(net: &Net, peer: PeerId) -> Result<TraceInfo, ControlError> {
    let routing = net.node().routing().ok_or_else(|| {
        ControlError::new(
            ErrorCode::NotAvailable,
            "routing is off in this daemon, so there is no path to trace",
        )
    })?;
    let outcome = routing
        .trace(peer)
        .await
        .map_err(|e| ControlError::new(ErrorCode::NotConnected, e.to_string()))?;
    let status = match outcome.status {
        TraceStatus::Reached => "reached",
        TraceStatus::NoRoute => "no_route",
        TraceStatus::HopLimit => "hop_limit",
        TraceStatus::Loop => "loop",
        TraceStatus::Timeout => "timeout",
    };
    let me = net.node().peer_id();
    let path = outcome
        .path
        .iter()
        .map(|p| TraceHop {
            peer_id: p.to_string(),
            name: if *p == me {
                net.node().name().map(str::to_owned)
            } else {
                net.peer_name(p)
            },
        })
        .collect();
    Ok(TraceInfo {
        status: status.to_owned(),
        path,
    })
}

fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

/// Streams messages one at a time: each stays in the inbox (leased to this request) until
/// removed — by the client's [`Op::RecvAck`] when `ack`, else once written to the socket —
/// and only then does the next one go out. A client that goes away without acking gives
/// its message back for the next `recv`.
async fn recv(
    net: &Net,
    count: Option<u64>,
    ack: bool,
    events: &Events,
) -> Result<Reply, ControlError> {
    let mut delivered = 0u64;
    while count.is_none_or(|c| delivered < c) {
        let lease = net.inbox().lease().await;
        let message = lease.message();
        events
            .emit(Event::Message(DirectMessage {
                message_id: hex(&message.id),
                from: message.from.to_string(),
                from_name: net.peer_name(&message.from),
                received_at_ms: unix_millis(message.received_at),
                bytes: message.data.len() as u64,
                data: message.data.clone(),
            }))
            .await?;
        if ack {
            net.inbox().removed(&message.id).await;
        } else {
            net.inbox()
                .remove(message.id)
                .await
                .map_err(|e| ControlError::new(ErrorCode::Internal, e.to_string()))?;
        }
        drop(lease);
        delivered += 1;
    }
    Ok(Reply::Received { count: delivered })
}

async fn recv_ack(net: &Net, message_id: &str) -> Result<Reply, ControlError> {
    let id = parse_message_id(message_id)?;
    if !net.inbox().is_leased(&id) {
        return Err(ControlError::new(
            ErrorCode::NotFound,
            format!("no message {message_id} is being received"),
        ));
    }
    net.inbox()
        .remove(id)
        .await
        .map_err(|e| ControlError::new(ErrorCode::Internal, e.to_string()))?;
    Ok(Reply::Acked {
        message_id: message_id.to_owned(),
    })
}

/// A message id from its 32 hex digits.
fn parse_message_id(text: &str) -> Result<[u8; 16], ControlError> {
    let bad = || ControlError::new(ErrorCode::BadRequest, format!("bad message id {text:?}"));
    if text.len() != 32 || !text.is_ascii() {
        return Err(bad());
    }
    let mut id = [0u8; 16];
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(id)
}

async fn broadcast(net: &Net, topic: &str, data: Vec<u8>) -> Result<Reply, ControlError> {
    let bytes = data.len() as u64;
    let message_id = net.broadcast(topic, data).await?;
    let me = net.node().peer_id().to_string();
    net.activity()
        .broadcast(topic, &me, net.node().name(), bytes, true);
    Ok(Reply::Published {
        topic: topic.to_owned(),
        message_id,
        bytes,
    })
}

async fn subscribe(
    net: &Net,
    topic: &str,
    count: Option<u64>,
    events: &Events,
) -> Result<Reply, ControlError> {
    // Dropped when this request ends (count reached, client gone): the node stops
    // delivering to it, and unsubscribes once no subscription to the topic is left.
    let mut subscription = net.subscribe(topic).await?;
    events
        .emit(Event::Subscribed {
            topic: topic.to_owned(),
        })
        .await?;
    let mut delivered = 0u64;
    while count.is_none_or(|c| delivered < c) {
        let Some(message) = subscription.recv().await else {
            return Err(ControlError::new(
                ErrorCode::ShuttingDown,
                "the subscription ended: the node is shutting down",
            ));
        };
        let from_name = net.peer_name(&message.origin);
        net.activity().broadcast(
            message.topic.as_str(),
            &message.origin.to_string(),
            from_name.as_deref(),
            message.data.len() as u64,
            false,
        );
        events
            .emit(Event::TopicMessage(TopicMessage {
                topic: message.topic.as_str().to_owned(),
                from: message.origin.to_string(),
                from_name: net.peer_name(&message.origin),
                message_id: hex(message.id.as_bytes()),
                seq: message.seq,
                hops: message.hops,
                received_at_ms: unix_millis(SystemTime::now()),
                bytes: message.data.len() as u64,
                data: message.data.to_vec(),
            }))
            .await?;
        delivered += 1;
    }
    Ok(Reply::Received { count: delivered })
}
