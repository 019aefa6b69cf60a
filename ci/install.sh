#!/usr/bin/env bash
# Builds and installs sendfiled: the daemon, the sfd command, the C library
# (headers, pkg-config file), the manual pages and the service files.
#
#   PREFIX=/usr/local   where it goes (the default)
#   DESTDIR=            staging directory prepended to every path (packages)
#   NO_BUILD=1          install what is already built (in the profile below)
#   STRIP=0             install binaries with debug information and symbols:
#                       built with the `profiling` profile (target/profiling)
#                       instead of `release` (target/release), which has
#                       neither
#   LDCONFIG=0          do not run ldconfig after a live install (see below)
#
# After a live install (no DESTDIR) as root on Linux or FreeBSD, ldconfig runs
# so that the dynamic loader finds libsendfiled.so.0 at once; otherwise the
# command to run is printed.
#
#   sudo ci/install.sh                          # /usr/local
#   PREFIX=/usr DESTDIR=/tmp/pkg ci/install.sh  # stage a package
#
# Layout under PREFIX:
#   sbin/sendfiled  bin/sfd
#   share/man/man1/sfd.1  man3/sendfiled.3 (+ one link per function)
#   share/man/man8/sendfiled.8
#   share/sendfiled/dist/{systemd,freebsd,macos}/...  (paths set to PREFIX)
#   Linux:   lib/systemd/system/sendfiled@.{service,socket},
#            lib/sysusers.d/sendfiled.conf
#   FreeBSD: etc/rc.d/sendfiled
#   the C library's files, as `make -C client-c install` puts them.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
root=$SFD_TOP
PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
case $PREFIX in
/*) ;;
*) echo "install.sh: PREFIX must be an absolute path (got '$PREFIX')" >&2; exit 2 ;;
esac
PREFIX=${PREFIX%/}
[ -n "$PREFIX" ] || PREFIX=/
os=$(host_os)
cd "$root"

profile=release
if [ "${STRIP:-1}" = 0 ]; then
    profile=profiling
fi
if [ "${NO_BUILD:-0}" != 1 ]; then
    cargo build --profile "$profile" --locked -p sendfiled -p sfd
fi
rel=$(target_dir)/$profile

dest=$DESTDIR$PREFIX
sbindir=$dest/sbin
bindir=$dest/bin
mandir=$dest/share/man
distdir=$dest/share/sendfiled/dist
docdir=$dest/share/doc/sendfiled
daemon_path=${PREFIX%/}/sbin/sendfiled

say() { echo "  $*"; }
put() { # mode src dst
    install -m "$1" "$2" "$3"
    say "$3"
}
# Service files name the daemon by the usual package path; point them at
# this PREFIX's.
put_rewritten() { # mode src dst
    sed -e "s#/usr/local/sbin/sendfiled#$daemon_path#g" \
        -e "s#/usr/sbin/sendfiled#$daemon_path#g" "$2" >"$3.tmp"
    chmod "$1" "$3.tmp"
    mv "$3.tmp" "$3"
    say "$3"
}

echo "installing sendfiled into ${DESTDIR:+$DESTDIR}$PREFIX"
install -d "$sbindir" "$bindir" "$mandir/man1" "$mandir/man3" "$mandir/man8" \
    "$distdir/systemd" "$distdir/freebsd" "$distdir/macos" "$docdir"

put 0755 "$rel/sendfiled" "$sbindir/sendfiled"
put 0755 "$rel/sfd" "$bindir/sfd"

put 0644 man/sendfiled.8 "$mandir/man8/sendfiled.8"
put 0644 man/sfd.1 "$mandir/man1/sfd.1"
put 0644 man/sendfiled.3 "$mandir/man3/sendfiled.3"
# One name per function, as BSD MLINKS: `man sfd_read` finds the page.
for fn in $(sed -n 's/^\.Nm \(sfd_[a-z_]*\).*/\1/p' man/sendfiled.3); do
    ln -sf sendfiled.3 "$mandir/man3/$fn.3"
