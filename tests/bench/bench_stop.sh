#!/usr/bin/env bash
# A graceful stop under load, side by side: each server, 2 workers, under wrk -t2 -c64 for
# DURATION s; 2 s in, tests/bench/stop_probe.py starts 16 slow requests (1 s each), sends
# SIGTERM to the supervisor 0.3 s later and then tries 20 new connections. Counted: slow
# requests in flight that finished (of 16); new connections refused (safe to retry: nothing was
# sent) against those reset or closed after the request was sent (not safe: the client cannot
# know whether it ran); and wrk's own socket errors over the whole run (read errors are resets
# under a request; wrk counts a refused reconnect as a connect or write error).
#   1. gunicorn -k uvicorn.workers.UvicornWorker -w 2 (FastAPI example)
#   2. workerd + workerd_uvicorn, 2 workers (the same app)
#   3. workerd, 2 bundled workers (/demo/io)
# Each round starts every server afresh. Medians of the rounds.
#
# Usage: tests/bench/bench_stop.sh [ROUNDS] [DURATION]
set -euo pipefail

ROUNDS=${1:-3}
DURATION=${2:-6}
source "$(dirname "$0")/lib.sh"
require wrk gunicorn curl "$WORKERD"
machine
md_begin stop "A stop under load" "$ROUNDS" "$DURATION"

NAMES=("gunicorn+UvicornWorker" "workerd+workerd_uvicorn" "workerd bundled")
SLOW=("/io?ms=1000" "/io?ms=1000" "/demo/io?ms=1000")
FAST=("/io?ms=10" "/io?ms=10" "/demo/io?ms=10")
CMDS=("\`python3 -m gunicorn -k uvicorn.workers.UvicornWorker -w 2 -b 127.0.0.1:PORT --chdir examples/fastapi --log-level warning --graceful-timeout 10 app:app\`, stopped with \`kill -TERM\`"
      "\`workerd start SPEC\`: \`workers: 2\`, \`app.command: [python3, -m, workerd_uvicorn, app:app, --no-access-log, --log-level, warning]\`, \`graceful_timeout: 10s\`, stopped with \`kill -TERM\`"
      "\`workerd start SPEC\`: \`workers: 2\`, \`app: {builtin: {demo: true}}\`, \`graceful_timeout: 10s\`, stopped with \`kill -TERM\`")

# start_server I -> "PID PORT"
start_server() {
  local port
  case $1 in
    0) port=$(free_port)
       "$PY" -m gunicorn -k uvicorn.workers.UvicornWorker -w 2 -b "127.0.0.1:$port" --chdir "$APP_DIR" \
         --log-level warning --graceful-timeout 10 app:app 2>>"$WORK/gunicorn.log" &
       echo "$! $port" ;;
    1) start_workerd uvicorn "workers: 2
app:
  command: [\"$PY\", \"-m\", \"workerd_uvicorn\", \"app:app\", \"--no-access-log\", \"--log-level\", \"warning\"]
  cwd: $APP_DIR
  env: {PYTHONPATH: $ROOT/packaging/python}
graceful_timeout: 10s" ;;
    2) start_workerd bundled "workers: 2
app:
  builtin: {demo: true}
graceful_timeout: 10s" ;;
  esac
}

say "== a graceful stop under load: wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s; 16 slow requests, SIGTERM, 20 new connections; $ROUNDS rounds"
declare -A INF REF SRV RST OTH WREAD WREF REQ
for r in $(seq "$ROUNDS"); do
  for i in "${!NAMES[@]}"; do
    read -r pid port < <(start_server "$i"); PIDS+=("$pid")
    wait_http "http://127.0.0.1:$port/healthz"
    sleep 1
    timeout $((DURATION + 30)) wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --timeout 10s \
      "http://127.0.0.1:$port${FAST[$i]}" >"$WORK/wrk.out" 2>&1 &
    wrk_pid=$!
    sleep 2
    read -r INF[$i,$r] REF[$i,$r] SRV[$i,$r] RST[$i,$r] OTH[$i,$r] < <(timeout 60 "$PY" "$BENCH_DIR/stop_probe.py" "$port" "$pid" "${SLOW[$i]}" "${FAST[$i]}")
    wait "$wrk_pid" || true
    for _ in $(seq 200); do running "$pid" || break; sleep 0.1; done
    stop "$pid"
    read -r REQ[$i,$r] WREAD[$i,$r] WREF[$i,$r] < <(awk '
      /requests in/ {req=$1}
      /Socket errors/ {gsub(",", ""); con=$4; rd=$6; wr=$8}
      END {printf "%d %d %d\n", req, rd, con + wr}' "$WORK/wrk.out")
    say "$(printf '  round %d %-24s in flight finished %2d/16; new connections: %2d refused, %2d served, %2d reset, %d other; wrk: %d requests, %d read errors (resets), %d refused reconnects' \
      "$r" "${NAMES[$i]}" "${INF[$i,$r]}" "${REF[$i,$r]}" "${SRV[$i,$r]}" "${RST[$i,$r]}" "${OTH[$i,$r]}" "${REQ[$i,$r]}" "${WREAD[$i,$r]}" "${WREF[$i,$r]}")"
  done
done
say ""
med() {  # med ARRAY I
  local -n arr=$1; local xs=() r
  for r in $(seq "$ROUNDS"); do xs+=("${arr[$2,$r]}"); done
  medianof "${xs[@]}"
}
md "Each server with 2 workers under \`wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --timeout 10s\` on a 10 ms route; 2 s in,"
md "\`tests/bench/stop_probe.py\` starts 16 requests of 1 s, sends SIGTERM to the supervisor 0.3 s later, and"
md "from 0.1 s after it tries 20 new connections, 25 ms apart. A refused connection is safe to retry"
md "elsewhere (nothing was sent); one reset or closed after its request was sent is not (the client"
md "cannot know whether it ran). wrk's read errors are resets under a request over its whole run."
md "Medians of $ROUNDS rounds; each round starts every server afresh."
md ""
md "| server | in flight finished (of 16) | new connections refused (of 20) | served | reset after sending | wrk read errors (resets) | resets vs gunicorn |"
md "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
g_rst=$(awk -v a="$(med RST 0)" -v b="$(med WREAD 0)" 'BEGIN {print a + b}')
for i in "${!NAMES[@]}"; do
  rst=$(awk -v a="$(med RST "$i")" -v b="$(med WREAD "$i")" 'BEGIN {print a + b}')
  say "$(printf '  median %-23s in flight finished %s/16; new connections %s refused, %s served, %s reset; wrk read errors %s' \
    "${NAMES[$i]}" "$(med INF "$i")" "$(med REF "$i")" "$(med SRV "$i")" "$(med RST "$i")" "$(med WREAD "$i")")"
  md "| ${NAMES[$i]} | $(med INF "$i") | $(med REF "$i") | $(med SRV "$i") | **$(med RST "$i")** | $(med WREAD "$i") | **$(div "$rst" "$g_rst")×** |"
done
md_servers_end
