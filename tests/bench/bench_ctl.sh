#!/usr/bin/env bash
# workerctl speed, with the bundled worker:
#   1. `workerctl scale +1 --wait`: from the command to the new worker READY (the whole
#      command, process start included), ROUNDS times; target under 50 ms.
#   2. `status` round trip over one control connection with 64 workers; target under 5 ms.
# Loopback and a private control socket only; the daemon is stopped by its pid on exit.
#
# Usage: tests/bench/bench_ctl.sh [ROUNDS]
set -euo pipefail

ROUNDS=${1:-20}
DURATION=0
source "$(dirname "$0")/lib.sh"
require "$WORKERD" "$WORKERCTL"
machine
md_begin ctl "workerctl" "$ROUNDS"

PORT=$(free_port)
SOCK=$WORK/control.sock
cat >"$WORK/spec.yaml" <<YAML
listen: ["127.0.0.1:$PORT"]
workers: 2
app:
  builtin: {}
control: {socket: $SOCK}
log: {level: warn}
YAML
"$WORKERD" start $ALLOW_ROOT "$WORK/spec.yaml" 2>"$WORK/workerd.log" &
WD=$!; PIDS+=("$WD")
wait_socket "$SOCK"
"$WORKERCTL" -s "$SOCK" scale 2 --wait >/dev/null

times=()
for _ in $(seq "$ROUNDS"); do
  t0=$(date +%s%N)
  "$WORKERCTL" -s "$SOCK" scale +1 --wait >/dev/null
  t1=$(date +%s%N)
  times+=("$(( (t1 - t0) / 1000 ))")
  "$WORKERCTL" -s "$SOCK" scale -1 --wait >/dev/null
done
read -r med lo hi < <(printf '%s\n' "${times[@]}" | sort -n | awk -v n="$ROUNDS" '{a[NR]=$1} END {
  printf "%.1f %.1f %.1f\n", (n%2 ? a[(n+1)/2] : (a[n/2]+a[n/2+1])/2)/1000, a[1]/1000, a[n]/1000}')
say "scale +1 --wait: median $med ms, min $lo ms, max $hi ms over $ROUNDS rounds (target < 50 ms)"

"$WORKERCTL" -s "$SOCK" --timeout 60 scale 64 --wait >/dev/null
read -r smed sp99 < <(time_status "$SOCK" 200 64)
say "status with 64 workers: median $smed ms, p99 $sp99 ms over 200 round trips (target < 5 ms)"

md "The first is the whole \`workerctl scale +1 --wait\` command as a user runs it (process start,"
md "connect, the scale request, and polling \`status\` until the new bundled worker has said READY),"
md "$ROUNDS times (each followed by \`scale -1 --wait\`). The second is one control connection sending"
md "\`status\` 200 times with 64 workers in the fleet (the daemon reads each worker's RSS and CPU time"
md "from /proc for every answer)."
md ""
md "| measure | median | spread | target |"
md "| --- | ---: | --- | ---: |"
md "| \`workerctl scale +1 --wait\`, 2 → 3 bundled workers | **$med ms** | min $lo, max $hi ms over $ROUNDS | < 50 ms |"
md "| \`status\` round trip, 64 workers | **$smed ms** | p99 $sp99 ms over 200 | < 5 ms |"
md ""
md_end
