#!/usr/bin/env bash
# Load test of `crucible serve`, on loopback only, bounded in count and time.
#
#   scripts/loadtest.sh [REQUESTS] [CLIENTS]      (default 20000 requests, 200 clients)
#
# 1. Writes the load mix (good, wrong and hostile programs, one problem each) and judges
#    it with `crucible judge`: those are the expected verdicts and rewards.
# 2. Starts `crucible serve` on 127.0.0.1 and sends REQUESTS requests from CLIENTS
#    concurrent clients. Fails unless every request got a report (0 lost) and every
#    verdict and reward equals the CLI's. Prints p50/p90/p99 latency and throughput.
# 3. kill -9 of the server in the middle of a second load (KILL_REQUESTS, default 2000),
#    then a restart on the same port: clients may get errors, never a wrong reward, and
#    the restarted server must serve a final 200 requests without a failure.
#
# Environment: WORKERS (default: cores), MAX_SECONDS (default 1500, per load run),
# KILL_REQUESTS, OUT (folder for logs and JSON summaries; default a temp dir).
set -euo pipefail
cd "$(dirname "$0")/.."

REQUESTS=${1:-20000}
CLIENTS=${2:-200}
WORKERS=${WORKERS:-$(nproc)}
MAX_SECONDS=${MAX_SECONDS:-1500}
KILL_REQUESTS=${KILL_REQUESTS:-2000}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"

cargo build --release --quiet -p crucible-cli -p crucible-server --bins
BIN=target/release
SERVER_PID=

cleanup() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT

# Starts the server on $1 (a port, 0 for any); sets SERVER_PID and URL.
start_server() {
    local port=$1 log=$OUT/server-$2.log
    "$BIN/crucible" serve --bind "127.0.0.1:$port" --workers "$WORKERS" \
        --queue $((CLIENTS + 64)) 2>"$log" &
    SERVER_PID=$!
    for _ in $(seq 1 200); do
        URL=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$log" | head -n1 || true)
        [[ -n "$URL" ]] && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$log"; return 1; }
        sleep 0.05
    done
    echo "server did not start"; cat "$log"; return 1
}

echo "== expected verdicts: crucible judge on the mix"
"$BIN/crucible-loadgen" write-mix --out "$OUT/mix" >/dev/null
"$BIN/crucible" judge --dataset "crucible=$OUT/mix/problems.jsonl" \
    --solutions "$OUT/mix/samples.jsonl" --out "$OUT/cli.jsonl" --no-progress 2>"$OUT/cli.log"
python3 - "$OUT/cli.jsonl" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(f"  {r['task_id']:<22} {r['verdict']:<22} reward {r['reward']}")
EOF

echo "== load: $REQUESTS requests from $CLIENTS clients, $WORKERS workers, $(nproc) cores"
start_server 0 main
echo "server at $URL (pid $SERVER_PID)"
"$BIN/crucible-loadgen" run --endpoint "$URL" --clients "$CLIENTS" --requests "$REQUESTS" \
    --expect "$OUT/cli.jsonl" --max-seconds "$MAX_SECONDS" --json-out "$OUT/load.json"
python3 - "$URL" <<'EOF'
import sys, urllib.request
text = urllib.request.urlopen(sys.argv[1] + "/metrics", timeout=10).read().decode()
for line in text.splitlines():
    if line.startswith(("crucible_queue_depth", "crucible_in_flight", "crucible_executions_total",
                        "crucible_rejected_queue_full_total", "crucible_http_requests_total")):
        print("  metrics:", line)
EOF
PORT=${URL##*:}

echo "== kill -9 mid-load ($KILL_REQUESTS requests), restart on port $PORT"
"$BIN/crucible-loadgen" run --endpoint "$URL" --clients "$CLIENTS" --requests "$KILL_REQUESTS" \
    --expect "$OUT/cli.jsonl" --allow-errors --attempts 2 --request-deadline 20 \
    --max-seconds "$MAX_SECONDS" --json-out "$OUT/kill.json" >"$OUT/kill.txt" &
LOAD_PID=$!
sleep 4
kill -9 "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null || true
echo "killed server $SERVER_PID with SIGKILL"
# A SIGKILLed server cannot remove the cgroups of its runs in flight; they are empty once
# those runs died. Count and remove them.
sleep 0.5
left=$(find /sys/fs/cgroup -mindepth 2 -maxdepth 3 -type d -name "run-$SERVER_PID-*" 2>/dev/null || true)
echo "run cgroups left by the killed server: $(grep -c . <<<"$left" || true) (removed)"
[[ -n "$left" ]] && xargs -r rmdir <<<"$left" 2>/dev/null || true
sleep 2
start_server "$PORT" restarted
echo "restarted at $URL (pid $SERVER_PID)"
kill_rc=0
wait "$LOAD_PID" || kill_rc=$?
cat "$OUT/kill.txt"
if [[ $kill_rc -ne 0 ]]; then
    echo "FAIL: wrong rewards or rejected requests during the kill -9 run"
    exit 1
fi
echo "== after restart: 200 requests"
"$BIN/crucible-loadgen" run --endpoint "$URL" --clients 20 --requests 200 --expect "$OUT/cli.jsonl"
echo "== all load checks passed (logs and JSON in $OUT)"
