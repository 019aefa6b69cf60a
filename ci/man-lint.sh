#!/usr/bin/env bash
# Lints the manual pages under man/ with mandoc and checks that they keep
# up with the code:
#   - `mandoc -T lint -W warning` on each page: any warning or error fails;
#   - every long option of `sendfiled --help` and `sfd --help` is in
#     sendfiled(8) / sfd(1) (binaries from the cargo target directory, built
#     here if missing);
#   - every function in client-c/include/*.h is in sendfiled(3), and the C
#     example in sendfiled(3) compiles against those headers (when client-c
#     has them).
# Needs mandoc (.ci/run --setup installs it where it is missing).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
root=$SFD_TOP
cd "$root"

have mandoc || die "man-lint: mandoc is needed (.ci/run --setup; apt-get install mandoc)"

pages=(man/*.[1-9])
for page in "${pages[@]}"; do
    # mandoc's own notes about a stale system database are not about the page.
    out=$(mandoc -T lint -W warning "$page" 2>&1) && rc=0 || rc=$?
    out=$(grep -v 'outdated mandoc.db' <<<"$out" || true)
    if [ "$rc" -eq 0 ] && [ -z "$out" ]; then
        ok "mandoc -T lint -W warning $page"
    else
        printf '%s\n' "$out"
        bad "mandoc -T lint -W warning $page (exit $rc)"
    fi
    if mandoc -T utf8 "$page" >/dev/null 2>&1; then ok "renders: $page"; else bad "renders: $page"; fi
done

# --- options and functions documented ------------------------------------
target=$(target_dir)
if command -v cargo >/dev/null 2>&1 &&
    { [ ! -x "$target/debug/sendfiled" ] || [ ! -x "$target/debug/sfd" ]; }; then
    cargo build -q -p sendfiled --bin sendfiled -p sfd --bin sfd
fi
check_options() { # binary page
    local bin=$1 page=$2 missing=""
    [ -x "$bin" ] || { echo "note: $bin not built; options of $page not checked"; return; }
    for opt in $("$bin" --help | grep -Eo -- '--[a-z][a-z-]+' | sort -u); do
        grep -Eq -- "^\.(It|Op).*Fl -${opt#--}( |$)" "$page" || missing="$missing $opt"
    done
    if [ -z "$missing" ]; then ok "every option of $(basename "$bin") is in $page"
    else bad "$page lacks:$missing"; fi
}
check_options "$target/debug/sendfiled" man/sendfiled.8
check_options "$target/debug/sfd" man/sfd.1

headers=(client-c/include/*.h)
if [ -e "${headers[0]}" ]; then
    missing=""
    for fn in $(grep -Eoh '\bsfd_[a-z_]+\(' "${headers[@]}" | tr -d '(' | sort -u); do
        grep -Eq "^\.(Fn|Fo) $fn( |$)" man/sendfiled.3 || missing="$missing $fn"
    done
    if [ -z "$missing" ]; then ok "every function in client-c/include is in sendfiled.3"
    else bad "sendfiled.3 lacks:$missing"; fi
    for c in SFD_MAX_PATH_LEN SFD_MAX_HDTR_LEN SFD_HDR_SIZE SFD_MAX_RESP_SIZE SFD_FILE_INFO SFD_XFER_STAT SFD_STAT_OK; do
        grep -q "$c" "${headers[@]}" || bad "header lacks $c, which sendfiled.3 documents"
    done
    if command -v cc >/dev/null 2>&1; then
        ex=$(mktemp -d)
        # The first literal block that starts with #include <sendfiled.h>,
        # with mdoc's \e turned back into a backslash.
        awk '/^#include <sendfiled.h>/ {on=1} on && /^\.Ed/ {exit} on {print}' man/sendfiled.3 |
            sed 's/\\e/\\/g' >"$ex/example.c"
        if cc -std=c11 -D_DEFAULT_SOURCE -Wall -Werror -fsyntax-only -Iclient-c/include "$ex/example.c"; then
            ok "the C example in sendfiled.3 compiles"
        else
            bad "the C example in sendfiled.3 does not compile"
        fi
        rm -rf "$ex"
    fi
else
    echo "note: client-c/include has no headers here; sendfiled.3 not checked against them"
fi

summary man-lint
