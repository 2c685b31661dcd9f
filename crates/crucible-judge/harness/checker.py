# Crucible's checker: the process that holds a problem's call and assert tests and
# decides each one, in a sandbox of its own. It never runs submitted code. The program
# runs in another sandbox (python.py's "serve" mode); the two talk over a socket that is
# the checker's stdin, and the only things that cross are plain values (channel.py).
# Test code here calls the submission's functions through Remote proxies, so
# `assert candidate([1, 2]) == 3` compares a builtin value the checker decoded with an
# expected value the program never saw.
#
#   checker.py SPEC     judge the program on the other end of stdin; the spec is
#                       {"prefix": CODE, "setup": CODE, "tests": [TEST, ...]}
#   checker.py --describe SPECS
#                       for a JSON list of specs, write a JSON list of their host
#                       plans (see describe; null where a problem needs the checker)
#
# Records, one JSON object per line on stdout (the host reads nothing else from here):
#   {"event": "start"}                           before the program is asked anything
#   {"event": "units", "id": ID, "count": N}     for each check(candidate) suite
#   {"event": "fatal", "kind": "compile_error" | "program_error", "message", "exc"}
#   {"id": ID, "status": "pass" | "fail" | "error" | "lost", "message", "exc",
#    "wall_ms", "value"}                         one per test unit, in order
#   {"event": "done"}
# "lost" means the program went away (exited, was killed, closed the channel) before
# answering; the host gives such units the program's own outcome.
#
# The problem's completion_prefix (HumanEval's prompt) is trusted data: its helpers
# (HumanEval/32's poly, /38's encode_cyclic) run here from the problem's own text, so a
# submission that redefines them changes nothing a test computes. The entry points, and
# any other free name of the tests that the problem does not define, are the
# submission's and are called remotely.
import builtins
import collections
import os
import sys
import time

_MESSAGE_MAX = 2000
_COMPILED = {}
_COMPILED_MAX = 64


def _exc_summary(exc):
    # "Type: message", with the submission's own type name for an exception it raised
    # (see _Channel._result); the checker's own verdicts on the channel read plainly.
    if isinstance(exc, (_Lost, _Broken)):
        return str(exc)[-_MESSAGE_MAX:]
    name = getattr(exc, "remote_type", None) or type(exc).__name__
    text = "%s: %s" % (name, exc) if str(exc) else name
    return text[-_MESSAGE_MAX:]


class _Lost(BaseException):
    # BaseException, so that a test's `except Exception:` cannot swallow it.
    pass


class _Broken(BaseException):
    pass


class RemoteError(Exception):
    """An exception the submission raised whose type is not a builtin one."""


class Remote:
    """A function, or any object that cannot cross as a value, that lives in the
    program. Calling it calls it there; equal only to itself."""

    __slots__ = ("_channel", "_ref", "_name")

    def __init__(self, channel, ref, name):
        object.__setattr__(self, "_channel", channel)
        object.__setattr__(self, "_ref", ref)
        object.__setattr__(self, "_name", name)

    def __setattr__(self, name, value):
        if name.startswith("__") or type(self._ref) is str:
            raise AttributeError(name)
        self._channel.setattr(self._ref, name, value)

    def __call__(self, *args, **kwargs):
        return self._channel.call(self._ref, args, kwargs)

    def __getattr__(self, name):
        if name.startswith("__") or type(self._ref) is str:
            raise AttributeError(name)
        return self._channel.attr(self._ref, name)

    def __repr__(self):
        return "<the submission's %s>" % self._name

    def __eq__(self, other):
        return self is other

    def __ne__(self, other):
        return self is not other

    def __hash__(self):
        return id(self)

    def __bool__(self):
        return True


