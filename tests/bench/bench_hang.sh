#!/usr/bin/env bash
# From a hung worker to its replacement serving: one worker each, the FastAPI app of
# tests/data/apps/hang_app.py, whose `async def` route /block calls time.sleep(30) and so stalls
# the worker's event loop (the classic mistake). Measured from sending GET /block to the first
# 200 from /whoami answered by a different pid (a request already waiting in the listen
# queue is answered as soon as the fresh worker accepts it; a refused or reset one is sent
# again at once):
#   1. workerd + workerd_uvicorn, `timeout: 2s`, `heartbeat: required` (the rest default: a hung
#      worker gets SIGTERM, then SIGKILL after kill_timeout, 5s)
#   2. the same with `timeout_signal: SIGABRT`, as docs/python.md recommends
#   3. gunicorn -k uvicorn.workers.UvicornWorker -w 1 --timeout 2
# (uvicorn --workers replaces no worker: 0.17's supervisor only starts them, so it is left out.)
# Each worker has been up MIN_UPTIME s (default 11: past workerd's backoff.reset_after, 10 s)
# when it is hung, so that workerd restarts it at once rather than after a backoff.
#
# Usage: tests/bench/bench_hang.sh [ROUNDS]
set -euo pipefail

ROUNDS=${1:-3}
DURATION=0
MIN_UPTIME=${MIN_UPTIME:-11}
source "$(dirname "$0")/lib.sh"
require gunicorn curl "$WORKERD"
machine
md_begin hang "From a hung worker to a fresh one serving" "$ROUNDS"
HANG_DIR=$ROOT/tests/data/apps

