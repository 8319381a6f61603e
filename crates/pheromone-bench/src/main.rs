//! `pheromone-bench`: measures throughput, request/response and connection set-up for
//! each stack (plain TCP, TCP + ChaCha20-Poly1305, TCP + AES-256-GCM, rust-libp2p over
//! TCP and QUIC, bare quinn, pheromone over TCP + Noise, TCP + TLS and QUIC) in one
//! process on 127.0.0.1, and prints one JSON object per
//! line on stdout. Diagnostics go to stderr so stdout stays machine-readable.
//!
//! # Layout
//! - `report`: the result records, percentiles, the process CPU clock.
//! - `workload`: the byte patterns every stack runs, over tokio IO traits.
//! - `stacks`: one module per stack and the [`stacks::Stack`] dispatch.
//!
//! See `docs/benchmarks.md` for what each line means.

// This binary does IO and measures time; the workspace's sans-IO clock ban does not apply.
#![allow(clippy::disallowed_methods)]

mod report;
mod stacks;
mod workload;

use std::{process::ExitCode, time::Duration};

use anyhow::{ensure, Context as _, Result};
use clap::Parser;

use report::Record;
use stacks::{Bench, Stack};

/// Bytes moved per throughput run by default.
const DEFAULT_BYTES: u64 = 1 << 30;
/// Round trips per rr run by default.
const DEFAULT_REQUESTS: usize = 20_000;
/// Connections per connect run by default.
const DEFAULT_CONNECTIONS: usize = 2_000;
/// Rounds of every measurement by default; the printed figure is their median.
const DEFAULT_RUNS: usize = 5;
/// A bound on `--runs`, so a typo cannot start a day-long run.
const MAX_RUNS: usize = 101;
/// `--quick` sizes: enough to exercise every path in well under a second per run.
const QUICK_BYTES: u64 = 4 << 20;
const QUICK_REQUESTS: usize = 500;
const QUICK_CONNECTIONS: usize = 20;
/// yamux and our own muxer cap concurrent streams; stay well inside any sane limit.
const MAX_CONCURRENCY: usize = 256;

/// Benchmarks pheromone's building blocks against plain TCP, TCP + ChaCha20-Poly1305 and
/// rust-libp2p on 127.0.0.1. Prints one JSON object per line.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Run only this bench.
    #[arg(long, value_enum)]
    only: Option<Bench>,
    /// Comma-separated stacks to measure (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    stacks: Vec<Stack>,
    /// Bytes per throughput run (default 1 GiB; 4 MiB with --quick).
    #[arg(long)]
    bytes: Option<u64>,
    /// Round trips per rr run (default 20000; 500 with --quick).
    #[arg(long)]
    requests: Option<usize>,
    /// Connections per connect run (default 2000; 20 with --quick).
    #[arg(long)]
    connections: Option<usize>,
    /// Comma-separated rr concurrencies.
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    concurrency: Vec<usize>,
    /// Small sizes for a fast smoke run (explicit sizes still win).
    #[arg(long)]
    quick: bool,
    /// Rounds: every selected measurement runs this many times, interleaved round by round
    /// (so a slow minute of the machine hits every stack alike), and each printed figure is
    /// the median with the min and max beside it (default 5; 1 with --quick).
    #[arg(long)]
    runs: Option<usize>,
    /// Give up on any single run after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
    /// The `pheromone` stack: do not offer AES-256-GCM, so its Noise transport is
    /// ChaCha20-Poly1305 even on a CPU with AES hardware.
    #[arg(long)]
    no_aes_gcm: bool,
}

/// The resolved sizes of one invocation.
struct Plan {
    benches: Vec<Bench>,
    stacks: Vec<Stack>,
    bytes: u64,
    requests: usize,
    connections: usize,
    concurrency: Vec<usize>,
    timeout: Duration,
    quick: bool,
    runs: usize,
}

/// One measurement of a bench: its size or variant.
#[derive(Debug, Clone, Copy)]
enum Run {
    /// The bench's single run (throughput, connect).
    Once,
    /// An rr run with this many round trips in flight.
    Rr(usize),
    /// Node dispatch on one long connection with this many requests in flight.
    DispatchLong(usize),
    /// Node dispatch with a connection per request.
    DispatchShort,
    /// `dispatch_all` to many in-process peers.
    DispatchAll,
    /// Memory after many dispatches.
    DispatchMemory,
}

/// `dispatch_all` peers and rounds, and the two memory readings, full and `--quick`.
const DISPATCH_ALL_PEERS: (usize, usize) = (100, 10);
const DISPATCH_ALL_ROUNDS: (usize, usize) = (200, 5);
const MEMORY_SMALL: (usize, usize) = (1_000, 100);
const MEMORY_LARGE: (usize, usize) = (100_000, 1_000);

impl Plan {
    fn from_args(args: Args) -> Result<Self> {
        let plan = Plan {
            benches: args.only.map_or_else(|| Bench::ALL.to_vec(), |b| vec![b]),
            stacks: if args.stacks.is_empty() {
                Stack::ALL.to_vec()
            } else {
                args.stacks
            },
            bytes: args
                .bytes
                .unwrap_or(pick(args.quick, QUICK_BYTES, DEFAULT_BYTES)),
            requests: args
                .requests
                .unwrap_or(pick(args.quick, QUICK_REQUESTS, DEFAULT_REQUESTS)),
            connections: args.connections.unwrap_or(pick(
                args.quick,
                QUICK_CONNECTIONS,
                DEFAULT_CONNECTIONS,
            )),
            concurrency: args.concurrency,
            timeout: Duration::from_secs(args.timeout_secs),
            quick: args.quick,
            runs: args.runs.unwrap_or(pick(args.quick, 1, DEFAULT_RUNS)),
        };
        ensure!(
            (1..=MAX_RUNS).contains(&plan.runs),
            "--runs must be within 1..={MAX_RUNS}"
        );
        ensure!(plan.bytes > 0, "--bytes must be positive");
        ensure!(plan.requests > 0, "--requests must be positive");
        ensure!(plan.connections > 0, "--connections must be positive");
        ensure!(
            plan.concurrency
                .iter()
                .all(|&c| (1..=MAX_CONCURRENCY).contains(&c)),
            "--concurrency values must be within 1..={MAX_CONCURRENCY}"
        );
        ensure!(
            plan.timeout > Duration::ZERO,
            "--timeout-secs must be positive"
        );
        Ok(plan)
    }
}

