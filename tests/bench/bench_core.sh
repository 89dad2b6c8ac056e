#!/usr/bin/env bash
# Side-by-side benchmark, one run, same load for each pair (wrk, loopback only):
#   1. workerd + bundled worker (2 workers) on /healthz  vs  nginx (2 workers, `return 200`)
#   2. workerd + uvicorn (2 workers)  vs  gunicorn -k uvicorn.workers.UvicornWorker -w 2,
#      on the same FastAPI route.
# Rounds alternate the two sides; the medians and their ratio are printed, plus how wrk's
# connections were spread across each side's worker processes (sampled mid-run).
#
# Usage: tests/bench/bench_core.sh [ROUNDS] [SECONDS]     (make bench runs it with defaults)
# Every process started here is stopped by its pid on exit, even on failure.
set -euo pipefail

ROUNDS=${1:-3}
DURATION=${2:-10}
THREADS=2
CONNECTIONS=64
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORKERD=${WORKERD:-$ROOT/build/bin/workerd}
PY=/usr/bin/python3
WORK=$(mktemp -d /tmp/workerd-bench-XXXXXX)
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  sleep 0.5
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

for tool in wrk nginx gunicorn "$WORKERD"; do
  command -v "$tool" >/dev/null || { echo "missing $tool (run: make bench)" >&2; exit 1; }
done

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_http() {  # wait_http URL: up to 30 s
  for _ in $(seq 300); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "no answer from $1" >&2; return 1
}

children() { ps -o pid= --ppid "$1" | tr -d ' '; }

# Established connections a process holds: socket fds minus the listening ones it inherited.
conn_count() {
  local pid=$1 listen=$2 n
  n=$(find "/proc/$pid/fd" -lname 'socket:*' 2>/dev/null | wc -l)
  echo $((n - listen))
}

# run_wrk NAME URL MASTER_PID LISTEN_FDS: one timed load; prints "rps p99_ms split"
run_wrk() {
  local url=$1 master=$2 listen=$3 out split=""
  out=$WORK/wrk.out
  timeout $((DURATION + 30)) wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency "$url" >"$out" &
  local wrk_pid=$!
  sleep $((DURATION / 2))
  for w in $(children "$master"); do split+="$(conn_count "$w" "$listen")/"; done
  wait $wrk_pid
  local rps p99
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
  p99=$(awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub(/us$/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v=v*1000}; print v}' "$out")
  local errors
  errors=$(awk '/Non-2xx|Socket errors/ {print}' "$out" | tr '\n' ' ')
  echo "$rps $p99 ${split%/} ${errors:+[$errors]}"
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# compare TITLE NAME_A URL_A MASTER_A LISTEN_A NAME_B URL_B MASTER_B LISTEN_B
compare() {
  local title=$1; shift
  local -a a_rps a_p99 b_rps b_p99
  echo "== $title: wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s, $ROUNDS rounds"
  for r in $(seq "$ROUNDS"); do
    read -r rps p99 split rest < <(run_wrk "$2" "$3" "$4")
    a_rps+=("$rps"); a_p99+=("$p99")
    printf '  round %d %-22s %10.0f req/s  p99 %7.2f ms  conns/worker %s %s\n' "$r" "$1" "$rps" "$p99" "$split" "$rest"
    read -r rps p99 split rest < <(run_wrk "$6" "$7" "$8")
    b_rps+=("$rps"); b_p99+=("$p99")
    printf '  round %d %-22s %10.0f req/s  p99 %7.2f ms  conns/worker %s %s\n' "$r" "$5" "$rps" "$p99" "$split" "$rest"
  done
  local ar ap br bp
  ar=$(printf '%s\n' "${a_rps[@]}" | median); ap=$(printf '%s\n' "${a_p99[@]}" | median)
  br=$(printf '%s\n' "${b_rps[@]}" | median); bp=$(printf '%s\n' "${b_p99[@]}" | median)
  printf '  median %-21s %10.0f req/s  p99 %7.2f ms\n' "$1" "$ar" "$ap"
  printf '  median %-21s %10.0f req/s  p99 %7.2f ms\n' "$5" "$br" "$bp"
  awk -v a="$ar" -v b="$br" -v pa="$ap" -v pb="$bp" -v na="$1" -v nb="$5" \
    'BEGIN {printf "  ratio %s / %s: throughput %.2fx, p99 %.2fx\n\n", na, nb, a/b, pa/pb}'
}

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r)"
echo

# --- 1. bundled worker vs nginx -------------------------------------------------------------
P1=$(free_port)
cat >"$WORK/builtin.yaml" <<YAML
listen: ["127.0.0.1:$P1"]
workers: 2
app:
  builtin: {}
log: {level: warn}
YAML
"$WORKERD" start "$WORK/builtin.yaml" 2>"$WORK/workerd-builtin.log" &
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
  "workerd+builtin" "http://127.0.0.1:$P1/healthz" "$WD1" 1 \
  "nginx" "http://127.0.0.1:$P2/healthz" "$NG" 1
kill -TERM "$WD1" "$NG"; wait "$WD1" "$NG" 2>/dev/null || true

# --- 2. workerd + uvicorn vs gunicorn + UvicornWorker ----------------------------------------
P3=$(free_port)
cat >"$WORK/uvicorn.yaml" <<YAML
listen: ["127.0.0.1:$P3"]
workers: 2
app:
  command: ["$PY", "-m", "uvicorn", "app:app", "--fd", "{fd}", "--no-access-log", "--log-level", "warning"]
  cwd: $ROOT/examples/fastapi
log: {level: warn}
YAML
"$WORKERD" start "$WORK/uvicorn.yaml" 2>"$WORK/workerd-uvicorn.log" &
WD2=$!; PIDS+=("$WD2")
P4=$(free_port)
"$PY" -m gunicorn -k uvicorn.workers.UvicornWorker -w 2 -b "127.0.0.1:$P4" \
  --chdir "$ROOT/examples/fastapi" --log-level warning app:app 2>"$WORK/gunicorn.log" &
GU=$!; PIDS+=("$GU")
wait_http "http://127.0.0.1:$P3/healthz"
wait_http "http://127.0.0.1:$P4/healthz"
compare "workerd+uvicorn vs gunicorn+UvicornWorker, FastAPI /items/42, 2 workers each" \
  "workerd+uvicorn" "http://127.0.0.1:$P3/items/42?q=bench" "$WD2" 1 \
  "gunicorn+uvicorn" "http://127.0.0.1:$P4/items/42?q=bench" "$GU" 1
