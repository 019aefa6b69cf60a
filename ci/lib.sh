# Helpers shared by the scripts in ci/ and by .ci/run. Source it; it defines
# functions and variables only. Written for bash 3.2 (macOS): no associative
# arrays, no ${var,,}, no mapfile.

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

# Where cargo puts its output: $CARGO_TARGET_DIR, else TOP/target.
target_dir() {
  echo "${CARGO_TARGET_DIR:-$SFD_TOP/target}"
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
