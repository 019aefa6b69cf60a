#!/usr/bin/env bash
# The one script every CI runs (.ci/run here, GitHub Actions on Linux and
# macOS, Cirrus CI on FreeBSD). It expects Rust (with rustfmt and clippy) to
# be installed already; .ci/run and the CI configs do that.
#
# usage: ci/run-all.sh [STEP...]    run the given steps (default: all)
#        ci/run-all.sh --list       list the steps
#
# Every step runs even if an earlier one failed (set SFD_FAIL_FAST=1 to stop
# at the first failure); the exit status is non-zero if any step failed. A
# step that cannot run here (its script or tool is absent, or its script
# calls lib.sh's skip_script and exits 77) prints "skipped: ..." and is listed
# as skipped in the summary; any other failure fails CI.
#
# It runs under bash 3.2 (macOS's /bin/bash): no bash-4 features, and an
# argument list that may be empty is written ${1+"$@"}, which is safe under
# set -u on every bash. The scripts it calls run under the same bash
# ("$BASH"), so the macOS jobs check them with 3.2 too.
#
# Environment:
#   SFD_FAIL_FAST=1      stop at the first failing step
#   SFD_REQUIRE_YAML=1   fail (instead of skip) when python3 cannot import yaml
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$SFD_TOP"

export SENDFILED_ALLOW_ROOT=1
if [ "${CI:-}" = true ]; then
  # A build from scratch gains nothing from incremental compilation.
  export CARGO_INCREMENTAL=0
fi

# ---------------------------------------------------------------------------
# Steps. Each runs in a subshell with `set -euo pipefail`; `skip REASON`
# (lib.sh's skip_script) ends it as skipped, and so does a script it runs
# exiting with $SFD_SKIP_STATUS (77).
# ---------------------------------------------------------------------------

skip() { skip_script "$@"; }

# run_hook SCRIPT [ARGS...]: run ci/SCRIPT if it exists, else skip.
run_hook() {
  local script=ci/$1
  shift
  [ -f "$script" ] || skip "$script not present"
  echo "+ bash $script ${*:-}"
  "$BASH" "$script" ${1+"$@"}
}

step_yaml() {
  have python3 || {
    [ "${SFD_REQUIRE_YAML:-0}" != 1 ] || die "python3 is not installed"
    skip "YAML check (python3 not installed)"
  }
  python3 -c 'import yaml' 2>/dev/null || {
    [ "${SFD_REQUIRE_YAML:-0}" != 1 ] || die "python3 cannot import yaml (pip install pyyaml)"
    skip "YAML check (python3 has no yaml module)"
  }
  python3 - .github/workflows/ci.yml .cirrus.yml <<'PY'
import sys, yaml

def strings(node):
    if isinstance(node, dict):
        for v in node.values():
            yield from strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from strings(v)
    elif isinstance(node, str):
        yield node

for path in sys.argv[1:]:
    with open(path) as f:
        doc = yaml.safe_load(f)
    if not isinstance(doc, dict) or not doc:
        sys.exit("%s: not a YAML mapping" % path)
    if not any("ci/run-all.sh" in s for s in strings(doc)):
        sys.exit("%s: runs no ci/run-all.sh" % path)
    print("%s: valid YAML, runs ci/run-all.sh" % path)
PY
}

step_fmt() {
  cargo fmt --all -- --check
}

step_clippy() {
  cargo clippy --workspace --all-targets -- -D warnings
}

# Every dependency a Cargo.toml declares is used (fuzz/ included).
step_machete() {
  have cargo-machete || skip "cargo machete (cargo-machete is not installed; .ci/run installs it)"
  echo "+ cargo machete"
  cargo machete
}

