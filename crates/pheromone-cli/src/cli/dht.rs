//! `pheromone dht find` and `pheromone dht table`: the daemon's DHT, printed for people
//! (or as JSON with `--json`).

use super::style::{paint, Paint};
use super::{unexpected, Ctx};
use crate::control_proto::{DhtEntry, Op, Reply};
use anyhow::Result;

/// `pheromone dht find PEER`.
pub async fn find(ctx: &Ctx, peer: String) -> Result<()> {
    let mut client = ctx.client().await?;
    let bar = ctx.spinner(format!("looking {peer} up in the DHT"));
    let reply = client.call(Op::DhtFind { peer }).await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let reply = reply?;
    let Reply::DhtFound(found) = reply else {
        return Err(unexpected(&reply));
    };
    if ctx.json {
        return ctx.print_json(&found);
    }
    let who = match &found.name {
        Some(name) => format!("{name} ({})", found.peer_id),
        None => found.peer_id.clone(),
    };
    println!(
        "{} found in {:.1} ms: {} hop(s), {} request(s), {} failed",
        paint(&who, Paint::Bold),
        found.duration_ms,
        found.hops,
        found.messages,
        found.failures
    );
    if found.addrs.is_empty() {
        println!("  no address known (reachable only through relays)");
    }
    for addr in &found.addrs {
        println!("  {addr}");
    }
    Ok(())
}

/// `pheromone dht table`.
pub async fn table(ctx: &Ctx) -> Result<()> {
    let mut client = ctx.client().await?;
    let bar = ctx.spinner("reading the DHT table".to_owned());
    let reply = client.call(Op::DhtTable).await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let reply = reply?;
    let Reply::DhtTable(table) = reply else {
        return Err(unexpected(&reply));
    };
    if ctx.json {
        return ctx.print_json(&table);
    }
    println!(
        "{} entries in {} bucket(s) around {}",
        table.size,
        table.buckets.len(),
        table.local
    );
    for bucket in &table.buckets {
        println!(
            "{}",
            paint(
                &format!(
                    "bucket {:>3}: {} entr{}, {} replacement(s)",
                    bucket.index,
                    bucket.entries.len(),
                    if bucket.entries.len() == 1 {
                        "y"
                    } else {
                        "ies"
                    },
                    bucket.replacements.len()
                ),
                Paint::Bold
            )
        );
        for entry in &bucket.entries {
            println!("  {}", line(entry));
        }
    }
    Ok(())
}

fn line(e: &DhtEntry) -> String {
    format!(
        "{:<52}  {:<12}  {:>8}  {:<9}  {}",
        e.peer_id,
        e.name.as_deref().unwrap_or("-"),
        format!("{:.0}s ago", e.last_seen_secs),
        if e.connected { "connected" } else { "-" },
        e.addrs.first().map_or("-", String::as_str)
    )
}
