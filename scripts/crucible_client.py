#!/usr/bin/env python3
"""Python client for Crucible reward servers (`crucible serve`). Standard library only.

Use it from a trainer (verl, OpenRLHF, TRL) or a script:

    from crucible_client import CrucibleClient
    client = CrucibleClient(["http://judge-0:8080", "http://judge-1:8080"])
    reward = client.reward({"problem": problem, "completion": code})   # float or None

verl: point `custom_reward_function.path` at this file and `name` at `compute_score`
(or `compute_score_batch` with verl's batch reward manager). OpenRLHF: pass this file as
`--remote_rm_url`; it defines `reward_func(queries, prompts, labels)`. Servers come from
CRUCIBLE_ENDPOINTS (comma-separated URLs, default http://127.0.0.1:8080); a bearer token
from CRUCIBLE_TOKEN or CRUCIBLE_TOKEN_FILE.

An infrastructure failure is never a reward of 0. The client spreads requests over the
servers and retries connection errors, timeouts, 5xx answers, 429 (after Retry-After) and
reports whose verdict is sandbox_error. When every attempt fails, `reward()` returns None
and `judge()` raises CrucibleUnavailable; both count it in `client.stats["absent"]`.
`compute_score` raises CrucibleUnavailable by default (verl's reward loop then stops
instead of training on a fake zero); set CRUCIBLE_ON_ABSENT=nan to get a NaN score to
mask instead.
"""

import http.client
import json
import os
import random
import re
import socket
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

__all__ = [
    "CrucibleClient",
    "CrucibleError",
    "CrucibleRejected",
    "CrucibleUnavailable",
    "compute_score",
    "compute_score_batch",
    "reward_func",
    "problem_from_ground_truth",
    "extract_code",
]


class CrucibleError(Exception):
    """Base of the client's errors."""


class CrucibleRejected(CrucibleError):
    """The server refused the request itself (a 4xx other than 429); retrying cannot help.

    `status` is the HTTP status; `error` the server's {"code", "field", "message"}.
    """

    def __init__(self, status, error, body):
        self.status = status
        self.error = error or {}
        self.field = self.error.get("field")
        message = self.error.get("message") or body[:300]
        super().__init__(f"rejected with {status}: {message}" + (f" (field {self.field})" if self.field else ""))


class CrucibleUnavailable(CrucibleError):
    """Every attempt failed for infrastructure reasons: there is no reward."""


_STAT_KEYS = (
    "requests", "attempts", "retries", "judged", "absent", "rejected",
    "sandbox_errors", "transport_errors", "server_errors", "throttled",
)


class _Endpoint:
    def __init__(self, url):
        raw = url.strip()
        if "://" not in raw:
            raw = "http://" + raw
        parsed = urllib.parse.urlsplit(raw)
        if parsed.scheme != "http":
            raise ValueError(f"endpoint {url!r}: only http:// is supported (put TLS in front)")
        if not parsed.hostname:
            raise ValueError(f"endpoint {url!r}: no host")
        self.url = raw.rstrip("/")
        self.host = parsed.hostname
        self.port = parsed.port or 80
        self.prefix = parsed.path.rstrip("/")
        self.unavailable_until = 0.0


