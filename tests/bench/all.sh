#!/usr/bin/env bash
# Every benchmark of `make bench`, one after the other, each bounded by a timeout; each writes
# its markdown section to RESULTS_DIR, and tests/bench/report.sh assembles them into OUT
# (docs/benchmarks.md). OUT is only replaced when every script succeeded (the page assembled
# from a partial run is left in RESULTS_DIR/benchmarks.md).
#
# Usage: tests/bench/all.sh [RESULTS_DIR] [OUT]
#   env: WORKERD (default build/bin/workerd), WORKERCTL (default: next to WORKERD),
#        BENCH_ROUNDS (default 3), BENCH_SECONDS (default 10: the length of each load round)
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
RESULTS=${1:-$ROOT/build/bench-results}
OUT=${2:-$ROOT/docs/benchmarks.md}
R=${BENCH_ROUNDS:-3}
S=${BENCH_SECONDS:-10}
export WORKERD=${WORKERD:-$ROOT/build/bin/workerd}
export WORKERCTL=${WORKERCTL:-$(dirname "$WORKERD")/workerctl}
rm -rf "$RESULTS"
mkdir -p "$RESULTS"
export BENCH_RESULTS=$RESULTS

failed=()
run() {  # run LIMIT_SECONDS SCRIPT ARGS...
  local limit=$1 script=$2 t0=$SECONDS; shift 2
  echo "=== tests/bench/$script $*"
  if timeout --kill-after=30 "$limit" "$HERE/$script" "$@"; then
    echo "=== $script: done in $((SECONDS - t0)) s"
  else
    echo "=== $script: FAILED (exit $?) after $((SECONDS - t0)) s" >&2
    failed+=("$script")
  fi
  echo
}
# bench_core.sh: 5 loads x 3 servers x max(R, 5) rounds (the bundled worker twice vs nginx),
# then 4 servers x R rounds (FastAPI), each load S s; half as much again for the rest.
run $((300 + S * (15 * (R < 5 ? 5 : R) + 4 * R) * 3 / 2)) bench_core.sh "$R" "$S"
run 600 bench_syscalls.sh              # strace -c on both servers' workers: about 2 minutes
run 900 bench_transfer.sh "$((R < 5 ? 5 : R))" "$S"   # 2 clients x 2 servers x max(R, 5) rounds
run 600 bench_balance.sh "$R" "$S"
run 600 bench_reload.sh "$R" $((S * 3 / 2))
run 400 bench_hang.sh "$R"
run 300 bench_stop.sh "$R"
run 900 bench_footprint.sh "$R" "$S"   # and the fleets' memory with app.preload: 4 fleets of 8, two apps
run 900 bench_scale.sh "$R" "$S"
run 600 bench_ctl.sh
run 300 bench_preload.sh
run 900 bench_canary.sh                # 2 bad deploys, 20 good ones: about 5 minutes
run 600 bench_leak.sh                  # 4 runs of 60 s
run 300 bench_load.sh "$((R + 2))" 5   # rounds of 5 s are cheap, and the ratio swings from round to round
run 2700 bench_tune.sh                 # 3 routes, each a tune and a sweep of 8 counts: about 20 minutes
run 900 bench_shed.sh                  # 2x overload, 10 s and 30 s, three servers: about 5 minutes
"$HERE/report.sh" "$RESULTS" "$RESULTS/benchmarks.md"
if ((${#failed[@]})); then
  echo "failed: ${failed[*]}; $OUT left as it was (this run's page: $RESULTS/benchmarks.md)" >&2
  exit 1
fi
cp "$RESULTS/benchmarks.md" "$OUT"
echo "wrote $OUT"
