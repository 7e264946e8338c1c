#!/usr/bin/env bash
# Runs every check and test: formatting, clippy, unit, integration (crash tests
# included), doc tests, and the Python Flight SQL client tests. Safe to run on a fresh machine with the Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."

# Build output goes to ./target, shared with `cargo run -- demo`, unless
# CARGO_TARGET_DIR says otherwise (CI points it at a cache outside the clone).
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

echo "== test virtualenv (.venv)"
# Python engines the tests compare against (tests/python/requirements.txt).
venv=.venv
stamp="$venv/.requirements.sha256"
want=$(sha256sum tests/python/requirements.txt | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/python/requirements.txt
  echo "$want" > "$stamp"
fi
# The Python client (clients/python) under test: reinstalled every run, so the
# tests always import the tree's version. --no-deps: its dependencies are pinned above.
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps ./clients/python
export TEST_PYTHON="$PWD/$venv/bin/python"

echo "== tmux (the dashboard's end-to-end tests run it in a real terminal)"
if ! command -v tmux >/dev/null; then
  started=$(date +%s)
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if command -v apt-get >/dev/null; then
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq tmux >/dev/null
  fi
  command -v tmux >/dev/null || { echo "tmux is required by tests/python/test_dashboard.py: install it"; exit 1; }
  echo "installed tmux in $(( $(date +%s) - started )) s"
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --locked --all-targets -- -D warnings

echo "== cargo test"
# Library, binary and integration tests, then doc tests. Benchmarks are built
# (by clippy above) but only run on demand: see benches/README.md.
cargo test --locked --lib --bins --tests
cargo test --locked --doc

echo "== Flight SQL client tests (pytest: ADBC, pyarrow.flight, pandas, polars)"
# Against a real `quiver serve` that the tests start from the debug build.
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
TEST_QUIVER_BIN="$target_dir/debug/quiver" "$venv/bin/python" -m pytest tests/python -q -p no:cacheprovider
