#!/usr/bin/env bash
# Creates the test-only Python venv .venv-ref (git-ignored) that crucible-train's parity
# tests use as an independent reference: the PyPI `gguf` package (reads and dequantizes
# the GGUF), `tokenizers` (Hugging Face's tokenizer) and numpy. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-ref
req=scripts/reference/requirements.txt
stamp="$venv/.req-$(sha256sum "$req" | cut -c1-16)"
if [ -f "$stamp" ] && [ -x "$venv/bin/python" ]; then
  exit 0
fi
python3 -m venv "$venv" 2>/dev/null || {
  # Debian splits venv out of python3.
  apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
  python3 -m venv "$venv"
}
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
touch "$stamp"
