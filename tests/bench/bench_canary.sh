#!/usr/bin/env bash
# Canary analysis (rollout.analysis) under load, against gunicorn's HUP (issue 18):
#   1. Bad deploys: wrk (32 connections) on a FastAPI app (10 ms per answer); at 3 s its code
#      changes to one that answers 500 on 20% of requests, then to one 3x slower; workerd
#      reloads (`workerctl reload --wait`), gunicorn gets a HUP. Failed requests over the run,
#      which code answered, and which answers after.
#   2. Good deploys: 20 reloads in a row to equally good code under the same load: how many
#      were promoted, how many rolled back (false rollbacks), failed requests.
#
# Usage: tests/bench/bench_canary.sh [SECONDS] [WORKERS] [GOOD_DEPLOYS]
set -euo pipefail

SECONDS_PER_RUN=${1:-20}
WORKERS=${2:-4}
GOOD=${3:-20}
ROUNDS=1
DURATION=$SECONDS_PER_RUN
source "$(dirname "$0")/lib.sh"
require gunicorn curl wrk "$WORKERD" "$WORKERCTL"
machine
md_begin canary "Canary analysis: bad deploys stop at the canary, good ones roll out" "$SECONDS_PER_RUN" "$WORKERS" "$GOOD"

WINDOW=3s
ANALYSIS="{canaries: 1, window: $WINDOW, min_requests: 200, max_p99_ratio: 1.7}"

write_app() {  # write_app DIR VERSION DELAY_MS FAIL_SHARE
  mkdir -p "$1"
  cat >"$1/app.py" <<PYEOF
import asyncio
import random

from fastapi import FastAPI
from fastapi.responses import JSONResponse

VERSION = "$2"
app = FastAPI()


@app.get("/")
async def root():
    await asyncio.sleep($3 / 1000)
    if random.random() < $4:
        return JSONResponse({"version": VERSION}, status_code=500)
    return {"version": VERSION}


@app.get("/healthz")
async def healthz():
    return {"ok": True}
PYEOF
}
versions_of() { sed -n 's/^versions: //p' "$1"; }
requests_of() { awk '/requests in/ {print $1}' "$1"; }
# errors_of WRK_OUT: socket errors and non-2xx answers, summed
errors_of() {
  awk '/Socket errors/ {gsub(/,/, ""); s += $4 + $6 + $8 + $10} /Non-2xx/ {s += $NF} END {print s + 0}' "$1"
}
answers() {  # answers PORT N: the versions of N answers, counted
  local i
  for i in $(seq "$2"); do { curl -sS "http://127.0.0.1:$1/"; echo; } | sed -n 's/.*"version":"\([^"]*\)".*/\1/p'; done | sort | uniq -c | awk '{printf "%s%s=%s", (NR > 1 ? " " : ""), $2, $1} END {print ""}'
}
pct() { awk -v a="$1" -v b="$2" 'BEGIN {if (b + 0 == 0) print "-"; else printf "%.2f%%\n", 100 * a / b}'; }
UV_OPTS='"--no-access-log", "--log-level", "warning"'

# workerd: each release in its own directory, the spec's cwd naming it (a rollback restores the
# previous spec, and so the previous code); the spec is rewritten, then reloaded.
wd_spec() {  # wd_spec RELEASE
  cat >"$WORK/wd.yaml" <<YAML
listen: ["127.0.0.1:$P"]
workers: $WORKERS
boot_timeout: 60s
app:
  command: ["$PY", "-m", "workerd_uvicorn", "app:app", $UV_OPTS]
  cwd: $WORK/releases/$1
  env: {PYTHONPATH: $ROOT/packaging/python}
rollout: {analysis: $ANALYSIS}
control: {socket: $WORK/wd.sock}
log: {level: info}
YAML
}
write_app "$WORK/releases/v1" v1 10 0
P=$(free_port)
wd_spec v1
"$WORKERD" start $ALLOW_ROOT "$WORK/wd.yaml" 2>"$WORK/workerd-wd.log" &
W=$!; PIDS+=("$W")
write_app "$WORK/g-app" v1 10 0
GP=$(free_port)
"$PY" -m gunicorn -k uvicorn.workers.UvicornWorker -w "$WORKERS" -b "127.0.0.1:$GP" --chdir "$WORK/g-app" \
  --log-level warning app:app 2>"$WORK/gunicorn.log" &
