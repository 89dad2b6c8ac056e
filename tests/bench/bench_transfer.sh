#!/usr/bin/env bash
# Where the CPU goes while a 10 MiB static file is served: workerd + bundled worker (2 workers)
# vs nginx (2 workers), the same servers as bench_core.sh's first group (start_builtin_and_nginx
# in lib.sh). On this file most of the CPU is the client's reads and the kernel's loopback TCP,
# and on loopback that TCP work is charged to whichever side's call or softirq does it, so besides
# the rate this measures each server's CPU time per response, user and system apart (the servers'
# workers' utime and stime in /proc over the load, which is all they do meanwhile), the client's
# (bash's `time`), and the two together (with both cores busy, the machine's time per response:
# the rate's inverse, however it is shared out).
# Two clients, each with 2 threads and 64 connections: wrk (reads 8 KiB a call) and
# `workerd load` (64 KiB a call). Rounds alternate the servers; medians and ratios are printed,
# and the rate round by round: the geometric mean of the rounds' ratios with its 95% interval
# (lib.sh's ratio_interval), which says whether a difference of a few percent is one.
#
# Usage: tests/bench/bench_transfer.sh [ROUNDS] [SECONDS]   (defaults: 5 rounds of 10 s)
# Every process started here is stopped by its pid on exit, even on failure.
set -euo pipefail

ROUNDS=${1:-5}
DURATION=${2:-10}
source "$(dirname "$0")/lib.sh"
require wrk nginx ss curl "$WORKERD"
machine
md_begin transfer "CPU per response on a 10 MiB file" "$ROUNDS" "$DURATION"
start_builtin_and_nginx
TICK=$(getconf CLK_TCK)

# ticks FIELD PID...: the sum of /proc/PID/stat's utime (FIELD 14) or stime (15), in ticks.
ticks() {
  local field=$1 t=0 p v; shift
  for p in "$@"; do v=$(sed 's/^.*) //' "/proc/$p/stat" | cut -d' ' -f$((field - 2))); t=$((t + v)); done
  echo "$t"
}

# one CLIENT PORT MASTER: one load on /10m.bin; prints "responses MB/s server_user_ms
# server_sys_ms client_ms" (the CPU per response).
one() {
  local client=$1 port=$2 master=$3 url workers u0 s0 u1 s1 n mbps cpu
  local _
  url="http://127.0.0.1:$port/10m.bin"
  mapfile -t workers < <(workers_of "$port" "$master")
  u0=$(ticks 14 "${workers[@]}"); s0=$(ticks 15 "${workers[@]}")
  # The client as bench_core.sh runs it (run_wrk, run_load in lib.sh); its CPU includes their
  # few helpers (ss, awk, python: tens of ms against the client's seconds).
  cpu=$( { TIMEFORMAT='%U %S'; time WRK_ARGS="--timeout 30s" "run_$client" "$url" "$port" "$master" >"$WORK/line"; } 2>&1 )
  read -r _ _ _ n _ mbps _ <"$WORK/line"
  u1=$(ticks 14 "${workers[@]}"); s1=$(ticks 15 "${workers[@]}")
  awk -v n="${n:-0}" -v m="${mbps:-0}" -v du=$((u1 - u0)) -v ds=$((s1 - s0)) -v c="$cpu" -v hz="$TICK" 'BEGIN {
    split(c, a, " "); if (n + 0 == 0) n = 1
    printf "%d %.1f %.3f %.3f %.3f\n", n, m, du * 1000 / hz / n, ds * 1000 / hz / n, (a[1] + a[2]) * 1000 / n }'
}

