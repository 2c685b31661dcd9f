# Crucible's in-sandbox Python harness: the program's side. The judge writes this file
# (after channel.py) and the program (solution.py) into the work dir. It runs as a
# script (python3 harness.py MODE) in a fresh sandbox, or is imported once by a fork
# server's zygote, whose children call main() with the same sys.argv.
#
#   harness.py stdio    run solution.py as __main__ (stdio tests)
#   harness.py serve    load solution.py and answer the checker's requests on the channel
#                       (stdin is a socket to the checker; under wasm, requests arrive on
#                       stdin and answers leave on stdout)
#
# This process never sees a test, an expected value or anything that decides a verdict:
# the checker (checker.py, another process in another sandbox) holds the tests, calls the
# submission's functions through this harness with plain values and judges what comes
# back. Whatever the submission does to this interpreter, the worst it can do is answer
# wrongly, and a wrong answer fails.
#
# Requests and answers (JSON, framed by channel.py):
#   {"op": "init", "names": [...], "setup": CODE}
#       -> {"have": {NAME: "callable" | VALUE}}, or {"fatal": "compile_error" |
#          "program_error", "m": MESSAGE, "e": EXCEPTION_TYPE}
#   {"op": "call", "f": NAME | HANDLE, "a": [ARGS], "k": {NAME: VALUE}}
#       -> {"r": VALUE, "a": [[INDEX, VALUE], ...]} (the arguments the call changed), or
#          {"e": EXCEPTION_TYPE, "m": MESSAGE}
#   {"op": "calls", "c": [{"f": NAME, "a": [ARGS]}, ...]} -> one answer per call, in
#       order, each as for "call" (calls the checker knows it will make, sent ahead)
#   {"op": "attr", "h": HANDLE, "n": NAME} -> {"r": VALUE} or {"e": ..., "m": ...}
#   {"op": "setattr", "h": HANDLE, "n": NAME, "v": VALUE} -> {"r": null} or {"e": ...}
import builtins
import os
import sys

SOLUTION = "solution.py"
MODULE = "__solution__"
_MUTABLE = (list, dict, set, bytearray)
# Most items taken from an iterator a function returns.
_ITER_MAX = 1 << 20


def _load_source():
    with open(SOLUTION, "rb") as f:
        return f.read()


def _exc_summary(exc):
    text = "%s: %s" % (type(exc).__name__, exc) if str(exc) else type(exc).__name__
    return text[-2000:]


def _error_answer(exc):
    # The exception's type and its own message (the checker prefixes the type).
    return {"e": type(exc).__name__, "m": str(exc)[-2000:]}


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


