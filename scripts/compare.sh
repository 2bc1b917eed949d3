#!/usr/bin/env bash
# The main job: build socklab in release mode, run every server model through
# every scenario, and write results/<date>-<host>/ (report.md, charts/*.svg,
# results.json, results.csv, hdr/*.hlog); results/latest points at it.
#
#   scripts/compare.sh                       quick matrix (about 7 minutes on 2 cores)
#   scripts/compare.sh --full                everything: 10,000 connections, 5 repeats, callgrind
#   scripts/compare.sh --models thread,nonblocking --scenarios scaling,churn
#   scripts/compare.sh --criterion           then the criterion benches (benches/README.md),
#                                            written to <run>/criterion/ and linked from report.md
#   scripts/compare.sh --help                every option
#
# The tools compare measures with: strace (syscalls per request), sockperf (the
# loopback floor) and, for --full or --callgrind, valgrind (instructions per
# request). Missing ones are installed with apt-get when this runs as root on a
# Debian-like machine (SOCKLAB_NO_INSTALL=1 stops that); otherwise they are named
# with the command that installs them, and the report's "What this run could not
# show" says what their absence left out.
set -euo pipefail
cd "$(dirname "$0")/.."

# The tools this run uses that are not installed, each with what it measures.
missing_tools() {
    local wanted=(strace sockperf) arg
    for arg in "$@"; do
        [[ $arg == --full || $arg == --callgrind ]] && wanted+=(valgrind)
    done
    for tool in "${wanted[@]}"; do
        command -v "$tool" >/dev/null 2>&1 || echo "$tool"
    done
}

what_it_measures() {
    case $1 in
        strace) echo "syscalls per request" ;;
        sockperf) echo "the loopback floor (a bare round trip every latency is read against)" ;;
        valgrind) echo "user-space instructions per request" ;;
    esac
}

install_tools() {
    local missing
    mapfile -t missing < <(missing_tools "$@")
    ((${#missing[@]})) || return 0
    local tool
    if [[ $(id -u) == 0 && -z ${SOCKLAB_NO_INSTALL:-} ]] && command -v apt-get >/dev/null 2>&1; then
        for tool in "${missing[@]}"; do
            echo "compare.sh: installing $tool ($(what_it_measures "$tool")) with apt-get" >&2
        done
        if DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2; then
            return 0
        fi
        echo "compare.sh: apt-get could not install ${missing[*]}; measuring without" >&2
        return 0
    fi
    for tool in "${missing[@]}"; do
        echo "compare.sh: $tool is not installed, so this run does not measure $(what_it_measures "$tool"); install it with: sudo apt-get install $tool" >&2
    done
}

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

case " $* " in
    *" --help "* | *" -h "*) ;;
    *) install_tools "$@" ;;
esac

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
