#!/usr/bin/env bash
# Preloaded workers (app.preload) under load, against gunicorn --preload (issue 17):
#   1. Reload: wrk (64 connections) on a FastAPI app whose answer names its code version; the
#      app's code changes, then `workerctl reload --wait` (workerd) or SIGHUP (gunicorn
#      --preload). Which versions answered, failed requests, and what answers after.
#   2. The zygote SIGKILLed under the same load: failed requests, the new zygote's time to
#      ready, and the next `scale +1 --wait`.
#
# Usage: tests/bench/bench_preload.sh [SECONDS] [WORKERS]
set -euo pipefail

SECONDS_PER_RUN=${1:-12}
WORKERS=${2:-4}
ROUNDS=1
DURATION=$SECONDS_PER_RUN
source "$(dirname "$0")/lib.sh"
require gunicorn curl wrk "$WORKERD" "$WORKERCTL"
machine
md_begin preload "Preloaded workers under load: reload and a killed zygote" "$SECONDS_PER_RUN" "$WORKERS"

write_app() {  # write_app DIR VERSION
  mkdir -p "$1"
  cat >"$1/app.py" <<PYEOF
import os
from fastapi import FastAPI

VERSION = "$2"
app = FastAPI()


@app.get("/")
async def root():
    return {"version": VERSION, "pid": os.getpid()}


@app.get("/healthz")
async def healthz():
    return {"ok": True}
PYEOF
}
versions_of() { sed -n 's/^versions: //p' "$1"; }
# errors_of WRK_OUT: socket errors and non-2xx answers, summed
errors_of() {
  awk '/Socket errors/ {gsub(/,/, ""); s += $4 + $6 + $8 + $10} /Non-2xx/ {s += $NF} END {print s + 0}' "$1"
}
answers() {  # answers PORT N: the versions of N answers, counted
  local i
  for i in $(seq "$2"); do { curl -fsS "http://127.0.0.1:$1/"; echo; } | sed -n 's/.*"version":"\([^"]*\)".*/\1/p'; done | sort | uniq -c | awk '{printf "%s%s=%s", (NR > 1 ? " " : ""), $2, $1} END {print ""}'
}
UV_OPTS='"--no-access-log", "--log-level", "warning"'

