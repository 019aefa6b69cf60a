#!/usr/bin/env bash
# Runs the benchmark in quick mode (seconds) so that it cannot rot: it starts
# the release daemon, exercises every figure with small sizes and few
# repetitions, and fails if any transfer goes wrong. The numbers it prints
# are not meaningful; see BENCHMARKS.md for the full run.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$SFD_TOP"
exec cargo run --release --quiet -p sendfiled-bench -- --quick ${1+"$@"}