# One way down (README, "Architecture"): nothing a client links depends on
# the server, and the system calls both sides make are written once, in the
# leaf crate sendfiled-sys.
step_layering() {
  local p bad=0 found
  for p in sendfiled-sys sendfiled-client sendfiled-client-c sfd; do
    echo "+ cargo tree -e normal -p $p"
    found=$(cargo tree -e normal -p "$p" --prefix none --format '{p}' |
      awk '{print $1}' | sort -u |
      grep -E '^(sendfiled-core|sendfiled-backend-.*|sendfiled|mio|io-uring)$' || true)
    if [ -n "$found" ]; then
      echo "FAIL: $p depends on server code: $found"
      bad=1
    fi
  done
  echo "+ cargo tree -e normal -p sendfiled-sys: no other crate of ours"
  if cargo tree -e normal -p sendfiled-sys --prefix none --format '{p}' |
    awk '{print $1}' | grep '^sendfiled' | grep -qv '^sendfiled-sys$'; then
    echo "FAIL: sendfiled-sys depends on a crate of ours"
    bad=1
  fi
  # No control-message walk and no openat2 call in Rust outside the leaf
  # crate (the C suite's fake servers are C and walk their own).
  echo "+ grep for CMSG_FIRSTHDR / ControlMessageOwned / SYS_openat2 outside sys/"
  found=$(grep -rlE 'CMSG_FIRSTHDR|CMSG_NXTHDR|ControlMessageOwned|SYS_openat2' \
    --include='*.rs' . | grep -vE '^\./(sys|target|fuzz/target)/' || true)
  if [ -n "$found" ]; then
    echo "FAIL: system calls of the leaf crate written again in: $found"
    bad=1
  fi
  return $bad
}

# The client crate's documentation (every public item has docs and examples)
# builds without a warning, with the tokio feature.
step_doc() {
  echo "+ RUSTDOCFLAGS=-Dwarnings cargo doc --no-deps -p sendfiled-client --all-features"
  RUSTDOCFLAGS=-Dwarnings cargo doc --no-deps -p sendfiled-client --all-features
}

# The declared rust-version builds the workspace: `cargo +VERSION build`
# with that toolchain (.ci/run installs it with rustup). Where it cannot be
# installed (no rustup, no network) this is a loud note and the step is
# skipped, not failed. Only the build: the tests' dev-dependencies
# (proptest) need a newer Rust than the packages do.
step_msrv() {
  local v
  v=$(msrv)
  [ -n "$v" ] || die "no rust-version in Cargo.toml"
  if ! have rustup; then
    loud_warning "rustup is not installed: the declared rust-version $v is NOT checked"
    skip "rust-version $v not checked (no rustup)"
  fi
  if ! rustup run "$v" cargo --version >/dev/null 2>&1; then
    loud_warning "Rust $v is not installed (.ci/run installs it; it failed or was not run): the declared rust-version is NOT checked"
    skip "rust-version $v not checked (toolchain $v not installed)"
  fi
  echo "+ cargo +$v build --workspace --locked   (CARGO_TARGET_DIR=$(target_dir)/msrv)"
  CARGO_TARGET_DIR=$(target_dir)/msrv cargo "+$v" build --workspace --locked
}

step_test() {
  echo "+ bash ci/test.sh   (the README's test command)"
  "$BASH" ci/test.sh
}

step_c_tests_valgrind() {
  [ -f ci/c-tests.sh ] || skip "ci/c-tests.sh not present"
  [ "$(host_os)" = Linux ] || skip "C tests under valgrind (Linux only)"
  have valgrind || die "valgrind is not installed (.ci/run installs it with apt-get)"
  run_hook c-tests.sh --valgrind
}

step_quickstart() {
  echo "+ bash ci/quickstart.sh   (the README's run command)"
  "$BASH" ci/quickstart.sh
}

cross_check() {
  local t=$1
  [ "$(host_os)" = Linux ] || skip "cross-target check for $t (run on Linux hosts only)"
  case " $SFD_CROSS_READY " in
    *" $t "*) ;;
    *) skip "$t is not installed and rustup could not add it (see the WARNING above)" ;;
  esac
  echo "+ cargo check --workspace --all-targets --target $t"
  cargo check --workspace --all-targets --target "$t"
  echo "+ cargo clippy --workspace --all-targets --target $t -- -D warnings"
  cargo clippy --workspace --all-targets --target "$t" -- -D warnings
}

