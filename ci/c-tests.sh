#!/usr/bin/env bash
# ci/c-tests.sh - builds libsendfiled and the daemon, compiles the C test
# suite and the examples with warnings as errors, installs the library into a
# temporary prefix and builds an example against it with pkg-config, then
# runs the suite. The last line of output is "N passed, M failed"; the exit
# status is 0 iff nothing failed.
#
# usage: ci/c-tests.sh [--valgrind] [--no-install]
#   --valgrind    run every C test program under valgrind (memcheck: no
#                 invalid accesses, no definite leaks in the test process;
#                 the daemon is not traced)
#   --no-install  skip the install + pkg-config step
#
# Environment: CARGO_TARGET_DIR (default: <repo>/target), CC (default: cc),
# SFD_TEST=<name> to run one test, SENDFILED_LOG=stderr to see daemon logs,
# SFD_TEST_VERBOSE=1 to see the examples' stderr.
#
# This script is the one driver of the C suite: `cargo test` runs it through
# client-c/tests/c_suite.rs, and .ci/run calls it once more with --valgrind.

set -u
set -o pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROOT=$SFD_TOP
cd "$ROOT"

VALGRIND=0
INSTALL=1
for arg in "$@"; do
    case "$arg" in
        --valgrind) VALGRIND=1 ;;
        --no-install) INSTALL=0 ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "c-tests.sh: unknown argument $arg" >&2; exit 2 ;;
    esac
done

TARGET=$(target_dir)
export CARGO_TARGET_DIR=$TARGET
BUILD=$TARGET/c-tests
CC=${CC:-cc}
# client-c/Makefile is a GNU makefile (gmake on the BSDs).
MAKE=${MAKE:-$(command -v gmake || command -v make)}
CFLAGS=(-std=c11 -Wall -Wextra -Werror -pedantic -D_XOPEN_SOURCE=700 -g -O1)
INC=(-I "$ROOT/client-c/include")

# ok/bad/check count (ci/lib.sh); the last line is summary's.
finish() {
    summary
    exit
}

# --- build -----------------------------------------------------------------
if ! cargo build -q -p sendfiled-client-c; then
    bad "cargo build -p sendfiled-client-c"
    finish
fi
if ! cargo build -q --bin sendfiled; then
    bad "cargo build --bin sendfiled"
    finish
fi
export SENDFILED_BIN=$TARGET/debug/sendfiled

rm -rf "$BUILD"
mkdir -p "$BUILD/tests" "$BUILD/examples"

# Everything links against the build tree, as a developer would: cargo
# writes libsendfiled.so, programs linked against it ask for its SONAME,
# libsendfiled.so.0, and client-c/build.rs puts that link beside it.
LIBDIR=$TARGET/debug
export LD_LIBRARY_PATH=$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export DYLD_LIBRARY_PATH=$LIBDIR${DYLD_LIBRARY_PATH:+:$DYLD_LIBRARY_PATH}
case "$(host_os)" in
    Darwin) SONAME=libsendfiled.0.dylib ;;
    *) SONAME=libsendfiled.so.0 ;;
esac

# A program linked with -L <target>/debug -lsendfiled runs with only that
# directory on the library path (the loader finds the SONAME there).
build_tree_link() {
    printf '#include <sendfiled.h>\nint main(void) { return sfd_get_cmd("\\x81") == SFD_FILE_INFO ? 0 : 1; }\n' \
        >"$BUILD/tree.c"
    "$CC" "${CFLAGS[@]}" "${INC[@]}" "$BUILD/tree.c" -L"$LIBDIR" -lsendfiled -o "$BUILD/tree" || return 1
    if have readelf; then
        readelf -d "$BUILD/tree" | grep -q "NEEDED.*\[$SONAME\]" || {
            echo "$BUILD/tree does not need $SONAME" >&2
            return 1
        }
    fi
    test -e "$LIBDIR/$SONAME" || { echo "no $LIBDIR/$SONAME" >&2; return 1; }
    LD_LIBRARY_PATH=$LIBDIR DYLD_LIBRARY_PATH=$LIBDIR "$BUILD/tree"
}
check "a program linked against the build tree ($SONAME in target/debug) runs" build_tree_link

