#!/usr/bin/env bash
# workerctl speed, with the bundled worker:
#   1. `workerctl scale +1 --wait`: from the command to the new worker READY (the whole
#      command, process start included), ROUNDS times; target under 50 ms.
#   2. `status --json` round trip over one control connection with 64 workers; target under 5 ms.
# Loopback and a private control socket only; the daemon is stopped by its pid on exit.
#
# Usage: tests/bench/bench_ctl.sh [ROUNDS]
set -euo pipefail

ROUNDS=${1:-20}
DURATION=0
source "$(dirname "$0")/lib.sh"
WORKERCTL=${WORKERCTL:-$ROOT/build/bin/workerctl}
require "$WORKERD" "$WORKERCTL"
machine

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
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.05; done
"$WORKERCTL" -s "$SOCK" scale 2 --wait >/dev/null

ms_now() { date +%s%N; }
times=()
for _ in $(seq "$ROUNDS"); do
  t0=$(ms_now)
  "$WORKERCTL" -s "$SOCK" scale +1 --wait >/dev/null
  t1=$(ms_now)
  times+=("$(( (t1 - t0) / 1000 ))")
  "$WORKERCTL" -s "$SOCK" scale -1 --wait >/dev/null
done
printf '%s\n' "${times[@]}" | sort -n | awk -v n="$ROUNDS" '{a[NR]=$1} END {
  printf "scale +1 --wait: median %.1f ms, min %.1f ms, max %.1f ms over %d rounds (target < 50 ms)\n",
    a[int((n+1)/2)]/1000, a[1]/1000, a[n]/1000, n}'

"$WORKERCTL" -s "$SOCK" --timeout 60 scale 64 --wait >/dev/null
"$PY" - "$SOCK" <<'PY'
import json, socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rwb")
rtts = []
for i in range(200):
    t0 = time.perf_counter()
    f.write(json.dumps({"id": i, "command": "status"}).encode() + b"\n")
    f.flush()
    reply = json.loads(f.readline())
    rtts.append((time.perf_counter() - t0) * 1000)
    assert reply["ok"] and len(reply["result"]["workers"]) == 64, reply
rtts.sort()
print(f"status with 64 workers: median {rtts[100]:.2f} ms, p99 {rtts[197]:.2f} ms over 200 round trips (target < 5 ms)")
PY
