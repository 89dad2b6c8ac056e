# shellcheck shell=bash
# Shared by the benchmark scripts: sourced, not run. Loopback only; every process a script
# starts goes into PIDS and is stopped by its pid on exit, even on failure.
# Expects ROUNDS and DURATION to be set by the script.
#
# Environment: WORKERD (default build/bin/workerd), WORKERCTL (default: next to WORKERD),
# BENCH_RESULTS (a directory: each script writes its markdown section there, which
# tests/bench/report.sh assembles into docs/benchmarks.md; unset, only stdout).
THREADS=2
CONNECTIONS=64
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WORKERD=${WORKERD:-$ROOT/build/bin/workerd}
WORKERCTL=${WORKERCTL:-$(dirname "$WORKERD")/workerctl}
PY=/usr/bin/python3
# shellcheck disable=SC2034  # read by the scripts that source this file
APP_DIR=$ROOT/examples/fastapi
# shellcheck disable=SC2034  # read by the scripts that source this file
BENCH_DIR=$ROOT/tests/bench
# As root, workerd runs workers as root only when told so (--allow-root; older builds, which
# bench_compare.sh may run, have no such flag and no such check).
allow_root_flag() {
  if [ "$(id -u)" -eq 0 ] && "$1" --help 2>/dev/null | grep -q -- --allow-root; then echo --allow-root; fi
}
ALLOW_ROOT=$(allow_root_flag "$WORKERD")
WORK=$(mktemp -d /tmp/workerd-bench-XXXXXX)
PIDS=()

children() { ps -o pid= --ppid "$1" | tr -d ' '; }
descendants() { local c; for c in $(children "$1"); do echo "$c"; descendants "$c"; done; }
running() { [ -r "/proc/$1/stat" ] && [ "$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" != Z ]; }

# stop PID...: SIGTERM to each, up to 10 s for them and what they started to exit, then SIGKILL
# to whatever is left of them (by pid: the processes and their descendants, listed before).
stop() {
  local pid all=() alive
  for pid in "$@"; do all+=("$pid"); mapfile -t -O "${#all[@]}" all < <(descendants "$pid"); done
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 100); do
    alive=0
    for pid in "${all[@]}"; do running "$pid" && { alive=1; break; }; done
    ((alive)) || break
    sleep 0.1
  done
  for pid in "${all[@]}"; do running "$pid" && kill -KILL "$pid" 2>/dev/null || true; done
  for pid in "$@"; do wait "$pid" 2>/dev/null || true; done
  local keep=() p q drop   # stopped: not to be signalled again (the pid may be reused)
  for p in "${PIDS[@]}"; do drop=0; for q in "$@"; do [ "$p" = "$q" ] && drop=1; done; ((drop)) || keep+=("$p"); done
  PIDS=("${keep[@]}")
}

