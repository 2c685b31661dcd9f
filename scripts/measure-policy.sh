#!/usr/bin/env bash
# Measures SmolLM2-135M-Instruct under crucible-train on this machine (CPU):
#   - pass@1 on HumanEval: one greedy sample per problem (chat template, code extracted
#     from the answer, up to 512 new tokens), judged by `crucible judge`;
#   - generation tokens/s at batch 1 and batch 8 (128 prompt + 128 new tokens per row);
#   - peak RSS of a process generating at batch 8 (model load included).
#
#   scripts/measure-policy.sh [OUT_DIR]     (default: target/policy-measurements)
#
# Sets up what it needs (libtorch, model, HumanEval). Takes 15-40 minutes on 2 cores,
# most of it sampling. Extra settings: PROMPT_STYLE=chat|completion, MAX_NEW_TOKENS.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-target/policy-measurements}"
mkdir -p "$out"
model=$(scripts/setup-model.sh)
data=$(scripts/fetch-humaneval.sh)
cargo build --release --locked -p crucible-cli -p crucible-train
target="${CARGO_TARGET_DIR:-target}"
train="$target/release/crucible-train"
crucible="$target/release/crucible"
style="${PROMPT_STYLE:-chat}"
samples="$out/samples-greedy-$style.jsonl"

echo "== load: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores" >&2
echo "== sampling HumanEval (greedy, $style prompts)" >&2
"$train" sample --model "$model" --dataset "humaneval=$data" --n 1 --temperature 0 \
  --max-new-tokens "${MAX_NEW_TOKENS:-512}" --batch-size 8 --prompt-style "$style" --out "$samples"
echo "== judging" >&2
rc=0
"$crucible" judge --dataset "humaneval=$data" --solutions "$samples" --out "$out/judged-greedy-$style.jsonl" \
  --no-progress || rc=$?
if [ "$rc" -ne 0 ]; then
  echo "measure-policy: crucible judge exited $rc (see above); pass@1 below counts what was judged" >&2
fi
python3 - "$out/judged-greedy-$style.jsonl" <<'PY'
import collections, json, sys
reports = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
verdicts = collections.Counter(r["verdict"] for r in reports)
passed = verdicts.get("accepted", 0)
print(f"pass@1 (greedy): {passed}/{len(reports)} = {passed / max(len(reports), 1):.4f}")
print("verdicts:", dict(verdicts.most_common()))
PY

echo "== throughput (tokens/s), CPU" >&2
"$train" bench --model "$model" --device cpu --batch 1,8 --prompt-tokens 128 --new-tokens 128 --repeats 2 \
  | tee "$out/throughput.jsonl"

echo "== peak RSS, generation at batch 8" >&2
python3 - "$train" "$model" <<'PY'
import resource, subprocess, sys
train, model = sys.argv[1:3]
subprocess.run([train, "bench", "--model", model, "--device", "cpu", "--batch", "8",
                "--prompt-tokens", "128", "--new-tokens", "128", "--repeats", "1"],
               check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(f"peak RSS at batch 8 (128 prompt + 128 new tokens per row, f32 weights): {kb / 1024:.0f} MiB")
PY