compile_harness() {
    "$CC" "${CFLAGS[@]}" "${INC[@]}" -c client-c/tests/harness.c -o "$BUILD/tests/harness.o"
}
check "compile tests/harness.c" compile_harness

TESTS=()
for src in client-c/tests/test_*.c; do
    name=$(basename "$src" .c)
    if "$CC" "${CFLAGS[@]}" "${INC[@]}" "$src" "$BUILD/tests/harness.o" \
        -L"$LIBDIR" -lsendfiled -o "$BUILD/tests/$name"; then
        ok "compile tests/$name.c"
        TESTS+=("$BUILD/tests/$name")
    else
        bad "compile tests/$name.c"
    fi
done

for src in client-c/examples/*.c; do
    name=$(basename "$src" .c)
    check "compile examples/$name.c" \
        "$CC" "${CFLAGS[@]}" "${INC[@]}" "$src" -L"$LIBDIR" -lsendfiled \
        -o "$BUILD/examples/$name"
done
export SFD_EXAMPLES_DIR=$BUILD/examples

# The shared library exports exactly the functions the headers declare.
if [ "$(uname -s)" != Darwin ] && command -v nm >/dev/null 2>&1; then
    exports_match() {
        local declared exported
        declared=$(grep -ohE '^[a-z_ ]+[ *]sfd_[a-z_]+\(' client-c/include/*.h |
            grep -oE 'sfd_[a-z_]+' | sort -u)
        exported=$(nm -D --defined-only "$TARGET/debug/libsendfiled.so" |
            awk '$2 == "T" { print $3 }' | sort -u)
        if [ "$declared" != "$exported" ]; then
            diff <(echo "$declared") <(echo "$exported") >&2
            return 1
        fi
        [ "$(echo "$declared" | wc -l)" -eq 16 ]
    }
    check "libsendfiled.so exports exactly the declared functions" exports_match
fi

# The header must also be usable from C++.
if command -v c++ >/dev/null 2>&1; then
    cxx_header() {
        printf '#include <sendfiled.h>\nint main() { return sfd_get_cmd("\\x81") == SFD_FILE_INFO ? 0 : 1; }\n' \
            > "$BUILD/cxx.cc"
        c++ -std=c++11 -Wall -Wextra -Werror -pedantic "${INC[@]}" "$BUILD/cxx.cc" \
            -L"$LIBDIR" -lsendfiled -o "$BUILD/cxx" && "$BUILD/cxx"
    }
    check "header compiles and links as C++" cxx_header
fi

# --- install into a temporary prefix, build sfd_cat with pkg-config ---------
if [ "$INSTALL" = 1 ]; then
    PREFIX=$BUILD/prefix
    STAGE=$BUILD/stage
    install_prefix() {
        "$MAKE" -s -C client-c install PROFILE=dev NO_BUILD=1 PREFIX="$PREFIX" >/dev/null
    }
    install_destdir() { # DESTDIR staging, LIBDIR override: check the layout
        "$MAKE" -s -C client-c install PROFILE=dev NO_BUILD=1 DESTDIR="$STAGE" \
            PREFIX=/usr LIBDIR=/usr/lib/x86_64-linux-gnu >/dev/null || return 1
        local l=$STAGE/usr/lib/x86_64-linux-gnu
        case "$(uname -s)" in
            Darwin) test -f "$l/libsendfiled.0.1.0.dylib" -a -L "$l/libsendfiled.0.dylib" -a -L "$l/libsendfiled.dylib" ;;
            *) test -f "$l/libsendfiled.so.0.1.0" -a -L "$l/libsendfiled.so.0" -a -L "$l/libsendfiled.so" ;;
        esac || return 1
        test -f "$l/libsendfiled.a" -a -f "$STAGE/usr/include/sendfiled.h" \
            -a -f "$STAGE/usr/include/responses.h" || return 1
        grep -qx 'prefix=/usr' "$l/pkgconfig/sendfiled.pc" &&
            grep -qx 'libdir=${prefix}/lib/x86_64-linux-gnu' "$l/pkgconfig/sendfiled.pc" &&
            grep -qx 'includedir=${prefix}/include' "$l/pkgconfig/sendfiled.pc"
    }
    pc_build() {
        have pkg-config || { echo "pkg-config is not installed (.ci/run --setup installs it)" >&2; return 1; }
        local flags
        flags=$(PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig pkg-config --cflags --libs sendfiled) || return 1
        # shellcheck disable=SC2086
        "$CC" "${CFLAGS[@]}" client-c/examples/sfd_cat.c $flags -o "$BUILD/sfd_cat_installed" || return 1
        # The shared library the binary needs is the versioned one.
        if command -v readelf >/dev/null; then
            readelf -d "$BUILD/sfd_cat_installed" | grep -q 'NEEDED.*\[libsendfiled\.so\.0\]' || return 1
        fi
    }
    pc_static() {
        local cflags libs
        cflags=$(PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig pkg-config --cflags sendfiled) || return 1
        libs=$(PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig pkg-config --static --libs-only-l sendfiled) || return 1
        libs=${libs//-lsendfiled/}
        # shellcheck disable=SC2086
        "$CC" "${CFLAGS[@]}" $cflags client-c/examples/sfd_cat.c "$PREFIX/lib/libsendfiled.a" $libs \
            -o "$BUILD/sfd_cat_static"
    }
    check "make install PREFIX=<tmp>" install_prefix
    check "make install DESTDIR=<tmp> PREFIX=/usr LIBDIR=..." install_destdir
    check "build sfd_cat with pkg-config --cflags --libs sendfiled" pc_build
    check "build sfd_cat against libsendfiled.a (pkg-config --static)" pc_static
    # test_examples runs them: the dynamic one finds the installed library.
    if [ -x "$BUILD/sfd_cat_installed" ]; then
        cat > "$BUILD/sfd_cat_installed.sh" <<EOF
#!/bin/sh
LD_LIBRARY_PATH="$PREFIX/lib" DYLD_LIBRARY_PATH="$PREFIX/lib" exec "$BUILD/sfd_cat_installed" "\$@"
EOF
        chmod +x "$BUILD/sfd_cat_installed.sh"
        export SFD_CAT_INSTALLED=$BUILD/sfd_cat_installed.sh
    fi
    [ -x "$BUILD/sfd_cat_static" ] && export SFD_CAT_STATIC=$BUILD/sfd_cat_static
fi

# --- run -------------------------------------------------------------------
RUNNER=()
if [ "$VALGRIND" = 1 ]; then
    export SFD_TEST_LARGE_MB=${SFD_TEST_LARGE_MB:-4}
    RUNNER=(valgrind -q --leak-check=full --errors-for-leak-kinds=definite
        --error-exitcode=99 --trace-children=no --child-silent-after-fork=yes)
fi

for t in ${TESTS[@]+"${TESTS[@]}"}; do
    name=$(basename "$t")
    log=$BUILD/tests/$name.log
    ${RUNNER[@]+"${RUNNER[@]}"} "$t" >"$log" 2>&1
    rc=$?
    while IFS= read -r line; do
        case "$line" in
            PASS\ *) ok "$name: ${line#PASS }" ;;
            FAIL\ *) bad "$name: ${line#FAIL }" ;;
            *) echo "$line" ;;
        esac
    done <"$log"
    if [ "$rc" -eq 99 ] && [ "$VALGRIND" = 1 ]; then
        bad "$name: valgrind reported errors (see $log)"
    elif [ "$rc" -ne 0 ] && ! grep -q '^FAIL ' "$log"; then
        bad "$name: exited with status $rc without reporting a failure (see $log)"
    fi
done

finish
