#!/usr/bin/env bash
# Load shedding under overload (docs/spec.md, queue_timeout): the same FastAPI app
# (tests/data/apps/tune_app.py, /spin?ms=10: 10 ms of the event loop per request), 2 workers,
# offered twice what the fleet can serve (open loop: `workerd load --rate`) for a short and a long
# run, under
#   - workerd + workerd_uvicorn with `queue_timeout` (late requests answered 503 at once),
#   - workerd + workerd_uvicorn without it,
#   - gunicorn -k uvicorn.workers.UvicornWorker -w 2 (no such setting).
# Each run has fresh servers. Prints, per run, the goodput (2xx answers per second), the p99 of
# the 2xx answers, the p99 of every answer, and what was shed (503) or timed out; checks that
# with queue_timeout the goodput stays >= 90% of capacity and the 2xx p99 under queue_timeout +
# the service p99 (PASS/FAIL), and shows that without it the p99 grows with the run's length.
#
# Usage: tests/bench/bench_shed.sh [SECONDS] [QUEUE_TIMEOUT_MS]   (default 30 s and 200 ms; the
#        short run is a third of SECONDS). About 4 minutes.
# Every process started here is stopped by its pid on exit, even on failure. Exits 1 when the
# check fails.
set -euo pipefail

DURATION=${1:-30}
QT_MS=${2:-200}
ROUNDS=1
SHORT=$((DURATION / 3))
source "$(dirname "$0")/lib.sh"
require gunicorn curl "$WORKERD"
((DURATION >= 6 && QT_MS >= 1)) || { echo "usage: $0 [SECONDS>=6] [QUEUE_TIMEOUT_MS]" >&2; exit 2; }
machine
md_begin shed "Load shedding under overload: queue_timeout" "$DURATION" "$QT_MS"

APPS=$ROOT/tests/data/apps
ROUTE="/spin?ms=10"
UV='["'$PY'", "-m", "workerd_uvicorn", "tune_app:app", "--no-access-log", "--log-level", "warning"]'
workerd_body() {  # workerd_body [EXTRA_YAML]
  printf 'workers: 2\nreuse_port: true\napp:\n  command: %s\n  cwd: %s\n  env: {PYTHONPATH: %s}\n%s' \
    "$UV" "$APPS" "$ROOT/packaging/python" "${1:-}"
}

