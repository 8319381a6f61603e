//! `status`, `peers`, `routes`, `connect` and `disconnect`: what the node is and whom it
//! is linked to. Each asks the daemon once and prints the answer as a table for a person
//! or as one JSON value with `--json`.

use super::style::{human_secs, paint, peer_label, rtt, Paint};
use super::{unexpected, Ctx};
use crate::control_proto::{Op, PeerInfo, Reply};
use anyhow::Result;

/// `pheromone status`.
pub async fn status(ctx: &Ctx) -> Result<()> {
    let reply = ctx.client().await?.call(Op::Status).await?;
    let Reply::Status(status) = reply else {
        return Err(unexpected(&reply));
    };
    if ctx.json {
        return ctx.print_json(&status);
    }
    let label = |text: &str| paint(&format!("{text:<12}"), Paint::Bold);
    println!("{} {}", label("peer id"), status.peer_id);
    if let Some(name) = &status.name {
        println!("{} {name}", label("name"));
    }
    println!("{} {}", label("mode"), status.mode);
    println!("{} {}", label("uptime"), human_secs(status.uptime_secs));
    println!("{} {}", label("connections"), status.connections);
    println!("{} {} waiting", label("inbox"), status.inbox_messages);
    for (i, addr) in status.listen_addrs.iter().enumerate() {
        let head = if i == 0 {
            label("listening")
        } else {
            " ".repeat(12)
        };
        println!("{head} {addr}");
    }
    Ok(())
}

/// `pheromone peers`.
pub async fn peers(ctx: &Ctx) -> Result<()> {
    let reply = ctx.client().await?.call(Op::Peers).await?;
    let Reply::Peers(peers) = reply else {
        return Err(unexpected(&reply));
    };
    if ctx.json {
        return ctx.print_json(&peers);
    }
    if peers.is_empty() {
        println!("no peers connected");
        return Ok(());
    }
    let name_width = peers
        .iter()
        .filter_map(|p| p.name.as_deref().map(str::len))
        .max()
        .unwrap_or(1)
        .max(4);
    let header = format!(
        "{:<52}  {:<name_width$}  {:<9}  {:<9}  {:>10}  {:>10}  {:<16}  ADDRESS",
        "PEER ID", "NAME", "TRANSPORT", "DIRECTION", "SINCE", "RTT", "CIPHER"
    );
    println!("{}", paint(&header, Paint::Bold));
    for p in &peers {
        // The transport new streams use, and the others' after a `+` (`quic+tcp`).
        let mut transports: Vec<&str> = vec![p.transport.as_deref().unwrap_or("-")];
        for c in &p.connections {
            if !transports.contains(&c.transport.as_str()) {
                transports.push(&c.transport);
            }
        }
        println!(
            "{:<52}  {:<name_width$}  {:<9}  {:<9}  {:>10}  {:>10}  {:<16}  {}",
            p.peer_id,
            p.name.as_deref().unwrap_or("-"),
            transports.join("+"),
            p.direction,
            human_secs(p.connected_secs),
            rtt(p.rtt_ms),
            p.cipher.as_deref().unwrap_or("-"),
            p.addrs.join(", ")
        );
    }
    Ok(())
}

/// `pheromone hosts`: the peer store, seen most recently first.
pub async fn hosts(ctx: &Ctx) -> Result<()> {
    let reply = ctx.client().await?.call(Op::Hosts).await?;
    let Reply::Hosts(hosts) = reply else {
        return Err(unexpected(&reply));
    };
    if ctx.json {
        return ctx.print_json(&hosts);
    }
    if hosts.is_empty() {
        println!("no peers remembered yet");
        return Ok(());
    }
    let name_width = hosts
        .iter()
        .filter_map(|h| h.name.as_deref().map(str::len))
        .max()
        .unwrap_or(1)
        .max(4);
    let header = format!(
        "{:<52}  {:<name_width$}  {:<13}  {:>10}  {:>9}  ADDRESSES",
        "PEER ID", "NAME", "REACHED", "LAST SEEN", "OK/FAILED"
    );
    println!("{}", paint(&header, Paint::Bold));
    let now = super::super::daemon::net::unix_secs(std::time::SystemTime::now());
    for h in &hosts {
        let reached = match (h.reached.as_str(), &h.relay) {
            ("direct", _) => "direct".to_owned(),
            ("relay", Some(relay)) => format!("via {}", &relay[relay.len().saturating_sub(6)..]),
            ("relay", None) => "via relay".to_owned(),
            _ => "not connected".to_owned(),
        };
        let seen = if h.reached == "direct" {
            "now".to_owned()
        } else {
            format!("{} ago", human_secs(now.saturating_sub(h.last_seen)))
        };
        println!(
            "{:<52}  {:<name_width$}  {:<13}  {:>10}  {:>9}  {}",
            h.peer_id,
            h.name.as_deref().unwrap_or("-"),
            reached,
            seen,
            format!("{}/{}", h.successes, h.failures),
            h.addrs.join(", ")
        );
    }
    Ok(())
}