G=$!; PIDS+=("$G")
wait_http "http://127.0.0.1:$P/healthz"; wait_http "http://127.0.0.1:$GP/healthz"
"$WORKERCTL" -s "$WORK/wd.sock" --timeout 60 scale "$WORKERS" --wait >/dev/null

# --- 1. bad deploys ----------------------------------------------------------------------------
CONNS=16
ROWS=()
bad_deploy() {  # bad_deploy NAME VERSION DELAY_MS FAIL_SHARE
  local name=$1 v=$2
  say "== $name: wrk -c$CONNS for ${SECONDS_PER_RUN}s on each server in turn; the code changes to $v at 3 s"
  timeout $((SECONDS_PER_RUN + 30)) wrk -t2 -c$CONNS -H "Connection: close" -d${SECONDS_PER_RUN}s -s "$BENCH_DIR/per_second.lua" "http://127.0.0.1:$P/" >"$WORK/wrk-wd-$v.out" &
  local k1=$!
  sleep 3
  write_app "$WORK/releases/$v" "$v" "$3" "$4"
  wd_spec "$v"
  local t0 rc=0
  t0=$(date +%s%N)
  "$WORKERCTL" -s "$WORK/wd.sock" --timeout 120 reload --wait >"$WORK/reload-$v.out" 2>&1 || rc=$?
  local ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  wait "$k1"
  timeout $((SECONDS_PER_RUN + 30)) wrk -t2 -c$CONNS -H "Connection: close" -d${SECONDS_PER_RUN}s -s "$BENCH_DIR/per_second.lua" "http://127.0.0.1:$GP/" >"$WORK/wrk-g-$v.out" &
  local k2=$!
  sleep 3
  write_app "$WORK/g-app" "$v" "$3" "$4"
  kill -HUP "$G"
  wait "$k2"
  local reason
  reason=$(grep -o 'generation [0-9]*: .*' "$WORK/reload-$v.out" | head -1 || true)
  [ -n "$reason" ] || reason=$(tr '\n' ' ' <"$WORK/reload-$v.out")
  local wd_err g_err wd_n g_n
  wd_err=$(errors_of "$WORK/wrk-wd-$v.out"); g_err=$(errors_of "$WORK/wrk-g-$v.out")
  wd_n=$(requests_of "$WORK/wrk-wd-$v.out"); g_n=$(requests_of "$WORK/wrk-g-$v.out")
  local wd_after g_after
  wd_after=$(answers "$P" 20); g_after=$(answers "$GP" 20)
  say "  workerd: reload --wait exit $rc after ${ms} ms: $reason"
  say "  workerd: during: $(versions_of "$WORK/wrk-wd-$v.out"); failed $wd_err of $wd_n ($(pct "$wd_err" "$wd_n")); after: $wd_after"
  say "  gunicorn HUP: during: $(versions_of "$WORK/wrk-g-$v.out"); failed $g_err of $g_n ($(pct "$g_err" "$g_n")); after: $g_after"
  grep -E "Requests/sec|requests in|Socket errors|Non-2xx|Latency " "$WORK/wrk-wd-$v.out" "$WORK/wrk-g-$v.out" | sed 's/^/  /' | tee -a "$RAW_FILE"
  ROWS+=("| $name | workerd, \`rollout.analysis\` | exit $rc after ${ms} ms: $reason | $(versions_of "$WORK/wrk-wd-$v.out") | **$wd_err of $wd_n ($(pct "$wd_err" "$wd_n"))** | **$wd_after** |")
  ROWS+=("| | gunicorn + HUP | - | $(versions_of "$WORK/wrk-g-$v.out") | $g_err of $g_n ($(pct "$g_err" "$g_n")) | $g_after |")
  # gunicorn back to the good code for the next run (workerd rolled back by itself).
  write_app "$WORK/g-app" v1 10 0
  kill -HUP "$G"
  sleep 3
}
bad_deploy "20% 5xx" v2 10 0.2
bad_deploy "3x slower" v3 30 0

