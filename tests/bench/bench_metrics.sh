#!/usr/bin/env bash
# The metrics endpoint with 64 bundled workers: how long a /metrics scrape takes (target under
# 5 ms), and how much CPU the daemon uses while idle (target under 1% of a core). Now part of
# bench_scale.sh (which make bench runs, at 64 and 256 workers); this runs it at 64 only.
#
# Usage: tests/bench/bench_metrics.sh [IDLE_SECONDS]
exec "$(dirname "$0")/bench_scale.sh" 1 "${1:-10}" 64
