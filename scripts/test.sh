#!/usr/bin/env bash
# The test command (README.md "Set-up", and what .ci/run calls): formatting, lints, and
# every test in the workspace. The sandbox tests need root or unprivileged user
# namespaces; the dataset tests read ../shared/datasets and skip with a message without it.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked "$@"
