//! `pheromone alias NAME PEER_ID`, `pheromone alias --list` and `pheromone unalias NAME`:
//! the operator's names for peers, the only names `exec`, `forward` and `expose --allow`
//! accept (names peers announce are for display, ping, send and dispatch).

use super::{unexpected, Ctx};
use crate::control_proto::{AliasEntry, Op, Reply};
use anyhow::{bail, Result};

/// `alias NAME PEER` binds; `alias --list` (or no arguments) lists.
pub async fn alias(ctx: &Ctx, name: Option<String>, peer: Option<String>) -> Result<()> {
    let (name, peer) = match (name, peer) {
        (Some(name), Some(peer)) => (name, peer),
        (None, None) => return list(ctx).await,
        _ => bail!("give NAME and PEER_ID to bind an alias, or --list to see them"),
    };
    let reply = ctx.client().await?.call(Op::Alias { name, peer }).await?;
    let Reply::Alias(entry) = &reply else {
        return Err(unexpected(&reply));
    };
    if ctx.json {
        return ctx.print_json(entry);
    }
    println!("{} = {}", entry.name, entry.peer_id);
    Ok(())
}

/// `unalias NAME`.
pub async fn unalias(ctx: &Ctx, name: String) -> Result<()> {
    let reply = ctx.client().await?.call(Op::Unalias { name }).await?;
    let Reply::Alias(entry) = &reply else {
        return Err(unexpected(&reply));
    };
    if ctx.json {
        return ctx.print_json(entry);
    }
    println!("removed {} (was {})", entry.name, entry.peer_id);
    Ok(())
}

async fn list(ctx: &Ctx) -> Result<()> {
    let reply = ctx.client().await?.call(Op::Aliases).await?;
    let Reply::Aliases(entries) = &reply else {
        return Err(unexpected(&reply));
    };
    if ctx.json {
        return ctx.print_json(entries);
    }
    print_table(entries);
    Ok(())
}

fn print_table(entries: &[AliasEntry]) {
    if entries.is_empty() {
        println!("no aliases (bind one with `pheromone alias NAME PEER_ID`)");
        return;
    }
    let width = entries
        .iter()
        .map(|e| e.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    println!("{:width$}  {:52}  SOURCE", "NAME", "PEER");
    for e in entries {
        println!("{:width$}  {:52}  {}", e.name, e.peer_id, e.source);
    }
}
