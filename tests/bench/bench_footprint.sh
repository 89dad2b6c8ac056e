#!/usr/bin/env bash
# The supervisor's own footprint while its fleet is idle: 4 workers each, all running at once,
# ROUNDS windows of IDLE seconds each. For the supervisor process only (not its workers): RSS
# (VmRSS, /proc/PID/status), PSS (/proc/PID/smaps_rollup: pages shared with forked workers
# counted by share) and CPU over the window (all threads: schedstat in ns, and utime+stime
# from /proc/PID/stat in clock ticks).
#   1. workerd + workerd_uvicorn (the FastAPI example; heartbeats and STATS every second)
#   2. workerd + `uvicorn --fd` (the same app, no worker protocol)
#   3. workerd + bundled worker
#   4. gunicorn -k uvicorn.workers.UvicornWorker -w 4: the arbiter
#   5. uvicorn --workers 4: the parent process
#
# Usage: tests/bench/bench_footprint.sh [ROUNDS] [IDLE_SECONDS]
set -euo pipefail

ROUNDS=${1:-3}
IDLE=${2:-10}
DURATION=0
WORKERS=4
source "$(dirname "$0")/lib.sh"
require gunicorn curl "$WORKERD" "$WORKERCTL"
machine
md_begin footprint "Supervisor footprint, idle" "$ROUNDS" "$IDLE"

