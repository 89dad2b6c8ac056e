# Shared by the benchmark scripts: sourced, not run. Loopback only; every process a script
# starts goes into PIDS and is stopped by its pid on exit, even on failure.
# Expects ROUNDS and DURATION to be set by the script.
THREADS=2
CONNECTIONS=64
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WORKERD=${WORKERD:-$ROOT/build/bin/workerd}
PY=/usr/bin/python3
# As root, workerd runs workers as root only when told so (--allow-root; older builds, which
# bench_compare.sh may run, have no such flag and no such check).
allow_root_flag() {
  if [ "$(id -u)" -eq 0 ] && "$1" --help 2>/dev/null | grep -q -- --allow-root; then echo --allow-root; fi
}
ALLOW_ROOT=$(allow_root_flag "$WORKERD")
WORK=$(mktemp -d /tmp/workerd-bench-XXXXXX)
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  sleep 0.5
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_http() {  # wait_http URL: up to 30 s
  for _ in $(seq 300); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "no answer from $1" >&2; return 1
}

children() { ps -o pid= --ppid "$1" | tr -d ' '; }

# split PORT MASTER: established connections to PORT held by each child of MASTER, "a/b/...".
split() {
  local port=$1 master=$2 out="" conns
  conns=$(ss -tnpH state established "( sport = :$port )" 2>/dev/null || true)
  for w in $(children "$master"); do out+="$(grep -c "pid=$w," <<<"$conns" || true)/"; done
  echo "${out%/}"
}

# even SPLIT: true when no worker holds more than 3/4 of the connections.
even() { awk -v s="$1" 'BEGIN {n=split(s,a,"/"); t=0; m=0; for (i=1;i<=n;i++) {t+=a[i]; if (a[i]>m) m=a[i]}; exit !(t>0 && m<=0.75*t)}'; }

# run_wrk URL PORT MASTER_PID: one timed load; prints "rps p99_ms split [errors]"
run_wrk() {
  local url=$1 port=$2 master=$3 out conns
  out=$WORK/wrk.out
  timeout $((DURATION + 30)) wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency "$url" >"$out" &
  local wrk_pid=$!
  sleep $((DURATION / 2))
  conns=$(split "$port" "$master")
  wait $wrk_pid
  local rps p99
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
  p99=$(awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub(/us$/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v=v*1000}; print v}' "$out")
  local errors
  errors=$(awk '/Non-2xx|Socket errors/ {print}' "$out" | tr '\n' ' ')
  echo "$rps $p99 $conns ${errors:+[$errors]}"
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# ratio NAME_A NAME_B RPS_A RPS_B P99_A P99_B LABEL
ratio() {
  awk -v na="$1" -v nb="$2" -v a="$3" -v b="$4" -v pa="$5" -v pb="$6" -v l="$7" \
    'BEGIN {printf "  ratio %s / %s%s: throughput %.2fx, p99 %.2fx\n", na, nb, l, a/b, pa/pb}'
}

# compare TITLE NAME_A URL_A PORT_A MASTER_A NAME_B URL_B PORT_B MASTER_B
# Rounds alternate A and B. Besides the medians of all rounds, the medians of the rounds in
# which both sides spread their connections evenly are compared: a worker that accepts
# everything at once (uvicorn does) piles the connections onto one process by chance, which
# halves throughput whichever supervisor runs it, and that luck is not the supervisor's cost.
compare() {
  local title=$1; shift
  local -a a_rps=() a_p99=() b_rps=() b_p99=() ea_rps=() ea_p99=() eb_rps=() eb_p99=()
  echo "== $title: wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s, $ROUNDS rounds"
  for r in $(seq "$ROUNDS"); do
    local rps1 p991 split1 rest1 rps2 p992 split2 rest2
    read -r rps1 p991 split1 rest1 < <(run_wrk "$2" "$3" "$4")
    printf '  round %d %-22s %10.0f req/s  p99 %7.2f ms  conns/worker %s %s\n' "$r" "$1" "$rps1" "$p991" "$split1" "$rest1"
    read -r rps2 p992 split2 rest2 < <(run_wrk "$6" "$7" "$8")
    printf '  round %d %-22s %10.0f req/s  p99 %7.2f ms  conns/worker %s %s\n' "$r" "$5" "$rps2" "$p992" "$split2" "$rest2"
    a_rps+=("$rps1"); a_p99+=("$p991"); b_rps+=("$rps2"); b_p99+=("$p992")
    if even "$split1" && even "$split2"; then
      ea_rps+=("$rps1"); ea_p99+=("$p991"); eb_rps+=("$rps2"); eb_p99+=("$p992")
    fi
  done
  local ar ap br bp
  ar=$(printf '%s\n' "${a_rps[@]}" | median); ap=$(printf '%s\n' "${a_p99[@]}" | median)
  br=$(printf '%s\n' "${b_rps[@]}" | median); bp=$(printf '%s\n' "${b_p99[@]}" | median)
  printf '  median %-21s %10.0f req/s  p99 %7.2f ms\n' "$1" "$ar" "$ap"
  printf '  median %-21s %10.0f req/s  p99 %7.2f ms\n' "$5" "$br" "$bp"
  ratio "$1" "$5" "$ar" "$br" "$ap" "$bp" ""
  if ((${#ea_rps[@]} > 0)); then
    ratio "$1" "$5" "$(printf '%s\n' "${ea_rps[@]}" | median)" "$(printf '%s\n' "${eb_rps[@]}" | median)" \
      "$(printf '%s\n' "${ea_p99[@]}" | median)" "$(printf '%s\n' "${eb_p99[@]}" | median)" \
      " (the ${#ea_rps[@]} rounds where both split evenly)"
  else
    echo "  no round had both sides split evenly"
  fi
  echo
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
