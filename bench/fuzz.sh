#!/usr/bin/env bash
# Runs every cargo-fuzz target for a set time each (default 60 s), seeded
# with its corpus under the crate's fuzz/corpus/<target>/. A crash stops
# the run and leaves its input under fuzz/artifacts/<target>/: make it a
# regression test before fixing it.
#
#   bench/fuzz.sh            # every target, 60 s each
#   bench/fuzz.sh 600 sdp    # the sdp target for 10 minutes
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
only=${2:-}
command -v cargo-fuzz >/dev/null || { echo "bench/fuzz.sh: install cargo-fuzz first (cargo install cargo-fuzz)" >&2; exit 1; }
for dir in crates/*/fuzz; do
    for target in $(cd "$dir" && cargo +nightly fuzz list); do
        [ -n "$only" ] && [ "$target" != "$only" ] && continue
        echo "== $dir: $target for ${secs} s"
        mkdir -p "$dir/corpus/$target"
        # fuzz/seeds (RFC 4475's messages for SIP) seeds every target of
        # its crate; new inputs go to corpus/<target> only.
        seeds=()
        [ -d "$dir/seeds" ] && seeds=(seeds)
        (cd "$dir" && cargo +nightly fuzz run "$target" "corpus/$target" "${seeds[@]}" -- \
            -max_total_time="$secs" -max_len=16384 2>&1 | tail -3)
    done
done
