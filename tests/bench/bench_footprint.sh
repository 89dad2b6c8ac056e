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
# Then the fleets' memory with preloaded workers (issue 17, second section): 8 workers of the
# FastAPI example and of an import-heavy app (tests/bench/apps/heavy_app.py), each served by
# workerd with `app.preload`, workerd without it, gunicorn --preload and gunicorn; total PSS
# of the fleet (workers and zygote, or workers and arbiter) after each has served requests.
#
# Usage: tests/bench/bench_footprint.sh [ROUNDS] [IDLE_SECONDS] [FLEET_WORKERS]
set -euo pipefail

ROUNDS=${1:-3}
IDLE=${2:-10}
FLEET=${3:-8}
DURATION=0
WORKERS=4
source "$(dirname "$0")/lib.sh"
require gunicorn curl wrk "$WORKERD" "$WORKERCTL"
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

stop "${PIDS[@]}"

# --- the fleets' memory, preloaded or not -------------------------------------------------------
md_begin footprint_preload "Fleet memory with preloaded workers (app.preload)" "$ROUNDS" "$IDLE" "$FLEET"
private_kib() { awk '/^Private_(Clean|Dirty):/ {s += $2} END {print s + 0}' /proc/"$1"/smaps_rollup 2>/dev/null || echo 0; }
comm_of() { cat /proc/"$1"/comm 2>/dev/null; }
# fleet_of SUPERVISOR KIND: the fleet's processes, one pid a line: for workerd its workers and
# zygote (not the daemon nor its guardian), for gunicorn the arbiter and its workers.
fleet_of() {
  local p
  if [ "$2" = workerd ]; then
    for p in $(descendants "$1"); do [ "$(comm_of "$p")" = workerd ] || echo "$p"; done
  else
    echo "$1"; descendants "$1"
  fi
}
fleet_pss() { local t=0 p; for p in $(fleet_of "$1" "$2"); do t=$((t + $(pss_kib "$p"))); done; echo "$t"; }
# the median private memory of the fleet's workers (not the zygote or arbiter)
worker_private() {
  local p out=()
  for p in $(workers_of "$3" "$1"); do [ "$(comm_of "$p")" = workerd-zygote ] || out+=("$(private_kib "$p")"); done
  medianof "${out[@]}"
}

