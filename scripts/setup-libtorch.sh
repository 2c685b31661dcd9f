#!/usr/bin/env bash
# Installs libtorch 2.13.0 (the version tch 0.26 is built for) from the PyPI torch wheel,
# for crucible-train only: no other crate links it.
#
#   scripts/setup-libtorch.sh [DIR]     default DIR: .libtorch (git-ignored, at the repo root)
#
# The wheel goes in with --no-deps, plus the two NVIDIA wheels that libtorch_cpu's
# profiler links against; nothing else from the CUDA stack is fetched. The CUDA-only
# libraries (libtorch_cuda*.so, libc10_cuda.so, nvshmem, nvrtc, the Python bindings) are
# then deleted: without cuBLAS/cuDNN beside them they could not load anyway, and they are
# ~1 GB. tch then links the CPU build; the `ldd` check below fails the script if a
# library the CPU build needs is missing.
#
# crucible-train finds the result through LIBTORCH (set by .cargo/config.toml to
# .libtorch/torch unless the caller exported one) and its build.rs writes an rpath to
# DIR/torch/lib into the binaries, so no LD_LIBRARY_PATH is needed. Safe to run again:
# it does nothing when the stamp file of this version is present.
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_VERSION=2.13.0
dir="${1:-${CRUCIBLE_LIBTORCH_DIR:-.libtorch}}"
stamp="$dir/.crucible-libtorch-$TORCH_VERSION"
if [ -f "$stamp" ] && [ -f "$dir/torch/lib/libtorch_cpu.so" ]; then
  echo "libtorch $TORCH_VERSION already in $dir" >&2
  exit 0
fi
command -v python3 >/dev/null || { echo "setup-libtorch: python3 is needed" >&2; exit 2; }
python3 -m pip --version >/dev/null 2>&1 || {
  echo "setup-libtorch: pip is needed (apt-get install python3-pip)" >&2; exit 2; }

rm -rf "$dir"
mkdir -p "$dir"
echo "setup-libtorch: installing torch==$TORCH_VERSION into $dir (about 530 MB download)" >&2
python3 -m pip install --quiet --no-deps --no-compile --target "$dir" \
  "torch==$TORCH_VERSION" nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85 >&2

lib="$dir/torch/lib"
# CUDA-only: these need cuBLAS, cuDNN, NCCL, ... which are not installed.
rm -f "$lib"/libtorch_cuda*.so "$lib"/libc10_cuda.so "$lib"/libtorch_nvshmem.so \
  "$lib"/libcaffe2_nvrtc.so "$lib"/libtorch_python.so
# Python-only parts of the wheel that a C++ build never reads.
rm -rf "$dir"/torch/{_inductor,_dynamo,testing,distributed,onnx,_refs,_decomp,fx,export,utils,nn,_export,ao,_functorch,_higher_order_ops} \
  "$dir"/nvidia/cu13/lib/*.a "$dir"/functorch "$dir"/torchgen "$dir"/bin "$dir"/share "$dir"/*.dist-info
# The wheel's libtorch.so is an empty shell whose only job is to pull in libtorch_cpu and
# libtorch_cuda; tch links -ltorch, so swap it for the same shell without the CUDA half.
c++ -shared -o "$lib/libtorch.so" -x c++ /dev/null -Wl,--no-as-needed \
  -L"$lib" -ltorch_cpu -lc10 -Wl,-rpath,'$ORIGIN'
echo "$TORCH_VERSION" >"$dir/torch/build-version"

# Every library the CPU build links must resolve (through the libraries' own RUNPATHs).
missing=$(ldd "$lib/libtorch_cpu.so" "$lib/libtorch.so" "$lib/libc10.so" | grep 'not found' || true)
if [ -n "$missing" ]; then
  echo "setup-libtorch: unresolved libraries:" >&2
  echo "$missing" >&2
  exit 1
fi
touch "$stamp"
echo "libtorch $TORCH_VERSION installed in $dir ($(du -sh "$dir" | cut -f1))" >&2
