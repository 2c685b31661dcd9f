#!/usr/bin/env bash
# One PPO update of the demo's tiny model (crucible-train `ppo-bench`: scoring with the
# policy, value head and reference, GAE, whitening, the minibatch epoch with AdamW on a
# fixed random batch of 32 prompts x 4 samples) against a PyTorch reference written for
# this project (scripts/ppo_bench_ref.py: the same model shape, settings and batch
# shape), in the same run, interleaved, both on 2 CPU threads. Prints each run, the
# medians and the ratio.
#
#   scripts/ppo-bench.sh [ROUNDS]        (default 3; each round times 5 updates per side)
#
# The reference runs in a venv with torch==2.13.0 from PyPI (target/torch-ref-venv, or
# $CRUCIBLE_TORCH_VENV): about 4.7 GB, since PyPI's torch brings the CUDA libraries.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
venv="${CRUCIBLE_TORCH_VENV:-target/torch-ref-venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -c 'import torch' 2>/dev/null \
  || "$venv/bin/python" -m pip install --quiet --disable-pip-version-check torch==2.13.0
cargo build --release --locked --quiet -p crucible-train
bin="${CARGO_TARGET_DIR:-target}/release/crucible-train"
export OMP_WAIT_POLICY=passive
ours=() theirs=()
for r in $(seq "$rounds"); do
  a=$("$bin" ppo-bench --threads 2 --repeats 5)
  b=$("$venv/bin/python" scripts/ppo_bench_ref.py --threads 2 --repeats 5 2>/dev/null)
  echo "round $r: $a"
  echo "round $r: $b"
  ours+=("$(echo "$a" | python3 -c 'import json,sys; print(json.load(sys.stdin)["median_ms"])')")
  theirs+=("$(echo "$b" | python3 -c 'import json,sys; print(json.load(sys.stdin)["median_ms"])')")
done
python3 - "${ours[*]}" "${theirs[*]}" <<'PY'
import statistics, sys
ours, theirs = (list(map(float, a.split())) for a in sys.argv[1:3])
mo, mt = statistics.median(ours), statistics.median(theirs)
print("one PPO update, median of the rounds' medians: crucible-train %.1f ms, PyTorch %.1f ms" % (mo, mt))
print("ratio PyTorch / crucible-train: %.2fx (above 1: crucible-train is faster)" % (mt / mo))
PY
