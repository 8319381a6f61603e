#!/bin/sh
# The full hostile-peer namespace tier (issue 16): an attacker host holding 5,000 idle
# sockets, completing 1,000 handshakes with fresh identities and opening 10,000 streams
# against a victim, while a good peer on a third host connects and pings. Prints the good
# peer's connect time and the process's RSS and fds (attacker, victim and good peer share
# the process: an upper bound on the victim's). Needs root and iproute2.
#
# CI runs a small slice of the same test (`cargo test -p pheromone --test netns_hostile`).
set -eu
cd "$(dirname "$0")/.."
ulimit -n 65536 2>/dev/null || true
PHEROMONE_HOSTILE_FULL=1 cargo test --release -p pheromone --test netns_hostile -- --nocapture 2>&1 |
    grep -E 'figure|test result|SKIP|panicked'
