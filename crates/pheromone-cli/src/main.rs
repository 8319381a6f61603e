//! The `pheromone` binary: runs a node and talks to peers.
//!
//! This first cut runs a node in the foreground (`up`), prints the identity (`id`) and
//! pings a peer by address (`ping`). The daemon with its control socket and the other
//! subcommands come with the CLI work (issue 3).

#![allow(clippy::disallowed_methods)] // a binary reads the clock

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use pheromone::{Endpoint, EndpointConfig, Multiaddr};
use std::path::PathBuf;
use std::time::Duration;

/// A peer-to-peer network that speaks libp2p.
#[derive(Parser)]
#[command(name = "pheromone", version, about)]
struct Cli {
    /// Where the node keeps its identity (default: the platform data dir).
    #[arg(long, global = true, env = "PHEROMONE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Prints this node's peer ID (creating the identity if there is none).
    Id,
    /// Runs a node in the foreground until Ctrl-C.
    Up {
        /// Address to listen on (repeatable); `tcp/0` picks a free port.
        #[arg(long, default_values_t = vec!["/ip4/0.0.0.0/tcp/4001".to_owned()])]
        listen: Vec<String>,
    },
    /// Dials a peer by address and pings it.
    Ping {
        /// `host:port` or a multiaddr, optionally ending in `/p2p/<peer id>`.
        addr: String,
        /// Number of pings.
        #[arg(short = 'c', long, default_value_t = 4)]
        count: u32,
    },
}

fn data_dir(flag: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(dir) = flag {
        return Ok(dir);
    }
    let home = std::env::var_os("HOME").context("HOME is not set; pass --data-dir")?;
    Ok(PathBuf::from(home).join(".local/share/pheromone"))
}

fn endpoint(data_dir: &std::path::Path) -> Result<Endpoint> {
    let keypair = pheromone::identity_file::load_or_generate(&data_dir.join("identity.key"))?;
    Ok(Endpoint::new(keypair, EndpointConfig::default()))
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(Cli::parse()).await {
        eprintln!("pheromone: {e}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    let dir = data_dir(cli.data_dir)?;
    match cli.command {
        Command::Id => println!("{}", endpoint(&dir)?.peer_id()),
        Command::Up { listen } => {
            let node = endpoint(&dir)?;
            println!("peer id: {}", node.peer_id());
            for addr in &listen {
                let addr: Multiaddr = pheromone_core_addr(addr)?;
                let bound = node.listen(&addr)?;
                println!("listening on {bound}");
            }
            tokio::signal::ctrl_c().await?;
            node.close().await;
        }
        Command::Ping { addr, count } => {
            let node = endpoint(&dir)?;
            let target = pheromone_core_addr(&addr)?;
            let conn = node.dial(&target).await?;
            println!("PING {} ({})", conn.remote_peer(), conn.info().remote_addr);
            let mut rtts = Vec::new();
            for seq in 1..=count {
                let rtt = node.ping(&conn).await?;
                println!(
                    "pong from {}: seq={seq} time={:.3} ms",
                    conn.remote_peer(),
                    ms(rtt)
                );
                rtts.push(rtt);
                if seq < count {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            let min = rtts.iter().min().copied().unwrap_or_default();
            let max = rtts.iter().max().copied().unwrap_or_default();
            let avg = rtts.iter().sum::<Duration>() / rtts.len().max(1) as u32;
            println!(
                "{count} pings, rtt min/avg/max = {:.3}/{:.3}/{:.3} ms",
                ms(min),
                ms(avg),
                ms(max)
            );
            node.close().await;
        }
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn pheromone_core_addr(text: &str) -> Result<Multiaddr> {
    pheromone::parse_dial_address(text).map_err(Into::into)
}
