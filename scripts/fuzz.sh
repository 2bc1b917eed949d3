#!/usr/bin/env bash
# Fuzz the protocol core's lines framing for a bounded time.
# Usage: scripts/fuzz.sh [SECONDS]      (default 60)
#
# Runs the cargo-fuzz target fuzz/fuzz_targets/lines.rs (libFuzzer, AddressSanitizer)
# for SECONDS. cargo-fuzz needs a nightly compiler (it passes -Z flags):
#   1. `cargo +nightly fuzz` when a nightly toolchain is installed;
#   2. otherwise the stable compiler with RUSTC_BOOTSTRAP=1, which lets stable accept
#      those flags (works where the stable toolchain ships the sanitizer runtimes, as
#      rustup's x86_64 Linux toolchains do);
#   3. otherwise, and said so, the same checks without libFuzzer: the property test
#      crates/protocol/tests/lines_invariants.rs with many more cases than CI runs.
# A crash leaves its input in fuzz/artifacts/lines/; replay it with
#   cargo +nightly fuzz run lines fuzz/artifacts/lines/<file>
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -eq 0 ]; then
    echo "usage: scripts/fuzz.sh [SECONDS]   (a whole number of seconds, at least 1)" >&2
    exit 2
fi

step() { printf '\n==> %s\n' "$*"; }

# The proptest fallback: the same checker (crates/protocol/tests/support/lines.rs),
# fed by proptest instead of libFuzzer, with a case count scaled to the time asked.
fallback() {
    echo "fuzz.sh: $1" >&2
    echo "fuzz.sh: running the same checks as a property test instead (no libFuzzer, no sanitizer)" >&2
    step "proptest lines_invariants, $((seconds * 2000)) cases per property"
    PROPTEST_CASES=$((seconds * 2000)) timeout "$((seconds * 4 + 300))" \
        cargo test --release -p socklab-protocol --test lines_invariants
    exit $?
}

if ! cargo fuzz --version >/dev/null 2>&1; then
    step "installing cargo-fuzz (cargo install cargo-fuzz)"
    cargo install cargo-fuzz --locked || fallback "cannot install cargo-fuzz"
fi

if cargo +nightly --version >/dev/null 2>&1; then
    toolchain=(+nightly)
    how="nightly toolchain"
else
    echo "fuzz.sh: no nightly toolchain (rustup cannot fetch one here?); trying stable with RUSTC_BOOTSTRAP=1" >&2
    export RUSTC_BOOTSTRAP=1
    toolchain=()
    how="stable toolchain with RUSTC_BOOTSTRAP=1"
fi

step "cargo fuzz build lines ($how)"
if ! cargo "${toolchain[@]}" fuzz build lines; then
    fallback "cargo fuzz could not build the target with the $how"
fi

step "fuzzing lines for ${seconds}s ($how)"
# -max_total_time bounds the run; timeout(1) is a backstop if libFuzzer overruns.
timeout "$((seconds + 120))" \
    cargo "${toolchain[@]}" fuzz run lines -- -max_total_time="$seconds"