# --- 1. reload under load --------------------------------------------------------------------
write_app "$WORK/wd-app" v1
read -r W P < <(start_workerd wd "workers: $WORKERS
app:
  command: [\"$PY\", \"-m\", \"workerd_uvicorn\", \"app:app\", $UV_OPTS]
  preload: true
  cwd: $WORK/wd-app
  env: {PYTHONPATH: $ROOT/packaging/python}"); PIDS+=("$W")
write_app "$WORK/g-app" v1
GP=$(free_port)
"$PY" -m gunicorn -k uvicorn.workers.UvicornWorker -w "$WORKERS" --preload -b "127.0.0.1:$GP" --chdir "$WORK/g-app" \
  --log-level warning app:app 2>"$WORK/gunicorn.log" &
G=$!; PIDS+=("$G")
wait_http "http://127.0.0.1:$P/healthz"; wait_http "http://127.0.0.1:$GP/healthz"
"$WORKERCTL" -s "$WORK/wd.sock" --timeout 60 scale "$WORKERS" --wait >/dev/null

say "== reload under load: wrk -c64 for ${SECONDS_PER_RUN}s; the code changes to v2 at 3 s"
timeout $((SECONDS_PER_RUN + 30)) wrk -t2 -c64 -d${SECONDS_PER_RUN}s -s "$BENCH_DIR/per_second.lua" "http://127.0.0.1:$P/" >"$WORK/wrk-wd.out" &
K1=$!
timeout $((SECONDS_PER_RUN + 30)) wrk -t2 -c64 -d${SECONDS_PER_RUN}s -s "$BENCH_DIR/per_second.lua" "http://127.0.0.1:$GP/" >"$WORK/wrk-g.out" &
K2=$!
sleep 3
write_app "$WORK/wd-app" v2
write_app "$WORK/g-app" v2
t0=$(date +%s%N)
"$WORKERCTL" -s "$WORK/wd.sock" --timeout 120 reload --wait >"$WORK/reload.out" 2>&1 || { cat "$WORK/reload.out"; exit 1; }
RELOAD_MS=$(( ($(date +%s%N) - t0) / 1000000 ))
kill -HUP "$G"
wait "$K1" "$K2"
sleep 3   # gunicorn's HUP: its new workers are up by now
WD_VERSIONS=$(versions_of "$WORK/wrk-wd.out"); G_VERSIONS=$(versions_of "$WORK/wrk-g.out")
WD_ERR=$(errors_of "$WORK/wrk-wd.out"); G_ERR=$(errors_of "$WORK/wrk-g.out")
WD_AFTER=$(answers "$P" 20); G_AFTER=$(answers "$GP" 20)
say "  workerd app.preload: during: $WD_VERSIONS; failed $WD_ERR; reload --wait ${RELOAD_MS} ms; after: $WD_AFTER"
say "  gunicorn --preload + HUP: during: $G_VERSIONS; failed $G_ERR; after: $G_AFTER"
grep -E "Requests/sec|requests in|Socket errors|Non-2xx" "$WORK/wrk-wd.out" "$WORK/wrk-g.out" | sed 's/^/  /' | tee -a "$RAW_FILE"

# --- 2. the zygote killed under load ---------------------------------------------------------
zygote_pid() { "$WORKERCTL" -s "$WORK/wd.sock" status --json | "$PY" -c 'import json,sys; z=json.load(sys.stdin)["zygotes"]; print(z[0]["pid"] if z and z[0]["state"] == "ready" else 0)'; }
Z=$(zygote_pid)
say "== the zygote (pid $Z) SIGKILLed at 3 s of wrk -c64 for ${SECONDS_PER_RUN}s"
timeout $((SECONDS_PER_RUN + 30)) wrk -t2 -c64 -d${SECONDS_PER_RUN}s -s "$BENCH_DIR/per_second.lua" "http://127.0.0.1:$P/" >"$WORK/wrk-kill.out" &
K=$!
sleep 3
t0=$(date +%s%N)
kill -KILL "$Z"
Z2=0
for _ in $(seq 600); do Z2=$(zygote_pid); [ "$Z2" != 0 ] && [ "$Z2" != "$Z" ] && break; sleep 0.05; done
BACK_MS=$(( ($(date +%s%N) - t0) / 1000000 ))
wait "$K"
KILL_ERR=$(errors_of "$WORK/wrk-kill.out")
t0=$(date +%s%N)
"$WORKERCTL" -s "$WORK/wd.sock" --timeout 60 scale +1 --wait >/dev/null
SCALE_MS=$(( ($(date +%s%N) - t0) / 1000000 ))
say "  failed $KILL_ERR of $(awk '/requests in/ {print $1}' "$WORK/wrk-kill.out"); a new zygote (pid $Z2) ready after ${BACK_MS} ms; then scale +1 --wait ${SCALE_MS} ms"
grep -E "Requests/sec|requests in|Socket errors|Non-2xx" "$WORK/wrk-kill.out" | sed 's/^/  /' | tee -a "$RAW_FILE"

md "A FastAPI app whose answer names its code version, $WORKERS workers each, wrk with 64"
md "connections for ${SECONDS_PER_RUN} s (\`tests/bench/per_second.lua\` counts the answers by version)."
md "At 3 s the app's file changes from v1 to v2; then \`workerctl reload --wait\` (workerd,"
md "\`app.preload: true\`) and SIGHUP to the arbiter (gunicorn \`--preload\`)."
md ""
md "| server | answers during the run | failed requests | 20 answers after |"
md "| --- | --- | ---: | --- |"
md "| workerd, \`app.preload\` + \`workerctl reload --wait\` (${RELOAD_MS} ms) | $WD_VERSIONS | **$WD_ERR** | **$WD_AFTER** |"
md "| gunicorn \`--preload\` + HUP | $G_VERSIONS | $G_ERR | $G_AFTER |"
md ""
md "gunicorn \`--preload\` imports the app in the arbiter, and a HUP forks new workers from that"
md "same arbiter: they run the old code until the arbiter itself is restarted. workerd's reload"
md "starts a new zygote, which imports the new code, and rolls the new generation out from it."
md "gunicorn's failed requests, if any, are the kept-alive connections its old workers closed at"
md "the HUP (wrk counts them as read errors); workerd's workers finish theirs before they exit."
md ""
md "Then, under the same load, the zygote is SIGKILLed at 3 s: **$KILL_ERR failed requests** (of"
md "$(awk '/requests in/ {print $1}' "$WORK/wrk-kill.out")); the workers forked from it serve on, a new zygote was ready ${BACK_MS} ms"
md "after the kill, and the next \`workerctl scale +1 --wait\` (forked from it) took ${SCALE_MS} ms."
md ""
NAMES=("workerd" "gunicorn --preload")
CMDS=("\`workerd start SPEC\`: \`workers: $WORKERS\`, \`app: {command: [python3, -m, workerd_uvicorn, app:app, --no-access-log, --log-level, warning], preload: true}\`"
      "\`python3 -m gunicorn -k uvicorn.workers.UvicornWorker -w $WORKERS --preload -b 127.0.0.1:PORT --chdir DIR --log-level warning app:app\`")
md_servers_end
