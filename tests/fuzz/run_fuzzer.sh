#!/usr/bin/env bash
# run_fuzzer.sh FUZZER SECONDS SEED_DIR...: runs FUZZER for SECONDS on the seeds. New inputs go
# to a scratch directory (the checked-in corpora are only read); a crash, leak, sanitizer
# report or timeout fails the run and leaves the input that caused it in ./fuzz-artifacts/.
set -euo pipefail
fuzzer=$1 seconds=$2
shift 2
scratch=$(mktemp -d /tmp/workerd-fuzz-XXXXXX)
trap 'rm -rf "$scratch"' EXIT
artifacts=$PWD/fuzz-artifacts/$(basename "$fuzzer")
mkdir -p "$artifacts"
seeds=()
for dir in "$@"; do [ -d "$dir" ] && seeds+=("$dir"); done
# -timeout: one input taking 10 s is a hang. -rss_limit_mb: growth past 2 GiB is a leak.
"$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
  -print_final_stats=1 -artifact_prefix="$artifacts/" "$scratch" "${seeds[@]}"
