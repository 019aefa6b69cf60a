#!/usr/bin/env bash
# Checks the service files under dist/ without the systems they are for:
#   - systemd units: parsed as unit files with the keys they need, and
#     `systemd-analyze verify` on an instance when systemd-analyze is here
#     (any message it prints fails the check);
#   - FreeBSD rc.d script: `sh -n`, and the rc.subr pieces it must have;
#   - launchd plist: parsed with Python's plistlib, with the keys it needs.
#
# Usage: ci/dist-check.sh [SENDFILED_BINARY]
# With a daemon binary, systemd-analyze verify runs the unit with ExecStart
# pointing at it (verify insists that the executable exists).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

dist=$SFD_TOP/dist
daemon=${1:-}

py=$(command -v python3 || command -v python || true)
if [ -z "$py" ]; then
    echo "dist-check: python3 is needed" >&2
    exit 1
fi

# --- systemd -----------------------------------------------------------
if "$py" - "$dist/systemd" <<'EOF'
import sys, os, re

def parse(path):
    """A systemd unit file: [Section] headers, KEY=VALUE lines, '#'/';'
    comments, backslash continuations. Returns {section: [(key, value)]}."""
    sections, cur, pending = {}, None, ""
    with open(path, encoding="utf-8") as f:
        for n, raw in enumerate(f, 1):
            line = pending + raw.rstrip("\n")
            pending = ""
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            s = line.strip()
            if not s or s[0] in "#;":
                continue
            m = re.fullmatch(r"\[([A-Za-z]+)\]", s)
            if m:
                cur = m.group(1)
                if cur in sections:
                    raise SystemExit(f"{path}:{n}: section [{cur}] twice")
                sections[cur] = []
                continue
            if cur is None:
                raise SystemExit(f"{path}:{n}: key outside any section")
            k, eq, v = s.partition("=")
            if not eq or not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", k.strip()):
                raise SystemExit(f"{path}:{n}: not KEY=VALUE: {s!r}")
            sections[cur].append((k.strip(), v.strip()))
    if pending:
        raise SystemExit(f"{path}: ends in a continuation")
    return sections

def keys(sec):
    return {k: v for k, v in sec}

d = sys.argv[1]
svc = parse(os.path.join(d, "sendfiled@.service"))
sock = parse(os.path.join(d, "sendfiled@.socket"))
errors = []
def need(cond, what):
    if not cond:
        errors.append(what)

for name, u, secs in (("service", svc, ("Unit", "Service", "Install")),
                      ("socket", sock, ("Unit", "Socket", "Install"))):
    for s in secs:
        need(s in u, f"{name}: no [{s}]")
    need("Description" in keys(u.get("Unit", [])), f"{name}: no Description=")

s = keys(svc.get("Service", []))
exec_start = s.get("ExecStart", "")
need(exec_start.startswith("/"), "service: ExecStart= must be an absolute path")
need(" -s %i " in f" {exec_start} ", "service: ExecStart= must pass -s %i (the instance is the server name)")
need(" -r " in exec_start, "service: ExecStart= must pass -r ROOT")
need(" -d" not in f"{exec_start} ", "service: no -d under systemd (it supervises the process)")
for k, v in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("PrivateTmp", "yes")):
    need(s.get(k) == v, f"service: {k}={v} expected")
need("EnvironmentFile" in s, "service: EnvironmentFile= expected")
need(any(k in s for k in ("User", "DynamicUser")), "service: User= or DynamicUser= expected")
need("sendfiled@%i.socket" in keys(svc.get("Unit", [])).get("Requires", ""),
     "service: Requires=sendfiled@%i.socket expected")

k = keys(sock.get("Socket", []))
need(k.get("ListenDatagram") == "/run/sendfiled/%i", "socket: ListenDatagram=/run/sendfiled/%i expected")
need(k.get("SocketMode") == "0660", "socket: SocketMode=0660 expected")
need(not any(x in k for x in ("ListenStream", "ListenSequentialPacket")),
     "socket: only a datagram socket (the daemon refuses others)")
need(k.get("Accept", "no") == "no", "socket: Accept=no (one daemon serves the socket)")

