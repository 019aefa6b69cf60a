#!/usr/bin/env bash
# Tests the install: checks dist/ (ci/dist-check.sh), installs into a
# temporary DESTDIR with ci/install.sh, lists what went where, checks the
# key files, runs the installed programs, and moves a file through an
# installed daemon with the installed sfd (and, when the C library was
# installed, with a C program built against the installed headers and
# pkg-config file).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$SFD_TOP"
PREFIX=${PREFIX:-/usr/local}
work=$(mktemp -d)
daemon_pid=
cleanup() {
    if [ -n "$daemon_pid" ]; then
        kill -TERM "$daemon_pid" 2>/dev/null || true
        wait "$daemon_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

dest=$work/dest
DESTDIR=$dest PREFIX=$PREFIX "$BASH" ci/install.sh | tee "$work/install.out"
p=$dest$PREFIX

echo "--- installed files (under DESTDIR=$dest):"
(cd "$dest" && find . \( -type f -o -type l \) | sort | sed 's#^\./#/#')
echo "---"

check "ci/dist-check.sh (above)" "$BASH" ci/dist-check.sh "$p/sbin/sendfiled"

for f in sbin/sendfiled bin/sfd; do
    check "$PREFIX/$f is installed and executable" test -x "$p/$f"
done
for f in share/man/man8/sendfiled.8 share/man/man1/sfd.1 share/man/man3/sendfiled.3 \
    share/sendfiled/dist/systemd/sendfiled@.service share/sendfiled/dist/systemd/sendfiled@.socket \
    share/sendfiled/dist/freebsd/sendfiled share/sendfiled/dist/macos/org.sendfiled.sendfiled.plist; do
    check "$PREFIX/$f is installed" test -s "$p/$f"
done
# Lean installs: the release profile has no debug information and no symbol
# table (STRIP=0 installs the profiling build, which has both).
if have readelf; then
    for f in sbin/sendfiled bin/sfd; do
        check "$PREFIX/$f carries no debug information or symbol table" \
            bash -c '! readelf -S "$1" | grep -q -E "\.debug_info|\.symtab"' _ "$p/$f"
    done
    lib=$(find "$p" -name 'libsendfiled.so.*.*' | head -n1)
    check "libsendfiled.so carries no debug information" \
        bash -c '! readelf -S "$1" | grep -q "\.debug_info"' _ "$lib"
    check "libsendfiled.a carries no debug information" \
        bash -c '! readelf -S "$1" 2>/dev/null | grep -q "\.debug_info"' _ "$p/lib/libsendfiled.a"
fi
for prog in sendfiled sfd; do
    check "bash completion of $prog is installed and parses" \
        bash -n "$p/share/bash-completion/completions/$prog"
    check "zsh completion of $prog is installed" grep -q "^#compdef $prog\$" "$p/share/zsh/site-functions/_$prog"
    check "fish completion of $prog is installed" grep -q "^complete -c $prog " "$p/share/fish/vendor_completions.d/$prog.fish"
    if have zsh; then
        check "zsh completion of $prog parses" zsh -n "$p/share/zsh/site-functions/_$prog"
    fi
    if have fish; then
        check "fish completion of $prog parses" fish -n "$p/share/fish/vendor_completions.d/$prog.fish"
    fi
done
# Called as bash calls a -F function: command, word, previous word.
check "the bash completion of sfd offers its commands" \
    bash -c '. "$1"; COMP_WORDS=(sfd ca); COMP_CWORD=1; _sfd sfd ca sfd; [ "${COMPREPLY[*]}" = cat ]' _ \
    "$p/share/bash-completion/completions/sfd"
check "the bash completion of sendfiled offers --log's values" \
    bash -c '. "$1"; COMP_WORDS=(sendfiled --log s); COMP_CWORD=2; _sendfiled sendfiled s --log; [ "${COMPREPLY[*]}" = "stderr syslog" ]' _ \
    "$p/share/bash-completion/completions/sendfiled"
check "LICENSE is installed with the documentation" grep -q "BSD 2-Clause License" "$p/share/doc/sendfiled/LICENSE"
check "man links: sfd_read.3 -> sendfiled.3" test "$(readlink "$p/share/man/man3/sfd_read.3")" = sendfiled.3
if [ "$(uname -s)" = Linux ]; then
    for f in lib/systemd/system/sendfiled@.service lib/systemd/system/sendfiled@.socket lib/sysusers.d/sendfiled.conf; do
        check "$PREFIX/$f is installed" test -s "$p/$f"
    done
    check "installed unit runs $PREFIX/sbin/sendfiled" \
        grep -q "^ExecStart=$PREFIX/sbin/sendfiled " "$p/lib/systemd/system/sendfiled@.service"
fi
if [ -f client-c/Makefile ]; then
    for f in include/sendfiled.h include/responses.h; do
        check "$PREFIX/$f is installed" test -s "$p/$f"
    done
    check "libsendfiled (shared and static) is installed" \
        test -n "$(find "$p" -name 'libsendfiled.so*' -o -name 'libsendfiled*.dylib')" -a \
        -n "$(find "$p" -name libsendfiled.a)"
    check "sendfiled.pc is installed" test -n "$(find "$p" -name sendfiled.pc)"
    # The build (make -C client-c, run by install.sh) records what rustc
    # reports for the static library; the .pc's Libs.private is that list
    # without -lgcc_s (which has no archive: `cc -static` cannot find it).
    native=$(target_dir)/release/libsendfiled.native-static-libs
    want=$(tr ' ' '\n' <"$native" 2>/dev/null | grep -v -x -e -lgcc_s -e '' | tr '\n' ' ' | sed 's/ *$//')
    check "sendfiled.pc's Libs.private is rustc's native-static-libs less -lgcc_s ($want)" \
        test -s "$native" -a "$(sed -n 's/^Libs.private: *//p' "$p/lib/pkgconfig/sendfiled.pc")" = "$want"
    check "sendfiled.pc names no URL (there is no public repository)" \
        bash -c '! grep -q "^URL:" "$1"' _ "$p/lib/pkgconfig/sendfiled.pc"
fi
check "installed rc.d script runs $PREFIX/sbin/sendfiled" \
    grep -q "^procname=\"$PREFIX/sbin/sendfiled\"" "$p/share/sendfiled/dist/freebsd/sendfiled"
check "nothing was installed outside DESTDIR$PREFIX" \
    test -z "$(find "$dest" \( -type f -o -type l \) | grep -v "^$dest${PREFIX%/}/")"

# ldconfig: never for a staged install; after a live one (no DESTDIR) as root
# on Linux or FreeBSD it runs, else install.sh says what to run.
if [ -f client-c/Makefile ]; then
    check "a staged install says ldconfig is the package's post-install step" \
        grep -q "staged in DESTDIR; run ldconfig after installing the package" "$work/install.out"
    # Built again (the C library only: it bakes PREFIX/sbin/sendfiled in).
    PREFIX=$work/live "$BASH" ci/install.sh >"$work/live.out" 2>&1 || cat "$work/live.out"
    case $(uname -s) in
    Linux | FreeBSD)
        if [ "$(id -u)" = 0 ] && have ldconfig; then
            check "a live install as root runs ldconfig and says so" grep -q "ran ldconfig" "$work/live.out"
        else
            check "a live install without root says to run ldconfig" grep -q "run 'sudo ldconfig'" "$work/live.out"
        fi
        ;;
    esac
