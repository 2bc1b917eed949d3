#!/usr/bin/env bash
# The main job: build socklab in release mode, run every server model through
# every scenario, and write results/<date>-<host>/ (report.md, charts/*.svg,
# results.json, results.csv, hdr/*.hlog); results/latest points at it.
#
#   scripts/compare.sh                       quick matrix (a few minutes on 2 cores)
#   scripts/compare.sh --full                everything: 10,000 connections, 5 repeats, callgrind
#   scripts/compare.sh --models thread,nonblocking --scenarios scaling,churn
#   scripts/compare.sh --criterion           then the criterion benches (benches/README.md),
#                                            written to <run>/criterion/ and linked from report.md
#   scripts/compare.sh --help                every option
#
# strace (for syscalls per request) is used when installed: apt-get install strace.
set -euo pipefail
cd "$(dirname "$0")/.."

# --criterion is this script's own option; every other argument goes to `socklab compare`.
criterion=false
compare_args=()
for arg in "$@"; do
    if [[ $arg == --criterion ]]; then
        criterion=true
    else
        compare_args+=("$arg")
    fi
done

cargo build --release --quiet --bin socklab
export SOCKLAB_COMMAND="scripts/compare.sh${*:+ $*}"
if ! $criterion; then
    exec target/release/socklab compare "$@"
fi

# `socklab compare` prints one line on stdout: the report it wrote.
report=$(target/release/socklab compare ${compare_args[@]+"${compare_args[@]}"} | tail -n 1)
echo "$report"
run_dir=$(cd "$(dirname "$report")" && pwd)

# The benches run the target/release/socklab built above, one server at a time, after
# the comparison has stopped all of its own. CRITERION_HOME puts criterion's output
# (HTML report included) in the run's directory, beside the numbers it goes with,
# instead of target/criterion/. It must be absolute: cargo runs benches in benches/.
echo "criterion: cargo bench -p socklab-benches (a few minutes)" >&2
CRITERION_HOME="$run_dir/criterion" cargo bench -p socklab-benches

# The report links criterion's output when the run directory holds it.
target/release/socklab report "$run_dir" >/dev/null
echo "criterion report: $run_dir/criterion/report/index.html" >&2
