#!/usr/bin/env bash
# Load balance across workers: with wrk -c64 on loopback, the share of connections (from `ss`,
# sampled mid-round) and of requests (counted per worker process, before and after each round)
# that each worker gets, 4 workers each:
#   1. workerd + bundled worker, /healthz: requests from `workerctl status --json` (STATS)
#   2. nginx, /healthz, `return 200`: requests from an access log of `$pid`
#   3. workerd + workerd_uvicorn, FastAPI /items/42: requests from `workerctl status --json`
#   4. gunicorn -k uvicorn.workers.UvicornWorker, the same app
#   5. uvicorn --workers, the same app
#   6. workerd + workerd_uvicorn with `reuse_port: true` (a SO_REUSEPORT socket per worker)
# The FastAPI servers all run tests/bench/count_app.py (the example app behind a per-process
# request counter), so 3-5 are counted the same way too and 3 is cross-checked.
#
# Usage: tests/bench/bench_balance.sh [ROUNDS] [SECONDS] [WORKERS]
set -euo pipefail

ROUNDS=${1:-3}
DURATION=${2:-10}
WORKERS=${3:-4}
source "$(dirname "$0")/lib.sh"
require wrk nginx gunicorn ss curl "$WORKERD" "$WORKERCTL"
machine
md_begin balance "Load balance across workers" "$ROUNDS" "$DURATION" "$WORKERS"

COUNT_DIR=$WORK/counts
mkdir -p "$COUNT_DIR"
PYPATH=$BENCH_DIR:$APP_DIR

