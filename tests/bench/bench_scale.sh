#!/usr/bin/env bash
# The daemon at scale: one fleet of bundled workers at each size in SIZES (default 64, then
# scaled up to 256 and to 1024, the most a spec allows), and for each, ROUNDS rounds of:
#   - the daemon's CPU while the fleet is idle, over IDLE seconds (every worker still sends a
#     heartbeat every third of `timeout`; all threads, schedstat ns);
#   - 100 /metrics scrapes over one connection (median, p99);
#   - 100 `status` requests over one control connection (the protocol's round trip);
#   - 10 runs each of `workerctl status` and `workerctl status --json` (the whole command).
# Medians of the rounds; the ratios are the largest size against the smallest (a cost that grows
# linearly with the fleet gives the size ratio, 16x for 1024 against 64). The soft open-files
# limit is raised first if needed (each worker costs the daemon a few pipe descriptors).
#
# Usage: tests/bench/bench_scale.sh [ROUNDS] [IDLE_SECONDS] [SIZES]
set -euo pipefail

ROUNDS=${1:-3}
IDLE=${2:-10}
SIZES=${3:-64 256 1024}
DURATION=0
source "$(dirname "$0")/lib.sh"
require curl "$WORKERD" "$WORKERCTL"
machine
md_begin scale "The daemon at scale" "$ROUNDS" "$IDLE" "\"$SIZES\""

read -ra sizes <<<"$SIZES"
MAX=${sizes[-1]}
need_fds $((MAX * 8 + 1024))
say "open files: soft limit $(ulimit -Sn), hard limit $(ulimit -Hn)"

PORT=$(free_port)
MPORT=$(free_port)
SOCK=$WORK/control.sock
cat >"$WORK/spec.yaml" <<YAML
listen: ["127.0.0.1:$PORT"]
workers: ${sizes[0]}
app:
  builtin: {}
control: {socket: $SOCK}
metrics: {listen: "127.0.0.1:$MPORT"}
log: {level: warn}
YAML
"$WORKERD" start $ALLOW_ROOT "$WORK/spec.yaml" 2>"$WORK/workerd.log" &
WD=$!; PIDS+=("$WD")
wait_socket "$SOCK"
wait_http "http://127.0.0.1:$MPORT/healthz"

declare -A CPU SCR SCR99 ST ST99 CMD CMDJ UP RSS FDS BYTES
for size in "${sizes[@]}"; do
  t0=$(date +%s%N)
  "$WORKERCTL" -s "$SOCK" --timeout 300 scale "$size" --wait >/dev/null
  UP[$size]=$(( ($(date +%s%N) - t0) / 1000000 ))
  sleep 3
  say "== $size bundled workers (scale to $size --wait: ${UP[$size]} ms)"
  for r in $(seq "$ROUNDS"); do
    a=$(cpu_ns "$WD"); sleep "$IDLE"; b=$(cpu_ns "$WD")
    CPU[$size,$r]=$(awk -v a="$a" -v b="$b" -v s="$IDLE" 'BEGIN {printf "%.3f", 100*(b-a)/1e9/s}')
    read -r SCR[$size,$r] SCR99[$size,$r] BYTES[$size] < <(time_scrape "$MPORT" 100 "$size")
    read -r ST[$size,$r] ST99[$size,$r] < <(time_status "$SOCK" 100 "$size")
    CMD[$size,$r]=$(time_cmd_ms 10 "$WORKERCTL" -s "$SOCK" status)
    CMDJ[$size,$r]=$(time_cmd_ms 10 "$WORKERCTL" -s "$SOCK" status --json)
    say "$(printf '  round %d: idle CPU %6.3f%% of a core over %ds; scrape median %6.2f ms (p99 %6.2f, %d bytes); status round trip median %6.2f ms (p99 %6.2f); workerctl status %6.2f ms, status --json %6.2f ms' \
      "$r" "${CPU[$size,$r]}" "$IDLE" "${SCR[$size,$r]}" "${SCR99[$size,$r]}" "${BYTES[$size]}" "${ST[$size,$r]}" "${ST99[$size,$r]}" "${CMD[$size,$r]}" "${CMDJ[$size,$r]}")"
  done
  RSS[$size]=$(rss_kib "$WD")
  FDS[$size]=$(ls "/proc/$WD/fd" | wc -l)
  say "  daemon: RSS $((RSS[$size] / 1024)) MiB, $((FDS[$size])) open descriptors"
done

med() {  # med ARRAY SIZE: the median over the rounds
  local -n arr=$1; local xs=() r
  for r in $(seq "$ROUNDS"); do xs+=("${arr[$2,$r]}"); done
  medianof "${xs[@]}"
}
lo=${sizes[0]}
md "One daemon with bundled workers (\`app: {builtin: {}}\`, \`metrics.listen\` set), first at ${sizes[*]:0:1} workers, then"
md "scaled up; medians of $ROUNDS rounds at each size. Idle still means every worker sends a heartbeat"
md "every third of \`timeout\` (10 s by default), which the daemon reads and parses; CPU is the daemon's, every thread, from"
md "\`/proc/PID/task/*/schedstat\`. The scrape is \`GET /metrics\` over one kept-alive connection (100"
md "per round), the round trip one \`status\` request over one control connection (100 per round), and"
md "\`workerctl status\` the whole command, process start included (10 per round). Open files: soft"
md "limit $(ulimit -Sn) (raised by the script if it was lower than $((MAX * 8 + 1024)))."
md ""
hdr="| | "; sep="| --- | "
for size in "${sizes[@]}"; do hdr+="$size workers | "; sep+="---: | "; done
if ((${#sizes[@]} > 1)); then hdr+="$MAX vs $lo |"; sep+="---: |"; fi
md "$hdr" "$sep"
row() {  # row LABEL ARRAY FORMAT
  local line="| $1 | " size v vlo=""
  for size in "${sizes[@]}"; do
    v=$(med "$2" "$size"); [ "$size" = "$lo" ] && vlo=$v
    line+="$(printf "$3" "$v") | "
  done
  ((${#sizes[@]} > 1)) && line+="**$(div "$v" "$vlo")×** |"
  md "$line"
  say "  median $1: $(for size in "${sizes[@]}"; do printf "$3 ($size) " "$(med "$2" "$size")"; done)"
}
say ""
row "daemon CPU while idle, % of a core" CPU "%.3f"
row "/metrics scrape, median ms" SCR "%.2f"
row "/metrics scrape, p99 ms" SCR99 "%.2f"
row "\`status\` round trip, median ms" ST "%.2f"
row "\`workerctl status\`, median ms" CMD "%.2f"
row "\`workerctl status --json\`, median ms" CMDJ "%.2f"
line="| daemon RSS MiB / open descriptors / scrape bytes | "
for size in "${sizes[@]}"; do line+="$((RSS[$size] / 1024)) / ${FDS[$size]} / ${BYTES[$size]} | "; done
((${#sizes[@]} > 1)) && line+="|"
md "$line"
line="| \`workerctl scale N --wait\` from the previous size, ms | - (started by the spec) | "
for size in "${sizes[@]:1}"; do line+="${UP[$size]} | "; done
((${#sizes[@]} > 1)) && line+="|"
md "$line" ""
md "Targets (docs/metrics.md, docs/control-protocol.md; set for 64 workers): a scrape under 5 ms, idle CPU under 1% of a core, a \`status\` round trip under 5 ms."
md ""
md_end