done
say "$mandir/man3/sfd_*.3 -> sendfiled.3"

for f in dist/systemd/*; do
    put_rewritten 0644 "$f" "$distdir/systemd/$(basename "$f")"
done
put_rewritten 0755 dist/freebsd/sendfiled "$distdir/freebsd/sendfiled"
put_rewritten 0644 dist/macos/org.sendfiled.sendfiled.plist "$distdir/macos/org.sendfiled.sendfiled.plist"

case $os in
Linux)
    unitdir=$dest/lib/systemd/system
    install -d "$unitdir" "$dest/lib/sysusers.d"
    put_rewritten 0644 dist/systemd/sendfiled@.service "$unitdir/sendfiled@.service"
    put_rewritten 0644 dist/systemd/sendfiled@.socket "$unitdir/sendfiled@.socket"
    put 0644 dist/systemd/sendfiled.sysusers "$dest/lib/sysusers.d/sendfiled.conf"
    ;;
FreeBSD)
    install -d "$dest/etc/rc.d"
    put_rewritten 0755 dist/freebsd/sendfiled "$dest/etc/rc.d/sendfiled"
    ;;
Darwin)
    echo "  note: the launchd job is in $distdir/macos; copy it to /Library/LaunchDaemons to use it"
    ;;
esac

for doc in README.md LICENSE; do
    [ -f "$doc" ] && put 0644 "$doc" "$docdir/$doc"
done

if [ -f client-c/Makefile ]; then
    echo "installing the C library (make -C client-c install)"
    make=${MAKE:-$(command -v gmake || echo make)}
    "$make" -C client-c install PREFIX="$PREFIX" DESTDIR="$DESTDIR" PROFILE="$profile"
    libdir=${PREFIX%/}/lib
    # The dynamic loader's cache: a library new in a directory such as
    # /usr/local/lib is not found until ldconfig has run. Only for the live
    # system: a staged package's post-install step does it there.
    if [ -n "$DESTDIR" ]; then
        echo "  note: staged in DESTDIR; run ldconfig after installing the package (its post-install step)"
    elif [ "${LDCONFIG:-1}" = 0 ]; then
        echo "  note: LDCONFIG=0: run ldconfig before programs use libsendfiled.so.0"
    else
        case $os in
        Linux | FreeBSD)
            if [ "$(id -u)" = 0 ] && command -v ldconfig >/dev/null 2>&1; then
                # FreeBSD: -m adds the directory to the hints (rc.d's
                # ldconfig_paths already has /usr/local/lib at boot).
                ldargs=""
                [ "$os" = FreeBSD ] && ldargs="-m $libdir"
                # shellcheck disable=SC2086
                if ldconfig $ldargs; then
                    echo "  ran ldconfig${ldargs:+ $ldargs}: programs find libsendfiled.so.0 now"
                else
                    echo "  WARNING: ldconfig failed; run it before programs use libsendfiled.so.0" >&2
                fi
                case $libdir in
                /usr/lib | /usr/local/lib | /lib | /usr/lib64 | /usr/local/lib64) ;;
                *) echo "  note: if $libdir is not in the loader's path, add it to /etc/ld.so.conf.d/ (Linux) or ldconfig_paths (FreeBSD) and run ldconfig" ;;
                esac
            else
                echo "  note: not root: run 'sudo ldconfig' so that programs find libsendfiled.so.0 in $libdir"
            fi
            ;;
        Darwin)
            echo "  note: programs find the library by its install name; set DYLD_LIBRARY_PATH=$libdir if $libdir is not searched"
            ;;
        esac
    fi
else
    echo "  note: client-c/Makefile is not here yet; the C library was not installed"
fi

echo "done. Start a daemon:  $daemon_path -s NAME -r ROOT   (see man 8 sendfiled)"
