#!/usr/bin/env bash
# Side-by-side benchmark, one run, same load for each pair (wrk, loopback only):
#   1. workerd + bundled worker (2 workers) on /healthz  vs  nginx (2 workers, `return 200`)
#   2. workerd + uvicorn (2 workers)  vs  gunicorn -k uvicorn.workers.UvicornWorker -w 2,
#      on the same FastAPI route.
# Rounds alternate the two sides; the medians and their ratio are printed, plus how wrk's
# connections were spread across each side's worker processes (sampled mid-run).
#
# Usage: tests/bench/bench_core.sh [ROUNDS] [SECONDS] [builtin|uvicorn|all]
#        (make bench runs it with defaults: 3 rounds of 10 s, both pairs)
# Every process started here is stopped by its pid on exit, even on failure.
set -euo pipefail

ROUNDS=${1:-3}
DURATION=${2:-10}
ONLY=${3:-all}
source "$(dirname "$0")/lib.sh"
require wrk nginx gunicorn ss curl "$WORKERD"
machine

if [[ $ONLY == all || $ONLY == builtin ]]; then
# --- 1. bundled worker vs nginx -------------------------------------------------------------
P1=$(free_port)
cat >"$WORK/builtin.yaml" <<YAML
listen: ["127.0.0.1:$P1"]
workers: 2
app:
  builtin: {}
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
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  server {
    listen 127.0.0.1:$P2;
    location / { return 200 "ok\n"; }
  }
}
CONF
nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" 2>>"$WORK/nginx/error.log" &
NG=$!; PIDS+=("$NG")
wait_http "http://127.0.0.1:$P1/healthz"
wait_http "http://127.0.0.1:$P2/healthz"
compare "bundled worker vs nginx, /healthz, 2 workers each" \
  "workerd+builtin" "http://127.0.0.1:$P1/healthz" "$P1" "$WD1" \
  "nginx" "http://127.0.0.1:$P2/healthz" "$P2" "$NG"
kill -TERM "$WD1" "$NG"; wait "$WD1" "$NG" 2>/dev/null || true
fi

if [[ $ONLY == all || $ONLY == uvicorn ]]; then

# --- 2. workerd + uvicorn vs gunicorn + UvicornWorker ----------------------------------------
P3=$(free_port)
cat >"$WORK/uvicorn.yaml" <<YAML
listen: ["127.0.0.1:$P3"]
workers: 2
app:
  command: ["$PY", "-m", "uvicorn", "app:app", "--fd", "{fd}", "--no-access-log", "--log-level", "warning"]
  cwd: $ROOT/examples/fastapi
control: {socket: $WORK/uvicorn.sock}
log: {level: warn}
YAML
"$WORKERD" start $ALLOW_ROOT "$WORK/uvicorn.yaml" 2>"$WORK/workerd-uvicorn.log" &
WD2=$!; PIDS+=("$WD2")
P4=$(free_port)
"$PY" -m gunicorn -k uvicorn.workers.UvicornWorker -w 2 -b "127.0.0.1:$P4" \
  --chdir "$ROOT/examples/fastapi" --log-level warning app:app 2>"$WORK/gunicorn.log" &
GU=$!; PIDS+=("$GU")
wait_http "http://127.0.0.1:$P3/healthz"
wait_http "http://127.0.0.1:$P4/healthz"
compare "workerd+uvicorn vs gunicorn+UvicornWorker, FastAPI /items/42, 2 workers each" \
  "workerd+uvicorn" "http://127.0.0.1:$P3/items/42?q=bench" "$P3" "$WD2" \
  "gunicorn+uvicorn" "http://127.0.0.1:$P4/items/42?q=bench" "$P4" "$GU"
fi