class CrucibleClient:
    """A client over one or more Crucible servers; safe to share between threads."""

    def __init__(self, endpoints=None, token=None, max_attempts=4, timeout=300.0,
                 deadline=900.0, backoff=0.1, max_backoff=5.0, cooldown=2.0):
        if endpoints is None:
            endpoints = os.environ.get("CRUCIBLE_ENDPOINTS", "http://127.0.0.1:8080").split(",")
        if isinstance(endpoints, str):
            endpoints = endpoints.split(",")
        endpoints = [e for e in endpoints if e.strip()]
        if not endpoints:
            raise ValueError("no endpoints given")
        self.endpoints = [_Endpoint(e) for e in endpoints]
        self.token = token if token is not None else _token_from_env()
        self.max_attempts = max_attempts
        self.timeout = timeout
        self.deadline = deadline
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.cooldown = cooldown
        self._next = 0
        self._lock = threading.Lock()
        self._local = threading.local()
        self.stats = {k: 0 for k in _STAT_KEYS}

    def _bump(self, key, n=1):
        with self._lock:
            self.stats[key] += n

    def _pick(self):
        """Round-robin over the endpoints not holding off; else the soonest free one."""
        with self._lock:
            start = self._next
            self._next += 1
        now = time.monotonic()
        n = len(self.endpoints)
        soonest = None
        for k in range(n):
            ep = self.endpoints[(start + k) % n]
            if ep.unavailable_until <= now:
                return ep, 0.0
            if soonest is None or ep.unavailable_until < soonest.unavailable_until:
                soonest = ep
        return soonest, soonest.unavailable_until - now

    def _hold_off(self, ep, seconds):
        with self._lock:
            ep.unavailable_until = max(ep.unavailable_until, time.monotonic() + seconds)

    def _connection(self, ep):
        # One keep-alive connection per thread and endpoint.
        conns = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
        conn = conns.get(ep.url)
        if conn is None:
            conn = http.client.HTTPConnection(ep.host, ep.port, timeout=self.timeout)
            conns[ep.url] = conn
        return conn

    def _drop_connection(self, ep):
        conns = getattr(self._local, "conns", {})
        conn = conns.pop(ep.url, None)
        if conn is not None:
            conn.close()

    def _exchange(self, ep, path, body):
        """One HTTP exchange: (status, headers, bytes), or raises OSError-like errors."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        conn = self._connection(ep)
        try:
            conn.request("POST", ep.prefix + path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            if resp.getheader("Connection", "").lower() == "close":
                self._drop_connection(ep)
            return resp.status, resp, data
        except Exception:
            self._drop_connection(ep)
            raise

    def _call(self, path, payload, accept):
        """Sends `payload` until an answer that `accept` takes (it returns a value, or
        raises _Retry to try again); raises CrucibleRejected or CrucibleUnavailable."""
        body = json.dumps(payload).encode()
        deadline = time.monotonic() + self.deadline
        failures = 0
        exchanges = 0
        last = "not tried"
        wait = 0.0
        while True:
            ep, hold = self._pick()
            pause = min(max(wait, hold), self.max_backoff)
            if time.monotonic() + pause >= deadline:
                last = f"deadline of {self.deadline}s passed; last failure: {last}"
                break
            if pause > 0:
                time.sleep(pause)
            if exchanges:
                self._bump("retries")
            exchanges += 1
            self._bump("attempts")
            try:
                status, resp, data = self._exchange(ep, path, body)
            except (OSError, http.client.HTTPException, socket.timeout) as e:
                self._bump("transport_errors")
                self._hold_off(ep, self.cooldown)
                last = f"{ep.url}: {type(e).__name__}: {e}"
            else:
                if status == 429:
                    self._bump("throttled")
                    self._hold_off(ep, min(_retry_after(resp, self.backoff), self.max_backoff))
                    last = f"{ep.url}: queue full"
                    wait = 0.0
                    continue
                if status >= 500:
                    self._bump("server_errors")
                    self._hold_off(ep, min(_retry_after(resp, self.cooldown), self.max_backoff))
                    last = f"{ep.url}: {status}: {data[:300]!r}"
                elif status >= 400:
                    self._bump("rejected")
                    try:
                        error = json.loads(data).get("error")
                    except ValueError:
                        error = None
                    raise CrucibleRejected(status, error, data.decode("utf-8", "replace"))
                else:
                    try:
                        return accept(data)
                    except _Retry as r:
                        last = f"{ep.url}: {r}"
            failures += 1
            if failures >= self.max_attempts:
                break
            wait = min(self.backoff * (2 ** (failures - 1)) * (1 + random.random() * 0.1), self.max_backoff)
        raise CrucibleUnavailable(f"no report after {exchanges} attempts: {last}")

    def judge(self, request):
        """Judges one submission (a JudgeRequest dict: problem or dataset + task_id,
        completion, optional language, limits, reward). Returns the report dict."""
        self._bump("requests")

        def accept(data):
            try:
                report = json.loads(data)
            except ValueError as e:
                raise _Retry(f"unreadable report: {e}")
            if report.get("verdict") == "sandbox_error":
                self._bump("sandbox_errors")
                raise _Retry(f"sandbox_error: {report.get('message')}")
            return report

        try:
            report = self._call("/v1/judge", request, accept)
        except CrucibleUnavailable:
            self._bump("absent")
            raise
        self._bump("judged")
        return report

    def reward(self, request):
        """The reward of one submission, or None (counted in stats["absent"] or
        stats["rejected"]) when there is no report. Never 0 in place of a failure."""
        try:
            return self.judge(request).get("reward")
        except CrucibleError as e:
            print(f"crucible_client: reward absent: {e}", file=sys.stderr)
            return None

    def judge_many(self, requests, concurrency=32):
        """Judges many submissions concurrently; returns, in input order, each report
        or the CrucibleError that left it without one."""
        def one(r):
            try:
                return self.judge(r)
            except CrucibleError as e:
                return e
        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            return list(pool.map(one, requests))

    def run_code(self, code, language="python", stdin="", run_timeout=10, **extra):
        """SandboxFusion's /run_code: returns its RunCodeResponse dict. A SandboxError
        status is retried like a failed exchange."""
        payload = {"code": code, "language": language, "stdin": stdin,
                   "run_timeout": run_timeout, "compile_timeout": run_timeout,
                   "files": {}, "fetch_files": []}
        payload.update(extra)

        def accept(data):
            resp = json.loads(data)
            if resp.get("status") == "SandboxError":
                self._bump("sandbox_errors")
                raise _Retry(f"SandboxError: {resp.get('message')}")
            return resp

        self._bump("requests")
        try:
            resp = self._call("/run_code", payload, accept)
        except CrucibleUnavailable:
            self._bump("absent")
            raise
        self._bump("judged")
        return resp


class _Retry(Exception):
    pass


def _retry_after(resp, default):
    try:
        return float(resp.getheader("Retry-After"))
    except (TypeError, ValueError):
        return default


def _token_from_env():
    token = os.environ.get("CRUCIBLE_TOKEN")
    if token:
        return token.strip()
    path = os.environ.get("CRUCIBLE_TOKEN_FILE")
    if path:
        with open(path) as f:
            return f.read().strip()
    return None


_FENCE = re.compile(r"```[ \t]*([\w+#.-]*)[ \t]*\n(.*?)(?:```|\Z)", re.S)


def extract_code(text, language="python"):
    """The code in a model's answer: the last fenced block tagged with `language` (or
    untagged), else the last fenced block, else the whole text."""
    blocks = _FENCE.findall(text or "")
    if not blocks:
        return text or ""
    lang = language.lower()
    aliases = {lang, "py", "python3"} if lang == "python" else {lang}
    for tag, code in reversed(blocks):
        if tag.lower() in aliases or not tag:
            return code
    return blocks[-1][1]


def problem_from_ground_truth(ground_truth, task_id="verl", language="python"):
    """A Crucible problem from a trainer's ground truth:

    - a Crucible problem (a dict with "tests");
    - {"inputs": [...], "outputs": [...]} (stdio tests, as in verl's and PRIME's code
      data), or with "fn_name" (call tests: each input is the argument list);
    - a list of assert statements (MBPP style).

    A JSON string of any of these is parsed first.
    """
    gt = ground_truth
    if isinstance(gt, (bytes, str)):
        gt = json.loads(gt)
    if isinstance(gt, dict) and "tests" in gt:
        problem = dict(gt)
        problem.setdefault("id", task_id)
        return problem
    if isinstance(gt, list):
        tests = [{"kind": "assert", "code": str(a)} for a in gt]
        return {"id": task_id, "language": language, "tests": tests}
    if isinstance(gt, dict) and "inputs" in gt and "outputs" in gt:
        inputs, outputs = gt["inputs"], gt["outputs"]
        if len(inputs) != len(outputs):
            raise ValueError(f"ground truth has {len(inputs)} inputs but {len(outputs)} outputs")
        fn = gt.get("fn_name")
        tests = []
        for i, o in zip(inputs, outputs):
            if fn:
                args = i if isinstance(i, list) else [i]
                expected = o[0] if isinstance(o, list) and len(o) == 1 else o
                tests.append({"kind": "call", "function": fn, "args": args, "expected": expected})
            else:
                tests.append({"kind": "stdio", "stdin": str(i), "expected_stdout": str(o)})
        return {"id": task_id, "language": language, "tests": tests}
    raise ValueError("ground truth is neither a Crucible problem, {inputs, outputs}, nor a list of asserts")


_DEFAULT_CLIENT = None
_DEFAULT_LOCK = threading.Lock()


def default_client():
    """The module's shared client (from CRUCIBLE_ENDPOINTS / CRUCIBLE_TOKEN)."""
    global _DEFAULT_CLIENT
    with _DEFAULT_LOCK:
        if _DEFAULT_CLIENT is None:
            _DEFAULT_CLIENT = CrucibleClient()
        return _DEFAULT_CLIENT


