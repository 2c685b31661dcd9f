#!/usr/bin/env bash
# Builds the crucible-train binary that scripts/gpu-check.sh runs on a lent GPU machine.
#
# Such a machine reaches no package registry, and a carried working tree is limited to
# 64 MiB, so neither the CUDA build of libtorch 2.13 (libtorch_cuda.so alone is 470 MB)
# nor the converted weights (540 MB) can be brought to it. What it has is PyTorch
# 2.11.0+cu130 in /opt/torch/.venv. So this builds crucible-train's sources with tch 0.24
# (the tch release for libtorch 2.11; crates/crucible-train/gpu is that build's manifest)
# against the libtorch of the PyPI torch==2.11.0 wheel, leaving the CUDA libraries' own
# dependencies (cuBLAS, cuDNN, ...) to be resolved on the GPU machine, and writes a
# stripped binary (~7 MB) to .gpu-build/crucible-train (git-ignored). Build here, then
# carry .gpu-build.
set -euo pipefail
cd "$(dirname "$0")/.."
ver="${CRUCIBLE_GPU_TORCH_VERSION:-2.11.0}"
dir="${CRUCIBLE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/crucible}/libtorch-$ver-cuda"
if [ ! -f "$dir/torch/lib/libtorch_cuda.so" ]; then
  echo "build-gpu-binary: installing torch==$ver (headers and libraries) into $dir" >&2
  rm -rf "$dir"
  python3 -m pip install --quiet --no-deps --no-compile --target "$dir" "torch==$ver" >&2
fi
CARGO_TARGET_DIR="$PWD/target/gpu" LIBTORCH="$dir/torch" CRUCIBLE_TORCH_PORTABLE=1 \
  cargo build --release --locked --manifest-path crates/crucible-train/gpu/Cargo.toml
mkdir -p .gpu-build
strip -o .gpu-build/crucible-train target/gpu/release/crucible-train
echo "$ver" >.gpu-build/torch-version
ls -l .gpu-build/crucible-train >&2
