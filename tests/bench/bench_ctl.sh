#!/usr/bin/env bash
# workerctl speed, with the bundled worker:
#   1. `workerctl scale +1 --wait`: from the command to the new worker READY (the whole
#      command, process start included), ROUNDS times; target under 50 ms.
#   2. `status` round trip over one control connection with 64 workers; target under 5 ms.
#   3. One more FastAPI worker (issue 17): `workerctl scale +1 --wait` with `app.preload`
#      (forked from the zygote) and without (a new interpreter imports the app), and gunicorn's
#      SIGTTIN, with and without --preload (from the signal to the new worker's "Application
#      startup complete"); target with preload: median under 100 ms.
# Loopback and a private control socket only; the daemon is stopped by its pid on exit.
#
# Usage: tests/bench/bench_ctl.sh [ROUNDS]
set -euo pipefail

ROUNDS=${1:-20}
DURATION=0
source "$(dirname "$0")/lib.sh"
require gunicorn "$WORKERD" "$WORKERCTL"
machine
md_begin ctl "workerctl" "$ROUNDS"

PORT=$(free_port)
SOCK=$WORK/control.sock
cat >"$WORK/spec.yaml" <<YAML
listen: ["127.0.0.1:$PORT"]
workers: 2
app:
  builtin: {}
control: {socket: $SOCK}
log: {level: warn}
YAML
"$WORKERD" start $ALLOW_ROOT "$WORK/spec.yaml" 2>"$WORK/workerd.log" &
WD=$!; PIDS+=("$WD")
wait_socket "$SOCK"
"$WORKERCTL" -s "$SOCK" scale 2 --wait >/dev/null

times=()
for _ in $(seq "$ROUNDS"); do
  t0=$(date +%s%N)
  "$WORKERCTL" -s "$SOCK" scale +1 --wait >/dev/null
  t1=$(date +%s%N)
  times+=("$(( (t1 - t0) / 1000 ))")
  "$WORKERCTL" -s "$SOCK" scale -1 --wait >/dev/null
done
read -r med lo hi < <(printf '%s\n' "${times[@]}" | sort -n | awk -v n="$ROUNDS" '{a[NR]=$1} END {
  printf "%.1f %.1f %.1f\n", (n%2 ? a[(n+1)/2] : (a[n/2]+a[n/2+1])/2)/1000, a[1]/1000, a[n]/1000}')
say "scale +1 --wait: median $med ms, min $lo ms, max $hi ms over $ROUNDS rounds (target < 50 ms)"

"$WORKERCTL" -s "$SOCK" --timeout 60 scale 64 --wait >/dev/null
read -r smed sp99 < <(time_status "$SOCK" 200 64)
say "status with 64 workers: median $smed ms, p99 $sp99 ms over 200 round trips (target < 5 ms)"

md "The first is the whole \`workerctl scale +1 --wait\` command as a user runs it (process start,"
md "connect, the scale request, and polling \`status\` until the new bundled worker has said READY),"
md "$ROUNDS times (each followed by \`scale -1 --wait\`). The second is one control connection sending"
md "\`status\` 200 times with 64 workers in the fleet (the daemon reads each worker's RSS and CPU time"
md "from /proc for every answer)."
md ""
md "| measure | median | spread | target |"
md "| --- | ---: | --- | ---: |"
md "| \`workerctl scale +1 --wait\`, 2 → 3 bundled workers | **$med ms** | min $lo, max $hi ms over $ROUNDS | < 50 ms |"
md "| \`status\` round trip, 64 workers | **$smed ms** | p99 $sp99 ms over 200 | < 5 ms |"
md ""
stop "$WD"