step_cross_freebsd() { cross_check x86_64-unknown-freebsd; }
step_cross_macos_x86_64() { cross_check x86_64-apple-darwin; }
step_cross_macos_aarch64() { cross_check aarch64-apple-darwin; }

step_bench_quick() { run_hook bench-quick.sh; }
step_fuzz_smoke() { run_hook fuzz-smoke.sh; }
step_install_test() { run_hook install-test.sh; }
step_cinstall() { run_hook cinstall-test.sh; }
step_man_lint() { run_hook man-lint.sh; }

ALL_STEPS="yaml fmt clippy machete layering msrv doc test c-tests-valgrind quickstart"
ALL_STEPS="$ALL_STEPS cross-freebsd cross-macos-x86_64 cross-macos-aarch64"
ALL_STEPS="$ALL_STEPS bench-quick fuzz-smoke install-test cinstall man-lint"

# ---------------------------------------------------------------------------
# The runner.
# ---------------------------------------------------------------------------

if [ "${1:-}" = --list ]; then
  for s in $ALL_STEPS; do echo "$s"; done
  exit 0
fi

steps=${*:-$ALL_STEPS}
for s in $steps; do
  case " $ALL_STEPS " in
    *" $s "*) ;;
    *) die "unknown step '$s' (see --list)" ;;
  esac
done

SFD_SKIP_NOTE=$(mktemp "${TMPDIR:-/tmp}/sfd-skip.XXXXXX")
export SFD_SKIP_NOTE
trap 'rm -f "$SFD_SKIP_NOTE"' EXIT

banner "sendfiled CI: $(host_os) $(uname -m), $(ncpu) CPUs"
echo "rustc:  $(rustc --version)"
echo "cargo:  $(cargo --version)"
echo "steps:  $steps"

# Targets for the cross checks, added with rustup if needed (Linux hosts).
SFD_CROSS_READY=""
case " $steps " in
  *" cross-"*)
    if [ "$(host_os)" = Linux ]; then
      SFD_CROSS_READY=$(ensure_cross_targets)
    fi
    ;;
esac

names=()
results=()
times=()
failed=""
total_start=$(date +%s)

for s in $steps; do
  fn=step_${s//-/_}
  banner "step: $s"
  : >"$SFD_SKIP_NOTE"
  start=$(date +%s)
  set +e
  (
    set -euo pipefail
    "$fn"
  )
  rc=$?
  set -e
  elapsed=$(($(date +%s) - start))
  if [ "$rc" -eq "$SFD_SKIP_STATUS" ]; then
    if [ -s "$SFD_SKIP_NOTE" ]; then
      result="skipped: $(cat "$SFD_SKIP_NOTE")"
    else
      result="skipped (exit $rc)"
    fi
  elif [ "$rc" -ne 0 ]; then
    result="FAILED (exit $rc)"
    failed="$failed $s"
  else
    result=ok
  fi
  echo "-- step $s: $result (${elapsed}s)"
  names+=("$s")
  results+=("$result")
  times+=("$elapsed")
  if [ -n "$failed" ] && [ "${SFD_FAIL_FAST:-0}" = 1 ]; then
    echo "SFD_FAIL_FAST=1: stopping after the first failure"
    break
  fi
done

total=$(($(date +%s) - total_start))
banner "summary"
i=0
while [ "$i" -lt "${#names[@]}" ]; do
  printf '  %-22s %5ss  %s\n' "${names[$i]}" "${times[$i]}" "${results[$i]}"
  i=$((i + 1))
done
printf '  %-22s %5ss\n' total "$total"
if [ -n "$failed" ]; then
  echo "CI FAILED in step(s):$failed"
  exit 1
fi
echo "CI OK"
