#!/usr/bin/env bash
# Requests/s for a trivial Python submission (`print(input())`, one stdio test) through
# the HTTP path against the CLI paths, on this machine, in the same run.
#
#   scripts/bench-http-vs-cli.sh [N] [REPEATS]     (default 1000 submissions, 3 repeats)
#
# Paths measured, each REPEATS times (the median is reported):
#   http        crucible serve + crucible-loadgen (CLIENTS concurrent keep-alive clients,
#               default 32), N requests to POST /v1/judge
#   cli-judge   crucible judge over a samples file of the same N submissions (the CLI's
#               best case: one process, its own scheduler)
#   cli-run     one `crucible run` process per submission, WORKERS at a time (what a
#               trainer shelling out to the CLI gets); N/4 submissions to bound the time
# All use WORKERS judgements at once (default: cores). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-1000}
REPEATS=${2:-3}
WORKERS=${WORKERS:-$(nproc)}
CLIENTS=${CLIENTS:-32}
OUT=$(mktemp -d)

cargo build --release --quiet -p crucible-cli -p crucible-server --bins
BIN=$PWD/target/release
SERVER_PID=
cleanup() {
    if [[ -n "$SERVER_PID" ]]; then kill -TERM "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$OUT"
}
trap cleanup EXIT

# The same problem and submission for every path.
python3 - "$OUT" "$N" <<'EOF'
import json, sys
out, n = sys.argv[1], int(sys.argv[2])
problem = {"id": "mix/trivial", "language": "python",
           "tests": [{"kind": "stdio", "stdin": "hi\n", "expected_stdout": "hi\n"}]}
open(f"{out}/problems.jsonl", "w").write(json.dumps(problem) + "\n")
with open(f"{out}/samples.jsonl", "w") as f:
    for _ in range(n):
        f.write(json.dumps({"task_id": "mix/trivial", "completion": "print(input())\n"}) + "\n")
open(f"{out}/prog.py", "w").write("print(input())\n")
open(f"{out}/in.txt", "w").write("hi\n")
EOF

now() { date +%s.%N; }
rate() { python3 -c "import sys; print(f'{int(sys.argv[1]) / (float(sys.argv[3]) - float(sys.argv[2])):.1f}')" "$@"; }
median() { python3 -c "import sys, statistics; print(f'{statistics.median(float(x) for x in sys.argv[1:]):.1f}')" "$@"; }

"$BIN/crucible" serve --bind 127.0.0.1:0 --workers "$WORKERS" --queue 1024 2>"$OUT/server.log" &
SERVER_PID=$!
URL=
for _ in $(seq 1 200); do
    URL=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$OUT/server.log" | head -n1 || true)
    [[ -n "$URL" ]] && break
    sleep 0.05
done
[[ -n "$URL" ]] || { cat "$OUT/server.log"; exit 1; }
# Warm-up, so that no path pays for first-use costs the others do not.
"$BIN/crucible-loadgen" run --endpoint "$URL" --only trivial --requests 50 --clients 8 >/dev/null

HTTP=(); JUDGE=(); RUN=()
RUN_N=$(( N / 4 > 0 ? N / 4 : 1 ))
for r in $(seq 1 "$REPEATS"); do
    "$BIN/crucible-loadgen" run --endpoint "$URL" --only trivial --requests "$N" \
        --clients "$CLIENTS" --json-out "$OUT/http-$r.json" >"$OUT/http-$r.txt"
    h=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert d['judged']==d['sent']==$N, d; print(f\"{d['throughput_rps']:.1f}\")" "$OUT/http-$r.json")
    HTTP+=("$h")

    t0=$(now)
    "$BIN/crucible" judge --dataset "crucible=$OUT/problems.jsonl" --solutions "$OUT/samples.jsonl" \
        --concurrency "$WORKERS" --no-progress --out "$OUT/judge.jsonl" 2>/dev/null
    t1=$(now)
    accepted=$(grep -c '"verdict":"accepted"' "$OUT/judge.jsonl" || true)
    [[ "$accepted" == "$N" ]] || { echo "cli-judge: only $accepted of $N accepted"; exit 1; }
    JUDGE+=("$(rate "$N" "$t0" "$t1")")

    t0=$(now)
    seq 1 "$RUN_N" | xargs -P "$WORKERS" -I{} sh -c \
        "'$BIN/crucible' run --lang python --stdin '$OUT/in.txt' '$OUT/prog.py' >/dev/null 2>&1"
    t1=$(now)
    RUN+=("$(rate "$RUN_N" "$t0" "$t1")")
    echo "repeat $r: http ${HTTP[-1]} req/s (p50 $(python3 -c "import json,sys; print(round(json.load(open(sys.argv[1]))['p50_ms'],1))" "$OUT/http-$r.json") ms), cli-judge ${JUDGE[-1]} subs/s, cli-run ${RUN[-1]} subs/s"
done

mh=$(median "${HTTP[@]}"); mj=$(median "${JUDGE[@]}"); mr=$(median "${RUN[@]}")
echo
echo "trivial Python submission, $N per run ($RUN_N for cli-run), $REPEATS repeats, $WORKERS workers, $(nproc) cores"
printf "%-10s %12s\n" path "median/s"
printf "%-10s %12s\n" http "$mh" cli-judge "$mj" cli-run "$mr"
python3 -c "import sys; h,j,r=map(float,sys.argv[1:]); print(f'ratio http / cli-judge = {h/j:.2f}x'); print(f'ratio http / cli-run   = {h/r:.2f}x')" "$mh" "$mj" "$mr"
