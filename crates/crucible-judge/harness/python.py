# Crucible's in-sandbox Python harness. The judge writes this file, the program
# (solution.py) and, in "tests" mode, a spec (tests.json) into the work dir. It runs as
# a script (python3 harness.py MODE ...) in a fresh sandbox, or is imported once by a
# fork server's zygote, whose children call main() with the same sys.argv.
#
#   harness.py stdio           run solution.py as __main__ (stdio tests)
#   harness.py tests SPEC      run solution.py, then each call/assert test, and emit one
#                              JSON record per test on a private copy of stdout
#
# Records carry a nonce read from SPEC, which is deleted before any submitted code runs,
# so a program cannot simply print fake results. A program that exits early never emits
# the final "done" record, and the judge treats that as a failure.
#
# In a fork server the zygote calls prepare() with the spec before it forks, so parsing
# the spec and compiling every test happen once in the warm zygote rather than in each
# cold child (where touching that much of the interpreter costs several times more);
# the child then gets the result as main()'s argument and the spec is never written to
# its work dir. Both ways run the same code in the same order before the submission.
import builtins
import os
import sys

# Imports that only one mode needs are made inside it: each costs start-up time per run.

SOLUTION = "solution.py"
MODULE = "__solution__"


def _load_source():
    with open(SOLUTION, "rb") as f:
        return f.read()


def _exc_summary(exc):
    text = "%s: %s" % (type(exc).__name__, exc) if str(exc) else type(exc).__name__
    return text[-2000:]


def _stdio():
    import random

    random.seed(0)
    src = _load_source()
    try:
        code = compile(src, SOLUTION, "exec")
    except (SyntaxError, ValueError) as exc:
        sys.stderr.write(_exc_summary(exc) + "\n")
        sys.stderr.flush()
        os._exit(97)
    sys.argv = [SOLUTION]
    g = {"__name__": "__main__", "__file__": SOLUTION, "__builtins__": builtins}
    exec(code, g)


class _Untrusted(AssertionError):
    pass


def _guard_eq(left, right, negate):
    # A submission could return an object whose __eq__ is always True. Comparisons in
    # asserts refuse operands whose type the submission itself defined.
    for value in (left, right):
        if getattr(type(value), "__module__", None) == MODULE:
            raise _Untrusted(
                "untrusted comparison: value of type %s defined by the submission"
                % type(value).__name__
            )
    result = left != right if negate else left == right
    return bool(result)


def _guard_test(expr):
    # `a == b` and `a != b` (alone, or as an operand of and/or) become
    # __crucible_guard_eq__(a, b, negate). The new nodes take the comparison's source
    # location, so tracebacks point where they did.
    if (
        isinstance(expr, ast.Compare)
        and len(expr.ops) == 1
        and isinstance(expr.ops[0], (ast.Eq, ast.NotEq))
    ):
        func = ast.copy_location(ast.Name(id="__crucible_guard_eq__", ctx=ast.Load()), expr)
        negate = ast.copy_location(ast.Constant(isinstance(expr.ops[0], ast.NotEq)), expr)
        call = ast.Call(func=func, args=[expr.left, expr.comparators[0], negate], keywords=[])
        return ast.copy_location(call, expr)
    if isinstance(expr, ast.BoolOp):
        expr.values = [_guard_test(v) for v in expr.values]
    return expr


def _asserts(stmts):
    # Every assert statement in `stmts`, at any depth. An assert is a statement, so it
    # can only sit in a list of statements (a body, an else, a handler, a match case):
    # searching those finds the same asserts as a walk of the whole tree, without
    # visiting expressions (a test's literal data can be thousands of nodes).
    for stmt in stmts:
        if isinstance(stmt, ast.Assert):
            yield stmt
            continue
        for _name, value in ast.iter_fields(stmt):
            if (
                isinstance(value, list)
                and value
                and isinstance(value[0], (ast.stmt, ast.excepthandler, ast.match_case))
            ):
                yield from _asserts(value)


def _compile_stmts(stmts, name):
    # Rewrites the test of every assert in place, then compiles. Every new node is
    # located in _guard_test, so no fix_missing_locations pass is needed.
    for node in list(_asserts(stmts)):
        node.test = _guard_test(node.test)
    return compile(ast.Module(body=stmts, type_ignores=[]), name, "exec")


def _has_assert(stmt):
    return next(_asserts([stmt]), None) is not None


def _to_json(value):
    # Tuples become lists, as JSON has no tuples. Anything else unserialisable fails.
    return json.loads(json.dumps(value, allow_nan=True))


