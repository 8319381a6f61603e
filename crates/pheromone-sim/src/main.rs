//! `pheromone-sim`: runs simulation scenarios and prints one JSON object per run.
//!
//! Subcommands map one-to-one to modules of `pheromone_sim::scenario`: `broadcast`,
//! `kad` (discovery), `route` (multi-hop routing), `mesh` (all of them together) and
//! `adversary` (attacks on kad and routing).

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use pheromone_core::broadcast::Strategy;
use pheromone_core::identity::Keypair;
use pheromone_sim::scenario::adversary::{self, RouteAttackParams};
use pheromone_sim::scenario::adversary_kad::{self, EclipseParams};
use pheromone_sim::scenario::broadcast::{self, BroadcastParams};
use pheromone_sim::scenario::kad::{self, KadParams};
use pheromone_sim::scenario::mesh::{self, MeshParams};
use pheromone_sim::scenario::route::{self as route_scenario, RouteParams, Topology};
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "pheromone-sim",
    about = "Deterministic multi-node simulations of pheromone protocols"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Topic broadcast on a random connected graph; one JSON line per (nodes, strategy).
    Broadcast(BroadcastArgs),
    /// Kademlia: N nodes join from one bootstrap node, then M lookups of random live
    /// nodes, optionally under churn; one JSON object.
    Kad(KadArgs),
    /// Multi-hop routing convergence and repair; one JSON line per (nodes, topology).
    Route(RouteArgs),
    /// Every overlay together (discovery with the connection manager, routing,
    /// broadcast) on one seeded random network; one JSON object.
    Mesh(MeshArgs),
    /// Attacks: `adversary route` (route poisoning: forged seqnos, minted destinations,
    /// relays that lie about metrics and drop traffic) or `adversary kad` (eclipse: IDs
    /// minted next to the attacked keys, lookups answered with colluders only); one JSON
    /// line.
    Adversary {
        /// What to attack.
        #[command(subcommand)]
        attack: Attack,
    },
}