APPS=("FastAPI example (examples/fastapi)" "import-heavy app (tests/bench/apps/heavy_app.py, ~45 MiB table)")
APP_DIRS=("$APP_DIR" "$BENCH_DIR/apps")
APP_MODS=("app:app" "heavy_app:app")
FNAMES=("workerd, app.preload" "workerd" "gunicorn --preload" "gunicorn")
md "$FLEET workers of each server, all running at once; each fleet first serves 5 s of wrk (16"
md "connections, \`/\`), so that its workers have run the app's code (and copied the pages"
md "they wrote). Fleet PSS is the sum of \`Pss\` (\`/proc/PID/smaps_rollup\`) over the fleet's"
md "processes: for workerd its workers and the zygote (the daemon itself, a few MiB, is on its own"
md "line), for gunicorn its workers and the arbiter, which holds the preloaded app. PSS divides"
md "each shared page among the processes sharing it, so these sums are what the fleets cost."
md "Medians of $ROUNDS samples ${IDLE} s apart."
md ""
md "| app | server | fleet PSS MiB | private MiB per worker (median) | vs workerd without preload | vs gunicorn --preload |"
md "| --- | --- | ---: | ---: | ---: | ---: |"
for a in 0 1; do
  dir=${APP_DIRS[$a]}; mod=${APP_MODS[$a]}
  read -r F0 Q0 < <(start_workerd "pre$a" "workers: $FLEET
app:
  command: [\"$PY\", \"-m\", \"workerd_uvicorn\", \"$mod\", $UV_OPTS]
  preload: true
  cwd: $dir
  env: {PYTHONPATH: $ROOT/packaging/python}"); PIDS+=("$F0")
  read -r F1 Q1 < <(start_workerd "spawn$a" "workers: $FLEET
app:
  command: [\"$PY\", \"-m\", \"workerd_uvicorn\", \"$mod\", $UV_OPTS]
  cwd: $dir
  env: {PYTHONPATH: $ROOT/packaging/python}"); PIDS+=("$F1")
  Q2=$(free_port)
  "$PY" -m gunicorn -k uvicorn.workers.UvicornWorker -w "$FLEET" --preload -b "127.0.0.1:$Q2" --chdir "$dir" \
    --log-level warning "$mod" 2>"$WORK/gunicorn-preload$a.log" &
  F2=$!; PIDS+=("$F2")
  Q3=$(free_port)
  "$PY" -m gunicorn -k uvicorn.workers.UvicornWorker -w "$FLEET" -b "127.0.0.1:$Q3" --chdir "$dir" \
    --log-level warning "$mod" 2>"$WORK/gunicorn$a.log" &
  F3=$!; PIDS+=("$F3")
  FP=("$F0" "$F1" "$F2" "$F3"); FQ=("$Q0" "$Q1" "$Q2" "$Q3"); FK=(workerd workerd gunicorn gunicorn)
  for q in "${FQ[@]}"; do wait_http "http://127.0.0.1:$q/healthz"; done
  for s in "pre$a" "spawn$a"; do "$WORKERCTL" -s "$WORK/$s.sock" --timeout 120 scale "$FLEET" --wait >/dev/null; done
  for _ in $(seq 300); do
    ok=1; for i in 0 1 2 3; do [ "$(workers_of "${FQ[$i]}" "${FP[$i]}" | grep -c .)" -ge "$FLEET" ] || ok=0; done
    ((ok)) && break; sleep 0.2
  done
  for i in 0 1 2 3; do timeout 20 wrk -t1 -c16 -d5s "http://127.0.0.1:${FQ[$i]}/" >/dev/null; done
  sleep 2
  declare -A FPSS FPRIV
  for r in $(seq "$ROUNDS"); do
    for i in 0 1 2 3; do
      FPSS[$i,$r]=$(fleet_pss "${FP[$i]}" "${FK[$i]}")
      FPRIV[$i,$r]=$(worker_private "${FP[$i]}" "${FK[$i]}" "${FQ[$i]}")
    done
    [ "$r" -lt "$ROUNDS" ] && sleep "$IDLE"
  done
  declare -a MP MV
  for i in 0 1 2 3; do
    v=(); w=(); for r in $(seq "$ROUNDS"); do v+=("${FPSS[$i,$r]}"); w+=("${FPRIV[$i,$r]}"); done
    MP[$i]=$(medianof "${v[@]}"); MV[$i]=$(medianof "${w[@]}")
  done
  DAEMON_PSS=$(pss_kib "$F0")
  say "== ${APPS[$a]}: $FLEET workers"
  for i in 0 1 2 3; do
    say "$(printf '  %-22s fleet PSS %8.1f MiB  private per worker %6.1f MiB  vs workerd: %sx  vs gunicorn --preload: %sx' \
      "${FNAMES[$i]}" "$(div "${MP[$i]}" 1024 %.1f)" "$(div "${MV[$i]}" 1024 %.1f)" "$(div "${MP[$i]}" "${MP[1]}")" "$(div "${MP[$i]}" "${MP[2]}")")"
    md "| ${APPS[$a]} | ${FNAMES[$i]} | $(div "${MP[$i]}" 1024 %.1f) | $(div "${MV[$i]}" 1024 %.1f) | **$(div "${MP[$i]}" "${MP[1]}")×** | $(div "${MP[$i]}" "${MP[2]}")× |"
  done
  say "  (the workerd daemon itself: PSS $(div "$DAEMON_PSS" 1024 %.1f) MiB)"
  stop "${FP[@]}"
done
md ""
md "The workerd daemon's own PSS (not in the fleet's sum) is in the first section. Target: with"
md "\`app.preload\` the fleet's PSS is at most 60% of the same fleet without it, and no more than"
md "gunicorn --preload's."
NAMES=("${FNAMES[@]}")
CMDS=("\`workerd start SPEC\`: \`workers: $FLEET\`, \`app: {command: [python3, -m, workerd_uvicorn, APP, --no-access-log, --log-level, warning], preload: true}\`"
      "the same without \`preload\`"
      "\`python3 -m gunicorn -k uvicorn.workers.UvicornWorker -w $FLEET --preload -b 127.0.0.1:PORT --chdir DIR --log-level warning APP\`"
      "the same without \`--preload\`")
md_servers_end
