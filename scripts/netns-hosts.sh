#!/usr/bin/env bash
# Load from several client hosts, on one machine: one network namespace per host.
#
#   scripts/netns-hosts.sh [OPTIONS] [-- EXTRA_LOAD_ARGS...]
#   scripts/netns-hosts.sh --model nonblocking --hosts 4 --conns 250 --duration 10s
#
# What it builds (every name carries this script's PID, so parallel runs never meet):
#
#   socklab-nh-PID-br   a "switch" namespace holding the bridge slbrPID and one veth
#                       end per host (slbPIDs, slbPIDh1, ...)
#   socklab-nh-PID-srv  the server:  slePIDs  10.77.0.1/24, `socklab serve MODEL`
#   socklab-nh-PID-h1   host 1:      slePIDh1 10.77.0.2/24, one `socklab load`
#   ...                 host k:      slePIDhk 10.77.0.(k+1)/24
#
# Why the bridge sits in a namespace of its own rather than in the root one: then no
# interface of this run ever appears in the root namespace, so the machine's own
# firewall, bridge netfilter or Docker rules never see the traffic, nothing here can
# route to the outside (the namespaces have no default route and no link out), and
# the subnet 10.77.0.0/24 exists only inside namespaces this run made — two runs at
# once each have their own, with no clash.
#
# Why one `socklab load` process per host, not one process with more connections:
# each process has its own descriptor table (RLIMIT_NOFILE bounds one process, 20,000
# on the development VM) and each source address has its own ~28,000 ephemeral ports
# to one server port (ip_local_port_range 32768-60999). A host namespace gives its
# process both: its own address and its own port space. This is what real client
# hosts give you; docs/LOADGEN.md has the commands for those.
#
# The run: start the server in its namespace and read its announce line; start the K
# loads at once (same duration, so their measured windows overlap); merge their HDR
# interval logs with `socklab load merge`; stop the server (SIGTERM) and read its
# request counter from the line it prints at exit; check the counts agree (the rule
# is printed with the checks). Everything it made is removed by name on exit, also
# when it fails or is interrupted.
#
# Exit status: 0 every check passed, 1 a check failed, 2 bad usage, 77 skipped
# (network namespaces cannot be created here: not root, no `ip`, no netns support).
set -euo pipefail

readonly SUBNET=10.77.0           # a /24 that exists only inside this run's namespaces
readonly SERVER_IP="$SUBNET.1"
readonly PREFIX="socklab-nh-$$"   # namespace names: $PREFIX-br, $PREFIX-srv, $PREFIX-hK
readonly IFP="sl"                 # interface names: ${IFP}b$$h1 etc. (15 bytes at most)
readonly EXIT_SKIP=77             # automake's "skipped"; crates/cli/tests/netns.rs reads it
readonly START_TIMEOUT_S=10       # the server must announce itself within this
readonly STOP_TIMEOUT_S=15        # and exit within this after SIGTERM (grace + 1 s)
readonly LOAD_SLACK_S=60          # a load may run this long past its duration + warmup