class _Code:
    # Test code compiled ahead, or the error compiling it gave, raised where the code
    # would have run. Compiling before any submitted code runs also means a submission
    # cannot tamper with how its tests are compiled (by patching ast or compile).
    __slots__ = ("code", "error")

    def __init__(self, stmts=None, name="test", source=None):
        self.code = self.error = None
        try:
            if source is not None:
                stmts = ast.parse(source).body
            self.code = _compile_stmts(stmts, name)
        except Exception as exc:  # noqa: B902 - any failure belongs to the test
            # Without its traceback, which would keep the compiling frames alive.
            self.error = exc.with_traceback(None)

    def get(self):
        if self.error is not None:
            raise self.error
        return self.code


class _Plan:
    # Everything a tests run needs before the submission runs: its spec, and the tests
    # compiled (which depends on the tests alone, not on the run's nonce).
    __slots__ = ("spec", "compiled")

    def __init__(self, spec, compiled=None):
        self.spec = spec
        self.compiled = compiled if compiled is not None else _Compiled(spec)


class _Compiled:
    # The test setup and every test compiled, each check suite parsed.
    __slots__ = ("setup", "checks", "codes")

    def __init__(self, spec):
        global ast
        import ast

        setup = spec.get("setup") or ""
        self.setup = _Code(source=setup, name="setup") if setup.strip() else None
        self.checks = {}
        self.codes = {}
        for test in spec["tests"]:
            if test["kind"] != "assert":
                continue
            if test.get("entry_point"):
                self.checks[test["id"]] = _CheckPlan(test)
            else:
                self.codes[test["id"]] = _Code(source=test["code"])


class _CheckPlan:
    # HumanEval style: `check(candidate)`; each top-level statement of check that holds
    # an assert is a separate test, the other statements are its setup. When the code
    # does not have that shape, the whole of it plus `check(entry_point)` is one test.
    __slots__ = ("count", "parse_error", "whole", "others", "entry_point", "arg", "units")

    def __init__(self, test):
        self.count, self.parse_error, self.whole = 1, None, None
        self.others, self.arg, self.units = None, None, []
        self.entry_point = test["entry_point"]
        try:
            tree = ast.parse(test["code"])
        except SyntaxError as exc:
            self.parse_error = exc.with_traceback(None)
            return
        check = None
        others = []
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name == "check":
                check = node
            else:
                others.append(node)
        asserts = [_has_assert(s) for s in check.body] if check and check.args.args else []
        units = sum(asserts)
        if units == 0:
            code = test["code"] + "\n\ncheck(%s)\n" % test["entry_point"]
            self.whole = _Code(source=code)
            return
        self.count = units
        # Test module-level definitions (METADATA, helpers) live beside the program.
        self.others = _Code(others)
        self.arg = check.args.args[0].arg
        self.units = [(_Code([stmt], "check"), a) for stmt, a in zip(check.body, asserts)]


# In a zygote: tests compiled by prepare(), by their source, so that a problem judged
# again (several samples per problem, as RL does) is compiled once per zygote.
_COMPILED = {}
_COMPILED_MAX = 64


def prepare(argv, files):
    """Called by a fork server's zygote before it forks a tests run, with the spec it was
    offered (`files`, by path): parses it and compiles the tests (or takes them from the
    zygote's cache) in the warm zygote instead of the child. Returns what the child's
    main() takes, or None to leave the run as it is."""
    global json
    import json

    if len(argv) <= 2 or argv[1] != "tests" or argv[2] not in files:
        return None
    spec = json.loads(files[argv[2]])
    key = json.dumps([spec.get("setup"), spec["tests"]], sort_keys=True)
    compiled = _COMPILED.get(key)
    if compiled is None:
        compiled = _Compiled(spec)
        if len(_COMPILED) >= _COMPILED_MAX:
            del _COMPILED[next(iter(_COMPILED))]
        _COMPILED[key] = compiled
    return _Plan(spec, compiled)


