#!/usr/bin/env bash
# Runs every check and test: formatting, clippy, unit, integration (crash tests
# included) and doc tests. Safe to run on a fresh machine with the Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."

# Build output goes to ./target, shared with `cargo run -- demo`, unless
# CARGO_TARGET_DIR says otherwise (CI points it at a cache outside the clone).
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --locked --all-targets -- -D warnings

echo "== cargo test"
# Library, binary and integration tests, then doc tests. Benchmarks are built
# (by clippy above) but only run on demand: see benches/README.md.
cargo test --locked --lib --bins --tests
cargo test --locked --doc
