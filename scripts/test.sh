#!/usr/bin/env bash
# The test command (README.md "Set-up", and what .ci/run calls): formatting, lints, and
# every test in the workspace. The sandbox tests need root or unprivileged user
# namespaces; the dataset tests read ../shared/datasets and skip with a message without it.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
# The wasm backend's guests and clang for wasm32-wasi (sha256-pinned; apt as root): with
# CRUCIBLE_REQUIRE_WASM set, the wasm tests fail instead of skipping when one is missing.
scripts/fetch-wasm-guests.sh >/dev/null
export CRUCIBLE_REQUIRE_WASM=1
# crucible-train links libtorch; everything else builds and tests without it.
cargo clippy --workspace --exclude crucible-train --all-targets --locked -- -D warnings
cargo test --workspace --exclude crucible-train --locked "$@"

# crucible-train: libtorch, the converted SmolLM2-135M-Instruct, HumanEval and the
# test-only reference venv (numpy + gguf + tokenizers) for its parity tests.
scripts/setup-libtorch.sh
scripts/fetch-humaneval.sh >/dev/null
CRUCIBLE_BUILD_PROFILE=dev scripts/setup-model.sh >/dev/null
scripts/setup-reference.sh
cargo clippy -p crucible-train --all-targets --locked -- -D warnings
# libtorch's OpenMP threads spin while idle; on shared cores that starves the model (the
# crucible-train binary sets this itself, test binaries do not).
OMP_WAIT_POLICY=passive cargo test -p crucible-train --locked "$@"
