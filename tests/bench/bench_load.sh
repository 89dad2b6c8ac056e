#!/usr/bin/env bash
# `workerd load` (the generator `workerd tune` uses) against wrk, side by side on one target:
# nginx (2 workers, access_log off) answering `return 200 "ok\n"` on loopback. Closed loop,
# the same connections (64) and threads (2); rounds alternate the order (odd rounds wrk first,
# even rounds workerd load first). Prints each round's req/s and the ratio workerd load / wrk,
# and the median ratio: the issue asks for at least 0.8, so the generator is never what limits a
# tuning run. Then one open-loop check: `workerd load --rate R` at about half the closed-loop
# rate must answer within 2% of R with no errors.
#
# Usage: tests/bench/bench_load.sh [ROUNDS] [SECONDS]   (default 5 rounds of 5 s: the ratio swings
#        by ±30% from round to round on 2 cores, where both tools share the CPUs with nginx)
# Every process started here is stopped by its pid on exit, even on failure. Exits 1 when the
# median ratio is below 0.8 or the open-loop check fails.
set -euo pipefail

ROUNDS=${1:-5}
DURATION=${2:-5}
MIN_RATIO=0.8
source "$(dirname "$0")/lib.sh"
require wrk nginx curl "$WORKERD"
((ROUNDS >= 1 && DURATION >= 1)) || { echo "usage: $0 [ROUNDS] [SECONDS]" >&2; exit 2; }
machine
md_begin load "The load generator: workerd load vs wrk" "$ROUNDS" "$DURATION"

# --- the target: nginx, 2 workers, a tiny response ----------------------------------------------
PORT=$(free_port)
chmod 755 "$WORK"
start_nginx 2 "$PORT" '  access_log off;
  keepalive_requests 1000000;' '    location / { return 200 "ok\n"; }'
URL="http://127.0.0.1:$PORT/"
wait_http "$URL"

# --- one timed load each ----------------------------------------------------------------------
# load_wrk / load_workerd: prints "rps p99_ms errors" for one closed-loop round of DURATION s.
load_wrk() {
  local out=$WORK/wrk.out
  timeout $((DURATION + 30)) wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency "$URL" >"$out"
  local rps p99 errors
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
  p99=$(wrk_ms "$out" 99)
  errors=$(awk '/Non-2xx/ {n+=$NF} /Socket errors/ {gsub(/,/,""); n+=$4+$6+$8+$10} END {print n+0}' "$out")
  echo "${rps:-0} ${p99:-0} $errors"
}
# workerd_load [ARGS...]: `workerd load --json` on URL; prints "rps p99_ms errors offered".
workerd_load() {
  local out=$WORK/load.json
  timeout $((DURATION + 30)) "$WORKERD" load --json -c $CONNECTIONS -t $THREADS --duration "${DURATION}s" "$@" "$URL" >"$out"
  "$PY" -c 'import json, sys; r = json.load(open(sys.argv[1])); print(r["rate"], r["p99_ms"], r["errors"], r["offered_rate"])' "$out"
}

say "== closed loop on nginx \`return 200\`: $CONNECTIONS connections, $THREADS threads, $ROUNDS rounds of ${DURATION}s"
WRK_RPS=(); WL_RPS=(); RATIOS=()
ROWS=()
for r in $(seq "$ROUNDS"); do
  if ((r % 2)); then order="wrk workerd"; else order="workerd wrk"; fi
  for tool in $order; do
    if [ "$tool" = wrk ]; then read -r w_rps w_p99 w_err < <(load_wrk)
    else read -r l_rps l_p99 l_err _ < <(workerd_load); fi
  done
  ratio=$(div "$l_rps" "$w_rps")
  WRK_RPS+=("$w_rps"); WL_RPS+=("$l_rps"); RATIOS+=("$ratio")
  say "$(printf '  round %d (%s first): wrk %8.0f req/s (p99 %.2f ms, %s errors)  workerd load %8.0f req/s (p99 %.2f ms, %s errors)  ratio %s' \
    "$r" "${order%% *}" "$w_rps" "$w_p99" "$w_err" "$l_rps" "$l_p99" "$l_err" "$ratio")"
  ROWS+=("| $r | ${order%% *} | $(printf '%.0f' "$w_rps") | $(printf '%.0f' "$l_rps") | $ratio× |")
done
MED_WRK=$(medianof "${WRK_RPS[@]}")
MED_WL=$(medianof "${WL_RPS[@]}")
MED_RATIO=$(medianof "${RATIOS[@]}")
CLOSED_OK=$(awk -v r="$MED_RATIO" -v m=$MIN_RATIO 'BEGIN {print (r >= m ? "PASS" : "FAIL")}')
say "  median: wrk $(printf '%.0f' "$MED_WRK") req/s, workerd load $(printf '%.0f' "$MED_WL") req/s; median ratio $MED_RATIO (>= $MIN_RATIO: $CLOSED_OK)"

# --- open loop at about half the closed-loop rate ----------------------------------------------
RATE=$(awk -v r="$MED_WL" 'BEGIN {h = r / 2; if (h >= 1000) h = int(h / 1000) * 1000; printf "%d\n", (h < 1 ? 1 : h)}')
read -r o_rps o_p99 o_err _ < <(workerd_load --rate "$RATE")
OPEN_DEV=$(awk -v a="$o_rps" -v b="$RATE" 'BEGIN {printf "%.2f", (a / b - 1) * 100}')
OPEN_OK=$(awk -v d="$OPEN_DEV" -v e="$o_err" 'BEGIN {print ((d <= 2 && d >= -2 && e == 0) ? "PASS" : "FAIL")}')
say "== open loop: workerd load --rate $RATE -c $CONNECTIONS -t $THREADS --duration ${DURATION}s"
say "$(printf '  answered %.0f req/s (%+.2f%% of %s), p99 %.2f ms, %s errors: %s' "$o_rps" "$OPEN_DEV" "$RATE" "$o_p99" "$o_err" "$OPEN_OK")"
say ""

md "| round | first | wrk req/s | workerd load req/s | workerd load / wrk |"
md "| ---: | --- | ---: | ---: | ---: |"
md "${ROWS[@]}"
md "| **median** | | $(printf '%.0f' "$MED_WRK") | $(printf '%.0f' "$MED_WL") | **${MED_RATIO}×** ($CLOSED_OK: ≥ ${MIN_RATIO}×) |"
md ""
md "Open loop: \`workerd load --rate $RATE\` (about half the closed-loop rate) answered $(printf '%.0f' "$o_rps") req/s ($(printf '%+.2f' "$OPEN_DEV")%), p99 $(printf '%.2f' "$o_p99") ms, $o_err errors: **$OPEN_OK** (within 2%, no errors)."
md ""
md "Target: \`nginx -c CONF\` with \`worker_processes 2\`, \`access_log off\`, \`keepalive_requests 1000000\`, \`location / { return 200 \"ok\\n\"; }\`, on 127.0.0.1. Loads, closed loop, $ROUNDS rounds of ${DURATION} s alternating which goes first: \`wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency URL\` and \`workerd load -t $THREADS -c $CONNECTIONS --duration ${DURATION}s URL\`. Both share the machine's cores with nginx, so a generator that costs less CPU per request leaves more to the server: the ratio is the generator's efficiency, not only its ceiling."
md ""
md_end
[ "$CLOSED_OK" = PASS ] && [ "$OPEN_OK" = PASS ]