def _tests(plan):
    # ast is imported (and used) by _Compiled, before this runs.
    global json, random, time
    import json
    import random
    import time

    spec, compiled = plan.spec, plan.compiled
    nonce = spec["nonce"]
    out_fd = os.dup(1)
    os.dup2(2, 1)  # the submission's prints go to stderr, never into the records
    os.set_inheritable(out_fd, False)

    def emit(record):
        record["n"] = nonce
        data = (json.dumps(record) + "\n").encode()
        while data:
            written = os.write(out_fd, data)
            data = data[written:]

    def timed(fn):
        c0, w0 = time.process_time(), time.perf_counter()
        try:
            value = fn()
            status, payload = "pass", value
        except AssertionError as exc:
            status, payload = "fail", exc
        except BaseException as exc:  # noqa: B902 - SystemExit etc. are failures too
            status, payload = "error", exc
        cpu = int((time.process_time() - c0) * 1000)
        wall = int((time.perf_counter() - w0) * 1000)
        return status, payload, cpu, wall

    def report(test_id, status, payload, cpu, wall, value=None):
        rec = {"id": test_id, "status": status, "cpu_ms": cpu, "wall_ms": wall}
        if status != "pass":
            rec["message"] = _exc_summary(payload) if payload is not None else ""
            rec["exc"] = type(payload).__name__
        elif value is not None:
            rec.update(value)
        emit(rec)

    emit({"event": "start"})
    # Every check suite was parsed before any submitted code runs, so the judge knows
    # how many tests there are even if the program never gets that far.
    for tid, check in compiled.checks.items():
        emit({"event": "units", "id": tid, "count": check.count})

    random.seed(0)
    src = _load_source()
    try:
        code = compile(src, SOLUTION, "exec")
    except (SyntaxError, ValueError) as exc:
        emit({"event": "compile_error", "message": _exc_summary(exc)})
        emit({"event": "done"})
        return
    g = {"__name__": MODULE, "__builtins__": builtins}
    try:
        exec(code, g)
    except BaseException as exc:  # noqa: B902
        emit({"event": "program_error", "message": _exc_summary(exc), "exc": type(exc).__name__})
        emit({"event": "done"})
        return
    g["__crucible_guard_eq__"] = _guard_eq
    if compiled.setup is not None:
        status, payload, _, _ = timed(lambda: exec(compiled.setup.get(), g))
        if status != "pass":
            emit({"event": "program_error", "message": "test setup: " + _exc_summary(payload), "exc": type(payload).__name__})
            emit({"event": "done"})
            return

    for test in spec["tests"]:
        tid = test["id"]
        if test["kind"] == "call":
            fn = g.get(test["function"])
            if not callable(fn):
                report(tid, "error", NameError("function %r is not defined" % test["function"]), 0, 0)
                continue
            holder = {}

            def call(fn=fn, args=test["args"]):
                holder["value"] = _to_json(fn(*args))

            status, payload, cpu, wall = timed(call)
            report(tid, status, payload, cpu, wall, {"value": holder.get("value")} if status == "pass" else None)
        elif tid in compiled.checks:
            _check_suite(tid, compiled.checks[tid], g, timed, report)
        else:
            status, payload, cpu, wall = timed(lambda c=compiled.codes[tid]: exec(c.get(), g))
            report(tid, status, payload, cpu, wall)
    emit({"event": "done"})


def _check_suite(tid, plan, g, timed, report):
    if plan.parse_error is not None:
        report(tid + ".0", "error", plan.parse_error, 0, 0)
        return
    if plan.whole is not None:
        status, payload, cpu, wall = timed(lambda: exec(plan.whole.get(), g))
        report(tid + ".0", status, payload, cpu, wall)
        return
    status, payload, _, _ = timed(lambda: exec(plan.others.get(), g))
    candidate = g.get(plan.entry_point)
    failure = None
    if status != "pass":
        failure = payload
    elif not callable(candidate):
        failure = NameError("name %r is not defined" % plan.entry_point)
    if failure is not None:
        for k in range(plan.count):
            report("%s.%d" % (tid, k), "error", failure, 0, 0)
        return
    local = dict(g)
    local[plan.arg] = candidate
    k = 0
    for unit, has_assert in plan.units:
        compiled = unit.get()
        status, payload, cpu, wall = timed(lambda c=compiled: exec(c, local))
        if has_assert:
            report("%s.%d" % (tid, k), status, payload, cpu, wall)
            k += 1
        elif status != "pass":
            # Setup inside check failed: the remaining asserts cannot run.
            for rest in range(k, plan.count):
                report("%s.%d" % (tid, rest), "error", payload, 0, 0)
            return


def main(plan=None):
    """Runs the mode sys.argv names. `plan` is what prepare() returned for this run in a
    fork server's zygote; without one, a tests run reads (and deletes) its spec itself."""
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "stdio":
        _stdio()
    elif mode == "tests" and len(sys.argv) > 2:
        if plan is None:
            with open(sys.argv[2], "rb") as f:
                spec = f.read()
            os.unlink(sys.argv[2])
            import json

            plan = _Plan(json.loads(spec))
        _tests(plan)
    else:
        sys.stderr.write("usage: harness.py stdio | tests SPEC\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