class _Channel:
    def __init__(self, fd):
        self.fd = fd
        # An in-place checker sees descriptor numbers again: nothing read ahead on an
        # earlier channel may be taken for this one's.
        _buffers.pop(fd, None)
        self.dead = None  # why it can no longer be used
        self.handles = {}
        self.decode = decoder(self._make_handle)
        # Keys of calls sent ahead and not yet answered, in order (see prefetch).
        self.pending = collections.deque()

    def _make_handle(self, hid, name):
        h = self.handles.get(hid)
        if h is None:
            h = self.handles[hid] = Remote(self, {"$": "h", "v": hid, "n": name}, name)
        return h

    @staticmethod
    def _ref(value):
        if type(value) is Remote:
            return value._ref
        raise TypeError("a value of type %s cannot be passed to the submission" % type(value).__name__)

    def prefetch(self, batch):
        """Sends a batch of calls (see _batch) in one request; the program answers each
        in order, and call() takes the answers as the tests make the same calls."""
        if self.dead is not None or batch is None:
            return
        data, keys = batch
        try:
            write_all(self.fd, data)
        except OSError:
            self.dead = _Lost("the program ended before answering")
            return
        self.pending.extend(keys)

    def request(self, msg, key=None, ahead=None):
        """Sends `msg` (unless it is the call `key` already sent ahead), then the batch
        `ahead` (see prefetch), and returns the answer to `msg`."""
        if self.dead is not None:
            raise self.dead
        try:
            if key is not None and self.pending and self.pending[0] == key:
                self.pending.popleft()
            else:
                # Answers to calls sent ahead that the tests did not make after all.
                while self.pending:
                    self.pending.popleft()
                    recv_raw(self.fd)
                send(self.fd, msg)
                self.prefetch(ahead)
            reply = self.decode(recv_raw(self.fd))
        except (ChannelClosed, OSError):
            self.dead = _Lost("the program ended before answering")
            raise self.dead from None
        except ProtocolError as exc:
            self.dead = _Broken("the program broke the checker protocol: %s" % exc)
            raise self.dead from None
        if type(reply) is not dict:
            self.dead = _Broken("the program broke the checker protocol: not an object")
            raise self.dead
        return reply

    def _result(self, reply):
        if "e" in reply:
            name, message = reply.get("e"), reply.get("m")
            if type(name) is not str or type(message) is not str:
                self.dead = _Broken("the program broke the checker protocol: bad error")
                raise self.dead
            cls = getattr(builtins, name, None)
            message = message[-_MESSAGE_MAX:]
            if (
                isinstance(cls, type)
                and issubclass(cls, Exception)
                and cls.__init__ is not None
            ):
                try:
                    exc = cls(message)
                except Exception:  # noqa: B902 - a builtin that takes other arguments
                    exc = RemoteError(message)
            else:
                exc = RemoteError(message)
            exc.remote_type = name
            raise exc
        if "r" not in reply:
            self.dead = _Broken("the program broke the checker protocol: no result")
            raise self.dead
        return reply["r"]

    def call(self, ref, args, kwargs):
        msg = key = None
        if not kwargs and self.pending and type(ref) is str:
            key = _key(ref, args)
        if key is None or self.pending[0] != key:
            # Not the call sent ahead: it goes out now.
            msg = {"op": "call", "f": ref, "a": [encode(a, self._ref) for a in args]}
            if kwargs:
                msg["k"] = {"$": "d", "v": [[k, encode(v, self._ref)] for k, v in kwargs.items()]}
        reply = self.request(msg, key)
        value = self._result(reply)
        changed = reply.get("a")
        if changed is not None:
            _apply_mutations(args, changed)
        return value

    def setattr(self, ref, name, value):
        self._result(self.request({"op": "setattr", "h": ref, "n": name, "v": encode(value, self._ref)}))

    def attr(self, ref, name):
        return self._result(self.request({"op": "attr", "h": ref, "n": name}))


def _apply_mutations(args, changed):
    # The submission changed some of its list, dict, set or bytearray arguments: the
    # checker's objects get the new contents, so a test that looks at them after the
    # call sees what the function did (as it would have in one process).
    if type(changed) is not list:
        return
    for item in changed:
        if type(item) is not list or len(item) != 2 or type(item[0]) is not int:
            continue
        i, new = item
        if not 0 <= i < len(args):
            continue
        old = args[i]
        if type(old) is list and type(new) is list:
            old[:] = new
        elif type(old) is dict and type(new) is dict:
            old.clear()
            old.update(new)
        elif type(old) is set and type(new) is set:
            old.clear()
            old.update(new)
        elif type(old) is bytearray and type(new) is bytearray:
            old[:] = new