SIDES=("workerd+builtin $BI_PORT $BI_PID" "nginx $NG_PORT $NG_PID")
ROUND_BY_ROUND=""
md "| client | server | MB/s | server CPU ms per response: user | system | total | client CPU ms per response | server + client | MB/s vs nginx | server CPU vs nginx | server + client vs nginx |"
md "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for client in wrk load; do
  say "== $client on /10m.bin, $ROUNDS rounds of ${DURATION}s, $THREADS threads, $CONNECTIONS connections"
  declare -A M U S C
  for r in $(seq "$ROUNDS"); do
    for i in 0 1; do
      read -r name port master <<<"${SIDES[$i]}"
      read -r n mbps u s c < <(one "$client" "$port" "$master")
      M[$i,$r]=$mbps; U[$i,$r]=$u; S[$i,$r]=$s; C[$i,$r]=$c
      say "$(printf '  round %d %-16s %6d responses %8.1f MB/s  server user %.3f ms  system %.3f ms  client %.3f ms per response' \
        "$r" "$name" "$n" "$mbps" "$u" "$s" "$c")"
    done
  done
  declare -a med_m med_t med_u med_s med_c med_a
  for i in 0 1; do
    read -r name _ <<<"${SIDES[$i]}"
    ms=(); us=(); ss=(); ts=(); cs=(); as=()
    for r in $(seq "$ROUNDS"); do
      ms+=("${M[$i,$r]}"); us+=("${U[$i,$r]}"); ss+=("${S[$i,$r]}"); cs+=("${C[$i,$r]}")
      ts+=("$(awk -v a="${U[$i,$r]}" -v b="${S[$i,$r]}" 'BEGIN {printf "%.3f", a + b}')")
      as+=("$(awk -v a="${U[$i,$r]}" -v b="${S[$i,$r]}" -v c="${C[$i,$r]}" 'BEGIN {printf "%.3f", a + b + c}')")
    done
    med_m[i]=$(medianof "${ms[@]}"); med_t[i]=$(medianof "${ts[@]}")
    med_u[i]=$(medianof "${us[@]}"); med_s[i]=$(medianof "${ss[@]}"); med_c[i]=$(medianof "${cs[@]}")
    med_a[i]=$(medianof "${as[@]}")
    say "$(printf '  median %-15s %8.1f MB/s  server CPU %.3f ms per response (user %.3f, system %.3f)  client %.3f ms  both %.3f ms' \
      "$name" "${med_m[$i]}" "${med_t[$i]}" "${med_u[$i]}" "${med_s[$i]}" "${med_c[$i]}" "${med_a[$i]}")"
  done
  for i in 0 1; do
    read -r name _ <<<"${SIDES[$i]}"
    vs_m="-"; vs_t="-"; vs_a="-"
    [ "$i" -eq 0 ] && { vs_m="**$(div "${med_m[0]}" "${med_m[1]}")×**"; vs_t="$(div "${med_t[0]}" "${med_t[1]}")×"; vs_a="**$(div "${med_a[0]}" "${med_a[1]}")×**"; }
    md "$(printf '| %s | %s | %.1f | %.3f | %.3f | %.3f | %.3f | %.3f | %s | %s | %s |' "$client" "$name" "${med_m[$i]}" \
      "${med_u[$i]}" "${med_s[$i]}" "${med_t[$i]}" "${med_c[$i]}" "${med_a[$i]}" "$vs_m" "$vs_t" "$vs_a")"
  done
  say "  ratio workerd+builtin / nginx: transfer rate $(div "${med_m[0]}" "${med_m[1]}")x, server CPU per response $(div "${med_t[0]}" "${med_t[1]}")x, server + client $(div "${med_a[0]}" "${med_a[1]}")x"
  # Round by round: each round's ratio is one sample of the difference (the sides alternate, so a
  # slow spell of the machine tends to hit both); their spread says how far the medians can be
  # trusted.
  pairs=(); for r in $(seq "$ROUNDS"); do pairs+=("${M[0,$r]}" "${M[1,$r]}"); done
  read -r gm lo hi _ < <(ratio_interval "${pairs[@]}")
  say "  round by round: transfer rate ${gm}x nginx's, 95% interval ${lo}-${hi}x"
  ROUND_BY_ROUND="${ROUND_BY_ROUND:+$ROUND_BY_ROUND, }$client ${gm}× (${lo}-${hi}×)"
  say ""
  unset M U S C
done
md ""
md "Transfer rate round by round (the geometric mean of each round's ratio, with its 95% interval):" \
  "$ROUND_BY_ROUND."
md ""
md "Medians of $ROUNDS rounds of ${DURATION} s, alternating the servers; each client with $THREADS threads and" \
  "$CONNECTIONS connections on \`/10m.bin\`: \`wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency --timeout 30s URL\` and" \
  "\`workerd load URL -t $THREADS -c $CONNECTIONS --duration ${DURATION}s --timeout 30s\`. Server CPU: the workers'" \
  "utime and stime (/proc/PID/stat) over the load, per response; client CPU: bash's \`time\` of the client;" \
  "server + client: the two added, round by round (on loopback the kernel's TCP work for a response is" \
  "charged to whichever side's call or softirq does it; with both cores busy their sum is the" \
  "machine's time per response, the rate's inverse)." \
  "Servers as in the first table of this page."
md ""
stop "$BI_PID" "$NG_PID"
md_end