for line in open(os.path.join(d, "sendfiled.sysusers"), encoding="utf-8"):
    line = line.strip()
    if line and not line.startswith("#"):
        need(line.split()[0] in ("u", "g", "m", "r"), f"sysusers: bad line {line!r}")

if errors:
    print("\n".join(errors))
    sys.exit(1)
EOF
then ok "systemd units parse and have the keys they need"
else bad "systemd units"
fi

if command -v systemd-analyze >/dev/null 2>&1; then
    unitdir=$(mktemp -d)
    trap 'rm -rf "$unitdir"' EXIT
    exe=${daemon:-$(command -v true)}
    for ext in service socket; do
        sed "s#^ExecStart=/usr/sbin/sendfiled#ExecStart=$exe#" \
            "$dist/systemd/sendfiled@.$ext" >"$unitdir/sendfiled@check.$ext"
    done
    if out=$(cd "$unitdir" && systemd-analyze verify --man=no \
        ./sendfiled@check.service ./sendfiled@check.socket 2>&1) && [ -z "$out" ]; then
        ok "systemd-analyze verify (instance sendfiled@check)"
    else
        printf '%s\n' "$out"
        bad "systemd-analyze verify"
    fi
else
    echo "note: systemd-analyze not found; unit files checked by the parser only"
fi

# --- FreeBSD -----------------------------------------------------------
rc=$dist/freebsd/sendfiled
if sh -n "$rc"; then ok "rc.d script: sh -n"; else bad "rc.d script: sh -n"; fi
missing=""
for want in '^# PROVIDE: sendfiled$' '^# REQUIRE:' '^# KEYWORD: shutdown$' \
    '^\. /etc/rc\.subr$' '^name="sendfiled"$' '^rcvar="sendfiled_enable"$' \
    '^load_rc_config \$name$' '^: \$\{sendfiled_enable:="NO"\}$' \
    '^pidfile=' '^command=' '^run_rc_command "\$1"$'; do
    grep -Eq "$want" "$rc" || missing="$missing '$want'"
done
# rc.subr gives ${name}_user to su(1) and ${name}_flags to $command: the
# script must not use them for the daemon's own options.
grep -Eq '^: \$\{sendfiled_user' "$rc" && missing="$missing (sendfiled_user is rc.subr's)"
if [ -z "$missing" ]; then ok "rc.d script has the rc.subr pieces"; else bad "rc.d script lacks:$missing"; fi
if [ -x "$rc" ]; then ok "rc.d script is executable"; else bad "rc.d script is not executable"; fi

# --- macOS -------------------------------------------------------------
if "$py" - "$dist/macos/org.sendfiled.sendfiled.plist" <<'EOF'
import plistlib, sys
with open(sys.argv[1], "rb") as f:
    p = plistlib.load(f)
errors = []
if p.get("Label") != "org.sendfiled.sendfiled":
    errors.append("Label must be org.sendfiled.sendfiled (the file's name)")
args = p.get("ProgramArguments", [])
if not args or not args[0].startswith("/") or not args[0].endswith("/sendfiled"):
    errors.append("ProgramArguments[0] must be the absolute path of sendfiled")
for opt in ("-s", "-r"):
    if opt not in args:
        errors.append(f"ProgramArguments lacks {opt}")
if "-d" in args or "--daemon" in args:
    errors.append("no -d under launchd (it supervises the process)")
if not isinstance(p.get("KeepAlive"), (bool, dict)):
    errors.append("KeepAlive expected")
if errors:
    print("\n".join(errors)); sys.exit(1)
EOF
then ok "launchd plist parses and has the keys it needs"
else bad "launchd plist"
fi

# --- the options the files use exist -----------------------------------
if [ -n "$daemon" ] && [ -x "$daemon" ]; then
    help=$("$daemon" --help)
    unknown=""
    for opt in $(grep -Eoh -- '--[a-z][a-z-]+' "$dist/systemd/sendfiled@.service" \
        "$dist/systemd/example.conf" "$rc" "$dist/macos/org.sendfiled.sendfiled.plist" | sort -u); do
        grep -q -- "$opt" <<<"$help" || unknown="$unknown $opt"
    done
    if [ -z "$unknown" ]; then ok "every long option in dist/ is one sendfiled has"
    else bad "options sendfiled does not have:$unknown"; fi
fi

summary dist-check
