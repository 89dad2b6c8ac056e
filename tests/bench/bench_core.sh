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

for tool in wrk nginx gunicorn ss curl "$WORKERD"; do
  command -v "$tool" >/dev/null || { echo "missing $tool (run: make bench)" >&2; exit 1; }
done

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_http() {  # wait_http URL: up to 30 s
  for _ in $(seq 300); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "no answer from $1" >&2; return 1
}

children() { ps -o pid= --ppid "$1" | tr -d ' '; }

# split PORT MASTER: established connections to PORT held by each child of MASTER, "a/b/...".
split() {
  local port=$1 master=$2 out="" conns
  conns=$(ss -tnpH state established "( sport = :$port )" 2>/dev/null || true)
  for w in $(children "$master"); do out+="$(grep -c "pid=$w," <<<"$conns" || true)/"; done
  echo "${out%/}"
}

# even SPLIT: true when no worker holds more than 3/4 of the connections.
even() { awk -v s="$1" 'BEGIN {n=split(s,a,"/"); t=0; m=0; for (i=1;i<=n;i++) {t+=a[i]; if (a[i]>m) m=a[i]}; exit !(t>0 && m<=0.75*t)}'; }

# run_wrk URL PORT MASTER_PID: one timed load; prints "rps p99_ms split [errors]"
run_wrk() {
  local url=$1 port=$2 master=$3 out conns
  out=$WORK/wrk.out
  timeout $((DURATION + 30)) wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency "$url" >"$out" &
  local wrk_pid=$!
  sleep $((DURATION / 2))
  conns=$(split "$port" "$master")
  wait $wrk_pid
  local rps p99
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
  p99=$(awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub(/us$/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v=v*1000}; print v}' "$out")
  local errors
  errors=$(awk '/Non-2xx|Socket errors/ {print}' "$out" | tr '\n' ' ')
  echo "$rps $p99 $conns ${errors:+[$errors]}"
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# ratio NAME_A NAME_B RPS_A RPS_B P99_A P99_B LABEL
ratio() {
  awk -v na="$1" -v nb="$2" -v a="$3" -v b="$4" -v pa="$5" -v pb="$6" -v l="$7" \
    'BEGIN {printf "  ratio %s / %s%s: throughput %.2fx, p99 %.2fx\n", na, nb, l, a/b, pa/pb}'
}

# compare TITLE NAME_A URL_A PORT_A MASTER_A NAME_B URL_B PORT_B MASTER_B
# Rounds alternate A and B. Besides the medians of all rounds, the medians of the rounds in
# which both sides spread their connections evenly are compared: a worker that accepts
# everything at once (uvicorn does) piles the connections onto one process by chance, which
# halves throughput whichever supervisor runs it, and that luck is not the supervisor's cost.
compare() {
  local title=$1; shift
  local -a a_rps a_p99 b_rps b_p99 ea_rps ea_p99 eb_rps eb_p99
  echo "== $title: wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s, $ROUNDS rounds"
  for r in $(seq "$ROUNDS"); do
    local rps1 p991 split1 rest1 rps2 p992 split2 rest2
    read -r rps1 p991 split1 rest1 < <(run_wrk "$2" "$3" "$4")
    printf '  round %d %-22s %10.0f req/s  p99 %7.2f ms  conns/worker %s %s\n' "$r" "$1" "$rps1" "$p991" "$split1" "$rest1"
    read -r rps2 p992 split2 rest2 < <(run_wrk "$6" "$7" "$8")
    printf '  round %d %-22s %10.0f req/s  p99 %7.2f ms  conns/worker %s %s\n' "$r" "$5" "$rps2" "$p992" "$split2" "$rest2"
    a_rps+=("$rps1"); a_p99+=("$p991"); b_rps+=("$rps2"); b_p99+=("$p992")
    if even "$split1" && even "$split2"; then
      ea_rps+=("$rps1"); ea_p99+=("$p991"); eb_rps+=("$rps2"); eb_p99+=("$p992")
    fi
  done
  local ar ap br bp
  ar=$(printf '%s\n' "${a_rps[@]}" | median); ap=$(printf '%s\n' "${a_p99[@]}" | median)
  br=$(printf '%s\n' "${b_rps[@]}" | median); bp=$(printf '%s\n' "${b_p99[@]}" | median)
  printf '  median %-21s %10.0f req/s  p99 %7.2f ms\n' "$1" "$ar" "$ap"
  printf '  median %-21s %10.0f req/s  p99 %7.2f ms\n' "$5" "$br" "$bp"
  ratio "$1" "$5" "$ar" "$br" "$ap" "$bp" ""
  if ((${#ea_rps[@]} > 0)); then
    ratio "$1" "$5" "$(printf '%s\n' "${ea_rps[@]}" | median)" "$(printf '%s\n' "${eb_rps[@]}" | median)" \
      "$(printf '%s\n' "${ea_p99[@]}" | median)" "$(printf '%s\n' "${eb_p99[@]}" | median)" \
      " (the ${#ea_rps[@]} rounds where both split evenly)"
  else
    echo "  no round had both sides split evenly"
  fi
  echo
}

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r)"
echo

if [[ $ONLY == all || $ONLY == builtin ]]; then
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
  "workerd+uvicorn" "http://127.0.0.1:$P3/items/42?q=bench" "$P3" "$WD2" \
  "gunicorn+uvicorn" "http://127.0.0.1:$P4/items/42?q=bench" "$P4" "$GU"
fi
