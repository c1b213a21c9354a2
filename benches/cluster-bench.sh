#!/usr/bin/env bash
# Durable write throughput of a local 3-member raftd cluster, the way the project
# reports it: for each client count, writes/s and p50/p99 from raft-bench, plus the
# CPU seconds of all member processes (and of raft-bench) per committed write, read
# from /proc/<pid>/stat before and after the run.
#
#   benches/cluster-bench.sh [CLIENTS...]          # default: 1 16 64 256
#
# Knobs (environment): BIN (directory holding raftd and raft-bench; default
# target/release, built if missing), DURATION (default 10s), VALUE_SIZE (256),
# KEY_SPACE (100000), BASE_PORT (17000), BENCH_FLAGS (extra raft-bench flags, e.g.
# "--http2 --connections 4"), KEEP=1 keeps the cluster's directory and logs.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-target/release}
DURATION=${DURATION:-10s}
VALUE_SIZE=${VALUE_SIZE:-256}
KEY_SPACE=${KEY_SPACE:-100000}
BASE_PORT=${BASE_PORT:-17000}
CLIENTS=("$@")
[ ${#CLIENTS[@]} -eq 0 ] && CLIENTS=(1 16 64 256)

if [ ! -x "$BIN/raftd" ] || [ ! -x "$BIN/raft-bench" ]; then
    cargo build --release -p raft-server -p raft-benches --bins
fi
TICKS=$(getconf CLK_TCK)
DIR=$(mktemp -d "${TMPDIR:-/tmp}/cluster-bench-XXXXXX")

"$BIN/raftd" local-cluster --nodes 3 --dir "$DIR" --base-port "$BASE_PORT" >"$DIR/local-cluster.log" 2>&1 &
CLUSTER=$!
stop() {
    kill -INT "$CLUSTER" 2>/dev/null || true
    wait "$CLUSTER" 2>/dev/null || true
    if [ -z "${KEEP:-}" ]; then rm -rf "$DIR"; else echo "kept $DIR"; fi
}
trap stop EXIT

ENDPOINTS=""
for i in 1 2 3; do
    ENDPOINTS+="${ENDPOINTS:+,}http://127.0.0.1:$((BASE_PORT + i))"
done
# Wait until a leader is elected.
for _ in $(seq 100); do
    if curl -sf "http://127.0.0.1:$((BASE_PORT + 1))/readyz" >/dev/null 2>&1; then break; fi
    sleep 0.1
done

members_cpu_ticks() {
    local total=0 pid fields
    for pid in $(pgrep -P "$CLUSTER" raftd); do
        # utime and stime: fields 14 and 15 (the name in field 2 has no spaces here).
        read -r -a fields <"/proc/$pid/stat"
        total=$((total + fields[13] + fields[14]))
    done
    echo "$total"
}

# A short warm-up so connections and the leader are settled.
"$BIN/raft-bench" --endpoints "$ENDPOINTS" --clients 16 --duration 2s --workload put >/dev/null

printf '%8s %12s %10s %10s %22s %22s\n' clients writes/s p50_ms p99_ms member_cpu_us/write bench_cpu_us/write
for clients in "${CLIENTS[@]}"; do
    before=$(members_cpu_ticks)
    # bash's `time` keyword reports raft-bench's own user and system CPU seconds.
    TIMEFORMAT='%U %S'
    # shellcheck disable=SC2086 # BENCH_FLAGS is a list of flags
    { time "$BIN/raft-bench" --endpoints "$ENDPOINTS" --clients "$clients" --duration "$DURATION" \
        --value-size "$VALUE_SIZE" --key-space "$KEY_SPACE" --workload put ${BENCH_FLAGS:-} \
        --json "$DIR/result-$clients.json" >"$DIR/bench-$clients.log" 2>&1; } 2>"$DIR/bench-cpu-$clients"
    after=$(members_cpu_ticks)
    python3 - "$DIR/result-$clients.json" "$((after - before))" "$TICKS" "$DIR/bench-cpu-$clients" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
ticks, per_second = int(sys.argv[2]), int(sys.argv[3])
user, system = map(float, open(sys.argv[4]).read().split()[-2:])
ops = max(report["ops"], 1)
latency = report["latency_us"]
print(f'{report["clients"]:8d} {report["throughput_ops_per_s"]:12.0f} '
      f'{latency["p50"] / 1000:10.2f} {latency["p99"] / 1000:10.2f} '
      f'{ticks / per_second * 1e6 / ops:22.0f} {(user + system) * 1e6 / ops:22.0f}')
PY
done
