#!/usr/bin/env bash
# Reloads under load, side by side: the same FastAPI app (examples/fastapi, /items/42), 4 workers,
# wrk -t2 -c64 for SECONDS s, a reload (SIGHUP) at 20%, 47% and 73% of the run:
#   1. gunicorn -k uvicorn.workers.UvicornWorker -w 4 (HUP: gunicorn's graceful reload)
#   2. workerd + workerd_uvicorn (the Python integration)
#   3. workerd + plain `uvicorn --fd {fd}`
# All three run at once; rounds alternate between them. Prints, for each round: requests, failed
# requests (non-2xx + socket errors) and the throughput dip (the slowest whole second against the
# median second); then the medians and the ratios against gunicorn.
#
# Usage: tests/bench/bench_reload.sh [ROUNDS] [SECONDS]
set -euo pipefail

ROUNDS=${1:-3}
DURATION=${2:-15}
source "$(dirname "$0")/lib.sh"
require wrk gunicorn curl "$WORKERD" "$WORKERCTL"
machine
md_begin reload "Reloads under load" "$ROUNDS" "$DURATION"
LUA=$BENCH_DIR/per_second.lua
WORKERS=4
H1=$((DURATION * 20 / 100)); H2=$((DURATION * 47 / 100)); H3=$((DURATION * 73 / 100))

# load URL PID: wrk with HUPs to PID; prints "requests failed non2xx socket_errors slowest median".
load() {
  local url=$1 pid=$2 out=$WORK/wrk.out start t now
  start=$(date +%s.%N)
  timeout $((DURATION + 30)) wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s -s "$LUA" "$url" >"$out" &
  local wrk_pid=$!
  for t in $H1 $H2 $H3; do
    now=$(date +%s.%N)
    sleep "$(awk -v s="$start" -v t="$t" -v n="$now" 'BEGIN {d=s+t-n; print (d>0?d:0)}')"
    kill -HUP "$pid"
  done
  wait $wrk_pid
  awk '
    /requests in/ {requests=$1}
    /Non-2xx/ {non2xx=$NF}
    /Socket errors/ {gsub(",", ""); sockerr=$4+$6+$8+$10}
    /^per-second:/ {n=0; for (i=3; i<NF; i++) {v[++n]=$i}}   # drop the partial first and last second
    END {
      m=1e18; for (i=1;i<=n;i++) {if (v[i]<m) m=v[i]; s[i]=v[i]}
      for (i=2;i<=n;i++) {x=s[i]; j=i-1; while (j>0 && s[j]>x) {s[j+1]=s[j]; j--}; s[j+1]=x}  # (mawk has no asort)
      med=(n==0 ? 0 : n%2 ? s[(n+1)/2] : (s[n/2]+s[n/2+1])/2)
      if (n == 0) m=0
      printf "%d %d %d %d %d %d\n", requests, non2xx+sockerr, non2xx, sockerr, m, med
    }' "$out"
}

# settle PORT PID WORKERD?: waits (up to 30 s) until the reloads are over: 4 workers, not rolling.
settle() {
  for _ in $(seq 300); do
    if [ "$(workers_of "$1" "$2" | wc -l)" -eq $WORKERS ]; then
      [ -z "${3:-}" ] && return 0
      "$WORKERCTL" -s "$3" status --json | grep -q '"rolling": *false' && return 0
    fi
    sleep 0.1
  done
  echo "still reloading after 30 s" >&2
}

P=$(free_port)
"$PY" -m gunicorn -k uvicorn.workers.UvicornWorker -w $WORKERS -b "127.0.0.1:$P" --chdir "$APP_DIR" \
  --log-level warning --graceful-timeout 10 app:app 2>"$WORK/gunicorn.log" &