hang_workerd() {  # hang_workerd NAME EXTRA_YAML -> PID PORT: one workerd_uvicorn worker, timeout 2s
  WORKERD_LOG=info start_workerd "$1" "workers: 1
app:
  command: [\"$PY\", \"-m\", \"workerd_uvicorn\", \"hang_app:app\", \"--no-access-log\", \"--log-level\", \"warning\"]
  cwd: $HANG_DIR
  env: {PYTHONPATH: $ROOT/packaging/python}
timeout: 2s
heartbeat: required
$2"
}
read -r W1 P1 < <(hang_workerd default ""); PIDS+=("$W1")
read -r W2 P2 < <(hang_workerd abrt "timeout_signal: SIGABRT"); PIDS+=("$W2")
P3=$(free_port)
"$PY" -m gunicorn -k uvicorn.workers.UvicornWorker -w 1 --timeout 2 -b "127.0.0.1:$P3" \
  --chdir "$HANG_DIR" --log-level warning hang_app:app 2>"$WORK/gunicorn.log" &
G=$!; PIDS+=("$G")
for p in "$P1" "$P2" "$P3"; do wait_http "http://127.0.0.1:$p/healthz"; done

NAMES=("workerd timeout 2s, SIGTERM" "workerd timeout 2s, SIGABRT" "gunicorn --timeout 2")
PORTS=("$P1" "$P2" "$P3")
LOGS=("$WORK/workerd-default.log" "$WORK/workerd-abrt.log" "$WORK/gunicorn.log")
CMDS=("\`workerd start SPEC\`: \`workers: 1\`, \`app.command: [python3, -m, workerd_uvicorn, hang_app:app, --no-access-log, --log-level, warning]\`, \`timeout: 2s\`, \`heartbeat: required\` (\`kill_timeout\` 5s by default)"
      "the same with \`timeout_signal: SIGABRT\`"
      "\`python3 -m gunicorn -k uvicorn.workers.UvicornWorker -w 1 --timeout 2 -b 127.0.0.1:PORT --chdir tests/data/apps --log-level warning hang_app:app\`")

# hang_once PORT: hangs the worker, prints "SECONDS OLD_PID NEW_PID" (SECONDS "-" if no other
# pid answered within 45 s).
hang_once() {
  timeout 60 "$PY" - "$1" <<'PY'
import json, socket, sys, time
port = int(sys.argv[1])

def whoami(timeout):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(b"GET /whoami HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return json.loads(body)["pid"] if head.startswith(b"HTTP/1.1 200") else None

for attempt in range(100):  # the worker may be (re)starting
    try:
        old = whoami(5)
        if old is not None:
            break
    except (OSError, ValueError):
        pass
    time.sleep(0.1)
else:
    sys.exit("no answer from /whoami")
blocker = socket.create_connection(("127.0.0.1", port))
t0 = time.monotonic()
blocker.sendall(b"GET /block HTTP/1.1\r\nHost: bench\r\n\r\n")
time.sleep(0.2)  # the worker is in time.sleep(30) by now
while (left := 45 - (time.monotonic() - t0)) > 0:
    try:
        pid = whoami(left)
    except (OSError, ValueError):
        pid = None
    if pid is not None and pid != old:
        print(f"{time.monotonic() - t0:.3f} {old} {pid}")
        break
    time.sleep(0.01)
else:
    print(f"- {old} -")
PY
}

say "== hung worker to replacement serving: 1 worker each, GET /block (time.sleep(30) in async def), $ROUNDS rounds"
declare -A T READY HUNG
n=${#NAMES[@]}
for i in $(seq 0 $((n - 1))); do READY[$i]=$(date +%s); done
for r in $(seq "$ROUNDS"); do
  for i in $(seq 0 $((n - 1))); do
    wait_s=$((READY[$i] + MIN_UPTIME - $(date +%s)))
    ((wait_s > 0)) && sleep "$wait_s"
    out=$(hang_once "${PORTS[$i]}") || { tail -20 "${LOGS[$i]}" >&2; exit 1; }
    read -r secs old new <<<"$out"
    READY[$i]=$(date +%s)
    T[$i,$r]=$secs
    HUNG[$i]+=" $old "
    say "$(printf '  round %d %-32s %s s (pid %s -> %s)' "$r" "${NAMES[$i]}" "$secs" "$old" "$new")"
  done
done

md "One worker each, so nothing serves while it is hung: the time is the outage. Measured from"
md "sending \`GET /block\` (an \`async def\` route calling \`time.sleep(30)\`, tests/data/apps/hang_app.py)"
md "to the first \`200\` from \`/whoami\` answered by a new pid; each worker has been up ${MIN_UPTIME} s when it"
md "is hung (past workerd's \`backoff.reset_after\`, so it is restarted at once). $ROUNDS rounds, alternating."
md ""
# judged LOG: the pids the supervisor judged hung, from its log.
judged() {
  sed -nE 's/.*worker [0-9]+ \(pid ([0-9]+), gen [0-9]+\) sent no heartbeat.*/\1/p; s/.*WORKER TIMEOUT \(pid:([0-9]+)\).*/\1/p' "$1" | sort -u
}
md "| supervisor | median s | each round, s | vs ${NAMES[$((n - 1))]} | workers killed that were not hung |"
md "| --- | ---: | --- | ---: | ---: |"
declare -a MED EACH
for i in $(seq 0 $((n - 1))); do
  xs=(); each=""
  for r in $(seq "$ROUNDS"); do each+="${T[$i,$r]}, "; [[ ${T[$i,$r]} != - ]] && xs+=("${T[$i,$r]}"); done
  MED[$i]=$( ((${#xs[@]})) && medianof "${xs[@]}" || echo "-")
  EACH[$i]=${each%, }
done
say ""
for i in $(seq 0 $((n - 1))); do
  say "$(printf '  median %-31s %s s  (%sx %s)' "${NAMES[$i]}" "${MED[$i]}" "$(div "${MED[$i]}" "${MED[$((n - 1))]}")" "${NAMES[$((n - 1))]}")"
  sp=0
  for p in $(judged "${LOGS[$i]}"); do [[ ${HUNG[$i]} == *" $p "* ]] || sp=$((sp + 1)); done
  say "  ${NAMES[$i]}: $sp worker(s) judged hung that had not been sent /block"
  md "| ${NAMES[$i]} | $(div "${MED[$i]}" 1 %.2f) | ${EACH[$i]} | **$(div "${MED[$i]}" "${MED[$((n - 1))]}")×** | $sp |"
done
say ""
say "what the supervisors logged (last round):"
for i in $(seq 0 $((n - 1))); do
  while IFS= read -r line; do say "  ${NAMES[$i]}: $line"; done < <(
    grep -E 'heartbeat|SIG|TIMEOUT|Booting|restarting|exited|killed' "${LOGS[$i]}" | tail -3 || true)
done
md_servers_end
