//! `pheromone-sim`: runs simulation scenarios and prints one JSON object per run.
//!
//! Subcommands map one-to-one to modules of `pheromone_sim::scenario`: `broadcast`,
//! `kad` (discovery), `route` (multi-hop routing) and `mesh` (all of them together).

use anyhow::Result;
use clap::{Parser, Subcommand};
use pheromone_core::broadcast::Strategy;
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
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Broadcast(args) => {
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
                        ..BroadcastParams::default()
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
    }
    Ok(())
}
