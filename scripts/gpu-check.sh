#!/usr/bin/env bash
# The GPU checks of crucible-train, for a lent GPU machine: generation tokens/s on CUDA
# (device picked by libtorch: `--device auto`), at batch 1, 8 and 32, in bf16 and f32,
# with the CPU of the same machine for comparison. Prints one JSON line per measurement
# and fails if libtorch did not pick a CUDA device.
#
# Run from the repo root there, with .gpu-build carried (scripts/build-gpu-binary.sh
# makes it here; ~7 MB). The binary uses that machine's own PyTorch 2.11 libraries (see
# build-gpu-binary.sh for why), found from its python3. The converted weights (540 MB)
# cannot be carried, so unless models/smollm2-135m-instruct is present the model is
# SmolLM2-135M's architecture with random weights: the generation length is fixed
# (end tokens ignored), so the arithmetic, and the speed, are the same.
# NEW_TOKENS (256) and CONFIG (smollm2-135m) change the workload.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.gpu-build/crucible-train
if [ ! -x "$bin" ]; then
  echo "gpu-check: $bin is missing: run scripts/build-gpu-binary.sh and carry .gpu-build" >&2
  exit 2
fi
py="${PYTHON:-python3}"
want=$(cat .gpu-build/torch-version)
have=$("$py" -c 'import torch; print(torch.__version__.split("+")[0])')
if [ "$want" != "$have" ]; then
  echo "gpu-check: the binary was built for torch $want; $py has torch $have" >&2
  exit 2
fi
torch_lib=$("$py" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export RUST_LOG="${RUST_LOG:-info,crucible_train=debug}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2 || true
args=(--prompt-tokens 128 --new-tokens "${NEW_TOKENS:-256}" --config "${CONFIG:-smollm2-135m}")
if [ -s models/smollm2-135m-instruct/model.safetensors ]; then
  args+=(--model models/smollm2-135m-instruct)
fi
out=$(mktemp)
"$bin" bench --device auto --dtype bf16 --batch 1,8,32 --repeats 3 "${args[@]}" | tee "$out"
if ! grep -q '"device":"Cuda' "$out"; then
  echo "gpu-check: libtorch picked no CUDA device (see the debug line above)" >&2
  exit 1
fi
"$bin" bench --device auto --dtype f32 --batch 1,8 --repeats 2 "${args[@]}"
"$bin" bench --device cpu --dtype f32 --batch 1,8 --repeats 1 \
  --prompt-tokens 128 --new-tokens 64 --config "${CONFIG:-smollm2-135m}"
