#!/usr/bin/env bash
# workerd against an earlier workerd: the bundled worker (2 workers) on /healthz, built from
# git revision REV and from this checkout, side by side in one run under the same load.
# For checking that a change costs nothing on the request path (the worker protocol's
# per-request statistics, say).
#
# With `scale`, the daemon itself instead: two fleets of SIZE bundled workers (default 256),
# one per binary, side by side; in each of ROUNDS rounds both daemons' idle CPU over the same
# IDLE seconds, then 100 /metrics scrapes of each, alternating. For a change to the daemon's
# loop or its core (issue 14's redesign, say).
#
# Usage: tests/bench/bench_compare.sh REV [ROUNDS] [SECONDS] [PATH]
#        tests/bench/bench_compare.sh REV scale [ROUNDS] [IDLE_SECONDS] [SIZE]
#        REV is built in a temporary git worktree; PATH defaults to /healthz, and may name a
#        static file both fleets serve: /small.html (1 KiB), /100k.bin, /10m.bin (transfer rate).
set -euo pipefail

REV=${1:?usage: bench_compare.sh REV [ROUNDS] [SECONDS] [PATH] | REV scale [ROUNDS] [IDLE] [SIZE]}
MODE=requests
if [ "${2:-}" = scale ]; then MODE=scale; shift; fi
ROUNDS=${2:-5}
DURATION=${3:-10}
URL_PATH=${4:-/healthz}
source "$(dirname "$0")/lib.sh"
require wrk ss curl git cmake "$WORKERD"

# BASE_BUILD_DIR: a build of REV to use as it is (its bin/workerd and bin/workerctl); without
# it, REV is built in a temporary git worktree (BASE_BUILD_TYPE, default RelWithDebInfo as
# `make build`). In scale mode this checkout's fleet starts first, and in an A/A run (the same
# binary both sides) it measured 1.02x idle CPU and 1.10x /metrics: read ratios within about
# 10% as equal, or run again with WORKERD and BASE_BUILD_DIR swapped.
if [ -n "${BASE_BUILD_DIR:-}" ] && [ -x "$BASE_BUILD_DIR/bin/workerd" ]; then
  echo "using $REV as built in $BASE_BUILD_DIR"
  trap cleanup EXIT
else
  BASE_BUILD_DIR=${BASE_BUILD_DIR:-$WORK/base-build}
  BASE_SRC=$WORK/base-src
  git -C "$ROOT" worktree add --detach --quiet "$BASE_SRC" "$REV"
  trap 'git -C "$ROOT" worktree remove --force "$BASE_SRC" 2>/dev/null || true; cleanup' EXIT
  echo "building $REV ($(git -C "$BASE_SRC" log -1 --format='%h %s')) in $BASE_BUILD_DIR"
  # The build type of this checkout's own build (the Makefile's RelWithDebInfo), so that the
  # two binaries differ in their source only.
  cmake -S "$BASE_SRC" -B "$BASE_BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="${BASE_BUILD_TYPE:-RelWithDebInfo}" >/dev/null
  cmake --build "$BASE_BUILD_DIR" --target workerd workerctl >/dev/null
fi
BASE=$BASE_BUILD_DIR/bin/workerd
machine

start_fleet() {  # start_fleet BINARY NAME WORKERS -> prints "PID PORT METRICS_PORT"
  local port mport
  port=$(free_port)
  mport=$(free_port)
  cat >"$WORK/$2.yaml" <<YAML
listen: ["127.0.0.1:$port"]
workers: $3
app:
  builtin: {root: $WORK/static}
control: {socket: $WORK/$2.sock}
metrics: {listen: "127.0.0.1:$mport"}
log: {level: warn}
YAML
  local flag; flag=$(allow_root_flag "$1")
  "$1" start ${flag:+"$flag"} "$WORK/$2.yaml" 2>"$WORK/$2.log" &
  echo "$! $port $mport"
}

