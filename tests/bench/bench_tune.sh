#!/usr/bin/env bash
# `workerd tune` against a brute-force sweep, on tests/data/apps/tune_app.py's three kinds of
# route: /cpu (~20 ms of CPU on the event loop), /io (awaits 50 ms) and /blocking (a `def` route
# sleeping 50 ms in the thread pool). For each route:
#   1. `workerd tune --json` with its default ladder (1 up to 2 x CPUs + 1, stopping at a plateau):
#      its recommendation;
#   2. `workerd tune --json --workers 1-8`: the sweep, every count with the same generator and
#      the same settings, each count's sustainable rate under the objective;
# and checks, on the sweep's rates, that (a) the recommended count reaches at least 0.9 x the
# best rate of the sweep and (b) no smaller count does (the recommendation is the smallest count
# within 10% of the best). The sweep's rates are measurements too, each found by the same search
# to within its 5% precision: a count within 5 points of the 90% line is a tie, so the verdict
# allows that margin (strict verdicts are printed beside it). Then the rules of thumb (1 x CPUs
# for CPU-bound work, 1.5 x for mixed, 2 x for I/O, gunicorn's 2 x CPUs + 1) with their rate,
# p99 and memory from the sweep, next to the recommendation: what the folklore would have cost.
#
# Usage: tests/bench/bench_tune.sh [STEP_SECONDS] [ROUTE...]
#        (default: 4 s steps, routes cpu io blocking; each route takes about 5 minutes)
# Every process started here is stopped by its pid on exit, even on failure (`workerd tune`
# stops the fleet it started when it gets SIGTERM). Exits 1 when a route's check fails.
set -euo pipefail

