//! `expose`, `forward`, `forwards`, `unexpose` and `unforward`: TCP services reached
//! through the mesh, like `ipfs p2p`. Each asks the daemon once and prints the answer (the
//! real listen port of a forward, counters of both kinds) for a person or as JSON.

use super::style::{paint, peer_label, transfer, Paint};
use super::{unexpected, Ctx};
use crate::control_proto::{ExposeEntry, ForwardEntry, Op, Reply};
use anyhow::Result;

/// `pheromone expose NAME --target HOST:PORT (--allow PEER… | --allow-any)`.
pub async fn expose(
    ctx: &Ctx,
    name: String,
    target: String,
    allow: Vec<String>,
    allow_any: bool,
) -> Result<()> {
    let reply = ctx
        .client()
        .await?
        .call(Op::Expose {
            name,
            target,
            allow,
            allow_any,
        })
        .await?;
    let Reply::Exposed(entry) = reply else {
        return Err(unexpected(&reply));
    };
    if ctx.json {
        return ctx.print_json(&entry);
    }
    println!(
        "exposed {} as {} to {}",
        entry.target,
        entry.protocol,
        allowed(&entry)
    );
    Ok(())
}

fn allowed(entry: &ExposeEntry) -> String {
    match &entry.allow {
        None => "every peer".to_owned(),
        Some(peers) if peers.len() == 1 => peers[0].clone(),
        Some(peers) => format!("{} peers", peers.len()),
    }
}

/// `pheromone forward NAME PEER --listen HOST:PORT`.
pub async fn forward(ctx: &Ctx, name: String, peer: String, listen: String) -> Result<()> {
    let mut client = ctx.client().await?;
    let bar = ctx.spinner(format!("setting up {listen} → {peer} /x/{name}"));
    let reply = client.call(Op::Forward { name, peer, listen }).await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let reply = reply?;
    let Reply::Forwarding(entry) = reply else {
        return Err(unexpected(&reply));
    };
    if ctx.json {
        return ctx.print_json(&entry);
    }
    println!(
        "forwarding {} to {} on {}",
        entry.listen,
        entry.protocol,
        peer_label(&entry.peer_id, entry.peer_name.as_deref())
    );
    Ok(())
}

/// `pheromone forwards`.
pub async fn list(ctx: &Ctx) -> Result<()> {
    let reply = ctx.client().await?.call(Op::Forwards).await?;
    let Reply::Forwards(list) = reply else {
        return Err(unexpected(&reply));
    };
    if ctx.json {
        return ctx.print_json(&list);
    }
    if list.exposed.is_empty() && list.forwarded.is_empty() {
        println!("nothing exposed or forwarded");
        return Ok(());
    }
    if !list.exposed.is_empty() {
        println!("{}", paint("exposed", Paint::Bold));
        let header = format!(
            "  {:<16}  {:<21}  {:<14}  {:>4}  {:>6}  {:>6}  {:>12}  {:>12}",
            "NAME", "TARGET", "ALLOW", "OPEN", "TOTAL", "FAILED", "IN", "OUT"
        );
        println!("{}", paint(&header, Paint::Bold));
        for e in &list.exposed {
            println!(
                "  {:<16}  {:<21}  {:<14}  {:>4}  {:>6}  {:>6}  {:>12}  {:>12}",
                e.name,
                e.target,
                allowed(e),
                e.stats.open,
                e.stats.total,
                e.stats.failed,
                transfer(e.stats.bytes_in),
                transfer(e.stats.bytes_out)
            );
        }
    }
    if !list.forwarded.is_empty() {
        println!("{}", paint("forwarded", Paint::Bold));
        let header = format!(
            "  {:<21}  {:<16}  {:<20}  {:>4}  {:>6}  {:>6}  {:>12}  {:>12}",
            "LISTEN", "NAME", "PEER", "OPEN", "TOTAL", "FAILED", "IN", "OUT"
        );
        println!("{}", paint(&header, Paint::Bold));
        for f in &list.forwarded {
            println!(
                "  {:<21}  {:<16}  {:<20}  {:>4}  {:>6}  {:>6}  {:>12}  {:>12}",
                f.listen,
                f.name,
                f.peer_name.clone().unwrap_or_else(|| f.peer_id.clone()),
                f.stats.open,
                f.stats.total,
                f.stats.failed,
                transfer(f.stats.bytes_in),
                transfer(f.stats.bytes_out)
            );
        }
    }
    Ok(())
}

/// `pheromone unexpose NAME`.
pub async fn unexpose(ctx: &Ctx, name: String) -> Result<()> {
    let reply = ctx.client().await?.call(Op::Unexpose { name }).await?;
    let Reply::Exposed(entry) = reply else {
        return Err(unexpected(&reply));
    };
    if ctx.json {
        return ctx.print_json(&entry);
    }
    println!(
        "unexposed {} ({} connections served, {} in, {} out)",
        entry.protocol,
        entry.stats.total,
        transfer(entry.stats.bytes_in),
        transfer(entry.stats.bytes_out)
    );
    Ok(())
}

/// `pheromone unforward ADDR`.
pub async fn unforward(ctx: &Ctx, listen: String) -> Result<()> {
    let reply = ctx.client().await?.call(Op::Unforward { listen }).await?;
    let Reply::Forwarding(entry) = reply else {
        return Err(unexpected(&reply));
    };
    if ctx.json {
        return ctx.print_json(&entry);
    }
    print_closed(&entry);
    Ok(())
}

fn print_closed(entry: &ForwardEntry) {
    println!(
        "stopped forwarding {} to {} ({} connections served, {} in, {} out)",
        entry.listen,
        entry.protocol,
        entry.stats.total,
        transfer(entry.stats.bytes_in),
        transfer(entry.stats.bytes_out)
    );
}
