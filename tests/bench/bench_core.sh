#!/usr/bin/env bash
# Side-by-side throughput and latency, one run, same load for every server (wrk, loopback only):
#   1. workerd + bundled worker (2 workers)  vs  nginx (2 workers), on /healthz (`return 200`
#      for nginx) and on a small static file (1 KiB) served from the same directory.
#   2. workerd + workerd_uvicorn, workerd + `uvicorn --fd`, `uvicorn --workers 2` and
#      gunicorn -k uvicorn.workers.UvicornWorker -w 2, on the same FastAPI route.
# Rounds alternate the servers; the medians (req/s, p50, p99) and their ratios are printed, plus
# how wrk's connections were spread across each server's worker processes (sampled mid-run).
#
# Usage: tests/bench/bench_core.sh [ROUNDS] [SECONDS] [builtin|uvicorn|all]
#        (make bench runs it with defaults: 3 rounds of 10 s, both groups)
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
STATIC=$WORK/static
mkdir -p "$STATIC"
chmod 755 "$WORK" "$STATIC"   # nginx's workers run as another user when started as root
"$PY" -c 'import sys; sys.stdout.write(("<p>" + "x" * 60 + "</p>\n") * 16)' >"$STATIC/small.html"  # 1 KiB
P1=$(free_port)
cat >"$WORK/builtin.yaml" <<YAML
listen: ["127.0.0.1:$P1"]
workers: 2
app:
  builtin: {root: $STATIC}
control: {socket: $WORK/builtin.sock}
log: {level: warn}
YAML
"$WORKERD" start $ALLOW_ROOT "$WORK/builtin.yaml" 2>"$WORK/workerd-builtin.log" &
WD1=$!; PIDS+=("$WD1")

P2=$(free_port)
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<CONF
worker_processes 2;
daemon off;
master_process on;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
  include /etc/nginx/mime.types;
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
$(nginx_temp_paths)
  server {
    listen 127.0.0.1:$P2;
    location = /healthz { return 200 "ok\n"; }
    location / { root $STATIC; }
  }
}
CONF
nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" 2>>"$WORK/nginx/error.log" &
NG=$!; PIDS+=("$NG")
wait_http "http://127.0.0.1:$P1/healthz"
wait_http "http://127.0.0.1:$P2/small.html"
cmp <(curl -fsS "http://127.0.0.1:$P1/small.html") "$STATIC/small.html"
cmp <(curl -fsS "http://127.0.0.1:$P2/small.html") "$STATIC/small.html"

WD_CMD="\`workerd start SPEC\` with \`workers: 2\`, \`app: {builtin: {root: DIR}}\`, \`log: {level: warn}\`"
NG_CMD="\`nginx -c CONF\`: \`worker_processes 2\`, \`access_log off\`, \`sendfile on\`, \`tcp_nopush on\`, \`keepalive_requests 1000000\`, \`location = /healthz { return 200 \"ok\\n\"; }\`, \`location / { root DIR; }\`"
clear_sides
side "workerd+builtin" "http://127.0.0.1:$P1/healthz" "$P1" "$WD1" "$WD_CMD"
side "nginx" "http://127.0.0.1:$P2/healthz" "$P2" "$NG" "$NG_CMD"
compare "Bundled worker vs nginx, /healthz, 2 workers each"
clear_sides
side "workerd+builtin" "http://127.0.0.1:$P1/small.html" "$P1" "$WD1" "$WD_CMD"
side "nginx" "http://127.0.0.1:$P2/small.html" "$P2" "$NG" "$NG_CMD"
compare "Bundled worker vs nginx, a 1 KiB static file, 2 workers each"
stop "$WD1" "$NG"
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
URL=/items/42?q=bench
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