# --- the servers ---------------------------------------------------------------------------------
read -r WB PB < <(start_workerd builtin "workers: $WORKERS
app:
  builtin: {}"); PIDS+=("$WB")
read -r WU PU < <(start_workerd wduv "workers: $WORKERS
app:
  command: [\"$PY\", \"-m\", \"workerd_uvicorn\", \"count_app:app\", \"--no-access-log\", \"--log-level\", \"warning\"]
  cwd: $APP_DIR
  env: {PYTHONPATH: \"$ROOT/packaging/python:$PYPATH\", BENCH_COUNT_DIR: $COUNT_DIR}"); PIDS+=("$WU")
read -r WR PR < <(start_workerd wdrp "workers: $WORKERS
reuse_port: true
app:
  command: [\"$PY\", \"-m\", \"workerd_uvicorn\", \"count_app:app\", \"--no-access-log\", \"--log-level\", \"warning\"]
  cwd: $APP_DIR
  env: {PYTHONPATH: \"$ROOT/packaging/python:$PYPATH\", BENCH_COUNT_DIR: $COUNT_DIR}"); PIDS+=("$WR")

PN=$(free_port)
start_nginx "$WORKERS" "$PN" "  log_format pid '\$pid';
  access_log $WORK/nginx/access.log pid buffer=256k flush=500ms;
  keepalive_requests 1000000;" '    location / { return 200 "ok\n"; }'
NG=$NG_PID

PG=$(free_port)
PYTHONPATH=$PYPATH BENCH_COUNT_DIR=$COUNT_DIR "$PY" -m gunicorn -k uvicorn.workers.UvicornWorker \
  -w "$WORKERS" -b "127.0.0.1:$PG" --chdir "$APP_DIR" --log-level warning count_app:app 2>"$WORK/gunicorn.log" &
GU=$!; PIDS+=("$GU")
PV=$(free_port)
PYTHONPATH=$PYPATH BENCH_COUNT_DIR=$COUNT_DIR "$PY" -m uvicorn count_app:app --workers "$WORKERS" \
  --host 127.0.0.1 --port "$PV" --no-access-log --log-level warning 2>"$WORK/uvicorn.log" &
UV=$!; PIDS+=("$UV")
for p in "$PB" "$PN" "$PU" "$PG" "$PV" "$PR"; do wait_http "http://127.0.0.1:$p/healthz"; done
for s in builtin wduv wdrp; do "$WORKERCTL" -s "$WORK/$s.sock" scale "$WORKERS" --wait >/dev/null; done
for _ in $(seq 100); do  # every worker of every server holds the listening socket
  ok=1
  for s in "$PB $WB" "$PN $NG" "$PU $WU" "$PG $GU" "$PV $UV" "$PR $WR"; do
    [ "$(workers_of $s | wc -l)" -eq "$WORKERS" ] || ok=0
  done
  ((ok)) && break; sleep 0.1
done

# --- request counters: each prints "PID COUNT" lines, cumulative -------------------------------
count_status() {  # count_status SOCKET: the requests each worker reported in its STATS
  "$WORKERCTL" -s "$1" status --json |
    "$PY" -c 'import json, sys
for w in json.load(sys.stdin)["workers"]: print(w["pid"], w["requests"] or 0)'
}
count_app() { for f in "$COUNT_DIR"/*; do [ -f "$f" ] && echo "${f##*/} $(cat "$f")"; done; return 0; }
count_nginx() { awk '{c[$1]++} END {for (p in c) print p, c[p]}' "$WORK/nginx/access.log" 2>/dev/null || true; }

# share BEFORE AFTER PIDS...: the requests each of PIDS got between the two counts, "a/b/...".
share() {
  local before=$1 after=$2 out=""; shift 2
  for w in "$@"; do
    out+="$(awk -v w="$w" -v f="$before" '$1==w {if (FILENAME==f) b=$2; else a=$2} END {print a-b}' "$before" "$after")/"
  done
  echo "${out%/}"
}
total() { awk -v s="$1" 'BEGIN {n=split(s,a,"/"); t=0; for (i=1;i<=n;i++) t+=a[i]; print t}'; }
# percents SPLIT: "a/b/..." as percentages of the whole.
percents() { awk -v s="$1" 'BEGIN {n=split(s,a,"/"); t=0; for (i=1;i<=n;i++) t+=a[i]; o=""; for (i=1;i<=n;i++) o=o (i>1?"/":"") (t>0?sprintf("%.0f",100*a[i]/t):"-"); print o}'; }

NAMES=("workerd+builtin" "nginx" "workerd+workerd_uvicorn" "gunicorn+UvicornWorker" "uvicorn --workers"
       "workerd+workerd_uvicorn, reuse_port")
URLS=("http://127.0.0.1:$PB/healthz" "http://127.0.0.1:$PN/healthz" "http://127.0.0.1:$PU/items/42?q=bench"
      "http://127.0.0.1:$PG/items/42?q=bench" "http://127.0.0.1:$PV/items/42?q=bench"
      "http://127.0.0.1:$PR/items/42?q=bench")
PORTS=("$PB" "$PN" "$PU" "$PG" "$PV" "$PR")
MASTERS=("$WB" "$NG" "$WU" "$GU" "$UV" "$WR")
COUNTERS=("count_status $WORK/builtin.sock" "count_nginx" "count_status $WORK/wduv.sock" "count_app" "count_app"
          "count_status $WORK/wdrp.sock")
SOURCES=("\`workerctl status --json\`" "access log \`\$pid\`" "\`workerctl status --json\`" "count_app.py" "count_app.py"
         "\`workerctl status --json\`")
CMDS=("\`workerd start SPEC\`: \`workers: $WORKERS\`, \`app: {builtin: {}}\`"
      "\`nginx -c CONF\`: \`worker_processes $WORKERS\`, \`location / { return 200 \"ok\\n\"; }\`, \`log_format pid '\$pid'; access_log FILE pid buffer=256k flush=500ms\`"
      "\`workerd start SPEC\`: \`workers: $WORKERS\`, \`app.command: [python3, -m, workerd_uvicorn, count_app:app, --no-access-log, --log-level, warning]\`"
      "\`python3 -m gunicorn -k uvicorn.workers.UvicornWorker -w $WORKERS -b 127.0.0.1:PORT --chdir examples/fastapi --log-level warning count_app:app\`"
      "\`python3 -m uvicorn count_app:app --workers $WORKERS --host 127.0.0.1 --port PORT --no-access-log --log-level warning\`"
      "as workerd+workerd_uvicorn, with \`reuse_port: true\`")

say "== load balance, $WORKERS workers each: wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s, $ROUNDS rounds (fair share $((100 / WORKERS))%)"
declare -A RPS CSPLIT RSPLIT CBUSY RBUSY COVER XCHECK
n=${#NAMES[@]}
for r in $(seq "$ROUNDS"); do
  for i in $(seq 0 $((n - 1))); do
    mapfile -t ws < <(workers_of "${PORTS[$i]}" "${MASTERS[$i]}")
    [[ ${NAMES[$i]} == nginx ]] && : >"$WORK/nginx/access.log"
    ${COUNTERS[$i]} >"$WORK/before"
    [[ $i -eq 2 ]] && count_app >"$WORK/before-app"
    read -r rps _ _ requests conns _ < <(run_wrk "${URLS[$i]}" "${PORTS[$i]}" "${MASTERS[$i]}")
    sleep 1.5   # STATS come once a second; count_app.py and nginx's log flush sooner
    ${COUNTERS[$i]} >"$WORK/after"
    reqs=$(share "$WORK/before" "$WORK/after" "${ws[@]}")
    RPS[$i,$r]=$rps; CSPLIT[$i,$r]=$conns; RSPLIT[$i,$r]=$reqs
    CBUSY[$i,$r]=$(busiest "$conns"); RBUSY[$i,$r]=$(busiest "$reqs")
    COVER[$i,$r]=$(awk -v c="$(total "$reqs")" -v w="$requests" 'BEGIN {printf "%.0f", (w>0 ? 100*c/w : 0)}')
    extra=""
    if [[ $i -eq 2 ]]; then
      count_app >"$WORK/after-app"
      XCHECK[$r]=$(share "$WORK/before-app" "$WORK/after-app" "${ws[@]}")
      extra=" (count_app.py: ${XCHECK[$r]})"
    fi
    say "$(printf '  round %d %-24s %8.0f req/s  conns/worker %-12s busiest %3d%%  requests/worker %s busiest %3d%%  counted %d%% of wrk%s' \
      "$r" "${NAMES[$i]}" "$rps" "$conns" "${CBUSY[$i,$r]}" "$reqs" "${RBUSY[$i,$r]}" "${COVER[$i,$r]}" "$extra")"
  done
done

md "Each round is \`wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s\` against one server with $WORKERS workers, $ROUNDS rounds"
md "alternating between the servers (all running at once); medians of the rounds. \"Busiest\" is the largest"
md "share any one worker got (fair: $((100 / WORKERS))%), and \"× fair\" that share against the fair share (1.00 even,"
md "$WORKERS.00 everything on one worker). Connections are counted per worker pid with"
md "\`ss -tnp state established\` mid-round; requests by each worker's own count before and after"
md "the round (\"counted\" is their sum against wrk's completed requests)."
md ""
md "| server | req/s | busiest worker: connections (× fair) | busiest worker: requests (× fair) | connections per worker, each round | requests per worker (%), each round | counted by | counted |"
md "| --- | ---: | ---: | ---: | --- | --- | --- | ---: |"
say ""
for i in $(seq 0 $((n - 1))); do
  rr=(); cb=(); rb=(); cs=""; rs=""; cv=()
  for r in $(seq "$ROUNDS"); do
    rr+=("${RPS[$i,$r]}"); cb+=("${CBUSY[$i,$r]}"); rb+=("${RBUSY[$i,$r]}"); cv+=("${COVER[$i,$r]}")
    cs+="${CSPLIT[$i,$r]}, "; rs+="$(percents "${RSPLIT[$i,$r]}"), "
  done
  m_rps=$(medianof "${rr[@]}"); m_cb=$(medianof "${cb[@]}"); m_rb=$(medianof "${rb[@]}")
  cfair=$(awk -v b="$m_cb" -v w="$WORKERS" 'BEGIN {printf "%.2f", b*w/100}')
  fair=$(awk -v b="$m_rb" -v w="$WORKERS" 'BEGIN {printf "%.2f", b*w/100}')
  say "$(printf '  median %-23s %8.0f req/s  busiest worker: %3.0f%% of connections (%sx fair), %3.0f%% of requests (%sx fair)' \
    "${NAMES[$i]}" "$m_rps" "$m_cb" "$cfair" "$m_rb" "$fair")"
  md "| ${NAMES[$i]} | $(printf '%.0f' "$m_rps") | $(printf '%.0f' "$m_cb")% (**${cfair}×**) | $(printf '%.0f' "$m_rb")% (**${fair}×**) | ${cs%, } | ${rs%, } | ${SOURCES[$i]} | $(medianof "${cv[@]}")% |"
done
md ""
xs=""
for r in $(seq "$ROUNDS"); do xs+="$(percents "${XCHECK[$r]}"), "; done
md "Cross-check: workerd+workerd_uvicorn's requests per worker by count_app.py, each round: ${xs%, }."
md ""
md "Servers ($WORKERS workers each; the FastAPI ones run \`tests/bench/count_app.py\`, the example app behind a per-process request counter):"
md ""
for i in $(seq 0 $((n - 1))); do md "- ${NAMES[$i]} (\`/${URLS[$i]#http://127.0.0.1:*/}\`): ${CMDS[$i]}"; done
md ""
md_end
