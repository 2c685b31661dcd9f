#!/usr/bin/env bash
set -euo pipefail
for f in "$@"; do
  if [[ -f "$f" ]]; then
    wc -l "$f" | awk '{print $1}'   # count lines
  fi
done 2>/dev/null || echo "failed: $?" >&2
