#!/usr/bin/env bash
# The README's first command: build sendfiled, serve a temporary root with it,
# move files through it with the Rust client (examples/quickstart.rs), then
# stop the daemon with SIGTERM and check that it exited 0.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$SFD_TOP"

name=quickstart
tmp=""
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  if [ -n "$tmp" ]; then rm -rf "$tmp"; fi
}
trap cleanup EXIT

# The sfd command-line client, when the workspace has it, moves the files a
# second time.
build=(-p sendfiled --bin sendfiled --example quickstart)
sfd=""
if [ -f sfd/Cargo.toml ]; then
  build=("${build[@]}" -p sfd --bin sfd)
  sfd=$(target_dir)/release/sfd
fi

banner "quickstart: cargo build --release (daemon, example${sfd:+, sfd})"
cargo build --release "${build[@]}"
bin=$(target_dir)/release/sendfiled
example=$(target_dir)/release/examples/quickstart
[ -x "$bin" ] || die "$bin was not built"

# Under /tmp rather than $TMPDIR: a UNIX socket's path has to stay short
# (104 bytes on macOS, whose $TMPDIR alone is about 50).
tmp=$(mktemp -d /tmp/sendfiled-quickstart.XXXXXX)
# The physical path: macOS's /tmp is a symlink to /private/tmp.
tmp=$(cd "$tmp" && pwd -P)
root=$tmp/root
mkdir "$root"
printf 'Hello from sendfiled.\n' >"$root/hello.txt"
head -c 8388608 /dev/urandom >"$root/random-8MiB.bin"
echo "root: $root (hello.txt, random-8MiB.bin)"

# The daemon refuses to run as root unless allowed; CI machines run as root.
if [ "$(id -u)" = 0 ]; then
  export SENDFILED_ALLOW_ROOT=1
  echo "running as root: SENDFILED_ALLOW_ROOT=1"
fi

banner "quickstart: start the daemon"
ready="$tmp/ready"
echo "+ $bin -s $name -r $root -p --log stderr &"
"$bin" -s "$name" -r "$root" -p --log stderr >"$ready" &
pid=$!

# -p: the daemon prints "ready PID" once it accepts requests, or
# "error ERRNO MESSAGE" if it could not start.
deadline=$((SECONDS + 30))
until grep -q . "$ready" 2>/dev/null; do
  if ! kill -0 "$pid" 2>/dev/null; then
    wait "$pid" || true
    die "sendfiled exited before reporting ready"
  fi
  [ "$SECONDS" -lt "$deadline" ] || die "sendfiled did not report ready within 30 s"
  sleep 0.1
done
line=$(head -n 1 "$ready")
case "$line" in
  "ready $pid") echo "sendfiled is ready (pid $pid), socket $root/$name" ;;
  *) die "sendfiled said: $line" ;;
esac

banner "quickstart: move the files through the daemon"
echo "+ $example $root $name hello.txt random-8MiB.bin"
"$example" "$root" "$name" hello.txt random-8MiB.bin

if [ -n "$sfd" ]; then
  banner "quickstart: the same files with the sfd client"
  for f in hello.txt random-8MiB.bin; do
    echo "+ sfd --socket $root/$name cat $f | cmp - $f"
    "$sfd" --socket "$root/$name" cat "$f" | cmp - "$root/$f"
    echo "sfd cat $f: $(wc -c <"$root/$f" | tr -d ' ') bytes, identical"
  done
else
  echo "skipped: the sfd client (sfd/ not present)"
fi

banner "quickstart: stop the daemon (SIGTERM)"
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
pid=""
[ "$status" = 0 ] || die "sendfiled exited with status $status after SIGTERM"
[ ! -e "$root/$name" ] || die "sendfiled left its socket $root/$name behind"
echo "sendfiled exited 0 and removed its socket"
echo "quickstart: OK"
