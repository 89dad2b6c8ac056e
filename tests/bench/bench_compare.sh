#!/usr/bin/env bash
# workerd against an earlier workerd: the bundled worker (2 workers) on /healthz, built from
# git revision REV and from this checkout, side by side in one run under the same load.
# For checking that a change costs nothing on the request path (the worker protocol's
# per-request statistics, say).
#
# Usage: tests/bench/bench_compare.sh REV [ROUNDS] [SECONDS] [PATH]
#        REV is built in a temporary git worktree (workerd only); PATH defaults to /healthz.
set -euo pipefail

REV=${1:?usage: bench_compare.sh REV [ROUNDS] [SECONDS] [PATH]}
ROUNDS=${2:-5}
DURATION=${3:-10}
URL_PATH=${4:-/healthz}
source "$(dirname "$0")/lib.sh"
require wrk ss curl git cmake "$WORKERD"

BASE_SRC=$WORK/base-src
git -C "$ROOT" worktree add --detach --quiet "$BASE_SRC" "$REV"
trap 'git -C "$ROOT" worktree remove --force "$BASE_SRC" 2>/dev/null || true; cleanup' EXIT
echo "building $REV ($(git -C "$BASE_SRC" log -1 --format='%h %s'))"
cmake -S "$BASE_SRC" -B "$WORK/base-build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$WORK/base-build" --target workerd >/dev/null
BASE=$WORK/base-build/bin/workerd
machine

start_fleet() {  # start_fleet BINARY NAME -> prints "PID PORT"
  local port
  port=$(free_port)
  cat >"$WORK/$2.yaml" <<YAML
listen: ["127.0.0.1:$port"]
workers: 2
app:
  builtin: {}
control: {socket: $WORK/$2.sock}
log: {level: warn}
YAML
  "$1" start $(allow_root_flag "$1") "$WORK/$2.yaml" 2>"$WORK/$2.log" &
  echo "$! $port"
}

read -r NEW_PID NEW_PORT < <(start_fleet "$WORKERD" new); PIDS+=("$NEW_PID")
read -r OLD_PID OLD_PORT < <(start_fleet "$BASE" old); PIDS+=("$OLD_PID")
wait_http "http://127.0.0.1:$NEW_PORT/healthz"
wait_http "http://127.0.0.1:$OLD_PORT/healthz"
md_begin compare "The worker protocol's cost on the request path" "$REV" "$ROUNDS" "$DURATION" "$URL_PATH"
side "workerd (this checkout)" "http://127.0.0.1:$NEW_PORT$URL_PATH" "$NEW_PORT" "$NEW_PID" \
  "\`workerd start SPEC\` with \`workers: 2\`, \`app: {builtin: {}}\`, built from this checkout"
side "workerd ($REV)" "http://127.0.0.1:$OLD_PORT$URL_PATH" "$OLD_PORT" "$OLD_PID" "the same, built from $REV"
compare "this checkout vs $REV, bundled worker, $URL_PATH, 2 workers each"
md_end