class _Server:
    def __init__(self, rfd, wfd):
        self.rfd, self.wfd = rfd, wfd
        self.handles = []
        self.ids = {}
        self.decode = decoder(self._handle_of)
        self.g = None

    def _handle_of(self, hid, _name):
        if 0 <= hid < len(self.handles):
            return self.handles[hid]
        raise ProtocolError("unknown handle")

    def _keep(self, value):
        # A value that is not plain data. Modules cross by name; iterators as their items;
        # numbers and
        # containers of other types as the builtin value they convert to; anything else
        # (a class instance, a function) stays here and crosses as a handle.
        t = type(value)
        if t is type(os):
            return {"$": "m", "v": value.__name__}
        if hasattr(value, "__next__") and hasattr(value, "__iter__"):
            items = []
            for item in value:
                items.append(self._encode(item))
                if len(items) > _ITER_MAX:
                    raise ValueError("an iterator of more than %d items" % _ITER_MAX)
            return {"$": "it", "v": items}
        for base in (bool, int, float, str, complex, bytes, tuple, list, dict, set, frozenset):
            if isinstance(value, base):
                return self._encode(base(value))
        if hasattr(value, "tolist") and callable(value.tolist):  # numpy values
            return self._encode(value.tolist())
        key = id(value)
        hid = self.ids.get(key)
        if hid is None:
            hid = len(self.handles)
            self.handles.append(value)
            self.ids[key] = hid
        return {"$": "h", "v": hid, "n": t.__name__}

    def _encode(self, value):
        return encode(value, self._keep)

    def _error(self, exc):
        send(self.wfd, _error_answer(exc))

    def _init(self, req):
        try:
            code = compile(_load_source(), SOLUTION, "exec")
        except (SyntaxError, ValueError) as exc:
            return {"fatal": "compile_error", "m": _exc_summary(exc), "e": type(exc).__name__}
        g = {"__name__": MODULE, "__builtins__": builtins}
        self.g = g
        try:
            exec(code, g)
            setup = req.get("setup") or ""
            if setup.strip():
                exec(compile(setup, "setup", "exec"), g)
        except BaseException as exc:  # noqa: B902 - any failure is the program's
            return {"fatal": "program_error", "m": _exc_summary(exc), "e": type(exc).__name__}
        have = {}
        for name in req.get("names", ()):
            if name in g:
                value = g[name]
                have[name] = "callable" if callable(value) else self._encode(value)
        return {"have": have}

    def _call(self, req, track=True):
        # `track`: report the arguments the call changed. Calls sent ahead have literal
        # arguments that no test looks at afterwards, so theirs are not tracked.
        target = req["f"]
        if type(target) is str:
            if target not in self.g:
                raise NameError("name %r is not defined" % target)
            fn = self.g[target]
        else:
            fn = target
        args = req["a"]
        kwargs = req.get("k") or {}
        if not track:
            return {"r": self._encode(fn(*args, **kwargs))}
        before = [self._encode(a) if type(a) in _MUTABLE else None for a in args]
        value = fn(*args, **kwargs)
        out = {"r": self._encode(value)}
        changed = []
        for i, (a, b) in enumerate(zip(args, before)):
            if b is not None:
                after = self._encode(a)
                if after != b:
                    changed.append([i, after])
        if changed:
            out["a"] = changed
        return out

    def serve(self):
        while True:
            try:
                req = self.decode(recv_raw(self.rfd))
            except ChannelClosed:
                return
            op = req.get("op") if type(req) is dict else None
            try:
                if op == "init":
                    reply = self._init(req)
                elif op == "call":
                    reply = self._call(req)
                elif op == "attr":
                    reply = {"r": self._encode(getattr(req["h"], req["n"]))}
                elif op == "calls":
                    # Calls sent ahead: each answered on its own, in order, so the
                    # checker has the first answers while later calls run.
                    for call in req["c"]:
                        try:
                            answer = self._call(call, track=False)
                        except BaseException as exc:  # noqa: B902
                            self._error(exc)
                            continue
                        send(self.wfd, answer)
                    continue
                elif op == "setattr":
                    setattr(req["h"], req["n"], req["v"])
                    reply = {"r": None}
                else:
                    return
            except BaseException as exc:  # noqa: B902 - SystemExit etc. fail the test
                self._error(exc)
                continue
            send(self.wfd, reply)


def _serve():
    import random

    random.seed(0)
    # The channel gets descriptors of its own; the submission's prints go to stderr and
    # its stdin is empty, as in a plain tests run.
    if _is_socket(0):
        rfd = wfd = os.dup(0)
        os.set_inheritable(rfd, False)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.dup2(2, 1)
    else:  # wasm: requests on stdin, answers on stdout; prints go to stderr
        rfd, wfd = 0, 1
        sys.stdout = sys.stderr
    _Server(rfd, wfd).serve()


def _is_socket(fd):
    import stat

    try:
        return stat.S_ISSOCK(os.fstat(fd).st_mode)
    except OSError:
        return False


def main(plan=None):
    """Runs the mode sys.argv names."""
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "stdio":
        _stdio()
    elif mode == "serve":
        _serve()
    else:
        sys.stderr.write("usage: harness.py stdio | serve\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