class _Code:
    # Test code, compiled on first use (a problem the host judges alone is only
    # described, never run here), or the error parsing or compiling it gave, raised
    # where the code would run.
    __slots__ = ("stmts", "name", "code", "error")

    def __init__(self, stmts=None, name="test", source=None):
        self.stmts, self.name, self.code, self.error = stmts, name, None, None
        if source is not None:
            try:
                self.stmts = ast.parse(source).body
            except Exception as exc:  # noqa: B902 - any failure belongs to the test
                self.error = exc.with_traceback(None)

    def get(self):
        if self.code is None and self.error is None:
            try:
                module = ast.Module(body=self.stmts, type_ignores=[])
                self.code = compile(module, self.name, "exec")
            except Exception as exc:  # noqa: B902
                self.error = exc.with_traceback(None)
        if self.error is not None:
            raise self.error
        return self.code


def _asserts(stmts):
    # Every assert statement in `stmts`, at any depth. An assert is a statement, so it
    # can only sit in a list of statements: searching those finds every assert without
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


def _has_assert(stmt):
    return next(_asserts([stmt]), None) is not None


class _CheckPlan:
    # HumanEval style: `check(candidate)`; each top-level statement of check that holds
    # an assert is a separate test unit, the other statements set them up. Code of
    # another shape is one unit: the whole of it, then `check(entry_point)`.
    __slots__ = (
        "count", "parse_error", "whole", "others", "entry_point", "arg", "units", "plain", "batches",
    )

    def __init__(self, test, tree):
        self.count, self.parse_error, self.whole = 1, None, None
        self.others, self.arg, self.units, self.plain = None, None, [], []
        # Calls sent ahead from each unit on, framed once per plan (see _batch).
        self.batches = {}
        self.entry_point = test["entry_point"]
        if tree is None:
            try:
                ast.parse(test["code"])
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
        if sum(asserts) == 0:
            self.whole = _Code(source=test["code"] + "\n\ncheck(%s)\n" % self.entry_point)
            return
        self.count = sum(asserts)
        self.others = _Code(others)
        self.arg = check.args.args[0].arg
        self.units = [(_Code([stmt], "check"), a) for stmt, a in zip(check.body, asserts)]
        self.plain = [_plain_call(stmt, (self.arg,)) for stmt in check.body]


# What a test unit that calls the submission makes of the call, when it is known before
# the unit runs: the one call it makes first, with literal arguments (`assert
# candidate([1, 2]) == 3`, `assert abs(f(0.5) - 1.2) < 1e-6`). Consecutive such calls are
# sent to the program in one request and answered one by one, in order, so the program
# computes the next answer while the checker judges the last (see _Channel.prefetch).
_FIRST_ARG_OF = frozenset(
    ("abs", "round", "len", "sorted", "set", "list", "tuple", "str", "int", "float", "sum", "bool")
)
_CALL_FREE = "call-free"
_UNSET = object()


def _plain_call(stmt, names):
    """(name, args) of the call `stmt` makes first when it is a plain call of one of
    `names` with literal arguments; _CALL_FREE when it reads none of `names`; else None."""
    uses = [n for n in ast.walk(stmt) if isinstance(n, ast.Name) and n.id in names]
    if not uses:
        return _CALL_FREE
    if len(uses) != 1 or not isinstance(stmt, ast.Assert):
        return None
    node = stmt.test
    while True:
        if isinstance(node, ast.Compare):
            node = node.left
        elif isinstance(node, ast.UnaryOp):
            node = node.operand
        elif isinstance(node, ast.BinOp):
            node = node.left
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in _FIRST_ARG_OF
            and node.func.id not in names
            and node.args
            and not isinstance(node.args[0], ast.Starred)
        ):
            node = node.args[0]
        else:
            break
    if not (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in names
        and not node.keywords
    ):
        return None
    try:
        args = tuple(ast.literal_eval(a) for a in node.args)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
    return node.func.id, args