usage() {
    cat <<'EOF'
Usage: scripts/netns-hosts.sh [OPTIONS] [-- EXTRA_LOAD_ARGS...]

Runs one `socklab serve MODEL` and K `socklab load` processes, each in its own
network namespace with its own address (a bridge joins them; nothing leaves them),
merges the load generators' HDR logs and checks the request counts agree.

  -m, --model MODEL      server model (default nonblocking)
  -k, --hosts K          client hosts, one `socklab load` each (default 2, at most 250)
  -c, --conns C          connections per host (default 10)
  -d, --duration D       measured window per host (default socklab load's, 10s);
                         with -n, a cap (default 600s)
  -n, --requests N       counted run: exactly N requests per host, no warm-up, so the
                         server's counter must equal the sum exactly
  -t, --threads T        event-loop threads per load (default 1: the hosts share
                         this machine's CPUs)
  -s, --server-arg ARG   one more argument for `socklab serve` (repeat it), e.g.
                         -s --max-conns=19000
      --bin PATH         the socklab binary (default $SOCKLAB, else
                         target/release/socklab, else socklab on PATH)
      --out DIR          where the logs go (default a new /tmp/socklab-netns.XXXXXX)
  -h, --help             this text
  -- ARGS                passed to every `socklab load` (e.g. -- --rate 5000)

Example:
  scripts/netns-hosts.sh --model nonblocking --hosts 4 --conns 250 --duration 10s

Exit status: 0 pass, 1 a check failed, 2 usage, 77 skipped (cannot make namespaces).
EOF
}

# --- options -----------------------------------------------------------------

MODEL=nonblocking HOSTS=2 CONNS=10 DURATION="" REQUESTS="" THREADS=1 OUT="" BIN="${SOCKLAB:-}"
EXTRA=() SERVER_ARGS=()

die_usage() { echo "netns-hosts: $*" >&2; echo "try: scripts/netns-hosts.sh --help" >&2; exit 2; }

parse_args() {
    while (($#)); do
        case "$1" in
            -m | --model) MODEL="${2:?}"; shift 2 ;;
            -k | --hosts) HOSTS="${2:?}"; shift 2 ;;
            -c | --conns) CONNS="${2:?}"; shift 2 ;;
            -d | --duration) DURATION="${2:?}"; shift 2 ;;
            -n | --requests) REQUESTS="${2:?}"; shift 2 ;;
            -t | --threads) THREADS="${2:?}"; shift 2 ;;
            -s | --server-arg) SERVER_ARGS+=("${2:?}"); shift 2 ;;
            --bin) BIN="${2:?}"; shift 2 ;;
            --out) OUT="${2:?}"; shift 2 ;;
            -h | --help) usage; exit 0 ;;
            --) shift; EXTRA=("$@"); break ;;
            *) die_usage "unknown argument: $1" ;;
        esac
    done
    [[ $HOSTS =~ ^[0-9]+$ ]] && ((HOSTS >= 1 && HOSTS <= 250)) || die_usage "--hosts must be 1..250"
    [[ $CONNS =~ ^[0-9]+$ ]] && ((CONNS >= 1)) || die_usage "--conns must be a positive number"
    [[ $THREADS =~ ^[0-9]+$ ]] && ((THREADS >= 1)) || die_usage "--threads must be a positive number"
    [[ -z $REQUESTS || $REQUESTS =~ ^[0-9]+$ ]] || die_usage "--requests must be a number"
    if [[ -z $BIN ]]; then
        local repo_bin
        repo_bin="$(cd "$(dirname "$0")/.." && pwd)/target/release/socklab"
        if [[ -x $repo_bin ]]; then BIN=$repo_bin; else BIN=$(command -v socklab || true); fi
    fi
    [[ -n $BIN && -x $BIN ]] || die_usage "no socklab binary (build it: cargo build --release --bin socklab; or pass --bin)"
    BIN=$(realpath "$BIN")
}

# Seconds in a socklab duration (10s, 500ms, 250us, 5ns), rounded up; for timeouts.
duration_s() {
    awk -v d="$1" 'BEGIN {
        n = d + 0; u = d; sub(/^[0-9.]+/, "", u)
        f = (u == "s") ? 1 : (u == "ms") ? 1e-3 : (u == "us") ? 1e-6 : (u == "ns") ? 1e-9 : -1
        if (f < 0) exit 1
        s = n * f; printf "%d\n", (s == int(s)) ? s : int(s) + 1 }'
}

# --- what this run made, and removing it ---------------------------------------

MADE_NS=()     # namespaces, in the order made
MADE_IF=()     # interfaces in the bridge namespace (a veth pair dies with either end)
PIDS=()        # processes started in the namespaces (server and loads)
SKIPPING=""    # set while probing: a failure then means "cannot do it here", not FAIL

