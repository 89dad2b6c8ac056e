#!/usr/bin/env bash
# System calls per request: workerd + bundled worker (2 workers) vs nginx (2 workers), the same
# servers as bench_core.sh's first group (start_builtin_and_nginx in lib.sh: nginx with
# sendfile, tcp_nopush, open_file_cache, no access log), on /healthz and on static files of
# 1 KiB, 100 KiB and 10 MiB. For each URL and server, `strace -c -f` is attached to every worker
# process (the children of the server holding its port), a fixed number of GET requests is sent
# over CONNECTIONS keep-alive connections (a Python http.client per connection, each in its own
# thread, each doing its share one request after the other; every answer checked: status 200
# and, for the files, the file's length), strace is stopped (SIGINT) and its counts divided by
# the number of requests. Nothing is subtracted: what the workers did while idle (heartbeats,
# timers) is counted too, and it is negligible next to the requests. strace slows the servers
# down a lot; only the counts mean anything here, not the time.
#
# Usage: tests/bench/bench_syscalls.sh [REQUESTS] [LARGE_REQUESTS] [CONNECTIONS]
#        (defaults: 20000 requests for /healthz, 1 KiB and 100 KiB, 200 for 10 MiB, over 4
#        connections)
# Every process started here is stopped by its pid on exit, even on failure.
set -euo pipefail

REQUESTS=${1:-20000}
LARGE_REQUESTS=${2:-200}
CONNS=${3:-4}
# shellcheck disable=SC2034  # lib.sh expects them; there is no timed load here
ROUNDS=1; DURATION=0
source "$(dirname "$0")/lib.sh"
require strace nginx ss curl "$WORKERD"
machine
md_begin syscalls "System calls per request" "$REQUESTS" "$LARGE_REQUESTS" "$CONNS"
start_builtin_and_nginx

# The client: client.py PORT PATH N CONNECTIONS SIZE sends N GETs of PATH over CONNECTIONS
# keep-alive connections (threads), checks each answer (status 200; the body's length when
# SIZE >= 0) and prints "REQUESTS CONNECTIONS_OPENED" (more connections than asked: the server
# closed some, and http.client opened new ones).
CLIENT=$WORK/client.py
cat >"$CLIENT" <<'PY'
import http.client, sys, threading
port, path, n, conns, size = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
lock = threading.Lock()
opened, done, errors = [0], [0], []

class Conn(http.client.HTTPConnection):
    def connect(self):
        with lock:
            opened[0] += 1
        super().connect()

def run(k):
    c = Conn("127.0.0.1", port, timeout=60)
    try:
        for _ in range(k):
            c.request("GET", path)
            r = c.getresponse()
            body = r.read()
            if r.status != 200 or (size >= 0 and len(body) != size):
                raise RuntimeError(f"{path}: status {r.status}, {len(body)} bytes")
            with lock:
                done[0] += 1
    except Exception as e:  # reported below; the exit status says it
        errors.append(e)
    finally:
        c.close()