# The host judges some problems without a checker: those whose every test unit is
# `assert f(LITERALS) == LITERAL` (or `assert True`), with the expected value of a kind
# whose == the host reproduces exactly: None, bool, str, ints that fit 64 bits, floats
# below 2**53, and lists and tuples of these. For such a problem the checker describes
# each unit once (describe), and the host then sends the calls, reads the answers and
# compares them itself (crates/crucible-judge/src/host_check.rs).
def _host_value(v):
    t = type(v)
    if v is None or t is bool or t is str:
        return True
    if t is int:
        return -(1 << 63) < v < (1 << 63)
    if t is float:
        return v != v or abs(v) < (1 << 53) or v in (float("inf"), float("-inf"))
    if t is list or t is tuple:
        return all(_host_value(x) for x in v)
    return False


def _host_unit(stmt, is_callee):
    """What the host needs to judge `stmt` itself: {"pass": True} for `assert True`, a
    call with its expected value and assert message, or None. `is_callee(name)` says
    whether a name may be the function under test."""
    if not isinstance(stmt, ast.Assert):
        return None
    msg = None
    if stmt.msg is not None:
        if not (isinstance(stmt.msg, ast.Constant) and type(stmt.msg.value) is str):
            return None
        msg = stmt.msg.value
    test = stmt.test
    if isinstance(test, ast.Constant) and test.value is True:
        return {"pass": True}
    if not (
        isinstance(test, ast.Compare)
        and len(test.ops) == 1
        and isinstance(test.ops[0], ast.Eq)
        and isinstance(test.left, ast.Call)
        and isinstance(test.left.func, ast.Name)
        and is_callee(test.left.func.id)
        and not test.left.keywords
    ):
        return None
    try:
        # Literals only: no name but the callee's is read anywhere in the assert.
        args = [ast.literal_eval(a) for a in test.left.args]
        expected = ast.literal_eval(test.comparators[0])
        encoded = [encode(a) for a in args]
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
    if not _host_value(expected):
        return None
    return {"f": test.left.func.id, "a": encoded, "x": encode(expected), "m": msg}


def _top_level_names(source):
    # The names a module's top level defines (functions, classes, plain assignments).
    names = set()
    for stmt in ast.parse(source).body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(stmt.name)
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign)):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in stmt.names)
    return names


def describe(spec):
    """The units of `spec` as the host judges them (see _host_unit), each with its test
    unit's id as a check would number it, or None when some unit needs the checker."""
    if (spec.get("setup") or "").strip():
        return None
    builtin = set(dir(builtins))
    prefix_names = None
    units = []
    for test in spec["tests"]:
        tid = test["id"]
        if test["kind"] != "assert":
            return None
        try:
            tree = ast.parse(test["code"])
        except SyntaxError:
            return None
        entry = test.get("entry_point")
        if not entry:
            # MBPP: one assert calling a function of the submission's: not a builtin
            # (the checker decides whose `sum` it is) nor a name the prefix defines.
            if len(tree.body) != 1:
                return None
            if prefix_names is None:
                try:
                    prefix_names = _top_level_names(spec.get("prefix") or "")
                except SyntaxError:
                    return None
            unit = _host_unit(
                tree.body[0], lambda n: n not in builtin and n not in prefix_names
            )
            if unit is None or "f" not in unit:
                return None
            unit["id"] = tid
            units.append(unit)
            continue
        # HumanEval: check(candidate), every top-level statement an assert, and nothing
        # else in the test code that calls anything.
        check = None
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name == "check":
                check = node
            elif any(isinstance(n, ast.Call) for n in ast.walk(node)):
                return None
        if check is None or not check.args.args or not check.body:
            return None
        arg = check.args.args[0].arg
        for k, stmt in enumerate(check.body):
            unit = _host_unit(stmt, lambda n: n == arg)
            if unit is None:
                return None
            unit["id"] = "%s.%d" % (tid, k)
            if "f" in unit:
                unit["f"] = entry
            units.append(unit)
    return units


