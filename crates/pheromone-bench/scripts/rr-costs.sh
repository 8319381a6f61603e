#!/usr/bin/env bash
# Per-round-trip costs of the rr bench that do not depend on how loaded the machine is:
# instructions (callgrind), and syscalls and context switches (perf stat tracepoints) of a
# real run. Each figure is the difference between two runs of different lengths divided by
# the difference in round trips, so set-up (keys, handshake, stream opens) cancels out.
#
#   crates/pheromone-bench/scripts/rr-costs.sh [stack] [concurrency]      # e.g. pheromone 64
#   BIN=/tmp/old-bench crates/pheromone-bench/scripts/rr-costs.sh tcp 64
#   NO_CALLGRIND=1 …   # perf only (seconds instead of minutes)
#
# Prints one line per figure. Needs valgrind and perf (perf_event_paranoid <= 2 for the
# syscall tracepoints, or root).
set -euo pipefail
STACK=${1:-pheromone}
C=${2:-64}
BIN=${BIN:-target/release/pheromone-bench}
OUT=${OUT:-/tmp/rr-costs}
mkdir -p "$OUT"
# Requests per run: a multiple of 10*C (for C <= 40: 4000), so every stream's share and
# warm-up are whole.
N1=$((C * 100)); [ $N1 -lt 4000 ] && N1=4000
N2=$((N1 * 4))

# Round trips a run makes, warm-up included (see workload::rr_on_streams and tcp.rs).
round_trips() {
    local n=$1
    if [ "$STACK" = tcp ] && [ "$C" -gt 1 ]; then
        local w=$((n / 10)); [ $w -lt $C ] && w=$C; [ $w -gt $((10 * C)) ] && w=$((10 * C))
        echo $((n + w))
    else
        local per=$(((n + C - 1) / C)); local w=$((per / 10))
        [ $w -lt 1 ] && w=1; [ $w -gt 200 ] && w=200
        echo $((C * (per + w)))
    fi
}

run_args() { echo "--only rr --stacks $STACK --concurrency $C --requests $1 --runs 1"; }

EVENTS=raw_syscalls:sys_enter,context-switches,cpu-migrations
for sc in write writev sendto sendmsg read readv recvfrom recvmsg epoll_wait epoll_pwait futex sched_yield; do
    EVENTS="$EVENTS,syscalls:sys_enter_$sc"
done

perf_counts() {
    local n=$1
    # shellcheck disable=SC2046
    perf stat -x, -e "$EVENTS" -o "$OUT/perf-$STACK-$C-$n.csv" \
        /usr/bin/time -f "%U,,cpu-user-s\n%S,,cpu-sys-s" -o "$OUT/time-$STACK-$C-$n.csv" \
        "$BIN" $(run_args "$n") >/dev/null 2>&1
    cat "$OUT/time-$STACK-$C-$n.csv" >>"$OUT/perf-$STACK-$C-$n.csv"
}

perf_counts "$N1"; perf_counts "$N2"
R1=$(round_trips "$N1"); R2=$(round_trips "$N2")
echo "# $STACK c=$C: runs of $R1 and $R2 round trips; per round trip:"
paste -d, "$OUT/perf-$STACK-$C-$N1.csv" "$OUT/perf-$STACK-$C-$N2.csv" | grep -v '^#' | grep -v '^,' |
    awk -F, -v r1="$R1" -v r2="$R2" 'NF > 4 { ev=$3; sub(/^syscalls:sys_enter_/, "", ev); sub(/^raw_syscalls:sys_enter/, "syscalls", ev);
        split($0, a, ","); n=split($0, f, ","); half=n/2;
        v1=f[1]; v2=f[half+1]; if (v1 ~ /not/ || v2 ~ /not/) next;
        d=(v2-v1)/(r2-r1); if (ev ~ /^cpu-(user|sys)/) { ev=ev; sub(/-s$/, "-us", ev); d=d*1e6 }
        if (d > 0.0005 || ev=="syscalls") printf "%-18s %8.3f\n", ev, d }'

if [ -z "${NO_CALLGRIND:-}" ]; then
    for n in "$N1" "$N2"; do
        # shellcheck disable=SC2046
        valgrind --tool=callgrind --callgrind-out-file="$OUT/cg-$STACK-$C-$n.out" \
            "$BIN" $(run_args "$n") >/dev/null 2>"$OUT/cg-$STACK-$C-$n.log"
    done
    I1=$(grep -m1 '^summary:' "$OUT/cg-$STACK-$C-$N1.out" | awk '{print $2}')
    I2=$(grep -m1 '^summary:' "$OUT/cg-$STACK-$C-$N2.out" | awk '{print $2}')
    echo "instructions       $(((I2 - I1) / (R2 - R1)))"
    echo "# profile: callgrind_annotate $OUT/cg-$STACK-$C-$N2.out"
fi