# start_server KIND -> "PID PORT" (KIND: shed, noshed, gunicorn)
start_server() {
  case $1 in
    shed) start_workerd shed "$(workerd_body "queue_timeout: ${QT_MS}ms")" ;;
    noshed) start_workerd noshed "$(workerd_body)" ;;
    gunicorn)
      local port
      port=$(free_port)
      "$PY" -m gunicorn -k uvicorn.workers.UvicornWorker -w 2 -b "127.0.0.1:$port" --chdir "$APPS" \
        --log-level warning tune_app:app 2>>"$WORK/gunicorn.log" &
      echo "$! $port" ;;
  esac
}
# load_json URL ARGS... : `workerd load --json`, bounded in time
load_json() { timeout 300 "$WORKERD" load "$@" --json --max-errors 1; }
field() { "$PY" -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

# --- capacity and service time: workerd without shedding, closed loop -------------------------
read -r PID PORT < <(start_server noshed); PIDS+=("$PID")
wait_http "http://127.0.0.1:$PORT/healthz"
load_json "http://127.0.0.1:$PORT$ROUTE" -c 1 --duration 2s >/dev/null   # the first calls are slow
PROBE=$(load_json "http://127.0.0.1:$PORT$ROUTE" -c 1 --duration 3s)
SERVICE_P99=$(field p99_ms <<<"$PROBE")
FULL=$(load_json "http://127.0.0.1:$PORT$ROUTE" -c 16 --duration 5s)
CAPACITY=$(field rate <<<"$FULL")
stop "$PID"
OFFERED=$(awk -v c="$CAPACITY" 'BEGIN {printf "%.0f", 2 * c}')
say "== capacity (closed loop, 16 connections, 5 s): $(printf '%.0f' "$CAPACITY") req/s; service p99 (one at a time): $SERVICE_P99 ms"
say "== offered: $OFFERED req/s (2x), open loop, 512 connections at most, runs of $SHORT s and $DURATION s"

declare -A GOOD P99OK P99ALL SHED TIMEOUTS WALL
for kind in shed noshed gunicorn; do
  for secs in "$SHORT" "$DURATION"; do
    read -r PID PORT < <(start_server "$kind"); PIDS+=("$PID")
    wait_http "http://127.0.0.1:$PORT/healthz"
    load_json "http://127.0.0.1:$PORT$ROUTE" -c 2 --duration 1s >/dev/null   # warm both workers
    t0=$(date +%s.%N)
    R=$(load_json "http://127.0.0.1:$PORT$ROUTE" --rate "$OFFERED" --duration "${secs}s" -c 512 --timeout 120s)
    wall=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.3f", b - a}')   # until the last answer
    stop "$PID"
    read -r ok _ ok_p99 p99 http timeouts unsent < <("$PY" -c '
import json, sys
j = json.load(sys.stdin)
print(j["ok"], j["seconds"], j["ok_p99_ms"], j["p99_ms"], j["http_errors"], j["timeouts"], j["unsent"])' <<<"$R")
    GOOD[$kind,$secs]=$(awk -v o="$ok" -v s="$wall" 'BEGIN {printf "%.0f", o / s}')
    WALL[$kind,$secs]=$wall
    P99OK[$kind,$secs]=$ok_p99
    P99ALL[$kind,$secs]=$p99
    SHED[$kind,$secs]=$http
    TIMEOUTS[$kind,$secs]=$((timeouts + unsent))
    say "  $kind, $secs s (last answer after $wall s): goodput ${GOOD[$kind,$secs]} req/s, 2xx p99 $ok_p99 ms, all p99 $p99 ms, 503 $http, timed out $((timeouts + unsent))"
  done
done

# --- the check ------------------------------------------------------------------------------------
GOOD_OK=$(awk -v g="${GOOD[shed,$DURATION]}" -v c="$CAPACITY" 'BEGIN {print (g >= 0.9 * c) ? 1 : 0}')
P99_BOUND=$(awk -v q="$QT_MS" -v s="$SERVICE_P99" 'BEGIN {printf "%.1f", q + s}')
# The generator's percentiles are within 0.4% (its histogram's resolution): a p99 that far above
# the bound is a tie, not a miss.
P99_OK=$(awk -v p="${P99OK[shed,$DURATION]}" -v b="$P99_BOUND" 'BEGIN {print (p <= b) ? 1 : (p <= b * 1.004) ? 2 : 0}')
VERDICT=FAIL
((GOOD_OK && P99_OK == 1)) && VERDICT=PASS
((GOOD_OK && P99_OK == 2)) && VERDICT="PASS (the 2xx p99 within the generator's 0.4% resolution of the bound)"
say "== with queue_timeout ${QT_MS}ms, $DURATION s: goodput ${GOOD[shed,$DURATION]} req/s = $(div "${GOOD[shed,$DURATION]}" "$CAPACITY") x capacity (>= 0.9: $( ((GOOD_OK)) && echo ok || echo NO)); 2xx p99 ${P99OK[shed,$DURATION]} ms (<= $P99_BOUND ms: $(case $P99_OK in 1) echo ok ;; 2) echo tie ;; *) echo NO ;; esac)): $VERDICT"

name() { case $1 in shed) echo "workerd + workerd_uvicorn, \`queue_timeout: ${QT_MS}ms\`" ;; noshed) echo "workerd + workerd_uvicorn, no shedding" ;; gunicorn) echo "gunicorn + UvicornWorker" ;; esac; }
md "Offered: **$OFFERED req/s**, twice the fleet's capacity ($(printf '%.0f' "$CAPACITY") req/s: 2 workers, closed loop with 16 connections), open loop, for $SHORT s and for $DURATION s, fresh servers each run. Goodput: 2xx answers per second, over the run until its last answer (without shedding, the backlog is served long after the offered load stops). The service p99 (one request at a time) is $SERVICE_P99 ms."
md ""
md "| server | run | last answer after | goodput req/s | vs capacity | 2xx p99 ms | every answer's p99 ms | 503 (shed) | timed out |"
md "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for kind in shed noshed gunicorn; do
  for secs in "$SHORT" "$DURATION"; do
    md "| $(name "$kind") | $secs s | ${WALL[$kind,$secs]} s | ${GOOD[$kind,$secs]} | $(div "${GOOD[$kind,$secs]}" "$CAPACITY")× | ${P99OK[$kind,$secs]} | ${P99ALL[$kind,$secs]} | ${SHED[$kind,$secs]} | ${TIMEOUTS[$kind,$secs]} |"
  done
done
md ""
md "**$VERDICT**: with \`queue_timeout: ${QT_MS}ms\` for $DURATION s, goodput $(div "${GOOD[shed,$DURATION]}" "$CAPACITY")× capacity (≥ 0.9×) and 2xx p99 ${P99OK[shed,$DURATION]} ms (≤ queue_timeout + service p99 = $P99_BOUND ms). Without shedding the queue only grows: the p99 of the $DURATION s run against the $SHORT s run is $(div "${P99OK[noshed,$DURATION]}" "${P99OK[noshed,$SHORT]}")× (workerd) and $(div "${P99OK[gunicorn,$DURATION]}" "${P99OK[gunicorn,$SHORT]}")× (gunicorn)."
md ""
md "App: \`tests/data/apps/tune_app.py\` \`$ROUTE\` under \`workerd_uvicorn\` (\`reuse_port: true\`) and under \`gunicorn -k uvicorn.workers.UvicornWorker -w 2 --chdir tests/data/apps tune_app:app\`. Load: \`workerd load URL --rate $OFFERED --duration Ds -c 512 --timeout 120s --json\`."
md ""
md_end
[ "$VERDICT" != FAIL ]
