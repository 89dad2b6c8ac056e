#!/usr/bin/env bash
# Leak-aware recycling (`leak`) against max_requests (issue 18): a FastAPI app whose /leak
# keeps 64 KiB per request and whose / keeps nothing, 2 workers, max_private as the threshold,
# an open-loop load (`workerd load --rate`) on each route in turn. With `leak` the workers are
# replaced by their trend; with max_requests set to the count that catches the leak before the
# threshold, every worker is replaced at that count, leaking or not. Replacements, requests per
# replacement, the most private memory a worker reached, failed requests.
#
# Usage: tests/bench/bench_leak.sh [SECONDS] [RATE]
set -euo pipefail

SECONDS_PER_RUN=${1:-60}
RATE=${2:-100}
ROUNDS=1
DURATION=$SECONDS_PER_RUN
source "$(dirname "$0")/lib.sh"
require curl "$WORKERD" "$WORKERCTL"
machine
md_begin leak "Leak-aware recycling against max_requests" "$SECONDS_PER_RUN" "$RATE"

LIMIT_MIB=200
LEAK_KIB=64
mkdir -p "$WORK/app"
cat >"$WORK/app/app.py" <<PYEOF
from fastapi import FastAPI

app = FastAPI()
kept = []


@app.get("/leak")
async def leak():
    kept.append(b"x" * ($LEAK_KIB * 1024))
    return {"kept": len(kept)}


@app.get("/")
async def root():
    return {"kept": len(kept)}
PYEOF

# A fresh worker's private memory (USS), measured: what the leak starts from.
read -r W P < <(start_workerd probe "workers: 1
app:
  command: [\"$PY\", \"-m\", \"workerd_uvicorn\", \"app:app\", \"--no-access-log\"]
  cwd: $WORK/app
  env: {PYTHONPATH: $ROOT/packaging/python}
max_private: ${LIMIT_MIB}MiB"); PIDS+=("$W")
wait_http "http://127.0.0.1:$P/"
for _ in $(seq 20); do curl -fsS -o /dev/null "http://127.0.0.1:$P/"; done
sleep 2
BASE_MIB=$("$WORKERCTL" -s "$WORK/probe.sock" status --json | "$PY" -c 'import json,sys; print(max(w["private_bytes"] for w in json.load(sys.stdin)["workers"]) >> 20)')
stop "$W"
# The count that catches the leak: a worker reaches the threshold after (limit - base) / leak
# requests; max_requests at 80% of that replaces it with room to spare.
CATCH=$(( (LIMIT_MIB - BASE_MIB) * 1024 / LEAK_KIB * 8 / 10 ))
say "a fresh worker: ${BASE_MIB} MiB private; ${LEAK_KIB} KiB a request reaches max_private ${LIMIT_MIB} MiB after $(( (LIMIT_MIB - BASE_MIB) * 1024 / LEAK_KIB )) requests; max_requests $CATCH"

LEAK_SPEC="{min_growth: 64MiB, warmup: 100, idle_wait: 5s}"
ROWS=()
run() {  # run NAME RECYCLE_YAML PATH
  local name=$1 recycle=$2 path=$3 tag
  tag=$(echo "$name-$path" | tr -c 'a-z0-9' '-')
  read -r W P < <(WORKERD_LOG=info start_workerd "$tag" "workers: 2
app:
  command: [\"$PY\", \"-m\", \"workerd_uvicorn\", \"app:app\", \"--no-access-log\"]
  cwd: $WORK/app
  env: {PYTHONPATH: $ROOT/packaging/python}
max_private: ${LIMIT_MIB}MiB
min_lifetime: 1s
$recycle"); PIDS+=("$W")
  wait_http "http://127.0.0.1:$P/"
  "$WORKERCTL" -s "$WORK/$tag.sock" --timeout 60 scale 2 --wait >/dev/null
  "$WORKERD" load "http://127.0.0.1:$P$path" --rate "$RATE" --duration "${SECONDS_PER_RUN}s" -c 32 --timeout 10s --json \
    >"$WORK/load-$tag.json" 2>/dev/null &
  local L=$! peak=0 mib
  while running "$L"; do
    mib=$("$WORKERCTL" -s "$WORK/$tag.sock" status --json 2>/dev/null | "$PY" -c 'import json,sys; print(max([w["private_bytes"] for w in json.load(sys.stdin)["workers"]] + [0]) >> 20)' 2>/dev/null || echo 0)
    [ "$mib" -gt "$peak" ] && peak=$mib
    sleep 1
  done
  wait "$L" || true
  stop "$W"
  local requests errors by_leak by_count by_limit replaced per
  requests=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["requests"])' "$WORK/load-$tag.json")
  errors=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["errors"])' "$WORK/load-$tag.json")
  by_leak=$(grep -c '(leaking)' "$WORK/workerd-$tag.log" || true)
  by_count=$(grep -c '(max_requests' "$WORK/workerd-$tag.log" || true)
  by_limit=$(grep -c '(max_private' "$WORK/workerd-$tag.log" || true)
  replaced=$((by_leak + by_count + by_limit))
  per=$(div "$requests" "$replaced" "%.0f")
  say "  $name, $path: $requests requests, $errors failed; replaced $replaced (leak $by_leak, max_requests $by_count, max_private $by_limit); most private memory seen ${peak} MiB"
  grep -m3 'KiB/request' "$WORK/workerd-$tag.log" | sed 's/^/    /' | tee -a "$RAW_FILE" || true
  ROWS+=("| $name | \`$path\` | $requests | $errors | **$replaced** | $per | $by_limit | $peak MiB |")
}
say "== ${SECONDS_PER_RUN} s at $RATE requests/s on each route, 2 workers, max_private ${LIMIT_MIB} MiB"
run "leak" "leak: $LEAK_SPEC" /leak
run "leak" "leak: $LEAK_SPEC" /
run "max_requests $CATCH" "max_requests: $CATCH" /leak
run "max_requests $CATCH" "max_requests: $CATCH" /

md "A FastAPI app under workerd_uvicorn, 2 workers, \`max_private: ${LIMIT_MIB}MiB\` as the threshold, \`workerd"
md "load --rate $RATE\` for ${SECONDS_PER_RUN} s on one route: \`/leak\` keeps ${LEAK_KIB} KiB per request, \`/\`"
md "keeps nothing. A fresh worker has ${BASE_MIB} MiB of private memory, so a leaking one reaches the"
md "threshold after $(( (LIMIT_MIB - BASE_MIB) * 1024 / LEAK_KIB )) requests; \`max_requests: $CATCH\` (80% of that) is the count that"
md "catches the leak. \`leak: $LEAK_SPEC\`."
md ""
md "| recycling | route | requests | failed | workers replaced | requests per replacement | at max_private | most private memory of a worker |"
md "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
for r in "${ROWS[@]}"; do md "$r"; done
md ""
md "Leak-aware recycling replaced the leaking workers by their trend, before the threshold, and"
md "none of the workers that did not leak; \`max_requests\` replaced workers at the same pace"
md "whether they leaked or not."
md ""
NAMES=("workerd")
CMDS=("\`workerd start SPEC\`: \`workers: 2\`, \`app: {command: [python3, -m, workerd_uvicorn, app:app, --no-access-log]}\`, \`max_private: ${LIMIT_MIB}MiB\`, \`min_lifetime: 1s\` and either \`leak: $LEAK_SPEC\` or \`max_requests: $CATCH\`")
md_servers_end
