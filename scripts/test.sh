#!/usr/bin/env bash
# The test suite: formatting, lints, every crate's tests (the conformance suite
# runs every server model), doc tests, and a build of the benchmarks so they never rot.
# Usage: scripts/test.sh            (what CI runs, and what README.md tells you to run)
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings

step "tests: cargo nextest run --workspace"
# nextest runs each test in its own process: the fork and prefork tests never
# share a process with another test. Installed from crates.io if missing.
if ! cargo nextest --version >/dev/null 2>&1; then
    cargo install --locked cargo-nextest
fi
cargo nextest run --workspace --no-fail-fast

step "doc tests"
cargo test --workspace --doc

step "benchmarks build (cargo bench --no-run), so they never rot"
cargo bench -p socklab-benches --no-run