def _names(trees):
    # Names the test code reads, and names it binds anywhere: those it reads and never
    # binds come from the problem's prefix, the builtins, or the program.
    loaded, bound = set(), set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Name):
                (loaded if isinstance(node.ctx, ast.Load) else bound).add(node.id)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                bound.add(node.name)
            elif isinstance(node, ast.arg):
                bound.add(node.arg)
            elif isinstance(node, ast.alias):
                bound.add((node.asname or node.name).split(".")[0])
            elif isinstance(node, ast.ExceptHandler) and node.name:
                bound.add(node.name)
    return loaded - bound


def _shadowed_builtin(tree):
    # MBPP's `assert sum(10, 15) == 6` tests a function of the submission's that has a
    # builtin's name. The name is the submission's only in test code made of asserts of
    # exactly that shape, all of the same name, that reads no other free name:
    # elsewhere (`abs(f(x) - y) < 1e-9`) it stays the builtin, so a submission cannot
    # redefine what a test computes with.
    if tree is None or not tree.body:
        return None
    names = set()
    for stmt in tree.body:
        if not isinstance(stmt, ast.Assert):
            return None
        test = stmt.test.left if isinstance(stmt.test, ast.Compare) else stmt.test
        if not (isinstance(test, ast.Call) and isinstance(test.func, ast.Name)):
            return None
        names.add(test.func.id)
    if len(names) != 1:
        return None
    name = names.pop()
    if name not in dir(builtins) or _names([tree]) - set(dir(builtins)):
        return None
    return name


class _Plan:
    # Everything about a spec that does not depend on the program: compiled tests, the
    # units of each check suite, and the names to ask the program for.
    __slots__ = (
        "spec", "prefix", "setup", "checks", "codes", "free", "entries", "shadows", "plain", "first",
    )

    def __init__(self, spec):
        global ast
        import ast

        self.spec = spec
        trees = []
        prefix = spec.get("prefix") or ""
        self.prefix = _Code(source=prefix, name="prefix") if prefix.strip() else None
        setup = spec.get("setup") or ""
        self.setup = _Code(source=setup, name="setup") if setup.strip() else None
        self.checks, self.codes = {}, {}
        self.entries = set()
        self.shadows = {}
        self.plain = {}
        # The batch sent with the init (see _first_calls), made on the first check.
        self.first = _UNSET
        for source in (setup,):
            try:
                trees.append(ast.parse(source))
            except SyntaxError:
                pass
        for test in spec["tests"]:
            if test["kind"] == "call":
                self.entries.add(test["function"])
                continue
            try:
                tree = ast.parse(test["code"])
            except SyntaxError:
                tree = None
            if tree is not None:
                trees.append(tree)
            if test.get("entry_point"):
                self.entries.add(test["entry_point"])
                self.checks[test["id"]] = _CheckPlan(test, tree)
            else:
                self.codes[test["id"]] = _Code(source=test["code"])
                if tree is not None and len(tree.body) == 1:
                    call = _plain_call(tree.body[0], _names([tree]))
                    if type(call) is tuple:
                        self.plain[test["id"]] = call
                shadow = _shadowed_builtin(tree)
                if shadow is not None:
                    self.shadows[test["id"]] = shadow
        self.free = sorted(
            (_names(trees) - set(dir(builtins))) | self.entries | set(self.shadows.values())
        )


def prepare(argv, files):
    """Called by a fork server's zygote before it forks: parses and compiles the spec
    (or takes it from this zygote's cache: a problem judged again, as RL does, is
    compiled once). Returns what main() takes."""
    global json
    import json

    if len(argv) == 3 and argv[1] == "--describe" and argv[2] in files:
        global ast
        import ast

        return _Describe(json.loads(files[argv[2]]))
    if len(argv) < 2 or argv[1] not in files:
        return None
    raw = files[argv[1]]
    plan = _COMPILED.get(raw)
    if plan is None:
        plan = _Plan(json.loads(raw))
        if len(_COMPILED) >= _COMPILED_MAX:
            del _COMPILED[next(iter(_COMPILED))]
        _COMPILED[raw] = plan
    return plan


