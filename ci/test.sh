#!/usr/bin/env bash
# Runs every test of sendfiled: the C library's suite when ci/c-tests.sh
# exists, then the Rust workspace's unit, integration and doc tests, with the
# engine the environment picks (auto, io_uring where the kernel allows it,
# unless SENDFILED_ENGINE is set).
# On Linux the Rust tests run a second time with the daemon forced onto the
# portable read/write copy path and path walk that FreeBSD and macOS use, and
# then the C suite and the Rust tests once more with SENDFILED_ENGINE=epoll,
# so that every test runs on each engine (elsewhere the readiness loop,
# kqueue, is the only engine). The first passes run with the client's
# in-process attempt on (the default: a cached Send finishes in the client,
# the rest is handed on); the forced-fallback and epoll passes run with
# SENDFILED_INLINE=0, so that every request reaches the daemon and its copy
# paths and engine are what the suites test; a last pass runs epoll with the
# attempt on again, so both engines take the hand-offs. The last lines total the
# passes: the Rust tests of all of them, and the C suite's.
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

log=$(mktemp "${TMPDIR:-/tmp}/sfd-test.XXXXXX")
clog=$(mktemp "${TMPDIR:-/tmp}/sfd-ctest.XXXXXX")
trap 'rm -f "$log" "$clog"' EXIT

# The daemons the C tests start inherit the environment, SENDFILED_ENGINE
# included.
c_tests() {
  if [ -f ci/c-tests.sh ]; then
    banner "C library tests (ci/c-tests.sh)${1:+ with $1}"
    "$BASH" ci/c-tests.sh 2>&1 | tee -a "$clog"
  else
    echo "skipped: C tests (ci/c-tests.sh not present)"
  fi
}

cargo_tests() {
  cargo test --workspace ${1+"$@"} 2>&1 | tee -a "$log"
}

c_tests

banner "cargo test --workspace"
cargo_tests ${1+"$@"}

if [ "$(host_os)" = Linux ]; then
  export SENDFILED_INLINE=0
  banner "cargo test --workspace with SENDFILED_FORCE_FALLBACK=1 SENDFILED_INLINE=0 (portable copy path and path walk, every request the daemon's)"
  SENDFILED_FORCE_FALLBACK=1 cargo_tests ${1+"$@"}

  export SENDFILED_ENGINE=epoll
  c_tests "SENDFILED_ENGINE=epoll SENDFILED_INLINE=0"
  banner "cargo test --workspace with SENDFILED_ENGINE=epoll SENDFILED_INLINE=0 (the readiness loop)"
  cargo_tests ${1+"$@"}

  # Inline first on the readiness loop too: the hand-offs it sends.
  unset SENDFILED_INLINE
  c_tests "SENDFILED_ENGINE=epoll (inline first)"
  banner "cargo test --workspace with SENDFILED_ENGINE=epoll (inline first, the hand-offs on the readiness loop)"
  cargo_tests ${1+"$@"}
else
  echo "skipped: the forced-fallback pass (Linux only: elsewhere the fallback is the native path)"
  echo "skipped: the SENDFILED_ENGINE=epoll pass (Linux only: elsewhere the readiness loop is the only engine)"
fi

# One line totalling every `test result:` line above (every Rust pass), and
# one totalling the C suite's `N passed, M failed` lines (every C pass).
awk '/^test result:/ {
       for (i = 1; i <= NF; i++) {
         if ($i ~ /^passed;?$/)  p += $(i-1)
         if ($i ~ /^failed;?$/)  f += $(i-1)
         if ($i ~ /^ignored;?$/) s += $(i-1)
       }
     }
     END { printf "rust: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
if [ -s "$clog" ]; then
  awk '/^[0-9]+ passed, [0-9]+ failed$/ { p += $1; f += $3; n++ }
       END { printf "c: %d passed, %d failed (%d runs of the suite)\n", p, f, n }' "$clog"
fi
