#!/usr/bin/env bash
# Runs the verification suites the way CI does, in order, with timing:
#   1. property tests (proptest, release; property 1 runs 20 000 cases),
#   2. loom models (release, under --cfg loom, in their own target dir),
#   3. cargo-fuzz targets (gcra 60 s, the others 20 s each; nightly).
#
# Environment:
#   UPBIT_PROPTEST_CASES   override every property's case count (long offline runs)
#   LOOM_MAX_PREEMPTIONS   loom's preemption bound (default per model: 2 or 3)
#   FUZZ_SECONDS_GCRA, FUZZ_SECONDS_OTHER   fuzzing time per target (60 / 20)
#   SKIP_FUZZ=1            skip the fuzz stage
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
GCRA_SECONDS="${FUZZ_SECONDS_GCRA:-60}"
OTHER_SECONDS="${FUZZ_SECONDS_OTHER:-20}"

START=$(date +%s)
stage_start=$START

run() {
    echo "+ $*"
    "$@"
}

stage() {
    local now
    now=$(date +%s)
    echo
    echo "=== $1 (previous stage: $((now - stage_start)) s, total: $((now - START)) s)"
    stage_start=$now
}

stage "property tests (release)"
echo "cases: property 1 (Zero-429) ${UPBIT_PROPTEST_CASES:-20000}, feedback ${UPBIT_PROPTEST_CASES:-5000}," \
    "state machines ${UPBIT_PROPTEST_CASES:-5000} each, liveness ${UPBIT_PROPTEST_CASES:-1000}"
run env CARGO_TARGET_DIR="$TARGET" cargo test -p upbit-limiter-verification --release

stage "loom models (release, --cfg loom)"
# A target dir of its own: RUSTFLAGS differ, so sharing one would rebuild both ways.
run env CARGO_TARGET_DIR="$TARGET/loom" RUSTFLAGS="--cfg loom" \
    cargo test -p upbit-limiter-verification --release \
    --test loom_tat --test loom_limiter --test loom_broken --test loom_interval_log

if [[ "${SKIP_FUZZ:-0}" == "1" ]]; then
    echo "SKIP_FUZZ=1: fuzz stage skipped"
else
    stage "cargo-fuzz (nightly)"
    if ! cargo +nightly --version >/dev/null 2>&1; then
        echo "error: the nightly toolchain is required for cargo-fuzz" >&2
        exit 1
    fi
    if ! cargo fuzz --version >/dev/null 2>&1; then
        run cargo install cargo-fuzz --locked
    fi
    cd "$ROOT/fuzz"
    run cargo +nightly fuzz build
    run cargo +nightly fuzz run gcra -- -max_total_time="$GCRA_SECONDS"
    for target in remaining_req classify breaker interval_log ban; do
        run cargo +nightly fuzz run "$target" -- -max_total_time="$OTHER_SECONDS"
    done
    cd "$ROOT"
fi

stage "done"
echo "verification passed in $(($(date +%s) - START)) s"