# --- 2. good deploys ---------------------------------------------------------------------------
say "== $GOOD good deploys in a row under wrk -c$CONNS"
timeout 900 wrk -t2 -c$CONNS -H "Connection: close" -d600s -s "$BENCH_DIR/per_second.lua" "http://127.0.0.1:$P/" >"$WORK/wrk-good.out" &
K=$!
PROMOTED=0; ROLLED_BACK=0; TIMES=()
sleep 2
for i in $(seq "$GOOD"); do
  write_app "$WORK/releases/g$i" "g$i" 10 0
  wd_spec "g$i"
  t0=$(date +%s%N)
  if "$WORKERCTL" -s "$WORK/wd.sock" --timeout 120 reload --wait >"$WORK/reload-g$i.out" 2>&1; then
    PROMOTED=$((PROMOTED + 1))
  else
    ROLLED_BACK=$((ROLLED_BACK + 1))
    say "  deploy $i rolled back: $(tr '\n' ' ' <"$WORK/reload-g$i.out")"
  fi
  TIMES+=($(( ($(date +%s%N) - t0) / 1000000 )))
done
kill -INT "$K"; wait "$K" || true
GOOD_ERR=$(errors_of "$WORK/wrk-good.out"); GOOD_N=$(requests_of "$WORK/wrk-good.out")
GOOD_AFTER=$(answers "$P" 20)
MEDIAN_MS=$(medianof "${TIMES[@]}")
say "  $PROMOTED promoted, $ROLLED_BACK rolled back; reload --wait median ${MEDIAN_MS} ms; failed $GOOD_ERR of $GOOD_N; after: $GOOD_AFTER"
grep -E "Requests/sec|requests in|Socket errors|Non-2xx|Latency " "$WORK/wrk-good.out" | sed 's/^/  /' | tee -a "$RAW_FILE"

md "A FastAPI app (an \`asyncio.sleep(0.01)\` per answer, which names its code version), $WORKERS"
md "workers each, wrk with $CONNS connections and \`Connection: close\` (a new connection per request, so a"
md "new worker gets its share) for ${SECONDS_PER_RUN} s (\`tests/bench/per_second.lua\` counts"
md "the answers by version). At 3 s the app's file changes to the bad code; then"
md "\`workerctl reload --wait\` (workerd, \`rollout: {analysis: $ANALYSIS}\`) and SIGHUP"
md "to gunicorn's arbiter."
md ""
md "| deploy | server | reload | answers during the run | failed requests | 20 answers after |"
md "| --- | --- | --- | --- | ---: | --- |"
for r in "${ROWS[@]}"; do md "$r"; done
md ""
md "workerd started one new worker (the canary) beside the old ones, compared it with them over the"
md "window on the same traffic, stopped the rollout and drained it: the failed requests are what the"
md "canary answered in its window (its share of the traffic: 1 of $WORKERS workers; a new, idle worker"
md "takes more than its share of new connections at first). Each release is in its own directory and"
md "the spec's \`cwd\` names it, so the rollback restored the previous code. gunicorn has no such"
md "step: the new code replaced every worker and kept failing after the run. Each server ran alone"
md "(workerd's run, then gunicorn's), so that neither's load shapes the other's latency."
md ""
md "Then **$GOOD deploys in a row** of equally good code under the same load (wrk -c$CONNS on workerd):"
md "**$PROMOTED promoted, $ROLLED_BACK rolled back** (false rollbacks), \`reload --wait\` median ${MEDIAN_MS} ms"
md "(the ${WINDOW} window, then the rest of the rollout); **$GOOD_ERR failed requests** of $GOOD_N; after: $GOOD_AFTER."
md ""
NAMES=("workerd" "gunicorn")
CMDS=("\`workerd start SPEC\`: \`workers: $WORKERS\`, \`app: {command: [python3, -m, workerd_uvicorn, app:app, --no-access-log, --log-level, warning]}\`, \`rollout: {analysis: $ANALYSIS}\`"
      "\`python3 -m gunicorn -k uvicorn.workers.UvicornWorker -w $WORKERS -b 127.0.0.1:PORT --chdir DIR --log-level warning app:app\`")
md_servers_end
