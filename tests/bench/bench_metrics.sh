#!/usr/bin/env bash
# The metrics endpoint with 64 bundled workers: how long a /metrics scrape takes (target under
# 5 ms), and how much CPU the daemon uses while idle (target under 1% of a core).
#
# Usage: tests/bench/bench_metrics.sh [IDLE_SECONDS]
set -euo pipefail

IDLE=${1:-10}
ROUNDS=1
DURATION=0
source "$(dirname "$0")/lib.sh"
WORKERCTL=${WORKERCTL:-$ROOT/build/bin/workerctl}
require "$WORKERD" "$WORKERCTL" curl
machine

PORT=$(free_port)
MPORT=$(free_port)
cat >"$WORK/spec.yaml" <<YAML
listen: ["127.0.0.1:$PORT"]
workers: 64
app:
  builtin: {}
control: {socket: $WORK/control.sock}
metrics: {listen: "127.0.0.1:$MPORT"}
log: {level: warn}
YAML
"$WORKERD" start $ALLOW_ROOT "$WORK/spec.yaml" 2>"$WORK/workerd.log" &
WD=$!; PIDS+=("$WD")
wait_http "http://127.0.0.1:$MPORT/healthz"
"$WORKERCTL" -s "$WORK/control.sock" --timeout 60 scale 64 --wait >/dev/null

"$PY" - "$MPORT" <<'PY'
import http.client, sys, time
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
times = []
for i in range(200):
    t0 = time.perf_counter()
    c.request("GET", "/metrics")
    r = c.getresponse()
    body = r.read()
    times.append((time.perf_counter() - t0) * 1000)
    assert r.status == 200 and b"workerd_workers_desired 64" in body
times.sort()
print(f"scrape with 64 workers: median {times[100]:.2f} ms, p99 {times[197]:.2f} ms over 200 scrapes, {len(body)} bytes (target < 5 ms)")
PY

# Time on CPU in ns (schedstat: far finer than clock ticks).
oncpu() { awk '{print $1}' "/proc/$WD/schedstat"; }
t0=$(oncpu); sleep "$IDLE"; t1=$(oncpu)
awk -v a="$t0" -v b="$t1" -v s="$IDLE" \
  'BEGIN {printf "daemon CPU while idle with 64 workers: %.3f%% of a core over %d s (target < 1%%)\n", 100*(b-a)/1e9/s, s}'