cleanup() {
  ((${#PIDS[@]})) && stop "${PIDS[@]}"
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 143' TERM INT   # so that a timeout (make bench bounds each script) still cleans up

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_http() {  # wait_http URL: up to 30 s
  for _ in $(seq 300); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "no answer from $1" >&2; return 1
}

wait_socket() {  # wait_socket PATH: up to 10 s
  for _ in $(seq 200); do [ -S "$1" ] && return 0; sleep 0.05; done
  echo "no control socket at $1" >&2; return 1
}

# workers_of PORT MASTER: the children of MASTER that hold PORT's listening socket (so not
# uvicorn's multiprocessing helpers, say), one pid a line.
workers_of() {
  local port=$1 master=$2 listeners
  listeners=$(ss -tlnpH "( sport = :$port )" 2>/dev/null || true)
  for w in $(children "$master"); do grep -q "pid=$w," <<<"$listeners" && echo "$w"; done
  return 0
}

# split PORT MASTER: established connections to PORT held by each worker of MASTER, "a/b/...".
split() {
  local port=$1 master=$2 out="" conns
  conns=$(ss -tnpH state established "( sport = :$port )" 2>/dev/null || true)
  for w in $(workers_of "$port" "$master"); do out+="$(grep -c "pid=$w," <<<"$conns" || true)/"; done
  echo "${out%/}"
}

# even SPLIT: true when no worker holds more than 3/4 of the connections.
even() { awk -v s="$1" 'BEGIN {n=split(s,a,"/"); t=0; m=0; for (i=1;i<=n;i++) {t+=a[i]; if (a[i]>m) m=a[i]}; exit !(t>0 && m<=0.75*t)}'; }

# busiest SPLIT: the largest part of SPLIT ("a/b/...") as a share of the whole, in percent.
busiest() { awk -v s="$1" 'BEGIN {n=split(s,a,"/"); t=0; m=0; for (i=1;i<=n;i++) {t+=a[i]; if (a[i]>m) m=a[i]}; printf "%.0f", (t>0 ? 100*m/t : 0)}'; }

# wrk_ms FILE PERCENTILE: a latency percentile from wrk --latency output, in ms.
wrk_ms() {
  awk -v p="$2%" '$1==p {v=$2; if (v ~ /us$/) {sub(/us$/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v=v*1000}; print v}' "$1"
}

# wrk_mbps FILE: wrk's "Transfer/sec:" in MB/s (wrk's units: 1 MB = 2^20 bytes).
wrk_mbps() {
  awk '/^Transfer\/sec:/ {
    v=$2; u=v; sub(/^[0-9.]+/, "", u); sub(/[A-Za-z]+$/, "", v)
    if (u=="B") f=1/1048576; else if (u=="KB") f=1/1024; else if (u=="MB") f=1
    else if (u=="GB") f=1024; else if (u=="TB") f=1048576; else f=0
    printf "%.2f\n", v*f}' "$1"
}

# run_wrk URL PORT MASTER_PID: one timed load; prints "rps p50_ms p99_ms requests split MB/s [errors]"
# (MB/s: wrk's Transfer/sec). WRK_ARGS, when set, adds arguments to wrk (compare --transfer
# sets a longer --timeout).
run_wrk() {
  local url=$1 port=$2 master=$3 out conns
  out=$WORK/wrk.out
  # shellcheck disable=SC2086  # WRK_ARGS: words on purpose
  timeout $((DURATION + 30)) wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency ${WRK_ARGS:-} "$url" >"$out" &
  local wrk_pid=$!
  sleep $((DURATION / 2))
  conns=$(split "$port" "$master")
  wait $wrk_pid
  local rps p50 p99 requests errors mbps
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
  requests=$(awk '/requests in/ {print $1}' "$out")
  p50=$(wrk_ms "$out" 50); p99=$(wrk_ms "$out" 99)
  mbps=$(wrk_mbps "$out")
  errors=$(awk '/Non-2xx|Socket errors/ {print}' "$out" | tr '\n' ' ')
  echo "${rps:-0} ${p50:-0} ${p99:-0} ${requests:-0} ${conns:--} ${mbps:-0} ${errors:+[$errors]}"
}

# run_load URL PORT MASTER_PID: as run_wrk, with the project's own client instead: `workerd load`
# closed loop (THREADS event loops, CONNECTIONS connections, reads of up to 64 KiB where wrk's
# are 8 KiB), for transfers that would otherwise measure wrk's read calls, not the server.
run_load() {
  local url=$1 port=$2 master=$3 out conns
  out=$WORK/load.json
  timeout $((DURATION + 60)) "$WORKERD" load "$url" -t "$THREADS" -c "$CONNECTIONS" --duration "${DURATION}s" \
    --timeout 30s --json >"$out" 2>/dev/null &
  local load_pid=$!
  sleep $((DURATION / 2))
  conns=$(split "$port" "$master")
  wait $load_pid || true
  "$PY" - "$out" "${conns:--}" <<'PYEOF'
import json, sys
try:
    j = json.load(open(sys.argv[1]))
except (OSError, ValueError):
    print("0 0 0 0", sys.argv[2], "0 [no result]")
    sys.exit()
mbps = j["bytes"] / j["seconds"] / 1048576 if j["seconds"] else 0
errors = f" [errors {j['errors']}]" if j["errors"] else ""
print(f"{j['rate']:.2f} {j['p50_ms']:.3f} {j['p99_ms']:.3f} {j['requests']} {sys.argv[2]} {mbps:.2f}{errors}")
PYEOF
}

# client_line: the load command compare runs (LOAD_CLIENT: wrk, the default, or load), for the tables.
client_line() {
  if [ "${LOAD_CLIENT:-wrk}" = load ]; then
    echo "workerd load -t $THREADS -c $CONNECTIONS --duration ${DURATION}s --timeout 30s"
  else
    echo "wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency${WRK_ARGS:+ ${WRK_ARGS# }}"
  fi
}

median() { sort -g | awk '{a[NR]=$1} END {if (NR) print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
# medianof V...: the median of the arguments.
medianof() { printf '%s\n' "$@" | median; }
# div A B [FORMAT]: A/B, "-" when B is 0 or either is missing.
div() { awk -v a="$1" -v b="$2" -v f="${3:-%.2f}" 'BEGIN {if (a=="" || b=="" || b+0==0) print "-"; else printf f "\n", a/b}'; }
# ratio_interval A1 B1 A2 B2 ...: the round-by-round ratios Ai/Bi as "GEOMEAN LOW HIGH N": their
# geometric mean and its 95% interval (Student's t on the logarithms; rounds alternate the sides,
# so each round's ratio is one sample). LOW and HIGH are "-" with fewer than 2 rounds.
ratio_interval() {
  "$PY" - "$@" <<'PYEOF'
import math, statistics, sys
v = [float(x) for x in sys.argv[1:]]
logs = [math.log(a / b) for a, b in zip(v[0::2], v[1::2]) if a > 0 and b > 0]
n = len(logs)
if n == 0:
    print("- - - 0"); sys.exit()
m = statistics.mean(logs)
if n < 2:
    print(f"{math.exp(m):.3f} - - 1"); sys.exit()
# t quantile 0.975 for n-1 degrees of freedom (1..30), then the normal's
t = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
     2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
     2.052, 2.048, 2.045, 2.042]
q = t[n - 2] if n - 1 <= len(t) else 1.960
h = q * statistics.stdev(logs) / math.sqrt(n)
print(f"{math.exp(m):.3f} {math.exp(m - h):.3f} {math.exp(m + h):.3f} {n}")
PYEOF
}

# --- sides: the servers a script compares ---------------------------------------------------
# side NAME URL PORT MASTER_PID COMMAND: registers one side; COMMAND is how it was started
# (for the markdown: the exact command, or the spec's essentials).
S_NAME=(); S_URL=(); S_PORT=(); S_PID=(); S_CMD=()
side() { S_NAME+=("$1"); S_URL+=("$2"); S_PORT+=("$3"); S_PID+=("$4"); S_CMD+=("$5"); }
clear_sides() { S_NAME=(); S_URL=(); S_PORT=(); S_PID=(); S_CMD=(); }

# compare [--transfer] TITLE [REF]: a wrk load (or with LOAD_CLIENT=load, `workerd load`: run_load)
# on every registered side, rounds alternating
# between them (ROUNDS rounds of DURATION s); prints each round and the medians, and writes a
# markdown table with ratios against side REF (an index, default the last side). Throughput is
# req/s, or with --transfer wrk's transfer rate in MB/s (for large files; wrk then gets
# --timeout 30s, a 10 MiB response to each of 64 connections taking longer than its default 2 s
# on a slow machine). Besides the medians of all rounds:
# - each side's medians (throughput, p99) over the rounds in which it spread its connections
#   evenly (`even`): a worker that accepts everything at once (uvicorn does) piles the
#   connections onto one process by chance, which halves throughput whichever supervisor runs
#   it, and that luck is not the supervisor's cost;
# - round-paired, against REF: the median over the rounds in which both it and REF were evenly
#   split of the per-round ratios (its throughput, p99 in that round over REF's in the same
#   round; the two loads of a round run back to back, so a slow stretch of the machine hits
#   both).
compare() {
  local unit="req/s" prec=0 what=throughput WRK_ARGS=${WRK_ARGS:-}
  if [ "${1:-}" = --transfer ]; then unit="MB/s"; prec=1; what="transfer rate"; WRK_ARGS+=" --timeout 30s"; shift; fi
  local title=$1 n=${#S_NAME[@]}
  local ref=${2:-$((n - 1))}
  local -A thr p50 p99 spl evn
  local wrk_line
  wrk_line=$(client_line)
  say "== $title: $wrk_line, $ROUNDS rounds"
  local r i a b c d e f rest
  for r in $(seq "$ROUNDS"); do
    for i in $(seq 0 $((n - 1))); do
      read -r a b c d e f rest < <("run_${LOAD_CLIENT:-wrk}" "${S_URL[$i]}" "${S_PORT[$i]}" "${S_PID[$i]}")
      if [ "$unit" = "MB/s" ]; then thr[$i,$r]=$f; else thr[$i,$r]=$a; fi
      p50[$i,$r]=$b; p99[$i,$r]=$c; spl[$i,$r]=$e
      if even "$e"; then evn[$i,$r]=1; else evn[$i,$r]=0; fi
      say "$(printf "  round %d %-24s %10.0f req/s %8.1f MB/s  p50 %7.2f ms  p99 %7.2f ms  conns/worker %s %s" \
        "$r" "${S_NAME[$i]}" "$a" "$f" "$b" "$c" "$e" "$rest")"
    done
  done
  local -a med_thr med_p50 med_p99 even_thr even_p99 even_n splits pair_thr pair_p99 pair_n
  local gm lo hi intervals=""
  for i in $(seq 0 $((n - 1))); do
    local -a xt=() x5=() x9=() et=() e9=() pt=() p9=()
    local sp=""
    for r in $(seq "$ROUNDS"); do
      xt+=("${thr[$i,$r]}"); x5+=("${p50[$i,$r]}"); x9+=("${p99[$i,$r]}"); sp+="${spl[$i,$r]}, "
      ((evn[$i,$r])) && { et+=("${thr[$i,$r]}"); e9+=("${p99[$i,$r]}"); }
      if ((evn[$i,$r] && evn[$ref,$r])) && [ "$i" -ne "$ref" ]; then
        pt+=("$(div "${thr[$i,$r]}" "${thr[$ref,$r]}" %.4f)"); p9+=("$(div "${p99[$i,$r]}" "${p99[$ref,$r]}" %.4f)")
      fi
    done
    med_thr[i]=$(medianof "${xt[@]}"); med_p50[i]=$(medianof "${x5[@]}"); med_p99[i]=$(medianof "${x9[@]}")
    even_n[i]=${#et[@]}; even_thr[i]=""; even_p99[i]=""
    ((${#et[@]})) && { even_thr[i]=$(medianof "${et[@]}"); even_p99[i]=$(medianof "${e9[@]}"); }
    pair_n[i]=${#pt[@]}; pair_thr[i]=""; pair_p99[i]=""
    # (a ratio is "-" when the reference measured 0: left out of the median)
    ((${#pt[@]})) && { pair_thr[i]=$(printf '%s\n' "${pt[@]}" | grep -v '^-$' | median); pair_p99[i]=$(printf '%s\n' "${p9[@]}" | grep -v '^-$' | median); }
    splits[i]=${sp%, }
    local evtext="none"
    ((even_n[i])) && evtext="$(printf '%.*f %s, p99 %.2f ms' "$prec" "${even_thr[$i]}" "$unit" "${even_p99[$i]}")"
    say "$(printf "  median %-23s %10s %-5s  p50 %7.2f ms  p99 %7.2f ms; evenly split rounds (%d of %d): %s" \
      "${S_NAME[$i]}" "$(printf '%.*f' "$prec" "${med_thr[$i]}")" "$unit" "${med_p50[$i]}" "${med_p99[$i]}" "${even_n[$i]}" "$ROUNDS" "$evtext")"
  done
  for i in $(seq 0 $((n - 1))); do
    [ "$i" -eq "$ref" ] && continue
    local -a all=()
    for r in $(seq "$ROUNDS"); do all+=("${thr[$i,$r]}" "${thr[$ref,$r]}"); done
    read -r gm lo hi _ < <(ratio_interval "${all[@]}")
    intervals+="${intervals:+, }${S_NAME[$i]} $gm× ($lo-$hi×)"
    say "  ratio ${S_NAME[$i]} / ${S_NAME[$ref]}: $what $(div "${med_thr[$i]}" "${med_thr[$ref]}")x, p50 $(div "${med_p50[$i]}" "${med_p50[$ref]}")x, p99 $(div "${med_p99[$i]}" "${med_p99[$ref]}")x; evenly split rounds only: $what $(div "${even_thr[$i]}" "${even_thr[$ref]}")x, p99 $(div "${even_p99[$i]}" "${even_p99[$ref]}")x (${even_n[$i]} and ${even_n[$ref]} of $ROUNDS rounds); rounds both evenly split, median of per-round ratios: $what $(div "${pair_thr[$i]}" 1)x, p99 $(div "${pair_p99[$i]}" 1)x (${pair_n[$i]} of $ROUNDS rounds); all rounds, round by round: $what ${gm}x, 95% interval $lo-${hi}x"
  done
  say ""
  md "### $title"
  md ""
  md "| server | $unit | p50 ms | p99 ms | $unit vs ${S_NAME[$ref]} | p50 vs | p99 vs | evenly split rounds: $unit (vs) | evenly split rounds: p99 ms (vs) | both evenly split, per-round ratios: $unit, p99 | conns per worker, each round |"
  md "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
  for i in $(seq 0 $((n - 1))); do
    local ev_thr="-" ev_p99="-" pair="-"
    if ((even_n[i])); then
      ev_thr="$(printf '%.*f' "$prec" "${even_thr[$i]}") in ${even_n[$i]}/$ROUNDS ($(div "${even_thr[$i]}" "${even_thr[$ref]}")×)"
      ev_p99="$(printf '%.2f' "${even_p99[$i]}") ($(div "${even_p99[$i]}" "${even_p99[$ref]}")×)"
    fi
    [ "$i" -ne "$ref" ] && ((pair_n[i])) && pair="**$(div "${pair_thr[$i]}" 1)×**, $(div "${pair_p99[$i]}" 1)× in ${pair_n[$i]}/$ROUNDS"
    [ "$i" -ne "$ref" ] && ((pair_n[i] == 0)) && pair="none of $ROUNDS rounds"
    md "| ${S_NAME[$i]} | $(printf '%.*f' "$prec" "${med_thr[$i]}") | $(printf '%.2f' "${med_p50[$i]}") | $(printf '%.2f' "${med_p99[$i]}") | **$(div "${med_thr[$i]}" "${med_thr[$ref]}")×** | $(div "${med_p50[$i]}" "${med_p50[$ref]}")× | $(div "${med_p99[$i]}" "${med_p99[$ref]}")× | $ev_thr | $ev_p99 | $pair | ${splits[$i]} |"
  done
  md ""
  md "${what^} against ${S_NAME[$ref]}, all rounds, round by round (the geometric mean of the per-round ratios, with its 95% interval): $intervals."
  md ""
  md "Load: \`$wrk_line URL\`, $ROUNDS rounds alternating between the servers; medians of the rounds.$([ "$unit" = "MB/s" ] && [ "${LOAD_CLIENT:-wrk}" = wrk ] && echo " MB/s: wrk's \`Transfer/sec\` (1 MB = 2^20 bytes).")$([ "$unit" = "MB/s" ] && [ "${LOAD_CLIENT:-wrk}" = load ] && echo " MB/s: bytes received (headers included) over the run's seconds, 1 MB = 2^20 bytes; \`workerd load\` reads up to 64 KiB a call.")" \
    "\"Evenly split rounds\": that server's medians over the rounds in which no worker held more than 3/4 of its connections, against ${S_NAME[$ref]}'s over its own such rounds." \
    "\"Both evenly split\": over the rounds in which this server and ${S_NAME[$ref]} were both evenly split, the median of the per-round ratios (this server's $unit, then p99, over ${S_NAME[$ref]}'s in the same round). Servers:"
  md ""
  for i in $(seq 0 $((n - 1))); do md "- ${S_NAME[$i]} (\`/${S_URL[$i]#http://127.0.0.1:*/}\`): ${S_CMD[$i]}"; done
  md ""
}

# --- markdown sections ------------------------------------------------------------------------
# md_begin NAME TITLE ARGS...: starts this script's section (## TITLE) and notes the exact
# command (tests/bench/SCRIPT ARGS...); md LINE... adds lines; say LINE prints a line and keeps
# it for the raw log; md_end writes the section, with the raw log, to $BENCH_RESULTS/NAME.md.
MD_NAME=""
MD_FILE=$WORK/section.md
RAW_FILE=$WORK/raw.log
md() { printf '%s\n' "$@" | sed 's/\([ (*]\)-×/\1-/g' >>"$MD_FILE"; }   # a ratio with a missing side: "-"
say() { printf '%s\n' "$1"; printf '%s\n' "$1" >>"$RAW_FILE"; }
md_begin() {
  MD_NAME=$1
  : >"$MD_FILE"; : >"$RAW_FILE"
  md "## $2" "" "\`tests/bench/$(basename "$0")${3:+ ${*:3}}\`, $(date -u '+%Y-%m-%d %H:%M UTC'):" ""
  LOAD_BEGIN=$(cut -d' ' -f1-3 /proc/loadavg)
}
# start_workerd NAME SPEC_BODY -> "PID PORT": workerd on a free loopback port with SPEC_BODY
# (YAML after `listen`), its own control socket ($WORK/NAME.sock) and log level $WORKERD_LOG
# (default warn); stderr to $WORK/workerd-NAME.log. The caller adds PID to PIDS.
start_workerd() {
  local port
  port=$(free_port)
  cat >"$WORK/$1.yaml" <<YAML
listen: ["127.0.0.1:$port"]
$2
control: {socket: $WORK/$1.sock}
log: {level: ${WORKERD_LOG:-warn}}
YAML
  "$WORKERD" start $ALLOW_ROOT "$WORK/$1.yaml" 2>"$WORK/workerd-$1.log" &
  echo "$! $port"
}

# nginx_temp_paths: nginx's temporary directories under $WORK/nginx, for an http {} block.
nginx_temp_paths() {
  local d
  for d in client_body:body proxy:proxy fastcgi:fastcgi uwsgi:uwsgi scgi:scgi; do
    echo "  ${d%%:*}_temp_path $WORK/nginx/${d#*:};"
  done
}

# start_nginx WORKERS PORT HTTP SERVER: writes $WORK/nginx/nginx.conf (WORKERS processes under
# a master, in the foreground; this run's pid file, error log and temporary paths; the lines HTTP
# in http {}, the lines SERVER in the one server, on 127.0.0.1:PORT) and starts nginx on it.
# Sets NG_PID (also in PIDS, so the exit trap stops it).
start_nginx() {
  local workers=$1 port=$2 http=$3 server=$4
  mkdir -p "$WORK/nginx"
  cat >"$WORK/nginx/nginx.conf" <<CONF
worker_processes $workers;
daemon off;
master_process on;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
$http
$(nginx_temp_paths)
  server {
    listen 127.0.0.1:$port;
$server
  }
}
CONF
  nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" 2>>"$WORK/nginx/error.log" &
  NG_PID=$!; PIDS+=("$NG_PID")
}

# --- the bundled worker and nginx on the same files (bench_core.sh, bench_syscalls.sh) --------
# The files both serve from $WORK/static: 1 KiB of HTML, 100 KiB and 10 MiB of random bytes.
STATIC_FILES=(small.html 100k.bin 10m.bin)
# start_builtin_and_nginx: workerd with the bundled worker and nginx, 2 workers each, serving
# $WORK/static on free loopback ports. Sets BI_PID BI_PORT (workerd), NG_PID NG_PORT (nginx's
# master) and BI_CMD NG_CMD (how they were started, for the markdown), adds both pids to PIDS,
# waits until both answer, and checks that both return every file byte for byte.
# make_static_files: $WORK/static with small.html (1 KiB), 100k.bin and 10m.bin.
make_static_files() {
  local static=$WORK/static
  mkdir -p "$static"
  chmod 755 "$WORK" "$static"   # nginx's workers run as another user when started as root
  "$PY" -c 'import sys; sys.stdout.write(("<p>" + "x" * 56 + "</p>\n") * 16)' >"$static/small.html"  # 1024 bytes
  head -c 102400 /dev/urandom >"$static/100k.bin"
  head -c 10485760 /dev/urandom >"$static/10m.bin"
  chmod 644 "$static"/*
}

start_builtin_and_nginx() {
  local static=$WORK/static f
  make_static_files
  mkdir -p "$WORK/nginx"
  BI_PORT=$(free_port)
  cat >"$WORK/builtin.yaml" <<YAML
listen: ["127.0.0.1:$BI_PORT"]
workers: 2
app:
  builtin: {root: $static}
control: {socket: $WORK/builtin.sock}
log: {level: warn}
YAML
  "$WORKERD" start $ALLOW_ROOT "$WORK/builtin.yaml" 2>"$WORK/workerd-builtin.log" &
  BI_PID=$!; PIDS+=("$BI_PID")
  NG_PORT=$(free_port)
  start_nginx 2 "$NG_PORT" '  include /etc/nginx/mime.types;
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  open_file_cache max=1000 inactive=20s;
  open_file_cache_valid 1s;
  open_file_cache_errors on;' "    location = /healthz { return 200 \"ok\\n\"; }
    location / { root $static; }"
  wait_http "http://127.0.0.1:$BI_PORT/healthz"
  wait_http "http://127.0.0.1:$NG_PORT/healthz"
  for f in "${STATIC_FILES[@]}"; do
    cmp <(curl -fsS "http://127.0.0.1:$BI_PORT/$f") "$static/$f"
    cmp <(curl -fsS "http://127.0.0.1:$NG_PORT/$f") "$static/$f"
  done
  # shellcheck disable=SC2034  # read by the scripts that source this file
  BI_CMD="\`workerd start SPEC\` with \`workers: 2\`, \`app: {builtin: {root: DIR}}\`, \`log: {level: warn}\`"
  # shellcheck disable=SC2034  # read by the scripts that source this file
  NG_CMD="\`nginx -c CONF\`: \`worker_processes 2\`, \`access_log off\`, \`sendfile on\`, \`tcp_nopush on\`, \`keepalive_requests 1000000\`, \`open_file_cache max=1000 inactive=20s\`, \`open_file_cache_valid 1s\`, \`open_file_cache_errors on\`, \`location = /healthz { return 200 \"ok\\n\"; }\`, \`location / { root DIR; }\`"
}

# md_servers_end: the list of servers (NAMES[i]: CMDS[i]) under the table, then md_end.
md_servers_end() {
  md ""
  md "Servers:"
  md ""
  local i
  for i in "${!NAMES[@]}"; do md "- ${NAMES[$i]}: ${CMDS[$i]}"; done
  md ""
  md_end
}

md_end() {
  md "<details><summary>raw output</summary>" "" '```' "$(cat "$RAW_FILE")" "" \
    "load average (1, 5, 15 min) at the start: $LOAD_BEGIN; at the end: $(cut -d' ' -f1-3 /proc/loadavg)" '```' "" "</details>" ""
  if [ -n "${BENCH_RESULTS:-}" ]; then
    mkdir -p "$BENCH_RESULTS"
    cp "$MD_FILE" "$BENCH_RESULTS/$MD_NAME.md"
    rm -rf "$BENCH_RESULTS/logs/$MD_NAME"; mkdir -p "$BENCH_RESULTS/logs/$MD_NAME"   # the servers' logs, to look into
    cp "$WORK"/*.log "$BENCH_RESULTS/logs/$MD_NAME/" 2>/dev/null || true
    echo "(section written to $BENCH_RESULTS/$MD_NAME.md)"
  fi
}

# --- measuring the daemons ----------------------------------------------------------------------
# cpu_ns PID: CPU time of every thread of PID so far, in ns (schedstat: far finer than ticks).
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s+=$1} END {printf "%.0f\n", s}'; }  # (%d: 32 bits in mawk)
# cpu_ticks PID: utime+stime of PID (all threads) from /proc/PID/stat, in clock ticks.
cpu_ticks() { sed 's/^.*) //' /proc/"$1"/stat | awk '{print $12+$13}'; }
# rss_kib PID / pss_kib PID: resident memory; PSS counts pages shared with forked workers by share.
rss_kib() { awk '/^VmRSS:/ {print $2}' /proc/"$1"/status; }
pss_kib() { awk '/^Pss:/ {print $2}' /proc/"$1"/smaps_rollup 2>/dev/null || echo 0; }

# time_scrape PORT N WORKERS: N /metrics scrapes over one connection; prints "median_ms p99_ms bytes".
time_scrape() {
  "$PY" - "$@" <<'PY'
import http.client, sys, time
port, n, workers = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
times = []
for i in range(n):
    t0 = time.perf_counter()
    c.request("GET", "/metrics")
    r = c.getresponse()
    body = r.read()
    times.append((time.perf_counter() - t0) * 1000)
    assert r.status == 200 and f"workerd_workers_desired {workers}".encode() in body, r.status
times.sort()
print(f"{times[len(times) // 2]:.2f} {times[min(len(times) - 1, int(len(times) * 0.99))]:.2f} {len(body)}")
PY
}

# time_status SOCKET N WORKERS: N `status` requests over one control connection (the protocol's
# round trip, no process start); prints "median_ms p99_ms".
time_status() {
  "$PY" - "$@" <<'PY'
import json, socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.settimeout(30)
s.connect(sys.argv[1])
n, workers = int(sys.argv[2]), int(sys.argv[3])
f = s.makefile("rwb")
rtts = []
for i in range(n):
    t0 = time.perf_counter()
    f.write(json.dumps({"id": i, "command": "status"}).encode() + b"\n")
    f.flush()
    reply = json.loads(f.readline())
    rtts.append((time.perf_counter() - t0) * 1000)
    assert reply["ok"] and len(reply["result"]["workers"]) == workers, reply
rtts.sort()
print(f"{rtts[len(rtts) // 2]:.2f} {rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))]:.2f}")
PY
}

# time_cmd_ms N CMD...: the median wall time of running CMD N times, in ms (process start included).
time_cmd_ms() {
  local n=$1 t0 t1; shift
  local -a ts=()
  for _ in $(seq "$n"); do
    t0=$(date +%s%N); "$@" >/dev/null; t1=$(date +%s%N)
    ts+=("$(( (t1 - t0) / 1000 ))")
  done
  medianof "${ts[@]}" | awk '{printf "%.2f\n", $1 / 1000}'
}

# need_fds N: raises the soft open-files limit to at least N (up to the hard limit).
need_fds() {
  local soft hard
  soft=$(ulimit -Sn); hard=$(ulimit -Hn)
  [ "$soft" = unlimited ] && return 0
  if [ "$soft" -lt "$1" ]; then
    if [ "$hard" = unlimited ] || [ "$hard" -ge "$1" ]; then ulimit -Sn "$1"
    else echo "open files limit: need $1, hard limit is $hard" >&2; ulimit -Sn "$hard"; fi
  fi
}

# require TOOL...: exits with a hint when one is missing.
require() {
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "missing $tool (run: make bench)" >&2; exit 1; }
  done
}

machine() {
  echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r)"
  echo
}
