#!/usr/bin/env bash
# Runs every test of sendfiled: the C library's suite when ci/c-tests.sh
# exists, then the Rust workspace's unit, integration and doc tests (on Linux
# a second time with the daemon forced onto the portable read/write copy path
# and path walk that FreeBSD and macOS use).
#
# This is the README's test command. Extra arguments go to `cargo test`.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$SFD_TOP"

# The machines CI runs on run everything as root; the daemon refuses root
# unless told otherwise.
export SENDFILED_ALLOW_ROOT=1
# client-c's `cargo test` would run ci/c-tests.sh again, with its output
# captured; it runs here first, on its own, with its output shown.
export SFD_SKIP_C_SUITE=1

if [ -f ci/c-tests.sh ]; then
  banner "C library tests (ci/c-tests.sh)"
  "$BASH" ci/c-tests.sh
else
  echo "skipped: C tests (ci/c-tests.sh not present)"
fi

log=$(mktemp "${TMPDIR:-/tmp}/sfd-test.XXXXXX")
trap 'rm -f "$log"' EXIT

cargo_tests() {
  cargo test --workspace ${1+"$@"} 2>&1 | tee -a "$log"
}

banner "cargo test --workspace"
cargo_tests ${1+"$@"}

if [ "$(host_os)" = Linux ]; then
  banner "cargo test --workspace with SENDFILED_FORCE_FALLBACK=1 (portable copy path and path walk)"
  SENDFILED_FORCE_FALLBACK=1 cargo_tests ${1+"$@"}
else
  echo "skipped: the forced-fallback pass (Linux only: elsewhere the fallback is the native path)"
fi

# One line totalling every `test result:` line above (both passes).
awk '/^test result:/ {
       for (i = 1; i <= NF; i++) {
         if ($i ~ /^passed;?$/)  p += $(i-1)
         if ($i ~ /^failed;?$/)  f += $(i-1)
         if ($i ~ /^ignored;?$/) s += $(i-1)
       }
     }
     END { printf "rust: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
