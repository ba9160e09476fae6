#!/usr/bin/env bash
# BENCHMARKS.md, encryption at rest: durable binds/s and p99 with sealing on
# (this checkout) against off (BASELINE_REV, the last build that stored
# values in clear), in one run on one machine.
#
# Builds both release binaries (the baseline in a git worktree under /tmp
# with a target directory of its own), then runs bench/http_binds.sh on each
# in turn, ROUNDS times, alternating, so that drift in the machine's load
# falls on both alike. Prints every RESULT line and the medians, and the
# ratio sealed / clear.
#
#   bench/sealing.sh                          # 3 rounds, 64 connections, 20 s
#   ROUNDS=5 CONNS=256 bench/sealing.sh
#   PG=1 bench/sealing.sh                     # both on PostgreSQL
#
# Only 127.0.0.1; needs what bench/http_binds.sh needs, and git.
set -euo pipefail

cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
BASELINE_REV=${BASELINE_REV:-d62db4c}
WORKTREE=/tmp/maskline-baseline-$BASELINE_REV
BASELINE_TARGET=/tmp/maskline-baseline-target

echo "== building this checkout (cargo build --release -p maskline)"
cargo build --release -p maskline 2>&1 | tail -1
SEALED=$PWD/target/release/maskline

echo "== building the baseline ${BASELINE_REV} (values in clear) in ${WORKTREE}"
if [[ ! -d "$WORKTREE" ]]; then
  git worktree add --detach "$WORKTREE" "$BASELINE_REV" >/dev/null
fi
(cd "$WORKTREE" && CARGO_TARGET_DIR=$BASELINE_TARGET cargo build --release -p maskline 2>&1 | tail -1)
CLEAR=$BASELINE_TARGET/release/maskline

results=$(mktemp /tmp/maskline-sealing.XXXXXX)
trap 'rm -f "$results"' EXIT
for round in $(seq 1 "$ROUNDS"); do
  for variant in clear sealed; do
    bin=$CLEAR
    [[ "$variant" == sealed ]] && bin=$SEALED
    line=$(MASKLINE_BIN=$bin bench/http_binds.sh 2>&1 | grep '^RESULT' | tail -1)
    echo "round $round $variant: $line"
    echo "$variant $line" >>"$results"
  done
done

python3 - "$results" <<'EOF'
import re, statistics, sys
runs = {"clear": [], "sealed": []}
for line in open(sys.argv[1]):
    variant, rest = line.split(" ", 1)
    fields = dict(re.findall(r"(\w+)=([\d.]+)", rest))
    runs[variant].append((float(fields["rps"]), float(fields["p99_ms"]), int(fields["non201"])))
med = {v: (statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs))
       for v, rs in runs.items()}
for v in ("clear", "sealed"):
    rps = ", ".join(f"{r[0]:.0f}" for r in runs[v])
    p99 = ", ".join(f"{r[1]:.2f}" for r in runs[v])
    print(f"{v:7} binds/s {rps} (median {med[v][0]:.0f}); p99 ms {p99} (median {med[v][1]:.2f}); "
          f"non-201 {sum(r[2] for r in runs[v])}")
print(f"sealed / clear: binds/s {med['sealed'][0] / med['clear'][0]:.3f}, "
      f"p99 {med['sealed'][1] / med['clear'][1]:.3f}")
EOF
