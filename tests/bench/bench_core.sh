#!/usr/bin/env bash
# Side-by-side throughput and latency, one run, same load for every server (wrk, loopback only):
#   1. workerd + bundled worker (2 workers; by default, and with `reuse_port: cpu`)  vs  nginx
#      (2 workers), on /healthz (`return 200` for nginx) and on static files of 1 KiB, 100 KiB
#      and 10 MiB (transfer rate; twice: read by wrk, then by `workerd load`) served from the
#      same directory; nginx with sendfile, tcp_nopush, open_file_cache, no access log.
#      At least 5 rounds (issue 19): a smaller ROUNDS is raised to 5 for this group.
#   2. workerd + workerd_uvicorn, workerd + `uvicorn --fd`, `uvicorn --workers 2` and
#      gunicorn -k uvicorn.workers.UvicornWorker -w 2, on the same FastAPI route.
# Rounds alternate the servers; the medians (req/s, or MB/s for the 10 MiB file; p50, p99) and
# their ratios are printed, also over the rounds in which each server, and both, spread wrk's
# connections evenly across their worker processes (sampled mid-run; see `compare` in lib.sh).
#
# Usage: tests/bench/bench_core.sh [ROUNDS] [SECONDS] [builtin|uvicorn|all]
#        (make bench runs it with defaults: 3 rounds of 10 s, both groups; the builtin group
#        runs max(ROUNDS, 5) rounds, the uvicorn group ROUNDS)
# Every process started here is stopped by its pid on exit, even on failure.
set -euo pipefail

ROUNDS=${1:-3}
DURATION=${2:-10}
ONLY=${3:-all}
source "$(dirname "$0")/lib.sh"
require wrk nginx gunicorn ss curl "$WORKERD"
machine
md_begin core "Throughput and latency" "$ROUNDS" "$DURATION" "$ONLY"

if [[ $ONLY == all || $ONLY == builtin ]]; then
# --- 1. bundled worker vs nginx -------------------------------------------------------------
ROUNDS_ALL=$ROUNDS
ROUNDS=$((ROUNDS < 5 ? 5 : ROUNDS))   # issue 19: at least 5 rounds against nginx
start_builtin_and_nginx
# The same workers with `reuse_port: cpu`: each worker's socket takes the connections that come
# in on one CPU (on loopback, the CPU of the wrk thread that connects).
read -r BC_PID BC_PORT < <(start_workerd builtin-cpu "workers: 2
reuse_port: cpu
app:
  builtin: {root: $WORK/static}"); PIDS+=("$BC_PID")
wait_http "http://127.0.0.1:$BC_PORT/healthz"
BC_CMD="as workerd+builtin, with \`reuse_port: cpu\`"
builtin_vs_nginx() {  # builtin_vs_nginx PATH WHAT [--transfer]
  clear_sides
  side "workerd+builtin" "http://127.0.0.1:$BI_PORT$1" "$BI_PORT" "$BI_PID" "$BI_CMD"
  side "workerd+builtin, reuse_port: cpu" "http://127.0.0.1:$BC_PORT$1" "$BC_PORT" "$BC_PID" "$BC_CMD"
  side "nginx" "http://127.0.0.1:$NG_PORT$1" "$NG_PORT" "$NG_PID" "$NG_CMD"
  compare ${3:+"$3"} "Bundled worker vs nginx, $2, 2 workers each"
}
builtin_vs_nginx /healthz /healthz
builtin_vs_nginx /small.html "a 1 KiB static file"
builtin_vs_nginx /100k.bin "a 100 KiB static file"
builtin_vs_nginx /10m.bin "a 10 MiB static file (transfer rate)" --transfer
# wrk reads 8 KiB a call, and on this file its reads are most of the machine's CPU: the same
# file again with `workerd load` (64 KiB a call) as the client, so the servers' cost shows.
LOAD_CLIENT=load builtin_vs_nginx /10m.bin "a 10 MiB static file (transfer rate), read by workerd load" --transfer
stop "$BI_PID" "$BC_PID" "$NG_PID"
ROUNDS=$ROUNDS_ALL
fi

if [[ $ONLY == all || $ONLY == uvicorn ]]; then
# --- 2. workerd + uvicorn vs gunicorn + UvicornWorker vs uvicorn --workers ---------------------
UV_OPTS='"--no-access-log", "--log-level", "warning"'
core_workerd() {  # core_workerd NAME COMMAND_JSON -> PID PORT: 2 workers running COMMAND_JSON
  start_workerd "$1" "workers: 2
app:
  command: $2
  cwd: $APP_DIR
  env: {PYTHONPATH: $ROOT/packaging/python}"
}
read -r WD2 P3 < <(core_workerd wduv "[\"$PY\", \"-m\", \"workerd_uvicorn\", \"app:app\", $UV_OPTS]"); PIDS+=("$WD2")
read -r WD3 P4 < <(core_workerd uvfd "[\"$PY\", \"-m\", \"uvicorn\", \"app:app\", \"--fd\", \"{fd}\", $UV_OPTS]"); PIDS+=("$WD3")
P5=$(free_port)
"$PY" -m uvicorn app:app --app-dir "$APP_DIR" --workers 2 --host 127.0.0.1 --port "$P5" \
  --no-access-log --log-level warning 2>"$WORK/uvicorn.log" &
UV=$!; PIDS+=("$UV")
P6=$(free_port)
"$PY" -m gunicorn -k uvicorn.workers.UvicornWorker -w 2 -b "127.0.0.1:$P6" \
  --chdir "$APP_DIR" --log-level warning app:app 2>"$WORK/gunicorn.log" &
GU=$!; PIDS+=("$GU")
for p in "$P3" "$P4" "$P5" "$P6"; do wait_http "http://127.0.0.1:$p/healthz"; done
sleep 1   # uvicorn --workers: both workers up, not only the first
URL="/items/42?q=bench"
clear_sides
side "workerd+workerd_uvicorn" "http://127.0.0.1:$P3$URL" "$P3" "$WD2" \
  "\`workerd start SPEC\` with \`workers: 2\`, \`app.command: [python3, -m, workerd_uvicorn, app:app, --no-access-log, --log-level, warning]\` (cwd \`examples/fastapi\`)"
side "workerd+uvicorn --fd" "http://127.0.0.1:$P4$URL" "$P4" "$WD3" \
  "\`workerd start SPEC\` with \`workers: 2\`, \`app.command: [python3, -m, uvicorn, app:app, --fd, '{fd}', --no-access-log, --log-level, warning]\`"
side "uvicorn --workers" "http://127.0.0.1:$P5$URL" "$P5" "$UV" \
  "\`python3 -m uvicorn app:app --app-dir examples/fastapi --workers 2 --host 127.0.0.1 --port PORT --no-access-log --log-level warning\`"
side "gunicorn+UvicornWorker" "http://127.0.0.1:$P6$URL" "$P6" "$GU" \
  "\`python3 -m gunicorn -k uvicorn.workers.UvicornWorker -w 2 -b 127.0.0.1:PORT --chdir examples/fastapi --log-level warning app:app\`"
compare "FastAPI /items/42, 2 workers each"
fi
md_end