class _Recorder:
    # The records of one check, and the running of each test unit. Records are written
    # in two writes, the announcements before the program is asked anything and the
    # rest at the end (each write wakes the host); a checker killed in between leaves
    # its units unrecorded, which the host blames on the program.
    __slots__ = ("out_fd", "chan", "pending")

    def __init__(self, out_fd, chan):
        self.out_fd, self.chan, self.pending = out_fd, chan, []

    def flush(self):
        data = "".join(self.pending).encode()
        self.pending.clear()
        while data:
            data = data[os.write(self.out_fd, data):]

    def emit(self, record):
        self.pending.append(json.dumps(record) + "\n")
        if record.get("event") == "done" or len(self.pending) > 256:
            self.flush()

    def timed(self, fn):
        """Runs a unit: its status ("pass", "fail", "error", "lost"), what it raised
        (or returned) and its wall time in ms."""
        w0 = time.perf_counter()
        try:
            value = fn()
            status, payload = "pass", value
        except _Lost as exc:
            status, payload = "lost", exc
        except _Broken as exc:
            status, payload = "error", exc
        except AssertionError as exc:
            status, payload = "fail", exc
        except BaseException as exc:  # noqa: B902 - SystemExit etc. fail the test too
            status, payload = "error", exc
        dead = self.chan.dead
        if dead is not None and status != "lost":
            # Whatever the test made of it, the program was gone or broke the protocol.
            status, payload = ("lost" if type(dead) is _Lost else "error"), dead
        return status, payload, int((time.perf_counter() - w0) * 1000)

    def report(self, tid, status, payload, wall, value=None):
        if status == "pass" and value is None:
            # The common record, formatted rather than built and dumped.
            self.pending.append(
                '{"id":"%s","status":"pass","wall_ms":%d,"cpu_ms":%d}\n' % (tid, wall, wall)
            )
            return
        rec = {"id": tid, "wall_ms": wall, "cpu_ms": wall, "status": status}
        if status != "pass":
            rec["message"] = _exc_summary(payload) if payload is not None else ""
            rec["exc"] = getattr(payload, "remote_type", None) or type(payload).__name__
        if value is not None:
            rec["value"] = value
        self.emit(rec)

    def fatal(self, kind, message, exc):
        self.emit({"event": "fatal", "kind": kind, "message": message, "exc": exc})
        self.emit({"event": "done"})


def _check(plan, chan_fd, out_fd):
    global json, random
    import json
    import random

    chan = _Channel(chan_fd)
    rec = _Recorder(out_fd, chan)
    rec.emit({"event": "start"})
    for tid, check in plan.checks.items():
        rec.emit({"event": "units", "id": tid, "count": check.count})
    rec.flush()

    random.seed(0)
    g = {"__name__": "__checker__", "__builtins__": builtins}
    if plan.prefix is not None:
        try:
            exec(plan.prefix.get(), g)
        except BaseException:  # noqa: B902 - then its names come from the program
            g = {"__name__": "__checker__", "__builtins__": builtins}
    have = _load_program(plan, chan, g, rec)
    if have is None:
        return
    if plan.setup is not None:
        # After the program's names are bound: MBPP's set-up code builds its test data
        # with the submission's classes (MBPP/367's trees of Node).
        status, payload, _ = rec.timed(lambda: exec(plan.setup.get(), g))
        if status != "pass":
            exc = getattr(payload, "remote_type", None) or type(payload).__name__
            rec.fatal("program_error", "test setup: " + _exc_summary(payload), exc)
            return
    _run_tests(plan, chan, g, have, rec)
    rec.emit({"event": "done"})


