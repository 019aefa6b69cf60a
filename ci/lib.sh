# Helpers shared by the scripts in ci/ (every one sources it) and by .ci/run.
# Source it; it defines functions and variables only. Written for bash 3.2
# (macOS): no associative arrays, no ${var,,}, no mapfile, no empty "${a[@]}"
# under set -u.

# The repository's top directory (this file lives in TOP/ci).
SFD_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# The cross targets checked (check + clippy, no linking) on Linux hosts.
SFD_CROSS_TARGETS="x86_64-unknown-freebsd x86_64-apple-darwin aarch64-apple-darwin"

have() { command -v "$1" >/dev/null 2>&1; }

host_os() { uname -s; }

# Number of CPUs: nproc on Linux, sysctl elsewhere (macOS, FreeBSD).
ncpu() {
  if have nproc; then
    nproc
  else
    sysctl -n hw.ncpu 2>/dev/null || echo 2
  fi
}

banner() {
  printf '\n==============================================================\n'
  printf '== %s\n' "$*"
  printf '==============================================================\n'
}

loud_warning() {
  printf '\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n' >&2
  printf '!!! WARNING: %s\n' "$@" >&2
  printf '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\n' >&2
}

die() {
  echo "error: $*" >&2
  exit 1
}

# Where cargo puts its output: $CARGO_TARGET_DIR, else what `cargo metadata`
# says (a .cargo/config.toml may move it), else TOP/target.
target_dir() {
  local t=${CARGO_TARGET_DIR:-}
  if [ -z "$t" ] && have cargo; then
    t=$(cd "$SFD_TOP" && cargo metadata --format-version 1 --no-deps 2>/dev/null |
      sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
  fi
  echo "${t:-$SFD_TOP/target}"
}

# Adds the cross targets with rustup when they are not installed yet.
# Prints the targets that are ready on stdout (one line, space-separated).
# A rustup failure that looks like a missing network is a loud warning and
# that target is left out; any other failure is fatal. Without rustup (a
# distribution's rust package) no target is ready.
ensure_cross_targets() {
  local ready="" installed t out
  if ! have rustup; then
    loud_warning "rustup is not installed: cross-target checks cannot run"
    echo ""
    return 0
  fi
  installed=$(rustup target list --installed)
  for t in $SFD_CROSS_TARGETS; do
    if printf '%s\n' "$installed" | grep -qx "$t"; then
      ready="$ready $t"
      continue
    fi
    echo "rustup target add $t" >&2
    if out=$(rustup target add "$t" 2>&1); then
      printf '%s\n' "$out" >&2
      ready="$ready $t"
    else
      printf '%s\n' "$out" >&2
      if printf '%s\n' "$out" | grep -qiE 'download|network|connect|resolve|dns|timed? ?out|could not (fetch|send)|error sending request|tls|ssl|proxy'; then
        loud_warning "rustup target add $t failed for want of network: the $t checks are SKIPPED"
      else
        die "rustup target add $t failed (not a network error)"
      fi
    fi
  done
  echo "${ready# }"
}

# --- Skipping ---------------------------------------------------------------
# A script (or a ci/run-all.sh step) that cannot run here calls
# `skip_script REASON`: it prints "skipped: REASON" and exits with
# $SFD_SKIP_STATUS (77, automake's "skipped"), which ci/run-all.sh lists as
# skipped, not ok. Under ci/run-all.sh the reason also goes to the file
# $SFD_SKIP_NOTE for the summary.
SFD_SKIP_STATUS=77

skip_script() {
  echo "skipped: $*"
  if [ -n "${SFD_SKIP_NOTE:-}" ]; then
    echo "$*" >"$SFD_SKIP_NOTE"
  fi
  exit "$SFD_SKIP_STATUS"
}

# --- Counting checks --------------------------------------------------------
# For the scripts that run many checks and report "N passed, M failed":
#   ok WHAT / bad WHAT        count one check (prints "ok   WHAT" / "FAIL WHAT")
#   check WHAT CMD [ARGS...]  run CMD: ok if it succeeds, else bad
#   summary [LABEL]           print "LABEL: N passed, M failed" (the failed
#                             checks listed first) and return 0 iff none failed
SFD_PASSED=0
SFD_FAILED=0
SFD_FAILURES=""

ok() {
  echo "ok   $*"
  SFD_PASSED=$((SFD_PASSED + 1))
}

bad() {
  echo "FAIL $*"
  SFD_FAILED=$((SFD_FAILED + 1))
  SFD_FAILURES="$SFD_FAILURES  $*
"
}

check() {
  local what=$1
  shift
  if "$@"; then ok "$what"; else bad "$what"; fi
}

summary() {
  if [ "$SFD_FAILED" -gt 0 ]; then
    echo "failures:"
    printf '%s' "$SFD_FAILURES"
  fi
  echo "${1:+$1: }$SFD_PASSED passed, $SFD_FAILED failed"
  [ "$SFD_FAILED" -eq 0 ]
}

# --- The declared minimum Rust ----------------------------------------------
# The workspace's rust-version (Cargo.toml, [workspace.package]), e.g. 1.85.
msrv() {
  sed -n 's/^rust-version = "\([0-9.]*\)".*/\1/p' "$SFD_TOP/Cargo.toml" | head -n 1
}
