#!/usr/bin/env bash
# The Python fork server's figures (README "Fork server"):
#
#   scripts/bench-forkserver.sh overhead   per-execution overhead of a trivial program,
#                                          fork server vs fresh sandbox (criterion, then
#                                          per-run p50/p90/p99)
#   scripts/bench-forkserver.sh workers [REPEATS]
#                                          `crucible judge` throughput with 1 and 2
#                                          workers on HumanEval (164) and MBPP (974),
#                                          interleaved; medians and the 2/1 ratio
#   scripts/bench-forkserver.sh rss [N]    RSS of the executor (this process and every
#                                          zygote) over N executions (default 100000)
#   scripts/bench-forkserver.sh all        the three
#
# Data from ../shared/datasets (or $CRUCIBLE_SHARED_DATASETS).
set -euo pipefail
cd "$(dirname "$0")/.."
shared="${CRUCIBLE_SHARED_DATASETS:-../shared/datasets}"

overhead() {
  cargo bench --bench forkserver_overhead
}

workers() {
  local repeats="${1:-5}"
  cargo build --release --quiet -p crucible-cli
  local bin="${CARGO_TARGET_DIR:-target}/release/crucible"
  for set in "humaneval=$shared/humaneval/HumanEval.jsonl.gz" "mbpp=$shared/mbpp/mbpp.jsonl"; do
    local one=() two=()
    for _ in $(seq "$repeats"); do
      for c in 1 2; do
        local rate
        rate=$("$bin" judge --dataset "$set" --concurrency "$c" --no-progress --out /dev/null 2>&1 \
          | sed -n 's/^\([0-9.]*\) programs\/s.*/\1/p')
        if [ "$c" = 1 ]; then one+=("$rate"); else two+=("$rate"); fi
      done
    done
    python3 - "${set%%=*}" "${one[*]}" "${two[*]}" <<'PY'
import statistics, sys
name, one, two = sys.argv[1], list(map(float, sys.argv[2].split())), list(map(float, sys.argv[3].split()))
m1, m2 = statistics.median(one), statistics.median(two)
print("%-9s 1 worker %s -> median %.1f programs/s" % (name, one, m1))
print("%-9s 2 workers %s -> median %.1f programs/s" % (name, two, m2))
print("%-9s 2 workers / 1 worker: %.2fx" % (name, m2 / m1))
PY
  done
}

rss() {
  CRUCIBLE_RSS_EXECUTIONS="${1:-100000}" cargo test --release --test forkserver -- \
    --ignored --nocapture --exact rss_stays_flat_over_many_executions
}

case "${1:-all}" in
  overhead) overhead ;;
  workers) workers "${2:-5}" ;;
  rss) rss "${2:-100000}" ;;
  all) overhead; workers 5; rss 100000 ;;
  *) echo "usage: $0 overhead | workers [REPEATS] | rss [N] | all" >&2; exit 2 ;;
esac