def _load_program(plan, chan, g, rec):
    """Has the program load the submission and binds, in `g`, the names the tests need
    from it. Returns what the program said it has, or None when the check is over (the
    program did not load; every unit has its record then)."""
    names = [n for n in plan.free if n in plan.entries or n not in g]
    try:
        # The first tests' calls go out with the init, unless set-up code runs first
        # (it may call the program too, and calls happen in the tests' order).
        if plan.first is _UNSET:
            plan.first = _batch(_first_calls(plan)) if plan.setup is None else None
        init = {"op": "init", "names": names, "setup": plan.spec.get("setup") or ""}
        reply = chan.request(init, ahead=plan.first)
        fatal = reply.get("fatal")
        if fatal is not None:
            if fatal not in ("compile_error", "program_error"):
                raise _Broken("the program broke the checker protocol: bad init")
            rec.fatal(fatal, str(reply.get("m"))[-_MESSAGE_MAX:], str(reply.get("e")))
            return None
        have = reply.get("have")
        if type(have) is not dict:
            raise _Broken("the program broke the checker protocol: bad init")
    except (_Lost, _Broken) as exc:
        # Every unit fails the same way; the units were announced already.
        for test in plan.spec["tests"]:
            tid = test["id"]
            check = plan.checks.get(tid)
            ids = ["%s.%d" % (tid, k) for k in range(check.count)] if check else [tid]
            for uid in ids:
                rec.report(uid, "lost" if type(exc) is _Lost else "error", exc, 0)
        rec.emit({"event": "done"})
        return None
    for name in names:
        if name in plan.shadows.values() and name not in plan.entries:
            continue  # bound per test, in _run_tests
        if name not in have:
            g.pop(name, None)  # the program does not define it: a NameError, as it was
        elif have[name] == "callable":
            g[name] = Remote(chan, name, name)
        else:
            g[name] = have[name]
    return have


def _run_tests(plan, chan, g, have, rec):
    tests = plan.spec["tests"]
    for n, test in enumerate(tests):
        tid = test["id"]
        if test["kind"] == "call":
            fn = g.get(test["function"])
            if type(fn) is not Remote:
                error = NameError("function %r is not defined" % test["function"])
                rec.report(tid, "error", error, 0)
                continue
            holder = {}

            def call(fn=fn, args=test["args"]):
                value = fn(*args)
                try:
                    text = json.dumps(value, allow_nan=False)
                except ValueError:
                    # An expected value is JSON, which has no nan or infinities.
                    raise AssertionError(
                        "returned %r, which no expected value equals" % (value,)
                    ) from None
                holder["value"] = json.loads(text)

            status, payload, wall = rec.timed(call)
            rec.report(tid, status, payload, wall, holder.get("value") if status == "pass" else None)
        elif tid in plan.checks:
            _check_suite(tid, plan.checks[tid], g, rec)
        else:
            if not chan.pending and tid in plan.plain:
                chan.prefetch(_batch(_code_calls(plan, tests, n, g)))
            ns = g
            shadow = plan.shadows.get(tid)
            if shadow is not None and have.get(shadow) == "callable":
                ns = dict(g)
                ns[shadow] = Remote(chan, shadow, shadow)
            status, payload, wall = rec.timed(lambda c=plan.codes[tid], ns=ns: exec(c.get(), ns))
            rec.report(tid, status, payload, wall)


def _key(name, args):
    # Which call this is, to match a call the test makes with one sent ahead. repr tells
    # apart what == does not (1, True and 1.0; a list and a tuple) for the literal values
    # sent ahead; values it cannot tell apart only cost a call made again.
    return name + repr(args)


def _batch(calls):
    """The framed request for `calls` ((name, args) pairs) and each call's key, or None
    when there is nothing to send."""
    items, keys = [], []
    for name, args in calls:
        try:
            encoded = [encode(a) for a in args]
        except TypeError:
            break
        items.append({"f": name, "a": encoded})
        keys.append(_key(name, tuple(args)))
    if not items:
        return None
    return frame({"op": "calls", "c": items}), keys


def _run_of_calls(plain, start, name=None):
    # The plain calls from `start` on, up to the first unit whose call is not known
    # ahead; `name`, when given, is the program's name for every call.
    calls = []
    for item in plain[start:]:
        if item is _CALL_FREE:
            continue
        if type(item) is not tuple:
            break
        calls.append((name or item[0], item[1]))
    return calls


def _first_calls(plan):
    # The calls known ahead at the start of the tests, before the program has said which
    # names it has (a name it lacks only costs an answer nobody reads).
    tests = plan.spec["tests"]
    if not tests or tests[0]["kind"] != "assert":
        return ()
    check = plan.checks.get(tests[0]["id"])
    if check is None:
        return _code_calls(plan, tests, 0, None)
    if check.whole is not None or check.parse_error is not None or not check.plain:
        return ()
    return _run_of_calls(check.plain, 0, check.entry_point)


