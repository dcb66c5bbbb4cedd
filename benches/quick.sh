#!/usr/bin/env bash
# Runs every bench once, briefly, so that none of them rots: criterion's quick
# mode (stop at 5 % relative deviation or after 1 s per bench) with fewer
# bootstrap resamples. Prints the elapsed time. Asserts nothing about speed:
# it fails only if a bench fails to build or panics.
#
#   benches/quick.sh [extra criterion arguments, e.g. a name filter]
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
cargo bench -p upbit-limiter-benches --bench hot_path -- \
    --quick --measurement-time 1 --nresamples 1000 --noplot "$@"
if [ -f benches/benches/simulator.rs ]; then
    cargo bench -p upbit-limiter-benches --bench simulator -- \
        --quick --measurement-time 1 --nresamples 1000 --noplot "$@"
fi
end=$(date +%s)
echo "benches/quick.sh: every bench ran once in $((end - start)) s (build included)"