STEP=${1:-4}
shift || true
ROUTES=("$@")
((${#ROUTES[@]})) || ROUTES=(cpu io blocking)
ROUNDS=1
DURATION=$STEP
PROBE=2              # s, each count's closed-loop probe
MAX_STEPS=5          # open-loop steps per count (tune's default)
SLO="p99=250ms"
SWEEP="1-8"
SWEEP_COUNTS=8
MARGIN=0.05          # the search's precision (SearchLimits::precision)
source "$(dirname "$0")/lib.sh"
require curl "$WORKERD"
for r in "${ROUTES[@]}"; do
  [[ $r == cpu || $r == io || $r == blocking ]] || { echo "unknown route $r (cpu, io, blocking)" >&2; exit 2; }
done
LADDER_MAX=$((2 * $(nproc) + 1 > 4 ? 2 * $(nproc) + 1 : 4))   # the ladder's length is at most its top
TUNE_ROOT=$([ "$(id -u)" -eq 0 ] && echo --allow-root || true)
machine
md_begin tune "Tuning: workerd tune vs a brute-force sweep" "$STEP" "${ROUTES[@]}"

cat >"$WORK/tune_app.yaml" <<YAML
# tune_app under workerd_uvicorn; \`workerd tune\` replaces listen, workers and control.
listen: ["127.0.0.1:$(free_port)"]
workers: 1
app:
  command: ["$PY", "-m", "workerd_uvicorn", "tune_app:app", "--no-access-log", "--log-level", "warning"]
  cwd: $ROOT/tests/data/apps
  env: {PYTHONPATH: $ROOT/packaging/python, PYTHONUNBUFFERED: "1"}
# uvicorn accepts greedily: on a shared accept queue one worker can take most of the
# connections, and a count would be measured by that luck (docs/spec.md, reuse_port).
reuse_port: true
log: {level: warn}
YAML

# forget PID: drops a process that has exited and been waited for from PIDS (its pid may be
# reused: it must not be signalled again).
forget() { local keep=() p; for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done; PIDS=("${keep[@]}"); }

# run_tune NAME COUNTS ROUTE [ARGS...]: `workerd tune --json` on ROUTE; the JSON to $WORK/NAME.json,
# the progress (stderr) to $WORK/tune-NAME.log and, indented, to stderr. Bounded by the most its
# steps can take (COUNTS counts, each a probe and MAX_STEPS steps, each step with up to 5 s of
# waiting for the queue to drain) plus a minute for start-up and scaling.
run_tune() {
  local name=$1 counts=$2 route=$3 t0=$SECONDS rc=0 pid; shift 3
  local limit=$((60 + counts * (PROBE + MAX_STEPS * (STEP + 6))))
  timeout --kill-after=30 "$limit" "$WORKERD" tune --json $TUNE_ROOT --url "/$route" --slo "$SLO" \
    --step "${STEP}s" --probe "${PROBE}s" --max-steps "$MAX_STEPS" "$@" "$WORK/tune_app.yaml" \
    >"$WORK/$name.json" 2> >(tee "$WORK/tune-$name.log" | sed 's/^/    /' >&2) &
  pid=$!; PIDS+=("$pid")
  wait "$pid" || rc=$?
  forget "$pid"
  echo "$((SECONDS - t0))" >"$WORK/$name.seconds"
  if ((rc != 0)); then say "  $name: workerd tune failed (exit $rc, limit ${limit}s)"; return 1; fi
}

for route in "${ROUTES[@]}"; do
  say "== /$route: workerd tune --url /$route --slo $SLO --step ${STEP}s --probe ${PROBE}s --max-steps $MAX_STEPS"
  run_tune "$route-tune" "$LADDER_MAX" "$route" || continue
  say "   recommendation: $("$PY" -c 'import json,sys; r=json.load(open(sys.argv[1]))["recommendation"]; print(r["workers"], "workers,", r["rate"], "req/s;", "; ".join(r["reasons"]))' "$WORK/$route-tune.json")"
  say "== /$route: the sweep, the same with --workers $SWEEP"
  run_tune "$route-sweep" "$SWEEP_COUNTS" "$route" --workers "$SWEEP" || true
done
say "load average (1, 5, 15 min) after the runs: $(cut -d' ' -f1-3 /proc/loadavg)"
say ""

# --- the checks and the tables, from the JSONs -----------------------------------------------------
set +e
"$PY" - "$WORK" "$MARGIN" "$WORK/verdict.md" "${ROUTES[@]}" >"$WORK/verdict.txt" <<'PY'
import json, math, sys

work, margin, md_path, routes = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4:]
WITHIN = 0.9
out, md, failed = [], [], False


def load(name):
    try:
        with open(f"{work}/{name}.json") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None   # that run failed (said above)


def seconds(name):
    try:
        with open(f"{work}/{name}.seconds") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 0


def mib(run, n):
    return run["pss_per_worker_bytes"] * n / 1048576 if run and run["pss_per_worker_bytes"] else None


def fmt(v, f="{:.0f}", none="-"):
    return none if v is None else f.format(v)


check_rows, folk_rows, sweep_rows = [], [], []
for route in routes:
    tune, sweep = load(f"{route}-tune"), load(f"{route}-sweep")
    if tune is None or sweep is None:
        out.append(f"/{route}: FAIL: the {'tune' if tune is None else 'sweep'} run failed")
        check_rows.append(f"| /{route} | - | - | - | - | - | - | - | **FAIL** (a run failed) | - | - |")
        failed = True
        continue
    rec = tune["recommendation"]["workers"]
    cpus = sweep["budget"]["cpus"] or 1
    runs = {r["workers"]: r for r in sweep["runs"]}
    rate = {n: (r["rate"] or 0.0) for n, r in runs.items()}
    best_n = max(rate, key=lambda n: (rate[n], -n)) if rate else None
    best = rate.get(best_n, 0.0)
    if not best or rec is None:
        why = 'no recommendation' if rec is None else 'nothing met the objective in the sweep'
        out.append(f"/{route}: FAIL: {why}")
        check_rows.append(f"| /{route} | {rec or '-'} | - | - | - | - | - | - | **FAIL** ({why}) | - | - |")
        failed = True
        continue
    r_rate = rate.get(rec, 0.0)
    smallest = min(n for n in rate if rate[n] >= WITHIN * best)
    smallest_m = min(n for n in rate if rate[n] >= (WITHIN + margin) * best)
    a_strict, a_ok = r_rate >= WITHIN * best, r_rate >= (WITHIN - margin) * best
    b_strict, b_ok = rec <= smallest, rec <= smallest_m
    ok = a_ok and b_ok
    failed |= not ok
    verdict = "PASS" if ok else "FAIL"
    strict = "PASS" if a_strict and b_strict else "FAIL"
    out.append(f"/{route}: tune recommends {rec} ({tune['recommendation']['workload'] or '?'} workload; "
               f"its own run: {tune['recommendation']['rate']:.0f} req/s); in the sweep {rec} reach "
               f"{r_rate:.0f} req/s = {r_rate / best:.2f} x the best ({best:.0f} at {best_n}); the smallest count "
               f"within 10% is {smallest} ({smallest_m} within {100 * (1 - WITHIN - margin):.0f}%): "
               f"(a) {'ok' if a_ok else 'NO'}, (b) {'ok' if b_ok else 'NO'}: {verdict} (strict: {strict})")
    check_rows.append(f"| /{route} | **{rec}** ({tune['recommendation']['workload'] or '-'}) | {r_rate:.0f} "
                      f"| {best:.0f} ({best_n}) | {r_rate / best:.2f}× | {smallest} | "
                      f"{'✓' if a_strict else ('≈' if a_ok else '✗')} | {'✓' if b_strict else ('≈' if b_ok else '✗')} "
                      f"| **{verdict}** | {seconds(route + '-tune')} s ({len(tune['runs'])} counts) "
                      f"| {seconds(route + '-sweep')} s |")
    sweep_rows.append(f"| /{route} | " + " | ".join(
        (f"**{rate[n]:.0f}**" if n == rec else f"{rate[n]:.0f}") if n in rate and runs[n]["rate"] else "-"
        for n in range(1, 9)) + " |")
    rules = [("tune's recommendation", rec),
             ("1 × CPUs (`workload: cpu`)", max(1, math.floor(1 * cpus))),
             ("1.5 × CPUs (`mixed`, the default)", max(1, math.floor(1.5 * cpus))),
             ("2 × CPUs (`io`)", max(1, math.floor(2 * cpus))),
             ("2 × CPUs + 1 (gunicorn)", max(1, math.floor(2 * cpus + 1))),
             ("best of the sweep", best_n)]
    pick = {"cpu": 1, "io": 3, "blocking": 3}[route]   # the rule a reader would pick: blocking waits on I/O
    for i, (rule, n) in enumerate(rules):
        run = runs.get(n)
        rr = run["rate"] if run else None
        star = " ← the rule for this kind of route" if i == pick else ""
        folk_rows.append(f"| /{route} | {rule}{star} | {n} | {fmt(rr)} | {fmt(rr / best if rr else None, '{:.2f}×')} "
                         f"| {fmt(run['p99_ms'] if run else None, '{:.1f}')} | {fmt(mib(run, n))} |")
        out.append(f"    {rule:36s} {n} workers: {fmt(rr):>6} req/s ({fmt(rr / best if rr else None, '{:.2f}')} of best), "
                   f"p99 {fmt(run['p99_ms'] if run else None, '{:.1f}')} ms, {fmt(mib(run, n))} MiB")

md += ["### The recommendation against the sweep", "",
       "| route | tune recommends (workload) | its req/s in the sweep | sweep best (workers) | vs best "
       "| smallest count within 10% | (a) ≥ 0.9× best | (b) no smaller one within 10% | verdict | tune took | sweep took |",
       "| --- | --- | ---: | ---: | ---: | ---: | :-: | :-: | --- | ---: | ---: |"] + check_rows + [""]
md += ["✓: holds as the issue states it; ≈: holds only within the sweep's own precision (5%: a count whose "
       "rate is within 5 points of the 90% line is a tie); ✗: fails. The verdict allows the margin.", ""]
md += ["### Sustainable req/s by worker count (the sweep; the recommendation in bold)", "",
       "| route | " + " | ".join(str(n) for n in range(1, 9)) + " |",
       "| --- | " + " | ".join("---:" for _ in range(8)) + " |"] + sweep_rows + [""]
md += ["### The rules of thumb, measured (rates, p99 and memory from the sweep)", "",
       "| route | rule | workers | req/s | vs best | p99 ms | memory MiB (PSS × workers) |",
       "| --- | --- | ---: | ---: | ---: | ---: | ---: |"] + folk_rows + [""]
with open(md_path, "w") as f:
    f.write("\n".join(md) + "\n")
print("\n".join(out))
sys.exit(1 if failed else 0)
PY
CHECK=$?
set -e
while IFS= read -r line; do say "$line"; done <"$WORK/verdict.txt"
md "$(cat "$WORK/verdict.md")"
md "Settings: \`workerd tune --json --url /ROUTE --slo $SLO --step ${STEP}s --probe ${PROBE}s --max-steps $MAX_STEPS SPEC\` (the default ladder, which stops at a plateau), and the sweep, the same with \`--workers $SWEEP\`; the generator's defaults otherwise (256 connections, 1 thread). The rate at a count is the highest offered (open-loop) rate at which p99 ≤ 250 ms with under 0.1% errors; p99 is measured at that rate, memory is the PSS per worker under that load times the count."
md ""
md "App: \`tests/data/apps/tune_app.py\` under \`workerd_uvicorn\` with \`reuse_port: true\` (FastAPI $(dpkg-query -W -f='${Version}' python3-fastapi 2>/dev/null || echo '?'), uvicorn $(dpkg-query -W -f='${Version}' python3-uvicorn 2>/dev/null || echo '?')): /cpu burns 20 ms of CPU in an \`async def\`, /io awaits \`asyncio.sleep(0.05)\`, /blocking is a \`def\` route with \`time.sleep(0.05)\` in the thread pool."
md ""
md_end
if [ -n "${BENCH_RESULTS:-}" ]; then cp "$WORK"/*.json "$BENCH_RESULTS/logs/tune/" 2>/dev/null || true; fi
cat "$WORK/verdict.md"
exit "$CHECK"