UV_OPTS='"--no-access-log", "--log-level", "warning"'
read -r W1 P1 < <(start_workerd wduv "workers: $WORKERS
app:
  command: [\"$PY\", \"-m\", \"workerd_uvicorn\", \"app:app\", $UV_OPTS]
  cwd: $APP_DIR
  env: {PYTHONPATH: $ROOT/packaging/python}"); PIDS+=("$W1")
read -r W2 P2 < <(start_workerd uvfd "workers: $WORKERS
app:
  command: [\"$PY\", \"-m\", \"uvicorn\", \"app:app\", \"--fd\", \"{fd}\", $UV_OPTS]
  cwd: $APP_DIR"); PIDS+=("$W2")
read -r W3 P3 < <(start_workerd builtin "workers: $WORKERS
app:
  builtin: {}"); PIDS+=("$W3")
P4=$(free_port)
"$PY" -m gunicorn -k uvicorn.workers.UvicornWorker -w $WORKERS -b "127.0.0.1:$P4" --chdir "$APP_DIR" \
  --log-level warning app:app 2>"$WORK/gunicorn.log" &
G=$!; PIDS+=("$G")
P5=$(free_port)
"$PY" -m uvicorn app:app --app-dir "$APP_DIR" --workers $WORKERS --host 127.0.0.1 --port "$P5" \
  --no-access-log --log-level warning 2>"$WORK/uvicorn.log" &
U=$!; PIDS+=("$U")
for p in "$P1" "$P2" "$P3" "$P4" "$P5"; do wait_http "http://127.0.0.1:$p/healthz"; done
for s in wduv uvfd builtin; do "$WORKERCTL" -s "$WORK/$s.sock" scale $WORKERS --wait >/dev/null; done
for _ in $(seq 100); do  # every worker of every server up
  ok=1
  for s in "$P1 $W1" "$P2 $W2" "$P3 $W3" "$P4 $G" "$P5 $U"; do
    [ "$(workers_of $s | wc -l)" -eq $WORKERS ] || ok=0
  done
  ((ok)) && break; sleep 0.1
done
sleep 3   # past startup

NAMES=("workerd (workerd_uvicorn)" "workerd (uvicorn --fd)" "workerd (bundled worker)" "gunicorn arbiter" "uvicorn --workers parent")
MASTERS=("$W1" "$W2" "$W3" "$G" "$U")
PORTS=("$P1" "$P2" "$P3" "$P4" "$P5")
CMDS=("\`workerd start SPEC\`: \`workers: $WORKERS\`, \`app.command: [python3, -m, workerd_uvicorn, app:app, --no-access-log, --log-level, warning]\` (heartbeat every third of \`timeout\`, STATS every second, per worker)"
      "\`workerd start SPEC\`: \`workers: $WORKERS\`, \`app.command: [python3, -m, uvicorn, app:app, --fd, '{fd}', --no-access-log, --log-level, warning]\`"
      "\`workerd start SPEC\`: \`workers: $WORKERS\`, \`app: {builtin: {}}\`"
      "\`python3 -m gunicorn -k uvicorn.workers.UvicornWorker -w $WORKERS -b 127.0.0.1:PORT --chdir examples/fastapi --log-level warning app:app\`"
      "\`python3 -m uvicorn app:app --app-dir examples/fastapi --workers $WORKERS --host 127.0.0.1 --port PORT --no-access-log --log-level warning\`")
n=${#NAMES[@]}
REF=3
CLK=$(getconf CLK_TCK)

say "== supervisor footprint, $WORKERS idle workers each, all at once: $ROUNDS windows of ${IDLE}s"
declare -A CPU TICKS RSS PSS WRSS
for r in $(seq "$ROUNDS"); do
  declare -A ns0 tk0
  for i in $(seq 0 $((n - 1))); do ns0[$i]=$(cpu_ns "${MASTERS[$i]}"); tk0[$i]=$(cpu_ticks "${MASTERS[$i]}"); done
  sleep "$IDLE"
  for i in $(seq 0 $((n - 1))); do
    m=${MASTERS[$i]}
    CPU[$i,$r]=$(awk -v a="${ns0[$i]}" -v b="$(cpu_ns "$m")" -v s="$IDLE" 'BEGIN {printf "%.4f", 100*(b-a)/1e9/s}')
    TICKS[$i,$r]=$(( $(cpu_ticks "$m") - tk0[$i] ))
    RSS[$i,$r]=$(rss_kib "$m"); PSS[$i,$r]=$(pss_kib "$m")
    w=0; for c in $(workers_of "${PORTS[$i]}" "$m"); do w=$((w + $(rss_kib "$c"))); done
    WRSS[$i,$r]=$w
    say "$(printf '  window %d %-26s CPU %7.3f%% of a core (%d ticks of 1/%d s)  RSS %6d KiB  PSS %6d KiB  (workers: %d MiB RSS)' \
      "$r" "${NAMES[$i]}" "${CPU[$i,$r]}" "${TICKS[$i,$r]}" "$CLK" "${RSS[$i,$r]}" "${PSS[$i,$r]}" $((w / 1024)))"
  done
done

declare -a MCPU MRSS MPSS MTK MW
for i in $(seq 0 $((n - 1))); do
  c=(); k=(); rs=(); ps=(); ws=()
  for r in $(seq "$ROUNDS"); do c+=("${CPU[$i,$r]}"); k+=("${TICKS[$i,$r]}"); rs+=("${RSS[$i,$r]}"); ps+=("${PSS[$i,$r]}"); ws+=("${WRSS[$i,$r]}"); done
  MCPU[$i]=$(medianof "${c[@]}"); MTK[$i]=$(medianof "${k[@]}"); MRSS[$i]=$(medianof "${rs[@]}"); MPSS[$i]=$(medianof "${ps[@]}"); MW[$i]=$(medianof "${ws[@]}")
done
say ""
md "$WORKERS workers each, all five fleets running at once and idle (no request during the windows);"
md "the numbers are the supervisor process's own, medians of $ROUNDS windows of ${IDLE} s."
md "CPU is the whole process (every thread) from \`/proc/PID/task/*/schedstat\` (ns); the ticks are"
md "\`utime+stime\` from \`/proc/PID/stat\` (1/$CLK s each) over a window, for comparison."
md ""
md "| supervisor | RSS MiB | PSS MiB | CPU % of a core | ticks per window | RSS vs ${NAMES[$REF]} | CPU vs ${NAMES[$REF]} | RSS vs uvicorn parent | CPU vs uvicorn parent | its workers' RSS, MiB |"
md "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for i in $(seq 0 $((n - 1))); do
  say "$(printf '  median %-25s CPU %7.3f%%  RSS %6.0f KiB  PSS %6.0f KiB;  vs gunicorn arbiter: RSS %sx, CPU %sx;  vs uvicorn parent: RSS %sx, CPU %sx' \
    "${NAMES[$i]}" "${MCPU[$i]}" "${MRSS[$i]}" "${MPSS[$i]}" "$(div "${MRSS[$i]}" "${MRSS[$REF]}")" "$(div "${MCPU[$i]}" "${MCPU[$REF]}")" \
    "$(div "${MRSS[$i]}" "${MRSS[4]}")" "$(div "${MCPU[$i]}" "${MCPU[4]}")")"
  md "| ${NAMES[$i]} | $(div "${MRSS[$i]}" 1024 %.1f) | $(div "${MPSS[$i]}" 1024 %.1f) | $(printf '%.3f' "${MCPU[$i]}") | ${MTK[$i]} | **$(div "${MRSS[$i]}" "${MRSS[$REF]}")×** | $(div "${MCPU[$i]}" "${MCPU[$REF]}")× | $(div "${MRSS[$i]}" "${MRSS[4]}")× | $(div "${MCPU[$i]}" "${MCPU[4]}")× | $(div "${MW[$i]}" 1024 %.0f) |"
done
md_servers_end