def _score(client, data_source, solution_str, ground_truth, extra_info):
    extra_info = extra_info or {}
    language = extra_info.get("language", "python")
    problem = problem_from_ground_truth(ground_truth, task_id=str(extra_info.get("index", data_source)), language=language)
    request = {"problem": problem, "completion": extract_code(solution_str, language), "language": language}
    if "reward" in extra_info:
        request["reward"] = extra_info["reward"]
    if not request["completion"].strip():
        # No code at all is the program's fault, not the infrastructure's.
        return {"score": 0.0, "acc": False, "verdict": "no_code", "passed": 0, "total": len(problem["tests"])}
    try:
        report = client.judge(request)
    except CrucibleUnavailable:
        if os.environ.get("CRUCIBLE_ON_ABSENT", "raise") == "nan":
            return {"score": float("nan"), "acc": False, "verdict": "absent", "passed": 0, "total": 0}
        raise
    return {
        "score": float(report["reward"]),
        "acc": report["verdict"] == "accepted",
        "verdict": report["verdict"],
        "passed": report["passed"],
        "total": report["total"],
    }


def compute_score(data_source, solution_str, ground_truth, extra_info=None):
    """verl's custom reward function signature. Returns {"score", "acc", "verdict",
    "passed", "total"}; raises CrucibleUnavailable when no server could judge it."""
    return _score(default_client(), data_source, solution_str, ground_truth, extra_info)


