#!/bin/bash
# The chaos test of crates/pheromone-cli/tests/chaos.rs, run long: 12 `pheromone up`
# processes in network namespaces, SIGKILL/restart every 10 s, a silent link failure every
# 10 s, host 0 sending to every host and broadcasting each second. Prints the figures
# (sends, missing, link detection and route reconvergence times, RSS and fds of the hosts
# never killed, broadcast deliveries) and fails if an assertion fails.
# Usage: scripts/chaos.sh [SECONDS]   (default 1800; needs root and iproute2)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_INCREMENTAL=0
cargo build -p pheromone-cli --tests
# Run a copy of the binary, so the tree can be rebuilt while this runs.
copy="$(mktemp -d)"
trap 'rm -rf "$copy"' EXIT
cp target/debug/pheromone "$copy/pheromone"
PHEROMONE_CHAOS_BIN="$copy/pheromone" PHEROMONE_CHAOS_SECS="${1:-1800}" PHEROMONE_CI=1 \
    cargo test -p pheromone-cli --test chaos -- --nocapture