fi

version=$("$p/sbin/sendfiled" --version)
check "sendfiled --version: $version" grep -q '^sendfiled [0-9]' <<<"$version"
check "sfd --help" bash -c '"$1" --help | grep -q "Usage: sfd"' _ "$p/bin/sfd"
check "sfd --version" bash -c '"$1" --version | grep -q "^sfd [0-9]"' _ "$p/bin/sfd"
if command -v mandoc >/dev/null 2>&1; then
    check "installed sendfiled.8 renders" bash -c 'mandoc -T utf8 "$1" >/dev/null' _ "$p/share/man/man8/sendfiled.8"
fi

# --- the quick start, with the installed programs ----------------------
srv=$work/srv
mkdir -p "$srv/run"
printf 'hello through sendfiled\n' >"$srv/hello.txt"
name=installtest$$
mkfifo "$work/ready"
SENDFILED_ALLOW_ROOT=1 "$p/sbin/sendfiled" -s "$name" -r "$srv" -S run -p --log none \
    >"$work/ready" &
daemon_pid=$!
# -p prints one line ("ready PID" or "error ERRNO ...") and closes standard
# output: reading it waits for readiness or failure without sleeping.
ready=
read -r ready _ <"$work/ready" || true
check "installed daemon is ready" test "${ready:-}" = ready
sock=$srv/run/$name
# Through the daemon (SENDFILED_INLINE=0: sfd would otherwise read a cached
# file in its own process), so that the daemon's counters show it.
check "installed sfd cats a file" \
    bash -c '[ "$(SENDFILED_INLINE=0 "$1" --socket "$2" cat hello.txt)" = "hello through sendfiled" ]' _ "$p/bin/sfd" "$sock"
