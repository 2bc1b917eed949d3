#!/usr/bin/env bash
# Is the load generator accurate and not the bottleneck? (issue #4's benchmark)
#
#  1. the loopback floor: sockperf ping-pong --tcp --full-rtt p50, server on CPU 0,
#     client on CPU 1;
#  2. socklab load at 1 connection against `socklab serve nonblocking`, pinned the
#     same way: its p50 round trip next to the floor;
#  3. at 100 connections: CPU seconds (user + system) used by the load generator and
#     by the server over the same interval (the load generator's whole run, from
#     /proc);
#  4. at 100 connections, counted: the load generator's syscalls per request
#     (strace -c over a run of exactly 20,000 requests).
# Each timed measurement is repeated REPEATS times (default 5), interleaved; medians
# with min-max are printed. Needs sockperf (apt-get install sockperf), strace and two
# CPUs.
set -euo pipefail
cd "$(dirname "$0")/.."
REPEATS=${REPEATS:-5}
cargo build --release --quiet --bin socklab
BIN=target/release/socklab
command -v sockperf >/dev/null || { echo "sockperf not installed: apt-get install sockperf" >&2; exit 1; }

ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }   # utime stime, clock ticks
HZ=$(getconf CLK_TCK)
stats() { sort -g | awk '{a[NR]=$1} END {printf "median %s  [%s-%s]  (n=%d)\n", a[int((NR+1)/2)], a[1], a[NR], NR}'; }

floor=(); p50=(); lguser=(); lgsys=(); srvuser=(); srvsys=()
for i in $(seq "$REPEATS"); do
    port=$((20000 + RANDOM % 20000))
    taskset -c 0 sockperf server --tcp -i 127.0.0.1 -p "$port" >/dev/null 2>&1 & sp=$!
    sleep 0.3
    floor+=("$(taskset -c 1 sockperf ping-pong --tcp -i 127.0.0.1 -p "$port" -t 3 -m 64 --full-rtt 2>&1 \
        | awk '/percentile 50.000/ {print $NF}')")
    kill "$sp"; wait "$sp" 2>/dev/null || true

    taskset -c 0 "$BIN" serve nonblocking --tcp 127.0.0.1:0 > /tmp/socklab-check.$$ 2>/dev/null & srv=$!
    sleep 0.3
    addr=$(grep -o 'tcp=[^ ]*' /tmp/socklab-check.$$ | cut -d= -f2)
    p50+=("$(taskset -c 1 "$BIN" load "$addr" --conns 1 --duration 3s --warmup 500ms --json /dev/stdout --quiet \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["latency"]["p50_us"])')")
    before=$(ticks "$srv")
    /usr/bin/time -f "%U %S" -o /tmp/socklab-time.$$ taskset -c 1 "$BIN" load "$addr" --conns 100 --duration 3s --warmup 500ms --quiet
    after=$(ticks "$srv")
    lguser+=("$(awk '{print $1}' /tmp/socklab-time.$$)")
    lgsys+=("$(awk '{print $2}' /tmp/socklab-time.$$)")
    srvuser+=("$(echo "$before $after $HZ" | awk '{printf "%.2f", ($3 - $1) / $5}')")
    srvsys+=("$(echo "$before $after $HZ" | awk '{printf "%.2f", ($4 - $2) / $5}')")
    if [ "$i" = "$REPEATS" ]; then
        taskset -c 1 strace -f -c -o /tmp/socklab-strace.$$ "$BIN" load "$addr" --conns 100 \
            --requests 20000 --warmup 0 --quiet
    fi
    kill -TERM "$srv"; wait "$srv" 2>/dev/null || true
done
per_request() { awk -v s="$1" '$NF == s {printf "%.2f", $4 / 20000}' /tmp/socklab-strace.$$; }
echo "sockperf ping-pong p50 round trip (µs):   $(printf '%s\n' "${floor[@]}" | stats)"
echo "socklab load, 1 conn, p50 round trip (µs): $(printf '%s\n' "${p50[@]}" | stats)"
echo "100 conns, load generator user CPU (s):   $(printf '%s\n' "${lguser[@]}" | stats)"
echo "100 conns, load generator system CPU (s): $(printf '%s\n' "${lgsys[@]}" | stats)"
echo "100 conns, nonblocking server user (s):   $(printf '%s\n' "${srvuser[@]}" | stats)"
echo "100 conns, nonblocking server system (s): $(printf '%s\n' "${srvsys[@]}" | stats)"
echo "100 conns, load generator syscalls/request: sendto $(per_request sendto)," \
    "recvfrom $(per_request recvfrom), epoll_wait $(per_request epoll_wait)"
rm -f /tmp/socklab-check.$$ /tmp/socklab-time.$$ /tmp/socklab-strace.$$
