#!/bin/sh
# Checks deploy/systemd/raftd.service with the installed systemd tools:
# `systemd-analyze verify` must print nothing, and the offline security review
# must score 2.5 or lower ("OK"). verify wants the ExecStart binary to exist, so
# it runs on a copy of the unit whose ExecStart names RAFTD_BIN (default: the
# debug build, target/debug/raftd).
#
#   deploy/systemd/check.sh [RAFTD_BIN]
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
unit="$here/raftd.service"
bin=${1:-${RAFTD_BIN:-$root/target/debug/raftd}}
max_exposure=2.5

command -v systemd-analyze >/dev/null || { echo "check.sh: systemd-analyze not found" >&2; exit 1; }
[ -x "$bin" ] || { echo "check.sh: no raftd binary at $bin (build it first)" >&2; exit 1; }
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sed "s|^ExecStart=/usr/local/bin/raftd |ExecStart=$bin |" "$unit" >"$work/raftd.service"
grep -q "^ExecStart=$bin " "$work/raftd.service" || { echo "check.sh: no ExecStart=/usr/local/bin/raftd line" >&2; exit 1; }

echo "systemd-analyze verify raftd.service"
out=$(systemd-analyze verify "$work/raftd.service" 2>&1) || { echo "$out" >&2; exit 1; }
if [ -n "$out" ]; then
    echo "$out" >&2
    echo "check.sh: systemd-analyze verify printed warnings" >&2
    exit 1
fi

echo "systemd-analyze security --offline=true raftd.service"
report=$(systemd-analyze security --offline=true --no-pager "$unit" 2>&1) || { echo "$report" >&2; exit 1; }
exposure=$(printf '%s\n' "$report" | sed -n 's/.*Overall exposure level for raftd.service: \([0-9.]*\).*/\1/p')
[ -n "$exposure" ] || { echo "$report" >&2; echo "check.sh: no exposure level in the report" >&2; exit 1; }
echo "exposure level: $exposure (at most $max_exposure)"
if ! awk -v e="$exposure" -v m="$max_exposure" 'BEGIN { exit !(e <= m) }'; then
    printf '%s\n' "$report" | grep -v '^✓' >&2
    echo "check.sh: exposure $exposure is above $max_exposure" >&2
    exit 1
fi
echo "systemd unit: ok"