# Removes, by name, every interface and namespace this run recorded as made. Only
# names from MADE_IF / MADE_NS are touched; nothing is looked up by pattern.
cleanup() {
    local rc=$? name pid left=()
    trap - EXIT INT TERM
    exec 3>&2 2>/dev/null # bash would print a "Killed" line for each job stopped here
    for pid in "${PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    # A process still inside a namespace keeps the namespace alive after `ip netns
    # del`; any process in one of ours was started by this run.
    for name in "${MADE_NS[@]}"; do
        for pid in $(ip netns pids "$name" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    done
    wait || true
    exec 2>&3 3>&-
    for name in "${MADE_IF[@]}"; do
        ip -n "$PREFIX-br" link del "$name" 2>/dev/null || true
    done
    for name in "${MADE_NS[@]}"; do
        ip netns del "$name" 2>/dev/null || true
    done
    for name in "${MADE_NS[@]}"; do
        [[ -e /run/netns/$name ]] && left+=("$name")
    done
    if ((${#left[@]})); then
        echo "netns-hosts: could not remove namespace(s): ${left[*]}" >&2
        ((rc == 0 || rc == EXIT_SKIP)) && rc=1
    fi
    exit "$rc"
}

skip() { echo "netns-hosts: SKIP: $*" >&2; exit "$EXIT_SKIP"; }

# Runs `ip ARGS`; on failure while probing, skips with REASON and ip's own message.
ip_or_skip() {
    local reason=$1 err
    shift
    if ! err=$(ip "$@" 2>&1); then
        [[ -n $SKIPPING ]] && skip "$reason: ip $*: $err"
        echo "netns-hosts: ip $*: $err" >&2
        return 1
    fi
}

make_ns() {
    ip_or_skip "cannot create a network namespace" netns add "$1"
    MADE_NS+=("$1")
    ip -n "$1" link set lo up
}

# One veth pair: END in the bridge namespace (a bridge port), INSIDE in namespace NS
# with address IP. Made in the bridge namespace directly, so neither end ever
# exists in the root namespace.
make_link() {
    local end=$1 inside=$2 ns=$3 ip=$4
    ip_or_skip "cannot create a veth pair" -n "$PREFIX-br" link add "$end" type veth peer name "$inside" netns "$ns"
    MADE_IF+=("$end")
    ip -n "$PREFIX-br" link set "$end" master "${IFP}br$$" up
    ip -n "$ns" addr add "$ip/24" dev "$inside"
    ip -n "$ns" link set "$inside" up
}

# The namespaces, the bridge, and one link per namespace. The first namespace and
# the first link are the probe: if they cannot be made here, the run is skipped.
build_topology() {
    [[ $(uname -s) == Linux ]] || skip "network namespaces are Linux-only"
    command -v ip >/dev/null || skip "no ip command (install iproute2)"
    [[ -e /proc/self/ns/net ]] || skip "kernel without network namespaces (no /proc/self/ns/net)"
    ((EUID == 0)) || skip "not root: creating network namespaces needs CAP_SYS_ADMIN and CAP_NET_ADMIN (try sudo)"
    SKIPPING=1
    make_ns "$PREFIX-br"
    ip_or_skip "cannot create a bridge" -n "$PREFIX-br" link add "${IFP}br$$" type bridge
    MADE_IF+=("${IFP}br$$")
    ip -n "$PREFIX-br" link set "${IFP}br$$" up
    make_ns "$PREFIX-srv"
    make_link "${IFP}b$$s" "${IFP}e$$s" "$PREFIX-srv" "$SERVER_IP"
    SKIPPING=""
    local k
    for ((k = 1; k <= HOSTS; k++)); do
        make_ns "$PREFIX-h$k"
        make_link "${IFP}b$$h$k" "${IFP}e$$h$k" "$PREFIX-h$k" "$(host_ip "$k")"
    done
}

host_ip() { echo "$SUBNET.$(($1 + 1))"; }

# --- the run ------------------------------------------------------------------

SERVER_PID="" SERVER_ADDR=""

# Starts the server in its namespace and waits for `socklab: MODEL serving tcp=ADDR pid=PID`.
start_server() {
    ip netns exec "$PREFIX-srv" "$BIN" serve "$MODEL" --tcp "$SERVER_IP:7788" "${SERVER_ARGS[@]}" \
        >"$OUT/server.out" 2>"$OUT/server.err" </dev/null &
    PIDS+=($!)
    local line="" i
    for ((i = 0; i < START_TIMEOUT_S * 10; i++)); do
        line=$(grep -m1 ' serving ' "$OUT/server.out" || true)
        [[ -n $line ]] && break
        kill -0 "${PIDS[-1]}" 2>/dev/null || break
        sleep 0.1
    done
    if [[ -z $line ]]; then
        echo "netns-hosts: the server did not announce itself; its stderr:" >&2
        cat "$OUT/server.err" >&2
        return 1
    fi
    SERVER_ADDR=$(sed -n 's/.* tcp=\([^ ]*\).*/\1/p' <<<"$line")
    SERVER_PID=$(sed -n 's/.* pid=\([0-9]*\).*/\1/p' <<<"$line")
    # `ip netns exec` execs the command, so the PID it announces is the one started.
    [[ $SERVER_PID == "${PIDS[-1]}" ]] || PIDS+=("$SERVER_PID")
}

# The server's connections by peer address, e.g. "10.77.0.2x10 10.77.0.3x10", read
# with ss inside the server namespace: each host must show up with its own address.
peers_now() {
    ip netns exec "$PREFIX-srv" ss -Htn state established "( sport = :${SERVER_ADDR##*:} )" 2>/dev/null |
        awk '{ sub(/:[0-9]+$/, "", $NF); n[$NF]++ } END { for (a in n) printf "%sx%d\n", a, n[a] }' |
        sort -V | paste -sd' '
}

LOAD_PIDS=() LOAD_RC=() PEERS="" PEERS_SEEN=0 CONNTRACK=""

# Starts every host's `socklab load` at once and waits for all of them. While they
# run, samples the server's connections by peer (the fullest sample is kept).
run_loads() {
    local k args=(--conns "$CONNS" --threads "$THREADS" --no-progress --strict)
    [[ -n $DURATION ]] && args+=(--duration "$DURATION")
    [[ -n $REQUESTS ]] && args+=(--requests "$REQUESTS")
    local limit_s
    limit_s=$(($(duration_s "${DURATION:-10s}") + LOAD_SLACK_S))
    [[ -n $REQUESTS && -z $DURATION ]] && limit_s=600
    for ((k = 1; k <= HOSTS; k++)); do
        timeout --kill-after=5 "$limit_s" ip netns exec "$PREFIX-h$k" "$BIN" load "$SERVER_ADDR" \
            "${args[@]}" --json "$OUT/h$k.json" --hdr-log "$OUT/h$k.hlog" "${EXTRA[@]}" \
            >"$OUT/h$k.txt" 2>&1 </dev/null &
        LOAD_PIDS+=($!)
        PIDS+=($!)
    done
    local running=1 sample n
    while ((running)); do
        running=0
        for k in "${LOAD_PIDS[@]}"; do kill -0 "$k" 2>/dev/null && running=1; done
        sample=$(peers_now)
        n=$(awk -v RS=' ' -F'x' '{ s += $2 } END { print s + 0 }' <<<"$sample")
        if ((n > PEERS_SEEN)); then PEERS_SEEN=$n PEERS=$sample; fi
        ((running)) && sleep 0.2
    done
    # Conntrack is per namespace: a fresh one has no rules needing it, so no entries.
    CONNTRACK=$(ip netns exec "$PREFIX-srv" cat /proc/sys/net/netfilter/nf_conntrack_count 2>/dev/null || echo "n/a")
    for k in "${LOAD_PIDS[@]}"; do
        local rc=0
        wait "$k" || rc=$?
        LOAD_RC+=("$rc")
    done
}

SERVER_STOP=""

# SIGTERM by PID; the server prints `socklab: MODEL stopped: accepted=… requests=…` as it exits.
stop_server() {
    if ! kill -TERM "$SERVER_PID" 2>/dev/null; then
        echo "netns-hosts: the server (pid $SERVER_PID) had already exited" >&2
    fi
    local i
    for ((i = 0; i < STOP_TIMEOUT_S * 10; i++)); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    SERVER_STOP=$(grep -m1 ' stopped: ' "$OUT/server.err" || true)
}

# A value from socklab's pretty-printed JSON report: `field FILE KEY` for a top-level
# number, `field FILE SECTION KEY` for one inside a top-level object.
field() {
    local file=$1 section key
    if (($# == 2)); then section="" key=$2; else section=$2 key=$3; fi
    awk -v sec="$section" -v key="$key" '
        sec == "" && $0 ~ "^  \"" key "\": " { v = $2; sub(/,$/, "", v); print v; exit }
        sec != "" && $0 ~ "^  \"" sec "\": \\{" { inside = 1; next }
        inside && /^  [}\]]/ { exit }
        inside && $0 ~ "^    \"" key "\": " { v = $2; sub(/,$/, "", v); print v; exit }' "$file"
}

# Value of NAME=VALUE in a server line.
server_value() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<<"$2"; }

# --- checks and summary ----------------------------------------------------------

FAILED=0

check() { # check OK DESCRIPTION
    if [[ $1 == 1 ]]; then printf '  PASS  %s\n' "$2"; else printf '  FAIL  %s\n' "$2"; FAILED=1; fi
}

summarize() {
    local k rc sum_ok=0 sum_timed=0 warmup_est=0 starts=() ends=() bad_rc=()
    local mode="${DURATION:-10s} window"
    [[ -n $REQUESTS ]] && mode="$REQUESTS requests per host (counted)"
    echo
    echo "netns-hosts: $MODEL, $HOSTS hosts x $CONNS connections, $mode; files in $OUT"
    echo "  server  $SERVER_ADDR in $PREFIX-srv, pid $SERVER_PID"
    for ((k = 1; k <= HOSTS; k++)); do
        rc=${LOAD_RC[k - 1]}
        ((rc == 0)) || bad_rc+=("h$k:$rc")
        if [[ ! -s $OUT/h$k.json ]]; then
            printf '  host %-3d %-11s no report (exit %d): %s\n' "$k" "$(host_ip "$k")" "$rc" "$(tail -n1 "$OUT/h$k.txt")"
            continue
        fi
        local ok timed rps start measured
        ok=$(field "$OUT/h$k.json" counts ok)
        timed=$(field "$OUT/h$k.json" latency_timed count)
        rps=$(field "$OUT/h$k.json" throughput requests_per_s)
        start=$(field "$OUT/h$k.json" started_at_unix_s)
        measured=$(field "$OUT/h$k.json" measured_s)
        sum_ok=$((sum_ok + ok)) sum_timed=$((sum_timed + timed))
        # What this host's warm-up sent, at its window's rate: most of the surplus
        # the server counts in a timed run.
        warmup_est=$(awk -v e="$warmup_est" -v r="$rps" -v w="$(field "$OUT/h$k.json" config warmup)" \
            'BEGIN { printf "%d", e + r * w }')
        starts+=("$start") ends+=("$(awk -v s="$start" -v m="$measured" 'BEGIN { printf "%.6f", s + m }')")
        printf '  host %-3d %-11s requests %9d  %9.0f req/s  window %.3f s from %.3f  exit %d\n' \
            "$k" "$(host_ip "$k")" "$ok" "$rps" "$measured" "$start" "$rc"
    done

    # Merge the hosts' interval logs: histograms add exactly, percentiles never average.
    local logs=() merged_count="" p50="" p99=""
    for ((k = 1; k <= HOSTS; k++)); do [[ -s $OUT/h$k.hlog ]] && logs+=("$OUT/h$k.hlog"); done
    if ((${#logs[@]})) && "$BIN" load merge "${logs[@]}" >"$OUT/merged.txt" 2>&1; then
        read -r merged_count p50 p99 < <(awk '$1 == "latency" && $2 ~ /^[0-9]+$/ { print $2, $4, $6; exit }' "$OUT/merged.txt")
        echo "  merged  $merged_count requests  p50 $p50 us  p99 $p99 us  (socklab load merge, $OUT/merged.txt)"
    else
        echo "  merged  failed: $(tail -n1 "$OUT/merged.txt" 2>/dev/null)"
    fi
    local s_req s_acc
    s_req=$(server_value requests "$SERVER_STOP")
    s_acc=$(server_value accepted "$SERVER_STOP")
    echo "  server  ${SERVER_STOP:-no stop line on stderr}"
    echo "  server  connections by peer address (ss, fullest sample): ${PEERS:-none seen}"
    echo "  server  namespace's nf_conntrack_count after the loads: $CONNTRACK"

    echo "checks"
    check "$(((${#bad_rc[@]} == 0 && ${#starts[@]} == HOSTS) ? 1 : 0))" \
        "every load exited 0 with a report (--strict: no error, no wrong reply)${bad_rc:+; exit codes ${bad_rc[*]}}"
    # The windows overlap when the latest start comes before the earliest end; asking
    # for half the shortest window means the hosts really loaded the server together.
    if ((${#starts[@]} == HOSTS)); then
        local overlap
        overlap=$(printf '%s\n' "${starts[@]}" | sort -g | tail -n1)
        overlap=$(printf '%s\n' "${ends[@]}" | sort -g | head -n1 | awk -v s="$overlap" '{ printf "%.3f", $1 - s }')
        local shortest
        shortest=$(printf '%s\n' "${ends[@]}" | paste -d' ' - <(printf '%s\n' "${starts[@]}") |
            awk 'NR == 1 || $1 - $2 < m { m = $1 - $2 } END { printf "%.3f", m }')
        check "$(awk -v o="$overlap" -v m="$shortest" 'BEGIN { print (o >= m / 2) ? 1 : 0 }')" \
            "windows overlap: all $HOSTS hosts measured together for $overlap s (shortest window $shortest s; at least half of it required)"
    fi
    # The merged log holds each host's values as timed: every reply in its window plus
    # the requests still waiting at its end. Histograms add exactly: no tolerance.
    check "$([[ -n $merged_count && $merged_count == "$sum_timed" ]] && echo 1 || echo 0)" \
        "merged count ${merged_count:-?} = sum of the hosts' latency_timed counts $sum_timed (exact)"
    if [[ -n $REQUESTS ]]; then
        # Counted run: no warm-up, no ramp; each host sends exactly N and waits for
        # every reply, so the server has served exactly what the hosts counted.
        local want=$((HOSTS * REQUESTS))
        check "$([[ $sum_ok == "$want" && ${s_req:-x} == "$want" && ${merged_count:-x} == "$want" ]] && echo 1 || echo 0)" \
            "server requests ${s_req:-?} = sum of replies $sum_ok = merged ${merged_count:-?} = $HOSTS x $REQUESTS (counted run: exact)"
    else
        # Timed run: the server also served each host's ramp and warm-up, before the
        # windows. Every reply a host counted was served, so the server's count is at
        # least the sum; the surplus is those unmeasured requests.
        check "$([[ -n $s_req ]] && ((sum_ok > 0 && s_req >= sum_ok)) && echo 1 || echo 0)" \
            "server requests ${s_req:-?} >= sum of replies in the windows $sum_ok > 0 (surplus ${s_req:+$((s_req - sum_ok))}: the warm-ups, about $warmup_est if they ran at the windows' rates, and the ramps)"
    fi
    check "$([[ ${s_acc:-x} == "$((HOSTS * CONNS))" ]] && echo 1 || echo 0)" \
        "server accepted ${s_acc:-?} = $HOSTS hosts x $CONNS connections (each connected once)"
    local distinct
    distinct=$(wc -w <<<"$PEERS")
    check "$(((distinct == HOSTS) ? 1 : 0))" \
        "server saw $distinct peer addresses, one per host"
    if ((FAILED)); then echo "RESULT: FAIL"; else echo "RESULT: PASS"; fi
}

main() {
    parse_args "$@"
    trap cleanup EXIT
    trap 'echo "netns-hosts: interrupted; removing what this run made" >&2; exit 130' INT
    trap 'echo "netns-hosts: terminated; removing what this run made" >&2; exit 143' TERM
    build_topology
    OUT=${OUT:-$(mktemp -d /tmp/socklab-netns.XXXXXX)}
    mkdir -p "$OUT"
    start_server
    run_loads
    stop_server
    summarize
    ((FAILED == 0)) || exit 1
}

main "$@"