threads = [threading.Thread(target=run, args=(n // conns + (i < n % conns),)) for i in range(conns)]
for t in threads:
    t.start()
for t in threads:
    t.join()
for e in errors:
    print(e, file=sys.stderr)
print(done[0], opened[0])
sys.exit(1 if errors or done[0] != n else 0)
PY

# trace OUT PORT MASTER PATH N SIZE: strace -c -f on every worker of MASTER while `client` sends
# N requests (client.py, at most 10 minutes); strace's summary in OUT, the client's line in
# OUT.client.
trace() {
  local out=$1 port=$2 master=$3 path=$4 n=$5 size=$6 w spid attached=0 after
  local -a ws args=()
  mapfile -t ws < <(workers_of "$port" "$master")
  ((${#ws[@]})) || { echo "no worker holds port $port" >&2; return 1; }
  for w in "${ws[@]}"; do args+=(-p "$w"); done
  : >"$out.log"
  strace -c -f -o "$out" "${args[@]}" 2>>"$out.log" &
  spid=$!; PIDS+=("$spid")
  for _ in $(seq 200); do   # up to 20 s for strace to attach to every worker
    attached=1
    for w in "${ws[@]}"; do grep -q "Process $w attached" "$out.log" || attached=0; done
    ((attached)) && break
    running "$spid" || break
    sleep 0.1
  done
  ((attached)) || { echo "strace did not attach to ${ws[*]}:" >&2; cat "$out.log" >&2; return 1; }
  timeout 600 "$PY" "$CLIENT" "$port" "$path" "$n" "$CONNS" "$size" >"$out.client"
  kill -INT "$spid" 2>/dev/null || true   # strace detaches and writes its summary
  for _ in $(seq 100); do running "$spid" || break; sleep 0.1; done
  stop "$spid"   # reaps it (or, had it hung, stops it)
  after=$(workers_of "$port" "$master" | tr '\n' ' ')
  [ "$after" = "$(printf '%s ' "${ws[@]}")" ] || say "  note: workers were ${ws[*]} before, $after after"
  [ -s "$out" ] || { echo "no strace summary in $out" >&2; cat "$out.log" >&2; return 1; }
}

# per C N: C/N with 2 decimals, "<0.01" when C is not 0 but rounds to it, "-" when C is 0.
per() { awk -v c="$1" -v n="$2" 'BEGIN {if (c+0 == 0) print "-"; else if (c/n < 0.005) print "<0.01"; else printf "%.2f\n", c/n}'; }

# counts FILE: "syscall calls errors" per line from strace -c's table (the total line left out;
# errors: the calls that failed, EAGAIN mostly).
counts() { awk '/^-+ -+/ {sep++; next} sep == 1 && NF >= 5 {print $NF, $4, (NF >= 6 ? $5 : 0)}' "$1"; }

NAMES=("workerd+builtin" "nginx")
PORTS=("$BI_PORT" "$NG_PORT")
MASTERS=("$BI_PID" "$NG_PID")
CMDS=("$BI_CMD" "$NG_CMD")
URLS=(/healthz /small.html /100k.bin /10m.bin)
LABELS=("health check" "1 KiB file" "100 KiB file" "10 MiB file")
SIZES=(-1 "$(stat -c %s "$WORK/static/small.html")" 102400 10485760)
declare -A CALLS ERRS TOTAL OPENED NREQ
SEEN=" "
say "== system calls per request (strace -c -f on every worker), $CONNS keep-alive connections"
for u in "${!URLS[@]}"; do
  n=$REQUESTS; [ "${URLS[$u]}" = /10m.bin ] && n=$LARGE_REQUESTS
  NREQ[$u]=$n
  for s in 0 1; do
    out=$WORK/strace-$s-$u.txt
    trace "$out" "${PORTS[$s]}" "${MASTERS[$s]}" "${URLS[$u]}" "$n" "${SIZES[$u]}"
    read -r _ "OPENED[$s,$u]" <"$out.client"
    TOTAL[$s,$u]=0
    while read -r name calls errs; do
      CALLS[$s,$u,$name]=$calls; ERRS[$s,$u,$name]=$errs
      TOTAL[$s,$u]=$((TOTAL[$s,$u] + calls))
      [[ $SEEN == *" $name "* ]] || SEEN+="$name "
    done < <(counts "$out")
  done
  say "${LABELS[$u]} (${URLS[$u]}): $n requests; connections opened: ${OPENED[0,$u]} (workerd+builtin), ${OPENED[1,$u]} (nginx)"
  say "$(printf '  %-22s %16s %8s %10s %8s' "calls per request" "${NAMES[0]}" "failed" "${NAMES[1]}" "failed")"
  for name in $SEEN; do
    a=${CALLS[0,$u,$name]:-0}; b=${CALLS[1,$u,$name]:-0}
    ((a + b)) || continue
    echo "$((a + b)) $name $a ${ERRS[0,$u,$name]:-0} $b ${ERRS[1,$u,$name]:-0}"
  done | sort -k1,1nr -k2,2 | while read -r _ name a ae b be; do
    say "$(printf '  %-22s %16s %8s %10s %8s' "$name" "$(per "$a" "$n")" "$(per "$ae" "$n")" "$(per "$b" "$n")" "$(per "$be" "$n")")"
  done
  say "$(printf '  %-22s %16.2f %8s %10.2f %8s   ratio %sx' total "$(div "${TOTAL[0,$u]}" "$n" %.4f)" "" "$(div "${TOTAL[1,$u]}" "$n" %.4f)" "" "$(div "${TOTAL[0,$u]}" "${TOTAL[1,$u]}")")"
  say ""
done
stop "$BI_PID" "$NG_PID"

md "| URL | requests | connections | ${NAMES[0]}: calls per request | ${NAMES[1]}: calls per request | ratio |"
md "| --- | ---: | ---: | ---: | ---: | ---: |"
for u in "${!URLS[@]}"; do
  n=${NREQ[$u]}
  md "| ${LABELS[$u]} (\`${URLS[$u]}\`) | $n | $CONNS | $(div "${TOTAL[0,$u]}" "$n") | $(div "${TOTAL[1,$u]}" "$n") | **$(div "${TOTAL[0,$u]}" "${TOTAL[1,$u]}")×** |"
done
md ""
md "By system call, calls per request (workerd+builtin / nginx; \"-\" where none):"
md ""
hdr="| system call |"; sep="| --- |"
for u in "${!URLS[@]}"; do hdr+=" ${LABELS[$u]} |"; sep+=" ---: |"; done
md "$hdr" "$sep"
cell() { per "${CALLS[$1,$2,$3]:-0}" "${NREQ[$2]}"; }  # cell S U NAME
for name in $SEEN; do
  t=0; for u in "${!URLS[@]}"; do t=$((t + ${CALLS[0,$u,$name]:-0} + ${CALLS[1,$u,$name]:-0})); done
  row="| \`$name\` |"
  for u in "${!URLS[@]}"; do row+=" $(cell 0 "$u" "$name") / $(cell 1 "$u" "$name") |"; done
  echo "$t $row"
done | sort -k1,1nr | cut -d' ' -f2- | while IFS= read -r row; do md "$row"; done
row="| **total** |"
for u in "${!URLS[@]}"; do row+=" **$(div "${TOTAL[0,$u]}" "${NREQ[$u]}") / $(div "${TOTAL[1,$u]}" "${NREQ[$u]}")** |"; done
md "$row"
md ""
md "For each URL and server: \`strace -c -f -p WORKER1 -p WORKER2\` attached to the server's worker processes, then a fixed number of" \
  "\`GET\`s over $CONNS keep-alive connections (Python \`http.client\`, a thread per connection, one request after the other on each;" \
  "every answer checked), then SIGINT to strace; the counts divided by the number of requests, nothing subtracted." \
  "strace slows both servers down many times over: the counts are what matters, not the time."
md_servers_end