#[derive(Subcommand)]
enum Attack {
    /// Route poisoning on a random mesh.
    Route {
        /// Nodes, adversaries included.
        #[arg(long, default_value_t = 100)]
        nodes: usize,
        /// Fraction of adversaries.
        #[arg(long, default_value_t = 0.2)]
        adversaries: f64,
        /// Average degree of the mesh.
        #[arg(long, default_value_t = 6)]
        degree: usize,
        /// Virtual seconds the attack runs.
        #[arg(long, default_value_t = 60)]
        secs: u64,
        /// Seed of the run.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Eclipse attempts on Kademlia lookups.
    Kad {
        /// Nodes, adversaries included.
        #[arg(long, default_value_t = 500)]
        nodes: usize,
        /// Fraction of adversaries.
        #[arg(long, default_value_t = 0.2)]
        adversaries: f64,
        /// Honest nodes attacked (the adversaries split among them).
        #[arg(long, default_value_t = 4)]
        targets: usize,
        /// Leading key bits each adversary shares with its target.
        #[arg(long, default_value_t = 12)]
        prefix_bits: usize,
        /// /24 subnets the adversaries live in.
        #[arg(long, default_value_t = 4)]
        subnets: usize,
        /// Lookups of attacked nodes from random honest nodes.
        #[arg(long, default_value_t = 400)]
        lookups: usize,
        /// Lookup diversity cap (peers per /24 among a lookup's k closest; 0 = off).
        #[arg(long, default_value_t = 2)]
        per_subnet: usize,
        /// Seed of the run.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

#[derive(clap::Args)]
struct MeshArgs {
    /// Nodes joining one after another.
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Seed of the run; the same seed gives the same run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Leave routing out (its table holds a row per destination).
    #[arg(long)]
    no_route: bool,
    /// Lookups of random nodes from random nodes.
    #[arg(long, default_value_t = 1000)]
    lookups: usize,
    /// Broadcasts from random origins.
    #[arg(long, default_value_t = 20)]
    broadcasts: usize,
    /// Milliseconds between two joins.
    #[arg(long, default_value_t = 2)]
    join_interval_ms: u64,
    /// Seconds of quiet after the last join.
    #[arg(long, default_value_t = 30)]
    settle_secs: u64,
}

#[derive(clap::Args)]
struct KadArgs {
    /// Nodes joining one after another from a single bootstrap node.
    #[arg(long, default_value_t = 10_000)]
    nodes: usize,
    /// Lookups of random live nodes from random live nodes.
    #[arg(long, default_value_t = 1000)]
    lookups: usize,
    /// Fraction of nodes leaving without notice (and as many joining) during the lookups.
    #[arg(long, default_value_t = 0.0)]
    churn: f64,
    /// Seed of the run; the same seed gives the same run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Milliseconds between two joins.
    #[arg(long, default_value_t = 2)]
    join_interval_ms: u64,
    /// Milliseconds between two lookups.
    #[arg(long, default_value_t = 10)]
    lookup_interval_ms: u64,
    /// Per-request timeout in milliseconds (the protocol default is 10,000).
    #[arg(long, default_value_t = 10_000)]
    request_timeout_ms: u64,
}

#[derive(clap::Args)]
struct RouteArgs {
    /// `line`, `ring`, `tree` or `random`; a comma-separated list runs each.
    #[arg(long, value_delimiter = ',', default_value = "random")]
    topology: Vec<Topology>,
    /// Number of nodes; a comma-separated list runs each size.
    #[arg(long, value_delimiter = ',', default_value = "100")]
    nodes: Vec<usize>,
    /// Links failed one at a time after convergence.
    #[arg(long, default_value_t = 0)]
    fail_links: usize,
    /// Nodes killed one at a time after the link failures.
    #[arg(long, default_value_t = 0)]
    kill_nodes: usize,
    /// Average degree of the random mesh.
    #[arg(long, default_value_t = 6)]
    degree: usize,
    /// Seed of the run; the same seed gives the same run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seconds of steady state over which control traffic is measured (0: skip).
    #[arg(long, default_value_t = 60)]
    steady_secs: u64,
}

#[derive(clap::Args)]
struct BroadcastArgs {
    /// Number of nodes; a comma-separated list runs each size.
    #[arg(long, value_delimiter = ',', default_value = "1000")]
    nodes: Vec<usize>,
    /// `tree` or `flood`; a comma-separated list runs each.
    #[arg(long, value_delimiter = ',', default_value = "tree")]
    strategy: Vec<Strategy>,
    /// Average degree of the random graph.
    #[arg(long, default_value_t = 8)]
    degree: usize,
    /// Messages published from random origins.
    #[arg(long, default_value_t = 100)]
    messages: usize,
    /// Fraction of nodes killed mid-run.
    #[arg(long, default_value_t = 0.0)]
    kill: f64,
    /// Loss probability on every link.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Seed of the run; the same seed gives the same run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Fraction of nodes subscribed to the topic (the rest only relay).
    #[arg(long, default_value_t = 1.0)]
    subscribers: f64,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 256)]
    payload: usize,
    /// Milliseconds between publications.
    #[arg(long, default_value_t = 50)]
    interval_ms: u64,
    /// Verify every signature on every node instead of sharing results within the run.
    #[arg(long)]
    full_verify: bool,
    /// Tree strategy: links a message is flooded over near its origin before it follows
    /// the tree; a comma-separated list sweeps the trade-off (copies against latency).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    eager_hops: Vec<u8>,
    /// Link latencies in milliseconds, drawn uniformly from LO,HI (`1,1`: equal links, so
    /// that hops stand for time, as on loopback).
    #[arg(long, value_delimiter = ',', num_args = 1.., default_value = "5,50")]
    latency_ms: Vec<u64>,
    /// Run on the graph in this file (one edge `A B` of node indices per line, `#`
    /// comments) instead of a random one; `--nodes` must cover its indices.
    #[arg(long)]
    graph: Option<std::path::PathBuf>,
    /// Identity key files (libp2p protobuf, as `pheromone up` writes them), one path per
    /// line in node order, so that the nodes have real daemons' peer IDs.
    #[arg(long)]
    identities: Option<std::path::PathBuf>,
}

/// Reads an edge list: one `A B` pair of node indices per line; `#` starts a comment.
fn read_graph(path: &std::path::Path) -> Result<Vec<(usize, usize)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the graph file {}", path.display()))?;
    let mut edges = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut fields = line.split_whitespace().map(str::parse::<usize>);
        match (fields.next(), fields.next(), fields.next()) {
            (Some(Ok(a)), Some(Ok(b)), None) => edges.push((a, b)),
            _ => anyhow::bail!(
                "{}:{}: expected `A B`, got {line:?}",
                path.display(),
                number + 1
            ),
        }
    }
    Ok(edges)
}