def compute_score_batch(data_sources, solution_strs, ground_truths, extra_infos=None, concurrency=64):
    """Batch form of compute_score (verl's BatchRewardManager): judged concurrently."""
    client = default_client()
    extra_infos = extra_infos or [None] * len(solution_strs)
    args = list(zip(data_sources, solution_strs, ground_truths, extra_infos))
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        return list(pool.map(lambda a: _score(client, *a), args))


def reward_func(queries, prompts, labels):
    """OpenRLHF's custom reward function (`--remote_rm_url crucible_client.py
    --label_key <ground-truth column>`): each query is a prompt followed by the model's
    response, each label a ground truth as for compute_score. Returns {"rewards",
    "scores", "extra_logs"} as torch tensors (torch is imported only here); raises
    CrucibleUnavailable when a submission could not be judged."""
    import torch  # OpenRLHF runs under torch; the rest of this module does not need it

    responses = [q[len(p):] if q.startswith(p) else q for q, p in zip(queries, prompts)]
    results = compute_score_batch(["openrlhf"] * len(responses), responses, labels)
    rewards = torch.tensor([r["score"] for r in results], dtype=torch.float32)
    accepted = torch.tensor([1.0 if r["acc"] else 0.0 for r in results])
    return {"rewards": rewards, "scores": accepted, "extra_logs": {"accepted": accepted}}


def _main(argv):
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--endpoint", action="append", help="server URL (repeatable); default CRUCIBLE_ENDPOINTS")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("score", help="score a solution against a ground truth (JSON)")
    s.add_argument("--ground-truth", required=True, help="JSON text, or @FILE")
    s.add_argument("--solution", required=True, help="solution text, or @FILE")
    sub.add_parser("stats", help="print the client's counters as JSON after the command")
    args = ap.parse_args(argv)
    client = CrucibleClient(args.endpoint) if args.endpoint else default_client()

    def text(v):
        if v.startswith("@"):
            with open(v[1:]) as f:
                return f.read()
        return v

    if args.cmd == "score":
        try:
            out = _score(client, "cli", text(args.solution), text(args.ground_truth), None)
        except CrucibleError as e:
            print(json.dumps({"error": str(e), "stats": client.stats}))
            return 4
        print(json.dumps(out))
    print(json.dumps(client.stats), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
