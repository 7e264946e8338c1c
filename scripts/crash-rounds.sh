#!/usr/bin/env bash
# Kill -9 the pipeline at random points, ROUNDS times (default 200), then check
# that every acknowledged event is in events.* exactly once and that every row
# of hot.* is there too. Not part of CI (it takes a while); prints a tally.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-200}"
# CRASH_PROFILE=debug reuses the test build instead of compiling a release one.
profile=(--release)
[ "${CRASH_PROFILE:-release}" = debug ] && profile=()
QUIVER_CRASH_ROUNDS="$rounds" cargo test "${profile[@]}" --locked --test it \
  crash::kill_nine_at_random_points -- --exact --nocapture 2>&1 | grep -E "TALLY|acknowledged per round|test result|panicked"
