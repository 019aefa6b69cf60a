#!/bin/sh
# Fuzz smoke run: each cargo-fuzz target of fuzz/ for a bounded time.
#
#   ci/fuzz-smoke.sh [SECONDS]        (default 30, or $FUZZ_SECONDS)
#
# Needs the nightly toolchain and cargo-fuzz (installed with
# `cargo install cargo-fuzz` if missing); without them it prints SKIP and
# succeeds. Fails if a target crashes (the input is left in
# fuzz/artifacts/TARGET/). Saved regressions (fuzz/regressions/TARGET/*)
# are replayed first; the corpus grows in fuzz/corpus/ (not committed).
set -eu

secs=${1:-${FUZZ_SECONDS:-30}}
cd "$(dirname "$0")/../fuzz"

case "$(uname -s)" in
    Linux | Darwin) ;;
    *)
        echo "SKIP fuzz smoke: cargo-fuzz (libFuzzer + sanitizers) is run on Linux and macOS only"
        exit 0
        ;;
esac
if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "SKIP fuzz smoke: no nightly toolchain (rustup toolchain install nightly)"
    exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is missing: cargo install cargo-fuzz"
    if ! cargo install cargo-fuzz --locked; then
        echo "SKIP fuzz smoke: cargo-fuzz could not be installed"
        exit 0
    fi
fi

status=0
for target in request_decode hdtr_pump; do
    if [ -d "regressions/$target" ]; then
        cargo +nightly fuzz run "$target" regressions/"$target"/* >/dev/null 2>&1 || {
            echo "FAIL $target: a saved regression input crashes again"
            status=1
            continue
        }
    fi
    mkdir -p "corpus/$target"
    log=$(mktemp)
    if cargo +nightly fuzz run "$target" "corpus/$target" -- \
        -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
        rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
        echo "ok $target: ${runs:-?} executions in ${secs} s (${rate:-?}/s), crashes 0"
    else
        echo "FAIL $target: crash or error; see below and fuzz/artifacts/$target/"
        tail -n 40 "$log"
        status=1
    fi
    rm -f "$log"
done
exit $status
