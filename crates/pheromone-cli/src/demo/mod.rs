//! `pheromone demo`: five nodes on 127.0.0.1 in this one process, narrated for a person.
//!
//! The nodes come up on ephemeral ports, link into a ring (luda – kefir – yoghurt – skyr –
//! lassi – luda), answer a request, run the luda/yoghurt state machine
//! ([`state_machine`]) once per call in short mode and once in long mode, and carry a
//! broadcast to every other node exactly once. Every number printed is measured, not
//! assumed: connections are counted from the endpoints' events, deliveries from the
//! subscriptions. Colours follow the CLI's rules (a terminal, no `NO_COLOR`). Needs no
//! data dir and no daemon; leaves nothing behind.

pub mod state_machine;

use crate::cli::style::{paint, Paint};
use anyhow::{bail, Context, Result};
use bytes::Bytes;
use pheromone::node::Peer;
use pheromone::pubsub::Subscription;
use pheromone::{ConnectionMode, DispatchOptions, EndpointConfig, EndpointEvent, Node, PeerId};
use state_machine::{Machine, EXPECTED};
use std::time::{Duration, Instant};
use tokio::sync::broadcast::{error::TryRecvError, Receiver};

/// The nodes, in ring order.
const NAMES: [&str; 5] = ["luda", "kefir", "yoghurt", "skyr", "lassi"];
/// The request/response protocol of step 3.
const ECHO: &str = "/pheromone/demo/echo/1.0.0";
/// The broadcast topic of step 6.
const TOPIC: &str = "demo/news";
/// How long subscriptions get to spread before the broadcast (a few control intervals).
const INTEREST_SETTLE: Duration = Duration::from_millis(1500);
/// How long every subscriber gets to receive the broadcast.
const DELIVERY_LIMIT: Duration = Duration::from_secs(10);
/// How long a closing link waits for streams still open (the broadcast streams are).
const CLOSE_GRACE: Duration = Duration::from_millis(500);
/// How long to keep listening for a (forbidden) second copy.
const DUPLICATE_WATCH: Duration = Duration::from_millis(500);

/// `12D3KooW…x7Qa9z`: enough of a peer ID to tell the nodes apart.
pub fn short_id(peer: &PeerId) -> String {
    let text = peer.to_string();
    let tail = text.len().saturating_sub(6);
    format!("{}…{}", &text[..text.len().min(8)], &text[tail..])
}

fn section(n: u32, title: &str) {
    println!();
    println!("{}", paint(&format!("{n}. {title}"), Paint::Bold));
}

fn ok(line: &str) {
    println!("   {} {line}", paint("✓", Paint::Green));
}

