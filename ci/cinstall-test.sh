#!/usr/bin/env bash
# Tests the C library's install by cargo-c, the way packagers of Rust C
# libraries install them: `cargo cinstall --destdir` into a temporary
# directory, then checks the installed shared library (file, links, SONAME),
# the headers (installed as they are in client-c/include), sendfiled.pc
# (Libs.private as rustc reports it), and builds and runs a C program
# against the staged tree with pkg-config, dynamically and statically.
#
# cargo-c is not installed by CI (`cargo install cargo-c --locked` took
# about 10 minutes on the 2-core CI machine); where `cargo cinstall` is
# missing this script reports "skipped" and exits 77. The Makefile install
# (`make -C client-c install`) is tested by ci/c-tests.sh and
# ci/install-test.sh either way.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$SFD_TOP"

cargo cinstall --version >/dev/null 2>&1 ||
  skip_script "cargo-c is not installed (cargo install cargo-c --locked; CI does not: it takes ~10 min to build)"

work=$(mktemp -d "${TMPDIR:-/tmp}/sfd-cinstall.XXXXXX")
trap 'rm -rf "$work"' EXIT
dest=$work/dest
lib=$dest/usr/lib
inc=$dest/usr/include

banner "cargo cinstall --release --destdir <tmp> --prefix /usr --libdir /usr/lib"
cargo cinstall -p sendfiled-client-c --release --destdir "$dest" --prefix /usr --libdir /usr/lib
echo "--- installed files:"
(cd "$dest" && find . \( -type f -o -type l \) | sort | sed 's#^\./#/#')
echo "---"

case "$(host_os)" in
  Darwin)
    check "libsendfiled's dylib is installed" test -n "$(find "$lib" -name 'libsendfiled*.dylib')"
    if have otool; then
      check "its install name is the versioned one (libsendfiled.0.dylib)" \
        bash -c 'otool -D "$1"/libsendfiled.dylib | grep -q "libsendfiled\.0\.dylib"' _ "$lib"
    fi
    ;;
  *)
    check "libsendfiled.so.0.1.0 is installed (a file)" test -f "$lib/libsendfiled.so.0.1.0" -a ! -L "$lib/libsendfiled.so.0.1.0"
    check "libsendfiled.so.0 and libsendfiled.so link to it" \
      test "$(readlink "$lib/libsendfiled.so.0")" = libsendfiled.so.0.1.0 -a -L "$lib/libsendfiled.so"
    if have readelf; then
      soname=$(readelf -d "$lib/libsendfiled.so.0.1.0" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
      check "its SONAME is libsendfiled.so.0 (got '${soname}')" test "$soname" = libsendfiled.so.0
    fi
    ;;
esac
check "libsendfiled.a is installed" test -f "$lib/libsendfiled.a"
for h in sendfiled.h responses.h; do
  check "include/$h is installed as it is in client-c/include" cmp -s "$inc/$h" "client-c/include/$h"
done

pc=$lib/pkgconfig/sendfiled.pc
check "lib/pkgconfig/sendfiled.pc is installed" test -s "$pc"
if [ -s "$pc" ]; then
  sed 's/^/    /' "$pc"
  want=$(make -s -C client-c libs-private PROFILE=release)
  got=$(sed -n 's/^Libs.private: *//p' "$pc")
  check "Libs.private is what rustc reports for the static library ($want)" test "$got" = "$want"
fi

# A C program built against the staged tree as a user would build it against
# the installed one (PKG_CONFIG_SYSROOT_DIR maps the .pc's paths into it).
have pkg-config || die "pkg-config is not installed (.ci/run --setup installs it)"
have cc || die "cc is not installed"
cat >"$work/app.c" <<'C'
#include <sendfiled.h>
#include <stdio.h>

int main(void)
{
    /* The first byte of a file-info response names it; 0x81 is SFD_FILE_INFO. */
    if (sfd_get_cmd("\x81") != SFD_FILE_INFO) {
        fputs("sfd_get_cmd: unexpected\n", stderr);
        return 1;
    }
    puts("libsendfiled works");
    return 0;
}
C
pcenv() { PKG_CONFIG_PATH=$lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=$dest pkg-config "$@"; }
dyn_build() {
  # shellcheck disable=SC2046
  cc -std=c11 -Wall -Werror -o "$work/app" "$work/app.c" $(pcenv --cflags --libs sendfiled) &&
    [ "$(LD_LIBRARY_PATH=$lib DYLD_LIBRARY_PATH=$lib "$work/app")" = "libsendfiled works" ]
}
check "a C program builds with pkg-config --cflags --libs sendfiled and runs" dyn_build
if have readelf && [ -x "$work/app" ]; then
  check "it needs libsendfiled.so.0" bash -c 'readelf -d "$1" | grep -q "NEEDED.*\[libsendfiled\.so\.0\]"' _ "$work/app"
fi
static_build() {
  local libs
  libs=$(pcenv --static --libs-only-l sendfiled)
  libs=${libs//-lsendfiled/}
  # shellcheck disable=SC2046,SC2086
  cc -std=c11 -Wall -Werror -o "$work/app-static" "$work/app.c" $(pcenv --cflags sendfiled) \
    "$lib/libsendfiled.a" $libs &&
    [ "$("$work/app-static")" = "libsendfiled works" ]
}
check "the same program links statically (libsendfiled.a + pkg-config --static) and runs" static_build

summary cinstall-test