check "installed sfd pings the daemon" \
    bash -c '"$1" --socket "$2" ping | grep -q "1 completed"' _ "$p/bin/sfd" "$sock"

pc=$(find "$dest" -name sendfiled.pc 2>/dev/null | head -n1)
if [ -n "$pc" ] && command -v pkg-config >/dev/null 2>&1 && command -v cc >/dev/null 2>&1; then
    # The example of sendfiled(3), built as a user would, against the staged
    # install (PKG_CONFIG_SYSROOT_DIR maps the .pc's paths into DESTDIR).
    awk '/^#include <sendfiled.h>/ {on=1} on && /^\.Ed/ {exit} on {print}' man/sendfiled.3 |
        sed -e 's/\\e/\\/g' -e "s#\"/run/sendfiled\", \"www\"#\"$srv/run\", \"$name\"#" \
            -e 's#"index.html"#"hello.txt"#g' >"$work/app.c"
    flags=$(PKG_CONFIG_PATH=$(dirname "$pc") PKG_CONFIG_SYSROOT_DIR=$dest pkg-config --cflags --libs sendfiled)
    # shellcheck disable=SC2086
    if cc -o "$work/app" "$work/app.c" $flags; then
        ok "a C program builds with pkg-config --cflags --libs sendfiled"
        libdir=$(dirname "$(find "$dest" -name 'libsendfiled.so*' | head -n1)")
        out=$(LD_LIBRARY_PATH=$libdir DYLD_LIBRARY_PATH=$libdir "$work/app" || true)
        check "the C program reads a file through the installed daemon" \
            test "$out" = "hello through sendfiled"
    else
        bad "a C program builds with pkg-config --cflags --libs sendfiled"
    fi
    # The same program linked statically, with only what pkg-config --static
    # says (Libs.private once named -lgcc_s, which no static link finds).
    sflags=$(PKG_CONFIG_PATH=$(dirname "$pc") PKG_CONFIG_SYSROOT_DIR=$dest pkg-config --static --cflags --libs sendfiled)
    case $(uname -s) in
    Linux | FreeBSD)
        # -lsendfiled picks the archive under -static; the warnings glibc
        # prints for getpwnam and getaddrinfo in a static link are not errors.
        # shellcheck disable=SC2086
        if cc -static -o "$work/app-static" "$work/app.c" $sflags 2>"$work/static.err"; then
            ok "a C program links with cc -static and pkg-config --static --libs sendfiled"
            out=$("$work/app-static" || true)
            check "the static C program reads a file through the installed daemon" \
                test "$out" = "hello through sendfiled"
        else
            cat "$work/static.err"
            bad "a C program links with cc -static and pkg-config --static --libs sendfiled"
        fi
        ;;
    *)
        echo "note: no fully static executables on $(uname -s); the static link is not tested"
        ;;
    esac
else
    echo "note: no sendfiled.pc installed (or no pkg-config/cc): the C library was not tested"
fi

# sfd_spawn finds the daemon installed with the library (PREFIX/sbin, not on
# PATH) and creates a missing socket directory: the live install above.
if [ -f client-c/Makefile ] && have cc && [ -x "$work/live/sbin/sendfiled" ]; then
    cat >"$work/spawn.c" <<'CEOF'
