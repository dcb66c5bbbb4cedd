#!/usr/bin/env bash
# Runs every bench once, briefly, so that none of them rots: criterion's quick
# mode (stop at 5 % relative deviation, or after at most 1 s per bench) with
# fewer bootstrap resamples. Asserts nothing about speed: it fails only if a
# bench fails to build or panics. Prints the elapsed time of the runs (the
# build is timed separately).
#
#   benches/quick.sh [extra criterion arguments, e.g. a name filter]
set -euo pipefail
cd "$(dirname "$0")/.."
build_start=$(date +%s)
cargo bench -p upbit-limiter-benches --no-run
start=$(date +%s)
cargo bench -p upbit-limiter-benches -- \
    --quick --measurement-time 1 --nresamples 1000 --noplot "$@"
end=$(date +%s)
echo "benches/quick.sh: every bench ran once in $((end - start)) s (build: $((start - build_start)) s)"