if [ "$MODE" = scale ]; then
  SIZE=${4:-256}
  IDLE=$DURATION
  need_fds $((2 * SIZE * 8 + 1024))
  read -r NEW_PID _ NEW_M < <(start_fleet "$WORKERD" new "$SIZE"); PIDS+=("$NEW_PID")
  read -r OLD_PID _ OLD_M < <(start_fleet "$BASE" old "$SIZE"); PIDS+=("$OLD_PID")
  # Both fleets up and every worker READY, then a few seconds for the start to settle.
  for s in new old; do
    wait_socket "$WORK/$s.sock"
    "$WORKERCTL" -s "$WORK/$s.sock" --timeout 300 scale "$SIZE" --wait >/dev/null
  done
  sleep 5
  md_begin compare_scale "The daemon's loop at scale against $REV" "$REV" scale "$ROUNDS" "$IDLE" "$SIZE"
  declare -A CPU SCR
  for r in $(seq "$ROUNDS"); do
    a1=$(cpu_ns "$NEW_PID"); a2=$(cpu_ns "$OLD_PID"); sleep "$IDLE"; b1=$(cpu_ns "$NEW_PID"); b2=$(cpu_ns "$OLD_PID")
    CPU[new,$r]=$(awk -v a="$a1" -v b="$b1" -v s="$IDLE" 'BEGIN {printf "%.3f", 100*(b-a)/1e9/s}')
    CPU[old,$r]=$(awk -v a="$a2" -v b="$b2" -v s="$IDLE" 'BEGIN {printf "%.3f", 100*(b-a)/1e9/s}')
    if ((r % 2)); then order="new old"; else order="old new"; fi
    for s in $order; do
      port=$NEW_M; [ "$s" = old ] && port=$OLD_M
      read -r SCR[$s,$r] _ _ < <(time_scrape "$port" 100 "$SIZE")
    done
    say "$(printf 'round %d: idle CPU this checkout %.3f%%, %s %.3f%%; /metrics median %.2f ms vs %.2f ms' \
      "$r" "${CPU[new,$r]}" "$REV" "${CPU[old,$r]}" "${SCR[new,$r]}" "${SCR[old,$r]}")"
  done
  med() { local -n arr=$1; local xs=() r; for r in $(seq "$ROUNDS"); do xs+=("${arr[$2,$r]}"); done; medianof "${xs[@]}"; }
  cn=$(med CPU new); co=$(med CPU old); sn=$(med SCR new); so=$(med SCR old)
  md "Two daemons with $SIZE bundled workers each (\`metrics.listen\` set), one built from this checkout and one"
  md "from $REV, running side by side; idle CPU of each over the same $IDLE s (all threads, schedstat), then"
  md "100 \`GET /metrics\` of each over one connection, alternating which goes first. Medians of $ROUNDS rounds."
  md ""
  md "| | this checkout | $REV | ratio |" "| --- | ---: | ---: | ---: |"
  md "| daemon CPU while idle, % of a core | $cn | $co | **$(div "$cn" "$co")×** |"
  md "| /metrics scrape, median ms | $sn | $so | **$(div "$sn" "$so")×** |"
  md ""
  say "median idle CPU: $cn% vs $co% ($(div "$cn" "$co")x); /metrics median: $sn ms vs $so ms ($(div "$sn" "$so")x)"
  md_end
  exit 0
fi

make_static_files  # what PATH may name: /small.html, /100k.bin, /10m.bin
read -r NEW_PID NEW_PORT _ < <(start_fleet "$WORKERD" new 2); PIDS+=("$NEW_PID")
read -r OLD_PID OLD_PORT _ < <(start_fleet "$BASE" old 2); PIDS+=("$OLD_PID")
wait_http "http://127.0.0.1:$NEW_PORT/healthz"
wait_http "http://127.0.0.1:$OLD_PORT/healthz"
md_begin compare "The worker protocol's cost on the request path" "$REV" "$ROUNDS" "$DURATION" "$URL_PATH"
side "workerd (this checkout)" "http://127.0.0.1:$NEW_PORT$URL_PATH" "$NEW_PORT" "$NEW_PID" \
  "\`workerd start SPEC\` with \`workers: 2\`, \`app: {builtin: {root: DIR}}\`, built from this checkout"
side "workerd ($REV)" "http://127.0.0.1:$OLD_PORT$URL_PATH" "$OLD_PORT" "$OLD_PID" "the same, built from $REV"
transfer=()
[ "$URL_PATH" = /10m.bin ] && transfer=(--transfer)  # MB/s, as bench_core.sh's large file
compare "${transfer[@]}" "this checkout vs $REV, bundled worker, $URL_PATH, 2 workers each"
md_end
