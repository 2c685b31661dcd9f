#!/usr/bin/env bash
# A short PPO run of SmolLM2-135M-Instruct on easy MBPP problems, on the CPU: rewards
# flow from the in-process judge, the KL to the reference stays bounded, and a run
# resumes from its checkpoint. "Easy" = a reference solution of at most 3 lines.
#
#   scripts/ppo-smollm2-mbpp.sh [STEPS] [EXTRA --set KEY=VALUE ...]
#
# Needs scripts/setup-libtorch.sh and scripts/setup-model.sh. MBPP is read from
# $MBPP (default ../shared/datasets/mbpp/mbpp.jsonl). Writes $RUN (runs/smollm2-mbpp).
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-3}
shift || true
MBPP=${MBPP:-../shared/datasets/mbpp/mbpp.jsonl}
RUN=${RUN:-runs/smollm2-mbpp}
MODEL=${MODEL:-models/smollm2-135m-instruct}
mkdir -p "$RUN"
# Easy problems, split in two: the first 48 for training, the next 16 held out.
python3 - "$MBPP" "$RUN" <<'PY'
import json, sys
src, run = sys.argv[1], sys.argv[2]
rows = [json.loads(l) for l in open(src) if l.strip()]
easy = [r for r in rows if len([x for x in r["code"].splitlines() if x.strip()]) <= 3]
with open(f"{run}/easy-train.jsonl", "w") as f:
    for r in easy[:48]:
        f.write(json.dumps(r) + "\n")
with open(f"{run}/easy-heldout.jsonl", "w") as f:
    for r in easy[48:64]:
        f.write(json.dumps(r) + "\n")
print(f"{len(easy)} easy MBPP problems; 48 train, 16 held out", file=sys.stderr)
PY
cargo build --release -p crucible-train
set_args=(
  --set "model=\"$MODEL\"" --set 'prompt_style="chat"'
  --set "train=\"mbpp=$RUN/easy-train.jsonl\"" --set "heldout=\"mbpp=$RUN/easy-heldout.jsonl\""
  --set prompts_per_step=4 --set group_size=2 --set minibatch_size=4 --set epochs=1
  --set max_new_tokens=160 --set eval_samples=0 --set lr=1e-6 --set warmup_steps=1
  --set temperature=0.8 --set checkpoint_every=1 --set threads=2 --set advantage='"grpo"'
  --set filter_equal_groups=false --set 'reward="shaped"'
)
first=$(( STEPS > 1 ? STEPS - 1 : 1 ))
# All steps but the last, then the last one resumed from the checkpoint.
target/release/crucible-train ppo --run-dir "$RUN" "${set_args[@]}" --steps "$first" "$@"
target/release/crucible-train ppo --run-dir "$RUN" "${set_args[@]}" --steps "$STEPS" --resume "$@"
python3 - "$RUN" <<'PY'
import json, sys
run = sys.argv[1]
for l in open(f"{run}/metrics.jsonl"):
    m = json.loads(l)
    print(f"step {m['step']}: reward {m['reward_mean']:.3f} pass {m['pass_rate']:.3f} kl {m['kl']:.4f} "
          f"absent {m['absent']} judged {m['judged']} tok/s {m['tokens_per_s']:.1f} step {m['step_s']:.0f} s")
PY
