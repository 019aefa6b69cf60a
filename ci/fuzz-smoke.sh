#!/usr/bin/env bash
# Fuzz smoke run: each cargo-fuzz target of fuzz/ for a bounded time.
#
#   ci/fuzz-smoke.sh [SECONDS]        (default 30, or $FUZZ_SECONDS)
#
# Needs the nightly toolchain and cargo-fuzz (.ci/run installs cargo-fuzz
# when nightly is there); without them it reports "skipped" and exits 77
# (lib.sh's skip_script; ci/run-all.sh lists the step as skipped). Fails if
# a target crashes (the input is left in
# fuzz/artifacts/TARGET/). Saved regressions (fuzz/regressions/TARGET/*)
# are replayed first; the corpus grows in fuzz/corpus/ (not committed).
set -eu
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

secs=${1:-${FUZZ_SECONDS:-30}}
cd "$SFD_TOP/fuzz"

case "$(host_os)" in
    Linux | Darwin) ;;
    *) skip_script "fuzz smoke: cargo-fuzz (libFuzzer + sanitizers) is run on Linux and macOS only" ;;
esac
if ! cargo +nightly --version >/dev/null 2>&1; then
    skip_script "fuzz smoke: no nightly toolchain (rustup toolchain install nightly)"
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    skip_script "fuzz smoke: cargo-fuzz is not installed (cargo install cargo-fuzz --locked; .ci/run does)"
fi

status=0
for target in request_decode hdtr_pump; do
    if [ -d "regressions/$target" ]; then
        rlog=$(mktemp)
        cargo +nightly fuzz run "$target" regressions/"$target"/* >"$rlog" 2>&1 || {
            # A target that no longer builds fails here too: show why.
            echo "FAIL $target: a saved regression input fails (crash or build error)"
            grep -v '^ *Compiling' "$rlog" | tail -n 30
            rm -f "$rlog"
            status=1
            continue
        }
        rm -f "$rlog"
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