def _code_calls(plan, tests, start, g):
    # The plain calls of consecutive assert tests from `start` on, each to a name that
    # is the program's (a Remote in `g`, or the test's own shadowed builtin).
    calls = []
    for test in tests[start:]:
        call = plan.plain.get(test["id"])
        if call is None or test["kind"] != "assert" or test.get("entry_point"):
            break
        if g is not None and type(g.get(call[0])) is not Remote:
            if plan.shadows.get(test["id"]) != call[0]:
                break
        calls.append(call)
    return calls


def _check_suite(tid, plan, g, rec):
    if plan.parse_error is not None:
        rec.report(tid + ".0", "error", plan.parse_error, 0)
        return
    if plan.whole is not None:
        status, payload, wall = rec.timed(lambda: exec(plan.whole.get(), g))
        rec.report(tid + ".0", status, payload, wall)
        return
    status, payload, _ = rec.timed(lambda: exec(plan.others.get(), g))
    candidate = g.get(plan.entry_point)
    failure = None
    if status != "pass":
        failure = payload
    elif type(candidate) is not Remote:
        failure = NameError("name %r is not defined" % plan.entry_point)
    if failure is not None:
        for k in range(plan.count):
            rec.report("%s.%d" % (tid, k), status if status == "lost" else "error", failure, 0)
        return
    local = dict(g)
    local[plan.arg] = candidate
    k = 0
    chan = candidate._channel
    for n, (unit, has_assert) in enumerate(plan.units):
        if not chan.pending and type(plan.plain[n]) is tuple:
            if n not in plan.batches:
                plan.batches[n] = _batch(_run_of_calls(plan.plain, n, plan.entry_point))
            chan.prefetch(plan.batches[n])
        status, payload, wall = rec.timed(lambda c=unit: exec(c.get(), local))
        if has_assert:
            rec.report("%s.%d" % (tid, k), status, payload, wall)
            k += 1
        elif status != "pass":
            # Set-up inside check failed: the remaining asserts cannot run.
            for rest in range(k, plan.count):
                rec.report("%s.%d" % (tid, rest), status, payload, 0)
            return


class _Describe:
    # A request to describe problems for the host (checker.py --describe SPECS).
    __slots__ = ("specs",)

    def __init__(self, specs):
        self.specs = specs

    def write(self, out_fd):
        data = json.dumps([describe(spec) for spec in self.specs]).encode()
        while data:
            data = data[os.write(out_fd, data):]


def run_in_place(argv, plan, chan_fd, out_fd, err_fd):
    """Called by an in-place zygote for each execution: judges the program on the other
    end of `chan_fd`, writing records to `out_fd`, or with --describe writes each
    problem's description (see describe) as one JSON list. Test code's prints go to `err_fd`."""
    if plan is None:
        raise ValueError("no tests spec")
    if type(plan) is _Describe:
        plan.write(out_fd)
        return
    saved = sys.stdout
    sys.stdout = open(err_fd, "w", closefd=False)
    try:
        _check(plan, chan_fd, out_fd)
    finally:
        try:
            sys.stdout.flush()
        except (OSError, ValueError):
            pass
        sys.stdout = saved


def main(plan=None):
    """Judges the program on the other end of stdin. `plan` is what prepare() returned
    in a fork server's zygote; without one, the spec is read from sys.argv[1]."""
    if plan is None:
        if len(sys.argv) < 2:
            sys.stderr.write("usage: checker.py SPEC | --describe SPECS\n")
            sys.exit(2)
        with open(sys.argv[-1], "rb") as f:
            raw = f.read()
        plan = prepare(sys.argv, {sys.argv[-1]: raw})
    if type(plan) is _Describe:
        plan.write(1)
        return
    chan_fd = os.dup(0)
    out_fd = os.dup(1)
    # Test code that prints must not write into the records.
    os.dup2(2, 1)
    _check(plan, chan_fd, out_fd)


if __name__ == "__main__":
    main()
