//! The `pheromone` binary: `pheromone up` runs a node in the foreground (the daemon); every
//! other subcommand talks to that daemon over its control socket.
//!
//! # Layout
//!
//! - this file: the command line (clap), logging, and the one-line error on failure.
//! - [`control_proto`]: requests and responses between CLI and daemon (JSON lines).
//! - [`daemon`]: `up` — settings, the node over the endpoint, the control socket server.
//! - [`cli`]: the other subcommands — ask the daemon, print for a person or as JSON.
//! - [`demo`]: `pheromone demo` — five nodes in this process, narrated.
//!
//! Exit status: 0 on success, 1 on any failure (one line on stderr), 2 for a usage error.

#![allow(clippy::disallowed_methods)] // a binary reads the clock

mod cli;
mod control_proto;
mod daemon;
mod demo;

use anyhow::Result;
use clap::{ArgAction, Parser, Subcommand};
use cli::Ctx;
use daemon::config::{parse_duration, LogFormat, Settings, UpArgs};
use std::path::PathBuf;

/// A peer-to-peer network that speaks libp2p.
#[derive(Parser)]
#[command(name = "pheromone", version, about)]
struct Cli {
    /// The node's data dir: identity, lock and control socket (default: the platform data
    /// dir, e.g. ~/.local/share/pheromone). Chooses which daemon the CLI talks to.
    #[arg(long, global = true, env = "PHEROMONE_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Machine-readable output: one JSON value, or one JSON object per line for streams.
    #[arg(long, global = true)]
    json: bool,
    /// More log output, repeatable (`up` logs info by default, other commands warnings);
    /// RUST_LOG overrides.
    #[arg(short, long, global = true, action = ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a node in the foreground until Ctrl-C or SIGTERM.
    Up(UpArgs),
    /// Prints this node's peer ID, creating the identity if there is none (no daemon needed).
    Id,
    /// Shows the node: peer ID, name, addresses, mode, connections, uptime.
    Status,
    /// Lists connected peers.
    Peers,
    /// Lists the peers this node remembers (its peer store): names, addresses, when last
    /// seen, how each is reached now (direct, relay, not connected).
    Hosts,
    /// Lists what the node can reach, and how: direct links, destinations through relays
    /// (next hop, hops, metric), known addresses.
    Routes,
    /// Connects to a peer: `host:port` or a multiaddr, ideally ending in /p2p/<peer id>.
    Connect {
        /// The address.
        addr: String,
    },
    /// Binds a local name to a peer ID: the only kind of name `exec`, `forward` and
    /// `expose --allow` accept (names peers announce are anyone's to claim). Without
    /// arguments, or with --list, lists the aliases.
    Alias {
        /// The name.
        #[arg(requires = "peer", conflicts_with = "list")]
        name: Option<String>,
        /// The peer ID (or a multiaddr with /p2p/).
        peer: Option<String>,
        /// List the aliases.
        #[arg(long)]
        list: bool,
    },
    /// Removes a name from the alias book.
    Unalias {
        /// The name.
        name: String,
    },
    /// Closes every connection to a peer.
    Disconnect {
        /// Peer ID, unique name, or multiaddr with /p2p/.
        peer: String,
    },
    /// The DHT (Kademlia): look a peer up, show the routing table.
    Dht {
        /// What to do.
        #[command(subcommand)]
        command: DhtCommand,
    },
    /// Pings a peer like ping(8).
    Ping {
        /// Peer ID, unique name, or multiaddr with /p2p/.
        peer: String,
        /// Stop after this many pings (default: until Ctrl-C).
        #[arg(short = 'c', long, value_parser = clap::value_parser!(u32).range(1..))]
        count: Option<u32>,
        /// Pause between pings, e.g. 1s, 200ms.
        #[arg(short = 'i', long, default_value = "1s")]
        interval: String,
        /// First print the route to the peer, hop by hop.
        #[arg(long)]
        trace: bool,
    },
    /// Sends a direct message to a peer; it arrives in the peer's `recv`.
    Send {
        /// Peer ID, unique name, or multiaddr with /p2p/.
        peer: String,
        /// The message text.
        #[arg(required_unless_present = "file", conflicts_with = "file")]
        text: Option<String>,
        /// Send this file's bytes instead (at most 16 MiB).
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Prints direct messages as they arrive.
    Recv {
        /// Exit after this many messages.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Publishes a message on a topic to every subscribed node.
    Broadcast {
        /// The topic.
        topic: String,
        /// The message text.
        text: String,
    },
    /// Prints messages published on a topic.
    Subscribe {
        /// The topic.
        topic: String,
        /// Exit after this many messages.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Exposes a local TCP service to allowed peers as /x/NAME.
    Expose {
        /// The service name (letters, digits, - _ . :).
        name: String,
        /// Where the service listens, HOST:PORT.
        #[arg(long, value_name = "HOST:PORT")]
        target: String,
        /// A peer allowed to use it (repeatable): peer ID or unique name.
        #[arg(long, value_name = "PEER")]
        allow: Vec<String>,
        /// Let every authenticated peer use it.
        #[arg(long, conflicts_with = "allow")]
        allow_any: bool,
    },
    /// Forwards a local port to a service a peer exposes; prints the port.
    Forward {
        /// The service name on the peer.
        name: String,
        /// Peer ID, unique name, or multiaddr with /p2p/.
        peer: String,
        /// Local address to accept connections on (port 0 picks one).
        #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:0")]
        listen: String,
    },
    /// Lists exposed services and forwarded ports with their counters.
    Forwards,
    /// Prints the URL of the daemon's web dashboard (with its token) and of its metrics.
    Dashboard,
    /// Stops exposing a service (open connections are reset).
    Unexpose {
        /// The service name.
        name: String,
    },
    /// Stops forwarding a local port (open connections are reset).
    Unforward {
        /// The listen address, HOST:PORT (a bare port means 127.0.0.1).
        addr: String,
    },
    /// Runs a command on many peers at once; exits 0 only if every host exited 0.
    Exec {
        /// The hosts: peer IDs, unique names, or multiaddrs with /p2p/.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        peers: Vec<String>,
        /// Every connected peer.
        #[arg(long)]
        all: bool,
        /// Run the command line with `sh -c` (the hosts must allow it).
        #[arg(long)]
        shell: bool,
        /// Kill the command after this long, e.g. 30s (default: each host's maximum).
        #[arg(long, value_name = "DURATION")]
        timeout: Option<String>,
        /// Most output bytes per host, e.g. 1M; the rest is dropped and reported.
        #[arg(long, value_name = "BYTES")]
        max_output: Option<String>,
        /// Most hosts running it at once.
        #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
        concurrency: u32,
        /// Print each host's output as one block when it finishes.
        #[arg(long)]
        group: bool,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Starts five nodes in this process and narrates what they do (no set-up needed).
    Demo,
    /// Measures throughput to a peer over /perf/1.0.0, like iperf3.
    Perf {
        /// Peer ID, unique name, or multiaddr with /p2p/ (the peer must run `up --perf`).
        peer: String,
        /// Bytes each way, e.g. 100M (default: run for --duration).
        #[arg(long, conflicts_with = "duration")]
        bytes: Option<String>,
        /// Time each way, e.g. 10s.
        #[arg(long)]
        duration: Option<String>,
    },
}

/// `pheromone dht …`.
#[derive(Debug, clap::Subcommand)]
enum DhtCommand {
    /// Looks a peer up in the DHT: the addresses found and the hops it took.
    Find {
        /// Peer ID (or a unique name, or a multiaddr with /p2p/).
        peer: String,
    },
    /// Shows the Kademlia routing table, bucket by bucket.
    Table,
}

fn init_logging(verbose: u8, daemon: bool, format: LogFormat) {
    // The daemon logs what it does (info) by default; a CLI command only its warnings.
    const LEVELS: [&str; 4] = ["warn", "info", "debug", "trace"];
    let level = LEVELS[(usize::from(daemon) + usize::from(verbose)).min(LEVELS.len() - 1)];
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(cli::style::color_stderr()).init(),
        // One object per line: the event's fields, its span and the spans it is in.
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
}

#[tokio::main]
async fn main() {
    let args = Cli::parse();
    // `up` reads its settings (flags and config file) first, for the log format.
    let settings = match &args.command {
        Command::Up(up) => Some(Settings::resolve(up, args.data_dir.clone())),
        _ => None,
    };
    let format = match &settings {
        Some(Ok(s)) => s.log_format,
        _ => LogFormat::Text,
    };
    init_logging(args.verbose, settings.is_some(), format);
    if let Err(e) = run(args, settings).await {
        let prefix = cli::style::paint_if(
            cli::style::color_stderr(),
            "pheromone:",
            cli::style::Paint::Red,
        );
        eprintln!("{prefix} {}", control_proto::one_line(&format!("{e:#}")));
        std::process::exit(1);
    }
}

async fn run(args: Cli, settings: Option<Result<Settings>>) -> Result<()> {
    if let Some(settings) = settings {
        let settings = settings?;
        // The span gives every line of the daemon's log the node's name in JSON.
        let span = tracing::info_span!("daemon", node = settings.name.as_deref().unwrap_or(""));
        // SIGHUP reads the flags and the config file again.
        let (up, data_dir) = match &args.command {
            Command::Up(up) => (up.clone(), args.data_dir.clone()),
            _ => unreachable!("settings exist only for up"),
        };
        let reload = move || Settings::resolve(&up, data_dir.clone());
        return tracing::Instrument::instrument(daemon::run(settings, reload), span).await;
    }
    if let Command::Demo = &args.command {
        return demo::run().await;
    }
    let (data_dir, data_dir_given) = cli::data_dir(args.data_dir)?;
    let ctx = Ctx {
        data_dir,
        data_dir_given,
        json: args.json,
    };
    match args.command {
        Command::Up(_) | Command::Demo => unreachable!("handled above"),
        Command::Id => cli::id(&ctx),
        Command::Status => cli::node::status(&ctx).await,
        Command::Peers => cli::node::peers(&ctx).await,
        Command::Hosts => cli::node::hosts(&ctx).await,
        Command::Routes => cli::node::routes(&ctx).await,
        Command::Dht { command } => match command {
            DhtCommand::Find { peer } => cli::dht::find(&ctx, peer).await,
            DhtCommand::Table => cli::dht::table(&ctx).await,
        },
        Command::Connect { addr } => cli::node::connect(&ctx, addr).await,
        Command::Disconnect { peer } => cli::node::disconnect(&ctx, peer).await,
        Command::Alias { name, peer, .. } => cli::alias::alias(&ctx, name, peer).await,
        Command::Unalias { name } => cli::alias::unalias(&ctx, name).await,
        Command::Ping {
            peer,
            count,
            interval,
            trace,
        } => cli::ping::run(&ctx, peer, count, parse_duration(&interval)?, trace).await,
        Command::Send { peer, text, file } => {
            let data = cli::msg::payload(text, file.as_deref())?;
            cli::msg::send(&ctx, peer, data).await
        }
        Command::Recv { count } => cli::msg::recv(&ctx, count).await,
        Command::Broadcast { topic, text } => cli::msg::broadcast(&ctx, topic, text).await,
        Command::Subscribe { topic, count } => cli::msg::subscribe(&ctx, topic, count).await,
        Command::Perf {
            peer,
            bytes,
            duration,
        } => {
            let bytes = bytes.as_deref().map(cli::style::parse_size).transpose()?;
            let duration = parse_duration(duration.as_deref().unwrap_or("10s"))?;
            cli::perf::run(&ctx, peer, bytes, duration).await
        }
        Command::Expose {
            name,
            target,
            allow,
            allow_any,
        } => cli::forward::expose(&ctx, name, target, allow, allow_any).await,
        Command::Forward { name, peer, listen } => {
            cli::forward::forward(&ctx, name, peer, listen).await
        }
        Command::Forwards => cli::forward::list(&ctx).await,
        Command::Dashboard => cli::node::dashboard(&ctx).await,
        Command::Unexpose { name } => cli::forward::unexpose(&ctx, name).await,
        Command::Unforward { addr } => cli::forward::unforward(&ctx, addr).await,
        Command::Exec {
            peers,
            all,
            shell,
            timeout,
            max_output,
            concurrency,
            group,
            command,
        } => {
            let args = cli::exec::ExecArgs {
                peers,
                all,
                shell,
                timeout: timeout.as_deref().map(parse_duration).transpose()?,
                max_output: max_output
                    .as_deref()
                    .map(cli::style::parse_size)
                    .transpose()?,
                concurrency,
                group,
                command,
            };
            cli::exec::run(&ctx, args).await
        }
    }
}
