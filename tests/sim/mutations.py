#!/usr/bin/env python3
"""Does the simulator find real bugs? Each mutation reverts one line that protects an invariant
of the fleet core; the default simulator run (workerd-sim, 200 seeds) must then fail. For each,
prints the first failing seed and the invariant it broke.

Usage: tests/sim/mutations.py [BUILD_DIR [NAME_PART]]
       BUILD_DIR defaults to /tmp/workerd-mutations (the tree is copied there); NAME_PART runs
       only the mutations whose name contains it.
"""
import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# (name, file, the protecting code, what it becomes)
MUTATIONS = [
    ("drain an outgoing worker before its successor is READY",
     "daemon/core/rollout_plan.cpp",
     "if (s.outgoing && s.successor && s.successor_ready) {",
     "if (s.outgoing && s.successor) {"),
    ("restart a crashed slot without its backoff",
     "daemon/core/fleet.cpp",
     "    slot.not_before = now + delay;\n    note(NoteKind::restarting",
     "    slot.not_before = now;\n    note(NoteKind::restarting"),
    ("start successors past max_surge",
     "daemon/core/rollout_plan.cpp",
     "if (surge_used < budget.surge) {",
     "if (true) {"),
    ("a failed rollout keeps the failed spec",
     "daemon/core/fleet_rollout.cpp",
     "if (rollout_.previous_spec) spec_ = std::move(*rollout_.previous_spec);",
     ""),
    ("a draining worker is never SIGKILLed at graceful_timeout",
     "daemon/core/fleet_rollout.cpp",
     "    w.kill_at = now + spec_.graceful_timeout;\n    // reuse_port",
     "    // reuse_port"),
    ("a successor hung at boot does not hold its slot (the bug found in issue 14)",
     "daemon/core/fleet_rollout.cpp",
     "if (w.generation == generation_ && w.phase != Phase::retiring && holds_slot(w)) return &w;",
     "if (w.generation == generation_ && (w.phase == Phase::booting || w.phase == Phase::ready || w.phase == Phase::spawning)) return &w;"),
    ("a successor whose start failed is retried only at some unrelated deadline (the bug found in issue 14)",
     "daemon/core/fleet.cpp",
     "    wake_at(slot.not_before);  // a successor's slot has no deadline of its own: try again then",
     ""),
    ("scaling down leaves the surplus workers running",
     "daemon/core/fleet_rollout.cpp",
     "            drain(w, StopReason::scale_down, now);",
     "            (void)w;"),
]


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "/tmp/workerd-mutations"
    src = os.path.join(build, "src")
    failures = 0
    only = sys.argv[2] if len(sys.argv) > 2 else ""
    for name, path, old, new in MUTATIONS:
        if only not in name:
            continue
        shutil.rmtree(src, ignore_errors=True)
        shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns("build*", ".git"))
        target = os.path.join(src, path)
        text = open(target).read()
        if text.count(old) != 1:
            print(f"{name}: the protecting code is not in {path} once; update tests/sim/mutations.py")
            failures += 1
            continue
        open(target, "w").write(text.replace(old, new))
        # A build directory per mutation: a copied tree keeps the files' times, so one shared
        # build would keep the previous mutation's objects.
        out = os.path.join(build, "out-%d" % MUTATIONS.index((name, path, old, new)))
        subprocess.run(["cmake", "-S", src, "-B", out, "-G", "Ninja", "-DCMAKE_BUILD_TYPE=RelWithDebInfo"],
                       check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["cmake", "--build", out, "--target", "workerd-sim"], check=True, stdout=subprocess.DEVNULL)
        run = subprocess.run([os.path.join(out, "tests", "workerd-sim")], capture_output=True, text=True)
        seeds = re.findall(r"^seed (\d+):.*FAILED", run.stdout, re.M)
        broken = re.findall(r"invariant broken at [^:]+: (.*)", run.stdout)
        summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
        if run.returncode == 0 or not seeds:
            print(f"NOT FOUND  {name}: every seed passed ({summary})")
            failures += 1
        else:
            print(f"found      {name}: {len(seeds)} of 200 seeds fail, first seed {seeds[0]}: {broken[0]}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
