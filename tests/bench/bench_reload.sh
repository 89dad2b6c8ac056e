#!/usr/bin/env bash
# Reloads under load, side by side: the same FastAPI app (examples/fastapi, /items/42), 4 workers,
# wrk -t2 -c64 for 15 s, a reload (SIGHUP) at 3, 7 and 11 s:
#   1. gunicorn -k uvicorn.workers.UvicornWorker -w 4 (HUP: gunicorn's graceful reload)
#   2. workerd + workerd_uvicorn (the Python integration)
#   3. workerd + plain `uvicorn --fd {fd}`
# Prints, for each: requests, failed requests (non-2xx + socket errors) and the throughput dip
# (the slowest whole second against the median second).
#
# Usage: tests/bench/bench_reload.sh [SECONDS]      (HUPs at 20%, 47%, 73% of the run)
set -euo pipefail

DURATION=${1:-15}
ROUNDS=1
source "$(dirname "$0")/lib.sh"
require wrk gunicorn curl "$WORKERD"
machine
APP_DIR=$ROOT/examples/fastapi
LUA=$ROOT/tests/bench/per_second.lua

# load NAME URL PID: wrk with HUPs to PID; prints one summary line.
load() {
  local name=$1 url=$2 pid=$3 out=$WORK/$1.wrk
  timeout $((DURATION + 30)) wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s -s "$LUA" "$url" >"$out" &
  local wrk_pid=$!
  local t
  for t in $((DURATION * 20 / 100)) $((DURATION * 47 / 100)) $((DURATION * 73 / 100)); do
    sleep_until_s "$t"
    kill -HUP "$pid"
  done
  wait $wrk_pid
  awk -v name="$name" '
    /requests in/ {requests=$1}
    /Non-2xx/ {non2xx=$NF}
    /Socket errors/ {gsub(",", ""); sockerr=$4+$6+$8+$10}
    /^per-second:/ {n=0; for (i=3; i<NF; i++) {v[++n]=$i}}   # drop the partial first and last second
    END {
      if (n == 0) {print name ": no per-second data"; exit}
      m=1e18; for (i=1;i<=n;i++) {if (v[i]<m) m=v[i]; s[i]=v[i]}
      for (i=2;i<=n;i++) {x=s[i]; j=i-1; while (j>0 && s[j]>x) {s[j+1]=s[j]; j--}; s[j+1]=x}  # (mawk has no asort)
      med=(n%2 ? s[(n+1)/2] : (s[n/2]+s[n/2+1])/2)
      printf "  %-26s %9d requests, %5d failed (%d non-2xx, %d socket errors), dip: slowest second %d req/s vs median %d (%.0f%%)\n",
        name, requests, non2xx+sockerr, non2xx, sockerr, m, med, 100*m/med
    }' "$out"
}

START=0
sleep_until_s() { local now; now=$(date +%s.%N); sleep "$(awk -v s="$START" -v t="$1" -v n="$now" 'BEGIN {d=s+t-n; print (d>0?d:0)}')"; }

run() {  # run NAME PORT PID
  wait_http "http://127.0.0.1:$2/healthz"
  sleep 1
  START=$(date +%s.%N)
  load "$1" "http://127.0.0.1:$2/items/42?q=bench" "$3"
}

echo "== reloads under load: FastAPI /items/42, 4 workers, wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s, HUP x3"

P=$(free_port)
"$PY" -m gunicorn -k uvicorn.workers.UvicornWorker -w 4 -b "127.0.0.1:$P" --chdir "$APP_DIR" \
  --log-level warning --graceful-timeout 10 app:app 2>"$WORK/gunicorn.log" &
G=$!; PIDS+=("$G")
run "gunicorn+UvicornWorker" "$P" "$G"
kill -TERM "$G"; wait "$G" 2>/dev/null || true

for variant in workerd_uvicorn plain; do
  P=$(free_port)
  if [[ $variant == workerd_uvicorn ]]; then
    CMD="[\"$PY\", \"-m\", \"workerd_uvicorn\", \"app:app\", \"--no-access-log\", \"--log-level\", \"warning\"]"
    NAME="workerd+workerd_uvicorn"
  else
    CMD="[\"$PY\", \"-m\", \"uvicorn\", \"app:app\", \"--fd\", \"{fd}\", \"--no-access-log\", \"--log-level\", \"warning\"]"
    NAME="workerd+uvicorn --fd"
  fi
  cat >"$WORK/$variant.yaml" <<YAML
listen: ["127.0.0.1:$P"]
workers: 4
app:
  command: $CMD
  cwd: $APP_DIR
  env: {PYTHONPATH: $ROOT/packaging/python}
graceful_timeout: 10s
control: {socket: $WORK/$variant.sock}
log: {level: warn}
YAML
  "$WORKERD" start $ALLOW_ROOT "$WORK/$variant.yaml" 2>"$WORK/$variant.log" &
  W=$!; PIDS+=("$W")
  run "$NAME" "$P" "$W"
  kill -TERM "$W"; wait "$W" 2>/dev/null || true
done