#include <sendfiled.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
int main(int argc, char** argv)
{
    pid_t pid;
    (void)argc;
    pid = sfd_spawn(argv[1], argv[2], "run/new", 0, 0);
    if (pid <= 0) {
        printf("sfd_spawn: %s\n", pid == 0 ? "already running" : strerror(errno));
        return 1;
    }
    printf("%s\n", sfd_shutdown(pid) == 0 ? "started and stopped" : "bad shutdown");
    return 0;
}
CEOF
    mkdir -p "$work/spawnroot"
    if cc -Wall -Wextra -Werror -pedantic -I"$work/live/include" -o "$work/spawn" "$work/spawn.c" \
        -L"$work/live/lib" -lsendfiled; then
        out=$(env -u SENDFILED_BIN PATH=/usr/bin:/bin SENDFILED_ALLOW_ROOT=1 \
            LD_LIBRARY_PATH="$work/live/lib" DYLD_LIBRARY_PATH="$work/live/lib" \
            "$work/spawn" "spawn$$" "$work/spawnroot" 2>&1 || true)
        check "sfd_spawn starts PREFIX/sbin/sendfiled with no SENDFILED_BIN and no sendfiled on PATH ($out)" \
            test "$out" = "started and stopped"
        check "sfd_spawn created the missing socket directory" test -d "$work/spawnroot/run/new"
    else
        bad "the sfd_spawn program builds against the live install"
    fi
fi

# The build tree itself: install.sh built the release library, and a program
# linked with -L <target>/release finds libsendfiled's SONAME there.
rel=$(target_dir)/release
if [ -f client-c/Makefile ] && have cc && { [ -e "$rel/libsendfiled.so" ] || [ -e "$rel/libsendfiled.dylib" ]; }; then
    printf '#include <sendfiled.h>\nint main(void) { return sfd_get_cmd("\\x81") == SFD_FILE_INFO ? 0 : 1; }\n' >"$work/tree.c"
    check "a program linked with -L target/release -lsendfiled runs with only that directory on the library path" \
        bash -c 'cc -Iclient-c/include -o "$1/tree" "$1/tree.c" -L"$2" -lsendfiled &&
            LD_LIBRARY_PATH=$2 DYLD_LIBRARY_PATH=$2 "$1/tree"' _ "$work" "$rel"
fi

kill -TERM "$daemon_pid"
status=0
wait "$daemon_pid" || status=$?
daemon_pid=
check "installed daemon exits 0 on SIGTERM" test "$status" -eq 0
check "its socket file is removed" test ! -e "$sock"

# --- socket activation by systemd's own tool, as a socket unit does it -----
if command -v systemd-socket-activate >/dev/null 2>&1; then
    asock=$work/activated.sock
    mkfifo "$work/activate.err"
    systemd-socket-activate --datagram -l "$asock" -E SENDFILED_ALLOW_ROOT=1 \
        "$p/sbin/sendfiled" -s activated -r "$srv" --log stderr 2>"$work/activate.err" &
    daemon_pid=$!
    exec 7<"$work/activate.err"
    while read -r line <&7; do
        case $line in Listening*) break ;; esac
    done
    cat <&7 >"$work/activate.log" &
    exec 7<&-
    # The first datagram starts the daemon (exec, same pid), which finds it
    # queued on the socket it is handed.
    check "socket activation: sfd cat starts the daemon and gets the file" \
        bash -c '[ "$("$1" --socket "$2" cat hello.txt)" = "hello through sendfiled" ]' _ "$p/bin/sfd" "$asock"
    kill -TERM "$daemon_pid"
    status=0
    wait "$daemon_pid" || status=$?
    daemon_pid=
    check "socket activation: the daemon exits 0 on SIGTERM" test "$status" -eq 0
    wait
    check "socket activation: the daemon logged the passed socket" \
        grep -q "socket passed by the service manager" "$work/activate.log"
else
    echo "note: systemd-socket-activate not found; socket activation is covered by tests/activation.rs"
fi

summary install-test
