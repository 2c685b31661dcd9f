# Crucible's boot script for CPython on WASI (the python-wasm profile). The judge writes
# it into the work dir (/work) beside the program and the harness.
#
#   boot.py run PROGRAM ARGS...    run PROGRAM as __main__ now (a plain start)
#   boot.py snapshot FILES...      start up, import and compile what runs need, and stop;
#                                  the host keeps this state, and each run of the snapshot
#                                  calls _run(), which reads its argv from a file
#
# A run ends through os._exit with the program's exit status, so the interpreter is never
# finalised (the run's instance is thrown away anyway).
import builtins
import json
import os
import sys

WORK = "/work"
ARGV_FILE = ".crucible_argv.json"
ENTRY_FILE = ".crucible_entry.json"
# Offset of tp_call in a 32-bit CPython 3.12 PyTypeObject: refcnt, type, size, name,
# basicsize, itemsize, dealloc, vectorcall_offset, getattr, setattr, as_async, repr,
# as_number, as_sequence, as_mapping, hash, then call. The host checks the layout.
_TP_CALL = 64
_TP_BASICSIZE = 16
_OB_TYPE = 4
# Compiled code by source bytes: the harness is the same in every run, so a snapshot
# compiles it once.
_compiled = {}


def _patch_os():
    # WASI has no dup/dup2. A program that points fd 1 at stderr with dup2(2, 1), as
    # the process sandbox allows, gets the same view here: sys.stdout becomes stderr.
    def dup(fd):
        return fd

    def dup2(src, dst, inheritable=True):
        if (src, dst) == (2, 1):
            sys.stdout = sys.stderr
            return dst
        raise OSError(58, "Not supported")

    os.dup = dup
    os.dup2 = dup2
    os.set_inheritable = lambda fd, inheritable: None


def _code(path):
    with open(path, "rb") as f:
        src = f.read()
    code = _compiled.get(src)
    if code is None:
        code = compile(src, path, "exec")
    return code


def _exit_status(exc):
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    sys.stderr.write(str(code) + "\n")
    return 1


def _flush():
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed stream must not hide the status
            pass


def _run():
    status = 1
    try:
        os.chdir(WORK)
        # File times are constant under Crucible's WASI (they would leak host timing), so
        # importlib cannot see by itself that the judge wrote files since the snapshot:
        # drop the work dir's listing. (importlib.invalidate_caches() would do it too, but
        # it imports importlib.metadata, ~45 ms here.)
        for path, finder in list(sys.path_importer_cache.items()):
            if finder is not None and (path == WORK or path.startswith(WORK + "/")):
                finder.invalidate_caches()
        try:
            # The run's whole WASI argv: python, this file, "run", the program...
            with open(ARGV_FILE, "r", encoding="utf-8") as f:
                program = json.load(f)[3:]
            os.unlink(ARGV_FILE)
        except FileNotFoundError:
            program = sys.argv[2:]
        sys.argv = list(program)
        code = _code(program[0])
        g = {"__name__": "__main__", "__file__": program[0], "__builtins__": builtins}
        try:
            exec(code, g)
            status = 0
        except SystemExit as exc:
            status = _exit_status(exc)
    except BaseException:  # noqa: B902 - an uncaught exception is exit status 1
        import traceback

        traceback.print_exc()
        status = 1
    _flush()
    os._exit(status)


def _snapshot(files):
    # What runs import anyway: paying for it here takes it off every run.
    import ast  # noqa: F401
    import collections  # noqa: F401
    import functools  # noqa: F401
    import heapq  # noqa: F401
    import itertools  # noqa: F401
    import math  # noqa: F401
    import random  # noqa: F401
    import re  # noqa: F401
    import string  # noqa: F401
    import time  # noqa: F401
    import traceback  # noqa: F401
    import typing  # noqa: F401

    os.chdir(WORK)
    for path in files:
        with open(path, "rb") as f:
            src = f.read()
        _compiled[src] = compile(src, path, "exec")
    t = type(_run)
    entry = {
        # The host calls tp_call(_run, (), NULL), i.e. _run().
        "slot": id(t) + _TP_CALL,
        "args": [id(_run), id(()), 0],
        "checks": [
            [id(t) + _TP_BASICSIZE, t.__basicsize__],
            [id(_run) + _OB_TYPE, id(t)],
        ],
    }
    with open(ENTRY_FILE, "w", encoding="utf-8") as f:
        json.dump(entry, f)
    _flush()
    os._exit(0)


def _main():
    _patch_os()
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "run" and len(sys.argv) > 2:
        _run()
    elif mode == "snapshot":
        _snapshot(sys.argv[2:])
    else:
        sys.stderr.write("usage: boot.py run PROGRAM ARGS... | snapshot FILES...\n")
        _flush()
        os._exit(2)


_main()
