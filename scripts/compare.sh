#!/usr/bin/env bash
# The main job: build socklab in release mode, run every server model through
# every scenario, and write results/<date>-<host>/ (report.md, charts/*.svg,
# results.json, results.csv, hdr/*.hlog); results/latest points at it.
#
#   scripts/compare.sh                       quick matrix (a few minutes on 2 cores)
#   scripts/compare.sh --full                everything: 10,000 connections, 5 repeats, callgrind
#   scripts/compare.sh --models thread,nonblocking --scenarios scaling,churn
#   scripts/compare.sh --help                every option
#
# strace (for syscalls per request) is used when installed: apt-get install strace.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet --bin socklab
export SOCKLAB_COMMAND="scripts/compare.sh${*:+ $*}"
exec target/release/socklab compare "$@"
