#!/usr/bin/env bash
# Mutation testing of the decision paths (cargo-mutants): every mutant of
# quota, gcra, limiter, queue, wait, the interval log and the estimate of
# others' use (outside) must be caught by core's tests, the tokio adapter's
# (the async front's behaviour) and the verification crate's. Survivors that are equivalent to
# the original are listed, with why, in verification/README.md ("Mutation
# testing"); cargo-mutants skips them through the `mutants.toml` exclusions.
#
#   verification/mutants.sh              every mutant of the decision paths, core's, the
#                                        tokio adapter's and this crate's tests (long: hours)
#   verification/mutants.sh --quick ...  core's tests only (CI, with --in-diff F: only
#                                        the mutants on lines a diff touches)
#
# Environment: CARGO_TARGET_DIR is not used: cargo-mutants builds in a copy.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if ! cargo mutants --version >/dev/null 2>&1; then
    cargo install cargo-mutants --locked
fi
files=()
for f in quota gcra limiter queue wait interval_log outside; do
    [ -f "core/src/$f.rs" ] && files+=(--file "core/src/$f.rs")
done
tests=(--test-package upbit-limiter-core --test-package upbit-limiter-tokio --test-package upbit-limiter-verification)
if [ "${1:-}" = "--quick" ]; then
    shift
    tests=(--test-package upbit-limiter-core)
fi
exec cargo mutants -p upbit-limiter-core "${files[@]}" "${tests[@]}" -j 1 "$@"