# --- 3. one more FastAPI worker: preloaded, spawned, gunicorn TTIN ------------------------------
UV_OPTS='"--no-access-log", "--log-level", "warning"'
summary() { sort -n | awk '{a[NR]=$1} END {printf "%.1f %.1f %.1f\n", (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)/1000, a[1]/1000, a[NR]/1000}'; }
scale_times() {  # scale_times SOCK: ROUNDS of `scale +1 --wait` (then -1), in microseconds
  local t0 t1
  for _ in $(seq "$ROUNDS"); do
    t0=$(date +%s%N)
    "$WORKERCTL" -s "$1" --timeout 60 scale +1 --wait >/dev/null
    t1=$(date +%s%N)
    echo $(( (t1 - t0) / 1000 ))
    "$WORKERCTL" -s "$1" --timeout 60 scale -1 --wait >/dev/null
  done
}
declare -A SMED SLO SHI
for mode in preload spawn; do
  extra=""; [ "$mode" = preload ] && extra="
  preload: true"
  read -r P _ < <(start_workerd "fa-$mode" "workers: 2
app:
  command: [\"$PY\", \"-m\", \"workerd_uvicorn\", \"app:app\", $UV_OPTS]$extra
  cwd: $APP_DIR
  env: {PYTHONPATH: $ROOT/packaging/python}"); PIDS+=("$P")
  wait_socket "$WORK/fa-$mode.sock"
  "$WORKERCTL" -s "$WORK/fa-$mode.sock" --timeout 60 scale 2 --wait >/dev/null
  read -r SMED[$mode] SLO[$mode] SHI[$mode] < <(scale_times "$WORK/fa-$mode.sock" | summary)
  say "FastAPI, workerd ($mode): scale +1 --wait median ${SMED[$mode]} ms, min ${SLO[$mode]}, max ${SHI[$mode]} over $ROUNDS"
  stop "$P"
done
# gunicorn: SIGTTIN to the arbiter, until the new worker's uvicorn says its startup is complete;
# SIGTTOU and until it is gone, between rounds.
for mode in preload spawn; do
  GP=$(free_port)
  flag=""; [ "$mode" = preload ] && flag=--preload
  "$PY" -m gunicorn -k uvicorn.workers.UvicornWorker -w 2 $flag -b "127.0.0.1:$GP" --chdir "$APP_DIR" \
    --log-level info app:app 2>"$WORK/gunicorn-ttin-$mode.log" &
  G=$!; PIDS+=("$G")
  wait_http "http://127.0.0.1:$GP/healthz"
  read -r SMED[g$mode] SLO[g$mode] SHI[g$mode] < <("$PY" - "$G" "$WORK/gunicorn-ttin-$mode.log" "$ROUNDS" <<'PYEOF' | summary
import os, signal, sys, time
arbiter, log, rounds = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
def started():
    with open(log, errors="replace") as f:
        return f.read().count("Application startup complete")
def workers():
    with open(f"/proc/{arbiter}/task/{arbiter}/children") as f:
        return len(f.read().split())
deadline = time.monotonic() + 30
while (started() < 2 or workers() < 2) and time.monotonic() < deadline:
    time.sleep(0.01)
for _ in range(rounds):
    before = started()
    t0 = time.monotonic()
    os.kill(arbiter, signal.SIGTTIN)
    while started() <= before and time.monotonic() - t0 < 30:
        time.sleep(0.0005)
    print(int((time.monotonic() - t0) * 1e6))
    os.kill(arbiter, signal.SIGTTOU)
    t1 = time.monotonic()
    while workers() > 2 and time.monotonic() - t1 < 30:
        time.sleep(0.005)
PYEOF
  )
  say "FastAPI, gunicorn TTIN ($mode): median ${SMED[g$mode]} ms, min ${SLO[g$mode]}, max ${SHI[g$mode]} over $ROUNDS"
  stop "$G"
done
md "One more worker of the FastAPI example (examples/fastapi), 2 → 3, $ROUNDS times each: the whole"
md "\`workerctl scale +1 --wait\` command for workerd (until the new worker has said READY, after its"
md "lifespan startup), and for gunicorn from SIGTTIN to the new worker's \"Application startup"
md "complete\" in its log (polled every 0.5 ms). With \`app.preload\` the worker is forked from the"
md "zygote, which has imported the app; without it a new interpreter imports it. gunicorn"
md "\`--preload\` forks from the arbiter, which imported the app; it cannot load new code on HUP."
md ""
md "| one more FastAPI worker | median | spread | vs workerd without preload |"
md "| --- | ---: | --- | ---: |"
md "| workerd, \`app.preload\`: \`workerctl scale +1 --wait\` | **${SMED[preload]} ms** | min ${SLO[preload]}, max ${SHI[preload]} ms | $(div "${SMED[preload]}" "${SMED[spawn]}")× |"
md "| workerd: \`workerctl scale +1 --wait\` | ${SMED[spawn]} ms | min ${SLO[spawn]}, max ${SHI[spawn]} ms | 1.00× |"
md "| gunicorn --preload: SIGTTIN | ${SMED[gpreload]} ms | min ${SLO[gpreload]}, max ${SHI[gpreload]} ms | $(div "${SMED[gpreload]}" "${SMED[spawn]}")× |"
md "| gunicorn: SIGTTIN | ${SMED[gspawn]} ms | min ${SLO[gspawn]}, max ${SHI[gspawn]} ms | $(div "${SMED[gspawn]}" "${SMED[spawn]}")× |"
md ""
md "Target: with \`app.preload\`, median under 100 ms."
md ""
md_end