G=$!; PIDS+=("$G")
NAMES=("gunicorn+UvicornWorker"); PORTS=("$P"); MASTERS=("$G"); SOCKS=("")
CMDS=("\`python3 -m gunicorn -k uvicorn.workers.UvicornWorker -w $WORKERS -b 127.0.0.1:PORT --chdir examples/fastapi --log-level warning --graceful-timeout 10 app:app\`, reloaded with \`kill -HUP\`")
for variant in workerd_uvicorn plain; do
  P=$(free_port)
  if [[ $variant == workerd_uvicorn ]]; then
    CMD="[\"$PY\", \"-m\", \"workerd_uvicorn\", \"app:app\", \"--no-access-log\", \"--log-level\", \"warning\"]"
    NAMES+=("workerd+workerd_uvicorn")
    CMDS+=("\`workerd start SPEC\`: \`workers: $WORKERS\`, \`app.command: [python3, -m, workerd_uvicorn, app:app, --no-access-log, --log-level, warning]\`, \`graceful_timeout: 10s\`, reloaded with \`kill -HUP\`")
  else
    CMD="[\"$PY\", \"-m\", \"uvicorn\", \"app:app\", \"--fd\", \"{fd}\", \"--no-access-log\", \"--log-level\", \"warning\"]"
    NAMES+=("workerd+uvicorn --fd")
    CMDS+=("the same with \`app.command: [python3, -m, uvicorn, app:app, --fd, '{fd}', --no-access-log, --log-level, warning]\`")
  fi
  cat >"$WORK/$variant.yaml" <<YAML
listen: ["127.0.0.1:$P"]
workers: $WORKERS
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
  PORTS+=("$P"); MASTERS+=("$W"); SOCKS+=("$WORK/$variant.sock")
done
n=${#NAMES[@]}
for i in $(seq 0 $((n - 1))); do wait_http "http://127.0.0.1:${PORTS[$i]}/healthz"; done

say "== reloads under load: FastAPI /items/42, $WORKERS workers each, wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s, HUP at ${H1}s, ${H2}s, ${H3}s; $ROUNDS rounds"
declare -A REQ FAIL NON SOCKERR DIP
for r in $(seq "$ROUNDS"); do
  for i in $(seq 0 $((n - 1))); do
    settle "${PORTS[$i]}" "${MASTERS[$i]}" "${SOCKS[$i]}"
    sleep 1
    read -r req fail non sockerr slow med < <(load "http://127.0.0.1:${PORTS[$i]}/items/42?q=bench" "${MASTERS[$i]}")
    REQ[$i,$r]=$req; FAIL[$i,$r]=$fail; NON[$i,$r]=$non; SOCKERR[$i,$r]=$sockerr
    DIP[$i,$r]=$(awk -v m="$slow" -v d="$med" 'BEGIN {printf "%.0f", (d>0 ? 100*m/d : 0)}')
    say "$(printf '  round %d %-24s %8d requests, %5d failed (%d non-2xx, %d socket errors), slowest second %d req/s vs median %d (%d%%)' \
      "$r" "${NAMES[$i]}" "$req" "$fail" "$non" "$sockerr" "$slow" "$med" "${DIP[$i,$r]}")"
  done
done
say ""
md "The FastAPI example, $WORKERS workers each, \`wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s -s tests/bench/per_second.lua\` on"
md "\`/items/42?q=bench\`, a reload (SIGHUP to the supervisor) at ${H1}, ${H2} and ${H3} s; the three servers run at once"
md "and the $ROUNDS rounds alternate between them. \"Failed\" is wrk's non-2xx responses plus socket errors"
md "(connections reset or closed under a request); the dip is the slowest whole second against the"
md "median second of the same run (100% = no dip). Medians of the rounds."
md ""
md "| server | requests | vs gunicorn | failed | failed, each round (non-2xx + socket errors) | slowest second, % of median |"
md "| --- | ---: | ---: | ---: | --- | ---: |"
for i in $(seq 0 $((n - 1))); do
  rq=(); fl=(); dp=(); each=""
  for r in $(seq "$ROUNDS"); do
    rq+=("${REQ[$i,$r]}"); fl+=("${FAIL[$i,$r]}"); dp+=("${DIP[$i,$r]}")
    each+="${FAIL[$i,$r]} (${NON[$i,$r]} + ${SOCKERR[$i,$r]}), "
  done
  MREQ[$i]=$(medianof "${rq[@]}")
  mf=$(medianof "${fl[@]}"); md_=$(medianof "${dp[@]}")
  say "$(printf '  median %-23s %8.0f requests (%sx gunicorn), %5.0f failed, slowest second %3.0f%% of the median' \
    "${NAMES[$i]}" "${MREQ[$i]}" "$(div "${MREQ[$i]}" "${MREQ[0]}")" "$mf" "$md_")"
  md "| ${NAMES[$i]} | $(printf '%.0f' "${MREQ[$i]}") | **$(div "${MREQ[$i]}" "${MREQ[0]}")×** | **$(printf '%.0f' "$mf")** | ${each%, } | $(printf '%.0f' "$md_")% |"
done
md_servers_end