/// `pheromone routes`.
pub async fn routes(ctx: &Ctx) -> Result<()> {
    let reply = ctx.client().await?.call(Op::Routes).await?;
    let Reply::Routes(routes) = reply else {
        return Err(unexpected(&reply));
    };
    if ctx.json {
        return ctx.print_json(&routes);
    }
    if routes.is_empty() {
        println!("no routes: no peer connected, relayed or added with `pheromone connect`");
        return Ok(());
    }
    let header = format!(
        "{:<52}  {:<12}  {:<6}  {:<12}  {:>4}  {:>6}  {:>10}  ADDRESS",
        "PEER ID", "NAME", "VIA", "NEXT HOP", "HOPS", "METRIC", "RTT"
    );
    println!("{}", paint(&header, Paint::Bold));
    for r in &routes {
        let next_hop = match (&r.next_hop, &r.next_hop_name) {
            _ if r.direct => "-".to_owned(),
            (_, Some(name)) => name.clone(),
            (Some(id), None) => short_id(id),
            (None, None) => "-".to_owned(),
        };
        let hops = if r.hops == 0 {
            "?".to_owned()
        } else {
            r.hops.to_string()
        };
        println!(
            "{:<52}  {:<12}  {:<6}  {:<12}  {:>4}  {:>6}  {:>10}  {}",
            r.peer_id,
            r.name.as_deref().unwrap_or("-"),
            r.via,
            next_hop,
            hops,
            r.metric.map_or_else(|| "-".to_owned(), |m| m.to_string()),
            rtt(r.rtt_ms),
            if r.addr.is_empty() { "-" } else { &r.addr }
        );
    }
    Ok(())
}

/// The last characters of a peer ID, enough to tell peers apart in a narrow column.
fn short_id(id: &str) -> String {
    let tail: String = id
        .chars()
        .rev()
        .take(8)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("…{tail}")
}

/// `pheromone dashboard`: the dashboard's URL (with its token) and the metrics URL.
pub async fn dashboard(ctx: &Ctx) -> Result<()> {
    let reply = ctx.client().await?.call(Op::Dashboard).await?;
    let Reply::Dashboard { url, metrics_url } = reply else {
        return Err(unexpected(&reply));
    };
    if ctx.json {
        return ctx.print_json(&serde_json::json!({ "url": url, "metrics_url": metrics_url }));
    }
    match &url {
        Some(url) => println!("{url}"),
        None => anyhow::bail!(
            "the daemon serves no dashboard; start it with `pheromone up --dashboard 127.0.0.1:PORT`"
        ),
    }
    if let Some(m) = metrics_url {
        eprintln!("metrics: {m}");
    }
    Ok(())
}

/// `pheromone connect ADDR`.
pub async fn connect(ctx: &Ctx, addr: String) -> Result<()> {
    let mut client = ctx.client().await?;
    let bar = ctx.spinner(format!("connecting to {addr}"));
    let reply = client.call(Op::Connect { addr }).await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let reply = reply?;
    let Reply::Connected(peer) = reply else {
        return Err(unexpected(&reply));
    };
    if ctx.json {
        return ctx.print_json(&peer);
    }
    print_connected(&peer);
    Ok(())
}

fn print_connected(peer: &PeerInfo) {
    if peer.connections.is_empty() {
        // Short mode: reached and identified; each request dials its own link.
        println!(
            "{} {} at {} (short mode: each request dials its own link)",
            paint("reached", Paint::Green),
            peer_label(&peer.peer_id, peer.name.as_deref()),
            peer.addrs.join(", "),
        );
        return;
    }
    println!(
        "{} {} at {} ({})",
        paint("connected to", Paint::Green),
        peer_label(&peer.peer_id, peer.name.as_deref()),
        peer.addrs.join(", "),
        peer.direction
    );
}

/// `pheromone disconnect PEER`.
pub async fn disconnect(ctx: &Ctx, peer: String) -> Result<()> {
    let reply = ctx.client().await?.call(Op::Disconnect { peer }).await?;
    let Reply::Disconnected {
        peer_id,
        connections,
    } = &reply
    else {
        return Err(unexpected(&reply));
    };
    if ctx.json {
        return ctx.print_json(&serde_json::json!({
            "peer_id": peer_id,
            "connections": connections,
        }));
    }
    let plural = if *connections == 1 { "" } else { "s" };
    println!("disconnected from {peer_id} ({connections} connection{plural} closed)");
    Ok(())
}