/// The `--quick` size or the default one.
fn pick<T>(quick: bool, quick_size: T, default_size: T) -> T {
    if quick {
        quick_size
    } else {
        default_size
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Silent unless RUST_LOG asks; logs go to stderr so stdout stays one JSON per line.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .with_writer(std::io::stderr)
        .init();
    if args.no_aes_gcm {
        stacks::pheromone::disable_aes_gcm();
    }
    let plan = match Plan::from_args(args) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("pheromone-bench: {e:#}");
            return ExitCode::from(2);
        }
    };
    // Two workers: the machine this is tuned for has two cores, and client and server
    // share them.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pheromone-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let failures = runtime.block_on(run(&plan));
    // Server tasks of a timed-out run may still be parked; do not wait for them.
    runtime.shutdown_timeout(Duration::from_secs(1));
    if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Every selected (bench, stack, run) of one invocation, in the order they run each round.
fn measurements(plan: &Plan) -> Vec<(Bench, Stack, Run)> {
    let mut all = Vec::new();
    for &bench in &plan.benches {
        for &stack in &plan.stacks {
            if !stack.supports(bench) {
                continue;
            }
            let runs: Vec<Run> = match bench {
                Bench::Rr => plan.concurrency.iter().map(|&c| Run::Rr(c)).collect(),
                Bench::Throughput | Bench::Connect | Bench::Relay | Bench::Forward => {
                    vec![Run::Once]
                }
                Bench::Dispatch => {
                    let mut runs: Vec<Run> = plan
                        .concurrency
                        .iter()
                        .map(|&c| Run::DispatchLong(c))
                        .collect();
                    runs.push(Run::DispatchShort);
                    if stack == Stack::Pheromone {
                        runs.extend([Run::DispatchMemory, Run::DispatchAll]);
                    }
                    runs
                }
            };
            all.extend(runs.into_iter().map(|run| (bench, stack, run)));
        }
    }
    all
}

/// Runs every selected measurement `plan.runs` times, round by round, then prints one line
/// per measurement: the median of its rounds with their min and max (a single round is
/// printed as it is). Returns how many runs failed; a failure is reported on stderr and
/// the rest go on, and a measurement with no successful round prints nothing.
async fn run(plan: &Plan) -> usize {
    let measurements = measurements(plan);
    let mut results: Vec<Vec<serde_json::Value>> = vec![Vec::new(); measurements.len()];
    let mut failures = 0;
    for round in 0..plan.runs {
        if plan.runs > 1 {
            eprintln!("pheromone-bench: round {} of {}", round + 1, plan.runs);
        }
        for (i, &(bench, stack, run)) in measurements.iter().enumerate() {
            let outcome = tokio::time::timeout(plan.timeout, one(plan, bench, stack, run))
                .await
                .with_context(|| format!("timed out after {:?}", plan.timeout))
                .and_then(|r| r);
            match outcome.and_then(|record| Ok(serde_json::to_value(&record)?)) {
                Ok(value) => {
                    if plan.runs > 1 {
                        eprintln!("  {value}");
                    }
                    results[i].push(value);
                }
                Err(e) => {
                    failures += 1;
                    eprintln!(
                        "pheromone-bench: {bench:?} on {} failed: {e:#}",
                        stack.name()
                    );
                }
            }
        }
    }
    for rounds in &results {
        if let Some(line) = report::summarise(rounds) {
            println!("{line}");
        }
    }
    failures
}

async fn one(plan: &Plan, bench: Bench, stack: Stack, run: Run) -> Result<Record> {
    let size = |(full, quick): (usize, usize)| pick(plan.quick, quick, full);
    Ok(match (bench, run) {
        (Bench::Throughput, _) => Record::Throughput(stack.throughput(plan.bytes).await?),
        (Bench::Relay, _) => Record::Relay(stack.relay(plan.bytes).await?),
        (Bench::Forward, _) => Record::Forward(stack.forward(plan.bytes).await?),
        (Bench::Rr, Run::Rr(c)) => Record::Rr(stack.request_response(c, plan.requests).await?),
        (Bench::Connect, _) => Record::Connect(stack.connect(plan.connections).await?),
        (Bench::Dispatch, Run::DispatchLong(c)) => {
            Record::Dispatch(stack.dispatch_long(c, plan.requests).await?)
        }
        (Bench::Dispatch, Run::DispatchShort) => {
            Record::Dispatch(stack.dispatch_short(plan.connections).await?)
        }
        (Bench::Dispatch, Run::DispatchAll) => Record::DispatchAll(
            stack
                .dispatch_all(size(DISPATCH_ALL_PEERS), size(DISPATCH_ALL_ROUNDS))
                .await?,
        ),
        (Bench::Dispatch, Run::DispatchMemory) => Record::DispatchMemory(
            stack
                .dispatch_memory(size(MEMORY_SMALL), size(MEMORY_LARGE))
                .await?,
        ),
        (bench, run) => anyhow::bail!("{bench:?} has no {run:?} run"),
    })
}