fn detail(line: &str) {
    println!("   {}", paint(line, Paint::Dim));
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Runs the demo; any failure ends it with an error (and a non-zero exit).
pub async fn run() -> Result<()> {
    let started = Instant::now();
    println!(
        "{}",
        paint(
            "pheromone demo: five nodes on 127.0.0.1, in this one process",
            Paint::Bold
        )
    );
    let nodes = start_nodes().await?;
    let result = narrate(&nodes).await;
    // Together: each close waits (at most the grace) for its links' goodbyes.
    futures::future::join_all(nodes.iter().map(Node::close)).await;
    result?;
    println!();
    ok(&format!(
        "demo finished in {:.1} s; every node closed its links",
        started.elapsed().as_secs_f64()
    ));
    println!(
        "   next: run a node of your own with `pheromone up`, then `pheromone status` in another terminal"
    );
    Ok(())
}

async fn start_nodes() -> Result<Vec<Node>> {
    section(1, "Nodes coming up (ephemeral ports on 127.0.0.1)");
    let mut nodes = Vec::new();
    for name in NAMES {
        let me = name.to_owned();
        let mut endpoint = EndpointConfig::default();
        endpoint.connection.close_grace = CLOSE_GRACE;
        let node = Node::builder()
            .name(name)
            .endpoint_config(endpoint)
            .listen("/ip4/127.0.0.1/tcp/0")
            .handle_requests(ECHO, move |peer: Peer, request: Bytes| {
                let me = me.clone();
                async move {
                    let text = String::from_utf8_lossy(&request).into_owned();
                    let from = peer.name().unwrap_or("a stranger").to_owned();
                    Ok(Some(Bytes::from(format!(
                        "{me} heard {text:?} from {from}"
                    ))))
                }
            })
            .handle_requests(
                state_machine::PROTOCOL,
                Machine {
                    me: name.to_owned(),
                },
            )
            .build()
            .await
            .with_context(|| format!("cannot start node {name}"))?;
        let addr = node
            .listen_addrs()
            .first()
            .map(|a| a.clone().without_p2p().to_string())
            .unwrap_or_default();
        ok(&format!(
            "{name:<8} {}  listening on {addr}",
            short_id(&node.peer_id())
        ));
        nodes.push(node);
    }
    Ok(nodes)
}

async fn narrate(nodes: &[Node]) -> Result<()> {
    link_ring(nodes).await?;
    let (luda, kefir, yoghurt) = (&nodes[0], &nodes[1], &nodes[2]);
    request_response(luda, kefir).await?;
    section(
        4,
        "The luda/yoghurt state machine in short mode (each message dials its own connection)",
    );
    // Short mode needs only an address: luda makes yoghurt a contact (dial and identify)
    // and lets that link go before the exchange starts.
    let addr = yoghurt
        .listen_addrs()
        .first()
        .cloned()
        .context("yoghurt has no listen address")?;
    luda.add_contact("yoghurt", &addr)
        .await
        .context("luda cannot reach yoghurt")?;
    luda.disconnect(&yoghurt.peer_id()).await;
    detail(
        "luda adds yoghurt as a contact (dial, identify) and closes the link: an address is enough",
    );
    let short = DispatchOptions::new().mode(ConnectionMode::Short);
    let opened = state_machine_round(luda, yoghurt, &short).await?;
    let plural = if opened == 1 { "" } else { "s" };
    ok(&format!(
        "8 messages in 4 request/response pairs over {opened} connection{plural}, each closed after its reply"
    ));
    section(
        5,
        "The same exchange in long mode (one connection, kept open, used both ways)",
    );
    let long = DispatchOptions::new().mode(ConnectionMode::Long);
    let opened = state_machine_round(luda, yoghurt, &long).await?;
    let plural = if opened == 1 { "" } else { "s" };
    let still = if luda.is_connected(&yoghurt.peer_id()) {
        "still open"
    } else {
        "closed"
    };
    ok(&format!(
        "8 messages in 4 request/response pairs over {opened} connection{plural} ({still})"
    ));
    broadcast(nodes).await
}

async fn link_ring(nodes: &[Node]) -> Result<()> {
    section(
        2,
        "Connections forming (a ring, every link authenticated and encrypted)",
    );
    for (i, from) in nodes.iter().enumerate() {
        let to = &nodes[(i + 1) % nodes.len()];
        let addr = to
            .listen_addrs()
            .first()
            .cloned()
            .context("a node has no listen address")?;
        let name = to.name().unwrap_or("?");
        let began = Instant::now();
        let contact = from
            .add_contact(name, &addr)
            .await
            .with_context(|| format!("{} cannot reach {name}", from.name().unwrap_or("?")))?;
        ok(&format!(
            "{:<8} → {:<8} connected in {}; identify says it is {:?} ({})",
            from.name().unwrap_or("?"),
            name,
            ms(began.elapsed()),
            contact.announced_name.as_deref().unwrap_or("nameless"),
            short_id(&contact.peer)
        ));
    }
    detail("Noise XX authenticates each peer ID; yamux carries many streams on each link.");
    Ok(())
}

async fn request_response(from: &Node, to: &Node) -> Result<()> {
    section(3, "A request and its response");
    let text = "hello from luda";
    println!(
        "   luda asks kefir on {ECHO}: {}",
        paint(&format!("{text:?}"), Paint::Bold)
    );
    let began = Instant::now();
    let reply = from
        .dispatch(to.peer_id(), ECHO, Bytes::from_static(text.as_bytes()))
        .await
        .context("the echo request failed")?;
    ok(&format!(
        "kefir answers: {:?} (round trip {})",
        String::from_utf8_lossy(&reply),
        ms(began.elapsed())
    ));
    Ok(())
}

/// Runs the exchange and prints it; how many connections luda and yoghurt opened
/// between them meanwhile.
async fn state_machine_round(
    luda: &Node,
    yoghurt: &Node,
    options: &DispatchOptions,
) -> Result<usize> {
    let mut events = luda.endpoint().events();
    let transcript = state_machine::exchange(luda, yoghurt, options).await?;
    for turn in &transcript {
        println!(
            "   {:>8} → {:<8} {}",
            turn.from,
            turn.to,
            paint(&turn.operation, Paint::Bold)
        );
    }
    let operations: Vec<&str> = transcript.iter().map(|t| t.operation.as_str()).collect();
    if operations != EXPECTED {
        bail!("the state machine went astray: {operations:?}");
    }
    Ok(count_connections(&mut events, &yoghurt.peer_id()))
}

/// Connections to or from `peer` that came up since `events` was taken.
fn count_connections(events: &mut Receiver<EndpointEvent>, peer: &PeerId) -> usize {
    let mut opened = 0;
    loop {
        match events.try_recv() {
            Ok(EndpointEvent::ConnectionEstablished(conn)) if conn.remote_peer() == *peer => {
                opened += 1;
            }
            Ok(_) | Err(TryRecvError::Lagged(_)) => {}
            Err(TryRecvError::Empty | TryRecvError::Closed) => return opened,
        }
    }
}

/// Fewest links from `from` to each node over the connections open among `nodes`
/// (`usize::MAX`: not connected).
fn link_distances(nodes: &[Node], from: usize) -> Vec<usize> {
    let mut dist = vec![usize::MAX; nodes.len()];
    dist[from] = 0;
    let mut queue = std::collections::VecDeque::from([from]);
    while let Some(x) = queue.pop_front() {
        for (y, node) in nodes.iter().enumerate() {
            if dist[y] == usize::MAX && nodes[x].is_connected(&node.peer_id()) {
                dist[y] = dist[x] + 1;
                queue.push_back(y);
            }
        }
    }
    dist
}

async fn broadcast(nodes: &[Node]) -> Result<()> {
    section(
        6,
        &format!("A broadcast on {TOPIC:?} reaching every node once"),
    );
    let mut subscriptions: Vec<(&Node, Subscription)> = Vec::new();
    for node in nodes {
        subscriptions.push((node, node.subscribe(TOPIC).await?));
    }
    let publisher_index = nodes.len() - 1;
    let publisher = &nodes[publisher_index];
    // The shortest way over the links open now (the ring, and luda's long-mode link to
    // yoghurt if it is still up), to read each copy's hops against.
    let distances = link_distances(nodes, publisher_index);
    let publisher_name = publisher.name().unwrap_or("?");
    detail(&format!(
        "every node subscribes; interest spreads to the neighbours; {publisher_name} publishes"
    ));
    detail(
        "the publisher pushes to all its neighbours; from there the copy follows the \
         broadcast tree, which spans the links without closing a loop",
    );
    tokio::time::sleep(INTEREST_SETTLE).await;
    let text = format!("fresh milk at {publisher_name}'s");
    let id = publisher
        .broadcast(TOPIC, text.clone().into_bytes())
        .await?;
    // The publisher does not deliver its own message; everyone else must, once.
    let mut received = 0;
    let mut listeners = 0;
    for (index, (node, subscription)) in subscriptions.iter_mut().enumerate() {
        if node.peer_id() == publisher.peer_id() {
            continue;
        }
        let links = distances[index];
        listeners += 1;
        let name = node.name().unwrap_or("?");
        let first = tokio::time::timeout(DELIVERY_LIMIT, async {
            loop {
                match subscription.recv().await {
                    Some(m) if m.id == id => return Some(m),
                    Some(_) => {}
                    None => return None,
                }
            }
        })
        .await
        .ok()
        .flatten();
        let Some(message) = first else {
            println!("   {} {name:<8} did not receive it", paint("✗", Paint::Red));
            continue;
        };
        let hops = message.hops;
        let plural = if hops == 1 { "" } else { "s" };
        let route = if usize::from(hops) == links {
            "the shortest way".to_owned()
        } else {
            format!(
                "{links} link{} away; the tree took the long way round",
                if links == 1 { "" } else { "s" }
            )
        };
        ok(&format!(
            "{name:<8} received {:?}, {hops} hop{plural} from {publisher_name} ({route})",
            String::from_utf8_lossy(&message.data),
        ));
        received += 1;
    }
    // Listen a little longer: a second copy of the message would be a storm.
    tokio::time::sleep(DUPLICATE_WATCH).await;
    let mut duplicates = 0;
    for (_, subscription) in &mut subscriptions {
        while let Ok(Some(m)) =
            tokio::time::timeout(Duration::from_millis(1), subscription.recv()).await
        {
            if m.id == id {
                duplicates += 1;
            }
        }
    }
    let mut dropped = 0;
    for node in nodes {
        dropped += node.broadcast_metrics().await?.duplicates;
    }
    if received != listeners || duplicates != 0 {
        bail!(
            "the broadcast reached {received} of {listeners} nodes, with {duplicates} duplicate deliveries"
        );
    }
    ok(&format!(
        "{received} of {listeners} nodes received it exactly once; 0 duplicate deliveries"
    ));
    detail(&format!(
        "{dropped} redundant copies were recognised by message ID and dropped, not forwarded"
    ));
    Ok(())
}