/// Reads the identity key files listed in `path`, one per line.
fn read_identities(path: &std::path::Path) -> Result<Vec<Keypair>> {
    let list = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the identity list {}", path.display()))?;
    list.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|file| {
            let bytes = std::fs::read(file).with_context(|| format!("cannot read {file}"))?;
            Keypair::from_protobuf_encoding(&bytes)
                .with_context(|| format!("{file} is not an identity key"))
        })
        .collect()
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Broadcast(args) => {
            let edges = args.graph.as_deref().map(read_graph).transpose()?;
            let keys = match args.identities.as_deref() {
                Some(path) => read_identities(path)?,
                None => Vec::new(),
            };
            let lo = args.latency_ms.first().copied().unwrap_or(5);
            let hi = args.latency_ms.get(1).copied().unwrap_or(lo).max(lo);
            let latency = (Duration::from_millis(lo), Duration::from_millis(hi));
            for &nodes in &args.nodes {
                for &strategy in &args.strategy {
                    for &eager_hops in &args.eager_hops {
                        if strategy == Strategy::Flood && eager_hops != args.eager_hops[0] {
                            // Flooding has no tree to sweep.
                            continue;
                        }
                        let params = BroadcastParams {
                            nodes,
                            strategy,
                            degree: args.degree,
                            messages: args.messages,
                            kill: args.kill,
                            loss: args.loss,
                            seed: args.seed,
                            subscribers: args.subscribers,
                            payload: args.payload,
                            interval: Duration::from_millis(args.interval_ms),
                            full_verify: args.full_verify,
                            eager_hops,
                            latency,
                            edges: edges.clone(),
                            keys: keys.clone(),
                        };
                        let report = broadcast::run(&params);
                        println!("{}", serde_json::to_string(&report)?);
                    }
                }
            }
        }
        Command::Kad(args) => {
            let mut params = KadParams {
                nodes: args.nodes,
                lookups: args.lookups,
                churn: args.churn,
                seed: args.seed,
                join_interval: Duration::from_millis(args.join_interval_ms),
                lookup_interval: Duration::from_millis(args.lookup_interval_ms),
                ..KadParams::default()
            };
            params.config.request_timeout = Duration::from_millis(args.request_timeout_ms);
            println!("{}", serde_json::to_string(&kad::run(&params))?);
        }
        Command::Route(args) => {
            for &nodes in &args.nodes {
                for &topology in &args.topology {
                    let params = RouteParams {
                        nodes,
                        topology,
                        degree: args.degree,
                        fail_links: args.fail_links,
                        kill_nodes: args.kill_nodes,
                        seed: args.seed,
                        steady_window: Duration::from_secs(args.steady_secs),
                        ..RouteParams::default()
                    };
                    let report = route_scenario::run(&params);
                    println!("{}", serde_json::to_string(&report)?);
                }
            }
        }
        Command::Mesh(args) => {
            let params = MeshParams {
                nodes: args.nodes,
                seed: args.seed,
                route: !args.no_route,
                lookups: args.lookups,
                broadcasts: args.broadcasts,
                join_interval: Duration::from_millis(args.join_interval_ms),
                settle: Duration::from_secs(args.settle_secs),
                ..MeshParams::default()
            };
            println!("{}", serde_json::to_string(&mesh::run(&params))?);
        }
        Command::Adversary {
            attack:
                Attack::Route {
                    nodes,
                    adversaries,
                    degree,
                    secs,
                    seed,
                },
        } => {
            let params = RouteAttackParams {
                nodes,
                adversaries,
                degree,
                duration: Duration::from_secs(secs),
                seed,
                ..RouteAttackParams::default()
            };
            println!("{}", serde_json::to_string(&adversary::route(&params))?);
        }
        Command::Adversary {
            attack:
                Attack::Kad {
                    nodes,
                    adversaries,
                    targets,
                    prefix_bits,
                    subnets,
                    lookups,
                    per_subnet,
                    seed,
                },
        } => {
            let mut params = EclipseParams {
                nodes,
                adversaries,
                targets,
                prefix_bits,
                subnets,
                lookups,
                seed,
                ..EclipseParams::default()
            };
            params.config.max_per_subnet_lookup = per_subnet;
            println!(
                "{}",
                serde_json::to_string(&adversary_kad::eclipse(&params))?
            );
        }
    }
    Ok(())
}
