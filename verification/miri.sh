#!/usr/bin/env bash
# Runs Miri (nightly) over the code that uses `unsafe`: core's unit tests and
# the wait-queue regression tests (real futures polled by hand against the
# intrusive queue), once under Stacked Borrows and the wait-queue tests once
# more under Tree Borrows. Case counts are reduced under `cfg(miri)` where a
# test would otherwise take minutes (the exhaustive classifier inputs, the
# 1000-per-second re-spacing test, the thread stress loops). One test is left
# to the native run (`#[cfg_attr(miri, ignore)]`): the limiter's early
# give-back, whose 600 windows of real admissions take four minutes here and
# run only code the shorter tests already cover. Bounded: CI gives it at most
# 10 minutes (about 6 here).
#
# Environment: CARGO_TARGET_DIR (default: target/miri).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/miri"
start=$(date +%s)
if ! cargo +nightly miri --version >/dev/null 2>&1; then
    rustup +nightly component add miri rust-src
fi
cargo +nightly miri setup
run() { echo "+ $*"; "$@"; }
run cargo +nightly miri test -p upbit-limiter-core --lib
# The regression tests leak their limiters on purpose (`Box::leak`, for a
# `'static` limiter shared with wakers and threads): leaks are not errors there.
leaks="-Zmiri-ignore-leaks"
MIRIFLAGS="${MIRIFLAGS:-} $leaks" run cargo +nightly miri test -p upbit-limiter-verification --test regressions
MIRIFLAGS="${MIRIFLAGS:-} $leaks -Zmiri-tree-borrows" run cargo +nightly miri test -p upbit-limiter-verification --test regressions
echo "miri passed in $(( $(date +%s) - start )) s"
